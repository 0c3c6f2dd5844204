"""The scheduler's commands: nodes, scheduler start | run-once, instances, instance, backfill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tidesync.cli import main
from tidesync.scheduler.store import SqliteStore

from ._helpers import file_job, land, sqlite_job, table, write_project

TIDESYNC = str(Path(sys.executable).parent / "tidesync")


def run(root: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--project", str(root)], catch_exceptions=False)


def store(root: Path) -> SqliteStore:
    return SqliteStore(root / ".tidesync" / "state.db")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    file_job(tmp_path / "jobs" / "load.json")
    write_project(
        tmp_path,
        [
            {
                "name": "load",
                "job": "jobs/load.json",
                "params": "filename=$[yyyymmddhh24mi]",
                "schedule": {"every": "hour", "start_date": "2025-01-01"},
            },
            {
                "name": "daily",
                "depends_on": ["load"],
                "dry_run": True,
                "schedule": {"every": "day", "at": "00:30", "start_date": "2025-01-01"},
            },
        ],
        timezone="Asia/Shanghai",
        catchup="all",
    )
    land(tmp_path, "202501010000")
    land(tmp_path, "202501010100")
    return tmp_path


def test_nodes_lists_schedule_and_next_run(project: Path) -> None:
    r = run(project, "nodes", "--at", "20250101001000")
    assert r.exit_code == 0
    assert "load                 every 1 minute" not in r.output
    assert "every 1 hour 00:00-23:59 (Asia/Shanghai) from 2025-01-01" in r.output
    assert "next 2025-01-01 00:30:00+08:00; retries 0; after load; dry_run" in r.output


def test_run_once_runs_what_is_due_and_exits_1_on_a_failure(project: Path) -> None:
    r = run(project, "scheduler", "run-once", "--at", "20250101020000")
    assert r.exit_code == 1  # 02:00 has no file
    lines = r.stdout.splitlines()
    assert [ln.split()[1:5] for ln in lines] == [
        ["load", "2025-01-01", "00:00:00+08:00", "succeeded"],
        ["load", "2025-01-01", "01:00:00+08:00", "succeeded"],
        ["load", "2025-01-01", "02:00:00+08:00", "failed"],
    ]
    assert "no file matches" in lines[2]
    assert "3 instance(s): 1 failed, 2 succeeded" in r.stderr


def test_run_once_json_outcomes(project: Path) -> None:
    r = run(project, "scheduler", "run-once", "--at", "20250101010000", "--json")
    assert r.exit_code == 0
    assert [(o["cyctime"], o["state"]) for o in json.loads(r.stdout)] == [
        ("20250101000000", "succeeded"),
        ("20250101010000", "succeeded"),
    ]


def test_instances_filters_by_node_state_and_time(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101020000")
    r = run(
        project,
        "instances",
        "--node",
        "load",
        "--state",
        "succeeded",
        "--since",
        "20250101010000",
        "--json",
    )
    assert [(i["cyctime"], i["params"]) for i in json.loads(r.stdout)] == [
        ("20250101010000", {"filename": "202501010100"})
    ]
    text = run(project, "instances").stdout.splitlines()
    assert text[0].split()[:5] == ["ID", "NODE", "CYCTIME", "BIZDATE", "STATE"]
    assert len(text) == 1 + 4  # three of load, one of daily (waiting for the day's hours)


def test_instance_show_explains_why_it_waits(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101020000")
    daily = store(project).find("daily", "20250101003000")
    r = run(project, "instance", "show", str(daily.id))
    assert r.exit_code == 0
    assert "waiting_on  upstream load 20250101020000 is failed" in r.stdout


def test_instance_show_json_has_params_and_report(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101000000")
    d = json.loads(run(project, "instance", "show", "1", "--json").stdout)
    assert d["params"] == {"filename": "202501010000"}
    assert d["report"]["status"] == "succeeded" and d["report"]["records_written"] == 1


def test_instance_log_has_every_attempt(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101000000")
    r = run(project, "instance", "log", "1")
    assert "attempt 1 of 1 of load cyctime 20250101000000 bizdate 20241231" in r.stdout
    assert "param filename=202501010000" in r.stdout
    assert "succeeded: 1 read, 1 written" in r.stdout


def test_instances_of_a_mistyped_node_is_an_error_not_an_empty_list(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101020000")
    r = run(project, "instances", "--node", "lod", "--state", "failed")
    assert r.exit_code == 2  # before: exit 0, a header and no row, as if nothing had failed
    assert r.stderr.strip() == (
        "error: --node: 'lod' is not a node of the project and has no instances; "
        "did you mean 'load'?; `tidesync nodes` lists them"
    )
    r = run(project, "instances", "--node", "load", "--state", "failed")
    assert r.exit_code == 0 and len(r.stdout.splitlines()) == 2


def test_unknown_instance_exits_2(project: Path) -> None:
    r = run(project, "instance", "show", "99")
    assert r.exit_code == 2 and "no instance 99" in r.stderr


def test_rerun_runs_a_failed_instance_again(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101020000")
    failed = store(project).find("load", "20250101020000")
    land(project, "202501010200", "arrived")
    r = run(project, "instance", "rerun", str(failed.id))
    assert r.exit_code == 0, r.output
    got = store(project).get(failed.id)
    assert (got.state, got.attempts) == ("succeeded", 1)
    assert ("arrived", "202501010200") in table(project)


def test_an_attempt_without_a_report_shows_no_earlier_attempts_report(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101000000")
    done = store(project).find("load", "20250101000000")
    assert json.loads(done.report or "")["records_written"] == 1
    assert run(project, "instance", "rerun", str(done.id), "--no-run").exit_code == 0
    assert store(project).get(done.id).report is None  # waiting: no run of it yet
    job = project / "jobs" / "load.json"
    job.write_text(job.read_text().replace('"speed"', '"sped"'))  # a bad job file: no report
    r = run(project, "instance", "rerun", str(done.id))
    assert r.exit_code == 1
    got = store(project).get(done.id)
    # before: state failed beside the first run's report ("succeeded", 1 row written), which
    # the instance list and the operations page showed as this run's rows
    assert (got.state, got.report) == ("failed", None)
    assert "unknown setting" in (got.error or "")
    shown = run(project, "instance", "show", str(done.id), "--json")
    assert json.loads(shown.stdout)["report"] is None


def test_rerun_no_run_only_resets(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101020000")
    failed = store(project).find("load", "20250101020000")
    r = run(project, "instance", "rerun", str(failed.id), "--no-run")
    assert r.exit_code == 0 and store(project).get(failed.id).state == "waiting"


def test_kill_cancels_a_waiting_instance(project: Path) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101010000")
    daily = store(project).find("daily", "20250101003000")
    r = run(project, "instance", "kill", str(daily.id))
    assert r.stdout.strip() == f"instance {daily.id}: cancelled"
    assert store(project).get(daily.id).state == "cancelled"


def test_a_backfill_instance_whose_time_is_to_come_waits_for_it(project: Path) -> None:
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    r = run(project, "backfill", "daily", "--from", f"{today:%Y%m%d}", "--to", f"{today:%Y%m%d}")
    # before: tomorrow's 00:30 instance ran at once, reading a window not yet over, "succeeded"
    assert r.exit_code == 1
    assert "1 instance(s) still waiting (an upstream failed, or its time is still to come" in (
        r.stderr
    )
    (waiting,) = [i for i in store(project).listing(node="daily") if i.batch]
    slot = datetime.combine(today + timedelta(days=1), datetime.min.time().replace(minute=30))
    assert waiting.state == "waiting" and waiting.attempts == 0
    assert waiting.due_at == slot.replace(tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    past = today - timedelta(days=3)
    r = run(project, "backfill", "daily", "--from", f"{past:%Y%m%d}", "--to", f"{past:%Y%m%d}")
    assert r.exit_code == 0, r.output  # a past date runs now, as before


def test_backfill_runs_the_range(project: Path) -> None:
    r = run(
        project, "backfill", "daily", "--from", "20250105", "--to", "20250106", "--parallel", "2"
    )
    assert r.exit_code == 0, r.output
    rows = store(project).listing(node="daily")
    assert [(i.bizdate, i.state) for i in rows if i.batch] == [
        ("20250105", "skipped"),
        ("20250106", "skipped"),
    ]


def test_backfill_with_a_bad_date_is_a_usage_error(project: Path) -> None:
    r = run(project, "backfill", "daily", "--from", "2025-13-01", "--to", "20250106")
    assert r.exit_code == 2 and "Invalid value for '--from'" in r.stderr


@pytest.mark.parametrize(
    ("option", "value", "reason"),
    [("--from", "2025015", "(7 digits)"), ("--to", "20250106000000", "it has a time of day")],
)
def test_backfill_short_or_long_dates_are_refused(
    project: Path, option: str, value: str, reason: str
) -> None:
    dates = {"--from": "20250105", "--to": "20250106", option: value}
    r = run(project, "backfill", "daily", *[a for kv in dates.items() for a in kv])
    assert r.exit_code == 2 and f"Invalid value for '{option}': '{value}'" in r.stderr
    assert reason in r.stderr and "accepted: YYYYMMDD or YYYY-MM-DD" in r.stderr
    assert store(project).listing() == []


@pytest.mark.parametrize(
    "at",
    [
        "202501010035",  # strptime read 00:03:05, whose next daily run is today's 00:30
        "2025-01-01 00:35",
        "2024-12-31T16:35:00Z",  # the same instant, given in UTC
        "2025-01-01T01:35+09:00",
    ],
)
def test_nodes_at_reads_short_and_iso_times(project: Path, at: str) -> None:
    r = run(project, "nodes", "--at", at)
    assert r.exit_code == 0, r.output
    assert "next 2025-01-02 00:30:00+08:00; retries 0; after load; dry_run" in r.output


def test_run_once_at_with_offset_is_that_instant(project: Path) -> None:
    r = run(project, "scheduler", "run-once", "--at", "2024-12-31T17:00:00Z", "--json")
    assert r.exit_code == 0, r.output  # 01:00 in Shanghai
    assert [o["cyctime"] for o in json.loads(r.stdout)] == ["20250101000000", "20250101010000"]


@pytest.mark.parametrize("since", ["2025010101", "202501010100", "2025-01-01 01:00"])
def test_instances_since_reads_short_times(project: Path, since: str) -> None:
    run(project, "scheduler", "run-once", "--at", "20250101020000")
    r = run(project, "instances", "--node", "load", "--since", since, "--json")
    assert r.exit_code == 0, r.output
    assert [i["cyctime"] for i in json.loads(r.stdout)] == ["20250101010000", "20250101020000"]


def test_backfill_of_a_failing_range_exits_1(project: Path) -> None:
    r = run(project, "backfill", "load", "--from", "20250101", "--to", "20250101")
    assert r.exit_code == 1  # none of 2025-01-02's hours has its file
    assert "24 instance(s): 24 failed" in r.stderr


def test_bad_project_file_exits_2_with_key_paths(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "a", "schedule": {"every": "fortnight"}}])
    r = run(tmp_path, "scheduler", "run-once")
    assert r.exit_code == 2
    assert "error: nodes[0].schedule.every: 'fortnight' is not a cycle" in r.stderr


# -- the daemon, as a process ---------------------------------------------------------------


def daemon_project(root: Path) -> Path:
    """One instance due now (today 00:00 UTC) whose job runs ~100 s unless cancelled."""
    sqlite_job(root / "jobs" / "slow.json", root / "out.db", value="$cyctime")
    doc = json.loads((root / "jobs" / "slow.json").read_text())
    doc["job"]["setting"]["speed"]["record"] = 10
    doc["job"]["content"][0]["reader"]["parameter"]["sliceRecordCount"] = 1000
    (root / "jobs" / "slow.json").write_text(json.dumps(doc))
    today = datetime.now(UTC).date().isoformat()
    write_project(
        root,
        [
            {
                "name": "slow",
                "job": "jobs/slow.json",
                "schedule": {"every": "day", "start_date": today},
            }
        ],
        scheduler={"lease": "3s", "poll": "0.2s"},
    )
    return root


def start_daemon(root: Path, command: str = "start") -> subprocess.Popen[str]:
    env = {**os.environ, "TIDESYNC_PROJECT": str(root)}
    return subprocess.Popen(
        [TIDESYNC, "scheduler", command],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_running(root: Path, proc: subprocess.Popen[str]) -> int:
    end = time.monotonic() + 30
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if (root / ".tidesync" / "state.db").exists():
            running = store(root).listing(state="running")
            if running:
                return running[0].id
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"no instance started: {proc.communicate()}")


def published(root: Path) -> int:
    import sqlite3

    if not (root / "out.db").exists():
        return 0
    with sqlite3.connect(root / "out.db") as con:
        try:
            return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


@pytest.mark.parametrize(("command", "code"), [("start", 0), ("run-once", 1)])
def test_sigterm_cancels_running_jobs_and_hands_their_instances_back(
    tmp_path: Path, command: str, code: int
) -> None:
    root = daemon_project(tmp_path)
    proc = start_daemon(root, command)
    iid = wait_running(root, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == code, err
    got = store(root).get(iid)
    assert (got.state, got.attempts, got.owner) == ("waiting", 0, None)
    assert "interrupted by scheduler shutdown" in got.error
    assert published(root) == 0  # the job aborted: nothing published
    if command == "start":  # the daemon's log says what it created, stamped in the project zone
        assert re.search(
            r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00 INFO tidesync.scheduler: slow: created 1 "
            r"instance\(s\), cyctime \d{4}-\d\d-\d\d 00:00:00\+00:00$",
            err,
            re.M,
        ), err


def test_an_instance_of_a_killed_daemon_is_run_again(tmp_path: Path) -> None:
    root = daemon_project(tmp_path)
    proc = start_daemon(root)
    iid = wait_running(root, proc)
    proc.kill()  # SIGKILL: no chance to clean up
    proc.communicate(timeout=20)
    assert store(root).get(iid).state == "running"  # left behind
    sqlite_job(root / "jobs" / "slow.json", root / "out.db", value="$cyctime")  # now quick
    r = run(root, "scheduler", "run-once")
    assert r.exit_code == 0, r.output
    got = store(root).get(iid)
    assert (got.state, got.attempts, got.recoveries) == ("succeeded", 1, 1)
    assert published(root) == 1
