"""The project file's scheduling part: ``nodes:``, ``state:``, ``timezone:``, ``scheduler:``.

``tidesync.yaml`` (beside ``connections:``)::

    timezone: Asia/Shanghai              # default zone of every schedule (default: the machine's)
    catchup: latest                      # default of every node: latest | all | 100 | 7d
    state: postgresql://etl@db/sched     # shared state store (default: .tidesync/state.db)
    scheduler: {workers: 4, lease: 60s, poll: 5s, create_limit: 10000}
    nodes:
      - name: iot_sync
        job: jobs/iot_sync.json          # relative to the project folder
        params: filename=$[yyyymmddhh24mi]
        schedule: {every: 15 minutes, start: "00:00", end: "23:59", start_date: 2019-11-06}
        catchup: {count: 96, age: 1d}    # a pass creates at most the latest 96 slots of the last day
        retries: 3                       # re-runs after a failed run: up to 4 runs in all
        retry_interval: 2m
        retry_on: retriable              # transient failures only (default); any: every failure
        self_dependent: true
        depends_on: [other_node]
        timeout: 30m
        concurrency: 1
        paused: false
        dry_run: false                   # instances end 'skipped' without running a job
        executor: ray                    # where its job's tasks run (default: the job's setting)

Every problem is collected and reported at once under its key path
(``nodes[2].schedule.every: ...``); see ``docs/scheduler.md`` for the semantics.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tidesync.errors import MASK, ConfigError, did_you_mean
from tidesync.project import PROJECT_FILE, state_setting
from tidesync.scheduler.cycles import KINDS, LAST_DAY, WEEKDAYS, Schedule
from tidesync.spec.params import RunTime, parse_assignments, parse_date_arg, resolve_params
from tidesync.spec.secrets import secret_parameters

__all__ = [
    "Catchup",
    "Node",
    "Project",
    "SchedulerSettings",
    "load_project",
    "parse_duration",
    "PROJECT_FILE",
]

_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_NODE_KEYS = (
    "name",
    "job",
    "params",
    "schedule",
    "retries",
    "retry_interval",
    "retry_on",
    "self_dependent",
    "depends_on",
    "timeout",
    "paused",
    "concurrency",
    "dry_run",
    "catchup",
    "description",
    "executor",
)
#: retry_on: transient failures only (RetriableError, or a failure tidesync cannot classify), or
#: every failure but a bad job file
_RETRY_ON = ("retriable", "any")
_WORD_KEYS = frozenset(
    {"retry_on", "name", "job", "description", "depends_on", "params", "executor"}
)
_SCHEDULE_KEYS = (
    "every",
    "interval",
    "start",
    "end",
    "at",
    "days",
    "cron",
    "timezone",
    "start_date",
    "end_date",
)
_SCHEDULER_KEYS = ("workers", "lease", "poll", "create_limit", "progress")
_CATCHUP_WORDS = ("latest", "all")
_CATCHUP_KEYS = ("count", "age")
_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")
_EVERY = re.compile(r"\s*(?:(\d+)\s+)?([a-z]+)\s*")
_KIND_WORDS = (
    {k: k for k in KINDS}
    | {f"{k}s": k for k in KINDS if k != "cron"}
    | {"daily": "day", "hourly": "hour", "weekly": "week", "monthly": "month"}
)
_SAMPLE = RunTime.of("20250101000000")


@dataclass(frozen=True)
class Catchup:
    """How far back a pass creates slots it finds behind it (``catchup:``).

    ``latest``: a node seen for the first time gets its latest due slot only; ``all``: every
    slot since its ``start_date``. ``count``/``age`` (either or both, with ``all`` otherwise)
    bound every pass: at most the latest ``count`` slots, none due more than ``age`` seconds
    before the pass's time. ``where`` is the key path it was read from, for messages.
    """

    mode: str = "latest"  # latest | all | bound
    count: int | None = None
    age: float | None = None
    where: str = "catchup"

    def describe(self) -> str:
        if self.mode != "bound":
            return self.mode
        parts = []
        if self.count is not None:
            parts.append(f"latest {self.count:,}")
        if self.age is not None:
            parts.append(f"within {_show_duration(self.age)}")
        return " and ".join(parts)


@dataclass(frozen=True)
class Node:
    """One node as validated. ``params`` keeps the expressions as written, in order."""

    name: str
    schedule: Schedule
    job: Path | None = None
    params: dict[str, str] = field(default_factory=dict)
    retries: int = 0
    retry_interval: float = 120.0
    retry_on: str = "retriable"  # retriable | any
    self_dependent: bool = False
    depends_on: tuple[str, ...] = ()
    timeout: float | None = None
    paused: bool = False
    concurrency: int | None = None
    dry_run: bool = False
    catchup: Catchup = field(default_factory=Catchup)
    where: str = ""  # nodes[i]
    executor: str | None = None  # replaces the job's setting.executor (local | ray)

    def evaluate(self, rt: RunTime) -> dict[str, str]:
        """The node's parameters for one instance (ConfigError under ``nodes[i].params``)."""
        return resolve_params(dict(self.params), rt, where=f"{self.where}.params")

    def secret_params(self) -> frozenset[str]:
        """The parameters its job puts in a password, secret or key field or a URL's
        userinfo: their values are shown as ``***`` (logs, ``instance show``, the store)."""
        return self._secret_params() or frozenset()

    def _secret_params(self) -> frozenset[str] | None:
        """:meth:`secret_params`, or None while the job file cannot be read."""
        if self.job is None:
            return frozenset()
        try:
            stamp = self.job.stat().st_mtime_ns
        except OSError:
            return None
        return _secret_params(str(self.job), stamp)

    def shown_params(self, values: dict[str, str]) -> dict[str, str]:
        """``values`` as they may be shown and stored: secret parameters masked, and every one
        while the job cannot be read (which of them is secret is not known then)."""
        hidden = self._secret_params()
        return {k: MASK if hidden is None or k in hidden else v for k, v in values.items()}


