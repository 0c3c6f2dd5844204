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

import contextlib
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

__all__ = [
    "ServerError",
    "usable",
    "copy_out",
    "copy_frames",
    "CopyIn",
    "framed",
    "unframed",
    "SIGNATURE",
]

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_HEADER = len(SIGNATURE) + 8  # signature, flags int32, header extension length int32
#: bytes read before the rows in them are decoded: large enough to make per-piece work small
PIECE = 8 << 20
#: bytes kept after the data, so fixed-width gathers at a NULL field's position stay inside
PAD = 64
_MIN_WINDOW = 64
_READY = b"Z\x00\x00\x00\x05"  # ReadyForQuery, less its status byte
#: bytes the kernel gathers on a COPY's socket before it wakes the reader (``SO_RCVLOWAT``): the
#: server sends 8 KiB at a time, and a wake-up for each cost more system CPU than the copying
#: itself (2M rows, 216 MB: 0.35-0.45 system CPU-s reading, 0.18-0.23 with 256 KiB)
_LOWAT = 256 << 10
#: seconds between looks at the socket for fewer bytes than that (a stream's tail, a slow query)
_LOOK = 0.002
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
    with _copying(conn) as sock:
        sock.sendall(b"Q" + struct.pack("!i", len(body) + 4) + body)
        yield from _Walker(sock, ncols).pieces()


