"""Connector contracts and the connector registry.

A connector module offers a :class:`Reader`, a :class:`Writer`, or both. The engine owns the
loop and drives these verbs::

    writer = WriterCls(params, ctx)          # validates params: raise ConfigError listing every problem
    reader = ReaderCls(params, ctx)
    writer.prepare(reader.schema())          # staging area / transaction / target checked
    splits = reader.splits(n)
    reader.estimate()                        # optional: about how many rows, for progress
    for split in splits:                     # on any worker (a split is plain, picklable data)
        sink = writer.open(split)
        for chunk in reader.read(split):     # pa.RecordBatch, or Chunk(batch, dirty, position)
            sink.write(batch)                # all or nothing; DirtyRecordError -> engine bisects
        result = sink.close()                # plain data describing what the sink staged
        positions[split.label] = last chunk.position   # kept by the engine, per split
    writer.commit(results)                   # the one atomic publish
    state.compare_and_set(positions)         # saved by the engine, under the job's identity
    reader.committed(positions)              # now the reader may confirm them to its server
    # or, on failure, interruption or too many dirty records:
    writer.abort(results)                    # nothing becomes visible, no position is saved

Positions belong to the engine. A reader that resumes (an incremental cursor, a CDC log
position, a broker sequence) attaches where it is to what it yields (``Chunk.position``, JSON
data); the engine keeps the last one of every split and saves them only after the writer
committed, so a failed or interrupted run leaves the previous ones. The next run reads them back
with ``ctx.stored_positions()``: the positions of the last committed run, by split label (a run
whose splits reported none leaves them as they were, so report one for every split, even one
that read nothing). No connector writes state of its own.

Nothing a writer does is visible before ``commit``; rerunning the same instance yields the same
target state.

The direct path (passthrough between like stores). When a content entry has no transformer,
no ``speed.record`` limit and ``setting.direct`` is not false, the engine asks the prepared
writer ``writer.raw_form(reader, schema)``; a form the reader lists in ``reader.raw_forms()``
(and an executor that runs the writer's sinks where the reader runs) makes every split go the
way below, when ``setting.direct`` is true or, unset, when ``writer.raw_by_default(form)``
says the form pays for itself (the default: yes)::

    sink = writer.open(split)
    for raw in reader.read_raw(split, form):   # Raw: bytes / a file, in the store's own form
        sink.write_raw(raw)                    # rows written
    result = sink.close()                      # as on the Arrow path: commit / abort as ever

A sink that meets a bad row it cannot isolate in raw form raises :class:`DirectFallback`
(from ``write_raw`` or ``close``) after taking back what the split wrote (a savepoint); the
engine discards the sink and reads that split again on the Arrow path, where bad rows become
dirty records one by one. The report says per entry which path ran (``direct: FORM`` or
``arrow``, with why not direct) and per split which one it took.

Example: a reader of the numbers ``0..n-1`` in two splits::

    @dataclass(frozen=True)
    class Range(Split):
        start: int = 0
        stop: int = 0

    class Numbers(Reader):
        def __init__(self, params, ctx):
            super().__init__(params, ctx)
            p = self.p
            self.n = p.int("n", required=True, minimum=0)
            p.done()
        def schema(self):
            return pa.schema([("x", pa.int64())])
        def splits(self, n):
            half = self.n // 2
            return [Range(0, "0..", 0, half), Range(1, "..n", half, self.n)]
        def read(self, split):
            yield pa.record_batch([pa.array(range(split.start, split.stop), pa.int64())], names=["x"])

The registry maps each kind and its familiar aliases (DataX ``mysqlreader``, DataWorks ``mysql``)
to a dotted path imported on first use; third parties add theirs through the entry-point group
``tidesync.connectors`` (the entry point's value is a module holding ``Reader`` and/or ``Writer``).
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import pyarrow as pa

from tidesync.errors import ConfigError, did_you_mean
from tidesync.plugin import Context, Params, _show

__all__ = [
    "Split",
    "Chunk",
    "Raw",
    "DirectFallback",
    "Dirty",
    "Context",
    "Params",
    "Reader",
    "Writer",
    "Sink",
    "Side",
    "CONNECTORS",
    "resolve",
    "load",
    "catalog",
]


Side = Literal["reader", "writer"]


@dataclass(frozen=True)
class Split:
    """A slice of a reader's input that one task reads alone. Subclass it (frozen, primitives)."""

    index: int
    label: str


