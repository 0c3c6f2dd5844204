"""Decoders: one split of one file (csv, text, jsonl, parquet) as raw Arrow batches.

A decoder first tells the file's fields (header, schema), so the reader can bind its ``column``
entries, then yields ``(batch, dirty)`` pairs holding the fields asked for. Delimited fields come
as strings named ``c0, c1, ...`` (the header may repeat or omit names); jsonl and parquet fields
keep their names and natural types. Rows that cannot be decoded at all (a line with the wrong
number of fields, a line that is not JSON) come back as dirty records.
"""

from __future__ import annotations

import contextlib
import csv
import decimal
import io
import json
import re
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.json as pajson
import pyarrow.parquet as pq

from tidesync.connectors.base import Dirty
from tidesync.connectors.file.locate import first_line, line_start, not_compressed, text_blocks
from tidesync.errors import FatalError

#: bytes handed to pyarrow's CSV/JSON parsers at a time (each becomes about one batch)
BLOCK_BYTES = 16 << 20
#: the lines in the first bytes of a jsonl file fix its fields' types (for every split of it)
_SAMPLE_BYTES = 1 << 20

Batches = Iterator[tuple[pa.RecordBatch, list[Dirty]]]


@dataclass(frozen=True)
class Options:
    """What the reader's parameters say about decoding (plain data)."""

    fmt: str
    delimiter: str
    encoding: str  # Python codec name
    skip_header: bool
    null_format: str
    batch_rows: int
    every_field: bool = False  # column ["*"]: a jsonl key its fields lack is an error
    #: csvReaderConfig.skipEmptyRecords: whether an empty line of a file of one field is no row
    #: (None: it is a row, as the writer writes it)
    skip_empty: bool | None = None

    def empty_lines_are_rows(self, width: int) -> bool:
        return width == 1 and not self.skip_empty

    @property
    def quoted(self) -> bool:
        return self.fmt == "csv"


@dataclass(frozen=True)
class Piece:
    """The part of a file a split reads: bytes [start, stop) of an uncompressed file (lines that
    start there), row groups [start, stop) of a parquet file, or the whole file (stop < 0)."""

    path: str
    start: int = 0
    stop: int = -1
    compression: str | None = None

    @property
    def whole(self) -> bool:
        return self.stop < 0


class Decoder(contextlib.AbstractContextManager["Decoder"]):
    """Base: opens the piece's byte stream and closes what it opened."""

    def __init__(self, fs: pafs.FileSystem, piece: Piece, opts: Options, where: Any):
        self.fs, self.piece, self.opts, self.where = fs, piece, opts, where
        self.label = piece.path if piece.whole else f"{piece.path} [{piece.start}:{piece.stop}]"
        self._stack = contextlib.ExitStack()
        self.owns_first_line = piece.start == 0
        self.above = 0  # empty lines above the first line with text (see _first_line)
        self.header_lines = 1  # the lines it spans (a quoted value may hold line breaks)
        #: the decimal type every ``column`` entry reading a key declares, by key (set by the
        #: reader before ``batches``; jsonl converts such a number from its text)
        self.declared: dict[str, pa.DataType] = {}
        #: jsonl: the keys ``column`` names (set by the reader before ``batches``), and those of
        #: them some line of the piece holds (``seen``, filled by ``batches``)
        self.watch: list[str] = []
        self.seen: set[str] = set()

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def fields(self) -> tuple[list[str], list[str], pa.Schema | None]:
        """(field names, keys the batches use, natural schema by key when known)."""
        raise NotImplementedError

    def batches(self, keys: list[str]) -> Batches:
        raise NotImplementedError

    def empty(self) -> bool:
        """Whether the piece holds nothing to read, after ``fields`` gave no field (csv, text:
        no line; jsonl: see there)."""
        return True

    def _stream(self) -> pa.NativeFile | None:
        """The piece's bytes, decompressed; None when the byte range holds no line start."""
        piece = self.piece
        if piece.whole:
            return self._stack.enter_context(
                self.fs.open_input_stream(piece.path, compression=piece.compression)
            )
        f = self._stack.enter_context(self.fs.open_input_file(piece.path))
        size = f.size()
        start = line_start(f, piece.start, size)
        stop = size if piece.stop >= size else line_start(f, piece.stop, size)
        self.at_end = stop >= size
        if start >= stop:
            return None
        return f.get_stream(start, stop - start)

    def _first_line(self) -> str | None:
        """The file's first line with text (the header, with ``skipHeader``); ``self.above``
        the empty lines before it."""
        with self.fs.open_input_stream(self.piece.path, compression=self.piece.compression) as s:
            line, self.above = first_line(s, self.opts.encoding, self.piece.path)
        return line

    def row_lines(self) -> Iterator[int] | None:
        """The file line (1-based, the header counted) each row of this piece starts on, in row
        order; None where lines do not apply (parquet) or would cost reading the whole file
        before the piece from an object store. Read anew, only when a row is dirty."""
        return None

    def _text_lines(self) -> tuple[Iterator[str], int] | None:
        """The piece's text, line by line (line ends kept), and the file line it starts on."""
        piece = self.piece
        first = 1
        if piece.whole:
            raw: Any = self.fs.open_input_stream(piece.path, compression=piece.compression)
        else:
            if self.fs.type_name != "local" and piece.start > 0:
                return None
            f = self.fs.open_input_file(piece.path)
            size = f.size()
            start = line_start(f, piece.start, size)
            stop = size if piece.stop >= size else line_start(f, piece.stop, size)
            off = 0
            while off < start:  # lines before the piece: count their ends
                chunk = f.read_at(min(BLOCK_BYTES, start - off), off)
                first += chunk.count(b"\n")
                off += len(chunk)
            raw = f.get_stream(start, stop - start)
        self._stack.enter_context(raw)
        text = io.TextIOWrapper(io.BufferedReader(_RawIO(raw)), self.opts.encoding, newline="")
        return iter(text), first


