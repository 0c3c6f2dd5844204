"""A database connection ended by the server while it sits idle (an administrator's KILL, a
failover): the run fails as a lost connection, retriable, with the server's words and nothing
published — no AttributeError from the driver, no ``pg.Copy [BAD]`` or ``abort ... failed``
noise. The run is stopped at its commit (``TIDESYNC_TEST_HOOKS``), its data sent and its
connection idle, and a second session ends that connection."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.connectors._runs import finish, reached, release, start, stream_job
from tests.integration._servers_mysql import MyDb, mysql_server  # noqa: F401
from tests.integration._servers_mysql import mysql_db as mysql_db
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401


def _run_and_end_its_connection(
    tmp_path: Path, writer: dict[str, Any], end: Callable[[], None], point: str
) -> tuple[str, dict[str, Any]]:
    job = stream_job(tmp_path, writer, 100, "a", concurrent=1)
    proc = start("run", job, "--report", "r.json", cwd=tmp_path, hooks=f"{point}=hold:{tmp_path}")
    reached(tmp_path, point, proc)
    try:
        end()
    finally:
        release(tmp_path, point)
    code, err = finish(proc)
    assert code == 1, err
    return err, json.loads((tmp_path / "r.json").read_text())


def _no_noise(err: str) -> None:
    for noise in ("AttributeError", "NoneType", "Traceback", "[BAD]", "abort of", "WARNING"):
        assert noise not in err, err


#: where the writer's connection sits idle: prepared, before any row; all sent, before COMMIT
POINTS = pytest.mark.parametrize("point", ["run.tasks", "run.commit"])


@POINTS
def test_a_mysql_connection_killed_while_idle_is_a_lost_connection(
    mysql_db: MyDb, tmp_path: Path, point: str
) -> None:
    mysql_db.execute("CREATE TABLE t (id BIGINT, gen VARCHAR(10))")
    s = mysql_db.server
    writer = {
        "name": "mysqlwriter",
        "parameter": {
            "username": s.user,
            "password": s.password,
            "connection": [{"jdbcUrl": mysql_db.jdbc, "table": ["t"]}],
        },
    }

    def kill() -> None:
        ids = mysql_db.query(
            "SELECT id FROM information_schema.processlist "
            f"WHERE db = '{mysql_db.name}' AND id <> CONNECTION_ID()"
        )
        assert ids, "the run's connection is not there"
        for (i,) in ids:
            mysql_db.execute(f"KILL {i}")

    err, report = _run_and_end_its_connection(tmp_path, writer, kill, point)
    assert (report["error_class"], report["retriable"]) == ("RetriableError", True)
    assert "[2013] Lost connection" in report["error"] or "[1927]" in report["error"]
    assert report["error_code"] in ("2013", "1927")
    _no_noise(err)
    assert mysql_db.query("SELECT count(*) FROM t") == [(0,)]


@POINTS
def test_a_postgresql_connection_ended_while_idle_fails_without_noise(
    pg: PgDb, tmp_path: Path, point: str
) -> None:
    pg.sql("CREATE TABLE {s}.t (id bigint, gen text)")
    app = f"ts_kill_{pg.schema}"  # names the run's session among the server's
    params = pg.writer_params("t")
    params["connection"][0]["jdbcUrl"] += f"&ApplicationName={app}"
    writer = {"name": "postgresqlwriter", "parameter": params}

    def terminate() -> None:
        ended = pg.rows(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (app,),
        )
        assert ended, "the run's connection is not there"

    err, report = _run_and_end_its_connection(tmp_path, writer, terminate, point)
    assert (report["error_class"], report["retriable"]) == ("RetriableError", True)
    assert "PostgreSQL" in report["error"] and pg.host_port_db in report["error"]
    _no_noise(err)
    assert pg.rows("SELECT count(*) FROM {s}.t") == [(0,)]
