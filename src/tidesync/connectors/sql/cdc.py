"""What the change-data-capture readers share (``postgresqlcdc``, ``mysqlcdc``): parameters,
windows, the checkpoint history, the output columns.

A capture reads a server's change log (PostgreSQL logical decoding, the MySQL/MariaDB binlog)
in windows ``[start, end)`` of commit time. Windows tile the log: each one is stored as the span
of log positions ``[lo, hi)`` it took, and the next one starts where the last one ended, so no
transaction is taken twice or skipped, whatever the commit timestamps do near a boundary (a
transaction belongs to the first window whose end is after its commit time, in log order; one
whose timestamp falls before a boundary it reaches the log after goes to the next window).

The history of retained spans is the reader's position (``Chunk.position``, saved by the engine
after the writer's commit, read back through ``Context.stored_positions()``)::

    {"capture": "tidesync_orders_1a2b3c4d", "created": 1700000000000,
     "spans": [[start_ms, end_ms, lo, hi], ...],      # oldest first, tiling
     "tables": {"public.orders": 16385},               # each table's identity (PostgreSQL: OID)
     "types": {"public.orders": {"amount": "numeric(10,2)"}},  # read columns' types
     "unread": {"public.orders": ["note"]},             # the columns the job leaves out
     "seen": 1700000360000}                             # the server's clock at the last log end

``tables`` is what a store records to know a captured table again (PostgreSQL: the table's
``pg_class`` OID): each run compares it with the table's now, so a table replaced between runs
(dropped and created, a rename swap) is an error even when the log holds nothing of it. Positions
saved without it (an earlier version, a table newly added to the job) record it, never fail.
``types`` are the read columns' types as the last run planned them: a type changed since in a
way that may change the values the table holds (``ALTER ... TYPE`` to a smaller scale, precision
or length: rounded or cut without a change of each row in the log) is an error, as is one
changed while a run reads; a type that holds every old value as it was (a wider integer or
text) is not. ``unread`` are the columns the job left out: one read later is an error (its
values in the rows taken before were never given).

A run of window ``[S, E)``:

- ``S`` is where the last span ended: a new span, ``lo`` = the last ``hi``; ``hi`` found by
  reading the log up to the position the server had once its clock passed ``E`` (plus a
  margin), cut before the first transaction committed at or after ``E``;
- ``S`` and ``E`` are boundaries of stored spans: a rerun, the same ``[lo, hi)``, the same rows;
- ``S`` is a stored start and ``E`` is after the last end: the spans from ``S`` on are replaced
  by one (a rerun that goes further);
- anything else is an error naming the fix: a gap (``S`` after the last end), a window older
  than the retained spans, a window cutting through a stored one.

Without a window a run takes everything from the last ``hi`` up to the log's end now.

``snapshot: true``: the first run creates the capture itself, in ``read()`` (``History.lo`` is
None until then), at a consistent point of the log, and first emits the tables' rows as of that
point (``_op = r``, ``_pos`` the point, ``_ts`` its time), then the log from that point: no gap,
no duplicate. Its span is marked (``snap``). A retry before the run committed is a new first
run (a new snapshot); a rerun of the committed first window is an error, since a snapshot cannot
be taken again at a past point.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from tidesync.connectors.base import Chunk, Context, Params, Reader, Split
from tidesync.errors import ConfigError, FatalError

__all__ = [
    "OP",
    "TS",
    "POS",
    "TABLE",
    "META",
    "CaptureReader",
    "CdcOptions",
    "CdcSplit",
    "History",
    "Span",
    "SpanPlan",
    "capture_name",
    "cdc_options",
    "meta_fields",
    "output_schema",
    "snapshot_chunk",
    "slices",
    "from_numpy",
    "from_strings",
    "to_bools",
    "wait_until",
]

log = logging.getLogger("tidesync.cdc")

OP = "_op"
TS = "_ts"
POS = "_pos"
TABLE = "_table"
META = (OP, TS, POS, TABLE)
TS_TYPE = pa.timestamp("us", tz="UTC")

#: keys every capture reader reads (beside its store's connection keys)
CDC_KEYS = (
    "table",
    "column",
    "startTimestampMillis",
    "endTimestampMillis",
    "startTime",
    "endTime",
    "waitTimeout",
    "retention",
    "beforeImage",
    "snapshot",
    "mode",
    "isExportSequenceInfo",
    "maxRetries",
    "statusTable",
    "dataTable",
    "date",
)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min|h|d)?\s*$", re.IGNORECASE)
_UNIT_S = {"ms": 0.001, "s": 1, "": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class CdcOptions:
    """The capture parameters, checked."""

    tables: list[str]
    columns: list[str] | None  # None: every column
    start_ms: int | None = None
    end_ms: int | None = None
    wait_timeout: float = 600.0
    retention_ms: int = 24 * 3600 * 1000
    before_image: bool = False
    snapshot: bool = False  # the first run emits the tables' rows (``_op = r``) first

    @property
    def windowed(self) -> bool:
        return self.end_ms is not None


def _duration(p: Params, key: str, default: float) -> float:
    v = p.get(key)
    if v is None:
        return default
    if isinstance(v, int | float) and not isinstance(v, bool) and v >= 0:
        return float(v)
    m = _DURATION.match(str(v))  # a negative number is refused here, as '-1h' is
    if not m:
        p.problem(key, f"must be a duration such as 600, '10m', '24h', got {v!r}")
        return default
    return float(m[1]) * _UNIT_S[(m[2] or "").lower()]


def _millis(p: Params, key: str, alt: str) -> int | None:
    v = p.get(key)
    if v is None:
        return None
    text = str(v).strip()
    if isinstance(v, bool) or not re.fullmatch(r"-?\d+", text):
        p.problem(key, f"must be milliseconds since 1970-01-01 UTC, got {v!r}")
        return None
    if 0 <= int(text) < _SECONDS_LIKE:
        # 1700000000 is 1970-01-20 as milliseconds: a window no capture holds, read as empty
        p.problem(
            key,
            f"{text} is {_show(int(text))} as milliseconds, before any capture; it looks like "
            f"seconds: give milliseconds ({int(text) * 1000}), or the time as {alt}",
        )
        return None
    if len(text) == 14 and _looks_like_time(text):
        p.problem(
            key,
            f"{text} reads as the time {text[:4]}-{text[4:6]}-{text[6:8]} {text[8:10]}:"
            f"{text[10:12]}:{text[12:]}, not as milliseconds; give it as {alt} "
            "(yyyyMMddHHmmss in the job's time zone)",
        )
        return None
    return int(text)


_OTHER = {"startTime": "startTimestampMillis", "endTime": "endTimestampMillis"}
#: milliseconds below this (1973-03-03) are taken for seconds written in a millisecond key
_SECONDS_LIKE = 100_000_000_000


def _looks_like_time(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y%m%d%H%M%S")
    except ValueError:
        return False
    return True


def _time(p: Params, key: str, tz: str) -> int | None:
    from tidesync.spec.params import local_instant, parse_time_arg

    v = p.get(key)
    if v is None:
        return None
    try:
        t = local_instant(parse_time_arg(v), tz)
    except ValueError as e:
        p.problem(key, str(e))
        return None
    return int(t.timestamp() * 1000)


def cdc_options(p: Params, ctx: Context) -> CdcOptions:
    """Read the keys every capture reader has; problems are recorded on ``p``."""
    raw_tables = p.list("table", [])
    tables = []
    for i, t in enumerate(raw_tables or []):
        if not isinstance(t, str) or not t.strip():
            p.problem(f"table[{i}]" if len(raw_tables) > 1 else "table", "must be a table name")
        else:
            tables.append(t.strip())
    columns: list[str] | None = None
    raw_cols = p.list("column")
    if raw_cols and raw_cols != ["*"]:
        columns = []
        for i, c in enumerate(raw_cols):
            name = c.get("name") if isinstance(c, dict) else c
            if not isinstance(name, str) or not name.strip():
                p.problem(f"column[{i}]", f"must be a column name or {{name: NAME}}, got {c!r}")
            elif name in META:
                p.problem(f"column[{i}]", f"{name} is added by the capture reader itself")
            else:
                columns.append(name.strip())
    start = _millis(p, "startTimestampMillis", "startTime")
    end = _millis(p, "endTimestampMillis", "endTime")
    for key, alt, v in (
        ("startTime", "startTimestampMillis", start),
        ("endTime", "endTimestampMillis", end),
    ):
        if p.raw.get(key) not in (None, "") and v is not None:
            p.problem(key, f"give either {key} or {alt}, not both")
    start = start if start is not None else _time(p, "startTime", ctx.timezone)
    end = end if end is not None else _time(p, "endTime", ctx.timezone)
    if (start is None) != (end is None):
        missing = "endTime" if end is None else "startTime"
        if not any(p.raw.get(k) not in (None, "") for k in (missing, _OTHER[missing])):
            p.problem(missing, "is required with the other end of the window ([start, end))")
        start = end = None
    elif start is not None and end is not None and start >= end:
        p.problem("endTime", f"the window ends at {_show(end)}, not after its start {_show(start)}")
        start = end = None
    mode = p.str("mode")
    if mode is not None and mode != "single_version_and_update_only":
        p.problem("mode", f"only single_version_and_update_only is supported, got {mode!r}")
    if p.bool("isExportSequenceInfo"):
        p.problem("isExportSequenceInfo", "must be false (sequence information is in _pos)")
    for k in ("maxRetries", "statusTable", "dataTable", "date"):  # seed keys with no meaning here
        p.get(k)
    return CdcOptions(
        tables,
        columns,
        start,
        end,
        _duration(p, "waitTimeout", 600.0),
        int(_duration(p, "retention", 86400.0) * 1000),
        p.bool("beforeImage"),
        p.bool("snapshot"),
    )


def _show(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def capture_name(ctx: Context, given: str | None = None) -> str:
    """The server-side name of a job's capture (a PostgreSQL slot, a publication): ``given``,
    else ``tidesync_`` + the job's identity made an identifier + a short digest of it."""
    if given:
        return given
    import hashlib

    identity = getattr(ctx, "state_key", "") or ctx.job_name or "job"
    stem = re.sub(r"[^a-z0-9_]+", "_", identity.lower()).strip("_")[:32]
    digest = hashlib.sha1(identity.encode()).hexdigest()[:8]
    return f"tidesync_{stem}_{digest}" if stem else f"tidesync_{digest}"


