"""MySQL/MariaDB result rows to Arrow, column by column.

A batch of rows arrives as one buffer and the offset of each row's payload. Each column is
located for all rows at once (field *j* starts where field *j-1* ended), so Python never touches
a value:

- text protocol (``COM_QUERY``): every value is a length-prefixed string; its bytes are gathered
  with one Arrow ``take`` over a zero-copy binary view of the buffer whose offsets alternate
  between the value and the gap after it, and Arrow casts the text to the column's type;
- binary protocol (``COM_STMT_EXECUTE``): a NULL bitmap per row, then integers and floats as
  little-endian bytes (gathered with numpy into an aligned array and handed to Arrow as their
  type: zero parsing), dates and times as small structs (gathered the same way, viewed as a
  numpy structured type and converted with vectorized arithmetic and table look-ups) and the
  rest as length-prefixed strings (gathered like the text protocol's). The layout is described
  above :func:`columns_binary`.

:func:`decode` then makes the batch of the reader's schema; a value without a lossless Arrow
form makes its row a dirty record instead of stopping the read.
"""

from __future__ import annotations

import datetime as dt
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np
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


_I32 = pa.int32()


def _numbers(values: np.ndarray) -> pa.Array:
    # from the buffer: pa.array and pa.scalar import pandas at their first use (0.25 s), which
    # the binlog reader (mysqlcdc imports this module) otherwise never needs
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)]
    )


_ARANGE = _numbers(np.arange(1 << 10, dtype=np.int32))
_ONE = _numbers(np.ones(1, np.int32))[0]
_NULL_MARK = _numbers(np.full(1, 0xFB, np.uint8))[0]


def _i32(n: int) -> pa.Scalar:
    """``n`` as an int32 scalar, without ``pa.scalar`` (see :func:`_numbers`)."""
    return _numbers(np.full(1, n, np.int32))[0]


def text_scalar(value: bytes, t: pa.DataType) -> pa.Scalar:
    """``value`` as a scalar of the binary or string type ``t``, without ``pa.scalar``."""
    offsets = pa.py_buffer(np.array([0, len(value)], np.int32))
    one = pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(value)])
    return (one if t == pa.binary() else one.cast(t))[0]


_ZERO_ONE = _numbers(np.array([0, 1], np.int64))
_ZERO = _ZERO_ONE[0]


def _i64(n: int) -> pa.Scalar:
    return _numbers(np.full(1, n, np.int64))[0]


_FALSE = pa.Array.from_buffers(pa.bool_(), 1, [None, pa.py_buffer(b"\x00")])[0]


def _arange(n: int) -> pa.Array:
    """``0 .. n-1`` as int32 (cached; grows, never shrinks, whatever threads ask)."""
    global _ARANGE
    a = _ARANGE
    if n > len(a):
        a = _numbers(np.arange(max(n, 2 * len(a)), dtype=np.int32))
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
    perm = pc.add(pc.shift_right(ar, _ONE), pc.multiply(pc.bit_wise_and(ar, _ONE), _i32(n)))
    even = pc.multiply(_arange(n), _i32(2))
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
            length = pc.if_else(null, _i32(0), length)
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
#
# A row of the binary protocol is a 0x00 header byte, a NULL bitmap of (columns + 9) // 8 bytes
# (column j is bit j + 2), then the values of the non-NULL columns, back to back:
#
# - integers and floats: 1, 2, 4 or 8 little-endian bytes (MEDIUMINT takes 4, YEAR 2);
# - DATE, DATETIME, TIMESTAMP: a length byte (0, 4, 7 or 11), then that many bytes of the struct
#   year <u2, month, day, hour, minute, second, microsecond <u4 (the fields left out are 0);
# - TIME: a length byte (0, 8 or 12), then that many bytes of the struct negative, days <u4,
#   hour, minute, second, microsecond <u4;
# - the rest (decimals, strings, BIT, JSON, ...): a length-encoded integer, then that many bytes.
#
# Columns are located left to right for all rows at once: ``pos`` holds, per row, where the current
# column's value starts, and moves past it (by 0 for a NULL). Values are gathered with numpy fancy
# indexing over a view of the buffer that has one value starting at every byte (:func:`_at`),
# which copies them into an aligned array; Arrow arrays are then made over those arrays without
# a copy. Reads at a NULL's position (or past a short date) see the next value's bytes, or the
# batch's PAD bytes at its end: they are masked, never used. numpy and Arrow release the GIL in
# their loops, so splits decode in parallel.

