"""Cycles and directories in the policy's time zone, DST included."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from tidesync.archive.timing import Cycles, DirFormat, to_ms


def utc(*a: int) -> int:
    return to_ms(datetime(*a, tzinfo=UTC))


@pytest.mark.parametrize(
    ("hours", "tz", "at", "start", "end"),
    [
        (1, "UTC", utc(2019, 1, 1, 0, 59, 59), utc(2019, 1, 1, 0), utc(2019, 1, 1, 1)),
        (12, "UTC", utc(2019, 1, 1, 12), utc(2019, 1, 1, 12), utc(2019, 1, 2, 0)),
        (24, "Asia/Shanghai", utc(2019, 1, 1, 15, 59), utc(2018, 12, 31, 16), utc(2019, 1, 1, 16)),
        (
            1,
            "Asia/Kolkata",
            utc(2019, 1, 1, 0, 10),
            utc(2018, 12, 31, 23, 30),
            utc(2019, 1, 1, 0, 30),
        ),
        # Berlin springs forward on 2019-03-31 at 02:00: a 23-hour day, 01:00-03:00 is one hour
        (24, "Europe/Berlin", utc(2019, 3, 31, 12), utc(2019, 3, 30, 23), utc(2019, 3, 31, 22)),
        (1, "Europe/Berlin", utc(2019, 3, 31, 0, 30), utc(2019, 3, 31, 0), utc(2019, 3, 31, 1)),
        # ... and falls back on 2019-10-27 at 03:00: 02:00-03:00 happens twice, each an hour
        (1, "Europe/Berlin", utc(2019, 10, 27, 0, 30), utc(2019, 10, 27, 0), utc(2019, 10, 27, 1)),
        (1, "Europe/Berlin", utc(2019, 10, 27, 1, 30), utc(2019, 10, 27, 1), utc(2019, 10, 27, 2)),
        (24, "Europe/Berlin", utc(2019, 10, 27, 12), utc(2019, 10, 26, 22), utc(2019, 10, 27, 23)),
        # Santiago springs forward on 2024-09-08 at 00:00: that day starts at 01:00 (-03) and
        # its cycles end at the next midnight and noon, not 24 and 12 hours after 01:00
        (24, "America/Santiago", utc(2024, 9, 8, 12), utc(2024, 9, 8, 4), utc(2024, 9, 9, 3)),
        (12, "America/Santiago", utc(2024, 9, 8, 10), utc(2024, 9, 8, 4), utc(2024, 9, 8, 15)),
    ],
)
def test_a_cycle_is_aligned_in_its_zone(hours: int, tz: str, at: int, start: int, end: int) -> None:
    assert Cycles(hours, ZoneInfo(tz)).of(at) == (start, end)


@pytest.mark.parametrize(
    ("hours", "tz", "at"),
    [
        (1, "Europe/Berlin", utc(2019, 10, 26, 20)),
        (12, "America/Santiago", utc(2024, 9, 6)),
        (24, "America/Santiago", utc(2024, 9, 6)),
        (24, "America/Havana", utc(2024, 11, 1)),  # falls back at 01:00: midnight twice
    ],
)
def test_cycles_follow_each_other_without_gaps(hours: int, tz: str, at: int) -> None:
    c = Cycles(hours, ZoneInfo(tz))
    t = at
    for _ in range(30):
        start, end = c.of(t)
        assert start <= t < end
        assert c.of(end)[0] == end
        t = end


def test_a_directory_is_the_wall_time_of_the_zone() -> None:
    d = DirFormat("%Y/%m/%d/%H", ZoneInfo("Asia/Shanghai"))
    assert d(utc(2019, 1, 1, 16, 59)) == "2019/01/02/00"
    assert d(utc(2019, 1, 1, 15, 59, 59) + 999) == "2019/01/01/23"


def test_the_second_cycle_of_a_repeated_hour_has_its_own_name() -> None:
    c = Cycles(1, ZoneInfo("Europe/Berlin"))
    names = [c.name(c.of(utc(2019, 10, 27, h, 30))[0]) for h in range(4)]
    assert names == ["201910270200", "201910270200_repeat", "201910270300", "201910270400"]
    assert c.name(c.of(utc(2019, 3, 31, 1, 30))[0]) == "201903310300"