# -- the history of spans ------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: int  # ms, commit time
    end: int
    lo: Any  # log position (JSON): first transaction included
    hi: Any  # log position: first transaction not included
    snap: bool = False  # the span began with the snapshot of the tables (the first run)


@dataclass(frozen=True)
class SpanPlan:
    """What one run reads: from ``lo``; up to ``hi`` when known (a rerun), else found now."""

    start: int
    end: int | None  # None: up to the log's end now (no window)
    lo: Any
    hi: Any = None
    keep: int = 0  # how many stored spans stay before this run's
    rerun: bool = False
    cut: bool = True  # cut at the first commit at or after ``end``
    snap: bool = False  # the span begins with the snapshot (set by the run that takes it)


@dataclass
class History:
    capture: str
    created: int  # ms
    lo: Any  # where the capture starts; None: not yet, the first run creates it with a snapshot
    spans: list[Span] = field(default_factory=list)
    #: each captured table's identity as the store records it (PostgreSQL: the pg_class OID),
    #: by the table's qualified name; empty where the store keeps none
    tables: dict[str, Any] = field(default_factory=dict)
    #: the server's clock (ms) when a run last read where the log ends: every saved position was
    #: in the log by then (a store may check that the log holding one is no younger); None where
    #: positions were saved without it
    seen: int | None = None
    #: each captured table's read columns and their types as the store spells them, by the
    #: table's qualified name, as the last run planned them; empty where saved without them
    types: dict[str, dict[str, str]] = field(default_factory=dict)
    #: each captured table's columns the last run did not read (a column read later lacks its
    #: values in the rows taken before); absent where saved without them
    unread: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, v: Any) -> History | None:
        if not isinstance(v, dict) or "capture" not in v:
            return None
        spans = [
            Span(int(s[0]), int(s[1]), s[2], s[3], bool(s[4]) if len(s) > 4 else False)
            for s in v.get("spans", [])
        ]
        tables = v.get("tables")
        seen = v.get("seen")
        types = v.get("types")
        unread = v.get("unread")
        return cls(
            str(v["capture"]),
            int(v.get("created", 0)),
            v.get("lo"),
            spans,
            dict(tables) if isinstance(tables, dict) else {},
            int(seen) if isinstance(seen, int) and not isinstance(seen, bool) else None,
            {str(k): dict(c) for k, c in types.items() if isinstance(c, dict)}
            if isinstance(types, dict)
            else {},
            {str(k): [str(x) for x in c] for k, c in unread.items() if isinstance(c, list)}
            if isinstance(unread, dict)
            else {},
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "capture": self.capture,
            "created": self.created,
            "lo": self.lo,
            "spans": [
                [s.start, s.end, s.lo, s.hi, *([True] if s.snap else [])] for s in self.spans
            ],
        }
        if self.tables:
            out["tables"] = dict(self.tables)
        if self.seen is not None:
            out["seen"] = self.seen
        if self.types:
            out["types"] = {k: dict(c) for k, c in self.types.items()}
        if self.unread:
            out["unread"] = {k: list(c) for k, c in self.unread.items()}
        return out

    @property
    def horizon(self) -> Any:
        """The oldest position a rerun may still need."""
        return self.spans[0].lo if self.spans else self.lo

    @property
    def last_hi(self) -> Any:
        return self.spans[-1].hi if self.spans else self.lo

    def plan(self, o: CdcOptions, now_ms: int, where: str) -> SpanPlan:
        if not o.windowed:
            start = self.spans[-1].end if self.spans else self.created
            return SpanPlan(start, None, self.last_hi, keep=len(self.spans), cut=False)
        s, e = o.start_ms, o.end_ms
        assert s is not None and e is not None
        if not self.spans:
            return SpanPlan(s, e, self.lo, keep=0)
        last = self.spans[-1]
        if s == last.end:
            return SpanPlan(s, e, last.hi, keep=len(self.spans))
        if s > last.end:
            raise FatalError(
                f"{where}: window [{_show(s)}, {_show(e)}) leaves a gap: the last run of this "
                f"capture ended at {_show(last.end)}, so the changes in [{_show(last.end)}, "
                f"{_show(s)}) were never taken; run that window first (startTime/endTime), or "
                f"`tidesync cdc drop` the capture to start a new one"
            )
        starts = [sp.start for sp in self.spans]
        if s not in starts:
            if s < self.spans[0].start:
                raise FatalError(
                    f"{where}: window [{_show(s)}, {_show(e)}) is older than what the capture "
                    f"retains (from {_show(self.spans[0].start)}; retention keeps "
                    f"{len(self.spans)} windows): its changes can no longer be read again"
                )
            raise FatalError(
                f"{where}: window [{_show(s)}, {_show(e)}) starts inside an earlier window; "
                f"windows of this capture start at {', '.join(_show(x) for x in starts[-3:])}..."
            )
        k = starts.index(s)
        if self.spans[k].snap:
            raise FatalError(
                f"{where}: window [{_show(s)}, {_show(e)}) begins with the snapshot of the "
                f"tables this capture took when it started (at {self.spans[k].lo}); a snapshot "
                "cannot be taken again at a past point, so this window cannot be read again: "
                f"rerun from the next window on ({_show(self.spans[k].end)}), or `tidesync cdc "
                "drop` the job and run it again for a new capture with a new snapshot"
            )
        ends = [sp.end for sp in self.spans]
        if e in ends[k:]:
            m = ends.index(e, k)
            return SpanPlan(s, e, self.spans[k].lo, self.spans[m].hi, keep=k, rerun=True)
        if e > last.end:
            return SpanPlan(s, e, self.spans[k].lo, keep=k)
        raise FatalError(
            f"{where}: window [{_show(s)}, {_show(e)}) ends inside an earlier window; "
            f"windows of this capture end at {', '.join(_show(x) for x in ends[-3:])}"
        )

    def record(self, plan: SpanPlan, end_ms: int, hi: Any, retention_ms: int) -> History:
        """The history after ``plan`` ran and ended at ``hi``, spans older than the retention
        dropped (the newest always stays)."""
        if plan.rerun:
            return self
        spans = [*self.spans[: plan.keep], Span(plan.start, end_ms, plan.lo, hi, plan.snap)]
        horizon = spans[-1].end - retention_ms
        while len(spans) > 1 and spans[0].end <= horizon:
            spans.pop(0)
        lo = self.lo if self.lo is not None else plan.lo
        return replace(self, lo=lo, spans=spans)


