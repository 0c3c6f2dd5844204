"""JetStream: a durable consumer drained into files, every message acknowledged after it is
on disk; against a nats-server the tests start."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.archive._brokers import Broker, nats_publish
from tests.archive._harness import Run, point, wait_for
from tidesync.archive.timing import to_ms

pytestmark = pytest.mark.integration

T0 = datetime(2019, 1, 2, 3, 30, tzinfo=UTC)


def _consumer(url: str, stream: str, durable: str) -> tuple[int, int]:
    import nats

    async def go() -> tuple[int, int]:
        nc = await nats.connect(url)
        info = await nc.jetstream().consumer_info(stream, durable)
        await nc.close()
        return info.ack_floor.stream_seq, info.num_ack_pending

    return asyncio.run(go())


def _acked(url: str, stream: str, n: int) -> bool:
    floor, pending = _consumer(url, stream, "arch")
    return floor >= n and pending == 0  # the floor passes over other subjects' messages


def test_a_stream_is_archived_and_acknowledged_and_a_restart_takes_only_new_messages(
    tmp_path: Path, nats_server: Broker
) -> None:
    stream = f"S{uuid.uuid4().hex[:8]}"
    other = f"m.{stream}.other"
    src = {
        "type": "nats",
        "url": nats_server.url,
        "stream": stream,
        "subject": f"m.{stream}.plant1.>",
        "durable": "arch",
    }
    nats_publish(
        nats_server.url,
        stream,
        f"m.{stream}.plant1",
        [point(to_ms(T0) + i, v=i) for i in range(50)],
        subjects=[f"m.{stream}.>"],
    )
    nats_publish(nats_server.url, stream, other, [point(1, x=1)], create=False)  # filtered out
    r = Run(tmp_path, nats_server, T0, source=src)
    try:
        a = r.arch
        assert a is not None
        wait_for(lambda: a.received >= 50, "the stream's messages")
        r.settle()
        wait_for(lambda: _acked(nats_server.url, stream, 50), "the acknowledgements", 10)
        r.stop()
        nats_publish(
            nats_server.url,
            stream,
            f"m.{stream}.plant1",
            [point(to_ms(T0) + 50 + i, v=50 + i) for i in range(10)],
            create=False,
        )
        r.start()
        a = r.arch
        assert a is not None
        wait_for(lambda: a.received >= 10, "the new messages")
        r.settle()
        r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
        assert a.duplicates == 0
    finally:
        r.finish()
    assert list(r.files()) == ["20190102/03/measure_201901020300_0000.csv"]
    assert sorted(int(x["value"]) for x in r.rows()) == list(range(60))


def _delete_stream(url: str, stream: str) -> None:
    import nats

    async def go() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().delete_stream(stream)
        await nc.close()

    asyncio.run(go())


def test_a_stream_deleted_and_created_again_is_archived_from_its_first_message(
    tmp_path: Path, nats_server: Broker
) -> None:
    # the new stream numbers its messages from 1 again: they are not copies of the old
    # stream's messages 1.. that the archiver stored (they were dropped as such, and acked)
    stream = f"S{uuid.uuid4().hex[:8]}"
    subject = f"m.{stream}.plant1"
    src = {
        "type": "nats",
        "url": nats_server.url,
        "stream": stream,
        "subject": f"{subject}.>",
        "durable": "arch",
    }
    nats_publish(nats_server.url, stream, subject, [point(to_ms(T0) + i, v=i) for i in range(20)])
    r = Run(tmp_path, nats_server, T0, source=src)
    try:
        a = r.arch
        assert a is not None
        wait_for(lambda: a.received >= 20, "the stream's messages")
        r.settle()
        wait_for(lambda: _acked(nats_server.url, stream, 20), "the acknowledgements", 10)
        r.stop()
        _delete_stream(nats_server.url, stream)
        new = [point(to_ms(T0) + 20 + i, v=20 + i) for i in range(5)]
        nats_publish(nats_server.url, stream, subject, new)
        r.start()
        a = r.arch
        assert a is not None
        wait_for(lambda: a.received >= 5, "the new stream's messages")
        r.settle()
        r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
        assert a.duplicates == 0
    finally:
        r.finish()
    assert sorted(int(x["value"]) for x in r.rows()) == list(range(25))


def test_a_missing_stream_stops_the_policy_naming_it(tmp_path: Path, nats_server: Broker) -> None:
    src = {
        "type": "nats",
        "url": nats_server.url,
        "stream": "NOPE" + uuid.uuid4().hex[:6],
        "subject": "x.>",
        "durable": "d",
    }
    from tests.archive._harness import policy_doc
    from tidesync.archive.policy import parse_policies
    from tidesync.archive.service import Archiver

    pol = parse_policies(policy_doc(tmp_path, src), "t.yaml", {}, tmp_path)[0]
    a = Archiver(pol, base_dir=tmp_path)
    a.open()
    a.start()
    try:
        src_ = a.source
        assert src_ is not None
        wait_for(lambda: src_.failure is not None, "the failure")
        assert f"stream {src['stream']!r} does not exist on {nats_server.url}" in str(src_.failure)
    finally:
        a.stop()


def test_a_consumer_filtering_other_subjects_than_the_policy_is_refused(
    tmp_path: Path, nats_server: Broker
) -> None:
    # a durable made elsewhere without a filter handed over every subject of the stream: the
    # policy for plant a archived plant b's messages too, and ended well
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    from tests.archive._harness import policy_doc
    from tidesync.archive.policy import parse_policies
    from tidesync.archive.service import Archiver

    stream, prefix = "F" + uuid.uuid4().hex[:8].upper(), "f" + uuid.uuid4().hex[:8]

    async def make() -> None:
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        await js.add_stream(name=stream, subjects=[f"{prefix}.>"])
        await js.add_consumer(
            stream, ConsumerConfig(durable_name="arch", ack_policy=AckPolicy.EXPLICIT)
        )
        await nc.close()

    asyncio.run(make())
    nats_publish(nats_server.url, stream, f"{prefix}.b", [point(1, b=1)], create=False)
    src = {"type": "nats", "url": nats_server.url, "stream": stream, "subject": f"{prefix}.a.>",
           "durable": "arch"}  # fmt: skip
    pol = parse_policies(policy_doc(tmp_path, src), "t.yaml", {}, tmp_path)[0]
    a = Archiver(pol, base_dir=tmp_path)
    a.open()
    a.start()
    try:
        source = a.source
        assert source is not None
        wait_for(lambda: source.failure is not None, "the failure")
        assert str(source.failure) == (
            f"policy p: consumer 'arch' of stream {stream!r} filters every subject of the "
            f"stream, not '{prefix}.a.>'; use another durable name or delete that consumer"
        )
    finally:
        a.stop()
    assert a.state.counters.messages == 0


def test_a_stream_deleted_under_a_running_archiver_stops_it_and_a_restart_takes_the_new_one(
    tmp_path: Path, nats_server: Broker
) -> None:
    # its consumer went with it and fetches only timed out, as on an idle stream: the archiver
    # ran on archiving nothing, and --exit-when-idle ended it with 0
    stream = f"S{uuid.uuid4().hex[:8]}"
    subject = f"m.{stream}.plant1"
    src = {"type": "nats", "url": nats_server.url, "stream": stream, "subject": f"{subject}.>",
           "durable": "arch"}  # fmt: skip
    nats_publish(nats_server.url, stream, subject, [point(to_ms(T0) + i, v=i) for i in range(3)])
    r = Run(tmp_path, nats_server, T0, source=src)
    try:
        a = r.arch
        assert a is not None and a.source is not None
        wait_for(lambda: a.received >= 3, "the stream's messages")
        r.settle()
        _delete_stream(nats_server.url, stream)
        nats_publish(nats_server.url, stream, subject, [point(to_ms(T0) + 3 + i, v=3 + i)
                                                        for i in range(2)])  # fmt: skip
        source = a.source
        wait_for(lambda: source.failure is not None, "the policy to stop")
        assert str(source.failure) == (
            f"policy p: consumer 'arch' of stream {stream!r} no longer exists on "
            f"{nats_server.url} (the stream or the consumer was deleted); start the policy "
            "again to create it"
        )
        r.stop()
        r.start()
        a = r.arch
        assert a is not None
        wait_for(lambda: a.received >= 2, "the new stream's messages")
        r.settle()
        r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    finally:
        r.finish()
    assert sorted(int(x["value"]) for x in r.rows()) == list(range(5))
