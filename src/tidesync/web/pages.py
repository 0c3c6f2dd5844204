"""The HTML of the operations page, drawn on the server from :mod:`tidesync.web.data`.

Every value is escaped (and redacted) by :func:`t` where it is put into the page; links by
:func:`a`. Actions are forms that POST to ``/api/`` with the page's CSRF value and come back
here with their outcome; ``static/app.js`` only adds what needs a script: following a running
instance's log and refreshing a list while something runs.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from tidesync.errors import redact
from tidesync.scheduler.store import STATES
from tidesync.web.svg import Bar, bar_chart, dependency_graph

if TYPE_CHECKING:
    from tidesync.web.app import App, Request

__all__ = ["error_page", "instance_page", "instances_page", "node_page", "nodes_page"]


def t(value: Any) -> str:
    """Text for the page: redacted, then escaped. None is a dash."""
    if value is None or value == "":
        return "–"
    return escape(redact(str(value)))


def a(href: str, text: Any) -> str:
    return f'<a href="{escape(href)}">{t(text)}</a>'


def node_href(name: str) -> str:
    return "/nodes/" + quote(name, safe="")


def badge(state: str | None) -> str:
    if not state:
        return '<span class="badge state-none">no runs</span>'
    return f'<span class="badge state-{escape(state)}">{t(state)}</span>'


def _num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "–"
    return f"{v:,.{digits}f}"


def _duration(s: float | None) -> str:
    if s is None:
        return "–"
    if s < 60:
        return f"{s:.2f}s" if s < 10 else f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else f"{m}m{sec:02d}s"


def _here(req: Request) -> str:
    """This page's address without the outcome of an action (where a form comes back to)."""
    rest = {k: v for k, v in req.query.items() if k not in ("done", "token")}
    return req.path + (f"?{urlencode(rest, doseq=True)}" if rest else "")


def action(app: App, req: Request, path: str, label: str, fields: str = "", cls: str = "") -> str:
    """A button that POSTs to the API and comes back here with the outcome."""
    return (
        f'<form class="action {cls}" method="post" action="{escape(path)}">'
        f'<input type="hidden" name="csrf" value="{escape(app.csrf)}">'
        f'<input type="hidden" name="next" value="{escape(_here(req))}">{fields}'
        f'<button type="submit">{escape(label)}</button></form>'
    )


def layout(
    app: App, req: Request, title: str, body: str, *, current: str = "", refresh: int = 0
) -> str:
    sched = app.sched
    project = sched.project
    nav = "".join(
        f'<a href="{href}"{" aria-current=page" if current == key else ""}>{label}</a>'
        for key, href, label in (
            ("nodes", "/nodes", "Nodes"),
            ("instances", "/instances", "Instances"),
        )
    )
    notes = ""
    if app.load_error:
        notes += f'<div class="banner error" role="alert">{t(app.load_error)}</div>'
    flash = app.take_flash(req)
    if flash is not None:
        ok, message = flash
        notes += (
            f'<div class="flash {"ok" if ok else "error"}" role="status" aria-live="polite">'
            f"{t(message)}</div>"
        )
    where = f"{project.file.parent.name}/{project.file.name} · {project.timezone}"
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{t(title)} · tidesync</title>"
        '<link rel="stylesheet" href="/static/app.css">'
        '<script src="/static/app.js" defer></script></head>'
        f'<body data-csrf="{escape(app.csrf)}"><header class="top">'
        f'<a class="brand" href="/nodes">tidesync</a><nav aria-label="Pages">{nav}</nav>'
        f'<span class="where" title="{t(sched.store.describe())}">{t(where)}</span></header>'
        f'{notes}<main id="main"{f" data-refresh={refresh}" if refresh else ""}>{body}</main>'
        "</body></html>"
    )


