"""Executors: where a job's tasks run.

The runner prepares the writers, asks the readers for splits, makes one :class:`Task` per split
(plain data: see :mod:`tidesync.engine.task`) and hands them all to an executor; it gets one
:class:`TaskResult` per task back, in task order, and does the one commit (or abort) itself::

    executor = executor_for(settings.executor, workers=settings.concurrent, built=...)
    tasks = [Task(i, reader_step, split, transform_steps, executor.sinks(writer)) ...]
    results = executor.run(tasks, Shared(rate, errors, cancel), live_counters)

``Executor(workers, built)``: ``built`` maps a content entry to the reader and transformers the
driver built; an executor running a task in this process may use them, one running it elsewhere
builds them again from the task's steps (``Step.build``, which only validates parameters).

The contract an executor keeps:

- every task runs exactly once, at most ``workers`` at a time; ``run`` returns when all ended;
- a task failing sets ``shared.cancel``, and the others stop at their next batch;
- ``shared`` (rate limit, error limit, cancel) is the job's one instance, whatever the worker;
- ``live[i]`` shows task ``i``'s counters while it runs, as far as the executor can tell (a
  remote one may update them only when the task ends); the results hold the final ones;
- ``sinks_beside_readers(writer)`` says whether a task's sink runs in its reader's process (the
  direct path runs only then);
- ``sinks(writer)`` is what a task opens its sink with. A writer whose ``remote_sinks`` is
  False keeps its sinks on the driver (one transaction); an executor that runs tasks elsewhere
  must bring their batches back to it.

``local`` runs tasks on a thread pool in this process, with the driver's own reader and
transformers (no second planning) and its writers as they are; a writer marked ``serial`` gets
its sink calls serialized by a lock the engine holds. ``ray`` (the ``ray`` extra,
:mod:`tidesync.engine.ray_executor`) runs them as Ray tasks on a cluster; an executor that runs
tasks away from the driver says so (``remote``) and may refuse a job at validate time
(``problems``). Executors are found by name in :data:`EXECUTORS`, imported on first use.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.util
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import pyarrow as pa

from tidesync.connectors.base import Raw, Reader, Sink, Split, Writer
from tidesync.engine.channel import Cancelled, CancelToken
from tidesync.engine.task import Counters, Shared, SinkFactory, Task, TaskResult, run_task
from tidesync.errors import ConfigError, did_you_mean
from tidesync.transforms.base import Transform

__all__ = [
    "EXECUTORS",
    "Executor",
    "LocalExecutor",
    "check_executor",
    "executor_class",
    "executor_for",
    "local_sinks",
]

#: what the driver built for a content entry (its reader and transformers), by entry index
Built = Mapping[int, tuple[Reader, list[Transform]]]


class Executor(ABC):
    """Runs a job's tasks: ``Executor(workers, built)``, then ``sinks`` and ``run``."""

    name: ClassVar[str]
    #: True when tasks run away from the driver (readers and sinks built again on a worker)
    remote: ClassVar[bool] = False

    def __init__(
        self, workers: int, built: Built | None = None, options: Mapping[str, Any] | None = None
    ):
        self.workers = max(1, workers)
        self.built = built or {}
        self.options = dict(options or {})  # executor-specific (ray: address)

    @classmethod
    def problems(cls, job: Any) -> list[str]:
        """Why this executor cannot run ``job`` (a planned :class:`~tidesync.engine.runner.Job`),
        one message per problem with its key path; checked at validate time."""
        return []

    def sinks_beside_readers(self, writer: Writer) -> bool:
        """Whether a task's sink for ``writer`` runs where its reader runs (in one process), as
        the direct path needs (raw pieces are not shipped between workers)."""
        return not self.remote or writer.remote_sinks

    @abstractmethod
    def sinks(self, writer: Writer) -> SinkFactory:
        """What a task opens its sink with, for this executor."""

    @abstractmethod
    def run(
        self, tasks: Sequence[Task], shared: Shared, live: Sequence[Counters]
    ) -> list[TaskResult]:
        """Run every task; one result per task, in order."""


class LocalExecutor(Executor):
    """Threads in this process, ``workers`` tasks at a time."""

    name = "local"

    def sinks(self, writer: Writer) -> SinkFactory:
        return local_sinks(writer)

    def run(
        self, tasks: Sequence[Task], shared: Shared, live: Sequence[Counters]
    ) -> list[TaskResult]:
        here = {"host": socket.gethostname(), "pid": os.getpid()}
        for counters in live:
            counters.worker = here
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="task") as pool:
            futures = [
                pool.submit(
                    contextvars.copy_context().run,  # log context (instance logs) follows
                    run_task,
                    task,
                    shared,
                    counters,
                    self.built.get(task.content),
                )
                for task, counters in zip(tasks, live, strict=True)
            ]
            try:
                return [f.result() for f in futures]
            except BaseException:
                shared.cancel.set()  # interrupted while waiting: stop the tasks, then leave
                raise


#: executor name -> class, or "module:Class" imported on first use
EXECUTORS: dict[str, type[Executor] | str] = {
    "local": LocalExecutor,
    "ray": "tidesync.engine.ray_executor:RayExecutor",
}

#: executor name -> (the module it needs, the extra that installs it)
EXTRAS = {"ray": ("ray", "ray")}


