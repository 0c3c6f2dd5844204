"""The duckdb reader and writer: the conformance suite, then what is DuckDB's own."""

from __future__ import annotations

import datetime as dt
import decimal
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa
import pytest

from tests.connectors.conformance import (
    NEW,
    OLD,
    Adapter,
    SqlSuite,
    _batches,
    copy,
    make_reader,
    make_writer,
    read_all,
    rows,
    write,
)
from tidesync.connectors import duckdb as duckdb_connector
from tidesync.connectors.base import Context, Split, load
from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, RetriableError


def _decl(t: pa.DataType) -> str:
    for test, decl in (
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_int32, "INTEGER"),
        (pa.types.is_integer, "BIGINT"),
        (pa.types.is_floating, "DOUBLE"),
        (pa.types.is_timestamp, "TIMESTAMP"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_binary, "BLOB"),
    ):
        if test(t):
            return decl
    return "VARCHAR"


class DuckdbAdapter(Adapter):
    kind = "duckdb"

    def __init__(self, base_dir: Path):
        super().__init__(base_dir)
        self.path = base_dir / "db.duckdb"

    def _con(self) -> duckdb.DuckDBPyConnection:
        return duckdb.connect(str(self.path))  # the writer's settings, so both may be open at once

    def create_table(
        self, name: str, data: pa.Table, primary_key: Any = (), defaults: Any = None
    ) -> None:
        q = self.ident
        cols = [
            f"{q(f.name)} {_decl(f.type)}{'' if f.nullable else ' NOT NULL'}"
            + (f" DEFAULT {defaults[f.name]}" if f.name in (defaults or {}) else "")
            for f in data.schema
        ]
        if primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(q(k) for k in primary_key)})")
        con = self._con()
        try:
            con.execute(f"DROP TABLE IF EXISTS {q(name)}")
            con.execute(f"CREATE TABLE {q(name)} ({', '.join(cols)})")
            con.register("rows_in", data)
            con.execute(f"INSERT INTO {q(name)} SELECT * FROM rows_in")
        finally:
            con.close()

    def read_table(self, name: str) -> pa.Table:
        con = self._con()
        try:
            return con.sql(f"SELECT * FROM {self.ident(name)}").to_arrow_table()
        finally:
            con.close()

    def execute(self, *statements: str) -> None:
        con = self._con()
        try:
            for s in statements:
                con.execute(s)
        finally:
            con.close()

    def reader_params(self, table: str | list[str], **extra: Any) -> dict[str, Any]:
        tables = table if isinstance(table, list) else [table]
        return {"connection": [{"jdbcUrl": ["jdbc:duckdb:db.duckdb"], "table": tables}], **extra}

    def writer_params(self, table: str, **extra: Any) -> dict[str, Any]:
        return {"database": "db.duckdb", "table": table, **extra}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[DuckdbAdapter]:
    # One connection held open for the test, as a running store would be: the file is opened
    # once, not by every connection (readers then share it read-write, see duckdb._connect).
    adapter = DuckdbAdapter(tmp_path)
    held = duckdb.connect(str(adapter.path))
    yield adapter
    held.close()


@pytest.fixture
def bare(tmp_path: Path) -> DuckdbAdapter:
    """No connection held: readers open the file read-only and must let it go."""
    return DuckdbAdapter(tmp_path)


class TestDuckdbConformance(SqlSuite):
    @pytest.fixture
    def adapter(self, db: DuckdbAdapter) -> DuckdbAdapter:
        return db


def _write_isolated(
    db: DuckdbAdapter, params: dict[str, Any], batch: pa.RecordBatch
) -> list[tuple[int, DirtyRecordError]]:
    bad: list[tuple[int, DirtyRecordError]] = []
    w = make_writer(db, params)
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e)))
    w.commit([sink.close()])
    return bad


# -- naming the database -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("side", "params"),
    [
        ("reader", {"database": "db.duckdb", "table": "t"}),
        ("reader", {"jdbcUrl": "jdbc:duckdb:db.duckdb", "table": ["t"]}),
        ("reader", {"connection": [{"jdbcUrl": ["jdbc:duckdb:db.duckdb"], "table": ["t"]}]}),
        ("writer", {"connection": [{"jdbcUrl": "jdbc:duckdb:db.duckdb", "table": ["t"]}]}),
        ("writer", {"database": "jdbc:duckdb:db.duckdb", "table": "t"}),
    ],
    ids=[
        "reader-database",
        "reader-jdbcUrl",
        "reader-connection",
        "writer-datax",
        "writer-database",
    ],
)
def test_the_database_is_found_in_every_form(
    db: DuckdbAdapter, side: str, params: dict[str, Any]
) -> None:
    db.create_table("t", OLD)
    if side == "reader":
        assert rows(read_all(load("duckdbreader", "reader")(params, db.context("reader")))) == rows(
            OLD
        )
    else:
        w = load("duckdbwriter", "writer")({**params, "writeMode": "insert"}, db.context("writer"))
        w.prepare(NEW.schema)
        sink = w.open(Split(0, "all"))
        sink.write(NEW.slice(1).to_batches()[0])
        w.commit([sink.close()])
        assert db.read_table("t").num_rows == 5


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (
            {"database": "jdbc:sqlite:db.duckdb", "table": "t"},
            "reader.parameter.database: 'jdbc:sqlite:db.duckdb' "
            "is not a duckdb database; write jdbc:duckdb:PATH",
        ),
        (
            {"jdbcUrl": "jdbc:duckdb:", "table": "t"},
            "reader.parameter.jdbcUrl: an in-memory duckdb database",
        ),
        (
            {"database": "db.duckdb", "table": "t", "column": 3},
            "reader.parameter.column: must be a non-empty string",
        ),
    ],
)
def test_a_mistake_is_named_by_its_key(
    db: DuckdbAdapter, params: dict[str, Any], message: str
) -> None:
    db.create_table("t", OLD)
    with pytest.raises(ConfigError) as e:
        load("duckdb", "reader")(params, db.context("reader"))
    assert f"job.content[0].{message}" in str(e.value)


