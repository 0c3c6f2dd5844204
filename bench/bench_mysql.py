"""MariaDB/MySQL -> Parquet and CSV -> MariaDB through tidesync, side by side with the reference
tools: connectorx (read into Arrow with the same two partitions, then the same Parquet write;
also the read alone against a tidesync job that discards the rows) and the ``mariadb`` client's
own ``LOAD DATA LOCAL INFILE``.

    .venv/bin/python bench/bench_mysql.py --rows 2000000 --runs 3
    .venv/bin/python bench/bench_mysql.py --rows 200000          # the small, quick run
    .venv/bin/python bench/bench_mysql.py --only scan_vs_connectorx read_vs_connectorx
    .venv/bin/python bench/bench_mysql.py --only my_to_my_vs_client_pipe my_to_my_vs_dump_tab

MariaDB -> MariaDB (into ``ts_bench.copy_<rows>``, made like the source, primary key included)
is timed against the client pipe ``mariadb --quick -e 'SELECT ...' | mariadb -e 'LOAD DATA LOCAL
INFILE "/dev/stdin" ...'``: rows as text, never decoded, the most a copy between two tables
through a client can do; and against ``mariadb-dump --tab`` (the server writes the rows' file)
followed by ``LOAD DATA LOCAL INFILE`` of that file, the two steps one after the other.

Data: a table ``ts_bench.orders_<rows>`` of 8 mixed columns (bigint key, varchar, decimal(12,2),
double, int, boolean, datetime(6), date), made once from MariaDB's sequence engine and reused,
plus a CSV export of it for the load (into ``ts_bench.load_<rows>``, primary key on id, emptied
before each run). Server: ``--host``/``--port`` (root, no password by default; ``--user``,
``--password``). Figures are whole-process wall times (interpreter start-up included) of
commands run alternately.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import VENV_BIN, compare, file_columns, parquet_writer, write_job  # noqa: E402

HERE = Path(__file__).parent
DB = "ts_bench"
COLUMNS = [
    ("id", "BIGINT PRIMARY KEY", "long"),
    ("customer", "VARCHAR(32)", "string"),
    ("amount", "DECIMAL(12,2)", "decimal(12,2)"),
    ("score", "DOUBLE", "double"),
    ("qty", "INT", "long"),
    ("paid", "BOOLEAN", "long"),
    ("created_at", "DATETIME(6)", "string"),
    ("day", "DATE", "string"),
]
FILL = """
INSERT INTO {t} SELECT seq, CONCAT('customer_', seq % 50000), ((seq * 7919) % 10000000) / 100,
  seq * 0.37, seq % 1000, seq % 3 = 0, TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND,
  DATE'2020-01-01' + INTERVAL (seq % 3000) DAY FROM seq_1_to_{rows}
"""
# The setup before each timed side of a copy into MariaDB: the target emptied, then InnoDB's
# dirty pages written out (its redo log checkpointed) before the clock starts. With the 128 MB
# buffer pool and 96 MB redo log of a default server, the 0.5 GB a 2M-row copy writes leaves
# thousands of dirty pages and half the redo log behind it, flushed during whichever side runs
# next: pairs of the same commands moved between 0.65 and 1.55 with that alone.
SETTLE = """
import sys, time, pymysql
host, port, user, password, db, table = sys.argv[1:7]
con = pymysql.connect(host=host, port=int(port), user=user, password=password, database=db)
cur = con.cursor()
cur.execute(f"TRUNCATE TABLE {table}")
cur.execute("SELECT @@GLOBAL.innodb_max_dirty_pages_pct")
before = cur.fetchone()[0]
cur.execute("SET GLOBAL innodb_max_dirty_pages_pct = 0")
try:
    for _ in range(600):
        cur.execute("SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'")
        if int(cur.fetchone()[1]) == 0:
            break
        time.sleep(0.1)
finally:
    cur.execute(f"SET GLOBAL innodb_max_dirty_pages_pct = {before}")
