"""The ``lake`` connector (aliases ``iceberg``, ``lakereader``, ``lakewriter``): partitioned
tables that cannot UPDATE, written so that every run is safe to repeat.

Two formats. ``format: iceberg`` (the default): an Apache Iceberg table through pyiceberg, in a
SQL catalog kept in ``<warehouse>/catalog.db`` (SQLite) unless ``catalog`` names another.
``format: hive``: Hive-style partitioned Parquet folders (``TABLE/ds=20161114/*.parquet``).

Writer parameters::

    table:         iceberg: namespace.name (default namespace: default); hive: a folder
    partition:     ds=${bizdate}   or several levels: pt=20150101/type=1 (string columns, added
                   to every row as constants; the table is partitioned by them when created)
    writeMode:     append | overwrite | merge | sync
                   (default: overwrite when partition is given, else append)
    primaryKey:    [uid]   the key of merge and sync
    deleteMarker:  {column: is_deleted, value: 1}   rows so marked delete their key (merge);
                   a CDC column ``_op`` with value ``d`` does the same without this parameter
    column:        [uid, uname, ...]   the source columns to write (default: all)
    lifecycle:     N   drop partitions whose date (first partition value, yyyymmdd) is more
                   than N days before the run's business date, at commit
    warehouse:     folder of the default catalog and its tables (default: warehouse)
    catalog:       pyiceberg catalog properties ({type: rest, uri: ...}) or a catalog URI
    compress:      hive only: snappy (default) | zstd | gzip | none

Write modes, each published in one commit at the end of the run (nothing is visible before):

* ``append`` adds the rows;
* ``overwrite`` replaces exactly the named partition (the whole table without ``partition``):
  rerunning an instance can never double its rows;
* ``merge`` upserts by ``primaryKey`` (the last row of a key in the run wins) and removes the
  keys the source marks deleted; rows equal to what the table holds are not rewritten;
* ``sync`` takes the rows as the complete current table (or partition): keys absent from them
  are deleted, so deletes propagate without change data capture.

New columns of the source are added to the table; a column whose type changes is an error
naming both types, except a widening the format allows (int -> long, float -> double).
merge and sync keep the run's rows in memory until the commit (they are the changes; for sync,
the table); append and overwrite stream them to Parquet files.

Reader parameters: ``table``, ``partition`` (read one partition), ``column``, and for Iceberg
``snapshotId`` or ``asOf`` (a time, ``2016-11-15 00:00:00`` in the job's time zone, or epoch
milliseconds) to read the table as it was. One split per data file.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.connectors._lake_common import (
    CDC_OP,
    DELETED,
    ParquetRoller,
    StagedFile,
    conform,
    parse_partition,
)
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, did_you_mean

__all__ = ["Reader", "Writer", "FileSplit"]

log = logging.getLogger("tidesync")

FORMATS = ("iceberg", "hive")
_MODE_ALIASES = {"insert": "append", "truncate": "overwrite", "upsert": "merge"}


@dataclass(frozen=True)
class FileSplit(base.Split):
    path: str = ""
    partition: tuple[tuple[str, str], ...] = ()


class _Common:
    """Parameters the reader and the writer share."""

    def __init__(self, p: base.Params, ctx: base.Context):
        self.format = p.str("format", "iceberg", choices=(*FORMATS, "parquet"), lower=True)
        if self.format == "parquet":
            self.format = "hive"
        self.table = p.str("table", required=True)
        if isinstance(self.table, str) and self.format == "iceberg":
            parts = self.table.split(".")
            if any(not s.strip() for s in parts):
                p.problem("table", f"{self.table!r} is not namespace.name, e.g. ods.ods_oplog")
        raw = p.str("partition")
        self.partition: list[tuple[str, str]] = []
        if raw is not None:
            try:
                self.partition = parse_partition(raw)
            except ValueError as e:
                p.problem("partition", f"{raw!r}: {e}")
        self.warehouse = ctx.resolve_path(p.str("warehouse", "warehouse"))
        self.catalog = p.get("catalog")
        if self.catalog is not None and not isinstance(self.catalog, str | dict):
            p.problem("catalog", "must be catalog properties (an object) or a catalog URI")
        if self.catalog is not None and self.format == "hive":
            p.problem("catalog", "applies to format iceberg only")
        cols = p.list("column")
        self.columns: list[str] | None = None
        if cols is not None and cols != ["*"]:
            self.columns = []
            for i, c in enumerate(cols):
                name = c.get("name") if isinstance(c, dict) else c
                if not isinstance(name, str) or not name:
                    p.problem(f"column[{i}]", f"must be a column name, got {c!r}")
                else:
                    self.columns.append(name)
        self.ctx = ctx
        self.p = p

    def backend(self) -> Any:
        ctx = self.ctx
        if self.format == "hive":
            from tidesync.connectors._lake_hive import HiveTable

            return HiveTable(
                root=ctx.resolve_path(self.table),
                partition=self.partition,
                where=ctx.where,
                table_key=ctx.path("table"),
                partition_key=ctx.path("partition"),
                compression=getattr(self, "compress", "snappy"),
            )
        from tidesync.connectors._lake_iceberg import IcebergTable

        return IcebergTable(
            table=self.table,
            catalog=self.catalog,
            warehouse=self.warehouse,
            partition=self.partition,
            where=ctx.where,
            table_key=ctx.path("table"),
            partition_key=ctx.path("partition"),
        )


# -- writer ------------------------------------------------------------------------------------


class _Sink(base.Sink):
    def __init__(self, writer: Writer, split: base.Split):
        self.w = writer
        self.split = split
        self.rollers: dict[tuple[Any, ...], ParquetRoller] = {}
        self.batches: list[pa.RecordBatch] = []

    def write(self, batch: pa.RecordBatch) -> None:
        w = self.w
        w.ensure_plan(batch.schema)
        shaped = w.shape(batch)
        if w.mode in ("merge", "sync"):
            self.batches.append(shaped)
            return
        plan = w.target.plan
        if not plan.dynamic:
            self._roller(dict(plan.constants)).write(shaped)
            return
        from tidesync.connectors._lake_iceberg import split_partitions

        for values, part in split_partitions(pa.Table.from_batches([shaped]), {}, plan.dynamic):
            for b in part.to_batches():
                self._roller(values).write(b)

    def _roller(self, values: dict[str, Any]) -> ParquetRoller:
        key = tuple(values.values())
        r = self.rollers.get(key)
        if r is None:
            r = self.rollers[key] = self.w.target.roller(self.split.index, values)
        return r

    def close(self) -> dict[str, Any]:
        try:
            files = [f for r in self.rollers.values() for f in r.close()]
        except OSError as e:
            raise FatalError(f"{self.w.ctx.where}: writing a staged file failed: {e}") from e
        return {"files": [f.plain() for f in files], "batches": self.batches}

    def discard(self) -> dict[str, Any]:
        paths = [p for r in self.rollers.values() for p in r.discard()]
        self.w.target.delete_files(paths)
        self.batches = []
        return {"files": [{"path": p, "rows": 0, "partition": []} for p in paths], "batches": []}


class Writer(base.Writer):
    """Writes an Iceberg table or Hive-style Parquet folders; see the module docstring."""

    kind = "lake"
    modes: ClassVar[tuple[str, ...]] = ("append", "overwrite", "merge", "sync")
    #: hive: the partition folder swapped by one rename; iceberg: the partition's files swapped
    #: in one snapshot, one catalog commit
    publish = "partition swap"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.compress = "snappy"
        fmt = str(params.get("format", "iceberg")).lower()
        if "compress" in params:
            if fmt == "iceberg":
                p.get("compress")
                p.problem(
                    "compress",
                    "applies to format hive; an Iceberg table's codec is its "
                    "write.parquet.compression-codec property",
                )
            else:
                c = p.str(
                    "compress", "snappy", choices=("snappy", "zstd", "gzip", "none"), lower=True
                )
                self.compress = c
        self.o = _Common(p, ctx)
        if "writeMode" in params:
            self.mode = self.write_mode(_MODE_ALIASES)
        else:
            truncate = p.bool("truncate")
            self.mode = "overwrite" if self.o.partition or truncate else "append"
        keys = p.list("primaryKey", aliases=("primaryKeys", "pk"))
        self.keys: list[str] = [str(k) for k in keys] if keys else []
        if self.mode in ("merge", "sync") and not self.keys:
            p.problem(
                "primaryKey",
                f"is required for writeMode {self.mode}: the column(s) that identify a row, "
                "e.g. primaryKey: [uid]",
            )
        marker = p.obj("deleteMarker")
        self.marker: tuple[str, Any] | None = None
        if marker is not None:
            if self.mode not in ("merge", "sync"):
                p.problem("deleteMarker", "applies to writeMode merge or sync")
            elif not isinstance(marker.get("column"), str) or "value" not in marker:
                p.problem(
                    "deleteMarker",
                    "must be {column: NAME, value: VALUE}, e.g. {column: is_deleted, value: 1}",
                )
            else:
                self.marker = (marker["column"], marker["value"])
        self.lifecycle = p.int("lifecycle", minimum=1)
        if self.lifecycle is not None:
            if not self.o.partition:
                p.problem(
                    "lifecycle",
                    "drops partitions by their date: give partition too, "
                    "e.g. partition: ds=${bizdate}",
                )
            elif ctx.bizdate is None:
                p.problem(
                    "lifecycle",
                    "needs the run's business date (run the job with "
                    "tidesync run --cyctime/--bizdate)",
                )
        p.done()
        self.target: Any = self.o.backend()
        self._lock = threading.Lock()
        self._planned_for: pa.Schema | None = None
        self._take: list[str] = []
        self._marker_col: str | None = None

    # -- planning --------------------------------------------------------------------------------
    def prepare(self, schema: pa.Schema | None) -> None:
        self.target.open(must_exist=False)
        if self.o.format == "hive":
            self.target.clean_dead()
        if schema is not None:
            self.ensure_plan(schema)

    def ensure_plan(self, schema: pa.Schema) -> None:
        if self._planned_for is not None:
            return
        with self._lock:
            if self._planned_for is None:
                self._plan(schema)
                self._planned_for = schema

    def _plan(self, schema: pa.Schema) -> None:
        names = schema.names
        marker_col = self.marker[0] if self.marker else None
        if marker_col is None and self.mode in ("merge", "sync") and CDC_OP in names:
            marker_col = CDC_OP
        if marker_col is not None and marker_col not in names:
            raise ConfigError(
                f"{self.ctx.path('deleteMarker.column')}: the source has no column "
                f"{marker_col!r}{did_you_mean(marker_col, names)}"
            )
        if self.o.columns is not None:
            problems = [
                f"{self.ctx.path(f'column[{i}]')}: the source has no column {c!r}"
                f"{did_you_mean(c, names)}"
                for i, c in enumerate(self.o.columns)
                if c not in names
            ]
            if problems:
                raise ConfigError(problems)
            take = list(self.o.columns)
        else:
            take = [n for n in names if n not in (marker_col, CDC_OP)]
        missing = [k for k in self.keys if k not in take and k not in dict(self.o.partition)]
        if missing:
            raise ConfigError(
                f"{self.ctx.path('primaryKey')}: {missing[0]!r} is not among the columns written"
                f"{did_you_mean(missing[0], take)}"
            )
        incoming = pa.schema([schema.field(n) for n in take])
        self.target.plan = self.target.make_plan(incoming)
        self._take = take
        self._marker_col = marker_col

    # -- rows ------------------------------------------------------------------------------------
    def shape(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch as staged: the table's columns and types, partition constants filled, and
        for merge/sync the deleted flag. Raises DirtyRecordError (the engine bisects)."""
        plan = self.target.plan
        names = batch.schema.names
        missing = [n for n in self._take if n not in names]
        if missing:
            raise FatalError(f"{self.ctx.where}: a batch came without column {missing[0]!r}")
        picked = pa.RecordBatch.from_arrays(
            [batch.column(names.index(n)) for n in self._take], names=self._take
        )
        try:
            out = conform(picked, plan.file_schema, plan.constants)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise DirtyRecordError(f"does not fit the table's types: {e}") from e
        for k in self.keys:
            if out.column(k).null_count:
                raise DirtyRecordError(f"primary key {k} is null")
        if self.mode not in ("merge", "sync"):
            return out
        deleted = pa.repeat(pa.scalar(False), batch.num_rows)
        if self._marker_col is not None:
            col = batch.column(names.index(self._marker_col))
            if self._marker_col == CDC_OP and self.marker is None:
                deleted = pc.is_in(
                    pc.utf8_lower(pc.cast(col, pa.string())), value_set=pa.array(["d", "delete"])
                )
            else:
                assert self.marker is not None
                try:
                    value = pa.scalar(self.marker[1]).cast(col.type)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                    raise ConfigError(
                        f"{self.ctx.path('deleteMarker.value')}: {self.marker[1]!r} does not fit "
                        f"column {self._marker_col} ({col.type}): {e}"
                    ) from None
                deleted = pc.fill_null(pc.equal(col, value), False)
        return out.append_column(DELETED, deleted)

    # -- sinks and publishing ----------------------------------------------------------------------
    def open(self, split: base.Split) -> base.Sink:
        return _Sink(self, split)

    def commit(self, results: list[Any]) -> None:
        if self._planned_for is None:
            # no rows and no schema: an empty run still empties an overwritten partition
            current = self.target.data_schema()
            if self.mode in ("overwrite", "sync") and current is not None:
                self.target.plan = self.target.make_plan(current)
                self._planned_for = current
            else:
                log.info("%s: no rows; nothing to publish", self.ctx.where)
                self.abort(results)
                return
        files = [
            StagedFile(f["path"], f["rows"], tuple(f["partition"]))
            for r in results
            if r
            for f in r["files"]
        ]
        batches = [b for r in results if r for b in r["batches"]]
        life = (self.ctx.bizdate, self.lifecycle) if self.lifecycle is not None else None
        summary = {"tidesync.job": self.ctx.job_name, "tidesync.write-mode": self.mode}
        if self.ctx.bizdate is not None:
            summary["tidesync.bizdate"] = self.ctx.bizdate.strftime("%Y%m%d")
        counts = self.target.commit(self.mode, files, batches, self.keys, life, summary)
        log.info("%s: %s committed %s", self.ctx.where, self.mode, counts)

    def abort(self, results: list[Any]) -> None:
        t = self.target
        if getattr(t, "outcome_unknown", False):
            return  # the catalog may reference them: keep every file
        paths = [f["path"] for r in results if r for f in r.get("files", [])]
        t.delete_files(paths + list(getattr(t, "written_at_commit", [])))
        if self.o.format == "hive":
            t.abort()


