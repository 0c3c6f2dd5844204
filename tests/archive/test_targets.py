"""Published files on an S3-compatible store (the suite's moto server), through the file
connector's object-store settings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.archive._brokers import Broker
from tests.archive._harness import Run, point
from tests.integration._s3server import S3Server, bucket_fixture, s3_server_fixture  # noqa: F401
from tidesync.archive.timing import to_ms

pytestmark = pytest.mark.integration

T0 = datetime(2019, 1, 2, 3, 30, tzinfo=UTC)


def test_an_s3_target_gets_the_same_objects_and_no_folder_markers(
    tmp_path: Path,
    mosquitto: Broker,
    s3_server: S3Server,
    bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TS_S3_KEY", s3_server.key_id)
    monkeypatch.setenv("TS_S3_SECRET", s3_server.secret)
    r = Run(
        tmp_path,
        mosquitto,
        T0,
        generateBy="eventTime",
        target={
            "path": f"s3://{bucket}/plant1",
            "endpoint": s3_server.endpoint,
            "accessKeyId": "${env:TS_S3_KEY}",
            "accessKeySecret": "${env:TS_S3_SECRET}",
            "maxFileSize": "1KB",
        },
    )
    try:
        r.send([point(to_ms(T0) + i, v=i) for i in range(40)] + [b"junk"])
        r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    finally:
        r.finish()
    keys = s3_server.keys(bucket)
    data = [k for k in keys if k.endswith(".csv")]
    assert len(data) >= 2
    assert all(k.startswith("plant1/20190102/03/measure_201901020300_") for k in data)
    assert "plant1/archive_dirty_measure/20190102/03/measure_201901020300_0000.jsonl" in keys
    assert not [k for k in keys if k.endswith("/")]
    body = b"".join(s3_server.get(bucket, k) for k in data)
    values = [line.split(b",")[5] for line in body.splitlines() if not line.startswith(b"orgId")]
    assert values == [str(i).encode() for i in range(40)]
    assert not r.out.exists()
