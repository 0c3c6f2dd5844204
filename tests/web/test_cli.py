"""`tidesync ui` and `tidesync scheduler start --ui` as a user starts them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from tidesync.cli import main

from ._client import Client

TIDESYNC = str(Path(sys.executable).parent / "tidesync")


def _start(args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    p = subprocess.Popen(
        [TIDESYNC, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    assert p.stdout is not None
    line = p.stdout.readline()
    m = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=(\S+))", line)
    if m is None:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"no URL printed: {line!r} {err}")
    return p, line


def _stop(p: subprocess.Popen[str]) -> int:
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)  # and close the pipes
    return p.returncode


def test_ui_prints_a_url_whose_token_logs_in(project: Path) -> None:
    p, line = _start(["ui", "--project", str(project), "--port", "0"], {"TIDESYNC_UI_TOKEN": ""})
    try:
        m = re.search(r":(\d+)/\?token=(\S+)", line)
        assert m is not None
        port, token = int(m[1]), m[2]
        assert len(token) >= 24
        browser = Client(port, token).login()  # opens the printed URL, keeps the cookie
        assert {n["name"] for n in browser.api("/api/nodes")} == {"load", "daily"}
        assert Client(port, "guess").get("/api/nodes").status == 401
    finally:
        assert _stop(p) == 0


def test_the_token_is_fixed_by_the_environment(project: Path) -> None:
    p, line = _start(
        ["ui", "--project", str(project), "--port", "0"], {"TIDESYNC_UI_TOKEN": "fixed-by-me"}
    )
    try:
        assert line.rstrip().endswith("/?token=fixed-by-me")
    finally:
        assert _stop(p) == 0


def test_a_non_loopback_host_without_a_token_refuses_to_start(project: Path) -> None:
    r = CliRunner(env={"TIDESYNC_UI_TOKEN": ""}).invoke(
        main, ["ui", "--project", str(project), "--host", "0.0.0.0", "--port", "0"]
    )
    assert r.exit_code == 2
    assert r.stderr.startswith("error: --host 0.0.0.0: the page would be reachable")
    assert "TIDESYNC_UI_TOKEN" in r.stderr


def test_a_bad_project_is_exit_2(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["ui", "--project", str(tmp_path), "--port", "0"])
    assert r.exit_code == 2 and "no such project file" in r.stderr


def test_scheduler_start_ui_serves_the_daemon_store(project: Path) -> None:
    p, line = _start(
        ["scheduler", "start", "--project", str(project), "--ui", "--ui-port", "0"],
        {"TIDESYNC_UI_TOKEN": "daemon-token"},
    )
    try:
        m = re.search(r":(\d+)/\?token=", line)
        assert m is not None
        c = Client(int(m[1]), "daemon-token")
        assert c.api("/api/instances?state=failed")["total"] == 1
        # an action wakes the daemon, which runs the instance (its file is still missing)
        assert c.post("/api/instances/3/rerun").json()["ok"] is True
        ran = c.wait(
            "/api/instances/3", lambda d: len(d["attempt_log"]) == 2 and d["state"] == "failed"
        )
        assert ran["attempts"] == 1
    finally:
        assert _stop(p) == 0
