"""What the two Parquet sinks (the file writer's and the lake's staging roller,
``lake/common.py: ParquetRoller``) share: which columns of a file take a dictionary, and handing
Arrow's freed memory back to the system between row groups (docs/design.md, "Parquet
dictionaries" and "Memory")."""

from __future__ import annotations

import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

#: After a row group is written, hand the memory Arrow's allocator keeps from freed buffers
#: back to the system, at most this often. mimalloc returns it only after it has lain unused a
#: while, so a long run's peak RSS was its busiest moment's retention: 400-460 MB for a 20M-row
#: CSV -> Parquet run where the live data is under 300 MB. Every 0.25 s: 405 -> 357 MB peak at
#: 5M rows for about 3% more CPU; after every group: 327 MB for 7% (bench/README.md, Memory).
RELEASE_EVERY_S = 0.25


class ReleaseClock:
    """Hands the memory Arrow's default pool keeps from freed buffers back to the system, at
    most every ``RELEASE_EVERY_S`` in the whole process: a sink calls :meth:`tick` after
    writing a row group, the moment that group's buffers were just freed. The clock is shared,
    so many sinks (splits, a lake sink's partitions) release no more often than one."""

    _last = time.monotonic()
    _lock = threading.Lock()

    def tick(self) -> None:
        now = time.monotonic()
        with ReleaseClock._lock:
            if now - ReleaseClock._last < RELEASE_EVERY_S:
                return
            ReleaseClock._last = now
        pa.default_memory_pool().release_unused()


def dictionary_columns(first: pa.Table) -> list[str]:
    """The parquet columns (paths) worth a dictionary in a file whose first row group is
    ``first``: those the estimate below finds smaller dictionary-encoded than plain.

    pyarrow's default dictionary-encodes every column and falls back to plain only once a
    chunk's dictionary passes 1 MiB, so a column of unique values (a key, a timestamp, a
    measure) is hashed in full, then written with a dictionary page and indices as well as its
    plain values: larger files for more CPU (docs/design.md, "Parquet dictionaries"). Booleans
    never take one; a column that is an Arrow dictionary already always does; the leaves of
    lists, structs and maps keep pyarrow's default (a dictionary)."""
    chosen = []
    for field, col in zip(first.schema, first.columns, strict=True):
        t = field.type
        if isinstance(t, pa.BaseExtensionType):  # a uuid, a json: written as their storage
            t = t.storage_type
            col = pa.chunked_array([c.storage for c in col.chunks], t)
        if pa.types.is_nested(t):
            chosen += _leaf_paths(field.name, t)
        else:
            try:
                smaller = _smaller_with_a_dictionary(t, col)
            except pa.ArrowNotImplementedError:  # no kernel for the type: pyarrow's default
                smaller = True
            if smaller:
                chosen.append(field.name)
    return chosen


def _leaf_paths(path: str, t: pa.DataType) -> list[str]:
    """The parquet paths of a column's leaves, as pyarrow names them (compliant nested types)."""
    if isinstance(t, pa.BaseExtensionType):
        t = t.storage_type
    if pa.types.is_struct(t):
        return [p for f in t for p in _leaf_paths(f"{path}.{f.name}", f.type)]
    if pa.types.is_map(t):
        kv = f"{path}.key_value"
        return [*_leaf_paths(f"{kv}.key", t.key_type), *_leaf_paths(f"{kv}.value", t.item_type)]
    if (
        pa.types.is_list(t)
        or pa.types.is_large_list(t)
        or pa.types.is_fixed_size_list(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
    ):
        return _leaf_paths(f"{path}.list.element", t.value_type)
    return [path]


def _smaller_with_a_dictionary(t: pa.DataType, col: pa.ChunkedArray) -> bool:
    """Whether ``col`` takes fewer bytes as a dictionary page (its distinct values, plain) and
    bit-packed indices than as plain values; compression left aside."""
    if pa.types.is_dictionary(t):
        return True
    if pa.types.is_boolean(t) or pa.types.is_null(t):
        return False
    valid = len(col) - col.null_count
    if valid == 0:
        return False
    distinct = pc.unique(col)
    d = len(distinct) - distinct.null_count
    indices = valid * max(1, (d - 1).bit_length()) / 8
    if _variable(t):  # plain: a 4-byte length before each value
        plain = 4 * valid + (pc.sum(pc.binary_length(col)).as_py() or 0)
        return 4 * d + (pc.sum(pc.binary_length(distinct)).as_py() or 0) + indices < plain
    width = _plain_width(t)
    return width is None or d * width + indices < valid * width


def _variable(t: pa.DataType) -> bool:
    return (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


def _plain_width(t: pa.DataType) -> int | None:
    """Bytes of one plain parquet value of ``t``, or None where unknown (then: a dictionary,
    pyarrow's default)."""
    if pa.types.is_decimal(t):  # the fewest bytes that hold precision digits and a sign
        return next(k for k in range(1, 33) if 1 << (8 * k - 1) > 10**t.precision)
    if pa.types.is_fixed_size_binary(t):
        return int(t.byte_width)
    try:
        bits = t.bit_width
    except ValueError:
        return None
    return max(4, bits // 8)  # 8- and 16-bit integers are stored as int32
