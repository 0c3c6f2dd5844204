"""Incremental reads by a growing column, one implementation for every SQL reader (SQLite,
DuckDB, PostgreSQL, MySQL/MariaDB)::

    "incremental": {"column": "optime", "start": "2016-11-01 00:00:00", "end": "..."}

A run reads the rows whose ``column`` is after the largest value the last committed run of the
same job read (after ``start`` the first time, everything without one) and not after the
window's end: ``end`` when given, else the instance's cyctime when the column holds dates or
times. The column need not be among the columns read: it is then read beside them and dropped
from the output. A failed run saves nothing, so the next one reads its window again.

The engine owns the cursor (positions, see :mod:`tidesync.connectors.base`); a reader only
plans and tracks::

    inc = Incremental.from_params(p)                # with the reader's other parameters
    name = inc.column_of(known, "table oplog")      # the table's column (ValueError if none)
    cursor = inc.cursor(ctx, "oplog", name, drop=..., temporal=...)   # lower bound: the
                                                    # positions the last committed run saved
    sql += " AND " + cursor.condition(dialect)      # "optime" > '...' AND "optime" <= '...'
    ... the Cursor (plain data) travels in the split; in read(split):
    yield from split.cursor.track(batches)          # every Chunk carries the split's position

A split's position is ``{"source": "oplog", "column": "optime", "value": <largest so far>}``;
the next run's lower bound for a source is the largest value over the saved positions of that
source and column (key-range splits each saved their own).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa

from tidesync.compute import pc
from tidesync.connectors.base import Chunk, Context, Params
from tidesync.connectors.sql.conn import MYSQL, Dialect, _find
from tidesync.errors import ConfigError, FatalError, did_you_mean
from tidesync.spec.params import local_instant, parse_time_arg

__all__ = ["Cursor", "Incremental", "is_aware", "is_temporal", "literal"]

_KEYS = ("column", "start", "end")


@dataclass(frozen=True)
class Cursor:
    """One source's cursor in one run: plain data, so it travels in a split to any worker.

    ``lower`` and ``upper`` are JSON values (numbers, strings; times as ISO text) or None for
    no bound. The window is half-open: ``lower`` is excluded when it is a value a run read
    (``lower_closed`` False), included when it is the ``start`` no run read yet; ``upper`` (the
    cyctime or ``end``) is excluded, unless it is the largest value the table held at planning
    (``upper_open`` False, :meth:`capped`). ``drop``: the column was read only for the
    cursor."""

    source: str
    column: str
    lower: Any = None
    upper: Any = None
    drop: bool = False
    #: the largest value the last committed run saved (a rerun's position never goes below it)
    top: Any = None
    #: the windows committed runs read, ``(upper, lower, lower_closed)`` in order of
    #: ``upper``, this one's included: a rerun of a window reads its recorded span again
    windows: tuple[tuple[Any, Any, bool], ...] = ()
    lower_closed: bool = False
    upper_open: bool = False
    #: the column holds dates or times as text the server compares as text (SQLite): the SQL
    #: condition only narrows to the days of the window, :meth:`track` applies it exactly
    text_times: bool = False
    #: the column holds text: compared code point by code point, as the saved position (the
    #: largest value Arrow saw) is, not in the column's collation (see :func:`_binary`)
    text: bool = False

    def condition(self, dialect: Dialect, ref: str | None = None) -> str | None:
        """The SQL condition of the window (None: no bound); ``ref`` is how the column is
        written in the query (default: its quoted name)."""
        col = self.compared(dialect, ref)
        if self.text_times:
            return self._days_condition(dialect, col)
        conds = []
        if self.lower is not None:
            op = ">=" if self.lower_closed else ">"
            conds.append(f"{col} {op} {literal(dialect, self.lower)}")
        if self.upper is not None:
            op = "<" if self.upper_open else "<="
            conds.append(f"{col} {op} {literal(dialect, self.upper)}")
        return " AND ".join(conds) or None

    def compared(self, dialect: Dialect, ref: str | None = None) -> str:
        """The column as the window compares it (``ref``: as the query writes it)."""
        col = ref or dialect.ident(self.column)
        return _binary(dialect, col) if self.text else col

    def _days_condition(self, dialect: Dialect, col: str) -> str | None:
        """The days of the window, for times kept as text: SQLite compares
        ``'2016-11-14 10:00:00.000000' > '2016-11-14 10:00:00'`` (what its own writer stores
        against the saved cursor) and ``'2016-11-14T09:00:00' > '2016-11-14 10:00:00'`` as
        text, so an exact bound re-read the last run's rows. Every form of a time starts with
        its day; a day either side covers an offset (``+08:00``) in the text."""
        conds = []
        for bound, op, days in ((self.lower, ">=", -1), (self.upper, "<", 2)):
            if bound is not None:
                t = _comparable(bound)
                if isinstance(t, date):  # datetime too
                    day = date(t.year, t.month, t.day) + timedelta(days=days)
                    conds.append(f"{col} {op} {literal(dialect, day.isoformat())}")
        return " AND ".join(conds) or None

    def _in_window(self, values: pa.Array) -> pa.Array:
        """Which of a batch's cursor values lie in the window (NULL: none of them)."""
        keep = pc.is_valid(values)
        t = values.type
        for bound, op in (
            (self.lower, pc.greater_equal if self.lower_closed else pc.greater),
            (self.upper, pc.less if self.upper_open else pc.less_equal),
        ):
            if bound is None:
                continue
            v = _comparable(bound)
            if pa.types.is_date(t) and isinstance(v, datetime):
                if v.time() != time(0):  # a day compares as its midnight
                    op = pc.greater if op is pc.greater_equal else op
                    op = pc.less_equal if op is pc.less else op
                v = v.date()
            keep = pc.and_kleene(keep, op(values, pa.scalar(v, t)))
        return pc.fill_null(keep, False)

    def capped(self, top: Any) -> Cursor:
        """This cursor bounded above by ``top``, the largest value the source held when the run
        planned its key-range splits. Splits read at different moments; without a common upper
        bound a row changed between two splits' reads (a value below what a later split read)
        was skipped for good, the next run starting after the largest value any split saw."""
        if top is None or self.upper is not None:
            return self
        return replace(self, upper=jsonable(top), upper_open=False)

    def top_sql(self, dialect: Dialect, select: str) -> str:
        """The query of the largest cursor value that ``select`` (which reads the column) gives."""
        return f"SELECT max({self.compared(dialect)}) FROM ({select}) AS tidesync_top"

    def position(self, value: Any) -> dict[str, Any]:
        pos = {"source": self.source, "column": self.column, "value": value}
        if self.windows:
            pos["windows"] = [list(w) for w in self.windows]
        return pos

    def output_schema(self, schema: pa.Schema) -> pa.Schema:
        """What the reader gives: ``schema`` without the column when it was read only for us."""
        if self.drop and self.column in schema.names:
            return schema.remove(schema.get_field_index(self.column))
        return schema

    def track(self, items: Iterable[pa.RecordBatch | Chunk]) -> Iterator[Chunk]:
        """Pass a split's batches on, each as a Chunk carrying the split's position (the largest
        cursor value read so far); the column is dropped when it was read only for the cursor.
        The split ends with a position even when it read nothing (then the lower bound)."""
        best: Any = None
        for item in items:
            chunk = item if isinstance(item, Chunk) else Chunk(item)
            batch = chunk.batch
            if self.text_times and batch is not None and self.column in batch.schema.names:
                batch = batch.filter(self._in_window(batch.column(self.column)))
            if batch is not None and batch.num_rows and self.column in batch.schema.names:
                m = pc.max(batch.column(self.column)).as_py()
                if m is not None and (best is None or _after(m, best)):
                    best = m
                if self.drop:
                    batch = batch.drop_columns([self.column])
            yield Chunk(batch, chunk.dirty, self.position(self._value(best)))
        yield Chunk(None, [], self.position(self._value(best)))

    def _value(self, best: Any) -> Any:
        v = None if best is None else jsonable(best)
        # a start no row reached stays the next run's included start
        for floor in (None if self.lower_closed else self.lower, self.top):
            if floor is not None and (v is None or not _after(v, floor)):
                v = floor
        return v


