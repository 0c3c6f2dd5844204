"""The file writer's staging areas and publish journals, on a disk or in a bucket, and what the
next run, the reader and ``tidesync recover`` do with those a dead run left.

Layout (``ROOT`` is the writer's ``path``)::

    ROOT/.tidesync-tmp-RUN/owner.json     who stages here (connectors/publish.py: Owner)
    ROOT/.tidesync-tmp-RUN/SPLIT.PART     the staged files
    ROOT/.tidesync-tmp-RUN/publish.json   the journal of a decided publish (moves, deletes)
    PARENT/.NAME.tidesync/RUN/            a local publish by folder exchange (owner.json, new/)

A journal, once written, is the publish: whoever finds it with its run dead (the next run
writing to ``ROOT``, ``tidesync recover``) completes it; the reader reads its files where they
are meanwhile (:func:`pending`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from tidesync.connectors.publish import (
    JOURNAL,
    OWNER,
    Finding,
    Journal,
    Owner,
    clean_runs,
    dead_reason,
    folder_lock,
    hook,
    is_dead,
    size_text,
)

STAGE = ".tidesync-tmp-"


def sibling_root(root: str) -> Path:
    """``PARENT/.NAME.tidesync``: where a local publish builds the folder it exchanges."""
    p = Path(root)
    return p.parent / f".{p.name}.tidesync"


@dataclass
class Area:
    """A writer's target folder (``root``) on ``fs``, seen as a place where runs stage."""

    fs: pafs.FileSystem
    root: str
    edge: Any = None  # the object store (objectstore.Edge), None for a local disk

    @property
    def local(self) -> bool:
        return self.edge is None

    def tmp(self, run: str) -> str:
        return f"{self.root}/{STAGE}{run}"

    # -- small objects

    def put(self, path: str, data: bytes) -> None:
        """Write a small record whole: a reader sees the old one or the new one."""
        if self.local:
            p = Path(path)
            part = p.with_name(f".{p.name}.part")
            with open(part, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(part, p)
            fd = os.open(p.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            return
        self.edge.put(path, data)

    def get(self, path: str) -> bytes | None:
        try:
            if self.fs.get_file_info(path).type != pafs.FileType.File:
                return None
            with self.fs.open_input_stream(path) as f:
                return bytes(f.read())
        except FileNotFoundError:
            return None

    # -- staging areas

    def stagings(self) -> list[str]:
        """The staging folders directly in ``root`` (any run's)."""
        found = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return sorted(
            i.path
            for i in found
            if i.type == pafs.FileType.Directory and i.base_name.startswith(STAGE)
        )

    def journal(self, staging: str) -> Journal | None:
        data = self.get(f"{staging}/{JOURNAL}")
        return Journal.loads(data) if data is not None else None

    def _contents(self, staging: str) -> tuple[int, float | None]:
        found = self.fs.get_file_info(
            pafs.FileSelector(staging, recursive=True, allow_not_found=True)
        )
        size = sum(i.size or 0 for i in found if i.type == pafs.FileType.File)
        times = [i.mtime.timestamp() for i in found if i.mtime is not None]
        if self.local:
            with contextlib.suppress(OSError):
                times.append(os.stat(staging).st_mtime)
        return size, max(times, default=None)

    # -- rolling forward

    def roll_forward(self, j: Journal) -> tuple[int, int]:
        """Complete a decided publish: every staged file to its final name, then the old files
        removed. Safe to repeat. Returns (files placed, files removed)."""
        moves = j.moves
        if not self.local:  # staged objects stay until the end: skip only those now gone
            staged = {
                i.path
                for d in {os.path.dirname(s) for s, _ in moves}
                for i in self.fs.get_file_info(
                    pafs.FileSelector(d, recursive=True, allow_not_found=True)
                )
            }
            moves = [(s, d) for s, d in moves if s in staged]

        placed = []

        def place(move: tuple[str, str]) -> None:
            src, dst = move
            if self.local:
                try:
                    os.replace(src, dst)
                except FileNotFoundError:
                    return  # placed before
            else:
                self.fs.copy_file(src, dst)
            placed.append(dst)
            hook("publish.placed")

        run_all(place, moves, parallel=not self.local)
        self.delete(j.deletes)
        return len(placed), len(j.deletes)

    def delete(self, paths: list[str]) -> None:
        if not paths:
            return
        if self.local:
            for p in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.remove(p)
        else:
            self.edge.delete_many(paths)

    def remove_tree(self, path: str) -> None:
        if self.local:
            shutil.rmtree(path, ignore_errors=True)
        else:
            self.fs.delete_dir(path)

    # -- what dead runs left

    def lock(self) -> Any:
        """Publishes into one local folder take turns (a bucket has no locks)."""
        if not self.local:
            return contextlib.nullcontext()
        return folder_lock(Path(self.root).parent, self.root)

    def clean(self, keep: str | None = None) -> list[Finding]:
        """Complete the decided publishes of dead runs and remove their staging (and, in a
        bucket, their unfinished uploads); live runs' are left alone."""
        with self.lock():
            return self._clean(keep)

    def _clean(self, keep: str | None) -> list[Finding]:
        out: list[Finding] = []
        runs: set[str] = set()
        for staging in self.stagings():
            run = staging.rsplit("/", 1)[1][len(STAGE) :]
            runs.add(run)
            if run == keep:
                continue
            owner_data = self.get(f"{staging}/{OWNER}")
            owner = Owner.loads(owner_data) if owner_data is not None else None
            if not is_dead(owner, self._contents(staging)[1]):
                why = f"its run is alive: {owner.describe()}" if owner else "changed recently"
                out.append(Finding("kept", staging, why))
                continue
            j = self.journal(staging)
            if j is not None:
                placed, removed = self.roll_forward(j)
                out.append(
                    Finding(
                        "rolled forward",
                        self.root,
                        f"the publish of run {run}: {placed} files placed, {removed} removed",
                    )
                )
            size = self._contents(staging)[0]
            self.remove_tree(staging)
            out.append(Finding("removed", staging, f"{dead_reason(owner)}; {size_text(size)}"))
            if not self.local:
                out += self._abort_uploads(f"{staging}/", None)
        if not self.local:  # uploads of runs that never finished an object
            out += self._abort_uploads(f"{self.root}/{STAGE}", runs | {keep or ""})
        else:
            out += clean_runs(sibling_root(self.root), keep)
        return out

    def _abort_uploads(self, prefix: str, skip: set[str] | None) -> list[Finding]:
        out = []
        for key, upload_id, started in self.edge.uploads(prefix):
            if skip is not None:  # only runs with no staging folder left, once they are old
                run = key[len(prefix) :].split("/", 1)[0]
                if run in skip or not is_dead(None, started.timestamp()):
                    continue
            self.edge.abort_upload(key, upload_id)
            out.append(Finding("aborted upload", key, f"unfinished since {_when(started)}"))
        return out


def _when(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def run_all(fn: Callable[[Any], None], items: list[Any], parallel: bool) -> None:
    """``fn`` on every item (on up to 8 threads when ``parallel``); the first failure is raised
    after every call has ended."""
    if not parallel or len(items) < 2:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    for fut in futures:
        fut.result()


# -- the reader's view ------------------------------------------------------------------------


def pending(fs: pafs.FileSystem, stagings: Iterable[str]) -> list[Journal]:
    """The decided publishes whose staging folders are among ``stagings``."""
    area = Area(fs, "")
    out = []
    for s in sorted(set(stagings)):
        j = area.journal(s)
        if j is not None:
            out.append(j)
    return out


def staging_of(path: str) -> str | None:
    """The staging folder a listed path lies in (``ROOT/.tidesync-tmp-RUN``), or None."""
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part.startswith(STAGE):
            return "/".join(parts[: i + 1])
    return None
