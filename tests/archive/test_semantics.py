"""What lands where: path formats, cycles, event vs system time, recycling bounds, slicing,
empty cycles, late data, dirty records; against a Mosquitto broker the tests start, on a clock
the test sets."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.archive._brokers import Broker
from tests.archive._harness import Run, point, wait_for
from tidesync.archive.timing import to_ms

T0 = datetime(2019, 1, 2, 3, 30, tzinfo=UTC)


@pytest.fixture
def runs(tmp_path: Path, mosquitto: Broker) -> Iterator[list[Run]]:
    made: list[Run] = []
    yield made
    for r in made:
        r.finish()


def start(runs: list[Run], tmp: Path, broker: Broker, at: datetime = T0, **keys: object) -> Run:
    r = Run(tmp, broker, at, **keys)
    runs.append(r)
    return r


@pytest.mark.parametrize(
    ("fmt", "folder"),
    [
        ("YYYYMMDD", "20190102"),
        ("YYYYMMDD/HH", "20190102/03"),
        ("YYYY/MM/DD", "2019/01/02"),
        ("YYYY/MM/DD/HH", "2019/01/02/03"),
    ],
)
def test_each_path_format_names_the_partition_directory(
    runs: list[Run], tmp_path: Path, mosquitto: Broker, fmt: str, folder: str
) -> None:
    r = start(runs, tmp_path, mosquitto, pathFormat=fmt)
    r.send([point(to_ms(T0), temp=21.5, hum=40)])
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    assert list(r.files()) == [f"{folder}/measure_201901020300_0000.csv"]
    assert r.rows() == [
        {
            "orgId": "o1",
            "modelId": "m1",
            "assetId": "a1",
            "measurepoints": "temp",
            "timestamp": str(to_ms(T0)),
            "value": "21.5",
            "quality": "",
        },
        {
            "orgId": "o1",
            "modelId": "m1",
            "assetId": "a1",
            "measurepoints": "hum",
            "timestamp": str(to_ms(T0)),
            "value": "40",
            "quality": "",
        },
    ]


@pytest.mark.parametrize(
    ("cycle", "start_at", "end_at"),
    [
        ("1h", datetime(2019, 1, 2, 3, tzinfo=UTC), datetime(2019, 1, 2, 4, tzinfo=UTC)),
        ("12h", datetime(2019, 1, 2, 0, tzinfo=UTC), datetime(2019, 1, 2, 12, tzinfo=UTC)),
        ("24h", datetime(2019, 1, 2, 0, tzinfo=UTC), datetime(2019, 1, 3, 0, tzinfo=UTC)),
    ],
)
def test_each_cycle_holds_its_window_and_is_published_at_its_end(
    runs: list[Run],
    tmp_path: Path,
    mosquitto: Broker,
    cycle: str,
    start_at: datetime,
    end_at: datetime,
) -> None:
    r = start(runs, tmp_path, mosquitto, at=start_at, cycle=cycle, pathFormat="YYYYMMDD")
    r.send([point(1, first=1)])  # at the cycle's first millisecond
    r.at(end_at - timedelta(milliseconds=1))
    r.send([point(2, last=1)])  # at its last
    r.close_until(end_at - timedelta(milliseconds=1))
    assert r.files() == {}, "published before the cycle ended"
    r.close_until(end_at)
    stamp = start_at.strftime("%Y%m%d%H%M")
    name = f"{start_at:%Y%m%d}/measure_{stamp}_0000.csv"
    assert list(r.files()) == [name]
    assert [x["measurepoints"] for x in r.rows()] == ["first", "last"]
    r.send([point(3, next=1)])  # the next cycle
    r.close_until(end_at + (end_at - start_at))
    assert len(r.files()) == 2
    assert r.files()[name] == r.files()[name]


def test_event_time_places_rows_by_their_timestamp_system_time_by_arrival(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    ev = start(runs, tmp_path / "ev", mosquitto, generateBy="eventTime")
    sy = start(runs, tmp_path / "sy", mosquitto, generateBy="systemTime")
    yesterday_late = to_ms(datetime(2019, 1, 1, 23, 59, tzinfo=UTC))
    for r in (ev, sy):
        r.send([point(yesterday_late, temp=1), point(to_ms(T0), temp=2)])
        r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    assert sorted(ev.files()) == [
        "20190101/23/measure_201901020300_0000.csv",
        "20190102/03/measure_201901020300_0000.csv",
    ]
    assert sorted(sy.files()) == ["20190102/03/measure_201901020300_0000.csv"]
    assert [x["value"] for x in sy.rows()] == ["1", "2"]


def test_event_time_outside_plus_one_hour_or_minus_360_hours_is_recycled(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto, generateBy="eventTime", pathFormat="YYYYMMDD/HH")
    now = to_ms(T0)
    hour = 3_600_000
    cases = {
        "ahead_1h": now + hour,  # exactly +1 h: kept
        "ahead_1h_1ms": now + hour + 1,
        "behind_360h": now - 360 * hour,  # exactly -360 h: kept
        "behind_360h_1ms": now - 360 * hour - 1,
    }
    r.send([point(ts, **{name: 1}) for name, ts in cases.items()])
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    placed = {x["measurepoints"]: name for name in r.files() for x in r.rows(name)}
    stem = "measure_201901020300_0000.csv"
    assert placed == {
        "ahead_1h": f"20190102/04/{stem}",
        "ahead_1h_1ms": f"archive_recycling_measure/20190102/04/{stem}",
        "behind_360h": f"20181218/03/{stem}",
        "behind_360h_1ms": f"archive_recycling_measure/20181218/03/{stem}",
    }
    assert (r.arch.state.counters.rows, r.arch.state.counters.recycled) == (2, 2)  # type: ignore[union-attr]


def test_csv_is_sliced_so_that_no_file_passes_max_file_size(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto, target={"maxFileSize": "2KB"})
    r.send([point(to_ms(T0) + i, v=i) for i in range(300)])
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    files = r.files()
    names = sorted(files)
    assert len(names) > 3
    assert names == [f"20190102/03/measure_201901020300_{k:04d}.csv" for k in range(len(names))]
    for name in names[:-1]:
        assert 2048 - 60 < len(files[name]) <= 2048, name  # full, within one row of the limit
        assert files[name].startswith(b"orgId,modelId,")
    assert [int(x["value"]) for x in r.rows()] == list(range(300))


def test_parquet_files_hold_the_columns_and_are_sliced(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto, target={"format": "parquet", "maxFileSize": "64KB"})
    r.send(
        [
            [point(to_ms(T0) + i, **{f"p{k}": i * k for k in range(10)}) for i in range(j, j + 100)]
            for j in range(0, 3000, 100)
        ]
    )
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    names = sorted(r.files())
    assert len(names) >= 2 and all(n.endswith(".parquet") for n in names)
    tables = [pq.read_table(r.out / n) for n in names]
    assert tables[0].schema.names == [
        "orgId",
        "modelId",
        "assetId",
        "measurepoints",
        "timestamp",
        "value",
        "quality",
    ]
    assert str(tables[0].schema.field("timestamp").type) == "int64"
    assert sum(t.num_rows for t in tables) == 30_000


def test_a_cycle_without_messages_writes_no_file_and_no_directory(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto)
    r.close_until(datetime(2019, 1, 2, 6, tzinfo=UTC))
    assert not r.out.exists()
    r.send([point(1, x=1)])
    r.close_until(datetime(2019, 1, 2, 9, tzinfo=UTC))
    assert list(r.files()) == ["20190102/06/measure_201901020600_0000.csv"]


def test_late_data_for_a_published_cycle_goes_to_a_new_file_and_the_first_is_kept(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto)
    r.send([point(1, a=1)])
    r.stop(close_open_cycles=True)  # publishes 03:00-04:00 now, at 03:30
    first = r.files()
    assert list(first) == ["20190102/03/measure_201901020300_0000.csv"]
    r.start()  # still 03:30: more for the published cycle
    r.send([point(2, b=2)])
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    files = r.files()
    late = [n for n in files if n not in first]
    assert len(late) == 1 and late[0].startswith("20190102/03/measure_201901020300_late")
    assert files[list(first)[0]] == first[list(first)[0]]
    assert [x["measurepoints"] for x in r.rows(late[0])] == ["b"]


def test_malformed_payloads_are_dirty_records_and_the_rest_is_archived(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto)
    good = point(to_ms(T0), ok=1)
    r.send(
        [
            b"not json {",
            [good, {"orgId": "o1", "modelId": "m1", "timestamp": 5, "measurepoints": {"x": 1}}],
            {**good, "timestamp": "yesterday"},
            {
                "orgId": "o",
                "modelId": "m",
                "assetId": "a",
                "measurepoints": "t",
                "timestamp": 1,
                "value": 3,
                "quality": 192,
            },
            42,
        ]
    )
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    assert [x["measurepoints"] for x in r.rows()] == ["ok", "t"]
    assert r.rows()[1]["quality"] == "192"
    dirty_name = "archive_dirty_measure/20190102/03/measure_201901020300_0000.jsonl"
    dirty = [json.loads(x) for x in r.files()[dirty_name].splitlines()]
    reasons = [d["reason"] for d in dirty]
    assert reasons[0].startswith("not JSON")
    assert (
        reasons[1] == "[1]: assetId: expected a non-empty string, got nothing (the key is missing)"
    )
    assert reasons[2].startswith("timestamp: expected epoch milliseconds")
    assert reasons[3] == "expected a JSON object, got a number"
    assert {d["topic"] for d in dirty} == {r.topic}
    c = r.arch.state.counters  # type: ignore[union-attr]
    assert (c.messages, c.rows, c.dirty) == (5, 2, 4)


def test_changing_how_files_are_named_is_refused_while_the_log_holds_messages(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    from tidesync.archive.policy import parse_policies
    from tidesync.archive.service import Archiver, read_state
    from tidesync.errors import FatalError

    r = start(runs, tmp_path, mosquitto)
    r.send([point(1, a=1)])
    r.stop()
    doc = {"policies": [{**r.doc["policies"][0], "cycle": "24h"}]}
    changed = parse_policies(doc, "test.yaml", {}, tmp_path)[0]
    with pytest.raises(FatalError, match=r"cycle changed while its log .* still holds 1 messages"):
        Archiver(changed, base_dir=tmp_path).open()
    r.start()
    r.stop(close_open_cycles=True)
    assert read_state(r.policy.log_path).records == 0, "closing every cycle empties the log"
    a = Archiver(changed, base_dir=tmp_path)
    a.open()
    a.close()
    assert len(r.files()) == 1


def test_values_keep_their_json_spelling_and_an_out_of_range_number_is_dirty(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto)
    r.send(
        [
            b'{"orgId": "o", "modelId": "m", "assetId": "a", "timestamp": 1, "measurepoints":'
            b' {"f": 0.1, "i": 7, "b": true, "s": "on", "n": null, "o": {"x": [1, 2]},'
            b' "e": 1e-7, "z": 21.50, "pi": 3.14159265358979323846,'
            b' "nested": {"z": [21.50, 2e3, 3.14159265358979323846]}}}',
            b'{"orgId": "o", "modelId": "m", "assetId": "a", "timestamp": 1, "measurepoints":'
            b' {"big": 1e999}}',
        ]
    )
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    assert {x["measurepoints"]: x["value"] for x in r.rows()} == {
        "f": "0.1",
        "i": "7",
        "b": "true",
        "s": "on",
        "n": "",
        "o": '{"x":[1,2]}',
        "e": "1e-7",
        "z": "21.50",
        "pi": "3.14159265358979323846",
        "nested": '{"z":[21.50,2e3,3.14159265358979323846]}',
    }
    dirty = next(v for k, v in r.files().items() if k.endswith(".jsonl"))
    assert json.loads(dirty)["reason"] == "measurepoints.big: 1e999 is out of range"


def test_a_message_published_at_qos_0_is_archived_between_qos_1_ones(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    r = start(runs, tmp_path, mosquitto)
    r.send([point(1, q1=1)])
    a, pub = r.arch, r.pub
    assert a is not None and pub is not None
    pub.c.publish(r.topic, json.dumps(point(2, q0=1)), qos=0).wait_for_publish(10)
    wait_for(lambda: a.received == 2, "the QoS 0 message")
    r.send([point(3, q1_again=1)])
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    assert [x["measurepoints"] for x in r.rows()] == ["q1", "q0", "q1_again"]


def test_the_hour_a_dst_change_repeats_keeps_both_cycles_files(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    # Berlin falls back on 2019-10-27 at 03:00: 02:00-03:00 happens twice, two 1-hour cycles
    # (00:00-01:00 and 01:00-02:00 UTC) with one wall-clock start; the second must not replace
    # the first's file
    first = datetime(2019, 10, 27, 0, 30, tzinfo=UTC)
    r = start(runs, tmp_path, mosquitto, at=first, timezone="Europe/Berlin")
    r.send([point(to_ms(first), a=1)])
    second = datetime(2019, 10, 27, 1, 30, tzinfo=UTC)
    r.close_until(second)
    r.send([point(to_ms(second), b=1)])
    r.close_until(datetime(2019, 10, 27, 2, tzinfo=UTC))
    assert sorted(r.files()) == [
        "20191027/02/measure_201910270200_0000.csv",
        "20191027/02/measure_201910270200_repeat_0000.csv",
    ]
    assert sorted(x["measurepoints"] for x in r.rows()) == ["a", "b"]


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        # a float quality is taken when it is whole: 1e30 is, but no int64 holds it
        (b'"measurepoints": "t", "value": 1, "quality": 1e30',
         "quality: expected an integer, got 1e+30"),
        # JSON lets a string escape half a surrogate pair; no UTF-8 file holds the result
        (b'"measurepoints": "t", "value": "ab\\ud800"',
         "'ab\\ud800' holds an unpaired surrogate escape: not Unicode text"),
        (b'"measurepoints": {"x\\udc00": 1}',
         "'x\\udc00' holds an unpaired surrogate escape: not Unicode text"),
        # JSON has no infinity: a nested 1e999 could not be written as JSON text
        (b'"measurepoints": "t", "value": {"x": [1e999]}', "value: 1e999 is out of range"),
    ],
)  # fmt: skip
def test_a_value_no_column_can_hold_is_dirty_and_the_cycle_is_still_published(
    runs: list[Run], tmp_path: Path, mosquitto: Broker, bad: bytes, reason: str
) -> None:
    # such a message used to stop the archiver when its cycle closed, and again after every
    # restart (it is in the log): the good rows of its cycle were never published
    r = start(runs, tmp_path, mosquitto)
    ids = b'{"orgId": "o", "modelId": "m", "assetId": "a", "timestamp": 1, '
    r.send([point(1, good=1), ids + bad + b"}"])
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    a = r.arch
    assert a is not None and a.failure is None
    assert [x["measurepoints"] for x in r.rows()] == ["good"]
    dirty = next(v for k, v in r.files().items() if k.endswith(".jsonl"))
    assert json.loads(dirty)["reason"] == reason


def test_the_day_after_a_skipped_midnight_starts_its_own_cycle_at_midnight(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    # Santiago springs forward on 2024-09-08 at 00:00: that day's 24-hour cycle starts at 01:00
    # and must end at the next midnight; it ran to 01:00, and the next day's first hour went
    # into the previous day's file
    day = datetime(2024, 9, 8, 13, tzinfo=UTC)  # 10:00 in Santiago
    r = start(runs, tmp_path, mosquitto, at=day, cycle="24h", pathFormat="YYYYMMDD",
              timezone="America/Santiago")  # fmt: skip
    r.send([point(to_ms(day), a=1)])
    next_day = datetime(2024, 9, 9, 3, 30, tzinfo=UTC)  # 00:30 in Santiago
    r.close_until(next_day)
    r.send([point(to_ms(next_day), b=1)])
    r.close_until(datetime(2024, 9, 10, 3, tzinfo=UTC))
    assert {k: [x["measurepoints"] for x in r.rows(k)] for k in r.files()} == {
        "20240908/measure_202409080100_0000.csv": ["a"],
        "20240909/measure_202409090000_0000.csv": ["b"],
    }


def test_a_clock_set_back_by_weeks_loses_nothing_across_a_restart(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    # published cycles more than 40 days older than the newest are forgotten; a record for one
    # (a gateway booting with its clock weeks behind) goes to a late file, but a restart before
    # that file was published took the record for published and dropped it
    march = datetime(2019, 3, 1, 10, 30, tzinfo=UTC)
    r = start(runs, tmp_path, mosquitto, at=march)
    r.send([point(to_ms(march), a=1)])
    r.stop(close_open_cycles=True)
    january = datetime(2019, 1, 1, 0, 30, tzinfo=UTC)
    r.at(january)
    r.start()
    r.send([point(to_ms(january), b=1)])
    r.stop()
    r.start()
    r.close_until(datetime(2019, 1, 1, 1, tzinfo=UTC))
    assert {k: [x["measurepoints"] for x in r.rows(k)] for k in r.files()} == {
        "20190301/10/measure_201903011000_0000.csv": ["a"],
        "20190101/00/measure_201901010000_late2_0000.csv": ["b"],
    }


def test_a_binary_dirty_payload_keeps_its_bytes(
    runs: list[Run], tmp_path: Path, mosquitto: Broker
) -> None:
    # the dirty line spelt bytes that are not UTF-8 as "\xff", the same as the text \xff: a
    # binary payload could not be told from a text one, nor recovered
    import base64

    r = start(runs, tmp_path, mosquitto)
    binary, text = b"\x08\xff\\xff", b"\x08\\xff\\xff"
    r.send([binary, text])
    r.close_until(datetime(2019, 1, 2, 4, tzinfo=UTC))
    dirty = next(v for k, v in r.files().items() if k.endswith(".jsonl"))
    lines = [json.loads(x) for x in dirty.splitlines()]
    assert [x["payload"] for x in lines] == ["\x08\\xff\\xff", "\x08\\xff\\xff"]
    assert base64.b64decode(lines[0]["payloadBase64"]) == binary
    assert "payloadBase64" not in lines[1], "a UTF-8 payload is its text"
