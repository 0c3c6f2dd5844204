"""The SQLite state backend: one file (by default ``.tidesync/state.db`` in the project).

A connection per call, so threads and processes share the file safely; WAL lets readers go on
while one writer writes, and SQLite serializes writers, which makes each conditional UPDATE
of ``compare_and_set`` atomic. The file is created on the first write: reading a project that
never saved anything creates nothing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from tidesync.errors import FatalError
from tidesync.state.base import DDL, SqlState

__all__ = ["SqliteState"]

_BUSY_MS = 60_000


class SqliteState(SqlState):
    def __init__(self, path: Path):
        self.path = Path(path)
        self._ready = False
        self._lock = threading.Lock()

    def describe(self) -> str:
        return f"sqlite {self.path}"

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
