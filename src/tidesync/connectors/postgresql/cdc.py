"""``postgresqlcdc``: a PostgreSQL table's changes, from logical decoding, in windows.

The capture is a logical replication slot (plugin ``pgoutput``, which every PostgreSQL 10+ has)
and a publication of the job's tables, both named after the job (``slot`` / ``publication`` to
choose). The first run creates them and says so. Each run reads its window's span of the log
with ``pg_logical_slot_peek_binary_changes``, by binary ``COPY (SELECT ...) TO STDOUT`` read off
the socket (:mod:`.wire`; through ADBC where the connection is encrypted), so the messages arrive
as one Arrow binary column a piece at a time and are decoded a batch at a time
(:mod:`.pgoutput`). A peek never moves the slot:
the slot is advanced from :meth:`Reader.committed`, after the writer published and the engine
saved the positions, and only up to the oldest window still retained (``retention``), so a
rerun of any retained window reads the same span again. The log between is kept by the server:
that is what the slot costs (watch ``pg_replication_slots``; ``tidesync cdc drop`` removes it).

A span that does not start at the slot's position is read from a temporary copy of the slot
(``pg_copy_logical_replication_slot``) advanced to the span's start, so the main slot never
moves backwards or forwards on a read.

    {"name": "postgresqlcdc", "parameter": {
        "jdbcUrl": "jdbc:postgresql://127.0.0.1:5432/test", "username": "etl",
        "table": ["orders"], "startTime": "${start_time}", "endTime": "${end_time}"}}
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Callable, Generator, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from tidesync.connectors import base
from tidesync.connectors.postgresql import wire
from tidesync.connectors.postgresql.conn import (
    Endpoint,
    connect,
    edge,
    literal_text,
    psycopg_module,
    quote_ident,
    translate,
)
from tidesync.connectors.postgresql.pgoutput import (
    Decoder,
    Relation,
    Shape,
    Target,
    lsn_int,
    lsn_text,
)
from tidesync.connectors.postgresql.reader import Reader as TableReader
from tidesync.connectors.sql.cdc import (
    CDC_KEYS,
    CaptureReader,
    History,
    capture_name,
    cdc_options,
    from_numpy,
    from_strings,
    output_schema,
    refuse_new_tables,
    slices,
    snapshot_chunk,
)
from tidesync.errors import ConfigError, FatalError, TidesyncError

__all__ = ["Reader", "check", "drop", "status"]

log = logging.getLogger("tidesync.cdc")

_OWN_KEYS = ("slot", "publication", "plugin")
LABEL = CaptureReader.LABEL
#: read the peek by binary COPY off the socket where the connection is plain (False: always
#: through ADBC, as an encrypted connection is read)
SOCKET = True


class Reader(CaptureReader):
    """``postgresqlcdc``: one row per change (see the module docstring)."""

    kind = "postgresqlcdc"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.o = cdc_options(p, ctx)
        self.slot = self.capture = capture_name(ctx, p.str("slot"))
        self.publication = p.str("publication")
        p.str("plugin", "pgoutput", choices=("pgoutput",))
        if (
            len(self.slot) > 63
            or not self.slot.replace("_", "a").isalnum()
            or not self.slot.islower()
        ):
            p.problem(
                "slot", f"{self.slot!r} must be lower-case letters, digits and _ (63 at most)"
            )
        table_params = {k: v for k, v in params.items() if k not in CDC_KEYS and k not in _OWN_KEYS}
        table_params["column"] = self.o.columns or ["*"]
        if self.o.tables:
            table_params["table"] = self.o.tables
        elif not params.get("connection"):
            p.problem("table", "is required: the table (or list of tables) whose changes to read")
        try:
            self.tables = TableReader(table_params, ctx)
            self.tables.one_schema = False  # each table keeps its own columns
        except ConfigError as e:
            p.problems.extend(x for x in e.problems if x not in p.problems)
            self.tables = None  # type: ignore[assignment]
        for k in table_params:
            p.get(k)
        p.done()
        assert self.tables is not None
        if len(self.tables.sources) != 1:
            raise ConfigError(
                f"{ctx.path('connection')}: a capture reads one database; "
                "give one jdbcUrl (one job per database)"
            )
        self.session = self.tables.session
        self._planned = False
        self._conn: Any = None
        self.targets: dict[tuple[str, str], Target] = {}
        self.partitions: dict[tuple[str, str], Target] = {}  # of partitioned targets
        self.shapes: dict[tuple[str, str], Shape] = {}  # the planned tables and partitions
        self._schema: pa.Schema | None = None
        self.history: History | None = None

    # -- planning ------------------------------------------------------------------------------
    @property
    def endpoint(self) -> Endpoint:
        src = self.tables.sources[0]
        return src.endpoint or src.endpoints[0]

    def _control(self) -> Any:
        """The psycopg connection (autocommit) for the catalog, the slot and the clock."""
        if self._conn is None or self._conn.closed:
            self._conn, ep = connect(
                self.tables.sources[0].endpoints,
                self.session,
                self.ctx.timezone,
                autocommit=True,
                where=self.ctx.path("session"),
            )
            self.tables.sources[0].endpoint = ep
        return self._conn

    def _plan(self) -> None:
        if self._planned:
            return
        self.tables.schema()
        conn = self._control()
        pairs = []
        with edge(self.endpoint, where=self.ctx.path("table")):
            for plan in self.tables.plans:
                if plan.table is None:
                    raise ConfigError(
                        f"{self.ctx.path('querySql')}: a capture reads tables, not queries"
                    )
                schema_name, rel = conn.execute(
                    "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                    "ON n.oid = c.relnamespace WHERE c.oid = %s",
                    (plan.table.oid,),
                ).fetchone()
                if plan.table.kind not in ("r", "p"):
                    raise ConfigError(
                        f"{plan.key}: {plan.label} is not a table (views have no changes)"
                    )
                arrays = {c.name for c in plan.cols if c.sql.startswith("array_to_json(")}
                # ranges, multiranges and composites (or domains over them): their text holds
                # timestamptz parts in the session's zone, so the server writes them again
                arrays |= {
                    r[0]
                    for r in conn.execute(
                        "SELECT a.attname FROM pg_attribute a JOIN pg_type t ON t.oid = "
                        "a.atttypid LEFT JOIN pg_type b ON b.oid = t.typbasetype WHERE "
                        "a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND "
                        "coalesce(b.typtype, t.typtype) IN ('r', 'm', 'c')",
                        (plan.table.oid,),
                    ).fetchall()
                    if r[0] in {c.name for c in plan.cols}
                }
                key = [
                    r[0]
                    for r in conn.execute(
                        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = "
                        "i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = %s AND "
                        "i.indisprimary ORDER BY array_position(i.indkey, a.attnum)",
                        (plan.table.oid,),
                    ).fetchall()
                ]
                read = {c.name for c in plan.cols}
                generated = (
                    [
                        r[0]
                        for r in conn.execute(
                            "SELECT attname FROM pg_attribute WHERE attrelid = %s AND attnum > 0 "
                            "AND NOT attisdropped AND attgenerated <> '' ORDER BY attnum",
                            (plan.table.oid,),
                        ).fetchall()
                        if r[0] in read
                    ]
                    if conn.info.server_version >= 120000
                    else []
                )
                if generated:
                    raise ConfigError(
                        f"{self.ctx.path('column')}: table {plan.label}, column {generated[0]}: "
                        "a generated column, which the log does not carry (its changes would "
                        "come as NULL); leave it out with column (and compute it downstream)"
                    )
                ident = conn.execute(
                    "SELECT c.relreplident, ARRAY(SELECT a.attname::text FROM pg_index i JOIN "
                    "pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                    "WHERE i.indrelid = c.oid AND i.indisreplident ORDER BY a.attnum) "
                    "FROM pg_class c WHERE c.oid = %s",
                    (plan.table.oid,),
                ).fetchone()
                if key and ident[0] == "i" and sorted(ident[1]) != sorted(key):
                    q = self._qualified((schema_name, rel))
                    raise ConfigError(
                        f"{plan.key}: table {plan.label} has REPLICA IDENTITY USING INDEX on "
                        f"({', '.join(ident[1])}), not on its primary key ({', '.join(key)}): "
                        "the log would carry neither the old key of an update that changes the "
                        "primary key nor the primary key of a deleted row; ALTER TABLE "
                        f"{q} REPLICA IDENTITY DEFAULT (or FULL)"
                    )
                deferrable = conn.execute(
                    "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = %s AND "
                    "contype = 'p' AND condeferrable)",
                    (plan.table.oid,),
                ).fetchone()[0]
                target = self.targets[(schema_name, rel)] = Target(
                    plan.label,
                    {c.name: c.type for c in plan.cols},
                    arrays,
                    key,
                    {c.name for c in plan.cols if c.numeric},
                    bool(deferrable),
                )
                self.shapes[(schema_name, rel)] = _shape(conn, plan.table.oid)
                if plan.table.kind == "p":
                    # a publication without publish_via_partition_root logs a partitioned
                    # table's changes under its partitions' names
                    for leaf in conn.execute(
                        "SELECT n.nspname, c.relname, c.oid FROM pg_inherits i JOIN pg_class c ON "
                        "c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE i.inhparent = ANY(ARRAY(WITH RECURSIVE t(oid) AS (SELECT %s::oid "
                        "UNION SELECT inhrelid FROM pg_inherits JOIN t ON inhparent = t.oid) "
                        "SELECT oid FROM t)) AND c.relkind = 'r'",
                        (plan.table.oid,),
                    ).fetchall():
                        self.partitions[(leaf[0], leaf[1])] = target
                        self.shapes[(leaf[0], leaf[1])] = _shape(conn, leaf[2])
                pairs.append((plan.label, plan.schema))
        self._schema = output_schema(pairs, self.o.before_image, self.ctx.path("table"))
        self._planned = True

    @property
    def publication_name(self) -> str:
        return self.publication or self.slot

    def _now_ms(self) -> int:
        row = (
            self._control()
            .execute("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")
            .fetchone()
        )
        return int(row[0])

    def _slot(self) -> tuple[int, str] | None:
        """(confirmed_flush, database) of the job's slot, or None."""
        row = (
            self._control()
            .execute(
                "SELECT confirmed_flush_lsn::text, database, plugin FROM pg_replication_slots "
                "WHERE slot_name = %s",
                (self.slot,),
            )
            .fetchone()
        )
        if row is None:
            return None
        if row[2] != "pgoutput" or row[1] != self.endpoint.dbname:
            raise ConfigError(
                f"{self.ctx.path('slot')}: slot {self.slot} exists for {row[1]} with plugin "
                f"{row[2]}; name another slot"
            )
        return lsn_int(row[0]), str(row[1])

    def _ensure_publication(self) -> None:
        conn = self._control()
        names = [q for q in (self._qualified(k) for k in self.targets)]
        truncate = conn.info.server_version >= 110000
        row = conn.execute(
            "SELECT puballtables, pubinsert AND pubupdate AND pubdelete"
            + (" AND pubtruncate" if truncate else "")
            + " FROM pg_publication WHERE pubname = %s",
            (self.publication_name,),
        ).fetchone()
        publish = "insert, update, delete" + (", truncate" if truncate else "")
        if row is not None and not row[1]:
            if self.publication:
                raise ConfigError(
                    f"{self.ctx.path('publication')}: publication {self.publication} does not "
                    "publish every kind of change, so some would be missing from the capture; "
                    f"ALTER PUBLICATION {self.publication} SET (publish = '{publish}')"
                )
            conn.execute(
                f"ALTER PUBLICATION {quote_ident(self.publication_name)} "
                f"SET (publish = '{publish}')"
            )
        if row is None:
            if self.publication:
                raise ConfigError(
                    f"{self.ctx.path('publication')}: publication {self.publication} does not "
                    "exist; create it (CREATE PUBLICATION ... FOR TABLE ...) or leave "
                    "publication out to let tidesync create one"
                )
            conn.execute(
                f"CREATE PUBLICATION {quote_ident(self.publication_name)} FOR TABLE "
                f"{', '.join(names)} WITH (publish = '{publish}')"
            )
            log.warning("created publication %s for %s", self.publication_name, ", ".join(names))
            return
        self._check_publication_lists()
        self._check_via_root()
        if row[0]:
            return
        # pg_publication_tables names a partitioned member by its partitions (unless the
        # publication publishes via the root): its direct members count too
        have = {
            (r[0], r[1])
            for r in conn.execute(
                "SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s "
                "UNION SELECT n.nspname, c.relname FROM pg_publication_rel r JOIN "
                "pg_publication p ON p.oid = r.prpubid JOIN pg_class c ON c.oid = r.prrelid "
                "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE p.pubname = %s",
                (self.publication_name, self.publication_name),
            ).fetchall()
        }
        missing = [k for k in self.targets if k not in have]
        if missing:
            if self.publication:
                raise ConfigError(
                    f"{self.ctx.path('publication')}: publication {self.publication} does not "
                    f"publish {', '.join('.'.join(m) for m in missing)}; ALTER PUBLICATION "
                    f"{self.publication} ADD TABLE ..."
                )
            conn.execute(
                f"ALTER PUBLICATION {quote_ident(self.publication_name)} ADD TABLE "
                + ", ".join(self._qualified(m) for m in missing)
            )
            log.warning(
                "added %s to publication %s",
                ", ".join(".".join(m) for m in missing),
                self.publication_name,
            )

    def _check_via_root(self) -> None:
        """A publication that publishes via the partition root logs a partition's changes under
        its topmost published ancestor's name: a captured partition with such an ancestor would
        have none of its changes (an error, naming the way on)."""
        conn = self._control()
        if conn.info.server_version < 130000:
            return
        pub = self.publication_name
        via = conn.execute(
            "SELECT pubviaroot FROM pg_publication WHERE pubname = %s", (pub,)
        ).fetchone()
        if not via or not via[0]:
            return
        for k, t in self.targets.items():
            up = conn.execute(
                "SELECT n.nspname || '.' || c.relname FROM pg_partition_ancestors(%s) a "
                "JOIN pg_class c ON c.oid = a.relid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_publication_tables t ON t.schemaname = n.nspname AND t.tablename = "
                "c.relname AND t.pubname = %s WHERE a.relid <> %s",
                (self.shapes[k].oid, pub, self.shapes[k].oid),
            ).fetchone()
            if up is not None:
                raise ConfigError(
                    f"{self.ctx.path('publication')}: publication {pub} publishes via the "
                    f"partition root (publish_via_partition_root), so the changes of table "
                    f"{t.label}, a partition, are logged as {up[0]}'s and none as its own; "
                    f"capture {up[0]}, or ALTER PUBLICATION {pub} SET "
                    "(publish_via_partition_root = false)"
                )

    def _check_publication_lists(self) -> None:
        """A publication's column list (PostgreSQL 15+) leaves columns out of the log, whose
        values would come as NULL: a column the job reads and the list leaves out is an error.
        So is a row filter: the changes of the rows it leaves out are not in the log."""
        conn = self._control()
        if conn.info.server_version < 150000:
            return
        tables = {**self.partitions, **self.targets}
        problems: dict[str, list[str]] = {}
        filters: dict[str, str] = {}
        for schema, rel, names, where in conn.execute(
            "SELECT schemaname, tablename, attnames::text[], rowfilter FROM pg_publication_tables "
            "WHERE pubname = %s AND (attnames IS NOT NULL OR rowfilter IS NOT NULL)",
            (self.publication_name,),
        ).fetchall():
            target = tables.get((schema, rel))
            if target is None:
                continue
            label = target.label if (schema, rel) in self.targets else f"{target.label} ({rel})"
            left = [c for c in target.types if names is not None and c not in set(names)]
            if left:
                problems.setdefault(label, left)
            if where is not None:
                filters.setdefault(label, where)
        pub = self.publication_name
        if filters:
            what = "; ".join(f"table {t} WHERE {w}" for t, w in filters.items())
            raise ConfigError(
                f"{self.ctx.path('publication')}: publication {pub} has a row filter: {what}; "
                "the changes of the rows it leaves out are not in the log (and an update of a "
                "row that enters or leaves it is logged as an insert or a delete); publish the "
                f"table whole (ALTER PUBLICATION {pub} SET TABLE ...) and filter downstream"
            )
        if problems:
            what = "; ".join(
                f"table {t} leaves out column{'s' if len(c) > 1 else ''} {', '.join(c)}"
                for t, c in problems.items()
            )
            raise ConfigError(
                f"{self.ctx.path('publication')}: publication {pub} has a column list: {what}, "
                f"whose values would come as NULL; add them to the list (ALTER PUBLICATION {pub} "
                "SET TABLE ...) or leave them out with column"
            )

    @staticmethod
    def _qualified(k: tuple[str, str]) -> str:
        return f"{quote_ident(k[0])}.{quote_ident(k[1])}"

    def _log_end(self) -> tuple[int, int]:
        row = (
            self._control()
            .execute(
                "SELECT pg_current_wal_flush_lsn()::text, "
                "(extract(epoch FROM clock_timestamp()) * 1000)::bigint"
            )
            .fetchone()
        )
        return lsn_int(row[0]), int(row[1])

    def _open(self, history: History | None) -> History:
        """The capture to go on from (see :meth:`_capture`), with each captured table's OID:
        the one saved must be the table's now (a table replaced between runs is an error, even
        when the log holds nothing of the old one). A table without one where others have one
        is new to the capture: an error (its changes until it joined the publication would be
        missing from the window); where none has one (positions saved by an earlier version, a
        first run) they are recorded."""
        saved = history.tables if history is not None else {}
        tables = sorted(k for k, v in saved.items() if not isinstance(v, list))
        new = [t.label for k, t in self.targets.items() if tables and ".".join(k) not in saved]
        refuse_new_tables(
            self.ctx.where,
            new,
            tables,
            "its changes before it joined the publication are not in the log, so this window "
            "would lack them",
        )
        opened = self._capture(history)
        now = {".".join(k): self.shapes[k].oid for k in self.targets}
        for k, t in self.targets.items():
            name = ".".join(k)
            was = saved.get(name)
            if was is not None and int(was) != now[name]:
                raise FatalError(
                    f"{self.ctx.where}: table {t.label} is not the table this capture has "
                    f"read: its OID is {now[name]} now and was {was} (saved by the last run): "
                    "it was dropped and created again, or another table was renamed to its "
                    "name, so its rows were replaced without a change of each in the log and "
                    "its first changes may be missing from it; start a new capture (`tidesync "
                    "cdc drop` the job, then run it with snapshot: true), and keep a captured "
                    "table in place while it is captured"
                )
        # partitions: [OID, the captured table's name]; one gone since (DETACH PARTITION,
        # DROP TABLE) took its rows out of the table without a delete of each in the log, and
        # its changes before are under a name the run no longer knows
        parent = {id(t): ".".join(k) for k, t in self.targets.items()}
        leaves = {
            ".".join(k): [self.shapes[k].oid, parent[id(t)]] for k, t in self.partitions.items()
        }
        for name, was in saved.items():
            if not isinstance(was, list) or was[1] not in now:
                continue
            if leaves.get(name, [None])[0] != was[0]:
                label = next(t.label for k, t in self.targets.items() if ".".join(k) == was[1])
                raise FatalError(
                    f"{self.ctx.where}: table {label}: its partition {name} (OID {was[0]}) is "
                    "no longer one of its partitions (DETACH PARTITION, DROP TABLE, or another "
                    "table put in its place): its rows left the table without a delete of each "
                    "in the log, and its changes logged before are not the table's now; start "
                    "a new capture (`tidesync cdc drop` the job, then run it with snapshot: "
                    "true)"
                )
        # partitions new since the last run (positions that record partitions: with types):
        # one created as a partition holds only rows logged as the table's changes; a table
        # attached (ATTACH PARTITION) brings the rows it held, never changes of the table
        if history is not None and history.types:
            for k, t in self.partitions.items():
                if ".".join(k) not in saved and parent[id(t)] in saved:
                    self._refuse_attached(k, t, self.shapes[k].oid)
        return replace(opened, tables={**now, **leaves})  # those of the tables read now

    def _refuse_attached(self, k: tuple[str, str], target: Target, oid: int) -> None:
        """Fail where partition ``k`` (OID ``oid``) of captured table ``target`` holds a row
        older than its joining the table (the youngest ``pg_inherits`` link up to it: a
        sub-partitioned table may be attached whole): a table attached with its rows, which are
        the table's now without a change of each in the log. One scan of the partition."""
        root = next(self.shapes[q].oid for q, t in self.targets.items() if t is target)
        sql = (
            f"SELECT EXISTS (SELECT 1 FROM {self._qualified(k)} WHERE age(xmin) > "
            "(WITH RECURSIVE up(rel, a) AS (SELECT inhparent, age(xmin) FROM pg_inherits "
            "WHERE inhrelid = %(leaf)s UNION ALL SELECT i.inhparent, age(i.xmin) FROM "
            "pg_inherits i JOIN up ON i.inhrelid = up.rel WHERE up.rel <> %(root)s) "
            "SELECT min(a) FROM up))"
        )
        with edge(self.endpoint, where=self.ctx.where):
            older = self._control().execute(sql, {"leaf": oid, "root": root}).fetchone()[0]
        if older:
            raise FatalError(
                f"{self.ctx.where}: table {target.label}: its partition {'.'.join(k)} holds rows "
                "from before it became one (ALTER TABLE ... ATTACH PARTITION of a table with "
                "rows): they are the table's now without a change of each in the log, so the "
                "capture never gave them; start a new capture with a snapshot (`tidesync cdc "
                "drop` the job, then run it with snapshot: true), and create partitions (CREATE "
                "TABLE ... PARTITION OF) or attach them empty while the table is captured"
            )

    def _capture(self, history: History | None) -> History:
        ep = self.endpoint
        with edge(ep, where=self.ctx.path("table")):
            self._ensure_publication()
            slot = self._slot()
            if self.o.snapshot and history is None:
                # the first run creates the slot with its snapshot, in read(); a slot without a
                # saved history is left by a first run that failed before its commit
                if slot is not None:
                    self._drop_unsaved_slot()
                return History(self.slot, self._now_ms(), None)
            if slot is None:
                if history is not None:
                    raise FatalError(
                        f"{self.ctx.where}: replication slot {self.slot} is gone from {ep.label}; "
                        "the changes since this job's last run are lost to it: `tidesync cdc "
                        "drop` the job, then run it again to start a new capture"
                    )
                row = (
                    self._control()
                    .execute(
                        "SELECT lsn::text, (extract(epoch FROM clock_timestamp()) * 1000)::bigint "
                        "FROM pg_create_logical_replication_slot(%s, 'pgoutput')",
                        (self.slot,),
                    )
                    .fetchone()
                )
                log.warning(
                    "created replication slot %s at %s on %s: changes committed from now on are "
                    "captured; earlier ones are not in this capture",
                    self.slot, row[0], ep.label,
                )  # fmt: skip
                return History(self.slot, int(row[1]), lsn_int(row[0]))
            if history is None:
                log.warning(
                    "replication slot %s exists; capturing from its position %s",
                    self.slot, lsn_text(slot[0]),
                )  # fmt: skip
                return History(self.slot, self._now_ms(), slot[0])
            if slot[0] > int(history.horizon):
                raise FatalError(
                    f"{self.ctx.where}: slot {self.slot} was moved to {lsn_text(slot[0])}, past "
                    f"this job's oldest retained position {lsn_text(int(history.horizon))}: the "
                    "changes between are purged; `tidesync cdc drop` the job and start anew"
                )
            end = self._log_end()[0]
            if history.last_hi is not None and int(history.last_hi) > end:
                raise FatalError(
                    f"{self.ctx.where}: the log of {ep.label} ends at {lsn_text(end)}, before "
                    f"this capture's saved position {lsn_text(int(history.last_hi))}: the server "
                    "was restored from a backup, or a standby behind it was promoted, so the "
                    "changes it logs up to that position would be skipped; `tidesync cdc drop` "
                    "the job and run it with snapshot: true to start anew"
                )
            return history

    def _drop_unsaved_slot(self) -> None:
        active = (
            self._control()
            .execute(
                "SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (self.slot,)
            )
            .fetchone()
        )
        if active and active[0] is not None:
            raise FatalError(
                f"{self.ctx.where}: replication slot {self.slot} exists without a saved run of "
                f"this job and is in use by process {active[0]}; a snapshot can only be taken by "
                "creating the slot: name another slot, or stop its user and drop it"
            )
        self._control().execute("SELECT pg_drop_replication_slot(%s)", (self.slot,))
        log.warning(
            "dropped replication slot %s, left by a first run that did not commit: a new "
            "snapshot is taken", self.slot,
        )  # fmt: skip

    def _snapshot(self) -> Generator[base.Chunk, None, tuple[int, int]]:
        """Create the slot on a replication connection with an exported snapshot (its
        consistent point is where the log is read from) and read the tables in that snapshot
        with the batch reader's own splits and decoding."""

        from tidesync.connectors.postgresql.reader import PgSplit
        from tidesync.connectors.publish import hook

        ep = self.endpoint
        assert self._schema is not None
        several = len(self.targets) > 1
        try:
            rep = psycopg_module().connect(**ep.kwargs(), replication="database", autocommit=True)
        except Exception as e:
            raise translate(e, ep, connecting=True) from e
        try:
            created = self._now_ms()
            ident = quote_ident(self.slot)
            sql = (
                f"CREATE_REPLICATION_SLOT {ident} LOGICAL pgoutput (SNAPSHOT 'export')"
                if rep.info.server_version >= 150000
                else f"CREATE_REPLICATION_SLOT {ident} LOGICAL pgoutput EXPORT_SNAPSHOT"
            )
            res = rep.pgconn.exec_(sql.encode())
            if res.status != 2:  # PGRES_TUPLES_OK
                msg = (res.error_message or b"").decode("utf-8", "replace").strip()
                raise FatalError(
                    f"{self.ctx.where}: creating replication slot {self.slot} on {ep.label} "
                    f"with a snapshot failed: {msg} (see `tidesync cdc check`)"
                )
            lsn_s = res.get_value(0, 1).decode()
            snapshot = res.get_value(0, 2).decode()
            log.warning(
                "created replication slot %s at %s on %s with a snapshot: the tables' rows as "
                "of that point come first (_op = r), then the changes committed after it",
                self.slot, lsn_s, ep.label,
            )  # fmt: skip
            hook("cdc.snapshot")
            for split in self.tables.splits(1):
                assert isinstance(split, PgSplit)
                label = split.table if several else None
                for part in self.tables.read(replace(split, snapshot=snapshot)):
                    yield snapshot_chunk(part, label, self._schema, lsn_s, created * 1000)
        finally:
            with contextlib.suppress(Exception):
                rep.close()
        return lsn_int(lsn_s), created

    def _changes(self, lo: int, upto: int, cut_us: int | None) -> Generator[base.Chunk, None, int]:
        """Decode the transactions committed in [lo, upto) (cut before the first committed at or
        after ``cut_us``); returns where the span ends."""
        ep = self.endpoint
        slot = self._slot()
        if slot is None:
            raise FatalError(f"{self.ctx.where}: replication slot {self.slot} disappeared")
        if lo < slot[0]:
            raise FatalError(
                f"{self.ctx.where}: the span from {lsn_text(lo)} is no longer in slot "
                f"{self.slot} (it starts at {lsn_text(slot[0])}): those changes are purged"
            )
        assert self._schema is not None
        decoder = Decoder(
            {**self.partitions, **self.targets},
            self._schema,
            self._array_text,
            self.o.before_image,
            self.shapes,
            f"{self.ctx.where}: log span {lsn_text(lo)} to {lsn_text(upto)}: ",
            self._type_name,
            self._partition_of,
        )
        ahead: _Ahead | None = None
        close: Callable[[], None] | None = None
        try:
            batches, close = self._peek(lo, slot[0], upto)
            carry: list[pa.RecordBatch] = []
            ahead = _Ahead(batches)
            for rb in ahead:
                carry.append(rb)
                # the messages stay in their batches (the decoder copies them once, end to end);
                # only the LSN texts are combined
                tbl = pa.Table.from_batches(carry)
                if not tbl.num_rows:
                    carry = []
                    continue
                lsn, data = tbl.column(0).combine_chunks(), tbl.column(1)
                ci, clsn, cus = decoder.transactions(data)
                if not len(ci):
                    continue
                stop = np.flatnonzero(clsn >= upto)
                if cut_us is not None:
                    stop = np.union1d(stop, np.flatnonzero(cus >= cut_us))
                k = int(stop[0]) if len(stop) else len(ci)
                end_idx = int(ci[k - 1]) + 1 if k else 0
                if end_idx:
                    yield from self._emit(decoder.decode(lsn, data, end_idx))
                if len(stop):
                    return min(int(clsn[k]), upto)
                rest = tbl.slice(end_idx)
                carry = rest.to_batches() if rest.num_rows else []
        except TidesyncError:
            raise
        except Exception as e:
            raise translate(e, ep) from e
        finally:
            if ahead is not None:
                ahead.close()  # before the connection goes: the thread may still read from it
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        return upto

    def _settings(self) -> list[str]:
        """The session the peek runs in: pgoutput writes values with the backend's settings.
        The text forms the decoder parses come after the job's own session (which may set them
        for the batch reader, which reads those types in binary, unmoved); the types both
        readers keep as the server's text (interval, money, ...) keep the job's session, as the
        batch reader casts them in it (IntervalStyle, lc_monetary)."""
        return [
            *self.session,
            "SET DateStyle = 'ISO, YMD'",
            "SET extra_float_digits = 1",
            "SET bytea_output = 'hex'",
            # timestamptz text in UTC: always a whole-hour offset that Arrow parses (a zone's
            # local mean time before 1900 has offsets in seconds, +08:05:43); the instant is
            # the same in any zone
            "SET TIME ZONE 'UTC'",
        ]

    def _peek_sql(self, execute: Callable[[str], Any], lo: int, at: int, upto: int) -> str:
        """The peek of the span [lo, upto) (``at``: the slot's position), on the connection whose
        ``execute`` runs a statement: a span that starts later reads a temporary copy of the
        slot (it belongs to that connection's session) advanced to ``lo``."""
        name = self.slot
        if lo > at:
            name = f"{self.slot[:40]}_r{os.getpid()}_{id(self) % 100000}"
            execute(
                f"SELECT 1 FROM pg_copy_logical_replication_slot({literal_text(self.slot)}, "
                f"{literal_text(name)}, true)"
            )
            execute(
                f"SELECT 1 FROM pg_replication_slot_advance({literal_text(name)}, "
                f"{literal_text(lsn_text(lo))}::pg_lsn)"
            )
        return (
            "SELECT lsn::text AS lsn, data FROM pg_logical_slot_peek_binary_changes("
            f"{literal_text(name)}, {literal_text(lsn_text(upto))}::pg_lsn, NULL, "
            f"'proto_version', '1', 'publication_names', {literal_text(self.publication_name)})"
        )

    def _peek(
        self, lo: int, at: int, upto: int
    ) -> tuple[Iterator[pa.RecordBatch], Callable[[], None]]:
        """The span's messages as batches of (lsn string, data binary), and what closes their
        connection: binary COPY off the socket (:mod:`.wire`) where the connection is plain,
        else ADBC (TLS, GSS). The socket path spares the import of ADBC (it imports pandas, a
        quarter of a second) and ADBC's conversion of each row."""
        ep = self.endpoint
        place = f"slot {self.slot}"
        if SOCKET:
            conn, _ = connect(
                [ep],
                self._settings(),
                self.ctx.timezone,
                autocommit=True,
                where=self.ctx.path("session"),
            )
            if wire.usable(conn):
                try:
                    with edge(ep, where=self.ctx.where):
                        sql = self._peek_sql(lambda q: conn.execute(q).fetchall(), lo, at, upto)
                except BaseException:
                    conn.close()
                    raise
                return _copied(conn, sql, ep, place), conn.close
            conn.close()
        return self._peek_adbc(lo, at, upto, place)

    def _peek_adbc(
        self, lo: int, at: int, upto: int, place: str
    ) -> tuple[Iterator[pa.RecordBatch], Callable[[], None]]:
        from tidesync.connectors.postgresql.reader import _adbc, _stream

        ep = self.endpoint
        try:
            con = _adbc().connect(ep.uri(), autocommit=True)
        except Exception as e:
            raise translate(e, ep, connecting=True) from e
        cur = con.cursor()

        def close() -> None:
            try:
                cur.close()
            finally:
                con.close()

        try:
            with edge(ep, where=self.ctx.path("session")):
                for stmt in [f"SET TIME ZONE {literal_text(self.ctx.timezone)}", *self._settings()]:
                    cur.execute(stmt)

            def execute(q: str) -> None:
                cur.execute(q)
                cur.fetchall()

            with edge(ep, where=self.ctx.where):
                cur.execute(self._peek_sql(execute, lo, at, upto))
        except BaseException:
            with contextlib.suppress(Exception):
                close()
            raise
        return _stream(cur, ep, place), close

    def _emit(self, d: Any) -> Iterator[base.Chunk]:
        batch = d.batch
        if batch is None or not batch.num_rows:
            return
        if d.dirty:
            from tidesync.engine.dirty import row_of

            dirty = [
                base.Dirty(why, row_of(batch, i), f"{batch.column('_pos')[i]}")
                for i, why in d.dirty
            ]
            keep = np.ones(batch.num_rows, dtype=bool)
            keep[[i for i, _ in d.dirty]] = False
            batch = batch.filter(from_numpy(keep))
            yield base.Chunk(batch, dirty)
            return
        step = self.ctx.batch_rows
        for s in range(0, batch.num_rows, step):
            yield base.Chunk(batch.slice(s, step))

    def _types(self) -> dict[str, dict[str, str]]:
        """The read columns' types now (``format_type``; an enum's, or an enum array's, with
        its labels: ``ALTER TYPE ... RENAME VALUE`` changes the values without a change of each
        row), by the tables' qualified names."""
        oids = {self.shapes[k].oid: (".".join(k), t) for k, t in self.targets.items()}
        out: dict[str, dict[str, str]] = {name: {} for name, _ in oids.values()}
        sql = (
            "SELECT a.attrelid::bigint, a.attname::text, format_type(a.atttypid, a.atttypmod) "
            "|| coalesce(' enum(' || (SELECT string_agg(quote_literal(e.enumlabel), ',' ORDER BY "
            "e.enumsortorder) FROM pg_enum e WHERE e.enumtypid IN (t.oid, t.typelem)) || ')', "
            "'') FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid WHERE a.attrelid = "
            "ANY(%s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped"
        )
        with edge(self.endpoint, where=self.ctx.where):
            for oid, name, typ in self._control().execute(sql, (list(oids),)).fetchall():
                table, target = oids[int(oid)]
                if name in target.types:
                    out[table][name] = str(typ)
        return out

    def _filled(self, table: str, columns: list[str]) -> list[str]:
        """Columns with a default (kept as the rows' missing value, or written into every row
        by a rewrite), generated or identity ones (numbered by a rewrite)."""
        if not columns:
            return []
        k = next(k for k in self.targets if ".".join(k) == table)
        conn = self._control()
        v = conn.info.server_version
        gen = "attgenerated <> ''" if v >= 120000 else "false"
        missing = "atthasmissing" if v >= 110000 else "false"
        ident = "attidentity <> ''" if v >= 100000 else "false"
        sql = (
            "SELECT attname::text FROM pg_attribute WHERE attrelid = %s AND attname = ANY(%s) "
            f"AND (atthasdef OR {gen} OR {missing} OR {ident}) ORDER BY attnum"
        )
        with edge(self.endpoint, where=self.ctx.where):
            rows = conn.execute(sql, (self.shapes[k].oid, columns)).fetchall()
        return [str(r[0]) for r in rows]

    def _labels(self) -> dict[str, str]:
        return {".".join(k): t.label for k, t in self.targets.items()}

    def _unread(self) -> dict[str, list[str]]:
        return {
            ".".join(k): [n for _, n in self.shapes[k].attrs if n is not None and n not in t.types]
            for k, t in self.targets.items()
        }

    def _keeps(self, old: str, new: str) -> bool:
        """Whether ``ALTER COLUMN ... TYPE`` from ``old`` to ``new`` (``format_type`` names)
        keeps every value as it was or fails: integers (a value out of range fails it), text
        and varchar made no shorter, a numeric whose scale does not shrink, a time whose
        precision does not (PostgreSQL rounds to the new scale or precision without a word,
        and cuts a varchar's excess spaces). A ``USING`` expression of the same type is not
        seen (the catalog does not keep it)."""
        # a type outside the session's search_path is named with its schema (another
        # session setting of the job, another name for the same type)
        old, new = _SCHEMA_PREFIX.sub("", old), _SCHEMA_PREFIX.sub("", new)
        if old == new:
            return True
        if " enum(" in old and " enum(" in new:  # the same labels, and maybe others added
            (ta, la), (tb, lb) = (x.split(" enum(", 1) for x in (old, new))
            return ta == tb and set(_LABEL.findall(la)) <= set(_LABEL.findall(lb))
        a, b = _PG_TYPE.match(old), _PG_TYPE.match(new)
        if a is None or b is None:
            return False
        (ta, pa0, sa, za), (tb, pb, sb, zb) = a.groups(), b.groups()
        if {ta, tb} <= {"smallint", "integer", "bigint"}:
            return True
        if ta in ("text", "character varying") and tb in ("text", "character varying"):
            return tb == "text" or pb is None or (ta != "text" and pa0 is not None
                                                  and int(pb) >= int(pa0))  # fmt: skip
        if ta == tb == "numeric":
            return pb is None or (pa0 is not None and int(sb or 0) >= int(sa or 0))
        if ta == tb and ta in ("timestamp", "time") and za == zb:
            return int(pb if pb is not None else 6) >= int(pa0 if pa0 is not None else 6)
        return False

    def _partition_of(self, rel: Relation) -> tuple[Target, Shape] | None:
        """The captured table whose partition ``rel`` is (one made after the run planned), with
        its shape; None for another table."""
        conn = self._control()
        oids = {self.shapes[k].oid: t for k, t in self.targets.items()}
        if rel.relid in oids:
            raise FatalError(
                f"{self.ctx.where}: table {oids[rel.relid].label} was renamed to "
                f"{rel.schema}.{rel.name} while captured (the log names it so from there on); "
                "rename it back, or start a new capture under the new name (`tidesync cdc "
                "drop` the job, then run it with snapshot: true)"
            )
        ancestors = conn.info.server_version >= 120000  # pg_partition_ancestors (via root: 13)
        with edge(self.endpoint, where=self.ctx.where):
            for (up,) in conn.execute(
                "WITH RECURSIVE up(oid) AS (SELECT inhparent FROM pg_inherits WHERE inhrelid = "
                "%s UNION SELECT inhparent FROM pg_inherits JOIN up ON inhrelid = up.oid) "
                "SELECT oid FROM up",
                (rel.relid,),
            ).fetchall():
                if int(up) in oids:
                    self._refuse_attached((rel.schema, rel.name), oids[int(up)], rel.relid)
                    return oids[int(up)], _shape(conn, rel.relid)
            # a captured partition's changes logged under an ancestor's name: the publication
            # published via the partition root then
            for k, t in self.targets.items() if ancestors else ():
                if conn.execute(
                    "SELECT 1 FROM pg_partition_ancestors(%s) WHERE relid = %s",
                    (self.shapes[k].oid, rel.relid),
                ).fetchone():
                    raise FatalError(
                        f"{self.ctx.where}: table {t.label}, a partition: the log holds changes "
                        f"under its ancestor {rel.schema}.{rel.name}'s name (the publication "
                        f"published via the partition root, publish_via_partition_root, then), "
                        "and none of its own may be there; start a new capture (`tidesync cdc "
                        "drop` the job, then run it with snapshot: true), or capture the root"
                    )
        return None

    def _type_name(self, oid: int, typmod: int) -> str:
        conn = self._control()
        with edge(self.endpoint, where=self.ctx.where):
            return str(conn.execute("SELECT format_type(%s, %s)", (oid, typmod)).fetchone()[0])

    def _array_text(self, arr: pa.Array, oid: int, typmod: int) -> pa.Array:
        """Values (PostgreSQL's text form, written in the peek's session) as the batch reader
        reads them, converted by the server in the batch reader's session with its own
        expression: an array as JSON text; a range, multirange or composite as its text, whose
        timestamptz parts are then in the job's time zone (the peek writes them in UTC)."""
        conn = self._control()
        with edge(self.endpoint, where=self.ctx.where):
            tname, array = conn.execute(
                "SELECT format_type(%s, %s), typcategory = 'A' FROM pg_type WHERE oid = %s",
                (oid, typmod, oid),
            ).fetchone()
            expr = f"array_to_json(v::{tname})::text" if array else f"v::{tname}::text"
            rows = conn.execute(
                f"SELECT {expr} FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, i) ORDER BY i",
                (arr.to_pylist(),),
            ).fetchall()
        return from_strings([r[0] for r in rows])

    def committed(self, positions: dict[str, Any] | None = None) -> None:
        """The writer published and the positions are saved: move the slot to the oldest
        position a rerun within the retention may need, so the server frees the log before it."""
        history = History.from_json((positions or {}).get(LABEL))
        if history is None:
            return
        with edge(self.endpoint, where=self.ctx.where):
            slot = self._slot()
            if slot is not None and int(history.horizon) > slot[0]:
                self._control().execute(
                    "SELECT pg_replication_slot_advance(%s, %s::pg_lsn)",
                    (self.slot, lsn_text(int(history.horizon))),
                )

    def close(self) -> None:
        if self.tables is not None:
            self.tables.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


