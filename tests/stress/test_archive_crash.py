"""The archiver killed with SIGKILL at 40 random moments per broker while messages keep coming:
every message in the published files exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.archive._brokers import Broker
from tests.archive._crash import assert_exactly_once, crash_trials


@pytest.mark.parametrize("kind", ["mqtt", "nats"])
def test_forty_kills_lose_and_duplicate_nothing(
    tmp_path: Path, mosquitto: Broker, nats_server: Broker, kind: str
) -> None:
    broker = mosquitto if kind == "mqtt" else nats_server
    found = crash_trials(tmp_path, broker, kind, trials=40, total=12_000, seed=20261206)
    print(found["kills"], "kills,", found["files"], "files;", found["summary"])
    assert_exactly_once(found, 12_000, min_kills=30)
