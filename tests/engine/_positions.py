"""A reader that resumes, for engine tests of positions: it reads the numbers after the last
committed run's position, in splits of its own, attaches ``{"next": n}`` to every batch, and
records what ``committed`` was told (and what the state held by then)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tidesync.connectors import base
from tidesync.state import POSITIONS

#: every committed(...) call: (positions told, the stored value at that moment)
COMMITTED: list[tuple[dict[str, Any], Any]] = []


@dataclass(frozen=True)
class Range(base.Split):
    start: int = 0
    stop: int = 0


class Reader(base.Reader):
    kind = "counter"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.rows = self.p.int("rows", 10, minimum=0)
        self.parts = self.p.int("splits", 1, minimum=1)
        self.p.done()

    def schema(self) -> pa.Schema:
        return pa.schema([("id", pa.int64())])

    def splits(self, n: int) -> list[base.Split]:
        saved = self.ctx.stored_positions()
        out: list[base.Split] = []
        for i in range(self.parts):
            label = f"part{i}"
            start = saved.get(label, {}).get("next", i * 1000)
            out.append(Range(i, label, start, start + self.rows))
        return out

    def read(self, split: base.Split) -> Iterator[base.Chunk]:
        assert isinstance(split, Range)
        for lo in range(split.start, split.stop, 4):
            hi = min(lo + 4, split.stop)
            batch = pa.record_batch([pa.array(range(lo, hi), pa.int64())], names=["id"])
            yield base.Chunk(batch, position={"next": hi})

    def committed(self, positions: dict[str, Any]) -> None:
        e = self.ctx.state.get(POSITIONS, self.ctx.state_key) if self.ctx.state else None
        COMMITTED.append((positions, e.value if e else None))
