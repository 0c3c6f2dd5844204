"""The ``mysql`` connector (MySQL and MariaDB; DataX ``mysqlreader`` / ``mysqlwriter``).

Reader: each split is one streaming (unbuffered) SELECT, a server-side prepared statement where
it can be, whose rows are decoded into Arrow column by column (``_mysql_wire``,
``_mysql_decode``), so memory stays at one batch whatever the table's size.
``splitPk`` splits integer keys by value range and other keys (text, dates, decimals) by
quantiles compared in the column's own collation, plus one split for NULL keys;
``snapshot: true`` makes every split read one consistent snapshot.

Writer: ``LOAD DATA LOCAL INFILE`` fed from memory, inside ONE transaction committed only in
``commit()``; a batch that the server rejects or warns about is rolled back to a savepoint and
raised as a DirtyRecordError carrying the server's error number, so the engine bisects it.

Parameters and type mapping: docs/connectors/mysql.md.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pymysql
from pymysql import err as myerr

from tidesync.connections import connection
from tidesync.connectors import _mysql_decode as dec
from tidesync.connectors import _mysql_wire as wire
from tidesync.connectors import base
from tidesync.connectors._incremental import Cursor
from tidesync.connectors._sql import (
    DELETED,
    MYSQL,
    Binding,
    Source,
    TableInfo,
    bind,
    check_partition,
    check_table_modes,
    column_sql,
    expand_table,
    key_ranges,
    marker_flags,
    null_predicate,
    parse_jdbc_url,
    read_options,
    split_deleted,
    split_name,
    table_modes,
    write_options,
)
from tidesync.errors import (
    ConfigError,
    DirtyRecordError,
    FatalError,
    RetriableError,
    TidesyncError,
    did_you_mean,
    redact,
)

__all__ = ["Reader", "Writer", "Endpoint", "MySplit"]

log = logging.getLogger("tidesync.mysql")

D = MYSQL
DEFAULT_PORT = 3306
#: keys that name the database instead of (or besides) ``connection[].jdbcUrl``
CONNECTION_KEYS = ("datasource", "url", "username", "password")
_SCHEMES = ("mysql", "mariadb")


# -- connections -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """Where a database is and how to log in. The password never appears in ``repr``."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(default="", repr=False)
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def __str__(self) -> str:
        return f"mysql://{self.user}@{self.label}"


def _endpoint(url: str, user: str | None, password: str | None) -> Endpoint:
    """From ``jdbc:mysql://h:p/db``, ``mysql://u:pw@h/db`` or ``mariadb://...`` (ValueError)."""
    text = url.strip()
    if "://" in text and not text.lower().startswith("jdbc:"):
        text = "jdbc:" + text
    u = parse_jdbc_url(text)
    if u.scheme not in _SCHEMES:
        raise ValueError(
            f"{redact(url)!r} is not a MySQL URL; write jdbc:mysql://host:3306/database"
        )
    if not u.database:
        raise ValueError(
            f"{redact(url)!r} names no database; write jdbc:mysql://host:3306/database"
        )
    host = u.host.split(",")[0]
    return Endpoint(
        host,
        u.port or DEFAULT_PORT,
        u.database,
        user or u.user or "root",
        password if password is not None else u.password,
        u.options,
    )


def _from_datasource(settings: dict[str, Any], name: str) -> tuple[str, str | None, str | None]:
    """(url, user, password) of a named data source of kind mysql."""
    kind = str(settings.get("kind", "mysql")).lower()
    if kind not in ("mysql", "mariadb", "mysqlreader", "mysqlwriter"):
        raise ConfigError(f"connections.{name}: is a {kind!r} data source, not mysql")
    url = settings.get("url") or settings.get("jdbcUrl")
    if not url:
        host = settings.get("host")
        if not host:
            raise ConfigError(
                f"connections.{name}: needs url (mysql://host:3306/db) or host and database"
            )
        db = settings.get("database") or ""
        url = f"mysql://{host}:{settings.get('port', DEFAULT_PORT)}/{quote(str(db))}"
    user = settings.get("username") or settings.get("user")
    pw = settings.get("password")
    return str(url), (str(user) if user else None), (str(pw) if pw is not None else None)


