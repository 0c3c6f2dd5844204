"""``mysqlcdc``: a MySQL/MariaDB table's changes, from the row-based binlog, in windows.

The capture is a binlog position kept in tidesync's state: nothing is created on the server (the
first run notes where the log ends and says so). Each run asks for the binlog from its span's
start with the replication protocol (:mod:`.binlog`), takes whole transactions (from their GTID
or BEGIN event to their XID or COMMIT) up to the span's end, and decodes the row events of the
job's tables column-wise into the batch reader's Arrow types. The server keeps its binlog files
for ``binlog_expire_logs_seconds``; a span whose file is gone is an error naming that setting.

The binlog carries no column names unless ``binlog_row_metadata = FULL``: columns are then
matched by position, which is only safe while the table has the shape it has now, so a table
map whose column count or types differ from the table's current columns is an error that says
to set ``binlog_row_metadata = FULL`` (with it, columns are matched by name and a column added
mid-stream simply appears).

    {"name": "mysqlcdc", "parameter": {
        "jdbcUrl": "jdbc:mysql://127.0.0.1:3306/test", "username": "etl",
        "table": ["user"], "startTime": "${start_time}", "endTime": "${end_time}"}}
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pymysql

from tidesync.connectors import base
from tidesync.connectors.mysql import binlog as bl
from tidesync.connectors.mysql.conn import _columns_info, _schema_table, connect, translate
from tidesync.connectors.mysql.reader import Reader as TableReader
from tidesync.connectors.sql.cdc import (
    CDC_KEYS,
    OP,
    POS,
    TABLE,
    TS,
    TS_TYPE,
    CaptureReader,
    CdcSplit,
    History,
    capture_name,
    cdc_options,
    distinct,
    from_numpy,
    from_strings,
    output_schema,
    refuse_new_tables,
    show_ms,
    snapshot_chunk,
    to_bools,
)
from tidesync.errors import ConfigError, FatalError

__all__ = ["Reader", "check", "status"]

log = logging.getLogger("tidesync.cdc")

_SESSION = ("SET SESSION time_zone = '+00:00'", "SET SESSION net_write_timeout = 3600")
_ENUM = re.compile(r"'((?:[^']|'')*)'")


@dataclass
class _Target:
    label: str
    specs: list[bl.ColumnSpec]  # every column of the table, in order
    read: set[str]  # the columns the job reads
    key: list[int]  # primary key columns (indexes into specs)


@dataclass
class _Cascade:
    """A captured table's foreign key with a cascading rule (CASCADE, SET NULL, SET DEFAULT)."""

    label: str  # the captured table
    name: str  # the constraint
    rule: str  # as SQL says it: ON DELETE CASCADE, ...
    on_delete: bool
    on_update: bool
    referred: list[str]  # the referred table's columns it refers to
    columns: list[str]  # the referred table's columns, in order (matched by position)


