"""What survives between runs, behind one small protocol.

Reader positions (incremental cursors, next CDC checkpoints), archive offsets and whatever a
later part needs are JSON values under ``(namespace, key)``; the scheduler keeps its instances
in the same database. Where that database is comes from the project file's ``state:``, read the
same way for the scheduler and for ``tidesync run`` (:func:`locate`)::

    state: postgresql://etl@db/tidesync   # PostgreSQL: several machines share one state
    state: var/state.db                   # a SQLite file, relative to the project folder
    (no state:)                           # .tidesync/state.db in the project folder

The protocol (:class:`StateStore`); each call is atomic on its own::

    get(ns, key) -> Entry | None                    Entry(ns, key, value, version, updated_at)
    put(ns, key, value) -> int                      write, whatever is there; the new version
    compare_and_set(ns, key, expected, value)       write only if the key is still at version
        -> int | None                               ``expected`` (0: it must not exist yet);
                                                    the new version, or None: someone else wrote
    list(ns=None, prefix="") -> list[Entry]         by namespace and key, in key order
    delete(ns, key=None, prefix=None) -> int        one key, the keys under a prefix, or the
                                                    whole namespace; how many went
    describe() -> str                               where it is, without secrets
    close()

Versions start at 1 and grow by one with every write of the key, so ``compare_and_set`` is a
checkpoint that two machines cannot both advance: both read version 7, one writes version 8,
the other's compare-and-set finds 8 and returns None::

    e = store.get("archive", "iot/telemetry")
    offset = e.value["offset"] if e else 0
    ...                                             # make the work up to new_offset durable
    if store.compare_and_set("archive", "iot/telemetry", e.version if e else 0,
                             {"offset": new_offset}) is None:
        raise FatalError("another process advanced iot/telemetry first")

Namespaces in use (``tidesync state list`` shows them):

``positions``
    key ``<job identity>#<content index>`` (:func:`positions_key`), value
    ``{"positions": {split label: position}}``: what each split of the entry's last committed
    run reported (``Chunk.position``). Written by the engine only after the writer committed,
    with compare-and-set against the version the run started from; readers see it through
    ``Context.stored_positions()``. A job's identity is its ``setting.stateKey``, else the
    scheduler node's name, else the job file's path relative to the project folder.

Backends: :class:`tidesync.state.sqlite.SqliteState` (a file, created on first write; WAL so
readers do not wait for writers) and :class:`tidesync.state.postgresql.PostgresState` (table
``ts_state``, created on first use).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "POSITIONS",
    "Entry",
    "Location",
    "StateStore",
    "dumps",
    "load_positions",
    "locate",
    "open_state",
    "positions_key",
    "save_positions",
]

#: the namespace of reader positions saved by the engine
POSITIONS = "positions"

#: the default state file, in the project folder
DEFAULT_FILE = Path(".tidesync") / "state.db"
#: what the scheduler's SQLite file was called before it held all the project's state
LEGACY_FILE = Path(".tidesync") / "scheduler.db"


@dataclass(frozen=True)
class Entry:
    """One stored value: ``version`` counts its writes; ``updated_at`` is epoch seconds."""

    ns: str
    key: str
    value: Any
    version: int
    updated_at: float


class StateStore(Protocol):
    """The state protocol (see the module docstring)."""

    def get(self, ns: str, key: str) -> Entry | None: ...

    def put(self, ns: str, key: str, value: Any) -> int: ...

    def compare_and_set(self, ns: str, key: str, expected: int, value: Any) -> int | None: ...

    def list(self, ns: str | None = None, prefix: str = "") -> list[Entry]: ...

    def delete(self, ns: str, key: str | None = None, prefix: str | None = None) -> int: ...

    def describe(self) -> str: ...

    def close(self) -> None: ...


def dumps(value: Any) -> str:
    """A state value as stored: JSON (ValueError for what JSON cannot hold)."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as e:
        raise ValueError(f"a state value must be JSON data: {e}") from None


@dataclass(frozen=True)
class Location:
    """Where a project's state lives: a PostgreSQL URL (secrets unresolved) or a SQLite file."""

    kind: str  # "sqlite" | "postgresql"
    path: Path | None = None
    url: str = ""

    def describe(self) -> str:
        from tidesync.errors import redact_url

        return (
            f"sqlite {self.path}" if self.kind == "sqlite" else f"postgresql {redact_url(self.url)}"
        )


def locate(state: str | None, root: Path) -> Location:
    """The state a project names: ``state: postgresql://...`` or a SQLite path (relative to the
    project folder ``root``); without one ``.tidesync/state.db`` (or a ``.tidesync/scheduler.db``
    that a project made before holds, kept so that its schedule continues).
    ConfigError for any other URL."""
    from tidesync.errors import ConfigError, redact_url

    if state is None:
        legacy = root / LEGACY_FILE
        return Location("sqlite", legacy if legacy.exists() else root / DEFAULT_FILE)
    text = state.strip()
    if text.startswith(("postgresql://", "postgres://")):
        from tidesync.spec.secrets import register_document

        register_document(text)  # its password: masked in what the run writes
        return Location("postgresql", url=text)
    if text.startswith("sqlite:///"):
        text = text[len("sqlite:///") :]
    elif "://" in text:
        raise ConfigError(
            f"state: {redact_url(text)!r} is neither postgresql://... nor a SQLite file path"
        )
    p = Path(text).expanduser()
    return Location("sqlite", p if p.is_absolute() else root / p)


def open_state(state: str | Location | None, root: Path) -> StateStore:
    """The state store of the project in ``root`` (``state`` as its project file writes it).
    Nothing is opened until the first call: a run that keeps no state never touches it.
    ``${env:NAME}`` in a PostgreSQL URL is read from the environment."""
    loc = state if isinstance(state, Location) else locate(state, root)
    if loc.kind == "postgresql":
        from tidesync.state.postgresql import PostgresState

        return PostgresState(loc.url)
    from tidesync.state.sqlite import SqliteState

    assert loc.path is not None
    return SqliteState(loc.path)