def error_page(app: App, status: int, message: str) -> str:
    body = (
        f'<h1>{status}</h1><p class="error-text">{t(message)}</p>'
        '<p><a href="/nodes">Nodes</a> · <a href="/instances">Instances</a></p>'
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{status} · tidesync</title><link rel="stylesheet" href="/static/app.css">'
        f'</head><body><main id="main">{body}</main></body></html>'
    )


def _table(head: list[str], rows: list[list[str]], cls: str = "") -> str:
    if not rows:
        return '<p class="muted">nothing here</p>'
    th = "".join(f'<th scope="col">{h}</th>' for h in head)
    trs = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<div class="scroll"><table class="{cls}"><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table></div>'


def _links(names: list[str]) -> str:
    return ", ".join(a(node_href(n), n) for n in names) or "–"


# ---------------------------------------------------------------------------------------------
# nodes


def nodes_page(app: App, req: Request, rows: list[dict[str, Any]], graph: dict[str, Any]) -> str:
    table = _table(
        ["Node", "Schedule", "Next run", "Last instance", "Paused", "Upstream", "Downstream"],
        [
            [
                a(node_href(r["name"]), r["name"]),
                t(r["schedule"]),
                t(r["next"]),
                (
                    f'<a href="/instances/{r["last"]["id"]}">{badge(r["last"]["state"])}</a> '
                    f'<span class="muted">{t(r["last"]["cyctime_text"])}</span>'
                )
                if r["last"]
                else badge(None),
                f'<span class="paused">paused ({t(r["paused_by"])})</span>'
                if r["paused"]
                else "no",
                _links(r["upstream"]),
                _links(r["downstream"]),
            ]
            for r in rows
        ],
        "nodes",
    )
    svg = dependency_graph(
        [(n["name"], n["state"] or "", n["paused"]) for n in graph["nodes"]],
        [(e[0], e[1]) for e in graph["edges"]],
    )
    body = (
        f'<h1>Nodes <span class="count">{len(rows)}</span></h1>{table}'
        f'<section aria-labelledby="graph-h"><h2 id="graph-h">Dependencies</h2>'
        f'<div class="scroll graph-box">{svg}</div></section>'
    )
    return layout(app, req, "Nodes", body, current="nodes")


