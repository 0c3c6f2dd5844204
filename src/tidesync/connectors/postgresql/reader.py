"""PostgreSQL reader and writer, at the speed of the server's bulk paths.

Reader: each split runs ``COPY (SELECT ...) TO STDOUT (FORMAT binary)``, read off the socket in
pieces and decoded into Arrow column by column with numpy (:mod:`wire`, :mod:`decode`), or through
ADBC's PostgreSQL driver where the connection is encrypted or a column is a numeric wider than
18 digits; both give the same batches, a bounded number of rows at a time. ``splitPk`` cuts a table into key ranges: integer keys
by value, other keys (text, uuid, dates, numeric) by quantiles of a sample that the server
computes in the very ordering the split conditions compare with (the column's own collation), so
no row is read twice or lost whatever that collation is (DataX cuts text keys by an ordering of
its own, and the server's collation then disagrees); rows with a NULL key get a split of their
own. Key ranges can use the column's index. ``snapshot: true`` has one
coordinating connection export a REPEATABLE READ snapshot that every split imports.

Writer (:mod:`tidesync.connectors.postgresql.writer`): one connection, one transaction for the whole job,
committed only in ``commit``. Each batch goes in by binary COPY (pgpq), straight into the target
or through a TEMP staging table and one ``INSERT ... SELECT`` (``ON CONFLICT ... DO UPDATE`` for
``replace``/``update``), inside a savepoint: a batch that fails on its data (SQLSTATE class 22 or
23) is rolled back to the savepoint and raised as DirtyRecordError, so the engine bisects it down
to the rows at fault while the others are written. ``overwrite`` deletes the named ``partition``
(``ds=${bizdate}``) in that transaction before the rows go in; ``merge`` upserts by key and
deletes the keys whose rows carry the ``deleteMarker``.

    {"name": "postgresqlreader", "parameter": {
        "username": "etl", "password": "${env:PG_PASSWORD}",
        "column": ["id", "name", "amount"], "splitPk": "id", "where": "ds = '${yyyymmdd}'",
        "connection": [{"jdbcUrl": ["jdbc:postgresql://127.0.0.1:5432/test"], "table": ["orders"]}]}}
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tidesync.compute import pc
from tidesync.connectors import base
from tidesync.connectors.postgresql import decode as dec
from tidesync.connectors.postgresql import direct, wire
from tidesync.connectors.postgresql.conn import (
    Endpoint,
    Table,
    connect,
    edge,
    endpoint_of,
    literal_text,
    psycopg_module,
    quote_ident,
    resolve_datasource,
    resolve_table,
    session_of,
    strings,
    translate,
)
from tidesync.connectors.postgresql.types import OutColumn, describe_types, read_plan, to_arrow
from tidesync.connectors.sql import POSTGRESQL, column_sql
from tidesync.connectors.sql.incremental import (
    Cursor,
    Incremental,
    is_aware,
    is_temporal,
    literal,
)
from tidesync.connectors.sql.reader import refuse_beside_query, refuse_twice, refuse_unused_top
from tidesync.errors import ConfigError, FatalError, RetriableError, did_you_mean, redact

__all__ = ["Reader", "PgSplit"]

INTEGER_OIDS = (20, 21, 23)
#: rows sampled (at least) to find quantile boundaries of a non-integer splitPk
SAMPLE_ROWS = 100_000
_MAX_IDENT = 63
#: read splits by binary COPY off the socket where the plan's types allow (see _copy); off,
#: every split reads through ADBC (tests compare the two)
COPY_OFF_SOCKET = True


def _adbc() -> Any:
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ModuleNotFoundError:
        raise ConfigError(
            "the postgresql reader needs adbc-driver-postgresql: pip install 'tidesync[postgresql]'"
        ) from None
    return adbc


def _literal(conn: Any, v: Any) -> str:
    from psycopg import sql

    return str(sql.Literal(v).as_string(conn))


# -- reader -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PgSplit(base.Split):
    """One query over one connection: a table's key range, a whole table or one querySql.

    Everything reading it needs travels with it (a reader built again from the same parameters
    reads it without planning): the query, the decoding plan, the server, the snapshot id."""

    source: int = 0  # which connection entry (the reader's parameters list them)
    sql: str = ""
    snapshot: str | None = None  # an exported snapshot id: SET TRANSACTION SNAPSHOT imports it
    endpoint: int = 0  # which of the entry's alternate servers the plan was made on
    table: str = ""  # the table or querySql read, for messages
    key: str = ""  # its key path, for messages
    cols: tuple[OutColumn, ...] = ()
    schema: pa.Schema | None = None
    cursor: Cursor | None = None  # incremental: the window read and the position tracked


@dataclass
class _Source:
    """One ``connection`` entry: its endpoints (alternates) and what to read there."""

    index: int
    endpoints: list[Endpoint]
    tables: list[str]
    queries: list[str]
    key: str  # key path of the entry, for messages
    conn: Any = None
    endpoint: Endpoint | None = None
    snapshot: str | None = None


@dataclass
class _Plan:
    """One table or querySql, planned: how to select it and what it gives."""

    source: int
    label: str
    key: str
    table: Table | None
    inner: str  # SELECT <items> FROM <table> (no WHERE) or the querySql
    conds: list[str]  # WHERE conditions on the table (or on q for querySql)
    cols: list[OutColumn]
    schema: pa.Schema
    cursor: Cursor | None = None  # incremental, this run's window
    cursor_ref: str = ""  # how the cursor's column is written in ``conds``

    def query(self, extra: list[str]) -> str:
        """The SELECT of one split: the plan's conditions and ``extra`` (a key range), inside the
        table's query or around the querySql; the outer select gives each column its Arrow form."""
        names = ", ".join(quote_ident(c.name) for c in self.cols)
        outer = ", ".join(c.sql for c in self.cols)
        conds = self.conds + extra
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        if self.table is not None:
            return f"SELECT {outer} FROM ({self.inner}{where}) AS q({names})"
        return f"SELECT {outer} FROM ({self.inner}) AS q({names}){where}"


