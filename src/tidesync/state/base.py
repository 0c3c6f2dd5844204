"""The SQL both state backends run; a backend gives the connection and the placeholder.

One table, ``ts_state (ns, key, value, version, updated_at)``. Every method is one statement:
``compare_and_set`` is an UPDATE conditional on the version (or an INSERT that does nothing
when the key exists), so the database's row lock decides a race, not the caller.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from tidesync.state import Entry, dumps

_COLS = "ns, key, value, version, updated_at"


class SqlState:
    placeholder = "?"

    # -- what a backend gives ----------------------------------------------------------------
    @contextmanager
    def _cursor(self, write: bool | None) -> Iterator[Any]:
        """A cursor in autocommit mode; None when there is nothing to read (``write`` False) or
        nothing to change (``write`` None: delete)."""
        raise NotImplementedError
        yield

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # -- the protocol ----------------------------------------------------------------------------
    def _run(
        self, sql: str, args: Sequence[Any], write: bool | None = False
    ) -> list[tuple[Any, ...]]:
        with self._cursor(write) as cur:
            if cur is None:
                return []
            cur.execute(sql.replace("?", self.placeholder), tuple(args))
            return list(cur.fetchall()) if cur.description else []

    def get(self, ns: str, key: str) -> Entry | None:
        rows = self._run(f"SELECT {_COLS} FROM ts_state WHERE ns = ? AND key = ?", (ns, key))
        return _entry(rows[0]) if rows else None

    def put(self, ns: str, key: str, value: Any) -> int:
        rows = self._run(
            "INSERT INTO ts_state (ns, key, value, version, updated_at) VALUES (?, ?, ?, 1, ?) "
            "ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value, "
            "version = ts_state.version + 1, updated_at = excluded.updated_at RETURNING version",
            (ns, key, dumps(value), time.time()),
            write=True,
        )
        return int(rows[0][0])

    def compare_and_set(self, ns: str, key: str, expected: int, value: Any) -> int | None:
        if expected < 0:
            raise ValueError(f"expected version must be 0 (absent) or more, got {expected}")
        if expected == 0:
            rows = self._run(
                "INSERT INTO ts_state (ns, key, value, version, updated_at) "
                "VALUES (?, ?, ?, 1, ?) ON CONFLICT (ns, key) DO NOTHING RETURNING version",
                (ns, key, dumps(value), time.time()),
                write=True,
            )
        else:
            rows = self._run(
                "UPDATE ts_state SET value = ?, version = version + 1, updated_at = ? "
                "WHERE ns = ? AND key = ? AND version = ? RETURNING version",
                (dumps(value), time.time(), ns, key, expected),
                write=True,
            )
        return int(rows[0][0]) if rows else None

    def list(self, ns: str | None = None, prefix: str = "") -> list[Entry]:
        sql, args = f"SELECT {_COLS} FROM ts_state WHERE 1 = 1", list[Any]()
        if ns is not None:
            sql += " AND ns = ?"
            args.append(ns)
        if prefix:
            sql += " AND substr(key, 1, ?) = ?"
            args += [len(prefix), prefix]
        return [_entry(r) for r in self._run(sql + " ORDER BY ns, key", args)]

    def delete(self, ns: str, key: str | None = None, prefix: str | None = None) -> int:
        if key is not None and prefix is not None:
            raise ValueError("delete one key or the keys under a prefix, not both")
        sql, args = "DELETE FROM ts_state WHERE ns = ?", list[Any]([ns])
        if key is not None:
            sql += " AND key = ?"
            args.append(key)
        elif prefix:
            sql += " AND substr(key, 1, ?) = ?"
            args += [len(prefix), prefix]
        return len(self._run(sql + " RETURNING key", args, write=None))


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(str(r[0]), str(r[1]), json.loads(r[2]), int(r[3]), float(r[4]))


DDL = (
    "CREATE TABLE IF NOT EXISTS ts_state (ns TEXT NOT NULL, key TEXT NOT NULL, "
    "value TEXT NOT NULL, version BIGINT NOT NULL, updated_at DOUBLE PRECISION NOT NULL, "
    "PRIMARY KEY (ns, key))"
)


#: how long a run waits for another run of the same job to end before it gives up (retriable)
HOLD_WAIT_S = 600.0


def wait_for_hold(try_take: Callable[[], bool], what: str, wait_s: float | None = None) -> None:
    """Call ``try_take`` until it takes the hold; say once that the run waits (and hit the
    ``positions.wait`` test hook); RetriableError after ``wait_s``."""
    import logging

    from tidesync.connectors.publish import hook
    from tidesync.errors import RetriableError

    if try_take():
        return
    hook("positions.wait")
    logging.getLogger("tidesync").info("%s: waiting for another run of this job to end", what)
    wait_s = HOLD_WAIT_S if wait_s is None else wait_s
    deadline = time.monotonic() + wait_s
    while not try_take():
        if time.monotonic() > deadline:
            raise RetriableError(
                f"{what}: another run of this job has held its positions for more than "
                f"{wait_s:.0f} s; nothing was read, run again"
            )
        time.sleep(0.05)
