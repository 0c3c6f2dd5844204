"""The project file: nodes as validated, and every mistake reported under its key path."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Any

import pytest

from tidesync.errors import ConfigError
from tidesync.scheduler.project import load_project

from ._helpers import stream_job, write_project

OK = {"name": "ok", "schedule": {"every": "day"}}


def problems_of(tmp_path: Path, nodes: list[dict[str, Any]], **top: Any) -> list[str]:
    write_project(tmp_path, nodes, **top)
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    return err.value.problems


def test_a_node_reads_with_its_defaults(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {
                "name": "iot",
                "params": "filename=$[yyyymmddhh24mi] start_time=$[yyyymmddhh24miss-10/24/60]",
                "schedule": {
                    "every": "15 minutes",
                    "start": "00:00",
                    "end": "23:59",
                    "timezone": "Asia/Shanghai",
                    "start_date": "2019-11-06",
                },
            }
        ],
    )
    node = load_project(tmp_path).nodes["iot"]
    assert node.params == {
        "filename": "$[yyyymmddhh24mi]",
        "start_time": "$[yyyymmddhh24miss-10/24/60]",
    }
    s = node.schedule
    assert (s.kind, s.interval, s.end, s.timezone, s.start_date) == (
        "minute",
        15,
        time(23, 59),
        "Asia/Shanghai",
        date(2019, 11, 6),
    )
    assert (
        node.retries,
        node.retry_interval,
        node.self_dependent,
        node.timeout,
        node.concurrency,
        node.paused,
    ) == (0, 120.0, False, None, None, False)


@pytest.mark.parametrize(
    ("schedule", "kind", "interval"),
    [
        ({"every": "minute", "interval": 5}, "minute", 5),
        ({"every": "2 hours"}, "hour", 2),
        ({"every": "daily", "at": "00:30"}, "day", 1),
        ({"every": "week", "days": ["mon", 5]}, "week", 1),
        ({"every": "month", "days": [1, "last"]}, "month", 1),
        ({"cron": "*/5 * * * *"}, "cron", 1),
    ],
)
def test_cycle_forms(tmp_path: Path, schedule: dict[str, Any], kind: str, interval: int) -> None:
    write_project(tmp_path, [{"name": "n", "schedule": schedule}])
    s = load_project(tmp_path).nodes["n"].schedule
    assert (s.kind, s.interval) == (kind, interval)


def test_params_as_a_mapping_keep_their_order(tmp_path: Path) -> None:
    write_project(tmp_path, [{**OK, "params": {"a": "$[hh24]", "b": "x${a}"}}])
    assert list(load_project(tmp_path).nodes["ok"].params) == ["a", "b"]


def test_params_yaml_would_retype_are_refused_not_passed_changed(tmp_path: Path) -> None:
    stream_job(tmp_path / "jobs" / "ok.json", value="${region}")
    (tmp_path / "tidesync.yaml").write_text(
        "timezone: UTC\n"
        "nodes:\n"
        "  - name: ok\n"
        "    job: jobs/ok.json\n"
        "    schedule: {every: day}\n"
        "    params:\n"
        "      region: 010\n"  # YAML 1.1: octal 8; the job read region 8
        "      slot: 1:30\n"  # base 60: 90
        "      flag: on\n"  # True
        "      ratio: 1.50\n"  # 1.5
        "      at: 2025-1-5 9:00:00\n"  # 2025-01-05 09:00:00
        "      day: 2025-01-05\n"  # a date reads only as written
        "      days: 7\n"  # a plain number is its text
        "      code: '010'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    got = [p.partition(": ")[2] for p in err.value.problems]
    assert got == [
        "nodes[0].params.region: YAML reads 010 as 8 (octal); quote it ('010') for the text, "
        "or write 8",
        "nodes[0].params.slot: YAML reads 1:30 as 90 (base 60); quote it ('1:30') for the "
        "text, or write 90",
    ]
    text = (tmp_path / "tidesync.yaml").read_text()
    text = text.replace("region: 010", "region: '010'").replace("slot: 1:30", "slot: '1:30'")
    (tmp_path / "tidesync.yaml").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    assert err.value.problems == [
        "nodes[0].params.flag: YAML reads this unquoted value as the bool True, whose text "
        "('True') may not be what is written; quote it",
        "nodes[0].params.ratio: YAML reads this unquoted value as the float 1.5, whose text "
        "('1.5') may not be what is written; quote it",
        "nodes[0].params.at: YAML reads this unquoted value as the datetime "
        "datetime.datetime(2025, 1, 5, 9, 0), whose text ('2025-01-05 09:00:00') may not be "
        "what is written; quote it",
    ]
    text = (
        text.replace("flag: on", "flag: 'on'")
        .replace("1.50", "'1.50'")
        .replace("2025-1-5 9:00:00", "'2025-1-5 9:00:00'")
    )
    (tmp_path / "tidesync.yaml").write_text(text, encoding="utf-8")
    params = load_project(tmp_path).nodes["ok"].params
    assert params == {
        "region": "010",
        "slot": "1:30",
        "flag": "on",
        "ratio": "1.50",
        "at": "2025-1-5 9:00:00",
        "day": "2025-01-05",
        "days": "7",
        "code": "010",
    }


def test_project_timezone_is_the_default_of_schedules(tmp_path: Path) -> None:
    write_project(tmp_path, [OK], timezone="Europe/Berlin")
    assert load_project(tmp_path).nodes["ok"].schedule.timezone == "Europe/Berlin"


BAD: list[tuple[str, dict[str, Any], str]] = [
    (
        "unknown cycle",
        {"schedule": {"every": "minit"}},
        "nodes[2].schedule.every: 'minit' is not a cycle; did you mean 'minute'?",
    ),
    ("no cycle", {"schedule": {"at": "00:30"}}, "nodes[2].schedule.every: is required"),
    ("no schedule", {"schedule": None}, "nodes[2].schedule: is required"),
    (
        "count on a day cycle",
        {"schedule": {"every": "3 days"}},
        "nodes[2].schedule.every: '3 days': only minutes and hours take a count",
    ),
    (
        "interval out of range",
        {"schedule": {"every": "hour", "interval": 24}},
        "nodes[2].schedule.every: every 24 hours: the interval must be 1 to 23",
    ),
    (
        "unquoted time",
        {"schedule": {"every": "day", "at": 750}},
        "nodes[2].schedule.at: 750 is a number: YAML reads an unquoted 12:30 as base 60; quote it",
    ),
    (
        "bad time",
        {"schedule": {"every": "day", "at": "25:00"}},
        "nodes[2].schedule.at: '25:00' is not a time of day",
    ),
    (
        "at on a minute cycle",
        {"schedule": {"every": "minute", "at": "01:00"}},
        "nodes[2].schedule.at: only day, week and month cycles run at a time; use start and end",
    ),
    (
        "window backwards",
        {"schedule": {"every": "hour", "start": "10:00", "end": "08:00"}},
        "nodes[2].schedule.end: 08:00 is before start 10:00",
    ),
    (
        "week without days",
        {"schedule": {"every": "week"}},
        "nodes[2].schedule.days: is required for a week cycle",
    ),
    (
        "bad weekday",
        {"schedule": {"every": "week", "days": ["mon", "funday"]}},
        "nodes[2].schedule.days[1]: 'funday' is not a weekday",
    ),
    (
        "bad month day",
        {"schedule": {"every": "month", "days": [32]}},
        "nodes[2].schedule.days[0]: 32 is not a day of the month",
    ),
    (
        "cron fields",
        {"schedule": {"cron": "* * * *"}},
        "nodes[2].schedule.cron: '* * * *' has 4 fields; write five",
    ),
    (
        "cron range",
        {"schedule": {"cron": "61 * * * *"}},
        "nodes[2].schedule.cron: '61 * * * *' is not a cron expression",
    ),
    (
        "time zone",
        {"schedule": {"every": "day", "timezone": "Europe/Berlinn"}},
        "nodes[2].schedule.timezone: unknown time zone 'Europe/Berlinn'; did you mean 'Europe/Berlin'?",
    ),
    (
        "dates backwards",
        {"schedule": {"every": "day", "start_date": "2025-02-01", "end_date": "2025-01-01"}},
        "nodes[2].schedule.end_date: 2025-01-01 is before start_date 2025-02-01",
    ),
    (
        "bad date",
        {"schedule": {"every": "day", "start_date": "someday"}},
        "nodes[2].schedule.start_date: 'someday' is not a date",
    ),
    (
        "schedule key",
        {"schedule": {"every": "day", "evry": 1}},
        "nodes[2].schedule.evry: unknown key; did you mean 'every'?",
    ),
    ("node key", {"retry": 3}, "nodes[2].retry: unknown key; did you mean 'retries'?"),
    ("retries", {"retries": -1}, "nodes[2].retries: -1 is not a whole number from 0 to 100"),
    (
        "retry interval",
        {"retry_interval": "soon"},
        "nodes[2].retry_interval: 'soon' is not a duration",
    ),
    ("timeout zero", {"timeout": 0}, "nodes[2].timeout: must be more than 0"),
    (
        "concurrency",
        {"concurrency": 0},
        "nodes[2].concurrency: 0 is not a whole number of at least 1",
    ),
    ("paused", {"paused": "yes"}, "nodes[2].paused: 'yes' is not true or false"),
    (
        "job file",
        {"job": "jobs/missing.json"},
        "nodes[2].job: no such job file 'jobs/missing.json'",
    ),
    ("params syntax", {"params": "filename"}, "nodes[2].params: item 'filename' is not name=value"),
    (
        "params expression",
        {"params": "f=${filname}"},
        "nodes[2].params.f: unknown parameter '${filname}'",
    ),
    (
        "unknown upstream",
        {"depends_on": ["firts"]},
        "nodes[2].depends_on[0]: unknown node 'firts'; did you mean 'first'?",
    ),
    (
        "self upstream",
        {"depends_on": ["third"]},
        "nodes[2].depends_on[0]: a node cannot depend on itself; for 'wait for my previous "
        "instance' set self_dependent: true",
    ),
    (
        "catchup word",
        {"catchup": "lates"},
        "nodes[2].catchup: 'lates' is not a catch-up policy; did you mean 'latest'?",
    ),
    (
        "catchup boolean",
        {"catchup": False},
        "nodes[2].catchup: False is not a catch-up policy; write catchup: latest",
    ),
    (
        "catchup zero",
        {"catchup": 0},
        "nodes[2].catchup: 0: a count of slots must be at least 1",
    ),
    (
        "catchup key",
        {"catchup": {"cont": 5}},
        "nodes[2].catchup.cont: unknown key; did you mean 'count'?",
    ),
    (
        "catchup age without unit",
        {"catchup": {"age": 7}},
        "nodes[2].catchup.age: 7 has no unit; write an age such as 7d",
    ),
    (
        "catchup age unit",
        {"catchup": "7 dayz"},
        "nodes[2].catchup: '7 dayz' is not an age",
    ),
    ("bad name", {"name": "has space"}, "nodes[2].name: 'has space' is not a node name"),
    ("duplicate name", {"name": "first"}, "nodes[2].name: 'first' is already the name of nodes[0]"),
]


@pytest.mark.parametrize(("change", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_node_is_reported_under_its_key_path(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    third = {"name": "third", "schedule": {"every": "day"}, **change}
    if third["schedule"] is None:
        del third["schedule"]
    nodes = [
        {"name": "first", "schedule": {"every": "day"}},
        {"name": "second", "schedule": {"every": "day"}},
        third,
    ]
    if "job" in change:
        nodes[2]["job"] = change["job"]
    problems = problems_of(tmp_path, nodes)
    assert any(p.startswith(message) for p in problems), problems


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        [
            {
                "name": "a",
                "retries": "x",
                "timeout": "later",
                "schedule": {"every": "week", "days": ["xday"]},
            }
        ],
    )
    assert sorted(p.split(":")[0] for p in problems) == [
        "nodes[0].retries",
        "nodes[0].schedule.days[0]",
        "nodes[0].timeout",
    ]


def test_dependency_cycle_is_named(tmp_path: Path) -> None:
    problems = problems_of(
        tmp_path,
        [
            {"name": "a", "schedule": {"every": "day"}, "depends_on": ["c"]},
            {"name": "b", "schedule": {"every": "day"}, "depends_on": ["a"]},
            {"name": "c", "schedule": {"every": "day"}, "depends_on": ["b"]},
        ],
    )
    assert any("dependency cycle" in p and "a -> b -> c -> a" in p for p in problems), problems


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ({"nodes": {"a": 1}}, "nodes: must be a list of nodes"),
        ({"scheduler": {"lease": "1s"}}, "scheduler.lease: must be at least 3s"),
        ({"scheduler": {"workers": 0}}, "scheduler.workers: 0 is not a whole number of at least 1"),
        ({"scheduler": {"wrokers": 2}}, "scheduler.wrokers: unknown key; did you mean 'workers'?"),
        ({"state": 5}, "state: must be a PostgreSQL URL"),
        ({"timezone": "Mars/Base"}, "timezone: unknown time zone 'Mars/Base'"),
        ({"catchup": "al"}, "catchup: 'al' is not a catch-up policy; did you mean 'all'?"),
        (
            {"scheduler": {"create_limit": 0}},
            "scheduler.create_limit: 0 is not a whole number of at least 1",
        ),
        ({"scheduler": {"progress": "often"}}, "scheduler.progress: 'often' is not a duration"),
        (
            {"scheduler": {"create_limt": 5}},
            "scheduler.create_limt: unknown key; did you mean 'create_limit'?",
        ),
    ],
)
def test_bad_top_level_settings(tmp_path: Path, top: dict[str, Any], message: str) -> None:
    nodes = top.pop("nodes", [dict(OK)])
    write_project(tmp_path, [] if isinstance(nodes, dict) else nodes, **top)
    if isinstance(nodes, dict):
        text = (tmp_path / "tidesync.yaml").read_text().replace("nodes: []", "nodes: {a: 1}")
        (tmp_path / "tidesync.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_project(tmp_path)
    assert any(p.startswith(message) for p in err.value.problems), err.value.problems


@pytest.mark.parametrize(
    ("spelled", "mode", "count", "age"),
    [
        ("latest", "latest", None, None),
        ("ALL", "all", None, None),
        (100, "bound", 100, None),
        ("100", "bound", 100, None),
        ("7d", "bound", None, 7 * 86400.0),
        ("1h30m", "bound", None, 5400.0),
        ({"count": 96, "age": "1d"}, "bound", 96, 86400.0),
    ],
)
def test_catchup_spellings(
    tmp_path: Path, spelled: Any, mode: str, count: int | None, age: float | None
) -> None:
    write_project(tmp_path, [{"name": "ok", "schedule": {"every": "day"}, "catchup": spelled}])
    c = load_project(tmp_path).nodes["ok"].catchup
    assert (c.mode, c.count, c.age, c.where) == (mode, count, age, "nodes[0].catchup")


def test_project_catchup_is_the_default_of_nodes(tmp_path: Path) -> None:
    write_project(
        tmp_path,
        [
            {"name": "ok", "schedule": {"every": "day"}},
            {"name": "own", "schedule": {"every": "day"}, "catchup": 5},
        ],
        catchup="all",
    )
    nodes = load_project(tmp_path).nodes
    assert (nodes["ok"].catchup.mode, nodes["ok"].catchup.where) == ("all", "catchup")
    assert (nodes["own"].catchup.mode, nodes["own"].catchup.count) == ("bound", 5)


def test_catchup_defaults_to_latest_and_the_limit_to_10000(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "ok", "schedule": {"every": "day"}}])
    p = load_project(tmp_path)
    assert (p.nodes["ok"].catchup.mode, p.settings.create_limit) == ("latest", 10_000)


def test_missing_project_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"tidesync.yaml: no such project file"):
        load_project(tmp_path)


def test_dry_run_node_needs_no_job(tmp_path: Path) -> None:
    write_project(tmp_path, [{"name": "gate", "dry_run": True, "schedule": {"every": "day"}}])
    assert load_project(tmp_path).nodes["gate"].job is None


def test_downstream_is_transitive_and_ordered(tmp_path: Path) -> None:
    stream_job(tmp_path / "j.json")
    write_project(
        tmp_path,
        [
            {"name": "c", "job": "j.json", "schedule": {"every": "day"}, "depends_on": ["b"]},
            {"name": "b", "job": "j.json", "schedule": {"every": "day"}, "depends_on": ["a"]},
            {"name": "a", "job": "j.json", "schedule": {"every": "day"}},
            {"name": "x", "job": "j.json", "schedule": {"every": "day"}},
        ],
    )
    p = load_project(tmp_path)
    assert p.downstream("a") == ["b", "c"]
    assert p.order().index("a") < p.order().index("b") < p.order().index("c")