#: numbers the prepared statements of :meth:`Reader._check_schedule_zone`
_PROBES = itertools.count()


class Reader(base.Reader):
    """``postgresql`` / ``postgresqlreader``: tables or queries as Arrow batches, in splits."""

    kind = "postgresql"
    #: every table and query gives the same columns (the capture reader, whose tables each
    #: keep their own, turns it off)
    one_schema = True

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.sources = self._sources()
        cols = p.list("column", ["*"]) or ["*"]
        self.columns = strings(
            p, "column", cols, "a column name, '*', a constant or an SQL expression"
        )
        self.where = p.str("where")
        queries = [s for s in self.sources if s.queries]
        refuse_beside_query(
            p,
            f"{queries[0].key + '.' if queries[0].key else ''}querySql[0]" if queries else None,
            self.where,
            self.columns,
        )
        self.split_pk = p.str("splitPk")
        self.fetch_size = p.int("fetchSize", minimum=1)
        self.session = session_of(p)
        self.snapshot = p.bool("snapshot")
        self.incremental = Incremental.from_params(p)
        p.done()
        self.plans: list[_Plan] = []
        self._planned = False
        self._lock = threading.RLock()
        self._adbc: dict[str, Any] = {}  # endpoint URI -> the connection each read clones

    @property
    def rows_per_batch(self) -> int:
        return int(self.fetch_size or self.ctx.batch_rows)

    def _sources(self) -> list[_Source]:
        p = self.p
        settings = resolve_datasource(p, self.ctx.connections)
        url_key = "url" if p.raw.get("url") else "jdbcUrl"
        url = p.str(url_key)
        conns = p.get("connection")
        top_tables = p.list("table", []) or []
        top_queries = p.list("querySql", []) or []
        entries: list[tuple[str, list[Endpoint], list[Any], list[Any]]] = []
        if conns is not None and (url is not None or p.raw.get("datasource")):
            # the database and tables read would be those of one of the two, a guess
            other = url_key if url is not None else "datasource"
            p.problem(
                "connection",
                f"is given beside {other}, and would not be read; keep one of them",
            )
        if settings is not None or p.raw.get("datasource"):
            if settings is not None:
                entries.append(
                    ("", endpoint_of(p, settings, [], "datasource"), top_tables, top_queries)
                )
        elif url is not None:
            entries.append(("", endpoint_of(p, None, [url], url_key), top_tables, top_queries))
        elif conns is not None:
            if not isinstance(conns, list) or not conns:
                conns = [conns]
            froms: tuple[list[str], list[str]] = ([], [])  # where each entry's tables come from
            for i, c in enumerate(conns):
                key = f"connection[{i}]"
                if not isinstance(c, dict):
                    p.problem(
                        key,
                        "must be an object such as {jdbcUrl: [jdbc:postgresql://host:5432/db], table: [t]}",
                    )
                    continue
                p.check_keys(c, key, ("jdbcUrl", "table", "querySql"))
                urls = c.get("jdbcUrl")
                if not urls:
                    p.problem(f"{key}.jdbcUrl", "is required: jdbc:postgresql://host:5432/db")
                    continue
                urls = urls if isinstance(urls, list) else [urls]
                eps = endpoint_of(p, None, urls, f"{key}.jdbcUrl")
                tables = c.get("table") or top_tables
                queries = c.get("querySql") or top_queries
                froms[0].append(f"{key}.table" if c.get("table") else "table")
                froms[1].append(f"{key}.querySql" if c.get("querySql") else "querySql")
                entries.append(
                    (
                        key,
                        eps,
                        tables if isinstance(tables, list) else [tables],
                        queries if isinstance(queries, list) else [queries],
                    )
                )
            refuse_unused_top(p, *froms, bool(top_tables), bool(top_queries))
        else:
            p.problem(
                "connection",
                "is required: [{jdbcUrl: [jdbc:postgresql://host:5432/db], table: [t]}] "
                "(or give datasource: NAME, or url: postgresql://host:5432/db)",
            )
        p.get("username", aliases=("user",))
        p.get("password")
        out = []
        for i, (key, eps, tables, queries) in enumerate(entries):
            pre = f"{key}." if key else ""
            ts = strings(p, f"{pre}table", tables, "a table name") if tables else []
            qs = strings(p, f"{pre}querySql", queries, "an SQL query") if queries else []
            if not ts and not qs:
                p.problem(f"{pre}table", "is required (or give querySql)")
            if eps:
                out.append(_Source(i, eps, [] if qs else ts, qs, key))
        refuse_twice(
            p,
            [
                (tuple(map(repr, src.endpoints)), f"{src.key + '.' if src.key else ''}{k}[{i}]", x)
                for src in out
                for k, xs in (("table", src.tables), ("querySql", src.queries))
                for i, x in enumerate(xs)
            ],
        )
        return out

    # -- planning (schema, splits) ------------------------------------------------------------

    def _conn(self, src: _Source) -> Any:
        if src.conn is None:
            src.conn, src.endpoint = connect(
                src.endpoints,
                self.session,
                self.ctx.timezone,
                autocommit=not self.snapshot,
                where=self.ctx.path("session"),
            )
            if self.snapshot:
                psycopg = psycopg_module()
                src.conn.commit()
                src.conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                src.conn.read_only = True
                with edge(src.endpoint):
                    src.snapshot = src.conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        return src.conn

    def _plan(self) -> None:
        with self._lock:
            if self._planned:
                return
            try:
                self._plan_all()
            except BaseException:
                self.close()
                self.plans.clear()
                raise
            finally:
                self._release()
            self._planned = True

    def _plan_all(self) -> None:
        for src in self.sources:
            conn = self._conn(src)
            assert src.endpoint is not None
            for i, name in enumerate(src.tables):
                pre = f"{src.key}." if src.key else ""
                key = f"{pre}table[{i}]" if len(src.tables) > 1 or src.key else "table"
                self.plans.append(self._plan_table(src, conn, name, self.ctx.path(key)))
            for i, q in enumerate(src.queries):
                pre = f"{src.key}." if src.key else ""
                self.plans.append(
                    self._plan_query(
                        src, conn, q.rstrip().rstrip(";"), self.ctx.path(f"{pre}querySql[{i}]")
                    )
                )
        if self.one_schema:
            self._check_one_schema()

    def _check_one_schema(self) -> None:
        """One reader gives one schema: a table with the same columns in another order was read
        by position (a's values under b's name), other types gave batches the writer was not
        prepared for."""
        first = self.plans[0] if self.plans else None
        for plan in self.plans[1:]:
            assert first is not None
            if plan.schema.names != first.schema.names:
                raise ConfigError(
                    f"{plan.key}: reads columns {plan.schema.names}, but {first.label} reads "
                    f"{first.schema.names}; every table of one reader must give the same "
                    "columns, in the same order (name them in column)"
                )
            theirs = {f.name: f.type for f in first.schema}
            diff = [
                f"{f.name} as {f.type} (not {theirs[f.name]})"
                for f in plan.schema
                if theirs[f.name] != f.type
            ]
            if diff:
                raise ConfigError(
                    f"{plan.key}: reads {', '.join(diff)} where {first.label} does; every "
                    "table of one reader must give the same column types (cast them in column)"
                )

    def _describe(
        self, conn: Any, ep: Endpoint, sql: str, where: str, labels: list[str] | None = None
    ) -> list[OutColumn]:
        """The columns ``sql`` gives: names (unnamed expressions named by their text from
        ``labels``, duplicates numbered) and the plan of each one's Arrow type."""
        with edge(ep, where=where), conn.transaction():
            cur = conn.execute(f"SELECT * FROM ({sql}) AS q LIMIT 0")
            desc = cur.description or []
            described = [(int(d.type_code), d.precision, d.scale) for d in desc]
            types = describe_types(conn, [d[0] for d in described])
        names = [d.name for d in desc]
        if labels is not None and len(labels) == len(names):
            names = [lab if n == "?column?" else n for n, lab in zip(names, labels, strict=True)]
        return read_plan(_unique(names), described, types)

    def _plan_table(self, src: _Source, conn: Any, name: str, key: str) -> _Plan:
        ep = src.endpoint
        assert ep is not None
        table = resolve_table(conn, name, ep, key)
        assert table is not None
        if self.split_pk and table.match(self.split_pk) is None:
            raise ConfigError(
                f"{self.ctx.path('splitPk')}: column {self.split_pk!r} not in table "
                f"{name}{did_you_mean(self.split_pk, table.columns)}"
            )
        items: list[str] = []
        labels: list[str] = []
        for i, c in enumerate(self.columns):
            if c == "*":
                items.extend(quote_ident(n) for n in table.columns)
                labels.extend(table.columns)
                continue
            try:
                item = column_sql(POSTGRESQL, c, known=list(table.columns), table=name)
            except ValueError as e:
                raise ConfigError(f"{self.ctx.path(f'column[{i}]')}: {e}") from None
            items.append(item)
            labels.append(c[:_MAX_IDENT])
        real, drop = None, False
        if self.incremental is not None:
            try:
                real = self.incremental.column_of(list(table.columns), f"table {name}")
            except ValueError as e:
                raise ConfigError(f"{self.ctx.path('incremental.column')}: {e}") from None
            if quote_ident(real) not in items:  # read for the cursor only
                items.append(quote_ident(real))
                labels.append(real)
                drop = True
        inner = f"SELECT {', '.join(items)} FROM {table.qualified}"
        cols = self._describe(conn, ep, inner, self.ctx.path("column"), labels)
        conds = []
        if self.where:
            with edge(ep, where=self.ctx.path("where")), conn.transaction():
                conn.execute(f"SELECT 1 FROM {table.qualified} WHERE ({self.where}) LIMIT 0")
            self._check_schedule_zone(
                conn, ep, f"SELECT 1 FROM {table.qualified} WHERE ({self.where})", "where"
            )
            conds.append(f"({self.where})")
        plan = _Plan(src.index, name, key, table, inner, conds, cols, _schema(cols))
        if real is not None:
            self._cursor(plan, cols[items.index(quote_ident(real))], quote_ident(real), drop)
        return plan

    def _plan_query(self, src: _Source, conn: Any, sql: str, key: str) -> _Plan:
        ep = src.endpoint
        assert ep is not None
        cols = self._describe(conn, ep, sql, key)
        self._check_schedule_zone(conn, ep, sql, key)
        names = [c.name for c in cols]
        plan = _Plan(src.index, key.rsplit(".", 1)[-1], key, None, sql, [], cols, _schema(cols))
        if self.incremental is not None:
            try:
                column = self.incremental.column_of(names, "the columns of the query")
            except ValueError as e:
                raise ConfigError(f"{self.ctx.path('incremental.column')}: {e}") from None
            self._cursor(plan, cols[names.index(column)], "q." + quote_ident(column), False)
        return plan

    def _check_schedule_zone(self, conn: Any, ep: Endpoint, sql: str, key: str) -> None:
        """Refuse a ``where`` or query whose times without an offset the server reads otherwise
        in the schedule's zone than in the session's (the job's ``timezone``). A scheduler node's
        ``$[yyyy-mm-dd hh24:mi:ss]`` is a wall time of its schedule's zone, while PostgreSQL reads
        ``ts >= '2016-11-15 00:00:00'`` on a ``timestamptz`` in the session's: a node on
        Asia/Shanghai with its job on UTC read the rows eight hours after the window it meant.

        The statement is prepared in the schedule's zone (the literals are read then) and its
        plan shown in the session's, beside the plan of the same statement read in the session's
        zone: they differ exactly where a literal became another instant. Literals on ``timestamp``,
        ``date`` or text columns, and times written with an offset, read alike in both."""
        zone = self.ctx.cyctime_zone
        if not zone:
            return
        where = self.ctx.path(key) if key == "where" else key
        shown = "EXPLAIN (VERBOSE, COSTS OFF) "
        with edge(ep, where=where), conn.transaction():
            session = conn.execute("SELECT current_setting('TimeZone')").fetchone()[0]
            if session == zone:
                return
            # a failure rolls the transaction back, the TimeZone with it
            probe = f"ts_zone_probe_{next(_PROBES)}"
            conn.execute("SELECT set_config('TimeZone', %s, false)", (zone,))
            conn.execute(f"PREPARE {probe} AS {sql}")
            conn.execute("SELECT set_config('TimeZone', %s, false)", (session,))
            there = conn.execute(f"{shown}EXECUTE {probe}").fetchall()
            conn.execute(f"DEALLOCATE {probe}")
            here = conn.execute(shown + sql).fetchall()
        if there != here:
            raise ConfigError(
                f"{where}: PostgreSQL reads its times without an offset in the job's timezone "
                f"{session}, but this run's scheduling values ($[...], ${{...}}) are wall times of "
                f"the schedule's zone {zone}, so they would name other instants; set "
                f"setting.timezone to {zone}, write such times with their offset, or use "
                "incremental (its bounds are converted)"
            )

    def _cursor(self, plan: _Plan, col: OutColumn, ref: str, drop: bool) -> None:
        assert self.incremental is not None
        plan.cursor = self.incremental.cursor(
            self.ctx,
            plan.label,
            col.name,
            drop=drop,
            temporal=is_temporal(col.type),
            aware=is_aware(col.type),
            dates=pa.types.is_date(col.type),
            text=pa.types.is_string(col.type) or pa.types.is_large_string(col.type),
        )
        plan.cursor_ref = ref
        window = plan.cursor.condition(POSTGRESQL, ref)
        if window:
            plan.conds = [*plan.conds, window]

    def schema(self) -> pa.Schema | None:
        self._plan()
        if not self.plans:
            return None
        plan = self.plans[0]
        return plan.cursor.output_schema(plan.schema) if plan.cursor else plan.schema

    def splits(self, n: int) -> list[base.Split]:
        self._plan()
        try:
            return self._splits(n)
        finally:
            self._release()

    def _splits(self, n: int) -> list[base.Split]:
        out: list[base.Split] = []
        for plan in self.plans:
            src = self.sources[plan.source]
            several = bool(self.split_pk and plan.table is not None and n > 1)
            if several and plan.cursor is not None and plan.cursor.upper is None:
                self._cap(src, plan)
            ranges = self._ranges(src, plan, n) if several else [("", [])]
            ep = src.endpoint or src.endpoints[0]
            for label, conds in ranges:
                text = f"{plan.label}{' ' + label if label else ''}"
                out.append(
                    PgSplit(
                        len(out),
                        text,
                        plan.source,
                        plan.query(conds),
                        src.snapshot,
                        src.endpoints.index(ep),
                        plan.label,
                        plan.key,
                        tuple(plan.cols),
                        plan.schema,
                        plan.cursor,
                    )
                )
        return out

    def _cap(self, src: _Source, plan: _Plan) -> None:
        """Bound the cursor by the largest value the table holds now, for every key range (see
        :meth:`Cursor.capped`)."""
        conn = self._conn(src)
        assert plan.cursor is not None and plan.table is not None and src.endpoint is not None
        where = (" WHERE " + " AND ".join(plan.conds)) if plan.conds else ""
        col = plan.cursor.compared(POSTGRESQL, plan.cursor_ref)
        with edge(src.endpoint, where=self.ctx.path("incremental")), conn.transaction():
            (top,) = conn.execute(
                f"SELECT max({col}) FROM {plan.table.qualified}{where}"
            ).fetchone()
        capped = plan.cursor.capped(top)
        if capped is not plan.cursor:
            plan.cursor = capped
            plan.conds = [*plan.conds, f"{col} <= {literal(POSTGRESQL, capped.upper)}"]

    def _ranges(self, src: _Source, plan: _Plan, n: int) -> list[tuple[str, list[str]]]:
        """Key ranges of a table that cover every row exactly once (NULL keys in their own)."""
        conn, ep, table = self._conn(src), src.endpoint, plan.table
        assert table is not None and ep is not None and self.split_pk is not None
        pk = table.match(self.split_pk)
        assert pk is not None  # checked when planned
        oid, notnull, _ = table.columns[pk]
        col = quote_ident(pk)
        conds = list(plan.conds)
        where = " AND ".join(conds) if conds else "TRUE"
        with edge(ep, table=plan.label, where=self.ctx.path("splitPk")):
            if oid in INTEGER_OIDS:
                lo, hi = conn.execute(
                    f"SELECT min({col}), max({col}) FROM {table.qualified} WHERE {where}"
                ).fetchone()
                bounds: list[Any] = [] if lo is None else _int_bounds(int(lo), int(hi), n)
                key, typed = col, [str(b) for b in bounds]
            else:
                # boundaries travel as text and are cast back; a constant takes the column's
                # collation in the comparison, the one percentile_disc ordered by
                key = col
                bounds = self._quantiles(conn, table, key, where, n)
                cast = conn.execute("SELECT format_type(%s, NULL)", (oid,)).fetchone()[0]
                typed = [f"{_literal(conn, b)}::{cast}" for b in bounds]
        out: list[tuple[str, list[str]]] = []
        edges: list[str | None] = [None, *typed, None]
        shown: list[str | None] = [None, *(str(b) for b in bounds), None]
        for i in range(len(edges) - 1):
            lo_s, hi_s = edges[i], edges[i + 1]
            cs = []
            if lo_s is not None:
                cs.append(f"{key} >= {lo_s}")
            if hi_s is not None:
                cs.append(f"{key} < {hi_s}")
            if not cs:
                cs.append(f"{col} IS NOT NULL")
            out.append((f"{pk} [{shown[i] or '-inf'}, {shown[i + 1] or '+inf'})", cs))
        if not notnull:
            out.append((f"{pk} IS NULL", [f"{col} IS NULL"]))
        return out

    def _quantiles(self, conn: Any, table: Table, key: str, where: str, n: int) -> list[str]:
        fractions = [i / n for i in range(1, n)]
        sample = ""
        if table.kind in ("r", "m") and table.rows > SAMPLE_ROWS * 2:
            pct = min(100.0, max(0.01, 100.0 * SAMPLE_ROWS / table.rows))
            sample = f" TABLESAMPLE SYSTEM ({pct:.4f}) REPEATABLE (0)"
        sql = (
            f"SELECT (percentile_disc(%s::float8[]) WITHIN GROUP (ORDER BY {key}))::text[] "
            f"FROM {table.qualified}{{sample}} WHERE {key} IS NOT NULL AND {where}"
        )
        row = conn.execute(sql.format(sample=sample), (fractions,)).fetchone()
        if (row is None or not row[0]) and sample:
            row = conn.execute(sql.format(sample=""), (fractions,)).fetchone()
        values = [v for v in (row[0] if row and row[0] else []) if v is not None]
        return [v for i, v in enumerate(values) if i == 0 or v != values[i - 1]]

    # -- reading ------------------------------------------------------------------------------

    def raw_forms(self) -> tuple[str, ...]:
        """Binary COPY as the server sends it (the direct path: postgresql/direct.py)."""
        return direct.raw_forms(self)

    def read_raw(self, split: base.Split, form: str) -> Iterator[base.Raw]:
        assert isinstance(split, PgSplit)
        return direct.read_raw(self, split, form)

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch | base.Chunk]:
        assert isinstance(split, PgSplit) and split.schema is not None
        rows = self._rows(split)
        return split.cursor.track(rows) if split.cursor is not None else rows

    def _rows(self, split: PgSplit) -> Iterator[pa.RecordBatch | base.Chunk]:
        assert split.schema is not None
        ep = self.sources[split.source].endpoints[split.endpoint]
        kinds = dec.kinds_of(list(split.cols)) if COPY_OFF_SOCKET else None
        batches = None
        if kinds is not None:
            batches = self._copy(split, ep, kinds)
        if batches is None:
            batches = self._via_adbc(split, ep)
        rows = self.rows_per_batch
        offset = 0
        for batch, bad in batches:
            dirty: list[base.Dirty] = []
            n = batch.num_rows
            inf = _infinite(batch)
            if bad is not None or inf:
                dirty = _non_finite(batch, bad, inf, offset)
                for m in [*inf.values(), *([bad] if bad is not None else [])]:
                    bad = m if bad is None else pc.or_(bad, m)
                assert bad is not None
                batch = batch.filter(pc.invert(bad))
            offset += n
            for start in range(0, max(batch.num_rows, 1), rows):
                piece = batch.slice(start, rows)
                if dirty:
                    yield base.Chunk(piece, dirty)
                    dirty = []
                elif piece.num_rows:
                    yield piece

    def _copy(
        self, split: PgSplit, ep: Endpoint, kinds: list[str]
    ) -> Iterator[tuple[pa.RecordBatch, pa.Array | None]] | None:
        """The split read by binary COPY off the socket (:mod:`wire`, :mod:`decode`), or None
        when the connection is encrypted (then ADBC reads it)."""
        kw = {"table": split.table, "split": split.label}
        conn, _ = connect(
            [ep],
            [*self.session, "SET client_encoding TO 'UTF8'"],
            self.ctx.timezone,
            autocommit=True,
            where=self.ctx.path("session"),
        )
        try:
            if not wire.usable(conn):
                conn.close()
                return None
            if split.snapshot:
                with edge(ep, where=self.ctx.path("session"), **kw):
                    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    conn.execute(f"SET TRANSACTION SNAPSHOT {literal_text(split.snapshot)}")
        except BaseException:
            conn.close()
            raise
        return self._copy_batches(split, ep, kinds, conn)

    def _copy_batches(
        self, split: PgSplit, ep: Endpoint, kinds: list[str], conn: Any
    ) -> Iterator[tuple[pa.RecordBatch, pa.Array | None]]:
        assert split.schema is not None
        cols = list(split.cols)
        try:
            for a, starts in wire.copy_out(conn, split.sql, len(cols)):
                try:
                    yield dec.decode(a, starts, kinds, cols, split.schema)
                except ValueError as e:
                    raise FatalError(
                        f"PostgreSQL at {ep.label}: {e} (table {split.table}, split {split.label})"
                    ) from e
        except (wire.ServerError, OSError) as e:
            raise translate(e, ep, where=split.key, table=split.table, split=split.label) from e
        finally:
            with contextlib.suppress(Exception):  # closing after a failure: the failure counts
                conn.close()

    def _via_adbc(
        self, split: PgSplit, ep: Endpoint
    ) -> Iterator[tuple[pa.RecordBatch, pa.Array | None]]:
        assert split.schema is not None
        kw = {"table": split.table, "split": split.label}
        try:
            con = self._adbc_base(ep).adbc_clone()  # in a transaction until closed
        except Exception as e:
            raise translate(e, ep, connecting=True, **kw) from e
        try:
            with edge(ep, where=self.ctx.path("session"), **kw):
                cur = con.cursor()
                for stmt in [f"SET TIME ZONE {literal_text(self.ctx.timezone)}", *self.session]:
                    cur.execute(stmt)
                if split.snapshot:
                    cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    cur.execute(f"SET TRANSACTION SNAPSHOT {literal_text(split.snapshot)}")
            with edge(ep, where=split.key, **kw):
                cur.execute(split.sql)
                for raw in _stream(cur, ep, f"table {split.table}, split {split.label}"):
                    yield to_arrow(raw, list(split.cols), split.schema)
        finally:
            with contextlib.suppress(Exception):  # closing after a failure: the failure counts
                con.close()

    def _adbc_base(self, ep: Endpoint) -> Any:
        """One ADBC connection per server, kept open while this reader lives: each split's
        connection is a clone of it, sharing the driver's database object (its type catalog is
        loaded once, not per split)."""
        uri = ep.uri()
        with self._lock:
            base_con = self._adbc.get(uri)
            if base_con is None:
                base_con = self._adbc[uri] = _adbc().connect(uri, autocommit=True)
            return base_con

    def _release(self) -> None:
        """Close the planning connections, unless they hold the snapshot every split reads."""
        if not self.snapshot:
            self._close_planning()

    def _close_planning(self) -> None:
        for src in self.sources:
            if src.conn is not None:
                try:
                    src.conn.close()
                finally:
                    src.conn = None

    def __del__(self) -> None:
        # a safety net for callers that never close(): the engine always does
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        try:
            self._close_planning()
        finally:
            with self._lock:
                cons, self._adbc = list(self._adbc.values()), {}
            for con in cons:
                with contextlib.suppress(Exception):
                    con.close()


