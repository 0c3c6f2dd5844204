"""What the command line's parts share: click settings and parameter types (``CycTime``,
``BizDate``, ``Assignment``), the job options of ``run``/``validate`` (and of the commands that
take a job: ``recover``, ``cdc``), loading a job as they do, and the one-line-per-problem exit.

``tidesync.cli`` and every command group (scheduler, state, cdc, archive, web, recover) import
this module; none of them imports ``tidesync.cli``, which registers their commands, so there is
no import cycle.
"""

from __future__ import annotations

import logging
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from tidesync.errors import ConfigError, redact

__all__ = [
    "CONTEXT_SETTINGS",
    "JOB_OPTIONS",
    "Assignment",
    "BizDate",
    "CycTime",
    "Params",
    "fail_config",
    "job_options",
    "load",
    "param_values",
    "runtime",
    "time_options",
]

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
log = logging.getLogger("tidesync")


class CycTime(click.ParamType):
    """A scheduled time: ``YYYYMMDD[HH[MM[SS]]]`` or ISO ``YYYY-MM-DD[ HH:MM[:SS][+08:00]]``,
    read by its length (``tidesync.spec.params.parse_time_arg``)."""

    name = "YYYYMMDDHHMMSS"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        from tidesync.spec.params import parse_time_arg

        try:
            return parse_time_arg(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


class BizDate(click.ParamType):
    """A business date, ``YYYYMMDD`` or ``YYYY-MM-DD``."""

    name = "YYYYMMDD"

    def convert(self, value: Any, param: Any, ctx: Any) -> date:
        from tidesync.spec.params import parse_date_arg

        try:
            return parse_date_arg(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


Params = tuple[tuple[tuple[str, str], ...], ...]  # -p values, each one or more (name, value)


class Assignment(click.ParamType):
    """``NAME=VALUE`` (the value may be an expression such as ``$[yyyymmddhh24mi]``), or
    DataX's ``-Dname=value -Dother=value`` in one string, as ``datax.py -p`` takes it."""

    name = "NAME=VALUE"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[tuple[str, str], ...]:
        if isinstance(value, tuple):
            return value
        text = str(value)
        if text.lstrip().startswith("-D"):
            from tidesync.spec.params import parse_datax_properties

            try:
                return tuple(parse_datax_properties(text, where="").items())
            except ConfigError as e:
                self.fail("; ".join(e.problems), param, ctx)
        name, sep, val = text.partition("=")
        if not sep or not name.strip().replace(".", "_").replace("-", "_").isidentifier():
            self.fail(
                f"{value!r} is not NAME=VALUE (for example -p filename='$[yyyymmddhh24mi]', "
                'or DataX\'s -p "-Dbizdate=20161115 -Dname=x")',
                param,
                ctx,
            )
        return ((name.strip(), val),)


def param_values(params: Params) -> dict[str, str]:
    """The -p values as one mapping; a name given twice is an error (which one was meant?)."""
    values: dict[str, str] = {}
    problems = []
    for group in params:
        for name, value in group:
            if name in values and values[name] != value:
                problems.append(
                    f"-p: parameter {name!r} is set twice ({values[name]!r} and {value!r}); "
                    "keep one"
                )
            values[name] = value
    if problems:
        raise ConfigError(problems)
    return values


def runtime(
    cyctime: datetime | None, bizdate: date | None, force: bool, tz: str | None = None
) -> Any:
    from tidesync.spec.params import RunTime

    if force and (cyctime is None or bizdate is None):
        raise ConfigError("--force-times: give both --cyctime and --bizdate, or drop it")
    return RunTime.of(cyctime, bizdate, tz=tz, force=force)


TIME_HELP = (
    "Scheduled time of this run: YYYYMMDD[HH[MM[SS]]] or YYYY-MM-DD[ HH:MM[:SS]][+08:00]. "
    "Default: the day after --bizdate at 00:00, else now."
)
DATE_HELP = "Business date, YYYYMMDD or YYYY-MM-DD. Default: the day before the cyctime's day."
FORCE_HELP = (
    "Use --cyctime and --bizdate as given even though the bizdate is not the day before the "
    "cyctime's day."
)


def time_options(f: Any) -> Any:
    """--cyctime, --bizdate and --force-times, as run, validate and params take them."""
    f = click.option("--force-times", is_flag=True, help=FORCE_HELP)(f)
    f = click.option("--bizdate", type=BizDate(), help=DATE_HELP)(f)
    return click.option("--cyctime", type=CycTime(), help=TIME_HELP)(f)


def fail_config(e: ConfigError) -> None:
    for line in e.problems:
        # one line per problem, even when a value quoted in it holds a line break
        one = "".join(c if c.isprintable() else repr(c)[1:-1] for c in redact(line))
        click.echo(f"error: {one}", err=True)
    sys.exit(2)


JOB_OPTIONS: list[Any] = [
    click.argument("job", type=click.Path(dir_okay=False, path_type=Path)),
    click.option(
        "-p",
        "--param",
        "params",
        type=Assignment(),
        multiple=True,
        help="Set ${NAME} in the job; repeatable. The value may be a time expression. "
        'DataX\'s -p "-Dname=value -Dother=value" is read too.',
    ),
    time_options,
    click.option(
        "--connections",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Connections file (default: the project's tidesync.yaml).",
    ),
    click.option(
        "--project",
        type=click.Path(path_type=Path),
        envvar="TIDESYNC_PROJECT",
        show_envvar=True,
        help="Project folder: its state store and connections (default: the first folder "
        "holding tidesync.yaml or .tidesync/ from the job file's folder up; else that folder).",
    ),
]


def job_options(f: Any) -> Any:
    for opt in reversed(JOB_OPTIONS):
        f = opt(f)
    return f


#: ``run`` and ``validate``: where the tasks run, whatever the job says
executor_option = click.option(
    "--executor",
    metavar="NAME",
    help="Where the tasks run, instead of the job's setting.executor: local or ray.",
)


def load(
    job: Path,
    params: Params,
    cyctime: datetime | None,
    bizdate: date | None,
    force_times: bool,
    connections: Path | None,
    project: Path | None,
    executor: str | None = None,
    ray_address: str | None = None,
) -> Any:
    from tidesync.connectors.publish import hook

    hook("cli.load")  # tests signal a run here, before it has loaded anything heavy
    from tidesync.connections import load_connections
    from tidesync.engine.runner import load_job
    from tidesync.project import find_project
    from tidesync.spec.job import declared_timezone, load_document
    from tidesync.spec.params import resolve_params
    from tidesync.state import open_state

    # The job's wall-clock zone: "now" and a --cyctime with an offset are read in it.
    given = param_values(params)
    rt = runtime(cyctime, bizdate, force_times, declared_timezone(load_document(job), given))
    values = resolve_params(given, rt)
    proj = find_project(job, project)
    log.info("project: %s", proj.describe())
    conns = connections or proj.file
    return load_job(
        job,
        values,
        rt,
        connections=load_connections(conns) if conns else {},
        state=open_state(proj.state, proj.root),
        root=proj.root,
        executor=executor,
        executor_options={"address": ray_address} if ray_address else None,
        raw_params=given,
    )
