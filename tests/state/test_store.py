"""The state store protocol, on SQLite and on PostgreSQL: values, versions, compare-and-set
under concurrent writers, listing and deleting by namespace and key, where the store is."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.scheduler._pg import fresh_database
from tidesync.errors import ConfigError
from tidesync.state import Location, StateStore, locate, open_state
from tidesync.state.postgresql import PostgresState
from tidesync.state.sqlite import SqliteState

Opener = Callable[[], StateStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function giving a new store object (connections of its own) on one shared database."""
    made: list[StateStore] = []
    if request.param == "sqlite":

        def make() -> StateStore:
            made.append(SqliteState(tmp_path / "state.db"))
            return made[-1]

        yield make
    else:
        with fresh_database("ts_state") as url:

            def make() -> StateStore:
                made.append(PostgresState(url))
                return made[-1]

            yield make
            for s in made:
                s.close()
    for s in made:
        s.close()


def test_put_get_counts_versions_and_keeps_json(opener: Opener) -> None:
    s = opener()
    assert s.get("cursor", "a") is None
    assert s.put("cursor", "a", {"value": "2016-11-14 10:00:00", "n": [1, 2.5, None]}) == 1
    assert s.put("cursor", "a", {"value": "2016-11-15 00:00:00"}) == 2
    e = s.get("cursor", "a")
    assert e is not None
    assert (e.ns, e.key, e.value, e.version) == ("cursor", "a", {"value": "2016-11-15 00:00:00"}, 2)
    assert opener().get("cursor", "a") == e  # another connection sees it


def test_a_value_json_cannot_hold_is_refused(opener: Opener) -> None:
    s = opener()
    with pytest.raises(ValueError, match="must be JSON"):
        s.put("cursor", "a", {"at": object()})
    assert s.get("cursor", "a") is None


def test_compare_and_set_writes_only_over_the_version_it_expects(opener: Opener) -> None:
    s = opener()
    assert s.compare_and_set("cdc", "slot", 0, {"lsn": "0/10"}) == 1
    assert s.compare_and_set("cdc", "slot", 0, {"lsn": "0/20"}) is None  # it exists now
    assert s.compare_and_set("cdc", "slot", 1, {"lsn": "0/30"}) == 2
    assert s.compare_and_set("cdc", "slot", 1, {"lsn": "0/40"}) is None  # stale
    e = s.get("cdc", "slot")
    assert e is not None and (e.value, e.version) == ({"lsn": "0/30"}, 2)


def test_two_writers_racing_from_one_version_only_one_advances_it(opener: Opener) -> None:
    a, b = opener(), opener()
    a.put("archive", "iot", {"offset": 0})
    wins: list[tuple[int, int | None]] = []
    for rnd in range(10):
        ea, eb = a.get("archive", "iot"), b.get("archive", "iot")
        assert ea is not None and eb is not None and ea.version == eb.version
        go = threading.Barrier(2)
        got: dict[str, int | None] = {}

        def advance(
            name: str,
            store: StateStore,
            version: int,
            go: threading.Barrier = go,
            got: dict[str, int | None] = got,
            rnd: int = rnd,
        ) -> None:
            go.wait()
            got[name] = store.compare_and_set(
                "archive", "iot", version, {"offset": rnd, "by": name}
            )

        ts = [
            threading.Thread(target=advance, args=("a", a, ea.version)),
            threading.Thread(target=advance, args=("b", b, eb.version)),
        ]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        winners = [n for n, v in got.items() if v is not None]
        assert len(winners) == 1, got
        e = a.get("archive", "iot")
        assert e is not None and e.value == {"offset": rnd, "by": winners[0]}
        wins.append((ea.version, got[winners[0]]))
    assert all(new == old + 1 for old, new in wins)


