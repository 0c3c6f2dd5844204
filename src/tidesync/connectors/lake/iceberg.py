"""Apache Iceberg tables for the ``lake`` connector, through pyiceberg.

Sinks write Parquet data files (with Iceberg field ids) straight into the table's data folder;
nothing references them until :meth:`IcebergTable.commit` adds them in one catalog commit:

    append     one append snapshot
    overwrite  one overwrite snapshot: the partition's (or table's) files out, the new ones in
    merge/sync one overwrite snapshot: the files holding changed keys rewritten without those
               rows, the new and changed rows added
    lifecycle  the expired partitions' files removed in that same snapshot

The table is created, and new columns added, inside the same transaction, so a failed run
leaves neither an empty table nor a half-evolved schema behind. A commit that loses a race with
another job's (the catalog refuses it) is worked out again on the new table state and retried,
so two runs overwriting one partition at once both succeed and leave the one that committed
last. Before writing its first data file a run records itself in ``LOCATION/.tidesync/RUN.json``
(an owner record, see :mod:`tidesync.connectors.publish`; data files are named ``RUN-*``); the
next run of the table (or ``tidesync recover``) deletes the data files of a dead run that never
committed, which no snapshot references.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, timedelta
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tidesync.connectors.lake.common import (
    ParquetRoller,
    StagedFile,
    classify,
    conform,
    describe,
    duplicates,
    parallel,
    prepare_changes,
    remaining,
    touches,
)
from tidesync.connectors.partition import expired, partition_value
from tidesync.connectors.publish import (
    Finding,
    Heartbeat,
    Owner,
    dead_reason,
    hook,
    is_dead,
    size_text,
)
from tidesync.errors import ConfigError, FatalError, RetriableError, did_you_mean, redact

log = logging.getLogger("tidesync")
_EPOCH = date(1970, 1, 1)
#: the folder of run records in a table's location
RUNS = ".tidesync"
#: tries of a commit that another job's commit beat
COMMIT_TRIES = 5


def load_catalog(catalog: Any, warehouse: Any) -> Any:
    """The catalog: ``catalog`` (pyiceberg properties or a URI) or, by default, a SQL catalog in
    ``<warehouse>/catalog.db`` with its tables under ``warehouse``."""
    from pyiceberg.catalog import load_catalog as _load

    def local() -> str:
        warehouse.mkdir(parents=True, exist_ok=True)
        return str(warehouse.resolve().as_uri())

    if catalog is None:
        wh = local()
        return _load(
            "tidesync", type="sql", uri=f"sqlite:///{warehouse.resolve()}/catalog.db", warehouse=wh
        )
    props = {"uri": catalog} if isinstance(catalog, str) else dict(catalog)
    props = {str(k): str(v) for k, v in props.items()}
    name = props.pop("name", "tidesync")
    scheme = props.get("uri", "").split(":", 1)[0].split("+", 1)[0]
    if "warehouse" not in props and (
        props.get("type") == "sql" or scheme in ("sqlite", "postgresql", "mysql")
    ):
        props["warehouse"] = local()
    return _load(name, **props)


def arrow_scan() -> Any:
    """pyiceberg's ``ArrowScan``, with NULL lists of structs read as NULL and Parquet INT96
    timestamps read as microseconds.

    A data file from Spark or Hive (a table migrated, files added) may hold INT96 timestamps;
    pyiceberg (0.12) opens it with Arrow's default, nanoseconds, in which 9999-12-31 (Hive's "no
    end") wrapped into 1816-03-30 before the cast to the table's microseconds. Its file format
    factory is wrapped once to ask for microseconds, as the Hive reader does.

    pyiceberg (0.12) rebuilds a list of structs from its offsets alone while projecting a data
    file to the table's schema (``ArrowProjectionVisitor.list``, a workaround of Arrow issue
    38809), which drops the list's validity: a NULL list came back as ``[]``, and a merge or
    sync rewriting such a file wrote ``[]`` back. The projection is wrapped once so that the
    rows NULL in the file are NULL in what it returns."""
    from pyiceberg.io import pyarrow as pyi

    visitor = pyi.ArrowProjectionVisitor
    if not getattr(visitor.list, "_tidesync_nulls", False):
        original = visitor.list

        def list_(self: Any, list_type: Any, list_array: Any, value_array: Any) -> Any:
            out = original(self, list_type, list_array, value_array)
            if out is None or list_array is None or out.null_count == list_array.null_count:
                return out
            rebuilt = type(out).from_arrays(
                out.offsets, out.values, type=out.type, mask=list_array.is_null()
            )
            return rebuilt

        list_._tidesync_nulls = True  # type: ignore[attr-defined]
        visitor.list = list_  # type: ignore[method-assign]
    made = pyi._get_file_format
    if not getattr(made, "_tidesync_int96", False):

        def file_format(file_format: Any, **kwargs: Any) -> Any:
            if file_format == pyi.FileFormat.PARQUET:
                kwargs.setdefault("coerce_int96_timestamp_unit", "us")
            return made(file_format, **kwargs)

        file_format._tidesync_int96 = True  # type: ignore[attr-defined]
        pyi._get_file_format = file_format  # type: ignore[assignment]
    return pyi.ArrowScan


def split_identifier(table: str) -> tuple[str, str]:
    ns, _, name = table.rpartition(".")
    return (ns or "default"), name


def small_arrow_schema(schema: Any) -> pa.Schema:
    """The Arrow schema of an Iceberg schema, with field ids and plain (not large) types."""
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    return pa.schema([_small_field(f) for f in schema_to_pyarrow(schema, include_field_ids=True)])


def _small_field(f: pa.Field) -> pa.Field:
    """``f`` with plain (not large) types all the way down, keeping every child field's name,
    nullability and metadata: a data file needs the field id of each list element and map key
    and value, which pyiceberg's ``_pyarrow_schema_ensure_small_types`` drops."""
    return pa.field(f.name, _small_type(f.type), f.nullable, f.metadata)


