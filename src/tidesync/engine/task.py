"""One task: a reader split -> transforms -> channel -> one sink, as plain data and as a function.

A :class:`Task` holds everything a worker needs and nothing of the driver's memory: the reader
and transformers as :class:`Step` (class, parameters, context: rebuilt on the worker, which only
validates parameters), the split (plain data), and a sink factory (for writers whose sinks may
run away from the driver, the prepared writer itself, pickled). :func:`run_task` runs it and
returns a :class:`TaskResult`: the sink's result, the counters and the dirty records, as data.

A task with ``raw_form`` runs the direct path (``Reader.read_raw`` -> ``Sink.write_raw``, no
Arrow, no transformers); when its sink raises :class:`DirectFallback` (a bad row the raw form
cannot isolate) the sink is discarded and the split is read again on the Arrow path, so
dirty-record handling stays exact. ``Counters.path`` says which path the split took.

What tasks share across a job goes through :class:`Shared` (rate limit, error limit, cancel):
in-process objects on the local executor, an actor's handles on a distributed one.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from tidesync.connectors.base import Chunk, Context, DirectFallback, Raw, Reader, Sink, Split
from tidesync.engine.channel import Cancelled, CancelToken, Channel, RateLimit
from tidesync.engine.dirty import DirtyRecord, ErrorLimit, isolate, row_of
from tidesync.errors import DirtyRecordError, redact
from tidesync.transforms.base import Transform

log = logging.getLogger("tidesync")

__all__ = [
    "CancelToken",
    "Counters",
    "ErrorLimit",
    "RateLimit",
    "Shared",
    "SinkFactory",
    "Step",
    "Task",
    "TaskResult",
    "run_task",
]

#: dirty records a task keeps in full (it counts them all)
KEEP_DIRTY = 100_000


# -- what tasks share across a job ----------------------------------------------------------------


@dataclass
class Shared:
    """What every task of a job shares: one instance per job, whichever worker runs a task."""

    rate: RateLimit
    errors: ErrorLimit
    cancel: CancelToken


class SinkFactory(Protocol):
    """Makes the sink of one split (``Writer.open`` is one); picklable when it may travel."""

    def open(self, split: Split) -> Sink: ...


# -- the task as data -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """A reader or transformer as data: built again wherever the task runs (``__init__`` only
    validates parameters). The context travels without the state store (the driver's)."""

    cls: type[Any]
    params: dict[str, Any]
    ctx: Context

    def build(self) -> Any:
        return self.cls(self.params, self.ctx)


@dataclass(frozen=True)
class Task:
    content: int  # index of the job's content entry
    reader: Step
    split: Split
    transforms: tuple[Step, ...]
    sinks: SinkFactory
    channel_bytes: int = 64 << 20  # the channel holds at least one batch whatever its size
    #: the direct path's raw form (the engine chose it: no transformers, the writer takes it
    #: from this reader); None: the Arrow path
    raw_form: str | None = None


@dataclass
class Counters:
    """One task's counts (and status), updated while it runs, returned when it ends."""

    status: str = "pending"  # pending | running | done | failed | cancelled
    records_read: int = 0
    bytes_read: int = 0
    records_written: int = 0
    dirty_records: int = 0
    #: of those, the records dirty before the writer (reading, transforms): keys unknown to it
    dirty_before_write: int = 0
    #: rows the transformers took out (``dx_filter``, an sql ``WHERE``): rows into the chain less
    #: rows out of it and rows it made dirty, so read = written + dirty + filtered (negative
    #: where a transformer makes rows, an sql join)
    records_filtered: int = 0
    #: where the task runs, as the executor tells it (``host``, ``pid``; Ray: ``node``, ``attempt``)
    worker: dict[str, Any] | None = None
    #: the path the split's rows took: ``arrow`` or ``direct: FORM`` ("" before it starts)
    path: str = ""
    #: why the split left the direct path for the Arrow one (the sink's DirectFallback)
    fallback: str | None = None


@dataclass
class TaskResult:
    content: int
    split: int  # the split's index
    status: str  # done | failed | cancelled
    #: ``Sink.close()``'s result when done; ``Sink.discard()``'s when the task failed
    result: Any = None
    counters: Counters = field(default_factory=Counters)
    dirty: list[DirtyRecord] = field(default_factory=list)
    error: BaseException | None = None  # None when done or cancelled by another task's failure
    failed_at: float | None = None  # time.time() of the failure: the first one is reported
    elapsed_s: float = 0.0
    #: the last ``Chunk.position`` the split's reader yielded (None: it reported none); the
    #: driver saves it after the commit
    position: Any = None
    #: the split's ``Chunk.facts`` (those not None), for ``Reader.finished``
    facts: list[Any] = field(default_factory=list)


# -- running one task -------------------------------------------------------------------------------


def run_task(
    task: Task,
    shared: Shared,
    counters: Counters | None = None,
    built: tuple[Reader, list[Transform]] | None = None,
) -> TaskResult:
    """Run ``task`` to its sink's result; never raises for a task failure (the result says it).

    ``counters`` is updated as rows move (for live progress); ``built`` is the reader and
    transformers when the caller already has them (the local executor: the driver's own).
    """
    own = built is None
    if built is None:
        reader = task.reader.build()
        built = (reader, [s.build() for s in task.transforms])
    try:
        return _Run(task, shared, counters or Counters(), built[0], built[1]).run()
    finally:
        if own:
            with contextlib.suppress(Exception):  # a close failure must not hide the result
                built[0].close()


class _Run:
    def __init__(
        self,
        task: Task,
        shared: Shared,
        counters: Counters,
        reader: Reader,
        transforms: list[Transform],
    ):
        self.task = task
        self.shared = shared
        self.cancel = shared.cancel
        self.c = counters
        self.reader = reader
        self.transforms = transforms
        self.dirty: list[DirtyRecord] = []
        self.position: Any = None  # the last one the reader yielded
        self.facts: list[Any] = []
        self.lock = threading.Lock()  # dirty records come from the reading and the writing thread
        self.stop = _Stop(shared.cancel)  # this attempt's reading stops (a fallback), or the job's

    def add_dirty(
        self, stage: str, reason: str, row: dict[str, Any], position: str, code: str | None
    ) -> None:
        reason = redact(reason)
        with self.lock:
            self.c.dirty_records += 1
            if stage != "write":
                self.c.dirty_before_write += 1
            if len(self.dirty) < KEEP_DIRTY:
                self.dirty.append(
                    DirtyRecord(self.task.split.label, position, stage, reason, row, code)
                )
        self.shared.errors.add(reason)

    # -- reading (a thread of its own) ----------------------------------------------------------
    def produce(self, channel: Channel) -> None:
        offset = 0
        c = self.c
        try:
            for item in self.reader.read(self.task.split):
                if self.stop.is_set():
                    raise Cancelled
                chunk = item if isinstance(item, Chunk) else Chunk(item)
                if chunk.position is not None:
                    self.position = chunk.position
                if chunk.facts is not None:
                    self.facts.append(chunk.facts)
                for d in chunk.dirty:
                    c.records_read += 1
                    self.add_dirty("read", d.reason, d.row, d.position, d.code)
                batch = chunk.batch
                if batch is None or batch.num_rows == 0:
                    continue
                if isinstance(batch, pa.Table):
                    batches: Iterable[pa.RecordBatch] = batch.to_batches()
                else:
                    batches = [batch]
                for b in batches:
                    n = b.num_rows
                    c.records_read += n
                    c.bytes_read += b.nbytes
                    # a transformed batch's rows are no longer the source's rows by position
                    # (a filter drops some, an sql reorders): the writer names the range
                    last = offset + n - 1 if self.transforms else None
                    for out in self.transform(b, offset):
                        if out.num_rows:
                            self.shared.rate.acquire(out.num_rows, out.nbytes)
                            channel.put((out, offset, last), out.nbytes)
                    offset += n
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            channel.close(e)
            return
        channel.close()

    def produce_raw(self, channel: Channel, form: str) -> None:
        """The direct path's reading: raw pieces, counted as they come when they say their rows."""
        c = self.c
        pieces = self.reader.read_raw(self.task.split, form)
        try:
            for raw in pieces:
                if self.stop.is_set():
                    raise Cancelled
                if raw.position is not None:
                    self.position = raw.position
                c.bytes_read += raw.nbytes
                if raw.rows is not None:
                    c.records_read += raw.rows
                self.shared.rate.acquire(raw.rows or 0, raw.nbytes)
                channel.put(raw, raw.nbytes)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which re-raises it
            channel.close(e)
            return
        finally:
            close = getattr(pieces, "close", None)
            if close is not None:  # a generator stopped early releases its source now
                with contextlib.suppress(Exception):
                    close()
        channel.close()

    def transform(self, batch: pa.RecordBatch, offset: int) -> list[pa.RecordBatch]:
        """``batch`` (the source's rows from ``offset``) through every transformer. A dirty
        record's position is its source row where that is known: in the first transformer,
        which sees the source's rows in order. A later one sees what the ones before it made
        (rows filtered out, split around dirty ones, reordered): its position is the source
        batch's range of rows."""
        out = [batch]
        last = offset + batch.num_rows - 1
        dirty = 0
        for i, t in enumerate(self.transforms):

            def on_dirty(
                o: int, row: pa.RecordBatch, e: DirtyRecordError, t: Transform = t, i: int = i
            ) -> None:
                nonlocal dirty
                dirty += 1
                named = e.reason.startswith(f"{t.name}: ")  # dx_* and sql name themselves
                self.add_dirty(
                    "transform",
                    e.reason if named else f"{t.name}: {e.reason}",
                    row_of(row, 0),
                    f"row {offset + o}" if i == 0 else rows_between(offset, last),
                    e.code,
                )

            nxt: list[pa.RecordBatch] = []
            for b in out:
                nxt.extend(isolate(b, t.apply, on_dirty))
            out = nxt
        if self.transforms:
            self.c.records_filtered += batch.num_rows - sum(b.num_rows for b in out) - dirty
        return out

    # -- writing (the task's own thread) --------------------------------------------------------
    def run(self) -> TaskResult:
        t0 = time.monotonic()
        task, c = self.task, self.c
        c.status = "running"
        res = TaskResult(task.content, task.split.index, "running", counters=c, dirty=self.dirty)
        sink: Sink | None = None
        try:
            if task.raw_form is not None:
                c.path = f"direct: {task.raw_form}"
                sink = task.sinks.open(task.split)
                try:
                    res.result = self.pump(sink, self.produce_raw, task.raw_form)
                except DirectFallback as e:
                    self.fall_back(sink, e)
                    sink = None
            if sink is None:
                c.path = "arrow"
                sink = task.sinks.open(task.split)
                res.result = self.pump(sink, self.produce, None)
            res.position = self.position
            res.facts = self.facts
            res.status = c.status = "done"
        except BaseException as e:  # noqa: BLE001 - the result carries it to the driver
            res.failed_at = time.time()
            res.status = c.status = "cancelled" if isinstance(e, Cancelled) else "failed"
            if not isinstance(e, Cancelled):
                res.error = e
            self.cancel.set()
            if sink is not None:
                try:
                    res.result = sink.discard()
                except Exception as de:  # noqa: BLE001 - the first failure is the one to report
                    log.warning(
                        "cleaning up split %s failed: %s", task.split.label, redact(str(de))
                    )
        finally:
            res.elapsed_s = round(time.monotonic() - t0, 3)
        return res

    def pump(self, sink: Sink, produce: Any, form: str | None) -> Any:
        """Read on a thread of its own into the channel, write here; the sink's close result.
        On any failure the reading thread is stopped and joined before this returns."""
        channel = Channel(self.task.channel_bytes, self.stop)
        args = (channel,) if form is None else (channel, form)
        if form is not None:
            sink.begin_raw()  # a serial writer's split reads only when it has the writer
        producer = threading.Thread(
            target=contextvars.copy_context().run,  # log context (instance logs) follows
            args=(produce, *args),
            daemon=True,
            name=f"read-{self.task.content}-{self.task.split.index}",
        )
        producer.start()
        try:
            if form is None:
                self.write_batches(sink, channel)
            else:
                self.write_raw(sink, channel)
            return sink.close()
        except BaseException:
            self.stop.set()
            producer.join()
            raise

    def write_batches(self, sink: Sink, channel: Channel) -> None:
        def write(b: pa.RecordBatch) -> int:
            sink.write(b)
            return int(b.num_rows)

        while True:
            try:
                batch, offset, last = channel.get()
            except StopIteration:
                return

            def on_dirty(
                o: int,
                row: pa.RecordBatch,
                e: DirtyRecordError,
                at: int = offset,
                last: int | None = last,
            ) -> None:
                where = f"row {at + o}" if last is None else rows_between(at, last)
                self.add_dirty("write", e.reason, row_of(row, 0), where, e.code)

            self.c.records_written += sum(isolate(batch, write, on_dirty))

    def write_raw(self, sink: Sink, channel: Channel) -> None:
        c = self.c
        while True:
            try:
                raw: Raw = channel.get()
            except StopIteration:
                return
            n = sink.write_raw(raw)
            c.records_written += n
            if raw.rows is None:
                c.records_read += n

    def fall_back(self, sink: Sink, e: DirectFallback) -> None:
        """The direct path met a row it cannot isolate: drop what the split staged, forget its
        counts and position, and let the caller read it again on the Arrow path."""
        c = self.c
        log.info(
            "split %s leaves the direct path (%s) for the Arrow path: %s",
            self.task.split.label,
            self.task.raw_form,
            redact(e.reason),
        )
        sink.discard()
        c.fallback = redact(e.reason)
        c.records_read = c.bytes_read = c.records_written = c.records_filtered = 0
        self.position = None
        self.facts = []
        self.stop = _Stop(self.shared.cancel)  # a fresh one: the direct reading's is set


class _Stop:
    """Stops one reading thread (the direct path's, before a fallback) or, set by the job,
    every one."""

    def __init__(self, job: CancelToken):
        self.job = job
        self.mine = threading.Event()

    def is_set(self) -> bool:
        return self.mine.is_set() or self.job.is_set()

    def set(self) -> None:
        self.mine.set()


def rows_between(first: int, last: int) -> str:
    """A dirty record's position where only its source batch is known."""
    return f"row {first}" if first == last else f"one of rows {first}-{last}"
