"""Hive-style partitioned Parquet folders for the ``lake`` connector (``format: hive``).

A table is a folder: ``TABLE/ds=20161114/part-*.parquet`` (several levels for
``pt=20150101/type=1``), with ``TABLE/_common_metadata`` holding the schema of the data columns
(partition columns live in the folder names). Nothing is visible before the commit:

* sinks write into ``PARENT/.TABLE.tidesync/RUN/data/``, a hidden sibling on the same file
  system (readers skip names starting with ``.`` and ``_``);
* ``overwrite``, ``merge`` and ``sync`` build the partition's new contents there (unchanged
  files hard-linked) and swap it with the partition folder in one ``renameat2(RENAME_EXCHANGE)``,
  so a reader sees the old folder or the new one, never a mix. Where the file system has no
  exchange, two renames run back to back: for that moment (microseconds) the partition folder
  is missing, never half written;
* ``append`` moves a new partition folder in by one rename; into an existing partition it
  builds the partition's next contents (hard links of its files, the new files) and exchanges
  them the same way (a partition holding subfolders gets the new files one rename each);
* a killed run leaves its hidden staging folder behind; the next writer of the table (or
  ``tidesync recover``) removes it, once its owner is gone, and puts the old partition back if
  the kill fell between the two renames.

Commits to tables in one folder take turns (a lock on that folder): two runs writing the same
partition at once end in the state of the one that committed last, never a mix.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq

from tidesync.connectors.lake.common import (
    ParquetRoller,
    StagedFile,
    classify,
    conform,
    describe,
    duplicates,
    fits,
    parallel,
    prepare_changes,
    remaining,
    touches,
)
from tidesync.connectors.partition import expired, partition_path
from tidesync.connectors.publish import (
    OWNER,
    SWAP,
    Finding,
    Heartbeat,
    Owner,
    clean_runs,
    exchange,
    folder_lock,
    hook,
    put_back,
    write_local,
)
from tidesync.errors import ConfigError, FatalError

META = "_common_metadata"


def visible(name: str) -> bool:
    return not name.startswith((".", "_"))


def data_files(folder: Path) -> list[Path]:
    """Parquet files under ``folder``, skipping hidden names, in a stable order."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if visible(d))
        out += [Path(dirpath) / f for f in sorted(filenames) if visible(f)]
    return out


#: the folder value Hive, Spark and pyarrow write for a NULL partition value, and read as NULL
HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"


def path_partition(root: Path, file: Path) -> list[tuple[str, str | None]]:
    parts: list[tuple[str, str | None]] = []
    for seg in file.parent.relative_to(root).parts:
        if "=" in seg:
            k, v = seg.split("=", 1)
            parts.append((unquote(k), None if v == HIVE_NULL else unquote(v)))
    return parts


def partition_folders(root: Path, partition: list[tuple[str, str]]) -> list[Path]:
    """The folders holding ``partition`` (``[root]`` for none), by their decoded names: Hive and
    Spark write ``10:00`` as ``10%3A00`` (and ``/``, ``=``, ``#``... escaped), so the folder
    ``partition_path`` names was missing and the read found no rows. Both spellings are read."""
    here = [root] if root.is_dir() else []
    for k, v in partition:
        nxt = []
        for folder in here:
            for e in sorted(os.scandir(folder), key=lambda e: e.name):
                if e.is_dir() and visible(e.name) and "=" in e.name:
                    ek, ev = e.name.split("=", 1)
                    if unquote(ek) == k and unquote(ev) == v:
                        nxt.append(folder / e.name)
        here = nxt
    return here


def layout_keys(root: Path) -> list[str]:
    """The partition columns of an existing table, from its first ``k=v`` folders."""
    keys: list[str] = []
    here = root
    while True:
        try:
            subs = sorted(e.name for e in os.scandir(here) if e.is_dir() and visible(e.name))
        except FileNotFoundError:
            return keys
        subs = [s for s in subs if "=" in s]
        if not subs:
            return keys
        keys.append(unquote(subs[0].split("=", 1)[0]))
        here = here / subs[0]


