"""The PostgreSQL writer (kind ``postgresql``; ``postgresqlwriter``): one transaction per job.

The transaction skeleton is :class:`tidesync.connectors.sql.SqlWriter`'s; this module fills in
its verbs:

    prepare   connect; preSql; find the target (or create it from the reader's schema, in the
              transaction); truncate mode: DELETE FROM (or TRUNCATE with fastTruncate);
              overwrite mode: DELETE the rows of the named ``partition`` (the whole table
              without one)
    write     per batch, inside a SAVEPOINT: binary COPY (pgpq) of the batch
                - straight into the target when every column's Arrow type has the binary form of
                  the column's type (insert / truncate), or
                - into a TEMP staging table, then one INSERT ... SELECT into the target with casts
                  in SQL (ON CONFLICT DO UPDATE for replace / update / merge; UPDATE + INSERT, or
                  DELETE + INSERT, when no unique index matches the key; merge also DELETEs the
                  keys whose last row carries the ``deleteMarker``)
              a failure of SQLSTATE class 22 (data) or 23 (constraint) rolls back to the savepoint
              and raises DirtyRecordError(code=SQLSTATE): the engine bisects the batch, the rows
              at fault become dirty records, the others are written
    commit    postSql, then COMMIT: everything appears at once
    abort     ROLLBACK: the target is exactly as it was

All sinks share the connection, so the writer is ``serial``: the engine runs their writes one at
a time while readers run in parallel.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import pyarrow as pa

from tidesync.compute import pc
from tidesync.connectors import base
from tidesync.connectors.partition import partition_value
from tidesync.connectors.postgresql import direct
from tidesync.connectors.postgresql.conn import (
    Endpoint,
    Table,
    connect,
    edge,
    endpoint_of,
    psycopg_module,
    quote_ident,
    resolve_datasource,
    resolve_table,
    session_of,
    sqlstate,
    strings,
    translate,
)
from tidesync.connectors.postgresql.types import (
    NUMERIC,
    TEXT,
    TypeInfo,
    ddl_type,
    describe_types,
    direct_type,
    for_copy,
    insert_expr,
    kept_digits,
    unbounded,
)
from tidesync.connectors.sql import (
    KEYED,
    POSTGRESQL,
    Binding,
    SqlWriter,
    TableInfo,
    Target,
    WriteOptions,
    split_name,
)
from tidesync.connectors.sql.writer import (
    check_doubles_fit_floats,
    check_integers_fit_floats,
    check_text_wall_times,
    text_instants_as_wall_times,
    wall_times_as_instants,
)
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, redact

__all__ = ["Writer"]

log = logging.getLogger("tidesync.postgresql")

_TIMESTAMP, _TIMESTAMPTZ, _INTERVAL = 1114, 1184, 1186  # pg_type oids
_FLOATS = {700: pa.float32(), 701: pa.float64()}  # real, double precision

#: SQLSTATE classes of errors that belong to the rows of a batch (data exception, constraint)
ROW_ERRORS = ("22", "23")


@dataclass
class _Column:
    """A column of the target table."""

    name: str
    oid: int
    info: TypeInfo
    type_name: str  # with its modifier: numeric(10,2), bit(3)
    identity: str  # '' | 'a' (always) | 'd' (by default)
    generated: bool
    collation: str = ""  # the column's collation, quoted ('"default"', '"C"'); '' if none
    #: the type's equality, qualified when not in pg_catalog (citext's ``=`` is in the schema
    #: the extension went to; outside the search_path, ``=`` would compare the values as text)
    eq: str = "="
    typmod: int = -1  # atttypmod: numeric(p,s)'s precision and scale, a timestamp's digits

    @property
    def kept(self) -> int | None:
        """The digits after the point the column keeps, rounding the rest (:func:`kept_digits`)."""
        if self.info.base:  # a domain: its base type's modifier
            return kept_digits(self.info.base, self.info.base_typmod)
        return kept_digits(self.oid, self.typmod)

    @property
    def interval_mod(self) -> int:
        """An ``interval`` column's modifier (its fields and fractional-second digits; through a
        domain, its base type's); -1 when unconstrained or not an interval."""
        if self.info.base == _INTERVAL:
            return self.info.base_typmod
        return self.typmod if self.oid == _INTERVAL else -1


@dataclass
class _Plan:
    """How batches of one schema are written: binary COPY straight into the target (``casts``
    gives each column's Arrow type for it), or into staging table ``stage``, then ``statements``."""

    schema: pa.Schema  # what the binary COPY encoder is made for (a new encoder per COPY)
    copy_sql: str
    written: list[str]  # the target column of each column the batch carries
    casts: list[tuple[pa.DataType, bool]] | None = None
    stage: str = ""
    statements: tuple[str, ...] = ()
    #: per ``interval`` column with fields or digits: (query of a staged value the column
    #: would change, with what it would become; the column)
    checks: tuple[tuple[str, _Column], ...] = ()


