"""Dirty records: rows that could not be converted or written, kept with their reason.

:func:`isolate` runs a batch-level function and, when it raises DirtyRecordError, bisects the batch
so the good rows still go through at batch speed and only the rows at fault become dirty records.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pyarrow as pa

from tidesync.compute import pc
from tidesync.errors import DirtyRecordError, ErrorLimitExceeded, redact

T = TypeVar("T")


@dataclass
class DirtyRecord:
    split: str
    position: str  # where in the split: a row offset, a file line
    stage: str  # read | transform | write
    reason: str
    row: dict[str, Any]
    code: str | None = None


def row_of(batch: pa.RecordBatch, i: int) -> dict[str, Any]:
    return {
        name: value_of(col, i) for name, col in zip(batch.schema.names, batch.columns, strict=True)
    }


def value_of(col: pa.Array, i: int) -> Any:
    """One value as plain data for a dirty record. A value Python cannot hold (a timestamp past
    year 9999, PostgreSQL's ``infinity`` date) is shown as Arrow prints it: a dirty record must
    never fail for the row it describes. A time past the day's end (``24:00:00``, which
    Python would wrap to midnight) is shown as the clock reads it."""
    if pa.types.is_time(col.type) and col[i].is_valid:
        per = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[col.type.unit]
        raw = col.slice(i, 1).view(pa.int32() if pa.types.is_time32(col.type) else pa.int64())
        whole, part = divmod(raw[0].as_py(), per)
        if not 0 <= whole < 86_400:
            frac = f".{part:0{len(str(per)) - 1}d}" if part else ""
            return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}{frac}"
    try:
        return _plain(col[i].as_py())
    except (OverflowError, ValueError, ArithmeticError):
        try:
            return col.slice(i, 1).cast(pa.string())[0].as_py()
        except (pa.ArrowException, OverflowError, ValueError):
            return str(col.slice(i, 1).to_string())


_DAYS = (-719_162, 2_932_896)  # 0001-01-01 and 9999-12-31, in days from 1970-01-01
_SECONDS = (-62_135_596_800, 253_402_300_799)
_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def beyond_calendar(arr: pa.Array) -> bool:
    """Whether a date or timestamp array holds a value outside the years 1 to 9999, or a time
    array one outside a day (DuckDB's and PostgreSQL's ``24:00:00``)."""
    t = arr.type
    if pa.types.is_date32(t):
        lo, hi, raw = *_DAYS, arr.view(pa.int32())
    elif pa.types.is_date64(t):
        lo, hi, raw = _SECONDS[0] * 1000, _SECONDS[1] * 1000, arr.view(pa.int64())
    elif pa.types.is_timestamp(t):
        k = _PER_SECOND[t.unit]
        lo, hi = max(_SECONDS[0] * k, -(2**63)), min(_SECONDS[1] * k + k - 1, 2**63 - 1)
        raw = arr.view(pa.int64())
    elif pa.types.is_time(t):
        lo, hi = 0, 86_400 * _PER_SECOND[t.unit] - 1
        raw = arr.view(pa.int32() if pa.types.is_time32(t) else pa.int64())
    else:
        return False
    if raw.null_count == len(raw):
        return False
    mm = pc.min_max(raw)
    return bool(mm["min"].as_py() < lo or mm["max"].as_py() > hi)


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return v.hex()
    if isinstance(v, dict | list | str | int | float | bool) or v is None:
        return v
    return str(v)


def isolate(
    batch: pa.RecordBatch,
    fn: Callable[[pa.RecordBatch], T],
    on_dirty: Callable[[int, pa.RecordBatch, DirtyRecordError], None],
    offset: int = 0,
) -> list[T]:
    """Apply ``fn`` to ``batch``; on DirtyRecordError, apply it to each half, down to single rows.

    ``on_dirty(row_offset, one_row_batch, error)`` is called for each row that fails alone.
    Returns the results of every successful call, in row order. ``fn`` must leave no trace
    when it raises (a sink rolls back to a savepoint, a transform is pure).
    """
    try:
        return [fn(batch)]
    except DirtyRecordError as e:
        if batch.num_rows <= 1:
            if batch.num_rows == 1:
                on_dirty(offset, batch, e)
            return []
    half = batch.num_rows // 2
    return isolate(batch.slice(0, half), fn, on_dirty, offset) + isolate(
        batch.slice(half), fn, on_dirty, offset + half
    )


class ErrorLimit(Protocol):
    """The whole job's dirty-record count: ``add`` counts one and raises ErrorLimitExceeded
    when the job is over ``errorLimit.record`` (a distributed executor: an actor's handle)."""

    def add(self, reason: str) -> None: ...


class RecordLimit:
    """``errorLimit.record`` across a whole job (the local :class:`ErrorLimit`):
    counts dirty records as tasks find them and stops the job at the first one over ``limit``
    (None: no count limit)."""

    def __init__(self, limit: int | None):
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def add(self, reason: str) -> None:
        with self._lock:
            self.count += 1
            n = self.count
        if self.limit is not None and n > self.limit:
            raise ErrorLimitExceeded(over_limit(self.limit, reason))


def over_limit(limit: int, reason: str) -> str:
    """What a job over ``errorLimit.record`` says, ``reason`` being the last dirty record's."""
    return (
        f"error limit exceeded: more than {limit} dirty record(s) "
        f"(errorLimit.record = {limit}); last: {reason}"
    )


class DirtyLog:
    """Collects dirty records (thread-safe) and writes them as JSON lines."""

    def __init__(self, path: Path | None = None, keep: int = 100_000):
        self.path = path
        self.count = 0
        self.keep = keep
        self.records: list[DirtyRecord] = []
        self._lock = threading.Lock()

    def add(self, rec: DirtyRecord) -> int:
        rec.reason = redact(rec.reason)
        with self._lock:
            self.count += 1
            if len(self.records) < self.keep:
                self.records.append(rec)
            return self.count

    def extend(self, records: list[DirtyRecord], count: int) -> None:
        """Add what one task returned: ``records`` kept of the ``count`` it found."""
        with self._lock:
            self.count += count
            self.records.extend(records[: max(0, self.keep - len(self.records))])

    def write(self) -> Path | None:
        """Write the records to ``path``; with none, remove what an earlier run left there (the
        file beside a report is that report's: a stale one listed rows of another run)."""
        if self.path is None:
            return None
        if not self.records:
            self.path.unlink(missing_ok=True)
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", encoding="utf-8") as f:
            for r in self.records:
                # masked as a whole: a reason or a row may hold a secret of the run
                f.write(redact(json.dumps(asdict(r), ensure_ascii=False, default=str)) + "\n")
        return self.path
