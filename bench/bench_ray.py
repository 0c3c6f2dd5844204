"""The Ray executor against the local pool, on this machine, in one process.

    .venv/bin/python bench/bench_ray.py --rows 2000000 --runs 3

1. Overhead: the same job (bench_file's CSV -> Parquet data, 4 files) with ``executor: local``
   and ``executor: ray`` on a local Ray started once here, alternately, once Ray's workers are
   warm (the first run on a fresh Ray, which starts them, is printed apart); prints each and the
   ratio local time / Ray time (1.0: no overhead; target at least 0.8).
2. Scaling: a job of 8 splits whose reader is capped at ``--cap`` rows/s per split (standing for
   a node whose own throughput is the limit), run with 1, 2, 4 and 8 workers; prints the
   speed-up over one worker (8 is linear; target at least 7 at 8 workers), after one untimed
   run that starts the 8 workers.

Figures are wall times of ``run_job`` around each job (planning, tasks, commit).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))

from tidesync.connectors import base  # noqa: E402

HERE = Path(__file__).parent
OUT = HERE / "data" / "ray_out"


class Capped(base.Reader):
    """``splits`` splits of ``rows`` rows each, yielded at no more than ``cap`` rows/s per split
    (one int64 column, the same batch again: the reader costs next to nothing but time)."""

    kind = "capped"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.rows = int(self.p.get("rows", 100_000))
        self.cap = float(self.p.get("cap", 50_000))
        self.count = int(self.p.get("splits", 8))
        self.p.done()

    def schema(self) -> pa.Schema:
        return pa.schema([("id", pa.int64())])

    def splits(self, n: int) -> list[base.Split]:
        return [base.Split(i, f"capped {i}") for i in range(self.count)]

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch]:
        step = 10_000
        batch = pa.record_batch([pa.array(range(step), pa.int64())], names=["id"])
        t0 = time.monotonic()
        for done in range(step, self.rows + 1, step):
            yield batch
            ahead = t0 + done / self.cap - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)


Reader = Capped  # the registry imports this module by name and takes its Reader


def job(path: Path, reader: dict[str, Any], out: Path, concurrent: int) -> Path:
    from _harness import parquet_writer

    doc = {
        "job": {
            "setting": {"speed": {"concurrent": concurrent}},
            "content": [{"reader": reader, "writer": parquet_writer(out, "part.parquet")}],
        }
    }
    path.write_text(json.dumps(doc))
    return path


def run(path: Path, executor: str) -> float:
    from tidesync.engine.runner import load_job, run_job
    from tidesync.spec.params import RunTime

    planned = load_job(path, runtime=RunTime.of("20250101000000"), executor=executor)
    t0 = time.perf_counter()
    rep = run_job(planned)
    dt = time.perf_counter() - t0
    if rep.status != "succeeded":
        raise SystemExit(f"{executor}: {rep.error}")
    return dt


def overhead(rows: int, runs: int) -> None:
    from bench_file import csv_reader, make_data

    reader = csv_reader(make_data(rows))
    path = job(OUT / "csv.json", reader, OUT / "csv", concurrent=4)
    cold = run(path, "ray")  # the first run on a fresh Ray: its workers start and import
    run(path, "ray")  # Ray may give the next run other workers: warm them too
    run(path, "local")
    times: dict[str, list[float]] = {"local": [], "ray": []}
    for _ in range(runs):
        for name in ("local", "ray"):
            times[name].append(run(path, name))
    local, ray = statistics.median(times["local"]), statistics.median(times["ray"])
    ratios = [a / b for a, b in zip(times["local"], times["ray"], strict=True)]
    print(f"CSV -> Parquet, {rows:,} rows, 4 splits, 4 at a time")
    print(f"  local pool  {local:6.2f} s  {rows / local:12,.0f} rows/s")
    print(f"  ray         {ray:6.2f} s  {rows / ray:12,.0f} rows/s")
    print(f"  ray, first run on a fresh Ray (workers start): {cold:.2f} s")
    print(f"  ratio local/ray (median of pairs): {statistics.median(ratios):.2f}  (target >= 0.8)")


def scaling(cap: float, rows: int) -> None:
    base.CONNECTORS["capped"] = "bench_ray"  # workers import it too (the bench folder is on
    # their path: a local Ray gets this process's)
    reader = {"name": "capped", "parameter": {"rows": rows, "cap": cap, "splits": 8}}
    print(f"scaling: 8 splits of {rows:,} rows, each worker capped at {cap:,.0f} rows/s")
    warm = {**reader, "parameter": {**reader["parameter"], "rows": 10_000}}
    run(job(OUT / "warm.json", warm, OUT / "warm", 8), "ray")  # 8 workers started and warm
    first = None
    for workers in (1, 2, 4, 8):
        path = job(OUT / f"capped{workers}.json", reader, OUT / f"capped{workers}", workers)
        dt = run(path, "ray")
        first = first or dt
        speed = 8 * rows / dt
        print(
            f"  {workers} worker(s)  {dt:6.2f} s  {speed:12,.0f} rows/s  "
            f"speed-up {first / dt:4.2f}  (linear {workers})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--cap", type=float, default=50_000, help="rows/s of one capped worker")
    ap.add_argument("--cap-rows", type=int, default=150_000, help="rows of one capped split")
    args = ap.parse_args()
    from tidesync.engine.ray_executor import connect

    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    t0 = time.perf_counter()
    connect(None, 8)  # 8 logical CPUs: the scaling curve runs up to 8 workers at once
    print(f"local Ray started in {time.perf_counter() - t0:.1f} s (once; not in the figures)")
    overhead(args.rows, args.runs)
    scaling(args.cap, args.cap_rows)
    shutil.rmtree(OUT, ignore_errors=True)


if __name__ == "__main__":
    main()
