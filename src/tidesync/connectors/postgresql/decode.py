"""Binary COPY tuples to Arrow, column by column, for a whole piece of rows at once.

:mod:`wire` finds where each row's first field begins; a field is a big-endian int32 length
(-1: NULL) and that many bytes, so column *j* of every row is located from column *j-1*'s
positions and lengths in a few numpy operations, and Python never touches a value:

- fixed-width values (booleans, integers, floats, dates, times, timestamps) are gathered with
  one indexing of a stride-1 big-endian view of the buffer and converted to the host's order;
  dates and timestamps move from PostgreSQL's epoch (2000-01-01) to Unix's with wrap-around
  integer addition, as ADBC's decoder does, so ``infinity`` comes out exactly as it did;
- variable-length values (text, varchar, bpchar, json, jsonb after its version byte, bytea and
  everything the plan casts to text) are copied out with one Arrow ``take`` over a zero-copy
  binary view of the buffer whose offsets alternate between the values and the gaps between
  them, then checked as UTF-8 where they are strings;
- ``numeric(p, s)`` with ``p <= 18`` is summed from its base-10000 digits into the unscaled
  int64 of a ``decimal128(p, s)``; NaN and infinities become NULL and are reported, exactly as
  the text path through ADBC does.

The result is the very arrays the ADBC path gives after :func:`types.to_arrow`; a plan with a
column this module cannot decode (a numeric wider than 18 digits, an unconstrained numeric)
reads through ADBC (:func:`kinds_of` says which).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tidesync.compute import pc
from tidesync.connectors.postgresql.types import OutColumn

__all__ = ["kinds_of", "decode"]

#: type oid the plan selects -> how its binary form is read
_KIND = {
    16: "bool",
    17: "bytes",
    20: "i8",
    21: "i2",
    23: "i4",
    25: "text",
    114: "text",
    700: "f4",
    701: "f8",
    1042: "text",
    1043: "text",
    1082: "date",
    1083: "time",
    1114: "ts",
    1184: "ts",
    3802: "jsonb",
    1700: "numeric",
}
#: fixed-width kinds: their big-endian numpy type
_FIXED: dict[str, np.dtype[Any]] = {
    "bool": np.dtype("u1"),
    "i2": np.dtype(">i2"),
    "i4": np.dtype(">i4"),
    "i8": np.dtype(">i8"),
    "f4": np.dtype(">f4"),
    "f8": np.dtype(">f8"),
    "date": np.dtype(">i4"),
    "time": np.dtype(">i8"),
    "ts": np.dtype(">i8"),
}
_DATE_EPOCH = np.int32(10957)  # days from 1970-01-01 to 2000-01-01
_TS_EPOCH = np.int64(946_684_800_000_000)  # microseconds
_NUMERIC_NEG = 0x4000
_NUMERIC_SPECIAL = 0xC000  # NaN 0xC000, +Infinity 0xD000, -Infinity 0xF000: all have these bits
_POW10 = np.array([10**i for i in range(19)], np.int64)
_I4 = np.dtype(">i4")
_I2 = np.dtype(">i2")
_U2 = np.dtype(">u2")


def kinds_of(cols: list[OutColumn]) -> list[str] | None:
    """How each planned column is decoded, or None when one of them has no decoder here."""
    out = []
    for c in cols:
        kind = _KIND.get(c.oid)
        if kind is None:
            return None
        if kind == "numeric":
            t = c.type
            if not pa.types.is_decimal128(t) or not 0 <= t.scale <= t.precision <= 18:
                return None
        out.append(kind)
    return out


def _at(a: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``a`` (uint8) as ``dtype`` values starting at every byte: ``_at(a, t)[pos]`` gathers the
    values at byte positions ``pos`` (stride 1, values overlapping)."""
    return np.ndarray((len(a) - dtype.itemsize + 1,), dtype, buffer=a, strides=(1,))


def _validity(null: np.ndarray | None) -> pa.Buffer | None:
    return None if null is None else pa.py_buffer(np.packbits(~null, bitorder="little"))