# -- output ------------------------------------------------------------------------------------


def refuse_new_tables(where: str, new: list[str], saved: list[str], lost: str) -> None:
    """Fail a run whose job reads tables (``new``) its saved positions (of ``saved``) do not
    name: ``lost`` says what of theirs the capture would lack."""
    if new:
        raise FatalError(
            f"{where}: table {', '.join(new)} is new to this capture (its saved positions are of "
            f"{', '.join(saved)}): {lost}; capture it in a job of its own (snapshot: true gives "
            "its rows), or start this capture anew with it (`tidesync cdc drop` the job, then "
            "run it with snapshot: true)"
        )


def meta_fields(several: bool) -> list[pa.Field]:
    out = [
        pa.field(OP, pa.string(), nullable=False),
        pa.field(TS, TS_TYPE, nullable=False),
        pa.field(POS, pa.string(), nullable=False),
    ]
    if several:
        out.append(pa.field(TABLE, pa.string(), nullable=False))
    return out


def output_schema(tables: list[tuple[str, pa.Schema]], before_image: bool, where: str) -> pa.Schema:
    """One schema for every table read: their columns (by name, first seen first; a name two
    tables type differently is an error), ``before_<col>`` with ``beforeImage``, then the meta
    columns (``_table`` when several tables are read)."""
    fields: dict[str, pa.Field] = {}
    for name, schema in tables:
        for f in schema:
            if f.name in META:
                raise ConfigError(
                    f"{where}: table {name} has a column {f.name}, which the capture reader "
                    "adds itself; leave it out of column"
                )
            have = fields.get(f.name)
            if have is not None and have.type != f.type:
                raise ConfigError(
                    f"{where}: column {f.name} is {have.type} in one table and {f.type} in "
                    f"{name}; read the tables in separate jobs or choose the columns"
                )
            fields.setdefault(f.name, f.with_nullable(True))
    out = list(fields.values())
    if before_image:
        out += [pa.field("before_" + f.name, f.type) for f in fields.values()]
    return pa.schema(out + meta_fields(len(tables) > 1))