# -- reading -----------------------------------------------------------------------------------


def test_the_reader_gives_duckdbs_own_arrow_types(db: DuckdbAdapter) -> None:
    db.execute(
        "CREATE TABLE t (d DECIMAL(10, 2), tz TIMESTAMPTZ, l INTEGER[], s STRUCT(a VARCHAR), u UBIGINT)",
        "INSERT INTO t VALUES (1.25, '2024-01-02 03:04:05+00', [1, 2], {'a': 'x'}, 18446744073709551615)",
    )
    got = read_all(make_reader(db, db.reader_params("t")))
    assert got.schema.types == [
        pa.decimal128(10, 2),
        pa.timestamp("us", "UTC"),
        pa.list_(pa.int32()),
        pa.struct([("a", pa.string())]),
        pa.uint64(),
    ]
    assert got.to_pylist() == [
        {
            "d": decimal.Decimal("1.25"),
            "tz": dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
            "l": [1, 2],
            "s": {"a": "x"},
            "u": 2**64 - 1,
        }
    ]


def test_a_huge_integer_arrow_cannot_hold_is_a_dirty_row_not_another_number(
    db: DuckdbAdapter,
) -> None:
    # DuckDB hands HUGEINT and UHUGEINT over as decimal128(38, 0) with the raw 128 bits: a
    # 39-digit value was written as an invalid decimal, and UHUGEINT's largest came out as -1
    big = 2**127 - 1
    db.execute(
        "CREATE TABLE t (id INTEGER, h HUGEINT, u UHUGEINT)",
        f"INSERT INTO t VALUES (1, {big}, 5), (2, -{big + 1}, 0), (3, {10**38 - 1}, {10**38 - 1}),"
        f" (4, 0, {2**128 - 1}), (5, 0, {10**38}), (6, NULL, NULL)",
    )
    dirty: list[Any] = []
    reader = make_reader(db, db.reader_params("t"))
    got = [
        r for s in reader.splits(1) for b in _batches(reader.read(s), dirty) for r in b.to_pylist()
    ]
    assert [(r["id"], r["h"], r["u"]) for r in got] == [
        (3, decimal.Decimal(10**38 - 1), decimal.Decimal(10**38 - 1)),
        (6, None, None),
    ]
    assert [(d.row["id"], d.reason) for d in dirty] == [
        (
            1,
            f"column 'h': HUGEINT {big} has more than the 38 digits Arrow's decimal holds; "
            "cast it to VARCHAR or DOUBLE in column or querySql",
        ),
        (
            2,
            f"column 'h': HUGEINT {-big - 1} has more than the 38 digits Arrow's decimal holds; "
            "cast it to VARCHAR or DOUBLE in column or querySql",
        ),
        (
            4,
            f"column 'u': UHUGEINT {2**128 - 1} has more than the 38 digits Arrow's decimal "
            "holds; cast it to VARCHAR or DOUBLE in column or querySql",
        ),
        (
            5,
            f"column 'u': UHUGEINT {10**38} has more than the 38 digits Arrow's decimal holds; "
            "cast it to VARCHAR or DOUBLE in column or querySql",
        ),
    ]
    assert [d.position for d in dirty] == ["row 0", "row 1", "row 3", "row 4"]


def test_infinite_dates_and_timestamps_are_dirty_rows_not_the_types_last_value(
    db: DuckdbAdapter,
) -> None:
    # DuckDB hands infinity to Arrow as the type's largest value: a Parquet file got the year
    # 294247 (or 5881580 for a date) as if it were a real time
    db.execute(
        "CREATE TABLE t (id INTEGER, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, ns TIMESTAMP_NS, "
        "s TIMESTAMP_S)",
        "INSERT INTO t VALUES (1, '2024-01-02', '2024-01-02 03:04:05', '2024-01-02 03:04:05+00', "
        "'2024-01-02', '2024-01-02'), (2, 'infinity', NULL, NULL, NULL, NULL), "
        "(3, NULL, '-infinity', NULL, NULL, NULL), (4, NULL, NULL, 'infinity', NULL, NULL), "
        "(5, NULL, NULL, NULL, '-infinity', NULL), (6, NULL, NULL, NULL, NULL, 'infinity'), "
        "(7, '-infinity', 'infinity', NULL, NULL, NULL), (8, '5881580-07-10', "
        "'294247-01-10 04:00:54.775806', NULL, NULL, NULL)",
    )
    dirty: list[Any] = []
    reader = make_reader(db, db.reader_params("t"))
    got = [
        i
        for s in reader.splits(1)
        for b in _batches(reader.read(s), dirty)
        for i in b.column("id").to_pylist()
    ]
    assert got == [1, 8]  # DuckDB's last real date and timestamp are no infinity

    def why(col: str, word: str) -> str:
        return (
            f"column {col!r}: DuckDB's {word} has no date/time form outside DuckDB (Arrow and "
            "Parquet would take it for the type's last or first value); cast it to VARCHAR in "
            "column or querySql, or leave such rows out with where"
        )

    assert [(d.row["id"], d.reason, d.position) for d in dirty] == [
        (2, why("d", "infinity"), "row 1"),
        (3, why("ts", "-infinity"), "row 2"),
        (4, why("tz", "infinity"), "row 3"),
        (5, why("ns", "-infinity"), "row 4"),
        (6, why("s", "infinity"), "row 5"),
        (7, why("d", "-infinity"), "row 6"),
    ]
    assert (dirty[-1].row["d"], dirty[-1].row["ts"]) == ("-infinity", "infinity")


