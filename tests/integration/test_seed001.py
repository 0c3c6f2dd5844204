"""Seed 001's three strategies end to end against MariaDB (examples/seed001/run_seed.py): daily
log partitions, daily full copies, and an incremental result table that loses the deleted user;
running the second day twice leaves every target unchanged."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from tests.integration._servers_mysql import MyDb, mysql_db, mysql_server  # noqa: F401

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed001" / "run_seed.py"


def example() -> ModuleType:
    try:
        import tidesync.connectors.mysql  # noqa: F401
    except ImportError as e:
        pytest.skip(f"the mysql connector is not usable yet: {e}")
    spec = importlib.util.spec_from_file_location("run_seed", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_seed001_targets_after_two_days_and_a_rerun(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    s = mysql_db.server
    if (s.host, s.port, s.user, s.password) != ("127.0.0.1", 3306, "root", ""):
        pytest.skip("the seed001 job files name the server 127.0.0.1:3306 as root")
    run_seed = example()
    run_seed.IN_PROCESS = True  # the same jobs and cyctimes, without a process per run
    first, again = run_seed.run(mysql_db.name, tmp_path / "work")
    assert run_seed.check(first) == []
    assert again == first
    assert (5, "Lily", 104, "F") not in first["dw.dw_user_inc"][None]