@dataclass(frozen=True)
class Incremental:
    """The ``incremental`` parameter, checked."""

    column: str
    start: Any = None
    end: Any = None

    @classmethod
    def from_params(cls, p: Params) -> Incremental | None:
        """Read ``incremental`` from a reader's parameters; problems are recorded on ``p``."""
        spec = p.obj("incremental", keys=_KEYS)
        if spec is None:
            return None
        column = spec.get("column")
        if not isinstance(column, str) or not column.strip():
            p.problem(
                "incremental.column",
                "is required: the column that grows with each change (e.g. optime)",
            )
            return None
        bounds = {}
        for k in ("start", "end"):
            v = spec.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, str | int | float)):
                p.problem(f"incremental.{k}", f"must be a value such as '2016-11-01', got {v!r}")
                v = None
            bounds[k] = v
        return cls(column.strip(), bounds["start"], bounds["end"])

    def column_of(self, known: Sequence[str], what: str) -> str:
        """The column of ``known`` (a table's or a query's columns) that ``column`` names,
        matched exactly, then ignoring case; ValueError saying so when there is none."""
        found = _find(self.column, list(known))
        if found is None:
            raise ValueError(
                f"column {self.column!r} not in {what}{did_you_mean(self.column, known)}"
            )
        return found

    def cursor(
        self,
        ctx: Context,
        source: str,
        column: str,
        *,
        drop: bool,
        temporal: bool,
        aware: bool = False,
        dates: bool = False,
        text: bool = False,
    ) -> Cursor:
        """The cursor of ``source`` for this run. The lower bound is the largest value the
        positions of the last committed run hold for this source and column (``start`` when
        none); the upper bound ``end``, else the cyctime when the column is ``temporal`` (the
        cyctime's day when it holds ``dates``: a day is read once it is over). The window is
        half-open (see :class:`Cursor`), and recorded under the instance's cyctime: a rerun of
        that instance reads it again.

        When the column holds instants (``aware``: a timestamp with a zone, MySQL's TIMESTAMP,
        PostgreSQL's timestamptz), a bound written as a wall time is one of the job's zone and
        becomes the instant it names, with its offset, whatever zone the session compares in.
        A ``start`` / ``end`` the zone's clock skips or shows twice is an error; the cyctime is
        the instant the scheduler gives it (its first occurrence)."""
        other = ctx.other_rows()
        if other:
            raise ConfigError(f"{ctx.path('incremental')}: {other}")
        saved: list[Any] = []
        windows: dict[Any, tuple[Any, bool]] = {}  # instance -> (lower, closed) of committed runs
        for pos in ctx.stored_positions().values():
            if not (
                isinstance(pos, dict)
                and pos.get("source") == source
                and pos.get("column") == column
            ):
                continue
            if pos.get("value") is not None:
                saved.append(pos["value"])
            for w in pos.get("windows") or ():
                up, low, closed = w[0], w[1], bool(w[2]) if len(w) > 2 else False
                known = windows.get(up)
                if known is None or (
                    known[0] is not None and (low is None or _after(known[0], low))
                ):
                    windows[up] = (low, closed)  # split positions agree; else the widest
        lower, upper = self.start, self.end
        if temporal:
            lower = _time_bound(lower, ctx.path("incremental.start"))
            upper = _time_bound(upper, ctx.path("incremental.end"))
        if aware:
            lower = _instant(lower, ctx.timezone, ctx.path("incremental.start"))
            upper = _instant(upper, ctx.timezone, ctx.path("incremental.end"))
        top = None
        for v in saved:
            if top is None or _after(v, top):
                top = v
        closed = lower is not None  # a start: no run read it yet
        if top is not None and (lower is None or not _after(lower, top)):
            lower, closed = top, False
        if upper is None and temporal and ctx.cyctime is not None:
            upper = ctx.cyctime
            if dates and isinstance(upper, datetime):
                upper = upper.date()  # DATE 2016-11-15 is not over at 2016-11-15 00:30
            elif aware and isinstance(upper, datetime) and upper.tzinfo is None:
                # the scheduler's cyctime is a wall time of the node's schedule, whatever
                # the job's timezone: read in the job's, a node on Asia/Shanghai in a job
                # without one, on a UTC machine, read eight hours into the next bizdate
                zone = ctx.cyctime_zone or ctx.timezone
                upper = upper.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC)
        lower, upper = jsonable(lower), jsonable(upper)
        if upper is None:
            return Cursor(
                source, column, lower, None, drop, jsonable(top), lower_closed=closed, text=text
            )
        key = upper if ctx.cyctime is None else jsonable(ctx.cyctime)
        if key in windows:  # a rerun: the span its first run read, whatever was read since
            lower, closed = windows[key]
        else:
            _check_new_window(ctx, key, upper, top, windows)
            windows[key] = (lower, closed)
        kept = tuple(
            (u, low, c) for u, (low, c) in sorted(windows.items(), key=lambda w: _comparable(w[0]))
        )[-WINDOWS_KEPT:]
        return Cursor(
            source,
            column,
            lower,
            upper,
            drop,
            jsonable(top),
            kept,
            closed,
            upper_open=True,
            text=text,
        )


