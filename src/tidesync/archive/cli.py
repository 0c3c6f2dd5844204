"""Archive commands, added to ``tidesync`` by ``tidesync.cli``::

    tidesync archive run FILE [--policy NAME]... [--exit-when-idle SECONDS] [--close-open-cycles]
    tidesync archive check FILE
    tidesync archive status FILE [--policy NAME]... [--json]

Exit codes: 0 fine; 1 a policy failed (a broker refused it, the log or the target cannot be
written); 2 a bad policy file or bad usage.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import click

from tidesync import cli_common as _cli
from tidesync.cli_common import CONTEXT_SETTINGS
from tidesync.errors import ConfigError, TidesyncError, did_you_mean, redact

__all__ = ["commands"]

log = logging.getLogger("tidesync.archive")


def _fail(e: TidesyncError) -> None:
    if isinstance(e, ConfigError):
        _cli.fail_config(e)
    click.echo(f"error: {redact(str(e))}", err=True)
    sys.exit(1)


def _load(file: Path, connections: Path | None, names: tuple[str, ...]) -> list[Any]:
    from dataclasses import asdict

    from tidesync.archive.policy import load_policies
    from tidesync.connections import load_connections
    from tidesync.spec.secrets import register_document

    try:
        policies = load_policies(file, load_connections(connections))
    except ConfigError as e:
        _cli.fail_config(e)
    for p in policies:  # the brokers' and the target's credentials: masked in what is printed
        register_document([asdict(p.source), p.target.params])
    if names:
        known = [p.name for p in policies]
        bad = [
            f"--policy: {n!r} is not a policy of {file}{did_you_mean(n, known)} "
            f"(policies: {', '.join(known)})"
            for n in names
            if n not in known
        ]
        if bad:
            _cli.fail_config(ConfigError(bad))
        policies = [p for p in policies if p.name in names]
    return policies


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


class ClockSpec(click.ParamType):
    """``SCALE@ORIGIN``: time runs SCALE times faster from ORIGIN (epoch seconds)."""

    name = "SCALE@ORIGIN"

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        from tidesync.archive.timing import ScaledClock

        if not isinstance(value, str):
            return value
        scale, sep, origin = value.partition("@")
        try:
            return ScaledClock(
                float(scale), int(float(origin) * 1000) if sep else int(time.time() * 1000)
            )
        except ValueError:
            self.fail(f"{value!r} is not SCALE@ORIGIN (for example 600@1700000000)", param, ctx)


_file_arg = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
_policy_opt = click.option(
    "--policy", "names", multiple=True, metavar="NAME", help="Only this policy (repeatable)."
)
_conn_opt = click.option(
    "--connections",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Connections file (default: ./tidesync.yaml if present).",
)


@click.group(context_settings=CONTEXT_SETTINGS)
def archive() -> None:
    """Archive MQTT and NATS JetStream messages into time-partitioned files (docs/archive.md)."""


@archive.command(context_settings=CONTEXT_SETTINGS)
@_file_arg
@_policy_opt
@_conn_opt
@click.option(
    "--exit-when-idle",
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Stop once no message arrived for this long (batch use).",
)
@click.option(
    "--close-open-cycles",
    is_flag=True,
    help="At exit, publish the cycles still open as if they had ended.",
)
@click.option(
    "--progress-every",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How often to print the counters while running.",
)
@click.option("--clock", type=ClockSpec(), hidden=True)
def run(
    file: Path,
    names: tuple[str, ...],
    connections: Path | None,
    exit_when_idle: float | None,
    close_open_cycles: bool,
    progress_every: float,
    clock: Any,
) -> None:
    """Run the policies of FILE until SIGTERM or SIGINT (or --exit-when-idle).

    A stop leaves nothing behind: every message taken is in the log, acknowledged, and the
    cycles still open continue after a restart (or are published now, with --close-open-cycles).
    """
    from tidesync.archive.service import Archiver
    from tidesync.connections import load_connections

    policies = _load(file, connections, names)
    conns = load_connections(connections)
    archivers = [Archiver(p, conns, Path.cwd(), clock) for p in policies]
    opened: list[Any] = []
    try:
        for a in archivers:
            a.open()
            opened.append(a)
    except TidesyncError as e:
        for a in opened:
            a.close()
        _fail(e)
    stop = threading.Event()
    why = ["idle"]

    def on_signal(signum: int, frame: Any) -> None:
        why[0] = signal.Signals(signum).name
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    failure: BaseException | None = None
    try:
        for a in archivers:
            a.start()
            click.echo(f"policy {a.policy.name}: archiving {_describe(a.policy)}", err=True)
        last_progress = time.monotonic()
        before = {a.policy.name: a.state.counters.messages for a in archivers}
        while not stop.wait(0.1):
            failure = next(
                (x for a in archivers for x in (a.failure, a.source and a.source.failure) if x),
                None,
            )
            if failure is not None:
                why[0] = "failure"
                break
            now = time.monotonic()
            if exit_when_idle is not None and all(
                now - a.last_message >= exit_when_idle for a in archivers
            ):
                break
            if now - last_progress >= progress_every:
                for a in archivers:
                    n = a.state.counters.messages
                    rate = (n - before[a.policy.name]) / (now - last_progress)
                    before[a.policy.name] = n
                    click.echo(
                        f"policy {a.policy.name}: {_line(a)}, {rate:.0f} messages/s", err=True
                    )
                last_progress = now
    finally:
        for a in archivers:
            try:
                a.stop(close_open_cycles=close_open_cycles and failure is None)
            except TidesyncError as e:
                failure = failure or e
        for s, h in old.items():
            signal.signal(s, h)
    for a in archivers:
        left = a.oldest_open()
        tail = "" if not a.pending and left is None else "; open cycles stay in the log"
        click.echo(f"policy {a.policy.name}: stopped ({why[0]}): {_line(a)}{tail}", err=True)
    if failure is not None:
        _fail(failure if isinstance(failure, TidesyncError) else TidesyncError(str(failure)))
    sys.exit(0)


def _describe(p: Any) -> str:
    s = p.source
    what = (
        f"{s.url} topics {', '.join(s.topics)}"
        if s.type == "mqtt"
        else (f"{s.url} stream {s.stream} subject {s.subject}")
    )
    return f"{redact(what)} -> {redact(p.target.path)} every {p.cycle_hours}h by {p.generate_by}"


def _line(a: Any) -> str:
    c = a.state.counters
    dup = f" ({a.duplicates} redelivered copies dropped)" if a.duplicates else ""
    return (
        f"{c.messages} messages in{dup}, {c.rows} rows archived, {c.recycled} recycled, "
        f"{c.dirty} dirty, {c.files} files published, log {_size(a.log_bytes())}"
    )


@archive.command(context_settings=CONTEXT_SETTINGS)
@_file_arg
@_conn_opt
def check(file: Path, connections: Path | None) -> None:
    """Check FILE: every problem with its key path (exit 0 or 2); connects to nothing."""
    policies = _load(file, connections, ())
    click.echo(
        f"{file}: ok ({len(policies)} polic{'y' if len(policies) == 1 else 'ies'}: "
        f"{', '.join(p.name for p in policies)})"
    )


@archive.command(context_settings=CONTEXT_SETTINGS)
@_file_arg
@_policy_opt
@_conn_opt
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def status(file: Path, names: tuple[str, ...], connections: Path | None, as_json: bool) -> None:
    """Per policy, from its log: messages in, rows archived, recycled, dirty, files published,
    the oldest cycle not yet published, the log's size. Works while the policy runs."""
    from tidesync.archive.service import offline_status

    policies = _load(file, connections, names)
    try:
        rows = [offline_status(p) for p in policies]
    except TidesyncError as e:
        _fail(e)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        oldest = r["oldest_unpublished_cycle"] or "none"
        click.echo(
            f"{r['policy']}: {r['messages']} messages in, {r['rows']} rows archived, "
            f"{r['recycled']} recycled, {r['dirty']} dirty, {r['files']} files published, "
            f"oldest unpublished cycle {oldest}, log {_size(r['log_bytes'])}"
        )


commands = [archive]
