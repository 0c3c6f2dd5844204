"""An archiver of one policy run in the test's process against a test broker, on a clock the
test sets."""

from __future__ import annotations

import csv
import io
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.archive._brokers import Broker, MqttPublisher, forget_session
from tidesync.archive.policy import Policy, parse_policies
from tidesync.archive.service import Archiver
from tidesync.archive.timing import ManualClock, to_ms


def wait_for(cond: Any, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def policy_doc(tmp: Path, source: dict[str, Any], **keys: Any) -> dict[str, Any]:
    target = {"path": str(tmp / "out"), "fileName": "measure", **keys.pop("target", {})}
    return {
        "policies": [
            {
                "name": "p",
                "source": source,
                "generateBy": "systemTime",
                "cycle": "1h",
                "pathFormat": "YYYYMMDD/HH",
                "target": target,
                **keys,
            }
        ]
    }


class Run:
    """Start with ``Run(tmp_path, mosquitto, at=datetime(...), cycle=...)``."""

    def __init__(
        self,
        tmp: Path,
        broker: Broker,
        at: datetime,
        connections: dict[str, Any] | None = None,
        source: dict[str, Any] | None = None,
        **keys: Any,
    ):
        self.tmp, self.broker = tmp, broker
        self.topic = f"plant/{uuid.uuid4().hex[:8]}/measure"
        self.client_id = f"arch-{uuid.uuid4().hex[:8]}"
        src = source or {
            "type": "mqtt",
            "url": broker.url,
            "topics": [self.topic],
            "clientId": self.client_id,
        }
        self.doc = policy_doc(tmp, src, **keys)
        self.policy: Policy = parse_policies(self.doc, "test.yaml", connections or {}, tmp)[0]
        self.connections = connections or {}
        self.clock = ManualClock(to_ms(at))
        self.pub: MqttPublisher | None = None
        self.arch: Archiver | None = None
        self.start()

    def start(self) -> None:
        self.arch = Archiver(self.policy, self.connections, self.tmp, self.clock)
        self.arch.open()
        self.arch.start()
        src = self.arch.source
        assert src is not None
        wait_for(lambda: src.connected.is_set(), "the archiver to connect")  # type: ignore[attr-defined]
        if self.policy.source.type == "nats":
            wait_for(lambda: src.ready.is_set(), "the consumer")  # type: ignore[attr-defined]

    def send(self, payloads: list[Any], topic: str | None = None) -> None:
        a = self.arch
        assert a is not None
        if self.pub is None:
            self.pub = MqttPublisher(self.broker.port)
        before = a.received
        self.pub.send(topic or self.topic, payloads)
        wait_for(lambda: a.received >= before + len(payloads), "the messages to arrive")
        self.settle()

    def settle(self) -> None:
        a = self.arch
        assert a is not None
        wait_for(lambda: a.processed >= a.state.next_seq - 1 and a.inq.empty(), "staging")

    def at(self, when: datetime) -> None:
        self.clock.set(when)

    def close_until(self, when: datetime) -> None:
        """Move the clock to ``when`` and wait until every cycle ended by then is published."""
        a = self.arch
        assert a is not None
        self.clock.set(when)
        ms = to_ms(when)
        wait_for(
            lambda: (
                a.last_tick >= ms
                and not a.pending
                and all(b.end > ms for b in list(a.buckets.values()))
            ),
            "publishing",
        )

    def stop(self, close_open_cycles: bool = False) -> None:
        if self.arch is not None:
            self.arch.stop(close_open_cycles=close_open_cycles)
            self.arch = None

    def finish(self) -> None:
        self.stop()
        if self.pub is not None:
            self.pub.close()
            self.pub = None
        if self.policy.source.type == "mqtt":
            forget_session(self.broker.port, self.client_id)

    # -- what landed

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def files(self) -> dict[str, bytes]:
        if not self.out.exists():
            return {}
        return {
            str(p.relative_to(self.out)): p.read_bytes()
            for p in sorted(self.out.rglob("*"))
            if p.is_file()
        }

    def rows(self, rel: str | None = None) -> list[dict[str, str]]:
        out = []
        for name, data in self.files().items():
            if name.endswith(".csv") and (rel is None or name == rel):
                out += list(csv.DictReader(io.StringIO(data.decode())))
        return out


def point(ts: int, **points: Any) -> dict[str, Any]:
    return {
        "orgId": "o1",
        "modelId": "m1",
        "assetId": "a1",
        "timestamp": ts,
        "measurepoints": points,
    }