def _binary(dialect: Dialect, col: str) -> str:
    """A text column compared code point by code point. In its collation (MySQL's and
    MariaDB's default ``utf8mb4_general_ci``, PostgreSQL's ``en_US``) 'B' comes after 'a', while
    the saved position, the largest value Arrow read, is 'a': every run read 'B' again."""
    if dialect is MYSQL or dialect.name == MYSQL.name:
        return f"CONVERT({col} USING utf8mb4) COLLATE utf8mb4_bin"
    if dialect.name == "postgresql":
        return f'({col})::text COLLATE "C"'  # ::text: uuid, enum, inet take no collation
    if dialect.name == "sqlite":
        return f"{col} COLLATE BINARY"
    return col


#: how many windows (one per instance, by its cyctime) a cursor keeps for reruns
WINDOWS_KEPT = 500


def _check_new_window(
    ctx: Context, key: Any, upper: Any, top: Any, windows: dict[Any, Any]
) -> None:
    """A window no committed run read must come after them all: before one of them, or ending
    where the saved cursor already is, it would read nothing (or part of what the first run of
    its instance read) and replace that instance's output with it."""
    later = [u for u in windows if _after(u, key)]
    first = min(windows, key=_comparable) if windows else None
    if later and _after(first, key):
        why = f"its instance is older than those whose windows this job keeps (from {first!r})"
    elif later:
        why = f"later instances were read already (up to {max(later, key=_comparable)!r})"
    elif top is not None and not _after(upper, top):
        why = f"the saved cursor, {top!r}, is already past it (read by a run that kept no window)"
    else:
        return
    raise FatalError(
        f"{ctx.path('incremental')}: cannot read the window of cyctime {key!r} (before {upper!r}): "
        f"{why}; read "
        "now, it would hold none (or part) of the rows its first run read, and replace that "
        "run's output. Read that time with a `where` on the column instead, or `tidesync state "
        "reset` the job to read everything again"
    )


