"""Catch-up: how far back a pass creates slots, and the cap on what one pass may create."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tidesync.cli import main

from ._helpers import at, scheduler, states, write_project

SH = "Asia/Shanghai"


def run(root: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--project", str(root)], catch_exceptions=False)


def quarterly(root: Path, **node: Any) -> Path:
    """Seed 000's node: every 15 minutes since 2019-11-06, a dry run (nothing to execute)."""
    spec = {
        "name": "iot_sync",
        "dry_run": True,
        "schedule": {"every": "15 minutes", "start_date": "2019-11-06"},
        **node,
    }
    return write_project(root, [spec], timezone=SH)


def small_and_big(root: Path, big: str, every: str, **top: Any) -> Path:
    """A daily node beside one that catches up on every slot since 2025-01-01."""
    catching_up = {
        "name": big,
        "dry_run": True,
        "catchup": "all",
        "schedule": {"every": every, "start_date": "2025-01-01"},
    }
    small = {"name": "small", "dry_run": True, "schedule": {"every": "day"}}
    return write_project(root, [small, catching_up], **top)


def count(root: Path) -> int:
    return len(scheduler(root).store.listing(batch=""))


# -- where a new node starts ----------------------------------------------------------------


def test_an_old_start_date_creates_only_the_latest_slot_by_default(tmp_path: Path) -> None:
    quarterly(tmp_path)
    r = run(tmp_path, "scheduler", "run-once")  # the case: no --at, the real clock
    assert r.exit_code == 0, r.output
    assert count(tmp_path) == 1
    assert "iot_sync: created 1 instance(s), cyctime " in r.stderr
    assert "catchup latest: starts at its latest slot" in r.stderr


def test_catchup_all_creates_every_slot_since_the_start_date(tmp_path: Path) -> None:
    quarterly(tmp_path, catchup="all")
    r = run(tmp_path, "scheduler", "run-once", "--at", "20191106060000")
    assert r.exit_code == 0, r.output
    assert count(tmp_path) == 25  # 00:00 .. 06:00
    assert (
        "iot_sync: created 25 instance(s), cyctime 2019-11-06 00:00:00+08:00 .. "
        "2019-11-06 06:00:00+08:00"
    ) in r.stderr


def test_the_project_catchup_applies_to_its_nodes(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [{"name": "n", "dry_run": True, "schedule": {"every": "hour", "start_date": "2025-01-01"}}],
        catchup=2,
    )
    scheduler(tmp_path).run_once(at("202501010300"))
    assert list(states(scheduler(tmp_path))) == ["20250101020000", "20250101030000"]


def test_after_the_first_pass_latest_creates_every_slot_since_the_previous(tmp_path: Path) -> None:
    quarterly(tmp_path)
    s = scheduler(tmp_path)
    s.run_once(at("201911071007", SH))
    s.run_once(at("201911071100", SH))  # a crontab every hour on a 15-minute node misses nothing
    assert list(states(scheduler(tmp_path))) == [
        "20191107100000",
        "20191107101500",
        "20191107103000",
        "20191107104500",
        "20191107110000",
    ]


@pytest.mark.parametrize(
    ("catchup", "first"),
    [
        (3, "103000"),  # the latest three
        ("1h", "100000"),  # due within the hour before 11:00, 10:00 included
        ({"count": 3, "age": "2h"}, "103000"),  # both: the stricter
        ({"count": 30, "age": "30m"}, "103000"),
    ],
)
def test_a_bound_keeps_the_latest_slots_from_the_start_date(
    tmp_path: Path, catchup: Any, first: str
) -> None:
    quarterly(tmp_path, catchup=catchup)
    scheduler(tmp_path).run_once(at("201911071100", SH))
    quarters = ["100000", "101500", "103000", "104500", "110000"]
    want = ["20191107" + q for q in quarters[quarters.index(first) :]]
    assert list(states(scheduler(tmp_path))) == want


