"""``tidesync recover TARGET|JOB``: finish or remove what killed runs left behind, on demand.

Every run does the same for its own target before it writes (see
:mod:`tidesync.connectors.publish`); this command is for a target no run will touch soon, or to
see what is there. It

* completes the publishes a dead run had decided (its journal written) but not finished;
* puts back a lake partition a dead run left between its two renames;
* removes dead runs' staging: ``.tidesync-tmp-RUN/`` folders and objects, ``.NAME.tidesync/RUN/``
  folders beside a target, unfinished multipart uploads, the data files an Iceberg run wrote and
  never committed;
* leaves alone whatever a live run (this host: its process; another host: a heartbeat younger
  than ten minutes) still owns, and says so.

TARGET is a folder (``out/2024``, ``file://...``) or a bucket folder (``s3://bucket/out``, with
``--datasource`` or the AWS environment for credentials); JOB is a job file, whose writers'
targets are recovered (Iceberg tables need the job: their catalog says what was committed).
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import click

from tidesync import cli_common as _cli
from tidesync.cli_common import CONTEXT_SETTINGS
from tidesync.errors import ConfigError, TidesyncError, redact

__all__ = ["commands", "recover_job", "recover_location"]

JOB_SUFFIXES = (".json", ".yaml", ".yml")


def recover_job(job: Any) -> list[Any]:
    """What recovering the writers of a planned job found (``Finding`` list)."""
    out: list[Any] = []
    for part in job.parts:
        fn = getattr(part.writer, "recover", None)
        if fn is not None:
            out += fn()
    return out


def recover_location(target: str, params: dict[str, Any], connections: dict[str, Any]) -> list[Any]:
    """What recovering a folder or bucket folder found: the file writer's staging and journals
    in it, and the staging beside it (file and hive lake writers)."""
    import pyarrow.fs as pafs

    from tidesync.connectors.base import Context
    from tidesync.connectors.file.conn import _edge, filesystem_for
    from tidesync.connectors.file.stage import Area

    ctx = Context(base_dir=Path.cwd(), where="TARGET", connections=connections)
    fs, root = filesystem_for(target, params, ctx)
    edge = _edge(fs)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.File:
        raise ConfigError(
            f"TARGET: {target} is a file; give the folder a job writes to, or the job"
        )
    if info.type == pafs.FileType.NotFound and edge is None:
        sibling = Path(root).parent / f".{Path(root).name}.tidesync"
        if not sibling.exists():
            raise ConfigError(f"TARGET: {target}: no such folder")
    return Area(fs, root.rstrip("/") or "/", edge).clean()


def _job_options(f: Any) -> Any:
    """``run``'s -p, --cyctime, --bizdate, --force-times, --connections and --project."""
    for opt in reversed(_cli.JOB_OPTIONS[1:]):
        f = opt(f)
    return f


@click.command(context_settings=CONTEXT_SETTINGS)
@click.argument("target")
@_job_options
@click.option("--datasource", help="TARGET in a bucket: the connection holding its credentials.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def recover(
    target: str,
    params: Any,
    cyctime: datetime | None,
    bizdate: date | None,
    force_times: bool,
    connections: Path | None,
    project: Path | None,
    datasource: str | None,
    as_json: bool,
) -> None:
    """Finish or remove what killed runs left at TARGET (a folder or s3:// folder) or at the
    targets of JOB (a job file): decided publishes are completed, dead runs' staging removed.

    \b
      tidesync recover out/orders
      tidesync recover s3://archive/instance/table --datasource archive
      tidesync recover job.json --bizdate 20240101
    """
    from tidesync.connections import load_connections
    from tidesync.project import find_project
    from tidesync.spec.secrets import register_document

    register_document(target)  # an s3://KEY:SECRET@... TARGET is refused, its secret masked
    try:
        is_job = target.lower().endswith(JOB_SUFFIXES) and Path(target).is_file()
        if is_job:
            job = _cli.load(
                Path(target), params, cyctime, bizdate, force_times, connections, project
            )
            try:
                found = recover_job(job)
            finally:
                job.state.close()
        else:
            extra = {"datasource": datasource} if datasource else {}
            conns = connections or find_project(None, project).file
            found = recover_location(target, extra, load_connections(conns) if conns else {})
    except ConfigError as e:
        _cli.fail_config(e)
    except (TidesyncError, OSError) as e:
        click.echo(f"error: {redact(str(e))}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps([f.__dict__ for f in found], indent=2))
        return
    for f in found:
        click.echo(redact(f.line()))
    done = [f for f in found if f.action != "kept"]
    if not done:
        click.echo(f"{redact(target)}: nothing to recover" + (" (live runs kept)" if found else ""))


commands = [recover]