def wait_until(end_ms: int, now_ms: Callable[[], int], timeout: float, where: str) -> int:
    """Wait until the server's clock (``now_ms``) has passed ``end_ms``; its time then. A window
    whose end is more than ``timeout`` seconds away is an error, never a partial window."""
    now = now_ms()
    if now >= end_ms:
        return now
    if (end_ms - now) / 1000 > timeout:
        raise FatalError(
            f"{where}: the window ends at {_show(end_ms)}, {(end_ms - now) / 1000:.0f} s from the "
            f"server's clock ({_show(now)}), more than waitTimeout ({timeout:.0f} s); run it "
            "after its end or raise waitTimeout"
        )
    log.info("waiting %.1f s for the window's end %s", (end_ms - now) / 1000, _show(end_ms))
    deadline = time.monotonic() + timeout
    while now < end_ms:
        time.sleep(min(max((end_ms - now) / 1000, 0.01), 1.0))
        now = now_ms()
        if time.monotonic() > deadline:
            break
    return now


def show_ms(ms: int) -> str:
    return _show(ms)


# -- the reader's skeleton -------------------------------------------------------------------------


@dataclass(frozen=True)
class CdcSplit(Split):
    """One run's span of the log (plain data): the plan and the history it continues."""

    start: int = 0
    end: int | None = None
    lo: Any = None
    hi: Any = None
    keep: int = 0
    rerun: bool = False
    cut: bool = True
    history: str = ""  # JSON