# A day and a time as people write them: 2016-11-5, 2016-11-05 9:00, 2016/11/05 09:00:00.5
_LOOSE_TIME = re.compile(
    r"([0-9]{4})[-/]([0-9]{1,2})[-/]([0-9]{1,2})"
    r"(?:[T ]+([0-9]{1,2}):([0-9]{1,2})(?::([0-9]{1,2})(?:\.([0-9]{1,6}))?)?)?"
)


def _time_bound(v: Any, where: str) -> Any:
    """A ``start`` / ``end`` of a column of dates or times, read as the time it names: ISO text
    (with its offset, if any) as it is, a short or compact form (``2016-11-5``,
    ``20161105``, ``${bizdate}``'s form) as that day and time. Left as written, such a bound
    compared as text with the saved cursor (``'2016-11-12 00:00:00' > '20161105'`` is false),
    so the cursor never moved past it and every run read everything since it again; and a
    bound of an instant column was not turned into the job zone's instant. Text that is no
    time is a ConfigError."""
    if v is None or isinstance(v, datetime | date):
        return v
    text = str(v).strip()
    if isinstance(v, float) or not text:
        raise ConfigError(f"{where}: {v!r} is not a time; the column holds dates or times")
    try:
        return (
            datetime.fromisoformat(text)
            if "-" in text and ":" in text
            else _date_or_time(parse_time_arg(text))
        )
    except ValueError:
        pass
    m = _LOOSE_TIME.fullmatch(text)
    if m:
        try:
            day = date(int(m[1]), int(m[2]), int(m[3]))
            if m[4] is None:
                return day
            frac = int((m[7] or "0").ljust(6, "0"))
            return datetime.combine(day, time(int(m[4]), int(m[5]), int(m[6] or 0), frac))
        except ValueError as e:
            raise ConfigError(f"{where}: {v!r} is not a valid time ({e})") from None
    raise ConfigError(
        f"{where}: {v!r} is not a time; the column holds dates or times: write "
        "'2016-11-05', '2016-11-05 09:00:00' or 20161105"
    )


