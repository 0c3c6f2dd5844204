"""Publish EnOS-style measure points: a few devices of plant1 over MQTT (QoS 1) and of plant2
into the JetStream stream SEED003 (created when missing).

    python publish.py [--mqtt mqtt://127.0.0.1:1883] [--nats nats://127.0.0.1:4222] [--count 100]

Each message holds the points of one asset at one time. Also sent to plant1: one message with
an event time two hours ahead (it goes to archive_recycling_measure/) and one that is not JSON
(a dirty record).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from urllib.parse import urlsplit


def message(plant: str, i: int, now_ms: int) -> dict[str, object]:
    return {
        "orgId": "o15559727538581",
        "modelId": "inverter",
        "assetId": f"{plant}_inv{i % 4:02d}",
        "timestamp": now_ms - 1000 * (i % 60),
        "measurepoints": {"INV.GenActivePW": round(random.uniform(0, 500), 2),
                          "INV.Temp": round(random.uniform(20, 60), 1), "INV.State": i % 3},
        "quality": {"INV.GenActivePW": 0, "INV.Temp": 0, "INV.State": 0},
    }


def publish_mqtt(url: str, count: int) -> None:
    import paho.mqtt.client as mqtt

    parts = urlsplit(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    c.connect(parts.hostname or "127.0.0.1", parts.port or 1883)
    c.loop_start()
    now = int(time.time() * 1000)
    payloads = [json.dumps(message("plant1", i, now)) for i in range(count)]
    payloads.append(json.dumps({**message("plant1", 0, now), "timestamp": now + 2 * 3600 * 1000}))
    payloads.append("temperature=21.5")
    infos = [c.publish(f"plant1/dev{i % 4}/measure", p, qos=1) for i, p in enumerate(payloads)]
    for info in infos:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()
    print(f"mqtt: {len(payloads)} messages to plant1/+/measure")


async def publish_nats(url: str, count: int) -> None:
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    try:
        await js.stream_info("SEED003")
    except nats.js.errors.NotFoundError:
        await js.add_stream(name="SEED003", subjects=["plant2.>"])
    now = int(time.time() * 1000)
    for i in range(count):
        await js.publish(f"plant2.dev{i % 4}", json.dumps(message("plant2", i, now)).encode())
    await nc.close()
    print(f"nats: {count} messages to SEED003 (plant2.>)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mqtt", default="mqtt://127.0.0.1:1883")
    ap.add_argument("--nats", default="nats://127.0.0.1:4222")
    ap.add_argument("--count", type=int, default=100)
    a = ap.parse_args()
    publish_mqtt(a.mqtt, a.count)
    asyncio.run(publish_nats(a.nats, a.count))


if __name__ == "__main__":
    main()
