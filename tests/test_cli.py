"""The command line as users script against it: exit codes, messages, reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tidesync

TIDESYNC = str(Path(sys.executable).with_name("tidesync"))


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [TIDESYNC, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def write_job(
    tmp_path: Path,
    reader: dict,
    writer: dict,
    setting: dict | None = None,
    transformer: list | None = None,
) -> Path:
    content: dict = {"reader": reader, "writer": writer}
    if transformer:
        content["transformer"] = transformer
    p = tmp_path / "job.json"
    p.write_text(json.dumps({"job": {"setting": setting or {}, "content": [content]}}))
    return p


STREAM = {
    "name": "streamreader",
    "parameter": {
        "column": [{"type": "string", "value": "${who}"}, {"type": "long", "incr": "1"}],
        "sliceRecordCount": 3,
    },
}


def test_run_succeeds_prints_summary_and_writes_report(tmp_path: Path) -> None:
    job = write_job(tmp_path, STREAM, {"name": "streamwriter", "parameter": {"print": True}})
    r = run(
        "run",
        str(job),
        "-p",
        "who=$[yyyymmddhh24mi]",
        "--cyctime",
        "20191106231500",
        "--report",
        str(tmp_path / "r.json"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["201911062315\t1", "201911062315\t2", "201911062315\t3"]
    assert "succeeded: 3 read, 3 written, 0 dirty" in r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert (
        rep["status"] == "succeeded"
        and rep["records_written"] == 3
        and rep["cyctime"] == "20191106231500"
    )


def test_unknown_parameter_is_exit_2_without_traceback(tmp_path: Path) -> None:
    job = write_job(tmp_path, STREAM, {"name": "streamwriter", "parameter": {}})
    r = run("run", str(job))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "job.content[0].reader.parameter.column[0].value" in r.stderr and "'${who}'" in r.stderr


def test_malformed_job_file_is_exit_2_naming_the_line(tmp_path: Path) -> None:
    p = tmp_path / "job.json"
    p.write_text('{"job": {"content": [}')
    r = run("validate", str(p))
    assert r.returncode == 2 and "job.json:1:" in r.stderr and "Traceback" not in r.stderr


def test_validate_lists_every_problem(tmp_path: Path) -> None:
    job = write_job(
        tmp_path,
        {"name": "streamreadr", "parameter": {}},
        {"name": "streamwriter", "parameter": {"print": "maybe"}},
        setting={"errorLimit": {"record": "x"}},
    )
    r = run("validate", str(job))
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert "error: job.setting.errorLimit.record: must be a number, got 'x'" in lines
    assert any("unknown reader 'streamreadr'; did you mean 'streamreader'?" in x for x in lines)
    assert (
        "error: job.content[0].writer.parameter.print: must be true or false, got 'maybe'" in lines
    )


def test_validate_ok(tmp_path: Path) -> None:
    job = write_job(tmp_path, STREAM, {"name": "streamwriter", "parameter": {}})
    r = run("validate", str(job), "-p", "who=x")
    assert r.returncode == 0 and "ok (datax, 1 reader/writer pair)" in r.stdout


@pytest.mark.parametrize(
    ("expr", "cyctime", "expected"),
    [
        ("$[yyyymmddhh24mi]", "20191106231500", "201911062315"),
        ("$[yyyymmddhh24miss-10/24/60]", "20251101103000", "20251101102000"),
        ("$[hh24miss-10/24/60]", "20251101000500", "235500"),
        ("${yyyymmdd}", "20161115000000", "20161114"),
        ("$[add_months(yyyymmdd,-1)]", "20250331000000", "20250228"),
        ("ds=${yyyymmdd-7}", "20161115000000", "ds=20161107"),
    ],
)
def test_params_prints_the_seed_examples(expr: str, cyctime: str, expected: str) -> None:
    r = run("params", expr, "--cyctime", cyctime)
    assert (r.returncode, r.stdout.strip()) == (0, expected), r.stderr


def test_bad_cyctime_is_a_usage_error() -> None:
    r = run("params", "$bizdate", "--cyctime", "2019-13-45")
    assert r.returncode == 2 and "Invalid value for '--cyctime'" in r.stderr


def test_bad_assignment_is_a_usage_error(tmp_path: Path) -> None:
    r = run("run", str(tmp_path / "x.json"), "-p", "novalue")
    assert r.returncode == 2 and "is not NAME=VALUE" in r.stderr


def test_plugins_lists_connectors_and_aliases() -> None:
    r = run("plugins", "--json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    kinds = {c["kind"]: c for c in data["connectors"]}
    assert "streamreader" in kinds["stream"]["aliases"] and kinds["stream"]["sides"] == [
        "reader",
        "writer",
    ]
    assert {t["name"] for t in data["transformers"]} >= {"dx_substr", "dx_filter", "cast"}


def test_help_teaches() -> None:
    r = run("--help")
    assert r.returncode == 0 and "tidesync run job.json" in r.stdout


def test_public_surface_is_pinned() -> None:
    assert tidesync.__all__ == [
        "Chunk",
        "ConfigError",
        "Context",
        "Dirty",
        "DirtyRecordError",
        "ErrorLimitExceeded",
        "FatalError",
        "Reader",
        "Report",
        "RetriableError",
        "Sink",
        "Split",
        "TidesyncError",
        "Transform",
        "Writer",
        "load_job",
        "run_job",
    ]


def _csv_to_csv_job(tmp_path: Path, rows: str, setting: dict | None = None) -> tuple[Path, Path]:
    (tmp_path / "in.csv").write_text(rows)
    target = tmp_path / "target"
    target.mkdir()
    (target / "people.csv").write_text("old contents\n")
    job = write_job(
        tmp_path,
        {
            "name": "txtfilereader",
            "parameter": {
                "path": "in.csv",
                "fileFormat": "csv",
                "column": [
                    {"index": 0, "name": "name", "type": "string"},
                    {"index": 1, "name": "age", "type": "long"},
                ],
            },
        },
        {
            "name": "txtfilewriter",
            "parameter": {"path": "target", "fileName": "people.csv", "writeMode": "truncate"},
        },
        setting=setting,
    )
    return job, target


def test_error_limit_exceeded_exits_1_and_leaves_target_untouched(tmp_path: Path) -> None:
    job, target = _csv_to_csv_job(
        tmp_path, "ann,31\nbob,abc\ncy,27\n", {"errorLimit": {"record": 0}}
    )
    r = run("run", str(job), "--report", str(tmp_path / "r.json"))
    assert r.returncode == 1
    assert "error limit exceeded" in r.stderr and "cannot convert 'abc' to long" in r.stderr
    assert sorted(p.name for p in target.iterdir()) == ["people.csv"]
    assert (target / "people.csv").read_text() == "old contents\n"
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["status"] == "failed" and rep["dirty_records"] == 1


def test_within_the_error_limit_the_good_rows_are_published(tmp_path: Path) -> None:
    job, target = _csv_to_csv_job(
        tmp_path, "ann,31\nbob,abc\ncy,27\n", {"errorLimit": {"record": 1}}
    )
    r = run("run", str(job))
    assert r.returncode == 0, r.stderr
    assert (target / "people.csv").read_text().splitlines() == ["ann,31", "cy,27"]


def test_sigterm_stops_the_run_and_publishes_nothing(tmp_path: Path) -> None:
    import signal
    import time

    job, target = _csv_to_csv_job(
        tmp_path, "".join(f"p{i},{i}\n" for i in range(200_000)), {"speed": {"record": 20_000}}
    )
    proc = subprocess.Popen(
        [TIDESYNC, "run", str(job), "--progress", "--report", str(tmp_path / "r.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 60
    while "rows read" not in seen and time.monotonic() < deadline:  # the run is under way
        seen += proc.stderr.read(1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    err = seen + err
    assert proc.returncode == 1, err
    assert "SIGTERM" in err and "nothing was published" in err
    assert sorted(p.name for p in target.iterdir()) == ["people.csv"]  # no temp files left either
    assert (target / "people.csv").read_text() == "old contents\n"
    assert json.loads((tmp_path / "r.json").read_text())["status"] == "failed"
