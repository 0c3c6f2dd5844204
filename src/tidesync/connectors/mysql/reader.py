"""The ``mysql`` reader (DataX ``mysqlreader``).

Each split is one streaming (unbuffered) SELECT, a server-side prepared statement where
it can be, whose rows are decoded into Arrow column by column (``wire``, ``decode``), so memory
stays at one batch whatever the table's size. ``splitPk`` splits integer keys by value range and
other keys (text, dates, decimals) by quantiles compared in the column's own collation, plus one
split for NULL keys; ``snapshot: true`` makes every split read one consistent snapshot.

A split carries everything its read needs (the SELECT, the schema, the endpoint's index), so a
reader built again from the same parameters reads it without planning. MySQL cannot export a
snapshot: the consistent-snapshot connections live in this process's registry under a snapshot
id the splits carry, and a process without them refuses to read outside the snapshot.

Parameters and type mapping: docs/connectors/mysql.md.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pymysql
from pymysql import err as myerr

from tidesync.connectors import base
from tidesync.connectors.mysql import decode as dec
from tidesync.connectors.mysql import wire
from tidesync.connectors.mysql.conn import (
    _RETRY,
    CONNECTION_KEYS,
    D,
    Endpoint,
    _columns_info,
    _endpoint,
    _find,
    _opt,
    _tables,
    _with_url,
    connect,
    errno_of,
    translate,
)
from tidesync.connectors.sql import (
    Source,
    column_sql,
    key_ranges,
    null_predicate,
    read_options,
)
from tidesync.connectors.sql.incremental import Cursor, Incremental
from tidesync.connectors.sql.reader import given_schema, select_cursor, source_cursor
from tidesync.errors import (
    ConfigError,
    FatalError,
    TidesyncError,
    did_you_mean,
)


@dataclass(frozen=True)
class MySplit(base.Split):
    """One SELECT of one database (plain data; the Reader holds the credentials)."""

    target: int = 0  # index into the reader's endpoints (its parameters list them)
    sql: str = ""
    key: str = ""  # key path of the table or querySql, for messages
    table: str = ""
    schema: pa.Schema | None = None
    snapshot: str | None = None  # id of this process's consistent-snapshot connections
    cursor: Cursor | None = None  # incremental: the window read and the position tracked


#: consistent-snapshot connections of this process, by snapshot id (see the module docstring)
_SNAPSHOTS: dict[str, queue.Queue[Any]] = {}
_SNAPSHOTS_LOCK = threading.Lock()


@dataclass
class _Src:
    source: Source
    target: int
    key_type: str = ""  # information_schema DATA_TYPE of splitPk
    key_charset: str | None = None
    key_collation: str | None = None


class Reader(base.Reader):
    kind = "mysql"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        fixed, problems = _with_url(params, ctx)
        self.p = base.Params(fixed, ctx, known_extra=CONNECTION_KEYS)
        p = self.p
        p.problems.extend(problems)
        self.options = read_options(p, fetch_size=ctx.batch_rows, database_key="url")
        user, password = p.str("username", aliases=("user",)), p.get("password")
        self.snapshot = p.bool("snapshot", False)
        self.tiny1_bool = p.bool("tinyInt1isBit", True)
        self.endpoints: list[Endpoint] = []
        for t in self.options.targets:
            ep = None
            for i, url in enumerate(t.urls):
                try:
                    ep = _endpoint(url, user, None if password is None else str(password))
                    break
                except ValueError as e:
                    key = f"{t.url_key}[{i}]" if len(t.urls) > 1 else t.url_key
                    p.problem(key, str(e))
            self.endpoints.append(ep or Endpoint("", 0, "", ""))
        self.incremental = Incremental.from_params(p)
        p.done()
        self._srcs: list[_Src] | None = None
        self._schema: pa.Schema | None = None
        self._snapshots: dict[int, str] = {}  # target -> snapshot id (in _SNAPSHOTS)

    # -- sources ---------------------------------------------------------------------------
    def _connect(self, target: int) -> pymysql.Connection:
        return connect(
            self.endpoints[target],
            where=self.ctx.path(self.options.targets[target].url_key),
            session=self.options.session,
            ours=_READ_SESSION,
        )

    def sources(self) -> list[_Src]:
        if self._srcs is not None:
            return self._srcs
        o = self.options
        out: list[_Src] = []
        problems: list[str] = []
        for ti, target in enumerate(o.targets):
            for i, q in enumerate(target.queries):
                out.append(
                    _Src(
                        Source(
                            self.endpoints[ti].label,
                            f"querySql[{i}]",
                            f"{target.query_key}[{i}]",
                            query=q.rstrip().rstrip(";"),
                        ),
                        ti,
                    )
                )
            if target.queries:
                continue
            con = self._connect(ti)
            try:
                for i, table in enumerate(target.tables):
                    key = f"{target.table_key}[{i}]"
                    info = _columns_info(con, table)
                    if info is None:
                        names = _tables(con)
                        problems.append(
                            f"{self.ctx.path(key)}: table {table!r} not found in database "
                            f"{self.endpoints[ti].database}{did_you_mean(table, names)}"
                        )
                        continue
                    known = [c["name"] for c in info]
                    select = None
                    if o.columns is not None:
                        items = []
                        for j, c in enumerate(o.columns):
                            try:
                                items.append(column_sql(D, c, known, table))
                            except ValueError as e:
                                problems.append(f"{self.ctx.path(f'{o.column_key}[{j}]')}: {e}")
                        select = tuple(items)
                    cursor_column, select, drop = select_cursor(
                        self.incremental, D, known, table, select, problems, self.ctx
                    )
                    src = _Src(
                        Source(
                            self.endpoints[ti].label,
                            table,
                            key,
                            table=table,
                            select=select,
                            where=o.where,
                            cursor_column=cursor_column,
                            cursor_drop=drop,
                        ),
                        ti,
                    )
                    if o.split_pk:
                        col = _find(o.split_pk, info)
                        if col is None:
                            problems.append(
                                f"{self.ctx.path('splitPk')}: column {o.split_pk!r} not in "
                                f"table {table}{did_you_mean(o.split_pk, known)}"
                            )
                        elif col["type"] not in _SPLIT_TYPES:
                            problems.append(
                                f"{self.ctx.path('splitPk')}: column {col['name']!r} of table {table} "
                                f"is {col['column_type']}; splitPk takes an integer, text, binary, "
                                "decimal, float or date/time column"
                            )
                        else:
                            src.source = replace(src.source, split_pk=col["name"])
                            src.key_type = col["type"]
                            src.key_charset, src.key_collation = col["charset"], col["collation"]
                    out.append(src)
            finally:
                con.close()
        if problems:
            raise ConfigError(problems)
        self._srcs = out
        return out

    # -- schema ----------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
        """What the reader gives: the columns read, less one read only for the cursor."""
        return given_schema(self.sources()[0].source, self._read_schema())

    def _read_schema(self) -> pa.Schema:
        """What each split's SELECT returns (the cursor column included)."""
        if self._schema is not None:
            return self._schema
        srcs = self.sources()
        schema: pa.Schema | None = None
        for src in srcs:
            s = src.source
            sql = (
                f"SELECT * FROM ({s.query}) AS ts_q LIMIT 0"
                if s.query is not None
                else s.sql(D, "1=0")
            )
            con = self._connect(src.target)
            try:
                cols = wire.metadata(con, sql)
            except myerr.MySQLError as e:
                if s.query is None or errno_of(e) in _RETRY:
                    raise self._error(e, src, what="schema") from None
                cols = self._query_columns(src)  # a query that cannot be a derived table
            finally:
                con.close()
            this = pa.schema([(c.name, dec.arrow_type(c, self.tiny1_bool)) for c in cols])
            if schema is None:
                schema = this
            elif this.names != schema.names or len(this) != len(schema):
                raise ConfigError(
                    f"{self.ctx.path(s.key)}: reads columns {this.names}, but "
                    f"{srcs[0].source.label} reads {schema.names}; every table "
                    "of one reader must give the same columns"
                )
        assert schema is not None
        self._schema = schema
        return schema

    def _query_columns(self, src: _Src) -> list[dec.Column]:
        """The columns of a querySql (duplicate names, say) from the start of its result; the
        connection is dropped, not drained."""
        con = self._connect(src.target)
        try:
            rows = wire.stream(con, src.source.query or "", 1, binary=False)
            return next(rows).columns
        except myerr.MySQLError as e:
            raise self._error(e, src, what="schema") from None
        finally:
            con.close()

    # -- splits ----------------------------------------------------------------------------
    def splits(self, n: int) -> list[base.Split]:
        srcs = self.sources()
        schema = self._read_schema()
        per = max(1, -(-max(n, 1) // len(srcs)))
        if self.snapshot:
            self._open_snapshots(max(1, n))
        out: list[base.Split] = []
        for src in srcs:
            s = src.source
            cursor = source_cursor(self.incremental, self.ctx, s, self._read_schema)
            snapshot = self._snapshots.get(src.target)
            con, pooled = self._borrow(src.target, snapshot)
            ok = False
            try:
                several = s.query is None and s.split_pk is not None and per > 1
                if cursor is not None and several and cursor.upper is None:
                    with con.cursor() as cur:
                        cur.execute(cursor.top_sql(D, s.sql(D, cursor.condition(D))))
                        cursor = cursor.capped(cur.fetchone()[0])
                window = cursor.condition(D) if cursor is not None else None
                if not several:
                    parts: list[tuple[str, str | None]] = [("", window)]
                else:
                    parts = self._key_splits(src, con, per, window)
                ok = True
            except myerr.MySQLError as e:
                raise self._error(e, src, what="splits") from None
            finally:
                self._give_back(snapshot, con, pooled, ok)
            for label, pred in parts:
                out.append(
                    MySplit(
                        len(out),
                        f"{s.label} {label}".strip(),
                        src.target,
                        s.sql(D, pred),
                        s.key,
                        s.table or "",
                        schema,
                        snapshot,
                        cursor,
                    )
                )
        return out

    def _key_splits(
        self, src: _Src, con: pymysql.Connection, n: int, base_pred: str | None
    ) -> list[tuple[str, str | None]]:
        s = src.source
        pk = s.split_pk
        assert pk is not None and s.table is not None
        k, t = D.ident(pk), D.table(s.table)
        conds = " AND ".join(f"({c})" for c in (s.where, base_pred) if c)
        where = f" WHERE {conds}" if conds else ""
        and_ = f"{where} AND" if conds else " WHERE"
        parts: list[tuple[str, str | None]] = []
        with con.cursor() as cur:
            if src.key_type in _INTEGER_TYPES:
                cur.execute(f"SELECT MIN({k}), MAX({k}) FROM {t}{where}")
                lo, hi = cur.fetchone()
                if lo is None:
                    parts = [("", base_pred)]
                else:
                    for r in key_ranges(int(lo), int(hi), n):
                        parts.append((f"{pk} in {r.label()}", _and(base_pred, r.sql(D, pk))))
            else:
                cur.execute(f"SELECT COUNT({k}) FROM {t}{where}")
                (count,) = cur.fetchone()
                bounds = self._quantiles(cur, src, t, k, and_, int(count), n) if count else []
                preds = [f"{k} < {bounds[0]}"] if bounds else []
                preds += [
                    f"{k} >= {a} AND {k} < {b}" for a, b in zip(bounds, bounds[1:], strict=False)
                ]
                preds += [f"{k} >= {bounds[-1]}"] if bounds else [f"{k} IS NOT NULL"]
                parts = [
                    (f"{pk} part {i + 1}/{len(preds)}", _and(base_pred, pr))
                    for i, pr in enumerate(preds)
                ]
            cur.execute(f"SELECT 1 FROM {t}{and_} {k} IS NULL LIMIT 1")
            if cur.fetchone() is not None and parts != [("", base_pred)]:
                parts.append((f"{pk} is null", _and(base_pred, null_predicate(D, pk))))
        return parts

    def _quantiles(
        self, cur: Any, src: _Src, t: str, k: str, and_: str, count: int, n: int
    ) -> list[str]:
        """Boundary literals that cut the non-NULL keys into about ``n`` equal parts. They are
        picked in ``ORDER BY key`` (the column's collation) and compared in that same collation,
        so values equal under it ('a', 'A', 'á' in a *_ci column) always fall on one side."""
        step = -(-count // n)
        if step >= count:
            return []
        textual = src.key_type in _TEXT_TYPES
        binary = src.key_type in _BINARY_TYPES
        pick = f"HEX({k})" if textual or binary else f"CAST({k} AS CHAR)"
        cur.execute(
            f"SELECT {pick} FROM (SELECT {k}, ROW_NUMBER() OVER (ORDER BY {k}) AS ts_rn FROM {t}"
            f"{and_} {k} IS NOT NULL) AS ts_q WHERE ts_rn > 1 AND MOD(ts_rn - 1, {step}) = 0 ORDER BY ts_rn"
        )
        out: list[str] = []
        for (v,) in cur.fetchall():
            if textual and src.key_charset and src.key_collation:
                lit = f"_{src.key_charset} X'{v}' COLLATE {src.key_collation}"
            elif textual or binary:
                lit = f"X'{v}'"
            else:
                lit = cur.connection.escape(v)
            if not out or out[-1] != lit:
                out.append(lit)
        return out

    @property
    def local_only(self) -> str | None:
        if not self.snapshot:
            return None
        return (
            "snapshot: true holds the consistent snapshot in this process (MySQL cannot hand "
            "it to another); set snapshot: false to read on workers"
        )

    # -- snapshot ----------------------------------------------------------------------------
    def _open_snapshots(self, n: int) -> None:
        """``n`` connections per database, each in a START TRANSACTION WITH CONSISTENT SNAPSHOT
        begun while the tables read are locked against writes (LOCK TABLES ... READ; FLUSH
        TABLES WITH READ LOCK for querySql), so every split sees the same committed state."""
        by_target: dict[int, list[_Src]] = {}
        for src in self.sources():
            by_target.setdefault(src.target, []).append(src)
        for ti, srcs in by_target.items():
            if ti in self._snapshots:
                continue
            lock_con = self._connect(ti)
            pool: queue.Queue[Any] = queue.Queue()
            try:
                with lock_con.cursor() as cur:
                    cur.execute("SET SESSION lock_wait_timeout = 60")  # fail, not hang
                    tables = sorted({D.table(s.source.table) for s in srcs if s.source.table})
                    if any(s.source.query is not None for s in srcs):
                        cur.execute("FLUSH TABLES WITH READ LOCK")
                    else:
                        cur.execute("LOCK TABLES " + ", ".join(f"{t} READ" for t in tables))
                    try:
                        for _ in range(n):
                            con = self._connect(ti)
                            with con.cursor() as c2:
                                c2.execute(
                                    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"
                                )
                                c2.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                            pool.put(con)
                    finally:
                        cur.execute("UNLOCK TABLES")
            except myerr.MySQLError as e:
                _close_pool(pool)
                raise translate(
                    e,
                    self.endpoints[ti],
                    self.ctx.path("snapshot"),
                    what=(
                        "snapshot: needs the LOCK TABLES privilege on the tables read, or RELOAD "
                        "for querySql"
                    ),
                ) from None
            finally:
                lock_con.close()
            sid = uuid.uuid4().hex
            with _SNAPSHOTS_LOCK:
                _SNAPSHOTS[sid] = pool
            self._snapshots[ti] = sid

    def _borrow(self, target: int, snapshot: str | None) -> tuple[pymysql.Connection, bool]:
        if snapshot is None:
            return self._connect(target), False
        with _SNAPSHOTS_LOCK:
            pool = _SNAPSHOTS.get(snapshot)
        if pool is None:
            raise FatalError(
                f"{self.ctx.path('snapshot')}: this process does not hold the consistent snapshot "
                "the split reads (MySQL cannot hand a snapshot to another process): run "
                "snapshot: true jobs on the local executor"
            )
        con = pool.get()
        if con is None:
            pool.put(None)
            raise FatalError(
                f"{self.ctx.path('snapshot')}: a snapshot connection was lost; "
                "the snapshot cannot be read again"
            )
        return con, True

    def _give_back(
        self, snapshot: str | None, con: pymysql.Connection, pooled: bool, ok: bool
    ) -> None:
        with _SNAPSHOTS_LOCK:
            pool = _SNAPSHOTS.get(snapshot or "") if pooled else None
        if pool is None:
            con.close()
            return
        if ok and con.open:
            pool.put(con)
        else:
            con.close()
            pool.put(None)

    # -- reading -----------------------------------------------------------------------------
    def read(self, split: base.Split) -> Iterator[pa.RecordBatch | base.Chunk]:
        assert isinstance(split, MySplit) and split.schema is not None
        rows = self._rows(split)
        return split.cursor.track(rows) if split.cursor is not None else rows

    def _rows(self, split: MySplit) -> Iterator[pa.RecordBatch | base.Chunk]:
        schema = split.schema
        assert schema is not None
        con, pooled = self._borrow(split.target, split.snapshot)
        ok = False
        row = 0
        try:
            ep = self.endpoints[split.target]
            binary = _opt(ep, "useServerPrepStmts", "true").lower() != "false"
            for rows in wire.stream(con, split.sql, self.options.fetch_size, binary=binary):
                cols, raw = rows.columns, rows.raw
                if not raw:
                    if cols and len(cols) != len(schema):
                        raise FatalError(
                            f"{self.ctx.path(split.key)}: split {split.label} gives "
                            f"{len(cols)} columns, the schema {len(schema)}"
                        )
                    continue
                d = dec.decode(cols, raw, schema)
                if d.bad:
                    dirty = [
                        base.Dirty(why, _raw_row(cols, raw, i), f"row {row + i}")
                        for i, why in d.bad
                    ]
                    yield base.Chunk(d.batch, dirty=dirty)
                else:
                    yield d.batch
                row += len(raw[0])
            ok = True
        except myerr.MySQLError as e:
            raise translate(
                e,
                self.endpoints[split.target],
                self.ctx.path(split.key),
                table=split.table,
                split=split.label,
            ) from None
        finally:
            self._give_back(split.snapshot, con, pooled, ok)

    def _error(self, e: BaseException, src: _Src, what: str) -> TidesyncError:
        s = src.source
        where = self.ctx.path(s.key)
        return translate(e, self.endpoints[src.target], where, table=s.table or "", what=what)

    def close(self) -> None:
        ids, self._snapshots = list(self._snapshots.values()), {}
        with _SNAPSHOTS_LOCK:
            pools = [p for p in (_SNAPSHOTS.pop(i, None) for i in ids) if p is not None]
        for pool in pools:
            _close_pool(pool)


_READ_SESSION = (
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION net_write_timeout = 3600",  # a slow consumer must not make the server hang up
)


_INTEGER_TYPES = {"tinyint", "smallint", "mediumint", "int", "integer", "bigint", "year"}


_TEXT_TYPES = {"char", "varchar", "tinytext", "text", "mediumtext", "longtext"}


_BINARY_TYPES = {"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"}


#: key types whose ORDER BY and comparisons agree (enum sorts by index but compares as text)
_SPLIT_TYPES = (
    _INTEGER_TYPES
    | _TEXT_TYPES
    | _BINARY_TYPES
    | {"decimal", "float", "double", "date", "datetime", "timestamp", "time"}
)


def _and(a: str | None, b: str | None) -> str | None:
    parts = [f"({x})" for x in (a, b) if x]
    return " AND ".join(parts) or None


def _close_pool(pool: queue.Queue[Any]) -> None:
    while True:
        try:
            con = pool.get_nowait()
        except queue.Empty:
            return
        if con is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                con.close()


def _raw_row(cols: list[dec.Column], raw: list[Any], i: int) -> dict[str, Any]:
    out = {}
    for c, r in zip(cols, raw, strict=True):
        a = r.array if isinstance(r, dec.Raw) else r
        try:
            v = a[i].as_py()
        except (OverflowError, ValueError):  # a date of year 0: Arrow holds it, Python cannot
            v = a.slice(i, 1).cast(pa.string())[0].as_py()
        out[c.name] = v.decode("utf-8", "replace") if isinstance(v, bytes) else v
    return out
