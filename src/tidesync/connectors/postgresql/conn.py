"""PostgreSQL endpoints and errors: where a job's database is, and what its failures mean.

A job names its database in one of three ways, all read by :func:`endpoints`:

- DataX: ``connection: [{jdbcUrl: ["jdbc:postgresql://host:5432/db"], table: [...]}]`` with
  ``username`` / ``password`` beside it (a reader may list several URLs: alternates, tried in order);
- ``datasource: name``: a named connection (kind postgresql) with ``url`` or
  ``host``/``port``/``database``/``user``/``password``;
- ``url: postgresql://user@host:5432/db``.

Driver exceptions are translated here, at the edge, into the error tree: the SQLSTATE is kept,
the table and split are added, and the password never appears (:func:`tidesync.errors.redact`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from tidesync.connections import connection
from tidesync.connectors.base import Params
from tidesync.connectors.sql.conn import check_userinfo
from tidesync.errors import (
    ConfigError,
    FatalError,
    RetriableError,
    TidesyncError,
    did_you_mean,
    redact,
)

__all__ = [
    "Endpoint",
    "parse_url",
    "endpoint_of",
    "resolve_datasource",
    "translate",
    "edge",
    "quote_ident",
    "sqlstate",
    "connect",
    "Table",
    "resolve_table",
    "strings",
    "session_of",
    "literal_text",
    "psycopg_module",
]

DEFAULT_PORT = 5432
APPLICATION = "tidesync"
#: JDBC URL parameters with a libpq counterpart; others are ignored.
_JDBC_PARAMS = {
    "user": "user",
    "password": "password",
    "sslmode": "sslmode",
    "sslcert": "sslcert",
    "sslkey": "sslkey",
    "sslrootcert": "sslrootcert",
    "applicationname": "application_name",
    "connecttimeout": "connect_timeout",
    "options": "options",
    "targetservertype": "target_session_attrs",
}
#: SQLSTATE classes and codes worth a retry: connection lost, serialization, resources, shutdown.
_RETRIABLE = ("08", "40", "53", "57P01", "57P02", "57P03", "55P03")


@dataclass(frozen=True)
class Endpoint:
    """One PostgreSQL server and database, with its credentials. ``str()`` never shows them."""

    hosts: tuple[tuple[str, int], ...]
    dbname: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    options: tuple[tuple[str, str], ...] = ()

    @property
    def label(self) -> str:
        """``host:port/db``: what messages name."""
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        return f"{hosts}/{self.dbname}"

    def __str__(self) -> str:
        return self.label

    def with_credentials(self, user: str | None, password: str | None) -> Endpoint:
        return Endpoint(
            self.hosts,
            self.dbname,
            user or self.user,
            password if password is not None else self.password,
            self.options,
        )

    def kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``psycopg.connect``."""
        kw: dict[str, Any] = {
            "host": ",".join(h for h, _ in self.hosts),
            "port": ",".join(str(p) for _, p in self.hosts),
            "dbname": self.dbname,
            "application_name": APPLICATION,
            "connect_timeout": 10,
        }
        if self.user:
            kw["user"] = self.user
        if self.password is not None:
            kw["password"] = self.password
        kw.update(dict(self.options))
        return kw

    def uri(self) -> str:
        """A libpq URI (for ADBC), credentials percent-encoded."""
        auth = ""
        if self.user:
            auth = quote(self.user, safe="")
            if self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        hosts = ",".join(f"{_host(h)}:{p}" for h, p in self.hosts)
        params = {"application_name": APPLICATION, "connect_timeout": "10", **dict(self.options)}
        query = "&".join(f"{quote(k, safe='')}={quote(str(v), safe='')}" for k, v in params.items())
        return f"postgresql://{auth}{hosts}/{quote(self.dbname, safe='')}?{query}"


def _host(h: str) -> str:
    return f"[{h}]" if ":" in h and not h.startswith("[") else h


