"""PostgreSQL <-> Arrow types, without loss.

Reading: a query's columns come back from the binary COPY decoder (``decode``, or ADBC's). Types it decodes natively
keep their Arrow form; ``numeric(p, s)`` arrives as text and becomes ``decimal128(p, s)``
(``decimal256`` above 38 digits; text when unconstrained, since no fixed scale holds every
value); everything else (uuid, enum, inet, interval, money, xml, ...) is cast to text by the
server, and arrays to JSON text, except one-dimensional ``real[]`` and ``double precision[]`` (vectors),
read as lists of floats. :func:`read_plan` says, per column, the SQL expression to select
and the Arrow type to expect; :func:`to_arrow` turns a decoded batch into that schema.

Writing: :func:`for_copy` reshapes a batch into types the binary COPY encoder (pgpq) takes;
:func:`insert_expr` says how a staged column becomes the target column's type (PostgreSQL's own
assignment rules for strings, so too-long values fail rather than being cut; explicit casts else).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tidesync.compute import pc
from tidesync.connectors.postgresql.conn import quote_ident

__all__ = [
    "OutColumn",
    "read_plan",
    "to_arrow",
    "for_copy",
    "direct_type",
    "insert_expr",
    "unbounded",
    "kept_digits",
    "NON_FINITE",
]

# oid -> Arrow type, for the types ADBC decodes to plain Arrow.
_NATIVE: dict[int, pa.DataType] = {
    16: pa.bool_(),
    17: pa.binary(),
    20: pa.int64(),
    21: pa.int16(),
    23: pa.int32(),
    25: pa.string(),
    114: pa.string(),
    700: pa.float32(),
    701: pa.float64(),
    1042: pa.string(),
    1043: pa.string(),
    1082: pa.date32(),
    1083: pa.time64("us"),
    1114: pa.timestamp("us"),
    1184: pa.timestamp("us", tz="UTC"),
    3802: pa.string(),
}
NUMERIC = 1700
INET = 869
INTERVAL = 1186
TEXT = 25
#: real[] and double precision[]: one-dimensional, they are vectors (embeddings) and are read
#: and written as Arrow lists of floats, by the binary COPY both ways
FLOAT_ARRAYS: dict[int, pa.DataType] = {1021: pa.float32(), 1022: pa.float64()}
OID = 26
NON_FINITE = ["nan", "NaN", "inf", "-inf", "Infinity", "-Infinity"]


@dataclass(frozen=True)
class OutColumn:
    name: str
    sql: str  # expression over the wrapped query's alias q
    type: pa.DataType
    numeric: bool = False  # arrives as text, converted to type
    oid: int = TEXT  # the type the expression selects (what the binary COPY sends)


@dataclass(frozen=True)
class TypeInfo:
    """A row of pg_type, as far as planning needs it."""

    oid: int
    name: str  # format_type, e.g. 'character varying', 'uuid', 'mood'
    category: str  # typcategory: A array, S string, N numeric, E enum, ...
    base: int = 0  # domain's base type
    base_name: str = ""
    base_typmod: int = -1
    elem_category: str = ""  # for arrays: the element type's typcategory


def numeric_type(precision: int | None, scale: int | None) -> pa.DataType:
    """Arrow type for ``numeric(p, s)``: exact decimals, text when unconstrained."""
    if not precision:
        return pa.string()
    s = scale or 0
    if precision <= 38:
        return pa.decimal128(precision, s)
    if precision <= 76:
        return pa.decimal256(precision, s)
    return pa.string()


def _typmod_numeric(typmod: int) -> tuple[int | None, int | None]:
    if typmod < 4:
        return None, None
    t = typmod - 4
    return (t >> 16) & 0xFFFF, t & 0xFFFF


#: the types of times whose type modifier is the fractional-second digits kept (6 without one):
#: time, timestamp, timestamptz, timetz
_TIME_TYPES = (1083, 1114, 1184, 1266)


def kept_digits(oid: int, typmod: int) -> int | None:
    """The digits after the point that a column of type ``oid`` (after domains) with modifier
    ``typmod`` keeps, rounding away the rest: a ``numeric(p,s)``'s scale, a time's or
    timestamp's fractional-second digits (6 without a modifier), an unconstrained interval's
    (6); None for a ``numeric`` without one and every other type."""
    if oid == NUMERIC:
        return _typmod_numeric(typmod)[1]
    if oid in _TIME_TYPES:
        return 6 if typmod < 0 else typmod
    if oid == INTERVAL and typmod < 0:
        # microseconds; an interval with fields or digits is checked by the server (writer.py:
        # _interval_checks)
        return 6
    return None


def read_plan(
    names: list[str],
    described: list[tuple[int, int | None, int | None]],
    types: dict[int, TypeInfo],
) -> list[OutColumn]:
    """Per output column: the expression to select from ``q`` and the Arrow type it becomes.

    ``described`` holds (type oid, numeric precision, numeric scale) per column, as the server
    describes the query.
    """
    out = []
    for name, (oid, prec, scale) in zip(names, described, strict=True):
        ref = "q." + quote_ident(name)
        alias = " AS " + quote_ident(name)
        info = types.get(oid)
        if info is not None and info.base:  # a domain: read as its base type
            oid = info.base
            ref = f"{ref}::{info.base_name}"
            prec, scale = _typmod_numeric(info.base_typmod)
            info = types.get(oid)
        if oid == NUMERIC:
            t = numeric_type(prec, scale)
            out.append(OutColumn(name, ref + alias, t, numeric=True, oid=NUMERIC))
        elif oid in _NATIVE:
            out.append(OutColumn(name, ref + alias, _NATIVE[oid], oid=oid))
        elif oid == OID:
            out.append(OutColumn(name, f"{ref}::int8{alias}", pa.int64(), oid=20))
        elif oid in FLOAT_ARRAYS:
            # no decoder of its own in decode.py: such a split reads through ADBC, which
            # decodes one-dimensional float arrays to lists
            sql = _one_dimension(ref, name, "real[]" if oid == 1021 else "double precision[]")
            out.append(OutColumn(name, sql + alias, pa.list_(FLOAT_ARRAYS[oid]), oid=oid))
        elif info is not None and info.category == "A":
            out.append(OutColumn(name, f"array_to_json({ref})::text{alias}", pa.string()))
        elif oid == INET:
            # inet's cast to text always shows the mask ('10.0.0.1/32'), its text form (psql,
            # JDBC, pg_dump, arrays' JSON) only where it is not the whole address
            out.append(OutColumn(name, f"abbrev({ref}){alias}", pa.string()))
        else:
            out.append(OutColumn(name, f"{ref}::text{alias}", pa.string()))
    return out


def _one_dimension(ref: str, name: str, sql_type: str) -> str:
    """``ref`` as is when it holds a one-dimensional array (or NULL); a multidimensional one
    fails the read with a message naming the column, since the binary decoder would flatten it.
    The failing cast depends on the row, so the server cannot fold it at planning time."""
    msg = (
        f"column {name} holds a multidimensional array, read here as a list of floats; "
        f"select array_to_json({quote_ident(name)})::text in querySql to read it as JSON text"
    ).replace("'", "''")
    return (
        f"CASE WHEN coalesce(array_ndims({ref}), 1) = 1 THEN {ref} "
        f"ELSE ('{msg}' || left({ref}::text, 0))::{sql_type} END"
    )


def _plain(arr: pa.Array) -> pa.Array:
    while isinstance(arr, pa.ExtensionArray):
        arr = arr.storage
    return arr


def to_arrow(
    batch: pa.RecordBatch, cols: list[OutColumn], schema: pa.Schema
) -> tuple[pa.RecordBatch, pa.Array | None]:
    """The decoded batch in the planned schema, and a mask of rows holding a numeric that no
    decimal can hold (NaN, Infinity) or None. Those rows are for the caller to report."""
    arrays = []
    bad: pa.Array | None = None
    for arr, col in zip(batch.columns, cols, strict=True):
        arr = _plain(arr)
        if col.numeric and not pa.types.is_string(col.type):
            if pa.types.is_large_string(arr.type):
                arr = arr.cast(pa.string())
            nf = pc.fill_null(pc.is_in(arr, pa.array(NON_FINITE)), False)
            if pc.any(nf).as_py():
                bad = nf if bad is None else pc.or_(bad, nf)
                arr = pc.if_else(nf, pa.scalar(None, arr.type), arr)
            arr = arr.cast(col.type)
        elif arr.type != col.type:
            arr = arr.cast(col.type)
        arrays.append(arr)
    return pa.RecordBatch.from_arrays(arrays, schema=schema), bad


# -- writing ----------------------------------------------------------------------------------


def for_copy(arr: pa.Array) -> tuple[pa.Array, bool]:
    """The array in a type the binary COPY encoder takes, and whether it held zoned timestamps
    (encoded as UTC wall time, to be read back ``AT TIME ZONE 'UTC'``)."""
    t = arr.type
    if isinstance(t, pa.ExtensionType):
        return for_copy(arr.storage)
    if pa.types.is_dictionary(t):
        return for_copy(arr.dictionary_decode())
    if pa.types.is_null(t):
        return arr.cast(pa.string()), False
    if pa.types.is_timestamp(t):
        zoned = t.tz is not None
        if t.unit == "ns":
            arr = arr.cast(pa.timestamp("us", tz=t.tz), safe=False)
        return arr, zoned
    if pa.types.is_time64(t) and t.unit == "ns":
        return arr.cast(pa.time64("us"), safe=False), False
    if pa.types.is_date64(t):
        return arr.cast(pa.date32()), False
    if pa.types.is_decimal256(t) or pa.types.is_interval(t):
        return arr.cast(pa.string()), False
    if pa.types.is_duration(t) and t.unit == "ns":
        return arr.cast(pa.duration("us"), safe=False), False
    return arr, False


def direct_type(t: pa.DataType, target: TypeInfo) -> tuple[pa.DataType, bool] | None:
    """The Arrow type whose binary COPY encoding the target column's type reads as is, and
    whether the cast to it may lose precision by design (floats); None when only the staging
    path (text or other types, casts in SQL) can write this column.

    Binary COPY skips the server's text parsing, so a typed batch goes straight into the table:
    integers narrowed with an overflow check, floats, decimals (the server applies the column's
    precision and scale), strings into text/varchar/char (lengths still checked), bytes, booleans,
    dates, times, naive timestamps into ``timestamp`` and zoned ones into ``timestamptz``.
    """
    oid = target.oid
    if oid in (20, 21, 23) and pa.types.is_integer(t):
        return {20: pa.int64(), 21: pa.int16(), 23: pa.int32()}[oid], False
    if oid in (700, 701) and (pa.types.is_floating(t) or pa.types.is_integer(t)):
        return (pa.float32() if oid == 700 else pa.float64()), True
    if oid in FLOAT_ARRAYS and _is_number_list(t):
        return pa.list_(FLOAT_ARRAYS[oid]), True
    if oid == NUMERIC and pa.types.is_decimal128(t):
        return t, False
    if oid in (25, 1042, 1043) and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return t, False
    if oid == 17 and (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
        return t, False
    if oid == 16 and pa.types.is_boolean(t):
        return t, False
    if oid == 1082 and pa.types.is_date32(t):
        return t, False
    if oid == 1083 and pa.types.is_time64(t) and t.unit == "us":
        return t, False
    if oid == 1114 and pa.types.is_timestamp(t) and t.tz is None:
        return t, False
    if oid == 1184 and pa.types.is_timestamp(t) and t.tz is not None:
        return t, False
    return None


def _is_number_list(t: pa.DataType) -> bool:
    lists = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    return lists and (pa.types.is_floating(t.value_type) or pa.types.is_integer(t.value_type))


#: unbounded spellings of the types whose name alone (format_type without a modifier) means
#: length 1: ``bit`` is ``bit(1)``, ``character`` is ``char(1)``
_UNBOUNDED = {
    "bit": "varbit",
    "bit[]": "varbit[]",
    "character": "bpchar",
    "character[]": "bpchar[]",
}


def unbounded(name: str) -> str:
    """Type ``name`` (format_type without a modifier) spelled so that a cast to it keeps any
    length: ``bit`` and ``character`` alone mean length 1."""
    return _UNBOUNDED.get(name, name)


def insert_expr(
    src: str, src_oid: int, target: TypeInfo, type_name: str, zoned: bool, record: str = ""
) -> str:
    """How staged column ``src`` becomes the target column's value in ``INSERT ... SELECT``.

    The same type passes as is. Into strings (char, varchar, text) PostgreSQL's assignment rules
    apply, so a value too long fails (22001) instead of being cut as an explicit cast would.
    Bit strings and arrays are cast to their unbounded type and the INSERT's assignment applies
    the column's length (an explicit ``CAST('1' AS bit(3))`` is ``'100'``, a ``varchar(3)[]``
    cast cuts each element). Anything else is cast explicitly to ``type_name`` (the column's
    type with its modifier, which rounds as assignment would): text into uuid, json, enum, date,
    numeric(p, s) ...

    ``record`` names a composite type whose one column ``v`` has the target column's type: JSON
    text for an array of strings becomes its value by ``json_populate_record``, which reads
    nested JSON arrays as the dimensions of a multidimensional array (and applies the element
    type's length); without one, only one dimension is read.
    """
    expr = f"({src} AT TIME ZONE 'UTC')" if zoned else src
    if src_oid == target.oid and not zoned:
        return expr
    if target.category == "S":
        return expr
    if target.category in ("A", "V"):
        type_name = unbounded(target.name)
    if target.category == "A" and src_oid == TEXT:
        # arrays are read as JSON text ([1,2]); PostgreSQL's own literal ({1,2}) is taken too
        if target.elem_category == "S" and record:
            # json_array_elements_text made '[["a","b"],["c","d"]]' the one-dimensional
            # {"[\"a\",\"b\"]","[\"c\",\"d\"]"}
            value = f"(json_populate_record(NULL::{record}, json_build_object('v', {src}::json))).v"
            return (
                f"CASE WHEN left({src}, 1) = '[' THEN {value} ELSE CAST({src} AS {type_name}) END"
            )
        if target.elem_category == "S":
            js = f"ARRAY(SELECT json_array_elements_text({src}::json))"
        else:
            js = f"translate({src}, '[]', '{{}}')"
        return f"CASE WHEN left({src}, 1) = '[' THEN CAST({js} AS {type_name}) ELSE CAST({src} AS {type_name}) END"
    return f"CAST({expr} AS {type_name})"


def describe_types(conn: Any, oids: list[int]) -> dict[int, TypeInfo]:
    """pg_type rows for ``oids`` (and their domains' base types)."""
    rows = conn.execute(
        "SELECT t.oid, format_type(t.oid, NULL), t.typcategory, t.typbasetype, "
        "CASE WHEN t.typbasetype <> 0 THEN format_type(t.typbasetype, t.typtypmod) END, t.typtypmod, "
        "e.typcategory FROM pg_type t LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' "
        "WHERE t.oid = ANY(%s)",
        (list(set(oids)),),
    ).fetchall()
    out = {}
    for oid, name, cat, base, base_name, typmod, elem in rows:
        out[int(oid)] = TypeInfo(
            int(oid), name, cat, int(base or 0), base_name or "", int(typmod), elem or ""
        )
    bases = [i.base for i in out.values() if i.base and i.base not in out]
    if bases:
        out.update(describe_types(conn, bases))
    return out


def ddl_type(t: pa.DataType) -> str:
    """The PostgreSQL column type a new table gets for Arrow type ``t`` (a missing target is
    created from the reader's schema): the narrowest type that holds every value."""
    if isinstance(t, pa.ExtensionType):
        name = getattr(t, "extension_name", "")
        if name == "arrow.uuid":
            return "uuid"
        if name == "arrow.json":
            return "jsonb"
        return ddl_type(t.storage_type)
    if pa.types.is_dictionary(t):
        return ddl_type(t.value_type)
    simple = [
        (pa.types.is_boolean, "boolean"),
        (pa.types.is_int8, "smallint"),
        (pa.types.is_int16, "smallint"),
        (pa.types.is_uint8, "smallint"),
        (pa.types.is_int32, "integer"),
        (pa.types.is_uint16, "integer"),
        (pa.types.is_int64, "bigint"),
        (pa.types.is_uint32, "bigint"),
        (pa.types.is_uint64, "numeric(20,0)"),
        (pa.types.is_float16, "real"),
        (pa.types.is_float32, "real"),
        (pa.types.is_float64, "double precision"),
        (pa.types.is_date, "date"),
        (pa.types.is_time, "time"),
        (pa.types.is_duration, "interval"),
        (pa.types.is_interval, "interval"),
    ]
    for test, name in simple:
        if test(t):
            return name
    if pa.types.is_decimal(t):
        return f"numeric({t.precision},{t.scale})"
    if pa.types.is_timestamp(t):
        return "timestamptz" if t.tz is not None else "timestamp"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "bytea"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = ddl_type(t.value_type)
        return "jsonb" if inner.endswith("[]") or inner == "jsonb" else inner + "[]"
    if pa.types.is_struct(t) or pa.types.is_map(t):
        return "jsonb"
    return "text"