def test_a_bound_also_limits_a_pass_after_a_long_stop(tmp_path: Path) -> None:
    quarterly(tmp_path, catchup={"count": 2})
    s = scheduler(tmp_path)
    s.run_once(at("201911071000", SH))
    messages: list[str] = []
    s = scheduler(tmp_path, announce=messages.append)
    s.run_once(at("201911081000", SH))  # a day later: 96 slots behind, two created
    assert list(states(scheduler(tmp_path))) == [
        "20191107094500",
        "20191107100000",
        "20191108094500",
        "20191108100000",
    ]
    assert messages == [
        "iot_sync: catchup latest 2: slots before 2019-11-08 09:45:00+08:00 are not created",
        "iot_sync: created 2 instance(s), cyctime 2019-11-08 09:45:00+08:00 .. "
        "2019-11-08 10:00:00+08:00",
    ]


# -- the cap --------------------------------------------------------------------------------


def test_more_than_the_default_cap_is_refused_with_exit_2_and_nothing_created(
    tmp_path: Path,
) -> None:
    small_and_big(tmp_path, "minutely", "minute")
    r = run(tmp_path, "scheduler", "run-once", "--at", "20250108000000")
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        "error: nodes[1].catchup: node minutely would get 10,081 instances in one pass "
        "(2025-01-01 00:00:00+00:00 .. 2025-01-08 00:00:00+00:00), more than "
        "scheduler.create_limit 10,000; nothing was created. Bound the catch-up "
        "(catchup: latest, or e.g. catchup: 7d), raise scheduler.create_limit, or pass --yes"
    ]
    assert count(tmp_path) == 0  # not even the other node's: the pass is refused whole
    assert scheduler(tmp_path).store.marks() == {}


def test_yes_goes_through_the_cap(tmp_path: Path) -> None:
    quarterly(tmp_path, catchup="all")
    (tmp_path / "tidesync.yaml").write_text(
        (tmp_path / "tidesync.yaml").read_text() + "scheduler: {create_limit: 20}\n"
    )
    refused = run(tmp_path, "scheduler", "run-once", "--at", "20191106060000")
    assert refused.exit_code == 2
    assert "node iot_sync would get 25 instances in one pass" in refused.stderr
    assert count(tmp_path) == 0
    r = run(tmp_path, "scheduler", "run-once", "--at", "20191106060000", "--yes")
    assert r.exit_code == 0, r.output
    assert count(tmp_path) == 25
    assert "iot_sync: created 25 instance(s)" in r.stderr


def test_the_daemon_holds_a_node_over_the_cap_and_creates_the_others(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small_and_big(tmp_path, "big", "hour", scheduler={"create_limit": 10})
    s = scheduler(tmp_path)
    with caplog.at_level(logging.INFO, logger="tidesync.scheduler"):
        s.create_due(at("202501020000"), hold=True)
        s.create_due(at("202501020100"), hold=True)  # held: not counted, not logged again
    assert {i.node for i in s.store.listing()} == {"small"}
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "nodes[1].catchup: node big would get 25 instances in one pass (2025-01-01 00:00:00+00:00 .. "
        "2025-01-02 00:00:00+00:00), more than scheduler.create_limit 10; nothing was created. "
        "Bound the catch-up (catchup: latest, or e.g. catchup: 7d), raise "
        "scheduler.create_limit, or pass --yes; held until the project file changes"
    ]


def test_a_backfill_over_the_cap_is_refused_and_yes_goes_through(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [{"name": "h", "dry_run": True, "schedule": {"every": "hour"}}],
        scheduler={"create_limit": 50},
    )
    r = run(tmp_path, "backfill", "h", "--from", "20250101", "--to", "20250103", "--no-run")
    assert r.exit_code == 2
    assert r.stderr.startswith(
        "error: --from/--to: backfill of node h would create 72 instances "
        "(2025-01-02 00:00:00+00:00 .. 2025-01-04 23:00:00+00:00), more than "
        "scheduler.create_limit 50; nothing was created."
    )
    assert scheduler(tmp_path).store.listing() == []
    r = run(tmp_path, "backfill", "h", "--from", "20250101", "--to", "20250103", "--no-run", "-y")
    assert r.exit_code == 0, r.output
    assert len(scheduler(tmp_path).store.listing()) == 72
    assert "h: created 72 instance(s) in backfill-" in r.stderr
