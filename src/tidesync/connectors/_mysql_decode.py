"""MySQL/MariaDB result rows to Arrow, column by column.

A batch of rows arrives as one buffer and the offset of each row's payload. Each column is
located for all rows at once with Arrow compute (field *j* starts where field *j-1* ended), so
Python never touches a value:

- text protocol (``COM_QUERY``): every value is a length-prefixed string; its bytes are gathered
  with one ``take`` over a zero-copy binary view of the buffer whose offsets alternate between
  the value and the gap after it, and Arrow casts the text to the column's type;
- binary protocol (``COM_STMT_EXECUTE``): a NULL bitmap per row, then integers and floats as
  little-endian bytes (gathered the same way into a contiguous buffer and viewed as their type,
  zero parsing), dates and times as small structs (read with vectorized arithmetic) and the rest
  as length-prefixed strings.

:func:`decode` then makes the batch of the reader's schema; a value without a lossless Arrow
form makes its row a dirty record instead of stopping the read.
"""

from __future__ import annotations

import datetime as dt
from array import array
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pymysql.constants import FIELD_TYPE, FLAG

__all__ = [
    "Column",
    "Decoded",
    "Raw",
    "arrow_type",
    "columns_text",
    "columns_binary",
    "decode",
    "PAD",
]

_BINARY_CHARSET = 63
#: bytes of zeros after a batch's buffer, so that fixed-width reads at a NULL's position stay inside
PAD = 16


@dataclass(frozen=True)
class Column:
    """A result column as the server describes it."""

    name: str
    type_code: int
    flags: int
    length: int
    scale: int
    charsetnr: int

    @property
    def unsigned(self) -> bool:
        return bool(self.flags & FLAG.UNSIGNED)


def arrow_type(c: Column, tiny1_bool: bool = True) -> pa.DataType:
    """The Arrow type a result column maps to, without loss (see docs/connectors/mysql.md)."""
    t, u = c.type_code, c.unsigned
    if t == FIELD_TYPE.TINY:
        if c.length == 1 and tiny1_bool:
            return pa.bool_()
        return pa.uint8() if u else pa.int8()
    if t == FIELD_TYPE.SHORT:
        return pa.uint16() if u else pa.int16()
    if t in (FIELD_TYPE.INT24, FIELD_TYPE.LONG):
        return pa.uint32() if u else pa.int32()
    if t == FIELD_TYPE.LONGLONG:
        return pa.uint64() if u else pa.int64()
    if t == FIELD_TYPE.YEAR:
        return pa.int16()
    if t == FIELD_TYPE.FLOAT:
        return pa.float32()
    if t == FIELD_TYPE.DOUBLE:
        return pa.float64()
    if t in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        scale = max(0, min(c.scale, 38))
        precision = c.length - (1 if c.scale > 0 else 0) - (0 if u else 1)
        precision = max(precision, scale, 1)
        return (
            pa.decimal128(precision, scale)
            if precision <= 38
            else pa.decimal256(min(precision, 76), scale)
        )
    if t in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return pa.date32()
    if t == FIELD_TYPE.DATETIME:
        return pa.timestamp("us")
    if t == FIELD_TYPE.TIMESTAMP:
        return pa.timestamp("us", tz="UTC")
    if t == FIELD_TYPE.TIME:
        return pa.time64("us")
    if t == FIELD_TYPE.BIT:
        return pa.bool_() if c.length == 1 else pa.uint64()
    if t == FIELD_TYPE.GEOMETRY:
        return pa.binary()
    if t == FIELD_TYPE.NULL:
        return pa.string()
    if t == FIELD_TYPE.JSON:
        return pa.string()
    return pa.binary() if c.charsetnr == _BINARY_CHARSET else pa.string()


_ARANGE = pa.array(range(1 << 10), pa.int32())
_I32 = pa.int32()
_ONE = pa.scalar(1, _I32)
_NULL_MARK = pa.scalar(0xFB, pa.uint8())