def check_executor(name: str, where: str) -> None:
    """Raise ConfigError (naming ``where``) unless ``name`` is an executor this installation
    can run (an executor from an extra needs that extra installed)."""
    if name not in EXECUTORS:
        known = ", ".join(sorted(EXECUTORS))
        raise ConfigError(
            f"{where}: {name!r} is not an executor (executors: {known})"
            f"{did_you_mean(name, EXECUTORS)}"
        )
    if name in EXTRAS:
        module, extra = EXTRAS[name]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a stub left in sys.modules, say
            found = False
        if not found:
            raise ConfigError(
                f"{where}: the {name} executor needs the '{extra}' extra, which is not "
                f"installed: pip install 'tidesync[{extra}]'"
            )


def executor_class(name: str) -> type[Executor]:
    """The class ``name`` stands for (imports it when it is given as a path)."""
    found = EXECUTORS[name]
    if isinstance(found, str):
        module, _, attr = found.partition(":")
        found = EXECUTORS[name] = getattr(importlib.import_module(module), attr)
    assert not isinstance(found, str)
    return found


def executor_for(
    name: str,
    workers: int,
    built: Built | None = None,
    where: str = "",
    options: Mapping[str, Any] | None = None,
) -> Executor:
    """The executor ``setting.executor`` names, running ``workers`` tasks at a time."""
    check_executor(name, where or "setting.executor")
    return executor_class(name)(workers, built, options)


def local_sinks(writer: Writer) -> SinkFactory:
    """The sinks of ``writer`` in the driver's process: a ``serial`` writer's calls take turns
    under a lock of the engine's; an ``ordered`` one's splits write one after another, in
    split order (``writer.split_turns``)."""
    sinks: SinkFactory = _Serialized(writer) if writer.serial else writer
    turns = writer.split_turns
    return _InTurn(sinks, turns) if isinstance(turns, SplitTurns) else sinks


class SplitTurns:
    """Splits that write in split order: a split's first write (or its close) waits until every
    split before it has closed. Reading is not held up: a waiting split's reader fills its
    channel meanwhile. A discard (a failed task, or a split leaving the direct path to be read
    again) ends no turn; a failed task cancels the job, and the waiting splits with it."""

    def __init__(self, order: Sequence[int], cancel: CancelToken):
        self.before = {i: set(order[:n]) for n, i in enumerate(order)}
        self.closed: set[int] = set()
        self.cancel = cancel
        self.turn = threading.Condition()

    def wait(self, index: int) -> None:
        before = self.before.get(index, set())
        with self.turn:
            while not before <= self.closed:
                if self.cancel.is_set():
                    raise Cancelled(f"split {index} was waiting for its turn to write")
                self.turn.wait(0.2)

    def closed_split(self, index: int) -> None:
        with self.turn:
            self.closed.add(index)
            self.turn.notify_all()


class _InTurn:
    def __init__(self, inner: SinkFactory, turns: SplitTurns):
        self.inner, self.turns = inner, turns

    def open(self, split: Split) -> Sink:
        return _TurnSink(self.turns, split.index, self.inner.open(split))


class _TurnSink(Sink):
    def __init__(self, turns: SplitTurns, index: int, sink: Sink):
        self.turns, self.index, self.sink = turns, index, sink
        self.waited = False

    def _my_turn(self) -> None:
        if not self.waited:
            self.turns.wait(self.index)
            self.waited = True

    def write(self, batch: pa.RecordBatch) -> None:
        self._my_turn()
        self.sink.write(batch)

    def begin_raw(self) -> None:
        self._my_turn()
        self.sink.begin_raw()

    def write_raw(self, raw: Raw) -> int:
        self._my_turn()
        return self.sink.write_raw(raw)

    def close(self) -> Any:
        self._my_turn()
        out = self.sink.close()
        self.turns.closed_split(self.index)
        return out

    def discard(self) -> Any:
        return self.sink.discard()


class _Serialized:
    """The sinks of a ``serial`` writer (one connection, one transaction): every call into them
    holds one lock, so tasks take turns. The lock is the engine's, not the writer's."""

    def __init__(self, writer: Writer):
        self.writer = writer
        self.lock = threading.Lock()

    def open(self, split: Split) -> Sink:
        with self.lock:
            return _LockedSink(self.writer.open(split), self.lock)


class _LockedSink(Sink):
    """A ``serial`` writer's sink. On the direct path a split has the writer alone from
    ``begin_raw`` (before its reading starts) or its first ``write_raw`` to its ``close`` or
    ``discard`` (the other tasks' sink calls wait), so a sink may keep one bulk load (a COPY, a
    LOAD DATA) open across its ``write_raw`` calls.

    Taking the writer before reading makes a serial writer's direct splits run one after
    another. Read in parallel, the later splits could only fill their channels while the one
    bulk load took the earlier split's rows: on a 2-core machine their server-side reads took
    CPU from that load (PostgreSQL -> PostgreSQL, 2M rows, two splits: 6.6-7.2 s; one at a
    time: 5.4-6.1 s)."""

    def __init__(self, sink: Sink, lock: threading.Lock):
        self.sink, self.lock = sink, lock
        self.holding = False  # this split's raw writes hold the lock until close / discard

    def write(self, batch: pa.RecordBatch) -> None:
        with self.lock:
            self.sink.write(batch)

    def begin_raw(self) -> None:
        self._hold()

    def write_raw(self, raw: Raw) -> int:
        self._hold()
        return self.sink.write_raw(raw)

    def _hold(self) -> None:
        if not self.holding:
            self.lock.acquire()
            self.holding = True

    def close(self) -> Any:
        with self._held():
            return self.sink.close()

    def discard(self) -> Any:
        with self._held():
            return self.sink.discard()

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        if not self.holding:
            with self.lock:
                yield
            return
        try:
            yield
        finally:
            self.holding = False
            self.lock.release()
