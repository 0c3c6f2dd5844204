"""The SQLite writer: one connection and one transaction from ``prepare`` to ``commit``, a SAVEPOINT per batch."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from tidesync.connectors import base
from tidesync.connectors.sql import (
    DELETED,
    WRITE_MODES,
    Binding,
    TableInfo,
    bind,
    check_table_modes,
    created_names,
    database_path,
    expand_table,
    make_parents,
    mapped_names,
    marker_flags,
    partition_columns,
    partition_where,
    remove_created,
    require_table,
    shape_for_partition,
    split_deleted,
    split_name,
    table_modes,
    with_added,
    write_options,
    write_statements,
)
from tidesync.connectors.sqlite.conn import (
    _BUSY_TIMEOUT_S,
    _D,
    _table_info,
    declared_type,
    translate,
)
from tidesync.connectors.sqlite.conn import error_code as _code
from tidesync.errors import DirtyRecordError, FatalError


def _py_column(arr: pa.Array) -> list[Any]:
    """An Arrow column as values sqlite3 binds: temporal and decimal values as ISO / decimal
    text (what SQLite's date functions and numeric affinity read), nested values as JSON."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_timestamp(t) and t.tz:
        arr = arr.cast(pa.timestamp(t.unit, "UTC"))
    if pa.types.is_temporal(t) and not pa.types.is_duration(t) or pa.types.is_decimal(t):
        return arr.cast(pa.string()).to_pylist()
    if pa.types.is_duration(t):
        return arr.cast(pa.int64()).to_pylist()
    if pa.types.is_floating(t) and t.bit_width == 16:
        return arr.cast(pa.float32()).to_pylist()
    if pa.types.is_nested(t):
        return [
            None if v is None else json.dumps(v, default=str, ensure_ascii=False)
            for v in arr.to_pylist()
        ]
    if pa.types.is_null(t):
        return [None] * len(arr)
    return arr.to_pylist()


def _dirty_or_fatal(e: BaseException, where: str) -> Exception:
    """SQLite's error, translated: a row's fault (constraint, type, range) or the table's."""
    data = isinstance(e, sqlite3.IntegrityError | sqlite3.DataError | OverflowError) or (
        isinstance(e, sqlite3.ProgrammingError | sqlite3.InterfaceError)
        and "bind" in str(e).lower()
    )
    if data:
        return DirtyRecordError(str(e), code=_code(e))
    return translate(e, where)


class Writer(base.Writer):
    """Writes one SQLite table in one transaction; see the module docstring."""

    kind = "sqlite"
    modes = WRITE_MODES
    publish = "transaction"
    serial = True

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.o = write_options(self, batch_size=ctx.batch_rows)
        self.partition, self.marker = table_modes(self)
        if "writeMode" not in params and self.partition:
            self.o.mode = "overwrite"
        check_table_modes(self, self.o.mode, self.partition, self.marker)
        self.path: Path | None = None
        if self.o.target.urls:
            try:
                self.path = database_path(self.o.target.urls[0], "sqlite", ctx)
            except ValueError as e:
                self.p.problem(self.o.target.url_key, str(e))
        self.p.done()
        self.table_sql = _D.table(self.o.table)
        self.con: sqlite3.Connection | None = None
        self.info: TableInfo | None = None
        self._bound: dict[tuple[str, ...], Binding] = {}
        self._parts: list[tuple[str, str]] | None = None  # partition levels by column names
        self._lock = threading.RLock()
        self._created_file = False
        self._open: list[_Sink] = []
        self._poisoned = ""

    @property
    def where(self) -> str:
        return f"sqlite table {self.o.table} in {self.path}"

    # prepare ---------------------------------------------------------------------------------
    def prepare(self, schema: pa.Schema | None) -> None:
        assert self.path is not None
        self._created_file = not self.path.exists()
        self._created_dirs = make_parents(self.path)
        try:
            self.con = sqlite3.connect(
                str(self.path),
                isolation_level=None,
                check_same_thread=False,
                timeout=_BUSY_TIMEOUT_S,
            )
            con = self.con
            for s in self.o.session:
                con.execute(s)
            con.execute("BEGIN IMMEDIATE")
            for i, sql in enumerate(self.o.pre_sql):
                try:
                    con.execute(expand_table(sql, self.table_sql))
                except sqlite3.Error as e:
                    raise translate(e, self.ctx.path(f"preSql[{i}]")) from e
            self.info = self._inspect()
            if self.info is None:
                require_table(self.ctx, self.o, self.path)
                if schema is not None:
                    self._create(schema)
            elif self.o.mode == "truncate":
                con.execute(f"DELETE FROM {self.table_sql}")
            elif self.o.mode == "overwrite":
                # in the transaction: a rollback brings the partition's rows back
                parts = self._partition()
                con.execute(
                    f"DELETE FROM {self.table_sql}{partition_where(_D, parts)}",
                    [v for _, v in parts],
                )
            if schema is not None and self.info is not None:
                self._shape(pa.RecordBatch.from_pylist([], schema=schema))  # checks the names
        except sqlite3.Error as e:
            self._rollback()
            raise translate(e, self.where) from e
        except BaseException:
            self._rollback()
            raise

    def _inspect(self) -> TableInfo | None:
        assert self.con is not None
        try:
            name, info = _table_info(self.con, self.o.table)
        except LookupError:
            return None
        cols = tuple(r[1] for r in info)
        pk = tuple(r[1] for r in sorted((r for r in info if r[5]), key=lambda r: r[5]))
        rowid_pk = (
            len(pk) == 1 and (info[[r[1] for r in info].index(pk[0])][2] or "").upper() == "INTEGER"
        )
        required = frozenset(
            r[1] for r in info if r[3] and r[4] is None and not (rowid_pk and r[1] == pk[0])
        )
        unique = [pk] if pk else []
        schema = split_name(self.o.table)[0] if len(split_name(self.o.table)) > 1 else None
        prefix = f"{_D.ident(schema)}." if schema else ""
        for idx in self.con.execute(f"PRAGMA {prefix}index_list({_D.ident(name)})").fetchall():
            if idx[2] and not idx[4]:  # unique, not partial
                unique.append(
                    tuple(
                        r[2]
                        for r in self.con.execute(f"PRAGMA {prefix}index_info({_D.ident(idx[1])})")
                    )
                )
        return TableInfo(cols, required, pk, tuple(unique))

    def _partition(self) -> list[tuple[str, str]]:
        if self._parts is None:
            assert self.info is not None
            self._parts = partition_columns(
                self.ctx, self.o.table, self.partition, self.info.columns
            )
        return self._parts

    def _create(self, schema: pa.Schema) -> None:
        assert self.con is not None
        if self.marker is not None and self.marker[0] in schema.names:
            schema = schema.remove(schema.get_field_index(self.marker[0]))
        names = created_names(self.ctx, self.o, schema)
        cols = ", ".join(
            [f"{_D.ident(n)} {declared_type(f.type)}" for n, f in zip(names, schema, strict=True)]
            + [f"{_D.ident(k)} TEXT" for k, _ in self.partition if k not in names]
        )
        try:
            self.con.execute(f"CREATE TABLE {self.table_sql} ({cols})")
        except sqlite3.Error as e:
            raise translate(e, f"{self.where}: cannot create it") from e
        self.info = self._inspect()

    def _binding(self, names: Sequence[str], added: Sequence[str] = ()) -> Binding:
        key = tuple(names)
        if key not in self._bound:
            assert self.info is not None
            self._bound[key] = bind(self.ctx, with_added(self.o, added), self.info, names)
        return self._bound[key]

    def _shape(
        self, batch: pa.RecordBatch
    ) -> tuple[pa.RecordBatch, pa.RecordBatch | None, Binding]:
        """Partition columns checked and added, the marker column dropped unless the table has
        it; for merge with deleteMarker also the rows whose key is to be deleted."""
        assert self.info is not None
        flags, drop = None, False
        names = list(batch.schema.names)
        if self.marker is not None:
            flags = marker_flags(self, batch, self.marker)
            drop = mapped_names(self.o, self.info.columns, [self.marker[0]])[0] is None
            if drop:
                names.remove(self.marker[0])
        mapped = mapped_names(self.o, self.info.columns, names)
        batch, added = shape_for_partition(
            batch, mapped, self._partition(), self.marker, drop, flags
        )
        if flags is None:
            return batch, None, self._binding(batch.schema.names, added)
        names = [n for n in batch.schema.names if n != DELETED]
        b = self._binding(names, added)
        batch, dead = split_deleted(batch, [names[b.columns.index(k)] for k in b.keys])
        return batch, dead, b

    # sinks -----------------------------------------------------------------------------------
    def open(self, split: base.Split) -> _Sink:
        if self.con is None:
            raise FatalError(f"{self.where}: open() before prepare()")
        return _Sink(self, split)

    def _write(self, batch: pa.RecordBatch) -> None:
        assert self.con is not None
        if self.info is None:
            self._create(batch.schema)
        batch, dead, b = self._shape(batch)
        stmts = write_statements(
            _D,
            self.o.table,
            b.columns,
            mode=self.o.mode,
            keys=b.keys,
            conflict_target=b.conflict_target,
        )
        key_idx = [b.columns.index(k) for k in b.keys]
        con = self.con
        con.execute('SAVEPOINT "tidesync_batch"')
        try:
            if dead is not None and dead.num_rows:
                gone = write_statements(_D, self.o.table, b.keys, mode="replace", keys=b.keys)[0]
                keys = [_py_column(dead.column(b.columns.index(k))) for k in b.keys]
                con.executemany(gone.sql, zip(*(keys[i] for i in gone.params), strict=True))
            for start in range(0, batch.num_rows, self.o.batch_size):
                cols = [_py_column(c) for c in batch.slice(start, self.o.batch_size).columns]
                if key_idx:
                    cols = _last_per_key(cols, key_idx)
                for st in stmts:
                    con.executemany(st.sql, zip(*(cols[i] for i in st.params), strict=True))
        except (sqlite3.Error, OverflowError) as e:
            if not con.in_transaction:  # SQLite gave up the transaction (full disk, I/O error)
                raise translate(e, self.where, rolled_back=True) from e
            con.execute('ROLLBACK TO "tidesync_batch"')
            con.execute('RELEASE "tidesync_batch"')
            raise _dirty_or_fatal(e, self.where) from e
        con.execute('RELEASE "tidesync_batch"')

    # publish ---------------------------------------------------------------------------------
    def commit(self, results: list[Any]) -> None:
        with self._lock:
            if self.con is None:
                raise FatalError(f"{self.where}: commit() without prepare()")
            if self._poisoned:
                self._rollback()
                raise FatalError(f"{self.where}: nothing committed: {self._poisoned}")
            try:
                for i, sql in enumerate(self.o.post_sql):
                    try:
                        self.con.execute(expand_table(sql, self.table_sql))
                    except sqlite3.Error as e:
                        raise translate(e, self.ctx.path(f"postSql[{i}]")) from e
                try:
                    self.con.execute("COMMIT")
                except sqlite3.Error as e:
                    raise translate(e, f"{self.where}: commit failed") from e
            except BaseException:
                self._rollback()
                raise
            self.con.close()
            self.con = None

    def abort(self, results: list[Any]) -> None:
        with self._lock:
            self._rollback()

    def _rollback(self) -> None:
        if self.con is not None:
            try:
                if self.con.in_transaction:
                    self.con.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # closing the connection rolls back as well
            self.con.close()
            self.con = None
        if self._created_file and self.path is not None and _is_empty_sqlite(self.path):
            # only a database this writer created and nobody has written into since
            files = [self.path, *(Path(f"{self.path}{x}") for x in ("-journal", "-wal", "-shm"))]
            remove_created(files, getattr(self, "_created_dirs", []))
            self._created_file = False
            self._created_dirs = []


def _last_per_key(cols: list[list[Any]], key_idx: list[int]) -> list[list[Any]]:
    """Keep the last row of each key (rows with a NULL key part are all kept)."""
    keys = list(zip(*(cols[i] for i in key_idx), strict=True))
    last: dict[tuple[Any, ...], int] = {}
    for r, k in enumerate(keys):
        if None not in k:
            last[k] = r
    if len(last) == sum(1 for k in keys if None not in k):
        return cols
    keep = [r for r, k in enumerate(keys) if None in k or last[k] == r]
    return [[c[r] for r in keep] for c in cols]


class _Sink(base.Sink):
    """A task's handle: each write is one SAVEPOINT; a sink that had the transaction to itself
    also has its own SAVEPOINT, so ``discard`` can undo just its rows."""

    def __init__(self, writer: Writer, split: base.Split):
        self.w = writer
        self.split = split
        self.rows = 0
        self.savepoint = ""
        self.savepoint_alone = False  # True while no other sink shares the transaction
        with writer._lock:
            if writer._open:
                for other in writer._open:
                    other.savepoint_alone = False
            else:
                self.savepoint = f"tidesync_sink_{split.index}"
                assert writer.con is not None
                writer.con.execute(f'SAVEPOINT "{self.savepoint}"')
            self.savepoint_alone = bool(self.savepoint)
            writer._open.append(self)

    def write(self, batch: pa.RecordBatch) -> None:
        with self.w._lock:
            if self.w.con is None:
                raise FatalError(f"{self.w.where}: the transaction is closed")
            self.w._write(batch)
            self.rows += batch.num_rows

    def _leave(self, undo: bool) -> None:
        w = self.w
        if self in w._open:
            w._open.remove(self)
        if w.con is None or not self.savepoint:
            return
        if undo:
            w.con.execute(f'ROLLBACK TO "{self.savepoint}"')
        w.con.execute(f'RELEASE "{self.savepoint}"')

    def close(self) -> dict[str, Any]:
        with self.w._lock:
            self._leave(undo=False)
        return {"split": self.split.label, "rows": self.rows}

    def discard(self) -> dict[str, Any]:
        with self.w._lock:
            if self.rows and not self.savepoint_alone:
                self.w._poisoned = (
                    f"task {self.split.label!r} failed after writing {self.rows} "
                    "rows that cannot be told apart from other tasks' rows"
                )
            self._leave(undo=self.savepoint_alone)
        return {"split": self.split.label, "rows": 0, "discarded": self.rows}


def _is_empty_sqlite(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as con:
            return con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    except sqlite3.Error:
        return False