def _arange(n: int) -> pa.Array:
    """``0 .. n-1`` as int32 (cached; grows, never shrinks, whatever threads ask)."""
    global _ARANGE
    a = _ARANGE
    if n > len(a):
        a = pa.array(range(max(n, 2 * len(a))), _I32)
        if len(a) > len(_ARANGE):
            _ARANGE = a
    return a.slice(0, n)


def columns_text(data: Any, starts: array, ncols: int) -> list[pa.Array]:
    """Split the row payloads of ``data`` (row i begins at ``starts[i]``, an ``array('i')``) into
    ``ncols`` binary arrays, one gather per column."""
    raw = pa.py_buffer(data)
    b = pa.Array.from_buffers(pa.uint8(), len(data), [None, raw])
    n = len(starts)
    pos = pa.Array.from_buffers(_I32, n, [None, pa.py_buffer(starts)])
    ar = _arange(2 * n)
    perm = pc.add(
        pc.shift_right(ar, _ONE), pc.multiply(pc.bit_wise_and(ar, _ONE), pa.scalar(n, _I32))
    )
    even = pc.multiply(_arange(n), pa.scalar(2, _I32))
    out = []
    for _ in range(ncols):
        head = pc.take(b, pos)
        length = head.cast(_I32)
        start = pc.add(pos, _ONE)
        null = None
        mx = pc.max(head).as_py()
        if mx is not None and mx >= 0xFB:
            null = pc.equal(head, _NULL_MARK)
            if mx > 0xFB:
                length, start = _long_lengths(b, pos, head, length, start)
            length = pc.if_else(null, pa.scalar(0, _I32), length)
        end = pc.add(start, length)
        offsets = pc.take(pa.concat_arrays([start, end]), perm)
        offsets = pa.concat_arrays([offsets, offsets.slice(2 * n - 1, 1)])
        spans = pa.Array.from_buffers(pa.binary(), 2 * n, [None, offsets.buffers()[1], raw])
        values = pc.take(spans, even)
        if null is not None and null.true_count:
            values = pa.Array.from_buffers(
                pa.binary(), n, [pc.invert(null).buffers()[1], *values.buffers()[1:]]
            )
        out.append(values)
        pos = end
    return out


def _long_lengths(
    b: pa.Array, pos: pa.Array, head: pa.Array, length: pa.Array, start: pa.Array
) -> tuple[pa.Array, pa.Array]:
    """Length-encoded lengths of 2, 3 or 8 bytes (values of 251 bytes and more)."""
    for code, width in ((0xFC, 2), (0xFD, 3), (0xFE, 8)):
        mask = pc.equal(head, code)
        if not mask.true_count:
            continue
        at = pc.filter(pos, mask).cast(pa.int64())
        v = pa.array([0] * len(at), pa.int64())
        for k in range(width):
            byte = pc.take(b, pc.add(at, 1 + k)).cast(pa.int64())
            v = pc.bit_wise_or(v, pc.shift_left(byte, 8 * k))
        length = pc.replace_with_mask(length, mask, v.cast(_I32))
        start = pc.replace_with_mask(start, mask, pc.add(at, 1 + width).cast(_I32))
    return length, start


# -- binary protocol rows ------------------------------------------------------------------------

_FIXED = {  # type code -> (bytes, signed type, unsigned type)
    FIELD_TYPE.TINY: (1, pa.int8(), pa.uint8()),
    FIELD_TYPE.SHORT: (2, pa.int16(), pa.uint16()),
    FIELD_TYPE.YEAR: (2, pa.int16(), pa.int16()),
    FIELD_TYPE.INT24: (4, pa.int32(), pa.uint32()),
    FIELD_TYPE.LONG: (4, pa.int32(), pa.uint32()),
    FIELD_TYPE.LONGLONG: (8, pa.int64(), pa.uint64()),
    FIELD_TYPE.FLOAT: (4, pa.float32(), pa.float32()),
    FIELD_TYPE.DOUBLE: (8, pa.float64(), pa.float64()),
}
_DATES = (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP)
_I64 = pa.int64()


@dataclass
class Raw:
    """A column of the binary protocol already in its Arrow form, plus the rows whose value
    has none (an impossible date), as (row, reason)."""

    array: pa.Array
    bad: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.array)


