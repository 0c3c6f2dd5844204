"""Change events per second from each change log into Parquet, against the server's own raw rate.

    .venv/bin/python bench/bench_cdc.py --rows 500000 --runs 3
    .venv/bin/python bench/bench_cdc.py --rows 100000 --only postgresql

For each store: a table of 8 mixed columns gets a capture (``tidesync run`` of a window that
ends before the changes), then ``--rows`` changes (inserts, in transactions of 10,000 rows), and
the window holding them is run once. The timed runs are reruns of that window (the same span of
the log, the same rows), each a whole ``tidesync run`` into Parquet, interpreter start-up
included. The limit beside it is the server decoding the same span with nothing to keep:

- PostgreSQL: ``SELECT count(*) FROM pg_logical_slot_peek_binary_changes(...)`` on the job's
  slot (pgoutput, the job's publication) up to the end of the window's span (the LSN the run
  saved: without it the peek would decode all the WAL written since, by anyone), through psql;
- MariaDB/MySQL: ``mariadb-binlog --read-from-remote-server`` of the span to /dev/null (it does
  not decode rows unless asked: the server's dump rate, the client's framing of events), and
  the same with ``--verbose`` (it decodes every row into text: the fairer reference). The three
  commands run in turn (ours, framing, decoding), and each ratio is the median of its pairs.

The capture is dropped at the end (``tidesync cdc drop``).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _harness import VENV_BIN, compare, parquet_writer, report, timed, write_job  # noqa: E402

HERE = Path(__file__).parent
TXN = 10_000


def _pg(url: str, sql: str) -> str:
    r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        raise SystemExit(f"psql failed: {r.stderr.strip()}")
    return r.stdout.strip()


def _my(sql: str, host: str, port: int, user: str) -> str:
    r = subprocess.run(["mariadb", "-h", host, "-P", str(port), "-u", user, "-N", "-B", "test",
                        "-e", sql], capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        raise SystemExit(f"mariadb failed: {r.stderr.strip()}")
    return r.stdout.strip()


def _run(job: Path, cwd: Path) -> None:
    r = subprocess.run([str(VENV_BIN / "tidesync"), "run", str(job)], cwd=cwd,
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode:
        raise SystemExit(f"tidesync run failed: {r.stderr[-2000:]}")


def _job(out: Path, name: str, reader: dict[str, Any], window: tuple[int, int]) -> Path:
    params = {**reader["parameter"], "startTimestampMillis": window[0],
              "endTimestampMillis": window[1]}  # fmt: skip
    return write_job(
        out / f"{name}.json",
        {"name": reader["name"], "parameter": params},
        parquet_writer(out / f"{name}_parquet", "changes.parquet"),
        concurrent=1,
    )


def postgresql(url: str, rows: int, runs: int, out: Path, keep: bool = False) -> dict[str, float]:
    t = "ts_bench.cdc_orders"
    _pg(url, f"CREATE SCHEMA IF NOT EXISTS ts_bench; DROP TABLE IF EXISTS {t}; CREATE TABLE {t} "
        "(id bigint PRIMARY KEY, customer varchar(32), amount numeric(12,2), score double "
        "precision, qty integer, paid boolean, created_at timestamp, note text)")  # fmt: skip
    slot = "tidesync_bench_cdc"
    # a slot left by an earlier call (--keep, a kill) would be taken up again from where it
    # stood, its window decoding every WAL record written since: drop it first
    _pg(url, f"SELECT count(pg_drop_replication_slot(slot_name)) FROM pg_replication_slots "
        f"WHERE slot_name = '{slot}' AND NOT active")  # fmt: skip
    reader = {"name": "postgresqlcdc", "parameter": {"url": url, "table": [t], "slot": slot}}
    now = int(float(_pg(url, "SELECT extract(epoch FROM clock_timestamp()) * 1000")))
    _run(_job(out, "pg", reader, (now - 2000, now)), out)  # creates the capture
    for lo in range(0, rows, TXN):
        _pg(url, f"INSERT INTO {t} SELECT g, 'customer_' || (g % 50000), (g % 100000) / 100.0, "
            "g * 0.37, (g % 1000)::int, g % 3 = 0, timestamp '2020-01-01' + g * interval '1 s', "
            f"'order note ' || g FROM generate_series({lo + 1}, {min(lo + TXN, rows)}) g")  # fmt: skip
    end = int(float(_pg(url, "SELECT extract(epoch FROM clock_timestamp()) * 1000"))) + 1
    job = _job(out, "pg", reader, (now, end))
    _run(job, out)  # the window, once: its span is saved; the timed runs repeat it
    hi = _span_end(out)
    peek = (
        f"SELECT count(*) FROM pg_logical_slot_peek_binary_changes('{slot}', "
        f"'0/0'::pg_lsn + {hi}, NULL, 'proto_version', '1', 'publication_names', '{slot}')"
    )
    try:
        return compare(
            "PostgreSQL logical decoding -> Parquet (changes/s)",
            rows,
            [str(VENV_BIN / "tidesync"), "run", str(job)],
            ["psql", "-X", "-q", "-At", url, "-c", peek],
            "peek count",
            runs,
            cwd=out,
        )
    finally:
        if not keep:
            subprocess.run([str(VENV_BIN / "tidesync"), "cdc", "drop", str(job)], cwd=out,
                           capture_output=True)  # fmt: skip
            _pg(url, f"DROP TABLE IF EXISTS {t}")


def _span_end(out: Path) -> int:
    """Where the last saved window of the job run in ``out`` ends in the log (an LSN)."""
    import sqlite3

    con = sqlite3.connect(out / ".tidesync" / "state.db")
    try:
        rows = con.execute("SELECT value FROM ts_state WHERE ns = 'positions'").fetchall()
    finally:
        con.close()
    spans = json.loads(rows[-1][0])["positions"]["changes"]["spans"]
    return int(spans[-1][3])


def mysql(
    host: str, port: int, user: str, rows: int, runs: int, out: Path, keep: bool = False
) -> dict[str, Any]:
    t = "cdc_orders"
    _my(f"DROP TABLE IF EXISTS {t}; CREATE TABLE {t} (id BIGINT PRIMARY KEY, customer "
        "VARCHAR(32), amount DECIMAL(12,2), score DOUBLE, qty INT, paid BOOLEAN, created_at "
        "DATETIME, note TEXT)", host, port, user)  # fmt: skip
    url = f"mysql://{user}@{host}:{port}/test"
    reader = {"name": "mysqlcdc", "parameter": {"url": url, "table": [t]}}
    now = int(float(_my("SELECT UNIX_TIMESTAMP(SYSDATE(6)) * 1000", host, port, user)))
    _run(_job(out, "my", reader, (now - 2000, now)), out)
    lo_file, lo_pos = _my("SHOW MASTER STATUS", host, port, user).split()[:2]
    for lo in range(0, rows, TXN):
        _my("SET SESSION max_recursive_iterations = 1000000; "
            f"INSERT INTO {t} WITH RECURSIVE s(g) AS (SELECT {lo + 1} UNION ALL SELECT g + 1 "
            f"FROM s WHERE g < {min(lo + TXN, rows)}) SELECT g, CONCAT('customer_', g % 50000), "
            "(g % 100000) / 100, g * 0.37, g % 1000, g % 3 = 0, '2020-01-01' + INTERVAL g "
            "SECOND, CONCAT('order note ', g) FROM s", host, port, user)  # fmt: skip
    time.sleep(1.1)  # binlog times are whole seconds: the window ends after the last one
    end = int(float(_my("SELECT UNIX_TIMESTAMP(SYSDATE(6)) * 1000", host, port, user)))
    job = _job(out, "my", reader, (now, end))
    _run(job, out)
    hi_file, hi_pos = _my("SHOW MASTER STATUS", host, port, user).split()[:2]
    if lo_file != hi_file:
        raise SystemExit("the window's span crosses binlog files: run the bench again")
    binlog = shutil.which("mariadb-binlog") or shutil.which("mysqlbinlog") or "mariadb-binlog"
    raw = [binlog, "--read-from-remote-server", f"--host={host}", f"--port={port}",
           f"--user={user}", f"--start-position={lo_pos}", f"--stop-position={hi_pos}",
           "--result-file=/dev/null", lo_file]  # fmt: skip
    ours = [str(VENV_BIN / "tidesync"), "run", str(job)]
    verbose = [*raw[:-1], "--verbose", raw[-1]]
    print(f"  (the span: {lo_file} {lo_pos}..{hi_pos}; job {job})")
    try:
        timed(ours, out)  # warm-up: file cache, imports
        times: dict[str, list[float]] = {"ours": [], "raw": [], "verbose": []}
        cpu: dict[str, list[float]] = {"ours": [], "raw": [], "verbose": []}
        for _ in range(runs):
            for name, cmd in (("ours", ours), ("raw", raw), ("verbose", verbose)):
                before = _children_cpu()
                times[name].append(timed(cmd, out))
                cpu[name].append(_children_cpu() - before)
        title = "MariaDB binlog -> Parquet (changes/s)"
        result = {
            "framing": report(title, rows, times["ours"], times["raw"], "mariadb-binlog", runs),
            "decoding": report(title, rows, times["ours"], times["verbose"], "--verbose", runs),
        }
        # CPU seconds of each client process (user + system; the server's dump is the same for
        # all three and not counted): what a loaded machine's wall times blur
        med = {k: statistics.median(v) for k, v in cpu.items()}
        print(f"  client CPU s (median): tidesync {med['ours']:.2f}, mariadb-binlog "
              f"{med['raw']:.2f}, --verbose {med['verbose']:.2f}")  # fmt: skip
        result["cpu_s"] = med
        return result
    finally:
        if not keep:
            _my(f"DROP TABLE IF EXISTS {t}", host, port, user)


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--mysql", default="root@127.0.0.1:3306")
    ap.add_argument("--only", choices=("postgresql", "mysql"))
    ap.add_argument(
        "--keep", action="store_true", help="keep the tables, jobs and captures (to profile)"
    )
    a = ap.parse_args()
    out = HERE / "data" / "out_cdc"  # bench/data/ is ignored by git
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    results = {}
    print(f"CDC bench: {a.rows:,} changes (inserts, {TXN:,} per transaction), {a.runs} runs\n")
    if a.only in (None, "postgresql"):
        results["postgresql"] = postgresql(a.url, a.rows, a.runs, out, a.keep)
    if a.only in (None, "mysql"):
        user, hp = a.mysql.split("@")
        host, port = hp.split(":")
        results["mysql"] = mysql(host, int(port), user, a.rows, a.runs, out, a.keep)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
