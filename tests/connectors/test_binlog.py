"""The binlog dump's framing and the row events' decoding on events made by hand: packets cut
anywhere by the socket, a packet of 16 MiB continued, compressed events, NULL bitmaps over two
bytes, multi-row events, updates' before/after pairs (a key change among them), partial images."""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pymysql
import pytest

from tidesync.connectors.mysql import binlog as bl
from tidesync.connectors.mysql.cdc import Reader, _State, _Target
from tidesync.connectors.sql.cdc import meta_fields
from tidesync.errors import FatalError

FILE = "mysql-bin.000001"
TABLE_ID = 77
TS = 1_700_000_000  # the events' time (s)


# -- a binlog made by hand -----------------------------------------------------------------------


class Log:
    """Events with their headers, positions (from 4 on) and CRC32 checksums."""

    def __init__(self) -> None:
        self.pos = 4
        self.events: list[bytes] = []
        self.starts: list[int] = []

    def add(self, kind: int, body: bytes, ts: int = TS) -> None:
        size = 19 + len(body) + 4
        self.starts.append(self.pos)
        self.pos += size
        ev = struct.pack("<IBIIIH", ts, kind, 1, size, self.pos, 0) + body
        self.events.append(ev + struct.pack("<I", zlib.crc32(ev)))


def packet(payload: bytes, seq: int = 1) -> bytes:
    """``payload`` as the server frames it: pieces of 16 MiB - 1, the last one shorter (empty
    when the payload is a multiple of that size)."""
    out, at = b"", 0
    while True:
        part = payload[at : at + 0xFFFFFF]
        out += len(part).to_bytes(3, "little") + bytes([seq & 0xFF]) + part
        at += len(part)
        seq += 1
        if len(part) < 0xFFFFFF:
            return out


def stream(events: list[bytes], end: bytes = b"\xfe\x00\x00\x02\x00") -> bytes:
    """The dump's packets: each event after an OK byte, then the EOF packet."""
    return b"".join(packet(b"\x00" + ev) for ev in events) + (packet(end) if end else b"")


class Trickle:
    """A connection's reader that hands over at most ``step`` bytes a read (as a socket does
    what has arrived), then says the connection closed."""

    def __init__(self, data: bytes, step: int):
        self.data = memoryview(data)
        self.at = 0
        self.step = step

    def readinto1(self, into: memoryview) -> int:
        n = min(len(into), self.step, len(self.data) - self.at)
        into[:n] = self.data[self.at : self.at + n]
        self.at += n
        return n


def dump(data: bytes, step: int, batch_bytes: int = 8 << 20) -> list[bl.Events]:
    d = bl.Dump(None, bl.Position(FILE, 4), checksum=True)
    d.BATCH_BYTES = batch_bytes
    return list(d._packets(Trickle(data, step), [FILE]))


def events_of(batches: list[bl.Events]) -> list[bytes]:
    out = []
    for ev in batches:
        size = ev.size
        out += [
            bytes(ev.buf[s : s + n]) for s, n in zip(ev.start.tolist(), size.tolist(), strict=True)
        ]
    return out


# -- the table: ten columns (a NULL bitmap of two bytes), one of each kind of layout -----------

COLUMNS: list[tuple[str, int, bytes, bl.ColumnSpec]] = [
    # name, binlog type, table map metadata, how the batch reader reads it
    ("id", bl.T_LONG, b"", bl.ColumnSpec("id", pa.int32(), data_type="int")),
    ("name", bl.T_VARCHAR, struct.pack("<H", 80),
     bl.ColumnSpec("name", pa.string(), charset="utf8mb4", data_type="varchar")),
    ("amount", bl.T_NEWDECIMAL, bytes([10, 2]),
     bl.ColumnSpec("amount", pa.decimal128(10, 2), data_type="decimal")),
    ("at", bl.T_DATETIME2, bytes([0]), bl.ColumnSpec("at", pa.timestamp("us"), data_type="datetime")),
    ("score", bl.T_DOUBLE, bytes([8]), bl.ColumnSpec("score", pa.float64(), data_type="double")),
    ("note", bl.T_BLOB, bytes([2]),
     bl.ColumnSpec("note", pa.string(), charset="utf8mb4", data_type="text")),
    ("flag", bl.T_TINY, b"", bl.ColumnSpec("flag", pa.int8(), data_type="tinyint")),
    ("small", bl.T_SHORT, b"", bl.ColumnSpec("small", pa.int16(), data_type="smallint")),
    ("big", bl.T_LONGLONG, b"",
     bl.ColumnSpec("big", pa.uint64(), unsigned=True, data_type="bigint")),
    ("day", bl.T_DATE, b"", bl.ColumnSpec("day", pa.date32(), data_type="date")),
]  # fmt: skip
N = len(COLUMNS)
NB = (N + 7) // 8


