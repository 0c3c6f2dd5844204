"""postgresqlcdc against the real server: every change once, in windows, with the batch reader's
types; checkpoints that survive a crash; reruns that give the same rows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.integration._cdc import CRASH, Capture, rows, run_imports_pandas, state_store
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server, read_all  # noqa: F401
from tidesync.connectors.base import Context
from tidesync.connectors.postgresql import Reader as TableReader
from tidesync.connectors.postgresql.pgoutput import lsn_int

pytestmark = pytest.mark.integration


@pytest.fixture
def cap(pg: PgDb, tmp_path: Path) -> Iterator[Any]:  # noqa: F811
    """A factory of captures on tables of the test schema; their slots go at the end."""
    slots: list[str] = []

    def make(tables: list[str], **params: Any) -> Capture:
        slot = f"ts_{uuid.uuid4().hex[:16]}"
        slots.append(slot)
        p = {
            "jdbcUrl": pg.jdbc,
            "username": "postgres",
            "table": tables,
            "slot": slot,
            **params,
        }
        root = tmp_path / slot
        root.mkdir()
        return Capture(root, "postgresqlcdc", p)

    yield make
    for slot in slots:
        pg.con.execute(
            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )
        pg.con.execute(f'DROP PUBLICATION IF EXISTS "{slot}"')


def now_ms(pg: PgDb) -> int:  # noqa: F811
    return int(pg.rows("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")[0][0])


def until(pg: PgDb, ms: int) -> None:  # noqa: F811
    """Sleep until the server's clock passed ``ms``."""
    while (left := ms - now_ms(pg)) >= 0:
        time.sleep(left / 1000 + 0.01)


def test_inserts_updates_deletes_key_changes_and_nulls(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql("CREATE TABLE {s}.users (uid int PRIMARY KEY, uname text, deptno int)")
    c = cap(["users"])
    first = c.run()  # creates the capture: nothing yet
    assert first.num_rows == 0
    pg.sql(
        "INSERT INTO {s}.users VALUES (1, 'LiLei', 100), (2, 'HanMM', NULL), (5, 'Lily', 104)",
        "UPDATE {s}.users SET deptno = 101 WHERE uid = 2",
        "UPDATE {s}.users SET uname = NULL WHERE uid = 1",
        "UPDATE {s}.users SET uid = 7 WHERE uid = 5",
        "DELETE FROM {s}.users WHERE uid = 7",
    )
    t = c.run()
    assert t.schema.names == ["uid", "uname", "deptno", "_op", "_ts", "_pos"]
    assert rows(t, "_op", "uid", "uname", "deptno") == [
        ("c", 1, "LiLei", 100),
        ("c", 2, "HanMM", None),
        ("c", 5, "Lily", 104),
        ("u", 2, "HanMM", 101),
        ("u", 1, None, 100),
        ("d", 5, None, None),  # the key changed: the old key goes ...
        ("c", 7, "Lily", 104),  # ... and the row arrives under the new one
        ("d", 7, None, None),  # a delete carries the key
    ]
    ts = t.column("_ts").to_pylist()
    assert ts == sorted(ts) and len(set(ts)) == 5  # five transactions, in commit order
    assert t.schema.field("_ts").type == pa.timestamp("us", tz="UTC")
    assert c.run().num_rows == 0  # the next run starts after them


TYPED = """CREATE TABLE {s}.typed (
    id bigint PRIMARY KEY, i2 smallint, i4 integer, f4 real, f8 double precision,
    n numeric(12, 2), nbig numeric(40, 5), nfree numeric, b boolean, t text, v varchar(20),
    c char(3), by bytea, d date, tm time, ts timestamp, tz timestamptz, j json, jb jsonb,
    u uuid, arr integer[], tarr text[], iv interval, e oid)"""
ROW = (
    "(1, -3, 2147483647, 1.5, 3.141592653589793, 1234567890.12, 123456789012345678901234.5, "
    "'0.000001', true, 'tæxt \"q\"', 'var', 'ab', '\\x00ff10', '2016-11-14', '23:59:59.999999', "
    "'2016-11-14 12:34:56.123456', '2016-11-14 12:34:56.5+08', '{\"a\": [1, 2]}', "
    "'{\"b\": null}', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,NULL,3}', "
    "'{\"a b\",\"c,d\",NULL}', '1 day 02:03:04', 42)"
)


def test_columns_have_the_batch_readers_types_and_values(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql(TYPED)
    c = cap(["typed"])
    c.run()
    pg.sql(f"INSERT INTO {{s}}.typed VALUES {ROW}", "INSERT INTO {s}.typed (id) VALUES (2)")
    got = c.run()
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["typed"]},
        Context(where="r"),
    )
    _, want = read_all(batch)
    want = want.sort_by("id")
    data = got.drop_columns(["_op", "_ts", "_pos"])
    assert data.schema == want.schema
    assert data.to_pylist() == want.to_pylist()


