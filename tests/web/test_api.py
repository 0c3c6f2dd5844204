"""The JSON API under /api/, over real HTTP, against a store the scheduler filled."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ._client import Client, serve
from .conftest import SECRET, XSS, make_project

PATHS = [
    "/",
    "/nodes",
    "/nodes/load",
    "/instances",
    "/instances/1",
    "/static/app.css",
    "/static/app.js",
    "/openapi.json",
    "/api/nodes",
    "/api/nodes/load",
    "/api/graph",
    "/api/instances",
    "/api/instances/1",
    "/api/instances/1/log",
]


@pytest.mark.parametrize("path", PATHS)
def test_a_request_without_the_token_is_refused(client: Client, path: str) -> None:
    assert client.get(path, auth=False).status == 401
    assert client.get(path, headers={"Authorization": "Bearer wrong"}).status == 401
    assert (
        client.get(path + ("&" if "?" in path else "?") + "token=wrong", auth=False).status == 401
    )
    assert client.get(path, headers={"Cookie": "tidesync_ui=wrong"}, auth=False).status == 401
    assert client.get(path).status in (200, 303)


def test_actions_without_the_token_are_refused_and_change_nothing(client: Client) -> None:
    before = client.api("/api/instances/3")
    r = client.post("/api/instances/3/rerun", auth=False)
    assert r.status == 401
    assert client.api("/api/instances/3") == before
    assert client.post("/api/nodes/load/pause", auth=False).status == 401
    assert client.api("/api/nodes/load")["paused"] is False


def test_nodes_say_schedule_next_run_last_state_and_dependencies(client: Client) -> None:
    nodes = {n["name"]: n for n in client.api("/api/nodes")}
    load, daily = nodes["load"], nodes["daily"]
    assert load["schedule"] == "every 1 hour 00:00-23:59 (Asia/Shanghai) from 2025-01-01 to -"
    assert load["last"]["state"] == "failed"
    assert load["last"]["cyctime_text"] == "2025-01-01 02:00:00+08:00"
    assert load["downstream"] == ["daily"] and daily["upstream"] == ["load"]
    assert load["paused"] is False and load["job"] == "jobs/load.json"
    assert daily["last"]["state"] == "waiting"
    assert client.api("/api/graph")["edges"] == [["load", "daily"]]


def test_unknown_node_or_instance_is_404_with_a_hint(client: Client) -> None:
    r = client.get("/api/nodes/lod")
    assert r.status == 404
    assert "unknown node 'lod'; did you mean 'load'?" in r.json()["error"]
    assert client.get("/api/instances/999").status == 404
    assert client.get("/api/nope").status == 404


def test_instances_filter_by_node_state_and_bizdate_range_paged(client: Client) -> None:
    every = client.api("/api/instances")
    assert every["total"] == 4
    assert [i["cyctime"] for i in every["items"]] == [
        "20250101020000",
        "20250101010000",
        "20250101003000",
        "20250101000000",
    ]  # newest first
    failed = client.api("/api/instances?state=failed")
    assert [(i["node"], i["state"], i["attempts"]) for i in failed["items"]] == [
        ("load", "failed", 1)
    ]
    assert "no file matches" in failed["items"][0]["error"]
    ok = client.api("/api/instances?node=load&state=succeeded")
    assert [i["rows_read"] for i in ok["items"]] == [1, 1]
    assert all(i["duration_s"] >= 0 for i in ok["items"])
    assert client.api("/api/instances?from=2025-01-01&to=20250101")["total"] == 0
    assert client.api("/api/instances?from=20241231&to=20241231")["total"] == 4
    page2 = client.api("/api/instances?node=load&per_page=2&page=2")
    assert (page2["total"], page2["pages"], [i["cyctime"] for i in page2["items"]]) == (
        3,
        2,
        ["20250101000000"],
    )


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("state=faild", "state: 'faild' is not a state; did you mean 'failed'?"),
        ("from=2025-13-01", "from: '2025-13-01' is not a business date"),
        ("per_page=0", "per_page: '0' is not a whole number from 1 to 500"),
        ("page=x", "page: 'x' is not a whole number"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(client: Client, query: str, says: str) -> None:
    r = client.get(f"/api/instances?{query}")
    assert r.status == 400
    assert says in r.json()["error"]


def test_one_instance_has_parameters_attempts_report_and_log(client: Client) -> None:
    ok = client.api("/api/instances/1")
    assert ok["params"]["filename"] == "202501010000"
    assert ok["report"]["records_read"] == 1 and ok["report"]["status"] == "succeeded"
    assert ok["report"]["splits"][0]["records_read"] == 1
    assert [(a["attempt"], a["outcome"]) for a in ok["attempt_log"]] == [(1, "succeeded")]
    assert ok["attempt_log"][0]["started_at"].endswith("+08:00")
    bad = client.api("/api/instances/3")
    assert bad["state"] == "failed" and "no file matches" in bad["error"]
    assert bad["attempt_log"][0]["outcome"] == "failed"
    log = client.api("/api/instances/3/log")
    assert log["source"] == "file" and log["done"] is True
    assert "attempt 1 failed" in log["text"]
    rest = client.api(f"/api/instances/3/log?offset={log['offset']}")
    assert rest["text"] == "" and rest["offset"] == log["offset"]


def test_secrets_are_never_returned(client: Client, project: Path) -> None:
    assert SECRET in (project / "tidesync.yaml").read_text()  # the page has it to hide
    bodies = [
        client.get(p).text
        for p in (
            "/api/nodes",
            "/api/nodes/load",
            "/api/instances",
            "/api/instances/1",
            "/api/instances/1/log",
            "/nodes",
            "/nodes/load",
            "/instances/1",
        )
    ]
    assert all(SECRET not in b for b in bodies)
    assert client.api("/api/instances/1")["params"]["password"] == "***"


def test_markup_in_parameters_and_logs_is_text(client: Client) -> None:
    assert client.api("/api/instances/1")["params"]["note"] == XSS  # data, as it is
    for path in ("/instances/1", "/nodes/load"):
        html = client.get(path, headers={"Accept": "text/html"}).text
        assert XSS not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in client.get("/instances/1").text


def test_openapi_lists_every_api_route(client: Client) -> None:
    doc = client.api("/openapi.json")
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) == {
        "/api/nodes",
        "/api/graph",
        "/api/nodes/{name}",
        "/api/nodes/{name}/history",
        "/api/instances",
        "/api/instances/{id}",
        "/api/instances/{id}/log",
        "/api/instances/{id}/dirty",
        "/api/instances/{id}/rerun",
        "/api/instances/{id}/kill",
        "/api/nodes/{name}/pause",
        "/api/nodes/{name}/resume",
        "/api/nodes/{name}/validate",
        "/api/nodes/{name}/backfill",
    }


def test_history_gives_duration_and_rows_per_second(client: Client) -> None:
    h = client.api("/api/nodes/load/history")
    assert [(x["cyctime"], x["state"]) for x in h] == [
        ("20250101000000", "succeeded"),
        ("20250101010000", "succeeded"),
        ("20250101020000", "failed"),
    ]
    assert all(x["duration_s"] is not None for x in h)
    assert h[0]["rows_read"] == 1 and h[0]["rows_per_s"] > 0


def test_dirty_records_of_a_run_are_listed(tmp_path: Path) -> None:
    from tests.scheduler._helpers import write_project

    from ._client import tidesync

    root = tmp_path / "d"
    (root / "jobs").mkdir(parents=True)
    (root / "in.csv").write_text("v\n1\nx<b>1</b>\n2\nnope\n")
    reader = {
        "name": "txtfilereader",
        "parameter": {
            "path": "../in.csv",
            "fileFormat": "csv",
            "skipHeader": True,
            "column": [{"index": 0, "type": "long", "name": "v"}],
        },
    }
    writer = {"name": "streamwriter", "parameter": {"print": False}}
    job = {
        "setting": {"errorLimit": {"record": 5}},
        "content": [{"reader": reader, "writer": writer}],
    }
    (root / "jobs" / "bad.json").write_text(json.dumps({"job": job}))
    write_project(root, [{"name": "bad", "job": "jobs/bad.json", "schedule": {"every": "day"}}])
    tidesync(root, "scheduler", "run-once", "--at", "20250101000000")
    with serve(root) as c:
        inst = c.api("/api/instances")["items"][0]
        assert inst["dirty_records"] == 2, inst
        d = c.api(f"/api/instances/{inst['id']}/dirty")
        assert d["count"] == 2 and len(d["records"]) == 2
        assert d["records"][0]["reason"]
        html = c.get(f"/instances/{inst['id']}").text
        assert "x<b>1</b>" not in html and "x&lt;b&gt;1&lt;/b&gt;" in html


def test_a_project_on_postgresql(tmp_path: Path) -> None:
    from tests.scheduler._pg import fresh_database

    with fresh_database("ts_web") as url:
        root = make_project(tmp_path / "pg", state=url)
        with serve(root) as c:
            nodes: dict[str, Any] = {n["name"]: n for n in c.api("/api/nodes")}
            assert nodes["load"]["last"]["state"] == "failed"
            assert c.api("/api/instances?state=succeeded")["total"] == 2
            assert c.post("/api/nodes/load/pause").json()["ok"] is True
            from tidesync.scheduler.store import open_store

            store = open_store(url, root / ".tidesync")
            try:
                assert list(store.paused()) == ["load"]
            finally:
                store.close()


def test_a_parameter_the_job_uses_as_a_password_is_masked(tmp_path: Path) -> None:
    from tests.scheduler._helpers import write_project

    from ._client import tidesync

    root = tmp_path / "s"
    (root / "jobs").mkdir(parents=True)
    writer = {
        "name": "postgresqlwriter",
        "parameter": {
            "username": "etl",
            "password": "${dbpw}",
            "column": ["v"],
            "connection": [{"jdbcUrl": "jdbc:postgresql://127.0.0.1:1/x", "table": ["t"]}],
        },
    }
    reader = {"name": "streamreader", "parameter": {"column": [{"type": "string", "value": "a"}]}}
    job = {"job": {"content": [{"reader": reader, "writer": writer}]}}
    (root / "jobs" / "pg.json").write_text(json.dumps(job))
    secret = "zebra-secret-42"
    write_project(
        root,
        [
            {
                "name": "pg",
                "job": "jobs/pg.json",
                "dry_run": True,  # instances made, nothing run
                "params": {"dbpw": secret, "table": "t"},
                "schedule": {"every": "day"},
            }
        ],
    )
    tidesync(root, "scheduler", "run-once", "--at", "20250101000000")
    with serve(root) as c:
        node = c.api("/api/nodes/pg")
        assert node["params"] == {"dbpw": "***", "table": "t"}
        iid = c.api("/api/instances")["items"][0]["id"]
        assert c.api(f"/api/instances/{iid}")["params"]["dbpw"] == "***"
        for path in ("/api/nodes", "/nodes", "/nodes/pg", f"/instances/{iid}", "/api/instances"):
            assert secret not in c.get(path).text, path
