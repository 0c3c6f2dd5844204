"""Time for the archiver: cycles (by system time, aligned in the policy's zone), partition
directories, the recycling bounds, and the clock (injectable, so tests need not wait an hour).

All instants are integer epoch milliseconds. Cycles are half-open, ``[start, end)``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "HOUR_MS",
    "AHEAD_LIMIT_MS",
    "BEHIND_LIMIT_MS",
    "Clock",
    "SystemClock",
    "ScaledClock",
    "ManualClock",
    "Cycles",
    "DirFormat",
    "stamp",
]

HOUR_MS = 3_600_000
#: event time more than this after the system time goes to archive_recycling_<fileName>
AHEAD_LIMIT_MS = HOUR_MS
#: event time more than this before the system time goes there too
BEHIND_LIMIT_MS = 360 * HOUR_MS
_QUARTER_MS = 15 * 60_000  # every UTC offset in use is a multiple of 15 minutes


class Clock:
    """Where the archiver reads the system time."""

    def now_ms(self) -> int:
        raise NotImplementedError


class SystemClock(Clock):
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ScaledClock(Clock):
    """Wall time running ``scale`` times faster from ``origin_ms`` (the same origin across
    restarts gives the same time line): for tests and demonstrations of hour-long cycles."""

    def __init__(self, scale: float, origin_ms: int):
        self.scale, self.origin = scale, origin_ms

    def now_ms(self) -> int:
        real = time.time_ns() // 1_000_000
        return self.origin + int((real - self.origin) * self.scale)


class ManualClock(Clock):
    """A clock the caller sets (tests)."""

    def __init__(self, ms: int):
        self.ms = ms

    def now_ms(self) -> int:
        return self.ms

    def set(self, when: datetime | int) -> None:
        self.ms = when if isinstance(when, int) else to_ms(when)

    def advance(self, ms: int) -> None:
        self.ms += ms


def to_ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError(f"{t} has no time zone")
    return int(t.timestamp() * 1000)


def _local(ms: int, tz: ZoneInfo) -> datetime:
    exact = datetime.fromtimestamp(ms // 1000, UTC) + timedelta(milliseconds=ms % 1000)
    return exact.astimezone(tz)


class Cycles:
    """The cycle an instant falls in: 1 h cycles start at each full hour of ``tz``, 12 h cycles
    at 00:00 and 12:00, 24 h cycles at 00:00 (a day with a DST change is 23 or 25 hours long)."""

    def __init__(self, hours: int, tz: ZoneInfo):
        self.hours, self.tz = hours, tz
        self._last = (0, -1)  # [start, end) of the last answer: arrivals come in order

    def of(self, ms: int) -> tuple[int, int]:
        start, end = self._last
        if start <= ms < end:
            return self._last
        self._last = self._compute(ms)
        return self._last

    def _compute(self, ms: int) -> tuple[int, int]:
        local = _local(ms, self.tz)
        if self.hours == 1:
            start = self._floor_hour(ms)
            end = self._floor_hour(start + HOUR_MS)
            return start, end if end > start else start + HOUR_MS
        floor_hour = local.hour - local.hour % self.hours
        wall = local.replace(hour=floor_hour, minute=0, second=0, microsecond=0, tzinfo=None)
        start = _instant(wall, self.tz)
        if start > ms:  # the wall time fell in a gap and read later: take the earlier reading
            start = _instant(wall, self.tz, fold=1)
        # the next cycle starts at the next aligned wall time, not this start's wall time plus
        # the cycle: where DST skips midnight (Santiago, Havana, the Azores) the day starts at
        # 01:00, and that plus 24 hours ran an hour into the next day's cycle
        end = _instant(wall + timedelta(hours=self.hours), self.tz)
        return start, end if end > start else start + self.hours * HOUR_MS

    def _floor_hour(self, ms: int) -> int:
        local = _local(ms, self.tz)
        return ms - ((local.minute * 60 + local.second) * 1000 + local.microsecond // 1000)

    def name(self, start: int) -> str:
        """``YYYYMMDDHHMM`` of a cycle start in the zone (file names). A start at the second
        occurrence of a wall time that a DST change repeats (Berlin's 02:00 on 2019-10-27, the
        second time) is ``YYYYMMDDHHMM_repeat``: with the same name as the first occurrence's
        cycle, its files replaced the first one's, and their rows were lost."""
        local = _local(start, self.tz)
        text = local.strftime("%Y%m%d%H%M")
        if local.fold and local.replace(fold=0).utcoffset() != local.utcoffset():
            text += "_repeat"
        return text


def _instant(wall: datetime, tz: ZoneInfo, fold: int = 0) -> int:
    return int(wall.replace(tzinfo=tz, fold=fold).timestamp() * 1000)


class DirFormat:
    """The partition directory of an instant (``20190101/00``), cached per quarter hour."""

    def __init__(self, pattern: str, tz: ZoneInfo):
        self.pattern, self.tz = pattern, tz
        self._cache: dict[int, str] = {}

    def __call__(self, ms: int) -> str:
        q = ms // _QUARTER_MS
        d = self._cache.get(q)
        if d is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            d = self._cache[q] = _local(q * _QUARTER_MS, self.tz).strftime(self.pattern)
        return d


def stamp(ms: int, tz: ZoneInfo) -> str:
    """An instant as ``2019-01-01 00:00:00+00:00`` in ``tz`` (log lines, status)."""
    return _local(ms, tz).isoformat(sep=" ", timespec="seconds")
