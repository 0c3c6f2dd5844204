"""The MySQL/MariaDB wire: streaming reads straight off the socket, and ``LOAD DATA LOCAL
INFILE`` fed from memory. PyMySQL makes the connection and parses column definitions; this module
takes over for the bulk of the bytes.

Reading. A query runs as a server-side prepared statement (binary protocol: the server sends
numbers, dates and times as bytes instead of formatting them as text, and the client need not
parse them) or, when the statement cannot be prepared or ``binary=False``, as a plain query
(text protocol). Either way the rows are read from the socket in large pieces; Python only walks
the packet headers (one step per row: the walk of each piece finds every complete row in it, and
batches are cut from the rows walked) and ``_mysql_decode`` turns each batch into Arrow
columns. Memory is bounded by one batch plus one socket read; a result abandoned before its end
arrived closes its connection (the rest of the rows would still be on the wire).

Writing. :func:`encode_tsv` turns text/binary columns into the default ``LOAD DATA`` format
(tab-separated, ``\\N`` for NULL, backslash escapes) with Arrow compute; :func:`load_local`
answers the server's LOCAL INFILE request with those bytes, whatever file name the server asks
for (so a server can never make this client read a local file).
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pymysql import err as myerr
from pymysql.connections import Connection, MySQLResult
from pymysql.constants import COMMAND

from tidesync.connectors.mysql.decode import (
    PAD,
    Column,
    columns_binary,
    columns_text,
    text_scalar,
)

__all__ = ["Rows", "stream", "metadata", "encode_tsv", "escape", "load_local"]

_MAX_PACKET = 0xFFFFFF
_PADDING = bytes(PAD)
#: errors after which the connection is gone: a failed PREPARE must not fall back to COM_QUERY
_GONE = {2006, 2013, 2055, 1927, 1053}


@dataclass
class Rows:
    """One batch: the result's columns and, per column, its values (see ``_mysql_decode``)."""

    columns: list[Column]
    raw: list[Any]


def _columns(res: MySQLResult) -> list[Column]:
    return [
        Column(f.name, f.type_code, f.flags, f.length, f.scale, f.charsetnr) for f in res.fields
    ]


def metadata(conn: Connection, sql: str) -> list[Column]:
    """The result columns of ``sql`` (make it return no rows: ``... WHERE 1=0``)."""
    items = list(stream(conn, sql, 1 << 16, binary=False))
    return items[0].columns if items else []


def stream(
    conn: Connection, sql: str, batch_rows: int, batch_bytes: int = 64 << 20, binary: bool = True
) -> Iterator[Rows]:
    """Run ``sql`` and yield its rows in batches of at most ``batch_rows`` rows (and about
    ``batch_bytes``). The first item always comes, with the columns and ``raw == []``, even
    when the result is empty. Errors are PyMySQL's exceptions."""
    stmt = _prepare(conn, sql) if binary else None
    if stmt is None:
        conn._execute_command(COMMAND.COM_QUERY, sql)
    else:
        conn._next_seq_id = 0
        conn.write_packet(struct.pack("<BIBI", COMMAND.COM_STMT_EXECUTE, stmt, 0, 1))
    res = MySQLResult(conn)
    try:
        res.init_unbuffered_query()
    except BaseException:
        _close_statement(conn, stmt)
        raise
    if not res.unbuffered_active:  # a statement without a result set
        _close_statement(conn, stmt)
        yield Rows([], [])
        return
    conn._result = res
    cols = _columns(res)
    ncols = len(cols)
    rf = conn._rfile
    buf = bytearray()
    p = 0  # where the walk stands in buf
    starts = array("i")  # the payload offset in buf of each row walked
    first = base = 0  # the first row not yielded yet, and where its packet begins
    done = False
    try:
        yield Rows(cols, [])
        while not done:
            try:
                chunk = rf.read1(1 << 20)
            except OSError as e:
                conn._force_close()
                raise myerr.OperationalError(
                    2013, f"Lost connection to server during query ({e})"
                ) from e
            if not chunk:
                conn._force_close()
                raise myerr.OperationalError(2013, "Lost connection to server during query")
            buf += chunk
            p, done = _walk(conn, res, rf, buf, p, starts)
            while (left := len(starts) - first) and (
                done or left >= batch_rows or p - base >= batch_bytes
            ):
                k = min(left, batch_rows)
                end = p if k == left else starts[first + k] - 4  # where row k's packet begins
                data = buf[base:end]  # a copy; the padding keeps fixed-width reads inside it
                data += _PADDING
                rows = _shift(starts[first : first + k], base)
                first, base = first + k, end
                if base > len(buf) // 2:
                    # forget the rows yielded when they are most of buf: memory stays at about
                    # one batch, and the offsets shifted are fewer than the rows yielded since
                    del buf[:base]
                    p -= base
                    starts = _shift(starts[first:], base)
                    first = base = 0
                raw = (
                    columns_text(data, rows, ncols)
                    if stmt is None
                    else columns_binary(data, rows, cols)
                )
                yield Rows(cols, raw)
    finally:
        if done or not res.unbuffered_active:  # the end, or an error packet: the wire is clean
            res.unbuffered_active = False
            conn._result = None
            if conn.open:
                _close_statement(conn, stmt)
        else:
            # abandoned midway (the consumer stopped or failed): the rest of the result is
            # still on the wire, so this connection cannot run another statement
            res.unbuffered_active = False
            conn._result = None
            conn._force_close()