_FIXED = {  # type code -> (signed, unsigned) little-endian dtype; the width is its itemsize
    FIELD_TYPE.TINY: ("i1", "u1"),
    FIELD_TYPE.SHORT: ("<i2", "<u2"),
    FIELD_TYPE.YEAR: ("<i2", "<i2"),
    FIELD_TYPE.INT24: ("<i4", "<u4"),
    FIELD_TYPE.LONG: ("<i4", "<u4"),
    FIELD_TYPE.LONGLONG: ("<i8", "<u8"),
    FIELD_TYPE.FLOAT: ("<f4", "<f4"),
    FIELD_TYPE.DOUBLE: ("<f8", "<f8"),
}
_DATES = (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP)
_I64 = pa.int64()

#: a DATE/DATETIME/TIMESTAMP as on the wire, length byte first (packed: 12 bytes); ``ymd``
#: overlays year, month and day, to test for the zero date at once
_DATE = np.dtype(
    {
        "names": ["len", "year", "month", "day", "hour", "minute", "second", "us", "ymd"],
        "formats": ["u1", "<u2", "u1", "u1", "u1", "u1", "u1", "<u4", "<u4"],
        "offsets": [0, 1, 3, 4, 5, 6, 7, 8, 1],
        "itemsize": 12,
    }
)
#: a TIME as on the wire, length byte first (packed: 13 bytes)
_TIME = np.dtype(
    [
        ("len", "u1"),
        ("negative", "u1"),
        ("days", "<u4"),
        ("hour", "u1"),
        ("minute", "u1"),
        ("second", "u1"),
        ("us", "<u4"),
    ]
)
assert max(_DATE.itemsize, _TIME.itemsize, 9) <= PAD  # reads at a value's position stay inside


# Days since 1970-01-01 are looked up, not computed: the days before January 1st of each year
# 0..65535 (the range of year <u2), then, by ``month + 256 * leap``, the days before the month and
# the days in it. Months outside 1..12 have 0 days, so every day of them is invalid.
_YEAR = np.arange(1 << 16)
_LEAP = ((_YEAR % 4 == 0) & ((_YEAR % 100 != 0) | (_YEAR % 400 == 0))).astype(np.intp)
_YEAR_DAYS = (_YEAR - 1970).astype("M8[Y]").astype("M8[D]").astype(np.int64)
_MONTH_DAYS = np.zeros(512, np.int64)
_MONTH_DAYS[1:13] = _MONTH_DAYS[257:269] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]
_MONTH_DAYS[258] = 29
_BEFORE_MONTH = np.zeros(512, np.int64)
_BEFORE_MONTH[2:13] = np.cumsum(_MONTH_DAYS[1:12])
_BEFORE_MONTH[258:269] = np.cumsum(_MONTH_DAYS[257:268])


@dataclass
class Raw:
    """A column of the binary protocol already in its Arrow form, plus the rows whose value
    has none (an impossible date), as (row, reason)."""

    array: pa.Array
    bad: list[tuple[int, str]]

    def __len__(self) -> int:
        return len(self.array)


def _at(data: Any, dtype: np.dtype) -> np.ndarray:
    """``data`` as an array of ``dtype`` with a value starting at every byte (stride 1, values
    overlapping): ``_at(data, t)[pos]`` gathers the values at the byte positions ``pos`` into an
    aligned array. (``np.take`` on such a view is many times slower than indexing.)"""
    return np.ndarray((len(data) - dtype.itemsize + 1,), dtype, buffer=data, strides=(1,))


def _validity(null: np.ndarray | None) -> pa.Buffer | None:
    """An Arrow validity bitmap: set where ``null`` is not."""
    return None if null is None else pa.py_buffer(np.packbits(~null, bitorder="little"))


def columns_binary(data: Any, starts: array, cols: list[Column]) -> list[pa.Array | Raw]:
    """Split binary-protocol rows (``data`` ends with :data:`PAD` zero bytes; row i begins at
    ``starts[i]``) into one array per column: fixed-width numbers as their Arrow type, dates
    and times as :class:`Raw`, the rest (decimals, strings, bits) as binary arrays of the
    value bytes, like :func:`columns_text`."""
    u8 = np.frombuffer(data, np.uint8)
    row = np.frombuffer(starts, np.int32).astype(np.intp)
    width = (len(cols) + 9) // 8  # of the NULL bitmap
    pos = row + (1 + width)  # after the header and the bitmap
    bitmap = _at(data, np.dtype((np.void, width)))[row + 1].view(np.uint8).reshape(-1, width)
    some = [int(np.bitwise_or.reduce(bitmap[:, k])) for k in range(width)]  # bits set in any row
    out: list[pa.Array | Raw] = []
    for j, c in enumerate(cols):
        byte, bit = divmod(j + 2, 8)
        null = (bitmap[:, byte] & (1 << bit)) != 0 if some[byte] & (1 << bit) else None
        tc = c.type_code
        if tc in _FIXED:
            t = np.dtype(_FIXED[tc][c.unsigned])
            values = _at(data, t)[pos]
            out.append(
                pa.Array.from_buffers(
                    pa.from_numpy_dtype(t), len(pos), [_validity(null), pa.py_buffer(values)]
                )
            )
            pos += t.itemsize if null is None else np.where(null, 0, t.itemsize)
        elif tc in _DATES or tc == FIELD_TYPE.TIME:
            v = _struct(data, pos, _TIME if tc == FIELD_TYPE.TIME else _DATE)
            size = v["len"].copy()
            if null is not None:
                size[null] = 0
            if tc == FIELD_TYPE.TIME:
                out.append(_binary_time(v, size, null))
            else:
                out.append(_binary_date(v, size, tc))
            pos += size
            pos += 1 if null is None else ~null
        elif tc == FIELD_TYPE.NULL:
            out.append(pa.nulls(len(pos), pa.binary()))
        else:
            values, pos = _length_prefixed(data, u8, pos, null)
            out.append(values)
    return out


