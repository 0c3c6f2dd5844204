"""The DuckDB writer: one transaction from ``prepare`` to ``commit``; batches checked on a twin table, plain appends inserted by a background thread."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
from tidesync.connectors.duckdb.conn import _D, _columns, _resolve, _to_table, translate
from tidesync.connectors.duckdb.csv import ARROW_TYPES, FORM, CsvFile, load, parser_trouble
from tidesync.connectors.sql import (
    DELETED,
    Binding,
    NewFile,
    SqlSink,
    SqlWriter,
    TableInfo,
    created_names,
    database_path,
    partition_where,
    split_deleted,
    typed_value,
    write_options,
    write_statements,
)
from tidesync.connectors.sql.writer import (
    check_doubles_fit_floats,
    check_integers_fit_floats,
    check_text_wall_times,
    empty_batch,
    text_instants_as_wall_times,
    text_with_fraction,
    wall_times_as_instants,
)
from tidesync.errors import ConfigError, DirtyRecordError, FatalError

#: errors that are the rows' fault (constraint, conversion, range)
_DATA_ERRORS = (duckdb.IntegrityError, duckdb.DataError, duckdb.InvalidInputException)


_BATCH = "__tidesync_batch"


_ROW = "__tidesync_row"


_PROBE = "__tidesync_probe"


_DEAD = "__tidesync_dead"  # merge: the keys to delete


@dataclass(frozen=True)
class _Table:
    info: TableInfo
    types: dict[str, str]  # column -> DuckDB type, as CAST takes it
    not_null: frozenset[str]
    checks: tuple[tuple[str, frozenset[str]], ...]  # (expression, columns)
    arrow: pa.Schema


@dataclass(frozen=True)
class _Plan:
    """How a batch of one shape is checked and written."""

    binding: Binding
    source: str  # subquery: the batch cast to the target types (last row per key for upserts)
    probe: str | None  # the INSERT into the twin, or None when no row can fail it
    unique_checks: tuple[tuple[str, str, tuple[str, ...]], ...]  # (query, message tail, columns)
    statements: tuple[str, ...]


#: bytes of batches the background inserter may hold (queued or being inserted)
QUEUE_BYTES = 128 << 20


class _Inserter:
    """The INSERTs of plain appends, run by one thread while the tasks go on reading.

    A write that needs no check against rows already in the table (no key to upsert, no PRIMARY
    KEY / UNIQUE constraint on the written columns) is queued here once its batch has passed the
    twin-table probe, and ``write`` returns. The thread inserts the queued batches of one plan
    together, up to ``group_rows`` rows per statement: DuckDB spreads one INSERT over all its
    threads when it scans several batches, and runs it without the GIL, so reading, converting
    and inserting overlap instead of taking turns (measured: see docs/connectors/duckdb.md).
    The queue is bounded by :data:`QUEUE_BYTES`; ``put`` waits for room. Only this thread uses
    the writer's connection until :meth:`drain` returns."""

    def __init__(self, con: duckdb.DuckDBPyConnection, group_rows: int, limit: int = QUEUE_BYTES):
        self.con = con
        self.group_rows = max(1, group_rows)
        self.limit = limit
        self.cv = threading.Condition()
        self.queue: deque[tuple[_Plan, pa.RecordBatch]] = deque()
        self.held = 0  # bytes queued or being inserted
        self.busy = False
        self.stopped = False
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="duckdb-insert", daemon=True)
        self.thread.start()

    def put(self, plan: _Plan, rows: pa.RecordBatch) -> None:
        """Queue ``rows``; raise the inserter's error if an earlier INSERT failed."""
        with self.cv:
            while self.held >= self.limit and self.error is None and not self.stopped:
                self.cv.wait()
            self._raise()
            self.queue.append((plan, rows))
            self.held += rows.nbytes
            self.cv.notify_all()

    def drain(self) -> None:
        """Wait until every queued batch is inserted (or raise why one could not be)."""
        with self.cv:
            while (self.queue or self.busy) and self.error is None:
                self.cv.wait()
            self._raise()

    def stop(self) -> None:
        """Drop what is queued, interrupt the running INSERT, wait for the thread."""
        with self.cv:
            self.stopped = True
            self.queue.clear()
            if self.busy:
                self.con.interrupt()
            self.cv.notify_all()
        self.thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _loop(self) -> None:
        while True:
            with self.cv:
                while not self.queue and not self.stopped:
                    self.cv.wait()
                if self.stopped:
                    return
                plan, first = self.queue.popleft()
                group, rows = [first], first.num_rows
                while (
                    self.queue
                    and rows < self.group_rows
                    and self.queue[0][0] is plan
                    and self.queue[0][1].schema == first.schema
                ):
                    group.append(self.queue.popleft()[1])
                    rows += group[-1].num_rows
                self.busy = True
            try:
                self.con.register(_BATCH, _aligned(group))
                try:
                    for sql in plan.statements:
                        self.con.execute(sql)
                finally:
                    with contextlib.suppress(duckdb.Error):  # not to hide the INSERT's error
                        self.con.unregister(_BATCH)
            except BaseException as e:  # noqa: BLE001 - handed to the writer's thread
                with self.cv:
                    self.error = e
                    self.busy = False
                    self.cv.notify_all()
                return
            with self.cv:
                self.held -= sum(b.nbytes for b in group)
                self.busy = False
                self.cv.notify_all()