def _decimal(v: Decimal) -> bytes:
    """DECIMAL(10,2) as the binlog holds it: 8 integer digits in 4 bytes, 2 fraction digits in
    1, big-endian; a negative's bytes inverted; the sign bit flipped."""
    mag = abs(v)
    whole, frac = int(mag), int((mag - int(mag)) * 100)
    b = bytearray(whole.to_bytes(4, "big") + frac.to_bytes(1, "big"))
    if v < 0:
        b = bytearray(x ^ 0xFF for x in b)
    b[0] ^= 0x80
    return bytes(b)


def _value(kind: int, v: Any) -> bytes:
    if kind == bl.T_LONG:
        return struct.pack("<i", v)
    if kind == bl.T_VARCHAR:
        b = v.encode()
        return bytes([len(b)]) + b
    if kind == bl.T_NEWDECIMAL:
        return _decimal(v)
    if kind == bl.T_DATETIME2:
        packed = ((v.year * 13 + v.month) << 22) | (v.day << 17) | (v.hour << 12)
        packed |= (v.minute << 6) | v.second
        return (packed + 0x8000000000).to_bytes(5, "big")
    if kind == bl.T_DOUBLE:
        return struct.pack("<d", v)
    if kind == bl.T_BLOB:
        b = v.encode()
        return struct.pack("<H", len(b)) + b
    if kind == bl.T_TINY:
        return struct.pack("<b", v)
    if kind == bl.T_SHORT:
        return struct.pack("<h", v)
    if kind == bl.T_LONGLONG:
        return struct.pack("<Q", v)
    assert kind == bl.T_DATE
    return (v.day | (v.month << 5) | (v.year << 9)).to_bytes(3, "little")


def _row(values: dict[str, Any]) -> bytes:
    nulls = 0
    out = b""
    for j, (name, kind, _m, _s) in enumerate(COLUMNS):
        if values[name] is None:
            nulls |= 1 << j
        else:
            out += _value(kind, values[name])
    return nulls.to_bytes(NB, "little") + out


def table_map() -> bytes:
    meta = b"".join(m for _n, _k, m, _s in COLUMNS)
    return (
        TABLE_ID.to_bytes(6, "little") + b"\x01\x00" + b"\x04test\x00" + b"\x01t\x00"
        + bytes([N]) + bytes(k for _n, k, _m, _s in COLUMNS) + bytes([len(meta)]) + meta
        + b"\xff" * NB
    )  # fmt: skip


def rows_event(kind: int, rows: list[bytes], present: bytes | None = None) -> bytes:
    """A v2 rows event's body: table id, flags, extra data (its length only), the column count,
    the bitmap of the columns it holds (two for an update: before, after), the rows."""
    full = present if present is not None else ((1 << N) - 1).to_bytes(NB, "little")
    bitmaps = full * (2 if kind == bl.UPDATE_V2 else 1)
    return (
        TABLE_ID.to_bytes(6, "little") + b"\x00\x00" + b"\x02\x00" + bytes([N]) + bitmaps
        + b"".join(rows)
    )  # fmt: skip


def compressed(kind: int, body: bytes) -> tuple[int, bytes]:
    """A rows event as MariaDB's log_bin_compress writes it: the rows after the bitmaps as a
    zlib stream behind a byte 0x80 | 4 and their plain length in 4 bytes, big-endian."""
    at = 8 + 2 + 1 + NB * (2 if kind == bl.UPDATE_V2 else 1)
    rows = body[at:]
    packed = body[:at] + bytes([0x80 | 4]) + len(rows).to_bytes(4, "big") + zlib.compress(rows)
    return {bl.WRITE_V2: 169, bl.UPDATE_V2: 170, bl.DELETE_V2: 171}[kind], packed


def _rec(i: int, **over: Any) -> dict[str, Any]:
    r = {
        "id": i,
        "name": f"n{i} é",
        "amount": Decimal(f"{'-' if i % 2 else ''}{i % 10}1234567.8{i % 10}"),
        "at": datetime(2020, 2, 29, 23, 59, i % 60),
        "score": i * 0.25,
        "note": "ß" * (i % 5) + "x" * (300 if i % 3 == 0 else 1),  # a length over 255
        "flag": -i % 100,
        "small": -1234 + i,
        "big": 2**64 - 1 - i,
        "day": date(1999, 12, 31),
    }
    r.update(over)
    return r