def _struct(data: Any, pos: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The ``dtype`` structs at ``pos``. Fields past a value's length hold the next value's
    bytes (or, at a NULL, whatever follows): the caller ignores them by the length."""
    return _at(data, np.dtype((np.void, dtype.itemsize)))[pos].view(dtype)


def _binary_date(v: np.ndarray, size: np.ndarray, tc: int) -> Raw:
    """DATE / DATETIME / TIMESTAMP structs of ``size`` bytes (0 at a NULL) to date32 or
    timestamp[us]. The zero date (length 0, or all 0) is NULL; an impossible date (month 0,
    February 30th) is a dirty row."""
    y = v["year"].astype(np.intp)
    m = v["month"]
    d = v["day"].astype(np.int64)
    zero = (size < 4) | (v["ymd"] == 0)
    key = m + (_LEAP[y] << 8)  # month + 256 * leap: the index of the month tables
    bad = (d < 1) | (d > _MONTH_DAYS[key])
    bad &= ~zero
    hide = zero
    problems: list[tuple[int, str]] = []
    if bad.any():
        hide = zero | bad
        idx = np.flatnonzero(bad)
        problems = [
            (i, f"'{yy:04d}-{mm:02d}-{dd:02d}' is not a valid date")
            for i, yy, mm, dd in zip(
                idx.tolist(), y[idx].tolist(), m[idx].tolist(), d[idx].tolist(), strict=True
            )
        ]
    days = _YEAR_DAYS[y] + _BEFORE_MONTH[key] + (d - 1)
    validity = _validity(hide if hide.any() else None)
    if tc in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        date = pa.Array.from_buffers(
            pa.date32(), len(v), [validity, pa.py_buffer(days.astype(np.int32))]
        )
        return Raw(date, problems)
    tod = v["hour"].astype(np.int64) * 3600 + v["minute"].astype(np.int64) * 60 + v["second"]
    tod *= size >= 7
    us = (days * 86400 + tod) * 1_000_000
    us += v["us"] * (size >= 11)
    return Raw(
        pa.Array.from_buffers(pa.timestamp("us"), len(v), [validity, pa.py_buffer(us)]), problems
    )


def _binary_time(v: np.ndarray, size: np.ndarray, null: np.ndarray | None) -> Raw:
    """TIME structs of ``size`` bytes (0 at a NULL) to time64[us]; a negative time or one of a
    day or more is a dirty row (Arrow's time is a time of day, MySQL's a duration)."""
    whole = size >= 8
    neg = (v["negative"] != 0) & whole
    hours = v["days"].astype(np.int64) * 24 + v["hour"]
    secs = hours * 3600 + (v["minute"].astype(np.int64) * 60 + v["second"])
    us = np.where(whole, secs, 0) * 1_000_000
    us += np.where(size >= 12, v["us"], 0)
    bad = (neg & (us != 0)) | (us >= _DAY_US)
    hide = null
    problems: list[tuple[int, str]] = []
    if bad.any():
        hide = bad if null is None else null | bad
        idx = np.flatnonzero(bad)
        problems = [
            (i, f"'{_duration(t, ng)}' {_NOT_A_TIME}")
            for i, t, ng in zip(idx.tolist(), us[idx].tolist(), neg[idx].tolist(), strict=True)
        ]
    time = pa.Array.from_buffers(pa.time64("us"), len(v), [_validity(hide), pa.py_buffer(us)])
    return Raw(time, problems)


def _duration(us: int, negative: bool) -> str:
    s, frac = divmod(us, 1_000_000)
    h, rem = divmod(s, 3600)
    text = f"{'-' if negative else ''}{h:02d}:{rem // 60:02d}:{rem % 60:02d}"
    return text + (f".{frac:06d}" if frac else "")


# the length-encoded integer: first byte 0xFC, 0xFD or 0xFE -> 2, 3 or 8 little-endian bytes follow
_LENGTH_WIDTH = np.zeros(256, np.intp)
_LENGTH_WIDTH[0xFC:0xFF] = [2, 3, 8]
_LENGTH_MASK = np.zeros(256, np.uint64)
_LENGTH_MASK[0xFC:0xFF] = [0xFFFF, 0xFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF]
_EVEN = _numbers(np.zeros(0, np.int32))


def _length_prefixed(
    data: Any, u8: np.ndarray, pos: np.ndarray, null: np.ndarray | None
) -> tuple[pa.Array, np.ndarray]:
    """Values that are a length-encoded integer then that many bytes (strings, decimals, ...):
    a binary array of them (the bytes are copied, so it does not hold ``data``), and the
    position after each."""
    head = u8[pos]
    length = head.astype(np.intp)
    start = pos + 1
    long = head >= 0xFC  # values of 251 bytes or more: a wider length follows
    if null is not None:
        long &= ~null
        length[null] = 0
        start[null] = pos[null]
    if long.any():
        i = np.flatnonzero(long)
        code = head[i]
        length[i] = (_at(data, np.dtype("<u8"))[pos[i] + 1] & _LENGTH_MASK[code]).astype(np.intp)
        start[i] += _LENGTH_WIDTH[code]
    end = start + length
    # a zero-copy binary array over the buffer whose even elements are the values and odd ones
    # the bytes between them (other columns); taking the even ones copies the values out
    n = len(pos)
    offsets = np.empty(2 * n + 1, np.int32)
    offsets[0 : 2 * n : 2] = start
    offsets[1 : 2 * n : 2] = end
    offsets[2 * n] = end[-1] if n else 0
    spans = pa.Array.from_buffers(
        pa.binary(), 2 * n, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )
    values = pc.take(spans, _even(n))
    if null is not None:
        values = pa.Array.from_buffers(pa.binary(), n, [_validity(null), *values.buffers()[1:]])
    return values, end


def _even(n: int) -> pa.Array:
    """``0, 2, .. 2n-2`` as int32 (cached; grows, never shrinks, whatever threads ask)."""
    global _EVEN
    a = _EVEN
    if n > len(a):
        a = _numbers(np.arange(0, 2 * max(n, 2 * len(a)), 2, dtype=np.int32))
        if len(a) > len(_EVEN):
            _EVEN = a
    return a.slice(0, n)


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
        bad = pc.and_(ints.is_valid(), pc.invert(pc.is_in(ints, _ZERO_ONE)))
        return pc.not_equal(ints, _ZERO), _rows(bad, ints, _TINY1)
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
        bad = pc.and_(ints.is_valid(), pc.invert(pc.is_in(ints, _ZERO_ONE)))
        problems = _rows(bad, r, _TINY1)
        return pc.not_equal(ints, _ZERO), problems
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
        s = pc.if_else(zero, pa.nulls(1, s.type)[0], s)
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
    values outside [00:00, 24:00) are reported, not wrapped. (Scalars from buffers: a Python
    number handed to a compute function goes through ``pa.scalar``, which imports pandas.)"""
    s = _text(r)
    neg = pc.starts_with(s, "-")
    body = pc.utf8_ltrim(s, "-")
    whole = pc.split_pattern(body, ".", max_splits=1)
    hms = pc.split_pattern(pc.list_element(whole, _i64(0)), ":")
    h = pc.list_element(hms, _i64(0)).cast(_I64)
    m = pc.list_element(hms, _i64(1)).cast(_I64)
    sec = pc.list_element(hms, _i64(2)).cast(_I64)
    frac_parts = pc.list_slice(whole, 1, 2)
    frac = pc.list_flatten(frac_parts)
    has_frac = pc.greater(pc.list_value_length(whole), _i32(1))
    us = _numbers(np.zeros(len(s), np.int64))
    if has_frac.true_count:
        f = pc.utf8_slice_codeunits(pc.utf8_rpad(frac, 6, "0"), 0, 6).cast(_I64)
        us = pc.replace_with_mask(us, pc.fill_null(has_frac, _FALSE), f)
    minutes = pc.add(pc.multiply(h, _i64(60)), m)
    total = pc.add(pc.multiply(pc.add(pc.multiply(minutes, _i64(60)), sec), _i64(1_000_000)), us)
    bad = pc.fill_null(
        pc.or_(pc.and_(neg, pc.not_equal(total, _i64(0))), pc.greater_equal(total, _i64(_DAY_US))),
        _FALSE,
    )
    problems = _rows(bad, r, _NOT_A_TIME)
    if problems:
        total = pc.if_else(bad, pa.nulls(1, _I64)[0], total)
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