#: one lock per file and table, held by the writer of it in this process from prepare to the end
_WRITERS: dict[str, threading.Lock] = {}
_WRITERS_GUARD = threading.Lock()


def _writer_lock(key: str) -> threading.Lock:
    with _WRITERS_GUARD:
        return _WRITERS.setdefault(key, threading.Lock())


#: rows per DuckDB row group (its storage unit)
ROW_GROUP_ROWS = 122_880


def _aligned(group: list[pa.RecordBatch]) -> pa.Table:
    """The batches as one table DuckDB can insert in parallel and write straight to storage: a
    small batch amid large ones (a split's last rows) makes DuckDB keep the statement's rows in
    memory and compress them again at COMMIT (measured: COMMIT of 5M such rows 0.6-1.0 s instead
    of 0.05 s), so such a group is cut in whole row groups, in order. A row group within one
    batch is a slice of it; only one that spans batches is copied (joining the whole group
    copied every row of a csv load, in the one inserting thread)."""
    table = pa.Table.from_batches(group)
    if all(b.num_rows >= ROW_GROUP_ROWS for b in group[:-1]):
        return table
    out: list[pa.RecordBatch] = []
    pending: list[pa.RecordBatch] = []  # the start of a row group that spans batches
    held = 0  # rows in pending
    for b in group:
        at = 0
        if pending:
            at = min(ROW_GROUP_ROWS - held, b.num_rows)
            pending.append(b.slice(0, at))
            held += at
            if held < ROW_GROUP_ROWS:
                continue
            out.append(pa.concat_batches(pending))
            pending, held = [], 0
        whole = (b.num_rows - at) // ROW_GROUP_ROWS * ROW_GROUP_ROWS
        if whole:
            out.append(b.slice(at, whole))
        if at + whole < b.num_rows:
            pending, held = [b.slice(at + whole)], b.num_rows - at - whole
    if pending:
        out.append(pa.concat_batches(pending))
    return pa.Table.from_batches(out, schema=table.schema)


