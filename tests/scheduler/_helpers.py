"""Building blocks for scheduler tests: a project folder with real job files, and clocks."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml

from tidesync.scheduler.daemon import Scheduler
from tidesync.scheduler.project import load_project


def stream_job(
    path: Path,
    *,
    value: str = "${filename}",
    records: int = 1,
    record_rate: int | None = None,
    print_rows: bool = False,
) -> Path:
    """A stream -> stream job whose one column is ``value`` (parameters expanded)."""
    setting: dict[str, Any] = {"speed": {"channel": 1}}
    if record_rate is not None:
        setting["speed"]["record"] = record_rate
    doc = {
        "job": {
            "setting": setting,
            "content": [
                {
                    "reader": {
                        "name": "streamreader",
                        "parameter": {
                            "column": [{"type": "string", "value": value}],
                            "sliceRecordCount": records,
                        },
                    },
                    "writer": {"name": "streamwriter", "parameter": {"print": print_rows}},
                }
            ],
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def sqlite_job(
    path: Path, database: Path, *, value: str = "${filename}", table: str = "runs"
) -> Path:
    """A stream -> sqlite job appending one row (``value``) per run: what ran, in a real table."""
    writer = {"database": str(database), "table": table, "writeMode": "insert"}
    return stream_into(path, "sqlitewriter", writer, value=value)


def stream_into(
    path: Path, writer: str, params: dict[str, Any], *, value: str = "${filename}", records: int = 1
) -> Path:
    """A job writing ``records`` rows of one string column ``v`` (``value``) with ``writer``."""
    doc = {
        "job": {
            "setting": {"speed": {"channel": 1}},
            "content": [
                {
                    "reader": {
                        "name": "streamreader",
                        "parameter": {
                            "column": [{"type": "string", "value": value, "name": "v"}],
                            "sliceRecordCount": records,
                        },
                    },
                    "writer": {"name": writer, "parameter": params},
                }
            ],
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def write_project(root: Path, nodes: list[dict[str, Any]], **top: Any) -> Path:
    """``root/tidesync.yaml`` with ``nodes`` (a node without 'job' gets a stream job)."""
    root.mkdir(parents=True, exist_ok=True)
    for n in nodes:
        if "job" not in n and not n.get("dry_run"):
            stream_job(root / "jobs" / f"{n['name']}.json", value="$cyctime")
            n["job"] = f"jobs/{n['name']}.json"
    doc = {"timezone": "UTC", **top, "nodes": nodes}
    path = root / "tidesync.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def at(text: str, tz: str = "UTC") -> datetime:
    """A wall-clock time YYYYMMDDHHMM[SS] in ``tz`` as an aware UTC instant."""
    fmt = "%Y%m%d%H%M%S" if len(text) == 14 else "%Y%m%d%H%M"
    return datetime.strptime(text, fmt).replace(tzinfo=ZoneInfo(tz)).astimezone(UTC)


class ManualClock:
    """A schedule clock a test moves by hand."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def scheduler(root: Path, **kw: Any) -> Scheduler:
    return Scheduler(load_project(root), **kw)


def states(sched: Scheduler, node: str | None = None) -> dict[str, str]:
    """cyctime -> state of the schedule's instances (batch '')."""
    return {i.cyctime: i.state for i in sched.store.listing(node=node, batch="")}


def file_job(
    path: Path, *, table: str = "landed", pattern: str = "../landing/in_${filename}.csv"
) -> Path:
    """A file -> sqlite job: reads ``pattern`` (missing: the run fails, as a late file does)
    and appends its rows, tagged with ``${filename}``, to ``warehouse.db`` beside ``jobs/``.

    The database and table exist before any run: a sqlite writer that created the file removes
    it when its run fails, which would take other instances' rows with it."""
    import sqlite3

    db = path.parent.parent / "warehouse.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as con:
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} (v TEXT, slot TEXT)")
    con.close()
    doc = {
        "job": {
            "setting": {"speed": {"channel": 1}},
            "content": [
                {
                    "reader": {
                        "name": "txtfilereader",
                        "parameter": {
                            "path": pattern,
                            "fileFormat": "csv",
                            "skipHeader": True,
                            "column": [
                                {"index": 0, "type": "string", "name": "v"},
                                {"type": "string", "value": "${filename}", "name": "slot"},
                            ],
                        },
                    },
                    "writer": {
                        "name": "sqlitewriter",
                        "parameter": {
                            "connection": [
                                {"jdbcUrl": "jdbc:sqlite:../warehouse.db", "table": [table]}
                            ],
                            "writeMode": "insert",
                        },
                    },
                }
            ],
        }
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def land(root: Path, filename: str, value: str = "x") -> Path:
    """Drop the input file of slot ``filename`` for :func:`file_job`."""
    p = root / "landing" / f"in_{filename}.csv"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"v\n{value}\n", encoding="utf-8")
    return p


def table(root: Path, name: str = "landed") -> list[tuple[Any, ...]]:
    import sqlite3

    db = root / "warehouse.db"
    if not db.exists():
        return []
    con = sqlite3.connect(db)
    try:
        return con.execute(f"SELECT * FROM {name} ORDER BY rowid").fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()