@functools.lru_cache(maxsize=256)
def _secret_params(job: str, stamp: int) -> frozenset[str] | None:
    from tidesync.spec.job import load_document

    try:
        return frozenset(secret_parameters(load_document(Path(job))))
    except (ConfigError, OSError):
        return None  # a bad job file fails its run, which says why


@dataclass(frozen=True)
class SchedulerSettings:
    workers: int = 4
    lease: float = 60.0  # seconds a running instance stays claimed without a heartbeat
    poll: float = 5.0  # seconds between two looks at the clock when idle
    create_limit: int = 10_000  # instances of one node one pass may create without --yes
    progress: float = 10.0  # seconds between two progress lines in a running instance's log


@dataclass
class Project:
    root: Path
    file: Path
    nodes: dict[str, Node]
    state: str | None = None  # postgresql://... or a SQLite path; None: .tidesync/state.db
    timezone: str = "UTC"
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)
    mtime: float = 0.0

    @property
    def tz(self) -> ZoneInfo:
        """The project's zone: every time tidesync shows is in it, with its UTC offset."""
        return ZoneInfo(self.timezone)

    @property
    def home(self) -> Path:
        """``.tidesync/`` in the project: the SQLite store, logs and reports."""
        return self.root / ".tidesync"

    def downstream(self, name: str) -> list[str]:
        """Every node that depends on ``name``, directly or not, in dependency order."""
        found: set[str] = set()
        frontier = [name]
        while frontier:
            cur = frontier.pop()
            for n in self.nodes.values():
                if cur in n.depends_on and n.name not in found:
                    found.add(n.name)
                    frontier.append(n.name)
        return [n for n in self.order() if n in found]

    def order(self) -> list[str]:
        """Node names, every upstream before its downstream (file order otherwise)."""
        out: list[str] = []
        done: set[str] = set()

        def visit(n: str) -> None:
            if n in done:
                return
            done.add(n)
            for up in self.nodes[n].depends_on:
                visit(up)
            out.append(n)

        for n in self.nodes:
            visit(n)
        return out


