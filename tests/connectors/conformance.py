"""The connector conformance suite: what every table connector of tidesync must do.

Two mixins of pytest tests, collected in the test class that inherits them:

- :class:`ConformanceSuite`, for any connector with a Reader and a Writer over tables: type round
  trip, splits cover the input exactly once, a rerun gives the same target, nothing is visible
  before commit, abort leaves the target untouched, bad rows become dirty records.
- :class:`SqlSuite` adds the DataX parameters of SQL databases: ``querySql``, ``where``,
  ``column`` expressions, several tables, awkward identifiers, ``preSql``/``postSql``, the write
  modes (``partition`` overwrite, ``merge`` with ``deleteMarker`` and ``sync`` included),
  ``incremental``, and the messages of common mistakes.

A connector's test module supplies an **adapter** through a fixture named ``adapter``::

    class SqliteAdapter(Adapter):
        kind = "sqlite"

        def create_table(self, name, data, primary_key=()): ...  # the store's own DDL + rows
        def read_table(self, name): ...                          # the store's own client
        def reader_params(self, table, **extra): ...             # {"database": ..., "table": [table], **extra}
        def writer_params(self, table, **extra): ...

    class TestSqliteConformance(SqlSuite):
        @pytest.fixture
        def adapter(self, tmp_path):
            return SqliteAdapter(tmp_path)

The adapter contract (see :class:`Adapter`):

``kind``
    the connector kind the registry loads (``load(kind, "reader")``).
``create_table(name, data, primary_key=(), defaults={})``
    create table ``name`` with the store's own means (not the connector under test): one column
    per field of ``data`` with the store's nearest type, ``NOT NULL`` where the field has
    ``nullable=False``, ``DEFAULT <literal>`` for a column named in ``defaults`` (column -> SQL
    literal; none by default), a PRIMARY KEY on ``primary_key``; then insert ``data``'s rows. An existing table
    of that name is replaced.
``read_table(name) -> pa.Table``
    every row of ``name`` as the store's own client sees it now (committed data only).
``reader_params(table, **extra)`` / ``writer_params(table, **extra)``
    the ``parameter`` object of a reader / writer of ``table`` (the reader's may be a list of
    names: read them all), with ``extra`` keys merged in (``splitPk``, ``writeMode``,
    ``primaryKey``, ``where``, ``column``, ``querySql``, ``preSql``, ``session``, ...).
``ident(name)``
    ``name`` quoted as an identifier in the store's SQL (default: double quotes).
``context(side)``
    the run's Context (default: ``base_dir`` = the adapter's folder, ``where`` =
    ``job.content[0].<side>.parameter``).
``round_trip``
    the data of the type round trip; drop or retype columns the store cannot hold.
``creates_tables``
    whether the writer creates a missing target table (skip that test when False).
``date_partitions``
    whether ``partition: ds=20161114`` overwrites a partition of a DATE column (default True;
    the partition specs run with a text and a date ``ds`` column).
``not_null_words``
    words (lower case) of which one must appear in the store's NOT NULL violation message.

The helpers drive the connectors as the engine does, so the suite needs no engine:
:func:`copy` (a whole job: prepare, splits, sinks with dirty rows isolated by
:func:`tidesync.engine.dirty.isolate`, commit or abort), :func:`write` (one sink, committed or
left open), :func:`read_all` / :func:`read_splits` (every batch checked against ``schema()``),
:func:`rows` (sorted rows for comparing), :func:`make_reader` / :func:`make_writer` (through the
registry, with the adapter's Context). ``OLD`` / ``NEW`` are small ``(id, v)`` tables.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import pickle
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tidesync.connectors.base import Chunk, Context, Dirty, Reader, Split, Writer, load
from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError, RetriableError

__all__ = [
    "Adapter",
    "ConformanceSuite",
    "SqlSuite",
    "ROUND_TRIP",
    "OLD",
    "NEW",
    "copy",
    "write",
    "read_all",
    "read_splits",
    "rows",
    "make_reader",
    "make_writer",
]

ROUND_TRIP = pa.table(
    {
        "id": pa.array([1, 2, 3, 4], pa.int64()),
        "i32": pa.array([-(2**31), 0, 2**31 - 1, None], pa.int32()),
        "big": pa.array([-(2**63), 2**63 - 1, 0, None], pa.int64()),
        "f": pa.array([1.5, -2.25e-300, 1e300, None], pa.float64()),
        "s": pa.array(["plain", "unicode 名字 ü 😀 \"q\" 'a'", "", None], pa.string()),
        "b": pa.array([True, False, None, True], pa.bool_()),
        "d": pa.array([dt.date(1970, 1, 1), dt.date(2024, 2, 29), dt.date(9999, 12, 31), None]),
        "ts": pa.array(
            [
                dt.datetime(2024, 1, 2, 3, 4, 5, 123456),
                dt.datetime(1970, 1, 1),
                dt.datetime(2038, 1, 19, 3, 14, 8),
                None,
            ],
            pa.timestamp("us"),
        ),
        "bin": pa.array([b"\x00\xff\x10", b"", b"abc", None], pa.binary()),
    },
    schema=pa.schema(
        [
            pa.field("id", pa.int64(), nullable=False),
            ("i32", pa.int32()),
            ("big", pa.int64()),
            ("f", pa.float64()),
            ("s", pa.string()),
            ("b", pa.bool_()),
            ("d", pa.date32()),
            ("ts", pa.timestamp("us")),
            ("bin", pa.binary()),
        ]
    ),
)


class Adapter:
    """How the suite reaches one store; see the module docstring for the contract."""

    kind: str = ""
    round_trip: pa.Table = ROUND_TRIP
    creates_tables: bool = True
    not_null_words: tuple[str, ...] = ("null",)
    date_partitions: bool = True

    def __init__(self, base_dir: Path):
        self.base_dir = base_dir

    def create_table(
        self,
        name: str,
        data: pa.Table,
        primary_key: Sequence[str] = (),
        defaults: Mapping[str, str] | None = None,
    ) -> None:
        raise NotImplementedError

    def read_table(self, name: str) -> pa.Table:
        raise NotImplementedError

    def reader_params(self, table: str | list[str], **extra: Any) -> dict[str, Any]:
        raise NotImplementedError

    def writer_params(self, table: str, **extra: Any) -> dict[str, Any]:
        raise NotImplementedError

    def context(self, side: str) -> Context:
        return Context(base_dir=self.base_dir, where=f"job.content[0].{side}.parameter")

    def ident(self, name: str) -> str:
        """``name`` quoted as an identifier in this store's SQL (for ``where`` and ``preSql``)."""
        return '"' + name.replace('"', '""') + '"'