def _with_url(params: dict[str, Any], ctx: base.Context) -> tuple[dict[str, Any], list[str]]:
    """The parameters as ``_sql.read_options`` expects them (``url`` holds the database when no
    ``connection``/``jdbcUrl`` is given), plus problems of the connection keys."""
    problems: list[str] = []
    out = dict(params)
    inline = any(params.get(k) not in (None, "", []) for k in ("connection", "jdbcUrl", "url"))
    ds = params.get("datasource")
    if ds not in (None, ""):
        if inline:
            problems.append(
                f"{ctx.path('datasource')}: give either datasource or connection/url, not both"
            )
        elif not isinstance(ds, str):
            problems.append(
                f"{ctx.path('datasource')}: must be the name of a connection, got {ds!r}"
            )
        else:
            try:
                url, user, pw = _from_datasource(
                    connection(ctx.connections, ds, ctx.path("datasource")), ds
                )
            except ConfigError as e:
                problems.extend(e.problems)
            else:
                out["url"] = url
                out.setdefault("username", user)
                if pw is not None:
                    out.setdefault("password", pw)
    elif not inline:
        problems.append(
            f"{ctx.path('connection')}: is required: write connection: [{{jdbcUrl: "
            "[jdbc:mysql://host:3306/db], table: [t]}], url: mysql://host:3306/db, or datasource: NAME"
        )
        out["url"] = "mysql://unset/unset"
    return out, problems


def connect(
    ep: Endpoint,
    *,
    where: str = "",
    session: Sequence[str] = (),
    autocommit: bool = True,
    local_infile: bool = False,
    ours: Sequence[str] = (),
) -> pymysql.Connection:
    """A PyMySQL connection (utf8mb4) with our session settings, then the user's ``session``."""
    mode = _ssl_mode(ep)
    try:
        con = pymysql.connect(
            host=ep.host,
            port=ep.port,
            user=ep.user,
            password=ep.password,
            database=ep.database,
            charset="utf8mb4",
            autocommit=autocommit,
            local_infile=local_infile,
            connect_timeout=_timeout(ep),
            ssl_disabled=mode != "required",
            ssl=_ssl_context() if mode == "required" else None,
            defer_connect=True,
        )
        if mode == "preferred" and pymysql.connections.SSL_ENABLED:
            # as PyMySQL does, but with one TLS context for all connections, made only when a
            # server offers TLS
            con.ssl, con._ssl_required, con.ctx = True, False, _LAZY_TLS
        con.connect()
    except myerr.MySQLError as e:
        raise translate(e, ep, where) from None
    try:
        with con.cursor() as cur:
            for sql in (*ours, *session):
                cur.execute(sql)
    except myerr.MySQLError as e:
        con.close()
        raise translate(e, ep, where, what="session") from None
    return con


_SSL: list[Any] = []
_SSL_LOCK = threading.Lock()


def _ssl_context() -> Any:
    """PyMySQL's default TLS context, made once: making one per connection costs ~60 ms."""
    with _SSL_LOCK:
        if not _SSL:
            _SSL.append(getattr(pymysql.connections.Connection(defer_connect=True), "ctx", None))
        return _SSL[0]


class _SharedTLS:
    """Stands in for PyMySQL's TLS context (``Connection.ctx``) under sslMode preferred. PyMySQL
    calls only ``wrap_socket``, and only when the server offers TLS, so the shared context is
    made then: connecting to a server without TLS makes none."""

    def wrap_socket(self, sock: Any, server_hostname: str | None = None) -> Any:
        return _ssl_context().wrap_socket(sock, server_hostname=server_hostname)


_LAZY_TLS = _SharedTLS()