def table_schema(root: Path) -> pa.Schema | None:
    """The data columns: ``_common_metadata``, else the union of the files' schemas."""
    meta = root / META
    if meta.exists():
        return plain(parquet_file(meta).schema_arrow)
    files = data_files(root) if root.exists() else []
    if not files:
        return None
    try:
        return plain(
            pa.unify_schemas(
                [parquet_file(f).schema_arrow for f in files], promote_options="permissive"
            )
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise FatalError(f"the Parquet files under {root} disagree on their columns: {e}") from e


def parquet_file(path: Path | str) -> pq.ParquetFile:
    """A Parquet file of the table, its INT96 timestamps (Hive's, Impala's, Spark's legacy ones)
    read as microseconds: as Arrow's nanoseconds a date outside 1677-2262 (Hive's 9999-12-31
    "no end") wrapped into another, silently."""
    return pq.ParquetFile(path, coerce_int96_timestamp_unit="us")


def check_file(
    path: Path | str, found: pa.Schema, table: pa.Schema, skip: list[str], where: str
) -> None:
    """FatalError unless the table's data columns ``table`` hold every column of the file
    ``path`` (``found``; ``skip``: its partition columns): a column the table's schema lacks
    would be dropped, a wider type cut."""
    for f in found:
        if f.name in skip:
            continue
        i = table.get_field_index(f.name)
        if i < 0:
            raise FatalError(
                f"{where}: {path} has column {f.name!r}, which the table's {META} lacks; "
                "reading or rewriting the file would drop it. Remove the file, or rewrite it "
                f"(or {META}) so that they agree"
            )
        want = table.field(i).type
        if not fits(f.type, want):
            raise FatalError(
                f"{where}: {path} column {f.name!r} is {describe(f.type)}, but the table's "
                f"{META} says {describe(want)}; its values would not fit. Remove the file, or "
                f"rewrite it (or {META}) so that they agree"
            )


def plain(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, f.type) for f in schema])


@dataclass
class Plan:
    file_schema: pa.Schema
    changed: bool  # the table's schema file must be (re)written
    constants: dict[str, Any] = field(default_factory=dict)  # none: partitions are folders
    dynamic: list[str] = field(default_factory=list)


