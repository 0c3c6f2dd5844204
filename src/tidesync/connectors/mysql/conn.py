"""MySQL/MariaDB endpoints, data sources, connections (TLS) and error translation."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pymysql
from pymysql import err as myerr

from tidesync.connections import connection
from tidesync.connectors import base
from tidesync.connectors.sql import (
    MYSQL,
    parse_jdbc_url,
    split_name,
)
from tidesync.errors import (
    ConfigError,
    FatalError,
    RetriableError,
    TidesyncError,
    redact,
)

log = logging.getLogger("tidesync.mysql")


D = MYSQL


DEFAULT_PORT = 3306


#: keys that name the database instead of (or besides) ``connection[].jdbcUrl``
CONNECTION_KEYS = ("datasource", "url", "username", "password")


_SCHEMES = ("mysql", "mariadb")


@dataclass(frozen=True)
class Endpoint:
    """Where a database is and how to log in. The password never appears in ``repr``."""

    host: str
    port: int
    database: str
    user: str
    password: str = field(default="", repr=False)
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}/{self.database}"

    def __str__(self) -> str:
        return f"mysql://{self.user}@{self.label}"


def _endpoint(url: str, user: str | None, password: str | None) -> Endpoint:
    """From ``jdbc:mysql://h:p/db``, ``mysql://u:pw@h/db`` or ``mariadb://...`` (ValueError)."""
    text = url.strip()
    if "://" in text and not text.lower().startswith("jdbc:"):
        text = "jdbc:" + text
    u = parse_jdbc_url(text)
    if u.scheme not in _SCHEMES:
        raise ValueError(
            f"{redact(url)!r} is not a MySQL URL; write jdbc:mysql://host:3306/database"
        )
    if not u.database:
        raise ValueError(
            f"{redact(url)!r} names no database; write jdbc:mysql://host:3306/database"
        )
    host = u.host.split(",")[0]
    # Connector/J reads ``?user=..&password=..`` as it reads the userinfo: both were ignored,
    # so the run logged in as root without a password (and succeeded, on a server that let it)
    url_user, url_password = u.user, u.password
    for key, value in u.options:
        k = key.lower()
        if k in ("user", "password"):
            given = url_user if k == "user" else url_password
            if given and given != value:
                raise ValueError(
                    f"{redact(url)!r} gives the {k} twice, before the host and as ?{key}=, "
                    "differently; write it once"
                )
            if k == "user":
                url_user = value
            else:
                url_password = value
    return Endpoint(
        host,
        u.port or DEFAULT_PORT,
        u.database,
        user or url_user or "root",
        password if password is not None else url_password,
        tuple((k, v) for k, v in u.options if k.lower() not in ("user", "password")),
    )


#: what a data source of kind mysql may hold (see :func:`_from_datasource`)
_DATASOURCE_KEYS = (
    "kind",
    "url",
    "jdbcUrl",
    "host",
    "port",
    "database",
    "user",
    "username",
    "password",
)


def _from_datasource(settings: dict[str, Any], name: str) -> tuple[str, str | None, str | None]:
    """(url, user, password) of a named data source of kind mysql."""
    kind = str(settings.get("kind", "mysql")).lower()
    if kind not in ("mysql", "mariadb", "mysqlreader", "mysqlwriter"):
        raise ConfigError(f"connections.{name}: is a {kind!r} data source, not mysql")
    from tidesync.connections import database_keys

    wrong = database_keys(settings, name, _DATASOURCE_KEYS)
    if wrong:
        raise ConfigError(wrong)
    url = settings.get("url") or settings.get("jdbcUrl")
    if not url:
        host = settings.get("host")
        if not host:
            raise ConfigError(
                f"connections.{name}: needs url (mysql://host:3306/db) or host and database"
            )
        db = settings.get("database") or ""
        url = f"mysql://{host}:{settings.get('port', DEFAULT_PORT)}/{quote(str(db))}"
    user = settings.get("username") or settings.get("user")
    pw = settings.get("password")
    return str(url), (str(user) if user else None), (str(pw) if pw is not None else None)


