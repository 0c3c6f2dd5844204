"""The lake reader: a table's current snapshot (Iceberg) or its partition folders (hive), one split per data file."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tidesync.connectors import base
from tidesync.connectors.lake.common import conform
from tidesync.connectors.lake.conn import _Common
from tidesync.errors import ConfigError, FatalError, did_you_mean
from tidesync.spec.params import local_instant, parse_time_arg


@dataclass(frozen=True)
class FileSplit(base.Split):
    path: str = ""
    partition: tuple[tuple[str, str | None], ...] = ()
    #: Iceberg: the snapshot the run planned (a worker reading the split builds the reader
    #: again, and must not read the table's current snapshot, which may be a later one)
    snapshot: int | None = None


class Reader(base.Reader):
    """Reads an Iceberg table (a partition, a snapshot) or Hive-style folders, a split per file."""

    kind = "lake"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.o = _Common(p, ctx)
        self.snapshot = p.int("snapshotId", aliases=("snapshot",))
        self.as_of_ms: int | None = None
        as_of = p.get("asOf")
        if as_of is not None:
            try:
                self.as_of_ms = _epoch_ms(as_of, ctx.timezone)
            except ValueError as e:
                p.problem("asOf", f"{e}; or give epoch milliseconds")
        if (self.snapshot is not None or as_of is not None) and self.o.format == "hive":
            p.problem(
                "snapshotId" if self.snapshot is not None else "asOf",
                "time travel needs format iceberg; Parquet folders keep no history",
            )
        if self.snapshot is not None and as_of is not None:
            p.problem("asOf", "give snapshotId or asOf, not both")
        p.done()
        self.target: Any = None
        self._schema: pa.Schema | None = None
        self._tasks: dict[str, Any] = {}
        self._scan: Any = None

    def _open(self) -> None:
        if self.target is not None:
            return
        t = self.o.backend()
        t.open(must_exist=True)
        self.target = t
        if self.o.format == "iceberg":
            self._open_iceberg()
        else:
            self._open_hive()

    def _open_iceberg(self) -> None:
        from pyiceberg.expressions import AlwaysTrue, And

        from tidesync.connectors.lake.iceberg import plain_schema, small_arrow_schema

        t = self.target
        snap = t.snapshot_id(self.snapshot, self.as_of_ms, self.ctx.path)
        from tidesync.connectors.lake.iceberg import equal_to

        preds = [equal_to(k, v) for k, v in self.o.partition]
        flt = AlwaysTrue() if not preds else preds[0] if len(preds) == 1 else And(*preds)
        schema = t.table.schema()
        schema_names = schema.column_names
        for (k, v), pred in zip(self.o.partition, preds, strict=True):
            if k not in schema_names:
                raise ConfigError(
                    f"{self.ctx.path('partition')}: table {t.name} has no column "
                    f"{k!r}{did_you_mean(k, schema_names)}"
                )
            self._check_value(schema, k, v, pred)
        fields = ("*",) if self.o.columns is None else tuple(self.o.columns)
        # the columns of the snapshot read (time travel: its schema, before later renames)
        self._check_columns(t.table.scan(snapshot_id=snap).projection().column_names)
        self._scan = t.table.scan(row_filter=flt, selected_fields=fields, snapshot_id=snap)
        self._schema = plain_schema(small_arrow_schema(self._scan.projection()))

    def _check_value(self, schema: Any, k: str, v: str, pred: Any) -> None:
        """ConfigError unless ``v`` is a value of column ``k`` as it is written: pyiceberg read
        ``id=1.9`` as ``id = 1`` (its integer part), and its own refusals were tracebacks."""
        from pyiceberg.expressions.visitors import bind
        from pyiceberg.types import IntegerType, LongType

        problem = ""
        if isinstance(schema.find_type(k), IntegerType | LongType) and not re.fullmatch(
            r"[+-]?[0-9]+", v
        ):
            problem = "is not a whole number"
        else:
            try:
                bind(schema, pred, case_sensitive=True)
            except ValueError as e:
                problem = f"is no value of the column: {e}"
        if problem:
            raise ConfigError(
                f"{self.ctx.path('partition')}: {k}={v!r} {problem} (column {k!r} of table "
                f"{self.target.name} is {schema.find_type(k)})"
            )

    def _open_hive(self) -> None:
        from tidesync.connectors.lake.hive import (
            data_files,
            layout_keys,
            partition_folders,
            table_schema,
        )

        t = self.target
        keys = layout_keys(t.root)
        for k, _ in self.o.partition:
            if k not in keys:
                raise ConfigError(
                    f"{self.ctx.path('partition')}: {t.root} has no partition "
                    f"column {k!r}{did_you_mean(k, keys)}"
                )
        data = table_schema(t.root) or pa.schema([])
        full = data
        for k in keys:
            if k not in full.names:
                full = full.append(pa.field(k, pa.string()))
        self._check_columns(full.names)
        self._schema = (
            full if self.o.columns is None else pa.schema([full.field(c) for c in self.o.columns])
        )
        self._data_schema = data
        self._schema_keys = keys
        self._files = [
            f for leaf in partition_folders(t.root, self.o.partition) for f in data_files(leaf)
        ]

    def _check_columns(self, names: list[str]) -> None:
        if self.o.columns is None:
            return
        problems = [
            f"{self.ctx.path(f'column[{i}]')}: the table has no column {c!r}{did_you_mean(c, names)}"
            for i, c in enumerate(self.o.columns)
            if c not in names
        ]
        if problems:
            raise ConfigError(problems)

    def schema(self) -> pa.Schema:
        self._open()
        assert self._schema is not None
        return self._schema

    def splits(self, n: int) -> list[base.Split]:
        self._open()
        if self.o.format == "iceberg":
            tasks = list(self._scan.plan_files())
            self._tasks = {t.file.file_path: t for t in tasks}
            snap = self._scan.snapshot()
            sid = None if snap is None else snap.snapshot_id
            return [
                FileSplit(i, t.file.file_path.rsplit("/", 1)[-1], t.file.file_path, snapshot=sid)
                for i, t in enumerate(tasks)
            ]
        from tidesync.connectors.lake.hive import path_partition

        root = self.target.root
        keys = self._schema_keys
        out: list[base.Split] = []
        for i, f in enumerate(self._files):
            part = path_partition(root, f)
            if [k for k, _ in part] != keys:
                # its rows would lack (or mislabel) the partition columns: a file at the root of
                # a partitioned table failed its read with a KeyError, after other splits' rows
                raise FatalError(
                    f"{self.ctx.path('table')}: {f} is not in partition folders "
                    f"{'/'.join(f'{k}=...' for k in keys) or '(none)'} as the table's first "
                    "ones are; move or remove it"
                )
            out.append(FileSplit(i, str(f.relative_to(root)), str(f), tuple(part)))
        return out

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch]:
        assert isinstance(split, FileSplit)
        self._open()
        if self.o.format == "iceberg":
            yield from self._read_iceberg(split)
        else:
            yield from self._read_hive(split)

    def _read_iceberg(self, split: FileSplit) -> Iterator[pa.RecordBatch]:
        from tidesync.connectors.lake.iceberg import arrow_scan

        if split.path not in self._tasks:
            # a worker's reader: its files and deletes as of the run's snapshot. The current
            # one lacked a file an overwrite had replaced (a KeyError), and applied the deletes
            # of a later update to rows whose new versions it did not read (rows lost)
            scan = self._scan.update(snapshot_id=split.snapshot)
            self._tasks = {t.file.file_path: t for t in scan.plan_files()}
        task = self._tasks[split.path]
        t = self.target.table
        scan = arrow_scan()(t.metadata, t.io, self._scan.projection(), self._scan.row_filter)
        for b in scan.to_record_batches([task]):
            if b.num_rows:
                yield conform(b, self._schema)

    def _read_hive(self, split: FileSplit) -> Iterator[pa.RecordBatch]:
        from tidesync.connectors.lake.hive import check_file, parquet_file

        values = dict(split.partition)
        f = parquet_file(split.path)
        check_file(split.path, f.schema_arrow, self._data_schema, list(values), self.ctx.where)
        for b in f.iter_batches(batch_size=self.ctx.batch_rows):
            data = conform(b, self._data_schema)
            cols = {n: data.column(i) for i, n in enumerate(data.schema.names)}
            for k, v in values.items():
                if k not in cols:
                    cols[k] = pa.repeat(pa.scalar(v, pa.string()), b.num_rows)
            schema = self._schema
            assert schema is not None
            yield pa.RecordBatch.from_arrays([cols[n] for n in schema.names], schema=schema)


def _epoch_ms(v: Any, tz: str) -> int:
    """``asOf`` as epoch milliseconds: 13 digits are milliseconds, anything else a time.

    By length, as :func:`parse_time_arg` reads times: ``20161115`` is that day, never 20,161
    seconds after 1970, and ``20161115000000`` is its midnight, never a date in 2609. A time
    without an offset is in the job's zone; one the zone's clock skips or shows twice raises
    :class:`ValueError`, as does anything that is not a time.
    """
    if isinstance(v, bool):
        raise ValueError(f"{v!r} is not a time")
    text = str(v).strip() if isinstance(v, int | str) else v
    if isinstance(text, str) and text.isdigit() and len(text) == 13:
        return int(text)
    return int(local_instant(parse_time_arg(text), tz or "UTC").timestamp() * 1000)
