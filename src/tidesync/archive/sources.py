"""Message channels the archiver drains: MQTT (paho-mqtt) and NATS JetStream (nats-py).

A source hands each message to ``deliver`` (which may block: that is the back-pressure) as an
:class:`Incoming`, and acknowledges to the broker only when the service calls ``ack`` with the
handles of messages that are on disk. Both libraries come with the ``archive`` extra.

- MQTT: MQTT 5, a persistent session (``clean_start`` false, a session that never expires) under
  ``clientId``, subscriptions at QoS 1 with manual acknowledgement; the broker keeps what arrives
  while the archiver is away and resends what it sent without an acknowledgement. Retained
  messages come only with a new subscription (retain handling 1), not on every reconnect.
- JetStream: a durable pull consumer (created when missing: explicit acks, deliver all, the
  policy's filter subject), fetched in batches; its acknowledgement floor is polled so the
  de-duplication window stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tidesync.archive.policy import MqttSource, NatsSource
from tidesync.errors import ConfigError, FatalError

__all__ = ["Incoming", "Source", "open_source"]

log = logging.getLogger("tidesync.archive")


@dataclass(slots=True)
class Incoming:
    topic: str
    payload: bytes
    src_id: int  # MQTT packet id / JetStream stream sequence
    redelivered: bool
    handle: Any  # what ack() needs


class Source:
    #: the broker's acknowledgement floor (JetStream), 0 when it has none
    floor: int = 0
    #: set when the source cannot go on (refused credentials, a missing stream)
    failure: BaseException | None = None
    #: what its ids count in (JetStream: the stream's creation time), None when unknown; a new
    #: one means the ids start over
    origin: str | None = None

    def start(self, deliver: Callable[[Incoming | list[Incoming]], None]) -> None:
        raise NotImplementedError

    def ack(self, handles: list[Any]) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


def open_source(cfg: MqttSource | NatsSource, name: str) -> Source:
    if isinstance(cfg, MqttSource):
        return Mqtt(cfg, name)
    return Nats(cfg, name)


def _need(module: str, package: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError:
        raise ConfigError(
            f"the archiver needs {package}: pip install 'tidesync[archive]'"
        ) from None


class Mqtt(Source):
    def __init__(self, cfg: MqttSource, name: str):
        self.cfg, self.name = cfg, name
        self.client: Any = None
        self.connected = threading.Event()

    def start(self, deliver: Callable[[Incoming | list[Incoming]], None]) -> None:
        _need("paho.mqtt.client", "paho-mqtt")
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties
        from paho.mqtt.subscribeoptions import SubscribeOptions

        cfg = self.cfg
        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=cfg.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        if cfg.username:
            c.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            c.tls_set()
        c.reconnect_delay_set(1, 30)
        subs = [(t, SubscribeOptions(qos=1, retainHandling=1)) for t in cfg.topics]

        def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            if rc.is_failure:
                msg = f"policy {self.name}: {cfg.url} refused the connection: {rc}"
                if rc.value in (0x86, 0x87, 0x85, 0x8C):  # credentials, not authorized, client id
                    self.failure = FatalError(msg)
                log.warning(msg)
                return
            client.subscribe(subs)
            self.connected.set()
            log.info(
                "policy %s: connected to %s (session present: %s)",
                self.name,
                cfg.url,
                flags.session_present,
            )

        def on_subscribe(client: Any, userdata: Any, mid: Any, codes: Any, props: Any) -> None:
            # a broker capped at QoS 0 (mosquitto's max_qos 0) grants it without a word: its
            # messages come unacknowledged, are never delivered again, and are not kept while
            # the archiver is away
            bad = [f"{t!r}: {rc}" for (t, _), rc in zip(subs, codes, strict=False) if rc.value != 1]
            if bad:
                self.failure = FatalError(
                    f"policy {self.name}: {cfg.url} did not grant the QoS 1 subscriptions the "
                    f"archiver needs ({'; '.join(bad)}); check the broker's max_qos and ACLs"
                )

        def on_disconnect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
            self.connected.clear()
            if rc.value != 0:
                log.warning("policy %s: lost %s (%s); reconnecting", self.name, cfg.url, rc)

        def on_message(client: Any, userdata: Any, m: Any) -> None:
            # a message published at QoS 0 comes at QoS 0: nothing to acknowledge
            deliver(Incoming(m.topic, m.payload, m.mid, bool(m.dup), m.mid if m.qos else None))

        c.on_connect, c.on_disconnect, c.on_message = on_connect, on_disconnect, on_message
        c.on_subscribe = on_subscribe
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0xFFFFFFFF  # the broker keeps the session for ever
        props.ReceiveMaximum = cfg.max_inflight
        c.connect_async(cfg.host, cfg.port, cfg.keepalive, clean_start=False, properties=props)
        self.client = c
        c.loop_start()

    def ack(self, handles: list[Any]) -> None:
        c = self.client
        for mid in handles:
            if mid is not None:
                c.ack(mid, 1)

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.disconnect()
            self.client.loop_stop()
            self.client = None


class Nats(Source):
    def __init__(self, cfg: NatsSource, name: str):
        self.cfg, self.name = cfg, name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self.connected = threading.Event()

    def start(self, deliver: Callable[[Incoming | list[Incoming]], None]) -> None:
        _need("nats", "nats-py")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self._run, args=(deliver,), name=f"archive-nats-{self.name}", daemon=True
        )
        self.thread.start()

    def _run(self, deliver: Callable[[Incoming | list[Incoming]], None]) -> None:
        assert self.loop is not None
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main(deliver))
        except BaseException as e:  # noqa: BLE001 - handed to the service
            if self.failure is None:
                self.failure = (
                    e
                    if isinstance(e, FatalError)
                    else FatalError(f"policy {self.name}: {self.cfg.url}: {e}")
                )
        finally:
            self.ready.set()
            loop, self.loop = self.loop, None
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, deliver: Callable[[Incoming | list[Incoming]], None]) -> None:
        import nats
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError

        cfg = self.cfg

        async def disconnected() -> None:
            self.connected.clear()
            if not self.stopping.is_set():
                log.warning("policy %s: lost %s; reconnecting", self.name, cfg.url)

        async def reconnected() -> None:
            self.connected.set()
            log.info("policy %s: reconnected to %s", self.name, cfg.url)

        async def error(e: Exception) -> None:
            log.debug("policy %s: nats: %s", self.name, e)

        nc = None
        while nc is None and not self.stopping.is_set():
            try:
                nc = await nats.connect(
                    cfg.url,
                    user=cfg.user,
                    password=cfg.password,
                    token=cfg.token,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=1,
                    allow_reconnect=True,
                    disconnected_cb=disconnected,
                    reconnected_cb=reconnected,
                    error_cb=error,
                    connect_timeout=5,
                )
            except Exception as e:  # noqa: BLE001 - keep trying: the broker may be down
                if "Authorization" in str(e):
                    raise FatalError(f"policy {self.name}: {cfg.url} refused: {e}") from None
                log.warning("policy %s: cannot reach %s (%s); retrying", self.name, cfg.url, e)
                await asyncio.sleep(1)
        if nc is None:
            return
        self.nc = nc
        self.connected.set()
        js = nc.jetstream()
        try:
            try:
                info = await js.consumer_info(cfg.stream, cfg.durable)
            except NotFoundError:
                try:
                    await js.stream_info(cfg.stream)
                except NotFoundError:
                    raise FatalError(
                        f"policy {self.name}: stream {cfg.stream!r} does not exist on {cfg.url}"
                    ) from None
                info = await js.add_consumer(
                    cfg.stream,
                    ConsumerConfig(
                        durable_name=cfg.durable,
                        filter_subject=cfg.subject,
                        ack_policy=AckPolicy.EXPLICIT,
                        deliver_policy=DeliverPolicy.ALL,
                        ack_wait=cfg.ack_wait_s,
                        max_ack_pending=cfg.max_ack_pending,
                    ),
                )
            stream = await js.stream_info(cfg.stream)
            # a consumer made elsewhere may filter nothing (or several subjects): it would hand
            # over messages of subjects the policy does not name, archived without a word
            filters = [info.config.filter_subject, *(info.config.filter_subjects or [])]
            filters = [f for f in filters if f]
            if filters != [cfg.subject] and (filters or stream.config.subjects != [cfg.subject]):
                what = ", ".join(map(repr, filters)) or "every subject of the stream"
                raise FatalError(
                    f"policy {self.name}: consumer {cfg.durable!r} of stream {cfg.stream!r} "
                    f"filters {what}, not {cfg.subject!r}; use another durable name or delete "
                    "that consumer"
                )
            self.floor = info.ack_floor.stream_seq if info.ack_floor else 0
            created = stream.created
            self.origin = str(created) if created else None
            psub = await js.pull_subscribe_bind(cfg.durable, cfg.stream)
            self.ready.set()
            poll = asyncio.create_task(self._poll_floor(js))
            while not self.stopping.is_set():
                try:
                    msgs = await psub.fetch(cfg.batch, timeout=0.5)
                except (TimeoutError, nats.errors.TimeoutError):
                    continue
                except Exception as e:  # noqa: BLE001 - a broker outage: fetch again
                    log.debug("policy %s: fetch: %s", self.name, e)
                    await asyncio.sleep(0.5)
                    continue
                batch = []
                for m in msgs:
                    md = m.metadata
                    batch.append(
                        Incoming(m.subject, m.data, md.sequence.stream, md.num_delivered > 1, m)
                    )
                if batch:
                    await asyncio.to_thread(deliver, batch)
            poll.cancel()
        finally:
            with contextlib.suppress(Exception):
                await nc.flush(timeout=5)  # the acknowledgements sent so far
            with contextlib.suppress(Exception):
                await nc.close()

    async def _poll_floor(self, js: Any) -> None:
        """Follow the acknowledgement floor; stop the policy when the consumer is gone (the
        stream deleted, or the consumer): its fetches only time out, like an idle stream's, so
        the archiver waited for ever, archiving nothing and saying nothing."""
        from nats.js.errors import NotFoundError

        missing = 0
        while True:
            await asyncio.sleep(2)
            try:
                info = await js.consumer_info(self.cfg.stream, self.cfg.durable)
            except NotFoundError:
                missing += 1
                if missing == 3:  # not a broker restoring its streams after a restart
                    self.failure = FatalError(
                        f"policy {self.name}: consumer {self.cfg.durable!r} of stream "
                        f"{self.cfg.stream!r} no longer exists on {self.cfg.url} (the stream or "
                        "the consumer was deleted); start the policy again to create it"
                    )
                    self.stopping.set()
                    return
                continue
            except Exception:  # noqa: BLE001 - a broker outage: ask again
                continue
            missing = 0
            self.floor = info.ack_floor.stream_seq

    def ack(self, handles: list[Any]) -> None:
        if self.loop is None or not handles:
            return

        async def ack_all() -> None:
            for m in handles:
                with contextlib.suppress(Exception):
                    await m.ack()

        with contextlib.suppress(RuntimeError):  # the loop has ended: the broker redelivers
            asyncio.run_coroutine_threadsafe(ack_all(), self.loop)

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(30)
            self.thread = None