def transaction(log: Log, changes: list[tuple[int, list[Any]]], compress: bool) -> None:
    """A MariaDB transaction: GTID, table map, the row events, XID (commit at TS + 1)."""
    log.add(bl.MARIA_GTID, struct.pack("<QIB", len(log.events), 0, 0) + bytes(6))
    log.add(bl.TABLE_MAP, table_map())
    for kind, rows in changes:
        images = [_row(r) for pair in rows for r in (pair if kind == bl.UPDATE_V2 else [pair])]
        body = rows_event(kind, images)
        log.add(*(compressed(kind, body) if compress else (kind, body)))
    log.add(bl.XID, struct.pack("<Q", 9), ts=TS + 1)


def reader() -> Reader:
    r = Reader.__new__(Reader)
    r._checksum = True
    r._cascades = {}
    r.ctx = SimpleNamespace(where="job.content[0].reader")
    r.o = SimpleNamespace(before_image=False)
    specs = [s for _n, _k, _m, s in COLUMNS]
    r.targets = {("test", "t"): _Target("t", specs, {s.name for s in specs}, key=[0])}
    r._schema = pa.schema([pa.field(s.name, s.type) for s in specs] + meta_fields(False))
    return r


def decode(batches: list[bl.Events]) -> list[dict[str, Any]]:
    """What the capture reader makes of the batches (up to the end of the log)."""
    r = reader()
    state = _State()
    end = bl.Position(FILE, 1 << 40)
    out: list[pa.RecordBatch] = []
    carry: bl.Events | None = None
    for batch in batches:
        ev = carry.then(batch) if carry is not None else batch
        chunks, stop, tail = r._batch(ev, state, end, None)
        assert stop is None
        for c in chunks:
            assert not c.dirty
            out.append(c.batch)
        carry = ev.tail(tail) if tail is not None else None
    assert r._schema is not None
    return pa.Table.from_batches(out, r._schema).to_pylist()


# -- framing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 5, 4093, 1 << 20])
@pytest.mark.parametrize("batch_bytes", [1, 700, 8 << 20])
def test_events_come_whole_however_the_socket_cuts_them_in_batches_ending_at_a_commit(
    step: int, batch_bytes: int
) -> None:
    log = Log()
    for t in range(4):
        transaction(log, [(bl.WRITE_V2, [_rec(10 * t + k) for k in range(3)])], compress=False)
    batches = dump(stream(log.events), step, batch_bytes)
    assert events_of(batches) == log.events
    for ev in batches[:-1]:
        assert int(ev.type[-1]) == bl.XID  # a batch ends with a transaction
    if batch_bytes == 1:
        assert len(batches) == 4
    for ev in batches:
        assert (ev.next_pos - ev.size).tolist() == log.starts[: len(ev)]
        del log.starts[: len(ev)]
        end = int(ev.start[-1] + ev.size[-1])
        assert not ev.buf[end:].any() and len(ev.buf) - end == 64  # room to read past the end
        assert ev.files == [FILE] and not ev.file.any()


