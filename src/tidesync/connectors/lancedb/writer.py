"""The LanceDB writer: each task stages its rows as Arrow IPC files beside the table, and
``commit`` publishes them all as one new table version (write modes and layout in the package
docstring and docs/connectors/lancedb.md)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.connectors.lancedb.conn import Location, translate
from tidesync.connectors.publish import (
    OWNER,
    Finding,
    Heartbeat,
    Owner,
    clean_runs,
    hook,
    write_local,
)
from tidesync.connectors.sql.writer import wall_times_as_instants
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, TidesyncError, did_you_mean

log = logging.getLogger("tidesync")

_MODE_ALIASES = {
    "insert": "append",
    "overwrite": "truncate",
    "replace": "merge",
    "upsert": "merge",
    "nonconflict": "nonConflict",
}
#: index types users may name (LanceDB's), the config class each maps to, and the options it takes
_INDEX_TYPES: dict[str, tuple[str, tuple[str, ...]]] = {
    "IVF_PQ": ("IvfPq", ("partitions", "subVectors")),
    "IVF_FLAT": ("IvfFlat", ("partitions",)),
    "IVF_SQ": ("IvfSq", ("partitions",)),
    "IVF_HNSW_SQ": ("HnswSq", ("partitions",)),
    "IVF_HNSW_PQ": ("HnswPq", ("partitions", "subVectors")),
}
_METRICS = ("cosine", "l2", "dot")
_ROW = "__tidesync_row"


def stage_root(path: Path, table: str) -> Path:
    """``PATH/.TABLE.tidesync``: where runs stage their files for ``table`` (LanceDB lists only
    ``*.lance`` folders as tables, so users never see it as one)."""
    return path / f".{table}.tidesync"


def _is_float_list(t: pa.DataType) -> bool:
    return (pa.types.is_list(t) or pa.types.is_large_list(t)) and pa.types.is_floating(t.value_type)


def _has_decimal(schema: pa.Schema) -> bool:
    def walk(t: pa.DataType) -> bool:
        if pa.types.is_dictionary(t):
            return walk(t.value_type)
        return pa.types.is_decimal(t) or any(walk(t.field(i).type) for i in range(t.num_fields))

    return any(walk(f.type) for f in schema)


def _cast(col: pa.Array, t: pa.DataType) -> pa.Array:
    """Arrow's cast, refusing where it would alter a value (as the file reader's ``convert``):
    raises ``pa.ArrowInvalid`` for a value that does not fit."""
    src = col.type
    text = pa.types.is_string(src) or pa.types.is_large_string(src)
    if text and pa.types.is_integer(t):
        if pc.any(pc.match_substring(col, "x", ignore_case=True)).as_py():
            raise pa.ArrowInvalid("a hexadecimal number is not an integer")  # Arrow's reads 0x10
    elif (pa.types.is_decimal(t) and pa.types.is_floating(src)) or (
        pa.types.is_floating(t) and pa.types.is_decimal(src)
    ):
        # a double to a decimal cuts its digits past the scale (2.675 became 2.67, 1e-7 0.00);
        # a decimal to a double divides in binary (1.2345 became 1.2345000000000002): through
        # the shortest text, a value the scale cannot hold does not convert
        col = col.cast(pa.string())
    return col.cast(t)


def _is_vector(t: pa.DataType) -> bool:
    return pa.types.is_fixed_size_list(t) and pa.types.is_floating(t.value_type)


class _Sink(base.Sink):
    def __init__(self, writer: Writer, split: base.Split):
        self.w = writer
        self.split = split
        self.path: Path | None = None
        self.file: Any = None
        self.stream: Any = None
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        out = self.w.shape(batch)
        if not out.num_rows:
            return
        try:
            if self.stream is None:
                self.path = self.w.stage / f"{self.split.index:05d}-{uuid.uuid4().hex[:8]}.arrows"
                self.file = pa.OSFile(str(self.path), "wb")
                self.stream = pa.ipc.new_stream(self.file, out.schema)
            self.stream.write_batch(out)
        except OSError as e:
            raise FatalError(f"{self.w.ctx.where}: writing a staged file failed: {e}") from e
        self.rows += out.num_rows

    def _finish(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.file.close()
            self.stream = None

    def close(self) -> dict[str, Any]:
        try:
            self._finish()
        except OSError as e:
            raise FatalError(f"{self.w.ctx.where}: writing a staged file failed: {e}") from e
        return {"file": str(self.path) if self.path else None, "rows": self.rows}

    def discard(self) -> dict[str, Any]:
        with contextlib.suppress(OSError):
            self._finish()
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        return {"file": None, "rows": 0}


class Writer(base.Writer):
    """Writes a LanceDB table; one new version at ``commit`` (see the package docstring)."""

    kind = "lancedb"
    modes: ClassVar[tuple[str, ...]] = ("append", "truncate", "merge", "update", "nonConflict")
    #: one new table version, committed by Lance's manifest swap
    publish = "version"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.loc = Location(p, ctx)
        self.mode = self.write_mode(_MODE_ALIASES)
        keys = p.list("primaryKey", aliases=("primaryKeys", "pk"))
        self.keys: list[str] = [str(k) for k in keys] if keys else []
        if self.mode in ("merge", "update") and not self.keys:
            p.problem(
                "primaryKey",
                f"is required for writeMode {self.mode}: the column(s) that identify a row, "
                "e.g. primaryKey: [id]",
            )
        self.index: dict[str, Any] | None = None
        raw = p.obj(
            "index", keys=("column", "metric", "type", "partitions", "subVectors", "replace")
        )
        if raw is not None:
            self.index = self._index_params(p, raw)
        p.done()
        self._lock = threading.Lock()
        self.db: Any = None
        self.table: Any = None  # the LanceDB table as prepare found it (None: missing)
        self.run = uuid.uuid4().hex[:12]
        self.stage = Path()
        self.heartbeat: Heartbeat | None = None
        self.target: pa.Schema | None = None  # the staged files' schema
        self._dims: dict[str, int] = {}  # new table: list<float> column -> vector length seen
        self._sent: list[str] = []  # the incoming columns (update changes only these)

    def _index_params(self, p: base.Params, raw: dict[str, Any]) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        col = raw.get("column")
        if not isinstance(col, str) or not col:
            p.problem("index.column", "is required: the vector column to index, e.g. review_vec")
        out["column"] = col
        metric = str(raw.get("metric", "l2")).lower()
        if metric not in _METRICS:
            p.problem(
                "index.metric",
                f"{raw.get('metric')!r} is not one of {', '.join(_METRICS)}"
                f"{did_you_mean(metric, _METRICS)}",
            )
        out["metric"] = metric
        kind = str(raw.get("type", "IVF_PQ")).upper()
        if kind not in _INDEX_TYPES:
            p.problem(
                "index.type",
                f"{raw.get('type')!r} is not one of {', '.join(_INDEX_TYPES)}"
                f"{did_you_mean(kind, list(_INDEX_TYPES))}",
            )
            return None
        out["type"] = kind
        for k in ("partitions", "subVectors"):
            v = raw.get(k)
            if v is None:
                continue
            if k not in _INDEX_TYPES[kind][1]:
                p.problem(f"index.{k}", f"does not apply to index type {kind}")
            elif isinstance(v, bool) or not isinstance(v, int) or v < 1:
                p.problem(f"index.{k}", f"must be a positive integer, got {v!r}")
            else:
                out[k] = v
        return out

    # -- planning --------------------------------------------------------------------------------
    def prepare(self, schema: pa.Schema | None) -> None:
        assert self.loc.path is not None
        if self.loc.path.exists() and not self.loc.path.is_dir():
            raise FatalError(f"{self.ctx.path('path')}: {self.loc.path} is a file, not a folder")
        self.loc.path.mkdir(parents=True, exist_ok=True)
        self.db = self.loc.connect()
        for f in self.recover():
            log.info("%s: %s", self.ctx.where, f.line())
        self.table = self.loc.open(self.db)
        name = self.loc.table
        if self.table is not None and self.mode == "nonConflict":
            raise FatalError(
                f"{self.ctx.path('writeMode')}: nonConflict, but table {name!r} exists in "
                f"{self.loc.path}; nothing was written"
            )
        if self.table is None and self.mode == "update":
            raise FatalError(
                f"{self.ctx.path('table')}: table {name!r} does not exist in {self.loc.path}; "
                "writeMode update only changes rows a table holds"
            )
        self.stage = stage_root(self.loc.path, name) / self.run
        self.stage.mkdir(parents=True)
        self.heartbeat = Heartbeat(Owner.me(self.run), write_local(self.stage / OWNER)).start()
        if schema is not None:
            try:
                self.ensure_plan(schema)
            except BaseException:
                self._end()  # the engine aborts only the writers that prepared
                raise

    def recover(self) -> list[Finding]:
        """Remove the staging dead runs left beside the table (``tidesync recover``; every run
        does it too). A run killed inside Lance's own commit may leave data files no version
        refers to: they were never visible, and Lance's ``cleanup_old_versions`` removes them."""
        assert self.loc.path is not None
        return clean_runs(stage_root(self.loc.path, self.loc.table), keep=self.run)

    def ensure_plan(self, schema: pa.Schema) -> pa.Schema:
        if self.target is None:
            with self._lock:
                if self.target is None:
                    self.target = self._plan(schema)
        return self.target

    def _plan(self, incoming: pa.Schema) -> pa.Schema:
        names = incoming.names
        self._sent = list(names)
        where = self.ctx.where
        if self.table is None:
            target = incoming
        else:
            target = self.table.schema
            tnames = target.names
            problems = [
                f"{where}: table {self.loc.table!r} has no column {n!r}{did_you_mean(n, tnames)}"
                for n in names
                if n not in tnames
            ]
            problems += [
                f"{where}: the source has no column {f.name!r}, which table "
                f"{self.loc.table!r} holds NOT NULL"
                for f in target
                if f.name not in names and not f.nullable and self.mode != "update"
            ]
            if problems:
                raise ConfigError(problems)
        problems = [
            f"{self.ctx.path('primaryKey')}: {k!r} is not a column of the rows written"
            f"{did_you_mean(k, target.names)}"
            for k in self.keys
            if k not in target.names
        ]
        if self.index is not None:
            col = self.index["column"]
            if col not in target.names:
                problems.append(
                    f"{self.ctx.path('index.column')}: {col!r} is not a column of the rows "
                    f"written{did_you_mean(col, target.names)}"
                )
            elif not (_is_vector(target.field(col).type) or _is_float_list(target.field(col).type)):
                problems.append(
                    f"{self.ctx.path('index.column')}: {col!r} is {target.field(col).type}, not "
                    "a vector (fixed_size_list<float32>)"
                )
        if problems:
            raise ConfigError(problems)
        return target

    # -- rows ------------------------------------------------------------------------------------
    def shape(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The batch as staged: the target's columns and types, in its order. Raises
        DirtyRecordError (the engine bisects) for a value that does not fit."""
        target = self.ensure_plan(batch.schema)
        names = batch.schema.names
        arrays = []
        for f in target:
            if f.name in names:
                col = batch.column(names.index(f.name))
                if col.type != f.type:
                    try:
                        col = _cast(self._in_zone(col, f), f.type)
                    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                        raise DirtyRecordError(
                            f"column {f.name}: does not fit {f.type}: {e}", code="TYPE"
                        ) from e
            else:
                col = pa.nulls(batch.num_rows, f.type)
                if self.mode == "update":  # left as it is: _merge hands LanceDB the rest
                    arrays.append(col)
                    continue
            if not f.nullable and col.null_count:
                raise DirtyRecordError(
                    f"column {f.name} is NOT NULL: a null value", code="NOT NULL"
                )
            if self.table is None and _is_float_list(f.type):
                self._check_length(f.name, col)
            arrays.append(col)
        for k in self.keys:
            if arrays[target.names.index(k)].null_count:
                raise DirtyRecordError(f"primary key {k} is null", code="NOT NULL")
        return pa.RecordBatch.from_arrays(arrays, schema=target)

    def _in_zone(self, col: pa.Array, f: pa.Field) -> pa.Array:
        """A timestamp bound for a column of the other kind meets it in the job's zone, as in
        the SQL writers (Arrow's cast takes UTC for both): a naive time for a column with a zone
        is a wall time there (one the clock skips or shows twice is a dirty record); an instant
        for a naive or date column is written as the wall time, or the day, it is there."""
        src, t = col.type, f.type
        if not pa.types.is_timestamp(src):
            return col
        zone = self.ctx.timezone
        if pa.types.is_timestamp(t) and t.tz and not src.tz:
            return wall_times_as_instants(col, zone, f.name, str(t))
        if src.tz and (pa.types.is_date(t) or (pa.types.is_timestamp(t) and not t.tz)):
            return pc.local_timestamp(col.cast(pa.timestamp(src.unit, zone)))
        return col

    def _check_length(self, name: str, col: pa.Array) -> None:
        """A new table stores a list<float> column as fixed_size_list (a vector, what search
        and indexes need): every row must have the length of the first one seen."""
        lengths = pc.drop_null(pc.list_value_length(col))
        if not len(lengths):
            return
        with self._lock:
            dim = self._dims.setdefault(name, lengths[0].as_py())
        if pc.any(pc.not_equal(lengths, dim)).as_py():
            raise DirtyRecordError(
                f"column {name}: a vector of another length than {dim}", code="LENGTH"
            )

    # -- sinks and publishing ----------------------------------------------------------------------
    def open(self, split: base.Split) -> base.Sink:
        return _Sink(self, split)

    def _final_schema(self) -> pa.Schema:
        assert self.target is not None
        fields = []
        for f in self.target:
            if f.name in self._dims:
                f = f.with_type(pa.list_(f.type.value_type, self._dims[f.name]))
            fields.append(f)
        return pa.schema(fields)

    def _batches(self, files: list[str], schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        # Lance (Rust) needs a decimal's 16-byte values 16-byte aligned; an IPC file aligns
        # buffers to 8, and a misaligned one panicked a Lance worker: create_table then
        # committed an empty table and the run succeeded. Such buffers are copied aligned.
        options = (
            pa.ipc.IpcReadOptions(ensure_alignment=pa.ipc.Alignment.At64Byte)
            if _has_decimal(schema)
            else None
        )
        for path in files:
            with (
                pa.memory_map(path) as source,
                pa.ipc.open_stream(source, options=options) as reader,
            ):
                for b in reader:
                    yield b if b.schema == schema else b.cast(schema)
                    hook("lancedb.streamed")  # tests kill a run here, inside LanceDB's commit

    def commit(self, results: list[Any]) -> None:
        try:
            self._commit(results)
        finally:
            self._end()

    def _commit(self, results: list[Any]) -> None:
        files = [r["file"] for r in results if r and r.get("file")]
        rows = sum(r["rows"] for r in results if r)
        name, where = self.loc.table, self.ctx.where
        if self.target is None:
            if self.mode == "truncate" and self.table is not None:
                self.target = self.table.schema
            else:
                log.info("%s: no rows and no schema; nothing to publish", where)
                return
        schema = self._final_schema()
        data = pa.RecordBatchReader.from_batches(schema, self._batches(files, schema))
        hook("lancedb.commit")
        try:
            if self.table is None:
                if not rows and self.mode in ("merge", "update"):
                    log.info("%s: no rows; nothing to publish", where)
                    return
                self.table = self.db.create_table(name, data=data, mode="create")
                version = self.table.version
                if self.table.count_rows() != rows:  # a failure LanceDB did not report
                    found = self.table.count_rows()
                    self.db.drop_table(name)
                    self.table = None
                    raise FatalError(
                        f"{self.ctx.path('table')}: LanceDB created table {name!r} with {found} "
                        f"of the {rows} rows; it was dropped again, nothing was written"
                    )
            elif not rows and self.mode != "truncate":
                log.info("%s: no rows; nothing to publish", where)
                return
            elif self.mode == "append":
                version = self.table.add(data).version
            elif self.mode == "truncate":
                version = self.table.add(data, mode="overwrite").version
            else:
                version = self._merge(data)
        except TidesyncError:
            raise
        except Exception as e:  # noqa: BLE001 - translated at the edge
            if "already exists" in str(e).lower():
                raise FatalError(
                    f"{self.ctx.path('table')}: table {name!r} was created by another run "
                    "while this one wrote; nothing was written, run again",
                    code=type(e).__name__,
                ) from e
            raise translate(e, f"{where}: committing {name}") from e
        log.info(
            "%s: %s committed %d rows as version %s of %s", where, self.mode, rows, version, name
        )
        hook("lancedb.committed")
        if self.index is not None:
            self._build_index()

    def _merge(self, data: pa.RecordBatchReader) -> int:
        """Upsert (merge) or update by key, the last row of a key in the run winning: LanceDB
        refuses a source with one key twice, so the run's rows are taken together (in memory)."""
        table = data.read_all()
        n = table.num_rows
        numbered = table.append_column(_ROW, pa.array(range(n), pa.int64()))
        last = numbered.group_by(self.keys, use_threads=False).aggregate([(_ROW, "max")])
        if last.num_rows < n:
            keep = np.sort(last.column(f"{_ROW}_max").to_numpy())
            table = table.take(pa.array(keep))
        if self.mode == "update":
            # only the columns the source sent: the staged rows hold NULL for the others,
            # which would overwrite what the table keeps there
            table = table.select([n for n in table.column_names if n in self._sent])
        builder = self.table.merge_insert(self.keys).when_matched_update_all()
        if self.mode == "merge":
            builder = builder.when_not_matched_insert_all()
        return int(builder.execute(table).version)

    def _build_index(self) -> None:
        """The vector index, built after the data's version (an index is a version of its own;
        a search is right with or without it). A failure is a warning: the rows are committed."""
        import lancedb.index as li

        ix = self.index
        assert ix is not None
        cls_name = _INDEX_TYPES[ix["type"]][0]
        kwargs: dict[str, Any] = {"distance_type": ix["metric"]}
        if "partitions" in ix:
            kwargs["num_partitions"] = ix["partitions"]
        if "subVectors" in ix:
            kwargs["num_sub_vectors"] = ix["subVectors"]
        config = getattr(li, cls_name)(**kwargs)
        try:
            self.table.create_index(
                ix["column"], config=config, replace=True, name=f"{ix['column']}_idx"
            )
        except Exception as e:  # noqa: BLE001 - reported, not fatal
            log.warning(
                "%s: the %s index on %s was not built (the rows are committed): %s",
                self.ctx.path("index"),
                ix["type"],
                ix["column"],
                str(e).strip().split("\n")[0],
            )
            return
        stats = self.table.index_stats(f"{ix['column']}_idx")
        indexed = stats.num_indexed_rows if stats is not None else 0
        unindexed = stats.num_unindexed_rows if stats is not None else 0
        note = (
            " (LanceDB trains a vector index once a table has 256 rows; until then a search "
            "scans the rows unindexed, with the same results)"
            if unindexed and not indexed
            else ""
        )
        log.info(
            "%s: %s index (%s) on %s: %d rows indexed, %d not%s",
            self.ctx.where,
            ix["type"],
            ix["metric"],
            ix["column"],
            indexed,
            unindexed,
            note,
        )

    def abort(self, results: list[Any]) -> None:
        self._end()

    def _end(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.heartbeat = None
        if self.stage != Path():
            shutil.rmtree(self.stage, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.stage.parent.rmdir()
