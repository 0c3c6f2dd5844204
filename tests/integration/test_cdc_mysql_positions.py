"""mysqlcdc: what the binlog's rows alone do not tell (the server's log replaced, a captured
table's definition changed or replaced) is an error, never changes lost or read wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration._cdc import Capture, rows, state_store
from tests.integration._servers_mysql import MyDb, mysql_db, mysql_server  # noqa: F401
from tests.integration.test_cdc_mysql import cap, row_metadata  # noqa: F401
from tidesync.state import POSITIONS

pytestmark = pytest.mark.integration


def _saved(c: Capture, change: Any) -> None:
    """Change the positions the last run of ``c`` saved (``change`` edits them in place)."""
    store = state_store(c.root)
    [entry] = store.list(POSITIONS)
    v = entry.value
    change(v["positions"]["changes"])
    assert store.compare_and_set(POSITIONS, entry.key, entry.version, v) is not None


def test_a_saved_file_position_past_the_logs_end_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE pe (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["pe"], position="file")
    c.run()

    def past_end(h: dict[str, Any]) -> None:  # as on a server restored from a backup
        f, p = h["spans"][-1][3].rsplit(":", 1)
        h["lo"] = f"{f}:{int(p) + 10**9}"
        h["spans"] = []

    _saved(c, past_end)
    mysql_db.execute("INSERT INTO pe VALUES (1)")
    r = c.run_report()
    assert r.status == "failed"
    assert "but the server's binlog ends at" in r.error and "RESET MASTER" in r.error


@pytest.mark.parametrize("meta", ["FULL", "MINIMAL", "NO_LOG"])
@pytest.mark.parametrize(
    ("column", "value", "then", "alter"),
    [
        # -1 would read as 4294967295 (the row is made 5 before, and the log keeps its -1)
        ("v INT", "-1", "UPDATE ct SET v = 5", "MODIFY v INT UNSIGNED"),
        ("v ENUM('a', 'b')", "'a'", "DO 0", "MODIFY v ENUM('b', 'a')"),  # 'a' would read as 'b'
        (
            "v VARCHAR(10)",
            "'é'",
            "DO 0",
            "CONVERT TO CHARACTER SET utf8mb4",
        ),  # latin1 bytes as utf8
    ],
    ids=["unsigned", "enum_labels", "convert_charset"],
)
def test_a_column_whose_values_read_otherwise_since_they_were_logged_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    row_metadata: Any,  # noqa: F811
    meta: str,
    column: str,
    value: str,
    then: str,
    alter: str,
) -> None:
    row_metadata(meta)
    mysql_db.execute(f"CREATE TABLE ct (id INT PRIMARY KEY, {column}) CHARACTER SET latin1")
    c = cap(mysql_db, tmp_path, ["ct"])
    c.run()
    mysql_db.execute(f"INSERT INTO ct VALUES (1, {value})", then, f"ALTER TABLE ct {alter}")
    r = c.run_report()
    assert r.status == "failed"
    assert "table ct, column v" in r.error
    c2 = cap(mysql_db, tmp_path, ["ct"])  # a capture that starts after the change reads on
    c2.run()
    mysql_db.execute(f"INSERT INTO ct VALUES (2, {value.lstrip('-')})")
    assert rows(c2.run(), "id") == [(2,)]


@pytest.mark.parametrize("meta", ["FULL", "NO_LOG"])
def test_a_primary_key_changed_since_rows_were_logged_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    row_metadata: Any,  # noqa: F811
    meta: str,
) -> None:
    row_metadata(meta)
    mysql_db.execute("CREATE TABLE pk (id INT PRIMARY KEY, code INT NOT NULL)")
    c = cap(mysql_db, tmp_path, ["pk"])
    c.run()
    # under the key of the time, id 1 went and id 2 came; under the new key it reads as an
    # update of code 10, and a target merged by id would keep id 1
    mysql_db.execute(
        "INSERT INTO pk VALUES (1, 10)",
        "UPDATE pk SET id = 2 WHERE id = 1",
        "ALTER TABLE pk DROP PRIMARY KEY, ADD PRIMARY KEY (code)",
    )
    r = c.run_report()
    assert r.status == "failed"
    assert "table pk" in r.error and "primary key" in r.error
    mysql_db.execute("UPDATE pk SET id = 3 WHERE code = 10")
    c2 = cap(mysql_db, tmp_path, ["pk"])  # a capture that starts after the change reads on
    c2.run()
    mysql_db.execute("UPDATE pk SET code = 11 WHERE code = 10")
    assert rows(c2.run(), "_op", "id", "code") == [("d", 3, 10), ("c", 3, 11)]


def test_a_table_added_to_a_running_capture_is_an_error(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute(
        "CREATE TABLE a1 (id INT PRIMARY KEY)",
        "CREATE TABLE a2 (id INT PRIMARY KEY)",
        "INSERT INTO a2 VALUES (1)",
    )
    c = cap(mysql_db, tmp_path, ["a1"])
    c.run()
    mysql_db.execute("INSERT INTO a2 VALUES (2)")  # passed over: a2 was not read then
    c.run()
    c.params["table"] = ["a1", "a2"]
    r = c.run_report()
    assert r.status == "failed"
    assert "table a2 is new to this capture" in r.error and "a1" in r.error
    c.params["table"] = ["a1"]  # without it the capture goes on

    def no_tables(h: dict[str, Any]) -> None:  # positions saved by an earlier version
        h.pop("tables")

    _saved(c, no_tables)
    mysql_db.execute("INSERT INTO a1 VALUES (3)")
    assert rows(c.run(), "id") == [(3,)]
    assert state_store(c.root).list(POSITIONS)[0].value["positions"]["changes"]["tables"] == {
        f"{mysql_db.name}.a1": None
    }


def _before_the_log(h: dict[str, Any]) -> None:
    """As if the last run was before the server's binlog files were begun (RESET MASTER, a
    rebuilt server after it: the same file names and GTIDs again, another log)."""
    h["seen"] = 1000


def test_a_file_position_in_a_binlog_begun_after_the_last_run_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE rf (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["rf"], position="file")
    c.run()
    assert isinstance(
        state_store(c.root).list(POSITIONS)[0].value["positions"]["changes"]["seen"], int
    )
    mysql_db.execute("INSERT INTO rf VALUES (1)")
    assert rows(c.run(), "id") == [(1,)]  # the log the capture read goes on
    _saved(c, _before_the_log)
    mysql_db.execute("INSERT INTO rf VALUES (2)")
    r = c.run_report()
    assert r.status == "failed"
    assert "was begun at" in r.error and "RESET MASTER" in r.error


def test_a_gtid_position_in_a_binlog_begun_after_the_last_run_is_an_error(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE rg (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["rg"], position="gtid")
    c.run()
    mysql_db.execute("INSERT INTO rg VALUES (1)")
    (taken,) = mysql_db.query("SELECT @@global.gtid_binlog_pos")[0]
    mysql_db.execute("INSERT INTO rg VALUES (2)")

    def took_one(h: dict[str, Any]) -> None:  # a GTID inside the file, not where one begins
        h["lo"] = f"gtid:{taken}"
        h["spans"] = []
        _before_the_log(h)

    _saved(c, took_one)
    r = c.run_report()
    assert r.status == "failed"
    assert "was begun at" in r.error and "RESET MASTER" in r.error


def test_a_gtid_position_goes_on_in_a_binlog_rotated_after_the_last_run(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
) -> None:
    mysql_db.execute("CREATE TABLE rr (id INT PRIMARY KEY)")
    c = cap(mysql_db, tmp_path, ["rr"], position="gtid")
    c.run()
    # the server starts the position in the file begun after it (its GTID list holds it)
    mysql_db.execute("FLUSH BINARY LOGS", "INSERT INTO rr VALUES (1)")
    _saved(c, _before_the_log)
    assert rows(c.run(), "id") == [(1,)]


def test_dropping_a_captured_tables_database_is_an_error(mysql_db: MyDb, tmp_path: Path) -> None:  # noqa: F811
    mysql_db.execute("CREATE TABLE dd (id INT PRIMARY KEY)", "INSERT INTO dd VALUES (1)")
    c = cap(mysql_db, tmp_path, ["dd"])
    c.run()
    n = mysql_db.name
    mysql_db.execute(  # its row 1 goes without a delete in the log; the new table's row 2 comes
        f"DROP DATABASE `{n}`",
        f"CREATE DATABASE `{n}`",
        f"CREATE TABLE `{n}`.dd (id INT PRIMARY KEY)",
        f"INSERT INTO `{n}`.dd VALUES (2)",
    )
    r = c.run_report()
    assert r.status == "failed"
    assert "table dd" in r.error and f"DROP DATABASE `{n}`" in r.error


def test_a_decimal_narrowed_since_rows_were_logged_is_an_error_naming_it(
    mysql_db: MyDb,  # noqa: F811
    tmp_path: Path,
    row_metadata: Any,  # noqa: F811
) -> None:
    row_metadata("FULL")
    mysql_db.execute("CREATE TABLE dn (id INT PRIMARY KEY, v DECIMAL(10, 4))")
    c = cap(mysql_db, tmp_path, ["dn"])
    c.run()
    mysql_db.execute("INSERT INTO dn VALUES (1, 1.2345)", "ALTER TABLE dn MODIFY v DECIMAL(10, 2)")
    _saved(c, lambda h: h.pop("types"))  # saved without the types: the rows logged tell
    r = c.run_report()
    assert r.status == "failed"
    assert "column v" in r.error and "DECIMAL(10, 4)" in r.error
