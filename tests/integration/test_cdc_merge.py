"""Seed 001's user table kept exact through change data capture: the changes of each run are
merged by key into a table of each kind, ``_op = d`` rows deleting their key (uid 5's delete
included), the meta columns written only where the table has them."""

from __future__ import annotations

import datetime as dt
import secrets
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.integration._cdc import Capture
from tests.integration._servers_mysql import MyDb, mysql_db, mysql_server  # noqa: F401
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401

pytestmark = pytest.mark.integration

USER = "CREATE TABLE user (uid INT PRIMARY KEY, uname VARCHAR(50), deptno INT, gender VARCHAR(1), optime DATETIME)"
HISTORY = [
    "INSERT INTO user VALUES (1, 'LiLei', 100, 'M', '2016-11-13 00:00:00')",
    "INSERT INTO user VALUES (2, 'HanMM', NULL, 'F', '2016-11-13 00:00:00')",
    "INSERT INTO user VALUES (3, 'Jim', 102, 'M', '2016-11-12 00:00:00')",
    "INSERT INTO user VALUES (4, 'Kate', 103, 'F', '2016-11-12 00:00:00')",
    "INSERT INTO user VALUES (5, 'Lily', 104, 'F', '2016-11-11 00:00:00')",
]
CHANGES = [
    "UPDATE user SET deptno = 101, optime = '2016-11-14 10:00:00' WHERE uid = 2",
    "UPDATE user SET deptno = 104, optime = '2016-11-14 10:00:00' WHERE uid = 3",
    "UPDATE user SET deptno = NULL, optime = '2016-11-14 10:00:00' WHERE uid = 4",
    "DELETE FROM user WHERE uid = 5",
    "INSERT INTO user VALUES (6, 'Lucy', 105, 'F', '2016-11-14 10:00:00')",
]
T = dt.datetime


def expected(day: int) -> list[tuple[Any, ...]]:
    rows = [
        (1, "LiLei", 100, "M", T(2016, 11, 13)),
        (2, "HanMM", None, "F", T(2016, 11, 13)),
        (3, "Jim", 102, "M", T(2016, 11, 12)),
        (4, "Kate", 103, "F", T(2016, 11, 12)),
        (5, "Lily", 104, "F", T(2016, 11, 11)),
    ]
    if day == 2:
        t = T(2016, 11, 14, 10)
        rows = [rows[0], (2, "HanMM", 101, "F", t), (3, "Jim", 104, "M", t),
                (4, "Kate", None, "F", t), (6, "Lucy", 105, "F", t)]  # fmt: skip
    return rows


TARGET_DDL = (
    "CREATE TABLE user_inc (uid BIGINT PRIMARY KEY, uname VARCHAR(50), deptno BIGINT, "
    "gender VARCHAR(1), optime TIMESTAMP, _op VARCHAR(1))"  # _op kept: the table has it
)


def _sqlite(tmp: Path, **_: Any) -> tuple[dict[str, Any], Any]:
    path = tmp / "target.sqlite"
    con = sqlite3.connect(path)
    con.execute(TARGET_DDL)
    con.commit()
    con.close()

    def rows() -> list[tuple[Any, ...]]:
        c = sqlite3.connect(path)
        try:
            got = c.execute("SELECT uid, uname, deptno, gender, optime FROM user_inc ORDER BY uid")
            return [(*r[:4], T.fromisoformat(r[4])) for r in got.fetchall()]
        finally:
            c.close()

    return {"name": "sqlitewriter", "parameter": {
        "connection": [{"jdbcUrl": f"jdbc:sqlite:{path}", "table": ["user_inc"]}],
        "writeMode": "merge"}}, rows  # fmt: skip


