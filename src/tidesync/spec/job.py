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
    executor                            where tasks run: local (threads in this process) or ray
    direct: false                       always the Arrow path (no passthrough between like stores)
    direct: true                        the direct path wherever the writer takes the reader's raw
                                        form (unset: where the writer says it pays, see
                                        ``Writer.raw_by_default``)

With neither ``errorLimit.record`` nor ``errorLimit.percentage`` set, no dirty record is allowed.
Numbers may be written as strings (``"record": "0"``); only ``errorLimit.percentage`` takes a ``%``.

Any other key is an error ("unknown key; did you mean ..."), except the DataX/DataWorks keys
listed in :mod:`tidesync.spec.ignored`, which are collected in ``JobSpec.ignored``. Files are
checked for depth, size, number range and broken text before anything walks them
(:func:`check_document`).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tidesync.errors import ConfigError, did_you_mean
from tidesync.spec.ignored import why_ignored

__all__ = [
    "JobSpec",
    "Content",
    "Step",
    "Settings",
    "load_document",
    "check_document",
    "parse_job",
]


@dataclass
class Step:
    """A reader, writer or transformer as written: its name, parameters and key path."""

    name: str
    parameter: dict[str, Any]
    where: str  # key path of `parameter`
    #: the other spelling's connector when a reader or writer gives both ``name`` and
    #: ``plugin`` and they differ as written (the engine checks they name one connector)
    also: str | None = None


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
    #: what named the executor when not ``setting.executor`` (``--executor``, a node's key)
    executor_where: str | None = None
    where: str = "setting"  # key path of the setting object, for messages
    state_key: str | None = None  # the job's identity in the state store (setting.stateKey)
    #: may an entry take the direct path (raw rows between like stores, no Arrow)?
    #: (setting.direct) None: not set, each writer decides (``Writer.raw_by_default``)
    direct: bool | None = None

    @property
    def executor_path(self) -> str:
        """The key path (or option) that chose the executor, for messages."""
        return self.executor_where or f"{self.where}.executor"

    @property
    def allows_no_dirty(self) -> bool:
        return self.error_records is None and self.error_fraction is None


@dataclass
class JobSpec:
    settings: Settings
    contents: list[Content]
    shape: str  # datax | script-v1 | script-v2
    source: str = ""  # file name, for messages
    ignored: list[str] = field(default_factory=list)  # key paths in spec.ignored.IGNORED


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


# -- reading a file safely ---------------------------------------------------------------------

#: deepest nesting a job file may have (real ones stay under 10 levels)
MAX_DEPTH = 64
#: most values (objects, lists and scalars, YAML aliases counted at every use) in one file
MAX_VALUES = 200_000
#: problems listed per file before the rest are counted
_MAX_LISTED = 50
_INT64 = 1 << 63
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class _LongNumber:
    """An integer literal too long to convert (Python refuses more than 4300 digits)."""

    def __init__(self, text: str):
        self.digits = sum(c.isdigit() for c in text)


def _json_int(text: str) -> int | _LongNumber:
    return int(text) if len(text) <= 20 else _LongNumber(text)


class _OddNumber:
    """An unquoted YAML integer written in a form only YAML 1.1 reads as a number, and reads
    otherwise than it looks: ``010`` is 8 (octal; YAML 1.2 reads 10), ``1:30`` is 90 (base 60),
    ``0x1F`` is 31, ``1_000`` is 1000. A parameter ``region: 010`` passed ``8`` to the job."""

    def __init__(self, text: str, value: int):
        self.text, self.value = text, value

    def __repr__(self) -> str:  # as written, should it stand as a key in a message
        return self.text

    def why(self) -> str:
        t = self.text.lstrip("+-").lower()
        if ":" in t:
            return "base 60"
        if t.startswith("0x"):
            return "hexadecimal"
        if t.startswith("0b"):
            return "binary"
        if "_" in t and not t.startswith("0"):
            return "its '_' dropped"
        return "octal"


_PLAIN_INT = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")


class _Twice(dict[Any, Any]):
    """An object (mapping) in which the file gives a key more than once: the parsers keep the
    last value and drop the others without a word (``writeMode: append`` above a later
    ``writeMode: truncate`` truncated). ``twice`` holds each such key's values, in order."""

    twice: dict[Any, list[Any]]


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) == len(pairs):
        return d
    out = _Twice(d)
    out.twice = {}
    for k, v in pairs:
        out.twice.setdefault(k, []).append(v)
    out.twice = {k: vs for k, vs in out.twice.items() if len(vs) > 1}
    return out


