"""The file writer (kind ``file`` / ``s3``; DataX ``txtfilewriter``).

``path`` is a folder; ``fileName`` names the files::

    {"path": "out", "fileName": "orders.csv", "fileFormat": "csv", "writeMode": "truncate",
     "header": true, "compress": "gzip", "maxFileSize": "256MB"}

Each split writes its own files under ``path/.tidesync-tmp-<run>/`` (with an owner record, see
:mod:`tidesync.connectors.publish`). ``commit`` publishes them under their final names
(``orders.csv.gz`` for one split, ``orders__00000.csv.gz`` ... for several, ``_part00001`` ...
when ``maxFileSize`` cuts one) and, with ``truncate``, removes the older files of that
``fileName``, so that a reader sees the old files or the new ones:

* on a local disk, by building the folder's next contents beside it (hard links of what stays,
  the new files moved in) and swapping the two folders in one ``renameat2(RENAME_EXCHANGE)``;
* where that cannot be done (an object store, no exchange, subfolders in ``path``, a folder of
  another user), by a publish journal written before the first file moves: the moves and
  deletes are then decided, and the next run writing to ``path`` (or ``tidesync recover``)
  completes them if this one dies; tidesync's reader reads the journal's files meanwhile.

``abort`` removes the temporaries; the folder stays as it was. ``prepare`` completes or removes
what dead runs left in ``path`` (:mod:`tidesync.connectors.file.stage`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tidesync.connectors import base
from tidesync.connectors.file.columns import date_pattern
from tidesync.connectors.file.conn import (
    FORMATS,
    _delimiter,
    _edge,
    _encoding,
    _filesystem,
    _object_store_keys,
    _raw_string,
    _store_error,
)
from tidesync.connectors.file.encode import JsonEncoder, Names, TextEncoder, signature
from tidesync.connectors.file.locate import (
    COMPRESSIONS,
    SUFFIXES,
    compression_of,
)
from tidesync.connectors.file.stage import STAGE, Area, sibling_root
from tidesync.connectors.parquet import ReleaseClock, dictionary_columns
from tidesync.connectors.publish import (
    JOURNAL,
    OWNER,
    Finding,
    Heartbeat,
    Journal,
    Owner,
    exchange,
    hook,
    write_local,
)
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, TidesyncError

log = logging.getLogger("tidesync")

#: a parquet row group: a sink gathers batches up to this many rows or this many Arrow bytes,
#: then encodes and writes them as one row group into its open file, while its reader goes on
#: filling the channel; so a split holds about one row group (docs/design.md, "Pipelined
#: Parquet writes"): 8 MiB is some 80,000 rows of a mixed 8-column table, near DuckDB's 122,880
ROW_GROUP_ROWS = 1 << 20
ROW_GROUP_BYTES = 8 << 20


PARQUET_CODECS = ("snappy", "gzip", "zstd", "lz4", "brotli", "none")


class Writer(base.Writer):
    kind = "file"
    modes = ("truncate", "append", "nonConflict")
    publish = "folder swap or journal"
    remote_sinks = True  # each sink stages its own files; commit renames them

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        _object_store_keys(p)
        if p.raw.get("object") is not None:  # DataX osswriter: the objects' name, with folders
            from tidesync.connectors.file.objectstore import object_target

            path, file_name = object_target(p, ctx)
        else:
            path = p.str("path", required=True)
            file_name = p.str("fileName", required=True)
        if isinstance(file_name, str) and ("/" in file_name or file_name.startswith(".")):
            p.problem(
                "fileName",
                f"{file_name!r}: a file name (the folder goes in path), not starting with '.'",
            )
        self.fmt = p.str("fileFormat", "csv", choices=FORMATS, lower=True)
        self.mode = self.write_mode({"overwrite": "truncate", "nonconflict": "nonConflict"})
        self.delimiter = _delimiter(p, self.fmt)
        self.encoding = _encoding(p)
        self.null_format = _raw_string(p, "nullFormat", "\\N")
        self.header = self._header(p)
        self.date = None
        fmt = p.str("dateFormat")
        if fmt:
            try:
                self.date = date_pattern(fmt)
            except ValueError as e:
                p.problem("dateFormat", f"{fmt!r}: {e}")
            else:
                if self.date.strftime is None:
                    p.problem("dateFormat", f"{fmt!r}: fractional seconds print only as ss.SSS")
        self.codec: str | None = None
        self.parquet_codec = "snappy"
        if self.fmt == "parquet":
            self.parquet_codec = p.str("compress", "snappy", choices=PARQUET_CODECS, lower=True)
        else:
            comp = p.str("compress", None, choices=list(COMPRESSIONS), lower=True)
            self.codec = COMPRESSIONS[comp] if comp else compression_of(file_name or "")
        self.max_size: int | None = p.size("maxFileSize")
        located = _filesystem(p, path, ctx) if path else None
        p.done()
        assert located is not None and file_name is not None
        self.fs, self.root = located
        self.edge = _edge(self.fs)  # an object store: no folders; its errors translated
        self.names = Names.of(file_name, SUFFIXES.get(self.codec or "", ""))
        self.run = uuid.uuid4().hex[:12]
        self.tmp = f"{self.root}/{STAGE}{self.run}"
        self.area = Area(self.fs, self.root, self.edge)
        self.schema: pa.Schema | None = None
        self.created: str | None = None  # the highest folder prepare() had to create
        self.heartbeat: Heartbeat | None = None
        self.decided = False  # the publish passed its point of no return: never undo it
        self.recovered: list[Finding] = []  # what prepare() did with dead runs' leftovers

    def __getstate__(self) -> dict[str, Any]:
        # a worker's copy opens sinks only: the driver keeps the owner record fresh
        return {**self.__dict__, "heartbeat": None}

    @staticmethod
    def _header(p: base.Params) -> list[str] | bool:
        v = p.get("header", False)
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return list(v)
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.lower() in ("true", "false"):
            return v.lower() == "true"
        p.problem("header", f"must be true, false or a list of column names, got {v!r}")
        return False

    def _existing(self) -> list[str]:
        found = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        return sorted(
            i.base_name
            for i in found
            if i.type == pafs.FileType.File
            and not i.base_name.startswith(".")
            and self.names.ours(i.base_name)
        )

    def shares_target(self, other: base.Writer) -> str | None:
        """Two entries of one job writing one folder clash when one file name starts with the
        other: the files of a fileName are those starting with it (DataX's rule), so the later
        commit's truncate would remove the earlier one's files, and two appends would race for
        the same numbered names."""
        if not isinstance(other, Writer) or type(other.fs) is not type(self.fs):
            return None
        if other.root.rstrip("/") != self.root.rstrip("/"):
            return None
        a, b = self.names.prefix, other.names.prefix
        if a == b:
            return f"the files of {a!r} in {self.root}"
        if a.startswith(b) or b.startswith(a):
            return f"files of {a!r} in {self.root}, which start like those of {b!r}"
        return None

    def prepare(self, schema: pa.Schema | None) -> None:
        self.schema = schema
        if isinstance(self.header, list) and schema is not None and len(self.header) != len(schema):
            raise ConfigError(
                f"{self.ctx.path('header')}: {len(self.header)} names for the "
                f"{len(schema)} columns {schema.names}"
            )
        info = self.fs.get_file_info(self.root)
        if info.type == pafs.FileType.File:
            raise FatalError(f"{self.ctx.path('path')}: {self.root} is a file; path names a folder")
        if info.type == pafs.FileType.NotFound and self.edge is not None:
            self.fs.create_dir(self.root)  # nothing to create: checks the bucket
        elif info.type == pafs.FileType.NotFound:
            top = self.root
            while (
                (parent := top.rsplit("/", 1)[0])
                and parent != top
                and (self.fs.get_file_info(parent).type == pafs.FileType.NotFound)
            ):
                top = parent
            try:
                self.fs.create_dir(self.root, recursive=True)
            except OSError as e:
                raise FatalError(
                    f"{self.ctx.path('path')}: cannot create the folder {self.root}: {_reason(e)}"
                ) from e
            self.created = top
        self.recovered = self.recover()
        for f in self.recovered:
            log.info("%s: %s", self.ctx.where, f.line())
        if self.mode == "nonConflict":
            self._no_conflict()
        self.fs.create_dir(self.tmp, recursive=True)
        owner = f"{self.tmp}/{OWNER}"
        self.heartbeat = Heartbeat(Owner.me(self.run), lambda data: self.area.put(owner, data))
        self.heartbeat.start(wait=self.edge is None)

    def recover(self) -> list[Finding]:
        """Complete the decided publishes of dead runs into this folder and remove what they
        staged (``tidesync recover`` and every ``prepare``); live runs' staging stays."""
        return self.area.clean(keep=self.run)

    def _no_conflict(self) -> None:
        existing = self._existing()
        if existing:
            more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
            raise FatalError(
                f"{self.ctx.path('writeMode')}: nonConflict, but {self.root}/{existing[0]}"
                f"{more} exists; remove it or use writeMode truncate or append"
            )

    def open(self, split: base.Split) -> base.Sink:
        return _Sink(self, split.index)

    def commit(self, results: list[Any]) -> None:
        try:
            self._publish(results)
        except BaseException:
            self.abort(results)
            raise

    def _publish(self, results: list[Any]) -> None:
        hook("publish.begin")
        done = sorted(
            (r for r in results if isinstance(r, dict) and not r.get("discarded")),
            key=lambda r: r["index"],
        )
        single = len(done) == 1
        plan = []  # (temporary path, split index or None, part or None)
        for r in done:
            parts = r["files"]
            for k, tmp in enumerate(parts, 1):
                plan.append((tmp, None if single else r["index"], None if len(parts) == 1 else k))
        with self.area.lock():
            if self.mode == "nonConflict":
                self._no_conflict()
            existing = set(self._existing())
            taken: set[str] = set()
            if self.mode == "append":
                found = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
                taken = {i.base_name for i in found}
            finals: list[str] = []
            for _, index, part in plan:
                gen = 0
                name = self.names.name(index, part)
                while name in taken or name in finals:
                    gen += 1
                    name = self.names.name(index, part, gen)
                finals.append(name)
            old = sorted(existing - set(finals)) if self.mode == "truncate" else []
            moves = [(p[0], f"{self.root}/{name}") for p, name in zip(plan, finals, strict=True)]
            if self.edge is not None or not self._exchange(moves, old):
                self._journaled(moves, [f"{self.root}/{name}" for name in old])
        self._finish()

    # -- a local folder: one exchange

    def _exchange(self, moves: list[tuple[str, str]], old: list[str]) -> bool:
        """Publish by swapping ``path`` with its next contents, built beside it; False (and
        nothing changed) where that cannot be done here."""
        root = Path(self.root)
        tmp_name = Path(self.tmp).name
        try:
            st = os.stat(root)
            entries = list(os.scandir(root))
            if (
                st.st_uid != os.geteuid()
                or os.stat(root.parent).st_dev != st.st_dev
                or any(e.is_dir(follow_symlinks=False) and e.name != tmp_name for e in entries)
            ):
                return False
        except OSError:
            return False
        run_dir = sibling_root(self.root) / self.run
        new = run_dir / "new"
        skip = {tmp_name, *old, *(Path(d).name for _, d in moves)}
        linked: dict[str, int] = {}
        placed: list[tuple[str, Path]] = []
        try:
            run_dir.mkdir(parents=True)
            assert self.heartbeat is not None
            self.heartbeat.add(write_local(run_dir / OWNER))
            if not _can_exchange(run_dir):
                raise OSError("no exchange")
            new.mkdir()
            os.chmod(new, st.st_mode & 0o7777)
            if os.stat(new).st_gid != st.st_gid:
                os.chown(new, -1, st.st_gid)
            for e in entries:
                if e.name not in skip:
                    os.link(e.path, new / e.name, follow_symlinks=False)
                    linked[e.name] = e.inode()
            for src, dst in moves:
                os.rename(src, new / Path(dst).name)
                placed.append((src, new / Path(dst).name))
            hook("publish.exchange")
            if not exchange(new, root):
                raise OSError("exchange refused")
        except OSError as e:
            log.debug("%s: publishing without a folder exchange: %s", self.root, e)
            for src, at in placed:  # back to the staging folder, for the journal
                os.rename(at, src)
            shutil.rmtree(run_dir, ignore_errors=True)
            return False
        self.decided = True
        hook("publish.exchanged")
        _reconcile(new, root, linked, skip)
        shutil.rmtree(run_dir, ignore_errors=True)
        with contextlib.suppress(OSError):
            sibling_root(self.root).rmdir()
        return True

    # -- a journal, then one move at a time

    def _journaled(self, moves: list[tuple[str, str]], old: list[str]) -> None:
        if self.edge is not None:  # every staged object is there: else nothing is decided yet
            found = self.fs.get_file_info(pafs.FileSelector(self.tmp, recursive=True))
            there = {i.path for i in found if i.type == pafs.FileType.File}
            gone = [src for src, _ in moves if src not in there]
            if gone:
                raise FatalError(
                    f"{self.root}: staged object {gone[0].rsplit('/', 1)[1]!r} is gone; "
                    "nothing was published"
                )
        journal = Journal(self.run, moves, old)
        self.area.put(f"{self.tmp}/{JOURNAL}", journal.dumps())
        self.decided = True
        hook("publish.journal")
        try:
            self.area.roll_forward(journal)
        except (TidesyncError, OSError) as e:
            cls = type(e) if isinstance(e, TidesyncError) else FatalError
            raise cls(
                f"{e}; the publish is decided: the next run writing to {self.root} "
                "(or tidesync recover) completes it"
            ) from e
        self.area.delete([f"{self.tmp}/{JOURNAL}"])

    def _finish(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        _quietly(self.area.remove_tree, self.tmp)

    def write_error(self, e: OSError, path: str) -> TidesyncError:
        err = _store_error(self.fs, e, "write", path) if self.edge is not None else None
        if err is not None:
            return err
        return FatalError(f"{self.ctx.path('path')}: cannot write in {self.root}: {_reason(e)}")

    def abort(self, results: list[Any]) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.decided:  # completed by the next run (or recover), never undone
            return
        for r in results if self.edge is None else []:  # objects: all go with the folder
            for f in (r or {}).get("files", []) if isinstance(r, dict) else []:
                _quietly(self.fs.delete_file, f)
        _quietly(self.area.remove_tree, self.tmp)
        if self.created is not None:
            below = self.fs.get_file_info(
                pafs.FileSelector(self.created, recursive=True, allow_not_found=True)
            )
            if all(i.type == pafs.FileType.Directory for i in below):
                _quietly(self.fs.delete_dir, self.created)


def _can_exchange(folder: Path) -> bool:
    """Whether the file system under ``folder`` swaps folders atomically (tried on two empty
    ones)."""
    a, b = folder / "probe-a", folder / "probe-b"
    a.mkdir()
    b.mkdir()
    ok = exchange(a, b)
    a.rmdir()
    b.rmdir()
    return ok


def _reconcile(old: Path, root: Path, linked: dict[str, int], ours: set[str]) -> None:
    """Give back what another process put into ``root`` while its next contents were built
    (now in ``old``, the folder swapped out): new entries, and files replaced meanwhile."""
    with contextlib.suppress(OSError):
        for e in os.scandir(old):
            if e.name in ours or linked.get(e.name) == e.inode():
                continue
            with contextlib.suppress(OSError):
                os.replace(e.path, root / e.name)


def _reason(e: OSError) -> str:
    """An OSError in words: ``No such file or directory``, not pyarrow's whole sentence."""
    text = str(e)
    if "Detail: " in text:  # "Cannot create directory '/x'. Detail: [errno 2] No such file ..."
        return text.rsplit("Detail: ", 1)[-1].split("] ", 1)[-1]
    return e.strerror or text


def _quietly(fn: Any, path: str) -> None:
    with contextlib.suppress(FileNotFoundError, OSError, TidesyncError):
        fn(path)


class _Sink(base.Sink):
    """One split's output: numbered part files in the writer's temporary folder."""

    def __init__(self, w: Writer, index: int):
        self.w, self.index = w, index
        self.files: list[str] = []
        self.rows = self.bytes = 0
        self.out: Any = None
        self.part_bytes = self.part_rows = 0
        self.enc: TextEncoder | JsonEncoder | None = None
        if w.fmt in ("csv", "text"):
            zone = w.ctx.timezone
            self.enc = TextEncoder(w.fmt, w.delimiter, w.null_format, w.date, w.encoding, zone)
        elif w.fmt == "jsonl":
            self.enc = JsonEncoder(w.date, w.encoding, w.ctx.timezone)
        self.head: bytes | None = None
        self.pq_schema: pa.Schema | None = None
        self.pqw: pq.ParquetWriter | None = None
        self.buf: list[pa.RecordBatch] = []
        self.buf_rows = self.buf_bytes = 0
        self.release = ReleaseClock()  # hands freed Arrow memory back between row groups
        w.fs.create_dir(w.tmp, recursive=True)

    # -- parts

    def _open_part(self) -> None:
        path = f"{self.w.tmp}/{self.index:05d}.{len(self.files) + 1:05d}"
        self.files.append(path)
        self.out = self.w.fs.open_output_stream(path, compression=self.w.codec)
        self.part_bytes = self.part_rows = 0
        head = (signature(self.w.encoding) if self.enc is not None else b"") + (self.head or b"")
        if head:
            self.out.write(head)
            self.part_bytes += len(head)
            self.bytes += len(head)

    def _close_part(self) -> None:
        if self.pqw is not None:
            self.pqw.close()
            self.pqw = None
        if self.out is not None:
            if self.w.fmt == "parquet":
                self.bytes += self.out.tell()
            self.out.close()
            self.out = None

    def _header_for(self, names: list[str]) -> bytes:
        h = self.w.header
        if not h or not isinstance(self.enc, TextEncoder):
            return b""
        if isinstance(h, list):
            if len(h) != len(names):
                raise FatalError(
                    f"{self.w.ctx.path('header')}: {len(h)} names for the {len(names)} "
                    f"columns {names}"
                )
            names = h
        try:
            return self.enc.header(names)
        except DirtyRecordError as e:  # a name, not a row: every row was counted dirty
            why = e.reason.partition(": value ")[2]  # "'a,b' holds the field delimiter ..."
            raise FatalError(f"{self.w.ctx.path('header')}: the column name {why}") from None

    # -- writing

    def write(self, batch: pa.RecordBatch) -> None:
        if self.enc is None:
            self._write_parquet(batch)
            return
        if self.head is None:
            self.head = self._header_for(batch.schema.names)
        if batch.num_rows == 0:
            return
        pieces = self._encode(batch)  # everything encoded before a byte is written: all or nothing
        try:
            for data, size, rows in pieces:
                limit = self.w.max_size
                if (
                    self.out is not None
                    and limit
                    and self.part_rows
                    and self.part_bytes + size > limit
                ):
                    self._close_part()
                if self.out is None:
                    self._open_part()
                for b in data:
                    self.out.write(b)
                self.part_bytes += size
                self.part_rows += rows
                self.bytes += size
        except OSError as e:
            raise self.w.write_error(e, self.files[-1] if self.files else self.w.root) from e
        self.rows += batch.num_rows

    def _encode(self, batch: pa.RecordBatch) -> list[tuple[list[Any], int, int]]:
        assert self.enc is not None
        data = self.enc.encode(batch)
        size = sum(len(b) for b in data)
        limit = self.w.max_size
        if limit and batch.num_rows > 1 and size + len(self.head or b"") > limit:
            half = batch.num_rows // 2
            return self._encode(batch.slice(0, half)) + self._encode(batch.slice(half))
        return [(data, size, batch.num_rows)]

    def _write_parquet(self, batch: pa.RecordBatch) -> None:
        if self.pq_schema is None:
            self.pq_schema = batch.schema
        elif not batch.schema.equals(self.pq_schema):
            try:
                batch = batch.cast(self.pq_schema)
            except pa.ArrowInvalid as e:
                raise DirtyRecordError(f"does not fit the file's schema: {e}") from None
            except (pa.ArrowException, ValueError, TypeError) as e:
                raise FatalError(
                    f"a batch with schema {batch.schema} cannot go into a parquet file "
                    f"with schema {self.pq_schema}: {e}"
                ) from None
        if batch.num_rows == 0:
            return
        self.buf.append(batch)
        self.buf_rows += batch.num_rows
        self.buf_bytes += batch.nbytes
        self.rows += batch.num_rows
        limit = min(ROW_GROUP_BYTES, self.w.max_size or ROW_GROUP_BYTES)
        if self.buf_rows >= ROW_GROUP_ROWS or self.buf_bytes >= limit:
            self._flush()

    def _flush(self) -> None:
        if not self.buf:
            return
        table = pa.Table.from_batches(self.buf, self.pq_schema)
        try:
            if self.pqw is None:  # each file (part) chooses its dictionaries from its first group
                self._open_part()
                self.pqw = pq.ParquetWriter(
                    self.out,
                    self.pq_schema,
                    compression=self.w.parquet_codec,
                    use_dictionary=dictionary_columns(table),
                )
            self.pqw.write_table(table, row_group_size=ROW_GROUP_ROWS)
        except OSError as e:
            raise self.w.write_error(e, self.files[-1] if self.files else self.w.root) from e
        self.buf.clear()
        self.buf_rows = self.buf_bytes = 0
        del table
        self.release.tick()
        if self.w.max_size and self.out.tell() >= self.w.max_size:
            self._close_part()

    def close(self) -> Any:
        try:
            self._finish()
        except OSError as e:
            raise self.w.write_error(e, self.files[-1] if self.files else self.w.root) from e
        if isinstance(self.enc, JsonEncoder):
            self.enc.close()
        return {
            "index": self.index,
            "files": list(self.files),
            "rows": self.rows,
            "bytes": self.bytes,
        }

    def _finish(self) -> None:
        if self.enc is None:
            self._flush()
        if not self.files:  # an empty split still makes its file (with a header, or a schema)
            if self.enc is None:
                self._open_part()
                schema = self.pq_schema or self.w.schema or pa.schema([])
                self.pqw = pq.ParquetWriter(self.out, schema, compression=self.w.parquet_codec)
            else:
                if self.head is None and self.w.schema is not None:
                    self.head = self._header_for(self.w.schema.names)
                self._open_part()
        self._close_part()

    def discard(self) -> Any:
        with contextlib.suppress(Exception):
            self._close_part()
        if isinstance(self.enc, JsonEncoder):
            self.enc.close()
        for f in self.files:
            _quietly(self.w.fs.delete_file, f)
        return {"index": self.index, "files": list(self.files), "discarded": True}