def _duckdb(tmp: Path, **_: Any) -> tuple[dict[str, Any], Any]:
    import duckdb

    path = tmp / "target.duckdb"
    con = duckdb.connect(str(path))
    con.execute(TARGET_DDL)
    con.close()

    def rows() -> list[tuple[Any, ...]]:
        c = duckdb.connect(str(path))
        try:
            return [tuple(r) for r in c.execute(
                "SELECT uid, uname, deptno, gender, optime FROM user_inc ORDER BY uid").fetchall()]  # fmt: skip
        finally:
            c.close()

    return {"name": "duckdbwriter", "parameter": {"database": str(path), "table": "user_inc",
                                                  "writeMode": "merge"}}, rows  # fmt: skip


def _postgresql(tmp: Path, pg: PgDb, **_: Any) -> tuple[dict[str, Any], Any]:  # noqa: F811
    pg.sql(TARGET_DDL.replace("user_inc", "{s}.user_inc"))

    def rows() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in pg.rows(
            "SELECT uid, uname, deptno, gender, optime FROM {s}.user_inc ORDER BY uid")]  # fmt: skip

    return {
        "name": "postgresqlwriter",
        "parameter": pg.writer_params("user_inc", writeMode="merge"),
    }, rows


def _mysql(tmp: Path, db: MyDb, **_: Any) -> tuple[dict[str, Any], Any]:  # noqa: F811
    db.execute(TARGET_DDL.replace("TIMESTAMP", "DATETIME"))  # (no implicit NOT NULL default)

    def rows() -> list[tuple[Any, ...]]:
        return [tuple(r) for r in db.query(
            "SELECT uid, uname, deptno, gender, optime FROM user_inc ORDER BY uid")]  # fmt: skip

    return {"name": "mysqlwriter", "parameter": {
        "connection": [{"jdbcUrl": db.jdbc, "table": ["user_inc"]}], "username": db.server.user,
        "password": db.server.password, "writeMode": "merge"}}, rows  # fmt: skip


def _lake(tmp: Path, **_: Any) -> tuple[dict[str, Any], Any]:
    warehouse = tmp / "warehouse"

    def rows() -> list[tuple[Any, ...]]:
        from tidesync.connectors.base import Context
        from tidesync.connectors.lake import Reader

        r = Reader({"table": "ods.user_inc", "warehouse": str(warehouse)}, Context(where="r"))
        out = []
        for s in r.splits(1):
            for b in r.read(s):
                b = getattr(b, "batch", b)
                out += [tuple(x[c] for c in ("uid", "uname", "deptno", "gender", "optime"))
                        for x in b.to_pylist()]  # fmt: skip
        return sorted(out)

    return {"name": "lakewriter", "parameter": {"table": "ods.user_inc", "warehouse": str(warehouse),
                                                "writeMode": "merge", "primaryKey": ["uid"],
                                                "column": ["uid", "uname", "deptno", "gender", "optime"]}}, rows  # fmt: skip


@pytest.mark.parametrize("target", ["lake", "sqlite", "duckdb", "postgresql", "mysql"])
def test_seed001_user_table_kept_exact_by_mysqlcdc_and_merge(
    target: str,
    mysql_db: MyDb,  # noqa: F811
    pg: PgDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    writer, rows = {"lake": _lake, "sqlite": _sqlite, "duckdb": _duckdb,
                    "postgresql": _postgresql, "mysql": _mysql}[target](tmp_path, pg=pg, db=mysql_db)  # fmt: skip
    mysql_db.execute(USER)
    root = tmp_path / f"cap_{secrets.token_hex(3)}"
    root.mkdir()
    c = Capture(root, "mysqlcdc", {"jdbcUrl": mysql_db.jdbc, "username": mysql_db.server.user,
                                   "password": mysql_db.server.password, "table": ["user"]},
                writer)  # fmt: skip
    assert c.run_report().status == "succeeded"  # the capture starts
    mysql_db.execute(*HISTORY)
    for day in (1, 2):
        r = c.run_report()
        assert r.status == "succeeded", r.error
        assert rows() == expected(day)
        mysql_db.execute(*(CHANGES if day == 1 else []))
    r = c.run_report()  # nothing new: the table stays as it is
    assert r.status == "succeeded" and rows() == expected(2)
