"""A reader and a writer of whole numbers that agree on a raw form (``test-ints``: the numbers as
text, one a line), for the engine's direct path: the writer publishes at commit, rejects the
numbers a test names (dirty on the Arrow path, DirectFallback on the direct one) and records
which path each row came by."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tidesync.connectors import base
from tidesync.errors import DirtyRecordError

FORM = "test-ints"
#: target -> [(number, path)] published
PUBLISHED: dict[str, list[tuple[int, str]]] = {}
#: what happened, in order: ("read", split label) as a split's raw reading starts,
#: ("close", split label) as its sink closes
EVENTS: list[tuple[str, str]] = []


@dataclass(frozen=True)
class Range(base.Split):
    start: int = 0
    stop: int = 0


class Reader(base.Reader):
    kind = "ints"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.n = self.p.int("n", required=True, minimum=0)
        self.piece = self.p.int("piece", 10, minimum=1)  # numbers per raw piece / batch
        self.count = self.p.bool("countRows", True)  # Raw.rows given, or left to the sink
        # the first split's reading waits up to this long for the second's to start
        self.await_other = self.p.int("awaitOtherMs", 0, minimum=0) / 1000
        self.p.done()

    def schema(self) -> pa.Schema:
        return pa.schema([("x", pa.int64())])

    def splits(self, n: int) -> list[base.Split]:
        half = self.n // 2
        return [Range(0, "low", 0, half), Range(1, "high", half, self.n)]

    def read(self, split: base.Split) -> Iterator[base.Chunk]:
        assert isinstance(split, Range)
        for at in range(split.start, split.stop, self.piece):
            stop = min(at + self.piece, split.stop)
            batch = pa.record_batch([pa.array(range(at, stop), pa.int64())], names=["x"])
            yield base.Chunk(batch, position=stop)

    def raw_forms(self) -> tuple[str, ...]:
        return (FORM,)

    def read_raw(self, split: base.Split, form: str) -> Iterator[base.Raw]:
        assert isinstance(split, Range) and form == FORM
        EVENTS.append(("read", split.label))
        if split.index == 0 and self.await_other:
            deadline = time.monotonic() + self.await_other
            while ("read", "high") not in EVENTS and time.monotonic() < deadline:
                time.sleep(0.01)
        for at in range(split.start, split.stop, self.piece):
            stop = min(at + self.piece, split.stop)
            data = "".join(f"{i}\n" for i in range(at, stop)).encode()
            rows = stop - at if self.count else None
            yield base.Raw(FORM, data, rows=rows, nbytes=len(data), position=stop)


class _Sink(base.Sink):
    def __init__(self, w: Writer, label: str):
        self.w, self.label = w, label
        self.staged: list[tuple[int, str]] = []

    def write(self, batch: pa.RecordBatch) -> None:
        xs = batch.column(0).to_pylist()
        if any(x in self.w.reject for x in xs):
            raise DirtyRecordError("rejected by the target", code="23514")
        self.staged.extend((x, "arrow") for x in xs)

    def write_raw(self, raw: base.Raw) -> int:
        xs = [int(v) for v in bytes(raw.data).decode().split()]
        if any(x in self.w.reject for x in xs):
            raise base.DirectFallback("a number the target rejects")
        self.staged.extend((x, raw.form) for x in xs)
        return len(xs)

    def close(self) -> Any:
        EVENTS.append(("close", self.label))
        return self.staged

    def discard(self) -> Any:
        self.w.discarded += 1
        self.staged = []
        return None


class Writer(base.Writer):
    kind = "ints"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.target = self.p.str("target", required=True)
        self.reject = set(self.p.list("reject") or [])
        self.take = self.p.bool("takeRaw", True)  # the target's columns fit the reader's rows
        self.p.done()
        self.discarded = 0

    def raw_form(self, reader: base.Reader, schema: pa.Schema | None) -> str | None:
        if isinstance(reader, Reader) and self.take:
            return FORM
        self.raw_refusal = "column x: a type the reader does not give"
        return None

    def open(self, split: base.Split) -> base.Sink:
        return _Sink(self, split.label)

    def commit(self, results: list[Any]) -> None:
        PUBLISHED[self.target] = sorted(r for rs in results for r in rs)
