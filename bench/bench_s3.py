"""Object storage through tidesync's s3 connector, side by side with pyarrow's own S3FileSystem
doing the same work, against an S3-compatible server (moto's, started here on 127.0.0.1 and
stopped at the end; or --endpoint to use one of yours):

1. CSV objects -> Parquet files on disk (reader ``ossreader``; reference: pyarrow.csv reading from
   ``S3FileSystem.open_input_stream`` + pyarrow.parquet);
2. Parquet files on disk -> Parquet objects (writer ``osswriter``, which stages and publishes at
   commit; reference: ``pyarrow.parquet.write_table(..., filesystem=S3FileSystem)``).

    .venv/bin/python bench/bench_s3.py --mb 200 --runs 3

Data: about MB megabytes of CSV (8 mixed columns, 4 files; bench/bench_file.py makes them under
bench/data/), uploaded once per run of this script.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _harness import VENV_BIN, compare, file_columns, parquet_writer, write_job  # noqa: E402
from bench_file import COLUMNS, make_data  # noqa: E402

HERE = Path(__file__).parent
DATA = HERE / "data"
BUCKET = "tidesync-bench"
KEY = SECRET = "bench"
BYTES_PER_ROW = 84  # of bench_file's CSV rows


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    exe = VENV_BIN / "moto_server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("moto_server did not start")
            time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def s3fs_for(endpoint: str) -> pafs.S3FileSystem:
    scheme, _, host = endpoint.partition("://")
    return pafs.S3FileSystem(
        access_key=KEY,
        secret_key=SECRET,
        endpoint_override=host,
        scheme=scheme,
        region="us-east-1",
        allow_bucket_creation=True,
    )


def upload(s3: pafs.S3FileSystem, folder: Path) -> int:
    s3.create_dir(BUCKET)
    total = 0
    for f in sorted(folder.glob("*.csv")):
        with f.open("rb") as src, s3.open_output_stream(f"{BUCKET}/csv/{f.name}") as dst:
            shutil.copyfileobj(src, dst, 16 << 20)
        total += f.stat().st_size
    return total


def parquet_copy(folder: Path) -> Path:
    """The CSV data as local Parquet files: the input of the write benchmark."""
    out = folder.with_name(folder.name.replace("csv_", "parquet_"))
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    opts = pacsv.ConvertOptions(timestamp_parsers=["%Y-%m-%d %H:%M:%S"])
    for f in sorted(folder.glob("*.csv")):
        pq.write_table(pacsv.read_csv(f, convert_options=opts), tmp / f"{f.stem}.parquet")
    tmp.rename(out)
    return out


def jobs(endpoint: str, out: Path, parquet: Path) -> tuple[Path, Path]:
    store = {"endpoint": endpoint, "bucket": BUCKET, "accessId": KEY, "accessKey": SECRET}
    reader = {
        "name": "ossreader",
        "parameter": {
            **store,
            "object": ["csv/"],
            "fileFormat": "csv",
            "skipHeader": True,
            "column": file_columns(COLUMNS, {6: "yyyy-MM-dd HH:mm:ss"}),
        },
    }
    read = write_job(
        out / "s3_to_parquet.json", reader, parquet_writer(out / "parquet", "part.parquet")
    )
    write = write_job(
        out / "parquet_to_s3.json",
        {"name": "txtfilereader", "parameter": {"path": str(parquet), "fileFormat": "parquet"}},
        {
            "name": "osswriter",
            "parameter": {
                **store,
                "object": "pq/part.parquet",
                "fileFormat": "parquet",
                "writeMode": "truncate",
            },
        },
    )
    return read, write


REF_READ = """
import sys, pyarrow.fs as fs, pyarrow.csv as c, pyarrow.parquet as pq
endpoint, bucket, dst = sys.argv[1:4]
scheme, _, host = endpoint.partition("://")
s3 = fs.S3FileSystem(access_key="bench", secret_key="bench", endpoint_override=host,
                     scheme=scheme, region="us-east-1")
opts = c.ConvertOptions(timestamp_parsers=["%Y-%m-%d %H:%M:%S"])
blocks = c.ReadOptions(block_size=16 << 20)  # as tidesync reads; the default 1 MB is 3x slower
keys = sorted(i.path for i in s3.get_file_info(fs.FileSelector(bucket + "/csv")))
for i, key in enumerate(keys):
    with s3.open_input_stream(key) as src:
        table = c.read_csv(src, read_options=blocks, convert_options=opts)
        pq.write_table(table, f"{dst}/ref{i}.parquet")
"""

REF_WRITE = """
import sys, glob, pyarrow.fs as fs, pyarrow.parquet as pq
endpoint, bucket, src = sys.argv[1:4]
scheme, _, host = endpoint.partition("://")
s3 = fs.S3FileSystem(access_key="bench", secret_key="bench", endpoint_override=host,
                     scheme=scheme, region="us-east-1")
for i, f in enumerate(sorted(glob.glob(src + "/*.parquet"))):
    pq.write_table(pq.read_table(f), f"{bucket}/ref/part{i}.parquet", filesystem=s3)
"""


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--mb", type=int, default=1000, help="megabytes of CSV (default 1000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--endpoint", help="an S3 server of yours (default: start moto's)")
    args = ap.parse_args()
    rows = args.mb * 1_000_000 // BYTES_PER_ROW
    folder = make_data(rows)
    parquet = parquet_copy(folder)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    with contextlib.ExitStack() as stack:
        endpoint = args.endpoint or stack.enter_context(moto_server())
        size = upload(s3fs_for(endpoint), folder)
        out = Path(tempfile.mkdtemp(prefix="bench-s3-"))
        stack.callback(shutil.rmtree, out, True)
        (out / "ref").mkdir()
        read_job, write_job = jobs(endpoint, out, parquet)
        py, ts = str(VENV_BIN / "python"), str(VENV_BIN / "tidesync")
        print(f"{rows:,} rows, 8 columns, 4 objects, {size / 1e6:,.0f} MB of CSV; {endpoint}")
        compare(
            "CSV objects -> Parquet on disk",
            rows,
            [ts, "run", str(read_job), "--no-progress"],
            [py, "-c", REF_READ, endpoint, BUCKET, str(out / "ref")],
            "pyarrow",
            args.runs,
        )
        compare(
            "Parquet on disk -> Parquet objects",
            rows,
            [ts, "run", str(write_job), "--no-progress"],
            [py, "-c", REF_WRITE, endpoint, BUCKET, str(parquet)],
            "pyarrow",
            args.runs,
        )


if __name__ == "__main__":
    main()
