"""What the capture tests share: a job around a capture reader, run window by window with the
engine, each run's output read back from its Parquet file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tidesync.engine.runner import load_job, run_job
from tidesync.spec.params import RunTime


def run_imports_pandas(job: Path, cwd: Path) -> bool:
    """Run ``tidesync run JOB`` in a fresh interpreter (it must succeed); whether it imported
    pandas (a quarter of a second of start-up that the capture paths must not pay)."""
    code = (
        "import sys\nfrom tidesync.cli import entry\nsys.argv = ['tidesync', 'run', sys.argv[1]]\n"
        "try:\n    entry()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('pandas' in sys.modules)"
    )
    p = subprocess.run(
        [sys.executable, "-c", code, str(job)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert p.returncode == 0, p.stderr
    return p.stdout.split()[-1] == "True"


def state_store(root: Path) -> Any:
    """The project's state store in ``root`` (where `tidesync run` would keep it)."""
    from tidesync.state import open_state

    return open_state(None, root)


class Capture:
    """A job reading ``reader`` (a capture reader's name and parameters) into Parquet files, one
    folder per run (or a given writer)."""

    def __init__(self, root: Path, reader: str, params: dict[str, Any], writer: Any = None):
        self.root = root
        self.reader = reader
        self.params = params
        self.writer = writer
        self.runs = 0
        self.job = root / "job.json"
        self.out: Path | None = None  # one folder for every run (else one per run)
        self.setting: dict[str, Any] = {}  # the job's settings beside errorLimit

    def write_job(self, out: Path, extra: dict[str, Any]) -> Path:
        writer = self.writer or {
            "name": "file",
            "parameter": {
                "path": str(out),
                "fileName": "changes",
                "fileFormat": "parquet",
                "writeMode": "truncate",
            },
        }
        doc = {
            "job": {
                "setting": {"errorLimit": {"record": 0}, **self.setting},
                "content": [
                    {
                        "reader": {"name": self.reader, "parameter": {**self.params, **extra}},
                        "writer": writer,
                    }
                ],
            }
        }
        self.job.write_text(json.dumps(doc), encoding="utf-8")
        return self.job

    def run(self, window: tuple[int, int] | None = None, **extra: Any) -> pa.Table:
        """One run (window in ms since 1970, UTC); the rows it published. Raises on failure."""
        report = self.run_report(window, **extra)
        if report.status != "succeeded":
            raise AssertionError(f"run failed: {report.error}")
        return self.read(self.folder(self.runs))

    def run_report(self, window: tuple[int, int] | None = None, **extra: Any) -> Any:
        self.runs += 1
        if window is not None:
            extra = {"startTimestampMillis": window[0], "endTimestampMillis": window[1], **extra}
        path = self.write_job(self.folder(self.runs), extra)
        job = load_job(
            path, {}, RunTime.of("20161115000000"), state=state_store(self.root), root=self.root
        )
        return run_job(job, report_path=self.root / f"report{self.runs}.json")

    def folder(self, n: int) -> Path:
        return self.out or self.root / f"out{n}"

    @staticmethod
    def read(folder: Path) -> pa.Table:
        files = sorted(folder.glob("changes*"))
        tables = [pq.read_table(f) for f in files]
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables)


def rows(t: pa.Table, *cols: str) -> list[tuple[Any, ...]]:
    return [tuple(r[c] for c in cols) for r in t.to_pylist()]


#: a `tidesync run JOB` killed (SIGKILL) right after its writer published, before the engine
#: saved the positions
CRASH = """
import os, signal, sys
from tidesync.connectors.file import writer
commit = writer.Writer.commit
def crash(self, results):
    commit(self, results)
    os.kill(os.getpid(), signal.SIGKILL)  # after the publish, before the checkpoint
writer.Writer.commit = crash
from tidesync.cli import main
sys.argv = ["tidesync", "run", sys.argv[1]]
main()
"""
