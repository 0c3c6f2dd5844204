from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scheduler._helpers import file_job, land, write_project

from ._client import Client, serve, tidesync

XSS = "<script>alert(1)</script>"
SECRET = "hunter2-not-shown"
#: a dry-run node downstream of load
DAILY = {
    "name": "daily",
    "depends_on": ["load"],
    "dry_run": True,
    "schedule": {"every": "day", "at": "00:30", "start_date": "2025-01-01"},
}


def make_project(root: Path, **top: object) -> Path:
    """A project with a node that fails (its 02:00 file is missing), a downstream dry-run
    node, and parameters holding markup and a password; run once at 02:00."""
    file_job(root / "jobs" / "load.json")
    load = {
        "name": "load",
        "job": "jobs/load.json",
        "params": {"filename": "$[yyyymmddhh24mi]", "note": XSS, "password": SECRET},
        "schedule": {"every": "hour", "start_date": "2025-01-01"},
    }
    write_project(root, [load, dict(DAILY)], timezone="Asia/Shanghai", catchup="all", **top)
    land(root, "202501010000")
    land(root, "202501010100")
    r = tidesync(root, "scheduler", "run-once", "--at", "20250101020000")
    assert r.exit_code == 1, r.output  # 02:00 failed
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p")


@pytest.fixture
def client(project: Path) -> Iterator[Client]:
    with serve(project) as c:
        yield c
