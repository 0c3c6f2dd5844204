"""Job files: the three shapes users already write, read into one :class:`JobSpec`.

1. DataX::

       {"job": {"setting": {"speed": {"channel": 4}, "errorLimit": {"record": 0}},
                "content": [{"reader": {"name": "txtfilereader", "parameter": {...}},
                             "writer": {"name": "streamwriter", "parameter": {...}},
                             "transformer": [{"name": "dx_substr", "parameter": {...}}]}]}}

   Unlike DataX, every entry of ``content`` runs (one job can sync several tables).

2. Script mode v1 (seed 002)::

       {"type": "job", "version": "1.0",
        "configuration": {"setting": {...}, "reader": {"plugin": "oss", "parameter": {...}},
                          "writer": {"plugin": "stream", "parameter": {...}}}}

3. Script mode v2::

       {"type": "job", "version": "2.0",
        "steps": [{"stepType": "mysql", "parameter": {...}, "name": "Reader", "category": "reader"},
                  {"stepType": "oss", "parameter": {...}, "name": "Writer", "category": "writer"}],
        "setting": {...}, "order": {"hops": [{"from": "Reader", "to": "Writer"}]}}

Files are JSON or YAML (by extension; JSON is also valid YAML). Parameters (``${bizdate}``,
``$[hh24]``, ``${name}`` from ``-p``) are substituted in every string value before the shape is
read, so a parameter may stand anywhere. Every problem is reported with its key path, all at once.

Settings::

    speed.concurrent | speed.channel   parallel tasks (default 1)
    speed.byte                          whole-job limit in bytes/s
    speed.mbps                          whole-job limit in MB/s (1 MB = 1048576 bytes)
    speed.record                        whole-job limit in records/s
    speed.throttle: false               no limit, whatever else is set
    errorLimit.record                   at most this many dirty records
    errorLimit.percentage               at most this fraction (0.02) or percent ("2%") of records read
    timezone                            IANA name for naive times (default: the machine's)
    executor                            where tasks run: local (threads in this process)

With neither ``errorLimit.record`` nor ``errorLimit.percentage`` set, no dirty record is allowed.
Numbers may be written as strings (``"record": "0"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from tidesync.errors import ConfigError, did_you_mean

__all__ = ["JobSpec", "Content", "Step", "Settings", "load_document", "parse_job"]


@dataclass
class Step:
    """A reader, writer or transformer as written: its name, parameters and key path."""

    name: str
    parameter: dict[str, Any]
    where: str  # key path of `parameter`


@dataclass
class Content:
    reader: Step
    writer: Step
    transformers: list[Step] = field(default_factory=list)
    where: str = ""


@dataclass
class Settings:
    concurrent: int = 1
    byte_rate: float | None = None  # bytes per second, whole job
    record_rate: float | None = None  # records per second, whole job
    error_records: int | None = None
    error_fraction: float | None = None
    timezone: str = "UTC"
    executor: str = "local"  # where tasks run; the engine checks the name
    where: str = "setting"  # key path of the setting object, for messages
    state_key: str | None = None  # the job's identity in the state store (setting.stateKey)

    @property
    def allows_no_dirty(self) -> bool:
        return self.error_records is None and self.error_fraction is None


@dataclass
class JobSpec:
    settings: Settings
    contents: list[Content]
    shape: str  # datax | script-v1 | script-v2
    source: str = ""  # file name, for messages


def local_timezone() -> str:
    try:
        p = Path("/etc/timezone")
        if p.exists():
            name = p.read_text().strip()
            ZoneInfo(name)
            return name
        link = Path("/etc/localtime").resolve()
        if "zoneinfo/" in str(link):
            return str(link).split("zoneinfo/", 1)[1]
    except (OSError, ZoneInfoNotFoundError, ValueError):
        pass
    return "UTC"


def load_document(path: Path) -> Any:
    """Read a JSON or YAML file; a syntax error names the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such job file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        loc = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}{loc}: invalid YAML/JSON: {problem}") from None


def parse_job(doc: Any, source: str = "", problems: list[str] | None = None) -> JobSpec:
    """Read a (parameter-substituted) job document of any of the three shapes.

    Raises ConfigError with every problem, unless ``problems`` is given: then problems are
    appended to it and whatever could be read is returned, so callers can go on validating.
    """
    collect = problems is not None
    problems = problems if problems is not None else []
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a job file must hold an object, got {type(doc).__name__}")
    if "job" in doc:
        spec = _datax(doc, problems)
    elif doc.get("type") == "job" or "configuration" in doc or "steps" in doc:
        version = str(doc.get("version", "2.0" if "steps" in doc else "1.0"))
        spec = _script_v1(doc, problems) if version.startswith("1") else _script_v2(doc, problems)
    else:
        keys = ", ".join(sorted(map(str, doc))) or "none"
        raise ConfigError(
            f"{source}: not a job file: expected a top-level 'job' (DataX) or "
            f"'type: job' with 'configuration' or 'steps' (script mode); found keys: {keys}"
        )
    if problems and not collect:
        raise ConfigError(problems)
    spec.source = source
    return spec


