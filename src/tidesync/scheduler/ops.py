"""Operations on a schedule, one implementation for the command line and the operations page.

Each takes the :class:`~tidesync.scheduler.daemon.Scheduler` of the project and returns the
line that says what it did; a mistake (an unknown node or instance, an instance that is running)
is a :class:`~tidesync.errors.ConfigError`: exit 2 on the command line, a 4xx on the page
(:class:`NotFound` 404, :class:`Conflict` 409). Running what an operation made runnable is the
caller's part: the command line runs it here and now, the page in the background or by waking
the daemon it lives with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tidesync.errors import ConfigError, did_you_mean
from tidesync.scheduler.project import Node
from tidesync.scheduler.store import TERMINAL, Instance

__all__ = [
    "Conflict",
    "NotFound",
    "get_instance",
    "get_node",
    "kill",
    "pause",
    "rerun",
    "resume",
    "validate",
    "waiting_on",
]


class NotFound(ConfigError):
    """No such node or instance."""


class Conflict(ConfigError):
    """The operation does not fit the state it finds (a rerun of a running instance)."""


def get_instance(sched: Any, instance_id: int) -> Instance:
    inst = sched.store.get(instance_id)
    if inst is None:
        raise NotFound(f"ID: no instance {instance_id}; `tidesync instances` lists them")
    return inst


def get_node(sched: Any, name: str) -> Node:
    node = sched.project.nodes.get(name)
    if node is None:
        raise NotFound(
            f"NODE: unknown node {name!r}{did_you_mean(name, sched.project.nodes)}; "
            "`tidesync nodes` lists them"
        )
    return node


def waiting_on(sched: Any, inst: Instance, now: float) -> str:
    """Why a waiting instance has not started: its time, its retry time, or what
    :meth:`Scheduler.waiting_on` says (its dependencies, a pause)."""
    from tidesync.scheduler.cycles import instant_text

    def when(ts: float | None) -> str:
        return "-" if ts is None else instant_text(ts, sched.project.tz)

    if inst.due_at > now:
        return f"its time ({when(inst.due_at)})"
    if inst.next_try_at and inst.next_try_at > now:
        return f"its retry time ({when(inst.next_try_at)})"
    return sched.waiting_on(inst) or "a scheduler to pick it up"


def rerun(sched: Any, instance_id: int) -> tuple[str, str | None]:
    """Put instance ``instance_id`` back to waiting with a fresh count of retries.

    Returns the line saying so and, when it cannot run yet, why (its dependencies)."""
    get_instance(sched, instance_id)
    was = sched.store.rerun(instance_id)
    if was == "running":
        raise Conflict(f"ID: instance {instance_id} is running; kill it first")
    inst = sched.store.get(instance_id)
    return f"instance {instance_id}: {was} -> waiting", sched.waiting_on(inst)


_KILLED = {
    "cancelled": "cancelled",
    "requested": "kill requested: its scheduler cancels the running job",
}


def kill(sched: Any, instance_id: int) -> str:
    """Cancel an instance: at once when waiting; a running one by its scheduler."""
    inst = get_instance(sched, instance_id)
    if inst.state in TERMINAL:
        return f"instance {instance_id}: nothing to do, it is {inst.state}"
    got = sched.kill(instance_id)
    return f"instance {instance_id}: {_KILLED.get(got, f'nothing to do, it is {got}')}"


def pause(sched: Any, name: str, now: float) -> str:
    """Hold back the node's instances (every scheduler sharing the store) until resumed."""
    node = get_node(sched, name)
    if node.paused:
        return f"node {name} is already paused in {sched.project.file.name} ({node.where}.paused)"
    if not sched.store.pause(name, now):
        return f"node {name} is already paused"
    return f"node {name} paused: its instances wait until `tidesync resume {name}`"


def resume(sched: Any, name: str) -> str:
    """Let a node paused by :func:`pause` run again."""
    node = get_node(sched, name)
    if node.paused:
        raise Conflict(
            f"{node.where}.paused: node {name} is paused in {sched.project.file.name}; "
            "set paused: false there"
        )
    if not sched.store.resume(name):
        return f"node {name} is not paused"
    return f"node {name} resumed"


def validate(sched: Any, name: str, now: datetime) -> str:
    """Check the node's job file with its parameters as its latest slot by ``now`` (else its
    next one) evaluates them, as a run would load it; moves no data. ConfigError lists every
    problem."""
    from tidesync.connections import load_connections
    from tidesync.engine.runner import load_job
    from tidesync.scheduler.cycles import wall_text
    from tidesync.spec.params import RunTime
    from tidesync.state import open_state

    node = get_node(sched, name)
    if node.job is None:
        return f"node {name} runs no job (dry_run): nothing to check"
    slot = node.schedule.latest(now) or node.schedule.next_after(now)
    rt = (
        RunTime(slot.cyctime, slot.bizdate, node.schedule.timezone)
        if slot
        else RunTime.of(tz=node.schedule.timezone)
    )
    project = sched.project
    state = open_state(project.state, project.root)
    try:
        job = load_job(
            node.job,
            node.evaluate(rt),
            rt,
            connections=load_connections(project.file),
            state=state,
            identity=f"node:{name}",
            raw_params=dict(node.params),
        )
    finally:
        state.close()
    try:
        shown = node.job.relative_to(project.root)
    except ValueError:
        shown = node.job
    n = len(job.parts)
    line = (
        f"{shown}: ok ({job.spec.shape}, {n} reader/writer pair{'s' if n != 1 else ''}; "
        f"parameters of cyctime {wall_text(rt.cyctime, node.schedule.tz)})"
    )
    if job.ignored:
        line += f"\ninfo: {job.info()}"
    return line
