"""No secret in any byte a run writes: stdout, stderr, logs, reports, dirty records, the state
store, the scheduler's instance log and ``instance show``. Real PostgreSQL, MariaDB and the
suite's S3 server; the secrets hold ``/`` (as AWS secrets often do) and reach their fields
directly, through ``-p`` and through a node parameter.

Each test runs the ``tidesync`` command as a user would, then reads back everything: a secret's
every piece between slashes is searched for, so that a half-printed password fails too."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from tests.integration._s3server import S3Server, bucket_fixture, s3_server_fixture  # noqa: F401
from tests.integration._servers_mysql import MyDb, mysql_server  # noqa: F401
from tests.integration._servers_mysql import mysql_db as mysql_db
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401

TIDESYNC = str(Path(sys.executable).with_name("tidesync"))


def new_secret() -> str:
    return f"{secrets.token_hex(6)}/{secrets.token_hex(6)}"


@dataclass
class Outputs:
    """Everything the commands of a test printed, and the folders they wrote into."""

    secret: str
    roots: list[Path]
    printed: list[str] = field(default_factory=list)
    inputs: set[Path] = field(default_factory=set)  # what the test wrote: job and project files

    def job(
        self, path: Path, reader: dict[str, Any], writer: dict[str, Any], limit: int = 0
    ) -> Path:
        self.inputs.add(_job(path, reader, writer, limit))
        return path

    def tidesync(self, *args: str, cwd: Path, code: int | None = None) -> str:
        proc = subprocess.run(
            [TIDESYNC, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "COLUMNS": "200"},
        )
        out = proc.stdout + proc.stderr
        self.printed.append(out)
        if code is not None:
            assert proc.returncode == code, out
        return out

    def leaks(self) -> list[str]:
        """Where the secret or a piece of it shows (cut at '/': each long piece is searched)."""
        pieces = [self.secret, quote(self.secret, safe="")]
        pieces += [p for p in self.secret.split("/") if len(p) >= 6]  # shorter: found by chance
        found = [f"output {i}" for i, t in enumerate(self.printed) if any(p in t for p in pieces)]
        for root in self.roots:
            for f in sorted(root.rglob("*")):
                if f.is_file() and f not in self.inputs:
                    data = f.read_bytes()
                    found += [f"{f}: {p}" for p in pieces if p.encode() in data]
        return found


def _job(path: Path, reader: dict[str, Any], writer: dict[str, Any], limit: int = 0) -> Path:
    doc = {
        "job": {
            "setting": {"speed": {"channel": 1}, "errorLimit": {"record": limit}},
            "content": [{"reader": reader, "writer": writer}],
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _rows(value: str) -> dict[str, Any]:
    return {
        "name": "streamreader",
        "parameter": {
            "column": [{"type": "string", "value": value, "name": "v"}],
            "sliceRecordCount": 2,
        },
    }


# -- PostgreSQL --------------------------------------------------------------------------------


def _pg_url(pg: PgDb, password: str) -> str:
    rest = pg.jdbc.split("//", 1)[1]
    return f"jdbc:postgresql://postgres:{password}@{rest}"


def test_postgresql_url_passwords_and_server_echoes_are_masked(pg: PgDb, tmp_path: Path) -> None:
    secret = new_secret()
    out = Outputs(secret, [tmp_path])
    pg.sql("CREATE TABLE {s}.t (v text)")
    # a password holding '/' as written: refused, the URL shown without its userinfo
    raw = out.job(
        tmp_path / "raw.json",
        _rows("x"),
        {
            "name": "postgresqlwriter",
            "parameter": {"connection": [{"jdbcUrl": _pg_url(pg, secret), "table": ["t"]}]},
        },
    )
    said = out.tidesync("run", str(raw), "--report", "raw.report.json", cwd=tmp_path, code=2)
    assert "percent-encode it" in said and "jdbc:postgresql://***@" in said
    # percent-encoded in the URL, and through -p into a preSql the server echoes in its error
    echo = out.job(
        tmp_path / "echo.json",
        _rows("x"),
        {
            "name": "postgresqlwriter",
            "parameter": {
                "connection": [{"jdbcUrl": _pg_url(pg, quote(secret, safe="")), "table": ["t"]}],
                "password": "${pw}",
                "preSql": ["select '${pw}'::int"],
            },
        },
    )
    said = out.tidesync(
        "run", str(echo), "-p", f"pw={secret}", "--report", "echo.report.json", cwd=tmp_path, code=1
    )
    assert "invalid input syntax for type integer" in said
    report = json.loads((tmp_path / "echo.report.json").read_text())
    assert report["error_code"] == "22P02" and "***" in report["error"]
    assert out.leaks() == []


# -- MariaDB -----------------------------------------------------------------------------------


@pytest.fixture
def secret_user(mysql_db: MyDb) -> Iterator[tuple[str, str]]:
    """A MariaDB user whose password holds '/': (name, password)."""
    name, pw = f"ts_s_{secrets.token_hex(4)}", new_secret()
    for host in ("%", "localhost"):
        mysql_db.execute(
            f"CREATE USER '{name}'@'{host}' IDENTIFIED BY '{pw}'",
            f"GRANT ALL ON `{mysql_db.name}`.* TO '{name}'@'{host}'",
        )
    yield name, pw
    mysql_db.execute(
        f"DROP USER IF EXISTS '{name}'@'%'", f"DROP USER IF EXISTS '{name}'@'localhost'"
    )


def _mysql_job(
    out: Outputs, db: MyDb, path: Path, user: str, password: str, url: str | None = None
) -> Path:
    """src -> dst of ``db`` as ``user``; a row too long for dst becomes a dirty record."""
    conn = {"jdbcUrl": [db.jdbc], "table": ["src"]}
    reader = {"username": user, "password": password, "connection": [conn]}
    if url is not None:
        reader = {"url": url, "table": ["src"]}
    writer = {
        "username": user,
        "password": password,
        "connection": [{"jdbcUrl": db.jdbc, "table": ["dst"]}],
    }
    return out.job(
        path,
        {"name": "mysqlreader", "parameter": {**reader, "column": ["*"]}},
        {"name": "mysqlwriter", "parameter": writer},
        limit=1,  # the second dirty record fails the run
    )


def _mysql_tables(db: MyDb, secret: str) -> None:
    db.execute(
        "CREATE TABLE src (id INT, v VARCHAR(40))",
        # the secret as data too: a dirty record holding it is masked like any output
        f"INSERT INTO src VALUES (1, 'ok'), (2, 'much too long'), (3, '{secret}')",
        "CREATE TABLE dst (id INT, v VARCHAR(5))",
    )


def test_mysql_passwords_by_parameter_and_in_urls_are_masked(
    mysql_db: MyDb, secret_user: tuple[str, str], tmp_path: Path
) -> None:
    user, secret = secret_user
    out = Outputs(secret, [tmp_path])
    _mysql_tables(mysql_db, secret)
    job = _mysql_job(out, mysql_db, tmp_path / "job.json", user, "${pw}")
    said = out.tidesync(
        "run", str(job), "-p", f"pw={secret}", "--report", "r.json", cwd=tmp_path, code=1
    )
    assert "error limit exceeded" in said
    dirty = (tmp_path / "r.dirty.jsonl").read_text()
    assert dirty.count("\n") == 2 and "***" in dirty  # the row holding the secret, masked
    s = mysql_db.server
    raw_url = f"mysql://{user}:{secret}@{s.host}:{s.port}/{mysql_db.name}"
    bad = _mysql_job(out, mysql_db, tmp_path / "bad.json", user, "${pw}", url=raw_url)
    said = out.tidesync("validate", str(bad), "-p", f"pw={secret}", cwd=tmp_path, code=2)
    assert "mysql://***@" in said
    assert out.leaks() == []


def test_a_password_in_a_url_query_string_is_masked_whatever_it_holds(tmp_path: Path) -> None:
    secret = new_secret()
    out = Outputs(secret, [tmp_path])
    for kind, url in (
        ("mysql", "jdbc:mysql://127.0.0.1:3306?user=etl&password=p,{pw}"),  # no database
        ("postgresql", "jdbc:postgresq://127.0.0.1:5432/db?user=etl&password=p,{pw}"),
        ("postgresql", "jdbc:postgresq://127.0.0.1:5432/db?user=etl&password=p,${{pw}}"),
    ):
        job = out.job(
            tmp_path / f"{kind}.json",
            _rows("x"),
            {
                "name": f"{kind}writer",
                "parameter": {"connection": [{"jdbcUrl": url.format(pw=secret), "table": ["t"]}]},
            },
        )
        said = out.tidesync("validate", str(job), "-p", f"pw={secret}", cwd=tmp_path, code=2)
        assert "?user=etl&password=***" in said
    assert out.leaks() == []


def test_a_quote_in_a_url_password_of_a_job_or_of_the_state_store_is_masked(
    pg: PgDb, tmp_path: Path
) -> None:
    secret = new_secret()
    out = Outputs(secret, [tmp_path])
    password = f"it's,{secret}"  # a quote is allowed unencoded in a URL's userinfo
    rest = pg.jdbc.split("//", 1)[1]
    (tmp_path / "tidesync.yaml").write_text(
        f'state: "postgresql://postgres:{password}@{rest}"\n', encoding="utf-8"
    )
    out.inputs.add(tmp_path / "tidesync.yaml")
    job = out.job(
        tmp_path / "job.json",
        _rows("x"),
        {
            "name": "postgresqlwriter",
            "parameter": {
                "connection": [{"jdbcUrl": f"jdbc:postgresq://postgres:{password}@{rest}"}],
                "table": ["t"],
            },
        },
    )
    said = out.tidesync("-v", "validate", str(job), cwd=tmp_path, code=2)
    assert "jdbc:postgresq://***@" in said and "state store" not in said
    out.job(tmp_path / "job.json", _rows("x"), {"name": "streamwriter", "parameter": {}})
    said = out.tidesync("-v", "run", str(job), "--report", "r.json", cwd=tmp_path, code=0)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["state"] == f"postgresql postgresql://***@{rest}"
    (tmp_path / "tidesync.yaml").write_text(  # a store kind tidesync has not
        f'state: "mysql://etl:{password}@db/x"\n', encoding="utf-8"
    )
    said = out.tidesync("run", str(job), cwd=tmp_path, code=2)
    assert "state: 'mysql://***@db/x' is neither" in said
    assert out.leaks() == []


@pytest.mark.parametrize("command", [["instances"], ["scheduler", "run-once"], ["nodes"]])
def test_a_state_url_the_driver_cannot_parse_is_refused_with_its_password_masked(
    pg: PgDb, tmp_path: Path, command: list[str]
) -> None:
    secret = secrets.token_hex(8)
    out = Outputs(secret, [tmp_path])
    hostport = pg.url.split("://", 1)[1].split("@", 1)[-1].split("?")[0]
    state = f"postgresql://postgres:ab%zz{secret}@{hostport}"  # '%zz' is no escape: refused
    (tmp_path / "tidesync.yaml").write_text(f'state: "{state}"\nnodes: []\n', encoding="utf-8")
    out.inputs.add(tmp_path / "tidesync.yaml")
    said = out.tidesync(*command, "--project", str(tmp_path), cwd=tmp_path, code=1)
    assert "invalid percent-encoded token" in said and "Traceback" not in said
    assert out.leaks() == []


def test_a_quote_in_the_state_store_password_is_masked_on_the_operations_page(
    pg: PgDb, tmp_path: Path
) -> None:
    from tests.scheduler._helpers import write_project
    from tests.web._client import serve

    secret = new_secret()
    out = Outputs(secret, [tmp_path])
    hostport = pg.url.split("://", 1)[1].split("@", 1)[-1].split("?")[0]
    state = f"postgresql://postgres:it's,{quote(secret, safe='')}@{hostport}?options=-csearch_path%3D{pg.schema}"
    node = {"name": "n", "schedule": {"every": "day", "start_date": "2025-01-01"}}
    out.inputs.add(write_project(tmp_path, [node], state=state))
    out.inputs.add(tmp_path / "jobs" / "n.json")
    out.tidesync("scheduler", "run-once", "--at", "20250101000000", cwd=tmp_path, code=0)
    with serve(tmp_path) as c:  # as the page runs: it meets the URL in the project file only
        for path in ("/nodes", "/nodes/n", "/api/nodes", "/api/instances"):
            r = c.get(path, headers={"Accept": "text/html"} if "/api/" not in path else {})
            assert r.status == 200, r.text[:300]
            out.printed.append(r.text)
    assert f"postgresql://***@{hostport}" in out.printed[1]
    assert out.leaks() == []


def test_a_recover_target_holding_credentials_is_masked(tmp_path: Path) -> None:
    secret = secrets.token_hex(8)  # a '/' in it would cut the URL's userinfo short
    out = Outputs(secret, [tmp_path])
    for target in (f"s3://AKIAX:{secret}@bucket/x", f"s3://AKIAX:it's,{secret}@b/x"):
        said = out.tidesync("-vv", "recover", target, cwd=tmp_path, code=2)
        assert "***@b" in said
    assert out.leaks() == []


# -- S3 ----------------------------------------------------------------------------------------


def test_s3_credentials_in_paths_endpoints_and_parameters_are_masked(
    s3_server: S3Server, bucket: str, tmp_path: Path
) -> None:
    secret = s3_server.secret
    assert len(secret) >= 20
    out = Outputs(secret, [tmp_path])
    s3_server.put(bucket, "in.csv", "id,name\n1,a\nx,b\n")
    csv_out = {"name": "txtfilewriter", "parameter": {"path": "out", "fileName": "o"}}
    columns = [{"index": 0, "type": "long"}, {"index": 1, "type": "string"}]
    base = {"fileFormat": "csv", "skipHeader": True, "column": columns, "maxRetries": 0}
    key, host = s3_server.key_id, s3_server.endpoint.split("//", 1)[1]
    in_path = {**base, "path": f"s3://{key}:{secret}@{bucket}/in.csv"}
    in_endpoint = {
        **base,
        "endpoint": f"http://{key}:{secret}@{host}",
        "path": f"s3://{bucket}/in.csv",
    }
    by_param = {
        **base,
        "endpoint": s3_server.endpoint,
        "accessKeyId": key,
        "accessKeySecret": "${pw}",
        "path": f"s3://{bucket}/in.csv",
    }
    for name, reader, code in (("path", in_path, 2), ("endpoint", in_endpoint, 2)):
        job = out.job(
            tmp_path / f"{name}.json", {"name": "txtfilereader", "parameter": reader}, csv_out
        )
        said = out.tidesync(
            "run", str(job), "--report", f"{name}.json.report", cwd=tmp_path, code=code
        )
        assert "holds credentials" in said and "://***@" in said
    job = out.job(
        tmp_path / "param.json", {"name": "txtfilereader", "parameter": by_param}, csv_out
    )
    said = out.tidesync(
        "run", str(job), "-p", f"pw={secret}", "--report", "p.json", cwd=tmp_path, code=1
    )
    assert "error limit exceeded" in said and (tmp_path / "p.dirty.jsonl").exists()
    assert out.leaks() == []


# -- the archiver ------------------------------------------------------------------------------


def test_broker_credentials_of_an_archive_policy_are_masked(tmp_path: Path) -> None:
    secret = new_secret()
    out = Outputs(secret, [tmp_path])
    policies = tmp_path / "policies.yaml"
    source = {
        "type": "nats",
        "url": f"nats://etl:{quote(secret, safe='')}@127.0.0.1:4222",
        "stream": f"NO_SUCH_{secrets.token_hex(4)}",  # the run stops: the stream is missing
        "subject": "x.>",
        "durable": "d",
        "token": secret,
    }
    target = {"path": "out", "fileName": "m"}
    doc = {
        "policies": [
            {
                "name": "p",
                "source": source,
                "generateBy": "systemTime",
                "pathFormat": "YYYYMMDD",
                "target": target,
            }
        ]
    }
    policies.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out.inputs.add(policies)
    said = out.tidesync(
        "-vv", "archive", "run", str(policies), "--exit-when-idle", "1", cwd=tmp_path, code=1
    )
    assert "policy p: archiving nats://***@127.0.0.1:4222" in said and "does not exist" in said
    assert out.leaks() == []


# -- the scheduler -----------------------------------------------------------------------------


def test_a_node_parameter_reaching_a_password_is_masked_in_logs_show_and_the_store(
    mysql_db: MyDb, secret_user: tuple[str, str], pg: PgDb, tmp_path: Path
) -> None:
    user, secret = secret_user
    out = Outputs(secret, [tmp_path])
    _mysql_tables(mysql_db, secret)
    _mysql_job(out, mysql_db, tmp_path / "jobs" / "my.json", user, "${pw}")
    pg.sql("CREATE TABLE {s}.t (v text)")
    out.job(
        tmp_path / "jobs" / "pg.json",
        _rows("x"),
        {
            "name": "postgresqlwriter",
            "parameter": {
                "connection": [{"jdbcUrl": pg.jdbc, "table": ["t"]}],
                "username": "postgres",
                "password": "${pw}",
                "preSql": ["select '${pw}'::int"],
            },
        },
    )
    nodes = [
        {
            "name": name,
            "job": f"jobs/{name}.json",
            "params": f"pw={secret} day=${{yyyymmdd}}",
            "retries": 1,
            "retry_on": "any",
            "retry_interval": 0,
            "schedule": {"every": "day"},
        }
        for name in ("my", "pg")
    ]
    (tmp_path / "tidesync.yaml").write_text(
        yaml.safe_dump({"timezone": "UTC", "nodes": nodes}), encoding="utf-8"
    )
    out.inputs.add(tmp_path / "tidesync.yaml")
    project = ["--project", str(tmp_path)]
    out.tidesync("scheduler", "run-once", "--at", "20250101000000", *project, cwd=tmp_path, code=1)
    listing = out.tidesync("instances", *project, cwd=tmp_path, code=0)
    assert listing.count("failed") == 2
    for i in ("1", "2"):
        shown = out.tidesync("instance", "show", i, *project, cwd=tmp_path, code=0)
        assert "pw=***" in shown and "day=20241231" in shown
        log = out.tidesync("instance", "log", i, *project, cwd=tmp_path, code=0)
        assert "param pw=***" in log and "attempt 2" in log
    out.tidesync("nodes", "--json", *project, cwd=tmp_path, code=0)
    assert list((tmp_path / ".tidesync").glob("*.db"))  # the state store is searched too
    assert out.leaks() == []


def test_node_parameters_are_masked_while_the_job_file_does_not_read(tmp_path: Path) -> None:
    secret = new_secret()
    out = Outputs(secret, [tmp_path])
    job = tmp_path / "jobs" / "n.json"
    job.parent.mkdir()
    job.write_text('{"job": {"content": [{"writer": {"password": "${pw}"}}', encoding="utf-8")
    out.inputs.add(job)  # a brace short: which parameter reaches a password is not known
    node = {"name": "n", "job": "jobs/n.json", "params": f"pw={secret} day=${{yyyymmdd}}"}
    (tmp_path / "tidesync.yaml").write_text(
        yaml.safe_dump({"timezone": "UTC", "nodes": [{**node, "schedule": {"every": "day"}}]}),
        encoding="utf-8",
    )
    out.inputs.add(tmp_path / "tidesync.yaml")
    project = ["--project", str(tmp_path)]
    said = out.tidesync("scheduler", "run-once", "--at", "20250101000000", *project, cwd=tmp_path)
    assert "invalid JSON" in said
    shown = out.tidesync("instance", "show", "1", *project, cwd=tmp_path, code=0)
    assert "pw=***" in shown
    out.tidesync("instance", "log", "1", *project, cwd=tmp_path, code=0)
    out.tidesync("nodes", "--json", *project, cwd=tmp_path, code=0)
    assert out.leaks() == []
