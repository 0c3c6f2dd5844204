"""The direct path: an entry whose writer takes its reader's raw form moves raw pieces, no
Arrow; anything that needs Arrow (a transformer, speed.record, setting.direct false, a writer
that refuses the form) takes the Arrow path, and a split whose sink meets a row it cannot
isolate falls back to the Arrow path, where the row becomes a dirty record exactly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine import _direct
from tidesync.connectors import base
from tidesync.engine.runner import Report, load_job, run_job
from tidesync.errors import ConfigError
from tidesync.spec.params import RunTime

RT = RunTime.of("20250101000000")
N = 95


@pytest.fixture(autouse=True)
def ints_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.CONNECTORS, "ints", "tests.engine._direct")
    _direct.PUBLISHED.clear()


def run(
    tmp_path: Path,
    *,
    setting: dict[str, Any] | None = None,
    reader: dict[str, Any] | None = None,
    writer: dict[str, Any] | None = None,
    transformer: list[dict[str, Any]] | None = None,
) -> Report:
    content: dict[str, Any] = {
        "reader": {"name": "ints", "parameter": {"n": N, **(reader or {})}},
        "writer": {"name": "ints", "parameter": {"target": "t", **(writer or {})}},
    }
    if transformer:
        content["transformer"] = transformer
    p = tmp_path / "job.json"
    p.write_text(json.dumps({"job": {"setting": setting or {}, "content": [content]}}))
    return run_job(load_job(p, runtime=RT), report_path=tmp_path / "report.json")


def published() -> tuple[list[int], set[str]]:
    rows = _direct.PUBLISHED["t"]
    return [x for x, _ in rows], {path for _, path in rows}


@pytest.mark.parametrize("count", [True, False], ids=["rows-known", "rows-from-sink"])
def test_a_writer_that_takes_the_readers_raw_form_gets_raw_pieces(
    tmp_path: Path, count: bool
) -> None:
    rep = run(tmp_path, setting={"speed": {"concurrent": 2}}, reader={"countRows": count})
    assert rep.status == "succeeded", rep.error
    assert published() == (list(range(N)), {_direct.FORM})
    assert (rep.records_read, rep.records_written, rep.dirty_records) == (N, N, 0)
    assert rep.bytes_read == sum(len(f"{i}\n") for i in range(N))
    assert [(p.content, p.path, p.why) for p in rep.paths] == [(0, "direct: test-ints", None)]
    assert [(s.path, s.fallback) for s in rep.splits] == [("direct: test-ints", None)] * 2
    assert "path: direct: test-ints" in rep.summary()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["paths"] == [{"content": 0, "path": "direct: test-ints", "why": None}]
    assert [s["path"] for s in saved["splits"]] == ["direct: test-ints"] * 2


@pytest.mark.parametrize(
    ("setting", "writer", "transformer", "why"),
    [
        ({"direct": False}, {}, None, "job.setting.direct is false"),
        ({"direct": "false"}, {}, None, "job.setting.direct is false"),
        (
            {},
            {},
            [{"name": "rename", "parameter": {"columns": {"x": "x"}}}],
            "the entry has transformers",
        ),
        ({"speed": {"record": 1_000_000}}, {}, None, "job.setting.speed.record limits"),
        (
            {},
            {"takeRaw": False},
            None,
            "the ints writer takes none of the reader's raw forms (test-ints): "
            "column x: a type the reader does not give",
        ),
    ],
    ids=["direct-false", "direct-false-text", "transformer", "record-rate", "writer-refuses"],
)
def test_what_needs_arrow_takes_the_arrow_path_and_the_report_says_why(
    tmp_path: Path,
    setting: dict[str, Any],
    writer: dict[str, Any],
    transformer: list[dict[str, Any]] | None,
    why: str,
) -> None:
    rep = run(tmp_path, setting=setting, writer=writer, transformer=transformer)
    assert rep.status == "succeeded", rep.error
    assert published() == (list(range(N)), {"arrow"})
    assert (rep.records_read, rep.records_written) == (N, N)
    assert [p.path for p in rep.paths] == ["arrow"]
    assert rep.paths[0].why is not None and rep.paths[0].why.startswith(why)
    assert [s.path for s in rep.splits] == ["arrow", "arrow"]
    assert "path: arrow" in rep.summary()


@pytest.mark.parametrize("count", [True, False], ids=["rows-known", "rows-from-sink"])
def test_a_split_with_a_bad_row_falls_back_to_arrow_and_the_row_is_dirty_exactly(
    tmp_path: Path, count: bool
) -> None:
    rep = run(
        tmp_path,
        setting={"errorLimit": {"record": 5}},
        reader={"countRows": count},
        writer={"reject": [63]},
    )
    assert rep.status == "succeeded", rep.error
    xs, _ = published()
    assert xs == [i for i in range(N) if i != 63]
    paths = dict(_direct.PUBLISHED["t"])
    assert {paths[i] for i in range(47)} == {_direct.FORM}  # the clean split stayed direct
    assert {paths[i] for i in range(47, N) if i != 63} == {"arrow"}
    # counted once: the direct attempt's counts are forgotten
    assert (rep.records_read, rep.records_written, rep.dirty_records) == (N, N - 1, 1)
    assert [(s.path, s.fallback) for s in rep.splits] == [
        ("direct: test-ints", None),
        ("arrow", "a number the target rejects"),
    ]
    assert [p.path for p in rep.paths] == ["direct: test-ints"]
    assert "1 of 2 splits on arrow: a number the target rejects" in rep.summary()
    dirty = [json.loads(line) for line in Path(rep.dirty_file or "").read_text().splitlines()]
    assert [(d["split"], d["row"], d["stage"], d["code"]) for d in dirty] == [
        ("high", {"x": 63}, "write", "23514")
    ]


def test_a_bad_row_over_the_error_limit_fails_the_run_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    rep = run(tmp_path, writer={"reject": [3]})
    assert rep.status == "failed"
    assert rep.error_class == "ErrorLimitExceeded"
    assert "t" not in _direct.PUBLISHED


@pytest.mark.parametrize("value", ["maybe", 3])
def test_setting_direct_must_be_true_or_false(tmp_path: Path, value: Any) -> None:
    p = tmp_path / "job.json"
    content = {
        "reader": {"name": "ints", "parameter": {"n": 1}},
        "writer": {"name": "ints", "parameter": {"target": "t"}},
    }
    p.write_text(json.dumps({"job": {"setting": {"direct": value}, "content": [content]}}))
    with pytest.raises(ConfigError) as e:
        load_job(p, runtime=RT)
    assert f"job.setting.direct: must be true or false, got {value!r}" in str(e.value)


@pytest.mark.parametrize("end", ["close", "discard"])
def test_a_serial_writers_split_holds_the_writer_from_its_first_raw_write_to_its_end(
    end: str,
) -> None:
    """So a sink may keep one bulk load open across its write_raw calls: the other tasks'
    sink calls (which take the same lock) wait until this split closes or is discarded."""
    from tidesync.engine.executor import local_sinks

    class Serial(_direct.Writer):
        serial = True

    ctx = base.Context(base_dir=Path.cwd(), where="job.content[0].writer.parameter")
    sinks = local_sinks(Serial({"target": "t"}, ctx))
    lock = sinks.lock  # type: ignore[attr-defined]
    sink = sinks.open(_direct.Range(0, "low", 0, 2))
    assert not lock.locked()
    assert sink.write_raw(base.Raw(_direct.FORM, b"0\n", rows=1)) == 1
    assert lock.locked()
    sink.write_raw(base.Raw(_direct.FORM, b"1\n", rows=1))
    assert lock.locked()
    getattr(sink, end)()
    assert not lock.locked()


def test_a_serial_writers_direct_splits_are_read_one_after_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer takes one bulk load at a time: a later split's reading would only fill its
    channel and take CPU from that load, so it starts when the split before it has closed. The
    first split's reading waits up to a second for the second's to start: read in parallel,
    the second would have started."""
    monkeypatch.setattr(_direct.Writer, "serial", True)
    _direct.EVENTS.clear()
    rep = run(tmp_path, setting={"speed": {"concurrent": 2}}, reader={"awaitOtherMs": 1000})
    assert rep.status == "succeeded", rep.error
    assert published() == (list(range(N)), {_direct.FORM})
    events = list(_direct.EVENTS)
    first = events[0][1]
    second = "high" if first == "low" else "low"
    assert events == [
        ("read", first),
        ("close", first),
        ("read", second),
        ("close", second),
    ]


def test_a_serial_writers_split_that_falls_back_lets_the_next_split_take_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_direct.Writer, "serial", True)
    _direct.EVENTS.clear()
    rep = run(
        tmp_path,
        setting={"speed": {"concurrent": 2}, "errorLimit": {"record": 5}},
        writer={"reject": [3]},
    )
    assert rep.status == "succeeded", rep.error
    xs, _ = published()
    assert xs == [i for i in range(N) if i != 3]
    assert [(s.path, s.fallback) for s in rep.splits] == [
        ("arrow", "a number the target rejects"),
        ("direct: test-ints", None),
    ]
    assert rep.dirty_records == 1
