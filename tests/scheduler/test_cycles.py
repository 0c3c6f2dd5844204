"""Cycles: every kind at month, year and DST boundaries, in named time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from tidesync.scheduler.cycles import LAST_DAY, Schedule

from ._helpers import at

BERLIN = "Europe/Berlin"  # 2025-03-30 02:00 -> 03:00; 2025-10-26 03:00 -> 02:00
NEW_YORK = "America/New_York"  # 2025-03-09 02:00 -> 03:00; 2025-11-02 02:00 -> 01:00


def walls(s: Schedule, lo: str, hi: str) -> list[str]:
    got = s.between(at(lo, s.timezone), at(hi, s.timezone), include_lo=True)
    return [x.cyctime.strftime("%Y%m%d %H:%M") for x in got]


CASES = [
    # -- minute ----------------------------------------------------------------------------
    (
        "minute, spring forward: 02:xx does not exist",
        Schedule("minute", BERLIN, interval=15),
        "202503300130",
        "202503300330",
        ["20250330 01:30", "20250330 01:45", "20250330 03:00", "20250330 03:15", "20250330 03:30"],
    ),
    (
        "minute, fall back: 02:xx once",
        Schedule("minute", BERLIN, interval=15),
        "202510260145",
        "202510260300",
        [
            "20251026 01:45",
            "20251026 02:00",
            "20251026 02:15",
            "20251026 02:30",
            "20251026 02:45",
            "20251026 03:00",
        ],
    ),
    (
        "minute, window start and end both included",
        Schedule("minute", "UTC", interval=15, start=time(8), end=time(9)),
        "202501010000",
        "202501012359",
        ["20250101 08:00", "20250101 08:15", "20250101 08:30", "20250101 08:45", "20250101 09:00"],
    ),
    (
        "minute, across a month and a year",
        Schedule("minute", "Asia/Shanghai", interval=30),
        "202412312330",
        "202501010030",
        ["20241231 23:30", "20250101 00:00", "20250101 00:30"],
    ),
    (
        "minute, window 00:00-23:59 has the day's last slot",
        Schedule("minute", "UTC", interval=5, start=time(0), end=time(23, 59)),
        "202502282350",
        "202503010005",
        ["20250228 23:50", "20250228 23:55", "20250301 00:00", "20250301 00:05"],
    ),
    # -- hour ------------------------------------------------------------------------------
    (
        "hour, spring forward New York: 02:00 becomes 03:00, once",
        Schedule("hour", NEW_YORK),
        "202503090000",
        "202503090400",
        ["20250309 00:00", "20250309 01:00", "20250309 03:00", "20250309 04:00"],
    ),
    (
        "hour, fall back New York: 01:00 once",
        Schedule("hour", NEW_YORK),
        "202511020000",
        "202511020300",
        ["20251102 00:00", "20251102 01:00", "20251102 02:00", "20251102 03:00"],
    ),
    (
        "hour, every 2 on the spring-forward night: 02:00 moves to 03:00",
        Schedule("hour", BERLIN, interval=2),
        "202503300000",
        "202503300600",
        ["20250330 00:00", "20250330 03:00", "20250330 04:00", "20250330 06:00"],
    ),
    (
        "hour, every 3 from 01:00 to 22:00, both ends",
        Schedule("hour", "UTC", interval=3, start=time(1), end=time(22)),
        "202501010000",
        "202501020000",
        [f"20250101 {h:02d}:00" for h in (1, 4, 7, 10, 13, 16, 19, 22)],
    ),
    (
        "hour, across a year",
        Schedule("hour", "UTC", interval=1),
        "202412312200",
        "202501010100",
        ["20241231 22:00", "20241231 23:00", "20250101 00:00", "20250101 01:00"],
    ),
    # -- day -------------------------------------------------------------------------------
    (
        "day at 02:30 on the spring-forward day runs at 03:30",
        Schedule("day", BERLIN, at=time(2, 30)),
        "202503290000",
        "202503312359",
        ["20250329 02:30", "20250330 03:30", "20250331 02:30"],
    ),
    (
        "day at 02:30 on the fall-back day runs once",
        Schedule("day", BERLIN, at=time(2, 30)),
        "202510250000",
        "202510272359",
        ["20251025 02:30", "20251026 02:30", "20251027 02:30"],
    ),
    (
        "day, across February's end in a leap year",
        Schedule("day", "UTC", at=time(0, 30)),
        "202402280000",
        "202403012359",
        ["20240228 00:30", "20240229 00:30", "20240301 00:30"],
    ),
    (
        "day, across a year",
        Schedule("day", "Asia/Shanghai"),
        "202412300000",
        "202501012359",
        ["20241230 00:00", "20241231 00:00", "20250101 00:00"],
    ),
    # -- week ------------------------------------------------------------------------------
    (
        "week, mondays and fridays across a year",
        Schedule("week", "UTC", days=(0, 4), at=time(6)),
        "202512250000",
        "202601102359",
        ["20251226 06:00", "20251229 06:00", "20260102 06:00", "20260105 06:00", "20260109 06:00"],
    ),
    (
        "week, sunday 02:30 on the spring-forward sunday",
        Schedule("week", BERLIN, days=(6,), at=time(2, 30)),
        "202503230000",
        "202504062359",
        ["20250323 02:30", "20250330 03:30", "20250406 02:30"],
    ),
    # -- month -----------------------------------------------------------------------------
    (
        "month, day 31 only in months that have it",
        Schedule("month", "UTC", days=(31,)),
        "202501010000",
        "202505312359",
        ["20250131 00:00", "20250331 00:00", "20250531 00:00"],
    ),
    (
        "month, last day (leap February)",
        Schedule("month", "UTC", days=(LAST_DAY,), at=time(23)),
        "202401010000",
        "202404302359",
        ["20240131 23:00", "20240229 23:00", "20240331 23:00", "20240430 23:00"],
    ),
    (
        "month, 1st and 15th across a year",
        Schedule("month", "UTC", days=(1, 15)),
        "202412010000",
        "202501152359",
        ["20241201 00:00", "20241215 00:00", "20250101 00:00", "20250115 00:00"],
    ),
    (
        "month, the 26th at 02:30 on the fall-back day runs once",
        Schedule("month", BERLIN, days=(26,), at=time(2, 30)),
        "202509010000",
        "202511302359",
        ["20250926 02:30", "20251026 02:30", "20251126 02:30"],
    ),
    # -- cron ------------------------------------------------------------------------------
    (
        "cron */30, spring forward",
        Schedule("cron", BERLIN, cron="*/30 * * * *"),
        "202503300130",
        "202503300330",
        ["20250330 01:30", "20250330 03:00", "20250330 03:30"],
    ),
    (
        "cron 30 1, fall back New York: once",
        Schedule("cron", NEW_YORK, cron="30 1 * * *"),
        "202511010000",
        "202511032359",
        ["20251101 01:30", "20251102 01:30", "20251103 01:30"],
    ),
    (
        "cron first of the month across a year",
        Schedule("cron", "UTC", cron="0 3 1 * *"),
        "202411010000",
        "202502282359",
        ["20241101 03:00", "20241201 03:00", "20250101 03:00", "20250201 03:00"],
    ),
    (
        "cron 29 February only",
        Schedule("cron", "UTC", cron="0 0 29 2 *"),
        "202301010000",
        "202412312359",
        ["20240229 00:00"],
    ),
    # -- validity --------------------------------------------------------------------------
    (
        "start_date and end_date bound the days",
        Schedule("day", "UTC", start_date=date(2025, 1, 2), end_date=date(2025, 1, 3)),
        "202501010000",
        "202501052359",
        ["20250102 00:00", "20250103 00:00"],
    ),
]


@pytest.mark.parametrize(
    ("schedule", "lo", "hi", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_slots(schedule: Schedule, lo: str, hi: str, expected: list[str]) -> None:
    assert walls(schedule, lo, hi) == expected


def test_spring_forward_slots_are_evenly_spaced_in_real_time() -> None:
    s = Schedule("minute", BERLIN, interval=15)
    got = s.between(at("202503300100", BERLIN), at("202503300400", BERLIN), include_lo=True)
    gaps = {(b.at - a.at) for a, b in zip(got, got[1:], strict=False)}
    assert gaps == {timedelta(minutes=15)}


def test_fall_back_ambiguous_time_is_due_at_its_first_occurrence() -> None:
    s = Schedule("day", BERLIN, at=time(2, 30))
    (slot,) = s.between(at("202510260000", BERLIN), at("202510262359", BERLIN))
    assert slot.at == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)  # 02:30 CEST, not CET


def test_moved_daily_slot_is_due_after_the_gap() -> None:
    s = Schedule("day", BERLIN, at=time(2, 30))
    (slot,) = s.between(at("202503300000", BERLIN), at("202503302359", BERLIN))
    assert (slot.cyctime, slot.at) == (
        datetime(2025, 3, 30, 3, 30),
        datetime(2025, 3, 30, 1, 30, tzinfo=UTC),
    )


@pytest.mark.parametrize(
    ("cyctime", "bizdate"),
    [
        (datetime(2025, 1, 1, 0, 0), date(2024, 12, 31)),
        (datetime(2025, 3, 1, 0, 15), date(2025, 2, 28)),
        (datetime(2024, 3, 1, 23, 45), date(2024, 2, 29)),
    ],
)
def test_bizdate_is_the_day_before_the_cyctime_day(cyctime: datetime, bizdate: date) -> None:
    assert Schedule("day").slot_for(cyctime).bizdate == bizdate


@pytest.mark.parametrize(
    ("schedule", "instant", "latest", "following"),
    [
        (Schedule("month", "UTC", days=(31,)), "202504150000", "20250331 00:00", "20250531 00:00"),
        (Schedule("hour", BERLIN), "202503300159", "20250330 01:00", "20250330 03:00"),
        (
            Schedule("week", "UTC", days=(2,), at=time(12)),
            "202601010000",
            "20251231 12:00",
            "20260107 12:00",
        ),
        (
            Schedule("cron", "UTC", cron="15 */6 * * *"),
            "202412312359",
            "20241231 18:15",
            "20250101 00:15",
        ),
    ],
    ids=["month", "hour-dst", "week-year", "cron-year"],
)
def test_latest_and_next(schedule: Schedule, instant: str, latest: str, following: str) -> None:
    t = at(instant, schedule.timezone)
    assert schedule.latest(t).cyctime.strftime("%Y%m%d %H:%M") == latest
    assert schedule.next_after(t).cyctime.strftime("%Y%m%d %H:%M") == following


def test_previous_crosses_the_spring_forward_gap() -> None:
    s = Schedule("minute", BERLIN, interval=15)
    slot = s.slot_for(datetime(2025, 3, 30, 3, 0))
    assert s.previous(slot).cyctime == datetime(2025, 3, 30, 1, 45)


def test_no_slot_after_the_end_date() -> None:
    s = Schedule("day", "UTC", end_date=date(2025, 1, 1))
    assert s.next_after(at("202501020000")) is None
    assert s.latest(at("203001010000")).cyctime == datetime(2025, 1, 1)


@pytest.mark.parametrize(
    ("schedule", "sub_daily"),
    [
        (Schedule("minute"), True),
        (Schedule("hour"), True),
        (Schedule("day"), False),
        (Schedule("week", days=(0,)), False),
        (Schedule("month", days=(1,)), False),
        (Schedule("cron", cron="30 2 * * *"), False),
        (Schedule("cron", cron="*/5 * * * *"), True),
        (Schedule("cron", cron="0 1,13 * * *"), True),
        (Schedule("cron", cron="0 0 * * 1"), False),
    ],
)
def test_sub_daily(schedule: Schedule, sub_daily: bool) -> None:
    assert schedule.sub_daily is sub_daily


def test_on_day_gives_the_slots_of_one_business_date() -> None:
    s = Schedule("hour", BERLIN)
    assert len(s.on_day(date(2025, 3, 30))) == 23
    assert len(s.on_day(date(2025, 10, 26))) == 24
    assert len(s.on_day(date(2025, 10, 27))) == 24
