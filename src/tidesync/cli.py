"""The ``tidesync`` command line.

Exit codes: 0 success; 1 the job failed (error limit exceeded, source or target failure,
interrupted); 2 a bad job file or bad usage (one line per problem, no traceback).
"""

from __future__ import annotations

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

from tidesync.errors import ConfigError, TidesyncError, redact

# numpy (which pyarrow loads) starts OpenBLAS with a busy-waiting thread per core: ~0.1 s of CPU
# per run taken from the readers and writers. tidesync does no linear algebra.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CycTime(click.ParamType):
    """A scheduled time, ``YYYYMMDDHHMMSS`` (``YYYYMMDDHHMM`` and ``YYYYMMDD`` are accepted)."""

    name = "YYYYMMDDHHMMSS"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        s = str(value).strip()
        for fmt in (
            "%Y%m%d%H%M%S",
            "%Y%m%d%H%M",
            "%Y%m%d",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%dT%H:%M:%S",
        ):
            try:
                return datetime.strptime(s, fmt)
            except ValueError:
                continue
        self.fail(f"{value!r} is not a time such as 20191106231500 (YYYYMMDDHHMMSS)", param, ctx)


class BizDate(click.ParamType):
    """A business date, ``YYYYMMDD``."""

    name = "YYYYMMDD"

    def convert(self, value: Any, param: Any, ctx: Any) -> date:
        if isinstance(value, date):
            return value
        for fmt in ("%Y%m%d", "%Y-%m-%d"):
            try:
                return datetime.strptime(str(value).strip(), fmt).date()
            except ValueError:
                continue
        self.fail(f"{value!r} is not a date such as 20161114 (YYYYMMDD)", param, ctx)


class Assignment(click.ParamType):
    """``NAME=VALUE``; the value may be an expression such as ``$[yyyymmddhh24mi]``."""

    name = "NAME=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[str, str]:
        if isinstance(value, tuple):
            return value
        name, sep, val = str(value).partition("=")
        if not sep or not name.strip().replace(".", "_").replace("-", "_").isidentifier():
            self.fail(
                f"{value!r} is not NAME=VALUE (for example -p filename='$[yyyymmddhh24mi]')",
                param,
                ctx,
            )
        return name.strip(), val


def _runtime(cyctime: datetime | None, bizdate: date | None) -> Any:
    from tidesync.spec.params import RunTime

    return RunTime.of(cyctime, bizdate)


def _fail_config(e: ConfigError) -> None:
    for line in e.problems:
        click.echo(f"error: {redact(line)}", err=True)
    sys.exit(2)


@click.group(context_settings=CONTEXT_SETTINGS)
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
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(
        level=max(level, logging.DEBUG), format="%(levelname)s %(name)s: %(message)s"
    )


_job_options = [
    click.argument("job", type=click.Path(dir_okay=False, path_type=Path)),
    click.option(
        "-p",
        "--param",
        "params",
        type=Assignment(),
        multiple=True,
        help="Set ${NAME} in the job; repeatable. The value may be a time expression.",
    ),
    click.option("--cyctime", type=CycTime(), help="Scheduled time of this run (default: now)."),
    click.option(
        "--bizdate", type=BizDate(), help="Business date (default: the day before cyctime's day)."
    ),
    click.option(
        "--connections",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Connections file (default: ./tidesync.yaml if present).",
    ),
]


def job_options(f: Any) -> Any:
    for opt in reversed(_job_options):
        f = opt(f)
    return f


def _load(
    job: Path,
    params: tuple[tuple[str, str], ...],
    cyctime: datetime | None,
    bizdate: date | None,
    connections: Path | None,
) -> Any:
    from tidesync.connections import load_connections
    from tidesync.engine.runner import load_job
    from tidesync.spec.params import resolve_params
    from tidesync.state import open_state

    rt = _runtime(cyctime, bizdate)
    values = resolve_params(dict(params), rt)
    return load_job(
        job, values, rt, connections=load_connections(connections), state=open_state(Path.cwd())
    )


