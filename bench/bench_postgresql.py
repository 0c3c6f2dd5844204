"""PostgreSQL -> Parquet and CSV -> PostgreSQL through tidesync, side by side with the reference
tools: connectorx (read into Arrow, then the same Parquet write; also the read alone against a
tidesync job that discards the rows), ``psql -c "COPY ... TO STDOUT (FORMAT binary)"`` to /dev/null
(the server's export limit) and ``psql \\copy`` (the client's own bulk load).

    .venv/bin/python bench/bench_postgresql.py --rows 2000000 --runs 3
    .venv/bin/python bench/bench_postgresql.py --rows 200000          # the small, quick run
    .venv/bin/python bench/bench_postgresql.py --only scan_vs_connectorx read_vs_connectorx
    .venv/bin/python bench/bench_postgresql.py --only pg_to_pg_vs_psql_pipe pg_to_pg_arrow_vs_psql_pipe

PostgreSQL -> PostgreSQL (into ``ts_bench.copy_<rows>``, made like the source, its primary key
too) is timed on the direct path and with ``setting.direct: false`` (the Arrow path) against the
pipe ``psql -c "COPY ... TO STDOUT (FORMAT binary)" | psql -c "COPY ... FROM STDIN (FORMAT
binary)"``: a copy between two tables with nothing decoded.

Data: a table ``ts_bench.orders_<rows>`` of 8 mixed columns (bigint key, varchar, numeric(12,2),
double, int, boolean, timestamp, text), made once with generate_series and reused, plus a CSV
export of it for the load. Server: ``--url`` (default postgresql://postgres@127.0.0.1:5432/test).
Figures are whole-process wall times (interpreter start-up included) of commands run alternately.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _harness import (  # noqa: E402
    VENV_BIN,
    compare,
    file_columns,
    parquet_writer,
    report,
    write_job,
)

HERE = Path(__file__).parent
SCHEMA = "ts_bench"
COLUMNS = [
    ("id", "bigint PRIMARY KEY", "long"),
    ("customer", "varchar(32)", "string"),
    ("amount", "numeric(12,2)", "decimal(12,2)"),
    ("score", "double precision", "double"),
    ("qty", "integer", "long"),
    ("paid", "boolean", "boolean"),
    ("created_at", "timestamp", "date"),
    ("note", "text", "string"),
]
FILL = """
INSERT INTO {t} SELECT g, 'customer_' || (g % 50000), ((g * 7919) % 10000000) / 100.0, g * 0.37,
  (g % 1000)::int, g % 3 = 0, timestamp '2020-01-01 00:00:00' + g * interval '1 second',
  'order note ' || g FROM generate_series(1::bigint, {rows}) g
