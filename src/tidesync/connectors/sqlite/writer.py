"""The SQLite writer: one connection and one transaction from ``prepare`` to ``commit``, a SAVEPOINT per batch."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors import base
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
    split_name,
    typed_value,
    write_options,
    write_statements,
)
from tidesync.connectors.sql.writer import check_integers_fit_floats
from tidesync.connectors.sqlite.conn import (
    _D,
    _table_info,
    arrow_type,
    declared_type,
    hex_text,
    translate,
)
from tidesync.connectors.sqlite.conn import error_code as _code
from tidesync.engine.dirty import beyond_calendar
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


_REAL_DIGITS = 15  # what SQLite keeps of a number it stores as a REAL
_INT64 = 1 << 63


def _check_digits(arr: pa.Array, name: str, where: str) -> None:
    """SQLite stores a number bound for a DECIMAL column (NUMERIC affinity) as an INTEGER when
    it is written as a whole number within 64 bits, else as a REAL, which keeps 15 significant
    digits: a value it would round is a dirty record (DirtyRecordError), not a quietly
    different number. Text that is not a plain number is left to SQLite (it keeps it as text)."""
    s = arr.cast(pa.string()) if pa.types.is_decimal(arr.type) else arr
    digits = pc.utf8_trim(pc.replace_substring_regex(s, r"^[+-]|\.|[eE].*$", ""), "0")
    many = pc.fill_null(pc.greater(pc.utf8_length(digits), _REAL_DIGITS), False)
    if not pc.any(many).as_py():
        return
    for v in pc.filter(s, many).to_pylist():
        try:
            d = Decimal(v)
        except ArithmeticError:
            continue  # not a number: SQLite keeps the text
        whole = "." not in v and "e" not in v.lower()  # SQLite reads "5.0" as a REAL
        if not d.is_finite() or (whole and -_INT64 <= d < _INT64):
            continue
        if len(d.normalize().as_tuple().digits) <= _REAL_DIGITS:
            continue
        one = f" {v}" if len(arr) == 1 else "s"
        raise DirtyRecordError(
            f"column {name}: value{one} has more significant digits than SQLite keeps in a "
            f"number column ({_REAL_DIGITS}: it stores a REAL); declare the column TEXT to keep "
            f"them exactly ({where})"
        )


def _dirty_or_fatal(e: BaseException, where: str) -> Exception:
    """SQLite's error, translated: a row's fault (constraint, type, range) or the table's."""
    data = isinstance(e, sqlite3.IntegrityError | sqlite3.DataError | OverflowError) or (
        isinstance(e, sqlite3.ProgrammingError | sqlite3.InterfaceError)
        and "bind" in str(e).lower()
    )
    if data:
        return DirtyRecordError(str(e), code=_code(e))
    return translate(e, where)