class CaptureReader(Reader):
    """What every capture reader does the same way: one split per run (the span of the log its
    window takes), the window planned against the stored history, waiting for the window's end,
    the history after the run as the split's position. A store fills in:

    ``_plan()`` (sets ``_schema``), ``_now_ms()`` (the server's clock), ``_log_end()`` (the
    log's end position now), ``_open(history)`` (find or create the capture; the history to go
    on from), ``_changes(lo, upto, cut_us)`` (a generator of chunks that returns where the span
    ended) and ``_before(a, b)`` (log order of two positions). With ``snapshot: true``,
    ``_open(None)`` returns a history whose ``lo`` is None instead of creating the capture, and
    ``_snapshot()`` creates it in the run that reads (see its docstring).
    """

    LABEL = "changes"
    #: after a window's end, how long the server's clock must have run on before its log is
    #: read (a commit takes its timestamp a moment before its record reaches the log)
    margin_ms = 1000
    capture = ""
    o: CdcOptions
    _schema: pa.Schema | None = None

    # -- hooks ------------------------------------------------------------------------------------
    def _plan(self) -> None:
        raise NotImplementedError

    def _now_ms(self) -> int:
        raise NotImplementedError

    def _log_end(self) -> Any:
        raise NotImplementedError

    def _open(self, history: History | None) -> History:
        raise NotImplementedError

    def _changes(self, lo: Any, upto: Any, cut_us: int | None) -> Generator[Chunk, None, Any]:
        raise NotImplementedError

    def _before(self, a: Any, b: Any) -> bool:
        return bool(a < b)

    def _types(self) -> dict[str, dict[str, str]]:
        """Each captured table's read columns and their types now (by the history's table
        names), read from the catalog; empty where the store does not compare them."""
        return {}

    def _labels(self) -> dict[str, str]:
        """The tables' names as the job gives them, by the names :meth:`_types` uses."""
        return {}

    def _unread(self) -> dict[str, list[str]]:
        """Each captured table's columns the job does not read (by :meth:`_types`' names)."""
        return {}

    def _keeps(self, old: str, new: str) -> bool:
        """Whether changing a column from type ``old`` to ``new`` keeps every value the table
        holds as it was (or fails the ALTER where one does not fit)."""
        return old == new

    def _filled(self, table: str, columns: list[str]) -> list[str]:
        """Of ``columns`` of ``table`` (added since the last run), those that hold a value in
        rows written before they were added (a default, NOT NULL, a generated column)."""
        return []

    def _refuse_newly_read(self, was: dict[str, list[str]], now: dict[str, dict[str, str]]) -> None:
        """Fail a run that reads a column the last run left out (the job's ``column`` list
        changed): its values in the rows taken before were never given."""
        labels = self._labels()
        for table, cols in now.items():
            new = [c for c in cols if c in set(was.get(table, ()))]
            if new:
                raise FatalError(
                    f"{self.ctx.where}: table {labels.get(table, table)}, column {new[0]} is read "
                    "now and was not by the last run (the job's column list changed): its "
                    "values in the rows already taken were never given; read it in a job of "
                    "its own (snapshot: true gives them), or start this capture anew with it "
                    "(`tidesync cdc drop` the job, then run it with snapshot: true)"
                )

    def _refuse_rewrites(
        self, was: dict[str, dict[str, str]], now: dict[str, dict[str, str]], when: str
    ) -> None:
        """Fail a run where a read column's type is not the type ``was`` saved and the change
        may have rewritten the values the table holds (:meth:`_keeps` false: an ``ALTER ...
        TYPE`` that rounds or cuts them), or where a column added since gave every row a value
        (:meth:`_filled`): each changes every row without a change of each in the log, so the
        rows taken before are no longer the table's."""
        fix = (
            "; a new snapshot is needed: `tidesync cdc drop` the job, then run it with "
            "snapshot: true"
        )
        labels = self._labels()
        for table, cols in now.items():
            old = was.get(table)
            if not old:
                continue
            label = labels.get(table, table)
            for col, t in cols.items():
                o = old.get(col)
                if o is None or self._keeps(o, t):
                    continue
                raise FatalError(
                    f"{self.ctx.where}: table {label}, column {col}: its type changed from {o} "
                    f"to {t} {when} (ALTER TABLE), which may have rewritten the values the table "
                    "holds (rounded, cut or converted) without a change of each row in the log, "
                    "so the rows already taken are no longer the table's" + fix
                )
            added = self._filled(table, [c for c in cols if c not in old])
            if added:
                raise FatalError(
                    f"{self.ctx.where}: table {label}, column {added[0]}: added {when} with a "
                    "value in every row (a default, NOT NULL or a generated column), which the "
                    "log does not hold: the rows already taken lack it" + fix + " (or add such a "
                    "column without a default and fill it with UPDATE)"
                )

    def _snapshot(self) -> Generator[Chunk, None, tuple[Any, int]]:
        """Create the capture at a consistent point of the log and yield the tables' rows as
        of that point (:func:`snapshot_chunk`: ``_op = r``); return ``(lo, created_ms)``, the
        point's log position (where ``_changes`` goes on) and its server time."""
        raise NotImplementedError

    # -- the skeleton ------------------------------------------------------------------------------
    def schema(self) -> pa.Schema | None:
        self._plan()
        return self._schema

    def stored(self) -> History | None:
        """The history the last committed run saved (None the first time)."""
        raw = self.ctx.stored_positions().get(self.LABEL)
        h = History.from_json(raw)
        if h is not None and h.capture != self.capture:
            raise FatalError(
                f"{self.ctx.where}: the saved positions of this job belong to capture "
                f"{h.capture}, not {self.capture}; `tidesync cdc drop` the job to start anew"
            )
        return h

    def splits(self, n: int) -> list[Split]:
        self._plan()
        if self.ctx.state is None:
            raise ConfigError(
                f"{self.ctx.where}: a capture reader needs the state store (run it with "
                "`tidesync run`)"
            )
        stored = self.stored()
        history = self._open(stored)
        types, unread = self._types(), self._unread()
        if stored is not None:
            self._refuse_newly_read(stored.unread, types)
            self._refuse_rewrites(stored.types, types, "since the last run")
        history = replace(history, types=types, unread=unread)
        plan = history.plan(self.o, 0, self.ctx.where)
        return [
            CdcSplit(
                0,
                self.LABEL,
                plan.start,
                plan.end,
                plan.lo,
                plan.hi,
                plan.keep,
                plan.rerun,
                plan.cut,
                json.dumps(history.to_json()),
            )  # fmt: skip
        ]

    def read(self, split: Split) -> Iterator[pa.RecordBatch | Chunk]:
        assert isinstance(split, CdcSplit)
        self._plan()
        history = History.from_json(json.loads(split.history))
        assert history is not None
        plan = SpanPlan(split.start, split.end, split.lo, split.hi, split.keep, split.rerun,
                        split.cut)  # fmt: skip
        seen: int | None = None
        if plan.hi is not None:
            upto, end_ms = plan.hi, int(plan.end or 0)
        else:
            if plan.end is not None:  # the window's end, and a margin, must have passed
                wait_until(plan.end + self.margin_ms, self._now_ms,
                           self.o.wait_timeout + self.margin_ms / 1000, self.ctx.where)  # fmt: skip
            if plan.lo is None:  # the first run of a capture with a snapshot: create it now
                lo, created = yield from self._snapshot()
                history = replace(history, created=created, lo=lo)
                start = plan.start if plan.end is not None else created
                plan = SpanPlan(start, plan.end, lo, None, plan.keep, plan.rerun, plan.cut, True)
            upto, now = self._log_end()
            end_ms = plan.end if plan.end is not None else now
            seen = now
        hi = upto
        if self._before(plan.lo, upto):
            cut_us = (
                plan.end * 1000 if (plan.cut and plan.end is not None and plan.hi is None) else None
            )
            hi = yield from self._changes(plan.lo, upto, cut_us)
        elif plan.hi is None:
            hi = plan.lo
        if history.types:  # an ALTER while the run read: the next run's plan would not see it
            self._refuse_rewrites(history.types, self._types(), "while this run read the log")
        new = history.record(plan, end_ms, hi, self.o.retention_ms)
        if seen is not None:
            new = replace(new, seen=seen)
        yield Chunk(None, position=new.to_json())


