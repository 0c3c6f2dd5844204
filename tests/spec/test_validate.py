"""`tidesync validate` and `run` hold a job file to the keys tidesync reads: a typo is an error
(exit 2, every one at once, with a did-you-mean), never a silently different result."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tidesync.cli import main
from tidesync.spec.ignored import IGNORED

TIDESYNC = str(Path(sys.executable).with_name("tidesync"))
READER = "job.content[0].reader.parameter"
WRITER = "job.content[0].writer.parameter"


def validate(job: Path, *args: str) -> tuple[int, str, str]:
    """``tidesync validate JOB`` in this process: exit code, stdout, stderr."""
    r = CliRunner().invoke(main, ["validate", str(job), *args])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


def job_file(tmp_path: Path, reader: dict[str, Any], writer: dict[str, Any], **job: Any) -> Path:
    p = tmp_path / "job.json"
    content = {"reader": reader, "writer": writer}
    p.write_text(json.dumps({"job": {"content": [content], **job}}))
    return p


def sqlite_db(tmp_path: Path) -> Path:
    db = tmp_path / "db.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE src (id INTEGER PRIMARY KEY, v TEXT)")
        con.executemany("INSERT INTO src VALUES (?, ?)", [(i, f"v{i}") for i in range(1, 11)])
        con.execute("CREATE TABLE dst (id INTEGER PRIMARY KEY, v TEXT)")
        con.execute("INSERT INTO dst VALUES (99, 'kept')")
    return db


def sqlite_job(tmp_path: Path, **reader_extra: Any) -> Path:
    return job_file(
        tmp_path,
        {
            "name": "sqlitereader",
            "parameter": {"database": "db.sqlite", "table": ["src"], **reader_extra},
        },
        {
            "name": "sqlitewriter",
            "parameter": {"database": "db.sqlite", "table": ["dst"], "writeMode": "truncate"},
        },
    )


def run_cli(job: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [TIDESYNC, "run", str(job)], capture_output=True, text=True, env=env, timeout=120
    )


def dst_rows(tmp_path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(tmp_path / "db.sqlite") as con:
        return con.execute("SELECT id, v FROM dst ORDER BY id").fetchall()


def test_a_mistyped_where_stops_the_run_and_leaves_the_target(tmp_path: Path) -> None:
    sqlite_db(tmp_path)
    r = run_cli(sqlite_job(tmp_path, wehre="id <= 5"))
    assert r.returncode == 2, r.stderr
    assert f"error: {READER}.wehre: unknown key; did you mean 'where'?" in r.stderr.splitlines()
    assert "Traceback" not in r.stderr
    assert dst_rows(tmp_path) == [(99, "kept")]
    # spelled right, the same job exports the five rows it asks for
    r = run_cli(sqlite_job(tmp_path, where="id <= 5"))
    assert r.returncode == 0, r.stderr
    assert [i for i, _ in dst_rows(tmp_path)] == [1, 2, 3, 4, 5]


def test_validate_reports_every_unknown_key_and_other_error_at_once(tmp_path: Path) -> None:
    sqlite_db(tmp_path)
    job = job_file(
        tmp_path,
        {
            "name": "sqlitereader",
            "parameter": {"database": "db.sqlite", "table": ["src"], "wehre": "x", "splitPK": "id"},
        },
        {
            "name": "sqlitewriter",
            "parameter": {
                "database": "db.sqlite",
                "table": ["dst"],
                "writeMode": "trunc",
                "prSql": [],
            },
        },
        setting={"speed": {"chanel": 2}, "errorLimit": {"precentage": 0.1}},
        extra={},
    )
    code, out, err = validate(job)
    assert code == 2 and "ok" not in out
    lines = err.splitlines()
    for line in [
        "error: job.extra: unknown key",
        "error: job.setting.speed.chanel: unknown key; did you mean 'channel'?",
        "error: job.setting.errorLimit.precentage: unknown key; did you mean 'percentage'?",
        f"error: {READER}.wehre: unknown key; did you mean 'where'?",
        f"error: {READER}.splitPK: unknown key; did you mean 'splitPk'?",
        f"error: {WRITER}.prSql: unknown key; did you mean 'preSql'?",
    ]:
        assert line in lines, err
    assert any(x.startswith(f"error: {WRITER}.writeMode: 'trunc' is not one of") for x in lines)


@pytest.mark.parametrize(
    ("reader_extra", "message"),
    [
        (
            {"table": [], "connection": [{"jdbcUrl": "jdbc:sqlite:db.sqlite", "tabel": ["src"]}]},
            f"{READER}.connection[0].tabel: unknown key; did you mean 'table'?",
        ),
    ],
)
def test_unknown_keys_inside_parameter_objects_are_errors(
    tmp_path: Path, reader_extra: dict[str, Any], message: str
) -> None:
    sqlite_db(tmp_path)
    code, _, err = validate(sqlite_job(tmp_path, **reader_extra))
    assert code == 2 and f"error: {message}" in err.splitlines(), err


def test_a_misspelt_incremental_key_is_an_error(tmp_path: Path) -> None:
    # the MySQL reader checks its parameters without connecting
    job = job_file(
        tmp_path,
        {
            "name": "mysqlreader",
            "parameter": {
                "connection": [{"jdbcUrl": ["jdbc:mysql://127.0.0.1:1/db"], "table": ["t"]}],
                "column": ["id", "optime"],
                "incremental": {"column": "optime", "strat": "2019-11-06"},
            },
        },
        {"name": "streamwriter", "parameter": {"print": False}},
    )
    code, _, err = validate(job)
    message = f"error: {READER}.incremental.strat: unknown key; did you mean 'start'?"
    assert code == 2 and message in err.splitlines(), err


def test_incremental_on_a_reader_without_it_is_an_error(tmp_path: Path) -> None:
    # the file reader has no cursor: a full read each run would pass for an incremental one
    (tmp_path / "in.csv").write_text("1\n")
    job = job_file(
        tmp_path,
        {"name": "txtfilereader", "parameter": {"path": "in.csv", "incremental": {"column": "id"}}},
        {"name": "streamwriter", "parameter": {"print": False}},
    )
    code, _, err = validate(job)
    assert code == 2 and f"error: {READER}.incremental: unknown key" in err.splitlines(), err


def test_a_misspelt_delete_marker_is_an_error(tmp_path: Path) -> None:
    sqlite_db(tmp_path)
    job = job_file(
        tmp_path,
        {"name": "sqlitereader", "parameter": {"database": "db.sqlite", "table": ["src"]}},
        {
            "name": "sqlitewriter",
            "parameter": {
                "database": "db.sqlite",
                "table": ["dst"],
                "writeMode": "merge",
                "primaryKey": ["id"],
                "deleteMarker": {"column": "v", "valeu": "x"},
            },
        },
    )
    code, _, err = validate(job)
    message = f"error: {WRITER}.deleteMarker.valeu: unknown key; did you mean 'value'?"
    assert code == 2 and message in err.splitlines(), err


def test_keys_tidesync_ignores_are_named_on_one_info_line(tmp_path: Path) -> None:
    sqlite_db(tmp_path)
    job = sqlite_job(tmp_path, fetchSize=1024, splitFactor=5, encoding="UTF-8")
    doc = json.loads(job.read_text())
    doc["core"] = {"transport": {"channel": {"speed": {"byte": 1048576}}}}
    doc["job"]["setting"] = {"jvmOption": "-Xmx2g", "speed": {"throttle": False, "mbps": 4}}
    job.write_text(json.dumps(doc))
    code, out, err = validate(job)
    assert code == 0, err
    assert out.strip() == f"{job}: ok (datax, 1 reader/writer pair)"
    [info] = err.splitlines()
    assert info.startswith("info: ")
    for path in [
        "core",
        "job.setting.jvmOption",
        "job.setting.speed.mbps",
        f"{READER}.splitFactor",
        f"{READER}.encoding",
    ]:
        assert path in info
    assert IGNORED["setting.jvmOption"] in info
    # the sqlite reader reads fetchSize itself: it is used, so not reported
    assert "fetchSize" not in info


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"reader": {}, "writer": {}}, "not a job file"),
        ({"job": {"content": [{}]}}, "job.content[0].reader: is required"),
        ({"job": {"content": []}}, "job.content: is required"),
        (
            {"type": "job", "version": "1.0", "configuration": {"reader": {"plugin": "stream"}}},
            "configuration.writer: is required",
        ),
    ],
)
def test_validate_exits_2_for_a_job_with_no_reader_writer_pair(
    tmp_path: Path, doc: dict[str, Any], message: str
) -> None:
    p = tmp_path / "job.json"
    p.write_text(json.dumps(doc))
    code, out, err = validate(p)
    assert code == 2 and "ok" not in out
    assert message in err


def test_a_value_a_connector_cannot_use_names_its_parameters(tmp_path: Path) -> None:
    # a NUL inside the encoding name is refused when the file is read, before any connector
    job = job_file(
        tmp_path,
        {"name": "txtfilereader", "parameter": {"path": "in.csv", "encoding": "utf\u00008"}},
        {"name": "streamwriter", "parameter": {"print": False}},
    )
    code, _, err = validate(job)
    assert code == 2
    assert f"{READER}.encoding: holds a NUL character" in err, err
