"""tidesync's own transformers: they name columns, not positions.

- ``rename``: ``{"columns": {"old": "new"}}``
- ``select``: ``{"columns": ["b", "a"]}`` keeps these columns, in this order
- ``cast``: ``{"columns": {"age": "long", "ts": {"type": "timestamp", "format": "yyyy-MM-dd"}}}``
- ``regex_replace``: ``{"column": "name", "pattern": " +", "replacement": " "}``
- ``timezone``: ``{"columns": ["ts"], "from": "Asia/Shanghai", "to": "UTC", "keepZone": false}``

A column named here but absent from a batch is a ConfigError naming the key path and the columns
the batch has. ``cast`` is the one that meets bad rows: a value that cannot be converted raises
DirtyRecordError, so the engine keeps that row (alone) as a dirty record and the others go on.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors.file.columns import no_rolled_days
from tidesync.connectors.sql.writer import wall_times_as_instants
from tidesync.errors import ConfigError, DirtyRecordError, did_you_mean
from tidesync.plugin import Context
from tidesync.transforms.base import Transform

__all__ = ["Rename", "Select", "Cast", "RegexReplace", "TimeZone"]


def _index(schema: pa.Schema, name: str, where: str) -> int:
    """Position of column ``name``, or a ConfigError naming ``where`` and the columns there are."""
    i = schema.get_field_index(name)
    if i < 0:
        have = ", ".join(repr(n) for n in schema.names) or "none"
        raise ConfigError(
            f"{where}: no column {name!r} in the batch{did_you_mean(name, schema.names)}; "
            f"its columns are {have}"
        )
    return i


def _names(p: Any, key: str) -> list[str]:
    """A required, non-empty list of distinct column names."""
    raw = p.list(key, required=True)
    if raw is None:
        return []
    if not raw:
        p.problem(key, "must name at least one column")
    names: list[str] = []
    for i, n in enumerate(raw):
        if not isinstance(n, str) or not n:
            p.problem(f"{key}[{i}]", f"must be a column name, got {n!r}")
        elif n in names:
            p.problem(f"{key}[{i}]", f"column {n!r} is named twice")
        else:
            names.append(n)
    return names


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Rename(Transform):
    """``{"columns": {"old": "new", ...}}``: rename columns; order and data are unchanged."""

    name = "rename"
    summary = "rename columns"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        before = len(self.p.problems)
        raw = self.p.obj("columns")
        if raw is None and len(self.p.problems) == before:
            self.p.problem("columns", 'is required: {"old name": "new name", ...}')
        self.mapping: dict[str, str] = {}
        for old, new in (raw or {}).items():
            if not isinstance(new, str) or not new:
                self.p.problem(
                    f"columns.{old}", f"the new name must be a non-empty string, got {new!r}"
                )
            elif new in self.mapping.values():
                self.p.problem(f"columns.{old}", f"two columns would be named {new!r}")
            else:
                self.mapping[old] = new
        if raw == {}:
            self.p.problem("columns", "must rename at least one column")
        self.p.done()

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        names = self._renamed(schema)
        return pa.schema(
            [f.with_name(n) for f, n in zip(schema, names, strict=True)], schema.metadata
        )

    def _renamed(self, schema: pa.Schema) -> list[str]:
        for old in self.mapping:
            _index(schema, old, self.ctx.path(f"columns.{old}"))
        names = [self.mapping.get(n, n) for n in schema.names]
        for old, new in self.mapping.items():
            if names.count(new) > 1:
                raise ConfigError(
                    f"{self.ctx.path(f'columns.{old}')}: the batch already has a column {new!r}; "
                    f"rename or drop that one too"
                )
        return names

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.rename_columns(self._renamed(batch.schema))


class Select(Transform):
    """``{"columns": ["a", "b"]}``: keep these columns, in this order; drop the others."""

    name = "select"
    summary = "keep and order columns"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.columns = _names(self.p, "columns")
        self.p.done()

    def _indices(self, schema: pa.Schema) -> list[int]:
        return [
            _index(schema, n, self.ctx.path(f"columns[{i}]")) for i, n in enumerate(self.columns)
        ]

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        return pa.schema([schema.field(i) for i in self._indices(schema)], schema.metadata)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        return batch.select(self._indices(batch.schema))


# -- cast ---------------------------------------------------------------------------------------

#: type names users write -> the kind they mean
_KINDS = {
    "string": "string", "varchar": "string", "text": "string",
    "long": "long", "bigint": "long", "int": "long", "integer": "long",
    "double": "double", "float": "double",
    "boolean": "boolean", "bool": "boolean",
    "decimal": "decimal", "numeric": "decimal",
    "date": "date",
    "timestamp": "timestamp", "datetime": "timestamp",
    "bytes": "bytes", "binary": "bytes",
}  # fmt: skip
_DECIMAL = re.compile(r"(decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", re.I)

#: Java date pattern letters (as DataX writes formats) -> strftime/strptime
_JAVA = {
    "yyyy": "%Y", "yy": "%y", "MMMM": "%B", "MMM": "%b", "MM": "%m", "M": "%m",
    "dd": "%d", "d": "%d", "HH": "%H", "H": "%H", "hh": "%I", "h": "%I",
    "mm": "%M", "m": "%M", "ss": "%S", "s": "%S", "a": "%p",
    "EEEE": "%A", "EEE": "%a", "Z": "%z", "XX": "%z",
}  # fmt: skip


#: Java's one-letter fields print without a leading zero ("M" of January is "1"): strftime has
#: no such directive, so the printed field is marked and its zero cut (:func:`unpad`)
_UNPADDED = {"M", "d", "H", "h", "m", "s"}
_MARK = "\ue000"  # a private-use character: strftime stops at a NUL


#: an offset or zone name in a strftime format (%z, %Ez as XXX prints, %Z)
_ZONED = re.compile(r"(?<!%)(?:%%)*%[EO]?[zZ]")


def java_format(fmt: str, printing: bool = False) -> str:
    """``yyyy-MM-dd HH:mm:ss`` -> ``%Y-%m-%d %H:%M:%S``; a format holding ``%`` is kept as it is.

    For ``printing``, a one-letter field (``M``, ``d``, ``H``, ``h``, ``m``, ``s``) is marked
    for :func:`unpad`, which prints it as Java does, without a leading zero.
    Raises ValueError naming a letter it cannot translate (fractions of a second among them).
    """
    if "%" in fmt:
        return fmt
    if _MARK in fmt:
        raise ValueError("a format must not hold the private-use character U+E000")
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"'((?:[^']|'')*)'|([A-Za-z])\2*|[^A-Za-z']+", fmt):
        if m.start() != pos:
            break
        pos = m.end()
        if m.group(1) is not None:  # quoted text; '' is a quote
            out.append(m.group(1).replace("''", "'") or "'")
        elif m.group(2) is not None:
            token = m.group(0)
            if token not in _JAVA and token != "XXX":
                raise ValueError(
                    f"pattern letters {token!r} are not supported; use y M d H h m s a E Z XX XXX "
                    f"(fractions of a second: leave 'format' out and write ISO-8601)"
                )
            if token == "XXX":  # +08:00, as Java prints it (%z prints +0800; it reads both)
                out.append("%Ez" if printing else "%z")
                continue
            out.append((_MARK if printing and token in _UNPADDED else "") + _JAVA[token])
        else:
            out.append(m.group(0))
    if pos != len(fmt):
        raise ValueError(f"an unterminated quote at position {pos}; write a quote as ''")
    return "".join(out)


def unpad(text: pa.Array) -> pa.Array:
    """Text printed with a :func:`java_format` for printing: the marked fields lose their
    leading zero ("01" -> "1", "10" stays), and the marks go."""
    text = pc.replace_substring_regex(text, pattern=_MARK + "0([0-9])", replacement="\\1")
    return pc.replace_substring(text, pattern=_MARK, replacement="")


def abutting_fields(fmt: str) -> str | None:
    """For a Java pattern with numbers written one against the other (``yyyyMMdd``), a regular
    expression the whole text must match: each of those numbers exactly as many digits as its
    letters. None for a pattern without such numbers (or a strftime one, holding ``%``).

    strptime reads as many digits as fit, so ``2024115`` was 2024-11-05 (Java reads it so too),
    where the text may as well mean 2024-01-15: a date too short for its pattern is a guess."""
    if "%" in fmt:
        return None
    tokens: list[tuple[str, str]] = []  # ("num" | "word" | "text", the token)
    for m in re.finditer(r"'((?:[^']|'')*)'|([A-Za-z])\2*|[^A-Za-z']+", fmt):
        if m.group(1) is not None:
            tokens.append(("text", m.group(1).replace("''", "'") or "'"))
        elif m.group(2) is not None:
            numeric = m.group(2) in "yMdHhms" and not (m.group(2) == "M" and len(m.group(0)) > 2)
            tokens.append(("num" if numeric else "word", m.group(0)))
        else:
            tokens.append(("text", m.group(0)))
    kinds = [k for k, _ in tokens]
    if not any(a == b == "num" for a, b in zip(kinds, kinds[1:], strict=False)):
        return None
    parts = []
    for i, (kind, token) in enumerate(tokens):
        if kind == "text":
            parts.append(re.escape(token))
        elif kind == "word":  # a name, AM/PM, an offset: strptime checks it
            parts.append(".+?")
        elif "num" in kinds[max(i - 1, 0) : i] + kinds[i + 1 : i + 2]:
            parts.append(f"[0-9]{{{len(token)}}}")
        else:
            parts.append("[0-9]+")
    return "^" + "".join(parts) + "$"


_SAMPLE = pa.array([0], pa.timestamp("s", "UTC"))


def _strftime_problem(fmt: str, printing: bool) -> str | None:
    """What is wrong with a strftime/strptime format a user wrote, or None. Arrow prints a
    directive it does not know as it is (``%f`` gave the text ``12:00:05.%f`` on every row),
    and reads ``%s``, seconds since the epoch, as UTC's wall time, which the job's zone then
    reads as its own (eight hours off in Asia/Shanghai)."""
    for m in re.finditer(r"%([EO]?.)", fmt.replace("%%", "")):
        d = m.group(0)
        if not printing and d == "%s":
            return (
                "'%s' reads seconds since the epoch, an instant, as a wall time; cast the "
                "number to long and make it a timestamp in an sql transformer (to_timestamp(x))"
            )
        if printing and pc.strftime(_SAMPLE, format=d)[0].as_py() == d:
            return f"{d!r} is not a directive Arrow prints; it would be written as it is"
    return None


@dataclass(frozen=True)
class _Target:
    kind: str
    label: str  # the type as the user wrote it, for messages
    type: pa.DataType
    fmt: str | None = None  # strftime/strptime
    #: for reading with a pattern of numbers one against the other: what the text must match
    widths: str | None = None
    #: a Java pattern without a year (``HH:mm``, ``MM-dd``): strptime's year is 1900, Java's
    #: (DataX's) 1970, which the value is moved to
    no_year: bool = False
    #: a Java pattern holding the letter Z quoted (``'Z'``): text, not UTC
    quoted_z: bool = False


def _parse_target(spec: Any, key: str, p: Any) -> _Target | None:
    fmt_raw: Any = None
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"type", "format"})
        for k in unknown:
            p.problem(
                f"{key}.{k}",
                f"unknown key{did_you_mean(k, ['type', 'format'])}; a cast takes type and format",
            )
        fmt_raw = spec.get("format")
        spec = spec.get("type")
        key = f"{key}.type"
    if not isinstance(spec, str) or not spec.strip():
        p.problem(
            key,
            f'must be a type name such as "long" or {{"type": ..., "format": ...}}, got {spec!r}',
        )
        return None
    label = spec.strip()
    m = _DECIMAL.fullmatch(label)
    kind = "decimal" if m else _KINDS.get(label.lower())
    if kind is None:
        p.problem(
            key,
            f"unknown type {label!r}{did_you_mean(label.lower(), _KINDS)}; "
            f"types: string, long, double, boolean, decimal(p,s), date, timestamp, bytes",
        )
        return None
    if kind == "decimal":
        if not m:
            p.problem(key, f"{label!r} needs a precision and scale, such as decimal(18,2)")
            return None
        precision, scale = int(m.group(2)), int(m.group(3) or 0)
        if not 1 <= precision <= 76 or scale > precision:
            p.problem(key, f"{label!r}: precision must be 1..76 and scale at most the precision")
            return None
        t: pa.DataType = (pa.decimal128 if precision <= 38 else pa.decimal256)(precision, scale)
    else:
        t = {
            "string": pa.string(), "long": pa.int64(), "double": pa.float64(),
            "boolean": pa.bool_(), "date": pa.date32(), "timestamp": pa.timestamp("us"),
            "bytes": pa.binary(),
        }[kind]  # fmt: skip
    fmt = None
    if fmt_raw is not None:
        fkey = key.rsplit(".", 1)[0] + ".format"
        if (
            kind not in ("date", "timestamp", "string")
            or not isinstance(fmt_raw, str)
            or not fmt_raw
        ):
            p.problem(
                fkey,
                "a format is a date pattern such as 'yyyy-MM-dd HH:mm:ss', "
                "for casts to date, timestamp or string",
            )
        else:
            try:
                fmt = java_format(fmt_raw, printing=kind == "string")
            except ValueError as e:
                p.problem(fkey, str(e))
            if fmt is not None and kind != "string" and "%y" in fmt.replace("%%", ""):
                # Java reads "47" as 1947 today and 2047 in 2028 (80 years back, 20 ahead of
                # now), strptime as 2047 always: no one century is what the text means
                p.problem(
                    fkey,
                    f"{fmt_raw!r} reads a two-digit year, which names no century (Java reads "
                    f"'47' as 1947 or 2047 depending on the current year); write yyyy",
                )
                fmt = None
            elif (
                fmt is not None
                and kind != "string"
                and "%I" in fmt.replace("%%", "")
                and "%p" not in fmt.replace("%%", "")
            ):
                # the hour of a 12-hour clock with no AM/PM: "12:30" was read as 00:30 (as Java
                # does) and "13:30" was dirty; most often HH was meant
                p.problem(
                    fkey,
                    f"{fmt_raw!r} reads the hour of a 12-hour clock (hh, 1-12) with no AM/PM "
                    f"marker (a), so '12:30' would be 00:30; write HH for 0-23, or add a",
                )
                fmt = None
    if fmt is not None and "%" in fmt_raw:
        problem = _strftime_problem(fmt_raw, printing=kind == "string")
        if problem:
            p.problem(key.rsplit(".", 1)[0] + ".format", problem)
            fmt = None
    widths = abutting_fields(fmt_raw) if fmt is not None and kind != "string" else None
    no_year = (
        fmt is not None
        and kind != "string"
        and "%" not in fmt_raw
        and "%Y" not in fmt.replace("%%", "")
    )
    quoted_z = (
        fmt is not None
        and "%" not in fmt_raw
        and any(
            m.group(1) == "Z" for m in re.finditer(r"'((?:[^']|'')*)'|[^']+", fmt_raw) if m.group(1)
        )
    )
    return _Target(kind, label, t, fmt, widths, no_year, quoted_z)


#: 1900-01-01 to 1970-01-01 (25,567 days)
_YEARS_1900_1970 = pa.scalar(dt.timedelta(days=25567), pa.duration("us"))


def _is_utc(zone: str) -> bool:
    """Whether ``zone`` is UTC all year (``UTC``, ``Etc/UTC``, ``GMT``, ``+00:00``)."""
    if _OFFSET.fullmatch(zone):
        return zone in ("+00:00", "-00:00")
    try:
        z = zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    days = (dt.datetime(2024, 1, 1), dt.datetime(2024, 7, 1))
    return all(z.utcoffset(d) == dt.timedelta(0) for d in days)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _is_text_dictionary(t: pa.DataType) -> bool:
    return pa.types.is_dictionary(t) and _is_text(t.value_type)


def _is_bytes(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    )


def _is_moment(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


class Cast(Transform):
    """``{"columns": {"age": "long", "ts": {"type": "timestamp", "format": "yyyy-MM-dd"}}}``.

    Types: ``string``, ``long`` (``bigint``, ``int``: 64-bit), ``double`` (``float``),
    ``boolean``, ``decimal(p,s)``, ``date``, ``timestamp`` (microseconds; a timestamp source
    keeps its unit and zone), ``bytes``. Text is trimmed before it becomes a number, boolean,
    date or timestamp. Nothing is rounded or truncated silently: ``'1.5'`` to long and
    ``'1.234'`` to decimal(10,2) are dirty rows, and so are ``1.239`` (a double, read as its
    shortest text) to decimal(10,2), ``'1e400'`` to double and a decimal with more digits than
    a double holds to double. Dates and timestamps become long as
    milliseconds since the epoch, and a long becomes a timestamp the same way (DataX's
    ``Date.getTime``); a naive timestamp is wall-clock time in the job's time zone (one in a
    daylight-saving gap or overlap there is a dirty row), and a
    timestamp that carries a zone becomes a date, or text in a ``format``, in the job's zone.
    """

    name = "cast"
    summary = "convert columns to another type; unconvertible rows become dirty records"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        before = len(self.p.problems)
        raw = self.p.obj("columns")
        if raw is None and len(self.p.problems) == before:
            self.p.problem("columns", 'is required: {"column": "type", ...}')
        if raw == {}:
            self.p.problem("columns", "must name at least one column")
        self.targets: dict[str, _Target] = {}
        for col, spec in (raw or {}).items():
            target = _parse_target(spec, f"columns.{col}", self.p)
            if target is not None and target.quoted_z and not _is_utc(ctx.timezone):
                # yyyy-MM-dd'T'HH:mm:ss'Z': the job's wall time marked as UTC (Java does so too),
                # eight hours off in Asia/Shanghai, written or read
                self.p.problem(
                    f"columns.{col}.format",
                    f"'Z' quoted is the letter Z, which says UTC, but the time is the job's "
                    f"wall time in {ctx.timezone}; write XXX for its offset (XXX reads Z as "
                    f"UTC too), or set the job's timezone to UTC",
                )
            elif target is not None:
                self.targets[col] = target
        self.p.done()
        self._checked: dict[tuple[str, pa.DataType], pa.DataType] = {}

    def _out_type(self, col: str, src: pa.DataType, target: _Target) -> pa.DataType:
        """The type ``src`` becomes; ConfigError when no value of ``src`` could ever convert."""
        key = (col, src)
        if key not in self._checked:
            if (pa.types.is_duration(src) and target.kind in ("string", "bytes", "long")) or (
                pa.types.is_time(src) and target.kind == "long"
            ):
                # Arrow's cast is a count of the source's unit: an interval of 5 seconds was the
                # text '5000000', 12:30:05 the long 45005000000 (DataX: 00:00:05, and the epoch
                # milliseconds of 1970-01-01 12:30:05 in the JVM's zone)
                if pa.types.is_time(src):
                    how = (
                        f"{src.unit} since midnight (45005000000 for 12:30:05 in us); cast it to "
                        f"string, or compute the number in an sql transformer "
                        f"(epoch({col}) gives its seconds)"
                    )
                else:
                    how = (
                        f"{src.unit} ('5000000' for 5 seconds in us); convert it in an sql "
                        f"transformer (CAST({col} AS VARCHAR) gives 00:00:05, epoch({col}) its "
                        f"seconds)"
                    )
                raise ConfigError(
                    f"{self.ctx.path(f'columns.{col}')}: column {col!r} is {src}, which cast "
                    f"would write as {target.label} as a count of {how}"
                )
            text = _is_text(src) or _is_text_dictionary(src)
            fits = _is_moment(src) or (text and target.kind != "string") or pa.types.is_null(src)
            if target.fmt and not fits:
                # a long 20240115 under yyyyMMdd was read as milliseconds since the epoch
                # (1970-01-01), and printed as 20240115 under yyyy-MM-dd: the format was ignored
                what = (
                    "writes a date or timestamp as text; leave 'format' out, or cast the column "
                    "to a date or timestamp in a cast before this one"
                    if target.kind == "string"
                    else f"reads text as a {target.label}; cast the column to string in a cast "
                    "before this one"
                )
                raise ConfigError(
                    f"{self.ctx.path(f'columns.{col}.format')}: column {col!r} is {src}, and a "
                    f"format {what}"
                )
            try:
                self._checked[key] = self._convert(pa.array([], src), target).type
            except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
                raise ConfigError(
                    f"{self.ctx.path(f'columns.{col}')}: cannot cast column {col!r} from {src} to "
                    f"{target.label}; cast it to string first, or pick another type"
                ) from None
        return self._checked[key]

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        for col, target in self.targets.items():
            i = _index(schema, col, self.ctx.path(f"columns.{col}"))
            f = schema.field(i)
            schema = schema.set(i, f.with_type(self._out_type(col, f.type, target)))
        return schema

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        for col, target in self.targets.items():
            i = _index(batch.schema, col, self.ctx.path(f"columns.{col}"))
            f = batch.schema.field(i)
            self._out_type(col, f.type, target)
            arr = batch.column(i)
            try:
                out = self._convert(arr, target, col)
            except pa.ArrowInvalid as e:
                raise DirtyRecordError(self._reason(col, arr, target, e)) from None
            batch = batch.set_column(i, f.with_type(out.type), out)
        return batch

    @staticmethod
    def _reason(col: str, arr: pa.Array, target: _Target, e: Exception) -> str:
        detail = _first_line(e)
        if len(arr) != 1:
            n = len(arr)
            return f"column {col!r}: some of {n} values cannot be cast to {target.label} ({detail})"
        v = arr[0].as_py()
        shown = repr(v) if isinstance(v, str | bytes) else str(v)
        hint = ""
        low = detail.lower()
        if "truncat" in low or "data loss" in low or "lose data" in low:
            hint = ": it would lose digits"
        elif any(w in low for w in ("overflow", "out of bounds", "out of range", "not fit")):
            hint = ": out of range"
        return f"column {col!r}: cannot cast {shown} to {target.label}{hint}"

    def _convert(self, arr: pa.Array, t: _Target, col: str = "") -> pa.Array:
        src = arr.type
        if _is_text_dictionary(src):
            # text (a pandas category in parquet): its checks, hexadecimal and range among them,
            # are the text's; Arrow's cast of the dictionary read 0x10 as 16 and 1e400 as inf
            arr = arr.dictionary_decode()
            src = arr.type
        if pa.types.is_string_view(src):
            arr, src = arr.cast(pa.string()), pa.string()
        if t.kind == "string":
            if t.fmt and _is_moment(src):
                if _ZONED.search(t.fmt) and (pa.types.is_date(src) or src.tz is None):
                    # an offset names an instant: a naive time is wall-clock time in the job's
                    # zone, a date its midnight there (DataX prints a Date's offset in the
                    # JVM's); strftime refused them
                    if pa.types.is_date(src):
                        arr = arr.cast(pa.timestamp("s"))
                    arr = wall_times_as_instants(arr, self.ctx.timezone, col, "text with an offset")
                return unpad(pc.strftime(self._to_seconds(arr), format=t.fmt))
            if pa.types.is_decimal(src):
                return decimal_text(arr)  # Arrow's 0E-8 for a zero of scale 8
            if pa.types.is_floating(src):
                return plain_floats(arr.cast(pa.string()))  # Arrow's 1e-7, 1.5e+10, nan
            return arr.cast(pa.string())  # bytes: validated as UTF-8
        if t.kind == "bytes":
            if pa.types.is_decimal(src):
                return decimal_text(arr).cast(pa.binary())
            if pa.types.is_floating(src):
                return plain_floats(arr.cast(pa.string())).cast(pa.binary())
            return (arr if _is_bytes(src) else arr.cast(pa.string())).cast(pa.binary())
        if _is_text(src):
            arr = pc.utf8_trim_whitespace(arr)
            if t.fmt and t.kind in ("date", "timestamp"):
                if (
                    t.widths is not None
                    and not pc.all(pc.match_substring_regex(arr, t.widths), min_count=0).as_py()
                ):
                    raise pa.ArrowInvalid("the text does not fill the pattern's fields")
                parsed = pc.strptime(arr, format=t.fmt, unit="us", error_is_null=False)
                # Arrow rolled 2024-02-30 to 2024-03-01 and 23:59:60 to the next day
                no_rolled_days(arr, parsed, t.fmt, "%z" in t.fmt.replace("%%", ""))
                if t.no_year:  # 1900 and 1970 are common years: the same month and day
                    parsed = pc.add(parsed, _YEARS_1900_1970)
                if t.kind == "timestamp":
                    return parsed
                arr, src = parsed, parsed.type  # to a date below (an offset: in the job's zone)
        if t.kind == "long" and _is_moment(src):
            return self._epoch_ms(arr, col)
        if t.kind in ("date", "timestamp") and pa.types.is_integer(src):
            instant = arr.cast(pa.int64()).cast(pa.timestamp("ms", self.ctx.timezone))
            arr = pc.local_timestamp(instant).cast(pa.timestamp("us"))
            return arr.cast(pa.date32(), safe=False) if t.kind == "date" else arr
        if t.kind == "timestamp" and pa.types.is_timestamp(src):
            return arr  # keeps its unit and zone
        if t.kind == "date" and pa.types.is_timestamp(src):
            if src.tz is not None:  # an instant: its day in the job's zone
                arr = pc.local_timestamp(arr.cast(pa.timestamp(src.unit, self.ctx.timezone)))
            return arr.cast(pa.date32(), safe=False)
        if t.kind == "double" and pa.types.is_floating(src) and src != pa.float64():
            # a float32 0.1 is 0.10000000149011612 as a double: keep the number it shows
            return arr.cast(pa.string()).cast(pa.float64())
        if t.kind == "boolean" and pa.types.is_floating(src):
            # Arrow makes every number but 0 true: NaN, 0.5 and inf too (DataX refuses a double
            # as a boolean); text takes 0 and 1 only, and so does a float now
            either = pc.or_(pc.equal(arr, 0.0), pc.equal(arr, 1.0))
            if not pc.all(either, min_count=0).as_py():
                raise pa.ArrowInvalid("only 0 and 1 are booleans")
        if t.kind == "decimal" and pa.types.is_floating(src):
            # Arrow rounds a float to the scale (1.239 -> 1.24); the float's shortest text
            # (DataX's BigDecimal(String.valueOf(d))) is what the value means: 0.1 is 0.10 and
            # 1.239 at scale 2 is a dirty row, as for text.
            return arr.cast(pa.string()).cast(t.type)
        if t.kind == "decimal" and pa.types.is_integer(src):
            # Arrow refuses int64 -> decimal(5,2) for the type (every row dirty, 1 too): through
            # a decimal wide enough for any integer, each value is checked against the precision
            scale = t.type.scale
            wide = pa.decimal128(38, scale) if scale <= 18 else pa.decimal256(76, scale)
            return arr.cast(wide).cast(t.type)
        if t.kind == "double" and pa.types.is_decimal(src):
            # Arrow rounds a decimal to the nearest double silently (12345678901234567.89 ->
            # 12345678901234568.0): a decimal the double's shortest text does not give back
            # has no exact double, a dirty row. Parsed from its text: correctly rounded.
            out = arr.cast(pa.string()).cast(pa.float64())
            try:
                same = pc.equal(out.cast(pa.string()).cast(src), arr)
            except pa.ArrowInvalid:  # rounded past the decimal's precision
                same = pa.array([False])
            if not pc.all(same, min_count=0).as_py():
                raise pa.ArrowInvalid("the decimal has no exact double (data loss)")
            return out
        if (
            t.kind == "long"
            and _is_text(src)
            and pc.any(pc.match_substring(arr, "x", ignore_case=True)).as_py()
        ):
            # Arrow reads 0x10 as 16; a long is written in decimal digits (DataX refuses it too)
            raise pa.ArrowInvalid("a hexadecimal number is not a long")
        out = arr.cast(t.type)
        if t.kind == "double" and _is_text(src):
            _check_float_range(arr, out)
        return out

    def _to_seconds(self, arr: pa.Array) -> pa.Array:
        # strftime's %S prints fractions at finer units; a pattern's "ss" means whole seconds.
        if pa.types.is_date(arr.type):
            return arr.cast(pa.timestamp("s"))
        zone = self.ctx.timezone if arr.type.tz is not None else None
        if zone is not None:
            # floored in UTC: in a zone of its own, Arrow floors the wall time and refuses an
            # overlap's (an instant of the hour clocks go back was a dirty row)
            arr = arr.cast(pa.timestamp(arr.type.unit, "UTC"))
        floored = pc.floor_temporal(arr, unit="second")
        # an instant prints as wall-clock time in the job's zone (a format without an offset
        # would show UTC wall time for a timestamptz, which a reader takes for the job's)
        return floored.cast(pa.timestamp("s", zone))

    def _epoch_ms(self, arr: pa.Array, col: str) -> pa.Array:
        return epoch_ms(arr, self.ctx.timezone, col)


def epoch_ms(arr: pa.Array, zone: str, column: str) -> pa.Array:
    """Milliseconds since the epoch of dates or timestamps (DataX's ``Date.getTime``); a naive
    value is wall-clock time in ``zone``. One that ``zone`` skips or shows twice (a daylight-
    saving gap or overlap) names no one instant: a dirty record (:func:`wall_times_as_instants`),
    never the earlier instant picked silently."""
    if pa.types.is_date(arr.type):
        arr = arr.cast(pa.timestamp("ms"))
    if arr.type.tz is None:
        arr = wall_times_as_instants(arr, zone, column, "milliseconds since the epoch")
    # floored in UTC: in a zone of its own, Arrow floors the wall time and refuses an overlap's
    utc = arr.cast(pa.timestamp(arr.type.unit, "UTC"))
    ms = pc.floor_temporal(utc, unit="millisecond").cast(pa.timestamp("ms", "UTC"))
    return ms.cast(pa.int64())


def plain_floats(text: pa.Array) -> pa.Array:
    """Floats as DataX's text of them: ``15000000000`` and ``0.0000001`` (the JDBC drivers' text,
    ``BigDecimal.toPlainString``), ``NaN``, ``Infinity``; Arrow writes ``1.5e+10``, ``1e-7``,
    ``nan``, ``inf``. Python only for the values written so (few)."""
    odd = pc.fill_null(pc.match_substring_regex(text, "[a-z]"), False)
    if not pc.any(odd).as_py():
        return text
    fixed: list[str] = []
    for v in text.filter(odd).to_pylist():
        if v.endswith("nan"):
            fixed.append("NaN")
        elif v.endswith("inf"):
            fixed.append(v[:-3] + "Infinity")
        else:
            fixed.append(format(Decimal(v), "f"))
    return pc.replace_with_mask(text, odd, pa.array(fixed, text.type))


def decimal_text(arr: pa.Array) -> pa.Array:
    """Decimals as plain digits (``BigDecimal.toPlainString``, DataX's text of them). Arrow
    writes Java's ``toString``: a value under 10^-6 with an exponent, so a zero of scale 8 is
    ``0E-8`` and 0.0000001 at scale 30 ``1.00000000000000000000000E-7``. Python only for the
    values written so."""
    text = arr.cast(pa.string())
    odd = pc.fill_null(pc.match_substring(text, "E"), False)
    if not pc.any(odd).as_py():
        return text
    fixed = [format(Decimal(v), "f") for v in text.filter(odd).to_pylist()]
    return pc.replace_with_mask(text, odd, pa.array(fixed, pa.string()))


def _check_float_range(text: pa.Array, out: pa.Array) -> None:
    """Arrow reads ``1e400`` as inf and ``1e-400`` as 0; a number that does not fit a double
    is out of range (ArrowInvalid: the caller makes its row dirty), not another number."""
    overflow = pc.and_(pc.is_inf(out), pc.invert(pc.match_substring_regex(text, r"^[+-]?(?i:inf)")))
    # a mantissa holding a digit other than 0 that became 0
    underflow = pc.and_(pc.equal(out, 0.0), pc.match_substring_regex(text, r"^[+-]?[0.]*[1-9]"))
    if pc.any(pc.or_(overflow, underflow)).as_py():
        raise pa.ArrowInvalid("the number is out of range for a double")


# -- regex_replace -------------------------------------------------------------------------------


def _pattern_groups(pattern: str) -> list[str | None]:
    """The capturing groups of an RE2 pattern, in order: a group's name, or None."""
    groups: list[str | None] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and pattern.startswith("Q", i + 1):  # quoted up to \E
            end = pattern.find("\\E", i + 2)
            i = n if end < 0 else end + 2
        elif c == "\\":
            i += 2
        elif c == "[":  # a class, to its "]" ("[]" and "[^]" open with a literal "]")
            j = i + 1 + pattern.startswith("^", i + 1)
            j += pattern.startswith("]", j)
            while j < n and pattern[j] != "]":
                end = pattern.find(":]", j + 2) if pattern.startswith("[:", j) else -1
                j = end + 2 if end >= 0 else j + 1 + (pattern[j] == "\\")
            i = j + 1
        else:
            if c == "(":
                named = re.match(r"\(\?P?<(\w+)>", pattern[i:])
                if named or not pattern.startswith("?", i + 1):
                    groups.append(named.group(1) if named else None)
            i += 1
    return groups


def _re2_group_count(pattern: str) -> int:
    """How many groups RE2 sees in ``pattern``, up to 9 (what a replacement can name)."""
    for k in range(1, 10):
        try:
            pc.replace_substring_regex(pa.array([""]), pattern=pattern, replacement=f"\\{k}")
        except pa.ArrowInvalid:
            return k - 1
    return 9


def _re2_rewrite(replacement: str, pattern: str) -> str:
    """A replacement as Java's ``Matcher.replaceAll`` reads it, written for RE2's rewrite.

    Java: ``$n`` is group n (further digits join while they name a group), ``${name}`` a named
    group, ``\\`` before any character that character. tidesync's own ``\\n`` (one digit) is
    group n as well. Raises ValueError for what Java refuses, and for a group past 9 (RE2
    names groups 0-9 only)."""
    if "$" not in replacement and not re.search(r"\\(?![\\0-9])", replacement):
        return replacement  # nothing Java reads otherwise than RE2: as it was
    groups = _pattern_groups(pattern)
    count = len(groups)
    if min(count, 9) != _re2_group_count(pattern):
        raise ValueError(
            f"cannot count the groups of the pattern {pattern!r}; write the groups as \\1 .. \\9"
        )
    out: list[str] = []
    i, n = 0, len(replacement)
    while i < n:
        c = replacement[i]
        if c == "\\":
            if i + 1 == n:
                raise ValueError("a '\\' at the end escapes nothing; write '\\\\' for a backslash")
            nxt = replacement[i + 1]
            if nxt.isdigit() and nxt.isascii():
                out.append(replacement[i : i + 2])  # tidesync's \1, RE2 checks the group
            else:
                out.append("\\\\" if nxt == "\\" else nxt)
            i += 2
        elif c == "$":
            named = re.match(r"\{([A-Za-z][A-Za-z0-9]*)\}", replacement[i + 1 :])
            if named:
                name = named.group(1)
                if name not in groups:
                    raise ValueError(f"the pattern has no group named {name!r}")
                group = groups.index(name) + 1
                i += 2 + len(named.group(0)) - 1
            else:
                digits = re.match(r"[0-9]+", replacement[i + 1 :])
                if not digits:
                    raise ValueError(
                        f"'$' at position {i} names no group; write $1 or ${{name}} for a group "
                        f"and \\$ for a dollar"
                    )
                group = int(digits.group(0)[0])
                taken = 1
                for d in digits.group(0)[1:]:  # Java: a further digit joins if the group exists
                    if group * 10 + int(d) > count:
                        break
                    group, taken = group * 10 + int(d), taken + 1
                i += 1 + taken
            if group > count:
                raise ValueError(f"the pattern has no group {group} (it has {count})")
            if group > 9:
                raise ValueError(f"group {group}: a replacement can name groups 0 to 9 only")
            out.append(f"\\{group}")
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _empty_matches_differ(pattern: str) -> bool:
    """Whether RE2 and Java may replace ``pattern``'s matches differently: it matches the empty
    text, so it can match empty right after a non-empty match, which Java (and Python) replace
    and RE2 skips. Not for a pattern only of zero-width assertions (``^``, ``\\b``; never a
    non-empty match) or one anchored at the start (it matches once)."""
    if not pc.match_substring_regex(pa.array([""]), pattern)[0].as_py():
        return False
    if re.fullmatch(r"(?:\^|\$|\\[AzbB])+", pattern):
        return False
    return not (pattern.startswith(("^", "\\A")) and "|" not in pattern)


class RegexReplace(Transform):
    """``{"column": "name", "pattern": "\\s+", "replacement": " ", "maxReplacements": 1}``.

    RE2 syntax (no look-around, no back-references in the pattern). The replacement is read as
    Java's ``replaceAll`` reads it (DataX jobs are written for it): ``$1`` and ``${name}`` are
    groups, ``\\$`` a dollar and ``\\\\`` a backslash, ``\\x`` the character x; ``\\1`` is
    the first group too (tidesync's own form). What Java refuses (a ``$`` that names no group)
    is a ConfigError. An empty or absent replacement deletes the matches. Every match is
    replaced unless ``maxReplacements`` says how many, from the left. Nulls stay null.
    """

    name = "regex_replace"
    summary = "replace what a regular expression matches in a text column"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        p = self.p
        self.column: str = p.str("column", required=True)
        self.pattern: str = p.str("pattern", required=True)
        self.replacement: str = p.str("replacement", "")
        self.max: int | None = p.int("maxReplacements", minimum=1)
        self._rewrite = ""  # the replacement as RE2 writes it
        if self.pattern is not None and self.replacement is not None:
            try:
                pc.match_substring_regex(pa.array([""]), self.pattern)  # names the user's pattern
                self._rewrite = _re2_rewrite(self.replacement, self.pattern)
                self._replace(pa.array([""]))
            except pa.ArrowInvalid as e:
                detail = _first_line(e)
                key = "replacement" if "replacement" in detail.lower() else "pattern"
                p.problem(
                    key, f"{detail} (RE2 syntax; $1 or \\1 in the replacement is the first group)"
                )
            except ValueError as e:
                p.problem("replacement", f"{e} (Java's syntax: $1 or ${{name}} is a group)")
            else:
                if _empty_matches_differ(self.pattern):
                    p.problem(
                        "pattern",
                        f"{self.pattern!r} matches the empty text too, and an empty match right "
                        f"after another one is replaced by Java and Python but not by RE2 ('b*' "
                        f"turns 'abbc' into '-a--c-' in Java, '-a-c-' here); write + for * so "
                        f"that every match is non-empty",
                    )
        p.done()

    def _replace(self, arr: pa.Array) -> pa.Array:
        return pc.replace_substring_regex(
            arr, pattern=self.pattern, replacement=self._rewrite, max_replacements=self.max
        )

    def _check(self, schema: pa.Schema) -> int:
        i = _index(schema, self.column, self.ctx.path("column"))
        t = schema.field(i).type
        if not (_is_text(t) or pa.types.is_binary(t) or pa.types.is_large_binary(t)):
            raise ConfigError(
                f"{self.ctx.path('column')}: column {self.column!r} is {t}; regex_replace works "
                f'on text: cast it first ({{"name": "cast", "parameter": '
                f'{{"columns": {{"{self.column}": "string"}}}}}})'
            )
        return i

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        i = self._check(schema)
        f = schema.field(i)
        return (
            schema.set(i, f.with_type(pa.string())) if pa.types.is_string_view(f.type) else schema
        )

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        i = self._check(batch.schema)
        arr = batch.column(i)
        if pa.types.is_string_view(arr.type):
            arr = arr.cast(pa.string())
        out = self._replace(arr)
        return batch.set_column(i, batch.schema.field(i).with_type(out.type), out)


# -- timezone ------------------------------------------------------------------------------------

_OFFSET = re.compile(r"[+-]\d{2}:\d{2}")


@cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


#: Java's GMT+8 and UTC+08:00 (an offset); IANA's Etc/GMT+8 is the other way round (UTC-8)
_JAVA_OFFSET = re.compile(r"(?:GMT|UTC)([+-])(\d{1,2})(?::?(\d{2}))?")


def _zone_problem(name: str) -> str | None:
    if _OFFSET.fullmatch(name):
        try:  # +25:00 and +08:60 match: Arrow refused them only at the first batch
            pc.assume_timezone(pa.array([0], pa.timestamp("s")), name)
        except pa.ArrowInvalid:
            return f"{name!r} is no offset; write one from -23:59 to +23:59 such as '+08:00'"
        return None
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        java = _JAVA_OFFSET.fullmatch(name)
        if java:  # did_you_mean offered GMT+0 for GMT+8: another zone
            sign, hours, minutes = java.groups()
            return (
                f"unknown time zone {name!r}; for the offset write "
                f"'{sign}{int(hours):02d}:{minutes or '00'}' (the IANA name Etc/GMT{sign}"
                f"{int(hours)} means the opposite sign)"
            )
        return (
            f"unknown time zone {name!r}{did_you_mean(name, _zones())}; write an IANA name "
            f"such as 'Asia/Shanghai' or 'UTC', or an offset such as '+08:00'"
        )
    return None


class TimeZone(Transform):
    """``{"columns": ["ts"], "from": "Asia/Shanghai", "to": "UTC", "keepZone": false}``.

    A naive timestamp is wall-clock time in ``from`` (default: the job's time zone); a
    timestamp that carries a zone is converted from that zone and ``from`` does not apply.
    The result is wall-clock time in ``to``: naive by default, or a timestamp carrying ``to``
    with ``"keepZone": true``. A naive value that does not exist in ``from`` (the hour skipped
    when clocks go forward) or that exists twice (the hour repeated when they go back) is a
    dirty row unless ``nonexistent``/``ambiguous`` say ``earliest`` or ``latest``.
    """

    name = "timezone"
    summary = "convert timestamp columns from one time zone to another"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        p = self.p
        self.columns = _names(p, "columns")
        self.source: str = p.str("from", ctx.timezone)
        self.target: str = p.str("to", required=True)
        self.keep_zone: bool = p.bool("keepZone", False)
        choices = ("raise", "earliest", "latest")
        self.ambiguous: str = p.str("ambiguous", "raise", choices=choices, lower=True)
        self.nonexistent: str = p.str("nonexistent", "raise", choices=choices, lower=True)
        for key, zone in (("from", self.source), ("to", self.target)):
            problem = _zone_problem(zone) if zone else None
            if problem:
                origin = "" if key in params else " (the job's time zone)"
                p.problem(key, problem + origin)
        p.done()

    def _out_type(self, schema: pa.Schema, i: int, name: str) -> pa.DataType:
        t = schema.field(name).type
        if not pa.types.is_timestamp(t):
            raise ConfigError(
                f"{self.ctx.path(f'columns[{i}]')}: column {name!r} is {t}; timezone converts "
                f'timestamps: cast it first ({{"name": "cast", "parameter": '
                f'{{"columns": {{"{name}": "timestamp"}}}}}})'
            )
        return pa.timestamp(t.unit, self.target if self.keep_zone else None)

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        for i, name in enumerate(self.columns):
            j = _index(schema, name, self.ctx.path(f"columns[{i}]"))
            schema = schema.set(j, schema.field(j).with_type(self._out_type(schema, i, name)))
        return schema

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        for i, name in enumerate(self.columns):
            j = _index(batch.schema, name, self.ctx.path(f"columns[{i}]"))
            out_type = self._out_type(batch.schema, i, name)
            arr = batch.column(j)
            if arr.type.tz is None:
                try:
                    arr = pc.assume_timezone(
                        arr, self.source, ambiguous=self.ambiguous, nonexistent=self.nonexistent
                    )
                except pa.ArrowInvalid as e:
                    raise DirtyRecordError(self._reason(name, batch.column(j), e)) from None
            arr = arr.cast(pa.timestamp(out_type.unit, self.target))
            if not self.keep_zone:
                arr = pc.local_timestamp(arr)
            batch = batch.set_column(j, batch.schema.field(j).with_type(arr.type), arr)
        return batch

    def _reason(self, name: str, arr: pa.Array, e: Exception) -> str:
        if len(arr) != 1:
            return (
                f"column {name!r}: some wall-clock times are not one instant in {self.source} "
                f"({_first_line(e)})"
            )
        v = arr[0].as_py()
        why, key = (
            ("does not exist", "nonexistent")
            if "exist" in str(e)
            else ("is ambiguous", "ambiguous")
        )
        return (
            f"column {name!r}: {v} {why} in {self.source} (a daylight-saving change); "
            f"set {key!r} to 'earliest' or 'latest' to accept it"
        )
