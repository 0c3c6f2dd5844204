"""Positions belong to the engine: kept per split, saved under the job's identity only after
the writer committed (compare-and-set against what the run started from), then told to the
reader."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.engine import _memory, _positions
from tidesync.connectors import base
from tidesync.engine.runner import load_job, run_job
from tidesync.spec.params import RunTime
from tidesync.state import POSITIONS
from tidesync.state.sqlite import SqliteState

RT = RunTime.of("20250101000000")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def connectors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.CONNECTORS, "memory", "tests.engine._memory")
    monkeypatch.setitem(base.CONNECTORS, "counter", "tests.engine._positions")
    _memory.PUBLISHED.clear()
    _positions.COMMITTED.clear()


def job(
    path: Path, *, writer: dict[str, Any] | None = None, setting: dict[str, Any] | None = None
) -> Path:
    doc = {
        "job": {
            "setting": setting or {},
            "content": [
                {
                    "reader": {"name": "counter", "parameter": {"rows": 10, "splits": 2}},
                    "writer": {"name": "memory", "parameter": {"target": "t", **(writer or {})}},
                }
            ],
        }
    }
    path.write_text(json.dumps(doc))
    return path


def run(path: Path, state: SqliteState, **kw: Any) -> Any:
    return run_job(load_job(path, runtime=RT, state=state, root=path.parent, **kw))


def published() -> list[int]:
    return sorted(i for b in _memory.PUBLISHED.get("t", []) for i in b.column(0).to_pylist())


def saved(state: SqliteState, key: str = "job.json#0") -> Any:
    e = state.get(POSITIONS, key)
    return e.value["positions"] if e else None


def test_positions_are_saved_after_the_commit_and_the_next_run_resumes(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.db")
    path = job(tmp_path / "job.json")
    assert run(path, state).status == "succeeded"
    assert published() == [*range(10), *range(1000, 1010)]
    assert saved(state) == {"part0": {"next": 10}, "part1": {"next": 1010}}
    assert run(path, state).status == "succeeded"
    assert published() == [*range(10, 20), *range(1010, 1020)]
    assert saved(state) == {"part0": {"next": 20}, "part1": {"next": 1020}}


def test_a_failed_commit_leaves_the_old_positions(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.db")
    ok = job(tmp_path / "job.json")
    run(ok, state)
    failing = job(tmp_path / "job.json", writer={"failCommit": True})
    rep = run(failing, state)
    assert rep.status == "failed" and "commit refused" in (rep.error or "")
    assert saved(state) == {"part0": {"next": 10}, "part1": {"next": 1010}}
    assert len(_positions.COMMITTED) == 1  # the reader heard only of the run that committed
    run(job(tmp_path / "job.json"), state)
    assert published() == [*range(10, 20), *range(1010, 1020)]  # the failed window, again


def test_a_crash_between_write_and_commit_leaves_the_old_positions(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.db")
    run(job(tmp_path / "job.json"), state)
    before = state.get(POSITIONS, "job.json#0")
    job(tmp_path / "job.json", writer={"crashCommit": True})
    code = f"""
from pathlib import Path
from tidesync.connectors import base
base.CONNECTORS["memory"] = "tests.engine._memory"
base.CONNECTORS["counter"] = "tests.engine._positions"
from tidesync.engine.runner import load_job, run_job
from tidesync.spec.params import RunTime
from tidesync.state.sqlite import SqliteState
p = Path({str(tmp_path / "job.json")!r})
run_job(load_job(p, runtime=RunTime.of("20250101000000"),
                 state=SqliteState(Path({str(tmp_path / "state.db")!r})), root=p.parent))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 70, proc.stderr  # died inside commit, after every sink closed
    assert state.get(POSITIONS, "job.json#0") == before


