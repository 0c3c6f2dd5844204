"""What a user sees of scheduled runs: progress while one runs, and every time in one zone."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tidesync.cli import main

from ._helpers import at, scheduler, stream_job, write_project

SH = "Asia/Shanghai"  # the project's zone: +08:00, whatever the machine's is
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def run(root: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--project", str(root)], catch_exceptions=False)


def test_instance_log_shows_progress_lines_while_it_runs(tmp_path: Path) -> None:
    job = stream_job(tmp_path / "jobs" / "slow.json", value="x", records=1200, record_rate=1000)
    doc = json.loads(job.read_text())
    doc["job"]["setting"]["speed"]["channel"] = 2  # two splits: progress counts them
    job.write_text(json.dumps(doc))
    write_project(
        tmp_path,
        [{"name": "slow", "job": "jobs/slow.json", "schedule": {"every": "day"}}],
        timezone=SH,
        scheduler={"progress": "0.05s"},
    )
    s = scheduler(tmp_path)
    runner = threading.Thread(target=s.run_once, args=(at("202501010000", SH),))
    runner.start()  # 2,400 rows at 1,000 rows/s: over a second
    seen = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            inst = scheduler(tmp_path).store.get(1)
            if (
                inst is not None
                and inst.state == "running"
                and "progress:" in (inst.log_tail or "")
            ):
                seen = run(tmp_path, "instance", "log", "1").stdout
                break
            time.sleep(0.02)
        # the tail in the store too: what another machine's `instance log` shows
        assert inst is not None and "progress:" in (inst.log_tail or "")
    finally:
        runner.join()
    progress = [ln for ln in seen.splitlines() if " progress: " in ln]
    assert progress, seen
    assert re.fullmatch(
        rf"{STAMP}\+08:00 progress: [\d,]+ rows read \(\d+%\), [\d,]+ written, .* rows/s, "
        r"0 dirty, [012]/2 splits(, ETA \d+:\d\d:\d\d)?",
        progress[0],
    ), progress[0]
    assert scheduler(tmp_path).store.get(1).state == "succeeded"  # type: ignore[union-attr]


def test_every_time_shown_is_in_the_project_zone_with_its_offset(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {"name": "here", "schedule": {"every": "day"}},
            {"name": "berlin", "schedule": {"every": "day", "timezone": "Europe/Berlin"}},
        ],
        timezone=SH,
    )
    out = run(tmp_path, "scheduler", "run-once", "--at", "20250102090000")
    assert out.exit_code == 0, out.output
    # cyctimes are the nodes' own wall clocks, named by their offset
    assert "here                 2025-01-02 00:00:00+08:00  succeeded" in out.stdout
    assert "berlin               2025-01-02 00:00:00+01:00  succeeded" in out.stdout
    # run times, in every listing, in the project's zone
    rows = run(tmp_path, "instances").stdout.splitlines()[1:]
    assert len(rows) == 2
    stamps = {r.split()[1]: re.findall(rf"{STAMP}[+-]\d\d:\d\d", r) for r in rows}
    assert stamps == {  # cyctime, started, finished (time stands still at --at)
        "here": ["2025-01-02 00:00:00+08:00"] + ["2025-01-02 09:00:00+08:00"] * 2,
        "berlin": ["2025-01-02 00:00:00+01:00"] + ["2025-01-02 09:00:00+08:00"] * 2,
    }
    show = run(tmp_path, "instance", "show", "1").stdout
    assert re.search(rf"^started_at  {STAMP}\+08:00$", show, re.M), show
    assert re.search(rf"^finished_at {STAMP}\+08:00$", show, re.M), show
    log = run(tmp_path, "instance", "log", "1").stdout.splitlines()
    assert log and all(re.match(rf"{STAMP}\+08:00 ", ln) for ln in log), log
    report = json.loads(run(tmp_path, "instance", "show", "1", "--json").stdout)["report"]
    assert report["started_at"].endswith("+08:00") and report["finished_at"].endswith("+08:00")
