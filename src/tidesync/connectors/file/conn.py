"""Where files live: a ``pyarrow.fs.FileSystem`` for a local path or an object store URL, the format and encoding parameters both sides share, and error translation."""

from __future__ import annotations

import codecs
import os
from typing import Any

import pyarrow.fs as pafs

from tidesync.connectors import base
from tidesync.errors import ConfigError

FORMATS = ("csv", "text", "jsonl", "parquet")


#: URL schemes that name an object store (served by kind ``s3``)
OBJECT_STORE_SCHEMES = ("s3", "s3a", "oss")


def filesystem_for(
    path_or_url: str, params: dict[str, Any], ctx: base.Context
) -> tuple[pafs.FileSystem, str]:
    """The file system holding ``path_or_url`` and the path inside it.

    A local path (relative ones resolve against ``ctx.base_dir``) or ``file://`` URL gives a
    ``LocalFileSystem`` and an absolute '/'-separated path. ``s3://bucket/key`` (and ``oss://``)
    goes to :func:`object_store`, the hook where kind ``s3`` plugs in its file system.
    """
    scheme, sep, rest = path_or_url.partition("://")
    if not sep or len(scheme) == 1:  # a plain path (or a Windows drive letter)
        return pafs.LocalFileSystem(), _local(path_or_url, ctx)
    scheme = scheme.lower()
    if scheme == "file":
        return pafs.LocalFileSystem(), _local(rest, ctx)
    if scheme in OBJECT_STORE_SCHEMES:
        return object_store(scheme, rest, params, ctx)
    raise ConfigError(
        f"{ctx.path('path')}: {scheme}:// is not supported; use a local path, "
        f"file:// or s3://bucket/key"
    )


def object_store(
    scheme: str, bucket_and_key: str, params: dict[str, Any], ctx: base.Context
) -> tuple[pafs.FileSystem, str]:
    """An object store's file system (see :mod:`tidesync.connectors.file.objectstore`) built
    from ``params`` (``datasource``, ``endpoint``, credentials) and ``ctx.connections``, and the
    path ``bucket/key`` in it."""
    from tidesync.connectors.file import objectstore

    return objectstore.locate(scheme, bucket_and_key, params, ctx)


def _local(path: str, ctx: base.Context) -> str:
    return os.path.normpath(ctx.resolve_path(path)).replace(os.sep, "/")


def _delimiter(p: base.Params, fmt: str, default: str = ",") -> str:
    raw = p.get("fieldDelimiter", default)
    if not isinstance(raw, str):
        p.problem("fieldDelimiter", f"must be a string such as ',' or '\\t', got {raw!r}")
        return default
    d = raw
    if "\\" in d:  # written escaped: "\\t", "\\u0001"
        try:
            d = d.encode("latin-1", "backslashreplace").decode("unicode_escape")
        except UnicodeDecodeError:
            p.problem("fieldDelimiter", f"{raw!r} is not a valid escape sequence")
            return default
    if "\n" in d or "\r" in d:
        p.problem("fieldDelimiter", "cannot hold a line break")
    elif fmt == "csv" and (len(d) != 1 or d == '"'):
        p.problem(
            "fieldDelimiter",
            f"{raw!r}: csv needs a single character other than '\"'; "
            "use fileFormat text for a longer delimiter",
        )
    else:
        return d
    return default


#: DataX's ``csvReaderConfig`` keys (javacsv's CsvReader settings) that change nothing tidesync
#: reads: a length guard, header name case, keeping the raw line
_CSV_CONFIG_INERT = ("safetySwitch", "caseSensitive", "captureRawRecord")
_CSV_CONFIG_KEYS = (
    "useTextQualifier",
    "textQualifier",
    "escapeMode",
    "skipEmptyRecords",
    "trimWhitespace",
    "useComments",
    "comment",
    "delimiter",
    "recordDelimiter",
    *_CSV_CONFIG_INERT,
)


