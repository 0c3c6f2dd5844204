"""Job files: the DataX and both script-mode shapes read into one JobSpec; settings; errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidesync.errors import ConfigError
from tidesync.spec.job import load_document, parse_job

READER = {"column": [{"type": "long", "value": 1}], "sliceRecordCount": 1}
WRITER = {"print": False}

SHAPES = {
    "datax": {
        "job": {
            "setting": {"speed": {"channel": 2}},
            "content": [
                {
                    "reader": {"name": "streamreader", "parameter": READER},
                    "writer": {"name": "streamwriter", "parameter": WRITER},
                    "transformer": [{"name": "dx_substr", "parameter": {"columnIndex": 0}}],
                }
            ],
        }
    },
    "script-v1": {
        "type": "job",
        "version": "1.0",
        "configuration": {
            "setting": {"speed": {"concurrent": "2"}},
            "reader": {"plugin": "stream", "parameter": READER},
            "writer": {"plugin": "stream", "parameter": WRITER},
        },
    },
    "script-v2": {
        "type": "job",
        "version": "2.0",
        "steps": [
            {"stepType": "stream", "parameter": READER, "name": "Reader", "category": "reader"},
            {"stepType": "stream", "parameter": WRITER, "name": "Writer", "category": "writer"},
        ],
        "setting": {"speed": {"concurrent": 2}},
        "order": {"hops": [{"from": "Reader", "to": "Writer"}]},
    },
}


@pytest.mark.parametrize("shape", SHAPES)
def test_each_shape_reads_to_the_same_spec(shape: str) -> None:
    spec = parse_job(SHAPES[shape], "j.json")
    assert spec.shape == shape
    assert spec.settings.concurrent == 2
    [c] = spec.contents
    assert c.reader.parameter == READER and c.writer.parameter == WRITER
    assert c.reader.name in ("streamreader", "stream")


@pytest.mark.parametrize(
    ("shape", "where"),
    [
        ("datax", "job.content[0].reader.parameter"),
        ("script-v1", "configuration.reader.parameter"),
        ("script-v2", "steps[0].parameter"),
    ],
)
def test_key_paths_follow_the_shape(shape: str, where: str) -> None:
    assert parse_job(SHAPES[shape]).contents[0].reader.where == where


def test_datax_transformers_are_read_with_their_paths() -> None:
    [t] = parse_job(SHAPES["datax"]).contents[0].transformers
    assert (t.name, t.where) == ("dx_substr", "job.content[0].transformer[0].parameter")


def test_every_datax_content_entry_is_kept() -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    doc["job"]["content"] *= 3
    assert len(parse_job(doc).contents) == 3


@pytest.mark.parametrize(
    ("setting", "expect"),
    [
        (
            {},
            {
                "concurrent": 1,
                "byte_rate": None,
                "record_rate": None,
                "error_records": None,
                "error_fraction": None,
            },
        ),
        ({"speed": {"channel": "4"}}, {"concurrent": 4}),
        ({"speed": {"concurrent": 3, "channel": 9}}, {"concurrent": 3}),
        ({"speed": {"mbps": "1"}}, {"byte_rate": 1048576}),
        ({"speed": {"byte": 1000, "mbps": 1}}, {"byte_rate": 1000}),
        ({"speed": {"record": "500"}}, {"record_rate": 500}),
        (
            {"speed": {"record": 500, "byte": 10, "throttle": False}},
            {"record_rate": None, "byte_rate": None},
        ),
        ({"speed": {"record": 500, "throttle": "false"}}, {"record_rate": None}),
        ({"errorLimit": {"record": "0"}}, {"error_records": 0}),
        ({"errorLimit": {"percentage": 0.02}}, {"error_fraction": 0.02}),
        ({"errorLimit": {"percentage": "5%"}}, {"error_fraction": 0.05}),
        ({"errorLimit": {"percentage": 5}}, {"error_fraction": 0.05}),
        ({"timezone": "Asia/Shanghai"}, {"timezone": "Asia/Shanghai"}),
        ({"stateKey": " orders_daily "}, {"state_key": "orders_daily"}),
        ({}, {"state_key": None}),
    ],
)
def test_settings(setting: dict[str, Any], expect: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    doc["job"]["setting"] = setting
    s = parse_job(doc).settings
    for k, v in expect.items():
        assert getattr(s, k) == pytest.approx(v) if isinstance(v, float) else getattr(s, k) == v, k


def test_no_error_limit_allows_no_dirty_record() -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    assert parse_job(doc).settings.allows_no_dirty


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"speed": {"channel": 0}}, "job.setting.speed.channel: must be at least 1, got 0"),
        (
            {"speed": {"channel": 1.5}},
            "job.setting.speed.channel: must be a whole number >= 0, got 1.5",
        ),
        (
            {"errorLimit": {"record": "lots"}},
            "job.setting.errorLimit.record: must be a number, got 'lots'",
        ),
        (
            {"errorLimit": {"percentage": "150%"}},
            "job.setting.errorLimit.percentage: must be at most 100%",
        ),
        ({"timezone": "Mars/Olympus"}, "job.setting.timezone: unknown time zone 'Mars/Olympus'"),
        ({"sped": {}}, "job.setting.sped: unknown setting; did you mean 'speed'?"),
        ({"stateKey": "a#1"}, "job.setting.stateKey: must be a non-empty name without '#'"),
        ({"stateKey": ""}, "job.setting.stateKey: must be a non-empty name without '#'"),
    ],
)
def test_bad_settings_name_their_key(setting: dict[str, Any], message: str) -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    doc["job"]["setting"] = setting
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "a job file must hold an object"),
        ({"jobs": {}}, "not a job file: expected a top-level 'job'"),
        ({"job": {"content": []}}, "job.content: is required"),
        (
            {"job": {"content": [{"reader": {"parameter": {}}, "writer": {"name": "stream"}}]}},
            "job.content[0].reader.name: is required",
        ),
        (
            {
                "job": {
                    "content": [
                        {
                            "reader": {"name": "stream", "parameter": []},
                            "writer": {"name": "stream"},
                        }
                    ]
                }
            },
            "job.content[0].reader.parameter: must be an object, got list",
        ),
        (
            {
                "type": "job",
                "version": "2.0",
                "steps": [{"stepType": "stream", "category": "source"}],
            },
            "steps[0].category: 'source' is not one of reader, writer",
        ),
        (
            {
                "type": "job",
                "version": "2.0",
                "steps": [
                    {"stepType": "stream", "category": "reader", "name": "R"},
                    {"stepType": "stream", "category": "writer", "name": "W"},
                ],
                "order": {"hops": [{"from": "R", "to": "X"}]},
            },
            "order.hops[0]: from/to must name steps",
        ),
    ],
)
def test_malformed_jobs_are_config_errors(doc: Any, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_job(doc, "j.json")
    assert any(message in p for p in e.value.problems), e.value.problems


def test_invalid_json_names_file_line_and_column(tmp_path: Path) -> None:
    p = tmp_path / "job.json"
    p.write_text('{"job": {\n  "content": [,]\n}}')
    with pytest.raises(ConfigError, match=r"job\.json:2:\d+: invalid JSON"):
        load_document(p)


def test_yaml_jobs_are_read(tmp_path: Path) -> None:
    p = tmp_path / "job.yaml"
    p.write_text(
        "job:\n  content:\n    - reader: {name: stream, parameter: {}}\n      writer: {name: stream}\n"
    )
    assert parse_job(load_document(p)).shape == "datax"


def test_missing_job_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such job file"):
        load_document(tmp_path / "nope.json")
