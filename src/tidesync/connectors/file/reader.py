"""The file reader (kind ``file`` / ``s3``; DataX ``txtfilereader``).

``path`` may be a file, a folder, a glob with ``* ? **``, or a list of them::

    {"path": "data/orders_*.csv.gz", "fileFormat": "csv", "skipHeader": true,
     "column": [{"index": 0, "type": "long"}, {"name": "paid_at", "type": "date",
                "format": "yyyy-MM-dd HH:mm:ss"}, {"type": "string", "value": "shop-1"}]}

Each file is at least one split; an uncompressed csv, text or jsonl file larger than
:data:`SPLIT_BYTES` is read in byte ranges (each range owns the lines that start in it) and a
large parquet file in groups of row groups. Fields are decoded by pyarrow's streaming readers in
large blocks and converted per column with Arrow compute; a value that does not convert makes
its row a dirty record (``Chunk.dirty``) while the rest of the batch goes on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from tidesync.connectors import base
from tidesync.connectors.file.columns import Binding, Column, bind, parse_columns
from tidesync.connectors.file.columns import assemble as _assemble
from tidesync.connectors.file.conn import (
    FORMATS,
    _csv_reader_config,
    _delimiter,
    _edge,
    _encoding,
    _filesystem,
    _object_store_keys,
    _raw_string,
    _store_error,
)
from tidesync.connectors.file.decode import Options, Piece, decoder_for
from tidesync.connectors.file.locate import (
    COMPRESSIONS,
    ascii_compatible,
    compression_of,
    expand,
    matches,
)
from tidesync.connectors.file.stage import pending
from tidesync.errors import ConfigError, FatalError, RetriableError, TidesyncError, did_you_mean

#: a file larger than this is read in several splits of about this size
SPLIT_BYTES = 64 << 20
#: the raw form of a local csv file handed over whole (see :meth:`Reader.read_raw`)
CSV_FILE = "csv-file"
#: column types and codecs a csv parser of the direct path reads as this reader does
DIRECT_TYPES = ("string", "long", "double", "boolean", "date")
DIRECT_COMPRESSIONS = (None, "gzip", "zstd")
#: how much of the first text file :meth:`Reader.estimate` reads to learn a line's width
SAMPLE_BYTES = 1 << 20


@dataclass(frozen=True)
class FileSplit(base.Split):
    """One file, or a byte range / row-group range of one (``stop`` < 0: to the end)."""

    source: int = 0  # which entry of ``path`` found it
    path: str = ""
    start: int = 0
    stop: int = -1
    compression: str | None = None
    final: str = ""  # a pending publish's file: ``path`` is its staged copy, read this once gone
    #: ``column: ["*"]`` of a self-describing format (parquet, jsonl): the first file's field
    #: names, which every file's fields are taken by (empty: each file as it is)
    names: tuple[str, ...] = ()
    #: and its schema (Arrow IPC bytes): every file's fields are converted to its types
    types: bytes = b""
    #: the file's size and modification time (whole seconds, -1: unknown) when it was listed:
    #: a file changed or replaced before it is read fails the split (see ``_unchanged``)
    size: int = -1
    mtime: int = -1


class Reader(base.Reader):
    kind = "file"

    def __init__(self, params: dict[str, Any], ctx: base.Context):
        super().__init__(params, ctx)
        p = self.p
        _object_store_keys(p)
        self.by_object = p.raw.get("object") is not None
        if self.by_object:  # DataX ossreader: keys, key prefixes or patterns in a bucket
            from tidesync.connectors.file.objectstore import object_urls

            paths: list[Any] = object_urls(p, ctx)
        else:
            paths = p.list("path", required=True) or []
        for i, v in enumerate(paths):
            if not isinstance(v, str) or not v.strip():
                p.problem(
                    f"path[{i}]" if len(paths) > 1 else "path",
                    f"must be a path or pattern, got {v!r}",
                )
        self.fmt = p.str("fileFormat", "csv", choices=FORMATS, lower=True)
        delimited = self.fmt in ("csv", "text")
        delimiter = _delimiter(p, self.fmt)
        # useTextQualifier: false reads csv as text (no quotes): the format decoding goes by
        decoding, skip_empty = _csv_reader_config(p, self.fmt, delimiter)
        if decoding == "csv" and not delimiter.isascii():
            # pyarrow's csv parser splits at one byte; "§" or "，" is two or three in UTF-8
            p.problem(
                "fieldDelimiter",
                f"{p.get('fieldDelimiter')!r}: csv is read with a delimiter of one ASCII "
                "character; use fileFormat text for this one (values are then never quoted)",
            )
        encoding = _encoding(p)
        skip_header = p.bool("skipHeader", False)
        null_format = _raw_string(p, "nullFormat", "\\N")
        compress = p.str("compress", None, choices=list(COMPRESSIONS), lower=True)
        self.compression = COMPRESSIONS[compress] if compress else None
        self.split_csv = p.bool("splitLargeFiles", True)
        self.cols = parse_columns(p, delimited, skip_header)
        if self.fmt != "jsonl":
            for c in self.cols or []:
                if c.optional:
                    p.problem(f"column[{c.pos}].optional", "is for jsonl keys, which may be absent")
        sources = [_filesystem(p, v, ctx) for v in paths if isinstance(v, str) and v.strip()]
        p.done()
        self.paths: list[str] = paths
        self.sources: list[tuple[pafs.FileSystem, str]] = [s for s in sources if s is not None]
        self.delimited = delimited
        self.opts = Options(
            decoding,
            delimiter,
            encoding,
            skip_header,
            null_format,
            ctx.batch_rows,
            every_field=self.cols is None,
            skip_empty=skip_empty,
        )
        # the files splits() found, as plain data (a reader pickles): (source, path, size)
        self._planned: list[tuple[int, str, int]] | None = None
        self.whole_files = False  # the direct path reads whole files: no byte ranges

    # -- planning

    def _files(self) -> Iterator[tuple[int, pafs.FileInfo, str]]:
        seen: set[tuple[str, str]] = set()
        missing = []
        for src, (fs, pattern) in enumerate(self.sources):
            found = self._found(fs, pattern)
            if not found:
                missing.append(self._shown(src, pattern))
            for info, final in found:
                if (fs.type_name, final or info.path) not in seen:
                    seen.add((fs.type_name, final or info.path))
                    yield src, info, final
        if missing:
            if self.by_object:
                edge = _edge(self.sources[0][0])
                where = (
                    f" ({edge.settings.where(self.sources[0][1].split('/')[0])})" if edge else ""
                )
                raise RetriableError(  # it may not have arrived yet: worth a retry
                    f"{self.ctx.path('object')}: no object matches "
                    f"{', '.join(map(repr, missing))}{where}"
                )
            raise RetriableError(
                f"{self.ctx.path('path')}: no file matches {', '.join(map(repr, missing))}"
            )

    def _found(self, fs: pafs.FileSystem, pattern: str) -> list[tuple[pafs.FileInfo, str]]:
        """The files ``pattern`` names, as a writer's pending publish makes them: its new files
        (read from where they are: staged, or already in place) in, the files it replaces or
        removes out. Each with its final path when it is read from a staged copy."""
        stagings: set[str] = set()
        infos = expand(fs, pattern, prefix=self.by_object, stagings=stagings)
        journals = pending(fs, stagings) if stagings else []
        if not journals:
            return [(i, "") for i in infos]
        new = {dst: src for j in journals for src, dst in j.moves}
        gone = {p for j in journals for p in j.deletes} - new.keys()
        listed = {i.path for i in infos}
        wanted = [d for d in new if d in listed or matches(pattern, d, self.by_object)]
        staged = dict(zip(wanted, fs.get_file_info([new[d] for d in wanted]), strict=True))
        out = [(i, "") for i in infos if i.path not in gone and i.path not in staged]
        for dst, info in staged.items():
            if info.type == pafs.FileType.File:
                out.append((info, dst))
            elif dst in listed:  # placed already
                out.append((next(i for i in infos if i.path == dst), ""))
            elif (placed := fs.get_file_info(dst)).type == pafs.FileType.File:
                out.append((placed, ""))  # placed since the listing
        return sorted(out, key=lambda x: x[1] or x[0].path)

    def _shown(self, src: int, pattern: str) -> str:
        if self.by_object:
            return pattern.partition("/")[2]
        return self.paths[src] if self.paths[src] == pattern else f"{self.paths[src]} ({pattern})"

    def splits(self, n: int) -> list[base.Split]:
        files = list(self._files())
        self._planned = [(src, info.path, info.size or 0) for src, info, _ in files]
        names: tuple[str, ...] = ()
        types = b""
        if self.cols is None and self.fmt in ("parquet", "jsonl") and len(files) > 1:
            first = self.schema()
            if first is not None:
                names, types = tuple(first.names), first.serialize().to_pybytes()
        elif self.fmt in ("parquet", "jsonl") and len(files) > 1 and self._by_index():
            names = tuple(self._first_fields())
        elif self.cols is None and self.delimited and len(files) > 1:
            names = tuple(self._fields_of(*files[0]))
        out: list[base.Split] = []
        for src, info, final in files:
            shown = final or info.path
            for start, stop, comp in self._pieces(src, info, final):
                label = shown if stop < 0 else f"{shown} [{start}:{stop}]"
                out.append(
                    FileSplit(
                        len(out),
                        label,
                        src,
                        info.path,
                        start,
                        stop,
                        comp,
                        final,
                        names,
                        types,
                        *_stamp(info),
                    )
                )
        return out

    def _pieces(
        self, src: int, info: pafs.FileInfo, final: str = ""
    ) -> list[tuple[int, int, str | None]]:
        size = info.size or 0
        if self.fmt == "parquet":
            if size <= SPLIT_BYTES:
                return [(0, -1, None)]
            fs = self.sources[src][0]
            with fs.open_input_file(info.path) as f:
                md = pq.ParquetFile(f).metadata
            groups: list[tuple[int, int, str | None]] = []
            first = acc = 0
            for i in range(md.num_row_groups):
                acc += md.row_group(i).total_byte_size
                if acc >= SPLIT_BYTES and i + 1 < md.num_row_groups:
                    groups.append((first, i + 1, None))
                    first, acc = i + 1, 0
            groups.append((first, md.num_row_groups, None))
            return groups
        comp = self.compression or compression_of(final or info.path)
        splittable = (
            not self.whole_files
            and comp is None
            and size > SPLIT_BYTES
            and ascii_compatible(self.opts.encoding)
            and (self.fmt != "csv" or self.split_csv)
        )
        if not splittable:
            return [(0, -1, comp)]
        count = -(-size // SPLIT_BYTES)
        step = -(-size // count)
        return [(s, min(s + step, size), None) for s in range(0, size, step)]

    def estimate(self) -> int | None:
        """The rows of the planned files: parquet footers' counts; for csv, text and jsonl,
        their size over the mean line width of the first file's first MiB (less a header per
        file). None for compressed files and UTF-16/32 text, whose size says little."""
        files = self._planned
        if files is None:
            return None
        if self.fmt == "parquet":
            total = 0
            for src, path, _size in files:
                with self.sources[src][0].open_input_file(path) as f:
                    total += pq.ParquetFile(f).metadata.num_rows
            return total
        if not files:
            return 0
        if not ascii_compatible(self.opts.encoding) or any(
            self.compression or compression_of(path) for _, path, _size in files
        ):
            return None
        src, first, _size = files[0]
        with self.sources[src][0].open_input_stream(first, compression=None) as f:
            sample = f.read(SAMPLE_BYTES)
        lines = sample.count(b"\n")
        if len(sample) < SAMPLE_BYTES and sample and not sample.endswith(b"\n"):
            lines += 1  # the whole file, its last line without a line end
        if not lines:
            return None
        rows = round(sum(size for _, _path, size in files) * lines / len(sample))
        if self.delimited and self.opts.skip_header:
            rows -= len(files)
        return max(rows, 0)

    # -- reading

    def _by_index(self) -> bool:
        return any(c.index is not None for c in self.cols or [])

    def _first_fields(self) -> list[str]:
        """parquet, jsonl: the first file's field names (jsonl: its first megabyte's keys)."""
        for fs, pattern in self.sources:
            found = self._found(fs, pattern)
            if found:
                info, final = found[0]
                comp = self.compression or compression_of(final or info.path)
                piece = Piece(info.path, compression=None if self.fmt == "parquet" else comp)
                with (
                    _translated(fs, info.path, self.opts.encoding),
                    decoder_for(self.opts)(fs, piece, self.opts, self.ctx.path) as dec,
                ):
                    return dec.fields()[0]
        return []

    def _fields_of(self, src: int, info: pafs.FileInfo, final: str) -> list[str]:
        """A csv or text file's fields: its header's names, or ``c0, c1, ...``."""
        fs = self.sources[src][0]
        piece = Piece(info.path, compression=self.compression or compression_of(final or info.path))
        with (
            _translated(fs, info.path, self.opts.encoding),
            decoder_for(self.opts)(fs, piece, self.opts, self.ctx.path) as dec,
        ):
            return dec.fields()[0]

    def _bind(
        self,
        fields: list[str],
        keys: list[str],
        natural: pa.Schema | None,
        file: str,
        names: tuple[str, ...] = (),
        first: pa.Schema | None = None,
    ) -> Binding:
        cols = self.cols
        if cols is None and names and self.delimited:
            # csv and text: every file has the first one's fields (in another order: read by
            # name). A file with a column more, or another header, gave batches of other columns
            # and the run succeeded (a Parquet target got files of several schemas)
            if list(fields) != list(names):
                by_name = (
                    self.opts.skip_header
                    and sorted(fields) == sorted(names)
                    and len(set(names)) == len(names)
                )
                if not by_name:
                    raise FatalError(
                        f"{self.ctx.path('column')}: {file} has the fields {list(fields)} where "
                        f"the first file has {list(names)}; name the columns to read in column"
                    )
                cols = [Column(i, "string", pa.string(), lookup=n) for i, n in enumerate(names)]
        elif cols is None and names:
            # every file by the first one's field names: the same columns in another order were
            # taken by position, a's values under b's name, and the run succeeded
            extra = [f for f in fields if f not in names]
            missing = [n for n in names if n not in fields]
            if extra or (missing and self.fmt == "parquet"):
                raise FatalError(
                    f"{self.ctx.path('column')}: {file} has "
                    + "; ".join(
                        x
                        for x in (
                            f"fields {extra} the first file lacks" if extra else "",
                            f"no field {missing}" if missing else "",
                        )
                        if x
                    )
                    + f" (the first file's: {list(names)}); name the columns to read in column"
                )
            # and converted to the first file's types (a value that does not convert is a dirty
            # record): an int column in one file and a string one in the next went through as
            # they were, and a Parquet target got files of one name and several types
            typed = first if first is not None else natural
            cols = [
                Column(
                    i,
                    "",
                    typed.field(n).type if typed is not None and n in typed.names else None,
                    lookup=n,
                    zone=self.ctx.timezone,
                )
                for i, n in enumerate(names)
            ]
        elif cols is not None and names and not self.delimited:
            # index N: the first file's Nth field, taken by name in every file. A jsonl
            # object's keys (a parquet file's columns) in another order gave one column
            # another's values, and the run succeeded
            cols = [
                replace(c, index=None, lookup=names[c.index])
                if c.index is not None and c.index < len(names)
                else c
                for c in cols
            ]
        elif cols is None and self.fmt == "jsonl" and natural is not None:
            cols = [Column(i, "", f.type, index=i) for i, f in enumerate(natural)]
        return bind(
            cols,
            fields,
            keys,
            self.delimited,
            missing_ok=self.fmt == "jsonl",
            where=self.ctx.path,
            file=file,
        )

    def read(self, split: base.Split) -> Iterator[pa.RecordBatch | base.Chunk]:
        assert isinstance(split, FileSplit)
        fs = self.sources[split.source][0]
        path = _unchanged(fs, split)
        piece = Piece(path, split.start, split.stop, split.compression)
        with (
            _translated(fs, split.final or path, self.opts.encoding),
            decoder_for(self.opts)(fs, piece, self.opts, self.ctx.path) as dec,
        ):
            fields, keys, natural = dec.fields()
            if not keys and dec.empty():
                return
            first = pa.ipc.read_schema(pa.py_buffer(split.types)) if split.types else None
            binding = self._bind(fields, keys, natural, split.path, split.names, first)
            dec.declared = _pinned(binding)
            dec.watch = self._watched()
            row = 0
            where = _Where(dec)
            for batch, dirty in dec.batches([k for k in binding.keys if k is not None]):
                out, bad = _assemble(batch, binding, where.after(row))
                row += batch.num_rows
                if dirty or bad:
                    yield base.Chunk(out, dirty + bad)
                elif out is not None and out.num_rows:
                    yield out
            if (
                dec.watch
            ):  # for finished(): rows, the keys it saw, the first MB's (if it missed one)
                missed = len(dec.seen) < len(dec.watch)
                yield base.Chunk(
                    None, facts=(row, sorted(dec.seen), list(fields) if missed else [])
                )

    def _watched(self) -> list[str]:
        """The jsonl keys ``column`` names (not optional) that some line must hold."""
        if self.fmt != "jsonl" or self.cols is None:
            return []
        return list(dict.fromkeys(c.lookup for c in self.cols if c.lookup and not c.optional))

    def finished(self, facts: list[Any]) -> None:
        """A jsonl key ``column`` names that no line of the whole input holds is a mistyped
        key (``custmer``): read as NULL in every row, the run succeeded. A key some lines lack
        is NULL there, as it was; one absent from a whole run is marked ``optional``."""
        rows = sum(f[0] for f in facts)
        if not rows:
            return
        seen = {k for f in facts for k in f[1]}
        keys = list(dict.fromkeys(k for f in facts for k in f[2]))
        problems = [
            f"{self.ctx.path(f'column[{c.pos}].name')}: no line of the {rows} rows read has "
            f"the key {c.lookup!r}, nothing was published{did_you_mean(c.lookup, keys)} (a key "
            'that may be absent from a whole run is marked "optional": true)'
            for c in self.cols or []
            if c.lookup and not c.optional and c.lookup not in seen
        ]
        if problems and self.fmt == "jsonl":
            raise ConfigError(problems)

    def schema(self) -> pa.Schema | None:
        cols = self.cols
        if cols is not None and all(self._known(c) for c in cols):
            width = max((c.index for c in cols if c.index is not None), default=-1) + 1
            keys = [f"c{i}" for i in range(width)]
            return bind(cols, keys, keys, self.delimited, True, self.ctx.path, "").schema()
        for fs, pattern in self.sources:
            found = self._found(fs, pattern)
            if not found:
                continue
            info, final = found[0]
            piece = Piece(
                info.path,
                compression=None
                if self.fmt == "parquet"
                else self.compression or compression_of(final or info.path),
            )
            with (
                _translated(fs, info.path, self.opts.encoding),
                decoder_for(self.opts)(fs, piece, self.opts, self.ctx.path) as dec,
            ):
                fields, keys, natural = dec.fields()
                if not keys:
                    return None
                return self._bind(fields, keys, natural, info.path).schema(natural)
        return None

    # -- the direct path: a writer that parses csv itself takes the file as it is

    def raw_forms(self) -> tuple[str, ...]:
        """``csv-file`` (:data:`CSV_FILE`) when the files may be handed over as they are."""
        self.raw_refusal = self.direct_refusal()
        return () if self.raw_refusal else (CSV_FILE,)

    def direct_refusal(self) -> str:
        """Why the files cannot be handed over as :data:`CSV_FILE` ("" when they can): local
        csv in UTF-8, every ``column`` entry a field of a type such a parser reads alike."""
        if self.fmt != "csv":
            return f"fileFormat is {self.fmt}"
        if self.opts.fmt != "csv":
            return "csvReaderConfig.useTextQualifier is false"
        if self.by_object or any(
            not isinstance(fs, pafs.LocalFileSystem) for fs, _ in self.sources
        ):
            return "the files are not local"
        if self.opts.encoding != "utf-8":
            return f"the encoding is {self.opts.encoding}"
        if self.compression not in DIRECT_COMPRESSIONS:
            return f"the files are {self.compression}-compressed"
        for c in self.cols or []:
            if c.const is not None:
                return f"column[{c.pos}] is a constant"
            if c.type not in DIRECT_TYPES:
                return f"column[{c.pos}] is of type {c.label}"
            # DuckDB's cast takes a time under yyyy-MM-dd, which the pattern refuses
            if c.date is not None and (not c.date.iso or c.date.zoned or c.date.iso_width):
                return f"column[{c.pos}] has the date format {c.date.java!r}"
        return ""

    def raw_chosen(self, form: str) -> None:
        self.whole_files = True  # the other side's parser reads a file from its start

    def read_raw(self, split: base.Split, form: str) -> Iterator[base.Raw]:
        """One :data:`CSV_FILE` piece: the file, its fields and how each column is read (the
        header and the ``column`` entries bound as :meth:`read` binds them)."""
        assert isinstance(split, FileSplit) and form == CSV_FILE
        if split.stop >= 0 or split.start:
            raise base.DirectFallback(f"{split.label} is a byte range of a large file")
        if split.compression not in DIRECT_COMPRESSIONS:
            raise base.DirectFallback(f"{split.label} is {split.compression}-compressed")
        fs = self.sources[split.source][0]
        path = _unchanged(fs, split)
        if any(c in path for c in "*?[]{}"):  # another parser may take them for a pattern
            raise base.DirectFallback(f"{split.label}: the name holds a pattern character")
        piece = Piece(path, compression=split.compression)
        with (
            _translated(fs, split.final or path, self.opts.encoding),
            decoder_for(self.opts)(fs, piece, self.opts, self.ctx.path) as dec,
        ):
            fields, keys, natural = dec.fields()
            if not keys:
                return
            if len(keys) == 1:  # DuckDB skips empty lines, which are rows of such a file
                raise base.DirectFallback(f"{split.label} has one field")
            if self.opts.skip_header and dec.above:  # DuckDB reads the header as data
                raise base.DirectFallback(f"{split.label} has empty lines above its header")
            binding = self._bind(fields, keys, natural, split.path, split.names)
            size = fs.get_file_info(path).size or 0
        columns = [
            [int(key[1:]), name, col.type]
            for col, key, name in zip(binding.cols, binding.keys, binding.names, strict=True)
            if key is not None
        ]
        yield base.Raw(
            CSV_FILE,
            {
                "path": path,
                "fields": len(keys),
                "columns": columns,
                "delimiter": self.opts.delimiter,
                "header": self.opts.skip_header,
                "null": self.opts.null_format,
                "compression": split.compression,
                "label": split.final or split.path,
            },
            nbytes=size,
        )

    def _known(self, c: Column) -> bool:
        """Whether a column's output name and type are known without opening a file."""
        named = (
            c.const is not None
            or c.name is not None
            or (c.index is not None and self.delimited and not self.opts.skip_header)
        )
        return named and c.arrow is not None