def node_page(
    app: App,
    req: Request,
    n: dict[str, Any],
    history: list[dict[str, Any]],
    recent: dict[str, Any],
) -> str:
    name = n["name"]
    base = f"/api/nodes/{quote(name, safe='')}"
    facts = [
        ("Schedule", t(n["schedule"])),
        ("Time zone", t(n["timezone"])),
        ("Next run", t(n["next"])),
        (
            "Last instance",
            f'<a href="/instances/{n["last"]["id"]}">{badge(n["last"]["state"])}</a> '
            f"{t(n['last']['cyctime_text'])}"
            if n["last"]
            else badge(None),
        ),
        (
            "Paused",
            f"yes, by {t(n['paused_by'])}"
            + (f" since {t(n['paused_at'])}" if n["paused_at"] else "")
            if n["paused"]
            else "no",
        ),
        ("Job", t(n["job"] or "none (dry run)")),
        (
            "Parameters",
            " ".join(f"<code>{t(k)}={t(v)}</code>" for k, v in n["params"].items()) or "–",
        ),
        (
            "Retries",
            f"{n['retries']} (every {_duration(n['retry_interval_s'])}, on {t(n['retry_on'])})",
        ),
        ("Self-dependent", "yes" if n["self_dependent"] else "no"),
        ("Timeout", _duration(n["timeout_s"])),
        ("Concurrency", t(n["concurrency"] or "no limit")),
        ("Catch-up", t(n["catchup"])),
        ("Upstream", _links(n["upstream"])),
        ("Downstream", _links(n["downstream"])),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    toggle = (
        action(app, req, f"{base}/resume", "Resume")
        if n["paused"]
        else action(app, req, f"{base}/pause", "Pause")
    )
    backfill = action(
        app,
        req,
        f"{base}/backfill",
        "Backfill",
        "<fieldset><legend>Backfill business dates</legend>"
        '<label>From <input type="date" name="from" required></label>'
        '<label>To <input type="date" name="to" required></label>'
        '<label>Parallel <input type="number" name="parallel" value="1" min="1" max="64"></label>'
        '<label><input type="checkbox" name="with_downstream" value="1"> with downstream</label>'
        "</fieldset>",
        "backfill",
    )
    bars_d = [
        Bar(h["cyctime_text"], h["duration_s"] or 0.0, h["state"], f"/instances/{h['id']}")
        for h in history
    ]
    bars_r = [
        Bar(h["cyctime_text"], h["rows_per_s"] or 0.0, h["state"], f"/instances/{h['id']}")
        for h in history
    ]
    charts = bar_chart(f"Duration of {name} per instance", "seconds", bars_d) + bar_chart(
        f"Rows per second of {name} per instance", "rows/s", bars_r
    )
    paused = ' <span class="badge state-paused">paused</span>' if n["paused"] else ""
    body = (
        f"<h1>{t(name)}{paused}</h1>"
        f'<div class="actions">{toggle}{action(app, req, f"{base}/validate", "Validate")}</div>'
        f'<dl class="facts">{dl}</dl>'
        f'<section aria-labelledby="bf-h"><h2 id="bf-h">Backfill</h2>{backfill}</section>'
        f'<section aria-labelledby="ch-h"><h2 id="ch-h">Runs over time</h2>'
        f'<div class="charts">{charts}</div></section>'
        f'<section aria-labelledby="in-h"><h2 id="in-h">Latest instances</h2>'
        f"{_instance_table(recent['items'], show_node=False)}"
        f"<p>{a('/instances?' + urlencode({'node': name}), f'All instances of {name}')}</p>"
        "</section>"
    )
    return layout(app, req, name, body, current="nodes", refresh=5 if recent["live"] else 0)


# ---------------------------------------------------------------------------------------------
# instances


def _instance_table(items: list[dict[str, Any]], *, show_node: bool = True) -> str:
    head = (
        ["ID"]
        + (["Node"] if show_node else [])
        + [
            "Cyctime",
            "Bizdate",
            "State",
            "Attempts",
            "Started",
            "Duration",
            "Rows",
            "Error",
        ]
    )
    rows = []
    for r in items:
        cells = [a(f"/instances/{r['id']}", r["id"])]
        if show_node:
            cells.append(a(node_href(r["node"]), r["node"]))
        cells += [
            t(r["cyctime_text"])
            + (f' <span class="muted">{t(r["batch"])}</span>' if r["batch"] else ""),
            t(r["bizdate"]),
            badge(r["state"]),
            t(r["attempts"]),
            t(r["started_at"]),
            _duration(r["duration_s"]),
            _num(r["rows_read"]),
            f'<span class="error-text clip" title="{t(r["error"])}">{t(r["error"])}</span>'
            if r["error"]
            else "",
        ]
        rows.append(cells)
    return _table(head, rows, "instances")


def _dash_date(d: Any) -> str:
    return "" if d is None else f"{d:%Y-%m-%d}"


def instances_page(
    app: App,
    req: Request,
    q: Any,
    listing: dict[str, Any],
    names: list[str],
    problems: list[str],
) -> str:
    node_opts = '<option value="">any</option>' + "".join(
        f"<option{' selected' if n in q.nodes else ''}>{t(n)}</option>" for n in names
    )
    state_opts = '<option value="">any</option>' + "".join(
        f"<option{' selected' if s in q.states else ''}>{s}</option>" for s in STATES
    )
    form = (
        '<form class="filters" method="get" action="/instances" role="search">'
        f'<label>Node <select name="node">{node_opts}</select></label>'
        f'<label>State <select name="state">{state_opts}</select></label>'
        f'<label>Bizdate from <input type="date" name="from" value="{_dash_date(q.bizdate_from)}"></label>'
        f'<label>to <input type="date" name="to" value="{_dash_date(q.bizdate_to)}"></label>'
        '<button type="submit">Filter</button></form>'
    )
    errors = "".join(f'<p class="error-text" role="alert">{t(p)}</p>' for p in problems)
    page, pages = listing["page"], listing["pages"]
    rest = {k: v for k, v in req.query.items() if k not in ("page", "done", "token")}

    def to(p: int) -> str:
        return "/instances?" + urlencode({**rest, "page": [str(p)]}, doseq=True)

    pager = '<nav class="pager" aria-label="Pages of instances">'
    pager += a(to(page - 1), "‹ Newer") if page > 1 else '<span class="muted">‹ Newer</span>'
    pager += f" <span>page {page} of {pages}</span> "
    pager += a(to(page + 1), "Older ›") if page < pages else '<span class="muted">Older ›</span>'
    pager += "</nav>"
    body = (
        f'<h1>Instances <span class="count">{listing["total"]:,}</span></h1>{form}{errors}'
        f"{_instance_table(listing['items'])}{pager}"
    )
    return layout(
        app, req, "Instances", body, current="instances", refresh=5 if listing["live"] else 0
    )


def _report(rep: dict[str, Any] | None) -> str:
    if not rep:
        return '<p class="muted">no run report yet</p>'
    facts = [
        ("Status", badge(rep.get("status"))),
        ("Rows read", _num(rep.get("records_read"))),
        ("Rows written", _num(rep.get("records_written"))),
        ("Dirty records", _num(rep.get("dirty_records"))),
        ("Read", f"{_num((rep.get('bytes_read') or 0) / 1048576, 1)} MiB"),
        ("Elapsed", _duration(rep.get("elapsed_s"))),
        ("Speed", f"{_num(rep.get('records_per_s'))} rows/s"),
        ("Started", t(rep.get("started_at"))),
        ("Finished", t(rep.get("finished_at"))),
    ]
    if rep.get("error"):
        facts.append(("Error", f'<span class="error-text">{t(rep["error"])}</span>'))
        facts.append(
            (
                "Error class",
                t(f"{rep.get('error_class')} {rep.get('error_code') or ''}".strip())
                + (" (retriable)" if rep.get("retriable") else ""),
            )
        )
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    splits = [
        [
            t(s.get("content")),
            t(s.get("split")),
            badge(s.get("status")),
            _num(s.get("records_read")),
            _num(s.get("records_written")),
            _num(s.get("dirty_records")),
            f"{_num((s.get('bytes_read') or 0) / 1048576, 2)} MiB",
            _duration(s.get("elapsed_s")),
            _num((s.get("records_read") or 0) / s["elapsed_s"]) if s.get("elapsed_s") else "–",
            t(s.get("error")) if s.get("error") else "",
        ]
        for s in rep.get("splits") or []
    ]
    return f'<dl class="facts">{dl}</dl><h3>Splits</h3>' + _table(
        [
            "Entry",
            "Split",
            "Status",
            "Read",
            "Written",
            "Dirty",
            "Bytes",
            "Elapsed",
            "Rows/s",
            "Error",
        ],
        splits,
        "splits",
    )


def _dirty(d: dict[str, Any]) -> str:
    if not d["count"]:
        return '<p class="muted">none</p>'
    import json

    note = f"<p>{_num(d['count'])} dirty record(s) in <code>{t(d['file'])}</code>"
    if d.get("missing"):
        return note + " (the file is not on this machine)</p>"
    if d.get("truncated"):
        note += f"; the first {len(d['records'])} shown"
    note += "</p>"
    rows = [
        [
            t(r.get("split")),
            t(r.get("position")),
            t(r.get("stage")),
            t(r.get("reason")),
            f"<code>{t(json.dumps(r.get('row'), ensure_ascii=False, default=str))}</code>",
        ]
        for r in d["records"]
    ]
    return note + _table(["Split", "Position", "Stage", "Reason", "Row"], rows, "dirty")


def instance_page(
    app: App, req: Request, d: dict[str, Any], log: dict[str, Any], dirty: dict[str, Any]
) -> str:
    iid = d["id"]
    base = f"/api/instances/{iid}"
    buttons = ""
    if d["state"] != "running":
        buttons += action(app, req, f"{base}/rerun", "Rerun")
    if d["state"] in ("waiting", "running"):
        buttons += action(app, req, f"{base}/kill", "Kill", cls="danger")
    tries = f"{d['attempts']}" + (f" of {d['retries'] + 1}" if d["retries"] is not None else "")
    facts = [
        ("Node", a(node_href(d["node"]), d["node"])),
        ("State", badge(d["state"]) + (" (kill requested)" if d["kill_requested"] else "")),
        ("Cyctime", f'{t(d["cyctime_text"])} <span class="muted">({t(d["timezone"])})</span>'),
        ("Bizdate", t(d["bizdate"])),
        ("Batch", t(d["batch"] or "the schedule")),
        ("Attempts", tries),
        ("Due", t(d["due_at"])),
        ("Started", t(d["started_at"])),
        ("Finished", t(d["finished_at"])),
        ("Duration", _duration(d["duration_s"])),
    ]
    if d["next_try_at"]:
        facts.append(("Next try", t(d["next_try_at"])))
    if d["waiting_on"]:
        facts.append(("Waiting on", t(d["waiting_on"])))
    if d["owner"]:
        facts.append(("Run by", t(d["owner"])))
    if d["error"]:
        facts.append(("Error", f'<pre class="error-text">{t(d["error"])}</pre>'))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    params = _table(
        ["Parameter", "Value"], [[t(k), f"<code>{t(v)}</code>"] for k, v in d["params"].items()]
    )
    attempts = _table(
        ["Attempt", "Started", "Finished", "Outcome", "Elapsed"],
        [
            [
                t(f"{x['attempt']} of {x['of']}"),
                t(x["started_at"]),
                t(x["finished_at"]),
                badge(x["outcome"])
                + (
                    f' <span class="error-text">{t(x.get("error"))}</span>'
                    if x.get("error")
                    else ""
                ),
                _duration(x["elapsed_s"]),
            ]
            for x in d["attempt_log"]
        ],
    )
    live = d["state"] in ("waiting", "running")
    skipped = (
        f'<p class="muted">the first {_num(log["skipped"])} bytes are not shown</p>'
        if log.get("skipped")
        else ""
    )
    source = (
        '<p class="muted">from the state store: the log file is on the machine that ran it</p>'
        if log["source"] == "store"
        else ""
    )
    log_html = (
        f'{skipped}{source}<pre id="log" class="log" tabindex="0" aria-label="Log of instance {iid}" '
        f'data-follow="{base}/log" data-offset="{log["offset"] if log["offset"] is not None else ""}" '
        f'data-state="{escape(d["state"])}" data-live="{1 if live else 0}">'
        f"{escape(log['text']) if log['text'] else ''}</pre>"
        + ("" if log["text"] or live else '<p class="muted">no log yet</p>')
    )
    body = (
        f'<h1>Instance {iid} <span class="muted">{t(d["node"])} {t(d["cyctime_text"])}</span> '
        f'{badge(d["state"])}</h1><div class="actions">{buttons}</div>'
        f'<dl class="facts">{dl}</dl>'
        f'<section aria-labelledby="p-h"><h2 id="p-h">Parameters</h2>{params}</section>'
        f'<section aria-labelledby="a-h"><h2 id="a-h">Attempts</h2>{attempts}</section>'
        f'<section aria-labelledby="r-h"><h2 id="r-h">Run report</h2>{_report(d["report"])}</section>'
        f'<section aria-labelledby="d-h"><h2 id="d-h">Dirty records</h2>{_dirty(dirty)}</section>'
        f'<section aria-labelledby="l-h"><h2 id="l-h">Log</h2>{log_html}</section>'
    )
    return layout(app, req, f"Instance {iid}", body, current="instances")
