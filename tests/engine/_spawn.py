"""An executor for tests that runs each task in a fresh Python process (multiprocessing
``spawn``): every task is pickled, its reader and transformers are built again from their
steps, and its result is pickled back. A job that gives the same output through it as through
the local executor has tasks that refer to nothing in the driver's memory."""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence

from tidesync.connectors.base import Writer
from tidesync.engine.channel import RateLimiter
from tidesync.engine.dirty import RecordLimit
from tidesync.engine.executor import Executor
from tidesync.engine.task import Counters, Shared, SinkFactory, Task, TaskResult, run_task

#: the processes the last run's tasks ran in
PIDS: list[int] = []


def run_alone(task: Task) -> tuple[int, TaskResult]:
    """A task in a process of its own: the job's limits are not shared here (tests set none)."""
    cancel = threading.Event()
    shared = Shared(RateLimiter(None, None, cancel), RecordLimit(None), cancel)
    return os.getpid(), run_task(task, shared)


class SpawnExecutor(Executor):
    name = "spawn"

    def sinks(self, writer: Writer) -> SinkFactory:
        assert writer.remote_sinks, f"{writer.kind} keeps its sinks on the driver"
        return writer

    def run(
        self, tasks: Sequence[Task], shared: Shared, live: Sequence[Counters]
    ) -> list[TaskResult]:
        with multiprocessing.get_context("spawn").Pool(min(self.workers, len(tasks) or 1)) as pool:
            done = pool.map(run_alone, tasks)
        PIDS[:] = [pid for pid, _ in done]
        return [res for _, res in done]
