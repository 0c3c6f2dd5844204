"""Job files: the DataX and both script-mode shapes read into one JobSpec; settings; errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tidesync.errors import ConfigError
from tidesync.spec.job import declared_timezone, load_document, parse_job

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
        ({"errorLimit": {"percentage": "1%"}}, {"error_fraction": 0.01}),
        ({"errorLimit": {"percentage": "100%"}}, {"error_fraction": 1.0}),
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


@pytest.mark.parametrize(
    ("written", "fraction"), [("33.3%", 0.333), ("0.7%", 0.007), (14.1, 0.141)]
)
def test_a_percent_is_the_decimal_written_not_its_float_over_100(
    written: Any, fraction: float
) -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    doc["job"]["setting"] = {"errorLimit": {"percentage": written}}
    assert parse_job(doc).settings.error_fraction == fraction  # exactly: 33.3 / 100 is 0.33299...


def test_both_spellings_of_one_zone_are_one_zone() -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    doc["job"]["setting"] = {"timezone": "Asia/Shanghai", "timeZone": "Asia/Shanghai"}
    assert parse_job(doc).settings.timezone == "Asia/Shanghai"


def test_script_v1_with_a_setting_in_two_places_is_refused() -> None:
    doc = json.loads(json.dumps(SHAPES["script-v1"]))
    # the top-level setting was dropped unread: its error limit and its typo alike
    doc["setting"] = {"errorLimit": {"record": 0}, "sped": 1}
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert e.value.problems == [
        "setting: the job has both configuration.setting and a top-level setting; keep one "
        "(configuration.setting, as DataWorks writes it)"
    ]


def test_script_v1_reads_a_top_level_setting_under_its_own_key_path() -> None:
    doc = json.loads(json.dumps(SHAPES["script-v1"]))
    doc["setting"] = doc["configuration"].pop("setting")
    assert parse_job(doc).settings.concurrent == 2
    doc["setting"]["timezone"] = "Asia/Shanghai"  # the run time is read in it, as the job's
    assert declared_timezone(doc) == parse_job(doc).settings.timezone == "Asia/Shanghai"
    doc["setting"]["sped"] = 1
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert e.value.problems == ["setting.sped: unknown setting; did you mean 'speed'?"]


def test_a_zone_named_by_a_parameter_is_declared_with_its_value() -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    doc["job"]["setting"] = {"timezone": "${tz}"}
    assert declared_timezone(doc, {"tz": "Asia/Shanghai"}) == "Asia/Shanghai"
    assert declared_timezone(doc, {"tz": "$[hh24]"}) is None  # not a plain value
    assert declared_timezone(doc) is None


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
        *(  # 1 read as the fraction 100% let a run with every row dirty succeed
            (
                {"errorLimit": {"percentage": one}},
                f"job.setting.errorLimit.percentage: {one!r} may mean 100% (a fraction",
            )
            for one in (1, 1.0, "1")
        ),
        ({"timezone": "Mars/Olympus"}, "job.setting.timezone: unknown time zone 'Mars/Olympus'"),
        # '%' was dropped from any number: "5%" ran at 5 records/s, "4%" with 4 channels
        ({"speed": {"record": "5%"}}, "job.setting.speed.record: must be a number, got '5%'"),
        ({"speed": {"channel": "4%"}}, "job.setting.speed.channel: must be a number, got '4%'"),
        ({"errorLimit": {"record": "2%"}}, "job.setting.errorLimit.record: must be a number"),
        (  # naive times and $[...] were read in the first spelling's zone, silently
            {"timezone": "UTC", "timeZone": "Asia/Shanghai"},
            "job.setting.timezone and job.setting.timeZone name two zones, 'UTC' and "
            "'Asia/Shanghai'; keep one",
        ),
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
        (  # the step's name is not its connector: say which step lacks one, and only that
            {
                "type": "job",
                "version": "2.0",
                "steps": [
                    {"parameter": {}, "name": "Reader", "category": "reader"},
                    {"stepType": "stream", "category": "writer", "name": "W"},
                ],
            },
            "steps[0].stepType: step 'Reader' has no stepType; give the connector's name",
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


# -- every key is known, or deliberately ignored --------------------------------------------------


def _with(shape: str, path: list[Any], key: str, value: Any = 1) -> dict[str, Any]:
    doc = json.loads(json.dumps(SHAPES[shape]))
    node = doc
    for p in path:
        node = node.setdefault(p, {}) if isinstance(p, str) else node[p]
    node[key] = value
    return doc


@pytest.mark.parametrize(
    ("shape", "path", "key", "message"),
    [
        ("datax", [], "jobs", "jobs: unknown key; did you mean 'job'?"),
        ("datax", ["job"], "contnet", "job.contnet: unknown key; did you mean 'content'?"),
        (
            "datax",
            ["job", "setting", "speed"],
            "chanel",
            "job.setting.speed.chanel: unknown key; did you mean 'channel'?",
        ),
        (
            "datax",
            ["job", "setting", "errorLimit"],
            "precentage",
            "job.setting.errorLimit.precentage: unknown key; did you mean 'percentage'?",
        ),
        (
            "datax",
            ["job", "content", 0],
            "transformers",
            "job.content[0].transformers: unknown key; did you mean 'transformer'?",
        ),
        (
            "datax",
            ["job", "content", 0, "reader"],
            "parameters",
            "job.content[0].reader.parameters: unknown key; did you mean 'parameter'?",
        ),
        (
            "datax",
            ["job", "content", 0, "transformer", 0],
            "parameters",
            "job.content[0].transformer[0].parameters: unknown key; did you mean 'parameter'?",
        ),
        (
            "script-v1",
            [],
            "configuraton",
            "configuraton: unknown key; did you mean 'configuration'?",
        ),
        (
            "script-v1",
            ["configuration"],
            "writter",
            "configuration.writter: unknown key; did you mean 'writer'?",
        ),
        (
            "script-v1",
            ["configuration", "setting"],
            "errorlimit",
            "configuration.setting.errorlimit: unknown setting; did you mean 'errorLimit'?",
        ),
        ("script-v2", [], "oder", "oder: unknown key; did you mean 'order'?"),
        (
            "script-v2",
            ["steps", 0],
            "categroy",
            "steps[0].categroy: unknown key; did you mean 'category'?",
        ),
        ("script-v2", ["order"], "hop", "order.hop: unknown key; did you mean 'hops'?"),
        (
            "script-v2",
            ["order", "hops", 0],
            "too",
            "order.hops[0].too: unknown key; did you mean 'to'?",
        ),
    ],
)
def test_an_unknown_key_is_an_error_with_its_path(
    shape: str, path: list[Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_job(_with(shape, path, key))
    assert message in e.value.problems, e.value.problems


def test_every_unknown_key_is_reported_at_once() -> None:
    doc = _with("datax", [], "extra")
    doc["job"]["setting"] = {"speed": {"chanel": 2}, "errorLimit": {"precentage": 1}, "sped": {}}
    doc["job"]["content"][0]["writer"]["parameters"] = {}
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert [p.split(":")[0] for p in e.value.problems] == [
        "extra",
        "job.setting.sped",
        "job.setting.speed.chanel",
        "job.setting.errorLimit.precentage",
        "job.content[0].writer.parameters",
    ]


@pytest.mark.parametrize(
    ("shape", "add", "ignored"),
    [
        (
            "datax",
            {"core": {"transport": {}}, "job.setting.jvmOption": "-Xmx1g"},
            ["core", "job.setting.jvmOption"],
        ),
        (
            "script-v2",
            {"setting.executeMode": None, "setting.jvmOption": "-Xmx1g"},
            ["setting.executeMode", "setting.jvmOption"],
        ),
        (
            "script-v1",
            {"configuration.setting.speed": {"throttle": False, "mbps": "1", "concurrent": 1}},
            ["configuration.setting.speed.mbps"],
        ),
    ],
)
def test_datax_keys_tidesync_ignores_are_listed_not_errors(
    shape: str, add: dict[str, Any], ignored: list[str]
) -> None:
    doc = json.loads(json.dumps(SHAPES[shape]))
    for dotted, value in add.items():
        *parents, key = dotted.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[key] = value
    spec = parse_job(doc)
    assert spec.ignored == ignored


def test_speed_limits_apply_and_are_not_ignored_while_throttled() -> None:
    doc = _with("datax", ["job", "setting"], "speed", {"mbps": 1, "throttle": True})
    spec = parse_job(doc)
    assert (spec.ignored, spec.settings.byte_rate) == ([], 1048576)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"job": {"content": [{}]}}, "job.content[0].reader: is required"),
        (
            {"job": {"content": [{"reader": {}, "writer": {}}]}},
            "job.content[0].reader.name: is required",
        ),
        (
            {"type": "job", "version": "1.0", "configuration": {}},
            "configuration.reader: is required",
        ),
        (
            {
                "type": "job",
                "version": "2.0",
                "steps": [{"stepType": "stream", "category": "reader"}],
            },
            "order.hops: is required",
        ),
        (
            {
                "type": "job",
                "version": "2.0",
                "steps": [{"stepType": "stream", "category": "writer"}] * 2,
            },
            "order.hops: is required",
        ),
    ],
)
def test_a_job_without_a_reader_writer_pair_is_an_error(doc: Any, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert any(message in p for p in e.value.problems), e.value.problems


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            {"job.setting.errorLimit": {"record": [0]}},
            "job.setting.errorLimit.record: must be a number, got list",
        ),
        (
            {"job.setting.errorLimit": {"record": {"n": 0}}},
            "job.setting.errorLimit.record: must be a number, got dict",
        ),
        (
            {"job.setting.speed": {"channel": [2]}},
            "job.setting.speed.channel: must be a number, got list",
        ),
        (
            {"job.setting.speed": {"byte": float("inf")}},
            "job.setting.speed.byte: must be a number, got inf",
        ),
        ({"job.setting.speed": {"record": 10**400}}, "job.setting.speed.record: must be a number"),
        (
            {"job.setting.speed": {"throttle": [False]}},
            "job.setting.speed.throttle: must be true or false, got list",
        ),
        ({"job.setting": {"timezone": ["UTC"]}}, "job.setting.timezone: unknown time zone list"),
        ({"job.setting": []}, "job.setting: must be an object, got list"),
        (
            {"job.content[0].reader.name": ["stream"]},
            "job.content[0].reader.name: must be a string, got list",
        ),
        (
            {"job.content[0].transformer": {"name": "x"}},
            "job.content[0].transformer: must be a list, got dict",
        ),
    ],
)
def test_a_value_of_the_wrong_type_names_its_key(edit: dict[str, Any], message: str) -> None:
    doc = json.loads(json.dumps(SHAPES["datax"]))
    for dotted, value in edit.items():
        *parents, key = dotted.replace("[0]", ".0").split(".")
        node: Any = doc
        for p in parents:
            node = node[int(p)] if p.isdigit() else node.setdefault(p, {})
        node[key] = value
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "jobs"}, "type: must be 'job', got 'jobs'"),
        ({"version": "3.0"}, "version: must be '1.0' or '2.0', got '3.0'"),
        ({"version": ["2.0"]}, "version: must be '1.0' or '2.0', got list"),
        (
            {"order": {"hops": [{"from": ["Reader"], "to": {"x": 1}}]}},
            "order.hops[0]: from/to must name steps (Reader, Writer), got list -> dict",
        ),
        ({"order": {"hops": "Reader->Writer"}}, "order.hops: must be a list, got str"),
        ({"order": ["Reader", "Writer"]}, "order: must be an object, got list"),
    ],
)
def test_script_v2_fields_are_checked_before_use(change: dict[str, Any], message: str) -> None:
    doc = {**json.loads(json.dumps(SHAPES["script-v2"])), **change}
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert message in e.value.problems, e.value.problems


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"name": ["R"]}, "steps[1].name: must be a string, got list"),
        ({"name": "Reader"}, "steps[1].name: 'Reader' names two steps"),
    ],
)
def test_script_v2_step_names_are_strings_and_unique(step: dict[str, Any], message: str) -> None:
    doc = json.loads(json.dumps(SHAPES["script-v2"]))
    doc["steps"][1].update(step)
    with pytest.raises(ConfigError) as e:
        parse_job(doc)
    assert any(p.startswith(message) for p in e.value.problems), e.value.problems
