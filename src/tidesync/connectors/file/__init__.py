"""Files: csv, text, jsonl and parquet, read and written through a ``pyarrow.fs.FileSystem``
(kind ``file``; DataX ``txtfilereader`` / ``txtfilewriter``; the same package serves kind ``s3``).

Rooms: ``conn`` (file systems, object stores, shared format parameters), ``reader``, ``writer``,
``columns`` (column specs and conversions), ``locate`` (finding files, compression, line
boundaries), ``decode`` / ``encode`` (formats to and from Arrow), ``objectstore`` (S3-compatible
stores).
"""

from tidesync.connectors.file.conn import FORMATS, filesystem_for
from tidesync.connectors.file.reader import SPLIT_BYTES, FileSplit, Reader
from tidesync.connectors.file.writer import Writer

__all__ = ["Reader", "Writer", "FileSplit", "filesystem_for", "FORMATS", "SPLIT_BYTES"]
