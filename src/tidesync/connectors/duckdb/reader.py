"""The DuckDB reader: Arrow-native, each split streams ``to_arrow_reader`` on its own connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pyarrow as pa

from tidesync.connectors.duckdb.conn import _D, _columns, _connect, _resolve, _to_table, translate
from tidesync.connectors.sql import (
    QuerySplit,
    SqlReader,
    same_columns,
)
from tidesync.errors import ConfigError


def _to_reader(rel: Any, rows: int) -> pa.RecordBatchReader:
    f = getattr(rel, "to_arrow_reader", None)  # duckdb >= 1.4; before: fetch_record_batch
    return f(rows) if f is not None else rel.fetch_record_batch(rows)


class Reader(SqlReader):
    """Reads DuckDB tables or queries as Arrow; see the module docstring."""

    kind = "duckdb"
    dialect = _D
    _schema: pa.Schema | None = None

    def connect(self, database: str) -> duckdb.DuckDBPyConnection:
        try:
            con = _connect(database, read_only=True)
        except duckdb.Error as e:
            raise translate(e, f"duckdb {database}") from e
        try:
            con.execute(f"SET TimeZone = '{self.ctx.timezone.replace(chr(39), '')}'")
        except duckdb.Error as e:
            con.close()
            raise ConfigError(f"time zone {self.ctx.timezone!r} unknown to duckdb: {e}") from e
        self.run_session(con, duckdb.Error)
        return con

    def table_columns(self, con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
        return [r[0] for r in _columns(con, _resolve(con, table))]

    def read_schema(self) -> pa.Schema:
        """The Arrow schema of the first table or query (every one must have the same columns)."""
        if self._schema is not None:
            return self._schema
        sources = self.sources()
        schemas = []
        for s in sources:
            con = self.connect(s.database)
            try:
                schemas.append(_to_table(con.sql(f"SELECT * FROM ({s.sql(_D)}) LIMIT 0")).schema)
            except duckdb.Error as e:
                first = str(e).split("\n")[0]
                raise ConfigError(
                    f"{self.ctx.path(s.key)}: duckdb cannot run {s.sql(_D)!r}: {first}"
                ) from e
            finally:
                con.close()
        same_columns(self.ctx, [(s, sch.names) for s, sch in zip(sources, schemas, strict=True)])
        self._schema = schemas[0]
        return self._schema

    def read_query(self, split: QuerySplit) -> Iterator[pa.RecordBatch]:
        schema = self.read_schema() if len(self.sources()) > 1 else None
        con = self.connect(split.database)
        try:
            try:
                batches = _to_reader(con.sql(split.sql), self.options.fetch_size)
            except duckdb.Error as e:
                raise translate(e, f"duckdb {split.database}, {split.source}") from e
            while True:
                try:
                    batch = batches.read_next_batch()
                except StopIteration:
                    break
                except duckdb.Error as e:
                    raise translate(e, f"duckdb {split.database}, {split.source}") from e
                if schema is not None and batch.schema != schema:
                    batch = batch.rename_columns(schema.names).cast(schema)
                yield batch
        finally:
            con.close()