def columns_binary(data: Any, starts: array, cols: list[Column]) -> list[pa.Array | Raw]:
    """Split binary-protocol rows (``data`` ends with :data:`PAD` zero bytes) into one array per
    column: fixed-width numbers as their Arrow type, dates and times as :class:`Raw`, the rest
    (decimals, strings, bits) as binary arrays of the value bytes, like :func:`columns_text`."""
    raw = pa.py_buffer(data)
    b = pa.Array.from_buffers(pa.uint8(), len(data), [None, raw])
    n = len(starts)
    row = pa.Array.from_buffers(_I32, n, [None, pa.py_buffer(starts)])
    ar = _arange(2 * n)
    perm = pc.add(
        pc.shift_right(ar, _ONE), pc.multiply(pc.bit_wise_and(ar, _ONE), pa.scalar(n, _I32))
    )
    even = pc.multiply(_arange(n), pa.scalar(2, _I32))
    pos = pc.add(row, pa.scalar(1 + (len(cols) + 9) // 8, _I32))  # after the header and the bitmap
    zero = pa.scalar(0, _I32)
    out: list[pa.Array | Raw] = []
    for j, c in enumerate(cols):
        bit = j + 2
        flags = pc.take(b, pc.add(row, pa.scalar(1 + bit // 8, _I32)))
        null = pc.not_equal(
            pc.bit_wise_and(flags, pa.scalar(1 << (bit % 8), pa.uint8())), pa.scalar(0, pa.uint8())
        )
        any_null = null.true_count > 0
        validity = pc.invert(null).buffers()[1] if any_null else None
        tc = c.type_code
        if tc in _FIXED:
            w, signed, unsigned = _FIXED[tc]
            t = unsigned if c.unsigned else signed
            width = pa.scalar(w, _I32)
            ends = pc.add(pos, width)
            values = pc.take(_spans(raw, pos, ends, perm, n), even)
            out.append(pa.Array.from_buffers(t, n, [validity, values.buffers()[2]]))
            step = pc.if_else(null, zero, width) if any_null else width
        elif tc in _DATES or tc == FIELD_TYPE.TIME:
            size = (
                pc.if_else(null, pa.scalar(0, pa.uint8()), pc.take(b, pos))
                if any_null
                else pc.take(b, pos)
            )
            parse = _binary_time if tc == FIELD_TYPE.TIME else _binary_date
            out.append(parse(b, pos, size.cast(_I32), null if any_null else None, tc))
            step = pc.add(size.cast(_I32), pc.if_else(null, zero, _ONE) if any_null else _ONE)
        elif tc == FIELD_TYPE.NULL:
            out.append(pa.nulls(n, pa.binary()))
            step = zero
        else:
            head = pc.take(b, pos)
            length = head.cast(_I32)
            start = pc.add(pos, _ONE)
            mx = pc.max(head).as_py()
            if mx is not None and mx > 0xFB:
                length, start = _long_lengths(b, pos, head, length, start)
            if any_null:
                length = pc.if_else(null, zero, length)
                start = pc.if_else(null, pos, start)
            end = pc.add(start, length)
            values = pc.take(_spans(raw, start, end, perm, n), even)
            if any_null:
                values = pa.Array.from_buffers(pa.binary(), n, [validity, *values.buffers()[1:]])
            out.append(values)
            step = pc.subtract(end, pos)
        pos = pc.add(pos, step)
    return out


def _spans(raw: pa.Buffer, start: pa.Array, end: pa.Array, perm: pa.Array, n: int) -> pa.Array:
    """A zero-copy binary array over ``raw`` whose even elements are ``[start, end)``."""
    offsets = pc.take(pa.concat_arrays([start, end]), perm)
    offsets = pa.concat_arrays([offsets, offsets.slice(2 * n - 1, 1)])
    return pa.Array.from_buffers(pa.binary(), 2 * n, [None, offsets.buffers()[1], raw])


def _byte(b: pa.Array, pos: pa.Array, k: int) -> pa.Array:
    return pc.take(b, pc.add(pos, pa.scalar(k, _I32))).cast(_I64)


def _le(b: pa.Array, pos: pa.Array, k: int, width: int) -> pa.Array:
    v = _byte(b, pos, k)
    for i in range(1, width):
        v = pc.bit_wise_or(v, pc.shift_left(_byte(b, pos, k + i), 8 * i))
    return v


def _over(size: pa.Array, at_least: int, v: pa.Array) -> pa.Array:
    """``v`` where the struct is long enough to hold it, else 0."""
    return pc.if_else(pc.greater_equal(size, pa.scalar(at_least, _I32)), v, pa.scalar(0, _I64))


def _binary_date(b: pa.Array, pos: pa.Array, size: pa.Array, null: pa.Array | None, tc: int) -> Raw:
    """DATE / DATETIME / TIMESTAMP: length 0, 4, 7 or 11, then year(2) month day [h m s [us(4)]]."""
    y = _over(size, 4, _le(b, pos, 1, 2))
    m = _over(size, 4, _byte(b, pos, 3))
    d = _over(size, 4, _byte(b, pos, 4))
    zero_date = pc.equal(pc.add(pc.add(y, m), d), pa.scalar(0, _I64))
    days = _days_from_civil(y, m, d)
    valid_day = pc.and_(
        pc.and_(pc.greater_equal(m, 1), pc.less_equal(m, 12)),
        pc.and_(pc.greater_equal(d, 1), pc.less_equal(d, _days_in_month(y, m))),
    )
    is_null = zero_date if null is None else pc.or_(null, zero_date)
    bad_mask = pc.and_(pc.invert(is_null), pc.invert(valid_day))
    keep_null = pc.or_(is_null, bad_mask)
    problems: list[tuple[int, str]] = []
    if bad_mask.true_count:
        idx = pc.indices_nonzero(bad_mask).to_pylist()
        ys, ms, ds = (pc.take(x, pa.array(idx, pa.int64())).to_pylist() for x in (y, m, d))
        problems = [
            (i, f"'{yy:04d}-{mm:02d}-{dd:02d}' is not a valid date")
            for i, yy, mm, dd in zip(idx, ys, ms, ds, strict=True)
        ]
    if tc in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        out = pc.if_else(keep_null, pa.scalar(None, _I64), days).cast(pa.int32()).cast(pa.date32())
        return Raw(out, problems)
    secs = pc.add(
        pc.add(
            pc.multiply(_over(size, 7, _byte(b, pos, 5)), 3600),
            pc.multiply(_over(size, 7, _byte(b, pos, 6)), 60),
        ),
        _over(size, 7, _byte(b, pos, 7)),
    )
    us = pc.add(
        pc.multiply(pc.add(pc.multiply(days, 86400), secs), 1_000_000),
        _over(size, 11, _le(b, pos, 8, 4)),
    )
    out = pc.if_else(keep_null, pa.scalar(None, _I64), us).cast(pa.timestamp("us"))
    return Raw(out, problems)


def _binary_time(b: pa.Array, pos: pa.Array, size: pa.Array, null: pa.Array | None, tc: int) -> Raw:
    """TIME: length 0, 8 or 12, then negative(1) days(4) h m s [us(4)]; a time of day or dirty."""
    neg = pc.not_equal(_over(size, 8, _byte(b, pos, 1)), pa.scalar(0, _I64))
    hours = pc.add(
        pc.multiply(_over(size, 8, _le(b, pos, 2, 4)), 24), _over(size, 8, _byte(b, pos, 6))
    )
    secs = pc.add(
        pc.add(pc.multiply(hours, 3600), pc.multiply(_over(size, 8, _byte(b, pos, 7)), 60)),
        _over(size, 8, _byte(b, pos, 8)),
    )
    us = pc.add(pc.multiply(secs, 1_000_000), _over(size, 12, _le(b, pos, 9, 4)))
    bad_mask = pc.or_(
        pc.and_(neg, pc.not_equal(us, pa.scalar(0, _I64))), pc.greater_equal(us, _DAY_US)
    )
    if null is not None:
        bad_mask = pc.and_(bad_mask, pc.invert(null))
    problems: list[tuple[int, str]] = []
    if bad_mask.true_count:
        idx = pc.indices_nonzero(bad_mask).to_pylist()
        for i, v, ng in zip(
            idx,
            pc.take(us, pa.array(idx, pa.int64())).to_pylist(),
            pc.take(neg, pa.array(idx, pa.int64())).to_pylist(),
            strict=True,
        ):
            problems.append((i, f"'{_duration(v, ng)}' {_NOT_A_TIME}"))
    hide = bad_mask if null is None else pc.or_(null, bad_mask)
    out = pc.if_else(hide, pa.scalar(None, _I64), us).cast(pa.time64("us"))
    return Raw(out, problems)


def _duration(us: int, negative: bool) -> str:
    s, frac = divmod(us, 1_000_000)
    h, rem = divmod(s, 3600)
    text = f"{'-' if negative else ''}{h:02d}:{rem // 60:02d}:{rem % 60:02d}"
    return text + (f".{frac:06d}" if frac else "")


def _days_from_civil(y: pa.Array, m: pa.Array, d: pa.Array) -> pa.Array:
    """Days since 1970-01-01 of the proleptic Gregorian y-m-d (H. Hinnant's algorithm), with the
    year shifted by 4800 so that every division is of non-negative numbers."""
    early = pc.less_equal(m, 2)
    yy = pc.add(pc.subtract(y, pc.if_else(early, 1, 0).cast(_I64)), 4800)
    era = pc.divide(yy, 400)
    yoe = pc.subtract(yy, pc.multiply(era, 400))
    mp = pc.if_else(early, pc.add(m, 9), pc.subtract(m, 3))
    doy = pc.add(pc.divide(pc.add(pc.multiply(mp, 153), 2), 5), pc.subtract(d, 1))
    doe = pc.add(
        pc.subtract(pc.add(pc.multiply(yoe, 365), pc.divide(yoe, 4)), pc.divide(yoe, 100)), doy
    )
    return pc.subtract(pc.add(pc.multiply(era, 146097), doe), 719468 + 12 * 146097)


_MONTH_DAYS = pa.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], _I64)


def _days_in_month(y: pa.Array, m: pa.Array) -> pa.Array:
    base = pc.take(
        _MONTH_DAYS, pc.if_else(pc.and_(pc.greater_equal(m, 1), pc.less_equal(m, 12)), m, 0)
    )
    leap = pc.and_(
        pc.equal(pc.bit_wise_and(y, 3), 0),
        pc.or_(pc.not_equal(_mod(y, 100), 0), pc.equal(_mod(y, 400), 0)),
    )
    return pc.add(base, pc.if_else(pc.and_(leap, pc.equal(m, 2)), 1, 0).cast(_I64))


def _mod(v: pa.Array, k: int) -> pa.Array:
    return pc.subtract(v, pc.multiply(pc.divide(v, k), k))


# -- decoding text to types ----------------------------------------------------------------------


@dataclass
class Decoded:
    batch: pa.RecordBatch
    bad: list[tuple[int, str]]  # (row index in the raw batch, reason) of rows dropped


def decode(cols: list[Column], raw: list[Any], schema: pa.Schema) -> Decoded:
    """Cast raw text columns to ``schema``; rows holding a value that has no lossless Arrow form
    (a TIME outside a day, an impossible date, a TINYINT(1) that is not 0 or 1 read as boolean)
    are dropped from the batch and returned in ``bad``."""
    n = len(raw[0])
    arrays: list[pa.Array] = []
    bad: dict[int, str] = {}
    for c, r, f in zip(cols, raw, schema, strict=True):
        if isinstance(r, Raw):
            a, problems = _typed(r.array, f.type), r.bad
        elif not pa.types.is_binary(r.type):
            a, problems = _typed_number(r, f.type)
        else:
            a, problems = _cast(c, r, f.type)
        arrays.append(a)
        for i, why in problems:
            bad.setdefault(i, f"column {f.name!r}: {why}")
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    if bad:
        keep = pa.array([i not in bad for i in range(n)])
        batch = batch.filter(keep)
    return Decoded(batch, sorted(bad.items()))


def _typed(a: pa.Array, t: pa.DataType) -> pa.Array:
    return a if a.type == t else a.cast(t)


_TINY1 = "is neither 0 nor 1; read TINYINT(1) as a number with tinyInt1isBit: false"


def _typed_number(a: pa.Array, t: pa.DataType) -> tuple[pa.Array, list[tuple[int, str]]]:
    """A number of the binary protocol as the schema's type (TINYINT(1) -> bool checks 0/1)."""
    if pa.types.is_boolean(t):
        ints = a.cast(_I64)
        bad = pc.and_(ints.is_valid(), pc.invert(pc.is_in(ints, pa.array([0, 1], _I64))))
        return pc.not_equal(ints, pa.scalar(0, _I64)), _rows(bad, ints, _TINY1)
    return _typed(a, t), []


def _text(r: pa.Array) -> pa.Array:
    return r.view(pa.string())


def _cast(c: Column, r: pa.Array, t: pa.DataType) -> tuple[pa.Array, list[tuple[int, str]]]:
    tc = c.type_code
    if pa.types.is_binary(t):
        return r.cast(pa.binary()), []
    if pa.types.is_string(t):
        if tc == FIELD_TYPE.NULL:
            return pa.nulls(len(r), pa.string()), []
        try:
            return r.cast(pa.string()), []
        except pa.ArrowInvalid:
            return _invalid_utf8(r)
    if tc == FIELD_TYPE.BIT:
        return _bits(r, t), []
    if pa.types.is_boolean(t):
        ints = _text(r).cast(pa.int64())
        bad = pc.and_(ints.is_valid(), pc.invert(pc.is_in(ints, pa.array([0, 1], pa.int64()))))
        problems = _rows(bad, r, _TINY1)
        return pc.not_equal(ints, 0), problems
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _text(r).cast(t), []
    if pa.types.is_date(t):
        return _dates(r, t)
    if pa.types.is_timestamp(t):
        return _timestamps(r, t)
    if pa.types.is_time(t):
        return _times(r)
    return _text(r).cast(t), []


def _rows(mask: pa.Array, r: pa.Array, why: str) -> list[tuple[int, str]]:
    if not mask.true_count:
        return []
    idx = pc.indices_nonzero(mask).to_pylist()
    vals = pc.take(r, pa.array(idx, pa.int64())).to_pylist()
    return [(i, f"{_show(v)} {why}") for i, v in zip(idx, vals, strict=True)]


def _show(v: Any) -> str:
    if isinstance(v, bytes):
        return repr(v.decode("utf-8", "replace"))
    return repr(v)


def _invalid_utf8(r: pa.Array) -> tuple[pa.Array, list[tuple[int, str]]]:
    vals = r.to_pylist()
    out: list[str | None] = []
    problems: list[tuple[int, str]] = []
    for i, v in enumerate(vals):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(v.decode("utf-8"))
        except UnicodeDecodeError:
            out.append(None)
            problems.append((i, f"{v!r} is not valid UTF-8"))
    return pa.array(out, pa.string()), problems


_ZERO_DATE = "0000-00-00"


def _zero_to_null(s: pa.Array) -> pa.Array:
    zero = pc.starts_with(s, _ZERO_DATE)
    if zero.true_count:
        s = pc.if_else(zero, pa.scalar(None, s.type), s)
    return s


def _dates(r: pa.Array, t: pa.DataType) -> tuple[pa.Array, list[tuple[int, str]]]:
    s = _text(r)
    try:
        return s.cast(t), []
    except pa.ArrowInvalid:
        s = _zero_to_null(s)
    try:
        return s.cast(t), []
    except pa.ArrowInvalid:
        return _one_by_one(s, t, lambda v: dt.date.fromisoformat(v))


def _timestamps(r: pa.Array, t: pa.DataType) -> tuple[pa.Array, list[tuple[int, str]]]:
    s = _text(r)
    naive = pa.timestamp(t.unit)
    problems: list[tuple[int, str]] = []
    try:
        out = s.cast(naive)
    except pa.ArrowInvalid:
        s = _zero_to_null(s)
        try:
            out = s.cast(naive)
        except pa.ArrowInvalid:
            out, problems = _one_by_one(s, naive, lambda v: dt.datetime.fromisoformat(v))
    return (out.cast(t) if t.tz else out), problems


def _one_by_one(s: pa.Array, t: pa.DataType, parse: Any) -> tuple[pa.Array, list[tuple[int, str]]]:
    out: list[Any] = []
    problems: list[tuple[int, str]] = []
    for i, v in enumerate(s.to_pylist()):
        if v is None:
            out.append(None)
            continue
        try:
            out.append(parse(v))
        except ValueError:
            out.append(None)
            problems.append((i, f"{v!r} is not a valid {t}"))
    return pa.array(out, t), problems


_DAY_US = 86_400_000_000
_NOT_A_TIME = (
    "is not a time of day (MySQL TIME holds durations); "
    "read it as text with CAST(col AS CHAR) in column"
)


def _times(r: pa.Array) -> tuple[pa.Array, list[tuple[int, str]]]:
    """MySQL TIME is a signed duration up to 838:59:59; Arrow's time64 is a time of day, so
    values outside [00:00, 24:00) are reported, not wrapped."""
    s = _text(r)
    neg = pc.starts_with(s, "-")
    body = pc.utf8_ltrim(s, "-")
    whole = pc.split_pattern(body, ".", max_splits=1)
    hms = pc.split_pattern(pc.list_element(whole, 0), ":")
    h = pc.list_element(hms, 0).cast(pa.int64())
    m = pc.list_element(hms, 1).cast(pa.int64())
    sec = pc.list_element(hms, 2).cast(pa.int64())
    frac_parts = pc.list_slice(whole, 1, 2)
    frac = pc.list_flatten(frac_parts)
    has_frac = pc.greater(pc.list_value_length(whole), 1)
    us = pa.array([0] * len(s), pa.int64())
    if has_frac.true_count:
        f = pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 6, "0"), 0, 6).cast(pa.int64())
        us = pc.replace_with_mask(us, pc.fill_null(has_frac, False), f)
    total = pc.add(
        pc.multiply(pc.add(pc.multiply(pc.add(pc.multiply(h, 60), m), 60), sec), 1_000_000), us
    )
    bad = pc.fill_null(
        pc.or_(pc.and_(neg, pc.not_equal(total, 0)), pc.greater_equal(total, _DAY_US)), False
    )
    problems = _rows(bad, r, _NOT_A_TIME)
    if problems:
        total = pc.if_else(bad, pa.scalar(None, pa.int64()), total)
    return total.cast(pa.time64("us")), problems


def _bits(r: pa.Array, t: pa.DataType) -> pa.Array:
    """BIT(n) arrives as ceil(n/8) raw big-endian bytes."""
    if len(r) == 0:
        return pa.array([], t)
    lengths = pc.binary_length(r)
    width = pc.max(lengths).as_py() or 0
    offsets = r.buffers()[1]
    starts = pa.Array.from_buffers(_I32, len(r), [None, offsets], offset=r.offset).cast(pa.int64())
    data = pa.Array.from_buffers(pa.uint8(), len(r.buffers()[2]), [None, r.buffers()[2]])
    v = pa.array([0] * len(r), pa.uint64())
    for k in range(width):
        valid = pc.greater(lengths, k)
        at = pc.if_else(valid, pc.add(starts, k), 0)
        byte = pc.take(data, at).cast(pa.uint64())
        v = pc.if_else(valid, pc.bit_wise_or(pc.shift_left(v, pa.scalar(8, pa.uint64())), byte), v)
    v = pc.if_else(r.is_valid(), v, pa.scalar(None, pa.uint64()))
    return pc.not_equal(v, pa.scalar(0, pa.uint64())) if pa.types.is_boolean(t) else v