def _stream(cur: Any, ep: Endpoint, place: str) -> Iterator[pa.RecordBatch]:
    """The result batches, with failures mid-stream raised as ADBC errors that keep the SQLSTATE.

    ``fetch_record_batch()`` hands out PyArrow's bare reader, whose errors are OSErrors without
    the SQLSTATE (apache/arrow-adbc#1523); the cursor's own reader wraps it and keeps it. Should
    that reader be missing, an OSError still says whether the server refused (an ``ERROR:``) or
    the connection broke.
    """
    results = getattr(cur, "_results", None)
    reader = getattr(results, "reader", None)
    if reader is None:
        reader = cur.fetch_record_batch()
    try:
        yield from reader
    except OSError as e:
        msg = redact(" ".join(str(e).split()))
        if "ERROR:" in msg:
            raise FatalError(f"PostgreSQL at {ep.label}: {msg} ({place})") from e
        raise RetriableError(f"connection to PostgreSQL lost at {ep.label}: {msg} ({place})") from e


def _schema(cols: list[OutColumn]) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type) for c in cols])


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            cand = f"{n}_{seen[n]}"
            while cand in seen:
                seen[n] += 1
                cand = f"{n}_{seen[n]}"
            seen[cand] = 1
            out.append(cand)
        else:
            seen[n] = 1
            out.append(n)
    return out


