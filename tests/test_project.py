"""Project discovery: a job's state and named connections are its project's, found from the job
file's folder upward (or named with --project), whatever folder it is run from."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from tidesync.cli import main
from tidesync.errors import ConfigError
from tidesync.project import find_project


def oplog(db: Path, *rows: tuple[int, str]) -> None:
    with closing(sqlite3.connect(db)) as con:
        con.execute("CREATE TABLE IF NOT EXISTS oplog (id INTEGER, optime DATETIME)")
        con.executemany("INSERT INTO oplog VALUES (?, ?)", rows)
        con.commit()


def incremental_job(
    path: Path, reader: dict[str, Any], setting: dict[str, Any] | None = None
) -> Path:
    doc = {
        "job": {
            "setting": setting or {},
            "content": [
                {
                    "reader": {"name": reader.pop("name", "sqlitereader"), "parameter": reader},
                    "writer": {"name": "streamwriter", "parameter": {"print": False}},
                }
            ],
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def sqlite_reader(db: str) -> dict[str, Any]:
    return {
        "connection": [{"jdbcUrl": [f"jdbc:sqlite:{db}"], "table": ["oplog"]}],
        "incremental": {"column": "optime"},
    }


def run(
    cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str, cyctime: str = "20161117000000"
) -> Any:
    """``tidesync run`` in ``cwd``; successive runs of one job are successive instances (a
    rerun of one instance reads its window again)."""
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("TIDESYNC_PROJECT", raising=False)
    return CliRunner().invoke(main, ["run", *args, "--cyctime", cyctime])


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "etl"
    root.mkdir()
    (root / "tidesync.yaml").write_text("connections: {}\n")
    oplog(root / "src.db", (1, "2016-11-13 10:00:00"), (2, "2016-11-14 10:00:00"))
    incremental_job(root / "jobs" / "orders.json", sqlite_reader("../src.db"))
    return root


def test_a_job_run_from_other_folders_keeps_one_state_in_its_project(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = [tmp_path / "a", tmp_path / "b"]
    for d in elsewhere:
        d.mkdir()
    job = str(project / "jobs" / "orders.json")
    first = run(elsewhere[0], monkeypatch, job)
    oplog(project / "src.db", (3, "2016-11-15 10:00:00"))
    second = run(elsewhere[1], monkeypatch, job, cyctime="20161118000000")
    third = run(project / "jobs", monkeypatch, "orders.json", cyctime="20161119000000")
    assert [r.exit_code for r in (first, second, third)] == [0, 0, 0], first.output
    assert "2 read" in first.output and "1 read" in second.output and "0 read" in third.output
    assert not any((d / ".tidesync").exists() for d in elsewhere)
    assert not (project / "jobs" / ".tidesync").exists()
    state = project / ".tidesync" / "state.db"
    assert f"saved in sqlite {state}" in first.output
    with closing(sqlite3.connect(state)) as con:
        keys = [r[0] for r in con.execute("SELECT key FROM ts_state")]
    assert keys == ["jobs/orders.json#0"]


def test_a_datasource_job_finds_its_projects_connections_from_anywhere(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.scheduler._pg import fresh_database

    with fresh_database("ts_proj") as url:
        import psycopg

        with psycopg.connect(url, autocommit=True) as con:
            con.execute("CREATE TABLE oplog (id int, optime timestamp)")
            con.execute("INSERT INTO oplog VALUES (1, '2016-11-13 10:00'), (2, '2016-11-16 10:00')")
        (project / "tidesync.yaml").write_text(
            yaml.safe_dump({"connections": {"warehouse": {"kind": "postgresql", "url": url}}})
        )
        job = incremental_job(
            project / "jobs" / "pg.json",
            {
                "name": "postgresqlreader",
                "datasource": "warehouse",
                "table": ["oplog"],
                "incremental": {"column": "optime"},
            },
        )
        r = run(tmp_path, monkeypatch, str(job))
        again = run(tmp_path, monkeypatch, str(job), cyctime="20161118000000")
    assert r.exit_code == 0, r.output
    assert "2 read" in r.output and "0 read" in again.output


def test_project_names_the_project_for_a_job_outside_it(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = incremental_job(
        tmp_path / "loose" / "job.json", sqlite_reader(str(project / "src.db"))
    )
    r = run(tmp_path, monkeypatch, str(outside), "--project", str(project))
    assert r.exit_code == 0, r.output
    assert f"saved in sqlite {project / '.tidesync' / 'state.db'}" in r.output
    assert not (tmp_path / "loose" / ".tidesync").exists()


def test_without_a_project_the_jobs_folder_keeps_its_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    oplog(tmp_path / "src.db", (1, "2016-11-13 10:00:00"))
    job = incremental_job(tmp_path / "loose" / "job.json", sqlite_reader("../src.db"))
    (tmp_path / "cwd").mkdir()
    r = run(tmp_path / "cwd", monkeypatch, str(job))
    again = run(tmp_path / "cwd", monkeypatch, str(job), cyctime="20161118000000")
    assert "1 read" in r.output and "0 read" in again.output, r.output
    assert (tmp_path / "loose" / ".tidesync" / "state.db").exists()
    assert not (tmp_path / "cwd" / ".tidesync").exists()


def test_the_report_names_the_state_store(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "r.json"
    r = run(tmp_path, monkeypatch, str(project / "jobs" / "orders.json"), "--report", str(report))
    data = json.loads(report.read_text())
    assert r.exit_code == 0 and data["state"] == f"sqlite {project / '.tidesync' / 'state.db'}"
    assert data["positions"]["jobs/orders.json#0"]["oplog"]["value"] == "2016-11-14 10:00:00"


def test_the_nearest_folder_with_a_project_file_or_state_wins(tmp_path: Path) -> None:
    (tmp_path / "tidesync.yaml").write_text("state: shared.db\n")
    (tmp_path / "team" / ".tidesync").mkdir(parents=True)
    job = tmp_path / "team" / "jobs" / "j.json"
    job.parent.mkdir()
    job.write_text("{}")
    assert find_project(job).root == tmp_path / "team"
    top = find_project(tmp_path / "other" / "j.json")
    assert (top.root, top.file, top.state) == (tmp_path, tmp_path / "tidesync.yaml", "shared.db")


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "--project: .* is neither a folder nor a project file"),
        (lambda p: (p.mkdir(), (p / "tidesync.yaml").write_text("state: [1]\n")), "state: must be"),
    ],
)
def test_a_bad_project_is_a_config_error(tmp_path: Path, setup: Any, message: str) -> None:
    p = tmp_path / "proj"
    setup(p)
    with pytest.raises(ConfigError, match=message):
        find_project(None, p)


def test_a_bad_project_option_exits_2_without_a_traceback(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = run(
        tmp_path,
        monkeypatch,
        str(project / "jobs" / "orders.json"),
        "--project",
        str(tmp_path / "nope"),
    )
    assert r.exit_code == 2 and "neither a folder nor a project file" in r.output
    assert "Traceback" not in r.output