def _csv_reader_config(p: base.Params, fmt: str, delimiter: str) -> tuple[str, bool | None]:
    """DataX's ``csvReaderConfig`` (csv only): ``useTextQualifier: false`` reads the file
    without quotes (as ``text``); ``skipEmptyRecords`` decides whether an empty line of a file of
    one field is a row. Every other setting that would change what is read is a problem: it
    was ignored, and with ``useTextQualifier: false`` a stray quote merged the lines up to the
    next one into a single value. Returns the format to read and ``skipEmptyRecords``."""
    cfg = p.obj("csvReaderConfig", {}, keys=_CSV_CONFIG_KEYS)
    if not cfg or fmt != "csv":  # DataX reads it for csv only
        return fmt, None
    key = "csvReaderConfig"

    def flag(name: str, default: bool) -> bool:
        v = cfg.get(name, default)
        if isinstance(v, str) and v.strip().lower() in ("true", "false"):
            return v.strip().lower() == "true"
        if not isinstance(v, bool):
            p.problem(f"{key}.{name}", f"must be true or false, got {v!r}")
            return default
        return v

    quoted = flag("useTextQualifier", True)
    skip_empty = flag("skipEmptyRecords", True) if "skipEmptyRecords" in cfg else None
    unsupported = {
        "textQualifier": cfg.get("textQualifier", '"') not in ('"', None),
        "escapeMode": str(cfg.get("escapeMode", 1)).strip().lower() not in ("1", "doubled"),
        "trimWhitespace": flag("trimWhitespace", False),
        "useComments": flag("useComments", False),
        "comment": False,
        "delimiter": cfg.get("delimiter", delimiter) != delimiter,
        "recordDelimiter": cfg.get("recordDelimiter", "\n") not in ("\n", "\r\n", None),
    }
    for name, bad in unsupported.items():
        if bad and name in cfg:
            p.problem(
                f"{key}.{name}",
                f"{cfg[name]!r} is not supported: tidesync reads csv with '\"' quoting values "
                "(doubled inside them), values as they are, no comments, fieldDelimiter between "
                "fields and lines ending in \\n or \\r\\n",
            )
    return ("csv" if quoted else "text"), skip_empty


def _encoding(p: base.Params) -> str:
    v = p.str("encoding", "utf-8")
    try:
        return codecs.lookup(v).name
    except LookupError:
        p.problem(
            "encoding", f"{v!r} is not an encoding Python knows (utf-8, gbk, gb18030, latin-1 ...)"
        )
        return "utf-8"


def _raw_string(p: base.Params, key: str, default: str) -> str:
    """A string parameter where the empty string is a value (``nullFormat: ""``)."""
    p.get(key)
    v = p.raw.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        p.problem(key, f"must be a string, got {v!r}")
        return default
    return v


def _filesystem(p: base.Params, path: str, ctx: base.Context) -> tuple[pafs.FileSystem, str] | None:
    try:
        return filesystem_for(path, p.raw, ctx)
    except ConfigError as e:
        p.problems.extend(x for x in e.problems if x not in p.problems)
        return None


def _edge(fs: pafs.FileSystem) -> Any:
    """The object store behind ``fs`` (its error translation), or None for a local disk."""
    if not isinstance(fs, pafs.PyFileSystem):
        return None
    from tidesync.connectors.file.objectstore import edge_of

    return edge_of(fs)


def _store_error(fs: pafs.FileSystem, e: BaseException, action: str, path: str) -> Any:
    """An object store's failure translated at the edge (None: not an object store's)."""
    edge = _edge(fs)
    return edge.translate(e, action, path) if edge is not None else None


def _object_store_keys(p: base.Params) -> None:
    """Object-store settings are read by the file system; they are not unknown keys."""
    from tidesync.connectors.file.objectstore import KEYS

    if any(k in p.raw for k in KEYS):
        p.seen.update(KEYS)
