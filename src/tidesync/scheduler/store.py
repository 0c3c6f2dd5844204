"""The scheduler's state store: nodes' creation marks, instances, backfill batches.

SQLite (``.tidesync/state.db``, WAL, beside the other state of :mod:`tidesync.state`) by default; PostgreSQL (psycopg 3) when the project
sets ``state: postgresql://...``, so that schedulers on several machines share one schedule.

Exactly once: an instance moves ``waiting -> running`` only by a conditional UPDATE
(``... WHERE id IN (...) AND state = 'waiting' RETURNING``) inside a transaction that first
locks the node (``SELECT ... FOR UPDATE`` on its ``ts_nodes`` row in PostgreSQL, ``BEGIN
IMMEDIATE`` in SQLite). Two schedulers racing for one instance: one UPDATE matches, the other
matches nothing. The lock also makes a node's ``concurrency`` limit hold across schedulers.

A claim carries the claimer's ``owner`` (``host:pid:token``) and a lease; the owner renews the
lease by heartbeat. An instance whose lease expired, or whose owner is a process of this host
that no longer exists, is recovered: back to ``waiting`` (its interrupted attempt not counted),
by a compare-and-set on ``(id, owner, state)``, so that it is recovered once. Every write of a
result is conditional on ``owner`` too: a scheduler that lost its lease cannot overwrite what
the new owner did.

Times are UTC epoch seconds; ``cyctime`` is ``YYYYMMDDHHMMSS`` in the node's zone.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tidesync.errors import ConfigError, FatalError, redact, redact_url

__all__ = [
    "Instance",
    "NewInstance",
    "Store",
    "open_store",
    "STATES",
    "TERMINAL",
    "DONE",
    "MAX_RECOVERIES",
]

STATES = ("waiting", "running", "succeeded", "failed", "skipped", "cancelled")
TERMINAL = ("succeeded", "failed", "skipped", "cancelled")
DONE = ("succeeded", "skipped")  # what a dependent instance waits for
MAX_RECOVERIES = 3  # interrupted this often (a job that kills its scheduler): failed
LOG_TAIL = 64 * 1024

_COLUMNS = (
    "id",
    "node",
    "cyctime",
    "bizdate",
    "batch",
    "due_at",
    "state",
    "params",
    "attempts",
    "recoveries",
    "next_try_at",
    "started_at",
    "finished_at",
    "owner",
    "lease_until",
    "kill_requested",
    "error",
    "report",
    "log_path",
    "log_tail",
    "created_at",
)
_SELECT = ", ".join(_COLUMNS)
_SELECT_LIGHT = ", ".join("NULL" if c == "log_tail" else c for c in _COLUMNS)
_PAUSED = "paused:"  # ts_meta key of a paused node


@dataclass
class Instance:
    """One row of ``ts_instances``: one run of a node for one cyctime (in one batch)."""

    id: int
    node: str
    cyctime: str  # YYYYMMDDHHMMSS, wall time in the node's zone
    bizdate: str  # YYYYMMDD
    batch: str  # '' for the schedule, the backfill's id otherwise
    due_at: float
    state: str
    params: str | None  # JSON object, as evaluated
    attempts: int  # runs since creation or the last rerun
    recoveries: int
    next_try_at: float | None
    started_at: float | None
    finished_at: float | None
    owner: str | None
    lease_until: float | None
    kill_requested: int
    error: str | None
    #: the report of the last attempt, JSON; None while an attempt runs, after a rerun, and
    #: when the attempt made none (a bad job file): never an earlier attempt's beside its state
    report: str | None
    log_path: str | None
    log_tail: str | None
    created_at: float

    @property
    def param_values(self) -> dict[str, str]:
        return json.loads(self.params) if self.params else {}

    def as_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["params"] = self.param_values
        d["report"] = json.loads(self.report) if self.report else None
        d.pop("log_tail")
        return d


@dataclass(frozen=True)
class NewInstance:
    node: str
    cyctime: str
    bizdate: str
    due_at: float
    params: dict[str, str] | None
    batch: str = ""
    state: str = "waiting"
    error: str | None = None


def _closed(con: Any) -> bool:
    closed = getattr(con, "closed", None)  # psycopg has it; sqlite3 connections are ours to close
    return bool(closed)


def _row(r: Sequence[Any]) -> Instance:
    return Instance(*r)


def this_host() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_gone(owner: str | None, host: str) -> bool:
    """Whether ``owner`` (host:pid:token) is a process of this host that no longer exists."""
    if not owner:
        return True
    parts = owner.rsplit(":", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False
    return not pid_alive(int(parts[1]))


class Store:
    """The common SQL; subclasses give the connection, the placeholders and the node lock."""

    dialect = ""
    _ddl: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._local = threading.local()
        self._made: list[Any] = []  # every connection of every thread, for close()
        self._made_lock = threading.Lock()
        self._generation = 0

    # -- plumbing -----------------------------------------------------------------------------
    def _connect(self) -> Any:
        raise NotImplementedError

    def _conn(self) -> Any:
        """This thread's connection (one per thread: a connection is not shared)."""
        held = getattr(self._local, "held", None)
        if held is None or held[0] != self._generation or _closed(held[1]):
            con = self._connect()
            with self._made_lock:
                self._made.append(con)
                self._local.held = (self._generation, con)
            return con
        return held[1]

    def _q(self, sql: str) -> str:
        return sql

    @contextmanager
    def _tx(self, node_lock: str | None = None) -> Iterator[Any]:
        raise NotImplementedError

    def _exec(self, cur: Any, sql: str, args: Sequence[Any] = ()) -> Any:
        cur.execute(self._q(sql), tuple(args))
        return cur

    def close(self) -> None:
        """Close every thread's connection; the store reconnects if used again."""
        with self._made_lock:
            made, self._made = self._made, []
            self._generation += 1
        for con in made:
            with contextlib.suppress(Exception):  # closing is best effort
                con.close()

    def describe(self) -> str:
        raise NotImplementedError

    # -- nodes --------------------------------------------------------------------------------
    def marks(self) -> dict[str, tuple[float | None, float | None]]:
        """node -> (origin, created_to): the first slot ever created, the creation watermark."""
        with self._tx() as cur:
            rows = self._exec(cur, "SELECT name, origin, created_to FROM ts_nodes").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def ensure_node(self, name: str) -> None:
        with self._tx() as cur:
            self._exec(
                cur, "INSERT INTO ts_nodes (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,)
            )

    def create(self, name: str, rows: list[NewInstance], created_to: float, now: float) -> int:
        """Insert the instances of ``name`` up to ``created_to`` (existing ones are kept) and
        move its watermark; returns how many rows are new."""
        new = 0
        with self._tx() as cur:
            self._exec(
                cur, "INSERT INTO ts_nodes (name) VALUES (?) ON CONFLICT (name) DO NOTHING", (name,)
            )
            new = self._insert(cur, rows, now)
            if rows:
                first = min(r.due_at for r in rows)
                self._exec(
                    cur,
                    "UPDATE ts_nodes SET origin = ? WHERE name = ? AND "
                    "(origin IS NULL OR origin > ?)",
                    (first, name, first),
                )
            self._exec(
                cur,
                "UPDATE ts_nodes SET created_to = ? WHERE name = ? AND "
                "(created_to IS NULL OR created_to < ?)",
                (created_to, name, created_to),
            )
        return new

    def _insert(self, cur: Any, rows: list[NewInstance], now: float) -> int:
        if not rows:
            return 0
        sql = self._q(
            "INSERT INTO ts_instances (node, cyctime, bizdate, batch, due_at, state, params, "
            "error, created_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (node, cyctime, batch) DO NOTHING"
        )
        data = [
            (
                r.node,
                r.cyctime,
                r.bizdate,
                r.batch,
                r.due_at,
                r.state,
                None if r.params is None else json.dumps(r.params),
                r.error,
                now,
                now if r.state in TERMINAL else None,
            )
            for r in rows
        ]
        cur.executemany(sql, data)
        return max(0, int(cur.rowcount))

    # -- batches ------------------------------------------------------------------------------
    def create_batch(
        self,
        batch: str,
        kind: str,
        parallel: int,
        nodes: list[str],
        rows: list[NewInstance],
        now: float,
    ) -> int:
        with self._tx() as cur:
            self._exec(
                cur,
                "INSERT INTO ts_batches (id, kind, parallel, nodes, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (batch, kind, parallel, json.dumps(nodes), now),
            )
            for n in nodes:
                self._exec(
                    cur,
                    "INSERT INTO ts_nodes (name) VALUES (?) ON CONFLICT (name) DO NOTHING",
                    (n,),
                )
            return self._insert(cur, rows, now)

    def batch_parallel(self, batch: str) -> int:
        with self._tx() as cur:
            row = self._exec(
                cur, "SELECT parallel FROM ts_batches WHERE id = ?", (batch,)
            ).fetchone()
        return int(row[0]) if row else 1

    # -- reads --------------------------------------------------------------------------------
    def get(self, instance_id: int) -> Instance | None:
        with self._tx() as cur:
            r = self._exec(
                cur, f"SELECT {_SELECT} FROM ts_instances WHERE id = ?", (instance_id,)
            ).fetchone()
        return _row(r) if r else None

    def find(self, node: str, cyctime: str, batch: str = "") -> Instance | None:
        with self._tx() as cur:
            r = self._exec(
                cur,
                f"SELECT {_SELECT} FROM ts_instances WHERE node = ? AND cyctime = ? AND batch = ?",
                (node, cyctime, batch),
            ).fetchone()
        return _row(r) if r else None

    def states(self, node: str, batch: str, cyctimes: Iterable[str]) -> dict[str, str]:
        keys = sorted(set(cyctimes))
        if not keys:
            return {}
        with self._tx() as cur:
            rows = self._exec(
                cur,
                "SELECT cyctime, state FROM ts_instances WHERE node = ? AND batch = ? AND "
                "cyctime >= ? AND cyctime <= ?",
                (node, batch, keys[0], keys[-1]),
            ).fetchall()
        wanted = set(keys)
        return {c: s for c, s in rows if c in wanted}

    def previous(self, node: str, batch: str, cyctime: str) -> Instance | None:
        with self._tx() as cur:
            r = self._exec(
                cur,
                f"SELECT {_SELECT} FROM ts_instances WHERE node = ? AND batch = ? "
                "AND cyctime < ? ORDER BY cyctime DESC LIMIT 1",
                (node, batch, cyctime),
            ).fetchone()
        return _row(r) if r else None

    def unfinished_head(self, node: str, batch: str, n: int) -> list[str]:
        """The first ``n`` cyctimes of ``node`` in ``batch`` not yet finished (backfill order)."""
        with self._tx() as cur:
            rows = self._exec(
                cur,
                "SELECT cyctime FROM ts_instances WHERE node = ? AND batch = ? "
                "AND state IN ('waiting', 'running') ORDER BY cyctime LIMIT ?",
                (node, batch, n),
            ).fetchall()
        return [r[0] for r in rows]

    def candidates(
        self,
        now: float,
        limit: int,
        offset: int = 0,
        batch: str | None = None,
        instance_id: int | None = None,
    ) -> list[Instance]:
        """Waiting instances due by ``now`` (and past their retry time), oldest first."""
        sql = (
            f"SELECT {_SELECT} FROM ts_instances WHERE state = 'waiting' AND due_at <= ? "
            "AND (next_try_at IS NULL OR next_try_at <= ?)"
        )
        args: list[Any] = [now, now]
        if batch is not None:
            sql += " AND batch = ?"
            args.append(batch)
        if instance_id is not None:
            sql += " AND id = ?"
            args.append(instance_id)
        sql += " ORDER BY due_at, id LIMIT ? OFFSET ?"
        args += [limit, offset]
        with self._tx() as cur:
            return [_row(r) for r in self._exec(cur, sql, args).fetchall()]

    def next_wakeup(self, now: float) -> float | None:
        """The earliest future retry time of a waiting instance."""
        with self._tx() as cur:
            r = self._exec(
                cur,
                "SELECT min(next_try_at) FROM ts_instances WHERE state = "
                "'waiting' AND next_try_at > ?",
                (now,),
            ).fetchone()
        return r[0] if r and r[0] is not None else None

    def listing(
        self,
        *,
        node: str | None = None,
        state: str | None = None,
        since: str | None = None,
        batch: str | None = None,
        limit: int | None = None,
    ) -> list[Instance]:
        sql = f"SELECT {_SELECT} FROM ts_instances WHERE 1 = 1"
        args: list[Any] = []
        for col, op, val in (
            ("node", "=", node),
            ("state", "=", state),
            ("cyctime", ">=", since),
            ("batch", "=", batch),
        ):
            if val is not None:
                sql += f" AND {col} {op} ?"
                args.append(val)
        sql += " ORDER BY cyctime DESC, id DESC"
        if limit:
            sql += " LIMIT ?"
            args.append(limit)
        with self._tx() as cur:
            rows = [_row(r) for r in self._exec(cur, sql, args).fetchall()]
        return rows[::-1]

    def batch_summary(self, batch: str) -> dict[str, int]:
        with self._tx() as cur:
            rows = self._exec(
                cur,
                "SELECT state, count(*) FROM ts_instances WHERE batch = ? GROUP BY state",
                (batch,),
            ).fetchall()
        return {s: int(n) for s, n in rows}

    def page(
        self,
        *,
        nodes: Sequence[str] = (),
        states: Sequence[str] = (),
        bizdate_from: str | None = None,
        bizdate_to: str | None = None,
        batch: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[Instance], int]:
        """One page of instances, newest cyctime first, and how many match in all (the
        operations page). Rows come without their log tail."""
        where, args = " WHERE 1 = 1", []
        for col, vals in (("node", nodes), ("state", states)):
            if vals:
                where += f" AND {col} IN ({', '.join('?' * len(vals))})"
                args += list(vals)
        for col, op, val in (
            ("bizdate", ">=", bizdate_from),
            ("bizdate", "<=", bizdate_to),
            ("batch", "=", batch),
        ):
            if val is not None:
                where += f" AND {col} {op} ?"
                args.append(val)
        with self._tx() as cur:
            total = self._exec(cur, "SELECT count(*) FROM ts_instances" + where, args).fetchone()
            rows = self._exec(
                cur,
                f"SELECT {_SELECT_LIGHT} FROM ts_instances{where} "
                "ORDER BY cyctime DESC, id DESC LIMIT ? OFFSET ?",
                [*args, limit, offset],
            ).fetchall()
        return [_row(r) for r in rows], int(total[0])

    def latest_due(self, nodes: Iterable[str], now: float) -> dict[str, Instance]:
        """Each node's instance with the latest cyctime among those due by ``now`` (any batch),
        without its log tail: one index lookup per node, in two statements."""
        wanted = set(nodes)
        with self._tx() as cur:
            ids = [
                r[1]
                for r in self._exec(
                    cur,
                    "SELECT n.name, (SELECT j.id FROM ts_instances j WHERE j.node = n.name AND "
                    "j.due_at <= ? ORDER BY j.cyctime DESC LIMIT 1) FROM ts_nodes n",
                    (now,),
                ).fetchall()
                if r[0] in wanted and r[1] is not None
            ]
            rows = (
                self._exec(
                    cur,
                    f"SELECT {_SELECT_LIGHT} FROM ts_instances WHERE id IN "
                    f"({', '.join('?' * len(ids))})",
                    ids,
                ).fetchall()
                if ids
                else []
            )
        return {i.node: i for i in map(_row, rows)}

    def history(self, node: str, limit: int) -> list[Instance]:
        """The latest ``limit`` finished runs of ``node`` (succeeded or failed), oldest first,
        without their log tail."""
        with self._tx() as cur:
            rows = self._exec(
                cur,
                f"SELECT {_SELECT_LIGHT} FROM ts_instances WHERE node = ? AND "
                "state IN ('succeeded', 'failed') ORDER BY cyctime DESC, id DESC LIMIT ?",
                (node, limit),
            ).fetchall()
        return [_row(r) for r in reversed(rows)]

    # -- pauses -------------------------------------------------------------------------------
    # A node paused by `tidesync pause` (or the operations page) is a row of ts_meta, so that
    # every scheduler sharing the store sees it; `paused: true` in the project file is the other
    # way, and either holds the node's instances back.
    def pause(self, node: str, now: float) -> bool:
        """Pause ``node``; False when it already was."""
        with self._tx() as cur:
            cur = self._exec(
                cur,
                "INSERT INTO ts_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                (_PAUSED + node, json.dumps({"at": now})),
            )
            return bool(cur.rowcount)

    def resume(self, node: str) -> bool:
        """Resume ``node``; False when it was not paused (in the store)."""
        with self._tx() as cur:
            cur = self._exec(cur, "DELETE FROM ts_meta WHERE key = ?", (_PAUSED + node,))
            return bool(cur.rowcount)

    def paused(self) -> dict[str, float]:
        """node -> when it was paused, for the nodes paused in the store."""
        with self._tx() as cur:
            rows = self._exec(
                cur, "SELECT key, value FROM ts_meta WHERE key LIKE ?", (_PAUSED + "%",)
            ).fetchall()
        return {k[len(_PAUSED) :]: float(json.loads(v).get("at", 0)) for k, v in rows}

    # -- transitions --------------------------------------------------------------------------
    def claim(
        self,
        node: str,
        ids: list[int],
        owner: str,
        now: float,
        lease_until: float,
        limit: int | None,
    ) -> list[Instance]:
        """Move up to ``limit - running`` of ``ids`` (instances of ``node``) from waiting to
        running for ``owner``; returns the rows it got (others were taken or changed)."""
        if not ids:
            return []
        with self._tx(node_lock=node) as cur:
            if limit is not None:
                running = self._exec(
                    cur,
                    "SELECT count(*) FROM ts_instances WHERE node = ? AND state = 'running'",
                    (node,),
                ).fetchone()[0]
                ids = ids[: max(0, limit - int(running))]
                if not ids:
                    return []
            marks = ", ".join("?" * len(ids))
            rows = self._exec(
                cur,
                "UPDATE ts_instances SET state = 'running', owner = ?, lease_until = ?, "
                "attempts = attempts + 1, started_at = ?, finished_at = NULL, next_try_at = NULL, "
                "report = NULL "
                f"WHERE id IN ({marks}) AND state = 'waiting' AND kill_requested = 0 "
                f"RETURNING {_SELECT}",
                (owner, lease_until, now, *ids),
            ).fetchall()
        got = [_row(r) for r in rows]
        got.sort(key=lambda i: ids.index(i.id))
        return got

    def finish(
        self,
        instance_id: int,
        owner: str,
        state: str,
        *,
        now: float,
        error: str | None = None,
        report: str | None = None,
        next_try_at: float | None = None,
        log_tail: str | None = None,
        log_path: str | None = None,
    ) -> bool:
        """Record the end of an attempt, ``report`` its own (None: it made none, and an earlier
        attempt's is not kept); False when ``owner`` no longer holds the instance."""
        with self._tx() as cur:
            cur = self._exec(
                cur,
                "UPDATE ts_instances SET state = ?, finished_at = ?, error = ?, "
                "report = ?, next_try_at = ?, owner = NULL, lease_until = NULL, "
                "log_tail = COALESCE(?, log_tail), log_path = COALESCE(?, log_path), "
                "kill_requested = 0 WHERE id = ? AND owner = ? AND state = 'running'",
                (state, now, error, report, next_try_at, log_tail, log_path, instance_id, owner),
            )
            return bool(cur.rowcount)

    def set_log_tail(self, instance_id: int, owner: str, tail: str, log_path: str) -> None:
        """The end of a running instance's log, while it runs (its owner only)."""
        with self._tx() as cur:
            self._exec(
                cur,
                "UPDATE ts_instances SET log_tail = ?, log_path = ? "
                "WHERE id = ? AND owner = ? AND state = 'running'",
                (tail, log_path, instance_id, owner),
            )

    def finish_many(self, items: list[tuple[int, str]], owner: str, now: float) -> None:
        """Several quick endings (dry runs) in one transaction: (id, state)."""
        with self._tx() as cur:
            cur.executemany(
                self._q(
                    "UPDATE ts_instances SET state = ?, finished_at = ?, owner = NULL, "
                    "lease_until = NULL WHERE id = ? AND owner = ? AND state = 'running'"
                ),
                [(state, now, i, owner) for i, state in items],
            )

    def set_params(self, instance_id: int, params: dict[str, str], log_path: str) -> None:
        with self._tx() as cur:
            self._exec(
                cur,
                "UPDATE ts_instances SET params = ?, log_path = ? WHERE id = ?",
                (json.dumps(params), log_path, instance_id),
            )

    def heartbeat(self, owner: str, lease_until: float, ids: Sequence[int]) -> dict[int, int]:
        """Renew ``owner``'s leases on ``ids`` (the runs it is really doing); returns those it
        still holds: id -> kill_requested."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        with self._tx() as cur:
            self._exec(
                cur,
                "UPDATE ts_instances SET lease_until = ? WHERE owner = ? AND state = 'running' "
                f"AND id IN ({marks})",
                (lease_until, owner, *ids),
            )
            rows = self._exec(
                cur,
                "SELECT id, kill_requested FROM ts_instances WHERE owner = ? AND state = 'running' "
                f"AND id IN ({marks})",
                (owner, *ids),
            ).fetchall()
        return {int(i): int(k) for i, k in rows}

    def stale(self, lease_now: float, host: str) -> list[Instance]:
        """Running instances whose owner is gone: lease expired, or a dead process here."""
        with self._tx() as cur:
            rows = self._exec(
                cur, f"SELECT {_SELECT} FROM ts_instances WHERE state = 'running'"
            ).fetchall()
        out = []
        for r in rows:
            inst = _row(r)
            if (inst.lease_until is not None and inst.lease_until < lease_now) or owner_gone(
                inst.owner, host
            ):
                out.append(inst)
        return out

    def recover(self, inst: Instance, now: float, reason: str) -> str | None:
        """Take back an instance from its lost owner: waiting again (the interrupted attempt
        does not count), cancelled when a kill was asked, failed after MAX_RECOVERIES.
        Returns the new state, or None when someone else changed it first."""
        if inst.kill_requested:
            state, err = "cancelled", f"killed; {reason}"
        elif inst.recoveries + 1 >= MAX_RECOVERIES:
            state, err = "failed", f"{reason}; interrupted {inst.recoveries + 1} times, giving up"
        else:
            state, err = "waiting", f"{reason}; it will run again"
        with self._tx() as cur:
            cur = self._exec(
                cur,
                "UPDATE ts_instances SET state = ?, error = ?, owner = NULL, "
                "lease_until = NULL, attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, "
                "recoveries = recoveries + 1, next_try_at = NULL, kill_requested = 0, "
                "finished_at = CASE WHEN ? = 'waiting' THEN NULL ELSE ? END "
                "WHERE id = ? AND state = 'running' AND owner = ?",
                (state, err, state, now, inst.id, inst.owner),
            )
            return state if cur.rowcount else None

    def release(self, instance_id: int, owner: str, reason: str) -> bool:
        """Give an instance back as waiting (a scheduler shutting down): the attempt is not
        counted; the next scheduler runs it again."""
        with self._tx() as cur:
            cur = self._exec(
                cur,
                "UPDATE ts_instances SET state = 'waiting', owner = NULL, lease_until = NULL, "
                "attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END, error = ?, "
                "next_try_at = NULL, finished_at = NULL "
                "WHERE id = ? AND owner = ? AND state = 'running'",
                (reason, instance_id, owner),
            )
            return bool(cur.rowcount)

    def request_kill(self, instance_id: int, now: float) -> str:
        """'cancelled' (it was waiting), 'requested' (running: its owner will cancel it), or
        the state it is in (finished: nothing to do)."""
        with self._tx() as cur:
            c = self._exec(
                cur,
                "UPDATE ts_instances SET state = 'cancelled', finished_at = ?, "
                "error = 'killed before it ran' WHERE id = ? AND state = 'waiting'",
                (now, instance_id),
            )
            if c.rowcount:
                return "cancelled"
            c = self._exec(
                cur,
                "UPDATE ts_instances SET kill_requested = 1 WHERE id = ? AND state = 'running'",
                (instance_id,),
            )
            if c.rowcount:
                return "requested"
            r = self._exec(
                cur, "SELECT state FROM ts_instances WHERE id = ?", (instance_id,)
            ).fetchone()
        return r[0] if r else "missing"

    def rerun(self, instance_id: int) -> str:
        """Back to waiting with a fresh count of retries; returns the state it had."""
        with self._tx() as cur:
            r = self._exec(
                cur, "SELECT state FROM ts_instances WHERE id = ?", (instance_id,)
            ).fetchone()
            if r is None:
                return "missing"
            if r[0] == "running":
                return "running"
            self._exec(
                cur,
                "UPDATE ts_instances SET state = 'waiting', attempts = 0, "
                "recoveries = 0, next_try_at = NULL, error = NULL, kill_requested = 0, "
                "finished_at = NULL, started_at = NULL, report = NULL "
                "WHERE id = ? AND state <> 'running'",
                (instance_id,),
            )
            return str(r[0])


# ---------------------------------------------------------------------------------------------
# SQLite


_SQLITE_DDL = (
    "CREATE TABLE IF NOT EXISTS ts_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ts_nodes (name TEXT PRIMARY KEY, origin REAL, created_to REAL)",
    "CREATE TABLE IF NOT EXISTS ts_batches (id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
    "parallel INTEGER NOT NULL, nodes TEXT NOT NULL, created_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ts_instances ("
    "id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, cyctime TEXT NOT NULL, "
    "bizdate TEXT NOT NULL, batch TEXT NOT NULL DEFAULT '', due_at REAL NOT NULL, "
    "state TEXT NOT NULL, params TEXT, attempts INTEGER NOT NULL DEFAULT 0, "
    "recoveries INTEGER NOT NULL DEFAULT 0, next_try_at REAL, started_at REAL, finished_at REAL, "
    "owner TEXT, lease_until REAL, kill_requested INTEGER NOT NULL DEFAULT 0, error TEXT, "
    "report TEXT, log_path TEXT, log_tail TEXT, created_at REAL NOT NULL, "
    "UNIQUE (node, cyctime, batch))",
    "CREATE INDEX IF NOT EXISTS ts_instances_due ON ts_instances (state, due_at)",
    "CREATE INDEX IF NOT EXISTS ts_instances_owner ON ts_instances (owner)",
    # the operations page lists newest first, a page at a time
    "CREATE INDEX IF NOT EXISTS ts_instances_newest ON ts_instances (cyctime, id)",
    "INSERT INTO ts_meta (key, value) VALUES ('schema', '1') ON CONFLICT (key) DO NOTHING",
)


class SqliteStore(Store):
    dialect = "sqlite"

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        con = self._conn()
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _SQLITE_DDL:
                con.execute(stmt)
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    def describe(self) -> str:
        return f"sqlite {self.path}"

    def _connect(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        con.execute("PRAGMA busy_timeout = 60000")
        con.execute("PRAGMA synchronous = NORMAL")
        return con

    @contextmanager
    def _tx(self, node_lock: str | None = None) -> Iterator[Any]:
        con = self._conn()
        cur = con.cursor()
        # IMMEDIATE takes the database's write lock up front: claims are serialized, and a
        # transaction that reads and then writes never meets SQLITE_BUSY on the upgrade (in WAL
        # mode SQLite returns "database is locked" at once there, without the busy timeout)
        cur.execute("BEGIN IMMEDIATE")
        try:
            yield cur
        except BaseException:
            con.execute("ROLLBACK")
            raise
        else:
            con.execute("COMMIT")
        finally:
            cur.close()


# ---------------------------------------------------------------------------------------------
# PostgreSQL


_PG_DDL = (
    "CREATE TABLE IF NOT EXISTS ts_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ts_nodes (name TEXT PRIMARY KEY, origin DOUBLE PRECISION, "
    "created_to DOUBLE PRECISION)",
    "CREATE TABLE IF NOT EXISTS ts_batches (id TEXT PRIMARY KEY, kind TEXT NOT NULL, "
    "parallel INTEGER NOT NULL, nodes TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL)",
    "CREATE TABLE IF NOT EXISTS ts_instances ("
    "id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, node TEXT NOT NULL, "
    "cyctime TEXT NOT NULL, bizdate TEXT NOT NULL, batch TEXT NOT NULL DEFAULT '', "
    "due_at DOUBLE PRECISION NOT NULL, state TEXT NOT NULL, params TEXT, "
    "attempts INTEGER NOT NULL DEFAULT 0, recoveries INTEGER NOT NULL DEFAULT 0, "
    "next_try_at DOUBLE PRECISION, started_at DOUBLE PRECISION, finished_at DOUBLE PRECISION, "
    "owner TEXT, lease_until DOUBLE PRECISION, kill_requested INTEGER NOT NULL DEFAULT 0, "
    "error TEXT, report TEXT, log_path TEXT, log_tail TEXT, "
    "created_at DOUBLE PRECISION NOT NULL, UNIQUE (node, cyctime, batch))",
    "CREATE INDEX IF NOT EXISTS ts_instances_due ON ts_instances (state, due_at)",
    "CREATE INDEX IF NOT EXISTS ts_instances_owner ON ts_instances (owner)",
    # the operations page lists newest first, a page at a time
    "CREATE INDEX IF NOT EXISTS ts_instances_newest ON ts_instances (cyctime, id)",
    "INSERT INTO ts_meta (key, value) VALUES ('schema', '1') ON CONFLICT (key) DO NOTHING",
)
_PG_DDL_LOCK = 7_302_114_151  # pg_advisory_xact_lock key: one scheduler creates the tables


class PostgresStore(Store):
    dialect = "postgresql"

    def __init__(self, url: str):
        super().__init__()
        try:
            import psycopg
        except ModuleNotFoundError:
            raise ConfigError(
                "state: a PostgreSQL state store needs psycopg: pip install 'tidesync[postgresql]'"
            ) from None
        self._psycopg = psycopg
        self.url = url
        try:
            with self._tx() as cur:
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_DDL_LOCK,))
                for stmt in _PG_DDL:
                    cur.execute(stmt)
        except psycopg.Error as e:  # a bad URL too: its message may quote the password
            raise FatalError(
                f"state: cannot reach the PostgreSQL state store "
                f"{redact_url(url)}: {redact(str(e)).strip()}"
            ) from None

    def describe(self) -> str:
        return f"postgresql {redact_url(self.url)}"

    def _connect(self) -> Any:
        return self._psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s")

    @contextmanager
    def _tx(self, node_lock: str | None = None) -> Iterator[Any]:
        con = self._conn()
        with con.transaction(), con.cursor() as cur:
            if node_lock is not None:
                cur.execute(
                    "INSERT INTO ts_nodes (name) VALUES (%s) ON CONFLICT (name) DO NOTHING",
                    (node_lock,),
                )
                cur.execute("SELECT name FROM ts_nodes WHERE name = %s FOR UPDATE", (node_lock,))
            yield cur


def open_store(state: str | None, home: Path) -> Store:
    """The store a project names (``state:``, located by :func:`tidesync.state.locate` as the
    rest of the project's state is): ``postgresql://...``, a SQLite path relative to the project
    folder (``home``'s parent), or the default ``.tidesync/state.db``. ``${env:NAME}`` in the URL
    is read from the environment."""
    from tidesync.connections import resolve_secrets
    from tidesync.state import locate

    loc = locate(state, home.parent)
    if loc.kind == "postgresql":
        return PostgresStore(resolve_secrets(loc.url, "state"))
    assert loc.path is not None
    return SqliteStore(loc.path)
