"""What SQL connectors share (``conn``, ``reader``, ``writer``, ``incremental``): DataX-shaped parameters, jdbc URLs, quoting, SELECTs, key ranges.

Used by the embedded databases (``sqlite``, ``duckdb``) and the servers (``postgresql``,
``mysql``); nothing here opens a connection. A connector

1. reads its parameters with :func:`read_options` / :func:`write_options`, which record every
   problem on the ``Params`` with its key path (``connection[0].table``); the reader then holds
   :class:`Target` s (a database's candidate URLs, its tables or queries);
2. turns a target's URL into a connection: :func:`parse_jdbc_url` (servers) or
   :func:`database_path` (embedded files);
3. builds its SQL with a :class:`Dialect` (``SQLITE``, ``DUCKDB``, ``POSTGRESQL``, ``MYSQL``):
   :meth:`Dialect.table` / :meth:`Dialect.ident` quote names, :func:`column_sql` turns a DataX
   ``column`` entry into a select-list item, :func:`select_sql` makes the SELECT,
   :func:`key_ranges` (+ :meth:`KeyRange.sql`, :func:`null_predicate`) the ``splitPk`` splits,
   :func:`write_statements` the INSERT / upsert of each write mode, :func:`expand_table` the
   ``@table`` of preSql/postSql;
4. optionally subclasses :class:`SqlReader` (fill in ``locate``, ``connect``,
   ``table_columns``; write ``schema`` and ``read``) to get table checks and ``splits(n)`` made of
   :class:`QuerySplit` s;
5. writes through a subclass of :class:`SqlWriter`, which owns the transaction skeleton (session,
   BEGIN, preSql, create / truncate / partition delete, per-batch partition columns and
   deleteMarker, postSql, COMMIT / ROLLBACK) and checks the incoming columns against the
   store's :class:`TableInfo` with :func:`bind` (column mapping, key of replace/update, required
   columns); the store fills in its verbs (``connect``, ``execute``, ``inspect``,
   ``write_rows``, ...) with its own bulk path.

Example, a sqlite reader's split SQL::

    >>> d = SQLITE
    >>> cols = [column_sql(d, c, known=["id", "select"]) for c in ["id", "select", "'x'"]]
    >>> [r.sql(d, "id") for r in key_ranges(1, 10, 2)]
    ['"id" >= 1 AND "id" < 6', '"id" >= 6 AND "id" <= 10']
    >>> select_sql(d, "Order", cols, where="id > 0", predicate='"id" IS NULL')
    'SELECT "id", "select", \\'x\\' FROM "Order" WHERE (id > 0) AND ("id" IS NULL)'
"""

from tidesync.connectors.sql.conn import (
    DUCKDB,
    MYSQL,
    POSTGRESQL,
    SQLITE,
    Dialect,
    JdbcUrl,
    Target,
    database_path,
    is_identifier,
    parse_jdbc_url,
    split_name,
)
from tidesync.connectors.sql.reader import (
    KeyRange,
    QuerySplit,
    ReadOptions,
    Source,
    SqlReader,
    column_sql,
    key_ranges,
    null_predicate,
    read_options,
    select_sql,
)
from tidesync.connectors.sql.writer import (
    DELETED,
    KEYED,
    WRITE_MODES,
    Binding,
    NewFile,
    SqlSink,
    SqlWriter,
    Statement,
    TableInfo,
    WriteOptions,
    bind,
    check_partition,
    check_table_modes,
    created_names,
    expand_table,
    make_parents,
    mapped_names,
    marker_flags,
    partition_columns,
    partition_where,
    remove_created,
    require_table,
    same_columns,
    split_deleted,
    table_modes,
    typed_value,
    with_added,
    write_options,
    write_statements,
)

__all__ = [
    "DELETED",
    "check_partition",
    "check_table_modes",
    "mapped_names",
    "marker_flags",
    "with_added",
    "partition_columns",
    "partition_where",
    "SqlWriter",
    "SqlSink",
    "split_deleted",
    "table_modes",
    "typed_value",
    "JdbcUrl",
    "parse_jdbc_url",
    "database_path",
    "Dialect",
    "SQLITE",
    "DUCKDB",
    "POSTGRESQL",
    "MYSQL",
    "split_name",
    "is_identifier",
    "column_sql",
    "select_sql",
    "KeyRange",
    "key_ranges",
    "null_predicate",
    "Statement",
    "write_statements",
    "expand_table",
    "Target",
    "ReadOptions",
    "WriteOptions",
    "read_options",
    "write_options",
    "WRITE_MODES",
    "KEYED",
    "QuerySplit",
    "Source",
    "SqlReader",
    "TableInfo",
    "Binding",
    "bind",
    "same_columns",
    "require_table",
    "created_names",
    "make_parents",
    "NewFile",
    "remove_created",
]