def _encoder(schema: pa.Schema) -> Any:
    """A binary COPY encoder for batches of ``schema`` (one per COPY: it writes the header)."""
    try:
        from pgpq import ArrowToPostgresBinaryEncoder
    except ModuleNotFoundError:
        raise ConfigError(
            "the postgresql writer needs pgpq: pip install 'tidesync[postgresql]'"
        ) from None
    return ArrowToPostgresBinaryEncoder(schema)


class Writer(SqlWriter):
    """``postgresql`` / ``postgresqlwriter``: one transaction, binary COPY."""

    kind = "postgresql"
    dialect = POSTGRESQL
    serial = True

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.endpoints, table_name, table_key = self._target()
        columns = strings(p, "column", p.list("column", ["*"]) or ["*"], "a column name or '*'")
        mode = self.write_mode({"append": "insert", "copy": "insert"})
        keys = p.list("primaryKey", []) or []
        self.o = WriteOptions(
            target=Target(urls=[], url_key="", tables=[table_name], table_key=table_key),
            table=table_name,
            columns=[c for c in columns if c != "*"] or None,
            mode=mode,
            primary_key=strings(p, "primaryKey", keys, "a column name") if keys else None,
            pre_sql=self._statements("preSql"),
            post_sql=self._statements("postSql"),
            batch_size=p.int("batchSize", 65536, minimum=1),
            session=session_of(p),
        )
        self.settle_modes("writeMode" in params)
        self.fast_truncate = p.bool("fastTruncate")
        p.done()
        self.conn: Any = None
        self.endpoint: Endpoint | None = None
        self.table: Table | None = None
        self.target: dict[str, _Column] = {}
        self.plans: dict[pa.Schema, _Plan] = {}
        self.raw_binding: Binding | None = None  # the direct path's columns (raw_form)

    def _statements(self, key: str) -> list[str]:
        raw = self.p.list(key, []) or []
        out = strings(self.p, key, raw, "an SQL statement") if raw else []
        for i, sql in enumerate(out):
            word = _ends_transaction(sql)
            if word:
                self.p.problem(
                    f"{key}[{i}]",
                    f"{sql!r}: {word} ends or changes the writer's transaction, so a failed run "
                    "could not take back what it did (the job is one transaction: leave it out)",
                )
        return out

    def _target(self) -> tuple[list[Endpoint], str, str]:
        p = self.p
        settings = resolve_datasource(p, self.ctx.connections)
        url_key = "url" if p.raw.get("url") else "jdbcUrl"
        url = p.str(url_key)
        tables = p.list("table", []) or []
        table_key = "table"
        eps: list[Endpoint] = []
        if settings is not None or p.raw.get("datasource"):
            eps = endpoint_of(p, settings, [], "datasource") if settings is not None else []
        elif url is not None:
            eps = endpoint_of(p, None, [url], url_key)
        else:
            conns = p.get("connection")
            c = conns[0] if isinstance(conns, list) and conns else conns
            if conns is None:
                p.problem(
                    "connection",
                    "is required: [{jdbcUrl: jdbc:postgresql://host:5432/db, table: [t]}] "
                    "(or give datasource: NAME, or url: postgresql://host:5432/db)",
                )
            elif isinstance(conns, list) and len(conns) > 1:
                p.problem(
                    "connection", f"a writer writes one database; got {len(conns)} connections"
                )
            elif not isinstance(c, dict) or not c.get("jdbcUrl"):
                p.problem("connection[0].jdbcUrl", "is required: jdbc:postgresql://host:5432/db")
            else:
                p.check_keys(c, "connection[0]", ("jdbcUrl", "table"))
                urls = c["jdbcUrl"] if isinstance(c["jdbcUrl"], list) else [c["jdbcUrl"]]
                eps = endpoint_of(p, None, urls, "connection[0].jdbcUrl")
                if c.get("table"):
                    own = c["table"] if isinstance(c["table"], list) else [c["table"]]
                    if tables and tables != own:  # which one is written would be a guess
                        p.problem(
                            "table",
                            f"{tables!r} differs from connection[0].table ({own!r}); a writer "
                            "writes one table: keep one",
                        )
                    tables, table_key = own, "connection[0].table"
        names = strings(p, table_key, tables, "a table name") if tables else []
        if not tables:
            p.problem(table_key, "is required: name the table to write")
        elif len(names) > 1:
            p.problem(table_key, f"a writer writes one table; got {names}")
        return eps, (names[0] if names else ""), table_key

    @property
    def table_sql(self) -> str:
        if self.table is not None:
            return self.table.qualified
        return ".".join(quote_ident(x) for x in split_name(self.o.table, '"'))

    @property
    def location(self) -> str:
        return self.endpoint.label if self.endpoint is not None else ""

    def target_location(self) -> str:
        return self.endpoints[0].label if self.endpoints else ""

    # -- the transaction ----------------------------------------------------------------------
    def connect(self) -> None:
        self.conn, self.endpoint = connect(
            self.endpoints,
            ["SET idle_in_transaction_session_timeout = 0", *self.o.session],
            self.ctx.timezone,
            autocommit=False,
            where=self.ctx.path("session"),
        )

    def begin(self) -> None:
        """The connection is not in autocommit: its first statement opens the transaction."""

    def execute(self, sql: str, params: Sequence[Any] = (), where: str = "") -> None:
        assert self.endpoint is not None
        with edge(self.endpoint, table=self.o.table, where=self.ctx.path(where) if where else ""):
            self.conn.execute(sql, list(params) or None)

    def lock_target(self) -> None:
        """Transaction advisory locks keyed by the table (as the catalog names it, or as it
        would be created) and the partition: shared on the table by appends and partition
        overwrites, exclusive by the rest; exclusive on the partition by its overwrite."""
        ep, conn = self.endpoint, self.conn
        assert ep is not None
        where = self.ctx.path(self.o.target.table_key)
        table = resolve_table(conn, self.o.table, ep, where, missing_ok=True)
        with edge(ep, table=self.o.table, where=where):
            if table is not None:
                name = table.qualified
            else:  # where CREATE TABLE will put it
                parts = split_name(self.o.table, '"')
                row = conn.execute(
                    "SELECT quote_ident(coalesce(%s, current_schema())) || '.' || quote_ident(%s)",
                    (parts[-2] if len(parts) > 1 else None, parts[-1]),
                ).fetchone()
                name = row[0]
        whole, partition = self.lock_scope()
        self._advisory(f"tidesync {name}", shared=not whole)
        if partition:
            levels = "/".join(f"{k}={v}" for k, v in partition)
            self._advisory(f"tidesync {name} {levels}", shared=False)

    def _advisory(self, key: str, shared: bool) -> None:
        ep, conn = self.endpoint, self.conn
        assert ep is not None
        fn = "pg_advisory_xact_lock" + ("_shared" if shared else "")
        with edge(ep, table=self.o.table):
            try_fn = fn.replace("pg_", "pg_try_", 1)
            if conn.execute(f"SELECT {try_fn}(hashtextextended(%s, 0))", (key,)).fetchone()[0]:
                return
            self.waiting()
            t0 = time.monotonic()
            if not self.lock_timeout:
                raise self.lock_timed_out(0.0)
            before = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (f"{self.lock_timeout}s",))
            try:
                conn.execute(f"SELECT {fn}(hashtextextended(%s, 0))", (key,))
            except psycopg_module().Error as e:
                if sqlstate(e) == "55P03":  # lock_not_available
                    raise self.lock_timed_out(time.monotonic() - t0, code="55P03") from None
                raise
            conn.execute("SELECT set_config('lock_timeout', %s, true)", (before,))

    def missing(self) -> None:
        """A missing target is created in every mode (``primaryKey`` becomes its key)."""

    def clear(self, parts: Sequence[tuple[str, str]]) -> None:
        if self.mode == "truncate" and self.fast_truncate:
            self.execute(f"TRUNCATE {self.table_sql}")
        else:
            super().clear(parts)

    def inspect(self) -> TableInfo | None:
        ep, conn = self.endpoint, self.conn
        assert ep is not None
        self.table = resolve_table(
            conn, self.o.table, ep, self.ctx.path(self.o.target.table_key), missing_ok=True
        )
        if self.table is None:
            return None
        oid = self.table.oid
        with edge(ep, table=self.o.table):
            rows = conn.execute(
                "SELECT attname, atttypid, attidentity, attgenerated <> '', format_type(atttypid, atttypmod), "
                "CASE WHEN attcollation <> 0 THEN (SELECT quote_ident(n.nspname) || '.' || "
                "quote_ident(c.collname) FROM pg_collation c JOIN pg_namespace n ON n.oid = "
                "c.collnamespace WHERE c.oid = attcollation) END, "
                "(SELECT 'OPERATOR(' || quote_ident(n.nspname) || '.=)' FROM pg_operator o JOIN "
                "pg_namespace n ON n.oid = o.oprnamespace WHERE o.oprname = '=' AND o.oprleft = "
                "atttypid AND o.oprright = atttypid AND n.nspname <> 'pg_catalog' LIMIT 1), "
                "atttypmod FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (oid,),
            ).fetchall()
            types = describe_types(conn, [int(r[1]) for r in rows])
            self.target = {
                r[0]: _Column(
                    r[0],
                    int(r[1]),
                    types[int(r[1])],
                    r[4],
                    r[2] or "",
                    bool(r[3]),
                    r[5] or "",
                    r[6] or "=",
                    int(r[7]),
                )
                for r in rows
            }
            # every unique index on plain columns, the primary key first, each column list in
            # the index's order
            unique = conn.execute(
                "SELECT i.indisprimary, array_agg(a.attname ORDER BY k.n) FROM pg_index i "
                "CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
                "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                "WHERE i.indrelid = %s AND i.indisunique AND i.indpred IS NULL "
                "AND i.indexprs IS NULL GROUP BY i.indexrelid, i.indisprimary "
                "ORDER BY i.indisprimary DESC, i.indexrelid",
                (oid,),
            ).fetchall()
        pk = next((tuple(cols) for primary, cols in unique if primary), ())
        return TableInfo(tuple(self.target), frozenset(), pk, tuple(tuple(c) for _, c in unique))

    def create(self, schema: pa.Schema) -> None:
        """Create the missing target from the data's schema, in the job's transaction (an abort
        takes it back); ``primaryKey`` becomes its primary key."""
        listed = self.o.columns or []
        names = listed if len(listed) == len(schema) else schema.names
        cols = [
            f"{quote_ident(n)} {ddl_type(f.type)}{'' if f.nullable else ' NOT NULL'}"
            for n, f in zip(names, schema, strict=True)
        ]
        # a new table gets the partition columns as text, as a lake table does
        cols += [f"{quote_ident(k)} text" for k, _ in self.partition if k not in names]
        if self.o.primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in self.o.primary_key)})")
        self.execute(
            f"CREATE TABLE {self.table_sql} ({', '.join(cols)})", where=self.o.target.table_key
        )

    def partition_scalar(self, column: str, text: str) -> pa.Scalar:
        """The partition's value typed for the binary COPY where the column takes it (bigint,
        date, text), else text the staging path casts in SQL."""
        t = next(
            (
                t
                for t in (pa.int64(), pa.date32(), pa.string())
                if direct_type(t, self.target[column].info) is not None
            ),
            pa.string(),
        )
        try:
            return pa.scalar(partition_value(text, t), t)
        except (ValueError, pa.ArrowInvalid) as e:
            raise ConfigError(
                f"{self.ctx.path('partition')}: {column}={text} does not fit column {column} "
                f"({self.target[column].type_name}): {e}"
            ) from None

    def commit_transaction(self) -> None:
        assert self.endpoint is not None
        with edge(self.endpoint, table=self.o.table):
            self.conn.commit()

    def rollback(self) -> None:
        conn = self.conn
        if conn is None:
            return
        try:
            if not (conn.broken or conn.closed):
                conn.rollback()
        except psycopg_module().OperationalError:
            # the connection died under us: the server rolled the transaction back itself
            if not (conn.broken or conn.closed):
                raise

    def close(self) -> None:
        conn, self.conn = self.conn, None
        self.plans.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # noqa: BLE001 - the transaction is already settled
                log.warning("closing the connection failed: %s", redact(str(e)))

    # -- the direct path (postgresql/direct.py) ---------------------------------------------------
    def raw_form(self, reader: base.Reader, schema: pa.Schema | None) -> str | None:
        """Binary COPY straight from another PostgreSQL when the columns' types match."""
        self.raw_refusal = direct.refusal(self, reader, schema)
        return None if self.raw_refusal else direct.FORM

    def open(self, split: base.Split) -> direct.DirectSink:
        with self.lock:
            if not self.live:
                raise FatalError(f"{self.where}: open() before prepare()")
            sink = direct.DirectSink(self, split)
            self.sink_opened(sink)
            return sink

    # -- writing ------------------------------------------------------------------------------
    def _plan(self, schema: pa.Schema, zoned: list[bool], b: Binding) -> _Plan:
        written = list(b.columns)
        plan = self.plans.get(schema)
        if plan is not None:
            return plan
        assert self.table is not None and self.endpoint is not None
        direct = [
            direct_type(f.type, self.target[c].info) for f, c in zip(schema, written, strict=False)
        ]
        if (
            self.mode in ("insert", "truncate", "overwrite")
            and len(written) == len(schema)
            and all(d is not None for d in direct)
        ):
            casts = [d for d in direct if d is not None]
            target = pa.schema(
                [pa.field(f.name, t) for f, (t, _) in zip(schema, casts, strict=True)]
            )
            cols = ", ".join(quote_ident(c) for c in written)
            plan = _Plan(
                target,
                f"COPY {self.table.qualified} ({cols}) FROM STDIN (FORMAT binary)",
                written,
                casts,
            )
        else:
            plan = self._staged(schema, zoned, b)
        self.plans[schema] = plan
        return plan

    def _staged(self, schema: pa.Schema, zoned: list[bool], b: Binding) -> _Plan:
        written = list(b.columns)
        assert self.table is not None and self.endpoint is not None
        conn, t = self.conn, self.table.qualified
        stage = f"ts_stage_{len(self.plans)}"
        upsert = self.mode in KEYED
        exprs, ncols = self._stage_table(stage, schema, zoned, written, seq=upsert)
        names = [quote_ident(c) for c in written]
        col_list = ", ".join(names)
        override = (
            " OVERRIDING SYSTEM VALUE"
            if any(self.target[c].identity == "a" for c in written)
            else ""
        )
        if not upsert:
            statements: tuple[str, ...] = (
                f"INSERT INTO {t} ({col_list}){override} SELECT {', '.join(exprs)} FROM {stage} s",
            )
        else:
            # keys in the target's type and collation, for DISTINCT ON and every match
            exprs = [
                self._compared(e, c) if c in b.keys else e
                for e, c in zip(exprs, written, strict=True)
            ]
            keys = [exprs[written.index(k)] for k in b.keys]
            picked = ", ".join(f"{e} AS {n}" for e, n in zip(exprs, names, strict=True))
            if self.marker is not None:
                picked += f", s.c{len(written)} AS _ts_del"
            # the last row of each key wins, as if the rows were applied one by one
            last = (
                f"SELECT DISTINCT ON ({', '.join(keys)}) {picked} FROM {stage} s "
                f"ORDER BY {', '.join(keys)}, s._ts_seq DESC"
            )
            if self.marker is None:
                source = f"({last}) AS n"
                statements = self._upsert(t, b, col_list, override, source)
            else:
                source = f"(SELECT * FROM ({last}) AS d WHERE NOT d._ts_del) AS n"
                gone = f"(SELECT * FROM ({last}) AS d WHERE d._ts_del) AS n"
                match = self._match(t, "n", b.keys)
                statements = (
                    f"DELETE FROM {t} USING {gone} WHERE {match}",
                    *self._upsert(t, b, col_list, override, source),
                )
        copy = (
            f"COPY {stage} ({', '.join(f'c{i}' for i in range(ncols))}) FROM STDIN (FORMAT binary)"
        )
        checks = tuple(self._interval_checks(stage, exprs, written))
        # EXPLAIN checks the types and the conflict key before a row moves
        with (
            edge(self.endpoint, table=self.o.table, where=self.ctx.path("column")),
            conn.transaction(),
        ):
            for sql in statements:
                conn.execute("EXPLAIN " + sql)
        return _Plan(
            schema,
            copy,
            written,
            stage=stage,
            statements=(*statements, f"TRUNCATE {stage}"),
            checks=checks,
        )

    def _interval_checks(
        self, stage: str, exprs: Sequence[str], written: Sequence[str]
    ) -> list[tuple[str, _Column]]:
        """Queries finding a staged value that an ``interval`` column with fields or digits
        (``interval(0)``, ``interval day``, ``interval day to second(2)``) would change: the
        cast rounds the seconds or drops the fields silently ('1 day 25:30' as ``interval day``
        is '1 day'). Compared as text, since ``=`` holds '25:00' equal to '1 day 01:00'."""
        out = []
        for e, name in zip(exprs, written, strict=True):
            c = self.target[name]
            if c.interval_mod < 0:
                continue
            whole = e.replace(f" AS {c.type_name})", " AS interval)")
            cut = f"CAST({whole} AS {c.type_name})"
            out.append(
                (
                    f"SELECT ({whole})::text, {cut}::text FROM {stage} s "
                    f"WHERE ({whole})::text <> {cut}::text LIMIT 1",
                    c,
                )
            )
        return out

    def _match(self, t: str, alias: str, keys: Sequence[str]) -> str:
        """``t``'s keys equal to those of ``alias``, by each key type's own equality."""
        return " AND ".join(
            f"{t}.{quote_ident(k)} {self.target[k].eq} {alias}.{quote_ident(k)}" for k in keys
        )

    def _compared(self, expr: str, column: str) -> str:
        """Key ``expr`` (staged text, for a string column) as the target column compares it:
        in its type and collation, so 'a' and 'A' in a citext or case-insensitive column, or
        'a' and 'a ' in a char(n) one, are one key. Compared as text, two rows of one key
        reached ON CONFLICT (21000) or were both written, and sync deleted the row its upsert
        had just updated. The INSERT's assignment still checks the column's length."""
        col = self.target[column]
        if col.info.category != "S":
            return expr
        typ = unbounded(col.info.name)
        return f"(CAST({expr} AS {typ})" + (f" COLLATE {col.collation})" if col.collation else ")")

    def _stage_table(
        self, stage: str, schema: pa.Schema, zoned: list[bool], written: Sequence[str], seq: bool
    ) -> tuple[list[str], int]:
        """A TEMP table ``stage`` (dropped at commit) taking binary COPY of ``schema``: columns
        ``c0..``, plus ``_ts_seq`` numbering the rows with ``seq``. Returns the expression of each
        ``written`` column's value in the target's type (over alias ``s``), and the number of
        columns COPY fills."""
        assert self.endpoint is not None
        conn = self.conn
        ddl = [c.data_type.ddl() for c in _encoder(schema).schema().columns]
        with edge(self.endpoint, table=self.o.table, where=self.ctx.path("column")):
            cols = ", ".join(f"c{i} {d}" for i, d in enumerate(ddl))
            serial = ", _ts_seq bigserial" if seq else ""
            conn.execute(f"CREATE TEMP TABLE {stage} ({cols}{serial}) ON COMMIT DROP")
            oids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                    "AND NOT attisdropped ORDER BY attnum",
                    (f"pg_temp.{stage}",),
                ).fetchall()
            ]
        exprs = []
        for i, c in enumerate(written):
            col = self.target[c]
            record = ""
            if oids[i] == TEXT and col.info.category == "A" and col.info.elem_category == "S":
                # a one-column row type for json_populate_record (see insert_expr)
                record = f"pg_temp.{stage}_a{i}"
                with edge(self.endpoint, table=self.o.table, where=self.ctx.path("column")):
                    conn.execute(
                        f"CREATE TEMP TABLE {stage}_a{i} (v {col.type_name}) ON COMMIT DROP"
                    )
            exprs.append(insert_expr(f"s.c{i}", oids[i], col.info, col.type_name, zoned[i], record))
        return exprs, len(ddl)

    def delete_absent(self, keys: pa.RecordBatch) -> None:
        """Binary COPY of the keys into a TEMP table, then one DELETE ... WHERE NOT EXISTS."""
        data, zoned = _for_copy(keys)
        stage = "ts_sync_keys"
        names = keys.schema.names
        exprs, n = self._stage_table(stage, data.schema, zoned, names, seq=False)
        exprs = [self._compared(e, k) for e, k in zip(exprs, names, strict=True)]
        t = self.table_sql
        match = " AND ".join(
            f"{t}.{quote_ident(k)} {self.target[k].eq} {e}"
            for k, e in zip(names, exprs, strict=True)
        )
        copy = f"COPY {stage} ({', '.join(f'c{i}' for i in range(n))}) FROM STDIN (FORMAT binary)"
        assert self.endpoint is not None
        with edge(self.endpoint, table=self.o.table):
            self._copy(data, data.schema, copy)
        self.execute(f"DELETE FROM {t} WHERE NOT EXISTS (SELECT 1 FROM {stage} AS s WHERE {match})")

    def _copy(self, data: pa.RecordBatch, schema: pa.Schema, sql: str) -> Any:
        """Binary COPY of ``data`` (encoded as ``schema``) by ``sql``; returns the cursor."""
        cur = self.conn.cursor()
        encoder = _encoder(schema)
        size = self.o.batch_size
        with cur.copy(sql) as cp:
            cp.write(encoder.write_header())
            for off in range(0, data.num_rows, size):
                cp.write(encoder.write_batch(data.slice(off, size)))
            cp.write(encoder.finish())
        return cur

    def _upsert(
        self, t: str, b: Binding, col_list: str, override: str, source: str
    ) -> tuple[str, ...]:
        """``replace``: whole rows by key (columns not written go back to their defaults);
        ``update``: only the written columns. ON CONFLICT when a unique index matches the key."""
        written = b.columns
        keys = [quote_ident(k) for k in b.keys]
        match = self._match(t, "n", b.keys)
        if self.mode == "update":
            sets = [c for c in written if c not in b.keys]
        else:
            sets = [
                c
                for c, col in self.target.items()
                if c not in b.keys and not col.generated and (col.identity != "a" or c in written)
            ]
        insert = f"INSERT INTO {t} ({col_list}){override} SELECT {col_list} FROM {source}"
        if b.conflict_target:
            if sets:
                assignments = ", ".join(
                    f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in sets
                )
                return (f"{insert} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {assignments}",)
            return (f"{insert} ON CONFLICT ({', '.join(keys)}) DO NOTHING",)
        if self.mode in ("replace", "merge", "sync"):
            return (f"DELETE FROM {t} USING {source} WHERE {match}", insert)
        fresh = f"{insert} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {match})"
        written_sets = [c for c in written if c not in b.keys]
        if not written_sets:
            return (fresh,)
        assignments = ", ".join(f"{quote_ident(c)} = n.{quote_ident(c)}" for c in written_sets)
        return (f"UPDATE {t} SET {assignments} FROM {source} WHERE {match}", fresh)

    def write_rows(self, batch: pa.RecordBatch, b: Binding, split: base.Split) -> None:
        assert self.endpoint is not None
        batch = self._check_values(batch, b)
        data, zoned = _for_copy(batch)
        with edge(self.endpoint, table=self.o.table, split=split.label):
            plan = self._plan(data.schema, zoned, b)
        if plan.casts is not None:
            data = self._cast(data, plan)
        psycopg = psycopg_module()
        try:
            with self.conn.transaction():
                cur = self._copy(data, plan.schema, plan.copy_sql)
                for sql, c in plan.checks:
                    changed = cur.execute(sql).fetchone()
                    if changed is not None:
                        raise DirtyRecordError(
                            f"column {c.name}: value {changed[0]!r} has more than "
                            f"{c.type_name} keeps; PostgreSQL would make it {changed[1]!r} "
                            f"(table {self.o.table})"
                        )
                for sql in plan.statements:
                    cur.execute(sql)
        except psycopg.Error as e:
            code = sqlstate(e)
            if code and code[:2] in ROW_ERRORS:
                raise DirtyRecordError(f"{_reason(e)} (table {self.o.table})", code=code) from e
            raise translate(e, self.endpoint, table=self.o.table, split=split.label) from e

    def _check_values(self, batch: pa.RecordBatch, b: Binding) -> pa.RecordBatch:
        """The batch with what the server would change without a word refused or made exact.
        An integer bound for a ``real`` / ``double precision`` column must be held exactly
        (:func:`check_integers_fit_floats`), and a double bound for a ``real`` column must be
        given back by it (:func:`check_doubles_fit_floats`). A naive timestamp (or ISO text without an offset)
        bound for a ``timestamptz`` column is read by the server in the session's TimeZone,
        the job's: one in a daylight-saving gap or overlap there is a dirty record (the server
        would move a gap's time by the gap and take an overlap's later instant). A number with
        more digits after the point than a ``numeric(p,s)`` column's scale, or a time finer than
        a time or timestamp column's precision, is a dirty record (:func:`_check_kept`; the
        server would round it). Text with an
        offset bound for a ``timestamp`` column is written as the job's wall time of that
        instant (the server would drop the offset)."""
        zone = self.ctx.timezone
        arrays = list(batch.columns)
        for i, (col, name) in enumerate(zip(batch.columns, b.columns, strict=False)):
            c = self.target.get(name)
            if c is None:
                continue
            kinds = (c.info.oid, c.info.base)
            floats = _FLOATS.get(c.info.oid) or _FLOATS.get(c.info.base)
            if floats is not None:
                check_integers_fit_floats(col, floats, name, f"table {self.o.table}")
                check_doubles_fit_floats(col, floats, name, f"table {self.o.table}")
            if c.kept is not None:
                _check_kept(col, c, f"table {self.o.table}")
            if _TIMESTAMP in kinds:
                arrays[i] = text_instants_as_wall_times(col, zone, name, c.type_name)
            if _TIMESTAMPTZ not in kinds or zone in ("UTC", "Etc/UTC"):
                continue
            if pa.types.is_timestamp(col.type) and col.type.tz is None:
                wall_times_as_instants(col, zone, name, c.type_name)
            else:
                check_text_wall_times(col, zone, name, c.type_name)
        return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)

    def _cast(self, data: pa.RecordBatch, plan: _Plan) -> pa.RecordBatch:
        """Arrays in the types the direct COPY encodes. An integer too large for its column is a
        data error of its row, as the server would say it (22003)."""
        assert plan.casts is not None
        arrays = []
        for arr, (t, lossy), name in zip(data.columns, plan.casts, plan.written, strict=True):
            if arr.type == t:
                arrays.append(arr)
                continue
            try:
                out = arr.cast(t, safe=not lossy)
            except (pa.ArrowInvalid, OverflowError) as e:
                raise DirtyRecordError(
                    f"value out of range for column {name} ({t}): {e} (table {self.o.table})",
                    code="22003",
                ) from e
            if lossy and _float_out_of_range(arr, out):
                # a double beyond real's range became Infinity or 0 in the cast; the server
                # refuses it (22003) where the value comes as a double
                one = f" {arr[0]}" if len(arr) == 1 else ""
                raise DirtyRecordError(
                    f"value{one} out of range for column {name} (real) (table {self.o.table})",
                    code="22003",
                )
            arrays.append(out)
        return pa.RecordBatch.from_arrays(arrays, schema=plan.schema)