class Reader(CaptureReader):
    """``mysqlcdc``: one row per change (see the module docstring)."""

    kind = "mysqlcdc"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        self.o = cdc_options(p, ctx)
        self.capture = capture_name(ctx)
        own = {k: v for k, v in params.items() if k not in (*CDC_KEYS, "snapshot", "position")}
        self.position = p.str("position")
        if self.position not in (None, "gtid", "file"):
            p.problem("position", f"must be gtid or file, got {self.position!r}")
        if not self.o.tables and not params.get("connection"):
            p.problem("table", "is required: the table (or list of tables) whose changes to read")
        self.tables: list[TableReader] = []
        names: list[str | None] = list(self.o.tables) or [None]
        for t in names:
            tp = dict(own)
            tp["column"] = ["*"]
            if t is not None:
                tp["table"] = [t]
            try:
                self.tables.append(TableReader(tp, ctx))
            except ConfigError as e:
                p.problems.extend(x for x in e.problems if x not in p.problems)
                break
        for k in own:
            p.get(k)
        p.done()
        self.endpoint = self.tables[0].endpoints[0]
        self.session = self.tables[0].options.session
        self._conn: Any = None
        self._planned = False
        self.targets: dict[tuple[str, str], _Target] = {}
        self._checksum = True
        self._maria = True
        self._gtid_mode: bool | None = None  # decided per run: by the stored position, else here
        self._charsets: dict[int, str] = {}  # collation id -> character set
        self._seen: int | None = None  # the saved History.seen of the run's split
        #: by referred table: the captured tables' foreign keys with a cascading rule
        self._cascades: dict[tuple[str, str], list[_Cascade]] = {}

    # -- planning --------------------------------------------------------------------------------
    def _control(self) -> Any:
        if self._conn is None or not self._conn.open:
            self._conn = connect(
                self.endpoint, where=self.ctx.path("jdbcUrl"), session=self.session, ours=_SESSION
            )
        return self._conn

    def _query(self, sql: str, args: Any = None) -> list[tuple[Any, ...]]:
        try:
            with self._control().cursor() as cur:
                cur.execute(sql, args)
                return list(cur.fetchall())
        except pymysql.MySQLError as e:
            raise translate(e, self.endpoint, self.ctx.where) from None

    def _plan(self) -> None:
        if self._planned:
            return
        con = self._control()
        pairs = []
        for tr in self.tables:
            schema = tr.schema()
            assert schema is not None
            for src in tr.sources():
                table = src.source.table
                if table is None:
                    raise ConfigError(
                        f"{self.ctx.path('querySql')}: a capture reads tables, not queries"
                    )
                db, name = _schema_table(con, table)
                info = _columns_info(con, table) or []
                keys = {
                    r[0]
                    for r in self._query(
                        "SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE WHERE "
                        "TABLE_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'",
                        (db, name),
                    )
                }
                specs = []
                for c in info:
                    labels = None
                    if c["type"] in ("enum", "set"):
                        labels = [m.replace("''", "'") for m in _ENUM.findall(c["column_type"])]
                    # a column the batch reader does not read (MariaDB's INVISIBLE) is in the
                    # log's rows all the same: kept to match columns by position, never read
                    known = c["name"] in schema.names
                    specs.append(
                        bl.ColumnSpec(
                            c["name"],
                            schema.field(c["name"]).type if known else pa.null(),
                            "unsigned" in c["column_type"],
                            c["charset"],
                            labels,
                            c["type"],
                            c["column_type"],
                        )
                    )
                wanted = set(self.o.columns or [s.name for s in specs if s.name in schema.names])
                missing = [c for c in wanted if c not in schema.names]
                if missing:
                    raise ConfigError(
                        f"{self.ctx.path('column')}: table {table} has no column {missing[0]!r}"
                    )
                self.targets[(db, name)] = _Target(
                    table, specs, wanted, [i for i, s in enumerate(specs) if s.name in keys]
                )
                pairs.append(
                    (table, pa.schema([schema.field(s.name) for s in specs if s.name in wanted]))
                )
        self._schema = output_schema(pairs, self.o.before_image, self.ctx.path("table"))
        self._plan_cascades()
        row = self._query("SELECT @@global.binlog_checksum, VERSION()")
        self._checksum = bool(row and row[0][0] and str(row[0][0]).upper() != "NONE")
        self._maria = "mariadb" in str(row[0][1]).lower()
        self._charsets = {
            int(r[0]): str(r[1])
            for r in self._query("SELECT ID, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
            if r[0] is not None
        }
        self._planned = True

    def _plan_cascades(self) -> None:
        """The captured tables' foreign keys whose rule changes their rows without a row event
        (see :meth:`_cascaded`)."""
        acts = ("CASCADE", "SET NULL", "SET DEFAULT")
        for (db, name), target in self.targets.items():
            for fk, pdb, ptable, upd, dele in self._query(
                "SELECT CONSTRAINT_NAME, UNIQUE_CONSTRAINT_SCHEMA, REFERENCED_TABLE_NAME, "
                "UPDATE_RULE, DELETE_RULE FROM information_schema.REFERENTIAL_CONSTRAINTS "
                "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s",
                (db, name),
            ):
                on_update, on_delete = str(upd) in acts, str(dele) in acts
                if not (on_update or on_delete):
                    continue
                referred = [
                    str(r[0])
                    for r in self._query(
                        "SELECT REFERENCED_COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE "
                        "WHERE CONSTRAINT_SCHEMA = %s AND TABLE_NAME = %s AND CONSTRAINT_NAME = "
                        "%s ORDER BY ORDINAL_POSITION",
                        (db, name, fk),
                    )
                ]
                columns = [
                    str(r[0])
                    for r in self._query(
                        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
                        "%s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                        (pdb, ptable),
                    )
                ]
                rule = " ".join(
                    [f"ON DELETE {dele}"] * on_delete + [f"ON UPDATE {upd}"] * on_update
                )
                self._cascades.setdefault((str(pdb), str(ptable)), []).append(
                    _Cascade(target.label, str(fk), rule, on_delete, on_update, referred, columns)
                )

    # -- the hooks of the skeleton -----------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(self._query("SELECT ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000)")[0][0])

    def _master(self) -> bl.Position:
        with self._control().cursor() as cur:
            try:
                rows = _log_status(cur)
            except pymysql.MySQLError as e:
                raise translate(e, self.endpoint, self.ctx.where) from None
        if not rows:
            raise self._binlog_off()
        return bl.Position(str(rows[0][0]), int(rows[0][1]))

    def _binlog_off(self) -> FatalError:
        return FatalError(
            f"{self.ctx.where}: the binlog is off on {self.endpoint.label}: start the server "
            "with log_bin (and binlog_format = ROW); `tidesync cdc check` lists what is missing"
        )

    def _gtid(self) -> bl.Gtid:
        """The server's GTID position now (what its binlog holds)."""
        if self._maria:
            return bl.Gtid.parse(
                "gtid:" + str(self._query("SELECT @@global.gtid_binlog_pos")[0][0])
            )
        text = str(self._query("SELECT @@global.gtid_executed")[0][0] or "")
        return bl.Gtid.parse("gtid:" + text) if text.strip() else bl.Gtid(mysql={})

    def _gtid_default(self) -> bool:
        """Whether a new capture keeps GTID positions: ``position``, else where the server has
        them (MariaDB always; MySQL with gtid_mode = ON)."""
        if self.position is not None:
            if self.position == "gtid" and not self._maria:
                mode = str(self._query("SELECT @@global.gtid_mode")[0][0]).upper()
                if mode != "ON":
                    raise FatalError(
                        f"{self.ctx.path('position')}: gtid needs gtid_mode = ON on "
                        f"{self.endpoint.label} (it is {mode}); or use position: file"
                    )
            return self.position == "gtid"
        if self._maria:
            return True
        return str(self._query("SELECT @@global.gtid_mode")[0][0]).upper() == "ON"

    def _here(self) -> str:
        """The log's end now, as this run's kind of position."""
        if self._gtid_mode is None:
            self._gtid_mode = self._gtid_default()
        return str(self._gtid()) if self._gtid_mode else str(self._master())

    def _log_end(self) -> tuple[str, int]:
        return self._here(), self._now_ms()

    def _before(self, a: Any, b: Any) -> bool:
        if bl.Gtid.is_gtid(a) and bl.Gtid.is_gtid(b):
            return bl.Gtid.parse(a).lacks(bl.Gtid.parse(b))
        if bl.Gtid.is_gtid(a) or bl.Gtid.is_gtid(b):
            raise FatalError(f"{self.ctx.where}: positions {a} and {b} are of different kinds")
        return bl.Position.parse(a).key < bl.Position.parse(b).key

    def read(self, split: base.Split) -> Any:
        assert isinstance(split, CdcSplit)
        self._plan()
        self._gtid_mode = bl.Gtid.is_gtid(split.lo) if split.lo is not None else None
        saved = History.from_json(json.loads(split.history)) if split.history else None
        self._seen = saved.seen if saved is not None else None
        return super().read(split)

    def _open(self, history: History | None) -> History:
        """The capture to go on from (see :meth:`_open_log`), with the names of the tables it
        reads. A table the saved positions do not name, where they name others, is new to the
        capture: an error (its changes in the windows already taken were passed over, and its
        rows before the capture began never came); where they name none (positions saved by an
        earlier version, a first run) they are recorded. The binlog itself tells a table
        replaced (docs/design.md, Decisions), so no identity is kept beside the name."""
        saved = history.tables if history is not None else {}
        new = [t.label for k, t in self.targets.items() if saved and ".".join(k) not in saved]
        refuse_new_tables(
            self.ctx.where,
            new,
            sorted(saved),
            "its changes in the windows already taken were passed over, and its rows from "
            "before the capture began never came",
        )
        opened = self._open_log(history)
        return replace(opened, tables={".".join(k): None for k in self.targets})

    def _open_log(self, history: History | None) -> History:
        fmt = self._query("SELECT @@global.binlog_format, @@global.binlog_row_image")
        if fmt and (str(fmt[0][0]).upper() != "ROW" or str(fmt[0][1]).upper() != "FULL"):
            raise FatalError(
                f"{self.ctx.where}: the server logs binlog_format = {fmt[0][0]}, binlog_row_image "
                f"= {fmt[0][1]}; a capture needs ROW and FULL (SET GLOBAL binlog_format = ROW, "
                "binlog_row_image = FULL, and in the server's configuration)"
            )
        if history is None and self.o.snapshot:
            return History(self.capture, self._now_ms(), None)  # created by read(): _snapshot
        if history is None:
            self._gtid_mode = None
            end = self._here()
            log.warning(
                "capture %s starts at binlog position %s on %s: changes committed from now on "
                "are captured; earlier ones are not in this capture",
                self.capture, end, self.endpoint.label,
            )  # fmt: skip
            return History(self.capture, self._now_ms(), str(end))
        if bl.Gtid.is_gtid(history.last_hi):
            # a purged GTID is the dump's error (the server finds the file); a server that lacks
            # what this capture took already (a failover to a replica behind) is one here
            have = self._gtid()
            if have.lacks(bl.Gtid.parse(history.last_hi)):
                raise FatalError(
                    f"{self.ctx.where}: {self.endpoint.label} has logged transactions up to "
                    f"{have}, but this capture has taken them up to {history.last_hi}: the "
                    "server lacks changes the capture already read (a failover to a replica "
                    "that is behind, or another server?); point the job at the server that "
                    "has them, or `tidesync cdc drop` the job and start anew"
                )
            return history
        oldest = bl.Position.parse(history.horizon)
        files = [str(r[0]) for r in self._query("SHOW BINARY LOGS")]
        if oldest.file not in files:
            raise FatalError(
                f"{self.ctx.where}: binlog file {oldest.file} (this job's oldest retained position "
                f"{oldest}) has been purged from {self.endpoint.label}; raise "
                "binlog_expire_logs_seconds to keep the log longer, then `tidesync cdc drop` "
                "the job and start anew"
            )
        # a saved position past the log's end (a server restored from a backup, RESET MASTER,
        # another server): runs would succeed empty until the log reached it, then read on from
        # a place that is no event's start; the changes logged up to it were never taken
        last = bl.Position.parse(history.last_hi)
        log_end = self._master()
        if last.file not in files or log_end.key < last.key:
            raise FatalError(
                f"{self.ctx.where}: this capture has taken the binlog of {self.endpoint.label} "
                f"up to {last}, but the server's binlog ends at {log_end}"
                + ("" if last.file in files else f" and has no file {last.file}")
                + ": it is not the log the capture read (a server restored from a backup, "
                "RESET MASTER, or another server?); point the job at the server that has it, "
                "or `tidesync cdc drop` the job and start anew (snapshot: true)"
            )
        return history

    def _snapshot(self) -> Generator[base.Chunk, None, tuple[str, int]]:
        """Take a consistent point of the binlog and a snapshot of the tables at it, and read
        them with the batch reader's own splits and decoding on that snapshot's connection.
        MariaDB: ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` reports the binlog position
        that matches it (``binlog_snapshot_file/position``), without a lock; MySQL: the tables
        are locked (``LOCK TABLES ... READ``) on a second connection while the position is read
        and the snapshot begins."""
        import queue
        import uuid

        from tidesync.connectors.mysql.reader import _SNAPSHOTS, _SNAPSHOTS_LOCK, MySplit
        from tidesync.connectors.publish import hook

        assert self._schema is not None
        if self._gtid_mode is None:
            self._gtid_mode = self._gtid_default()
        snap = self.tables[0]._connect(0)
        sid = uuid.uuid4().hex
        try:
            try:
                point, gtid, created = self._consistent_point(snap)
            except pymysql.MySQLError as e:
                raise translate(e, self.endpoint, self.ctx.path("snapshot")) from None
            pool: queue.Queue[Any] = queue.Queue()
            pool.put(snap)
            with _SNAPSHOTS_LOCK:
                _SNAPSHOTS[sid] = pool
            lo = str(gtid) if self._gtid_mode else str(point)
            log.warning(
                "capture %s starts at binlog position %s on %s with a snapshot: the tables' rows "
                "as of that point come first (_op = r), then the changes committed after it",
                self.capture, lo, self.endpoint.label,
            )  # fmt: skip
            hook("cdc.snapshot")
            several = len(self.targets) > 1
            for tr, target in zip(self.tables, self.targets.values(), strict=False):
                for split in tr.splits(1):
                    assert isinstance(split, MySplit)
                    label = target.label if several else None
                    for part in tr.read(replace(split, snapshot=sid)):
                        yield snapshot_chunk(part, label, self._schema, str(point), created * 1000)
        finally:
            with _SNAPSHOTS_LOCK:
                _SNAPSHOTS.pop(sid, None)
            with contextlib.suppress(Exception):  # the snapshot is over either way
                snap.close()
        return lo, created

    def _consistent_point(self, snap: Any) -> tuple[bl.Position, bl.Gtid | None, int]:
        """Begin the snapshot transaction on ``snap``; the binlog position (and GTID position)
        it matches, and the server's time then (ms)."""
        now = "SELECT ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000)"
        with snap.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            if self._maria:
                cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                st = {str(k).lower(): v for k, v in cur.fetchall()}
                if not st.get("binlog_snapshot_file"):
                    raise self._binlog_off()
                point = bl.Position(
                    str(st["binlog_snapshot_file"]), int(st["binlog_snapshot_position"])
                )
                cur.execute(f"SELECT BINLOG_GTID_POS(%s, %s), ({now[7:]})", (point.file, point.pos))
                g, created = cur.fetchone()
                return point, bl.Gtid.parse("gtid:" + str(g or "")), int(created)
        lock = connect(self.endpoint, where=self.ctx.path("jdbcUrl"), session=self.session,
                       ours=_SESSION)  # fmt: skip
        try:
            with lock.cursor() as lc, snap.cursor() as cur:
                lc.execute("SET SESSION lock_wait_timeout = 60")  # fail, not hang
                names = ", ".join(f"`{d}`.`{t}` READ" for d, t in self.targets)
                lc.execute(f"LOCK TABLES {names}")
                try:
                    row = next(iter(_log_status(lc)), None)
                    if row is None:
                        raise self._binlog_off()
                    point = bl.Position(str(row[0]), int(row[1]))
                    gtid = bl.Gtid.parse("gtid:" + str(row[4] or "")) if len(row) > 4 else None
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                    lc.execute(now)
                    created = int(lc.fetchone()[0])
                finally:
                    lc.execute("UNLOCK TABLES")
        finally:
            with contextlib.suppress(Exception):
                lock.close()
        if self._gtid_mode and (gtid is None or gtid.mysql is None):
            gtid = bl.Gtid(mysql={})
        return point, gtid, created

    def _changes(self, lo: Any, upto: Any, cut_us: int | None) -> Generator[base.Chunk, None, Any]:
        start: bl.Position | bl.Gtid
        end: bl.Position | bl.Gtid
        if bl.Gtid.is_gtid(lo):
            start, end = bl.Gtid.parse(lo), bl.Gtid.parse(upto)
            files = []
        else:
            start, end = bl.Position.parse(lo), bl.Position.parse(upto)
            files = [str(r[0]) for r in self._query("SHOW BINARY LOGS")]
        if isinstance(start, bl.Position) and start.file not in files:
            raise FatalError(
                f"{self.ctx.where}: binlog file {start.file} has been purged from "
                f"{self.endpoint.label}: the changes from {start} are gone; raise "
                "binlog_expire_logs_seconds, then `tidesync cdc drop` the job and start anew"
            )
        con = connect(self.endpoint, where=self.ctx.path("jdbcUrl"), ours=_SESSION)
        dump = bl.Dump(con, start, self._checksum)
        state = _State(start.copy() if isinstance(start, bl.Gtid) else None)
        carry: bl.Events | None = None
        try:
            batches = dump.batches()
            for n, batch in enumerate(batches):
                if n == 0:
                    self._same_log(batch, start)
                ev = carry.then(batch) if carry is not None else batch
                carry = None
                out, stop, tail = self._batch(ev, state, end, cut_us)
                yield from out
                if stop is not None:
                    if state.nameless:  # a column changed before the run began is in the log
                        done = self._ddl_after(ev, state.stopped_at, end, state)
                        while not done and (nxt := next(batches, None)) is not None:
                            done = self._ddl_after(nxt, 0, end, state)
                    return stop
                if tail is not None:
                    carry = ev.tail(tail)
        except pymysql.MySQLError as e:
            if e.args and e.args[0] == 1236:  # the dump found no such position
                raise FatalError(
                    f"{self.ctx.where}: the binlog from {start} is not on "
                    f"{self.endpoint.label} ({e.args[1]}); if it was purged, raise "
                    "binlog_expire_logs_seconds to keep the log longer, then `tidesync cdc "
                    "drop` the job and start anew"
                ) from None
            raise translate(e, self.endpoint, self.ctx.where) from None
        finally:
            dump.close()
        if state.gtid is not None and isinstance(end, bl.Gtid):
            return str(state.gtid.union(end))
        return str(end)

    def _same_log(self, ev: bl.Events, start: bl.Position | bl.Gtid) -> None:
        """The binlog file the dump starts in must be older than the last run that saved a
        position (``History.seen``): every saved position was in the log by then. A younger
        one is another log where the same name and offset, or the same GTID, is another place
        (``RESET MASTER`` restarts the file numbers and the GTID sequence; a rebuilt server):
        reading on would skip its transactions up to there without a word."""
        fde = np.flatnonzero(ev.type == bl.FDE)
        if self._seen is None or not len(fde):
            return
        i = int(fde[0])
        made = int(ev.timestamp[i])
        if made * 1000 > self._seen and isinstance(start, bl.Gtid):
            # MariaDB starts a GTID position in the first file begun after it (rotated since
            # the last run): legitimate where that file's GTID list (the state it began with,
            # the event after its FDE) holds the position; RESET MASTER's holds nothing
            if start.maria is None:
                return  # MySQL: its Previous_gtids are not read here
            listed = np.flatnonzero(ev.type == _GTID_LIST)
            if len(listed) and not _gtid_list(ev.body(int(listed[0]), self._checksum)).lacks(start):
                return
        if made * 1000 > self._seen:
            file = ev.files[int(ev.file[i])] or "?"
            raise FatalError(
                f"{self.ctx.where}: this capture goes on from {start}, taken from the binlog "
                f"of {self.endpoint.label} by {show_ms(self._seen)}, but the binlog file "
                f"{file} the server reads it from was begun at {show_ms(made * 1000)}, after "
                "that: it is another log (RESET MASTER, a server rebuilt or restored?), in "
                "which that position is another place; point the job at the server that has "
                "the capture's log, or `tidesync cdc drop` the job and start anew (snapshot: "
                "true)"
            )

    # -- one batch of events ---------------------------------------------------------------------
    def _batch(
        self, ev: bl.Events, state: _State, end: bl.Position | bl.Gtid, cut_us: int | None
    ) -> tuple[list[base.Chunk], str | None, int | None]:
        cs = self._checksum
        types = ev.type
        size = ev.size
        startpos = ev.next_pos - size
        tsec = ev.timestamp
        first: list[int] = []
        last: list[int] = []
        commit: list[int] = []
        gtids: list[tuple[Any, ...] | None] = []
        open_at: int | None = None
        open_gtid: tuple[Any, ...] | None = None
        alone = False
        tm_at: list[tuple[int, int, bytes]] = []
        ddl: list[int] = []
        stmts: list[int] = []  # changes logged as statements
        prepared: list[int] = []  # transactions (indexes into ``first``) an XA PREPARE ended
        savepoints: dict[str, int] = {}  # the open transaction's, by name: the SAVEPOINT event
        undone: list[tuple[int, int]] = []  # (SAVEPOINT, ROLLBACK TO): the events between
        rowmask = np.isin(types, bl.ROW_EVENTS)
        for i in np.flatnonzero(~rowmask).tolist():
            t = int(types[i])
            if t in (bl.MARIA_GTID, bl.MYSQL_GTID, bl.MYSQL_ANON_GTID):
                savepoints = {}
                open_at = i
                # MariaDB's FL_STANDALONE: one statement, no BEGIN/COMMIT (a DDL statement)
                alone = t == bl.MARIA_GTID and bool(ev.body(i, cs)[12] & 1)
                open_gtid = (
                    bl.gtid_of(ev.body(i, cs), t == bl.MYSQL_GTID, int(ev.le(5, 4)[i]))
                    if t != bl.MYSQL_ANON_GTID and state.gtid is not None
                    else None
                )
            elif t == bl.QUERY:
                q = _query_text(ev.body(i, cs))
                if q.startswith(b"BEGIN") or q.startswith(b"XA START"):
                    if open_at is None:
                        open_at, open_gtid = i, None
                        savepoints = {}
                elif open_at is not None and (q.startswith(b"SAVEPOINT") or
                                              q.startswith(b"ROLLBACK TO")):  # fmt: skip
                    # rows rolled back to a savepoint stay in the log where the transaction
                    # also wrote a non-transactional table: they never were the table's
                    m = _SAVEPOINT.match(_statement(ev.body(i, cs))[1])
                    name = m[2].strip("`").lower() if m is not None else ""
                    if m is not None and m[1] is None:
                        savepoints[name] = i
                    elif name in savepoints:
                        at = savepoints[name]
                        undone.append((at, i))
                        savepoints = {k: v for k, v in savepoints.items() if v <= at}
                elif q.startswith(b"XA END"):
                    pass  # the XA transaction goes on to its XA PREPARE (or one-phase commit)
                elif q.startswith(b"ROLLBACK") and not q.startswith(b"ROLLBACK TO"):
                    open_at = open_gtid = None
                elif open_at is not None and not alone and _in_transaction(q, ev.body(i, cs)):
                    stmts.append(i)  # a change logged as a statement, or a savepoint
                else:  # COMMIT, or a statement (DDL) that is a transaction of its own
                    if not q.startswith(b"COMMIT"):
                        ddl.append(i)
                    first.append(i if open_at is None else open_at)
                    gtids.append(open_gtid if open_at is not None else None)
                    last.append(i)
                    commit.append(i)
                    open_at = open_gtid = None
            elif t == bl.XID or t == bl.XA_PREPARE:
                if open_at is not None:
                    if t == bl.XA_PREPARE:
                        prepared.append(len(first))
                    first.append(open_at)
                    gtids.append(open_gtid)
                    last.append(i)
                    commit.append(i)
                open_at = open_gtid = None
            elif t == bl.TABLE_MAP:
                body = ev.body(i, cs)
                tm_at.append((i, int.from_bytes(body[:6], "little"), body[8:]))
            elif t in _UNREAD:
                raise FatalError(f"{self.ctx.where}: {_UNREAD[t]}")
        fa = np.asarray(first, dtype=np.int64)
        la = np.asarray(last, dtype=np.int64)
        starts = [bl.Position(ev.files[int(ev.file[i])], int(startpos[i])) for i in first]
        ts_us = (
            tsec[np.asarray(commit, dtype=np.int64)] * 1_000_000
            if commit
            else np.zeros(0, np.int64)
        )
        stop: str | None = None
        k = len(first)
        for j, sp in enumerate(starts):
            if isinstance(end, bl.Gtid):
                g = gtids[j]
                beyond = g is not None and not end.has(g)
            else:
                beyond = sp.key >= end.key
            if beyond or (cut_us is not None and int(ts_us[j]) >= cut_us):
                stop, k = str(sp), j
                break
            if state.gtid is not None and gtids[j] is not None:
                state.gtid.add(gtids[j])  # type: ignore[arg-type]
        if stop is not None:
            state.stopped_at = first[k]
        if stop is not None and state.gtid is not None:
            stop = str(state.gtid)
        tail = None if stop is not None or open_at is None else open_at
        if ddl:
            self._shape_changes(ev, [i for i in ddl if k == len(first) or i < first[k]], tm_at,
                                state)  # fmt: skip
        for i, _tid, key in tm_at:
            if (k == len(first) or i < first[k]) and state.table_map(key).names is None:
                state.nameless.add((state.table_map(key).db, state.table_map(key).table))

        def taken(at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """Of events ``at``, those in the transactions this run takes, and their indexes."""
            tx = np.searchsorted(fa, at, side="right") - 1
            ok = (tx >= 0) & (tx < k)
            ok &= at <= la[np.clip(tx, 0, max(len(la) - 1, 0))] if len(la) else False
            for a, b in undone:
                ok &= (at < a) | (at > b)
            return at[ok], tx[ok]

        self._statements(ev, taken(np.asarray(ddl + stmts, dtype=np.int64))[0])
        rows_idx, tx = taken(np.flatnonzero(rowmask))
        held = np.isin(tx, np.asarray(prepared, dtype=np.int64))
        out = self._rows(ev, rows_idx, tx, ts_us, tm_at, state, held)
        for _i, tid, key in tm_at:  # the maps go on into the next batch
            state.maps[tid] = key
        return out, stop, tail

    def _rows(
        self,
        ev: bl.Events,
        idx: np.ndarray,
        tx: np.ndarray,
        ts_us: np.ndarray,
        tm_at: list[tuple[int, int, bytes]],
        state: _State,
        held: np.ndarray,
    ) -> list[base.Chunk]:
        if not len(idx):
            return []
        assert self._schema is not None
        tids = ev.le(19, 6)[idx]
        # each row event's table map: the last one of its table id before it (in this batch,
        # else the one carried from an earlier batch), as a number into ``keys``
        keys: list[bytes] = []
        key_no: dict[bytes, int] = {}
        which = np.empty(len(idx), np.int64)
        for tid in distinct(tids):
            at = [(i, key) for i, t, key in tm_at if t == tid]
            here = tids == tid
            pos = np.asarray([i for i, _ in at], dtype=np.int64)
            m = np.searchsorted(pos, idx[here], side="right") - 1
            choices = [state.maps.get(tid)] + [k for _, k in at]
            if choices[0] is None and (m < 0).any():
                raise FatalError(f"{self.ctx.where}: a row event came without its table map")
            nos = np.asarray(
                [key_no.setdefault(k, len(key_no)) if k is not None else -1 for k in choices]
            )
            which[here] = nos[m + 1]
        keys = list(key_no)
        upd = np.isin(ev.type[idx], bl.UPDATES)
        parts: list[tuple[pa.RecordBatch, np.ndarray, list[tuple[int, str]]]] = []
        code = which * 2 + upd
        for c in distinct(code):
            tm = state.table_map(keys[c // 2])
            target = self.targets.get((tm.db, tm.table))
            sel = np.flatnonzero(code == c)
            if (tm.db, tm.table) in self._cascades:
                self._cascaded(ev, idx[sel], tm)
            if target is None:
                continue
            if held[sel].any():
                e = int(idx[sel][np.flatnonzero(held[sel])[0]])
                raise FatalError(
                    f"{self.ctx.where}: table {target.label}: the binlog holds its changes in an "
                    "XA transaction prepared at "
                    f"{ev.files[int(ev.file[e])]}:{int(ev.next_pos[e] - ev.size[e])} "
                    "(XA PREPARE); whether it commits is logged apart (XA COMMIT or XA "
                    "ROLLBACK), and a capture does not read two-phase XA transactions: commit "
                    "them in one phase (XA COMMIT ... ONE PHASE) or as plain transactions"
                )
            parts.append(self._group(ev, idx[sel], tx[sel], ts_us, tm, target, bool(c % 2)))
        if not parts:
            return []
        order = np.concatenate([p[1] for p in parts])
        sort = np.lexsort((order[:, 2], order[:, 1], order[:, 0]))
        if len(parts) == 1 and (len(sort) < 2 or bool((np.diff(sort) > 0).all())):
            batch = parts[0][0]  # one table's inserts (or deletes): already in log order
        else:
            table = pa.Table.from_batches([p[0] for p in parts], self._schema)
            batch = table.take(from_numpy(sort)).combine_chunks().to_batches()[0]
        dirty_rows: list[tuple[int, str]] = []
        base_at = 0
        inverse = np.empty(len(sort), dtype=np.int64)
        inverse[sort] = np.arange(len(sort))
        for p in parts:
            dirty_rows += [(int(inverse[base_at + r]), why) for r, why in p[2]]
            base_at += p[0].num_rows
        if not dirty_rows:
            return [base.Chunk(batch)]
        from tidesync.engine.dirty import row_of

        dirty = [
            base.Dirty(why, row_of(batch, r), str(batch.column(POS)[r])) for r, why in dirty_rows
        ]
        keep = np.ones(batch.num_rows, dtype=bool)
        keep[[r for r, _ in dirty_rows]] = False
        return [base.Chunk(batch.filter(from_numpy(keep)), dirty)]

    def _group(
        self,
        ev: bl.Events,
        idx: np.ndarray,
        tx: np.ndarray,
        ts_us: np.ndarray,
        tm: bl.TableMap,
        target: _Target,
        update: bool,
    ) -> tuple[pa.RecordBatch, np.ndarray, list[tuple[int, str]]]:
        assert self._schema is not None
        cols = self._columns(tm, target)
        buf = ev.buf
        walked = self._walk(ev, idx, tm, 2 if update else 1, target.label)
        after = walked[-1]
        before = walked[0] if update else None
        ev_of = after.event
        kind = ev.type[idx][ev_of]
        n_rows = len(ev_of)
        moved = np.zeros(n_rows, dtype=bool)
        key = [j for j, at in enumerate(cols) if at is not None and at in target.key]
        if before is not None:
            for j in key:
                a = bl.raw(buf, before.start[j], before.size[j], before.null[j])
                b = bl.raw(buf, after.start[j], after.size[j], after.null[j])
                moved |= ~to_bools(_equal(a, b))
        take = np.concatenate([np.flatnonzero(moved), np.arange(n_rows)])
        is_old = np.arange(len(take)) < int(moved.sum())
        arrays: dict[str, pa.Array] = {}
        bad: list[tuple[int, str]] = []
        for j, spec_at in enumerate(cols):
            if spec_at is None:
                continue
            spec = target.specs[spec_at]
            if spec.name not in target.read:
                continue
            arr, why = bl.column(buf, after, j, tm.types[j], tm.meta[j], spec)
            if before is not None and is_old.any():
                old, why_old = bl.column(buf, before, j, tm.types[j], tm.meta[j], spec)
                arr = pa.concat_arrays([old.take(from_numpy(take[is_old].astype(np.int64))), arr])
                bad += [
                    (int(np.flatnonzero(take[is_old] == r)[0]), w) for r, w in why_old if moved[r]
                ]
                bad += [(r + int(is_old.sum()), w) for r, w in why]
            else:
                bad += why
            arrays[spec.name] = arr
            if self.o.before_image:
                if before is not None:
                    old, _ = bl.column(buf, before, j, tm.types[j], tm.meta[j], spec)
                    arrays["before_" + spec.name] = old.take(from_numpy(take.astype(np.int64)))
                elif (kind == bl.DELETE_V1).any() or (kind == bl.DELETE_V2).any():
                    dele = np.isin(kind, bl.DELETES)
                    arrays["before_" + spec.name] = pc.if_else(
                        from_numpy(dele), arr, pa.nulls(1, arr.type)[0]
                    )
        is_upd = np.isin(kind, bl.UPDATES)[take]
        is_del = np.isin(kind, bl.DELETES)[take]
        created = np.isin(kind, bl.WRITES)[take] | (moved[take] & ~is_old)
        ops = np.where(is_old | is_del, 2, np.where(created, 0, np.where(is_upd, 1, 2)))
        events = idx[ev_of[take]]
        arrays[OP] = _OPS.take(from_numpy(ops.astype(np.int8)))
        arrays[TS] = from_numpy(ts_us[tx[ev_of[take]]].astype(np.int64), TS_TYPE)
        uniq, back = np.unique(events, return_inverse=True)
        at = (ev.next_pos[uniq] - ev.size[uniq]).tolist()
        files = ev.file[uniq].tolist()
        pos_text = from_strings(
            [f"{ev.files[f]}:{a}" for f, a in zip(files, at, strict=True)]
        ).take(from_numpy(back.astype(np.int64).reshape(-1)))
        arrays[POS] = pos_text
        if TABLE in self._schema.names:
            arrays[TABLE] = from_strings([target.label]).take(
                from_numpy(np.zeros(len(take), np.int64))
            )
        batch = pa.RecordBatch.from_arrays(
            [
                arrays[f.name] if f.name in arrays else pa.nulls(len(take), f.type)
                for f in self._schema
            ],
            schema=self._schema,
        )
        order = np.stack([events, after.seq[take], (~is_old).astype(np.int64)], axis=1)
        return batch, order, bad

    def _walk(
        self, ev: bl.Events, idx: np.ndarray, tm: bl.TableMap, images: int, label: str
    ) -> list[bl.Walked]:
        """The rows of row events ``idx`` (of table map ``tm``): where each value is, per
        image (an update's before, then after)."""
        buf = ev.buf
        s = ev.start[idx]
        p = s + 19 + 8
        v2 = np.isin(ev.type[idx], (bl.WRITE_V2, bl.UPDATE_V2, bl.DELETE_V2))
        p = p + np.where(v2, ev.le(27, 2)[idx], 0)
        c = buf[p]
        p = p + np.where(c < 251, 1, 3)
        n = len(tm.types)
        nb = (n + 7) // 8
        full = np.full(nb, 0xFF, dtype=np.uint8)
        if n % 8:
            full[-1] = (1 << (n % 8)) - 1
        for img in range(images):
            got = buf[(p + img * nb)[:, None] + np.arange(nb)]
            if not (got & full == full).all():
                raise FatalError(
                    f"{self.ctx.where}: table {label}: the binlog holds partial row "
                    "images; a capture needs SET GLOBAL binlog_row_image = FULL"
                )
        rows_at = p + images * nb
        stop = s + ev.size[idx] - (4 if self._checksum else 0)
        return bl.walk(buf, rows_at, stop, tm, images)

    def _cascaded(self, ev: bl.Events, idx: np.ndarray, tm: bl.TableMap) -> None:
        """Row events ``idx`` of table ``tm``, which a captured table's foreign key refers to
        with a cascading rule: InnoDB applies the rule to the referring rows itself, and the
        binlog has no row event of what it changed. A delete of a referred row (an update of
        its referred columns, for an ON UPDATE rule) is an error naming the table and key."""
        kinds = ev.type[idx]
        for fk in self._cascades.get((tm.db, tm.table), []):
            hit: np.ndarray = np.zeros(len(idx), bool)
            if fk.on_delete:
                hit |= np.isin(kinds, bl.DELETES)
            upd = np.isin(kinds, bl.UPDATES)
            if fk.on_update and upd.any():
                names = tm.names if tm.names is not None else fk.columns
                at = [names.index(c) if c in names else None for c in fk.referred]
                if (tm.names is None and len(tm.types) != len(fk.columns)) or None in at:
                    hit |= upd  # the columns cannot be told: any update may have cascaded
                else:
                    w = self._walk(ev, idx[upd], tm, 2, fk.label)
                    moved = np.zeros(len(w[0].event), bool)
                    for j in at:
                        assert j is not None
                        a = bl.raw(ev.buf, w[0].start[j], w[0].size[j], w[0].null[j])
                        b = bl.raw(ev.buf, w[1].start[j], w[1].size[j], w[1].null[j])
                        moved |= ~to_bools(_equal(a, b))
                    hit[np.flatnonzero(upd)[np.unique(w[1].event[moved])]] = True
            if hit.any():
                e = int(idx[np.flatnonzero(hit)[0]])
                what = "a delete" if np.isin(ev.type[e], bl.DELETES) else "an update of the key"
                raise FatalError(
                    f"{self.ctx.where}: table {fk.label}: {what} of a row of {tm.db}.{tm.table} "
                    f"at {ev.files[int(ev.file[e])]}:{int(ev.next_pos[e] - ev.size[e])} reaches "
                    f"its rows through foreign key {fk.name} ({fk.rule}), which the server "
                    "applies without a row event of each in the binlog, so a capture cannot "
                    "give those changes; start a new capture after it (`tidesync cdc drop` the "
                    "job, then run it with snapshot: true), and while the table is captured "
                    "change its rows before the rows they refer to instead of a cascading rule"
                )

    def _statements(self, ev: bl.Events, at: np.ndarray) -> None:
        """Statements the run takes that changed a captured table without its rows in the log:
        a change logged as a statement (``binlog_format`` STATEMENT or MIXED in the writing
        session: the log has no row events of it) or a ``TRUNCATE``: an error naming the table,
        never a change left out. A statement names the table, or runs in its database (a
        trigger or a view may reach the table without naming it)."""
        for i in at.tolist():
            db, stmt = _statement(ev.body(i, self._checksum))
            text = _COMMENTS.sub(" ", stmt).strip()
            m = _TRUNCATE.match(text)
            swap = _REPLACED.match(text)
            gone = _DROP_DATABASE.match(text)
            if gone is not None:
                hit = [k for k in self.targets if k[0] == gone[1].strip("`")]
                what = "dropped the table's database, and with it its rows, without a change "
                what += "of each in the binlog"
                fix = "keep the table's database in place while it is captured"
            elif m is not None:
                hit = [k for k in [_table_key(m[1], db)] if k in self.targets]
                what = "emptied the table, which the binlog logs as a statement, not as the "
                what += "deleted rows"
                fix = "delete its rows with DELETE, not TRUNCATE, while it is captured"
            elif swap is not None:
                found = swap[1] or swap[2]
                names = [_table_key(n, db) for n in _TABLE_NAME.findall(found)] if found else []
                names += [_table_key(n, db) for n in swap.groups()[2:] if n]
                hit = [k for k in names if k in self.targets]
                what = "dropped or renamed the table, put another in its place, or dropped, "
                what += "emptied or swapped a partition's rows: its rows were replaced without "
                what += "a change of each in the binlog"
                fix = "keep the table in place while it is captured"
            elif _DML.match(text):
                hit = [k for k in self.targets if k[0] == db or _names(text, k[1])]
                what = "changed rows logged as a statement, not as rows (binlog_format "
                what += "STATEMENT or MIXED in the writing session)"
                fix = "keep binlog_format = ROW in every session that writes the table"
            else:
                continue
            if hit:
                where = f"{ev.files[int(ev.file[i])]}:{int(ev.next_pos[i] - ev.size[i])}"
                raise FatalError(
                    f"{self.ctx.where}: table {self.targets[hit[0]].label}: a statement at "
                    f"{where} ({stmt[:120]!r}) {what}, so a capture cannot give its changes; "
                    "start a new capture after it (`tidesync cdc drop` the job, then run it "
                    f"with snapshot: true), and {fix}"
                )

    def _shape_changes(
        self, ev: bl.Events, ddl: list[int], tm_at: list[tuple[int, int, bytes]], state: _State
    ) -> None:
        """Without column names in the log (``binlog_row_metadata`` not FULL), rows logged
        before a statement that added, dropped, moved or renamed a column cannot be matched to
        the table's columns now: such a statement after rows of the table in this run is an
        error naming the table and the column."""
        for i in ddl:
            db, stmt = _statement(ev.body(i, self._checksum))
            m = _ALTER.match(stmt)
            if m is None:
                continue
            parts = [x.strip("`") for x in m[1].split(".")]
            key = (parts[0], parts[1]) if len(parts) == 2 else (db, parts[0])
            target = self.targets.get(key)
            col = next((c[2] for c in _COLUMN_CHANGE.finditer(m[2])
                        if c[2].upper() not in _NOT_COLUMNS), None)  # fmt: skip
            if col is None and target is not None and _CONVERT.search(m[2]):
                # every text column's bytes change: the rows logged before are in the old set
                col = next((s.name for s in target.specs if s.charset is not None), None)
            what = f"column {col}"
            if target is not None and col is None and _PRIMARY.search(m[2]):
                # the rows logged before are keyed otherwise: an update that moved the old key
                # would read as an update of the new one (its old key's row never deleted)
                col, what = "PRIMARY KEY", "its primary key"
            if target is None or col is None:
                continue
            before = key in state.nameless or any(
                j < i and (tm := state.table_map(k)).names is None and (tm.db, tm.table) == key
                for j, _t, k in tm_at
            )
            if before:
                raise FatalError(
                    f"{self.ctx.where}: table {target.label}, {what}: the table changed "
                    f"within the changes of this run ({stmt[:120]!r}), and the binlog does not "
                    "name the columns of the rows logged before, so they cannot be matched to "
                    "its columns now; SET GLOBAL binlog_row_metadata = FULL (it names the "
                    "columns of rows logged from then on) and start a new capture "
                    "(`tidesync cdc drop`), or read those changes with the table as it was"
                )

    def _ddl_after(self, ev: bl.Events, i0: int, end: bl.Position | bl.Gtid, state: _State) -> bool:
        """The statements from event ``i0`` on, up to the span's ``end`` (the log's end when the
        run began), checked as :meth:`_shape_changes` does: a column changed after the changes
        this run took but before it read the table's columns. True once ``end`` is reached."""
        cs = self._checksum
        types = ev.type
        startpos = ev.next_pos - ev.size
        steer = np.flatnonzero(np.isin(types[i0:], (bl.QUERY, bl.MARIA_GTID, bl.MYSQL_GTID)))
        found: list[int] = []
        done = False
        for i in (steer + i0).tolist():
            t = int(types[i])
            if t != bl.QUERY:
                if isinstance(end, bl.Gtid):
                    g = bl.gtid_of(ev.body(i, cs), t == bl.MYSQL_GTID, int(ev.le(5, 4)[i]))
                    if not end.has(g):
                        done = True
                        break
                continue
            if isinstance(end, bl.Position):
                here = bl.Position(ev.files[int(ev.file[i])], int(startpos[i]))
                if here.key >= end.key:
                    done = True
                    break
            if _query_text(ev.body(i, cs)).startswith(b"ALTER"):
                found.append(i)
        if found:
            self._shape_changes(ev, found, [], state)
        return done

    def _types(self) -> dict[str, dict[str, str]]:
        """The read columns' types now (``COLUMN_TYPE`` and the character set), by the tables'
        qualified names."""
        out: dict[str, dict[str, str]] = {}
        for (db, name), target in self.targets.items():
            rows = self._query(
                "SELECT COLUMN_NAME, COLUMN_TYPE, CHARACTER_SET_NAME, IS_NULLABLE, "
                "GENERATION_EXPRESSION FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = %s "
                "AND TABLE_NAME = %s",
                (db, name),
            )
            out[f"{db}.{name}"] = {
                str(r[0]): str(r[1]).lower()
                + (f" character set {r[2]}".lower() if r[2] else "")
                + (" not null" if r[3] == "NO" else "")
                + (f" as ({r[4]})" if r[4] else "")
                for r in rows
                if r[0] in target.read
            }
        return out

    def _filled(self, table: str, columns: list[str]) -> list[str]:
        """Columns with a default other than NULL, NOT NULL ones (0 or '' in the rows before)
        and generated ones."""
        if not columns:
            return []
        db, name = next(k for k in self.targets if ".".join(k) == table)
        rows = self._query(
            "SELECT COLUMN_NAME, COLUMN_DEFAULT, IS_NULLABLE, EXTRA FROM information_schema."
            "COLUMNS WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        return [
            str(r[0])
            for r in rows
            if r[0] in columns
            and (
                (r[1] is not None and str(r[1]).upper() != "NULL")
                or r[2] == "NO"
                or "GENERATED" in str(r[3] or "").upper()
            )
        ]

    def _labels(self) -> dict[str, str]:
        return {".".join(k): t.label for k, t in self.targets.items()}

    def _unread(self) -> dict[str, list[str]]:
        return {
            ".".join(k): [s.name for s in t.specs if s.name not in t.read]
            for k, t in self.targets.items()
        }

    def _keeps(self, old: str, new: str) -> bool:
        """Whether ``ALTER TABLE`` from column type ``old`` to ``new`` keeps every value as it
        was: a wider integer of the same sign, a decimal with no fewer digits either side of the
        point, a time of no lower precision, text or bytes no shorter (not CHAR from VARCHAR,
        which drops trailing spaces, nor BINARY(n), which pads), ENUM/SET labels added after
        the old ones, a character set converted to utf8mb4, NULL allowed. Anything else may
        round, cut, clip or replace values (without strict mode, or ALTER IGNORE, even a
        narrowing that does not fit goes through with a warning; NOT NULL turns NULLs into
        0 or ''; a generated column given another expression changes every row)."""
        if old == new:
            return True
        # a generated column's expression: another one gives every row another value
        (old, ga), (new, gb) = (x.partition(" as (")[::2] for x in (old, new))
        if ga != gb:
            return False
        a, b = _MY_TYPE.match(old), _MY_TYPE.match(new)
        if a is None or b is None:
            return False
        (ta, xa, sa, ca, na), (tb, xb, sb, cb, nb) = a.groups(), b.groups()
        if (ca != cb and cb != "utf8mb4") or ("unsigned" in sa) != ("unsigned" in sb):
            return False
        if nb and not na:
            return False
        if (ta, xa, sa, ca) == (tb, xb, sb, cb):
            return True
        for family in (_MY_INTS, _MY_TEXTS, _MY_BLOBS):
            if ta in family and tb in family:
                return family.index(tb) >= family.index(ta)
        if ta == "float" and tb == "double":
            return not xa and not xb
        if ta == tb == "decimal":
            (p, q), (p2, q2) = ((int(x) for x in (v or "10,0").split(",")) for v in (xa, xb))
            return q2 >= q and p2 - q2 >= p - q
        if ta == tb and ta in ("datetime", "timestamp", "time"):
            return int(xb or 0) >= int(xa or 0)
        if (ta, tb) in (("varchar", "varchar"), ("char", "char"), ("char", "varchar"),
                        ("varbinary", "varbinary")):  # fmt: skip
            return int(xb or 0) >= int(xa or 0)
        if ta in ("varchar", "char", "varbinary", "binary"):
            return tb in ("mediumtext", "longtext", "mediumblob", "longblob") and (
                (ta in ("varchar", "char")) == (tb in _MY_TEXTS)
            )
        if ta == tb and ta in ("enum", "set"):
            was, now = _ENUM.findall(xa or ""), _ENUM.findall(xb or "")
            return now[: len(was)] == was
        return False

    def _columns(self, tm: bl.TableMap, target: _Target) -> list[int | None]:
        """For each column of the table map, the index of the table's column it is (None: a
        column the table no longer has). A logged column whose type is not the column's type
        now is an error naming both."""
        names = [s.name for s in target.specs]
        if tm.names is not None:
            cols = [names.index(n) if n in names else None for n in tm.names]
            if tm.key is not None:
                was = sorted(tm.names[j] for j in tm.key if j < len(tm.names))
                now = sorted(names[j] for j in target.key)
                if was != now:
                    raise FatalError(
                        f"{self.ctx.where}: table {target.label}: the binlog holds rows keyed by "
                        f"({', '.join(was) or 'no primary key'}), but its primary key is "
                        f"({', '.join(now) or 'none'}) now: it changed since those rows were "
                        "logged, so an update that moved the old key would read as an update of "
                        "the new one; read those changes with the table as it was, or start a "
                        "new capture (`tidesync cdc drop`, then snapshot: true)"
                    )
        else:
            if len(tm.types) != len(names):
                raise FatalError(
                    f"{self.ctx.where}: table {target.label} has {len(names)} columns now "
                    f"({', '.join(names)}), but the binlog holds rows of {len(tm.types)} (its "
                    "shape changed) and no column names; SET GLOBAL binlog_row_metadata = FULL "
                    "so that columns are matched by name (it names the columns of rows logged "
                    "from then on), then rerun"
                )
            cols = list(range(len(names)))
        for j, at in enumerate(cols):
            if at is None:
                continue
            spec = target.specs[at]
            logged = f"values of binlog type {tm.types[j]}"
            now_type = spec.data_type
            fits = spec.fits(tm.types[j], tm.meta[j])
            # what the table map's optional metadata says (binlog_row_metadata MINIMAL, FULL):
            # a column made UNSIGNED, converted to another character set, or given other
            # ENUM/SET labels is logged as the same type (its old values read as the new type's
            # would be wrong: -1 as 4294967295, latin1 bytes as utf8, another label)
            sign = tm.unsigned[j] if tm.unsigned is not None and self._maria else None
            if fits and sign is not None and tm.types[j] != bl.T_YEAR and sign != spec.unsigned:
                fits = False
                logged = "unsigned values" if sign else "signed values"
                now_type = spec.column_type
            coll = tm.collations[j] if tm.collations is not None else None
            set_was = self._charsets.get(coll) if coll is not None else None
            set_now = spec.charset or "binary"
            if fits and set_was is not None and set_was.lower() != set_now.lower():
                fits = False
                logged = f"text in character set {set_was}"
                now_type = f"{spec.data_type}, character set {set_now}"
            if fits and tm.labels is not None and tm.labels[j] is not None and spec.labels:
                codec = bl.codec_name(spec)
                was_labels = tm.labels[j] or []
                if was_labels != [x.encode(codec, "replace") for x in spec.labels]:
                    fits = False
                    labels = ", ".join(repr(x.decode(codec, "replace")) for x in was_labels)
                    logged = f"values of the labels ({labels})"
                    now_type = spec.column_type
            if not fits:
                raise FatalError(
                    f"{self.ctx.where}: table {target.label}, column {spec.name}: the binlog "
                    f"holds {logged} in it, which is not its type now "
                    f"({now_type}): the column changed since those "
                    "rows were logged"
                    + ("" if tm.names is not None else " (matched by position: "
                       "SET GLOBAL binlog_row_metadata = FULL to match by name)")
                    + "; read those changes with the table as it was, or start a new capture "
                    "(`tidesync cdc drop`)"
                )  # fmt: skip
        return cols

    def close(self) -> None:
        for t in self.tables:
            t.close()
        if self._conn is not None:
            with contextlib.suppress(Exception):  # closing after a failure
                self._conn.close()
            self._conn = None


#: a ``COLUMN_TYPE`` as :meth:`Reader._types` spells it: base, modifiers, sign, character set,
#: NOT NULL (a generated column's `` as (expression)`` taken off first)
_MY_TYPE = re.compile(
    r"^(\w+)(?:\((.*)\))?((?: unsigned| zerofill)*)(?: character set (\w+))?( not null)?$"
)
_MY_INTS = ("tinyint", "smallint", "mediumint", "int", "bigint")
_MY_TEXTS = ("tinytext", "text", "mediumtext", "longtext")
_MY_BLOBS = ("tinyblob", "blob", "mediumblob", "longblob")
_OPS = from_strings(["c", "u", "d"])
_FALSE = from_numpy(np.zeros(1, bool))[0]
#: MySQL 8 events a capture cannot read (rather than miss the changes inside them)
_UNREAD = {
    40: "the binlog holds compressed transactions (MySQL binlog_transaction_compression); a "
    "capture reads plain ones: SET GLOBAL binlog_transaction_compression = OFF",
    39: "the binlog holds partial JSON updates (MySQL binlog_row_value_options = PARTIAL_JSON); "
    "a capture needs whole rows: SET GLOBAL binlog_row_value_options = ''",
}


_GTID_LIST = 163  # MariaDB: the GTID state a binlog file begins with


def _gtid_list(body: bytes) -> bl.Gtid:
    """A MariaDB GTID_LIST event's state: a count (28 bits), then domain, server, sequence."""
    n = int.from_bytes(body[0:4], "little") & 0x0FFFFFFF
    at = [body[4 + 16 * k : 20 + 16 * k] for k in range(n)]
    parts = [
        f"{int.from_bytes(b[0:4], 'little')}-{int.from_bytes(b[4:8], 'little')}-"
        f"{int.from_bytes(b[8:16], 'little')}"
        for b in at
    ]
    return bl.Gtid.parse("gtid:" + ",".join(parts))


def _log_status(cur: Any) -> list[tuple[Any, ...]]:
    """The binlog's end: file, position, ..., (MySQL) the executed GTID set. ``SHOW MASTER
    STATUS``, or ``SHOW BINARY LOG STATUS`` where MySQL (8.4+) has removed the former."""
    try:
        cur.execute("SHOW MASTER STATUS")
    except pymysql.err.ProgrammingError:
        cur.execute("SHOW BINARY LOG STATUS")
    return list(cur.fetchall())


def _equal(a: pa.Array, b: pa.Array) -> Any:
    import pyarrow.compute as pc

    eq = pc.equal(a, b)
    both_null = pc.and_(a.is_null(), b.is_null())
    return pc.fill_null(pc.or_(eq, both_null), _FALSE)


class _State:
    """What goes on from batch to batch: the table maps (by table id) and their parsed forms."""

    def __init__(self, gtid: bl.Gtid | None = None) -> None:
        self.gtid = gtid  # GTID positions: the transactions taken so far
        self.maps: dict[int, bytes] = {}
        self.nameless: set[tuple[str, str]] = set()  # tables whose rows came without names
        self.stopped_at = 0  # the first event the run did not take, in the last batch
        self._parsed: dict[bytes, bl.TableMap] = {}

    def table_map(self, key: bytes) -> bl.TableMap:
        tm = self._parsed.get(key)
        if tm is None:
            tm = self._parsed[key] = bl.parse_table_map(b"\0" * 8 + key)
        return tm


_ALTER = re.compile(
    r"\s*ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:IF\s+EXISTS\s+)?((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)(.*)",
    re.IGNORECASE | re.DOTALL,
)
_COLUMN_CHANGE = re.compile(
    r"\b(ADD|DROP|CHANGE|MODIFY|RENAME)\s+(?:COLUMN\s+)?(?:IF\s+(?:NOT\s+)?EXISTS\s+)?`?(\w+)`?",
    re.IGNORECASE,
)
_PRIMARY = re.compile(r"\b(?:ADD|DROP)\s+(?:CONSTRAINT\s+\S+\s+)?PRIMARY\s+KEY\b", re.IGNORECASE)
_CONVERT = re.compile(r"\bCONVERT\s+TO\s+(?:CHARACTER\s+SET|CHARSET)\b", re.IGNORECASE)
_NOT_COLUMNS = {"INDEX", "KEY", "PRIMARY", "UNIQUE", "FULLTEXT", "SPATIAL", "CONSTRAINT",
                "FOREIGN", "CHECK", "PARTITION", "PERIOD", "SYSTEM", "TO", "AS"}  # fmt: skip


#: statements a transaction holds besides its rows: changes logged as statements, savepoints
_IN_TRANSACTION = (b"INSERT", b"UPDATE", b"DELETE", b"REPLACE", b"LOAD", b"WITH", b"SAVEPOINT",
                   b"ROLLBACK TO", b"RELEASE", b"/*", b"(", b"SELECT", b"CALL", b"DO ")  # fmt: skip
#: SAVEPOINT name (group 1 None), or ROLLBACK [WORK] TO [SAVEPOINT] name
_SAVEPOINT = re.compile(
    r"\s*(?:SAVEPOINT|(ROLLBACK)\s+(?:WORK\s+)?TO\s+(?:SAVEPOINT\s+)?)\s*(`(?:[^`]|``)+`|\S+)",
    re.IGNORECASE,
)
_DML = re.compile(r"(INSERT|UPDATE|DELETE|REPLACE|LOAD|WITH|SELECT|CALL|DO)\b|\(", re.IGNORECASE)
_TRUNCATE = re.compile(
    r"TRUNCATE\s+(?:TABLE\s+)?((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)", re.IGNORECASE
)
_DROP_DATABASE = re.compile(
    r"DROP\s+(?:DATABASE|SCHEMA)\s+(?:IF\s+EXISTS\s+)?(`[^`]+`|\w+)", re.IGNORECASE
)
_NAME = r"(?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?"
#: statements that drop, rename or replace tables or their rows without a row event each (the
#: names: what ``_TABLE_NAME`` finds in groups 1 and 2, groups 3 on as they are): DROP, RENAME,
#: ALTER ... RENAME, CREATE OR REPLACE (MariaDB), a partition's rows dropped, emptied or swapped
#: with another table's, a tablespace discarded or imported, a partition made a table of its own
#: or a table made a partition (MariaDB's CONVERT PARTITION / CONVERT TABLE: rows leave or join)
_REPLACED = re.compile(
    r"(?:DROP\s+TABLES?\s+(?:IF\s+EXISTS\s+)?|RENAME\s+TABLES?\s+)(.*)"
    r"|ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:IF\s+EXISTS\s+)?(.*\bRENAME\s+(?:TO\s+|AS\s+)?"
    r"(?!COLUMN\b|INDEX\b|KEY\b)(?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?\s*(?:,|$).*)"
    rf"|CREATE\s+OR\s+REPLACE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?({_NAME})"
    rf"|ALTER\s+(?:ONLINE\s+|IGNORE\s+)*TABLE\s+(?:IF\s+EXISTS\s+)?({_NAME})\s.*?"
    rf"(?:\b(?:TRUNCATE|DROP)\s+PARTITION\b|\b(?:DISCARD|IMPORT)\s+(?:PARTITION\s.*?)?TABLESPACE\b"
    rf"|\bEXCHANGE\s+PARTITION\s+\w+\s+WITH\s+TABLE\s+({_NAME})"
    rf"|\bCONVERT\s+PARTITION\s+\S+\s+TO\s+TABLE\b|\bCONVERT\s+TABLE\s+({_NAME})\s+TO\s+PARTITION\b)",
    re.IGNORECASE | re.DOTALL,
)
_TABLE_NAME = re.compile(
    r"(?<![\w`.])((?:`[^`]+`|\w+)(?:\.(?:`[^`]+`|\w+))?)",
)
_COMMENTS = re.compile(r"/\*.*?\*/|^\s*(?:#|--\s)[^\n]*$", re.DOTALL | re.MULTILINE)


def _in_transaction(q: bytes, body: bytes) -> bool:
    """Whether a QUERY event inside an open transaction belongs to it (a change logged as a
    statement, a savepoint) rather than ending it (COMMIT, a DDL statement's implicit commit)."""
    if q.startswith(b"/*") or q.startswith(b"#") or q.startswith(b"--"):
        q = _COMMENTS.sub(" ", _statement(body)[1]).strip().upper().encode()
    return q.startswith(_IN_TRANSACTION)


def _table_key(name: str, db: str) -> tuple[str, str]:
    """``db.table`` or ``table`` (quoted or not) as (database, table), ``db`` the default."""
    parts = [x.strip("`") for x in re.findall(r"`[^`]+`|[^.]+", name)]
    return (parts[0], parts[1]) if len(parts) == 2 else (db, parts[0])


def _names(text: str, table: str) -> bool:
    """Whether statement ``text`` names ``table`` (a word of its own, quoted or not)."""
    return re.search(rf"(?<![\w$]){re.escape(table)}(?![\w$])", text, re.IGNORECASE) is not None


def _statement(body: bytes) -> tuple[str, str]:
    """A QUERY event's default database and statement."""
    dblen = body[8]
    svlen = int.from_bytes(body[11:13], "little")
    at = 13 + svlen
    db = body[at : at + dblen].decode("utf-8", "replace")
    return db, body[at + dblen + 1 :].decode("utf-8", "replace")


def _query_text(body: bytes) -> bytes:
    """The statement of a QUERY event's body."""
    dblen = body[8]
    svlen = int.from_bytes(body[11:13], "little")
    at = 13 + svlen + dblen + 1
    return body[at : at + 16].lstrip().upper()


# -- operations ----------------------------------------------------------------------------------


def check(reader: Reader) -> list[str]:
    """What the server still lacks for this capture, each with the setting to change."""
    reader._plan()
    out = []
    v = dict(
        (str(r[0]).lower(), str(r[1]))
        for r in reader._query(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('log_bin', 'binlog_format', "
            "'binlog_row_image', 'server_id', 'binlog_row_metadata', 'log_bin_compress')"
        )
    )
    if v.get("log_bin", "OFF").upper() != "ON":
        out.append(
            "log_bin is OFF: start the server with log_bin (e.g. log_bin = mysql-bin in my.cnf)"
        )
    if v.get("binlog_format", "").upper() != "ROW":
        out.append(
            f"binlog_format is {v.get('binlog_format')}: SET GLOBAL binlog_format = ROW (and in my.cnf)"
        )
    if v.get("binlog_row_image", "").upper() != "FULL":
        out.append(
            f"binlog_row_image is {v.get('binlog_row_image')}: SET GLOBAL binlog_row_image = FULL (and in my.cnf)"
        )
    if v.get("server_id", "0") == "0":
        out.append("server_id is 0: set server_id = 1 (any non-zero value) in my.cnf")
    grants = " ".join(str(r[0]).upper() for r in reader._query("SHOW GRANTS"))
    if "ALL PRIVILEGES ON *.*" not in grants and not (
        "REPLICATION SLAVE" in grants or "REPLICATION REPLICA" in grants
    ):
        out.append(
            "the user may not read the binlog: GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO <user>"
        )
    if v.get("binlog_row_metadata", "").upper() != "FULL":
        out.append(
            "binlog_row_metadata is not FULL (optional): without column names in the binlog, a "
            "table whose columns change stops the capture; SET GLOBAL binlog_row_metadata = FULL"
        )
    return out


def status(reader: Reader) -> dict[str, Any]:
    files = reader._query("SHOW BINARY LOGS")
    reader._gtid_mode = None
    return {"binlog": str(reader._master()), "position": reader._here(), "files": len(files),
            "bytes": sum(int(r[1]) for r in files)}  # fmt: skip
