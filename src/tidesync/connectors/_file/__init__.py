"""Internals of the ``file`` connector (:mod:`tidesync.connectors.file`): column specs and type
conversion, locating files, decoding formats into Arrow and encoding Arrow into formats."""
