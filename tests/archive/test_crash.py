"""kill -9 at random moments, a few times (tests/stress/ runs dozens): nothing lost, nothing
twice, in the published files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.archive._brokers import Broker
from tests.archive._crash import assert_exactly_once, crash_trials

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("kind", ["mqtt", "nats"])
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    tmp_path: Path, mosquitto: Broker, nats_server: Broker, kind: str
) -> None:
    broker = mosquitto if kind == "mqtt" else nats_server
    found = crash_trials(tmp_path, broker, kind, trials=3, total=450, seed=3, longest=1.2)
    assert_exactly_once(found, 450, min_kills=2)
    assert found["files"] > 2, found