class _Elided(str):
    """A YAML value that is not a scalar, as a message shows it."""

    def __repr__(self) -> str:
        return str(self)


@functools.cache
def _yaml_loader() -> Any:
    """The loader class, made on first use: PyYAML is imported only for a YAML file (15 ms of
    every run's start-up otherwise)."""
    import yaml

    class _YamlLoader(yaml.SafeLoader):
        """PyYAML's safe loader, with over-long integer literals kept for a clear message, and
        integers in YAML 1.1's other forms (``010``, ``1:30``, ``0x1F``) kept to be refused, and a
        key given twice in one mapping kept to be refused (a ``<<`` merge may be overridden)."""

        def construct_yaml_map(self, node: Any) -> Any:
            seen: dict[tuple[str, str], list[Any]] = {}
            for key_node, value_node in node.value:
                if (
                    isinstance(key_node, yaml.ScalarNode)
                    and key_node.tag != "tag:yaml.org,2002:merge"
                ):
                    shown = (
                        value_node.value
                        if isinstance(value_node, yaml.ScalarNode)
                        else _Elided(
                            "[...]" if isinstance(value_node, yaml.SequenceNode) else "{...}"
                        )
                    )
                    seen.setdefault((key_node.tag, key_node.value), []).append(shown)
            twice = {k[1]: vs for k, vs in seen.items() if len(vs) > 1}
            data: dict[Any, Any] = _Twice() if twice else {}
            if twice:
                data.twice = twice  # type: ignore[attr-defined]
            yield data
            data.update(self.construct_mapping(node))

        def construct_yaml_int(self, node: Any) -> Any:
            text = self.construct_scalar(node)
            if isinstance(text, str) and len(text) > 40:
                return _LongNumber(text)
            value = super().construct_yaml_int(node)
            if isinstance(text, str) and not _PLAIN_INT.fullmatch(text):
                return _OddNumber(text, value)
            return value

    _YamlLoader.add_constructor("tag:yaml.org,2002:int", _YamlLoader.construct_yaml_int)
    _YamlLoader.add_constructor("tag:yaml.org,2002:map", _YamlLoader.construct_yaml_map)

    return _YamlLoader


def load_document(path: Path) -> Any:
    """Read a JSON or YAML file; a syntax error names the file, line and column.

    The document is then checked before anything walks it (see :func:`check_document`), so a
    hostile file (deep nesting, a YAML alias bomb, a 5000-digit number, NUL characters) is one
    ConfigError, found in linear time.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such job file") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    too_deep = f"{path}: nested more than {MAX_DEPTH} levels deep"
    if path.suffix.lower() == ".json":
        try:
            doc = json.loads(text, parse_int=_json_int, object_pairs_hook=_json_object)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}:{e.lineno}:{e.colno}: invalid JSON: {e.msg}") from None
        except RecursionError:
            raise ConfigError(too_deep) from None
    else:
        if _flow_too_deep(text):
            raise ConfigError(too_deep)
        import yaml

        try:
            doc = yaml.load(text, Loader=_yaml_loader())  # a SafeLoader subclass
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            loc = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
            problem = getattr(e, "problem", None) or str(e)
            raise ConfigError(f"{path}{loc}: invalid YAML/JSON: {problem}") from None
        except RecursionError:
            raise ConfigError(too_deep) from None
        except ValueError as e:  # a value the YAML constructors cannot build
            raise ConfigError(f"{path}: invalid YAML: {e}") from None
    problems = check_document(doc)
    if problems:
        raise ConfigError([f"{path}: {p}" for p in problems])
    return doc


# a YAML flow bracket, or what can hide one: a quoted scalar (where a scalar can start) or a comment
_YAML_FLOW = re.compile(
    r"""(?:(?<=[\s\[{,:])|^)(?:"(?:[^"\\]|\\[\s\S])*"|'(?:[^']|'')*'|\#[^\n]*)|[\[\]{}]""",
    re.M,
)


def _flow_too_deep(text: str) -> bool:
    """True when YAML flow brackets nest deeper than :data:`MAX_DEPTH`.

    PyYAML's scanner is quadratic in the flow nesting (20,000 ``[`` take seconds) before its
    composer's recursion fails, so deep flow nesting is caught by this linear scan first.
    """
    depth = 0
    for m in _YAML_FLOW.finditer(text):
        c = m.group()
        if c in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif c in ("]", "}"):
            depth = max(depth - 1, 0)
    return False