def test_a_time_of_24_00_is_a_dirty_row_not_a_time_past_the_day(db: DuckdbAdapter) -> None:
    # DuckDB allows TIME '24:00:00'; Arrow got 86400000000 us, which a Parquet file kept as a
    # time no reader takes
    db.execute(
        "CREATE TABLE t (id INTEGER, t TIME)",
        "INSERT INTO t VALUES (1, '23:59:59.999999'), (2, '24:00:00'), (3, NULL)",
    )
    dirty: list[Any] = []
    reader = make_reader(db, db.reader_params("t"))
    got = [
        r for s in reader.splits(1) for b in _batches(reader.read(s), dirty) for r in b.to_pylist()
    ]
    assert got == [{"id": 1, "t": dt.time(23, 59, 59, 999999)}, {"id": 3, "t": None}]
    assert [(d.row, d.reason, d.position) for d in dirty] == [
        (
            {"id": 2, "t": "24:00:00"},
            "column 't': 24:00:00 has no form outside DuckDB (Arrow and Parquet times end at "
            "23:59:59.999999); cast it to VARCHAR in column or querySql, or leave such rows out "
            "with where",
            "row 1",
        )
    ]


def test_a_query_naming_a_column_twice_gives_batches_of_the_announced_schema(
    db: DuckdbAdapter,
) -> None:
    # the schema (from SELECT * FROM (query) LIMIT 0) said id, v, id_1 and the batches id, v,
    # id: the lake writer failed for a missing column, the Parquet writer wrote a file with
    # two columns named id
    db.create_table("t", OLD)
    reader = make_reader(db, db.reader_params("t", querySql="SELECT id, v, id FROM t"))
    got = read_all(reader)  # checks every batch against reader.schema()
    assert got.schema.names == ["id", "v", "id_1"]
    assert got.column("id").to_pylist() == got.column("id_1").to_pylist()


def test_types_with_no_arrow_equivalent_are_read_as_duckdbs_text(db: DuckdbAdapter) -> None:
    # DuckDB hands TIMETZ to Arrow as a time without its offset (12:00:00+05 and 12:00:00-03
    # both came out as 12:00:00), BIT as its internal bytes, BIGNUM as an opaque extension
    db.execute(
        "CREATE TABLE t (id INTEGER, tt TIMETZ, b BIT, n BIGNUM)",
        "INSERT INTO t VALUES (1, '12:00:00+05', '101', 123456789012345678901234567890123456789012),"
        " (2, '12:00:00-03', '0', -1), (3, NULL, NULL, NULL)",
    )
    got = read_all(make_reader(db, db.reader_params("t")))
    assert got.schema.types == [pa.int32(), pa.string(), pa.string(), pa.string()]
    assert got.to_pylist() == [
        {
            "id": 1,
            "tt": "12:00:00+05",
            "b": "101",
            "n": "123456789012345678901234567890123456789012",
        },
        {"id": 2, "tt": "12:00:00-03", "b": "0", "n": "-1"},
        {"id": 3, "tt": None, "b": None, "n": None},
    ]


def test_fetch_size_sets_the_rows_per_batch(db: DuckdbAdapter) -> None:
    db.create_table("t", pa.table({"id": pa.array(range(5), pa.int64())}))
    reader = make_reader(db, db.reader_params("t", fetchSize=2))
    assert [b.num_rows for b in reader.read(reader.splits(1)[0])] == [2, 2, 1]


def test_session_statements_run_on_every_reader_connection(db: DuckdbAdapter) -> None:
    db.create_table("t", OLD)
    reader = make_reader(
        db,
        db.reader_params(
            "t", session=["SET VARIABLE tag = 'x'"], column=["id", "getvariable('tag')"]
        ),
    )
    assert {r["getvariable('tag')"] for r in read_all(reader).to_pylist()} == {"x"}


def test_a_decimal_split_pk_is_refused(db: DuckdbAdapter) -> None:
    db.execute("CREATE TABLE t (id DECIMAL(10, 2))", "INSERT INTO t VALUES (1.5), (2.5)")
    with pytest.raises(ConfigError, match=r"splitPk: column 'id' of table t holds Decimal values"):
        make_reader(db, db.reader_params("t", splitPk="id")).splits(2)


def test_a_table_is_copied_within_one_database_file(bare: DuckdbAdapter) -> None:
    db = bare
    db.create_table("src", NEW)
    dirty = copy(
        make_reader(db, db.reader_params("src", splitPk="id")),
        make_writer(db, db.writer_params("dst")),
        n=3,
    )
    assert dirty == [] and rows(db.read_table("dst")) == rows(NEW)