# -- reader ------------------------------------------------------------------------------------


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
            self.as_of_ms = _epoch_ms(as_of, ctx.timezone)
            if self.as_of_ms is None:
                p.problem(
                    "asOf",
                    f"{as_of!r} is not a time such as '2016-11-15 00:00:00' or epoch milliseconds",
                )
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

        from tidesync.connectors._lake_iceberg import plain_schema, small_arrow_schema

        t = self.target
        snap = t.snapshot_id(self.snapshot, self.as_of_ms, self.ctx.path)
        from tidesync.connectors._lake_iceberg import equal_to

        preds = [equal_to(k, v) for k, v in self.o.partition]
        flt = AlwaysTrue() if not preds else preds[0] if len(preds) == 1 else And(*preds)
        schema_names = t.table.schema().column_names
        for k, _ in self.o.partition:
            if k not in schema_names:
                raise ConfigError(
                    f"{self.ctx.path('partition')}: table {t.name} has no column "
                    f"{k!r}{did_you_mean(k, schema_names)}"
                )
        fields = ("*",) if self.o.columns is None else tuple(self.o.columns)
        self._check_columns(t.table.schema().column_names)
        self._scan = t.table.scan(row_filter=flt, selected_fields=fields, snapshot_id=snap)
        self._schema = plain_schema(small_arrow_schema(self._scan.projection()))

    def _open_hive(self) -> None:
        from tidesync.connectors._lake_hive import data_files, layout_keys, table_schema

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
        self._files = data_files(t.leaf) if t.leaf.is_dir() else []

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
            return [
                FileSplit(i, t.file.file_path.rsplit("/", 1)[-1], t.file.file_path)
                for i, t in enumerate(tasks)
            ]
        from tidesync.connectors._lake_hive import path_partition

        root = self.target.root
        return [
            FileSplit(i, str(f.relative_to(root)), str(f), tuple(path_partition(root, f)))
            for i, f in enumerate(self._files)
        ]

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch]:
        assert isinstance(split, FileSplit)
        self._open()
        if self.o.format == "iceberg":
            yield from self._read_iceberg(split)
        else:
            yield from self._read_hive(split)

    def _read_iceberg(self, split: FileSplit) -> Iterator[pa.RecordBatch]:
        from pyiceberg.io.pyarrow import ArrowScan

        if split.path not in self._tasks:
            self._tasks = {t.file.file_path: t for t in self._scan.plan_files()}
        task = self._tasks[split.path]
        t = self.target.table
        scan = ArrowScan(t.metadata, t.io, self._scan.projection(), self._scan.row_filter)
        for b in scan.to_record_batches([task]):
            if b.num_rows:
                yield conform(b, self._schema)

    def _read_hive(self, split: FileSplit) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        values = dict(split.partition)
        f = pq.ParquetFile(split.path)
        for b in f.iter_batches(batch_size=self.ctx.batch_rows):
            data = conform(b, self._data_schema)
            cols = {n: data.column(i) for i, n in enumerate(data.schema.names)}
            for k, v in values.items():
                if k not in cols:
                    cols[k] = pa.repeat(pa.scalar(v, pa.string()), b.num_rows)
            schema = self._schema
            assert schema is not None
            yield pa.RecordBatch.from_arrays([cols[n] for n in schema.names], schema=schema)


def _epoch_ms(v: Any, tz: str) -> int | None:
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    if not isinstance(v, str):
        return None
    s = v.strip()
    if s.isdigit() and len(s) >= 13:
        return int(s)
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d", "%Y%m%d%H%M%S", "%Y%m%d"):
        try:
            dt = datetime.strptime(s, fmt)
        except ValueError:
            continue
        return int(dt.replace(tzinfo=ZoneInfo(tz or "UTC")).timestamp() * 1000)
    return None