def check_document(doc: Any) -> list[str]:
    """Problems that make a document unsafe to walk, each with its key path.

    Bounded depth (:data:`MAX_DEPTH`) and size (:data:`MAX_VALUES`, which stops a YAML alias
    bomb after a fraction of a second); integers within 64 bits; floats finite; no NUL or lone
    surrogate in a string, and no control character in a key. The walk is iterative and stops
    early, so it is linear in the file.
    """
    problems: list[str] = []
    count = 0
    stack: list[tuple[Any, str, int]] = [(doc, "", 0)]
    while stack:
        v, where, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            problems.append(
                f"{_short(where) or 'the document'}: more than {MAX_VALUES:,} values in one file "
                "(YAML aliases count at every use)"
            )
            break
        at = _short(where) or "the document"
        if isinstance(v, dict | list) and depth >= MAX_DEPTH:
            problems.append(f"{at}: nested more than {MAX_DEPTH} levels deep")
        elif isinstance(v, dict):
            for k, values in getattr(v, "twice", {}).items():
                shown = ", then ".join(
                    _show(x) if not isinstance(x, str) else repr(x) for x in values
                )
                problems.append(
                    f"{_short(_join(where, k))}: is given {len(values)} times in one object "
                    f"({shown}); the last would be used without a word: keep one"
                )
            items = list(v.items())
            for k, _ in items:
                if isinstance(k, str) and (_BAD_CHARS.search(k) or _CONTROL.search(k)):
                    what = _bad_char(k) if _BAD_CHARS.search(k) else "a control character"
                    problems.append(f"{at}: a key holds {what}: {k!r}")
            stack.extend((x, _join(where, k), depth + 1) for k, x in reversed(items))
        elif isinstance(v, list):
            stack.extend((x, f"{where}[{i}]", depth + 1) for i, x in reversed(list(enumerate(v))))
        elif isinstance(v, str):
            if _BAD_CHARS.search(v):
                problems.append(f"{at}: holds {_bad_char(v)}")
        elif isinstance(v, _LongNumber):
            problems.append(f"{at}: a number of {v.digits} digits is too large")
        elif isinstance(v, _OddNumber):
            problems.append(
                f"{at}: YAML reads {v.text} as {v.value} ({v.why()}); quote it ('{v.text}') "
                f"for the text, or write {v.value}"
            )
        elif isinstance(v, int) and not isinstance(v, bool) and not -_INT64 <= v < _INT64:
            problems.append(f"{at}: {v} is too large (numbers must fit in 64 bits)")
        elif isinstance(v, float) and not math.isfinite(v):
            problems.append(f"{at}: must be a finite number, got {v}")
        if len(problems) > _MAX_LISTED:
            problems[_MAX_LISTED:] = ["... and more problems like these"]
            break
    return problems


def _bad_char(s: str) -> str:
    m = _BAD_CHARS.search(s)
    return "a NUL character" if m and m.group() == "\x00" else "a lone surrogate (not Unicode)"


def _short(where: str) -> str:
    return where if len(where) <= 120 else f"{where[:80]}...{where[-30:]}"


def _join(where: str, key: Any) -> str:
    k = key if isinstance(key, str) and key.isprintable() else repr(key)
    return f"{where}.{k}" if where else k


# -- the three shapes -----------------------------------------------------------------------------

_TOP_DATAX = ("job",)
_JOB = ("setting", "content")
_CONTENT = ("reader", "writer", "transformer")
_TOP_V1 = ("type", "version", "configuration", "setting")
_CONFIGURATION = ("setting", "reader", "writer", "transformer")
_TOP_V2 = ("type", "version", "steps", "setting", "order")
_STEP_V2 = ("stepType", "parameter", "name", "category")
_SETTING_KEYS = ("speed", "errorLimit", "timezone", "timeZone", "executor", "stateKey", "direct")
_SPEED = ("concurrent", "channel", "byte", "mbps", "record", "throttle")
_ERROR_LIMIT = ("record", "percentage")