class _Ahead:
    """The batches of an iterator, fetched by a thread of their own one batch ahead: the next
    batch travels from the server while this one is decoded. A failure of the fetch is raised
    where its batch would have come; ``close()`` stops the thread and waits for it."""

    _END = object()

    def __init__(self, it: Iterator[pa.RecordBatch], depth: int = 2):
        import queue
        import threading

        self._q: queue.Queue[Any] = queue.Queue(depth)
        self._stop = threading.Event()
        self._it = it
        self._thread = threading.Thread(target=self._run, name="pgcdc-fetch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        item: Any = self._END
        try:
            for rb in self._it:
                if not self._put(rb):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the reading thread
            item = e
        finally:
            close = getattr(self._it, "close", None)
            if close is not None:  # a generator stopped early lets go of its socket now
                with contextlib.suppress(Exception):
                    close()
        self._put(item)

    def _put(self, item: Any) -> bool:
        """Hand ``item`` over, unless the reader stopped first (False)."""
        import queue

        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


def _copied(conn: Any, sql: str, ep: Endpoint, place: str) -> Iterator[pa.RecordBatch]:
    """``sql``'s rows (lsn text, data bytea) read by binary COPY off ``conn``'s socket, a piece
    at a time, as batches that own their memory (a piece's buffer is reused for the next)."""
    try:
        for a, rows in wire.copy_out(conn, sql, 2):
            n1 = _i4(a, rows)
            at2 = rows + 4 + n1
            n2 = _i4(a, at2)
            ok = np.ones(len(rows), bool)
            lsn = slices(a, rows + 4, n1, ok)
            data = slices(a, at2 + 4, n2, ok, binary=True)
            yield pa.RecordBatch.from_arrays([lsn, data], schema=_PEEK)
    except (wire.ServerError, OSError) as e:
        raise translate(e, ep, where=place) from e


#: a ``format_type`` name: its base, its modifiers (precision or length, scale), its zone
_PG_TYPE = re.compile(r"^([a-z ]+?)(?:\((\d+)(?:,(\d+))?\))?( with(?:out)? time zone)?$")
_LABEL = re.compile(r"'(?:[^']|'')*'")
_SCHEMA_PREFIX = re.compile(r'^(?:"(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\.')
_PEEK = pa.schema([("lsn", pa.string()), ("data", pa.binary())])
_BE4 = np.dtype(">i4")


def _shape(conn: Any, oid: int) -> Shape:
    """A table's OID and attributes as pgoutput describes them (generated ones left out)."""
    gen = "attgenerated = ''" if conn.info.server_version >= 120000 else "true"
    rows = conn.execute(
        "SELECT attnum, CASE WHEN attisdropped THEN NULL ELSE attname::text END, atttypid, "
        "atttypmod, format_type(atttypid, atttypmod) "
        f"FROM pg_attribute WHERE attrelid = %s AND attnum > 0 AND (attisdropped OR {gen}) "
        "ORDER BY attnum",
        (oid,),
    ).fetchall()
    return Shape(
        int(oid),
        [(int(r[0]), r[1]) for r in rows],
        {r[1]: (int(r[2]), int(r[3]), str(r[4])) for r in rows if r[1] is not None},
    )


def _i4(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The big-endian int32 at each byte position ``pos`` of ``a`` (a COPY field's length)."""
    view = np.ndarray((len(a) - 3,), _BE4, buffer=a, strides=(1,))
    return view[pos].astype(np.int64)


# -- operations: check and drop ---------------------------------------------------------------------


def check(reader: Reader) -> list[str]:
    """What the server still lacks for this capture, each with the setting to change."""
    reader._plan()
    conn = reader._control()
    out: list[str] = []
    with edge(reader.endpoint, where=reader.ctx.where):
        level = conn.execute("SHOW wal_level").fetchone()[0]
        if level != "logical":
            out.append(
                f"wal_level is {level}: set wal_level = logical in postgresql.conf "
                "(ALTER SYSTEM SET wal_level = logical) and restart the server"
            )
        slots = int(conn.execute("SHOW max_replication_slots").fetchone()[0])
        used = int(conn.execute("SELECT count(*) FROM pg_replication_slots").fetchone()[0])
        if reader._slot() is None and used >= slots:
            out.append(
                f"max_replication_slots is {slots} and all are used: raise it "
                "(ALTER SYSTEM SET max_replication_slots = ...) and restart, or drop a slot"
            )
        role = conn.execute(
            "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not role or not role[0]:
            out.append("the user lacks the REPLICATION attribute: ALTER ROLE <user> REPLICATION")
        for (schema, rel), t in reader.targets.items():
            ident, has_key = conn.execute(
                "SELECT c.relreplident, EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid "
                "AND (i.indisprimary OR i.indisreplident)) FROM pg_class c WHERE c.oid = %s::regclass",
                (reader._qualified((schema, rel)),),
            ).fetchone()
            if ident == "n" or (ident == "d" and not has_key):
                out.append(
                    f"table {t.label} has no replica identity (no primary key): its updates and "
                    f"deletes cannot be captured; ALTER TABLE {reader._qualified((schema, rel))} "
                    "REPLICA IDENTITY FULL (or add a primary key)"
                )
    return out


def status(reader: Reader) -> dict[str, Any]:
    """Where the capture stands: slot, its position, the log it holds."""
    conn = reader._control()
    with edge(reader.endpoint, where=reader.ctx.where):
        row = conn.execute(
            "SELECT confirmed_flush_lsn::text, "
            "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (reader.slot,),
        ).fetchone()
    if row is None:
        return {"slot": reader.slot, "exists": False}
    return {"slot": reader.slot, "exists": True, "confirmed": row[0], "retained_bytes": int(row[1])}


def drop(reader: Reader) -> list[str]:
    """Remove the capture from the server: the slot, and the publication tidesync created."""
    conn = reader._control()
    done = []
    with edge(reader.endpoint, where=reader.ctx.where):
        if reader._slot() is not None:
            conn.execute("SELECT pg_drop_replication_slot(%s)", (reader.slot,))
            done.append(f"dropped replication slot {reader.slot}")
        if (
            reader.publication is None
            and conn.execute(
                "SELECT 1 FROM pg_publication WHERE pubname = %s", (reader.publication_name,)
            ).fetchone()
        ):
            conn.execute(f"DROP PUBLICATION {quote_ident(reader.publication_name)}")
            done.append(f"dropped publication {reader.publication_name}")
    return done
