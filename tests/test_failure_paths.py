"""Signals and failure paths of ``tidesync run``, as a user meets them: a signal while the job
loads, a full SQLite database, a report that cannot be written before or after the data is
published. Runs are separate processes stopped at named points (``TIDESYNC_TEST_HOOKS``)."""

from __future__ import annotations

import json
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.connectors._runs import finish, reached, release, start, stream_job, tidesync

STREAM_OUT = {"name": "streamwriter", "parameter": {"print": False}}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_job_loads_stops_it_with_a_message(
    tmp_path: Path, sig: signal.Signals
) -> None:
    job = stream_job(tmp_path, STREAM_OUT, 10, "a")
    proc = start("run", job, cwd=tmp_path, hooks=f"cli.load=hold:{tmp_path}")
    reached(tmp_path, "cli.load", proc)
    proc.send_signal(sig)
    code, err = finish(proc)
    assert code == 1, err
    assert f"{sig.name}: stopped before any data moved; nothing was published" in err
    assert "Aborted!" not in err and "Traceback" not in err


def _sqlite_job(tmp_path: Path, db: Path, rows: int, session: list[str]) -> Path:
    writer = {
        "name": "sqlitewriter",
        "parameter": {"database": str(db), "table": "t", "writeMode": "insert", "session": session},
    }
    return stream_job(tmp_path, writer, rows, "x" * 200, concurrent=1)


def test_a_full_sqlite_database_says_so_and_keeps_the_table(tmp_path: Path) -> None:
    db = tmp_path / "full.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id INTEGER, gen TEXT)")
        con.execute("INSERT INTO t VALUES (-1, 'before')")
    con.close()
    # a real limit of the database, as a full disk would be: a few pages more than it has
    job = _sqlite_job(tmp_path, db, 20_000, ["PRAGMA max_page_count = 8"])
    r = tidesync("run", job, "--report", "r.json", cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert "database or disk is full" in report["error"]
    assert "rolled the transaction back" in report["error"]
    assert "no such savepoint" not in r.stderr + report["error"]
    assert report["error_code"] == "SQLITE_FULL"
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT id, gen FROM t").fetchall() == [(-1, "before")]
    con.close()


def test_a_report_that_cannot_be_written_is_refused_before_any_data_moves(
    tmp_path: Path,
) -> None:
    db = tmp_path / "out.db"
    job = _sqlite_job(tmp_path, db, 5, [])
    (tmp_path / "taken").write_text("a file where the report's folder should be")
    r = tidesync("run", job, "--report", "taken/run.json", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: --report: cannot write taken/run.json:")
    assert not db.exists()  # nothing was written


def test_a_report_failing_after_the_commit_is_a_warning_and_the_run_succeeds(
    tmp_path: Path,
) -> None:
    db = tmp_path / "out.db"
    job = _sqlite_job(tmp_path, db, 5, [])
    (tmp_path / "reports").mkdir()
    proc = start(
        "run",
        job,
        "--report",
        "reports/run.json",
        cwd=tmp_path,
        hooks=f"run.commit=hold:{tmp_path}",
    )
    reached(tmp_path, "run.commit", proc)
    (tmp_path / "reports").rename(tmp_path / "moved")  # the folder goes away during the run
    (tmp_path / "reports").write_text("now a file")
    release(tmp_path, "run.commit")
    code, err = finish(proc)
    assert code == 0, err
    assert "the run succeeded and its data is published; the report could not be written" in err
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM t").fetchone() == (5,)
    con.close()