def parse_job(doc: Any, source: str = "", problems: list[str] | None = None) -> JobSpec:
    """Read a (parameter-substituted) job document of any of the three shapes.

    Every key is checked: one tidesync does not know is an error with a did-you-mean, unless
    :data:`tidesync.spec.ignored.IGNORED` lists it (then its path goes to ``JobSpec.ignored``).
    Raises ConfigError with every problem, unless ``problems`` is given: then problems are
    appended to it and whatever could be read is returned, so callers can go on validating.
    """
    collect = problems is not None
    problems = problems if problems is not None else []
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: a job file must hold an object, got {_kind(doc)}")
    ignored: list[str] = []
    if "job" in doc:
        _keys(doc, "", _TOP_DATAX, problems, ignored)
        spec = _datax(doc, problems, ignored)
    elif doc.get("type") == "job" or "configuration" in doc or "steps" in doc:
        if doc.get("type", "job") != "job":
            problems.append(f"type: must be 'job', got {_show(doc.get('type'))}")
        version = _version(doc, problems)
        if version == "1":
            _keys(doc, "", _TOP_V1, problems, ignored)
            spec = _script_v1(doc, problems, ignored)
        else:
            _keys(doc, "", _TOP_V2, problems, ignored)
            spec = _script_v2(doc, problems, ignored)
    else:
        keys = ", ".join(sorted(map(_join_key, doc))) or "none"
        raise ConfigError(
            f"{source}: not a job file: expected a top-level 'job' (DataX) or "
            f"'type: job' with 'configuration' or 'steps' (script mode); found keys: {keys}"
        )
    if not spec.contents and not problems:
        where = {"datax": "job.content", "script-v1": "configuration", "script-v2": "steps"}
        problems.append(f"{where[spec.shape]}: holds no reader/writer pair to run")
    if problems and not collect:
        raise ConfigError(problems)
    spec.source = source
    spec.ignored = ignored
    return spec


def _version(doc: dict[str, Any], problems: list[str]) -> str:
    default = "2" if "steps" in doc else "1"
    v = doc.get("version", default)
    text = str(v).strip() if isinstance(v, str | int | float) and not isinstance(v, bool) else ""
    major = {"1": "1", "1.0": "1", "2": "2", "2.0": "2"}.get(text)
    if major is None:
        problems.append(f"version: must be '1.0' or '2.0', got {_show(v)}")
        return default
    return major


def _kind(v: Any) -> str:
    return type(v).__name__


def _show(v: Any) -> str:
    """A value for a message: scalars as written, containers by kind, long ones cut."""
    if isinstance(v, dict | list):
        return _kind(v)
    r = repr(v)
    return r if len(r) <= 60 else f"{r[:50]}...({len(r)} characters)"


def _join_key(k: Any) -> str:
    return _join("", k)


def _keys(
    d: dict[Any, Any],
    where: str,
    known: tuple[str, ...],
    problems: list[str],
    ignored: list[str],
    what: str = "key",
) -> None:
    """Every key of ``d`` not in ``known`` is an error, or ignored when the table says so."""
    for k in d:
        if k in known:
            continue
        path = _join(where, k)
        if isinstance(k, str) and why_ignored(path) is not None:
            ignored.append(path)
        else:
            problems.append(f"{path}: unknown {what}{did_you_mean(str(k), known)}")


def _obj(v: Any, where: str, problems: list[str], required: bool = True) -> dict[str, Any] | None:
    """``v`` as an object; None (and a problem) when it is missing or not an object."""
    if v is None:
        if required:
            problems.append(f"{where}: is required")
        return None
    if not isinstance(v, dict):
        problems.append(f"{where}: must be an object, got {_kind(v)}")
        return None
    return v


def _step(
    v: Any,
    where: str,
    name_key: str,
    known: tuple[str, ...],
    problems: list[str],
    ignored: list[str],
) -> Step | None:
    d = _obj(v, where, problems)
    if d is None:
        return None
    _keys(d, where, known, problems, ignored)
    name = d.get(name_key)
    if name_key in d and not isinstance(name, str):
        problems.append(f"{where}.{name_key}: must be a string, got {_show(name)}")
        return None
    if not name and name_key != "stepType":  # a v2 step's name is the step's, not the plugin's
        other = {"name": "plugin", "plugin": "name"}[name_key]
        name = d.get(other) if isinstance(d.get(other), str) else None
    if not name:
        step = d.get("name") if name_key == "stepType" else None
        which = f"step {step!r} has no {name_key}; " if isinstance(step, str) and step else ""
        problems.append(
            f"{where}.{name_key}: {which or 'is required: '}give the connector's name, e.g. 'mysql'"
        )
        return None
    param = d.get("parameter", {})
    if param is None:
        param = {}
    if not isinstance(param, dict):
        problems.append(f"{where}.parameter: must be an object, got {_kind(param)}")
        param = {}
    also = None
    if name_key in ("name", "plugin") and "plugin" in known:
        spelled = d.get({"name": "plugin", "plugin": "name"}[name_key])
        if isinstance(spelled, str) and spelled.strip().lower() != name.strip().lower():
            also = spelled
    return Step(name=name, parameter=param, where=f"{where}.parameter", also=also)


