"""``tidesync state``: see and reset what a project keeps between runs::

    tidesync state list [--ns positions] [--json]       every saved value, by namespace and key
    tidesync state show TARGET [--ns positions]          one job's (or key's) saved values
    tidesync state reset TARGET [--ns positions] [-y]    forget them: the next run starts over

TARGET is a job file (its identity: ``setting.stateKey``, else its path in the project), a
key (``jobs/orders.json#0``, ``node:iot_sync``, ``orders``) or a key's prefix before ``#``.
The project is found as ``tidesync run`` finds it (``--project`` to name it). Exit codes: 0
fine; 1 the store is unreachable; 2 bad usage, or nothing saved under TARGET.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn
from zoneinfo import ZoneInfo

import click

from tidesync import cli_common as _cli
from tidesync.cli_common import CONTEXT_SETTINGS
from tidesync.errors import ConfigError, TidesyncError, redact
from tidesync.state import POSITIONS, Entry, StateStore

__all__ = ["commands"]


def _options(f: Any) -> Any:
    f = click.option(
        "--ns",
        default=POSITIONS,
        show_default=True,
        help="Namespace: positions (cursors, checkpoints of jobs), or another part's.",
    )(f)
    return click.option(
        "--project",
        type=click.Path(path_type=Path),
        envvar="TIDESYNC_PROJECT",
        show_envvar=True,
        help="Project folder (default: found from the job file's folder, or this one, upward).",
    )(f)


def _open(target: str | None, project: Path | None) -> tuple[StateStore, list[str], ZoneInfo]:
    """The project's store, the keys ``target`` stands for, and the zone to show times in."""
    from tidesync.project import find_project
    from tidesync.spec.job import local_timezone
    from tidesync.state import open_state

    job = Path(target) if target and Path(target).is_file() else None
    proj = find_project(job, project)
    keys = _identities(job, proj.root) if job is not None else [target] if target else []
    return open_state(proj.state, proj.root), keys, ZoneInfo(proj.timezone or local_timezone())


def _identities(job: Path, root: Path) -> list[str]:
    """A job file's identity in the state: its literal ``setting.stateKey``, else its path."""
    from tidesync.engine.runner import file_identity
    from tidesync.spec.job import load_document

    doc = load_document(job)
    key = None
    if isinstance(doc, dict):
        for setting in (
            (doc.get("job") or {}).get("setting") if isinstance(doc.get("job"), dict) else None,
            doc.get("setting"),
            (doc.get("configuration") or {}).get("setting")
            if isinstance(doc.get("configuration"), dict)
            else None,
        ):
            if isinstance(setting, dict) and isinstance(setting.get("stateKey"), str):
                key = setting["stateKey"].strip()
    if key and ("${" in key or "$[" in key):
        raise ConfigError(
            f"{job}: setting.stateKey {key!r} holds parameters; name the key itself "
            "(`tidesync state list` shows the keys)"
        )
    return [key or file_identity(job, root)]


def _matching(store: StateStore, ns: str, keys: list[str]) -> list[Entry]:
    out: dict[str, Entry] = {}
    for k in keys:
        for e in store.list(ns, prefix=k):
            if e.key == k or e.key.startswith(k + "#"):
                out[e.key] = e
    return [out[k] for k in sorted(out)]


