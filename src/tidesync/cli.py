"""The ``tidesync`` command line.

Exit codes: 0 success; 1 the job failed (error limit exceeded, source or target failure,
interrupted); 2 a bad job file or bad usage (one line per problem, no traceback).
"""

from __future__ import annotations

import gc
import json
import logging
import os
import signal
import sys
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from tidesync.cli_common import (
    CONTEXT_SETTINGS,
    Assignment,
    Params,
    executor_option,
    job_options,
    param_values,
    runtime,
    time_options,
)
from tidesync.cli_common import fail_config as _fail_config
from tidesync.cli_common import load as _load
from tidesync.errors import ConfigError, RedactingFilter, TidesyncError, redact, secret_scope

# numpy (which pyarrow loads) starts OpenBLAS with a busy-waiting thread per core: ~0.1 s of CPU
# per run taken from the readers and writers. tidesync does no linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

log = logging.getLogger("tidesync")


class _Commands(click.Group):
    """The command line's group: the commands of :data:`PARTS` are added when asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *(n for ns in PARTS.values() for n in ns)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            for module, names in PARTS.items():
                if cmd_name in names:
                    _add_part(self, module)
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands, context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="tidesync")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """tidesync: sync data between stores, full or incremental, on a schedule, atomically.

    \b
    Run a DataX or script-mode job file:
      tidesync run job.json -p filename='$[yyyymmddhh24mi]' --cyctime 20191106231500
    Check it without moving data:
      tidesync validate job.json
    See what a scheduling parameter gives:
      tidesync params '$[yyyymmddhh24miss-10/24/60]' --cyctime 20251101103000
    """
    if click.get_current_context().invoked_subcommand != "run":
        gc.enable()  # :func:`command` turned it off for a run's imports
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
    # the secrets a command meets stay masked until it has printed its last line
    click.get_current_context().with_resource(secret_scope())


@main.command(context_settings=CONTEXT_SETTINGS)
@job_options
@executor_option
@click.option(
    "--report",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the run report (JSON) here; dirty records go beside it.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Show a progress line (default: on a terminal only).",
)
@click.option(
    "--ray-address",
    envvar="RAY_ADDRESS",
    show_envvar=True,
    metavar="HOST:PORT",
    help="The Ray cluster of executor ray (default: a local Ray started for the run).",
)
def run(
    job: Path,
    params: Params,
    cyctime: datetime | None,
    bizdate: date | None,
    force_times: bool,
    connections: Path | None,
    project: Path | None,
    executor: str | None,
    report: Path | None,
    progress: bool | None,
    ray_address: str | None,
) -> None:
    """Run JOB: read, transform, write, and publish atomically.

    Exit 0 on success, 1 when the job fails (nothing is published), 2 for a bad job file
    (its report, with --report, has status 'invalid' and lists the errors).
    """
    from tidesync.engine.runner import Report, dirty_beside, run_job

    if report is not None:
        _check_writable(report)
    try:
        planned = _load(
            job, params, cyctime, bizdate, force_times, connections, project, executor, ray_address
        )
        _check_address(planned)
    except ConfigError as e:
        if report is not None:
            try:
                Report.invalid(str(job), e.problems).write(report)
                dirty_beside(report).unlink(missing_ok=True)  # an earlier run's, not this one's
            except OSError as oe:
                e = ConfigError([*e.problems, f"--report: cannot write {report}: {oe.strerror}"])
        _fail_config(e)
    if planned.ignored:
        click.echo(f"info: {planned.info()}", err=True)
    cancel = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        click.echo(
            f"\n{signal.Signals(signum).name}: stopping, nothing will be published", err=True
        )
        cancel.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    show = sys.stderr.isatty() if progress is None else progress
    try:
        rep = run_job(
            planned,
            report_path=report,
            cancel=cancel,
            progress=_progress_line if show else None,
            process_ends=_ENDS_PROCESS.is_set(),
        )
    except ConfigError as e:
        _fail_config(e)
    finally:
        _RUN_ENDED.set()
        for s, h in old.items():
            signal.signal(s, h)
        planned.state.close()
    if show:
        click.echo("\r\033[K", nl=False, err=True)
    click.echo(rep.summary(), err=True)
    sys.exit(0 if rep.status == "succeeded" else 1)


def _check_writable(report: Path) -> None:
    """Exit 2 before any data moves when the report cannot be written: once the data is
    published, a report that fails to be written is only a warning."""
    probe = report.with_name(f".{report.name}.{os.getpid()}.probe")
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        _fail_config(ConfigError(f"--report: cannot write {report}: {e.strerror or e}"))


def _check_address(job: Any) -> None:
    """--ray-address on the command line for a job that does not run on Ray is a mistake
    (RAY_ADDRESS in the environment is not: it serves the jobs that do)."""
    ctx = click.get_current_context()
    if (
        ctx.get_parameter_source("ray_address") == click.core.ParameterSource.COMMANDLINE
        and job.spec.settings.executor != "ray"
    ):
        job.state.close()
        raise ConfigError(
            f"--ray-address: the job runs on executor {job.spec.settings.executor!r}; "
            "add --executor ray or set setting.executor: ray"
        )


def _progress_line(rep: Any) -> None:
    click.echo(f"\r\033[K{rep.progress_line()}", nl=False, err=True)


@main.command(context_settings=CONTEXT_SETTINGS)
@job_options
@executor_option
def validate(
    job: Path,
    params: Params,
    cyctime: datetime | None,
    bizdate: date | None,
    force_times: bool,
    connections: Path | None,
    project: Path | None,
    executor: str | None,
) -> None:
    """Check JOB without moving data; report every problem with its key path (exit 0 or 2).

    Every key must be one tidesync reads; DataX keys it deliberately ignores are named on one
    ``info:`` line.
    """
    try:
        planned = _load(job, params, cyctime, bizdate, force_times, connections, project, executor)
    except ConfigError as e:
        _fail_config(e)
    planned.state.close()
    if planned.ignored:
        click.echo(f"info: {planned.info()}", err=True)
    n = len(planned.parts)
    click.echo(f"{job}: ok ({planned.spec.shape}, {n} reader/writer pair{'s' if n != 1 else ''})")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("expr")
@time_options
@click.option("-p", "--param", "params", type=Assignment(), multiple=True, help="User parameters.")
def params(
    expr: str, cyctime: datetime | None, bizdate: date | None, force_times: bool, params: Params
) -> None:
    """Print what EXPR evaluates to, e.g. '$[yyyymmddhh24mi]' or 'ds=${yyyymmdd-7}'.

    Times are the machine's wall clock. As in a run, --bizdate alone means the cyctime is the
    next day at 00:00, and --cyctime alone means the bizdate is the day before its day.

    \b
      tidesync params '$[yyyymmddhh24miss-10/24/60]' --cyctime 20251101103000
      20251101102000
    """
    from tidesync.spec.params import resolve_params, substitute

    try:
        rt = runtime(cyctime, bizdate, force_times)
        click.echo(substitute(expr, rt, resolve_params(param_values(params), rt), where="EXPR"))
    except ConfigError as e:
        _fail_config(e)


@main.command(context_settings=CONTEXT_SETTINGS)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List readers, writers and transformers, with the names they also answer to."""
    from tidesync.connectors.base import catalog
    from tidesync.transforms.base import transform_catalog

    conns, trans = catalog(), transform_catalog()
    if as_json:
        click.echo(json.dumps({"connectors": conns, "transformers": trans}, indent=2))
        return
    click.echo("connectors:")
    for c in conns:
        sides = "/".join(c["sides"]) or c["note"]
        click.echo(f"  {c['kind']:<12} {sides:<14} aliases: {', '.join(c['aliases']) or '-'}")
    click.echo("transformers:")
    for t in trans:
        click.echo(f"  {t['name']:<14} {t['summary']}")


