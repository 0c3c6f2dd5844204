"""The stream reader: generated rows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime

import pyarrow as pa
import pytest

from tidesync.connectors.base import Context, Split
from tidesync.connectors.stream import Reader, Writer
from tidesync.errors import ConfigError

WHERE = "job.content[0].reader.parameter"


def rows(reader: Reader, channels: int) -> list[int]:
    out: list[int] = []
    for split in reader.splits(channels):
        out += pa.Table.from_batches(list(reader.read(split))).column(0).to_pylist()
    return out


def test_an_incr_column_counts_from_start_by_step_across_splits() -> None:
    r = Reader({"column": [{"type": "long", "incr": "5,3"}], "recordCount": 5}, Context())
    assert rows(r, 2) == [5, 8, 11, 14, 17]


@pytest.mark.parametrize(
    ("incr", "count", "last"),
    [
        ("9223372036854775805,1", 4, 9223372036854775808),
        ("-9223372036854775807,-1", 3, -(2**63) - 1),
    ],
)
def test_an_incr_column_that_would_pass_a_long_is_a_config_error(
    incr: str, count: int, last: int
) -> None:
    r = Reader(
        {"column": [{"type": "long", "incr": incr}], "recordCount": count}, Context(where=WHERE)
    )
    with pytest.raises(ConfigError) as e:
        r.splits(1)  # not values that wrapped around to the other end
    assert str(e.value) == (
        f"{WHERE}.column[0].incr: {incr} over {count} rows reaches {last}, past the range of a long"
    )


@pytest.mark.parametrize(
    ("column", "problem"),
    [
        ({"type": "long", "random": "10,1"}, "long column: random 10,1: the low end first, as in 1,10"),
        ({"type": "string", "random": "5,2"}, "string column: random 5,2: the low end first, as in 2,5"),
        ({"type": "date", "random": "2024-12-31,2024-01-01"},
         "date column: random 2024-12-31,2024-01-01: the low end first, as in 2024-01-01,2024-12-31"),
        ({"type": "bytes", "random": "-1,3"}, "bytes column: a length must be 0 or more, got -1"),
    ],
)  # fmt: skip
def test_a_random_range_backwards_is_a_config_error(column: dict[str, str], problem: str) -> None:
    # long 10,1 drew from 2..10 before: not the range given, and no word of it
    with pytest.raises(ConfigError) as e:
        Reader({"column": [column], "recordCount": 3}, Context(where=WHERE))
    assert str(e.value) == f"{WHERE}.column[0]: cannot read the {problem}"


@pytest.mark.parametrize("kind", ["string", "boolean", "bytes"])
def test_an_incr_column_of_a_type_that_does_not_count_is_a_config_error(kind: str) -> None:
    with pytest.raises(ConfigError, match=r"column\[0\]: cannot read the .* incr counts only"):
        Reader({"column": [{"type": kind, "incr": "1"}], "recordCount": 2}, Context(where=WHERE))


def test_a_random_long_stays_within_its_range() -> None:
    r = Reader({"column": [{"type": "long", "random": "1,3"}], "recordCount": 500}, Context())
    assert set(rows(r, 1)) == {1, 2, 3}


def test_the_writer_prints_null_as_datax_does_apart_from_an_empty_string(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # NULL was printed as an empty string: '' and NULL looked alike. DataX's StreamWriter
    # appends column.asString(), null for a NULL, to a StringBuilder, which prints "null"
    w = Writer({"print": True, "fieldDelimiter": "|"}, Context(where="job.content[0].writer"))
    batch = pa.record_batch(
        {
            "s": pa.array(["", None, "x"], pa.string()),
            "n": pa.array([None, 1, 2], pa.int64()),
        }
    )
    sink = w.open(Split(0, "s0"))
    sink.write(batch)
    w.commit([sink.close()])
    assert capsys.readouterr().out == "|null\nnull|1\nx|2\n"
    one = w.open(Split(0, "s0"))
    one.write(batch.select(["s"]))
    assert capsys.readouterr().out == "\nnull\nx\n"


@pytest.fixture
def shanghai_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's local zone set to Asia/Shanghai (UTC+8) for the test."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("shanghai_clock")
def test_generated_dates_are_the_times_written_whatever_the_machines_zone() -> None:
    # incr and random took the times as the machine's local time: 8 hours early in Shanghai
    r = Reader(
        {
            "column": [
                {"type": "date", "incr": "2024-01-01 00:00:00,60"},
                {"type": "date", "random": "2024-01-01 00:00:00,2024-01-01 00:00:00"},
            ],
            "recordCount": 2,
        },
        Context(),
    )
    got = pa.Table.from_batches(list(r.read(r.splits(1)[0]))).to_pylist()
    assert got == [
        {"c0": datetime(2024, 1, 1, 0, 0), "c1": datetime(2024, 1, 1)},
        {"c0": datetime(2024, 1, 1, 0, 1), "c1": datetime(2024, 1, 1)},
    ]