def test_windows_tile_without_loss_or_duplicate_and_reruns_repeat(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    pg.sql("CREATE TABLE {s}.ev (id int PRIMARY KEY, note text)")
    c = cap(["ev"])
    t0 = now_ms(pg)
    assert c.run((t0 - 2000, t0)).num_rows == 0  # creates the capture
    pg.sql("INSERT INTO {s}.ev VALUES (1, 'w1')")
    # a transaction that begins inside the first window and commits after its end
    with pg.con.transaction():
        pg.sql("INSERT INTO {s}.ev VALUES (2, 'spans')")
        b1 = now_ms(pg) + 300
        until(pg, b1)
        pg.sql("INSERT INTO {s}.ev VALUES (3, 'spans')")
    pg.sql("INSERT INTO {s}.ev VALUES (4, 'w2')")
    b2 = now_ms(pg) + 200
    until(pg, b2)
    pg.sql("UPDATE {s}.ev SET note = 'w3' WHERE id = 1")
    b3 = now_ms(pg) + 100
    w1 = c.run((t0, b1))
    w2 = c.run((b1, b2))
    w3 = c.run((b2, b3))
    assert rows(w1, "_op", "id") == [("c", 1)]
    assert rows(w2, "_op", "id", "note") == [("c", 2, "spans"), ("c", 3, "spans"), ("c", 4, "w2")]
    assert rows(w3, "_op", "id", "note") == [("u", 1, "w3")]
    assert w2.column("_ts")[0] == w2.column("_ts")[1]  # one transaction, whole in one window
    for w, (s, e) in ((w1, (t0, b1)), (w2, (b1, b2)), (w3, (b2, b3))):
        assert all(s * 1000 <= v.value < e * 1000 for v in w.column("_ts"))
    pg.sql("INSERT INTO {s}.ev VALUES (5, 'later')")  # after the windows: in none of the reruns
    assert c.run((b1, b2)).equals(w2)  # a rerun of an old window: the same rows
    assert c.run((t0, b3)).to_pylist() == (w1.to_pylist() + w2.to_pylist() + w3.to_pylist())
    nxt = c.run((b3, now_ms(pg) + 50))
    assert rows(nxt, "id") == [(5,)]


def test_a_gap_a_window_not_yet_over_and_an_unknown_boundary_are_errors(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    pg.sql("CREATE TABLE {s}.g (id int PRIMARY KEY)")
    c = cap(["g"])
    t0 = now_ms(pg)
    c.run((t0 - 1000, t0))
    r = c.run_report((t0 + 10, t0 + 20))
    assert r.status == "failed" and "leaves a gap" in r.error and "never taken" in r.error
    r = c.run_report((t0, t0 + 3_600_000), waitTimeout="2s")
    assert r.status == "failed" and "waitTimeout" in r.error
    r = c.run_report((t0 - 500, t0 + 10))
    assert r.status == "failed" and "starts inside an earlier window" in r.error


def test_two_tables_in_one_job_carry_the_table(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql(
        "CREATE TABLE {s}.a (id int PRIMARY KEY, x text)",
        "CREATE TABLE {s}.b (id int PRIMARY KEY, y int)",
    )
    c = cap(["a", "b"])
    c.run()
    pg.sql("INSERT INTO {s}.a VALUES (1, 'one')", "INSERT INTO {s}.b VALUES (1, 10)")
    pg.sql("DELETE FROM {s}.a WHERE id = 1")
    t = c.run()
    assert t.schema.names == ["id", "x", "y", "_op", "_ts", "_pos", "_table"]
    assert rows(t, "_table", "_op", "id", "x", "y") == [
        ("a", "c", 1, "one", None),
        ("b", "c", 1, None, 10),
        ("a", "d", 1, None, None),
    ]


def test_a_column_added_mid_stream_appears(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql("CREATE TABLE {s}.sc (id int PRIMARY KEY)")
    c = cap(["sc"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.sc VALUES (1)",
        "ALTER TABLE {s}.sc ADD COLUMN extra text",
        "INSERT INTO {s}.sc VALUES (2, 'new')",
    )
    t = c.run()
    assert rows(t, "id", "extra") == [(1, None), (2, "new")]


def test_a_purged_position_is_an_error_naming_the_fix(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql("CREATE TABLE {s}.p (id int PRIMARY KEY)")
    c = cap(["p"])
    c.run()
    pg.sql("INSERT INTO {s}.p VALUES (1)")
    slot = c.params["slot"]
    pg.sql(f"SELECT pg_replication_slot_advance('{slot}', pg_current_wal_lsn())")
    r = c.run_report()
    assert r.status == "failed" and "cdc drop" in r.error and slot in r.error


def test_100000_changes_in_one_window(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql("CREATE TABLE {s}.big (id int PRIMARY KEY, v text, n numeric(10, 2))")
    c = cap(["big"])
    c.run()
    pg.sql("INSERT INTO {s}.big SELECT g, 'v' || g, g / 100.0 FROM generate_series(1, 100000) g")
    t = c.run()
    assert t.num_rows == 100_000
    assert t.column("id").to_pylist() == list(range(1, 100_001))
    assert t.column("v")[99_999].as_py() == "v100000"


def test_a_crash_between_write_and_checkpoint_loses_and_duplicates_nothing(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    pg.sql("CREATE TABLE {s}.k (id int PRIMARY KEY)")
    c = cap(["k"])
    out = c.out = c.root / "out"
    c.run()
    pg.sql("INSERT INTO {s}.k VALUES (1), (2)")
    job = c.write_job(out, {})
    _crash(c, job)
    assert rows(c.read(out), "id") == [(1,), (2,)]  # published, but not checkpointed
    pg.sql("INSERT INTO {s}.k VALUES (3)")
    c.run()
    assert rows(c.read(out), "id") == [(1,), (2,), (3,)]  # again, each once
    c.run()
    assert c.read(out).num_rows == 0


def _crash(c: Capture, job: Path) -> None:
    """`tidesync run JOB`, killed after its writer published, before the checkpoint."""
    p = subprocess.run(
        [sys.executable, "-c", CRASH, str(job)],
        cwd=c.root,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert p.returncode == -signal.SIGKILL, p.stderr


def test_cdc_check_says_ready_and_drop_removes_the_capture(
    pg: PgDb,  # noqa: F811
    cap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from tidesync.cli import main

    pg.sql("CREATE TABLE {s}.d (id int PRIMARY KEY)", "CREATE TABLE {s}.nokey (v int)")
    c = cap(["d", "nokey"])
    c.run()
    slot = c.params["slot"]
    monkeypatch.chdir(c.root)
    r = CliRunner().invoke(main, ["cdc", "check", str(c.job)])
    assert r.exit_code == 1, r.output  # a table without a key cannot publish its deletes
    assert f"postgresqlcdc {slot}: NOT READY" in r.output
    assert "table nokey has no replica identity" in r.output and "REPLICA IDENTITY FULL" in r.output
    assert "1 window(s) retained" in r.output
    pg.sql("ALTER TABLE {s}.nokey REPLICA IDENTITY FULL")
    r = CliRunner().invoke(main, ["cdc", "check", str(c.job)])
    assert r.exit_code == 0 and ": ready" in r.output, r.output
    r = CliRunner().invoke(main, ["cdc", "drop", str(c.job)])
    assert r.exit_code == 0, r.output
    assert f"dropped replication slot {slot}" in r.output
    assert not pg.rows("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    assert not pg.rows("SELECT 1 FROM pg_publication WHERE pubname = %s", (slot,))
    pg.sql("INSERT INTO {s}.d VALUES (1)")  # before the new capture: not in it
    assert c.run().num_rows == 0  # a new capture, from its own start
    pg.sql("INSERT INTO {s}.d VALUES (2)")
    assert rows(c.run(), "id") == [(2,)]


def test_before_image_with_replica_identity_full(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql(
        "CREATE TABLE {s}.bi (id int PRIMARY KEY, v text)",
        "ALTER TABLE {s}.bi REPLICA IDENTITY FULL",
    )
    c = cap(["bi"], beforeImage=True)
    c.run()
    pg.sql("INSERT INTO {s}.bi VALUES (1, 'a')", "UPDATE {s}.bi SET v = 'b' WHERE id = 1")
    pg.sql("DELETE FROM {s}.bi WHERE id = 1")
    t = c.run()
    assert t.schema.names[:4] == ["id", "v", "before_id", "before_v"]
    assert rows(t, "_op", "id", "v", "before_id", "before_v") == [
        ("c", 1, "a", None, None),
        ("u", 1, "b", 1, "a"),
        ("d", 1, "b", 1, "b"),
    ]


# -- snapshot: true ---------------------------------------------------------------------------------


def test_a_snapshot_gives_the_rows_then_each_change_once_with_a_racing_change(
    pg: PgDb,  # noqa: F811
    cap: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Rows present before the capture arrive as ``r``; a transaction still open while the slot
    is created is in the snapshot (and not among the changes); changes committed between the
    slot's consistent point and the reading of the table are among the changes (and not in the
    snapshot); nothing twice."""
    import psycopg

    pg.sql(
        "CREATE TABLE {s}.rs (id int PRIMARY KEY, v text)",
        "INSERT INTO {s}.rs VALUES (1, 'v1'), (2, 'v2'), (3, 'v3')",
    )
    c = cap(["rs"], snapshot=True)
    racing = psycopg.connect(pg.url)  # a transaction open when the capture starts
    racing.execute(f"UPDATE {pg.schema}.rs SET v = 'race2' WHERE id = 2")
    racing.execute(f"INSERT INTO {pg.schema}.rs VALUES (4, 'race4')")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    monkeypatch.setenv("TIDESYNC_TEST_HOOKS", f"cdc.snapshot=hold:{hooks}")
    out: dict[str, Any] = {}
    run = threading.Thread(target=lambda: out.update(t=c.run_report()))
    run.start()
    slot = c.params["slot"]
    _wait_for(lambda: pg.rows("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)))
    # the slot's creation waits for the open transaction: it cannot be past its snapshot yet
    assert not (hooks / "cdc.snapshot.reached").exists()
    racing.commit()
    racing.close()
    _wait_for(lambda: (hooks / "cdc.snapshot.reached").exists())
    pg.sql(  # after the consistent point, before the table is read
        "UPDATE {s}.rs SET v = 'after3' WHERE id = 3",
        "DELETE FROM {s}.rs WHERE id = 1",
        "INSERT INTO {s}.rs VALUES (5, 'after5')",
    )
    (hooks / "cdc.snapshot.go").touch()
    run.join()
    monkeypatch.delenv("TIDESYNC_TEST_HOOKS")
    assert out["t"].status == "succeeded", out["t"].error
    first = c.read(c.folder(c.runs))
    got = rows(first, "_op", "id", "v")
    assert sorted(got[:4]) == [  # the snapshot, in the table's order
        ("r", 1, "v1"),
        ("r", 2, "race2"),
        ("r", 3, "v3"),
        ("r", 4, "race4"),
    ]
    assert got[4:] == [("u", 3, "after3"), ("d", 1, None), ("c", 5, "after5")]
    pos = [lsn_int(x) for x in first.column("_pos").to_pylist()]
    assert len(set(pos[:4])) == 1 and min(pos[4:]) >= pos[0]  # the consistent point, then after
    pg.sql("UPDATE {s}.rs SET v = 'later' WHERE id = 5")
    assert rows(c.run(), "_op", "id", "v") == [("u", 5, "later")]
    assert c.run().num_rows == 0


def _wait_for(cond: Any, limit: float = 180.0) -> None:
    """Poll a condition on the servers (not a timing: the bound only stops a hung test)."""
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, "the condition never became true"
        time.sleep(0.02)


def test_a_snapshot_has_the_batch_readers_types(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql(TYPED, f"INSERT INTO {{s}}.typed VALUES {ROW}", "INSERT INTO {s}.typed (id) VALUES (2)")
    c = cap(["typed"], snapshot=True, beforeImage=True)
    got = c.run()
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["typed"]},
        Context(where="r"),
    )
    _, want = read_all(batch)
    data = got.sort_by("id").select(want.schema.names)
    assert data.schema == want.schema
    assert data.to_pylist() == want.sort_by("id").to_pylist()
    assert set(got.column("_op").to_pylist()) == {"r"}
    assert all(v is None for v in got.column("before_id").to_pylist())


def test_a_snapshot_window_and_its_reruns(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql(
        "CREATE TABLE {s}.sw (id int PRIMARY KEY, v text)",
        "CREATE TABLE {s}.sw2 (id int PRIMARY KEY, w int)",
        "INSERT INTO {s}.sw VALUES (1, 'a'), (2, 'b')",
        "INSERT INTO {s}.sw2 VALUES (1, 10)",
    )
    c = cap(["sw", "sw2"], snapshot=True)
    t0 = now_ms(pg)
    w1 = c.run((t0 - 1000, t0))
    assert rows(w1, "_table", "_op", "id", "v", "w") == [
        ("sw", "r", 1, "a", None),
        ("sw", "r", 2, "b", None),
        ("sw2", "r", 1, None, 10),
    ]
    pg.sql("UPDATE {s}.sw SET v = 'c' WHERE id = 2")
    t1 = now_ms(pg) + 50
    w2 = c.run((t0, t1))
    assert rows(w2, "_table", "_op", "id", "v") == [("sw", "u", 2, "c")]
    r = c.run_report((t0 - 1000, t0))  # the snapshot cannot be taken again at its point
    assert r.status == "failed" and "snapshot" in r.error and "cdc drop" in r.error
    r = c.run_report((t0 - 1000, t1))
    assert r.status == "failed" and "snapshot" in r.error
    assert c.run((t0, t1)).equals(w2)  # later windows rerun as before


def test_a_first_run_killed_before_its_checkpoint_takes_a_new_snapshot(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    pg.sql("CREATE TABLE {s}.ks (id int PRIMARY KEY)", "INSERT INTO {s}.ks VALUES (1), (2)")
    c = cap(["ks"], snapshot=True)
    out = c.out = c.root / "out"
    job = c.write_job(out, {})
    _crash(c, job)
    assert rows(c.read(out), "_op", "id") == [("r", 1), ("r", 2)]  # published, not saved
    pg.sql("INSERT INTO {s}.ks VALUES (3)")
    c.run()  # the slot left behind is replaced: a new snapshot, which has row 3
    assert rows(c.read(out), "_op", "id") == [("r", 1), ("r", 2), ("r", 3)]
    pg.sql("DELETE FROM {s}.ks WHERE id = 1")
    c.run()
    assert rows(c.read(out), "_op", "id") == [("d", 1)]


def test_a_snapshot_and_changes_merged_give_the_exact_table(
    pg: PgDb,  # noqa: F811
    cap: Any,
    tmp_path: Path,
) -> None:
    import sqlite3

    pg.sql(
        "CREATE TABLE {s}.mt (id int PRIMARY KEY, v text, n int)",
        "INSERT INTO {s}.mt SELECT g, 'v' || g, g FROM generate_series(1, 1000) g",
    )
    target = tmp_path / "target.sqlite"
    con = sqlite3.connect(target)
    con.execute("CREATE TABLE mt (id BIGINT PRIMARY KEY, v TEXT, n BIGINT)")
    con.commit()
    con.close()
    writer = {"name": "sqlitewriter", "parameter": {
        "connection": [{"jdbcUrl": f"jdbc:sqlite:{target}", "table": ["mt"]}],
        "writeMode": "merge"}}  # fmt: skip
    c = cap(["mt"], snapshot=True)
    c.writer = writer
    c.out = tmp_path / "unused"
    r = c.run_report()
    assert r.status == "succeeded", r.error
    pg.sql(
        "UPDATE {s}.mt SET v = 'u' || id WHERE id % 7 = 0",
        "DELETE FROM {s}.mt WHERE id % 11 = 0",
        "INSERT INTO {s}.mt SELECT g, NULL, -g FROM generate_series(1001, 1100) g",
        "UPDATE {s}.mt SET id = id + 5000 WHERE id % 13 = 0",
    )
    r = c.run_report()
    assert r.status == "succeeded", r.error
    con = sqlite3.connect(target)
    got = con.execute("SELECT id, v, n FROM mt ORDER BY id").fetchall()
    con.close()
    want = [tuple(x) for x in pg.rows("SELECT id, v, n FROM {s}.mt ORDER BY id")]
    assert len(want) > 1000 and got == want


def test_a_column_dropped_mid_stream_leaves_the_output(pg: PgDb, cap: Any) -> None:  # noqa: F811
    """A run's columns are the table's when the run plans: a column dropped since is not
    output, even for changes logged before the drop; the others keep their values."""
    pg.sql("CREATE TABLE {s}.dc (id int PRIMARY KEY, gone text, kept int)")
    c = cap(["dc"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.dc VALUES (1, 'a', 10)",
        "ALTER TABLE {s}.dc DROP COLUMN gone",
        "INSERT INTO {s}.dc VALUES (2, 20)",
        "UPDATE {s}.dc SET kept = 11 WHERE id = 1",
    )
    t = c.run()
    assert t.schema.names == ["id", "kept", "_op", "_ts", "_pos"]
    assert rows(t, "_op", "id", "kept") == [("c", 1, 10), ("c", 2, 20), ("u", 1, 11)]


MIXED = """CREATE TABLE {s}.mixed (
    id bigint PRIMARY KEY, n numeric(12, 2), nbig numeric(40, 5), f8 double precision,
    b boolean, t text, by bytea, d date, tm time, ts timestamp, tz timestamptz, jb jsonb,
    arr integer[], iv interval)"""


def test_the_socket_copy_and_the_adbc_fallback_read_the_same_rows(
    pg: PgDb,  # noqa: F811
    cap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tidesync.connectors.postgresql import cdc, wire

    copies: list[str] = []
    copy_out = wire.copy_out

    def counted(conn: Any, sql: str, ncols: int) -> Any:
        copies.append(sql)
        return copy_out(conn, sql, ncols)

    monkeypatch.setattr(wire, "copy_out", counted)
    pg.sql(MIXED)
    c = cap(["mixed"])
    t0 = now_ms(pg)
    c.run((t0 - 2000, t0))  # creates the capture
    pg.sql(
        "INSERT INTO {s}.mixed SELECT g, g / 7.0, g * 1e20 + 0.5, g * 0.37, g % 2 = 0, "
        "'tæxt ' || g, decode(lpad(to_hex(g), 4, '0'), 'hex'), date '2016-11-14' + g, "
        "time '23:59:59.5' - g * interval '1 s', timestamp '2016-11-14 12:34:56.123456' + "
        "g * interval '1 s', timestamptz '2016-11-14 12:34:56.5+08' + g * interval '1 min', "
        "jsonb_build_object('k', g), ARRAY[g, NULL], g * interval '1 hour' "
        "FROM generate_series(1, 3000) g",
        "INSERT INTO {s}.mixed (id) VALUES (0)",
        "UPDATE {s}.mixed SET t = NULL, n = -n WHERE id % 10 = 1",
        "UPDATE {s}.mixed SET id = id + 10000 WHERE id % 100 = 2",
    )
    b1 = now_ms(pg) + 100
    until(pg, b1)
    pg.sql(
        "DELETE FROM {s}.mixed WHERE id % 5 = 3",
        "UPDATE {s}.mixed SET by = NULL, d = NULL, tz = tz + interval '1 day' WHERE id < 50",
    )
    b2 = now_ms(pg) + 100
    until(pg, b2)
    # the second window starts past the slot's position: read from a temporary copy of the slot
    socket = [c.run((t0, b1)), c.run((b1, b2))]
    # one peek a window, or more when other work filled the server's WAL meanwhile
    peeks = len(copies)
    assert peeks >= 2 and all("pg_logical_slot_peek_binary_changes" in q for q in copies)
    monkeypatch.setattr(cdc, "SOCKET", False)
    adbc = [c.run((t0, b1)), c.run((b1, b2))]
    assert len(copies) == peeks  # ADBC read the reruns
    ops = [sorted(set(w.column("_op").to_pylist())) for w in socket]
    assert ops == [["c", "d", "u"], ["d", "u"]]
    assert [w.num_rows for w in socket] == [3001 + 300 + 30 * 2, 600 + 39]
    for a, b in zip(socket, adbc, strict=True):
        assert a.schema == b.schema
        assert a.to_pylist() == b.to_pylist()


def test_a_capture_run_never_imports_pandas(pg: PgDb, cap: Any) -> None:  # noqa: F811
    # pyarrow imports pandas (a quarter of a second) at the first array built from Python
    # objects or numpy by pa.array, and ADBC imports it: the CDC path uses neither
    pg.sql("CREATE TABLE {s}.np (id int PRIMARY KEY, v numeric(9, 2), d date, b boolean)")
    c = cap(["np"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.np SELECT g, g / 3.0, date '2020-01-01' + g, g % 2 = 0 "
        "FROM generate_series(1, 100) g",
        "UPDATE {s}.np SET v = NULL WHERE id < 10",
        "DELETE FROM {s}.np WHERE id > 90",
    )
    job = c.write_job(c.root / "out_np", {})
    assert not run_imports_pandas(job, c.root)
    assert c.read(c.root / "out_np").num_rows == 100 + 9 + 10


@pytest.fixture
def publication(pg: PgDb) -> Iterator[str]:  # noqa: F811
    """The name of a publication the test makes (as a table's owner would); dropped at the end."""
    name = f"pub_{uuid.uuid4().hex[:12]}"
    yield name
    pg.sql(f"DROP PUBLICATION IF EXISTS {name}")


@pytest.mark.parametrize("own", [False, True], ids=["tidesyncs_publication", "users_publication"])
def test_a_truncate_of_a_captured_table_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
    own: bool,
) -> None:
    pg.sql("CREATE TABLE {s}.tr (id int PRIMARY KEY)", "CREATE TABLE {s}.other (id int)")
    if own:
        pg.sql(f"CREATE PUBLICATION {publication} FOR TABLE {{s}}.tr, {{s}}.other")
    c = cap(["tr"], **({"publication": publication} if own else {}))
    c.run()
    pg.sql("INSERT INTO {s}.tr VALUES (1)", "TRUNCATE {s}.other")
    assert rows(c.run(), "_op", "id") == [("c", 1)]  # another table's TRUNCATE is no matter
    pg.sql("TRUNCATE {s}.tr", "INSERT INTO {s}.tr VALUES (2)")
    r = c.run_report()
    assert r.status == "failed" and "table tr" in r.error and "TRUNCATE" in r.error


def test_a_publication_that_leaves_out_updates_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
) -> None:
    pg.sql(
        "CREATE TABLE {s}.pu (id int PRIMARY KEY, v int)",
        f"CREATE PUBLICATION {publication} FOR TABLE {{s}}.pu WITH (publish = 'insert')",
    )
    r = cap(["pu"], publication=publication).run_report()
    assert r.status == "failed"
    assert publication in r.error and "ALTER PUBLICATION" in r.error


@pytest.mark.parametrize(
    "own",
    [None, "FOR TABLE {s}.pt", "FOR ALL TABLES"],
    ids=["tidesyncs_publication", "users_publication", "users_publication_of_all_tables"],
)
def test_a_partitioned_tables_changes_come_under_its_name(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
    own: str | None,
) -> None:
    pg.sql(
        "CREATE TABLE {s}.pt (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.pt_low PARTITION OF {s}.pt FOR VALUES FROM (0) TO (10)",
        "CREATE TABLE {s}.pt_high PARTITION OF {s}.pt FOR VALUES FROM (10) TO (20) "
        "PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.pt_high1 PARTITION OF {s}.pt_high FOR VALUES FROM (10) TO (20)",
    )
    if own:  # published by its partitions' names (publish_via_partition_root is false)
        pg.sql(f"CREATE PUBLICATION {publication} {own}")
    c = cap(["pt"], **({"publication": publication} if own else {}))
    c.run()
    pg.sql(
        "INSERT INTO {s}.pt VALUES (1, 1, 'a'), (2, 15, 'b')",
        "UPDATE {s}.pt SET v = 'c' WHERE id = 2",
        "UPDATE {s}.pt SET k = 12 WHERE id = 1",  # moves to another partition
    )
    assert rows(c.run(), "_op", "id", "k", "v") == [
        ("c", 1, 1, "a"),
        ("c", 2, 15, "b"),
        ("u", 2, 15, "c"),
        ("d", 1, 1, None),
        ("c", 1, 12, "a"),
    ]


def test_a_timestamptz_whose_zone_offset_has_seconds_is_read(pg: PgDb, cap: Any) -> None:  # noqa: F811
    # before 1928 Asia/Shanghai kept local mean time, +08:05:43: a session in that zone prints
    # such a value with an offset in seconds
    pg.sql("CREATE TABLE {s}.lmt (id int PRIMARY KEY, tz timestamptz)")
    session = ["SET TIME ZONE 'Asia/Shanghai'"]
    c = cap(["lmt"], session=session)
    c.run()
    pg.sql(
        "INSERT INTO {s}.lmt VALUES (1, '1900-01-01 00:00:00+00'), (2, '2020-01-01 00:00:00+00')"
    )
    got = c.run()
    _, want = read_all(
        TableReader(
            {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["lmt"], "session": session},
            Context(where="r"),
        )
    )
    assert got.select(["id", "tz"]).to_pylist() == want.sort_by("id").to_pylist()
    assert str(got.column("tz")[0].as_py()) == "1900-01-01 00:00:00+00:00"


def test_a_replica_identity_index_other_than_the_primary_key_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    # the log would hold an update of the primary key without the old key, and a delete
    # without the primary key: a merged target would keep both rows
    pg.sql(
        "CREATE TABLE {s}.ri (id int PRIMARY KEY, u int NOT NULL UNIQUE, v text)",
        "ALTER TABLE {s}.ri REPLICA IDENTITY USING INDEX ri_u_key",
    )
    c = cap(["ri"])
    r = c.run_report()
    assert r.status == "failed"
    assert "table ri" in r.error and "REPLICA IDENTITY" in r.error and "(u)" in r.error
    pg.sql("ALTER TABLE {s}.ri REPLICA IDENTITY USING INDEX ri_pkey")  # the key itself: fine
    c.run()
    pg.sql("INSERT INTO {s}.ri VALUES (1, 10, 'a')", "UPDATE {s}.ri SET id = 3 WHERE id = 1")
    assert rows(c.run(), "_op", "id", "u") == [("c", 1, 10), ("d", 1, None), ("c", 3, 10)]


def test_a_generated_column_is_an_error_unless_left_out(pg: PgDb, cap: Any) -> None:  # noqa: F811
    # pgoutput does not send generated columns: their values would come as NULL
    pg.sql(
        "CREATE TABLE {s}.gen (id int PRIMARY KEY, a int, "
        "dbl int GENERATED ALWAYS AS (a * 2) STORED)"
    )
    r = cap(["gen"]).run_report()
    assert r.status == "failed" and "table gen, column dbl" in r.error and "column" in r.error
    c = cap(["gen"], column=["id", "a"])
    c.run()
    pg.sql("INSERT INTO {s}.gen (id, a) VALUES (1, 5)")
    assert rows(c.run(), "_op", "id", "a") == [("c", 1, 5)]


@pytest.mark.parametrize(
    "replace",
    [
        ["DROP TABLE {s}.rp", "CREATE TABLE {s}.rp (id int PRIMARY KEY)"],
        [
            "CREATE TABLE {s}.rp_new (id int PRIMARY KEY)",
            "ALTER TABLE {s}.rp RENAME TO rp_old",
            "ALTER TABLE {s}.rp_new RENAME TO rp",
        ],
    ],
    ids=["drop_and_create", "rename_swap"],
)
def test_a_captured_table_replaced_mid_window_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    replace: list[str],
) -> None:
    """The log names a table by its OID: another table under the captured name (its rows put in
    place without a change of each) is an error, never the old table's rows kept."""
    pg.sql("CREATE TABLE {s}.rp (id int PRIMARY KEY)")
    c = cap(["rp"])
    c.run()
    pg.sql("INSERT INTO {s}.rp VALUES (1)")
    assert rows(c.run(), "_op", "id") == [("c", 1)]
    pg.sql("INSERT INTO {s}.rp VALUES (2)", *replace, "INSERT INTO {s}.rp VALUES (3)")
    # positions saved without the table's OID (by an earlier version): the log's description
    # of the old table, with its OID, is what tells
    _forget_oids(c)
    r = c.run_report()
    assert r.status == "failed" and "table rp" in r.error and "OID" in r.error
    assert "tidesync cdc drop" in r.error and "log span" in r.error


def _saved(c: Capture) -> tuple[Any, Any]:
    from tidesync.state import POSITIONS

    store = state_store(c.root)
    [entry] = store.list(POSITIONS)
    return store, entry


def _forget_oids(c: Capture) -> None:
    """Make the saved positions as a version that kept no table OIDs saved them."""
    from tidesync.state import POSITIONS

    store, entry = _saved(c)
    v = entry.value
    assert v["positions"]["changes"].pop("tables")
    assert store.compare_and_set(POSITIONS, entry.key, entry.version, v) is not None


def test_a_column_renamed_mid_window_is_an_error(pg: PgDb, cap: Any) -> None:  # noqa: F811
    """Rows logged before a rename carry the old name: an error naming both, never the column's
    values lost (a column dropped and another added in its place reads the same: an error too)."""
    pg.sql("CREATE TABLE {s}.rc (id int PRIMARY KEY, a text, z int)")
    c = cap(["rc"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.rc VALUES (1, 'x', 10)",
        "ALTER TABLE {s}.rc RENAME COLUMN a TO b",
        "INSERT INTO {s}.rc VALUES (2, 'y', 20)",
    )
    r = c.run_report()
    assert r.status == "failed" and "table rc" in r.error
    assert "column a" in r.error and "column b" in r.error


def test_column_names_swapped_mid_window_is_an_error(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql("CREATE TABLE {s}.sw (id int PRIMARY KEY, a int, b int)")
    c = cap(["sw"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.sw VALUES (1, 10, 20)",
        "ALTER TABLE {s}.sw RENAME COLUMN a TO tmp",
        "ALTER TABLE {s}.sw RENAME COLUMN b TO a",
        "ALTER TABLE {s}.sw RENAME COLUMN tmp TO b",
    )
    r = c.run_report()
    assert r.status == "failed" and "table sw" in r.error and "renamed" in r.error


@pytest.mark.parametrize(
    "replace",
    [
        ["DROP TABLE {s}.rq", "CREATE TABLE {s}.rq (id int PRIMARY KEY)"],
        [
            "CREATE TABLE {s}.rq_new (id int PRIMARY KEY)",
            "ALTER TABLE {s}.rq RENAME TO rq_old",
            "ALTER TABLE {s}.rq_new RENAME TO rq",
        ],
    ],
    ids=["drop_and_create", "rename_swap"],
)
def test_a_captured_table_replaced_with_no_change_of_the_old_one_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    replace: list[str],
) -> None:
    """The saved positions keep each table's OID: a table replaced while the old one had no
    change in the window (nothing of it in the log) is an error at the next run, never the new
    table's first changes lost (they were logged before the new table joined the publication)."""
    pg.sql("CREATE TABLE {s}.rq (id int PRIMARY KEY)")
    c = cap(["rq"])
    c.run()
    pg.sql("INSERT INTO {s}.rq VALUES (1)")
    assert rows(c.run(), "_op", "id") == [("c", 1)]
    pg.sql(*replace, "INSERT INTO {s}.rq VALUES (3)")
    r = c.run_report()
    assert r.status == "failed" and "table rq" in r.error and "OID" in r.error
    assert "tidesync cdc drop" in r.error and "snapshot" in r.error


def test_positions_saved_without_oids_record_them(pg: PgDb, cap: Any) -> None:  # noqa: F811
    pg.sql("CREATE TABLE {s}.ro (id int PRIMARY KEY)")
    c = cap(["ro"])
    c.run()
    _forget_oids(c)
    pg.sql("INSERT INTO {s}.ro VALUES (1)")
    assert rows(c.run(), "_op", "id") == [("c", 1)]  # no OID saved: recorded, not an error
    [(oid,)] = pg.rows("SELECT '{s}.ro'::regclass::oid::int")
    assert _saved(c)[1].value["positions"]["changes"]["tables"] == {f"{pg.schema}.ro": oid}
    pg.sql("DROP TABLE {s}.ro", "CREATE TABLE {s}.ro (id int PRIMARY KEY)")
    r = c.run_report()
    assert r.status == "failed" and "table ro" in r.error and "OID" in r.error


def test_a_publication_whose_column_list_leaves_out_a_read_column_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
) -> None:
    """A column list (PostgreSQL 15+) leaves columns out of the log: their values would come as
    NULL. Reading such a column is an error naming the publication, the table and the columns."""
    if pg.con.info.server_version < 150000:
        pytest.skip("column lists are PostgreSQL 15+")
    pg.sql(
        "CREATE TABLE {s}.cl (id int PRIMARY KEY, a text, b int, c int)",
        f"CREATE PUBLICATION {publication} FOR TABLE {{s}}.cl (id, c)",
    )
    r = cap(["cl"], publication=publication).run_report()
    assert r.status == "failed" and publication in r.error and "table cl" in r.error
    assert "columns a, b" in r.error and "column list" in r.error
    c = cap(["cl"], publication=publication, column=["id", "c"])  # the columns it publishes
    c.run()
    pg.sql("INSERT INTO {s}.cl VALUES (1, 'x', 2, 3)")
    assert rows(c.run(), "_op", "id", "c") == [("c", 1, 3)]


def test_a_column_list_set_mid_window_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
) -> None:
    """Rows logged while the publication's column list left out a read column (set and reset
    within the window, so the list at the run's start is whole) are an error, not NULLs."""
    if pg.con.info.server_version < 150000:
        pytest.skip("column lists are PostgreSQL 15+")
    pg.sql(
        "CREATE TABLE {s}.cm (id int PRIMARY KEY, a text, b int)",
        f"CREATE PUBLICATION {publication} FOR TABLE {{s}}.cm",
    )
    c = cap(["cm"], publication=publication)
    c.run()
    pg.sql(
        "INSERT INTO {s}.cm VALUES (1, 'x', 10)",
        f"ALTER PUBLICATION {publication} SET TABLE {{s}}.cm (id, b)",
        "INSERT INTO {s}.cm VALUES (2, 'y', 20)",
        f"ALTER PUBLICATION {publication} SET TABLE {{s}}.cm",
        "INSERT INTO {s}.cm VALUES (3, 'z', 30)",
    )
    r = c.run_report()
    assert r.status == "failed" and "table cm" in r.error and "column a" in r.error, r.error
    assert "column list" in r.error


def test_numeric_and_float_nan_and_infinity_are_the_batch_readers(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    """NaN and the infinities of an unconstrained numeric (text), real and double precision come
    as the batch reader gives them; in a numeric(p, s) they are dirty records in both."""
    pg.sql(
        "CREATE DOMAIN {s}.money_d AS numeric",
        "CREATE TABLE {s}.nn (id int PRIMARY KEY, nfree numeric, dom {s}.money_d, f4 real, "
        "f8 double precision, nwide numeric(60, 2), narr numeric[])",
    )
    c = cap(["nn"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.nn VALUES (1, 'NaN', 'NaN', 'NaN', 'NaN', 1.5, '{NaN,Infinity}'), "
        "(2, 'Infinity', 'Infinity', 'Infinity', 'Infinity', -2, NULL), "
        "(3, '-Infinity', '-Infinity', '-Infinity', '-Infinity', NULL, '{-Infinity}'), "
        "(4, '1.50', '-0.000', '-0', '1e300', 12345678901234567890123.45, '{1.50}')"
    )
    got = c.run()
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["nn"]}, Context(where="r")
    )
    _, want = read_all(batch)
    data = got.drop_columns(["_op", "_ts", "_pos"])
    assert data.schema == want.schema
    # by repr: a float NaN equals no NaN
    assert [repr(r) for r in data.to_pylist()] == [repr(r) for r in want.sort_by("id").to_pylist()]
    assert data.column("nfree").to_pylist()[:3] == ["nan", "inf", "-inf"]


def test_a_numeric_nan_in_a_decimal_is_dirty_as_in_the_batch_reader(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    from tidesync.connectors.base import Chunk

    pg.sql("CREATE TABLE {s}.nd (id int PRIMARY KEY, n numeric(12, 2), nwide numeric(60, 2))")
    c = cap(["nd"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.nd VALUES (1, 'NaN', 1), (2, 2, 'NaN'), (3, 3, 3)"
    )  # a numeric(p, s) holds no infinity
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["nd"]}, Context(where="r")
    )
    [split] = batch.splits(1)
    dirty = [d for ch in batch.read(split) if isinstance(ch, Chunk) for d in ch.dirty]
    batch.close()
    assert len(dirty) == 2
    r = c.run_report()  # errorLimit.record = 0
    assert r.status == "failed" and "dirty record" in r.error and "has no decimal" in r.error


@pytest.mark.parametrize(
    ("before", "alter", "value"),
    [
        ("boolean", "text", "true"),
        ("real", "double precision", "1.1"),
        ("char(4)", "text", "ab"),
        ("timestamp", "timestamptz", "2020-01-01 10:00:00"),
    ],
)
def test_a_column_type_changed_mid_window_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    before: str,
    alter: str,
    value: str,
) -> None:
    """Rows logged before an ALTER COLUMN ... TYPE carry the old type's text, which read as the
    new type is not the value the table now has ('t' for true, a real's 1.1 as a double's): an
    error naming the table, the column and both types, never the old text under the new type."""
    pg.sql(f"CREATE TABLE {{s}}.ty (id int PRIMARY KEY, v {before})")
    c = cap(["ty"])
    c.run()
    pg.sql(
        f"INSERT INTO {{s}}.ty VALUES (1, '{value}')",
        "SET TIME ZONE 'Asia/Tokyo'",
        f"ALTER TABLE {{s}}.ty ALTER COLUMN v TYPE {alter}",
        "RESET TIME ZONE",
        "INSERT INTO {s}.ty VALUES (2, NULL)",
    )
    r = c.run_report()  # the plan sees the type changed since the last run (or, with
    # positions saved without the types, the log's rows of the old type)
    assert r.status == "failed" and "column v" in r.error and "ALTER" in r.error


@pytest.mark.parametrize(
    ("before", "alter", "value"),
    [
        ("int", "bigint", "7"),
        ("varchar(5)", "text", "ab "),
        ("numeric(6, 2)", "numeric(9, 4)", "1.50"),
    ],
)
def test_a_column_type_changed_mid_window_to_one_of_the_same_text_is_read(
    pg: PgDb,  # noqa: F811
    cap: Any,
    before: str,
    alter: str,
    value: str,
) -> None:
    pg.sql(f"CREATE TABLE {{s}}.tz (id int PRIMARY KEY, v {before})")
    c = cap(["tz"])
    c.run()
    pg.sql(
        f"INSERT INTO {{s}}.tz VALUES (1, '{value}')",
        f"ALTER TABLE {{s}}.tz ALTER COLUMN v TYPE {alter}",
        f"INSERT INTO {{s}}.tz VALUES (2, '{value}')",
    )
    got = c.run().drop_columns(["_op", "_ts", "_pos"])
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["tz"]}, Context(where="r")
    )
    _, want = read_all(batch)
    assert got.schema == want.schema
    assert got.to_pylist() == want.sort_by("id").to_pylist()


def test_a_table_added_to_the_job_is_an_error(pg: PgDb, cap: Any) -> None:  # noqa: F811
    """A table added to a running capture joins the publication at that run: its changes in the
    window before were not published, so they would be missing from it without a word."""
    pg.sql("CREATE TABLE {s}.ta (id int PRIMARY KEY)", "CREATE TABLE {s}.tb (id int PRIMARY KEY)")
    c = cap(["ta"])
    c.run()
    pg.sql("INSERT INTO {s}.ta VALUES (1)", "INSERT INTO {s}.tb VALUES (2)")
    c.params["table"] = ["ta", "tb"]
    r = c.run_report()  # tb's insert was not published (tb joined the publication now)
    assert r.status == "failed" and "table tb is new to this capture" in r.error
    assert "snapshot: true" in r.error


def test_a_table_left_out_of_the_job_and_read_again_is_an_error(pg: PgDb, cap: Any) -> None:  # noqa: F811
    """Its changes while the job left it out were never given: read again, it is new."""
    pg.sql("CREATE TABLE {s}.ta (id int PRIMARY KEY)", "CREATE TABLE {s}.tb (id int PRIMARY KEY)")
    c = cap(["ta", "tb"])
    c.run()
    c.params["table"] = ["ta"]
    pg.sql("INSERT INTO {s}.tb VALUES (1)")
    assert c.run().num_rows == 0
    c.params["table"] = ["ta", "tb"]
    r = c.run_report()
    assert r.status == "failed" and "table tb is new to this capture" in r.error


@pytest.mark.parametrize("identity", ["DEFAULT", "FULL"])
def test_an_unchanged_toasted_value_is_kept_or_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    identity: str,
) -> None:
    """An update that leaves a large (TOASTed) value unchanged logs it as 'unchanged', without
    the value: with REPLICA IDENTITY FULL the old row carries it; without, an error naming the
    table and column. Never a NULL in its place."""
    pg.sql(
        "CREATE TABLE {s}.tst (id int PRIMARY KEY, n int, big text)",
        "ALTER TABLE {s}.tst ALTER COLUMN big SET STORAGE EXTERNAL",
        f"ALTER TABLE {{s}}.tst REPLICA IDENTITY {identity}",
    )
    c = cap(["tst"], beforeImage=True)
    c.run()
    big = "x" * 9000
    pg.sql(
        f"INSERT INTO {{s}}.tst VALUES (1, 1, '{big}'), (2, 2, '{big}')",
        "UPDATE {s}.tst SET n = 10 WHERE id = 1",
        "DELETE FROM {s}.tst WHERE id = 2",
    )
    if identity == "DEFAULT":
        r = c.run_report()
        assert r.status == "failed" and "column big" in r.error
        assert "REPLICA IDENTITY FULL" in r.error
        return
    t = c.run()
    assert rows(t, "_op", "id", "n", "big", "before_n", "before_big") == [
        ("c", 1, 1, big, None, None),
        ("c", 2, 2, big, None, None),
        ("u", 1, 10, big, 1, big),
        ("d", 2, 2, big, 2, big),
    ]


def test_saved_positions_past_the_servers_log_end_are_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    """Saved positions past the log's end (the server restored from a backup, or a standby
    behind it promoted): the changes logged from here up to them would be skipped without a
    word. An error naming both positions."""
    from tidesync.state import POSITIONS

    pg.sql("CREATE TABLE {s}.le (id int PRIMARY KEY)")
    c = cap(["le"])
    c.run()
    pg.sql("INSERT INTO {s}.le VALUES (1)")
    c.run()
    store, entry = _saved(c)
    v = entry.value
    h = v["positions"]["changes"]
    far = h["spans"][-1][3] + (1 << 32)  # as a server whose log ends before the saved position
    h["spans"][-1][3] = far
    assert store.compare_and_set(POSITIONS, entry.key, entry.version, v) is not None
    pg.sql("INSERT INTO {s}.le VALUES (2)")
    r = c.run_report()
    assert r.status == "failed" and "before this capture's saved position" in r.error
    assert "restored" in r.error


@pytest.mark.parametrize(
    "gone", ["ALTER TABLE {s}.pd DETACH PARTITION {s}.pd_a", "DROP TABLE {s}.pd_a"]
)
def test_a_partition_detached_or_dropped_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    gone: str,
) -> None:
    """A partition's rows leave the table without a delete of each in the log, and its changes
    before are under its name: an error naming it, never its changes lost without a word."""
    pg.sql(
        "CREATE TABLE {s}.pd (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.pd_a PARTITION OF {s}.pd FOR VALUES FROM (0) TO (10)",
        "CREATE TABLE {s}.pd_b PARTITION OF {s}.pd FOR VALUES FROM (10) TO (20)",
    )
    c = cap(["pd"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.pd VALUES (1, 1), (2, 15)",
        "CREATE TABLE {s}.pd_c PARTITION OF {s}.pd FOR VALUES FROM (20) TO (30)",
        "INSERT INTO {s}.pd VALUES (3, 25)",
    )
    assert rows(c.run(), "_op", "id", "k") == [("c", 1, 1), ("c", 2, 15), ("c", 3, 25)]
    pg.sql("INSERT INTO {s}.pd VALUES (4, 2)", gone)
    r = c.run_report()
    assert r.status == "failed" and "table pd: its partition" in r.error
    assert f"{pg.schema}.pd_a" in r.error and "snapshot: true" in r.error


def test_a_partition_created_while_the_run_waits_is_read(
    pg: PgDb,  # noqa: F811
    cap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partition created after the run planned (while it waited for its window's end, say:
    new partitions are made at midnight) logs its changes under a name the plan did not know:
    they are the table's, not left out."""
    from tidesync.connectors.postgresql.cdc import Reader as CdcReader

    pg.sql(
        "CREATE TABLE {s}.pn (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.pn_a PARTITION OF {s}.pn FOR VALUES FROM (0) TO (10)",
    )
    c = cap(["pn"])
    c.run()
    log_end = CdcReader._log_end

    def meanwhile(self: Any) -> Any:  # the run planned; now, before it reads the log
        pg.sql(
            "INSERT INTO {s}.pn VALUES (1, 1)",
            "CREATE TABLE {s}.pn_b PARTITION OF {s}.pn FOR VALUES FROM (10) TO (20)",
            "INSERT INTO {s}.pn VALUES (2, 15)",
        )
        monkeypatch.setattr(CdcReader, "_log_end", log_end)
        return log_end(self)

    monkeypatch.setattr(CdcReader, "_log_end", meanwhile)
    assert rows(c.run(), "_op", "id", "k") == [("c", 1, 1), ("c", 2, 15)]


def test_a_column_added_while_the_run_waits_is_an_error_its_rerun_reads(
    pg: PgDb,  # noqa: F811
    cap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run's columns are read when it plans: a column added after (while it waited for its
    window's end) has values the run has no column for. An error saying to run again (not to
    start a new capture), and the rerun gives them."""
    from tidesync.connectors.postgresql.cdc import Reader as CdcReader

    pg.sql("CREATE TABLE {s}.ac (id int PRIMARY KEY, a int)")
    c = cap(["ac"])
    c.run()
    log_end = CdcReader._log_end

    def meanwhile(self: Any) -> Any:  # the run planned; now, before it reads the log
        pg.sql(
            "INSERT INTO {s}.ac VALUES (1, 1)",
            "ALTER TABLE {s}.ac ADD COLUMN b int",
            "INSERT INTO {s}.ac VALUES (2, 2, 2)",
        )
        monkeypatch.setattr(CdcReader, "_log_end", log_end)
        return log_end(self)

    monkeypatch.setattr(CdcReader, "_log_end", meanwhile)
    r = c.run_report()
    assert r.status == "failed" and "table ac: column b" in r.error and "run it again" in r.error
    assert rows(c.run(), "_op", "id", "a", "b") == [("c", 1, 1, None), ("c", 2, 2, 2)]


def test_a_primary_key_changed_mid_window_is_an_error(pg: PgDb, cap: Any) -> None:  # noqa: F811
    """Deletes logged before a new primary key carry the old key's columns only: read under the
    new key they would be deletes of a NULL key (a merged target keeps the row)."""
    pg.sql("CREATE TABLE {s}.pk (id int PRIMARY KEY, code int NOT NULL, v text)")
    c = cap(["pk"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.pk VALUES (1, 10, 'a'), (2, 20, 'b')",
        "DELETE FROM {s}.pk WHERE id = 1",
        "ALTER TABLE {s}.pk DROP CONSTRAINT pk_pkey",
        "ALTER TABLE {s}.pk ADD PRIMARY KEY (code)",
    )
    r = c.run_report()
    assert r.status == "failed" and "table pk" in r.error and "primary key now is (code)" in r.error


def test_a_publication_with_a_row_filter_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
) -> None:
    """A row filter (PostgreSQL 15+) leaves some rows' changes out of the log (and turns updates
    into inserts or deletes as rows enter or leave it): an error naming the filter."""
    if pg.con.info.server_version < 150000:
        pytest.skip("row filters are PostgreSQL 15+")
    pg.sql(
        "CREATE TABLE {s}.rf (id int PRIMARY KEY, v int)",
        f"CREATE PUBLICATION {publication} FOR TABLE {{s}}.rf WHERE (v > 0)",
    )
    r = cap(["rf"], publication=publication).run_report()
    assert r.status == "failed" and publication in r.error and "table rf" in r.error
    assert "row filter" in r.error and "(v > 0)" in r.error


def test_a_partition_captured_through_a_publication_via_its_root(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
) -> None:
    """A publication that publishes via the partition root logs a partition's changes under the
    root's name: capturing the partition through it is an error, not its changes left out."""
    pg.sql(
        "CREATE TABLE {s}.vr (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.vr_a PARTITION OF {s}.vr FOR VALUES FROM (0) TO (10)",
        f"CREATE PUBLICATION {publication} FOR TABLE {{s}}.vr "
        "WITH (publish_via_partition_root = true)",
    )
    c = cap(["vr_a"], publication=publication)
    for i in range(2):  # the partition not a member; then a member too (still logged as vr's)
        if i:
            pg.sql(f"ALTER PUBLICATION {publication} ADD TABLE {{s}}.vr_a")
        r = c.run_report()
        assert r.status == "failed" and "table vr_a" in r.error
        assert f"{pg.schema}.vr's" in r.error and "publish_via_partition_root" in r.error
    pg.sql(f"ALTER PUBLICATION {publication} SET (publish_via_partition_root = false)")
    c.run()
    pg.sql("INSERT INTO {s}.vr VALUES (1, 1)")
    assert rows(c.run(), "_op", "id") == [("c", 1)]


def test_a_partition_whose_publication_published_via_its_root_mid_window(
    pg: PgDb,  # noqa: F811
    cap: Any,
    publication: str,
) -> None:
    pg.sql(
        "CREATE TABLE {s}.vm (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.vm_a PARTITION OF {s}.vm FOR VALUES FROM (0) TO (10)",
        f"CREATE PUBLICATION {publication} FOR TABLE {{s}}.vm",
    )
    c = cap(["vm_a"], publication=publication)
    c.run()
    pg.sql(
        "INSERT INTO {s}.vm VALUES (1, 1)",
        f"ALTER PUBLICATION {publication} SET (publish_via_partition_root = true)",
        "INSERT INTO {s}.vm VALUES (2, 2)",
        f"ALTER PUBLICATION {publication} SET (publish_via_partition_root = false)",
    )
    r = c.run_report()
    assert r.status == "failed" and "table vm_a" in r.error
    assert f"{pg.schema}.vm" in r.error and "publish_via_partition_root" in r.error


def test_a_captured_table_renamed_while_the_run_waits_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Renamed after the run planned, a table's changes come under its new name: an error, not
    those changes left out (the next run would fail to find the table, after the loss)."""
    from tidesync.connectors.postgresql.cdc import Reader as CdcReader

    pg.sql("CREATE TABLE {s}.rn (id int PRIMARY KEY)")
    c = cap(["rn"])
    c.run()
    log_end = CdcReader._log_end

    def meanwhile(self: Any) -> Any:  # the run planned; now, before it reads the log
        pg.sql(
            "INSERT INTO {s}.rn VALUES (1)",
            "ALTER TABLE {s}.rn RENAME TO rn2",
            "INSERT INTO {s}.rn2 VALUES (2)",
        )
        monkeypatch.setattr(CdcReader, "_log_end", log_end)
        return log_end(self)

    monkeypatch.setattr(CdcReader, "_log_end", meanwhile)
    r = c.run_report()
    assert r.status == "failed" and "table rn was renamed to" in r.error


def test_a_session_setting_of_the_text_forms_does_not_change_the_values(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    """The log's values are text in the peek's session; a job's session that sets the text forms
    (bytea_output, extra_float_digits, DateStyle) must not change what they read as: the batch
    reader reads them in binary, unmoved by those settings. An interval is the server's text in
    both, in the job's IntervalStyle."""
    pg.sql(
        "CREATE TABLE {s}.ss (id int PRIMARY KEY, f8 double precision, by bytea, d date, "
        "iv interval)"
    )
    session = [
        "SET bytea_output = 'escape'",
        "SET extra_float_digits = 0",
        "SET DateStyle = 'SQL, DMY'",
        "SET IntervalStyle = 'iso_8601'",
    ]
    c = cap(["ss"], session=session)
    c.run()
    pg.sql("INSERT INTO {s}.ss VALUES (1, 3.141592653589793, '\\x00ff41', '2016-11-14', '1 day')")
    got = c.run().drop_columns(["_op", "_ts", "_pos"])
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["ss"], "session": session},
        Context(where="r"),
    )
    _, want = read_all(batch)
    assert got.to_pylist() == want.to_pylist()
    assert got.column("by").to_pylist() == [b"\x00\xffA"]
    assert got.column("iv").to_pylist() == ["P1D"]


def test_a_range_of_timestamptz_is_in_the_jobs_time_zone_as_in_the_batch_reader(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    """A range's text holds its bounds in the session's time zone: the job's, as the batch
    reader casts it (not UTC, the zone the log is read in)."""
    pg.sql("CREATE TABLE {s}.rg (id int PRIMARY KEY, r tstzrange, a timestamptz[])")
    c = cap(["rg"])
    c.setting = {"timezone": "Asia/Shanghai"}
    c.run()
    pg.sql(
        "INSERT INTO {s}.rg VALUES (1, '[2020-01-01 00:00:00+00, 2020-01-02 00:00:00+00)', "
        "'{2020-01-01 00:00:00+00}')"
    )
    got = c.run().drop_columns(["_op", "_ts", "_pos"])
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["rg"]},
        Context(where="r", timezone="Asia/Shanghai"),
    )
    _, want = read_all(batch)
    assert got.to_pylist() == want.to_pylist()
    assert got.column("r").to_pylist() == ['["2020-01-01 08:00:00+08","2020-01-02 08:00:00+08")']


def test_float_arrays_ranges_and_composites_are_the_batch_readers(
    pg: PgDb,  # noqa: F811
    cap: Any,
) -> None:
    """A float array is a list of floats (the capture failed on it); a multirange and a
    composite with a timestamptz hold it in the job's time zone, as the batch reader does."""
    pg.sql(
        "CREATE TYPE {s}.pair AS (t timestamptz, n int)",
        "CREATE TABLE {s}.fa (id int PRIMARY KEY, f float8[], r4 real[], c {s}.pair, "
        "mr tstzmultirange)",
    )
    c = cap(["fa"])
    c.setting = {"timezone": "Asia/Shanghai"}
    c.run()
    pg.sql(
        "INSERT INTO {s}.fa VALUES (1, '{1.5,NaN,3.141592653589793,NULL}', '{1.1}', "
        "ROW('2020-01-01 00:00:00+00', 1), '{[2020-01-01 00:00:00+00, 2020-01-02 00:00:00+00)}'), "
        "(2, '{}', '[0:1]={-Infinity,2}', NULL, NULL), (3, NULL, NULL, NULL, NULL)"
    )
    got = c.run().drop_columns(["_op", "_ts", "_pos"])
    batch = TableReader(
        {"jdbcUrl": pg.jdbc, "username": "postgres", "table": ["fa"]},
        Context(where="r", timezone="Asia/Shanghai"),
    )
    _, want = read_all(batch)
    assert got.schema == want.schema
    # by repr: a float NaN equals no NaN
    assert [repr(r) for r in got.to_pylist()] == [repr(r) for r in want.sort_by("id").to_pylist()]
    assert got.column("c").to_pylist()[0] == '("2020-01-01 08:00:00+08",1)'
    pg.sql("INSERT INTO {s}.fa (id, f) VALUES (4, '{{1,2},{3,4}}')")
    r = c.run_report()
    assert r.status == "failed" and "column f: a multidimensional array" in r.error


@pytest.mark.parametrize(
    ("before", "value", "after", "rewrites"),
    [
        ("numeric(10, 4)", "1.2345", "numeric(10, 2)", True),
        ("numeric", "1.23456", "numeric(9, 4)", True),
        ("timestamp(6)", "2020-01-01 10:00:00.654321", "timestamp(0)", True),
        ("varchar(10)", "abc   ", "varchar(3)", True),  # its excess spaces are cut
        ("int", "7", "text", True),
        ("varchar(10)", "abc", "varchar(20)", False),
        ("varchar(10)", "abc", "text", False),
        ("int", "7", "bigint", False),
        ("numeric(10, 2)", "1.25", "numeric(12, 4)", False),
        ("timestamptz(3)", "2020-01-01 10:00:00.5+00", "timestamptz", False),
    ],
)
def test_an_alter_that_rewrites_stored_values_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    before: str,
    value: str,
    after: str,
    rewrites: bool,
) -> None:
    """An ALTER COLUMN ... TYPE that rounds or cuts the values a table holds rewrites its rows
    without a change of each in the log: the target, which has the old values, would silently
    diverge. An error saying a new snapshot is needed, whether or not the table has rows logged
    in the run; a change that keeps every value reads on."""
    pg.sql(f"CREATE TABLE {{s}}.rw (id int PRIMARY KEY, v {before})")
    c = cap(["rw"])
    c.run()
    pg.sql(f"INSERT INTO {{s}}.rw VALUES (1, '{value}')")
    assert c.run().num_rows == 1
    pg.sql(f"ALTER TABLE {{s}}.rw ALTER COLUMN v TYPE {after}")
    r = c.run_report()
    if rewrites:
        assert r.status == "failed", r.error
        assert "table rw, column v: its type changed from" in r.error
        assert "snapshot: true" in r.error
        assert c.run_report().status == "failed"  # and so on, until a new capture
    else:
        assert r.status == "succeeded", r.error
        pg.sql("INSERT INTO {s}.rw (id) VALUES (2)")
        assert rows(c.run(), "_op", "id") == [("c", 2)]


def test_an_alter_that_rewrites_stored_values_while_the_run_reads_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ALTER after the run planned (while it waited for its window's end): the run's end
    sees it, rather than a run that says it took the window while the table holds other values."""
    from tidesync.connectors.postgresql.cdc import Reader as CdcReader

    pg.sql("CREATE TABLE {s}.rm (id int PRIMARY KEY, v numeric(10, 4))")
    c = cap(["rm"])
    c.run()
    pg.sql("INSERT INTO {s}.rm VALUES (1, 1.2345)")
    changes = CdcReader._changes

    def meanwhile(self: Any, *a: Any) -> Any:  # the run planned; now, before it reads the log
        pg.sql("ALTER TABLE {s}.rm ALTER COLUMN v TYPE numeric(10, 2)")
        return (yield from changes(self, *a))

    monkeypatch.setattr(CdcReader, "_changes", meanwhile)
    r = c.run_report()
    assert r.status == "failed" and "while this run read the log" in r.error
    assert not c.folder(c.runs).exists() or c.read(c.folder(c.runs)).num_rows == 0


def test_a_table_attached_as_a_partition_with_rows_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ATTACH PARTITION of a table that holds rows makes them the captured table's without a
    change of each in the log: an error naming the partition, whether it is attached between
    runs or while a run reads (its changes then name it); one attached empty, or created as a
    partition and filled, is read on."""
    from tidesync.connectors.postgresql.cdc import Reader as CdcReader

    pg.sql(
        "CREATE TABLE {s}.pt (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.pt_a PARTITION OF {s}.pt FOR VALUES FROM (0) TO (10)",
        "CREATE TABLE {s}.pt_b (id int, k int, PRIMARY KEY (id, k))",
        "INSERT INTO {s}.pt_b VALUES (5, 15)",
        "CREATE TABLE {s}.pt_e (id int, k int, PRIMARY KEY (id, k))",
        "CREATE TABLE {s}.pt_s (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE {s}.pt_s1 PARTITION OF {s}.pt_s FOR VALUES FROM (40) TO (50)",
        "INSERT INTO {s}.pt_s VALUES (7, 45)",
    )
    c = cap(["pt"])
    c.run()
    pg.sql(
        "INSERT INTO {s}.pt VALUES (1, 1)",
        "ALTER TABLE {s}.pt ATTACH PARTITION {s}.pt_e FOR VALUES FROM (20) TO (30)",
        "INSERT INTO {s}.pt VALUES (2, 25)",
        "CREATE TABLE {s}.pt_c PARTITION OF {s}.pt FOR VALUES FROM (30) TO (40)",
        "INSERT INTO {s}.pt VALUES (3, 35)",
    )
    assert rows(c.run(), "_op", "id", "k") == [("c", 1, 1), ("c", 2, 25), ("c", 3, 35)]
    assert rows(c.run(), "id") == []  # the partitions new since the last run hold no old rows
    pg.sql(
        "ALTER TABLE {s}.pt ATTACH PARTITION {s}.pt_b FOR VALUES FROM (10) TO (20)",
        "INSERT INTO {s}.pt VALUES (4, 2)",
    )
    r = c.run_report()
    assert r.status == "failed" and f"its partition {pg.schema}.pt_b" in r.error
    assert "ATTACH PARTITION" in r.error and "snapshot: true" in r.error
    pg.sql("ALTER TABLE {s}.pt DETACH PARTITION {s}.pt_b")  # (and so it stays, until then)
    log_end = CdcReader._log_end
    calls: list[int] = []

    def meanwhile(self: Any) -> Any:  # the run planned (its 1st call); now, before its window
        calls.append(1)
        if len(calls) == 2:
            pg.sql(  # a partitioned table whose partition holds a row
                "ALTER TABLE {s}.pt ATTACH PARTITION {s}.pt_s FOR VALUES FROM (40) TO (50)",
                "UPDATE {s}.pt SET id = 8 WHERE id = 7",
            )
        return log_end(self)

    c2 = cap(["pt"])
    c2.run()
    monkeypatch.setattr(CdcReader, "_log_end", meanwhile)
    pg.sql("INSERT INTO {s}.pt_s1 VALUES (9, 49)")  # (not yet a partition of pt)
    r = c2.run_report()
    assert r.status == "failed" and f"its partition {pg.schema}.pt_s1" in r.error


@pytest.mark.parametrize(
    ("add", "filled"),
    [
        ("b int DEFAULT 5", True),  # every row has 5 (a "missing" value, no rewrite)
        ("b timestamptz DEFAULT clock_timestamp()", True),  # the table rewritten
        ("b int GENERATED ALWAYS AS IDENTITY", True),  # numbered, the table rewritten
        ("b int", False),
    ],
)
def test_a_column_added_with_a_value_in_every_row_is_an_error(
    pg: PgDb,  # noqa: F811
    cap: Any,
    add: str,
    filled: bool,
) -> None:
    """A column added with a default gives every row a value without a change of each in the
    log: the rows already taken would lack it (NULL in a merged target). An error saying a new
    snapshot is needed; a column added without one (NULL in every row) appears."""
    pg.sql("CREATE TABLE {s}.ad (id int PRIMARY KEY, a int)")
    c = cap(["ad"])
    c.run()
    pg.sql("INSERT INTO {s}.ad VALUES (1, 1)")
    assert c.run().num_rows == 1
    pg.sql(f"ALTER TABLE {{s}}.ad ADD COLUMN {add}", "INSERT INTO {s}.ad (id, a) VALUES (2, 2)")
    r = c.run_report()
    if filled:
        assert r.status == "failed" and "table ad, column b: added" in r.error
        assert "snapshot: true" in r.error
    else:
        assert r.status == "succeeded", r.error
        assert rows(c.read(c.folder(c.runs)), "_op", "id", "b") == [("c", 2, None)]


def test_a_key_moved_under_a_deferrable_primary_key_is_an_error(pg: PgDb, cap: Any) -> None:  # noqa: F811
    """A DEFERRABLE primary key (logged whole with REPLICA IDENTITY FULL) lets one statement
    give two rows one key for a moment: UPDATE ... SET id = id + 1 logs row 1 as moved to 2
    before row 2 moved to 3, and the delete of the old key 2 would delete the row that took it
    (a merged target keeps 3 alone). An error naming the table; other updates read on."""
    pg.sql(
        "CREATE TABLE {s}.dk (id int PRIMARY KEY DEFERRABLE, v text)",
        "ALTER TABLE {s}.dk REPLICA IDENTITY FULL",
    )
    c = cap(["dk"])
    c.run()
    pg.sql("INSERT INTO {s}.dk VALUES (1, 'a'), (2, 'b')", "UPDATE {s}.dk SET v = 'c'")
    assert rows(c.run(), "_op", "id", "v") == [
        ("c", 1, "a"), ("c", 2, "b"), ("u", 1, "c"), ("u", 2, "c")
    ]  # fmt: skip
    pg.sql("UPDATE {s}.dk SET id = id + 1")
    r = c.run_report()
    assert r.status == "failed" and "table dk" in r.error and "DEFERRABLE" in r.error


@pytest.mark.parametrize(
    ("alter", "renames"),
    [
        ("ALTER TYPE {s}.mood RENAME VALUE 'sad' TO 'blue'", True),
        ("ALTER TYPE {s}.mood ADD VALUE 'glad' BEFORE 'ok'", False),
    ],
)
def test_an_enum_value_renamed_is_an_error(pg: PgDb, cap: Any, alter: str, renames: bool) -> None:  # noqa: F811
    """ALTER TYPE ... RENAME VALUE changes what every row holding the value reads as, without a
    change of each in the log: an error saying a new snapshot is needed, as for a column whose
    type rewrote its values; a value added changes no row and reads on."""
    pg.sql(
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'ok')",
        "CREATE TABLE {s}.em (id int PRIMARY KEY, m {s}.mood, ms {s}.mood[])",
    )
    c = cap(["em"])
    c.run()
    pg.sql("INSERT INTO {s}.em VALUES (1, 'sad', '{sad}')")
    assert c.run().num_rows == 1
    pg.sql(alter)
    r = c.run_report()
    if renames:
        assert r.status == "failed" and "table em, column m: its type changed" in r.error
    else:
        assert r.status == "succeeded", r.error
        # the type named with its schema where the job's session leaves it off the path
        c.params["session"] = ["SET search_path = public"]
        c.params["table"] = [f"{pg.schema}.em"]
        r = c.run_report()
        assert r.status == "succeeded", r.error


def test_a_column_newly_read_by_the_job_is_an_error(pg: PgDb, cap: Any) -> None:  # noqa: F811
    """A column the job's column list reads now and did not before: its values in the rows
    already taken were never given (a merged target would hold NULL). An error naming it, as
    a table added to the job is; a column left out reads on."""
    pg.sql("CREATE TABLE {s}.cl (id int PRIMARY KEY, a int, b int)")
    c = cap(["cl"], column=["id", "a"])
    c.run()
    pg.sql("INSERT INTO {s}.cl VALUES (1, 1, 1)")
    assert rows(c.run(), "_op", "id", "a") == [("c", 1, 1)]
    c.params["column"] = ["id", "a", "b"]
    r = c.run_report()
    assert r.status == "failed" and "table cl, column b" in r.error and "column list" in r.error
    c.params["column"] = ["id"]
    pg.sql("INSERT INTO {s}.cl VALUES (2, 2, 2)")
    assert rows(c.run(), "_op", "id") == [("c", 2)]