@dataclass(frozen=True)
class Dirty:
    """A row a reader could not convert: kept as a dirty record with its reason and position."""

    reason: str
    row: dict[str, Any]
    position: str = ""
    code: str | None = None


@dataclass
class Chunk:
    """What ``Reader.read`` may yield instead of a bare batch: the batch (or None) plus rows it
    had to drop, and the split's resume position after it (JSON data: a cursor value, an LSN, a
    broker sequence), which the engine saves after the commit (see the module docstring)."""

    batch: pa.RecordBatch | None
    dirty: list[Dirty] = field(default_factory=list)
    position: Any = None
    #: what the split found that only all the splits together can judge (the jsonl keys it
    #: saw): plain data, handed with every split's to :meth:`Reader.finished` before the commit
    facts: Any = None


@dataclass
class Raw:
    """A piece of a split in a form a writer consumes without Arrow (the direct path).

    ``form`` names the encoding both sides agree on by name (``postgresql-copy-binary``,
    ``mysql-tsv``, ``csv-file``); ``data`` is the piece (bytes or a memoryview for streamed
    forms, a dict of path and options for file forms); ``rows`` is how many rows it holds when
    that is cheap to know (None: the sink's ``write_raw`` says); ``nbytes`` its size for the
    counters and the byte-rate limit; ``position`` as :attr:`Chunk.position`."""

    form: str
    data: Any
    rows: int | None = None
    nbytes: int = 0
    position: Any = None


