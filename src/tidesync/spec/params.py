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
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from fractions import Fraction
from typing import Any

from tidesync.errors import ConfigError

__all__ = [
    "RunTime",
    "evaluate",
    "substitute",
    "resolve_params",
    "parse_assignments",
    "substitute_tree",
]


# ---------------------------------------------------------------------------------------------
# Run time


_CYC_DIGITS = re.compile(r"(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?")
_CYC_EXPECTED = (
    "expected YYYYMMDDHHMMSS (or YYYYMMDDHHMM, YYYYMMDD, YYYY-MM-DD HH:MM:SS), e.g. 20251101103000"
)
_BIZ_EXPECTED = "expected YYYYMMDD (or YYYY-MM-DD), e.g. 20251031"


def _parse_cyctime(value: object) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=None, microsecond=0)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(f"cyctime: {value!r} is not a time; {_CYC_EXPECTED}")
    text = value.strip()
    try:
        m = _CYC_DIGITS.fullmatch(text)
        if m:
            fields = [int(g) for g in m.groups(default="0")]
            return datetime(*fields)  # type: ignore[arg-type]
        if "-" in text:
            return datetime.fromisoformat(text).replace(tzinfo=None, microsecond=0)
    except ValueError as exc:
        raise ConfigError(
            f"cyctime: {value!r} is not a valid time ({exc}); {_CYC_EXPECTED}"
        ) from None
    raise ConfigError(f"cyctime: {value!r} is not a time; {_CYC_EXPECTED}")


def _parse_bizdate(value: object) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigError(f"bizdate: {value!r} is not a date; {_BIZ_EXPECTED}")
    text = value.strip()
    try:
        if re.fullmatch(r"\d{8}", text):
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(
            f"bizdate: {value!r} is not a valid date ({exc}); {_BIZ_EXPECTED}"
        ) from None
    raise ConfigError(f"bizdate: {value!r} is not a date; {_BIZ_EXPECTED}")


@dataclass(frozen=True)
class RunTime:
    """The two times an instance runs for: every parameter is computed from them.

    ``cyctime`` is the scheduled time of the run, a naive wall-clock time in the schedule's
    time zone, to the second. ``bizdate`` is the business date, by default the day before the
    cyctime's day (a daily run at 00:30 on the 15th processes the 14th).

    Build one with :meth:`of`; constructing the dataclass directly does no checks.
    """

    cyctime: datetime
    bizdate: date

    @classmethod
    def of(
        cls, cyctime: datetime | str | None = None, bizdate: date | str | None = None
    ) -> RunTime:
        """Read a run time from what a user or the scheduler gives.

        ``cyctime``: a ``datetime`` (an aware one keeps its wall time and drops its zone;
        microseconds are dropped), or a string ``YYYYMMDDHHMMSS``, ``YYYYMMDDHHMM``,
        ``YYYYMMDD`` or ISO ``YYYY-MM-DD[ HH:MM[:SS]]``; ``None`` means now, to the second.
        ``bizdate``: a ``date`` or ``YYYYMMDD`` / ``YYYY-MM-DD``; ``None`` means the day
        before the cyctime's day. A string that does not read raises :class:`ConfigError`
        naming the value and the expected format.

        >>> RunTime.of("20161115000000")
        RunTime(cyctime=datetime.datetime(2016, 11, 15, 0, 0), bizdate=datetime.date(2016, 11, 14))
        >>> RunTime.of("202511011030", bizdate="20251020").bizdate
        datetime.date(2025, 10, 20)
        >>> RunTime.of("2025-13-01")
        Traceback (most recent call last):
        ...
        tidesync.errors.ConfigError: cyctime: '2025-13-01' is not a valid time (month must be in 1..12); expected YYYYMMDDHHMMSS (or YYYYMMDDHHMM, YYYYMMDD, YYYY-MM-DD HH:MM:SS), e.g. 20251101103000
        """
        cyc = datetime.now().replace(microsecond=0) if cyctime is None else _parse_cyctime(cyctime)
        biz = cyc.date() - timedelta(days=1) if bizdate is None else _parse_bizdate(bizdate)
        return cls(cyctime=cyc, bizdate=biz)

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
    return _format(expr.parts, t)


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
    problems: list[str] = []
    result: dict[str, str] = {}
    for written, item in _split_items(text, where, problems):
        name, eq, value = item.partition("=")
        if not eq:
            problems.append(
                f"{_at(where)}item {written!r} is not name=value; write e.g. "
                "filename=$[yyyymmddhh24mi]"
            )
        elif not _NAME.fullmatch(name):
            problems.append(
                f"{_at(where)}item {written!r}: {name!r} is not a parameter name; use letters, "
                "digits and '_', e.g. start_time=$[yyyymmddhh24miss]"
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
