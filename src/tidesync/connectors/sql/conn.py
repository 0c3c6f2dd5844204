"""What SQL connectors share below reading and writing: jdbc URLs, embedded database paths, dialects and quoting, the DataX connection list."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

from tidesync.connectors.base import Context, Params
from tidesync.errors import redact


@dataclass(frozen=True)
class JdbcUrl:
    """A parsed ``jdbc:`` URL. Embedded databases fill ``path``; servers the rest."""

    scheme: str  # sqlite, duckdb, postgresql, mysql, mariadb, ...
    path: str = ""  # embedded: the file as written ("" or ":memory:" = in memory)
    host: str = ""  # servers: "h" or "h1,h2" (MySQL fail-over lists stay as written)
    port: int | None = None
    database: str = ""
    user: str = ""
    password: str = ""
    options: tuple[tuple[str, str], ...] = ()  # ?k=v&... in order
    raw: str = ""

    def option(self, name: str, default: str | None = None) -> str | None:
        for k, v in self.options:
            if k.lower() == name.lower():
                return v
        return default

    def __str__(self) -> str:
        return redact(self.raw)


EMBEDDED = frozenset({"sqlite", "duckdb"})


_SERVER_URL = re.compile(
    r"^(?:(?P<user>[^:@/]*)(?::(?P<pw>[^/]*))?@)?(?P<host>\[[^\]]+\]|[^:/?@]*)(?::(?P<port>\d+))?"
    r"(?:/(?P<db>[^?]*))?(?:\?(?P<q>.*))?$"
)


def check_userinfo(rest: str) -> None:
    """Refuse a server URL (``rest`` is what follows ``//``) whose password holds ``/``
    unencoded: where its host begins cannot be told for sure. ValueError, never the password."""
    authority = len(rest)
    for stop in "/?#":
        j = rest.find(stop)
        if 0 <= j < authority:
            authority = j
    query = min((j for j in (rest.find("?"), rest.find("#")) if j >= 0), default=len(rest))
    if "@" not in rest[:authority] and "@" in rest[authority:query]:
        raise ValueError(
            "the password in the URL holds '/' (or an '@' follows the host): percent-encode it "
            "('/' is %2F, '@' is %40) or give it as password"
        )


def parse_jdbc_url(url: str) -> JdbcUrl:
    """Parse ``jdbc:sqlite:PATH``, ``jdbc:sqlite:file:PATH?k=v``, ``jdbc:duckdb:PATH``,
    ``jdbc:postgresql://[user[:pw]@]host[:port][/db][?k=v&...]``, ``jdbc:mysql://...`` and the
    same without the ``jdbc:`` prefix. Raises ValueError with a message naming the expected form.

    >>> parse_jdbc_url("jdbc:mysql://u:pw@db1:3307/shop?useSSL=false").port
    3307
    >>> parse_jdbc_url("jdbc:sqlite:data/app.db").path
    'data/app.db'
    """
    if not isinstance(url, str) or not url.strip():
        raise ValueError("must be a jdbc URL such as jdbc:sqlite:PATH or jdbc:mysql://host:3306/db")
    raw = url.strip()
    rest = raw[5:] if raw.lower().startswith("jdbc:") else raw
    scheme, sep, body = rest.partition(":")
    scheme = scheme.lower()
    if not sep or not scheme.replace("-", "").isalnum():
        raise ValueError(
            f"{redact(raw)!r} is not a jdbc URL; write jdbc:<kind>:..., e.g. jdbc:sqlite:PATH"
        )
    if scheme in EMBEDDED:
        path = body[2:] if body.startswith("///") else body  # jdbc:sqlite:///abs/path
        options: tuple[tuple[str, str], ...] = ()
        if path.startswith("file:"):
            path, _, q = path[5:].partition("?")
            options = tuple(parse_qsl(q))
            path = unquote(path)
        return JdbcUrl(scheme, path=path, options=options, raw=raw)
    if not body.startswith("//"):
        raise ValueError(f"{redact(raw)!r}: write jdbc:{scheme}://host[:port]/database")
    try:
        check_userinfo(body[2:])
    except ValueError as e:
        raise ValueError(f"{redact(raw)!r}: {e}") from None
    m = _SERVER_URL.match(body[2:])
    if m is None or not m["host"]:
        raise ValueError(f"{redact(raw)!r}: write jdbc:{scheme}://host[:port]/database")
    return JdbcUrl(
        scheme,
        host=m["host"].strip("[]"),
        port=int(m["port"]) if m["port"] else None,
        database=unquote(m["db"] or ""),
        user=unquote(m["user"] or ""),
        password=unquote(m["pw"] or ""),
        options=tuple(parse_qsl(m["q"] or "")),
        raw=raw,
    )


def database_path(text: str, scheme: str, ctx: Context) -> Path:
    """The file an embedded database names: ``jdbc:SCHEME:PATH`` or a bare path, relative paths
    resolved with ``ctx.resolve_path``. In-memory databases and other kinds raise ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"must be a file path or jdbc:{scheme}:PATH")
    text = text.strip()
    if text.lower().startswith("jdbc:"):
        url = parse_jdbc_url(text)
        if url.scheme != scheme:
            raise ValueError(f"{str(url)!r} is not a {scheme} database; write jdbc:{scheme}:PATH")
        text = url.path
    if text in ("", ":memory:") or text.startswith(":memory:"):
        raise ValueError(
            f"an in-memory {scheme} database holds nothing another connection sees; name a file"
        )
    return ctx.resolve_path(text)


_IDENT = re.compile(r"^[^\W\d]\w*$")