def _for_copy(batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[bool]]:
    """The batch's columns as COPY encodes them, and which were zoned timestamps."""
    arrays, zoned = [], []
    for col in batch.columns:
        a, z = for_copy(col)
        arrays.append(a)
        zoned.append(z)
    return pa.RecordBatch.from_arrays(arrays, names=batch.schema.names), zoned


_UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}


def _check_kept(arr: pa.Array, c: _Column, where: str) -> None:
    """A value bound for column ``c`` with more digits after the point than the column keeps
    (``c.kept``: a ``numeric(p,s)``'s scale, a time's or timestamp's fractional-second digits)
    is a dirty record naming it, where the server would round it (1.239 into ``numeric(5,2)``
    stored as 1.24, 10:00:00.7 into ``timestamp(0)`` as 10:00:01). Decimals, floats and decimal
    text (with an exponent too: ``1.23456e2`` into ``numeric(5,2)``) for a numeric; Arrow times
    and timestamps and ISO text for a time."""
    kept = c.kept
    assert kept is not None
    t = arr.type
    text = pa.types.is_string(t) or pa.types.is_large_string(t)
    odd: pa.Array | None = None
    if c.oid == NUMERIC or c.info.base == NUMERIC:
        what = "digits after the point"
        if pa.types.is_decimal(t) and t.scale > kept:
            odd = pc.not_equal(pc.round(arr, kept), arr)
        elif pa.types.is_floating(t):
            odd = pc.and_(pc.is_finite(arr), pc.not_equal(pc.round(arr, kept), arr))
        elif text:
            odd = pc.match_substring_regex(arr, rf"^\s*[+-]?\d*\.\d{{{kept}}}\d*[1-9]\d*\s*$")
            odd = pc.or_(odd, _exponent_finer(arr, kept))
    else:
        what = "fractional-second digits"
        if pa.types.is_timestamp(t) or pa.types.is_time(t) or pa.types.is_duration(t):
            digits = _UNIT_DIGITS[t.unit]
            if digits > kept:
                ticks = arr.cast(pa.int64())
                odd = pc.not_equal(
                    pc.multiply(pc.divide(ticks, 10 ** (digits - kept)), 10 ** (digits - kept)),
                    ticks,
                )
        elif text:
            odd = pc.match_substring_regex(arr, rf":\d{{2}}\.\d{{{kept}}}\d*[1-9]")
    if odd is None:
        return
    odd = pc.fill_null(odd, False)
    if not pc.any(odd).as_py():
        return
    first = arr.filter(odd)[0:1]
    if pa.types.is_duration(t):  # as_py() would need pandas for nanoseconds
        shown = f"{first.cast(pa.int64())[0].as_py()} {t.unit}"
    else:
        v = first[0].as_py()
        shown = repr(v) if isinstance(v, str) else str(v)
    raise DirtyRecordError(
        f"column {c.name}: value {shown} has more {what} than {c.type_name} keeps; PostgreSQL "
        f"would round it ({where})"
    )


