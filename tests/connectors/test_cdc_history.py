"""The capture readers' shared history of spans: the snapshot's span (``snapshot: true``) is
kept and marked, a rerun of it is refused with the fix, and histories saved before the mark
still load."""

from __future__ import annotations

import pytest

from tidesync.connectors.sql.cdc import CdcOptions, History, SpanPlan
from tidesync.errors import FatalError


def _window(s: int, e: int) -> CdcOptions:
    return CdcOptions(["t"], None, s, e, snapshot=True)


def test_the_first_span_of_a_snapshot_capture_is_marked_and_not_read_again() -> None:
    pending = History("cap", 1000, None)
    plan = pending.plan(_window(0, 10_000), 0, "r")
    assert plan.lo is None and plan.keep == 0  # the run creates the capture
    taken = SpanPlan(plan.start, plan.end, 7, snap=True)
    h = pending.record(taken, 10_000, 9, 86_400_000)
    assert h.lo == 7 and h.spans[0].snap and h.spans[0].lo == 7
    again = History.from_json(h.to_json())
    assert again == h
    nxt = again.plan(_window(10_000, 20_000), 0, "r")
    assert nxt.lo == 9 and not nxt.rerun
    h2 = again.record(SpanPlan(10_000, 20_000, 9, keep=1), 20_000, 12, 86_400_000)
    assert h2.plan(_window(10_000, 20_000), 0, "r").hi == 12  # later windows rerun
    for s, e in ((0, 10_000), (0, 20_000), (0, 30_000)):
        with pytest.raises(FatalError, match="snapshot cannot be taken again.*cdc drop"):
            h2.plan(_window(s, e), 0, "r")


def test_a_history_saved_without_the_mark_loads() -> None:
    h = History.from_json({"capture": "c", "created": 1, "lo": 3, "spans": [[0, 10, 3, 5]]})
    assert h is not None and not h.spans[0].snap
    assert h.to_json()["spans"] == [[0, 10, 3, 5]]


def test_the_tables_identities_are_kept_through_runs_and_reruns() -> None:
    h = History("c", 1, 3, tables={"public.t": 16385, "public.t_p1": [16390, "public.t"]})
    saved = History.from_json(h.to_json())
    assert saved == h
    nxt = saved.record(SpanPlan(0, 10, 3), 10, 5, 86_400_000)
    assert nxt.tables == h.tables
    rerun = nxt.record(SpanPlan(0, 10, 3, 5, rerun=True), 10, 5, 86_400_000)
    assert rerun.tables == h.tables


def test_a_history_saved_without_tables_loads_and_saves_none() -> None:
    h = History.from_json({"capture": "c", "created": 1, "lo": 3, "spans": []})
    assert h is not None and h.tables == {}
    assert "tables" not in h.to_json()  # the MySQL capture's history is as it was