def _prepare(conn: Connection, sql: str) -> int | None:
    """``COM_STMT_PREPARE``: the statement id, or None when the statement cannot be prepared
    (or takes parameters), in which case the caller runs it as a plain query."""
    try:
        conn._execute_command(COMMAND.COM_STMT_PREPARE, sql)
        ok = conn._read_packet().get_all_data()
    except myerr.MySQLError as e:
        if e.args and e.args[0] in _GONE:
            raise
        return None
    stmt, ncols, nparams = struct.unpack_from("<IHH", ok, 1)
    for count in (nparams, ncols):
        if count:
            for _ in range(count + 1):  # the definitions, then an EOF packet
                conn._read_packet()
    if nparams:
        _close_statement(conn, stmt)
        return None
    return int(stmt)


def _close_statement(conn: Connection, stmt: int | None) -> None:
    # a connection PyMySQL closed after an error (the server ended it) has nothing to close,
    # and writing to it would raise AttributeError over the error that closed it
    if stmt is not None and conn._sock is not None:
        conn._next_seq_id = 0
        conn.write_packet(struct.pack("<BI", COMMAND.COM_STMT_CLOSE, stmt))  # no reply


def _walk(
    conn: Connection, res: MySQLResult, rf: Any, buf: bytearray, p: int, starts: array
) -> tuple[int, bool]:
    """Append the payload offsets of the complete row packets in ``buf`` from ``p`` to
    ``starts``; return where the walk stopped and whether the result's end (EOF packet) was
    reached. This loop is the only per-row Python work, so its common case (a whole row
    packet) takes one test; the rest is handled out of its way."""
    end = len(buf)
    last = end - 5  # a header and the payload's first byte must be there
    append = starts.append
    while p <= last:
        h = p + 4
        q = h + (buf[p] | buf[p + 1] << 8 | buf[p + 2] << 16)
        if q > end or buf[h] >= 0xFE or q - h == _MAX_PACKET:
            if q > end:  # the packet has not all arrived
                break
            first, n = buf[h], q - h
            if first == 0xFE and n < 9:  # EOF: warnings, status
                if n >= 5:
                    _, conn.server_status = struct.unpack_from("<hh", buf, h + 1)
                return q, True
            if first == 0xFF:
                err_data = bytes(buf[h:q])
                res.unbuffered_active = False
                conn._result = None
                myerr.raise_mysql_exception(err_data)
            if n == _MAX_PACKET:  # a row of 16 MiB or more: splice its packets together
                q = _splice(buf, rf, q)
                end = len(buf)
                last = end - 5
        append(h)
        p = q
    return p, False


def _shift(starts: array, by: int) -> array:
    """``starts`` less ``by`` each: offsets in a buffer whose first ``by`` bytes are gone."""
    out = array("i")
    if starts:
        out.frombytes((np.frombuffer(starts, np.int32) - np.int32(by)).tobytes())
    return out


