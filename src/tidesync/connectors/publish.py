"""What the writers that publish files share: who owns a staging area, atomic folder exchange,
a publish lock, the publish journal, and the test hooks that kill a run at a chosen point.

**Owners.** Every staging area (a file writer's ``.tidesync-tmp-RUN/``, a lake table's
``.TABLE.tidesync/RUN/``, an Iceberg run record) carries an owner record: run id, host, process
id, the process's start time and a heartbeat time. A run on this host is alive while its process
(same pid, same start time) is; a run on another host while its heartbeat, refreshed every
``LEASE_S / 4`` seconds, is younger than :data:`LEASE_S`. A staging area without an owner record
(left by an older version) is dead once nothing in it changed for :data:`LEASE_S`. Only dead
runs' leftovers are ever removed.

**Journal.** A publish that cannot be one atomic step (an object store; a folder without
``renameat2(RENAME_EXCHANGE)``) first writes its plan, the staged -> final moves and the old
files to delete, as one ``publish.json`` in its staging area. From then on the publish is
decided: if the run dies, the next run touching the target (or ``tidesync recover``) rolls it
forward, and tidesync's reader reads the new files from where they are while it is pending.

**Hooks** (``TIDESYNC_TEST_HOOKS``) let tests stop a run at a named point deterministically:
``publish.placed=kill@2`` SIGKILLs the process at the second file placed, ``lake.commit=hold:DIR``
writes ``DIR/lake.commit.reached`` and waits for ``DIR/lake.commit.go``, ``mark:DIR`` only writes
the ``.reached`` file. Several are separated by ``;``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tidesync.errors import RetriableError

log = logging.getLogger("tidesync")

#: how long a run on another host stays alive without a heartbeat (seconds); also how old an
#: ownerless staging area must be before it is taken for dead
LEASE_S = 600.0
#: how long a publish waits for another run's publish to the same folder or table (seconds)
LOCK_WAIT_S = 600.0
OWNER = "owner.json"
JOURNAL = "publish.json"
#: a folder swap done by two renames: ``{"target": ..., "old": ...}`` (see :func:`put_back`)
SWAP = "commit.json"
HOST = socket.gethostname()

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


# -- owners ----------------------------------------------------------------------------------------


def start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot, Linux); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


@dataclass
class Owner:
    """Who staged something, and when it last said it was alive."""

    run: str = ""
    host: str = ""
    pid: int = 0
    start: str | None = None
    beat: float = 0.0

    @classmethod
    def me(cls, run: str) -> Owner:
        pid = os.getpid()
        return cls(run, HOST, pid, start_time(pid), time.time())

    def dumps(self) -> bytes:
        self.beat = time.time()
        return json.dumps(asdict(self)).encode()

    @classmethod
    def loads(cls, data: bytes | str) -> Owner | None:
        """The record, or None when it is not one (half written, foreign)."""
        try:
            d = json.loads(data)
            return cls(
                str(d.get("run", "")),
                str(d["host"]),
                int(d["pid"]),
                None if d.get("start") is None else str(d["start"]),
                float(d.get("beat") or 0.0),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            return None

    def alive(self, now: float | None = None) -> bool:
        if self.host != HOST:
            return (now or time.time()) - self.beat < LEASE_S
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # another user's process: it exists
        return self.start is None or start_time(self.pid) in (None, self.start)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def is_dead(owner: Owner | None, newest_change: float | None) -> bool:
    """Whether a staging area may be removed: its owner is gone, or it has no owner record and
    nothing in it changed for :data:`LEASE_S`."""
    if owner is not None:
        return not owner.alive()
    return newest_change is None or time.time() - newest_change >= LEASE_S


class Heartbeat:
    """Rewrites owner records every ``LEASE_S / 4`` seconds while a run lives (for runs on
    other hosts, which cannot see this process)."""

    def __init__(self, owner: Owner, *writers: Callable[[bytes], None]):
        self.owner = owner
        self.writers = list(writers)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, writer: Callable[[bytes], None]) -> None:
        writer(self.owner.dumps())
        self.writers.append(writer)

    def start(self, wait: bool = True) -> Heartbeat:
        """Write the records (now, or with ``wait=False`` first thing on the thread: until
        then, the staging area is young and so taken for alive) and keep them fresh."""
        if wait:
            data = self.owner.dumps()
            for w in self.writers:
                w(data)
        self._thread = threading.Thread(
            target=self._beat, args=(not wait,), daemon=True, name="tidesync-lease"
        )
        self._thread.start()
        return self

    def _beat(self, now: bool) -> None:
        while (now and not self._stop.is_set()) or not self._stop.wait(LEASE_S / 4):
            now = False
            data = self.owner.dumps()
            for w in list(self.writers):
                with contextlib.suppress(Exception):  # gone with its folder: nothing to keep up
                    w(data)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


def write_local(path: Path) -> Callable[[bytes], None]:
    """A writer of ``path`` that replaces it whole (a reader never sees half a record)."""

    def write(data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    return write


# -- folders -------------------------------------------------------------------------------------


def exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the
    system or the file system has no such call."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(rc == 0)


@contextlib.contextmanager
def folder_lock(folder: Path, what: str, wait_s: float | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (``flock`` on the directory) while publishing into
    what lies below it; wait at most ``wait_s`` for another holder, then fail (retriable). The
    lock goes with the process, so a killed run never leaves it held. Where directories cannot
    be locked (no ``fcntl``, some network file systems), publishes are not serialized."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as e:
        log.debug("cannot open %s to lock it: %s", folder, e)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            hook("publish.lock.wait")
            log.info("%s: waiting for another run's publish", what)
            deadline = time.monotonic() + wait_s
            while True:
                time.sleep(0.05)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise RetriableError(
                            f"{what}: another run has been publishing to it for more than "
                            f"{wait_s:.0f} s; nothing was published, run again"
                        ) from None
        except OSError as e:
            log.debug("cannot lock %s: %s", folder, e)
        yield
    finally:
        os.close(fd)


# -- journal -------------------------------------------------------------------------------------


@dataclass
class Journal:
    """A decided publish: ``moves`` (staged path -> final path) then ``deletes`` (old files)."""

    run: str
    moves: list[tuple[str, str]] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)

    def dumps(self) -> bytes:
        return json.dumps(
            {"version": 1, "run": self.run, "moves": self.moves, "deletes": self.deletes}
        ).encode()

    @classmethod
    def loads(cls, data: bytes | str) -> Journal | None:
        try:
            d = json.loads(data)
            moves = [(str(a), str(b)) for a, b in d["moves"]]
            return cls(str(d.get("run", "")), moves, [str(x) for x in d["deletes"]])
        except (ValueError, KeyError, TypeError):
            return None


# -- test hooks ----------------------------------------------------------------------------------

_hits: dict[str, int] = {}
_hits_lock = threading.Lock()


def hook(point: str) -> None:
    """A point where tests may stop this process (see the module docstring); nothing otherwise."""
    spec = os.environ.get("TIDESYNC_TEST_HOOKS")
    if not spec:
        return
    for item in spec.split(";"):
        name, _, action = item.strip().partition("=")
        if name != point:
            continue
        with _hits_lock:
            _hits[point] = n = _hits.get(point, 0) + 1
        _act(point, action, n)


def _act(point: str, action: str, n: int) -> None:
    kind, _, arg = action.partition(":")
    if kind.startswith("kill"):
        at = int(kind.partition("@")[2] or 1)
        if n == at:
            os.kill(os.getpid(), signal.SIGKILL)
        return
    folder = Path(arg)
    (folder / f"{point}.reached").write_text(str(os.getpid()))
    if kind == "hold":
        go = folder / f"{point}.go"
        deadline = time.monotonic() + 120
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.01)


# -- leftovers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing recovery did or left alone, for the log and ``tidesync recover``."""

    action: str  # removed | rolled forward | put back | aborted upload | kept
    path: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.action}: {self.path}" + (f" ({self.detail})" if self.detail else "")


