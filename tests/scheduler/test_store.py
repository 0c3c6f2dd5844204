"""The state store, SQLite and PostgreSQL: atomic claims, leases, recovery, kills, reruns."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidesync.errors import ConfigError, FatalError
from tidesync.scheduler.store import (
    NewInstance,
    PostgresStore,
    SqliteStore,
    Store,
    open_store,
    owner_gone,
    this_host,
)

from ._pg import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def opener(kind: str, tmp_path: Path) -> Iterator[type[Store] | object]:
    """A function giving a new Store object (own connections) on one shared database."""
    made: list[Store] = []

    def maker(new: object) -> object:
        def make() -> Store:
            s = new()  # type: ignore[operator]
            made.append(s)
            return s

        return make

    if kind == "sqlite":
        yield maker(lambda: SqliteStore(tmp_path / "scheduler.db"))
    else:
        with fresh_database() as url:
            yield maker(lambda: PostgresStore(url))
            for s in made:
                s.close()
    for s in made:
        s.close()


@pytest.fixture
def store(opener) -> Store:  # type: ignore[no-untyped-def]
    return opener()


def rows(n: int, node: str = "n") -> list[NewInstance]:
    return [
        NewInstance(node, f"20250101{h:02d}0000", "20241231", 1000.0 + h, {"h": str(h)})
        for h in range(n)
    ]


def seed(store: Store, n: int, node: str = "n") -> list[int]:
    store.create(node, rows(n, node), 5000.0, 1.0)
    return [i.id for i in store.listing(node=node)]


def test_creating_twice_adds_nothing_and_the_watermark_only_moves_forward(store: Store) -> None:
    assert store.create("n", rows(3), 5000.0, 1.0) == 3
    assert store.create("n", rows(4), 4000.0, 1.0) == 1
    assert store.marks()["n"] == (1000.0, 5000.0)


def test_many_claimers_get_each_instance_exactly_once(opener) -> None:  # type: ignore[no-untyped-def]
    ids = seed(opener(), 60)
    stores = [opener() for _ in range(6)]
    got: list[list[int]] = [[] for _ in stores]
    barrier = threading.Barrier(len(stores))

    def claimer(k: int) -> None:
        barrier.wait()
        for chunk in range(0, len(ids), 7):
            claimed = stores[k].claim("n", ids[chunk : chunk + 7], f"h:1:{k}", 1.0, 99.0, None)
            got[k].extend(i.id for i in claimed)

    threads = [threading.Thread(target=claimer, args=(k,)) for k in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flat = [i for g in got for i in g]
    assert sorted(flat) == sorted(ids)  # every one claimed, none twice


def test_claim_respects_the_node_concurrency(store: Store) -> None:
    ids = seed(store, 5)
    assert len(store.claim("n", ids[:2], "a", 1.0, 99.0, 3)) == 2
    assert [i.id for i in store.claim("n", ids[2:], "b", 1.0, 99.0, 3)] == [ids[2]]
    assert store.claim("n", ids[3:], "b", 1.0, 99.0, 3) == []


def test_claim_counts_the_attempt_and_sets_the_lease(store: Store) -> None:
    (i,) = store.claim("n", seed(store, 1), "me", 10.0, 70.0, None)
    assert (i.state, i.attempts, i.owner, i.lease_until, i.started_at) == (
        "running",
        1,
        "me",
        70.0,
        10.0,
    )


def test_only_the_owner_can_finish(store: Store) -> None:
    (i,) = store.claim("n", seed(store, 1), "me", 1.0, 99.0, None)
    assert not store.finish(i.id, "someone-else", "succeeded", now=2.0)
    assert store.finish(i.id, "me", "succeeded", now=2.0, report='{"status": "succeeded"}')
    got = store.get(i.id)
    assert (got.state, got.owner, got.finished_at, got.as_dict()["report"]) == (
        "succeeded",
        None,
        2.0,
        {"status": "succeeded"},
    )


def test_heartbeat_renews_leases_and_reports_kills(store: Store) -> None:
    a, b = store.claim("n", seed(store, 2), "me", 1.0, 50.0, None)
    assert store.request_kill(b.id, 2.0) == "requested"
    assert store.heartbeat("me", 200.0, [a.id, b.id]) == {a.id: 0, b.id: 1}
    assert store.get(a.id).lease_until == 200.0


def test_kill_of_a_waiting_instance_cancels_it(store: Store) -> None:
    (i,) = seed(store, 1)
    assert store.request_kill(i, 2.0) == "cancelled"
    assert store.get(i).state == "cancelled"
    assert store.request_kill(i, 3.0) == "cancelled"  # already: nothing changes


def test_expired_lease_is_stale_and_a_live_one_is_not(store: Store) -> None:
    a, b = store.claim("n", seed(store, 2), "otherhost:1:x", 1.0, 100.0, None)
    store.heartbeat("otherhost:1:x", 100.0, [a.id, b.id])
    assert store.stale(99.0, this_host()) == []
    assert {i.id for i in store.stale(101.0, this_host())} == {a.id, b.id}


def test_a_dead_process_on_this_host_is_stale_before_its_lease_ends(store: Store) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    owner = f"{this_host()}:{dead}:abcd"
    assert owner_gone(owner, this_host())
    (i,) = store.claim("n", seed(store, 1), owner, 1.0, 10**12, None)
    assert [s.id for s in store.stale(2.0, this_host())] == [i.id]


def test_recovery_happens_once_and_does_not_count_the_attempt(store: Store) -> None:
    (i,) = store.claim("n", seed(store, 1), "gone:1:x", 1.0, 2.0, None)
    assert store.recover(i, 3.0, "lost") == "waiting"
    assert store.recover(i, 3.0, "lost") is None  # a second recoverer finds nothing to do
    got = store.get(i.id)
    assert (got.state, got.attempts, got.recoveries, got.owner) == ("waiting", 0, 1, None)


def test_recovery_gives_up_after_repeated_interruptions(store: Store) -> None:
    (iid,) = seed(store, 1)
    results = []
    for _ in range(3):
        (i,) = store.claim("n", [iid], "gone:1:x", 1.0, 2.0, None)
        results.append(store.recover(i, 3.0, "lost"))
    assert results == ["waiting", "waiting", "failed"]


def test_recovery_of_a_killed_instance_cancels_it(store: Store) -> None:
    (i,) = store.claim("n", seed(store, 1), "gone:1:x", 1.0, 2.0, None)
    store.request_kill(i.id, 2.0)
    assert store.recover(store.get(i.id), 3.0, "lost") == "cancelled"


def test_rerun_resets_the_attempts_but_not_while_running(store: Store) -> None:
    a, b = store.claim("n", seed(store, 2), "me", 1.0, 99.0, None)
    store.finish(a.id, "me", "failed", now=2.0, error="boom")
    assert store.rerun(a.id) == "failed"
    got = store.get(a.id)
    assert (got.state, got.attempts, got.error) == ("waiting", 0, None)
    assert store.rerun(b.id) == "running"
    assert store.get(b.id).state == "running"


def test_release_puts_it_back_without_counting_the_attempt(store: Store) -> None:
    (i,) = store.claim("n", seed(store, 1), "me", 1.0, 99.0, None)
    assert store.release(i.id, "me", "shutdown")
    got = store.get(i.id)
    assert (got.state, got.attempts, got.error) == ("waiting", 0, "shutdown")


def test_candidates_skip_future_and_retry_later_rows(store: Store) -> None:
    ids = seed(store, 3)  # due at 1000, 1001, 1002
    (i,) = store.claim("n", ids[:1], "me", 1.0, 99.0, None)
    store.finish(i.id, "me", "waiting", now=1.0, next_try_at=2000.0)
    assert [c.id for c in store.candidates(1001.5, 10)] == [ids[1]]
    assert [c.id for c in store.candidates(2000.0, 10)] == ids
    assert store.next_wakeup(1500.0) == 2000.0


def test_sqlite_state_path_is_relative_to_the_project(tmp_path: Path) -> None:
    s = open_store("state/sched.db", tmp_path / ".tidesync")
    assert isinstance(s, SqliteStore) and s.path == tmp_path / "state" / "sched.db"


def test_unknown_state_url_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"state: 'mysql://\*\*\*@h/db' is neither"):
        open_store("mysql://u:secret@h/db", tmp_path)


def test_unreachable_postgresql_names_the_store_without_its_password(tmp_path: Path) -> None:
    with pytest.raises(FatalError) as err:
        open_store("postgresql://u:hunter2@127.0.0.1:1/db", tmp_path)
    assert "cannot reach the PostgreSQL state store" in str(err.value)
    assert "hunter2" not in str(err.value)