def _when(e: Entry, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(e.updated_at, UTC).astimezone(tz).isoformat(" ", "seconds")


def _brief(value: Any, width: int = 100) -> str:
    """A value on one line; saved positions as ``split: value`` (a cursor's value alone)."""
    saved = value.get("positions") if isinstance(value, dict) else None
    if isinstance(saved, dict):
        parts = []
        for label, pos in saved.items():
            shown = pos["value"] if isinstance(pos, dict) and "value" in pos else pos
            parts.append(f"{label}: {json.dumps(shown, ensure_ascii=False, sort_keys=True)}")
        text = "; ".join(parts)
    else:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= width else text[: width - 3] + "..."


def _fail(e: TidesyncError) -> NoReturn:
    if isinstance(e, ConfigError):
        _cli.fail_config(e)
    click.echo(f"error: {redact(str(e))}", err=True)
    sys.exit(2 if isinstance(e, ConfigError) else 1)


@click.group(context_settings=CONTEXT_SETTINGS)
def state() -> None:
    """See and reset what the project keeps between runs (cursors, checkpoints)."""


@state.command("list", context_settings=CONTEXT_SETTINGS)
@_options
@click.option("--all", "every", is_flag=True, help="Every namespace, not only --ns.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(ns: str, project: Path | None, every: bool, as_json: bool) -> None:
    """List saved values: namespace, key, version, when written, value."""
    with _store(None, project) as (store, _, tz):
        try:
            entries = store.list(None if every else ns)
        except TidesyncError as err:
            _fail(err)
    if as_json:
        rows = [
            {
                "ns": e.ns,
                "key": e.key,
                "version": e.version,
                "updated_at": _when(e, tz),
                "value": e.value,
            }
            for e in entries
        ]
        click.echo(json.dumps({"state": store.describe(), "entries": rows}, indent=2))
        return
    click.echo(f"state: {store.describe()}", err=True)
    if not entries:
        click.echo(f"nothing saved{'' if every else f' in namespace {ns}'}", err=True)
    for e in entries:
        click.echo(f"{e.ns:<10} {e.key:<40} v{e.version:<4} {_when(e, tz)}  {_brief(e.value)}")


@state.command(context_settings=CONTEXT_SETTINGS)
@click.argument("target")
@_options
def show(target: str, ns: str, project: Path | None) -> None:
    """Show what is saved for TARGET: a job file, a key, or a key's prefix before '#'."""
    with _store(target, project) as (store, keys, tz):
        entries = _found(store, ns, keys)
    for e in entries:
        click.echo(f"{e.key} (version {e.version}, written {_when(e, tz)})")
        click.echo(json.dumps(e.value, indent=2, ensure_ascii=False, sort_keys=True))


@state.command(context_settings=CONTEXT_SETTINGS)
@click.argument("target")
@_options
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
def reset(target: str, ns: str, project: Path | None, yes: bool) -> None:
    """Forget what is saved for TARGET: its next run starts over (reads from the start)."""
    with _store(target, project) as (store, keys, _):
        entries = _found(store, ns, keys)
        for e in entries:
            click.echo(f"{ns} {e.key}: {_brief(e.value)}", err=True)
        if not yes:
            if not sys.stdin.isatty():
                _cli.fail_config(
                    ConfigError("state reset: add --yes to forget these (no terminal)")
                )
            click.confirm(
                f"forget {len(entries)} saved value(s) in {store.describe()}?", abort=True
            )
        try:
            gone = sum(store.delete(ns, e.key) for e in entries)
        except TidesyncError as err:
            _fail(err)
    click.echo(f"forgot {gone} saved value(s); the next run starts over", err=True)


@contextmanager
def _store(
    target: str | None, project: Path | None
) -> Iterator[tuple[StateStore, list[str], ZoneInfo]]:
    try:
        opened = _open(target, project)
    except TidesyncError as err:
        _fail(err)
    try:
        yield opened
    finally:
        opened[0].close()


def _found(store: StateStore, ns: str, keys: list[str]) -> list[Entry]:
    """The entries of ``keys`` (exit 2 naming the store when there are none)."""
    try:
        entries = _matching(store, ns, keys)
    except TidesyncError as err:
        _fail(err)
    if not entries:
        _nothing(store, ns, keys)
    return entries


def _nothing(store: StateStore, ns: str, keys: list[str]) -> NoReturn:
    click.echo(
        f"error: state: nothing saved under {', '.join(map(repr, keys))} in namespace {ns} of "
        f"{store.describe()}; `tidesync state list` shows what is",
        err=True,
    )
    sys.exit(2)


commands = [state]
