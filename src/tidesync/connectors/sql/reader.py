"""SQL reader planning shared by every SQL connector: read options, SELECTs, ``splitPk`` key ranges and :class:`SqlReader`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import pyarrow as pa

from tidesync.connectors.base import Chunk, Context, Params, Reader, Split
from tidesync.connectors.sql.conn import (
    SQLITE,
    Dialect,
    Target,
    _find,
    _strings,
    _targets,
    database_path,
    is_identifier,
)
from tidesync.connectors.sql.incremental import Cursor, Incremental, is_aware, is_temporal
from tidesync.errors import ConfigError, FatalError, did_you_mean

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


@dataclass
class ReadOptions:
    targets: list[Target]
    columns: list[str] | None  # None: every column (``*``)
    column_key: str
    where: str | None
    split_pk: str | None
    fetch_size: int
    session: list[str]


def _query(sql: str) -> str:
    return sql.rstrip().rstrip(";").rstrip()


def refuse_unused_top(
    p: Params, table_keys: list[str], query_keys: list[str], tables: bool, queries: bool
) -> None:
    """A top-level ``table`` / ``querySql`` that no ``connection`` entry reads (each names its
    own) would be left out without a word: a problem. ``*_keys``: where each entry took its
    tables and queries from (``table`` when from the top)."""
    for key, given, used in (("table", tables, table_keys), ("querySql", queries, query_keys)):
        if given and used and key not in used:
            p.problem(
                key,
                f"is read by no connection entry: each gives its own {key}, which is what is "
                f"read; remove {key} here, or from the entries",
            )


def refuse_twice(p: Params, reads: Sequence[tuple[Any, str, str]]) -> None:
    """A table or query listed twice for one database would be read twice, each of its rows
    written twice (DataX reads it twice too): a problem on the second. ``reads``: (the
    database as written, key path, table or query), in the job's order."""
    first: dict[tuple[Any, str], str] = {}
    for db, key, what in reads:
        seen = first.setdefault((db, what), key)
        if seen != key:
            p.problem(
                key,
                f"{what!r} is also {p.ctx.path(seen)}, on the same database: its rows would be "
                "read twice; list it once",
            )


def refuse_beside_query(
    p: Params, query_key: str | None, where: str | None, columns: list[str] | None
) -> None:
    """DataX reads a ``querySql`` as it is and silently ignores ``where`` and ``column`` beside
    it. A job giving both meant something, and which of the two cannot be told: a problem on
    the key that would be ignored (``query_key``: the first query's key, None when none)."""
    if query_key is None:
        return
    query = p.ctx.path(query_key)
    if where and where.strip():
        p.problem(
            "where",
            f"has no effect on a query ({query} is read as it is); put the condition in the "
            "query's WHERE, or read the table instead",
        )
    if columns is not None and columns != ["*"]:
        p.problem(
            "column",
            f"has no effect on a query ({query} is read as it is): its SELECT list gives the "
            "columns; remove column, or name the columns there",
        )


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
    refuse_unused_top(
        p,
        [t.table_key for t in targets],
        [t.query_key for t in targets],
        bool(top_tables),
        bool(top_queries),
    )
    refuse_twice(
        p,
        [
            (tuple(t.urls), f"{k}[{i}]", x)
            for t in targets
            for k, xs in ((t.table_key, t.tables), (t.query_key, t.queries))
            for i, x in enumerate(xs)
        ],
    )
    columns = p.list("column")
    cols: list[str] | None = None
    if columns is not None:
        cols = _strings(p, "column", p.get("column"))
        if cols == ["*"] or not cols:
            cols = None
    where = p.str("where")
    split_pk = p.str("splitPk")
    refuse_beside_query(
        p, next((f"{t.query_key}[0]" for t in targets if t.queries), None), where, cols
    )
    return ReadOptions(
        targets=targets,
        columns=cols,
        column_key="column",
        where=where.strip() if where and where.strip() else None,
        split_pk=split_pk.strip() if split_pk and split_pk.strip() else None,
        fetch_size=p.int("fetchSize", fetch_size, minimum=1),
        session=_strings(p, "session", p.get("session")) if p.get("session") else [],
    )