#: the larger parts' command groups, by module, with the commands each adds: imported when one
#: of those commands runs or help lists them, not on every run (15-20 ms of start-up); a module
#: that is absent (a trimmed install) adds none (``test_cli``: these are the modules' own)
PARTS: dict[str, tuple[str, ...]] = {
    "tidesync.scheduler.cli": (
        "nodes",
        "scheduler",
        "instances",
        "instance",
        "backfill",
        "pause",
        "resume",
    ),
    "tidesync.cdc": ("cdc",),
    "tidesync.state.cli": ("state",),
    "tidesync.web.cli": ("ui",),
    "tidesync.archive.cli": ("archive",),
    "tidesync.recovery": ("recover",),
}


def _add_part(group: click.Group, module: str) -> None:
    """Add the commands of ``module`` (its ``commands``) to ``group``, if it is installed."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module or (e.name and module.startswith(e.name)):
            return
        raise
    for cmd in getattr(mod, "commands", []):
        group.add_command(cmd)


class _Interrupted(BaseException):
    """SIGINT or SIGTERM before a run could take over the signal (while loading, connecting)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


#: set once a run has ended: a signal then changes nothing (the outcome is being printed)
_RUN_ENDED = threading.Event()
#: set by :func:`command`: this process ends after its run (not a test calling ``main``)
_ENDS_PROCESS = threading.Event()


