"""Placing finished files in the target: a local folder or an object store, through the file
connector's file systems (the same ``path`` and connection keys as the file writer).

A local file is renamed (or copied) next to its final name, synced, and renamed into place, so
a reader sees the whole file or none; an object appears whole when its upload completes. A name
that exists is replaced: the archiver only re-places a file after a crash, with the same
content.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tidesync.archive.policy import Policy
from tidesync.archive.stage import Output
from tidesync.connectors.base import Context
from tidesync.errors import FatalError, RetriableError, TidesyncError

__all__ = ["Target"]

_BLOCK = 8 << 20


class Target:
    def __init__(self, policy: Policy, connections: dict[str, dict[str, Any]], base_dir: Path):
        from tidesync.connectors.file.conn import _edge, filesystem_for

        ctx = Context(where=f"{policy.where}.target", base_dir=base_dir, connections=connections)
        self.fs, self.root = filesystem_for(policy.target.path, dict(policy.target.params), ctx)
        self.edge = _edge(self.fs)
        self.where = f"policy {policy.name}: {policy.target.path}"

    @property
    def local(self) -> bool:
        return self.edge is None

    def place(self, out: Output) -> None:
        final = f"{self.root}/{out.rel}"
        try:
            if self.edge is None:
                _place_local(out.local, final)
            else:
                self._upload(out.local, final)
        except TidesyncError:
            raise
        except OSError as e:
            raise self._error(e, final) from e

    def _upload(self, local: Path, final: str) -> None:
        with local.open("rb") as src, self.fs.open_output_stream(final) as dst:
            while block := src.read(_BLOCK):
                dst.write(block)

    def _error(self, e: OSError, path: str) -> TidesyncError:
        if self.edge is not None:
            err = self.edge.translate(e, "write", path)
            if err is not None:
                return err
        transient = isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EIO, errno.EAGAIN)
        cls = RetriableError if transient else FatalError
        return cls(f"{self.where}: cannot write {path}: {e.strerror or e}")

    def exists(self, rel: str) -> bool:
        return self.fs.get_file_info(f"{self.root}/{rel}").type == pafs.FileType.File


def _place_local(staged: Path, final: str) -> None:
    folder, name = os.path.split(final)
    made = _makedirs(folder)
    tmp = os.path.join(folder, f".{name}.tidesync-tmp")
    try:
        os.replace(staged, tmp)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        shutil.copyfile(staged, tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, final)
    for d in [folder, *made]:
        _sync_dir(d)


def _makedirs(folder: str) -> list[str]:
    """Create ``folder`` and missing parents; the parents of what was created (to sync)."""
    missing = []
    d = folder
    while not os.path.isdir(d):
        missing.append(d)
        parent = os.path.dirname(d)
        if parent == d:
            break
        d = parent
    if missing:
        os.makedirs(folder, exist_ok=True)
    return [os.path.dirname(m) for m in missing]


def _sync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