@dataclass(frozen=True)
class QuerySplit(Split):
    """A split of a SQL reader: one SELECT against one database (plain data, picklable)."""

    database: str = (
        ""  # the connector's locator: a file path, a DSN (without secrets where possible)
    )
    sql: str = ""
    source: str = ""  # the table or querySql[i] it reads, for messages
    cursor: Cursor | None = None  # incremental: the window read and the position tracked


def select_cursor(
    incremental: Incremental | None,
    dialect: Dialect,
    known: Sequence[str],
    table: str,
    select: tuple[str, ...] | None,
    problems: list[str],
    ctx: Context,
) -> tuple[str | None, tuple[str, ...] | None, bool]:
    """``(cursor column, select list, dropped)`` of a table read with ``incremental``: the
    table's column it names (a problem with a suggestion when none), and the select list with
    the column added when ``column`` lacks it (then dropped from what the reader gives)."""
    if incremental is None:
        return None, select, False
    try:
        column = incremental.column_of(known, f"table {table}")
    except ValueError as e:
        problems.append(f"{ctx.path('incremental.column')}: {e}")
        return None, select, False
    item = dialect.ident(column)
    if select is None or item in select or "*" in select:
        return column, select, False
    return column, (*select, item), True


def source_cursor(
    incremental: Incremental | None,
    ctx: Context,
    s: Source,
    read_schema: Callable[[], pa.Schema],
    text_times: bool = False,
) -> Cursor | None:
    """This run's cursor of source ``s``: the window after the positions the last committed
    run saved (None without ``incremental``). A query's column is looked up in what it gives.
    ``text_times``: the store keeps dates and times as text (SQLite; see
    :attr:`Cursor.text_times`)."""
    if incremental is None:
        return None
    schema = read_schema()
    column = s.cursor_column
    if column is None:
        try:
            column = incremental.column_of(schema.names, f"the columns of {s.label}")
        except ValueError as e:
            raise ConfigError(f"{ctx.path('incremental.column')}: {e}") from None
    t = schema.field(column).type
    cursor = incremental.cursor(
        ctx,
        s.label,
        column,
        drop=s.cursor_drop,
        temporal=is_temporal(t),
        aware=is_aware(t),
        dates=pa.types.is_date(t),
        text=pa.types.is_string(t) or pa.types.is_large_string(t),
    )
    return replace(cursor, text_times=True) if text_times and is_temporal(t) else cursor


def given_schema(s: Source, read_schema: pa.Schema) -> pa.Schema:
    """What a reader gives: ``read_schema`` less the column read only for the cursor."""
    if s.cursor_drop and s.cursor_column:
        return Cursor(s.label, s.cursor_column, drop=True).output_schema(read_schema)
    return read_schema


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
    cursor_column: str | None = None  # incremental: the table's cursor column
    cursor_drop: bool = False  # ... read only for the cursor (not in ``column``)

    def sql(self, dialect: Dialect, predicate: str | None = None) -> str:
        if self.query is not None:
            if predicate:
                return f"SELECT * FROM ({self.query}) AS ts_q WHERE {predicate}"
            return self.query
        assert self.table is not None
        return select_sql(dialect, self.table, self.select, self.where, predicate)


