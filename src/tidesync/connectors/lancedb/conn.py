"""Where a LanceDB table lives (the parameters the reader and writer share), the lazy import
of the ``lancedb`` package (the ``lancedb`` extra), and error translation."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from tidesync.connectors import base
from tidesync.errors import ConfigError, FatalError, RetriableError, TidesyncError

log = logging.getLogger("tidesync")

EXTRA = "pip install 'tidesync[lancedb]'"


def lancedb_module(where: str) -> Any:
    """The ``lancedb`` package, or a ConfigError naming the extra that installs it."""
    # Lance's Rust side logs a WARN line on stderr for every table it creates; keep it quiet
    # unless the user asked for its logs
    os.environ.setdefault("LANCE_LOG", "error")
    os.environ.setdefault("LANCEDB_LOG", "error")
    try:
        import lancedb
    except ImportError:
        raise ConfigError(
            f"{where}: the lancedb connector needs the Python package 'lancedb': {EXTRA}"
        ) from None
    return lancedb


def translate(e: BaseException, where: str) -> TidesyncError:
    """A LanceDB error as tidesync's: a commit conflict with another writer is worth a retry,
    the rest is not."""
    if isinstance(e, TidesyncError):
        return e
    first = str(e).strip().split("\n")[0]
    lower = first.lower()
    retry = "conflict" in lower or "retryable" in lower or "too many concurrent" in lower
    return (RetriableError if retry else FatalError)(f"{where}: {first}", code=type(e).__name__)


class Location:
    """``path`` (a local folder, the LanceDB database) and ``table`` (its name)."""

    def __init__(self, p: base.Params, ctx: base.Context):
        raw = p.str("path", required=True, aliases=("uri", "database"))
        self.path: Path | None = None
        if isinstance(raw, str):
            scheme, sep, _ = raw.partition("://")
            if sep and scheme.lower() != "file":
                p.problem(
                    "path",
                    f"{raw!r}: only a local folder is supported (a path or file://); "
                    "LanceDB on object storage is not wired to tidesync's connections yet",
                )
            else:
                self.path = ctx.resolve_path(raw.partition("://")[2] if sep else raw)
        self.table = p.str("table", required=True)
        if isinstance(self.table, str) and not _valid_name(self.table):
            p.problem(
                "table",
                f"{self.table!r} is not a LanceDB table name (letters, digits, _ - and ., "
                "not starting with a dot)",
            )
        self.where = ctx.where
        self.ctx = ctx

    def connect(self) -> Any:
        lancedb = lancedb_module(self.where)
        assert self.path is not None
        try:
            return lancedb.connect(str(self.path))
        except Exception as e:  # noqa: BLE001 - translated at the edge
            raise translate(e, self.ctx.path("path")) from e

    def open(self, db: Any, version: int | None = None) -> Any | None:
        """The table, or None when it does not exist."""
        assert self.path is not None
        if not (self.path / f"{self.table}.lance").is_dir():
            return None
        try:
            return db.open_table(self.table, version=version)
        except ValueError as e:
            if "not found" in str(e).lower() or "does not exist" in str(e).lower():
                return None
            raise translate(e, self.ctx.path("table")) from e
        except Exception as e:  # noqa: BLE001 - translated at the edge
            raise translate(e, self.ctx.path("table")) from e


def _valid_name(name: str) -> bool:
    return bool(name) and not name.startswith(".") and all(c.isalnum() or c in "_-." for c in name)