@main.command(context_settings=CONTEXT_SETTINGS)
@job_options
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
def run(
    job: Path,
    params: tuple[tuple[str, str], ...],
    cyctime: datetime | None,
    bizdate: date | None,
    connections: Path | None,
    report: Path | None,
    progress: bool | None,
) -> None:
    """Run JOB: read, transform, write, and publish atomically.

    Exit 0 on success, 1 when the job fails (nothing is published), 2 for a bad job file.
    """
    from tidesync.engine.runner import run_job

    try:
        planned = _load(job, params, cyctime, bizdate, connections)
    except ConfigError as e:
        _fail_config(e)
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
            planned, report_path=report, cancel=cancel, progress=_progress_line if show else None
        )
    except ConfigError as e:
        _fail_config(e)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if show:
        click.echo("\r\033[K", nl=False, err=True)
    click.echo(rep.summary(), err=True)
    sys.exit(0 if rep.status == "succeeded" else 1)


def _progress_line(rep: Any) -> None:
    rate = rep.records_read / rep.elapsed_s if rep.elapsed_s else 0
    click.echo(
        f"\r\033[K{rep.records_read:,} rows read, {rep.records_written:,} written, "
        f"{rep.bytes_read / 1048576:,.1f} MiB, {rate:,.0f} rows/s, {rep.dirty_records} dirty",
        nl=False,
        err=True,
    )


@main.command(context_settings=CONTEXT_SETTINGS)
@job_options
def validate(
    job: Path,
    params: tuple[tuple[str, str], ...],
    cyctime: datetime | None,
    bizdate: date | None,
    connections: Path | None,
) -> None:
    """Check JOB without moving data; report every problem with its key path (exit 0 or 2)."""
    try:
        planned = _load(job, params, cyctime, bizdate, connections)
    except ConfigError as e:
        _fail_config(e)
    warnings = [
        w
        for part in planned.parts
        for w in part.reader.p.unknown_keys() + part.writer.p.unknown_keys()
    ]
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    n = len(planned.parts)
    click.echo(f"{job}: ok ({planned.spec.shape}, {n} reader/writer pair{'s' if n != 1 else ''})")


@main.command(context_settings=CONTEXT_SETTINGS)
@click.argument("expr")
@click.option("--cyctime", type=CycTime(), help="Scheduled time (default: now).")
@click.option(
    "--bizdate", type=BizDate(), help="Business date (default: the day before cyctime's day)."
)
@click.option("-p", "--param", "params", type=Assignment(), multiple=True, help="User parameters.")
def params(
    expr: str, cyctime: datetime | None, bizdate: date | None, params: tuple[tuple[str, str], ...]
) -> None:
    """Print what EXPR evaluates to, e.g. '$[yyyymmddhh24mi]' or 'ds=${yyyymmdd-7}'.

    \b
      tidesync params '$[yyyymmddhh24miss-10/24/60]' --cyctime 20251101103000
      20251101102000
    """
    from tidesync.spec.params import resolve_params, substitute

    try:
        rt = _runtime(cyctime, bizdate)
        click.echo(substitute(expr, rt, resolve_params(dict(params), rt), where="EXPR"))
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


def _register_extensions() -> None:
    """Command groups of the larger parts (scheduler, archive), when present."""
    import importlib

    for module, attr in (
        ("tidesync.scheduler.cli", "commands"),
        ("tidesync.archive.cli", "commands"),
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module or (e.name and module.startswith(e.name)):
                continue
            raise
        for cmd in getattr(mod, attr, []):
            main.add_command(cmd)


_register_extensions()


def entry() -> None:
    try:
        main()
    except TidesyncError as e:  # a user-facing failure that escaped a command
        click.echo(f"error: {redact(str(e))}", err=True)
        sys.exit(2 if isinstance(e, ConfigError) else 1)
