"""Publishing files into a local folder: a reader sees the old files or the new ones, a run
killed at any point of its publish leaves the one or the other (completed by the next run or
``tidesync recover``), and dead runs' leftovers are removed while live runs' stay."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.connectors import _runs
from tests.connectors._runs import Rows, csv_rows, exactly, read_here, write_here
from tidesync.connectors import file as F
from tidesync.connectors.base import Context, Split
from tidesync.connectors.publish import LEASE_S, Owner, folder_lock
from tidesync.recovery import recover_location

OLD, NEW, NEXT = 3000, 2000, 2500  # rows of each run: each makes a different number of files
WRITER = {
    "name": "txtfilewriter",
    "parameter": {
        "path": "out",
        "fileName": "data.csv",
        "fileFormat": "csv",
        "writeMode": "truncate",
        "maxFileSize": "4KB",
    },
}


def plain_rows(folder: Path, name: str = "data") -> Rows:
    """What any program listing the folder sees."""
    return csv_rows(f.read_text() for f in sorted(folder.glob(f"{name}*.csv")))


def tidesync_rows(tmp_path: Path, pattern: str = "out/data*.csv") -> Rows:
    """What tidesync's own reader sees."""
    return read_here({"path": pattern}, Context(base_dir=tmp_path, where="r"))


def leftovers(tmp_path: Path) -> list[str]:
    out = [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".tidesync")]
    return out + [p.name for p in tmp_path.iterdir() if p.name.endswith(".tidesync")]


def write_old(tmp_path: Path) -> None:
    write_here(WRITER["parameter"], Context(base_dir=tmp_path, where="w"), OLD, "old")


def publish_then_kill(
    tmp_path: Path, hooks: str, journal: bool
) -> subprocess.CompletedProcess[str]:
    write_old(tmp_path)
    if journal:  # a folder holding a subfolder is published through a journal
        (tmp_path / "out" / "keep").mkdir()
        (tmp_path / "out" / "keep" / "x.csv").write_text("9,keep\n")
    return _runs.tidesync(
        "run", _runs.stream_job(tmp_path, WRITER, NEW, "new"), cwd=tmp_path, hooks=hooks
    )


# (hook, journal mode, what a plain listing shows after the kill, what tidesync reads)
KILLS = [
    pytest.param("publish.exchange=kill", False, "old", "old", id="exchange-before-swap"),
    pytest.param("publish.exchanged=kill", False, "new", "new", id="exchange-after-swap"),
    pytest.param("publish.journal=kill", True, "old", "new", id="journal-written"),
    pytest.param("publish.placed=kill@2", True, "mixed", "new", id="journal-two-files-placed"),
]


@pytest.mark.parametrize(("hooks", "journal", "plain", "seen"), KILLS)
def test_a_run_killed_while_publishing_leaves_the_old_files_or_the_new(
    tmp_path: Path, hooks: str, journal: bool, plain: str, seen: str
) -> None:
    killed = publish_then_kill(tmp_path, hooks, journal)
    assert killed.returncode == _runs.KILLED, killed.stderr
    want = {"old": exactly("old", OLD), "new": exactly("new", NEW)}
    if plain == "mixed":  # a journaled publish is not atomic for other programs...
        assert sorted(plain_rows(tmp_path / "out")) == ["new", "old"]
    else:
        assert plain_rows(tmp_path / "out") == want[plain]
    assert tidesync_rows(tmp_path) == want[seen]  # ...but tidesync reads what it decided
    assert leftovers(tmp_path)  # the dead run's staging is still there

    # recovery completes what was decided and removes the rest
    found = recover_location(str(tmp_path / "out"), {}, {})
    assert plain_rows(tmp_path / "out") == want[seen]
    assert leftovers(tmp_path) == []
    assert ("rolled forward" in [f.action for f in found]) == journal
    assert all(f.action != "removed" or "its run is gone: pid" in f.detail for f in found)
    assert "removed" in [f.action for f in found]
    if journal:
        assert (tmp_path / "out" / "keep" / "x.csv").read_text() == "9,keep\n"


