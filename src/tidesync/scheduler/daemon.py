"""The scheduler: creates instances when they are due, runs the runnable ones, keeps leases.

One pass (:meth:`Scheduler.run_once`, and every tick of :meth:`Scheduler.serve`)::

    recover     running instances whose owner is gone -> waiting again (attempt not counted)
    create      every node's slots due since its watermark -> waiting instances
    dispatch    waiting, due, past their retry time, dependencies met -> claimed -> run on a
                worker thread (dry-run nodes end 'skipped' at once)
    finish      succeeded | waiting again (a retry is left) | failed | cancelled

A keeper thread renews the leases of this scheduler's running instances, cancels the ones that
ran past their node's ``timeout`` or were killed (``tidesync instance kill``), and cancels any
whose lease another scheduler took over (which then runs it again: a lease is never shared).

Time is injected: ``clock`` gives the schedule's "now" (``run-once --at`` pins it), and
``lease_clock`` the epoch seconds leases are measured in (real time by default).
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from tidesync.errors import ConfigError, is_retriable, redact, register_secret, secret_scope
from tidesync.scheduler.cycles import Slot, instant_text, wall_text
from tidesync.scheduler.project import Node, Project, load_project
from tidesync.scheduler.store import (
    DONE,
    LOG_TAIL,
    Instance,
    NewInstance,
    Store,
    open_store,
    this_host,
)
from tidesync.spec.params import RunTime

__all__ = ["Scheduler", "Outcome", "system_clock", "parse_cyctime"]

log = logging.getLogger("tidesync.scheduler")
PAGE = 500


_COUNT_AT_MOST = 1_000_000  # slots counted for a refusal before it says "at least"


def _chunks(
    node: Node, lo: datetime, include_lo: bool, hi: datetime
) -> Iterator[tuple[list[Slot], datetime]]:
    """The slots of ``node`` due in ``(lo, hi]`` (``[lo, hi]``), a week at a time, each week
    with its end: a long catch-up stays small in memory and moves the watermark as it goes."""
    chunk_lo = lo
    while True:
        chunk_hi = min(chunk_lo + timedelta(days=7), hi)
        yield node.schedule.between(chunk_lo, chunk_hi, include_lo=include_lo), chunk_hi
        if chunk_hi >= hi:
            return
        chunk_lo, include_lo = chunk_hi, False


def system_clock() -> datetime:
    return datetime.now(UTC)


def parse_cyctime(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d%H%M%S")


def _retry(node: Node, error_class: str | None, retriable: bool) -> bool:
    """Whether a failed attempt is worth another: a transient failure, or any failure but a bad
    job file when the node says ``retry_on: any``."""
    if error_class == "ConfigError":
        return False
    return retriable or node.retry_on == "any"


def _bizdate(text: str) -> date:
    return datetime.strptime(text, "%Y%m%d").date()


@dataclass
class Outcome:
    """What one attempt ended as (for the command line's summary)."""

    id: int
    node: str
    cyctime: str
    batch: str
    state: str  # succeeded | waiting (a retry is due) | failed | cancelled | skipped | released
    attempt: int
    error: str | None = None
    elapsed_s: float = 0.0


@dataclass(eq=False)
class _Attempt:
    inst: Instance
    node: Node
    cancel: threading.Event = field(default_factory=threading.Event)
    t0: float = field(default_factory=time.monotonic)
    reason: str | None = None  # timeout | killed | lost | shutdown
    future: Future[None] | None = None


# ---------------------------------------------------------------------------------------------
# Per-instance logs: records of the ``tidesync`` logger emitted in the attempt's context


_CURRENT: contextvars.ContextVar[_InstanceLog | None] = contextvars.ContextVar(
    "tidesync_instance_log", default=None
)


class _InstanceLog:
    """An instance's log file, appended to by each attempt; what one attempt wrote is also
    kept in memory, so that its tail goes to the store without reading the file back."""

    def __init__(self, path: Path, tz: ZoneInfo, before: str | None = None):
        self.path = path
        self.tz = tz  # the project's: every line is stamped with its wall time and UTC offset
        self._lock = threading.Lock()
        self._written: list[str] = [before] if before else []
        path.parent.mkdir(parents=True, exist_ok=True)
        self._f: TextIO = path.open("a", encoding="utf-8")

    def line(self, text: str) -> None:
        stamp = datetime.now(self.tz).isoformat(sep=" ", timespec="seconds")
        with self._lock:
            for ln in redact(text).splitlines() or [""]:
                self._f.write(f"{stamp} {ln}\n")
                self._written.append(f"{stamp} {ln}\n")
            self._f.flush()

    def close(self) -> None:
        self._f.close()

    def tail(self) -> str:
        with self._lock:
            return "".join(self._written)[-LOG_TAIL:]


class _ToInstanceLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        target = _CURRENT.get()
        if target is not None:
            try:
                target.line(f"{record.levelname} {record.name}: {record.getMessage()}")
            except Exception:  # noqa: BLE001 - logging must never break a run
                self.handleError(record)


_HANDLER = _ToInstanceLog()
_HANDLER_LOCK = threading.Lock()


def _install_handler() -> None:
    with _HANDLER_LOCK:
        root = logging.getLogger("tidesync")
        if _HANDLER not in root.handlers:
            root.addHandler(_HANDLER)


def append_log(path: str | None, text: str, tz: ZoneInfo) -> None:
    """Add a line to an instance's log file (from outside its run: recovery, kill)."""
    if not path:
        return
    try:
        lg = _InstanceLog(Path(path), tz)
        lg.line(text)
        lg.close()
    except OSError:
        pass


# ---------------------------------------------------------------------------------------------


class Scheduler:
    """Creates and runs a project's instances against one state store.

    ``clock()`` returns an aware datetime (the schedule's now); ``lease_clock()`` epoch seconds.
    Several Scheduler objects (threads, processes, machines) may share one store.
    """

    def __init__(
        self,
        project: Project,
        store: Store | None = None,
        *,
        clock: Callable[[], datetime] = system_clock,
        lease_clock: Callable[[], float] = time.time,
        workers: int | None = None,
        reload: bool = False,
        yes: bool = False,
        announce: Callable[[str], None] | None = None,
    ):
        self.project = project
        self.store = store or open_store(project.state, project.home)
        self.clock = clock
        self.lease_clock = lease_clock
        self.workers = workers or project.settings.workers
        self.lease = project.settings.lease
        self.owner = f"{this_host()}:{_pid()}:{uuid.uuid4().hex[:8]}"
        self.reload = reload
        self.yes = yes  # create more than scheduler.create_limit instances of a node at once
        self.say: Callable[[str], None] = announce or log.info  # what a pass created
        self._held: set[str] = set()  # nodes refused by the daemon until the project changes
        self.outcomes: list[Outcome] = []
        self._active: dict[int, _Attempt] = {}
        self._finished = 0  # attempts ended so far: a pass ends only when none ended meanwhile
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._keeper: threading.Thread | None = None
        self._keeper_stop = threading.Event()
        self._now: Callable[[], datetime] = clock
        self._connections: dict[str, dict[str, Any]] | None = None
        self._state: Any = None
        _install_handler()

    # -- creation -----------------------------------------------------------------------------
    def create_due(self, now: datetime, *, hold: bool = False) -> int:
        """Create every node's instances due by ``now`` and not created yet; returns how many.

        Where each node starts and how far back a pass reaches is its ``catchup`` (see
        :meth:`_range`). A node that would get more than ``scheduler.create_limit`` instances
        in this pass, without ``yes``, is refused: ConfigError naming each such node, and
        nothing created; with ``hold`` (the daemon) those nodes are logged and left alone
        until the project file changes, the others created.
        """
        marks = self.store.marks()
        limit = self.project.settings.create_limit
        planned: list[tuple[Node, datetime, bool, list[str]]] = []
        refused: list[str] = []
        for name in self.project.order():
            if name in self._held:
                continue
            node = self.project.nodes[name]
            lo, include_lo, notes = self._range(node, marks.get(name, (None, None))[1], now)
            if lo > now:
                self.store.create(name, [], now.timestamp(), now.timestamp())
                continue
            too_many = None if self.yes else self._too_many(node, lo, include_lo, now, limit)
            if too_many is None:
                planned.append((node, lo, include_lo, notes))
            elif hold:
                self._held.add(name)
                log.error("%s; held until the project file changes", too_many)
            else:
                refused.append(too_many)
        if refused:
            raise ConfigError(refused)
        total = 0
        for node, lo, include_lo, notes in planned:
            tz = node.schedule.tz
            made = 0
            first: Slot | None = None
            last: Slot | None = None
            for slots, chunk_hi in _chunks(node, lo, include_lo, now):
                rows = [self._new(node, s) for s in slots]
                made += self.store.create(node.name, rows, chunk_hi.timestamp(), now.timestamp())
                if slots:
                    first, last = first or slots[0], slots[-1]
            for note in notes:
                self.say(f"{node.name}: {note}")
            if made and first is not None and last is not None:
                span = wall_text(first.cyctime, tz)
                if last is not first:
                    span += f" .. {wall_text(last.cyctime, tz)}"
                self.say(f"{node.name}: created {made:,} instance(s), cyctime {span}")
            total += made
        return total

    def _range(
        self, node: Node, created_to: float | None, now: datetime
    ) -> tuple[datetime, bool, list[str]]:
        """Where this pass starts creating ``node``'s slots: (lo, include lo, what it left out).

        A node seen for the first time starts at its start_date (catchup: all or a bound), or
        at its latest due slot (catchup: latest, or no start_date); afterwards at its
        watermark. A count or age bound then moves the start up, on every pass.
        """
        sched, policy = node.schedule, node.catchup
        notes: list[str] = []
        tz = sched.tz
        if created_to is not None:
            lo, include_lo = datetime.fromtimestamp(created_to, UTC), False
        elif sched.start_date is not None and policy.mode != "latest":
            lo = datetime.combine(sched.start_date, datetime.min.time()).replace(tzinfo=tz)
            lo, include_lo = lo.astimezone(UTC), True
        else:
            first = sched.latest(now)
            lo, include_lo = (first.at if first is not None else now), True
            if first is not None and sched.start_date is not None:
                before = sched.previous(first)
                if before is not None:
                    notes.append(
                        f"catchup latest: starts at its latest slot; the earlier ones since "
                        f"start_date {sched.start_date} are not created (tidesync backfill "
                        "runs them; catchup: all creates them)"
                    )

        def dropped_before(cut: datetime) -> bool:
            prev = sched.latest(cut - timedelta(microseconds=1))
            return prev is not None and (prev.at > lo or (include_lo and prev.at == lo))

        if policy.age is not None:
            cut = now - timedelta(seconds=policy.age)
            if cut > lo:
                if dropped_before(cut):
                    notes.append(
                        f"catchup {policy.describe()}: slots due before "
                        f"{instant_text(cut, tz)} are not created"
                    )
                lo, include_lo = cut, True
        if policy.count is not None:
            nth = sched.nth_latest(lo, now, policy.count, include_lo=include_lo)
            if nth is not None and nth.at > lo:
                if dropped_before(nth.at):
                    notes.append(
                        f"catchup {policy.describe()}: slots before "
                        f"{wall_text(nth.cyctime, tz)} are not created"
                    )
                lo, include_lo = nth.at, True
        return lo, include_lo, notes

    def _too_many(
        self, node: Node, lo: datetime, include_lo: bool, now: datetime, limit: int
    ) -> str | None:
        """The refusal when this pass would create more than ``limit`` slots of ``node``."""
        days = (now - lo).total_seconds() / 86400 + 2
        if days * node.schedule.max_per_day() <= limit:
            return None  # cannot be more: no need to walk the range
        count, first = 0, None
        for slots, _hi in _chunks(node, lo, include_lo, now):
            count += len(slots)
            first = first or (slots[0] if slots else None)
            if count >= _COUNT_AT_MOST:
                break
        if count <= limit or first is None:
            return None
        tz = node.schedule.tz
        last = node.schedule.latest(now)
        many = f"at least {count:,}" if count >= _COUNT_AT_MOST else f"{count:,}"
        span = wall_text(first.cyctime, tz) + (
            f" .. {wall_text(last.cyctime, tz)}" if last is not None else ""
        )
        return (
            f"{node.catchup.where}: node {node.name} would get {many} instances in one pass "
            f"({span}), more than scheduler.create_limit {limit:,}; nothing was created. "
            "Bound the catch-up (catchup: latest, or e.g. catchup: 7d), raise "
            "scheduler.create_limit, or pass --yes"
        )

    def _new(
        self, node: Node, slot: Slot, *, batch: str = "", due_at: float | None = None
    ) -> NewInstance:
        rt = RunTime(slot.cyctime, slot.bizdate, node.schedule.timezone)
        state, error, params = "waiting", None, None
        try:
            params = node.shown_params(node.evaluate(rt))
        except ConfigError as e:  # e.g. an offset out of range for this one date
            state, error = "failed", "; ".join(e.problems)
        return NewInstance(
            node.name,
            slot.key,
            slot.bizdate.strftime("%Y%m%d"),
            slot.at.timestamp() if due_at is None else due_at,
            params,
            batch=batch,
            state=state,
            error=error,
        )

    # -- backfill -----------------------------------------------------------------------------
    def create_backfill(
        self,
        name: str,
        first: date,
        last: date,
        *,
        with_downstream: bool = False,
        parallel: int = 1,
    ) -> tuple[str, int]:
        """A batch with the instances of ``name`` (and its downstream) for each business date
        in ``[first, last]``: the slots whose cyctime falls on the day after each bizdate."""
        if name not in self.project.nodes:
            from tidesync.errors import did_you_mean

            raise ConfigError(
                f"NODE: unknown node {name!r}{did_you_mean(name, self.project.nodes)}"
                "; `tidesync nodes` lists them"
            )
        if last < first:
            raise ConfigError(f"--to: {last:%Y%m%d} is before --from {first:%Y%m%d}")
        names = [name] + (self.project.downstream(name) if with_downstream else [])
        now = self._now()
        batch = (
            f"backfill-{now.astimezone(self.project.nodes[name].schedule.tz):%Y%m%d%H%M%S}-"
            f"{uuid.uuid4().hex[:4]}"
        )
        rows: list[NewInstance] = []
        day = first
        while day <= last:
            for n in names:
                node = self.project.nodes[n]
                for s in node.schedule.on_day(day + timedelta(days=1), bounded=False):
                    # due now, or at its time when that is still to come: run now, a later
                    # cyctime's window is not over (its rows are not all there yet)
                    due = max(now.timestamp(), s.at.timestamp())
                    rows.append(self._new(node, s, batch=batch, due_at=due))
            day += timedelta(days=1)
        if not any(r.node == name for r in rows):
            raise ConfigError(
                f"NODE: {name} has no scheduled time for business dates "
                f"{first:%Y%m%d}..{last:%Y%m%d} ({self.project.nodes[name].schedule.describe()})"
            )
        per_node = {n: [r for r in rows if r.node == n] for n in names}
        limit = self.project.settings.create_limit
        refused = [
            f"--from/--to: backfill of node {n} would create {len(got):,} instances "
            f"({self._span(n, got)}), more than scheduler.create_limit {limit:,}; nothing was "
            "created. Narrow the dates, raise scheduler.create_limit, or pass --yes"
            for n, got in per_node.items()
            if len(got) > limit and not self.yes
        ]
        if refused:
            raise ConfigError(refused)
        count = self.store.create_batch(batch, "backfill", parallel, names, rows, now.timestamp())
        for n, got in per_node.items():
            if got:
                self.say(
                    f"{n}: created {len(got):,} instance(s) in {batch}, cyctime {self._span(n, got)}"
                )
        return batch, count

    def _span(self, name: str, rows: list[NewInstance]) -> str:
        tz = self.project.nodes[name].schedule.tz
        a, b = (wall_text(parse_cyctime(r.cyctime), tz) for r in (rows[0], rows[-1]))
        return a if a == b else f"{a} .. {b}"

    # -- readiness ----------------------------------------------------------------------------
    def expected_upstream(self, node: Node, inst: Instance, up: Node) -> list[Slot]:
        """The upstream slots instance ``inst`` of ``node`` waits for (docs/scheduler.md)."""
        mine = node.schedule.slot_for(parse_cyctime(inst.cyctime))
        day = mine.cyctime.date()  # the slots of this business date are the ones on this day
        if not (node.schedule.sub_daily and up.schedule.sub_daily):
            return up.schedule.on_day(day, bounded=not inst.batch)
        prev = node.schedule.previous(mine)
        lo = prev.at if prev is not None else mine.at - timedelta(days=1)
        got = up.schedule.between(lo, mine.at)
        if got:
            return got
        last = up.schedule.latest(mine.at)
        return [last] if last is not None and last.cyctime.date() == day else []

    def waiting_on(self, inst: Instance, cache: dict[Any, Any] | None = None) -> str | None:
        """Why ``inst`` cannot run yet, or None when it can (given that it is due)."""
        node = self.project.nodes.get(inst.node)
        if node is None:
            return f"node {inst.node!r} is no longer in the project"
        cache = {} if cache is None else cache
        if node.paused:
            return f"node {node.name} is paused"
        if "paused" not in cache:
            cache["paused"] = self.store.paused()
        if node.name in cache["paused"]:
            return f"node {node.name} is paused (tidesync resume {node.name} resumes it)"
        if inst.batch:
            key = ("head", inst.node, inst.batch)
            if key not in cache:
                par = cache.setdefault(("par", inst.batch), self.store.batch_parallel(inst.batch))
                cache[key] = self.store.unfinished_head(inst.node, inst.batch, par)
            if inst.cyctime not in cache[key]:
                return "earlier instances of this backfill run first (--parallel)"
        if node.self_dependent:
            prev = self.store.previous(inst.node, inst.batch, inst.cyctime)
            if prev is not None and prev.state not in DONE:
                return (
                    f"self-dependent: previous instance {prev.id} ({prev.cyctime}) is {prev.state}"
                )
        if node.depends_on and "marks" not in cache:
            cache["marks"] = self.store.marks()
        for up_name in node.depends_on:
            up = self.project.nodes.get(up_name)
            if up is None:
                continue
            slots = self.expected_upstream(node, inst, up)
            if not slots:
                continue
            states = self.store.states(up_name, inst.batch, [s.key for s in slots])
            created_to = cache["marks"].get(up_name, (None, None))[1]
            for s in slots:
                st = states.get(s.key)
                if st in DONE:
                    continue
                if st is None and (
                    inst.batch or (created_to is not None and s.at.timestamp() <= created_to)
                ):
                    continue  # not in this backfill / before the upstream's first instance
                return f"upstream {up_name} {s.key} is {st or 'not created yet'}"
        return None

    # -- dispatch -----------------------------------------------------------------------------
    def _busy(self) -> int:
        with self._lock:
            return len(self._active)

    def dispatch(self, now: datetime, batch: str | None = None, only: int | None = None) -> int:
        """Claim and start what can run now; returns how many instances it started."""
        now_ts = now.timestamp()
        cache: dict[Any, Any] = {}
        blocked: set[tuple[str, str]] = set()
        any_dry = any(n.dry_run for n in self.project.nodes.values())
        started = 0
        offset = 0
        while True:
            free = self.workers - self._busy()
            if free <= 0 and not any_dry:
                break
            # a page a few times the free slots: enough to get past blocked chains, without
            # reading thousands of rows to start four jobs
            page = PAGE if any_dry else min(PAGE, max(32, 8 * free))
            rows = self.store.candidates(now_ts, page, offset, batch, only)
            if not rows:
                break
            picks: dict[str, list[Instance]] = {}
            jobs = 0
            for inst in rows:
                node = self.project.nodes.get(inst.node)
                chain = (inst.node, inst.batch)
                if node is None or chain in blocked or (not node.dry_run and jobs >= free):
                    continue
                if self.waiting_on(inst, cache) is not None:
                    if node.self_dependent or inst.batch:
                        blocked.add(chain)  # the later ones of the chain wait too
                    continue
                if node.self_dependent:
                    blocked.add(chain)  # one at a time: the next waits for this one
                picks.setdefault(inst.node, []).append(inst)
                jobs += 0 if node.dry_run else 1
            claimed = 0
            for name, insts in picks.items():
                node = self.project.nodes[name]
                got = self.store.claim(
                    name,
                    [i.id for i in insts],
                    self.owner,
                    now_ts,
                    self.lease_clock() + self.lease,
                    node.concurrency,
                )
                claimed += len(got)
                if node.dry_run:
                    self.store.finish_many([(g.id, "skipped") for g in got], self.owner, now_ts)
                    with self._lock:
                        self.outcomes.extend(
                            Outcome(g.id, g.node, g.cyctime, g.batch, "skipped", g.attempts)
                            for g in got
                        )
                else:
                    for g in got:
                        self._start(g, node)
            started += claimed
            if len(rows) < page or (not any_dry and jobs >= free):
                break
            offset += page - claimed  # claimed rows left the 'waiting' set
        return started

    def _start(self, inst: Instance, node: Node) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="instance")
        att = _Attempt(inst, node)
        with self._lock:
            self._active[inst.id] = att
        log.info(
            "instance %d %s %s: attempt %d started", inst.id, inst.node, inst.cyctime, inst.attempts
        )
        att.future = self._pool.submit(self._run_attempt, att)

    # -- one attempt --------------------------------------------------------------------------
    def log_path(self, inst: Instance) -> Path:
        """Where this project keeps the log of ``inst``."""
        return self._paths(inst)[0]

    def _paths(self, inst: Instance) -> tuple[Path, Path]:
        home = self.project.home
        stem = f"{inst.cyctime}_{inst.id}"
        return (
            home / "logs" / inst.node / f"{stem}.log",
            home / "dirty" / inst.node / f"{stem}.dirty.jsonl",
        )

    def _run_attempt(self, att: _Attempt) -> None:
        with secret_scope():  # what the attempt meets in secret fields is masked in its output
            self._run_attempt_masked(att)

    def _run_attempt_masked(self, att: _Attempt) -> None:
        try:
            self._attempt(att)
        except BaseException as e:  # noqa: BLE001 - the worker must always finish the attempt
            log.error("instance %d: scheduler error: %s", att.inst.id, e, exc_info=e)
            try:
                self._finish(
                    att,
                    "failed",
                    f"scheduler error: {type(e).__name__}: {e}",
                    None,
                    None,
                    retryable=True,
                    elapsed=time.monotonic() - att.t0,
                )
            except Exception as e2:  # noqa: BLE001 - the store is down: the lease will expire
                log.error(
                    "instance %d: cannot record its end (%s); it is recovered when its "
                    "lease expires",
                    att.inst.id,
                    redact(str(e2)),
                )
        finally:
            with self._lock:
                self._active.pop(att.inst.id, None)
                self._finished += 1
            self._wake.set()

    def _attempt(self, att: _Attempt) -> None:
        from tidesync.engine.runner import load_job, run_job

        inst, node = att.inst, att.node
        log_path, dirty_path = self._paths(inst)
        lg = _InstanceLog(log_path, self.project.tz, inst.log_tail)
        token = _CURRENT.set(lg)
        ok, error, report_json, retryable = False, None, None, True
        try:
            lg.line(
                f"attempt {inst.attempts} of {1 + node.retries} of {node.name} "
                f"cyctime {inst.cyctime} bizdate {inst.bizdate} (instance {inst.id}"
                f"{', ' + inst.batch if inst.batch else ''}) on {self.owner}"
            )
            rt = RunTime(
                parse_cyctime(inst.cyctime), _bizdate(inst.bizdate), node.schedule.timezone
            )
            try:
                params = node.evaluate(rt)
                for k in node.secret_params() & params.keys():
                    register_secret(params[k])
                shown = node.shown_params(params)
                if shown != inst.param_values:  # the project file changed since creation
                    self.store.set_params(inst.id, shown, str(log_path))
                for k, v in shown.items():
                    lg.line(f"param {k}={v}")
                if node.job is None:
                    raise ConfigError(f"{node.where}.job: this node has no job")
                job = load_job(
                    node.job,
                    params,
                    rt,
                    connections=self._conns(),
                    state=self._state_store(),
                    identity=f"node:{node.name}",
                    executor=node.executor,
                    executor_where=f"{node.where}.executor",
                    raw_params=dict(node.params),
                )
                # the report goes to the store (instance show); dirty records, if any, to a file
                report = run_job(
                    job,
                    dirty_path=dirty_path,
                    cancel=att.cancel,
                    progress=self._progress(att, lg),
                    progress_every=self.project.settings.progress,
                    timezone=self.project.timezone,
                )
                report_json = report.to_json()
                lg.line(report.summary())
                ok, error = report.status == "succeeded", report.error
                retryable = _retry(node, report.error_class, report.retriable)
            except ConfigError as e:
                error, retryable = "; ".join(e.problems), False
                lg.line(f"bad job or parameters (not retried): {error}")
            except Exception as e:  # noqa: BLE001 - a failed attempt, kept with its traceback
                error = f"{type(e).__name__}: {e}"
                retryable = _retry(node, type(e).__name__, is_retriable(e))
                lg.line("".join(traceback.format_exception(e)))
        finally:
            _CURRENT.reset(token)
        elapsed = time.monotonic() - att.t0
        if not ok and att.reason == "timeout":
            error = f"timed out after {node.timeout:g}s: {error}"
            retryable = True
        state = "succeeded" if ok else "failed"
        lg.line(
            f"attempt {inst.attempts} {state if ok else 'failed: ' + str(error)} ({elapsed:.2f}s)"
        )
        try:
            self._finish(att, state, error, report_json, lg, retryable=retryable, elapsed=elapsed)
        finally:
            lg.close()

    def _progress(self, att: _Attempt, lg: _InstanceLog) -> Callable[[Any], None]:
        """A progress line in the instance's log, its tail in the store: `tidesync instance
        log` shows how far a long run is, here or from another machine."""

        def tick(report: Any) -> None:
            try:
                lg.line(f"progress: {report.progress_line()}")
                self.store.set_log_tail(att.inst.id, self.owner, lg.tail(), str(lg.path))
            except Exception as e:  # noqa: BLE001 - progress must never break a run
                log.warning("instance %d: progress not recorded: %s", att.inst.id, redact(str(e)))

        return tick

    def _finish(
        self,
        att: _Attempt,
        state: str,
        error: str | None,
        report: str | None,
        lg: _InstanceLog | None,
        *,
        retryable: bool,
        elapsed: float,
    ) -> None:
        inst, node = att.inst, att.node
        error = redact(error) if error else error
        now = self._now().timestamp()
        next_try = None
        if att.reason == "lost":
            log.warning("instance %d: lost its lease to another scheduler; result dropped", inst.id)
            self._outcome(inst, "lost", error, elapsed)
            return
        if state != "succeeded" and att.reason == "shutdown":
            msg = "interrupted by scheduler shutdown; it will run again"
            if lg:
                lg.line(msg)
            self.store.release(inst.id, self.owner, msg)
            self._outcome(inst, "released", msg, elapsed)
            return
        if state != "succeeded":
            if att.reason == "killed":
                state, error = "cancelled", f"killed: {error}"
            elif retryable and inst.attempts <= node.retries:
                state, next_try = "waiting", now + node.retry_interval
                if lg:
                    lg.line(f"retry {inst.attempts} of {node.retries} in {node.retry_interval:g}s")
            elif inst.attempts <= node.retries and lg:
                lg.line(
                    "not retried: the failure is not transient "
                    "(retry_on: any retries every failure but a bad job file)"
                )
        path = str(lg.path) if lg else None
        tail = lg.tail() if lg else None
        if not self.store.finish(
            inst.id,
            self.owner,
            state,
            now=now,
            error=error,
            report=report,
            next_try_at=next_try,
            log_tail=tail,
            log_path=path,
        ):
            log.warning("instance %d: another scheduler took it over; result dropped", inst.id)
            state = "lost"
        log.log(
            logging.INFO if state in ("succeeded", "waiting") else logging.WARNING,
            "instance %d %s %s: %s%s",
            inst.id,
            inst.node,
            inst.cyctime,
            state,
            f": {error}" if error and state != "succeeded" else "",
        )
        self._outcome(inst, state, error, elapsed)

    def _outcome(self, inst: Instance, state: str, error: str | None, elapsed: float) -> None:
        with self._lock:
            self.outcomes.append(
                Outcome(
                    inst.id,
                    inst.node,
                    inst.cyctime,
                    inst.batch,
                    state,
                    inst.attempts,
                    error,
                    round(elapsed, 3),
                )
            )

    def _conns(self) -> dict[str, dict[str, Any]]:
        if self._connections is None:
            from tidesync.connections import load_connections

            self._connections = load_connections(self.project.file)
        return self._connections

    def _state_store(self) -> Any:
        if self._state is None:
            from tidesync.state import open_state

            self._state = open_state(self.project.state, self.project.root)
        return self._state

    def _close_state(self) -> None:
        """Close the jobs' state store (it opens again when used)."""
        if self._state is not None:
            self._state.close()

    # -- recovery, leases, timeouts, kills ----------------------------------------------------
    def recover(self, now: datetime) -> int:
        """Take back running instances whose scheduler is gone; returns how many."""
        n = 0
        for inst in self.store.stale(self.lease_clock(), this_host()):
            if inst.owner == self.owner and inst.id in self._active:
                continue  # ours and running: its lease is renewed by the keeper
            why = (
                f"attempt {inst.attempts} interrupted: its scheduler {inst.owner} stopped "
                "(lease expired or process gone)"
            )
            state = self.store.recover(inst, now.timestamp(), why)
            if state is not None:
                n += 1
                log.warning(
                    "instance %d %s %s: %s -> %s", inst.id, inst.node, inst.cyctime, why, state
                )
                append_log(
                    inst.log_path or str(self._paths(inst)[0]),
                    f"{why}; now {state}",
                    self.project.tz,
                )
        return n

    def _start_keeper(self) -> None:
        if self._keeper is None or not self._keeper.is_alive():
            self._keeper_stop.clear()
            self._keeper = threading.Thread(target=self._keep, name="tidesync-keeper", daemon=True)
            self._keeper.start()

    def _stop_keeper(self) -> None:
        self._keeper_stop.set()
        if self._keeper is not None:
            self._keeper.join()
            self._keeper = None

    def _keep(self) -> None:
        next_beat = 0.0
        while not self._keeper_stop.wait(0.1):
            mono = time.monotonic()
            with self._lock:
                atts = list(self._active.values())
            for a in atts:
                if a.node.timeout and a.reason is None and mono - a.t0 > a.node.timeout:
                    log.warning("instance %d: timeout (%gs): cancelling", a.inst.id, a.node.timeout)
                    a.reason = "timeout"
                    a.cancel.set()
            if not atts or mono < next_beat:
                continue
            next_beat = mono + self.lease / 3
            try:
                mine = self.store.heartbeat(
                    self.owner, self.lease_clock() + self.lease, [a.inst.id for a in atts]
                )
            except Exception as e:  # noqa: BLE001 - a store hiccup: try again next beat
                log.warning("heartbeat failed: %s", redact(str(e)))
                continue
            for a in atts:
                if a.future is not None and a.future.done():
                    continue
                if a.inst.id not in mine:
                    if a.reason is None and a.inst.id in self._active:
                        a.reason = "lost"
                        a.cancel.set()
                elif mine[a.inst.id] and a.reason is None:
                    log.warning("instance %d: killed", a.inst.id)
                    a.reason = "killed"
                    a.cancel.set()

    # -- loops --------------------------------------------------------------------------------
    def run_once(
        self, at: datetime | None = None, *, batch: str | None = None, only: int | None = None
    ) -> list[Outcome]:
        """Create what is due at ``at`` (default: the clock), run everything runnable until
        nothing more is, then return the outcomes of this pass.

        With ``at`` the time stands still: a retry due later is left waiting for the next
        pass. Without it (backfills, reruns) the loop waits for retries that come due.
        ``batch`` runs one backfill's instances only, ``only`` one instance; neither creates.
        """
        self._now = (lambda: at) if at is not None else self.clock
        self.outcomes = []
        self._start_keeper()
        try:
            self.recover(self._now())
            if batch is None and only is None:
                self.create_due(self._now())
            while not self._stopping.is_set():
                self._wake.clear()
                with self._lock:
                    finished = self._finished
                if self.dispatch(self._now(), batch, only):
                    continue
                with self._lock:
                    busy, moved = bool(self._active), self._finished != finished
                if moved:
                    continue  # an attempt ended while we looked: what it unblocks may run now
                if busy:
                    self._wake.wait(0.5)
                    continue
                if at is None:
                    wake = self.store.next_wakeup(self._now().timestamp())
                    if wake is not None and self._in_scope(batch, only):
                        self._wake.wait(max(0.0, min(wake - self._now().timestamp(), 5.0)))
                        continue
                break
            if self._stopping.is_set():
                self._cancel_all("shutdown")
            self._drain()
        finally:
            self._stop_keeper()
            self._close_pool()
            self.store.close()  # the pool's threads are gone; so are their connections
            self._close_state()
        return list(self.outcomes)

    def _in_scope(self, batch: str | None, only: int | None) -> bool:
        if only is not None:
            inst = self.store.get(only)
            return inst is not None and inst.state == "waiting" and inst.next_try_at is not None
        if batch is None:
            return False  # run-once never waits for a retry: the next pass runs it
        return self.store.batch_summary(batch).get("waiting", 0) > 0

    def serve(self, stop: threading.Event | None = None) -> None:
        """The daemon loop: tick until ``stop`` is set (or :meth:`stop` is called), then cancel
        running jobs (they publish nothing), hand their instances back and return."""
        stop = stop or self._stopping
        self._now = self.clock
        self._start_keeper()
        log.info(
            "scheduler %s: %d node(s), store %s",
            self.owner,
            len(self.project.nodes),
            self.store.describe(),
        )
        try:
            while not (stop.is_set() or self._stopping.is_set()):
                self._wake.clear()
                self._maybe_reload()
                try:
                    now = self._now()
                    self.recover(now)
                    self.create_due(now, hold=True)
                    while self.dispatch(self._now()) and not self._stopping.is_set():
                        pass
                except Exception as e:  # noqa: BLE001 - the daemon outlives a store hiccup
                    log.error("tick failed: %s", redact(str(e)), exc_info=e)
                self._wake.wait(self.project.settings.poll)
        finally:
            self._shutdown()

    def wake(self) -> None:
        """Look again now (an operation made something runnable)."""
        self._wake.set()

    def stop(self) -> None:
        """Ask :meth:`serve` (or :meth:`run_once`) to stop; safe from a signal handler."""
        self._stopping.set()
        self._wake.set()

    def _cancel_all(self, reason: str) -> None:
        with self._lock:
            atts = list(self._active.values())
        for a in atts:
            if a.reason is None:
                a.reason = reason
            a.cancel.set()

    def _shutdown(self) -> None:
        self._cancel_all("shutdown")
        self._drain()
        self._stop_keeper()
        self._close_pool()
        self.store.close()
        self._close_state()
        log.info("scheduler %s stopped", self.owner)

    def _drain(self) -> None:
        while True:
            with self._lock:
                futs = [a.future for a in self._active.values() if a.future is not None]
            if not futs:
                return
            for f in futs:
                f.result()

    def _close_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _maybe_reload(self) -> None:
        if not self.reload:
            return
        try:
            mtime = self.project.file.stat().st_mtime
        except OSError:
            return
        if mtime == self.project.mtime:
            return
        try:
            project = load_project(self.project.file)
        except ConfigError as e:
            self.project.mtime = mtime
            log.error(
                "%s changed but does not load; keeping the previous nodes:\n%s",
                self.project.file,
                "\n".join(e.problems),
            )
            return
        log.info("%s changed: reloaded %d node(s)", project.file, len(project.nodes))
        self.project = project
        self._connections = None
        self._held.clear()  # nodes refused for too many instances are looked at again

    # -- operations ---------------------------------------------------------------------------
    def kill(self, instance_id: int) -> str:
        state = self.store.request_kill(instance_id, self.clock().timestamp())
        inst = self.store.get(instance_id)
        if inst is not None and state in ("cancelled", "requested"):
            append_log(inst.log_path, f"kill requested ({state})", self.project.tz)
        return state


def _pid() -> int:
    import os

    return os.getpid()


def outcome_json(outcomes: list[Outcome]) -> str:
    return json.dumps([o.__dict__ for o in outcomes], indent=2)