# -- writing: checks before the transaction ----------------------------------------------------


def test_a_value_that_does_not_convert_is_dirty_with_duckdbs_message(db: DuckdbAdapter) -> None:
    db.execute("CREATE TABLE dst (id BIGINT, n INTEGER)")
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch({"id": pa.array([1, 2, 3], pa.int64()), "n": ["1", "two", "3"]}),
    )
    assert [(off, e.code) for off, e in bad] == [(1, "ConversionException")]
    assert bad[0][1].reason.startswith("Conversion Error: Could not convert string 'two' to INT32")
    assert [r["id"] for r in rows(db.read_table("dst"))] == [1, 3]


def test_text_with_a_fraction_for_an_integer_column_is_dirty_not_rounded(
    db: DuckdbAdapter,
) -> None:
    # DuckDB's cast made the text '1.5' the integer 2, and the run succeeded
    db.execute("CREATE TABLE dst (id BIGINT, n INTEGER)")
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch({"id": pa.array([1, 2, 3], pa.int64()), "n": ["12", "1.5", "-3.0"]}),
    )
    assert [(off, e.reason.split(" (")[0]) for off, e in bad] == [
        (1, "column n: value '1.5' is not an integer, as int32 holds")
    ]
    assert [(r["id"], r["n"]) for r in rows(db.read_table("dst"))] == [(1, 12), (3, -3)]


def test_a_time_finer_than_a_time_column_is_dirty_not_rounded(db: DuckdbAdapter) -> None:
    # 10:00:00.123456789 was stored as 10:00:00.123457
    db.execute("CREATE TABLE dst (id BIGINT, tm TIME)")
    ns = [36000123456789, 36000123456000]
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch({"id": pa.array([1, 2], pa.int64()), "tm": pa.array(ns, pa.time64("ns"))}),
    )
    assert [(off, e.reason.split(":")[0]) for off, e in bad] == [(0, "column tm")]
    assert [r["tm"] for r in rows(db.read_table("dst"))] == [dt.time(10, 0, 0, 123456)]


def test_text_for_a_blob_column_is_its_utf8_bytes(db: DuckdbAdapter) -> None:
    # DuckDB's cast read the text a\x41b as the bytes aAb, refused C:\xampp and any letter
    # beyond ASCII; DataX writes a string's bytes
    db.execute("CREATE TABLE dst (id BIGINT, b BLOB)")
    text = ["a\\x41b", "C:\\xampp", "plain é"]
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch({"id": pa.array([1, 2, 3], pa.int64()), "b": text}),
    )
    assert bad == []
    assert [r["b"] for r in rows(db.read_table("dst"))] == [t.encode() for t in text]


def test_bytes_for_a_varchar_column_are_utf8_text_or_dirty(db: DuckdbAdapter) -> None:
    # DuckDB's cast wrote the bytes of é as the text \xC3\xA9 (and any bytes as escapes)
    db.execute("CREATE TABLE dst (id BIGINT, s VARCHAR)")
    data = [b"abc", "é".encode(), b"\x00\xff"]
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch({"id": pa.array([1, 2, 3], pa.int64()), "s": pa.array(data, pa.binary())}),
    )
    assert [(off, e.reason.split(" (")[0]) for off, e in bad] == [
        (
            2,
            "column s: value b'\\x00\\xff' is bytes that are not UTF-8 text, which a VARCHAR "
            "column holds",
        )
    ]
    assert [r["s"] for r in rows(db.read_table("dst"))] == ["abc", "é"]


def test_a_double_that_duckdb_would_round_is_dirty(db: DuckdbAdapter) -> None:
    # DuckDB's cast made the double 1.5 the integer 2, 2.675 the decimal 2.68 and 1e-7 0.00,
    # and the run succeeded
    db.execute("CREATE TABLE dst (id BIGINT, n INTEGER, d DECIMAL(10,2))")
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch(
            {
                "id": pa.array([1, 2, 3, 4, 5], pa.int64()),
                "n": [2.0, 1.5, None, None, -3.0],
                "d": [None, None, 2.675, 1e-7, 0.1],
            }
        ),
    )
    assert [(off, e.reason.split(" (")[0]) for off, e in bad] == [
        (1, "column n: value 1.5 is not an integer, as int32 holds"),
        (
            2,
            "column d: value 2.675 has more digits after the point than decimal128(10, 2) keeps; "
            "DuckDB would round it",
        ),
        (
            3,
            "column d: value 1e-07 has more digits after the point than decimal128(10, 2) keeps; "
            "DuckDB would round it",
        ),
    ]
    assert [(r["id"], r["n"], r["d"]) for r in rows(db.read_table("dst"))] == [
        (1, 2, None),
        (5, -3, decimal.Decimal("0.10")),
    ]


@pytest.mark.parametrize(
    "n",
    [
        [None, None],  # a batch whose text is all NULL
        [None, "x"],  # a bad row: the engine writes the others one by one
    ],
)
def test_null_text_for_an_integer_column_is_written_as_null(
    db: DuckdbAdapter, n: list[str | None]
) -> None:
    # NULLs alone read as text with a fraction: every such row was dirty, the run succeeded
    db.execute("CREATE TABLE dst (id BIGINT, n INTEGER)")
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch({"id": pa.array([1, 2], pa.int64()), "n": pa.array(n, pa.string())}),
    )
    assert [off for off, _ in bad] == ([1] if "x" in n else [])
    assert [(r["id"], r["n"]) for r in rows(db.read_table("dst"))] == [(1, None)] + (
        [] if "x" in n else [(2, None)]
    )


