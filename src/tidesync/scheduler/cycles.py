"""Cycles: when a node runs, as wall-clock times in a named time zone.

A :class:`Schedule` turns days into *slots*. A slot's ``cyctime`` is the naive wall-clock time
the instance runs for (what ``$[hh24mi]`` formats); its ``at`` is the UTC instant it becomes due.

Kinds (``every``)::

    minute   every N minutes from ``start`` to ``end`` (times of day, both included)
    hour     every N hours from ``start`` to ``end``, both included
    day      once a day at ``at``
    week     at ``at`` on ``days`` (mon..sun, or 1..7 with 1 = Monday)
    month    at ``at`` on ``days`` (1..31, ``last``); a day the month lacks is not a slot
    cron     a five-field cron expression, matched against wall-clock time

Daylight saving time, one rule for every kind:

* A wall time that does not exist (the clock jumps from 02:00 to 03:00) moves forward by the
  length of the gap: a daily 02:30 runs at 03:30 that day. If the moved time is already a slot,
  the two are one slot: an every-15-minutes schedule simply has no 02:00..02:45 that night.
* A wall time that occurs twice (the clock goes back from 03:00 to 02:00) is one slot, due at
  its first occurrence. ``cyctime`` identifies an instance, so there is never a second 02:15.

``start_date`` / ``end_date`` bound the days (of the slot's wall time) on which slots exist.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["KINDS", "Schedule", "Slot", "wall_to_instant", "wall_text", "instant_text"]

KINDS = ("minute", "hour", "day", "week", "month", "cron")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
LAST_DAY = -1
_SEARCH_DAYS = 366 * 8 + 2  # the rarest cron slot (29 February) recurs within 8 years


@dataclass(frozen=True, order=True)
class Slot:
    """One scheduled time: the instant it is due (UTC) and its wall-clock cyctime."""

    at: datetime  # aware, UTC
    cyctime: datetime  # naive wall time in the schedule's zone

    @property
    def bizdate(self) -> date:
        return self.cyctime.date() - timedelta(days=1)

    @property
    def key(self) -> str:
        return self.cyctime.strftime("%Y%m%d%H%M%S")


def wall_to_instant(wall: datetime, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """(the wall time as it really occurs, its UTC instant), by the module's DST rule.

    zoneinfo reads a nonexistent time with the offset in force before the gap, so the round
    trip lands the gap's length later; an ambiguous time reads as its first occurrence (fold 0).
    """
    instant = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    return instant.astimezone(tz).replace(tzinfo=None), instant


def wall_text(wall: datetime, tz: ZoneInfo) -> str:
    """A wall time of ``tz`` with its UTC offset: ``2019-11-06 00:15:00+08:00``."""
    return wall_to_instant(wall, tz)[1].astimezone(tz).isoformat(sep=" ", timespec="seconds")


def instant_text(instant: datetime | float, tz: ZoneInfo) -> str:
    """An instant (aware, or epoch seconds) as ``tz``'s wall time with the UTC offset."""
    if not isinstance(instant, datetime):
        instant = datetime.fromtimestamp(instant, UTC)
    return instant.astimezone(tz).isoformat(sep=" ", timespec="seconds")