# numpy to Arrow by buffers, never pa.array: that imports pandas (a quarter second of start-up)
def _bools(mask: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(
        pa.bool_(), len(mask), [None, pa.py_buffer(np.packbits(mask, bitorder="little"))]
    )


def _int32s(values: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(pa.int32(), len(values), [None, pa.py_buffer(values)])


def decode(
    a: np.ndarray, rows: np.ndarray, kinds: list[str], cols: list[OutColumn], schema: pa.Schema
) -> tuple[pa.RecordBatch, pa.Array | None]:
    """The rows whose first fields begin at ``rows`` in ``a`` as a batch of ``schema``, and a
    mask of the rows holding a numeric NaN or infinity (NULL in the batch), or None."""
    n = len(rows)
    pos = rows
    arrays = []
    bad: np.ndarray | None = None
    lengths = _at(a, _I4)
    for kind, col in zip(kinds, cols, strict=True):
        length = lengths[pos].astype(np.int64)
        data = pos + 4
        null_mask = length < 0
        null = null_mask if null_mask.any() else None
        size = length if null is None else np.where(null_mask, 0, length)
        pos = data + size
        if kind in _FIXED:
            t = _FIXED[kind]
            _check_width(length, t.itemsize, col)
            values = _at(a, t)[data]
            arrays.append(_fixed(kind, values, null, col.type, n))
        elif kind == "numeric":
            arr, nf = _numeric(a, data, null, col)
            arrays.append(arr)
            if nf is not None:
                bad = nf if bad is None else bad | nf
        else:
            start = data + 1 if kind == "jsonb" else data
            stop = data + size
            if kind == "jsonb" and null is not None:
                start = np.where(null_mask, stop, start)
            arrays.append(_varlen(a, start, stop, null, col.type))
    batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
    return batch, (_bools(bad) if bad is not None else None)


def _check_width(length: np.ndarray, width: int, col: OutColumn) -> None:
    if ((length != width) & (length != -1)).any():
        raise ValueError(
            f"column {col.name}: a binary value of unexpected width (expected {width} bytes)"
        )


def _fixed(
    kind: str, values: np.ndarray, null: np.ndarray | None, t: pa.DataType, n: int
) -> pa.Array:
    if kind == "bool":
        bits = np.packbits(values != 0, bitorder="little")
        return pa.Array.from_buffers(t, n, [_validity(null), pa.py_buffer(bits)])
    native = values.astype(values.dtype.newbyteorder("="))
    if kind == "date":
        native += _DATE_EPOCH  # wraps like ADBC's int32 addition (infinity)
    elif kind == "ts":
        native += _TS_EPOCH
    return pa.Array.from_buffers(t, n, [_validity(null), pa.py_buffer(native)])


def _varlen(
    a: np.ndarray, start: np.ndarray, stop: np.ndarray, null: np.ndarray | None, t: pa.DataType
) -> pa.Array:
    """The bytes ``a[start[i]:stop[i]]`` of each row, copied out, as ``t`` (binary or string)."""
    n = len(start)
    big = len(a) >= 1 << 31
    offsets = np.empty(2 * n + 1, np.int64 if big else np.int32)
    offsets[0 : 2 * n : 2] = start
    offsets[1 : 2 * n : 2] = stop
    offsets[2 * n] = stop[-1] if n else 0
    view_type = pa.large_binary() if big else pa.binary()
    spans = pa.Array.from_buffers(view_type, 2 * n, [None, pa.py_buffer(offsets), pa.py_buffer(a)])
    values = pc.take(spans, _even(n))
    if big:
        values = values.cast(pa.binary())
    if null is not None:
        values = pa.Array.from_buffers(pa.binary(), n, [_validity(null), *values.buffers()[1:]])
    return values if pa.types.is_binary(t) else values.cast(t)


_EVEN = _int32s(np.arange(0, 2 << 10, 2, dtype=np.int32))


def _even(n: int) -> pa.Array:
    """``0, 2, .. 2n-2`` as int32 (cached; grows, never shrinks, whatever threads ask)."""
    global _EVEN
    e = _EVEN
    if n > len(e):
        e = _int32s(np.arange(0, 2 * max(n, 2 * len(e)), 2, dtype=np.int32))
        if len(e) > len(_EVEN):
            _EVEN = e
    return e.slice(0, n)


def _numeric(
    a: np.ndarray, data: np.ndarray, null: np.ndarray | None, col: OutColumn
) -> tuple[pa.Array, np.ndarray | None]:
    """``numeric(p, s)`` (p <= 18) as ``decimal128(p, s)``, and the rows that were NaN or
    infinite (NULL here), or None."""
    t: Any = col.type
    scale = t.scale
    ndigits = _at(a, _I2)[data].astype(np.int64)
    weight = _at(a, _I2)[data + 2].astype(np.int64)
    sign = _at(a, _U2)[data + 4].astype(np.int64)
    skip = np.zeros(len(data), bool) if null is None else null.copy()
    special = ((sign & _NUMERIC_SPECIAL) == _NUMERIC_SPECIAL) & ~skip
    nf = special if special.any() else None
    skip |= special
    ndigits[skip] = 0
    digits = _at(a, _I2)
    top = int(ndigits.max()) if len(data) else 0
    if t.precision <= 15:
        value = _horner(digits, data, ndigits, weight, scale, top, col)
    else:
        value = np.zeros(len(data), np.int64)
        for k in range(top):
            has = k < ndigits
            digit = np.where(has, digits[data + 8 + 2 * k], 0).astype(np.int64)
            exp = 4 * (weight - k) + scale
            up = np.clip(exp, 0, 18)
            down = np.clip(-exp, 0, 18)
            if (has & ((exp > 18) | (digit % _POW10[down] != 0))).any():
                raise _outside(col)
            value += np.where(exp >= 0, digit * _POW10[up], digit // _POW10[down])
    value = np.where((sign & 0xF000) == _NUMERIC_NEG, -value, value)
    pair = np.empty((len(data), 2), np.int64)
    pair[:, 0] = value
    pair[:, 1] = value >> 63
    invalid = skip if skip.any() else None
    arr = pa.Array.from_buffers(t, len(data), [_validity(invalid), pa.py_buffer(pair)])
    return arr, nf


def _horner(
    digits: np.ndarray,
    data: np.ndarray,
    ndigits: np.ndarray,
    weight: np.ndarray,
    scale: int,
    top: int,
    col: OutColumn,
) -> np.ndarray:
    """The unscaled values of ``numeric(p, s)``, p <= 15: the base-10000 digits read as one
    integer (at most p + 3 decimal digits: it fits an int64), then shifted to the scale once."""
    value = np.zeros(len(data), np.int64)
    for k in range(top):
        has = k < ndigits
        step = value * 10000 + digits[data + 8 + 2 * k]
        value = np.where(has, step, value)
    exp = 4 * (weight - ndigits + 1) + scale
    exp[ndigits == 0] = 0
    if ((exp > 18) | (exp < -18)).any():
        raise _outside(col)
    up = np.clip(exp, 0, 18)
    down = _POW10[np.clip(-exp, 0, 18)]
    if (value % down != 0).any():
        raise _outside(col)
    return (value // down) * _POW10[up]


def _outside(col: OutColumn) -> ValueError:
    t: Any = col.type
    return ValueError(
        f"column {col.name}: a numeric value outside numeric({t.precision}, {t.scale})"
    )