"""

EXPORT = """
import sys, pyarrow as pa, pyarrow.csv as csv, connectorx as cx
t = cx.read_sql(sys.argv[1], sys.argv[2], return_type="arrow")
t = t.set_column(t.schema.get_field_index("paid"), "paid", t.column("paid").cast(pa.int8()))
csv.write_csv(t, sys.argv[3])
"""
CONNECTORX_READ = """
import sys, connectorx as cx
t = cx.read_sql(sys.argv[1], sys.argv[2], return_type="arrow", partition_on="id", partition_num=2)
print(t.num_rows)
"""
CONNECTORX = """
import sys, connectorx as cx, pyarrow.parquet as pq
t = cx.read_sql(sys.argv[1], sys.argv[2], return_type="arrow", partition_on="id", partition_num=2)
pq.write_table(t, sys.argv[3])
"""


class Server:
    def __init__(self, host: str, port: int, user: str, password: str):
        self.host, self.port, self.user, self.password = host, port, user, password

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}" if self.password else self.user
        return f"mysql://{auth}@{self.host}:{self.port}/{DB}"

    def client(self, *args: str) -> list[str]:
        cmd = ["mariadb", f"-h{self.host}", f"-P{self.port}", f"-u{self.user}", "--local-infile=1"]
        if self.password:
            cmd.append(f"-p{self.password}")
        return [*cmd, *args]

    def dump(self, *args: str) -> list[str]:
        cmd = ["mariadb-dump", f"-h{self.host}", f"-P{self.port}", f"-u{self.user}"]
        if self.password:
            cmd.append(f"-p{self.password}")
        return [*cmd, *args]

    def settle(self, table: str) -> list[str]:
        """The setup command that empties ``table`` and flushes InnoDB (``SETTLE``)."""
        return [
            str(VENV_BIN / "python"),
            "-c",
            SETTLE,
            *(self.host, str(self.port), self.user, self.password, DB, table),
        ]

    def sql(
        self, sql: str, database: str | None = DB, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(
            self.client(*([database] if database else []), "-N", "-B", "-e", sql),
            capture_output=True,
            text=True,
        )
        if check and r.returncode != 0:
            raise SystemExit(f"mariadb failed: {r.stderr.strip()}")
        return r


def make_data(s: Server, rows: int, data: Path) -> tuple[str, str, Path]:
    """The source table, an empty target of the same shape, and the source as CSV."""
    src, dst = f"orders_{rows}", f"load_{rows}"
    cols = ", ".join(f"{n} {t}" for n, t, _ in COLUMNS)
    s.sql(f"CREATE DATABASE IF NOT EXISTS {DB}", database=None)
    have = s.sql(f"SELECT COUNT(*) FROM {src}", check=False)
    if have.returncode != 0 or have.stdout.strip() != str(rows):
        s.sql(
            f"DROP TABLE IF EXISTS {src}; CREATE TABLE {src} ({cols}); {FILL.format(t=src, rows=rows)}; "
            f"ANALYZE TABLE {src}"
        )
    s.sql(f"DROP TABLE IF EXISTS {dst}; CREATE TABLE {dst} ({cols})")
    csv = data / f"mysql_orders_{rows}.csv"
    if not csv.exists():
        data.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(VENV_BIN / "python"), "-c", EXPORT, s.url, f"SELECT * FROM {src}", str(csv)],
            check=True,
        )
    return src, dst, csv


def jobs(s: Server, src: str, dst: str, csv: Path, out: Path) -> tuple[Path, Path, Path]:
    reader = {
        "name": "mysqlreader",
        "parameter": {"url": s.url, "table": [src], "column": ["*"], "splitPk": "id"},
    }
    scan = write_job(
        out / "mysql_scan.json", reader, {"name": "streamwriter", "parameter": {"print": False}}
    )
    read = write_job(
        out / "mysql_to_parquet.json", reader, parquet_writer(out / "parquet", "orders.parquet")
    )
    load = write_job(
        out / "csv_to_mysql.json",
        {
            "name": "txtfilereader",
            "parameter": {
                "path": [str(csv)],
                "fileFormat": "csv",
                "skipHeader": True,
                "column": file_columns([(n, t) for n, _, t in COLUMNS]),
            },
        },
        {
            "name": "mysqlwriter",
            "parameter": {"url": s.url, "table": [dst], "writeMode": "truncate"},
        },
    )
    return read, load, scan


def my_to_my(
    s: Server, src: str, out: Path, rows: int, runs: int, dump: bool = False
) -> dict[str, float]:
    """MariaDB -> MariaDB (truncate, primary key on id) against the client pipe, or (``dump``)
    against ``mariadb-dump --tab`` and then ``LOAD DATA`` of the file it made."""
    copy_dst = f"copy_{rows}"
    s.sql(f"DROP TABLE IF EXISTS {copy_dst}; CREATE TABLE {copy_dst} LIKE {src}")
    copy = write_job(
        out / "mysql_to_mysql.json",
        {
            "name": "mysqlreader",
            "parameter": {"url": s.url, "table": [src], "column": ["*"], "splitPk": "id"},
        },
        {
            "name": "mysqlwriter",
            "parameter": {"url": s.url, "table": [copy_dst], "writeMode": "truncate"},
        },
    )
    if dump:
        # the server writes the rows' file (SELECT ... INTO OUTFILE), so the folder is open to it
        tab = out / "tab"
        mkdir = f"rm -rf {tab} && mkdir -p {tab} && chmod 777 {tab}"
        dumped = " ".join(s.dump(f"--tab={tab}", DB, src))
        load = " ".join(
            s.client(
                DB, "-e", f"\"LOAD DATA LOCAL INFILE '{tab}/{src}.txt' INTO TABLE {copy_dst}\""
            )
        )
        ref, name = f"{mkdir} && {dumped} && {load}", "dump --tab + LOAD DATA"
    else:
        ref = " ".join(s.client(DB, "--quick", "-N", "-B", "-e", f"'SELECT * FROM {src}'"))
        ref += " | " + " ".join(
            s.client(DB, "-e", f"\"LOAD DATA LOCAL INFILE '/dev/stdin' INTO TABLE {copy_dst}\"")
        )
        name = "mariadb pipe"
    return compare(
        "MariaDB -> MariaDB (primary key on id)",
        rows,
        [str(VENV_BIN / "tidesync"), "run", str(copy)],
        ["sh", "-c", ref],
        name,
        runs,
        setup=s.settle(copy_dst),
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="")
    ap.add_argument("--only", nargs="*", help="run only these comparisons (names as printed)")
    a = ap.parse_args()
    s = Server(a.host, a.port, a.user, a.password)
    out = HERE / "out" / "mysql"
    out.mkdir(parents=True, exist_ok=True)
    src, dst, csv = make_data(s, a.rows, HERE / "data")
    read, load, scan = jobs(s, src, dst, csv, out)
    tidesync = str(VENV_BIN / "tidesync")
    py = str(VENV_BIN / "python")
    print(f"MariaDB bench: {a.rows:,} rows x {len(COLUMNS)} columns, {a.runs} runs\n")
    load_sql = (
        f"LOAD DATA LOCAL INFILE '{csv}' INTO TABLE {dst} FIELDS TERMINATED BY ',' "
        "OPTIONALLY ENCLOSED BY '\"' IGNORE 1 LINES"
    )
    plans: dict[str, Callable[[], dict[str, float]]] = {
        "scan_vs_connectorx": lambda: compare(
            "MariaDB -> Arrow, discarded (the reader alone)",
            a.rows,
            [tidesync, "run", str(scan)],
            [py, "-c", CONNECTORX_READ, s.url, f"SELECT * FROM {src}"],
            "connectorx",
            a.runs,
        ),
        "read_vs_connectorx": lambda: compare(
            "MariaDB -> Parquet",
            a.rows,
            [tidesync, "run", str(read)],
            [py, "-c", CONNECTORX, s.url, f"SELECT * FROM {src}", str(out / "cx.parquet")],
            "connectorx",
            a.runs,
        ),
        "write_vs_load_data": lambda: compare(
            "CSV -> MariaDB (primary key on id)",
            a.rows,
            [tidesync, "run", str(load)],
            s.client(DB, "-e", load_sql),
            "LOAD DATA",
            a.runs,
            setup=s.settle(dst),
        ),
        "my_to_my_vs_client_pipe": lambda: my_to_my(s, src, out, a.rows, a.runs),
        "my_to_my_vs_dump_tab": lambda: my_to_my(s, src, out, a.rows, a.runs, dump=True),
    }
    results = {k: f() for k, f in plans.items() if not a.only or k in a.only}
    print(json.dumps({"rows": a.rows, **results}, indent=2))


if __name__ == "__main__":
    main()
