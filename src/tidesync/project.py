"""Which project a job belongs to: the folder whose state store and named connections it uses.

Found as git finds its repository: from the job file's folder upward, the first folder that
holds ``tidesync.yaml`` or ``.tidesync/`` is the project. ``--project DIR`` (or
``$TIDESYNC_PROJECT``) names it instead. When no folder above the job is one, the job file's own
folder is (its state is created there on first write). So one job keeps one state, and finds
its ``datasource`` names, whatever folder it is run from::

    ~/etl/tidesync.yaml            connections:, state:, nodes:
    ~/etl/jobs/orders.json         tidesync run ~/etl/jobs/orders.json   (from anywhere)
    ~/etl/.tidesync/state.db       its cursors: key jobs/orders.json#0
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidesync.errors import ConfigError

__all__ = ["PROJECT_FILE", "Project", "find_project", "state_setting"]

PROJECT_FILE = "tidesync.yaml"
STATE_DIR = ".tidesync"


@dataclass(frozen=True)
class Project:
    """A project as a job run needs it: where it is, its file, and what ``state:`` says."""

    root: Path
    file: Path | None  # tidesync.yaml, when the project has one
    state: str | None = None  # the file's ``state:`` as written (secrets unresolved)
    how: str = ""  # how it was found, for messages: "--project", "above the job", ...
    timezone: str | None = None  # the file's ``timezone:``: times are shown in it

    def describe(self) -> str:
        return f"{self.root} ({self.how})" if self.how else str(self.root)


def find_project(job: Path | None, explicit: Path | None = None) -> Project:
    """The project of ``job`` (a job file; None: the working directory's), or ``explicit``
    (a folder, or a project file). ConfigError for an explicit one that does not exist or a
    project file that does not read."""
    if explicit is not None:
        p = explicit.expanduser()
        if p.is_file():
            return _read(p.parent.resolve(), p.resolve(), "--project")
        if not p.is_dir():
            raise ConfigError(f"--project: {p} is neither a folder nor a project file")
        root = p.resolve()
        file = root / PROJECT_FILE
        return _read(root, file if file.is_file() else None, "--project")
    start = job.resolve().parent if job is not None else Path.cwd().resolve()
    for folder in (start, *start.parents):
        file = folder / PROJECT_FILE
        if file.is_file() or (folder / STATE_DIR).is_dir():
            return _read(folder, file if file.is_file() else None, "found above the job")
    return Project(start, None, None, "the job's folder: no project above it")


def _read(root: Path, file: Path | None, how: str) -> Project:
    if file is None:
        return Project(root, None, None, how)
    from tidesync.spec.job import load_document

    doc = load_document(file)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{file}: must hold an object (connections:, state:, nodes:)")
    problems: list[str] = []
    state = state_setting(doc, problems)
    if problems:
        raise ConfigError([f"{file}: {p}" for p in problems])
    tz = doc.get("timezone")
    return Project(root, file, state, how, tz if isinstance(tz, str) else None)


def state_setting(doc: dict[str, Any], problems: list[str]) -> str | None:
    """A project file's ``state:``: a PostgreSQL URL or a SQLite path (None: the default)."""
    state = doc.get("state")
    if state is not None and not isinstance(state, str):
        problems.append(
            "state: must be a PostgreSQL URL (postgresql://user@host/db) or a SQLite "
            f"file path, got {state!r}"
        )
        return None
    return state