def load_project(path: str | Path | None = None) -> Project:
    """Read and validate the project in folder ``path`` (or the file ``path``); default: cwd.

    Raises ConfigError listing every problem, each under its key path.
    """
    from tidesync.spec.job import load_document

    p = Path(path) if path is not None else Path.cwd()
    file = p if p.suffix in (".yaml", ".yml", ".json") and not p.is_dir() else p / PROJECT_FILE
    if not file.exists():
        raise ConfigError(
            f"{file}: no such project file; create it with a 'nodes:' list "
            "(see docs/scheduler.md) or pass --project DIR"
        )
    doc = load_document(file)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{file}: must hold an object with a 'nodes' list")
    problems: list[str] = []
    root = file.parent.resolve()
    tz = _zone(doc.get("timezone"), "timezone", problems) if "timezone" in doc else None
    if tz is None:
        from tidesync.spec.job import local_timezone

        tz = local_timezone()
    state = state_setting(doc, problems)
    settings = _settings(doc.get("scheduler"), problems)
    catchup = Catchup()
    if "catchup" in doc:
        catchup = _catchup(doc["catchup"], "catchup", problems) or catchup
    raw_nodes = doc.get("nodes")
    nodes: dict[str, Node] = {}
    if raw_nodes is None:
        raw_nodes = []
    if not isinstance(raw_nodes, list):
        problems.append("nodes: must be a list of nodes, each '- name: ...'")
        raw_nodes = []
    for i, raw in enumerate(raw_nodes):
        node = _node(raw, f"nodes[{i}]", root, tz, catchup, problems)
        if node is None:
            continue
        if node.name in nodes:
            problems.append(
                f"nodes[{i}].name: {node.name!r} is already the name of "
                f"{nodes[node.name].where}; node names are unique"
            )
            continue
        nodes[node.name] = node
    _check_dependencies(nodes, problems)
    if problems:
        raise ConfigError(problems)
    return Project(
        root=root,
        file=file,
        nodes=nodes,
        state=state,
        timezone=tz,
        settings=settings,
        mtime=file.stat().st_mtime,
    )


# ---------------------------------------------------------------------------------------------
# Values


def parse_duration(value: Any, where: str, problems: list[str]) -> float | None:
    """``90`` (seconds), ``"2m"``, ``"1h30m"``, ``"2 minutes"``, ``"45s"`` -> seconds."""
    if isinstance(value, bool):
        value = str(value)
    if isinstance(value, int | float):
        if value < 0:
            problems.append(f"{where}: {value!r} is negative; give a duration such as 2m")
            return None
        return float(value)
    if isinstance(value, str):
        text, total, pos = value.strip().lower(), 0.0, 0
        while pos < len(text):
            m = _DURATION.match(text, pos)
            if not m or m[2] not in _UNITS:
                break
            total += float(m[1]) * _UNITS[m[2]]
            pos = m.end()
        else:
            if text:
                return total
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
    problems.append(
        f"{where}: {value!r} is not a duration; write e.g. 90s, 2m, 1h30m (or a number of seconds)"
    )
    return None


def _time_of_day(value: Any, where: str, problems: list[str]) -> time | None:
    if isinstance(value, int) and not isinstance(value, bool):
        problems.append(
            f"{where}: {value!r} is a number: YAML reads an unquoted 12:30 as base 60; "
            "quote it: '12:30'"
        )
        return None
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d{1,2}):(\d{2})(?::(\d{2}))?\s*", value)
        if m:
            h, mi, s = int(m[1]), int(m[2]), int(m[3] or 0)
            if h < 24 and mi < 60 and s < 60:
                return time(h, mi, s)
    problems.append(f"{where}: {value!r} is not a time of day; write 'HH:MM' such as '00:30'")
    return None


def _date(value: Any, where: str, problems: list[str]) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return parse_date_arg(str(value))
    except ValueError:
        problems.append(f"{where}: {value!r} is not a date; write YYYY-MM-DD such as 2025-01-01")
        return None


def _zone(value: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        problems.append(
            f"{where}: {value!r} is not a time zone; write an IANA name such as "
            "Asia/Shanghai or UTC"
        )
        return None
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        import zoneinfo

        hint = did_you_mean(value.strip(), zoneinfo.available_timezones())
        problems.append(
            f"{where}: unknown time zone {value!r}{hint}; write an IANA name such as Europe/Berlin"
        )
        return None
    return value.strip()


def _int(value: Any, where: str, problems: list[str], lo: int, hi: int | None = None) -> int | None:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi and value > hi):
        rng = f"from {lo} to {hi}" if hi else f"of at least {lo}"
        problems.append(f"{where}: {value!r} is not a whole number {rng}")
        return None
    return value