def _transformers(v: Any, where: str, problems: list[str], ignored: list[str]) -> list[Step]:
    if v is None:
        return []
    if not isinstance(v, list):
        problems.append(f"{where}: must be a list, got {_kind(v)}")
        return []
    out = []
    for i, t in enumerate(v):
        s = _step(t, f"{where}[{i}]", "name", ("name", "parameter"), problems, ignored)
        if s:
            out.append(s)
    return out


def _datax(doc: dict[str, Any], problems: list[str], ignored: list[str]) -> JobSpec:
    job = _obj(doc.get("job"), "job", problems) or {}
    _keys(job, "job", _JOB, problems, ignored)
    settings = _settings(job.get("setting"), "job.setting", problems, ignored)
    content = job.get("content")
    contents: list[Content] = []
    if isinstance(content, dict):
        content = [content]
    if not isinstance(content, list) or not content:
        problems.append("job.content: is required: a list of {reader, writer} entries")
        content = []
    for i, c in enumerate(content):
        w = f"job.content[{i}]"
        entry = _obj(c, w, problems)
        if entry is None:
            continue
        _keys(entry, w, _CONTENT, problems, ignored)
        side = ("name", "parameter", "plugin")
        r = _step(entry.get("reader"), f"{w}.reader", "name", side, problems, ignored)
        wr = _step(entry.get("writer"), f"{w}.writer", "name", side, problems, ignored)
        tr = _transformers(entry.get("transformer"), f"{w}.transformer", problems, ignored)
        if r and wr:
            contents.append(Content(r, wr, tr, w))
    return JobSpec(settings, contents, "datax")


def _script_v1(doc: dict[str, Any], problems: list[str], ignored: list[str]) -> JobSpec:
    conf = _obj(doc.get("configuration"), "configuration", problems) or {}
    _keys(conf, "configuration", _CONFIGURATION, problems, ignored)
    setting = conf.get("setting", doc.get("setting"))
    where = "configuration.setting" if "setting" in conf else "setting"
    if "setting" in conf and doc.get("setting") is not None:
        # the top-level one was never read (nor checked): its limits were dropped silently
        problems.append(
            "setting: the job has both configuration.setting and a top-level setting; "
            "keep one (configuration.setting, as DataWorks writes it)"
        )
    settings = _settings(setting, where, problems, ignored)
    side = ("plugin", "parameter", "name")
    r = _step(conf.get("reader"), "configuration.reader", "plugin", side, problems, ignored)
    w = _step(conf.get("writer"), "configuration.writer", "plugin", side, problems, ignored)
    tr = _transformers(conf.get("transformer"), "configuration.transformer", problems, ignored)
    return JobSpec(settings, [Content(r, w, tr, "configuration")] if r and w else [], "script-v1")


def _script_v2(doc: dict[str, Any], problems: list[str], ignored: list[str]) -> JobSpec:
    settings = _settings(doc.get("setting"), "setting", problems, ignored)
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        problems.append("steps: is required: a list of steps with category reader and writer")
        return JobSpec(settings, [], "script-v2")
    by_name: dict[str, tuple[str, Step]] = {}
    readers: list[str] = []
    writers: list[str] = []
    unread = False  # a step could not be read: the hops cannot be checked against it
    for i, s in enumerate(steps):
        w = f"steps[{i}]"
        step = _step(s, w, "stepType", _STEP_V2, problems, ignored)
        if step is None:
            unread = True
            continue
        d: dict[str, Any] = s
        cat = d.get("category")
        if cat not in ("reader", "writer"):
            problems.append(f"{w}.category: {_show(cat)} is not one of reader, writer")
            continue
        raw_name = d.get("name")
        if raw_name is not None and not isinstance(raw_name, str):
            problems.append(f"{w}.name: must be a string, got {_show(raw_name)}")
            continue
        name = raw_name or f"{cat}{i}"
        if name in by_name:
            problems.append(f"{w}.name: {name!r} names two steps; each step needs its own name")
            continue
        by_name[name] = (cat, step)
        (readers if cat == "reader" else writers).append(name)
    pairs = [] if unread else _hops(doc.get("order"), by_name, readers, writers, problems, ignored)
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


