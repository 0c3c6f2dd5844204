"""The archiver of one policy: a source, the write-ahead log, staging, publishing.

Three threads, in a line::

    source thread(s) --deliver--> writer --records, ticks--> processor
                                    |                           |
                          log append + fsync, acks       buckets, publish, trim

The writer stamps each message with the system time (never earlier than the one before),
gives it the next sequence number, drops a redelivered copy of a stored message, and writes
all that waited in one ``write`` + ``fsync``; only then does it acknowledge them. It hands the
records on in order, followed by a tick: a time no later record will be stamped before. The
processor adds records to the bucket of their cycle and publishes a bucket once a tick passes
its cycle's end:

1. finish the staged files; log an *intent* (cycle, first and last sequence number) and sync;
2. place every file (atomically, replacing a same-named file: a redo after a crash is
   identical);
3. log *done* and sync; the cycle's records are now published;
4. once whole segments hold only published records, log a *checkpoint* (published cycles,
   counters, the de-duplication window) and delete those segments.

Recovery reads the log: the last checkpoint and what follows give the published cycles; the
records not published are staged again in order, so an interrupted publish is redone with the
same files.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tidesync.archive.dedupe import Deduper, deduper_for
from tidesync.archive.policy import Policy
from tidesync.archive.sources import Incoming, Source, open_source
from tidesync.archive.stage import Bucket, Output
from tidesync.archive.target import Target
from tidesync.archive.timing import HOUR_MS, Clock, Cycles, SystemClock, stamp
from tidesync.archive.wal import REDELIVERED, Log, Record, encode_data, encode_meta, scan
from tidesync.errors import FatalError, RetriableError, TidesyncError, redact

__all__ = ["Archiver", "Counters", "LogState", "read_state"]

log = logging.getLogger("tidesync.archive")

#: published cycles older than this before the newest are forgotten; a record for one of them
#: (the clock set back by weeks) gets late-file names, which never replace a published file
HORIZON_MS = 40 * 24 * HOUR_MS
_BATCH = 4096  # messages per group commit, at most
_STOP = object()


@dataclass
class Counters:
    messages: int = 0  # stored in the log (copies dropped are not counted)
    rows: int = 0  # archived into partitions
    recycled: int = 0
    dirty: int = 0
    files: int = 0
    bytes: int = 0

    def add(self, d: dict[str, Any]) -> None:
        for k in ("rows", "recycled", "dirty", "files", "bytes"):
            setattr(self, k, getattr(self, k) + int(d.get(k, 0)))


@dataclass
class LogState:
    """What the log says: published cycles (start -> last published sequence number), publish
    intents not yet done, counters, the next sequence number."""

    next_seq: int = 1
    manifest: dict[int, int] = field(default_factory=dict)
    intents: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    horizon: int = 0  # cycles starting before this are forgotten ...
    horizon_seq: int = 0  # ... and their records up to this sequence number published
    counters: Counters = field(default_factory=Counters)
    ckpt_next: int = 0
    dedupe: Any = None
    scheme: dict[str, Any] | None = None  # the settings the log's files were named under
    records: int = 0  # data records in the log

    def apply(self, meta: dict[str, Any]) -> None:
        k = meta.get("k")
        if meta.get("scheme") is not None:
            self.scheme = meta["scheme"]
        if k == "ckpt":
            self.manifest = {int(c): int(t) for c, t in meta["manifest"].items()}
            self.intents = {(int(i["cycle"]), int(i["through"])): i for i in meta["intents"]}
            self.horizon = int(meta["horizon"])
            self.counters = Counters(**meta["counters"])
            self.ckpt_next = self.next_seq = int(meta["next_seq"])
            # a checkpoint written before horizon_seq: what was logged before it
            self.horizon_seq = int(meta.get("horizon_seq", self.ckpt_next - 1))
            self.dedupe = meta["dedupe"]
        elif k == "intent":
            self.intents[(int(meta["cycle"]), int(meta["through"]))] = meta
        elif k == "done":
            cycle, through = int(meta["cycle"]), int(meta["through"])
            self.intents.pop((cycle, through), None)
            self.manifest[cycle] = max(self.manifest.get(cycle, 0), through)
            self.counters.add(meta)

    def published(self, cycle: int, seq: int) -> bool:
        """Whether record ``seq`` of ``cycle`` is in a published file. A forgotten cycle's
        records logged after it was forgotten (the clock set back by weeks) are not: they wait
        for their late file, and a restart before it must stage them again."""
        if seq <= self.manifest.get(cycle, 0):
            return True
        return cycle < self.horizon and seq <= self.horizon_seq

    def had_publish(self, cycle: int) -> bool:
        return (
            cycle < self.horizon
            or cycle in self.manifest
            or any(c == cycle for c, _ in self.intents)
        )

    def prune(self) -> None:
        if self.manifest:
            floor = max(self.manifest) - HORIZON_MS
            if floor > self.horizon:
                self.horizon = floor
                gone = [t for c, t in self.manifest.items() if c < floor]
                self.horizon_seq = max([self.horizon_seq, *gone])
                self.manifest = {c: t for c, t in self.manifest.items() if c >= floor}


def read_state(folder: Path, dedupe: Deduper | None = None, repair: bool = False) -> LogState:
    """Pass one over the log: published cycles, intents, counters, the next sequence number
    (and the de-duplication window, into ``dedupe``)."""
    st = LogState()
    for rec in scan(folder, repair=repair):
        if isinstance(rec, dict):
            st.apply(rec)
            if rec.get("k") == "ckpt" and dedupe is not None:
                dedupe.restore(rec["dedupe"])
            elif rec.get("k") == "origin" and dedupe is not None:
                dedupe.set_origin(rec["origin"])
            continue
        st.next_seq = max(st.next_seq, rec.seq + 1)
        st.records += 1
        if rec.seq >= st.ckpt_next:
            st.counters.messages += 1
            if dedupe is not None:
                dedupe.note(rec)
    return st


@dataclass
class _Tick:
    at: int


class Archiver:
    """One policy, run: ``open()`` (lock, recover, redo), ``start()``, ``stop()``."""

    def __init__(
        self,
        policy: Policy,
        connections: dict[str, dict[str, Any]] | None = None,
        base_dir: Path | None = None,
        clock: Clock | None = None,
        segment_bytes: int | None = None,
    ):
        self.policy = policy
        self.clock = clock or SystemClock()
        self.cycles = Cycles(policy.cycle_hours, policy.tz)
        self.folder = policy.log_path
        self.stage = self.folder / "stage"
        self.connections = connections or {}
        self.base_dir = base_dir or Path.cwd()
        self.segment_bytes = segment_bytes or policy.log_segment_bytes
        self.dedupe = deduper_for(policy.source)
        self.state = LogState()
        self.buckets: dict[int, Bucket] = {}  # open buckets by cycle start
        self.pending: list[tuple[Bucket, list[Output], bool]] = []  # finished, not yet placed
        self.inq: queue.Queue[Any] = queue.Queue(maxsize=_BATCH * 4)
        self.procq: queue.Queue[Any] = queue.Queue(maxsize=64)
        self.failure: BaseException | None = None
        self.source: Source | None = None
        self.log: Log | None = None
        self.target: Target | None = None
        self.duplicates = 0
        self.received = 0
        self.last_message = time.monotonic()
        self.intake = threading.Event()
        self._lock_fd = -1
        self._threads: list[threading.Thread] = []
        self._last_stamp = 0
        self.log_lock = threading.Lock()
        self.processed = 0  # the last sequence number staged
        self.floor_seen = 0
        self.last_tick = 0  # the latest tick the processor has acted on
        self._retry_at = 0.0
        self._backoff = 1.0

    # -- opening and recovery -------------------------------------------------------------------

    def open(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        self.target = Target(self.policy, self.connections, self.base_dir)
        st = read_state(self.folder, self.dedupe, repair=True)
        self.state = st
        if st.scheme is not None and st.scheme != self.scheme and st.records:
            changed = ", ".join(k for k in self.scheme if st.scheme.get(k) != self.scheme[k])
            self.close()
            raise FatalError(
                f"policy {self.policy.name}: {changed} changed while its log {self.folder} "
                f"still holds {st.records} messages archived under the old settings; run it once "
                "more with the old settings and --close-open-cycles (which empties the log), "
                "then change them"
            )
        shutil.rmtree(self.stage, ignore_errors=True)
        self.log = Log(self.folder, st.next_seq, self.segment_bytes)
        self.processed = st.next_seq - 1
        if st.scheme != self.scheme:
            self._meta({"k": "scheme"})  # what the records that follow are archived under
        intent_buckets: dict[tuple[int, int], Bucket] = {}
        replayed = 0
        for rec in scan(self.folder):
            if isinstance(rec, dict):
                continue
            cycle, end = self.cycles.of(rec.arrival)
            if st.published(cycle, rec.seq):
                continue
            replayed += 1
            key = next(
                (
                    k
                    for k, i in st.intents.items()
                    if k[0] == cycle and i["first"] <= rec.seq <= k[1]
                ),
                None,
            )
            if key is not None:
                b = intent_buckets.get(key)
                if b is None:
                    i = st.intents[key]
                    b = intent_buckets[key] = self._bucket(cycle, end, rec.seq, i.get("tag"))
                b.add(rec)
            else:
                self._open_bucket(rec, cycle, end).add(rec)
        for _key, b in sorted(intent_buckets.items()):
            self.pending.append((b, b.finish(), True))
        if replayed or st.intents:
            log.info(
                "policy %s: recovered %d unpublished messages from the log (%d publishes to redo)",
                self.policy.name,
                replayed,
                len(st.intents),
            )
        self._place_pending()

    def _lock(self) -> None:
        fd = os.open(self.folder / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise FatalError(
                f"policy {self.policy.name}: its log {self.folder} is in use by another "
                "tidesync archive run"
            ) from None
        self._lock_fd = fd

    def _bucket(self, cycle: int, end: int, first: int, tag: str | None) -> Bucket:
        return Bucket(self.policy, self.cycles, self.stage, cycle, end, first, tag)

    def _open_bucket(self, rec: Record, cycle: int, end: int) -> Bucket:
        b = self.buckets.get(cycle)
        if b is None:
            late = self.state.had_publish(cycle) or any(p[0].cycle == cycle for p in self.pending)
            b = self.buckets[cycle] = self._bucket(
                cycle, end, rec.seq, f"late{rec.seq}" if late else None
            )
        return b

    # -- running --------------------------------------------------------------------------------

    def start(self, source: Source | None = None) -> None:
        self.intake.set()
        for name, fn in (("writer", self._write_loop), ("processor", self._process_loop)):
            t = threading.Thread(
                target=self._guard,
                args=(fn,),
                name=f"archive-{name}-{self.policy.name}",
                daemon=True,
            )
            t.start()
            self._threads.append(t)
        self.source = source or open_source(self.policy.source, self.policy.name)
        self.source.start(self._deliver)

    def _guard(self, fn: Any) -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - the service stops on it
            if self.failure is None:
                self.failure = e
            log.error("policy %s: %s", self.policy.name, redact(str(e)))
            self.intake.clear()
            with contextlib.suppress(queue.Full):
                self.procq.put_nowait(_STOP)

    def _deliver(self, item: Incoming | list[Incoming]) -> None:
        """Called by the source's thread; blocks while the log is behind."""
        while self.intake.is_set():
            try:
                self.inq.put(item, timeout=0.2)
                self.last_message = time.monotonic()
                return
            except queue.Full:
                continue
        # stopping: not acknowledged, so the broker delivers it again

    def _write_loop(self) -> None:
        assert self.log is not None
        while True:
            try:
                first = self.inq.get(timeout=0.1)
            except queue.Empty:
                self._hand(_Tick(self._now()))
                continue
            items = [first]
            n = len(first) if isinstance(first, list) else 1
            while n < _BATCH:
                try:
                    it = self.inq.get_nowait()
                except queue.Empty:
                    break
                items.append(it)
                n += len(it) if isinstance(it, list) else 1
            stop = any(it is _STOP for it in items)
            chunks: list[bytes] = []
            handles: list[Any] = []
            records: list[Record] = []
            # under the log lock, so a checkpoint sees every numbered record written
            with self.log_lock:
                for it in items:
                    if it is _STOP:
                        continue
                    for m in it if isinstance(it, list) else [it]:
                        self._take(m, chunks, handles, records)
                if chunks:
                    try:
                        self.log.append(chunks, self.state.next_seq)
                    except OSError as e:
                        raise FatalError(
                            f"policy {self.policy.name}: cannot write the log {self.folder}: {e}"
                        ) from e
            if handles and self.source is not None:
                self.source.ack(handles)
            if records:
                self._hand(records)
            self._hand(_Tick(self._now()))
            if stop:
                self._hand(_STOP)
                return

    def _hand(self, item: Any) -> None:
        """Pass on to the processor; give up when it has failed (what is logged is safe)."""
        while self.failure is None:
            try:
                self.procq.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _now(self) -> int:
        t = max(self._last_stamp, self.clock.now_ms())
        self._last_stamp = t
        return t

    def _take(
        self, m: Incoming, chunks: list[bytes], handles: list[Any], records: list[Record]
    ) -> None:
        handles.append(m.handle)
        origin = self.source.origin if self.source is not None else None
        if origin is not None and origin != self.dedupe.origin:
            if self.dedupe.origin is not None:
                log.warning(
                    "policy %s: the source was created again (%s, before %s): its message "
                    "ids start over",
                    self.policy.name,
                    origin,
                    self.dedupe.origin,
                )
                self.floor_seen = 0
            self.dedupe.set_origin(origin)  # logged before the records that follow
            chunks.append(encode_meta({"k": "origin", "origin": origin, "scheme": self.scheme}))
        if self.source is not None and self.source.floor > self.floor_seen:
            self.floor_seen = self.source.floor
            self.dedupe.prune(self.floor_seen)
        r = Record(0, 0, REDELIVERED if m.redelivered else 0, m.src_id, m.topic, m.payload)
        if self.dedupe.is_copy(r):
            self.duplicates += 1
        else:
            r.seq = self.state.next_seq
            self.state.next_seq += 1
            r.arrival = self._now()
            self.dedupe.note(r)
            self.state.counters.messages += 1
            chunks.append(encode_data(r))
            records.append(r)
        self.received += 1  # last: a test that saw it may move the clock

    def _process_loop(self) -> None:
        while True:
            try:
                item = self.procq.get(timeout=0.2)
            except queue.Empty:
                if self.failure is not None:
                    return
                continue
            if item is _STOP:
                return
            if isinstance(item, _Tick):
                self._tick(item.at)
                continue
            for r in item:
                cycle, end = self.cycles.of(r.arrival)
                self._open_bucket(r, cycle, end).add(r)
                self.processed = r.seq

    def _tick(self, now: int, close_all: bool = False) -> None:
        self.last_tick = max(self.last_tick, now)
        for cycle in sorted(self.buckets):
            b = self.buckets[cycle]
            if close_all or b.end <= now:
                self.pending.append((b, b.finish(), False))
                del self.buckets[cycle]
        if self.pending and time.monotonic() >= self._retry_at:
            self._place_pending()

    def _place_pending(self) -> None:
        while self.pending:
            b, outputs, intent_logged = self.pending[0]
            try:
                if not intent_logged:
                    self._meta(
                        {
                            "k": "intent",
                            "cycle": b.cycle,
                            "end": b.end,
                            "tag": b.tag,
                            "first": b.first_seq,
                            "through": b.last_seq,
                        }
                    )
                    self.pending[0] = (b, outputs, True)
                assert self.target is not None
                for o in outputs:
                    self.target.place(o)
            except RetriableError as e:
                log.warning(
                    "policy %s: publishing failed (%s); retrying in %.0f s",
                    self.policy.name,
                    e,
                    self._backoff,
                )
                self._retry_at = time.monotonic() + self._backoff
                self._backoff = min(60.0, self._backoff * 2)
                return
            done = {
                "k": "done",
                "cycle": b.cycle,
                "tag": b.tag,
                "through": b.last_seq,
                "rows": b.rows,
                "recycled": b.recycled,
                "dirty": b.dirty,
                "files": len(outputs),
                "bytes": sum(o.bytes for o in outputs),
                "messages": b.messages,
            }
            self._meta(done)
            self.state.apply(done)
            self.pending.pop(0)
            b.discard()
            self._backoff = 1.0
            log.info(
                "policy %s: published cycle %s%s: %d messages, %d rows, %d recycled, %d dirty, "
                "%d files",
                self.policy.name,
                stamp(b.cycle, self.policy.tz),
                f" ({b.tag})" if b.tag else "",
                b.messages,
                b.rows,
                b.recycled,
                b.dirty,
                len(outputs),
            )
            self._maybe_trim()

    @property
    def scheme(self) -> dict[str, Any]:
        """The settings that decide which file a record goes to."""
        p = self.policy
        return {
            "cycle": p.cycle_hours,
            "timezone": p.timezone,
            "generateBy": p.generate_by,
            "pathFormat": p.path_format,
            "target.path": p.target.path,
            "target.fileName": p.target.file_name,
            "target.format": p.target.format,
            "target.maxFileSize": p.target.max_file_size,
        }

    def _meta(self, obj: dict[str, Any]) -> None:
        """Log a meta record and sync it (a checkpoint: then trim below ``trim_below``)."""
        assert self.log is not None
        obj["scheme"] = self.scheme
        with self.log_lock:
            if obj.get("k") == "ckpt":
                obj["next_seq"] = self.state.next_seq
                obj["dedupe"] = self.dedupe.snapshot()
                obj["counters"] = {**obj["counters"], "messages": self.state.counters.messages}
            try:
                written = self.log.append([encode_meta(obj)], self.state.next_seq)
                if obj.get("k") == "ckpt":
                    self.log.trim(int(obj["trim_below"]), keep=written)
            except OSError as e:
                raise FatalError(
                    f"policy {self.policy.name}: cannot write the log {self.folder}: {e}"
                ) from e

    def _maybe_trim(self, empty: bool = False) -> None:
        """Checkpoint and delete the segments that hold only published records; with ``empty``
        (nothing open) start a new segment first, so that no record stays."""
        assert self.log is not None
        firsts = [b.first_seq for b in self.buckets.values()]
        firsts += [p[0].first_seq for p in self.pending]
        below = min(firsts) if firsts else self.processed + 1
        from tidesync.archive.wal import segments

        if empty and not firsts and self.log.size:
            with self.log_lock:
                self.log.roll(self.state.next_seq)
        segs = segments(self.folder)
        if len(segs) < 2 or segs[1][0] > below:
            return
        self.state.prune()
        self._meta(
            {
                "k": "ckpt",
                "manifest": {str(c): t for c, t in self.state.manifest.items()},
                "intents": list(self.state.intents.values()),
                "horizon": self.state.horizon,
                "horizon_seq": self.state.horizon_seq,
                "counters": self.state.counters.__dict__,
                "trim_below": below,
            }
        )

    # -- stopping -------------------------------------------------------------------------------

    def stop(self, close_open_cycles: bool = False) -> None:
        """Stop taking messages, write and acknowledge what came, then (with
        ``close_open_cycles``) publish the open cycles as if they had ended."""
        self.intake.clear()
        writer = self._threads[0] if self._threads else None
        if writer is not None and writer.is_alive():
            while self.failure is None:
                try:
                    self.inq.put(_STOP, timeout=0.2)
                    break
                except queue.Full:
                    continue
            while writer.is_alive() and self.failure is None:
                writer.join(0.2)
        if self.source is not None:
            self.source.stop()
        for t in self._threads[1:]:
            t.join(None if self.failure is None else 5)
        if self.failure is None and close_open_cycles:
            self._tick(0, close_all=True)
            if self.pending:
                self._retry_at = 0
                self._place_pending()
            if not self.pending:
                self._maybe_trim(empty=True)
        self.close()

    def close(self) -> None:
        for b in self.buckets.values():
            b.discard()
        for b, _, _ in self.pending:
            b.discard()
        if self.log is not None:
            self.log.close()
            self.log = None
        shutil.rmtree(self.stage, ignore_errors=True)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- looking in -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return status_of(self.policy, self.state.counters, self.log_bytes(), self.oldest_open())

    def log_bytes(self) -> int:
        from tidesync.archive.wal import segments

        return sum(p.stat().st_size for _, p in segments(self.folder) if p.exists())

    def oldest_open(self) -> int | None:
        cycles = [b.cycle for b in self.buckets.values()] + [p[0].cycle for p in self.pending]
        return min(cycles) if cycles else None

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """True once every message delivered so far is in the log and staged (tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.inq.empty() and self.procq.empty():
                return True
            time.sleep(0.01)
        return False


def status_of(policy: Policy, c: Counters, log_bytes: int, oldest: int | None) -> dict[str, Any]:
    return {
        "policy": policy.name,
        "messages": c.messages,
        "rows": c.rows,
        "recycled": c.recycled,
        "dirty": c.dirty,
        "files": c.files,
        "oldest_unpublished_cycle": None if oldest is None else stamp(oldest, policy.tz),
        "log_bytes": log_bytes,
    }


def offline_status(policy: Policy) -> dict[str, Any]:
    """What the log of a policy says, read without taking it (the service may be running)."""
    folder = policy.log_path
    if not folder.exists():
        return status_of(policy, Counters(), 0, None)
    st = read_state(folder)
    cycles = Cycles(policy.cycle_hours, policy.tz)
    oldest = None
    for rec in _records(folder):
        cycle, _ = cycles.of(rec.arrival)
        if not st.published(cycle, rec.seq) and (oldest is None or cycle < oldest):
            oldest = cycle
    from tidesync.archive.wal import segments

    size = 0
    for _, p in segments(folder):
        with contextlib.suppress(FileNotFoundError):
            size += p.stat().st_size
    return status_of(policy, st.counters, size, oldest)


def _records(folder: Path) -> Iterator[Record]:
    for rec in scan(folder):
        if isinstance(rec, Record):
            yield rec


__all__ += ["offline_status", "TidesyncError"]
