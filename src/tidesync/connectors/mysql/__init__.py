"""The ``mysql`` connector: MySQL and MariaDB (DataX ``mysqlreader`` / ``mysqlwriter``).

Rooms: ``conn`` (endpoints, data sources, TLS, error translation), ``reader``, ``writer``,
``wire`` (row packets of the binary and text protocols), ``decode`` (columns to Arrow).
"""

from tidesync.connectors.mysql.conn import Endpoint
from tidesync.connectors.mysql.reader import MySplit, Reader
from tidesync.connectors.mysql.writer import Writer

__all__ = ["Reader", "Writer", "Endpoint", "MySplit"]