def parse_url(url: str) -> Endpoint:
    """Read ``jdbc:postgresql://h[:p][,h2[:p2]]/db?k=v`` or ``postgresql://u:pw@h:p/db?k=v``.

    Raises ValueError with a reason (never the password) when the URL does not read.
    """
    s = url.strip()
    if s.lower().startswith("jdbc:"):
        s = s[5:]
    scheme, sep, rest = s.partition("://")
    if not sep:
        # jdbc:postgresql:db (local server)
        scheme, _, db = s.partition(":")
        if scheme.lower() not in ("postgresql", "postgres") or not db:
            raise ValueError("is not a PostgreSQL URL such as jdbc:postgresql://127.0.0.1:5432/db")
        return Endpoint((("localhost", DEFAULT_PORT),), db)
    if scheme.lower() not in ("postgresql", "postgres"):
        raise ValueError(
            f"scheme {scheme!r} is not postgresql (write jdbc:postgresql://host:5432/db)"
        )
    check_userinfo(rest)
    parts = urlsplit("postgresql://" + rest)
    netloc = parts.netloc
    user = password = None
    if "@" in netloc:
        cred, _, netloc = netloc.rpartition("@")
        u, has_pw, pw = cred.partition(":")
        user = unquote(u) or None
        password = unquote(pw) if has_pw else None
    hosts: list[tuple[str, int]] = []
    for hp in netloc.split(","):
        if not hp:
            continue
        if hp.startswith("["):
            host, _, port_s = hp[1:].partition("]")
            port_s = port_s.lstrip(":")
        else:
            host, _, port_s = hp.partition(":")
        try:
            port = int(port_s) if port_s else DEFAULT_PORT
        except ValueError:
            raise ValueError("the port is not a number") from None  # (it may hold a password)
        hosts.append((unquote(host) or "localhost", port))
    db = unquote(parts.path.lstrip("/"))
    if not hosts:
        hosts = [("localhost", DEFAULT_PORT)]
    if not db:
        raise ValueError("names no database (write .../dbname at the end)")
    options: dict[str, str] = {}
    search_path = None
    for k, v in parse_qsl(parts.query, keep_blank_values=True):
        lk = k.lower()
        if lk in ("currentschema", "search_path"):
            search_path = v
        elif lk == "ssl" and v.lower() == "true":
            options.setdefault("sslmode", "require")
        elif lk == "user":
            user = v
        elif lk == "password":
            password = v
        elif lk in _JDBC_PARAMS:
            options[_JDBC_PARAMS[lk]] = v
        elif k in ("application_name", "connect_timeout", "target_session_attrs", "sslmode"):
            options[k] = v
    if search_path:
        opt = options.get("options", "")
        options["options"] = (opt + " " if opt else "") + f"-c search_path={search_path}"
    return Endpoint(tuple(hosts), db, user, password, tuple(sorted(options.items())))


#: what a data source of kind postgresql may hold (see :func:`endpoint_of`)
_DATASOURCE_KEYS = (
    "kind", "url", "jdbcUrl", "host", "port", "database", "dbname", "user", "username", "password"
)  # fmt: skip


def endpoint_of(
    p: Params, settings: dict[str, Any] | None, urls: list[Any], key: str
) -> list[Endpoint]:
    """The endpoints (alternates) of one connection entry, or problems recorded on ``p``.

    ``settings`` is a named data source's settings (or None); ``urls`` the entry's ``jdbcUrl``
    values (or the ``url`` parameter); ``key`` the key path of those URLs, for messages.
    """
    user = p.str("username", aliases=("user",))
    password = p.str("password")
    out: list[Endpoint] = []
    if settings is not None:
        kind = str(settings.get("kind", "postgresql")).lower()
        if kind not in ("postgresql", "postgres"):
            p.problem("datasource", f"is a {kind} connection, not postgresql")
            return []
        from tidesync.connections import database_keys

        wrong = database_keys(settings, str(p.raw.get("datasource")), _DATASOURCE_KEYS)
        if wrong:
            p.problems += wrong
            return []
        url = settings.get("url") or settings.get("jdbcUrl")
        try:
            if url:
                ep = parse_url(str(url))
            else:
                host = settings.get("host") or "localhost"
                db = settings.get("database") or settings.get("dbname")
                if not db:
                    p.problem(
                        "datasource",
                        "the connection needs 'url' or 'database' (with host, port, user)",
                    )
                    return []
                ep = Endpoint(((str(host), int(settings.get("port") or DEFAULT_PORT)),), str(db))
        except (ValueError, TypeError) as e:
            p.problem("datasource", f"url {redact(str(url))!r} {e}")
            return []
        ep = ep.with_credentials(
            settings.get("user") or settings.get("username"), settings.get("password")
        )
        out.append(ep.with_credentials(user, password))
        return out
    for i, u in enumerate(urls):
        where = f"{key}[{i}]" if len(urls) > 1 else key
        if not isinstance(u, str) or not u.strip():
            p.problem(where, "must be a URL such as jdbc:postgresql://127.0.0.1:5432/db")
            continue
        try:
            out.append(parse_url(u).with_credentials(user, password))
        except ValueError as e:
            p.problem(where, f"{redact(u)!r} {e}")
    return out


