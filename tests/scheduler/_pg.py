"""PostgreSQL for scheduler tests: a database of its own per use, dropped afterwards.

The server is ``$TIDESYNC_TEST_PG_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``,
a role allowed to create databases). When it cannot be reached the test is skipped, saying so,
except under ``CI=true``, where a missing server is a failure.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

from tidesync.errors import redact

URL = os.environ.get("TIDESYNC_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def server_url() -> str:
    """The server's URL; skips (fails under CI=true) when it does not answer."""
    try:
        import psycopg

        psycopg.connect(URL, connect_timeout=3, autocommit=True).close()
    except Exception as e:  # noqa: BLE001 - any reason the server is not there
        msg = (
            f"PostgreSQL is not reachable at {redact(URL)} ({type(e).__name__}: "
            f"{redact(str(e)).strip()}); start one or set TIDESYNC_TEST_PG_URL"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(msg)
        pytest.skip(msg)
    return URL


@contextmanager
def fresh_database(prefix: str = "ts_sched") -> Iterator[str]:
    """Create a uniquely named database, yield its URL, drop it (connections and all)."""
    import psycopg

    server = server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server, autocommit=True) as con:
        con.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(server, autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
