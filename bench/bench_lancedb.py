"""The lancedb writer side by side with LanceDB's own call, on the same in-memory rows (an id, a
text and a 384-dimension float32 vector, the shape of all-MiniLM-L6-v2 embeddings):

a new table: tidesync (``writeMode: append``, a whole job through the engine: splits, channels,
sinks staging Arrow IPC files, one commit) against ``db.create_table(name, data=table)``. (An
index built at commit is the same LanceDB ``create_index`` call either way, so it is not timed.)

    .venv/bin/python bench/bench_lancedb.py --rows 200000 --runs 3

Contenders alternate (A B A B ...) and the medians are printed, with the ratio of speeds (above
1.0: tidesync faster).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tidesync.connectors import base
from tidesync.engine.runner import load_job, run_job
from tidesync.spec.params import RunTime

sys.path.insert(0, str(Path(__file__).parent))
import bench_lake  # noqa: E402
from _harness import report, write_job  # noqa: E402

RT = RunTime.of("20161115000000")
DIM = 384


# the lake benchmark's in-memory reader (kind "benchtable"), imported from its module
base.CONNECTORS["benchtable"] = "bench_lake"


def make_rows(n: int) -> pa.Table:
    rng = np.random.default_rng(0)
    vecs = rng.standard_normal((n, DIM), dtype=np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return pa.table(
        {
            "id": pa.array(np.arange(n, dtype=np.int64)),
            "review": pa.array([f"review number {i}" for i in range(n)]),
            "review_vec": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), DIM),
        }
    )


def timed_pair(ours: Any, direct: Any, runs: int) -> tuple[list[float], list[float]]:
    ours_t, ref_t = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        ours(i)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        direct(i)
        ref_t.append(time.perf_counter() - t0)
    return ours_t, ref_t


def main() -> None:
    import lancedb

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=2, help="tidesync splits in parallel")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench_lancedb_"))
    table = bench_lake.DATA["vectors"] = make_rows(args.rows)
    print(
        f"rows: {args.rows:,} ({table.nbytes / 1048576:,.0f} MiB in memory); scratch: {scratch}\n"
    )
    db = lancedb.connect(str(scratch / "direct"))

    def ours(name: str, extra: dict[str, Any]) -> Any:
        def go(i: int) -> None:
            writer = {"path": str(scratch / "ours"), "table": f"{name}_{i}", **extra}
            path = write_job(
                scratch / f"{name}_{i}.json",
                {"name": "benchtable", "parameter": {"data": "vectors"}},
                {"name": "lancedb", "parameter": writer},
                args.concurrent,
            )
            rep = run_job(load_job(path, runtime=RT))
            if rep.status != "succeeded":
                raise SystemExit(f"tidesync run failed: {rep.error}")

        return go

    def direct_new(i: int) -> None:
        db.create_table(f"new_{i}", data=table)

    o, r = timed_pair(ours("new", {}), direct_new, args.runs)
    report("new table", args.rows, o, r, "create_table", args.runs)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