class Delimited(Decoder):
    """csv and single-character text through pyarrow's streaming CSV reader (large blocks,
    threads); every field read as a string, the conversion comes later and vectorized."""

    def fields(self) -> tuple[list[str], list[str], pa.Schema | None]:
        line = self._first_line()
        if line is None:
            self.names: list[str] = []
            return [], [], None
        o = self.opts
        # a quoted field may hold the delimiter or a line break: the first record, as csv
        # reads it (pyarrow's read_csv refuses a lone header line: the header was split at
        # every delimiter, quotes kept, '"id"' named the column and "a,b" made two)
        names = self._first_record() if o.quoted and '"' in line else line.split(o.delimiter)
        keys = [f"c{i}" for i in range(len(names))]
        self.names = keys
        return (names if o.skip_header else keys), keys, None

    def _first_record(self) -> list[str]:
        o = self.opts
        with self.fs.open_input_stream(self.piece.path, compression=self.piece.compression) as s:
            text = io.TextIOWrapper(io.BufferedReader(_RawIO(s)), o.encoding, newline="")
            lines = (line.removeprefix("\ufeff") if i == 0 else line for i, line in enumerate(text))
            reader = csv.reader(lines, delimiter=o.delimiter, quotechar='"', strict=False)
            for record in reader:
                if record:
                    self.header_lines = reader.line_num - self.above
                    return record
        return []

    def row_lines(self) -> Iterator[int] | None:
        return _csv_lines(self, len(self.names))

    def batches(self, keys: list[str]) -> Batches:
        if not self.names:
            return
        stream = self._stream()
        if stream is None:
            return
        o = self.opts
        width = len(self.names)
        needed = list(dict.fromkeys(keys)) or self.names[:1]
        # A quote left open runs to the end of the piece. Where the piece ends the file and every
        # field is parsed, the last row shows it (a value holding a line break), at no cost; else
        # the quotes are counted on the way to the parser (a copy of every block through Python:
        # 4-5% more CPU in a csv -> Parquet run).
        last_row_shows = (self.piece.whole or self.at_end) and len(set(needed)) == width
        counter = None
        if o.quoted and not last_row_shows:
            stream = counter = _QuoteCounter(stream)
        dirty: deque[Dirty] = deque()  # filled from pyarrow's parsing threads

        def invalid(row: Any) -> str:
            dirty.append(
                Dirty(
                    f"{row.actual_columns} fields where the file has {row.expected_columns}",
                    {"line": row.text},
                    f"{self.label}" if row.number is None else f"{self.label} line {row.number}",
                )
            )
            return "skip"

        lines = _LinesOfBadRows(lambda: _csv_records(self, width), width, self.label)

        def drained() -> list[Dirty]:
            return lines.place(_drain(dirty))

        reader = pacsv.open_csv(
            stream,
            read_options=pacsv.ReadOptions(
                use_threads=True,
                block_size=BLOCK_BYTES,
                column_names=self.names,
                # pyarrow counts lines here, empty ones too (those above the header are
                # skipped with it), not records
                skip_rows=self.header_lines + self.above
                if o.skip_header and self.owns_first_line
                else 0,
                encoding="utf8" if o.encoding == "utf-8" else o.encoding,
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=o.delimiter,
                quote_char='"' if o.quoted else False,
                double_quote=o.quoted,
                newlines_in_values=o.quoted,
                # in a file of one field an empty line is a row: its value empty (or NULL),
                # as the writer writes it (unless csvReaderConfig.skipEmptyRecords says no);
                # in wider files it cannot be a row
                ignore_empty_lines=not o.empty_lines_are_rows(width),
                invalid_row_handler=invalid,
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={k: pa.string() for k in needed},
                include_columns=needed,
                null_values=[o.null_format],
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,  # "" is a value even where an empty field is NULL
            ),
        )
        last = None
        for batch in reader:
            if batch.num_rows:
                last = batch
            yield batch, drained()
        if dirty:
            yield pa.RecordBatch.from_pylist([], schema=reader.schema), drained()
        if o.quoted and counter is None:
            if last is not None and _holds_a_line_break(last.slice(last.num_rows - 1)):
                self._no_quote_open_at_end(width)
            return
        if counter is not None and counter.quotes % 2:
            if self.piece.whole or self.at_end:
                self._no_quote_open_at_end(width)
                return
            raise FatalError(
                f"{self.where('splitLargeFiles')}: a quoted value in {self.piece.path} holds a line "
                f"break at byte {self.piece.stop}, where the file is split for parallel reading; "
                "set splitLargeFiles: false to read it in one piece"
            )

    def _no_quote_open_at_end(self, width: int) -> None:
        """pyarrow takes a quote never closed as a value running to the end of the file, the
        lines after it included (rows lost, the run succeeded). An odd number of quotes says
        it may be so (a quote inside an unquoted value is an ordinary character); the last
        record, parsed strictly, says whether it is."""
        last = None
        for at, _n, text in _csv_records(self, width):
            last = at, text
        if last is None:
            return
        at, text = last
        try:
            rows = csv.reader(
                io.StringIO(text, newline=""), delimiter=self.opts.delimiter, strict=True
            )
            for _ in rows:
                pass
        except csv.Error as e:
            if "unexpected end of data" in str(e):
                raise FatalError(
                    f"{self.label} line {at}: a quoted value is not closed before the end of "
                    "the file (the lines after its quote would be read as part of it)"
                ) from None