def _timeout(ep: Endpoint) -> int:
    """``connectTimeout`` of the jdbc URL (milliseconds, as in JDBC) in seconds; 10 by default."""
    try:
        return max(1, int(_opt(ep, "connectTimeout", "10000")) // 1000)
    except ValueError:
        return 10


def _ssl_mode(ep: Endpoint) -> str:
    """TLS as the jdbc URL asks (``useSSL=false``, ``sslMode=REQUIRED``); preferred by default."""
    mode = _opt(ep, "sslMode", "").lower()
    if mode in ("disabled", "disable") or _opt(ep, "useSSL", "").lower() == "false":
        return "disabled"
    if (
        mode in ("required", "verify_ca", "verify_identity")
        or _opt(ep, "requireSSL", "").lower() == "true"
    ):
        return "required"
    return "preferred"


def _opt(ep: Endpoint, name: str, default: str) -> str:
    for k, v in ep.options:
        if k.lower() == name.lower():
            return v
    return default


# -- errors --------------------------------------------------------------------------------------

_LOGIN = {1045, 1044, 1698, 1251}  # access denied, auth plugin
_UNREACHABLE = {2003, 2005, 2002}
_RETRY = {1205, 1213, 2006, 2013, 1040, 1927, 1053, 4031}
_CONFIG = {
    1049: "database",
    1146: "table",
    1054: "column",
    1064: "SQL",
    1142: "privilege",
    1143: "privilege",
    1109: "table",
    1051: "table",
}
_DATA = {
    1048,
    1062,
    1406,
    1264,
    1265,
    1366,
    1292,
    1367,
    1452,
    1451,
    1216,
    1217,
    3819,
    4025,
    1690,
    1263,
    1364,
    1261,
    1262,
    3140,
    1411,
    1586,
    1859,
}


def errno_of(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_data_error(e: BaseException) -> bool:
    state = getattr(e, "sqlstate", None) or ""
    return errno_of(e) in _DATA or state[:2] in ("22", "23")


def translate(
    e: BaseException,
    ep: Endpoint,
    where: str = "",
    *,
    table: str = "",
    split: str = "",
    what: str = "",
) -> TidesyncError:
    """A driver error as tidesync's: errno kept, the place (host:port/db, table, split) added,
    secrets redacted. Never names the password."""
    if isinstance(e, TidesyncError):
        return e
    code = errno_of(e)
    msg = redact(str(e.args[1]) if len(getattr(e, "args", ())) > 1 else str(e))
    place = f"mysql {ep.host}:{ep.port}/{ep.database}"
    if table:
        place += f" table {table}"
    if split:
        place += f" split {split}"
    if what:
        place += f" ({what})"
    prefix = f"{where}: " if where else ""
    if code in _LOGIN:
        return FatalError(
            f"{prefix}cannot log in to {ep.host}:{ep.port} as {ep.user!r}: [{code}] {msg}; "
            "check username and password"
        )
    if code in _UNREACHABLE:
        return FatalError(f"{prefix}cannot reach MySQL at {ep.host}:{ep.port}: [{code}] {msg}")
    if code in _RETRY:
        return RetriableError(f"{prefix}{place}: [{code}] {msg}")
    if code in _CONFIG:
        return ConfigError(f"{prefix}{place}: [{code}] {msg}")
    return FatalError(
        f"{prefix}{place}: [{code}] {msg}" if code is not None else f"{prefix}{place}: {msg}"
    )


# -- reader ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MySplit(base.Split):
    """One SELECT of one database (plain data; the Reader holds the credentials)."""

    target: int = 0  # index into the reader's endpoints
    sql: str = ""
    source: int = 0  # index into the reader's sources


@dataclass
class _Src:
    source: Source
    target: int
    cursor: Cursor | None = None
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
        self._incremental = p.obj("incremental")
        if self._incremental is not None:
            Cursor.from_params(p, ctx, key="check")  # validates incremental.column
            if any(t.queries for t in self.options.targets):
                p.problem(
                    "incremental", "works with table, not querySql: put the condition in the query"
                )
        p.done()
        self._srcs: list[_Src] | None = None
        self._schema: pa.Schema | None = None
        self._pools: dict[int, queue.Queue[Any]] = {}

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
                    src = _Src(
                        Source(
                            self.endpoints[ti].label,
                            table,
                            key,
                            table=table,
                            select=select,
                            where=o.where,
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
                            src.source = Source(
                                src.source.database,
                                table,
                                key,
                                table=table,
                                select=select,
                                where=o.where,
                                split_pk=col["name"],
                            )
                            src.key_type = col["type"]
                            src.key_charset, src.key_collation = col["charset"], col["collation"]
                    if self._incremental is not None:
                        cc = self._incremental.get("column")
                        found = _find(str(cc), info)
                        if found is None:
                            problems.append(
                                f"{self.ctx.path('incremental.column')}: column {cc!r} not in "
                                f"table {table}{did_you_mean(str(cc), known)}"
                            )
                        elif select is not None and not any(
                            s == D.ident(found["name"]) or s == "*" for s in select
                        ):
                            problems.append(
                                f"{self.ctx.path('column')}: must include the incremental "
                                f"column {cc!r} (its largest value is what the next run starts after)"
                            )
                        else:
                            ep = self.endpoints[ti]
                            src.cursor = Cursor(
                                self.ctx,
                                f"mysql:{ep.host}:{ep.port}/{ep.database}/{table}",
                                str(cc),
                                self._incremental.get("start"),
                                self._incremental.get("end"),
                            )
                    out.append(src)
            finally:
                con.close()
        if problems:
            raise ConfigError(problems)
        self._srcs = out
        return out

    def _predicate(self, src: _Src, con: pymysql.Connection) -> str | None:
        """The incremental cursor's condition, its bounds written as literals."""
        if src.cursor is None:
            return None
        sql, args = src.cursor.predicate(D.ident, lambda name: f"%({name})s")
        return sql % {k: con.escape(v) for k, v in args.items()} if args else sql

    # -- schema ----------------------------------------------------------------------------
    def schema(self) -> pa.Schema:
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
        self.schema()
        per = max(1, -(-max(n, 1) // len(srcs)))
        if self.snapshot:
            self._open_snapshots(max(1, n))
        out: list[base.Split] = []
        for si, src in enumerate(srcs):
            s = src.source
            con, pooled = self._borrow(src.target)
            ok = False
            try:
                if s.query is not None:
                    parts: list[tuple[str, str | None]] = [("", None)]
                elif s.split_pk is None or per == 1:
                    parts = [("", self._predicate(src, con))]
                else:
                    parts = self._key_splits(src, con, per)
                ok = True
            except myerr.MySQLError as e:
                raise self._error(e, src, what="splits") from None
            finally:
                self._give_back(src.target, con, pooled, ok)
            for label, pred in parts:
                sql = s.query if s.query is not None else s.sql(D, pred)
                out.append(MySplit(len(out), f"{s.label} {label}".strip(), src.target, sql, si))
        return out

    def _key_splits(
        self, src: _Src, con: pymysql.Connection, n: int
    ) -> list[tuple[str, str | None]]:
        s = src.source
        pk = s.split_pk
        assert pk is not None and s.table is not None
        k, t = D.ident(pk), D.table(s.table)
        base_pred = self._predicate(src, con)
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

    # -- snapshot ----------------------------------------------------------------------------
    def _open_snapshots(self, n: int) -> None:
        """``n`` connections per database, each in a START TRANSACTION WITH CONSISTENT SNAPSHOT
        begun while the tables read are locked against writes (LOCK TABLES ... READ; FLUSH
        TABLES WITH READ LOCK for querySql), so every split sees the same committed state."""
        by_target: dict[int, list[_Src]] = {}
        for src in self.sources():
            by_target.setdefault(src.target, []).append(src)
        for ti, srcs in by_target.items():
            if ti in self._pools:
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
            self._pools[ti] = pool

    def _borrow(self, target: int) -> tuple[pymysql.Connection, bool]:
        pool = self._pools.get(target)
        if pool is None:
            return self._connect(target), False
        con = pool.get()
        if con is None:
            pool.put(None)
            raise FatalError(
                f"{self.ctx.path('snapshot')}: a snapshot connection was lost; "
                "the snapshot cannot be read again"
            )
        return con, True

    def _give_back(self, target: int, con: pymysql.Connection, pooled: bool, ok: bool) -> None:
        if not pooled:
            con.close()
            return
        if ok and con.open:
            self._pools[target].put(con)
        else:
            con.close()
            self._pools[target].put(None)

    # -- reading -----------------------------------------------------------------------------
    def read(self, split: base.Split) -> Iterator[pa.RecordBatch | base.Chunk]:
        assert isinstance(split, MySplit)
        src = self.sources()[split.source]
        schema = self.schema()
        con, pooled = self._borrow(split.target)
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
                            f"{self.ctx.path(src.source.key)}: split {split.label} gives "
                            f"{len(cols)} columns, the schema {len(schema)}"
                        )
                    continue
                d = dec.decode(cols, raw, schema)
                if src.cursor is not None:
                    src.cursor.observe(d.batch)
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
            raise self._error(e, src, split.label) from None
        finally:
            self._give_back(split.target, con, pooled, ok)

    def _error(self, e: BaseException, src: _Src, split: str = "", what: str = "") -> TidesyncError:
        s = src.source
        where = self.ctx.path(s.key)
        return translate(
            e, self.endpoints[src.target], where, table=s.table or "", split=split, what=what
        )

    def committed(self) -> None:
        for src in self._srcs or []:
            if src.cursor is not None:
                src.cursor.save()

    def close(self) -> None:
        pools, self._pools = self._pools, {}
        for pool in pools.values():
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


def _schema_table(con: pymysql.Connection, table: str) -> tuple[str, str]:
    parts = split_name(table)
    if len(parts) == 2:
        return parts[0], parts[1]
    with con.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        (db,) = cur.fetchone()
    return db, parts[-1]


def _columns_info(con: pymysql.Connection, table: str) -> list[dict[str, Any]] | None:
    db, name = _schema_table(con, table)
    with con.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, "
            "CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        rows = cur.fetchall()
    if not rows:
        return None
    return [
        {
            "name": r[0],
            "type": r[1].lower(),
            "column_type": r[2].lower(),
            "nullable": r[3] == "YES",
            "default": r[4],
            "extra": (r[5] or "").lower(),
            "charset": r[6],
            "collation": r[7],
        }
        for r in rows
    ]


def _tables(con: pymysql.Connection) -> list[str]:
    with con.cursor() as cur:
        cur.execute("SHOW TABLES")
        return [r[0] for r in cur.fetchall()]


def _find(name: str, info: list[dict[str, Any]]) -> dict[str, Any] | None:
    for c in info:
        if c["name"] == name:
            return c
    folded = [c for c in info if c["name"].lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


# -- writer ------------------------------------------------------------------------------------

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