class Writer(SqlWriter):
    """Writes one DuckDB table in one transaction; see the module docstring."""

    kind = "duckdb"
    dialect = _D
    serial = True

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        # DuckDB inserts fastest in large statements (measured: 1M-row INSERTs take ~25% less
        # time than 64K-row ones); the engine still bisects a failing batch row by row.
        self.o = write_options(self, batch_size=1 << 20)
        self.settle_modes("writeMode" in params)
        self.path: Path | None = None
        if self.o.target.urls:
            try:
                self.path = database_path(self.o.target.urls[0], "duckdb", ctx)
            except ValueError as e:
                self.p.problem(self.o.target.url_key, str(e))
        self.p.done()
        self.con: duckdb.DuckDBPyConnection | None = None
        self.side: duckdb.DuckDBPyConnection | None = None
        self.table: _Table | None = None
        self._plans: dict[tuple[tuple[str, str], ...], _Plan] = {}
        self._probe_shape: tuple[str, ...] | None = None
        self.new_file = NewFile((".wal",), _is_empty_duckdb)
        self._inserter: _Inserter | None = None
        self._held: threading.Lock | None = None  # this process's lock of the target

    @property
    def location(self) -> str:
        return str(self.path)

    # the transaction -------------------------------------------------------------------------
    def connect(self) -> None:
        """Writers of one table wait for each other: in this process on a lock of the file and
        table, across processes on DuckDB's own lock of the file (one process writes a file
        at a time), retried until ``lockTimeout``."""
        assert self.path is not None
        t0 = time.monotonic()
        lock = _writer_lock(f"{os.path.realpath(self.path)}\0{self.o.table.lower()}")
        said = False
        if not lock.acquire(blocking=False):
            self.waiting()
            said = True
            if not lock.acquire(timeout=self.lock_timeout):
                raise self.lock_timed_out(time.monotonic() - t0)
        self._held = lock
        pause = 0.05
        while True:
            self.new_file.open(self.path)
            try:
                self.con = duckdb.connect(str(self.path))
                break
            except duckdb.Error as e:
                first = str(e).split("\n")[0]
                if not (isinstance(e, duckdb.IOException) and "lock" in first.lower()):
                    raise translate(e, self.where) from e
                left = self.lock_timeout - (time.monotonic() - t0)
                if left <= 0:
                    waited = time.monotonic() - t0
                    raise self.lock_timed_out(waited, first, type(e).__name__) from e
                if not said:
                    self.waiting()
                    said = True
                time.sleep(min(pause, left))  # another process holds the file: try again
                pause = min(2 * pause, 1.0)
        # casts between TIMESTAMPTZ and TIMESTAMP / DATE take the session's zone: the job's,
        # as for the reader (DuckDB's default is the machine's)
        try:
            self.con.execute(f"SET TimeZone = '{self.ctx.timezone.replace(chr(39), '')}'")
        except duckdb.Error as e:
            raise ConfigError(f"time zone {self.ctx.timezone!r} unknown to duckdb: {e}") from e
        for i, s in enumerate(self.o.session):
            self.execute(s, where=f"session[{i}]")

    def begin(self) -> None:
        self.execute("BEGIN TRANSACTION")

    def execute(self, sql: str, params: Sequence[Any] = (), where: str = "") -> None:
        assert self.con is not None
        try:
            self.con.execute(sql, list(params) or None)
        except duckdb.Error as e:
            raise translate(e, self.ctx.path(where) if where else self.where) from e

    def clear(self, parts: Sequence[tuple[str, str]]) -> None:
        assert self.table is not None
        types = {f.name: f.type for f in self.table.arrow}
        self.execute(
            f"DELETE FROM {self.table_sql}{partition_where(_D, parts)}",
            [typed_value(v, types.get(c)) for c, v in parts],
        )

    def partition_scalar(self, column: str, text: str) -> pa.Scalar:
        assert self.table is not None
        t = self.table.arrow.field(column).type
        typed = typed_value(text, t)
        return pa.scalar(typed, t) if typed is not text else pa.scalar(text)

    def inspect(self) -> TableInfo | None:
        con = self.con
        assert con is not None
        try:
            where = _resolve(con, self.o.table)
        except LookupError:
            self.table = None
            return None
        cols = _columns(con, where)
        constraints = con.execute(
            "SELECT constraint_type, constraint_column_names, expression FROM duckdb_constraints() "
            "WHERE database_name = ? AND schema_name = ? AND table_name = ?",
            list(where),
        ).fetchall()
        pk: tuple[str, ...] = ()
        unique: list[tuple[str, ...]] = []
        checks = []
        for kind, names, expr in constraints:
            if kind == "PRIMARY KEY":
                pk = tuple(names)
                unique.insert(0, pk)
            elif kind == "UNIQUE":
                unique.append(tuple(names))
            elif kind == "CHECK" and expr:
                checks.append((expr, frozenset(names)))
        info = TableInfo(
            columns=tuple(c[0] for c in cols),
            required=frozenset(c[0] for c in cols if not c[2] and c[3] is None),
            primary_key=pk,
            unique=tuple(unique),
        )
        arrow = _to_table(con.sql(f"SELECT * FROM {self.table_sql} LIMIT 0")).schema
        self.table = _Table(
            info,
            {c[0]: c[1] for c in cols},
            frozenset(c[0] for c in cols if not c[2]),
            tuple(checks),
            arrow,
        )
        return info

    def create(self, schema: pa.Schema) -> None:
        con = self.con
        assert con is not None
        names = created_names(self.ctx, self.o, schema)
        fields = [
            pa.field(n, f.type.value_type if pa.types.is_dictionary(f.type) else f.type)
            for n, f in zip(names, schema, strict=True)
        ] + [pa.field(k, pa.string()) for k, _ in self.partition if k not in names]
        empty = pa.Table.from_batches([empty_batch(pa.schema(fields))])  # (no pandas import)
        try:
            con.register("__tidesync_empty", empty)
            con.execute(f"CREATE TABLE {self.table_sql} AS SELECT * FROM __tidesync_empty")
            con.unregister("__tidesync_empty")
        except duckdb.Error as e:
            raise FatalError(f"{self.where}: cannot create it: {e}") from e

    def planned(self, schema: pa.Schema, binding: Binding) -> None:
        if DELETED in schema.names:
            schema = schema.remove(schema.get_field_index(DELETED))
        self._plan(schema, binding)

    def _plan(self, schema: pa.Schema, b: Binding) -> _Plan:
        shape = tuple((f.name, str(f.type)) for f in schema)
        if shape in self._plans:
            return self._plans[shape]
        assert self.table is not None
        t = self.table
        cols = b.columns
        q = _D.ident
        cast = ", ".join(
            f"CAST({q(f'c{i}')} AS {t.types[c]}) AS {q(c)}" for i, c in enumerate(cols)
        )
        source = f"SELECT {cast} FROM {_BATCH}"
        if b.keys:
            source = f"SELECT {cast}, {q(_ROW)} FROM {_BATCH}"  # upserts: the last row of each key (rows with a NULL key part all stay)
            keys = ", ".join(q(k) for k in b.keys)
            nulls = " OR ".join(f"{q(k)} IS NULL" for k in b.keys)
            source = (
                f"SELECT * FROM ({source}) QUALIFY {nulls} OR row_number() OVER "
                f"(PARTITION BY {keys} ORDER BY {q(_ROW)} DESC) = 1"
            )
        written = set(cols)
        checks = [e for e, names in t.checks if names <= written]
        same_types = all(schema.field(i).type == t.arrow.field(c).type for i, c in enumerate(cols))
        probe = None
        if checks or written & t.not_null or not same_types:
            probe = f"INSERT INTO {_PROBE} SELECT {', '.join(q(c) for c in cols)} FROM ({source})"
        plan = _Plan(
            b,
            f"({source})",
            probe,
            self._unique_checks(b, f"({source})"),
            tuple(
                s.sql
                for s in write_statements(
                    _D,
                    self.o.table,
                    cols,
                    mode=self.o.mode,
                    keys=b.keys,
                    conflict_target=b.conflict_target,
                    source=f"({source})",
                )
            ),
        )
        self._plans[shape] = plan
        return plan

    def _unique_checks(
        self, b: Binding, source: str
    ) -> tuple[tuple[str, str, tuple[str, ...]], ...]:
        """Queries that find a row of the batch breaking a PRIMARY KEY / UNIQUE constraint,
        within the batch or against the table (which DuckDB would answer by aborting the
        transaction). Upserts replace the rows of their own key, so only other constraints count."""
        assert self.table is not None
        q, t = _D.ident, self.table_sql
        out = []
        for u in self.table.info.unique:
            if not set(u) <= set(b.columns) or (b.keys and set(u) == set(b.keys)):
                continue
            cols = ", ".join(f"s.{q(c)}" for c in u)
            notnull = " AND ".join(f"s.{q(c)} IS NOT NULL" for c in u)
            match = " AND ".join(f"{t}.{q(c)} = s.{q(c)}" for c in u)
            if b.keys:
                match += (
                    " AND NOT EXISTS (SELECT 1 FROM "
                    + source
                    + " AS s2 WHERE "
                    + " AND ".join(f"s2.{q(k)} = {t}.{q(k)}" for k in b.keys)
                    + ")"
                )
            kind = "primary key" if u == self.table.info.primary_key else "unique"
            head = f"violates {kind} constraint ({', '.join(u)}) of table {self.o.table}"
            out.append(
                (
                    f"SELECT {cols} FROM {source} AS s WHERE {notnull} GROUP BY {cols} "
                    "HAVING count(*) > 1 LIMIT 1",
                    head + " twice in the batch",
                    u,
                )
            )
            out.append(
                (
                    f"SELECT {cols} FROM {source} AS s WHERE {notnull} AND EXISTS "
                    f"(SELECT 1 FROM {t} WHERE {match}) LIMIT 1",
                    head,
                    u,
                )
            )
        return tuple(out)

    def _ensure_probe(self, cols: Sequence[str]) -> None:
        """The empty twin of the target on the side connection: written columns, their types,
        NOT NULL and the CHECK constraints on them; no keys (checked in the transaction)."""
        assert self.table is not None and self.con is not None
        if self.side is None:
            self.side = self.con.cursor()
        if self._probe_shape == tuple(cols):
            return
        t, q = self.table, _D.ident
        defs = [f"{q(c)} {t.types[c]}{' NOT NULL' if c in t.not_null else ''}" for c in cols]
        defs += [f"CHECK ({e})" for e, names in t.checks if names <= set(cols)]
        self.side.execute(f"CREATE OR REPLACE TEMP TABLE {_PROBE} ({', '.join(defs)})")
        self._probe_shape = tuple(cols)

    # writing -------------------------------------------------------------------------------
    def write_rows(self, batch: pa.RecordBatch, b: Binding, split: base.Split) -> None:
        if self.poisoned:
            raise FatalError(f"{self.where}: the transaction is closed: {self.poisoned}")
        dead = None
        if DELETED in batch.schema.names:
            names = [n for n in batch.schema.names if n != DELETED]
            batch, gone = split_deleted(batch, [names[b.columns.index(k)] for k in b.keys])
            dead = pa.RecordBatch.from_arrays(
                [gone.column(b.columns.index(k)) for k in b.keys], names=list(b.keys)
            )
        batch = self._exact_values(batch, b)
        plan = self._plan(batch.schema, b)
        if dead is not None and dead.num_rows:
            self._delete(dead, plan.binding)
        names = [f"c{i}" for i in range(batch.num_columns)]
        rows = pa.RecordBatch.from_arrays(batch.columns, names=names)
        if plan.binding.keys:  # the row order decides which row of a key wins
            rows = rows.append_column(_ROW, pa.array(range(batch.num_rows), pa.int64()))
        for start in range(0, rows.num_rows, self.o.batch_size):
            self._write_part(plan, rows.slice(start, self.o.batch_size))

    def _exact_values(self, batch: pa.RecordBatch, b: Binding) -> pa.RecordBatch:
        """Refuse what DuckDB's casts would change without a word: text with a fraction bound
        for an integer column (the text '1.5' becomes 2, where PostgreSQL refuses it), a
        decimal with more digits after the point than the column keeps or a timestamp finer
        than its unit (rounded), and a naive time (or ISO text without an offset) for a
        TIMESTAMPTZ column that the job's zone skips or shows twice (DuckDB picks an instant).
        Text that is no number at all is left to DuckDB, whose own message makes the row
        dirty. Text with a UTC offset bound for a TIMESTAMP column is written as the job's wall
        time of that instant (DuckDB's cast would drop the offset)."""
        assert self.table is not None
        arrays = list(batch.columns)
        for i, c in enumerate(b.columns):
            if i >= batch.num_columns or c not in self.table.arrow.names:
                continue
            arr, t = batch.column(i), self.table.arrow.field(c).type
            if _is_text(arr.type) and (pa.types.is_binary(t) or pa.types.is_large_binary(t)):
                # text's UTF-8 bytes, as DataX's asBytes (DuckDB's cast reads "\x41" as one
                # byte and refuses any other character beyond ASCII)
                arrays[i] = arr.cast(
                    pa.large_binary() if pa.types.is_large_string(arr.type) else pa.binary()
                )
                continue
            if _is_text(t) and (pa.types.is_binary(arr.type) or pa.types.is_large_binary(arr.type)):
                # bytes as UTF-8 text, as DataX's asString (DuckDB's cast wrote é as the text
                # \xC3\xA9); bytes that are no UTF-8 are no text
                try:
                    arrays[i] = arr.cast(pa.string())
                except pa.ArrowInvalid:
                    raise DirtyRecordError(
                        f"column {c}: value{_one(arr)} is bytes that are not UTF-8 text, which "
                        f"a VARCHAR column holds ({self.where})"
                    ) from None
                continue
            if pa.types.is_integer(t) and (text_with_fraction(arr) or _float_with_fraction(arr)):
                raise DirtyRecordError(
                    f"column {c}: value{_one(arr)} is not an integer, as {t} holds ({self.where})"
                )
            check_integers_fit_floats(arr, t, c, self.where)
            check_doubles_fit_floats(arr, t, c, self.where)
            if _rounded(arr, t):
                raise DirtyRecordError(
                    f"column {c}: value{_one(arr)} has more digits after the point than {t} "
                    f"keeps; DuckDB would round it ({self.where})"
                )
            zone = self.ctx.timezone
            if pa.types.is_timestamp(t) and not t.tz:
                arrays[i] = text_instants_as_wall_times(arr, zone, c, "TIMESTAMP")
            if not (pa.types.is_timestamp(t) and t.tz) or zone in ("UTC", "Etc/UTC"):
                continue
            if pa.types.is_timestamp(arr.type) and not arr.type.tz:
                wall_times_as_instants(arr, zone, c, "TIMESTAMPTZ")
            else:
                check_text_wall_times(arr, zone, c, "TIMESTAMPTZ")
        fields = [f.with_type(a.type) for f, a in zip(batch.schema, arrays, strict=True)]
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, batch.schema.metadata))

    def _delete(self, dead: pa.RecordBatch, b: Binding) -> None:
        """Delete the keys whose last row carries the deleteMarker (merge)."""
        self._drain()
        con = self.con
        assert con is not None
        sql = write_statements(_D, self.o.table, b.keys, mode="replace", keys=b.keys, source=_DEAD)[
            0
        ].sql
        con.register(_DEAD, dead)
        try:
            con.execute(sql)
        except duckdb.Error as e:
            self.poisoned = f"a write failed: {e}"
            raise FatalError(f"{self.where}: {e}; the transaction is rolled back") from e
        finally:
            con.unregister(_DEAD)

    def _write_part(self, plan: _Plan, rows: pa.RecordBatch) -> None:
        con = self.con
        assert con is not None
        if plan.probe is not None:
            self._ensure_probe(plan.binding.columns)
            side = self.side
            assert side is not None
            side.register(_BATCH, rows)
            try:
                side.execute("BEGIN TRANSACTION")
                side.execute(plan.probe)
            except _DATA_ERRORS as e:
                raise DirtyRecordError(str(e).split("\n")[0], code=type(e).__name__) from e
            except duckdb.Error as e:
                raise FatalError(f"{self.where}: {e}") from e
            finally:
                side.execute("ROLLBACK")
                side.unregister(_BATCH)
        if not plan.unique_checks and not plan.binding.keys:
            # nothing to check against rows already written: insert in the background
            if self._inserter is None:
                if self.side is None:
                    self.side = con.cursor()  # before the inserter owns ``con``
                self._inserter = _Inserter(con, self.o.batch_size)
            try:
                self._inserter.put(plan, rows)
            except BaseException as e:
                raise self._failed(e) from e
            return
        self._drain()
        con.register(_BATCH, rows)
        try:
            for sql, head, names in plan.unique_checks:
                try:
                    found = con.execute(sql).fetchall()  # LIMIT 1; drains the result
                except duckdb.Error as e:
                    self.poisoned = f"a check failed: {e}"
                    raise FatalError(f"{self.where}: {e}") from e
                if found:
                    key = ", ".join(f"{c}: {v}" for c, v in zip(names, found[0], strict=True))
                    raise DirtyRecordError(
                        f'Constraint Error: Duplicate key "{key}" {head}',
                        code="ConstraintException",
                    )
            for sql in plan.statements:
                try:
                    con.execute(sql)
                except duckdb.Error as e:
                    self.poisoned = f"a write failed: {e}"
                    raise FatalError(f"{self.where}: {e}; the transaction is rolled back") from e
        finally:
            if not self.poisoned:
                con.unregister(_BATCH)

    def _drain(self) -> None:
        """Wait for the background INSERTs; ``con`` is this thread's again afterwards."""
        if self._inserter is not None:
            try:
                self._inserter.drain()
            except BaseException as e:
                raise self._failed(e) from e

    def _failed(self, e: BaseException) -> BaseException:
        """A background INSERT failed: the transaction is lost (DuckDB aborts it)."""
        self.poisoned = f"a write failed: {e}"
        if isinstance(e, duckdb.Error):
            return FatalError(f"{self.where}: {e}; the transaction is rolled back")
        return e

    # publish ---------------------------------------------------------------------------------
    def finish(self) -> None:
        self._drain()

    def delete_absent(self, keys: pa.RecordBatch) -> None:
        """The keys registered as a relation, cast to the key columns' types; one DELETE."""
        self._drain()
        assert self.con is not None and self.table is not None
        q, names = _D.ident, keys.schema.names
        casts = ", ".join(f"CAST({q(k)} AS {self.table.types[k]}) AS {q(k)}" for k in names)
        self.con.register(_DEAD, keys)
        try:
            self.execute(self.absent_sql(f"(SELECT {casts} FROM {_DEAD})", names))
        finally:
            self.con.unregister(_DEAD)

    def commit_transaction(self) -> None:
        self.execute("COMMIT")
        self.new_file.keep()

    def rollback(self) -> None:
        self._stop_inserter()
        if self.con is not None:
            with contextlib.suppress(duckdb.Error):  # no transaction open: closing is enough
                self.con.execute("ROLLBACK")

    def close(self) -> None:
        self._stop_inserter()
        for c in (self.side, self.con):
            if c is not None:
                c.close()
        self.side = self.con = None
        # only a database this writer created and nobody has written into since
        self.new_file.drop()
        held, self._held = self._held, None
        if held is not None:
            held.release()

    def _stop_inserter(self) -> None:
        if self._inserter is not None:
            self._inserter.stop()
            self._inserter = None

    # the direct path: DuckDB parses a csv file itself -----------------------------------------
    def raw_form(self, reader: base.Reader, schema: pa.Schema | None) -> str | None:
        """``csv-file`` when a plain append of the reader's columns needs nothing of Arrow: no
        key or partition, no constraint a row could break (DuckDB would abort the whole
        transaction), and each target column of the type the reader gives."""
        self.raw_refusal = self._raw_refusal(reader, schema)
        return None if self.raw_refusal else FORM

    def raw_by_default(self, form: str) -> bool:
        """Not ``csv-file`` unless ``setting.direct: true``: its exactness checks (a regex per
        typed value, the quote search) make it slower than tidesync's own csv reading into
        the queued inserts (docs/design.md, issue 17)."""
        return form != FORM

    def _raw_refusal(self, reader: base.Reader, schema: pa.Schema | None) -> str:
        if FORM not in reader.raw_forms():
            return f"the reader does not hand over {FORM}"
        if self.mode not in ("insert", "truncate", "overwrite") or self.partition:
            return f"writeMode {self.mode}{' of a partition' if self.partition else ''}"
        if schema is None or self.table is None:
            return "the reader's columns are not known before reading"
        t = self.table
        if t.info.unique or t.checks:
            return f"table {self.o.table} has key or CHECK constraints"
        with self.lock:
            b = self.binding(schema.names)
        for f, c in zip(schema, b.columns, strict=True):
            if c in t.not_null:
                return f"column {c} is NOT NULL"
            if ARROW_TYPES.get(f.type) != t.types[c]:
                return f"column {c} is {t.types[c]}, the reader gives {f.type}"
        return ""

    def open(self, split: base.Split) -> SqlSink:
        with self.lock:
            if not self.live:
                raise FatalError(f"{self.where}: open() before prepare()")
            sink = _Sink(self, split)
            self.sink_opened(sink)
            return sink

    def load_csv(self, sink: SqlSink, f: CsvFile) -> int:
        """Insert a csv file parsed by DuckDB; DirectFallback (nothing left behind) when DuckDB
        rejects a row or would read a value otherwise than tidesync, so that the engine reads
        the file again the Arrow way."""
        # the scan for spaces beside quotes reads the file, outside the lock
        if why := parser_trouble(f):
            raise base.DirectFallback(f"{f.label} has {why}")
        with self.lock:
            if not self.live or self.poisoned:
                raise FatalError(f"{self.where}: the transaction is closed: {self.poisoned}")
            assert self.table is not None
            b = self.binding([n for _, n, _ in f.columns])
            if any(
                self.table.types[c] != t for c, (_, _, t) in zip(b.columns, f.columns, strict=True)
            ):
                raise base.DirectFallback(f"{f.label}: the columns' types differ from the table's")
            self._drain()
            assert self.con is not None
            try:
                loaded = load(self.con, self.table_sql, list(b.columns), f, quotes_checked=True)
            except duckdb.Error as e:
                self.poisoned = f"a write failed: {e}"
                raise FatalError(
                    f"{self.where}: reading {f.label}: {str(e).splitlines()[0]}; "
                    "the transaction is rolled back"
                ) from e
            if loaded.rejected:
                more = f" (and {loaded.rejected - 1} more)" if loaded.rejected > 1 else ""
                raise base.DirectFallback(f"{f.label} {loaded.rejects[0]}{more}")
            sink.rows += loaded.rows
            return loaded.rows

    def sink_closed(self, sink: SqlSink, discarded: bool) -> None:
        # DuckDB cannot undo part of a transaction: a task that fails after writing rows
        # makes the commit refuse (abort is the way out)
        if discarded and sink.rows:
            self.poisoned = f"task {sink.split.label!r} failed after writing {sink.rows} rows"


