"""Recognising a message the broker delivers again although the archiver stored it (it was
stored, then the process or the connection died before the broker had the acknowledgement).

- JetStream: each message has its stream sequence. The archiver remembers the sequences it
  stored above the consumer's acknowledgement floor (everything at or below the floor is
  acknowledged and is never delivered again), so a second delivery is recognised exactly.
- MQTT: packet ids are reused, so a redelivery (the DUP flag) is recognised by packet id, topic
  and payload among the last stored messages; the broker has at most Receive Maximum of them
  unacknowledged, and resends only those.

The window survives a restart: it is rebuilt from the log, and kept in the checkpoint when
the log is trimmed.
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import Any

from tidesync.archive.wal import REDELIVERED, Record

__all__ = ["Deduper", "SequenceDeduper", "RecentDeduper", "deduper_for"]


class Deduper:
    #: what the ids count in (the source's ``origin``), None when unknown
    origin: Any = None

    def set_origin(self, origin: Any) -> None:
        """The ids that follow count in ``origin``."""
        self.origin = origin

    def is_copy(self, r: Record) -> bool:
        raise NotImplementedError

    def note(self, r: Record) -> None:
        raise NotImplementedError

    def snapshot(self) -> Any:
        raise NotImplementedError

    def restore(self, state: Any) -> None:
        raise NotImplementedError

    def prune(self, floor: int) -> None:  # noqa: B027 - only sequences have a floor
        pass


class SequenceDeduper(Deduper):
    """Stream sequences stored above the acknowledgement floor."""

    def __init__(self) -> None:
        self.seen: set[int] = set()
        self.floor = 0

    def set_origin(self, origin: Any) -> None:
        """A stream deleted and created again numbers its messages from 1 again: what the old
        one's sequences say about copies no longer holds (its new messages were dropped as
        copies, and acknowledged)."""
        if self.origin is not None and origin is not None and origin != self.origin:
            self.seen.clear()
            self.floor = 0
        self.origin = origin

    def is_copy(self, r: Record) -> bool:
        return r.src_id <= self.floor or r.src_id in self.seen

    def note(self, r: Record) -> None:
        if r.src_id > self.floor:
            self.seen.add(r.src_id)

    def prune(self, floor: int) -> None:
        if floor > self.floor:
            self.floor = floor
            self.seen = {s for s in self.seen if s > floor}

    def snapshot(self) -> Any:
        return {"floor": self.floor, "seen": sorted(self.seen), "origin": self.origin}

    def restore(self, state: Any) -> None:
        self.floor = int(state.get("floor", 0))
        self.seen = {int(s) for s in state.get("seen", [])}
        self.origin = state.get("origin")


class RecentDeduper(Deduper):
    """(packet id, topic and payload checksum) of the last ``size`` stored messages."""

    def __init__(self, size: int):
        self.size = size
        self.recent: deque[tuple[int, int]] = deque()
        self.count: dict[tuple[int, int], int] = {}

    @staticmethod
    def _key(r: Record) -> tuple[int, int]:
        return r.src_id, zlib.crc32(r.payload, zlib.crc32(r.topic.encode()))

    def is_copy(self, r: Record) -> bool:
        return bool(r.flags & REDELIVERED) and self._key(r) in self.count

    def note(self, r: Record) -> None:
        self._add(self._key(r))

    def _add(self, key: tuple[int, int]) -> None:
        self.recent.append(key)
        self.count[key] = self.count.get(key, 0) + 1
        while len(self.recent) > self.size:
            old = self.recent.popleft()
            n = self.count[old] - 1
            if n:
                self.count[old] = n
            else:
                del self.count[old]

    def snapshot(self) -> Any:
        return [list(k) for k in self.recent]

    def restore(self, state: Any) -> None:
        self.recent.clear()
        self.count.clear()
        for pid, crc in state or []:
            self._add((int(pid), int(crc)))


def deduper_for(source: Any) -> Deduper:
    if source.type == "nats":
        return SequenceDeduper()
    return RecentDeduper(max(4096, 4 * source.max_inflight))
