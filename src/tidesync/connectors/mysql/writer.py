"""The ``mysql`` writer (DataX ``mysqlwriter``).

``LOAD DATA LOCAL INFILE`` fed from memory, inside ONE transaction committed only in
``commit()``; a batch that the server rejects or warns about is rolled back to a savepoint and
raised as a DirtyRecordError carrying the server's error number, so the engine bisects it.

Parameters and type mapping: docs/connectors/mysql.md.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pymysql
from pymysql import err as myerr

from tidesync.connectors import base
from tidesync.connectors.mysql import wire
from tidesync.connectors.mysql.conn import (
    CONNECTION_KEYS,
    D,
    Endpoint,
    _columns_info,
    _endpoint,
    _find,
    _schema_table,
    _tables,
    _with_url,
    connect,
    errno_of,
    is_data_error,
    log,
    translate,
)
from tidesync.connectors.sql import (
    DELETED,
    Binding,
    TableInfo,
    bind,
    check_partition,
    check_table_modes,
    expand_table,
    marker_flags,
    split_deleted,
    table_modes,
    write_options,
)
from tidesync.errors import (
    ConfigError,
    DirtyRecordError,
    FatalError,
    did_you_mean,
    redact,
)

_WRITE_SESSION = (
    "SET SESSION sql_mode = CONCAT_WS(',', @@SESSION.sql_mode, 'STRICT_ALL_TABLES')",
    "SET SESSION time_zone = '+00:00'",
)


_UTF8 = ("utf8mb4", "utf8mb3", "utf8")


class _Sink(base.Sink):
    def __init__(self, w: Writer, split: base.Split):
        self.w = w
        self.split = split
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.w.write_batch(batch, self.split)
        self.rows += batch.num_rows

    def close(self) -> int:
        return self.rows

    def discard(self) -> int:
        # what this sink loaded lives in the writer's one transaction: abort() rolls it back
        return 0


class Writer(base.Writer):
    """Writes one table inside one transaction; sinks share the connection (a lock around
    each load), while the text encoding of batches runs in the tasks' threads."""

    kind = "mysql"
    modes = ("insert", "replace", "update", "truncate", "overwrite", "merge")
    publish = "transaction"
    serial = False

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        fixed, problems = _with_url(params, ctx)
        self.p = base.Params(fixed, ctx, known_extra=CONNECTION_KEYS)
        p = self.p
        p.problems.extend(problems)
        self.options = write_options(
            self,
            batch_size=65536,
            database_key="url",
            mode_aliases={"upsert": "update"},
        )
        self.partition, self.marker = table_modes(self)
        if "writeMode" not in params and self.partition:
            self.options.mode = "overwrite"
        check_table_modes(self, self.options.mode, self.partition, self.marker)
        user, password = p.str("username", aliases=("user",)), p.get("password")
        self.endpoint = Endpoint("", 0, "", "")
        for url in self.options.target.urls[:1]:
            try:
                self.endpoint = _endpoint(url, user, None if password is None else str(password))
            except ValueError as e:
                p.problem(self.options.target.url_key, str(e))
        p.done()
        self.mode = self.options.mode
        self.lock = threading.Lock()
        self.con: pymysql.Connection | None = None
        self.info: list[dict[str, Any]] = []
        self.binding: Binding | None = None
        self.table_sql = ""
        self.stage: str | None = None
        self._direct_replace = False
        self._load_sql = ""
        self._kinds: list[dict[str, Any]] = []
        self._parts: list[tuple[str, str]] = []  # partition levels by the table's column names
        self._added: list[tuple[str, str]] = []  # those the batches lack: written as constants
        self._drop_marker = False  # the table lacks the deleteMarker column: it is not written

    # -- setup -----------------------------------------------------------------------------
    @property
    def where(self) -> str:
        return self.ctx.path(self.options.target.url_key)

    def prepare(self, schema: pa.Schema | None) -> None:
        o = self.options
        self.con = connect(
            self.endpoint,
            where=self.where,
            session=o.session,
            autocommit=False,
            local_infile=True,
            ours=_WRITE_SESSION,
        )
        try:
            info = _columns_info(self.con, o.table)
            if info is None:
                names = _tables(self.con)
                raise ConfigError(
                    f"{self.ctx.path(o.target.table_key)}: table {o.table!r} not found in database "
                    f"{self.endpoint.database}{did_you_mean(o.table, names)}"
                )
            self.info = info
            self.table_sql = D.table(o.table)
            self._parts = self._partition_columns()
            if schema is not None:
                self._bind(schema.names)
            self.con.begin()
            with self.con.cursor() as cur:
                for i, sql in enumerate(o.pre_sql):
                    try:
                        cur.execute(expand_table(sql, self.table_sql))
                    except myerr.MySQLError as e:
                        raise translate(
                            e, self.endpoint, self.ctx.path(f"preSql[{i}]"), table=o.table
                        ) from None
                if self.mode == "truncate" or (self.mode == "overwrite" and not self._parts):
                    # an empty table needs no DELETE, which would cost InnoDB's bulk path for a
                    # first load into an empty table (no undo record per row)
                    cur.execute(f"SELECT 1 FROM {self.table_sql} LIMIT 1 FOR UPDATE")
                    if cur.fetchone() is not None:
                        cur.execute(f"DELETE FROM {self.table_sql}")
                elif self.mode == "overwrite":
                    # the partition's rows go in the job's transaction: a rollback restores them
                    where = " AND ".join(f"{D.ident(c)} = %s" for c, _ in self._parts)
                    cur.execute(
                        f"DELETE FROM {self.table_sql} WHERE {where}", [v for _, v in self._parts]
                    )
        except myerr.MySQLError as e:
            self._close()
            raise translate(e, self.endpoint, self.where, table=o.table) from None
        except BaseException:
            self._close()
            raise

    def _partition_columns(self) -> list[tuple[str, str]]:
        out = []
        for k, v in self.partition:
            found = _find(k, self.info)
            if found is None:
                cols = [c["name"] for c in self.info]
                raise ConfigError(
                    f"{self.ctx.path('partition')}: table {self.options.table} has no column "
                    f"{k!r}{did_you_mean(k, cols)}; its columns: {', '.join(cols)}"
                )
            out.append((found["name"], v))
        return out

    def _bind(self, names: Sequence[str]) -> None:
        """Map the incoming names (the deleteMarker column left out unless the table has it;
        the partition columns they lack added) onto the table."""
        o = self.options
        names = list(names)
        if self.marker is not None and _find(self.marker[0], self.info) is None:
            self._drop_marker = True
            names = [n for n in names if n != self.marker[0]]
        mapped = {(_find(c, self.info) or {}).get("name") for c in (o.columns or names)}
        self._added = [(c, v) for c, v in self._parts if c not in mapped]
        extra = [c for c, _ in self._added]
        o = replace(o, columns=None if o.columns is None else [*o.columns, *extra])
        names = [*names, *extra]
        unique = _unique_keys(self.con, o.table)
        pk = next((cols for name, cols in unique if name == "PRIMARY"), ())
        required = frozenset(
            c["name"]
            for c in self.info
            if not c["nullable"]
            and c["default"] is None
            and "auto_increment" not in c["extra"]
            and "generated" not in c["extra"]
        )
        table_info = TableInfo(
            tuple(c["name"] for c in self.info),
            required,
            tuple(pk),
            tuple(tuple(cols) for _, cols in unique),
        )
        b = bind(self.ctx, o, table_info, names)
        self.binding = b
        by_name = {c["name"]: c for c in self.info}
        self._kinds = [by_name[c] for c in b.columns]
        keys = set(b.keys)
        only_unique = [set(cols) for _, cols in unique]
        upsert = self.mode in ("replace", "merge")
        self._direct_replace = upsert and only_unique == [keys]
        needs_stage = self.mode == "update" or (upsert and not self._direct_replace)
        target = self.table_sql
        if needs_stage:
            self.stage = D.ident(f"ts_stage_{uuid.uuid4().hex[:12]}")
            cols = ", ".join(D.ident(c) for c in b.columns)
            assert self.con is not None
            with self.con.cursor() as cur:
                cur.execute(
                    f"CREATE TEMPORARY TABLE {self.stage} ENGINE=InnoDB "
                    f"SELECT {cols} FROM {self.table_sql} WHERE 1=0"
                )
            target = self.stage
        fields, sets = [], []
        for i, c in enumerate(self._kinds):
            name = D.ident(c["name"])
            if c["type"] == "bit":
                fields.append(f"@ts{i}")
                sets.append(f"{name} = CAST(@ts{i} AS UNSIGNED)")
            elif c["type"] == "json" or (c["charset"] and c["charset"] not in _UTF8):
                fields.append(f"@ts{i}")
                sets.append(f"{name} = CONVERT(@ts{i} USING utf8mb4)")
            else:
                fields.append(name)
        verb = "REPLACE " if self._direct_replace else ""
        self._load_sql = (
            f"LOAD DATA LOCAL INFILE 'tidesync.tsv' {verb}INTO TABLE {target} CHARACTER SET "
            f"binary ({', '.join(fields)}, @ts_end)" + (f" SET {', '.join(sets)}" if sets else "")
        )

    # -- writing -----------------------------------------------------------------------------
    def open(self, split: base.Split) -> base.Sink:
        return _Sink(self, split)

    def write_batch(self, batch: pa.RecordBatch, split: base.Split) -> None:
        if self.binding is None:
            with self.lock:
                if self.binding is None:
                    self._bind(batch.schema.names)
        b = self.binding
        assert b is not None
        batch = self._shape(batch)
        key_names = [batch.schema.names[b.columns.index(k)] for k in b.keys]
        gone: tuple[str, list[Any]] | None = None
        if self.marker is not None:
            batch, dead = split_deleted(batch, key_names)
            if dead.num_rows:
                gone = self._delete_sql(dead, key_names)
        elif (
            self.stage is not None and b.keys and (self.mode == "replace" or not b.conflict_target)
        ):
            batch = _last_per_key(batch, key_names)
        size = self.options.batch_size
        payloads = []
        for start in range(0, batch.num_rows, size):
            part = batch.slice(start, size)
            cols = [self._text(part.column(i), self._kinds[i]) for i in range(part.num_columns)]
            payloads.append((part.num_rows, wire.encode_tsv(cols)))
        with self.lock:
            self._load(payloads, split, gone)

    def _shape(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Check the partition columns the batch carries (a row with another value is dirty),
        add those it lacks as constants, and for deleteMarker a last boolean column."""
        b = self.binding
        assert b is not None
        flag = None
        if self.marker is not None:
            flag = marker_flags(self, batch, self.marker)
            if self._drop_marker:
                batch = batch.drop_columns([self.marker[0]])
        for c, v in self._parts:
            if c in b.columns[: batch.num_columns]:
                check_partition(batch.column(b.columns.index(c)), c, v)
        for c, v in self._added:
            batch = batch.append_column(c, pa.repeat(pa.scalar(v), batch.num_rows))
        if flag is not None:
            batch = batch.append_column(DELETED, flag)
        return batch

    def _delete_sql(self, dead: pa.RecordBatch, keys: list[str]) -> tuple[str, list[Any]]:
        """One DELETE of the keys whose last row carries the deleteMarker."""
        b = self.binding
        assert b is not None
        cols = ", ".join(D.ident(k) for k in b.keys)
        one = "(" + ", ".join("%s" for _ in keys) + ")"
        values = [v for row in dead.select(keys).to_pylist() for v in row.values()]
        sql = f"DELETE FROM {self.table_sql} WHERE ({cols}) IN ({', '.join([one] * dead.num_rows)})"
        return sql, values

    def _load(
        self,
        payloads: list[tuple[int, pa.Buffer]],
        split: base.Split,
        gone: tuple[str, list[Any]] | None = None,
    ) -> None:
        con = self.con
        if con is None:
            raise FatalError(f"{self.where}: the writer is not prepared (or already finished)")
        o = self.options
        try:
            with con.cursor() as cur:
                cur.execute("SAVEPOINT ts_batch")
                try:
                    if gone is not None:
                        cur.execute(*gone)
                    for rows, data in payloads:
                        affected, warnings = wire.load_local(con, self._load_sql, data)
                        if warnings:
                            cur.execute("SHOW WARNINGS")
                            bad = [w for w in cur.fetchall() if w[0] != "Note"]
                            if bad:
                                raise _Rejected(bad[0][2], bad[0][1])
                        if self.stage is None and not self._direct_replace and affected != rows:
                            raise _Rejected(
                                f"{rows - affected} of {rows} rows were not loaded", None
                            )
                    if self.stage is not None:
                        for sql in self._stage_sql():
                            cur.execute(sql)
                        cur.execute(f"DELETE FROM {self.stage}")
                except _Rejected as r:
                    cur.execute("ROLLBACK TO SAVEPOINT ts_batch")
                    raise DirtyRecordError(
                        r.reason, None if r.code is None else str(r.code)
                    ) from None
                except myerr.MySQLError as e:
                    if is_data_error(e) and con.open:
                        cur.execute("ROLLBACK TO SAVEPOINT ts_batch")
                        raise DirtyRecordError(redact(str(e.args[1])), str(errno_of(e))) from None
                    raise
        except myerr.MySQLError as e:
            raise translate(
                e, self.endpoint, self.where, table=o.table, split=split.label
            ) from None

    def _stage_sql(self) -> list[str]:
        b = self.binding
        assert b is not None and self.stage is not None
        t, s = self.table_sql, self.stage
        cols = [D.ident(c) for c in b.columns]
        keys = [D.ident(k) for k in b.keys]
        rest = [c for c, name in zip(cols, b.columns, strict=True) if name not in b.keys]
        col_list = ", ".join(cols)
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        if self.mode in ("replace", "merge"):
            return [
                f"DELETE t FROM {t} AS t JOIN {s} AS s ON {on}",
                f"INSERT INTO {t} ({col_list}) SELECT {col_list} FROM {s}",
            ]
        if b.conflict_target:
            sets = ", ".join(f"{c} = VALUES({c})" for c in rest) or f"{keys[0]} = {keys[0]}"
            return [
                f"INSERT INTO {t} ({col_list}) SELECT {col_list} FROM {s} ON DUPLICATE KEY UPDATE {sets}"
            ]
        out = []
        if rest:
            out.append(
                f"UPDATE {t} AS t JOIN {s} AS s ON {on} SET "
                + ", ".join(f"t.{c} = s.{c}" for c in rest)
            )
        out.append(
            f"INSERT INTO {t} ({col_list}) SELECT {', '.join('s.' + c for c in cols)} FROM {s} AS s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t} AS t WHERE {on})"
        )
        return out

    def _text(self, col: pa.Array, target: dict[str, Any]) -> pa.Array:
        """One column as LOAD DATA text (binary type), converted for the target column."""
        t = col.type
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
            t = col.type
        if pa.types.is_null(t):
            return pa.nulls(len(col), pa.binary())
        if (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_fixed_size_binary(t)
        ):
            if pa.types.is_fixed_size_binary(t):
                col = col.cast(pa.binary())
            out = wire.escape(col.cast(pa.binary()) if not pa.types.is_binary(col.type) else col)
            return out.cast(pa.binary())
        if pa.types.is_boolean(t):
            return col.cast(pa.int8()).cast(pa.string()).cast(pa.binary())
        if pa.types.is_timestamp(t):
            return self._timestamps(col, target).cast(pa.string()).cast(pa.binary())
        if (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_decimal(t)
            or pa.types.is_date(t)
            or pa.types.is_time(t)
        ):
            return col.cast(pa.string()).cast(pa.binary())
        if pa.types.is_duration(t):
            return pa.array(
                [None if v is None else _duration_text(v) for v in col.to_pylist()], pa.binary()
            )
        if pa.types.is_nested(t):
            import json

            return wire.escape(
                pa.array(
                    [
                        None if v is None else json.dumps(v, default=str, ensure_ascii=False)
                        for v in col.to_pylist()
                    ],
                    pa.string(),
                )
            ).cast(pa.binary())
        return col.cast(pa.string()).cast(pa.binary())

    def _timestamps(self, col: pa.Array, target: dict[str, Any]) -> pa.Array:
        unit = "us" if col.type.unit in ("ns", "us") else col.type.unit
        tz = col.type.tz
        utc_column = target["type"] == "timestamp"
        if tz is None and utc_column and self.ctx.timezone not in ("UTC", "Etc/UTC"):
            col = pc.assume_timezone(
                col, self.ctx.timezone, ambiguous="earliest", nonexistent="earliest"
            )
            tz = self.ctx.timezone
        if tz is not None:
            if not utc_column:  # wall clock of the job's time zone in a DATETIME
                col = pc.local_timestamp(col.cast(pa.timestamp(col.type.unit, self.ctx.timezone)))
            else:
                col = col.cast(
                    pa.timestamp(col.type.unit)
                )  # UTC; the session's time_zone is +00:00
        return col.cast(pa.timestamp(unit), safe=False)

    # -- publish -------------------------------------------------------------------------------
    def commit(self, results: list[Any]) -> None:
        con = self.con
        if con is None:
            raise FatalError(f"{self.where}: nothing to commit: the writer was not prepared")
        o = self.options
        with self.lock:
            try:
                with con.cursor() as cur:
                    for i, sql in enumerate(o.post_sql):
                        try:
                            cur.execute(expand_table(sql, self.table_sql))
                        except myerr.MySQLError as e:
                            raise translate(
                                e, self.endpoint, self.ctx.path(f"postSql[{i}]"), table=o.table
                            ) from None
                    if self.stage is not None:
                        cur.execute(f"DROP TEMPORARY TABLE IF EXISTS {self.stage}")
                con.commit()
            except myerr.MySQLError as e:
                self._rollback()
                raise translate(
                    e, self.endpoint, self.where, table=o.table, what="commit"
                ) from None
            except BaseException:
                self._rollback()
                raise
            finally:
                self._close()

    def abort(self, results: list[Any]) -> None:
        with self.lock:
            self._rollback()
            self._close()

    def _rollback(self) -> None:
        if self.con is not None and self.con.open:
            try:
                self.con.rollback()
            except myerr.MySQLError as e:
                log.warning("rollback of %s failed: %s", self.options.table, redact(str(e)))

    def _close(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                con.close()


class _Rejected(Exception):
    def __init__(self, reason: str, code: int | None):
        self.reason = reason
        self.code = code


def _unique_keys(con: pymysql.Connection | None, table: str) -> list[tuple[str, list[str]]]:
    assert con is not None
    db, name = _schema_table(con, table)
    with con.cursor() as cur:
        cur.execute(
            "SELECT INDEX_NAME, COLUMN_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s "
            "AND TABLE_NAME = %s AND NON_UNIQUE = 0 ORDER BY INDEX_NAME = 'PRIMARY' DESC, INDEX_NAME, "
            "SEQ_IN_INDEX",
            (db, name),
        )
        out: dict[str, list[str]] = {}
        for index, col in cur.fetchall():
            out.setdefault(index, []).append(col)
    return list(out.items())


def _last_per_key(batch: pa.RecordBatch, keys: list[str]) -> pa.RecordBatch:
    """Rows unique by ``keys``, the last of each kept (the order rows arrived in)."""
    idx = pa.array(range(batch.num_rows), pa.int64())
    t = pa.table(batch.select(keys)).append_column("ts_i", idx)
    last = (
        t.group_by(keys, use_threads=False)
        .aggregate([("ts_i", "max")])
        .column("ts_i_max")
        .combine_chunks()
    )
    if len(last) == batch.num_rows:
        return batch
    return batch.take(pc.take(last, pc.sort_indices(last)))  # the kept rows, in arrival order


def _duration_text(v: Any) -> str:
    total = v.total_seconds()
    sign = "-" if total < 0 else ""
    total = abs(total)
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{int(h):02d}:{int(m):02d}:{s:09.6f}"
