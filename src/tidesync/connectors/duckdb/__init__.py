"""DuckDB reader and writer (``duckdb``, DataX names ``duckdbreader`` / ``duckdbwriter``).

The database is a file: ``database: PATH`` or ``connection: [{jdbcUrl: ["jdbc:duckdb:PATH"],
table: [...]}]``; relative paths resolve against the job's folder. The parameters are those of
:mod:`tidesync.connectors.sql` (see ``docs/connectors/duckdb.md``).

Reading is Arrow-native: each split opens its own connection (read-only, unless this process
already holds the file read-write, e.g. as the target) and streams
``con.sql(query).to_arrow_reader(fetchSize)``; the types are DuckDB's own Arrow types.

Writing: one connection and one transaction from ``prepare`` to ``commit`` (preSql, the truncate,
every row, postSql), so a failure leaves the table exactly as it was. Each batch is registered
as an Arrow relation and written set-based (``INSERT INTO t SELECT ... FROM batch``); plain
appends are queued and inserted by a background thread, several batches per statement
(:class:`_Inserter`), so that reading and inserting overlap. DuckDB has
no savepoints and a failed statement aborts the whole transaction, so a batch is checked before
it touches the transaction: first into an empty twin of the target (same column types, NOT NULL
and CHECK constraints) on a side connection, whose error is DuckDB's own message, then against
the PRIMARY KEY / UNIQUE constraints inside the transaction. A batch that fails a check raises
DirtyRecordError and leaves no trace; the engine bisects it. A failure no check foresaw (a
foreign key, the disk) fails the job, and nothing is published. A missing target table is
created from the Arrow schema in ``insert`` / ``truncate`` mode.
"""

from tidesync.connectors.duckdb.reader import Reader
from tidesync.connectors.duckdb.writer import Writer

__all__ = ["Reader", "Writer"]
