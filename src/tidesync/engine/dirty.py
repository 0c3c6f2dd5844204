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
from typing import Any, TypeVar

import pyarrow as pa

from tidesync.errors import DirtyRecordError, redact

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
        name: _plain(col[i].as_py())
        for name, col in zip(batch.schema.names, batch.columns, strict=True)
    }


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

    def write(self) -> Path | None:
        if self.path is None or not self.records:
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("w", encoding="utf-8") as f:
            for r in self.records:
                f.write(json.dumps(asdict(r), ensure_ascii=False, default=str) + "\n")
        return self.path
