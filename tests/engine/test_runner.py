"""The engine: splits, channel, dirty-record bisection, error limits, rate limits, atomic publish."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.engine import _memory
from tidesync.connectors import base
from tidesync.engine.runner import load_job, run_job
from tidesync.errors import ConfigError
from tidesync.spec.params import RunTime

RT = RunTime.of("20250101000000")


@pytest.fixture(autouse=True)
def memory_connector(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(base.CONNECTORS, "memory", "tests.engine._memory")
    _memory.PUBLISHED.clear()
    _memory.CALLS.clear()


def job(
    tmp_path: Path,
    *,
    setting: dict[str, Any] | None = None,
    rows: int = 100,
    writer: dict[str, Any] | None = None,
    contents: int = 1,
    name: str = "job.json",
) -> Path:
    content = [
        {
            "reader": {
                "name": "streamreader",
                "parameter": {
                    "column": [
                        {"type": "long", "incr": "0", "name": "id"},
                        {"type": "string", "value": "x"},
                    ],
                    "recordCount": rows,
                },
            },
            "writer": {"name": "memory", "parameter": {"target": f"t{i}", **(writer or {})}},
        }
        for i in range(contents)
    ]
    p = tmp_path / name
    p.write_text(json.dumps({"job": {"setting": setting or {}, "content": content}}))
    return p


def published_ids(target: str = "t0") -> list[int]:
    batches = _memory.PUBLISHED.get(target, [])
    return sorted(i for b in batches for i in b.column(0).to_pylist())


def test_rows_are_published_once_across_parallel_splits(tmp_path: Path) -> None:
    rep = run_job(
        load_job(job(tmp_path, setting={"speed": {"concurrent": 4}}, rows=10_001), runtime=RT)
    )
    assert rep.status == "succeeded", rep.error
    assert published_ids() == list(range(10_001))
    assert len(rep.splits) == 4
    assert sum(s.records_written for s in rep.splits) == rep.records_written == 10_001


def test_every_content_entry_runs(tmp_path: Path) -> None:
    rep = run_job(load_job(job(tmp_path, contents=3, rows=10), runtime=RT))
    assert rep.status == "succeeded"
    assert [published_ids(f"t{i}") for i in range(3)] == [list(range(10))] * 3


def test_bad_rows_are_bisected_out_and_kept_with_reason(tmp_path: Path) -> None:
    path = job(
        tmp_path, setting={"errorLimit": {"record": 5}}, writer={"reject": [7, 500, 999]}, rows=1000
    )
    report = tmp_path / "out" / "report.json"
    rep = run_job(load_job(path, runtime=RT), report_path=report)
    assert rep.status == "succeeded", rep.error
    assert published_ids() == [i for i in range(1000) if i not in (7, 500, 999)]
    assert rep.dirty_records == 3
    dirty = [json.loads(line) for line in Path(rep.dirty_file or "").read_text().splitlines()]
    assert sorted(d["row"]["id"] for d in dirty) == [7, 500, 999]
    assert {d["stage"] for d in dirty} == {"write"}
    assert all("rejected by target" in d["reason"] and d["code"] == "23514" for d in dirty)
    assert {d["position"] for d in dirty} == {"row 7", "row 500", "row 999"}
    saved = json.loads(report.read_text())
    assert saved["dirty_records"] == 3 and saved["status"] == "succeeded"


def test_a_run_without_dirty_records_leaves_no_earlier_runs_file_beside_its_report(
    tmp_path: Path,
) -> None:
    report = tmp_path / "out" / "report.json"
    bad = job(tmp_path, setting={"errorLimit": {"record": 5}}, writer={"reject": [7]}, rows=10)
    first = run_job(load_job(bad, runtime=RT), report_path=report)
    assert first.dirty_records == 1 and first.dirty_file == str(tmp_path / "out/report.dirty.jsonl")
    rep = run_job(load_job(job(tmp_path, rows=10), runtime=RT), report_path=report)
    assert rep.status == "succeeded" and rep.dirty_records == 0 and rep.dirty_file is None
    # before, the first run's dirty record stayed there, beside a report of none
    assert not (tmp_path / "out" / "report.dirty.jsonl").exists()


@pytest.mark.parametrize(
    ("setting", "dirty", "ok"),
    [
        ({}, 1, False),  # no limit set: no dirty record allowed
        ({"errorLimit": {"record": "0"}}, 1, False),
        ({"errorLimit": {"record": 2}}, 2, True),
        ({"errorLimit": {"record": 2}}, 3, False),
        ({"errorLimit": {"percentage": 0.02}}, 2, True),  # 2 of 100 is 2%
        ({"errorLimit": {"percentage": "2%"}}, 3, False),
        # exactly at the limit, where the limit times the rows read is just under the count
        # in floating point (0.29 * 100 is 28.999999999999996)
        ({"errorLimit": {"percentage": 0.29}}, 29, True),
        ({"errorLimit": {"percentage": "29%"}}, 29, True),
        ({"errorLimit": {"percentage": 57}}, 57, True),
        ({"errorLimit": {"percentage": "58%"}}, 58, True),
        ({"errorLimit": {"percentage": 0.29}}, 30, False),
        (
            {"errorLimit": {"record": 10, "percentage": 0.01}},
            2,
            False,
        ),  # either limit fails the job
    ],
)
def test_error_limit(tmp_path: Path, setting: dict[str, Any], dirty: int, ok: bool) -> None:
    path = job(tmp_path, setting=setting, writer={"reject": list(range(dirty))}, rows=100)
    rep = run_job(load_job(path, runtime=RT))
    assert rep.status == ("succeeded" if ok else "failed"), rep.error
    if ok:
        assert "commit:t0" in _memory.CALLS
    else:
        assert "error limit exceeded" in (rep.error or "")
        assert "commit:t0" not in _memory.CALLS and "abort:t0" in _memory.CALLS
        assert "t0" not in _memory.PUBLISHED


def test_failure_in_one_content_publishes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "job.json"
    doc = json.loads(job(tmp_path, contents=2, rows=10).read_text())
    doc["job"]["content"][1]["writer"]["parameter"]["reject"] = [3]
    p.write_text(json.dumps(doc))
    rep = run_job(load_job(p, runtime=RT))
    assert rep.status == "failed"
    assert _memory.PUBLISHED == {}
    assert {"abort:t0", "abort:t1"} <= set(_memory.CALLS)


def test_failed_commit_fails_the_job(tmp_path: Path) -> None:
    rep = run_job(load_job(job(tmp_path, writer={"failCommit": True}), runtime=RT))
    assert rep.status == "failed" and "commit refused" in (rep.error or "")


def test_a_failed_commit_after_another_entrys_says_that_one_is_published(
    tmp_path: Path,
) -> None:
    p = job(tmp_path, contents=2, rows=5)
    doc = json.loads(p.read_text())
    doc["job"]["content"][1]["writer"]["parameter"]["failCommit"] = True
    p.write_text(json.dumps(doc))
    rep = run_job(load_job(p, runtime=RT))
    assert published_ids("t0") == [0, 1, 2, 3, 4] and "t1" not in _memory.PUBLISHED
    # before, only "t1: commit refused": a rerun of the failed job wrote t0's rows twice
    assert (rep.status, rep.error) == (
        "failed",
        "t1: commit refused; already published before this failure: content[0] (a rerun "
        "writes its rows again)",
    )


def test_cancel_aborts_and_publishes_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    path = job(tmp_path, setting={"speed": {"record": 20_000}}, rows=2_000_000)
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    rep = run_job(load_job(path, runtime=RT), cancel=cancel)
    timer.cancel()
    assert rep.status == "failed"
    assert "nothing was published" in (rep.error or "")
    assert _memory.PUBLISHED == {} and "abort:t0" in _memory.CALLS
    assert rep.records_read < 2_000_000


def test_record_rate_limit_holds_the_whole_job_back(tmp_path: Path) -> None:
    # 1 s of burst, then 5,000 rows/s: 15,000 rows cannot finish in under ~2 s
    path = job(tmp_path, setting={"speed": {"record": 5000, "concurrent": 3}}, rows=15_000)
    t0 = time.monotonic()
    rep = run_job(load_job(path, runtime=RT))
    assert rep.status == "succeeded"
    assert time.monotonic() - t0 >= 1.5


def test_throttle_false_disables_limits(tmp_path: Path) -> None:
    path = job(tmp_path, setting={"speed": {"record": 1, "throttle": False}}, rows=50_000)
    t0 = time.monotonic()
    assert run_job(load_job(path, runtime=RT)).status == "succeeded"
    assert time.monotonic() - t0 < 30  # with the limit it would take 50,000 s


def test_progress_callback_sees_counters_grow(tmp_path: Path) -> None:
    seen: list[int] = []
    path = job(tmp_path, setting={"speed": {"record": 40_000}}, rows=60_000)
    run_job(
        load_job(path, runtime=RT),
        progress=lambda r: seen.append(r.records_read),
        progress_every=0.1,
    )
    assert len(seen) >= 2 and seen == sorted(seen) and seen[-1] > 0


def test_validation_reports_every_problem_at_once(tmp_path: Path) -> None:
    p = tmp_path / "bad.json"
    p.write_text(
        json.dumps(
            {
                "job": {
                    "setting": {"speed": {"channel": "x"}},
                    "content": [
                        {
                            "reader": {"name": "streamreadr", "parameter": {}},
                            "writer": {"name": "memory", "parameter": {"writeMode": "trunc"}},
                        }
                    ],
                }
            }
        )
    )
    with pytest.raises(ConfigError) as e:
        load_job(p, runtime=RT)
    msgs = e.value.problems
    assert "job.setting.speed.channel: must be a number, got 'x'" in msgs
    assert any(
        m.startswith(
            "job.content[0].reader.name: unknown reader 'streamreadr'; did you mean 'streamreader'?"
        )
        for m in msgs
    )
    assert "job.content[0].writer.parameter.target: is required" in msgs
    assert any(
        m == "job.content[0].writer.parameter.writeMode: 'trunc' is not one of append, truncate; "
        "did you mean 'truncate'?"
        for m in msgs
    )


def test_name_and_plugin_naming_two_connectors_is_a_config_error(tmp_path: Path) -> None:
    path = job(tmp_path, rows=3)
    doc = json.loads(path.read_text())
    doc["job"]["content"][0]["reader"]["plugin"] = "txtfile"  # before: streamreader ran
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError) as e:
        load_job(path, runtime=RT)
    assert e.value.problems == [
        "job.content[0].reader: name and plugin name two connectors, 'streamreader' and "
        "'txtfile'; keep one"
    ]
    doc["job"]["content"][0]["reader"]["plugin"] = "Stream"  # one connector, two spellings
    path.write_text(json.dumps(doc))
    assert run_job(load_job(path, runtime=RT)).status == "succeeded"
    assert published_ids() == [0, 1, 2]


def test_a_reader_name_on_the_writer_side_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "j.json"
    p.write_text(
        json.dumps(
            {
                "job": {
                    "content": [
                        {
                            "reader": {"name": "streamwriter", "parameter": {}},
                            "writer": {"name": "streamwriter", "parameter": {}},
                        }
                    ]
                }
            }
        )
    )
    with pytest.raises(
        ConfigError, match=r"job.content\[0\].reader.name: 'streamwriter' is a writer"
    ):
        load_job(p, runtime=RT)


def test_report_file_has_the_contract_fields(tmp_path: Path) -> None:
    report = tmp_path / "r.json"
    run_job(load_job(job(tmp_path), runtime=RT), report_path=report)
    data = json.loads(report.read_text())
    for key in (
        "status",
        "records_read",
        "records_written",
        "dirty_records",
        "bytes_read",
        "elapsed_s",
        "splits",
        "error",
    ):
        assert key in data
    assert data["records_read"] == 100 and data["bytes_read"] > 0 and data["error"] is None
    assert data["splits"][0]["records_written"] == 100


def test_memory_stays_bounded_by_the_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a slow writer and a fast reader: the reader must wait for the channel, not buffer everything
    from tidesync.engine import channel, runner

    monkeypatch.setattr(runner, "CHANNEL_BYTES", 1)  # one batch at a time
    path = job(tmp_path, rows=50_000)
    planned = load_job(path, runtime=RT)
    planned.parts[0].reader.ctx.batch_rows = 1000
    in_flight: list[int] = []
    orig = channel.Channel.put

    def put(self: Any, item: Any, size: int) -> None:
        orig(self, item, size)
        in_flight.append(len(self._items))

    monkeypatch.setattr(channel.Channel, "put", put)
    assert run_job(planned).status == "succeeded"
    assert max(in_flight) <= 2
    assert published_ids() == list(range(50_000))


def test_batches_may_be_tables(tmp_path: Path) -> None:
    assert isinstance(
        pa.table({"a": [1]}), pa.Table
    )  # readers may yield Tables; see runner.produce


@pytest.mark.parametrize(
    ("fields", "line"),
    [
        (  # rows known from the readers' estimate: percent and ETA at the pace so far
            {"records_read": 250, "rows_expected": 1000, "elapsed_s": 10.0},
            "250 rows read (25%), 0 written, 0.0 MiB, 25 rows/s, 0 dirty, ETA 0:00:30",
        ),
        (  # only the splits say how far it is
            {"records_read": 500, "elapsed_s": 4.0, "splits": ["done", "running", "pending"]},
            "500 rows read (33%), 0 written, 0.0 MiB, 125 rows/s, 0 dirty, 1/3 splits, ETA 0:00:08",
        ),
        (  # one split and no estimate: no percent, no ETA
            {"records_read": 7, "elapsed_s": 2.0, "splits": ["running"]},
            "7 rows read, 0 written, 0.0 MiB, 4 rows/s, 0 dirty",
        ),
        (  # an estimate that fell short stays under 100% while it runs, and gives no ETA
            {"records_read": 1200, "rows_expected": 1000, "elapsed_s": 10.0},
            "1,200 rows read (99%), 0 written, 0.0 MiB, 120 rows/s, 0 dirty",
        ),
    ],
)
def test_progress_line_has_percent_and_eta_where_the_total_is_known(
    fields: dict[str, Any], line: str
) -> None:
    from tidesync.engine.runner import Report, SplitReport

    splits = [SplitReport(0, f"s{i}", status=st) for i, st in enumerate(fields.pop("splits", []))]
    assert Report("job.json", splits=splits, **fields).progress_line() == line


def test_a_readers_estimate_gives_the_run_its_percent_and_eta(tmp_path: Path) -> None:
    path = job(tmp_path, setting={"speed": {"record": 30_000}}, rows=100_000)  # over 1 s
    planned = load_job(path, runtime=RT)
    planned.parts[0].reader.estimate = lambda: 100_000  # type: ignore[method-assign]
    lines: list[str] = []
    rep = run_job(planned, progress=lambda r: lines.append(r.progress_line()), progress_every=0.1)
    assert rep.status == "succeeded" and rep.rows_expected == 100_000
    assert json.loads(rep.to_json())["rows_expected"] == 100_000
    assert any("rows read (" in ln and "%)" in ln for ln in lines), lines
    assert any(", ETA 0:00:0" in ln for ln in lines), lines  # once a second has passed


def test_a_failing_estimate_only_loses_the_percent(tmp_path: Path) -> None:
    planned = load_job(job(tmp_path, rows=10), runtime=RT)

    def broken() -> int:
        raise OSError("statistics unavailable")

    planned.parts[0].reader.estimate = broken  # type: ignore[method-assign]
    rep = run_job(planned)
    assert (rep.status, rep.rows_expected, rep.records_written) == ("succeeded", None, 10)


def test_report_times_carry_the_zone_offset(tmp_path: Path) -> None:
    rep = run_job(load_job(job(tmp_path, rows=1), runtime=RT), timezone="Asia/Kolkata")
    assert rep.started_at.endswith("+05:30") and rep.finished_at.endswith("+05:30")


@pytest.mark.parametrize(
    ("parameter", "channel", "rows"),
    [({"recordCount": 300}, 4, 300), ({"sliceRecordCount": 50}, 3, 150)],
)
def test_a_stream_readers_estimate_is_exactly_its_rows(
    tmp_path: Path, parameter: dict[str, int], channel: int, rows: int
) -> None:
    p = job(tmp_path, setting={"speed": {"channel": channel}})
    doc = json.loads(p.read_text())
    reader = doc["job"]["content"][0]["reader"]["parameter"]
    del reader["recordCount"]
    reader.update(parameter)
    p.write_text(json.dumps(doc))
    rep = run_job(load_job(p, runtime=RT))
    assert (rep.rows_expected, rep.records_read) == (rows, rows)


def test_a_dirty_record_shows_a_value_python_cannot_hold_instead_of_failing() -> None:
    from tidesync.engine.dirty import row_of

    batch = pa.record_batch(
        {
            "ts": pa.array([2**62, 0], pa.timestamp("us")),
            "d": pa.array([2**31 - 1, 0], pa.date32()),
            "b": pa.array([b"\xff", b"ok"]),
        }
    )
    row = row_of(batch, 0)
    assert row["b"] == "ff" and "out of range" in row["ts"] and "out of range" in row["d"]
    assert row_of(batch, 1) == {"ts": "1970-01-01 00:00:00", "d": "1970-01-01", "b": "ok"}


def _keyed_files(folder: Path, files: int, keys: int) -> None:
    """``files`` CSV files that all hold keys 0..keys-1; file f gives each the value f."""
    folder.mkdir()
    for f in range(files):
        lines = "".join(f"{k},{f}\n" for k in range(keys))
        (folder / f"part{f:02d}.csv").write_text(lines)


def _keyed_job(tmp_path: Path, mode: str, channel: int) -> Path:
    reader = {
        "name": "txtfilereader",
        "parameter": {
            "path": [str(tmp_path / "in" / "*.csv")],
            "fieldDelimiter": ",",
            "column": [{"index": 0, "type": "long"}, {"index": 1, "type": "long"}],
        },
    }
    writer = {
        "name": "sqlitewriter",
        "parameter": {
            "writeMode": mode,
            "column": ["k", "v"],
            "connection": [{"jdbcUrl": f"jdbc:sqlite:{tmp_path / 't.db'}", "table": ["t"]}],
        },
    }
    p = tmp_path / f"{mode}.json"
    setting = {"speed": {"channel": channel}, "errorLimit": {"record": 0}}
    p.write_text(
        json.dumps({"job": {"setting": setting, "content": [{"reader": reader, "writer": writer}]}})
    )
    return p


@pytest.mark.parametrize("mode", ["update", "replace", "merge"])
def test_splits_writing_one_key_give_what_one_task_in_split_order_gives(
    tmp_path: Path, mode: str
) -> None:
    # twelve files with the same keys, written by key with 4 tasks: the splits' batches used to
    # interleave, and each key kept the value of whichever file wrote it last (a different
    # mix on every run); the result must be that of reading the files in order
    import sqlite3

    _keyed_files(tmp_path / "in", files=12, keys=20_000)
    con = sqlite3.connect(tmp_path / "t.db")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)")
    con.commit()
    rep = run_job(load_job(_keyed_job(tmp_path, mode, channel=4), runtime=RT))
    assert rep.status == "succeeded", rep.error
    assert len(rep.splits) == 12
    values = con.execute("SELECT v, count(*) FROM t GROUP BY v").fetchall()
    con.close()
    assert values == [(11, 20_000)]


def test_a_failed_split_stops_the_splits_waiting_for_their_turn(tmp_path: Path) -> None:
    import sqlite3

    _keyed_files(tmp_path / "in", files=4, keys=1_000)
    (tmp_path / "in" / "part00.csv").write_text("1,x\n")  # dirty; the limit is 0
    con = sqlite3.connect(tmp_path / "t.db")
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v INTEGER)")
    con.commit()
    out: list[Any] = []
    run = threading.Thread(
        target=lambda: out.append(run_job(load_job(_keyed_job(tmp_path, "update", 4), runtime=RT)))
    )
    run.start()
    run.join(120)
    assert not run.is_alive(), "the splits after the failed one were left waiting"
    assert out[0].status == "failed"
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)
    con.close()


def _two_entries(tmp_path: Path, writers: list[dict[str, Any]]) -> Path:
    (tmp_path / "in.csv").write_text("1,a\n2,b\n")
    reader = {
        "name": "txtfilereader",
        "parameter": {"path": [str(tmp_path / "in.csv")], "column": ["*"]},
    }
    content = [{"reader": reader, "writer": w} for w in writers]
    p = tmp_path / "two.json"
    p.write_text(json.dumps({"job": {"content": content}}))
    return p


@pytest.mark.parametrize(
    ("names", "clash"),
    [
        (("o.csv", "o.csv"), "the files of 'o.csv' in "),
        (("orders", "orders_detail"), "files of 'orders_detail' in "),  # DataX's prefix rule
        (("orders.csv", "lines.csv"), None),
    ],
)
def test_two_entries_writing_one_folders_files_are_refused(
    tmp_path: Path, names: tuple[str, str], clash: str | None
) -> None:
    # the later entry's truncate removed the files the earlier one had just published, and the
    # run reported both entries' rows written
    out = str(tmp_path / "out")
    writers = [
        {
            "name": "txtfilewriter",
            "parameter": {"path": out, "fileName": n, "writeMode": "truncate"},
        }
        for n in names
    ]
    if clash is None:
        rep = run_job(load_job(_two_entries(tmp_path, writers), runtime=RT))
        assert rep.status == "succeeded", rep.error
        assert sorted(f.name for f in (tmp_path / "out").iterdir()) == sorted(names)
        return
    with pytest.raises(ConfigError) as e:
        load_job(_two_entries(tmp_path, writers), runtime=RT)
    assert str(e.value).startswith("job.content[1].writer.parameter: writes " + clash), str(e.value)
    assert "as job.content[0].writer.parameter does; two entries of one job cannot write" in str(
        e.value
    )
    assert not (tmp_path / "out").exists()


def test_two_entries_writing_one_table_are_refused_not_left_waiting(tmp_path: Path) -> None:
    # the second entry waited for the first's lock on the table, held until the job's commit:
    # ten minutes (lockTimeout), then "another run is writing table t"
    db = tmp_path / "t.db"
    writer = {
        "name": "sqlitewriter",
        "parameter": {"connection": [{"jdbcUrl": f"jdbc:sqlite:{db}", "table": ["t"]}]},
    }
    with pytest.raises(ConfigError) as e:
        load_job(_two_entries(tmp_path, [writer, writer]), runtime=RT)
    assert f"job.content[1].writer.parameter: writes sqlite table t in {db}, as " in str(e.value)


def test_a_dirty_record_after_a_filtering_transformer_names_its_source_rows(
    tmp_path: Path,
) -> None:
    # dx_filter drops ids 0-3, so the row the target refuses (id 7) is the fourth of the
    # filtered batch: its position was "row 3", a row that was never refused
    path = job(tmp_path, setting={"errorLimit": {"record": 1}}, writer={"reject": [7]}, rows=100)
    doc = json.loads(path.read_text())
    doc["job"]["content"][0]["transformer"] = [
        {"name": "dx_filter", "parameter": {"columnIndex": 0, "paras": ["<", "4"]}}
    ]
    path.write_text(json.dumps(doc))
    rep = run_job(load_job(path, runtime=RT), report_path=tmp_path / "report.json")
    assert rep.status == "succeeded", rep.error
    assert published_ids() == [i for i in range(4, 100) if i != 7]
    dirty = [json.loads(line) for line in Path(rep.dirty_file or "").read_text().splitlines()]
    assert [(d["row"]["id"], d["stage"]) for d in dirty] == [(7, "write")]
    first, last = map(int, dirty[0]["position"].removeprefix("one of rows ").split("-"))
    assert first <= 7 <= last