def _holds_a_line_break(row: pa.RecordBatch) -> bool:
    """Whether a one-row batch of text holds a line break in some value."""
    return any(isinstance(v, str) and ("\n" in v or "\r" in v) for v in row.to_pylist()[0].values())


def _csv_lines(dec: Decoder, width: int) -> Iterator[int]:
    """Where each row of a delimited piece starts, as pyarrow's parser makes rows: a quoted
    value may span lines; empty lines, the header and rows of the wrong width are not rows."""
    for at, n, _ in _csv_records(dec, width):
        if n == width:
            yield at


def _csv_records(dec: Decoder, width: int) -> Iterator[tuple[int, int, str]]:
    """Each record of a delimited piece (header and empty lines left out, except in a file of
    ``width`` 1, where an empty line is a record): the file line it starts on, its number of
    fields, and its text as pyarrow's invalid-row handler shows it."""
    found = dec._text_lines()
    if found is None:
        return
    lines, first = found
    held: list[str] = []

    def kept() -> Iterator[str]:
        for line in lines:
            held.append(line)
            yield line

    o = dec.opts
    reader = csv.reader(
        kept(),
        delimiter=o.delimiter,
        quotechar='"' if o.quoted else None,
        quoting=csv.QUOTE_MINIMAL if o.quoted else csv.QUOTE_NONE,
        doublequote=o.quoted,
        strict=False,
    )
    header = o.skip_header and dec.owns_first_line
    begin = first
    for record in reader:
        at, begin = begin, first + reader.line_num
        text = "".join(held).rstrip("\r\n")
        held.clear()
        if not record:
            if not o.empty_lines_are_rows(width) or header:
                continue
            record = [""]
        if header:
            header = False
            continue
        yield at, len(record), text