def _bool(value: Any, where: str, problems: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    problems.append(f"{where}: {value!r} is not true or false")
    return False


def _unknown(
    raw: Mapping[str, Any], known: tuple[str, ...], where: str, problems: list[str]
) -> None:
    for key, value in raw.items():
        if key not in known:
            # a number is not meant for a key that takes a word (retry: 3 is retries, not retry_on)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            likely = [k for k in known if not (number and k in _WORD_KEYS)]
            problems.append(
                f"{where}.{key}: unknown key{did_you_mean(str(key), likely)}; "
                f"known: {', '.join(known)}"
            )


# ---------------------------------------------------------------------------------------------
# Sections


def _settings(raw: Any, problems: list[str]) -> SchedulerSettings:
    if raw is None:
        return SchedulerSettings()
    if not isinstance(raw, dict):
        problems.append("scheduler: must be an object such as {workers: 4, lease: 60s, poll: 5s}")
        return SchedulerSettings()
    _unknown(raw, _SCHEDULER_KEYS, "scheduler", problems)
    d = SchedulerSettings()
    workers = _int(raw.get("workers", d.workers), "scheduler.workers", problems, 1) or d.workers
    lease = parse_duration(raw.get("lease", d.lease), "scheduler.lease", problems) or d.lease
    poll = parse_duration(raw.get("poll", d.poll), "scheduler.poll", problems) or d.poll
    limit = (
        _int(raw.get("create_limit", d.create_limit), "scheduler.create_limit", problems, 1)
        or d.create_limit
    )
    progress = (
        parse_duration(raw.get("progress", d.progress), "scheduler.progress", problems)
        or d.progress
    )
    if lease < 3:
        problems.append("scheduler.lease: must be at least 3s (heartbeats come every lease/3)")
    return SchedulerSettings(
        workers=workers, lease=lease, poll=poll, create_limit=limit, progress=progress
    )


def _show_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def _catchup(raw: Any, where: str, problems: list[str]) -> Catchup | None:
    """``latest`` | ``all`` | a count (``100``) | an age (``7d``) | ``{count: 100, age: 7d}``."""
    spelled = (
        "write latest (only the latest due slot), all (every slot since start_date), a "
        "count such as 100, an age such as 7d, or {count: 100, age: 7d}"
    )
    if isinstance(raw, bool):
        word = "all" if raw else "latest"
        problems.append(f"{where}: {raw!r} is not a catch-up policy; write catchup: {word}")
        return None
    if isinstance(raw, int):
        if raw < 1:
            problems.append(
                f"{where}: {raw!r}: a count of slots must be at least 1; "
                "for the latest slot only write latest"
            )
            return None
        return Catchup("bound", count=raw, where=where)
    if isinstance(raw, dict):
        n0 = len(problems)
        _unknown(raw, _CATCHUP_KEYS, where, problems)
        if not any(k in raw for k in _CATCHUP_KEYS) and len(problems) == n0:
            problems.append(f"{where}: give count, age or both, e.g. {{count: 100, age: 7d}}")
        count = age = None
        if "count" in raw:
            count = _int(raw["count"], f"{where}.count", problems, 1)
        if "age" in raw:
            age = _age(raw["age"], f"{where}.age", problems)
        if len(problems) > n0:
            return None
        return Catchup("bound", count=count, age=age, where=where)
    if isinstance(raw, str):
        text = raw.strip().lower()
        if text in _CATCHUP_WORDS:
            return Catchup(text, where=where)
        if text.isdigit():
            return _catchup(int(text), where, problems)
        if re.fullmatch(r"(\s*\d+(?:\.\d+)?\s*[a-z]+)+\s*", text):
            age = _age(raw, where, problems)
            return Catchup("bound", age=age, where=where) if age is not None else None
        problems.append(
            f"{where}: {raw!r} is not a catch-up policy{did_you_mean(text, _CATCHUP_WORDS)}; "
            + spelled
        )
        return None
    problems.append(f"{where}: {raw!r} is not a catch-up policy; {spelled}")
    return None


def _age(raw: Any, where: str, problems: list[str]) -> float | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        problems.append(f"{where}: {raw!r} has no unit; write an age such as 7d, 12h or 90m")
        return None
    scratch: list[str] = []
    age = parse_duration(raw, where, scratch)
    if age is None or (isinstance(raw, str) and raw.strip().replace(".", "").isdigit()):
        problems.append(f"{where}: {raw!r} is not an age; write one such as 7d, 12h or 90m")
        return None
    if age <= 0:
        problems.append(
            f"{where}: {raw!r} must be more than 0; for the latest slot only write latest"
        )
        return None
    return age


def _node(
    raw: Any, where: str, root: Path, tz: str, catchup: Catchup, problems: list[str]
) -> Node | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object with name, job and schedule, got {raw!r}")
        return None
    n0 = len(problems)
    _unknown(raw, _NODE_KEYS, where, problems)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        what = "is required" if name is None else f"{name!r} is not a node name"
        problems.append(f"{where}.name: {what}; use letters, digits, '_', '.', '-' (e.g. iot_sync)")
        name = None
    dry_run = _bool(raw.get("dry_run", False), f"{where}.dry_run", problems)
    job: Path | None = None
    if raw.get("job") is None:
        if not dry_run:
            problems.append(
                f"{where}.job: is required: the job file this node runs "
                "(relative to the project folder), or set dry_run: true"
            )
    elif not isinstance(raw["job"], str):
        problems.append(f"{where}.job: must be a file path, got {raw['job']!r}")
    else:
        job = (root / os.path.expanduser(raw["job"])).resolve()
        if not job.is_file():
            problems.append(f"{where}.job: no such job file {raw['job']!r} (looked at {job})")
    params = _params(raw.get("params"), f"{where}.params", problems)
    schedule = _schedule(raw.get("schedule"), f"{where}.schedule", tz, problems)
    retries = _int(raw.get("retries", 0), f"{where}.retries", problems, 0, 100) or 0
    interval = parse_duration(raw.get("retry_interval", "2m"), f"{where}.retry_interval", problems)
    retry_on = raw.get("retry_on", "retriable")
    if retry_on not in _RETRY_ON:
        problems.append(
            f"{where}.retry_on: {retry_on!r} is not one of {', '.join(_RETRY_ON)}"
            f"{did_you_mean(str(retry_on), _RETRY_ON)}"
        )
    timeout = None
    if raw.get("timeout") is not None:
        timeout = parse_duration(raw["timeout"], f"{where}.timeout", problems)
        if timeout == 0:
            problems.append(f"{where}.timeout: must be more than 0 (leave it out for no timeout)")
    concurrency = None
    if raw.get("concurrency") is not None:
        concurrency = _int(raw["concurrency"], f"{where}.concurrency", problems, 1)
    deps_raw = raw.get("depends_on", [])
    if isinstance(deps_raw, str):
        deps_raw = [deps_raw]
    deps: list[str] = []
    if not isinstance(deps_raw, list):
        problems.append(f"{where}.depends_on: must be a list of node names")
    else:
        for j, d in enumerate(deps_raw):
            if not isinstance(d, str):
                problems.append(f"{where}.depends_on[{j}]: {d!r} is not a node name")
            elif d not in deps:
                deps.append(d)
    if "catchup" in raw:
        catchup = _catchup(raw["catchup"], f"{where}.catchup", problems) or catchup
    executor = _executor(raw.get("executor"), f"{where}.executor", problems)
    if len(problems) > n0 or name is None or schedule is None:
        return None
    return Node(
        name=name,
        schedule=schedule,
        job=job,
        params=params,
        retries=retries,
        retry_interval=interval if interval is not None else 120.0,
        retry_on=str(retry_on),
        self_dependent=_bool(raw.get("self_dependent", False), f"{where}.self_dependent", problems),
        depends_on=tuple(deps),
        timeout=timeout,
        paused=_bool(raw.get("paused", False), f"{where}.paused", problems),
        concurrency=concurrency,
        dry_run=dry_run,
        catchup=catchup,
        where=where,
        executor=executor,
    )


def _executor(raw: Any, where: str, problems: list[str]) -> str | None:
    from tidesync.engine.executor import check_executor

    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        problems.append(f"{where}: must be an executor name such as 'local' or 'ray', got {raw!r}")
        return None
    try:
        check_executor(raw.strip().lower(), where)
    except ConfigError as e:
        problems.extend(e.problems)
        return None
    return raw.strip().lower()


def _params(raw: Any, where: str, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    try:
        if isinstance(raw, str):
            values = parse_assignments(raw, where=where)
        elif isinstance(raw, dict):
            values = {str(k): "" if v is None else str(v) for k, v in raw.items()}
            for k, v in raw.items():
                if isinstance(v, bool | float | datetime):  # a date reads only as written
                    # YAML made it a value whose text is not what was written: 'on' -> True,
                    # 1.50 -> 1.5, 2025-1-5 9:00 -> 2025-01-05 09:00:00
                    problems.append(
                        f"{where}.{k}: YAML reads this unquoted value as the "
                        f"{type(v).__name__} {v!r}, whose text ({str(v)!r}) may not be what "
                        "is written; quote it"
                    )
        else:
            problems.append(
                f"{where}: must be 'name=value name2=value2' or an object of "
                f"name: value, got {raw!r}"
            )
            return {}
        resolve_params(dict(values), _SAMPLE, where=where)
    except ConfigError as e:
        problems.extend(e.problems)
        return {}
    return values


def _schedule(raw: Any, where: str, default_tz: str, problems: list[str]) -> Schedule | None:
    if raw is None:
        problems.append(
            f"{where}: is required, e.g. {{every: 15 minutes}} or {{every: day, "
            "at: '00:30'}} or {cron: '*/5 * * * *'}"
        )
        return None
    if not isinstance(raw, dict):
        problems.append(
            f"{where}: must be an object such as {{every: day, at: '00:30'}}, got {raw!r}"
        )
        return None
    n0 = len(problems)
    _unknown(raw, _SCHEDULE_KEYS, where, problems)
    every = raw.get("every", "cron" if "cron" in raw else None)
    kind, interval = None, None
    if every is None:
        problems.append(
            f"{where}.every: is required: one of {', '.join(KINDS)} (e.g. every: 15 minutes)"
        )
    else:
        m = _EVERY.fullmatch(str(every).lower())
        word = m[2] if m else str(every)
        kind = _KIND_WORDS.get(word) if m else None
        if kind is None:
            problems.append(
                f"{where}.every: {every!r} is not a cycle"
                f"{did_you_mean(word, list(_KIND_WORDS))}; write one of "
                f"{', '.join(KINDS)}, or 'N minutes' / 'N hours'"
            )
        elif m and m[1]:
            if kind not in ("minute", "hour"):
                problems.append(
                    f"{where}.every: {every!r}: only minutes and hours take a count; "
                    f"write every: {kind}"
                )
            interval = int(m[1])
    if "interval" in raw:
        if interval is not None:
            problems.append(
                f"{where}.interval: the interval is already in every: {every!r}; keep one"
            )
        elif kind not in ("minute", "hour"):
            problems.append(
                f"{where}.interval: only 'every: minute' and 'every: hour' take an interval"
            )
        else:
            interval = _int(raw["interval"], f"{where}.interval", problems, 1)
    interval = interval or 1
    if kind == "minute" and not 1 <= interval < 1440:
        problems.append(
            f"{where}.every: every {interval} minutes: the interval must be 1 to 1439 minutes"
        )
    if kind == "hour" and not 1 <= interval < 24:
        problems.append(f"{where}.every: every {interval} hours: the interval must be 1 to 23")
    tz = default_tz
    if "timezone" in raw:
        tz = _zone(raw["timezone"], f"{where}.timezone", problems) or default_tz
    start, end, at = time(0), time(23, 59, 59), time(0)
    windowed = kind in ("minute", "hour")
    for key in ("start", "end"):
        if key in raw:
            if not windowed:
                problems.append(
                    f"{where}.{key}: only minute and hour cycles have a window; "
                    f"for a {kind} cycle set 'at'"
                )
            t = _time_of_day(raw[key], f"{where}.{key}", problems)
            if t is not None:
                start, end = (t, end) if key == "start" else (start, t)
    if windowed and start > end:
        problems.append(
            f"{where}.end: {end.strftime('%H:%M')} is before start "
            f"{start.strftime('%H:%M')}; both are times of the same day"
        )
    if "at" in raw:
        if kind not in ("day", "week", "month"):
            problems.append(
                f"{where}.at: only day, week and month cycles run at a time; "
                + ("use start and end" if windowed else "the cron expression sets it")
            )
        at = _time_of_day(raw["at"], f"{where}.at", problems) or at
    days = _days(raw.get("days"), kind, f"{where}.days", problems)
    cron = raw.get("cron")
    if kind == "cron":
        cron = _cron(cron, f"{where}.cron", problems)
    elif cron is not None:
        problems.append(f"{where}.cron: a cron expression needs every: cron (or no 'every')")
    start_date = (
        _date(raw["start_date"], f"{where}.start_date", problems)
        if raw.get("start_date") is not None
        else None
    )
    end_date = (
        _date(raw["end_date"], f"{where}.end_date", problems)
        if raw.get("end_date") is not None
        else None
    )
    if start_date and end_date and start_date > end_date:
        problems.append(f"{where}.end_date: {end_date} is before start_date {start_date}")
    if len(problems) > n0 or kind is None:
        return None
    return Schedule(
        kind=kind,
        timezone=tz,
        interval=interval,
        start=start,
        end=end,
        at=at,
        days=days,
        cron=cron,
        start_date=start_date,
        end_date=end_date,
    )


def _days(raw: Any, kind: str | None, where: str, problems: list[str]) -> tuple[int, ...]:
    if kind not in ("week", "month"):
        if raw is not None:
            problems.append(f"{where}: only week and month cycles take days")
        return ()
    if raw is None:
        example = "[mon, thu]" if kind == "week" else "[1, 15, last]"
        problems.append(f"{where}: is required for a {kind} cycle, e.g. days: {example}")
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out: list[int] = []
    for j, d in enumerate(items):
        key = f"{where}[{j}]" if isinstance(raw, list) else where
        if kind == "week":
            if isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 7:
                out.append(d - 1)
            elif isinstance(d, str) and d.strip().lower()[:3] in WEEKDAYS:
                out.append(WEEKDAYS.index(d.strip().lower()[:3]))
            else:
                problems.append(
                    f"{key}: {d!r} is not a weekday; write mon..sun or 1..7 (1 = Monday)"
                )
        else:
            if isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 31:
                out.append(d)
            elif isinstance(d, str) and d.strip().lower() == "last":
                out.append(LAST_DAY)
            elif isinstance(d, str) and d.strip().isdigit() and 1 <= int(d) <= 31:
                out.append(int(d))
            else:
                problems.append(f"{key}: {d!r} is not a day of the month; write 1..31 or last")
    return tuple(sorted(set(out)))


def _cron(raw: Any, where: str, problems: list[str]) -> str | None:
    if not isinstance(raw, str) or not raw.strip():
        problems.append(f"{where}: is required for every: cron, e.g. cron: '*/5 * * * *'")
        return None
    expr = " ".join(raw.split())
    if len(expr.split()) != 5:
        problems.append(
            f"{where}: {raw!r} has {len(expr.split())} fields; write five: "
            "minute hour day-of-month month day-of-week, e.g. '30 2 * * *'"
        )
        return None
    try:
        from croniter import croniter
    except ModuleNotFoundError:
        problems.append(
            f"{where}: cron schedules need the croniter package: pip install 'tidesync[scheduler]'"
        )
        return None
    try:
        croniter(expr)
    except (ValueError, KeyError) as e:
        problems.append(f"{where}: {raw!r} is not a cron expression ({e})")
        return None
    return expr


def _check_dependencies(nodes: dict[str, Node], problems: list[str]) -> None:
    for node in nodes.values():
        for j, up in enumerate(node.depends_on):
            if up == node.name:
                problems.append(
                    f"{node.where}.depends_on[{j}]: a node cannot depend on itself; "
                    "for 'wait for my previous instance' set self_dependent: true"
                )
            elif up not in nodes:
                problems.append(
                    f"{node.where}.depends_on[{j}]: unknown node {up!r}{did_you_mean(up, nodes)}"
                )
    # cycles, reported once each
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for up in nodes[n].depends_on:
            if up not in nodes or up == n:
                continue
            if state.get(up) == 1:
                loop = stack[stack.index(up) :] + [up]
                problems.append(
                    f"{nodes[up].where}.depends_on: dependency cycle "
                    f"{' -> '.join(reversed(loop))}; remove one of these edges"
                )
            elif up not in state:
                visit(up)
        stack.pop()
        state[n] = 2

    for n in nodes:
        if n not in state:
            visit(n)
