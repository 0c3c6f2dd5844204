"""Measure-point payloads and the rows they give.

A payload (UTF-8 JSON) is one of:

- a row: ``{"orgId", "modelId", "assetId", "measurepoints": "temp", "timestamp": 1546300800000,
  "value": 21.5, "quality": 0}`` (``quality`` may be left out);
- points of one asset at one time: ``{"orgId", "modelId", "assetId", "timestamp",
  "measurepoints": {"temp": 21.5, "hum": 40}}`` with an optional ``quality``, one for all
  (``0``) or per point (``{"temp": 0}``): one row per point;
- a JSON array of either.

Anything else is a dirty record with its reason: the rest of the message still counts. An
object that names a key twice is dirty too (``json`` would keep the last one silently). Columns
of the archive: ``orgId, modelId, assetId, measurepoints`` (text), ``timestamp`` (epoch
milliseconds, int64), ``value`` (text: a string as it is, a number as spelt, anything else as
compact JSON with its numbers as spelt), ``quality`` (int64, empty when absent).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pyarrow as pa

__all__ = ["COLUMNS", "SCHEMA", "Row", "parse_payload"]

COLUMNS = ("orgId", "modelId", "assetId", "measurepoints", "timestamp", "value", "quality")
SCHEMA = pa.schema(
    [
        ("orgId", pa.string()),
        ("modelId", pa.string()),
        ("assetId", pa.string()),
        ("measurepoints", pa.string()),
        ("timestamp", pa.int64()),
        ("value", pa.string()),
        ("quality", pa.int64()),
    ]
)
Row = tuple[str, str, str, str, int, str | None, int | None]
#: epoch milliseconds that Python's datetime can place in a directory (years 1 to 9999)
_MIN_MS, _MAX_MS = -62135596800000, 253402300799999
_IDS = ("orgId", "modelId", "assetId")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def parse_payload(payload: bytes) -> tuple[list[Row], list[str]]:
    """The rows of one message and the reasons of the parts that are dirty."""
    twice = False

    def pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twice
        d = dict(pairs)
        if len(d) == len(pairs):
            return d
        twice = True
        return _Twice(d, next(k for i, (k, _) in enumerate(pairs) if k in dict(pairs[:i])))

    try:
        doc = json.loads(
            payload, parse_float=_Number, parse_constant=_no_constant, object_pairs_hook=pairs_hook
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        return [], [f"not JSON: {_short(e)}"]
    rows: list[Row] = []
    dirty: list[str] = []
    items = list(enumerate(doc)) if isinstance(doc, list) else [(None, doc)]
    if not items:
        return [], ["an empty JSON array"]
    # json reads an unpaired "\ud800" as a lone surrogate, which no UTF-8 file can hold
    escapes = b"\\ud" in payload or b"\\uD" in payload
    for i, item in items:
        key = _twice_in(item) if twice else None
        lone = _lone_surrogate(item) if escapes else None
        if key is not None:
            # json keeps the last: a point or an id would be dropped without a word
            reason: str | None = f"key {key!r} appears twice in one object"
        elif lone is not None:
            reason = f"{_show(lone, True)} holds an unpaired surrogate escape: not Unicode text"
        else:
            reason = _item(item, rows)
        if reason is not None:
            dirty.append(reason if i is None else f"[{i}]: {reason}")
    return rows, dirty


class _Number(float):
    """A JSON number with a fraction or an exponent: a float that keeps its spelling, so that
    the ``value`` text is the number as sent (``21.50``, ``1e-7``, every digit of
    ``3.14159265358979323846``), not Python's ``repr`` of the nearest double."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> _Number:
        n = super().__new__(cls, text)
        n.text = text
        return n


class _Twice(dict[str, Any]):
    """A JSON object that names a key twice: ambiguous, so its item is dirty."""

    def __init__(self, d: dict[str, Any], key: str):
        super().__init__(d)
        self.key = key


def _twice_in(v: Any) -> str | None:
    """The first key named twice in one object within ``v``, or None."""
    if isinstance(v, _Twice):
        return v.key
    for x in v.values() if isinstance(v, dict) else v if isinstance(v, list) else ():
        key = _twice_in(x)
        if key is not None:
            return key
    return None


