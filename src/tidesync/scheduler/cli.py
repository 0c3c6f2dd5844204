"""Scheduler commands, added to ``tidesync`` by ``tidesync.cli``::

    tidesync nodes
    tidesync scheduler start | run-once --at YYYYMMDDHHMMSS
    tidesync instances [--node N] [--state S] [--since T]
    tidesync instance show | log | rerun | kill ID
    tidesync backfill NODE --from YYYYMMDD --to YYYYMMDD [--with-downstream] [--parallel N]

Every command takes ``--project DIR`` (default: the working directory, or $TIDESYNC_PROJECT).
Exit codes: 0 fine; 1 an instance this command ran failed (or the store is unreachable);
2 a bad project file or bad usage.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import click

from tidesync import cli_common as _cli
from tidesync.cli_common import CONTEXT_SETTINGS, BizDate, CycTime
from tidesync.errors import ConfigError, TidesyncError, redact
from tidesync.scheduler.store import STATES, Instance

__all__ = ["commands"]


def _project_option(f: Any) -> Any:
    return click.option(
        "--project",
        "project_dir",
        type=click.Path(file_okay=True, path_type=Path),
        envvar="TIDESYNC_PROJECT",
        show_envvar=True,
        help="Project folder holding tidesync.yaml (default: the working directory).",
    )(f)


def _yes_option(f: Any) -> Any:
    return click.option(
        "-y",
        "--yes",
        is_flag=True,
        help="Create more than scheduler.create_limit (default 10,000) instances of a node at once.",
    )(f)


def _say(text: str) -> None:
    click.echo(text, err=True)


def _fail(e: TidesyncError) -> None:
    if isinstance(e, ConfigError):
        _cli.fail_config(e)
    click.echo(f"error: {redact(str(e))}", err=True)
    sys.exit(1)


def _scheduler(project_dir: Path | None, **kw: Any) -> Any:
    from tidesync.scheduler.daemon import Scheduler
    from tidesync.scheduler.project import load_project

    try:
        return Scheduler(load_project(project_dir), **kw)
    except TidesyncError as e:
        _fail(e)


def _wall(sched: Any, ts: float | None) -> str:
    """An instant in the project's zone, with its UTC offset (every time shown is)."""
    from tidesync.scheduler.cycles import instant_text

    return "-" if ts is None else instant_text(ts, sched.project.tz)


def _wall_text(sched: Any, t: datetime) -> str:
    """A time argument as the stored form of a cyctime (a wall time in the project's zone)."""
    if t.tzinfo is not None:
        t = t.astimezone(ZoneInfo(sched.project.timezone)).replace(tzinfo=None)
    return t.strftime("%Y%m%d%H%M%S")


def _cyc(sched: Any, node: str, text: str) -> str:
    """A cyctime: the wall time of the node's schedule, with that zone's UTC offset (it is the
    instance's name and its parameters' time, so it is not converted to the project's zone)."""
    from tidesync.scheduler.cycles import wall_text
    from tidesync.scheduler.daemon import parse_cyctime

    n = sched.project.nodes.get(node)
    return wall_text(parse_cyctime(text), n.schedule.tz if n else sched.project.tz)


def _instant(at: datetime, tz: str) -> datetime:
    """A time argument as a UTC instant: a wall time in ``tz``, unless it has its own offset."""
    if at.tzinfo is not None:
        return at.astimezone(UTC)
    from tidesync.scheduler.cycles import wall_to_instant

    return wall_to_instant(at, ZoneInfo(tz))[1]


def _at_instant(sched: Any, at: datetime | None) -> datetime | None:
    return None if at is None else _instant(at, sched.project.timezone)


def _report_outcomes(sched: Any, outcomes: list[Any], as_json: bool) -> int:
    outcomes = sorted(outcomes, key=lambda o: (o.cyctime, o.node, o.id, o.attempt))
    if as_json:
        click.echo(json.dumps([o.__dict__ for o in outcomes], indent=2))
    else:
        for o in outcomes:
            err = f"  {o.error.splitlines()[0]}" if o.error and o.state != "succeeded" else ""
            click.echo(
                f"{o.id:>6} {o.node:<20} {_cyc(sched, o.node, o.cyctime)}  {o.state:<9} "
                f"attempt {o.attempt} ({o.elapsed_s:.2f}s){err}"
            )
    final = {o.id: o.state for o in outcomes}
    counts = Counter(final.values())
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "nothing to run"
    click.echo(f"{len(final)} instance(s): {summary}", err=True)
    bad = ("failed", "cancelled", "released", "lost")  # released/lost: interrupted, not done
    return 1 if any(counts.get(b) for b in bad) else 0


