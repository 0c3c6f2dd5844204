"""The HTML pages over real HTTP: what each shows, its buttons, its assets."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from tests.scheduler._helpers import stream_job, write_project
from tidesync.scheduler.daemon import Scheduler
from tidesync.scheduler.project import load_project
from tidesync.web.svg import nice_max

from ._client import Client, serve

HTML = {"Accept": "text/html"}


def page(c: Client, path: str) -> str:
    r = c.get(path, headers=HTML)
    assert r.status == 200, (path, r.status, r.text[:300])
    assert r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    return r.text


def buttons(html: str) -> list[str]:
    return re.findall(r"<button[^>]*>([^<]*)</button>", html)


def test_the_nodes_page_lists_nodes_and_draws_their_graph(client: Client) -> None:
    html = page(client, "/nodes")
    assert "every 1 hour 00:00-23:59 (Asia/Shanghai)" in html
    assert '<span class="badge state-failed">failed</span>' in html
    svg = html[html.index('<svg class="graph"') :]
    assert 'href="/nodes/load"' in svg and 'href="/nodes/daily"' in svg
    assert svg.count('class="edge"') == 1
    assert 'class="gnode state-failed"' in svg


def test_the_node_page_has_its_actions_and_charts(client: Client) -> None:
    html = page(client, "/nodes/load")
    assert buttons(html) == ["Pause", "Validate", "Backfill"]
    assert 'name="from"' in html and 'name="to"' in html
    charts = re.findall(r'<svg class="chart".*?</svg>', html)
    assert len(charts) == 2
    assert 'aria-label="Duration of load per instance"' in charts[0]
    # one bar per finished run, coloured by its state
    assert charts[0].count('class="bar state-succeeded"') == 2
    assert charts[0].count('class="bar state-failed"') == 1
    assert 'aria-label="Rows per second of load per instance"' in charts[1]
    client.post("/api/nodes/load/pause")
    assert buttons(page(client, "/nodes/load"))[0] == "Resume"


def test_the_instance_list_filters_and_pages(client: Client) -> None:
    html = page(client, "/instances?state=failed")
    assert re.findall(r'<a href="/instances/(\d+)">', html) == ["3"]
    assert "<option selected>failed</option>" in html
    html = page(client, "/instances?per_page=1&page=2")
    assert "page 2 of 4" in html
    assert 'href="/instances?per_page=1&amp;page=1"' in html
    bad = page(client, "/instances?from=notadate")
    assert "from: &#x27;notadate&#x27; is not a business date" in bad


def test_a_list_with_work_due_refreshes_itself(client: Client) -> None:
    # daily's instance waits on load (due, not done): the list keeps itself current
    assert '<main id="main" data-refresh=5>' in page(client, "/instances")
    assert "data-refresh" not in page(client, "/instances?state=succeeded")


def test_the_instance_page_of_a_failed_run(client: Client) -> None:
    html = page(client, "/instances/3")
    assert buttons(html) == ["Rerun"]
    assert "no file matches" in html
    assert "Attempts" in html and "1 of 1" in html
    assert 'id="log"' in html and "attempt 1 failed" in html
    assert 'data-live="0"' in html
    waiting = page(client, "/instances/4")
    assert buttons(waiting) == ["Rerun", "Kill"]
    assert "upstream load" in waiting  # why it waits


def test_an_unknown_page_is_a_404_page(client: Client) -> None:
    r = client.get("/instances/999", headers=HTML)
    assert r.status == 404 and "no instance 999" in r.text
    assert client.get("/static/../tidesync.yaml").status == 404


def test_assets_come_from_the_package_and_nothing_from_elsewhere(client: Client) -> None:
    from importlib import resources

    for name in ("app.css", "app.js"):
        shipped = resources.files("tidesync.web").joinpath("static", name).read_bytes()
        assert client.get(f"/static/{name}").body == shipped
    for path in ("/nodes", "/nodes/load", "/instances", "/instances/1"):
        html = page(client, path)
        assert not re.search(r'(src|href)="(https?:)?//', html), path
        assert "<script>" not in html  # no inline script (the CSP allows none)


def test_the_live_log_follows_a_running_instance_and_kill_stops_it(tmp_path: Path) -> None:
    root = tmp_path / "slow"
    stream_job(root / "jobs" / "slow.json", value="x", records=10_000_000, record_rate=2000)
    write_project(
        root,
        [{"name": "slow", "job": "jobs/slow.json", "schedule": {"every": "day"}}],
        scheduler={"progress": "1s", "lease": "3s"},
    )
    sched = Scheduler(load_project(root))
    with serve(root) as c:
        t = threading.Thread(target=sched.run_once)
        t.start()
        try:
            inst = c.wait(
                "/api/instances", lambda d: d["items"] and d["items"][0]["state"] == "running"
            )
            iid = inst["items"][0]["id"]
            html = page(c, f"/instances/{iid}")
            assert 'data-live="1"' in html and buttons(html) == ["Kill"]
            # the log may still be empty the moment the instance turns running
            first = c.wait(f"/api/instances/{iid}/log", lambda d: d["text"])
            assert first["done"] is False and first["text"].endswith("\n")
            later = c.wait(
                f"/api/instances/{iid}/log?offset={first['offset']}",
                lambda d: "progress:" in d["text"],
            )
            assert later["text"].startswith(tuple("0123456789"))  # whole lines from the offset
            said = c.post(f"/api/instances/{iid}/kill").json()["message"]
            assert said == f"instance {iid}: kill requested: its scheduler cancels the running job"
            c.wait(f"/api/instances/{iid}", lambda d: d["state"] == "cancelled")
        finally:
            sched.stop()
            t.join()
        end = c.api(f"/api/instances/{iid}/log")
        assert end["done"] is True


@pytest.mark.parametrize(("v", "top"), [(0, 1), (0.3, 0.5), (7, 10), (12, 20), (2400, 2500)])
def test_chart_axes_end_on_round_numbers(v: float, top: float) -> None:
    assert nice_max(v) == top