def _splice(buf: bytearray, rf: Any, q: int) -> int:
    """The row whose first packet ends at ``q`` continues in the next packets: read them and
    remove their headers, so the row is contiguous; return where the row ends."""
    n = _MAX_PACKET
    while n == _MAX_PACKET:
        while len(buf) < q + 4:
            buf += rf.read1(1 << 20) or _lost()
        n = buf[q] | (buf[q + 1] << 8) | (buf[q + 2] << 16)
        del buf[q : q + 4]
        while len(buf) < q + n:
            buf += rf.read1(1 << 20) or _lost()
        q += n
    return q


def _lost() -> bytes:
    raise myerr.OperationalError(2013, "Lost connection to server during query")


# -- writing -------------------------------------------------------------------------------------


def encode_tsv(columns: list[pa.Array]) -> pa.Buffer:
    """The rows of ``columns`` (binary arrays of LOAD DATA text, see :func:`escape`) in LOAD
    DATA's default format, with one extra empty field closing each line (load it into a user
    variable: ``(c1, c2, @end)``), so that one join makes the whole text. Returns the bytes
    without a copy."""
    cols = []
    for col in columns:
        s = col
        if s.null_count:
            s = pc.fill_null(s, text_scalar(b"\\N", s.type))
        cols.append(s)
    line = pc.binary_join_element_wise(
        *cols, text_scalar(b"\n", cols[0].type), text_scalar(b"\t", cols[0].type)
    )
    large = pa.types.is_large_binary(line.type) or pa.types.is_large_string(line.type)
    offsets = memoryview(line.buffers()[1]).cast("q" if large else "i")
    lo, hi = offsets[line.offset], offsets[line.offset + len(line)]
    return line.buffers()[2][lo:hi]


#: the bytes LOAD DATA's default format escapes: backslash, tab, newline
_SPECIAL = np.zeros(256, bool)
_SPECIAL[[ord("\\"), ord("\t"), ord("\n")]] = True


def _has_special(s: pa.Array) -> bool:
    """Whether a value of the binary array ``s`` holds a byte to escape: one table look-up per
    byte of the values (a regular expression per value took a fifth of a load's client time)."""
    data = s.buffers()[2]
    if data is None or len(s) == 0:
        return False
    large = pa.types.is_large_binary(s.type) or pa.types.is_large_string(s.type)
    offsets = np.frombuffer(s.buffers()[1], np.int64 if large else np.int32)
    lo, hi = int(offsets[s.offset]), int(offsets[s.offset + len(s)])
    return bool(_SPECIAL[np.frombuffer(data, np.uint8, hi - lo, lo)].any())


def escape(s: pa.Array) -> pa.Array:
    """Backslash, tab and newline escaped as LOAD DATA reads them (one scan when there are none).
    ``s`` is binary or large binary."""
    if not _has_special(s):
        return s
    for a, b in (("\\", "\\\\"), ("\t", "\\t"), ("\n", "\\n")):
        s = pc.replace_substring(s, a, b)
    return s


def load_local(
    conn: Connection, sql: str, data: pa.Buffer | bytes, packet: int = 1 << 20
) -> tuple[int, int]:
    """Run a ``LOAD DATA LOCAL INFILE`` statement, sending ``data`` as the file.
    Returns (affected rows, warnings)."""
    conn._execute_command(COMMAND.COM_QUERY, sql)
    res = MySQLResult(conn)
    first = conn._read_packet()
    if first.is_ok_packet():  # the server did not ask for the file
        res._read_ok_packet(first)
        return res.affected_rows or 0, res.warning_count
    if not first.is_load_local_packet():
        raise myerr.OperationalError(2027, "Malformed packet: expected a LOCAL INFILE request")
    mv = memoryview(data)
    try:
        for i in range(0, len(mv), packet):
            conn.write_packet(bytes(mv[i : i + packet]))
    finally:
        if conn._sock is not None:  # else the send failed because the connection is gone
            conn.write_packet(b"")
    ok = conn._read_packet()
    res._read_ok_packet(ok)
    conn._result = None
    return res.affected_rows or 0, res.warning_count
