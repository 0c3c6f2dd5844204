"""The stream reader: generated rows (DataX ``streamreader``)."""

from __future__ import annotations

import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.errors import ConfigError

_TYPES = {
    "long": pa.int64(),
    "int": pa.int64(),
    "bigint": pa.int64(),
    "double": pa.float64(),
    "float": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "bool": pa.bool_(),
    "date": pa.timestamp("s"),
    "bytes": pa.binary(),
}


@dataclass(frozen=True)
class Slice(base.Split):
    start: int = 0  # first row number of this split
    count: int = 0


@dataclass
class _Col:
    name: str
    type: pa.DataType
    kind: str  # value | random | incr
    value: Any = None
    lo: Any = None
    hi: Any = None
    key: str = ""  # column[i], for messages


class Reader(base.Reader):
    kind = "stream"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        cols = p.list("column", required=True) or []
        self.columns = [
            col for i, raw in enumerate(cols) if (col := self._column(i, raw)) is not None
        ]
        self.slice_count = p.int("sliceRecordCount", minimum=0)
        self.total = p.int("recordCount", minimum=0)
        if self.slice_count is None and self.total is None:
            p.problem(
                "sliceRecordCount",
                "is required (rows per split), or give recordCount (rows in all)",
            )
        p.done()
        self._rows: int | None = None  # what the planned splits generate

    def _column(self, i: int, c: Any) -> _Col | None:
        key = f"column[{i}]"
        if not isinstance(c, dict):
            self.p.problem(key, f"must be an object such as {{type: long, value: 1}}, got {c!r}")
            return None
        tname = str(c.get("type", "string")).lower()
        if tname not in _TYPES:
            self.p.problem(
                f"{key}.type",
                f"{tname!r} is not one of {', '.join(_TYPES)}{base.did_you_mean(tname, _TYPES)}",
            )
            return None
        t = _TYPES[tname]
        name = str(c.get("name") or f"c{i}")
        try:
            if "random" in c:
                lo, hi = (s.strip() for s in str(c["random"]).split(","))
                if pa.types.is_string(t) or pa.types.is_binary(t):  # lengths
                    lo_v, hi_v = int(lo), int(hi)
                    if lo_v < 0:
                        raise ValueError(f"a length must be 0 or more, got {lo_v}")
                else:
                    lo_v, hi_v = _parse(t, lo), _parse(t, hi)
                if not pa.types.is_boolean(t) and lo_v > hi_v:
                    # the sums below would draw from another range without a word
                    raise ValueError(f"random {lo},{hi}: the low end first, as in {hi},{lo}")
                return _Col(name, t, "random", lo=lo_v, hi=hi_v)
            if "incr" in c:
                if not (
                    pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_timestamp(t)
                ):
                    raise ValueError("incr counts only long, double and date columns")
                parts = [s.strip() for s in str(c["incr"]).split(",")]
                step = int(parts[1]) if len(parts) > 1 else 1
                return _Col(name, t, "incr", lo=_parse(t, parts[0]), hi=step, key=key)
            return _Col(
                name,
                t,
                "value",
                value=None if c.get("value") is None else _parse(t, _text(c["value"])),
            )
        except (ValueError, TypeError) as e:
            self.p.problem(key, f"cannot read the {tname} column: {e}")
            return None

    def schema(self) -> pa.Schema:
        return pa.schema([(c.name, c.type) for c in self.columns])

    def splits(self, n: int) -> list[base.Split]:
        if self.total is not None:
            n = max(1, min(n, self.total))
            size, extra = divmod(self.total, n)
            out: list[base.Split] = []
            start = 0
            for i in range(n):
                count = size + (1 if i < extra else 0)
                out.append(Slice(i, f"rows {start}..{start + count}", start, count))
                start += count
            self._rows = self.total
            self._check_incr(self.total)
            return out
        count = self.slice_count or 0
        self._rows = count * max(1, n)
        self._check_incr(self._rows)
        return [Slice(i, f"slice {i}", i * count, count) for i in range(max(1, n))]

    def _check_incr(self, rows: int) -> None:
        """A long sequence must not pass int64: Arrow's add and multiply wrap around."""
        for c in self.columns:
            if c.kind == "incr" and pa.types.is_integer(c.type) and rows > 0:
                last = c.lo + (rows - 1) * c.hi
                if not -(2**63) <= last < 2**63:
                    raise ConfigError(
                        f"{self.ctx.path(c.key + '.incr')}: {c.lo},{c.hi} over {rows} rows "
                        f"reaches {last}, past the range of a long"
                    )

    def estimate(self) -> int | None:
        """Exact: the rows the planned splits generate."""
        return self._rows

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch]:
        assert isinstance(split, Slice)
        rows = self.ctx.batch_rows
        done = 0
        rng = random.Random(split.index)
        while done < split.count:
            n = min(rows, split.count - done)
            arrays = [self._array(c, n, split.start + done, rng) for c in self.columns]
            yield pa.record_batch(arrays, schema=self.schema())
            done += n

    def _array(self, c: _Col, n: int, first: int, rng: random.Random) -> pa.Array:
        if c.kind == "value":
            return (
                pa.array([c.value] * n, c.type)
                if n < 64
                else pa.repeat(pa.scalar(c.value, c.type), n)
            )
        if c.kind == "incr":
            idx = pc.add(pa.array(range(first, first + n), pa.int64()), 0)
            if pa.types.is_timestamp(c.type):
                base_s = _epoch(c.lo)
                return pc.cast(pc.add(pc.multiply(idx, c.hi), base_s), pa.int64()).cast(c.type)
            return pc.add(pc.multiply(idx, c.hi), c.lo).cast(c.type)
        r = pc.random(n, initializer=rng.getrandbits(63))
        if pa.types.is_integer(c.type):
            return pc.floor(pc.add(pc.multiply(r, c.hi - c.lo + 1), c.lo)).cast(c.type)
        if pa.types.is_floating(c.type):
            return pc.add(pc.multiply(r, c.hi - c.lo), c.lo)
        if pa.types.is_boolean(c.type):
            return pc.less(r, 0.5)
        if pa.types.is_timestamp(c.type):
            lo, hi = _epoch(c.lo), _epoch(c.hi)
            return pc.floor(pc.add(pc.multiply(r, hi - lo), lo)).cast(pa.int64()).cast(c.type)
        # strings/bytes: lengths in [lo, hi], drawn from a pool so nothing loops per row
        lo, hi = int(c.lo), int(c.hi)
        pool = pa.array(
            [
                "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(lo, hi)))
                for _ in range(1024)
            ],
            pa.string(),
        )
        out = pc.take(pool, pc.floor(pc.multiply(r, 1024)).cast(pa.int64()))
        return out.cast(c.type)


def _epoch(wall: datetime) -> int:
    """Seconds since the epoch of a naive time read as the column's wall time, not the
    machine's local time (``datetime.timestamp``): the generated values stay those written."""
    return int(pa.scalar(wall, pa.timestamp("s")).value)


def _text(v: Any) -> str:
    """A ``value`` as text: JSON's ``true`` is ``true``, as DataX has it (``str`` gives ``True``)."""
    return str(v).lower() if isinstance(v, bool) else str(v)


def _parse(t: pa.DataType, s: str) -> Any:
    if pa.types.is_integer(t):
        return int(s)
    if pa.types.is_floating(t):
        return float(s)
    if pa.types.is_boolean(t):
        if s.lower() not in ("true", "false"):
            raise ValueError(f"{s!r} is not true or false")
        return s.lower() == "true"
    if pa.types.is_timestamp(t):
        for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d", "%Y%m%d%H%M%S", "%Y%m%d"):
            try:
                return datetime.strptime(s, fmt)
            except ValueError:
                continue
        raise ValueError(f"{s!r} is not a date such as 2024-01-31 or 2024-01-31 12:00:00")
    if pa.types.is_binary(t):
        return s.encode()
    return s
