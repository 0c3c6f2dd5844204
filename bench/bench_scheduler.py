"""The scheduler's overhead: instances created and run per second, SQLite and PostgreSQL stores.

    .venv/bin/python bench/bench_scheduler.py --count 10000
    .venv/bin/python bench/bench_scheduler.py --count 2000 --store sqlite --kind dry

One node every minute from 2025-01-01 00:00 UTC; ``run-once`` at the minute of the COUNT-th slot
creates COUNT instances, then runs them all. Two kinds of trivial instance:

* ``dry``: a ``dry_run: true`` node: the instance is claimed and ends 'skipped' without a job;
  this is the scheduler alone (create, claim, finish).
* ``job``: a stream -> stream job of one row, ``print: false``: the scheduler plus a real
  (empty-handed) job run: parameters evaluated, job file parsed, engine started, report and log
  written. ``direct`` is the same job run COUNT times by ``run_job`` with no scheduler, for scale.

PostgreSQL: a database of its own on ``--pg-url`` (default $TIDESYNC_BENCH_PG_URL or
postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards; skipped if unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

from tidesync.scheduler.daemon import Scheduler
from tidesync.scheduler.project import load_project

START = datetime(2025, 1, 1, tzinfo=UTC)
JOB = {
    "job": {
        "setting": {"speed": {"channel": 1}},
        "content": [
            {
                "reader": {
                    "name": "streamreader",
                    "parameter": {
                        "column": [{"type": "string", "value": "${filename}"}],
                        "sliceRecordCount": 1,
                    },
                },
                "writer": {"name": "streamwriter", "parameter": {"print": False}},
            }
        ],
    }
}


def project(root: Path, kind: str, state: str | None, workers: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "job.json").write_text(json.dumps(JOB))
    node: dict[str, Any] = {
        "name": "trivial",
        "params": "filename=$[yyyymmddhh24mi]",
        "schedule": {"every": "minute", "start_date": "2025-01-01"},
        "catchup": "all",
    }
    if kind == "dry":
        node["dry_run"] = True
    else:
        node["job"] = "job.json"
    doc: dict[str, Any] = {"timezone": "UTC", "scheduler": {"workers": workers}, "nodes": [node]}
    if state:
        doc["state"] = state
    (root / "tidesync.yaml").write_text(yaml.safe_dump(doc))
    return root


def measure(root: Path, count: int) -> dict[str, float]:
    sched = Scheduler(load_project(root), yes=True)  # --count may pass the create limit
    at = START + timedelta(minutes=count - 1)
    t0 = time.perf_counter()
    created = sched.create_due(at)
    t1 = time.perf_counter()
    outcomes = sched.run_once(at)
    t2 = time.perf_counter()
    sched.store.close()
    ok = sum(o.state in ("succeeded", "skipped") for o in outcomes)
    if created != count or ok != count:
        raise SystemExit(f"expected {count} instances, created {created}, {ok} ran fine")
    return {"create_s": t1 - t0, "run_s": t2 - t1, "total_s": t2 - t0}


def direct(root: Path, count: int) -> float:
    from tidesync.engine.runner import load_job, run_job
    from tidesync.spec.params import RunTime

    t0 = time.perf_counter()
    for i in range(count):
        rt = RunTime.of(START + timedelta(minutes=i))
        rep = run_job(load_job(root / "job.json", {"filename": f"{i}"}, rt))
        assert rep.status == "succeeded"
    return time.perf_counter() - t0


def pg_database(url: str) -> tuple[str, str] | None:
    try:
        import psycopg

        with psycopg.connect(url, autocommit=True, connect_timeout=3) as con:
            name = f"ts_bench_{uuid.uuid4().hex[:10]}"
            con.execute(f'CREATE DATABASE "{name}"')
    except Exception as e:  # noqa: BLE001 - any reason: report and skip
        print(f"postgresql: skipped ({type(e).__name__}: {e})".strip())
        return None
    return name, urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def drop_database(url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> int:
    ap = argparse.ArgumentParser(description="Scheduler overhead: instances per second.")
    ap.add_argument("--count", type=int, default=10_000, help="instances per measurement")
    ap.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    ap.add_argument("--kind", choices=("dry", "job", "both"), default="both")
    ap.add_argument("--workers", type=int, default=4, help="instances run at once")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "TIDESYNC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    stores = ["sqlite", "postgresql"] if a.store == "both" else [a.store]
    kinds = ["dry", "job"] if a.kind == "both" else [a.kind]
    results: list[dict[str, Any]] = []
    print(f"{a.count:,} instances, {a.workers} workers, {os.cpu_count()} CPUs")
    print(
        f"{'store':<11} {'kind':<5} {'create/s':>10} {'run/s':>10} {'total/s':>10} "
        f"{'per instance':>13}"
    )
    with tempfile.TemporaryDirectory(prefix="ts-bench-sched-") as tmp:
        for store in stores:
            db = None
            if store == "postgresql":
                db = pg_database(a.pg_url)
                if db is None:
                    continue
            try:
                for kind in kinds:
                    root = project(
                        Path(tmp) / f"{store}-{kind}", kind, db[1] if db else None, a.workers
                    )
                    if db:  # one database per run: start from an empty store
                        drop_database(a.pg_url, db[0])
                        db = pg_database(a.pg_url)
                        assert db is not None
                        project(root, kind, db[1], a.workers)
                    m = measure(root, a.count)
                    row = {
                        "store": store,
                        "kind": kind,
                        "count": a.count,
                        **m,
                        "created_per_s": a.count / m["create_s"],
                        "run_per_s": a.count / m["run_s"],
                        "total_per_s": a.count / m["total_s"],
                    }
                    results.append(row)
                    print(
                        f"{store:<11} {kind:<5} {row['created_per_s']:>10,.0f} "
                        f"{row['run_per_s']:>10,.0f} {row['total_per_s']:>10,.0f} "
                        f"{1000 * m['total_s'] / a.count:>10.2f} ms",
                        flush=True,
                    )
            finally:
                if db:
                    drop_database(a.pg_url, db[0])
        if "job" in kinds:
            n = min(a.count, 2000)
            root = project(Path(tmp) / "direct", "job", None, a.workers)
            secs = direct(root, n)
            results.append(
                {
                    "store": "-",
                    "kind": "direct",
                    "count": n,
                    "total_s": secs,
                    "total_per_s": n / secs,
                }
            )
            print(
                f"{'-':<11} {'direct':<5} {'':>10} {'':>10} {n / secs:>10,.0f} "
                f"{1000 * secs / n:>10.2f} ms   (run_job alone, {n:,} runs, one at a time)"
            )
    if a.json:
        a.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
