"""Archive throughput: messages (and measure points) per second drained from each broker into
the write-ahead log and staged files, against the broker's own delivery rate to a do-nothing
subscriber (the limit); and the publish latency when a cycle closes.

    .venv/bin/python bench/bench_archive.py [--messages 20000] [--points 10]

Brokers: a Mosquitto and a nats-server started here on free ports (max_inflight_messages 1000,
max_queued_messages unlimited). Each side drains the same backlog queued for it beforehand, so
the publisher's speed is not measured. Target (issue 14): 50,000 measure points/s from MQTT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.archive._brokers import Broker, start_broker  # noqa: E402

from tidesync.archive.policy import parse_policies  # noqa: E402
from tidesync.archive.service import Archiver  # noqa: E402
from tidesync.archive.timing import ManualClock, to_ms  # noqa: E402


def payload(i: int, points: int) -> bytes:
    return json.dumps(
        {
            "orgId": "o1",
            "modelId": "inverter",
            "assetId": f"inv{i % 50}",
            "timestamp": 1_546_300_800_000 + i,
            "measurepoints": {f"P{k}": i * 0.5 + k for k in range(points)},
        }
    ).encode()


def mqtt_backlog(b: Broker, client_id: str, topic: str, n: int, points: int) -> None:
    """Register a persistent session for ``client_id`` and queue ``n`` messages for it."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0xFFFFFFFF
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    sub.connect("127.0.0.1", b.port, clean_start=False, properties=props)
    sub.loop_start()
    sub.subscribe(topic, qos=1)[1]
    time.sleep(0.3)
    sub.disconnect()
    sub.loop_stop()
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    pub.max_inflight_messages_set(1000)
    pub.max_queued_messages_set(0)
    pub.connect("127.0.0.1", b.port)
    pub.loop_start()
    infos = [pub.publish(topic, payload(i, points), qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(60)
    pub.disconnect()
    pub.loop_stop()


def mqtt_limit(b: Broker, n: int, points: int) -> float:
    """A subscriber that only counts (paho acknowledges each message itself)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    cid, topic = f"limit-{uuid.uuid4().hex[:6]}", f"bench/{uuid.uuid4().hex[:6]}"
    mqtt_backlog(b, cid, topic, n, points)
    got = threading.Event()
    count = [0]

    def on_message(c: object, u: object, m: object) -> None:
        count[0] += 1
        if count[0] == n:
            got.set()

    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0xFFFFFFFF
    props.ReceiveMaximum = 1000
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
    c.on_message = on_message
    t0 = time.perf_counter()
    c.connect("127.0.0.1", b.port, clean_start=False, properties=props)
    c.loop_start()
    got.wait(300)
    dt = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return n / dt


def archiver(tmp: Path, source: dict[str, object], clock: ManualClock | None = None) -> Archiver:
    doc = {
        "policies": [
            {
                "name": "bench",
                "source": source,
                "generateBy": "systemTime",
                "cycle": "1h",
                "pathFormat": "YYYYMMDD/HH",
                "target": {"path": str(tmp / "out"), "fileName": "m"},
            }
        ]
    }
    pol = parse_policies(doc, "bench", {}, tmp)[0]
    return Archiver(pol, base_dir=tmp, clock=clock)


def drain(a: Archiver, n: int) -> float:
    a.open()
    t0 = time.perf_counter()
    a.start()
    while a.processed < n:
        time.sleep(0.005)
    dt = time.perf_counter() - t0
    return n / dt


def mqtt_archive(
    b: Broker, n: int, points: int, tmp: Path, clock: ManualClock
) -> tuple[float, Archiver]:
    cid, topic = f"arch-{uuid.uuid4().hex[:6]}", f"bench/{uuid.uuid4().hex[:6]}"
    mqtt_backlog(b, cid, topic, n, points)
    a = archiver(tmp, {"type": "mqtt", "url": b.url, "topics": [topic], "clientId": cid}, clock)
    return drain(a, n), a


def nats_stream(b: Broker, n: int, points: int) -> str:
    import nats

    stream = f"B{uuid.uuid4().hex[:6]}"

    async def go() -> None:
        nc = await nats.connect(b.url)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream}.>"])
        futs = [await js.publish_async(f"{stream}.d", payload(i, points)) for i in range(n)]
        await asyncio.gather(*futs)
        await nc.close()

    asyncio.run(go())
    return stream


def nats_limit(b: Broker, n: int, points: int) -> float:
    """A durable pull consumer that only acknowledges."""
    import nats

    stream = nats_stream(b, n, points)

    async def go() -> float:
        nc = await nats.connect(b.url)
        psub = await nc.jetstream().pull_subscribe(f"{stream}.>", durable="limit", stream=stream)
        t0, got = time.perf_counter(), 0
        while got < n:
            for m in await psub.fetch(1000, timeout=5):
                await m.ack()
                got += 1
        dt = time.perf_counter() - t0
        await nc.close()
        return n / dt

    return asyncio.run(go())


def nats_archive(b: Broker, n: int, points: int, tmp: Path) -> float:
    stream = nats_stream(b, n, points)
    a = archiver(
        tmp,
        {
            "type": "nats",
            "url": b.url,
            "stream": stream,
            "subject": f"{stream}.>",
            "durable": "arch",
        },
    )
    rate = drain(a, n)
    a.stop()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=20_000)
    ap.add_argument("--points", type=int, default=10, help="measure points per message")
    args = ap.parse_args()
    n, k = args.messages, args.points
    print(f"{n} messages of {k} measure points each")
    with tempfile.TemporaryDirectory() as d, start_broker("mqtt") as mq, start_broker("nats") as nb:
        tmp = Path(d)
        limit = mqtt_limit(mq, n, k)
        clock = ManualClock(to_ms(datetime(2019, 1, 1, 0, 30, tzinfo=UTC)))
        rate, a = mqtt_archive(mq, n, k, tmp / "mqtt", clock)
        print(
            f"mqtt  do-nothing subscriber {limit:9,.0f} msg/s   archiver {rate:9,.0f} msg/s "
            f"= {rate * k:10,.0f} points/s  ({rate / limit:.2f} of the limit)"
        )
        t0 = time.perf_counter()
        clock.set(datetime(2019, 1, 1, 1, tzinfo=UTC))
        while not a.state.manifest:
            time.sleep(0.002)
        print(
            f"      publish at the cycle close: {time.perf_counter() - t0:.2f} s for "
            f"{n * k:,} rows ({a.state.counters.files} file(s), "
            f"{a.state.counters.bytes / 1e6:.1f} MB)"
        )
        a.stop()
        limit = nats_limit(nb, n, k)
        rate = nats_archive(nb, n, k, tmp / "nats")
        print(
            f"nats  do-nothing consumer   {limit:9,.0f} msg/s   archiver {rate:9,.0f} msg/s "
            f"= {rate * k:10,.0f} points/s  ({rate / limit:.2f} of the limit)"
        )


if __name__ == "__main__":
    main()
