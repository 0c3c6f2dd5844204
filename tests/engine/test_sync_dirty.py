"""``writeMode: sync`` with dirty records: a record lost as dirty must not take its key's target
row with it. ``sync`` deletes the rows whose key the run did not write; a source row that
became dirty before the writer (a value the reader could not read) was never written, so with
an ``errorLimit`` above 0 the run would succeed having deleted a row the source still has."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from tidesync.engine.runner import load_job, run_job
from tidesync.spec.params import RunTime

RT = RunTime.of("20250101000000")
COLUMNS = [
    {"index": 0, "type": "long", "name": "id"},
    {"index": 1, "type": "string", "name": "name"},
    {"index": 2, "type": "long", "name": "qty"},
]


def _job(tmp_path: Path, csv: str, writer: dict[str, Any]) -> Path:
    (tmp_path / "src.csv").write_text(csv)
    job = {
        "job": {
            "setting": {"errorLimit": {"record": 5}},
            "content": [
                {
                    "reader": {
                        "name": "txtfilereader",
                        "parameter": {
                            "path": [str(tmp_path / "src.csv")],
                            "column": COLUMNS,
                            "fieldDelimiter": ",",
                        },
                    },
                    "writer": writer,
                }
            ],
        }
    }
    p = tmp_path / "job.json"
    p.write_text(json.dumps(job))
    return p


def _sqlite(tmp_path: Path) -> Path:
    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE dst (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
    con.executemany("INSERT INTO dst VALUES (?, ?, ?)", [(1, "a", 1), (2, "b", 2), (3, "c", 3)])
    con.commit()
    con.close()
    return db


def _rows(db: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, name, qty FROM dst ORDER BY id").fetchall()
    finally:
        con.close()


def _sqlite_writer(db: Path, mode: str) -> dict[str, Any]:
    return {
        "name": "sqlitewriter",
        "parameter": {
            "database": str(db),
            "table": ["dst"],
            "column": ["id", "name", "qty"],
            "writeMode": mode,
        },
    }


def test_a_sync_with_a_record_dirty_before_the_writer_publishes_nothing(tmp_path: Path) -> None:
    db = _sqlite(tmp_path)
    # id 2's qty is not a number: dirty at the reader, so the writer never sees key 2
    job = _job(tmp_path, "1,A,10\n2,B,many\n4,D,40\n", _sqlite_writer(db, "sync"))
    rep = run_job(load_job(job, runtime=RT), report_path=tmp_path / "report.json")
    assert rep.status == "failed"
    assert rep.dirty_records == 1
    assert (
        "job.content[0].writer.parameter.writeMode: 'sync' deletes the target's rows whose key "
        "the run did not write, and 1 record became dirty before reaching the writer"
    ) in str(rep.error)
    assert "nothing was published" in str(rep.error)
    assert _rows(db) == [(1, "a", 1), (2, "b", 2), (3, "c", 3)]  # untouched, key 2 included
    assert (tmp_path / "report.dirty.jsonl").read_text().count("\n") == 1  # still listed


def test_merge_with_the_same_dirty_record_writes_the_rest(tmp_path: Path) -> None:
    """The refusal is sync's alone: merge deletes nothing it is not told to."""
    db = _sqlite(tmp_path)
    job = _job(tmp_path, "1,A,10\n2,B,many\n4,D,40\n", _sqlite_writer(db, "merge"))
    rep = run_job(load_job(job, runtime=RT))
    assert rep.status == "succeeded", rep.error
    assert _rows(db) == [(1, "A", 10), (2, "b", 2), (3, "c", 3), (4, "D", 40)]


def test_a_sync_with_a_row_dirty_at_the_sql_writer_keeps_that_keys_row(tmp_path: Path) -> None:
    """The SQL writers know the key of a row dirty at their own write: it counts as written,
    the target's row of that key stays as it was, the rest is synced."""
    db = _sqlite(tmp_path)
    con = sqlite3.connect(db)
    con.executescript(
        "DROP TABLE dst; CREATE TABLE dst (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty "
        "INTEGER); INSERT INTO dst VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3);"
    )
    con.close()
    writer = _sqlite_writer(db, "sync")
    job = _job(tmp_path, "1,A,10\n2,,20\n4,D,40\n", writer)
    data = json.loads(job.read_text())
    data["job"]["content"][0]["reader"]["parameter"]["nullFormat"] = ""
    job.write_text(json.dumps(data))
    rep = run_job(load_job(job, runtime=RT))
    assert rep.status == "succeeded", rep.error
    assert rep.dirty_records == 1
    assert _rows(db) == [(1, "A", 10), (2, "b", 2), (4, "D", 40)]


def test_a_lake_sync_with_a_row_dirty_at_the_writer_publishes_nothing(tmp_path: Path) -> None:
    """The lake writer does not keep the keys of the rows dirty at its write (a key it cannot
    read, a value that does not fit the table): a sync with one publishes nothing."""
    writer = {
        "name": "lakewriter",
        "parameter": {"format": "hive", "table": "t", "writeMode": "append"},  # beside the job
    }
    rep = run_job(load_job(_job(tmp_path, "1,a,1\n2,b,2\n3,c,3\n", writer), runtime=RT))
    assert rep.status == "succeeded", rep.error
    before = sorted(pq.read_table(tmp_path / "t").to_pylist(), key=lambda r: r["id"])
    assert [r["id"] for r in before] == [1, 2, 3]
    writer["parameter"].update(writeMode="sync", primaryKey=["id"])
    job = _job(tmp_path, "1,A,10\n,B,20\n4,D,40\n", writer)
    data = json.loads(job.read_text())
    data["job"]["content"][0]["reader"]["parameter"]["nullFormat"] = ""
    job.write_text(json.dumps(data))  # the second row's key is null: dirty at the lake writer
    rep = run_job(load_job(job, runtime=RT))
    assert rep.status == "failed"
    assert rep.dirty_records == 1
    assert (
        "'sync' deletes the target's rows whose key the run did not write, and 1 record became "
        "dirty at the writer"
    ) in str(rep.error)
    after = sorted(pq.read_table(tmp_path / "t").to_pylist(), key=lambda r: r["id"])
    assert after == before