def test_a_check_constraint_violation_is_dirty(db: DuckdbAdapter) -> None:
    db.execute("CREATE TABLE dst (id BIGINT, n BIGINT CHECK (n > 0))")
    bad = _write_isolated(
        db,
        db.writer_params("dst"),
        pa.record_batch(
            {"id": pa.array([1, 2, 3], pa.int64()), "n": pa.array([5, -1, 7], pa.int64())}
        ),
    )
    assert [off for off, _ in bad] == [1] and "CHECK constraint failed" in bad[0][1].reason
    assert [r["n"] for r in rows(db.read_table("dst"))] == [5, 7]


def test_a_duplicate_across_batches_is_dirty(db: DuckdbAdapter) -> None:
    db.create_table("dst", OLD.schema.empty_table(), primary_key=["id"])
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(OLD.schema)
    sink = w.open(Split(0, "all"))
    sink.write(OLD.to_batches()[0])
    with pytest.raises(
        DirtyRecordError, match=r'Duplicate key "id: 3" violates primary key constraint'
    ):
        sink.write(NEW.to_batches()[0])
    sink.write(NEW.slice(1).to_batches()[0])  # the transaction lives on
    w.commit([sink.close()])
    assert [r["id"] for r in rows(db.read_table("dst"))] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("batch", "bad_rows", "after"),
    [
        ([(1, "b"), (3, "c")], [0], [(1, "a"), (2, "b"), (3, "c")]),
        (
            [(1, "z"), (5, "a")],
            [],
            [(1, "z"), (2, "b"), (5, "a")],
        ),  # row 1 gives up 'a' as 5 takes it
    ],
    ids=["taken-by-another-row", "freed-by-the-replaced-row"],
)
def test_a_replace_checks_the_other_unique_constraints(
    db: DuckdbAdapter,
    batch: list[tuple[int, str]],
    bad_rows: list[int],
    after: list[tuple[int, str]],
) -> None:
    db.execute(
        "CREATE TABLE dst (id BIGINT PRIMARY KEY, code VARCHAR UNIQUE)",
        "INSERT INTO dst VALUES (1, 'a'), (2, 'b')",
    )
    ids, codes = zip(*batch, strict=True)
    bad = _write_isolated(
        db,
        db.writer_params("dst", writeMode="replace"),
        pa.record_batch({"id": pa.array(ids, pa.int64()), "code": list(codes)}),
    )
    assert [off for off, _ in bad] == bad_rows
    assert all("violates unique constraint (code)" in e.reason for _, e in bad)
    assert [(r["id"], r["code"]) for r in rows(db.read_table("dst"))] == after


def test_rows_of_one_key_in_a_batch_leave_the_last(db: DuckdbAdapter) -> None:
    db.create_table("dst", OLD, primary_key=["id"])
    write(
        db,
        db.writer_params("dst", writeMode="replace"),
        pa.table({"id": pa.array([2, 2, 2], pa.int64()), "v": ["x", "y", "z"]}),
    )
    assert [(r["id"], r["v"]) for r in rows(db.read_table("dst"))] == [
        (1, "old1"),
        (2, "z"),
        (3, "old3"),
    ]