def size_text(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)  # pragma: no cover


def tree_stats(folder: Path) -> tuple[int, float | None]:
    """Bytes below ``folder`` and the newest change time of anything in it (None: empty)."""
    total, newest = 0, None
    for dirpath, _, filenames in os.walk(folder):
        for name in [".", *filenames]:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            if name != ".":
                total += st.st_size
            newest = st.st_mtime if newest is None else max(newest, st.st_mtime)
    return total, newest


def read_owner(path: Path) -> Owner | None:
    try:
        return Owner.loads(path.read_bytes())
    except OSError:
        return None


def dead_reason(owner: Owner | None) -> str:
    return f"its run is gone: {owner.describe()}" if owner else "no owner record, unchanged"


def put_back(run: Path) -> Finding | None:
    """Undo a folder swap that stopped between its two renames (the old folder moved out into
    the run's folder, the new one not moved in), as the run's ``commit.json`` tells."""
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        j = json.loads((run / SWAP).read_text())
        old, target = Path(j["old"]), Path(j["target"])
        if old.exists() and not target.exists():
            os.rename(old, target)
            return Finding("put back", str(target), "a swap stopped between its two renames")
    return None


def clean_runs(stage_root: Path, keep: str | None = None) -> list[Finding]:
    """Remove the run folders under ``stage_root`` (``PARENT/.NAME.tidesync/RUN/``) whose runs
    are dead, first putting back a folder one of them left mid-swap (:func:`put_back`)."""
    if not stage_root.is_dir():
        return []
    out = []
    for run in sorted(stage_root.iterdir()):
        if run.name == keep or not run.is_dir():
            continue
        owner = read_owner(run / OWNER)
        size, newest = tree_stats(run)
        if not is_dead(owner, newest):
            why = f"its run is alive: {owner.describe()}" if owner else "changed recently"
            out.append(Finding("kept", str(run), why))
            continue
        if (f := put_back(run)) is not None:
            out.append(f)
        shutil.rmtree(run, ignore_errors=True)
        out.append(Finding("removed", str(run), f"{dead_reason(owner)}; {size_text(size)}"))
    with contextlib.suppress(OSError):
        stage_root.rmdir()
    return out
