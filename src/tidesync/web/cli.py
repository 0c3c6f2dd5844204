"""``tidesync ui``: the operations page, added to ``tidesync`` by ``tidesync.cli``.

Exit codes: 0 stopped by SIGTERM or Ctrl-C; 1 it cannot listen (the port is taken) or the
state store is unreachable; 2 a bad project file or usage (a non-loopback --host without
TIDESYNC_UI_TOKEN).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from tidesync import cli_common as _cli
from tidesync.cli_common import CONTEXT_SETTINGS
from tidesync.errors import ConfigError, TidesyncError, redact
from tidesync.scheduler.cli import _project_option

__all__ = ["commands", "start_ui", "ui_options"]

TOKEN_ENV = "TIDESYNC_UI_TOKEN"


def ui_options(prefix: str = "") -> Any:
    """--host and --port (``--ui-host``/``--ui-port`` with ``prefix='ui-'``)."""

    def wrap(f: Any) -> Any:
        f = click.option(
            f"--{prefix}port",
            type=click.IntRange(0, 65535),
            default=8765,
            show_default=True,
            help="Port of the operations page (0: any free port).",
        )(f)
        return click.option(
            f"--{prefix}host",
            default="127.0.0.1",
            show_default=True,
            help="Address to listen on. Another than loopback needs TIDESYNC_UI_TOKEN set.",
        )(f)

    return wrap


def start_ui(project_dir: Path | None, host: str, port: int, *, daemon: Any = None) -> Any:
    """Start the page in the background and print its URL; exits (2, 1) on a refusal."""
    from tidesync.web.app import App
    from tidesync.web.server import UiServer, is_loopback

    token = os.environ.get(TOKEN_ENV, "").strip() or None
    if not is_loopback(host) and token is None:
        _cli.fail_config(
            ConfigError(
                f"--host {host}: the page would be reachable from other machines; set "
                f"{TOKEN_ENV} to a long random token first (and put it behind TLS: docs/ui.md)"
            )
        )
    try:
        app = App(project_dir, token, daemon=daemon)
    except ConfigError as e:
        _cli.fail_config(e)
    except TidesyncError as e:
        click.echo(f"error: {redact(str(e))}", err=True)
        sys.exit(1)
    try:
        server = UiServer(app, host, port)
    except OSError as e:
        app.close()
        click.echo(f"error: --port: cannot listen on {host}:{port}: {e.strerror}", err=True)
        sys.exit(1)
    app.cookie_name = f"tidesync_ui_{server.port}"
    server.start()
    click.echo(f"tidesync ui: open {server.url}", err=False)
    sys.stdout.flush()
    return server


@click.command(context_settings=CONTEXT_SETTINGS)
@_project_option
@ui_options()
def ui(project_dir: Path | None, host: str, port: int) -> None:
    """Serve the operations page: nodes, instances, logs, reruns and backfills.

    It reads and writes the project's state store, as the scheduler and the other commands
    do. The URL it prints carries a login token (set TIDESYNC_UI_TOKEN to fix it); every
    request without the token is refused. Runs until SIGTERM or Ctrl-C; a rerun or backfill
    started from the page runs in this process (use `tidesync scheduler start --ui` to have
    the daemon run them).
    """
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        click.echo(f"{signal.Signals(signum).name}: stopping", err=True)
        stop.set()

    for s in (signal.SIGINT, signal.SIGTERM):  # before the URL is out: a stop from then on is clean
        signal.signal(s, on_signal)
    server = start_ui(project_dir, host, port)
    while not stop.wait(0.5):
        pass
    server.stop()


commands = [ui]
