"""The PostgreSQL reader and writer against a real server (tests/integration/_servers_pg.py)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.connectors.conformance import Adapter, SqlSuite
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server, read_all  # noqa: F401
from tidesync.connectors.base import Context
from tidesync.connectors.postgresql import PgSplit, Reader, Writer
from tidesync.connectors.postgresql.conn import parse_url
from tidesync.engine.dirty import isolate
from tidesync.engine.runner import load_job, run_job
from tidesync.errors import ConfigError, FatalError, RetriableError
from tidesync.spec.params import RunTime
from tidesync.state.sqlite import SqliteState

pytestmark = pytest.mark.integration

RCTX = "job.content[0].reader.parameter"
WCTX = "job.content[0].writer.parameter"
PASSWORD = "s3cr3t-Pa55word"


def reader(params: dict[str, Any], **ctx: Any) -> Reader:
    return Reader(params, Context(where=RCTX, **ctx))


def writer(params: dict[str, Any], **ctx: Any) -> Writer:
    return Writer(params, Context(where=WCTX, **ctx))


def run(
    pg: PgDb,
    tmp_path: Path,
    rparams: dict[str, Any],
    wparams: dict[str, Any],
    setting: dict[str, Any] | None = None,
    cyctime: str = "20161115000000",
    **kw: Any,
) -> Any:
    path = pg.job_file(tmp_path / "job.json", rparams, wparams, setting)
    job = load_job(path, {}, RunTime.of(cyctime), state=SqliteState(tmp_path / "state.db"), **kw)
    return run_job(job, report_path=tmp_path / "report.json")


def copy(r: Reader, w: Writer, n: int = 1) -> None:
    """Drive a reader into a writer as the engine does (no bisection)."""
    w.prepare(r.schema())
    results = []
    try:
        for s in r.splits(n):
            sink = w.open(s)
            for b in r.read(s):
                sink.write(b)
            results.append(sink.close())
    except BaseException:
        w.abort(results)
        raise
    finally:
        r.close()
    w.commit(results)


# -- types ------------------------------------------------------------------------------------

TYPES = [
    ("smallint", "-32768", pa.int16(), -32768),
    ("integer", "2147483647", pa.int32(), 2147483647),
    ("bigint", "-9223372036854775808", pa.int64(), -9223372036854775808),
    ("numeric(12,2)", "1234567890.12", pa.decimal128(12, 2), Decimal("1234567890.12")),
    (
        "numeric(50,5)",
        "123456789012345678901234567890123456789012345.12345",
        pa.decimal256(50, 5),
        Decimal("123456789012345678901234567890123456789012345.12345"),
    ),
    (
        "numeric",
        "3.14159265358979323846264338327950288",
        pa.string(),
        "3.14159265358979323846264338327950288",
    ),
    ("real", "1.5", pa.float32(), 1.5),
    ("double precision", "2.718281828459045", pa.float64(), 2.718281828459045),
    ("text", "'héllo wörld ✓'", pa.string(), "héllo wörld ✓"),
    ("varchar(5)", "'abc'", pa.string(), "abc"),
    ("char(4)", "'ab'", pa.string(), "ab  "),
    ("bytea", "'\\x00ff10'", pa.binary(), b"\x00\xff\x10"),
    ("boolean", "true", pa.bool_(), True),
    ("date", "'2020-02-29'", pa.date32(), dt.date(2020, 2, 29)),
    ("time", "'12:34:56.789012'", pa.time64("us"), dt.time(12, 34, 56, 789012)),
    (
        "timestamp",
        "'2020-01-02 03:04:05.678901'",
        pa.timestamp("us"),
        dt.datetime(2020, 1, 2, 3, 4, 5, 678901),
    ),
    (
        "timestamptz",
        "'2020-01-02 03:04:05.678901+02'",
        pa.timestamp("us", tz="UTC"),
        dt.datetime(2020, 1, 2, 1, 4, 5, 678901, tzinfo=dt.UTC),
    ),
    ("json", "'{\"a\": [1, 2]}'", pa.string(), '{"a": [1, 2]}'),
    ("jsonb", "'{\"b\": 1}'", pa.string(), '{"b": 1}'),
    (
        "uuid",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'",
        pa.string(),
        "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ),
    ("{s}.mood", "'happy'", pa.string(), "happy"),
    ("integer[]", "'{1,2,NULL}'", pa.string(), "[1,2,null]"),
    ("interval", "'1 day 02:00:00'", pa.string(), "1 day 02:00:00"),
    # PostgreSQL's text form, as psql and JDBC show it: inet's ::text gave '10.0.0.1/32'
    ("inet", "'10.0.0.1/32'", pa.string(), "10.0.0.1"),
    ("inet", "'10.1.0.0/16'", pa.string(), "10.1.0.0/16"),
    ("inet", "'::1'", pa.string(), "::1"),
]


@pytest.mark.parametrize(
    ("sql_type", "literal", "arrow_type", "value"), TYPES, ids=[t[0] for t in TYPES]
)
def test_reader_maps_each_type_to_arrow_without_loss(
    pg: PgDb, sql_type: str, literal: str, arrow_type: pa.DataType, value: Any
) -> None:
    pg.sql("CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')")
    pg.sql(
        f"CREATE TABLE {{s}}.t (v {sql_type})", f"INSERT INTO {{s}}.t VALUES ({literal}), (NULL)"
    )
    _, table = read_all(reader(pg.reader_params(table="t")))
    assert table.schema.field("v").type == arrow_type
    assert table.column("v").to_pylist() == [value, None]


def test_reader_gives_nan_numeric_as_dirty_record_not_a_wrong_value(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.t (id int, v numeric(10,2))",
        "INSERT INTO {s}.t VALUES (1, 1.5), (2, 'NaN'), (3, 2.5)",
    )
    r = reader(pg.reader_params(table="t"))
    items = [i for s in r.splits(1) for i in r.read(s)]
    r.close()
    dirty = [d for i in items if not isinstance(i, pa.RecordBatch) for d in i.dirty]
    batches = [i if isinstance(i, pa.RecordBatch) else i.batch for i in items]
    assert [d.row["id"] for d in dirty] == [2]
    assert pa.Table.from_batches(batches).column("v").to_pylist() == [
        Decimal("1.50"),
        Decimal("2.50"),
    ]


@pytest.mark.parametrize("wide", [False, True], ids=["socket", "adbc"])
def test_infinite_dates_and_times_are_dirty_records_not_wrong_values(pg: PgDb, wide: bool) -> None:
    # an unconstrained numeric sends the split through ADBC: both decoders are held to it
    pg.sql(
        f"CREATE TABLE {{s}}.t (id int, n {'numeric' if wide else 'numeric(10,2)'}, d date, "
        "ts timestamp, tz timestamptz, tm time)",
        "INSERT INTO {s}.t VALUES (1, 1, 'infinity', '2024-01-01', NULL, NULL), "
        "(2, 2, '2024-01-02', '-infinity', NULL, NULL), (3, 3, '2024-01-03', NULL, 'infinity', NULL), "
        "(4, 'NaN', '-infinity', NULL, NULL, NULL), "
        "(5, 5, '0001-01-01', '9999-12-31 23:59:59', NULL, '23:59:59.999999'), "
        "(6, 6, NULL, NULL, NULL, '24:00:00')",
    )
    r = reader(pg.reader_params(table="t"))
    items = [i for s in r.splits(1) for i in r.read(s)]
    r.close()
    dirty = [d for i in items if not isinstance(i, pa.RecordBatch) for d in i.dirty]
    batches = [i if isinstance(i, pa.RecordBatch) else i.batch for i in items]
    assert pa.Table.from_batches(batches).to_pylist() == [
        {
            "id": 5,
            "n": "5" if wide else Decimal("5.00"),
            "d": dt.date(1, 1, 1),
            "ts": dt.datetime(9999, 12, 31, 23, 59, 59),
            "tz": None,
            "tm": dt.time(23, 59, 59, 999999),
        }  # fmt: skip
    ]
    assert [(d.row["id"], d.row["d"], d.row["ts"], d.row["tz"], d.row["tm"]) for d in dirty] == [
        (1, "infinity", "2024-01-01 00:00:00", None, None),
        (2, "2024-01-02", "-infinity", None, None),
        (3, "2024-01-03", None, "infinity", None),
        (4, "-infinity", None, None, None),
        (6, None, None, None, "24:00:00"),  # was 00:00:00 in a row, out of range in a file
    ]
    assert "column d: PostgreSQL's infinity has no date/time form" in dirty[0].reason
    assert "column d" in dirty[3].reason
    assert ("NaN" in dirty[3].reason) is not wide  # an unconstrained numeric is read as text
    assert "column tm: 24:00:00 has no form outside PostgreSQL" in dirty[4].reason


ALL_TYPES = ", ".join(f"c{i} {t[0]}" for i, t in enumerate(TYPES))
ALL_VALUES = ", ".join(t[1] for t in TYPES)


def test_every_type_round_trips_through_reader_and_writer(pg: PgDb) -> None:
    pg.sql(
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')",
        f"CREATE TABLE {{s}}.src (id int, {ALL_TYPES}, tz timetz, m money, x xml, b bit(3), p point)",
        f"CREATE TABLE {{s}}.dst (id int, {ALL_TYPES}, tz timetz, m money, x xml, b bit(3), p point)",
        f"INSERT INTO {{s}}.src VALUES (1, {ALL_VALUES}, '12:00+02', 12.34, '<a/>', '101', '(1,2)')",
        "INSERT INTO {s}.src (id) VALUES (2)",
    )
    copy(reader(pg.reader_params(table="src")), writer(pg.writer_params("dst")))
    diff = pg.rows(
        "(SELECT t::text FROM {s}.src t EXCEPT SELECT t::text FROM {s}.dst t) UNION ALL "
        "(SELECT t::text FROM {s}.dst t EXCEPT SELECT t::text FROM {s}.src t)"
    )
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(2,)]
    assert diff == []


def test_names_with_mixed_case_reserved_words_and_unicode_are_quoted(pg: PgDb) -> None:
    pg.sql(
        'CREATE TABLE {s}."Order Items" ("select" int, "MixedCase" text, "größe" real, "名字" text)',
        'CREATE TABLE {s}."Target" ("select" int, "MixedCase" text, "größe" real, "名字" text)',
        """INSERT INTO {s}."Order Items" VALUES (1, 'a', 1.5, '张三')""",
    )
    r = reader(
        pg.reader_params(table="Order Items", column=["select", "MixedCase", "größe", "名字"])
    )
    assert r.schema().names == ["select", "MixedCase", "größe", "名字"]
    copy(r, writer(pg.writer_params("Target")))
    assert pg.rows('SELECT * FROM {s}."Target"') == [(1, "a", 1.5, "张三")]


# -- columns, where, querySql, session, tables ------------------------------------------------


@pytest.mark.parametrize(
    ("column", "names", "first"),
    [
        (["*"], ["id", "name"], (1, "ann")),
        (["name", "ID"], ["name", "id"], ("ann", 1)),
        (
            ["id", "1", "'x'", "upper(name)", "id * 10 AS tens"],
            ["id", "1", "'x'", "upper", "tens"],
            (1, 1, "x", "ANN", 10),
        ),
    ],
)
def test_column_takes_names_star_constants_and_expressions(
    pg: PgDb, column: list[str], names: list[str], first: tuple[Any, ...]
) -> None:
    pg.sql("CREATE TABLE {s}.t (id int, name text)", "INSERT INTO {s}.t VALUES (1, 'ann')")
    _, table = read_all(reader(pg.reader_params(table="t", column=column)))
    assert table.schema.names == names
    assert tuple(table.to_pylist()[0].values()) == first


def test_where_filters_rows(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.t (id int)", "INSERT INTO {s}.t SELECT generate_series(1, 10)")
    _, table = read_all(reader(pg.reader_params(table="t", where="id > 7")))
    assert sorted(table.column("id").to_pylist()) == [8, 9, 10]


def test_query_sql_overrides_table_and_refuses_column_and_where(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.t (id int, v text)", "INSERT INTO {s}.t VALUES (1, 'a'), (2, 'b')")
    params = pg.reader_params(querySql=["SELECT v, id * 2 AS twice FROM t WHERE id = 2;"])
    _, table = read_all(reader(params))
    assert table.to_pylist() == [{"v": "b", "twice": 4}]
    # DataX ignores them beside a query: a where meant as a filter let every row through
    for extra in ({"where": "id = 1"}, {"column": ["id"]}):
        with pytest.raises(ConfigError) as e:
            reader({**params, **extra})
        key = next(iter(extra))
        assert f"parameter.{key}: has no effect on a query (" in str(e.value)


def test_session_statements_run_on_every_connection(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.t (id int)", "INSERT INTO {s}.t VALUES (1), (2)")
    r = reader(
        pg.reader_params(
            table="t",
            splitPk="id",
            session=["SET application_name = 'ts-session'"],
            column=["id", "current_setting('application_name') AS app"],
        )
    )
    _, table = read_all(r, 2)
    assert set(table.column("app").to_pylist()) == {"ts-session"}


def test_several_tables_are_read_each_with_its_own_splits(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.a (id int)",
        "CREATE TABLE {s}.b (id int)",
        "INSERT INTO {s}.a SELECT generate_series(1, 10)",
        "INSERT INTO {s}.b SELECT generate_series(11, 20)",
    )
    splits, table = read_all(reader(pg.reader_params(table=["a", "b"], splitPk="id")), 2)
    assert sorted(table.column("id").to_pylist()) == list(range(1, 21))
    assert {s.label.split()[0] for s in splits} == {"a", "b"}


@pytest.mark.parametrize(
    ("b", "message"),
    [
        ("v text, id int", "reads columns ['v', 'id'], but a reads ['id', 'v']"),
        ("id bigint, v text", "reads id as int64 (not int32) where a does"),
    ],
)
def test_tables_read_together_must_give_the_same_columns(pg: PgDb, b: str, message: str) -> None:
    # the same columns in another order were read by position: 'z' under id's name, and the
    # run succeeded (the SQLite, DuckDB and MySQL readers refused it already)
    pg.sql("CREATE TABLE {s}.a (id int, v text)", f"CREATE TABLE {{s}}.b ({b})")
    with pytest.raises(ConfigError) as e:
        read_all(reader(pg.reader_params(table=["a", "b"])))
    assert f"table[1]: {message}" in str(e.value)


def test_fetch_size_bounds_rows_per_batch(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.t (id int)", "INSERT INTO {s}.t SELECT generate_series(1, 1000)")
    r = reader(pg.reader_params(table="t", fetchSize=128))
    sizes = [b.num_rows for s in r.splits(1) for b in r.read(s)]
    r.close()
    assert sum(sizes) == 1000
    assert max(sizes) == 128


# -- splits -----------------------------------------------------------------------------------


def test_integer_split_pk_reads_every_row_once_with_null_keys_in_their_own_split(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.t (n serial, k int)",
        "INSERT INTO {s}.t (k) SELECT g FROM generate_series(-50, 1000) g",
        "INSERT INTO {s}.t (k) VALUES (NULL), (NULL), (1000), (-50)",
    )
    splits, table = read_all(reader(pg.reader_params(table="t", splitPk="k")), 4)
    assert len(splits) == 5
    assert splits[-1].label.endswith("IS NULL")
    assert sorted(table.column("n").to_pylist()) == list(range(1, 1056))


TRICKY = [
    "a",
    "A",
    "á",
    "b",
    "B",
    "ß",
    "ss",
    "Z",
    "",
    " ",
    "a ",
    "ä",
    "Ä",
    "z",
    "résumé",
    "resume",
    "RÉSUMÉ",
    "日本",
    "🙂",
    "a\tb",
]


@pytest.mark.parametrize("collation", ["default", '"C"', '"und-x-icu"', "{s}.ci"])
def test_text_split_pk_reads_every_row_once_under_any_collation(pg: PgDb, collation: str) -> None:
    pg.sql(
        "CREATE COLLATION {s}.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)"
    )
    coll = "" if collation == "default" else f" COLLATE {collation}"
    pg.sql(f"CREATE TABLE {{s}}.t (n serial, k text{coll})")
    values = (
        [v for v in TRICKY for _ in range(3)] + [f"w{i:03d}" for i in range(200)] + [None, None]
    )
    with pg.con.cursor() as cur:
        cur.executemany(f"INSERT INTO {pg.q('t')} (k) VALUES (%s)", [(v,) for v in values])
    splits, table = read_all(reader(pg.reader_params(table="t", splitPk="k")), 5)
    assert len(splits) >= 4
    assert sorted(table.column("n").to_pylist()) == list(range(1, len(values) + 1))


@pytest.mark.parametrize(
    ("sql_type", "make"),
    [
        ("uuid", lambda i: str(uuid.UUID(int=i * 7919))),
        ("date", lambda i: (dt.date(2020, 1, 1) + dt.timedelta(days=i % 97)).isoformat()),
        ("numeric(8,2)", lambda i: f"{i / 3:.2f}"),
    ],
)
def test_other_split_pk_types_split_by_quantiles_exactly_once(
    pg: PgDb, sql_type: str, make: Any
) -> None:
    pg.sql(f"CREATE TABLE {{s}}.t (n serial, k {sql_type})")
    with pg.con.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {pg.q('t')} (k) VALUES (%s)", [(make(i),) for i in range(300)] + [(None,)]
        )
    splits, table = read_all(reader(pg.reader_params(table="t", splitPk="k")), 4)
    assert len(splits) == 5
    assert sorted(table.column("n").to_pylist()) == list(range(1, 302))


def test_a_split_pk_without_an_ordering_is_a_config_error(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.t (k json)", """INSERT INTO {s}.t VALUES ('{"a": 1}')""")
    r = reader(pg.reader_params(table="t", splitPk="k"))
    with pytest.raises(ConfigError, match=r"reader\.parameter\.splitPk: .*ordering operator"):
        r.splits(2)
    r.close()


def test_snapshot_reads_one_consistent_state_while_another_connection_writes(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.t (id int)", "INSERT INTO {s}.t SELECT generate_series(1, 100)")
    r = reader(pg.reader_params(table="t", splitPk="id", snapshot=True))
    splits = r.splits(4)
    pg.sql(
        "INSERT INTO {s}.t SELECT generate_series(101, 150)",
        "DELETE FROM {s}.t WHERE id <= 10",
        "UPDATE {s}.t SET id = -id WHERE id BETWEEN 50 AND 60",
    )
    ids = [v for s in splits for b in r.read(s) for v in b.column("id").to_pylist()]
    r.close()
    assert sorted(ids) == list(range(1, 101))


# -- incremental ------------------------------------------------------------------------------


def _optime_tables(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (id int, optime timestamp)",
        "CREATE TABLE {s}.dst (id int, optime timestamp)",
        "INSERT INTO {s}.src VALUES (1, '2016-11-13 10:00'), (2, '2016-11-14 10:00'), (3, '2016-11-16 10:00')",
    )


def test_incremental_cursor_reads_only_rows_after_the_last_committed_run(
    pg: PgDb, tmp_path: Path
) -> None:
    _optime_tables(pg)
    rp = pg.reader_params(table="src", incremental={"column": "optime"})
    first = run(pg, tmp_path, rp, pg.writer_params("dst"))
    pg.sql("INSERT INTO {s}.src VALUES (4, '2016-11-14 12:00')")
    second = run(pg, tmp_path, rp, pg.writer_params("dst"), cyctime="20161117000000")
    assert (first.status, first.records_read, second.status, second.records_read) == (
        "succeeded",
        2,
        "succeeded",
        2,
    )
    assert pg.rows("SELECT id FROM {s}.dst ORDER BY id") == [(1,), (2,), (3,), (4,)]


def test_incremental_bounds_of_a_timestamptz_column_are_instants_of_the_jobs_zone(
    pg: PgDb, tmp_path: Path
) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (id int, ts timestamptz)",
        "CREATE TABLE {s}.dst (id int, ts timestamptz)",
        "INSERT INTO {s}.src VALUES (1, '2026-10-24 21:00Z'), (2, '2026-10-24 23:30Z'), "
        "(3, '2026-10-25 00:30Z'), (4, '2026-10-25 01:30Z'), (5, '2026-10-25 02:30Z')",
    )
    berlin = {"timezone": "Europe/Berlin"}  # 02:00..03:00 happens twice on 2026-10-25
    rp = pg.reader_params(table="src", incremental={"column": "ts", "start": "2026-10-25 00:00"})
    first = run(pg, tmp_path, rp, pg.writer_params("dst"), berlin, cyctime="20261025020000")
    assert (first.status, first.records_read) == ("succeeded", 1), first.error  # 23:30Z only
    # the scheduler's 02:00 is the first one (00:00Z); 03:00 comes after the repeated hour
    second = run(pg, tmp_path, rp, pg.writer_params("dst"), berlin, cyctime="20261025030000")
    assert (second.status, second.records_read) == ("succeeded", 2), second.error
    assert pg.rows("SELECT id FROM {s}.dst ORDER BY id") == [(2,), (3,), (4,)]
    doubtful = pg.reader_params(
        table="src", incremental={"column": "ts", "start": "2026-10-25 02:30"}
    )
    (tmp_path / "again").mkdir()
    bad = run(pg, tmp_path / "again", doubtful, pg.writer_params("dst"), berlin)
    assert bad.status == "failed"
    assert "incremental.start: 2026-10-25 02:30:00 is ambiguous in Europe/Berlin" in bad.error
    assert pg.rows("SELECT id FROM {s}.dst ORDER BY id") == [(2,), (3,), (4,)]


@pytest.mark.parametrize("split", [False, True])
def test_an_incremental_text_cursor_reads_each_row_once_whatever_the_collation(
    pg: PgDb, tmp_path: Path, split: bool
) -> None:
    # ICU's en-US puts 'B' after 'a'; the saved position, the largest value Arrow read, was
    # 'a', and every run read 'B' again
    pg.sql(
        'CREATE TABLE {s}.src (id int, k text COLLATE "en-US-x-icu")',
        "CREATE TABLE {s}.dst (id int, k text)",
        "INSERT INTO {s}.src VALUES (1, 'a'), (2, 'B')",
    )
    extra: dict[str, Any] = {"splitPk": "id"} if split else {}
    rp = pg.reader_params(table="src", incremental={"column": "k"}, **extra)
    setting = {"speed": {"channel": 2}} if split else None
    assert run(pg, tmp_path, rp, pg.writer_params("dst"), setting).status == "succeeded"
    pg.sql("INSERT INTO {s}.src VALUES (3, 'b')")
    for _ in range(2):
        assert run(pg, tmp_path, rp, pg.writer_params("dst"), setting).status == "succeeded"
    assert pg.rows("SELECT id FROM {s}.dst ORDER BY id") == [(1,), (2,), (3,)]


def test_incremental_cursor_is_not_saved_when_the_job_fails(pg: PgDb, tmp_path: Path) -> None:
    _optime_tables(pg)
    rp = pg.reader_params(table="src", incremental={"column": "optime"})
    failed = run(pg, tmp_path, rp, pg.writer_params("dst", postSql=["SELECT no_such_function()"]))
    again = run(pg, tmp_path, rp, pg.writer_params("dst"))
    assert (failed.status, again.status, again.records_read) == ("failed", "succeeded", 2)


def test_where_with_scheduling_parameters_selects_the_business_day(
    pg: PgDb, tmp_path: Path
) -> None:
    _optime_tables(pg)
    rp = pg.reader_params(
        table="src", where="optime >= '${yyyy-mm-dd}' AND optime < '$[yyyy-mm-dd]'"
    )
    rep = run(pg, tmp_path, rp, pg.writer_params("dst"))
    assert rep.status == "succeeded", rep.error
    assert pg.rows("SELECT id FROM {s}.dst") == [(2,)]


SCHEDULED = [
    # (job timezone, where on src or querySql, the ids read; None: refused)
    ("UTC", "at >= '$[yyyy-mm-dd hh24:mi:ss-1/24]' AND at < '$[yyyy-mm-dd hh24:mi:ss]'", None),
    ("UTC", "querySql", None),
    (
        "Asia/Shanghai",
        "at >= '$[yyyy-mm-dd hh24:mi:ss-1/24]' AND at < '$[yyyy-mm-dd hh24:mi:ss]'",
        [1],
    ),
    ("UTC", "at >= '$[yyyy-mm-dd hh24:mi:ss-1/24]+08' AND at < '$[yyyy-mm-dd hh24:mi:ss]+08'", [1]),
    (
        "UTC",
        "wall >= '$[yyyy-mm-dd hh24:mi:ss-1/24]' AND day = '${yyyy-mm-dd}' AND ds = '${yyyymmdd}'",
        [1],
    ),
]


@pytest.mark.parametrize(("tz", "where", "ids"), SCHEDULED)
def test_a_where_read_in_another_zone_than_its_schedules_is_refused(
    pg: PgDb, tmp_path: Path, tz: str, where: str, ids: list[int] | None
) -> None:
    # a node on Asia/Shanghai whose job runs on UTC: PostgreSQL read the $[...] wall times in
    # UTC and the run copied the rows of 07:00-08:00 Shanghai time, eight hours after the hour
    # it meant, and succeeded
    pg.sql(
        "CREATE TABLE {s}.src (id int, at timestamptz, wall timestamp, day date, ds text)",
        "INSERT INTO {s}.src VALUES (1, '2016-11-14 23:30+08', '2016-11-14 23:30', "
        "'2016-11-14', '20161114'), (2, '2016-11-15 07:30+08', '2016-11-15 07:30', "
        "'2016-11-15', '20161115')",
        "CREATE TABLE {s}.dst (id int)",
    )
    if where == "querySql":
        rp = pg.reader_params(
            querySql=[f"SELECT id FROM {pg.q('src')} WHERE at < '$[yyyy-mm-dd hh24:mi:ss]'"]
        )
    else:
        rp = pg.reader_params(table="src", column=["id"], where=where)
    path = pg.job_file(tmp_path / "job.json", rp, pg.writer_params("dst"), {"timezone": tz})
    shanghai = RunTime(dt.datetime(2016, 11, 15), dt.date(2016, 11, 14), "Asia/Shanghai")
    rep = run_job(load_job(path, {}, shanghai), report_path=tmp_path / "report.json")
    if ids is None:
        key = "connection[0].querySql[0]" if where == "querySql" else "where"
        assert (rep.status, rep.error) == (
            "failed",
            f"{RCTX}.{key}: PostgreSQL reads its times without an offset in the job's "
            "timezone UTC, but this run's scheduling values ($[...], ${...}) are wall times of "
            "the schedule's zone Asia/Shanghai, so they would name other instants; set "
            "setting.timezone to Asia/Shanghai, write such times with their offset, or use "
            "incremental (its bounds are converted)",
        )
        assert pg.rows("SELECT id FROM {s}.dst") == []
    else:
        assert rep.status == "succeeded", rep.error
        assert pg.rows("SELECT id FROM {s}.dst ORDER BY id") == [(i,) for i in ids]


# -- writer -----------------------------------------------------------------------------------


def _upsert_tables(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.dst (id int PRIMARY KEY, name text, extra text DEFAULT 'dflt')",
        "INSERT INTO {s}.dst VALUES (1, 'a', 'x1'), (2, 'b', 'x2')",
        "CREATE TABLE {s}.src (id int, name text)",
        "INSERT INTO {s}.src VALUES (2, 'B'), (3, 'C')",
    )


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("truncate", [(2, "B", "dflt"), (3, "C", "dflt")]),
        ("replace", [(1, "a", "x1"), (2, "B", "dflt"), (3, "C", "dflt")]),
        ("update", [(1, "a", "x1"), (2, "B", "x2"), (3, "C", "dflt")]),
    ],
)
def test_write_modes_give_the_expected_target(
    pg: PgDb, tmp_path: Path, mode: str, expected: list[tuple[Any, ...]]
) -> None:
    _upsert_tables(pg)
    rep = run(pg, tmp_path, pg.reader_params(table="src"), pg.writer_params("dst", writeMode=mode))
    assert rep.status == "succeeded", rep.error
    assert pg.rows("SELECT * FROM {s}.dst ORDER BY id") == expected


def test_insert_mode_appends_rows(pg: PgDb, tmp_path: Path) -> None:
    _upsert_tables(pg)
    pg.sql("UPDATE {s}.src SET id = id + 10")
    rep = run(
        pg, tmp_path, pg.reader_params(table="src"), pg.writer_params("dst", writeMode="insert")
    )
    assert rep.status == "succeeded", rep.error
    assert pg.rows("SELECT id FROM {s}.dst ORDER BY id") == [(1,), (2,), (12,), (13,)]


@pytest.mark.parametrize("mode", ["truncate", "replace", "update"])
def test_rerun_gives_the_same_target(pg: PgDb, tmp_path: Path, mode: str) -> None:
    _upsert_tables(pg)
    args = (pg.reader_params(table="src"), pg.writer_params("dst", writeMode=mode))
    run(pg, tmp_path, *args)
    once = pg.rows("SELECT * FROM {s}.dst ORDER BY id")
    run(pg, tmp_path, *args)
    assert pg.rows("SELECT * FROM {s}.dst ORDER BY id") == once


def test_update_keeps_the_last_row_of_a_key_repeated_in_one_batch(pg: PgDb, tmp_path: Path) -> None:
    _upsert_tables(pg)
    rp = pg.reader_params(querySql=["SELECT * FROM (VALUES (2, 'first'), (2, 'last')) v(id, name)"])
    rep = run(pg, tmp_path, rp, pg.writer_params("dst", writeMode="update"))
    assert rep.status == "succeeded", rep.error
    assert pg.rows("SELECT name FROM {s}.dst WHERE id = 2") == [("last",)]


_CI_ROWS = [("a", 1), ("z  ", 2), ("B", 4), ("q", 5)]  # citext: 'A' is 'a', 'b' is 'B'
_CI_KEYS: dict[tuple[str, str], list[tuple[str, int]]] = {
    ("citext-primary-key", "update"): [("z", 0), *_CI_ROWS],
    ("citext-primary-key", "replace"): [("z", 0), *_CI_ROWS],
    ("citext-primary-key", "merge"): [("z", 0), *_CI_ROWS],
    ("citext-primary-key", "sync"): _CI_ROWS,
    ("citext-no-index", "update"): [("z", 0), *_CI_ROWS],
    ("citext-no-index", "replace"): [("z", 0), ("A", 1), *_CI_ROWS[1:]],
    ("citext-no-index", "merge"): [("z", 0), ("A", 1), *_CI_ROWS[1:]],
    ("citext-no-index", "sync"): [("A", 1), *_CI_ROWS[1:]],
    # char(n): 'z  ' is 'z'
    ("char-primary-key", "sync"): [("A", 1), ("z", 2), ("b", 3), ("B", 4), ("q", 5)],
    ("char-primary-key", "update"): [("a", 0), ("A", 1), ("z", 2), ("b", 3), ("B", 4), ("q", 5)],
}
_CI_DDL = {
    "citext-primary-key": ("k public.citext PRIMARY KEY, v int", []),
    "citext-no-index": ("k public.citext, v int", ["k"]),
    "char-primary-key": ("k char(3) PRIMARY KEY, v int", []),
}


@pytest.mark.parametrize(("table", "mode"), list(_CI_KEYS), ids=["-".join(k) for k in _CI_KEYS])
def test_keys_are_compared_as_the_target_column_compares_them(
    pg: PgDb, table: str, mode: str
) -> None:
    # keys were compared as text: two rows of one citext key reached ON CONFLICT (21000, the
    # job failed), a table without a unique index got both and kept the old row, and sync
    # deleted the row its upsert had just updated ('a' for 'A'; char(3) 'z' for 'z  ')
    from tidesync.connectors.base import Split

    pg.sql("CREATE EXTENSION IF NOT EXISTS citext SCHEMA public")
    ddl, key = _CI_DDL[table]
    pg.sql(f"CREATE TABLE {{s}}.t ({ddl})", "INSERT INTO {s}.t VALUES ('a', 0), ('z', 0), ('q', 0)")
    batch = pa.record_batch(
        [pa.array(["A", "z  ", "b", "B", "q"]), pa.array([1, 2, 3, 4, 5])], names=["k", "v"]
    )
    w = writer(pg.writer_params("t", writeMode=mode, **({"primaryKey": key} if key else {})))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    try:
        sink.write(batch)
    except BaseException:
        w.abort([sink.close()])
        raise
    w.commit([sink.close()])
    assert pg.rows("SELECT k::text, v FROM {s}.t ORDER BY v") == _CI_KEYS[table, mode]


def test_update_by_primary_key_parameter_uses_a_unique_index(pg: PgDb, tmp_path: Path) -> None:
    pg.sql(
        "CREATE TABLE {s}.dst (code text UNIQUE, n int)",
        "INSERT INTO {s}.dst VALUES ('a', 1)",
        "CREATE TABLE {s}.src (code text, n int)",
        "INSERT INTO {s}.src VALUES ('a', 2), ('b', 3)",
    )
    rep = run(
        pg,
        tmp_path,
        pg.reader_params(table="src"),
        pg.writer_params("dst", writeMode="update", primaryKey=["code"]),
    )
    assert rep.status == "succeeded", rep.error
    assert pg.rows("SELECT * FROM {s}.dst ORDER BY code") == [("a", 2), ("b", 3)]


def test_update_without_a_key_is_a_config_error_naming_primary_key(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.dst (id int, v text)")
    w = writer(pg.writer_params("dst", writeMode="update"))
    with pytest.raises(ConfigError, match=r"writer\.parameter\.primaryKey: .*no primary key"):
        w.prepare(pa.schema([("id", pa.int32()), ("v", pa.string())]))
    w.abort([])


def test_naive_timestamps_into_timestamptz_are_read_in_the_job_time_zone(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.dst (id int, at timestamptz)")
    w = writer(pg.writer_params("dst"), timezone="Asia/Shanghai")
    data = pa.table(
        {"id": [1], "at": pa.array([dt.datetime(2020, 1, 1, 8, 0)], pa.timestamp("us"))}
    )
    w.prepare(data.schema)
    w.open(PgSplit(0, "all")).write(data.to_batches()[0])
    w.commit([])
    assert pg.rows("SELECT at = '2020-01-01 00:00:00+00' FROM {s}.dst") == [(True,)]


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_text_with_an_offset_for_a_timestamp_column_is_the_jobs_wall_time_of_its_instant(
    pg: PgDb, mode: str
) -> None:
    # the server dropped the offset: '14:00:00+02:00' was stored as 14:00
    pg.sql("CREATE TABLE {s}.wt (id int PRIMARY KEY, at timestamp)")
    data = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int32()),
            "at": [
                "2024-06-01 14:00:00+02:00",
                "2024-06-01T14:00:00.5Z",
                "2024-06-01 14:00:00",
                None,
            ],
        }
    )
    w = writer(pg.writer_params("wt", writeMode=mode), timezone="Asia/Shanghai")
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    sink.write(data.to_batches()[0])
    w.commit([sink.close()])
    assert pg.rows("SELECT id, at::text FROM {s}.wt ORDER BY id") == [
        (1, "2024-06-01 20:00:00"),
        (2, "2024-06-01 22:00:00.5"),
        (3, "2024-06-01 14:00:00"),
        (4, None),
    ]


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_a_double_a_real_column_would_not_give_back_is_dirty(pg: PgDb, mode: str) -> None:
    # the binary COPY (or the server's cast) stored 0.123456789 in a real as 0.12345679
    pg.sql("CREATE TABLE {s}.fl (id int PRIMARY KEY, r real)")
    data = pa.table(
        {
            "id": pa.array([1, 2, 3, 4], pa.int32()),
            "r": pa.array([0.1, 0.123456789, None, float("nan")], pa.float64()),
        }
    )
    w = writer(pg.writer_params("fl", writeMode=mode))
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(data.to_batches()[0], sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            1,
            "column r: value 0.123456789 has more digits than float holds; it would be stored "
            "as 0.12345679 (table fl)",
        )
    ]
    assert pg.rows("SELECT id, r::text FROM {s}.fl ORDER BY id") == [
        (1, "0.1"),
        (3, None),
        (4, "NaN"),
    ]


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_an_integer_a_float_column_would_round_is_dirty(pg: PgDb, mode: str) -> None:
    # the binary COPY (or the server's cast) stored 9007199254740993 in a double precision
    # column as 9007199254740992, 16777217 in a real as 16777216
    pg.sql("CREATE TABLE {s}.fl (id int PRIMARY KEY, d double precision, r real)")
    data = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int32()),
            "d": pa.array([2**53, 2**53 + 1, None], pa.int64()),
            "r": pa.array([2**24, None, 2**24 + 1], pa.int64()),
        }
    )
    w = writer(pg.writer_params("fl", writeMode=mode))
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(data.to_batches()[0], sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            1,
            "column d: value 9007199254740993 has more digits than double holds; it would be "
            "stored as 9007199254740992 (table fl)",
        ),
        (
            2,
            "column r: value 16777217 has more digits than float holds; it would be stored as "
            "16777216 (table fl)",
        ),
    ]
    assert pg.rows("SELECT id, d = 9007199254740992, r = 16777216 FROM {s}.fl ORDER BY id") == [
        (1, True, True)
    ]


@pytest.mark.parametrize("mode", ["insert", "update"])
@pytest.mark.parametrize("source", ["timestamp", "text"])
def test_a_naive_time_in_a_dst_gap_or_overlap_is_dirty_for_a_timestamptz_column(
    pg: PgDb, mode: str, source: str
) -> None:
    # the server read them in the session's TimeZone without a word: the gap's 02:30 became
    # 03:30 CEST, the overlap's 02:30 its later instant (CET)
    pg.sql("CREATE TABLE {s}.dst (id int PRIMARY KEY, at timestamptz)")
    wall = [
        dt.datetime(2024, 3, 31, 1, 59),
        dt.datetime(2024, 3, 31, 2, 30),
        dt.datetime(2024, 10, 27, 2, 30),
        None,
    ]
    values = (
        pa.array(wall, pa.timestamp("us"))
        if source == "timestamp"
        else pa.array([None if w is None else f"{w:%Y-%m-%dT%H:%M:%S}.000" for w in wall])
    )
    data = pa.table({"id": [1, 2, 3, 4], "at": values})
    w = writer(pg.writer_params("dst", writeMode=mode), timezone="Europe/Berlin")
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(data.to_batches()[0], sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    gap, overlap = (
        ("2024-03-31 02:30:00", "2024-10-27 02:30:00")
        if source == "timestamp"
        else ("'2024-03-31T02:30:00.000'", "'2024-10-27T02:30:00.000'")
    )
    assert bad == [
        (
            1,
            f"column at: value {gap} does not exist in time zone Europe/Berlin (the clock skips "
            "it at a daylight-saving change), so it names no one instant for timestamp with "
            "time zone; write it with its offset (a timestamp with a time zone) or set the job's "
            "timezone to one without daylight saving",
        ),
        (
            2,
            f"column at: value {overlap} is ambiguous in time zone Europe/Berlin (the clock shows "
            "it twice at a daylight-saving change), so it names no one instant for timestamp "
            "with time zone; write it with its offset (a timestamp with a time zone) or set the "
            "job's timezone to one without daylight saving",
        ),
    ]
    assert pg.rows("SELECT id, (at AT TIME ZONE 'UTC')::text FROM {s}.dst ORDER BY id") == [
        (1, "2024-03-31 00:59:00"),
        (4, None),
    ]


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_a_value_finer_than_the_columns_scale_or_precision_is_dirty_not_rounded(
    pg: PgDb, mode: str
) -> None:
    # the server rounded them without a word: 1.239 into numeric(5,2) became 1.24, 10:00:00.7
    # into timestamp(0) 10:00:01 (binary COPY for insert, staged text and casts for update)
    pg.sql(
        "CREATE TABLE {s}.dst (id int PRIMARY KEY, d numeric(5,2), f numeric(5,2), "
        "s numeric(5,2), at timestamp(0), st timestamptz(0), tm time(3))"
    )
    ten = dt.datetime(2024, 1, 1, 10)
    data = pa.table(
        {
            "id": [1, 2, 3, 4, 5, 6, 7, 8],
            "d": pa.array(
                [Decimal("1.230")] + [Decimal("1.239")] + [None] * 6, pa.decimal128(6, 3)
            ),
            "f": [1.25, None, 1.239, None, None, None, None, -0.5],
            "s": ["1.2", None, None, "1.239", None, None, None, "-1.2000"],
            "at": pa.array(
                [ten, None, None, None, ten + dt.timedelta(microseconds=700000), None, None, None],
                pa.timestamp("us"),
            ),
            "st": [
                "2024-01-01 10:00:00.000+00",
                None,
                None,
                None,
                None,
                "2024-01-01 10:00:00.5+00",
                None,
                None,
            ],
            "tm": pa.array(
                [dt.time(10, 0, 0, 123000)] + [None] * 5 + [dt.time(10, 0, 0, 123400), None],
                pa.time64("us"),
            ),
        }
    )
    w = writer(pg.writer_params("dst", writeMode=mode))
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(data.to_batches()[0], sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            1,
            "column d: value 1.239 has more digits after the point than numeric(5,2) keeps; "
            "PostgreSQL would round it (table dst)",
        ),
        (
            2,
            "column f: value 1.239 has more digits after the point than numeric(5,2) keeps; "
            "PostgreSQL would round it (table dst)",
        ),
        (
            3,
            "column s: value '1.239' has more digits after the point than numeric(5,2) keeps; "
            "PostgreSQL would round it (table dst)",
        ),
        (
            4,
            "column at: value 2024-01-01 10:00:00.700000 has more fractional-second digits than "
            "timestamp(0) without time zone keeps; PostgreSQL would round it (table dst)",
        ),
        (
            5,
            "column st: value '2024-01-01 10:00:00.5+00' has more fractional-second digits than "
            "timestamp(0) with time zone keeps; PostgreSQL would round it (table dst)",
        ),
        (
            6,
            "column tm: value 10:00:00.123400 has more fractional-second digits than "
            "time(3) without time zone keeps; PostgreSQL would round it (table dst)",
        ),
    ]
    assert pg.rows(
        "SELECT id, d::text, f::text, s::text, at::text, tm::text FROM {s}.dst ORDER BY id"
    ) == [
        (1, "1.23", "1.25", "1.20", "2024-01-01 10:00:00", "10:00:00.123"),
        (8, None, "-0.50", "-1.20", None, None),
    ]


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_decimal_text_with_an_exponent_finer_than_the_scale_is_dirty_not_rounded(
    pg: PgDb, mode: str
) -> None:
    # '1.23456e2' into numeric(5,2) was stored as 123.46 without a word, where '123.456' was
    # already a dirty record
    pg.sql("CREATE TABLE {s}.dst (id int PRIMARY KEY, s numeric(5,2))")
    data = pa.table(
        {
            "id": [1, 2, 3, 4, 5, 6],
            "s": ["1.5e1", "1.23456e2", "125E-2", " -1.239E0 ", "1.2300e+1", "1e-3"],
        }
    )
    w = writer(pg.writer_params("dst", writeMode=mode))
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(data.to_batches()[0], sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            off,
            f"column s: value {v!r} has more digits after the point than numeric(5,2) keeps; "
            "PostgreSQL would round it (table dst)",
        )
        for off, v in [(1, "1.23456e2"), (3, " -1.239E0 "), (5, "1e-3")]
    ]
    assert pg.rows("SELECT id, s::text FROM {s}.dst ORDER BY id") == [
        (1, "15.00"),
        (3, "1.25"),
        (5, "12.30"),
    ]


@pytest.mark.parametrize("mode", ["insert", "update"])
def test_an_interval_the_columns_fields_or_digits_would_change_is_dirty(
    pg: PgDb, mode: str
) -> None:
    # interval(0) rounded 00:00:01.5 to 00:00:02 and interval day dropped the hours of
    # '1 day 25:30:00' without a word
    pg.sql(
        "CREATE TABLE {s}.dst (id int PRIMARY KEY, a interval(0), b interval day, "
        "c interval day to second(2), d interval(3))"
    )
    data = pa.table(
        {
            "id": [1, 2, 3, 4, 5],
            "a": ["00:00:01", "00:00:01.5", None, None, None],
            "b": ["2 days", None, "1 day 25:30:00", None, None],
            "c": ["1 day 00:00:01.25", None, None, "00:00:00.125", None],
            "d": pa.array(
                [dt.timedelta(seconds=1, microseconds=500000), None, None, None]
                + [dt.timedelta(microseconds=1001)],
                pa.duration("us"),
            ),
        }
    )
    w = writer(pg.writer_params("dst", writeMode=mode))
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(data.to_batches()[0], sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            1,
            "column a: value '00:00:01.5' has more than interval(0) keeps; PostgreSQL would "
            "make it '00:00:02' (table dst)",
        ),
        (
            2,
            "column b: value '1 day 25:30:00' has more than interval day keeps; PostgreSQL "
            "would make it '1 day' (table dst)",
        ),
        (
            3,
            "column c: value '00:00:00.125' has more than interval day to second(2) keeps; "
            "PostgreSQL would make it '00:00:00.13' (table dst)",
        ),
        (
            4,
            "column d: value '00:00:00.001001' has more than interval(3) keeps; PostgreSQL "
            "would make it '00:00:00.001' (table dst)",
        ),
    ]
    assert pg.rows("SELECT id, a::text, b::text, c::text, d::text FROM {s}.dst") == [
        (1, "00:00:01", "2 days", "1 day 00:00:01.25", "00:00:01.5")
    ]


def test_a_duration_finer_than_an_intervals_microseconds_is_dirty(pg: PgDb) -> None:
    # a duration of 1500 ns was cut to 1 us, and '00:00:00.0000015' rounded to 2 us, silently
    pg.sql("CREATE TABLE {s}.dst (id int, iv interval, tx interval)")
    data = pa.table(
        {
            "id": [1, 2, 3],
            "iv": pa.array([1500, 2000, None], pa.duration("ns")),
            "tx": [None, "00:00:00.0000015", "1 day 00:00:00.000001"],
        }
    )
    w = writer(pg.writer_params("dst"))
    w.prepare(data.schema)
    sink = w.open(PgSplit(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(data.to_batches()[0], sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            0,
            "column iv: value 1500 ns has more fractional-second digits than interval keeps; "
            "PostgreSQL would round it (table dst)",
        ),
        (
            1,
            "column tx: value '00:00:00.0000015' has more fractional-second digits than "
            "interval keeps; PostgreSQL would round it (table dst)",
        ),
    ]
    assert pg.rows("SELECT id, iv::text, tx::text FROM {s}.dst") == [
        (3, None, "1 day 00:00:00.000001")
    ]


def test_a_postgresql_copy_into_a_narrower_interval_makes_dirty_records(
    pg: PgDb, tmp_path: Path
) -> None:
    # the direct binary COPY had the server round or cut each value
    pg.sql(
        "CREATE TABLE {s}.src (id int, v interval)",
        "INSERT INTO {s}.src VALUES (1, '00:00:01'), (2, '00:00:01.5'), (3, '1 day 02:00')",
        "CREATE TABLE {s}.dst (id int, v interval day to second(0))",
    )
    rep = run(
        pg,
        tmp_path,
        pg.reader_params(table="src"),
        pg.writer_params("dst"),
        {"errorLimit": {"record": 5}},
    )
    assert (rep.status, rep.records_written, rep.dirty_records) == ("succeeded", 2, 1)
    assert pg.rows("SELECT id, v::text FROM {s}.dst ORDER BY id") == [
        (1, "00:00:01"),
        (3, "1 day 02:00:00"),
    ]


def test_the_direct_path_is_not_taken_into_a_column_keeping_fewer_digits(
    pg: PgDb, tmp_path: Path
) -> None:
    # binary COPY from numeric(10,4) into numeric(5,2) had the server round 1.2390 to 1.24
    pg.sql(
        "CREATE TABLE {s}.src (id int, n numeric(10,4), at timestamp)",
        "INSERT INTO {s}.src VALUES (1, 1.2300, '2024-01-01 10:00'), "
        "(2, 1.2390, '2024-01-01 10:00'), (3, 1, '2024-01-01 10:00:00.7')",
        "CREATE TABLE {s}.dst (id int, n numeric(5,2), at timestamp(0))",
        "CREATE TABLE {s}.same (id int, n numeric(10,4), at timestamp)",
    )
    rp = pg.reader_params(table="src")
    rep = run(pg, tmp_path, rp, pg.writer_params("dst"), {"errorLimit": {"record": 5}})
    assert (rep.status, rep.records_written, rep.dirty_records) == ("succeeded", 1, 2)
    assert [p.path for p in rep.paths] == ["arrow"]
    assert "numeric(5,2) keeps fewer digits" in (rep.paths[0].why or "")
    assert pg.rows("SELECT id, n::text, at::text FROM {s}.dst") == [
        (1, "1.23", "2024-01-01 10:00:00")
    ]
    same = run(pg, tmp_path, rp, pg.writer_params("same"))
    assert (same.status, same.records_written) == ("succeeded", 3)
    assert [p.path for p in same.paths] == ["direct: postgresql-copy-binary"]


@pytest.mark.parametrize("fast", [False, True])
def test_truncate_mode_empties_the_table_in_the_transaction(
    pg: PgDb, tmp_path: Path, fast: bool
) -> None:
    _upsert_tables(pg)
    wp = pg.writer_params("dst", writeMode="truncate", fastTruncate=fast)
    rep = run(pg, tmp_path, pg.reader_params(querySql=["SELECT 9 AS id, 'z' AS name"]), wp)
    assert rep.status == "succeeded", rep.error
    assert pg.rows("SELECT id, name, extra FROM {s}.dst") == [(9, "z", "dflt")]


def test_writer_column_maps_incoming_columns_by_position(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (a int, b text)",
        "INSERT INTO {s}.src VALUES (1, 'x')",
        "CREATE TABLE {s}.dst (id int, label text, other text)",
    )
    copy(
        reader(pg.reader_params(table="src")),
        writer(pg.writer_params("dst", column=["id", "label"])),
    )
    assert pg.rows("SELECT * FROM {s}.dst") == [(1, "x", None)]


@pytest.mark.parametrize("mode", ["insert", "truncate", "replace", "update"])
def test_failed_job_leaves_the_target_exactly_as_it_was(
    pg: PgDb, tmp_path: Path, mode: str
) -> None:
    _upsert_tables(pg)
    before = pg.rows("SELECT * FROM {s}.dst ORDER BY id")
    # the source fails after some batches have been written: division by zero at row 3000
    rp = pg.reader_params(
        querySql=[
            "SELECT g + 10 AS id, (1 / (3000 - g))::text AS name FROM generate_series(1, 5000) g"
        ],
        fetchSize=500,
    )
    rep = run(pg, tmp_path, rp, pg.writer_params("dst", writeMode=mode))
    assert rep.status == "failed"
    assert "[22012]" in (rep.error or "")
    assert pg.rows("SELECT * FROM {s}.dst ORDER BY id") == before


def test_pre_and_post_sql_run_inside_the_write_transaction(pg: PgDb, tmp_path: Path) -> None:
    _upsert_tables(pg)
    wp = pg.writer_params(
        "dst",
        writeMode="update",
        preSql=["DELETE FROM @table WHERE id = 1"],
        postSql=["UPDATE @table SET extra = 'post' WHERE id = 3"],
    )
    rep = run(pg, tmp_path, pg.reader_params(table="src"), wp)
    assert rep.status == "succeeded", rep.error
    assert pg.rows("SELECT * FROM {s}.dst ORDER BY id") == [(2, "B", "x2"), (3, "C", "post")]


def test_failing_post_sql_rolls_back_pre_sql_and_rows(pg: PgDb, tmp_path: Path) -> None:
    _upsert_tables(pg)
    before = pg.rows("SELECT * FROM {s}.dst ORDER BY id")
    wp = pg.writer_params(
        "dst",
        writeMode="update",
        preSql=["DELETE FROM @table"],
        postSql=["INSERT INTO @table (id) VALUES (NULL)"],
    )
    rep = run(pg, tmp_path, pg.reader_params(table="src"), wp)
    assert rep.status == "failed"
    assert pg.rows("SELECT * FROM {s}.dst ORDER BY id") == before


@pytest.mark.parametrize(
    ("key", "sql", "word"),
    [
        ("preSql", "COMMIT", "COMMIT"),
        ("preSql", "DELETE FROM @table; commit; begin", "COMMIT"),
        ("postSql", "END", "END"),
        ("postSql", "/* done */ PREPARE TRANSACTION 'x'", "PREPARE TRANSACTION"),
        ("preSql", "savepoint mine", "SAVEPOINT"),
    ],
)
def test_pre_or_post_sql_ending_the_transaction_is_refused(
    pg: PgDb, tmp_path: Path, key: str, sql: str, word: str
) -> None:
    # a COMMIT in preSql published its DELETE and the failed run left the table empty; one in
    # postSql published the rows before a failing statement after it
    _upsert_tables(pg)
    before = pg.rows("SELECT * FROM {s}.dst ORDER BY id")
    rest = ["SELECT no_such_function()"] if key == "preSql" else []
    wp = pg.writer_params(
        "dst", **{key: ["DELETE FROM @table", sql] if key == "preSql" else [sql, *rest]}
    )
    if key == "preSql":
        wp["postSql"] = rest
    with pytest.raises(ConfigError) as e:
        run(pg, tmp_path, pg.reader_params(table="src"), wp)
    assert e.value.problems == [
        f"{WCTX}.{key}[{1 if key == 'preSql' else 0}]: {sql!r}: {word} ends or changes the "
        "writer's transaction, so a failed run could not take back what it did (the job is one "
        "transaction: leave it out)"
    ]
    assert pg.rows("SELECT * FROM {s}.dst ORDER BY id") == before


def test_statements_that_only_mention_transaction_words_run_in_the_transaction(
    pg: PgDb, tmp_path: Path
) -> None:
    _upsert_tables(pg)
    wp = pg.writer_params(
        "dst",
        writeMode="update",
        preSql=[
            "DELETE FROM @table WHERE extra = 'commit' -- end",
            "DO $$ BEGIN PERFORM 1; END $$",
            'SELECT 1 AS "begin"',
        ],
    )
    rep = run(pg, tmp_path, pg.reader_params(table="src"), wp)
    assert rep.status == "succeeded", rep.error


# (case, source column, target column, bad value, SQLSTATE): text sources go through the staging
# table and SQL casts; the bigint and text-into-text cases go by binary COPY straight into the target
DIRTY = [
    ("not null", "text", "v text NOT NULL", None, "23502"),
    ("too long", "text", "v varchar(3)", "toolong", "22001"),
    ("bad integer", "text", "v int", "12x", "22P02"),
    ("integer overflow in SQL", "text", "v int", "9999999999", "22003"),
    ("integer overflow in COPY", "bigint", "v int", 9999999999, "22003"),
    ("check", "text", "v text CHECK (v <> 'bad')", "bad", "23514"),
    ("unique", "text", "v text UNIQUE", "dup", "23505"),
]


# (target column, values, offsets of the dirty rows, their SQLSTATE, what is written, as text)
ALTERED = [
    ("bit(3)", pa.array(["101", "1", "1011"]), [1, 2], "22026", ["101"]),
    ("varbit(3)", pa.array(["11", "1011"]), [1], "22001", ["11"]),
    (
        "varchar(3)[]",
        pa.array(['["ab","abc"]', '["ab","abcd"]', "{abcd}"]),
        [1, 2],
        "22001",
        ["{ab,abc}"],
    ),
    ("char(2)[]", pa.array(['["ab"]', '["abc"]']), [1], "22001", ["{ab}"]),
    # nested JSON arrays were read one level deep: {"[\"a\",\"b\"]","[\"c\",\"d\"]"}
    (
        "varchar(3)[]",
        pa.array(['[["a","b"],["c","d"]]', '[["abcd"]]', '[["q\\"x",null]]']),
        [1],
        "22001",
        ["{{a,b},{c,d}}", '{{"q\\"x",NULL}}'],
    ),
    ("text[]", pa.array(['[["a"],["b","c"]]', '[["a"]]']), [0], "22P02", ["{{a}}"]),
    ("real", pa.array([0.5, 1e39, -1e-50, float("nan")]), [1, 2], "22003", ["0.5", "NaN"]),
    ("real[]", pa.array([[0.5], [1e39]], pa.list_(pa.float64())), [1], "22003", ["{0.5}"]),
]


@pytest.mark.parametrize(
    ("column", "values", "offsets", "code", "written"), ALTERED, ids=[a[0] for a in ALTERED]
)
def test_values_the_column_cannot_hold_are_dirty_not_cut_padded_or_rounded_to_infinity(
    pg: PgDb, column: str, values: pa.Array, offsets: list[int], code: str, written: list[str]
) -> None:
    # an explicit CAST('1' AS bit(3)) is '100' and CAST(.. AS varchar(3)[]) cuts each element,
    # where INSERT's assignment refuses; a double cast to real became Infinity or 0
    from tidesync.connectors.base import Split
    from tidesync.engine.dirty import isolate

    pg.sql(f"CREATE TABLE {{s}}.dst (id serial PRIMARY KEY, v {column})")
    batch = pa.record_batch([values], names=["v"])
    w = writer(pg.writer_params("dst"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, Any]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.code)))
    w.commit([sink.close()])
    assert bad == [(off, code) for off in offsets]
    assert pg.rows("SELECT v::text FROM {s}.dst ORDER BY id") == [(v,) for v in written]


@pytest.mark.parametrize(
    ("case", "src_type", "column", "bad", "code"), DIRTY, ids=[d[0] for d in DIRTY]
)
def test_rows_violating_constraints_become_dirty_records_and_the_rest_are_written(
    pg: PgDb, tmp_path: Path, case: str, src_type: str, column: str, bad: Any, code: str
) -> None:
    pg.sql(
        f"CREATE TABLE {{s}}.src (id int, v {src_type})",
        f"CREATE TABLE {{s}}.dst (id int, {column})",
    )
    rows = [(i, str(i) if src_type == "text" else i) for i in range(1, 200)] + [(200, bad)]
    if case == "unique":
        rows.insert(0, (0, "dup"))
    with pg.con.cursor() as cur:
        cur.executemany(f"INSERT INTO {pg.q('src')} VALUES (%s, %s)", rows)
    rep = run(
        pg,
        tmp_path,
        pg.reader_params(table="src"),
        pg.writer_params("dst"),
        setting={"errorLimit": {"record": 5}},
    )
    assert (rep.status, rep.dirty_records, rep.records_written) == ("succeeded", 1, len(rows) - 1)
    dirty = [json.loads(line) for line in Path(rep.dirty_file).read_text().splitlines()]
    assert [(d["code"], d["row"]["id"]) for d in dirty] == [(code, 200)]
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(len(rows) - 1,)]


def test_error_limit_exceeded_exits_1_and_publishes_nothing(pg: PgDb, tmp_path: Path) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (id int, v text)",
        "CREATE TABLE {s}.dst (id int, v text NOT NULL)",
        "INSERT INTO {s}.src VALUES (1, 'a'), (2, NULL), (3, 'c')",
    )
    path = pg.job_file(
        tmp_path / "job.json", pg.reader_params(table="src"), pg.writer_params("dst")
    )
    tidesync = Path(sys.executable).with_name("tidesync")
    proc = subprocess.run(
        [str(tidesync), "run", str(path), "--cyctime", "20161115000000"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert "error limit exceeded" in proc.stderr
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(0,)]


# -- connections and errors -------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["jdbcUrl", "url", "datasource"])
def test_connection_by_jdbc_url_plain_url_or_named_datasource(
    pg: PgDb, tmp_path: Path, shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg.sql("CREATE TABLE {s}.t (id int)", "INSERT INTO {s}.t VALUES (7)")
    monkeypatch.setenv("TS_PG_PASSWORD", PASSWORD)
    conns = {"wh": {"kind": "postgresql", "url": pg.url, "password": "${env:TS_PG_PASSWORD}"}}
    params: dict[str, Any] = {
        "jdbcUrl": pg.reader_params(table=f"{pg.schema}.t"),
        "url": {"url": pg.url, "table": f"{pg.schema}.t"},
        "datasource": {"datasource": "wh", "table": [f"{pg.schema}.t"]},
    }[shape]
    _, table = read_all(reader(params, connections=conns))
    assert table.column("id").to_pylist() == [7]


def test_connection_refused_is_fatal_naming_host_port_db_never_the_password() -> None:
    r = reader(
        {
            "connection": [{"jdbcUrl": ["jdbc:postgresql://127.0.0.1:1/test"], "table": ["t"]}],
            "username": "postgres",
            "password": PASSWORD,
        }
    )
    with pytest.raises(FatalError) as e:
        r.schema()
    assert "127.0.0.1:1/test" in str(e.value)
    assert PASSWORD not in str(e.value)


def test_unknown_role_is_fatal_and_report_holds_no_password(
    pg: PgDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg.sql("CREATE TABLE {s}.t (id int)")
    monkeypatch.setenv("TS_PG_PASSWORD", PASSWORD)
    (tmp_path / "tidesync.yaml").write_text(
        f"connections:\n  wh:\n    kind: postgresql\n    url: postgresql://no_such_role_ts@"
        f"{pg.host_port_db}\n    password: ${{env:TS_PG_PASSWORD}}\n",
        encoding="utf-8",
    )
    rp = {"datasource": "wh", "table": "t"}
    path = pg.job_file(tmp_path / "job.json", rp, pg.writer_params("t"))
    tidesync = Path(sys.executable).with_name("tidesync")
    proc = subprocess.run(
        [str(tidesync), "run", str(path), "--report", "report.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ},
    )
    report = (tmp_path / "report.json").read_text()
    assert proc.returncode == 1
    assert "cannot connect to PostgreSQL at " + pg.host_port_db in json.loads(report)["error"]
    assert PASSWORD not in proc.stderr + proc.stdout + report


def test_password_never_appears_in_dirty_records_or_the_report(pg: PgDb, tmp_path: Path) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (id int, v text)",
        "CREATE TABLE {s}.dst (id int, v text NOT NULL)",
        "INSERT INTO {s}.src VALUES (1, 'a'), (2, NULL)",
    )
    rp = {**pg.reader_params(table="src"), "password": PASSWORD}
    wp = {**pg.writer_params("dst"), "password": PASSWORD}
    rep = run(pg, tmp_path, rp, wp, setting={"errorLimit": {"record": 0}})
    text = (tmp_path / "report.json").read_text() + Path(rep.dirty_file).read_text()
    assert rep.status == "failed"
    assert "23502" in text
    assert PASSWORD not in text


def test_a_connection_killed_while_reading_is_retriable(pg: PgDb) -> None:
    app = f"ts-term-{uuid.uuid4().hex[:8]}"
    r = reader(
        pg.reader_params(
            querySql=["SELECT pg_sleep(10) AS s"], session=[f"SET application_name = '{app}'"]
        )
    )
    split = r.splits(1)[0]

    def kill() -> None:
        for _ in range(200):
            if pg.rows(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s AND state = 'active'",
                (app,),
            )[0][0]:
                return
            time.sleep(0.02)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with pytest.raises(RetriableError, match=r"terminating connection.*\[57P01\]|lost"):
            list(r.read(split))
    finally:
        killer.join()
        r.close()


def test_unknown_table_is_a_config_error_with_its_key_path_and_a_suggestion(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.orders (id int)")
    with pytest.raises(
        ConfigError,
        match=r"reader\.parameter\.connection\[0\]\.table\[0\]: .*'ordrs'.*"
        r"did you mean 'orders'",
    ):
        reader(pg.reader_params(table="ordrs")).schema()


def test_unknown_column_is_a_config_error_with_a_suggestion(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.t (name text)")
    with pytest.raises(ConfigError, match=r"column\[0\]: .*'nmae'.*did you mean 'name'"):
        reader(pg.reader_params(table="t", column=["nmae"])).schema()


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"table": ["t"]}, r"reader\.parameter\.connection: is required"),
        (
            {"connection": [{"jdbcUrl": ["jdbc:mysql://h/db"], "table": ["t"]}]},
            r"jdbcUrl: .*not postgresql",
        ),
        (
            {"connection": [{"jdbcUrl": ["jdbc:postgresql://h/db"]}]},
            r"connection\[0\]\.table: is required",
        ),
        (
            {"url": "postgresql://h/db", "table": "t", "fetchSize": 0},
            r"fetchSize: must be at least 1",
        ),
    ],
)
def test_reader_config_errors_name_the_key(params: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        reader(params)


def test_writer_rejects_an_unknown_write_mode() -> None:
    with pytest.raises(
        ConfigError, match=r"writeMode: 'upsert' is not one of insert, replace, update"
    ):
        writer({"url": "postgresql://h/db", "table": "t", "writeMode": "upsert"})


# -- the shared conformance suite -------------------------------------------------------------

_DDL = {
    pa.int64(): "bigint",
    pa.int32(): "integer",
    pa.float64(): "double precision",
    pa.string(): "text",
    pa.bool_(): "boolean",
    pa.date32(): "date",
    pa.timestamp("us"): "timestamp",
    pa.binary(): "bytea",
}


class PgAdapter(Adapter):
    kind = "postgresql"

    def __init__(self, base_dir: Path, db: PgDb):
        super().__init__(base_dir)
        self.db = db

    def create_table(
        self, name: str, data: pa.Table, primary_key: Sequence[str] = (), defaults: Any = None
    ) -> None:
        cols = [
            f"{self.ident(f.name)} {_DDL[f.type]}{'' if f.nullable else ' NOT NULL'}"
            + (f" DEFAULT {defaults[f.name]}" if f.name in (defaults or {}) else "")
            for f in data.schema
        ]
        if primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(self.ident(k) for k in primary_key)})")
        self.db.sql(
            f"DROP TABLE IF EXISTS {self.db.q(name)}",
            f"CREATE TABLE {self.db.q(name)} ({', '.join(cols)})",
        )
        if data.num_rows:
            marks = ", ".join(["%s"] * data.num_columns)
            with self.db.con.cursor() as cur:
                cur.executemany(
                    f"INSERT INTO {self.db.q(name)} VALUES ({marks})",
                    [tuple(r.values()) for r in data.to_pylist()],
                )

    def read_table(self, name: str) -> pa.Table:
        cur = self.db.con.execute(f"SELECT * FROM {self.db.q(name)}")
        names = [d.name for d in cur.description or []]
        return (
            pa.Table.from_pylist(
                [dict(zip(names, r, strict=True)) for r in cur.fetchall()], schema=None
            )
            if cur.rowcount
            else pa.table({n: [] for n in names})
        )

    def reader_params(self, table: str | list[str], **extra: Any) -> dict[str, Any]:
        return self.db.reader_params(table=table, **extra)

    def writer_params(self, table: str, **extra: Any) -> dict[str, Any]:
        return self.db.writer_params(table, **extra)


class TestPostgresqlConformance(SqlSuite):
    # PostgreSQL splits text keys by quantiles (test_text_split_pk_reads_every_row_once_...)
    test_a_text_split_pk_is_refused = None

    @pytest.fixture
    def adapter(self, pg: PgDb, tmp_path: Path) -> Adapter:
        return PgAdapter(tmp_path, pg)


# -- URLs (no server needed) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "label", "options"),
    [
        ("jdbc:postgresql://db1:5433/sales", "db1:5433/sales", {}),
        (
            "jdbc:postgresql://h1,h2:6000/dw?currentSchema=ods&ssl=true",
            "h1:5432,h2:6000/dw",
            {"options": "-c search_path=ods", "sslmode": "require"},
        ),
        ("postgresql://etl:pw@[::1]/app?sslmode=disable", "::1:5432/app", {"sslmode": "disable"}),
        ("jdbc:postgresql:local", "localhost:5432/local", {}),
    ],
)
def test_urls_read_host_port_database_and_options(
    url: str, label: str, options: dict[str, str]
) -> None:
    ep = parse_url(url)
    assert (ep.label, dict(ep.options)) == (label, options)


def test_an_endpoint_never_shows_its_password() -> None:
    ep = parse_url("postgresql://etl:" + PASSWORD + "@db:5432/app")
    assert ep.password == PASSWORD
    assert PASSWORD not in repr(ep) + str(ep) + ep.label
    assert ep.uri().startswith("postgresql://etl:")


def test_credentials_of_the_job_override_those_of_the_url() -> None:
    ep = parse_url("jdbc:postgresql://db/app?user=a&password=b").with_credentials("etl", "pw")
    assert (ep.user, ep.password) == ("etl", "pw")


# -- partition overwrite and merge ------------------------------------------------------------


def _log_table(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.log (id int, v text, ds date)",
        "INSERT INTO {s}.log VALUES (1, 'old', '2016-11-13'), (2, 'old', '2016-11-14')",
    )


DAY = "SELECT g AS id, 'new' AS v FROM generate_series(1, 3) g"


def test_overwrite_replaces_the_partition_and_a_rerun_changes_nothing(
    pg: PgDb, tmp_path: Path
) -> None:
    _log_table(pg)
    args = (
        pg.reader_params(querySql=[DAY]),
        pg.writer_params("log", writeMode="overwrite", partition="ds=${bizdate}"),
    )
    assert run(pg, tmp_path, *args).status == "succeeded"
    once = pg.rows("SELECT id, v FROM {s}.log WHERE ds = '2016-11-14' ORDER BY id")
    assert once == [(1, "new"), (2, "new"), (3, "new")]
    assert run(pg, tmp_path, *args).status == "succeeded"
    assert pg.rows("SELECT id, v FROM {s}.log WHERE ds = '2016-11-14' ORDER BY id") == once


def test_a_row_whose_partition_column_disagrees_is_dirty(pg: PgDb, tmp_path: Path) -> None:
    _log_table(pg)
    rp = pg.reader_params(
        querySql=[
            "SELECT g AS id, 'new' AS v, (CASE WHEN g = 2 THEN DATE '2016-11-15' "
            "ELSE DATE '2016-11-14' END) AS ds FROM generate_series(1, 3) g"
        ]
    )
    rep = run(
        pg,
        tmp_path,
        rp,
        pg.writer_params("log", partition="ds=${bizdate}"),
        setting={"errorLimit": {"record": 5}},
    )
    assert (rep.status, rep.dirty_records) == ("succeeded", 1), rep.error
    dirty = [json.loads(line) for line in Path(rep.dirty_file).read_text().splitlines()]
    assert [d["row"]["id"] for d in dirty] == [2]
    assert pg.rows("SELECT id FROM {s}.log WHERE ds = '2016-11-14' ORDER BY id") == [(1,), (3,)]


def test_a_failed_overwrite_leaves_the_partition_as_it_was(pg: PgDb, tmp_path: Path) -> None:
    _log_table(pg)
    before = pg.rows("SELECT * FROM {s}.log ORDER BY id")
    rp = pg.reader_params(
        querySql=["SELECT g AS id, (1 / (3000 - g))::text AS v FROM generate_series(1, 5000) g"],
        fetchSize=500,
    )
    rep = run(pg, tmp_path, rp, pg.writer_params("log", partition="ds=${bizdate}"))
    assert rep.status == "failed"
    assert pg.rows("SELECT * FROM {s}.log ORDER BY id") == before


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"partition": "ds"}, r"partition: 'ds': .*names no partition column"),
        ({"partition": "ds=1", "writeMode": "insert"}, r"partition: applies to writeMode"),
        ({"deleteMarker": {"column": "d", "value": 1}}, r"deleteMarker: applies to writeMode"),
        ({"writeMode": "merge", "deleteMarker": {"column": "d"}}, r"deleteMarker: must be"),
    ],
)
def test_partition_and_delete_marker_config_errors_name_the_key(
    params: dict[str, Any], problem: str
) -> None:
    wp = {"connection": [{"jdbcUrl": "jdbc:postgresql://h/db", "table": ["t"]}], **params}
    with pytest.raises(ConfigError, match=r"writer\.parameter\." + problem):
        writer(wp)


# -- splits away from the reader --------------------------------------------------------------


def _split_table(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.t (id int, name text, amount numeric(12,2), at timestamptz)",
        "INSERT INTO {s}.t SELECT g, 'n' || g, g / 7.0, '2024-01-01'::timestamptz + g * "
        "interval '1 minute' FROM generate_series(1, 3000) g",
        "INSERT INTO {s}.t VALUES (NULL, 'null key', 1, NULL)",
    )


def test_a_fresh_reader_reads_a_split_without_planning_again(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    _split_table(pg)
    params = pg.reader_params(table="t", splitPk="id", snapshot=True)
    planner = reader(params)
    splits = planner.splits(4)
    pg.sql("DELETE FROM {s}.t WHERE id <= 1000")  # after planning: the snapshot still has them
    fresh = reader(params)
    monkeypatch.setattr(Reader, "_plan", lambda self: pytest.fail("a split read planned again"))
    try:
        got = [b for s in splits for b in fresh.read(s)]
    finally:
        fresh.close()
        planner.close()
    table = pa.Table.from_batches(got)
    assert table.num_rows == 3001 and table.column_names == ["id", "name", "amount", "at"]
    assert table.schema.field("amount").type == pa.decimal128(12, 2)


def test_postgresql_tasks_give_the_same_result_in_fresh_processes(
    pg: PgDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.engine import _spawn
    from tidesync.engine import executor as ex

    monkeypatch.setitem(ex.EXECUTORS, "spawn", _spawn.SpawnExecutor)
    _split_table(pg)
    outputs = []
    for name in ("local", "spawn"):
        doc = {
            "job": {
                "setting": {"speed": {"channel": 3}, "executor": name},
                "content": [
                    {
                        "reader": {
                            "name": "postgresqlreader",
                            "parameter": pg.reader_params(table="t", splitPk="id", snapshot=True),
                        },
                        "writer": {
                            "name": "txtfilewriter",
                            "parameter": {
                                "path": name,
                                "fileName": "t.parquet",
                                "fileFormat": "parquet",
                            },
                        },
                    }
                ],
            }
        }
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(doc))
        rep = run_job(load_job(path, {}, RunTime.of("20250101000000")))
        assert rep.status == "succeeded", rep.error
        assert rep.records_read == 3001 and len(rep.splits) == 4  # 3 key ranges and NULL keys
        import pyarrow.parquet as pq

        outputs.append(
            {
                p.name: pq.read_table(p)
                for p in sorted((tmp_path / name).iterdir())
                if p.suffix == ".parquet"
            }
        )
    assert len(_spawn.PIDS) == 4 and os.getpid() not in _spawn.PIDS
    local, spawned = outputs
    assert list(local) == list(spawned) and len(local) == 4
    for name in local:
        assert local[name].equals(spawned[name]), name


# -- concurrent runs of one target ------------------------------------------------------------


def _write_open(pg: PgDb, wparams: dict[str, Any], batch: pa.RecordBatch) -> tuple[Writer, Any]:
    """A writer prepared and written, its transaction left open; and its sink's result."""
    from tidesync.connectors.base import Split

    w = Writer(wparams, Context(where="job.content[0].writer.parameter"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    sink.write(batch)
    return w, sink.close()


def test_two_overwrite_runs_of_one_partition_at_once_leave_one_runs_rows(
    pg: PgDb, tmp_path: Path
) -> None:
    """Issue 12.3: a second `tidesync run` of the same overwrite waits for the first one's
    commit, then replaces its rows; the partition holds each id once."""
    _log_table(pg)
    wparams = pg.writer_params("log", writeMode="overwrite", partition="ds=20161114")
    first, result = _write_open(pg, wparams, pa.record_batch({"id": [1, 2, 3], "v": ["a"] * 3}))
    job = pg.job_file(tmp_path / "job.json", pg.reader_params(querySql=[DAY]), wparams)
    tidesync = Path(sys.executable).with_name("tidesync")
    second = subprocess.Popen(
        [str(tidesync), "run", str(job), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
    )
    assert second.stdout is not None
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(second.stdout or []), daemon=True)
    reader.start()
    try:
        for _ in range(3000):  # until it says it waits (or ends): only a guard against a hang
            if any("another run is writing" in line for line in lines) or second.poll() is not None:
                break
            time.sleep(0.02)
    finally:
        first.commit([result])
    code = second.wait(timeout=120)
    reader.join()
    second.stdout.close()
    assert code == 0, "".join(lines)
    assert any(
        "another run is writing partition ds=20161114 of table log" in line for line in lines
    )
    assert pg.rows("SELECT id, v FROM {s}.log WHERE ds = '2016-11-14' ORDER BY id") == [
        (1, "new"),
        (2, "new"),
        (3, "new"),
    ]


def test_overwrites_of_other_partitions_and_appends_do_not_wait(pg: PgDb) -> None:
    _log_table(pg)
    first, result = _write_open(
        pg,
        pg.writer_params("log", writeMode="overwrite", partition="ds=20161114"),
        pa.record_batch({"id": [5], "v": ["a"]}),
    )
    try:
        for params in (
            pg.writer_params("log", writeMode="overwrite", partition="ds=20161115"),
            pg.writer_params("log", writeMode="insert"),
        ):
            other, other_result = _write_open(
                pg, {**params, "lockTimeout": 0}, pa.record_batch({"id": [6], "v": ["b"]})
            )
            other.commit([other_result])
        truncate = pg.writer_params("log", writeMode="truncate", lockTimeout=0)
        with pytest.raises(RetriableError, match="another run is writing table log"):
            _write_open(pg, truncate, pa.record_batch({"id": [7], "v": ["c"]}))
    finally:
        first.commit([result])
    assert pg.rows("SELECT id, ds::text FROM {s}.log ORDER BY id, ds") == [
        (1, "2016-11-13"),
        (5, "2016-11-14"),
        (6, "2016-11-15"),
        (6, None),
    ]
