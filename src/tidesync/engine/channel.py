"""The channel between a task's reader and its writer, and the whole-job rate limiter.

``RateLimit`` and ``CancelToken`` are what a task needs of the job: the local executor gives
it a :class:`RateLimiter` and a ``threading.Event``; a distributed one may give it handles on an
actor that keeps the one bucket and the one flag of the job.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

_END = object()


class Cancelled(Exception):
    """The run was cancelled (another task failed, the error limit was hit, or a signal came)."""


class CancelToken(Protocol):
    """Set when the job must stop (a task failed, the limit was hit, a signal came)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class RateLimit(Protocol):
    """The whole job's speed limit: ``acquire`` blocks until ``records``/``nbytes`` may pass
    (raising Cancelled if the job stops meanwhile)."""

    def acquire(self, records: int, nbytes: int) -> None: ...


class Channel:
    """A bounded FIFO of record batches, bounded by bytes (at least one item always fits).

    The producer blocks while the channel holds ``capacity`` bytes, so memory stays bounded
    however fast the reader is; ``cancel`` wakes both sides.
    """

    def __init__(self, capacity: int, cancel: CancelToken):
        self.capacity = capacity
        self.cancel = cancel
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self._error: BaseException | None = None

    def put(self, item: Any, size: int) -> None:
        with self._cond:
            while self._items and self._bytes + size > self.capacity:
                if self.cancel.is_set():
                    raise Cancelled
                self._cond.wait(0.1)
            self._items.append((item, size))
            self._bytes += size
            self._cond.notify_all()

    def close(self, error: BaseException | None = None) -> None:
        with self._cond:
            self._error = error
            self._items.append((_END, 0))
            self._cond.notify_all()

    def get(self) -> Any:
        """The next item; raises StopIteration at the end, or the producer's error."""
        with self._cond:
            while not self._items:
                if self.cancel.is_set():
                    raise Cancelled
                self._cond.wait(0.1)
            item, size = self._items.popleft()
            self._bytes -= size
            self._cond.notify_all()
        if item is _END:
            if self._error is not None:
                raise self._error
            raise StopIteration
        return item


class RateLimiter:
    """Whole-job limits in bytes/s and records/s, shared by every channel.

    A token bucket with one second of burst: ``acquire`` takes what a batch costs and sleeps
    until the budget allows it, so the long-run rate never exceeds the limit. Time nothing was
    sent banks at most that one second: a reader whose first rows took a minute (a sort, a
    cold object store) is paced from then on, not let through at sixty times the limit.
    """

    def __init__(
        self,
        byte_rate: float | None,
        record_rate: float | None,
        cancel: CancelToken,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.byte_rate = byte_rate
        self.record_rate = record_rate
        self.cancel = cancel
        self.clock, self.sleep = clock, sleep
        self._lock = threading.Lock()
        # when each budget is next free ("theoretical arrival time"), one second of burst early
        self._bytes_due = self._records_due = clock() - 1.0

    @property
    def active(self) -> bool:
        return bool(self.byte_rate or self.record_rate)

    def acquire(self, records: int, nbytes: int) -> None:
        if self.active:
            wait_for(self.reserve(records, nbytes), self.cancel, self.sleep)

    def reserve(self, records: int, nbytes: int) -> float:
        """Take what a batch costs from the bucket; return how long its sender must wait
        (a distributed executor keeps the one bucket in an actor and sleeps on the worker)."""
        with self._lock:
            now = self.clock()
            burst = now - 1.0  # one second of burst: a second's worth goes at once, no more
            due = burst
            if self.byte_rate:
                self._bytes_due = max(self._bytes_due, burst) + nbytes / self.byte_rate
                due = max(due, self._bytes_due)
            if self.record_rate:
                self._records_due = max(self._records_due, burst) + records / self.record_rate
                due = max(due, self._records_due)
            return due - now


def wait_for(wait: float, cancel: CancelToken, sleep: Callable[[float], None] = time.sleep) -> None:
    """Sleep ``wait`` seconds in short steps, raising Cancelled as soon as the job stops."""
    while wait > 0:
        if cancel.is_set():
            raise Cancelled
        step = min(wait, 0.2)
        sleep(step)
        wait -= step
