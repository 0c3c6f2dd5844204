"""kill -9 at random moments: an archiver process killed again and again while a publisher
keeps sending, then a last run that drains and closes every cycle; every message must be in the
published files exactly once."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from tests.archive._brokers import Broker, MqttPublisher, forget_session

TIDESYNC = str(Path(sys.executable).parent / "tidesync")


def _policy(tmp: Path, broker: Broker, kind: str, tag: str) -> tuple[Path, dict[str, Any]]:
    if kind == "mqtt":
        source: dict[str, Any] = {
            "type": "mqtt",
            "url": broker.url,
            "topics": [f"{tag}/#"],
            "clientId": f"crash-{tag}",
        }
    else:
        source = {
            "type": "nats",
            "url": broker.url,
            "stream": tag,
            "subject": f"{tag}.>",
            "durable": "arch",
            "ackWait": 2,
            "batch": 200,
        }
    doc = {
        "policies": [
            {
                "name": "crash",
                "source": source,
                "generateBy": "systemTime",
                "cycle": "1h",
                "pathFormat": "YYYYMMDD/HH",
                "logSegmentSize": "16KB",
                "target": {"path": "out", "fileName": "m", "maxFileSize": "4KB"},
            }
        ]
    }
    path = tmp / "policies.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path, source


def _payload(i: int) -> bytes:
    return json.dumps(
        {
            "orgId": "o",
            "modelId": "m",
            "assetId": f"a{i % 7}",
            "timestamp": 1_600_000_000_000 + i,
            "measurepoints": "id",
            "value": i,
        }
    ).encode()


class _Publisher(threading.Thread):
    def __init__(self, broker: Broker, kind: str, tag: str, total: int, per_second: float):
        super().__init__(daemon=True)
        self.broker, self.kind, self.tag = broker, kind, tag
        self.total, self.gap = total, 1.0 / per_second
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.kind == "mqtt":
                pub = MqttPublisher(self.broker.port)
                for start in range(0, self.total, 20):
                    ids = range(start, min(self.total, start + 20))
                    pub.send(f"{self.tag}/dev", [_payload(i) for i in ids])
                    time.sleep(self.gap * 20)
                pub.close()
            else:
                asyncio.run(self._nats())
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    async def _nats(self) -> None:
        import nats

        nc = await nats.connect(self.broker.url)
        js = nc.jetstream()
        for i in range(self.total):
            await js.publish(f"{self.tag}.dev", _payload(i))
            if i % 20 == 19:
                await asyncio.sleep(self.gap * 20)
        await nc.close()


def _make_stream(url: str, tag: str) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(name=tag, subjects=[f"{tag}.>"])
        await nc.close()

    asyncio.run(go())


def crash_trials(
    tmp: Path, broker: Broker, kind: str, trials: int, total: int, seed: int, longest: float = 2.0
) -> dict[str, Any]:
    """Run the trials; return what was found (the caller asserts)."""
    rng = random.Random(seed)
    tag = f"c{uuid.uuid4().hex[:8]}"
    path, _ = _policy(tmp, broker, kind, tag)
    if kind == "nats":
        _make_stream(broker.url, tag)
    clock = f"3600@{time.time():.3f}"  # an hour a second: cycles close and publish all the time
    run = [TIDESYNC, "archive", "run", str(path), "--clock", clock]
    # the session (and its subscription) first, so that nothing sent is missed
    first = subprocess.run(
        [*run, "--exit-when-idle", "1"], cwd=tmp, capture_output=True, text=True, timeout=60
    )
    assert first.returncode == 0, first.stderr
    pub = _Publisher(broker, kind, tag, total, per_second=total / (trials * longest * 0.6))
    pub.start()
    kills = 0
    try:
        for _ in range(trials):
            p = subprocess.Popen(run, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.2, longest))
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                kills += 1
            p.wait(30)
        pub.join(300)
        assert pub.error is None, pub.error
        last = subprocess.run(
            [*run, "--exit-when-idle", "3", "--close-open-cycles"],
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert last.returncode == 0, last.stderr
    finally:
        if kind == "mqtt":
            forget_session(broker.port, f"crash-{tag}")
    seen: Counter[int] = Counter()
    files = sorted((tmp / "out").rglob("*.csv"))
    for f in files:
        for row in csv.DictReader(io.StringIO(f.read_text())):
            seen[int(row["value"])] += 1
    leftovers = [p for p in (tmp / "out").rglob(".*")]
    return {
        "kills": kills,
        "files": len(files),
        "missing": sorted(set(range(total)) - set(seen)),
        "duplicated": sorted(i for i, n in seen.items() if n > 1),
        "unexpected": sorted(set(seen) - set(range(total))),
        "leftovers": leftovers,
        "summary": last.stderr.strip().splitlines()[-1],
    }


def assert_exactly_once(found: dict[str, Any], total: int, min_kills: int) -> None:
    assert found["kills"] >= min_kills, found
    assert (found["missing"], found["duplicated"], found["unexpected"]) == ([], [], []), found
    assert f"stopped (idle): {total} messages in" in found["summary"], found  # counters survive
    assert not found["leftovers"], found  # no temporaries left in the target
