"""The lancedb connector: the conformance suite where it applies, the write modes, one version
per run (nothing visible before commit, a failed or killed run leaves the previous version the
latest), the vector index at commit and a nearest-neighbour search over what it wrote."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.connectors import _runs
from tests.connectors.conformance import (
    OLD,
    Adapter,
    ConformanceSuite,
    make_reader,
    make_writer,
    read_all,
    rows,
    write,
)
from tidesync.connectors.base import Context, Split, load
from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError, FatalError

lancedb = pytest.importorskip("lancedb", reason="the lancedb extra is not installed")

WHERE = "job.content[0].writer.parameter"
DIM = 8


class LanceAdapter(Adapter):
    kind = "lancedb"
    not_null_words = ("not null",)

    def db(self) -> Any:
        return lancedb.connect(str(self.base_dir / "db"))

    def create_table(
        self,
        name: str,
        data: pa.Table,
        primary_key: Sequence[str] = (),
        defaults: Mapping[str, str] | None = None,
    ) -> None:
        self.db().create_table(name, data=data, mode="overwrite")

    def read_table(self, name: str) -> pa.Table:
        return self.db().open_table(name).to_arrow()

    def reader_params(self, table: str | list[str], **extra: Any) -> dict[str, Any]:
        extra.pop("splitPk", None)  # one split per table: the version pinned at planning
        assert isinstance(table, str)
        return {"path": "db", "table": table, **extra}

    def writer_params(self, table: str, **extra: Any) -> dict[str, Any]:
        if extra.get("writeMode") in ("replace", "update", "merge"):
            extra.setdefault("primaryKey", ["id"])
        return {"path": "db", "table": table, **extra}


class TestLanceDbConformance(ConformanceSuite):
    @pytest.fixture
    def adapter(self, tmp_path: Path) -> Adapter:
        return LanceAdapter(tmp_path)

    @pytest.mark.parametrize("n", [1, 4])
    def test_splits_cover_the_input_exactly_once(self, adapter: Adapter, n: int) -> None:
        pytest.skip("a LanceDB table is read as one split (its version); there is no splitPk")

    def test_a_duplicate_key_becomes_a_dirty_record(self, adapter: Adapter) -> None:
        pytest.skip("LanceDB has no unique keys: append keeps both rows, merge upserts")

    def test_the_reader_reads_as_one_split(self, adapter: Adapter) -> None:
        adapter.create_table("src", OLD)
        reader = make_reader(adapter, adapter.reader_params("src"))
        assert len(reader.splits(8)) == 1
        assert rows(read_all(reader)) == rows(OLD)


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def ad(tmp_path: Path) -> LanceAdapter:
    return LanceAdapter(tmp_path)


def vectors(n: int, seed: int = 1) -> pa.Array:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), DIM)


def docs(ids: Sequence[int], text: str = "t", seed: int = 1) -> pa.Table:
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "review": [f"{text}{i}" for i in ids],
            "vec": vectors(len(ids), seed),
        }
    )


def versions(ad: LanceAdapter, table: str) -> list[int]:
    return [v["version"] for v in ad.db().open_table(table).list_versions()]


def by_id(table: pa.Table) -> dict[int, str]:
    return dict(
        zip(table.column("id").to_pylist(), table.column("review").to_pylist(), strict=True)
    )


# -- write modes -------------------------------------------------------------------------------


def test_append_adds_one_version_per_run(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1, 2]))
    write(ad, ad.writer_params("t"), docs([3]))
    assert sorted(by_id(ad.read_table("t"))) == [1, 2, 3]
    assert versions(ad, "t") == [1, 2]


def test_a_run_of_several_tasks_is_one_version(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([0]))
    w = make_writer(ad, ad.writer_params("t"))
    data = docs(range(1, 7))
    w.prepare(data.schema)
    results = []
    for i, part in enumerate([data.slice(0, 2), data.slice(2, 2), data.slice(4)]):
        sink = w.open(Split(i, f"s{i}"))
        for b in part.to_batches():
            sink.write(b)
        results.append(sink.close())
    w.commit(results)
    assert sorted(by_id(ad.read_table("t"))) == list(range(7))
    assert versions(ad, "t") == [1, 2]


def test_truncate_replaces_every_row_and_keeps_the_schema(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1, 2, 3]))
    write(ad, ad.writer_params("t", writeMode="overwrite"), docs([4]).drop_columns(["vec"]))
    got = ad.read_table("t")
    assert by_id(got) == {4: "t4"}
    assert got.column("vec").to_pylist() == [None]
    assert got.schema.field("vec").type == pa.list_(pa.float32(), DIM)


def test_merge_upserts_by_key_and_the_last_row_of_a_key_wins(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1, 2]))
    changes = pa.concat_tables([docs([2, 3], "a"), docs([3], "b")])
    write(ad, ad.writer_params("t", writeMode="merge"), changes)
    assert by_id(ad.read_table("t")) == {1: "t1", 2: "a2", 3: "b3"}


def test_update_changes_existing_keys_only(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1, 2]))
    write(ad, ad.writer_params("t", writeMode="update"), docs([2, 3], "u"))
    assert by_id(ad.read_table("t")) == {1: "t1", 2: "u2"}


def test_update_changes_only_the_columns_the_source_sends(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1, 2]))
    write(ad, ad.writer_params("t", writeMode="update"), docs([2], "u").select(["id", "review"]))
    got = ad.read_table("t").sort_by("id")
    assert by_id(got) == {1: "t1", 2: "u2"}
    assert got.column("vec").to_pylist() == docs([1, 2]).column("vec").to_pylist()


def test_update_need_not_send_a_not_null_column(ad: LanceAdapter) -> None:
    # it was a config error (and every row dirty): the column keeps its value in an update
    schema = pa.schema(
        [
            pa.field("id", pa.int64(), False),
            pa.field("name", pa.string(), False),
            pa.field("score", pa.float64()),
        ]
    )
    table = pa.table({"id": [1, 2], "name": ["a", "b"], "score": [None, None]}, schema=schema)
    ad.db().create_table("t", data=table)
    data = pa.table({"id": pa.array([2], pa.int64()), "score": [1.5]})
    write(ad, ad.writer_params("t", writeMode="update"), data)
    assert sorted(ad.read_table("t").to_pylist(), key=lambda r: r["id"]) == [
        {"id": 1, "name": "a", "score": None},
        {"id": 2, "name": "b", "score": 1.5},
    ]


def test_merge_replaces_the_whole_row_and_a_column_not_sent_becomes_null(
    ad: LanceAdapter,
) -> None:
    write(ad, ad.writer_params("t"), docs([1, 2]))
    write(ad, ad.writer_params("t", writeMode="merge"), docs([2], "m").select(["id", "review"]))
    got = ad.read_table("t").sort_by("id")
    assert by_id(got) == {1: "t1", 2: "m2"}
    assert got.column("vec").to_pylist()[1] is None


def test_update_of_a_missing_table_fails_before_writing(ad: LanceAdapter) -> None:
    w = make_writer(ad, ad.writer_params("t", writeMode="update"))
    with pytest.raises(FatalError, match="does not exist"):
        w.prepare(docs([1]).schema)
    assert not (ad.base_dir / "db" / "t.lance").exists()


def test_non_conflict_creates_a_table_and_refuses_an_existing_one(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t", writeMode="nonConflict"), docs([1]))
    w = make_writer(ad, ad.writer_params("t", writeMode="nonConflict"))
    with pytest.raises(FatalError, match="nonConflict, but table 't' exists"):
        w.prepare(docs([2]).schema)
    assert by_id(ad.read_table("t")) == {1: "t1"}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"writeMode": "merge"}, f"{WHERE}.primaryKey: is required for writeMode merge"),
        ({"writeMode": "upsrt"}, f"{WHERE}.writeMode: 'upsrt' is not one of"),
        ({"index": {"metric": "cosine"}}, f"{WHERE}.index.column: is required"),
        ({"index": {"column": "vec", "metric": "cos"}}, "index.metric: 'cos' is not one of"),
        ({"index": {"column": "vec", "typ": "IVF_PQ"}}, "index.typ: unknown key"),
        ({"path": "s3://bucket/db"}, f"{WHERE}.path: 's3://bucket/db': only a local folder"),
        ({"table": "../x"}, f"{WHERE}.table: '../x' is not a LanceDB table name"),
    ],
)
def test_parameter_mistakes_name_their_key(
    ad: LanceAdapter, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_writer(ad, {**ad.writer_params("t"), **params})


def test_a_source_column_the_table_lacks_is_a_config_error_and_writes_nothing(
    ad: LanceAdapter,
) -> None:
    write(ad, ad.writer_params("t"), docs([1]))
    data = docs([2]).append_column("extra", pa.array([1]))
    w = make_writer(ad, ad.writer_params("t"))
    with pytest.raises(ConfigError, match="table 't' has no column 'extra'"):
        w.prepare(data.schema)
    assert versions(ad, "t") == [1]
    assert not (ad.base_dir / "db" / ".t.tidesync").exists()


def test_a_value_that_does_not_fit_becomes_a_dirty_record(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1]))
    batch = pa.record_batch({"id": ["2", "x", "4"], "review": ["a", "b", "c"]})
    bad: list[tuple[int, DirtyRecordError]] = []
    w = make_writer(ad, ad.writer_params("t"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e)))
    w.commit([sink.close()])
    assert [off for off, _ in bad] == [1]
    assert "column id" in bad[0][1].reason
    assert sorted(by_id(ad.read_table("t"))) == [1, 2, 4]


@pytest.mark.parametrize("existing", [False, True])
@pytest.mark.parametrize("name", ["amount", "amount_in_euros"])
def test_decimals_are_written_wherever_they_lie_in_the_staged_file(
    ad: LanceAdapter, existing: bool, name: str
) -> None:
    # a staged file aligns buffers to 8 bytes; with one of these names (8 bytes apart in the
    # file's schema) the decimal's values lie 8 bytes off a 16-byte boundary, where Lance's
    # reader panicked (a new table was then committed empty, and the run succeeded)
    data = pa.table(
        {
            "id": pa.array([2, 3], pa.int64()),
            name: pa.array([Decimal("1.2345"), Decimal("0.1")], pa.decimal128(10, 4)),
        }
    )
    if existing:
        ad.db().create_table("t", data=data.slice(0, 0))
    write(ad, ad.writer_params("t"), data)
    assert rows(ad.read_table("t")) == rows(data)


def test_naive_and_zoned_times_meet_in_the_jobs_time_zone(ad: LanceAdapter) -> None:
    def ts(tz: str | None) -> pa.Array:
        return pa.array([datetime(2024, 1, 1, 8)], pa.timestamp("us", tz))

    ad.db().create_table("t", data=pa.table({"id": [1], "at": ts("UTC"), "wall": ts(None)}))
    w = load("lancedb", "writer")(
        ad.writer_params("t"), Context(base_dir=ad.base_dir, where=WHERE, timezone="Asia/Shanghai")
    )
    batch = pa.record_batch({"id": [2], "at": ts(None), "wall": ts("UTC")})
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    sink.write(batch)
    w.commit([sink.close()])
    got = ad.read_table("t").sort_by("id").to_pylist()[1]
    assert got["at"] == datetime(2024, 1, 1, 0, tzinfo=UTC)  # 08:00 in Shanghai
    assert got["wall"] == datetime(2024, 1, 1, 16)  # 08:00Z is 16:00 there


def test_a_cast_that_would_alter_a_value_is_a_dirty_record(ad: LanceAdapter) -> None:
    ad.db().create_table(
        "t",
        data=pa.table(
            {
                "id": pa.array([], pa.int64()),
                "amt": pa.array([], pa.decimal128(10, 2)),
                "f": pa.array([], pa.float64()),
            }
        ),
    )
    batch = pa.record_batch(
        {
            "id": ["1", "0x10", "3", "4"],
            "amt": [1.5, 1.0, 2.675, 1e-7],
            "f": pa.array([Decimal("1.2345")] * 4, pa.decimal128(10, 4)),
        }
    )
    bad: list[int] = []
    w = make_writer(ad, ad.writer_params("t"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, _e: bad.append(off))
    w.commit([sink.close()])
    assert bad == [1, 2, 3]
    assert ad.read_table("t").to_pylist() == [{"id": 1, "amt": Decimal("1.50"), "f": 1.2345}]


def test_a_new_table_stores_float_lists_as_vectors_and_other_lengths_are_dirty(
    ad: LanceAdapter,
) -> None:
    lists = pa.array([[1.0] * DIM, None, [2.0] * 3, [3.0] * DIM], pa.list_(pa.float32()))
    batch = pa.record_batch({"id": pa.array([1, 2, 3, 4], pa.int64()), "vec": lists})
    bad: list[int] = []
    w = make_writer(ad, ad.writer_params("t"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, _e: bad.append(off))
    w.commit([sink.close()])
    got = ad.read_table("t")
    assert bad == [2]
    assert got.schema.field("vec").type == pa.list_(pa.float32(), DIM)
    assert sorted(got.column("id").to_pylist()) == [1, 2, 4]


def test_the_reader_reads_columns_where_and_a_version(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1, 2, 3]))
    write(ad, ad.writer_params("t"), docs([4]))
    r = make_reader(ad, ad.reader_params("t", column=["id"], where="id >= 2"))
    assert read_all(r).to_pydict() == {"id": [2, 3, 4]}
    old = make_reader(ad, ad.reader_params("t", column=["id"], version=1))
    assert sorted(read_all(old).column("id").to_pylist()) == [1, 2, 3]
    bad = make_reader(ad, ad.reader_params("t", column=["id", "reviw"]))
    with pytest.raises(ConfigError, match=r"column\[1\]: table 't' has no column 'reviw'"):
        bad.schema()


def test_a_missing_extra_names_the_install_command(
    ad: LanceAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lancedb", None)
    w = make_writer(ad, ad.writer_params("t"))
    with pytest.raises(ConfigError, match=r"pip install 'tidesync\[lancedb\]'"):
        w.prepare(docs([1]).schema)


# -- atomicity ---------------------------------------------------------------------------------


def test_nothing_is_visible_before_commit_and_abort_leaves_no_staging(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1]))
    w, results = write(ad, ad.writer_params("t"), docs([2, 3]), commit=False)
    assert versions(ad, "t") == [1]
    assert sorted(by_id(ad.read_table("t"))) == [1]
    assert lancedb.connect(str(ad.base_dir / "db")).list_tables().tables == ["t"]
    w.abort(results)
    assert versions(ad, "t") == [1]
    assert not (ad.base_dir / "db" / ".t.tidesync").exists()


def test_a_commit_whose_stream_fails_midway_leaves_the_previous_version_latest(
    ad: LanceAdapter,
) -> None:
    write(ad, ad.writer_params("t"), docs([1]))
    w = make_writer(ad, ad.writer_params("t"))
    w.prepare(docs([1]).schema)
    results = []
    for i in range(2):
        sink = w.open(Split(i, f"s{i}"))
        sink.write(docs(range(10 * i + 10, 10 * i + 20)).to_batches()[0])
        results.append(sink.close())
    Path(results[1]["file"]).write_bytes(b"not an arrow stream")  # read after the first
    with pytest.raises(FatalError):
        w.commit(results)
    assert versions(ad, "t") == [1]
    assert sorted(by_id(ad.read_table("t"))) == [1]


def _job(folder: Path, rows_: int, **writer: Any) -> Path:
    params = {"path": "db", "table": "t", "writeMode": "append", **writer}
    return _runs.stream_job(folder, {"name": "lancedb", "parameter": params}, rows_, "g")


def test_a_failed_run_leaves_the_previous_version_latest(ad: LanceAdapter) -> None:
    ok = _runs.run_here(_job(ad.base_dir, 5))
    assert ok.status == "succeeded", ok.error
    # row 3 of the next run cannot be converted: a dirty record, over the error limit of 0
    job = json.loads(_job(ad.base_dir, 5).read_text())
    cast = "CAST(CASE WHEN id = 3 THEN 'x' ELSE CAST(id AS VARCHAR) END AS BIGINT)"
    job["job"]["content"][0]["transformer"] = [
        {"name": "sql", "parameter": {"expressions": {"id": cast}}}
    ]
    bad = ad.base_dir / "bad.json"
    bad.write_text(json.dumps(job))
    failed = _runs.run_here(bad)
    assert failed.status == "failed"
    assert failed.dirty_records == 1 and failed.records_written > 0, failed.error
    assert versions(ad, "t") == [1]
    assert ad.read_table("t").num_rows == 5
    assert not (ad.base_dir / "db" / ".t.tidesync").exists()


@pytest.mark.parametrize("hook", ["lancedb.commit=kill", "lancedb.streamed=kill@2"])
def test_a_killed_run_leaves_the_previous_version_and_recover_removes_its_staging(
    ad: LanceAdapter, hook: str
) -> None:
    assert _runs.run_here(_job(ad.base_dir, 100)).status == "succeeded"
    job = _job(ad.base_dir, 200_000)
    killed = _runs.tidesync("run", job, cwd=ad.base_dir, hooks=hook)
    assert killed.returncode == _runs.KILLED, killed.stderr
    assert versions(ad, "t") == [1]
    assert ad.read_table("t").num_rows == 100
    stage = ad.base_dir / "db" / ".t.tidesync"
    assert [p.name for p in stage.iterdir()]  # the dead run's staging is there
    out = _runs.tidesync("recover", job, cwd=ad.base_dir)
    assert out.returncode == 0, out.stderr
    assert "removed:" in out.stdout and "its run is gone" in out.stdout
    assert not stage.exists()
    again = _runs.run_here(job)
    assert again.status == "succeeded", again.error
    assert versions(ad, "t") == [1, 2]


# -- vectors: index and search -------------------------------------------------------------------


def test_an_index_is_built_at_commit_and_search_finds_the_nearest_row(ad: LanceAdapter) -> None:
    data = docs(range(300))
    write(
        ad,
        ad.writer_params("t", index={"column": "vec", "metric": "cosine", "partitions": 2}),
        data,
    )
    table = ad.db().open_table("t")
    [index] = table.list_indices()
    assert list(index.columns) == ["vec"]
    assert index.index_type == "IvfPq"
    stats = table.index_stats(index.name)
    assert (stats.distance_type, stats.num_indexed_rows) == ("cosine", 300)
    target = np.array(data.column("vec")[123].as_py(), dtype=np.float32)
    query = target + np.float32(0.01)  # near row 123, not equal to it
    hits = table.search(query, vector_column_name="vec").distance_type("cosine")
    # the IVF-PQ index is approximate: all partitions probed, candidates rescored exactly
    hits = hits.nprobes(1_000).refine_factor(100).limit(3)
    assert hits.to_arrow().column("id").to_pylist()[0] == 123


def test_an_index_column_that_is_not_a_vector_is_a_config_error(ad: LanceAdapter) -> None:
    w = make_writer(ad, ad.writer_params("t", index={"column": "review"}))
    with pytest.raises(ConfigError, match=r"index\.column: 'review' is string, not a vector"):
        w.prepare(docs([1]).schema)
    assert not (ad.base_dir / "db" / "t.lance").exists()
    assert not (ad.base_dir / "db" / ".t.tidesync").exists()


def test_an_index_that_cannot_be_built_is_a_warning_and_the_rows_are_committed(
    ad: LanceAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    params = ad.writer_params("t", index={"column": "vec", "type": "IVF_PQ", "subVectors": 3})
    with caplog.at_level(logging.WARNING, logger="tidesync"):
        write(ad, params, docs(range(300)))  # 3 does not divide the vectors' 8 dimensions
    assert ad.read_table("t").num_rows == 300
    assert "the IVF_PQ index on vec was not built (the rows are committed)" in caplog.text
    assert ad.db().open_table("t").list_indices() == []


def test_an_index_on_a_small_table_says_that_no_row_is_indexed_yet(
    ad: LanceAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="tidesync"):
        write(
            ad, ad.writer_params("t", index={"column": "vec", "metric": "cosine"}), docs(range(9))
        )
    assert "IVF_PQ index (cosine) on vec: 0 rows indexed, 9 not (LanceDB trains" in caplog.text
    table = ad.db().open_table("t")
    hits = table.search(np.ones(DIM, np.float32), vector_column_name="vec").limit(9).to_arrow()
    assert sorted(hits.column("id").to_pylist()) == list(range(9))


def test_a_where_lancedb_cannot_parse_is_a_config_error_naming_where(ad: LanceAdapter) -> None:
    write(ad, ad.writer_params("t"), docs([1]))
    r = make_reader(ad, ad.reader_params("t", where="id >= 2 AND"))
    with pytest.raises(ConfigError, match=r"reader\.parameter\.where: 'id >= 2 AND': .*parsing"):
        read_all(r)
