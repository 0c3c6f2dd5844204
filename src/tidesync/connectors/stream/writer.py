"""The stream writer: rows printed or discarded (DataX ``streamwriter``)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base


class _Sink(base.Sink):
    def __init__(self, writer: Writer):
        self.w = writer
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.rows += batch.num_rows
        if self.w.print:
            cols = [
                pc.cast(c, pa.string()) if not pa.types.is_string(c.type) else c
                for c in batch.columns
            ]
            # DataX appends each column's asString(), null for a NULL, to a StringBuilder: the
            # text "null", never "" (which an empty string prints as)
            cols = [pc.fill_null(c, "null") for c in cols]
            lines = (
                pc.binary_join_element_wise(*cols, self.w.delimiter) if len(cols) > 1 else cols[0]
            )
            text = "\n".join(lines.to_pylist())
            with self.w.lock:
                sys.stdout.write(text + "\n")

    def close(self) -> int:
        return self.rows


class Writer(base.Writer):
    kind = "stream"
    modes = ("append",)
    publish = "none"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.print = self.p.bool("print", True)
        self.delimiter = self.p.str("fieldDelimiter", "\t")
        self.write_mode()
        self.p.done()
        self.lock = threading.Lock()

    def open(self, split: base.Split) -> base.Sink:
        return _Sink(self)

    def commit(self, results: list[Any]) -> None:
        sys.stdout.flush()
