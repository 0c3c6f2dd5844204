"""Binary COPY off the socket: ``COPY (query) TO STDOUT (FORMAT binary)`` read in large pieces,
the row messages found for a whole piece at once.

psycopg (libpq) opens the connection, authenticates and runs the session's statements; the COPY
itself is written to the socket as a simple-protocol ``Query`` message and its answer read
straight back, so libpq's state never changes (it sees an idle connection before and after).
libpq hands out one COPY row per call, which costs more in Python than decoding the row
(measured: 1.7 us a row against 0.3 us for this module's walk and :mod:`decode` together); this
module reads megabytes per call instead. Only an unencrypted connection can be read this way:
:func:`usable` says whether one is (TLS and GSS encryption go through ADBC instead).

Finding the rows. Every row is a ``CopyData`` message: ``'d'``, a big-endian int32 length, then
the tuple, which starts with the int16 field count. So each row begins with the same seven-byte
pattern save for the length; the candidates are the positions of ``'d'`` followed by that count
two bytes further, found with numpy over the whole piece. A candidate is a row if its
predecessor's length points at it: ``start + 1 + length`` of each is compared with the next
candidate's position, vectorized, and the chain of rows from the walk's position is accepted up
to the first mismatch (a byte pattern inside a row that looked like a header, or another
message). Candidates no other candidate points at are dropped first, which removes almost every
false one (on the benchmark's table one row in 250 holds such a pattern) and keeps the chains long. What is not on the chain is walked one message at a time in Python: the header on the
first row, the trailer, ``CopyDone``, notices, errors, ``ReadyForQuery``. A false candidate costs
one shorter chain, never a wrong row: only positions reached from a real message are accepted.
"""

from __future__ import annotations

import os
import select
import socket
import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = ["ServerError", "usable", "copy_out", "SIGNATURE"]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = len(SIGNATURE) + 8  # signature, flags int32, header extension length int32
#: bytes read before the rows in them are decoded: large enough to make per-piece work small
PIECE = 8 << 20
#: bytes kept after the data, so fixed-width gathers at a NULL field's position stay inside
PAD = 64
_MIN_WINDOW = 64
_READY = b"Z\x00\x00\x00\x05"  # ReadyForQuery, less its status byte
#: seconds a piece waits for more data before it is walked
_LINGER = 0.02
_MAX_WINDOW = 1 << 16


class ServerError(Exception):
    """An ``ErrorResponse`` the server sent during the COPY: its fields, SQLSTATE kept."""

    def __init__(self, fields: dict[str, str]):
        self.fields = fields
        self.sqlstate = fields.get("C")
        msg = fields.get("M", "error")
        detail = fields.get("D")
        super().__init__(f"{fields.get('S', 'ERROR')}:  {msg}" + (f" ({detail})" if detail else ""))


def usable(conn: Any) -> bool:
    """Whether the bytes on ``conn``'s socket are the protocol itself (no TLS, no GSS)."""
    pg = conn.pgconn
    return not pg.ssl_in_use and not getattr(pg, "used_gssapi", False) and pg.socket >= 0


