"""``tidesync cdc``: look after the captures of change-data-capture jobs.

    tidesync cdc check JOB     what each server still lacks (with the settings to change), and
                               where each capture stands (retained windows, log held)
    tidesync cdc drop JOB      remove the captures: the PostgreSQL slot (it holds WAL on the
                               server) and the publication tidesync made; the job's saved positions

Both take the same ``-p``/``--cyctime`` options as ``tidesync run`` (the job file is read the
same way). ``check`` exits 1 when something is missing, ``drop`` when a capture could not be
removed.
"""

from __future__ import annotations

import importlib
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from tidesync.errors import TidesyncError, redact

__all__ = ["commands", "captures"]


def captures(job: Any) -> list[tuple[int, Any, Any]]:
    """The capture readers of a loaded job: (content index, reader, its store's module)."""
    from tidesync.connectors.sql.cdc import CaptureReader

    out = []
    for part in job.parts:
        if isinstance(part.reader, CaptureReader):
            out.append(
                (part.index, part.reader, importlib.import_module(type(part.reader).__module__))
            )
    return out


def _job(
    job: Path,
    params: Any,
    cyctime: Any,
    bizdate: Any,
    force: bool,
    connections: Any,
    project: Path | None,
) -> Any:
    from tidesync.cli_common import load as _load

    loaded = _load(job, params, cyctime, bizdate, force, connections, project)
    found = captures(loaded)
    if not found:
        raise click.UsageError(f"{job}: no content entry reads with postgresqlcdc or mysqlcdc")
    return loaded, found


def _show_history(reader: Any) -> str:
    from tidesync.connectors.sql.cdc import show_ms

    h = reader.stored()
    if h is None:
        return "no run committed yet"
    if not h.spans:
        return f"started {show_ms(h.created)}, no window yet"
    return (
        f"{len(h.spans)} window(s) retained, {show_ms(h.spans[0].start)} .. "
        f"{show_ms(h.spans[-1].end)}; next starts at {h.last_hi}"
    )


def _commands() -> list[click.Command]:
    from tidesync.cli_common import job_options

    @click.group()
    def cdc() -> None:
        """Change data capture: check a server's settings, drop a capture."""

    @cdc.command()
    @job_options
    def check(
        job: Path,
        params: Any,
        cyctime: datetime | None,
        bizdate: date | None,
        force_times: bool,
        connections: Path | None,
        project: Path | None,
    ) -> None:
        """Say what the servers of JOB's captures still lack, and where each capture stands."""
        loaded, found = _job(job, params, cyctime, bizdate, force_times, connections, project)
        missing = 0
        try:
            for i, reader, mod in found:
                where = f"content[{i}] {reader.kind} {reader.capture}"
                try:
                    problems = mod.check(reader)
                    state = mod.status(reader)
                except TidesyncError as e:
                    click.echo(f"{where}: {redact(str(e))}")
                    missing += 1
                    continue
                optional = [p for p in problems if "(optional)" in p]
                needed = [p for p in problems if p not in optional]
                click.echo(f"{where}: {'ready' if not needed else 'NOT READY'}")
                for p in needed:
                    click.echo(f"  missing: {p}")
                for p in optional:
                    click.echo(f"  advice: {p}")
                click.echo(f"  server: {', '.join(f'{k}={v}' for k, v in state.items())}")
                click.echo(f"  positions: {_show_history(reader)}")
                missing += len(needed)
        finally:
            for part in loaded.parts:
                part.reader.close()
            if loaded.state is not None:
                loaded.state.close()
        if missing:
            raise SystemExit(1)

    @cdc.command()
    @job_options
    def drop(
        job: Path,
        params: Any,
        cyctime: datetime | None,
        bizdate: date | None,
        force_times: bool,
        connections: Path | None,
        project: Path | None,
    ) -> None:
        """Remove JOB's captures from their servers and forget their saved positions; the next
        run starts a new capture."""
        loaded, found = _job(job, params, cyctime, bizdate, force_times, connections, project)
        failed = 0
        try:
            for i, reader, mod in found:
                where = f"content[{i}] {reader.kind} {reader.capture}"
                try:
                    done = mod.drop(reader) if hasattr(mod, "drop") else []
                    _forget(reader)
                except TidesyncError as e:
                    click.echo(f"{where}: {redact(str(e))}")
                    failed += 1
                    continue
                for d in done:
                    click.echo(f"{where}: {d}")
                click.echo(f"{where}: forgot the saved positions")
        finally:
            for part in loaded.parts:
                part.reader.close()
            if loaded.state is not None:
                loaded.state.close()
        if failed:
            raise SystemExit(1)

    return [cdc]


def _forget(reader: Any) -> None:
    from tidesync.state import POSITIONS

    ctx = reader.ctx
    if ctx.state is not None and ctx.state_key:
        ctx.state.delete(POSITIONS, ctx.state_key)


commands = _commands()
