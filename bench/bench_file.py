"""CSV files -> Parquet and CSV files -> DuckDB through tidesync, side by side with the libraries'
own direct paths (pyarrow.csv + pyarrow.parquet; DuckDB's read_csv).

    .venv/bin/python bench/bench_file.py --rows 5000000 --runs 3
    .venv/bin/python bench/bench_file.py --only duckdb --direct true   # the exact direct path

Data: ROWS rows of 8 mixed columns in 4 CSV files under bench/data/ (made once, then reused).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

sys.path.insert(0, str(Path(__file__).parent))
from _data import mixed_columns  # noqa: E402
from _harness import VENV_BIN, compare, file_columns, parquet_writer, write_job  # noqa: E402

HERE = Path(__file__).parent
DATA = HERE / "data"
FILES = 4
COLUMNS = [
    ("id", "long"),
    ("customer", "string"),
    ("city", "string"),
    ("amount", "double"),
    ("qty", "long"),
    ("paid", "boolean"),
    ("created_at", "date"),
    ("note", "string"),
]


def make_data(rows: int) -> Path:
    folder = DATA / f"csv_{rows}"
    if folder.exists():
        return folder
    tmp = folder.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    per = rows // FILES
    for f in range(FILES):
        n = per if f < FILES - 1 else rows - per * (FILES - 1)
        start = f * per
        ids = pa.array(range(start, start + n), pa.int64())
        r = pc.random(n, initializer=f)
        table = pa.table(
            {
                **mixed_columns(ids, r, cities=8, qty_mask=31),
                "paid": pc.less(r, 0.7),
                "created_at": pc.cast(
                    pc.add(pc.multiply(ids, 7), 1_478_000_000), pa.timestamp("s")
                ),
                "note": pc.binary_join_element_wise("order note ", pc.cast(ids, pa.string()), ""),
            }
        )
        pacsv.write_csv(
            table,
            tmp / f"part{f}.csv",
            pacsv.WriteOptions(include_header=True, quoting_style="needed"),
        )
    tmp.rename(folder)
    return folder


def csv_reader(folder: Path) -> dict[str, Any]:
    """The reader of the CSV files ``make_data`` wrote."""
    return {
        "name": "txtfilereader",
        "parameter": {
            "path": [str(folder / "*.csv")],
            "fileFormat": "csv",
            "skipHeader": True,
            "column": file_columns(COLUMNS, {6: "yyyy-MM-dd HH:mm:ss"}),
        },
    }


def write_jobs(folder: Path, out: Path, direct: bool | None = None) -> tuple[Path, Path]:
    reader = csv_reader(folder)
    setting = {} if direct is None else {"direct": direct}
    duckdb = {
        "name": "duckdbwriter",
        "parameter": {"database": str(out / "t.duckdb"), "table": "t", "writeMode": "truncate"},
    }
    return (
        write_job(out / "to_parquet.json", reader, parquet_writer(out / "parquet", "part.parquet")),
        write_job(out / "to_duckdb.json", reader, duckdb, setting=setting),
    )


REF_PARQUET = """
import sys, glob, pyarrow.csv as c, pyarrow.parquet as pq, pyarrow as pa
src, dst = sys.argv[1], sys.argv[2]
opts = c.ConvertOptions(timestamp_parsers=["%Y-%m-%d %H:%M:%S"])
for i, f in enumerate(sorted(glob.glob(src + "/*.csv"))):
    pq.write_table(c.read_csv(f, convert_options=opts), f"{dst}/ref{i}.parquet")
"""

REF_DUCKDB = """
import sys, duckdb
src, db = sys.argv[1], sys.argv[2]
con = duckdb.connect(db)
con.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM read_csv(?, header=true)", [src + "/*.csv"])
con.close()
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", choices=["parquet", "duckdb"], help="run one of the two cases")
    ap.add_argument(
        "--direct",
        choices=["true", "false"],
        help="setting.direct of the CSV -> DuckDB job (unset: the writer's default, Arrow)",
    )
    args = ap.parse_args()
    folder = make_data(args.rows)
    out = DATA / "out"
    shutil.rmtree(out, ignore_errors=True)
    (out / "ref").mkdir(parents=True)
    direct = None if args.direct is None else args.direct == "true"
    parquet_job, duck_job = write_jobs(folder, out, direct)
    py, ts = str(VENV_BIN / "python"), str(VENV_BIN / "tidesync")
    print(
        f"{args.rows:,} rows, 8 columns, {FILES} CSV files, {sum(f.stat().st_size for f in folder.iterdir()) / 1e6:,.0f} MB"
    )
    if args.only != "duckdb":
        compare(
            "CSV -> Parquet",
            args.rows,
            [ts, "run", str(parquet_job), "--no-progress"],
            [py, "-c", REF_PARQUET, str(folder), str(out / "ref")],
            "pyarrow",
            args.runs,
        )
    if args.only != "parquet":
        compare(
            "CSV -> DuckDB",
            args.rows,
            [ts, "run", str(duck_job), "--no-progress"],
            [py, "-c", REF_DUCKDB, str(folder), str(out / "ref.duckdb")],
            "duckdb",
            args.runs,
        )


if __name__ == "__main__":
    main()
