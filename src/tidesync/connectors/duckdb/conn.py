"""DuckDB connections and table look-ups the reader and writer share."""

from __future__ import annotations

from typing import Any

import duckdb
import pyarrow as pa

from tidesync.connectors.sql import (
    DUCKDB,
    split_name,
)
from tidesync.errors import FatalError, RetriableError, TidesyncError, did_you_mean

_D = DUCKDB


def _connect(path: str, read_only: bool) -> duckdb.DuckDBPyConnection:
    """A connection to ``path``; read-only unless this process already holds it read-write
    (DuckDB shares one database per file and process, and its settings must agree)."""
    try:
        return duckdb.connect(path, read_only=read_only)
    except duckdb.ConnectionException as e:
        if read_only and "different configuration" in str(e):
            return duckdb.connect(path)
        raise


def translate(e: BaseException, where: str) -> TidesyncError:
    """A DuckDB error as tidesync's, DuckDB's error class kept as its code: a file locked by
    another process and a write-write conflict are worth a retry, the rest is not."""
    if isinstance(e, TidesyncError):
        return e
    code = type(e).__name__
    first = str(e).split("\n")[0]
    lock = isinstance(e, duckdb.IOException) and "lock" in first.lower()
    cls = RetriableError if lock or isinstance(e, duckdb.TransactionException) else FatalError
    return cls(f"{where}: {first}", code=code)


def _to_table(rel: Any) -> pa.Table:
    f = getattr(rel, "to_arrow_table", None)
    return f() if f is not None else rel.arrow()


def _resolve(con: duckdb.DuckDBPyConnection, table: str) -> tuple[str, str, str]:
    """(database, schema, name) of ``table``, matched as DuckDB does (ignoring case);
    LookupError naming the closest table when missing."""
    parts = split_name(table)
    db, schema = con.execute("SELECT current_database(), current_schema()").fetchone() or ("", "")
    if len(parts) == 2:
        schema = parts[0]
    elif len(parts) >= 3:
        db, schema = parts[-3], parts[-2]
    rows = con.execute(
        "SELECT database_name, schema_name, table_name FROM duckdb_tables() "
        "UNION ALL SELECT database_name, schema_name, view_name FROM duckdb_views() WHERE NOT internal"
    ).fetchall()
    here = [r for r in rows if r[0].lower() == db.lower() and r[1].lower() == schema.lower()]
    name = parts[-1]
    exact = [r for r in here if r[2] == name] or [r for r in here if r[2].lower() == name.lower()]
    if len(exact) != 1:
        raise LookupError(
            f"table {table!r} not found in schema {schema}"
            f"{did_you_mean(name, [r[2] for r in here])}"
        )
    return exact[0]


def _columns(con: duckdb.DuckDBPyConnection, where: tuple[str, str, str]) -> list[tuple[Any, ...]]:
    """(name, data_type, is_nullable, column_default) of each column, in order."""
    return con.execute(
        "SELECT column_name, data_type, is_nullable, column_default FROM duckdb_columns() "
        "WHERE database_name = ? AND schema_name = ? AND table_name = ? ORDER BY column_index",
        list(where),
    ).fetchall()
