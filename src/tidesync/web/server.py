"""The HTTP server of the operations page: the standard library's, on a small pool of threads.

A fixed pool (not a thread per request) because each thread keeps its own connection to the
state store: a pool reuses a few, where a thread per request would open one per request.
HTTP/1.0, one request per connection, so an idle browser connection holds no thread; a
connection that sends nothing for 30 seconds is dropped.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from tidesync.web.app import MAX_BODY, App

__all__ = ["UiServer", "is_loopback", "start"]

log = logging.getLogger("tidesync.web")
POOL = 8


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Handler(BaseHTTPRequestHandler):
    server: UiServer
    timeout = 30
    server_version = "tidesync"
    sys_version = ""

    def _serve(self, method: str) -> None:
        headers = {k.lower(): v for k, v in self.headers.items()}
        body = b""
        if method == "POST":
            try:
                length = int(headers.get("content-length") or 0)
            except ValueError:
                length = -1
            if length < 0 or length > MAX_BODY:
                self._send(413, b"request body too large or unreadable\n", "text/plain", [])
                return
            body = self.rfile.read(length)
        res = self.server.app.handle(method, self.path, headers, body)
        self._send(res.status, res.body, res.content_type, res.headers)

    def _send(self, status: int, body: bytes, ctype: str, headers: list[tuple[str, str]]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        # never the query string: a first request carries the token in it
        log.debug("%s %s", self.command, (self.path or "").split("?", 1)[0])


class UiServer(HTTPServer):
    """``HTTPServer`` whose requests run on a fixed pool of threads."""

    daemon_threads = True

    def __init__(self, app: App, host: str, port: int):
        self.app = app
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)
        self._pool = ThreadPoolExecutor(POOL, thread_name_prefix="tidesync-ui")
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return self.app.url(str(self.server_address[0]), self.port)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._pool.submit(self._process, request, client_address)

    def _process(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - a broken connection: that request only
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s broke", client_address, exc_info=True)

    def start(self) -> UiServer:
        """Serve on a thread of its own; :meth:`stop` ends it."""
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="tidesync-ui",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._pool.shutdown(wait=True)
        self.app.close()


def start(app: App, host: str = "127.0.0.1", port: int = 8765) -> UiServer:
    """Listen on ``host:port`` (0: a free port) and serve ``app`` in the background."""
    return UiServer(app, host, port).start()