def _hops(
    order: Any,
    by_name: dict[str, tuple[str, Step]],
    readers: list[str],
    writers: list[str],
    problems: list[str],
    ignored: list[str],
) -> list[tuple[str, str]]:
    """The (reader, writer) step names that ``order.hops`` pairs."""
    o = _obj(order, "order", problems, required=False)
    hops = None
    if o is not None:
        _keys(o, "order", ("hops",), problems, ignored)
        hops = o.get("hops")
        if hops is not None and not isinstance(hops, list):
            problems.append(f"order.hops: must be a list, got {_kind(hops)}")
            return []
    if not hops:
        if len(readers) == 1 and len(writers) == 1:
            return [(readers[0], writers[0])]
        if by_name:
            problems.append(
                "order.hops: is required when there is not exactly one reader and one writer"
            )
        return []
    pairs: list[tuple[str, str]] = []
    for i, h in enumerate(hops):
        w = f"order.hops[{i}]"
        hop = _obj(h, w, problems)
        if hop is None:
            continue
        _keys(hop, w, ("from", "to"), problems, ignored)
        a, b = hop.get("from"), hop.get("to")
        if not (isinstance(a, str) and a in by_name and isinstance(b, str) and b in by_name):
            got = f"{_show(a)} -> {_show(b)}"
            names = ", ".join(by_name) or "none has a usable name"
            problems.append(f"{w}: from/to must name steps ({names}), got {got}")
            continue
        pairs.append((a, b))
    return pairs


def _number(
    v: Any, where: str, problems: list[str], integer: bool = False, percent: bool = False
) -> float | None:
    """A number >= 0 written as a number or a string ("0"; "2%" where ``percent``); None when
    absent or wrong."""
    if v is None or v == "":
        return None
    try:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ValueError
        text = v.strip() if isinstance(v, str) else ""
        if percent and text.endswith("%"):
            text = text[:-1]
        n = float(text) if isinstance(v, str) else float(v)
    except (ValueError, OverflowError):
        n = math.nan
    if not math.isfinite(n):
        problems.append(f"{where}: must be a number, got {_show(v)}")
        return None
    kind = "a whole number" if integer else "a number"
    if n < 0 or (integer and not n.is_integer()):
        problems.append(f"{where}: must be {kind} >= 0, got {_show(v)}")
        return None
    return n


