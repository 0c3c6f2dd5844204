"""Two schedulers sharing one PostgreSQL state store: each instance runs exactly once."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidesync.scheduler.daemon import Scheduler
from tidesync.scheduler.project import load_project
from tidesync.scheduler.store import PostgresStore

from ._helpers import ManualClock, at, stream_job, write_project
from ._pg import fresh_database

TIDESYNC = str(Path(sys.executable).parent / "tidesync")


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


def shared_project(root: Path, url: str, *, print_rows: bool = False) -> Path:
    # runs are short (the rate limit allows one second of burst); the two schedulers still overlap
    stream_job(
        root / "jobs" / "row.json",
        value="ROW $cyctime ${node}",
        print_rows=print_rows,
        records=2,
        record_rate=50,
    )
    write_project(
        root,
        [
            {
                "name": "minutely",
                "job": "jobs/row.json",
                "params": "node=minutely",
                "schedule": {"every": "minute", "start_date": "2025-01-01"},
            },
            {
                "name": "fives",
                "job": "jobs/row.json",
                "params": "node=fives",
                "self_dependent": True,
                "schedule": {"every": "5 minutes", "start_date": "2025-01-01"},
            },
            {
                "name": "gate",
                "dry_run": True,
                "depends_on": ["fives"],
                "schedule": {"every": "15 minutes", "start_date": "2025-01-01"},
            },
        ],
        state=url,
        scheduler={"poll": "0.05s", "lease": "30s"},
        catchup="all",
    )
    return root


def test_two_daemons_run_each_instance_exactly_once(tmp_path: Path, pg_url: str) -> None:
    root = shared_project(tmp_path, pg_url)
    clock = ManualClock(at("202501010129"))  # 90 + 18 + 6 instances due
    daemons = [
        Scheduler(load_project(root), PostgresStore(pg_url), clock=clock, workers=4)
        for _ in range(2)
    ]
    threads = [threading.Thread(target=d.serve) for d in daemons]
    for t in threads:
        t.start()
    watcher = PostgresStore(pg_url)
    try:
        end = time.monotonic() + 25
        while time.monotonic() < end:
            rows = watcher.listing()
            if len(rows) == 114 and all(r.state in ("succeeded", "skipped") for r in rows):
                break
            time.sleep(0.05)
    finally:
        for d in daemons:
            d.stop()
        for t in threads:
            t.join(timeout=20)
    rows = watcher.listing()
    watcher.close()
    for d in daemons:
        d.store.close()
    assert len(rows) == 114
    assert {(r.state, r.attempts) for r in rows} <= {("succeeded", 1), ("skipped", 1)}
    ran = [o.id for d in daemons for o in d.outcomes]
    assert sorted(ran) == sorted(r.id for r in rows)  # all of them, none twice
    for r in rows:
        if r.log_path:
            assert Path(r.log_path).read_text().count(" attempt 1 of ") == 1


def test_two_run_once_processes_run_each_instance_exactly_once(tmp_path: Path, pg_url: str) -> None:
    root = shared_project(tmp_path, pg_url, print_rows=True)
    env = {**os.environ, "TIDESYNC_PROJECT": str(root)}
    cmd = [TIDESYNC, "scheduler", "run-once", "--at", "20250101005900", "--workers", "3"]
    procs = [
        subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    printed = Counter(
        line for out, _ in outs for line in out.splitlines() if line.startswith("ROW ")
    )
    expected = {f"ROW 2025010100{m:02d}00 minutely" for m in range(60)} | {
        f"ROW 2025010100{m:02d}00 fives" for m in range(0, 60, 5)
    }
    assert set(printed) == expected
    assert set(printed.values()) == {2}  # each job (2 rows) ran once, in one of the processes
