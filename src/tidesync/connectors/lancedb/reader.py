"""The LanceDB reader: one split, a scan of the table version pinned at planning."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tidesync.connectors import base
from tidesync.connectors.lancedb.conn import Location, translate
from tidesync.errors import ConfigError, FatalError, did_you_mean


@dataclass(frozen=True)
class VersionSplit(base.Split):
    """The whole table as of ``version`` (so a rerun of the split reads the same rows)."""

    version: int = 0


class Reader(base.Reader):
    """Reads a LanceDB table (see the package docstring)."""

    kind = "lancedb"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.loc = Location(p, ctx)
        cols = p.list("column")
        self.columns: list[str] | None = None
        if cols is not None and cols != ["*"]:
            self.columns = []
            for i, c in enumerate(cols):
                if not isinstance(c, str) or not c:
                    p.problem(f"column[{i}]", f"must be a column name, got {c!r}")
                else:
                    self.columns.append(c)
        self.where = p.str("where")
        self.version = p.int("version", minimum=1)
        p.done()
        self._table: Any = None
        self._schema: pa.Schema | None = None

    @property
    def local_only(self) -> str | None:
        return f"the LanceDB table is in a folder on this machine ({self.loc.path})"

    def _open(self, version: int | None) -> Any:
        db = self.loc.connect()
        t = self.loc.open(db, version)
        if t is None:
            raise FatalError(
                f"{self.ctx.path('table')}: no table {self.loc.table!r} in {self.loc.path}"
            )
        return t

    def _plan(self) -> Any:
        if self._table is None:
            t = self._open(self.version)
            names = t.schema.names
            if self.columns is not None:
                problems = [
                    f"{self.ctx.path(f'column[{i}]')}: table {self.loc.table!r} has no column "
                    f"{c!r}{did_you_mean(c, names)}"
                    for i, c in enumerate(self.columns)
                    if c not in names
                ]
                if problems:
                    raise ConfigError(problems)
                self._schema = pa.schema([t.schema.field(c) for c in self.columns])
            else:
                self._schema = t.schema
            self._table = t
        return self._table

    def schema(self) -> pa.Schema | None:
        self._plan()
        return self._schema

    def splits(self, n: int) -> list[base.Split]:
        t = self._plan()
        return [VersionSplit(0, self.loc.table, int(t.version))]

    def estimate(self) -> int | None:
        return int(self._plan().count_rows(self.where))

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch]:
        assert isinstance(split, VersionSplit)
        self._plan()
        schema = self._schema
        assert schema is not None
        t = self._open(split.version)
        try:
            q = t.search().limit(None)
            if self.columns is not None:
                q = q.select(self.columns)
            if self.where:
                q = q.where(self.where)
            stream = q.to_batches(self.ctx.batch_rows)
            for b in stream:
                if b.num_rows:
                    yield b if b.schema == schema else b.select(schema.names).cast(schema)
        except ValueError as e:  # LanceDB's word for a filter it cannot parse or plan
            if self.where:
                raise ConfigError(
                    f"{self.ctx.path('where')}: {self.where!r}: {str(e).strip().splitlines()[0]}"
                ) from None
            raise translate(e, f"{self.ctx.where}: reading {self.loc.table}") from e
        except (RuntimeError, OSError) as e:
            raise translate(e, f"{self.ctx.where}: reading {self.loc.table}") from e