class Writer(SqlWriter):
    """Writes one SQLite table in one transaction (``BEGIN IMMEDIATE``), a SAVEPOINT per batch."""

    kind = "sqlite"
    dialect = _D
    serial = True

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        self.o = write_options(self, batch_size=ctx.batch_rows)
        self.settle_modes("writeMode" in params)
        self.path: Path | None = None
        if self.o.target.urls:
            try:
                self.path = database_path(self.o.target.urls[0], "sqlite", ctx)
            except ValueError as e:
                self.p.problem(self.o.target.url_key, str(e))
        self.p.done()
        self.con: sqlite3.Connection | None = None
        self.new_file = NewFile(("-journal", "-wal", "-shm"), _is_empty_sqlite)
        self._open: list[SqlSink] = []
        self._types: dict[str, pa.DataType | None] | None = None  # declared, read lazily
        self._reals: set[str] = set()  # ... and those of REAL affinity

    @property
    def location(self) -> str:
        return str(self.path)

    # the transaction -------------------------------------------------------------------------
    def connect(self) -> None:
        assert self.path is not None
        self.new_file.open(self.path)
        try:
            self.con = sqlite3.connect(
                str(self.path),
                isolation_level=None,
                check_same_thread=False,
                timeout=self.lock_timeout,
            )
            for s in self.o.session:
                self.con.execute(s)
        except sqlite3.Error as e:
            raise translate(e, self.where) from e

    def begin(self) -> None:
        """``BEGIN IMMEDIATE``: the database's write lock, held until the commit or rollback,
        so writers of one database file run one at a time. A busy database is waited for up
        to the busy timeout (``lockTimeout``, unless ``session`` sets ``busy_timeout``)."""
        con = self.con
        assert con is not None
        busy = int(con.execute("PRAGMA busy_timeout").fetchone()[0])
        con.execute("PRAGMA busy_timeout = 0")
        try:
            con.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.Error as e:
            if not (_code(e) or "").startswith("SQLITE_BUSY"):
                raise translate(e, self.where) from e
        finally:
            con.execute(f"PRAGMA busy_timeout = {busy}")
        self.waiting()
        t0 = time.monotonic()
        try:
            con.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            if (_code(e) or "").startswith("SQLITE_BUSY"):
                raise self.lock_timed_out(time.monotonic() - t0, str(e), _code(e)) from e
            raise translate(e, self.where) from e

    def execute(self, sql: str, params: Sequence[Any] = (), where: str = "") -> None:
        assert self.con is not None
        try:
            self.con.execute(sql, params)
        except sqlite3.Error as e:
            raise translate(e, self.ctx.path(where) if where else self.where) from e

    def _partition_value(self, column: str, text: str) -> pa.Scalar:
        """A partition value as the column's rows hold it: a DATE / DATETIME column of SQLite
        holds ISO text ('2016-11-14'), so ``ds=20161114`` is read as that date, not compared or
        stored as the number 20161114 (the column's NUMERIC affinity would make it one)."""
        t = self._declared().get(column)
        if t is not None and pa.types.is_temporal(t):
            typed = typed_value(text, t)
            if typed is not text:
                return pa.scalar(typed, t)
        return pa.scalar(text)

    def clear(self, parts: Sequence[tuple[str, str]]) -> None:
        values = [_py_column(pa.array([self._partition_value(c, v)]))[0] for c, v in parts]
        self.execute(f"DELETE FROM {self.table_sql}{partition_where(_D, parts)}", values)

    def partition_scalar(self, column: str, text: str) -> pa.Scalar:
        return self._partition_value(column, text)

    def inspect(self) -> TableInfo | None:
        self._types = None
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

    def create(self, schema: pa.Schema) -> None:
        self._types = None
        names = created_names(self.ctx, self.o, schema)
        cols = ", ".join(
            [f"{_D.ident(n)} {declared_type(f.type)}" for n, f in zip(names, schema, strict=True)]
            + [f"{_D.ident(k)} TEXT" for k, _ in self.partition if k not in names]
        )
        assert self.con is not None
        try:
            self.con.execute(f"CREATE TABLE {self.table_sql} ({cols})")
        except sqlite3.Error as e:
            raise translate(e, f"{self.where}: cannot create it") from e

    def _declared(self) -> dict[str, pa.DataType | None]:
        if self._types is None:
            assert self.con is not None
            info = _table_info(self.con, self.o.table)[1]
            self._types = {r[1]: arrow_type(r[2] or "") for r in info}
            self._reals = {
                r[1]
                for r in info
                if self._types[r[1]] == pa.float64()
                and not (r[2] or "").strip().upper().startswith(("DECIMAL", "NUMERIC", "NUMBER"))
            }
        return self._types

    def _real_affinity(self) -> set[str]:
        """The columns SQLite stores numbers in as REAL (8-byte floats): declared REAL, FLOAT,
        DOUBLE (a NUMERIC column keeps a whole number as an INTEGER)."""
        self._declared()
        return self._reals

    def _typed(self, batch: pa.RecordBatch, b: Binding) -> pa.RecordBatch:
        """The batch with values bound for a number column as numbers. SQLite keeps whatever a
        column is given (``'abc'`` in an INTEGER column, 1.5 in an INTEGER column as a REAL),
        where the other databases refuse it: such a value is a dirty record here too."""
        declared = self._declared()
        arrays = list(batch.columns)
        for i, name in enumerate(b.columns):
            if i >= len(arrays):
                break
            t, src = declared.get(name), arrays[i].type
            if pa.types.is_interval(src):  # Arrow has no text for it: it cannot be bound
                raise FatalError(
                    f"{self.where}: column {name} is an interval ({src}), which SQLite has no "
                    "type for; cast it to text or a number of seconds first (a transform)"
                )
            if beyond_calendar(arrays[i]):
                # bound as ISO text, such a value would be '<value out of range: N>' or
                # another year (DuckDB's infinity, a time of 24:00:00)
                what = (
                    "a time past 23:59:59.999999"
                    if pa.types.is_time(src)
                    else "a date/time outside the years 1 to 9999"
                )
                raise DirtyRecordError(
                    f"column {name}: {what}, which SQLite cannot hold as text ({self.where})"
                )
            text = pa.types.is_string(src) or pa.types.is_large_string(src)
            fraction = pa.types.is_floating(src) or pa.types.is_decimal(src)
            if t is not None and pa.types.is_timestamp(src):
                arrays[i] = self._in_zone(arrays[i], t, name)
                continue
            if pa.types.is_floating(src) and pc.any(pc.is_nan(arrays[i])).as_py():
                raise DirtyRecordError(
                    f"column {name}: NaN, which SQLite would store as NULL ({self.where})"
                )
            if t is not None and pa.types.is_decimal(t) and (text or pa.types.is_decimal(src)):
                _check_digits(arrays[i], name, self.where)
                continue
            if t is not None and pa.types.is_floating(t) and name in self._real_affinity():
                check_integers_fit_floats(arrays[i], t, name, self.where)
            if t is None or not (
                (pa.types.is_integer(t) and (text or fraction))
                or (pa.types.is_floating(t) and text)
            ):
                continue
            try:
                if pa.types.is_integer(t) and hex_text(arrays[i]):
                    raise pa.ArrowInvalid("hexadecimal text")  # Arrow's cast reads it as hex
                arrays[i] = pc.cast(arrays[i], t)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                kind = "an integer" if pa.types.is_integer(t) else "a number"
                one = f" {arrays[i][0].as_py()!r}" if batch.num_rows == 1 else ""
                raise DirtyRecordError(
                    f"column {name}: value{one} is not {kind}, as the column's declared type "
                    f"holds ({self.where})"
                ) from None
        return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)

    def _in_zone(self, arr: pa.Array, t: pa.DataType, name: str) -> pa.Array:
        """A timestamp bound for a date/time column, where instants and wall times meet in the
        job's zone (as in PostgreSQL and DuckDB): a naive time for a column with a zone is a
        wall time there (a time the clock skips or shows twice is a dirty record); an instant
        for a naive or DATE column is written as the wall time, or the day, it is there."""
        src = arr.type
        zone = self.ctx.timezone
        try:
            if pa.types.is_timestamp(t) and t.tz and not src.tz:
                return pc.assume_timezone(arr, zone)
            if src.tz and (pa.types.is_date(t) or (pa.types.is_timestamp(t) and not t.tz)):
                wall = pc.local_timestamp(arr.cast(pa.timestamp(src.unit, zone)))
                return wall.cast(pa.date32()) if pa.types.is_date(t) else wall
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            first = str(e).split("\n")[0]
            raise DirtyRecordError(f"column {name}: {first} ({self.where})") from None
        return arr

    def write_rows(self, batch: pa.RecordBatch, b: Binding, split: base.Split) -> None:
        assert self.con is not None
        batch = self._typed(batch, b)
        dead = None
        if DELETED in batch.schema.names:
            names = [n for n in batch.schema.names if n != DELETED]
            batch, dead = split_deleted(batch, [names[b.columns.index(k)] for k in b.keys])
        stmts = write_statements(
            _D,
            self.o.table,
            b.columns,
            mode=self.mode,
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

    def delete_absent(self, keys: pa.RecordBatch) -> None:
        """The keys into a TEMP table of the key columns' types, then one DELETE."""
        assert self.con is not None
        names = keys.schema.names
        seen = 'temp."tidesync_sync_keys"'
        cols = ", ".join(_D.ident(k) for k in names)
        self.execute(f"CREATE TEMP TABLE {seen} AS SELECT {cols} FROM {self.table_sql} WHERE 0")
        values = self._stored_keys(keys)
        marks = ", ".join("?" for _ in names)
        try:
            self.con.executemany(f"INSERT INTO {seen} VALUES ({marks})", zip(*values, strict=True))
        except sqlite3.Error as e:
            raise translate(e, self.where) from e
        self.execute(self.absent_sql(seen, names))
        self.execute(f"DROP TABLE {seen}")

    def _stored_keys(self, keys: pa.RecordBatch) -> list[list[Any]]:
        """The key columns as the writes bound them (``_in_zone``): a timestamp for a column of
        the other kind is the text of its instant or wall time in the job's zone, not the text
        of the value sent, which no stored key equals (a sync then deleted every row it wrote).
        A naive time the zone shows twice (or skips) gives both instants: its row, dirty at
        the write, keeps whichever its key has."""
        declared = self._declared()
        early, late = list(keys.columns), list(keys.columns)
        for i, name in enumerate(keys.schema.names):
            arr, t = keys.column(i), declared.get(name)
            if t is None or not pa.types.is_timestamp(arr.type):
                continue
            if pa.types.is_timestamp(t) and t.tz and not arr.type.tz:
                zone = self.ctx.timezone
                early[i], late[i] = (
                    pc.assume_timezone(arr, zone, ambiguous=a, nonexistent=a)
                    for a in ("earliest", "latest")
                )
            else:
                early[i] = late[i] = self._in_zone(arr, t, name)
        rows = [_py_column(c) for c in early]
        if any(a is not b for a, b in zip(early, late, strict=True)):
            differ = [_py_column(c) for c in late]
            if differ != rows:
                rows = [a + b for a, b in zip(rows, differ, strict=True)]
        return rows

    def commit_transaction(self) -> None:
        self.execute("COMMIT")
        self.new_file.keep()

    def rollback(self) -> None:
        if self.con is not None:
            try:
                if self.con.in_transaction:
                    self.con.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # closing the connection rolls back as well

    def close(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            con.close()
        # only a database this writer created and nobody has written into since
        self.new_file.drop()

    # sinks: a task that had the transaction to itself has its own SAVEPOINT, so a failed task
    # takes back just its rows; a failed task that shared it makes the commit refuse
    def sink_opened(self, sink: SqlSink) -> None:
        assert self.con is not None
        state = sink.state = _Savepoint()
        if self._open:
            for other in self._open:
                other.state.alone = False
        else:
            state.name = f"tidesync_sink_{sink.split.index}"
            self.con.execute(f'SAVEPOINT "{state.name}"')
        state.alone = bool(state.name)
        self._open.append(sink)

    def sink_closed(self, sink: SqlSink, discarded: bool) -> None:
        state = sink.state
        if discarded and sink.rows and not state.alone:
            self.poisoned = (
                f"task {sink.split.label!r} failed after writing {sink.rows} "
                "rows that cannot be told apart from other tasks' rows"
            )
        if sink in self._open:
            self._open.remove(sink)
        if self.con is None or not state.name or not self.con.in_transaction:
            return  # (no transaction: SQLite ended it itself, on a full disk or an I/O error)
        if discarded and state.alone:
            self.con.execute(f'ROLLBACK TO "{state.name}"')
        self.con.execute(f'RELEASE "{state.name}"')


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


@dataclass
class _Savepoint:
    """A sink's SAVEPOINT (none when it shared the transaction from the start), and whether
    the sink still has the transaction to itself."""

    name: str = ""
    alone: bool = False


def _is_empty_sqlite(path: Path) -> bool:
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=5)) as con:
            return con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    except sqlite3.Error:
        return False
