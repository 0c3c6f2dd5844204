"""The executor seam: tasks are plain data that run the same in a fresh process; the executor
is chosen by ``setting.executor``; serial writers are serialized by the engine."""

from __future__ import annotations

import json
import os
import pickle
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.engine import _memory, _spawn
from tidesync.connectors import base
from tidesync.connectors.base import Context
from tidesync.engine import executor as ex
from tidesync.engine.runner import load_job, run_job
from tidesync.errors import ConfigError
from tidesync.spec.params import RunTime

RT = RunTime.of("20250101000000")


@pytest.fixture
def spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ex.EXECUTORS, "spawn", _spawn.SpawnExecutor)


def write_job(path: Path, reader: dict[str, Any], writer: dict[str, Any], **setting: Any) -> Path:
    content = [{"reader": reader, "writer": writer}]
    path.write_text(json.dumps({"job": {"setting": setting, "content": content}}))
    return path


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def csv_to_csv(tmp_path: Path, out: str, executor: str) -> Path:
    src = tmp_path / "in"
    src.mkdir(exist_ok=True)
    for k in range(3):  # three files: three splits; one bad id per file
        rows = [f"{k * 100 + i},name {i}" for i in range(50)] + [f"bad{k},x"]
        (src / f"part{k}.csv").write_text("\n".join(rows) + "\n")
    return write_job(
        tmp_path / f"{out}.json",
        {
            "name": "txtfilereader",
            "parameter": {
                "path": ["in/*.csv"],
                "column": [{"index": 0, "type": "long"}, {"index": 1, "type": "string"}],
            },
        },
        {
            "name": "txtfilewriter",
            "parameter": {"path": out, "fileName": "rows.csv", "writeMode": "truncate"},
        },
        speed={"concurrent": 3},
        errorLimit={"record": 5},
        executor=executor,
    )


def test_file_tasks_give_the_same_result_in_fresh_processes(tmp_path: Path, spawn: None) -> None:
    here = run_job(
        load_job(csv_to_csv(tmp_path, "local", "local"), runtime=RT),
        report_path=tmp_path / "local.json",
    )
    there = run_job(
        load_job(csv_to_csv(tmp_path, "spawned", "spawn"), runtime=RT),
        report_path=tmp_path / "spawned.json",
    )
    assert here.status == there.status == "succeeded", (here.error, there.error)
    assert len(_spawn.PIDS) == 3 and os.getpid() not in _spawn.PIDS
    local, spawned = files_of(tmp_path / "local"), files_of(tmp_path / "spawned")
    assert len(local) == 3 and local == spawned
    counts = [(s.split, s.records_read, s.records_written, s.dirty_records) for s in here.splits]
    assert counts == [
        (s.split, s.records_read, s.records_written, s.dirty_records) for s in there.splits
    ]
    assert (there.records_read, there.records_written, there.dirty_records) == (153, 150, 3)
    # dirty records come back from the workers as data, with their split, reason and row
    assert dirty_of(there) == dirty_of(here)
    assert len(dirty_of(there)) == 3 and all("bad" in json.dumps(d) for d in dirty_of(there))


def dirty_of(rep: Any) -> list[dict[str, Any]]:
    lines = Path(str(rep.dirty_file)).read_text().splitlines()
    return sorted((json.loads(x) for x in lines), key=lambda d: d["split"])


def test_a_task_pickles_without_the_state_store(tmp_path: Path) -> None:
    job = load_job(csv_to_csv(tmp_path, "out", "local"), runtime=RT, state=threading.Lock())
    part = job.parts[0]
    part.writer.prepare(part.reader.schema())
    from tidesync.engine.runner import _step
    from tidesync.engine.task import Task

    task = Task(0, _step(part.reader), part.reader.splits(3)[0], (), part.writer)
    back = pickle.loads(pickle.dumps(task))  # a lock does not pickle: the state store stays
    assert back.reader.ctx.state is None and back.split == task.split
    part.writer.abort([])


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        (
            "locl",
            "job.setting.executor: 'locl' is not an executor (executors: local, ray); "
            "did you mean 'local'?",
        ),
        (3, "job.setting.executor: must be a string such as 'local', got 3"),
    ],
)
def test_an_unknown_executor_is_a_config_error(tmp_path: Path, executor: Any, message: str) -> None:
    path = csv_to_csv(tmp_path, "out", executor)
    with pytest.raises(ConfigError) as e:
        load_job(path, runtime=RT)
    assert e.value.problems == [message]
    assert not (tmp_path / "out").exists()


def test_local_is_the_default_and_may_be_named(tmp_path: Path) -> None:
    for name in ("local", "LOCAL", ""):
        job = load_job(csv_to_csv(tmp_path, "out", name), runtime=RT)
        assert job.spec.settings.executor == "local"
        assert run_job(job).status == "succeeded"


class _Overlap(_memory.Writer):
    """A serial writer that notes when two sinks are inside it at once."""

    serial = True
    inside = 0
    overlapped = False

    def open(self, split: base.Split) -> base.Sink:
        sink = super().open(split)
        outer = self
        write = sink.write

        def checked(batch: pa.RecordBatch) -> None:
            outer.inside += 1
            if outer.inside > 1:
                type(outer).overlapped = True
            time.sleep(0.001)  # widen the window in which a second sink could enter
            write(batch)
            outer.inside -= 1

        sink.write = checked  # type: ignore[method-assign]
        return sink


def test_a_serial_writers_sinks_take_turns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.CONNECTORS, "memory", "tests.engine._memory")
    monkeypatch.setattr(_memory, "Writer", _Overlap)
    _memory.PUBLISHED.clear()
    path = write_job(
        tmp_path / "job.json",
        {
            "name": "streamreader",
            "parameter": {"column": [{"type": "long", "incr": "0"}], "recordCount": 40_000},
        },
        {"name": "memory", "parameter": {"target": "t0"}},
        speed={"concurrent": 4},
    )
    job = load_job(path, runtime=RT)
    job.parts[0].reader.ctx.batch_rows = 500
    rep = run_job(job)
    assert rep.status == "succeeded", rep.error
    assert len(rep.splits) == 4
    assert not _Overlap.overlapped
    assert "_tidesync_lock" not in vars(job.parts[0].writer)  # the lock is the engine's
    ids = sorted(i for b in _memory.PUBLISHED["t0"] for i in b.column(0).to_pylist())
    assert ids == list(range(40_000))


def test_context_pickles_without_state() -> None:
    ctx = Context(where="x", state=threading.Lock(), connections={"pg": {"host": "h"}})
    back = pickle.loads(pickle.dumps(ctx))
    assert back.state is None and back.where == "x" and back.connections == {"pg": {"host": "h"}}
    assert ctx.state is not None  # the original keeps it
