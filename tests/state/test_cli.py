"""`tidesync state list | show | reset`: see and forget what a project keeps between runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.test_project import incremental_job, oplog, sqlite_reader
from tidesync.cli import main


def cli(cwd: Path, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str | None = None) -> Any:
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("TIDESYNC_PROJECT", raising=False)
    return CliRunner().invoke(main, list(args), input=stdin)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "etl"
    root.mkdir()
    (root / "tidesync.yaml").write_text("timezone: Asia/Shanghai\n")
    oplog(root / "src.db", (1, "2016-11-13 10:00:00"), (2, "2016-11-14 10:00:00"))
    for name in ("a", "b"):
        job = incremental_job(root / "jobs" / f"{name}.json", sqlite_reader("../src.db"))
        r = cli(root, monkeypatch, "run", str(job), "--cyctime", "20161117000000")
        assert r.exit_code == 0, r.output
    return root


def test_list_shows_every_jobs_positions_in_the_projects_zone(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli(project / "jobs", monkeypatch, "state", "list", "--json")
    data = json.loads(r.output)
    assert data["state"] == f"sqlite {project / '.tidesync' / 'state.db'}"
    assert [(e["ns"], e["key"]) for e in data["entries"]] == [
        ("positions", "jobs/a.json#0"),
        ("positions", "jobs/b.json#0"),
    ]
    assert data["entries"][0]["updated_at"].endswith("+08:00")
    text = cli(project, monkeypatch, "state", "list")
    assert "jobs/a.json#0" in text.output and "2016-11-14 10:00:00" in text.output


def test_show_takes_a_job_file_or_a_key(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    by_file = cli(project / "jobs", monkeypatch, "state", "show", "a.json")
    by_key = cli(project, monkeypatch, "state", "show", "jobs/a.json#0")
    assert by_file.exit_code == by_key.exit_code == 0, by_file.output
    assert by_file.output == by_key.output
    assert (
        '"value": "2016-11-14 10:00:00"' in by_file.output and "jobs/b.json" not in by_file.output
    )


def test_reset_forgets_one_jobs_positions_and_its_next_run_starts_over(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli(project, monkeypatch, "state", "reset", "jobs/a.json", "--yes")
    assert r.exit_code == 0 and "forgot 1" in r.output, r.output
    keys = [
        e["key"]
        for e in json.loads(cli(project, monkeypatch, "state", "list", "--json").output)["entries"]
    ]
    assert keys == ["jobs/b.json#0"]
    again = cli(project, monkeypatch, "run", "jobs/a.json", "--cyctime", "20161117000000")
    assert "2 read" in again.output


def test_reset_without_yes_off_a_terminal_is_refused_and_keeps_them(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = cli(project, monkeypatch, "state", "reset", "jobs/a.json#0", stdin="y\n")
    assert r.exit_code == 2 and "add --yes" in r.output
    assert cli(project, monkeypatch, "state", "show", "jobs/a.json").exit_code == 0


def test_show_and_reset_of_nothing_exit_2_naming_the_store(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for cmd in ("show", "reset"):
        r = cli(
            project,
            monkeypatch,
            "state",
            cmd,
            "jobs/zzz.json",
            "--yes" if cmd == "reset" else "--ns=positions",
        )
        assert r.exit_code == 2
        assert "nothing saved under 'jobs/zzz.json'" in r.output and "state.db" in r.output


def test_a_job_with_a_parameter_in_its_state_key_is_named_by_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = incremental_job(
        project / "jobs" / "p.json", sqlite_reader("../src.db"), {"stateKey": "orders_${t}"}
    )
    r = cli(project, monkeypatch, "state", "show", str(job))
    assert r.exit_code == 2 and "holds parameters; name the key itself" in r.output