# -- driving connectors as the engine does -----------------------------------------------------


def make_reader(adapter: Adapter, params: dict[str, Any]) -> Reader:
    cls = load(adapter.kind, "reader")
    assert issubclass(cls, Reader)
    return cls(params, adapter.context("reader"))


def make_writer(adapter: Adapter, params: dict[str, Any]) -> Writer:
    cls = load(adapter.kind, "writer")
    assert issubclass(cls, Writer)
    return cls(params, adapter.context("writer"))


def _batches(chunks: Any, dirty: list[Any]) -> list[pa.RecordBatch]:
    out = []
    for c in chunks:
        if isinstance(c, Chunk):
            dirty.extend(c.dirty)
            c = c.batch
        if c is not None and c.num_rows:
            out.append(c)
    return out


def read_splits(reader: Reader, n: int) -> list[list[dict[str, Any]]]:
    """The rows of each split of ``reader.splits(n)``, split by split."""
    dirty: list[Dirty] = []
    out = [
        [r for b in _batches(reader.read(s), dirty) for r in b.to_pylist()]
        for s in reader.splits(n)
    ]
    assert not dirty, dirty
    return out


def copy(reader: Reader, writer: Writer, n: int = 1) -> list[Any]:
    """Run one job as the engine does; returns the dirty records (read and write side)."""
    writer.prepare(reader.schema())
    results: list[Any] = []
    dirty: list[Any] = []
    try:
        for split in reader.splits(n):
            sink = writer.open(split)
            try:
                for batch in _batches(reader.read(split), dirty):
                    isolate(batch, sink.write, lambda _o, b, e: dirty.append((b.to_pylist(), e)))
            except BaseException:
                results.append(sink.discard())
                raise
            results.append(sink.close())
    except BaseException:
        writer.abort(results)
        raise
    writer.commit(results)
    return dirty


def write(
    adapter: Adapter, params: dict[str, Any], data: pa.Table, *, commit: bool = True
) -> tuple[Writer, list[Any]]:
    """Write ``data`` through one sink; commit, or leave it to the caller to commit or abort
    with the results returned."""
    w = make_writer(adapter, params)
    w.prepare(data.schema)
    sink = w.open(Split(0, "test"))
    for b in data.to_batches():
        sink.write(b)
    results = [sink.close()]
    if commit:
        w.commit(results)
    return w, results


def read_all(reader: Reader) -> pa.Table:
    """Every split of ``reader`` as one table of ``reader.schema()``, checking each batch has it."""
    schema = reader.schema()
    batches = [b for s in reader.splits(1) for b in _batches(reader.read(s), [])]
    for b in batches:
        assert b.schema == schema, (b.schema, schema)
    return pa.Table.from_batches(batches, schema)


def rows(table: pa.Table | list[dict[str, Any]], key: str = "id") -> list[dict[str, Any]]:
    """Rows as dicts, sorted by ``key`` (NULL keys last, then by the whole row)."""
    items = table.to_pylist() if isinstance(table, pa.Table) else list(table)
    return sorted(
        items, key=lambda r: (r[key] is None, r[key] if r[key] is not None else 0, repr(r))
    )


class _Background:
    """``fn()`` in a thread; ``error`` holds what it raised."""

    def __init__(self, fn: Any):
        self.error: BaseException | None = None

        def run() -> None:
            try:
                fn()
            except BaseException as e:  # noqa: BLE001 - handed to the test
                self.error = e

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise AssertionError("the second run is still blocked")


def _until(cond: Any, guard_s: float = 60) -> None:
    """Poll ``cond`` until it holds; ``guard_s`` only keeps a broken run from hanging the test."""
    event = threading.Event()
    for _ in range(int(guard_s / 0.02)):
        if cond():
            return
        event.wait(0.02)


def _as(table: pa.Table, like: pa.Table) -> pa.Table:
    """``table``'s columns named as in ``like``, cast to its types (stores spell types their way)."""
    return table.select(like.schema.names).cast(like.schema)


OLD = pa.table(
    {"id": pa.array([1, 2, 3], pa.int64()), "v": ["old1", "old2", "old3"]},
    schema=pa.schema([pa.field("id", pa.int64(), nullable=False), ("v", pa.string())]),
)
NEW = pa.table(
    {"id": pa.array([3, 4, 5], pa.int64()), "v": ["new3", "new4", "new5"]}, schema=OLD.schema
)


_DAY13, _DAY14 = "20161113", "20161114"
_DS_TYPES = [pa.string(), pa.date32()]
_NEW_DAY = pa.record_batch({"id": pa.array([5, 6], pa.int64()), "v": ["new", "new"]})


def _days(days: Sequence[str | None], ds_type: pa.DataType) -> pa.Array:
    """'yyyymmdd' days as a column of ``ds_type`` (text as written, or dates)."""
    if pa.types.is_date(ds_type):
        return pa.array(
            [None if d is None else dt.datetime.strptime(d, "%Y%m%d").date() for d in days],
            ds_type,
        )
    return pa.array(days, ds_type)


def _yyyymmdd(value: Any) -> str | None:
    return value.strftime("%Y%m%d") if isinstance(value, dt.date) else value


# -- the suites --------------------------------------------------------------------------------


