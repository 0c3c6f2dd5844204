"""mysqlcdc against the real MariaDB: every change once, in windows, with the batch reader's types;
checkpoints that survive a crash; reruns that give the same rows."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.integration._cdc import CRASH, Capture, rows, run_imports_pandas, state_store
from tests.integration._servers_mysql import MyDb, mysql_db, mysql_server  # noqa: F401
from tests.integration.test_mysql import TYPES
from tidesync.connectors.base import Context
from tidesync.connectors.mysql import Reader as TableReader
from tidesync.connectors.mysql.binlog import Gtid
from tidesync.errors import ConfigError

pytestmark = pytest.mark.integration


def cap(db: MyDb, root: Path, tables: list[str], **params: Any) -> Capture:
    p = {"jdbcUrl": db.jdbc, "username": db.server.user, "password": db.server.password,
         "table": tables, **params}  # fmt: skip
    folder = root / f"cap_{secrets.token_hex(4)}"
    folder.mkdir()
    return Capture(folder, "mysqlcdc", p)


def now_ms(db: MyDb) -> int:
    return int(db.query("SELECT ROUND(UNIX_TIMESTAMP(SYSDATE(6)) * 1000)")[0][0])


def next_second(db: MyDb) -> int:
    """The next whole second of the server's clock, once it has passed (ms)."""
    s = (now_ms(db) // 1000 + 1) * 1000
    while now_ms(db) < s:
        time.sleep(0.05)
    return s


def test_inserts_updates_deletes_key_changes_and_nulls(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE users (uid INT PRIMARY KEY, uname VARCHAR(50), deptno INT)")
    c = cap(mysql_db, tmp_path, ["users"])
    assert c.run().num_rows == 0  # notes where the log ends: nothing yet
    mysql_db.execute(
        "INSERT INTO users VALUES (1, 'LiLei', 100), (2, 'HanMM', NULL), (5, 'Lily', 104)",
        "UPDATE users SET deptno = 101 WHERE uid = 2",
        "UPDATE users SET uname = NULL WHERE uid = 1",
        "UPDATE users SET uid = 7 WHERE uid = 5",
        "DELETE FROM users WHERE uid = 7",
    )
    t = c.run()
    assert t.schema.names == ["uid", "uname", "deptno", "_op", "_ts", "_pos"]
    assert rows(t, "_op", "uid", "uname", "deptno") == [
        ("c", 1, "LiLei", 100),
        ("c", 2, "HanMM", None),
        ("c", 5, "Lily", 104),
        ("u", 2, "HanMM", 101),
        ("u", 1, None, 100),
        ("d", 5, "Lily", 104),  # the key changed: the old key goes (the whole old row) ...
        ("c", 7, "Lily", 104),  # ... and the row arrives under the new one
        ("d", 7, "Lily", 104),  # a delete carries the whole row (binlog_row_image FULL)
    ]
    assert t.schema.field("_ts").type == pa.timestamp("us", tz="UTC")
    assert all(p.startswith("mysql-bin.") for p in t.column("_pos").to_pylist())
    assert c.run().num_rows == 0


def test_columns_have_the_batch_readers_types_and_values(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    kept = [t for t in TYPES if "LONGBLOB" not in t[0]]
    cols = ", ".join(f"c{i} {ddl}" for i, (ddl, *_rest) in enumerate(kept))
    mysql_db.execute(f"CREATE TABLE typed (id INT PRIMARY KEY, {cols})")
    c = cap(mysql_db, tmp_path, ["typed"])
    c.run()
    lits = ", ".join(lit for _ddl, lit, *_rest in kept)
    con = mysql_db.connect()
    with con.cursor() as cur:
        cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
        cur.execute(f"INSERT INTO typed VALUES (1, {lits})")
        cur.execute("INSERT INTO typed (id) VALUES (2)")
    con.close()
    got = c.run()
    batch = TableReader(
        {
            "jdbcUrl": mysql_db.jdbc,
            "username": mysql_db.server.user,
            "password": mysql_db.server.password,
            "table": ["typed"],
        },  # fmt: skip
        Context(where="r"),
    )
    from tests.integration._servers_pg import read_all

    _, want = read_all(batch)
    data = got.drop_columns(["_op", "_ts", "_pos"])
    assert data.schema == want.schema
    for a, b in zip(data.to_pylist(), want.sort_by("id").to_pylist(), strict=True):
        assert {k: v for k, v in a.items() if b[k] != v} == {}


def test_windows_tile_without_loss_or_duplicate_and_reruns_repeat(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE ev (id INT PRIMARY KEY, note VARCHAR(10))")
    c = cap(mysql_db, tmp_path, ["ev"])
    t0 = next_second(mysql_db)
    assert c.run((t0 - 2000, t0)).num_rows == 0
    mysql_db.execute("INSERT INTO ev VALUES (1, 'w1')")
    con = mysql_db.connect()
    with con.cursor() as cur:  # begins in the first window, commits in the second
        cur.execute("BEGIN")
        cur.execute("INSERT INTO ev VALUES (2, 'spans')")
        b1 = next_second(mysql_db)
        cur.execute("INSERT INTO ev VALUES (3, 'spans')")
        cur.execute("COMMIT")
    con.close()
    mysql_db.execute("INSERT INTO ev VALUES (4, 'w2')")
    b2 = next_second(mysql_db)
    mysql_db.execute("UPDATE ev SET note = 'w3' WHERE id = 1")
    b3 = next_second(mysql_db)
    w1 = c.run((t0, b1))
    w2 = c.run((b1, b2))
    w3 = c.run((b2, b3))
    assert rows(w1, "_op", "id") == [("c", 1)]
    assert rows(w2, "_op", "id", "note") == [("c", 2, "spans"), ("c", 3, "spans"), ("c", 4, "w2")]
    assert rows(w3, "_op", "id", "note") == [("u", 1, "w3")]
    mysql_db.execute("INSERT INTO ev VALUES (5, 'later')")
    assert c.run((b1, b2)).equals(w2)
    assert c.run((t0, b3)).to_pylist() == w1.to_pylist() + w2.to_pylist() + w3.to_pylist()
    assert rows(c.run((b3, next_second(mysql_db))), "id") == [(5,)]


def test_a_gap_and_a_window_not_yet_over_are_errors(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE g (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["g"])
    t0 = now_ms(mysql_db)
    c.run((t0 - 1000, t0))
    r = c.run_report((t0 + 10, t0 + 20))
    assert r.status == "failed" and "leaves a gap" in r.error
    r = c.run_report((t0, t0 + 3_600_000), waitTimeout="1s")
    assert r.status == "failed" and "waitTimeout" in r.error


def test_two_tables_in_one_job_carry_the_table(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute(
        "CREATE TABLE a (id INT PRIMARY KEY, x VARCHAR(5))",
        "CREATE TABLE b (id INT PRIMARY KEY, y INT)",
    )
    c = cap(mysql_db, tmp_path, ["a", "b"])
    c.run()
    mysql_db.execute("INSERT INTO a VALUES (1, 'one')", "INSERT INTO b VALUES (1, 10)")
    mysql_db.execute("DELETE FROM a WHERE id = 1")
    t = c.run()
    assert t.schema.names == ["id", "x", "y", "_op", "_ts", "_pos", "_table"]
    assert rows(t, "_table", "_op", "id", "x", "y") == [
        ("a", "c", 1, "one", None),
        ("b", "c", 1, None, 10),
        ("a", "d", 1, "one", None),
    ]


def test_a_changed_table_without_column_names_in_the_log_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    row_metadata: Any,
) -> None:
    row_metadata("NO_LOG")
    mysql_db.execute("CREATE TABLE sc (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["sc"])
    c.run()
    mysql_db.execute("INSERT INTO sc VALUES (1)", "ALTER TABLE sc ADD COLUMN extra VARCHAR(5)")
    mysql_db.execute("INSERT INTO sc VALUES (2, 'new')")
    r = c.run_report()
    assert r.status == "failed"
    assert "table sc" in r.error and "binlog_row_metadata = FULL" in r.error


def test_a_purged_position_is_an_error_naming_the_fix(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE p (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["p"])
    c.run()
    # a position in a file the server no longer has (as after PURGE BINARY LOGS)
    from tidesync.state import POSITIONS

    store = state_store(c.root)
    [entry] = store.list(POSITIONS)
    v = entry.value
    v["positions"]["changes"]["lo"] = "mysql-bin.000000:4"
    v["positions"]["changes"]["spans"] = []
    assert store.compare_and_set(POSITIONS, entry.key, entry.version, v) is not None
    r = c.run_report()
    assert r.status == "failed"
    assert "purged" in r.error and "binlog_expire_logs_seconds" in r.error


def test_100000_changes_in_one_window(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE big (id INT PRIMARY KEY, v VARCHAR(20), n DECIMAL(10,2))")
    c = cap(mysql_db, tmp_path, ["big"])
    c.run()
    mysql_db.execute(
        "SET SESSION max_recursive_iterations = 200000",
        "INSERT INTO big WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
        "WHERE g < 100000) SELECT g, CONCAT('v', g), g / 100 FROM s",
    )
    t = c.run()
    assert t.num_rows == 100_000
    assert t.column("id").to_pylist() == list(range(1, 100_001))
    assert t.column("v")[99_999].as_py() == "v100000"


def _killed_after_publish(c: Capture, job: Path) -> None:
    """`tidesync run job` killed (SIGKILL) after its writer published, before its checkpoint."""
    p = subprocess.run(
        [sys.executable, "-c", CRASH, str(job)], cwd=c.root, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )  # fmt: skip
    assert p.returncode == -signal.SIGKILL, p.stderr


def test_a_crash_between_write_and_checkpoint_loses_and_duplicates_nothing(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE k (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["k"])
    c.out = c.root / "out"
    c.run()
    mysql_db.execute("INSERT INTO k VALUES (1), (2)")
    job = c.write_job(c.out, {})
    _killed_after_publish(c, job)
    assert rows(c.read(c.out), "id") == [(1,), (2,)]
    mysql_db.execute("INSERT INTO k VALUES (3)")
    c.run()
    assert rows(c.read(c.out), "id") == [(1,), (2,), (3,)]
    c.run()
    assert c.read(c.out).num_rows == 0


def test_cdc_check_names_what_the_server_lacks(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.testing import CliRunner

    from tidesync.cli import main

    mysql_db.execute("CREATE TABLE ck (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["ck"])
    c.write_job(c.root / "out", {})
    monkeypatch.chdir(c.root)
    r = CliRunner().invoke(main, ["cdc", "check", str(c.job)])
    assert r.exit_code == 0, r.output  # the test server logs ROW, FULL images, server_id 1
    assert "mysqlcdc" in r.output and ": ready" in r.output
    assert "binlog=mysql-bin." in r.output and "no run committed yet" in r.output
    r = CliRunner().invoke(main, ["cdc", "drop", str(c.job)])
    assert r.exit_code == 0 and "forgot the saved positions" in r.output, r.output


def test_before_image(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE bi (id INT PRIMARY KEY, v VARCHAR(5))")
    c = cap(mysql_db, tmp_path, ["bi"], beforeImage=True)
    c.run()
    mysql_db.execute("INSERT INTO bi VALUES (1, 'a')", "UPDATE bi SET v = 'b' WHERE id = 1")
    mysql_db.execute("DELETE FROM bi WHERE id = 1")
    t = c.run()
    assert t.schema.names[:4] == ["id", "v", "before_id", "before_v"]
    assert rows(t, "_op", "id", "v", "before_id", "before_v") == [
        ("c", 1, "a", None, None),
        ("u", 1, "b", 1, "a"),
        ("d", 1, "b", 1, "b"),
    ]


def _history(c: Capture) -> dict[str, Any]:
    from tidesync.state import POSITIONS

    [entry] = state_store(c.root).list(POSITIONS)
    return dict(entry.value["positions"]["changes"])


def test_gtid_positions_go_on_across_a_binlog_rotation(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE gt (id INT PRIMARY KEY, v VARCHAR(5))")
    c = cap(mysql_db, tmp_path, ["gt"])
    f = cap(mysql_db, tmp_path, ["gt"], position="file")
    c.run()
    f.run()
    mysql_db.execute("INSERT INTO gt VALUES (1, 'a')", "FLUSH BINARY LOGS")
    mysql_db.execute("INSERT INTO gt VALUES (2, 'b')", "UPDATE gt SET v = 'c' WHERE id = 1")
    (then,) = mysql_db.query("SELECT @@global.gtid_binlog_pos")[0]
    t = c.run()
    assert rows(t, "_op", "id", "v") == [("c", 1, "a"), ("c", 2, "b"), ("u", 1, "c")]
    assert len({p.split(":")[0] for p in t.column("_pos").to_pylist()}) == 2  # two files
    assert f.run().to_pylist() == t.to_pylist()  # file:offset positions read the same rows
    h = _history(c)
    assert h["lo"].startswith("gtid:") and h["spans"][-1][3].startswith("gtid:")
    assert not Gtid.parse(h["spans"][-1][3]).lacks(Gtid.parse(f"gtid:{then}"))
    assert _history(f)["spans"][-1][3].startswith("mysql-bin.")
    mysql_db.execute("FLUSH BINARY LOGS", "DELETE FROM gt WHERE id = 2")
    assert rows(c.run(), "_op", "id") == [("d", 2)]
    assert c.run().num_rows == 0


def test_a_gtid_the_server_has_not_logged_is_an_error(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE gf (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["gf"])
    c.run()
    from tidesync.state import POSITIONS

    store = state_store(c.root)
    [entry] = store.list(POSITIONS)
    v = entry.value
    domain = mysql_db.query("SELECT @@global.gtid_domain_id")[0][0]
    v["positions"]["changes"]["lo"] = f"gtid:{domain}-1-999999999"  # as after a failover to a
    v["positions"]["changes"]["spans"] = []  # replica that is behind
    assert store.compare_and_set(POSITIONS, entry.key, entry.version, v) is not None
    mysql_db.execute("INSERT INTO gf VALUES (1)")
    r = c.run_report()
    assert r.status == "failed"
    assert (
        f"{domain}-1-999999999" in r.error and "lacks changes the capture already read" in r.error
    )
    with pytest.raises(ConfigError, match=r"parameter\.position: must be gtid or file, got 'gtd'"):
        c.run_report(position="gtd")


@pytest.fixture
def row_metadata(mysql_db: MyDb) -> Any:  # noqa: F811
    """Sets @@global.binlog_row_metadata for a test (restored after it)."""
    (was,) = mysql_db.query("SELECT @@global.binlog_row_metadata")[0]

    def set_to(value: str) -> None:
        mysql_db.execute(f"SET GLOBAL binlog_row_metadata = {value}")

    yield set_to
    set_to(str(was))


def test_with_full_row_metadata_added_and_dropped_columns_are_matched_by_name(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    row_metadata: Any,
) -> None:
    row_metadata("FULL")
    mysql_db.execute("CREATE TABLE sf (id INT PRIMARY KEY, note VARCHAR(5), n INT)")
    c = cap(mysql_db, tmp_path, ["sf"])
    c.run()
    mysql_db.execute("INSERT INTO sf VALUES (1, 'one', 10)")
    mysql_db.execute("ALTER TABLE sf ADD COLUMN extra VARCHAR(5) AFTER id")
    mysql_db.execute("INSERT INTO sf VALUES (2, 'x', 'two', 20)")
    t = c.run()
    assert t.schema.names == ["id", "extra", "note", "n", "_op", "_ts", "_pos"]
    assert rows(t, "_op", "id", "extra", "note", "n") == [
        ("c", 1, None, "one", 10),  # logged before the column was there
        ("c", 2, "x", "two", 20),
    ]
    mysql_db.execute("INSERT INTO sf VALUES (3, 'y', 'three', 30)")
    mysql_db.execute("ALTER TABLE sf DROP COLUMN note")
    mysql_db.execute("UPDATE sf SET n = 31 WHERE id = 3")
    t = c.run()
    assert t.schema.names == ["id", "extra", "n", "_op", "_ts", "_pos"]
    assert rows(t, "_op", "id", "extra", "n") == [("c", 3, "y", 30), ("u", 3, "y", 31)]
    mysql_db.execute("INSERT INTO sf VALUES (4, 'z', 40)")
    mysql_db.execute("ALTER TABLE sf MODIFY COLUMN n VARCHAR(10)")
    r = c.run_report()
    assert r.status == "failed"
    assert "table sf, column n:" in r.error and "varchar" in r.error


def test_without_column_names_a_changed_column_is_an_error_naming_it(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    row_metadata: Any,
) -> None:
    row_metadata("MINIMAL")
    mysql_db.execute("CREATE TABLE sm (id INT PRIMARY KEY, a INT, b VARCHAR(5))")
    c = cap(mysql_db, tmp_path, ["sm"])
    c.run()
    mysql_db.execute("INSERT INTO sm VALUES (1, 10, 'x')")
    # same count and types as before: only the statement in the log tells
    mysql_db.execute("ALTER TABLE sm DROP COLUMN a", "ALTER TABLE sm ADD COLUMN c INT AFTER id")
    mysql_db.execute("INSERT INTO sm VALUES (2, 20, 'y')")
    r = c.run_report()
    assert r.status == "failed"
    assert "table sm, column a" in r.error and "binlog_row_metadata = FULL" in r.error
    c2 = cap(mysql_db, tmp_path, ["sm"])  # a capture that starts after the change reads on
    c2.run()
    mysql_db.execute("INSERT INTO sm VALUES (3, 30, 'z')", "ALTER TABLE sm ADD INDEX ix (c)")
    assert rows(c2.run(), "id", "c", "b") == [(3, 30, "z")]


def test_a_snapshot_gives_the_rows_as_r_then_each_later_change_once(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import threading

    kept = [t for t in TYPES if "LONGBLOB" not in t[0]]
    cols = ", ".join(f"c{i} {ddl}" for i, (ddl, *_rest) in enumerate(kept))
    mysql_db.execute(f"CREATE TABLE rs (id INT PRIMARY KEY, v VARCHAR(10), {cols})")
    lits = ", ".join(lit for _ddl, lit, *_rest in kept)
    con = mysql_db.connect()
    with con.cursor() as cur:
        cur.execute("SET SESSION sql_mode = '', time_zone = '+00:00'")
        cur.execute(f"INSERT INTO rs VALUES (1, 'v1', {lits})")
        cur.execute("INSERT INTO rs (id, v) VALUES (2, 'v2'), (3, 'v3')")
    con.close()
    batch = TableReader(
        {"jdbcUrl": mysql_db.jdbc, "username": mysql_db.server.user,
         "password": mysql_db.server.password, "table": ["rs"]},
        Context(where="r"),
    )  # fmt: skip
    from tests.integration._servers_pg import read_all

    _, want = read_all(batch)
    c = cap(mysql_db, tmp_path, ["rs"], snapshot=True)
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    monkeypatch.setenv("TIDESYNC_TEST_HOOKS", f"cdc.snapshot=hold:{hooks}")
    out: dict[str, Any] = {}
    run = threading.Thread(target=lambda: out.update(t=c.run_report()))
    run.start()
    deadline = time.monotonic() + 60
    while not (hooks / "cdc.snapshot.reached").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    mysql_db.execute(  # after the consistent point, before the table is read
        "UPDATE rs SET v = 'after3' WHERE id = 3",
        "DELETE FROM rs WHERE id = 1",
        "INSERT INTO rs (id, v) VALUES (5, 'after5')",
    )
    (hooks / "cdc.snapshot.go").touch()
    run.join()
    monkeypatch.delenv("TIDESYNC_TEST_HOOKS")
    assert out["t"].status == "succeeded", out["t"].error
    first = c.read(c.folder(c.runs))
    got = rows(first, "_op", "id", "v")
    assert got == [
        ("r", 1, "v1"),  # the rows as of the point
        ("r", 2, "v2"),
        ("r", 3, "v3"),
        ("u", 3, "after3"),  # then what was committed after it, once
        ("d", 1, "v1"),
        ("c", 5, "after5"),
    ]
    snap = first.filter(pa.compute.equal(first["_op"], "r")).drop_columns(["_op", "_ts", "_pos"])
    assert snap.schema == want.schema  # the batch reader's types, and its values
    assert snap.to_pylist() == want.sort_by("id").to_pylist()
    r_pos = set(first.filter(pa.compute.equal(first["_op"], "r"))["_pos"].to_pylist())
    assert len(r_pos) == 1 and r_pos.pop().startswith("mysql-bin.")
    assert _history(c)["lo"].startswith("gtid:")
    mysql_db.execute("UPDATE rs SET v = 'later' WHERE id = 2")
    assert rows(c.run(), "_op", "id", "v") == [("u", 2, "later")]  # no snapshot again


def test_a_snapshot_with_file_positions_and_two_tables(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute(
        "CREATE TABLE sa (id INT PRIMARY KEY, x VARCHAR(5))",
        "CREATE TABLE sb (id INT PRIMARY KEY, y INT)",
        "INSERT INTO sa VALUES (1, 'one'), (2, 'two')",
        "INSERT INTO sb VALUES (1, 10)",
    )
    c = cap(mysql_db, tmp_path, ["sa", "sb"], snapshot=True, position="file")
    t0 = next_second(mysql_db)
    mysql_db.execute("INSERT INTO sb VALUES (2, 20)")
    t1 = next_second(mysql_db)
    t = c.run((t0, t1))
    assert t.schema.names == ["id", "x", "y", "_op", "_ts", "_pos", "_table"]
    assert rows(t, "_table", "_op", "id", "x", "y") == [
        ("sa", "r", 1, "one", None),
        ("sa", "r", 2, "two", None),
        ("sb", "r", 1, None, 10),
        ("sb", "r", 2, None, 20),  # committed before the run: in the snapshot, not as a change
    ]
    assert _history(c)["lo"].startswith("mysql-bin.")
    mysql_db.execute("DELETE FROM sa WHERE id = 2")
    t2 = next_second(mysql_db)
    assert rows(c.run((t1, t2)), "_table", "_op", "id") == [("sa", "d", 2)]
    r = c.run_report((t0, t1))
    assert r.status == "failed" and "snapshot" in r.error and "cdc drop" in r.error


def test_compressed_binlog_events_are_read(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE cz (id INT PRIMARY KEY, v TEXT, n DECIMAL(8,2))")
    c = cap(mysql_db, tmp_path, ["cz"])
    c.run()
    (was,) = mysql_db.query("SELECT @@global.log_bin_compress")[0]
    mysql_db.execute("SET GLOBAL log_bin_compress = ON")  # events over 256 bytes are compressed
    try:
        mysql_db.execute(
            "INSERT INTO cz VALUES (1, REPEAT('a', 500), 1.5), (2, REPEAT('b', 600), NULL)",
            "UPDATE cz SET v = REPEAT('c', 700) WHERE id = 1",
            "DELETE FROM cz WHERE id = 2",
            "INSERT INTO cz VALUES (3, 'short', 3)",
        )
    finally:
        mysql_db.execute(f"SET GLOBAL log_bin_compress = {'ON' if int(was) else 'OFF'}")
    t = c.run()
    assert rows(t, "_op", "id", "v", "n") == [
        ("c", 1, "a" * 500, Decimal("1.50")),
        ("c", 2, "b" * 600, None),
        ("u", 1, "c" * 700, Decimal("1.50")),
        ("d", 2, "b" * 600, None),
        ("c", 3, "short", Decimal("3.00")),
    ]


def _window_then_alter(db: MyDb, root: Path, insert: str, *alter: str) -> tuple[Capture, Any]:
    """A capture of table sw, a window holding ``insert``, then (after it) the ``alter``."""
    c = cap(db, root, ["sw"])
    t0 = next_second(db)
    c.run((t0 - 2000, t0))
    db.execute(insert)
    b = next_second(db)
    db.execute(*alter)
    return c, (t0, b)


def test_without_column_names_a_change_after_the_window_before_the_run_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    row_metadata: Any,
) -> None:
    row_metadata("MINIMAL")
    mysql_db.execute("CREATE TABLE sw (id INT PRIMARY KEY, a INT, b VARCHAR(5))")
    # after the window, before it is read: the same column count and types
    c, w = _window_then_alter(mysql_db, tmp_path, "INSERT INTO sw VALUES (1, 10, 'x')",
                              "ALTER TABLE sw DROP COLUMN a",
                              "ALTER TABLE sw ADD COLUMN c INT AFTER id")  # fmt: skip
    r = c.run_report(w)
    assert r.status == "failed"
    assert "table sw, column a" in r.error and "binlog_row_metadata = FULL" in r.error
    row_metadata("FULL")  # rows logged with names from here on: matched by name
    c, w = _window_then_alter(mysql_db, tmp_path, "INSERT INTO sw VALUES (2, 20, 'y')",
                              "ALTER TABLE sw DROP COLUMN c",
                              "ALTER TABLE sw ADD COLUMN a INT AFTER id")  # fmt: skip
    assert rows(c.run(w), "id", "a", "b") == [(2, None, "y")]  # c's 20 is not a's


def test_a_first_run_with_a_snapshot_killed_before_its_checkpoint_is_a_first_run_again(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE ks (id INT PRIMARY KEY, v INT)", "INSERT INTO ks VALUES (1, 1)")
    c = cap(mysql_db, tmp_path, ["ks"], snapshot=True)
    c.out = c.root / "out"
    job = c.write_job(c.out, {})
    _killed_after_publish(c, job)
    assert rows(c.read(c.out), "_op", "id", "v") == [("r", 1, 1)]  # published, not checkpointed
    mysql_db.execute("UPDATE ks SET v = 2 WHERE id = 1", "INSERT INTO ks VALUES (3, 3)")
    c.run()  # no saved history: a first run again, with a new snapshot
    assert rows(c.read(c.out), "_op", "id", "v") == [("r", 1, 2), ("r", 3, 3)]
    mysql_db.execute("DELETE FROM ks WHERE id = 1")
    c.run()
    assert rows(c.read(c.out), "_op", "id") == [("d", 1)]


def _walk_row_by_row(
    buf: Any, first: Any, end: Any, tm: Any, images: int
) -> list[list[tuple[int, int, list[int], list[int], list[bool]]]]:
    """The rows of each row event, one value at a time: the plain reading of the format that
    :func:`binlog.walk` vectorizes (per image: event, row number, starts, sizes, NULLs)."""
    import numpy as np

    from tidesync.connectors.mysql import binlog as bl

    n = len(tm.types)
    nb = (n + 7) // 8
    out: list[list[tuple[int, int, list[int], list[int], list[bool]]]] = [[] for _ in range(images)]
    for e in range(len(first)):
        p, r = int(first[e]), 0
        while p < int(end[e]):
            for img in range(images):
                bits = int.from_bytes(bytes(buf[p : p + nb]), "little")
                nulls = [bool(bits >> j & 1) for j in range(n)]
                p += nb
                starts, sizes = [], []
                for j in range(n):
                    size = 0
                    if not nulls[j]:
                        at = np.array([p], np.int64)
                        size = int(bl._sizes(buf, at, tm.types[j], tm.meta[j])[0])
                    starts.append(p)
                    sizes.append(size)
                    p += size
                out[img].append((e, r, starts, sizes, nulls))
            r += 1
    return out


def test_the_row_walk_reads_every_row_as_the_format_says(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # many rows per event (the walk takes the r-th row of every event at once), NULLs in fixed
    # and variable columns in some steps and none in others, updates (two images), deletes
    from tidesync.connectors.mysql import binlog as bl

    calls: list[tuple[Any, ...]] = []
    walk = bl.walk

    def kept(buf: Any, first: Any, end: Any, tm: Any, images: int) -> Any:
        got = walk(buf, first, end, tm, images)
        calls.append((buf.copy(), first.copy(), end.copy(), tm, images, got))
        return got

    monkeypatch.setattr(bl, "walk", kept)
    mysql_db.execute(
        "CREATE TABLE walked (id INT PRIMARY KEY, v VARCHAR(300), n BIGINT, d DECIMAL(12, 2), "
        "t TEXT, ts DATETIME(3), b TINYINT, bits BIT(11))"
    )
    c = cap(mysql_db, tmp_path, ["walked"])
    c.run()
    mysql_db.execute(
        "SET SESSION max_recursive_iterations = 100000",
        "INSERT INTO walked WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s "
        "WHERE g < 3000) SELECT g, IF(g % 7 = 0, NULL, REPEAT('x', g % 290)), "
        "IF(g % 11 = 0, NULL, g * 1000003), g / 3, IF(g % 500 = 0, NULL, CONCAT('t', g)), "
        "'2020-01-01' + INTERVAL g SECOND, IF(g > 2900, NULL, g % 100), g % 2048 FROM s",
        "UPDATE walked SET v = NULL, n = n + 1 WHERE id % 13 = 0",
        "UPDATE walked SET v = 'back', d = NULL WHERE id % 17 = 0",
        "DELETE FROM walked WHERE id % 5 = 0",
    )
    got = c.run()
    # (rows 1001 and 2002 are left as they were by the first update: not logged)
    assert got.num_rows == 3000 + 3000 // 13 - 2 + 3000 // 17 + 3000 // 5
    assert calls and {call[4] for call in calls} == {1, 2}
    assert max(int(w.seq.max()) for call in calls for w in call[5]) > 20  # many rows an event
    for buf, first, end, tm, images, walked in calls:
        want = _walk_row_by_row(buf, first, end, tm, images)
        assert len(walked) == images
        for w, rows_want in zip(walked, want, strict=True):
            assert w.event.tolist() == [r[0] for r in rows_want]
            assert w.seq.tolist() == [r[1] for r in rows_want]
            for j in range(len(tm.types)):
                assert w.start[j].tolist() == [r[2][j] for r in rows_want]
                assert w.size[j].tolist() == [r[3][j] for r in rows_want]
                assert w.null[j].tolist() == [r[4][j] for r in rows_want]


def test_a_capture_run_never_imports_pandas(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    # pyarrow imports pandas (a quarter of a second) at the first pa.array, pa.scalar or
    # np.asarray of an Arrow array: the binlog path builds its arrays from buffers instead
    mysql_db.execute(
        "CREATE TABLE np (id INT PRIMARY KEY, v DECIMAL(9, 2), d DATETIME(6), b TINYINT(1), "
        "y YEAR, e ENUM('a', 'b'), t TIME, f DOUBLE, bits BIT(3))"
    )
    c = cap(mysql_db, tmp_path, ["np"])
    c.run()
    mysql_db.execute(
        "INSERT INTO np VALUES (1, 1.5, '2020-01-01 10:00:00.5', 1, 2020, 'b', '10:00:00', 0.5, 5),"
        " (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
        "UPDATE np SET id = 3, v = 2.5 WHERE id = 1",
        "DELETE FROM np WHERE id = 2",
    )
    job = c.write_job(c.root / "out_np", {})
    assert not run_imports_pandas(job, c.root)
    assert c.read(c.root / "out_np").num_rows == 2 + 2 + 1


@pytest.mark.parametrize("fmt", ["STATEMENT", "MIXED"])
def test_a_change_logged_as_a_statement_is_an_error_not_a_lost_change(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    fmt: str,
) -> None:
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(40))")
    c = cap(mysql_db, tmp_path, ["t"])
    c.run()
    con = mysql_db.connect()
    with con, con.cursor() as cur:
        cur.execute(f"SET SESSION binlog_format = '{fmt}'")
        cur.execute("BEGIN")
        cur.execute("INSERT INTO t VALUES (1, 'a statement')")
        cur.execute("INSERT INTO t VALUES (2, UUID())")  # MIXED logs this one as rows
        cur.execute("COMMIT")
    report = c.run_report()
    assert report.status != "succeeded"
    assert "table t" in report.error and "INSERT INTO t VALUES (1" in report.error
    assert "binlog_format" in report.error


@pytest.mark.parametrize(
    ("replace", "named"),
    [
        (["TRUNCATE TABLE t"], "TRUNCATE TABLE t"),
        (["DROP TABLE t", "CREATE TABLE t (id INT PRIMARY KEY)"], "DROP TABLE `t`"),
        (
            ["CREATE TABLE t_new (id INT PRIMARY KEY)", "RENAME TABLE t TO t_old, t_new TO t"],
            "RENAME TABLE t TO t_old",
        ),
        (["CREATE OR REPLACE TABLE t (id INT PRIMARY KEY)"], "CREATE OR REPLACE TABLE t"),
        (
            [
                "CREATE TABLE px (id INT PRIMARY KEY) PARTITION BY RANGE (id) "
                "(PARTITION p0 VALUES LESS THAN MAXVALUE)",
                "INSERT INTO px VALUES (5)",
                "ALTER TABLE px EXCHANGE PARTITION p0 WITH TABLE t",
            ],
            "EXCHANGE PARTITION p0 WITH TABLE t",
        ),
        *(
            (
                [
                    "ALTER TABLE t PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (10), "
                    "PARTITION p1 VALUES LESS THAN MAXVALUE)",
                    f"ALTER TABLE t {verb} PARTITION p0",
                ],
                f"{verb} PARTITION p0",
            )
            for verb in ("DROP", "TRUNCATE")
        ),
        (
            [
                "ALTER TABLE t PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (10), "
                "PARTITION p1 VALUES LESS THAN (20))",
                "CREATE TABLE loose (id INT PRIMARY KEY)",
                "INSERT INTO loose VALUES (25)",  # its rows join t's without a row event
                "ALTER TABLE t CONVERT TABLE loose TO PARTITION p2 VALUES LESS THAN (30)",
            ],
            "CONVERT TABLE loose TO PARTITION p2",
        ),
        (
            [
                "ALTER TABLE t PARTITION BY RANGE (id) (PARTITION p0 VALUES LESS THAN (10), "
                "PARTITION p1 VALUES LESS THAN MAXVALUE)",
                "ALTER TABLE t CONVERT PARTITION p0 TO TABLE t_p0",  # its rows leave t
            ],
            "CONVERT PARTITION p0 TO TABLE",
        ),
        (
            [
                "CREATE TABLE pc (id INT PRIMARY KEY) PARTITION BY RANGE (id) "
                "(PARTITION p0 VALUES LESS THAN (0))",
                "ALTER TABLE pc CONVERT TABLE t TO PARTITION p1 VALUES LESS THAN (20)",
                "CREATE TABLE t (id INT PRIMARY KEY)",  # its rows left it without a row event
            ],
            "CONVERT TABLE t TO PARTITION",
        ),
    ],
    ids=[
        "truncate",
        "drop_and_create",
        "rename_swap",
        "create_or_replace",
        "exchange_partition",
        "drop_partition",
        "truncate_partition",
        "convert_table_to_partition",
        "convert_partition_to_table",
        "converted_into_another",
    ],
)
def test_a_statement_that_replaces_a_captured_tables_rows_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    replace: list[str],
    named: str,
) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT PRIMARY KEY)", "CREATE TABLE other (id INT PRIMARY KEY)"
    )
    c = cap(mysql_db, tmp_path, ["t"])
    c.run()
    mysql_db.execute("INSERT INTO t VALUES (1)", "TRUNCATE TABLE other", "DROP TABLE other")
    assert rows(c.run(), "_op", "id") == [("c", 1)]  # another table's is no matter
    mysql_db.execute(*replace, "INSERT INTO t VALUES (2)")
    report = c.run_report()
    assert report.status != "succeeded"
    assert "table t" in report.error and named in report.error


def test_a_prepared_xa_transaction_is_an_error_a_one_phase_one_is_read(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE t (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["t"])
    c.run()
    con = mysql_db.connect()
    with con, con.cursor() as cur:
        cur.execute("XA START 'one'")
        cur.execute("INSERT INTO t VALUES (1)")
        cur.execute("XA END 'one'")
        cur.execute("XA COMMIT 'one' ONE PHASE")
    assert rows(c.run(), "_op", "id") == [("c", 1)]
    con = mysql_db.connect()
    with con, con.cursor() as cur:  # prepared, then rolled back: never a change of the table
        cur.execute("XA START 'two'")
        cur.execute("INSERT INTO t VALUES (2)")
        cur.execute("XA END 'two'")
        cur.execute("XA PREPARE 'two'")
        cur.execute("XA ROLLBACK 'two'")
    report = c.run_report()
    assert report.status != "succeeded"
    assert "table t" in report.error and "XA PREPARE" in report.error


def test_binary_values_keep_their_trailing_zero_bytes(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE bn (id INT PRIMARY KEY, b BINARY(4), v VARBINARY(4))")
    c = cap(mysql_db, tmp_path, ["bn"], beforeImage=True)
    c.run()
    mysql_db.execute(
        "INSERT INTO bn VALUES (1, 'ab', 'ab'), (2, '', ''), (3, NULL, NULL), (4, 'abcd', 'a\\0')",
        "UPDATE bn SET b = 'x' WHERE id = 1",
    )
    assert rows(c.run(), "_op", "id", "b", "v", "before_b") == [
        ("c", 1, b"ab\0\0", b"ab", None),
        ("c", 2, b"\0\0\0\0", b"", None),
        ("c", 3, None, None, None),
        ("c", 4, b"abcd", b"a\0", None),
        ("u", 1, b"x\0\0\0", b"ab", b"ab\0\0"),
    ]


def test_an_invisible_column_is_left_out_as_the_batch_reader_leaves_it(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute(
        "CREATE TABLE g (id INT PRIMARY KEY, hidden INT INVISIBLE DEFAULT 7, a INT, "
        "v INT AS (a * 2) VIRTUAL)"
    )
    c = cap(mysql_db, tmp_path, ["g"])
    c.run()
    mysql_db.execute("INSERT INTO g (id, a) VALUES (1, 5)", "UPDATE g SET a = 6 WHERE id = 1")
    t = c.run()
    assert t.schema.names == ["id", "a", "v", "_op", "_ts", "_pos"]
    assert rows(t, "_op", "id", "a", "v") == [("c", 1, 5, 10), ("u", 1, 6, 12)]


@pytest.mark.parametrize(
    "charset", ["utf16", "utf32", "ucs2", "utf16le", "koi8r", "sjis", "cp1251"]
)
def test_text_in_other_character_sets_reads_as_the_batch_reader_reads_it(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    charset: str,
) -> None:
    mysql_db.execute(f"CREATE TABLE cs (id INT PRIMARY KEY, v VARCHAR(10) CHARACTER SET {charset})")
    c = cap(mysql_db, tmp_path, ["cs"])
    c.run()
    mysql_db.execute("INSERT INTO cs VALUES (1, 'Ab'), (2, 'Яя'), (3, '')")
    assert rows(c.run(), "id", "v") == [(1, "Ab"), (2, "Яя"), (3, "")]


def test_a_character_set_without_a_codec_is_an_error_naming_the_column(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE cs (id INT PRIMARY KEY, v VARCHAR(10) CHARACTER SET swe7)")
    c = cap(mysql_db, tmp_path, ["cs"])
    c.run()
    mysql_db.execute("INSERT INTO cs VALUES (1, 'Ab')")
    r = c.run_report()
    assert r.status == "failed" and "column v" in r.error and "swe7" in r.error


def test_text_whose_bytes_are_not_of_its_character_set_is_a_dirty_record(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    # MariaDB's latin1 keeps the five bytes Windows-1252 leaves undefined (0x81 is U+0081, as
    # the server converts it for the batch reader); an ascii or cp1251 column keeps any byte
    # given over a binary connection, which no text of its set holds
    mysql_db.execute(
        "CREATE TABLE cs (id INT PRIMARY KEY, l VARCHAR(10) CHARACTER SET latin1, "
        "a VARCHAR(10) CHARACTER SET ascii, k VARCHAR(10) CHARACTER SET cp1251)"
    )
    c = cap(mysql_db, tmp_path, ["cs"])
    c.run()
    con = mysql_db.connect()
    with con, con.cursor() as cur:
        cur.execute("SET NAMES binary")
        cur.execute("INSERT INTO cs VALUES (1, x'81e9', 'ok', x'c0')")
    assert rows(c.run(), "id", "l", "a", "k") == [(1, "\x81é", "ok", "А")]
    with mysql_db.connect() as con, con.cursor() as cur:
        cur.execute("SET NAMES binary")
        cur.execute("INSERT INTO cs VALUES (2, 'x', x'61ff', 'ok'), (3, 'y', 'ok', x'98'), "
                    "(4, 'z', 'ok', 'ok')")  # fmt: skip
    r = c.run_report()  # errorLimit.record = 0: the run fails, naming the value and column
    assert r.status == "failed" and "dirty record" in r.error
    assert "column a" in r.error and "b'a\\xff'" in r.error and "ascii" in r.error
    c.setting = {"errorLimit": {"record": 2}}
    assert rows(c.run(), "id", "l", "a", "k") == [(4, "z", "ok", "ok")]


@pytest.mark.parametrize(
    ("before", "value", "after", "rewrites"),
    [
        ("DECIMAL(10,4)", "1.2345", "DECIMAL(10,2)", True),
        ("DATETIME(6)", "'2020-01-01 10:00:00.654321'", "DATETIME", True),
        ("VARCHAR(10)", "'abcdefgh'", "VARCHAR(5)", True),
        ("INT", "300", "TINYINT", True),
        ("VARCHAR(10) CHARACTER SET utf8mb4", "'Яя'", "VARCHAR(10) CHARACTER SET latin1", True),
        ("INT", "NULL", "INT NOT NULL", True),  # NULL becomes 0
        ("INT NOT NULL", "7", "BIGINT", False),
        ("VARCHAR(10)", "'abc'", "VARCHAR(20)", False),
        ("INT", "7", "BIGINT", False),
        ("DECIMAL(10,2)", "1.25", "DECIMAL(12,4)", False),
        ("DATETIME(3)", "'2020-01-01 10:00:00.5'", "DATETIME(6)", False),
        ("ENUM('a','b')", "'b'", "ENUM('a','b','c')", False),
        ("VARCHAR(10) CHARACTER SET latin1", "'é'", "VARCHAR(10) CHARACTER SET utf8mb4", False),
    ],
)
def test_an_alter_that_rewrites_stored_values_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    before: str,
    value: str,
    after: str,
    rewrites: bool,
) -> None:
    """An ALTER that rounds, cuts or clips the values a table holds changes its rows without a
    row event of each: the target, which has the old values, would silently diverge. An error
    saying a new snapshot is needed, whether or not the table has rows logged in the run; a
    change that keeps every value (a wider type) reads on."""
    mysql_db.execute(f"CREATE TABLE rw (id INT PRIMARY KEY, v {before})")
    c = cap(mysql_db, tmp_path, ["rw"])
    c.run()
    mysql_db.execute(f"INSERT INTO rw VALUES (1, {value})")
    assert c.run().num_rows == 1
    con = mysql_db.connect()
    with con, con.cursor() as cur:  # as a session without strict mode lets it
        cur.execute("SET SESSION sql_mode = ''")
        cur.execute(f"ALTER TABLE rw MODIFY v {after}")
    r = c.run_report()
    if rewrites:
        assert r.status == "failed", r.error
        assert "table rw, column v: its type changed from" in r.error
        assert "snapshot: true" in r.error
        assert c.run_report().status == "failed"  # and so on, until a new capture
    else:
        assert r.status == "succeeded", r.error
        mysql_db.execute("INSERT INTO rw (id) VALUES (2)")
        assert rows(c.run(), "_op", "id") == [("c", 2)]


@pytest.mark.parametrize(
    ("add", "filled"),
    [
        ("b INT DEFAULT 5", True),
        ("b INT NOT NULL", True),  # every row has 0
        ("b INT AS (a * 2) VIRTUAL", True),
        ("b INT", False),
        ("b VARCHAR(5) DEFAULT NULL", False),
    ],
)
def test_a_column_added_with_a_value_in_every_row_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    add: str,
    filled: bool,
) -> None:
    """A column added with a default (or NOT NULL, or generated) gives every row a value
    without a row event of each: the rows already taken would lack it. An error saying a new
    snapshot is needed; a column added without one (NULL in every row) appears."""
    mysql_db.execute("CREATE TABLE ad (id INT PRIMARY KEY, a INT)")
    c = cap(mysql_db, tmp_path, ["ad"])
    c.run()
    mysql_db.execute("INSERT INTO ad VALUES (1, 1)")
    assert c.run().num_rows == 1
    mysql_db.execute(  # (an insert without b's value: 0 for a NOT NULL one, as in the others)
        "SET SESSION sql_mode = ''",
        f"ALTER TABLE ad ADD COLUMN {add}",
        "INSERT INTO ad (id, a) VALUES (2, 2)",
    )
    r = c.run_report()
    if filled:
        assert r.status == "failed" and "table ad, column b: added" in r.error
        assert "snapshot: true" in r.error
    else:
        assert r.status == "succeeded", r.error
        assert rows(c.read(c.folder(c.runs)), "_op", "id", "b") == [("c", 2, None)]


def test_rows_a_foreign_key_cascade_changed_are_an_error_not_left_out(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    """InnoDB changes the rows a foreign key's ON DELETE / ON UPDATE CASCADE (or SET NULL)
    reaches itself, and the binlog has no row event of them: a delete (an update, for an
    ON UPDATE rule) of a parent row in the run is an error naming the table and the key, never
    the child's rows left in the target. A parent whose keys cascade nothing reads on."""
    mysql_db.execute(
        "CREATE TABLE par (id INT PRIMARY KEY, note VARCHAR(5))",
        "CREATE TABLE kid (id INT PRIMARY KEY, pid INT, CONSTRAINT kid_par FOREIGN KEY (pid) "
        "REFERENCES par (id) ON DELETE CASCADE)",
        "CREATE TABLE ref (id INT PRIMARY KEY, pid INT, FOREIGN KEY (pid) REFERENCES par (id))",
        "CREATE TABLE tree (id INT PRIMARY KEY, up INT, CONSTRAINT tree_up FOREIGN KEY (up) "
        "REFERENCES tree (id) ON UPDATE CASCADE)",
    )
    c = cap(mysql_db, tmp_path, ["kid", "ref"])
    c.run()
    mysql_db.execute(
        "INSERT INTO par VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "INSERT INTO kid VALUES (10, 1), (20, 2)",
        "INSERT INTO ref VALUES (30, 3)",
        "UPDATE par SET note = 'x' WHERE id = 1",  # no ON UPDATE rule: nothing cascades
    )
    assert rows(c.run(), "_table", "id") == [("kid", 10), ("kid", 20), ("ref", 30)]
    mysql_db.execute("DELETE FROM par WHERE id = 1")  # kid 10 goes without a row event
    r = c.run_report()
    assert r.status == "failed" and "table kid" in r.error and "kid_par" in r.error
    assert "snapshot: true" in r.error
    t = cap(mysql_db, tmp_path, ["tree"])
    t.run()
    mysql_db.execute("INSERT INTO tree VALUES (1, NULL), (2, 1)", "DELETE FROM tree WHERE id = 2")
    assert rows(t.run(), "_op", "id") == [("c", 1), ("c", 2), ("d", 2)]
    mysql_db.execute("UPDATE tree SET id = 5 WHERE id = 1")  # (nothing refers to it now)
    r = t.run_report()
    assert r.status == "failed" and "table tree" in r.error and "tree_up" in r.error


def test_rows_rolled_back_to_a_savepoint_are_not_changes(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A transaction that also wrote a non-transactional table (MyISAM, Aria) keeps in the
    binlog the rows it rolled back to a savepoint, followed by ROLLBACK TO: they never were the
    table's, and the capture leaves them out."""
    mysql_db.execute(
        "CREATE TABLE sv (id INT PRIMARY KEY) ENGINE=InnoDB",
        "CREATE TABLE nt (id INT PRIMARY KEY) ENGINE=MyISAM",
    )
    c = cap(mysql_db, tmp_path, ["sv"])
    c.run()
    mysql_db.execute(
        "BEGIN",
        "INSERT INTO sv VALUES (1)",
        "SAVEPOINT a",
        "INSERT INTO sv VALUES (2)",
        "INSERT INTO nt VALUES (2)",
        "ROLLBACK TO SAVEPOINT a",
        "INSERT INTO sv VALUES (3)",
        "SAVEPOINT `b b`",
        "UPDATE sv SET id = 4 WHERE id = 3",
        "SAVEPOINT c",
        "DELETE FROM sv WHERE id = 1",
        "INSERT INTO nt VALUES (3)",
        "ROLLBACK TO `b b`",  # c goes with it
        "INSERT INTO sv VALUES (5)",
        "COMMIT",
    )
    assert mysql_db.query("SELECT id FROM sv ORDER BY id") == [(1,), (3,), (5,)]
    assert rows(c.run(), "_op", "id") == [("c", 1), ("c", 3), ("c", 5)]


def test_a_column_newly_read_by_the_job_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    """A column the job's column list reads now and did not before: its values in the rows
    already taken were never given. An error naming it; a column left out reads on."""
    mysql_db.execute("CREATE TABLE cl (id INT PRIMARY KEY, a INT, b INT)")
    c = cap(mysql_db, tmp_path, ["cl"], column=["id", "a"])
    c.run()
    mysql_db.execute("INSERT INTO cl VALUES (1, 1, 1)")
    assert rows(c.run(), "_op", "id", "a") == [("c", 1, 1)]
    c.params["column"] = ["id", "a", "b"]
    r = c.run_report()
    assert r.status == "failed" and "table cl, column b" in r.error and "column list" in r.error
    c.params["column"] = ["id"]
    mysql_db.execute("INSERT INTO cl VALUES (2, 2, 2)")
    assert rows(c.run(), "_op", "id") == [("c", 2)]


@pytest.mark.parametrize("kind", ["VIRTUAL", "STORED"])
def test_a_generated_columns_expression_changed_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    kind: str,
) -> None:
    """A generated column given another expression changes its value in every row without a
    row event of each: an error saying a new snapshot is needed."""
    mysql_db.execute(f"CREATE TABLE gx (id INT PRIMARY KEY, a INT, v INT AS (a * 2) {kind})")
    c = cap(mysql_db, tmp_path, ["gx"])
    c.run()
    mysql_db.execute("INSERT INTO gx (id, a) VALUES (1, 5)")
    assert rows(c.run(), "id", "v") == [(1, 10)]
    mysql_db.execute(f"ALTER TABLE gx MODIFY v INT AS (a * 3) {kind}")
    r = c.run_report()
    assert r.status == "failed" and "table gx, column v: its type changed" in r.error
