"""The PostgreSQL writer (kind ``postgresql``; ``postgresqlwriter``): one transaction per job.

    prepare   connect; find the target (or create it from the reader's schema, in the transaction);
              preSql; truncate mode: DELETE FROM (or TRUNCATE with fastTruncate); overwrite mode:
              DELETE the rows of the named ``partition`` (the whole table without one)
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
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tidesync.connectors import base
from tidesync.connectors.partition import partition_value
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
    TypeInfo,
    ddl_type,
    describe_types,
    direct_type,
    for_copy,
    insert_expr,
)
from tidesync.connectors.sql import (
    DELETED,
    check_partition,
    check_table_modes,
    expand_table,
    marker_flags,
    split_name,
    table_modes,
)
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, did_you_mean, redact

__all__ = ["Writer"]

log = logging.getLogger("tidesync.postgresql")

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


@dataclass
class SinkResult:
    split: str
    rows: int = 0


def _encoder(schema: pa.Schema) -> Any:
    """A binary COPY encoder for batches of ``schema`` (one per COPY: it writes the header)."""
    try:
        from pgpq import ArrowToPostgresBinaryEncoder
    except ModuleNotFoundError:
        raise ConfigError(
            "the postgresql writer needs pgpq: pip install 'tidesync[postgresql]'"
        ) from None
    return ArrowToPostgresBinaryEncoder(schema)


class _Sink(base.Sink):
    def __init__(self, writer: Writer, split: base.Split):
        self.w = writer
        self.split = split
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.w._write(batch, self.split)
        self.rows += batch.num_rows

    def close(self) -> SinkResult:
        return SinkResult(self.split.label, self.rows)

    def discard(self) -> SinkResult:
        # what this task wrote lives in the writer's one transaction: abort drops it
        return SinkResult(self.split.label, self.rows)


class Writer(base.Writer):
    """``postgresql`` / ``postgresqlwriter``: one transaction, binary COPY."""

    kind = "postgresql"
    modes = ("insert", "replace", "update", "truncate", "overwrite", "merge")
    publish = "transaction"
    serial = True

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.endpoints, self.table_name, self.table_key = self._target()
        self.columns = strings(
            p, "column", p.list("column", ["*"]) or ["*"], "a column name or '*'"
        )
        self.partition, self.marker = table_modes(self)
        if "writeMode" not in params and self.partition:
            self.mode = "overwrite"
        else:
            self.mode = self.write_mode({"append": "insert", "copy": "insert"})
        check_table_modes(self, self.mode, self.partition, self.marker)
        keys = p.list("primaryKey", []) or []
        self.primary_key = strings(p, "primaryKey", keys, "a column name") if keys else []
        self.pre_sql = self._statements("preSql")
        self.post_sql = self._statements("postSql")
        self.batch_size = p.int("batchSize", 65536, minimum=1)
        self.fast_truncate = p.bool("fastTruncate")
        self.session = session_of(p)
        p.done()
        self.conn: Any = None
        self.endpoint: Endpoint | None = None
        self.table: Table | None = None
        self.target: dict[str, _Column] = {}
        self.key: list[str] = []
        self.unique_key = False  # a unique index covers exactly the key: ON CONFLICT works
        self.written: list[str] | None = None
        self.added: list[tuple[str, pa.Array]] = []  # partition columns the batches lack
        self.keep_marker = False  # the target has the deleteMarker column: it is written too
        self.plans: dict[pa.Schema, _Plan] = {}

    def _statements(self, key: str) -> list[str]:
        raw = self.p.list(key, []) or []
        return strings(self.p, key, raw, "an SQL statement") if raw else []

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
                urls = c["jdbcUrl"] if isinstance(c["jdbcUrl"], list) else [c["jdbcUrl"]]
                eps = endpoint_of(p, None, urls, "connection[0].jdbcUrl")
                if c.get("table"):
                    tables = c["table"] if isinstance(c["table"], list) else [c["table"]]
                    table_key = "connection[0].table"
        names = strings(p, table_key, tables, "a table name") if tables else []
        if not tables:
            p.problem(table_key, "is required: name the table to write")
        elif len(names) > 1:
            p.problem(table_key, f"a writer writes one table; got {names}")
        return eps, (names[0] if names else ""), table_key

    @property
    def _qualified(self) -> str:
        if self.table is not None:
            return self.table.qualified
        return ".".join(quote_ident(x) for x in split_name(self.table_name, '"'))

    # -- the transaction ----------------------------------------------------------------------

    def prepare(self, schema: pa.Schema | None) -> None:
        self.conn, self.endpoint = connect(
            self.endpoints,
            ["SET idle_in_transaction_session_timeout = 0", *self.session],
            self.ctx.timezone,
            autocommit=False,
            where=self.ctx.path("session"),
        )
        try:
            self._prepare(schema)
        except BaseException:
            self.abort([])
            raise

    def _prepare(self, schema: pa.Schema | None) -> None:
        ep, conn = self.endpoint, self.conn
        assert ep is not None
        self.table = resolve_table(
            conn, self.table_name, ep, self.ctx.path(self.table_key), missing_ok=True
        )
        if self.table is None and schema is not None:
            self._create(schema)
        if self.table is not None:
            self._describe()
            if schema is not None:
                names = schema.names
                if self.marker is not None and self.table.match(self.marker[0]) is None:
                    names = [n for n in names if n != self.marker[0]]
                self._columns(names)
        with edge(ep, table=self.table_name, where=self.ctx.path("preSql")):
            for sql in self.pre_sql:
                conn.execute(expand_table(sql, self._qualified))
        if self.mode == "truncate" and self.table is not None:
            with edge(ep, table=self.table_name):
                verb = "TRUNCATE" if self.fast_truncate else "DELETE FROM"
                conn.execute(f"{verb} {self.table.qualified}")
        if self.mode == "overwrite" and self.table is not None:
            # the partition's rows go in the job's transaction: an abort brings them back
            conds = [f"{quote_ident(c)} = %s" for c, _ in self._partition_columns()]
            where = f" WHERE {' AND '.join(conds)}" if conds else ""
            with edge(ep, table=self.table_name):
                conn.execute(
                    f"DELETE FROM {self.table.qualified}{where}",
                    [v for _, v in self._partition_columns()] or None,
                )

    def _partition_columns(self) -> list[tuple[str, str]]:
        """The ``partition`` levels by the target's column names; an unknown one is a
        ConfigError listing the table's columns."""
        assert self.table is not None
        out = []
        for k, v in self.partition:
            real = self.table.match(k)
            if real is None:
                raise ConfigError(
                    f"{self.ctx.path('partition')}: table {self.table_name} has no column {k!r}"
                    f"{did_you_mean(k, self.target)}; its columns: {', '.join(self.target)}"
                )
            out.append((real, v))
        return out

    def _create(self, schema: pa.Schema) -> None:
        """Create the missing target from the data's schema, in the job's transaction (an abort
        takes it back); ``primaryKey`` becomes its primary key."""
        assert self.endpoint is not None
        listed = [c for c in self.columns if c != "*"]
        if self.marker is not None and self.marker[0] in schema.names:
            schema = schema.remove(schema.get_field_index(self.marker[0]))
        names = listed if len(listed) == len(schema) else schema.names
        cols = [
            f"{quote_ident(n)} {ddl_type(f.type)}{'' if f.nullable else ' NOT NULL'}"
            for n, f in zip(names, schema, strict=True)
        ]
        # a new table gets the partition columns as text, as a lake table does
        cols += [f"{quote_ident(k)} text" for k, _ in self.partition if k not in names]
        if self.primary_key:
            cols.append(f"PRIMARY KEY ({', '.join(quote_ident(k) for k in self.primary_key)})")
        with edge(self.endpoint, table=self.table_name, where=self.ctx.path(self.table_key)):
            self.conn.execute(f"CREATE TABLE {self._qualified} ({', '.join(cols)})")
        self.table = resolve_table(
            self.conn, self.table_name, self.endpoint, self.ctx.path(self.table_key)
        )

    def _describe(self) -> None:
        assert self.table is not None and self.endpoint is not None
        conn = self.conn
        with edge(self.endpoint, table=self.table_name):
            rows = conn.execute(
                "SELECT attname, atttypid, attidentity, attgenerated <> '', format_type(atttypid, atttypmod) "
                "FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                (self.table.oid,),
            ).fetchall()
            types = describe_types(conn, [int(r[1]) for r in rows])
            self.target = {
                r[0]: _Column(r[0], int(r[1]), types[int(r[1])], r[4], r[2] or "", bool(r[3]))
                for r in rows
            }
            if self.mode in ("replace", "update", "merge"):
                self.key = self._key()
                self.unique_key = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_index WHERE indrelid = %s AND indisunique "
                    "AND indpred IS NULL AND indexprs IS NULL AND (SELECT array_agg(a ORDER BY a) "
                    "FROM unnest(indkey::int2[]) a) = (SELECT array_agg(attnum ORDER BY attnum) "
                    "FROM pg_attribute WHERE attrelid = %s AND attname = ANY(%s)))",
                    (self.table.oid, self.table.oid, self.key),
                ).fetchone()[0]

    def _key(self) -> list[str]:
        assert self.table is not None
        if self.primary_key:
            out = []
            for i, k in enumerate(self.primary_key):
                real = self.table.match(k)
                if real is None:
                    raise ConfigError(
                        f"{self.ctx.path(f'primaryKey[{i}]')}: table {self.table_name} has no "
                        f"column {k!r}{did_you_mean(k, self.target)}"
                    )
                out.append(real)
            return out
        pk = [
            r[0]
            for r in self.conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND i.indisprimary "
                "ORDER BY array_position(i.indkey::int2[], a.attnum)",
                (self.table.oid,),
            ).fetchall()
        ]
        if not pk:
            raise ConfigError(
                f"{self.ctx.path('primaryKey')}: writeMode {self.mode!r} needs a key and table "
                f"{self.table_name} has no primary key; list the key columns, e.g. primaryKey: [id]"
            )
        return pk

    def _columns(self, names: list[str]) -> list[str]:
        """The target columns the incoming columns go to, in order (``column`` by position, else
        the incoming names)."""
        if self.written is not None:
            return self.written
        assert self.table is not None
        listed = [c for c in self.columns if c != "*"]
        if listed and len(listed) != len(names):
            raise ConfigError(
                f"{self.ctx.path('column')}: lists {len(listed)} columns but {len(names)} "
                f"arrive ({', '.join(names)}); name one target column per incoming column"
            )
        out = []
        for i, n in enumerate(listed or names):
            real = self.table.match(n)
            if real is None:
                where = self.ctx.path(f"column[{i}]" if listed else "column")
                hint = "" if listed else " (an incoming column; map names with column)"
                raise ConfigError(
                    f"{where}: table {self.table_name} has no column {n!r}"
                    f"{did_you_mean(n, self.target)}{hint}"
                )
            out.append(real)
        absent = [k for k in self.key if k not in out]
        if absent:
            raise ConfigError(
                f"{self.ctx.path('primaryKey')}: key column(s) {', '.join(absent)} of writeMode "
                f"{self.mode!r} are not among the written columns"
            )
        self.written = out
        return out

    def _shape(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, list[str]]:
        """The batch as written, with the target column of each of its columns: the partition
        columns it lacks added as constants (those it carries must hold the partition's value,
        else the rows are dirty), and for merge with ``deleteMarker`` a last boolean column
        saying which rows delete their key."""
        assert self.table is not None
        flag = None
        if self.marker is not None:
            flag = marker_flags(self, batch, self.marker)
            if self.table.match(self.marker[0]) is None:
                batch = batch.drop_columns([self.marker[0]])
        written = list(self._columns(batch.schema.names))
        for real, text in self._partition_columns():
            if real in written:
                check_partition(batch.column(written.index(real)), real, text)
                continue
            t = next(
                (
                    t
                    for t in (pa.int64(), pa.date32(), pa.string())
                    if direct_type(t, self.target[real].info) is not None
                ),
                pa.string(),  # cast in SQL by the staging path
            )
            try:
                value = pa.scalar(partition_value(text, t), t)
            except (ValueError, pa.ArrowInvalid) as e:
                raise ConfigError(
                    f"{self.ctx.path('partition')}: {real}={text} does not fit column {real} "
                    f"({self.target[real].type_name}): {e}"
                ) from None
            batch = batch.append_column(real, pa.repeat(value, batch.num_rows))
            written.append(real)
        if flag is not None:
            batch = batch.append_column(DELETED, flag)
        return batch, written

    def _plan(self, schema: pa.Schema, zoned: list[bool], written: list[str]) -> _Plan:
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
            plan = self._staged(schema, zoned, written)
        self.plans[schema] = plan
        return plan

    def _staged(self, schema: pa.Schema, zoned: list[bool], written: list[str]) -> _Plan:
        assert self.table is not None and self.endpoint is not None
        conn, t = self.conn, self.table.qualified
        ddl = [c.data_type.ddl() for c in _encoder(schema).schema().columns]
        stage = f"ts_stage_{len(self.plans)}"
        upsert = self.mode in ("replace", "update", "merge")
        with edge(self.endpoint, table=self.table_name, where=self.ctx.path("column")):
            cols = ", ".join(f"c{i} {d}" for i, d in enumerate(ddl))
            seq = ", _ts_seq bigserial" if upsert else ""
            conn.execute(f"CREATE TEMP TABLE {stage} ({cols}{seq}) ON COMMIT DROP")
            oids = [
                int(r[0])
                for r in conn.execute(
                    "SELECT atttypid FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 "
                    "AND NOT attisdropped ORDER BY attnum",
                    (f"pg_temp.{stage}",),
                ).fetchall()
            ]
        exprs = [
            insert_expr(f"s.c{i}", oids[i], self.target[c].info, self.target[c].type_name, zoned[i])
            for i, c in enumerate(written)
        ]
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
            keys = [exprs[written.index(k)] for k in self.key]
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
                statements = self._upsert(t, written, col_list, override, source)
            else:
                source = f"(SELECT * FROM ({last}) AS d WHERE NOT d._ts_del) AS n"
                gone = f"(SELECT * FROM ({last}) AS d WHERE d._ts_del) AS n"
                match = " AND ".join(f"{t}.{quote_ident(k)} = n.{quote_ident(k)}" for k in self.key)
                statements = (
                    f"DELETE FROM {t} USING {gone} WHERE {match}",
                    *self._upsert(t, written, col_list, override, source),
                )
        copy = f"COPY {stage} ({', '.join(f'c{i}' for i in range(len(ddl)))}) FROM STDIN (FORMAT binary)"
        # EXPLAIN checks the types and the conflict key before a row moves
        with (
            edge(self.endpoint, table=self.table_name, where=self.ctx.path("column")),
            conn.transaction(),
        ):
            for sql in statements:
                conn.execute("EXPLAIN " + sql)
        return _Plan(
            schema, copy, written, stage=stage, statements=(*statements, f"TRUNCATE {stage}")
        )

    def _upsert(
        self, t: str, written: list[str], col_list: str, override: str, source: str
    ) -> tuple[str, ...]:
        """``replace``: whole rows by key (columns not written go back to their defaults);
        ``update``: only the written columns. ON CONFLICT when a unique index matches the key."""
        keys = [quote_ident(k) for k in self.key]
        match = " AND ".join(f"{t}.{k} = n.{k}" for k in keys)
        if self.mode == "update":
            sets = [c for c in written if c not in self.key]
        else:
            sets = [
                c
                for c, col in self.target.items()
                if c not in self.key and not col.generated and (col.identity != "a" or c in written)
            ]
        insert = f"INSERT INTO {t} ({col_list}){override} SELECT {col_list} FROM {source}"
        if self.unique_key:
            if sets:
                assignments = ", ".join(
                    f"{quote_ident(c)} = EXCLUDED.{quote_ident(c)}" for c in sets
                )
                return (f"{insert} ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {assignments}",)
            return (f"{insert} ON CONFLICT ({', '.join(keys)}) DO NOTHING",)
        if self.mode in ("replace", "merge"):
            return (f"DELETE FROM {t} USING {source} WHERE {match}", insert)
        fresh = f"{insert} WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {match})"
        written_sets = [c for c in written if c not in self.key]
        if not written_sets:
            return (fresh,)
        assignments = ", ".join(f"{quote_ident(c)} = n.{quote_ident(c)}" for c in written_sets)
        return (f"UPDATE {t} SET {assignments} FROM {source} WHERE {match}", fresh)

    def open(self, split: base.Split) -> base.Sink:
        if self.conn is None:
            raise FatalError("postgresql writer: open() before prepare()")
        return _Sink(self, split)

    def _write(self, batch: pa.RecordBatch, split: base.Split) -> None:
        if batch.num_rows == 0:
            return
        assert self.endpoint is not None
        if self.table is None:  # prepared without a schema: the first batch says what to create
            with edge(self.endpoint, table=self.table_name, split=split.label):
                self._create(batch.schema)
                self._describe()
        batch, written = self._shape(batch)
        arrays, zoned = [], []
        for col in batch.columns:
            a, z = for_copy(col)
            arrays.append(a)
            zoned.append(z)
        data = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
        with edge(self.endpoint, table=self.table_name, split=split.label):
            plan = self._plan(data.schema, zoned, written)
        if plan.casts is not None:
            data = self._cast(data, plan)
        psycopg = psycopg_module()
        try:
            with self.conn.transaction():
                cur = self.conn.cursor()
                encoder = _encoder(plan.schema)
                with cur.copy(plan.copy_sql) as cp:
                    cp.write(encoder.write_header())
                    for off in range(0, data.num_rows, self.batch_size):
                        cp.write(encoder.write_batch(data.slice(off, self.batch_size)))
                    cp.write(encoder.finish())
                for sql in plan.statements:
                    cur.execute(sql)
        except psycopg.Error as e:
            code = sqlstate(e)
            if code and code[:2] in ROW_ERRORS:
                raise DirtyRecordError(f"{_reason(e)} (table {self.table_name})", code=code) from e
            raise translate(e, self.endpoint, table=self.table_name, split=split.label) from e

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
                arrays.append(arr.cast(t, safe=not lossy))
            except (pa.ArrowInvalid, OverflowError) as e:
                raise DirtyRecordError(
                    f"value out of range for column {name} ({t}): {e} (table {self.table_name})",
                    code="22003",
                ) from e
        return pa.RecordBatch.from_arrays(arrays, schema=plan.schema)

    def commit(self, results: list[Any]) -> None:
        if self.conn is None:
            return
        assert self.endpoint is not None
        try:
            with edge(self.endpoint, table=self.table_name, where=self.ctx.path("postSql")):
                for sql in self.post_sql:
                    self.conn.execute(expand_table(sql, self._qualified))
            with edge(self.endpoint, table=self.table_name):
                self.conn.commit()
        finally:
            self._close()

    def abort(self, results: list[Any]) -> None:
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
        finally:
            self._close()

    def _close(self) -> None:
        conn, self.conn = self.conn, None
        self.plans.clear()
        if conn is not None:
            try:
                conn.close()
            except Exception as e:  # noqa: BLE001 - the transaction is already settled
                log.warning("closing the connection failed: %s", redact(str(e)))


def _reason(e: BaseException) -> str:
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) or str(e).strip().splitlines()[0]
    detail = getattr(diag, "message_detail", None)
    return redact(primary + (f": {detail}" if detail else ""))
