"""Encoders for the file writer: Arrow batches as csv, text or jsonl bytes, built with Arrow
compute over whole columns (no per-row Python), and the names output files get."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors.file.columns import DatePattern, is_temporal, render_temporal
from tidesync.engine.dirty import beyond_calendar, value_of
from tidesync.errors import DirtyRecordError, FatalError

#: rows encoded at a time (keeps every string buffer far below 2 GiB)
_SLICE_ROWS = 1 << 17


def _bytes_of(lines: pa.Array) -> pa.Buffer:
    """The concatenated values of a fresh (unsliced) string array, without copying."""
    total = pc.sum(pc.binary_length(lines)).as_py() or 0
    return lines.buffers()[2].slice(0, total) if total else pa.py_buffer(b"")


@functools.cache
def signature(encoding: str) -> bytes:
    """What an encoding writes before any text (utf-16's and utf-32's byte-order mark,
    utf-8-sig's): Python's codec writes it at every ``encode``, a file holds it once, first."""
    return "".encode(encoding)


def _transcode(buf: pa.Buffer, encoding: str, batch: pa.RecordBatch) -> pa.Buffer | bytes:
    if encoding == "utf-8":
        return buf
    try:
        # without the signature: a mark before every batch's first line read back as part of
        # its first value (a string got a U+FEFF, a number became dirty)
        return buf.to_pybytes().decode("utf-8").encode(encoding)[len(signature(encoding)) :]
    except UnicodeEncodeError as e:
        what = f"{batch.to_pylist()[0]!r}" if batch.num_rows == 1 else "a value"
        raise DirtyRecordError(
            f"{what} has {e.object[e.start : e.end]!r}, which {encoding} cannot encode"
        ) from None


def _plain_decimals(arr: pa.Array) -> pa.Array:
    """Decimals as plain digits with their scale (``0.0000001000``). Arrow writes a value below
    1e-6 in E notation (``1.000E-7``), as Java's ``BigDecimal.toString`` does; DataX writes
    ``toPlainString``, and a reader expecting plain digits (a fixed-width parser, a diff against
    the source) would take the other for a different value. Only those few values are redone."""
    s = pc.cast(arr, pa.string())
    sci = pc.fill_null(pc.match_substring(s, "E"), False)
    if not pc.any(sci).as_py():
        return s
    plain = [format(v, "f") for v in arr.filter(sci).to_pylist()]
    return pc.replace_with_mask(s, sci, pa.array(plain, pa.string()))


class TextEncoder:
    """csv (quoted where needed, RFC 4180) and text (never quoted: a value holding the delimiter
    or a line break is a dirty record rather than a corrupt line)."""

    def __init__(
        self,
        fmt: str,
        delimiter: str,
        null_format: str,
        date: DatePattern | None,
        encoding: str,
        zone: str | None = None,
    ):
        self.zone = zone  # the job's: instants are written as its wall times under dateFormat
        self.quoted = fmt == "csv"
        self.delimiter = delimiter
        self.null_format = null_format
        self.date = date
        self.encoding = encoding
        d = re.escape(delimiter)
        self.special = f'{d}|"|\\r|\\n' if self.quoted else f"{d}|\\r|\\n"
        # text: a value ending in the start of a delimiter that overlaps itself ("a|" before
        # "||") makes the delimiter begin inside the value, and the line splits one early
        ends = [delimiter[:k] for k in range(1, len(delimiter)) if delimiter[k:] == delimiter[:-k]]
        self.overlap = "(?:" + "|".join(map(re.escape, ends)) + ")$" if ends else None
        self.plain_numbers = not any(c.isalnum() or c in ".-+" for c in delimiter)

    def _text(
        self,
        arr: pa.Array,
        name: str,
        pos: int,
        batch: pa.RecordBatch,
        names: bool = False,
        last: bool = True,
    ) -> pa.Array:
        t = arr.type
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if (is_temporal(t) or pa.types.is_time(t)) and beyond_calendar(arr):
            # Arrow prints such a value as '<value out of range: N>' and strftime wraps it into
            # another year: either would be a wrong value in the file
            raise DirtyRecordError(
                self._reason(
                    pos,
                    name,
                    batch,
                    "is a time past 23:59:59.999999"
                    if pa.types.is_time(t)
                    else "is a date/time outside the years 1 to 9999",
                )
            )
        if self.date is not None and is_temporal(t):
            try:
                s = render_temporal(arr, self.date, self.zone)
            except pa.ArrowInvalid as e:
                raise DirtyRecordError(self._reason(pos, name, batch, str(e))) from None
        elif pa.types.is_timestamp(t) and t.unit != "s":  # no '.000000' on whole seconds
            s = pc.replace_substring_regex(pc.cast(arr, pa.string()), r"\.0+(Z?)$", r"\1")
        elif pa.types.is_string(t):
            s = arr
        elif pa.types.is_decimal(t):
            s = _plain_decimals(arr)
        elif pa.types.is_nested(t):
            raise FatalError(
                f"column {pos} ({name}) is {t}: {'csv' if self.quoted else 'text'} holds only "
                "flat values; write it as jsonl or parquet"
            )
        else:
            try:
                s = pc.cast(arr, pa.string())
            except pa.ArrowInvalid as e:
                raise DirtyRecordError(self._reason(pos, name, batch, str(e))) from None
            except (pa.ArrowNotImplementedError, pa.ArrowTypeError) as e:
                raise FatalError(
                    f"column {pos} ({name}) is {t}, which cannot be written as text: {e}"
                ) from None
        numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
        # a number cannot hold a quote or a line break, nor the delimiter unless it is a digit,
        # a sign or a point
        free = (numeric or pa.types.is_boolean(t)) and self.plain_numbers
        if self.quoted:
            need = pc.equal(s, self.null_format)  # so it reads back as a value, not as NULL
            if not free:
                need = pc.or_(need, pc.match_substring_regex(s, self.special))
            if pc.any(need).as_py():
                quoted = pc.binary_join_element_wise(
                    '"', pc.replace_substring(s, '"', '""'), '"', ""
                )
                s = pc.if_else(need, quoted, s)
        elif not free and pc.any(pc.match_substring_regex(s, self.special)).as_py():
            raise DirtyRecordError(
                self._reason(
                    pos,
                    name,
                    batch,
                    "holds the field delimiter or a line break, which text cannot quote "
                    "(write csv instead)",
                )
            )
        elif (
            not free
            and not last
            and self.overlap
            and pc.any(pc.match_substring_regex(s, self.overlap)).as_py()
        ):
            raise DirtyRecordError(
                self._reason(
                    pos,
                    name,
                    batch,
                    f"ends in the start of the field delimiter {self.delimiter!r}, so the "
                    "delimiter after it would be read one place early; text cannot quote it "
                    "(write csv instead)",
                )
            )
        elif not names and self.null_format and pc.any(pc.equal(s, self.null_format)).as_py():
            # it would read back as NULL (nullFormat "" is the usual exception: an empty
            # string and NULL are both written as nothing, as DataX does)
            raise DirtyRecordError(
                self._reason(
                    pos,
                    name,
                    batch,
                    f"equals nullFormat {self.null_format!r}, so it would read back as NULL; "
                    "text cannot quote it (write csv instead, or choose another nullFormat)",
                )
            )
        return pc.fill_null(s, self.null_format)

    @staticmethod
    def _reason(pos: int, name: str, batch: pa.RecordBatch, why: str) -> str:
        value = f" {value_of(batch.column(pos), 0)!r}" if batch.num_rows == 1 else ""
        return f"column {pos} ({name}): value{value} {why}"

    def header(self, names: list[str]) -> bytes:
        row = pa.record_batch(
            [pa.array([n], pa.string()) for n in names], names=[str(i) for i in range(len(names))]
        )
        return bytes(self.encode(row, names=True)[0])

    def encode(self, batch: pa.RecordBatch, names: bool = False) -> list[pa.Buffer | bytes]:
        out = []
        for start in range(0, max(batch.num_rows, 1), _SLICE_ROWS):
            piece = batch.slice(start, _SLICE_ROWS)
            if piece.num_rows == 0:
                break
            cols = [
                self._text(piece.column(i), name, i, piece, names, i == piece.num_columns - 1)
                for i, name in enumerate(piece.schema.names)
            ]
            if not cols:
                out.append(b"\n" * piece.num_rows)
                continue
            line = pc.binary_join_element_wise(*cols, self.delimiter) if len(cols) > 1 else cols[0]
            line = pc.binary_join_element_wise(line, "", "\n")
            out.append(_transcode(_bytes_of(line), self.encoding, piece))
        return out


class JsonEncoder:
    """jsonl: each row as one JSON object (DuckDB's ``to_json`` over the Arrow batch, so nested
    values, decimals and dates come out right); dates in ``dateFormat`` when one is given."""

    def __init__(self, date: DatePattern | None, encoding: str, zone: str | None = None):
        self.date = date
        self.zone = zone
        self.encoding = encoding
        self._con: Any = None

    def encode(self, batch: pa.RecordBatch) -> list[pa.Buffer | bytes]:
        import duckdb

        if self.date is not None:
            try:
                batch = pa.RecordBatch.from_arrays(
                    [
                        render_temporal(c, self.date, self.zone) if is_temporal(c.type) else c
                        for c in batch.columns
                    ],
                    names=batch.schema.names,
                )
            except pa.ArrowInvalid as e:
                raise DirtyRecordError(f"dateFormat {self.date.java!r}: {e}") from None
        for name, c in zip(batch.schema.names, batch.columns, strict=True):
            if pa.types.is_floating(c.type) and c.null_count < len(c):
                finite = pc.is_finite(c)
                if not pc.all(pc.or_kleene(finite, pc.is_null(c))).as_py():
                    bad = pc.index(pc.fill_null(finite, True), False).as_py()
                    raise DirtyRecordError(
                        f"column {name!r} is {c[bad].as_py()}, which JSON has no number for "
                        "(DuckDB would write a bare NaN / Infinity no JSON reader takes)"
                    )
        if self._con is None:
            self._con = duckdb.connect()
        con = self._con
        con.register("__tidesync_batch", batch)
        try:
            table = con.sql(
                "SELECT to_json(__row)::VARCHAR AS j FROM __tidesync_batch AS __row"
            ).to_arrow_table()
        except duckdb.Error as e:
            raise FatalError(f"cannot write these columns as JSON: {e}") from None
        finally:
            con.unregister("__tidesync_batch")
        lines = pc.binary_join_element_wise(table.column(0).combine_chunks(), "", "\n")
        return [_transcode(_bytes_of(lines), self.encoding, batch)]

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None


DATA_EXTENSIONS = (
    ".csv",
    ".tsv",
    ".txt",
    ".text",
    ".dat",
    ".jsonl",
    ".json",
    ".ndjson",
    ".parquet",
    ".pq",
)


@dataclass(frozen=True)
class Names:
    """Output names made from ``fileName``: ``data.csv`` for one file; ``data__00003.csv`` for
    split 3 of several; ``_part00002`` for the second file of a split cut by ``maxFileSize``;
    ``-1``, ``-2`` to step around existing files in append mode; then the compression suffix."""

    prefix: str
    stem: str
    ext: str
    suffix: str
    _rx: re.Pattern[str] = field(compare=False, repr=False, default=re.compile(""))

    @classmethod
    def of(cls, file_name: str, suffix: str) -> Names:
        base = file_name[: -len(suffix)] if suffix and file_name.endswith(suffix) else file_name
        dot = base.rfind(".")
        ext = base[dot:] if dot > 0 and base[dot:].lower() in DATA_EXTENSIONS else ""
        stem = base[: len(base) - len(ext)]
        rx = re.compile(
            re.escape(stem)
            + r"(__\d{5,})?(_part\d{5,})?(-\d+)?"
            + re.escape(ext)
            + r"(\.gz|\.bz2|\.zst)?"
        )
        return cls(file_name, stem, ext, suffix, rx)

    def name(self, index: int | None, part: int | None, gen: int = 0) -> str:
        idx = "" if index is None else f"__{index:05d}"
        prt = "" if part is None else f"_part{part:05d}"
        return f"{self.stem}{idx}{prt}{f'-{gen}' if gen else ''}{self.ext}{self.suffix}"

    def ours(self, name: str) -> bool:
        """Whether a file in the target folder belongs to this ``fileName``: its name starts with
        it (DataX's rule), or it is one of the numbered names this writer makes from it."""
        return name.startswith(self.prefix) or bool(self._rx.fullmatch(name))