class ConformanceSuite:
    """What every table connector does. Inherit it in a ``Test*`` class with an ``adapter`` fixture."""

    @pytest.fixture
    def adapter(self) -> Adapter:
        raise NotImplementedError("define an `adapter` fixture returning an Adapter")

    def test_type_round_trip(self, adapter: Adapter) -> None:
        data = adapter.round_trip
        adapter.create_table("round_trip", data.schema.empty_table(), primary_key=["id"])
        write(adapter, adapter.writer_params("round_trip"), data)
        got = read_all(make_reader(adapter, adapter.reader_params("round_trip")))
        assert rows(_as(got, data)) == rows(data)

    def test_writer_creates_a_missing_table(self, adapter: Adapter) -> None:
        if not adapter.creates_tables:
            pytest.skip("this writer does not create tables")
        data = adapter.round_trip
        write(adapter, adapter.writer_params("created"), data)
        got = read_all(make_reader(adapter, adapter.reader_params("created")))
        assert rows(_as(got, data)) == rows(data)

    def test_a_writer_prepared_without_a_schema_creates_the_table_on_first_write(
        self, adapter: Adapter
    ) -> None:
        if not adapter.creates_tables:
            pytest.skip("this writer does not create tables")
        w = make_writer(adapter, adapter.writer_params("late"))
        w.prepare(None)
        sink = w.open(Split(0, "all"))
        for b in OLD.to_batches():
            sink.write(b)
        w.commit([sink.close()])
        assert rows(_as(adapter.read_table("late"), OLD)) == rows(OLD)

    @pytest.mark.parametrize("n", [1, 4, 7, 16])
    def test_splits_cover_the_input_exactly_once(self, adapter: Adapter, n: int) -> None:
        ids = [1, 2, 3, 10, 11, 12, 50, 100, 101, 1000, None, None, -5, 2**40]
        data = pa.table({"id": pa.array(ids, pa.int64()), "v": [f"v{i}" for i in range(len(ids))]})
        adapter.create_table("src", data)
        reader = make_reader(adapter, adapter.reader_params("src", splitPk="id"))
        parts = read_splits(reader, n)
        got = [r for p in parts for r in p]
        assert rows(got) == rows(data)  # the union is the table, and no row twice
        assert len(parts) == 1 if n == 1 else len(parts) > 2
        assert sum(1 for p in parts if p and all(r["id"] is None for r in p)) == (n > 1)

    def test_every_batch_has_the_reader_schema(self, adapter: Adapter) -> None:
        adapter.create_table("src", adapter.round_trip)
        reader = make_reader(adapter, adapter.reader_params("src", splitPk="id"))
        for split in reader.splits(3):
            for b in _batches(reader.read(split), []):
                assert b.schema == reader.schema()

    def test_splits_reach_the_largest_key(self, adapter: Adapter) -> None:
        data = pa.table(
            {"id": pa.array([-(2**63), 0, 2**63 - 1], pa.int64()), "v": ["a", "b", "c"]}
        )
        adapter.create_table("extremes", data)
        reader = make_reader(adapter, adapter.reader_params("extremes", splitPk="id"))
        assert rows([r for p in read_splits(reader, 3) for r in p]) == rows(data)

    def test_splits_are_plain_data(self, adapter: Adapter) -> None:
        adapter.create_table("src", OLD)
        reader = make_reader(adapter, adapter.reader_params("src", splitPk="id"))
        splits = reader.splits(2)
        assert [pickle.loads(pickle.dumps(s)) for s in splits] == splits

    @pytest.mark.parametrize("mode", ["truncate", "replace"])
    def test_a_rerun_gives_the_same_target(self, adapter: Adapter, mode: str) -> None:
        adapter.create_table("src", NEW)
        adapter.create_table("dst", OLD, primary_key=["id"])
        states = []
        for _ in range(2):
            copy(
                make_reader(adapter, adapter.reader_params("src", splitPk="id")),
                make_writer(adapter, adapter.writer_params("dst", writeMode=mode)),
                n=2,
            )
            states.append(rows(_as(adapter.read_table("dst"), OLD)))
        expected = NEW.to_pylist() if mode == "truncate" else OLD.to_pylist()[:2] + NEW.to_pylist()
        assert states == [rows(expected), rows(expected)]

    def test_nothing_is_visible_before_commit(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        w, results = write(
            adapter, adapter.writer_params("dst", writeMode="truncate"), NEW, commit=False
        )
        try:
            assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)
        finally:
            w.commit(results)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(NEW)

    @pytest.mark.parametrize("mode", ["insert", "truncate", "replace", "update"])
    def test_abort_leaves_the_target_untouched(self, adapter: Adapter, mode: str) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        data = NEW.filter(pa.array([False, True, True])) if mode == "insert" else NEW
        w, results = write(
            adapter, adapter.writer_params("dst", writeMode=mode), data, commit=False
        )
        w.abort(results)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)

    def test_a_failed_task_is_discarded(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        w = make_writer(adapter, adapter.writer_params("dst", writeMode="truncate"))
        w.prepare(NEW.schema)
        sink = w.open(Split(0, "failing"))
        sink.write(NEW.to_batches()[0])
        w.abort([sink.discard()])
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)

    def test_a_null_in_a_not_null_column_becomes_a_dirty_record(self, adapter: Adapter) -> None:
        schema = pa.schema(
            [pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string(), nullable=False)]
        )
        adapter.create_table("dst", schema.empty_table(), primary_key=["id"])
        batch = pa.record_batch(
            [pa.array([1, 2, 3, 4, 5]), pa.array(["a", "b", None, "d", "e"])],
            schema=pa.schema([("id", pa.int64()), ("v", pa.string())]),
        )
        bad: list[tuple[int, DirtyRecordError]] = []
        w = make_writer(adapter, adapter.writer_params("dst"))
        w.prepare(batch.schema)
        sink = w.open(Split(0, "all"))
        isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e)))
        w.commit([sink.close()])
        assert [off for off, _ in bad] == [2]
        assert any(word in bad[0][1].reason.lower() for word in adapter.not_null_words), bad[0][1]
        assert bad[0][1].code
        assert [r["id"] for r in rows(adapter.read_table("dst"))] == [1, 2, 4, 5]

    def test_a_duplicate_key_becomes_a_dirty_record(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD.slice(0, 1), primary_key=["id"])  # id 1 is there
        batch = pa.record_batch(
            [pa.array([7, 8, 1, 9, 8]), pa.array(["a", "b", "c", "d", "e"])],
            schema=pa.schema([("id", pa.int64()), ("v", pa.string())]),
        )
        bad: list[int] = []
        w = make_writer(adapter, adapter.writer_params("dst"))
        w.prepare(batch.schema)
        sink = w.open(Split(0, "all"))
        isolate(batch, sink.write, lambda off, _b, _e: bad.append(off))
        w.commit([sink.close()])
        assert bad == [2, 4]
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(
            [{"id": 1, "v": "old1"}, {"id": 7, "v": "a"}, {"id": 8, "v": "b"}, {"id": 9, "v": "d"}]
        )

    def test_an_empty_source_truncates_the_target(self, adapter: Adapter) -> None:
        adapter.create_table("src", OLD.schema.empty_table())
        adapter.create_table("dst", OLD, primary_key=["id"])
        dirty = copy(
            make_reader(adapter, adapter.reader_params("src", splitPk="id")),
            make_writer(adapter, adapter.writer_params("dst", writeMode="truncate")),
            n=4,
        )
        assert dirty == []
        assert adapter.read_table("dst").num_rows == 0