def _exponent_finer(arr: pa.Array, kept: int) -> pa.Array:
    """Which decimal texts with an exponent (``1.23456e2``) have more than ``kept`` digits
    after the point once the exponent is applied. Only the rows holding an ``e`` are looked at
    one by one (rare in decimal text); text that is not a number is the server's to refuse."""
    mask = pc.fill_null(pc.match_substring(arr, "e", ignore_case=True), False)
    if not pc.any(mask).as_py():
        return mask
    out = []
    for v, has_e in zip(arr.to_pylist(), mask.to_pylist(), strict=True):
        finer = False
        if has_e:
            try:
                d = Decimal(v.strip())
            except (InvalidOperation, ValueError):
                d = None
            if d is not None and d.is_finite() and d:
                sign, digits, exp = d.as_tuple()
                assert isinstance(exp, int)
                zeros = len(digits) - len(bytes(digits).rstrip(b"\0"))
                finer = -(exp + zeros) > kept
        out.append(finer)
    return pa.array(out, pa.bool_())


#: first words of the statements that end the transaction they run in, or open another
_TRANSACTION_CONTROL = frozenset(
    ("begin", "start", "commit", "end", "rollback", "abort", "savepoint", "release")
)
_SQL_TOKEN = re.compile(
    r"""(?P<skip>--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|"(?:[^"]|"")*"|(?P<dollar>\$[A-Za-z_]*\$))"""
    r"|(?P<semi>;)|(?P<word>[A-Za-z_]+)",
    re.S,
)