def _with_url(params: dict[str, Any], ctx: base.Context) -> tuple[dict[str, Any], list[str]]:
    """The parameters as ``_sql.read_options`` expects them (``url`` holds the database when no
    ``connection``/``jdbcUrl`` is given), plus problems of the connection keys."""
    problems: list[str] = []
    out = dict(params)
    inline = any(params.get(k) not in (None, "", []) for k in ("connection", "jdbcUrl", "url"))
    ds = params.get("datasource")
    if ds not in (None, ""):
        if inline:
            problems.append(
                f"{ctx.path('datasource')}: give either datasource or connection/url, not both"
            )
        elif not isinstance(ds, str):
            problems.append(
                f"{ctx.path('datasource')}: must be the name of a connection, got {ds!r}"
            )
        else:
            try:
                url, user, pw = _from_datasource(
                    connection(ctx.connections, ds, ctx.path("datasource")), ds
                )
            except ConfigError as e:
                problems.extend(e.problems)
                out["url"] = "mysql://unset/unset"  # said above: not "url is required" too
            else:
                out["url"] = url
                out.setdefault("username", user)
                if pw is not None:
                    out.setdefault("password", pw)
    elif not inline:
        problems.append(
            f"{ctx.path('connection')}: is required: write connection: [{{jdbcUrl: "
            "[jdbc:mysql://host:3306/db], table: [t]}], url: mysql://host:3306/db, or datasource: NAME"
        )
        out["url"] = "mysql://unset/unset"
    return out, problems


def connect(
    ep: Endpoint,
    *,
    where: str = "",
    session: Sequence[str] = (),
    autocommit: bool = True,
    local_infile: bool = False,
    ours: Sequence[str] = (),
) -> pymysql.Connection:
    """A PyMySQL connection (utf8mb4) with our session settings, then the user's ``session``."""
    mode = _ssl_mode(ep)
    try:
        con = pymysql.connect(
            host=ep.host,
            port=ep.port,
            user=ep.user,
            password=ep.password,
            database=ep.database,
            charset="utf8mb4",
            autocommit=autocommit,
            local_infile=local_infile,
            connect_timeout=_timeout(ep),
            ssl_disabled=mode != "required",
            ssl=_ssl_context() if mode == "required" else None,
            defer_connect=True,
        )
        if mode == "preferred" and pymysql.connections.SSL_ENABLED:
            # as PyMySQL does, but with one TLS context for all connections, made only when a
            # server offers TLS
            con.ssl, con._ssl_required, con.ctx = True, False, _LAZY_TLS
        con.connect()
    except myerr.MySQLError as e:
        raise translate(e, ep, where) from None
    try:
        with con.cursor() as cur:
            for sql in (*ours, *session):
                cur.execute(sql)
    except myerr.MySQLError as e:
        con.close()
        raise translate(e, ep, where, what="session") from None
    return con


_SSL: list[Any] = []


_SSL_LOCK = threading.Lock()


def _ssl_context() -> Any:
    """PyMySQL's default TLS context, made once: making one per connection costs ~60 ms."""
    with _SSL_LOCK:
        if not _SSL:
            _SSL.append(getattr(pymysql.connections.Connection(defer_connect=True), "ctx", None))
        return _SSL[0]


class _SharedTLS:
    """Stands in for PyMySQL's TLS context (``Connection.ctx``) under sslMode preferred. PyMySQL
    calls only ``wrap_socket``, and only when the server offers TLS, so the shared context is
    made then: connecting to a server without TLS makes none."""

    def wrap_socket(self, sock: Any, server_hostname: str | None = None) -> Any:
        return _ssl_context().wrap_socket(sock, server_hostname=server_hostname)


_LAZY_TLS = _SharedTLS()