class SqlSuite(ConformanceSuite):
    """DataX's SQL reader and writer parameters, on top of :class:`ConformanceSuite`."""

    def _src(self, adapter: Adapter) -> pa.Table:
        data = pa.table(
            {
                "id": pa.array([1, 2, 3, 4], pa.int64()),
                "name": ["a", "b", "c", None],
                "n": pa.array([10, 20, 30, 40], pa.int64()),
            }
        )
        adapter.create_table("src", data, primary_key=["id"])
        return data

    def _read(self, adapter: Adapter, params: dict[str, Any], n: int = 1) -> list[dict[str, Any]]:
        return [r for p in read_splits(make_reader(adapter, params), n) for r in p]

    def test_where_filters_every_split(self, adapter: Adapter) -> None:
        self._src(adapter)
        got = self._read(adapter, adapter.reader_params("src", where="n >= 20", splitPk="id"), n=3)
        assert sorted(r["id"] for r in got) == [2, 3, 4]

    def test_column_takes_names_constants_and_expressions(self, adapter: Adapter) -> None:
        self._src(adapter)
        params = adapter.reader_params("src", column=["id", "'k'", "n * 2", "NULL", "1"])
        got = self._read(adapter, params)
        assert sorted(tuple(r.values()) for r in got) == [
            (1, "k", 20, None, 1),
            (2, "k", 40, None, 1),
            (3, "k", 60, None, 1),
            (4, "k", 80, None, 1),
        ]

    def test_query_sql_overrides_table(self, adapter: Adapter) -> None:
        self._src(adapter)
        params = adapter.reader_params("src", querySql=["SELECT id, n FROM src WHERE n > 25;"])
        assert sorted((r["id"], r["n"]) for r in self._read(adapter, params, n=4)) == [
            (3, 30),
            (4, 40),
        ]

    def test_where_or_column_beside_a_query_sql_is_an_error(self, adapter: Adapter) -> None:
        # DataX ignores them: a where meant to filter a query's rows let them all through
        query = ["SELECT id, n FROM src WHERE n > 25"]
        for extra, key in (({"where": "id = 1"}, "where"), ({"column": ["name"]}, "column")):
            params = adapter.reader_params("src", querySql=query, **extra)
            with pytest.raises(ConfigError) as e:
                self._read(adapter, params)
            assert f".{key}: has no effect on a query (" in str(e.value)
            assert "querySql[0] is read as it is)" in str(e.value)

    def test_several_tables_are_read_each_in_its_own_splits(self, adapter: Adapter) -> None:
        data = self._src(adapter)
        adapter.create_table("src2", data.slice(0, 2))
        reader = make_reader(adapter, adapter.reader_params(["src", "src2"], splitPk="id"))
        parts = read_splits(reader, 4)
        assert sorted(r["id"] for p in parts for r in p) == [1, 1, 2, 2, 3, 4]
        assert len(parts) >= 4 and all(len({r["id"] for r in p}) == len(p) for p in parts)

    def test_reserved_mixed_case_and_unicode_names_round_trip(self, adapter: Adapter) -> None:
        data = pa.table(
            {"id": pa.array([1, 2], pa.int64()), "select": ["x", "y"], "名字": ["甲", "乙"]}
        )
        adapter.create_table("Order", data, primary_key=["id"])
        params = adapter.reader_params(
            "Order",
            column=["id", "select", "名字"],
            splitPk="id",
            where=f"{adapter.ident('select')} = 'y'",
        )
        assert self._read(adapter, params, n=2) == [{"id": 2, "select": "y", "名字": "乙"}]
        adapter.create_table("Target", data.schema.empty_table())
        copy(
            make_reader(adapter, adapter.reader_params("Order")),
            make_writer(adapter, adapter.writer_params("Target", column=["id", "select", "名字"])),
        )
        assert rows(_as(adapter.read_table("Target"), data)) == rows(data)

    def test_pre_and_post_sql_run_in_the_transaction_with_at_table(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        params = adapter.writer_params(
            "dst",
            preSql=["DELETE FROM @table WHERE id = 1"],
            postSql=["UPDATE @table SET v = 'post' WHERE id = 4"],
        )
        w, results = write(adapter, params, NEW.slice(1), commit=False)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)
        w.commit(results)
        assert [(r["id"], r["v"]) for r in rows(adapter.read_table("dst"))] == [
            (2, "old2"),
            (3, "old3"),
            (4, "post"),
            (5, "new5"),
        ]

    def test_replace_rewrites_whole_rows_by_key(self, adapter: Adapter) -> None:
        wide = pa.table(
            {"id": pa.array([1, 2], pa.int64()), "v": ["a", "b"], "w": ["keep", "keep"]}
        )
        adapter.create_table("dst", wide, primary_key=["id"])
        write(
            adapter,
            adapter.writer_params("dst", writeMode="replace"),
            pa.table({"id": pa.array([2, 3, 3], pa.int64()), "v": ["B", "c", "C"]}),
        )
        assert [(r["id"], r["v"], r["w"]) for r in rows(adapter.read_table("dst"))] == [
            (1, "a", "keep"),
            (2, "B", None),
            (3, "C", None),
        ]

    def test_update_changes_only_the_written_columns(self, adapter: Adapter) -> None:
        wide = pa.table(
            {"id": pa.array([1, 2], pa.int64()), "v": ["a", "b"], "w": ["keep", "keep"]}
        )
        adapter.create_table("dst", wide, primary_key=["id"])
        write(
            adapter,
            adapter.writer_params("dst", writeMode="update"),
            pa.table({"id": pa.array([2, 3, 3], pa.int64()), "v": ["B", "c", "C"]}),
        )
        assert [(r["id"], r["v"], r["w"]) for r in rows(adapter.read_table("dst"))] == [
            (1, "a", "keep"),
            (2, "B", "keep"),
            (3, "C", None),
        ]

    @pytest.mark.parametrize("mode", ["replace", "update"])
    def test_upserts_take_primary_key_on_a_table_without_one(
        self, adapter: Adapter, mode: str
    ) -> None:
        adapter.create_table("dst", OLD)
        write(adapter, adapter.writer_params("dst", writeMode=mode, primaryKey=["id"]), NEW)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(
            OLD.to_pylist()[:2] + NEW.to_pylist()
        )

    @pytest.mark.parametrize("mode", ["replace", "update"])
    def test_upserts_without_a_key_name_primary_key(self, adapter: Adapter, mode: str) -> None:
        adapter.create_table("dst", OLD)
        w = make_writer(adapter, adapter.writer_params("dst", writeMode=mode))
        with pytest.raises(
            ConfigError,
            match=r"job\.content\[0\]\.writer\.parameter\.primaryKey: "
            rf"writeMode '{mode}' needs a key",
        ):
            w.prepare(OLD.schema)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)

    def test_a_misspelt_write_mode_is_named_with_the_fix(self, adapter: Adapter) -> None:
        with pytest.raises(ConfigError) as e:
            make_writer(adapter, adapter.writer_params("dst", writeMode="trunc"))
        assert (
            "job.content[0].writer.parameter.writeMode: 'trunc' is not one of insert, replace, "
            "update, truncate, overwrite, merge, sync; did you mean 'truncate'?" in str(e.value)
        )

    # -- sync: the run's rows are the whole table ------------------------------------------------

    def test_sync_deletes_what_the_source_no_longer_has_and_a_rerun_changes_nothing(
        self, adapter: Adapter
    ) -> None:
        adapter.create_table("src", NEW)
        adapter.create_table("dst", OLD, primary_key=["id"])
        for _ in range(2):
            copy(
                make_reader(adapter, adapter.reader_params("src", splitPk="id")),
                make_writer(adapter, adapter.writer_params("dst", writeMode="sync")),
                n=2,
            )
            assert rows(_as(adapter.read_table("dst"), OLD)) == rows(NEW)

    def test_sync_keeps_the_last_row_of_a_key_and_leaves_unchanged_rows(
        self, adapter: Adapter
    ) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        data = pa.table({"id": pa.array([1, 3, 3], pa.int64()), "v": ["old1", "x", "y"]})
        write(adapter, adapter.writer_params("dst", writeMode="sync"), data)
        assert [(r["id"], r["v"]) for r in rows(adapter.read_table("dst"))] == [
            (1, "old1"),
            (3, "y"),
        ]

    def test_sync_of_an_empty_source_empties_the_table(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        write(adapter, adapter.writer_params("dst", writeMode="sync"), OLD.schema.empty_table())
        assert adapter.read_table("dst").num_rows == 0

    def test_an_aborted_sync_leaves_the_table_as_it_was(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        w, results = write(
            adapter, adapter.writer_params("dst", writeMode="sync"), NEW.slice(2), commit=False
        )
        w.abort(results)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)

    def test_sync_by_primary_key_on_a_table_without_one(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD)
        write(adapter, adapter.writer_params("dst", writeMode="sync", primaryKey=["id"]), NEW)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(NEW)

    @pytest.mark.parametrize("mode", ["sync", "update", "replace", "merge"])
    def test_a_row_without_a_key_is_dirty_when_writing_by_key(
        self, adapter: Adapter, mode: str
    ) -> None:
        """No key matches a null one: on a table whose key columns are nullable every run
        would insert the row again, and a sync could not tell it from another."""
        schema = pa.schema([("id", pa.int64()), ("v", pa.string())])
        adapter.create_table("dst", pa.table({"id": [1, 2], "v": ["a", "b"]}, schema=schema))
        batch = pa.record_batch({"id": pa.array([2, None, 4], pa.int64()), "v": ["B", "n", "D"]})
        for _ in range(2):  # a rerun, as a scheduler's retry would do
            bad: list[tuple[int, DirtyRecordError]] = []
            w = make_writer(
                adapter, adapter.writer_params("dst", writeMode=mode, primaryKey=["id"])
            )
            w.prepare(batch.schema)
            sink = w.open(Split(0, "all"))
            isolate(batch, sink.write, lambda off, _b, e, bad=bad: bad.append((off, e)))
            w.commit([sink.close()])
            assert [off for off, _ in bad] == [1]
            assert f"key column id is null; writeMode {mode}" in bad[0][1].reason
        kept = [] if mode == "sync" else [(1, "a")]
        assert [(r["id"], r["v"]) for r in rows(adapter.read_table("dst"))] == [
            *kept,
            (2, "B"),
            (4, "D"),
        ]

    def test_a_sync_row_dirty_at_the_write_leaves_its_keys_row_as_it_was(
        self, adapter: Adapter
    ) -> None:
        """The source still has key 2; its new row is dirty (NOT NULL), so the target keeps
        key 2's old row: deleting it would lose a row the source has."""
        schema = pa.schema(
            [pa.field("id", pa.int64(), nullable=False), pa.field("v", pa.string(), nullable=False)]
        )
        adapter.create_table("dst", pa.table(OLD.columns, schema=schema), primary_key=["id"])
        batch = pa.record_batch({"id": pa.array([1, 2, 4], pa.int64()), "v": ["n1", None, "n4"]})
        assert make_writer(adapter, adapter.writer_params("dst", writeMode="sync")).keeps_dirty_keys
        bad: list[int] = []
        w = make_writer(adapter, adapter.writer_params("dst", writeMode="sync"))
        assert w.deletes_unwritten()
        w.prepare(batch.schema)
        sink = w.open(Split(0, "all"))
        isolate(batch, sink.write, lambda off, _b, _e: bad.append(off))
        w.commit([sink.close()])
        assert bad == [1]
        assert [(r["id"], r["v"]) for r in rows(adapter.read_table("dst"))] == [
            (1, "n1"),
            (2, "old2"),
            (4, "n4"),
        ]

    def test_sync_without_a_key_names_primary_key(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD)
        w = make_writer(adapter, adapter.writer_params("dst", writeMode="sync"))
        with pytest.raises(
            ConfigError,
            match=r"writer\.parameter\.primaryKey: writeMode 'sync' needs a key",
        ):
            w.prepare(OLD.schema)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)

    def test_sync_of_a_partition_is_refused(self, adapter: Adapter) -> None:
        with pytest.raises(
            ConfigError, match=r"writer\.parameter\.partition: applies to writeMode overwrite"
        ):
            make_writer(
                adapter, adapter.writer_params("dst", writeMode="sync", partition="ds=20161114")
            )

    # -- partition overwrite, merge by key, deleteMarker ---------------------------------------

    def _log(self, adapter: Adapter, ds_type: pa.DataType) -> pa.Table:
        """Table log (id, v, ds): row 1 in partition 20161113, row 2 in 20161114."""
        if pa.types.is_date(ds_type) and not adapter.date_partitions:
            pytest.skip("this store does not overwrite partitions of a DATE column")
        data = pa.table(
            {
                "id": pa.array([1, 2], pa.int64()),
                "v": ["old", "old"],
                "ds": _days([_DAY13, _DAY14], ds_type),
            }
        )
        adapter.create_table("log", data)
        return data

    def _drive(
        self,
        adapter: Adapter,
        batch: pa.RecordBatch,
        *,
        table: str = "log",
        abort: bool = False,
        **params: Any,
    ) -> list[int]:
        """Write ``batch`` through one sink, rows at fault isolated; the offsets of the dirty rows."""
        w = make_writer(adapter, adapter.writer_params(table, **params))
        w.prepare(batch.schema)
        sink = w.open(Split(0, "all"))
        bad: list[int] = []
        isolate(batch, sink.write, lambda off, _b, _e: bad.append(off))
        (w.abort if abort else w.commit)([sink.close()])
        return bad

    def _log_rows(self, adapter: Adapter, like: pa.Table) -> list[tuple[Any, ...]]:
        """(id, v, ds as 'yyyymmdd') of every row of log, by id."""
        got = _as(adapter.read_table("log"), like)
        return [
            (r["id"], r["v"], _yyyymmdd(r["ds"]))
            for r in sorted(got.to_pylist(), key=lambda r: r["id"])
        ]

    @pytest.mark.parametrize("ds_type", _DS_TYPES, ids=str)
    def test_overwrite_replaces_the_partition_and_a_rerun_changes_nothing(
        self, adapter: Adapter, ds_type: pa.DataType
    ) -> None:
        like = self._log(adapter, ds_type)
        for _ in range(2):  # no writeMode: a partition means overwrite
            assert self._drive(adapter, _NEW_DAY, partition="ds=20161114") == []
            assert self._log_rows(adapter, like) == [
                (1, "old", _DAY13),
                (5, "new", _DAY14),
                (6, "new", _DAY14),
            ]

    @pytest.mark.parametrize("ds_type", _DS_TYPES, ids=str)
    def test_overwrite_leaves_the_other_partitions_untouched(
        self, adapter: Adapter, ds_type: pa.DataType
    ) -> None:
        like = self._log(adapter, ds_type)
        self._drive(adapter, _NEW_DAY.slice(0, 1), writeMode="overwrite", partition="ds=20161114")
        assert self._log_rows(adapter, like) == [(1, "old", _DAY13), (5, "new", _DAY14)]

    def test_overwrite_of_several_partition_levels_matches_all_of_them(
        self, adapter: Adapter
    ) -> None:
        data = pa.table(
            {
                "id": pa.array([1, 2], pa.int64()),
                "pt": ["20150101", "20150101"],
                "type": pa.array([1, 2], pa.int32()),
            }
        )
        adapter.create_table("log", data)
        batch = pa.record_batch({"id": pa.array([9], pa.int64())})
        self._drive(adapter, batch, partition="pt=20150101/type=1")
        got = _as(adapter.read_table("log"), data)
        assert [tuple(r.values()) for r in rows(got)] == [(2, "20150101", 2), (9, "20150101", 1)]

    @pytest.mark.parametrize("ds_type", _DS_TYPES, ids=str)
    def test_overwrite_without_partition_replaces_the_whole_table(
        self, adapter: Adapter, ds_type: pa.DataType
    ) -> None:
        like = self._log(adapter, ds_type)
        self._drive(adapter, _NEW_DAY, writeMode="overwrite")
        assert self._log_rows(adapter, like) == [(5, "new", None), (6, "new", None)]

    @pytest.mark.parametrize("ds_type", _DS_TYPES, ids=str)
    def test_a_row_whose_partition_column_disagrees_is_dirty(
        self, adapter: Adapter, ds_type: pa.DataType
    ) -> None:
        like = self._log(adapter, ds_type)
        batch = pa.record_batch(
            {
                "id": pa.array([5, 6, 7], pa.int64()),
                "v": ["a", "b", "c"],
                "ds": _days([_DAY14, "20161115", _DAY14], ds_type),
            }
        )
        assert self._drive(adapter, batch, partition="ds=20161114") == [1]
        assert self._log_rows(adapter, like) == [
            (1, "old", _DAY13),
            (5, "a", _DAY14),
            (7, "c", _DAY14),
        ]

    @pytest.mark.parametrize("ds_type", _DS_TYPES, ids=str)
    def test_an_aborted_overwrite_leaves_the_table_as_it_was(
        self, adapter: Adapter, ds_type: pa.DataType
    ) -> None:
        like = self._log(adapter, ds_type)
        before = self._log_rows(adapter, like)
        self._drive(adapter, _NEW_DAY, abort=True, partition="ds=20161114")
        assert self._log_rows(adapter, like) == before == [(1, "old", _DAY13), (2, "old", _DAY14)]

    def test_an_unknown_partition_column_is_a_config_error_listing_the_columns(
        self, adapter: Adapter
    ) -> None:
        like = self._log(adapter, pa.string())
        w = make_writer(adapter, adapter.writer_params("log", partition="dt=20161114"))
        with pytest.raises(
            ConfigError, match=r"writer\.parameter\.partition: .*'dt'.*columns: id, v, ds"
        ):
            w.prepare(_NEW_DAY.schema)
        w.abort([])
        assert self._log_rows(adapter, like) == [(1, "old", _DAY13), (2, "old", _DAY14)]

    def test_merge_upserts_by_key_and_deletes_the_marked_rows(self, adapter: Adapter) -> None:
        """Merge replaces the whole row of a key (a column it does not write takes its default),
        deletes the rows marked deleted, keeps the last row of a key, and a rerun changes
        nothing."""
        target = pa.table({"id": pa.array([1, 2], pa.int64()), "v": ["a", "b"], "w": ["k", "k"]})
        adapter.create_table("t", target, primary_key=["id"], defaults={"w": "'dflt'"})
        batch = pa.record_batch(
            {
                "id": pa.array([1, 2, 3, 3], pa.int64()),
                "v": ["A", "gone", "C", "C2"],
                "is_deleted": pa.array([0, 1, 0, 0], pa.int8()),
            }
        )
        marker = {"column": "is_deleted", "value": 1}
        for _ in range(2):
            bad = self._drive(adapter, batch, table="t", writeMode="merge", deleteMarker=marker)
            got = _as(adapter.read_table("t"), target)
            assert (bad, [tuple(r.values()) for r in rows(got)]) == (
                [],
                [(1, "A", "dflt"), (3, "C2", "dflt")],
            )

    def test_merge_without_a_key_is_a_config_error_naming_primary_key(
        self, adapter: Adapter
    ) -> None:
        adapter.create_table("t", OLD)
        w = make_writer(adapter, adapter.writer_params("t", writeMode="merge"))
        with pytest.raises(
            ConfigError,
            match=r"writer\.parameter\.primaryKey: writeMode 'merge' needs a key and table \S*t\S* "
            r"has no primary key",
        ):
            w.prepare(OLD.schema)
        w.abort([])
        assert rows(_as(adapter.read_table("t"), OLD)) == rows(OLD)

    # -- one writer of a target at a time --------------------------------------------------------

    def test_a_second_run_waits_for_the_first_and_the_end_state_is_one_runs(
        self, adapter: Adapter, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Two identical truncates at once: the second waits until the first commits, then
        replaces its rows, instead of adding its own beside them."""
        caplog.set_level(logging.WARNING, logger="tidesync")
        adapter.create_table("dst", OLD.schema.empty_table())
        params = adapter.writer_params("dst", writeMode="truncate")
        first, results = write(adapter, params, NEW, commit=False)
        second = _Background(lambda: write(adapter, params, NEW))
        try:
            _until(lambda: "another run is writing" in caplog.text or second.done())
        finally:
            first.commit(results)
        second.join()
        assert "another run is writing table dst" in caplog.text
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(NEW)

    def test_a_run_that_waits_past_lock_timeout_fails_and_writes_nothing(
        self, adapter: Adapter
    ) -> None:
        adapter.create_table("dst", OLD)
        first, results = write(
            adapter, adapter.writer_params("dst", writeMode="truncate"), NEW, commit=False
        )
        params = adapter.writer_params("dst", writeMode="truncate", lockTimeout=1)
        second = _Background(lambda: write(adapter, params, NEW))
        try:
            second.join(timeout=120)
        finally:
            first.abort(results)
        second.join()
        assert isinstance(second.error, RetriableError), second.error
        assert "another run is writing table dst; gave up after waiting" in str(second.error)
        assert "(job.content[0].writer.parameter.lockTimeout is 1 s)" in str(second.error)
        assert rows(_as(adapter.read_table("dst"), OLD)) == rows(OLD)

    def test_a_missing_table_is_named_by_its_key(self, adapter: Adapter) -> None:
        self._src(adapter)
        reader = make_reader(adapter, adapter.reader_params("scr"))
        with pytest.raises(
            ConfigError,
            match=r"job\.content\[0\]\.reader\.parameter\.\S*table\S*: "
            r"table 'scr' not found.*did you mean 'src'\?",
        ):
            reader.schema()

    def test_an_unknown_column_is_named_with_a_suggestion(self, adapter: Adapter) -> None:
        self._src(adapter)
        reader = make_reader(adapter, adapter.reader_params("src", column=["id", "nmae"]))
        with pytest.raises(
            ConfigError,
            match=r"parameter\.column\[1\]: 'nmae' is not a column of "
            r"table src; did you mean 'name'\?",
        ):
            reader.splits(1)

    def test_an_unknown_split_pk_is_named_with_a_suggestion(self, adapter: Adapter) -> None:
        self._src(adapter)
        reader = make_reader(adapter, adapter.reader_params("src", splitPk="idd"))
        with pytest.raises(
            ConfigError,
            match=r"parameter\.splitPk: column 'idd' not in table src; "
            r"did you mean 'id'\?",
        ):
            reader.splits(2)

    def test_a_text_split_pk_is_refused(self, adapter: Adapter) -> None:
        self._src(adapter)
        reader = make_reader(adapter, adapter.reader_params("src", splitPk="name"))
        with pytest.raises(ConfigError, match=r"parameter\.splitPk: .*needs an integer column"):
            reader.splits(2)

    def test_an_unknown_target_column_is_named_with_a_suggestion(self, adapter: Adapter) -> None:
        adapter.create_table("dst", OLD, primary_key=["id"])
        w = make_writer(adapter, adapter.writer_params("dst", column=["id", "vv"]))
        with pytest.raises(
            ConfigError,
            match=r"writer\.parameter\.column\[1\]: table dst has no "
            r"column 'vv'; did you mean 'v'\?",
        ):
            w.prepare(OLD.schema)

    # -- incremental (a stored cursor; the engine saves positions after the commit) ------------

    def _oplog(self, adapter: Adapter, extra: Sequence[tuple[int, str]] = ()) -> None:
        """Table src (id, optime, v): three rows, then ``extra`` (id, optime) rows."""
        stamps = [(1, "2016-11-13 10:00"), (2, "2016-11-14 10:00"), (3, "2016-11-16 10:00")]
        stamps += list(extra)
        data = pa.table(
            {
                "id": pa.array([i for i, _ in stamps], pa.int64()),
                "optime": pa.array(
                    [dt.datetime.fromisoformat(t) for _, t in stamps], pa.timestamp("us")
                ),
                "v": [f"v{i}" for i, _ in stamps],
            },
            schema=pa.schema(
                [
                    pa.field("id", pa.int64(), nullable=False),
                    ("optime", pa.timestamp("us")),
                    ("v", pa.string()),
                ]
            ),
        )
        adapter.create_table("src", data, primary_key=["id"])

    def _run(
        self,
        adapter: Adapter,
        reader: dict[str, Any],
        target: str = "dst",
        *,
        cyctime: str = "20161115000000",
        job: str = "job.json",
        setting: dict[str, Any] | None = None,
    ) -> Any:
        """Run a job file of this store (reader -> ``target``) with the engine and a state
        store in the adapter's folder; returns the report."""
        from tidesync.engine.runner import load_job, run_job
        from tidesync.spec.params import RunTime
        from tidesync.state.sqlite import SqliteState

        path = adapter.base_dir / job
        content = {
            "reader": {"name": adapter.kind, "parameter": reader},
            "writer": {"name": adapter.kind, "parameter": adapter.writer_params(target)},
        }
        doc = {"job": {"setting": setting or {}, "content": [content]}}
        path.write_text(json.dumps(doc))
        state = SqliteState(adapter.base_dir / "state.db")
        planned = load_job(path, {}, RunTime.of(cyctime), state=state, root=adapter.base_dir)
        return run_job(planned)

    def _ids(self, adapter: Adapter, table: str = "dst") -> list[int]:
        return sorted(r["id"] for r in adapter.read_table(table).to_pylist())

    def _dst(self, adapter: Adapter, name: str = "dst", columns: Sequence[str] = ()) -> None:
        fields = [pa.field("id", pa.int64(), nullable=False), ("optime", pa.timestamp("us"))]
        fields.append(("v", pa.string()))
        schema = pa.schema(
            [
                f
                for f in fields
                if not columns or (f[0] if isinstance(f, tuple) else f.name) in columns
            ]
        )
        adapter.create_table(name, schema.empty_table(), primary_key=["id"])

    def test_incremental_reads_only_rows_after_the_last_committed_run(
        self, adapter: Adapter
    ) -> None:
        self._oplog(adapter)
        self._dst(adapter)
        params = adapter.reader_params("src", incremental={"column": "optime"})
        first = self._run(adapter, params)
        assert (first.status, first.records_read, self._ids(adapter)) == ("succeeded", 2, [1, 2])
        self._oplog(adapter, [(4, "2016-11-14 12:00"), (5, "2016-11-16 12:00")])
        second = self._run(adapter, params, cyctime="20161117000000")
        assert (second.status, second.records_read) == ("succeeded", 3), second.error
        # the next instance: nothing new (a rerun of the same instance reads its window again)
        third = self._run(adapter, params, cyctime="20161118000000")
        assert (third.status, third.records_read) == ("succeeded", 0)
        assert self._ids(adapter) == [1, 2, 3, 4, 5]

    def test_incremental_cursor_column_need_not_be_read(self, adapter: Adapter) -> None:
        self._oplog(adapter)
        self._dst(adapter, columns=("id", "v"))
        params = adapter.reader_params("src", column=["id", "v"], incremental={"column": "optime"})
        assert make_reader(adapter, params).schema().names == ["id", "v"]
        first = self._run(adapter, params)
        self._oplog(adapter, [(4, "2016-11-14 12:00")])
        second = self._run(adapter, params, cyctime="20161117000000")
        assert (first.status, first.records_read) == ("succeeded", 2), first.error
        assert (second.status, second.records_read) == ("succeeded", 2), second.error
        assert adapter.read_table("dst").column_names == ["id", "v"]
        assert self._ids(adapter) == [1, 2, 3, 4]

    def test_incremental_failed_run_reads_its_window_again(self, adapter: Adapter) -> None:
        self._oplog(adapter)
        adapter.create_table("dst", self._dst_row(2), primary_key=["id"])  # id 2: duplicate
        params = adapter.reader_params("src", incremental={"column": "optime"})
        failed = self._run(adapter, params)
        assert failed.status == "failed"
        self._dst(adapter)
        again = self._run(adapter, params)
        assert (again.status, again.records_read, self._ids(adapter)) == ("succeeded", 2, [1, 2])

    def _dst_row(self, i: int) -> pa.Table:
        return pa.table(
            {
                "id": pa.array([i], pa.int64()),
                "optime": pa.array([dt.datetime(2000, 1, 1)], pa.timestamp("us")),
                "v": ["there"],
            },
            schema=pa.schema(
                [
                    pa.field("id", pa.int64(), nullable=False),
                    ("optime", pa.timestamp("us")),
                    ("v", pa.string()),
                ]
            ),
        )

    def test_two_jobs_reading_one_table_each_get_every_row(self, adapter: Adapter) -> None:
        self._oplog(adapter)
        self._dst(adapter, "dst_a")
        self._dst(adapter, "dst_b")
        params = adapter.reader_params("src", incremental={"column": "optime"})
        a = self._run(adapter, params, "dst_a", job="a.json")
        b = self._run(adapter, params, "dst_b", job="b.json")
        assert (a.records_read, b.records_read) == (2, 2), (a.error, b.error)
        assert self._ids(adapter, "dst_a") == self._ids(adapter, "dst_b") == [1, 2]

    def test_incremental_key_range_splits_resume_after_the_largest_value(
        self, adapter: Adapter
    ) -> None:
        self._oplog(adapter, [(10, "2016-11-13 12:00"), (20, "2016-11-14 08:00")])
        self._dst(adapter)
        params = adapter.reader_params("src", splitPk="id", incremental={"column": "optime"})
        fast = {"speed": {"channel": 3}}
        first = self._run(adapter, params, setting=fast)
        assert (first.records_read, len(first.splits) > 1) == (4, True), first.error
        self._oplog(
            adapter, [(10, "2016-11-13 12:00"), (20, "2016-11-14 08:00"), (30, "2016-11-14 11:00")]
        )
        second = self._run(adapter, params, setting=fast, cyctime="20161117000000")
        assert (second.status, second.records_read) == ("succeeded", 2), second.error
        assert self._ids(adapter) == [1, 2, 3, 10, 20, 30]

    def test_incremental_key_range_splits_share_the_planned_upper_bound(
        self, adapter: Adapter
    ) -> None:
        # a number cursor has no window end; key ranges read at different moments. A row of the
        # first range changed after it was read, below what a later range read, was skipped for
        # good: the next run starts after the largest value any split saw
        def src(versions: list[int]) -> None:
            data = pa.table(
                {
                    "id": pa.array(range(1, 9), pa.int64()),
                    "ver": pa.array(versions, pa.int64()),
                }
            )
            adapter.create_table("src", data, primary_key=["id"])

        src(list(range(1, 9)))
        params = adapter.reader_params("src", splitPk="id", incremental={"column": "ver"})
        reader = make_reader(adapter, params)
        splits = reader.splits(2)
        assert len(splits) == 2
        src([1, 2, 3, 4, 5, 6, 7, 9])  # id 8 changed after planning: version 9
        rows, top = [], None
        for split in splits:
            for item in reader.read(split):
                if isinstance(item, Chunk):
                    top = max(top or 0, item.position["value"]) if item.position else top
                    item = item.batch
                if item is not None:
                    rows += item.to_pylist()
        close = getattr(reader, "close", None)
        if close is not None:
            close()
        assert sorted(r["id"] for r in rows) == [1, 2, 3, 4, 5, 6, 7]  # 8 waits for the next run
        assert top == 7

    def test_incremental_on_a_query(self, adapter: Adapter) -> None:
        self._oplog(adapter)
        self._dst(adapter)
        params = adapter.reader_params(
            "src",
            querySql=[f"SELECT id, optime, v FROM {adapter.ident('src')}"],
            incremental={"column": "optime"},
        )
        first = self._run(adapter, params)
        self._oplog(adapter, [(4, "2016-11-15 12:00")])
        second = self._run(adapter, params, cyctime="20161117000000")
        assert (first.records_read, second.records_read) == (2, 2), (first.error, second.error)
        assert self._ids(adapter) == [1, 2, 3, 4]

    def test_an_unknown_incremental_column_is_named_with_a_suggestion(
        self, adapter: Adapter
    ) -> None:
        self._oplog(adapter)
        reader = make_reader(adapter, adapter.reader_params("src", incremental={"column": "optme"}))
        with pytest.raises(
            ConfigError,
            match=r"parameter\.incremental\.column: column 'optme' not in table src; "
            r"did you mean 'optime'\?",
        ):
            reader.splits(1)