class SqlReader(Reader):
    """A DataX-shaped SQL reader: parameters, table/column checks and ``splitPk`` splits.

    A connector sets ``dialect`` and fills in :meth:`locate` (which database a :class:`Target`
    names), :meth:`connect` (a DB-API connection, read-only where the driver can) and
    :meth:`table_columns`; it writes :meth:`read_schema` and :meth:`read_query` with its fastest
    Arrow path, running each :class:`QuerySplit`'s ``sql``. ``splits(n)`` gives every table
    ``ceil(n / tables)`` key ranges of ``splitPk`` (``[lo, hi)``, the last ``[lo, max]``) plus one
    split for NULL keys when there are any, so every row is read exactly once; a query, or a
    table without ``splitPk``, is one split. ``incremental`` (:mod:`.incremental`) narrows every
    split to the cursor's window and tracks its position.
    """

    dialect: ClassVar[Dialect] = SQLITE

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.options = read_options(self.p, fetch_size=ctx.batch_rows)
        self.incremental = Incremental.from_params(self.p)
        self.databases = [self.locate(t) for t in self.options.targets]
        self.p.done()
        self._sources: list[Source] | None = None

    @property
    def local_only(self) -> str | None:
        files = ", ".join(sorted({d for d in self.databases if d}))
        return f"it reads the embedded database file {files} on this machine's disk"

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

    def read_schema(self) -> pa.Schema:
        """The Arrow schema of what each split's SELECT returns (the cursor column included)."""
        raise NotImplementedError

    def read_query(self, split: QuerySplit) -> Iterator[pa.RecordBatch | Chunk]:
        """Run ``split.sql``; yield its rows as Arrow."""
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
                    cursor_column, select, drop = select_cursor(
                        self.incremental, d, known, table, select, problems, self.ctx
                    )
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
                            db,
                            table,
                            key,
                            table=table,
                            select=select,
                            where=o.where,
                            split_pk=pk,
                            cursor_column=cursor_column,
                            cursor_drop=drop,
                        )
                    )
            finally:
                con.close()
        if problems:
            raise ConfigError(problems)
        self._sources = out
        return out

    def schema(self) -> pa.Schema:
        """The schema of what the reader gives: :meth:`read_schema`, less a column read only
        for the incremental cursor."""
        return given_schema(self.sources()[0], self.read_schema())

    def read(self, split: Split) -> Iterator[pa.RecordBatch | Chunk]:
        assert isinstance(split, QuerySplit)
        items = self.read_query(split)
        return split.cursor.track(items) if split.cursor is not None else items

    def splits(self, n: int) -> list[Split]:
        sources = self.sources()
        per = max(1, -(-max(n, 1) // len(sources)))
        d = self.dialect
        out: list[Split] = []
        for s in sources:
            cursor = source_cursor(
                self.incremental, self.ctx, s, self.read_schema, text_times=d is SQLITE
            )
            if cursor is not None and s.split_pk is not None and per > 1:
                cursor = cursor.capped(self._top(s, cursor))
            window = cursor.condition(d) if cursor is not None else None
            base = QuerySplit(0, s.label, s.database, s.sql(d, window), s.label, cursor)
            if s.split_pk is None or per == 1:
                out.append(replace(base, index=len(out)))
                continue
            for label, pred in self._key_splits(s, per, window):
                out.append(
                    replace(
                        base,
                        index=len(out),
                        label=f"{s.label} {label}",
                        sql=s.sql(d, " AND ".join(f"({c})" for c in (window, pred) if c)),
                    )
                )
        return out

    def _top(self, s: Source, cursor: Cursor) -> Any:
        """The largest cursor value ``s`` holds now (see :meth:`Cursor.capped`)."""
        if cursor.upper is not None:
            return None
        con = self.connect(s.database)
        try:
            cur = con.cursor()
            cur.execute(
                cursor.top_sql(self.dialect, s.sql(self.dialect, cursor.condition(self.dialect)))
            )
            return cur.fetchone()[0]
        finally:
            con.close()

    def _key_splits(
        self, s: Source, n: int, window: str | None = None
    ) -> list[tuple[str, str | None]]:
        d, pk = self.dialect, s.split_pk
        assert pk is not None and s.table is not None
        t = d.table(s.table)
        k = d.ident(pk)
        conds = " AND ".join(f"({c})" for c in (s.where, window) if c)
        cond = f" WHERE {conds}" if conds else ""
        con = self.connect(s.database)
        try:
            cur = con.cursor()
            cur.execute(f"SELECT min({k}), max({k}) FROM {t}{cond}")
            lo, hi = cur.fetchone()
            if lo is None:
                return [("", None)]
            odd = [v for v in (lo, hi) if not isinstance(v, int) or isinstance(v, bool)]
            if odd:  # (SQLite: text sorts after every number, so max() finds it)
                raise ConfigError(
                    f"{self.ctx.path('splitPk')}: column {pk!r} of table {s.table} holds "
                    f"{type(odd[0]).__name__} values such as {odd[0]!r}; splitPk needs an "
                    "integer column"
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
