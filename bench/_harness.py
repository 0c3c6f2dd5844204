"""Side-by-side timing of whole commands: each contender runs in turn (A B A B ...), so a drift in
the machine's speed hits both; the median of each and the median of the pairwise ratios are
printed. Figures are whole-process wall times, start-up included. Also the job files the
benchmarks run (:func:`write_job` and its parts)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

VENV_BIN = Path(sys.executable).parent

# The timed commands run in folders of their own (bench/data/...), where the documented
# relative `PYTHONPATH=src` finds nothing: the editable install's tree (the main checkout's)
# would be measured instead of this one. Made absolute here, for every child process.
if os.environ.get("PYTHONPATH"):
    os.environ["PYTHONPATH"] = os.pathsep.join(
        str(Path(p).resolve()) for p in os.environ["PYTHONPATH"].split(os.pathsep) if p
    )


SRC = Path(__file__).resolve().parent.parent / "src" / "tidesync"
_compiled: list[bool] = []


def compile_once() -> None:
    """Write tidesync's bytecode, as an installed package has it: under PYTHONDONTWRITEBYTECODE
    (set on the machines here) an editable install would otherwise compile every module in
    every timed run (about 60 ms), which no installed copy does."""
    if not _compiled:
        subprocess.run([str(VENV_BIN / "python"), "-m", "compileall", "-q", str(SRC)], check=True)
        _compiled.append(True)


def timed(cmd: Sequence[str], cwd: Path | None = None) -> float:
    compile_once()
    t0 = time.perf_counter()
    r = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(
            f"benchmark command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}"
        )
    return dt


def compare(
    title: str,
    rows: int,
    ours: Sequence[str],
    reference: Sequence[str],
    ref_name: str,
    runs: int = 3,
    cwd: Path | None = None,
    setup: Sequence[str] | None = None,
) -> dict[str, float]:
    """Run ``ours`` and ``reference`` alternately ``runs`` times, in the order A B, B A, A B ...
    (a drift of the shared host's speed favours neither); print rows/s and the ratio
    (reference time / our time: above 1.0 means tidesync is faster)."""
    ours_t: list[float] = []
    ref_t: list[float] = []
    timed(ours, cwd)  # warm-up: file cache, imports

    def one(cmd: Sequence[str]) -> float:
        if setup:
            subprocess.run(list(setup), cwd=cwd, check=True)
        return timed(cmd, cwd)

    for i in range(runs):
        if i % 2:
            ref_t.append(one(reference))
            ours_t.append(one(ours))
        else:
            ours_t.append(one(ours))
            ref_t.append(one(reference))
    return report(title, rows, ours_t, ref_t, ref_name, runs)


def report(
    title: str, rows: int, ours_t: Sequence[float], ref_t: Sequence[float], ref_name: str, runs: int
) -> dict[str, float]:
    """Print the medians of paired timings (rows/s and the ratio reference time / our time)
    and return them."""
    ratios = [r / o for o, r in zip(ours_t, ref_t, strict=True)]
    o, r, q = statistics.median(ours_t), statistics.median(ref_t), statistics.median(ratios)
    print(f"{title}")
    print(f"  tidesync     {o:8.2f} s  {rows / o:12,.0f} rows/s")
    print(f"  {ref_name:<12} {r:8.2f} s  {rows / r:12,.0f} rows/s")
    print(f"  ratio (speed of tidesync / {ref_name}): {q:.2f}  (runs: {runs}, median of pairs)")
    sys.stdout.flush()
    return {"ours_s": o, "ref_s": r, "ratio": q}


def write_job(
    path: Path,
    reader: Mapping[str, Any],
    writer: Mapping[str, Any],
    concurrent: int = 2,
    setting: Mapping[str, Any] | None = None,
) -> Path:
    """Write a one-task DataX job file (``reader`` -> ``writer``) to ``path``; return ``path``.
    ``setting``: more keys of ``job.setting`` (``{"direct": True}``)."""
    job = {
        "job": {
            "setting": {"speed": {"concurrent": concurrent}, **(setting or {})},
            "content": [{"reader": reader, "writer": writer}],
        }
    }
    path.write_text(json.dumps(job))
    return path


def parquet_writer(path: Path, file_name: str) -> dict[str, Any]:
    """A ``txtfilewriter`` of Parquet files into folder ``path``, emptied first."""
    return {
        "name": "txtfilewriter",
        "parameter": {
            "path": str(path),
            "fileName": file_name,
            "fileFormat": "parquet",
            "writeMode": "truncate",
        },
    }


def file_columns(
    columns: Iterable[tuple[str, str]], formats: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """The ``column`` list of a file reader: (name, type) by position, ``formats[i]`` added."""
    out: list[dict[str, Any]] = [
        {"index": i, "name": n, "type": t} for i, (n, t) in enumerate(columns)
    ]
    for i, f in (formats or {}).items():
        out[i]["format"] = f
    return out
