"""One saved position serves one set of rows. A job file run with ``-p region=east`` and then
``-p region=west`` under one identity read west only above east's position and reported
success; now the second run fails before any row moves, naming what differs. What only
the run's times change (``${bizdate}``, a parameter ``$[yyyymmdd-1]``) is the same job."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tidesync.engine.runner import _reads_of
from tidesync.state import POSITIONS
from tidesync.state.sqlite import SqliteState

TIDESYNC = str(Path(sys.executable).with_name("tidesync"))


def project(tmp_path: Path, where: str, setting: dict[str, Any] | None = None) -> Path:
    con = sqlite3.connect(tmp_path / "src.db")
    con.executescript(
        "CREATE TABLE o (id INTEGER, region TEXT);"
        "INSERT INTO o VALUES (1, 'west'), (2, 'east'), (3, 'west'), (4, 'east');"
    )
    con.commit()
    con.close()
    reader = {
        "jdbcUrl": "jdbc:sqlite:src.db",
        "table": ["o"],
        "where": where,
        "column": ["id", "region"],
        "incremental": {"column": "id"},
    }
    writer = {"path": "out_${region}", "fileName": "o", "writeMode": "truncate"}
    content = {
        "reader": {"name": "sqlitereader", "parameter": reader},
        "writer": {"name": "txtfilewriter", "parameter": writer},
    }
    job = tmp_path / "orders.json"
    job.write_text(json.dumps({"job": {"setting": setting or {}, "content": [content]}}))
    return job


def run(job: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIDESYNC, "run", str(job), *args],
        cwd=job.parent,
        capture_output=True,
        text=True,
        timeout=120,
    )


def saved(tmp_path: Path) -> dict[str, Any]:
    state = SqliteState(tmp_path / ".tidesync" / "state.db")
    try:
        return {e.key: e.value for e in state.list(POSITIONS)}
    finally:
        state.close()


def rows(out: Path) -> list[str]:
    return sorted(line for f in out.iterdir() for line in f.read_text().splitlines())


def test_a_second_set_of_rows_under_one_position_is_refused_before_any_row_moves(
    tmp_path: Path,
) -> None:
    job = project(tmp_path, "region = '${region}'")
    assert run(job, "-p", "region=east").returncode == 0
    assert rows(tmp_path / "out_east") == ["2,east", "4,east"]
    before = saved(tmp_path)
    r = run(job, "-p", "region=west")
    assert r.returncode == 1, r.stderr
    assert "failed: 0 read, 0 written" in r.stderr
    assert (
        "job.content[0].reader.parameter.incremental: the saved position of 'orders.json#0' was read from "
        "other rows than this run reads (where: \"region = 'east'\" then, \"region = 'west'\" "
        "now)" in r.stderr
    )
    assert "setting.stateKey" in r.stderr and "tidesync state reset orders.json" in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out_west").exists()
    assert saved(tmp_path) == before
    # the same rows again are the same job: it resumes from its position
    assert run(job, "-p", "region=east").returncode == 0


def test_a_state_key_holding_the_parameter_gives_each_set_of_rows_its_own_position(
    tmp_path: Path,
) -> None:
    job = project(tmp_path, "region = '${region}'", {"stateKey": "orders_${region}"})
    assert run(job, "-p", "region=east").returncode == 0
    r = run(job, "-p", "region=west")
    assert r.returncode == 0, r.stderr
    assert rows(tmp_path / "out_west") == ["1,west", "3,west"]
    assert sorted(saved(tmp_path)) == ["orders_east#0", "orders_west#0"]


def test_what_only_the_run_time_changes_is_the_same_job(tmp_path: Path) -> None:
    # the day's where and a parameter made of a date pattern differ from run to run by the
    # run time alone: the position carries on
    job = project(tmp_path, "region <> '${bizdate}' AND region <> '${day}'")
    for cyctime in ("20261201", "20261202"):
        r = run(job, "--cyctime", cyctime, "-p", "day=$[yyyymmdd-1]", "-p", "region=all")
        assert r.returncode == 0, r.stderr
    assert saved(tmp_path)["orders.json#0"]["positions"]["o"]["value"] == 4


def test_what_a_position_remembers_of_its_rows_holds_no_credentials() -> None:
    reads = json.loads(
        _reads_of(
            {
                "username": "ann",
                "password": "s3cret",
                "connection": [
                    {
                        "jdbcUrl": ["jdbc:mysql://ann:s3cret@db1:3306/shop?password=s3cret"],
                        "table": ["orders"],
                    }
                ],
                "where": "id > 0",
                "incremental": {"column": "optime", "start": "2026-01-01"},
                "column": ["id"],
            }
        )
    )
    assert reads == {
        "connection[0].jdbcUrl": ["jdbc:mysql://db1:3306/shop"],
        "connection[0].table": ["orders"],
        "where": "id > 0",
        "incremental.column": "optime",
    }


def test_two_job_files_sharing_a_state_key_into_two_targets_are_refused(tmp_path: Path) -> None:
    # a job copied with its stateKey and given another target: the copy read nothing below
    # the first's position and reported success
    job = project(tmp_path, "1 = 1", {"stateKey": "orders"})
    doc = json.loads(job.read_text())
    doc["job"]["content"][0]["writer"]["parameter"]["path"] = "out_copy"
    copy = tmp_path / "orders_copy.json"
    copy.write_text(json.dumps(doc))
    assert run(job, "-p", "region=all").returncode == 0
    before = saved(tmp_path)
    r = run(copy)
    assert r.returncode == 1, r.stderr
    assert (
        "the saved position of 'orders#0' was saved by the job "
        f"'{job.resolve().as_posix()}' writing another target than this job, "
        f"'{copy.resolve().as_posix()}', writes (path: 'out_all' then, 'out_copy' now)"
    ) in r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out_copy").exists()
    assert saved(tmp_path) == before
    # one job file writing a target of each run keeps its one position
    with sqlite3.connect(tmp_path / "src.db") as con:
        con.execute("INSERT INTO o VALUES (5, 'west')")
    assert run(job, "-p", "region=next").returncode == 0
    assert rows(tmp_path / "out_next") == ["5,west"]