def _stop_early(signum: int, frame: Any) -> None:
    if not _RUN_ENDED.is_set():
        raise _Interrupted(signum)


def command() -> None:
    """The ``tidesync`` command: :func:`entry`, and after a run a quick end of the process.

    Once ``tidesync run`` has ended (its data committed or rolled back, its connections and
    state store closed, its report written), the interpreter's own teardown would free every
    module of pyarrow, numpy, psycopg and duckdb one object at a time: 0.06-0.1 s of every run
    (issue 17), which a scheduled 5-minute window pays each time. So the process runs its
    ``atexit`` handlers, collects cyclic garbage (whose finalizers would run at a normal exit),
    flushes its output and ends with ``os._exit``. Every other command ends the usual way.

    The cyclic collector is off until then: a run's imports (pyarrow, numpy, psycopg, the
    connectors) make some 90,000 objects, and the collections they set off, each looking at all
    made so far, cost 25-40 ms of a 0.3 s start-up. :func:`main` turns it on again for every
    other command (the scheduler's daemon lives long); a run turns it on once planned, its
    imports frozen out of its reach (``run_job(process_ends=True)``)."""
    import gc

    gc.disable()
    _ENDS_PROCESS.set()
    try:
        entry()
    except SystemExit as e:
        if not _RUN_ENDED.is_set():
            raise
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    else:
        if not _RUN_ENDED.is_set():
            return
        code = 0
    _end_process(code)


def _end_process(code: int) -> None:
    import atexit

    try:
        gc.collect()
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def entry() -> None:
    # First of all, so that a signal in the first second (imports, parsing, connecting) ends the
    # process with a message and exit code 1, not -15 in silence or click's bare "Aborted!".
    # ``run`` replaces the handlers while its job runs (cancel, abort, nothing published).
    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, _stop_early)
    # the secrets the command met stay known (its own scope hands them here) until its error is
    # printed: an error escaping the command is printed after the command's scope has ended
    with secret_scope():
        try:
            main()
        except _Interrupted as e:
            click.echo(
                f"\n{signal.Signals(e.signum).name}: stopped before any data moved; "
                "nothing was published",
                err=True,
            )
            sys.exit(1)
        except TidesyncError as e:  # a user-facing failure that escaped a command
            click.echo(f"error: {redact(str(e))}", err=True)
            sys.exit(2 if isinstance(e, ConfigError) else 1)
        except Exception:  # a bug: its traceback, as Python would print it, masked
            import traceback

            click.echo(redact(traceback.format_exc()).rstrip("\n"), err=True)
            sys.exit(1)
