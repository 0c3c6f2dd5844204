"""The DuckDB reader: Arrow-native, each split streams ``to_arrow_reader`` on its own connection."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.connectors.duckdb.conn import _D, _columns, _connect, _resolve, _to_table, translate
from tidesync.connectors.sql import (
    QuerySplit,
    SqlReader,
    same_columns,
)
from tidesync.engine.dirty import row_of
from tidesync.errors import ConfigError


def _to_reader(rel: Any, rows: int) -> pa.RecordBatchReader:
    f = getattr(rel, "to_arrow_reader", None)  # duckdb >= 1.4; before: fetch_record_batch
    return f(rows) if f is not None else rel.fetch_record_batch(rows)


# types DuckDB hands to Arrow without their meaning (TIMETZ as a time less its offset, BIT as
# its internal bytes, BIGNUM as an opaque extension): read as DuckDB's text of them instead,
# as the PostgreSQL reader reads timetz, bit and the like
_AS_TEXT = ("TIME WITH TIME ZONE", "BIT", "BIGNUM", "VARINT")


def _relation(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    rel = con.sql(sql)
    text = [n for n, t in zip(rel.columns, rel.types, strict=True) if str(t) in _AS_TEXT]
    if not text:
        return rel
    cast = ", ".join(f"CAST({_D.ident(n)} AS VARCHAR) AS {_D.ident(n)}" for n in text)
    return con.sql(f"SELECT * REPLACE ({cast}) FROM ({sql})")


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
                rel = _relation(con, f"SELECT * FROM ({s.sql(_D)}) LIMIT 0")
                schemas.append(_to_table(rel).schema)
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

    def read_query(self, split: QuerySplit) -> Iterator[pa.RecordBatch | base.Chunk]:
        # every batch as announced: the first table's types when several are read, and the
        # names DuckDB gives a subquery (``SELECT id, id`` reads as id, id_1) where a query
        # repeats a name
        schema = self.read_schema()
        con = self.connect(split.database)
        offset = 0
        try:
            try:
                rel = _relation(con, split.sql)
                checks = {i: str(t) for i, t in enumerate(rel.types) if str(t) in _HUGE}
                checks.update(
                    (i, _TEMPORAL)
                    for i, f in enumerate(schema)
                    if pa.types.is_date32(f.type)
                    or pa.types.is_timestamp(f.type)
                    or pa.types.is_time64(f.type)
                )
                batches = _to_reader(rel, self.options.fetch_size)
            except duckdb.Error as e:
                raise translate(e, f"duckdb {split.database}, {split.source}") from e
            while True:
                try:
                    batch = batches.read_next_batch()
                except StopIteration:
                    break
                except duckdb.Error as e:
                    raise translate(e, f"duckdb {split.database}, {split.source}") from e
                out: pa.RecordBatch | base.Chunk = batch
                if checks:
                    out = _checked(batch, checks, offset)
                offset += batch.num_rows
                if batch.schema != schema:
                    b = out.batch if isinstance(out, base.Chunk) else out
                    if b is not None:
                        b = b.rename_columns(schema.names).cast(schema)
                        out = base.Chunk(b, out.dirty) if isinstance(out, base.Chunk) else b
                yield out
        finally:
            con.close()


_HUGE = ("HUGEINT", "UHUGEINT")
_TEMPORAL = "date or timestamp"

#: DuckDB's ``infinity`` and ``-infinity`` as it hands them to Arrow: the int32 (date32) or int64
#: (timestamp, any unit) maximum and its negation. No real value is one of them (DuckDB's last
#: date and timestamp are one before), and Arrow has no infinity: a Parquet or CSV writer would
#: write the year 5881580 or 294247 as if it were a date.
_INFINITY = {32: ((1 << 31) - 1, -((1 << 31) - 1)), 64: ((1 << 63) - 1, -((1 << 63) - 1))}


def _infinities(col: pa.Array) -> tuple[pa.Array, pa.Array]:
    """The masks of ``col``'s rows holding ``infinity`` and ``-infinity``."""
    bits = 32 if pa.types.is_date32(col.type) else 64
    storage = col.view(pa.int32() if bits == 32 else pa.int64())
    top, bottom = _INFINITY[bits]
    return (
        pc.fill_null(pc.equal(storage, top), False),
        pc.fill_null(pc.equal(storage, bottom), False),
    )


def _checked(
    batch: pa.RecordBatch, checks: dict[int, str], offset: int
) -> pa.RecordBatch | base.Chunk:
    """DuckDB hands HUGEINT and UHUGEINT over as decimal128(38, 0) holding the raw 128 bits, so
    a value of 39 digits is an invalid decimal and a UHUGEINT from 2**127 up reads as negative;
    it hands a date or timestamp ``infinity`` over as the type's largest value, and a time of
    ``24:00:00`` as one microsecond past Arrow's last time of day: such a row is dirty (a value
    with no Arrow form, never a stand-in)."""
    bad: dict[int, str] = {}
    shown: dict[int, dict[str, str]] = {}
    # built here: pa.scalar of a Decimal imports pandas, which an import must not cost
    top = pa.scalar(Decimal(10**38 - 1), pa.decimal128(38, 0))
    for j, kind in checks.items():
        col = batch.column(j)
        name = batch.schema.names[j]
        if kind == _TEMPORAL and pa.types.is_time64(col.type):
            day = 86_400 * (1_000_000 if col.type.unit == "us" else 1_000_000_000)
            end = pc.fill_null(pc.greater_equal(col.view(pa.int64()), day), False)
            for i in pc.indices_nonzero(end).to_pylist():
                shown.setdefault(i, {})[name] = "24:00:00"
                bad.setdefault(
                    i,
                    f"column {name!r}: 24:00:00 has no form outside DuckDB (Arrow and Parquet "
                    "times end at 23:59:59.999999); cast it to VARCHAR in column or querySql, "
                    "or leave such rows out with where",
                )
            continue
        if kind == _TEMPORAL:
            if not (pa.types.is_date32(col.type) or pa.types.is_timestamp(col.type)):
                continue
            for word, mask in zip(("infinity", "-infinity"), _infinities(col), strict=True):
                for i in pc.indices_nonzero(mask).to_pylist():
                    shown.setdefault(i, {})[name] = word
                    bad.setdefault(
                        i,
                        f"column {name!r}: DuckDB's {word} has no date/time form outside DuckDB "
                        f"(Arrow and Parquet would take it for the type's last or first value); "
                        "cast it to VARCHAR in column or querySql, or leave such rows out with "
                        "where",
                    )
            continue
        if not pa.types.is_decimal(col.type):
            continue
        out = pc.or_(pc.greater(col, top), pc.less(col, pc.negate(top) if kind == "HUGEINT" else 0))
        for i in pc.indices_nonzero(pc.fill_null(out, False)).to_pylist():
            raw = int(col[i].as_py())
            value = raw + 2**128 if kind == "UHUGEINT" and raw < 0 else raw
            bad.setdefault(
                i,
                f"column {batch.schema.names[j]!r}: {kind} {value} has more than the 38 digits "
                "Arrow's decimal holds; cast it to VARCHAR or DOUBLE in column or querySql",
            )
    if not bad:
        return batch
    dirty = [
        base.Dirty(why, {**row_of(batch, i), **shown.get(i, {})}, f"row {offset + i}")
        for i, why in sorted(bad.items())
    ]
    keep = pa.array([i not in bad for i in range(batch.num_rows)])
    return base.Chunk(batch.filter(keep), dirty)
