"""A broker restarted while the archiver drains it: the archiver reconnects, the broker
redelivers what it had not seen acknowledged, and every message lands once."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.archive._brokers import MqttPublisher, nats_publish, start_broker
from tests.archive._harness import Run, point, wait_for
from tidesync.archive.timing import to_ms

pytestmark = pytest.mark.integration

T0 = datetime(2019, 1, 2, 3, 30, tzinfo=UTC)


def _values(r: Run) -> Counter[int]:
    return Counter(int(x["value"]) for x in r.rows())


def test_a_mosquitto_restart_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with start_broker("mqtt") as broker:
        r = Run(tmp_path, broker, T0)
        try:
            r.send([point(to_ms(T0), v=i) for i in range(300)])
            r.stop()  # the broker queues the next 5000 for the session
            pub = MqttPublisher(broker.port)
            pub.send(r.topic, [point(to_ms(T0), v=i) for i in range(300, 5300)])
            pub.close()
            r.start()
            broker.restart()  # while the archiver drains the queue, acknowledgements in flight
            a = r.arch
            assert a is not None
            wait_for(lambda: a.state.counters.messages == 5300, "the rest after the restart", 60)
            r.pub = None
            r.send([point(to_ms(T0), v=i) for i in range(5300, 5400)])
            r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
        finally:
            r.finish()
    seen = _values(r)
    assert sorted(seen) == list(range(5400)) and max(seen.values()) == 1


def test_a_nats_restart_mid_run_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    with start_broker("nats") as broker:
        stream = f"R{uuid.uuid4().hex[:6]}"
        nats_publish(broker.url, stream, f"{stream}.p", [point(1, v=i) for i in range(2000)])
        src = {
            "type": "nats",
            "url": broker.url,
            "stream": stream,
            "subject": f"{stream}.>",
            "durable": "arch",
            "ackWait": 2,
        }
        r = Run(tmp_path, broker, T0, source=src)
        try:
            a = r.arch
            assert a is not None
            wait_for(lambda: a.received > 0, "the first messages")
            broker.restart()
            nats_publish(
                broker.url,
                stream,
                f"{stream}.p",
                [point(1, v=i) for i in range(2000, 2500)],
                create=False,
            )
            wait_for(lambda: a.state.counters.messages == 2500, "everything", 60)
            r.settle()
            r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
        finally:
            r.finish()
    seen = _values(r)
    assert sorted(seen) == list(range(2500)) and max(seen.values()) == 1


def test_a_broker_that_grants_only_qos_0_stops_the_policy(tmp_path: Path) -> None:
    # mosquitto's max_qos 0 grants the QoS 1 subscription at QoS 0 without a word: messages
    # came unacknowledged, were never delivered again after a crash, and the broker dropped
    # those sent while the archiver was away; the archiver ran on as if all were well
    from tests.archive._harness import policy_doc
    from tidesync.archive.policy import parse_policies
    from tidesync.archive.service import Archiver

    with start_broker("mqtt", extra="max_qos 0\n") as broker:
        src = {"type": "mqtt", "url": broker.url, "topics": ["plant/+/measure", "plant/x"],
               "clientId": f"arch-{uuid.uuid4().hex[:8]}"}  # fmt: skip
        pol = parse_policies(policy_doc(tmp_path, src), "t.yaml", {}, tmp_path)[0]
        a = Archiver(pol, base_dir=tmp_path)
        a.open()
        a.start()
        try:
            source = a.source
            assert source is not None
            wait_for(lambda: source.failure is not None, "the policy to stop")
            assert str(source.failure) == (
                f"policy p: {broker.url} did not grant the QoS 1 subscriptions the archiver "
                "needs ('plant/+/measure': Granted QoS 0; 'plant/x': Granted QoS 0); check the "
                "broker's max_qos and ACLs"
            )
        finally:
            a.stop()
