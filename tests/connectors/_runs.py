"""Running ``tidesync run`` / ``recover`` as separate processes, stopped at a named point by the
test hooks of ``tidesync.connectors.publish`` (``TIDESYNC_TEST_HOOKS``): kills and concurrent
runs without timing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

TIDESYNC = str(Path(sys.executable).with_name("tidesync"))
KILLED = -9


def stream_job(
    folder: Path,
    writer: dict[str, Any],
    rows: int,
    gen: str,
    *,
    concurrent: int = 2,
    name: str = "job.json",
) -> Path:
    """A job writing ``rows`` rows (``id`` 0.., ``gen`` = ``gen``) with ``writer``."""
    reader = {
        "name": "streamreader",
        "parameter": {
            "recordCount": rows,
            "column": [
                {"name": "id", "type": "long", "incr": "0"},
                {"name": "gen", "type": "string", "value": gen},
            ],
        },
    }
    job = {
        "job": {
            "setting": {"speed": {"concurrent": concurrent}},
            "content": [{"reader": reader, "writer": writer}],
        }
    }
    path = folder / name
    path.write_text(json.dumps(job))
    return path


def env_with(hooks: str = "", **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env.pop("TIDESYNC_TEST_HOOKS", None)
    if hooks:
        env["TIDESYNC_TEST_HOOKS"] = hooks
    return env


def tidesync(
    *args: str | Path, cwd: Path, hooks: str = "", **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIDESYNC, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env_with(hooks, **extra),
        timeout=240,
    )


def start(*args: str | Path, cwd: Path, hooks: str = "", **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [TIDESYNC, *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env_with(hooks, **extra),
    )


def reached(folder: Path, point: str, proc: subprocess.Popen[str] | None = None) -> None:
    """Wait until a run got to ``point`` (its hook wrote ``point.reached``); fail if the run
    ended first. The bound only stops a hung test."""
    flag = folder / f"{point}.reached"
    deadline = time.monotonic() + 120
    while not flag.exists():
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the run ended ({proc.returncode}) before {point}: {err}")
        assert time.monotonic() < deadline, f"no run reached {point}"
        time.sleep(0.01)


def release(folder: Path, point: str) -> None:
    (folder / f"{point}.go").write_text("go")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Wait for a started run; its exit code and standard error."""
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def run_here(job: Path, connections: dict[str, Any] | None = None) -> Any:
    """Run a job in this process (quicker than a separate one); its report."""
    from tidesync.engine.runner import load_job, run_job
    from tidesync.spec.params import RunTime

    return run_job(load_job(job, runtime=RunTime.of("20161115000000"), connections=connections))


# -- one run's rows --------------------------------------------------------------------------

Rows = dict[str, list[int]]


def exactly(gen: str, n: int) -> Rows:
    """One run's output: ``n`` rows of ``gen``, each id once."""
    return {gen: list(range(n))}


def by_gen(pairs: Iterable[tuple[Any, str]]) -> Rows:
    """``(id, gen)`` pairs as the sorted ids of each generation."""
    rows: Rows = {}
    for i, gen in pairs:
        rows.setdefault(gen, []).append(int(i))
    return {g: sorted(ids) for g, ids in rows.items()}


def csv_rows(texts: Iterable[str]) -> Rows:
    """What a plain program reading these ``id,gen`` files sees."""
    return by_gen(line.split(",") for text in texts for line in text.splitlines())  # type: ignore[misc]


def read_here(params: dict[str, Any], ctx: Any) -> Rows:
    """What tidesync's file reader sees of ``id,gen`` files."""
    from tidesync.connectors import file as F
    from tidesync.connectors.base import Chunk

    r = F.Reader({"fileFormat": "csv", "column": ["*"], **params}, ctx)
    pairs = []
    for s in r.splits(4):
        for c in r.read(s):
            b = c.batch if isinstance(c, Chunk) else c
            pairs += zip(b.column(0).to_pylist(), b.column(1).to_pylist(), strict=True)
    return by_gen(pairs)


def write_here(params: dict[str, Any], ctx: Any, n: int, gen: str) -> None:
    """A previous run's output (``n`` rows of ``gen``), written by the file writer in this
    process: quicker than a run."""
    import pyarrow as pa

    from tidesync.connectors import file as F
    from tidesync.connectors.base import Split

    w = F.Writer(dict(params), ctx)
    t = pa.table({"id": list(range(n)), "gen": [gen] * n})
    w.prepare(t.schema)
    sink = w.open(Split(0, "s0"))
    for b in t.to_batches(max_chunksize=500):
        sink.write(b)
    w.commit([sink.close()])