# -- reader positions ---------------------------------------------------------------------------


def positions_key(identity: str, content: int) -> str:
    """The key of one content entry's positions: ``jobs/orders.json#0``."""
    return f"{identity}#{content}"


def load_positions(store: StateStore | None, key: str) -> tuple[dict[str, Any], int]:
    """The positions the entry's last committed run saved, and their version (0: none)."""
    if store is None or not key:
        return {}, 0
    e = store.get(POSITIONS, key)
    if e is None:
        return {}, 0
    saved = e.value.get("positions") if isinstance(e.value, dict) else None
    return (dict(saved) if isinstance(saved, dict) else {}), e.version


def saved_reads(store: StateStore | None, key: str) -> str | None:
    """What the run that saved the entry's positions read (:func:`save_positions`'s ``reads``;
    None: nothing saved, or saved before tidesync kept it)."""
    if store is None or not key:
        return None
    e = store.get(POSITIONS, key)
    reads = e.value.get("reads") if e is not None and isinstance(e.value, dict) else None
    return reads if isinstance(reads, str) else None


def other_rows(store: StateStore | None, key: str, reads: str) -> str:
    """Why the positions saved under ``key`` cannot serve a run whose entry reads ``reads``
    ("" when they can): the run that saved them read other rows (a ``where`` or table of
    another ``-p`` value), so this run would skip this set's rows below that set's position.
    ``reads`` is the engine's record of an entry's row-choosing parameters, its run times left
    out (``engine/runner.py: _what_entries_read``); positions saved without one pass."""
    before = saved_reads(store, key) if reads else None
    if before is None or before == reads or not load_positions(store, key)[0]:
        return ""
    was, now = json.loads(before), json.loads(reads)
    target = {k for k in set(was) | set(now) if k.startswith("writer.")}
    diff = "; ".join(
        f"{k}: {was.get(k)!r} then, {now.get(k)!r} now"
        for k in sorted(set(was) | set(now))
        if k not in target and was.get(k) != now.get(k)
    )
    job = key.rpartition("#")[0]
    if not diff:
        # one job file may write a new target each run (``-p batch=...``); two job files
        # sharing a stateKey (a copied job) into two targets each get part of the rows
        if "writer.job" not in was or was.get("writer.job") == now.get("writer.job"):
            return ""
        moved = "; ".join(
            f"{k[len('writer.') :]}: {was.get(k)!r} then, {now.get(k)!r} now"
            for k in sorted(target - {"writer.job"})
            if was.get(k) != now.get(k)
        )
        if not moved:
            return ""  # one job in two places (two machines' checkouts), one target
        return (
            f"the saved position of {key!r} was saved by the job {was['writer.job']!r} writing "
            f"another target than this job, {now.get('writer.job')!r}, writes ({moved}); two "
            "jobs sharing one position each get part of the rows, this one none below the "
            "other's position. Give each its own setting.stateKey, or, when the job was moved "
            f"with its target, start it over with `tidesync state reset {job}`"
        )
    return (
        f"the saved position of {key!r} was read from other rows than this run reads ({diff}); "
        "one position cannot serve both: this run would skip its rows below the other's "
        'position. Give each its own setting.stateKey with the parameter in it ("stateKey": '
        f'"orders_${{region}}"), or start this job over with `tidesync state reset {job}`'
    )


def hold_positions(store: StateStore | None, key: str) -> Callable[[], None] | None:
    """Take the job entry's positions for this run: wait while another run of the same job
    holds them (until it ended), so that two runs never read from the same saved positions.
    Returns the release (None: nothing to hold). Stores without ``hold`` hold nothing."""
    hold = getattr(store, "hold", None)
    if hold is None or not key:
        return None
    assert store is not None
    which, me, token = (store.describe(), key), threading.get_ident(), object()
    with _HELD_LOCK:
        mine = _HELD.get(which)
    if mine is not None and mine[0] == me:
        # this thread took it for a job it did not run (`validate`, `cdc check`, a test's
        # earlier load): a thread runs one job at a time, so that hold passes to this one
        release: Callable[[], None] = mine[1]
    else:
        release = hold(POSITIONS, key)
    with _HELD_LOCK:
        _HELD[which] = (me, release, token)

    def end() -> None:
        with _HELD_LOCK:
            now = _HELD.get(which)
            if now is None or now[2] is not token:
                return  # passed on to a later load of the job in this thread
            del _HELD[which]
        release()

    return end


#: the holds this process has taken: (store, key) -> (thread, release, owner token)
_HELD: dict[tuple[str, str], tuple[int, Callable[[], None], object]] = {}
_HELD_LOCK = threading.Lock()


def save_positions(
    store: StateStore,
    key: str,
    positions: dict[str, Any],
    expected: int | None,
    reads: str | None = None,
) -> None:
    """Save one entry's positions after its commit, if the stored ones are still those the run
    started from (``expected``; None: whatever is there now). FatalError when another run saved
    first: the checkpoint then stays theirs."""
    from tidesync.errors import FatalError

    if expected is None:
        expected = load_positions(store, key)[1]
    value: dict[str, Any] = {"positions": positions}
    if reads is not None:
        value["reads"] = reads  # what the run read: the next run must read the same
    if store.compare_and_set(POSITIONS, key, expected, value) is None:
        raise FatalError(
            f"state {store.describe()}: another run saved the positions of {key!r} while this "
            "one ran; this run's data is published, its positions were not saved "
            "(the next run starts from the other run's)"
        )
