"""The PostgreSQL server of the integration tests, and a fresh schema per test.

Import the fixtures into a test module (``from tests.integration._servers_pg import
pg_fixture, pg_server  # noqa: F401``); tests then ask for ``pg``. ``pg_server`` skips when no server answers at ``TIDESYNC_PG_URL``
(default ``postgresql://postgres@127.0.0.1:5432/test``), except under ``CI=true``, where a missing
server fails the test. ``pg`` creates a schema ``ts_test_<random>`` and drops it afterwards, so
tests can run beside others against the same server.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

PG_URL = os.environ.get("TIDESYNC_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_server() -> str:
    try:
        import psycopg

        psycopg.connect(PG_URL, connect_timeout=3).close()
    except Exception as e:  # noqa: BLE001 - any failure means: no server to test against
        msg = f"PostgreSQL not reachable at {PG_URL}: {type(e).__name__}: {str(e).strip()[:200]}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(msg + " (CI=true: the server is required)")
        pytest.skip(msg)
    return PG_URL


@dataclass
class PgDb:
    """A schema of its own on the test server."""

    con: Any  # psycopg connection, autocommit
    schema: str
    url: str  # postgresql://... of the server

    @property
    def host_port_db(self) -> str:
        from tidesync.connectors.postgresql.conn import parse_url

        return parse_url(self.url).label

    @property
    def jdbc(self) -> str:
        """A jdbcUrl whose search_path is this schema (unqualified names resolve in it)."""
        rest = self.url.split("://", 1)[1].split("@", 1)[-1]
        return f"jdbc:postgresql://{rest}?currentSchema={self.schema}"

    def q(self, name: str) -> str:
        """The schema-qualified, quoted name of a table in this schema."""
        return f'"{self.schema}"."{name}"'

    def sql(self, *stmts: str, params: Any = None) -> None:
        for s in stmts:
            self.con.execute(s.replace("{s}", f'"{self.schema}"'), params)

    def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        return self.con.execute(query.replace("{s}", f'"{self.schema}"'), params).fetchall()

    def reader_params(self, **kw: Any) -> dict[str, Any]:
        """DataX-shaped reader parameters for tables of this schema."""
        tables = kw.pop("table", None)
        conn: dict[str, Any] = {"jdbcUrl": [self.jdbc]}
        if tables is not None:
            conn["table"] = tables if isinstance(tables, list) else [tables]
        if "querySql" in kw:
            conn["querySql"] = kw.pop("querySql")
        return {"username": "postgres", "connection": [conn], **kw}

    def writer_params(self, table: str, **kw: Any) -> dict[str, Any]:
        return {
            "username": "postgres",
            "connection": [{"jdbcUrl": self.jdbc, "table": [table]}],
            **kw,
        }

    def job_file(
        self,
        path: Path,
        reader: dict[str, Any],
        writer: dict[str, Any],
        setting: dict[str, Any] | None = None,
    ) -> Path:
        """A DataX job file from this schema to this schema."""
        doc = {
            "job": {
                "setting": {
                    "speed": {"channel": 2},
                    "errorLimit": {"record": 0},
                    **(setting or {}),
                },
                "content": [
                    {
                        "reader": {"name": "postgresqlreader", "parameter": reader},
                        "writer": {"name": "postgresqlwriter", "parameter": writer},
                    }
                ],
            }
        }
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path


@pytest.fixture(name="pg")
def pg_fixture(pg_server: str) -> Iterator[PgDb]:
    import psycopg

    schema = f"ts_test_{uuid.uuid4().hex[:12]}"
    con = psycopg.connect(pg_server, autocommit=True)
    con.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield PgDb(con, schema, pg_server)
    finally:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
        con.close()


def read_all(reader: Any, n: int = 1) -> tuple[list[Any], pa.Table]:
    """Every split of ``reader`` read in turn: (splits, all rows as one table)."""
    from tidesync.connectors.base import Chunk

    splits = reader.splits(n)
    batches = []
    try:
        for s in splits:
            for item in reader.read(s):
                b = item.batch if isinstance(item, Chunk) else item
                if b is not None and b.num_rows:
                    batches.append(b)
    finally:
        reader.close()
    schema = reader.schema() if not batches else batches[0].schema
    return splits, pa.Table.from_batches(batches, schema=schema)
