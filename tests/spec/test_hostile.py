"""Hostile job files (issue 12, item 5): each case that ended in a traceback or ran without end
is now exit 2 with a message naming the key path. Cases that used to run for minutes carry a
timeout far above their cost now, so a regression fails instead of hanging the suite."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tidesync.cli import main
from tidesync.errors import ConfigError, DirtyRecordError, redact
from tidesync.spec.job import MAX_DEPTH, MAX_VALUES, load_document

STREAM = {
    "reader": {
        "name": "streamreader",
        "parameter": {"column": [{"type": "long", "value": 1}], "sliceRecordCount": 1},
    },
    "writer": {"name": "streamwriter", "parameter": {"print": False}},
}


def validate(path: Path) -> tuple[int, list[str]]:
    r = CliRunner().invoke(main, ["validate", str(path)])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stderr.splitlines()


def write(tmp_path: Path, text: str, suffix: str = ".json") -> Path:
    p = tmp_path / f"job{suffix}"
    p.write_text(text, encoding="utf-8")
    return p


def datax(setting: Any = None, **content: Any) -> str:
    job: dict[str, Any] = {"content": [{**STREAM, **content}]}
    if setting is not None:
        job["setting"] = setting
    return json.dumps({"job": job})


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("text", "suffix", "message"),
    [
        (
            '{"job": ' + "[" * 100_000 + "]" * 100_000 + "}",
            ".json",
            f"nested more than {MAX_DEPTH} levels deep",
        ),
        (
            "job: " + "[" * 100_000 + "]" * 100_000,
            ".yaml",
            f"nested more than {MAX_DEPTH} levels deep",
        ),
        (
            '{"job": {"content": ' + "[" * 200 + "]" * 200 + "}}",
            ".json",
            "job.json: job.content[0][0][0][0]",
        ),
    ],
)
def test_deep_nesting_is_refused(tmp_path: Path, text: str, suffix: str, message: str) -> None:
    code, err = validate(write(tmp_path, text, suffix))
    assert code == 2 and len(err) == 1 and message in err[0], err
    assert err[0].endswith(f"nested more than {MAX_DEPTH} levels deep"), err


def test_the_nesting_limit_leaves_room_for_real_jobs(tmp_path: Path) -> None:
    nested: Any = "x"
    for _ in range(MAX_DEPTH - 1):
        nested = [nested]
    assert load_document(write(tmp_path, json.dumps({"a": nested}))) == {"a": nested}


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        (
            {"errorLimit": {"record": [0]}},
            "job.setting.errorLimit.record: must be a number, got list",
        ),
        (
            {"errorLimit": {"percentage": {"x": 1}}},
            "job.setting.errorLimit.percentage: must be a number, got dict",
        ),
        ({"speed": {"channel": [4]}}, "job.setting.speed.channel: must be a number, got list"),
        (
            {"speed": {"throttle": {}}},
            "job.setting.speed.throttle: must be true or false, got dict",
        ),
    ],
)
def test_a_list_or_object_where_a_number_belongs_is_an_error(
    tmp_path: Path, setting: dict[str, Any], message: str
) -> None:
    code, err = validate(write(tmp_path, datax(setting)))
    assert (code, err) == (2, [f"error: {message}"])


def test_unhashable_hops_are_an_error(tmp_path: Path) -> None:
    doc = {
        "type": "job",
        "version": "2.0",
        "steps": [
            {
                "stepType": "stream",
                "category": "reader",
                "name": "R",
                **{"parameter": STREAM["reader"]["parameter"]},
            },
            {
                "stepType": "stream",
                "category": "writer",
                "name": "W",
                "parameter": {"print": False},
            },
        ],
        "order": {"hops": [{"from": ["R"], "to": {"W": 1}}, {"from": "R", "to": [["W"]]}]},
    }
    code, err = validate(write(tmp_path, json.dumps(doc)))
    assert code == 2
    assert err == [
        "error: order.hops[0]: from/to must name steps (R, W), got list -> dict",
        "error: order.hops[1]: from/to must name steps (R, W), got 'R' -> list",
    ]


@pytest.mark.parametrize(
    ("parameter", "message"),
    [
        (
            {"encoding": "utf\u00008"},
            "job.content[0].writer.parameter.encoding: holds a NUL character",
        ),
        (
            {"print": False, "a\u0000b": 1},
            "job.content[0].writer.parameter: a key holds a NUL character",
        ),
        ({"print": "\ud800"}, "job.content[0].writer.parameter.print: holds a lone surrogate"),
        (
            {"print": False, "line\nbreak": 1},
            "job.content[0].writer.parameter: a key holds a control character",
        ),
    ],
)
def test_nul_and_broken_unicode_are_refused_with_their_path(
    tmp_path: Path, parameter: dict[str, Any], message: str
) -> None:
    text = datax(writer={"name": "streamwriter", "parameter": parameter})
    code, err = validate(write(tmp_path, text))
    assert code == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_a_4300_digit_integer_is_an_error_naming_its_key(tmp_path: Path, suffix: str) -> None:
    text = datax({"speed": {"channel": 1}}).replace('"channel": 1', '"channel": ' + "7" * 4301)
    code, err = validate(write(tmp_path, text, suffix))
    assert (code, err) == (
        2,
        [
            f"error: {tmp_path / ('job' + suffix)}: job.setting.speed.channel: a number of 4301 digits is too large"
        ],
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1e999", "job.setting.speed.byte: must be a finite number, got inf"),
        ("NaN", "job.setting.speed.byte: must be a finite number, got nan"),
        ("-Infinity", "job.setting.speed.byte: must be a finite number, got -inf"),
        (str(2**64), f"job.setting.speed.byte: {2**64} is too large (numbers must fit in 64 bits)"),
    ],
)
def test_numbers_beyond_64_bits_or_not_finite_are_errors(
    tmp_path: Path, value: str, message: str
) -> None:
    text = datax({"speed": {"byte": 1}}).replace('"byte": 1', f'"byte": {value}')
    code, err = validate(write(tmp_path, text))
    assert code == 2 and len(err) == 1 and err[0].endswith(message), err


@pytest.mark.timeout(30)
def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["job:", "  content: *a9"]
    text = "\n".join(lines) + "\n"
    assert len(text) < 1024  # 9**10 values once expanded
    code, err = validate(write(tmp_path, text, ".yaml"))
    assert code == 2 and len(err) == 1, err
    assert f"more than {MAX_VALUES:,} values in one file" in err[0]


def test_yaml_aliases_within_the_limit_still_work(tmp_path: Path) -> None:
    text = (
        "shared: &p {column: [{type: long, value: 1}], sliceRecordCount: 1}\n"
        "job:\n  content:\n"
        "    - {reader: {name: streamreader, parameter: *p}, writer: {name: streamwriter, parameter: {print: false}}}\n"
    )
    doc = load_document(write(tmp_path, text, ".yaml"))
    assert doc["job"]["content"][0]["reader"]["parameter"]["sliceRecordCount"] == 1


def test_hostile_documents_are_config_errors_from_load_document(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_document(write(tmp_path, "[" * 5000, ".yaml"))
    assert e.value.problems == [
        f"{tmp_path / 'job.yaml'}: nested more than {MAX_DEPTH} levels deep"
    ]


# -- redaction in linear time --------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "value",
    [
        "a" * 2_000_000,  # was quadratic: 60,000 characters took 54 s
        "a1.b-" * 400_000,
        "x://u:" + "p" * 2_000_000,
        "password" + " " * 2_000_000,
        "a://" * 500_000,
    ],
)
def test_redact_runs_in_linear_time_on_long_values(value: str) -> None:
    assert redact(value) == value  # nothing to mask, and it returns at once


@pytest.mark.timeout(30)
def test_a_dirty_record_with_a_long_value_is_kept_at_once() -> None:
    reason = "cannot convert " + "b" * 1_000_000 + " mysql://app:s3cret@db/x"
    e = DirtyRecordError(reason)
    assert e.reason.endswith("mysql://***@db/x") and "s3cret" not in e.reason


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mysql://app:s3cret@db:3306/x", "mysql://***@db:3306/x"),
        ("jdbc:postgresql://u:p%40ss@h/db", "jdbc:postgresql://***@h/db"),
        ("s3://AKIA:wJalr@bucket/key", "s3://***@bucket/key"),
        (
            "see postgresql+psycopg://u:pw@h and mysql://a:b@c",
            "see postgresql+psycopg://***@h and mysql://***@c",
        ),
        ("http://host:8080/path", "http://host:8080/path"),
        ("password=hunter2, next", "password=***, next"),
        ("Token: 'abc123'", "Token: '***'"),
        ('{"accessKeySecret": "x"}', '{"accessKeySecret": "x"}'),
        ("accessKeySecret=zzz&a=1", "accessKeySecret=***&a=1"),
    ],
)
def test_redact_still_masks_urls_and_pairs(text: str, expected: str) -> None:
    assert redact(text) == expected