def _obj(v: Any, where: str, problems: list[str], required: bool = True) -> dict[str, Any]:
    if v is None:
        if required:
            problems.append(f"{where}: is required")
        return {}
    if not isinstance(v, dict):
        problems.append(f"{where}: must be an object, got {type(v).__name__}")
        return {}
    return v


def _step(v: Any, where: str, name_key: str, problems: list[str]) -> Step | None:
    d = _obj(v, where, problems)
    if not d:
        return None
    name = d.get(name_key)
    if not isinstance(name, str) or not name:
        other = {"name": "plugin", "plugin": "name", "stepType": "name"}[name_key]
        name = d.get(other) if isinstance(d.get(other), str) else None
    if not name:
        problems.append(f"{where}.{name_key}: is required (the connector's name, e.g. 'mysql')")
        return None
    param = d.get("parameter", {})
    if not isinstance(param, dict):
        problems.append(f"{where}.parameter: must be an object, got {type(param).__name__}")
        param = {}
    return Step(name=name, parameter=param, where=f"{where}.parameter")


def _transformers(v: Any, where: str, problems: list[str]) -> list[Step]:
    if v is None:
        return []
    if not isinstance(v, list):
        problems.append(f"{where}: must be a list, got {type(v).__name__}")
        return []
    out = []
    for i, t in enumerate(v):
        s = _step(t, f"{where}[{i}]", "name", problems)
        if s:
            out.append(s)
    return out


def _datax(doc: dict[str, Any], problems: list[str]) -> JobSpec:
    job = _obj(doc.get("job"), "job", problems)
    settings = _settings(job.get("setting"), "job.setting", problems)
    content = job.get("content")
    contents: list[Content] = []
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list) or not content:
        problems.append("job.content: is required: a list of {reader, writer} entries")
        content = []
    for i, c in enumerate(content):
        w = f"job.content[{i}]"
        c = _obj(c, w, problems)
        if not c:
            continue
        r = _step(c.get("reader"), f"{w}.reader", "name", problems)
        wr = _step(c.get("writer"), f"{w}.writer", "name", problems)
        tr = _transformers(c.get("transformer"), f"{w}.transformer", problems)
        if r and wr:
            contents.append(Content(r, wr, tr, w))
    return JobSpec(settings, contents, "datax")


def _script_v1(doc: dict[str, Any], problems: list[str]) -> JobSpec:
    conf = _obj(doc.get("configuration"), "configuration", problems)
    settings = _settings(conf.get("setting", doc.get("setting")), "configuration.setting", problems)
    r = _step(conf.get("reader"), "configuration.reader", "plugin", problems)
    w = _step(conf.get("writer"), "configuration.writer", "plugin", problems)
    tr = _transformers(conf.get("transformer"), "configuration.transformer", problems)
    return JobSpec(settings, [Content(r, w, tr, "configuration")] if r and w else [], "script-v1")


def _script_v2(doc: dict[str, Any], problems: list[str]) -> JobSpec:
    settings = _settings(doc.get("setting"), "setting", problems)
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        problems.append("steps: is required: a list of steps with category reader and writer")
        return JobSpec(settings, [], "script-v2")
    by_name: dict[str, tuple[str, Step]] = {}
    readers: list[str] = []
    writers: list[str] = []
    for i, s in enumerate(steps):
        w = f"steps[{i}]"
        d = _obj(s, w, problems)
        step = _step(d, w, "stepType", problems) if d else None
        if step is None:
            continue
        cat = d.get("category")
        if cat not in ("reader", "writer"):
            problems.append(f"{w}.category: {cat!r} is not one of reader, writer")
            continue
        name = str(d.get("name") or f"{cat}{i}")
        by_name[name] = (cat, step)
        (readers if cat == "reader" else writers).append(name)
    hops = (doc.get("order") or {}).get("hops") if isinstance(doc.get("order"), dict) else None
    pairs: list[tuple[str, str]] = []
    if isinstance(hops, list) and hops:
        for i, h in enumerate(hops):
            w = f"order.hops[{i}]"
            if (
                not isinstance(h, dict)
                or h.get("from") not in by_name
                or h.get("to") not in by_name
            ):
                got = (h.get("from"), h.get("to")) if isinstance(h, dict) else h
                problems.append(f"{w}: from/to must name steps ({', '.join(by_name)}), got {got!r}")
                continue
            pairs.append((h["from"], h["to"]))
    elif len(readers) == 1 and len(writers) == 1:
        pairs = [(readers[0], writers[0])]
    elif by_name:
        problems.append(
            "order.hops: is required when there is not exactly one reader and one writer"
        )
    contents = []
    for a, b in pairs:
        ca, sa = by_name[a]
        cb, sb = by_name[b]
        if ca != "reader" or cb != "writer":
            problems.append(
                f"order.hops: a hop goes from a reader to a writer, got {a} ({ca}) -> {b} ({cb})"
            )
            continue
        contents.append(Content(sa, sb, [], "steps"))
    return JobSpec(settings, contents, "script-v2")


