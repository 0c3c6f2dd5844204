"""What the exact direct path (CSV -> DuckDB) costs, check by check, in DuckDB alone: the typed
``read_csv`` against every field as text + ``TRY_CAST`` and against the shipped SELECT (text,
the ``EXACT`` regex per typed value, ``TRY_CAST``), interleaved, medians; and the quote search.

    .venv/bin/python bench/bench_file.py --rows 5000000 --only duckdb   # makes the data once
    .venv/bin/python bench/bench_duckdb_exact.py --rows 5000000 --runs 3
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import duckdb

from tidesync.connectors.duckdb.csv import CsvFile, quote_beside_space, read_csv_sql

KINDS = ["BIGINT", "VARCHAR", "VARCHAR", "DOUBLE", "BIGINT", "BOOLEAN", "TIMESTAMP", "VARCHAR"]
OPTS = (
    "auto_detect=false, header=true, delim=',', quote='\"', escape='\"', nullstr=['\\N'], "
    "allow_quoted_nulls=false"
)


def native(f: str) -> tuple[str, list[Any]]:
    types = ", ".join(f"'c{i}': '{t}'" for i, t in enumerate(KINDS))
    return f"SELECT * FROM read_csv(?, {OPTS}, columns={{{types}}})", [f]


def cast_only(f: str) -> tuple[str, list[Any]]:
    types = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(len(KINDS)))
    sel = ", ".join(
        f"c{i}" if t == "VARCHAR" else f"TRY_CAST(NULLIF(c{i}, '') AS {t})"
        for i, t in enumerate(KINDS)
    )
    return f"SELECT {sel} FROM read_csv(?, {OPTS}, columns={{{types}}})", [f]


def csv_file(f: str) -> CsvFile:
    return CsvFile(f, len(KINDS), tuple((i, f"n{i}", t) for i, t in enumerate(KINDS)), header=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    files = sorted(
        str(p) for p in (Path(__file__).parent / "data" / f"csv_{args.rows}").glob("*.csv")
    )
    if not files:
        raise SystemExit("no data: run bench_file.py with the same --rows first")
    variants = {
        "typed read_csv": native,
        "text + TRY_CAST": cast_only,
        "text + EXACT regex + TRY_CAST (shipped)": lambda f: read_csv_sql(csv_file(f)),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    scans: list[float] = []
    for _ in range(args.runs):
        for name, make in variants.items():
            with duckdb.connect() as con:
                con.execute("CREATE TEMP SEQUENCE __tidesync_csv_bad")
                t = time.perf_counter()
                for f in files:
                    sql, params = make(f)
                    con.execute(f"CREATE OR REPLACE TEMP TABLE x AS {sql}", params).fetchall()
                times[name].append(time.perf_counter() - t)
        t = time.perf_counter()
        for f in files:
            quote_beside_space(csv_file(f))
        scans.append(time.perf_counter() - t)
    base = statistics.median(times["typed read_csv"])
    for name, v in times.items():
        m = statistics.median(v)
        print(f"{name:42} {m:7.2f} s  {m / base:5.2f}x")
    print(f"{'quote search (Python)':42} {statistics.median(scans):7.2f} s")


if __name__ == "__main__":
    main()