def _small_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_binary(t):
        return pa.binary()
    if pa.types.is_map(t):
        return pa.map_(_small_field(t.key_field), _small_field(t.item_field))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(_small_field(t.value_field))
    if pa.types.is_fixed_size_list(t):
        return pa.list_(_small_field(t.value_field), t.list_size)
    if pa.types.is_struct(t):
        return pa.struct([_small_field(t.field(i)) for i in range(t.num_fields)])
    return t


def plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])


def _iceberg_type(f: pa.Field) -> Any:
    from pyiceberg.io.pyarrow import _ConvertToIcebergWithoutIDs, visit_pyarrow

    t = pa.string() if pa.types.is_null(f.type) else _signed(f.type)
    schema: Any = visit_pyarrow(pa.schema([pa.field(f.name, t)]), _ConvertToIcebergWithoutIDs())
    return schema.fields[0].field_type


def _signed(t: pa.DataType) -> pa.DataType:
    """``t`` with uint32 as int64, all the way down: pyiceberg makes a uint32 an int (32
    bits), which holds only half its values. (uint64 can only be long: a value above 2^63 is
    a dirty record.)"""
    if pa.types.is_uint32(t):
        return pa.int64()
    if pa.types.is_dictionary(t):
        return _signed(t.value_type)
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return pa.list_(t.value_field.with_type(_signed(t.value_type)))
    if pa.types.is_map(t):
        return pa.map_(
            t.key_field.with_type(_signed(t.key_type)), t.item_field.with_type(_signed(t.item_type))
        )
    if pa.types.is_struct(t):
        return pa.struct(
            [t.field(i).with_type(_signed(t.field(i).type)) for i in range(t.num_fields)]
        )
    return t


def _promotes(src: Any, dst: Any) -> bool:
    """Whether the Iceberg spec lets a column of type ``src`` become ``dst``: int to long,
    float to double, a decimal's precision (never its scale). pyiceberg's ``promote`` lets more
    through (any decimal scale, binary and string either way, fixed[16] to uuid): a decimal
    file keeps the unscaled values of its own scale, which engines read by the table's."""
    from pyiceberg.types import DecimalType, DoubleType, FloatType, IntegerType, LongType

    if src == dst:
        return True
    if isinstance(src, DecimalType) and isinstance(dst, DecimalType):
        return src.scale == dst.scale and src.precision <= dst.precision
    return (type(src), type(dst)) in ((IntegerType, LongType), (FloatType, DoubleType))


def _fits(src: Any, dst: Any) -> bool:
    """Whether values of Iceberg type ``src`` go into a column of ``dst`` as they are or
    widened. Lists, maps and structs compare by shape: their element, key, value and field ids
    are the table's own, never equal to those of a type converted from the source."""
    from pyiceberg.types import ListType, MapType, StructType

    if isinstance(src, ListType) and isinstance(dst, ListType):
        return _fits(src.element_type, dst.element_type)
    if isinstance(src, MapType) and isinstance(dst, MapType):
        return _fits(src.key_type, dst.key_type) and _fits(src.value_type, dst.value_type)
    if isinstance(src, StructType) and isinstance(dst, StructType):
        theirs = {f.name: f.field_type for f in dst.fields}
        return len(src.fields) == len(theirs) and all(
            f.name in theirs and _fits(f.field_type, theirs[f.name]) for f in src.fields
        )
    return src == dst or _promotes(src, dst)