def test_an_unforeseen_write_failure_fails_the_job_and_commits_nothing(db: DuckdbAdapter) -> None:
    db.execute(
        "CREATE TABLE parent (id BIGINT PRIMARY KEY)",
        "INSERT INTO parent VALUES (1)",
        "CREATE TABLE dst (id BIGINT, p BIGINT REFERENCES parent (id))",
    )
    w = make_writer(db, db.writer_params("dst"))
    schema = pa.schema([("id", pa.int64()), ("p", pa.int64())])
    w.prepare(schema)
    sink = w.open(Split(0, "all"))
    sink.write(pa.record_batch([pa.array([1]), pa.array([1])], schema=schema))
    # appends are inserted in the background: the failure surfaces at a later write or at commit
    with pytest.raises(FatalError, match="duckdb table dst in .*foreign key"):
        sink.write(pa.record_batch([pa.array([2]), pa.array([9])], schema=schema))
        sink.write(pa.record_batch([pa.array([3]), pa.array([1])], schema=schema))
        w.commit([sink.close()])
    with pytest.raises(FatalError, match="nothing committed|commit\\(\\) without prepare"):
        w.commit([sink.close()])
    w.abort([])
    assert db.read_table("dst").num_rows == 0


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
def test_casts_between_instants_and_wall_times_use_the_jobs_zone(
    db: DuckdbAdapter, zone: str
) -> None:
    # the writer's connection kept DuckDB's default zone (the machine's), so a job with
    # timezone Asia/Shanghai stored its instants as another zone's wall times
    db.execute("CREATE TABLE dst (id INTEGER, ts TIMESTAMP, tz TIMESTAMPTZ, d DATE)")
    instant = dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC)
    batch = pa.record_batch(
        {
            "id": pa.array([1], pa.int32()),
            "ts": pa.array([instant], pa.timestamp("us", "UTC")),
            "tz": pa.array([dt.datetime(2024, 1, 1, 0, 0)], pa.timestamp("us")),
            "d": pa.array(
                [dt.datetime(2023, 12, 31, 20, 0, tzinfo=dt.UTC)], pa.timestamp("us", "UTC")
            ),
        }
    )
    ctx = Context(base_dir=db.base_dir, where="job.content[0].writer.parameter", timezone=zone)
    w = load("duckdb", "writer")(db.writer_params("dst"), ctx)
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    sink.write(batch)
    w.commit([sink.close()])
    con = duckdb.connect(str(db.path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        got = con.execute("SELECT ts::VARCHAR, tz::VARCHAR, d::VARCHAR FROM dst").fetchall()
    finally:
        con.close()
    wall = instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
    local_midnight = dt.datetime(2024, 1, 1, tzinfo=ZoneInfo(zone)).astimezone(dt.UTC)
    day = dt.datetime(2023, 12, 31, 20, 0, tzinfo=dt.UTC).astimezone(ZoneInfo(zone)).date()
    assert got == [(str(wall), f"{local_midnight:%Y-%m-%d %H:%M:%S}+00", str(day))]


def _isolated_in(
    db: DuckdbAdapter, batch: pa.RecordBatch, zone: str = "UTC"
) -> tuple[list[tuple[int, str]], list[tuple[Any, ...]]]:
    """``batch`` written into dst by the engine's bisection in the job zone ``zone``: the dirty
    rows' offsets and reasons, and dst's rows as text of UTC."""
    ctx = Context(base_dir=db.base_dir, where="job.content[0].writer.parameter", timezone=zone)
    w = load("duckdb", "writer")(db.writer_params("dst"), ctx)
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    con = duckdb.connect(str(db.path))
    try:
        con.execute("SET TimeZone = 'UTC'")
        cols = ", ".join(f"{n}::VARCHAR" for n in batch.schema.names)
        got = con.execute(f"SELECT {cols} FROM dst ORDER BY 1").fetchall()
    finally:
        con.close()
    return bad, got


@pytest.mark.parametrize("source", ["timestamp", "text"])
def test_a_naive_time_in_a_dst_gap_or_overlap_is_dirty_for_a_timestamptz_column(
    db: DuckdbAdapter, source: str
) -> None:
    # DuckDB read the gap's 02:30 as 03:30 CEST and the overlap's as its later instant, silently
    db.execute("CREATE TABLE dst (id INTEGER, tz TIMESTAMPTZ)")
    wall = [dt.datetime(2024, 3, 31, 1, 59), dt.datetime(2024, 3, 31, 2, 30)]
    wall += [dt.datetime(2024, 10, 27, 2, 30), None]
    values = (
        pa.array(wall, pa.timestamp("us"))
        if source == "timestamp"
        else pa.array([None if w is None else f"{w:%Y-%m-%d %H:%M}" for w in wall])
    )
    batch = pa.record_batch({"id": pa.array([1, 2, 3, 4], pa.int32()), "tz": values})
    bad, got = _isolated_in(db, batch, "Europe/Berlin")
    tail = (
        "so it names no one instant for TIMESTAMPTZ; write it with its offset (a timestamp "
        "with a time zone) or set the job's timezone to one without daylight saving"
    )
    gap, overlap = (
        ("2024-03-31 02:30:00", "2024-10-27 02:30:00")
        if source == "timestamp"
        else ("'2024-03-31 02:30'", "'2024-10-27 02:30'")
    )
    assert bad == [
        (
            1,
            f"column tz: value {gap} does not exist in time zone Europe/Berlin (the clock skips "
            f"it at a daylight-saving change), {tail}",
        ),
        (
            2,
            f"column tz: value {overlap} is ambiguous in time zone Europe/Berlin (the clock "
            f"shows it twice at a daylight-saving change), {tail}",
        ),
    ]
    assert got == [("1", "2024-03-31 00:59:00+00"), ("4", None)]


def test_a_double_a_float_column_would_not_give_back_is_dirty(db: DuckdbAdapter) -> None:
    # DuckDB's cast stored 0.123456789 in a FLOAT as 0.12345679 silently (1e39 it refuses)
    db.execute("CREATE TABLE dst (id INTEGER, f FLOAT)")
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4], pa.int32()),
            "f": pa.array([0.1, 0.123456789, 1e39, None], pa.float64()),
        }
    )
    bad, got = _isolated_in(db, batch)
    assert [(off, why.split(" (duckdb table dst in ")[0]) for off, why in bad[:1]] == [
        (
            1,
            "column f: value 0.123456789 has more digits than float holds; it would be stored "
            "as 0.12345679",
        ),
    ]
    assert bad[1][0] == 2 and "out of range for the destination type FLOAT" in bad[1][1]
    assert len(bad) == 2
    assert got == [("1", "0.1"), ("4", None)]


def test_an_integer_a_float_column_would_round_is_dirty(db: DuckdbAdapter) -> None:
    # DuckDB's cast stored 9007199254740993 in a DOUBLE as 9007199254740992, 16777217 in a
    # FLOAT as 16777216
    db.execute("CREATE TABLE dst (id INTEGER, d DOUBLE, f FLOAT)")
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "d": pa.array([2**53, 2**53 + 1, None], pa.int64()),
            "f": pa.array([2**24, None, 2**24 + 1], pa.int64()),
        }
    )
    bad, got = _isolated_in(db, batch)
    assert [(off, why.split(" (duckdb table dst in ")[0]) for off, why in bad] == [
        (
            1,
            "column d: value 9007199254740993 has more digits than double holds; it would be "
            "stored as 9007199254740992",
        ),
        (
            2,
            "column f: value 16777217 has more digits than float holds; it would be stored as "
            "16777216",
        ),
    ]
    assert got == [("1", "9007199254740992.0", "16777216.0")]