def snapshot_chunk(
    part: pa.RecordBatch | Chunk, label: str | None, schema: pa.Schema, pos: str, ts_us: int
) -> Chunk:
    """A batch of the batch reader's rows (or a chunk with its dirty records) as snapshot rows
    in the capture's output ``schema``: the columns it lacks NULL (``before_*`` among them),
    ``_op = r``, ``_ts`` and ``_pos`` the consistent point's, ``_table`` = ``label``."""
    chunk = part if isinstance(part, Chunk) else Chunk(part)
    batch = chunk.batch
    assert batch is not None
    n = batch.num_rows
    meta = {
        OP: pa.array(["r"] * n, pa.string()) if n else pa.array([], pa.string()),
        TS: pa.array(np.full(n, ts_us, dtype=np.int64), TS_TYPE),
        POS: pa.array([pos] * n, pa.string()),
        TABLE: pa.array([label] * n, pa.string()),
    }
    have = set(batch.schema.names)
    cols = []
    for f in schema:
        if f.name in meta:
            cols.append(meta[f.name])
        elif f.name in have:
            col = batch.column(f.name)
            cols.append(col if col.type == f.type else col.cast(f.type))
        else:
            cols.append(pa.nulls(n, f.type))
    return Chunk(pa.RecordBatch.from_arrays(cols, schema=schema), chunk.dirty)


