"""Create seed 001's source tables in MariaDB/MySQL, or apply the day's changes to them.

    python examples/seed001/setup_source.py history  [--db seed001]   # drop, create, historical rows
    python examples/seed001/setup_source.py changes  [--db seed001]   # what happens on 2016-11-14

The rows are the seed's own; ``current_date`` / ``CURRENT_TIME`` of the seed are written as
2016-11-14 times so that the run for business date 20161114 (cyctime 20161115000000) picks them up.
Server: 127.0.0.1:3306, user root, no password, unless --host/--port/--user/--password say otherwise.
"""

from __future__ import annotations

import argparse

import pymysql

HISTORY = [
    "DROP TABLE IF EXISTS oplog",
    """CREATE TABLE oplog (
        optime DATETIME,
        uname  VARCHAR(50),
        action VARCHAR(50),
        status VARCHAR(10))""",
    "INSERT INTO oplog VALUES (STR_TO_DATE('2016-11-11','%Y-%m-%d'), 'LiLei', 'SELECT', 'SUCCESS')",
    "INSERT INTO oplog VALUES (STR_TO_DATE('2016-11-12','%Y-%m-%d'), 'HanMM', 'DESC', 'SUCCESS')",
    "DROP TABLE IF EXISTS user",
    """CREATE TABLE user (
        uid    INT,
        uname  VARCHAR(50),
        deptno INT,
        gender VARCHAR(1),
        optime DATETIME)""",
    "INSERT INTO user VALUES (1, 'LiLei', 100, 'M', STR_TO_DATE('2016-11-13','%Y-%m-%d'))",
    "INSERT INTO user VALUES (2, 'HanMM', NULL, 'F', STR_TO_DATE('2016-11-13','%Y-%m-%d'))",
    "INSERT INTO user VALUES (3, 'Jim', 102, 'M', STR_TO_DATE('2016-11-12','%Y-%m-%d'))",
    "INSERT INTO user VALUES (4, 'Kate', 103, 'F', STR_TO_DATE('2016-11-12','%Y-%m-%d'))",
    "INSERT INTO user VALUES (5, 'Lily', 104, 'F', STR_TO_DATE('2016-11-11','%Y-%m-%d'))",
    # the table target of jobs/dw_user_inc_table.json (writeMode sync)
    "DROP TABLE IF EXISTS dw_user_inc_table",
    """CREATE TABLE dw_user_inc_table (
        uid    INT PRIMARY KEY,
        uname  VARCHAR(50),
        deptno INT,
        gender VARCHAR(1))""",
]

CHANGES = [
    "INSERT INTO oplog VALUES ('2016-11-14 09:00:00', 'Jim', 'Update', 'SUCCESS')",
    "INSERT INTO oplog VALUES ('2016-11-14 10:00:00', 'Kate', 'Delete', 'Failed')",
    "INSERT INTO oplog VALUES ('2016-11-14 11:00:00', 'Lily', 'Drop', 'Failed')",
    "UPDATE user SET deptno = 101, optime = '2016-11-14 12:00:00' WHERE uid = 2",  # null -> value
    "UPDATE user SET deptno = 104, optime = '2016-11-14 12:00:00' WHERE uid = 3",  # value -> value
    "UPDATE user SET deptno = 104, optime = '2016-11-14 12:00:00' WHERE uid = 4",
    "DELETE FROM user WHERE uid = 5",
    "INSERT INTO user (uid, uname, deptno, gender, optime) "
    "VALUES (6, 'Lucy', 105, 'F', '2016-11-14 12:00:00')",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["history", "changes"])
    ap.add_argument("--db", default="seed001")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=3306)
    ap.add_argument("--user", default="root")
    ap.add_argument("--password", default="")
    args = ap.parse_args()
    con = pymysql.connect(
        host=args.host, port=args.port, user=args.user, password=args.password, autocommit=True
    )
    with con.cursor() as cur:
        if args.step == "history":
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{args.db}`")
        cur.execute(f"USE `{args.db}`")
        for sql in HISTORY if args.step == "history" else CHANGES:
            cur.execute(sql)
    con.close()
    print(f"{args.db}: {args.step} applied")


if __name__ == "__main__":
    main()
