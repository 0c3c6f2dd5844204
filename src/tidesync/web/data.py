"""What the page and the JSON API show, read from the project and its state store.

Every function returns plain data (what ``/api/`` sends as JSON); the pages are drawn from the
same values, so a fact on a page is a fact in the API. Strings that come from jobs, logs,
reports and parameters pass through :func:`clean` (``errors.redact``) here, once, before
either sees them; parameters a node's job uses as secrets are masked.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from tidesync.errors import MASK, ConfigError, redact
from tidesync.scheduler.cycles import instant_text, wall_text
from tidesync.scheduler.store import STATES, TERMINAL, Instance

__all__ = [
    "ListQuery",
    "clean",
    "graph",
    "history",
    "instance_detail",
    "instance_row",
    "instances",
    "log_chunk",
    "dirty_records",
    "node_detail",
    "nodes",
]

LOG_CHUNK = 256 * 1024  # the most one log request returns
DIRTY_SHOWN = 100
#: parameter names shown masked whatever their value (the job's secret fields are masked too)
_SECRET_NAME = re.compile(
    r"(?i)pass(word|wd)?|pwd|secret|token|credential|private.?key|access.?key"
)


def clean(value: Any) -> Any:
    """``value`` with every string in it redacted (dicts and lists walked)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _now() -> datetime:
    return datetime.now(UTC)


def shown_params(node: Any, values: dict[str, str]) -> dict[str, str]:
    """Parameters as they may be shown: the ones the job uses as secrets, and the ones whose
    name says secret, masked; the rest redacted."""
    if node is not None:
        values = node.shown_params(values)
    return {k: MASK if _SECRET_NAME.search(k) else redact(str(v)) for k, v in values.items()}


def _when(sched: Any, ts: float | None) -> str | None:
    return None if ts is None else instant_text(ts, sched.project.tz)


def _cyc(sched: Any, inst: Instance) -> str:
    from tidesync.scheduler.daemon import parse_cyctime

    node = sched.project.nodes.get(inst.node)
    tz = node.schedule.tz if node else sched.project.tz
    return wall_text(parse_cyctime(inst.cyctime), tz)


def _report(inst: Instance) -> dict[str, Any] | None:
    if not inst.report:
        return None
    try:
        got = json.loads(inst.report)
    except ValueError:
        return None
    return got if isinstance(got, dict) else None


def _duration(inst: Instance, now: float, rep: dict[str, Any] | None = None) -> float | None:
    """How long the last attempt ran: so far, while it runs; else as its report says (the
    job's own clock: ``run-once --at`` pins the scheduler's), else from its times."""
    if inst.state == "running" and inst.started_at is not None:
        return round(max(0.0, now - inst.started_at), 3)
    if rep and isinstance(rep.get("elapsed_s"), int | float):
        return round(float(rep["elapsed_s"]), 3)
    if inst.started_at is None or inst.finished_at is None:
        return None
    return round(max(0.0, inst.finished_at - inst.started_at), 3)


def instance_row(sched: Any, inst: Instance, now: float) -> dict[str, Any]:
    """One instance as a list shows it."""
    rep = _report(inst) or {}
    err = inst.error if inst.state != "succeeded" else None
    return {
        "id": inst.id,
        "node": inst.node,
        "cyctime": inst.cyctime,
        "cyctime_text": _cyc(sched, inst),
        "bizdate": inst.bizdate,
        "batch": inst.batch,
        "state": inst.state,
        "attempts": inst.attempts,
        "started_at": _when(sched, inst.started_at),
        "finished_at": _when(sched, inst.finished_at),
        "duration_s": _duration(inst, now, rep),
        "rows_read": rep.get("records_read"),
        "rows_written": rep.get("records_written"),
        "rows_per_s": rep.get("records_per_s"),
        "dirty_records": rep.get("dirty_records"),
        "error": redact(err.splitlines()[0]) if err else None,
    }


# ---------------------------------------------------------------------------------------------
# nodes


def _edges(project: Any) -> list[tuple[str, str]]:
    return [(up, n.name) for n in project.nodes.values() for up in n.depends_on]


