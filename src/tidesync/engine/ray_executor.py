"""The Ray executor: a job's splits run as Ray tasks across a cluster; the driver commits once.

``setting.executor: ray`` (or ``tidesync run --executor ray``, or a scheduler node's
``executor: ray``); ``--ray-address`` / ``RAY_ADDRESS`` names the cluster, and without one a
local Ray is started for the run (bound to 127.0.0.1, small: see :func:`connect`). Needs the
``ray`` extra (``pip install 'tidesync[ray]'``); Ray is imported only when a job runs on it::

    driver (tidesync run)                       Ray workers (any node)
    plan, writer.prepare, reader.splits
    the job's _Limits, in one actor per     <-- reserve(records, bytes) / dirty(...) /
      driver: rate bucket, error count,         beat(counters) -> cancelled?
      cancel flag, live counters per split
    at most `workers` splits at a time:
      remote sinks (writer.remote_sinks) -->  build reader + transforms, open the writer's sink,
                                              run_task: read -> transform -> write; return the
                                              TaskResult (sink result, counters, dirty records)
      driver sinks (a transaction here)  -->  read the split; its chunks stream back (a Ray
        transform + write into the       <--  streaming generator, a few batches ahead)
        driver's sink, as locally
    commit or abort: the runner, as with every executor

Worker lost (process or node died): a split with a remote sink runs again on another worker
(at most ``MAX_ATTEMPTS``); its earlier attempt returned nothing, so nothing of it is committed,
and the split's staged output is written again under the same names. A split streaming to a
driver sink runs again only if nothing of it reached the sink yet; otherwise the run fails,
retriable, with nothing published (the driver's transaction cannot take back one split).
The error limit counts only the current attempt of each split.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import pickle
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from tidesync.connectors.base import Reader, Split, Writer
from tidesync.engine.channel import RateLimiter, wait_for
from tidesync.engine.dirty import over_limit
from tidesync.engine.executor import Executor, local_sinks
from tidesync.engine.task import (
    CancelToken,
    Counters,
    Shared,
    SinkFactory,
    Step,
    Task,
    TaskResult,
    run_task,
)
from tidesync.errors import (
    ErrorLimitExceeded,
    FatalError,
    RetriableError,
    TidesyncError,
    is_retriable,
    redact,
)

__all__ = ["MAX_ATTEMPTS", "RayExecutor", "connect"]

log = logging.getLogger("tidesync")

#: runs of one split when its worker is lost (the first included)
MAX_ATTEMPTS = 3
#: seconds between a worker's reports of its counters (and look at the cancel flag)
BEAT_S = 0.5
#: object store of a local Ray started for the run (Ray spills to disk beyond it)
LOCAL_STORE_BYTES = 256 << 20
#: batches a streaming split may run ahead of the driver's sink
STREAM_AHEAD = 4

_INSTALL = "pip install 'tidesync[ray]'"
_ENV_REF = re.compile(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}")


def _ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise FatalError(f"the ray executor needs the 'ray' extra: {_INSTALL}") from e
    return ray


def connect(address: str | None, cpus: int) -> Any:
    """The ``ray`` module, connected: to the Ray this process already joined; else to
    ``address`` (or ``RAY_ADDRESS``); else to a Ray started here for the run (kept for later
    runs of this process, such as a scheduler daemon's): ``cpus`` logical CPUs, a 256 MiB object
    store, no dashboard, listening on 127.0.0.1 only, usage statistics off unless
    ``RAY_USAGE_STATS_ENABLED`` says otherwise."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, namespace="tidesync")
        else:
            # the workers get this process's import path (same machine): plugins found here are
            # found there
            paths = [p for p in sys.path if p and os.path.isdir(p)]
            ray.init(
                address="local",  # a new one, never one that `ray start` left on this machine
                num_cpus=cpus,
                object_store_memory=LOCAL_STORE_BYTES,
                include_dashboard=False,
                logging_level=logging.WARNING,
                namespace="tidesync",
                job_config=ray.job_config.JobConfig(code_search_path=paths),
                _node_ip_address="127.0.0.1",
            )
    except (ConnectionError, RuntimeError, TimeoutError) as e:
        where = f"the Ray cluster at {redact(address)}" if address else "a local Ray"
        raise RetriableError(f"executor ray: cannot reach {where}: {redact(str(e))}") from e
    return ray


# -- the job's limits, in one actor ----------------------------------------------------------------


class _Never:
    def is_set(self) -> bool:
        return False

    def set(self) -> None:
        pass


class _Limits:
    """One per job (a Ray actor): the rate bucket, the dirty-record count of each split's
    current attempt, the cancel flag and the latest counters of every running split."""

    def __init__(self, byte_rate: float | None, record_rate: float | None, limit: int | None):
        self.rates = (byte_rate, record_rate)
        self.bucket: RateLimiter | None = None  # from the first batch: workers start slowly
        self.limit = limit
        self.cancelled = False
        self.attempt: dict[int, int] = {}
        self.dirty: dict[int, int] = {}
        self.total = 0
        self.live: dict[int, dict[str, Any]] = {}

    def start(self, index: int, attempt: int) -> bool:
        """An attempt of split ``index`` begins: what an earlier one counted no longer counts."""
        self.attempt[index] = attempt
        self.total -= self.dirty.get(index, 0)
        self.dirty[index] = 0
        self.live.pop(index, None)
        return self.cancelled

    def reserve(self, records: int, nbytes: int) -> float:
        if self.bucket is None:
            self.bucket = RateLimiter(*self.rates, _Never())
        return self.bucket.reserve(records, nbytes)

    def add_dirty(self, index: int, attempt: int, reason: str) -> str | None:
        """Count one dirty record; the message when the job is now over its limit."""
        if self.attempt.get(index) != attempt:
            return None  # a lost attempt still running somewhere: its rows are not kept
        self.dirty[index] += 1
        self.total += 1
        if self.limit is not None and self.total > self.limit:
            self.cancelled = True
            return over_limit(self.limit, reason)
        return None

    def beat(self, index: int, attempt: int, counters: dict[str, Any]) -> bool:
        if self.attempt.get(index) == attempt:
            self.live[index] = counters
        return self.cancelled

    def cancel(self) -> None:
        self.cancelled = True

    def state(self) -> tuple[bool, dict[int, dict[str, Any]]]:
        return self.cancelled, dict(self.live)


class _Jobs:
    """The Ray actor: one :class:`_Limits` per job this driver runs. Kept for the process's
    later runs (a new actor is a new worker process: about a second on a small machine)."""

    def __init__(self) -> None:
        self.jobs: dict[str, _Limits] = {}

    def open(self, key: str, *args: Any) -> None:
        self.jobs[key] = _Limits(*args)

    def close(self, key: str) -> None:
        self.jobs.pop(key, None)

    def call(self, key: str, verb: str, *args: Any) -> Any:
        return getattr(self.jobs[key], verb)(*args)


class _JobActor:
    """One job's view of the actor: ``actor.verb.remote(*args)`` calls that job's
    :class:`_Limits` (plain data: it travels with the tasks)."""

    def __init__(self, actor: Any, key: str):
        self.actor, self.key = actor, key

    def __getattr__(self, verb: str) -> _Verb:
        if verb.startswith("_"):
            raise AttributeError(verb)
        return _Verb(self.actor, self.key, verb)


class _Verb:
    def __init__(self, actor: Any, key: str, verb: str):
        self.actor, self.key, self.verb = actor, key, verb

    def remote(self, *args: Any) -> Any:
        return self.actor.call.remote(self.key, self.verb, *args)


#: the actor of this process's Ray connection: (its job id, the handle)
_ACTOR: list[tuple[str, Any]] = []
_ACTOR_LOCK = threading.Lock()


def _job_actor(ray: Any, *limits: Any) -> _JobActor:
    """A new job on this process's actor (started on first use, or again if it was lost)."""
    key = uuid.uuid4().hex
    owner = ray.get_runtime_context().get_job_id()
    with _ACTOR_LOCK:
        for fresh in (False, True):
            if fresh or not _ACTOR or _ACTOR[0][0] != owner:
                opts = {"num_cpus": 0, "max_restarts": 0, **_near_driver(ray)}
                _ACTOR[:] = [(owner, ray.remote(_Jobs).options(**opts).remote())]
            try:
                ray.get(_ACTOR[0][1].open.remote(key, *limits))
                break
            except ray.exceptions.RayActorError:
                if fresh:
                    raise
        return _JobActor(_ACTOR[0][1], key)


@dataclass(frozen=True)
class _Handles:
    """What a task needs of the job's actor (plain data: it travels with the task)."""

    actor: Any
    index: int
    attempt: int
    rate: bool  # a rate limit is set
    errors: bool  # errorLimit.record is set (else dirty records are only counted)

    def shared(self, cancel: _Cancel) -> Shared:
        rate: Any = _Rate(self.actor, cancel) if self.rate else _Free()
        errors: Any = _Errors(self) if self.errors else _Free()
        return Shared(rate, errors, cancel)


class _Cancel:
    """A task's cancel token: a flag here, mirrored to the job's actor when set here."""

    def __init__(self, actor: Any, token: CancelToken | None = None):
        self.actor = actor
        self.token: CancelToken = token if token is not None else threading.Event()
        self.told = False  # the actor knows

    def is_set(self) -> bool:
        return self.token.is_set()

    def set(self) -> None:
        self.token.set()
        if not self.told:
            self.told = True
            with contextlib.suppress(Exception):  # the actor is gone: the job is ending anyway
                _ray().get(self.actor.cancel.remote())

    def mirror(self) -> None:
        """The actor says stop: set the flag here only."""
        self.told = True
        self.token.set()


class _Free:
    def acquire(self, records: int, nbytes: int) -> None:
        pass

    def add(self, reason: str) -> None:
        pass


class _Rate:
    def __init__(self, actor: Any, cancel: _Cancel):
        self.actor, self.cancel = actor, cancel

    def acquire(self, records: int, nbytes: int) -> None:
        wait_for(_ray().get(self.actor.reserve.remote(records, nbytes)), self.cancel)


class _Errors:
    def __init__(self, h: _Handles):
        self.h = h

    def add(self, reason: str) -> None:
        h = self.h
        over = _ray().get(h.actor.add_dirty.remote(h.index, h.attempt, reason))
        if over is not None:
            raise ErrorLimitExceeded(over)


class _Beat(threading.Thread):
    """Reports a running task's counters to the actor and brings its cancel flag back."""

    def __init__(self, h: _Handles, counters: Counters, cancel: _Cancel):
        super().__init__(daemon=True, name=f"beat-{h.index}")
        self.h, self.counters, self.cancel = h, counters, cancel
        self.done = threading.Event()

    def run(self) -> None:
        ray, h = _ray(), self.h
        while not self.done.wait(BEAT_S):
            try:
                if ray.get(h.actor.beat.remote(h.index, h.attempt, asdict(self.counters))):
                    self.cancel.mirror()
            except Exception:  # noqa: BLE001 - the actor is gone: the driver has given up
                self.cancel.mirror()
                return


def _where(attempt: int) -> dict[str, Any]:
    node = _ray().get_runtime_context().get_node_id()
    return {
        "host": socket.gethostname(),
        "node": node[:12],
        "pid": os.getpid(),
        "attempt": attempt,
    }


def _portable(e: BaseException | None) -> BaseException | None:
    """``e``, or a tidesync error saying the same when ``e`` would not survive the trip back."""
    if e is None:
        return None
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - any failure to travel
        cls = RetriableError if is_retriable(e) else FatalError
        code = e.code if isinstance(e, TidesyncError) else None
        return cls(f"{type(e).__name__}: {e}", code=code)


# -- what runs on a worker ------------------------------------------------------------------------


def _run_split(task: Task, h: _Handles) -> TaskResult:
    """A whole task on a worker: its reader, transformers and sink are built here."""
    cancel = _Cancel(h.actor)
    if _ray().get(h.actor.start.remote(h.index, h.attempt)):
        cancel.mirror()
    counters = Counters(worker=_where(h.attempt))
    beat = _Beat(h, counters, cancel)
    beat.start()
    try:
        res = run_task(task, h.shared(cancel), counters)
    finally:
        beat.done.set()
    res.error = _portable(res.error)
    return res


@dataclass(frozen=True)
class _Origin:
    """The first item a streamed split yields: where it is read."""

    worker: dict[str, Any]


def _read_split(step: Step, split: Split) -> Iterator[Any]:
    """A split read on a worker, its chunks streamed back to the driver's sink."""
    yield _Origin(_where(0))
    reader = step.build()
    try:
        yield from reader.read(split)
    finally:
        with contextlib.suppress(Exception):
            reader.close()


class _Streamed(Reader):
    """On the driver: a reader whose ``read`` runs on a Ray worker and streams back."""

    def __init__(self, fn: Any, step: Step, counters: Counters):
        super().__init__(step.params, step.ctx)
        self.fn, self.step, self.counters = fn, step, counters

    def read(self, split: Split) -> Iterator[Any]:
        ray = _ray()
        lost = _lost_errors(ray)
        for attempt in range(1, MAX_ATTEMPTS + 1):
            gen = self.fn.remote(self.step, split)
            sent = 0
            finished = False
            try:
                for ref in gen:
                    item = ray.get(ref)
                    if isinstance(item, _Origin):
                        self.counters.worker = {**item.worker, "attempt": attempt}
                        continue
                    sent += 1
                    yield item
                finished = True
                return
            except ray.exceptions.RayTaskError as e:
                finished = True
                raise (e.cause if isinstance(e.cause, BaseException) else e) from None
            except lost as e:
                finished = True
                if sent == 0 and attempt < MAX_ATTEMPTS:
                    log.warning(
                        "split %s: the Ray worker reading it was lost (%s); reading it again "
                        "(attempt %d of %d)",
                        split.label,
                        type(e).__name__,
                        attempt + 1,
                        MAX_ATTEMPTS,
                    )
                    continue
                raise RetriableError(
                    f"split {split.label}: the Ray worker reading it was lost after {sent} "
                    f"batch(es) reached the writer, which cannot take them back alone "
                    f"({type(e).__name__}); nothing was published"
                ) from None
            finally:
                if not finished:  # the task stopped early (cancelled): stop the worker too
                    with contextlib.suppress(Exception):
                        ray.cancel(gen)


def _lost_errors(ray: Any) -> tuple[type[BaseException], ...]:
    """What Ray raises when a worker (process or node) died under a task."""
    x = ray.exceptions
    return (x.WorkerCrashedError, x.NodeDiedError, x.ObjectLostError, x.OutOfMemoryError)


# -- the executor -----------------------------------------------------------------------------------


class _DriverSinks:
    """The sinks of a writer that keeps them on the driver (``remote_sinks`` False): its
    splits are read on workers and stream back to these."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self.inner = local_sinks(writer)

    def open(self, split: Split) -> Any:
        return self.inner.open(split)


class RayExecutor(Executor):
    """Ray tasks, ``workers`` splits at a time; ``options["address"]`` names the cluster."""

    name = "ray"
    remote: ClassVar[bool] = True

    @classmethod
    def problems(cls, job: Any) -> list[str]:
        via = f"executor ray, from {job.spec.settings.executor_path}"
        out: list[str] = []
        connections: dict[str, Any] = {}
        for part in job.parts:
            step = part.content.reader
            why = part.reader.local_only
            if why:
                out.append(
                    f"{step.where.rsplit('.', 1)[0]}: {step.name} cannot be read by Ray workers "
                    f"({via}): {why}; run this job with executor local"
                )
            out.extend(_clear_secrets(part.reader.params, step.where))
            for t, tstep in zip(part.transforms, part.content.transformers, strict=False):
                out.extend(_clear_secrets(t.params, tstep.where))
            if part.writer.remote_sinks:
                out.extend(_clear_secrets(part.writer.params, part.content.writer.where))
            connections.update(part.reader.ctx.connections)
        for name, conn in sorted(connections.items()):
            out.extend(_clear_secrets(conn, f"connections.{name}"))
        return out

    def sinks(self, writer: Writer) -> SinkFactory:
        return writer if writer.remote_sinks else _DriverSinks(writer)

    def run(
        self, tasks: Sequence[Task], shared: Shared, live: Sequence[Counters]
    ) -> list[TaskResult]:
        if not tasks:
            return []
        ray = connect(self.options.get("address"), max(self.workers, os.cpu_count() or 1))
        rate = shared.rate
        try:
            actor = _job_actor(
                ray,
                getattr(rate, "byte_rate", None),
                getattr(rate, "record_rate", None),
                getattr(shared.errors, "limit", None),
            )
        except ray.exceptions.RayError as e:
            raise RetriableError(f"executor ray: cannot start the job's actor: {e}") from e
        try:
            return _Schedule(self, ray, actor, tasks, shared, live).run()
        finally:
            with contextlib.suppress(Exception):
                ray.get(actor.actor.close.remote(actor.key))


def _near_driver(ray: Any) -> dict[str, Any]:
    """Place the job's actor on the driver's node when it has one (the common case)."""
    try:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = ray.get_runtime_context().get_node_id()
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=True)}
    except Exception:  # noqa: BLE001 - a client connection: anywhere will do
        return {}


# (no "key: value" shape after the path: a message must not look like a secret to redact)
_IN_CLEAR = (
    "holds a secret written in clear, which would travel to the Ray workers with the task; "
    "give it as ${env:NAME}, set on every worker (or in the Ray job's runtime_env env_vars)"
)


def _clear_secrets(doc: Any, where: str) -> list[str]:
    """A problem for each secret of ``doc`` written in clear: tasks carry their parameters to
    the workers, so a secret must stay a reference (``${env:NAME}``) resolved there."""
    from tidesync.spec.secrets import is_secret_field, url_passwords

    out: list[str] = []

    def walk(v: Any, path: str, secret: bool) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{path}.{k}", secret or is_secret_field(k))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(x, f"{path}[{i}]", secret)
        elif isinstance(v, str):
            found = [v] if secret and v else []
            if "://" in v:
                found += url_passwords(v)
            if any(not _ENV_REF.fullmatch(s) for s in found):
                out.append(f"{path} {_IN_CLEAR}")
        elif secret and isinstance(v, int | float) and not isinstance(v, bool):
            out.append(f"{path} {_IN_CLEAR}")

    walk(doc, where, False)
    return out


class _Schedule:
    """One run: keeps ``workers`` splits going, runs lost ones again, mirrors the actor's
    counters into ``live`` and its cancel flag into the job's."""

    def __init__(
        self,
        ex: RayExecutor,
        ray: Any,
        actor: Any,
        tasks: Sequence[Task],
        shared: Shared,
        live: Sequence[Counters],
    ):
        self.ex, self.ray, self.actor = ex, ray, actor
        self.tasks, self.live = tasks, live
        self.cancel = _Cancel(actor, shared.cancel)
        self.rate = getattr(shared.rate, "active", True)
        self.errors = getattr(shared.errors, "limit", 0) is not None
        self.lost = _lost_errors(ray)
        opts = {"num_cpus": 1, "max_retries": 0, "scheduling_strategy": "SPREAD"}
        self.run_split = ray.remote(_run_split).options(**opts)
        self.read_split = ray.remote(_read_split).options(
            num_returns="streaming", _generator_backpressure_num_objects=STREAM_AHEAD, **opts
        )
        self.attempts = [0] * len(tasks)
        self.refs: dict[Future[Any], Any] = {}  # remote futures -> their ObjectRef

    def handles(self, i: int) -> _Handles:
        return _Handles(self.actor, i, self.attempts[i], bool(self.rate), self.errors)

    def run(self) -> list[TaskResult]:
        n, tasks = len(self.tasks), self.tasks
        results: list[TaskResult | None] = [None] * n
        queue = deque(range(n))
        running: dict[Future[Any], int] = {}
        here = ThreadPoolExecutor(max_workers=self.ex.workers, thread_name_prefix="ray-sink")
        try:
            while queue or running:
                if self.cancel.is_set():
                    self.cancel.set()  # a signal on the driver: tell the workers
                    while queue:
                        i = queue.popleft()
                        results[i] = TaskResult(
                            tasks[i].content,
                            tasks[i].split.index,
                            "cancelled",
                            counters=self.live[i],
                        )
                while queue and len(running) < self.ex.workers:
                    i = queue.popleft()
                    running[self.submit(i, here)] = i
                if not running:
                    break
                done, _ = wait(running, timeout=BEAT_S, return_when=FIRST_COMPLETED)
                self.refresh(running)
                for f in done:
                    i = running.pop(f)
                    self.refs.pop(f, None)
                    res = self.outcome(f, i)
                    if res is None:
                        queue.appendleft(i)
                        continue
                    results[i] = res
                    if res.status != "done":
                        self.cancel.set()
        except BaseException:
            self.cancel.set()
            for ref in self.refs.values():
                with contextlib.suppress(Exception):
                    self.ray.cancel(ref)
            raise
        finally:
            here.shutdown(wait=True)
        assert all(r is not None for r in results)
        return [r for r in results if r is not None]

    def submit(self, i: int, here: ThreadPoolExecutor) -> Future[Any]:
        self.attempts[i] += 1
        vars(self.live[i]).update(asdict(Counters(status="running")))
        task = self.tasks[i]
        if isinstance(task.sinks, _DriverSinks):
            return here.submit(contextvars.copy_context().run, self.stream, i)
        ref = self.run_split.remote(task, self.handles(i))
        fut: Future[Any] = ref.future()
        self.refs[fut] = ref
        return fut

    def stream(self, i: int) -> TaskResult:
        """A split whose sink stays here: read on a worker, written here."""
        task, counters = self.tasks[i], self.live[i]
        built = self.ex.built.get(task.content)
        transforms = built[1] if built else [s.build() for s in task.transforms]
        reader = _Streamed(self.read_split, task.reader, counters)
        h = self.handles(i)
        if self.ray.get(self.actor.start.remote(i, h.attempt)):
            self.cancel.mirror()
        return run_task(task, h.shared(self.cancel), counters, (reader, transforms))

    def refresh(self, running: dict[Future[Any], int]) -> None:
        """The actor's view: live counters of remote splits, and whether to stop."""
        try:
            cancelled, live = self.ray.get(self.actor.state.remote())
        except Exception as e:  # noqa: BLE001 - the actor died: nothing can be trusted
            self.cancel.mirror()
            raise FatalError(f"executor ray: the job's limits actor was lost: {e}") from e
        if cancelled:
            self.cancel.mirror()
        remote = {i for f, i in running.items() if f in self.refs}
        for i, counters in live.items():
            worker = counters.get("worker") or {}
            if i in remote and worker.get("attempt") == self.attempts[i]:
                vars(self.live[i]).update(counters)

    def outcome(self, f: Future[Any], i: int) -> TaskResult | None:
        """The task's result; None when it is to run again (its worker was lost)."""
        task = self.tasks[i]
        try:
            res: TaskResult = f.result()
        except self.lost as e:
            attempt = self.attempts[i]
            if attempt < MAX_ATTEMPTS and not self.cancel.is_set():
                log.warning(
                    "split %s: the Ray worker running it was lost (%s); running it again "
                    "(attempt %d of %d)",
                    task.split.label,
                    type(e).__name__,
                    attempt + 1,
                    MAX_ATTEMPTS,
                )
                return None
            res = self.failed(
                i,
                RetriableError(
                    f"split {task.split.label}: its Ray worker was lost on each of {attempt} tries"
                ),
            )
        except self.ray.exceptions.RayTaskError as e:
            res = self.failed(i, e.cause if isinstance(e.cause, BaseException) else e)
        except Exception as e:  # noqa: BLE001 - any other failure fails the split
            res = self.failed(i, e)
        for d in res.dirty:
            d.reason = redact(d.reason)  # with the driver's secrets (a worker knows fewer)
        return res

    def failed(self, i: int, error: BaseException) -> TaskResult:
        task = self.tasks[i]
        self.live[i].status = "failed"
        return TaskResult(
            task.content,
            task.split.index,
            "failed",
            counters=self.live[i],
            error=error,
            failed_at=time.time(),
        )
