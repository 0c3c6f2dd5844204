"""mysqlcdc: what the binlog's rows alone do not tell (the server's log replaced, a captured
table's definition changed or replaced) is an error, never changes lost or read wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration._cdc import Capture, rows, state_store
from tests.integration._servers_mysql import MyDb, mysql_db, mysql_server  # noqa: F401
from tests.integration.test_cdc_mysql import cap, row_metadata  # noqa: F401
from tidesync.state import POSITIONS

pytestmark = pytest.mark.integration


def _saved(c: Capture, change: Any) -> None:
    """Change the positions the last run of ``c`` saved (``change`` edits them in place)."""
    store = state_store(c.root)
    [entry] = store.list(POSITIONS)
    v = entry.value
    change(v["positions"]["changes"])
    assert store.compare_and_set(POSITIONS, entry.key, entry.version, v) is not None


def test_a_saved_file_position_past_the_logs_end_is_an_error(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE pe (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["pe"], position="file")
    c.run()

    def past_end(h: dict[str, Any]) -> None:  # as on a server restored from a backup
        f, p = h["spans"][-1][3].rsplit(":", 1)
        h["lo"] = f"{f}:{int(p) + 10**9}"
        h["spans"] = []

    _saved(c, past_end)
    mysql_db.execute("INSERT INTO pe VALUES (1)")
    r = c.run_report()
    assert r.status == "failed"
    assert "but the server's binlog ends at" in r.error and "RESET MASTER" in r.error
