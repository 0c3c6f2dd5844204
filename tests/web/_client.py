"""The operations page under test: served over real HTTP on a free loopback port, and a client.

The project is made with the scheduler tests' helpers and its instances by running the
scheduler (``tidesync scheduler run-once``), so the page reads a real store.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from click.testing import CliRunner

from tidesync.cli import main
from tidesync.web.app import App
from tidesync.web.server import UiServer

TOKEN = "test-token-0123456789"


def tidesync(root: Path, *args: str) -> Any:
    return CliRunner().invoke(main, [*args, "--project", str(root)], catch_exceptions=False)


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Client:
    """Talks to the page as a browser (cookie, CSRF field) or as an API client (Bearer)."""

    port: int
    token: str = TOKEN
    cookie: str | None = None
    csrf: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def request(
        self,
        method: str,
        path: str,
        *,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> Reply:
        con = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Host": f"127.0.0.1:{self.port}", **self.headers, **(headers or {})}
        if auth and self.cookie is None and "Authorization" not in h:
            h["Authorization"] = f"Bearer {self.token}"
        if self.cookie:
            h["Cookie"] = self.cookie
        try:
            con.request(method, path, body=body, headers=h)
            r = con.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            con.close()

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request("GET", path, **kw)

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Reply:
        h = {"Content-Type": "application/json", **kw.pop("headers", {})}
        return self.request("POST", path, body=json.dumps(data or {}).encode(), headers=h, **kw)

    def form(self, path: str, fields: dict[str, str], **kw: Any) -> Reply:
        h = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "text/html",
            **kw.pop("headers", {}),
        }
        return self.request("POST", path, body=urlencode(fields).encode(), headers=h, **kw)

    def api(self, path: str) -> Any:
        r = self.get(path)
        assert r.status == 200, (path, r.status, r.text)
        return r.json()

    def login(self) -> Client:
        """Open the printed URL as a browser does: the cookie it sets, the CSRF of a page."""
        r = self.get(f"/?token={self.token}", auth=False)
        assert r.status == 303, r.text
        cookie = r.headers["set-cookie"].split(";")[0]
        c = Client(self.port, self.token, cookie=cookie)
        page = c.get("/nodes", headers={"Accept": "text/html"})
        m = re.search(r'data-csrf="([0-9a-f]+)"', page.text)
        assert m, page.text[:500]
        c.csrf = m[1]
        return c

    def wait(self, path: str, until: Any, timeout: float = 60) -> Any:
        """Poll an API path until ``until(value)``; the value (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.api(path)
            if until(got):
                return got
            assert time.monotonic() < deadline, f"{path}: still {got!r}"
            time.sleep(0.1)


@contextmanager
def serve(root: Path, *, daemon: Any = None, token: str = TOKEN) -> Iterator[Client]:
    app = App(root, token, daemon=daemon)
    server = UiServer(app, "127.0.0.1", 0).start()
    try:
        yield Client(server.port, token)
    finally:
        server.stop()
