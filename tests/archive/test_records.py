"""Measure-point payloads and the rows they give (no broker)."""

from __future__ import annotations

import pytest

from tidesync.archive.records import parse_payload

IDS = b'"orgId": "o", "modelId": "m", "assetId": "a"'


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{" + IDS + b', "timestamp": 1, "measurepoints": {"temp": 1, "temp": 2}}',
         "key 'temp' appears twice in one object"),
        (b"{" + IDS + b', "timestamp": 1, "timestamp": 2, "measurepoints": "t", "value": 1}',
         "key 'timestamp' appears twice in one object"),
        (b"{" + IDS + b', "timestamp": 1, "measurepoints": "t", "value": {"x": [{"y": 1, "y": 2}]}}',
         "key 'y' appears twice in one object"),
    ],
)  # fmt: skip
def test_a_key_named_twice_in_one_object_is_dirty_not_the_last_one_kept(
    payload: bytes, reason: str
) -> None:
    assert parse_payload(payload) == ([], [reason])


def test_a_key_named_twice_spoils_only_its_item_of_an_array() -> None:
    good = b"{" + IDS + b', "timestamp": 1, "measurepoints": "t", "value": 1}'
    bad = b"{" + IDS + b', "timestamp": 1, "measurepoints": {"h": 1, "h": 2}}'
    rows, dirty = parse_payload(b"[" + bad + b", " + good + b"]")
    assert (rows, dirty) == (
        [("o", "m", "a", "t", 1, "1", None)],
        ["[0]: key 'h' appears twice in one object"],
    )


def test_points_with_distinct_names_each_give_a_row() -> None:
    payload = b"{" + IDS + b', "timestamp": 1, "measurepoints": {"temp": 1.5, "hum": 40}}'
    assert parse_payload(payload) == (
        [("o", "m", "a", "temp", 1, "1.5", None), ("o", "m", "a", "hum", 1, "40", None)],
        [],
    )
