"""Errors that act: the report carries the error's class and store code, and the scheduler
retries a transient failure (a connection the server ended) but not a fatal one (a refused
password) unless the node says ``retry_on: any``. Against the real servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration._servers_mysql import MyDb, mysql_server  # noqa: F401
from tests.integration._servers_mysql import my_user as my_user
from tests.integration._servers_mysql import mysql_db as mysql_db
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401
from tests.scheduler._helpers import at, scheduler, stream_into, write_project
from tidesync.engine.runner import load_job, run_job

#: ends its own connection the first time it runs (a sequence does not roll back), as a server
#: restart or an administrator's kill would: the run fails with SQLSTATE 57P01
KILL_ONCE = (
    "SELECT CASE WHEN nextval('{s}.attempts') = 1 THEN pg_terminate_backend(pg_backend_pid()) END"
)


def _stream_to_pg(pg: PgDb, path: Path) -> Path:
    pg.sql("CREATE SEQUENCE {s}.attempts", "CREATE TABLE {s}.t (v text)")
    params = pg.writer_params("t", preSql=[KILL_ONCE.replace("{s}", f'"{pg.schema}"')])
    return stream_into(path, "postgresqlwriter", params, value="x", records=3)


def _mysql_with_password(db: MyDb, user: str, password: str, path: Path) -> Path:
    db.execute("CREATE TABLE src (id INT)", "INSERT INTO src VALUES (1)")
    doc = {
        "job": {
            "content": [
                {
                    "reader": {
                        "name": "mysqlreader",
                        "parameter": {
                            "username": user,
                            "password": password,
                            "connection": [{"jdbcUrl": [db.jdbc], "table": ["src"]}],
                            "column": ["*"],
                        },
                    },
                    "writer": {"name": "streamwriter", "parameter": {"print": False}},
                }
            ]
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def test_the_report_carries_class_and_sqlstate_of_a_lost_connection(
    pg: PgDb, tmp_path: Path
) -> None:
    job = _stream_to_pg(pg, tmp_path / "job.json")
    report = run_job(load_job(job), report_path=tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert report.status == "failed"
    assert (data["error_class"], data["error_code"], data["retriable"]) == (
        "RetriableError",
        "57P01",
        True,
    )
    assert pg.rows("SELECT count(*) FROM {s}.t") == [(0,)]


def test_the_report_carries_class_and_errno_of_a_refused_password(
    mysql_db: MyDb, my_user: tuple[str, str], tmp_path: Path
) -> None:
    user, pw = my_user
    job = _mysql_with_password(mysql_db, user, pw + "-wrong", tmp_path / "job.json")
    report = run_job(load_job(job), report_path=tmp_path / "report.json")
    data = json.loads((tmp_path / "report.json").read_text())
    assert (report.status, data["error_class"], data["error_code"], data["retriable"]) == (
        "failed",
        "FatalError",
        "1045",
        False,
    )


def _node(name: str, job: Path, **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "job": str(job),
        "retries": 2,
        "retry_interval": 0,
        "schedule": {"every": "day"},
        **kw,
    }


def test_the_scheduler_retries_a_lost_connection_and_the_retry_succeeds(
    pg: PgDb, tmp_path: Path
) -> None:
    job = _stream_to_pg(pg, tmp_path / "jobs" / "lost.json")
    write_project(tmp_path, [_node("lost", job)])
    s = scheduler(tmp_path)
    out = s.run_once(at("202501010000"))
    assert [(o.state, o.attempt) for o in out] == [("waiting", 1), ("succeeded", 2)]
    assert "57P01" in (out[0].error or "")
    assert pg.rows("SELECT count(*) FROM {s}.t") == [(3,)]


@pytest.mark.parametrize(("retry_on", "attempts"), [(None, 1), ("any", 3)])
def test_the_scheduler_does_not_retry_a_refused_password_unless_retry_on_any(
    mysql_db: MyDb,
    my_user: tuple[str, str],
    tmp_path: Path,
    retry_on: str | None,
    attempts: int,
) -> None:
    user, pw = my_user
    job = _mysql_with_password(mysql_db, user, pw + "-wrong", tmp_path / "jobs" / "denied.json")
    extra = {"retry_on": retry_on} if retry_on else {}
    write_project(tmp_path, [_node("denied", job, **extra)])
    s = scheduler(tmp_path)
    out = s.run_once(at("202501010000"))
    assert [o.state for o in out] == ["waiting"] * (attempts - 1) + ["failed"]
    inst = s.store.listing()[0]
    assert (inst.state, inst.attempts) == ("failed", attempts)
    assert "[1045]" in (inst.error or "")
    log = Path(inst.log_path).read_text(encoding="utf-8")
    assert ("not retried: the failure is not transient" in log) == (retry_on is None)


def test_retry_on_takes_retriable_or_any(tmp_path: Path) -> None:
    from tidesync.errors import ConfigError
    from tidesync.scheduler.project import load_project

    job = tmp_path / "jobs" / "j.json"
    job.parent.mkdir(parents=True)
    job.write_text("{}", encoding="utf-8")
    write_project(tmp_path, [_node("n", job, retry_on="anything")])
    with pytest.raises(ConfigError, match=r"nodes\[0\]\.retry_on: 'anything' is not one of "):
        load_project(tmp_path)