def _ends_transaction(sql: str) -> str:
    """The first word (upper case) of a statement in ``sql`` that would end the writer's
    transaction (``COMMIT``, ``BEGIN``, ``PREPARE TRANSACTION`` ...), or "". A COMMIT in preSql
    published its DELETE before a failed run, one in postSql the rows before a failing
    statement after it. Quotes, dollar quotes and comments are skipped."""
    words: list[str] = []
    pos = 0
    while (m := _SQL_TOKEN.search(sql, pos)) is not None:
        pos = m.end()
        if m["dollar"]:
            end = sql.find(m["dollar"], pos)
            pos = len(sql) if end < 0 else end + len(m["dollar"])
        elif m["semi"]:
            words = []
        elif m["word"] and len(words) < 2:
            words.append(m["word"].lower())
            first = words[0]
            if first in _TRANSACTION_CONTROL or words == ["prepare", "transaction"]:
                return " ".join(words).upper() if first == "prepare" else first.upper()
    return ""


def _float_out_of_range(src: pa.Array, out: pa.Array) -> bool:
    """Whether narrowing floats ``src`` to ``out`` (float32, or lists of them) overflowed to
    Infinity or underflowed to zero."""
    if pa.types.is_list(out.type) or pa.types.is_large_list(out.type):
        src, out = src.flatten(), out.flatten()
    if not pa.types.is_float64(src.type) or not pa.types.is_float32(out.type):
        return False
    wide = out.cast(pa.float64())
    changed = pc.or_(pc.invert(pc.is_finite(wide)), pc.not_equal(pc.sign(src), pc.sign(wide)))
    return bool(pc.any(pc.and_(pc.is_finite(src), changed)).as_py())


def _reason(e: BaseException) -> str:
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(e).strip().splitlines()[0]
    detail = getattr(diag, "message_detail", None)
    return redact(primary + (f": {detail}" if detail else ""))
