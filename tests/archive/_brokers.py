"""Brokers of the archive tests: Mosquitto and NATS (JetStream) started by the tests on free
ports of 127.0.0.1, each with its own configuration and data folder, so a test may restart or
kill its broker and set what the archiver depends on (Mosquitto's max_queued_messages).

When a binary is missing the tests skip, saying why, except under ``CI=true``, where that
fails them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

MOSQUITTO_CONF = """\
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {data}/
autosave_interval 1
# the archiver's session may be away for a while: keep everything queued for it
max_queued_messages 0
max_inflight_messages 1000
"""


def _unavailable(msg: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: the broker is required)")
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    found = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None
    )
    if found is None:
        _unavailable(f"{name} not found (apt-get install {name})")
        raise AssertionError
    return found


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 20
    while True:
        if proc.poll() is not None:
            _unavailable(f"{what} exited with {proc.returncode}: {log.read_text()[-400:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            proc.kill()
            _unavailable(f"{what} did not listen on 127.0.0.1:{port} within 20 s")
        time.sleep(0.05)


@dataclass
class Broker:
    kind: str
    port: int
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    extra: str = ""  # more mosquitto.conf lines

    @property
    def url(self) -> str:
        return f"{self.kind}://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = self.folder / "broker.log"
        if self.kind == "mqtt":
            conf = self.folder / "mosquitto.conf"
            data = self.folder / "data"
            data.mkdir(exist_ok=True)
            # started as root, mosquitto goes on as user mosquitto: let it write its database
            for d in (self.folder, data):
                d.chmod(0o777)
            conf.write_text(MOSQUITTO_CONF.format(port=self.port, data=data) + self.extra)
            cmd = [_binary("mosquitto"), "-c", str(conf)]
        else:
            cmd = [
                _binary("nats-server"),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.folder / "js"),
            ]
        with log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _wait_port(self.port, self.proc, log, cmd[0])

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            self.proc.wait(20)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextlib.contextmanager
def start_broker(kind: str, extra: str = "") -> Iterator[Broker]:
    folder = Path(tempfile.mkdtemp(prefix=f"ts-{kind}-"))
    b = Broker(kind, free_port(), folder, extra=extra)
    try:
        b.start()
        yield b
    finally:
        b.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session", name="mosquitto")
def mosquitto_fixture() -> Iterator[Broker]:
    with start_broker("mqtt") as b:
        yield b


@pytest.fixture(scope="session", name="nats_server")
def nats_fixture() -> Iterator[Broker]:
    with start_broker("nats") as b:
        yield b


# -- publishing ----------------------------------------------------------------------------------


class MqttPublisher:
    """QoS 1 publishes, each confirmed by the broker."""

    def __init__(self, port: int):
        import paho.mqtt.client as mqtt

        self.c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}"
        )
        self.c.max_inflight_messages_set(1000)
        self.c.max_queued_messages_set(0)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def send(self, topic: str, payloads: list[bytes | str | dict[str, Any] | list[Any]]) -> None:
        infos = [self.c.publish(topic, _bytes(p), qos=1) for p in payloads]
        for i in infos:
            i.wait_for_publish(20)
            assert i.is_published()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def forget_session(port: int, client_id: str) -> None:
    """Remove a persistent session from a broker (connect clean with expiry 0)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    with contextlib.suppress(OSError):
        c.connect("127.0.0.1", port, clean_start=True)
        c.loop_start()
        time.sleep(0.1)
        c.disconnect()
        c.loop_stop()


def _bytes(p: Any) -> bytes:
    if isinstance(p, bytes):
        return p
    if isinstance(p, str):
        return p.encode()
    return json.dumps(p).encode()


def nats_publish(
    url: str,
    stream: str,
    subject_prefix: str,
    payloads: list[Any],
    create: bool = True,
    subjects: list[str] | None = None,
) -> None:
    """Publish to JetStream (creating the stream), each publish acknowledged by the server."""
    import asyncio

    import nats

    async def go() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        if create:
            with contextlib.suppress(Exception):
                await js.add_stream(name=stream, subjects=subjects or [f"{subject_prefix}.>"])
        for i, p in enumerate(payloads):
            await js.publish(f"{subject_prefix}.dev{i % 3}", _bytes(p))
        await nc.close()

    asyncio.run(go())