@pytest.mark.parametrize(("hooks", "journal", "plain", "seen"), [KILLS[1], KILLS[3]])
def test_the_next_run_completes_a_killed_publish_before_its_own(
    tmp_path: Path, hooks: str, journal: bool, plain: str, seen: str, caplog: Any
) -> None:
    assert publish_then_kill(tmp_path, hooks, journal).returncode == _runs.KILLED
    append = {**WRITER, "parameter": {**WRITER["parameter"], "writeMode": "append"}}
    with caplog.at_level("INFO", "tidesync"):
        rep = _runs.run_here(_runs.stream_job(tmp_path, append, NEXT, "next"))
    assert rep.status == "succeeded", rep.error
    assert "its run is gone" in caplog.text
    # appended beside what the killed run had published (or, undecided, beside the old files)
    want = {"old": exactly("old", OLD), "new": exactly("new", NEW)}[seen]
    assert plain_rows(tmp_path / "out") == {**want, **exactly("next", NEXT)}
    assert leftovers(tmp_path) == []


def test_a_folder_exchange_keeps_other_files_hidden_files_and_the_folder_mode(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "other.csv").write_text("keep me\n")
    (out / ".hidden").write_text("me too\n")
    (out / "data.csv.old").write_text("1,stale\n")
    os.chmod(out, 0o750)
    inode = (out / "other.csv").stat().st_ino
    write_old(tmp_path)
    assert (out / "other.csv").read_text() == "keep me\n"
    assert (out / "other.csv").stat().st_ino == inode  # the same file, not a copy
    assert (out / ".hidden").read_text() == "me too\n"
    assert not (out / "data.csv.old").exists()  # a file of this fileName
    assert out.stat().st_mode & 0o777 == 0o750
    assert plain_rows(out) == exactly("old", OLD)
    assert leftovers(tmp_path) == []


def _writer(tmp_path: Path, file_name: str) -> F.Writer:
    return F.Writer(
        {"path": "out", "fileName": file_name, "writeMode": "truncate"},
        Context(base_dir=tmp_path, where="job.content[0].writer.parameter"),
    )


def _stage(w: F.Writer, rows: int) -> list[Any]:
    t = pa.table({"id": list(range(rows))})
    w.prepare(t.schema)
    sink = w.open(Split(0, "s0"))
    sink.write(t.to_batches()[0])
    return [sink.close()]


def test_a_file_put_into_the_folder_during_an_exchange_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = _writer(tmp_path, "data.csv")
    results = _stage(w, 5)
    monkeypatch.setenv("TIDESYNC_TEST_HOOKS", f"publish.exchange=hold:{tmp_path}")
    t = threading.Thread(target=w.commit, args=(results,))
    t.start()
    _runs.reached(tmp_path, "publish.exchange")  # the next contents are built; not yet swapped in
    (tmp_path / "out" / "arrived.txt").write_text("late\n")
    _runs.release(tmp_path, "publish.exchange")
    t.join(60)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["arrived.txt", "data.csv"]
    assert (tmp_path / "out" / "arrived.txt").read_text() == "late\n"


def test_publishes_into_one_folder_take_turns(tmp_path: Path) -> None:
    """Two jobs writing different files into one folder at once both keep their files."""
    a_job = _runs.stream_job(tmp_path, WRITER, OLD, "a", name="a.json")
    write_old(tmp_path)  # both publish by folder exchange
    other = {**WRITER, "parameter": {**WRITER["parameter"], "fileName": "other.csv"}}
    b_job = _runs.stream_job(tmp_path, other, NEW, "b", name="b.json")
    a = _runs.start("run", a_job, cwd=tmp_path, hooks=f"publish.exchange=hold:{tmp_path}")
    _runs.reached(tmp_path, "publish.exchange", a)  # a holds the folder's lock, mid-publish
    b = _runs.start("run", b_job, cwd=tmp_path, hooks=f"publish.lock.wait=mark:{tmp_path}")
    _runs.reached(tmp_path, "publish.lock.wait", b)  # b waits for it
    _runs.release(tmp_path, "publish.exchange")
    assert _runs.finish(a)[0] == 0
    assert _runs.finish(b)[0] == 0
    assert plain_rows(tmp_path / "out", "data") == exactly("a", OLD)
    assert plain_rows(tmp_path / "out", "other") == exactly("b", NEW)