@dataclass(frozen=True)
class Schedule:
    kind: str
    timezone: str = "UTC"
    interval: int = 1
    start: time = time(0, 0)
    end: time = time(23, 59, 59)
    at: time = time(0, 0)
    days: tuple[int, ...] = ()  # week: 0 = Monday .. 6; month: 1..31 or LAST_DAY
    cron: str | None = None
    start_date: date | None = None
    end_date: date | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def sub_daily(self) -> bool:
        """Whether the schedule may fire more than once on a day."""
        if self.kind in ("minute", "hour"):
            return True
        if self.kind == "cron":
            return _cron_sub_daily(self.cron or "")
        return False

    def describe(self) -> str:
        """A short human line: ``every 15 minutes 00:00-23:59 (Asia/Shanghai)``."""
        hm = "%H:%M"
        if self.kind == "minute":
            what = (
                f"every {self.interval} minute{'s' if self.interval > 1 else ''} "
                f"{self.start.strftime(hm)}-{self.end.strftime(hm)}"
            )
        elif self.kind == "hour":
            what = (
                f"every {self.interval} hour{'s' if self.interval > 1 else ''} "
                f"{self.start.strftime(hm)}-{self.end.strftime(hm)}"
            )
        elif self.kind == "day":
            what = f"daily at {_hms(self.at)}"
        elif self.kind == "week":
            what = f"weekly on {','.join(WEEKDAYS[d] for d in self.days)} at {_hms(self.at)}"
        elif self.kind == "month":
            names = ",".join("last" if d == LAST_DAY else str(d) for d in self.days)
            what = f"monthly on day {names} at {_hms(self.at)}"
        else:
            what = f"cron '{self.cron}'"
        bounds = ""
        if self.start_date or self.end_date:
            bounds = f" from {self.start_date or '-'} to {self.end_date or '-'}"
        return f"{what} ({self.timezone}){bounds}"

    # -- nominal times of one day -------------------------------------------------------------

    def _nominal(self, day: date) -> Iterator[datetime]:
        """The wall times the schedule names on ``day``, before the DST rule."""
        midnight = datetime.combine(day, time(0))
        if self.kind in ("minute", "hour"):
            step = (
                timedelta(minutes=self.interval)
                if self.kind == "minute"
                else timedelta(hours=self.interval)
            )
            t = datetime.combine(day, self.start)
            last = datetime.combine(day, self.end)
            while t <= last:
                yield t
                t += step
        elif self.kind == "day":
            yield datetime.combine(day, self.at)
        elif self.kind == "week":
            if day.weekday() in self.days:
                yield datetime.combine(day, self.at)
        elif self.kind == "month":
            last_dom = (day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
            if day.day in self.days or (LAST_DAY in self.days and day == last_dom):
                yield datetime.combine(day, self.at)
        else:
            from croniter import croniter

            it = croniter(self.cron or "", midnight - timedelta(seconds=1))
            while True:
                t = it.get_next(datetime)
                if t.date() != day:
                    return
                yield t

    def _valid(self, day: date) -> bool:
        return (self.start_date is None or day >= self.start_date) and (
            self.end_date is None or day <= self.end_date
        )

    def _day_slots(self, day: date, *, bounded: bool = True) -> list[Slot]:
        """Slots whose nominal wall time falls on ``day`` (after the DST rule, deduplicated)."""
        tz = self.tz
        out: dict[datetime, Slot] = {}
        for nominal in self._nominal(day):
            wall, instant = wall_to_instant(nominal, tz)
            if bounded and not self._valid(wall.date()):
                continue
            out.setdefault(wall, Slot(instant, wall))
        return sorted(out.values())

    # -- queries ------------------------------------------------------------------------------

    def between(self, lo: datetime, hi: datetime, *, include_lo: bool = False) -> list[Slot]:
        """Slots due in ``(lo, hi]`` (``[lo, hi]`` with ``include_lo``); aware instants."""
        tz = self.tz
        first = lo.astimezone(tz).date() - timedelta(days=1)
        last = hi.astimezone(tz).date() + timedelta(days=1)
        if self.start_date:
            first = max(first, self.start_date - timedelta(days=1))
        if self.end_date:
            last = min(last, self.end_date + timedelta(days=1))
        seen: dict[datetime, Slot] = {}
        day = first
        while day <= last:
            for s in self._day_slots(day):
                if (lo < s.at or (include_lo and s.at == lo)) and s.at <= hi:
                    seen.setdefault(s.cyctime, s)
            day += timedelta(days=1)
        return sorted(seen.values())

    def iter_after(self, lo: datetime, hi: datetime) -> Iterator[list[Slot]]:
        """``between(lo, hi)`` a week at a time, so a long catch-up stays small in memory."""
        step = timedelta(days=7)
        a = lo
        while a < hi:
            b = min(a + step, hi)
            yield self.between(a, b)
            a = b

    def on_day(self, day: date, *, bounded: bool = True) -> list[Slot]:
        """Slots whose cyctime's wall date is ``day`` (the slots of business date ``day - 1``)."""
        out = {
            s.cyctime: s
            for d in (day - timedelta(days=1), day)
            for s in self._day_slots(d, bounded=bounded)
            if s.cyctime.date() == day
        }
        return sorted(out.values())

    def latest(self, instant: datetime) -> Slot | None:
        """The last slot due at or before ``instant``."""
        day = instant.astimezone(self.tz).date() + timedelta(days=1)
        if self.end_date:
            day = min(day, self.end_date + timedelta(days=1))
        floor = max(day - timedelta(days=_SEARCH_DAYS), self.start_date or date.min)
        while day >= floor:
            cands = [s for s in self._day_slots(day) if s.at <= instant]
            if cands:
                return cands[-1]
            day -= timedelta(days=1)
        return None

    def nth_latest(
        self, lo: datetime, hi: datetime, n: int, *, include_lo: bool = False
    ) -> Slot | None:
        """The ``n``-th latest slot due in ``(lo, hi]`` (``[lo, hi]`` with ``include_lo``), or
        the earliest there when there are fewer; walks back from ``hi``, a day at a time."""
        tz = self.tz
        day = hi.astimezone(tz).date() + timedelta(days=1)
        if self.end_date:
            day = min(day, self.end_date + timedelta(days=1))
        floor = lo.astimezone(tz).date() - timedelta(days=1)
        if self.start_date:
            floor = max(floor, self.start_date - timedelta(days=1))
        seen: dict[datetime, Slot] = {}
        enough_at: date | None = None
        while day >= floor:
            for s in self._day_slots(day):
                if (lo < s.at or (include_lo and s.at == lo)) and s.at <= hi:
                    seen.setdefault(s.cyctime, s)
            if enough_at is None and len(seen) >= n:
                enough_at = day
            elif enough_at is not None:
                break  # one day more: a DST shift may move a slot across midnight
            day -= timedelta(days=1)
        if not seen:
            return None
        ordered = sorted(seen.values())
        return ordered[-n] if len(ordered) >= n else ordered[0]

    def max_per_day(self) -> int:
        """An upper bound of the slots on one day (for sizing a range without walking it)."""
        if self.kind in ("minute", "hour"):
            step = self.interval * (60 if self.kind == "minute" else 3600)
            span = (
                datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)
            ).total_seconds()
            return int(span // step) + 2  # +1 for a DST day's moved slot
        if self.kind == "cron":
            from croniter import croniter

            minutes, hours = croniter(self.cron or "").expanded[:2]
            per_hour = 60 if "*" in minutes else len(minutes)
            return per_hour * (24 if "*" in hours else len(hours)) + 1
        return 2

    def previous(self, slot: Slot) -> Slot | None:
        """The slot before ``slot`` (``None`` before the first)."""
        return self.latest(slot.at - timedelta(microseconds=1))

    def next_after(self, instant: datetime) -> Slot | None:
        """The first slot due strictly after ``instant``."""
        day = instant.astimezone(self.tz).date() - timedelta(days=1)
        if self.start_date:
            day = max(day, self.start_date - timedelta(days=1))
        ceiling = day + timedelta(days=_SEARCH_DAYS)
        if self.end_date:
            ceiling = min(ceiling, self.end_date + timedelta(days=1))
        while day <= ceiling:
            for s in self._day_slots(day):
                if s.at > instant:
                    return s
            day += timedelta(days=1)
        return None

    def slot_for(self, cyctime: datetime) -> Slot:
        """The slot of an instance's cyctime (its instant by the DST rule)."""
        wall, instant = wall_to_instant(cyctime, self.tz)
        return Slot(instant, wall)


@functools.lru_cache(maxsize=256)
def _cron_sub_daily(expr: str) -> bool:
    from croniter import croniter

    minutes, hours = croniter(expr).expanded[:2]
    return len(minutes) > 1 or len(hours) > 1 or "*" in (minutes[0], hours[0])


def _hms(t: time) -> str:
    return t.strftime("%H:%M:%S" if t.second else "%H:%M")