def copy_out(conn: Any, sql: str, ncols: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Run ``COPY (sql) TO STDOUT (FORMAT binary)`` on ``conn`` (idle, :func:`usable`) and yield
    its rows a piece at a time: the piece as uint8 (``PAD`` bytes beyond the data) and the
    position in it of each row's first field, as int64. A piece is only valid until the next is
    asked for. Errors from the server raise :class:`ServerError` once the server is ready again
    (the connection stays usable); a broken connection raises ``OSError``."""
    body = f"COPY ({sql}) TO STDOUT (FORMAT binary)".encode() + b"\x00"
    sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        sock.setblocking(True)
        sock.sendall(b"Q" + struct.pack("!i", len(body) + 4) + body)
        yield from _Walker(sock, ncols).pieces()
    finally:
        try:
            sock.setblocking(False)  # libpq's own mode: the descriptor is shared
        finally:
            sock.close()


class _Walker:
    def __init__(self, sock: socket.socket, ncols: int):
        self.sock = sock
        self.count = struct.pack("!h", ncols)
        self.ncols = ncols
        self.header = False  # the COPY signature seen
        self.trailer = False
        self.error: ServerError | None = None
        self.ready = False  # ReadyForQuery: the end
        self.window = 4096

    def pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        buf = bytearray(PIECE + PAD)
        end = 0  # bytes of data in buf
        view = memoryview(buf)
        while not self.ready:
            if end + PAD >= len(buf) - (1 << 16):  # no room: a message longer than the buffer
                grown = bytearray(2 * len(buf))
                grown[:end] = buf[:end]
                view.release()
                buf, view = grown, memoryview(grown)
            got = self.sock.recv_into(view[end : len(buf) - PAD])
            if not got:  # after a FATAL error (the server shutting down) or a broken link
                raise self.error or ConnectionResetError("the server closed the connection")
            end += got
            # gather a large piece before walking it (the walk's cost is mostly per piece), as
            # long as more is coming soon and the end (ReadyForQuery) has not arrived
            while end < PIECE // 2 and buf[end - 6 : end - 1] != _READY:
                if not select.select([self.sock], [], [], _LINGER)[0]:
                    break
                got = self.sock.recv_into(view[end : len(buf) - PAD])
                if not got:
                    break  # the next read raises
                end += got
            a = np.frombuffer(buf, np.uint8)
            pos, rows = self._walk(buf, a, end)
            if rows.size:
                a[end : end + PAD] = 0
                yield a, rows
            del a
            rest = end - pos
            buf[:rest] = buf[pos:end]
            end = rest
        view.release()
        if self.error is not None:
            raise self.error

    def _walk(self, buf: bytearray, a: np.ndarray, end: int) -> tuple[int, np.ndarray]:
        """Find the complete messages in ``buf[:end]``: the rows' first-field positions, and
        where the first incomplete message begins."""
        hi, lo = self.count
        last = end - 7
        c = np.flatnonzero(a[:last] == 0x64)
        if c.size:
            c = c[(a[c + 5] == hi) & (a[c + 6] == lo)]
        if c.size:
            b = a[(c[:, None] + np.arange(1, 5)).ravel()].view(">i4")
            nxt = c + 1 + b.astype(np.int64)
            # a row is where the row before it ends: keep the candidates another one points
            # at (the first row after other messages is walked in Python), so that a false
            # candidate (numeric digits before a length of 8, say) does not cut the chain
            at = np.searchsorted(c, nxt)
            hit = at < c.size
            hit[hit] = c[at[hit]] == nxt[hit]
            keep = np.zeros(c.size, bool)
            keep[at[hit]] = True
            c, nxt = c[keep], nxt[keep]
        else:
            nxt = c
        out: list[np.ndarray] = []
        pos = 0
        i = 0
        while pos < end and not self.ready:
            i = int(np.searchsorted(c, pos, "left"))
            if i < c.size and c[i] == pos:
                j = min(i + self.window, c.size)
                seg_c, seg_n = c[i:j], nxt[i:j]
                brk = np.flatnonzero(seg_n[:-1] != seg_c[1:])
                k = int(brk[0]) + 1 if brk.size else j - i
                self.window = (
                    min(self.window * 2, _MAX_WINDOW) if k == j - i else max(_MIN_WINDOW, k * 2)
                )
                if seg_n[k - 1] > end:  # the last row has not all arrived
                    k = int(np.searchsorted(seg_n[:k], end, "right"))
                    if k == 0:
                        break
                out.append(seg_c[:k] + 7)
                pos = int(seg_n[k - 1])
                continue
            if pos + 5 > end:
                break
            n = int.from_bytes(buf[pos + 1 : pos + 5], "big")
            if pos + 1 + n > end:
                break
            row = self._message(buf, pos, n)
            if row >= 0:
                out.append(np.array([row], np.int64))
            pos += 1 + n
        rows = np.concatenate(out) if out else np.empty(0, np.int64)
        return pos, rows

    def _message(self, buf: bytearray, pos: int, n: int) -> int:
        """One message walked in Python: a row's first-field position, or -1."""
        kind = buf[pos]
        start = pos + 5
        stop = pos + 1 + n
        if kind == 0x64:  # CopyData
            if not self.header:
                if buf[start : start + len(SIGNATURE)] != SIGNATURE:
                    raise ConnectionError("the server's COPY data has no binary signature")
                ext = int.from_bytes(buf[start + 15 : start + 19], "big")
                start += _HEADER + ext
                self.header = True
            count = int.from_bytes(buf[start : start + 2], "big", signed=True)
            if count == -1:
                self.trailer = True
                return -1
            if count != self.ncols:
                raise ConnectionError(f"a COPY row of {count} fields, {self.ncols} expected")
            return start + 2
        if kind == 0x45:  # ErrorResponse: raised when the server is ready again
            self.error = ServerError(_fields(bytes(buf[start:stop])))
        elif kind == 0x5A:  # ReadyForQuery
            self.ready = True
        # CopyOutResponse, CopyDone, CommandComplete, notices, parameter status: nothing to do
        return -1


def _fields(payload: bytes) -> dict[str, str]:
    out = {}
    for part in payload.split(b"\x00"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out
