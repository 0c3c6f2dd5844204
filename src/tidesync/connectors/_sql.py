"""What SQL connectors share: DataX-shaped parameters, jdbc URLs, quoting, SELECTs, key ranges.

Used by the embedded databases (``sqlite``, ``duckdb``) and the servers (``postgresql``,
``mysql``); nothing here opens a connection. A connector

1. reads its parameters with :func:`read_options` / :func:`write_options`, which record every
   problem on the ``Params`` with its key path (``connection[0].table``); the reader then holds
   :class:`Target` s (a database's candidate URLs, its tables or queries);
2. turns a target's URL into a connection: :func:`parse_jdbc_url` (servers) or
   :func:`database_path` (embedded files);
3. builds its SQL with a :class:`Dialect` (``SQLITE``, ``DUCKDB``, ``POSTGRESQL``, ``MYSQL``):
   :meth:`Dialect.table` / :meth:`Dialect.ident` quote names, :func:`column_sql` turns a DataX
   ``column`` entry into a select-list item, :func:`select_sql` makes the SELECT,
   :func:`key_ranges` (+ :meth:`KeyRange.sql`, :func:`null_predicate`) the ``splitPk`` splits,
   :func:`write_statements` the INSERT / upsert of each write mode, :func:`expand_table` the
   ``@table`` of preSql/postSql;
4. optionally subclasses :class:`SqlReader` (fill in ``locate``, ``connect``,
   ``table_columns``; write ``schema`` and ``read``) to get table checks and ``splits(n)`` made of
   :class:`QuerySplit` s, and checks a writer's incoming columns against a :class:`TableInfo`
   with :func:`bind` (column mapping, key of replace/update, required columns).

Example, a sqlite reader's split SQL::

    >>> d = SQLITE
    >>> cols = [column_sql(d, c, known=["id", "select"]) for c in ["id", "select", "'x'"]]
    >>> [r.sql(d, "id") for r in key_ranges(1, 10, 2)]
    ['"id" >= 1 AND "id" < 6', '"id" >= 6 AND "id" <= 10']
    >>> select_sql(d, "Order", cols, where="id > 0", predicate='"id" IS NULL')
    'SELECT "id", "select", \\'x\\' FROM "Order" WHERE (id > 0) AND ("id" IS NULL)'
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, unquote

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors._lake_common import parse_partition, partition_value
from tidesync.connectors.base import Context, Params, Reader, Split, Writer
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, did_you_mean, redact

__all__ = [
    "DELETED",
    "check_partition",
    "check_table_modes",
    "mapped_names",
    "marker_flags",
    "with_added",
    "partition_columns",
    "partition_where",
    "shape_for_partition",
    "split_deleted",
    "table_modes",
    "typed_value",
    "JdbcUrl",
    "parse_jdbc_url",
    "database_path",
    "Dialect",
    "SQLITE",
    "DUCKDB",
    "POSTGRESQL",
    "MYSQL",
    "split_name",
    "is_identifier",
    "column_sql",
    "select_sql",
    "KeyRange",
    "key_ranges",
    "null_predicate",
    "Statement",
    "write_statements",
    "expand_table",
    "Target",
    "ReadOptions",
    "WriteOptions",
    "read_options",
    "write_options",
    "WRITE_MODES",
    "QuerySplit",
    "Source",
    "SqlReader",
    "TableInfo",
    "Binding",
    "bind",
    "same_columns",
    "require_table",
    "created_names",
    "make_parents",
    "remove_created",
]

# -- jdbc URLs ---------------------------------------------------------------------------------


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
    r"^(?:(?P<user>[^:@/]*)(?::(?P<pw>[^@/]*))?@)?(?P<host>\[[^\]]+\]|[^:/?]*)(?::(?P<port>\d+))?"
    r"(?:/(?P<db>[^?]*))?(?:\?(?P<q>.*))?$"
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


# -- names and SELECTs -------------------------------------------------------------------------

_IDENT = re.compile(r"^[^\W\d]\w*$")
#: words a ``column`` entry may hold as a value, not a name (unless the table has such a column)
_LITERAL_WORDS = frozenset(
    {
        "null",
        "true",
        "false",
        "current_date",
        "current_time",
        "current_timestamp",
        "localtime",
        "localtimestamp",
    }
)


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


def column_sql(
    dialect: Dialect, column: str, known: Sequence[str] | None = None, table: str = ""
) -> str:
    """One DataX ``column`` entry as a select-list item.

    A name of the table (``known``, matched exactly, then ignoring case) or any plain identifier
    is quoted (``select`` -> ``"select"``, ``名字`` -> ``"名字"``); ``*``, constants (``1``,
    ``'abc'``, ``null``) and expressions (``upper(name)``, ``"already quoted"``) pass as written.
    With ``known``, a plain identifier the table lacks raises ValueError with a suggestion,
    because most databases would read it as an error or, worse, sqlite as a string.
    """
    text = column.strip()
    if known is not None:
        found = _find(text, known)
        if found is not None:
            return dialect.ident(found)
        if text.lower() in dialect.pseudo_columns:
            return text
    if text == "*" or not is_identifier(text) or text.lower() in _LITERAL_WORDS:
        return text
    if known is not None:
        where = f"table {table}" if table else "the table"
        raise ValueError(f"{text!r} is not a column of {where}{did_you_mean(text, known)}")
    return dialect.ident(text)


def select_sql(
    dialect: Dialect,
    table: str,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    predicate: str | None = None,
) -> str:
    """``SELECT cols FROM table [WHERE (where) AND (predicate)]``; ``columns`` are select-list
    items already made by :func:`column_sql` (None: ``*``)."""
    sql = f"SELECT {', '.join(columns) if columns else '*'} FROM {dialect.table(table)}"
    conds = [c for c in (where, predicate) if c and c.strip()]
    if conds:
        sql += " WHERE " + " AND ".join(f"({c})" for c in conds)
    return sql


@dataclass(frozen=True)
class KeyRange:
    """Integer key values ``[lo, hi)``, or ``[lo, hi]`` when ``closed`` (the last range)."""

    lo: int
    hi: int
    closed: bool = False

    def sql(self, dialect: Dialect, key: str) -> str:
        k = dialect.ident(key)
        return f"{k} >= {self.lo} AND {k} {'<=' if self.closed else '<'} {self.hi}"

    def label(self) -> str:
        return f"[{self.lo}, {self.hi}{']' if self.closed else ')'}"


def key_ranges(lo: int, hi: int, n: int) -> list[KeyRange]:
    """Split the integer values ``[lo, hi]`` into at most ``n`` ranges of near-equal width that
    cover every value once: half-open, the last one closed (so ``hi`` at the type's limit needs
    no ``hi + 1``). Fewer ranges when there are fewer values than ``n``."""
    if hi < lo:
        raise ValueError(f"empty key range [{lo}, {hi}]")
    span = hi - lo + 1
    k = max(1, min(n, span))
    bounds = [lo + (span * i) // k for i in range(k)]
    return [KeyRange(b, bounds[i + 1]) for i, b in enumerate(bounds[:-1])] + [
        KeyRange(bounds[-1], hi, True)
    ]


def null_predicate(dialect: Dialect, key: str) -> str:
    """The predicate of the split that reads rows whose key is NULL (no range holds them)."""
    return f"{dialect.ident(key)} IS NULL"


# -- writing -----------------------------------------------------------------------------------

WRITE_MODES = ("insert", "replace", "update", "truncate", "overwrite", "merge")


@dataclass(frozen=True)
class Statement:
    """One statement of a write. With a ``source`` it needs no parameters; without, it runs
    ``executemany`` with rows made of the batch columns at ``params`` (indices into ``columns``),
    in that order."""

    sql: str
    params: tuple[int, ...] = ()


def write_statements(
    dialect: Dialect,
    table: str,
    columns: Sequence[str],
    *,
    mode: str,
    keys: Sequence[str] = (),
    conflict_target: bool = False,
    source: str | None = None,
) -> list[Statement]:
    """The statements that write rows of ``columns`` into ``table`` in ``mode``.

    - ``insert`` / ``truncate``: one INSERT (truncate's DELETE is the connector's, once).
    - ``replace`` (whole row by ``keys``): DELETE the rows with those keys, then INSERT; works
      with or without a unique constraint, and columns not written get their defaults.
    - ``update`` (only the written columns): with ``conflict_target`` (a PRIMARY KEY / UNIQUE
      constraint on exactly ``keys``) one ``INSERT ... ON CONFLICT (keys) DO UPDATE`` (MySQL:
      ``ON DUPLICATE KEY UPDATE``); without one, UPDATE the matching rows, then INSERT the rows
      whose key is not there yet.

    ``source`` is a subquery (or registered relation) holding the rows with the target's column
    names; then the statements are set-based and take no parameters. Without it they use
    ``dialect.placeholder`` for ``executemany``. Rows must be unique by ``keys`` in ``replace``
    and ``update`` (keep the last one of each key before calling).
    """
    # overwrite's DELETE of the partition is the connector's, once; merge upserts as replace
    mode = {"overwrite": "insert", "merge": "replace"}.get(mode, mode)
    t = dialect.table(table)
    cols = [dialect.ident(c) for c in columns]
    col_list = ", ".join(cols)
    n = len(columns)
    if mode in ("replace", "update") and not keys:
        raise ValueError(f"writeMode {mode!r} needs key columns")
    key_idx = tuple(list(columns).index(k) for k in keys)
    rest_idx = tuple(i for i in range(n) if i not in key_idx)
    ph = dialect.placeholder
    src = f"(SELECT {col_list} FROM {source}) AS s" if source else ""

    def insert(suffix: str = "") -> Statement:
        if source:
            return Statement(
                f"INSERT INTO {t} ({col_list}) SELECT {col_list} FROM {src} WHERE true{suffix}"
            )
        return Statement(
            f"INSERT INTO {t} ({col_list}) VALUES ({', '.join([ph] * n)}){suffix}", tuple(range(n))
        )

    def key_match(left: str, right: str) -> str:
        return " AND ".join(f"{left}{cols[i]} = {right}{cols[i]}" for i in key_idx)

    if mode in ("insert", "truncate"):
        return [insert()]
    kcols = [cols[i] for i in key_idx]
    if mode == "replace":
        if source:
            lhs = kcols[0] if len(kcols) == 1 else f"({', '.join(kcols)})"
            delete = Statement(
                f"DELETE FROM {t} WHERE {lhs} IN (SELECT {', '.join(kcols)} FROM {src})"
            )
        else:
            delete = Statement(
                f"DELETE FROM {t} WHERE {' AND '.join(f'{k} = {ph}' for k in kcols)}", key_idx
            )
        return [delete, insert()]
    if mode != "update":
        raise ValueError(f"unknown writeMode {mode!r}")
    if conflict_target:
        if dialect.upsert == "on_duplicate_key":
            sets = (
                ", ".join(f"{cols[i]} = VALUES({cols[i]})" for i in rest_idx)
                or f"{kcols[0]} = {kcols[0]}"
            )
            return [insert(f" ON DUPLICATE KEY UPDATE {sets}")]
        sets = ", ".join(f"{cols[i]} = excluded.{cols[i]}" for i in rest_idx)
        action = f"DO UPDATE SET {sets}" if sets else "DO NOTHING"
        return [insert(f" ON CONFLICT ({', '.join(kcols)}) {action}")]
    out: list[Statement] = []
    if source:
        if rest_idx:
            sets = ", ".join(f"{cols[i]} = s.{cols[i]}" for i in rest_idx)
            out.append(
                Statement(f"UPDATE {t} SET {sets} FROM {src} WHERE {key_match(t + '.', 's.')}")
            )
        out.append(
            Statement(
                f"INSERT INTO {t} ({col_list}) SELECT {col_list} FROM {src} "
                f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {key_match(t + '.', 's.')})"
            )
        )
        return out
    if rest_idx:
        sets = ", ".join(f"{cols[i]} = {ph}" for i in rest_idx)
        where = " AND ".join(f"{k} = {ph}" for k in kcols)
        out.append(Statement(f"UPDATE {t} SET {sets} WHERE {where}", rest_idx + key_idx))
    where = " AND ".join(f"{k} = {ph}" for k in kcols)
    out.append(
        Statement(
            f"INSERT INTO {t} ({col_list}) SELECT {', '.join([ph] * n)} "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {where})",
            tuple(range(n)) + key_idx,
        )
    )
    return out


def expand_table(sql: str, table_sql: str) -> str:
    """DataX's ``@table`` in preSql/postSql, replaced by the quoted target table."""
    return sql.replace("@table", table_sql)


