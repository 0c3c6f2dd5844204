"""What SQL writers share: write options, the statements of each write mode, binding incoming columns to the table, partitions and delete markers."""

from __future__ import annotations

import contextlib
import logging
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import pyarrow as pa

from tidesync.compute import pc
from tidesync.connectors.base import Context, Sink, Split, Writer
from tidesync.connectors.partition import parse_partition, partition_value
from tidesync.connectors.sql.conn import Dialect, Target, _find, _strings, _targets
from tidesync.connectors.sql.reader import Source
from tidesync.errors import ConfigError, DirtyRecordError, FatalError, RetriableError, did_you_mean


def empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A batch of no rows of ``schema``, made without ``RecordBatch.from_pylist`` (whose first
    use imports pandas: about 0.15 s of every run's start, for nothing)."""
    return pa.RecordBatch.from_arrays([pa.nulls(0, f.type) for f in schema], schema=schema)


def text_with_fraction(arr: pa.Array) -> bool:
    """Whether text bound for an integer column holds a number with a fraction (``'1.5'``),
    which DuckDB's cast and MariaDB's LOAD DATA round (to 2) where PostgreSQL refuses it.
    Text that is no number at all is the store's to refuse, with its own message."""
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        return False
    try:
        f = pc.cast(arr, pa.float64())
    except pa.ArrowInvalid:
        return False
    whole = pc.or_kleene(pc.equal(pc.floor(f), f), pc.invert(pc.is_finite(f)))
    # a NULL has no fraction (pc.all of NULLs alone is NULL, which read as a fraction)
    return not pc.all(pc.fill_null(whole, True)).as_py()


def wall_times_as_instants(
    col: pa.Array, zone: str, column: str, column_type: str, text: pa.Array | None = None
) -> pa.Array:
    """Naive timestamps read as wall-clock times of ``zone``, for a column of instants. A time
    the clock skips (a daylight-saving gap) is no instant and one it shows twice (an overlap) is
    two: either is a dirty record naming the value (as ``text`` has it, where given), never
    the earlier instant picked silently (MySQL's writer did that; PostgreSQL's server and
    DuckDB's cast pick one for text and naive times they read in the session's zone)."""
    early = pc.assume_timezone(col, zone, ambiguous="earliest", nonexistent="earliest")
    late = pc.assume_timezone(col, zone, ambiguous="latest", nonexistent="latest")
    odd = pc.fill_null(pc.not_equal(early, late), False)
    if not pc.any(odd).as_py():
        return early
    i = pc.index(odd, True).as_py()
    us = pa.timestamp("us")
    value = col.cast(us, safe=False)[i].as_py()
    shown = pc.local_timestamp(early).cast(us, safe=False)[i].as_py()
    why = (
        f"does not exist in time zone {zone} (the clock skips it at a daylight-saving change)"
        if shown != value
        else f"is ambiguous in time zone {zone} (the clock shows it twice at a daylight-saving "
        "change)"
    )
    said = value if text is None else repr(text[i].as_py())
    raise DirtyRecordError(
        f"column {column}: value {said} {why}, so it names no one instant for {column_type}; "
        "write it with its offset (a timestamp with a time zone) or set the job's timezone to "
        "one without daylight saving"
    )


def check_integers_fit_floats(arr: pa.Array, t: pa.DataType, column: str, where: str) -> None:
    """Integers bound for a float column (``t``: float32 or float64) must be held exactly: one
    beyond 2**53 (2**24 for a float32) that the float rounds to another integer is a dirty
    record naming it, where every store would round it silently (9007199254740993 stored as
    9007199254740992)."""
    if not (pa.types.is_integer(arr.type) and pa.types.is_floating(t)):
        return
    bits = 24 if pa.types.is_float32(t) else 53
    big = pc.greater_equal(pc.abs_checked(arr.cast(pa.float64(), safe=False)), float(2**bits))
    big = pc.fill_null(big, False)
    if not pc.any(big).as_py():
        return
    code = "f" if bits == 24 else "d"
    for v in arr.filter(big).to_pylist():
        stored = struct.unpack(code, struct.pack(code, float(v)))[0]
        if int(stored) != v:
            raise DirtyRecordError(
                f"column {column}: value {v} has more digits than {t} holds; it would be "
                f"stored as {int(stored)} ({where})"
            )


def check_doubles_fit_floats(arr: pa.Array, t: pa.DataType, column: str, where: str) -> None:
    """Doubles bound for a 4-byte float column (``t`` float32: PostgreSQL's ``real``, MySQL's
    ``FLOAT``) must come back as they were written: a double whose shortest decimal text the
    float32 does not give back (0.123456789 would be stored as 0.12345679) is a dirty record
    naming the float it would become. A double the float32's shortest text does give back (0.1,
    1.5) is written: the column holds ``0.1f``, as its users expect, though not the double's
    exact binary value. NaN and the infinities are written as they are; a double beyond the
    float's range (1e39, 1e-50) is left to the store's own out-of-range error."""
    if not (pa.types.is_float64(arr.type) and pa.types.is_float32(t)):
        return
    narrow = arr.cast(pa.float32(), safe=False)
    back = narrow.cast(pa.string()).cast(pa.float64())
    # beyond the float's range (inf, or 0 from a nonzero) is each store's own out-of-range
    # error, which its writer already makes a dirty record (PostgreSQL's 22003)
    held = pc.and_(pc.is_finite(back), pc.or_(pc.not_equal(back, 0.0), pc.equal(arr, 0.0)))
    odd = pc.fill_null(pc.and_(held, pc.not_equal(back, arr)), False)
    if not pc.any(odd).as_py():
        return
    i = pc.index(odd, True).as_py()
    raise DirtyRecordError(
        f"column {column}: value {arr[i].as_py()!r} has more digits than {t} holds; it would "
        f"be stored as {back[i].as_py()!r} ({where})"
    )


#: text of a time that ends in a UTC offset (``Z``, ``+02``, ``+0200``, ``+02:00``)
OFFSET_TEXT = r"\d:\d{2}(?:\.\d*)?\s*(?:Z|[+-]\d{2}(?::?\d{2})?)$"


def text_instants_as_wall_times(
    text: pa.Array, zone: str, column: str, column_type: str
) -> pa.Array:
    """Text bound for a column of wall-clock times (``timestamp``, ``DATETIME``): text that
    carries a UTC offset names an instant, which PostgreSQL and DuckDB would store as its clock
    reading with the offset dropped (``14:00+02:00`` as 14:00). It is written as the wall time
    of the job's ``zone`` instead, as an Arrow timestamp with a zone is; other text is left to
    the server. Offset text that is no ISO date-time is a dirty record."""
    if not (pa.types.is_string(text.type) or pa.types.is_large_string(text.type)):
        return text
    zoned = pc.fill_null(pc.match_substring_regex(text, pattern=OFFSET_TEXT), False)
    if not pc.any(zoned).as_py():
        return text
    some = pc.if_else(zoned, text, pa.nulls(len(text), text.type))
    try:
        instants = some.cast(pa.timestamp("us", "UTC"))
    except pa.ArrowInvalid:
        one = f" {text[0].as_py()!r}" if len(text) == 1 else ""
        raise DirtyRecordError(
            f"column {column}: value{one} carries a UTC offset but is no ISO date-time "
            f"(yyyy-MM-dd HH:mm:ss+hh:mm); {column_type} would drop the offset"
        ) from None
    wall = pc.local_timestamp(instants.cast(pa.timestamp("us", zone)))
    shown = pc.strftime(wall, format="%Y-%m-%d %H:%M:%S")
    return pc.if_else(zoned, shown.cast(text.type), text)


#: ISO text of a wall-clock time without an offset: its day and its hour and minute, enough to
#: place it against a daylight-saving change (they all fall on a whole minute)
_WALL_TEXT = r"^\s*(?P<day>\d{4}-\d{2}-\d{2})[ T](?P<minute>\d{2}:\d{2})(?::\d{2}(?:\.\d*)?)?\s*$"


def check_text_wall_times(text: pa.Array, zone: str, column: str, column_type: str) -> None:
    """Text bound for a column of instants, which the server reads in the session's zone (the
    job's): ISO text without an offset that the zone skips or shows twice is a dirty record, as
    :func:`wall_times_as_instants` says. Text in other forms is the server's to read."""
    if zone in ("UTC", "Etc/UTC") or not (
        pa.types.is_string(text.type) or pa.types.is_large_string(text.type)
    ):
        return
    parts = pc.extract_regex(text, pattern=_WALL_TEXT)
    joined = pc.binary_join_element_wise(parts.field("day"), parts.field("minute"), " ")
    wall = pc.strptime(joined, format="%Y-%m-%d %H:%M", unit="us", error_is_null=True)
    if wall.null_count < len(wall):
        wall_times_as_instants(wall, zone, column, column_type, text)


WRITE_MODES = ("insert", "replace", "update", "truncate", "overwrite", "merge", "sync")

#: the write modes that go by a key (``primaryKey`` or the table's primary key)
KEYED = ("replace", "update", "merge", "sync")

#: how long a writer waits, by default, for another run writing the same target (``lockTimeout``)
LOCK_TIMEOUT_S = 600

log = logging.getLogger("tidesync.sql")


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
    - ``replace`` (whole row by ``keys``; also ``merge`` and ``sync``): DELETE the rows with
      those keys, then INSERT; works
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
    # overwrite's DELETE of the partition is the connector's, once; merge and sync upsert as
    # replace (sync's DELETE of the keys the source no longer has is the connector's, at the end)
    mode = {"overwrite": "insert", "merge": "replace", "sync": "replace"}.get(mode, mode)
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
    targets = _targets(p, database_key=database_key, queries=False)
    if len(targets) > 1:
        p.problem("connection", f"a writer writes one database; got {len(targets)} connections")
    target = targets[0] if targets else Target(urls=[], url_key=database_key)
    if len(target.urls) > 1:
        p.problem(target.url_key, f"a writer writes one database; got {len(target.urls)} URLs")
    top = p.get("table")
    if not target.tables and top is not None:
        target.tables = _strings(p, "table", top)
        target.table_key = "table"
    elif top is not None and (top if isinstance(top, list) else [top]) != target.tables:
        p.problem(
            "table",
            f"{top!r} differs from {target.table_key} ({target.tables!r}); a writer writes one "
            "table: keep one",
        )
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
            if found in cols and options.columns is None:
                # ``a`` and ``A`` of a Parquet file, say: the target would take one of them
                first = names[cols.index(found)]
                problems.append(
                    f"{ctx.path('column')}: incoming columns {first!r} and {c!r} both go to "
                    f"column {found} of table {table}; map them with column, or rename one"
                )
            cols.append(found)
    missing = sorted(r for r in info.required if r not in cols)
    if missing and not problems:
        problems.append(
            f"{ctx.path('column')}: table {table} needs column(s) {', '.join(missing)} "
            "(NOT NULL without a default), which are not written"
        )
    keys: list[str] = []
    if options.mode in KEYED:
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


def require_table(ctx: Context, options: WriteOptions, path: Any) -> None:
    """ConfigError when the target table is missing and ``writeMode`` cannot create it."""
    if options.mode in KEYED:
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


class NewFile:
    """An embedded database file a writer may be about to create, with its missing folders:
    removed again when the writer's transaction is undone and the file holds no table."""

    def __init__(self, suffixes: Sequence[str], is_empty: Any):
        self.suffixes = tuple(suffixes)  # its companions: -journal, -wal, .wal, ...
        self.is_empty = is_empty  # Path -> bool: the file holds no table
        self.path: Path | None = None
        self.dirs: list[Path] = []

    def open(self, path: Path) -> None:
        """Before connecting: note whether ``path`` is new and create its folders."""
        self.path = None if path.exists() else path
        self.dirs = make_parents(path)

    def keep(self) -> None:
        """The transaction was committed: the file stays."""
        self.path, self.dirs = None, []

    def drop(self) -> None:
        """After a rollback: remove the file (and folders) this writer created, if empty."""
        path = self.path
        if path is not None and self.is_empty(path):
            remove_created([path, *(Path(f"{path}{x}") for x in self.suffixes)], self.dirs)
        self.keep()


#: the columns a change-data-capture reader adds (``_op`` c/u/d/r: ``d`` deletes its key in merge)
CDC_OP = "_op"
CDC_META = (CDC_OP, "_ts", "_pos", "_table")

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
    marker = p.obj("deleteMarker", keys=("column", "value"))
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


# -- the transaction skeleton ------------------------------------------------------------------


class SqlWriter(Writer):
    """The one-transaction writer of a SQL table; a store fills in its verbs.

    The skeleton (owned here, the same for every store)::

        prepare(schema)   connect()                      session statements
                          begin()                        the job's one transaction
                          lock_target()                  other runs of the target wait
                          preSql                         execute(), each named preSql[i]
                          inspect()                      the target, or None when missing
                            missing: ConfigError for the modes that need a key, else
                            create(schema) (or at the first batch without a schema)
                          truncate / overwrite           clear(partition levels)
                          bind the incoming columns      planned(schema, binding)
        sink.write(b)     shape(b): deleteMarker flags, partition columns checked or added
                          write_rows(batch, binding, split)   the store's bulk path; all or
                                                         nothing (DirtyRecordError: no trace)
        commit()          finish()                       the store's last writes and checks
                          sync: delete_absent(keys)      rows whose key the run did not write
                          postSql; commit_transaction(); close()
        abort()           rollback(); close()            the target is exactly as it was

    A store subclass parses its parameters into ``self.o`` (:class:`WriteOptions`) and calls
    :meth:`settle_modes`, then implements ``connect``, ``begin``, ``execute``, ``inspect``,
    ``write_rows``, ``commit_transaction``, ``rollback`` and ``close`` (and ``create`` when
    ``creates_tables``). ``clear``, ``partition_scalar``, ``planned``, ``finish`` and the sink
    hooks have defaults. Capabilities are data: ``modes`` (the first is the default) and
    ``publish``; ``creates_tables`` says whether a missing target is created from the incoming
    schema. ``serial`` writers have every sink call run under ``self.lock``; the others lock
    what they share themselves.
    """

    modes: ClassVar[tuple[str, ...]] = WRITE_MODES
    publish: ClassVar[str] = "transaction"
    dialect: ClassVar[Dialect]
    creates_tables: ClassVar[bool] = True

    o: WriteOptions
    partition: list[tuple[str, str]]
    marker: tuple[str, Any] | None

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.partition, self.marker = [], None
        self.info: TableInfo | None = None
        self.lock = threading.RLock()
        self.live = False  # the transaction is open
        self.poisoned = ""  # why the transaction may no longer be committed (a task's rows...)
        self._bindings: dict[tuple[str, ...], Binding] = {}
        self._seen: list[pa.RecordBatch] = []  # sync: the keys written, for the compare
        self._parts: list[tuple[str, str]] | None = None

    keeps_dirty_keys = True

    def target_key(self) -> str | None:
        return f"{self.kind} table {self.o.table} in {self.target_location()}"

    def deletes_unwritten(self) -> bool:
        return self.mode == "sync"

    def target_location(self) -> str:
        """The database, as :attr:`location` names it, known before connecting."""
        return self.location

    def ordered(self) -> bool:
        # two splits writing one key: the later write wins, so splits take turns in order
        return self.mode in KEYED

    # -- parameters ------------------------------------------------------------------------------
    def settle_modes(self, mode_given: bool) -> None:
        """Read ``partition`` and ``deleteMarker``; ``writeMode`` defaults to ``overwrite``
        when a partition is named; check that they fit the mode. Read ``lockTimeout``."""
        self.partition, self.marker = table_modes(self)
        if not mode_given and self.partition:
            self.o.mode = "overwrite"
        check_table_modes(self, self.o.mode, self.partition, self.marker)
        self.lock_timeout = self.p.int("lockTimeout", LOCK_TIMEOUT_S, minimum=0)

    @property
    def mode(self) -> str:
        return self.o.mode

    @property
    def table_sql(self) -> str:
        """The target as SQL (what ``@table`` in preSql/postSql becomes)."""
        return self.dialect.table(self.o.table)

    @property
    def location(self) -> str:
        """The database in messages (a file, ``host:port/db``)."""
        return ""

    @property
    def where(self) -> str:
        """The target in messages."""
        return f"{self.kind} table {self.o.table} in {self.location}"

    # -- verbs a store fills in ------------------------------------------------------------------
    def connect(self) -> None:
        """Open the connection and run the session statements (ours, then ``session``)."""
        raise NotImplementedError

    def begin(self) -> None:
        """Start the job's transaction."""
        raise NotImplementedError

    def execute(self, sql: str, params: Sequence[Any] = (), where: str = "") -> None:
        """Run one statement in the transaction; a failure is translated, named by the key path
        ``where`` (relative to the writer's parameters) when given, else by the target."""
        raise NotImplementedError

    def inspect(self) -> TableInfo | None:
        """The target's columns and keys (a store keeps what else it needs); None if missing."""
        raise NotImplementedError

    def create(self, schema: pa.Schema) -> None:
        """Create the missing target for ``schema`` (the deleteMarker column left out), in the
        transaction, with ``column`` names and the partition columns (text)."""
        raise ConfigError(
            f"{self.ctx.path(self.o.target.table_key)}: table {self.o.table!r} not found"
        )

    def delete_absent(self, keys: pa.RecordBatch) -> None:
        """sync, at commit: delete the target's rows whose key is not among ``keys`` (unique
        rows, columns named as the table's key columns, Arrow types as they arrived); load them
        the store's way and run :meth:`absent_sql`."""
        raise NotImplementedError

    def write_rows(self, batch: pa.RecordBatch, binding: Binding, split: Split) -> None:
        """Write one shaped batch (``binding.columns[i]`` takes column i; a last
        :data:`DELETED` column for merge with deleteMarker). All or nothing: raise
        DirtyRecordError leaving no trace when rows are at fault."""
        raise NotImplementedError

    def commit_transaction(self) -> None:
        raise NotImplementedError

    def rollback(self) -> None:
        """Undo the transaction (quietly: the connection may be gone) and what the writer
        created outside it."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection; called once the transaction is settled."""
        raise NotImplementedError

    # -- hooks with defaults ---------------------------------------------------------------------
    def lock_target(self) -> None:
        """Make other runs writing the same target wait until this transaction ends (at most
        ``lockTimeout`` seconds, then :meth:`lock_timed_out`); called after ``begin``, before
        preSql. Use :meth:`lock_scope`; log :meth:`waiting` before blocking. Default: the
        store's ``begin`` or ``connect`` already serializes its writers."""

    def clear(self, parts: Sequence[tuple[str, str]]) -> None:
        """Delete the partition's rows (every row without ``parts``) in the transaction."""
        self.execute(
            f"DELETE FROM {self.table_sql}{partition_where(self.dialect, parts)}",
            [v for _, v in parts],
        )

    def partition_scalar(self, column: str, text: str) -> pa.Scalar:
        """The constant a batch gets for a partition column it lacks (text: the store casts)."""
        return pa.scalar(text)

    def planned(self, schema: pa.Schema, binding: Binding) -> None:
        """Called at prepare with the shaped incoming schema: plan (and check) its writes."""

    def finish(self) -> None:
        """Called at commit before postSql: complete pending writes, refuse a broken state."""

    def sink_opened(self, sink: SqlSink) -> None:
        """A task opened ``sink`` (under ``self.lock``)."""

    def sink_closed(self, sink: SqlSink, discarded: bool) -> None:
        """A task finished (``discarded``: failed) with ``sink`` (under ``self.lock``)."""

    # -- the skeleton ----------------------------------------------------------------------------
    def prepare(self, schema: pa.Schema | None) -> None:
        with self.lock:
            try:
                self.connect()
                self.begin()
                self.live = True
                self.lock_target()
                self.run_sql("preSql", self.o.pre_sql)
                self.info = self.inspect()
                if self.info is None:
                    if self.mode in KEYED or not self.creates_tables:
                        self.missing()
                    if schema is not None:
                        self._create(schema)
                elif self.mode in ("truncate", "overwrite"):
                    # in the transaction: a rollback brings the rows back
                    self.clear(self.partition_columns())
                if schema is not None and self.info is not None:
                    shaped, binding = self.shape(empty_batch(schema))
                    self.planned(shaped.schema, binding)
            except BaseException:
                self._settle_failed()
                raise

    # -- one writer of a target at a time -------------------------------------------------------
    def lock_scope(self) -> tuple[bool, list[tuple[str, str]]]:
        """What this run must hold alone: ``(True, [])`` the whole table (truncate, overwrite of
        every row, the keyed modes); ``(False, parts)`` the table shared with other such
        writers and partition ``parts`` alone (overwrite of a partition); ``(False, [])`` the
        table shared (insert: appends run side by side, but not beside a whole-table writer)."""
        if self.mode == "insert":
            return False, []
        if self.mode == "overwrite" and self.partition:
            return False, self.partition
        return True, []

    def lock_what(self) -> str:
        whole, parts = self.lock_scope()
        if parts:
            return f"partition {'/'.join(f'{k}={v}' for k, v in parts)} of table {self.o.table}"
        return f"table {self.o.table}"

    def waiting(self) -> None:
        """Say that this run waits for another one (before it blocks)."""
        log.warning(
            "%s: another run is writing %s; waiting for it to finish (at most %d s, lockTimeout)",
            self.where,
            self.lock_what(),
            self.lock_timeout,
        )

    def lock_timed_out(
        self, waited: float, detail: str = "", code: str | None = None
    ) -> RetriableError:
        """The error of a run that waited ``waited`` seconds for another one and gave up."""
        return RetriableError(
            f"{self.where}: {detail + ': ' if detail else ''}another run is writing "
            f"{self.lock_what()}; gave up after waiting {waited:.1f} s "
            f"({self.ctx.path('lockTimeout')} is {self.lock_timeout} s); nothing was written",
            code=code,
        )

    def missing(self) -> None:
        """The target is missing and this writer (or mode) cannot create it."""
        if not self.creates_tables:
            raise ConfigError(
                f"{self.ctx.path(self.o.target.table_key)}: table {self.o.table!r} not found"
            )
        require_table(self.ctx, self.o, self.location)

    def run_sql(self, key: str, statements: Sequence[str]) -> None:
        """preSql / postSql: each statement with ``@table`` expanded, named ``key[i]``."""
        for i, sql in enumerate(statements):
            self.execute(expand_table(sql, self.table_sql), where=f"{key}[{i}]")

    def _create(self, schema: pa.Schema) -> None:
        if self.marker is not None and self.marker[0] in schema.names:
            schema = schema.remove(schema.get_field_index(self.marker[0]))
        self.create(schema)
        self.info = self.inspect()

    def partition_columns(self) -> list[tuple[str, str]]:
        """``partition`` by the table's own column names (ConfigError naming an unknown one)."""
        if self._parts is None:
            assert self.info is not None
            self._parts = partition_columns(
                self.ctx, self.o.table, self.partition, self.info.columns
            )
        return self._parts

    def binding(self, names: Sequence[str], added: Sequence[str] = ()) -> Binding:
        """The incoming ``names`` (and the partition columns ``added``) bound to the table."""
        key = (*names, "\0", *added)
        b = self._bindings.get(key)
        if b is None:
            assert self.info is not None
            b = bind(self.ctx, with_added(self.o, added), self.info, names)
            self._bindings[key] = b
        return b

    def shape(self, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, Binding]:
        """The batch as written: a deleteMarker column dropped unless the table has it (and
        its verdict appended as a last :data:`DELETED` column), the partition columns the batch
        carries checked (a row with another value is dirty), those it lacks added."""
        assert self.info is not None
        cols = self.info.columns
        flags = None
        names = list(batch.schema.names)
        if self.marker is None and self.mode == "merge" and CDC_OP in names:
            self.marker = (CDC_OP, "d")  # a capture reader's deletes (set at prepare)
        if self.marker is not None:
            flags = marker_flags(self, batch, self.marker)
            if _find(self.marker[0], cols) is None:
                batch = batch.drop_columns([self.marker[0]])
                names.remove(self.marker[0])
        meta = [n for n in names if n in CDC_META and _find(n, cols) is None]
        if meta:  # a capture reader's columns go only where the table has them
            batch = batch.drop_columns(meta)
            names = [n for n in names if n not in meta]
        mapped = mapped_names(self.o, cols, names)
        added = []
        for c, v in self.partition_columns():
            if c in mapped:
                check_partition(batch.column(mapped.index(c)), c, v)
            else:
                batch = batch.append_column(
                    c, pa.repeat(self.partition_scalar(c, v), batch.num_rows)
                )
                added.append(c)
        with self.lock:
            b = self.binding([*names, *added], added)
        if flags is not None:
            batch = batch.append_column(DELETED, flags)
        return batch, b

    def open(self, split: Split) -> SqlSink:
        with self.lock:
            if not self.live:
                raise FatalError(f"{self.where}: open() before prepare()")
            sink = SqlSink(self, split)
            self.sink_opened(sink)
            return sink

    def write_batch(self, batch: pa.RecordBatch, split: Split) -> None:
        """One sink write: create a target prepared without a schema, shape, write."""
        with self.lock if self.serial else contextlib.nullcontext():
            if not self.live:
                raise FatalError(f"{self.where}: the transaction is closed")
            if self.info is None:
                with self.lock:
                    if self.info is None:
                        self._create(batch.schema)
            shaped, binding = self.shape(batch)
            keys = self._keys(shaped, binding) if self.mode in KEYED else None
            if keys is not None and self.mode == "sync":
                # before the write: a row that proves dirty keeps its key's target row as it
                # was (the write is all or nothing), rather than counting as gone from the source
                self._seen.append(keys)
            self.write_rows(shaped, binding, split)

    def _keys(self, batch: pa.RecordBatch, b: Binding) -> pa.RecordBatch:
        """The keys of a batch written by key, named as the table's key columns. A row with a
        null key part is dirty: no key matches it, so every run would insert it again (a
        nullable unique key), and a sync could not tell it from another."""
        cols = [batch.column(b.columns.index(k)) for k in b.keys]
        for k, col in zip(b.keys, cols, strict=True):
            if col.null_count:
                raise DirtyRecordError(
                    f"key column {k} is null; writeMode {self.mode} matches rows by their key "
                    f"({', '.join(b.keys)}), which every row must have: a row without one "
                    "would be written again by every run"
                )
        return pa.RecordBatch.from_arrays(cols, names=list(b.keys))

    def commit(self, results: list[Any]) -> None:
        with self.lock:
            if not self.live:
                raise FatalError(f"{self.where}: commit() without prepare()")
            try:
                self.finish()
                if self.poisoned:
                    raise FatalError(f"{self.where}: nothing committed: {self.poisoned}")
                if self.mode == "sync":
                    self._delete_absent()
                self.run_sql("postSql", self.o.post_sql)
                self.commit_transaction()
            except BaseException:
                self._settle_failed()
                raise
            self.live = False
            self.close()

    def _delete_absent(self) -> None:
        """sync: delete the rows whose key the run did not write (the source no longer has
        them; an empty source empties the table)."""
        if self.info is None:
            return  # nothing was written and there is no table
        if not self._seen:
            self.execute(f"DELETE FROM {self.table_sql}")
            return
        seen = pa.Table.from_batches(self._seen)
        self._seen = []
        unique = seen.group_by(seen.column_names, use_threads=False).aggregate([])
        self.delete_absent(
            pa.RecordBatch.from_arrays(
                [unique.column(k).combine_chunks() for k in seen.column_names],
                names=seen.column_names,
            )
        )

    def absent_sql(self, relation: str, keys: Sequence[str], exprs: Sequence[str] = ()) -> str:
        """``DELETE`` of the target's rows whose key is not in ``relation`` (aliased ``s``):
        its columns named as the ``keys``, or ``exprs`` over ``s`` giving each key's value."""
        t, q = self.table_sql, self.dialect.ident
        values = exprs or [f"s.{q(k)}" for k in keys]
        match = " AND ".join(f"{t}.{q(k)} = {v}" for k, v in zip(keys, values, strict=True))
        return f"DELETE FROM {t} WHERE NOT EXISTS (SELECT 1 FROM {relation} AS s WHERE {match})"

    def abort(self, results: list[Any]) -> None:
        with self.lock:
            self._settle_failed()

    def _settle_failed(self) -> None:
        self.live = False
        try:
            self.rollback()
        finally:
            self.close()


class SqlSink(Sink):
    """A task's handle on a :class:`SqlWriter`: its writes go into the writer's transaction."""

    def __init__(self, writer: SqlWriter, split: Split):
        self.w = writer
        self.split = split
        self.rows = 0
        self.state: Any = None  # what the store keeps for this sink

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        self.w.write_batch(batch, self.split)
        self.rows += batch.num_rows

    def close(self) -> dict[str, Any]:
        with self.w.lock:
            self.w.sink_closed(self, discarded=False)
        return {"split": self.split.label, "rows": self.rows}

    def discard(self) -> dict[str, Any]:
        # what the task wrote lives in the writer's one transaction: abort drops it
        with self.w.lock:
            self.w.sink_closed(self, discarded=True)
        return {"split": self.split.label, "rows": 0, "discarded": self.rows}
