"""The scheduler, in process, with time driven by hand: instances, parameters, retries,
dependencies, backfill, timeouts, kills and recovery."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from contextlib import closing
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tidesync.errors import ConfigError
from tidesync.scheduler.daemon import Scheduler
from tidesync.scheduler.project import load_project
from tidesync.scheduler.store import this_host

from ._helpers import (
    at,
    file_job,
    land,
    scheduler,
    sqlite_job,
    states,
    stream_job,
    table,
    write_project,
)

SH = "Asia/Shanghai"


def params_by_cyctime(s: Scheduler, node: str) -> dict[str, dict[str, str]]:
    return {i.cyctime: i.param_values for i in s.store.listing(node=node)}


def file_node(root: Path, **kw: Any) -> dict[str, Any]:
    file_job(root / "jobs" / "load.json")
    return {
        "name": "load",
        "job": "jobs/load.json",
        "params": "filename=$[yyyymmddhh24mi]",
        "schedule": {"every": "hour", "start_date": "2025-01-01"},
        **kw,
    }


def wait_for(cond: Any, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


# -- instances and parameters ---------------------------------------------------------------


def test_seed002_window_parameters_per_instance(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {
                "name": "ots_to_oss",
                "params": "start_time=$[yyyymmddhh24miss-10/24/60] end_time=$[yyyymmddhh24miss-5/24/60] "
                "date=${bdp.system.bizdate}",
                "schedule": {
                    "every": "5 minutes",
                    "start": "00:00",
                    "end": "23:59",
                    "timezone": SH,
                    "start_date": "2019-11-06",
                },
            }
        ],
        timezone=SH,
        catchup="all",
    )
    s = scheduler(tmp_path)
    out = s.run_once(at("201911060015", SH))
    assert [o.state for o in out] == ["succeeded"] * 4
    assert params_by_cyctime(s, "ots_to_oss") == {
        "20191106000000": {
            "start_time": "20191105235000",
            "end_time": "20191105235500",
            "date": "20191105",
        },
        "20191106000500": {
            "start_time": "20191105235500",
            "end_time": "20191106000000",
            "date": "20191105",
        },
        "20191106001000": {
            "start_time": "20191106000000",
            "end_time": "20191106000500",
            "date": "20191105",
        },
        "20191106001500": {
            "start_time": "20191106000500",
            "end_time": "20191106001000",
            "date": "20191105",
        },
    }


def test_seed000_filename_per_instance_reaches_the_job(tmp_path: Path) -> None:
    sqlite_job(tmp_path / "jobs" / "iot.json", tmp_path / "out.db", value="${filename}")
    write_project(
        tmp_path,
        [
            {
                "name": "iot",
                "job": "jobs/iot.json",
                "params": "filename=$[yyyymmddhh24mi]",
                "schedule": {"every": "15 minutes", "start_date": "2019-11-06"},
            }
        ],
        timezone=SH,
        catchup="all",
    )
    scheduler(tmp_path).run_once(at("201911060045", SH))
    import sqlite3

    with sqlite3.connect(tmp_path / "out.db") as con:
        got = sorted(r[0] for r in con.execute("SELECT v FROM runs"))
    assert got == ["201911060000", "201911060015", "201911060030", "201911060045"]


def test_a_new_node_starts_at_its_latest_slot_without_start_date(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "n", "schedule": {"every": "15 minutes"}}])
    s = scheduler(tmp_path)
    s.run_once(at("202501011007"))
    assert list(states(s)) == ["20250101100000"]
    s.run_once(at("202501011040"))
    assert list(states(s)) == ["20250101100000", "20250101101500", "20250101103000"]


def test_a_second_pass_at_the_same_time_does_nothing(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [{"name": "n", "schedule": {"every": "hour", "start_date": "2025-01-01"}}],
        catchup="all",
    )
    s = scheduler(tmp_path)
    assert len(s.run_once(at("202501010300"))) == 4
    assert s.run_once(at("202501010300")) == []


def test_nothing_before_the_start_date(tmp_path: Path) -> None:
    write_project(
        tmp_path, [{"name": "n", "schedule": {"every": "day", "start_date": "2025-02-01"}}]
    )
    s = scheduler(tmp_path)
    assert s.run_once(at("202501150000")) == []
    s.run_once(at("202502021200"))
    assert list(states(s)) == ["20250201000000", "20250202000000"]


def test_instances_carry_cyctime_and_bizdate_across_a_year(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [{"name": "n", "schedule": {"every": "day", "at": "00:30", "start_date": "2024-12-31"}}],
        catchup="all",
    )
    s = scheduler(tmp_path)
    s.run_once(at("202501010100"))
    assert [(i.cyctime, i.bizdate) for i in s.store.listing()] == [
        ("20241231003000", "20241230"),
        ("20250101003000", "20241231"),
    ]


def test_a_dry_run_node_is_skipped_and_does_not_block_its_downstream(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {
                "name": "gate",
                "dry_run": True,
                "schedule": {"every": "day", "start_date": "2025-01-01"},
            },
            {
                "name": "after",
                "depends_on": ["gate"],
                "schedule": {"every": "day", "start_date": "2025-01-01"},
            },
        ],
    )
    s = scheduler(tmp_path)
    s.run_once(at("202501010000"))
    assert states(s, "gate") == {"20250101000000": "skipped"}
    assert states(s, "after") == {"20250101000000": "succeeded"}


# -- retries --------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_retries_count_the_runs_after_the_first(tmp_path: Path, retries: int) -> None:
    write_project(tmp_path, [file_node(tmp_path, retries=retries, retry_interval=0)])
    s = scheduler(tmp_path)
    out = s.run_once(at("202501010000"))
    assert [o.state for o in out] == ["waiting"] * retries + ["failed"]
    inst = s.store.listing()[0]
    assert (inst.state, inst.attempts) == ("failed", retries + 1)
    assert "no file matches" in inst.error


def test_a_retry_waits_for_its_interval_and_can_then_succeed(tmp_path: Path) -> None:
    write_project(tmp_path, [file_node(tmp_path, retries=3, retry_interval="2m")])
    s = scheduler(tmp_path)
    assert [o.state for o in s.run_once(at("202501010000"))] == ["waiting"]
    assert s.run_once(at("202501010001")) == []  # not yet: the interval is 2 minutes
    land(tmp_path, "202501010000", "late file")
    out = s.run_once(at("202501010002"))
    assert [(o.state, o.attempt) for o in out] == [("succeeded", 2)]
    assert table(tmp_path) == [("late file", "202501010000")]
    log = Path(s.store.listing()[0].log_path).read_text()
    assert "attempt 1 of 4" in log and "retry 1 of 3 in 120s" in log and "attempt 2 of 4" in log


def test_a_bad_job_file_is_not_retried(tmp_path: Path) -> None:
    stream_job(tmp_path / "jobs" / "bad.json", value="${undefined_param}")
    write_project(
        tmp_path,
        [
            {
                "name": "bad",
                "job": "jobs/bad.json",
                "retries": 3,
                "retry_interval": 0,
                "schedule": {"every": "day"},
            }
        ],
    )
    s = scheduler(tmp_path)
    out = s.run_once(at("202501010000"))
    assert [(o.state, o.attempt) for o in out] == [("failed", 1)]
    assert "unknown parameter '${undefined_param}'" in s.store.listing()[0].error


# -- self-dependency and upstreams ----------------------------------------------------------


@pytest.mark.parametrize(("self_dependent", "second"), [(True, "waiting"), (False, "succeeded")])
def test_self_dependency_waits_for_the_previous_instance(
    tmp_path: Path, self_dependent: bool, second: str
) -> None:
    write_project(tmp_path, [file_node(tmp_path, self_dependent=self_dependent)], catchup="all")
    land(tmp_path, "202501010100")
    s = scheduler(tmp_path)
    s.run_once(at("202501010100"))  # 00:00 has no file and fails
    assert states(s) == {"20250101000000": "failed", "20250101010000": second}
    if self_dependent:
        waiting = s.store.find("load", "20250101010000")
        assert s.waiting_on(waiting).startswith("self-dependent: previous instance")


def test_a_self_dependent_chain_resumes_after_a_rerun(tmp_path: Path) -> None:
    write_project(tmp_path, [file_node(tmp_path, self_dependent=True)], catchup="all")
    land(tmp_path, "202501010100")
    s = scheduler(tmp_path)
    s.run_once(at("202501010100"))
    first = s.store.find("load", "20250101000000")
    land(tmp_path, "202501010000")
    s.store.rerun(first.id)
    s.run_once(at("202501010100"))
    assert states(s) == {"20250101000000": "succeeded", "20250101010000": "succeeded"}
    assert [r[1] for r in table(tmp_path)] == ["202501010000", "202501010100"]


def test_daily_node_waits_for_all_hourly_instances_of_its_bizdate(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {"name": "hourly", "schedule": {"every": "hour", "start_date": "2025-01-02"}},
            {
                "name": "daily",
                "depends_on": ["hourly"],
                "schedule": {"every": "day", "at": "00:30", "start_date": "2025-01-02"},
            },
        ],
        catchup="all",
    )
    s = scheduler(tmp_path)
    s.run_once(at("202501021200"))
    daily = s.store.find("daily", "20250102003000")
    assert daily.state == "waiting"
    assert s.waiting_on(daily) == "upstream hourly 20250102130000 is not created yet"
    s.run_once(at("202501022300"))
    assert states(s, "daily") == {"20250102003000": "succeeded"}
    assert len(states(s, "hourly")) == 24


def test_hourly_nodes_depend_one_to_one(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            file_node(tmp_path),
            {
                "name": "down",
                "depends_on": ["load"],
                "schedule": {"every": "hour", "start_date": "2025-01-01"},
            },
        ],
        catchup="all",
    )
    land(tmp_path, "202501010000")  # 01:00's file never comes
    s = scheduler(tmp_path)
    s.run_once(at("202501010100"))
    assert states(s, "down") == {"20250101000000": "succeeded", "20250101010000": "waiting"}


def test_hourly_node_waits_for_the_daily_upstream_of_its_bizdate(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {
                "name": "daily",
                "schedule": {"every": "day", "at": "02:00", "start_date": "2025-01-01"},
            },
            {
                "name": "hourly",
                "depends_on": ["daily"],
                "schedule": {"every": "hour", "start_date": "2025-01-01"},
            },
        ],
    )
    s = scheduler(tmp_path)
    s.run_once(at("202501010100"))
    assert set(states(s, "hourly").values()) == {"waiting"}
    s.run_once(at("202501010200"))
    assert set(states(s, "hourly").values()) == {"succeeded"}


def test_upstream_slots_before_its_first_instance_do_not_block(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {"name": "quarter", "schedule": {"every": "15 minutes"}},
            {"name": "hourly", "depends_on": ["quarter"], "schedule": {"every": "hour"}},
        ],
    )
    s = scheduler(tmp_path)
    s.run_once(at("202501011007"))  # quarter starts at 10:00; 09:15..09:45 never existed
    assert states(s, "hourly") == {"20250101100000": "succeeded"}


def test_paused_node_creates_instances_that_wait(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "n", "paused": True, "schedule": {"every": "day"}}])
    s = scheduler(tmp_path)
    s.run_once(at("202501010000"))
    inst = s.store.listing()[0]
    assert inst.state == "waiting" and s.waiting_on(inst) == "node n is paused"


def test_concurrency_limits_running_instances(tmp_path: Path) -> None:
    # 150 rows at 100 rows/s: one second of burst, then ~0.5 s of waiting per instance
    stream_job(tmp_path / "jobs" / "slow.json", value="$cyctime", records=150, record_rate=100)
    write_project(
        tmp_path,
        [
            {
                "name": "slow",
                "job": "jobs/slow.json",
                "concurrency": 1,
                "schedule": {"every": "hour", "start_date": "2025-01-01"},
            }
        ],
        catchup="all",
    )
    s = scheduler(tmp_path, workers=4)
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        from tidesync.scheduler.store import SqliteStore

        w = SqliteStore(tmp_path / ".tidesync" / "state.db")
        while not done.is_set():
            seen.append(len(w.listing(state="running")))
            time.sleep(0.01)
        w.close()

    t = threading.Thread(target=watch)
    t.start()
    out = s.run_once(at("202501010200"))
    done.set()
    t.join()
    assert [o.state for o in out] == ["succeeded"] * 3
    assert max(seen) == 1


# -- backfill -------------------------------------------------------------------------------


def test_backfill_runs_one_instance_per_bizdate_in_order(tmp_path: Path) -> None:
    sqlite_job(tmp_path / "jobs" / "d.json", tmp_path / "out.db", value="${bizdate}")
    write_project(
        tmp_path, [{"name": "d", "job": "jobs/d.json", "schedule": {"every": "day", "at": "00:30"}}]
    )
    s = scheduler(tmp_path)
    batch, n = s.create_backfill("d", date(2024, 12, 30), date(2025, 1, 2))
    out = s.run_once(batch=batch)
    assert n == 4 and [o.state for o in out] == ["succeeded"] * 4
    assert [(i.cyctime, i.bizdate) for i in s.store.listing(batch=batch)] == [
        ("20241231003000", "20241230"),
        ("20250101003000", "20241231"),
        ("20250102003000", "20250101"),
        ("20250103003000", "20250102"),
    ]
    import sqlite3

    with sqlite3.connect(tmp_path / "out.db") as con:
        assert [r[0] for r in con.execute("SELECT v FROM runs ORDER BY rowid")] == [
            "20241230",
            "20241231",
            "20250101",
            "20250102",
        ]
    assert s.store.listing(batch="") == []  # the schedule's own instances are untouched


def test_backfill_of_an_hourly_node_gives_each_bizdate_its_day(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "h", "dry_run": True, "schedule": {"every": "hour"}}])
    s = scheduler(tmp_path)
    batch, n = s.create_backfill("h", date(2025, 3, 29), date(2025, 3, 30))
    assert n == 48 and {i.bizdate for i in s.store.listing(batch=batch)} == {"20250329", "20250330"}


def test_backfill_with_downstream_waits_within_the_batch(tmp_path: Path) -> None:
    file_job(tmp_path / "jobs" / "load.json")
    write_project(
        tmp_path,
        [
            {
                "name": "load",
                "job": "jobs/load.json",
                "params": "filename=${bizdate}",
                "schedule": {"every": "day"},
            },
            {"name": "report", "depends_on": ["load"], "schedule": {"every": "day"}},
            {"name": "other", "schedule": {"every": "day"}},
        ],
    )
    land(tmp_path, "20250101")  # 20250102's input is missing
    s = scheduler(tmp_path)
    batch, _ = s.create_backfill(
        "load", date(2025, 1, 1), date(2025, 1, 2), with_downstream=True, parallel=2
    )
    s.run_once(batch=batch)
    got = {(i.node, i.bizdate): i.state for i in s.store.listing(batch=batch)}
    assert got == {
        ("load", "20250101"): "succeeded",
        ("load", "20250102"): "failed",
        ("report", "20250101"): "succeeded",
        ("report", "20250102"): "waiting",
    }


def test_backfill_of_a_node_with_no_slot_in_the_range_is_refused(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "w", "schedule": {"every": "week", "days": ["mon"]}}])
    with pytest.raises(ConfigError, match=r"w has no scheduled time for business dates "):
        scheduler(tmp_path).create_backfill("w", date(2025, 1, 7), date(2025, 1, 8))


def test_backfill_of_an_unknown_node_suggests_one(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "load", "schedule": {"every": "day"}}])
    with pytest.raises(ConfigError, match=r"unknown node 'laod'; did you mean 'load'\?"):
        scheduler(tmp_path).create_backfill("laod", date(2025, 1, 1), date(2025, 1, 1))


# -- timeouts, kills, recovery ----------------------------------------------------------------


def slow_sqlite_job(root: Path) -> None:
    """stream (10 rows/s for 100 s) -> sqlite: runs until cancelled; publishes only at the end."""
    sqlite_job(root / "jobs" / "slow.json", root / "out.db", value="$cyctime")
    import json

    p = root / "jobs" / "slow.json"
    doc = json.loads(p.read_text())
    doc["job"]["setting"]["speed"]["record"] = 10
    doc["job"]["content"][0]["reader"]["parameter"]["sliceRecordCount"] = 1000
    p.write_text(json.dumps(doc))


def out_rows(root: Path) -> int:
    import sqlite3

    if not (root / "out.db").exists():
        return 0
    with sqlite3.connect(root / "out.db") as con:
        try:
            return int(con.execute("SELECT count(*) FROM runs").fetchone()[0])
        except sqlite3.OperationalError:
            return 0


def test_timeout_cancels_the_job_and_fails_the_instance(tmp_path: Path) -> None:
    slow_sqlite_job(tmp_path)
    write_project(
        tmp_path,
        [{"name": "slow", "job": "jobs/slow.json", "timeout": 1, "schedule": {"every": "day"}}],
    )
    s = scheduler(tmp_path)
    t0 = time.monotonic()
    out = s.run_once(at("202501010000"))
    assert time.monotonic() - t0 < 15
    assert out[0].state == "failed" and out[0].error.startswith("timed out after 1s")
    assert out_rows(tmp_path) == 0  # nothing published


def test_kill_cancels_a_running_job(tmp_path: Path) -> None:
    slow_sqlite_job(tmp_path)
    write_project(
        tmp_path,
        [{"name": "slow", "job": "jobs/slow.json", "retries": 3, "schedule": {"every": "day"}}],
        scheduler={"lease": "3s"},
    )
    s = scheduler(tmp_path)
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.extend(s.run_once(at("202501010000"))))
    runner.start()
    other = scheduler(tmp_path)
    wait_for(lambda: other.store.listing(state="running"))
    assert other.kill(other.store.listing()[0].id) == "requested"
    runner.join(timeout=20)
    assert [o.state for o in result] == ["cancelled"]  # not retried
    assert other.store.listing()[0].state == "cancelled" and out_rows(tmp_path) == 0


def dead_owner() -> str:
    pid = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return f"{this_host()}:{pid}:crashed"


def test_an_instance_left_running_by_a_dead_process_is_run_again(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "n", "schedule": {"every": "day"}}])
    s = scheduler(tmp_path)
    s.create_due(at("202501010000"))
    (inst,) = s.store.listing()
    s.store.claim("n", [inst.id], dead_owner(), 1.0, time.time() + 3600, None)
    out = s.run_once(at("202501010000"))
    assert [(o.state, o.attempt) for o in out] == [("succeeded", 1)]
    got = s.store.get(inst.id)
    assert got.recoveries == 1
    assert "attempt 1 interrupted: its scheduler" in Path(got.log_path).read_text()


def test_an_expired_lease_of_another_host_is_taken_back(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "n", "schedule": {"every": "day"}}])
    clock = [1000.0]
    s = scheduler(tmp_path, lease_clock=lambda: clock[0])
    s.create_due(at("202501010000"))
    (inst,) = s.store.listing()
    s.store.claim("n", [inst.id], "elsewhere:42:x", 1.0, 1060.0, None)
    assert s.run_once(at("202501010000")) == []  # its lease holds: never run twice at once
    assert s.store.get(inst.id).state == "running"
    clock[0] = 1061.0
    assert [o.state for o in s.run_once(at("202501010000"))] == ["succeeded"]


def test_a_scheduler_that_lost_its_lease_cancels_its_job(tmp_path: Path) -> None:
    slow_sqlite_job(tmp_path)
    write_project(
        tmp_path,
        [{"name": "slow", "job": "jobs/slow.json", "schedule": {"every": "day"}}],
        scheduler={"lease": "3s"},
    )
    a = scheduler(tmp_path, workers=1)  # busy with the one job, it claims nothing else
    result: list[Any] = []
    runner = threading.Thread(target=lambda: result.extend(a.run_once(at("202501010000"))))
    runner.start()
    b = scheduler(tmp_path, lease_clock=lambda: time.time() + 3600)  # b sees a's lease expired
    wait_for(lambda: b.store.listing(state="running"))
    assert b.recover(at("202501010000")) == 1
    (inst,) = b.store.listing()
    assert b.store.claim("slow", [inst.id], b.owner, 1.0, time.time() + 3600, None)
    runner.join(timeout=20)
    assert [o.state for o in result] == ["lost"]  # a cancelled its copy: never twice at once
    got = b.store.get(inst.id)
    assert (got.state, got.owner) == ("running", b.owner) and out_rows(tmp_path) == 0


def test_project_file_reload_picks_up_new_nodes(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "a", "schedule": {"every": "day"}}])
    s = Scheduler(load_project(tmp_path), reload=True)
    write_project(
        tmp_path,
        [{"name": "a", "schedule": {"every": "day"}}, {"name": "b", "schedule": {"every": "day"}}],
    )
    import os

    os.utime(tmp_path / "tidesync.yaml", (time.time() + 5, time.time() + 5))
    s._maybe_reload()
    assert set(s.project.nodes) == {"a", "b"}


@pytest.mark.parametrize(
    ("day", "hours"),
    [("2025-03-30", [0, 1, 3, 4]), ("2025-10-26", [0, 1, 2, 3, 4])],
    ids=["spring-forward", "fall-back"],
)
def test_hourly_instances_over_a_dst_night(tmp_path: Path, day: str, hours: list[int]) -> None:
    write_project(
        tmp_path,
        [
            {
                "name": "h",
                "params": "hour=$[hh24] window_start=$[yyyymmddhh24mi-1/24]",
                "schedule": {"every": "hour", "start_date": day},
            }
        ],
        timezone="Europe/Berlin",
        catchup="all",
    )
    s = scheduler(tmp_path)
    s.run_once(at(day.replace("-", "") + "0430", "Europe/Berlin"))
    got = s.store.listing()
    assert [int(i.cyctime[8:10]) for i in got] == hours
    assert [i.param_values["hour"] for i in got] == [f"{h:02d}" for h in hours]
    assert all(i.state == "succeeded" for i in got)


def test_the_daemon_follows_its_clock(tmp_path: Path) -> None:
    from ._helpers import ManualClock

    write_project(
        tmp_path, [{"name": "n", "schedule": {"every": "hour"}}], scheduler={"poll": "0.05s"}
    )
    clock = ManualClock(at("202501010000"))
    s = scheduler(tmp_path, clock=clock)
    t = threading.Thread(target=s.serve)
    t.start()
    try:
        wait_for(lambda: states(s) == {"20250101000000": "succeeded"})
        clock.advance(hours=2)
        wait_for(
            lambda: (
                states(s)
                == {
                    "20250101000000": "succeeded",
                    "20250101010000": "succeeded",
                    "20250101020000": "succeeded",
                }
            )
        )
    finally:
        s.stop()
        t.join(timeout=20)
    assert not t.is_alive()


def test_hourly_windows_of_a_backfill_over_the_spring_dst_change_read_every_row(
    tmp_path: Path,
) -> None:
    # Berlin skips 02:00-03:00 on 2025-03-30: the hourly node has 23 instances, its 03:00
    # one taking in the skipped 02:00. With the seed's window `$[... -1/24]` .. `$[...]`,
    # the 03:00 instance read [02:00, 03:00): the rows stamped 01:00-01:59 were never read
    import sqlite3

    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, t DATETIME)")
        stamps = [f"2025-03-30 {h:02d}:{m:02d}:00" for h in (0, 1, 3) for m in (0, 30)]
        con.executemany("INSERT INTO ev (t) VALUES (?)", [(s,) for s in stamps])
        con.commit()
    reader = {
        "database": str(tmp_path / "src.db"),
        "table": "ev",
        "column": ["id"],
        "where": "t >= '${lo}' AND t < '${hi}'",
    }
    writer = {"database": str(tmp_path / "out.db"), "table": "out", "writeMode": "insert"}
    job = {"reader": {"name": "sqlitereader", "parameter": reader},
           "writer": {"name": "sqlitewriter", "parameter": writer}}  # fmt: skip
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "ev.json").write_text(json.dumps({"job": {"content": [job]}}))
    node = {
        "name": "ev",
        "job": "jobs/ev.json",
        "params": "lo=$[yyyy-mm-dd hh24:mi:ss-1/24] hi=$[yyyy-mm-dd hh24:mi:ss]",
        "schedule": {"every": "hour", "start": "00:00", "end": "04:00"},
    }
    write_project(tmp_path, [node], timezone="Europe/Berlin")
    s = scheduler(tmp_path)
    batch, n = s.create_backfill("ev", date(2025, 3, 29), date(2025, 3, 29))
    assert [i.cyctime[8:] for i in s.store.listing(batch=batch)] == [
        "000000", "010000", "030000", "040000"
    ]  # fmt: skip
    assert {o.state for o in s.run_once(batch=batch)} == {"succeeded"}
    with closing(sqlite3.connect(tmp_path / "out.db")) as con:
        ids = sorted(r[0] for r in con.execute("SELECT id FROM out"))
    assert ids == list(range(1, len(stamps) + 1))


def test_an_incremental_window_of_instants_ends_at_the_cyctime_of_the_schedules_zone(
    tmp_path: Path,
) -> None:
    # a node on Asia/Shanghai whose job is in UTC (or names no timezone, on a UTC machine):
    # the cyctime 2026-01-02 00:00 was read as UTC, 08:00 in Shanghai, so bizdate 20260101's
    # partition took the rows of 2026-01-02 00:00-07:59 that belong to the next one
    import sqlite3

    with closing(sqlite3.connect(tmp_path / "src.db")) as con:
        con.execute("CREATE TABLE ev (id INTEGER, t TIMESTAMPTZ)")
        rows = [(1, "2026-01-01 10:00:00+08:00"), (2, "2026-01-02 03:00:00+08:00")]
        con.executemany("INSERT INTO ev VALUES (?, ?)", rows)
        con.commit()
    reader = {"database": str(tmp_path / "src.db"), "table": "ev", "column": ["id"],
              "incremental": {"column": "t"}}  # fmt: skip
    writer = {"path": str(tmp_path / "out" / "ds=${bizdate}"), "fileName": "ev",
              "writeMode": "truncate", "fileFormat": "csv"}  # fmt: skip
    job = {"reader": {"name": "sqlitereader", "parameter": reader},
           "writer": {"name": "txtfilewriter", "parameter": writer}}  # fmt: skip
    (tmp_path / "jobs").mkdir()
    doc = {"job": {"setting": {"timezone": "UTC"}, "content": [job]}}
    (tmp_path / "jobs" / "ev.json").write_text(json.dumps(doc))
    node = {"name": "ev", "job": "jobs/ev.json", "schedule": {"every": "day"}}
    write_project(tmp_path, [node], timezone="Asia/Shanghai")
    s = scheduler(tmp_path)
    batch, _ = s.create_backfill("ev", date(2026, 1, 1), date(2026, 1, 2))
    assert {o.state for o in s.run_once(batch=batch)} == {"succeeded"}
    got = {ds: (tmp_path / "out" / f"ds={ds}" / "ev").read_text().split() for ds in ("20260101", "20260102")}  # fmt: skip
    assert got == {"20260101": ["1"], "20260102": ["2"]}
