"""Actions of the page change the store exactly as the commands do.

Each comparison runs the scheduler on two copies of one project: the command on one, the page's
button (its API call) on the other, then compares the instances row by row (times, owners, log
paths and backfill ids aside).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.scheduler._helpers import land

from ._client import Client, serve, tidesync

_COMPARED = "node, cyctime, bizdate, state, params, attempts, recoveries, error, kill_requested"


def rows(root: Path) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(root / ".tidesync" / "state.db")
    try:
        got = con.execute(
            f"SELECT {_COMPARED}, batch = '' FROM ts_instances ORDER BY node, cyctime, batch"
        ).fetchall()
        meta = con.execute("SELECT key FROM ts_meta WHERE key LIKE 'paused:%'").fetchall()
    finally:
        con.close()
    return [*got, *meta]


@contextmanager
def twins(project: Path) -> Iterator[tuple[Path, Path]]:
    """Two copies of ``project`` (store, logs, files): one for the command, one for the page."""
    cli, page = project.parent / "by-cli", project.parent / "by-page"
    shutil.copytree(project, cli)
    shutil.copytree(project, page)
    yield cli, page


def _settled(c: Client, iid: int) -> Any:
    return c.wait(f"/api/instances/{iid}", lambda d: d["state"] not in ("waiting", "running"))


def test_rerun_of_a_failed_instance_after_the_fix_succeeds_as_the_cli(project: Path) -> None:
    with twins(project) as (cli, page):
        for root in (cli, page):
            land(root, "202501010200")  # the late file arrives
        r = tidesync(cli, "instance", "rerun", "3")
        assert r.exit_code == 0, r.output
        assert "instance 3: failed -> waiting" in r.stderr
        with serve(page) as c:
            out = c.post("/api/instances/3/rerun").json()
            assert out == {
                "ok": True,
                "message": "instance 3: failed -> waiting; running it now",
                "state": "waiting",
            }
            assert _settled(c, 3)["state"] == "succeeded"
        assert rows(page) == rows(cli)
        assert ("load", "20250101020000") in {
            (r[0], r[1]) for r in rows(page) if r[3] == "succeeded"
        }


def test_rerun_of_a_running_instance_is_refused_409(project: Path) -> None:
    con = sqlite3.connect(project / ".tidesync" / "state.db")
    con.execute("UPDATE ts_instances SET state = 'running', owner = 'elsewhere:1:x' WHERE id = 3")
    con.commit()
    con.close()
    with serve(project) as c:
        r = c.post("/api/instances/3/rerun")
        assert r.status == 409
        assert r.json()["error"] == "ID: instance 3 is running; kill it first"
    r = tidesync(project, "instance", "rerun", "3")
    assert r.exit_code == 2 and "ID: instance 3 is running; kill it first" in r.stderr


def test_kill_of_a_waiting_instance_is_the_cli_kill(project: Path) -> None:
    with twins(project) as (cli, page):
        r = tidesync(cli, "instance", "kill", "4")
        assert r.output.strip() == "instance 4: cancelled"
        with serve(page) as c:
            assert c.post("/api/instances/4/kill").json()["message"] == "instance 4: cancelled"
            again = c.post("/api/instances/4/kill").json()["message"]
            assert again == "instance 4: nothing to do, it is cancelled"
        assert rows(page) == rows(cli)


def test_pause_and_resume_are_the_cli_commands_and_hold_instances_back(project: Path) -> None:
    with twins(project) as (cli, page):
        assert tidesync(cli, "pause", "load").exit_code == 0
        with serve(page) as c:
            said = c.post("/api/nodes/load/pause").json()["message"]
            assert said == "node load paused: its instances wait until `tidesync resume load`"
            assert c.api("/api/nodes/load")["paused"] is True
            assert c.api("/api/nodes/load")["paused_by"] == "tidesync pause"
        assert rows(page) == rows(cli)
        # paused: the 03:00 instance is created and waits, whoever runs the schedule
        for root in (cli, page):
            land(root, "202501010300")
            tidesync(root, "scheduler", "run-once", "--at", "20250101030000")
        assert rows(page) == rows(cli)
        with serve(page) as c:
            waiting = c.api("/api/instances?node=load&state=waiting")["items"]
            assert [w["cyctime"] for w in waiting] == ["20250101030000"]
            why = c.api(f"/api/instances/{waiting[0]['id']}")["waiting_on"]
            assert why == "node load is paused (tidesync resume load resumes it)"
            nodes_json = tidesync(page, "nodes", "--json").output
            assert '"paused": true' in nodes_json
            assert c.post("/api/nodes/load/resume").json()["message"] == "node load resumed"
            assert c.post("/api/nodes/load/resume").json()["message"] == "node load is not paused"
        assert tidesync(cli, "resume", "load").output.strip() == "node load resumed"
        assert rows(page) == rows(cli)
        for root in (cli, page):
            tidesync(root, "scheduler", "run-once", "--at", "20250101030000")
        assert rows(page) == rows(cli)
        assert ("load", "20250101030000", "succeeded") in {r[:2] + (r[3],) for r in rows(page)}


def test_resume_of_a_node_paused_in_the_project_file_says_where(tmp_path: Path) -> None:
    from tests.scheduler._helpers import write_project

    root = tmp_path / "f"
    write_project(
        root, [{"name": "n", "dry_run": True, "paused": True, "schedule": {"every": "day"}}]
    )
    with serve(root) as c:
        r = c.post("/api/nodes/n/resume")
        assert r.status == 409
        assert r.json()["error"] == (
            "nodes[0].paused: node n is paused in tidesync.yaml; set paused: false there"
        )
        assert c.api("/api/nodes/n")["paused_by"] == "project file"
    assert tidesync(root, "resume", "n").exit_code == 2


def test_backfill_of_three_days_is_the_cli_backfill(project: Path) -> None:
    with twins(project) as (cli, page):
        r = tidesync(cli, "backfill", "daily", "--from", "20250105", "--to", "20250107")
        assert r.exit_code == 0, r.output
        with serve(page) as c:
            out = c.post("/api/nodes/daily/backfill", {"from": "2025-01-05", "to": "20250107"})
            body = out.json()
            assert out.status == 200 and body["count"] == 3, body
            assert body["message"].endswith(": 3 instance(s); running them now")
            batch = body["batch"]
            c.wait(
                f"/api/instances?batch={batch}",
                lambda d: (
                    d["total"] == 3
                    and not d["live"]
                    and all(i["state"] == "skipped" for i in d["items"])
                ),
            )
            listed = c.api(f"/api/instances?batch={batch}")["items"]
            assert [i["bizdate"] for i in listed] == ["20250107", "20250106", "20250105"]
        assert rows(page) == rows(cli)


def test_backfill_mistakes_are_400_and_create_nothing(client: Client, project: Path) -> None:
    before = rows(project)
    r = client.post("/api/nodes/daily/backfill", {"from": "20250107", "to": "20250105"})
    assert r.status == 400 and r.json()["error"] == "--to: 20250105 is before --from 20250107"
    r = client.post("/api/nodes/daily/backfill", {"from": "2025-02-30", "parallel": "0"})
    assert r.status == 400
    assert r.json()["error"].splitlines() == [
        "from: '2025-02-30' is not a business date; write YYYYMMDD or YYYY-MM-DD",
        "to: give the last business date",
        "parallel: '0' is not a whole number from 1 to 64",
    ]
    r = client.post(
        "/api/nodes/load/backfill",
        {"from": "20250105", "to": "20250105", "with_downstream": "maybe"},
    )
    assert r.status == 400
    assert r.json()["error"] == (
        "with_downstream: 'maybe' is not true or false (1/0, on/off, yes/no)"
    )
    assert (
        client.post("/api/nodes/nope/backfill", {"from": "20250101", "to": "20250101"}).status
        == 404
    )
    assert rows(project) == before


def test_a_backfill_told_no_downstream_creates_none(client: Client, project: Path) -> None:
    # before, any word but false/off/0 meant yes: the downstream node's instance came too
    out = client.post(
        "/api/nodes/load/backfill", {"from": "20250105", "to": "20250105", "with_downstream": "no"}
    )
    assert out.status == 200, out.json()
    listed = client.api(f"/api/instances?batch={out.json()['batch']}&per_page=500")["items"]
    assert {i["node"] for i in listed} == {"load"} and len(listed) == 24


def test_validate_checks_the_node_job_with_its_parameters(client: Client, project: Path) -> None:
    ok = client.post("/api/nodes/load/validate").json()
    assert ok["ok"] is True
    assert ok["message"].startswith("jobs/load.json: ok (")
    assert "parameters of cyctime" in ok["message"]
    dry = client.post("/api/nodes/daily/validate").json()
    assert dry["message"] == "node daily runs no job (dry_run): nothing to check"
    job = project / "jobs" / "load.json"
    job.write_text(job.read_text().replace('"writeMode": "insert"', '"writeMode": "insret"'))
    bad = client.post("/api/nodes/load/validate")
    assert bad.status == 422
    assert "content[0].writer.parameter.writeMode" in bad.json()["message"]
    assert "did you mean 'insert'?" in bad.json()["message"]


def test_a_cookie_session_needs_the_csrf_value_to_act(client: Client) -> None:
    browser = client.login()
    assert browser.csrf and browser.csrf != client.token
    r = browser.form("/api/nodes/load/pause", {"next": "/nodes/load"})
    assert r.status == 403 and "CSRF" in r.text
    assert client.api("/api/nodes/load")["paused"] is False
    r = browser.form(
        "/api/nodes/load/pause",
        {"csrf": browser.csrf, "next": "/nodes/load"},
        headers={"Origin": "http://evil.example"},
    )
    assert r.status == 403
    assert client.api("/api/nodes/load")["paused"] is False
    r = browser.post("/api/nodes/load/pause", headers={"X-Tidesync-Csrf": browser.csrf})
    assert r.status == 200 and client.api("/api/nodes/load")["paused"] is True


def test_a_form_comes_back_to_its_page_with_the_outcome(client: Client) -> None:
    browser = client.login()
    r = browser.form("/api/instances/4/kill", {"csrf": browser.csrf, "next": "/instances/4"})
    assert r.status == 303
    back = r.headers["location"]
    assert back.startswith("/instances/4?done=")
    page = browser.get(back, headers={"Accept": "text/html"}).text
    assert 'role="status"' in page and "instance 4: cancelled" in page
    # shown once
    assert "instance 4: cancelled" not in browser.get(back, headers={"Accept": "text/html"}).text
    # a form may only send the browser back to this page
    r = browser.form("/api/nodes/load/pause", {"csrf": browser.csrf, "next": "//evil.example/"})
    assert r.status == 200 and r.json()["ok"] is True


def test_get_on_an_action_is_405(client: Client) -> None:
    r = client.get("/api/instances/3/rerun")
    assert r.status == 405 and r.headers["allow"] == "POST"