def is_identifier(text: str) -> bool:
    """A plain name (letters of any script, digits, ``_``; not starting with a digit)."""
    return bool(_IDENT.match(text))


def split_name(name: str, quotes: str = '"`') -> tuple[str, ...]:
    """``'main."Order"'`` -> ``('main', 'Order')``: dots outside quotes separate the parts;
    quoted parts lose their quotes (doubled quotes inside are unescaped)."""
    parts: list[str] = []
    buf: list[str] = []
    i, n = 0, len(name)
    while i < n:
        ch = name[i]
        if ch in quotes and not buf:
            j = i + 1
            while j < n:
                if name[j] == ch:
                    if j + 1 < n and name[j + 1] == ch:
                        buf.append(ch)
                        j += 2
                        continue
                    break
                buf.append(name[j])
                j += 1
            i = j + 1
            parts.append("".join(buf))
            buf = []
            if i < n and name[i] == ".":
                i += 1
            continue
        if ch == ".":
            parts.append("".join(buf).strip())
            buf = []
        else:
            buf.append(ch)
        i += 1
    if buf or not parts:
        parts.append("".join(buf).strip())
    return tuple(parts)


@dataclass(frozen=True)
class Dialect:
    """How one database spells things. ``placeholder`` is the DB-API parameter marker;
    ``upsert`` names the conflict clause (``ON CONFLICT`` or MySQL's ``ON DUPLICATE KEY``);
    ``pseudo_columns`` are names a table answers to without listing them (sqlite ``rowid``)."""

    name: str
    quote: str = '"'
    placeholder: str = "?"
    upsert: Literal["on_conflict", "on_duplicate_key"] = "on_conflict"
    pseudo_columns: tuple[str, ...] = ()

    def ident(self, name: str) -> str:
        """Quote one name: ``Order`` -> ``"Order"``, ``a"b`` -> ``"a""b"``."""
        q = self.quote
        return f"{q}{name.replace(q, q + q)}{q}"

    def table(self, name: str) -> str:
        """Quote a possibly qualified table name: ``sales.Order`` -> ``"sales"."Order"``."""
        return ".".join(self.ident(p) for p in split_name(name))


SQLITE = Dialect("sqlite", pseudo_columns=("rowid", "oid", "_rowid_"))


DUCKDB = Dialect("duckdb", pseudo_columns=("rowid",))


POSTGRESQL = Dialect("postgresql", placeholder="%s", pseudo_columns=("ctid", "xmin"))


MYSQL = Dialect("mysql", quote="`", placeholder="%s", upsert="on_duplicate_key")


def _find(name: str, known: Sequence[str]) -> str | None:
    if name in known:
        return name
    folded = [k for k in known if k.lower() == name.lower()]
    return folded[0] if len(folded) == 1 else None


@dataclass
class Target:
    """One database of a job and what to read or write there.

    ``urls`` are the candidates as written (a DataX reader's ``jdbcUrl`` list names alternatives
    of one database: use the first that works); ``url_key`` / ``table_key`` are key paths for
    messages (``connection[0].jdbcUrl``), relative to the connector's parameters.
    """

    urls: list[str]
    url_key: str
    tables: list[str] = field(default_factory=list)
    table_key: str = "table"
    queries: list[str] = field(default_factory=list)
    query_key: str = "querySql"


def _strings(p: Params, key: str, value: Any) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out = []
    for i, v in enumerate(items):
        if isinstance(v, str) and v.strip():
            out.append(v.strip())
        else:
            p.problem(
                f"{key}[{i}]" if isinstance(value, list) else key,
                f"must be a non-empty string, got {v!r}",
            )
    return out


def _targets(p: Params, *, database_key: str, queries: bool = True) -> list[Target]:
    conns = p.get("connection")
    if conns is not None:
        if isinstance(conns, dict):
            conns = [conns]
        if not isinstance(conns, list) or not conns:
            p.problem(
                "connection", "must be a list of objects such as [{jdbcUrl: [...], table: [...]}]"
            )
            return []
        out = []
        for i, c in enumerate(conns):
            k = f"connection[{i}]"
            if not isinstance(c, dict):
                p.problem(k, f"must be an object with jdbcUrl and table, got {type(c).__name__}")
                continue
            p.check_keys(
                c, k, ("jdbcUrl", database_key, "table", *(("querySql",) if queries else ()))
            )
            url_name = "jdbcUrl" if c.get("jdbcUrl") not in (None, "", []) else database_key
            if url_name != database_key and c.get(database_key) not in (None, "", []):
                # two databases named: which one is read or written would be a guess
                p.problem(
                    f"{k}.{database_key}",
                    f"is given beside {k}.jdbcUrl, another way to name the database; keep one",
                )
            urls = c.get(url_name)
            if urls in (None, "", []):
                p.problem(f"{k}.jdbcUrl", "is required")
                urls = []
            out.append(
                Target(
                    urls=_strings(p, f"{k}.{url_name}", urls) if urls else [],
                    url_key=f"{k}.{url_name}",
                    tables=_strings(p, f"{k}.table", c["table"])
                    if c.get("table") not in (None, "", [])
                    else [],
                    table_key=f"{k}.table",
                    queries=_strings(p, f"{k}.querySql", c["querySql"])
                    if c.get("querySql") not in (None, "", [])
                    else [],
                    query_key=f"{k}.querySql",
                )
            )
        return out
    url_name = "jdbcUrl" if p.get("jdbcUrl") is not None else database_key
    urls = p.get(url_name)
    if urls is None:
        p.problem(
            database_key,
            "is required, or write connection: [{jdbcUrl: [...], table: [...]}]",
        )
        return []
    return [Target(urls=_strings(p, url_name, urls), url_key=url_name)]