def _pinned(binding: Binding) -> dict[str, pa.DataType]:
    """The type jsonl parses a number field as: string where a column reads it as a string
    (pyarrow then refuses a block holding a number there, and the block is parsed line by line,
    where a number keeps its text: pyarrow would print the double, ``1.50`` as ``1.5``, so the
    text would depend on whether a bad line sent the block that way); else the decimal type
    every column reading it declares (converted from its text); a field also read as another
    type is left to the conversion."""
    types: dict[str, set[pa.DataType]] = {}
    for col, key in zip(binding.cols, binding.keys, strict=True):
        if key is not None:
            types.setdefault(key, set()).add(col.arrow)
    out = {}
    for k, ts in types.items():
        if pa.string() in ts:
            out[k] = pa.string()
        elif len(ts) == 1 and (t := next(iter(ts))) is not None and pa.types.is_decimal(t):
            out[k] = t
    return out


class _Where:
    """Where a row of a split is: ``file row N, line L`` (the file line it starts on, 1-based,
    the header counted). Lines are found only when a row is dirty, by reading the piece again
    up to it; rows are asked for in order, so one pass serves a split's dirty rows."""

    def __init__(self, dec: Any):
        self.dec = dec
        self.lines: Iterator[int] | None = None
        self.row, self.line = -1, 0  # the last row the line reader stands on

    def after(self, first: int) -> Callable[[int], str]:
        """Where the rows of a batch whose first row is the split's row ``first`` are."""
        return lambda i: self(first + i)

    def __call__(self, row: int) -> str:
        text = f"{self.dec.label} row {row}"
        if self.lines is None or row < self.row:
            self.lines = self.dec.row_lines()
            self.row = -1
        if self.lines is None:
            return text
        while self.row < row:
            line = next(self.lines, None)
            if line is None:  # (the file changed under us)
                self.lines = iter(())
                return text
            self.row, self.line = self.row + 1, line
        return f"{text}, line {self.line}"