class DirectFallback(Exception):  # noqa: N818 - a signal to the engine, not a failure
    """Raised by ``Sink.write_raw``/``Sink.close`` on the direct path when a row is at fault and
    the raw form cannot say which: the sink took back what the split wrote, and the engine
    reads the split again on the Arrow path (where each bad row becomes a dirty record)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Reader:
    """Reads a source as Arrow record batches, in independent splits.

    ``__init__(params, ctx)`` validates the parameters (use ``self.p``, then ``self.p.done()``) and
    must not move data. ``schema()`` may return None when it is only known once read.
    ``splits(n)`` returns at most as many splits as the data allows (``n`` is a wish, not an order),
    covering the input exactly once. ``read(split)`` yields ``pa.RecordBatch`` or :class:`Chunk`
    and may run in any worker; it raises ``FatalError``/``RetriableError`` for source failures.
    """

    kind: ClassVar[str] = ""

    def __init__(self, params: dict[str, Any], ctx: Context):
        self.params = params
        self.ctx = ctx
        self.p = Params(params, ctx)

    @property
    def local_only(self) -> str | None:
        """Why this reader's splits can be read only in the driver's process or on its disk
        (an embedded database file, a snapshot this process holds), or None (the default):
        any worker may read them. An executor that runs tasks elsewhere refuses such a reader
        at validate time, naming this reason."""
        return None

    def schema(self) -> pa.Schema | None:
        return None

    def splits(self, n: int) -> list[Split]:
        return [Split(0, self.kind or "all")]

    def read(self, split: Split) -> Iterator[pa.RecordBatch | Chunk]:
        raise NotImplementedError

    #: why ``raw_forms`` is empty, when it can say (``fileFormat is text``): the run report
    #: shows it beside ``arrow``
    raw_refusal: str = ""

    def raw_forms(self) -> tuple[str, ...]:
        """The raw forms (see :class:`Raw`) this reader can read its splits in, for the direct
        path; the default: none."""
        return ()

    def raw_chosen(self, form: str) -> None:
        """The engine reads the splits in ``form`` (called after :meth:`raw_forms`, before
        :meth:`splits`): a reader may plan its splits for it, e.g. whole files for a form that
        cannot start inside one. The default: nothing to do."""

    def read_raw(self, split: Split, form: str) -> Iterator[Raw]:
        """Read ``split`` as pieces of raw ``form`` (one of :meth:`raw_forms`); the pieces of a
        split go to one sink in order. Closing the iterator early must release the source."""
        raise NotImplementedError

    def estimate(self) -> int | None:
        """About how many rows ``read`` will yield over all the splits, or None (the default)
        when that is not cheap to know. Called once, after ``splits``; it sizes the progress
        line only (percent and ETA), so a catalog statistic (``pg_class.reltuples``,
        ``information_schema.tables.table_rows``) or the files' size over a sampled row width
        will do, and it must not read the data."""
        return None

    def finished(self, facts: list[Any]) -> None:
        """Every split was read: ``facts`` holds each :attr:`Chunk.facts` they yielded. Called
        once, in the driver, before anything is published; raising here (a ``ConfigError``
        for a mistake in the job) fails the run with nothing published. The default: nothing
        to check."""

    def committed(self, positions: dict[str, Any]) -> None:
        """The writer committed and the engine saved ``positions`` (split label -> the last
        ``Chunk.position`` of that split; ``{}`` when none was reported). Here a reader may move
        a position its server keeps (confirm a replication slot, acknowledge messages): only now
        is the data safe. Called once per successful run, in the driver; the default does
        nothing. An exception here is logged, not fatal: data and positions are already saved."""

    def close(self) -> None:
        """Release what ``__init__``/``splits`` opened (snapshots, connections)."""


class Sink:
    """One task's handle on the writer. ``write`` is all or nothing: if it raises
    DirtyRecordError the batch left no trace, and the engine retries its halves."""

    def write(self, batch: pa.RecordBatch) -> None:
        raise NotImplementedError

    def write_raw(self, raw: Raw) -> int:
        """The direct path: write one piece of the split in raw form; return the rows it wrote.
        Raise :class:`DirectFallback` (having taken back this split's rows) when a row is at
        fault: the engine then reads the split again on the Arrow path."""
        raise NotImplementedError

    def begin_raw(self) -> None:
        """The direct path: called once before the split's reading starts. Connectors leave it
        alone; the engine's sinks of a ``serial`` writer take the writer here, so that a split
        is read only when its rows can go straight in."""

    def close(self) -> Any:
        """Finish the task's part; return plain data for ``Writer.commit``/``abort``."""
        return None

    def discard(self) -> Any:
        """The task failed: drop what it staged. Returns what ``abort`` should clean up."""
        return None


class Writer:
    """Writes record batches into a target; publishes only at ``commit``.

    Capabilities are data: ``modes`` lists the ``writeMode`` values it supports (the first is the
    default) and ``publish`` says how it makes the result visible (``rename``, ``transaction``,
    ``partition swap``). Asking for another mode is a ConfigError before a row moves.
    """

    kind: ClassVar[str] = ""
    modes: ClassVar[tuple[str, ...]] = ("append",)
    publish: ClassVar[str] = "transaction"
    #: True when sinks share one connection/transaction and must not run in parallel
    serial: ClassVar[bool] = False
    #: True when a sink may run away from the driver: the prepared writer is pickled to a worker,
    #: which opens its sinks there and returns their results as plain data (staged files, lake
    #: data files, objects). False (a transaction on the driver's connection): an executor that
    #: runs tasks elsewhere brings their batches back to the driver's sinks.
    remote_sinks: ClassVar[bool] = False
    #: why ``raw_form`` said None, when it can say (``column amount: numeric(10,2) here,
    #: numeric there``): the run report shows it beside ``arrow``
    raw_refusal: str = ""
    #: when :meth:`ordered` and there are several splits, the engine's turn-keeper
    #: (``engine.executor.SplitTurns``), set before the sinks open; None: splits write in
    #: whatever order they come
    split_turns: Any = None

    def __init__(self, params: dict[str, Any], ctx: Context):
        self.params = params
        self.ctx = ctx
        self.p = Params(params, ctx)

    def target_key(self) -> str | None:
        """What this writer writes, as text that is equal for two writers of the same target
        (a table in a database); None when it cannot tell. See :meth:`shares_target`."""
        return None

    def shares_target(self, other: Writer) -> str | None:
        """What ``other`` (a writer of another entry of the same job) writes that this one
        writes too, in words; None when they are apart. Two entries of one job writing one
        target would replace or wait for each other's rows within the same run."""
        mine = self.target_key()
        if mine is not None and type(other) is type(self) and other.target_key() == mine:
            return mine
        return None

    def deletes_unwritten(self) -> bool:
        """Whether the commit deletes the target's rows whose key the run did not write
        (``sync``). A record lost as dirty would then take its target row with it, so the
        engine refuses to commit when a record was dirty before reaching the writer (its key
        is unknown), or at the writer unless :attr:`keeps_dirty_keys`."""
        return False

    #: with :meth:`deletes_unwritten`: the keys of rows dirty at this writer's own write count
    #: as written (their target rows are left as they were), so those need no refusal
    keeps_dirty_keys: ClassVar[bool] = False

    def ordered(self) -> bool:
        """Whether the result depends on the order in which rows of different splits arrive
        (a write by key: the last row of a key wins). The engine then lets each split write
        only after every split before it has closed, so the result is the one a single task
        reading the splits in order would give, whatever the channel count."""
        return False

    def write_mode(self, aliases: dict[str, str] | None = None) -> str:
        """Read and check ``writeMode`` against ``modes`` (with familiar spellings mapped)."""
        raw = self.p.get("writeMode", self.modes[0])
        if not isinstance(raw, str):
            self.p.problem("writeMode", f"must be a string, got {_show(raw)}")
            return self.modes[0]
        word = raw.strip()  # DataX trims it: "truncate " is truncate
        mapped = (aliases or {}).get(word, (aliases or {}).get(word.lower(), word))
        for m in self.modes:
            if m.lower() == mapped.lower():
                return m
        self.p.problem(
            "writeMode",
            f"{raw!r} is not one of {', '.join(self.modes)}{did_you_mean(raw, self.modes)}",
        )
        return self.modes[0]

    def prepare(self, schema: pa.Schema | None) -> None:
        """Check the target and set up staging; ``schema`` is the reader's (may be None)."""

    def open(self, split: Split) -> Sink:
        raise NotImplementedError

    def raw_form(self, reader: Reader, schema: pa.Schema | None) -> str | None:
        """After ``prepare``: the raw form (one of ``reader.raw_forms()``) this writer takes
        from ``reader`` without Arrow, or None (the default: the Arrow path). Say a form only
        when the target's columns, their types and the writer's options take the reader's
        rows as they are, byte for byte; ``schema`` is the reader's."""
        return None

    def raw_by_default(self, form: str) -> bool:
        """Whether the direct path takes ``form`` (one :meth:`raw_form` said) when the job
        leaves ``setting.direct`` unset; ``setting.direct: true`` takes it whatever this says.
        The default: yes. Say no for a form that is correct but slower than the Arrow path
        (DuckDB's ``csv-file``: the exactness checks cost more than tidesync's own parsing)."""
        return True

    def commit(self, results: list[Any]) -> None:
        raise NotImplementedError

    def abort(self, results: list[Any]) -> None:
        """Undo everything staged; the target stays exactly as it was."""


#: kind -> module path; each module has ``Reader`` and/or ``Writer``.
CONNECTORS: dict[str, str] = {
    "stream": "tidesync.connectors.stream",
    "file": "tidesync.connectors.file",
    "sqlite": "tidesync.connectors.sqlite",
    "duckdb": "tidesync.connectors.duckdb",
    "postgresql": "tidesync.connectors.postgresql",
    "mysql": "tidesync.connectors.mysql",
    "s3": "tidesync.connectors.file",
    "lake": "tidesync.connectors.lake",
    "lancedb": "tidesync.connectors.lancedb",
    "postgresqlcdc": "tidesync.connectors.postgresql.cdc",
    "mysqlcdc": "tidesync.connectors.mysql.cdc",
}


#: familiar names -> kind. Side-specific DataX names carry the side they belong to.
ALIASES: dict[str, tuple[str, Side | None]] = {
    "streamreader": ("stream", "reader"),
    "streamwriter": ("stream", "writer"),
    "txtfile": ("file", None),
    "txtfilereader": ("file", "reader"),
    "txtfilewriter": ("file", "writer"),
    "localfile": ("file", None),
    "sqlitereader": ("sqlite", "reader"),
    "sqlitewriter": ("sqlite", "writer"),
    "duckdbreader": ("duckdb", "reader"),
    "duckdbwriter": ("duckdb", "writer"),
    "postgres": ("postgresql", None),
    "postgresqlreader": ("postgresql", "reader"),
    "postgresqlwriter": ("postgresql", "writer"),
    "mariadb": ("mysql", None),
    "mysqlreader": ("mysql", "reader"),
    "mysqlwriter": ("mysql", "writer"),
    "oss": ("s3", None),
    "ossreader": ("s3", "reader"),
    "osswriter": ("s3", "writer"),
    "s3reader": ("s3", "reader"),
    "s3writer": ("s3", "writer"),
    "iceberg": ("lake", None),
    "lance": ("lancedb", None),
    "lancedbreader": ("lancedb", "reader"),
    "lancedbwriter": ("lancedb", "writer"),
    "lakereader": ("lake", "reader"),
    "lakewriter": ("lake", "writer"),
    "postgresqlcdcreader": ("postgresqlcdc", "reader"),
    "pgcdc": ("postgresqlcdc", None),
    "mysqlcdcreader": ("mysqlcdc", "reader"),
    "mariadbcdc": ("mysqlcdc", None),
    "binlog": ("mysqlcdc", None),
}


#: names of other systems' connectors that tidesync has no connector for, with what to use
#: instead (DataX / DataWorks names, side suffixes stripped)
ELSEWHERE: dict[str, str] = {
    "odps": "MaxCompute (ODPS) is a cloud service with no local connector; its local stand-in "
    "is the lake connector (name: lake; a day's partition as partition: ds=${bizdate}, "
    "writeMode overwrite, merge or sync), see docs/connectors/lake.md",
}


ELSEWHERE["maxcompute"] = ELSEWHERE["odps"]
ELSEWHERE["otsstream"] = (
    "Tablestore's change stream is a cloud service with no local connector; the local "
    "change-data-capture readers are postgresqlcdc (PostgreSQL logical decoding) and mysqlcdc "
    "(the MySQL/MariaDB binlog), read in [start, end) windows with a stored checkpoint, see "
    "docs/connectors/cdc.md"
)


@functools.cache
def _plugins() -> dict[str, str]:
    from importlib.metadata import entry_points  # imported only when a name is not built in

    return {ep.name: ep.value for ep in entry_points(group="tidesync.connectors")}


def resolve(name: str, side: Side, where: str = "") -> tuple[str, str]:
    """Map a user-written connector name to ``(kind, module path)`` or raise ConfigError."""
    key = name.strip().lower() if isinstance(name, str) else ""
    if key in CONNECTORS:
        return key, CONNECTORS[key]
    if key in ALIASES:  # built-in names first: no scan of the installed packages (20 ms)
        kind, alias_side = ALIASES[key]
        if alias_side is not None and alias_side != side:
            raise ConfigError(
                f"{where}: '{name}' is a {alias_side}, but it stands here as the {side}"
            )
        return kind, CONNECTORS[kind]
    plugins = _plugins()
    if key in plugins:
        return key, plugins[key]
    # DataX style without a registered alias: 'foowriter' -> 'foo'
    for suffix in (side,):
        if key.endswith(suffix) and key[: -len(suffix)] in CONNECTORS:
            kind = key[: -len(suffix)]
            return kind, CONNECTORS[kind]
    bare = key[: -len(side)] if key.endswith(side) else key
    if bare in ELSEWHERE:
        raise ConfigError(f"{where}: unknown {side} {name!r}: {ELSEWHERE[bare]}")
    names = sorted(set(CONNECTORS) | set(ALIASES) | set(plugins))
    raise ConfigError(
        f"{where}: unknown {side} {name!r}{did_you_mean(key, names)}; `tidesync plugins` lists them"
    )


def load(name: str, side: Side, where: str = "") -> type[Reader] | type[Writer]:
    """The Reader or Writer class for a user-written name."""
    kind, module_path = resolve(name, side, where)
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as e:
        if e.name and not e.name.startswith("tidesync"):
            extra = {
                "psycopg": "postgresql",
                "adbc_driver_postgresql": "postgresql",
                "adbc_driver_manager": "postgresql",
                "pgpq": "postgresql",
                "pymysql": "mysql",
                "pyiceberg": "lake",
                "s3fs": "s3",
                "lancedb": "lancedb",
            }.get(e.name.split(".")[0], "all")
            raise ConfigError(
                f"{where}: the {kind} connector needs the Python package {e.name!r}: "
                f"pip install 'tidesync[{extra}]'"
            ) from None
        raise ConfigError(
            f"{where}: the {kind} connector is not available in this version"
        ) from None
    cls = getattr(module, "Reader" if side == "reader" else "Writer", None)
    if cls is None:
        raise ConfigError(f"{where}: {kind} cannot be used as a {side}")
    return cls  # type: ignore[no-any-return,unused-ignore]


def catalog() -> list[dict[str, Any]]:
    """Every known connector: kind, module, sides available, aliases (for ``tidesync plugins``)."""
    rows = []
    mods = {**CONNECTORS, **_plugins()}
    for kind, module_path in sorted(mods.items()):
        try:
            module = importlib.import_module(module_path)
            sides = [s for s in ("reader", "writer") if hasattr(module, s.capitalize())]
            note = ""
        except ImportError as e:
            sides, note = [], f"unavailable: {e}"
        aliases = sorted(a for a, (k, _) in ALIASES.items() if k == kind)
        rows.append(
            {"kind": kind, "module": module_path, "sides": sides, "aliases": aliases, "note": note}
        )
    return rows
