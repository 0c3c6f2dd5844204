"""Seed 001's three strategies end to end against MariaDB (examples/seed001/run_seed.py): daily
log partitions, daily full copies, and an incremental result table that loses the deleted user;
running the second day twice leaves every target unchanged."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from contextlib import closing
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.integration._servers_mysql import MyDb, mysql_db, mysql_server  # noqa: F401
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed001" / "run_seed.py"


def example() -> ModuleType:
    try:
        import tidesync.connectors.mysql  # noqa: F401
    except ImportError as e:
        pytest.skip(f"the mysql connector is not usable yet: {e}")
    spec = importlib.util.spec_from_file_location("run_seed", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed001_targets_after_two_days_and_a_rerun(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    s = mysql_db.server
    if (s.host, s.port, s.user, s.password) != ("127.0.0.1", 3306, "root", ""):
        pytest.skip("the seed001 job files name the server 127.0.0.1:3306 as root")
    run_seed = example()
    run_seed.IN_PROCESS = True  # the same jobs and cyctimes, without a process per run
    first, again = run_seed.run(mysql_db.name, tmp_path / "work")
    assert run_seed.check(first) == []
    assert again == first
    assert (5, "Lily", 104, "F") not in first["dw.dw_user_inc"][None]
    assert (5, "Lily", 104, "F") not in first["mysql:dw_user_inc_table"][None]


USER_DDL = "(uid INT PRIMARY KEY, uname VARCHAR(50), deptno INT, gender VARCHAR(1))"


def _table_target(kind: str, work: Path, request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """Writer parameters of table ``dw_user_inc`` (created here, key ``uid``) in a ``kind``
    store, and a function reading its rows back in order."""
    if kind == "postgresql":
        pg: PgDb = request.getfixturevalue("pg")
        pg.sql("CREATE TABLE {s}.dw_user_inc " + USER_DDL)
        return pg.writer_params("dw_user_inc"), lambda: pg.rows(
            "SELECT uid, uname, deptno, gender FROM {s}.dw_user_inc ORDER BY uid"
        )
    if kind == "sqlite":
        with closing(sqlite3.connect(work / "dw.db")) as con:
            con.execute("CREATE TABLE dw_user_inc " + USER_DDL)

        def read_sqlite() -> list[tuple[Any, ...]]:
            with closing(sqlite3.connect(work / "dw.db")) as con:
                return con.execute("SELECT * FROM dw_user_inc ORDER BY uid").fetchall()

        return {"database": "dw.db", "table": "dw_user_inc"}, read_sqlite
    import duckdb

    with duckdb.connect(str(work / "dw.duckdb")) as con:
        con.execute("CREATE TABLE dw_user_inc " + USER_DDL)

    def read_duckdb() -> list[tuple[Any, ...]]:
        with duckdb.connect(str(work / "dw.duckdb"), read_only=True) as con:
            return con.execute("SELECT * FROM dw_user_inc ORDER BY uid").fetchall()

    return {"database": "dw.duckdb", "table": "dw_user_inc"}, read_duckdb


@pytest.mark.parametrize("kind", ["postgresql", "sqlite", "duckdb"])
def test_seed001_sync_takes_uid_5_out_of_a_table_target(
    kind: str,
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """jobs/dw_user_inc_table.json with its writer swapped for another table store: after the
    seed's second day the table is the source's ``user`` (uid 5 deleted, uid 6 added), and a
    rerun of the day changes nothing."""
    s = mysql_db.server
    if (s.host, s.port, s.user, s.password) != ("127.0.0.1", 3306, "root", ""):
        pytest.skip("the seed001 job files name the server 127.0.0.1:3306 as root")
    run_seed = example()
    run_seed.IN_PROCESS = True
    work = tmp_path / "work"
    work.mkdir()
    params, read = _table_target(kind, work, request)
    job = json.loads((EXAMPLE.parent / "jobs" / "dw_user_inc_table.json").read_text())
    writer = job["job"]["content"][0]["writer"]
    writer["name"] = kind
    writer["parameter"] = {
        **params,
        "writeMode": "sync",
        "column": ["uid", "uname", "deptno", "gender"],
    }
    (work / "dw.json").write_text(json.dumps(job))
    db = mysql_db.name
    run_seed.source("history", db)
    run_seed.tidesync(work, "dw.json", run_seed.DAY1, db)
    assert read() == run_seed.USER_DAY1
    run_seed.source("changes", db)
    run_seed.tidesync(work, "dw.json", run_seed.DAY2, db)
    first = read()
    run_seed.tidesync(work, "dw.json", run_seed.DAY2, db)
    assert first == run_seed.USER_DAY2
    assert read() == first
