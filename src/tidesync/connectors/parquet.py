"""What the two Parquet sinks (the file writer's and the lake's staging roller,
``lake/common.py: ParquetRoller``) share: which columns of a file take a dictionary, and handing
Arrow's freed memory back to the system between row groups (docs/design.md, "Parquet
dictionaries" and "Memory")."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

#: After a row group is written, hand the memory Arrow's allocator keeps from freed buffers
#: back to the system, at most this often. mimalloc returns it only after it has lain unused a
#: while, so a long run's peak RSS was its busiest moment's retention: 400-460 MB for a 20M-row
#: CSV -> Parquet run where the live data is under 300 MB. Every 0.25 s: 405 -> 357 MB peak at
#: 5M rows for about 3% more CPU; after every group: 327 MB for 7% (bench/README.md, Memory).
RELEASE_EVERY_S = 0.25
#: Rows of a first row group the dictionary choice looks at: a larger group is judged from its
#: first this many, its distinct values estimated from theirs (Chao1). Counting the
#: distinct values of a whole 1Mi-row group cost 0.55-0.63 CPU-s for the benchmark's 8
#: columns, as much as encoding them; 65,536 rows cost some 30 ms and choose the same.
DICTIONARY_SAMPLE = 1 << 16


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
    bit-packed indices than as plain values; compression left aside. Past
    :data:`DICTIONARY_SAMPLE` rows, the distinct values and the plain widths are estimated from
    the first that many (a prefix, not a spread: rows of one key that lie together, as sorted
    data has them, are seen together, so the estimate sees the repeats)."""
    if pa.types.is_dictionary(t):
        return True
    if pa.types.is_boolean(t) or pa.types.is_null(t):
        return False
    valid = len(col) - col.null_count
    if valid == 0:
        return False
    sample = col.slice(0, DICTIONARY_SAMPLE)
    if sample.null_count:
        sample = sample.drop_null()
        if len(sample) == 0:  # a run of nulls first: the first values there are
            sample = col.drop_null().slice(0, DICTIONARY_SAMPLE)
    d, distinct = _distinct(sample, valid)
    indices = valid * max(1, (d - 1).bit_length()) / 8
    if _variable(t):  # plain: a 4-byte length before each value; widths scaled from the sample
        share = valid / len(sample)
        plain = 4 * valid + share * (pc.sum(pc.binary_length(sample)).as_py() or 0)
        mean = (pc.sum(pc.binary_length(distinct)).as_py() or 0) / max(1, len(distinct))
        return d * (4 + mean) + indices < plain
    width = _plain_width(t)
    return width is None or d * width + indices < valid * width


def _distinct(sample: pa.ChunkedArray, valid: int) -> tuple[int, pa.Array]:
    """The number of distinct values among a column's ``valid`` non-null values, estimated from
    ``sample`` (non-null; all of them where it is as long), and the sample's distinct values.
    The estimate is Chao1's, bias-corrected: the distinct values seen plus ``f1 (f1 - 1) /
    (2 (f2 + 1))``, where ``f1`` and ``f2`` count the values seen once and twice; at most
    ``valid``."""
    counts = pc.value_counts(sample)
    distinct = counts.field("values")
    seen = len(distinct)
    if len(sample) >= valid:
        return seen, distinct
    # the counts' buffer read by numpy: Array.to_numpy imports pandas (a quarter second)
    c = counts.field("counts")  # int64, no nulls
    n = np.frombuffer(c.buffers()[1], np.int64, len(c), c.offset * 8)
    f1 = int((n == 1).sum())
    f2 = int((n == 2).sum())
    return min(valid, seen + f1 * (f1 - 1) // (2 * (f2 + 1))), distinct


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