class _LinesOfBadRows:
    """File lines of the rows pyarrow refused for their width. pyarrow parses in threads and
    then reports no line number, so the piece is walked once more, only when a row was refused,
    and each refused row is matched to its text (equal texts in file order)."""

    def __init__(
        self, records: Callable[[], Iterator[tuple[int, int, str]]], width: int, label: str
    ):
        self.records, self.width, self.label = records, width, label
        self.found: dict[str, deque[int]] | None = None

    def place(self, ds: list[Dirty]) -> list[Dirty]:
        """``ds`` with each refused row's position naming its line where it can be found."""
        for i, d in enumerate(ds):
            if d.position == self.label:
                at = self.line(d.row["line"])
                if at is not None:
                    ds[i] = replace(d, position=f"{self.label} line {at}")
        return ds

    def line(self, text: str) -> int | None:
        if self.found is None:
            self.found = {}
            with contextlib.suppress(Exception):  # a line number is a courtesy, never a failure
                for at, n, t in self.records():
                    if n != self.width:
                        self.found.setdefault(t, deque()).append(at)
        q = self.found.get(text)
        return q.popleft() if q else None


def _drain(q: deque[Dirty]) -> list[Dirty]:
    out = []
    while q:
        out.append(q.popleft())
    return out


class _RawIO(io.RawIOBase):
    """A pyarrow stream as a Python binary file, for ``io.TextIOWrapper``."""

    def __init__(self, raw: pa.NativeFile):
        self.raw = raw

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        b[: len(data)] = data
        return len(data)


class _QuoteCounter:
    """Counts quote characters on the way to the CSV parser: a byte range that starts outside
    quotes ends outside them exactly when it holds an even number (doubled quotes included)."""

    def __init__(self, raw: pa.NativeFile):
        self.raw = raw
        self.quotes = 0
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        data: bytes = self.raw.read(n)
        self.quotes += data.count(b'"')
        return data

    def readable(self) -> bool:
        return True


class SplitLines(Decoder):
    """text with a multi-character or non-ASCII delimiter: lines split vectorized
    (``split_pattern``)."""

    def fields(self) -> tuple[list[str], list[str], pa.Schema | None]:
        line = self._first_line()
        names = [] if line is None else line.split(self.opts.delimiter)
        self.names = [f"c{i}" for i in range(len(names))]
        return (names if self.opts.skip_header else self.names), self.names, None

    def row_lines(self) -> Iterator[int] | None:
        width = len(self.names)
        return (at for at, n, _ in self._records() if n == width)

    def _records(self) -> Iterator[tuple[int, int, str]]:
        """Each line with text (header left out; in a file of one field every line after the
        header): its file line, field count and text."""
        found = self._text_lines()
        if found is None:
            return
        lines, first = found
        skip = self.opts.skip_header and self.owns_first_line
        width = len(self.names)
        for n, line in enumerate(lines, first):
            text = line.rstrip("\r\n")
            if not text and (not self.opts.empty_lines_are_rows(width) or skip):
                continue
            if skip:
                skip = False
            else:
                yield n, len(text.split(self.opts.delimiter)), text

    def batches(self, keys: list[str]) -> Batches:
        if not self.names:
            return
        stream = self._stream()
        if stream is None:
            return
        o = self.opts
        width = len(self.names)
        skip = o.skip_header and self.owns_first_line
        placed = _LinesOfBadRows(self._records, width, self.label)
        for text in text_blocks(stream, o.encoding, BLOCK_BYTES):
            lines = pc.split_pattern(pa.array([text], pa.large_string()), "\n").values
            if text.endswith("\n"):  # what follows the last line end is no line
                lines = lines.slice(0, len(lines) - 1)
            lines = pc.utf8_rtrim(lines, characters="\r")
            if not o.empty_lines_are_rows(width):  # (see Delimited)
                lines = lines.filter(pc.greater(pc.binary_length(lines), 0))
            if skip:  # the header: the first line with text
                found = pc.indices_nonzero(pc.greater(pc.binary_length(lines), 0))
                if len(found):
                    lines, skip = lines.slice(found[0].as_py() + 1), False
                else:
                    lines = lines.slice(len(lines))
            parts = pc.split_pattern(lines, o.delimiter)
            bad = pc.not_equal(pc.list_value_length(parts), width)
            dirty = []
            if pc.any(bad).as_py():
                for i in pc.indices_nonzero(bad).to_pylist():
                    n = len(parts[i])
                    dirty.append(
                        Dirty(
                            f"{n} fields where the file has {width}",
                            {"line": lines[i].as_py()},
                            self.label,
                        )
                    )
                parts = parts.filter(pc.invert(bad))
                dirty = placed.place(dirty)
            arrays = []
            for k in dict.fromkeys(keys):
                col = pc.cast(pc.list_element(parts, int(k[1:])), pa.string())
                arrays.append(
                    pc.if_else(pc.equal(col, o.null_format), pa.scalar(None, pa.string()), col)
                )
            names = list(dict.fromkeys(keys))
            if not arrays:
                arrays, names = [pa.nulls(len(parts))], ["_"]
            yield pa.RecordBatch.from_arrays(arrays, names=names), dirty


