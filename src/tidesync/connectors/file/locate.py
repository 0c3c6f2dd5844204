"""Finding the files a reader's ``path`` names, and finding line boundaries inside them.

Everything goes through a ``pyarrow.fs.FileSystem`` and its paths ('/' separated), so the same
code serves local disks and object stores."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator

import pyarrow as pa
import pyarrow.fs as pafs

from tidesync.connectors.file.stage import staging_of
from tidesync.errors import FatalError

#: user spelling -> pyarrow codec name (None: not compressed)
COMPRESSIONS: dict[str, str | None] = {
    "gzip": "gzip",
    "gz": "gzip",
    "bzip2": "bz2",
    "bz2": "bz2",
    "zstd": "zstd",
    "zst": "zstd",
    "none": None,
}
#: pyarrow codec name -> file name suffix
SUFFIXES = {"gzip": ".gz", "bz2": ".bz2", "zstd": ".zst"}
_BY_EXTENSION = {".gz": "gzip", ".gzip": "gzip", ".bz2": "bz2", ".zst": "zstd", ".zstd": "zstd"}
_PROBE = 1 << 16
_MAX_LINE = 64 << 20


#: how compressed data and archives begin -> what they are and what to do
_MAGIC = (
    (b"\x1f\x8b", "gzip data: name it .gz or set compress: gzip"),
    (b"BZh", "bzip2 data: name it .bz2 or set compress: bzip2"),
    (b"\x28\xb5\x2f\xfd", "zstd data: name it .zst or set compress: zstd"),
    (b"PK\x03\x04", "a zip archive, which is not read: unzip it (or compress with gzip)"),
)


def not_compressed(head: bytes, where: str) -> None:
    """A text file's first bytes must not be compressed data: read as text in another
    ``encoding`` (``latin-1`` takes any byte) it gave rows of garbage, or dirty records."""
    for magic, what in _MAGIC:
        if head.startswith(magic) and (magic != b"BZh" or head[4:10] == b"1AY&SY"):
            raise FatalError(f"{where}: the file holds {what}")


def compression_of(path: str) -> str | None:
    """The codec a file name's extension implies (``a.csv.gz`` -> ``gzip``)."""
    dot = path.rfind(".")
    return _BY_EXTENSION.get(path[dot:].lower()) if dot > path.rfind("/") else None


def has_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """``*`` and ``?`` stay inside one path segment; a ``**`` segment spans any number of them."""
    segs = pattern.split("/")
    out = []
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        if seg == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        out.append(
            "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c) for c in seg)
        )
        if not last:
            out.append("/")
    return re.compile("".join(out))


def _visible(path: str, base: str) -> bool:
    """Hidden files and folders (``.name``, ``_name``: temporaries, ``_SUCCESS`` markers) below
    ``base`` are not data."""
    rel = path[len(base) :].strip("/")
    return not any(part[:1] in (".", "_") for part in rel.split("/"))


def expand(
    fs: pafs.FileSystem, pattern: str, prefix: bool = False, stagings: set[str] | None = None
) -> list[pafs.FileInfo]:
    """The files ``pattern`` names, sorted: a file; a folder (every file below it); or a glob with
    ``*``, ``?`` and ``**``. With ``prefix`` (an object store's ``object``), a name that is not a
    file stands for every file whose path starts with it. Nothing found is an empty list; the
    caller decides what that means. ``stagings`` collects the writers' staging folders
    (``.tidesync-tmp-RUN``) in the folders looked at, where pending publishes may lie."""
    if not has_glob(pattern):  # a folder may come: its check's client loads meanwhile
        _folder_objects(fs, None)
    if prefix and not has_glob(pattern):
        return _by_prefix(fs, pattern, stagings)
    if not has_glob(pattern):
        info = fs.get_file_info(pattern)
        if info.type == pafs.FileType.File:
            if stagings is not None:
                _note(fs.get_file_info(_folder_of(pattern)), stagings)
            return [info]
        if info.type != pafs.FileType.Directory:
            if stagings is not None and "/" in pattern:
                _note(fs.get_file_info(_folder_of(pattern)), stagings)
            return []
        _folder_objects(fs, [pattern])
        found = fs.get_file_info(pafs.FileSelector(pattern, recursive=True))
        _note(found, stagings)
        return _once(i for i in found if i.type == pafs.FileType.File and _visible(i.path, pattern))
    segs = pattern.split("/")
    first = next(i for i, s in enumerate(segs) if has_glob(s))
    base = "/".join(segs[:first]) or "/"
    recursive = first < len(segs) - 1 or "**" in segs[first]
    info = fs.get_file_info(base)
    if info.type != pafs.FileType.Directory:
        return []
    found = fs.get_file_info(pafs.FileSelector(base, recursive=recursive, allow_not_found=True))
    _note(found, stagings)
    rx = _glob_regex(pattern)
    return _once(
        i
        for i in found
        if i.type == pafs.FileType.File and rx.fullmatch(i.path) and _visible(i.path, base)
    )


def matches(pattern: str, path: str, prefix: bool = False) -> bool:
    """Whether :func:`expand` would name ``path`` (a file) if it existed."""
    if prefix and not has_glob(pattern):
        parent = pattern.rpartition("/")[0] or pattern
        return path.startswith(pattern) and _visible(path, parent)
    if not has_glob(pattern):
        return path == pattern or (path.startswith(pattern + "/") and _visible(path, pattern))
    segs = pattern.split("/")
    base = "/".join(segs[: next(i for i, s in enumerate(segs) if has_glob(s))]) or "/"
    return bool(_glob_regex(pattern).fullmatch(path)) and _visible(path, base)


