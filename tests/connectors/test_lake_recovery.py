"""The lake writer under kills and concurrent runs: a run killed before or during its commit
leaves the table as it was, and its data files or staging are removed by the next run or
``tidesync recover`` (never a committed run's); two identical overwrites at once end in one
run's rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.connectors import _runs as R
from tidesync.connectors import base
from tidesync.connectors.lake import Reader
from tidesync.engine.runner import load_job
from tidesync.recovery import recover_job

TABLE = {"iceberg": "ods.t", "hive": "t"}


@pytest.fixture(params=["iceberg", "hive"])
def fmt(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def job(tmp_path: Path, fmt: str, rows: int, gen: str, name: str = "job.json") -> Path:
    writer = {
        "name": "lake",
        "parameter": {"format": fmt, "table": TABLE[fmt], "partition": "ds=20161114"},
    }
    return R.stream_job(tmp_path, writer, rows, gen, name=name)


def rows(tmp_path: Path, fmt: str) -> dict[str, list[int]]:
    r = Reader({"format": fmt, "table": TABLE[fmt]}, base.Context(base_dir=tmp_path, where="r"))
    t = pa.Table.from_batches([b for s in r.splits(4) for b in r.read(s)], r.schema())
    out: dict[str, list[int]] = {}
    for i, gen in zip(t.column("id").to_pylist(), t.column("gen").to_pylist(), strict=True):
        out.setdefault(gen, []).append(i)
    return {g: sorted(v) for g, v in out.items()}


def parquet_files(tmp_path: Path) -> set[str]:
    return {str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*.parquet")}


def current_files(tmp_path: Path, fmt: str) -> set[str]:
    """The data files the table holds now."""
    if fmt == "hive":
        return {str(p.relative_to(tmp_path)) for p in (tmp_path / "t").rglob("*.parquet")}
    from tidesync.connectors.lake.iceberg import load_catalog

    table = load_catalog(None, tmp_path / "warehouse").load_table("ods.t")
    paths = [t.file.file_path.removeprefix("file://") for t in table.scan().plan_files()]
    return {str(Path(p).relative_to(tmp_path)) for p in paths}


def run_ok(tmp_path: Path, *args: Any) -> str:
    r = R.tidesync(*args, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    return r.stdout + r.stderr


def test_a_run_killed_at_its_commit_leaves_the_table_and_recover_removes_its_files(
    tmp_path: Path, fmt: str
) -> None:
    assert R.run_here(job(tmp_path, fmt, 300, "old", name="old.json")).status == "succeeded"
    before = parquet_files(tmp_path)
    killed = R.tidesync(
        "run", job(tmp_path, fmt, 200, "new"), cwd=tmp_path, hooks="lake.commit=kill"
    )
    assert killed.returncode == R.KILLED
    assert rows(tmp_path, fmt) == {"old": list(range(300))}
    assert parquet_files(tmp_path) - before  # what the dead run wrote is still there
    out = run_ok(tmp_path, "recover", "job.json")
    assert "removed: " in out and "its run is gone: pid" in out
    if fmt == "iceberg":
        assert "2 data files never committed"  # one per split in out
    assert parquet_files(tmp_path) == before
    assert rows(tmp_path, fmt) == {"old": list(range(300))}
    assert run_ok(tmp_path, "recover", "job.json").strip() == "job.json: nothing to recover"


def test_the_next_run_removes_what_a_killed_run_left(tmp_path: Path, fmt: str, caplog: Any) -> None:
    assert R.run_here(job(tmp_path, fmt, 300, "old", name="old.json")).status == "succeeded"
    before = parquet_files(tmp_path)
    killed = R.tidesync(
        "run", job(tmp_path, fmt, 200, "new"), cwd=tmp_path, hooks="lake.commit=kill"
    )
    assert killed.returncode == R.KILLED
    with caplog.at_level("INFO", "tidesync"):
        rep = R.run_here(job(tmp_path, fmt, 100, "next", name="next.json"))
    assert rep.status == "succeeded", rep.error
    assert "its run is gone" in caplog.text
    assert rows(tmp_path, fmt) == {"next": list(range(100))}
    left = parquet_files(tmp_path) - before
    assert left == current_files(tmp_path, fmt)  # the next run's, none of the killed one's
    assert not (tmp_path / ".t.tidesync").exists()


def test_a_run_killed_after_its_commit_keeps_its_rows(tmp_path: Path) -> None:
    killed = R.tidesync(
        "run", job(tmp_path, "iceberg", 200, "new"), cwd=tmp_path, hooks="lake.committed=kill"
    )
    assert killed.returncode == R.KILLED
    found = recover_job(load_job(tmp_path / "job.json"))
    assert [f.action for f in found] == ["removed"]
    assert found[0].detail.endswith("; committed")
    assert rows(tmp_path, "iceberg") == {"new": list(range(200))}


def test_two_identical_overwrites_at_once_end_in_one_runs_rows(tmp_path: Path, fmt: str) -> None:
    assert R.run_here(job(tmp_path, fmt, 300, "old", name="old.json")).status == "succeeded"
    a_job = job(tmp_path, fmt, 200, "new", name="a.json")
    b_job = job(tmp_path, fmt, 200, "new", name="b.json")
    a = R.start("-v", "run", a_job, cwd=tmp_path, hooks=f"lake.commit=hold:{tmp_path}")
    R.reached(tmp_path, "lake.commit", a)  # a is about to publish
    if fmt == "iceberg":  # b commits first; a's commit then finds the table changed
        assert R.run_here(b_job).status == "succeeded"
    else:  # b waits for a's commit to end
        b = R.start("run", b_job, cwd=tmp_path, hooks=f"publish.lock.wait=mark:{tmp_path}")
        R.reached(tmp_path, "publish.lock.wait", b)
    R.release(tmp_path, "lake.commit")
    a_rc, a_err = R.finish(a)
    assert a_rc == 0, a_err
    if fmt == "hive":
        assert R.finish(b)[0] == 0
    if fmt == "iceberg":  # a worked its commit out again on the table b had changed
        assert "changed meanwhile; committing again" in a_err
    assert rows(tmp_path, fmt) == {"new": list(range(200))}