@contextlib.contextmanager
def _copying(conn: Any) -> Iterator[socket.socket]:
    """``conn``'s socket, blocking, for a COPY read off it: the kernel wakes the reader only
    once :data:`_LOWAT` bytes have come (:meth:`_Walker._fill` looks for fewer every
    :data:`_LOOK`). Both are undone after, whatever happens: the descriptor is libpq's too, and
    libpq waits for any byte."""
    sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
    lowat = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
    try:
        sock.setblocking(True)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, _LOWAT)
        yield sock
    finally:
        try:
            with contextlib.suppress(OSError):  # a broken connection: libpq finds out itself
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat)
            sock.setblocking(False)  # libpq's own mode
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
        self.scratch = np.empty(0, bool)  # see :meth:`_mask`

    def pieces(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for a, _, rows, end in self._walked(PIECE, PIECE // 2):
            if rows.size:
                a[end : end + PAD] = 0
                yield a, rows

    def _walked(
        self, size: int, want: int | None
    ) -> Iterator[tuple[np.ndarray, int, np.ndarray, int]]:
        """Each piece read (``want`` bytes gathered, None: as many as the buffer holds) and
        walked: the buffer as uint8, where its first incomplete message begins, the rows'
        first-field positions and the end of the data. Valid until the next is asked for."""
        buf = bytearray(size + PAD)
        end = 0  # bytes of data in buf
        view = memoryview(buf)
        while not self.ready:
            buf, view = _room(buf, view, end)
            end = self._fill(buf, view, end, len(buf) - PAD if want is None else want)
            a = np.frombuffer(buf, np.uint8)
            pos, rows = self._walk(buf, a, end)
            yield a, pos, rows, end
            del a
            rest = end - pos
            buf[:rest] = buf[pos:end]
            end = rest
        view.release()
        if self.error is not None:
            raise self.error

    def _mask(self, n: int) -> np.ndarray:
        """``n`` booleans of this reader's own, overwritten by the next call: a new megabyte
        each piece cost its pages' first touches, 0.3-1.5 ms a piece, more than filling it."""
        if self.scratch.size < n:
            self.scratch = np.empty(n, bool)
        return self.scratch[:n]

    def _fill(self, buf: bytearray, view: memoryview, end: int, want: int) -> int:
        """Read what the socket has into ``buf`` after ``end``; the new end. Waits for the first
        bytes, then gathers up to ``want`` bytes (the walk's cost is mostly per piece) until the
        end (ReadyForQuery) has come or nothing has for :data:`_LINGER`. The socket's low-water
        mark (:func:`_copying`) makes the wake-ups few; a look every :data:`_LOOK` (every
        :data:`_LINGER` once quiet that long) takes what is fewer."""
        start = end
        last = time.monotonic()  # when bytes last came
        while True:
            quiet = time.monotonic() - last
            select.select([self.sock], [], [], _LOOK if quiet < _LINGER else _LINGER)
            try:
                got = self.sock.recv_into(view[end : len(buf) - PAD], 0, socket.MSG_DONTWAIT)
            except BlockingIOError:
                got = -1  # nothing has come
            if got == 0:  # after a FATAL error (the server shutting down) or a broken link
                raise self.error or ConnectionResetError("the server closed the connection")
            if got > 0:
                end += got
                last = time.monotonic()
                if end >= want or buf[end - 6 : end - 1] == _READY:
                    return end
            elif end > start and quiet >= _LINGER:
                return end

    def _walk(self, buf: bytearray, a: np.ndarray, end: int) -> tuple[int, np.ndarray]:
        """Find the complete messages in ``buf[:end]``: the rows' first-field positions, and
        where the first incomplete message begins."""
        hi, lo = self.count
        last = end - 7
        c = np.flatnonzero(np.equal(a[:last], 0x64, out=self._mask(last)))
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


# -- passing COPY data on to another server -----------------------------------------------------


def copy_frames(
    conn: Any, sql: str, ncols: int, size: int
) -> Iterator[tuple[memoryview, int, int]]:
    """Run ``COPY (sql) TO STDOUT (FORMAT binary)`` on ``conn`` (idle, :func:`usable`) and yield
    its data in pieces of about ``size`` bytes of whole rows (the first with the format's
    header, the last with its trailer), each piece one ``CopyData`` message ready for another
    server's ``COPY FROM STDIN``, with the rows in it and the bytes of COPY data (less the five
    of the framing); the other messages (the COPY's start and end, notices) are left out. Each
    piece is memory of its own. The rows are found as :func:`copy_out` finds them; the
    server's own count at the end must match their sum (else ``ConnectionError``). Errors as
    :func:`copy_out`."""
    body = f"COPY ({sql}) TO STDOUT (FORMAT binary)".encode() + b"\x00"
    with _copying(conn) as sock:
        sock.sendall(b"Q" + struct.pack("!i", len(body) + 4) + body)
        yield from _Frames(sock, ncols, size).frames()


class _Frames(_Walker):
    def __init__(self, sock: socket.socket, ncols: int, size: int):
        super().__init__(sock, ncols)
        self.size = size
        self.holes: list[tuple[int, int]] = []  # the messages of a piece that are not CopyData
        self.starts: list[int] = []  # the CopyData messages of a piece walked one by one
        self.header_row = -1  # the first field of the row after the format's header
        self.tag = b""  # CommandComplete's: COPY n

    def frames(self) -> Iterator[tuple[memoryview, int, int]]:
        rows = 0
        # a full piece: its rows are handed on in memory of their own
        for a, pos, found, _ in self._walked(self.size, None):
            out = self._merged(a, pos, found)
            self.holes, self.starts, self.header_row = [], [], -1
            if out is not None:
                rows += found.size
                yield out.data, found.size, out.size - 5
        tag = self.tag.split()
        if len(tag) != 2 or tag[0] != b"COPY" or int(tag[1]) != rows:
            raise ConnectionError(f"the server sent {rows} rows and said {self.tag!r}")

    def _merged(self, a: np.ndarray, pos: int, found: np.ndarray) -> np.ndarray | None:
        """The COPY data of the complete messages before ``pos`` as one CopyData message (None:
        there is none). The target's server does work per message (0.06 to 0.1 CPU-s more for
        2M one-row messages than for large ones, on the copy's critical path), so the rows'
        five-byte framings are cut out here, with one numpy mask."""
        # where each CopyData message starts: a row's first field is 7 bytes after it, save the
        # row that carries the format's header; those walked in Python were noted
        rows = found[found != self.header_row] - 7 if self.header_row >= 0 else found - 7
        starts = np.concatenate([rows, np.array(self.starts, np.int64)])
        if not starts.size:
            return None
        keep = self._mask(pos)
        keep.fill(True)
        for lo, hi in self.holes:
            keep[lo:hi] = False
        # the first message's framing stays, to frame them all (its length written below)
        first = int(starts.min())
        keep[(starts[starts != first][:, None] + np.arange(5)).ravel()] = False
        data = a[:pos][keep]  # a mask: twice as fast as np.compress, and no copy after it
        data[1:5] = np.frombuffer((data.size - 1).to_bytes(4, "big"), np.uint8)
        return data

    def _message(self, buf: bytearray, pos: int, n: int) -> int:
        if buf[pos] != 0x64:
            self.holes.append((pos, pos + 1 + n))
            if buf[pos] == 0x43:  # CommandComplete
                self.tag = bytes(buf[pos + 5 : pos + 1 + n]).rstrip(b"\x00")
            return super()._message(buf, pos, n)
        self.starts.append(pos)
        header = self.header
        row = super()._message(buf, pos, n)
        if not header and self.header:
            self.header_row = row
        return row


class CopyIn:
    """``COPY ... FROM STDIN`` on ``conn`` (idle, :func:`usable`) fed whole ``CopyData``
    messages, such as :func:`copy_frames` yields, straight to the socket. As for the reads,
    libpq sees an idle connection before and after (in the transaction it was in). The socket is
    read while it is written, so the server's notices and errors never block it; an error ends
    the COPY and raises :class:`ServerError` (the transaction is then failed, as the server
    says)."""

    def __init__(self, conn: Any, sql: str):
        self.sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        self.sock.setblocking(False)  # libpq's own mode: the descriptor is shared
        self.inbox = bytearray()
        self.error: ServerError | None = None
        self.tag = b""
        self.copying = False  # CopyInResponse seen, ReadyForQuery not yet
        self.ready = False
        body = sql.encode() + b"\x00"
        try:
            self._send(b"Q" + struct.pack("!i", len(body) + 4) + body)
            while not (self.copying or self.ready):
                self._receive(None)
        except BaseException:
            self.sock.close()
            raise
        if not self.copying:  # an error before the COPY began (no such table ...)
            self.sock.close()
            raise self.error or ConnectionError(f"the server did not start {sql[:60]!r}")

    def write(self, data: Any) -> None:
        """Send whole CopyData messages (the server must never see part of one: after an
        error it skips messages, not bytes)."""
        self._send(data)
        if self.error is not None:
            self._end(b"c\x00\x00\x00\x04")
            raise self.error

    def finish(self) -> int:
        """End the COPY; the rows the server took."""
        self._end(b"c\x00\x00\x00\x04")
        if self.error is not None:
            raise self.error
        tag = self.tag.split()
        if len(tag) != 2 or tag[0] != b"COPY":
            raise ConnectionError(f"the server ended the COPY with {self.tag!r}")
        return int(tag[1])

    def abort(self, why: str) -> None:
        """Fail the COPY (``CopyFail``): the server takes none of its rows."""
        msg = why.encode("utf-8", "replace")[:200].replace(b"\x00", b" ") + b"\x00"
        self._end(b"f" + struct.pack("!i", len(msg) + 4) + msg)

    def _end(self, message: bytes) -> None:
        try:
            if not self.ready:
                self._send(message)
            while not self.ready:
                self._receive(None)
        finally:
            self.sock.close()

    def _send(self, data: Any) -> None:
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            readable, writable, _ = select.select([self.sock], [self.sock], [])
            if readable:
                self._receive(0)
            if writable:
                try:
                    sent += self.sock.send(view[sent:])
                except BlockingIOError:
                    continue

    def _receive(self, timeout: float | None) -> None:
        """Read and act on the server's messages (``timeout`` None: wait for some)."""
        if timeout is None:
            select.select([self.sock], [], [])
        try:
            got = self.sock.recv(1 << 16)
        except BlockingIOError:
            return
        if not got:
            raise self.error or ConnectionResetError("the server closed the connection")
        box = self.inbox
        box += got
        pos = 0
        while len(box) - pos >= 5:
            kind = box[pos]
            n = int.from_bytes(box[pos + 1 : pos + 5], "big")
            if len(box) - pos < 1 + n:
                break
            if kind == 0x47:  # CopyInResponse
                self.copying = True
            elif kind == 0x45:  # ErrorResponse
                self.error = ServerError(_fields(bytes(box[pos + 5 : pos + 1 + n])))
            elif kind == 0x43:  # CommandComplete
                self.tag = bytes(box[pos + 5 : pos + 1 + n]).rstrip(b"\x00")
            elif kind == 0x5A:  # ReadyForQuery
                self.ready = True
                self.copying = False
            # notices, parameter status: nothing to do
            pos += 1 + n
        del box[:pos]


def framed(payload: Any) -> bytes:
    """COPY data as one CopyData message."""
    return b"d" + struct.pack("!i", len(payload) + 4) + bytes(payload)


def unframed(data: Any) -> bytes:
    """The COPY data in whole CopyData messages, without the messages' framing."""
    view = memoryview(data).cast("B")
    parts = []
    pos = 0
    while pos < len(view):
        if view[pos] != 0x64:
            raise ValueError(f"a message of kind {view[pos]:#x} among COPY data")
        n = int.from_bytes(view[pos + 1 : pos + 5], "big")
        parts.append(view[pos + 5 : pos + 1 + n])
        pos += 1 + n
    return b"".join(parts)


def _room(buf: bytearray, view: memoryview, end: int) -> tuple[bytearray, memoryview]:
    """``buf`` and its view, or a buffer twice as large holding its ``end`` bytes when less
    than 64 KiB is left (a message longer than the buffer)."""
    if end + PAD < len(buf) - (1 << 16):
        return buf, view
    grown = bytearray(2 * len(buf))
    grown[:end] = buf[:end]
    view.release()
    return grown, memoryview(grown)


def _fields(payload: bytes) -> dict[str, str]:
    out = {}
    for part in payload.split(b"\x00"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return out