_NEXT: dict[Any, tuple[datetime, Any]] = {}  # schedule -> (asked at, its next slot then)


def _next_slot(schedule: Any, now: datetime) -> Any:
    """``schedule.next_after(now)``, remembered: the answer holds from when it was asked until
    that slot comes (hundreds of nodes on one page, every few seconds)."""
    got = _NEXT.get(schedule)
    if got is not None and got[0] <= now and (got[1] is None or now < got[1].at):
        return got[1]
    slot = schedule.next_after(now)
    if len(_NEXT) > 10_000:
        _NEXT.clear()
    _NEXT[schedule] = (now, slot)
    return slot


def _node_row(
    sched: Any, node: Any, last: Instance | None, held: dict[str, float], now: datetime
) -> dict[str, Any]:
    project = sched.project
    nxt = _next_slot(node.schedule, now)
    downstream = [n.name for n in project.nodes.values() if node.name in n.depends_on]
    return {
        "name": node.name,
        "schedule": node.schedule.describe(),
        "timezone": node.schedule.timezone,
        "next": wall_text(nxt.cyctime, node.schedule.tz) if nxt else None,
        "last": None
        if last is None
        else {
            "id": last.id,
            "state": last.state,
            "cyctime": last.cyctime,
            "cyctime_text": _cyc(sched, last),
        },
        "paused": node.paused or node.name in held,
        "paused_by": "project file"
        if node.paused
        else ("tidesync pause" if node.name in held else None),
        "paused_at": _when(sched, held.get(node.name)),
        "upstream": list(node.depends_on),
        "downstream": downstream,
        "job": _rel(project.root, node.job),
        "dry_run": node.dry_run,
        "retries": node.retries,
        "retry_interval_s": node.retry_interval,
        "retry_on": node.retry_on,
        "self_dependent": node.self_dependent,
        "timeout_s": node.timeout,
        "concurrency": node.concurrency,
        "catchup": node.catchup.describe(),
        "params": shown_params(node, dict(node.params)),
    }


def _rel(root: Path, p: Path | None) -> str | None:
    if p is None:
        return None
    try:
        return str(p.relative_to(root))
    except ValueError:
        return str(p)


def nodes(sched: Any, now: datetime | None = None) -> list[dict[str, Any]]:
    now = now or _now()
    project = sched.project
    last = sched.store.latest_due(list(project.nodes), now.timestamp())
    held = sched.store.paused()
    return [_node_row(sched, n, last.get(n.name), held, now) for n in project.nodes.values()]


def node_detail(sched: Any, name: str, now: datetime | None = None) -> dict[str, Any]:
    from tidesync.scheduler import ops

    now = now or _now()
    node = ops.get_node(sched, name)
    last = sched.store.latest_due([name], now.timestamp())
    row = _node_row(sched, node, last.get(name), sched.store.paused(), now)
    row["where"] = node.where
    row["downstream_all"] = sched.project.downstream(name)
    return row


