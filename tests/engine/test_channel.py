"""The pieces a task shares or owns: the channel, the rate limiter, the error limit (no timing:
the rate limiter runs on a fake clock)."""

from __future__ import annotations

import threading

import pytest

from tidesync.engine.channel import Cancelled, Channel, RateLimiter
from tidesync.engine.dirty import RecordLimit
from tidesync.errors import ErrorLimitExceeded, FatalError


def test_channel_keeps_order_and_ends() -> None:
    ch = Channel(100, threading.Event())
    for i in range(3):
        ch.put(i, 10)
    ch.close()
    assert [ch.get() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(StopIteration):
        ch.get()


def test_channel_hands_the_producers_error_to_the_consumer_after_the_items() -> None:
    ch = Channel(100, threading.Event())
    ch.put("a", 1)
    ch.close(FatalError("source broke"))
    assert ch.get() == "a"
    with pytest.raises(FatalError, match="source broke"):
        ch.get()


def test_a_full_channel_holds_the_producer_until_the_consumer_takes() -> None:
    ch = Channel(100, threading.Event())
    ch.put("first", 60)
    ch.put("second", 40)  # exactly full
    done = threading.Event()

    def produce() -> None:
        ch.put("third", 1)
        done.set()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    assert not done.wait(0.3)  # still blocked: 101 bytes would not fit
    assert ch.get() == "first"
    assert done.wait(10)
    t.join()


def test_one_item_larger_than_the_channel_still_fits() -> None:
    ch = Channel(10, threading.Event())
    ch.put("huge", 1_000)
    ch.close()
    assert ch.get() == "huge"


def test_cancel_wakes_a_blocked_producer_and_consumer() -> None:
    cancel = threading.Event()
    full, empty = Channel(1, cancel), Channel(1, cancel)
    full.put("x", 1)
    errors: list[BaseException] = []

    def run(fn: object) -> None:
        try:
            fn()  # type: ignore[operator]
        except Cancelled as e:
            errors.append(e)

    threads = [
        threading.Thread(target=run, args=(lambda: full.put("y", 1),)),
        threading.Thread(target=run, args=(empty.get,)),
    ]
    for t in threads:
        t.start()
    cancel.set()
    for t in threads:
        t.join(10)
    assert len(errors) == 2


class Clock:
    """Time that passes only when the limiter sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept = 0.0
        self.lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        with self.lock:
            self.now += s
            self.slept += s


def limiter(
    clock: Clock,
    byte_rate: float | None = None,
    record_rate: float | None = None,
    cancel: threading.Event | None = None,
) -> RateLimiter:
    return RateLimiter(byte_rate, record_rate, cancel or threading.Event(), clock, clock.sleep)


def test_rate_limiter_lets_one_second_of_burst_through_then_paces() -> None:
    clock = Clock()
    rl = limiter(clock, record_rate=1000)
    rl.acquire(1000, 0)  # the first second's worth goes at once
    assert clock.slept == 0
    rl.acquire(500, 0)  # 1500 records are due at 1.5 s, less one second of burst
    assert clock.slept == pytest.approx(0.5)
    rl.acquire(1500, 0)  # 3000 records: 3 s from the start
    assert clock.now - 100.0 == pytest.approx(2.0)


def test_rate_limiter_banks_no_more_than_one_second_while_nothing_is_sent() -> None:
    clock = Clock()
    rl = limiter(clock, record_rate=100, byte_rate=1000)
    clock.now += 60  # the reader's first rows came a minute after the job started
    rl.acquire(1000, 0)  # ten seconds' worth: one second of it goes at once
    # before, the idle minute was banked: 1000 records went at once, ten times the limit
    assert clock.slept == pytest.approx(9.0)
    clock.now += 30
    rl.acquire(0, 5000)  # five seconds of bytes after 30 idle seconds
    assert clock.slept == pytest.approx(13.0)


def test_rate_limiter_takes_the_stricter_of_bytes_and_records() -> None:
    clock = Clock()
    rl = limiter(clock, byte_rate=1000, record_rate=1_000_000)
    rl.acquire(10, 3000)  # bytes: due at 3 s, less the burst
    assert clock.slept == pytest.approx(2.0)


def test_rate_limiter_without_limits_never_waits() -> None:
    clock = Clock()
    rl = limiter(clock)
    for _ in range(100):
        rl.acquire(10**9, 10**12)
    assert clock.slept == 0 and not rl.active


def test_rate_limiter_is_shared_by_every_task_of_the_job() -> None:
    clock = Clock()
    rl = limiter(clock, record_rate=100)
    threads = [threading.Thread(target=rl.acquire, args=(50, 0)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 400 records in all at 100/s, one second of burst: the last waits until 3 s
    assert clock.now - 100.0 >= 3.0 - 1e-9


def test_a_cancelled_job_stops_waiting_for_the_rate_limiter() -> None:
    clock = Clock()
    cancel = threading.Event()
    rl = limiter(clock, record_rate=1, cancel=cancel)

    def sleep(s: float) -> None:
        clock.sleep(s)
        cancel.set()  # the job is cancelled while the task waits

    rl.sleep = sleep
    with pytest.raises(Cancelled):
        rl.acquire(1000, 0)
    assert clock.slept < 1.0


def test_record_limit_counts_across_tasks_and_stops_past_the_limit() -> None:
    lim = RecordLimit(2)
    lim.add("first")
    lim.add("second")
    with pytest.raises(ErrorLimitExceeded, match=r"more than 2 dirty record\(s\).*last: third"):
        lim.add("third")


def test_record_limit_none_counts_without_stopping() -> None:
    lim = RecordLimit(None)
    for i in range(1000):
        lim.add(str(i))
    assert lim.count == 1000


def test_record_limit_holds_under_concurrent_tasks() -> None:
    lim = RecordLimit(999)
    over: list[int] = []

    def add_many() -> None:
        for _ in range(250):
            try:
                lim.add("x")
            except ErrorLimitExceeded:
                over.append(1)

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert lim.count == 1000 and len(over) == 1
