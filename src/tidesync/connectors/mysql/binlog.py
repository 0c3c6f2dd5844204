"""The MySQL/MariaDB row-based binlog, read over the replication protocol and decoded to Arrow.

:class:`Dump` asks the server for its binlog from a position (``COM_BINLOG_DUMP``, non-blocking:
the server says EOF at the end of its log) on a connection of our own, and hands the events over
in batches: one buffer and the start of each event, so the headers of a whole batch are read with
numpy. Python walks only the few events that steer (transaction boundaries, table maps, rotations);
the row events of one table shape are decoded together, column by column (:func:`rows`):

- a row event holds several rows back to back; the walk takes the *r*-th row of every event at
  once, and within a row each column starts where the one before ended (its size comes from the
  table map's type and metadata, or the value's length prefix), so the number of numpy steps is
  the most rows one event holds times the columns, not the number of rows;
- each column's values are then gathered into one buffer and become the batch reader's Arrow
  type by arithmetic on whole arrays (integers and floats are reinterpreted, packed dates and
  times unpacked, DECIMAL's binary form summed in base 10^9 groups, strings handed over).

Event layout (little-endian unless said): header ``timestamp:4 type:1 server_id:4 size:4
next_position:4 flags:2``, body, CRC32:4 when ``binlog_checksum`` is on.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import random
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors.sql.cdc import from_numpy, from_strings, slices, to_bools
from tidesync.errors import FatalError

__all__ = ["Dump", "Events", "Gtid", "TableMap", "Position", "column", "parse_table_map", "walk"]

# event types
ROTATE, QUERY, STOP, FDE, XID, TABLE_MAP = 4, 2, 3, 15, 16, 19
XA_PREPARE = 38  # ends the first phase of an XA transaction (MariaDB 10.5+, MySQL)
WRITE_V1, UPDATE_V1, DELETE_V1 = 23, 24, 25
WRITE_V2, UPDATE_V2, DELETE_V2 = 30, 31, 32
MYSQL_GTID, MYSQL_ANON_GTID = 33, 34
MARIA_ANNOTATE, MARIA_CHECKPOINT, MARIA_GTID, MARIA_GTID_LIST = 160, 161, 162, 163
MARIA_COMPRESSED = range(165, 172)  # log_bin_compress: inflated by Dump to their plain kinds
_PLAIN = {165: QUERY, 166: WRITE_V1, 167: UPDATE_V1, 168: DELETE_V1, 169: WRITE_V2,
          170: UPDATE_V2, 171: DELETE_V2}  # fmt: skip
WRITES, UPDATES, DELETES = (WRITE_V1, WRITE_V2), (UPDATE_V1, UPDATE_V2), (DELETE_V1, DELETE_V2)
ROW_EVENTS = (*WRITES, *UPDATES, *DELETES)

# column types of the table map
T_DECIMAL, T_TINY, T_SHORT, T_LONG, T_FLOAT, T_DOUBLE, T_NULL = 0, 1, 2, 3, 4, 5, 6
T_TIMESTAMP, T_LONGLONG, T_INT24, T_DATE, T_TIME, T_DATETIME, T_YEAR = 7, 8, 9, 10, 11, 12, 13
T_NEWDATE, T_VARCHAR, T_BIT, T_TIMESTAMP2, T_DATETIME2, T_TIME2 = 14, 15, 16, 17, 18, 19
T_JSON, T_NEWDECIMAL, T_ENUM, T_SET = 245, 246, 247, 248
T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_BLOB, T_VAR_STRING, T_STRING, T_GEOMETRY = (
    249, 250, 251, 252, 253, 254, 255,
)  # fmt: skip
_FIXED = {T_TINY: 1, T_SHORT: 2, T_INT24: 3, T_LONG: 4, T_LONGLONG: 8, T_FLOAT: 4, T_DOUBLE: 8,
          T_YEAR: 1, T_DATE: 3, T_NEWDATE: 3, T_TIMESTAMP: 4, T_DATETIME: 8, T_TIME: 3, T_NULL: 0}  # fmt: skip
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


@dataclass(frozen=True, order=True)
class Position:
    """A place in the binlog: file and offset; ``str()`` is ``mysql-bin.000003:4711``."""

    file: str
    pos: int

    def __str__(self) -> str:
        return f"{self.file}:{self.pos}"

    @classmethod
    def parse(cls, text: str) -> Position:
        f, p = str(text).rsplit(":", 1)
        return cls(f, int(p))

    @property
    def key(self) -> tuple[int, str, int]:
        """Order across files: the numeric suffix of the file name first."""
        stem, _, num = self.file.rpartition(".")
        return (int(num) if num.isdigit() else 0, stem, self.pos)


class Gtid:
    """A GTID position: the transactions taken so far, as the server's replicas name them, so a
    capture goes on after a binlog rotation, a purge of files it no longer needs, or a failover
    to a replica with other file names. ``str()`` is ``gtid:`` and the server's own spelling:

    - MariaDB: the last sequence number per replication domain, ``gtid:0-1-123,1-2-7``
      (domain-server-seq, what ``@@gtid_binlog_pos`` and ``@slave_connect_state`` hold); within
      a domain sequence numbers grow in log order;
    - MySQL 8: a GTID set, ``gtid:3e11fa47-71ca-11e1-9e33-c80aa9429562:1-100:200-210,...``
      (``@@gtid_executed``; intervals per source server, ends inclusive).

    ``gtid:`` alone (nothing taken yet) is MariaDB's empty state.
    """

    def __init__(
        self,
        maria: dict[int, tuple[int, int]] | None = None,
        mysql: dict[str, list[tuple[int, int]]] | None = None,
    ):
        self.maria = maria  # domain -> (server, seq)
        self.mysql = mysql  # source uuid -> sorted, disjoint [lo, hi] intervals

    @staticmethod
    def is_gtid(text: Any) -> bool:
        return isinstance(text, str) and text.startswith("gtid:")

    @classmethod
    def parse(cls, text: str) -> Gtid:
        body = text[5:].strip() if text.startswith("gtid:") else text.strip()
        if not body or all(_MARIA_GTID.fullmatch(x.strip()) for x in body.split(",")):
            state: dict[int, tuple[int, int]] = {}
            for x in filter(None, (y.strip() for y in body.split(","))):
                d, srv, seq = (int(v) for v in x.split("-"))
                state[d] = (srv, seq)
            return cls(maria=state)
        sets: dict[str, list[tuple[int, int]]] = {}
        for part in body.replace("\n", "").split(","):
            uuid, *ivs = part.strip().split(":")
            for iv in ivs:
                a, _, b = iv.partition("-")
                sets.setdefault(uuid.lower(), []).append((int(a), int(b or a)))
        return cls(mysql={u: _merge(v) for u, v in sets.items()})

    def __str__(self) -> str:
        if self.maria is not None:
            return "gtid:" + ",".join(f"{d}-{s}-{n}" for d, (s, n) in sorted(self.maria.items()))
        assert self.mysql is not None
        return "gtid:" + ",".join(
            u + "".join(f":{a}" if a == b else f":{a}-{b}" for a, b in ivs)
            for u, ivs in sorted(self.mysql.items())
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Gtid) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def has(self, tx: tuple[Any, ...]) -> bool:
        """Whether the transaction ``tx`` (MariaDB ``(domain, server, seq)``, MySQL ``(uuid,
        gno)``) is among those this position has taken."""
        if self.maria is not None:
            got = self.maria.get(tx[0])
            return got is not None and tx[2] <= got[1]
        assert self.mysql is not None
        return any(a <= tx[1] <= b for a, b in self.mysql.get(tx[0], ()))

    def add(self, tx: tuple[Any, ...]) -> None:
        """Take the transaction ``tx`` (in place)."""
        if self.maria is not None:
            self.maria[tx[0]] = (tx[1], tx[2])
        else:
            assert self.mysql is not None
            self.mysql[tx[0]] = _merge([*self.mysql.get(tx[0], []), (tx[1], tx[1])])

    def union(self, other: Gtid) -> Gtid:
        if self.maria is not None and other.maria is not None:
            out = dict(self.maria)
            for d, (s, n) in other.maria.items():
                if d not in out or out[d][1] < n:
                    out[d] = (s, n)
            return Gtid(maria=out)
        a, b = self.mysql or {}, other.mysql or {}
        return Gtid(mysql={u: _merge([*a.get(u, []), *b.get(u, [])]) for u in {*a, *b}})

    def lacks(self, other: Gtid) -> bool:
        """Whether ``other`` holds a transaction this position has not taken."""
        if self.maria is not None and other.maria is not None:
            return any(not self.has((d, s, n)) for d, (s, n) in other.maria.items())
        mine = self.mysql or {}
        for u, ivs in (other.mysql or {}).items():
            for a, b in ivs:
                if not any(x <= a and b <= y for x, y in mine.get(u, ())):
                    return True
        return False

    def copy(self) -> Gtid:
        return Gtid(
            dict(self.maria) if self.maria is not None else None,
            {u: list(v) for u, v in self.mysql.items()} if self.mysql is not None else None,
        )

    def encoded(self) -> bytes:
        """A MySQL GTID set as ``COM_BINLOG_DUMP_GTID`` sends it: the number of sources, then
        per source its 16-byte uuid, the number of intervals and each as [start, end)."""
        out = len(self.mysql or {}).to_bytes(8, "little")
        for u, ivs in sorted((self.mysql or {}).items()):
            out += bytes.fromhex(u.replace("-", "")) + len(ivs).to_bytes(8, "little")
            for a, b in ivs:
                out += a.to_bytes(8, "little") + (b + 1).to_bytes(8, "little")
        return out


_MARIA_GTID = re.compile(r"\d+-\d+-\d+")


def _merge(ivs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(ivs):
        if out and a <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def gtid_of(body: bytes, mysql: bool, server_id: int) -> tuple[Any, ...]:
    """The transaction a GTID event names: MariaDB ``(domain, server, seq)`` (body: seq:8
    domain:4 ...), MySQL ``(uuid, gno)`` (body: flags:1 uuid:16 gno:8 ...)."""
    if mysql:
        h = body[1:17].hex()
        uuid = f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
        return (uuid, int.from_bytes(body[17:25], "little"))
    return (
        int.from_bytes(body[8:12], "little"),
        server_id,
        int.from_bytes(body[0:8], "little"),
    )


@dataclass
class TableMap:
    db: str
    table: str
    types: list[int]
    meta: list[int]  # per column, as the table map packs it (see _metadata)
    names: list[str] | None = None  # with binlog_row_metadata = FULL
    # the optional metadata beside the names (None: not logged): per column whether it is
    # unsigned (numeric columns), its collation id (character columns), its ENUM/SET labels
    unsigned: list[bool | None] | None = None
    collations: list[int | None] | None = None
    labels: list[list[bytes] | None] | None = None
    key: list[int] | None = None  # the primary key's columns (FULL)


def _lenenc(b: bytes, i: int) -> tuple[int, int]:
    c = b[i]
    if c < 251:
        return c, i + 1
    n = {252: 2, 253: 3, 254: 8}[c]
    return int.from_bytes(b[i + 1 : i + 1 + n], "little"), i + 1 + n


def parse_table_map(body: bytes) -> TableMap:
    """A TABLE_MAP event's body (after the common header, without the checksum)."""
    i = 8
    dblen = body[i]
    db = body[i + 1 : i + 1 + dblen].decode()
    i += 2 + dblen
    tlen = body[i]
    table = body[i + 1 : i + 1 + tlen].decode()
    i += 2 + tlen
    n, i = _lenenc(body, i)
    types = list(body[i : i + n])
    i += n
    mlen, i = _lenenc(body, i)
    meta_bytes = body[i : i + mlen]
    i += mlen
    meta = []
    j = 0
    for t in types:
        if t in (T_FLOAT, T_DOUBLE, T_BLOB, T_GEOMETRY, T_JSON, T_TIME2, T_DATETIME2,
                 T_TIMESTAMP2, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB):  # fmt: skip
            meta.append(meta_bytes[j])
            j += 1
        elif t in (T_VARCHAR, T_VAR_STRING, T_BIT):
            meta.append(int.from_bytes(meta_bytes[j : j + 2], "little"))
            j += 2
        elif t in (T_NEWDECIMAL, T_STRING, T_ENUM, T_SET):
            meta.append((meta_bytes[j] << 8) | meta_bytes[j + 1])  # big-endian pair
            j += 2
        else:
            meta.append(0)
    i += (n + 7) // 8  # nullability
    tm = TableMap(db, table, types, meta)
    # which columns each kind of optional metadata is about, in column order
    real = [m >> 8 if t == T_STRING and (m >> 8) in (T_ENUM, T_SET) else t
            for t, m in zip(types, meta, strict=True)]  # fmt: skip
    numeric = [j for j, t in enumerate(real) if t in _NUMERIC]
    chars = [j for j, t in enumerate(real) if t in _CHARACTER]
    enums = [j for j, t in enumerate(real) if t == T_ENUM]
    sets = [j for j, t in enumerate(real) if t == T_SET]
    while i < len(body):  # optional metadata (MySQL 8, MariaDB 10.5+): type, length, value
        kind = body[i]
        ln, i = _lenenc(body, i + 1)
        value = body[i : i + ln]
        if kind == 4:  # COLUMN_NAME
            tm.names = [v.decode() for v in _lenenc_strings(value)]
            tm.key = tm.key or []  # FULL names the key's columns, if the table has one
        elif kind == 8:  # SIMPLE_PRIMARY_KEY: the key's column indexes
            tm.key = _lenenc_ints(value)
        elif kind == 9:  # PRIMARY_KEY_WITH_PREFIX: (index, prefix length) pairs
            tm.key = _lenenc_ints(value)[0::2]
        elif kind == 1:  # SIGNEDNESS: a bit per numeric column, the first the highest
            tm.unsigned = [None] * n
            for b, j in enumerate(numeric):
                tm.unsigned[j] = bool(value[b // 8] & (0x80 >> (b % 8)))
        elif kind in (2, 3):  # DEFAULT_CHARSET (default, then exceptions) / COLUMN_CHARSET
            ids = _lenenc_ints(value)
            of = [ids[0]] * len(chars) if kind == 2 else ids
            if kind == 2:
                for k in range(1, len(ids) - 1, 2):
                    of[ids[k]] = ids[k + 1]
            if len(of) == len(chars):
                tm.collations = tm.collations or [None] * n
                for j, c in zip(chars, of, strict=True):
                    tm.collations[j] = c
        elif kind in (5, 6):  # SET_STR_VALUE / ENUM_STR_VALUE: per column, a count and labels
            at = 0
            tm.labels = tm.labels or [None] * n
            for j in sets if kind == 5 else enums:
                count, at = _lenenc(value, at)
                got = []
                for _ in range(count):
                    size, at = _lenenc(value, at)
                    got.append(value[at : at + size])
                    at += size
                tm.labels[j] = got
        i += ln
    return tm


#: the columns SIGNEDNESS has a bit for: MariaDB's numeric fields (YEAR among them, an
#: unsigned TINYINT there; the capture reads the bits on MariaDB only)
_NUMERIC = (T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_FLOAT, T_DOUBLE, T_NEWDECIMAL,
            T_DECIMAL, T_YEAR)  # fmt: skip
_CHARACTER = (T_STRING, T_VAR_STRING, T_VARCHAR, T_BLOB, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB)


def _lenenc_strings(b: bytes) -> list[bytes]:
    out, k = [], 0
    while k < len(b):
        size, k = _lenenc(b, k)
        out.append(b[k : k + size])
        k += size
    return out


def _lenenc_ints(b: bytes) -> list[int]:
    out, k = [], 0
    while k < len(b):
        v, k = _lenenc(b, k)
        out.append(v)
    return out


# -- the dump -------------------------------------------------------------------------------------


@dataclass
class Events:
    """A batch of events: ``buf`` holds them back to back; event *i* starts at ``start[i]``
    (header included) and is ``size[i]`` bytes (checksum included). ``file`` is the binlog file
    of each event (an index into ``files``)."""

    buf: np.ndarray
    start: np.ndarray
    files: list[str] = field(default_factory=list)
    file: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __len__(self) -> int:
        return len(self.start)

    def u8(self, at: int | np.ndarray) -> Any:
        return self.buf[self.start + at] if isinstance(at, int) else self.buf[at]

    def le(self, rel: int, n: int) -> np.ndarray:
        p = self.start + rel
        v = self.buf[p].astype(np.int64)
        for k in range(1, n):
            v |= self.buf[p + k].astype(np.int64) << (8 * k)
        return v

    @property
    def type(self) -> np.ndarray:
        return self.buf[self.start + 4]

    @property
    def timestamp(self) -> np.ndarray:
        return self.le(0, 4)

    @property
    def size(self) -> np.ndarray:
        return self.le(9, 4)

    @property
    def next_pos(self) -> np.ndarray:
        return self.le(13, 4)

    def tail(self, i: int) -> Events:
        """The events from ``i`` on (an unfinished transaction to carry into the next batch)."""
        s = int(self.start[i]) - 1
        return Events(
            self.buf[s:].copy(), self.start[i:] - s, list(self.files), self.file[i:].copy()
        )

    def then(self, nxt: Events) -> Events:
        """These events followed by ``nxt``."""
        if not len(self):
            return nxt
        end = int(self.start[-1]) + int(self.le(9, 4)[-1])
        files = list(self.files)
        remap = []
        for f in nxt.files:
            if f not in files:
                files.append(f)
            remap.append(files.index(f))
        return Events(
            np.concatenate([self.buf[:end], nxt.buf]),
            np.concatenate([self.start, nxt.start + end]),
            files,
            np.concatenate(
                [self.file, np.asarray(remap, np.int32)[nxt.file] if len(nxt) else nxt.file]
            ),
        )

    def body(self, i: int, checksum: bool) -> bytes:
        s = int(self.start[i])
        n = int.from_bytes(bytes(self.buf[s + 9 : s + 13]), "little")
        return bytes(self.buf[s + 19 : s + n - (4 if checksum else 0)])


class Dump:
    """The binlog from ``start`` on, in batches of events, until the server's end of log (or the
    caller stops). One connection of its own; ``close()`` ends it."""

    BATCH_BYTES = 8 << 20

    def __init__(self, con: Any, start: Position | Gtid, checksum: bool):
        self.con = con
        self.start = start
        self.checksum = checksum

    def batches(self) -> Iterator[Events]:
        con = self.con
        start = self.start
        with con.cursor() as cur:
            cur.execute("SET @master_binlog_checksum = @@global.binlog_checksum")
            cur.execute("SET @mariadb_slave_capability = 4")
            cur.execute("SET @master_heartbeat_period = 0")
            if isinstance(start, Gtid) and start.maria is not None:
                # MariaDB starts after this state, wherever its files are (name and offset
                # below are then ignored)
                cur.execute("SET @slave_connect_state = %s", (str(start)[5:],))
                cur.execute("SET @slave_gtid_strict_mode = 0")
                cur.execute("SET @slave_gtid_ignore_duplicates = 0")
        server_id = random.randint(1 << 30, (1 << 31) - 1) ^ (os.getpid() & 0xFFFF)
        if isinstance(start, Gtid) and start.mysql is not None:
            # MySQL 8: COM_BINLOG_DUMP_GTID with BINLOG_THROUGH_GTID | BINLOG_DUMP_NON_BLOCK,
            # no file name (the server finds the first transaction not in the set)
            data = start.encoded()
            payload = (
                bytes([0x1E])
                + (4 | 1).to_bytes(2, "little")
                + server_id.to_bytes(4, "little")
                + (0).to_bytes(4, "little")
                + (4).to_bytes(8, "little")
                + len(data).to_bytes(4, "little")
                + data
            )
            files: list[str] = [""]
        else:
            name, pos = (start.file, start.pos) if isinstance(start, Position) else ("", 4)
            payload = (
                bytes([0x12])
                + pos.to_bytes(4, "little")
                + (1).to_bytes(2, "little")  # BINLOG_DUMP_NON_BLOCK: EOF at the end of the log
                + server_id.to_bytes(4, "little")
                + name.encode()
            )
            files = [name]
        con._next_seq_id = 0
        con._write_bytes(len(payload).to_bytes(3, "little") + b"\x00" + payload)
        con._next_seq_id = 1
        yield from self._packets(con._rfile, files)

    def _packets(self, rfile: Any, files: list[str]) -> Iterator[Events]:
        """The dump's packets as batches of events. The socket is read in large pieces straight
        into the batch's buffer (:class:`_Inbox`), and Python looks only at each packet's
        4-byte header and its event's type: an event stays where its packet put it (after the
        header and the OK byte). The few that must be rewritten are spliced in place: a packet
        of 16 MiB joined with the ones that continue it, a compressed event inflated to its
        plain kind."""
        box = _Inbox(rfile, self.BATCH_BYTES)
        at = 0  # the next packet's header
        starts: list[int] = []
        file_of: list[int] = []
        while True:
            if box.fill < at + 4:
                box.need(at + 4)
            b = box.view
            n = b[at] | (b[at + 1] << 8) | (b[at + 2] << 16)
            if box.fill < at + 4 + n:
                box.need(at + 4 + n)
            if n == 0xFFFFFF:  # continued in the next packet(s): drop their headers
                end = at + 4 + n
                while True:
                    box.need(end + 4)
                    b = box.view
                    more = b[end] | (b[end + 1] << 8) | (b[end + 2] << 16)
                    box.splice(end, end + 4, b"")
                    box.need(end + more)
                    end += more
                    if more < 0xFFFFFF:
                        break
                n = end - at - 4
            b = box.view
            first = b[at + 4]
            if first == 0xFE and n < 9:
                break
            if first == 0xFF:
                from pymysql import err

                err.raise_mysql_exception(bytes(b[at + 4 : at + 4 + n]))
            t = b[at + 9]
            if 165 <= t <= 171:
                plain = inflate(bytes(b[at + 4 : at + 4 + n]), self.checksum)
                box.splice(at + 4, at + 4 + n, plain)
                n = len(plain)
                t = plain[5]
            elif t == ROTATE:
                n_ev = int.from_bytes(b[at + 14 : at + 18], "little")
                ev = bytes(b[at + 5 : at + 5 + n_ev])
                if zlib.crc32(ev[:-4]) == int.from_bytes(ev[-4:], "little"):
                    ev = ev[:-4]
                fname = ev[27:].rstrip(b"\0").decode()
                if fname != files[-1]:
                    files.append(fname)
            starts.append(at + 5)
            file_of.append(len(files) - 1)
            at += 4 + n
            if at >= self.BATCH_BYTES and t in (XID, QUERY):  # at a transaction's end
                done, box = box.cut(at)
                yield _events(done, starts, files, file_of)
                at = 0
                starts, file_of = [], []
                files = files[-1:]
        if starts:
            yield _events(box.cut(at)[0], starts, files, file_of)

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the dump is over either way
            self.con.close()


class _Inbox:
    """The bytes of the dump read so far, in one numpy buffer of a batch's size (more while
    a transaction goes on past it); ``view`` reads single bytes as Python ints.

    ``rfile`` is the connection's buffered reader. Its buffer is empty once the server has
    answered our last query (it sends nothing unasked), and ``readinto1`` into more room than
    that buffer holds reads the socket directly, once: it takes what has arrived and never
    waits for more than one byte (the dump's end comes as an EOF packet)."""

    READ = 1 << 16  # the least room a read is given (more than the reader's own buffer)
    SLACK = 1 << 20  # room past a batch's size: a batch ends at the first commit after it

    def __init__(self, rfile: Any, size: int, carry: np.ndarray | None = None):
        self.rfile = rfile
        self.size = size
        n = 0 if carry is None else len(carry)
        self.buf = _room(max(size, n) + self.SLACK)
        if carry is not None:
            self.buf[:n] = carry
        self.view = self.buf.data  # a memoryview
        self.fill = n  # bytes read

    def room(self, total: int) -> None:
        """At least ``total`` bytes of buffer (the read ones kept)."""
        if total > len(self.buf):
            new = _room(max(total, 2 * len(self.buf)))
            new[: self.fill] = self.buf[: self.fill]
            self.buf, self.view = new, new.data

    def need(self, upto: int) -> None:
        """Read until the first ``upto`` bytes are here."""
        while self.fill < upto:
            self.room(max(upto, self.fill + self.READ))
            got = self.rfile.readinto1(self.view[self.fill :])
            if not got:
                raise FatalError("the server closed the binlog connection")
            self.fill += got

    def splice(self, lo: int, hi: int, data: bytes) -> None:
        """Replace the read bytes ``[lo, hi)`` with ``data`` (what follows moves)."""
        rest = self.buf[hi : self.fill].copy()
        self.room(self.fill - (hi - lo) + len(data))
        end = lo + len(data)
        self.buf[lo:end] = np.frombuffer(data, np.uint8)
        self.buf[end : end + len(rest)] = rest
        self.fill = end + len(rest)

    def cut(self, end: int) -> tuple[np.ndarray, _Inbox]:
        """The first ``end`` bytes and 64 zero bytes after them (room for reads past the last
        event), as the batch's own buffer; and the inbox of the next batch, starting with what
        was read past ``end``."""
        rest = self.buf[end : self.fill].copy()
        self.room(end + 64)
        out = self.buf[: end + 64]
        out[end:] = 0
        return out, _Inbox(self.rfile, self.size, rest)


def _room(size: int) -> np.ndarray:
    """``size`` bytes for a batch. Not ``np.empty``: numpy asks the kernel for huge pages for
    an array of megabytes, whose first touch compacts and clears 2 MiB at a time; on the shared
    machine here that cost from a fifth to half again of a whole run's system CPU time, varying
    with the machine's memory (an ``mmap`` of small pages cost more: every batch faulted anew)."""
    return np.frombuffer(bytearray(size), np.uint8)


def _events(buf: np.ndarray, starts: list[int], files: list[str], file_of: list[int]) -> Events:
    return Events(
        buf,
        np.asarray(starts, dtype=np.int64),
        list(files),
        np.asarray(file_of, dtype=np.int32),
    )


def inflate(packet: bytes, checksum: bool) -> bytes:
    """A compressed MariaDB event (``log_bin_compress``; in a packet after its OK byte) as its
    plain kind. MariaDB compresses a rows event's rows (after the column count and bitmaps) and
    a query event's statement: a byte ``0x80 | n``, the plain length in ``n`` bytes big-endian,
    then a zlib stream. The header's size and next position are those of the plain event, so
    that next position - size is still where the event is in the log."""
    ev = packet[1:]
    t = ev[4]
    size = int.from_bytes(ev[9:13], "little")
    end = size - (4 if checksum else 0)
    h = 19
    if t == 165:
        at = h + 13 + int.from_bytes(ev[h + 11 : h + 13], "little") + ev[h + 8] + 1
    else:
        at = h + 8
        if t >= 169:  # v2: the extra data's length counts its own two bytes
            at += int.from_bytes(ev[at : at + 2], "little")
        width, at = _lenenc(ev, at)
        at += ((width + 7) // 8) * (2 if t in (167, 170) else 1)
    n = ev[at] & 7
    want = int.from_bytes(ev[at + 1 : at + 1 + n], "big")
    try:
        plain = zlib.decompress(ev[at + 1 + n : end])
    except zlib.error as e:
        raise FatalError(f"a compressed binlog event (type {t}) does not inflate: {e}") from None
    if len(plain) != want:
        raise FatalError(
            f"a compressed binlog event (type {t}) inflates to {len(plain)} bytes, not {want}"
        )
    new_size = at + len(plain) + (4 if checksum else 0)
    start = int.from_bytes(ev[13:17], "little") - size
    head = (
        ev[:4]
        + bytes([_PLAIN[t]])
        + ev[5:9]
        + new_size.to_bytes(4, "little")
        + (start + new_size).to_bytes(4, "little")
        + ev[17:19]
    )
    return packet[:1] + head + ev[h:at] + plain + (bytes(4) if checksum else b"")


# -- rows ----------------------------------------------------------------------------------------


@dataclass
class ColumnSpec:
    """How the catalog says a column is to be read: its Arrow type (the batch reader's) and
    what the table map does not carry."""

    name: str
    type: pa.DataType
    unsigned: bool = False
    charset: str | None = None  # None: binary
    labels: list[str] | None = None  # ENUM / SET values
    data_type: str = ""  # the catalog's DATA_TYPE (int, varchar, ...)
    column_type: str = ""  # the catalog's COLUMN_TYPE (int(10) unsigned, ...)

    def fits(self, t: int, meta: int) -> bool:
        """Whether a logged value of binlog type ``t`` (and metadata) is a value of this column
        as the catalog has it now (a column whose type changed since the row was logged is not)."""
        want = _FAMILY.get(self.data_type)
        if want is None:
            return True  # a type this check does not know: the decoding says
        if t in (T_STRING, T_ENUM, T_SET) and (meta >> 8) in (T_ENUM, T_SET):
            t = meta >> 8
        return t in want


_TEXT = (T_VARCHAR, T_VAR_STRING, T_STRING)
_BLOBS = (T_BLOB, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB)
#: the catalog's DATA_TYPE -> the binlog types its values are logged as
_FAMILY: dict[str, tuple[int, ...]] = {
    "tinyint": (T_TINY,), "smallint": (T_SHORT,), "mediumint": (T_INT24,), "int": (T_LONG,),
    "bigint": (T_LONGLONG,), "float": (T_FLOAT,), "double": (T_DOUBLE,),
    "decimal": (T_NEWDECIMAL, T_DECIMAL), "date": (T_DATE, T_NEWDATE),
    "datetime": (T_DATETIME, T_DATETIME2), "timestamp": (T_TIMESTAMP, T_TIMESTAMP2),
    "time": (T_TIME, T_TIME2), "year": (T_YEAR,), "bit": (T_BIT,),
    "char": _TEXT, "varchar": _TEXT, "binary": _TEXT, "varbinary": _TEXT,
    "tinytext": _BLOBS, "text": _BLOBS, "mediumtext": _BLOBS, "longtext": _BLOBS,
    "tinyblob": _BLOBS, "blob": _BLOBS, "mediumblob": _BLOBS, "longblob": _BLOBS,
    "json": (*_BLOBS, T_JSON), "enum": (T_ENUM,), "set": (T_SET,),
}  # fmt: skip


@dataclass
class Walked:
    """Where each column's value of each row is: per column start, size and NULL flag; rows in
    event order (``event``, ``seq``: the row's number in its event)."""

    event: np.ndarray
    seq: np.ndarray
    start: list[np.ndarray]
    size: list[np.ndarray]
    null: list[np.ndarray]


def _sizes(buf: np.ndarray, p: np.ndarray, t: int, meta: int) -> np.ndarray:
    """The size of a value of column type ``t`` starting at ``p`` (including length bytes)."""
    if t in _FIXED:
        return np.full(len(p), _FIXED[t], dtype=np.int64)
    if t in (T_TIMESTAMP2, T_DATETIME2, T_TIME2):
        base = {T_TIMESTAMP2: 4, T_DATETIME2: 5, T_TIME2: 3}[t]
        return np.full(len(p), base + (meta + 1) // 2, dtype=np.int64)
    if t == T_NEWDECIMAL:
        return np.full(len(p), _decimal_size(meta >> 8, meta & 0xFF), dtype=np.int64)
    if t == T_BIT:
        bits = (meta >> 8) * 8 + (meta & 0xFF)
        return np.full(len(p), (bits + 7) // 8, dtype=np.int64)
    if t in (T_VARCHAR, T_VAR_STRING):
        return _prefixed(buf, p, 1 if meta < 256 else 2)
    if t in (T_STRING, T_ENUM, T_SET):
        real, length = meta >> 8, meta & 0xFF
        if real in (T_ENUM, T_SET):
            return np.full(len(p), length, dtype=np.int64)
        max_len = (((real << 4) & 0x300) ^ 0x300) + length
        return _prefixed(buf, p, 1 if max_len < 256 else 2)
    if t in (T_BLOB, T_TINY_BLOB, T_MEDIUM_BLOB, T_LONG_BLOB, T_GEOMETRY, T_JSON):
        return _prefixed(buf, p, meta)
    raise FatalError(f"binlog column type {t} is not supported")


def _fixed_size(t: int, meta: int) -> int | None:
    """The size of every value of column type ``t``, when they all have one."""
    if t in _FIXED:
        return _FIXED[t]
    if t in (T_TIMESTAMP2, T_DATETIME2, T_TIME2):
        return {T_TIMESTAMP2: 4, T_DATETIME2: 5, T_TIME2: 3}[t] + (meta + 1) // 2
    if t == T_NEWDECIMAL:
        return _decimal_size(meta >> 8, meta & 0xFF)
    if t == T_BIT:
        return ((meta >> 8) * 8 + (meta & 0xFF) + 7) // 8
    if t in (T_STRING, T_ENUM, T_SET) and (meta >> 8) in (T_ENUM, T_SET):
        return meta & 0xFF
    return None


def _prefixed(buf: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    v = buf[p].astype(np.int64)
    for k in range(1, n):
        v |= buf[p + k].astype(np.int64) << (8 * k)
    return v + n


def _decimal_size(prec: int, scale: int) -> int:
    intg = prec - scale
    return (intg // 9) * 4 + _DIG2BYTES[intg % 9] + (scale // 9) * 4 + _DIG2BYTES[scale % 9]


def walk(
    buf: np.ndarray, first: np.ndarray, end: np.ndarray, tm: TableMap, images: int
) -> list[Walked]:
    """Every row image of the row events whose rows span ``[first, end)``: one :class:`Walked`
    per image (1 for writes and deletes, 2 for updates: before, after).

    Step *r* takes the *r*-th row of every event that has one and keeps only what cannot be
    derived: where the row starts, its NULL bitmap, the sizes of its variable-length values.
    Once the last step counted each event's rows, those are put in event order (an event's
    rows follow the rows of the events before it) and every column's start and size is rebuilt
    from them with a few additions over all the rows at once."""
    n = len(tm.types)
    nb = (n + 7) // 8
    fixed = [_fixed_size(t, m) for t, m in zip(tm.types, tm.meta, strict=True)]
    var = {j: q for q, j in enumerate(j for j in range(n) if fixed[j] is None)}
    pos = first.copy()
    nrows = np.zeros(len(first), np.int64)
    evs: list[np.ndarray] = []
    heads: list[list[np.ndarray]] = [[] for _ in range(images)]  # where each row starts
    packs: list[list[np.ndarray]] = [[] for _ in range(images)]  # its NULL bitmap
    vsizes: list[list[list[np.ndarray]]] = [[[] for _ in var] for _ in range(images)]
    bit = np.arange(nb)
    mask = np.full(nb, 0xFF, np.uint8)  # the bits of the n columns (the rest is padding)
    if n % 8:
        mask[-1] = (1 << (n % 8)) - 1
    while True:
        ev = np.flatnonzero(pos < end)
        if not len(ev):
            break
        nrows[ev] += 1
        evs.append(ev)
        p = pos[ev]
        for img in range(images):
            heads[img].append(p)
            packed = buf[p[:, None] + bit] & mask
            packs[img].append(packed)
            p = p + nb
            if packed.any():
                nulls = np.unpackbits(packed, axis=1, count=n, bitorder="little").astype(bool).T
                some_null: list[bool] = np.asarray(nulls.any(axis=1)).tolist()
            else:  # no NULL in this step's rows (the usual case)
                some_null = [False] * n
            k = 0  # bytes of fixed-width values since p: added once a variable one comes
            for j in range(n):
                f = fixed[j]
                if f is not None and not some_null[j]:
                    k += f
                    continue
                if k:
                    p = p + k
                    k = 0
                if f is not None:
                    p = p + np.where(nulls[j], 0, f)
                    continue
                if some_null[j]:
                    got = _sizes(buf, np.where(nulls[j], 0, p), tm.types[j], tm.meta[j])
                    got = np.where(nulls[j], 0, got)
                else:
                    got = _sizes(buf, p, tm.types[j], tm.meta[j])
                vsizes[img][var[j]].append(got)
                p = p + got
            if k:
                p = p + k
        pos[ev] = p
    if not evs:
        empty = np.zeros(0, np.int64)
        none = Walked(empty, empty, [empty] * n, [empty] * n, [empty.astype(bool)] * n)
        return [none for _ in range(images)]
    total = int(nrows.sum())
    base = np.zeros(len(first), np.int64)
    np.cumsum(nrows[:-1], out=base[1:])
    event = np.repeat(np.arange(len(first), dtype=np.int64), nrows)
    seq = np.arange(total, dtype=np.int64) - base[event]
    # an event's r-th row goes to its base + r; the inverse of that puts the steps' rows in order
    order = np.empty(total, np.int64)
    order[np.concatenate([base[ev] + r for r, ev in enumerate(evs)])] = np.arange(total)
    result = []
    for img in range(images):
        packed = np.concatenate(packs[img])[order]
        null = np.ascontiguousarray(
            np.unpackbits(packed, axis=1, count=n, bitorder="little").astype(bool).T
        )
        starts = np.empty((n, total), np.int64)
        sizes = np.empty((n, total), np.int64)
        at = np.concatenate(heads[img])[order] + nb
        for j in range(n):
            starts[j] = at
            f = fixed[j]
            if f is None:
                sizes[j] = np.concatenate(vsizes[img][var[j]])[order]
            elif null[j].any():
                sizes[j] = np.where(null[j], 0, f)
            else:
                sizes[j] = f
            at = at + sizes[j]
        result.append(Walked(event, seq, list(starts), list(sizes), list(null)))
    return result


def _fixed(buf: np.ndarray, start: np.ndarray, width: int, big: bool = False) -> np.ndarray:
    """Unsigned integers of ``width`` bytes at ``start`` (int64 for width < 8, uint64 for 8):
    the bytes gathered into rows of a machine word's width, then read as such words."""
    word = 1 if width == 1 else 2 if width == 2 else 4 if width <= 4 else 8
    raw = (np.empty if word == width else np.zeros)((len(start), word), np.uint8)
    off = word - width if big else 0
    for k in range(width):
        raw[:, off + k] = buf[start + k]
    v = raw.view((">" if big else "<") + f"u{word}").ravel()
    return v.astype(np.uint64) if width == 8 else v.astype(np.int64)


def _validity(null: np.ndarray) -> pa.Buffer | None:
    if not null.any():
        return None
    return pa.py_buffer(np.packbits(~null, bitorder="little"))


def _masked(arr: pa.Array, null: np.ndarray) -> pa.Array:
    if not null.any():
        return arr
    return pc.if_else(from_numpy(null), pa.nulls(1, arr.type)[0], arr)


def _strings(
    buf: np.ndarray,
    start: np.ndarray,
    size: np.ndarray,
    null: np.ndarray,
    prefix: int,
    binary: bool,
) -> pa.Array:
    """The values after their ``prefix`` length bytes, as strings or bytes (rows in log order)."""
    return slices(buf, start + prefix, size - prefix, ~null, binary)


def _padded(
    buf: np.ndarray, start: np.ndarray, size: np.ndarray, null: np.ndarray, width: int
) -> pa.Array:
    """Binary values of ``size`` bytes at ``start``, each followed by zero bytes up to
    ``width`` (rows in log order)."""
    ln = np.where(null, 0, size).astype(np.int64)
    off = np.zeros(len(ln) + 1, np.int64)
    np.cumsum(np.where(null, 0, width), out=off[1:])
    out = np.zeros(int(off[-1]), np.uint8)
    total = int(ln.sum())
    if total:
        row = np.repeat(np.arange(len(ln)), ln)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(ln) - ln, ln)
        out[off[row] + within] = buf[start[row] + within]
    return pa.Array.from_buffers(
        pa.binary(),
        len(ln),
        [_validity(null), pa.py_buffer(off.astype(np.int32)), pa.py_buffer(out)],
    )


def raw(buf: np.ndarray, start: np.ndarray, size: np.ndarray, null: np.ndarray) -> pa.Array:
    """The values' bytes as they are in the log (to compare them)."""
    return _strings(buf, start, size, null, 0, True)


def _decimal(
    buf: np.ndarray, start: np.ndarray, null: np.ndarray, prec: int, scale: int
) -> pa.Array:
    """DECIMAL's binary form: groups of 9 digits in 4 big-endian bytes, a shorter group at the
    integer part's head and the fraction's tail, the sign in the first bit (negatives inverted)."""
    size = _decimal_size(prec, scale)
    # byte k of every value, sign bit flipped back and negatives' bytes inverted
    cols = [buf[start + k].astype(np.int64) for k in range(size)]
    neg = (cols[0] & 0x80) == 0 if size else np.zeros(len(start), bool)
    if size:
        cols[0] = cols[0] ^ 0x80
    flip = np.where(neg, 0xFF, 0)
    cols = [c ^ flip for c in cols]
    intg = prec - scale
    widths = []
    lead = _DIG2BYTES[intg % 9]
    if lead:
        widths.append((lead, intg % 9))
    widths += [(4, 9)] * (intg // 9)
    fracs = [(4, 9)] * (scale // 9)
    if scale % 9:
        fracs.append((_DIG2BYTES[scale % 9], scale % 9))
    if prec <= 18:
        v = np.zeros(len(start), dtype=np.int64)
        col = 0
        for w, digits in widths + fracs:
            g = np.zeros(len(start), dtype=np.int64)
            for k in range(w):
                g = (g << 8) | cols[col + k]
            col += w
            v = v * (10**digits) + g
        v = np.where(neg, -v, v)
        lo = v.astype(np.int64)
        hi = np.where(lo < 0, -1, 0).astype(np.int64)
        words = np.empty(2 * len(lo), dtype=np.int64)
        words[0::2], words[1::2] = lo, hi
        return pa.Array.from_buffers(
            pa.decimal128(max(prec, 1), scale), len(lo), [_validity(null), pa.py_buffer(words)]
        )
    raw = np.stack(cols, axis=1) if size else np.zeros((len(start), 0), np.int64)
    vals: list[Any] = []
    from decimal import Decimal

    for r in range(len(start)):
        if null[r]:
            vals.append(None)
            continue
        big, at = 0, 0
        for w, digits in widths + fracs:
            part = int.from_bytes(bytes(raw[r, at : at + w].astype(np.uint8)), "big")
            at += w
            big = big * 10**digits + part
        vals.append(Decimal((int(neg[r]), tuple(int(d) for d in str(big)), -scale)))
    t = pa.decimal128(prec, scale) if prec <= 38 else pa.decimal256(min(prec, 76), scale)
    return pa.array(vals, t)


_UTF8 = {"utf8mb4", "utf8mb3", "utf8", "ascii"}
#: MySQL's character sets whose Python codec has another name (the UTF-16/32 ones are
#: big-endian without a byte-order mark; MySQL's latin1 is Windows-1252)
_CODECS = {"latin1": "cp1252", "binary": "latin1", "utf16": "utf-16-be", "utf16le": "utf-16-le",
           "utf32": "utf-32-be", "ucs2": "utf-16-be", "koi8r": "koi8_r", "koi8u": "koi8_u",
           "ujis": "euc_jp", "eucjpms": "euc_jp", "macroman": "mac_roman",
           "sjis": "shift_jis", "cp932": "cp932", "euckr": "euc_kr", "tis620": "tis_620"}  # fmt: skip


def _codec(spec: ColumnSpec) -> str:
    """The Python codec of a column's MySQL character set; one Python lacks is an error naming
    the column (never a guess at its bytes)."""
    import codecs

    assert spec.charset is not None
    name = _CODECS.get(spec.charset.lower(), spec.charset.lower())
    try:
        codecs.lookup(name)
    except LookupError:
        raise FatalError(
            f"column {spec.name}: its character set {spec.charset} cannot be decoded here; "
            "convert the column to utf8mb4, or leave it out with column"
        ) from None
    return name


def _mysql_latin1(e: UnicodeError) -> tuple[str, int]:
    """MySQL's latin1 is Windows-1252 with the five bytes it leaves undefined (0x81, 0x8D,
    0x8F, 0x90, 0x9D) as the control characters of the same number, as the server converts them."""
    assert isinstance(e, UnicodeDecodeError)
    return e.object[e.start : e.end].decode("latin1"), e.end


codecs.register_error("tidesync.mysql_latin1", _mysql_latin1)


def _decoded(raw: pa.Array, codec: str, spec: ColumnSpec) -> tuple[pa.Array, list[tuple[int, str]]]:
    """Binary values as text of ``codec``; a value whose bytes are no text of the column's
    character set is NULL and reported (row, reason): a dirty record, as in the batch reader."""
    errors = "tidesync.mysql_latin1" if codec == "cp1252" else "strict"
    out: list[str | None] = []
    bad: list[tuple[int, str]] = []
    for r, x in enumerate(raw.to_pylist()):
        if x is None:
            out.append(None)
            continue
        try:
            out.append(x.decode(codec, errors))
        except UnicodeDecodeError:
            out.append(None)
            bad.append((r, f"column {spec.name}: {x!r} is not {spec.charset or 'utf8'} text"))
    return from_strings(out), bad


def codec_name(spec: ColumnSpec) -> str:
    """The Python codec of a column's text (``latin1`` for a binary one: its bytes as is)."""
    if spec.charset is None:
        return "latin1"
    return "utf-8" if spec.charset.lower() in _UTF8 else _codec(spec)


_ZERO_ONE = from_numpy(np.array([0, 1], np.int64))
_ZERO_I32 = from_numpy(np.zeros(1, np.int32))[0]


def column(
    buf: np.ndarray, w: Walked, j: int, t: int, meta: int, spec: ColumnSpec
) -> tuple[pa.Array, list[tuple[int, str]]]:
    """Column ``j`` of the walked rows as ``spec.type``, and the rows whose value has no such
    form (row index, reason): they become dirty records, as in the batch reader."""
    start, size, null = w.start[j], w.size[j], w.null[j]
    safe = np.where(null, 0, start)
    target = spec.type
    bad: list[tuple[int, str]] = []
    arr: pa.Array
    if t in (T_TINY, T_SHORT, T_INT24, T_LONG, T_LONGLONG, T_YEAR):
        width = _FIXED[t]
        v = _fixed(buf, safe, width)
        if t == T_YEAR:
            v = np.where(v == 0, 0, v + 1900)
            arr = from_numpy(v.astype(np.int64))
        elif width == 8:
            arr = from_numpy(v if spec.unsigned else v.view(np.int64))
        else:
            if not spec.unsigned:
                bits = 8 * width
                v = np.where(v >= 1 << (bits - 1), v - (1 << bits), v)
            arr = from_numpy(v.astype(np.int64))
        arr = _masked(arr, null)
        if pa.types.is_boolean(target):
            ints = arr.cast(pa.int64())
            off = to_bools(pc.and_(ints.is_valid(), pc.invert(pc.is_in(ints, _ZERO_ONE))))
            bad = [(int(r), f"{ints[int(r)].as_py()!r} is not a boolean (TINYINT(1) read as one)")
                   for r in np.flatnonzero(off)]  # fmt: skip
            arr = pc.not_equal(ints, _ZERO_ONE[0])
        else:
            arr = arr.cast(target)
    elif t in (T_FLOAT, T_DOUBLE):
        width = _FIXED[t]
        raw = buf[safe[:, None] + np.arange(width)] if len(safe) else np.zeros((0, width), np.uint8)
        v = np.ascontiguousarray(raw).view("<f4" if width == 4 else "<f8").ravel()
        arr = _masked(from_numpy(v), null).cast(target)
    elif t == T_NEWDECIMAL:
        arr = _decimal(buf, safe, null, meta >> 8, meta & 0xFF)
        if arr.type != target:
            try:
                arr = arr.cast(target)
            except pa.ArrowInvalid:  # logged as DECIMAL(p, s) with more digits than it has now
                raise FatalError(
                    f"column {spec.name}: the binlog holds values of DECIMAL({meta >> 8}, "
                    f"{meta & 0xFF}) in it that its type now ({target}) cannot hold: the column "
                    "changed since those rows were logged; read those changes with the table as "
                    "it was, or start a new capture (`tidesync cdc drop`)"
                ) from None
    elif t in (T_DATE, T_NEWDATE):
        v = _fixed(buf, safe, 3)
        d, m, y = v & 31, (v >> 5) & 15, v >> 9
        arr, bad = _days(y, m, d, null, target)
    elif t == T_DATETIME2:
        v = _fixed(buf, safe, 5, big=True) - 0x8000000000
        ymd, hms = v >> 17, v % (1 << 17)
        ym = ymd >> 5
        days, bad = _days(ym // 13, ym % 13, ymd & 31, null, pa.date32())
        secs = (hms >> 12) * 3600 + ((hms >> 6) & 63) * 60 + (hms & 63)
        us = _fraction(buf, safe + 5, meta)
        day = days.cast(pa.int32()).fill_null(_ZERO_I32)
        day_n = (
            np.frombuffer(day.buffers()[1], np.int32, len(day), 4 * day.offset)
            if len(day)
            else np.zeros(0, np.int32)
        )
        day_us = day_n.astype(np.int64) * 86_400_000_000
        arr = _masked(from_numpy(day_us + secs * 1_000_000 + us, pa.timestamp("us")),
                      null | ~to_bools(days.is_valid()))  # fmt: skip
        arr = arr.cast(target)
    elif t == T_TIMESTAMP2:
        secs = _fixed(buf, safe, 4, big=True)
        us = _fraction(buf, safe + 4, meta)
        zero = (secs == 0) & (us == 0)  # 0000-00-00 00:00:00: NULL, as the batch reader
        arr = _masked(from_numpy(secs * 1_000_000 + us, pa.timestamp("us", tz="UTC")), null | zero)
        arr = arr.cast(target)
    elif t == T_TIME2:
        v = _fixed(buf, safe, 3, big=True) - 0x800000
        frac_bytes = (meta + 1) // 2
        f = (
            _fixed(buf, safe + 3, frac_bytes, big=True)
            if frac_bytes
            else np.zeros(len(v), np.int64)
        )
        total = v * (1 << (8 * frac_bytes)) + f if frac_bytes else v
        neg = total < 0
        mag = np.abs(v) if not frac_bytes else np.abs(total) >> (8 * frac_bytes)
        fr = (
            (np.abs(total) & ((1 << (8 * frac_bytes)) - 1))
            if frac_bytes
            else np.zeros(len(v), np.int64)
        )
        h, mi, s = (mag >> 12) & 0x3FF, (mag >> 6) & 63, mag & 63
        us = fr * {0: 0, 1: 10000, 2: 100, 3: 1}[frac_bytes]
        tot = (h * 3600 + mi * 60 + s) * 1_000_000 + us
        off = (neg & (tot != 0)) | (tot >= 86_400_000_000)
        off &= ~null
        bad = [(int(r), "is not a time of day (MySQL TIME holds durations); read it as text "
                "with CAST(col AS CHAR) in column") for r in np.flatnonzero(off)]  # fmt: skip
        arr = _masked(from_numpy(np.where(off, 0, tot), pa.time64("us")), null | off)
    elif t == T_BIT:
        v = np.zeros(len(safe), dtype=np.uint64)
        for k in range(int(size.max()) if len(size) else 0):
            inside = size > k
            b = buf[np.where(inside, safe + k, 0)].astype(np.uint64)
            v = np.where(inside, (v << np.uint64(8)) | b, v)
        arr = _masked(from_numpy(v), null)
        arr = (
            pc.not_equal(arr, from_numpy(np.zeros(1, np.uint64))[0])
            if pa.types.is_boolean(target)
            else arr.cast(target)
        )
    elif t in (T_STRING, T_ENUM, T_SET) and (meta >> 8) in (T_ENUM, T_SET):
        v = _fixed(buf, safe, meta & 0xFF)
        labels = spec.labels or []
        if (meta >> 8) == T_ENUM:
            names = from_strings(["", *labels])
            arr = _masked(names.take(from_numpy(np.clip(v, 0, len(labels)))), null)
        else:
            arr = from_strings(
                [None if null[r] else ",".join(lb for k, lb in enumerate(labels) if int(v[r]) >> k & 1)
                 for r in range(len(v))],
            )  # fmt: skip
        if target != pa.string():
            arr = arr.cast(target)
    elif t in (T_VARCHAR, T_VAR_STRING, T_STRING, T_BLOB, T_TINY_BLOB, T_MEDIUM_BLOB,
               T_LONG_BLOB, T_GEOMETRY):  # fmt: skip
        if t in (T_VARCHAR, T_VAR_STRING):
            prefix = 1 if meta < 256 else 2
        elif t == T_STRING:
            real, length = meta >> 8, meta & 0xFF
            prefix = 1 if (((real << 4) & 0x300) ^ 0x300) + length < 256 else 2
        else:
            prefix = meta
        binary = pa.types.is_binary(target) or spec.charset is None
        if t == T_STRING and spec.data_type == "binary":
            # the log keeps BINARY(n) without its trailing zero bytes; the column holds n bytes
            width = (((real << 4) & 0x300) ^ 0x300) + length
            arr = _padded(buf, safe + prefix, size - prefix, null, width)
        else:
            arr = _strings(buf, safe, size, null, prefix, binary)
        if not pa.types.is_binary(target):
            if spec.charset is not None and spec.charset.lower() not in _UTF8:
                raw = _strings(buf, safe, size, null, prefix, True)
                arr, bad = _decoded(raw, _codec(spec), spec)
            else:  # the log's bytes as they are: invalid UTF-8 (an ascii column keeps any byte)
                raw = arr if binary else arr.view(pa.binary())
                try:
                    arr = raw.cast(pa.string())
                except pa.ArrowInvalid:
                    arr, bad = _decoded(raw, "utf-8", spec)
            if target != arr.type:
                arr = arr.cast(target)
    else:
        raise FatalError(f"column {spec.name}: binlog column type {t} is not supported yet")
    return arr, bad


def _fraction(buf: np.ndarray, at: np.ndarray, fsp: int) -> np.ndarray:
    n = (fsp + 1) // 2
    if not n:
        return np.zeros(len(at), np.int64)
    return _fixed(buf, at, n, big=True) * {1: 10000, 2: 100, 3: 1}[n]


def _days(y: np.ndarray, m: np.ndarray, d: np.ndarray, null: np.ndarray,
          target: pa.DataType) -> tuple[pa.Array, list[tuple[int, str]]]:  # fmt: skip
    """Dates from parts; all-zero dates become NULL (as the batch reader reads them), other
    impossible ones are reported."""
    zero = (y == 0) & (m == 0) & (d == 0)
    ok = (m >= 1) & (m <= 12) & (d >= 1) & (y >= 1)
    months = (np.where(ok, y, 1970) - 1970) * 12 + np.where(ok, m, 1) - 1
    first = months.astype("datetime64[M]").astype("datetime64[D]")
    days = (first + np.where(ok, d, 1) - 1).astype(np.int64)
    # a day past the month's end (2016-02-30) overflows into the next month: impossible
    back = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) == months
    ok &= back
    badm = ~ok & ~zero & ~null
    bad = [(int(r), f"{int(y[r]):04d}-{int(m[r]):02d}-{int(d[r]):02d} is not a valid date")
           for r in np.flatnonzero(badm)]  # fmt: skip
    arr = _masked(from_numpy(days.astype(np.int32), pa.date32()), null | ~ok)
    return arr.cast(target), bad