_SETTING_KEYS = {
    "speed",
    "errorLimit",
    "timezone",
    "timeZone",
    "executor",
    "locale",
    "jvmOption",
    "stateKey",
}


def _number(v: Any, where: str, problems: list[str], integer: bool = False) -> float | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        problems.append(f"{where}: must be a number, got {v!r}")
        return None
    try:
        n = float(str(v).strip().rstrip("%")) if isinstance(v, str) else float(v)
    except ValueError:
        problems.append(f"{where}: must be a number, got {v!r}")
        return None
    if n < 0 or (integer and not n.is_integer()):
        kind = "a whole number" if integer else "a number"
        problems.append(f"{where}: must be {kind} >= 0, got {v!r}")
        return None
    return n


def _settings(v: Any, where: str, problems: list[str]) -> Settings:
    d = _obj(v, where, problems, required=False)
    s = Settings(timezone=local_timezone(), where=where)
    for k in d:
        if k not in _SETTING_KEYS:
            problems.append(f"{where}.{k}: unknown setting{did_you_mean(k, _SETTING_KEYS)}")
    speed = _obj(d.get("speed"), f"{where}.speed", problems, required=False)
    conc = speed.get("concurrent", speed.get("channel"))
    key = "concurrent" if "concurrent" in speed else "channel"
    n = _number(conc, f"{where}.speed.{key}", problems, integer=True)
    if n is not None:
        if n < 1:
            problems.append(f"{where}.speed.{key}: must be at least 1, got {conc!r}")
        else:
            s.concurrent = int(n)
    throttle = speed.get("throttle", True)
    if isinstance(throttle, str):
        throttle = throttle.lower() not in ("false", "0", "no")
    b = _number(speed.get("byte"), f"{where}.speed.byte", problems)
    m = _number(speed.get("mbps"), f"{where}.speed.mbps", problems)
    r = _number(speed.get("record"), f"{where}.speed.record", problems)
    if throttle:
        rates = [x for x in (b, m * 1048576 if m is not None else None) if x]
        s.byte_rate = min(rates) if rates else None
        s.record_rate = r or None
    el = _obj(d.get("errorLimit"), f"{where}.errorLimit", problems, required=False)
    rec = _number(el.get("record"), f"{where}.errorLimit.record", problems, integer=True)
    s.error_records = int(rec) if rec is not None else None
    pct_raw = el.get("percentage")
    pct = _number(pct_raw, f"{where}.errorLimit.percentage", problems)
    if pct is not None:
        # "2%" and 2 (> 1) are percents; 0.02 is a fraction, as DataX writes it
        is_percent = (isinstance(pct_raw, str) and pct_raw.strip().endswith("%")) or pct > 1
        s.error_fraction = pct / 100 if is_percent else pct
        if s.error_fraction > 1:
            problems.append(f"{where}.errorLimit.percentage: must be at most 100%, got {pct_raw!r}")
    ex = d.get("executor")
    if ex is not None and ex != "":
        if isinstance(ex, str):
            s.executor = ex.strip().lower()
        else:
            problems.append(f"{where}.executor: must be a string such as 'local', got {ex!r}")
    tz = d.get("timezone", d.get("timeZone"))
    if tz:
        try:
            ZoneInfo(str(tz))
            s.timezone = str(tz)
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"{where}.timezone: unknown time zone {tz!r} (use an IANA name such as Asia/Shanghai)"
            )
    state_key = d.get("stateKey")
    if state_key is not None:
        if not isinstance(state_key, str) or not state_key.strip() or "#" in state_key:
            problems.append(
                f"{where}.stateKey: must be a non-empty name without '#' (the job's identity in "
                f"the state store, e.g. orders_daily), got {state_key!r}"
            )
        else:
            s.state_key = state_key.strip()
    return s


def declared_timezone(doc: Any) -> str | None:
    """The zone a job document's settings name as plain text (``timezone``/``timeZone``), read
    before its parameters are substituted: the run time they are substituted for is read in
    it. ``None`` when it names none (or a parameter, or an unknown zone: ``parse_job`` says so).
    """
    if not isinstance(doc, dict):
        return None
    holder = doc.get("job", doc.get("configuration", doc))
    setting = holder.get("setting") if isinstance(holder, dict) else None
    if not isinstance(setting, dict):
        return None
    tz = setting.get("timezone", setting.get("timeZone"))
    if not isinstance(tz, str) or "$" in tz:
        return None
    try:
        ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return tz.strip()