def _int_bounds(lo: int, hi: int, n: int) -> list[int]:
    """Inner boundaries cutting [lo, hi] into at most n ranges of equal width."""
    width = hi - lo + 1
    n = max(1, min(n, width))
    step = -(-width // n)
    return [lo + i * step for i in range(1, n) if lo + i * step <= hi]


def _wrap(v: int, bits: int) -> int:
    half = 1 << (bits - 1)
    return (v + half) % (1 << bits) - half


#: PostgreSQL's ``infinity`` and ``-infinity`` as both decoders leave them in a date32 or a
#: timestamp[us] column: the server's sentinels (the int32/int64 maximum and minimum) moved by
#: the 2000-01-01 epoch with wrapping. No real date or time is near them (PostgreSQL's range
#: starts in 4713 BC), and Arrow has no infinity: such a value would be written as garbage.
#: A ``time`` of ``24:00:00`` (PostgreSQL allows it, the end of a day) is one microsecond past
#: Arrow's last time of day: a file writer would print it as ``<value out of range: ...>``.
_INFINITY = {
    "date": [_wrap((1 << 31) - 1 + 10957, 32), _wrap(-(1 << 31) + 10957, 32)],
    "timestamp": [
        _wrap((1 << 63) - 1 + 946_684_800_000_000, 64),
        _wrap(-(1 << 63) + 946_684_800_000_000, 64),
    ],
    "time": [86_400_000_000],
}
#: the same as Arrow value sets, made from buffers: pa.array on Python values imports pandas,
#: a quarter second of start-up that a PostgreSQL -> Parquet run has no other use for
_INFINITY_SET = {
    kind: pa.Array.from_buffers(
        t, len(_INFINITY[kind]), [None, pa.py_buffer(np.array(_INFINITY[kind], dtype))]
    )
    for kind, t, dtype in [
        ("date", pa.int32(), np.int32),
        ("timestamp", pa.int64(), np.int64),
        ("time", pa.int64(), np.int64),
    ]
}
_OUT_OF_RANGE = {
    "date": "PostgreSQL's infinity has no date/time form",
    "timestamp": "PostgreSQL's infinity has no date/time form",
    "time": "24:00:00 has no form outside PostgreSQL (Arrow and Parquet times end at 23:59:59.999999)",
}


def _kind(t: pa.DataType) -> str | None:
    if pa.types.is_date32(t):
        return "date"
    if pa.types.is_timestamp(t) and t.unit == "us":
        return "timestamp"
    if pa.types.is_time64(t) and t.unit == "us":
        return "time"
    return None


def _infinite(batch: pa.RecordBatch) -> dict[str, pa.Array]:
    """Column name -> mask of its rows holding ``infinity``/``-infinity``, or a time of
    ``24:00:00`` (only columns that hold one)."""
    found = {}
    for name, col in zip(batch.schema.names, batch.columns, strict=True):
        kind = _kind(col.type)
        if kind is None:
            continue
        storage = col.view(pa.int32() if kind == "date" else pa.int64())
        # no null in the set: a null row gives false, never null
        m = pc.is_in(storage, value_set=_INFINITY_SET[kind], skip_nulls=True)
        if pc.any(m).as_py():
            found[name] = m
    return found


def _non_finite(
    batch: pa.RecordBatch, nan: pa.Array | None, inf: dict[str, pa.Array], offset: int
) -> list[base.Dirty]:
    """Dirty records of the rows holding a value Arrow cannot: a numeric NaN or Infinity (NULL
    in ``batch``, marked in ``nan``), a date or timestamp ``infinity`` or a time ``24:00:00``
    (marked per column)."""
    from tidesync.engine.dirty import row_of

    reasons: dict[int, list[str]] = {}
    if nan is not None:
        for i in pc.indices_nonzero(nan).to_pylist():
            reasons.setdefault(i, []).append("numeric value NaN or Infinity has no decimal form")
    kinds = {name: _kind(batch.column(name).type) or "" for name in inf}
    for name, m in inf.items():
        for i in pc.indices_nonzero(m).to_pylist():
            reasons.setdefault(i, []).append(
                f"column {name}: {_OUT_OF_RANGE[kinds[name]]}; read it as text "
                f"({name}::text in querySql) or leave such rows out with where"
            )
    dirty = []
    for i in sorted(reasons):
        row = row_of(batch, i)
        for name, m in inf.items():
            if m[i].as_py():
                kind = kinds[name]
                if kind == "time":
                    continue  # row_of shows it as the clock reads it
                col = batch.column(name)
                raw = col.view(pa.int32() if kind == "date" else pa.int64())[i].as_py()
                row[name] = "infinity" if raw == _INFINITY[kind][0] else "-infinity"
        dirty.append(base.Dirty("; ".join(reasons[i]), row, f"row {offset + i}"))
    return dirty
