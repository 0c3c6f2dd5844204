"""The ``mysql`` writer (DataX ``mysqlwriter``).

``LOAD DATA LOCAL INFILE`` fed from memory, inside ONE transaction committed only in
``commit()``; a batch that the server rejects or warns about is rolled back to a savepoint and
raised as a DirtyRecordError carrying the server's error number, so the engine bisects it.

Parameters and type mapping: docs/connectors/mysql.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
import uuid
from collections.abc import Sequence
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
    SqlWriter,
    TableInfo,
    expand_table,
    split_deleted,
    split_name,
    write_options,
)
from tidesync.connectors.sql.writer import (
    OFFSET_TEXT,
    check_doubles_fit_floats,
    check_integers_fit_floats,
    text_instants_as_wall_times,
    text_with_fraction,
    wall_times_as_instants,
)
from tidesync.errors import (
    ConfigError,
    DirtyRecordError,
    FatalError,
    did_you_mean,
    redact,
)

#: MySQL's float DATA_TYPEs (FLOAT is 4 bytes, DOUBLE and REAL 8) as Arrow's
_FLOATS = {"float": pa.float32(), "double": pa.float64()}

#: MySQL's integer DATA_TYPEs: text with a fraction bound for one is refused, not rounded
_INTEGER_TYPES = frozenset({"tinyint", "smallint", "mediumint", "int", "integer", "bigint"})

#: strict, and no date the reader could not give back: a zero date or one with a zero month or
#: day ('2020-00-00') would be stored and read back as NULL, an impossible one ('2020-02-30',
#: ALLOW_INVALID_DATES) as a dirty record; refused here, they are dirty records of the write
_WRITE_SESSION = (
    "SET SESSION sql_mode = CONCAT_WS(',', REPLACE(@@SESSION.sql_mode, 'ALLOW_INVALID_DATES', ''), "
    "'STRICT_ALL_TABLES', 'NO_ZERO_DATE', 'NO_ZERO_IN_DATE')",
    "SET SESSION time_zone = '+00:00'",
)


_UTF8 = ("utf8mb4", "utf8mb3", "utf8")


class Writer(SqlWriter):
    """Writes one table inside one transaction; sinks share the connection (``self.lock``
    around each load), while the text encoding of batches runs in the tasks' threads."""

    kind = "mysql"
    dialect = D
    serial = False
    creates_tables = False

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        fixed, problems = _with_url(params, ctx)
        self.p = base.Params(fixed, ctx, known_extra=CONNECTION_KEYS)
        p = self.p
        p.problems.extend(problems)
        self.o = write_options(
            self,
            batch_size=65536,
            database_key="url",
            mode_aliases={"upsert": "update"},
        )
        self.settle_modes("writeMode" in params)
        user, password = p.str("username", aliases=("user",)), p.get("password")
        self.endpoint = Endpoint("", 0, "", "")
        for url in self.o.target.urls[:1]:
            try:
                self.endpoint = _endpoint(url, user, None if password is None else str(password))
            except ValueError as e:
                p.problem(self.o.target.url_key, str(e))
        self.allow_nontransactional = p.bool("allowNonTransactionalSql")
        #: (preSql|postSql, index) of statements that are a TRUNCATE of the target: the writer's
        #: own truncate (a DELETE in the transaction) runs in their place
        self.truncates: set[tuple[str, int]] = set()
        for key, statements in (("preSql", self.o.pre_sql), ("postSql", self.o.post_sql)):
            for i, sql in enumerate(statements):
                verdict = _outside_transaction(sql, self.o.table, self.endpoint.database)
                if verdict == _TRUNCATE:
                    self.truncates.add((key, i))
                elif verdict and not self.allow_nontransactional:
                    p.problem(
                        f"{key}[{i}]",
                        f"{sql!r}: {verdict}, so a failed run could not take back what it did; "
                        "run it outside the job, or set allowNonTransactionalSql: true to accept "
                        "that",
                    )
        p.done()
        self.con: pymysql.Connection | None = None
        self.columns_info: list[dict[str, Any]] = []
        self.stage: str | None = None
        self._bound: Binding | None = None  # what the load statement is made for
        self._direct_replace = False
        self._on_duplicate = False  # update by INSERT ... ON DUPLICATE KEY UPDATE
        self._keyed_stage = False  # the staging table has a unique key on the key (REPLACE)
        self._stage_marks = False  # ... and merge's deleteMarker verdict beside each row
        self._load_sql = ""
        self._kinds: list[dict[str, Any]] = []
        self._unique: list[tuple[str, list[str]]] = []

    @property
    def location(self) -> str:
        return self.endpoint.database

    def target_location(self) -> str:
        return self.endpoint.label

    @property
    def where(self) -> str:
        return self.ctx.path(self.o.target.url_key)

    # the transaction -----------------------------------------------------------------------
    def connect(self) -> None:
        self.con = connect(
            self.endpoint,
            where=self.where,
            session=self.o.session,
            autocommit=False,
            local_infile=True,
            ours=_WRITE_SESSION,
        )

    def begin(self) -> None:
        """BEGIN, once the target is known to keep its rows in a transactional engine."""
        assert self.con is not None
        try:
            self._check_engine()
            self.con.begin()
        except myerr.MySQLError as e:
            raise translate(e, self.endpoint, self.where, table=self.o.table) from None

    def _check_no_cascades(self) -> None:
        """Refuse ``replace`` / ``merge`` / ``sync`` into a table whose rows other tables'
        foreign keys follow with ON DELETE CASCADE or SET NULL: these modes delete a matched row
        and insert it again (REPLACE, or DELETE ... JOIN then INSERT), so the child rows of every
        replaced row were deleted (or lost their reference) while the run succeeded.
        PostgreSQL's replace updates the row in place."""
        assert self.con is not None
        db, name = _schema_table(self.con, self.o.table)
        with self.con.cursor() as cur:
            cur.execute(
                "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, DELETE_RULE FROM "
                "information_schema.REFERENTIAL_CONSTRAINTS WHERE UNIQUE_CONSTRAINT_SCHEMA = %s "
                "AND REFERENCED_TABLE_NAME = %s AND DELETE_RULE IN ('CASCADE', 'SET NULL', "
                "'SET DEFAULT') ORDER BY CONSTRAINT_SCHEMA, TABLE_NAME",
                (db, name),
            )
            rows = cur.fetchall()
        if rows:
            schema, child, rule = rows[0]
            raise ConfigError(
                f"{self.ctx.path('writeMode')}: {self.mode} deletes each matched row of "
                f"{self.o.table} and inserts it again, and table {schema}.{child} follows its "
                f"rows with ON DELETE {rule}: the child rows of every replaced row would be "
                "changed; use writeMode update"
            )

    def _check_engine(self) -> None:
        """Refuse a target whose storage engine has no transactions (MyISAM, Aria, MEMORY,
        ...): there every statement stays as it ran, so a failed run left its preSql, its
        truncate and the rows loaded so far, and a batch with a bad row was loaded again half by
        half while the row was found (305 rows of 101, the run reporting 0 written)."""
        assert self.con is not None
        db, name = _schema_table(self.con, self.o.table)
        with self.con.cursor() as cur:
            cur.execute(
                "SELECT t.ENGINE, e.TRANSACTIONS FROM information_schema.TABLES t LEFT JOIN "
                "information_schema.ENGINES e ON e.ENGINE = t.ENGINE WHERE t.TABLE_SCHEMA = %s "
                "AND t.TABLE_NAME = %s",
                (db, name),
            )
            row = cur.fetchone()
        if row is None or row[0] is None or row[1] == "YES":  # missing, or a view
            return
        raise ConfigError(
            f"{self.ctx.path(self.o.target.table_key)}: table {self.o.table} is stored by "
            f"{row[0]}, which has no transactions, so a failed run could not be taken back and "
            "a batch with a dirty row would be loaded twice; write to an InnoDB table "
            f"(ALTER TABLE {self.table_sql} ENGINE=InnoDB)"
        )

    def execute(self, sql: str, params: Sequence[Any] = (), where: str = "") -> None:
        assert self.con is not None
        try:
            with self.con.cursor() as cur:
                cur.execute(sql, list(params) or None)
        except myerr.MySQLError as e:
            raise translate(
                e, self.endpoint, self.ctx.path(where) if where else self.where, table=self.o.table
            ) from None

    def lock_target(self) -> None:
        """A named lock (``GET_LOCK``) per table, held by the connection until it closes after
        the commit or rollback. MySQL's named locks have no shared mode: every writer of the
        table except an append takes it, so partition overwrites of one table run one at a
        time."""
        whole, partition = self.lock_scope()
        if not whole and not partition:
            return
        assert self.con is not None
        db, name = _schema_table(self.con, self.o.table)
        key = "tidesync:" + hashlib.sha1(f"{db}.{name}".lower().encode()).hexdigest()[:40]
        if self._query_one("SELECT GET_LOCK(%s, 0)", key) == 1:
            return
        self.waiting()
        t0 = time.monotonic()
        if (
            not self.lock_timeout
            or self._query_one("SELECT GET_LOCK(%s, %s)", key, self.lock_timeout) != 1
        ):
            raise self.lock_timed_out(time.monotonic() - t0)

    def _query_one(self, sql: str, *params: Any) -> Any:
        assert self.con is not None
        try:
            with self.con.cursor() as cur:
                cur.execute(sql, params)
                row = cur.fetchone()
        except myerr.MySQLError as e:
            raise translate(e, self.endpoint, self.where, table=self.o.table) from None
        return None if row is None else row[0]

    def run_sql(self, key: str, statements: Sequence[str]) -> None:
        """preSql / postSql, a TRUNCATE of the target done as the writer's own truncate (a
        DELETE in the transaction: MySQL's TRUNCATE commits implicitly)."""
        for i, sql in enumerate(statements):
            if (key, i) in self.truncates:
                self.clear([])
            else:
                self.execute(expand_table(sql, self.table_sql), where=f"{key}[{i}]")

    def missing(self) -> None:
        assert self.con is not None
        names = _tables(self.con)
        raise ConfigError(
            f"{self.ctx.path(self.o.target.table_key)}: table {self.o.table!r} not found in "
            f"database {self.endpoint.database}{did_you_mean(self.o.table, names)}"
        )

    def inspect(self) -> TableInfo | None:
        assert self.con is not None
        try:
            info = _columns_info(self.con, self.o.table)
            if info is None:
                return None
            unique = _unique_keys(self.con, self.o.table)
            if self.mode in ("replace", "merge", "sync"):
                self._check_no_cascades()
        except myerr.MySQLError as e:
            raise translate(e, self.endpoint, self.where, table=self.o.table) from None
        self.columns_info = info
        self._unique = unique
        pk = next((cols for name, cols in unique if name == "PRIMARY"), ())
        required = frozenset(
            c["name"]
            for c in info
            if not c["nullable"]
            and c["default"] is None
            and "auto_increment" not in c["extra"]
            and "generated" not in c["extra"]
        )
        return TableInfo(
            tuple(c["name"] for c in info),
            required,
            tuple(pk),
            tuple(tuple(cols) for _, cols in unique),
        )

    def clear(self, parts: Sequence[tuple[str, str]]) -> None:
        if parts:
            return super().clear(parts)
        # an empty table needs no DELETE, which would cost InnoDB's bulk path for a first load
        # into an empty table (no undo record per row)
        assert self.con is not None
        try:
            with self.con.cursor() as cur:
                cur.execute(f"SELECT 1 FROM {self.table_sql} LIMIT 1 FOR UPDATE")
                if cur.fetchone() is not None:
                    cur.execute(f"DELETE FROM {self.table_sql}")
        except myerr.MySQLError as e:
            raise translate(e, self.endpoint, self.where, table=self.o.table) from None

    def planned(self, schema: pa.Schema, binding: Binding) -> None:
        self._plan(binding)

    def _plan(self, b: Binding) -> None:
        """The LOAD DATA statement for ``b`` (straight into the table, or into a staging table
        for the upserts that need one); made once, for the first binding."""
        if self._bound is not None:
            return
        self._bound = b
        by_name = {c["name"]: c for c in self.columns_info}
        self._kinds = [by_name[c] for c in b.columns]
        keys = set(b.keys)
        only_unique = [set(cols) for _, cols in self._unique]
        upsert = self.mode in ("replace", "merge", "sync")
        self._direct_replace = upsert and only_unique == [keys]
        # ON DUPLICATE KEY fires on a clash with any unique key: taken only where the key is
        # the table's one unique key, else a row clashing on another (an email) would update
        # that other row instead of being refused
        self._on_duplicate = self.mode == "update" and only_unique == [keys]
        # merge's deletes split from its upserts byte for byte would miss 'a' then a deleting
        # 'A' of a _ci key (the DELETE ran first, the upsert after): with a text key they go
        # through the keyed stage too, the marker beside them, so the last row decides
        marks = (
            self.mode == "merge"
            and self.marker is not None
            and any(by_name[k]["charset"] for k in b.keys)
        )
        if marks:
            self._direct_replace = False
        needs_stage = self.mode == "update" or (upsert and not self._direct_replace)
        target = self.table_sql
        if needs_stage:
            self.stage = D.ident(f"ts_stage_{uuid.uuid4().hex[:12]}")
            self._keyed_stage = bool(b.keys) and self._create_stage(b, marks)
            self._stage_marks = marks and self._keyed_stage
            target = self.stage
        verb = "REPLACE " if self._direct_replace or self._keyed_stage else ""
        self._load_sql = _load_sql(target, self._load_kinds(), verb)

    def _load_kinds(self) -> list[dict[str, Any]]:
        return [*self._kinds, _MARK] if self._stage_marks else self._kinds

    def _create_stage(self, b: Binding, marks: bool) -> bool:
        """The TEMPORARY staging table, columns as the target's; True when it has a unique key
        on ``b.keys``. Keys equal in the target's collation but not byte for byte ('a' and 'A'
        under a _ci collation, 'a' and 'a ' under PAD SPACE) are one key to the target: loaded
        with REPLACE into a stage keyed the same way, the last row of such keys is the one
        kept, by the server's own comparison. Where the server cannot make the key (MySQL on a
        TEXT key, a key too long for an index) rows are kept last per key byte for byte. With
        ``marks`` the keyed stage has a column ``ts_del`` for the deleteMarker's verdict."""
        assert self.stage is not None
        cols = ", ".join(D.ident(c) for c in b.columns)
        keys = ", ".join(D.ident(k) for k in b.keys)
        select = f"ENGINE=InnoDB SELECT {cols} FROM {self.table_sql} WHERE 1=0"
        assert self.con is not None
        try:  # MariaDB keys TEXT by a hash in the column's collation; MySQL refuses (1170)
            with self.con.cursor() as cur:
                mark = f"{_MARK['name']} TINYINT NOT NULL DEFAULT 0, " if marks else ""
                cur.execute(
                    f"CREATE TEMPORARY TABLE {self.stage} ({mark}UNIQUE KEY ({keys})) {select}"
                )
            return True
        except myerr.MySQLError as e:
            log.debug("staging table without a key on %s: %s", keys, redact(str(e)))
        self.execute(f"CREATE TEMPORARY TABLE {self.stage} {select}")
        return False

    # -- writing -----------------------------------------------------------------------------
    def write_rows(self, batch: pa.RecordBatch, b: Binding, split: base.Split) -> None:
        if self._bound is None:
            with self.lock:
                self._plan(b)
        b = self._bound or b
        key_names = [batch.schema.names[b.columns.index(k)] for k in b.keys]
        gone: tuple[str, list[Any]] | None = None
        if DELETED in batch.schema.names and not self._stage_marks:
            batch, dead = split_deleted(batch, key_names)
            if dead.num_rows:
                gone = self._delete_sql(dead, key_names)
        elif self.stage is not None and b.keys and not self._on_duplicate and not self._keyed_stage:
            batch = _last_per_key(batch, key_names)
        payloads = self._payloads(batch, self._load_kinds())
        with self.lock:
            self._load(payloads, split, gone)

    def _payloads(
        self, batch: pa.RecordBatch, kinds: Sequence[dict[str, Any]]
    ) -> list[tuple[int, pa.Buffer]]:
        """The batch as LOAD DATA text, ``batchSize`` rows per payload."""
        size = self.o.batch_size
        payloads = []
        for start in range(0, batch.num_rows, size):
            part = batch.slice(start, size)
            cols = [self._text(part.column(i), kinds[i]) for i in range(part.num_columns)]
            payloads.append((part.num_rows, wire.encode_tsv(cols)))
        return payloads

    def delete_absent(self, keys: pa.RecordBatch) -> None:
        """The keys loaded into a TEMPORARY table (indexed where the key's types allow), then
        one DELETE ... WHERE NOT EXISTS."""
        con = self.con
        assert con is not None
        names = keys.schema.names
        by_name = {c["name"]: c for c in self.columns_info}
        kinds = [by_name[k] for k in names]
        seen = D.ident(f"ts_sync_{uuid.uuid4().hex[:12]}")
        cols = ", ".join(D.ident(k) for k in names)
        index = "" if any(k["type"] in _UNINDEXED for k in kinds) else f"(INDEX ({cols})) "
        self.execute(
            f"CREATE TEMPORARY TABLE {seen} {index}ENGINE=InnoDB "
            f"SELECT {cols} FROM {self.table_sql} WHERE 1=0"
        )
        load = _load_sql(seen, kinds)
        try:
            for _, data in self._payloads(keys, kinds):
                wire.load_local(con, load, data)
        except myerr.MySQLError as e:
            raise translate(e, self.endpoint, self.where, table=self.o.table) from None
        self.execute(self.absent_sql(seen, names))
        self.execute(f"DROP TEMPORARY TABLE {seen}")

    def _delete_sql(self, dead: pa.RecordBatch, keys: list[str]) -> tuple[str, list[Any]]:
        """One DELETE of the keys whose last row carries the deleteMarker."""
        b = self._bound
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
        o = self.o
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
                            # a Note 1265 says the server cut a value it stored (a decimal
                            # rounded to its scale, a DATE's time of day, trailing spaces)
                            bad = [
                                w for w in cur.fetchall() if w[0] != "Note" or w[1] == _TRUNCATED
                            ]
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
        b = self._bound
        assert b is not None and self.stage is not None
        t, s = self.table_sql, self.stage
        cols = [D.ident(c) for c in b.columns]
        keys = [D.ident(k) for k in b.keys]
        rest = [c for c, name in zip(cols, b.columns, strict=True) if name not in b.keys]
        col_list = ", ".join(cols)
        on = " AND ".join(f"t.{k} = s.{k}" for k in keys)
        if self.mode in ("replace", "merge", "sync"):
            live = f" AS s WHERE s.{_MARK['name']} = 0" if self._stage_marks else ""
            return [
                f"DELETE t FROM {t} AS t JOIN {s} AS s ON {on}",
                f"INSERT INTO {t} ({col_list}) SELECT {col_list} FROM {s}{live}",
            ]
        if self._on_duplicate:
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
        """One column as LOAD DATA text (binary type), converted for the target column; a time
        with more fractional-second digits than the column keeps is refused: the server cuts
        them without a warning (MariaDB) or rounds them (MySQL)."""
        out = self._text_of(col, target)
        if target["type"] in _FRACTIONAL:
            digits = _fsp(target["column_type"])
            unit = getattr(col.type, "unit", None)  # a timestamp's, a time's, a duration's
            if unit in _UNIT_DIGITS and _UNIT_DIGITS[unit] <= digits:
                return out  # no finer value than the column keeps (no regex over every row)
            cut = pc.match_substring_regex(out, pattern=rf":\d{{1,2}}\.\d{{{digits}}}\d*[1-9]")
            if pc.any(cut).as_py():
                one = f" {out[0].as_py().decode(errors='replace')!r}" if len(out) == 1 else ""
                raise DirtyRecordError(
                    f"column {target['name']}: value{one} has more fractional-second digits "
                    f"than {target['column_type']} keeps ({digits}); MySQL would cut them"
                )
        return out

    def _text_of(self, col: pa.Array, target: dict[str, Any]) -> pa.Array:
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
            if target["type"] == "bit":
                _no_bit_strings(col, target)
            if target["type"] in _INTEGER_TYPES and text_with_fraction(col):
                one = f" {col[0].as_py()!r}" if len(col) == 1 else ""
                raise DirtyRecordError(
                    f"column {target['name']}: value{one} is not an integer, as "
                    f"{target['column_type']} holds (LOAD DATA would round it)"
                )
            if (
                target["type"] == "timestamp"
                and (pa.types.is_string(t) or pa.types.is_large_string(t))
                and (self.ctx.timezone not in ("UTC", "Etc/UTC") or _any_offset(col))
            ):
                return self._text_instants(col, target).cast(pa.string()).cast(pa.binary())
            if target["type"] == "datetime":
                col = text_instants_as_wall_times(
                    col, self.ctx.timezone, target["name"], target["column_type"]
                )
            if pa.types.is_fixed_size_binary(t):
                col = col.cast(pa.binary())
            out = wire.escape(col.cast(pa.binary()) if not pa.types.is_binary(col.type) else col)
            return out.cast(pa.binary())
        if pa.types.is_boolean(t):
            return col.cast(pa.int8()).cast(pa.string()).cast(pa.binary())
        if pa.types.is_integer(t) and target["type"] == "year":
            return _years(col, target)
        if pa.types.is_timestamp(t):
            col = self._timestamps(col, target)
            if target["type"] == "date":  # the day, in the job's zone, as DuckDB and SQLite
                col = col.cast(pa.date32())  # write it (the server would refuse the time)
            return col.cast(pa.string()).cast(pa.binary())
        if pa.types.is_integer(t) and target["type"] in _FLOATS:
            check_integers_fit_floats(col, _FLOATS[target["type"]], target["name"], "LOAD DATA")
        if target["type"] in _FLOATS:
            check_doubles_fit_floats(col, _FLOATS[target["type"]], target["name"], "LOAD DATA")
        if (
            pa.types.is_integer(t)
            or pa.types.is_floating(t)
            or pa.types.is_decimal(t)
            or pa.types.is_date(t)
            or pa.types.is_time(t)
        ):
            return col.cast(pa.string()).cast(pa.binary())
        if pa.types.is_duration(t):
            if t.unit == "ns":  # cut to microseconds, as nanosecond timestamps are
                col = col.cast(pa.duration("us"), safe=False)
            per_second = 10 ** _UNIT_DIGITS[col.type.unit]
            return pa.array(
                [
                    None if v is None else _duration_text(v, per_second)
                    for v in col.cast(pa.int64()).to_pylist()
                ],
                pa.binary(),
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

    def _text_instants(self, col: pa.Array, target: dict[str, Any]) -> pa.Array:
        """Text for a TIMESTAMP column as naive UTC times. The session's time_zone is +00:00,
        where the server would read the text as UTC, not in the job's zone as a naive timestamp
        is read: text with an offset (``Z``, ``+02:00``) is that instant, text without one a
        wall-clock time of the job's zone (a DST gap or overlap is dirty), and text that is
        neither in ISO form is a dirty record, never an instant of another zone."""
        zone = self.ctx.timezone
        col = col.cast(pa.string())
        zoned = pc.fill_null(pc.match_substring_regex(col, pattern=OFFSET_TEXT), False)
        none = pa.nulls(len(col), pa.string())
        try:
            wall = pc.if_else(zoned, none, col).cast(pa.timestamp("us"))
            instants = pc.if_else(zoned, col, none).cast(pa.timestamp("us", "UTC"))
        except pa.ArrowInvalid:
            one = f" {col[0].as_py()!r}" if len(col) == 1 else ""
            raise DirtyRecordError(
                f"column {target['name']}: value{one} is no date-time in ISO form "
                "(yyyy-MM-dd HH:mm:ss, optionally a fraction and an offset); MySQL would read it "
                f"as UTC, not in the job's time zone {zone}"
            ) from None
        wall = wall_times_as_instants(wall, zone, target["name"], target["column_type"], col)
        return pc.if_else(zoned, instants, wall.cast(pa.timestamp("us", "UTC"))).cast(
            pa.timestamp("us")
        )

    def _timestamps(self, col: pa.Array, target: dict[str, Any]) -> pa.Array:
        unit = "us" if col.type.unit in ("ns", "us") else col.type.unit
        tz = col.type.tz
        utc_column = target["type"] == "timestamp"
        if tz is None and utc_column and self.ctx.timezone not in ("UTC", "Etc/UTC"):
            col = wall_times_as_instants(
                col, self.ctx.timezone, target["name"], target["column_type"]
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
    def finish(self) -> None:
        if self.stage is not None:
            self.execute(f"DROP TEMPORARY TABLE IF EXISTS {self.stage}")

    def commit_transaction(self) -> None:
        assert self.con is not None
        try:
            self.con.commit()
        except myerr.MySQLError as e:
            raise translate(
                e, self.endpoint, self.where, table=self.o.table, what="commit"
            ) from None

    def rollback(self) -> None:
        if self.con is not None and self.con.open:
            try:
                self.con.rollback()
            except myerr.MySQLError as e:
                log.warning("rollback of %s failed: %s", self.o.table, redact(str(e)))

    def close(self) -> None:
        con, self.con = self.con, None
        if con is not None:
            with contextlib.suppress(Exception):  # closing a broken connection
                con.close()


# -- preSql / postSql that would end the transaction --------------------------------------------

_TRUNCATE = "truncate"

#: statements that stay inside a transaction, by their first word
_TRANSACTIONAL = frozenset(
    ("select", "insert", "update", "delete", "replace", "do", "with", "values", "table", "(")
    + ("set", "explain", "describe", "desc", "show", "load")
)

_WORD = re.compile(r"\(|[A-Za-z_]+")
_LEADING_COMMENT = re.compile(r"\s*(?:--[^\n]*(?:\n|$)|#[^\n]*(?:\n|$)|/\*(?!M?!).*?\*/)", re.S)
#: comments MySQL (``/*!``) or MariaDB (``/*M!``) runs as statements
_EXECUTABLE_COMMENT = re.compile(r"/\*M?!")
_QUOTED = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|`[^`]*`", re.S)
_TRUNCATE_TARGET = re.compile(r"truncate\s+(?:table\s+)?(?P<name>\S+?)\s*;?\s*$", re.I | re.S)


def _statements(sql: str) -> list[str]:
    """``sql`` split at the semicolons outside quotes, without leading comments, empty parts
    dropped."""
    out, buf, quote, i = [], [], "", 0
    while i < len(sql):
        ch = sql[i]
        if quote:
            if ch == "\\" and quote != "`":
                buf.append(sql[i : i + 2])
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "'\"`":
            quote = ch
        elif ch == ";":
            out.append("".join(buf))
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    out.append("".join(buf))
    return [t for t in map(_strip_comments, out) if t]


def _strip_comments(sql: str) -> str:
    """``sql`` without its leading whitespace and comments (``/*! ... */`` and MariaDB's
    ``/*M! ... */`` stay: the server runs what such a comment holds)."""
    while (m := _LEADING_COMMENT.match(sql)) is not None and m.group(0):
        sql = sql[m.end() :]
    return sql.strip()


def _outside_transaction(sql: str, table: str, database: str) -> str:
    """Why running ``sql`` in the writer's transaction would commit it or leave it ('' when
    it stays inside), or :data:`_TRUNCATE` when it is a TRUNCATE of the target ``table``
    (written ``@table`` or by name)."""
    parts = _statements(sql)
    verdicts = [_verdict(p, table, database) for p in parts]
    reasons = [v for v in verdicts if v and v != _TRUNCATE]
    if reasons:
        return "; ".join(reasons)
    if _TRUNCATE in verdicts:
        if len(parts) == 1:
            return _TRUNCATE
        return "a TRUNCATE of the target must stand alone in its preSql/postSql entry"
    return ""


#: what a SET may change that ends the writer's transaction or commits
_SET_ENDS = frozenset(("autocommit", "password", "transaction"))


def _verdict(text: str, table: str, database: str) -> str:
    if _EXECUTABLE_COMMENT.search(text):
        return "an executable comment (/*! ... */, MariaDB's /*M! ... */) runs what it holds"
    words = [w.lower() for w in _WORD.findall(text)[:3]] or [text[:20]]
    first, second = words[0], words[1] if len(words) > 1 else ""
    if first == "truncate":
        t = _TRUNCATE_TARGET.match(text)
        if t and _names_target(t["name"], table, database):
            return _TRUNCATE
        return f"TRUNCATE of {t['name'] if t else 'a table'} (not the target) commits implicitly"
    if first in ("create", "drop") and second == "temporary":
        return ""
    # every assignment of a SET, not its first few words: SET @a = 1, @b = 2, autocommit = 1
    everything = _WORD.findall(_QUOTED.sub("''", text)) if first == "set" else words
    changed = [w.lower() for w in everything[1:] if w.lower() in _SET_ENDS]
    if first == "set" and changed:
        return f"SET {changed[0].upper()} ends or changes the writer's transaction"
    if first == "call":
        return "a stored procedure may run statements that commit implicitly"
    if first in ("begin", "start", "commit", "rollback", "savepoint", "release", "xa"):
        return f"{first.upper()} ends or changes the writer's transaction"
    if first == "load" and second == "index":
        return "LOAD INDEX commits implicitly"
    if first not in _TRANSACTIONAL:
        return f"{first.upper()} commits implicitly in MySQL, as DDL and administration do"
    return ""


def _names_target(name: str, table: str, database: str) -> bool:
    """``name`` (as written after TRUNCATE) is ``@table`` or the target ``table``."""
    if name == "@table":
        return True
    got = [p.lower() for p in split_name(name)]
    want = [p.lower() for p in split_name(table)]
    if len(want) == 1:
        want = [database.lower(), *want]
    return got == want[-1:] or got == want


#: the staging table's column of merge's deleteMarker verdict (1: delete the key)
_MARK: dict[str, Any] = {
    "name": "ts_del",
    "type": "tinyint",
    "column_type": "tinyint",
    "charset": None,
}

#: column types MySQL cannot index without a prefix length
_UNINDEXED = frozenset(
    ("tinytext", "text", "mediumtext", "longtext", "tinyblob", "blob", "mediumblob", "longblob")
    + ("json", "geometry")
)


def _load_sql(target: str, kinds: Sequence[dict[str, Any]], verb: str = "") -> str:
    """``LOAD DATA LOCAL`` of tab-separated binary text into the columns ``kinds`` of
    ``target``: BIT through an integer, JSON and non-UTF-8 text converted from utf8mb4."""
    fields, sets = [], []
    for i, c in enumerate(kinds):
        name = D.ident(c["name"])
        if c["type"] == "bit":
            fields.append(f"@ts{i}")
            sets.append(f"{name} = CAST(@ts{i} AS UNSIGNED)")
        elif c["type"] == "json" or (c["charset"] and c["charset"] not in _UTF8):
            fields.append(f"@ts{i}")
            sets.append(f"{name} = CONVERT(@ts{i} USING utf8mb4)")
        else:
            fields.append(name)
    # the escape character named as a hex literal, which reads alike in every sql_mode: with
    # NO_BACKSLASH_ESCAPES (the server's or a session statement's) LOAD DATA's default escape
    # is none, and the escapes were stored as written (a tab as \t, NULL as the text \N)
    return (
        f"LOAD DATA LOCAL INFILE 'tidesync.tsv' {verb}INTO TABLE {target} CHARACTER SET "
        f"binary FIELDS ESCAPED BY 0x5C ({', '.join(fields)}, @ts_end)"
        + (f" SET {', '.join(sets)}" if sets else "")
    )


#: the server's "Data truncated" (a Note where the value it stored is cut)
_TRUNCATED = 1265

#: the fractional-second digits of an Arrow time unit
_UNIT_DIGITS = {"s": 0, "ms": 3, "us": 6, "ns": 9}

#: MySQL's column types of a time of day, whose fractional-second digits are ``(fsp)``
_FRACTIONAL = frozenset({"datetime", "timestamp", "time"})


def _fsp(column_type: str) -> int:
    """The fractional-second digits of a COLUMN_TYPE such as ``datetime(3)`` (0 without)."""
    m = re.search(r"\((\d)\)", column_type)
    return int(m.group(1)) if m else 0


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


def _any_offset(col: pa.Array) -> bool:
    """Whether any text carries an offset (``Z``, ``+08:00``): in a UTC job the rest of such
    text goes to the server as written, which reads it in the session's +00:00, but MariaDB
    refuses an offset ('Data truncated'), so a valid instant became a dirty record there."""
    return bool(pc.any(pc.match_substring_regex(col, pattern=OFFSET_TEXT)).as_py())


def _no_bit_strings(col: pa.Array, target: dict[str, Any]) -> None:
    """Text for a BIT column is read as a number (``CAST(... AS UNSIGNED)``), but text of
    zeros and ones is also how PostgreSQL and bit strings spell bits: ``'00010'`` (a
    PostgreSQL ``bit(5)``) was stored as ten, b'01010'. Such text of two or more digits is a
    dirty record; ``'0'`` and ``'1'`` mean the same either way."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        return
    odd = pc.fill_null(pc.match_substring_regex(col, r"^\s*[01]{2,}\s*$"), False)
    if pc.any(odd).as_py():
        v = col.filter(odd)[0].as_py()
        raise DirtyRecordError(
            f"column {target['name']}: text {v!r} for {target['column_type']} reads as the "
            f"number {int(v)} or as the bits {v.strip()}; write a number (from PostgreSQL's "
            "bit(n), select it as an integer: col::integer)"
        )


def _years(col: pa.Array, target: dict[str, Any]) -> pa.Array:
    """Integers for a YEAR column as LOAD DATA text of four digits. LOAD DATA reads text, where
    '0' is the year 2000 (MySQL's two-digit rule) but the number 0 is YEAR's zero, as the reader
    gives it: written as '0000'. 1 to 99 are no year YEAR holds (1901-2155) and MySQL would take
    them as 2001-2069 and 1970-1999: a dirty record, not a guessed century."""
    text = pc.utf8_lpad(col.cast(pa.string()), width=4, padding="0")
    if pc.any(pc.match_substring_regex(text, pattern=r"^00(?:0[1-9]|[1-9][0-9])$")).as_py():
        one = f" {col[0].as_py()}" if len(col) == 1 else ""
        raise DirtyRecordError(
            f"column {target['name']}: value{one} is not a year {target['column_type']} holds "
            "(1901-2155, or 0); MySQL would read it as a two-digit year"
        )
    return text.cast(pa.binary())


def _duration_text(ticks: int, per_second: int) -> str:
    """A duration of ``ticks`` (``per_second`` to the second, at most microseconds) as TIME
    text with six digits, from the integers: ``total_seconds()``, a float printed with six
    digits, rounded 1500 ns up to 00:00:00.000002 where nanosecond timestamps are cut."""
    sign = "-" if ticks < 0 else ""
    secs, frac = divmod(abs(ticks), per_second)
    h, rem = divmod(secs, 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{h:02d}:{m:02d}:{s:02d}.{frac * 10**6 // per_second:06d}"