"""


def psql(url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", url, *args], capture_output=True, text=True
    )
    if check and r.returncode != 0:
        raise SystemExit(f"psql failed: {r.stderr.strip()}")
    return r


def make_data(url: str, rows: int, data: Path) -> tuple[str, str, Path]:
    """The source table, an empty target of the same shape, and the source as CSV."""
    src, dst = f"{SCHEMA}.orders_{rows}", f"{SCHEMA}.load_{rows}"
    cols = ", ".join(f"{n} {t}" for n, t, _ in COLUMNS)
    have = psql(url, "-Atc", f"SELECT count(*) FROM {src}", check=False)
    if have.returncode != 0 or have.stdout.strip() != str(rows):
        psql(
            url,
            "-c",
            f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}; DROP TABLE IF EXISTS {src}; "
            f"CREATE TABLE {src} ({cols}); {FILL.format(t=src, rows=rows)}",
            "-c",
            f"VACUUM ANALYZE {src}",
        )
    psql(url, "-c", f"DROP TABLE IF EXISTS {dst}; CREATE TABLE {dst} ({cols})")
    csv = data / f"orders_{rows}.csv"
    if not csv.exists():
        data.mkdir(parents=True, exist_ok=True)
        select = ", ".join(
            f"{n}::text" if t == "boolean" else n for n, t, _ in COLUMNS
        )  # true/false, not t/f
        psql(url, "-c", f"\\copy (SELECT {select} FROM {src}) TO '{csv}' (FORMAT csv, HEADER)")
    return src, dst, csv


def jobs(url: str, src: str, dst: str, csv: Path, out: Path) -> tuple[Path, Path]:
    read = write_job(
        out / "pg_to_parquet.json",
        {
            "name": "postgresqlreader",
            "parameter": {"url": url, "table": [src], "column": ["*"], "splitPk": "id"},
        },
        parquet_writer(out / "parquet", "orders.parquet"),
    )
    column = file_columns([(n, t) for n, _, t in COLUMNS], {6: "yyyy-MM-dd HH:mm:ss"})
    load = write_job(
        out / "csv_to_pg.json",
        {
            "name": "txtfilereader",
            "parameter": {
                "path": [str(csv)],
                "fileFormat": "csv",
                "skipHeader": True,
                "column": column,
            },
        },
        {
            "name": "postgresqlwriter",
            "parameter": {"url": url, "table": [dst], "writeMode": "truncate"},
        },
    )
    return read, load


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


def copy_jobs(url: str, src: str, out: Path) -> tuple[str, Path, Path]:
    """A target like ``src`` (its primary key too) and the PostgreSQL -> PostgreSQL job into it
    (truncate) on the direct path, and the same job forced onto the Arrow path."""
    dst = src.replace(".orders_", ".copy_")
    # no autovacuum on the target: a 2M-row copy sets one off up to a minute later, in the
    # middle of whichever side runs next (both sides copy into this table)
    psql(
        url,
        "-c",
        f"DROP TABLE IF EXISTS {dst}; CREATE TABLE {dst} (LIKE {src} INCLUDING ALL) "
        "WITH (autovacuum_enabled = false)",
    )
    reader = {
        "name": "postgresqlreader",
        "parameter": {"url": url, "table": [src], "column": ["*"], "splitPk": "id"},
    }
    writer = {
        "name": "postgresqlwriter",
        "parameter": {"url": url, "table": [dst], "writeMode": "truncate"},
    }
    direct = write_job(out / "pg_to_pg.json", reader, writer)
    arrow = out / "pg_to_pg_arrow.json"
    doc = json.loads(direct.read_text())
    doc["job"]["setting"]["direct"] = False
    arrow.write_text(json.dumps(doc))
    return dst, direct, arrow


def pg_to_pg(url: str, src: str, out: Path, rows: int, runs: int, arrow: bool) -> dict[str, float]:
    """PostgreSQL -> PostgreSQL against the psql binary pipe."""
    dst, direct, forced = copy_jobs(url, src, out)
    pipe = [
        "sh",
        "-c",
        f'psql -X -q "{url}" -c "COPY {src} TO STDOUT (FORMAT binary)" | '
        f'psql -X -q -v ON_ERROR_STOP=1 "{url}" -c "COPY {dst} FROM STDIN (FORMAT binary)"',
    ]
    return compare(
        "PostgreSQL -> PostgreSQL ("
        + ("setting.direct false: the Arrow path" if arrow else "the direct path")
        + "; primary key on id)",
        rows,
        [str(VENV_BIN / "tidesync"), "run", str(forced if arrow else direct)],
        pipe,
        "psql pipe",
        runs,
        # each side starts from a checkpoint: a 2M-row copy writes about 0.5 GB of WAL, near
        # where max_wal_size's default (1 GB) starts one, which else lands on either side
        setup=["psql", "-X", "-q", url, "-c", f"TRUNCATE {dst}", "-c", "CHECKPOINT"],
    )


def writer_alone(url: str, dst: str, csv: Path, rows: int, runs: int) -> dict[str, float]:
    """The PostgreSQL writer fed from memory (the CSV parsed beforehand, untimed) against
    ``psql \\copy``: the connector's own share of the load, whatever the reader costs."""
    import time

    import pyarrow as pa
    import pyarrow.csv as pacsv

    from tidesync.connectors.base import Context, Split
    from tidesync.connectors.postgresql import Writer

    types = {"amount": pa.decimal128(12, 2), "qty": pa.int32(), "created_at": pa.timestamp("us")}
    table = pacsv.read_csv(csv, convert_options=pacsv.ConvertOptions(column_types=types))
    batches = table.to_batches(max_chunksize=65536)
    ours, ref = [], []
    for _ in range(runs):
        psql(url, "-c", f"TRUNCATE {dst}")
        t0 = time.perf_counter()
        w = Writer({"url": url, "table": [dst]}, Context())
        w.prepare(table.schema)
        sink = w.open(Split(0, "all"))
        for b in batches:
            sink.write(b)
        w.commit([sink.close()])
        ours.append(time.perf_counter() - t0)
        psql(url, "-c", f"TRUNCATE {dst}")
        t0 = time.perf_counter()
        psql(url, "-c", f"\\copy {dst} FROM '{csv}' (FORMAT csv, HEADER)")
        ref.append(time.perf_counter() - t0)
    return report(
        "Arrow in memory -> PostgreSQL (the writer alone, in-process)",
        rows,
        ours,
        ref,
        "psql \\copy",
        runs,
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--url", default="postgresql://postgres@127.0.0.1:5432/test")
    ap.add_argument("--only", nargs="*", help="run only these comparisons (names as printed)")
    a = ap.parse_args()
    out = HERE / "data" / "out_postgresql"  # bench/data/ is ignored by git
    out.mkdir(parents=True, exist_ok=True)
    src, dst, csv = make_data(a.url, a.rows, HERE / "data")
    read, load = jobs(a.url, src, dst, csv, out)
    tidesync = str(VENV_BIN / "tidesync")
    py = str(VENV_BIN / "python")
    print(f"PostgreSQL bench: {a.rows:,} rows x {len(COLUMNS)} columns, {a.runs} runs\n")
    scan = write_job(
        out / "pg_scan.json",
        json.loads(read.read_text())["job"]["content"][0]["reader"],
        {"name": "streamwriter", "parameter": {"print": False}},
    )
    copy_ref = [
        "sh",
        "-c",
        f'psql -X -q "{a.url}" -c "COPY {src} TO STDOUT (FORMAT binary)" > /dev/null',
    ]
    plans: dict[str, Callable[[], dict[str, float]]] = {
        "scan_vs_connectorx": lambda: compare(
            "PostgreSQL -> Arrow, discarded (the reader alone)",
            a.rows,
            [tidesync, "run", str(scan)],
            [py, "-c", CONNECTORX_READ, a.url, f"SELECT * FROM {src}"],
            "connectorx",
            a.runs,
        ),
        "scan_vs_psql_copy": lambda: compare(
            "PostgreSQL -> Arrow, discarded, against psql binary COPY TO STDOUT > /dev/null",
            a.rows,
            [tidesync, "run", str(scan)],
            copy_ref,
            "psql COPY",
            a.runs,
        ),
        "read_vs_connectorx": lambda: compare(
            "PostgreSQL -> Parquet",
            a.rows,
            [tidesync, "run", str(read)],
            [py, "-c", CONNECTORX, a.url, f"SELECT * FROM {src}", str(out / "cx.parquet")],
            "connectorx",
            a.runs,
        ),
        "read_vs_psql_copy": lambda: compare(
            "PostgreSQL export (tidesync to Parquet; psql binary COPY TO STDOUT > /dev/null)",
            a.rows,
            [tidesync, "run", str(read)],
            copy_ref,
            "psql COPY",
            a.runs,
        ),
        "write_vs_psql_copy": lambda: compare(
            "CSV -> PostgreSQL (primary key on id)",
            a.rows,
            [tidesync, "run", str(load)],
            ["psql", "-X", "-q", a.url, "-c", f"\\copy {dst} FROM '{csv}' (FORMAT csv, HEADER)"],
            "psql \\copy",
            a.runs,
            setup=["psql", "-X", "-q", a.url, "-c", f"TRUNCATE {dst}"],
        ),
        "writer_alone_vs_psql_copy": lambda: writer_alone(a.url, dst, csv, a.rows, a.runs),
        "pg_to_pg_vs_psql_pipe": lambda: pg_to_pg(a.url, src, out, a.rows, a.runs, arrow=False),
        "pg_to_pg_arrow_vs_psql_pipe": lambda: pg_to_pg(
            a.url, src, out, a.rows, a.runs, arrow=True
        ),
    }
    results = {k: f() for k, f in plans.items() if not a.only or k in a.only}
    print(json.dumps({"rows": a.rows, **results}, indent=2))


if __name__ == "__main__":
    main()
