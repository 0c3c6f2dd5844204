"""The examples run as documented, through the command line users type."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
TIDESYNC = str(Path(sys.executable).with_name("tidesync"))


def test_demo_job_publishes_parquet_and_duckdb_and_keeps_dirty_rows(tmp_path: Path) -> None:
    demo = tmp_path / "demo"
    shutil.copytree(ROOT / "examples" / "demo", demo, ignore=shutil.ignore_patterns("out"))
    report = tmp_path / "report.json"
    r = subprocess.run(
        [TIDESYNC, "run", "demo.json", "--cyctime", "20161115000000", "--report", str(report)],
        cwd=demo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    # two entries read the same 2,000 rows; two typed "n/a" amounts are dirty in each
    assert (rep["status"], rep["records_read"], rep["dirty_records"]) == ("succeeded", 4000, 4)
    orders = pq.read_table(demo / "out" / "ods_orders" / "ds=20161114" / "orders.parquet")
    with (ROOT / "examples" / "demo" / "data" / "orders.csv").open() as f:
        rows = list(csv.DictReader(f))
    kept = [x for x in rows if x["amount"] != "n/a" and x["status"] != "cancelled"]
    assert orders.num_rows == len(kept) and 1500 < len(kept) < 1998
    assert orders.column("order_id").to_pylist() == [int(x["order_id"]) for x in kept]
    assert "cancelled" not in orders.column("status").to_pylist()
    with duckdb.connect(str(demo / "out" / "demo.duckdb"), read_only=True) as con:
        assert con.execute("select count(*) from orders_by_city").fetchone() == (1998,)
    dirty = [json.loads(x) for x in Path(rep["dirty_file"]).read_text().splitlines()]
    assert {d["row"]["order_id"] for d in dirty} == {"417", "1203"}
    # a rerun of the same instance gives the same target (truncate)
    r2 = subprocess.run(
        [TIDESYNC, "run", "demo.json", "--cyctime", "20161115000000"],
        cwd=demo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r2.returncode == 0, r2.stderr
    assert pq.read_table(demo / "out" / "ods_orders" / "ds=20161114" / "orders.parquet").equals(
        orders
    )