# -- parameters --------------------------------------------------------------------------------


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


@dataclass
class ReadOptions:
    targets: list[Target]
    columns: list[str] | None  # None: every column (``*``)
    column_key: str
    where: str | None
    split_pk: str | None
    fetch_size: int
    session: list[str]


@dataclass
class WriteOptions:
    target: Target
    table: str
    columns: list[str] | None  # target names in the order of the incoming columns; None: by name
    mode: str
    primary_key: list[str] | None
    pre_sql: list[str]
    post_sql: list[str]
    batch_size: int
    session: list[str]


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


def _targets(p: Params, *, database_key: str) -> list[Target]:
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
            url_name = "jdbcUrl" if c.get("jdbcUrl") not in (None, "", []) else database_key
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


def _query(sql: str) -> str:
    return sql.rstrip().rstrip(";").rstrip()


def read_options(p: Params, *, fetch_size: int, database_key: str = "database") -> ReadOptions:
    """Read a DataX-shaped reader's parameters: ``connection`` (``[{jdbcUrl: [..], table: [..],
    querySql: [..]}]``) or ``jdbcUrl``/``database`` + ``table``; ``column``, ``where``,
    ``querySql`` (top level or per connection; it overrides table/column/where), ``splitPk``,
    ``fetchSize``, ``session``. Problems are recorded on ``p``; call ``p.done()`` after."""
    targets = _targets(p, database_key=database_key)
    top_tables = p.list("table")
    top_queries = p.list("querySql")
    for t in targets:
        if top_tables and not t.tables:
            t.tables = _strings(p, "table", p.get("table"))
            t.table_key = "table"
        if top_queries and not t.queries:
            t.queries = _strings(p, "querySql", p.get("querySql"))
            t.query_key = "querySql"
        t.queries = [_query(q) for q in t.queries]
        if not t.tables and not t.queries:
            p.problem(t.table_key, "is required (or querySql): name the table(s) to read")
    columns = p.list("column")
    cols: list[str] | None = None
    if columns is not None:
        cols = _strings(p, "column", p.get("column"))
        if cols == ["*"] or not cols:
            cols = None
    where = p.str("where")
    split_pk = p.str("splitPk")
    return ReadOptions(
        targets=targets,
        columns=cols,
        column_key="column",
        where=where.strip() if where and where.strip() else None,
        split_pk=split_pk.strip() if split_pk and split_pk.strip() else None,
        fetch_size=p.int("fetchSize", fetch_size, minimum=1),
        session=_strings(p, "session", p.get("session")) if p.get("session") else [],
    )


