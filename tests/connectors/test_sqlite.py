"""The sqlite reader and writer: the conformance suite, then what is SQLite's own."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from tests.connectors.conformance import (
    NEW,
    OLD,
    Adapter,
    SqlSuite,
    _batches,
    make_reader,
    make_writer,
    read_all,
    read_splits,
    rows,
    write,
)
from tidesync.connectors.base import Chunk, Context, Split, load
from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, RetriableError


def _decl(t: pa.DataType) -> str:
    for test, decl in (
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_integer, "INTEGER"),
        (pa.types.is_floating, "REAL"),
        (pa.types.is_timestamp, "TIMESTAMP"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_binary, "BLOB"),
    ):
        if test(t):
            return decl
    return "TEXT"


def _plain(v: Any) -> Any:
    return (
        v.isoformat(" ")
        if isinstance(v, dt.datetime)
        else v.isoformat()
        if isinstance(v, dt.date)
        else v
    )


class SqliteAdapter(Adapter):
    kind = "sqlite"

    def __init__(self, base_dir: Path):
        super().__init__(base_dir)
        self.path = base_dir / "db.sqlite"

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
        with closing(sqlite3.connect(self.path)) as con:
            con.execute(f"DROP TABLE IF EXISTS {q(name)}")
            con.execute(f"CREATE TABLE {q(name)} ({', '.join(cols)})")
            marks = ", ".join("?" * data.num_columns)
            con.executemany(
                f"INSERT INTO {q(name)} VALUES ({marks})",
                [tuple(_plain(v) for v in r.values()) for r in data.to_pylist()],
            )
            con.commit()

    def read_table(self, name: str) -> pa.Table:
        with closing(sqlite3.connect(self.path, timeout=5)) as con:
            cur = con.execute(f"SELECT * FROM {self.ident(name)}")
            names = [d[0] for d in cur.description]
            values = list(zip(*cur.fetchall(), strict=True)) or [()] * len(names)
        return pa.table({n: pa.array(list(v)) for n, v in zip(names, values, strict=True)})

    def reader_params(self, table: str | list[str], **extra: Any) -> dict[str, Any]:
        return {
            "database": "db.sqlite",
            "table": table if isinstance(table, list) else [table],
            **extra,
        }

    def writer_params(self, table: str, **extra: Any) -> dict[str, Any]:
        return {"connection": [{"jdbcUrl": "jdbc:sqlite:db.sqlite", "table": [table]}], **extra}


class TestSqliteConformance(SqlSuite):
    @pytest.fixture
    def adapter(self, tmp_path: Path) -> SqliteAdapter:
        return SqliteAdapter(tmp_path)


@pytest.fixture
def db(tmp_path: Path) -> SqliteAdapter:
    return SqliteAdapter(tmp_path)


def _sql(db: SqliteAdapter, *statements: str) -> None:
    with closing(sqlite3.connect(db.path)) as con:
        for s in statements:
            con.execute(s)
        con.commit()


def _ctx(db: SqliteAdapter, side: str = "reader") -> Context:
    return db.context(side)


# -- naming the database -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {"database": "db.sqlite", "table": "src"},
        {"database": "jdbc:sqlite:db.sqlite", "table": ["src"]},
        {"jdbcUrl": ["jdbc:sqlite:db.sqlite"], "table": ["src"]},
        {"connection": [{"jdbcUrl": ["jdbc:sqlite:db.sqlite"], "table": ["src"]}]},
        {
            "connection": [
                {"jdbcUrl": ["jdbc:sqlite:gone.sqlite", "jdbc:sqlite:db.sqlite"], "table": ["src"]}
            ]
        },
        {"connection": [{"jdbcUrl": "jdbc:sqlite:file:db.sqlite?mode=ro"}], "table": "src"},
    ],
    ids=[
        "database",
        "database-jdbc",
        "jdbcUrl",
        "connection",
        "first-existing-alternative",
        "file-uri",
    ],
)
def test_the_reader_finds_the_database_in_every_form(
    db: SqliteAdapter, params: dict[str, Any]
) -> None:
    db.create_table("src", OLD)
    assert rows(read_all(load("sqlitereader", "reader")(params, _ctx(db)))) == rows(OLD)


def test_an_absolute_path_does_not_depend_on_the_job_folder(
    db: SqliteAdapter, tmp_path: Path
) -> None:
    db.create_table("src", OLD)
    ctx = Context(base_dir=tmp_path / "elsewhere")
    assert (
        read_all(load("sqlite", "reader")({"database": str(db.path), "table": "src"}, ctx)).num_rows
        == 3
    )


@pytest.mark.parametrize(
    "params",
    [
        {"connection": [{"jdbcUrl": "jdbc:sqlite:db.sqlite", "table": ["dst"]}]},
        {"connection": [{"jdbcUrl": ["jdbc:sqlite:db.sqlite"], "table": "dst"}]},
        {"database": "db.sqlite", "table": "dst"},
        {"jdbcUrl": "jdbc:sqlite:db.sqlite", "table": ["dst"]},
    ],
    ids=["datax", "url-list", "database", "jdbcUrl"],
)
def test_the_writer_finds_the_database_in_every_form(
    db: SqliteAdapter, params: dict[str, Any]
) -> None:
    w = load("sqlitewriter", "writer")(params, _ctx(db, "writer"))
    w.prepare(OLD.schema)
    sink = w.open(Split(0, "all"))
    sink.write(OLD.to_batches()[0])
    w.commit([sink.close()])
    assert rows(db.read_table("dst")) == rows(OLD)


@pytest.mark.parametrize(
    ("side", "params", "message"),
    [
        ("reader", {"table": "t"}, "reader.parameter.database: is required"),
        ("reader", {"database": "db.sqlite"}, "reader.parameter.table: is required (or querySql)"),
        (
            "reader",
            {"connection": [{"jdbcUrl": ["jdbc:sqlite:db.sqlite"]}]},
            "reader.parameter.connection[0].table: is required (or querySql)",
        ),
        (
            "reader",
            {"database": "nope.sqlite", "table": "t"},
            "reader.parameter.database: no such database file",
        ),
        (
            "reader",
            {"database": "jdbc:mysql://h:3306/db", "table": "t"},
            "reader.parameter.database: 'jdbc:mysql://h:3306/db' is not a sqlite database; "
            "write jdbc:sqlite:PATH",
        ),
        (
            "reader",
            {"database": ":memory:", "table": "t"},
            "reader.parameter.database: an in-memory sqlite database",
        ),
        (
            "reader",
            {"database": "db.sqlite", "table": "t", "fetchSize": 0},
            "reader.parameter.fetchSize: must be at least 1",
        ),
        ("writer", {"database": "db.sqlite"}, "writer.parameter.table: is required"),
        (
            "writer",
            {"database": "db.sqlite", "table": ["a", "b"]},
            "writer.parameter.table: a writer writes one table",
        ),
        (
            "writer",
            {"connection": [{"jdbcUrl": ["jdbc:sqlite:a", "jdbc:sqlite:b"], "table": ["t"]}]},
            "writer.parameter.connection[0].jdbcUrl: a writer writes one database",
        ),
        (
            "writer",
            {"database": "db.sqlite", "table": "t", "column": ["a", "A"]},
            "writer.parameter.column: names a column twice",
        ),
        (
            "writer",
            {"database": "db.sqlite", "table": "t", "batchSize": "x"},
            "writer.parameter.batchSize: must be an integer",
        ),
    ],
)
def test_a_mistake_is_named_by_its_key(
    db: SqliteAdapter, side: str, params: dict[str, Any], message: str
) -> None:
    db.create_table("t", OLD)
    with pytest.raises(ConfigError) as e:
        load("sqlite", side)(params, _ctx(db, side))  # type: ignore[arg-type]
    assert f"job.content[0].{message}" in str(e.value)


def test_every_problem_is_reported_at_once(db: SqliteAdapter) -> None:
    with pytest.raises(ConfigError) as e:
        load("sqlite", "writer")({"writeMode": "trunc", "batchSize": -1}, _ctx(db, "writer"))
    assert [p.split(":")[0] for p in e.value.problems] == [
        "job.content[0].writer.parameter.database",
        "job.content[0].writer.parameter.table",
        "job.content[0].writer.parameter.writeMode",
        "job.content[0].writer.parameter.batchSize",
    ]


# -- reading: types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "value", "arrow", "expected"),
    [
        ("INTEGER", 7, pa.int64(), 7),
        ("BIGINT UNSIGNED", 2**62, pa.int64(), 2**62),
        ("REAL", 1.5, pa.float64(), 1.5),
        ("DOUBLE PRECISION", 2, pa.float64(), 2.0),
        ("TEXT", "名字", pa.string(), "名字"),
        ("VARCHAR(10)", 12, pa.string(), "12"),
        ("BLOB", b"\x00\x01", pa.binary(), b"\x00\x01"),
        ("BOOLEAN", 1, pa.bool_(), True),
        ("NUMERIC(10,2)", "1.5", pa.decimal128(10, 2), decimal.Decimal("1.50")),
        ("DECIMAL", 2.5, pa.float64(), 2.5),
        ("DATE", "2024-02-29", pa.date32(), dt.date(2024, 2, 29)),
        ("DATE", "2024-02-29 10:00:00", pa.timestamp("us"), dt.datetime(2024, 2, 29, 10)),
        ("DATE", "yesterday", pa.string(), "yesterday"),
        (
            "DATETIME",
            "2024-01-02T03:04:05.5",
            pa.timestamp("us"),
            dt.datetime(2024, 1, 2, 3, 4, 5, 500000),
        ),
        (
            "TIMESTAMP",
            "2024-01-02 03:04:05+02:00",
            pa.timestamp("us", "UTC"),
            dt.datetime(2024, 1, 2, 1, 4, 5, tzinfo=dt.UTC),
        ),
        (
            "TIMESTAMPTZ",
            "2024-01-02 03:04:05",
            pa.timestamp("us", "UTC"),
            dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        ),
        ("TIME", "12:00:01.25", pa.time64("us"), dt.time(12, 0, 1, 250000)),
        ("", 3, pa.int64(), 3),
        ("", "x", pa.string(), "x"),
    ],
)
def test_declared_types_decide_the_arrow_types(
    db: SqliteAdapter, declared: str, value: Any, arrow: pa.DataType, expected: Any
) -> None:
    _sql(db, f"CREATE TABLE t (x {declared})")
    with closing(sqlite3.connect(db.path)) as con:
        con.execute("INSERT INTO t VALUES (?)", (value,))
        con.commit()
    got = read_all(make_reader(db, db.reader_params("t")))
    assert got.schema.field("x").type == arrow
    assert got.column("x").to_pylist() == [expected]


def test_expression_types_come_from_the_values(db: SqliteAdapter) -> None:
    db.create_table("src", OLD)
    got = read_all(
        make_reader(
            db,
            db.reader_params(
                "src", querySql="SELECT id, id * 1.5 AS x, upper(v) AS u, NULL AS z FROM src"
            ),
        )
    )
    assert got.schema.types == [pa.int64(), pa.float64(), pa.string(), pa.string()]
    assert got.column("u").to_pylist() == ["OLD1", "OLD2", "OLD3"]


def test_a_value_that_does_not_fit_its_column_becomes_a_dirty_read(db: SqliteAdapter) -> None:
    _sql(
        db,
        "CREATE TABLE t (id INTEGER, n INTEGER)",
        "INSERT INTO t VALUES (1, 10), (2, 'many'), (3, 1.5), (4, 40)",
    )
    reader = make_reader(db, db.reader_params("t"))
    (chunk,) = list(reader.read(reader.splits(1)[0]))
    assert isinstance(chunk, Chunk) and chunk.batch is not None
    assert chunk.batch.to_pylist() == [{"id": 1, "n": 10}, {"id": 4, "n": 40}]
    assert [(d.position, d.row) for d in chunk.dirty] == [
        ("row 1", {"id": 2, "n": "many"}),
        ("row 2", {"id": 3, "n": 1.5}),
    ]
    assert "column 'n': value 'many' does not fit int64" in chunk.dirty[0].reason


@pytest.mark.parametrize("extra", ["", ", (5, 'maybe')"])
def test_a_boolean_column_holding_numbers_and_words_is_read(db: SqliteAdapter, extra: str) -> None:
    # 1 and 'true' in one column could not become one Arrow array: the job failed with
    # ArrowInvalid (with a bad value beside them too)
    _sql(
        db,
        "CREATE TABLE t (id INTEGER, b BOOLEAN)",
        f"INSERT INTO t VALUES (1, 1), (2, 'true'), (3, 0), (4, 'FALSE'){extra}",
    )
    reader = make_reader(db, db.reader_params("t"))
    dirty: list[Any] = []
    got = [
        r for s in reader.splits(1) for b in _batches(reader.read(s), dirty) for r in b.to_pylist()
    ]
    assert got == [
        {"id": 1, "b": True},
        {"id": 2, "b": True},
        {"id": 3, "b": False},
        {"id": 4, "b": False},
    ]
    assert [(d.position, d.row) for d in dirty] == (
        [("row 4", {"id": 5, "b": "maybe"})] if extra else []
    )


def test_a_number_other_than_0_or_1_in_a_boolean_column_is_a_dirty_read(
    db: SqliteAdapter,
) -> None:
    # Arrow's cast made any number but 0 true: 2, -1 and 0.5 were read as true
    _sql(
        db,
        "CREATE TABLE t (id INTEGER, b BOOLEAN)",
        "INSERT INTO t VALUES (1, 1), (2, 2), (3, 0), (4, -1), (5, 0.5), (6, NULL), (7, 1.0)",
    )
    reader = make_reader(db, db.reader_params("t"))
    dirty: list[Any] = []
    got = [
        r for s in reader.splits(1) for b in _batches(reader.read(s), dirty) for r in b.to_pylist()
    ]
    assert got == [
        {"id": 1, "b": True},
        {"id": 3, "b": False},
        {"id": 6, "b": None},
        {"id": 7, "b": True},
    ]
    assert [(d.position, d.row["b"]) for d in dirty] == [
        ("row 1", 2),
        ("row 3", -1),
        ("row 4", 0.5),
    ]
    assert all("a boolean is 0 or 1" in d.reason for d in dirty)


def test_hexadecimal_text_in_an_integer_column_is_a_dirty_read_not_its_value(
    db: SqliteAdapter,
) -> None:
    # SQLite keeps '0x10' as text in an INTEGER column; Arrow's cast read it as 16
    _sql(
        db,
        "CREATE TABLE t (id INTEGER, n INTEGER)",
        "INSERT INTO t VALUES (1, 10), (2, '0x10'), (3, '0X1f'), (4, 7)",
    )
    reader = make_reader(db, db.reader_params("t"))
    dirty: list[Any] = []
    got = [
        r for s in reader.splits(1) for b in _batches(reader.read(s), dirty) for r in b.to_pylist()
    ]
    assert got == [{"id": 1, "n": 10}, {"id": 4, "n": 7}]
    assert [(d.position, d.row["n"]) for d in dirty] == [("row 1", "0x10"), ("row 2", "0X1f")]


def test_fetch_size_sets_the_rows_per_batch(db: SqliteAdapter) -> None:
    db.create_table("src", pa.table({"id": pa.array(range(5), pa.int64())}))
    reader = make_reader(db, db.reader_params("src", fetchSize="2"))
    assert [b.num_rows for b in reader.read(reader.splits(1)[0])] == [2, 2, 1]


def test_tables_of_different_shapes_are_refused(db: SqliteAdapter) -> None:
    db.create_table("a", OLD)
    db.create_table("b", pa.table({"x": [1]}))
    with pytest.raises(
        ConfigError, match=r"reader\.parameter\.table\[1\]: b gives columns \['x'\]"
    ):
        make_reader(db, db.reader_params(["a", "b"])).schema()


def test_a_where_with_split_pk_keeps_null_keys_in_their_own_split(db: SqliteAdapter) -> None:
    db.create_table(
        "src", pa.table({"id": pa.array([1, None, 5, None], pa.int64()), "v": ["a", "b", "c", "d"]})
    )
    reader = make_reader(db, db.reader_params("src", splitPk="id", where="v <> 'd'"))
    parts = read_splits(reader, 2)
    assert parts == [[{"id": 1, "v": "a"}], [{"id": 5, "v": "c"}], [{"id": None, "v": "b"}]]
    assert reader.splits(2)[2].label == "src id is null"


def test_a_split_pk_holding_text_names_the_text(db: SqliteAdapter) -> None:
    # an INTEGER column may hold text; the message named the smallest value (1, an int)
    db.create_table("src", pa.table({"id": pa.array([1, 2], pa.int64()), "v": ["a", "b"]}))
    with closing(sqlite3.connect(db.path)) as con:
        con.execute("INSERT INTO src VALUES ('abc', 'c')")
        con.commit()
    reader = make_reader(db, db.reader_params("src", splitPk="id"))
    with pytest.raises(ConfigError, match=r"holds str values such as 'abc'; splitPk needs"):
        reader.splits(2)


def test_rowid_is_a_column_of_every_table(db: SqliteAdapter) -> None:
    db.create_table("src", OLD)
    got = read_all(make_reader(db, db.reader_params("src", column=["rowid", "v"])))
    assert got.column(0).to_pylist() == [1, 2, 3]


# -- writing -----------------------------------------------------------------------------------


def test_a_created_table_declares_types_the_reader_maps_back(db: SqliteAdapter) -> None:
    data = pa.table(
        {
            "i": pa.array([1], pa.int16()),
            "d": pa.array([decimal.Decimal("1.25")], pa.decimal128(9, 2)),
            "t": pa.array(
                [dt.datetime(2024, 1, 1, 8, tzinfo=dt.UTC)], pa.timestamp("ms", "Asia/Shanghai")
            ),
            "l": pa.array([[1, 2]]),
            "tm": pa.array([dt.time(1, 2, 3)]),
        }
    )
    write(db, db.writer_params("new"), data)
    with closing(sqlite3.connect(db.path)) as con:
        assert [r[2] for r in con.execute("PRAGMA table_info(new)")] == [
            "INTEGER",
            "DECIMAL(9,2)",
            "TIMESTAMPTZ",
            "TEXT",
            "TIME",
        ]
    assert read_all(make_reader(db, db.reader_params("new"))).to_pylist() == [
        {
            "i": 1,
            "d": decimal.Decimal("1.25"),
            "t": dt.datetime(2024, 1, 1, 8, tzinfo=dt.UTC),
            "l": "[1, 2]",
            "tm": dt.time(1, 2, 3),
        }
    ]


def test_column_maps_incoming_columns_by_position(db: SqliteAdapter) -> None:
    db.create_table(
        "dst", pa.table({"k": pa.array([], pa.int64()), "val": pa.array([], pa.string())})
    )
    write(
        db,
        db.writer_params("dst", column=["val", "k"]),
        pa.table({"a": ["x"], "b": pa.array([7], pa.int64())}),
    )
    assert db.read_table("dst").to_pylist() == [{"k": 7, "val": "x"}]


def test_a_column_count_mismatch_is_named(db: SqliteAdapter) -> None:
    db.create_table("dst", OLD)
    w = make_writer(db, db.writer_params("dst", column=["id"]))
    with pytest.raises(
        ConfigError, match=r"writer\.parameter\.column: lists 1 columns but 2 arrive \(id, v\)"
    ):
        w.prepare(OLD.schema)


@pytest.mark.parametrize(
    ("incoming", "column", "message"),
    [
        (["id", "A", "a"], None, "incoming columns 'A' and 'a' both go to column a"),
        (["id", "x", "y"], ["id", "a", "A"], "column: names a column twice"),
    ],
)
def test_two_columns_bound_for_one_target_column_are_an_error(
    db: SqliteAdapter, incoming: list[str], column: list[str] | None, message: str
) -> None:
    # SQLite took INSERT INTO t (id, a, a) and kept the first value: the run succeeded with
    # one of the two columns dropped
    _sql(db, "CREATE TABLE t (id INTEGER, a TEXT)")
    with pytest.raises(ConfigError, match=re.escape(message)):
        w = make_writer(db, db.writer_params("t", **({"column": column} if column else {})))
        w.prepare(pa.schema([(n, pa.string()) for n in incoming]))


def test_an_unwritten_required_column_is_named(db: SqliteAdapter) -> None:
    _sql(db, "CREATE TABLE dst (id INTEGER, v TEXT NOT NULL, w TEXT NOT NULL DEFAULT 'x')")
    w = make_writer(db, db.writer_params("dst", column=["id"]))
    with pytest.raises(
        ConfigError, match=r"column: table dst needs column\(s\) v \(NOT NULL without a default\)"
    ):
        w.prepare(pa.schema([("id", pa.int64())]))


@pytest.mark.parametrize("mode", ["replace", "update"])
def test_an_upsert_into_a_missing_table_is_refused(db: SqliteAdapter, mode: str) -> None:
    w = make_writer(db, db.writer_params("nope", writeMode=mode, primaryKey=["id"]))
    with pytest.raises(
        ConfigError, match=r"parameter\.connection\[0\]\.table: table nope does not exist"
    ):
        w.prepare(OLD.schema)


def test_a_strict_table_makes_a_type_mismatch_dirty(db: SqliteAdapter) -> None:
    _sql(db, "CREATE TABLE dst (id INTEGER, n INTEGER) STRICT")
    batch = pa.record_batch({"id": pa.array([1, 2, 3], pa.int64()), "n": ["1", "two", "3"]})
    bad: list[DirtyRecordError] = []
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda _o, _b, e: bad.append(e))
    w.commit([sink.close()])
    assert [r["id"] for r in rows(db.read_table("dst"))] == [1, 3]
    assert "column n: value 'two' is not an integer" in bad[0].reason


@pytest.mark.parametrize("strict", ["", " STRICT"])
def test_a_value_a_number_column_cannot_hold_is_dirty_in_any_table(
    db: SqliteAdapter, strict: str
) -> None:
    # a table without STRICT took 'abc' into an INTEGER column and 1.5 as a REAL, silently,
    # where PostgreSQL and MySQL refuse both
    _sql(db, f"CREATE TABLE dst (id INTEGER, n INTEGER, d REAL){strict}")
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "n": ["12", "abc", "1.5", "7"],
            "d": ["1.5", "2", "3", "x1"],
        }
    )
    bad: list[tuple[int, str]] = []
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    with closing(sqlite3.connect(db.path)) as con:
        got = con.execute("SELECT id, n, typeof(n), d, typeof(d) FROM dst ORDER BY id").fetchall()
    assert got == [(1, 12, "integer", 1.5, "real")]
    assert [(o, r.split(",")[0].split(" (")[0]) for o, r in bad] == [
        (1, "column n: value 'abc' is not an integer"),
        (2, "column n: value '1.5' is not an integer"),
        (3, "column d: value 'x1' is not a number"),
    ]


def test_hexadecimal_text_for_an_integer_column_is_dirty_not_its_value(db: SqliteAdapter) -> None:
    # Arrow's cast read '0x10' as 16, stored as the integer 16
    _sql(db, "CREATE TABLE dst (id INTEGER, n INTEGER)")
    batch = pa.record_batch({"id": pa.array([1, 2, 3], pa.int64()), "n": ["16", "0x10", "0X1F"]})
    bad: list[tuple[int, str]] = []
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    with closing(sqlite3.connect(db.path)) as con:
        assert con.execute("SELECT id, n FROM dst ORDER BY id").fetchall() == [(1, 16)]
    assert [(o, r.split(",")[0]) for o, r in bad] == [
        (1, "column n: value '0x10' is not an integer"),
        (2, "column n: value '0X1F' is not an integer"),
    ]


def test_an_integer_a_real_column_would_round_is_dirty(db: SqliteAdapter) -> None:
    # SQLite stored 9007199254740993 in a REAL column as 9007199254740992.0, silently
    _sql(db, "CREATE TABLE dst (id INTEGER, r REAL, n NUMERIC)")
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "r": pa.array([2**53, 2**53 + 1, None], pa.int64()),
            "n": pa.array([1, None, 2**53 + 1], pa.int64()),  # NUMERIC keeps it an INTEGER
        }
    )
    bad: list[tuple[int, str]] = []
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert [(o, r.split(" (sqlite table")[0]) for o, r in bad] == [
        (
            1,
            "column r: value 9007199254740993 has more digits than double holds; it would be "
            "stored as 9007199254740992",
        )
    ]
    with closing(sqlite3.connect(db.path)) as con:
        got = con.execute("SELECT id, r, n FROM dst ORDER BY id").fetchall()
    assert got == [(1, 2.0**53, 1), (3, None, 2**53 + 1)]


@pytest.mark.parametrize("source", ["decimal", "text"])
def test_a_decimal_with_more_digits_than_sqlite_keeps_is_dirty(
    db: SqliteAdapter, source: str
) -> None:
    # SQLite stores a number bound for a DECIMAL column as a REAL, keeping 15 significant
    # digits: 12345678901234567890.0123456789 came back as 12345678901234567000, silently
    _sql(db, "CREATE TABLE dst (id INTEGER, d DECIMAL(38,10))")
    values = [
        decimal.Decimal("12345678901234567890.0123456789"),
        decimal.Decimal("123456789012345.6"),
        decimal.Decimal("-0.0000000001"),
        decimal.Decimal("9223372036854775807"),
        decimal.Decimal("100000000000000000000"),
        decimal.Decimal("1.1000000000"),
        None,
    ]
    d = pa.array(values, pa.decimal128(38, 10))
    batch = pa.record_batch(
        {
            "id": pa.array(range(len(values)), pa.int64()),
            "d": d
            if source == "decimal"
            else pa.array([None if v is None else str(v) for v in values]),
        }
    )
    bad: list[tuple[int, str]] = []
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    # the decimal is bound as 9223372036854775807.0000000000, which SQLite reads as a REAL
    whole = source == "text"
    assert [o for o, _ in bad] == ([0, 1] if whole else [0, 1, 3])
    big = ["12345678901234567890.0123456789", "123456789012345.6", "9223372036854775807"]
    for (_, reason), value in zip(bad, big[: len(bad)], strict=True):
        assert reason.startswith(f"column d: value {value}"), reason
        assert "more significant digits than SQLite keeps in a number column" in reason
    got = read_all(make_reader(db, db.reader_params("dst"))).to_pylist()
    assert [(r["id"], r["d"]) for r in got] == [
        (2, decimal.Decimal("-0.0000000001")),
        *([(3, decimal.Decimal("9223372036854775807"))] if whole else []),
        (4, decimal.Decimal("100000000000000000000")),
        (5, decimal.Decimal("1.1")),
        (6, None),
    ]


def test_a_date_or_time_outside_the_calendar_is_dirty_not_text(db: SqliteAdapter) -> None:
    # DuckDB's infinity dates and timestamps arrive as Arrow's extremes, and its time 24:00:00
    # one microsecond past the day: SQLite got '<value out of range: 2147483647>' in a DATE
    # column and year -28164 for -infinity, and the run succeeded
    _sql(db, "CREATE TABLE dst (id INTEGER, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, tm TIME)")
    n = 5
    d = pa.array([2**31 - 1, 0, 0, 0, 19723], pa.int32()).view(pa.date32())
    ts = pa.array([0, 2**63 - 1, 0, 0, 0], pa.int64()).view(pa.timestamp("us"))
    tz = pa.array([0, 0, 1 - 2**63, 0, 0], pa.int64()).view(pa.timestamp("us", "UTC"))
    tm = pa.array([0, 0, 0, 86_400_000_000, 3_723_000_000], pa.int64()).view(pa.time64("us"))
    batch = pa.record_batch(
        {"id": pa.array(range(n), pa.int64()), "d": d, "ts": ts, "tz": tz, "tm": tm}
    )
    bad: list[tuple[int, str]] = []
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason.split(" (")[0])))
    w.commit([sink.close()])
    assert bad == [
        (0, "column d: a date/time outside the years 1 to 9999, which SQLite cannot hold as text"),
        (1, "column ts: a date/time outside the years 1 to 9999, which SQLite cannot hold as text"),
        (2, "column tz: a date/time outside the years 1 to 9999, which SQLite cannot hold as text"),
        (3, "column tm: a time past 23:59:59.999999, which SQLite cannot hold as text"),
    ]
    with closing(sqlite3.connect(db.path)) as con:
        got = con.execute("SELECT id, d, ts, tz, tm FROM dst").fetchall()
    assert got == [
        (
            4,
            "2024-01-01",
            "1970-01-01 00:00:00.000000",
            "1970-01-01 00:00:00.000000Z",
            "01:02:03.000000",
        )
    ]


def test_nan_is_dirty_not_null(db: SqliteAdapter) -> None:
    # SQLite stores a NaN it is given as NULL: the run succeeded with NULL where NaN was
    _sql(db, "CREATE TABLE dst (id INTEGER, f REAL)")
    batch = pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "f": pa.array([float("nan"), float("inf"), None, -0.5]),
        }
    )
    bad: list[tuple[int, str]] = []
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason.split(" (")[0])))
    w.commit([sink.close()])
    assert bad == [(0, "column f: NaN, which SQLite would store as NULL")]
    with closing(sqlite3.connect(db.path)) as con:
        got = con.execute("SELECT id, f FROM dst ORDER BY id").fetchall()
    assert got == [(2, float("inf")), (3, None), (4, -0.5)]


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "America/New_York"])
def test_instants_and_wall_times_meet_in_the_jobs_zone(db: SqliteAdapter, zone: str) -> None:
    # a naive time bound for a TIMESTAMPTZ column was stored without an offset, which the
    # reader takes as UTC; an instant bound for a DATE column was stored as a timestamp text
    _sql(db, "CREATE TABLE dst (id INTEGER, ts TIMESTAMP, tz TIMESTAMPTZ, d DATE)")
    instant = dt.datetime(2024, 1, 1, 0, 0, tzinfo=dt.UTC)
    late = dt.datetime(2023, 12, 31, 20, 0, tzinfo=dt.UTC)
    batch = pa.record_batch(
        {
            "id": pa.array([1], pa.int64()),
            "ts": pa.array([instant], pa.timestamp("us", "UTC")),
            "tz": pa.array([dt.datetime(2024, 1, 1, 0, 0)], pa.timestamp("us")),
            "d": pa.array([late], pa.timestamp("ms", "UTC")),
        }
    )
    ctx = Context(base_dir=db.base_dir, where="job.content[0].writer.parameter", timezone=zone)
    w = load("sqlite", "writer")(db.writer_params("dst"), ctx)
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    sink.write(batch)
    w.commit([sink.close()])
    with closing(sqlite3.connect(db.path)) as con:
        got = con.execute("SELECT ts, tz, d FROM dst").fetchall()
    here = ZoneInfo(zone)
    wall = instant.astimezone(here).replace(tzinfo=None)
    midnight = dt.datetime(2024, 1, 1, tzinfo=here).astimezone(dt.UTC)
    assert got == [
        (
            f"{wall:%Y-%m-%d %H:%M:%S}.000000",
            f"{midnight:%Y-%m-%d %H:%M:%S}.000000Z",
            str(late.astimezone(here).date()),
        )
    ]


@pytest.mark.parametrize(
    ("column", "sent"),
    [
        ("TIMESTAMPTZ", pa.timestamp("us")),  # a naive time, stored as its instant ('...Z')
        ("DATETIME", pa.timestamp("us", "UTC")),  # an instant, stored as its wall time
    ],
)
def test_a_sync_keyed_by_a_time_of_the_other_kind_keeps_the_rows_it_wrote(
    db: SqliteAdapter, column: str, sent: pa.DataType
) -> None:
    # the keys were compared as sent, not as stored: the sync deleted every row it wrote
    _sql(db, f"CREATE TABLE dst (ts {column} PRIMARY KEY, v TEXT)")
    _sql(db, "INSERT INTO dst VALUES ('2000-01-01 00:00:00', 'gone')")
    times = [dt.datetime(2024, 1, 1, 8), dt.datetime(2024, 1, 2, 8)]
    batch = pa.record_batch({"ts": pa.array(times, sent), "v": ["a", "b"]})
    for _ in range(2):  # a rerun changes nothing
        ctx = Context(
            base_dir=db.base_dir, where="job.content[0].writer.parameter", timezone="Asia/Shanghai"
        )
        w = load("sqlite", "writer")(db.writer_params("dst", writeMode="sync"), ctx)
        w.prepare(batch.schema)
        sink = w.open(Split(0, "all"))
        sink.write(batch)
        w.commit([sink.close()])
        with closing(sqlite3.connect(db.path)) as con:
            got = con.execute("SELECT v FROM dst ORDER BY v").fetchall()
        assert got == [("a",), ("b",)]


def test_an_interval_column_is_an_error_naming_it(db: SqliteAdapter) -> None:
    # it failed with Arrow's bare "Unsupported cast from month_day_nano_interval to utf8"
    iv = pa.array([pa.MonthDayNano([1, 2, 0])], pa.month_day_nano_interval())
    batch = pa.record_batch({"id": pa.array([1], pa.int64()), "iv": iv})
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    with pytest.raises(FatalError, match="column iv is an interval .* cast it to text"):
        sink.write(batch)
    w.abort([])


def test_an_update_with_only_key_columns_inserts_the_missing_keys(db: SqliteAdapter) -> None:
    db.create_table("dst", OLD, primary_key=["id"])
    write(
        db,
        db.writer_params("dst", writeMode="update", column=["id"]),
        pa.table({"id": pa.array([3, 9], pa.int64())}),
    )
    assert [(r["id"], r["v"]) for r in rows(db.read_table("dst"))] == [
        (1, "old1"),
        (2, "old2"),
        (3, "old3"),
        (9, None),
    ]


def test_a_unique_index_is_the_conflict_target_of_update(db: SqliteAdapter) -> None:
    _sql(
        db,
        "CREATE TABLE dst (id INTEGER PRIMARY KEY, code TEXT, v TEXT)",
        "CREATE UNIQUE INDEX dst_code ON dst (code)",
        "INSERT INTO dst VALUES (1, 'a', 'old')",
    )
    write(
        db,
        db.writer_params("dst", writeMode="update", primaryKey=["code"], column=["code", "v"]),
        pa.table({"code": ["a", "b"], "v": ["new", "b"]}),
    )
    assert [(r["id"], r["code"], r["v"]) for r in rows(db.read_table("dst"))] == [
        (1, "a", "new"),
        (2, "b", "b"),
    ]


def test_a_task_discarded_alone_is_undone_and_the_rest_commits(db: SqliteAdapter) -> None:
    db.create_table("dst", OLD.schema.empty_table(), primary_key=["id"])
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(OLD.schema)
    first = w.open(Split(0, "first"))
    first.write(OLD.to_batches()[0])
    results = [first.close()]
    second = w.open(Split(1, "second"))
    second.write(NEW.filter(pa.array([False, True, True])).to_batches()[0])
    results.append(second.discard())
    w.commit(results)
    assert rows(db.read_table("dst")) == rows(OLD)


def test_a_task_discarded_beside_another_makes_commit_refuse(db: SqliteAdapter) -> None:
    db.create_table("dst", OLD.schema.empty_table(), primary_key=["id"])
    w = make_writer(db, db.writer_params("dst"))
    w.prepare(OLD.schema)
    first, second = w.open(Split(0, "first")), w.open(Split(1, "second"))
    first.write(OLD.to_batches()[0])
    second.write(NEW.filter(pa.array([False, True, True])).to_batches()[0])
    results = [first.close(), second.discard()]
    with pytest.raises(
        FatalError, match="nothing committed: task 'second' failed after writing 2 rows"
    ):
        w.commit(results)
    assert db.read_table("dst").num_rows == 0


def test_abort_removes_a_database_file_it_created(db: SqliteAdapter) -> None:
    _, results = write(db, db.writer_params("dst"), OLD, commit=False)
    assert db.path.exists()
    _.abort(results)
    assert not db.path.exists()


def test_a_locked_database_is_retriable_and_names_the_table(db: SqliteAdapter) -> None:
    db.create_table("dst", OLD)
    w = make_writer(db, db.writer_params("dst", session=["PRAGMA busy_timeout = 10"]))
    with closing(sqlite3.connect(db.path, isolation_level=None)) as other:
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(
            RetriableError, match=r"sqlite table dst in .*db\.sqlite: database is locked"
        ) as e:
            w.prepare(OLD.schema)
    assert e.value.code == "SQLITE_BUSY"
    assert rows(db.read_table("dst")) == rows(OLD)


def test_a_failing_pre_sql_is_named_and_leaves_the_table(db: SqliteAdapter) -> None:
    db.create_table("dst", OLD)
    w = make_writer(
        db,
        db.writer_params(
            "dst", writeMode="truncate", preSql=["DELETE FROM @table", "DELETE FROM nowhere"]
        ),
    )
    with pytest.raises(FatalError, match=r"writer\.parameter\.preSql\[1\]: no such table: nowhere"):
        w.prepare(OLD.schema)
    assert rows(db.read_table("dst")) == rows(OLD)


def test_a_write_after_the_database_turned_read_only_is_fatal(db: SqliteAdapter) -> None:
    db.create_table("dst", OLD.schema.empty_table())
    w = make_writer(db, db.writer_params("dst", preSql=["PRAGMA query_only = ON"]))
    w.prepare(OLD.schema)
    sink = w.open(Split(0, "all"))
    with pytest.raises(
        FatalError, match="sqlite table dst in .*: attempt to write a readonly database"
    ):
        sink.write(OLD.to_batches()[0])
    w.abort([sink.discard()])


@pytest.mark.parametrize("kind", ["sqlite", "duckdb"])
def test_missing_folders_are_created_and_removed_again_on_abort(tmp_path: Path, kind: str) -> None:
    ctx = Context(base_dir=tmp_path, where="job.content[0].writer.parameter")
    w = load(kind, "writer")({"database": "a/b/x.db", "table": "t"}, ctx)
    w.prepare(pa.schema([("id", pa.int64())]))
    assert (tmp_path / "a" / "b").is_dir()
    w.abort([])
    assert not (tmp_path / "a").exists()


# -- incremental: reruns of an instance ---------------------------------------------------------


def _partition_job(tmp_path: Path) -> Path:
    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute("CREATE TABLE oplog (id INTEGER, optime DATETIME, uname TEXT)")
        con.executemany(
            "INSERT INTO oplog VALUES (?, ?, ?)",
            [(1, "2016-11-13 10:00:00", "a"), (2, "2016-11-14 10:00:00", "b")],
        )
        con.commit()
    reader = {
        "database": str(tmp_path / "src.db"),
        "table": "oplog",
        "column": ["id", "uname"],
        "incremental": {"column": "optime", "start": "2016-11-14 00:00:00"},
    }
    writer = {
        "path": str(tmp_path / "out" / "ds=${bizdate}"),
        "fileName": "oplog",
        "writeMode": "truncate",
        "fileFormat": "csv",
    }
    job = {
        "job": {
            "content": [
                {
                    "reader": {"name": "sqlitereader", "parameter": reader},
                    "writer": {"name": "txtfilewriter", "parameter": writer},
                }
            ]
        }
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    return path


def _run_bizdate(path: Path, bizdate: str) -> Any:
    from tidesync.engine.runner import load_job, run_job
    from tidesync.spec.params import RunTime
    from tidesync.state.sqlite import SqliteState

    rt = RunTime.of(bizdate=bizdate)
    state = SqliteState(path.parent / "state.db")
    return run_job(load_job(path, {}, rt, state=state, root=path.parent))


def _partition(tmp_path: Path, ds: str) -> list[str]:
    return sorted(
        line
        for f in (tmp_path / "out" / f"ds={ds}").iterdir()
        for line in f.read_text().splitlines()
    )


def test_a_rerun_of_an_instance_reads_its_window_again(tmp_path: Path) -> None:
    # an incremental read into the instance's partition with truncate: rerunning the instance
    # (tidesync instance rerun, backfill) after it or a later one committed read nothing from
    # the saved cursor on, and replaced the partition with an empty file
    path = _partition_job(tmp_path)
    assert _run_bizdate(path, "20161114").records_read == 1
    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute("INSERT INTO oplog VALUES (3, '2016-11-15 10:00:00', 'c')")
        con.commit()
    assert _run_bizdate(path, "20161115").records_read == 1
    again = _run_bizdate(path, "20161114")
    assert (again.status, again.records_read) == ("succeeded", 1), again.error
    assert _partition(tmp_path, "20161114") == ["2,b"]
    latest = _run_bizdate(path, "20161115")
    assert (latest.status, latest.records_read) == ("succeeded", 1), latest.error
    assert _partition(tmp_path, "20161115") == ["3,c"]
    assert _run_bizdate(path, "20161116").records_read == 0  # the cursor did not move back


def test_a_window_before_those_the_job_read_is_refused_and_the_target_kept(
    tmp_path: Path,
) -> None:
    path = _partition_job(tmp_path)
    assert _run_bizdate(path, "20161114").records_read == 1
    (tmp_path / "out" / "ds=20161113").mkdir()
    (tmp_path / "out" / "ds=20161113" / "oplog").write_text("1,a\n")
    early = _run_bizdate(path, "20161113")
    assert early.status == "failed"
    assert "cannot read the window of cyctime '2016-11-14 00:00:00'" in early.error
    assert "older than those whose windows this job keeps" in early.error
    assert _partition(tmp_path, "20161113") == ["1,a"]


# -- incremental: times kept as text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "stored"),
    [
        # what tidesync's own sqlitewriter stores, six digits of fraction
        (
            "TIMESTAMP",
            [
                "2016-11-14 09:00:00.000000",
                "2016-11-14 10:00:00.000000",
                "2016-11-15 00:00:00.000000",
                "2016-11-15 08:00:00.500000",
            ],
        ),
        (
            "DATETIME",
            [
                "2016-11-14T09:00:00",
                "2016-11-14T10:00:00",
                "2016-11-15T00:00:00",
                "2016-11-15 08:00:00.5",
            ],
        ),
        (
            "TIMESTAMPTZ",
            [
                "2016-11-14 09:00:00.000000Z",
                "2016-11-14 10:00:00.000000Z",
                "2016-11-15 00:00:00Z",
                "2016-11-15 16:00:00.5+08:00",
            ],
        ),
        ("DATE", ["2016-11-13", "2016-11-14", "2016-11-15", "2016-11-15"]),
    ],
)
def test_an_incremental_read_of_times_kept_as_text_reads_each_row_once(
    tmp_path: Path, declared: str, stored: list[str]
) -> None:
    # SQLite compares text: '2016-11-14 10:00:00.000000' > '2016-11-14 10:00:00' (the saved
    # cursor) and '2016-11-14T09:00:00' > '2016-11-14 10:00:00', so each run read the previous
    # run's last rows again and appended them a second time
    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute(f"CREATE TABLE oplog (id INTEGER, optime {declared})")
        con.executemany("INSERT INTO oplog VALUES (?, ?)", list(enumerate(stored[:2], 1)))
        con.commit()
    reader = {"database": str(tmp_path / "src.db"), "table": "oplog", "column": ["id"],
              "incremental": {"column": "optime"}}  # fmt: skip
    writer = {"database": str(tmp_path / "dst.db"), "table": "out", "writeMode": "insert"}
    job = {"reader": {"name": "sqlitereader", "parameter": reader},
           "writer": {"name": "sqlitewriter", "parameter": writer}}  # fmt: skip
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"job": {"content": [job]}}))
    # the windows end at the cyctimes, excluded: 2016-11-15 00:00 belongs to the second run
    # (a DATE to the run after its day)
    assert _run_bizdate(path, "20161114").status == "succeeded"
    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.executemany("INSERT INTO oplog VALUES (?, ?)", list(enumerate(stored[2:], 3)))
        con.commit()
    for bizdate in ("20161114", "20161115", "20161116"):
        # the first again: a rerun of its instance reads its window again
        assert _run_bizdate(path, bizdate).status == "succeeded"
    with closing(sqlite3.connect(tmp_path / "dst.db")) as con:
        ids = sorted(r[0] for r in con.execute("SELECT id FROM out"))
    assert ids == [1, 1, 2, 2, 3, 4]