def _literal(v: Any) -> Any:
    return v.isoformat() if isinstance(v, date) else v


def equal_to(column: str, value: Any) -> Any:
    """``column = value`` (``IS NULL`` for None) as a pyiceberg expression."""
    from pyiceberg import expressions as ex

    make: Any = ex.IsNull if value is None else ex.EqualTo
    return make(column) if value is None else make(column, _literal(value))


@dataclass
class Plan:
    schema: Any  # the Iceberg schema after this run (field ids of the files written)
    file_schema: pa.Schema
    spec: Any
    constants: dict[str, Any]  # partition columns from the parameter, as values
    dynamic: list[str]  # partition columns taken from the rows (no partition parameter)
    adds: list[tuple[str, Any]] = field(default_factory=list)
    widens: list[tuple[str, Any]] = field(default_factory=list)
    new_table: bool = False


class IcebergTable:
    """One Iceberg table, as a writer's target or a reader's source."""

    publish = "transaction"

    def __init__(
        self,
        *,
        table: str,
        catalog: Any,
        warehouse: Any,
        partition: list[tuple[str, str]],
        where: str,
        table_key: str,
        partition_key: str,
    ):
        self.ident = split_identifier(table)
        self.name = ".".join(self.ident)
        self.catalog_param = catalog
        self.warehouse = warehouse
        self.partition = partition
        self.where = where
        self.table_key = table_key
        self.partition_key = partition_key
        self.catalog: Any = None
        self.table: Any = None
        self.plan: Plan | None = None
        self.run = uuid.uuid4().hex[:12]
        self.io: Any = None
        self.location = ""
        self._names = itertools.count()
        self.written_at_commit: list[str] = []
        self.outcome_unknown = False
        self.heartbeat: Heartbeat | None = None

    # -- catalog -------------------------------------------------------------------------------
    def open(self, *, must_exist: bool) -> None:
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            self.catalog = load_catalog(self.catalog_param, self.warehouse)
        except Exception as e:  # noqa: BLE001 - any driver failure: say which catalog
            raise FatalError(
                f"{self.where}: cannot open the Iceberg catalog: {redact(str(e))}"
            ) from e
        try:
            self.table = self.catalog.load_table(self.ident)
        except (NoSuchTableError, NoSuchNamespaceError):
            self.table = None
            if must_exist:
                raise ConfigError(
                    f"{self.table_key}: Iceberg table {self.name} does not exist"
                    f"{did_you_mean(self.name, self._known())}"
                ) from None
        if self.table is not None:
            self.io = self.table.io
            self.location = self.table.location().rstrip("/")

    def data_schema(self) -> pa.Schema | None:
        """The table's columns less the partition parameter's (None: no table)."""
        if self.table is None:
            return None
        keys = {k for k, _ in self.partition}
        schema = plain_schema(small_arrow_schema(self.table.schema()))
        return pa.schema([f for f in schema if f.name not in keys])

    def _known(self) -> list[str]:
        try:
            return [".".join(t) for t in self.catalog.list_tables(self.ident[0])]
        except Exception:  # noqa: BLE001 - only for a suggestion
            return []

    def _partition_columns(self, spec: Any, schema: Any) -> list[str]:
        from pyiceberg.transforms import IdentityTransform

        names = []
        for pf in spec.fields:
            if not isinstance(pf.transform, IdentityTransform):
                raise ConfigError(
                    f"{self.partition_key}: table {self.name} is partitioned by {pf.name} = "
                    f"{pf.transform}({schema.find_column_name(pf.source_id)}); the lake writer "
                    "writes tables partitioned by columns (identity) only"
                )
            names.append(schema.find_column_name(pf.source_id))
        return names

    # -- planning --------------------------------------------------------------------------------
    def make_plan(self, incoming: pa.Schema) -> Plan:
        """Check ``incoming`` (the data columns the source sends) against the table and work out
        the schema after this run. Raises ConfigError for a clash."""
        keys = [k for k, _ in self.partition]
        for k in keys:
            if k in incoming.names:
                raise ConfigError(
                    f"{self.partition_key}: column {k!r} comes from the partition parameter, "
                    "but the source sends it too; leave it out of the source columns "
                    "(writer column: [...]) or leave out partition"
                )
        plan = (
            self._plan_new(incoming, keys)
            if self.table is None
            else self._plan_existing(incoming, keys)
        )
        for f in self.clean_dead():
            log.info("%s: %s", self.where, f.line())
        self._record_run()
        return plan

    # -- runs ----------------------------------------------------------------------------------
    def _runs_fs(self) -> tuple[pafs.FileSystem, str] | None:
        """The file system of the table's location, and the location in it (None: unknown)."""
        location = self.location
        if not location and self.catalog is not None:
            try:  # where the catalog would put the table
                location = self.catalog._resolve_table_location(None, *self.ident)
            except Exception:  # noqa: BLE001 - a catalog without that: nothing to look at
                return None
        if not location:
            return None
        try:
            fs, path = pafs.FileSystem.from_uri(location)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError):
            return None
        return fs, path.rstrip("/")

    def _record_run(self) -> None:
        """Record this run (its data files are ``RUN-*``) before writing the first one."""
        where = self._runs_fs()
        if where is None or self.heartbeat is not None:
            return
        fs, path = where
        fs.create_dir(f"{path}/{RUNS}", recursive=True)
        record = f"{path}/{RUNS}/{self.run}.json"

        def write(data: bytes) -> None:
            with fs.open_output_stream(record) as out:
                out.write(data)

        self.heartbeat = Heartbeat(Owner.me(self.run), write).start()

    def end_run(self) -> None:
        """Drop this run's record: its files are committed or deleted."""
        if self.heartbeat is None:
            return
        self.heartbeat.stop()
        where = self._runs_fs()
        if where is not None:
            fs, path = where
            with contextlib.suppress(OSError):  # the folder stays: another run may be adding
                fs.delete_file(f"{path}/{RUNS}/{self.run}.json")

    def clean_dead(self) -> list[Finding]:
        """Delete the data files of dead runs that never committed (no snapshot has them)."""
        where = self._runs_fs()
        if where is None:
            return []
        fs, path = where
        out: list[Finding] = []
        dead: dict[str, tuple[str, Owner | None]] = {}
        for info in fs.get_file_info(pafs.FileSelector(f"{path}/{RUNS}", allow_not_found=True)):
            run = info.base_name.removesuffix(".json")
            if info.type != pafs.FileType.File or run == self.run:
                continue
            with fs.open_input_stream(info.path) as f:
                owner = Owner.loads(f.read())
            changed = info.mtime.timestamp() if info.mtime is not None else None
            if is_dead(owner, changed):
                dead[run] = (info.path, owner)
            else:
                why = f"its run is alive: {owner.describe()}" if owner else "changed recently"
                out.append(Finding("kept", f"{self.name}: run {run}", why))
        if not dead:
            return out
        committed = self._committed(set(dead))
        data = fs.get_file_info(
            pafs.FileSelector(f"{path}/data", recursive=True, allow_not_found=True)
        )
        for run, (record, owner) in sorted(dead.items()):
            files = (
                []
                if run in committed
                else [
                    i
                    for i in data
                    if i.type == pafs.FileType.File and i.base_name.startswith(f"{run}-")
                ]
            )
            for i in files:
                fs.delete_file(i.path)
            fs.delete_file(record)
            what = (
                "committed"
                if run in committed
                else (
                    f"{len(files)} data files never committed, "
                    f"{size_text(sum(i.size or 0 for i in files))}"
                )
            )
            out.append(
                Finding("removed", f"{self.name}: run {run}", f"{dead_reason(owner)}; {what}")
            )
        return out

    def _committed(self, runs: set[str]) -> set[str]:
        """Which of ``runs`` a snapshot of the table holds (by its summary, else its files)."""
        from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

        try:
            table = self.catalog.load_table(self.ident)
        except (NoSuchTableError, NoSuchNamespaceError):
            return set()
        found = {str(s.summary.get("tidesync.run")) for s in table.snapshots() if s.summary}
        rest = runs - found
        if rest and table.snapshots():
            names = table.inspect.all_data_files().column("file_path").to_pylist()
            found |= {
                r for r in rest if any(n.rsplit("/", 1)[-1].startswith(f"{r}-") for n in names)
            }
        return runs & found

    def _plan_new(self, incoming: pa.Schema, keys: list[str]) -> Plan:
        from pyiceberg.partitioning import PartitionField, PartitionSpec
        from pyiceberg.schema import Schema, assign_fresh_schema_ids
        from pyiceberg.transforms import IdentityTransform
        from pyiceberg.types import NestedField, StringType

        fields = []
        for i, f in enumerate(incoming):
            fields.append(NestedField(i + 1, f.name, self._convert(f), required=False))
        for j, k in enumerate(keys):
            fields.append(NestedField(len(incoming) + j + 1, k, StringType(), required=False))
        schema = assign_fresh_schema_ids(Schema(*fields))
        spec = PartitionSpec(
            *(
                PartitionField(
                    source_id=schema.find_field(k).field_id,
                    field_id=1000 + j,
                    transform=IdentityTransform(),
                    name=k,
                )
                for j, k in enumerate(keys)
            )
        )
        txn = self._create_txn(schema, spec)
        md = txn.table_metadata
        self.location = md.location.rstrip("/")
        self.io = txn._table.io
        file_schema = small_arrow_schema(md.schema())
        return Plan(
            md.schema(),
            file_schema,
            md.spec(),
            {k: v for k, v in self.partition},
            [],
            new_table=True,
        )

    def _create_txn(self, schema: Any, spec: Any) -> Any:
        try:
            # the namespace (a folder of tables) must exist for the table's location to be known
            self.catalog.create_namespace_if_not_exists(self.ident[0])
            return self.catalog.create_table_transaction(
                self.ident, schema=schema, partition_spec=spec
            )
        except Exception as e:  # noqa: BLE001
            raise FatalError(
                f"{self.where}: cannot create table {self.name}: {redact(str(e))}"
            ) from e

    def _convert(self, f: pa.Field) -> Any:
        try:
            return _iceberg_type(f)
        except Exception as e:  # noqa: BLE001 - pyiceberg's message names the type
            raise ConfigError(
                f"{self.table_key}: column {f.name!r} has type {describe(f.type)}, which an "
                f"Iceberg table cannot hold ({e}); cast it first (a transform)"
            ) from None

    def _plan_existing(self, incoming: pa.Schema, keys: list[str]) -> Plan:
        table = self.table
        schema = table.schema()
        pcols = self._partition_columns(table.spec(), schema)
        if keys and pcols != keys:
            if not pcols:
                raise ConfigError(
                    f"{self.partition_key}: table {self.name} is not partitioned; leave out "
                    "partition, or write to a new table"
                )
            unknown = [k for k in keys if k not in pcols]
            hint = did_you_mean(unknown[0], pcols) if unknown else ""
            raise ConfigError(
                f"{self.partition_key}: table {self.name} is partitioned by "
                f"{'/'.join(pcols)}, not {'/'.join(keys)}{hint}"
            )
        adds, widens = [], []
        for f in incoming:
            t_in = self._convert(f)
            try:
                current = schema.find_field(f.name)
            except ValueError:
                adds.append((f.name, t_in))
                continue
            t_tab = current.field_type
            if _fits(t_in, t_tab):
                continue
            if _promotes(t_tab, t_in):
                widens.append((f.name, t_in))
                continue
            raise ConfigError(
                f"{self.table_key}: column {f.name!r} is {t_tab} in Iceberg table {self.name}, "
                f"but the source sends {describe(f.type)} ({t_in}); changing it would lose data. "
                "Cast it to the table's type (a transform) or write to a new table"
            )
        planned = self._evolve(table.transaction(), adds, widens).table_metadata.schema()
        file_schema = small_arrow_schema(planned)
        constants = {}
        for k, v in self.partition:
            try:
                constants[k] = partition_value(v, file_schema.field(k).type)
            except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
                raise ConfigError(
                    f"{self.partition_key}: {k}={v} does not fit column {k} "
                    f"({file_schema.field(k).type}) of {self.name}: {e}"
                ) from None
        dynamic = pcols if not keys else []
        return Plan(planned, file_schema, table.spec(), constants, dynamic, adds, widens)

    @staticmethod
    def _evolve(txn: Any, adds: list[tuple[str, Any]], widens: list[tuple[str, Any]]) -> Any:
        if adds or widens:
            with txn.update_schema() as us:
                for name, t in widens:
                    us.update_column(name, field_type=t)
                for name, t in adds:
                    us.add_column(name, t)
        return txn

    # -- staging ---------------------------------------------------------------------------------
    def writer_kwargs(self) -> dict[str, Any]:
        from pyiceberg.io.pyarrow import _get_parquet_writer_kwargs

        props = self.table.properties if self.table is not None else {}
        return {**_get_parquet_writer_kwargs(props), "store_decimal_as_integer": True}

    def target_bytes(self) -> int:
        props = self.table.properties if self.table is not None else {}
        return int(props.get("write.target-file-size-bytes", 512 << 20))

    def roller(
        self, split: int, values: dict[str, Any], schema: pa.Schema | None = None
    ) -> ParquetRoller:
        assert self.plan is not None
        pcols = [k for k, _ in self.partition] or self.plan.dynamic
        part = "/".join(
            f"{k}={quote('__HIVE_DEFAULT_PARTITION__' if values.get(k) is None else str(values[k]), safe='')}"
            for k in pcols
        )
        folder = f"{self.location}/data" + (f"/{part}" if part else "")

        def new_path() -> str:
            return f"{folder}/{self.run}-{split:05d}-{next(self._names):05d}.parquet"

        return ParquetRoller(
            schema or self.plan.file_schema,
            new_path,
            lambda p: self.io.new_output(p).create(overwrite=False),
            self.writer_kwargs(),
            target_bytes=self.target_bytes(),
            partition=tuple(values.get(k) for k in pcols),
        )

    def delete_files(self, paths: Iterable[str]) -> None:
        for p in paths:
            try:
                self.io.delete(p)
            except FileNotFoundError:
                pass
            except OSError:
                pass

    # -- commit ----------------------------------------------------------------------------------
    def commit(
        self,
        mode: str,
        files: list[StagedFile],
        batches: list[pa.RecordBatch],
        keys: list[str],
        lifecycle: tuple[date, int] | None,
        summary: dict[str, str],
        attempt: int = 1,
    ) -> dict[str, int]:
        """Publish everything in one catalog commit; returns counts for the log. A commit that
        another job's beat is worked out again on the table as it now is (up to
        :data:`COMMIT_TRIES` times)."""
        from pyiceberg.exceptions import (
            CommitFailedException,
            NoSuchTableError,
            ValidationException,
        )

        assert self.plan is not None
        plan = self.plan
        summary = {**summary, "tidesync.run": self.run}
        kept = len(self.written_at_commit)
        try:
            fresh = self.catalog.load_table(self.ident)
        except NoSuchTableError:
            fresh = None
        if plan.new_table and fresh is not None:
            # created by another job meanwhile: write into it if its schema is the one planned
            self.table = fresh
            replanned = self._plan_existing(
                plan_incoming(plan, self.partition), [k for k, _ in self.partition]
            )
            if replanned.file_schema != plan.file_schema:
                raise RetriableError(
                    f"{self.where}: table {self.name} was created by another job while this one "
                    "ran, with other columns; run again"
                )
            self.plan = plan = replanned
        if plan.new_table:
            txn = self._create_txn(plan.schema, plan.spec)
        else:
            if fresh is None:
                raise RetriableError(
                    f"{self.where}: table {self.name} was dropped while this job ran"
                )
            txn = self._evolve(fresh.transaction(), plan.adds, plan.widens)
        schema = txn.table_metadata.schema()
        if small_arrow_schema(schema) != plan.file_schema:
            raise RetriableError(
                f"{self.where}: the schema of {self.name} changed while this job ran; run again"
            )
        scope = self._scope_filter()
        deleted: dict[str, Any] = {}
        added = [self._data_file(txn, f.path, f.partition) for f in files]
        counts = {"added_rows": sum(f.rows for f in files), "deleted_files": 0}
        if fresh is not None and mode == "overwrite":
            deleted, rewritten = self._overwrite_scope(txn, fresh, scope)
            added += rewritten
        elif mode in ("merge", "sync"):
            dels, new, counts = self._merge(txn, fresh, scope, batches, keys, mode)
            deleted.update(dels)
            added += new
        if fresh is not None and lifecycle is not None:
            for f in self._expired_files(fresh, *lifecycle):
                deleted.setdefault(f.file_path, f)
        counts["deleted_files"] = len(deleted)
        if not added and not deleted and not (plan.new_table or plan.adds or plan.widens):
            return counts
        if added or deleted:
            snap = txn.update_snapshot(snapshot_properties=summary)
            if deleted:
                with snap.overwrite() as ow:
                    if mode == "overwrite":
                        ow.delete_by_predicate(scope)
                    for f in deleted.values():
                        ow.delete_data_file(f)
                    for f in added:
                        ow.append_data_file(f)
            else:
                with snap.fast_append() as app:
                    for f in added:
                        app.append_data_file(f)
        hook("lake.commit")
        try:
            txn.commit_transaction()
        except (CommitFailedException, ValidationException) as e:
            self.delete_files(self.written_at_commit[kept:])  # written for this try
            del self.written_at_commit[kept:]
            if attempt == COMMIT_TRIES:
                raise RetriableError(
                    f"{self.where}: other jobs changed {self.name} at the same time "
                    f"{COMMIT_TRIES} times ({redact(str(e))}); nothing was published, run again"
                ) from e
            log.info("%s: %s changed meanwhile; committing again", self.where, self.name)
            return self.commit(mode, files, batches, keys, lifecycle, summary, attempt + 1)
        except Exception:
            self.outcome_unknown = True  # the catalog may have it: keep every file
            raise
        return counts

    def _scope_filter(self) -> Any:
        from pyiceberg.expressions import AlwaysTrue, And

        assert self.plan is not None
        preds = [equal_to(k, v) for k, v in self.plan.constants.items()]
        if not preds:
            return AlwaysTrue()
        return preds[0] if len(preds) == 1 else And(*preds)

    def _exact(self, data_file: Any) -> bool:
        """True when ``data_file`` lies wholly in the named partition (or no partition is named)."""
        assert self.plan is not None
        if not self.plan.constants:
            return True
        if data_file.spec_id != self.plan.spec.spec_id:
            return False
        want = self._partition_record(tuple(self.plan.constants.values()))
        return bool(data_file.partition == want)

    def _overwrite_scope(
        self, txn: Any, fresh: Any, scope: Any
    ) -> tuple[dict[str, Any], list[Any]]:
        """The files to drop for an overwrite; files that also hold rows outside the partition
        (written under an older partition spec) are rewritten without the partition's rows."""
        from pyiceberg.expressions.visitors import bind
        from pyiceberg.io.pyarrow import _expression_to_complementary_pyarrow

        deleted: dict[str, Any] = {}
        mixed = []
        for task in fresh.scan(row_filter=scope).plan_files():
            deleted[task.file.file_path] = task.file
            if not self._exact(task.file):
                mixed.append(task)
        rewritten = []
        if mixed:
            md = txn.table_metadata
            keep = _expression_to_complementary_pyarrow(bind(md.schema(), scope, True), md.schema())
            for task in mixed:
                rows = self._read(txn, task).filter(keep)
                rewritten += self._write_like(txn, task.file, rows)
        return deleted, rewritten

    def _read(self, txn: Any, task: Any) -> pa.Table:
        from pyiceberg.expressions import AlwaysTrue

        assert self.plan is not None
        md = txn.table_metadata
        table = arrow_scan()(md, self.io, md.schema(), AlwaysTrue()).to_table([task])
        return (
            pa.Table.from_batches([conform(table, self.plan.file_schema)])
            if table.num_rows
            else self.plan.file_schema.empty_table()
        )

    def _write_like(self, txn: Any, old: Any, rows: pa.Table) -> list[Any]:
        """Write ``rows`` (from data file ``old``) to new files in the same partition."""
        if rows.num_rows == 0:
            return []
        values = self._values_of(old)
        r = self.roller(99999, values)
        for b in rows.to_batches():
            r.write(b)
        files = r.close()
        self.written_at_commit += [f.path for f in files]
        return [self._data_file(txn, f.path, None, old.partition, old.spec_id) for f in files]

    def _values_of(self, data_file: Any) -> dict[str, Any]:
        assert self.plan is not None
        pcols = [k for k, _ in self.partition] or self.plan.dynamic
        return {k: data_file.partition[i] for i, k in enumerate(pcols)} if pcols else {}

    def _partition_record(self, values: tuple[Any, ...]) -> Any:
        from pyiceberg.partitioning import partition_record_value
        from pyiceberg.typedef import Record

        assert self.plan is not None
        return Record(
            *[
                partition_record_value(pf, v, self.plan.schema)
                for pf, v in zip(self.plan.spec.fields, values, strict=True)
            ]
        )

    def _data_file(
        self,
        txn: Any,
        path: str,
        values: tuple[Any, ...] | None,
        record: Any = None,
        spec_id: int | None = None,
    ) -> Any:
        from pyiceberg.io.pyarrow import (
            compute_statistics_plan,
            data_file_statistics_from_parquet_metadata,
            parquet_path_to_id_mapping,
        )
        from pyiceberg.manifest import DataFile, DataFileContent, FileFormat

        md = txn.table_metadata
        schema = md.schema()
        inp = self.io.new_input(path)
        with inp.open() as stream:
            meta = pq.read_metadata(stream)
        stats = data_file_statistics_from_parquet_metadata(
            parquet_metadata=meta,
            stats_columns=compute_statistics_plan(schema, md.properties),
            parquet_column_mapping=parquet_path_to_id_mapping(schema),
        )
        if record is None:
            record = self._partition_record(values or ())
        return DataFile.from_args(
            content=DataFileContent.DATA,
            file_path=path,
            file_format=FileFormat.PARQUET,
            partition=record,
            file_size_in_bytes=len(inp),
            sort_order_id=None,
            spec_id=md.default_spec_id if spec_id is None else spec_id,
            equality_ids=None,
            key_metadata=None,
            **stats.to_serialized_dict(),
        )

    def _expired_files(self, fresh: Any, bizdate: date, days: int) -> list[Any]:
        from pyiceberg.types import DateType

        spec = fresh.spec()
        if not spec.fields:
            return []
        source = fresh.schema().find_field(spec.fields[0].source_id).field_type
        out = []
        for task in fresh.scan().plan_files():
            v = task.file.partition[0] if len(task.file.partition) else None
            if isinstance(source, DateType) and isinstance(v, int):
                v = _EPOCH + timedelta(days=v)
            if v is not None and expired(v, bizdate, days):
                out.append(task.file)
        return out

    # -- merge / sync ----------------------------------------------------------------------------
    def _merge(
        self,
        txn: Any,
        fresh: Any,
        scope: Any,
        batches: list[pa.RecordBatch],
        keys: list[str],
        mode: str,
    ) -> tuple[dict[str, Any], list[Any], dict[str, int]]:
        assert self.plan is not None
        upserts, gone = prepare_changes(batches, self.plan.file_schema, keys, mode, self.where)
        tasks = list(fresh.scan(row_filter=scope).plan_files()) if fresh is not None else []

        def one(task: Any, forced: pa.Array | None = None) -> tuple[Any, Any, list[Any]]:
            rows = self._read(txn, task)
            verdict = classify(rows, upserts, gone, keys, mode, forced)
            if not verdict.removed:
                return task, verdict, []
            return task, verdict, self._write_like(txn, task.file, rows.filter(verdict.keep))

        verdicts = parallel(one, tasks)
        dups = duplicates([v.same for _, v, _ in verdicts])
        if len(dups):  # the target held a key more than once: replace every copy
            redo = []
            for task, v, written in verdicts:
                if touches(v.same, dups):
                    self.delete_files([f.file_path for f in written])
                    redo.append(one(task, dups))
                else:
                    redo.append((task, v, written))
            verdicts = redo
        deleted = {t.file.file_path: t.file for t, v, _ in verdicts if v.removed}
        added = [f for _, _, written in verdicts for f in written]
        inserts, counts = remaining(upserts, verdicts)
        added += self._write_rows(txn, inserts)
        return deleted, added, counts

    def _write_rows(self, txn: Any, rows: pa.Table) -> list[Any]:
        """New rows into new data files, one group of files per partition."""
        assert self.plan is not None
        if rows.num_rows == 0:
            return []
        out = []
        for values, part in split_partitions(rows, self.plan.constants, self.plan.dynamic):
            r = self.roller(99998, values)
            for b in part.to_batches():
                r.write(b)
            files = r.close()
            self.written_at_commit += [f.path for f in files]
            out += [self._data_file(txn, f.path, f.partition) for f in files]
        return out

    # -- reading ---------------------------------------------------------------------------------
    def snapshot_id(
        self, snapshot_id: int | None, as_of_ms: int | None, path: Any = str
    ) -> int | None:
        """The snapshot to read; ``path(key)`` makes a parameter's key path for messages."""
        if snapshot_id is not None:
            if self.table.snapshot_by_id(snapshot_id) is None:
                known = [str(s.snapshot_id) for s in self.table.snapshots()][-5:]
                raise ConfigError(
                    f"{path('snapshotId')}: table {self.name} has no snapshot {snapshot_id}; recent: "
                    f"{', '.join(known) or 'none'}"
                )
            return snapshot_id
        if as_of_ms is not None:
            snap = self.table.snapshot_as_of_timestamp(as_of_ms)
            if snap is None:
                raise ConfigError(
                    f"{path('asOf')}: table {self.name} has no snapshot that old; its first "
                    "is from " + _when(self.table.snapshots()[0].timestamp_ms)
                )
            return int(snap.snapshot_id)
        return None


def plan_incoming(plan: Plan, partition: list[tuple[str, str]]) -> pa.Schema:
    """The data columns a plan was made for (its file schema less the partition columns)."""
    keys = {k for k, _ in partition}
    return pa.schema([f for f in plain_schema(plan.file_schema) if f.name not in keys])


def _when(ms: int) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def split_partitions(
    rows: pa.Table, constants: dict[str, Any], dynamic: list[str]
) -> list[tuple[dict[str, Any], pa.Table]]:
    """Rows grouped by partition: one group with the constants, or one per value of the
    ``dynamic`` partition columns found in the rows."""
    if not dynamic:
        return [(dict(constants), rows)]
    distinct = rows.select(dynamic).group_by(dynamic, use_threads=False).aggregate([])
    if distinct.num_rows == 1:
        return [({k: distinct[k][0].as_py() for k in dynamic}, rows)]
    out = []
    for i in range(distinct.num_rows):
        values = {k: distinct[k][i].as_py() for k in dynamic}
        mask = None
        for k, v in values.items():
            m = pc.is_null(rows[k]) if v is None else pc.fill_null(pc.equal(rows[k], v), False)
            mask = m if mask is None else pc.and_(mask, m)
        out.append((values, rows.filter(mask)))
    return out