class HiveTable:
    publish = "partition swap"

    def __init__(
        self,
        *,
        root: Path,
        partition: list[tuple[str, str]],
        where: str,
        table_key: str,
        partition_key: str,
        compression: str = "snappy",
    ):
        self.root = root
        self.partition = partition
        self.where = where
        self.table_key = table_key
        self.partition_key = partition_key
        self.compression = compression
        self.leaf = root / partition_path(partition) if partition else root
        self.run = uuid.uuid4().hex[:12]
        self.stage_root = root.parent / f".{root.name}.tidesync"
        self.stage = self.stage_root / self.run
        self.plan: Plan | None = None
        self.current: pa.Schema | None = None
        self._names = itertools.count()
        self.heartbeat: Heartbeat | None = None
        self._stage_lock = threading.Lock()

    # -- opening -------------------------------------------------------------------------------
    def open(self, *, must_exist: bool) -> None:
        if not self.root.is_dir():
            if must_exist:
                raise ConfigError(f"{self.table_key}: no table folder {self.root}")
            return
        keys = layout_keys(self.root)
        want = [k for k, _ in self.partition]
        if keys and want and keys[: len(want)] != want:
            raise ConfigError(
                f"{self.partition_key}: table {self.root} is partitioned by {'/'.join(keys)}, "
                f"not {'/'.join(want)}"
            )
        if keys and not want and not must_exist:
            raise ConfigError(
                f"{self.partition_key}: table {self.root} is partitioned by {'/'.join(keys)}; "
                f"give the partition to write, e.g. {keys[0]}=${{bizdate}}"
            )
        if want and not keys and any(f.parent == self.root for f in data_files(self.root)):
            raise ConfigError(
                f"{self.partition_key}: table {self.root} is not partitioned; leave out "
                "partition, or write to a new folder"
            )
        self.current = table_schema(self.root)

    def data_schema(self) -> pa.Schema | None:
        return self.current

    def clean_dead(self) -> list[Finding]:
        """Remove the staging of dead runs, putting back a partition caught mid-swap."""
        if not self.stage_root.is_dir():
            return []
        with self._lock():
            return clean_runs(self.stage_root, keep=self.run)

    def _lock(self) -> Any:
        """Commits to the tables of one folder take turns."""
        self.root.parent.mkdir(parents=True, exist_ok=True)
        return folder_lock(self.root.parent, f"{self.table_key}: {self.root}")

    # -- planning --------------------------------------------------------------------------------
    def make_plan(self, incoming: pa.Schema) -> Plan:
        for k, _ in self.partition:
            if k in incoming.names:
                raise ConfigError(
                    f"{self.partition_key}: column {k!r} comes from the partition parameter, "
                    "but the source sends it too; leave it out of the source columns "
                    "(writer column: [...]) or leave out partition"
                )
        _check_parquet_types(incoming, self.table_key)
        current = self.current
        if current is None:
            fields = [
                pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type)
                for f in incoming
            ]
            return Plan(_dictionary_free(pa.schema(fields)), True)
        fields = list(current)
        changed = False
        for f in incoming:
            i = current.get_field_index(f.name)
            if i < 0:
                fields.append(pa.field(f.name, pa.string() if pa.types.is_null(f.type) else f.type))
                changed = True
            elif fits(f.type, current.field(i).type):
                continue
            elif fits(current.field(i).type, f.type):
                fields[i] = pa.field(f.name, f.type)  # old files are read as the wider type
                changed = True
            else:
                raise ConfigError(
                    f"{self.table_key}: column {f.name!r} is {describe(current.field(i).type)} in "
                    f"{self.root}, but the source sends {describe(f.type)}; changing it would lose "
                    "data. Cast it to the table's type (a transform) or write to a new folder"
                )
        return Plan(_dictionary_free(pa.schema(fields)), changed or not (self.root / META).exists())

    # -- staging ---------------------------------------------------------------------------------
    def _ensure_stage(self) -> None:
        with self._stage_lock:  # sinks start on several threads
            if self.heartbeat is None:
                (self.stage / "data").mkdir(parents=True, exist_ok=True)
                owner = Owner.me(self.run)
                self.heartbeat = Heartbeat(owner, write_local(self.stage / OWNER)).start()

    def roller(
        self,
        split: int,
        values: dict[str, Any],
        schema: pa.Schema | None = None,
        folder: str = "data",
    ) -> ParquetRoller:
        assert self.plan is not None
        self._ensure_stage()
        out = self.stage / folder
        out.mkdir(parents=True, exist_ok=True)

        def new_path() -> str:
            return str(out / f"part-{self.run}-{split:05d}-{next(self._names):05d}.parquet")

        return ParquetRoller(
            schema or self.plan.file_schema,
            new_path,
            lambda p: p,
            {"compression": self.compression},
        )

    def delete_files(self, paths: list[str]) -> None:
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(p)

    def abort(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        put_back(self.stage)  # a commit that failed between its two renames
        shutil.rmtree(self.stage, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.stage_root.rmdir()

    # -- commit ----------------------------------------------------------------------------------
    def commit(
        self,
        mode: str,
        files: list[StagedFile],
        batches: list[pa.RecordBatch],
        keys: list[str],
        lifecycle: tuple[date, int] | None,
        summary: dict[str, str],
    ) -> dict[str, int]:
        assert self.plan is not None
        self._ensure_stage()
        counts = {"added_rows": sum(f.rows for f in files)}
        partitioned = bool(self.partition)
        with self._lock():
            staged = self.stage / "data"
            if mode in ("merge", "sync"):
                staged, counts = self._merge(batches, keys, mode)
            if mode == "append" and self.leaf.exists():
                staged = self._appended(staged)
            if not partitioned:
                self._write_meta(staged)  # the table folder itself is swapped: carry the schema
            elif self.plan.changed:
                self._write_meta(self.root)
            hook("lake.commit")
            if staged != self.leaf:  # else appended one file at a time
                self._swap(staged, self.leaf)
            if lifecycle is not None and partitioned:
                counts["expired_partitions"] = self._expire(*lifecycle)
        self.abort()
        return counts

    def _appended(self, staged: Path) -> Path:
        """The existing partition's files (hard links) and the new ones, as one folder to swap
        in; a partition holding subfolders gets the new files one rename each instead."""
        new = self.stage / "appended"
        new.mkdir()
        entries = list(os.scandir(self.leaf))
        if any(e.is_dir(follow_symlinks=False) for e in entries):
            for f in data_files(staged):
                os.rename(f, self.leaf / f.name)
            return self.leaf
        for e in entries:
            try:
                os.link(e.path, new / e.name, follow_symlinks=False)
            except OSError:
                shutil.copy2(e.path, new / e.name, follow_symlinks=False)
        for f in data_files(staged):
            os.rename(f, new / f.name)
        return new

    def _write_meta(self, folder: Path) -> None:
        assert self.plan is not None
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{META}.{self.run}"
        pq.write_metadata(self.plan.file_schema, tmp)
        os.replace(tmp, folder / META)

    def _swap(self, new: Path, target: Path) -> None:
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.rename(new, target)
            return
        old = self.stage / "old"
        (self.stage / SWAP).write_text(json.dumps({"target": str(target), "old": str(old)}))
        if exchange(new, target):
            shutil.rmtree(new, ignore_errors=True)
            return
        os.rename(target, old)
        os.rename(new, target)
        shutil.rmtree(old, ignore_errors=True)

    def _expire(self, bizdate: date, days: int) -> int:
        n = 0
        trash = self.stage / "expired"
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not entry.is_dir() or not visible(entry.name) or "=" not in entry.name:
                continue
            value = unquote(entry.name.split("=", 1)[1])
            if expired(value, bizdate, days):
                trash.mkdir(parents=True, exist_ok=True)
                os.rename(entry.path, trash / entry.name)
                n += 1
        return n

    def read_file(self, path: Path) -> pa.Table:
        assert self.plan is not None
        table = parquet_file(path).read()
        check_file(
            path, table.schema, self.plan.file_schema, [k for k, _ in self.partition], self.where
        )
        return (
            pa.Table.from_batches([conform(table, self.plan.file_schema)])
            if table.num_rows
            else self.plan.file_schema.empty_table()
        )

    def _merge(
        self, batches: list[pa.RecordBatch], keys: list[str], mode: str
    ) -> tuple[Path, dict[str, int]]:
        assert self.plan is not None
        upserts, gone = prepare_changes(batches, self.plan.file_schema, keys, mode, self.where)
        new = self.stage / "new"
        new.mkdir(parents=True, exist_ok=True)
        existing = (
            [f for f in data_files(self.leaf) if f.parent == self.leaf]
            if self.leaf.is_dir()
            else []
        )

        def one(f: Path, forced: pa.Array | None = None) -> tuple[Path, Any, list[str]]:
            rows = self.read_file(f)
            v = classify(rows, upserts, gone, keys, mode, forced)
            if not v.removed:
                return f, v, []
            return f, v, self._write(rows.filter(v.keep), "new")

        verdicts = parallel(one, existing)
        dups = duplicates([v.same for _, v, _ in verdicts])
        if len(dups):
            redo = []
            for f, v, written in verdicts:
                if touches(v.same, dups):
                    self.delete_files(written)
                    redo.append(one(f, dups))
                else:
                    redo.append((f, v, written))
            verdicts = redo
        for f, v, _ in verdicts:
            if not v.removed:
                try:
                    os.link(f, new / f.name)
                except OSError:
                    shutil.copy2(f, new / f.name)
        inserts, counts = remaining(upserts, verdicts)
        self._write(inserts, "new")
        return new, counts

    def _write(self, rows: pa.Table, folder: str) -> list[str]:
        if rows.num_rows == 0:
            return []
        r = self.roller(99999, {}, folder=folder)
        for b in rows.to_batches():
            r.write(b)
        return [f.path for f in r.close()]


def _dictionary_free(schema: pa.Schema) -> pa.Schema:
    """The columns as a Parquet file keeps them: no dictionaries, no string or binary views
    (which Arrow's take, used by merge and sync, does not handle)."""
    return pa.schema([pa.field(f.name, _stored(f.type)) for f in schema])


def _stored(t: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(t):
        return _stored(t.value_type)
    if pa.types.is_string_view(t):
        return pa.string()
    if pa.types.is_binary_view(t):
        return pa.binary()
    return t


def _check_parquet_types(schema: pa.Schema, key: str) -> None:
    """A column of a type Parquet has no form for (an interval) failed at the first file, with
    Arrow's message and no column name: a ConfigError naming it, before a row is read."""
    try:
        pq.ParquetWriter(pa.BufferOutputStream(), schema).close()
        return
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
        pass
    for f in schema:
        try:
            pq.ParquetWriter(pa.BufferOutputStream(), pa.schema([f])).close()
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as e:
            raise ConfigError(
                f"{key}: column {f.name!r} has type {describe(f.type)}, which a Parquet file "
                f"cannot hold ({e}); cast it first (a transform)"
            ) from None
