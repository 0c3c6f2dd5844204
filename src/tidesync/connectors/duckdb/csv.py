"""The direct path from CSV files into DuckDB: DuckDB's own ``read_csv`` parses the file.

The file reader hands a split as the form ``csv-file`` (:data:`FORM`): a plain dict naming a
local file and how tidesync reads it (see :class:`CsvFile`). :func:`load` turns it into one
``INSERT INTO t SELECT ... FROM read_csv(...)`` in the writer's transaction, with the parser
pinned to tidesync's reading (no sniffing, every field's type given, ``"`` quotes and doubles,
quoted values never NULL) and ``store_rejects``: DuckDB skips a row it cannot read and keeps
why in ``reject_errors``. Every field is parsed as text and a typed one cast in the SELECT only
when it is in the set of values that DuckDB reads exactly as the Arrow path does
(:data:`EXACT`); a value outside it is counted (a sequence's ``nextval``: an error would abort
the transaction). A file with rejects or such values, or with a space beside a quote (which
DuckDB's parser drops) or a lone carriage return (on which it fails), is taken back (its rows are the transaction's newest, above the row id
the table had before it) and reported, so that the caller reads it again on the Arrow path:
the direct path loads exactly what the Arrow path loads, or the Arrow path loads the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from tidesync.connectors.sql import DUCKDB

#: the raw form's name (``Raw.form``)
FORM = "csv-file"

#: the DuckDB type of each Arrow type a csv column may have on the direct path
ARROW_TYPES = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us"): "TIMESTAMP",
}

#: the DuckDB type of each column type the file reader hands over (its ``column`` types)
KINDS = {
    "string": "VARCHAR",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "TIMESTAMP",
}

_KIND_OF = {v: k for k, v in KINDS.items()}

_ERRORS = "__tidesync_csv_rejects"
_SCANS = "__tidesync_csv_scans"


@dataclass(frozen=True)
class CsvFile:
    """A local csv file as the file reader reads it (``Raw.data`` holds :meth:`as_data`).

    ``fields`` is how many fields a row has; ``columns`` the output columns, each ``(field
    index, name, DuckDB type)`` (in the data: the reader's type, ``long``, of :data:`KINDS`); ``header``: the first line is skipped; ``null``: the text that
    is NULL (a quoted value never is); ``compression``: None, ``gzip`` or ``zstd``."""

    path: str
    fields: int
    columns: tuple[tuple[int, str, str], ...]
    delimiter: str = ","
    header: bool = False
    null: str = "\\N"
    compression: str | None = None
    label: str = ""

    def as_data(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "fields": self.fields,
            "columns": [[i, n, _KIND_OF[t]] for i, n, t in self.columns],
            "delimiter": self.delimiter,
            "header": self.header,
            "null": self.null,
            "compression": self.compression,
            "label": self.label,
        }

    @classmethod
    def from_data(cls, d: dict[str, Any]) -> CsvFile:
        """The form's data as the file reader gives it; KeyError for a type it may not have."""
        return cls(
            path=d["path"],
            fields=int(d["fields"]),
            columns=tuple((int(i), str(n), KINDS[str(t)]) for i, n, t in d["columns"]),
            delimiter=d.get("delimiter", ","),
            header=bool(d.get("header", False)),
            null=d.get("null", "\\N"),
            compression=d.get("compression"),
            label=d.get("label", "") or d["path"],
        )


@dataclass(frozen=True)
class Reject:
    """A row DuckDB's parser refused: the file line (as DuckDB counts, 1-based, the header
    counted), the column (None: the row's width), DuckDB's error type and message, the line."""

    line: int | None
    column: str | None
    kind: str
    message: str
    text: str

    def __str__(self) -> str:
        if self.line is None and self.column is None and not self.text:
            return f"has {self.message}"  # the file as a whole (INEXACT, QUOTE)
        where = f"line {self.line}" if self.line is not None else "a line"
        col = f", column {self.column}" if self.column else ""
        return f"{where}{col}: {self.message}"


@dataclass(frozen=True)
class Loaded:
    """What :func:`load` did: ``rows`` inserted (0 when taken back), ``rejects`` (the first
    10) and how many errors DuckDB found in all (a row may have several)."""

    rows: int
    rejects: tuple[Reject, ...] = ()
    rejected: int = 0


#: the values of each typed column that DuckDB's cast reads exactly as the Arrow path does (the
#: Arrow path is the spec, see file/columns.py ``convert``): a value outside these, or one the
#: cast refuses (an overflowing long, February 30), sends the file to the Arrow path, which
#: reads it (``0x10`` as a long, ``2024-01-02 03`` as a date) or makes the row dirty
_YEAR = "([1-9][0-9]{3}|0[1-9][0-9]{2}|00[1-9][0-9]|000[1-9])"
EXACT = {
    "BIGINT": "-?[0-9]+",
    "DOUBLE": "[+-]?([0-9]+[.]?[0-9]*|[.][0-9]+)([eE][+-]?[0-9]+)?|(?i:[+-]?inf(inity)?|nan)",
    "BOOLEAN": "(?i:true|false)|1|0",
    "TIMESTAMP": _YEAR
    + "-[0-9]{2}-[0-9]{2}([ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9]([.][0-9]{1,6})?)?)?",
}

_BAD = "__tidesync_csv_bad"


def read_csv_sql(f: CsvFile) -> tuple[str, list[Any]]:
    """``SELECT <columns> FROM read_csv(?, ...)`` for ``f`` and its parameters.

    Every field is parsed as text; a typed column is cast in the SELECT when it matches
    :data:`EXACT` (an empty one is NULL), and a value that does not (or that the cast refuses)
    calls ``nextval`` of the sequence ``__tidesync_csv_bad`` (:func:`load` counts them) and is
    inserted as NULL: no error, which would abort the transaction."""
    q = DUCKDB.ident
    types = ", ".join(f"'c{i}': 'VARCHAR'" for i in range(f.fields))
    options = [
        "auto_detect = false",
        f"header = {'true' if f.header else 'false'}",
        "delim = ?",
        "quote = '\"'",
        "escape = '\"'",
        "nullstr = ?",
        "allow_quoted_nulls = false",
        f"columns = {{{types}}}",
        f"compression = '{f.compression or 'none'}'",
        "store_rejects = true",
        f"rejects_table = '{_ERRORS}'",
        f"rejects_scan = '{_SCANS}'",
    ]
    inner, outer = [], []
    for i, n, t in f.columns:
        c = q(f"c{i}")
        if t == "VARCHAR":
            inner.append(f"{c} AS {q(f'v{i}')}")
            outer.append(f"{q(f'v{i}')} AS {q(n)}")
            continue
        r, v = q(f"r{i}"), q(f"v{i}")
        inner.append(f"NULLIF({c}, '') AS {r}")
        inner.append(
            f"CASE WHEN regexp_full_match(NULLIF({c}, ''), '{EXACT[t]}') "
            f"THEN TRY_CAST({c} AS {t}) END AS {v}"
        )
        outer.append(
            f"CASE WHEN {r} IS NOT NULL AND {v} IS NULL "
            f"THEN (CASE WHEN nextval('{_BAD}') < 0 THEN {v} END) ELSE {v} END AS {q(n)}"
        )
    source = f"read_csv(?, {', '.join(options)})"
    select = f"SELECT {', '.join(outer)} FROM (SELECT {', '.join(inner)} FROM {source})"
    return select, [f.path, f.delimiter, [f.null]]


def _quote_beside_space(delimiter: str) -> re.Pattern[bytes]:
    """Spaces beside a quote where DuckDB's parser and the Arrow path part ways (``^`` and
    ``$``: the data's ends). The Arrow path takes a quote as one only at a field's start and
    keeps what follows the closing quote; DuckDB skips spaces before a value's opening quote
    (``1, "a"`` is ``a``, ``' "a"'`` to Arrow) and after its closing one (``"a" ,``). Runs of
    quotes are told apart: inside a quoted value quotes come doubled (an even run), so ``say,
    ""hi""`` matches none of these; a run that is odd, or even and then the field's end, does."""
    d = re.escape(delimiter.encode())
    end = rb"(?:[" + d + rb'\r\n"]|$)'
    start = rb"(?:^|[" + d + rb"\r\n])"
    return re.compile(
        start
        + rb' +"(?:"")*(?!")'  # spaces, then a value's opening quote
        + b"|"
        + start
        + rb' +(?:"")+(?!") *'
        + end  # spaces, then an empty quoted value
        + b"|"
        + start
        + rb'(?:"")+ +'
        + end  # an empty quoted value, then spaces
        + b"|"
        + rb'(?<!")"(?:"")* +'
        + end  # a closing quote, then spaces
    )


_LONE_CR = re.compile(rb"\r[^\n]")
_LONE_LF = re.compile(rb"(?<!\r)\n")


def parser_trouble(f: CsvFile) -> str:
    """Why DuckDB's parser would read ``f`` otherwise than the Arrow path, or fail on it ("" when
    it reads it alike), as far as a scan of the bytes tells: a space beside a quote that DuckDB
    drops and the Arrow path keeps (see :func:`_quote_beside_space`), or line ends of two kinds
    (a CR without a LF beside LFs, or a LF without a CR beside CRs; even inside a quoted value),
    on which DuckDB's parser stops with "the state machine reached an invalid state", aborting
    the transaction. Such a file goes to the Arrow path. Files whose lines all end in LF, all in
    CRLF or all in CR stay direct. A quick search for a space beside a quote comes first: most
    files have none; a file without a CR costs one ``memchr`` more."""
    pattern = _quote_beside_space(f.delimiter) if f.delimiter != " " else None
    has_cr = has_lf = lone_cr = lone_lf = False
    with pa.input_stream(f.path, compression=f.compression) as src:
        carry = b""
        while chunk := src.read(1 << 24):
            # the carried part starts at a line end or delimiter the last window judged: a LF
            # opening it is not looked at again (its CR may have been cut off)
            first = 1 if carry else 0
            data = carry + chunk
            if pattern is not None and (b' "' in data or b'" ' in data) and pattern.search(data):
                return "a space beside a quote, which DuckDB's parser drops"
            if b"\r" in data:  # (a CR ending the data is judged in the next window)
                has_cr = True
                has_lf = has_lf or b"\n" in data
                lone_cr = lone_cr or _LONE_CR.search(data) is not None
                lone_lf = lone_lf or _LONE_LF.search(data, first) is not None
            elif data.find(b"\n", first) >= 0:
                has_lf = lone_lf = True
            if (lone_cr and has_lf) or (lone_lf and has_cr):
                return "line ends of two kinds (CR, LF), on which DuckDB's parser fails"
            # a match may span chunks: carry the last field's start on (``^`` is the data's start,
            # so the carried part begins at a line's or field's end, or is the file's start)
            cut = max(data.rfind(b"\n"), data.rfind(b"\r"), data.rfind(f.delimiter.encode()))
            carry = data[max(cut, 0) :] if cut >= 0 else data
    if carry.endswith(b"\r") and has_lf:
        return "line ends of two kinds (CR, LF), on which DuckDB's parser fails"
    return ""


def load(
    con: duckdb.DuckDBPyConnection,
    table_sql: str,
    targets: list[str],
    f: CsvFile,
    quotes_checked: bool = False,
) -> Loaded:
    """Insert the rows of ``f`` into ``table_sql`` (its columns ``targets``, one per column of
    ``f``), in the connection's open transaction, when DuckDB reads every value as the Arrow
    path would. Otherwise the rows are deleted again and ``Loaded.rows`` is 0, with a reject
    that says why: a row DuckDB's parser refused, a value outside :data:`EXACT`, or a quote
    beside a space. Raises ``duckdb.Error`` when the statement fails (the transaction is then
    lost: DuckDB aborts it). ``quotes_checked``: the caller has run :func:`parser_trouble`."""
    if not quotes_checked and (why := parser_trouble(f)):
        return Loaded(0, (Reject(None, None, "QUOTE", why, ""),), 1)
    return _insert(con, table_sql, targets, f)


def _insert(
    con: duckdb.DuckDBPyConnection, table_sql: str, targets: list[str], f: CsvFile
) -> Loaded:
    """One INSERT; taken back when DuckDB rejected a row or a value is not read exactly."""
    q = DUCKDB.ident
    select, params = read_csv_sql(f)
    # every result is fetched to its end: DuckDB refuses other work on a connection (the
    # background inserter's) while a result is unfinished
    con.execute(f"CREATE TEMP SEQUENCE IF NOT EXISTS {_BAD}").fetchall()
    start = int(con.execute(f"SELECT nextval('{_BAD}')").fetchall()[0][0])
    mark = con.execute(f"SELECT max(rowid) FROM {table_sql}").fetchall()
    before = -1 if mark[0][0] is None else int(mark[0][0])
    cols = ", ".join(q(c) for c in targets)
    done = con.execute(f"INSERT INTO {table_sql} ({cols}) {select}", params).fetchall()
    rows = int(done[0][0]) if done else 0
    inexact = int(con.execute(f"SELECT nextval('{_BAD}')").fetchall()[0][0]) - start - 1
    rejected = int(con.execute(f"SELECT count(*) FROM {_ERRORS}").fetchall()[0][0])
    if not rejected and not inexact:
        return Loaded(rows)
    found = con.execute(
        f"SELECT line, column_name, error_type, error_message, csv_line FROM {_ERRORS} "
        "ORDER BY line, column_idx LIMIT 10"
    ).fetchall()
    con.execute(f"DELETE FROM {table_sql} WHERE rowid > ?", [before]).fetchall()
    con.execute(f"DELETE FROM {_ERRORS}").fetchall()
    con.execute(f"DELETE FROM {_SCANS}").fetchall()
    names = {f"c{i}": f"{i} ({n})" for i, n, _ in f.columns}
    names.update({f"c{i}": str(i) for i in range(f.fields) if f"c{i}" not in names})
    rejects = tuple(
        Reject(line, names.get(column, column), str(kind), str(message), str(text))
        for line, column, kind, message, text in found
    )
    if inexact:
        why = f"{inexact} value(s) that DuckDB would read otherwise than tidesync"
        rejects += (Reject(None, None, "INEXACT", why, ""),)
    return Loaded(0, rejects, rejected + inexact)