def write_options(
    w: Writer,
    *,
    batch_size: int,
    database_key: str = "database",
    mode_aliases: dict[str, str] | None = None,
) -> WriteOptions:
    """Read a DataX-shaped writer's parameters: ``connection`` (``[{jdbcUrl: "..", table:
    [..]}]``, one database, one table) or ``jdbcUrl``/``database`` + ``table``; ``column``,
    ``writeMode`` (checked against ``w.modes``), ``primaryKey``, ``preSql``, ``postSql``,
    ``batchSize``, ``session``. Problems are recorded on ``w.p``; call ``w.p.done()`` after."""
    p = w.p
    targets = _targets(p, database_key=database_key)
    if len(targets) > 1:
        p.problem("connection", f"a writer writes one database; got {len(targets)} connections")
    target = targets[0] if targets else Target(urls=[], url_key=database_key)
    if len(target.urls) > 1:
        p.problem(target.url_key, f"a writer writes one database; got {len(target.urls)} URLs")
    if not target.tables and p.get("table") is not None:
        target.tables = _strings(p, "table", p.get("table"))
        target.table_key = "table"
    table = ""
    if not target.tables:
        p.problem(target.table_key, "is required: name the table to write")
    elif len(target.tables) > 1:
        p.problem(target.table_key, f"a writer writes one table; got {target.tables}")
    else:
        table = target.tables[0]
    cols: list[str] | None = None
    if p.get("column") is not None:
        cols = _strings(p, "column", p.get("column"))
        if cols == ["*"] or not cols:
            cols = None
        elif len({c.lower() for c in cols}) != len(cols):
            p.problem("column", f"names a column twice: {cols}")
    mode = w.write_mode({"append": "insert", **(mode_aliases or {})})
    pk = p.get("primaryKey")
    primary_key = _strings(p, "primaryKey", pk) if pk not in (None, []) else None
    return WriteOptions(
        target=target,
        table=table,
        columns=cols,
        mode=mode,
        primary_key=primary_key,
        pre_sql=_strings(p, "preSql", p.get("preSql")) if p.get("preSql") else [],
        post_sql=_strings(p, "postSql", p.get("postSql")) if p.get("postSql") else [],
        batch_size=p.int("batchSize", batch_size, minimum=1),
        session=_strings(p, "session", p.get("session")) if p.get("session") else [],
    )


