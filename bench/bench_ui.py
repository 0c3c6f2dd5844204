"""The operations page at scale: how long its list pages take with many nodes and instances.

    .venv/bin/python bench/bench_ui.py                       # 300 nodes, 100,000 instances, SQLite
    .venv/bin/python bench/bench_ui.py --store postgresql    # the same on PostgreSQL

A project of NODES dry-run nodes, each hourly and each depending on the one before it in groups
of ten (a graph of NODES/10 chains); its store gets INSTANCES instances spread over the nodes
(every 7th failed, one in 500 running, the rest succeeded, each with a run report), written
directly, then the page is served on a free loopback port and each path is fetched over HTTP
REPEAT times. Prints the median and the slowest time of each, in milliseconds.

PostgreSQL: a database of its own on ``--pg-url`` (default $TIDESYNC_BENCH_PG_URL or
postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import yaml

from tidesync.scheduler.store import NewInstance, open_store
from tidesync.web.app import App
from tidesync.web.server import UiServer

TOKEN = "bench"


def make_project(root: Path, nodes: int, state: str | None) -> list[str]:
    names = [f"node_{i:04d}" for i in range(nodes)]
    doc: dict[str, object] = {
        "timezone": "UTC",
        "nodes": [
            {
                "name": n,
                "dry_run": True,
                "schedule": {"every": "hour", "start_date": "2020-01-01"},
                **({"depends_on": [names[i - 1]]} if i % 10 else {}),
            }
            for i, n in enumerate(names)
        ],
    }
    if state:
        doc["state"] = state
    root.mkdir(parents=True, exist_ok=True)
    (root / "tidesync.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return names


def fill(root: Path, state: str | None, names: list[str], count: int) -> None:
    store = open_store(state, root / ".tidesync")
    per = -(-count // len(names))
    t0 = 1_577_836_800.0  # 2020-01-01 00:00 UTC
    made = 0
    for name in names:
        rows = []
        for k in range(min(per, count - made)):
            at = t0 + k * 3600
            cyc = time.strftime("%Y%m%d%H%M%S", time.gmtime(at))
            biz = time.strftime("%Y%m%d", time.gmtime(at - 86400))
            st = "failed" if k % 7 == 0 else "running" if k % 500 == 1 else "succeeded"
            rows.append(NewInstance(name, cyc, biz, at, {"filename": cyc[:12]}, state=st))
        made += len(rows)
        store.create(name, rows, t0 + per * 3600, t0)
    report = json.dumps(
        {"status": "succeeded", "records_read": 1000, "elapsed_s": 1.5, "records_per_s": 666.7}
    )
    with store._tx() as cur:  # reports and times for every row, in one statement
        store._exec(
            cur,
            "UPDATE ts_instances SET report = ?, started_at = due_at, "
            "finished_at = due_at + 1.5, attempts = 1",
            (report,),
        )
    store.close()


def fetch(port: int, path: str) -> float:
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    t = time.perf_counter()
    con.request("GET", path, headers={"Authorization": f"Bearer {TOKEN}", "Accept": "text/html"})
    r = con.getresponse()
    r.read()
    took = time.perf_counter() - t
    con.close()
    if r.status != 200:
        raise SystemExit(f"{path}: HTTP {r.status}")
    return took * 1000


def bench(root: Path, state: str | None, nodes: int, count: int, repeat: int) -> None:
    names = make_project(root, nodes, state)
    t = time.perf_counter()
    fill(root, state, names, count)
    print(f"store filled: {count:,} instances of {nodes} nodes in {time.perf_counter() - t:.1f}s")
    server = UiServer(App(root, TOKEN), "127.0.0.1", 0).start()
    mid = names[len(names) // 2]
    paths = [
        "/nodes",
        "/api/nodes",
        f"/nodes/{mid}",
        "/instances",
        "/api/instances",
        f"/instances?node={mid}",
        "/instances?state=failed",
        "/instances?state=running",
        "/instances?from=20200105&to=20200106",
        f"/instances?node={mid}&state=failed&from=20200101&to=20200110",
        "/instances?page=1000",
        "/instances/50000",
        "/api/instances/50000/log",
    ]
    try:
        fetch(server.port, "/nodes")  # warm up
        print(f"{'path':<58} {'median ms':>10} {'max ms':>8}")
        for p in paths:
            took = [fetch(server.port, p) for _ in range(repeat)]
            print(f"{p:<58} {statistics.median(took):>10.1f} {max(took):>8.1f}")
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=300)
    ap.add_argument("--instances", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get(
            "TIDESYNC_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
        ),
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.store == "sqlite":
            bench(Path(tmp), None, args.nodes, args.instances, args.repeat)
            return
        import psycopg

        name = f"ts_bench_ui_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(args.pg_url, autocommit=True) as con:
            con.execute(f'CREATE DATABASE "{name}"')
        url = urlunsplit(urlsplit(args.pg_url)._replace(path=f"/{name}"))
        try:
            bench(Path(tmp), url, args.nodes, args.instances, args.repeat)
        finally:
            with psycopg.connect(args.pg_url, autocommit=True) as con:
                con.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
