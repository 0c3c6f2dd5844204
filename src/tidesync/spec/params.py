"""Scheduling parameters: the ``${...}`` / ``$[...]`` language of DataWorks and DataX job files.

Every instance of a node runs for one scheduled time, the *cyctime*, and one business date, the
*bizdate* (by default the day before the cyctime's day). Before a job runs, every string in its
file is expanded for that instance::

    ${yyyymmdd}            business date                       20161114
    ${yyyy-mm-dd-7}        business date, 7 days earlier       2016-11-07
    ${yyyymm-1}            business month, 1 month earlier     201610
    $[yyyymmddhh24mi]      scheduled time                      201611150000
    $[hh24miss-10/24/60]   scheduled time, 10 minutes earlier  235000
    $[add_months(yyyymmdd,-1)]  scheduled day, 1 month earlier 20161015
    $bizdate  $cyctime  $gmtdate  ${bdp.system.bizdate}  ${bdp.system.cyctime}
    ${filename}            a user parameter (``-p filename=$[yyyymmddhh24mi]``)
    ${env:NAME}            not a parameter: left as is, connections resolve it

The grammar, in full (``docs/parameters.md`` is the user's copy of it):

``${BODY}``
    1. ``BODY`` is a user parameter: its value. User parameters win over everything below.
    2. ``BODY`` is a built-in: ``bizdate`` (yyyymmdd), ``cyctime`` (yyyymmddhh24miss),
       ``gmtdate`` (the cyctime's day, yyyymmdd), ``bdp.system.bizdate``, ``bdp.system.cyctime``.
    3. ``BODY`` starts with ``env:``: the reference is left untouched.
    4. ``BODY`` is a date pattern formatted from the **business date**: tokens ``yyyy``, ``yy``,
       ``mm``, ``dd`` and any separators (``-``, ``/``, ``_``, ``.``, ``:``, space), with optional
       offsets. The offset unit follows the pattern, as in DataWorks: days when the pattern holds
       ``dd`` (``${yyyymmdd-7}``), else months when it holds ``mm`` (``${yyyymm-1}``), else
       years (``${yyyy-1}``). ``${add_months(yyyymmdd,-1)}`` moves the business date by months.
    5. Anything else is an error that names the reference.

``$[BODY]``
    A time pattern formatted from the **scheduled time**: tokens ``yyyy``, ``yy``, ``mm``
    (month), ``dd``, ``hh24`` (``hh`` is read as ``hh24`` too), ``mi`` (minute), ``ss`` and
    separators, then offsets in days, Oracle style: ``-1`` one day, ``-1/24`` one hour,
    ``-10/24/60`` ten minutes, ``+7*2`` two weeks; several terms add up (``-1-2/24``).
    ``add_months(PATTERN,N)`` moves the scheduled time by N months; a day past the end of
    the target month is clamped to its last day (2025-03-31 minus one month is 2025-02-28).

``$bizdate``, ``$cyctime``, ``$gmtdate``
    The three built-ins, bare, when the next character cannot continue a name. Every other
    ``$`` stays as written (SQL's ``$1``, ``$$``, ``$name``).

``$${`` and ``$$[``
    A literal ``${`` or ``$[`` (for a JSON path such as ``'$$[0]'``, written to mean ``'$[0]'``).

Expanded values are not expanded again, and tokens are lower case (``${YYYYMMDD}`` is an error
that suggests ``${yyyymmdd}``).

>>> rt = RunTime.of("20191106231500")
>>> substitute("ds=${yyyymmdd}/f_$[yyyymmddhh24mi].csv", rt)
'ds=20191105/f_201911062315.csv'
>>> substitute("where gmt >= '$[yyyy-mm-dd hh24:mi:ss-1/24]'", rt)
"where gmt >= '2019-11-06 22:15:00'"
"""

from __future__ import annotations

import calendar
import difflib
import functools
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

from tidesync.errors import ConfigError

__all__ = [
    "RunTime",
    "parse_time_arg",
    "local_instant",
    "parse_date_arg",
    "parse_datax_properties",
    "evaluate",
    "substitute",
    "resolve_params",
    "parse_assignments",
    "substitute_tree",
]


# ---------------------------------------------------------------------------------------------
# Run time


#: The forms a time argument (``--cyctime``, ``--at``, ``--since``) may take, for messages.
TIME_FORMS = (
    "YYYYMMDD, YYYYMMDDHH, YYYYMMDDHHMM, YYYYMMDDHHMMSS, YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] "
    "or YYYY-MM-DDTHH:MM[:SS], the last two optionally with a zone offset (Z, +08:00); "
    "e.g. 20161115231500 or 2016-11-15T23:15:00+08:00"
)
#: The forms a date argument (``--bizdate``, ``--from``, ``--to``) may take, for messages.
DATE_FORMS = "YYYYMMDD or YYYY-MM-DD, e.g. 20161114 or 2016-11-14"

