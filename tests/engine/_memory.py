"""A writer that keeps what it publishes in memory, for engine tests: it records every call the
engine makes, publishes only at commit, and rejects the rows a test names (as a database rejects
a constraint violation), so the engine's bisection, limits and atomicity can be observed."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.errors import DirtyRecordError, FatalError

PUBLISHED: dict[str, list[pa.RecordBatch]] = {}
CALLS: list[str] = []


class _Sink(base.Sink):
    def __init__(self, w: Writer, split: base.Split):
        self.w, self.split, self.staged = w, split, []

    def write(self, batch: pa.RecordBatch) -> None:
        if self.w.reject is not None:
            bad = pc.is_in(batch.column(0), pa.array(self.w.reject, batch.column(0).type))
            if pc.any(bad).as_py():
                raise DirtyRecordError(f"value rejected by target in {self.w.target}", code="23514")
        self.staged.append(batch)

    def close(self) -> Any:
        CALLS.append(f"close:{self.split.label}")
        return self.staged

    def discard(self) -> Any:
        CALLS.append(f"discard:{self.split.label}")
        return None


class Writer(base.Writer):
    kind = "memory"
    modes: ClassVar[tuple[str, ...]] = ("append", "truncate")

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.target = self.p.str("target", required=True)
        self.reject = self.p.list("reject")
        self.fail_commit = self.p.bool("failCommit")
        self.crash_commit = self.p.bool("crashCommit")  # the process dies before publishing
        self.mode = self.write_mode()
        self.p.done()

    def prepare(self, schema: pa.Schema | None) -> None:
        CALLS.append(f"prepare:{self.target}")

    def open(self, split: base.Split) -> base.Sink:
        return _Sink(self, split)

    def commit(self, results: list[Any]) -> None:
        if self.crash_commit:
            os._exit(70)
        if self.fail_commit:
            raise FatalError(f"{self.target}: commit refused")
        CALLS.append(f"commit:{self.target}")
        PUBLISHED[self.target] = [b for r in results if r for b in r]

    def abort(self, results: list[Any]) -> None:
        CALLS.append(f"abort:{self.target}")