def _lone_surrogate(v: Any) -> str | None:
    """The first string (key or value) within ``v`` that holds a lone surrogate, or None."""
    texts = [*v, *v.values()] if isinstance(v, dict) else v if isinstance(v, list) else [v]
    for x in texts:
        if isinstance(x, str):
            try:
                x.encode()
            except UnicodeEncodeError:
                return x
        elif isinstance(x, dict | list):
            found = _lone_surrogate(x)
            if found is not None:
                return found
    return None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _item(doc: Any, rows: list[Row]) -> str | None:
    """Append the rows of one object; the reason it is dirty (nothing appended) or None."""
    if not isinstance(doc, dict):
        return f"expected a JSON object, got {_kind(doc)}"
    ids = []
    for key in _IDS:
        v = doc.get(key)
        if not isinstance(v, str) or not v:
            return f"{key}: expected a non-empty string, got {_show(v, key in doc)}"
        ids.append(v)
    ts = doc.get("timestamp")
    if isinstance(ts, float) and ts.is_integer():
        ts = int(ts)
    if not isinstance(ts, int) or isinstance(ts, bool):
        return f"timestamp: expected epoch milliseconds (an integer), got {_show(ts, 'timestamp' in doc)}"
    if not _MIN_MS <= ts <= _MAX_MS:
        return f"timestamp: {ts} is outside years 1 to 9999"
    points = doc.get("measurepoints")
    quality = doc.get("quality")
    org, model, asset = ids
    if isinstance(points, str):
        if not points:
            return "measurepoints: expected a point name, got an empty string"
        if "value" not in doc:
            return "value: is missing"
        big = _infinite_in(doc["value"])
        if big is not None:
            return f"value: {big} is out of range"
        q = _quality(quality)
        if q is False:
            return f"quality: expected an integer, got {_show(quality, True)}"
        rows.append((org, model, asset, points, ts, _text(doc["value"]), q))
        return None
    if isinstance(points, dict):
        if not points:
            return "measurepoints: an empty object"
        per_q = quality if isinstance(quality, dict) else None
        shared = None if per_q is not None else _quality(quality)
        if shared is False:
            return f"quality: expected an integer or an object of them, got {_show(quality, True)}"
        out: list[Row] = []
        for name, value in points.items():
            if not name:
                return "measurepoints: a point with an empty name"
            big = _infinite_in(value)
            if big is not None:
                return f"measurepoints.{name}: {big} is out of range"
            q = _quality(per_q.get(name)) if per_q is not None else shared
            if q is False:
                return f"quality.{name}: expected an integer, got {_show(per_q and per_q.get(name), True)}"
            out.append((org, model, asset, name, ts, _text(value), q))
        rows.extend(out)
        return None
    return (
        "measurepoints: expected a point name (with value) or an object of point values, "
        f"got {_show(points, 'measurepoints' in doc)}"
    )


def _infinite_in(v: Any) -> str | None:
    """The spelling of a number too large for a float within ``v`` (json reads 1e999 as
    infinity), or None."""
    if isinstance(v, float):
        return None if math.isfinite(v) else v.text if isinstance(v, _Number) else str(v)
    if isinstance(v, dict | list):  # a nested value is written as JSON, which has no infinity
        for x in v.values() if isinstance(v, dict) else v:
            found = _infinite_in(x)
            if found is not None:
                return found
    return None


def _quality(q: Any) -> int | None | bool:
    """An integer quality, None when absent, False when it is not one."""
    if q is None:
        return None
    if isinstance(q, float) and q.is_integer():
        q = int(q)  # 1e30 too: it must fit the int64 column like any integer
    if isinstance(q, int) and not isinstance(q, bool) and -(2**63) <= q < 2**63:
        return q
    return False


def _text(v: Any) -> str | None:
    t = type(v)
    if t is str or v is None:
        return v
    if t is _Number:
        return v.text
    if t is int:
        return str(v)
    return _json(v)


def _json(v: Any) -> str:
    """Compact JSON of a value, its numbers spelt as the message spelt them (json's encoder
    writes a float's repr: ``{"x": 1.50}`` became ``{"x":1.5}``, long decimals lost digits)."""
    t = type(v)
    if t is _Number:
        return str(v.text)
    if t is dict:
        return "{" + ",".join(f"{_dumps(k)}:{_json(x)}" for k, x in v.items()) + "}"
    if t is list:
        return "[" + ",".join(_json(x) for x in v) + "]"
    return str(_dumps(v))


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(v), "null" if v is None else "a number"
    )


def _show(v: Any, present: bool) -> str:
    if not present:
        return "nothing (the key is missing)"
    text = repr(v) if isinstance(v, str | int | float | bool) or v is None else _kind(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _short(e: Exception) -> str:
    text = str(e)
    return text if len(text) <= 120 else text[:117] + "..."