def _settings(v: Any, where: str, problems: list[str], ignored: list[str]) -> Settings:
    d = _obj(v, where, problems, required=False) or {}
    s = Settings(timezone=local_timezone(), where=where)
    _keys(d, where, _SETTING_KEYS, problems, ignored, "setting")
    speed = _obj(d.get("speed"), f"{where}.speed", problems, required=False) or {}
    _keys(speed, f"{where}.speed", _SPEED, problems, ignored)
    key = "concurrent" if "concurrent" in speed else "channel"
    conc = speed.get(key)
    n = _number(conc, f"{where}.speed.{key}", problems, integer=True)
    if n is not None:
        if n < 1:
            problems.append(f"{where}.speed.{key}: must be at least 1, got {_show(conc)}")
        else:
            s.concurrent = int(n)
    throttle = speed.get("throttle", True)
    if isinstance(throttle, str) and throttle.strip().lower() in ("true", "false"):
        throttle = throttle.strip().lower() == "true"
    if not isinstance(throttle, bool):
        problems.append(f"{where}.speed.throttle: must be true or false, got {_show(throttle)}")
        throttle = True
    rates = {k: _number(speed.get(k), f"{where}.speed.{k}", problems) for k in _SPEED[2:5]}
    if throttle:
        b, m = rates["byte"], rates["mbps"]
        limits = [x for x in (b, m * 1048576 if m is not None else None) if x]
        s.byte_rate = min(limits) if limits else None
        s.record_rate = rates["record"] or None
    else:
        ignored.extend(f"{where}.speed.{k}" for k, r in rates.items() if r is not None)
    el = _obj(d.get("errorLimit"), f"{where}.errorLimit", problems, required=False) or {}
    _keys(el, f"{where}.errorLimit", _ERROR_LIMIT, problems, ignored)
    rec = _number(el.get("record"), f"{where}.errorLimit.record", problems, integer=True)
    s.error_records = int(rec) if rec is not None else None
    pct_raw = el.get("percentage")
    pct = _number(pct_raw, f"{where}.errorLimit.percentage", problems, percent=True)
    if pct is not None:
        # "2%" and 2 (> 1) are percents; 0.02 is a fraction, as DataX writes it
        is_percent = (isinstance(pct_raw, str) and pct_raw.strip().endswith("%")) or pct > 1
        # "33.3%" is 0.333 (the nearest double), not 33.3 / 100 (0.33299999999999996)
        s.error_fraction = float(Fraction(repr(pct)) / 100) if is_percent else pct
        if pct == 1 and not is_percent:
            # 1 is DataX's 100% and, by the rule that 2 is 2%, 1%: a guess either way
            problems.append(
                f"{where}.errorLimit.percentage: {_show(pct_raw)} may mean 100% (a fraction, as "
                'DataX reads it) or 1%; write "100%" or "1%" (or 0.01)'
            )
        elif s.error_fraction > 1:
            problems.append(
                f"{where}.errorLimit.percentage: must be at most 100%, got {_show(pct_raw)}"
            )
    ex = d.get("executor")
    if ex is not None and ex != "":
        if isinstance(ex, str):
            s.executor = ex.strip().lower()
        else:
            problems.append(f"{where}.executor: must be a string such as 'local', got {_show(ex)}")
    tz_key = "timezone" if "timezone" in d else "timeZone"
    tz = d.get(tz_key)
    other = d.get("timeZone") if tz_key == "timezone" else None
    if other is not None and other != "" and _zone_text(other) != _zone_text(tz):
        # which zone naive times and $[...] are read in would be a guess
        problems.append(
            f"{where}.timezone and {where}.timeZone name two zones, {_show(tz)} and "
            f"{_show(other)}; keep one"
        )
    if tz is not None and tz != "":
        try:
            if not isinstance(tz, str):
                raise ValueError
            ZoneInfo(tz)
            s.timezone = tz
        except (ZoneInfoNotFoundError, ValueError):
            problems.append(
                f"{where}.{tz_key}: unknown time zone {_show(tz)} "
                "(use an IANA name such as Asia/Shanghai)"
            )
    direct = d.get("direct")
    if isinstance(direct, str) and direct.strip().lower() in ("true", "false"):
        direct = direct.strip().lower() == "true"
    if direct is None or isinstance(direct, bool):
        s.direct = direct
    else:
        problems.append(f"{where}.direct: must be true or false, got {_show(direct)}")
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


_PARAM_REF = re.compile(r"\$\{([^}]*)\}")


def _zone_text(v: Any) -> Any:
    return v.strip() if isinstance(v, str) else v


def declared_timezone(doc: Any, params: dict[str, str] | None = None) -> str | None:
    """The zone a job document's settings name (``timezone``/``timeZone``), read before its
    parameters are substituted: the run time they are substituted for is read in it. A zone
    given by user parameters (``"timezone": "${tz}"`` with ``-p tz=Asia/Shanghai``) is read
    with ``params`` (their values as given); before, the run time was read in the machine's
    zone while the job's naive times were in ``${tz}``'s. ``None`` when it names none (or a
    parameter without a plain value, or an unknown zone: ``parse_job`` says so).
    """
    if not isinstance(doc, dict):
        return None
    holder = doc.get("job", doc.get("configuration", doc))
    setting = holder.get("setting") if isinstance(holder, dict) else None
    if setting is None:
        setting = doc.get("setting")  # script mode v1 may write it beside configuration
    if not isinstance(setting, dict):
        return None
    tz = setting.get("timezone", setting.get("timeZone"))
    if isinstance(tz, str) and "$" in tz:
        given = params or {}

        def value(m: re.Match[str]) -> str:
            v = given.get(m[1].strip())
            return v if v is not None and "$" not in v else m[0]

        tz = _PARAM_REF.sub(value, tz)
    if not isinstance(tz, str) or "$" in tz:
        return None
    try:
        ZoneInfo(tz.strip())
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return tz.strip()