def _stamp(info: pafs.FileInfo) -> tuple[int, int]:
    """A listed file's size and modification time in whole seconds (an object store lists
    milliseconds but answers a HEAD in seconds), -1 where unknown."""
    mtime = info.mtime
    return (-1 if info.size is None else info.size), (
        -1 if mtime is None else int(mtime.timestamp())
    )


def _unchanged(fs: pafs.FileSystem, split: FileSplit) -> str:
    """The path to read ``split`` from, which must be the file that was listed when the job was
    planned: a file deleted, grown, shrunk or rewritten since then fails the split (its rows
    would be other rows than planned, or some of them read twice or not at all) rather than
    being read as it is now; a changed one is retriable (a rerun plans it anew). A pending
    publish's staged copy may have been placed meanwhile: then the file at its final path (a
    copy, of the same size) is read."""
    info = fs.get_file_info(split.path)
    path, mtime = split.path, split.mtime
    if split.final and info.type != pafs.FileType.File:
        path, mtime = split.final, -1  # the pending publish placed it meanwhile
        info = fs.get_file_info(path)
    shown = split.final or split.path
    if info.type == pafs.FileType.Directory and getattr(fs, "handler", None) is not None:
        # listed as a file, a folder now: an object store lists a key ending in '/' that
        # holds data as a file without the '/', where no object is
        raise FatalError(
            f"{shown}: no such object; the key {split.path.partition('/')[2] + '/'!r} holds "
            "data, but a key ending in '/' names a folder, which cannot be read as an object: "
            "copy it to a key without the trailing '/'"
        )
    if info.type != pafs.FileType.File:
        raise FatalError(f"{shown}: no such file (it was listed when the job was planned)")
    size, now = _stamp(info)
    if split.size >= 0 and size != split.size:
        what = f"{split.size} bytes when listed, {size} now"
    elif mtime >= 0 and now >= 0 and now != mtime:
        what = "rewritten since it was listed"
    else:
        return path
    raise RetriableError(  # still being written, most likely: a rerun plans it anew
        f"{shown}: the file changed after the job was planned ({what}); "
        "run the job again once it is complete"
    )


@contextlib.contextmanager
def _translated(fs: pafs.FileSystem, path: str, encoding: str) -> Iterator[None]:
    """Source failures as FatalError naming the file (and the fix, where one is likely); an
    object store's as its edge translates them (RetriableError for transient ones)."""
    try:
        yield
    except TidesyncError:
        raise
    except FileNotFoundError:
        raise FatalError(f"{path}: no such file (it was listed when the job was planned)") from None
    except (UnicodeDecodeError, pa.ArrowException, OSError, ValueError) as e:
        if isinstance(e, OSError) and "AWS Error" in str(e):
            err = _store_error(fs, e, "read", path)
            if err is not None:
                raise err from e
        msg = str(e)
        hint = ""
        if isinstance(e, UnicodeDecodeError) or "utf8" in msg.lower() or "utf-8" in msg.lower():
            hint = f"; the file is not valid {encoding}: set encoding (gbk, gb18030, latin-1 ...)"
        raise FatalError(f"{path}: {msg}{hint}") from e
