"""examples/seed000: a CSV file every 15 minutes, each synced by its own instance."""

from __future__ import annotations

import importlib.util
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from tidesync.cli import main
from tidesync.scheduler.store import SqliteStore

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed000"


@pytest.fixture
def example(tmp_path: Path) -> Path:
    root = tmp_path / "seed000"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".tidesync", "landing", "*.db"))
    return root


def dropper(root: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("drop_files", root / "drop_files.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def iot_log(root: Path) -> list[tuple[str, str, str, float]]:
    with sqlite3.connect(root / "warehouse.db") as con:
        return con.execute("SELECT filename, ts, device, temperature FROM iot_log").fetchall()


def test_three_simulated_hours_each_instance_reads_its_own_file(example: Path) -> None:
    drop = dropper(example)
    runner = CliRunner()
    first = datetime(2019, 11, 6, 0, 0)
    missing = datetime(2019, 11, 6, 1, 30)
    for slot in drop.quarters(first, datetime(2019, 11, 6, 3, 0)):
        if slot != missing:
            drop.drop(slot, example / "landing")
        r = runner.invoke(
            main,
            ["scheduler", "run-once", "--at", f"{slot:%Y%m%d%H%M%S}", "--project", str(example)],
        )
        assert r.exit_code in (0, 1), r.output
    rows = SqliteStore(example / ".tidesync" / "state.db").listing()
    assert len(rows) == 13
    for inst in rows:
        slot = datetime.strptime(inst.cyctime, "%Y%m%d%H%M%S")
        assert inst.param_values == {"filename": f"{slot:%Y%m%d%H%M}"}
        assert (inst.state, inst.attempts) == (
            ("failed", 2) if slot == missing else ("succeeded", 1)
        )
    failed = next(i for i in rows if i.state == "failed")
    assert "no file matches 'landing/iot_log_201911060130.csv" in failed.error
    by_file: dict[str, list[datetime]] = {}
    for filename, ts, _device, _t in iot_log(example):
        by_file.setdefault(filename, []).append(datetime.strptime(ts, "%Y-%m-%d %H:%M:%S"))
    assert sorted(by_file) == sorted(f"{i.cyctime[:12]}" for i in rows if i.state == "succeeded")
    for filename, stamps in by_file.items():
        slot = datetime.strptime(filename, "%Y%m%d%H%M")
        assert len(stamps) == 3  # the three readings of that file, once each
        assert all(slot - timedelta(minutes=15) <= t < slot for t in stamps)


def test_run_once_at_a_twelve_digit_time_runs_that_quarter(example: Path) -> None:
    drop = dropper(example)
    for slot in drop.quarters(datetime(2019, 11, 6, 0, 0), datetime(2019, 11, 6, 0, 45)):
        drop.drop(slot, example / "landing")
    r = CliRunner().invoke(
        main, ["scheduler", "run-once", "--at", "201911060045", "--project", str(example)]
    )
    assert r.exit_code == 0, r.output  # strptime read 00:04:05: only the 00:00 quarter ran
    rows = SqliteStore(example / ".tidesync" / "state.db").listing()
    assert max(i.cyctime for i in rows) == "20191106004500"
    assert {i.state for i in rows} == {"succeeded"}
    assert "201911060045" in {f for f, *_ in iot_log(example)}


def test_a_rerun_of_a_synced_file_does_not_duplicate_it(example: Path) -> None:
    drop = dropper(example)
    slot = datetime(2019, 11, 6, 0, 15)
    drop.drop(slot, example / "landing")
    runner = CliRunner()
    runner.invoke(
        main, ["scheduler", "run-once", "--at", "20191106001500", "--project", str(example)]
    )
    inst = SqliteStore(example / ".tidesync" / "state.db").find("iot_sync", "20191106001500")
    r = runner.invoke(main, ["instance", "rerun", str(inst.id), "--project", str(example)])
    assert r.exit_code == 0, r.output
    assert sorted(f for f, *_ in iot_log(example)) == ["201911060015"] * 3


def test_the_drop_script_simulates_with_run_once(example: Path) -> None:
    r = subprocess.run(
        [
            sys.executable,
            str(example / "drop_files.py"),
            "--from",
            "201911060000",
            "--to",
            "201911060030",
            "--run",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert sorted({f for f, *_ in iot_log(example)}) == [
        "201911060000",
        "201911060015",
        "201911060030",
    ]
