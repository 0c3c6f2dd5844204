"""The archiver's write-ahead log: where a message is durable before the broker hears it is.

A policy's log is a folder of segment files named by the first sequence number they may hold
(``00000000000000000042.wal``). A segment is a run of framed records::

    u32 length of the body | u32 CRC-32 of the body | body
    body: u8 type, then for DATA: u64 seq, i64 arrival ms, u8 flags, u64 source id,
          u16 topic length, topic (UTF-8), payload (the rest)
          for META: one JSON object (publish intents and outcomes, checkpoints)

Writes are group-committed: the service writes every record that waited during the previous
``fsync`` in one ``write`` and one ``fsync``, then acknowledges them all. A record torn by a
crash (short, or failing its CRC) can only be the last of the last segment: it was never
acknowledged, and recovery cuts the segment there. A new segment's directory entry is synced
before anything in it is acknowledged.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tidesync.errors import FatalError

__all__ = ["Record", "Log", "scan", "encode_data", "encode_meta", "REDELIVERED"]

_HEAD = struct.Struct("<II")
_DATA = struct.Struct("<BQqBQH")
DATA, META = 1, 2
#: flag: the broker says it delivered this message before (MQTT DUP, JetStream redelivery)
REDELIVERED = 1
_SUFFIX = ".wal"
_MAX_BODY = 256 << 20


@dataclass(slots=True)
class Record:
    seq: int
    arrival: int  # epoch ms: the system time of the message
    flags: int
    src_id: int  # MQTT packet id, JetStream stream sequence
    topic: str
    payload: bytes


def encode_data(r: Record) -> bytes:
    topic = r.topic.encode()
    body = _DATA.pack(DATA, r.seq, r.arrival, r.flags, r.src_id, len(topic)) + topic + r.payload
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def encode_meta(obj: dict[str, Any]) -> bytes:
    body = bytes([META]) + json.dumps(obj, separators=(",", ":")).encode()
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def _decode(body: bytes) -> Record | dict[str, Any]:
    if body[0] == DATA:
        _, seq, arrival, flags, src, tlen = _DATA.unpack_from(body)
        start = _DATA.size
        topic = body[start : start + tlen].decode()
        return Record(seq, arrival, flags, src, topic, body[start + tlen :])
    if body[0] == META:
        obj = json.loads(body[1:])
        if isinstance(obj, dict):
            return obj
    raise ValueError(f"unknown record type {body[0]}")


def segments(folder: Path) -> list[tuple[int, Path]]:
    out = []
    for p in folder.glob(f"*{_SUFFIX}"):
        stem = p.name[: -len(_SUFFIX)]
        if stem.isdigit():
            out.append((int(stem), p))
    return sorted(out)


def scan(folder: Path, repair: bool = False) -> Iterator[Record | dict[str, Any]]:
    """Every record of the log in order. A torn end of the last segment ends the scan (and is
    cut off with ``repair``); damage anywhere else is a FatalError."""
    segs = segments(folder)
    for i, (_, path) in enumerate(segs):
        last = i == len(segs) - 1
        try:
            f = path.open("rb")
        except FileNotFoundError:  # trimmed under a reader (status while running)
            continue
        with f:
            data = f.read()
        pos = 0
        while pos < len(data):
            bad = None
            if len(data) - pos < _HEAD.size:
                bad = "a short header"
            else:
                size, crc = _HEAD.unpack_from(data, pos)
                body = data[pos + _HEAD.size : pos + _HEAD.size + size]
                if size == 0 or size > _MAX_BODY or len(body) < size:
                    bad = "a short record"
                elif zlib.crc32(body) != crc:
                    bad = "a checksum mismatch"
            if bad is None:
                try:
                    rec = _decode(body)
                except (ValueError, UnicodeDecodeError, struct.error) as e:
                    bad = f"an unreadable record ({e})"
            if bad is not None:
                if not last:
                    raise FatalError(
                        f"{path}: {bad} at byte {pos}, before the last segment: the log is damaged"
                    )
                if repair:
                    with path.open("r+b") as w:
                        w.truncate(pos)
                        os.fsync(w.fileno())
                break
            yield rec
            pos += _HEAD.size + size


class Log:
    """The open log of one policy: appends with fsync, segment rolls, trimming."""

    def __init__(self, folder: Path, next_seq: int, segment_bytes: int = 64 << 20):
        self.folder = folder
        self.segment_bytes = segment_bytes
        folder.mkdir(parents=True, exist_ok=True)
        segs = segments(folder)
        if segs:
            self.path = segs[-1][1]
        else:
            self.path = folder / f"{next_seq:020d}{_SUFFIX}"
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self.fd).st_size
        if not segs:
            _sync_dir(folder)

    def append(self, chunks: list[bytes], next_seq: int) -> Path:
        """Write ``chunks`` and fsync; roll to a new segment (named ``next_seq``) once this one
        has grown past the segment size. Returns the segment written to."""
        written = self.path
        data = b"".join(chunks)
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]
        os.fdatasync(self.fd)
        self.size += len(data)
        if self.size >= self.segment_bytes:
            self.roll(next_seq)
        return written

    def roll(self, next_seq: int) -> None:
        """Go on in a new segment named ``next_seq``."""
        path = self.folder / f"{next_seq:020d}{_SUFFIX}"
        if path == self.path:
            return
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        _sync_dir(self.folder)
        os.close(self.fd)
        self.fd, self.path, self.size = fd, path, 0

    def trim(self, below: int, keep: Path | None = None) -> int:
        """Delete the segments holding only records with seq < ``below``, up to ``keep`` (the
        segment of the checkpoint that makes them unnecessary) and never the one being written;
        return how many."""
        segs = segments(self.folder)
        gone = 0
        for (_, path), (nxt, _) in zip(segs, segs[1:], strict=False):
            if nxt > below or path in (self.path, keep):
                break
            path.unlink(missing_ok=True)
            gone += 1
        if gone:
            _sync_dir(self.folder)
        return gone

    def bytes_on_disk(self) -> int:
        return sum(p.stat().st_size for _, p in segments(self.folder) if p.exists())

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