def _timeout(ep: Endpoint) -> int:
    """``connectTimeout`` of the jdbc URL (milliseconds, as in JDBC) in seconds; 10 by default."""
    try:
        return max(1, int(_opt(ep, "connectTimeout", "10000")) // 1000)
    except ValueError:
        return 10


def _ssl_mode(ep: Endpoint) -> str:
    """TLS as the jdbc URL asks (``useSSL=false``, ``sslMode=REQUIRED``); preferred by default."""
    mode = _opt(ep, "sslMode", "").lower()
    if mode in ("disabled", "disable") or _opt(ep, "useSSL", "").lower() == "false":
        return "disabled"
    if (
        mode in ("required", "verify_ca", "verify_identity")
        or _opt(ep, "requireSSL", "").lower() == "true"
    ):
        return "required"
    return "preferred"


def _opt(ep: Endpoint, name: str, default: str) -> str:
    for k, v in ep.options:
        if k.lower() == name.lower():
            return v
    return default


_LOGIN = {1045, 1044, 1698, 1251}  # access denied, auth plugin


_UNREACHABLE = {2003, 2005, 2002}


#: lock wait timeout, deadlock, server gone / connection lost, too many connections, connection
#: killed, server shutting down, disconnected for inactivity
_RETRY = {1205, 1213, 2006, 2013, 2055, 1040, 1927, 1053, 4031}


_CONFIG = {
    1049: "database",
    1146: "table",
    1054: "column",
    1064: "SQL",
    1142: "privilege",
    1143: "privilege",
    1109: "table",
    1051: "table",
}


_DATA = {
    1048,
    1062,
    1406,
    1264,
    1265,
    1366,
    1292,
    1367,
    1452,
    1451,
    1216,
    1217,
    3819,
    4025,
    1690,
    1263,
    1364,
    1261,
    1262,
    3140,
    1411,
    1586,
    1859,
}


def errno_of(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_data_error(e: BaseException) -> bool:
    state = getattr(e, "sqlstate", None) or ""
    return errno_of(e) in _DATA or state[:2] in ("22", "23")


#: exceptions that Python code raises on a bug (PyMySQL raises its own classes)
_OURS = (LookupError, TypeError, AttributeError, ArithmeticError, AssertionError)


def translate(
    e: BaseException,
    ep: Endpoint,
    where: str = "",
    *,
    table: str = "",
    split: str = "",
    what: str = "",
) -> TidesyncError:
    """A driver error as tidesync's: errno kept, the place (host:port/db, table, split) added,
    secrets redacted. Never names the password."""
    if isinstance(e, TidesyncError):
        return e
    code = errno_of(e)
    msg = redact(str(e.args[1]) if len(getattr(e, "args", ())) > 1 else str(e))
    place = f"mysql {ep.host}:{ep.port}/{ep.database}"
    if table:
        place += f" table {table}"
    if split:
        place += f" split {split}"
    if what:
        place += f" ({what})"
    prefix = f"{where}: " if where else ""
    if isinstance(e, _OURS) and not isinstance(e, myerr.MySQLError):
        # a fault of tidesync's own code, not of the server or the link: a retry would fail the
        # same way, and its first argument is no MySQL error number (KeyError(1205) is no lock
        # wait timeout)
        return FatalError(
            f"{prefix}{place}: failed in tidesync itself ({type(e).__name__}: "
            f"{redact(str(e))}); please report it"
        )
    if code in _LOGIN:
        return FatalError(
            f"{prefix}cannot log in to {ep.host}:{ep.port} as {ep.user!r}: [{code}] {msg}; "
            "check username and password",
            code=code,
        )
    if code in _UNREACHABLE:
        return FatalError(
            f"{prefix}cannot reach MySQL at {ep.host}:{ep.port}: [{code}] {msg}", code=code
        )
    if code in _RETRY:
        return RetriableError(f"{prefix}{place}: [{code}] {msg}", code=code)
    if not code and isinstance(e, myerr.InterfaceError | ConnectionError):
        # PyMySQL's InterfaceError(0, '') and a socket error: the connection is gone
        return RetriableError(
            f"{prefix}{place}: connection to MySQL lost{': ' + msg if msg else ''}"
        )
    if code in _CONFIG:
        return ConfigError(f"{prefix}{place}: [{code}] {msg}", code=code)
    return FatalError(
        f"{prefix}{place}: [{code}] {msg}" if code is not None else f"{prefix}{place}: {msg}",
        code=code,
    )


def _schema_table(con: pymysql.Connection, table: str) -> tuple[str, str]:
    parts = split_name(table)
    if len(parts) == 2:
        return parts[0], parts[1]
    with con.cursor() as cur:
        cur.execute("SELECT DATABASE()")
        (db,) = cur.fetchone()
    return db, parts[-1]


def _columns_info(con: pymysql.Connection, table: str) -> list[dict[str, Any]] | None:
    db, name = _schema_table(con, table)
    with con.cursor() as cur:
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, IS_NULLABLE, COLUMN_DEFAULT, EXTRA, "
            "CHARACTER_SET_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
            "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
            (db, name),
        )
        rows = cur.fetchall()
    if not rows:
        return None
    return [
        {
            "name": r[0],
            "type": r[1].lower(),
            "column_type": r[2].lower(),
            "nullable": r[3] == "YES",
            "default": r[4],
            "extra": (r[5] or "").lower(),
            "charset": r[6],
            "collation": r[7],
        }
        for r in rows
    ]


def _tables(con: pymysql.Connection) -> list[str]:
    with con.cursor() as cur:
        cur.execute("SHOW TABLES")
        return [r[0] for r in cur.fetchall()]


def _find(name: str, info: list[dict[str, Any]]) -> dict[str, Any] | None:
    for c in info:
        if c["name"] == name:
            return c
    folded = [c for c in info if c["name"].lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None
