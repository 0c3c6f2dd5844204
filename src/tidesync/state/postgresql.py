"""The PostgreSQL state backend: table ``ts_state`` in the database ``state:`` names, beside
the scheduler's tables, so that every machine of a shared schedule sees the same cursors and
checkpoints.

One connection (autocommit), opened on first use and shared under a lock; it is opened again
when the server dropped it. ``compare_and_set`` is one conditional UPDATE: when two machines
race, PostgreSQL's row lock makes the second wait, re-read the row, find the version moved on,
and update nothing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from tidesync.errors import ConfigError, FatalError, redact, redact_url
from tidesync.state.base import DDL, SqlState, wait_for_hold

__all__ = ["PostgresState"]

_DDL_LOCK = 7_302_114_152  # pg_advisory_xact_lock key: one process creates the table


class PostgresState(SqlState):
    placeholder = "%s"

    def __init__(self, url: str):
        self.url = url  # as written: ${env:NAME} references unresolved, for describe()
        self._con: Any = None
        self._lock = threading.RLock()

    def describe(self) -> str:
        return f"postgresql {redact_url(self.url)}"

    def hold(self, ns: str, key: str) -> Callable[[], None]:
        """An exclusive hold on ``key`` across every machine sharing this store: a session
        advisory lock on a connection of its own, until the release is called or the
        connection ends (a killed run never leaves it held). Waits while another holds it."""
        import psycopg

        digest = hashlib.sha256(f"tidesync\0{ns}\0{key}".encode()).digest()
        lock_id = int.from_bytes(digest[:8], "big", signed=True)
        con = self._connect()
        what = f"state {self.describe()}, {key!r}"

        def take() -> bool:
            try:
                row = con.execute("SELECT pg_try_advisory_lock(%s)", (lock_id,)).fetchone()
            except psycopg.Error as e:
                raise FatalError(f"{what}: {redact(str(e)).strip()}") from None
            return bool(row and row[0])

        try:
            wait_for_hold(take, what)
        except BaseException:
            con.close()
            raise
        release: Callable[[], None] = con.close
        return release

    def close(self) -> None:
        with self._lock:
            con, self._con = self._con, None
        if con is not None:
            con.close()

    def _connect(self) -> Any:
        try:
            import psycopg
        except ModuleNotFoundError:
            raise ConfigError(
                "state: a PostgreSQL state store needs psycopg: pip install 'tidesync[postgresql]'"
            ) from None
        from tidesync.connections import resolve_secrets

        try:
            con = psycopg.connect(
                resolve_secrets(self.url, "state"), autocommit=True, connect_timeout=10
            )
            with con.transaction(), con.cursor() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_DDL_LOCK,))
                cur.execute(DDL)
        except psycopg.Error as e:
            raise FatalError(
                f"state: cannot use the PostgreSQL state store {self.describe()[11:]}: "
                f"{redact(str(e)).strip()}"
            ) from None
        return con

    @contextmanager
    def _cursor(self, write: bool | None) -> Iterator[Any]:
        import psycopg

        with self._lock:
            if self._con is None or self._con.closed:
                self._con = self._connect()
            try:
                with self._con.cursor() as cur:
                    yield cur
            except psycopg.OperationalError as e:
                self._con.close()
                self._con = None
                raise FatalError(
                    f"state {self.describe()}: connection lost: {redact(str(e)).strip()}"
                ) from None
