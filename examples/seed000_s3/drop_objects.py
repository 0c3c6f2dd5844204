"""Simulate the IoT side of seed 000 on a bucket: one CSV object every 15 minutes, named by its
time.

    python drop_objects.py --from 201911060000 --to 201911060300 [--skip 201911060130] [--run]

puts ``iot_log_YYYYMMDDHHMM.csv`` into the bucket for every quarter hour from --from to --to (both
included), each holding one reading per device taken in the 15 minutes before its name. The
bucket and its access key come from IOT_OSS_ENDPOINT, IOT_OSS_BUCKET, IOT_OSS_KEY and
IOT_OSS_SECRET, as for tidesync.yaml. With --run, after each object it runs ``tidesync scheduler
run-once --at`` that quarter hour, as cron would in real time. --skip leaves a quarter's object
out: that instance fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow.fs as pafs

HERE = Path(__file__).resolve().parent
DEVICES = ("sensor-a", "sensor-b", "sensor-c")


def quarters(first: datetime, last: datetime) -> list[datetime]:
    out, t = [], first
    while t <= last:
        out.append(t)
        t += timedelta(minutes=15)
    return out


def bucket_fs() -> tuple[pafs.S3FileSystem, str]:
    """The bucket of the environment, through pyarrow's S3 client (the devices' own uploader)."""
    endpoint = os.environ["IOT_OSS_ENDPOINT"]
    scheme, sep, host = endpoint.partition("://")
    if not sep:
        scheme, host = "https", endpoint
    fs = pafs.S3FileSystem(
        access_key=os.environ["IOT_OSS_KEY"],
        secret_key=os.environ["IOT_OSS_SECRET"],
        endpoint_override=host,
        scheme=scheme,
        region=os.environ.get("IOT_OSS_REGION", "us-east-1"),
        force_virtual_addressing=host.endswith(".aliyuncs.com"),
    )
    return fs, os.environ["IOT_OSS_BUCKET"]


def drop(slot: datetime) -> str:
    """Put the object of the quarter ending at ``slot``; return its key."""
    fs, bucket = bucket_fs()
    key = f"iot_log_{slot:%Y%m%d%H%M}.csv"
    lines = ["ts,device,temperature"]
    for i, device in enumerate(DEVICES):
        taken = slot - timedelta(minutes=15) + timedelta(minutes=5 * i)
        lines.append(f"{taken:%Y-%m-%d %H:%M:%S},{device},{20 + i + slot.minute / 100:.2f}")
    with fs.open_output_stream(f"{bucket}/{key}") as out:  # appears whole, at close
        out.write(("\n".join(lines) + "\n").encode())
    return key


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="first", required=True, help="YYYYMMDDHHMM, a quarter hour")
    ap.add_argument("--to", dest="last", required=True, help="YYYYMMDDHHMM, a quarter hour")
    ap.add_argument("--skip", action="append", default=[], help="YYYYMMDDHHMM to leave out")
    ap.add_argument("--run", action="store_true", help="run-once after each object")
    a = ap.parse_args()
    first, last = (datetime.strptime(x, "%Y%m%d%H%M") for x in (a.first, a.last))
    tidesync = shutil.which("tidesync") or str(Path(sys.executable).parent / "tidesync")
    worst = 0
    for slot in quarters(first, last):
        if f"{slot:%Y%m%d%H%M}" not in a.skip:
            print(f"dropped {drop(slot)}", flush=True)
        if a.run:
            r = subprocess.run(
                [
                    tidesync,
                    "scheduler",
                    "run-once",
                    "--at",
                    f"{slot:%Y%m%d%H%M%S}",
                    "--project",
                    str(HERE),
                ],
                check=False,
            )
            worst = max(worst, r.returncode)
    return worst


if __name__ == "__main__":
    sys.exit(main())
