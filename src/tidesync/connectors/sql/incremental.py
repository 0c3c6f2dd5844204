"""A stored cursor for incremental reads by query (``incremental: {column: optime}``).

Each run reads the rows whose cursor column is after the value the last successful run saw and
not after this run's window end (the instance's cyctime, unless ``end`` is given), so two runs
never read the same row twice and a failed run reads its window again: the new value is saved
only from ``Reader.committed()``, after the writer has published.

    cursor = Cursor.from_params(p, ctx, key="mysql:test.oplog")
    sql_where = cursor.predicate(quote)     # "optime" > %(lo)s AND "optime" <= %(hi)s
    ... for each batch: cursor.observe(batch)
    ... in Reader.committed(): cursor.save()
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors.base import Context, Params

__all__ = ["Cursor"]

NAMESPACE = "cursor"


class Cursor:
    def __init__(self, ctx: Context, key: str, column: str, start: Any = None, end: Any = None):
        self.ctx = ctx
        self.key = key
        self.column = column
        self._lock = threading.Lock()
        stored = ctx.state.get(NAMESPACE, key) if ctx.state is not None else None
        self.lower: Any = stored["value"] if stored else start
        self.upper: Any = end if end is not None else ctx.cyctime
        self.seen: Any = None

    @classmethod
    def from_params(cls, p: Params, ctx: Context, key: str) -> Cursor | None:
        spec = p.obj("incremental")
        if spec is None:
            return None
        column = spec.get("column")
        if not isinstance(column, str) or not column:
            p.problem(
                "incremental.column",
                "is required: the column that grows with each change (e.g. optime)",
            )
            return None
        return cls(ctx, key, column, spec.get("start"), spec.get("end"))

    def bounds(self) -> tuple[Any, Any]:
        """(exclusive lower, inclusive upper); either may be None (no bound)."""
        lo = self.lower
        if isinstance(lo, str) and isinstance(self.upper, datetime | date):
            lo = _as_time(lo)
        return lo, self.upper

    def predicate(
        self, quote: Callable[[str], str], placeholder: Callable[[str], str]
    ) -> tuple[str, dict[str, Any]]:
        """A SQL condition and its parameters, e.g. ``"optime" > %(lo)s AND "optime" <= %(hi)s``."""
        lo, hi = self.bounds()
        col = quote(self.column)
        conds, args = [], {}
        if lo is not None:
            conds.append(f"{col} > {placeholder('cursor_lo')}")
            args["cursor_lo"] = lo
        if hi is not None:
            conds.append(f"{col} <= {placeholder('cursor_hi')}")
            args["cursor_hi"] = hi
        return (" AND ".join(conds) or "1=1"), args

    def observe(self, batch: pa.RecordBatch) -> None:
        """Track the largest cursor value read (the batch must carry the cursor column)."""
        if self.column not in batch.schema.names or batch.num_rows == 0:
            return
        m = pc.max(batch.column(self.column)).as_py()
        if m is None:
            return
        with self._lock:
            if self.seen is None or m > self.seen:
                self.seen = m

    def save(self) -> None:
        """Called after the writer committed: the next run starts after what this one read."""
        if self.ctx.state is None or self.seen is None:
            return
        value = self.seen.isoformat(sep=" ") if isinstance(self.seen, datetime) else self.seen
        if isinstance(value, date) and not isinstance(value, datetime):
            value = value.isoformat()
        self.ctx.state.put(NAMESPACE, self.key, {"column": self.column, "value": value})


def _as_time(s: str) -> Any:
    try:
        return datetime.fromisoformat(s)
    except ValueError:
        return s
