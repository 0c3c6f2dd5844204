"""One state store on PostgreSQL, named by the project's ``state:``, used by ``tidesync run`` and
by the scheduler alike: a job's cursor goes on from wherever it last ran."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tests.scheduler._pg import fresh_database
from tests.test_project import oplog
from tidesync.cli import main
from tidesync.state import POSITIONS
from tidesync.state.postgresql import PostgresState


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database("ts_shared") as url:
        yield url


def job(path: Path, setting: dict[str, str]) -> str:
    doc = {
        "job": {
            "setting": setting,
            "content": [
                {
                    "reader": {
                        "name": "sqlitereader",
                        "parameter": {
                            "connection": [
                                {"jdbcUrl": ["jdbc:sqlite:../src.db"], "table": ["oplog"]}
                            ],
                            "column": ["id"],
                            "incremental": {"column": "optime"},
                        },
                    },
                    "writer": {
                        "name": "sqlitewriter",
                        "parameter": {
                            "database": "../dst.db",
                            "table": path.stem,
                            "writeMode": "insert",
                        },
                    },
                }
            ],
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return f"jobs/{path.name}"


def ids(root: Path, table: str) -> list[int]:
    with closing(sqlite3.connect(root / "dst.db")) as con:
        return [r[0] for r in con.execute(f"SELECT id FROM {table} ORDER BY id")]


def test_run_and_the_scheduler_share_cursors_in_the_postgresql_state(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "etl"
    root.mkdir()
    oplog(root / "src.db", (1, "2016-11-13 10:00:00"), (2, "2016-11-14 10:00:00"))
    with closing(sqlite3.connect(root / "dst.db")) as con:
        con.execute("CREATE TABLE orders (id INTEGER)")
        con.execute("CREATE TABLE audit (id INTEGER)")
    project = {
        "timezone": "UTC",
        "state": pg_url,
        "nodes": [
            {
                "name": "orders",
                "job": job(root / "jobs" / "orders.json", {"stateKey": "orders"}),
                "schedule": {"every": "day", "at": "00:00"},
            },
            {
                "name": "audit",
                "job": job(root / "jobs" / "audit.json", {}),
                "schedule": {"every": "day", "at": "00:00"},
            },
        ],
    }
    (root / "tidesync.yaml").write_text(yaml.safe_dump(project))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TIDESYNC_PROJECT", raising=False)
    by_hand = CliRunner().invoke(
        main, ["run", str(root / "jobs" / "orders.json"), "--cyctime", "20161115000000"]
    )
    assert by_hand.exit_code == 0, by_hand.output
    assert "positions of orders#0 saved in postgresql postgresql://" in by_hand.output
    oplog(root / "src.db", (3, "2016-11-15 10:00:00"))
    scheduled = CliRunner().invoke(
        main, ["scheduler", "run-once", "--at", "20161117000000", "--project", str(root)]
    )
    assert scheduled.exit_code == 0, scheduled.output
    assert ids(root, "orders") == [1, 2, 3]  # the node went on after the run by hand
    assert ids(root, "audit") == [1, 2, 3]  # another job on the table: every row, its own cursor
    store = PostgresState(pg_url)
    try:
        saved = {e.key: (e.version, e.value) for e in store.list(POSITIONS)}
    finally:
        store.close()
    assert set(saved) == {"orders#0", "node:audit#0"}
    assert saved["orders#0"][0] == 2
    assert saved["orders#0"][1]["positions"]["oplog"]["value"] == "2016-11-15 10:00:00"
    assert not (root / ".tidesync" / "state.db").exists()  # nothing kept beside the project


def test_a_hold_on_a_jobs_positions_keeps_other_runs_waiting_until_released(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidesync.errors import RetriableError
    from tidesync.state import base

    monkeypatch.setattr(base, "HOLD_WAIT_S", 0.0)  # give up at once instead of waiting
    first, second = PostgresState(pg_url), PostgresState(pg_url)  # two machines
    release = first.hold(POSITIONS, "node:oplog#0")
    with pytest.raises(RetriableError, match="another run of this job has held its positions"):
        second.hold(POSITIONS, "node:oplog#0")
    second.hold(POSITIONS, "node:other#0")()  # another job: not held
    release()
    second.hold(POSITIONS, "node:oplog#0")()
    first.close(), second.close()
