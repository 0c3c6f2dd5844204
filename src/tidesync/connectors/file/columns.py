"""The file reader's ``column`` entries, DataX type names, Java date patterns, and the vectorized
conversion of raw columns into typed ones (rows that do not convert become dirty records)."""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import itertools
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors.base import Dirty, Params
from tidesync.engine.dirty import isolate, row_of
from tidesync.errors import DirtyRecordError, FatalError, did_you_mean

#: user-written type name -> DataX type it means
TYPE_NAMES = {
    "string": "string",
    "str": "string",
    "varchar": "string",
    "char": "string",
    "text": "string",
    "long": "long",
    "int": "long",
    "integer": "long",
    "bigint": "long",
    "int64": "long",
    "smallint": "long",
    "tinyint": "long",
    "double": "double",
    "float": "double",
    "float64": "double",
    "real": "double",
    "number": "double",
    "boolean": "boolean",
    "bool": "boolean",
    "date": "date",
    "datetime": "date",
    "timestamp": "date",
    "bytes": "bytes",
    "binary": "bytes",
    "blob": "bytes",
    "decimal": "decimal",
    "numeric": "decimal",
}
_ARROW = {
    "string": pa.string(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "bytes": pa.binary(),
}
_DECIMAL = re.compile(r"(?:decimal|numeric)\s*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)", re.I)
_ENTRY_KEYS = ("index", "name", "type", "format", "value", "optional")


def arrow_type(name: str, zoned: bool = False) -> tuple[str, pa.DataType] | None:
    """``'bigint'`` -> ``('long', int64)``; ``'decimal(10,2)'`` -> ``('decimal', decimal128(10, 2))``."""
    key = name.strip().lower()
    if m := _DECIMAL.fullmatch(key):
        precision, scale = int(m[1]), int(m[2] or 0)
        if not 1 <= precision <= 38 or scale > precision:
            return None
        return "decimal", pa.decimal128(precision, scale)
    kind = TYPE_NAMES.get(key)
    if kind is None:
        return None
    if kind == "decimal":
        return kind, pa.decimal128(38, 10)
    if kind == "date":
        return kind, pa.timestamp("us", "UTC" if zoned else None)
    return kind, _ARROW[kind]


# -- Java date patterns ------------------------------------------------------------------------


@dataclass(frozen=True)
class DatePattern:
    """A Java-style pattern (``yyyy-MM-dd HH:mm:ss``) turned into what Arrow parses and prints.

    ``strptime`` parses values when the pattern has no fractional seconds; ``regex`` (named groups
    Y/y/M/d/H/m/s/S) when it has, since Arrow's strptime has no fractions; ``parse_error`` says
    why neither can. ``strftime`` and ``unit`` print values (``ss.SSS`` prints through ``%S`` at
    millisecond unit); ``strftime`` is None when the pattern cannot print."""

    java: str
    strptime: str | None
    regex: str | None
    strftime: str | None
    unit: str
    zoned: bool
    parse_error: str | None = None
    iso: bool = False  # an ISO 8601 layout: Arrow's (faster) ISO parser reads it alike
    #: an ISO layout without seconds (``yyyy-MM-dd``, ``yyyy-MM-dd HH:mm``): its length. Arrow's
    #: ISO parser takes longer layouts too, whose time (or seconds) such a pattern has no place
    #: for; past ``ss`` only a fraction can follow, which names the same second more closely
    iso_width: int | None = None
    #: numeric fields that abut (``yyyyMMdd``): a regex each value must match, every field of
    #: an abutting run at its full width. strptime takes fewer digits (``2024112`` became
    #: 2024-11-02, as well 2024-01-12; ``2024 1 2`` 2024-01-02): a guess, a dirty record
    abutting: str | None = None
    #: a pattern of abutting numeric fields alone (``yyyyMMddHHmmss``): its digits, checked
    #: without the regex (a tenth of its cost)
    digits: int | None = None
    #: no year in the pattern (``HH:mm:ss``, ``MM-dd``): strptime's is 1900, Java's (DataX's)
    #: 1970, which the value is moved to
    no_year: bool = False


def _tokens(pattern: str) -> list[tuple[str, int] | str]:
    """Letter runs as ``(letter, count)``; everything else (quoted text too) as literal strings."""
    out: list[tuple[str, int] | str] = []
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "'":
            j = pattern.find("'", i + 1)
            if j == i + 1:
                out.append("'")
                i += 2
                continue
            if j < 0:
                raise ValueError("a quote (') is not closed")
            out.append(pattern[i + 1 : j])
            i = j + 1
        elif c.isascii() and c.isalpha():
            j = i
            while j < len(pattern) and pattern[j] == c:
                j += 1
            out.append((c, j - i))
            i = j
        else:
            out.append(c)
            i += 1
    return out


_SIMPLE = {
    "d": "%d",
    "H": "%H",
    "h": "%I",
    "m": "%M",
    "s": "%S",
    "a": "%p",
    "D": "%j",
    "Z": "%z",
    "X": "%z",
    "x": "%z",
}


def _directive(letter: str, n: int, printing: bool = False) -> str:
    if letter == "X" and n >= 3 and printing:
        return "%Ez"  # +08:00, as Java prints XXX (%z prints +0800; it reads both)
    if letter == "y":
        return "%y" if n == 2 else "%Y"
    if letter == "M":
        return "%m" if n <= 2 else "%b" if n == 3 else "%B"
    if letter == "E":
        return "%a" if n <= 3 else "%A"
    if letter in _SIMPLE:
        return _SIMPLE[letter]
    raise ValueError(f"pattern letter {letter!r} is not supported")


def _join(tokens: Sequence[tuple[str, int] | str], printing: bool = False) -> str:
    return "".join(
        t.replace("%", "%%") if isinstance(t, str) else _directive(*t, printing) for t in tokens
    )


def date_pattern(java: str) -> DatePattern:
    """Translate a Java pattern; a pattern holding ``%`` is taken as strptime/strftime already.
    Raises ValueError (a message fit for the user) for letters it does not know."""
    if "%" in java:
        return DatePattern(java, java, None, java, "s", "%z" in java)
    tokens = _tokens(java)
    letters = [t for t in tokens if not isinstance(t, str)]
    zoned = any(t[0] in "ZXx" for t in letters)
    iso = bool(_ISO.fullmatch(java.replace("'T'", "T")))
    if not any(t[0] == "S" for t in letters):
        fmt = _join(tokens)
        printed = _join(tokens, printing=True)
        width = len(java.replace("'T'", "T")) if iso and "ss" not in java else None
        abutting = _abutting(tokens)
        return DatePattern(
            java,
            fmt,
            None,
            printed,
            "s",
            zoned,
            iso=iso,
            iso_width=width,
            abutting=abutting,
            digits=_digits(tokens) if abutting else None,
            no_year=not any(t[0] == "y" for t in letters),
        )
    strftime, unit = _fraction_strftime(tokens)
    try:
        return DatePattern(java, None, _fraction_regex(tokens), strftime, unit, False, iso=iso)
    except ValueError as e:
        # it cannot parse (a zone is not read with fractions) but may print: zoned says so
        return DatePattern(java, None, None, strftime, unit, zoned, str(e))


_ISO = re.compile(r"yyyy-MM-dd(?:[ T]HH:mm(?::ss(?:\.S{1,9})?)?)?")
#: numeric pattern letters and the digits each takes in full (``yy`` two, ``y`` four)
_DIGITS = {"y": 4, "M": 2, "d": 2, "H": 2, "h": 2, "m": 2, "s": 2, "D": 3}


def _abutting(tokens: list[tuple[str, int] | str]) -> str | None:
    """The regex of :attr:`DatePattern.abutting`, or None: no numeric fields abut, or the
    pattern holds a field of words (``MMM``, ``E``, ``a``) or an offset."""
    numeric = [
        not isinstance(t, str) and t[0] in _DIGITS and not (t[0] == "M" and t[1] > 2)
        for t in tokens
    ]
    if not any(a and b for a, b in itertools.pairwise(numeric)):
        return None
    parts = []
    for i, t in enumerate(tokens):
        if isinstance(t, str):
            parts.append(re.escape(t))
            continue
        if not numeric[i]:
            return None
        full = _full(*t)
        abuts = (i > 0 and numeric[i - 1]) or (i + 1 < len(tokens) and numeric[i + 1])
        parts.append(f"\\d{{{full}}}" if abuts else f"\\d{{1,{full}}}")
    return "^" + "".join(parts) + "$"


def _digits(tokens: list[tuple[str, int] | str]) -> int | None:
    """The digits of a pattern of numeric fields alone, all abutting (``yyyyMMdd``: 8)."""
    total = 0
    for t in tokens:
        if isinstance(t, str):
            return None
        total += _full(*t)
    return total


def _full(letter: str, n: int) -> int:
    """The digits a numeric field takes in full."""
    return 2 if letter == "y" and n == 2 else max(n, _DIGITS[letter])


def _fills(arr: pa.Array, pattern: DatePattern) -> bool:
    """Whether every value fills the abutting fields of ``pattern`` (see ``abutting``)."""
    if pattern.digits:
        lengths = pc.min_max(pc.binary_length(arr))
        if lengths["min"].as_py() not in (None, pattern.digits):
            return False
        if lengths["max"].as_py() not in (None, pattern.digits):
            return False
        return bool(pc.all(pc.ascii_is_decimal(arr)).as_py())
    assert pattern.abutting is not None
    return bool(pc.all(pc.match_substring_regex(arr, pattern.abutting)).as_py())


def _fraction_regex(tokens: list[tuple[str, int] | str]) -> str:
    parts, seen = [], set()
    for i, t in enumerate(tokens):
        if isinstance(t, str):
            parts.append(re.escape(t))
            continue
        letter, n = t
        group = "y" if letter == "y" and n == 2 else "Y" if letter == "y" else letter
        if letter not in "yMdHmsS" or (letter == "M" and n > 2) or group in seen:
            raise ValueError(
                "with fractional seconds (S) the pattern may hold only the numeric "
                "fields yyyy, MM, dd, HH, mm, ss and S, once each"
            )
        seen.add(group)
        compact = i + 1 < len(tokens) and not isinstance(tokens[i + 1], str)
        if letter == "S":
            width = f"{{{n}}}" if compact else "{1,9}"
        else:
            width = f"{{{n}}}" if n >= 2 else "{1,2}"
        parts.append(f"(?P<{group}>\\d{width})")
    if not {"M", "d"} <= seen or not seen & {"Y", "y"}:
        raise ValueError("a pattern with fractional seconds needs yyyy, MM and dd")
    return "^" + "".join(parts) + "$"


def _fraction_strftime(tokens: list[tuple[str, int] | str]) -> tuple[str | None, str]:
    """``ss.SSS`` prints as ``%S`` at the unit of the fraction; other uses of S cannot print."""
    letters = [None if isinstance(t, str) else t[0] for t in tokens]
    out: list[tuple[str, int] | str] = []
    unit = "s"
    i = 0
    while i < len(tokens):
        if letters[i] == "s" and tokens[i + 1 : i + 2] == ["."] and letters[i + 2 : i + 3] == ["S"]:
            n = int(tokens[i + 2][1])
            unit = "ms" if n <= 3 else "us" if n <= 6 else "ns"
            out.append(("s", 2))
            i += 3
        elif letters[i] == "S":
            return None, unit
        else:
            out.append(tokens[i])
            i += 1
    return _join(out, printing=True), unit


def _parse_fraction(arr: pa.Array, pattern: DatePattern) -> pa.Array:
    st = pc.extract_regex(arr, pattern.regex)
    if st.null_count != arr.null_count:
        raise pa.ArrowInvalid(f"does not match the pattern {pattern.java!r}")
    fields = dict(zip([f.name for f in st.type], st.flatten(), strict=True))

    def two(key: str) -> Any:
        return pc.utf8_lpad(fields[key], width=2, padding="0") if key in fields else "00"

    if "Y" in fields:
        year = fields["Y"]
    else:  # yy as strptime's %y reads it (the other patterns): 69-99 are 19xx, 00-68 20xx
        yy = fields["y"]
        early = pc.less(pc.cast(yy, pa.int64()), _YY_PIVOT)
        year = pc.binary_join_element_wise(pc.if_else(early, "20", "19"), yy, "")
    parts = [year, "-", two("M"), "-", two("d"), " ", two("H"), ":", two("m"), ":", two("s")]
    if "S" in fields:
        parts += [".", pc.utf8_slice_codeunits(fields["S"], 0, 6)]
    return pc.cast(pc.binary_join_element_wise(*parts, ""), pa.timestamp("us"))


def render_temporal(arr: pa.Array, pattern: DatePattern, zone: str | None = None) -> pa.Array:
    """Dates and timestamps as strings in ``pattern`` (vectorized ``strftime``). A timestamp
    that is an instant (it carries a zone) is written as the wall time of ``zone`` (the job's),
    not of the zone it carries: a pattern without an offset would otherwise print UTC wall
    times that a reader takes for the job's (eight hours off in Asia/Shanghai)."""
    if pattern.strftime is None:
        raise FatalError(
            f"the date pattern {pattern.java!r} cannot be used to write values: "
            "fractional seconds print only as ss.SSS"
        )
    t = arr.type
    if pa.types.is_date(t):  # at the pattern's unit: ss.SSS prints 00:00:00.000, as it reads
        arr = pc.cast(arr, pa.timestamp(pattern.unit))
    elif pa.types.is_timestamp(t) and t.unit != pattern.unit:
        arr = pc.cast(arr, pa.timestamp(pattern.unit, t.tz), safe=False)
    if pattern.zoned and arr.type.tz is None and zone:
        # a wall time is the job zone's: printed with its offset there, as DataX prints the
        # JVM zone's (Arrow refused to print an offset for it); a time the zone skips or
        # repeats raises ArrowInvalid, a dirty record
        arr = pc.assume_timezone(arr, zone)
    if pa.types.is_timestamp(arr.type) and arr.type.tz is not None and zone:
        arr = arr.cast(pa.timestamp(arr.type.unit, zone))  # the same instants, shown in zone
    return pc.strftime(arr, format=pattern.strftime)


def is_temporal(t: pa.DataType) -> bool:
    return pa.types.is_timestamp(t) or pa.types.is_date(t)


# -- column entries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    """One entry of ``column``: where its values come from and what type they become.

    ``index`` reads the Nth field, ``lookup`` the field of that name, ``const`` is a constant.
    ``arrow`` None keeps the source's own type (parquet, jsonl)."""

    pos: int
    type: str
    arrow: pa.DataType | None
    index: int | None = None
    lookup: str | None = None
    name: str | None = None
    const: pa.Scalar | None = None
    date: DatePattern | None = None
    zone: str = "UTC"  # the job's: an instant becomes a date, or is formatted, as its wall time
    #: jsonl: the key may be absent from every line of a run (else that is an error: a typo)
    optional: bool = False

    @property
    def label(self) -> str:
        return self.type or str(self.arrow)


def natural(pos: int, delimited: bool) -> Column:
    """The column ``"*"`` makes of field ``pos``: a string (csv, text) or the source's own type."""
    return Column(pos, "string" if delimited else "", pa.string() if delimited else None, index=pos)


def parse_columns(p: Params, delimited: bool, has_header: bool) -> list[Column] | None:
    """The ``column`` parameter; None stands for ``["*"]``. Problems are recorded on ``p``."""
    raw = p.get("column", ["*"])
    if raw == "*" or raw == ["*"]:
        return None
    if not isinstance(raw, list) or not raw:
        p.problem("column", 'must be ["*"] or a list such as [{"index": 0, "type": "long"}]')
        return None
    cols: list[Column] = []
    for i, entry in enumerate(raw):
        col = _parse_entry(p, f"column[{i}]", i, entry, delimited, has_header)
        if col is not None:
            cols.append(col)
    return cols


def _parse_entry(
    p: Params, key: str, pos: int, entry: Any, delimited: bool, has_header: bool
) -> Column | None:
    if isinstance(entry, str) and entry != "*":
        entry = {"name": entry}
    if not isinstance(entry, dict):
        p.problem(
            key,
            '"*" must stand alone ("column": ["*"]); an entry is an object such as '
            '{"index": 0, "type": "long"}',
        )
        return None
    ok = True
    for k in entry:
        if k not in _ENTRY_KEYS:
            p.problem(
                f"{key}.{k}",
                f"unknown key; an entry has {', '.join(_ENTRY_KEYS)}"
                f"{did_you_mean(str(k), _ENTRY_KEYS)}",
            )
            ok = False
    index, name, value = entry.get("index"), entry.get("name"), entry.get("value")
    if index is not None:
        if isinstance(index, bool) or not str(index).strip().isdigit():
            p.problem(f"{key}.index", f"must be a field number (0 or more), got {index!r}")
            ok = False
        else:
            index = int(str(index).strip())
    if name is not None and (not isinstance(name, str) or not name):
        p.problem(f"{key}.name", f"must be a non-empty string, got {name!r}")
        ok = False
    if value is not None and index is not None:
        p.problem(key, "has both index and value: a constant (value) reads no field")
        ok = False
    if index is None and name is None and value is None:
        p.problem(key, 'needs index, name or value, as in {"index": 0, "type": "long"}')
        ok = False
    optional = entry.get("optional", False)
    if not isinstance(optional, bool):
        p.problem(f"{key}.optional", f"must be true or false, got {optional!r}")
        ok = False
    elif optional and (name is None or index is not None or value is not None):
        p.problem(f"{key}.optional", "is for a field read by name (a jsonl key)")
        ok = False
    if index is None and value is None and delimited and not has_header:
        p.problem(
            f"{key}.name",
            "fields can be found by name only in a file with a header: "
            "set skipHeader: true, or use index",
        )
        ok = False
    fmt = entry.get("format")
    pattern = None
    if fmt is not None and fmt != "":
        if not isinstance(fmt, str):
            p.problem(
                f"{key}.format",
                f"must be a date pattern such as 'yyyy-MM-dd HH:mm:ss', got {fmt!r}",
            )
            ok = False
        else:
            try:
                pattern = date_pattern(fmt)
            except ValueError as e:
                p.problem(f"{key}.format", f"{fmt!r}: {e}")
                ok = False
            else:
                if pattern.parse_error:
                    p.problem(f"{key}.format", f"{fmt!r}: {pattern.parse_error}")
                    ok = False
    type_name = entry.get("type")
    if type_name is None or type_name == "":
        kind, arrow = ("string", pa.string()) if delimited or value is not None else ("", None)
    elif (
        not isinstance(type_name, str)
        or (found := arrow_type(type_name, bool(pattern and pattern.zoned))) is None
    ):
        names = sorted(set(TYPE_NAMES.values()))
        p.problem(
            f"{key}.type",
            f"{type_name!r} is not one of {', '.join(names)} (or decimal(p,s))"
            f"{did_you_mean(str(type_name).lower(), TYPE_NAMES)}",
        )
        return None
    else:
        kind, arrow = found
    if not ok:
        return None
    col = Column(
        pos,
        kind,
        arrow,
        index=index,
        lookup=name if index is None else None,
        name=name,
        date=pattern,
        zone=p.ctx.timezone,
        optional=optional,
    )
    if value is None:
        return col
    text = (
        value
        if isinstance(value, str)
        else str(value).lower()
        if isinstance(value, bool)
        else str(value)
    )
    try:
        const = convert(pa.array([text], pa.string()), col)[0]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        p.problem(f"{key}.value", f"cannot convert {value!r} to {col.label}")
        return None
    return Column(pos, kind, arrow, name=name, const=const, date=pattern)


# -- binding columns to one file's fields ------------------------------------------------------


@dataclass(frozen=True)
class Binding:
    """The columns of one file: ``keys[i]`` is the source field read for ``cols[i]`` (None for a
    constant), ``names[i]`` its output name."""

    cols: list[Column]
    keys: list[str | None]
    names: list[str]

    def schema(self, source: pa.Schema | None = None) -> pa.Schema | None:
        fields = []
        for col, key, name in zip(self.cols, self.keys, self.names, strict=True):
            if col.arrow is not None:
                fields.append(pa.field(name, col.arrow))
            elif source is None or key is None or source.get_field_index(key) < 0:
                return None
            else:
                fields.append(source.field(key).with_name(name))
        return pa.schema(fields)


def bind(
    cols: list[Column] | None,
    fields: Sequence[str],
    keys: Sequence[str],
    delimited: bool,
    missing_ok: bool,
    where: Any,
    file: str,
) -> Binding:
    """Match column entries to a file's ``fields`` (header or schema names; ``keys`` are what the
    decoder calls them). ``where(key)`` gives a parameter's key path for messages."""
    every = cols is None
    if cols is None:
        cols = [natural(i, delimited) for i in range(len(fields))]
    out_keys: list[str | None] = []
    names: list[str] = []
    for col in cols:
        if col.const is not None:
            out_keys.append(None)
            names.append(col.name or f"const_{col.pos}")
        elif col.index is not None:
            if col.index >= len(fields):
                raise FatalError(
                    f"{where(f'column[{col.pos}].index')}: {col.index} is beyond the "
                    f"{len(fields)} fields of {file}"
                )
            if list(keys).count(keys[col.index]) > 1:  # (parquet) its values were the first's
                raise FatalError(
                    f"{where('column' if every else f'column[{col.pos}].index')}: {file} has "
                    f"{list(keys).count(keys[col.index])} fields named {keys[col.index]!r}, "
                    "which cannot be read apart"
                )
            out_keys.append(keys[col.index])
            names.append(col.name or fields[col.index] or f"c{col.index}")
        else:
            assert col.lookup is not None
            if list(fields).count(col.lookup) > 1:
                raise FatalError(
                    f"{where(f'column[{col.pos}].name')}: {file} has "
                    f"{list(fields).count(col.lookup)} fields named {col.lookup!r}"
                    + ("; use index to say which" if delimited else ", which cannot be read apart")
                )
            if col.lookup in fields:
                out_keys.append(keys[list(fields).index(col.lookup)])
            elif missing_ok:
                out_keys.append(col.lookup)
            else:
                raise FatalError(
                    f"{where(f'column[{col.pos}].name')}: no field {col.lookup!r} in "
                    f"{file}{did_you_mean(col.lookup, fields)}"
                )
            names.append(col.name or col.lookup)
    seen: dict[str, int] = {}
    unique = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        unique.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return Binding(cols, out_keys, unique)


# -- conversion --------------------------------------------------------------------------------


def convert(arr: pa.Array, col: Column) -> pa.Array:
    """Convert one raw column; raises ``pa.ArrowInvalid`` when some value does not convert."""
    target = col.arrow
    if target is None:
        return arr
    src = arr.type
    if pa.types.is_string(src) or pa.types.is_large_string(src):
        if pa.types.is_string(target) or pa.types.is_binary(target):
            return arr if src == target else pc.cast(arr, target)
        # no Python value in a compute call: pyarrow would import pandas to look at it (a
        # quarter of a second of CPU in every csv run that converts a column)
        empty = pc.invert(pc.cast(pc.binary_length(arr), pa.bool_()))
        if pc.any(empty).as_py():  # empty text is NULL for anything but strings
            arr = pc.if_else(empty, pa.nulls(1, src)[0], arr)
        if col.type == "date" and col.date is not None:
            if col.date.iso:
                with contextlib.suppress(pa.ArrowInvalid):
                    cast = pc.cast(arr, target)
                    width = col.date.iso_width
                    # a longer text (2024-01-02 10:00 under yyyy-MM-dd) holds a time the pattern
                    # has no place for: strptime below refuses it, and bisection finds the row
                    if width is None or (pc.max(pc.binary_length(arr)).as_py() or 0) <= width:
                        return cast
            if col.date.regex is not None:
                return _parse_fraction(arr, col.date)
            fmt = col.date.strptime
            assert fmt is not None
            parsed = pc.strptime(arr, format=fmt, unit="us", error_is_null=False)
            if col.date.abutting and not _fills(arr, col.date):
                raise pa.ArrowInvalid(f"does not fill every field of {col.date.java!r}")
            no_rolled_days(arr, parsed, fmt, col.date.zoned)
            if col.date.no_year:  # 1900 and 1970 are common years: the same month and day
                parsed = pc.add(parsed, _YEARS_1900_1970)
            return parsed
        if pa.types.is_integer(target) and _holds_x(arr):
            # Arrow reads 0x10 as 16; a long is written in decimal digits (DataX refuses it too)
            raise pa.ArrowInvalid("a hexadecimal number is not a long")
        return pc.cast(arr, target)
    if col.type == "string" and col.date is not None and is_temporal(src):
        return render_temporal(arr, col.date, col.zone)
    if (
        pa.types.is_timestamp(target)
        and target.tz is None
        and pa.types.is_timestamp(src)
        and src.tz is not None
    ):  # an instant: the wall time of the job's zone (the cast alone gave UTC's)
        arr = pc.local_timestamp(arr.cast(pa.timestamp(src.unit, col.zone)))
        src = arr.type
    if pa.types.is_decimal(target) and pa.types.is_floating(src):
        # Arrow's cast cuts a double's digits past the scale (2.675 became 2.67, 1e-7 0.00):
        # through its shortest text, as if read from a file, such a value does not convert
        return pc.cast(pc.cast(arr, pa.string()), target)
    if pa.types.is_floating(target) and pa.types.is_decimal(src):
        # Arrow's cast divides by 10^scale in binary (1.2345 became 1.2345000000000002); the
        # decimal's text parses to the nearest double
        return pc.cast(pc.cast(arr, pa.string()), target)
    if pa.types.is_decimal(target) and pa.types.is_integer(src) and target.scale <= 18:
        # Arrow refuses int64 -> decimal(5,2) for the type (every value dirty, 0 too); through
        # the widest decimal each value is checked against the precision
        return pc.cast(pc.cast(arr, pa.decimal128(38, target.scale)), target)
    return arr if src == target else pc.cast(arr, target)


def _holds_x(arr: pa.Array) -> bool:
    """Whether a string array holds an ``x`` or ``X`` (a hexadecimal number). The data buffer
    is searched first (a copy and ``memchr``: the compute kernel costs more than the cast)."""
    data = arr.buffers()[2]
    if data is None:
        return False
    raw = data.to_pybytes()
    if b"x" not in raw and b"X" not in raw:
        return False
    return bool(pc.any(pc.match_substring(arr, "x", ignore_case=True)).as_py())


def _ints(*n: int) -> pa.Array:
    """An int64 array made without Python values (``pa.array`` and ``pa.scalar`` import
    pandas)."""
    data = b"".join(v.to_bytes(8, "little", signed=True) for v in n)
    return pa.Array.from_buffers(pa.int64(), len(n), [None, pa.py_buffer(data)])


def _int(n: int) -> pa.Scalar:
    return _ints(n)[0]


_DAY_4, _DAY_28, _YY_PIVOT = _int(4), _int(28), _int(69)
_SEC_0, _SEC_1 = _int(0), _int(1)
#: 1900-01-01 to 1970-01-01 (25,567 days), in microseconds
_YEARS_1900_1970 = pa.Array.from_buffers(
    pa.duration("us"), 1, [None, pa.py_buffer((25567 * 86_400_000_000).to_bytes(8, "little"))]
)[0]
#: the days of the year (common and leap) of March 1-3 and the 1st of May, July, October and
#: December: where strptime's rolled days land
_LANDINGS = _ints(60, 61, 62, 63, 121, 122, 182, 183, 274, 275, 335, 336)


def no_rolled_days(text: pa.Array, parsed: pa.Array, fmt: str, zoned: bool) -> None:
    """Arrow's strptime takes any day up to 31 and rolls one past its month's end into the next
    month (``2024-02-30`` became 2024-03-01, ``2023-02-29`` 2023-03-01): such a text is no date.
    A rolled day lands on March 1-3 or the 1st of May, July, October or December (with an
    offset, moved to UTC: day 1-4 or the 28th-31st of any month); only those rows whose text
    Arrow would not print back alike are parsed again by Python's ``strptime``, which refuses
    the day. Day 366 (``%j``) of a common year rolls too (``2023-366`` became 2025-02-01), and
    so do seconds 60 and 61 (``23:59:60`` became the next day's 00:00:00), which Python's
    ``strptime`` reads as well: see ``_no_rolled_fields``. ``zoned``: ``fmt`` reads an offset
    (``parsed`` is in UTC). Raises ``pa.ArrowInvalid``. The ``cast`` transform uses it too."""
    _no_rolled_fields(text, parsed, fmt)
    if zoned:
        day = pc.day(parsed)
        near = pc.or_(pc.less_equal(day, _DAY_4), pc.greater_equal(day, _DAY_28))
    else:  # February's 29th-31st land on March 1-3, the 31st of a 30-day month on the 1st
        near = pc.is_in(pc.day_of_year(parsed), value_set=_LANDINGS)
    rows = pc.indices_nonzero(near)  # (a null is no row)
    if not len(rows):
        return
    texts = text.take(rows)
    if not zoned:  # a text Arrow prints back alike names the day it was read as
        # (in whole seconds: %S prints a fraction at any finer unit, and strptime reads none)
        back = pc.strftime(pc.cast(parsed.take(rows), pa.timestamp("s")), format=fmt)
        texts = texts.filter(pc.not_equal(back, texts))
    for value in texts.to_pylist():
        try:
            dt.datetime.strptime(value, fmt)
        except ValueError as e:
            if "day is out of range for month" in str(e):
                raise pa.ArrowInvalid(f"{value!r} names a day its month does not have") from None


def _no_rolled_fields(text: pa.Array, parsed: pa.Array, fmt: str) -> None:
    """Only a text holding ``366`` can name the 366th day, only one holding ``60`` or ``61``
    (and read as second 0 or 1 of the next minute) a second past 59. Python's
    ``time.strptime`` keeps the fields it read (``tm_yday`` beside the date it rolled to,
    ``tm_sec`` 60 or 61), so such rows are read again there."""
    plain = fmt.replace("%%", "")
    found = []
    if "%j" in plain:
        found.append(pc.match_substring(text, "366"))
    if "%S" in plain:
        second = pc.second(parsed)
        for digits, landing in (("60", _SEC_0), ("61", _SEC_1)):
            found.append(pc.and_(pc.match_substring(text, digits), pc.equal(second, landing)))
    if not found:
        return
    rows = pc.indices_nonzero(functools.reduce(pc.or_, found))
    for value in text.take(rows).to_pylist():
        try:
            st = time.strptime(value, fmt)
        except ValueError:
            continue  # Arrow's verdict stands where Python reads the text otherwise
        if st.tm_sec > 59:
            raise pa.ArrowInvalid(f"{value!r} names second {st.tm_sec} of a minute")
        day = dt.date(st.tm_year, st.tm_mon, st.tm_mday).timetuple().tm_yday
        if st.tm_yday != day:
            raise pa.ArrowInvalid(f"{value!r} names day {st.tm_yday} of a year of 365 days")


def _convert_all(raw: pa.RecordBatch, cols: Sequence[Column]) -> pa.RecordBatch:
    arrays = []
    for arr, col, name in zip(raw.columns, cols, raw.schema.names, strict=True):
        try:
            arrays.append(convert(arr, col))
        except pa.ArrowInvalid as e:
            if raw.num_rows == 1:
                raise DirtyRecordError(
                    f"column {col.pos} ({name}): cannot convert {arr[0].as_py()!r} to {col.label}"
                ) from None
            raise DirtyRecordError(f"column {col.pos} ({name}): {e}") from None
        except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
            raise FatalError(
                f"column {col.pos} ({name}): cannot convert {arr.type} to {col.label}: {e}"
            ) from None
    return pa.RecordBatch.from_arrays(arrays, names=raw.schema.names)


def assemble(
    batch: pa.RecordBatch, binding: Binding, position: Callable[[int], str]
) -> tuple[pa.RecordBatch | None, list[Dirty]]:
    """Select, convert and name the columns of a decoded ``batch``; add constants.

    Rows holding a value that does not convert are found by bisection (``isolate``) and returned
    as dirty records; ``position(i)`` says where the batch's row ``i`` is (``file row N, line
    L``)."""
    n = batch.num_rows
    names = batch.schema.names
    raw_arrays, raw_names, raw_cols = [], [], []
    for col, key, name in zip(binding.cols, binding.keys, binding.names, strict=True):
        if key is None:
            continue
        raw_arrays.append(batch.column(names.index(key)) if key in names else pa.nulls(n))
        raw_names.append(name)
        raw_cols.append(col)
    if not raw_cols:  # constants only
        return pa.RecordBatch.from_arrays(
            [pa.repeat(c.const, n) for c in binding.cols], names=binding.names
        ), []
    raw = pa.RecordBatch.from_arrays(raw_arrays, names=raw_names)
    dirty: list[Dirty] = []

    def on_dirty(offset: int, one: pa.RecordBatch, err: DirtyRecordError) -> None:
        dirty.append(Dirty(err.reason, row_of(one, 0), position(offset)))

    pieces = isolate(raw, lambda b: _convert_all(b, raw_cols), on_dirty)
    if not pieces:
        return None, dirty
    converted = pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)
    if len(raw_cols) == len(binding.cols):
        return converted, dirty
    arrays, it = [], iter(converted.columns)
    for col, key in zip(binding.cols, binding.keys, strict=True):
        arrays.append(pa.repeat(col.const, converted.num_rows) if key is None else next(it))
    return pa.RecordBatch.from_arrays(arrays, names=binding.names), dirty
