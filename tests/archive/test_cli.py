"""``tidesync archive run`` and ``status`` as a user runs them: a persistent session that keeps
messages while the archiver is down, a clean stop on SIGTERM, the counters."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.archive._brokers import Broker, MqttPublisher, forget_session
from tests.archive._harness import point, wait_for

pytestmark = pytest.mark.integration

TIDESYNC = str(Path(sys.executable).parent / "tidesync")


def policy_file(tmp: Path, broker: Broker, topic: str, client_id: str) -> Path:
    path = tmp / "policies.yaml"
    doc = {
        "policies": [
            {
                "name": "plant1",
                "source": {
                    "type": "mqtt",
                    "url": broker.url,
                    "topics": [f"{topic}/#"],
                    "clientId": client_id,
                },
                "generateBy": "systemTime",
                "pathFormat": "YYYYMMDD",
                "target": {"path": "out", "fileName": "measure"},
            }
        ]
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def tidesync(tmp: Path, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TIDESYNC, *args], cwd=tmp, capture_output=True, text=True, timeout=60, **kw
    )


def status(tmp: Path, path: Path) -> dict[str, Any]:
    r = tidesync(tmp, "archive", "status", str(path), "--json")
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout)[0])


def test_messages_sent_while_the_archiver_is_down_are_archived_once(
    tmp_path: Path, mosquitto: Broker
) -> None:
    topic, cid = f"t/{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    path = policy_file(tmp_path, mosquitto, topic, cid)
    try:
        first = tidesync(tmp_path, "archive", "run", str(path), "--exit-when-idle", "0.5")
        assert first.returncode == 0, first.stderr  # the session and its subscription exist now
        pub = MqttPublisher(mosquitto.port)
        pub.send(f"{topic}/dev1", [point(i, v=i) for i in range(25)] + [b"{bad"])
        pub.close()
        r = tidesync(
            tmp_path,
            "archive",
            "run",
            str(path),
            "--exit-when-idle",
            "0.5",
            "--close-open-cycles",
            "--progress-every",
            "0.1",
        )
    finally:
        forget_session(mosquitto.port, cid)
    assert "policy plant1: 26 messages in, 0 rows archived" in r.stderr  # a progress line
    assert r.returncode == 0, r.stderr
    assert (
        "policy plant1: stopped (idle): 26 messages in, 25 rows archived, 0 recycled, "
        "1 dirty, 2 files published"
    ) in r.stderr
    files = sorted(p.relative_to(tmp_path / "out") for p in (tmp_path / "out").rglob("*.csv"))
    assert len(files) == 1
    lines = (tmp_path / "out" / files[0]).read_text().splitlines()
    assert sorted(int(x.split(",")[5]) for x in lines[1:]) == list(range(25))
    st = status(tmp_path, path)
    assert (st["messages"], st["rows"], st["dirty"], st["files"]) == (26, 25, 1, 2)
    assert st["oldest_unpublished_cycle"] is None


def test_sigterm_stops_cleanly_and_open_cycles_continue_after_a_restart(
    tmp_path: Path, mosquitto: Broker
) -> None:
    topic, cid = f"t/{uuid.uuid4().hex[:8]}", f"cli-{uuid.uuid4().hex[:8]}"
    path = policy_file(tmp_path, mosquitto, topic, cid)
    proc = subprocess.Popen(
        [TIDESYNC, "archive", "run", str(path)], cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for(lambda: (tmp_path / ".tidesync/archive/plant1/LOCK").exists(), "the start")
        time.sleep(0.5)  # the subscription
        pub = MqttPublisher(mosquitto.port)
        pub.send(f"{topic}/dev1", [point(i, v=i) for i in range(10)])
        wait_for(lambda: status(tmp_path, path)["messages"] == 10, "the log", 20)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "stopped (SIGTERM): 10 messages in" in err and "open cycles stay in the log" in err
        assert not (tmp_path / "out").exists()
        st = status(tmp_path, path)
        assert st["messages"] == 10 and st["files"] == 0
        assert st["oldest_unpublished_cycle"] is not None and st["log_bytes"] > 0
        pub.send(f"{topic}/dev1", [point(i, v=i) for i in range(10, 15)])
        pub.close()
        r = tidesync(
            tmp_path, "archive", "run", str(path), "--exit-when-idle", "0.5", "--close-open-cycles"
        )
        assert r.returncode == 0, r.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
        forget_session(mosquitto.port, cid)
    rows = [x for p in (tmp_path / "out").rglob("*.csv") for x in p.read_text().splitlines()[1:]]
    assert sorted(int(x.split(",")[5]) for x in rows) == list(range(15))
    st = status(tmp_path, path)
    assert (st["messages"], st["files"], st["oldest_unpublished_cycle"]) == (15, 1, None)
