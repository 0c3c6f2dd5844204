"""Peak resident memory (RSS) of tidesync's three Parquet jobs: PostgreSQL -> Parquet,
MariaDB -> Parquet and CSV -> Parquet, at each table size given.

    .venv/bin/python bench/bench_memory.py --rows 2000000 20000000
    .venv/bin/python bench/bench_memory.py --rows 200000 --jobs csv --concurrent 1 2 4

Each job runs as a child process (``tidesync run JOB --no-progress``), alone; its peak RSS is
the child's own high-water mark (``ru_maxrss`` of ``os.wait4`` on that child, which counts
nothing of this script). The goal (issue 17) is under 400 MB at any size with default settings;
the line ends with ``over`` where a job is past it. ``--reference`` measures connectorx
(PostgreSQL, MariaDB; two partitions, then ``pq.write_table``) and pyarrow (CSV) the same way.

Data: the tables of ``bench_postgresql.py`` and ``bench_mysql.py`` (made once, reused; in
schema / database ``--schema``) and the CSV files of ``bench_file.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import bench_file  # noqa: E402
import bench_mysql  # noqa: E402
import bench_postgresql  # noqa: E402
from _harness import VENV_BIN, compile_once, parquet_writer, write_job  # noqa: E402

HERE = Path(__file__).parent
OUT = HERE / "data" / "out_memory"
LIMIT_MB = 400


def peak_rss(cmd: Sequence[str]) -> tuple[float, float, float]:
    """Run ``cmd``; its peak RSS in MB (the child's own, from ``wait4``), its wall time and its
    CPU time (user + system, seconds: steadier than the wall time on a shared machine)."""
    compile_once()
    t0 = time.perf_counter()
    p = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert p.stderr is not None
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    return usage.ru_maxrss / 1024, dt, usage.ru_utime + usage.ru_stime  # Linux: kilobytes


def pg_table(url: str, schema: str, rows: int) -> str:
    t = f"{schema}.orders_{rows}"
    have = bench_postgresql.psql(url, "-Atc", f"SELECT count(*) FROM {t}", check=False)
    if have.returncode != 0 or have.stdout.strip() != str(rows):
        cols = ", ".join(f"{n} {ty}" for n, ty, _ in bench_postgresql.COLUMNS)
        bench_postgresql.psql(
            url,
            "-c",
            f"CREATE SCHEMA IF NOT EXISTS {schema}; DROP TABLE IF EXISTS {t}; "
            f"CREATE TABLE {t} ({cols}); {bench_postgresql.FILL.format(t=t, rows=rows)}",
            "-c",
            f"VACUUM ANALYZE {t}",
        )
    return t


def mysql_table(s: bench_mysql.Server, schema: str, rows: int) -> str:
    t = f"orders_{rows}"
    s.sql(f"CREATE DATABASE IF NOT EXISTS {schema}", database=None)
    have = s.sql(f"SELECT COUNT(*) FROM {t}", database=schema, check=False)
    if have.returncode != 0 or have.stdout.strip() != str(rows):
        cols = ", ".join(f"{n} {ty}" for n, ty, _ in bench_mysql.COLUMNS)
        s.sql(
            f"DROP TABLE IF EXISTS {t}; CREATE TABLE {t} ({cols}); "
            f"{bench_mysql.FILL.format(t=t, rows=rows)}; ANALYZE TABLE {t}",
            database=schema,
        )
    return t


def mysql_url(s: bench_mysql.Server, schema: str) -> str:
    return s.url.rsplit("/", 1)[0] + f"/{schema}"


CX = """
import sys, connectorx as cx, pyarrow.parquet as pq
t = cx.read_sql(sys.argv[1], sys.argv[2], return_type="arrow", partition_on="id", partition_num=2)
pq.write_table(t, sys.argv[3])
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, nargs="+", default=[2_000_000, 20_000_000])
    ap.add_argument(
        "--jobs", nargs="+", choices=("pg", "mysql", "csv"), default=["pg", "mysql", "csv"]
    )
    ap.add_argument(
        "--concurrent", type=int, nargs="+", default=[2], help="speed.concurrent of the jobs"
    )
    ap.add_argument("--reference", action="store_true", help="also connectorx / pyarrow")
    ap.add_argument("--schema", default="ts_bench", help="PostgreSQL schema, MariaDB database")
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument(
        "--tidesync", default=str(VENV_BIN / "tidesync"), help="another build's, to compare"
    )
    a = ap.parse_args()
    server = bench_mysql.Server(a.host, a.port, "root", "")
    ts, py = a.tidesync, str(VENV_BIN / "python")
    results = []

    def measure(job: str, rows: int, what: str, cmd: list[str], out: Path) -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        mb, dt, cpu = peak_rss(cmd)
        flag = "  over" if what.startswith("tidesync") and mb >= LIMIT_MB else ""
        print(
            f"{job:<6} {rows:>12,} rows  {what:<24} peak RSS {mb:5.0f} MB  {dt:6.1f} s  cpu {cpu:6.1f} s{flag}"
        )
        sys.stdout.flush()
        results.append(
            {"job": job, "rows": rows, "what": what, "rss_mb": round(mb), "s": dt, "cpu_s": cpu}
        )

    for rows in a.rows:
        for job in a.jobs:
            reader, ref = _source(job, rows, a, server, py)
            for n in a.concurrent:
                folder = OUT / f"{job}_{rows}_{n}"
                spec = write_job(
                    OUT / f"{job}_{rows}_{n}.json",
                    reader,
                    parquet_writer(folder, "out.parquet"),
                    concurrent=n,
                )
                measure(
                    job,
                    rows,
                    f"tidesync concurrent {n}",
                    [ts, "run", str(spec), "--no-progress"],
                    folder,
                )
            if a.reference:
                folder = OUT / f"{job}_{rows}_ref"
                measure(job, rows, ref[0], ref[1](folder), folder)
    print(json.dumps(results))


def _source(
    job: str, rows: int, a: argparse.Namespace, server: bench_mysql.Server, py: str
) -> tuple[dict, tuple[str, Callable[[Path], list[str]]]]:
    """The reader of ``job`` at ``rows`` (its data made when missing) and the reference command."""
    OUT.mkdir(parents=True, exist_ok=True)
    if job == "pg":
        t = pg_table(a.url, a.schema, rows)
        reader = {
            "name": "postgresqlreader",
            "parameter": {"url": a.url, "table": [t], "column": ["*"], "splitPk": "id"},
        }
        q = f"SELECT * FROM {t}"
        return reader, ("connectorx", lambda f: [py, "-c", CX, a.url, q, str(f / "cx.parquet")])
    if job == "mysql":
        t = mysql_table(server, a.schema, rows)
        url = mysql_url(server, a.schema)
        reader = {
            "name": "mysqlreader",
            "parameter": {"url": url, "table": [t], "column": ["*"], "splitPk": "id"},
        }
        q = f"SELECT * FROM {t}"
        return reader, ("connectorx", lambda f: [py, "-c", CX, url, q, str(f / "cx.parquet")])
    folder = bench_file.make_data(rows)
    return bench_file.csv_reader(folder), (
        "pyarrow",
        lambda f: [py, "-c", bench_file.REF_PARQUET, str(folder), str(f)],
    )


if __name__ == "__main__":
    main()