# -- reading: sources and splits ---------------------------------------------------------------


@dataclass(frozen=True)
class QuerySplit(Split):
    """A split of a SQL reader: one SELECT against one database (plain data, picklable)."""

    database: str = (
        ""  # the connector's locator: a file path, a DSN (without secrets where possible)
    )
    sql: str = ""
    source: str = ""  # the table or querySql[i] it reads, for messages


@dataclass(frozen=True)
class Source:
    """One table (or query) a reader reads, resolved against its database."""

    database: str
    label: str  # the table as written, or "querySql[i]"
    key: str  # key path of the entry, for messages
    table: str | None = None  # None for querySql
    select: tuple[str, ...] | None = None  # select-list items (column_sql), None: *
    where: str | None = None
    split_pk: str | None = None  # the key column's actual name
    query: str | None = None

    def sql(self, dialect: Dialect, predicate: str | None = None) -> str:
        if self.query is not None:
            return self.query
        assert self.table is not None
        return select_sql(dialect, self.table, self.select, self.where, predicate)


class SqlReader(Reader):
    """A DataX-shaped SQL reader: parameters, table/column checks and ``splitPk`` splits.

    A connector sets ``dialect`` and fills in :meth:`locate` (which database a :class:`Target`
    names), :meth:`connect` (a DB-API connection, read-only where the driver can) and
    :meth:`table_columns`; it writes ``schema()`` and ``read()`` with its fastest Arrow path,
    running each :class:`QuerySplit`'s ``sql``. ``splits(n)`` gives every table
    ``ceil(n / tables)`` key ranges of ``splitPk`` (``[lo, hi)``, the last ``[lo, max]``) plus one
    split for NULL keys when there are any, so every row is read exactly once; a query, or a
    table without ``splitPk``, is one split.
    """

    dialect: ClassVar[Dialect] = SQLITE

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.options = read_options(self.p, fetch_size=ctx.batch_rows)
        self.databases = [self.locate(t) for t in self.options.targets]
        self.p.done()
        self._sources: list[Source] | None = None

    # hooks ---------------------------------------------------------------------------------
    def locate(self, target: Target) -> str:
        """The database ``target`` names (first working candidate); record problems on
        ``self.p`` with ``target.url_key``. Embedded databases: the first file that exists."""
        missing = []
        for i, url in enumerate(target.urls):
            key = (
                f"{target.url_key}[{i}]"
                if len(target.urls) > 1 or target.url_key.startswith("connection")
                else target.url_key
            )
            try:
                path = database_path(url, self.dialect.name, self.ctx)
            except ValueError as e:
                self.p.problem(key, str(e))
                return ""
            if path.is_file():
                return str(path)
            missing.append(str(path))
        if missing:
            self.p.problem(target.url_key, f"no such database file: {', '.join(missing)}")
        return ""

    def connect(self, database: str) -> Any:
        """A DB-API connection to ``database`` with ``options.session`` run."""
        raise NotImplementedError

    def table_columns(self, con: Any, table: str) -> list[str]:
        """The columns of ``table``, in order; raise LookupError(message) when it is missing."""
        raise NotImplementedError

    def run_session(self, con: Any, errors: type[Exception] | tuple[type[Exception], ...]) -> None:
        """Run ``options.session`` on ``con``; on one of ``errors`` close ``con`` and raise
        FatalError naming the statement's key path."""
        for i, s in enumerate(self.options.session):
            try:
                con.execute(s)
            except errors as e:
                con.close()
                raise FatalError(f"{self.ctx.path(f'session[{i}]')}: {e}") from e

    # shared --------------------------------------------------------------------------------
    def sources(self) -> list[Source]:
        """Every table and query to read, checked against the databases (ConfigError names
        the key of each missing table, column or splitPk)."""
        if self._sources is not None:
            return self._sources
        o, d = self.options, self.dialect
        out: list[Source] = []
        problems: list[str] = []
        for target, db in zip(o.targets, self.databases, strict=True):
            for i, q in enumerate(target.queries):
                out.append(Source(db, f"querySql[{i}]", f"{target.query_key}[{i}]", query=q))
            if target.queries:
                continue
            con = self.connect(db)
            try:
                for i, table in enumerate(target.tables):
                    key = (
                        f"{target.table_key}[{i}]"
                        if len(target.tables) > 1 or target.table_key.startswith("connection")
                        else target.table_key
                    )
                    try:
                        known = self.table_columns(con, table)
                    except LookupError as e:
                        problems.append(f"{self.ctx.path(key)}: {e.args[0]}")
                        continue
                    select = None
                    if o.columns is not None:
                        items = []
                        for j, c in enumerate(o.columns):
                            try:
                                items.append(column_sql(d, c, known, table))
                            except ValueError as e:
                                problems.append(f"{self.ctx.path(f'{o.column_key}[{j}]')}: {e}")
                        select = tuple(items)
                    pk = None
                    if o.split_pk:
                        pk = _find(o.split_pk, known)
                        if pk is None:
                            problems.append(
                                f"{self.ctx.path('splitPk')}: column {o.split_pk!r} not in table "
                                f"{table}{did_you_mean(o.split_pk, known)}"
                            )
                    out.append(
                        Source(
                            db, table, key, table=table, select=select, where=o.where, split_pk=pk
                        )
                    )
            finally:
                con.close()
        if problems:
            raise ConfigError(problems)
        self._sources = out
        return out

    def splits(self, n: int) -> list[Split]:
        sources = self.sources()
        per = max(1, -(-max(n, 1) // len(sources)))
        out: list[Split] = []
        for s in sources:
            if s.split_pk is None or per == 1:
                out.append(QuerySplit(len(out), s.label, s.database, s.sql(self.dialect), s.label))
                continue
            for label, pred in self._key_splits(s, per):
                out.append(
                    QuerySplit(
                        len(out),
                        f"{s.label} {label}",
                        s.database,
                        s.sql(self.dialect, pred),
                        s.label,
                    )
                )
        return out

    def _key_splits(self, s: Source, n: int) -> list[tuple[str, str | None]]:
        d, pk = self.dialect, s.split_pk
        assert pk is not None and s.table is not None
        t = d.table(s.table)
        k = d.ident(pk)
        cond = f" WHERE ({s.where})" if s.where else ""
        con = self.connect(s.database)
        try:
            cur = con.cursor()
            cur.execute(f"SELECT min({k}), max({k}) FROM {t}{cond}")
            lo, hi = cur.fetchone()
            if lo is None:
                return [("", None)]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi)):
                raise ConfigError(
                    f"{self.ctx.path('splitPk')}: column {pk!r} of table {s.table} holds "
                    f"{type(lo).__name__} values such as {lo!r}; splitPk needs an integer column"
                )
            null_cond = f"{cond} AND ({k} IS NULL)" if cond else f" WHERE {k} IS NULL"
            cur.execute(f"SELECT 1 FROM {t}{null_cond} LIMIT 1")
            has_nulls = cur.fetchone() is not None
        finally:
            con.close()
        parts: list[tuple[str, str | None]] = [
            (f"{pk} in {r.label()}", r.sql(d, pk)) for r in key_ranges(lo, hi, n)
        ]
        if has_nulls:
            parts.append((f"{pk} is null", null_predicate(d, pk)))
        return parts