class JsonLines(Decoder):
    """jsonl through pyarrow's JSON parser, one block of whole lines at a time. The file's first
    megabyte fixes each field's type (JSON's own: numbers, booleans, strings, nested; a field that is null
    there, or absent, is read as a string), so every batch of a file has the same schema. A block
    pyarrow refuses (a bad line, a value of another type) is parsed line by line into strings
    instead: the conversion then turns what it can into the column's type and the rest into
    dirty records. A number field declared decimal is parsed as that decimal (from its digits,
    not through a double); one read as a string is pinned to string, so that a block holding a
    number there is parsed line by line, where a number keeps its text."""

    def row_lines(self) -> Iterator[int] | None:
        found = self._text_lines()
        if found is None:
            return None
        lines, first = found

        def rows() -> Iterator[int]:
            for n, line in enumerate(lines, first):
                if not line.strip():
                    continue
                with contextlib.suppress(ValueError):
                    if isinstance(json.loads(line), dict):
                        yield n

        return rows()

    def _blocks(self, stream: pa.NativeFile, size: int, where: str = "") -> Iterator[bytes]:
        """Blocks of whole lines, as UTF-8; ``where`` (the file, at its start): its first bytes
        are checked not to be compressed data."""
        if self.opts.encoding == "utf-8":
            tail = b""
            while raw := stream.read(size):
                if where:
                    not_compressed(raw, where)
                    where = ""
                data = tail + raw
                cut = data.rfind(b"\n") + 1
                if cut:
                    tail = data[cut:]
                    yield data[:cut]
                else:
                    tail = data
            if tail:
                yield tail
        else:
            for text in text_blocks(stream, self.opts.encoding, size, where):
                yield text.encode()

    def fields(self) -> tuple[list[str], list[str], pa.Schema | None]:
        stream = self._stream()
        head = self.piece.path if self.owns_first_line else ""
        self.blocks = iter(()) if stream is None else self._blocks(stream, BLOCK_BYTES, head)
        self.first = next(self.blocks, None)
        if self.first is None:
            return [], [], None
        sample = self.first
        if not self.owns_first_line:  # every range of a file takes the types of its beginning
            with self.fs.open_input_stream(self.piece.path, compression=None) as s:
                sample = next(self._blocks(s, _SAMPLE_BYTES), self.first)
        sample = _head(sample)
        try:
            schema = pajson.read_json(pa.BufferReader(sample)).schema
        except pa.ArrowInvalid:  # infer from the lines that are JSON objects, or take strings
            rows = _objects(sample, [], "")
            try:
                good = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode()
                schema = pajson.read_json(pa.BufferReader(good)).schema
            except pa.ArrowInvalid:
                keys = dict.fromkeys(k for r in rows for k in r)
                schema = pa.schema([(k, pa.string()) for k in keys])
        # JSON has no dates: pyarrow infers timestamps from strings that look like one
        self.natural = pa.schema(
            [
                f.with_type(pa.string())
                if pa.types.is_null(f.type) or pa.types.is_timestamp(f.type)
                else f
                for f in schema
            ]
        )
        return self.natural.names, self.natural.names, self.natural

    def empty(self) -> bool:
        # lines whose first megabyte holds no key (none is an object, or each is {}) are read
        # still: into the keys ``column`` names, and a line that is no object is a dirty record
        # (such a file was passed over, its lines neither read nor counted)
        return self.first is None

    def batches(self, keys: list[str]) -> Batches:
        if self.first is None:
            return
        needed = list(dict.fromkeys(keys)) or self.natural.names[:1]
        known = self.natural
        pinned = pa.schema(
            [known.field(k) if k in known.names else pa.field(k, pa.string()) for k in needed]
        )
        for k, t in self.declared.items():
            i = pinned.get_field_index(k)
            if i >= 0 and _numeric(pinned.field(i).type):
                # pyarrow converts the number's text, where a double cut its 17th digit on;
                # a number with more decimals than the scale sends the block line by line,
                # where it is a dirty record
                pinned = pinned.set(i, pinned.field(i).with_type(t))
        # a key is seen where the first megabyte's lines have it (the fields), else where a
        # block holds it as a key (present with a value NULL, too): a byte search, no row loop
        self.seen = {k for k in self.watch if k in known.names}
        looks = {k: _key_pattern(k) for k in self.watch if k not in self.seen}
        every = self.opts.every_field
        opts = pajson.ParseOptions(
            explicit_schema=pinned, unexpected_field_behavior="error" if every else "ignore"
        )
        for block in _chain(self.first, self.blocks):
            dirty: list[Dirty] = []
            for k, look in list(looks.items()):
                if look.search(block):
                    self.seen.add(k)
                    del looks[k]
            try:
                table = pajson.read_json(pa.BufferReader(block), parse_options=opts)
            except pa.ArrowInvalid:
                rows = _objects(block, dirty, self.label)
                if every:
                    self._no_new_keys(rows, pinned.names)
                table = pa.table({k: _column(rows, k, pinned.field(k).type) for k in needed})
            batches = table.to_batches() or [pa.RecordBatch.from_pylist([], schema=table.schema)]
            for i, b in enumerate(batches):
                yield b, dirty if i == 0 else []

    def _no_new_keys(self, rows: list[dict[str, Any]], names: list[str]) -> None:
        """With ``column: ["*"]`` a key first seen after the lines the fields came from would
        be dropped from every row holding it (it was, and the run succeeded): an error."""
        known = set(names)
        for r in rows:
            new = [k for k in r if k not in known]
            if new:
                raise FatalError(
                    f"{self.where('column')}: {self.label} has field(s) {new} beyond the "
                    f"fields {names} taken from the first megabyte (of the first file); name "
                    "the columns to read in column"
                )


