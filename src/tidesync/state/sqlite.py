"""The SQLite state backend: one file (by default ``.tidesync/state.db`` in the project).

A connection per call, so threads and processes share the file safely; WAL lets readers go on
while one writer writes, and SQLite serializes writers, which makes each conditional UPDATE
of ``compare_and_set`` atomic. The file is created on the first write: reading a project that
never saved anything creates nothing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from tidesync.errors import FatalError
from tidesync.state.base import DDL, SqlState, wait_for_hold

__all__ = ["SqliteState"]

_BUSY_MS = 60_000


class SqliteState(SqlState):
    def __init__(self, path: Path):
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"sqlite {self.path}"

    def hold(self, ns: str, key: str) -> Callable[[], None]:
        """An exclusive hold on ``key`` for this process (``flock`` on a file beside the
        database, ``<db>.holds/<hash>``), until the release is called or the process ends, so a
        killed run never leaves it held. Waits (see ``wait_for_hold``) while another holds it."""
        import fcntl

        folder = self.path.parent / f"{self.path.name}.holds"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            name = hashlib.sha256(f"{ns}\0{key}".encode()).hexdigest()[:32]
            fd = os.open(folder / name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise FatalError(f"state {self.describe()}: cannot hold {key!r}: {e}") from e

        def take() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        try:
            wait_for_hold(take, f"state {self.describe()}, {key!r}")
        except BaseException:
            os.close(fd)
            raise
        return lambda: os.close(fd)

    def close(self) -> None:
        """Nothing stays open between calls."""

    def _connect(self) -> sqlite3.Connection:
        try:
            con = sqlite3.connect(
                self.path, timeout=_BUSY_MS / 1000, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise FatalError(f"state {self.describe()}: {e}") from e
        con.execute(f"PRAGMA busy_timeout = {_BUSY_MS}")
        if not self._ready:
            with self._lock:
                con.execute("PRAGMA journal_mode = WAL")
                con.execute(DDL)
                self._ready = True
        return con

    @contextmanager
    def _cursor(self, write: bool | None) -> Iterator[Any]:
        if not write and not self.path.exists():  # nothing to read or delete
            yield None
            return
        if write:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise FatalError(f"state {self.describe()}: {e}") from e
        with closing(self._connect()) as con:
            cur = con.cursor()
            try:
                yield cur
            except sqlite3.Error as e:
                raise FatalError(f"state {self.describe()}: {e}") from e
            finally:
                cur.close()
