"""examples/seed003 as its README runs it, against the test brokers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.archive._brokers import Broker, forget_session

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed003"
TIDESYNC = str(Path(sys.executable).parent / "tidesync")


def test_seed003_archives_both_channels_as_the_readme_says(
    tmp_path: Path, mosquitto: Broker, nats_server: Broker
) -> None:
    ex = tmp_path / "seed003"
    shutil.copytree(EXAMPLE, ex)
    text = (ex / "policies.yaml").read_text()
    text = text.replace("127.0.0.1:1883", f"127.0.0.1:{mosquitto.port}")
    (ex / "policies.yaml").write_text(
        text.replace("127.0.0.1:4222", f"127.0.0.1:{nats_server.port}")
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(args, cwd=ex, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    try:
        run(TIDESYNC, "archive", "check", "policies.yaml")
        run(
            TIDESYNC,
            "archive",
            "run",
            "policies.yaml",
            "--policy",
            "plant1",
            "--exit-when-idle",
            "1",
        )
        run(sys.executable, "publish.py", "--mqtt", mosquitto.url, "--nats", nats_server.url)
        run(
            TIDESYNC,
            "archive",
            "run",
            "policies.yaml",
            "--exit-when-idle",
            "2",
            "--close-open-cycles",
        )
        status = json.loads(run(TIDESYNC, "archive", "status", "policies.yaml", "--json").stdout)
    finally:
        forget_session(mosquitto.port, "tidesync-seed003-plant1")
    p1 = ex / "out" / "plant1"
    normal = [p for p in p1.glob("[0-9]*/*/*.csv")]
    assert normal and sum(len(p.read_text().splitlines()) - 1 for p in normal) == 300
    recycled = list((p1 / "archive_recycling_measure").rglob("*.csv"))
    assert [len(p.read_text().splitlines()) - 1 for p in recycled] == [3]
    dirty = list((p1 / "archive_dirty_measure").rglob("*.jsonl"))
    assert [json.loads(x)["payload"] for p in dirty for x in p.read_text().splitlines()] == [
        "temperature=21.5"
    ]
    parquet = list((ex / "out" / "plant2").glob("*/*/*/measure_*_0000.parquet"))
    assert len(parquet) == 1 and pq.read_table(parquet[0]).num_rows == 300
    assert [(s["policy"], s["messages"], s["rows"], s["recycled"], s["dirty"]) for s in status] == [
        ("plant1", 102, 300, 3, 1),
        ("plant2", 100, 300, 0, 0),
    ]
