"""The SQLite reader: each split opens its own read-only connection and builds Arrow column by column."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.connectors.sql import (
    QuerySplit,
    SqlReader,
    same_columns,
)
from tidesync.connectors.sqlite.conn import (
    _BUSY_TIMEOUT_S,
    _D,
    _table_info,
    arrow_type,
    hex_text,
    translate,
)
from tidesync.errors import ConfigError

_SAMPLE_ROWS = 1000


_ARROW_ERRORS = (
    pa.ArrowInvalid,
    pa.ArrowTypeError,
    pa.ArrowNotImplementedError,
    OverflowError,
    ValueError,
    TypeError,
)


def _convert(values: Sequence[Any], t: pa.DataType) -> pa.Array:
    """Values as SQLite returns them (None, int, float, str, bytes) -> an array of type ``t``;
    raises one of _ARROW_ERRORS when a value does not fit."""
    if pa.types.is_string(t) or pa.types.is_binary(t):
        try:
            return pa.array(values, t)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if pa.types.is_string(t):
                return pa.array(
                    [
                        v.decode() if isinstance(v, bytes) else v if v is None else str(v)
                        for v in values
                    ],
                    t,
                )
            return pa.array(
                [v if v is None or isinstance(v, bytes) else str(v).encode() for v in values], t
            )
    if pa.types.is_decimal(t):
        return pa.array([None if v is None else str(v) for v in values], pa.string()).cast(t)
    arr = pa.array(values)
    if pa.types.is_temporal(t) and not (pa.types.is_string(arr.type) or pa.types.is_null(arr.type)):
        raise ValueError(f"{t} columns read text")
    if pa.types.is_integer(t) and hex_text(arr):
        raise ValueError(
            "hexadecimal text is no integer SQLite keeps (Arrow would read 0x10 as 16)"
        )
    if (
        pa.types.is_boolean(t)
        and (pa.types.is_integer(arr.type) or pa.types.is_floating(arr.type))
        and not pc.all(pc.is_in(arr.drop_null(), value_set=pa.array([0, 1], arr.type))).as_py()
    ):
        # Arrow's cast makes any number but 0 true: 2, -1 and 0.5 would all read as true
        raise ValueError("a boolean is 0 or 1")
    if pa.types.is_time(t):
        arr = pc.binary_join_element_wise("1970-01-01 ", arr.cast(pa.string()), "")
        return arr.cast(pa.timestamp("us")).cast(t)
    if pa.types.is_timestamp(t) and t.tz:
        try:
            return arr.cast(t)
        except pa.ArrowInvalid:
            return arr.cast(pa.timestamp(t.unit)).cast(t)  # no offset written: UTC
    return arr.cast(t)


def _column(values: Sequence[Any], t: pa.DataType) -> tuple[pa.Array, dict[int, str]]:
    """Like _convert, but a value that does not fit becomes NULL and is reported by row."""
    try:
        return _convert(values, t), {}
    except _ARROW_ERRORS:
        pass
    # value by value: SQLite lets one column hold several Python types (1 and 'true' in a
    # BOOLEAN column), which each convert alone but not together
    parts: list[pa.Array] = []
    bad: dict[int, str] = {}
    for i, v in enumerate(values):
        try:
            parts.append(_convert([v], t))
        except _ARROW_ERRORS as e:
            bad[i] = f"value {v!r} does not fit {t}: {e}"
            parts.append(pa.nulls(1, t))
    return pa.concat_arrays(parts) if parts else pa.array([], t), bad


def _sampled_type(declared: pa.DataType | None, sample: list[Any]) -> pa.DataType:
    """The type of a column given its declared type and its first values."""
    values = [v for v in sample if v is not None]
    if declared is None:
        if not values:
            return pa.string()
        try:
            t = pa.array(values).type
        except _ARROW_ERRORS:
            return pa.string()
        return t if t in (pa.int64(), pa.float64(), pa.string(), pa.binary()) else pa.string()
    fallbacks: list[pa.DataType] = []
    if pa.types.is_date(declared):
        fallbacks = [pa.timestamp("us"), pa.timestamp("us", "UTC"), pa.string()]
    elif pa.types.is_timestamp(declared) and declared.tz is None:
        fallbacks = [pa.timestamp("us", "UTC"), pa.string()]
    elif pa.types.is_temporal(declared):
        fallbacks = [pa.string()]
    elif pa.types.is_decimal(declared):
        fallbacks = [pa.float64()]
    for t in [declared, *fallbacks]:
        try:
            _convert(values, t)
            return t
        except _ARROW_ERRORS:
            continue
    return declared


def _connect_ro(path: str) -> sqlite3.Connection:
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    return sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=_BUSY_TIMEOUT_S)


class Reader(SqlReader):
    """Reads SQLite tables or queries; see the module docstring."""

    kind = "sqlite"
    dialect = _D
    _schema: pa.Schema | None = None

    def connect(self, database: str) -> sqlite3.Connection:
        try:
            con = _connect_ro(database)
        except sqlite3.Error as e:
            raise translate(e, f"sqlite {database}") from e
        self.run_session(con, sqlite3.Error)
        return con

    def table_columns(self, con: sqlite3.Connection, table: str) -> list[str]:
        return [r[1] for r in _table_info(con, table)[1]]

    def read_schema(self) -> pa.Schema:
        """The Arrow schema of the first table or query (every one must have the same columns):
        declared types, refined by up to 1000 rows where the declared type does not settle it."""
        if self._schema is not None:
            return self._schema
        sources = self.sources()
        shapes = []
        for s in sources:
            con = self.connect(s.database)
            try:
                sql = s.sql(_D)
                try:
                    cur = con.execute(f"SELECT * FROM ({sql}) LIMIT 0")
                    names = [d[0] for d in cur.description]
                    if s is sources[0]:
                        self._schema = self._first_schema(con, sql, names)
                except sqlite3.Error as e:
                    raise ConfigError(
                        f"{self.ctx.path(s.key)}: sqlite cannot run {sql!r}: {e}"
                    ) from e
                shapes.append((s, names))
            finally:
                con.close()
        same_columns(self.ctx, shapes)
        assert self._schema is not None
        return self._schema

    def _first_schema(self, con: sqlite3.Connection, sql: str, names: list[str]) -> pa.Schema:
        con.execute("DROP VIEW IF EXISTS temp.tidesync_probe")
        con.execute(f"CREATE TEMP VIEW tidesync_probe AS SELECT * FROM ({sql})")
        decl = [
            arrow_type(r[2] or "") for r in con.execute("PRAGMA temp.table_info(tidesync_probe)")
        ]
        con.execute("DROP VIEW temp.tidesync_probe")
        if len(decl) != len(names):
            decl = [None] * len(names)
        need = [
            i
            for i, t in enumerate(decl)
            if t is None or pa.types.is_temporal(t) or pa.types.is_decimal(t)
        ]
        sample: list[tuple[Any, ...]] = []
        if need:
            sample = con.execute(f"SELECT * FROM ({sql}) LIMIT {_SAMPLE_ROWS}").fetchall()
        fields = []
        for i, name in enumerate(names):
            t = decl[i]
            if i in need:
                t = _sampled_type(t, [r[i] for r in sample])
            fields.append(pa.field(name, t))
        return pa.schema(fields)

    def read_query(self, split: QuerySplit) -> Iterator[pa.RecordBatch | base.Chunk]:
        schema = self.read_schema()
        types = schema.types
        con = self.connect(split.database)
        offset = 0
        try:
            try:
                cur = con.execute(split.sql)
            except sqlite3.Error as e:
                raise translate(e, f"sqlite {split.database}, {split.source}") from e
            while True:
                try:
                    rows = cur.fetchmany(self.options.fetch_size)
                except sqlite3.Error as e:
                    raise translate(e, f"sqlite {split.database}, {split.source}") from e
                if not rows:
                    break
                yield self._batch(rows, schema, types, offset)
                offset += len(rows)
        finally:
            con.close()

    @staticmethod
    def _batch(
        rows: list[tuple[Any, ...]], schema: pa.Schema, types: list[pa.DataType], offset: int
    ) -> pa.RecordBatch | base.Chunk:
        arrays: list[pa.Array] = []
        bad: dict[int, str] = {}
        for j, values in enumerate(zip(*rows, strict=True)):
            arr, col_bad = _column(values, types[j])
            arrays.append(arr)
            for i, why in col_bad.items():
                bad.setdefault(i, f"column {schema.names[j]!r}: {why}")
        batch = pa.RecordBatch.from_arrays(arrays, schema=schema)
        if not bad:
            return batch
        keep = pa.array([i not in bad for i in range(len(rows))])
        dirty = [
            base.Dirty(
                reason=why,
                row=dict(zip(schema.names, rows[i], strict=True)),
                position=f"row {offset + i}",
            )
            for i, why in sorted(bad.items())
        ]
        return base.Chunk(batch.filter(keep), dirty)