def test_text_with_an_offset_for_a_timestamp_column_is_the_jobs_wall_time_of_its_instant(
    db: DuckdbAdapter,
) -> None:
    # DuckDB's cast dropped the offset: '14:00:00+02:00' was stored as 14:00
    db.execute("CREATE TABLE dst (id INTEGER, ts TIMESTAMP)")
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4], pa.int32()),
            "ts": pa.array(
                ["2024-06-01 14:00:00+02:00", "2024-06-01T14:00:00.5Z", "2024-06-01 14:00:00", None]
            ),
        }
    )
    bad, got = _isolated_in(db, batch, "Asia/Shanghai")
    assert bad == []
    assert got == [
        ("1", "2024-06-01 20:00:00"),
        ("2", "2024-06-01 22:00:00.5"),
        ("3", "2024-06-01 14:00:00"),
        ("4", None),
    ]


def test_digits_a_decimal_or_timestamp_column_does_not_keep_are_dirty_not_rounded(
    db: DuckdbAdapter,
) -> None:
    # DuckDB's casts rounded 1.239 into DECIMAL(5,2) to 1.24, and 00:00:00.5 into TIMESTAMP_S
    # to 00:00:01
    db.execute("CREATE TABLE dst (id INTEGER, d DECIMAL(5,2), t DECIMAL(5,2), s TIMESTAMP_S)")
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4, 5], pa.int32()),
            "d": pa.array(
                [decimal.Decimal("1.230"), decimal.Decimal("1.239"), None, None, None],
                pa.decimal128(6, 3),
            ),
            "t": pa.array(["1.2", None, "1.2390", None, "3.10000"]),
            "s": pa.array(
                [dt.datetime(2024, 1, 1), None, None, dt.datetime(2024, 1, 1, 0, 0, 0, 500000)]
                + [None],
                pa.timestamp("us"),
            ),
        }
    )
    bad, got = _isolated_in(db, batch)
    assert [(off, why.split(" (duckdb table dst in ")[0]) for off, why in bad] == [
        (
            1,
            "column d: value 1.239 has more digits after the point than decimal128(5, 2) keeps; "
            "DuckDB would round it",
        ),
        (
            2,
            "column t: value '1.2390' has more digits after the point than decimal128(5, 2) "
            "keeps; DuckDB would round it",
        ),
        (
            3,
            "column s: value 2024-01-01 00:00:00.500000 has more digits after the point than "
            "timestamp[s] keeps; DuckDB would round it",
        ),
    ]
    assert got == [
        ("1", "1.23", "1.20", "2024-01-01 00:00:00"),
        ("5", None, "3.10", None),
    ]


def test_appends_queue_in_the_background_in_order_within_the_memory_bound(
    db: DuckdbAdapter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        duckdb_connector.writer, "QUEUE_BYTES", 1
    )  # every put waits for the last INSERT
    db.execute("CREATE TABLE dst (id BIGINT, s VARCHAR)")
    w = make_writer(db, {**db.writer_params("dst"), "batchSize": 3})
    schema = pa.schema([("id", pa.int64()), ("s", pa.string())])
    w.prepare(schema)
    sinks = [w.open(Split(i, f"s{i}")) for i in range(2)]
    for k in range(20):
        ids = list(range(5 * k, 5 * k + 5))
        sinks[k % 2].write(pa.record_batch([ids, [str(i) for i in ids]], schema=schema))
    w.commit([s.close() for s in sinks])
    got = db.read_table("dst")
    assert got.column("id").to_pylist() == list(range(100))
    assert got.column("s").to_pylist() == [str(i) for i in range(100)]


def test_a_task_that_failed_after_writing_makes_commit_refuse(db: DuckdbAdapter) -> None:
    db.create_table("dst", OLD.schema.empty_table())
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(OLD.schema)
    sink = w.open(Split(0, "broken"))
    sink.write(OLD.to_batches()[0])
    with pytest.raises(FatalError, match="task 'broken' failed after writing 3 rows"):
        w.commit([sink.discard()])
    assert db.read_table("dst").num_rows == 0


# -- writing: tables ---------------------------------------------------------------------------


def test_a_created_table_keeps_the_arrow_types(db: DuckdbAdapter) -> None:
    data = pa.table(
        {
            "u": pa.array([2**64 - 1], pa.uint64()),
            "d": pa.array([decimal.Decimal("1.5")], pa.decimal128(12, 3)),
            "tz": pa.array([dt.datetime(2024, 1, 1, tzinfo=dt.UTC)], pa.timestamp("us", "UTC")),
            "l": pa.array([[1, 2]], pa.list_(pa.int64())),
            "e": pa.array(["x"]).dictionary_encode(),
        }
    )
    write(db, db.writer_params("new"), data)
    con = duckdb.connect(str(db.path))
    try:
        types = con.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name = 'new'"
        ).fetchall()
    finally:
        con.close()
    assert [t[0] for t in types] == [
        "UBIGINT",
        "DECIMAL(12,3)",
        "TIMESTAMP WITH TIME ZONE",
        "BIGINT[]",
        "VARCHAR",
    ]