def test_concurrent_increments_by_compare_and_set_lose_nothing(opener: Opener) -> None:
    stores = [opener(), opener()]
    stores[0].put("counter", "n", 0)
    done = [0, 0]

    def bump(i: int) -> None:
        s = stores[i]
        while done[i] < 25:
            e = s.get("counter", "n")
            assert e is not None
            if s.compare_and_set("counter", "n", e.version, e.value + 1) is not None:
                done[i] += 1

    ts = [threading.Thread(target=bump, args=(i,)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    e = stores[1].get("counter", "n")
    assert e is not None and (e.value, e.version) == (50, 51)


def test_list_and_delete_by_namespace_key_and_prefix(opener: Opener) -> None:
    s = opener()
    for ns, key in [
        ("positions", "jobs/a.json#0"),
        ("positions", "jobs/a.json#1"),
        ("positions", "jobs/b.json#0"),
        ("archive", "iot"),
    ]:
        s.put(ns, key, key)
    assert [(e.ns, e.key) for e in s.list()] == [
        ("archive", "iot"),
        ("positions", "jobs/a.json#0"),
        ("positions", "jobs/a.json#1"),
        ("positions", "jobs/b.json#0"),
    ]
    assert [e.key for e in s.list("positions", prefix="jobs/a.json#")] == [
        "jobs/a.json#0",
        "jobs/a.json#1",
    ]
    assert s.delete("positions", prefix="jobs/a.json#") == 2
    assert s.delete("positions", "jobs/b.json#0") == 1
    assert s.delete("positions", "jobs/b.json#0") == 0
    assert [(e.ns, e.key) for e in s.list()] == [("archive", "iot")]
    assert s.delete("archive") == 1 and s.list() == []


def test_a_key_prefix_is_literal_text(opener: Opener) -> None:
    s = opener()
    s.put("positions", "a_b%#0", 1)
    s.put("positions", "axb#0", 2)
    assert [e.key for e in s.list("positions", prefix="a_b%")] == ["a_b%#0"]


def test_sqlite_reading_a_project_that_saved_nothing_creates_nothing(tmp_path: Path) -> None:
    s = SqliteState(tmp_path / ".tidesync" / "state.db")
    assert s.get("positions", "x") is None and s.list() == [] and s.delete("positions") == 0
    assert not (tmp_path / ".tidesync").exists()


def test_postgresql_store_is_described_without_its_password() -> None:
    s = PostgresState("postgresql://etl:s3cret@db.example:5432/state")
    assert "s3cret" not in s.describe() and "db.example" in s.describe()


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (None, Location("sqlite", Path("/p/.tidesync/state.db"))),
        ("var/state.db", Location("sqlite", Path("/p/var/state.db"))),
        ("sqlite:///rel/s.db", Location("sqlite", Path("/p/rel/s.db"))),
        ("sqlite:////abs/s.db", Location("sqlite", Path("/abs/s.db"))),
        ("postgresql://etl@db/ts", Location("postgresql", url="postgresql://etl@db/ts")),
        (
            "postgres://${env:PGURL_USER}@db/ts",
            Location("postgresql", url="postgres://${env:PGURL_USER}@db/ts"),
        ),
    ],
)
def test_locate_reads_state_as_the_project_file_writes_it(
    state: str | None, expected: Location
) -> None:
    assert locate(state, Path("/p")) == expected


def test_locate_keeps_the_schedule_of_a_project_made_with_scheduler_db(tmp_path: Path) -> None:
    (tmp_path / ".tidesync").mkdir()
    (tmp_path / ".tidesync" / "scheduler.db").touch()
    assert locate(None, tmp_path).path == tmp_path / ".tidesync" / "scheduler.db"


def test_locate_refuses_another_url_without_showing_its_secret() -> None:
    with pytest.raises(ConfigError, match="neither postgresql") as e:
        locate("mysql://u:hunter2@db/x", Path("/p"))
    assert "hunter2" not in str(e.value)


def test_open_state_on_postgresql_reads_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with fresh_database("ts_state") as url:
        user_at = url.split("://", 1)[1]
        monkeypatch.setenv("TS_TEST_STATE_URL_REST", user_at)
        s = open_state("postgresql://${env:TS_TEST_STATE_URL_REST}", Path("/p"))
        try:
            s.put("positions", "k", 1)
            assert s.get("positions", "k") is not None
            assert "${env:TS_TEST_STATE_URL_REST}" in s.describe()
        finally:
            s.close()


def test_a_hold_on_a_jobs_positions_keeps_other_runs_waiting_until_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidesync.errors import RetriableError
    from tidesync.state import POSITIONS, base
    from tidesync.state.sqlite import SqliteState

    monkeypatch.setattr(base, "HOLD_WAIT_S", 0.0)  # give up at once instead of waiting
    first, second = SqliteState(tmp_path / "s.db"), SqliteState(tmp_path / "s.db")
    release = first.hold(POSITIONS, "jobs/a.json#0")
    with pytest.raises(RetriableError, match="another run of this job has held its positions"):
        second.hold(POSITIONS, "jobs/a.json#0")
    second.hold(POSITIONS, "jobs/b.json#0")()  # another job: not held
    release()
    second.hold(POSITIONS, "jobs/a.json#0")()
