"""Seed 001 end to end: create the source tables in MariaDB, run the nodes for the seed's days with
their cyctime, run the second day again, and check every target.

    python examples/seed001/run_seed.py [--db seed001] [--work DIR]

Day 1, cyctime 2016-11-14 00:00 (business date 20161113): the one-time history load of ``oplog``
into ``ods_oplog`` partition ds=20161113, the first daily full copy of ``user`` into
``ods_user_full``, and the first load of ``dw_user_inc`` (sync) and ``dw_user_inc_merge`` (merge of
everything so far). Then the source changes as on 2016-11-14 (setup_source.py changes).
Day 2, cyctime 2016-11-15 00:00 (business date 20161114), run twice: the day's ``oplog`` rows into
ds=20161114, the full copy into ds=20161114, ``dw_user_inc`` (and the MariaDB table
``dw_user_inc_table``) by snapshot compare (uid 5's delete propagates) and ``dw_user_inc_merge`` by merging the day's changed rows (uid 5 survives: the
seed's own caveat, kept as a contrast). The second run of day 2 must leave every target as is.

Each job runs as ``tidesync run JOB --cyctime ...`` in a work folder holding copies of jobs/, so
the Iceberg warehouse lands in WORK/warehouse. Exit status 1 when a target is not as expected.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIDESYNC = Path(sys.executable).parent / "tidesync"

DAY1, DAY2 = "20161114000000", "20161115000000"

USER_DAY1 = [
    (1, "LiLei", 100, "M"),
    (2, "HanMM", None, "F"),
    (3, "Jim", 102, "M"),
    (4, "Kate", 103, "F"),
    (5, "Lily", 104, "F"),
]
USER_DAY2 = [
    (1, "LiLei", 100, "M"),
    (2, "HanMM", 101, "F"),
    (3, "Jim", 104, "M"),
    (4, "Kate", 104, "F"),
    (6, "Lucy", 105, "F"),
]

#: table -> partition (or None) -> expected rows
EXPECTED: dict[str, dict[str | None, list[tuple[Any, ...]]]] = {
    "ods.ods_oplog": {
        "20161113": [("HanMM", "DESC"), ("LiLei", "SELECT")],
        "20161114": [("Jim", "Update"), ("Kate", "Delete"), ("Lily", "Drop")],
    },
    "ods.ods_user_full": {"20161113": USER_DAY1, "20161114": USER_DAY2},
    "dw.dw_user_inc": {None: USER_DAY2},
    "dw.dw_user_inc_merge": {None: sorted(USER_DAY2 + [USER_DAY1[4]])},
    "mysql:dw_user_inc_table": {None: USER_DAY2},
}


IN_PROCESS = False  # True: run jobs through the engine in this process (fast, for tests)


def tidesync(work: Path, job: str, cyctime: str, db: str, *extra: str) -> None:
    """``tidesync run WORK/JOB --cyctime CYCTIME -p db=DB [-p k=v ...]``."""
    if IN_PROCESS:
        return _in_process(work, job, cyctime, db, *extra)
    cmd = [str(TIDESYNC), "run", str(work / job), "--cyctime", cyctime, "-p", f"db={db}", *extra]
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    line = ((r.stdout + r.stderr).strip().splitlines() or [""])[-1]
    print(f"  {job:<26} {line}")
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return None


def _in_process(work: Path, job: str, cyctime: str, db: str, *extra: str) -> None:
    from tidesync.engine.runner import load_job, run_job
    from tidesync.spec.params import RunTime, resolve_params

    rt = RunTime.of(cyctime)
    raw = {"db": db, **dict(a.split("=", 1) for a in extra if a != "-p")}
    report = run_job(load_job(work / job, resolve_params(raw, rt), rt))
    print(f"  {job:<26} {report.summary()}")
    if report.status != "succeeded":
        raise SystemExit(f"{job} failed: {report.error}")


def source(step: str, db: str) -> None:
    subprocess.run([sys.executable, str(HERE / "setup_source.py"), step, "--db", db], check=True)


def day1(work: Path, db: str) -> None:
    print(f"day 1, cyctime {DAY1}")
    tidesync(work, "ods_oplog_history.json", DAY1, db)
    tidesync(work, "ods_user_full.json", DAY1, db)
    tidesync(work, "dw_user_inc.json", DAY1, db)
    tidesync(work, "dw_user_inc_table.json", DAY1, db)
    tidesync(work, "dw_user_inc_merge.json", DAY1, db, "-p", "since=1970-01-01")


def day2(work: Path, db: str) -> None:
    print(f"day 2, cyctime {DAY2}")
    tidesync(work, "ods_oplog.json", DAY2, db)
    tidesync(work, "ods_user_full.json", DAY2, db)
    tidesync(work, "dw_user_inc.json", DAY2, db)
    tidesync(work, "dw_user_inc_table.json", DAY2, db)
    tidesync(work, "dw_user_inc_merge.json", DAY2, db, "-p", "since=${yyyy-mm-dd}")


def read_targets(work: Path, db: str) -> dict[str, dict[str | None, list[tuple[Any, ...]]]]:
    """Every target as the lake reader (or MariaDB) sees it: table -> partition -> sorted rows."""
    import pyarrow as pa
    import pymysql

    from tidesync.connectors import base
    from tidesync.connectors.lake import Reader

    out: dict[str, dict[str | None, list[tuple[Any, ...]]]] = {}
    for table in EXPECTED:
        if table.startswith("mysql:"):
            con = pymysql.connect(host="127.0.0.1", user="root", password="", database=db)
            with con.cursor() as cur:
                cur.execute(f"SELECT uid, uname, deptno, gender FROM {table[6:]}")
                out[table] = {None: sorted(cur.fetchall())}
            con.close()
            continue
        r = Reader({"table": table}, base.Context(base_dir=work, where=table))
        rows = pa.Table.from_batches([b for s in r.splits(4) for b in r.read(s)], r.schema())
        parts: dict[str | None, list[tuple[Any, ...]]] = {}
        for row in rows.to_pylist():
            key = row.get("ds")
            if table == "ods.ods_oplog":
                parts.setdefault(key, []).append((row["uname"], row["action"]))
            else:
                values = (row["uid"], row["uname"], row["deptno"], row["gender"])
                parts.setdefault(key, []).append(values)
        out[table] = {k: sorted(v) for k, v in parts.items()}
    return out


def check(targets: dict[str, dict[str | None, list[tuple[Any, ...]]]]) -> list[str]:
    problems = []
    for table, parts in EXPECTED.items():
        got = targets.get(table, {})
        for part, rows in parts.items():
            if got.get(part) != sorted(rows):
                where = f"{table} ds={part}" if part else table
                problems.append(f"{where}: expected {sorted(rows)}, got {got.get(part)}")
        extra = set(got) - set(parts)
        if extra:
            problems.append(f"{table}: unexpected partitions {sorted(map(str, extra))}")
    return problems


def run(db: str, work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The whole seed; returns the targets after day 2 and after its rerun."""
    work.mkdir(parents=True, exist_ok=True)
    for job in (HERE / "jobs").glob("*.json"):
        shutil.copy(job, work / job.name)
    source("history", db)
    day1(work, db)
    source("changes", db)
    day2(work, db)
    first = read_targets(work, db)
    print("day 2 again (a rerun must change nothing)")
    day2(work, db)
    return first, read_targets(work, db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--db", default="seed001", help="MariaDB database to (re)create")
    ap.add_argument("--work", type=Path, help="folder for jobs and warehouse (default: temp)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="seed001_"))
    first, again = run(args.db, work)
    problems = check(first)
    if again != first:
        problems.append("the rerun of day 2 changed a target")
    for table, parts in again.items():
        for part, rows in sorted(parts.items(), key=lambda kv: str(kv[0])):
            print(f"{table}{f' ds={part}' if part else ''}: {rows}")
    if problems:
        print("\n".join(["NOT as expected:", *problems]))
        raise SystemExit(1)
    print(f"all targets as expected (warehouse: {work / 'warehouse'}, database: {args.db})")


if __name__ == "__main__":
    main()
