"""The lake connector: Iceberg tables and Hive-style Parquet folders, every write mode, atomic
publishing, schema evolution, lifecycle, time travel and bad input."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tidesync.connectors import base
from tidesync.connectors.lake import Reader, Writer
from tidesync.connectors.lake import hive as _lake_hive
from tidesync.engine.runner import load_job, run_job
from tidesync.errors import ConfigError, DirtyRecordError, FatalError
from tidesync.spec.params import RunTime

WHERE = "job.content[0].writer.parameter"
TABLE = {"iceberg": "ods.t", "hive": "t"}
BIZDATE = date(2016, 11, 14)


@pytest.fixture(params=["iceberg", "hive"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def ctx(tmp_path: Path, where: str = WHERE, bizdate: date | None = BIZDATE) -> base.Context:
    return base.Context(base_dir=tmp_path, where=where, bizdate=bizdate)


def batch(**cols: Any) -> pa.RecordBatch:
    return pa.record_batch(cols)


def writer(tmp_path: Path, fmt: str, **params: Any) -> Writer:
    return Writer({"format": fmt, "table": TABLE[fmt], **params}, ctx(tmp_path))


def stage(w: Writer, batches: list[pa.RecordBatch], schema: pa.Schema | None = None) -> list[Any]:
    """What the engine does up to the commit: one split per batch."""
    w.prepare(schema if schema is not None else (batches[0].schema if batches else None))
    results = []
    for i, b in enumerate(batches):
        sink = w.open(base.Split(i, f"split {i}"))
        sink.write(b)
        results.append(sink.close())
    return results


def write(tmp_path: Path, fmt: str, batches: list[pa.RecordBatch], **params: Any) -> None:
    w = writer(tmp_path, fmt, **params)
    w.commit(stage(w, batches))


def read(tmp_path: Path, fmt: str, **params: Any) -> list[dict[str, Any]]:
    r = Reader({"format": fmt, "table": TABLE[fmt], **params}, ctx(tmp_path, "reader"))
    schema = r.schema()
    rows = pa.Table.from_batches([b for s in r.splits(4) for b in r.read(s)], schema).to_pylist()
    return sorted(rows, key=lambda d: [str(v) for v in d.values()])


def ids(rows: list[dict[str, Any]]) -> list[Any]:
    return sorted(r["id"] for r in rows)


def iceberg_table(tmp_path: Path) -> Any:
    from tidesync.connectors.lake.iceberg import load_catalog

    return load_catalog(None, tmp_path / "warehouse").load_table("ods.t")


def snapshot_count(tmp_path: Path, fmt: str) -> int:
    return len(iceberg_table(tmp_path).snapshots()) if fmt == "iceberg" else 0


def files_on_disk(tmp_path: Path) -> set[str]:
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet")}


B3 = batch(id=[1, 2, 3], v=["a", "b", "c"])


# -- write modes -------------------------------------------------------------------------------


def test_append_adds_the_rows_to_what_is_there(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    write(tmp_path, fmt, [batch(id=[4], v=["d"])], writeMode="append")
    assert ids(read(tmp_path, fmt)) == [1, 2, 3, 4]


def test_overwrite_replaces_exactly_the_named_partition(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161113")
    write(tmp_path, fmt, [B3], partition="ds=20161114")
    write(tmp_path, fmt, [batch(id=[9], v=["z"])], partition="ds=20161114", writeMode="overwrite")
    assert read(tmp_path, fmt, partition="ds=20161114") == [{"id": 9, "v": "z", "ds": "20161114"}]
    assert ids(read(tmp_path, fmt, partition="ds=20161113")) == [1, 2, 3]


@pytest.mark.parametrize("value", ["a%2Fb", "50%25", "x%41", "50%", "10:00 x"])
def test_a_partition_value_reads_back_as_written(tmp_path: Path, value: str) -> None:
    # readers (this one, pyarrow, DuckDB, Spark) decode %XX in a folder name: the value
    # a%2Fb, written as the folder ds=a%2Fb, came back as a/b
    write(tmp_path, "hive", [B3], partition=f"ds={value}")
    write(tmp_path, "hive", [batch(id=[9], v=["z"])], partition=f"ds={value}")
    assert read(tmp_path, "hive") == [{"id": 9, "v": "z", "ds": value}]
    assert read(tmp_path, "hive", partition=f"ds={value}") == [{"id": 9, "v": "z", "ds": value}]
    import pyarrow.dataset as ds

    got = ds.dataset(tmp_path / "t", format="parquet", partitioning="hive").to_table()
    assert got.column("ds").cast(pa.string()).to_pylist() == [value]


def test_hives_null_partition_folder_reads_as_null_and_is_not_written(tmp_path: Path) -> None:
    """Hive, Spark and pyarrow write a NULL partition value as the folder
    ds=__HIVE_DEFAULT_PARTITION__ and read it back as NULL: so does this reader, and a writer
    asked for that value refuses rather than write rows every other reader sees as NULL."""
    for i, value in enumerate(["__HIVE_DEFAULT_PARTITION__", "x"], 1):
        folder = tmp_path / "t" / f"ds={value}"
        folder.mkdir(parents=True)
        pq.write_table(pa.table({"id": [i]}), folder / "part-0.parquet")
    assert read(tmp_path, "hive") == [{"id": 1, "ds": None}, {"id": 2, "ds": "x"}]
    got = read(tmp_path, "hive", partition="ds=__HIVE_DEFAULT_PARTITION__")
    assert got == [{"id": 1, "ds": None}]
    with pytest.raises(ConfigError, match=r"partition: .*__HIVE_DEFAULT_PARTITION__.* NULL"):
        writer(tmp_path, "hive", partition="ds=__HIVE_DEFAULT_PARTITION__")


@pytest.mark.parametrize(
    ("foreign", "what"),
    [
        (pa.table({"id": pa.array([2], pa.int32()), "v": ["b"], "w": [5]}), "has column 'w'"),
        (pa.table({"id": pa.array([1 << 40]), "v": ["b"]}), "column 'id' is int64"),
    ],
    ids=["extra-column", "wider-type"],
)
def test_a_hive_file_the_tables_schema_cannot_hold_is_an_error_naming_it(
    tmp_path: Path, foreign: pa.Table, what: str
) -> None:
    """A file another tool put in the table, with a column _common_metadata lacks or a type
    wider than its, was read with the column dropped (or failed with a bare ArrowInvalid), and
    a merge rewriting the file dropped the column for good."""
    first = batch(id=pa.array([1], pa.int32()), v=["a"])
    write(tmp_path, "hive", [first], partition="ds=1")
    pq.write_table(foreign, tmp_path / "t" / "ds=1" / "foreign.parquet")
    with pytest.raises(FatalError, match=rf"foreign.parquet {what}"):
        read(tmp_path, "hive")
    change = batch(id=pa.array([2], pa.int32()), v=["c"])
    with pytest.raises(FatalError, match=rf"foreign.parquet {what}"):
        write(tmp_path, "hive", [change], partition="ds=1", writeMode="merge", primaryKey=["id"])
    assert pq.read_table(tmp_path / "t" / "ds=1" / "foreign.parquet") == foreign


def test_a_hive_column_parquet_cannot_hold_is_a_config_error_naming_it(tmp_path: Path) -> None:
    # an interval failed at the first file with Arrow's "Unhandled type for Arrow to Parquet
    # schema conversion", naming no column
    iv = pa.array([pa.MonthDayNano([1, 2, 0])], pa.month_day_nano_interval())
    w = writer(tmp_path, "hive")
    with pytest.raises(ConfigError, match=r"table: column 'iv' has type .* a Parquet file cannot"):
        w.prepare(pa.schema([("id", pa.int64()), ("iv", iv.type)]))
    assert not (tmp_path / "t").exists()


@pytest.mark.parametrize(
    ("value", "why"),
    [("a\x00b", "control character"), ("a\nb", "control character"), ("x" * 300, "255 bytes")],
    ids=["nul", "newline", "too-long"],
)
def test_a_hive_partition_value_no_folder_can_name_is_a_config_error(
    tmp_path: Path, value: str, why: str
) -> None:
    # was a bare ValueError (embedded null byte) or OSError (File name too long) at the
    # commit; a newline made a folder Hive itself would have escaped
    with pytest.raises(ConfigError, match=rf"writer.parameter.partition: ds=.*{why}"):
        writer(tmp_path, "hive", partition=f"ds={value}")
    assert not (tmp_path / "t").exists()


def test_overwrite_of_one_level_leaves_its_sibling_levels(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="pt=20150101/type=1")
    write(tmp_path, fmt, [B3], partition="pt=20150101/type=2")
    write(tmp_path, fmt, [batch(id=[7], v=["q"])], partition="pt=20150101/type=1")
    rows = read(tmp_path, fmt)
    assert sorted((r["type"], r["id"]) for r in rows) == [("1", 7), ("2", 1), ("2", 2), ("2", 3)]


def test_overwrite_without_partition_replaces_the_whole_table(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    write(tmp_path, fmt, [batch(id=[5], v=["e"])], writeMode="overwrite")
    assert ids(read(tmp_path, fmt)) == [5]


def test_partition_defaults_to_overwrite_so_a_rerun_never_doubles_rows(
    tmp_path: Path, fmt: str
) -> None:
    for _ in range(3):
        write(tmp_path, fmt, [B3, B3], partition="ds=20161114")
    assert ids(read(tmp_path, fmt)) == [1, 1, 2, 2, 3, 3]


def test_merge_upserts_by_key(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    write(tmp_path, fmt, [batch(id=[2, 4], v=["B", "d"])], writeMode="merge", primaryKey=["id"])
    assert [(r["id"], r["v"]) for r in read(tmp_path, fmt)] == [
        (1, "a"),
        (2, "B"),
        (3, "c"),
        (4, "d"),
    ]


@pytest.mark.parametrize(
    ("extra", "params"),
    [
        ({"deleted": [0, 1]}, {"deleteMarker": {"column": "deleted", "value": 1}}),
        ({"_op": ["u", "d"]}, {}),
    ],
    ids=["deleteMarker", "cdc-op"],
)
def test_merge_removes_rows_the_source_marks_deleted(
    tmp_path: Path, fmt: str, extra: dict[str, list[Any]], params: dict[str, Any]
) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    changes = batch(id=[1, 3], v=["A", "c"], **extra)
    write(tmp_path, fmt, [changes], writeMode="merge", primaryKey="id", **params)
    rows = read(tmp_path, fmt)
    assert rows == [{"id": 1, "v": "A"}, {"id": 2, "v": "b"}]  # the marker column is not written


def test_merge_keeps_the_last_row_of_a_key(tmp_path: Path, fmt: str) -> None:
    write(
        tmp_path,
        fmt,
        [batch(id=[1, 1, 1], v=["x", "y", "z"])],
        writeMode="merge",
        primaryKey=["id"],
    )
    assert read(tmp_path, fmt) == [{"id": 1, "v": "z"}]


def test_merge_with_a_composite_key(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [batch(a=[1, 1, 2], b=["x", "y", "x"], v=[1, 2, 3])], writeMode="append")
    write(
        tmp_path,
        fmt,
        [batch(a=[1, 2], b=["y", "y"], v=[20, 40])],
        writeMode="merge",
        primaryKey=["a", "b"],
    )
    rows = read(tmp_path, fmt)
    assert sorted((r["a"], r["b"], r["v"]) for r in rows) == [
        (1, "x", 1),
        (1, "y", 20),
        (2, "x", 3),
        (2, "y", 40),
    ]


def test_merge_replaces_every_copy_of_a_key_the_target_held_twice(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    write(tmp_path, fmt, [B3], writeMode="append")
    write(tmp_path, fmt, [batch(id=[2], v=["b"])], writeMode="merge", primaryKey=["id"])
    assert ids(read(tmp_path, fmt)) == [1, 1, 2, 3, 3]


def test_rerunning_a_merge_changes_nothing(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    changes = batch(id=[2, 4], v=["B", "d"])
    write(tmp_path, fmt, [changes], writeMode="merge", primaryKey=["id"])
    before_rows, before_files = read(tmp_path, fmt), files_on_disk(tmp_path)
    before_snaps = snapshot_count(tmp_path, fmt)
    write(tmp_path, fmt, [changes], writeMode="merge", primaryKey=["id"])
    assert read(tmp_path, fmt) == before_rows
    assert snapshot_count(tmp_path, fmt) == before_snaps
    if fmt == "hive":
        assert files_on_disk(tmp_path) == before_files


def test_sync_deletes_the_keys_the_source_no_longer_has(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    current = batch(id=[1, 3, 6], v=["a", "C", "f"])
    write(tmp_path, fmt, [current], writeMode="sync", primaryKey=["id"])
    assert [(r["id"], r["v"]) for r in read(tmp_path, fmt)] == [(1, "a"), (3, "C"), (6, "f")]


def test_sync_refuses_a_key_sent_in_rows_that_differ(tmp_path: Path, fmt: str) -> None:
    """A snapshot holds each key once: two different rows of one key (from two splits here)
    leave which is current unknown, so nothing is published; the same row twice is fine."""
    write(tmp_path, fmt, [B3], writeMode="append")
    w = writer(tmp_path, fmt, writeMode="sync", primaryKey=["id"])
    results = stage(w, [batch(id=[1, 2], v=["a", "x"]), batch(id=[2, 3], v=["y", "c"])])
    with pytest.raises(FatalError, match=r"writeMode sync: the source sent key id=2 in rows"):
        w.commit(results)
    w.abort(results)
    assert [(r["id"], r["v"]) for r in read(tmp_path, fmt)] == [(1, "a"), (2, "b"), (3, "c")]
    twice = batch(id=[1, 1, 3], v=["a", "a", "C"])
    write(tmp_path, fmt, [twice], writeMode="sync", primaryKey=["id"])
    assert [(r["id"], r["v"]) for r in read(tmp_path, fmt)] == [(1, "a"), (3, "C")]


def test_sync_of_a_partition_leaves_the_other_partitions(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161113")
    write(tmp_path, fmt, [B3], partition="ds=20161114")
    write(
        tmp_path,
        fmt,
        [batch(id=[1], v=["a"])],
        partition="ds=20161114",
        writeMode="sync",
        primaryKey=["id"],
    )
    assert ids(read(tmp_path, fmt, partition="ds=20161114")) == [1]
    assert ids(read(tmp_path, fmt, partition="ds=20161113")) == [1, 2, 3]


def test_an_empty_overwrite_empties_the_partition(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161114")
    w = writer(tmp_path, fmt, partition="ds=20161114")
    w.commit(stage(w, [], B3.schema))
    assert read(tmp_path, fmt) == []


def test_parallel_splits_through_the_engine_publish_every_row_once(
    tmp_path: Path, fmt: str
) -> None:
    job = {
        "job": {
            "setting": {"speed": {"concurrent": 4}},
            "content": [
                {
                    "reader": {
                        "name": "streamreader",
                        "parameter": {
                            "column": [{"type": "long", "incr": "0", "name": "id"}],
                            "recordCount": 10_001,
                        },
                    },
                    "writer": {
                        "name": "lakewriter",
                        "parameter": {
                            "format": fmt,
                            "table": TABLE[fmt],
                            "partition": "ds=${bizdate}",
                        },
                    },
                }
            ],
        }
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    for _ in range(2):
        rep = run_job(load_job(path, runtime=RunTime.of("20161115000000")))
        assert rep.status == "succeeded", rep.error
    rows = read(tmp_path, fmt)
    assert ids(rows) == list(range(10_001))
    assert {r["ds"] for r in rows} == {"20161114"}


def test_rows_written_without_partition_go_to_the_partitions_they_name(tmp_path: Path) -> None:
    write(tmp_path, "iceberg", [B3], partition="ds=20161113")
    rows = batch(id=[4, 5], v=["d", "e"], ds=["20161113", "20161114"])
    write(tmp_path, "iceberg", [rows], writeMode="append")
    assert ids(read(tmp_path, "iceberg", partition="ds=20161114")) == [5]
    assert ids(read(tmp_path, "iceberg", partition="ds=20161113")) == [1, 2, 3, 4]
    files = iceberg_table(tmp_path).scan().plan_files()
    assert sorted(f.file.partition[0] for f in files) == ["20161113", "20161113", "20161114"]


# -- atomicity ---------------------------------------------------------------------------------


def test_nothing_is_visible_before_commit(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161114")
    w = writer(tmp_path, fmt, partition="ds=20161114")
    results = stage(w, [batch(id=[9], v=["z"])])
    assert ids(read(tmp_path, fmt)) == [1, 2, 3]
    w.commit(results)
    assert ids(read(tmp_path, fmt)) == [9]


def test_abort_leaves_no_trace(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161114")
    files, snaps = files_on_disk(tmp_path), snapshot_count(tmp_path, fmt)
    w = writer(tmp_path, fmt, partition="ds=20161114")
    results = stage(w, [batch(id=[9], v=["z"])] * 2)
    assert files_on_disk(tmp_path) != files  # staged
    w.abort(results)
    assert files_on_disk(tmp_path) == files
    assert snapshot_count(tmp_path, fmt) == snaps
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_failed_task_discards_what_it_staged(tmp_path: Path, fmt: str) -> None:
    w = writer(tmp_path, fmt, partition="ds=20161114")
    w.prepare(B3.schema)
    sink = w.open(base.Split(0, "s"))
    sink.write(B3)
    leftover = sink.discard()
    w.abort([leftover])
    assert files_on_disk(tmp_path) == set()


_KILLED = textwrap.dedent(
    """
    import sys, time, datetime
    from pathlib import Path
    import pyarrow as pa
    from tidesync.connectors import base
    from tidesync.connectors.lake import Writer

    base_dir, fmt, table = sys.argv[1:4]
    ctx = base.Context(base_dir=Path(base_dir), where="w", bizdate=datetime.date(2016, 11, 14))
    w = Writer({"format": fmt, "table": table, "partition": "ds=20161114"}, ctx)
    n = 1 << 18
    b = pa.record_batch({"id": pa.array(range(n), pa.int64()), "v": pa.array(["new"] * n)})
    w.prepare(b.schema)
    sink = w.open(base.Split(0, "s"))
    for _ in range(5):  # past one row group: a Parquet file is half written
        sink.write(b)
    print("writing", flush=True)
    time.sleep(60)
    """
)


def test_a_job_killed_mid_write_leaves_the_previous_partition_readable(
    tmp_path: Path, fmt: str
) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161114")
    before = files_on_disk(tmp_path)
    with subprocess.Popen(
        [sys.executable, "-c", _KILLED, str(tmp_path), fmt, TABLE[fmt]],
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "writing"
            assert files_on_disk(tmp_path) - before  # a staged file exists
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    assert ids(read(tmp_path, fmt)) == [1, 2, 3]
    if fmt == "hive":  # plain Parquet readers see the old partition too
        assert pq.read_table(tmp_path / "t" / "ds=20161114").column("id").to_pylist() == [1, 2, 3]
    # the next run publishes normally; for folders it also clears the killed run's staging
    write(tmp_path, fmt, [batch(id=[4], v=["d"])], partition="ds=20161114")
    assert ids(read(tmp_path, fmt)) == [4]
    if fmt == "hive":
        assert not (tmp_path / ".t.tidesync").exists()


def test_folder_swap_without_rename_exchange_still_replaces_the_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_lake_hive, "exchange", lambda a, b: False)
    write(tmp_path, "hive", [B3], partition="ds=20161114")
    write(tmp_path, "hive", [batch(id=[8], v=["h"])], partition="ds=20161114")
    assert ids(read(tmp_path, "hive")) == [8]


def test_a_partition_caught_between_two_renames_is_put_back(tmp_path: Path) -> None:
    write(tmp_path, "hive", [B3], partition="ds=20161114")
    # a killed run moved the partition aside and died before moving the new one in
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    run = tmp_path / ".t.tidesync" / "deadrun"
    run.mkdir(parents=True)
    target, old = tmp_path / "t" / "ds=20161114", run / "old"
    os.rename(target, old)
    (run / "owner.json").write_text(
        json.dumps({"pid": int(dead.stdout), "host": os.uname().nodename, "start": None})
    )
    (run / "commit.json").write_text(json.dumps({"target": str(target), "old": str(old)}))
    w = writer(tmp_path, "hive", partition="ds=20161113")
    w.prepare(B3.schema)
    assert ids(read(tmp_path, "hive")) == [1, 2, 3]
    assert not run.exists()


def test_a_row_that_does_not_fit_is_dirty_and_leaves_no_trace(tmp_path: Path, fmt: str) -> None:
    w = writer(tmp_path, fmt, writeMode="merge", primaryKey=["id"])
    w.prepare(B3.schema)
    sink = w.open(base.Split(0, "s"))
    with pytest.raises(DirtyRecordError, match="primary key id is null"):
        sink.write(batch(id=[1, None], v=["a", "b"]))
    sink.write(batch(id=[1], v=["a"]))
    w.commit([sink.close()])
    assert read(tmp_path, fmt) == [{"id": 1, "v": "a"}]


# -- schema ------------------------------------------------------------------------------------


def test_a_new_source_column_is_added_to_the_table(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161113")
    write(tmp_path, fmt, [batch(id=[4], v=["d"], score=[1.5])], partition="ds=20161114")
    rows = read(tmp_path, fmt)
    assert [(r["id"], r["score"]) for r in rows] == [(1, None), (2, None), (3, None), (4, 1.5)]


def test_nested_columns_round_trip(tmp_path: Path, fmt: str) -> None:
    # an Iceberg data file needs a field id on every list element and map key and value; they
    # were dropped, so the run succeeded and the table could not be read
    rows = pa.record_batch(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "lst": pa.array([[1, 2], [], None], pa.list_(pa.int32())),
            "st": pa.array([{"a": 1, "b": "x"}, None, {"a": None, "b": None}]),
            "mp": pa.array([[("k", 1)], None, []], pa.map_(pa.string(), pa.int64())),
            # a NULL list of structs: pyiceberg 0.12 alone reads it as [] (iceberg.arrow_scan)
            "ls": pa.array(
                [[{"q": 1.5}], [None], None], pa.list_(pa.struct([("q", pa.float64())]))
            ),
        }
    )
    write(tmp_path, fmt, [rows], writeMode="append")
    expected = sorted(rows.to_pylist(), key=lambda d: [str(v) for v in d.values()])
    assert read(tmp_path, fmt) == expected
    if fmt == "iceberg":
        assert len(iceberg_table(tmp_path).scan().to_arrow()) == 3
    # a merge rewrites the file holding id 1: the rows it keeps keep their NULLs
    changed = rows.slice(0, 1).to_pylist()[0] | {"lst": [9]}
    write(tmp_path, fmt, [pa.RecordBatch.from_pylist([changed], schema=rows.schema)],
          writeMode="merge", primaryKey=["id"])  # fmt: skip
    after = {r["id"]: r for r in read(tmp_path, fmt)}
    assert after[1]["lst"] == [9]
    assert after[3] == rows.to_pylist()[2]
    assert after[3]["ls"] is None and after[3]["lst"] is None


def test_a_struct_with_other_fields_is_an_error_naming_the_column(tmp_path: Path) -> None:
    st = pa.struct([("a", pa.int64()), ("b", pa.string())])
    write(tmp_path, "iceberg", [batch(id=[1], st=pa.array([{"a": 1, "b": "x"}], st))])
    w = writer(tmp_path, "iceberg", writeMode="append")
    with pytest.raises(ConfigError, match=re.escape(f"{WHERE}.table: column 'st' is struct")):
        w.prepare(pa.schema([("id", pa.int64()), ("st", pa.struct([("a", pa.int64())]))]))


def test_a_type_change_is_an_error_naming_the_column_and_both_types(
    tmp_path: Path, fmt: str
) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    w = writer(tmp_path, fmt, writeMode="append")
    with pytest.raises(ConfigError) as e:
        w.prepare(pa.schema([("id", pa.string()), ("v", pa.string())]))
    msg = str(e.value)
    assert msg.startswith(f"{WHERE}.table: column 'id' is ")
    assert "long" in msg or "int64" in msg
    assert "string" in msg


def test_a_wider_source_type_widens_the_column(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [batch(id=pa.array([1], pa.int32()))], writeMode="append")
    write(tmp_path, fmt, [batch(id=pa.array([1 << 40], pa.int64()))], writeMode="append")
    assert ids(read(tmp_path, fmt)) == [1, 1 << 40]


def test_a_narrower_source_type_is_cast_to_the_table_type(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], writeMode="append")
    write(tmp_path, fmt, [batch(id=pa.array([4], pa.int16()), v=["d"])], writeMode="append")
    r = Reader({"format": fmt, "table": TABLE[fmt]}, ctx(tmp_path, "reader"))
    assert r.schema().field("id").type == pa.int64()
    assert ids(read(tmp_path, fmt)) == [1, 2, 3, 4]


# -- lifecycle ---------------------------------------------------------------------------------


def test_a_short_compact_date_is_not_taken_for_a_partition_date() -> None:
    """2016114 could be 2016-01-14 or 2016-11-04: a lifecycle must not drop it by a guess, and
    a date partition column must not get either."""
    from tidesync.connectors.partition import expired, partition_date, partition_value

    assert partition_date("20161104") == date(2016, 11, 4)
    assert partition_date("2016-1-4") == date(2016, 1, 4)  # the dashes tell the fields apart
    for short in ("2016114", "201611", "2016 1104"):
        assert partition_date(short) is None
        assert not expired(short, BIZDATE, 2)
        with pytest.raises(ValueError, match="is not a date such as 20161114"):
            partition_value(short, pa.date32())


def test_lifecycle_drops_partitions_older_than_n_days_before_the_bizdate(
    tmp_path: Path, fmt: str
) -> None:
    for day in ("20161110", "20161111", "20161112", "20161113"):
        write(tmp_path, fmt, [batch(id=[int(day)])], partition=f"ds={day}")
    write(tmp_path, fmt, [batch(id=[20161114])], partition="ds=20161114", lifecycle=2)
    assert ids(read(tmp_path, fmt)) == [20161112, 20161113, 20161114]


# -- reader ------------------------------------------------------------------------------------


def test_reader_reads_a_partition_and_chosen_columns(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161113")
    write(tmp_path, fmt, [batch(id=[4], v=["d"])], partition="ds=20161114")
    assert read(tmp_path, fmt, partition="ds=20161114", column=["v"]) == [{"v": "d"}]


def test_reader_makes_one_split_per_data_file(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3, B3, B3], partition="ds=20161114")
    r = Reader({"format": fmt, "table": TABLE[fmt]}, ctx(tmp_path, "reader"))
    splits = r.splits(1)
    assert len(splits) == 3
    assert sum(b.num_rows for s in splits for b in r.read(s)) == 9


def test_reader_travels_to_a_snapshot_by_id_and_by_time(tmp_path: Path) -> None:
    write(tmp_path, "iceberg", [B3], partition="ds=20161114")
    first = iceberg_table(tmp_path).current_snapshot()
    time.sleep(0.01)
    write(tmp_path, "iceberg", [batch(id=[9], v=["z"])], partition="ds=20161114")
    assert ids(read(tmp_path, "iceberg")) == [9]
    assert ids(read(tmp_path, "iceberg", snapshotId=first.snapshot_id)) == [1, 2, 3]
    assert ids(read(tmp_path, "iceberg", asOf=first.timestamp_ms)) == [1, 2, 3]
    with pytest.raises(ConfigError, match=r"^reader\.asOf: table ods.t has no snapshot that old"):
        read(tmp_path, "iceberg", asOf="2000-01-01 00:00:00")


def test_as_of_reads_times_by_length_in_the_jobs_zone_and_refuses_doubtful_ones(
    tmp_path: Path,
) -> None:
    write(tmp_path, "iceberg", [B3], partition="ds=20161114")

    def as_of(v: Any, tz: str = "UTC") -> Reader:
        ctx_ = base.Context(base_dir=tmp_path, where="reader", timezone=tz)
        return Reader({"format": "iceberg", "table": "ods.t", "asOf": v}, ctx_)

    # the table's history is recent: each form must name 2000 or 2001, not 1970 or 2609
    for v in (20000101, "20000101", 20000101000000, "2000-01-01 00:00:00", 1000000000000):
        with pytest.raises(ConfigError, match=r"no snapshot that old"):
            list(as_of(v).splits(1))
    for v in (20991231, "2099-12-31 23:59"):  # and 2099, not 20 seconds after 1970
        r = as_of(v)
        assert sum(b.num_rows for s in r.splits(1) for b in r.read(s)) == 3
    with pytest.raises(ConfigError) as e:
        as_of("2026-10-25 02:30:00", "Europe/Berlin")
    assert str(e.value).startswith("reader.asOf: 2026-10-25 02:30:00 is ambiguous in Europe/Berlin")
    with pytest.raises(ConfigError, match=r"^reader\.asOf: 2026-03-29 02:30:00 does not exist"):
        as_of("2026-03-29 02:30:00", "Europe/Berlin")
    with pytest.raises(ConfigError, match=r"^reader\.asOf: '2016111' is not a time"):
        as_of("2016111")


def test_each_iceberg_commit_is_one_snapshot_with_the_run_in_its_summary(tmp_path: Path) -> None:
    write(tmp_path, "iceberg", [B3, B3], partition="ds=20161114")
    write(tmp_path, "iceberg", [B3], partition="ds=20161114", lifecycle=5)
    snaps = iceberg_table(tmp_path).snapshots()
    assert [s.summary.operation.value for s in snaps] == ["append", "overwrite"]
    assert snaps[-1].summary["tidesync.write-mode"] == "overwrite"
    assert snaps[-1].summary["tidesync.bizdate"] == "20161114"


# -- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"partition": "20161114"},
            f"{WHERE}.partition: '20161114': '20161114' names no partition column; "
            "write column=value, e.g. ds=20161114",
        ),
        ({"partition": "ds="}, f"{WHERE}.partition: 'ds=': ds= has no value"),
        ({"partition": "1ds=2"}, f"{WHERE}.partition: '1ds=2': '1ds' is not a partition column"),
        (
            {"writeMode": "merge"},
            f"{WHERE}.primaryKey: is required for writeMode merge: the column(s) that "
            "identify a row, e.g. primaryKey: [uid]",
        ),
        ({"writeMode": "sync"}, f"{WHERE}.primaryKey: is required for writeMode sync"),
        ({"writeMode": "upsertt"}, f"{WHERE}.writeMode: 'upsertt' is not one of"),
        ({"lifecycle": 3}, f"{WHERE}.lifecycle: drops partitions by their date: give partition"),
        (
            {"deleteMarker": {"column": "d", "value": 1}},
            f"{WHERE}.deleteMarker: applies to writeMode merge or sync",
        ),
        ({"table": "ods."}, f"{WHERE}.table: 'ods.' is not namespace.name"),
    ],
)
def test_bad_writer_parameters_name_the_key_and_the_fix(
    tmp_path: Path, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        Writer({"table": "ods.t", **params}, ctx(tmp_path))
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


def test_a_partition_column_the_table_does_not_have_is_an_error(tmp_path: Path, fmt: str) -> None:
    write(tmp_path, fmt, [B3], partition="ds=20161114")
    w = writer(tmp_path, fmt, partition="dt=20161114")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(WHERE)}\.partition: table .* partitioned by ds"
    ):
        w.prepare(B3.schema)


def test_a_partition_column_the_source_also_sends_is_an_error(tmp_path: Path, fmt: str) -> None:
    w = writer(tmp_path, fmt, partition="ds=20161114")
    with pytest.raises(
        ConfigError, match=rf"^{re.escape(WHERE)}\.partition: column 'ds' comes from"
    ):
        w.prepare(pa.schema([("id", pa.int64()), ("ds", pa.string())]))


@pytest.mark.parametrize(
    ("first", "second", "clash"),
    [
        (B3, batch(ID=[4], v=["d"]), "'ID' differs only in case from the table's column 'id'"),
        (B3, batch(id=[4], V=["d"]), "'V' differs only in case from the table's column 'v'"),
        (None, batch(id=[4], Id=[5]), "columns 'id' and 'Id' differ only in case"),
    ],
)
def test_a_column_that_differs_only_in_case_is_an_error_not_a_new_column(
    tmp_path: Path, fmt: str, first: pa.RecordBatch | None, second: pa.RecordBatch, clash: str
) -> None:
    # Spark, Hive, Trino and DuckDB match column names ignoring case: 'ID' beside 'id' would
    # leave the rows' ids in a column no reader can tell from the real one
    if first is not None:
        write(tmp_path, fmt, [first], writeMode="append")
    before = read(tmp_path, fmt) if first is not None else []
    w = writer(tmp_path, fmt, writeMode="append")
    with pytest.raises(ConfigError, match=rf"^{re.escape(WHERE)}\.table: .*{re.escape(clash)}"):
        w.prepare(second.schema)
    if first is not None:
        assert read(tmp_path, fmt) == before


def test_a_source_column_spelling_a_partition_column_in_another_case_is_an_error(
    tmp_path: Path, fmt: str
) -> None:
    w = writer(tmp_path, fmt, partition="ds=20161114")
    with pytest.raises(
        ConfigError, match=r"'DS' differs only in case from the partition column 'ds'"
    ):
        w.prepare(pa.schema([("id", pa.int64()), ("DS", pa.string())]))


def test_a_primary_key_the_source_lacks_is_an_error(tmp_path: Path, fmt: str) -> None:
    w = writer(tmp_path, fmt, writeMode="merge", primaryKey=["uidd"])
    with pytest.raises(ConfigError, match=rf"^{re.escape(WHERE)}\.primaryKey: 'uidd' is not among"):
        w.prepare(pa.schema([("uid", pa.int64())]))


def test_reader_rejects_time_travel_on_folders(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^reader\.snapshotId: time travel needs format iceberg"):
        Reader({"format": "hive", "table": "t", "snapshotId": 1}, ctx(tmp_path, "reader"))


def test_reader_of_a_missing_table_says_so(tmp_path: Path) -> None:
    write(tmp_path, "iceberg", [B3])
    r = Reader({"table": "ods.tt"}, ctx(tmp_path, "reader"))
    with pytest.raises(
        ConfigError,
        match=r"^reader\.table: Iceberg table ods.tt does not exist; did you mean 'ods.t'",
    ):
        r.schema()


def test_the_staging_roller_writes_each_row_group_into_the_open_file_as_it_fills(
    tmp_path: Path,
) -> None:
    import pyarrow.compute as pc

    from tidesync.connectors.lake.common import ParquetRoller

    schema = pa.schema([("id", pa.int64()), ("note", pa.string())])
    path = tmp_path / "part.parquet"
    roller = ParquetRoller(schema, lambda: str(path), lambda p: p, {"compression": "snappy"})
    sizes = []
    for i in range(24):  # about 24 MiB: three row groups' worth
        ids = pa.array(range(i * 32_768, (i + 1) * 32_768), pa.int64())
        note = pc.binary_join_element_wise("a note ", ids.cast(pa.string()), "")
        roller.write(pa.record_batch([ids, note], schema=schema))
        sizes.append(path.stat().st_size if path.exists() else 0)
    assert len(set(sizes)) >= 3 and sizes[-1] > 1 << 20  # grown by row groups, before close
    [staged] = roller.close()
    meta = pq.ParquetFile(path).metadata
    assert staged.rows == meta.num_rows == 24 * 32_768 and meta.num_row_groups >= 3


def test_data_files_take_a_dictionary_only_where_it_makes_a_column_smaller(
    tmp_path: Path, fmt: str
) -> None:
    n = 2_000
    write(
        tmp_path,
        fmt,
        [
            batch(
                id=pa.array(range(n), pa.int64()),
                score=pa.array([i / 7 for i in range(n)], pa.float64()),
                city=pa.array(["Oslo", "Lima", "Pune"] * (n // 3) + ["Oslo"] * (n % 3)),
            )
        ],
        writeMode="append",
    )
    [name] = [f for f in files_on_disk(tmp_path) if "metadata" not in f]
    meta = pq.ParquetFile(tmp_path / name).metadata
    group = meta.row_group(0)
    encodings = {
        group.column(i).path_in_schema: set(group.column(i).encodings)
        for i in range(meta.num_columns)
    }
    dictionary = {"PLAIN_DICTIONARY", "RLE_DICTIONARY"}
    assert encodings["city"] & dictionary
    assert not encodings["id"] & dictionary and not encodings["score"] & dictionary


# -- exact types -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            pa.array([Decimal("1.23")], pa.decimal128(10, 2)),
            pa.array([Decimal("4.567")], pa.decimal128(12, 3)),
        ),
        (
            pa.array([Decimal("1.230")], pa.decimal128(12, 3)),
            pa.array([Decimal("4.5")], pa.decimal128(12, 2)),
        ),
        (pa.array(["a"]), pa.array([b"\xff"])),
        (pa.array([b"a"]), pa.array(["b"])),
    ],
    ids=[
        "decimal-wider-scale",
        "decimal-smaller-scale",
        "binary-into-string",
        "string-into-binary",
    ],
)
def test_iceberg_changes_no_column_type_the_spec_does_not_allow(
    tmp_path: Path, old: pa.Array, new: pa.Array
) -> None:
    """A decimal keeps its scale (older files hold unscaled values of the old scale, which
    other engines read by the table's scale) and binary is not string, whatever pyiceberg's
    ``promote`` lets through."""
    write(tmp_path, "iceberg", [batch(id=[1], v=old)], writeMode="append")
    before = str(iceberg_table(tmp_path).schema())
    with pytest.raises(ConfigError, match="column 'v' is"):
        write(tmp_path, "iceberg", [batch(id=[2], v=new)], writeMode="append")
    assert str(iceberg_table(tmp_path).schema()) == before
    got = [r["v"] for r in read(tmp_path, "iceberg")]
    assert got == old.to_pylist()
    assert all(not isinstance(v, Decimal) or v.as_tuple().exponent == -old.type.scale for v in got)


@pytest.mark.parametrize(
    "values",
    [pa.array([5], pa.time32("s")), pa.array(["q"], pa.string_view())],
    ids=["time32-seconds", "string-view"],
)
@pytest.mark.parametrize("mode", ["append", "merge"])
def test_a_hive_table_takes_the_type_it_was_created_from_again(
    tmp_path: Path, values: pa.Array, mode: str
) -> None:
    """Parquet keeps a time in milliseconds at least, so the second run's time32[s] was "a
    type change that would lose data"; a string_view column failed a merge with a bare
    ArrowNotImplementedError."""
    write(tmp_path, "hive", [batch(id=[1], v=values)], partition="ds=1")
    keys = {"primaryKey": ["id"]} if mode == "merge" else {}
    write(tmp_path, "hive", [batch(id=[2], v=values)], partition="ds=1", writeMode=mode, **keys)
    expect = values.to_pylist()[0]
    assert read(tmp_path, "hive") == [{"id": i, "v": expect, "ds": "1"} for i in (1, 2)]


def test_iceberg_stores_a_uint32_column_as_long_so_every_value_fits(tmp_path: Path) -> None:
    top = (1 << 32) - 1
    plain = pa.array([top], pa.uint32())
    rows = batch(
        id=[1], v=plain, d=plain.dictionary_encode(), s=pa.array([[top]], pa.list_(pa.uint32()))
    )
    write(tmp_path, "iceberg", [rows], writeMode="append")
    schema = str(iceberg_table(tmp_path).schema())
    assert "v: optional long" in schema
    assert "d: optional long" in schema
    assert "s: optional list<long>" in schema
    assert read(tmp_path, "iceberg") == [{"id": 1, "v": top, "d": top, "s": [top]}]


@pytest.mark.parametrize("meta", [False, True], ids=["files", "common-metadata"])
def test_hive_int96_timestamps_keep_dates_outside_the_nanosecond_range(
    tmp_path: Path, meta: bool
) -> None:
    # Hive, Impala and Spark (by default) write INT96; Arrow read it as nanoseconds, and Hive's
    # 9999-12-31 "no end" became 1816-03-30, 0001-01-01 1754-08-30: silently
    days = [datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(1, 1, 1), None]
    days.append(datetime(2024, 1, 2, 3, 4, 5, 6))
    folder = tmp_path / "t" / "ds=20161114"
    folder.mkdir(parents=True)
    data = pa.table({"id": [1, 2, 3, 4], "ts": pa.array(days, pa.timestamp("us"))})
    pq.write_table(data, folder / "part-0.parquet", use_deprecated_int96_timestamps=True)
    if meta:
        pq.write_metadata(
            data.schema, tmp_path / "t" / "_common_metadata", use_deprecated_int96_timestamps=True
        )
    got = read(tmp_path, "hive")
    assert [r["ts"] for r in sorted(got, key=lambda r: r["id"])] == days
    # a merge rewrites such a file: the dates it keeps are the same
    write(
        tmp_path,
        "hive",
        [batch(id=[5], ts=pa.array([None], pa.timestamp("us")))],
        partition="ds=20161114",
        writeMode="merge",
        primaryKey=["id"],
    )
    got = read(tmp_path, "hive")
    assert [r["ts"] for r in sorted(got, key=lambda r: r["id"])] == [*days, None]


def test_a_hive_file_outside_the_partition_folders_is_an_error_naming_it(tmp_path: Path) -> None:
    # a file at the root of a partitioned table failed its split with a bare KeyError 'ds'
    write(tmp_path, "hive", [B3], partition="ds=20161114")
    pq.write_table(pa.table({"id": [9], "v": ["z"]}), tmp_path / "t" / "stray.parquet")
    with pytest.raises(FatalError, match=r"t/stray.parquet is not in partition folders ds=\.\.\."):
        read(tmp_path, "hive")


@pytest.mark.parametrize(
    ("partition", "message"),
    [
        ("id=1.9", r"id='1\.9' is not a whole number \(column 'id' of table ods\.t is long\)"),
        ("id=1e0", r"id='1e0' is not a whole number"),
        ("n=1.5", r"n='1\.5' is no value of the column: .*decimal\(10, 2\)"),
        ("d=2024-01-02T00:00:00", r"d='2024-01-02T00:00:00' is no value of the column"),
    ],
)
def test_an_iceberg_partition_value_that_is_no_value_of_its_column_is_a_config_error(
    tmp_path: Path, partition: str, message: str
) -> None:
    # pyiceberg read id=1.9 as id = 1 (its integer part): the rows of another partition
    b = batch(
        id=[1, 2],
        n=pa.array([Decimal("1.50"), Decimal("2.00")], pa.decimal128(10, 2)),
        d=pa.array([date(2024, 1, 1), date(2024, 1, 2)], pa.date32()),
    )
    write(tmp_path, "iceberg", [b], writeMode="append")
    assert ids(read(tmp_path, "iceberg", partition="id=1")) == [1]
    assert ids(read(tmp_path, "iceberg", partition="n=2.00")) == [2]
    with pytest.raises(ConfigError, match="reader.partition: " + message):
        read(tmp_path, "iceberg", partition=partition)


def test_a_worker_reads_an_iceberg_split_as_of_the_snapshot_the_run_planned(tmp_path: Path) -> None:
    # a worker (Ray, a process) builds the reader again: it read the table's current snapshot,
    # where the planned file was gone after another job's overwrite (or later deletes applied)
    write(tmp_path, "iceberg", [B3])
    planner = Reader({"format": "iceberg", "table": "ods.t"}, ctx(tmp_path, "reader"))
    schema = planner.schema()
    splits = planner.splits(4)
    write(tmp_path, "iceberg", [batch(id=[7], v=["n"])], writeMode="overwrite")  # another run
    worker = Reader({"format": "iceberg", "table": "ods.t"}, ctx(tmp_path, "reader"))
    got = pa.Table.from_batches([b for s in splits for b in worker.read(s)], schema)
    assert got.to_pylist() == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]


def test_a_hive_partition_read_finds_the_folder_spark_and_hive_escape(tmp_path: Path) -> None:
    # Hive and Spark write ':' as %3A in folder names: the folder partition_path names was
    # missing and the read succeeded with no rows
    for i, folder in enumerate(["ts=2024-01-01 10%3A00%3A00/k=a%3Db", "ts=x/k=y"]):
        (tmp_path / "t" / folder).mkdir(parents=True)
        pq.write_table(pa.table({"id": [i]}), tmp_path / "t" / folder / "part-0.snappy.parquet")
    want = [{"id": 0, "ts": "2024-01-01 10:00:00", "k": "a=b"}]
    assert read(tmp_path, "hive", partition="ts=2024-01-01 10:00:00") == want
    assert read(tmp_path, "hive", partition="ts=2024-01-01 10:00:00/k=a=b") == want
    assert read(tmp_path, "hive", partition="ts=x/k=b") == []


def test_iceberg_int96_timestamps_keep_dates_outside_the_nanosecond_range(tmp_path: Path) -> None:
    # a Spark- or Hive-written data file (a migrated table) holds INT96: pyiceberg read it as
    # nanoseconds, and 9999-12-31 became 1816-03-30
    write(
        tmp_path,
        "iceberg",
        [batch(id=[0], ts=pa.array([datetime(2000, 1, 1)], pa.timestamp("us")))],
    )
    days = [datetime(9999, 12, 31, 23, 59, 59, 999999), datetime(1, 1, 1), None]
    data = pa.table({"id": [1, 2, 3], "ts": pa.array(days, pa.timestamp("us"))})
    path = tmp_path / "spark.parquet"
    pq.write_table(data, path)
    iceberg_table(tmp_path).add_files([str(path)])  # pyiceberg refuses to add an INT96 file:
    pq.write_table(data, path, use_deprecated_int96_timestamps=True)  # Spark's, in its place
    got = sorted(read(tmp_path, "iceberg"), key=lambda r: r["id"])
    assert [r["ts"] for r in got] == [datetime(2000, 1, 1), *days]


def test_time_travel_takes_the_columns_of_the_snapshot_read(tmp_path: Path) -> None:
    # the column list was checked against the current schema: a column renamed since was
    # "no column", and its new name a ValueError traceback from pyiceberg
    write(tmp_path, "iceberg", [B3])
    table = iceberg_table(tmp_path)
    first = table.current_snapshot().snapshot_id
    with table.update_schema() as u:
        u.rename_column("v", "w")
    got = read(tmp_path, "iceberg", snapshotId=first, column=["id", "v"])
    assert got == [{"id": 1, "v": "a"}, {"id": 2, "v": "b"}, {"id": 3, "v": "c"}]
    assert read(tmp_path, "iceberg", column=["w"]) == [{"w": "a"}, {"w": "b"}, {"w": "c"}]
    with pytest.raises(ConfigError, match=r"column\[0\]: the table has no column 'w'"):
        read(tmp_path, "iceberg", snapshotId=first, column=["w"])