def _date_or_time(t: datetime) -> date | datetime:
    """A parsed time argument: a day alone (midnight, no zone) as that date."""
    if t.tzinfo is None and t.time() == time(0):
        return t.date()
    return t


def _instant(v: Any, zone: str, where: str) -> Any:
    """A bound of an instant column: a wall time (text or naive datetime) as the instant the
    job's zone gives it, in UTC; numbers and times with an offset as they are."""
    if isinstance(v, str) and ("-" in v.strip()[1:] or ":" in v):
        try:
            v = datetime.fromisoformat(v.strip())
        except ValueError:
            return v  # not a time: the server says what is wrong with it
    elif isinstance(v, date) and not isinstance(v, datetime):
        v = datetime(v.year, v.month, v.day)
    if not isinstance(v, datetime):
        return v
    try:
        return local_instant(v, zone).astimezone(UTC)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None


def is_temporal(t: pa.DataType) -> bool:
    """Whether a window end in time bounds a column of this type."""
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


def is_aware(t: pa.DataType) -> bool:
    """Whether the column holds instants (a timestamp with a zone), not wall times."""
    return pa.types.is_timestamp(t) and t.tz is not None


def jsonable(v: Any) -> Any:
    """A cursor value as JSON keeps it: times as ISO text, decimals as text."""
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, date | time):
        return v.isoformat()
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def literal(dialect: Dialect, v: Any) -> str:
    """``v`` as an SQL literal of ``dialect``: numbers as they are, everything else quoted text
    (every SQL store compares a quoted time or number with its column's type)."""
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | float | Decimal):
        return str(v)
    text = str(jsonable(v))
    if dialect is MYSQL or dialect.name == MYSQL.name:
        text = _utc_wall(text).replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'"


def _utc_wall(text: str) -> str:
    """A time with an offset as UTC wall time: MySQL reads no offset in a literal (MariaDB
    drops it with a warning) and our sessions compare in UTC (``time_zone = '+00:00'``)."""
    if ("+" in text or text.endswith("Z")) and ":" in text:
        try:
            t = datetime.fromisoformat(text)
        except ValueError:
            return text
        if t.tzinfo is not None:
            return jsonable(t.astimezone(UTC).replace(tzinfo=None))
    return text


def _after(a: Any, b: Any) -> bool:
    """``a > b`` for cursor values, times given as ISO text compared as times."""
    a, b = _comparable(a), _comparable(b)
    try:
        return bool(a > b)
    except TypeError:
        return str(a) > str(b)


def _comparable(v: Any) -> Any:
    if isinstance(v, str):
        text = v.strip()
        if "-" in text[1:] or ":" in text:
            try:
                v = datetime.fromisoformat(text)
            except ValueError:
                return text
        else:
            try:
                return Decimal(text)
            except ArithmeticError:
                return text
    if isinstance(v, date) and not isinstance(v, datetime):
        return datetime(v.year, v.month, v.day)
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.replace(tzinfo=None) - v.utcoffset()  # type: ignore[operator]
    return v