# -- writing: binding incoming columns to the target table -------------------------------------


@dataclass(frozen=True)
class TableInfo:
    """What a writer needs to know of an existing target table."""

    columns: tuple[str, ...]  # actual names, in table order
    required: frozenset[str] = frozenset()  # NOT NULL without a default: must be written
    primary_key: tuple[str, ...] = ()
    unique: tuple[tuple[str, ...], ...] = ()  # every PRIMARY KEY / UNIQUE constraint's columns


@dataclass(frozen=True)
class Binding:
    """Incoming batch columns mapped to the target: ``columns[i]`` receives incoming column i."""

    columns: tuple[str, ...]
    keys: tuple[str, ...] = ()
    conflict_target: bool = False  # a PRIMARY KEY / UNIQUE constraint covers exactly ``keys``


def bind(ctx: Context, options: WriteOptions, info: TableInfo, incoming: Sequence[str]) -> Binding:
    """Check and map the incoming column names onto ``info`` for ``options``: ``column`` (by
    position) or the incoming names, the key of ``replace``/``update`` (``primaryKey`` or the
    table's primary key), the columns the table requires. Raises ConfigError listing every
    problem, each with its key path."""
    problems: list[str] = []
    table = options.table
    names = list(options.columns) if options.columns is not None else list(incoming)
    if options.columns is not None and len(names) != len(incoming):
        problems.append(
            f"{ctx.path('column')}: lists {len(names)} columns but {len(incoming)} arrive "
            f"({', '.join(incoming)}); name one target column per incoming column"
        )
    cols: list[str] = []
    for i, c in enumerate(names):
        found = _find(c, info.columns)
        if found is None:
            where = f"column[{i}]" if options.columns is not None else "column"
            hint = (
                ""
                if options.columns is not None
                else " (an incoming column; map names with column)"
            )
            problems.append(
                f"{ctx.path(where)}: table {table} has no column {c!r}"
                f"{did_you_mean(c, info.columns)}{hint}"
            )
        else:
            cols.append(found)
    missing = sorted(r for r in info.required if r not in cols)
    if missing and not problems:
        problems.append(
            f"{ctx.path('column')}: table {table} needs column(s) {', '.join(missing)} "
            "(NOT NULL without a default), which are not written"
        )
    keys: list[str] = []
    if options.mode in ("replace", "update", "merge"):
        if options.primary_key:
            for i, k in enumerate(options.primary_key):
                found = _find(k, info.columns)
                if found is None:
                    problems.append(
                        f"{ctx.path(f'primaryKey[{i}]')}: table {table} has no column "
                        f"{k!r}{did_you_mean(k, info.columns)}"
                    )
                else:
                    keys.append(found)
        elif info.primary_key:
            keys = list(info.primary_key)
        else:
            problems.append(
                f"{ctx.path('primaryKey')}: writeMode {options.mode!r} needs a key and table "
                f"{table} has no primary key; list the key columns, e.g. primaryKey: [id]"
            )
        absent = [k for k in keys if k not in cols]
        if absent and cols:
            problems.append(
                f"{ctx.path('primaryKey')}: key column(s) {', '.join(absent)} of "
                f"writeMode {options.mode!r} are not among the written columns"
            )
    if problems:
        raise ConfigError(problems)
    conflict = bool(keys) and any(set(u) == set(keys) for u in info.unique)
    return Binding(tuple(cols), tuple(keys), conflict)


