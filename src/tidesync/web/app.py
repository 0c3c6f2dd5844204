"""The operations page as one object: routes, the token, and the actions.

:class:`App` answers a request (method, path, query, headers, body) with a :class:`Response`;
``server.py`` puts it behind an HTTP server. It reads the project through a
:class:`~tidesync.scheduler.daemon.Scheduler` — the daemon's own when the page runs inside
``tidesync scheduler start --ui``, else one of its own, made again when ``tidesync.yaml``
changes — so the page, the command line and the scheduler read and write one state store.

Safety (docs/ui.md):

- every request carries the token: ``?token=`` (a page then sets an HttpOnly, SameSite=Strict
  cookie and redirects to itself without it), the cookie, or ``Authorization: Bearer``;
  without it, 401 — pages, assets, the API and ``/openapi.json`` alike;
- an action is a POST with the CSRF value (a form field or the ``X-Tidesync-Csrf`` header:
  an HMAC of the token, which another site cannot read) unless the token came in the
  Authorization header; a cross-origin ``Origin`` is refused;
- every text is escaped where it is drawn and redacted (``errors.redact``) before;
  responses carry a Content-Security-Policy that allows no inline script.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

from tidesync.errors import ConfigError, TidesyncError, redact
from tidesync.scheduler import ops
from tidesync.web import data, pages
from tidesync.web.openapi import openapi

__all__ = ["App", "Response"]

log = logging.getLogger("tidesync.web")

_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_STATIC = {"app.css": "text/css; charset=utf-8", "app.js": "text/javascript; charset=utf-8"}
MAX_BODY = 64 * 1024


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(
            status,
            json.dumps(value, ensure_ascii=False, default=str).encode(),
            "application/json",
        )

    @classmethod
    def html(cls, text: str, status: int = 200) -> Response:
        return cls(status, text.encode(), "text/html; charset=utf-8")

    @classmethod
    def redirect(cls, to: str) -> Response:
        return cls(303, b"", headers=[("Location", to)])


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    form: dict[str, list[str]] = field(default_factory=dict)
    by_header: bool = False  # the token came in Authorization: no cookie, no CSRF needed

    def arg(self, name: str, default: str | None = None) -> str | None:
        got = self.form.get(name) or self.query.get(name)
        return got[-1] if got else default

    @property
    def wants_html(self) -> bool:
        return "text/html" in self.headers.get("accept", "") and not self.path.startswith("/api/")


Route = Callable[..., Response]


class App:
    """The operations page of the project in ``project_dir`` (or of ``daemon``'s project)."""

    def __init__(
        self,
        project_dir: Path | None = None,
        token: str | None = None,
        *,
        daemon: Any = None,
        cookie_name: str = "tidesync_ui",
    ):
        from tidesync.scheduler.daemon import Scheduler
        from tidesync.scheduler.project import load_project

        self.token = token or secrets.token_urlsafe(24)
        self.csrf = hmac.new(self.token.encode(), b"csrf", hashlib.sha256).hexdigest()[:32]
        self.cookie_name = cookie_name
        self.daemon = daemon
        self.project_dir = project_dir
        self._lock = threading.Lock()
        self._flash: OrderedDict[str, tuple[bool, str]] = OrderedDict()
        self._runs: list[tuple[Any, threading.Thread]] = []
        self.load_error: str | None = None
        if daemon is not None:
            self._sched = daemon
        else:
            self._sched = Scheduler(load_project(project_dir))
        self._routes: list[tuple[str, re.Pattern[str], Route]] = []
        for method, pattern, fn in (
            ("GET", r"/", self._root),
            ("GET", r"/nodes", self._page_nodes),
            ("GET", r"/nodes/(?P<name>[^/]+)", self._page_node),
            ("GET", r"/instances", self._page_instances),
            ("GET", r"/instances/(?P<iid>\d+)", self._page_instance),
            ("GET", r"/static/(?P<name>[\w.-]+)", self._static),
            ("GET", r"/openapi.json", self._openapi),
            ("GET", r"/api/nodes", self._api_nodes),
            ("GET", r"/api/graph", self._api_graph),
            ("GET", r"/api/nodes/(?P<name>[^/]+)", self._api_node),
            ("GET", r"/api/nodes/(?P<name>[^/]+)/history", self._api_history),
            ("GET", r"/api/instances", self._api_instances),
            ("GET", r"/api/instances/(?P<iid>\d+)", self._api_instance),
            ("GET", r"/api/instances/(?P<iid>\d+)/log", self._api_log),
            ("GET", r"/api/instances/(?P<iid>\d+)/dirty", self._api_dirty),
            ("POST", r"/api/instances/(?P<iid>\d+)/rerun", self._act_rerun),
            ("POST", r"/api/instances/(?P<iid>\d+)/kill", self._act_kill),
            ("POST", r"/api/nodes/(?P<name>[^/]+)/pause", self._act_pause),
            ("POST", r"/api/nodes/(?P<name>[^/]+)/resume", self._act_resume),
            ("POST", r"/api/nodes/(?P<name>[^/]+)/validate", self._act_validate),
            ("POST", r"/api/nodes/(?P<name>[^/]+)/backfill", self._act_backfill),
        ):
            self._routes.append((method, re.compile(pattern + r"\Z"), fn))

    # -- the project ------------------------------------------------------------------------
    @property
    def sched(self) -> Any:
        """The scheduler the page reads through; a standalone page follows edits of the
        project file (one that does not load keeps the previous nodes, and says so)."""
        if self.daemon is not None:
            return self.daemon
        with self._lock:
            cur = self._sched
            try:
                mtime = cur.project.file.stat().st_mtime
            except OSError:
                return cur
            if mtime == cur.project.mtime:
                return cur
            from tidesync.scheduler.daemon import Scheduler
            from tidesync.scheduler.project import load_project

            try:
                self._sched = Scheduler(load_project(cur.project.file), cur.store)
                self.load_error = None
            except ConfigError as e:
                cur.project.mtime = mtime
                self.load_error = redact(
                    f"{cur.project.file} changed but does not load; showing the previous "
                    f"nodes: {'; '.join(e.problems)}"
                )
            return self._sched

    def close(self) -> None:
        """Stop the runs this page started (they publish nothing) and close the store."""
        with self._lock:
            runs = list(self._runs)
        for sched, _ in runs:
            sched.stop()
        for _, t in runs:
            t.join()
        if self.daemon is None:
            self._sched.store.close()

    def url(self, host: str, port: int) -> str:
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/?{urlencode({'token': self.token})}"

    # -- requests ---------------------------------------------------------------------------
    def handle(
        self, method: str, target: str, headers: dict[str, str], body: bytes = b""
    ) -> Response:
        path, _, qs = target.partition("?")
        req = Request(method, path or "/", parse_qs(qs, keep_blank_values=True), headers, body)
        try:
            res = self._authorized(req)
            if res is None:
                res = self._dispatch(req)
        except HttpError as e:
            res = self._error(req, e.status, e.message)
        except ConfigError as e:
            status = (
                404 if isinstance(e, ops.NotFound) else 409 if isinstance(e, ops.Conflict) else 400
            )
            res = self._error(req, status, "\n".join(e.problems))
        except Exception as e:  # noqa: BLE001 - one failed request; the page stays up
            log.error("%s %s: %s", method, path, redact("".join(traceback.format_exception(e))))
            res = self._error(req, 500, f"internal error: {type(e).__name__}: {e}")
        res.headers += [
            ("Content-Security-Policy", _CSP),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
            ("Cache-Control", "no-store"),
        ]
        return res

    def _error(self, req: Request, status: int, message: str) -> Response:
        message = redact(message)
        if req.wants_html:
            return Response.html(pages.error_page(self, status, message), status)
        return Response.json({"error": message, "status": status}, status)

    def _authorized(self, req: Request) -> Response | None:
        """None when the request carries the token; else the response that refuses it (or,
        for a page opened with ``?token=``, the redirect that sets the cookie)."""
        auth = req.headers.get("authorization", "")
        scheme, _, given = auth.partition(" ")
        if scheme.lower() in ("bearer", "token") and self._same(given.strip()):
            req.by_header = True
            return None
        in_query = req.query.get("token", [""])[-1]
        if in_query and self._same(in_query):
            if req.method == "GET" and not (
                req.path.startswith("/api/") or req.path == "/openapi.json"
            ):
                rest = {k: v for k, v in req.query.items() if k != "token"}
                to = req.path + (f"?{urlencode(rest, doseq=True)}" if rest else "")
                res = Response.redirect(to)
                res.headers.append(
                    (
                        "Set-Cookie",
                        f"{self.cookie_name}={self.token}; HttpOnly; SameSite=Strict; Path=/",
                    )
                )
                return res
            return None
        cookie = SimpleCookie()
        try:
            cookie.load(req.headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no token
            cookie = SimpleCookie()
        morsel = cookie.get(self.cookie_name)
        if morsel is not None and self._same(morsel.value):
            return None
        raise HttpError(
            401,
            "this page needs its token: open the URL `tidesync ui` printed "
            "(…/?token=…), or send Authorization: Bearer TOKEN",
        )

    def _same(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _dispatch(self, req: Request) -> Response:
        allowed = []
        for method, pattern, fn in self._routes:
            m = pattern.match(req.path)
            if m is None:
                continue
            if method != req.method:
                allowed.append(method)
                continue
            if method == "POST":
                self._post_checks(req)
            return fn(req, **m.groupdict())
        if allowed:
            res = self._error(req, 405, f"{req.method} {req.path}: use {', '.join(allowed)}")
            res.headers.append(("Allow", ", ".join(allowed)))
            return res
        raise HttpError(404, f"{req.path}: no such page")

    def _post_checks(self, req: Request) -> None:
        if len(req.body) > MAX_BODY:
            raise HttpError(413, "the request body is too large")
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError:
            raise HttpError(400, "the request body is not UTF-8") from None
        if ctype == "application/json" and text.strip():
            try:
                doc = json.loads(text)
            except ValueError as e:
                raise HttpError(400, f"the request body is not JSON: {e}") from None
            if not isinstance(doc, dict):
                raise HttpError(400, "the request body must be a JSON object")
            req.form = {
                k: ["1" if v is True else "" if v in (False, None) else str(v)]
                for k, v in doc.items()
            }
        elif ctype == "application/x-www-form-urlencoded":
            req.form = parse_qs(text, keep_blank_values=True)
        if req.by_header:
            return
        origin = req.headers.get("origin")
        if origin and origin != "null" and origin.split("://", 1)[-1] != req.headers.get("host"):
            raise HttpError(403, f"a request from {origin} may not act here")
        given = req.headers.get("x-tidesync-csrf") or req.arg("csrf") or ""
        if not hmac.compare_digest(given.encode(), self.csrf.encode()):
            raise HttpError(403, "the action lacks this page's CSRF value; reload the page")

    # -- pages ------------------------------------------------------------------------------
    def _root(self, req: Request) -> Response:
        return Response.redirect("/nodes")

    def take_flash(self, req: Request) -> tuple[bool, str] | None:
        key = req.query.get("done", [""])[-1]
        with self._lock:
            return self._flash.pop(key, None) if key else None

    def _page_nodes(self, req: Request) -> Response:
        sched = self.sched
        rows = data.nodes(sched)
        return Response.html(pages.nodes_page(self, req, rows, data.graph(sched, rows)))

    def _page_node(self, req: Request, name: str) -> Response:
        sched = self.sched
        node = data.node_detail(sched, name)
        recent = data.instances(sched, data.ListQuery(nodes=(name,), per_page=20))
        return Response.html(pages.node_page(self, req, node, data.history(sched, name), recent))

    def _page_instances(self, req: Request) -> Response:
        sched = self.sched
        problems: list[str] = []
        try:
            q = data.ListQuery.parse(req.query)
        except ConfigError as e:
            problems, q = e.problems, data.ListQuery()
        listing = data.instances(sched, q)
        names = list(sched.project.nodes)
        return Response.html(pages.instances_page(self, req, q, listing, names, problems))

    def _page_instance(self, req: Request, iid: str) -> Response:
        sched = self.sched
        d = data.instance_detail(sched, _iid(iid))
        return Response.html(
            pages.instance_page(
                self,
                req,
                d,
                data.log_chunk(sched, _iid(iid), None),
                data.dirty_records(sched, _iid(iid)),
            )
        )

    def _static(self, req: Request, name: str) -> Response:
        if name not in _STATIC:
            raise HttpError(404, f"/static/{name}: no such file")
        body = resources.files("tidesync.web").joinpath("static", name).read_bytes()
        return Response(200, body, _STATIC[name])

    def _openapi(self, req: Request) -> Response:
        return Response.json(openapi())

    # -- API reads --------------------------------------------------------------------------
    def _api_nodes(self, req: Request) -> Response:
        return Response.json(data.nodes(self.sched))

    def _api_graph(self, req: Request) -> Response:
        return Response.json(data.graph(self.sched))

    def _api_node(self, req: Request, name: str) -> Response:
        return Response.json(data.node_detail(self.sched, name))

    def _api_history(self, req: Request, name: str) -> Response:
        limit = _int_arg(req, "limit", 100, 1, 1000)
        return Response.json(data.history(self.sched, name, limit))

    def _api_instances(self, req: Request) -> Response:
        return Response.json(data.instances(self.sched, data.ListQuery.parse(req.query)))

    def _api_instance(self, req: Request, iid: str) -> Response:
        return Response.json(data.instance_detail(self.sched, _iid(iid)))

    def _api_log(self, req: Request, iid: str) -> Response:
        offset = req.arg("offset")
        off = None if offset in (None, "") else _int_arg(req, "offset", 0, 0, 2**62)
        return Response.json(data.log_chunk(self.sched, _iid(iid), off))

    def _api_dirty(self, req: Request, iid: str) -> Response:
        limit = _int_arg(req, "limit", data.DIRTY_SHOWN, 1, 10000)
        return Response.json(data.dirty_records(self.sched, _iid(iid), limit))

    # -- actions ----------------------------------------------------------------------------
    def _acted(self, req: Request, ok: bool, message: str, **extra: Any) -> Response:
        """The outcome of an action: JSON, or for a form of the page a redirect back to it
        with the outcome shown there."""
        message = redact(message)
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        back = req.arg("next") or ""
        if ctype == "application/x-www-form-urlencoded" and _local(back):
            key = secrets.token_urlsafe(8)
            with self._lock:
                self._flash[key] = (ok, message)
                while len(self._flash) > 200:
                    self._flash.popitem(last=False)
            sep = "&" if "?" in back else "?"
            return Response.redirect(f"{back}{sep}done={key}")
        return Response.json({"ok": ok, "message": message, **extra}, 200 if ok else 422)

    def _act_rerun(self, req: Request, iid: str) -> Response:
        sched = self.sched
        said, why = ops.rerun(sched, _iid(iid))
        if why:
            return self._acted(req, True, f"{said}; it waits: {why}", state="waiting")
        self._run_soon(lambda s: s.run_once(only=_iid(iid)))
        return self._acted(req, True, f"{said}; running it now", state="waiting")

    def _act_kill(self, req: Request, iid: str) -> Response:
        return self._acted(req, True, ops.kill(self.sched, _iid(iid)))

    def _act_pause(self, req: Request, name: str) -> Response:
        return self._acted(req, True, ops.pause(self.sched, name, _now_ts()))

    def _act_resume(self, req: Request, name: str) -> Response:
        said = ops.resume(self.sched, name)
        if self.daemon is not None:
            self.daemon.wake()
        return self._acted(req, True, said)

    def _act_validate(self, req: Request, name: str) -> Response:
        try:
            said = ops.validate(self.sched, name, datetime.now(UTC))
        except ops.NotFound:
            raise
        except ConfigError as e:
            return self._acted(req, False, "\n".join(e.problems), problems=e.problems)
        return self._acted(req, True, said)

    def _act_backfill(self, req: Request, name: str) -> Response:
        from tidesync.spec.params import parse_date_arg

        ops.get_node(self.sched, name)
        problems: list[str] = []
        dates = {}
        for key in ("from", "to"):
            text = (req.arg(key) or "").strip()
            try:
                dates[key] = parse_date_arg(text)
            except ValueError:
                problems.append(
                    f"{key}: {text!r} is not a business date; write YYYYMMDD or YYYY-MM-DD"
                    if text
                    else f"{key}: give the {'first' if key == 'from' else 'last'} business date"
                )
        parallel_text = (req.arg("parallel") or "1").strip()
        if not parallel_text.isdigit() or not 1 <= int(parallel_text) <= 64:
            problems.append(f"parallel: {parallel_text!r} is not a whole number from 1 to 64")
        # "no" or "False" ran the downstream nodes' instances too: only these words say which
        downstream_text = (req.arg("with_downstream") or "").strip()
        with_downstream = downstream_text.lower() in ("1", "true", "on", "yes")
        if not with_downstream and downstream_text.lower() not in ("", "0", "false", "off", "no"):
            problems.append(
                f"with_downstream: {downstream_text!r} is not true or false (1/0, on/off, yes/no)"
            )
        if problems:
            raise ConfigError(problems)
        parallel = int(parallel_text)
        sched = self._fresh()  # as `tidesync backfill` does: create, then run the batch
        try:
            batch, n = sched.create_backfill(
                name,
                dates["from"],
                dates["to"],
                with_downstream=with_downstream,
                parallel=parallel,
            )
        except BaseException:
            sched.store.close()
            raise
        sched.workers = max(sched.workers, parallel)
        self._run_soon(lambda s: s.run_once(batch=batch), sched)
        return self._acted(
            req, True, f"backfill {batch}: {n} instance(s); running them now", batch=batch, count=n
        )

    def _fresh(self) -> Any:
        """A scheduler of its own (its own store connections) for work beside the page's."""
        from tidesync.scheduler.daemon import Scheduler

        return Scheduler(self.sched.project)

    def _run_soon(self, work: Callable[[Any], Any], sched: Any = None) -> None:
        """Run what an action made runnable: the daemon this page lives with picks it up;
        else a scheduler of its own (``sched``, or a new one) does, in the background, as
        the command line would in the foreground."""
        if self.daemon is not None:
            if sched is not None:
                sched.store.close()
            self.daemon.wake()
            return
        sched = sched or self._fresh()

        def go() -> None:
            try:
                work(sched)
            except TidesyncError as e:
                log.error("background run: %s", redact(str(e)))
            finally:
                with self._lock:
                    self._runs[:] = [r for r in self._runs if r[0] is not sched]

        t = threading.Thread(target=go, name="tidesync-ui-run", daemon=True)
        with self._lock:
            self._runs.append((sched, t))
        t.start()

    def running_jobs(self) -> int:
        with self._lock:
            return len(self._runs)


def _iid(text: str) -> int:
    """An instance id from a path: a number no store holds is no instance (not an overflow)."""
    n = int(text)
    if n > 2**63 - 1:
        raise HttpError(404, f"ID: no instance {text}; `tidesync instances` lists them")
    return n


def _now_ts() -> float:
    return datetime.now(UTC).timestamp()


def _local(path: str) -> bool:
    """A path of this page (where a form may send the browser back)."""
    return path.startswith("/") and not path.startswith("//") and "\\" not in path


def _int_arg(req: Request, name: str, default: int, lo: int, hi: int) -> int:
    text = (req.arg(name) or "").strip()
    if not text:
        return default
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise HttpError(400, f"{name}: {text!r} is not a whole number from {lo} to {hi}")
    return int(text)
