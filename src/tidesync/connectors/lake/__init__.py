"""The ``lake`` connector (aliases ``iceberg``, ``lakereader``, ``lakewriter``): partitioned
tables that cannot UPDATE, written so that every run is safe to repeat.

Rooms: ``conn`` (table location and format), ``reader``, ``writer``, ``common`` (type fitting,
staged Parquet, the merge/sync computation), ``hive`` and ``iceberg`` (the two formats).

Two formats. ``format: iceberg`` (the default): an Apache Iceberg table through pyiceberg, in a
SQL catalog kept in ``<warehouse>/catalog.db`` (SQLite) unless ``catalog`` names another.
``format: hive``: Hive-style partitioned Parquet folders (``TABLE/ds=20161114/*.parquet``).

Writer parameters::

    table:         iceberg: namespace.name (default namespace: default); hive: a folder
    partition:     ds=${bizdate}   or several levels: pt=20150101/type=1 (string columns, added
                   to every row as constants; the table is partitioned by them when created)
    writeMode:     append | overwrite | merge | sync
                   (default: overwrite when partition is given, else append)
    primaryKey:    [uid]   the key of merge and sync
    deleteMarker:  {column: is_deleted, value: 1}   rows so marked delete their key (merge);
                   a CDC column ``_op`` with value ``d`` does the same without this parameter
    column:        [uid, uname, ...]   the source columns to write (default: all)
    lifecycle:     N   drop partitions whose date (first partition value, yyyymmdd) is more
                   than N days before the run's business date, at commit
    warehouse:     folder of the default catalog and its tables (default: warehouse)
    catalog:       pyiceberg catalog properties ({type: rest, uri: ...}) or a catalog URI
    compress:      hive only: snappy (default) | zstd | gzip | none

Write modes, each published in one commit at the end of the run (nothing is visible before):

* ``append`` adds the rows;
* ``overwrite`` replaces exactly the named partition (the whole table without ``partition``):
  rerunning an instance can never double its rows;
* ``merge`` upserts by ``primaryKey`` (the last row of a key in the run wins) and removes the
  keys the source marks deleted; rows equal to what the table holds are not rewritten;
* ``sync`` takes the rows as the complete current table (or partition): keys absent from them
  are deleted, so deletes propagate without change data capture.

New columns of the source are added to the table; a column whose type changes is an error
naming both types, except a widening the format allows (int -> long, float -> double).
merge and sync keep the run's rows in memory until the commit (they are the changes; for sync,
the table); append and overwrite stream them to Parquet files.

Reader parameters: ``table``, ``partition`` (read one partition), ``column``, and for Iceberg
``snapshotId`` or ``asOf`` (a time, ``2016-11-15 00:00:00`` in the job's time zone, or epoch
milliseconds) to read the table as it was. One split per data file.
"""

from tidesync.connectors.lake.reader import FileSplit, Reader
from tidesync.connectors.lake.writer import Writer

__all__ = ["Reader", "Writer", "FileSplit"]