def same_columns(ctx: Context, shapes: Sequence[tuple[Source, Sequence[str]]]) -> None:
    """ConfigError unless every source gives the first one's column names (ignoring case)."""
    first, names0 = shapes[0]
    for s, names in shapes[1:]:
        if [n.lower() for n in names] != [n.lower() for n in names0]:
            raise ConfigError(
                f"{ctx.path(s.key)}: {s.label} gives columns {names}, but {first.label} "
                f"gives {names0}; tables read together must have the same columns"
            )


# -- writing: embedded database files ----------------------------------------------------------


def require_table(ctx: Context, options: WriteOptions, path: Path | None) -> None:
    """ConfigError when the target table is missing and ``writeMode`` cannot create it."""
    if options.mode in ("replace", "update", "merge"):
        raise ConfigError(
            f"{ctx.path(options.target.table_key)}: table {options.table} does not "
            f"exist in {path}; writeMode {options.mode!r} needs an existing table "
            "with a key (create it first, e.g. in preSql)"
        )


def created_names(ctx: Context, options: WriteOptions, schema: Any) -> list[str]:
    """The column names of a table created for the Arrow ``schema``: ``column`` or the
    incoming names; ConfigError when ``column`` lists another number of columns."""
    names = list(options.columns) if options.columns is not None else list(schema.names)
    if len(names) != len(schema):
        raise ConfigError(
            f"{ctx.path('column')}: lists {len(names)} columns but "
            f"{len(schema)} arrive ({', '.join(schema.names)})"
        )
    return names


