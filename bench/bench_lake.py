"""The lake writer side by side with the libraries' own direct calls, on the same in-memory rows:

1. a day partition of Parquet: tidesync (``format: hive``, ``partition: ds=20161114``) against
   ``pyarrow.dataset.write_dataset`` into ``ds=20161114/``;
2. an Iceberg append: tidesync (a new table, one commit) against pyiceberg's
   ``create_table`` + ``table.append``;
3. a merge of 1% changed rows into a table of ROWS rows: tidesync ``writeMode: merge`` against
   pyiceberg's ``table.upsert``; and the same merge on Parquet folders.

    .venv/bin/python bench/bench_lake.py --rows 5000000 --runs 3

tidesync runs whole jobs through the engine (``run_job``: splits, channel, sinks, commit) from an
in-memory reader, so the figures include everything but reading the source. Contenders alternate
(A B A B ...) and the medians are printed, with the ratio of speeds (above 1.0: tidesync faster).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads

from tidesync.connectors import base
from tidesync.engine.runner import load_job, run_job
from tidesync.spec.params import RunTime

sys.path.insert(0, str(Path(__file__).parent))
from _data import mixed_columns  # noqa: E402
from _harness import report, write_job  # noqa: E402

RT = RunTime.of("20161115000000")
DATA: dict[str, pa.Table] = {}


# -- an in-memory source for the engine (registered as kind "benchtable") ----------------------


@dataclass(frozen=True)
class Slice(base.Split):
    start: int = 0
    stop: int = 0


class Reader(base.Reader):
    kind = "benchtable"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.name = self.p.str("data", required=True)
        self.p.done()

    def schema(self) -> pa.Schema:
        return DATA[self.name].schema

    def splits(self, n: int) -> list[base.Split]:
        rows = DATA[self.name].num_rows
        step = -(-rows // n)
        return [Slice(i, f"{i}", i * step, min(rows, (i + 1) * step)) for i in range(n)]

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch]:
        assert isinstance(split, Slice)
        part = DATA[self.name].slice(split.start, split.stop - split.start)
        yield from part.to_batches(max_chunksize=self.ctx.batch_rows)


base.CONNECTORS["benchtable"] = "__main__"


def make_rows(n: int, seed: int = 0) -> pa.Table:
    ids = pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n))
    r = pc.random(n, initializer=seed)
    return pa.table(
        {
            **mixed_columns(ids, r, cities=7, qty_mask=15),
            "created_at": pc.cast(
                pc.add(pc.multiply(pc.bit_wise_and(ids, 65535), 60), 1479081600), pa.int64()
            ).cast(pa.timestamp("s")),
        }
    )


def job(folder: Path, data: str, writer: dict[str, Any], concurrent: int) -> Path:
    return write_job(
        folder / f"job_{time.monotonic_ns()}.json",
        {"name": "benchtable", "parameter": {"data": data}},
        {"name": "lakewriter", "parameter": writer},
        concurrent,
    )


def run(path: Path) -> None:
    rep = run_job(load_job(path, runtime=RT))
    if rep.status != "succeeded":
        raise SystemExit(f"tidesync run failed: {rep.error}")


def compare(
    title: str,
    rows: int,
    ours: Callable[[int], None],
    reference: Callable[[int], None],
    ref_name: str,
    runs: int,
) -> dict[str, float]:
    ours_t, ref_t = [], []
    for i in range(runs):
        t0 = time.perf_counter()
        ours(i)
        ours_t.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        reference(i)
        ref_t.append(time.perf_counter() - t0)
    return report(title, rows, ours_t, ref_t, ref_name, runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--concurrent", type=int, default=4, help="tidesync splits in parallel")
    ap.add_argument("--dir", type=Path, default=None, help="scratch folder (default: a temp dir)")
    args = ap.parse_args()
    rows, runs = args.rows, args.runs
    scratch = Path(args.dir or tempfile.mkdtemp(prefix="bench_lake_"))
    scratch.mkdir(parents=True, exist_ok=True)
    print(f"rows: {rows:,}; scratch: {scratch}")
    DATA["all"] = make_rows(rows)
    table = DATA["all"]
    print(f"data: {table.num_rows:,} rows, {table.nbytes / 1048576:,.0f} MiB in memory\n")

    # 1. a day partition of Parquet
    def ours_parquet(i: int) -> None:
        w = {"format": "hive", "table": str(scratch / "ours_pq"), "partition": "ds=20161114"}
        run(job(scratch, "all", w, args.concurrent))

    def direct_parquet(i: int) -> None:
        out = scratch / "direct_pq" / "ds=20161114"
        shutil.rmtree(out, ignore_errors=True)
        pads.write_dataset(table, out, format="parquet", existing_data_behavior="delete_matching")

    res = {
        "parquet": compare(
            "day partition of Parquet (overwrite ds=20161114)",
            rows,
            ours_parquet,
            direct_parquet,
            "write_dataset",
            runs,
        )
    }

    # 2. an Iceberg append into a new table
    from pyiceberg.catalog import load_catalog

    wh = scratch / "warehouse"
    wh.mkdir(exist_ok=True)
    catalog = load_catalog(
        "bench", type="sql", uri=f"sqlite:///{wh}/bench.db", warehouse=wh.resolve().as_uri()
    )
    catalog.create_namespace_if_not_exists("direct")

    def ours_append(i: int) -> None:
        w = {"table": f"ours.append_{i}", "warehouse": str(wh), "writeMode": "append"}
        run(job(scratch, "all", w, args.concurrent))

    def direct_append(i: int) -> None:
        t = catalog.create_table(f"direct.append_{i}", schema=table.schema)
        t.append(table)

    res["append"] = compare(
        "Iceberg append (new table)", rows, ours_append, direct_append, "pyiceberg", runs
    )

    # 3. merge 1% changed rows
    changed = rows // 100
    # every 100th row, so the changes touch every data file (the costly case)
    pick = pc.subtract(
        pc.multiply(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), changed)), 100), 63
    )
    delta = table.take(pick)
    delta = delta.set_column(3, "amount", pc.add(delta["amount"], 1.0))
    DATA["delta"] = delta

    def base_iceberg(name: str) -> None:
        run(
            job(
                scratch,
                "all",
                {"table": name, "warehouse": str(wh), "writeMode": "overwrite"},
                args.concurrent,
            )
        )

    merge_t, upsert_t = [], []
    for i in range(runs):
        base_iceberg(f"ours.merge_{i}")
        t0 = time.perf_counter()
        run(
            job(
                scratch,
                "delta",
                {
                    "table": f"ours.merge_{i}",
                    "warehouse": str(wh),
                    "writeMode": "merge",
                    "primaryKey": ["id"],
                },
                args.concurrent,
            )
        )
        merge_t.append(time.perf_counter() - t0)
        t = catalog.create_table(f"direct.merge_{i}", schema=table.schema)
        t.append(table)
        t0 = time.perf_counter()
        t.upsert(delta, join_cols=["id"])
        upsert_t.append(time.perf_counter() - t0)
    o, r = statistics.median(merge_t), statistics.median(upsert_t)
    print(f"Iceberg merge of {changed:,} changed rows (1%) into {rows:,} rows")
    print(f"  tidesync     {o:8.2f} s")
    print(f"  pyiceberg    {r:8.2f} s  (table.upsert)")
    print(f"  ratio (speed of tidesync / pyiceberg upsert): {r / o:.2f}  (runs: {runs})")
    res["merge"] = {"ours_s": o, "ref_s": r, "ratio": r / o}

    hive_t = []
    for i in range(runs):
        folder = scratch / f"merge_pq_{i}"
        run(job(scratch, "all", {"format": "hive", "table": str(folder)}, args.concurrent))
        t0 = time.perf_counter()
        run(
            job(
                scratch,
                "delta",
                {
                    "format": "hive",
                    "table": str(folder),
                    "writeMode": "merge",
                    "primaryKey": ["id"],
                },
                args.concurrent,
            )
        )
        hive_t.append(time.perf_counter() - t0)
    print(f"Parquet-folder merge of {changed:,} changed rows into {rows:,} rows")
    print(f"  tidesync     {statistics.median(hive_t):8.2f} s")
    res["merge_hive"] = {"ours_s": statistics.median(hive_t)}
    print("\n" + json.dumps({"rows": rows, **res}))
    if args.dir is None:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
