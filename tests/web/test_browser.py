"""One end-to-end run of the page in real headless Chromium (Debian's ``chromium``, driven by
Playwright for Python), as an operator would use it on a project with a failing node.

`make test` installs Chromium (``.ci/browser``). Elsewhere, without Chromium or Playwright, the
test skips saying so; under ``CI=true`` it fails instead. Screenshots of every page, at 1280x800
and 400x800, go to ``out/ui-screenshots/`` (not committed) to be looked at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.scheduler._helpers import land

from ._client import TOKEN, serve

SHOTS = Path(__file__).resolve().parents[2] / "out" / "ui-screenshots"


def _chromium() -> str:
    path = os.environ.get("TIDESYNC_CHROMIUM") or shutil.which("chromium")
    why = None
    if not path:
        why = "no chromium on PATH (apt-get install chromium, or make test as root)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ModuleNotFoundError:
            why = "Playwright is not installed (pip install -e '.[dev]')"
    if why:
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser test: {why}")
        pytest.skip(f"browser test: {why}")
    assert path is not None
    return path


def test_an_operator_finds_the_failure_reruns_it_pauses_and_backfills(project: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    exe = _chromium()
    SHOTS.mkdir(parents=True, exist_ok=True)
    with serve(project) as c, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(30_000)

        def shot(name: str) -> None:
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            page.set_viewport_size({"width": 400, "height": 800})
            page.screenshot(path=str(SHOTS / f"{name}-narrow.png"), full_page=True)
            page.set_viewport_size({"width": 1280, "height": 800})

        # the printed URL logs in; the token leaves the address bar
        page.goto(f"http://127.0.0.1:{c.port}/?token={TOKEN}")
        assert "token" not in page.url
        expect(page.get_by_role("heading", name="Nodes")).to_be_visible()
        shot("nodes")

        # find the failed instance and read its log
        page.get_by_role("link", name="Instances").click()
        page.get_by_label("State").select_option("failed")
        page.get_by_role("button", name="Filter").click()
        shot("instances")
        page.get_by_role("link", name="3", exact=True).click()
        expect(page.locator("#log")).to_contain_text("attempt 1 failed")
        expect(page.locator("#log")).to_contain_text("no file matches")

        # the late file arrives; Rerun; the page follows the run to its end
        land(project, "202501010200")
        page.get_by_role("button", name="Rerun").click()
        expect(page.get_by_role("status")).to_contain_text("instance 3: failed -> waiting")
        expect(page.locator("h1 .badge")).to_have_text("succeeded", timeout=60_000)
        expect(page.locator("#log")).to_contain_text("attempt 1 succeeded")
        shot("instance")

        # pause and resume the node
        page.get_by_role("link", name="load", exact=True).first.click()
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("status")).to_contain_text("node load paused")
        page.get_by_role("button", name="Resume").click()
        expect(page.get_by_role("status")).to_contain_text("node load resumed")
        page.get_by_role("button", name="Validate").click()
        expect(page.get_by_role("status")).to_contain_text("jobs/load.json: ok")
        shot("node")

        # a backfill of three days of the daily node
        page.goto(f"http://127.0.0.1:{c.port}/nodes/daily")
        page.get_by_label("From").fill("2025-01-05")
        page.get_by_label("To").fill("2025-01-07")
        page.get_by_role("button", name="Backfill").click()
        expect(page.get_by_role("status")).to_contain_text("3 instance(s)")
        browser.close()
        batch = c.wait("/api/instances?node=daily&state=skipped", lambda d: d["total"] == 3)[
            "items"
        ]
        assert sorted(i["bizdate"] for i in batch) == ["20250105", "20250106", "20250107"]
