"""Peak resident memory (RSS) of tidesync's three Parquet jobs: PostgreSQL -> Parquet,
MariaDB -> Parquet and CSV -> Parquet, at each table size given.

    .venv/bin/python bench/bench_memory.py --rows 2000000 20000000
    .venv/bin/python bench/bench_memory.py --rows 200000 --jobs csv --concurrent 1 2 4

Each job runs as a child process (``tidesync run JOB --no-progress``), alone; its peak RSS is
the child's own high-water mark (``VmHWM`` of ``/proc/PID/status``; not ``ru_maxrss`` of
``os.wait4``, which keeps the size of this script at the fork). Beside it, the peaks of its anonymous memory and of its file-backed
pages (the shared libraries' code: input files are read, not mapped), sampled from
``/proc/PID/status``. ``--env`` runs each job under several environments in turn (allocator
settings: ``--env "" "MIMALLOC_PURGE_DELAY=10"``), ``--runs`` repeats the rounds. The goal (issue 17) is under 400 MB at any size with default settings;
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
import threading
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


def _status(pid: int) -> dict[str, int]:
    """The ``Rss*`` lines of ``/proc/PID/status`` in kB (empty once the process is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(("VmHWM:", "VmRSS:", "RssAnon:", "RssFile:", "RssShmem:")):
            k, v = line.split(":", 1)
            out[k] = int(v.split()[0])
    return out


def peak_rss(cmd: Sequence[str], env: dict[str, str] | None = None) -> dict[str, float]:
    """Run ``cmd``; its peak RSS in MB (the child's own, from ``wait4``), the peaks of its
    anonymous and file-backed parts (``RssAnon`` / ``RssFile`` of ``/proc/PID/status``, sampled
    every 20 ms: a shorter spike can be missed), its wall time and its CPU time (user + system,
    seconds: steadier than the wall time on a shared machine)."""
    compile_once()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        list(cmd),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    assert p.stderr is not None
    peaks = {"VmHWM": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for k, v in _status(p.pid).items():
                if k in peaks:
                    peaks[k] = max(peaks[k], v)
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    err = p.stderr.read()
    done.set()  # the child has closed stderr: it is exiting; its status may already be gone
    sampler.join()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}\n{err.decode()[-2000:]}")
    # The high-water mark of the child's own address space (VmHWM: exact, and monotonic, so the
    # last sample before it exits holds it). wait4's ru_maxrss is no good alone: it keeps the
    # size of what the child was forked from until its exec, which is this script, and this
    # script holds some 1.1 GB right after it has made the 20M-row CSV files.
    return {
        "rss_mb": (peaks["VmHWM"] or usage.ru_maxrss) / 1024,  # Linux: kilobytes
        "anon_mb": peaks["RssAnon"] / 1024,
        "file_mb": peaks["RssFile"] / 1024,
        "s": dt,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


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
    ap.add_argument(
        "--env",
        nargs="+",
        metavar="'K=V K2=V2'",
        help="environment variants of the tidesync runs, alternated (an empty string: none)",
    )
    ap.add_argument("--runs", type=int, default=1, help="rounds of every variant, alternated")
    a = ap.parse_args()
    server = bench_mysql.Server(a.host, a.port, "root", "")
    ts, py = a.tidesync, str(VENV_BIN / "python")
    results = []

    def measure(
        job: str, rows: int, what: str, cmd: list[str], out: Path, env: dict[str, str]
    ) -> None:
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        r = peak_rss(cmd, env)
        flag = "  over" if what.startswith("tidesync") and r["rss_mb"] >= LIMIT_MB else ""
        print(
            f"{job:<6} {rows:>12,} rows  {what:<24} peak RSS {r['rss_mb']:5.0f} MB "
            f"(anon {r['anon_mb']:4.0f}, file {r['file_mb']:3.0f})  {r['s']:6.1f} s  "
            f"cpu {r['cpu_s']:6.1f} s{flag}"
        )
        sys.stdout.flush()
        results.append(
            {"job": job, "rows": rows, "what": what, **{k: round(v, 1) for k, v in r.items()}}
        )

    variants = [_env(v) for v in a.env or [""]]
    for rows in a.rows:
        for job in a.jobs:
            reader, ref = _source(job, rows, a, server, py)
            for _ in range(a.runs):
                for n in a.concurrent:
                    for env in variants:
                        folder = OUT / f"{job}_{rows}_{n}"
                        spec = write_job(
                            OUT / f"{job}_{rows}_{n}.json",
                            reader,
                            parquet_writer(folder, "out.parquet"),
                            concurrent=n,
                        )
                        label = " ".join(f"{k}={v}" for k, v in env.items())
                        measure(
                            job,
                            rows,
                            f"tidesync concurrent {n}" + (f" {label}" if label else ""),
                            [ts, "run", str(spec), "--no-progress"],
                            folder,
                            env,
                        )
                if a.reference:
                    folder = OUT / f"{job}_{rows}_ref"
                    measure(job, rows, ref[0], ref[1](folder), folder, {})
    print(json.dumps(results))


def _env(text: str) -> dict[str, str]:
    """``'K=V K2=V2'`` as a mapping."""
    return dict(item.split("=", 1) for item in text.split())


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