def resolve_datasource(
    p: Params, ctx_connections: dict[str, dict[str, Any]]
) -> dict[str, Any] | None:
    name = p.str("datasource")
    if name is None:
        return None
    try:
        return connection(ctx_connections, name, p.ctx.path("datasource"))
    except ConfigError as e:
        p.problems.extend(e.problems)
        return None


# -- errors -----------------------------------------------------------------------------------


def sqlstate(e: BaseException) -> str | None:
    """The SQLSTATE of a psycopg or ADBC error, if the server sent one."""
    code = getattr(e, "sqlstate", None)
    if code:
        return str(code)
    diag = getattr(e, "diag", None)
    return getattr(diag, "sqlstate", None) if diag is not None else None


_REPR = re.compile(r"\s*<psycopg\.[A-Za-z.]+ [^<>]{0,200}>")


def _message(e: BaseException) -> str:
    diag = getattr(e, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    if primary:
        detail = getattr(diag, "message_detail", None)
        return primary + (f" ({detail})" if detail else "")
    text = str(e).strip()
    # ADBC: "NOT_FOUND: Failed to prepare query: ERROR:  x\nLINE 1: ...\nQuery was: ... SQLSTATE: 42703",
    # "IO: Execution error [PGRES_FATAL_ERROR]: FATAL:  terminating connection ..."
    for mark in ("ERROR:", "FATAL:"):
        if mark in text:
            text = text.split(mark, 1)[1]
            break
    for cut in ("\nQuery was:", "\nLINE ", ". SQLSTATE:", "\n\tIs the server"):
        text = text.split(cut, 1)[0]
    text = _REPR.sub("", text)  # psycopg names its objects: <psycopg.Copy [BAD] at 0x7f...>
    return " ".join(text.replace("[libpq]", "").split())


#: exceptions that Python code raises on a bug (psycopg and ADBC raise their own classes)
_OURS = (LookupError, TypeError, AttributeError, ArithmeticError, AssertionError)


def translate(
    e: BaseException,
    endpoint: Endpoint,
    *,
    table: str = "",
    split: str = "",
    where: str = "",
    connecting: bool = False,
) -> TidesyncError:
    """A psycopg/ADBC exception as a tidesync error.

    Connecting fails -> FatalError naming ``host:port/db``; SQLSTATE class 42 (no such table or
    column, syntax) -> ConfigError naming the key path ``where``; lost connections,
    serialization failures and lock timeouts -> RetriableError; the rest -> FatalError.
    """
    if isinstance(e, TidesyncError):
        return e
    code = sqlstate(e)
    msg = redact(_message(e))
    place = ", ".join(
        x for x in (f"table {table}" if table else "", f"split {split}" if split else "") if x
    )
    suffix = (f" [{code}]" if code else "") + (f" ({place})" if place else "")
    if connecting and (code is None or code.startswith(("08", "28", "3D", "53", "57"))):
        cls = RetriableError if code in ("57P01", "57P02", "57P03") else FatalError  # shutting down
        return cls(f"cannot connect to PostgreSQL at {endpoint.label}: {msg}{suffix}", code=code)
    if code and code.startswith("42") and where:
        return ConfigError(f"{where}: {msg}{suffix}", code=code)
    if code is None and isinstance(e, _OURS):
        # a fault of tidesync's own code, not of the link: retrying would fail the same way
        return FatalError(
            f"reading PostgreSQL at {endpoint.label} failed in tidesync itself "
            f"({type(e).__name__}: {msg}){suffix}; please report it"
        )
    if code is None or code.startswith(_RETRIABLE):
        lost = (
            "connection to PostgreSQL lost"
            if code is None or code.startswith("08")
            else "PostgreSQL"
        )
        return RetriableError(f"{lost} at {endpoint.label}: {msg}{suffix}", code=code)
    return FatalError(f"PostgreSQL at {endpoint.label}: {msg}{suffix}", code=code)


@contextmanager
def edge(endpoint: Endpoint, **kw: Any) -> Iterator[None]:
    """Translate driver exceptions raised inside the block (see :func:`translate`)."""
    try:
        yield
    except TidesyncError:
        raise
    except Exception as e:
        if not _is_driver_error(e):
            raise
        raise translate(e, endpoint, **kw) from e


def _is_driver_error(e: BaseException) -> bool:
    mod = type(e).__module__ or ""
    return mod.startswith(("psycopg", "adbc_driver"))


def quote_ident(name: str) -> str:
    """``"name"``, doubling embedded quotes: exact case, reserved words and unicode kept."""
    return '"' + name.replace('"', '""') + '"'


# -- connections and the catalog ----------------------------------------------------------------


def psycopg_module() -> Any:
    try:
        import psycopg
    except ModuleNotFoundError:
        raise ConfigError(
            "the postgresql connector needs psycopg: pip install 'tidesync[postgresql]'"
        ) from None
    return psycopg


def strings(p: Params, key: str, raw: Any, what: str) -> list[str]:
    """A parameter holding one string or a list of them; problems named by key path."""
    vals = raw if isinstance(raw, list) else [raw]
    out = []
    for i, v in enumerate(vals):
        if not isinstance(v, str) or not v.strip():
            p.problem(f"{key}[{i}]" if isinstance(raw, list) else key, f"must be {what}, got {v!r}")
        else:
            out.append(v.strip())
    return out


def session_of(p: Params) -> list[str]:
    """``session``: statements run on every connection after it opens."""
    raw = p.list("session", []) or []
    return (
        strings(p, "session", raw, "an SQL statement such as \"SET work_mem = '64MB'\"")
        if raw
        else []
    )


def literal_text(s: str) -> str:
    """``s`` as an SQL string literal (standard_conforming_strings, the default since 9.1)."""
    return "'" + s.replace("'", "''") + "'"


def connect(
    endpoints: list[Endpoint],
    session: list[str],
    timezone: str,
    *,
    autocommit: bool,
    where: str = "session",
) -> tuple[Any, Endpoint]:
    """A psycopg connection to the first endpoint that answers (DataX alternates), its time zone
    set to the job's and ``session`` run."""
    psycopg = psycopg_module()
    last: Exception | None = None
    for ep in endpoints:
        try:
            conn = psycopg.connect(**ep.kwargs(), autocommit=autocommit)
        except psycopg.Error as e:
            last = e
            continue
        try:
            with edge(ep, where=where):
                for stmt in [f"SET TIME ZONE {literal_text(timezone)}", *session]:
                    conn.execute(stmt)
        except BaseException:
            conn.close()
            raise
        return conn, ep
    assert last is not None
    raise translate(last, endpoints[-1], connecting=True) from last


@dataclass
class Table:
    """A resolved relation."""

    oid: int
    qualified: str  # "schema"."name", quoted
    kind: str  # relkind: r table, v view, m materialized view, p partitioned, f foreign
    rows: float  # the planner's estimate
    columns: dict[str, tuple[int, bool, int]]  # name -> (type oid, not null, collation)

    def match(self, name: str) -> str | None:
        """The column ``name`` designates: exact, else the one equal ignoring case."""
        if name in self.columns:
            return name
        folded = [c for c in self.columns if c.lower() == name.lower()]
        return folded[0] if len(folded) == 1 else None


def resolve_table(
    conn: Any, name: str, ep: Endpoint, where: str, *, missing_ok: bool = False
) -> Table | None:
    """Find ``name`` as written (exact case first, then as SQL would fold it); a ConfigError
    naming ``where`` with a suggestion when there is none (None with ``missing_ok``)."""
    from tidesync.connectors.sql import split_name

    candidates = [".".join(quote_ident(x) for x in split_name(name, '"'))]
    if '"' not in name:
        candidates.append(name)
    row = None
    for cand in candidates:
        try:
            with conn.transaction():
                row = conn.execute(
                    "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname), "
                    "c.relkind, c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.oid = to_regclass(%s)",
                    (cand,),
                ).fetchone()
        except Exception as e:  # invalid name syntax: try the next reading
            if sqlstate(e) is None:
                raise
            row = None
        if row:
            break
    if row is None:
        if missing_ok:
            return None
        known = [
            r[0]
            for r in conn.execute(
                "SELECT relname FROM pg_class WHERE relkind IN ('r','v','m','p','f') "
                "AND pg_table_is_visible(oid) ORDER BY 1"
            ).fetchall()
        ]
        raise ConfigError(
            f"{where}: table {name!r} not found in {ep.label}{did_you_mean(name, known)}"
        )
    oid, qualified, kind, rows = row
    cols = conn.execute(
        "SELECT attname, atttypid, attnotnull, attcollation FROM pg_attribute "
        "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (oid,),
    ).fetchall()
    return Table(
        int(oid),
        qualified,
        str(kind),
        float(rows or 0),
        {c[0]: (int(c[1]), bool(c[2]), int(c[3])) for c in cols},
    )