# By length only: strptime would read '20161115' as 2016-01-01 01:05 (it takes unpadded fields).
_DIGITS = re.compile(r"[0-9]{8}(?:[0-9]{2}){0,3}")
_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_ISO_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2}))?"
    r"\s*(Z|[+-][0-9]{2}(?::?[0-9]{2})?)?",
    re.IGNORECASE,
)


def _zone_offset(text: str) -> tzinfo:
    if text.upper() == "Z":
        return UTC
    digits = text[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"zone offset {text} is out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)


def _why_not(text: str) -> str:
    """A few words on what is wrong with a time or date argument, for its message."""
    if text.isascii() and text.isdigit():
        return f" ({len(text)} digits)"
    return ""


def _hms(h: str, mi: str, s: str) -> tuple[int, int, int]:
    return int(h), int(mi), int(s)


def parse_time_arg(value: object) -> datetime:
    """Read a time argument as users type it: by its length, never by guessing.

    ``20161115`` (that day at 00:00), ``2016111523``, ``201611152315``, ``20161115231500``,
    ``2016-11-15``, ``2016-11-15 23:15``, ``2016-11-15T23:15:00``; the ISO forms with a time may
    end with a zone offset (``Z``, ``+08:00``, ``+0800``, ``+08``), and then the result is aware.
    Seconds are the finest unit. Anything else raises :class:`ValueError` saying what is wrong
    and listing the accepted forms (the message has no ``cyctime:`` prefix: callers add theirs).

    >>> parse_time_arg("201911062315")
    datetime.datetime(2019, 11, 6, 23, 15)
    >>> parse_time_arg("2016-11-15T23:15:00Z")
    datetime.datetime(2016, 11, 15, 23, 15, tzinfo=datetime.timezone.utc)
    >>> parse_time_arg("2016111")
    Traceback (most recent call last):
    ...
    ValueError: '2016111' is not a time (7 digits); accepted: YYYYMMDD, YYYYMMDDHH, YYYYMMDDHHMM, YYYYMMDDHHMMSS, YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or YYYY-MM-DDTHH:MM[:SS], the last two optionally with a zone offset (Z, +08:00); e.g. 20161115231500 or 2016-11-15T23:15:00+08:00
    """
    if isinstance(value, datetime):
        return value.replace(microsecond=0)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time; accepted: {TIME_FORMS}")
    text = value.strip()
    try:
        if _DIGITS.fullmatch(text):
            t = text.ljust(14, "0")
            return datetime(int(t[:4]), int(t[4:6]), int(t[6:8]), *_hms(t[8:10], t[10:12], t[12:]))
        m = _ISO_DATE.fullmatch(text)
        if m:
            return datetime(int(m[1]), int(m[2]), int(m[3]))
        m = _ISO_TIME.fullmatch(text)
        if m:
            zone = _zone_offset(m[7]) if m[7] else None
            day = datetime(int(m[1]), int(m[2]), int(m[3]))
            return datetime.combine(day, time(*_hms(m[4], m[5], m[6] or "0")), zone)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid time ({exc}); accepted: {TIME_FORMS}") from None
    raise ValueError(f"{value!r} is not a time{_why_not(text)}; accepted: {TIME_FORMS}")


def local_instant(wall: datetime, zone: str | tzinfo) -> datetime:
    """The one instant a naive wall time of ``zone`` names; an aware ``wall`` is kept as it is.

    A wall time that a daylight-saving change skips or repeats names no instant or two, and
    a window bound or a point in time read from it would be a guess: :class:`ValueError` says
    which instants are in question and how to give the bound without the doubt.

    >>> local_instant(datetime(2026, 7, 1, 12), "Europe/Berlin").isoformat()
    '2026-07-01T12:00:00+02:00'
    >>> local_instant(datetime(2026, 10, 25, 2, 30), "Europe/Berlin")
    Traceback (most recent call last):
    ...
    ValueError: 2026-10-25 02:30:00 is ambiguous in Europe/Berlin: the clock shows it twice (at +02:00 and at +01:00); give the time with its offset (2026-10-25T02:30:00+02:00) or set the job's time zone to one without daylight saving, such as UTC
    """
    if wall.tzinfo is not None:
        return wall
    tz = ZoneInfo(zone) if isinstance(zone, str) else zone
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    off0, off1 = first.utcoffset(), second.utcoffset()
    if off0 == off1:
        return first
    name = str(zone)
    shown = wall.isoformat(sep=" ")
    fix = "or set the job's time zone to one without daylight saving, such as UTC"
    if first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall:
        raise ValueError(
            f"{shown} is ambiguous in {name}: the clock shows it twice (at {_offset(off0)} and at "
            f"{_offset(off1)}); give the time with its offset ({wall.isoformat()}{_offset(off0)}) "
            + fix
        )
    raise ValueError(
        f"{shown} does not exist in {name}: the clock skips it (moving from {_offset(off0)} to "
        f"{_offset(off1)}); give a time the clock shows, or one with its offset, " + fix
    )


def _offset(delta: timedelta | None) -> str:
    minutes = int((delta or timedelta()).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def parse_date_arg(value: object) -> date:
    """Read a date argument: ``YYYYMMDD`` or ``YYYY-MM-DD``, nothing else (a business date has
    no time of day). Raises :class:`ValueError` saying what is wrong and the accepted forms.

    >>> parse_date_arg("2016-11-14")
    datetime.date(2016, 11, 14)
    >>> parse_date_arg("2016111")
    Traceback (most recent call last):
    ...
    ValueError: '2016111' is not a date (7 digits); accepted: YYYYMMDD or YYYY-MM-DD, e.g. 20161114 or 2016-11-14
    """
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a date; accepted: {DATE_FORMS}")
    text = value.strip()
    try:
        if len(text) == 8 and _DIGITS.fullmatch(text):
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        m = _ISO_DATE.fullmatch(text)
        if m:
            return date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid date ({exc}); accepted: {DATE_FORMS}") from None
    why = _why_not(text)
    if len(text) > 8 and (_DIGITS.fullmatch(text) or _ISO_TIME.fullmatch(text)):
        why = " (it has a time of day; a business date is a day)"
    raise ValueError(f"{value!r} is not a date{why}; accepted: {DATE_FORMS}")


@dataclass(frozen=True)
class RunTime:
    """The two times an instance runs for: every parameter is computed from them.

    ``cyctime`` is the scheduled time of the run, a naive wall-clock time in the schedule's
    time zone, to the second. ``bizdate`` is the business date, the day before the cyctime's
    day (a daily run at 00:30 on the 15th processes the 14th) unless forced otherwise.

    Build one with :meth:`of`; constructing the dataclass directly does no checks.
    """

    cyctime: datetime
    bizdate: date
    #: the IANA zone the cyctime is a wall time of (the schedule's, the job's ``timezone``);
    #: None: unknown. A ``$[...]`` offset of hours or minutes never lands in a wall time it
    #: skips (see :func:`_eval_time`)
    zone: str | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(
        cls,
        cyctime: datetime | date | str | int | None = None,
        bizdate: date | str | int | None = None,
        *,
        tz: str | tzinfo | None = None,
        force: bool = False,
    ) -> RunTime:
        """Read a run time from what a user or the scheduler gives; the two move together.

        ``cyctime``: a ``datetime``, a ``date`` (its midnight), or a string in one of the forms
        of :func:`parse_time_arg` (``20161115``, ``201611152315``, ``2016-11-15T23:15:00+08:00``).
        ``bizdate``: a ``date`` or ``YYYYMMDD`` / ``YYYY-MM-DD``. ``tz`` is the zone the job's
        wall-clock times are in (an IANA name or a ``tzinfo``; ``None``: the machine's): a
        cyctime with a zone offset is converted to it, and "now" is read in it. As in DataWorks:

        - neither given: cyctime is now, to the second; bizdate is the day before its day;
        - only ``cyctime``: bizdate is the day before the cyctime's day;
        - only ``bizdate``: cyctime is the next day at 00:00:00 (a history run of that day);
        - both: bizdate must be the day before the cyctime's day, unless ``force``.

        A value that does not read, or two that disagree, raise :class:`ConfigError` naming
        the value and the accepted forms.

        >>> RunTime.of("20161115000000")
        RunTime(cyctime=datetime.datetime(2016, 11, 15, 0, 0), bizdate=datetime.date(2016, 11, 14))
        >>> RunTime.of(bizdate="20161114").cyctime
        datetime.datetime(2016, 11, 15, 0, 0)
        >>> RunTime.of("2016-11-15T00:30:00+08:00", tz="UTC").cyctime
        datetime.datetime(2016, 11, 14, 16, 30)
        >>> RunTime.of("2025-13-01")
        Traceback (most recent call last):
        ...
        tidesync.errors.ConfigError: cyctime: '2025-13-01' is not a valid time (month must be in 1..12); accepted: YYYYMMDD, YYYYMMDDHH, YYYYMMDDHHMM, YYYYMMDDHHMMSS, YYYY-MM-DD, YYYY-MM-DD HH:MM[:SS] or YYYY-MM-DDTHH:MM[:SS], the last two optionally with a zone offset (Z, +08:00); e.g. 20161115231500 or 2016-11-15T23:15:00+08:00
        """
        zone = ZoneInfo(tz) if isinstance(tz, str) else tz
        try:
            cyc = None if cyctime is None else parse_time_arg(cyctime)
        except ValueError as exc:
            raise ConfigError(f"cyctime: {exc}") from None
        try:
            biz = None if bizdate is None else parse_date_arg(bizdate)
        except ValueError as exc:
            raise ConfigError(f"bizdate: {exc}") from None
        if cyc is not None and cyc.tzinfo is not None:
            cyc = cyc.astimezone(zone).replace(tzinfo=None)
        try:
            if cyc is None and biz is not None:
                cyc = datetime.combine(biz + timedelta(days=1), datetime.min.time())
            if cyc is None:
                cyc = datetime.now(zone).replace(tzinfo=None, microsecond=0)
            day_before = cyc.date() - timedelta(days=1)
        except OverflowError:
            which, given = ("cyctime", cyctime) if cyctime is not None else ("bizdate", bizdate)
            raise ConfigError(f"{which}: {given!r} is out of range") from None
        if biz is None:
            biz = day_before
        elif cyctime is not None and biz != day_before and not force:
            raise ConfigError(
                f"bizdate {biz:%Y%m%d} and cyctime {cyc:%Y%m%d%H%M%S} disagree: the business "
                f"date of that cyctime is {day_before:%Y%m%d}, the day before its day. Give only "
                "one of them (the other follows), or force both (--force-times)"
            )
        name = tz if isinstance(tz, str) else getattr(tz, "key", None)
        return cls(cyctime=cyc, bizdate=biz, zone=name)

    @property
    def gmtdate(self) -> date:
        """The cyctime's day (DataWorks' ``$gmtdate``)."""
        return self.cyctime.date()


# ---------------------------------------------------------------------------------------------
# Expressions: parsing


class _BadExpr(Exception):
    """Why an expression body does not read; turned into a ConfigError by the caller."""


class _Unreadable(_BadExpr):
    """The body is not a pattern at all (a typo, or a JSON path such as ``$[0]``)."""


class _TimeOfDay(_BadExpr):
    """A ``${...}`` pattern asks for a time of day, which a business date does not have."""


# Longest first: yyyy before yy, hh24 before hh.
_TOKENS = (
    ("yyyy", "Y"),
    ("yy", "y"),
    ("mm", "m"),
    ("dd", "d"),
    ("hh24", "H"),
    ("hh", "H"),
    ("mi", "M"),
    ("ss", "S"),
)
_TIME_CODES = frozenset("HMS")
_OFFSET_START = re.compile(r"[+-]\s*\d")
_TERM = re.compile(r"\s*([+-])\s*(\d+)((?:\s*[*/]\s*\d+)*)\s*")
_FACTOR = re.compile(r"([*/])\s*(\d+)")
_ADD_MONTHS = re.compile(r"add_months\s*\((?P<pat>[^,()]*),(?P<n>[^,()]*)\)")
_MONTHS = re.compile(r"\s*([+-]?)\s*(\d+)((?:\s*\*\s*\d+)*)\s*")
_EXPECTED = (
    "expected tokens yyyy yy mm dd hh24 mi ss with separators, then offsets such as "
    "-1 (day), -1/24 (hour), -10/24/60 (minutes), or add_months(yyyymmdd,-1)"
)
_OFFSETS = "offsets are +N or -N days, -N/24 hours, -N/24/60 minutes, e.g. -10/24/60"


@dataclass(frozen=True)
class _Expr:
    parts: tuple[tuple[str, str], ...]  # ("tok", code) or ("lit", text)
    days: Fraction  # offset in days; hours and minutes are fractions of a day
    months: int  # from add_months(...)

    @property
    def codes(self) -> set[str]:
        return {v for k, v in self.parts if k == "tok"}


def _parse_pattern(text: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Split ``yyyy-mm-dd-7`` into tokens/literals and the offset text ``-7``."""
    parts: list[tuple[str, str]] = []
    i, n = 0, len(text)
    offset = ""
    while i < n:
        if text[i] in "+-" and _OFFSET_START.match(text, i):
            offset = text[i:]
            break
        for word, code in _TOKENS:
            if text.startswith(word, i):
                parts.append(("tok", code))
                i += len(word)
                break
        else:
            ch = text[i]
            if ch.isascii() and ch.isalnum():  # '年', '月' are separators like '-'
                raise _Unreadable(f"cannot read {text[i:]!r}; {_EXPECTED}")
            if parts and parts[-1][0] == "lit":
                parts[-1] = ("lit", parts[-1][1] + ch)
            else:
                parts.append(("lit", ch))
            i += 1
    if offset and parts and parts[-1][0] == "lit":  # 'yyyymmdd - 1': the space is not output
        stripped = parts[-1][1].rstrip()
        parts[-1:] = [("lit", stripped)] if stripped else []
    if not any(kind == "tok" for kind, _ in parts):
        raise _Unreadable(f"it has no date or time token; {_EXPECTED}")
    return tuple(parts), offset


def _parse_offset(text: str) -> Fraction:
    """``-10/24/60`` -> Fraction(-10, 1440) days; terms add up: ``-1-2/24``."""
    total = Fraction(0)
    i = 0
    while i < len(text):
        m = _TERM.match(text, i)
        if not m or m.end() == i:
            raise _BadExpr(f"bad offset {text.strip()!r}; {_OFFSETS}")
        value = Fraction(int(m[2]))
        for op, num in _FACTOR.findall(m[3]):
            if op == "*":
                value *= int(num)
            elif int(num) == 0:
                raise _BadExpr(f"bad offset {text.strip()!r}: division by zero")
            else:
                value /= int(num)
        total += -value if m[1] == "-" else value
        i = m.end()
    return total


@functools.lru_cache(maxsize=512)
def _parse(body: str) -> _Expr:
    """Parse the text between the brackets, or raise :class:`_BadExpr` saying why."""
    text = body.strip()
    if not text:
        raise _Unreadable(f"it is empty; {_EXPECTED}")
    if text.startswith("add_months"):
        m = _ADD_MONTHS.fullmatch(text)
        if not m:
            raise _BadExpr("expected add_months(PATTERN,N), e.g. add_months(yyyymmdd,-1)")
        parts, offset = _parse_pattern(m["pat"].strip())
        if offset:
            raise _BadExpr("put no offset inside add_months(...)")
        n = _MONTHS.fullmatch(m["n"])
        if not n:
            raise _BadExpr(f"bad month count {m['n'].strip()!r} in add_months; e.g. -1 or 12*2")
        months = int(n[2])
        for factor in re.findall(r"\d+", n[3]):
            months *= int(factor)
        return _Expr(parts, Fraction(0), -months if n[1] == "-" else months)
    parts, offset = _parse_pattern(text)
    return _Expr(parts, _parse_offset(offset) if offset else Fraction(0), 0)


# ---------------------------------------------------------------------------------------------
# Expressions: evaluation


def _add_months(t: datetime, months: int) -> datetime:
    """Move by whole months; a day past the target month's end becomes its last day."""
    years, month0 = divmod(t.month - 1 + months, 12)
    year = t.year + years
    if not 1 <= year <= 9999:
        raise _BadExpr("the result is out of range")
    month = month0 + 1
    return t.replace(year=year, month=month, day=min(t.day, calendar.monthrange(year, month)[1]))


def _format(parts: tuple[tuple[str, str], ...], t: datetime) -> str:
    values = {
        "Y": f"{t.year:04d}",
        "y": f"{t.year % 100:02d}",
        "m": f"{t.month:02d}",
        "d": f"{t.day:02d}",
        "H": f"{t.hour:02d}",
        "M": f"{t.minute:02d}",
        "S": f"{t.second:02d}",
    }
    return "".join(values[v] if kind == "tok" else v for kind, v in parts)


def _eval_time(body: str, rt: RunTime) -> str:
    """``$[body]``: format the scheduled time, moved by the offsets."""
    expr = _parse(body)
    t = rt.cyctime
    if expr.months:
        t = _add_months(t, expr.months)
    if expr.days:
        seconds = expr.days * 86400
        if seconds.denominator != 1:
            raise _BadExpr(f"the offset is not a whole number of seconds; {_OFFSETS}")
        try:
            t = t + timedelta(seconds=int(seconds))
        except OverflowError:
            raise _BadExpr("the result is out of range") from None
        if expr.days.denominator != 1 and rt.zone:
            t = _existing_wall(t, rt.zone, rt.cyctime)
    return _format(expr.parts, t)


def _existing_wall(t: datetime, zone: str, cyctime: datetime) -> datetime:
    """``t``, an offset from the cyctime, out of a wall time the zone's clock skips: where the
    scheduler puts a slot of that time, forward by the gap (02:00 on the night Berlin goes
    02:00 -> 03:00 is 03:00, the instance of a 2-hourly node's skipped 02:00), unless that is
    this instance's own time or later: it covers the skipped time itself, so back by the gap
    (the 03:00 instance of an hourly node, into which the skipped 02:00 merged, reads
    ``$[hh24-1/24]`` = 01:00 to 03:00). Before, the window of that 03:00 instance began at
    02:00 and the rows stamped 01:00 to 02:00 were never read. Times that exist, and those
    shown twice, are kept: wall-clock arithmetic is right for them."""
    try:
        z = ZoneInfo(zone)
    except (ValueError, KeyError, OSError):
        return t
    forward = t.replace(tzinfo=z, fold=0).astimezone(UTC).astimezone(z).replace(tzinfo=None)
    if forward == t.replace(fold=0):
        return t  # it exists
    if t < cyctime <= forward:
        return t.replace(tzinfo=z, fold=1).astimezone(UTC).astimezone(z).replace(tzinfo=None)
    return forward


def _eval_date(body: str, rt: RunTime) -> str:
    """``${body}`` as a date pattern: format the business date, moved in the pattern's unit."""
    expr = _parse(body)
    codes = expr.codes
    if codes & _TIME_CODES:
        raise _TimeOfDay(f"for the scheduled time write '$[{body.strip()}]'")
    t = datetime(rt.bizdate.year, rt.bizdate.month, rt.bizdate.day)
    months = expr.months
    if expr.days:
        if expr.days.denominator != 1:
            raise _TimeOfDay(
                "offsets of ${...} are whole days, months or years; for hours and minutes use $[...]"
            )
        steps = int(expr.days)
        if "d" in codes:
            try:
                t = t + timedelta(days=steps)
            except OverflowError:
                raise _BadExpr("the result is out of range") from None
        else:
            months += steps if "m" in codes else 12 * steps
    if months:
        t = _add_months(t, months)
    return _format(expr.parts, t)


# ---------------------------------------------------------------------------------------------
# Substitution


_BUILTINS = ("bizdate", "cyctime", "gmtdate", "bdp.system.bizdate", "bdp.system.cyctime")
_BARE = re.compile(r"(bizdate|cyctime|gmtdate)(?![A-Za-z0-9_])")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*")
_COMMON_PATTERNS = ("yyyymmdd", "yyyy-mm-dd", "yyyymm", "yyyy-mm", "yyyy", "mm", "dd")


_YMD = (("tok", "Y"), ("tok", "m"), ("tok", "d"))
_YMDHMS = (*_YMD, ("tok", "H"), ("tok", "M"), ("tok", "S"))


def _builtin(name: str, rt: RunTime) -> str:
    if name.endswith("bizdate"):
        return _format(_YMD, datetime.combine(rt.bizdate, datetime.min.time()))
    if name.endswith("cyctime"):
        return _format(_YMDHMS, rt.cyctime)
    return _format(_YMD, rt.cyctime)


def _at(where: str) -> str:
    return f"{where}: " if where else ""


def _brace(
    body: str,
    rt: RunTime,
    params: Mapping[str, str],
    where: str,
    pending: Collection[str],
) -> str:
    """Resolve ``${body}``; raise ConfigError (one problem) when it does not resolve."""
    name = body.strip()
    if name in params:
        return params[name]
    if name in _BUILTINS:
        return _builtin(name, rt)
    ref = f"${{{name}}}"
    try:
        return _eval_date(name, rt)
    except _TimeOfDay as exc:
        raise ConfigError(
            f"{_at(where)}'{ref}' formats the business date, which has no time of day: {exc}"
        ) from None
    except _Unreadable as exc:
        reason = str(exc)
    except _BadExpr as exc:
        raise ConfigError(f"{_at(where)}bad date pattern '{ref}': {exc}") from None
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{_at(where)}'{ref}' is neither a parameter nor a date pattern: {reason}"
        )
    if name in pending:
        raise ConfigError(
            f"{_at(where)}parameter '{ref}' is used before it is set: a parameter may use "
            "built-ins and the parameters set before it; move it earlier"
        )
    try:
        _eval_date(name.lower(), rt)
        hint = f"; did you mean '${{{name.lower()}}}'? (date tokens are lower case)"
    except _BadExpr:
        close = difflib.get_close_matches(name, [*params, *_BUILTINS, *_COMMON_PATTERNS], 1, 0.6)
        hint = f"; did you mean '${{{close[0]}}}'?" if close else ""
    raise ConfigError(
        f"{_at(where)}unknown parameter '{ref}'; set it on the node or pass it with "
        f"-p {name}=VALUE{hint}"
    )


def _expand(
    text: str,
    rt: RunTime,
    params: Mapping[str, str],
    where: str,
    problems: list[str],
    pending: Collection[str] = (),
) -> str:
    """Expand every reference in ``text``; append a line to ``problems`` for each that fails
    (and keep its text), so that one pass reports them all."""
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        j = text.find("$", i)
        if j < 0:
            out.append(text[i:])
            break
        out.append(text[i:j])
        nxt = text[j + 1 : j + 2]
        if nxt == "$" and text[j + 2 : j + 3] in ("{", "["):  # $${ and $$[ escape ${ and $[
            out.append("$" + text[j + 2])
            i = j + 3
        elif nxt in ("{", "["):
            close = "}" if nxt == "{" else "]"
            k = text.find(close, j + 2)
            if k < 0:
                problems.append(
                    f"{_at(where)}'${nxt}' at position {j} is not closed: add '{close}' "
                    f"(for a literal '${nxt}', write '$${nxt}')"
                )
                out.append(text[j:])
                break
            body = text[j + 2 : k]
            try:
                if nxt == "[":
                    try:
                        out.append(_eval_time(body, rt))
                    except _BadExpr as exc:
                        literal = " (for a literal '$[', write '$$[')"
                        raise ConfigError(
                            f"{_at(where)}bad time expression '$[{body}]': {exc}"
                            + (literal if isinstance(exc, _Unreadable) else "")
                        ) from None
                elif body.startswith("env:"):
                    out.append(text[j : k + 1])
                else:
                    out.append(_brace(body, rt, params, where, pending))
            except ConfigError as exc:
                problems.extend(exc.problems)
                out.append(text[j : k + 1])
            i = k + 1
        else:
            m = _BARE.match(text, j + 1)
            if m:
                name = m[1]
                out.append(params[name] if name in params else _builtin(name, rt))
                i = m.end()
            else:
                out.append("$")
                i = j + 1
    return "".join(out)


def substitute(
    text: str, rt: RunTime, params: dict[str, str] | None = None, *, where: str = ""
) -> str:
    """Replace every parameter reference in ``text`` for the run time ``rt``.

    ``params`` are user parameters, already resolved (see :func:`resolve_params`); their values
    are inserted as they are, not expanded again, and a user parameter wins over a built-in or
    a date pattern of the same name. ``where`` is the key path of ``text`` in its file
    (``job.content[0].reader.parameter.where``): every message starts with it.

    Raises :class:`ConfigError` listing every reference that does not resolve: an unknown
    ``${name}``, a bad pattern or offset, an unclosed ``${`` or ``$[``.

    >>> rt = RunTime.of("20250331000000")
    >>> substitute("${yyyymmdd} ${yyyymm-1} $[add_months(yyyymmdd,-1)] $[hh24miss-10/24/60]", rt)
    '20250330 202502 20250228 235000'
    >>> substitute("/data/${filename}.csv", rt, {"filename": "202503310000"})
    '/data/202503310000.csv'
    >>> substitute("select $1, '${env:TOKEN}', $$x$$ from t where ds = $bizdate", rt)
    "select $1, '${env:TOKEN}', $$x$$ from t where ds = 20250330"
    >>> substitute("${filname}", rt, {"filename": "x"}, where="job.path")
    Traceback (most recent call last):
    ...
    tidesync.errors.ConfigError: job.path: unknown parameter '${filname}'; set it on the node or pass it with -p filname=VALUE; did you mean '${filename}'?
    """
    problems: list[str] = []
    result = _expand(text, rt, params or {}, where, problems)
    if problems:
        raise ConfigError(problems)
    return result


def evaluate(expr: str, rt: RunTime) -> str:
    """Evaluate an expression (``$[yyyymmdd-1]``) or a whole string holding several, with no
    user parameters: what ``tidesync params EXPR`` prints. Same rules as :func:`substitute`.

    >>> rt = RunTime.of("20251101103000")
    >>> evaluate("$[yyyymmddhh24miss-10/24/60]", rt)
    '20251101102000'
    >>> evaluate("${yyyy-mm-dd} $cyctime", rt)
    '2025-10-31 20251101103000'
    """
    return substitute(expr, rt)


def resolve_params(raw: dict[str, str], rt: RunTime, *, where: str = "params") -> dict[str, str]:
    """Resolve user parameters whose values are expressions, in order.

    Each value is expanded with :func:`substitute`; it may use the built-ins, date patterns
    and the parameters set **before** it (not after: there are no cycles). Non-string values
    (a YAML ``1``) are taken as their ``str``. Every problem is reported at once, each under
    ``<where>.<name>``.

    >>> rt = RunTime.of("20251101103000")
    >>> resolve_params({"start": "$[yyyymmddhh24miss-10/24/60]", "path": "ds=${bizdate}/${start}"}, rt)
    {'start': '20251101102000', 'path': 'ds=20251031/20251101102000'}
    """
    problems: list[str] = []
    resolved: dict[str, str] = {}
    names = list(raw)
    for index, (name, value) in enumerate(raw.items()):
        key = f"{where}.{name}" if where else str(name)
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            problems.append(
                f"{key}: {name!r} is not a parameter name; use letters, digits and '_', "
                "e.g. start_time"
            )
            continue
        text = value if isinstance(value, str) else "" if value is None else str(value)
        resolved[name] = _expand(text, rt, resolved, key, problems, pending=names[index:])
    if problems:
        raise ConfigError(problems)
    return resolved


def _split_items(text: str, where: str, problems: list[str]) -> list[tuple[str, str]]:
    """Split on white space outside quotes and outside ``${...}`` / ``$[...]``; quotes are
    removed. Returns (item as written, item as read)."""
    items: list[tuple[str, str]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, buf = i, []
        while i < n and not text[i].isspace():
            ch = text[i]
            if ch in "'\"":
                k = text.find(ch, i + 1)
                if k < 0:
                    problems.append(f"{_at(where)}quote {ch} at position {i} is not closed")
                    return items
                buf.append(text[i + 1 : k])
                i = k + 1
            elif ch == "$" and text[i + 1 : i + 2] in ("{", "["):
                k = text.find("}" if text[i + 1] == "{" else "]", i + 2)
                end = k + 1 if k >= 0 else i + 2  # unclosed: substitute() reports it later
                buf.append(text[i:end])
                i = end
            else:
                buf.append(ch)
                i += 1
        items.append((text[start:i], "".join(buf)))
    return items


def parse_assignments(text: str, *, where: str = "parameters") -> dict[str, str]:
    """Read a node's parameter list, ``name=value`` items separated by white space, as
    DataWorks nodes write them. Values are kept as written (expand them with
    :func:`resolve_params`). A value may hold spaces inside ``$[...]`` / ``${...}`` or inside
    quotes (``'...'``, ``"..."``, which are removed).

    Raises :class:`ConfigError` for an item without ``=``, a bad name, a name set twice, or an
    unclosed quote.

    >>> parse_assignments("filename=$[yyyymmddhh24mi] start_time=$[yyyymmddhh24miss-10/24/60]")
    {'filename': '$[yyyymmddhh24mi]', 'start_time': '$[yyyymmddhh24miss-10/24/60]'}
    >>> parse_assignments("ts=$[yyyy-mm-dd hh24:mi:ss] label='a b'")
    {'ts': '$[yyyy-mm-dd hh24:mi:ss]', 'label': 'a b'}
    """
    return _read_items(text, where, "", "filename=$[yyyymmddhh24mi]")


def parse_datax_properties(text: str, *, where: str = "-p") -> dict[str, str]:
    """Read DataX's ``-p`` form, ``-Dname=value`` items separated by white space, as DataX
    users paste it (``datax.py job.json -p "-Dbizdate=20161115 -Dname=x"``). Same rules as
    :func:`parse_assignments`, and every item must start with ``-D``.

    >>> parse_datax_properties("-Dbizdate=20161115 -Dname='a b'")
    {'bizdate': '20161115', 'name': 'a b'}
    """
    return _read_items(text, where, "-D", "-Dbizdate=20161115")


def _read_items(text: str, where: str, prefix: str, example: str) -> dict[str, str]:
    problems: list[str] = []
    result: dict[str, str] = {}
    for written, item in _split_items(text, where, problems):
        if not item.startswith(prefix):
            problems.append(
                f"{_at(where)}item {written!r} does not start with {prefix}; write e.g. {example}"
            )
            continue
        name, eq, value = item[len(prefix) :].partition("=")
        if not eq:
            problems.append(
                f"{_at(where)}item {written!r} is not {prefix}name=value; write e.g. {example}"
            )
        elif not _NAME.fullmatch(name):
            problems.append(
                f"{_at(where)}item {written!r}: {name!r} is not a parameter name; use letters, "
                f"digits and '_', e.g. {example}"
            )
        elif name in result:
            problems.append(f"{_at(where)}parameter {name!r} is set twice; keep one")
        else:
            result[name] = value
    if problems:
        raise ConfigError(problems)
    return result


def substitute_tree(
    obj: Any, rt: RunTime, params: dict[str, str] | None = None, *, path: str = ""
) -> Any:
    """Return a copy of ``obj`` (dicts, lists, tuples, scalars) with every string **value**
    substituted; keys and non-strings are kept. Problems are collected across the whole tree
    and raised as one :class:`ConfigError`, each under its key path
    (``job.content[0].reader.parameter.path[1]``); ``path`` is the prefix for ``obj`` itself.

    >>> rt = RunTime.of("20161115000000")
    >>> substitute_tree({"job": {"path": ["/in/${yyyymmdd}", "/x"], "speed": 2}}, rt)
    {'job': {'path': ['/in/20161114', '/x'], 'speed': 2}}
    >>> substitute_tree({"a": ["${x}", "${y}"]}, rt)
    Traceback (most recent call last):
    ...
    tidesync.errors.ConfigError: a[0]: unknown parameter '${x}'; set it on the node or pass it with -p x=VALUE
    a[1]: unknown parameter '${y}'; set it on the node or pass it with -p y=VALUE
    """
    problems: list[str] = []
    result = _walk(obj, rt, params or {}, path, problems)
    if problems:
        raise ConfigError(problems)
    return result


def _walk(obj: Any, rt: RunTime, params: Mapping[str, str], path: str, problems: list[str]) -> Any:
    if isinstance(obj, str):
        return _expand(obj, rt, params, path, problems)
    if isinstance(obj, Mapping):
        return {
            k: _walk(v, rt, params, f"{path}.{k}" if path else str(k), problems)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        items = [_walk(v, rt, params, f"{path}[{i}]", problems) for i, v in enumerate(obj)]
        return items if isinstance(obj, list) else tuple(items)
    return obj