def _key_pattern(key: str) -> re.Pattern[bytes]:
    """``"key":`` as a JSON line may spell it (its characters as they are, or escaped)."""
    forms = {json.dumps(key, ensure_ascii=a).encode() for a in (False, True)}
    return re.compile(b"(?:" + b"|".join(re.escape(f) for f in sorted(forms)) + rb")\s*:")


def _head(block: bytes) -> bytes:
    """The whole lines in the first ``_SAMPLE_BYTES`` of a block (at least one line)."""
    cut = block.rfind(b"\n", 0, _SAMPLE_BYTES) + 1 or block.find(b"\n") + 1
    return block[:cut] if cut else block


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


class _Number(float):
    """A JSON number with a fraction or exponent, keeping its text (``1.50``, every digit of
    ``12345678901234567890.123456789``) for the conversion to a string or decimal."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> _Number:
        n = super().__new__(cls, text)
        n.text = text
        return n


class _Integer(int):
    """A JSON integer keeping its text (``-0``); ints take no ``__slots__``."""

    text: str

    def __new__(cls, text: str) -> _Integer:
        n = super().__new__(cls, text)
        n.text = text
        return n


#: one decoder for every line (``json.loads`` with ``parse_float`` builds one a call)
_LINE = json.JSONDecoder(parse_float=_Number, parse_int=_Integer)


def _objects(block: bytes, dirty: list[Dirty], label: str) -> list[dict[str, Any]]:
    rows = []
    # lines end at \n alone: a JSON string may hold U+2028 or U+0085 as they are, where
    # splitlines cut the line in two (two dirty records for one good row)
    for line in block.decode().split("\n"):
        if not line.strip():
            continue
        try:
            obj = _LINE.decode(line)
        except ValueError as e:
            dirty.append(Dirty(f"not valid JSON: {e}", {"line": line}, label))
            continue
        if not isinstance(obj, dict):
            dirty.append(Dirty("not a JSON object", {"line": line}, label))
            continue
        rows.append(obj)
    return rows


def _column(rows: list[dict[str, Any]], key: str, t: pa.DataType) -> pa.Array:
    """One field of parsed lines: nested values as they are; a field whose every value is of
    the field's type (a number, a boolean) as that type, as pyarrow's parser gives it, so that
    a block parsed line by line for another field or a bad line converts alike (``1.0`` read as
    ``long`` was 1 there and a dirty record here); the rest as text to convert."""
    values = [r.get(key) for r in rows]
    if pa.types.is_nested(t):
        try:
            return pa.array(values, t)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            pass
    elif (typed := _typed(values, t)) is not None:
        return typed
    return pa.array([_text(v) for v in values], pa.string())


def _typed(values: list[Any], t: pa.DataType) -> pa.Array | None:
    """``values`` as ``t`` where each is a JSON value pyarrow's parser takes for it, else None."""
    if pa.types.is_boolean(t):
        ok = all(v is None or isinstance(v, bool) for v in values)
    elif pa.types.is_integer(t):
        ok = all(v is None or isinstance(v, _Integer) for v in values)
    elif pa.types.is_floating(t) or pa.types.is_decimal(t):
        ok = all(v is None or isinstance(v, _Number | _Integer) for v in values)
        if ok and pa.types.is_decimal(t):  # from its digits, as pyarrow parses it
            values = [None if v is None else decimal.Decimal(v.text) for v in values]
        elif ok:
            values = [None if v is None else float(v) for v in values]
    else:
        return None
    if not ok:
        return None
    try:
        return pa.array(values, t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        return None  # (past the type's range or scale: the conversion makes it a dirty record)


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, _Number | _Integer):
        return v.text
    if isinstance(v, int | float):
        return str(v)
    return json.dumps(v, ensure_ascii=False)


