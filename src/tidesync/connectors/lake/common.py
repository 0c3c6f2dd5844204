"""What the two lake formats share: Arrow type fitting, the rolling
Parquet writer the sinks stage into, and the merge/sync computation (pure Arrow).

The merge works file by file against the target so that only the incoming rows (the changes)
are held in memory: :func:`prepare_changes` deduplicates them by key, :func:`classify` decides for
one existing file which of its rows stay, and which incoming rows are already there unchanged.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tidesync.connectors.parquet import ReleaseClock, dictionary_columns
from tidesync.errors import FatalError

DELETED = "__tidesync_deleted"  # staged beside merge/sync rows: the source marked the row deleted


ROW = "__tidesync_row"


CDC_OP = "_op"  # a CDC reader's operation column: 'd' (or 'delete') marks a deleted row


_TS_UNITS = {"s": 0, "ms": 1, "us": 2, "ns": 3}


def fits(src: pa.DataType, dst: pa.DataType) -> bool:
    """True when every ``src`` value casts to ``dst`` without loss (a widening or the same type)."""
    if src == dst or pa.types.is_null(src):
        return True
    if pa.types.is_dictionary(src):
        return fits(src.value_type, dst)
    if pa.types.is_integer(src) and pa.types.is_integer(dst):
        if pa.types.is_signed_integer(src) == pa.types.is_signed_integer(dst):
            return bool(src.bit_width <= dst.bit_width)
        return pa.types.is_unsigned_integer(src) and bool(src.bit_width < dst.bit_width)
    if pa.types.is_floating(src) and pa.types.is_floating(dst):
        return bool(src.bit_width <= dst.bit_width)
    strings = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)
    if any(f(src) for f in strings) and any(f(dst) for f in strings):
        return True
    binaries = (pa.types.is_binary, pa.types.is_large_binary, pa.types.is_binary_view)
    if any(f(src) for f in binaries) and any(f(dst) for f in binaries):
        return True
    if pa.types.is_timestamp(src) and pa.types.is_timestamp(dst):
        return (src.tz is None) == (dst.tz is None) and _TS_UNITS[src.unit] <= _TS_UNITS[dst.unit]
    if pa.types.is_time(src) and pa.types.is_time(dst):
        return _TS_UNITS[src.unit] <= _TS_UNITS[dst.unit]
    if pa.types.is_date(src) and pa.types.is_date(dst):
        return True
    if pa.types.is_decimal(src) and pa.types.is_decimal(dst):
        return bool(src.scale == dst.scale and src.precision <= dst.precision)
    return False


def describe(t: pa.DataType) -> str:
    return str(t).replace("large_string", "string")


def nulls(n: int, t: pa.DataType) -> pa.Array:
    return pa.nulls(n, t)


def constant(value: Any, t: pa.DataType, n: int) -> pa.Array:
    return pa.repeat(pa.scalar(value, t), n)


def row_numbers(n: int) -> pa.Array:
    if n == 0:
        return pa.array([], pa.int64())
    return pc.subtract(pc.cumulative_sum(pa.repeat(pa.scalar(1, pa.int64()), n)), 1)


@dataclass
class StagedFile:
    path: str
    rows: int
    partition: tuple[Any, ...] = ()

    def plain(self) -> dict[str, Any]:
        return {"path": self.path, "rows": self.rows, "partition": list(self.partition)}


class ParquetRoller:
    """Writes batches of one schema into Parquet files of about ``target_bytes`` (Arrow bytes)
    each, in row groups of at most ``group_rows`` rows or about ``GROUP_BYTES`` Arrow bytes: the
    sinks' staging. Each row group is encoded and written into the open file as soon as it fills
    (the file writer's rule, ``file/writer.py: ROW_GROUP_BYTES``), so memory is bounded by one
    row group. ``open_out(path)`` returns a writable file (a path or a stream). As in the file
    writer, each file takes dictionaries only on the columns its first row group shows them
    worth (``parquet.dictionary_columns``; not where ``writer_kwargs`` sets ``use_dictionary``),
    and freed Arrow memory goes back to the system between row groups (``ReleaseClock``)."""

    GROUP_BYTES = 8 << 20

    def __init__(
        self,
        schema: pa.Schema,
        new_path: Callable[[], str],
        open_out: Callable[[str], Any],
        writer_kwargs: dict[str, Any],
        *,
        target_bytes: int = 512 << 20,
        group_rows: int = 1 << 20,
        partition: tuple[Any, ...] = (),
    ):
        self.schema = schema
        self.new_path = new_path
        self.open_out = open_out
        self.kwargs = writer_kwargs
        self.target_bytes = target_bytes
        self.group_rows = group_rows
        self.partition = partition
        self.files: list[StagedFile] = []
        self._buf: list[pa.RecordBatch] = []
        self._buf_rows = 0
        self._buf_bytes = 0
        self._writer: pq.ParquetWriter | None = None
        self._out: Any = None
        self._file_bytes = 0
        self._release = ReleaseClock()

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self._buf.append(batch)
        self._buf_rows += batch.num_rows
        self._buf_bytes += batch.nbytes
        if self._buf_rows >= self.group_rows or self._buf_bytes >= self.GROUP_BYTES:
            self._flush()

    def _flush(self) -> None:
        if not self._buf:
            return
        table = pa.Table.from_batches(self._buf, self.schema)
        if self._writer is None:  # each file chooses its dictionaries from its first row group
            kwargs = self.kwargs
            if "use_dictionary" not in kwargs:
                kwargs = {**kwargs, "use_dictionary": dictionary_columns(table)}
            path = self.new_path()
            self.files.append(StagedFile(path, 0, self.partition))
            self._out = self.open_out(path)
            self._writer = pq.ParquetWriter(self._out, self.schema, **kwargs)
            self._file_bytes = 0
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))
        self.files[-1].rows += table.num_rows
        self._file_bytes += self._buf_bytes
        self._buf, self._buf_rows, self._buf_bytes = [], 0, 0
        del table
        self._release.tick()
        if self._file_bytes >= self.target_bytes:
            self._close_file()

    def _close_file(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._out is not None and not isinstance(self._out, str):
            self._out.close()
        self._out = None

    def close(self) -> list[StagedFile]:
        self._flush()
        self._close_file()
        return self.files

    def discard(self) -> list[str]:
        """Stop writing; the paths written so far (the caller deletes them)."""
        self._buf = []
        try:
            self._close_file()
        except Exception:  # noqa: BLE001 - a half-written file is deleted anyway
            self._writer = None
            self._out = None
        return [f.path for f in self.files]


def prepare_changes(
    batches: list[pa.RecordBatch],
    schema: pa.Schema,
    keys: list[str],
    mode: str = "merge",
    where: str = "",
) -> tuple[pa.Table, pa.Table]:
    """The staged incoming rows -> (upserts, deleted keys): the last row per key wins; rows the
    source marked deleted (column ``DELETED``) become keys to remove. For ``sync`` the rows are
    a snapshot, which holds each key once: a key sent in two different rows is a FatalError
    (which of them is current is not known), the same row twice is kept once."""
    full = schema.append(pa.field(DELETED, pa.bool_()))
    table = pa.Table.from_batches(batches, full) if batches else full.empty_table()
    if table.num_rows:
        table = table.append_column(ROW, row_numbers(table.num_rows))
        last = (
            table.select([*keys, ROW])
            .group_by(keys, use_threads=False)
            .aggregate([(ROW, "max"), (ROW, "count")])
        )
        if mode == "sync" and last.num_rows < table.num_rows:
            _refuse_conflicts(table, last, keys, where)
        picked = pc.sort_indices(last[f"{ROW}_max"])
        table = table.take(pc.take(last[f"{ROW}_max"], picked)).drop_columns([ROW])
    deleted = pc.fill_null(table[DELETED], False)
    upserts = table.filter(pc.invert(deleted)).drop_columns([DELETED])
    gone = table.filter(deleted).select(keys)
    return upserts.combine_chunks(), gone.combine_chunks()


def _refuse_conflicts(table: pa.Table, last: pa.Table, keys: list[str], where: str) -> None:
    """Raise FatalError when a key of the snapshot ``table`` comes in rows that differ."""
    dup = last.filter(pc.greater(last[f"{ROW}_count"], 1)).select([*keys, f"{ROW}_max"])
    rows = table.join(dup, keys, join_type="inner", use_threads=False)
    values = [c for c in table.column_names if c != ROW]
    winners = table.take(rows[f"{ROW}_max"])
    differ = pc.invert(_same_rows(rows.select(values), winners.select(values), values))
    bad = rows.filter(differ)
    if not bad.num_rows:
        return
    key = ", ".join(f"{k}={bad[k][0].as_py()!r}" for k in keys)
    raise FatalError(
        f"{where}: writeMode sync: the source sent key {key} in rows that differ (a snapshot "
        "holds each key once, so which row is current is unknown); nothing was published. "
        "Send each key once (deduplicate the source) or use writeMode merge, where the last "
        "row of a key wins"
    )


def _same_rows(a: pa.Table, b: pa.Table, columns: list[str]) -> pa.Array:
    """Row-wise, null-safe equality of ``a`` and ``b`` over ``columns`` (False where unsure)."""
    same = pa.repeat(pa.scalar(True), a.num_rows)
    for c in columns:
        x, y = a[c], b[c]
        try:
            eq = pc.fill_null(pc.equal(x, y), False)
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            return pa.repeat(pa.scalar(False), a.num_rows)  # nested types: treat as changed
        both_null = pc.and_(pc.is_null(x), pc.is_null(y))
        same = pc.and_(same, pc.or_(eq, both_null))
    return same


@dataclass
class FileVerdict:
    keep: pa.Array  # boolean mask over the file's rows
    removed: int  # rows dropped from the file
    same: pa.Array  # upsert row numbers found unchanged in this file (kept there)


def classify(
    existing: pa.Table,
    upserts: pa.Table,
    gone: pa.Table,
    keys: list[str],
    mode: str,
    forced: pa.Array | None = None,
) -> FileVerdict:
    """Decide for one existing file which rows stay.

    merge: a row stays unless its key is deleted or updated with a different value.
    sync:  a row stays only if its key is among the upserts with an equal value.
    An upsert equal to the row it would replace is not written again (``same``), unless its row
    number is in ``forced`` (the target held its key more than once: all copies are replaced).
    """
    n = existing.num_rows
    ekeys = existing.select(keys).append_column(ROW, row_numbers(n))
    ukeys = upserts.select(keys).append_column("__u", row_numbers(upserts.num_rows))
    matched = ekeys.join(ukeys, keys, join_type="inner", use_threads=False)
    e_idx, u_idx = matched[ROW], matched["__u"]
    values = [c for c in upserts.column_names if c not in keys and c in existing.column_names]
    same = _same_rows(
        existing.select(values).take(e_idx), upserts.select(values).take(u_idx), values
    )
    if forced is not None and len(forced):
        same = pc.and_(same, pc.invert(pc.is_in(u_idx, value_set=forced)))
    removed_parts = [pc.filter(e_idx, pc.invert(same))]
    if mode == "merge":
        if gone.num_rows:
            hit = ekeys.join(gone, keys, join_type="left semi", use_threads=False)
            removed_parts.append(hit[ROW])
    else:  # sync: what the source no longer has goes
        absent = ekeys.join(ukeys.select(keys), keys, join_type="left anti", use_threads=False)
        removed_parts.append(absent[ROW])
    removed = pa.chunked_array([p for part in removed_parts for p in _chunks(part)], pa.int64())
    keep = pc.invert(pc.is_in(row_numbers(n), value_set=removed.combine_chunks()))
    kept = pc.sum(pc.cast(keep, pa.int64())).as_py() or 0
    return FileVerdict(keep, n - kept, pc.filter(u_idx, same).combine_chunks())


def _chunks(a: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(a.chunks) if isinstance(a, pa.ChunkedArray) else [a]


def duplicates(values: list[pa.Array]) -> pa.Array:
    """Values that occur more than once across ``values`` (upsert row numbers)."""
    if not values:
        return pa.array([], pa.int64())
    allv = pa.chunked_array(values, pa.int64())
    counts = pc.value_counts(allv)
    return pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))


def conform(
    batch: pa.RecordBatch | pa.Table, schema: pa.Schema, constants: dict[str, Any] | None = None
) -> pa.RecordBatch:
    """``batch`` in ``schema``: columns cast by name, missing ones null, ``constants`` filled."""
    n = batch.num_rows
    names = batch.schema.names
    arrays = []
    for f in schema:
        if constants and f.name in constants:
            arrays.append(constant(constants[f.name], f.type, n))
        elif f.name in names:
            col = batch.column(names.index(f.name))
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            arrays.append(col if col.type == f.type else pc.cast(col, f.type))
        else:
            arrays.append(nulls(n, f.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def touches(same: pa.Array, dups: pa.Array) -> bool:
    return bool(len(same)) and bool(pc.any(pc.is_in(same, value_set=dups)).as_py())


def remaining(
    upserts: pa.Table, verdicts: list[tuple[Any, FileVerdict, Any]]
) -> tuple[pa.Table, dict[str, int]]:
    """The upserts still to write (new or changed rows), and counts for the log."""
    same = [v.same for _, v, _ in verdicts]
    unchanged = pa.chunked_array(same, pa.int64()).combine_chunks() if same else None
    inserts = upserts
    if unchanged is not None and len(unchanged):
        mask = pc.invert(pc.is_in(row_numbers(upserts.num_rows), value_set=unchanged))
        inserts = upserts.filter(mask)
    counts = {
        "added_rows": inserts.num_rows,
        "removed_rows": sum(v.removed for _, v, _ in verdicts),
        "unchanged_rows": upserts.num_rows - inserts.num_rows,
    }
    return inserts, counts


def parallel(fn: Callable[..., Any], items: list[Any]) -> list[Any]:
    """``[fn(i) for i in items]`` on a few threads (Parquet and Arrow release the GIL)."""
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 4)) as pool:
        return list(pool.map(fn, items))
