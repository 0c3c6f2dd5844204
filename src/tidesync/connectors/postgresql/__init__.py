"""The ``postgresql`` connector (DataX ``postgresqlreader`` / ``postgresqlwriter``).

Rooms: ``conn`` (endpoints, data sources, sessions, error translation), ``reader`` (binary COPY
through ADBC, splits, snapshots), ``writer`` (binary COPY in one transaction), ``types`` (the
type mapping both ways). The reader module's docstring tells how each side works.
"""

from tidesync.connectors.postgresql.reader import PgSplit, Reader
from tidesync.connectors.postgresql.writer import Writer

__all__ = ["Reader", "Writer", "PgSplit"]