def _is_empty_duckdb(path: Path) -> bool:
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            row = con.execute("SELECT count(*) FROM duckdb_tables() WHERE NOT internal").fetchone()
            return row is not None and row[0] == 0
    except duckdb.Error:
        return False


class _Sink(SqlSink):
    """A DuckDB task's sink: Arrow batches as every SQL sink, and csv files on the direct path."""

    w: Writer

    def write_raw(self, raw: base.Raw) -> int:
        try:
            f = CsvFile.from_data(raw.data)
        except KeyError as e:
            raise base.DirectFallback(f"a column of type {e} cannot be read by DuckDB") from None
        return self.w.load_csv(self, f)


_UNITS = ("s", "ms", "us", "ns")


def _one(arr: pa.Array) -> str:
    """`` 'value'`` of a one-row column, for a message about that row; else ''."""
    if len(arr) != 1:
        return ""
    v = arr[0].as_py()
    return f" {v!r}" if isinstance(v, str) else f" {v}"


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t)


def _float_with_fraction(arr: pa.Array) -> bool:
    """Whether a float array bound for an integer column holds a finite value with a fraction,
    which DuckDB's cast rounds (1.5 became 2); NaN and the infinities are DuckDB's to refuse."""
    if not pa.types.is_floating(arr.type):
        return False
    fraction = pc.and_(pc.is_finite(arr), pc.not_equal(pc.floor(arr), arr))
    return bool(pc.any(pc.fill_null(fraction, False)).as_py())


