"""SQLite types and table look-ups the reader and writer share."""

from __future__ import annotations

import sqlite3
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors.sql import (
    SQLITE,
    split_name,
)
from tidesync.errors import FatalError, RetriableError, TidesyncError, did_you_mean

_D = SQLITE


_BUSY_TIMEOUT_S = 30.0


def hex_text(arr: pa.Array) -> bool:
    """Whether text bound for an integer holds a hexadecimal literal (``'0x10'``), which Arrow's
    cast reads as 16 where SQLite keeps the text and no other database takes it as a number."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return False
    return bool(pc.any(pc.match_substring_regex(arr, pattern=r"^\s*[+-]?0[xX]")).as_py())


def arrow_type(declared: str) -> pa.DataType | None:
    """The Arrow type of a column declared ``declared``; None when its values decide
    (no declared type, as for expressions, or one SQLite would store as NUMERIC)."""
    d = declared.strip().upper()
    if not d:
        return None
    if "BOOL" in d:
        return pa.bool_()
    if d.startswith(("DATETIME", "TIMESTAMP")):
        tz = "TZ" in d.split("(")[0] or "WITH TIME ZONE" in d
        return pa.timestamp("us", "UTC" if tz else None)
    if d.startswith("DATE"):
        return pa.date32()
    if d.startswith("TIME"):
        return pa.time64("us")
    if "INT" in d:
        return pa.int64()
    if any(w in d for w in ("CHAR", "CLOB", "TEXT", "JSON", "UUID", "STRING")):
        return pa.string()
    if "BLOB" in d or "BINARY" in d:
        return pa.binary()
    if any(w in d for w in ("REAL", "FLOA", "DOUB")):
        return pa.float64()
    if d.startswith(("DECIMAL", "NUMERIC", "NUMBER")):
        digits = d.partition("(")[2].rstrip(") ").split(",")
        try:
            precision, scale = int(digits[0]), int(digits[1]) if len(digits) > 1 else 0
        except ValueError:
            return pa.float64()
        return (
            pa.decimal128(precision, scale)
            if 0 < precision <= 38 and 0 <= scale <= precision
            else pa.float64()
        )
    return None


def declared_type(t: pa.DataType) -> str:
    """The column type a created table declares for Arrow type ``t`` (read back by
    :func:`arrow_type` as the same type, except unsigned 64-bit and nested types)."""
    if pa.types.is_dictionary(t):
        return declared_type(t.value_type)
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t) or pa.types.is_duration(t):
        return "INTEGER"
    if pa.types.is_floating(t):
        return "REAL"
    if pa.types.is_decimal(t):
        return f"DECIMAL({t.precision},{t.scale})" if t.precision <= 38 else "NUMERIC"
    if pa.types.is_timestamp(t):
        return "TIMESTAMPTZ" if t.tz else "TIMESTAMP"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_time(t):
        return "TIME"
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return "BLOB"
    return "TEXT"


def _table_lookup(con: sqlite3.Connection, table: str) -> tuple[str | None, str, list[str]]:
    """(schema, actual name, every table name there); the name is '' when missing."""
    parts = split_name(table)
    schema = parts[0] if len(parts) > 1 else None
    name = parts[-1]
    master = (
        "sqlite_temp_master"
        if schema and schema.lower() == "temp"
        else f"{_D.ident(schema)}.sqlite_master"
        if schema
        else "sqlite_master"
    )
    try:
        names = [
            r[0] for r in con.execute(f"SELECT name FROM {master} WHERE type IN ('table', 'view')")
        ]
    except sqlite3.OperationalError:
        names = []
    if name in names:
        return schema, name, names
    folded = [n for n in names if n.lower() == name.lower()]
    return schema, folded[0] if len(folded) == 1 else "", names


def _table_info(con: sqlite3.Connection, table: str) -> tuple[str, list[tuple[Any, ...]]]:
    """PRAGMA table_info of ``table``; raises LookupError naming the closest table."""
    schema, name, names = _table_lookup(con, table)
    if not name:
        where = f" in schema {schema}" if schema else ""
        raise LookupError(
            f"table {table!r} not found{where}{did_you_mean(split_name(table)[-1], names)}"
        )
    prefix = f"{_D.ident(schema)}." if schema else ""
    return name, con.execute(f"PRAGMA {prefix}table_info({_D.ident(name)})").fetchall()


# -- errors -----------------------------------------------------------------------------------

#: extended result codes newer than some Python's names for them
_CODES = {2835: "SQLITE_CONSTRAINT_PINNED", 3091: "SQLITE_CONSTRAINT_DATATYPE"}


def error_code(e: BaseException) -> str | None:
    """SQLite's result code name of ``e`` (``SQLITE_FULL``, ``SQLITE_BUSY``, ...), if any."""
    name = getattr(e, "sqlite_errorname", None)
    number = getattr(e, "sqlite_errorcode", None)
    if name in (None, "unknown") and number is not None:
        return _CODES.get(number, f"SQLITE_{number}")
    return name


def translate(e: BaseException, where: str, *, rolled_back: bool = False) -> TidesyncError:
    """An sqlite3 error as tidesync's, its result code kept: a lock another connection holds
    (``SQLITE_BUSY``/``SQLITE_LOCKED``) is worth a retry; a full disk or database and the rest
    are not. ``rolled_back`` says SQLite ended the transaction itself (it does so on a full
    disk, out of memory or an I/O error), which the message then says."""
    if isinstance(e, TidesyncError):
        return e
    code = error_code(e)
    msg = str(e)
    if code and code.startswith("SQLITE_FULL"):
        msg = f"{msg} (no space left for the database or its journal, or max_page_count reached)"
    if rolled_back:
        msg += "; SQLite rolled the transaction back, nothing was written"
    cls = (
        RetriableError if code and code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) else FatalError
    )
    return cls(f"{where}: {msg}" + (f" [{code}]" if code else ""), code=code)
