"""What survives between runs: incremental cursors, CDC positions (the scheduler keeps its
instances in the same folder).

The default store is a SQLite file ``.tidesync/state.db`` in the project (working) directory,
created on first write. Values are JSON. A cursor is saved only after the writer committed, so a
failed run reads the same window again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

__all__ = ["StateStore", "open_state"]


class StateStore:
    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=30)
        con.execute(
            "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "
            "updated_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, PRIMARY KEY (ns, key))"
        )
        return con

    def get(self, ns: str, key: str, default: Any = None) -> Any:
        if not self.path.exists():
            return default
        with self._lock:
            con = self._connect()
            try:
                row = con.execute(
                    "SELECT value FROM kv WHERE ns = ? AND key = ?", (ns, key)
                ).fetchone()
            finally:
                con.close()
        return json.loads(row[0]) if row else default

    def put(self, ns: str, key: str, value: Any) -> None:
        with self._lock:
            con = self._connect()
            try:
                with con:
                    con.execute(
                        "INSERT INTO kv (ns, key, value) VALUES (?, ?, ?) ON CONFLICT (ns, key) "
                        "DO UPDATE SET value = excluded.value, updated_at = CURRENT_TIMESTAMP",
                        (ns, key, json.dumps(value, default=str)),
                    )
            finally:
                con.close()


def open_state(project_dir: Path) -> StateStore:
    return StateStore(project_dir / ".tidesync" / "state.db")