def test_the_reader_is_told_the_positions_once_they_are_saved(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.db")
    run(job(tmp_path / "job.json"), state)
    told, stored = _positions.COMMITTED[0]
    assert told == {"part0": {"next": 10}, "part1": {"next": 1010}}
    assert stored == {"positions": told}


def test_a_failure_to_confirm_positions_is_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(self: Any, positions: dict[str, Any]) -> None:
        raise RuntimeError("slot is gone")

    monkeypatch.setattr(_positions.Reader, "committed", refuse)
    state = SqliteState(tmp_path / "state.db")
    with caplog.at_level(logging.WARNING, logger="tidesync"):
        rep = run(job(tmp_path / "job.json"), state)
    assert rep.status == "succeeded" and saved(state) is not None
    assert "slot is gone" in caplog.text


def test_a_run_that_lost_the_race_for_its_positions_fails_and_keeps_the_winners(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a store that cannot hold the positions (the hold makes a second run wait instead): the
    # check before publishing still refuses the run that lost
    monkeypatch.setattr(SqliteState, "hold", None)
    state = SqliteState(tmp_path / "state.db")
    path = job(tmp_path / "job.json")
    first = load_job(path, runtime=RT, state=state, root=tmp_path)
    second = load_job(path, runtime=RT, state=state, root=tmp_path)
    first.parts[0].reader.splits(1), second.parts[0].reader.splits(1)  # both start from none
    assert run_job(first).status == "succeeded"
    assert published() == [*range(10), *range(1000, 1010)]
    rep = run_job(second)
    # both read the same window: the second is refused before it publishes those rows again
    assert rep.status == "failed"
    assert "another run of this job saved the positions of 'job.json#0' while this one ran" in (
        rep.error or ""
    )
    assert "nothing was published" in (rep.error or "")
    assert published() == [*range(10), *range(1000, 1010)]
    assert saved(state) == {"part0": {"next": 10}, "part1": {"next": 1010}}


def test_positions_are_kept_per_job_and_shared_by_a_state_key(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.db")
    a = job(tmp_path / "a.json")
    b = job(tmp_path / "b.json")
    run(a, state)
    run(b, state)
    assert published() == [*range(10), *range(1000, 1010)]  # b's own first run
    assert {e.key for e in state.list(POSITIONS)} == {"a.json#0", "b.json#0"}
    shared = {"stateKey": "orders"}
    run(job(tmp_path / "c.json", setting=shared), state)
    run(job(tmp_path / "d.json", setting=shared), state)
    assert published() == [*range(10, 20), *range(1010, 1020)]  # d went on from c
    assert saved(state, "orders#0") == {"part0": {"next": 20}, "part1": {"next": 1020}}


def test_the_report_names_the_state_store(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "state.db")
    rep = run(job(tmp_path / "job.json"), state)
    assert rep.state == f"sqlite {tmp_path / 'state.db'}"


def test_positions_come_back_from_tasks_run_in_fresh_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3
    from contextlib import closing

    from tests.engine import _spawn
    from tidesync.engine import executor as ex

    monkeypatch.setitem(ex.EXECUTORS, "spawn", _spawn.SpawnExecutor)
    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute("CREATE TABLE oplog (id INTEGER, optime DATETIME)")
        con.executemany(
            "INSERT INTO oplog VALUES (?, ?)",
            [(i, f"2016-11-{10 + i:02d} 10:00:00") for i in range(1, 5)],
        )
        con.commit()
    reader = {
        "name": "sqlitereader",
        "parameter": {
            "connection": [{"jdbcUrl": ["jdbc:sqlite:src.db"], "table": ["oplog"]}],
            "column": ["id"],
            "splitPk": "id",
            "incremental": {"column": "optime"},
        },
    }
    writer = {"name": "txtfilewriter", "parameter": {"path": "out", "fileName": "ids.csv"}}
    path = tmp_path / "job.json"
    doc = {
        "setting": {"speed": {"concurrent": 2}, "executor": "spawn"},
        "content": [{"reader": reader, "writer": writer}],
    }
    path.write_text(json.dumps({"job": doc}))
    state = SqliteState(tmp_path / "state.db")
    first = run_job(
        load_job(path, runtime=RunTime.of("20161120000000"), state=state, root=tmp_path)
    )
    assert (first.status, first.records_read) == ("succeeded", 4), first.error
    assert _spawn.PIDS and os.getpid() not in _spawn.PIDS  # read in other processes
    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute("INSERT INTO oplog VALUES (5, '2016-11-15 10:00:00')")
        con.commit()
    second = run_job(
        load_job(path, runtime=RunTime.of("20161121000000"), state=state, root=tmp_path)
    )
    assert (second.status, second.records_read) == ("succeeded", 1), second.error
    values = [p["value"] for p in saved(state).values()]
    assert max(values) == "2016-11-15 10:00:00"


def test_two_runs_of_one_incremental_job_take_turns(tmp_path: Path) -> None:
    # two instances of one node run at once (catch-up, no self-dependency): both read the
    # window from the same saved cursor, so the later one published the earlier one's rows
    # too, and the earlier one, committing at the same moment, published as well. The second
    # to start now waits until the first has saved its positions, then reads after them
    import sqlite3
    from contextlib import closing

    from tests.connectors._runs import finish, reached, release, start

    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute("CREATE TABLE oplog (id INTEGER, optime DATETIME, v TEXT)")
        con.executemany(
            "INSERT INTO oplog VALUES (?, ?, ?)",
            [(1, "2016-11-13 10:00:00", "a"), (2, "2016-11-14 10:00:00", "b")],
        )
        con.execute("INSERT INTO oplog VALUES (3, '2016-11-15 10:00:00', 'c')")
        con.commit()
    reader = {
        "name": "sqlitereader",
        "parameter": {
            "database": "src.db",
            "table": "oplog",
            "column": ["id", "v"],
            "incremental": {"column": "optime", "start": "2016-11-14"},
        },
    }
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out/ds=${bizdate}", "fileName": "o", "writeMode": "truncate"},
    }
    (tmp_path / "job.json").write_text(
        json.dumps({"job": {"content": [{"reader": reader, "writer": writer}]}})
    )
    first = start(
        "run",
        "job.json",
        "--cyctime",
        "20161115",
        cwd=tmp_path,
        hooks=f"run.commit=hold:{tmp_path}",
    )
    reached(tmp_path, "run.commit", first)  # its window read, nothing published yet
    second = start(
        "run",
        "job.json",
        "--cyctime",
        "20161116",
        cwd=tmp_path,
        hooks=f"positions.wait=mark:{tmp_path}",
    )
    reached(tmp_path, "positions.wait", second)
    release(tmp_path, "run.commit")
    assert finish(first)[0] == 0
    rc, err = finish(second)
    assert rc == 0, err

    def part(ds: str) -> list[str]:
        return (tmp_path / "out" / f"ds={ds}" / "o").read_text().splitlines()

    assert (part("20161114"), part("20161115")) == (["2,b"], ["3,c"])


def test_a_job_loaded_and_not_run_leaves_its_positions_to_the_threads_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`validate` or `cdc check` read a job's positions without running it, so nothing ends
    their hold: the same thread's next run of the job takes it over instead of waiting for it
    (another thread still waits: see the hold's own tests)."""
    from tidesync.state import base as state_base

    monkeypatch.setattr(state_base, "HOLD_WAIT_S", 2.0)  # a wait would fail, not hang
    state = SqliteState(tmp_path / "state.db")
    path = job(tmp_path / "job.json")
    assert run(path, state).status == "succeeded"
    loaded = load_job(path, runtime=RT, state=state, root=path.parent)
    loaded.parts[0].reader.ctx.stored_positions()  # what `cdc check` does: the hold is taken
    rep = run(path, state)
    assert rep.status == "succeeded", rep.error
    assert published() == [*range(10, 20), *range(1010, 1020)]