# -- decoding helpers ------------------------------------------------------------------------------

# The decoders build their arrays from numpy buffers and strings by hand: ``pa.array``,
# ``pa.scalar``, ``np.asarray(arrow_array)`` and compute functions given Python values all import
# pandas on first use (pyarrow looks for pandas objects), a quarter of a second of a CDC run.


def from_numpy(values: np.ndarray, t: pa.DataType | None = None) -> pa.Array:
    """A 1-d numpy array of numbers or booleans as an Arrow array (of type ``t``, same width:
    a timestamp from int64, say), no NULLs; shares the memory where the layout allows."""
    v = np.ascontiguousarray(values)
    if v.dtype == np.bool_:
        bits = pa.py_buffer(np.packbits(v, bitorder="little"))
        return pa.Array.from_buffers(t or pa.bool_(), len(v), [None, bits])
    if not v.dtype.isnative:
        v = v.astype(v.dtype.newbyteorder("="))
    return pa.Array.from_buffers(t or pa.from_numpy_dtype(v.dtype), len(v), [None, pa.py_buffer(v)])


def from_strings(values: list[str | None] | tuple[str | None, ...]) -> pa.Array:
    """Python strings (None: NULL) as an Arrow string array."""
    data = [b"" if v is None else v.encode() for v in values]
    offsets = np.zeros(len(data) + 1, np.int32)
    np.cumsum([len(d) for d in data], out=offsets[1:])
    valid = np.array([v is not None for v in values], bool)
    nulls = len(values) - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(
        pa.string(),
        len(values),
        [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(data))],
        nulls,
    )