def test_abort_removes_a_database_file_it_created(bare: DuckdbAdapter) -> None:
    db = bare
    w, results = write(db, db.writer_params("dst"), OLD, commit=False)
    w.abort(results)
    assert not db.path.exists()


def test_an_unwritten_required_column_is_named(db: DuckdbAdapter) -> None:
    db.execute("CREATE TABLE dst (id BIGINT, v VARCHAR NOT NULL, w VARCHAR NOT NULL DEFAULT 'x')")
    w = make_writer(db, db.writer_params("dst", column=["id"]))
    with pytest.raises(
        ConfigError, match=r"column: table dst needs column\(s\) v \(NOT NULL without a default\)"
    ):
        w.prepare(pa.schema([("id", pa.int64())]))


def test_a_failing_post_sql_is_named_and_commits_nothing(db: DuckdbAdapter) -> None:
    db.create_table("dst", OLD)
    w, results = write(
        db,
        db.writer_params("dst", writeMode="truncate", postSql=["SELECT * FROM nowhere"]),
        NEW,
        commit=False,
    )
    with pytest.raises(FatalError, match=r"writer\.parameter\.postSql\[0\]: Catalog Error"):
        w.commit(results)
    assert rows(db.read_table("dst")) == rows(OLD)


def test_a_schema_qualified_table_is_written(db: DuckdbAdapter) -> None:
    db.execute("CREATE SCHEMA sales", 'CREATE TABLE sales."Order" (id BIGINT, v VARCHAR)')
    write(db, db.writer_params('sales."Order"'), OLD)
    assert read_all(make_reader(db, db.reader_params("sales.Order"))).num_rows == 3


def test_abort_with_appends_still_queued_leaves_the_table_untouched(db: DuckdbAdapter) -> None:
    db.execute("CREATE TABLE dst (id BIGINT)", "INSERT INTO dst VALUES (-1)")
    w = make_writer(db, db.writer_params("dst"))
    schema = pa.schema([("id", pa.int64())])
    w.prepare(schema)
    sink = w.open(Split(0, "all"))
    for k in range(50):
        sink.write(pa.record_batch([pa.array(range(k * 1000, (k + 1) * 1000))], schema=schema))
    w.abort([sink.discard()])
    assert not [t for t in threading.enumerate() if t.name == "duckdb-insert"]
    assert db.read_table("dst").column("id").to_pylist() == [-1]


# -- another process holding the file ---------------------------------------------------------

_HOLD = "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); sys.stdin.read()"


def _holder(path: Path) -> subprocess.Popen[str]:
    """A process that has the database open for writing until its stdin closes."""
    p = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    return p


def _release(p: subprocess.Popen[str]) -> None:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.close()
    assert p.wait(timeout=60) == 0
    p.stdout.close()


def test_a_run_waits_for_another_process_writing_the_file(
    bare: DuckdbAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tidesync")
    bare.create_table("dst", OLD)
    holder = _holder(bare.path)
    done = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            write(bare, bare.writer_params("dst", writeMode="truncate"), NEW)
        except BaseException as e:  # noqa: BLE001 - handed to the test
            errors.append(e)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    try:
        for _ in range(3000):  # until it says it waits (or ends): only a guard against a hang
            if "another run is writing table dst" in caplog.text or done.is_set():
                break
            time.sleep(0.02)
        assert not done.is_set(), errors
    finally:
        _release(holder)
    assert done.wait(120) and not errors, errors
    assert rows(bare.read_table("dst")) == rows(NEW)


def test_a_run_gives_up_on_a_file_another_process_holds_past_lock_timeout(
    bare: DuckdbAdapter,
) -> None:
    bare.create_table("dst", OLD)
    holder = _holder(bare.path)
    try:
        w = make_writer(bare, bare.writer_params("dst", writeMode="truncate", lockTimeout=1))
        with pytest.raises(RetriableError) as e:
            w.prepare(NEW.schema)
    finally:
        _release(holder)
    msg = str(e.value)
    assert "Could not set lock on file" in msg, msg
    assert "another run is writing table dst; gave up after waiting" in msg
    assert "(job.content[0].writer.parameter.lockTimeout is 1 s); nothing was written" in msg
    assert rows(bare.read_table("dst")) == rows(OLD)


def test_a_group_with_a_small_batch_amid_large_ones_is_cut_in_whole_row_groups() -> None:
    # a split's last rows between two large batches: DuckDB must get whole row groups, in
    # order, and a row group inside one batch is that batch's memory, not a copy
    rg = duckdb_connector.writer.ROW_GROUP_ROWS
    sizes = [rg + 5000, 300, 3 * rg + 1, 2 * rg]
    group, start = [], 0
    for n in sizes:
        ids = pa.array(range(start, start + n), pa.int64())
        group.append(pa.record_batch({"id": ids, "s": ids.cast(pa.string())}))
        start += n
    table = duckdb_connector.writer._aligned(group)
    assert table.column("id").to_pylist() == list(range(start))
    assert table.column("s").to_pylist() == [str(i) for i in range(start)]
    cut = table.to_batches()
    assert all(b.num_rows % rg == 0 for b in cut[:-1]), [b.num_rows for b in cut]
    assert cut[0].num_rows == rg
    assert cut[0].column(0).buffers()[1].address == group[0].column(0).buffers()[1].address
