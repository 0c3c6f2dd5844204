"""MariaDB/MySQL for integration tests: the server at 127.0.0.1:3306 (root, empty password),
or the one ``TIDESYNC_MYSQL_URL`` names (``mysql://user:pw@host:port``).

Tests skip with the reason when no server answers, except under ``CI=true``, where that fails.
Each test gets its own database ``ts_test_<random>``, dropped afterwards, so tests can run
beside others' tests. Server settings the connector needs (``local_infile``) are set here.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

pymysql = pytest.importorskip("pymysql")


@dataclass(frozen=True)
class MyServer:
    host: str
    port: int
    user: str
    password: str

    def connect(self, database: str | None = None, **kw: object) -> pymysql.Connection:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            charset="utf8mb4",
            autocommit=True,
            **kw,
        )


@dataclass(frozen=True)
class MyDb:
    server: MyServer
    name: str

    @property
    def jdbc(self) -> str:
        return f"jdbc:mysql://{self.server.host}:{self.server.port}/{self.name}"

    @property
    def url(self) -> str:
        s = self.server
        auth = f"{s.user}:{s.password}@" if s.password else f"{s.user}@"
        return f"mysql://{auth}{s.host}:{s.port}/{self.name}"

    def connect(self, **kw: object) -> pymysql.Connection:
        return self.server.connect(self.name, **kw)

    def execute(self, *sql: str) -> None:
        con = self.connect()
        try:
            with con.cursor() as cur:
                for s in sql:
                    cur.execute(s)
        finally:
            con.close()

    def query(self, sql: str) -> list[tuple]:
        con = self.connect()
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return list(cur.fetchall())
        finally:
            con.close()


def _server_from_env() -> MyServer:
    u = urlsplit(os.environ.get("TIDESYNC_MYSQL_URL", "mysql://root@127.0.0.1:3306"))
    return MyServer(
        u.hostname or "127.0.0.1", u.port or 3306, u.username or "root", u.password or ""
    )


@pytest.fixture(scope="session")
def mysql_server() -> MyServer:
    server = _server_from_env()
    try:
        con = server.connect()
    except pymysql.MySQLError as e:
        reason = f"no MySQL/MariaDB server at {server.host}:{server.port}: {e}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: integration servers are required)")
        pytest.skip(reason)
    try:
        with con.cursor() as cur:
            cur.execute("SELECT @@GLOBAL.local_infile")
            if not int(cur.fetchone()[0]):
                cur.execute("SET GLOBAL local_infile = 1")
            cur.execute("SELECT @@GLOBAL.max_allowed_packet")
            if int(cur.fetchone()[0]) < 64 << 20:  # rows of more than 16 MiB span several packets
                cur.execute(f"SET GLOBAL max_allowed_packet = {64 << 20}")
    finally:
        con.close()
    return server


def _database(server: MyServer) -> Iterator[MyDb]:
    name = f"ts_test_{secrets.token_hex(6)}"
    con = server.connect()
    try:
        with con.cursor() as cur:
            cur.execute(
                f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci"
            )
        yield MyDb(server, name)
    finally:
        with con.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        con.close()


@pytest.fixture
def mysql_db(mysql_server: MyServer) -> Iterator[MyDb]:
    """A database of the test's own."""
    yield from _database(mysql_server)


@pytest.fixture(scope="module")
def mysql_module_db(mysql_server: MyServer) -> Iterator[MyDb]:
    """A database shared by a module's tests, each using tables of its own names: many small
    tests spend less time creating and dropping databases."""
    yield from _database(mysql_server)


@pytest.fixture
def my_user(mysql_db: MyDb) -> Iterator[tuple[str, str]]:
    """A user with a password, allowed into ``mysql_db`` only: (name, password)."""
    name = f"ts_u_{secrets.token_hex(4)}"
    pw = f"Sekr3t-{secrets.token_hex(6)}"
    mysql_db.execute(
        f"CREATE USER '{name}'@'%' IDENTIFIED BY '{pw}'",
        f"CREATE USER '{name}'@'localhost' IDENTIFIED BY '{pw}'",
        f"GRANT ALL ON `{mysql_db.name}`.* TO '{name}'@'%'",
        f"GRANT ALL ON `{mysql_db.name}`.* TO '{name}'@'localhost'",
    )
    yield name, pw
    mysql_db.execute(
        f"DROP USER IF EXISTS '{name}'@'%'", f"DROP USER IF EXISTS '{name}'@'localhost'"
    )
