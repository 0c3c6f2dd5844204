"""SQLite reader and writer (``sqlite``, DataX names ``sqlitereader`` / ``sqlitewriter``).

The database is a file: ``database: PATH`` or DataX's ``connection: [{jdbcUrl: ["jdbc:sqlite:PATH"],
table: [...]}]``; relative paths resolve against the job's folder. The parameters are those of
:mod:`tidesync.connectors.sql` (see ``docs/connectors/sqlite.md``).

Reading: each split opens its own read-only connection and fetches ``fetchSize`` rows at a time,
built into Arrow column by column. SQLite's values carry no fixed type, so the Arrow type of a
column comes from its declared type (``INTEGER`` -> int64, ``REAL`` -> float64, ``TEXT`` ->
string, ``BLOB`` -> binary, ``BOOLEAN`` -> bool, ``DECIMAL(p,s)`` -> decimal128(p, s),
``DATE`` / ``DATETIME`` / ``TIMESTAMP`` text -> date32 / timestamp where the first rows parse,
else string) and, for expressions, from the first rows. A later value that does not fit its
column's type becomes a dirty record instead of failing the job.

Writing: one connection and one transaction from ``prepare`` to ``commit`` (``BEGIN IMMEDIATE``;
preSql, the truncate, every row, postSql), so a failure leaves the table exactly as it was.
Each ``write`` runs under a SAVEPOINT: a constraint violation rolls the batch back and raises
DirtyRecordError with SQLite's message, and the engine bisects the batch. A missing target
table is created from the Arrow schema in ``insert`` / ``truncate`` mode.
"""

from tidesync.connectors.sqlite.conn import arrow_type, declared_type
from tidesync.connectors.sqlite.reader import Reader
from tidesync.connectors.sqlite.writer import Writer

__all__ = ["Reader", "Writer", "arrow_type", "declared_type"]