def distinct(values: np.ndarray) -> list[int]:
    """The distinct integers of ``values``, in order (``np.unique`` of a plain array imports
    numpy.ma on first use: 10 to 20 ms of a run)."""
    return sorted(set(values.tolist()))


def to_bools(arr: pa.Array | pa.ChunkedArray, null: bool = False) -> np.ndarray:
    """A boolean Arrow array as numpy (NULL read as ``null``)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    if not n:
        return np.zeros(0, bool)
    validity, data = arr.buffers()[:2]
    assert data is not None

    def bits(buf: pa.Buffer) -> np.ndarray:
        raw = np.frombuffer(buf, np.uint8)
        return np.unpackbits(raw, bitorder="little")[arr.offset : arr.offset + n].astype(bool)

    out = bits(data)
    if validity is not None and arr.null_count:
        ok = bits(validity)
        out = np.where(ok, out, null)
    return out


_EVEN: list[pa.Array] = [from_numpy(np.arange(0, 2 << 16, 2, dtype=np.int64))]


def _even(n: int) -> pa.Array:
    """``0, 2, 4, ...`` (n values), cached."""
    a = _EVEN[0]
    if n > len(a):
        a = _EVEN[0] = from_numpy(np.arange(0, 2 * max(n, 2 * len(a)), 2, dtype=np.int64))
    return a.slice(0, n)


def slices(
    buf: np.ndarray, start: np.ndarray, length: np.ndarray, valid: np.ndarray, binary: bool = False
) -> pa.Array:
    """The values at ``buf[start : start + length]`` (rows in buffer order) as one Arrow string
    (or binary) array, NULL where not ``valid``: Arrow gathers them with one ``take`` over a
    zero-copy view of ``buf`` whose offsets alternate between a value and the gap after it."""
    n = len(start)
    t = pa.binary() if binary else pa.string()
    if not n:
        return pa.Array.from_buffers(t, 0, [None, pa.py_buffer(np.zeros(1, np.int32)), None])
    s = np.where(valid, start, 0)
    e = np.where(valid, start + length, 0)
    if not valid.all():  # an empty value where a NULL is, keeping the offsets in order
        e = np.maximum.accumulate(e)
        s = np.where(valid, s, e)
    offsets = np.empty(2 * n + 1, dtype=np.int64)
    offsets[0:-1:2], offsets[1::2] = s, e
    offsets[-1] = e[-1]
    big = offsets[-1] >= 2**31 - 1
    view = pa.Array.from_buffers(
        pa.large_binary() if big else pa.binary(),
        2 * n,
        [None, pa.py_buffer(offsets if big else offsets.astype(np.int32)), pa.py_buffer(buf)],
    )
    out = view.take(_even(n))
    if big:
        out = out.cast(pa.binary())
    nulls = n - int(valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(t, n, [bitmap, *out.buffers()[1:]], nulls)
