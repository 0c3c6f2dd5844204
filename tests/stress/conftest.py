"""Long runs, left out of the suite: ``TIDESYNC_STRESS=1 .venv/bin/python -m pytest tests/stress``."""

import os

from tests.archive._brokers import mosquitto_fixture, nats_fixture  # noqa: F401

if not os.environ.get("TIDESYNC_STRESS"):
    collect_ignore_glob = ["test_*.py"]
