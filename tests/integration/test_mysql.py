"""The mysql reader and writer against the real MariaDB/MySQL server: the conformance suite,
then what is MySQL's own (types, collation-safe splits, snapshots, LOAD DATA, errors, secrets)."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pymysql import err as myerr

from tests.connectors.conformance import (
    Adapter,
    SqlSuite,
    copy,
    read_splits,
    write,
)
from tests.integration._servers_mysql import MyDb, mysql_db, mysql_module_db, mysql_server
from tests.integration._servers_mysql import my_user as my_user
from tidesync.connectors import mysql
from tidesync.connectors.base import Context, Split
from tidesync.connectors.mysql import Reader, Writer, wire
from tidesync.engine.dirty import isolate
from tidesync.engine.runner import load_job, run_job
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, RetriableError
from tidesync.spec.params import RunTime
from tidesync.state.sqlite import SqliteState

pytestmark = pytest.mark.integration
FIXTURES = (
    mysql_server,
    mysql_db,
    mysql_module_db,
)  # pytest takes fixtures from this module's names

_DDL = {
    pa.int64(): "BIGINT",
    pa.int32(): "INT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.date32(): "DATE",
    pa.timestamp("us"): "DATETIME(6)",
    pa.binary(): "BLOB",
    pa.string(): "TEXT",
}


def q(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class MyAdapter(Adapter):
    kind = "mysql"
    creates_tables = False

    def __init__(self, base_dir: Path, db: MyDb):
        super().__init__(base_dir)
        self.db = db

    def create_table(
        self, name: str, data: pa.Table, primary_key: Sequence[str] = (), defaults: Any = None
    ) -> None:
        cols = []
        for f in data.schema:
            t = _DDL[f.type]
            if f.name in primary_key and t in ("TEXT", "BLOB"):
                t = "VARCHAR(191)" if t == "TEXT" else "VARBINARY(191)"
            default = f" DEFAULT {defaults[f.name]}" if f.name in (defaults or {}) else ""
            cols.append(f"{q(f.name)} {t}{'' if f.nullable else ' NOT NULL'}{default}")
        if primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(q(k) for k in primary_key)})")
        con = self.db.connect()
        try:
            with con.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {q(name)}")
                cur.execute(f"CREATE TABLE {q(name)} ({', '.join(cols)})")
                if data.num_rows:
                    marks = ", ".join(["%s"] * data.num_columns)
                    cur.executemany(
                        f"INSERT INTO {q(name)} VALUES ({marks})",
                        [tuple(r.values()) for r in data.to_pylist()],
                    )
        finally:
            con.close()

    def read_table(self, name: str) -> pa.Table:
        con = self.db.connect()
        try:
            with con.cursor() as cur:
                cur.execute(f"SELECT * FROM {q(name)}")
                names = [d[0] for d in cur.description]
                return (
                    pa.Table.from_pylist([dict(zip(names, r, strict=True)) for r in cur.fetchall()])
                    if cur.rowcount
                    else pa.table({n: pa.array([], pa.null()) for n in names})
                )
        finally:
            con.close()

    def reader_params(self, table: str | list[str], **extra: Any) -> dict[str, Any]:
        tables = table if isinstance(table, list) else [table]
        return {
            "username": "root",
            "password": "",
            "connection": [{"jdbcUrl": [self.db.jdbc], "table": tables}],
            **extra,
        }

    def writer_params(self, table: str, **extra: Any) -> dict[str, Any]:
        return {
            "username": "root",
            "password": "",
            "connection": [{"jdbcUrl": self.db.jdbc, "table": [table]}],
            **extra,
        }

    def ident(self, name: str) -> str:
        return q(name)


class TestMysqlConformance(SqlSuite):
    @pytest.fixture
    def adapter(self, tmp_path: Path, mysql_db: MyDb) -> MyAdapter:
        return MyAdapter(tmp_path, mysql_db)

    def test_a_text_split_pk_is_refused(self, adapter: Adapter) -> None:
        pytest.skip("mysql splits text keys by quantiles: see test_text_keys_split_by_quantiles_*")


# -- helpers -----------------------------------------------------------------------------------


def ctx(side: str = "reader", **kw: Any) -> Context:
    return Context(where=f"job.content[0].{side}.parameter", **kw)


def rparams(
    db: MyDb, table: str | list[str] | None = None, protocol: str = "binary", **extra: Any
) -> dict[str, Any]:
    """Reader parameters; ``protocol="text"`` reads with plain queries instead of prepared ones."""
    url = db.jdbc + ("?useServerPrepStmts=false" if protocol == "text" else "")
    conn: dict[str, Any] = {"jdbcUrl": [url]}
    if table is not None:
        conn["table"] = table if isinstance(table, list) else [table]
    return {"username": "root", "password": "", "connection": [conn], **extra}


def wparams(db: MyDb, table: str, **extra: Any) -> dict[str, Any]:
    return {
        "username": "root",
        "password": "",
        "connection": [{"jdbcUrl": db.jdbc, "table": [table]}],
        **extra,
    }


def read_rows(reader: Reader, n: int = 1) -> list[dict[str, Any]]:
    return [r for part in read_splits(reader, n) for r in part]


def job_file(
    tmp_path: Path,
    reader: dict[str, Any],
    writer: dict[str, Any],
    *,
    error_limit: int | None = 0,
    channel: int = 2,
) -> Path:
    setting: dict[str, Any] = {"speed": {"channel": channel}}
    if error_limit is not None:
        setting["errorLimit"] = {"record": error_limit}
    doc = {
        "job": {
            "setting": setting,
            "content": [
                {
                    "reader": {"name": "mysqlreader", "parameter": reader},
                    "writer": {"name": "mysqlwriter", "parameter": writer},
                }
            ],
        }
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(doc))
    return path


def run(path: Path, tmp_path: Path, cyctime: str = "20161115000000", **kw: Any) -> Any:
    job = load_job(path, {}, RunTime.of(cyctime), state=SqliteState(tmp_path / "state.db"), **kw)
    return run_job(job, report_path=tmp_path / "report.json")


# -- connections -------------------------------------------------------------------------------


def test_a_datasource_names_the_database_with_a_secret_by_reference(
    mysql_db: MyDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    mysql_db.execute("CREATE TABLE t (id INT)", "INSERT INTO t VALUES (1), (2)")
    monkeypatch.setenv("TS_TEST_MY_PW", mysql_db.server.password)
    conns = {
        "shop": {
            "kind": "mysql",
            "url": f"mysql://{mysql_db.server.host}:{mysql_db.server.port}/{mysql_db.name}",
            "username": mysql_db.server.user,
            "password": "${env:TS_TEST_MY_PW}",
        }
    }
    reader = Reader({"datasource": "shop", "table": ["t"]}, ctx(connections=conns))
    assert sorted(r["id"] for r in read_rows(reader)) == [1, 2]


def test_a_plain_url_names_the_database(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (id INT)", "INSERT INTO t VALUES (7)")
    assert read_rows(Reader({"url": mysql_db.url, "table": "t"}, ctx())) == [{"id": 7}]


@pytest.mark.parametrize(
    "params, message",
    [
        ({"table": ["t"]}, r"reader\.parameter\.connection: is required: write connection"),
        ({"url": "postgresql://h/db", "table": ["t"]}, r"parameter\.url: .*not a MySQL URL"),
        ({"url": "mysql://h:3306", "table": ["t"]}, r"parameter\.url: .*names no database"),
        (
            {"datasource": "nope", "table": ["t"]},
            r"parameter\.datasource: unknown datasource 'nope'",
        ),
        (
            {"url": "mysql://h/db"},
            r"reader\.parameter\.table: is required \(or querySql\)",
        ),
    ],
)
def test_connection_mistakes_are_named_by_their_key(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Reader(params, ctx())


def test_a_wrong_password_is_fatal_and_names_host_port_not_the_password(
    mysql_db: MyDb, my_user: tuple[str, str]
) -> None:
    user, pw = my_user
    mysql_db.execute("CREATE TABLE t (id INT)")
    wrong = pw + "-wrong"
    reader = Reader(
        {
            "username": user,
            "password": wrong,
            "connection": [{"jdbcUrl": [mysql_db.jdbc], "table": ["t"]}],
        },
        ctx(),
    )
    with pytest.raises(FatalError) as e:
        reader.schema()
    s = mysql_db.server
    assert f"{s.host}:{s.port}" in str(e.value) and "1045" in str(e.value)
    assert wrong not in str(e.value)


def test_user_and_password_in_the_jdbc_urls_query_are_the_login(
    mysql_db: MyDb, my_user: tuple[str, str]
) -> None:
    # Connector/J reads ?user=&password= as the login; both were ignored and the run logged in
    # as root without a password, whatever the URL said (a wrong password too)
    user, pw = my_user
    s = mysql_db.server
    url = f"jdbc:mysql://{s.host}:{s.port}/{mysql_db.name}?user={user}&password={pw}"
    sql = ["SELECT SUBSTRING_INDEX(CURRENT_USER(), '@', 1) AS who"]
    reader = Reader({"connection": [{"jdbcUrl": [url], "querySql": sql}]}, ctx())
    assert read_rows(reader) == [{"who": user}]
    wrong = pw + "-wrong"
    reader = Reader({"connection": [{"jdbcUrl": [url.replace(pw, wrong)], "querySql": sql}]}, ctx())
    with pytest.raises(FatalError) as e:
        read_rows(reader)
    assert "1045" in str(e.value) and wrong not in str(e.value)
    twice = url.replace("mysql://", f"mysql://{user}x@")
    with pytest.raises(ConfigError, match=r"gives the user twice") as c:
        Reader({"connection": [{"jdbcUrl": [twice], "querySql": sql}]}, ctx())
    assert pw not in str(c.value)


def test_a_refused_connection_is_fatal_and_names_host_port() -> None:
    reader = Reader({"url": "mysql://root:pw-not-shown@127.0.0.1:1/db", "table": ["t"]}, ctx())
    with pytest.raises(FatalError, match=r"cannot reach MySQL at 127\.0\.0\.1:1") as e:
        reader.schema()
    assert "pw-not-shown" not in str(e.value)


def test_the_password_never_appears_in_report_dirty_records_or_errors(
    tmp_path: Path, mysql_db: MyDb, my_user: tuple[str, str]
) -> None:
    user, pw = my_user
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(20))",
        "INSERT INTO src VALUES (1, 'ok'), (2, 'much too long')",
        "CREATE TABLE dst (id INT, v VARCHAR(5))",
    )
    host = f"{mysql_db.server.host}:{mysql_db.server.port}"
    url = f"mysql://{user}:{pw}@{host}/{mysql_db.name}"
    path = job_file(
        tmp_path,
        {"url": url, "table": ["src"]},
        {
            "username": user,
            "password": pw,
            "connection": [{"jdbcUrl": f"jdbc:mysql://{host}/{mysql_db.name}", "table": ["dst"]}],
        },
        error_limit=0,
    )
    rep = run(path, tmp_path)
    assert rep.status == "failed" and rep.dirty_records == 1
    texts = [
        (tmp_path / "report.json").read_text(),
        Path(rep.dirty_file).read_text(),
        rep.error or "",
    ]
    bad = job_file(tmp_path, {"url": url, "table": ["nope"]}, {"url": url, "table": "dst"})
    texts.append(run(bad, tmp_path).error or "")
    assert all(pw not in t for t in texts)
    assert "1406" in texts[1] or "1265" in texts[1]


# -- types -------------------------------------------------------------------------------------

TYPES = [
    ("TINYINT", "-128", pa.int8(), -128),
    ("TINYINT UNSIGNED", "255", pa.uint8(), 255),
    ("SMALLINT UNSIGNED", "65535", pa.uint16(), 65535),
    ("MEDIUMINT", "-8388608", pa.int32(), -8388608),
    ("INT UNSIGNED", "4294967295", pa.uint32(), 4294967295),
    ("BIGINT", "-9223372036854775808", pa.int64(), -(2**63)),
    ("BIGINT UNSIGNED", "18446744073709551615", pa.uint64(), 2**64 - 1),
    (
        "DECIMAL(65,30)",
        "'-12345678901234567890123456789012345.123456789012345678901234567890'",
        pa.decimal256(65, 30),
        Decimal("-12345678901234567890123456789012345.123456789012345678901234567890"),
    ),
    ("DECIMAL(12,2) UNSIGNED", "'1234567890.12'", pa.decimal128(12, 2), Decimal("1234567890.12")),
    ("DECIMAL(5,0)", "-99999", pa.decimal128(5, 0), Decimal("-99999")),
    ("DOUBLE", "0.1", pa.float64(), 0.1),
    ("DOUBLE", "-2.2250738585072014e-308", pa.float64(), -2.2250738585072014e-308),
    ("DOUBLE", "1.7976931348623157e308", pa.float64(), 1.7976931348623157e308),
    ("FLOAT", "0.5", pa.float32(), 0.5),
    ("VARCHAR(20)", "'名字 ü 😀\\t\\n\\\\'", pa.string(), "名字 ü 😀\t\n\\"),
    ("MEDIUMTEXT", "REPEAT('x', 70000)", pa.string(), "x" * 70000),
    ("CHAR(3) CHARACTER SET latin1", "'äöü'", pa.string(), "äöü"),
    ("BLOB", "x'00ff0a095c'", pa.binary(), b"\x00\xff\n\t\\"),
    ("LONGBLOB", "REPEAT(x'ab', 17000000)", pa.binary(), b"\xab" * 17000000),
    ("VARBINARY(4)", "x'fb'", pa.binary(), b"\xfb"),
    ("BOOLEAN", "TRUE", pa.bool_(), True),
    ("BIT(1)", "b'1'", pa.bool_(), True),
    (
        "BIT(64)",
        "b'1000000000000000000000000000000000000000000000000000000000000001'",
        pa.uint64(),
        2**63 + 1,
    ),
    ("YEAR", "2155", pa.int16(), 2155),
    ("DATE", "'9999-12-31'", pa.date32(), dt.date(9999, 12, 31)),
    ("DATE", "'0000-00-00'", pa.date32(), None),
    ("TIME", "'23:59:59'", pa.time64("us"), dt.time(23, 59, 59)),
    ("TIME(6)", "'00:00:00.000001'", pa.time64("us"), dt.time(0, 0, 0, 1)),
    (
        "DATETIME(6)",
        "'1000-01-01 00:00:00.000001'",
        pa.timestamp("us"),
        dt.datetime(1000, 1, 1, 0, 0, 0, 1),
    ),
    (
        "DATETIME",
        "'2016-11-14 23:59:59'",
        pa.timestamp("us"),
        dt.datetime(2016, 11, 14, 23, 59, 59),
    ),
    (
        "TIMESTAMP(3) NULL",
        "'2038-01-19 03:14:07.999'",
        pa.timestamp("us", tz="UTC"),
        dt.datetime(2038, 1, 19, 3, 14, 7, 999000, tzinfo=dt.UTC),
    ),
    ("JSON", '\'{"a": [1, "名"]}\'', pa.string(), '{"a": [1, "名"]}'),
    ("ENUM('small','large')", "'large'", pa.string(), "large"),
    ("SET('a','b','c')", "'a,c'", pa.string(), "a,c"),
    ("INT", "NULL", pa.int32(), None),
]


PROTOCOLS = pytest.mark.parametrize("protocol", ["binary", "text"])


@PROTOCOLS
@pytest.mark.parametrize(
    "ddl, literal, arrow, value", TYPES, ids=[f"{t[0]}={t[1][:24]}" for t in TYPES]
)
def test_types_map_to_arrow_without_loss(
    mysql_module_db: MyDb, ddl: str, literal: str, arrow: pa.DataType, value: Any, protocol: str
) -> None:
    db, t = mysql_module_db, f"t_{secrets.token_hex(4)}"
    db.execute(f"CREATE TABLE {t} (id INT, v {ddl})")
    con = db.connect()
    try:
        with con.cursor() as cur:
            cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
            cur.execute(f"INSERT INTO {t} VALUES (1, {literal})")
    finally:
        con.close()
    reader = Reader(rparams(db, t, protocol), ctx())
    assert reader.schema().field("v").type == arrow
    got = read_rows(reader)
    assert got[0]["v"] == value


@PROTOCOLS
def test_mysql_to_mysql_round_trips_every_type(mysql_db: MyDb, protocol: str) -> None:
    kept = [
        t for t in TYPES if "LONGBLOB" not in t[0] and "0000" not in t[1]
    ]  # zero dates read as NULL
    cols = ", ".join(f"c{i} {ddl}" for i, (ddl, *_rest) in enumerate(kept))
    lits = [lit for _ddl, lit, *_rest in kept]
    mysql_db.execute(
        f"CREATE TABLE src (id INT PRIMARY KEY, {cols})",
        "CREATE TABLE dst LIKE src",
        "SET SESSION sql_mode = ''",
        f"INSERT INTO src VALUES (1, {', '.join(lits)})",
        "INSERT INTO src (id) VALUES (2)",
    )
    dirty = copy(
        Reader(rparams(mysql_db, "src", protocol), ctx()),
        Writer(wparams(mysql_db, "dst"), ctx("writer")),
    )
    assert dirty == []
    assert mysql_db.query("SELECT * FROM dst ORDER BY id") == mysql_db.query(
        "SELECT * FROM src ORDER BY id"
    )


@PROTOCOLS
def test_a_time_outside_a_day_is_a_dirty_record_of_the_read(mysql_db: MyDb, protocol: str) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT, v TIME)",
        "INSERT INTO t VALUES (1, '10:00:00'), (2, '-01:00:00'), (3, '838:59:59')",
    )
    reader = Reader(rparams(mysql_db, "t", protocol), ctx())
    chunks = list(reader.read(reader.splits(1)[0]))
    assert [r["id"] for r in chunks[0].batch.to_pylist()] == [1]
    assert [(str(d.row["id"]), "not a time of day" in d.reason) for d in chunks[0].dirty] == [
        ("2", True),
        ("3", True),
    ]


@PROTOCOLS
def test_a_dirty_row_holding_a_year_zero_date_is_reported_not_a_crash(
    mysql_db: MyDb, protocol: str
) -> None:
    mysql_db.execute(
        "SET SESSION sql_mode = ''",
        "CREATE TABLE t (id INT, d DATE, v TIME)",
        "INSERT INTO t VALUES (1, '2020-01-01', '10:00:00'), (2, '0000-01-01', '25:00:00')",
    )
    reader = Reader(rparams(mysql_db, "t", protocol), ctx())
    chunks = list(reader.read(reader.splits(1)[0]))
    assert [r["id"] for r in chunks[0].batch.to_pylist()] == [1]
    (bad,) = chunks[0].dirty
    assert str(bad.row["id"]) == "2" and "not a time of day" in bad.reason
    assert "-01-01" in str(bad.row["d"])


@PROTOCOLS
def test_an_impossible_date_is_a_dirty_record_of_the_read(mysql_db: MyDb, protocol: str) -> None:
    mysql_db.execute(
        "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
        "CREATE TABLE t (id INT, d DATE, ts DATETIME)",
        "INSERT INTO t VALUES (1, '2020-02-29', '2020-02-29 10:00:00'), (2, '2021-02-30', NULL), "
        "(3, NULL, '2021-04-31 00:00:00'), (4, '0000-00-00', '0000-00-00 00:00:00')",
    )
    reader = Reader(rparams(mysql_db, "t", protocol), ctx())
    chunks = list(reader.read(reader.splits(1)[0]))
    assert chunks[0].batch.to_pylist() == [
        {"id": 1, "d": dt.date(2020, 2, 29), "ts": dt.datetime(2020, 2, 29, 10)},
        {"id": 4, "d": None, "ts": None},
    ]
    assert [(str(d.row["id"]), "2021-" in d.reason) for d in chunks[0].dirty] == [
        ("2", True),
        ("3", True),
    ]


# the binary protocol sends DATETIME/TIMESTAMP in 0, 4, 7 or 11 bytes and TIME in 0, 8 or 12, as
# the value needs; each row below makes one of those lengths, beside NULLs, in one batch
WIRE_DATES = [
    # id, DATE, DATETIME(6), TIMESTAMP(6), TIME(6)
    (1, "'2020-01-01'", "'2020-01-01 00:00:00'", "'2020-01-01 00:00:00'", "'00:00:00'"),
    (2, "NULL", "'2020-01-01 10:11:12'", "NULL", "'10:11:12'"),
    (3, "'1970-01-01'", "'2020-01-01 10:11:12.000001'", "'2038-01-19 03:14:07.999999'",
     "'23:59:59.999999'"),
    (4, "'0000-00-00'", "'0000-00-00 00:00:00'", "NULL", "NULL"),
    (5, "'9999-12-31'", "NULL", "'1970-01-01 00:00:01'", "'00:00:00.000001'"),
    (6, "'1000-01-01'", "'1000-01-01 00:00:00.5'", "'1969-12-31 23:59:59'", "NULL"),
    (7, "'2000-02-29'", "'1969-12-31 23:59:59.999999'", "NULL", "'12:00:00.5'"),
]  # fmt: skip
WIRE_DATES_READ = [
    {"id": 1, "d": dt.date(2020, 1, 1), "dt": dt.datetime(2020, 1, 1),
     "ts": dt.datetime(2020, 1, 1, tzinfo=dt.UTC), "t": dt.time(0)},
    {"id": 2, "d": None, "dt": dt.datetime(2020, 1, 1, 10, 11, 12), "ts": None,
     "t": dt.time(10, 11, 12)},
    {"id": 3, "d": dt.date(1970, 1, 1), "dt": dt.datetime(2020, 1, 1, 10, 11, 12, 1),
     "ts": dt.datetime(2038, 1, 19, 3, 14, 7, 999999, tzinfo=dt.UTC),
     "t": dt.time(23, 59, 59, 999999)},
    {"id": 4, "d": None, "dt": None, "ts": None, "t": None},
    {"id": 5, "d": dt.date(9999, 12, 31), "dt": None,
     "ts": dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=dt.UTC), "t": dt.time(0, 0, 0, 1)},
    {"id": 6, "d": dt.date(1000, 1, 1), "dt": dt.datetime(1000, 1, 1, 0, 0, 0, 500000),
     "ts": None, "t": None},
    {"id": 7, "d": dt.date(2000, 2, 29), "dt": dt.datetime(1969, 12, 31, 23, 59, 59, 999999),
     "ts": None, "t": dt.time(12, 0, 0, 500000)},
]  # fmt: skip


@PROTOCOLS
def test_dates_and_times_of_every_wire_length_read_among_nulls(
    mysql_db: MyDb, protocol: str
) -> None:
    rows = ", ".join(f"({', '.join(map(str, r))})" for r in WIRE_DATES)
    mysql_db.execute(
        "SET SESSION sql_mode = '', time_zone = '+00:00'",
        "CREATE TABLE t (id INT, d DATE, dt DATETIME(6), ts TIMESTAMP(6) NULL, t TIME(6))",
        f"INSERT INTO t VALUES {rows}",
    )
    # the TIMESTAMP of 1969 is outside its range: stored as the zero date, read as NULL
    expected = [dict(r, ts=None) if r["id"] == 6 else r for r in WIRE_DATES_READ]
    assert read_rows(Reader(rparams(mysql_db, "t", protocol), ctx())) == expected


@PROTOCOLS
def test_impossible_dates_and_times_outside_a_day_among_good_rows_are_dirty(
    mysql_db: MyDb, protocol: str
) -> None:
    mysql_db.execute(
        "SET SESSION sql_mode = 'ALLOW_INVALID_DATES'",
        "CREATE TABLE t (id INT, d DATE, dt DATETIME(6), t TIME(6))",
        "INSERT INTO t VALUES (1, '2020-02-29', '2020-01-01 10:00:00.5', '-00:00:00'), "
        "(2, '2021-02-30', NULL, '10:00:00'), (3, NULL, '2020-00-10 10:00:00', NULL), "
        "(4, NULL, NULL, '-00:00:01'), (5, '1900-02-29', '2020-01-01', '24:00:00'), "
        "(6, '2020-01-01', '2021-04-31 00:00:00.000001', '838:59:59.5'), "
        "(7, '2020-01-01', '2020-01-01', '-838:59:59'), (8, NULL, NULL, NULL)",
    )
    reader = Reader(rparams(mysql_db, "t", protocol), ctx())
    (chunk,) = list(reader.read(reader.splits(1)[0]))
    assert chunk.batch.to_pylist() == [
        {"id": 1, "d": dt.date(2020, 2, 29), "dt": dt.datetime(2020, 1, 1, 10, 0, 0, 500000),
         "t": dt.time(0)},
        {"id": 8, "d": None, "dt": None, "t": None},
    ]  # fmt: skip
    assert [(str(d.row["id"]), d.reason.split(":")[0]) for d in chunk.dirty] == [
        ("2", "column 'd'"),
        ("3", "column 'dt'"),
        ("4", "column 't'"),
        ("5", "column 'd'"),
        ("6", "column 'dt'"),
        ("7", "column 't'"),
    ]
    values = ["2021-02-30", "2020-00-10", "-00:00:01", "1900-02-29", "2021-04-31", "-838:59:59"]
    assert all(v in d.reason for v, d in zip(values, chunk.dirty, strict=True))
    if protocol == "binary":  # the reasons the binary protocol's decoder gives, exactly
        assert [d.reason for d in chunk.dirty][:3] == [
            "column 'd': '2021-02-30' is not a valid date",
            "column 'dt': '2020-00-10' is not a valid date",
            "column 't': '-00:00:01' is not a time of day (MySQL TIME holds durations); "
            "read it as text with CAST(col AS CHAR) in column",
        ]


@PROTOCOLS
def test_length_encoded_values_of_every_width_read_among_nulls_in_small_batches(
    mysql_db: MyDb, protocol: str
) -> None:
    # lengths of 1, 3 and 4 bytes (up to 250, 251 to 65535, 65536 and more), and NULLs before
    # a number whose first byte reads as the mark of a long length (-1 .. -4: ff .. fc)
    sizes = [0, 1, 250, 251, 252, 65535, 65536, 70000, None]
    rows = [
        (i, None if n is None else "x" * n, None if n is None else bytes([i]) * n, -(i % 4) - 1)
        for i, n in enumerate(sizes * 3, 1)
    ]
    mysql_db.execute("CREATE TABLE t (id INT, s MEDIUMTEXT, b MEDIUMBLOB, n BIGINT)")
    con = mysql_db.connect()
    try:
        with con.cursor() as cur:
            cur.executemany("INSERT INTO t VALUES (%s, %s, %s, %s)", rows)
    finally:
        con.close()
    reader = Reader(rparams(mysql_db, "t", protocol, fetchSize=4), ctx())
    batches = list(reader.read(reader.splits(1)[0]))
    assert [b.num_rows for b in batches] == [4] * 6 + [3]
    got = [r for b in batches for r in b.to_pylist()]
    assert [tuple(r.values()) for r in got] == rows


def test_a_result_abandoned_midway_closes_its_connection(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (id INT)", "INSERT INTO t SELECT seq FROM seq_1_to_300000")
    con = mysql_db.connect()
    rows = wire.stream(con, "SELECT id FROM t", 1000)
    next(rows), next(rows)
    rows.close()  # the rest of the result is still on the wire
    assert not con.open


def test_a_server_without_tls_is_read_without_making_a_tls_context(
    mysql_db: MyDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    (_, have_ssl), *_ = mysql_db.query("SHOW VARIABLES LIKE 'have_ssl'") or [("", "NO")]
    if have_ssl == "YES":
        pytest.skip("the server offers TLS")

    def no_context() -> None:
        raise AssertionError("a TLS context was made")

    monkeypatch.setattr(mysql.conn, "_ssl_context", no_context)
    mysql_db.execute("CREATE TABLE t (id INT)", "INSERT INTO t VALUES (1)")
    assert read_rows(Reader(rparams(mysql_db, "t"), ctx())) == [{"id": 1}]


def test_tinyint1_reads_as_a_number_with_tinyint1isbit_false(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (v TINYINT(1))", "INSERT INTO t VALUES (7)")
    reader = Reader(rparams(mysql_db, "t", tinyInt1isBit=False), ctx())
    assert read_rows(reader) == [{"v": 7}]


def test_reserved_mixed_case_and_unicode_names_split_and_write(mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE `Order Items` (`Key` INT, `select` VARCHAR(5), `名字` TEXT, `a``b` INT)",
        "INSERT INTO `Order Items` VALUES (1, 'x', '甲', 10), (2, 'y', '乙', 20), (NULL, 'z', '丙', 30)",
        "CREATE TABLE `Tgt` LIKE `Order Items`",
    )
    reader = Reader(
        rparams(mysql_db, "Order Items", splitPk="Key", column=["Key", "select", "名字", "a`b"]),
        ctx(),
    )
    copy(reader, Writer(wparams(mysql_db, "Tgt"), ctx("writer")), n=3)
    assert sorted(mysql_db.query("SELECT * FROM `Tgt`"), key=repr) == sorted(
        mysql_db.query("SELECT * FROM `Order Items`"), key=repr
    )


# -- splits --------------------------------------------------------------------------------------


def test_integer_keys_split_by_range_with_nulls_once(mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE t (k BIGINT, id INT)",
        "INSERT INTO t SELECT seq * 3, seq FROM seq_1_to_1000",
        "INSERT INTO t VALUES (NULL, 1001), (NULL, 1002)",
    )
    reader = Reader(rparams(mysql_db, "t", splitPk="k"), ctx())
    parts = read_splits(reader, 5)
    assert len(parts) == 6 and [r["id"] for r in parts[-1]] == [1001, 1002]
    assert sorted(r["id"] for p in parts for r in p) == list(range(1, 1003))


TRICKY = [
    "a",
    "A",
    "á",
    "Á",
    "a ",
    "ä",
    "b",
    "B",
    "",
    " ",
    "ß",
    "ss",
    "😀",
    "🙂",
    "z",
    "Z",
    "ǅ",
    "ǆ",
]


@pytest.mark.parametrize(
    "collation", ["utf8mb4_general_ci", "utf8mb4_unicode_ci", "utf8mb4_bin", "latin1_swedish_ci"]
)
def test_text_keys_split_by_quantiles_read_each_row_once(mysql_db: MyDb, collation: str) -> None:
    charset = collation.split("_")[0]
    keys = [
        k
        for k in TRICKY
        if charset == "utf8mb4" or k.encode("latin1", "ignore").decode("latin1") == k
    ]
    mysql_db.execute(
        f"CREATE TABLE t (id INT PRIMARY KEY, k VARCHAR(10) CHARACTER SET {charset} "
        f"COLLATE {collation}, KEY (k))"
    )
    con = mysql_db.connect()
    try:
        with con.cursor() as cur:
            cur.executemany(
                "INSERT INTO t VALUES (%s, %s)",
                [(i, keys[i % len(keys)] if i % 17 else None) for i in range(600)],
            )
    finally:
        con.close()
    reader = Reader(rparams(mysql_db, "t", splitPk="k"), ctx())
    parts = read_splits(reader, 7)
    assert len(parts) > 3
    assert sorted(r["id"] for p in parts for r in p) == list(range(600))
    assert all(r["k"] is None for r in parts[-1])


def test_date_keys_split_by_quantiles(mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT, d DATETIME(6))",
        "INSERT INTO t SELECT seq, TIMESTAMP'2020-01-01 00:00:00' + INTERVAL (seq % 37) HOUR "
        "+ INTERVAL seq MICROSECOND FROM seq_1_to_500",
    )
    parts = read_splits(Reader(rparams(mysql_db, "t", splitPk="d"), ctx()), 4)
    assert len(parts) == 4
    assert sorted(r["id"] for p in parts for r in p) == list(range(1, 501))


def test_an_enum_split_pk_is_refused_with_the_types_that_work(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (k ENUM('b', 'a'))")
    with pytest.raises(ConfigError, match=r"parameter\.splitPk: column 'k' of table t is enum"):
        Reader(rparams(mysql_db, "t", splitPk="k"), ctx()).splits(2)


# -- snapshot ----------------------------------------------------------------------------------


@pytest.mark.parametrize("snapshot", [True, False])
def test_snapshot_makes_every_split_read_one_state(mysql_db: MyDb, snapshot: bool) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t SELECT seq FROM seq_1_to_100"
    )
    reader = Reader(rparams(mysql_db, "t", splitPk="id", snapshot=snapshot), ctx())
    try:
        splits = reader.splits(4)
        writer = threading.Thread(
            target=mysql_db.execute,
            args=("INSERT INTO t SELECT seq FROM seq_101_to_200", "DELETE FROM t WHERE id <= 10"),
        )
        writer.start()
        writer.join(10)
        assert not writer.is_alive()
        got = [r["id"] for s in splits for b in reader.read(s) for r in b.to_pylist()]
    finally:
        reader.close()
    if snapshot:
        assert sorted(got) == list(range(1, 101))
    else:
        assert sorted(got) == list(range(11, 101))  # the last split's range ends at 100


def test_snapshot_covers_query_sql_splits_too(mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t SELECT seq FROM seq_1_to_10"
    )
    params = rparams(mysql_db, snapshot=True)
    params["connection"][0]["querySql"] = [
        "SELECT COUNT(*) AS n FROM t",
        "SELECT MAX(id) AS n FROM t",
    ]
    reader = Reader(params, ctx())
    try:
        splits = reader.splits(2)
        mysql_db.execute("INSERT INTO t SELECT seq FROM seq_11_to_20")
        got = [r["n"] for s in splits for b in reader.read(s) for r in b.to_pylist()]
    finally:
        reader.close()
    assert got == [10, 10]


# -- where, columns, queries, session ----------------------------------------------------------


def test_session_statements_run_on_every_connection(mysql_db: MyDb) -> None:
    params = rparams(mysql_db, session=["SET SESSION group_concat_max_len = 4321"])
    params["connection"][0]["querySql"] = ["SELECT @@SESSION.group_concat_max_len AS v"]
    assert read_rows(Reader(params, ctx())) == [{"v": 4321}]


def test_a_query_that_cannot_be_a_derived_table_is_still_typed(mysql_db: MyDb) -> None:
    params = rparams(mysql_db)
    params["connection"][0]["querySql"] = ["SELECT 1 AS a, 'x' AS a"]
    reader = Reader(params, ctx())
    assert reader.schema() == pa.schema([("a", pa.int32()), ("a", pa.string())])
    batches = [b for s in reader.splits(1) for b in reader.read(s)]
    assert [(b.column(0).to_pylist(), b.column(1).to_pylist()) for b in batches] == [([1], ["x"])]


@PROTOCOLS
def test_an_error_in_the_middle_of_a_result_keeps_the_server_number(
    mysql_db: MyDb, protocol: str
) -> None:
    mysql_db.execute("CREATE TABLE t (id INT)", "INSERT INTO t SELECT seq FROM seq_1_to_3")
    params = rparams(mysql_db, protocol=protocol)
    params["connection"][0]["querySql"] = ["SELECT id, (SELECT id FROM t WHERE id > 1) AS x FROM t"]
    reader = Reader(params, ctx())
    with pytest.raises(FatalError, match=r"\[1242\] Subquery returns more than 1 row"):
        [b for s in reader.splits(1) for b in reader.read(s)]


def test_fetch_size_bounds_the_rows_of_a_batch(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (id INT)", "INSERT INTO t SELECT seq FROM seq_1_to_1000")
    reader = Reader(rparams(mysql_db, "t", fetchSize=128), ctx())
    sizes = [b.num_rows for b in reader.read(reader.splits(1)[0])]
    assert max(sizes) == 128 and sum(sizes) == 1000


# -- writer ------------------------------------------------------------------------------------


def _batch(ids: list[int | None], vs: list[str | None]) -> pa.RecordBatch:
    return pa.record_batch(
        [pa.array(ids, pa.int64()), pa.array(vs, pa.string())], names=["id", "v"]
    )


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("insert", [(1, "a", "k"), (2, "b", "k"), (3, "c", None), (4, "d", None)]),
        ("truncate", [(3, "c", None), (4, "d", None)]),
        ("replace", [(1, "a", "k"), (2, "B", None), (3, "c", None), (4, "d", None)]),
        ("update", [(1, "a", "k"), (2, "B", "k"), (3, "c", None), (4, "d", None)]),
    ],
)
def test_write_modes(mysql_db: MyDb, mode: str, expected: list[tuple[Any, ...]]) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(5), w VARCHAR(5), UNIQUE KEY (v))",
        "INSERT INTO t VALUES (1, 'a', 'k'), (2, 'b', 'k')",
    )
    batch = (
        _batch([3, 4], ["c", "d"])
        if mode in ("insert", "truncate")
        else _batch([2, 3, 4], ["B", "c", "d"])
    )
    w = Writer(wparams(mysql_db, "t", writeMode=mode), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    sink.write(batch)
    w.commit([sink.close()])
    assert mysql_db.query("SELECT * FROM t ORDER BY id") == expected


def test_text_with_a_fraction_for_an_integer_column_is_dirty_not_rounded(mysql_db: MyDb) -> None:
    # LOAD DATA stored the text '1.5' in an INT column as 2, strict mode or not
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, n INT)")
    batch = pa.record_batch(
        [pa.array([1, 2, 3]), pa.array(["12", "1.5", "-3.0"])], names=["id", "n"]
    )
    w = Writer(wparams(mysql_db, "t"), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert [(off, why.split(" as ")[0]) for off, why in bad] == [
        (1, "column n: value '1.5' is not an integer,")
    ]
    assert bad[0][1].endswith("(LOAD DATA would round it)")
    assert mysql_db.query("SELECT id, n FROM t ORDER BY id") == [(1, 12), (3, -3)]


@pytest.mark.parametrize("mode", ["update", "replace", "merge"])
@pytest.mark.parametrize("key", [(), ("id",)], ids=["table-key", "primaryKey"])
def test_an_upsert_clashing_on_another_unique_key_is_dirty_not_written_to_that_row(
    mysql_db: MyDb, mode: str, key: tuple[str, ...]
) -> None:
    # ON DUPLICATE KEY UPDATE fires on any unique key: row 2 carrying row 1's email updated
    # row 1 (v 'old' became 'new') and the run succeeded with id 2 nowhere
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, email VARCHAR(20) UNIQUE, v TEXT)",
        "INSERT INTO t VALUES (1, 'a@x', 'old'), (3, 'c@x', 'old3')",
    )
    batch = pa.record_batch(
        [pa.array([2, 3]), pa.array(["a@x", "c@x"]), pa.array(["new", "new3"])],
        names=["id", "email", "v"],
    )
    extra = {"primaryKey": list(key)} if key else {}
    w = Writer(wparams(mysql_db, "t", writeMode=mode, **extra), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, DirtyRecordError]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e)))
    w.commit([sink.close()])
    assert [(off, e.code) for off, e in bad] == [(0, "1062")]
    assert mysql_db.query("SELECT * FROM t ORDER BY id") == [(1, "a@x", "old"), (3, "c@x", "new3")]


@pytest.mark.parametrize(
    "mode, expected",
    [
        ("update", [("z", 0), ("a", 2), ("X", 4), ("y ", 6)]),
        ("replace", [("z", 0), ("A", 2), ("X", 4), ("y ", 6)]),
        ("merge", [("z", 0), ("A", 2), ("X", 4), ("y ", 6)]),
        ("sync", [("A", 2), ("X", 4), ("y ", 6)]),
    ],
)
@pytest.mark.parametrize(
    "ddl, key",
    [
        ("k VARCHAR(10) PRIMARY KEY, v INT, w INT UNIQUE", []),
        ("k VARCHAR(10), v INT", ["k"]),
        ("k TEXT, v INT", ["k"]),
    ],
    ids=["primary-key-and-another-unique-key", "varchar-key-no-index", "text-key-no-index"],
)
def test_keys_equal_in_the_columns_collation_keep_the_last_row_of_a_batch(
    mysql_db: MyDb, mode: str, expected: list[tuple[Any, ...]], ddl: str, key: list[str]
) -> None:
    # 'a'/'A' (a _ci collation) and 'y'/'y ' (PAD SPACE) are one key to the table but two to
    # Arrow: the staged UPDATE ... JOIN took the first of them (v 1, not 2) and the staged
    # DELETE + INSERT of a table without a unique key on k wrote both
    mysql_db.execute(
        f"CREATE TABLE t ({ddl}) COLLATE utf8mb4_general_ci",
        "INSERT INTO t (k, v) VALUES ('a', 0), ('z', 0)",
    )
    batch = pa.record_batch(
        [pa.array(["a", "A", "x", "X", "y", "y "]), pa.array([1, 2, 3, 4, 5, 6])],
        names=["k", "v"],
    )
    extra = {"primaryKey": key} if key else {}
    w = Writer(wparams(mysql_db, "t", writeMode=mode, **extra), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, DirtyRecordError]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e)))
    w.commit([sink.close()])
    assert bad == []
    assert mysql_db.query("SELECT k, v FROM t ORDER BY v") == expected


@pytest.mark.parametrize("other_unique", ["", ", w INT UNIQUE"], ids=["one-key", "two-keys"])
def test_a_delete_marker_on_keys_equal_in_the_collation_follows_row_order(
    mysql_db: MyDb, other_unique: str
) -> None:
    # the deletes were split from the upserts byte for byte and ran first: 'a' then a deleting
    # 'A' left 'a' in the table
    mysql_db.execute(
        f"CREATE TABLE t (k VARCHAR(10) PRIMARY KEY, v INT, del INT{other_unique}) "
        "COLLATE utf8mb4_general_ci",
        "INSERT INTO t (k, v, del) VALUES ('a', 0, 0), ('b', 0, 0), ('d', 0, 0)",
    )
    batch = pa.record_batch(
        [
            pa.array(["a", "A", "B", "b", "c", "d "]),
            pa.array([1, 2, 3, 4, 5, 6]),
            pa.array([0, 1, 1, 0, 0, 1]),
        ],
        names=["k", "v", "del"],
    )
    params = wparams(mysql_db, "t", writeMode="merge", deleteMarker={"column": "del", "value": 1})
    w = Writer(params, ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, DirtyRecordError]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e)))
    w.commit([sink.close()])
    assert bad == []
    assert mysql_db.query("SELECT k, v FROM t ORDER BY k") == [("b", 4), ("c", 5)]


def test_year_zero_round_trips_and_two_digit_years_are_dirty(mysql_db: MyDb) -> None:
    # LOAD DATA reads text, where '0' is the year 2000: a MariaDB -> MariaDB copy turned YEAR
    # 0000 into 2000, and 99 was written as 1999
    mysql_db.execute(
        "CREATE TABLE src (id INT PRIMARY KEY, y YEAR)",
        "INSERT INTO src VALUES (1, 0), (2, 1901), (3, 2155), (4, NULL)",
        "CREATE TABLE t (id INT PRIMARY KEY, y YEAR)",
    )
    assert (
        copy(Reader(rparams(mysql_db, "src"), ctx()), Writer(wparams(mysql_db, "t"), ctx("writer")))
        == []
    )
    assert mysql_db.query("SELECT id, y + 0 FROM t ORDER BY id") == [
        (1, 0),
        (2, 1901),
        (3, 2155),
        (4, None),
    ]
    batch = pa.record_batch(
        [pa.array([5, 6, 7]), pa.array([99, 2020, 1], pa.int16())], names=["id", "y"]
    )
    w = Writer(wparams(mysql_db, "t"), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            0,
            "column y: value 99 is not a year year(4) holds (1901-2155, or 0); MySQL would read "
            "it as a two-digit year",
        ),
        (
            2,
            "column y: value 1 is not a year year(4) holds (1901-2155, or 0); MySQL would read "
            "it as a two-digit year",
        ),
    ]
    assert mysql_db.query("SELECT id, y + 0 FROM t WHERE id > 4") == [(6, 2020)]


@pytest.mark.parametrize("mode", ["insert", "replace"])
def test_text_of_zeros_and_ones_for_a_bit_column_is_dirty_not_read_as_a_number(
    mysql_db: MyDb, mode: str
) -> None:
    # a PostgreSQL bit(5) arrives as the text '00010': LOAD DATA's CAST(... AS UNSIGNED) stored
    # it as ten, b'01010', and the run succeeded
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, b BIT(5))")
    batch = pa.record_batch(
        [pa.array([1, 2, 3, 4, 5, 6]), pa.array(["1", "00010", "7", "0", None, " 11 "])],
        names=["id", "b"],
    )
    w = Writer(wparams(mysql_db, "t", writeMode=mode), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    assert bad == [
        (
            off,
            f"column b: text {v!r} for bit(5) reads as the number {int(v)} or as the bits "
            f"{v.strip()}; write a number (from PostgreSQL's bit(n), select it as an integer: "
            "col::integer)",
        )
        for off, v in [(1, "00010"), (5, " 11 ")]
    ]
    assert mysql_db.query("SELECT id, b + 0 FROM t ORDER BY id") == [
        (1, 1),
        (3, 7),
        (4, 0),
        (5, None),
    ]


@pytest.mark.parametrize("mode", ["insert", "replace", "update", "merge"])
def test_escapes_are_read_back_under_no_backslash_escapes(mysql_db: MyDb, mode: str) -> None:
    # with NO_BACKSLASH_ESCAPES in the session (or the server's sql_mode), LOAD DATA's default
    # escape is none: a tab was stored as the two characters \t and NULL as the text \N
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    values = ["tab\there", "nl\nhere", "bs\\here", "\\N", None, "end\\", "q'\""]
    batch = pa.record_batch(
        [pa.array(range(1, len(values) + 1)), pa.array(values, pa.string())], names=["id", "v"]
    )
    no_escapes = "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES')"
    w = Writer(wparams(mysql_db, "t", writeMode=mode, session=[no_escapes]), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    sink.write(batch)
    w.commit([sink.close()])
    assert mysql_db.query("SELECT id, v FROM t ORDER BY id") == list(enumerate(values, start=1))


def test_nanosecond_durations_are_cut_to_microseconds_as_timestamps_are(mysql_db: MyDb) -> None:
    # the TIME text came from a float's total_seconds(): 1500 ns was written as 00:00:00.000002
    # and 123456789 ns as .123457 (rounded), where a nanosecond timestamp is cut
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, d TIME(6), s TIME)")
    ns = [1500, 2000, -1000, 123456789, 30 * 3600 * 10**9 + 1000]
    batch = pa.record_batch(
        [
            pa.array(range(len(ns))),
            pa.array(ns, pa.duration("ns")),
            pa.array([1, None, None, None, 2_500_000], pa.duration("us")),
        ],
        names=["id", "d", "s"],
    )
    assert _isolated(mysql_db, batch) == [
        (
            off,
            f"column s: value {v!r} has more fractional-second digits than time keeps (0); "
            "MySQL would cut them",
        )
        for off, v in [(0, "00:00:00.000001"), (4, "00:00:02.500000")]
    ]
    assert mysql_db.query("SELECT id, CAST(d AS CHAR) FROM t ORDER BY id") == [
        (1, "00:00:00.000002"),
        (2, "-00:00:00.000001"),
        (3, "00:00:00.123456"),
    ]


def test_dirty_rows_keep_the_server_error_number(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(3) NOT NULL, n TINYINT)")
    batch = pa.record_batch(
        [
            pa.array([1, 2, 3, 4, 1, 6]),
            pa.array(["ok", "toolong", None, "ok", "ok", "ok"]),
            pa.array(["1", "2", "3", "x", "5", "300"]),
        ],
        names=["id", "v", "n"],
    )
    w = Writer(wparams(mysql_db, "t"), ctx("writer"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, DirtyRecordError]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e)))
    w.commit([sink.close()])
    assert [(off, e.code) for off, e in bad] == [
        (1, "1265"),
        (2, "1263"),
        (3, "1366"),
        (4, "1062"),
        (5, "1264"),
    ]
    assert mysql_db.query("SELECT id FROM t") == [(1,)]


def test_a_batch_larger_than_batch_size_is_loaded_in_parts(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
    data = pa.table(
        {"id": pa.array(range(1000), pa.int64()), "v": [f"v{i}\t\n\\" for i in range(1000)]}
    )
    write(MyAdapter(Path("."), mysql_db), wparams(mysql_db, "t", batchSize=7), data)
    assert mysql_db.query("SELECT COUNT(*), SUM(v = CONCAT('v', id, '\\t\\n\\\\')) FROM t") == [
        (1000, 1000)
    ]


def test_timestamps_keep_their_instant_and_datetimes_the_job_wall_clock(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (a TIMESTAMP(6) NULL, b DATETIME(6), c TIMESTAMP NULL)")
    instant = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    batch = pa.record_batch(
        [
            pa.array([instant], pa.timestamp("us", "UTC")),
            pa.array([instant], pa.timestamp("us", "UTC")),
            pa.array([dt.datetime(2024, 6, 1, 14, 0)], pa.timestamp("s")),
        ],
        names=["a", "b", "c"],
    )
    w = Writer(wparams(mysql_db, "t"), ctx("writer", timezone="Europe/Berlin"))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    sink.write(batch)
    w.commit([sink.close()])
    con = mysql_db.connect()
    with con.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT * FROM t")
        assert cur.fetchall() == (
            (dt.datetime(2024, 6, 1, 12), dt.datetime(2024, 6, 1, 14), dt.datetime(2024, 6, 1, 12)),
        )
    con.close()


def test_a_lock_wait_timeout_is_retriable(mysql_db: MyDb) -> None:
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    holder = mysql_db.connect()
    try:
        holder.begin()
        with holder.cursor() as cur:
            cur.execute("SELECT * FROM t FOR UPDATE")
        session = ["SET SESSION innodb_lock_wait_timeout = 1"]
        w = Writer(wparams(mysql_db, "t", writeMode="truncate", session=session), ctx("writer"))
        with pytest.raises(RetriableError, match=r"\[1205\]"):
            w.prepare(pa.schema([("id", pa.int64())]))
    finally:
        holder.rollback()
        holder.close()
    assert mysql_db.query("SELECT id FROM t") == [(1,)]


def test_a_failed_job_leaves_the_target_as_it_was(tmp_path: Path, mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(20))",
        "INSERT INTO src SELECT seq, 'fine' FROM seq_1_to_5000",
        "UPDATE src SET v = 'far too long for dst' WHERE id = 4999",
        "CREATE TABLE dst (id INT, v VARCHAR(5))",
        "INSERT INTO dst VALUES (0, 'old')",
    )
    path = job_file(
        tmp_path,
        rparams(mysql_db, "src", splitPk="id"),
        wparams(mysql_db, "dst", writeMode="truncate", preSql=["DELETE FROM @table"]),
    )
    rep = run(path, tmp_path)
    assert rep.status == "failed" and "error limit" in rep.error
    assert mysql_db.query("SELECT * FROM dst") == [(0, "old")]


def test_mysql_to_mysql_takes_the_arrow_path_and_the_report_says_so(
    tmp_path: Path, mysql_db: MyDb
) -> None:
    """No direct path between MySQL stores (the Arrow path is as fast as the client pipe:
    docs/connectors/mysql.md): the report says arrow and why."""
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(20))",
        "INSERT INTO src SELECT seq, 'v' FROM seq_1_to_10",
        "CREATE TABLE dst (id INT, v VARCHAR(20))",
    )
    rep = run(job_file(tmp_path, rparams(mysql_db, "src"), wparams(mysql_db, "dst")), tmp_path)
    assert rep.status == "succeeded", rep.error
    assert [(p.path, p.why) for p in rep.paths] == [
        ("arrow", "the mysqlreader reader has no raw form")
    ]
    assert "path: arrow" in rep.summary()


@pytest.mark.parametrize("protocol", ["binary", "text"])
def test_reading_to_parquet_and_to_mysql_never_imports_pandas(
    tmp_path: Path, mysql_db: MyDb, protocol: str
) -> None:
    # pyarrow imports pandas (a quarter of a second) at the first pa.array or pa.scalar: the
    # decoders and the LOAD DATA encoder build their constants from buffers instead
    from tests.integration._cdc import run_imports_pandas

    cols = (
        "id BIGINT PRIMARY KEY, s VARCHAR(20), v DECIMAL(12, 2), f DOUBLE, b TINYINT(1), "
        "d DATE, at DATETIME(6), ts TIMESTAMP(3) NULL, t TIME, y YEAR, bin VARBINARY(8)"
    )
    mysql_db.execute(
        f"CREATE TABLE src ({cols})",
        f"CREATE TABLE dst ({cols})",
        "INSERT INTO src SELECT seq, CONCAT('a\tb', seq), seq / 4, seq * 0.37, seq % 2, "
        "DATE'2024-01-01' + INTERVAL seq DAY, TIMESTAMP'2024-01-01 00:00:00.5' + INTERVAL seq "
        "SECOND, TIMESTAMP'2024-01-01 00:00:00.25' + INTERVAL seq MINUTE, SEC_TO_TIME(seq), "
        "2000 + seq % 50, UNHEX('00FF09') FROM seq_1_to_300",
        "INSERT INTO src VALUES (0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    reader = {"name": "mysqlreader", "parameter": rparams(mysql_db, "src", protocol, splitPk="id")}
    to_mysql = {"name": "mysqlwriter", "parameter": wparams(mysql_db, "dst")}
    to_parquet = {
        "name": "txtfilewriter",
        "parameter": {"path": str(tmp_path / "pq"), "fileName": "t", "fileFormat": "parquet"},
    }
    for i, writer in enumerate((to_mysql, to_parquet)):
        job = tmp_path / f"job{i}.json"
        content = [{"reader": reader, "writer": writer}]
        job.write_text(
            json.dumps({"job": {"setting": {"speed": {"channel": 2}}, "content": content}})
        )
        assert not run_imports_pandas(job, tmp_path)
    assert mysql_db.query("SELECT * FROM dst ORDER BY id") == mysql_db.query(
        "SELECT * FROM src ORDER BY id"
    )


# -- incremental -------------------------------------------------------------------------------


def test_incremental_cursor_is_saved_only_when_the_job_commits(
    tmp_path: Path, mysql_db: MyDb
) -> None:
    mysql_db.execute(
        "CREATE TABLE oplog (optime DATETIME, uname VARCHAR(50))",
        "INSERT INTO oplog VALUES ('2016-11-11 00:00:00', 'LiLei'), ('2016-11-12 00:00:00', 'hanmm')",
        "CREATE TABLE ods (optime DATETIME, uname VARCHAR(5))",
    )
    reader = rparams(mysql_db, "oplog", incremental={"column": "optime"})
    path = job_file(tmp_path, reader, wparams(mysql_db, "ods"))
    assert run(path, tmp_path).records_written == 2
    mysql_db.execute(
        "INSERT INTO oplog VALUES ('2016-11-14 09:00:00', 'Jim'), "
        "('2016-11-14 10:00:00', 'Katherine')"
    )  # too long for ods: the job fails
    assert run(path, tmp_path, cyctime="20161116000000").status == "failed"
    mysql_db.execute("UPDATE oplog SET uname = 'Kate' WHERE uname = 'Katherine'")
    rep = run(path, tmp_path, cyctime="20161116000000")  # the retry of the failed instance
    assert (rep.status, rep.records_written) == ("succeeded", 2)
    assert run(path, tmp_path, cyctime="20161117000000").records_written == 0
    assert [r[0] for r in mysql_db.query("SELECT uname FROM ods ORDER BY optime")] == [
        "LiLei",
        "hanmm",
        "Jim",
        "Kate",
    ]


@pytest.mark.parametrize("split", [False, True])
def test_an_incremental_text_cursor_reads_each_row_once_whatever_the_collation(
    tmp_path: Path, mysql_db: MyDb, split: bool
) -> None:
    # utf8mb4_general_ci puts 'B' after 'a'; the saved position, the largest value Arrow read,
    # was 'a', and every run read 'B' again
    mysql_db.execute(
        "CREATE TABLE oplog (id INT PRIMARY KEY, k VARCHAR(10)) COLLATE utf8mb4_general_ci",
        "INSERT INTO oplog VALUES (1, 'a'), (2, 'B')",
        "CREATE TABLE ods (id INT, k VARCHAR(10))",
    )
    extra: dict[str, Any] = {"splitPk": "id"} if split else {}
    reader = rparams(mysql_db, "oplog", incremental={"column": "k"}, **extra)
    path = job_file(tmp_path, reader, wparams(mysql_db, "ods"))
    if split:
        doc = json.loads(path.read_text())
        doc["job"]["setting"]["speed"] = {"channel": 2}
        path.write_text(json.dumps(doc))
    assert run(path, tmp_path).status == "succeeded"
    mysql_db.execute("INSERT INTO oplog VALUES (3, 'b')")
    assert run(path, tmp_path).status == "succeeded"
    assert run(path, tmp_path).status == "succeeded"
    assert [r[0] for r in mysql_db.query("SELECT id FROM ods ORDER BY id")] == [1, 2, 3]


def test_incremental_bounds_of_a_timestamp_column_are_instants_of_the_jobs_zone(
    tmp_path: Path, mysql_db: MyDb
) -> None:
    # TIMESTAMP holds instants; the session compares in UTC, the job lives in Shanghai (+08:00)
    mysql_db.execute(
        "SET time_zone = '+00:00'",
        "CREATE TABLE oplog (id INT, ts TIMESTAMP NULL)",
        "INSERT INTO oplog VALUES (1, '2025-12-30 23:00:00'), (2, '2025-12-31 05:00:00'), "
        "(3, '2025-12-31 23:00:00'), (4, '2026-01-01 03:00:00'), (5, '2026-01-01 09:00:00')",
        "CREATE TABLE ods (id INT, ts TIMESTAMP NULL)",
    )
    # start 08:00 Shanghai = 00:00 UTC on the 31st; cyctime 08:00 Shanghai = 00:00 UTC on the 1st
    reader = rparams(
        mysql_db, "oplog", incremental={"column": "ts", "start": "2025-12-31 08:00:00"}
    )
    path = job_file(tmp_path, reader, wparams(mysql_db, "ods"))
    doc = json.loads(path.read_text())
    doc["job"]["setting"]["timezone"] = "Asia/Shanghai"
    path.write_text(json.dumps(doc))

    def ids() -> list[int]:
        return [r[0] for r in mysql_db.query("SELECT id FROM ods ORDER BY id")]

    assert run(path, tmp_path, cyctime="20260101080000").status == "succeeded"
    assert ids() == [2, 3]
    assert run(path, tmp_path, cyctime="20260102080000").records_written == 2
    assert ids() == [2, 3, 4, 5]


def test_incremental_start_written_as_a_short_date_lets_the_cursor_advance(
    tmp_path: Path, mysql_db: MyDb
) -> None:
    # DataWorks users write '2016-11-5'; the cursor saved after the first run must replace it,
    # else every run reads again everything since the start (duplicates in an appended target)
    mysql_db.execute(
        "CREATE TABLE oplog (optime DATETIME, uname VARCHAR(50))",
        "INSERT INTO oplog VALUES ('2016-10-31 12:00:00', 'Old'), "
        "('2016-11-11 00:00:00', 'LiLei'), ('2016-11-12 00:00:00', 'hanmm')",
        "CREATE TABLE ods (optime DATETIME, uname VARCHAR(50))",
    )
    reader = rparams(mysql_db, "oplog", incremental={"column": "optime", "start": "2016-11-5"})
    path = job_file(tmp_path, reader, wparams(mysql_db, "ods"))
    assert run(path, tmp_path).records_written == 2
    mysql_db.execute("INSERT INTO oplog VALUES ('2016-11-14 09:00:00', 'Jim')")
    rep = run(path, tmp_path, cyctime="20161116000000")
    assert (rep.status, rep.records_written) == ("succeeded", 1)
    assert [r[0] for r in mysql_db.query("SELECT uname FROM ods ORDER BY optime")] == [
        "LiLei",
        "hanmm",
        "Jim",
    ]


def test_incremental_short_date_bounds_of_a_timestamp_column_are_of_the_jobs_zone(
    tmp_path: Path, mysql_db: MyDb
) -> None:
    mysql_db.execute(
        "SET time_zone = '+00:00'",
        "CREATE TABLE oplog (id INT, ts TIMESTAMP NULL)",
        "INSERT INTO oplog VALUES (1, '2025-12-30 23:00:00'), (2, '2025-12-31 05:00:00')",
        "CREATE TABLE ods (id INT, ts TIMESTAMP NULL)",
    )
    # 2025-12-31 00:00 Shanghai is 2025-12-30 16:00 UTC: both rows are after it
    reader = rparams(mysql_db, "oplog", incremental={"column": "ts", "start": "2025-12-31 0:00"})
    path = job_file(tmp_path, reader, wparams(mysql_db, "ods"))
    doc = json.loads(path.read_text())
    doc["job"]["setting"]["timezone"] = "Asia/Shanghai"
    path.write_text(json.dumps(doc))
    assert run(path, tmp_path, cyctime="20260101080000").status == "succeeded"
    assert [r[0] for r in mysql_db.query("SELECT id FROM ods ORDER BY id")] == [1, 2]


def test_incremental_window_includes_its_start_and_excludes_its_end(
    tmp_path: Path, mysql_db: MyDb
) -> None:
    # seed 001 stamps rows with current_date: every row of a day is at its midnight. The
    # window of bizdate 2016-11-14 is [start, 2016-11-15 00:00): the rows at the start are
    # read, and a row stamped at the 15th's midnight belongs to the next window, whenever it
    # arrives (read in this one, it moved the cursor there and the later ones were never read)
    mysql_db.execute(
        "CREATE TABLE oplog (optime DATETIME, uname VARCHAR(50))",
        "INSERT INTO oplog VALUES ('2016-11-13 00:00:00', 'LiLei'), "
        "('2016-11-14 00:00:00', 'Jim'), ('2016-11-14 00:00:00', 'Kate'), "
        "('2016-11-15 00:00:00', 'Early')",  # inserted on the 15th before the run
        "CREATE TABLE ods (optime DATETIME, uname VARCHAR(50))",
    )
    reader = rparams(
        mysql_db, "oplog", incremental={"column": "optime", "start": "2016-11-14 00:00:00"}
    )
    path = job_file(tmp_path, reader, wparams(mysql_db, "ods"))
    assert run(path, tmp_path, cyctime="20161115000000").status == "succeeded"

    def names() -> list[str]:
        return sorted(r[0] for r in mysql_db.query("SELECT uname FROM ods"))

    assert names() == ["Jim", "Kate"]
    mysql_db.execute("INSERT INTO oplog VALUES ('2016-11-15 00:00:00', 'Late')")
    assert run(path, tmp_path, cyctime="20161116000000").records_written == 2
    assert names() == ["Early", "Jim", "Kate", "Late"]


def test_incremental_on_a_date_column_reads_a_day_once_it_is_over(
    tmp_path: Path, mysql_db: MyDb
) -> None:
    # a daily run at 00:30 read the rows of the day just begun; its cursor then skipped the
    # rest of that day's rows for good
    mysql_db.execute(
        "CREATE TABLE oplog (d DATE, uname VARCHAR(50))",
        "INSERT INTO oplog VALUES ('2016-11-14', 'Jim'), ('2016-11-15', 'Early')",
        "CREATE TABLE ods (d DATE, uname VARCHAR(50))",
    )
    reader = rparams(mysql_db, "oplog", incremental={"column": "d"})
    path = job_file(tmp_path, reader, wparams(mysql_db, "ods"))
    assert run(path, tmp_path, cyctime="20161115003000").records_written == 1
    mysql_db.execute("INSERT INTO oplog VALUES ('2016-11-15', 'Late')")
    assert run(path, tmp_path, cyctime="20161116003000").records_written == 2
    assert sorted(r[0] for r in mysql_db.query("SELECT uname FROM ods")) == [
        "Early",
        "Jim",
        "Late",
    ]


def test_seed_001_oplog_where_reads_the_business_day(tmp_path: Path, mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE oplog (optime DATETIME, uname VARCHAR(50), action VARCHAR(50), "
        "status VARCHAR(10))",
        "INSERT INTO oplog VALUES (str_to_date('2016-11-11','%Y-%m-%d'),'LiLei','SELECT','SUCCESS')",
        "INSERT INTO oplog VALUES ('2016-11-14 08:00:00','Jim','Update','success')",
        "INSERT INTO oplog VALUES ('2016-11-14 09:00:00','Kate','Delete','Failed')",
        "CREATE TABLE ods_oplog LIKE oplog",
    )
    path = job_file(
        tmp_path,
        rparams(
            mysql_db,
            "oplog",
            column=["optime", "uname", "action", "status"],
            where="optime >= '${yyyy-mm-dd}'",
        ),
        wparams(mysql_db, "ods_oplog"),
    )
    assert run(path, tmp_path, cyctime="20161115000000").records_written == 2
    assert [r[0] for r in mysql_db.query("SELECT uname FROM ods_oplog ORDER BY optime")] == [
        "Jim",
        "Kate",
    ]


# -- command line --------------------------------------------------------------------------------


def test_cli_exits_1_when_the_error_limit_is_exceeded(tmp_path: Path, mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(20))",
        "INSERT INTO src VALUES (1, 'ok'), (2, 'too long here'), (3, 'also too long')",
        "CREATE TABLE dst (id INT, v VARCHAR(5))",
    )
    path = job_file(tmp_path, rparams(mysql_db, "src"), wparams(mysql_db, "dst"), error_limit=1)
    exe = Path(sys.executable).with_name("tidesync")
    env = {**os.environ, "NO_COLOR": "1"}
    out = subprocess.run(
        [str(exe), "run", str(path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 1, out.stderr
    assert "error limit" in out.stdout + out.stderr
    assert mysql_db.query("SELECT COUNT(*) FROM dst") == [(0,)]


# -- splits away from the reader --------------------------------------------------------------


@pytest.mark.parametrize("snapshot", [False, True])
def test_a_fresh_reader_reads_a_split_without_planning_again(
    mysql_db: MyDb, monkeypatch: pytest.MonkeyPatch, snapshot: bool
) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT, name VARCHAR(20), amount DECIMAL(12,2))",
        "INSERT INTO t SELECT seq, CONCAT('n', seq), seq / 7 FROM seq_1_to_1000",
        "INSERT INTO t VALUES (NULL, 'null key', 1)",
    )
    params = rparams(mysql_db, "t", splitPk="id", snapshot=snapshot)
    planner = Reader(params, ctx())
    splits = planner.splits(4)
    mysql_db.execute("DELETE FROM t WHERE id <= 100")
    fresh = Reader(params, ctx())
    for name in ("sources", "schema"):
        monkeypatch.setattr(Reader, name, lambda self: pytest.fail("a split read planned again"))
    try:
        # the snapshot's connections are this process's: a fresh reader here reads them too
        table = pa.Table.from_batches([b for s in splits for b in fresh.read(s)])
    finally:
        fresh.close()
        planner.close()
    assert table.num_rows == (1001 if snapshot else 901)
    assert table.schema.field("amount").type == pa.decimal128(12, 2)


def _to_files_job(db: MyDb, path: Path, executor: str, **reader: Any) -> Path:
    doc = {
        "job": {
            "setting": {"speed": {"channel": 3}, "executor": executor},
            "content": [
                {
                    "reader": {"name": "mysqlreader", "parameter": rparams(db, "t", **reader)},
                    "writer": {
                        "name": "txtfilewriter",
                        "parameter": {"path": path.stem, "fileName": "t.csv"},
                    },
                }
            ],
        }
    }
    path.write_text(json.dumps(doc))
    return path


def test_mysql_tasks_give_the_same_result_in_fresh_processes(
    mysql_db: MyDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.engine import _spawn
    from tidesync.engine import executor as ex

    monkeypatch.setitem(ex.EXECUTORS, "spawn", _spawn.SpawnExecutor)
    mysql_db.execute(
        "CREATE TABLE t (id INT, name VARCHAR(20), at DATETIME(6))",
        "INSERT INTO t SELECT seq, CONCAT('n', seq), TIMESTAMP'2024-01-01 00:00:00' + "
        "INTERVAL seq SECOND FROM seq_1_to_2000",
    )
    rt = RunTime.of("20250101000000")
    for name in ("local", "spawn"):
        rep = run_job(
            load_job(_to_files_job(mysql_db, tmp_path / f"{name}.json", name, splitPk="id"), {}, rt)
        )
        assert rep.status == "succeeded" and rep.records_read == 2000, rep.error
    assert len(_spawn.PIDS) == 3 and os.getpid() not in _spawn.PIDS
    local = {p.name: p.read_bytes() for p in (tmp_path / "local").iterdir()}
    assert len(local) == 3 and local == {
        p.name: p.read_bytes() for p in (tmp_path / "spawn").iterdir()
    }


def test_a_mysql_snapshot_is_not_read_outside_the_process_that_holds_it(
    mysql_db: MyDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.engine import _spawn
    from tidesync.engine import executor as ex

    monkeypatch.setitem(ex.EXECUTORS, "spawn", _spawn.SpawnExecutor)
    mysql_db.execute("CREATE TABLE t (id INT)", "INSERT INTO t SELECT seq FROM seq_1_to_100")
    path = _to_files_job(mysql_db, tmp_path / "out.json", "spawn", splitPk="id", snapshot=True)
    rep = run_job(load_job(path, {}, RunTime.of("20250101000000")))
    assert rep.status == "failed"
    assert rep.error is not None and "parameter.snapshot: this process does not hold" in rep.error
    assert not any(p.is_file() for p in (tmp_path / "out").glob("*"))


# -- preSql / postSql that would commit the transaction (issue 11.6) ---------------------------


@pytest.mark.parametrize("pre", ["truncate table @table", "TRUNCATE `dst`", "truncate table dst;"])
def test_a_failed_job_with_truncate_in_pre_sql_leaves_the_targets_rows(
    tmp_path: Path, mysql_db: MyDb, pre: str
) -> None:
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(20))",
        "INSERT INTO src VALUES (1, 'ok'), (2, 'much too long')",
        "CREATE TABLE dst (id INT, v VARCHAR(5))",
        "INSERT INTO dst VALUES (7, 'old'), (8, 'old')",
    )
    params = wparams(mysql_db, "dst", preSql=[pre])
    rep = run(job_file(tmp_path, rparams(mysql_db, "src"), params, error_limit=0), tmp_path)
    assert rep.status == "failed" and rep.dirty_records == 1
    assert mysql_db.query("SELECT id, v FROM dst ORDER BY id") == [(7, "old"), (8, "old")]
    mysql_db.execute("UPDATE src SET v = 'fine' WHERE id = 2")
    rep = run(job_file(tmp_path, rparams(mysql_db, "src"), params, error_limit=0), tmp_path)
    assert rep.status == "succeeded", rep.error
    assert mysql_db.query("SELECT id, v FROM dst ORDER BY id") == [(1, "ok"), (2, "fine")]


@pytest.mark.parametrize("mode", ["replace", "merge", "sync", "update"])
def test_replacing_rows_that_foreign_keys_cascade_from_is_refused(
    tmp_path: Path, mysql_db: MyDb, mode: str
) -> None:
    # REPLACE deletes the matched row and inserts it again: ON DELETE CASCADE took both child
    # rows of parent 1 with it, and the run succeeded
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(10))",
        "INSERT INTO src VALUES (1, 'new')",
        "CREATE TABLE dst (id INT PRIMARY KEY, v VARCHAR(10))",
        "CREATE TABLE child (cid INT PRIMARY KEY, pid INT, "
        "FOREIGN KEY (pid) REFERENCES dst (id) ON DELETE CASCADE)",
        "INSERT INTO dst VALUES (1, 'old')",
        "INSERT INTO child VALUES (10, 1), (11, 1)",
    )
    params = wparams(mysql_db, "dst", writeMode=mode)
    rep = run(job_file(tmp_path, rparams(mysql_db, "src"), params), tmp_path)
    assert mysql_db.query("SELECT cid, pid FROM child ORDER BY cid") == [(10, 1), (11, 1)]
    if mode == "update":
        assert rep.status == "succeeded", rep.error
        assert mysql_db.query("SELECT id, v FROM dst") == [(1, "new")]
        return
    assert (rep.status, rep.error) == (
        "failed",
        f"job.content[0].writer.parameter.writeMode: {mode} deletes each matched row of dst "
        f"and inserts it again, and table {mysql_db.name}.child follows its rows with ON DELETE "
        "CASCADE: the child rows of every replaced row would be changed; use writeMode update",
    )
    assert mysql_db.query("SELECT id, v FROM dst") == [(1, "old")]


@pytest.mark.parametrize("engine", ["MyISAM", "Aria", "MEMORY"])
def test_a_target_without_transactions_is_refused_before_a_row_moves(
    tmp_path: Path, mysql_db: MyDb, engine: str
) -> None:
    # a MyISAM target kept what each statement did: the failed run deleted the old row and
    # left 305 rows of 101 (each half of the bad batch loaded again), reporting 0 written
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(20))",
        "INSERT INTO src SELECT seq, 'ok' FROM seq_1_to_100",
        "INSERT INTO src VALUES (101, 'much too long')",
        f"CREATE TABLE dst (id INT, v VARCHAR(5)) ENGINE={engine}",
        "INSERT INTO dst VALUES (0, 'old')",
    )
    params = wparams(mysql_db, "dst", writeMode="truncate", preSql=["DELETE FROM @table"])
    rep = run(job_file(tmp_path, rparams(mysql_db, "src"), params, error_limit=5), tmp_path)
    assert (rep.status, rep.records_written) == ("failed", 0)
    assert rep.error == (
        f"job.content[0].writer.parameter.connection[0].table: table dst is stored by {engine}, "
        "which has no transactions, so a failed run could not be taken back and a batch with a "
        "dirty row would be loaded twice; write to an InnoDB table (ALTER TABLE `dst` "
        "ENGINE=InnoDB)"
    )
    assert mysql_db.query("SELECT id, v FROM dst") == [(0, "old")]


@pytest.mark.parametrize(
    ("key", "sql", "why"),
    [
        ("preSql", "ALTER TABLE @table ADD COLUMN x INT", "ALTER commits implicitly in MySQL"),
        ("preSql", "truncate table other", "TRUNCATE of other (not the target)"),
        ("postSql", "CREATE TABLE IF NOT EXISTS audit (n INT)", "CREATE commits implicitly"),
        ("postSql", "COMMIT", "COMMIT ends or changes the writer's transaction"),
        ("preSql", "SET autocommit = 1", "SET AUTOCOMMIT ends or changes"),
        # the third assignment, and a statement MariaDB runs from a comment, were let through:
        # the failed run left the target half-written
        ("preSql", "SET @a = 1, @b = 2, autocommit = 1", "SET AUTOCOMMIT ends or changes"),
        ("postSql", "/*M!100100 SET autocommit = 1 */", "an executable comment (/*! ... */"),
        ("preSql", "CALL refresh()", "a stored procedure may run statements that commit"),
    ],
)
def test_validate_refuses_sql_that_would_commit_the_transaction(
    tmp_path: Path, key: str, sql: str, why: str
) -> None:
    db = "jdbc:mysql://127.0.0.1:3306/test"
    writer = {"username": "root", "connection": [{"jdbcUrl": db, "table": ["dst"]}], key: [sql]}
    path = job_file(
        tmp_path, {"username": "root", "connection": [{"jdbcUrl": [db], "table": ["src"]}]}, writer
    )
    tidesync = Path(sys.executable).with_name("tidesync")
    r = subprocess.run([str(tidesync), "validate", str(path)], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert f"job.content[0].writer.parameter.{key}[0]: {sql!r}: {why}" in r.stderr
    assert "set allowNonTransactionalSql: true to accept that" in r.stderr
    path = job_file(
        tmp_path,
        {"username": "root", "connection": [{"jdbcUrl": [db], "table": ["src"]}]},
        {**writer, "allowNonTransactionalSql": True},
    )
    r = subprocess.run([str(tidesync), "validate", str(path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_statements_that_stay_in_the_transaction_run_in_it(tmp_path: Path, mysql_db: MyDb) -> None:
    mysql_db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(20))",
        "INSERT INTO src VALUES (1, 'ok')",
        "CREATE TABLE dst (id INT, v VARCHAR(5))",
        "INSERT INTO dst VALUES (7, 'old'), (8, 'old')",
        "CREATE TABLE log (n INT)",
    )
    params = wparams(
        mysql_db,
        "dst",
        preSql=[
            "DELETE FROM @table WHERE id = 7",
            "/* scratch */ CREATE TEMPORARY TABLE keep (id INT)",
            "SET SESSION sql_mode = CONCAT(@@sql_mode, '') -- session only",
            "SET @a = 1, @b = 'autocommit', @c = 'transaction'",
        ],
        postSql=["INSERT INTO log SELECT COUNT(*) FROM @table", "DROP TEMPORARY TABLE keep"],
    )
    rep = run(job_file(tmp_path, rparams(mysql_db, "src"), params), tmp_path)
    assert rep.status == "succeeded", rep.error
    assert mysql_db.query("SELECT id FROM dst ORDER BY id") == [(1,), (8,)]
    assert mysql_db.query("SELECT n FROM log") == [(2,)]


def _isolated(mysql_db: MyDb, batch: pa.RecordBatch, **kw: Any) -> list[tuple[int, str]]:
    """``batch`` written into table t through the engine's bisection; the dirty rows' offsets
    and reasons."""
    w = Writer(wparams(mysql_db, "t"), ctx("writer", **kw))
    w.prepare(batch.schema)
    sink = w.open(Split(0, "all"))
    bad: list[tuple[int, str]] = []
    isolate(batch, sink.write, lambda off, _b, e: bad.append((off, e.reason)))
    w.commit([sink.close()])
    return bad


@pytest.mark.parametrize("column", ["DATE", "DATETIME", "TIMESTAMP NULL"])
def test_a_zero_date_or_a_zero_month_or_day_is_dirty_not_stored_to_read_back_as_null(
    mysql_db: MyDb, column: str
) -> None:
    # the session had no NO_ZERO_DATE / NO_ZERO_IN_DATE: LOAD DATA stored '2020-00-00' and
    # '0000-00-00', which the reader gives back as NULL
    mysql_db.execute(f"CREATE TABLE t (id INT PRIMARY KEY, d {column})")
    days = ["2020-01-02", "2020-00-00", "0000-00-00", "2020-01-00", "2020-00-05", "2021-12-31"]
    time = "" if column == "DATE" else " 10:00:00"
    batch = pa.record_batch(
        [pa.array(range(len(days))), pa.array([d + time for d in days])], names=["id", "d"]
    )
    bad = _isolated(mysql_db, batch)
    assert [off for off, _ in bad] == [1, 2, 3, 4]
    assert all("column `d`" in why or "for column" in why for _, why in bad), bad
    assert mysql_db.query("SELECT id, CAST(d AS CHAR) FROM t ORDER BY id") == [
        (0, "2020-01-02" + time),
        (5, "2021-12-31" + time),
    ]


def test_the_write_session_drops_allow_invalid_dates_of_the_server(mysql_db: MyDb) -> None:
    # a server whose sql_mode has ALLOW_INVALID_DATES stored '2020-02-30', read back dirty
    from tidesync.connectors.mysql.writer import _WRITE_SESSION

    con = mysql_db.connect()
    with con.cursor() as cur:
        cur.execute("SET SESSION sql_mode = 'ALLOW_INVALID_DATES,STRICT_TRANS_TABLES'")
        for sql in _WRITE_SESSION:
            cur.execute(sql)
        cur.execute("SELECT @@SESSION.sql_mode")
        (mode,) = cur.fetchone()
        cur.execute("CREATE TABLE t (d DATE)")
        with pytest.raises(myerr.MySQLError, match="2020-02-30"):
            cur.execute("INSERT INTO t VALUES ('2020-02-30')")
    con.close()
    assert set(mode.split(",")) >= {"STRICT_ALL_TABLES", "NO_ZERO_DATE", "NO_ZERO_IN_DATE"}
    assert "ALLOW_INVALID_DATES" not in mode


def test_a_naive_time_in_a_dst_gap_or_overlap_is_dirty_for_a_timestamp_column(
    mysql_db: MyDb,
) -> None:
    # each was resolved silently to the earlier instant (the gap's 02:30 to 01:59:59.999999)
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL, d DATETIME)")
    wall = [
        dt.datetime(2024, 3, 31, 1, 59),
        dt.datetime(2024, 3, 31, 2, 30),  # the clock skips 02:00-03:00
        dt.datetime(2024, 10, 27, 2, 30),  # the clock shows 02:00-03:00 twice
        None,
        dt.datetime(2024, 10, 27, 3, 0),
    ]
    batch = pa.record_batch(
        [
            pa.array(range(len(wall))),
            pa.array(wall, pa.timestamp("us")),
            pa.array(wall, pa.timestamp("us")),
        ],
        names=["id", "ts", "d"],
    )
    bad = _isolated(mysql_db, batch, timezone="Europe/Berlin")
    assert bad == [
        (
            1,
            "column ts: value 2024-03-31 02:30:00 does not exist in time zone Europe/Berlin (the "
            "clock skips it at a daylight-saving change), so it names no one instant for "
            "timestamp(6); write it with its offset (a timestamp with a time zone) or set the "
            "job's timezone to one without daylight saving",
        ),
        (
            2,
            "column ts: value 2024-10-27 02:30:00 is ambiguous in time zone Europe/Berlin (the "
            "clock shows it twice at a daylight-saving change), so it names no one instant for "
            "timestamp(6); write it with its offset (a timestamp with a time zone) or set the "
            "job's timezone to one without daylight saving",
        ),
    ]
    con = mysql_db.connect()
    with con.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT id, ts FROM t ORDER BY id")
        assert cur.fetchall() == (
            (0, dt.datetime(2024, 3, 31, 0, 59)),
            (3, None),
            (4, dt.datetime(2024, 10, 27, 2, 0)),
        )
    con.close()


def test_fractional_seconds_a_column_does_not_keep_are_dirty_not_cut(mysql_db: MyDb) -> None:
    # MariaDB cut them without a warning: 10:00:00.7 was stored as 10:00:00
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, a DATETIME NULL, b DATETIME(3) NULL, "
        "c TIME(2) NULL, d TIMESTAMP NULL)"
    )
    us = pa.timestamp("us")
    noon = dt.datetime(2024, 6, 1, 12)
    batch = pa.record_batch(
        [
            pa.array([1, 2, 3, 4, 5, 6]),
            pa.array([noon, noon.replace(microsecond=700000), None, None, None, noon], us),
            pa.array(
                ["2024-06-01 12:00:00.123", None, "2024-06-01 12:00:00.1234", None, None, None]
            ),
            pa.array([None, None, None, dt.time(1, 2, 3, 450000), dt.time(1, 2, 3, 456000), None]),
            pa.array([None] * 5 + [noon.replace(microsecond=1)], us),
        ],
        names=["id", "a", "b", "c", "d"],
    )
    assert _isolated(mysql_db, batch) == [
        (
            1,
            "column a: value '2024-06-01 12:00:00.700000' has more fractional-second digits "
            "than datetime keeps (0); MySQL would cut them",
        ),
        (
            2,
            "column b: value '2024-06-01 12:00:00.1234' has more fractional-second digits than "
            "datetime(3) keeps (3); MySQL would cut them",
        ),
        (
            4,
            "column c: value '01:02:03.456000' has more fractional-second digits than time(2) "
            "keeps (2); MySQL would cut them",
        ),
        (
            5,
            "column d: value '2024-06-01 12:00:00.000001' has more fractional-second digits "
            "than timestamp keeps (0); MySQL would cut them",
        ),
    ]
    assert mysql_db.query("SELECT id, CAST(b AS CHAR), CAST(c AS CHAR) FROM t ORDER BY id") == [
        (1, "2024-06-01 12:00:00.123", None),
        (4, None, "01:02:03.45"),
    ]


def test_a_value_the_server_cuts_with_only_a_note_is_dirty(mysql_db: MyDb) -> None:
    # 'Data truncated' came as a Note, which the writer let pass: a decimal rounded to its
    # scale, a DATE's time of day dropped from text, trailing spaces cut. A timestamp goes into
    # a DATE as its day, as the DuckDB and SQLite writers write it
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY, e DECIMAL(5,2), d DATE, v VARCHAR(2), t DATE)"
    )
    batch = pa.record_batch(
        [
            pa.array([1, 2, 3, 4, 5]),
            pa.array(["1.23", "1.239", None, None, "1.230"]),
            pa.array(["2024-01-02", None, "2024-01-02 10:00:00", None, None]),
            pa.array(["ab", None, None, "ab  ", None]),
            pa.array([dt.datetime(2024, 1, 2, 23, 30), None, None, None, None], pa.timestamp("us")),
        ],
        names=["id", "e", "d", "v", "t"],
    )
    bad = _isolated(mysql_db, batch)
    assert [(off, why) for off, why in bad] == [
        (1, "Data truncated for column 'e' at row 1"),
        (2, "Data truncated for column 'd' at row 1"),
        (3, "Data truncated for column 'v' at row 1"),
    ]
    assert mysql_db.query(
        "SELECT id, CAST(e AS CHAR), CAST(d AS CHAR), v, CAST(t AS CHAR) FROM t ORDER BY id"
    ) == [
        (1, "1.23", "2024-01-02", "ab", "2024-01-02"),
        (5, "1.23", None, None, None),
    ]


def test_text_for_a_timestamp_column_is_read_in_the_jobs_time_zone_as_a_naive_timestamp(
    mysql_db: MyDb,
) -> None:
    # the session's time_zone is +00:00: the server read '2024-06-01 14:00:00' as 14:00 UTC,
    # where the same time as a naive timestamp is 12:00 UTC (Europe/Berlin), as PostgreSQL and
    # DuckDB read such text too
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL)")
    text = [
        "2024-06-01 14:00:00",
        "2024-06-01T14:00:00.5",
        "2024-06-01 14:00:00Z",
        "2024-06-01 14:00:00+05:30",
        "2024-06-01",
        "20240601140000",
        "2024-03-31 02:30:00",
        None,
    ]
    batch = pa.record_batch([pa.array(range(len(text))), pa.array(text)], names=["id", "ts"])
    bad = _isolated(mysql_db, batch, timezone="Europe/Berlin")
    assert [(off, why.split(";")[0].split(",")[0]) for off, why in bad] == [
        (5, "column ts: value '20240601140000' is no date-time in ISO form (yyyy-MM-dd HH:mm:ss"),
        (
            6,
            "column ts: value '2024-03-31 02:30:00' does not exist in time zone Europe/Berlin "
            "(the clock skips it at a daylight-saving change)",
        ),
    ]
    con = mysql_db.connect()
    with con.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT id, CAST(ts AS CHAR) FROM t ORDER BY id")
        assert cur.fetchall() == (
            (0, "2024-06-01 12:00:00.000000"),
            (1, "2024-06-01 12:00:00.500000"),
            (2, "2024-06-01 14:00:00.000000"),
            (3, "2024-06-01 08:30:00.000000"),
            (4, "2024-05-31 22:00:00.000000"),
            (7, None),
        )
    con.close()


def test_text_with_an_offset_for_a_timestamp_column_is_its_instant_in_a_utc_job(
    mysql_db: MyDb,
) -> None:
    # in a UTC job the text went to the server as written: MariaDB refused every offset ('Data
    # truncated'), so the valid instants became dirty records where another zone wrote them
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, ts TIMESTAMP(6) NULL)")
    text = ["2024-06-01 14:00:00+05:30", "2024-06-01T14:00:00.5Z", "2024-06-01 14:00:00", None]
    batch = pa.record_batch([pa.array(range(len(text))), pa.array(text)], names=["id", "ts"])
    assert _isolated(mysql_db, batch, timezone="UTC") == []
    plain = pa.record_batch([pa.array([9]), pa.array(["20240601140000"])], names=["id", "ts"])
    assert _isolated(mysql_db, plain, timezone="UTC") == []  # no offset: the server reads it
    con = mysql_db.connect()
    with con.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
        cur.execute("SELECT id, CAST(ts AS CHAR) FROM t ORDER BY id")
        assert cur.fetchall() == (
            (0, "2024-06-01 08:30:00.000000"),
            (1, "2024-06-01 14:00:00.500000"),
            (2, "2024-06-01 14:00:00.000000"),
            (3, None),
            (9, "2024-06-01 14:00:00.000000"),
        )
    con.close()


def test_an_integer_a_float_column_would_round_is_dirty(mysql_db: MyDb) -> None:
    # LOAD DATA stored 9007199254740993 in a DOUBLE as 9007199254740992, without a warning
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, d DOUBLE, f FLOAT)")
    batch = pa.record_batch(
        [
            pa.array([1, 2, 3]),
            pa.array([2**53, 2**53 + 1, None], pa.int64()),
            pa.array([2**24, None, 2**24 + 1], pa.int64()),
        ],
        names=["id", "d", "f"],
    )
    assert _isolated(mysql_db, batch) == [
        (
            1,
            "column d: value 9007199254740993 has more digits than double holds; it would be "
            "stored as 9007199254740992 (LOAD DATA)",
        ),
        (
            2,
            "column f: value 16777217 has more digits than float holds; it would be stored as "
            "16777216 (LOAD DATA)",
        ),
    ]
    assert mysql_db.query("SELECT id, d = 9007199254740992, f = 16777216 FROM t ORDER BY id") == [
        (1, 1, 1)
    ]


def test_text_with_an_offset_for_a_datetime_column_is_the_jobs_wall_time_of_its_instant(
    mysql_db: MyDb,
) -> None:
    # MariaDB refused it with 'Data truncated'; PostgreSQL and DuckDB dropped the offset
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, ts DATETIME(1))")
    batch = pa.record_batch(
        [
            pa.array([1, 2, 3, 4]),
            pa.array(
                ["2024-06-01 14:00:00+02:00", "2024-06-01T14:00:00.5Z", "2024-06-01 14:00:00", None]
            ),
        ],
        names=["id", "ts"],
    )
    assert _isolated(mysql_db, batch, timezone="Asia/Shanghai") == []
    assert mysql_db.query("SELECT id, CAST(ts AS CHAR) FROM t ORDER BY id") == [
        (1, "2024-06-01 20:00:00.0"),
        (2, "2024-06-01 22:00:00.5"),
        (3, "2024-06-01 14:00:00.0"),
        (4, None),
    ]


def test_a_double_a_float_column_would_not_give_back_is_dirty(mysql_db: MyDb) -> None:
    # LOAD DATA stored 0.123456789 in a FLOAT as 0.123457 (0.12345679f) without a warning
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, f FLOAT)")
    batch = pa.record_batch(
        [pa.array([1, 2, 3, 4]), pa.array([0.1, 0.123456789, None, -1.5], pa.float64())],
        names=["id", "f"],
    )
    assert _isolated(mysql_db, batch) == [
        (
            1,
            "column f: value 0.123456789 has more digits than float holds; it would be stored "
            "as 0.12345679 (LOAD DATA)",
        ),
    ]
    assert mysql_db.query("SELECT id, CAST(f AS CHAR) FROM t ORDER BY id") == [
        (1, "0.1"),
        (3, None),
        (4, "-1.5"),
    ]
