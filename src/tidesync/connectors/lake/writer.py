"""The lake writer: staged Parquet files published by one Iceberg commit or a hive partition exchange (write modes in the package docstring and docs/connectors/lake.md)."""

from __future__ import annotations

import logging
import threading
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.connectors.lake.common import CDC_OP, DELETED, ParquetRoller, StagedFile, conform
from tidesync.connectors.lake.conn import _Common
from tidesync.connectors.publish import Finding, hook
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, did_you_mean

log = logging.getLogger("tidesync")


_MODE_ALIASES = {"insert": "append", "truncate": "overwrite", "upsert": "merge"}


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
        from tidesync.connectors.lake.iceberg import split_partitions

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
        if self.o.format == "hive":
            from tidesync.connectors.lake.hive import HIVE_NULL
            from tidesync.connectors.partition import partition_path

            for k, v in self.o.partition:
                shown = f"{k}={v!r}" if not v.isprintable() else f"{k}={v}"
                if v == HIVE_NULL:
                    p.problem(
                        "partition",
                        f"{k}={v}: Hive, Spark and pyarrow read the folder of that value as "
                        "NULL, not as the text written; give another value",
                    )
                elif any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
                    p.problem(
                        "partition",
                        f"{shown}: the value holds a control character, which a folder "
                        "name cannot hold as it is (Hive would escape it); give another value",
                    )
                elif len(partition_path([(k, v)]).encode()) > 255:
                    p.problem(
                        "partition",
                        f"{k}={v[:40]}...: the folder name would be longer than 255 bytes, "
                        "more than file systems allow; give a shorter value",
                    )
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
        marker = p.obj("deleteMarker", keys=("column", "value"))
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
        if self.o.format == "hive":  # iceberg: when the plan knows the table's location
            for f in self.target.clean_dead():
                log.info("%s: %s", self.ctx.where, f.line())
        if schema is not None:
            self.ensure_plan(schema)

    def recover(self) -> list[Finding]:
        """Remove what dead runs left (staging, never-committed data files) and put back a
        partition caught mid-swap (``tidesync recover``; every run does it too)."""
        self.target.open(must_exist=False)
        return list(self.target.clean_dead())

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
        self._check_case(take)
        incoming = pa.schema([schema.field(n) for n in take])
        self.target.plan = self.target.make_plan(incoming)
        self._take = take
        self._marker_col = marker_col

    def _check_case(self, take: list[str]) -> None:
        """Spark, Hive, Trino and DuckDB match column names ignoring case, so a source column
        spelt like a table column (or a partition column, or another source column) in
        another case would be a second column that readers cannot tell from the first."""
        where = self.ctx.path("table")
        seen: dict[str, str] = {}
        for n in take:
            other = seen.setdefault(n.lower(), n)
            if other != n:
                raise ConfigError(
                    f"{where}: the source's columns {other!r} and {n!r} differ only in case; "
                    "readers of the table match names ignoring case. Rename one (a transform, "
                    "or the reader's column list)"
                )
        current = self.target.data_schema()
        table = {} if current is None else {c.lower(): c for c in current.names}
        parts = {k.lower(): k for k, _ in self.o.partition}
        exact = {*table.values(), *parts.values(), *([] if current is None else current.names)}
        for n in take:
            if n in exact:
                continue
            for names, what in ((parts, "the partition column"), (table, "the table's column")):
                old = names.get(n.lower())
                if old is not None:
                    raise ConfigError(
                        f"{where}: the source's column {n!r} differs only in case from {what} "
                        f"{old!r}; readers match names ignoring case, so it would not be a new "
                        f"column. Send it as {old!r} (a transform, or the reader's column list)"
                    )

    def deletes_unwritten(self) -> bool:
        # a row dirty at shape() has no key it could keep (it does not fit the table's types)
        return self.mode == "sync"

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
        hook("lake.committed")
        if self.o.format == "iceberg":
            self.target.end_run()

    def abort(self, results: list[Any]) -> None:
        t = self.target
        if getattr(t, "outcome_unknown", False):
            # the catalog may reference them: keep every file, and the run's record, so that
            # the next run deletes them if no snapshot has them
            if t.heartbeat is not None:
                t.heartbeat.stop()
            return
        paths = [f["path"] for r in results if r for f in r.get("files", [])]
        t.delete_files(paths + list(getattr(t, "written_at_commit", [])))
        if self.o.format == "hive":
            t.abort()
        else:
            t.end_run()
