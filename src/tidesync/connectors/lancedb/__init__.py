"""The ``lancedb`` connector (aliases ``lance``, ``lancedbreader``, ``lancedbwriter``): a table
of an embedded LanceDB database, the vector store for embeddings (``fixed_size_list<float32>``
columns), written so that a run publishes one new table version or nothing.

Rooms: ``conn`` (where the table lives, the lazy import of the ``lancedb`` extra, errors),
``reader``, ``writer``. Needs ``pip install 'tidesync[lancedb]'``.

Writer parameters::

    path:        folder of the LanceDB database (relative to the job file); created if missing
    table:       the table's name (created from the rows' schema when missing)
    writeMode:   append (default) | truncate (alias overwrite) | merge (aliases replace, upsert)
                 | update | nonConflict
    primaryKey:  [id]   the key of merge and update
    index:       {column: review_vec, metric: cosine | l2 | dot, type: IVF_PQ | IVF_FLAT |
                 IVF_SQ | IVF_HNSW_SQ | IVF_HNSW_PQ, partitions: N, subVectors: N}
                 a vector index built at commit, after the data's version

Each task stages its rows as Arrow IPC stream files in ``PATH/.TABLE.tidesync/RUN/`` (with an
owner record, as the other staging writers do); ``commit`` hands them to LanceDB as one stream,
and LanceDB writes its data files and then commits one manifest: readers see the previous
version or the new one, never a part. ``append`` adds the rows, ``truncate`` replaces every row
(the table keeps its schema), ``merge`` upserts by key and ``update`` changes existing keys only
(both with the last row of a key in the run winning, taken in memory at commit), ``nonConflict``
fails before writing if the table exists. A new table stores a ``list<float>`` column as
``fixed_size_list`` of the length of its first value (rows of another length are dirty), so that
it can be searched and indexed.

Reader parameters: ``path``, ``table``, ``column`` (default all), ``where`` (a LanceDB SQL
filter), ``version`` (read that version). One split: the table's version at planning.
"""

from tidesync.connectors.lancedb.reader import Reader, VersionSplit
from tidesync.connectors.lancedb.writer import Writer

__all__ = ["Reader", "Writer", "VersionSplit"]