# ---------------------------------------------------------------------------------------------
# tidesync nodes


@click.command(context_settings=CONTEXT_SETTINGS)
@_project_option
@click.option("--at", type=CycTime(), help="Show the next run after this time (default: now).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def nodes(project_dir: Path | None, at: datetime | None, as_json: bool) -> None:
    """List the project's nodes: schedule, next run, dependencies."""
    from tidesync.scheduler.project import load_project

    try:
        project = load_project(project_dir)
    except ConfigError as e:
        _cli.fail_config(e)
    from tidesync.scheduler.cycles import wall_text
    from tidesync.scheduler.store import open_store

    try:
        store = open_store(project.state, project.home)
        held = store.paused()  # by `tidesync pause`
        store.close()
    except TidesyncError as e:
        _fail(e)
    now = _instant(at, project.timezone) if at else datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for n in project.nodes.values():
        nxt = n.schedule.next_after(now)
        rows.append(
            {
                "name": n.name,
                "schedule": n.schedule.describe(),
                "next": wall_text(nxt.cyctime, n.schedule.tz) if nxt else None,
                "depends_on": list(n.depends_on),
                "retries": n.retries,
                "retry_interval_s": n.retry_interval,
                "retry_on": n.retry_on,
                "self_dependent": n.self_dependent,
                "timeout_s": n.timeout,
                "concurrency": n.concurrency,
                "paused": n.paused or n.name in held,
                "dry_run": n.dry_run,
                "catchup": n.catchup.describe(),
                "job": str(n.job) if n.job else None,
                "params": n.shown_params(n.params),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        flags = [f for f in ("paused", "self_dependent", "dry_run") if r[f]]
        click.echo(f"{r['name']:<20} {r['schedule']}")
        click.echo(
            f"{'':<20} next {r['next'] or '-'}; retries {r['retries']}"
            f"{'; after ' + ', '.join(r['depends_on']) if r['depends_on'] else ''}"
            f"{'; ' + ', '.join(flags) if flags else ''}"
        )


# ---------------------------------------------------------------------------------------------
# tidesync scheduler start | run-once


class _ZoneFormatter(logging.Formatter):
    """Log lines stamped with the project's wall time and UTC offset."""

    def __init__(self, tz: ZoneInfo):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.tz = tz

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return datetime.fromtimestamp(record.created, self.tz).isoformat(
            sep=" ", timespec="seconds"
        )


def _stamp_log_lines(tz: ZoneInfo) -> None:
    # the handler tidesync's main() installed (exactly a StreamHandler: not a test's capture)
    for h in logging.getLogger().handlers:
        if type(h) is logging.StreamHandler:
            h.setFormatter(_ZoneFormatter(tz))


@click.group(context_settings=CONTEXT_SETTINGS)
def scheduler() -> None:
    """Run the schedule: as a daemon (start), or one pass at a given time (run-once)."""


@scheduler.command(context_settings=CONTEXT_SETTINGS)
@_project_option
@click.option(
    "--workers",
    type=click.IntRange(1),
    help="Instances run at once (default: scheduler.workers, 4).",
)
@_yes_option
@click.option("--ui", is_flag=True, help="Serve the operations page too (see tidesync ui).")
@click.option("--ui-host", default="127.0.0.1", show_default=True, help="Address of the page.")
@click.option(
    "--ui-port", type=click.IntRange(0, 65535), default=8765, show_default=True, help="Its port."
)
def start(
    project_dir: Path | None,
    workers: int | None,
    yes: bool,
    ui: bool,
    ui_host: str,
    ui_port: int,
) -> None:
    """Run the scheduler until SIGTERM or Ctrl-C.

    Creates instances as they come due and runs them. On SIGTERM running jobs are cancelled
    (they publish nothing) and their instances go back to waiting for the next start. An
    instance left running by a crashed scheduler is taken back (lease expiry, or its process
    gone on this host) and run again. Edits to tidesync.yaml are picked up while it runs.
    A node that would get more than scheduler.create_limit instances at once is held (and
    logged) until the project file changes, unless --yes. With --ui the operations page is
    served by the same process (its URL, with its token, is printed).
    """
    logging.getLogger("tidesync.scheduler").setLevel(logging.INFO)
    sched = _scheduler(project_dir, workers=workers, reload=True, yes=yes)
    _stamp_log_lines(sched.project.tz)

    def on_signal(signum: int, frame: Any) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping; running jobs are cancelled", err=True)
        sched.stop()

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, on_signal)
    page = None
    if ui:
        from tidesync.web.cli import start_ui

        page = start_ui(project_dir, ui_host, ui_port, daemon=sched)
    try:
        sched.serve()
    except TidesyncError as e:
        _fail(e)
    finally:
        if page is not None:
            page.stop()


@scheduler.command("run-once", context_settings=CONTEXT_SETTINGS)
@_project_option
@click.option(
    "--at",
    type=CycTime(),
    help="Act as if it were this time: YYYYMMDD[HH[MM[SS]]] or YYYY-MM-DD[ HH:MM[:SS]], a "
    "wall-clock time in the project's time zone unless it ends with an offset (+08:00, Z). "
    "Default: now.",
)
@click.option("--workers", type=click.IntRange(1), help="Instances run at once.")
@_yes_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
def run_once(
    project_dir: Path | None, at: datetime | None, workers: int | None, yes: bool, as_json: bool
) -> None:
    """Create every instance due by --at, run what can run, then exit.

    Each node's instances are created from where the previous pass (or daemon) left off; a
    node seen for the first time starts at its latest due slot, or at its start_date with
    catchup: all. More than scheduler.create_limit instances of a node at once is refused
    (exit 2) unless --yes. Time stands still at --at: a retry due later waits for a later
    pass. Exit 1 when an instance failed in this pass.
    """
    sched = _scheduler(project_dir, workers=workers, yes=yes, announce=_say)

    def on_signal(signum: int, frame: Any) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping; running jobs are cancelled", err=True)
        sched.stop()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        outcomes = sched.run_once(_at_instant(sched, at))
    except TidesyncError as e:
        _fail(e)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    sys.exit(_report_outcomes(sched, outcomes, as_json))


# ---------------------------------------------------------------------------------------------
# tidesync instances / instance ...


def _row_line(sched: Any, i: Instance) -> str:
    err = (i.error or "").splitlines()[0][:60] if i.error and i.state != "succeeded" else ""
    return (
        f"{i.id:>6} {i.node:<20} {_cyc(sched, i.node, i.cyctime)} {i.bizdate} {i.state:<9} "
        f"{i.attempts:>3} {_wall(sched, i.started_at):<25} {_wall(sched, i.finished_at):<25} "
        f"{i.batch or '-'} {err}"
    )


@click.command(context_settings=CONTEXT_SETTINGS)
@_project_option
@click.option("--node", help="Only this node's instances.")
@click.option("--state", type=click.Choice(STATES), help="Only instances in this state.")
@click.option(
    "--since",
    type=CycTime(),
    help="Only cyctimes at or after this time (the forms of --at; 20250101 is its midnight).",
)
@click.option("--batch", help="Only this backfill's instances ('' for the schedule's).")
@click.option(
    "--limit",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="At most this many, the latest.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def instances(
    project_dir: Path | None,
    node: str | None,
    state: str | None,
    since: datetime | None,
    batch: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List instances, oldest first: id, node, cyctime, bizdate, state, attempts, times."""
    sched = _scheduler(project_dir)
    rows = sched.store.listing(
        node=node,
        state=state,
        batch=batch,
        limit=limit,
        since=_wall_text(sched, since) if since else None,
    )
    if node is not None and not rows and node not in sched.project.nodes:
        # a mistyped name listed nothing, as if the node had no failure
        from tidesync.errors import did_you_mean

        _fail(
            ConfigError(
                f"--node: {node!r} is not a node of the project and has no instances"
                f"{did_you_mean(node, sched.project.nodes)}; `tidesync nodes` lists them"
            )
        )
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in rows], indent=2))
        return
    click.echo(
        f"{'ID':>6} {'NODE':<20} {'CYCTIME':<25} BIZDATE  {'STATE':<9} TRY "
        f"{'STARTED':<25} {'FINISHED':<25} BATCH ERROR"
    )
    for r in rows:
        click.echo(_row_line(sched, r))


@click.group(context_settings=CONTEXT_SETTINGS)
def instance() -> None:
    """One instance: show, log, rerun, kill."""


def _get(sched: Any, instance_id: int) -> Instance:
    inst = sched.store.get(instance_id)
    if inst is None:
        click.echo(
            f"error: ID: no instance {instance_id}; `tidesync instances` lists them", err=True
        )
        sys.exit(2)
    return inst


@instance.command(context_settings=CONTEXT_SETTINGS)
@click.argument("instance_id", metavar="ID", type=int)
@_project_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def show(instance_id: int, project_dir: Path | None, as_json: bool) -> None:
    """Everything about instance ID: times, parameters, report, why it waits."""
    sched = _scheduler(project_dir)
    inst = _get(sched, instance_id)
    d = inst.as_dict()
    if not d["log_path"] and sched.log_path(inst).exists():
        d["log_path"] = str(sched.log_path(inst))  # running its first attempt
    if inst.state == "waiting":
        from tidesync.scheduler import ops

        d["waiting_on"] = ops.waiting_on(sched, inst, datetime.now(UTC).timestamp())
    if as_json:
        click.echo(json.dumps(d, indent=2, default=str))
        return
    node = sched.project.nodes.get(inst.node)
    tz = node.schedule.timezone if node else sched.project.timezone
    for key in (
        "id",
        "node",
        "batch",
        "state",
        "attempts",
        "owner",
        "error",
        "waiting_on",
        "log_path",
    ):
        if d.get(key) not in (None, ""):
            click.echo(f"{key:<11} {d[key]}")
    click.echo(f"{'cyctime':<11} {_cyc(sched, inst.node, inst.cyctime)} ({tz})")
    click.echo(f"{'bizdate':<11} {inst.bizdate}")
    for key in ("due_at", "started_at", "finished_at", "next_try_at"):
        if d.get(key) is not None:
            click.echo(f"{key:<11} {_wall(sched, d[key])}")
    for k, v in inst.param_values.items():
        click.echo(f"{'param':<11} {k}={v}")
    if d["report"]:
        click.echo("report:")
        click.echo(json.dumps(d["report"], indent=2))


@instance.command("log", context_settings=CONTEXT_SETTINGS)
@click.argument("instance_id", metavar="ID", type=int)
@_project_option
def log_(instance_id: int, project_dir: Path | None) -> None:
    """Print instance ID's log: every attempt, its parameters, what the job logged."""
    sched = _scheduler(project_dir)
    inst = _get(sched, instance_id)
    path = Path(inst.log_path) if inst.log_path else sched.log_path(inst)
    if path.exists():
        click.echo(path.read_text(encoding="utf-8"), nl=False)
    elif inst.log_tail:
        click.echo(
            f"(the log file {inst.log_path} is on the machine that ran it; its end, as stored:)",
            err=True,
        )
        click.echo(inst.log_tail, nl=False)
    else:
        click.echo(f"instance {instance_id} has not run yet ({inst.state})", err=True)


@instance.command(context_settings=CONTEXT_SETTINGS)
@click.argument("instance_id", metavar="ID", type=int)
@_project_option
@click.option("--no-run", is_flag=True, help="Only put it back to waiting; a scheduler runs it.")
def rerun(instance_id: int, project_dir: Path | None, no_run: bool) -> None:
    """Run instance ID again, with a fresh count of retries.

    It goes back to waiting and, unless --no-run, runs here and now (when its dependencies
    are met; else a scheduler runs it once they are). Exit 1 when the run fails.
    """
    from tidesync.scheduler import ops

    sched = _scheduler(project_dir)
    try:
        said, why = ops.rerun(sched, instance_id)
    except ConfigError as e:
        _cli.fail_config(e)
    click.echo(said, err=True)
    if no_run:
        return
    if why:
        click.echo(f"instance {instance_id} waits: {why}", err=True)
        return
    try:
        outcomes = sched.run_once(only=instance_id)
    except TidesyncError as e:
        _fail(e)
    sys.exit(_report_outcomes(sched, outcomes, False))


@instance.command(context_settings=CONTEXT_SETTINGS)
@click.argument("instance_id", metavar="ID", type=int)
@_project_option
def kill(instance_id: int, project_dir: Path | None) -> None:
    """Cancel instance ID: at once if waiting; a running job is cancelled by its scheduler
    within a heartbeat (it publishes nothing) and the instance ends 'cancelled'."""
    from tidesync.scheduler import ops

    _say_op(project_dir, ops.kill, instance_id)


def _say_op(project_dir: Path | None, op: Any, *args: Any) -> None:
    """Run one of :mod:`tidesync.scheduler.ops` and print what it says (exit 2 on a mistake)."""
    sched = _scheduler(project_dir)
    try:
        click.echo(op(sched, *args))
    except ConfigError as e:
        _cli.fail_config(e)


# ---------------------------------------------------------------------------------------------
# tidesync pause / resume


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("node")
@_project_option
def pause(node: str, project_dir: Path | None) -> None:
    """Hold back NODE's instances until `tidesync resume NODE`.

    Instances are still created; none starts (their downstream waits too). The pause is kept
    in the state store, so every scheduler sharing it sees it; a running instance goes on.
    """
    from tidesync.scheduler import ops

    _say_op(project_dir, ops.pause, node, datetime.now(UTC).timestamp())


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("node")
@_project_option
def resume(node: str, project_dir: Path | None) -> None:
    """Let NODE's instances run again after `tidesync pause NODE`.

    A node with paused: true in tidesync.yaml is resumed by editing the file (exit 2 here)."""
    from tidesync.scheduler import ops

    _say_op(project_dir, ops.resume, node)


# ---------------------------------------------------------------------------------------------
# tidesync backfill


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("node")
@click.option(
    "--from", "first", type=BizDate(), required=True, help="First business date (YYYYMMDD)."
)
@click.option("--to", "last", type=BizDate(), required=True, help="Last business date (YYYYMMDD).")
@click.option("--with-downstream", is_flag=True, help="Also every node that depends on NODE.")
@click.option(
    "--parallel",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Instances of one node run at once; 1 runs them in date order.",
)
@click.option("--no-run", is_flag=True, help="Only create the instances; a scheduler runs them.")
@_yes_option
@_project_option
@click.option("--json", "as_json", is_flag=True, help="Print the outcomes as JSON.")
def backfill(
    node: str,
    first: date,
    last: date,
    with_downstream: bool,
    parallel: int,
    no_run: bool,
    yes: bool,
    project_dir: Path | None,
    as_json: bool,
) -> None:
    """Run NODE for every business date from --from to --to (both included).

    Each bizdate gets the node's instances whose cyctime falls on the next day (one for a
    daily node, 24 for an hourly one), in a batch of their own beside the schedule's. With
    --with-downstream the nodes after NODE get theirs too, and wait for NODE's within the
    batch. More than scheduler.create_limit instances of a node is refused (exit 2) unless
    --yes. Exit 1 when an instance failed.
    """
    sched = _scheduler(project_dir, workers=None, yes=yes, announce=_say)
    try:
        batch, n = sched.create_backfill(
            node, first, last, with_downstream=with_downstream, parallel=parallel
        )
    except TidesyncError as e:
        _fail(e)
    click.echo(f"backfill {batch}: {n} instance(s)", err=True)
    if no_run:
        return
    sched.workers = max(sched.workers, parallel)
    try:
        outcomes = sched.run_once(batch=batch)
    except TidesyncError as e:
        _fail(e)
    left = sched.store.batch_summary(batch).get("waiting", 0)
    if left:
        click.echo(
            f"{left} instance(s) still waiting (an upstream failed, or its time is still to "
            "come: a scheduler runs it then): "
            f"tidesync instances --batch {batch}",
            err=True,
        )
    code = _report_outcomes(sched, outcomes, as_json)
    sys.exit(code or (1 if left else 0))


commands = [nodes, scheduler, instances, instance, backfill, pause, resume]