def test_a_publish_waits_a_bounded_time_for_the_lock(tmp_path: Path) -> None:
    from tidesync.errors import RetriableError

    busy = pytest.raises(RetriableError, match=r"inner: another run has been publishing")
    with folder_lock(tmp_path, "outer"), busy, folder_lock(tmp_path, "inner", wait_s=0.2):
        pass


# -- leftovers -------------------------------------------------------------------------------


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(p.stdout)


def _staging(out: Path, run: str, owner: dict[str, Any] | None, age_s: float = 0) -> Path:
    d = out / f".tidesync-tmp-{run}"
    d.mkdir(parents=True)
    (d / "00000.00001").write_bytes(b"x" * 1000)
    if owner is not None:
        (d / "owner.json").write_text(json.dumps({"run": run, **owner}))
    if age_s:
        then = time.time() - age_s
        for p in [*d.iterdir(), d]:
            os.utime(p, (then, then))
    return d


def test_the_next_run_removes_dead_runs_staging_and_keeps_live_ones(tmp_path: Path) -> None:
    out = tmp_path / "out"
    me = Owner.me("x")
    host = socket.gethostname()
    dead = [
        _staging(out, "dead", {"host": host, "pid": _dead_pid(), "start": None}),
        _staging(out, "reused", {"host": host, "pid": me.pid, "start": "1"}),  # pid reused
        _staging(out, "ownerless", None, age_s=LEASE_S + 60),
        _staging(out, "faraway", {"host": "elsewhere", "pid": 1, "beat": time.time() - LEASE_S}),
    ]
    alive = [
        _staging(out, "live", {"host": host, "pid": me.pid, "start": me.start}),
        _staging(out, "young", None),
        _staging(out, "beating", {"host": "elsewhere", "pid": 1, "beat": time.time()}),
    ]
    w = _writer(tmp_path, "data.csv")
    w.commit(_stage(w, 3))
    assert [d for d in dead if d.exists()] == []
    assert [d for d in alive if d.exists()] == alive
    assert sorted(f.action for f in w.recovered) == ["kept"] * 3 + ["removed"] * 4


def test_recover_names_what_it_kept(tmp_path: Path) -> None:
    me = Owner.me("x")
    _staging(tmp_path / "out", "live", {"host": me.host, "pid": me.pid, "start": me.start})
    rec = _runs.tidesync("recover", "out", cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr
    assert f"kept: {tmp_path}/out/.tidesync-tmp-live (its run is alive: pid {me.pid}" in rec.stdout
    assert "nothing to recover (live runs kept)" in rec.stdout


def test_recover_of_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    rec = _runs.tidesync("recover", "nowhere", cwd=tmp_path)
    assert rec.returncode == 2
    assert rec.stderr.strip() == "error: TARGET: nowhere: no such folder"


def test_recover_of_a_job_recovers_its_writers_targets(tmp_path: Path) -> None:
    assert publish_then_kill(tmp_path, "publish.placed=kill@1", True).returncode == _runs.KILLED
    rec = _runs.tidesync("recover", "job.json", "--json", cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr
    actions = sorted(f["action"] for f in json.loads(rec.stdout))
    assert actions == ["removed", "rolled forward"]
    assert plain_rows(tmp_path / "out") == exactly("new", NEW)