@pytest.mark.parametrize("extra", [0xFFFFFF - 1 - 23, 0xFFFFFF + 1000, 2 * 0xFFFFFF - 1 - 23])
def test_a_packet_of_16_mib_is_joined_with_the_packets_that_continue_it(extra: int) -> None:
    # the payload (OK byte + event) exactly 16 MiB - 1 (an empty packet follows), more, or two
    # full packets and an empty one
    log = Log()
    log.add(bl.MARIA_ANNOTATE, bytes(range(256)) * (extra // 256) + bytes(extra % 256))
    log.add(bl.XID, struct.pack("<Q", 1))
    assert len(log.events[0]) == extra + 23
    batches = dump(stream(log.events), 1 << 22)
    assert events_of(batches) == log.events


def test_a_compressed_event_is_inflated_where_it_was_and_the_events_after_it_move_up() -> None:
    plain, packed = Log(), Log()
    changes = [(bl.WRITE_V2, [_rec(1), _rec(2)]), (bl.DELETE_V2, [_rec(1)])]
    transaction(plain, changes, compress=False)
    transaction(packed, changes, compress=True)
    got = events_of(dump(stream(packed.events), 7))
    assert [bl.inflate(b"\x00" + e, True)[1:] if e[4] in bl.MARIA_COMPRESSED else e
            for e in packed.events] == got  # fmt: skip
    assert [e[4] for e in got] == [e[4] for e in plain.events]
    # the same rows (an inflated event keeps its place in the log: its start, not its size)
    for a, b in zip(got, plain.events, strict=True):
        assert a[19:-4] == b[19:-4]


def test_a_rotation_names_the_file_of_the_events_after_it() -> None:
    log = Log()
    transaction(log, [(bl.WRITE_V2, [_rec(1)])], compress=False)
    log.add(bl.ROTATE, struct.pack("<Q", 4) + b"mysql-bin.000002")
    transaction(log, [(bl.WRITE_V2, [_rec(2)])], compress=False)
    (ev,) = dump(stream(log.events), 3)
    assert ev.files == [FILE, "mysql-bin.000002"]
    assert ev.file.tolist() == [0] * 4 + [1] * 5


def test_an_error_packet_is_raised_as_the_servers_error() -> None:
    log = Log()
    transaction(log, [(bl.WRITE_V2, [_rec(1)])], compress=False)
    err = b"\xff" + struct.pack("<H", 1236) + b"#HY000" + b"Could not find first log file"
    with pytest.raises(pymysql.err.OperationalError) as e:
        dump(stream(log.events, end=err), 11)
    assert e.value.args[0] == 1236


def test_a_dump_cut_short_is_an_error() -> None:
    log = Log()
    transaction(log, [(bl.WRITE_V2, [_rec(1)])], compress=False)
    with pytest.raises(FatalError, match="closed the binlog connection"):
        dump(stream(log.events, end=b"")[:-10], 64)


# -- decoding ------------------------------------------------------------------------------------


def expected_ts() -> datetime:
    return datetime.fromtimestamp(TS + 1, UTC)


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("batch_bytes", [1, 8 << 20])
def test_rows_of_multi_row_events_and_update_pairs_decode_as_the_batch_reader_reads_them(
    compress: bool, batch_bytes: int
) -> None:
    nulls = _rec(3, name=None, amount=None, at=None, note=None, big=None, day=None)  # byte 2 too
    some = _rec(4, score=None, flag=None)
    log = Log()
    transaction(log, [(bl.WRITE_V2, [_rec(1), _rec(2), nulls, some])], compress)
    transaction(
        log,
        [
            (bl.UPDATE_V2, [(_rec(1), _rec(1, name="renamed", amount=Decimal("-0.05"))),
                            (_rec(2), _rec(7)),  # the key changes: a delete and an insert
                            (nulls, _rec(3, name=""))]),
            (bl.DELETE_V2, [some]),
        ],
        compress,
    )  # fmt: skip
    got = decode(dump(stream(log.events), 9, batch_bytes))
    pos = [f"{FILE}:{p}" for p in log.starts]
    # each change's _pos is its row event's place: events 2 (insert), 6 (update), 7 (delete)
    want = [
        {**_rec(1), "_op": "c", "_pos": pos[2]},
        {**_rec(2), "_op": "c", "_pos": pos[2]},
        {**nulls, "_op": "c", "_pos": pos[2]},
        {**some, "_op": "c", "_pos": pos[2]},
        {**_rec(1, name="renamed", amount=Decimal("-0.05")), "_op": "u", "_pos": pos[6]},
        {**_rec(2), "_op": "d", "_pos": pos[6]},
        {**_rec(7), "_op": "c", "_pos": pos[6]},
        {**_rec(3, name=""), "_op": "u", "_pos": pos[6]},
        {**some, "_op": "d", "_pos": pos[7]},
    ]
    assert got == [{**w, "_ts": expected_ts()} for w in want]


def test_rows_logged_without_every_column_are_an_error_naming_the_setting() -> None:
    # binlog_row_image = MINIMAL: an update's before image holds the key only
    log = Log()
    log.add(bl.MARIA_GTID, bytes(13) + bytes(6))
    log.add(bl.TABLE_MAP, table_map())
    present = (1).to_bytes(NB, "little")
    body = rows_event(bl.DELETE_V2, [b"\x00\x00" + struct.pack("<i", 1)], present)
    log.add(bl.DELETE_V2, body)
    log.add(bl.XID, bytes(8))
    with pytest.raises(FatalError, match="binlog_row_image = FULL"):
        decode(dump(stream(log.events), 1 << 20))


def test_a_null_bitmap_over_two_bytes_marks_each_column() -> None:
    # every column NULL but one, in turn: the bit of column j in byte j // 8
    log = Log()
    recs = [{c: (v if c == name else None) for c, v in _rec(5).items()} for name, *_ in COLUMNS]
    transaction(log, [(bl.WRITE_V2, recs)], compress=False)
    got = decode(dump(stream(log.events), 1 << 20))
    assert [{k: v for k, v in g.items() if not k.startswith("_")} for g in got] == recs
    assert np.array([g["_op"] == "c" for g in got]).all()