class Parquet(Decoder):
    """parquet: the footer's schema, then the piece's row groups with ``iter_batches``."""

    def fields(self) -> tuple[list[str], list[str], pa.Schema | None]:
        f = self._stack.enter_context(self.fs.open_input_file(self.piece.path))
        # INT96 (Hive's, Impala's and Spark's legacy timestamps) as microseconds: as Arrow's
        # nanoseconds a date outside 1677-2262 (Hive's 9999-12-31 "no end") wrapped into another
        self.pf = pq.ParquetFile(f, pre_buffer=True, coerce_int96_timestamp_unit="us")
        schema = self.pf.schema_arrow
        return schema.names, schema.names, schema

    def batches(self, keys: list[str]) -> Batches:
        pf = self.pf
        stop = pf.num_row_groups if self.piece.whole else min(self.piece.stop, pf.num_row_groups)
        groups = list(range(self.piece.start, stop))
        if not groups:
            return
        needed = list(dict.fromkeys(keys)) or pf.schema_arrow.names[:1]
        for b in pf.iter_batches(
            batch_size=max(self.opts.batch_rows, 1024),
            row_groups=groups,
            columns=needed,
            use_threads=True,
        ):
            yield b, []


DECODERS: dict[str, type[Decoder]] = {
    "csv": Delimited,
    "text": Delimited,
    "jsonl": JsonLines,
    "parquet": Parquet,
}


def decoder_for(opts: Options) -> type[Decoder]:
    if opts.fmt == "text" and (len(opts.delimiter) > 1 or not opts.delimiter.isascii()):
        return SplitLines  # pyarrow's csv parser splits at one byte: "§" is two in UTF-8
    return DECODERS[opts.fmt]
