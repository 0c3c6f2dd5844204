"""The direct path from CSV files into DuckDB: DuckDB's own ``read_csv`` parses the file.

The file reader hands a split as the form ``csv-file`` (:data:`FORM`): a plain dict naming a
local file and how tidesync reads it (see :class:`CsvFile`). :func:`load` turns it into one
``INSERT INTO t SELECT ... FROM read_csv(...)`` in the writer's transaction, with the parser
pinned to tidesync's reading (no sniffing, every field's type given, ``"`` quotes and doubles,
quoted values never NULL) and ``store_rejects``: DuckDB skips a row it cannot read and keeps
why in ``reject_errors``. A load with rejects is taken back (its rows are the transaction's
newest, above the row id the table had before it) and reported, so that the caller can read
the split again on the Arrow path, where each bad row becomes a dirty record exactly as it
would without the direct path (DuckDB rejects some values tidesync reads, e.g. an empty field
of a numeric column, which tidesync reads as NULL).
"""

from __future__ import annotations

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


def read_csv_sql(f: CsvFile, as_text: frozenset[int] = frozenset()) -> tuple[str, list[Any]]:
    """``SELECT <columns> FROM read_csv(?, ...)`` for ``f`` and its parameters. The fields
    ``as_text`` are parsed as text and cast in the SELECT, an empty one to NULL."""
    q = DUCKDB.ident
    by_index = {i: "VARCHAR" if i in as_text else t for i, _, t in f.columns}
    types = ", ".join(f"'c{i}': '{by_index.get(i, 'VARCHAR')}'" for i in range(f.fields))
    # an empty unquoted field is NULL for any type but text in tidesync; DuckDB applies its
    # NULL strings to every column, so '' joins them only when no text column is read
    nulls: list[str] = [f.null]
    if f.null != "" and all(t != "VARCHAR" for _, _, t in f.columns):
        nulls.append("")
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
    cols = ", ".join(
        f"CAST(NULLIF({q(f'c{i}')}, '') AS {t}) AS {q(n)}"
        if i in as_text
        else f"{q(f'c{i}')} AS {q(n)}"
        for i, n, t in f.columns
    )
    return f"SELECT {cols} FROM read_csv(?, {', '.join(options)})", [f.path, f.delimiter, nulls]


#: a reject of an empty field of a typed column (tidesync reads it as NULL)
_EMPTY = "error_type = 'CAST' AND error_message LIKE '%Could not convert string \"\" to%'"


def load(con: duckdb.DuckDBPyConnection, table_sql: str, targets: list[str], f: CsvFile) -> Loaded:
    """Insert the rows of ``f`` into ``table_sql`` (its columns ``targets``, one per column of
    ``f``), in the connection's open transaction. With rejects, the rows are deleted again and
    ``Loaded.rows`` is 0. Raises ``duckdb.Error`` when the statement fails (the transaction
    is then lost: DuckDB aborts it).

    When every reject is an empty field of a numeric, boolean or date column (NULL for
    tidesync, a cast error for DuckDB's parser while a text column is read too), the file is
    loaded once more with those fields parsed as text and cast in SQL, an empty one to NULL:
    the first load showed that their other values all convert."""
    loaded, empties = _insert(con, table_sql, targets, f, frozenset())
    if empties:
        loaded, _ = _insert(con, table_sql, targets, f, empties)
    return loaded


def _insert(
    con: duckdb.DuckDBPyConnection,
    table_sql: str,
    targets: list[str],
    f: CsvFile,
    as_text: frozenset[int],
) -> tuple[Loaded, frozenset[int]]:
    """One INSERT; with rejects, taken back, and the fields whose only rejects are empty."""
    q = DUCKDB.ident
    select, params = read_csv_sql(f, as_text)
    # every result is fetched to its end: DuckDB refuses other work on a connection (the
    # background inserter's) while a result is unfinished
    mark = con.execute(f"SELECT max(rowid) FROM {table_sql}").fetchall()
    before = -1 if mark[0][0] is None else int(mark[0][0])
    cols = ", ".join(q(c) for c in targets)
    done = con.execute(f"INSERT INTO {table_sql} ({cols}) {select}", params).fetchall()
    rows = int(done[0][0]) if done else 0
    summary = con.execute(
        f"SELECT count(*), count(*) FILTER (WHERE NOT ({_EMPTY})), "
        f"list(DISTINCT column_name) FILTER (WHERE {_EMPTY}) FROM {_ERRORS}"
    ).fetchall()[0]
    rejected, others, empty_in = int(summary[0]), int(summary[1]), summary[2] or []
    if not rejected:
        return Loaded(rows), frozenset()
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
    empties = frozenset(int(c[1:]) for c in empty_in) if not others and not as_text else None
    return Loaded(0, rejects, rejected), empties or frozenset()