def _folder_of(path: str) -> pafs.FileSelector:
    return pafs.FileSelector(path.rsplit("/", 1)[0] or "/", allow_not_found=True)


def _note(found: list[pafs.FileInfo], stagings: set[str] | None) -> None:
    if stagings is None:
        return
    for i in found:
        s = staging_of(i.path)
        if s is not None:
            stagings.add(s)


def _by_prefix(
    fs: pafs.FileSystem, prefix: str, stagings: set[str] | None = None
) -> list[pafs.FileInfo]:
    """The file named ``prefix`` if there is one; else every file whose path starts with it (in
    its folder: names starting with the last part; below them: all visible files)."""
    parent, _, stem = prefix.rpartition("/")
    if not parent:  # a bare bucket name
        parent, stem = prefix, ""
    if not prefix.endswith("/"):
        info = fs.get_file_info(prefix)
        if info.type == pafs.FileType.File:
            if stagings is not None:
                _note(fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True)), stagings)
            return [info]
    out = []
    listed = fs.get_file_info(pafs.FileSelector(parent, allow_not_found=True))
    _note(listed, stagings)
    listed = [
        i for i in listed if i.base_name.startswith(stem) and (stem or _visible(i.path, parent))
    ]
    folders = [i.path for i in listed if i.type == pafs.FileType.Directory]
    _folder_objects(fs, folders if stem else [parent, *folders])
    for i in listed:
        if i.type == pafs.FileType.File:
            out.append(i)
        elif i.type == pafs.FileType.Directory:
            below = fs.get_file_info(pafs.FileSelector(i.path, recursive=True))
            _note(below, stagings)
            out += [j for j in below if j.type == pafs.FileType.File and _visible(j.path, i.path)]
    return _once(out)


def _folder_objects(fs: pafs.FileSystem, folders: list[str] | None) -> None:
    """On an object store, refuse a folder whose own key (``folder/``) holds data: listing the
    folder would pass over it (``Edge.folder_objects``). None: only start loading the client
    that checks, on a thread of its own."""
    check = getattr(getattr(fs, "handler", None), "folder_objects", None)
    if check is not None:
        check(folders)


def _once(found: Iterable[pafs.FileInfo]) -> list[pafs.FileInfo]:
    """The files sorted by path, each once. An object store lists ``a/b/`` holding data as a
    file ``a/b``: beside an object ``a/b`` that is two files of one path, one of them read twice
    and the other never."""
    out = sorted(found, key=lambda i: i.path)
    for a, b in zip(out, out[1:], strict=False):
        if a.path == b.path:
            raise FatalError(
                f"{a.path!r} is listed twice: an object of that key and one whose key ends in "
                f"'/' ({a.path.partition('/')[2] + '/'!r}), which cannot be read as an object; "
                "copy that one to a key without the trailing '/'"
            )
    return out


def line_start(f: pa.NativeFile, pos: int, size: int) -> int:
    """Offset of the first line that starts at or after ``pos`` (a line starts at 0 and after
    each ``\\n``). Lines are owned by the byte range they start in, so each is read once."""
    if pos <= 0:
        return 0
    off = pos - 1
    while off < size:
        chunk = f.read_at(min(_PROBE, size - off), off)
        if not chunk:
            break
        i = chunk.find(b"\n")
        if i >= 0:
            return off + i + 1
        off += len(chunk)
    return size


def ascii_compatible(encoding: str) -> bool:
    """Whether a ``\\n`` byte is always a line end in this encoding (byte ranges may split on it)."""
    name = codecs.lookup(encoding).name
    return not name.startswith(("utf-16", "utf-32", "utf_16", "utf_32"))


def first_line(stream: pa.NativeFile, encoding: str, where: str) -> tuple[str | None, int]:
    """The first non-empty line of a text stream, decoded (BOM and line end removed; None when
    the stream holds no line), and the number of empty lines before it."""
    decoder = codecs.getincrementaldecoder(encoding)()
    text = ""
    empty = 0
    first = True
    while True:
        raw = stream.read(_PROBE)
        if first:
            not_compressed(raw, where)
            first = False
        text += decoder.decode(raw, final=not raw)
        text = text.removeprefix("\ufeff")
        while (cut := text.find("\n")) >= 0:
            line = text[:cut].removesuffix("\r")
            if line:
                return line, empty
            text = text[cut + 1 :]
            empty += 1
        if not raw:
            return text.removesuffix("\r") or None, empty
        if len(text) > _MAX_LINE:
            raise FatalError(
                f"{where}: the first line is longer than {_MAX_LINE >> 20} MB; is this a text file?"
            )


def text_blocks(stream: pa.NativeFile, encoding: str, block: int, where: str = "") -> Iterator[str]:
    """A text stream decoded in pieces of about ``block`` bytes, each ending at a line end;
    ``where`` (the file, read from its start): see :func:`not_compressed`."""
    decoder = codecs.getincrementaldecoder(encoding)()
    tail = ""
    first = True
    while True:
        raw = stream.read(block)
        if where:
            not_compressed(raw, where)
            where = ""
        text = tail + decoder.decode(raw, final=not raw)
        if first:
            text = text.removeprefix("\ufeff")
            first = False
        if not raw:
            if text:
                yield text
            return
        cut = text.rfind("\n") + 1
        if cut == 0:
            tail = text
            continue
        tail = text[cut:]
        yield text[:cut]