def _rounded(arr: pa.Array, t: pa.DataType) -> bool:
    """Whether DuckDB's cast of ``arr`` to the column type ``t`` would round a value: a decimal,
    a double or decimal text with more digits after the point than the column's scale, or a
    timestamp (or a time) finer than the column's unit (TIMESTAMP_S, TIMESTAMP_MS; TIME). Text
    that is no number is DuckDB's to refuse, with its own message."""
    src = arr.type
    if pa.types.is_decimal(t) and pa.types.is_floating(src):
        # DuckDB's cast rounds a double to the scale (2.675 became 2.68, 1e-7 0.00): through
        # its shortest text, as the file reader converts one
        arr, src = arr.cast(pa.string()), pa.string()
    if pa.types.is_decimal(t) and (
        pa.types.is_decimal(src) or pa.types.is_string(src) or pa.types.is_large_string(src)
    ):
        try:
            arr.cast(t)
        except pa.ArrowInvalid as e:
            return "Rescaling" in str(e)
        return False
    if (
        pa.types.is_timestamp(src)
        and pa.types.is_timestamp(t)
        and _UNITS.index(t.unit) < _UNITS.index(src.unit)
    ):
        try:
            arr.cast(pa.timestamp(t.unit, src.tz))
        except pa.ArrowInvalid:
            return True
    if (
        pa.types.is_time(src)
        and pa.types.is_time(t)
        and _UNITS.index(t.unit) < _UNITS.index(src.unit)
    ):
        try:  # a TIME keeps microseconds: 10:00:00.123456789 became 10:00:00.123457
            arr.cast(t)
        except pa.ArrowInvalid:
            return True
    return False
