"""Simulate the IoT side of seed 000: one CSV file every 15 minutes, named by its time.

    python drop_files.py --from 201911060000 --to 201911060300 [--skip 201911060130] [--run]

writes ``landing/iot_log_YYYYMMDDHHMM.csv`` for every quarter hour from --from to --to (both
included), each holding one reading per device taken in the 15 minutes before its name. With
--run, after each file it runs ``tidesync scheduler run-once --at`` that quarter hour, as cron
would in real time. --skip leaves a quarter's file out: that instance fails.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEVICES = ("sensor-a", "sensor-b", "sensor-c")


def quarters(first: datetime, last: datetime) -> list[datetime]:
    out, t = [], first
    while t <= last:
        out.append(t)
        t += timedelta(minutes=15)
    return out


def drop(slot: datetime, folder: Path = HERE / "landing") -> Path:
    """Write the file of the quarter ending at ``slot``; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"iot_log_{slot:%Y%m%d%H%M}.csv"
    lines = ["ts,device,temperature"]
    for i, device in enumerate(DEVICES):
        taken = slot - timedelta(minutes=15) + timedelta(minutes=5 * i)
        lines.append(f"{taken:%Y-%m-%d %H:%M:%S},{device},{20 + i + slot.minute / 100:.2f}")
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)  # appears whole, as an upload does
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="first", required=True, help="YYYYMMDDHHMM, a quarter hour")
    ap.add_argument("--to", dest="last", required=True, help="YYYYMMDDHHMM, a quarter hour")
    ap.add_argument("--skip", action="append", default=[], help="YYYYMMDDHHMM to leave out")
    ap.add_argument("--run", action="store_true", help="run-once after each file")
    a = ap.parse_args()
    first, last = (datetime.strptime(x, "%Y%m%d%H%M") for x in (a.first, a.last))
    tidesync = shutil.which("tidesync") or str(Path(sys.executable).parent / "tidesync")
    worst = 0
    for slot in quarters(first, last):
        if f"{slot:%Y%m%d%H%M}" not in a.skip:
            print(f"dropped {drop(slot).relative_to(HERE)}", flush=True)
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