def graph(sched: Any, rows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The nodes (last state, paused) and their edges [upstream, downstream]; from ``rows``
    of :func:`nodes` when the caller has them."""
    rows = nodes(sched) if rows is None else rows
    return {
        "nodes": [
            {
                "name": r["name"],
                "state": r["last"]["state"] if r["last"] else None,
                "paused": r["paused"],
            }
            for r in rows
        ],
        "edges": [list(e) for e in _edges(sched.project)],
    }


def history(sched: Any, name: str, limit: int = 100) -> list[dict[str, Any]]:
    """The node's latest finished runs, oldest first: duration and rows per second each."""
    from tidesync.scheduler import ops

    ops.get_node(sched, name)
    out = []
    for inst in sched.store.history(name, limit):
        rep = _report(inst) or {}
        out.append(
            {
                "id": inst.id,
                "cyctime": inst.cyctime,
                "cyctime_text": _cyc(sched, inst),
                "state": inst.state,
                "duration_s": _duration(inst, inst.finished_at or 0.0, rep),
                "rows_read": rep.get("records_read"),
                "rows_per_s": rep.get("records_per_s"),
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# instances


@dataclass
class ListQuery:
    """The filters of the instance list (query parameters of ``/instances``)."""

    nodes: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    bizdate_from: date | None = None
    bizdate_to: date | None = None
    batch: str | None = None
    page: int = 1
    per_page: int = 50

    @classmethod
    def parse(cls, q: dict[str, list[str]]) -> ListQuery:
        """From query parameters; ConfigError names each bad one."""
        from tidesync.spec.params import parse_date_arg

        problems: list[str] = []
        states = tuple(s for s in q.get("state", []) if s)
        for s in states:
            if s not in STATES:
                from tidesync.errors import did_you_mean

                problems.append(
                    f"state: {s!r} is not a state{did_you_mean(s, STATES)}; "
                    f"one of {', '.join(STATES)}"
                )
        dates: dict[str, date | None] = {}
        for key in ("from", "to"):
            text = (q.get(key) or [""])[-1].strip()
            dates[key] = None
            if text:
                try:
                    dates[key] = parse_date_arg(text)
                except ValueError:
                    problems.append(
                        f"{key}: {text!r} is not a business date; write YYYYMMDD or YYYY-MM-DD"
                    )
        nums: dict[str, int] = {}
        for key, default, hi in (("page", 1, 10**9), ("per_page", 50, 500)):
            text = (q.get(key) or [""])[-1].strip()
            nums[key] = default
            if text:
                if not text.isdigit() or not 1 <= int(text) <= hi:
                    problems.append(f"{key}: {text!r} is not a whole number from 1 to {hi}")
                else:
                    nums[key] = int(text)
        batch = q.get("batch", [None])[-1]
        if problems:
            raise ConfigError(problems)
        return cls(
            nodes=tuple(n for n in q.get("node", []) if n),
            states=states,
            bizdate_from=dates["from"],
            bizdate_to=dates["to"],
            batch=batch,
            page=nums["page"],
            per_page=nums["per_page"],
        )


def instances(sched: Any, q: ListQuery, now: datetime | None = None) -> dict[str, Any]:
    now_ts = (now or _now()).timestamp()
    rows, total = sched.store.page(
        nodes=q.nodes,
        states=q.states,
        bizdate_from=f"{q.bizdate_from:%Y%m%d}" if q.bizdate_from else None,
        bizdate_to=f"{q.bizdate_to:%Y%m%d}" if q.bizdate_to else None,
        batch=q.batch,
        limit=q.per_page,
        offset=(q.page - 1) * q.per_page,
    )
    items = [instance_row(sched, r, now_ts) for r in rows]
    return {
        "items": items,
        "total": total,
        "page": q.page,
        "per_page": q.per_page,
        "pages": max(1, -(-total // q.per_page)),
        "live": any(
            r.state == "running" or (r.state == "waiting" and r.due_at <= now_ts) for r in rows
        ),
    }


_ATTEMPT_START = re.compile(r"^(\S+ \S+) attempt (\d+) of (\d+) of ")
_ATTEMPT_END = re.compile(r"^(\S+ \S+) attempt (\d+) (succeeded|failed: .*) \(([\d.]+)s\)$")
_ATTEMPT_CUT = re.compile(
    r"^(\S+ \S+) (interrupted by scheduler shutdown.*|attempt \d+ interrupted.*)$"
)


def attempts_from_log(text: str) -> list[dict[str, Any]]:
    """The attempts an instance's log records, in order: when each started, how it ended."""
    out: list[dict[str, Any]] = []
    for line in text.splitlines():
        if " attempt " not in line and " interrupted " not in line:
            continue
        if m := _ATTEMPT_START.match(line):
            out.append(
                {
                    "attempt": int(m[2]),
                    "of": int(m[3]),
                    "started_at": m[1],
                    "finished_at": None,
                    "outcome": "running",
                    "elapsed_s": None,
                }
            )
        elif (m := _ATTEMPT_END.match(line)) and out and out[-1]["outcome"] == "running":
            out[-1].update(
                finished_at=m[1],
                outcome="succeeded" if m[3] == "succeeded" else "failed",
                error=redact(m[3][len("failed: ") :]) if m[3] != "succeeded" else None,
                elapsed_s=float(m[4]),
            )
        elif (m := _ATTEMPT_CUT.match(line)) and out and out[-1]["outcome"] == "running":
            out[-1].update(finished_at=m[1], outcome="interrupted", error=redact(m[2]))
    return out


def _log_file(sched: Any, inst: Instance) -> Path:
    return Path(inst.log_path) if inst.log_path else sched.log_path(inst)


def instance_detail(sched: Any, instance_id: int, now: datetime | None = None) -> dict[str, Any]:
    from tidesync.scheduler import ops

    now = now or _now()
    inst = ops.get_instance(sched, instance_id)
    node = sched.project.nodes.get(inst.node)
    d = instance_row(sched, inst, now.timestamp())
    d.update(
        error=redact(inst.error) if inst.error else None,
        params=shown_params(node, inst.param_values),
        due_at=_when(sched, inst.due_at),
        next_try_at=_when(sched, inst.next_try_at),
        created_at=_when(sched, inst.created_at),
        owner=inst.owner,
        kill_requested=bool(inst.kill_requested),
        recoveries=inst.recoveries,
        retries=node.retries if node else None,
        timezone=node.schedule.timezone if node else sched.project.timezone,
        report=clean(_report(inst)),
        waiting_on=None,
    )
    if inst.state == "waiting":
        d["waiting_on"] = ops.waiting_on(sched, inst, now.timestamp())
    path = _log_file(sched, inst)
    text = ""
    if path.is_file():
        with path.open("rb") as f:
            text = f.read(8 << 20).decode("utf-8", "replace")
        d["log"] = {"source": "file", "size": path.stat().st_size}
    elif inst.log_tail:
        text = inst.log_tail
        d["log"] = {"source": "store", "size": len(inst.log_tail.encode())}
    else:
        d["log"] = {"source": None, "size": 0}
    d["attempt_log"] = attempts_from_log(text)
    return d


def log_chunk(sched: Any, instance_id: int, offset: int | None) -> dict[str, Any]:
    """The instance's log from byte ``offset`` (None: its last LOG_CHUNK bytes), whole lines
    only; a log kept only in the store (the run was on another machine) comes whole."""
    from tidesync.scheduler import ops

    inst = ops.get_instance(sched, instance_id)
    done = inst.state in TERMINAL
    path = _log_file(sched, inst)
    if path.is_file():
        size = path.stat().st_size
        start = max(0, size - LOG_CHUNK) if offset is None else min(max(0, offset), size)
        with path.open("rb") as f:
            f.seek(start)
            if offset is None and start > 0:
                f.readline()  # from the next whole line
                start = f.tell()
            data = f.read(LOG_CHUNK)
        if len(data) == LOG_CHUNK or not done:  # whole lines only: the rest comes next time
            cut = data.rfind(b"\n")
            if cut >= 0:
                data = data[: cut + 1]
            elif len(data) < LOG_CHUNK:
                data = b""
        return {
            "source": "file",
            "text": redact(data.decode("utf-8", "replace")),
            "offset": start + len(data),
            "skipped": start if offset is None else 0,
            "state": inst.state,
            "done": done and start + len(data) >= size,
        }
    text = inst.log_tail or ""
    return {
        "source": "store" if text else None,
        "text": redact(text),
        "offset": None,
        "skipped": 0,
        "state": inst.state,
        "done": done,
    }


def dirty_records(sched: Any, instance_id: int, limit: int = DIRTY_SHOWN) -> dict[str, Any]:
    """The first ``limit`` dirty records of the instance's last run (its report names them)."""
    from tidesync.scheduler import ops

    inst = ops.get_instance(sched, instance_id)
    rep = _report(inst) or {}
    name = rep.get("dirty_file")
    out: dict[str, Any] = {"count": rep.get("dirty_records") or 0, "records": [], "file": None}
    if not name:
        return out
    path = Path(name)
    if not path.is_absolute():
        path = sched.project.root / path
    out["file"] = _rel(sched.project.root, path)
    if not path.is_file():
        out["missing"] = True
        return out
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if len(out["records"]) >= limit:
                out["truncated"] = True
                break
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"reason": line.strip()}
            out["records"].append(clean(rec))
    return out