def make_parents(path: Path) -> list[Path]:
    """Create the database file's missing folders; return them, outermost first, for abort."""
    missing = [p for p in reversed(path.parents) if not p.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return missing


def remove_created(files: Sequence[Path], dirs: Sequence[Path]) -> None:
    """Delete ``files`` (a database a writer created) and then those of ``dirs`` (from
    :func:`make_parents`) that are empty, innermost first."""
    for p in files:
        p.unlink(missing_ok=True)
    for d in reversed(dirs):
        with contextlib.suppress(OSError):  # only empty folders go
            d.rmdir()


# -- partition overwrite and merge deletes (Arrow only) ------------------------------------------

#: the column appended to a merge batch: True where the row deletes its key (``deleteMarker``)
DELETED = "__tidesync_deleted"


def table_modes(w: Writer) -> tuple[list[tuple[str, str]], tuple[str, Any] | None]:
    """Read ``partition`` (``ds=20161114``, several levels ``pt=20150101/type=1``) and
    ``deleteMarker`` (``{column: is_deleted, value: 1}``), spelled as for the lake writer."""
    p = w.p
    partition: list[tuple[str, str]] = []
    raw = p.str("partition")
    if raw is not None:
        try:
            partition = parse_partition(raw)
        except ValueError as e:
            p.problem("partition", f"{raw!r}: {e}")
    marker = p.obj("deleteMarker")
    if marker is None:
        return partition, None
    if not isinstance(marker.get("column"), str) or "value" not in marker:
        p.problem(
            "deleteMarker",
            "must be {column: NAME, value: VALUE}, e.g. {column: is_deleted, value: 1}",
        )
        return partition, None
    return partition, (marker["column"], marker["value"])


def check_table_modes(
    w: Writer, mode: str, partition: list[Any], marker: tuple[str, Any] | None
) -> None:
    if partition and mode != "overwrite":
        w.p.problem(
            "partition",
            f"applies to writeMode overwrite (the partition's rows are replaced), not {mode}; "
            "drop writeMode or set writeMode: overwrite",
        )
    if marker is not None and mode != "merge":
        w.p.problem("deleteMarker", f"applies to writeMode merge, not {mode}")


def marker_flags(w: Writer, batch: pa.RecordBatch, marker: tuple[str, Any]) -> pa.Array:
    """True where the row's marker column equals the marker value (null: False)."""
    name, value = marker
    names = batch.schema.names
    if name not in names:
        raise ConfigError(
            f"{w.ctx.path('deleteMarker.column')}: the incoming rows have no column {name!r}"
            f"{did_you_mean(name, names)}"
        )
    col = batch.column(names.index(name))
    try:
        v = pa.scalar(value).cast(col.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConfigError(
            f"{w.ctx.path('deleteMarker.value')}: {value!r} does not fit column {name} "
            f"({col.type}): {e}"
        ) from None
    return pc.fill_null(pc.equal(col, v), False)


def check_partition(col: pa.Array, name: str, text: str) -> None:
    """Rows that carry a partition column must hold the partition's value: the others are
    dirty (DirtyRecordError; the engine bisects down to them)."""
    try:
        expected = pa.scalar(partition_value(text, col.type), col.type)
        same = pc.fill_null(pc.equal(col, expected), False)
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        same = pa.repeat(pa.scalar(False), len(col))
    if not pc.all(same, min_count=0).as_py():
        bad = col[pc.indices_nonzero(pc.invert(same))[0].as_py()].as_py()
        raise DirtyRecordError(
            f"column {name} is {bad!r}, not {text} of the partition being overwritten"
        )


def partition_columns(
    ctx: Context, table: str, partition: Sequence[tuple[str, str]], columns: Sequence[str]
) -> list[tuple[str, str]]:
    """The ``partition`` levels by the table's own column names; an unknown one is a
    ConfigError naming ``partition`` and listing the table's columns."""
    out = []
    for k, v in partition:
        real = _find(k, columns)
        if real is None:
            raise ConfigError(
                f"{ctx.path('partition')}: table {table} has no column {k!r}"
                f"{did_you_mean(k, columns)}; its columns: {', '.join(columns)}"
            )
        out.append((real, v))
    return out


def partition_where(dialect: Dialect, parts: Sequence[tuple[str, str]]) -> str:
    """`` WHERE ds = ? AND ...`` (the dialect's placeholder) for overwrite's DELETE; '' without
    partition levels (the whole table)."""
    if not parts:
        return ""
    return " WHERE " + " AND ".join(f"{dialect.ident(c)} = {dialect.placeholder}" for c, _ in parts)


def shape_for_partition(
    batch: pa.RecordBatch,
    mapped: Sequence[str | None],
    parts: Sequence[tuple[str, str]],
    marker: tuple[str, Any] | None,
    drop_marker: bool,
    flags: pa.Array | None,
    types: dict[str, pa.DataType] | None = None,
) -> tuple[pa.RecordBatch, list[str]]:
    """For the writers that take Python or text values: check the partition columns the batch
    carries (``mapped[i]`` is the table column of batch column i once an unwritten marker column
    is dropped), add those it lacks as string
    constants (the store casts them), drop an unwritten marker column and append ``flags`` as
    :data:`DELETED`. ``types`` (the table's Arrow types) makes the constants typed, else the
    store casts the text. Returns the batch and the partition columns added."""
    if marker is not None and drop_marker:
        batch = batch.drop_columns([marker[0]])
    for c, v in parts:
        if c in mapped:
            check_partition(batch.column(list(mapped).index(c)), c, v)
    added = [c for c, _ in parts if c not in mapped]
    for c, v in parts:
        if c in added:
            t = (types or {}).get(c)
            typed = typed_value(v, t)
            value = pa.scalar(typed, t) if typed is not v else pa.scalar(v)
            batch = batch.append_column(c, pa.repeat(value, batch.num_rows))
    if flags is not None:
        batch = batch.append_column(DELETED, flags)
    return batch, added


def split_deleted(
    batch: pa.RecordBatch, keys: Sequence[str]
) -> tuple[pa.RecordBatch, pa.RecordBatch]:
    """A merge batch with its :data:`DELETED` column -> (rows to upsert, rows whose key is to be
    deleted), after keeping the last row of each key (rows with a null key part all stay)."""
    idx = pa.array(range(batch.num_rows), pa.int64())
    t = pa.table(batch.select(list(keys))).append_column("__ts_i", idx)
    last = (
        t.group_by(list(keys), use_threads=False)
        .aggregate([("__ts_i", "max")])
        .column("__ts_i_max")
        .combine_chunks()
    )
    if len(last) != batch.num_rows:
        batch = batch.take(pc.take(last, pc.sort_indices(last)))
    flags = batch.column(batch.schema.get_field_index(DELETED))
    plain = batch.drop_columns([DELETED])
    return plain.filter(pc.invert(flags)), plain.filter(flags)


def mapped_names(
    options: WriteOptions, columns: Sequence[str], names: Sequence[str]
) -> list[str | None]:
    """The table column each incoming column goes to (``column`` by position, else by name)."""
    return [_find(c, columns) for c in (options.columns or names)]


def with_added(options: WriteOptions, added: Sequence[str]) -> WriteOptions:
    """``options`` whose ``column`` list (if any) also names the partition columns added."""
    if options.columns is None or not added:
        return options
    return replace(options, columns=[*options.columns, *added])


def typed_value(text: str, t: pa.DataType | None) -> Any:
    """A partition value as the column's type where its text reads as one (``20161114`` as a
    date), else the text itself (the store casts it)."""
    if t is not None:
        with contextlib.suppress(ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return partition_value(text, t)
    return text
