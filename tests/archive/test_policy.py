"""Policy files: every problem under its key path, exit 2, nothing connected or written."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from tidesync.archive.policy import parse_policies
from tidesync.cli import main
from tidesync.errors import ConfigError

GOOD = {
    "name": "plant1",
    "source": {
        "type": "mqtt",
        "url": "mqtt://127.0.0.1:1883",
        "topics": ["plant1/+/measure"],
        "qos": 1,
        "clientId": "tidesync-plant1",
    },
    "channel": "realtime",
    "generateBy": "eventTime",
    "cycle": "1h",
    "pathFormat": "YYYYMMDD/HH",
    "timezone": "UTC",
    "target": {
        "path": "archive/plant1",
        "fileName": "measure",
        "format": "csv",
        "maxFileSize": "64MB",
    },
}


def write(tmp: Path, *policies: dict[str, object]) -> Path:
    path = tmp / "policies.yaml"
    path.write_text(yaml.safe_dump({"policies": list(policies)}))
    return path


def test_the_issue_example_reads_with_its_defaults(tmp_path: Path) -> None:
    nats = {
        **GOOD,
        "name": "plant2",
        "generateBy": "systemTime",
        "source": {
            "type": "nats",
            "url": "nats://127.0.0.1:4222",
            "stream": "MEASURE",
            "subject": "plant1.>",
            "durable": "plant1",
        },
        "target": {**GOOD["target"], "fileName": "m2"},
    }  # type: ignore[dict-item]
    a, b = parse_policies({"policies": [GOOD, nats]}, "p.yaml", {}, tmp_path)
    assert (a.cycle_hours, a.strftime, a.by_event_time) == (1, "%Y%m%d/%H", True)
    assert a.target.max_file_size == 64 << 20
    assert a.log_path == tmp_path / ".tidesync" / "archive" / "plant1"
    assert (b.source.type, b.source.stream, b.by_event_time) == ("nats", "MEASURE", False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cycle": "2h"}, "policies[0].cycle: '2h' is not one of 1h, 12h, 24h"),
        (
            {"pathFormat": "YYYYMMDDHH"},
            "policies[0].pathFormat: 'YYYYMMDDHH' is not one of YYYYMMDD, YYYYMMDD/HH, YYYY/MM/DD, "
            "YYYY/MM/DD/HH; did you mean 'YYYYMMDD/HH'?",
        ),
        (
            {"channel": "offline"},
            "policies[0].generateBy: eventTime is for the realtime channel; the offline channel is "
            "archived by systemTime",
        ),
        ({"timezone": "Mars/Base"}, "policies[0].timezone: 'Mars/Base' is not a time zone name"),
        ({"cycel": "1h"}, "policies[0].cycel: unknown key; did you mean 'cycle'?"),
        (
            {"source": {**GOOD["source"], "qos": 0}},  # type: ignore[dict-item]
            "policies[0].source.qos: 0: the archiver subscribes with QoS 1",
        ),
        (
            {"source": {**GOOD["source"], "topics": ["a/#/b"]}},  # type: ignore[dict-item]
            "policies[0].source.topics[0]: 'a/#/b' is not an MQTT topic filter",
        ),
        (
            {"source": {"type": "kafka", "url": "x"}},
            "policies[0].source.type: 'kafka' is not one of mqtt, nats",
        ),
        (
            {"target": {"path": "out", "fileName": "m", "format": "orc"}},
            "policies[0].target.format: 'orc' is not one of csv, parquet",
        ),
        (
            {"target": {"path": "out", "fileName": "m", "maxFileSize": "big"}},
            "policies[0].target.maxFileSize: must be a positive size such as 1048576 or '64MB'",
        ),
        ({"target": {"path": "out"}}, "policies[0].target.fileName: is required"),
        (
            {
                "source": {
                    "type": "nats",
                    "url": "nats://127.0.0.1:42x2",
                    "stream": "S",
                    "subject": "s.>",
                    "durable": "d",
                }
            },
            "policies[0].source.url: 'nats://127.0.0.1:42x2': the port is not a number",
        ),
        (  # a local folder: the files landed there, and the endpoint was ignored
            {"target": {"path": "archive/x", "fileName": "m", "endpoint": "http://h:9000"}},
            "policies[0].target.endpoint: is for an object store path (s3://bucket/prefix); "
            "'archive/x' is a local folder, where it would be ignored",
        ),
        (
            {"target": {"path": "s3://b/x", "fileName": "m", "accessKeyId": "k"}},
            "policies[0].target.accessKeySecret: is required with accessKeyId",
        ),
    ],
)
def test_each_mistake_is_named_by_its_key_path(
    tmp_path: Path, change: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        parse_policies({"policies": [{**GOOD, **change}]}, "p.yaml", {}, tmp_path)
    assert any(p.startswith(f"p.yaml: {message}") for p in e.value.problems), e.value.problems


def test_check_reports_every_problem_and_exits_2_creating_nothing(tmp_path: Path) -> None:
    bad = {
        **GOOD,
        "cycle": "2h",
        "timezone": "Nowhere",
        "source": {**GOOD["source"], "clientId": None},
    }  # type: ignore[dict-item]
    dup = {**GOOD}
    path = write(tmp_path, bad, dup)
    r = CliRunner().invoke(main, ["archive", "check", str(path)])
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert (
        f"error: {path}: policies[0].cycle: '2h' is not one of 1h, 12h, 24h; did you mean '24h'?"
        in lines
    )
    assert f"error: {path}: policies[0].source.clientId: is required" in lines
    assert any("policies[0].timezone: 'Nowhere'" in x for x in lines)
    assert "Traceback" not in r.output
    r = CliRunner().invoke(main, ["archive", "check", str(write(tmp_path, GOOD, dup))])
    assert r.exit_code == 2
    assert "policies[1].name: 'plant1' is also the name of policies[0]" in r.output
    assert "two policies would write the same files" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["policies.yaml"]


def test_check_passes_a_good_file_and_run_refuses_an_unknown_policy(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    r = CliRunner().invoke(main, ["archive", "check", str(path)])
    assert (r.exit_code, r.output.strip()) == (0, f"{path}: ok (1 policy: plant1)")
    r = CliRunner().invoke(main, ["archive", "run", str(path), "--policy", "plant"])
    assert r.exit_code == 2
    assert (
        "--policy: 'plant' is not a policy of" in r.output and "did you mean 'plant1'?" in r.output
    )
    r = CliRunner().invoke(main, ["archive", "check", str(tmp_path / "nope.yaml")])
    assert r.exit_code == 2 and "nope.yaml: no such policy file" in r.output


def test_a_secret_in_the_url_never_shows(tmp_path: Path) -> None:
    src = {**GOOD["source"], "url": "mqtt://u:hunter2@127.0.0.1:99999"}  # type: ignore[dict-item]
    path = write(tmp_path, {**GOOD, "source": src})
    r = CliRunner().invoke(main, ["archive", "check", str(path)])
    assert r.exit_code == 2 and "hunter2" not in r.output and "***@127.0.0.1" in r.output


def test_two_policies_reading_through_one_session_or_consumer_are_refused(
    tmp_path: Path,
) -> None:
    # a copied policy with a new name and target but the same clientId (or durable): the broker
    # handed each message to one of the two, so each target silently held part of the stream
    copy = {**GOOD, "name": "plant1-copy", "target": {"path": "copy", "fileName": "measure"}}
    nats = {"type": "nats", "url": "nats://127.0.0.1:4222", "stream": "S", "subject": "s.>",
            "durable": "arch"}  # fmt: skip
    path = write(
        tmp_path,
        GOOD,
        copy,
        {**GOOD, "name": "n1", "source": nats, "target": {"path": "n1", "fileName": "m"}},
        {**GOOD, "name": "n2", "source": nats, "target": {"path": "n2", "fileName": "m"}},
        {  # the same clientId on another broker is another session
            **copy,
            "name": "other-broker",
            "source": {**GOOD["source"], "url": "mqtt://127.0.0.1:1884"},  # type: ignore[dict-item]
            "target": {"path": "other", "fileName": "m"},
        },
    )
    r = CliRunner().invoke(main, ["archive", "check", str(path)])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"error: {path}: policies[1].source.clientId: 'tidesync-plant1' on the same broker is "
        "also that of policy 'plant1'; the broker would hand each message to only one of them",
        f"error: {path}: policies[3].source.durable: 'arch' on the same broker and stream is "
        "also that of policy 'n1'; the broker would hand each message to only one of them",
    ]
