"""The write-ahead log: framing, a torn end cut off, damage elsewhere refused, trimming."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidesync.archive.dedupe import RecentDeduper, SequenceDeduper
from tidesync.archive.wal import REDELIVERED, Log, Record, encode_data, encode_meta, scan, segments
from tidesync.errors import FatalError


def rec(seq: int, payload: bytes = b'{"x":1}', flags: int = 0, src: int = 7) -> Record:
    return Record(seq, 1_546_300_800_000 + seq, flags, src, "plant/a/measure", payload)


def test_records_and_metas_come_back_in_order(tmp_path: Path) -> None:
    log = Log(tmp_path, 1)
    log.append(
        [encode_data(rec(1)), encode_meta({"k": "intent", "cycle": 5}), encode_data(rec(2))], 3
    )
    log.close()
    got = list(scan(tmp_path))
    assert got == [rec(1), {"k": "intent", "cycle": 5}, rec(2)]


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_a_record_torn_by_a_crash_is_cut_off_and_the_log_goes_on(tmp_path: Path, cut: int) -> None:
    log = Log(tmp_path, 1)
    log.append([encode_data(rec(1))], 2)
    whole = log.size
    torn = encode_data(rec(2, b"y" * 30))[:cut]
    log.append([torn], 3)
    log.close()
    assert list(scan(tmp_path)) == [rec(1)]
    assert (tmp_path / segments(tmp_path)[-1][1].name).stat().st_size == whole + cut
    assert list(scan(tmp_path, repair=True)) == [rec(1)]
    assert segments(tmp_path)[-1][1].stat().st_size == whole
    log = Log(tmp_path, 2)
    log.append([encode_data(rec(2))], 3)
    log.close()
    assert list(scan(tmp_path)) == [rec(1), rec(2)]


def test_a_flipped_byte_before_the_last_segment_is_refused(tmp_path: Path) -> None:
    log = Log(tmp_path, 1, segment_bytes=10)  # a segment per append
    log.append([encode_data(rec(1))], 2)
    log.append([encode_data(rec(2))], 3)
    log.close()
    first = segments(tmp_path)[0][1]
    data = bytearray(first.read_bytes())
    data[-3] ^= 0xFF
    first.write_bytes(bytes(data))
    with pytest.raises(FatalError, match="checksum mismatch at byte 0, before the last segment"):
        list(scan(tmp_path))


def test_segments_roll_and_trim_removes_only_those_wholly_below(tmp_path: Path) -> None:
    log = Log(tmp_path, 1, segment_bytes=10)
    for s in range(1, 5):
        log.append([encode_data(rec(s))], s + 1)
    assert [f for f, _ in segments(tmp_path)] == [1, 2, 3, 4, 5]
    assert log.trim(3) == 2  # segments 1 and 2 hold only seqs 1 and 2
    assert [f for f, _ in segments(tmp_path)] == [3, 4, 5]
    assert log.trim(100) == 2  # never the segment being written
    assert [f for f, _ in segments(tmp_path)] == [5]
    log.close()


def test_a_jetstream_redelivery_is_known_by_its_stream_sequence() -> None:
    d = SequenceDeduper()
    d.note(rec(1, src=10))
    assert d.is_copy(rec(2, src=10))
    assert not d.is_copy(rec(2, src=11))
    d.prune(10)  # acknowledged up to 10: never delivered again
    assert d.seen == set() and d.is_copy(rec(3, src=9))
    d.note(rec(4, src=12))
    restored = SequenceDeduper()
    restored.restore(d.snapshot())
    assert restored.is_copy(rec(5, src=12)) and not restored.is_copy(rec(5, src=13))


def test_an_mqtt_redelivery_needs_the_dup_flag_packet_id_topic_and_payload() -> None:
    d = RecentDeduper(size=2)
    d.note(rec(1, b"a", src=7))
    assert d.is_copy(rec(2, b"a", REDELIVERED, src=7))
    assert not d.is_copy(rec(2, b"a", 0, src=7)), "a first delivery is never a copy"
    assert not d.is_copy(rec(2, b"b", REDELIVERED, src=7))
    assert not d.is_copy(rec(2, b"a", REDELIVERED, src=8))
    d.note(rec(2, b"x", src=8))
    d.note(rec(3, b"y", src=9))  # the window holds two: 7 has left it
    assert not d.is_copy(rec(4, b"a", REDELIVERED, src=7))
    restored = RecentDeduper(size=2)
    restored.restore(d.snapshot())
    assert restored.is_copy(rec(5, b"y", REDELIVERED, src=9))


def test_trim_keeps_the_segment_of_its_checkpoint_even_when_that_segment_rolled(
    tmp_path: Path,
) -> None:
    log = Log(tmp_path, 1, segment_bytes=100)
    log.append([encode_data(rec(1))], 2)
    ckpt = {"k": "ckpt", "pad": "x" * 60}
    ckpt_at = log.append([encode_meta(ckpt)], 2)  # past 100 bytes: rolls to segment "2"
    assert ckpt_at != log.path
    assert log.trim(2, keep=ckpt_at) == 0
    assert ckpt in list(scan(tmp_path))
    log.close()
