"""The runner: one job, from its file to one atomic publish and a run report.

    load + substitute parameters + parse      (ConfigError: nothing has moved)
    build writers, readers, transformers      (each validates its parameters; all problems at once)
    writer.prepare(schema); reader.splits(n)
    one task per split, run by the executor (engine/executor.py; local: a thread pool):
        read -> transform -> channel -> sink.write (bad rows bisected out), in engine/task.py
        or, on the direct path (like stores, no transformer: :func:`direct_form`),
        read_raw -> channel -> sink.write_raw, falling back to the above per split
    results, counters and dirty records come back as data; the error limit is checked
    commit every writer, or abort them all

Threads, not processes, by default: the heavy lifting (parsing, compression, Parquet, database
drivers) happens in native code that releases the GIL.
"""

from __future__ import annotations

import errno
import functools
import gc
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path
from typing import Any, Concatenate, ParamSpec

import pyarrow as pa

from tidesync.connectors.base import Context, Params, Reader, Side, Writer, load, resolve
from tidesync.connectors.publish import hook
from tidesync.engine.channel import Cancelled, RateLimiter
from tidesync.engine.dirty import DirtyLog, RecordLimit
from tidesync.engine.executor import (
    Executor,
    SplitTurns,
    check_executor,
    executor_class,
    executor_for,
)
from tidesync.engine.task import Counters, Shared, Step, Task, TaskResult
from tidesync.errors import (
    ConfigError,
    DirtyRecordError,
    ErrorLimitExceeded,
    FatalError,
    TidesyncError,
    is_retriable,
    redact,
    register_secret,
    secret_scope,
)
from tidesync.spec.ignored import info_line
from tidesync.spec.job import (
    Content,
    JobSpec,
    Settings,
    declared_timezone,
    load_document,
    parse_job,
)
from tidesync.spec.job import Step as JobStep
from tidesync.spec.params import RunTime, resolve_params, substitute_tree
from tidesync.spec.secrets import register_document, secret_parameters
from tidesync.state import load_positions, positions_key, save_positions
from tidesync.transforms.base import Transform, load_transform

__all__ = [
    "EntryPath",
    "Job",
    "Report",
    "SplitReport",
    "direct_form",
    "load_job",
    "plan",
    "run_job",
]

log = logging.getLogger("tidesync")
_P = ParamSpec("_P")

CHANNEL_BYTES = 64 << 20  # per task; the channel holds at least one batch whatever its size


@dataclass
class SplitReport:
    content: int
    split: str
    status: str = "pending"  # pending | running | done | failed | cancelled
    records_read: int = 0
    bytes_read: int = 0
    records_written: int = 0
    dirty_records: int = 0
    #: rows the transformers took out (dx_filter, an sql WHERE): read = written + dirty + filtered
    records_filtered: int = 0
    elapsed_s: float = 0.0
    error: str | None = None
    #: where the split ran: ``host`` and ``pid``; on Ray also ``node`` and ``attempt``
    worker: dict[str, Any] | None = None
    #: the path its rows took: ``arrow`` or ``direct: FORM``
    path: str = ""
    #: why it left the direct path for the Arrow one (a row the raw form could not isolate)
    fallback: str | None = None


@dataclass
class EntryPath:
    """The path a content entry's rows take: ``direct: FORM`` (raw rows between like stores,
    no Arrow) or ``arrow``, with ``why`` it is not direct."""

    content: int
    path: str
    why: str | None = None


@dataclass
class Report:
    job: str
    status: str = "running"  # running | succeeded | failed | invalid (a bad job file)
    executor: str = "local"  # the executor that ran the tasks (local | ray)
    records_read: int = 0
    records_written: int = 0
    dirty_records: int = 0
    #: rows the transformers took out (dx_filter, an sql WHERE): read = written + dirty + filtered
    #: once the run succeeded (negative where a transformer makes rows, an sql join)
    records_filtered: int = 0
    bytes_read: int = 0
    elapsed_s: float = 0.0
    records_per_s: float = 0.0
    started_at: str = ""
    finished_at: str = ""
    cyctime: str = ""
    bizdate: str = ""
    error: str | None = None
    #: what failed, as data: the error's class (``RetriableError``, ``FatalError``,
    #: ``ConfigError``, ``ErrorLimitExceeded``, ...), the store's code (SQLSTATE, MySQL errno,
    #: SQLite result) and whether a retry of the run may succeed
    error_class: str | None = None
    error_code: str | None = None
    retriable: bool = False
    dirty_file: str | None = None
    rows_expected: int | None = None  # the readers' estimate of the rows to read, when all gave one
    state: str | None = None  # the state store the run used (no secrets)
    positions: dict[str, Any] = field(default_factory=dict)  # saved: state key -> positions
    splits: list[SplitReport] = field(default_factory=list)
    #: per content entry, the path its rows take (direct or arrow, and why)
    paths: list[EntryPath] = field(default_factory=list)
    #: what transforms say of themselves (Transform.describe): content and position, name, and
    #: e.g. an embedding model and its dimension
    transforms: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # every problem of an invalid job

    @classmethod
    def invalid(cls, job: str, problems: list[str]) -> Report:
        """The report of a job that did not load: nothing ran, every problem listed."""
        now = _now_text(None)  # the job's zone is not known: the machine's, with its offset
        errors = [redact(p) for p in problems]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return cls(
            job=job,
            status="invalid",
            started_at=now,
            finished_at=now,
            error=(errors[0] + more) if errors else None,
            errors=errors,
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, ensure_ascii=False)

    def write(self, path: Path) -> None:
        """Write the report as JSON to ``path``, whole or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)

    def done_fraction(self) -> float | None:
        """How much of the run is done, 0..1, or None when nothing says how much there is.

        Rows read against the readers' estimate when there is one (held below 1 until the
        run ends: an estimate may be short); else splits finished against splits planned,
        when there are several."""
        if self.status != "running":
            return 1.0 if self.status == "succeeded" else None
        if self.rows_expected:
            return min(self.records_read / self.rows_expected, 0.99)
        if len(self.splits) > 1:
            return sum(s.status == "done" for s in self.splits) / len(self.splits)
        return None

    def eta_s(self) -> float | None:
        """Seconds left at the pace so far, or None when that cannot be said yet."""
        f = self.done_fraction()
        if f is None or f <= 0 or f >= 1 or self.elapsed_s < 1:
            return None
        if self.rows_expected and self.records_read >= self.rows_expected:
            return None  # the estimate fell short: how much is left is not known
        return self.elapsed_s * (1 - f) / f

    def progress_line(self) -> str:
        """``1,234,567 rows read (41%), 1,200,000 written, 88.1 MiB, 85,000 rows/s, 0 dirty,
        2/8 splits, ETA 0:01:05``: what a terminal and an instance log show while it runs."""
        rate = self.records_read / self.elapsed_s if self.elapsed_s else 0
        f = self.done_fraction()
        pct = f" ({f:.0%})" if f is not None else ""
        line = (
            f"{self.records_read:,} rows read{pct}, {self.records_written:,} written, "
            f"{self.bytes_read / 1048576:,.1f} MiB, {rate:,.0f} rows/s, "
            f"{self.dirty_records:,} dirty"
        )
        if len(self.splits) > 1:
            done = sum(s.status == "done" for s in self.splits)
            line += f", {done}/{len(self.splits)} splits"
        eta = self.eta_s()
        if eta is not None:
            line += f", ETA {_clock(eta)}"
        return line

    def summary(self) -> str:
        mb = self.bytes_read / 1048576
        line = (
            f"{self.status}: {self.records_read:,} read, {self.records_written:,} written, "
            f"{self.dirty_records:,} dirty, {self.records_filtered:,} filtered, "
            f"{mb:,.1f} MiB in {self.elapsed_s:.2f}s ({self.records_per_s:,.0f} rows/s)"
        )
        if self.paths:
            line += "\npath: " + "; ".join(self.path_words(p) for p in self.paths)
        if self.error:
            line += f"\nerror: {self.error}"
        if self.dirty_file:
            line += f"\ndirty records: {self.dirty_file}"
        if self.positions:
            line += f"\npositions of {', '.join(self.positions)} saved in {self.state}"
        return line

    def path_words(self, entry: EntryPath) -> str:
        """``direct: postgresql-copy-binary (1 of 4 splits on arrow: a row at fault)``."""
        words = entry.path
        if len(self.paths) > 1:
            words = f"content[{entry.content}] {words}"
        splits = [s for s in self.splits if s.content == entry.content]
        back = [s for s in splits if s.fallback]
        if back:
            words += f" ({len(back)} of {len(splits)} splits on arrow: {back[0].fallback})"
        return words


@dataclass(eq=False)
class Part:
    """One content entry, built: its reader, transformers and writer."""

    content: Content
    reader: Reader
    writer: Writer
    transforms: list[Transform]
    index: int


@dataclass
class Job:
    spec: JobSpec
    parts: list[Part]
    runtime: RunTime
    state: Any = None  # the state store (tidesync.state.StateStore) positions are saved in
    #: key paths the job carries that tidesync deliberately ignores (spec/ignored.py)
    ignored: list[str] = field(default_factory=list)

    def info(self) -> str:
        """One line naming the ignored keys and why; empty when there are none."""
        return info_line(self.ignored)

    #: the values load_job found in secret fields (and their spellings): masked while it runs
    secrets: list[str] = field(default_factory=list, repr=False)
    #: executor-specific options from outside the job file (ray: ``address``)
    executor_options: dict[str, Any] = field(default_factory=dict)


def load_job(
    path: str | Path,
    params: dict[str, str] | None = None,
    runtime: RunTime | None = None,
    *,
    connections: dict[str, dict[str, Any]] | None = None,
    state: Any = None,
    identity: str | None = None,
    root: Path | None = None,
    executor: str | None = None,
    executor_where: str = "--executor",
    executor_options: dict[str, Any] | None = None,
    raw_params: dict[str, str] | None = None,
) -> Job:
    """Read, substitute and validate a job file; build its connectors. Moves no data.

    ``raw_params`` are ``params`` as given, before :func:`resolve_params` (the scheduler's
    ``$[yyyymmdd-1]``): what an entry reads is told apart from one run to the next by them,
    not by their values of the day (None: ``params`` are taken as given).

    ``identity`` names the job in the state store when its file sets no ``setting.stateKey``
    (the scheduler passes ``node:NAME``); else the file's path relative to the project folder
    ``root`` identifies it. ``executor`` replaces ``setting.executor`` (``executor_where`` names
    what chose it, for messages); ``executor_options`` go to the executor (ray: ``address``).
    Raises ConfigError listing every problem found, each with its key path.
    """
    path = Path(path)
    with secret_scope() as secrets:  # what reaches a secret field is masked from here on
        try:
            doc = load_document(path)
            for name in secret_parameters(doc):
                if params and name in params:
                    register_secret(params[name])
            register_document(doc)
            rt = runtime or RunTime.of(tz=declared_timezone(doc, params))
            raw = doc
            doc = substitute_tree(doc, rt, params or {}, path="")
            register_document(doc)
            problems: list[str] = []
            spec = parse_job(doc, source=str(path), problems=problems)
            reads = _what_entries_read(raw, str(path), params if raw_params is None else raw_params)
            if executor:
                spec.settings.executor = executor.strip().lower()
                spec.settings.executor_where = executor_where
            try:
                job = plan(
                    spec,
                    rt,
                    base_dir=path.parent.resolve(),
                    connections=connections,
                    state=state,
                    identity=identity or file_identity(path, root),
                    reads=reads,
                )
            except ConfigError as e:
                problems.extend(e.problems)
            if problems:
                raise ConfigError(problems)
        except ConfigError as e:
            raise ConfigError([redact(p) for p in e.problems], code=e.code) from None
        job.secrets = list(secrets)
    job.executor_options = dict(executor_options or {})
    return job


def plan(
    spec: JobSpec,
    runtime: RunTime,
    *,
    base_dir: Path | None = None,
    connections: dict[str, dict[str, Any]] | None = None,
    state: Any = None,
    identity: str | None = None,
    reads: dict[int, str] | None = None,
) -> Job:
    problems: list[str] = []
    parts: list[Part] = []
    ident = spec.settings.state_key or identity or file_identity(Path(spec.source), None)
    reads = reads or {}

    def ctx_for(where: str, content: int) -> Context:
        return Context(
            base_dir=base_dir or Path.cwd(),
            where=where,
            timezone=spec.settings.timezone,
            job_name=Path(spec.source).stem or "job",
            state=state,
            state_key=positions_key(ident, content),
            reads=reads.get(content, ""),
            connections=connections or {},
            cyctime=runtime.cyctime,
            bizdate=runtime.bizdate,
            cyctime_zone=runtime.zone,
        )

    ignored = list(spec.ignored)

    def build(make: Callable[..., Any], *args: Any) -> Any:
        try:
            return make(*args)
        except ConfigError as e:
            problems.extend(e.problems)
            return None

    def construct(cls: Any, step: JobStep, content: int) -> Any:
        """Build a connector or transformer, then hold it to the keys it read."""
        obj = cls.__new__(cls)
        try:
            obj.__init__(step.parameter, ctx_for(step.where, content))
        except ConfigError as e:
            problems.extend(e.problems)
        except (TypeError, ValueError, LookupError, AttributeError, ArithmeticError) as e:
            # a value of a type the component did not expect: still the job file's fault
            log.debug("building %s failed", step.name, exc_info=True)
            why = redact(str(e))
            why = why if len(why) <= 200 else f"{why[:200]}..."
            problems.append(f"{step.where}: cannot be used ({type(e).__name__}: {why})")
            return None
        else:
            p = getattr(obj, "p", None)
            if isinstance(p, Params):
                problems.extend(p.unknown_keys())
                ignored.extend(p.ignored_keys())
            return obj
        # it failed: its unknown keys are known only if it read them all (it called done())
        p = getattr(obj, "p", None)
        if isinstance(p, Params) and p.finished:
            problems.extend(x for x in p.unknown_keys() if x not in problems)
        return None

    def name_path(step_where: str) -> str:
        return step_where.rsplit(".", 1)[0] + ".name"

    before = len(problems)
    build(check_executor, spec.settings.executor, spec.settings.executor_path)
    executor_ok = len(problems) == before
    for i, c in enumerate(spec.contents):
        _one_connector(c.reader, "reader", problems)
        _one_connector(c.writer, "writer", problems)
        rcls = build(load, c.reader.name, "reader", name_path(c.reader.where))
        wcls = build(load, c.writer.name, "writer", name_path(c.writer.where))
        reader = construct(rcls, c.reader, i) if rcls else None
        writer = construct(wcls, c.writer, i) if wcls else None
        transforms = []
        for t in c.transformers:
            tcls = build(load_transform, t.name, name_path(t.where))
            tr = construct(tcls, t, i) if tcls else None
            if tr:
                transforms.append(tr)
        if reader and writer:
            parts.append(Part(c, reader, writer, transforms, i))
    for j, later in enumerate(parts):
        for earlier in parts[:j]:
            shared = later.writer.shares_target(earlier.writer)
            if shared is not None:
                problems.append(
                    f"{later.content.writer.where}: writes {shared}, as "
                    f"{earlier.content.writer.where} does; two entries of one job cannot write "
                    "one target (each would replace, or wait for, the other's rows): read both "
                    "sources in one entry (its reader takes several tables or paths), or write "
                    "them to different targets"
                )
    job = Job(spec, parts, runtime, state, ignored)
    if not problems and executor_ok:
        problems.extend(executor_class(spec.settings.executor).problems(job))
    if problems:
        raise ConfigError(problems)
    return job


#: the run time an entry's reads are written down at: they differ from run to run only by
#: what the times do not make
_READS_AT = "20000101000000"
#: the reader parameters that choose which rows are read (at any depth: ``connection[0].table``)
_ROW_KEYS = frozenset(
    {
        "table",
        "where",
        "querySql",
        "jdbcUrl",
        "url",
        "database",
        "datasource",
        "dbname",
        "host",
        "port",
        "schema",
    }
)


def _what_entries_read(raw: Any, source: str, params: dict[str, str] | None) -> dict[int, str]:
    """Per entry, what its reader reads, with the run's times left out: its row-choosing
    parameters (:data:`_ROW_KEYS`, ``incremental.column``) substituted at one fixed run time,
    the user's parameters resolved there too. Two runs under one job identity that differ here
    read different rows (``-p region=east``, then ``west``): one saved position cannot serve
    both. Credentials never appear (URLs lose their user, password and query)."""
    try:
        at = RunTime.of(_READS_AT)
        given = resolve_params(dict(params or {}), at)
        spec = parse_job(substitute_tree(raw, at, given, path=""), source=source, problems=[])
    except (ConfigError, ValueError, TypeError):
        return {}  # the job's own problems are reported by the real substitution
    job = Path(source).resolve().as_posix()
    return {
        i: _reads_of(c.reader.parameter, c.writer.parameter, job)
        for i, c in enumerate(spec.contents)
    }


#: the writer parameters that name its target (``writer.`` keys of what an entry reads, with
#: its job file as ``writer.job``): two job files sharing a ``stateKey`` into two targets would
#: each get part of the rows
_TARGET_KEYS = _ROW_KEYS | {"path", "fileName"}


def _reads_of(
    parameter: dict[str, Any], writer: dict[str, Any] | None = None, job: str = ""
) -> str:
    found: dict[str, Any] = {}

    def walk(obj: Any, path: str, keys: frozenset[str]) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                at = f"{path}.{k}" if path else str(k)
                if k in keys:
                    found[at] = _without_credentials(v)
                elif at == "incremental" and isinstance(v, dict):
                    found["incremental.column"] = v.get("column")
                else:
                    walk(v, at, keys)
        elif isinstance(obj, list):
            for j, v in enumerate(obj):
                walk(v, f"{path}[{j}]", keys)

    walk(parameter, "", _ROW_KEYS)
    if found and isinstance(writer, dict):
        walk(writer, "writer", _TARGET_KEYS)
        found["writer.job"] = job
    return json.dumps(found, sort_keys=True, default=str) if found else ""


def _without_credentials(v: Any) -> Any:
    if isinstance(v, list):
        return [_without_credentials(x) for x in v]
    if isinstance(v, str) and "://" in v:
        head, _, rest = v.partition("://")
        rest = rest.split("?", 1)[0]
        return f"{head}://{rest.rpartition('@')[2]}"
    return v


def file_identity(path: Path, root: Path | None) -> str:
    """A job file's identity in the state store: its path relative to the project folder
    (the same on every machine of a shared state), or its absolute path outside of it."""
    full = path.resolve()
    if root is not None:
        try:
            return full.relative_to(root.resolve()).as_posix()
        except ValueError:
            pass
    return full.as_posix()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def _now_text(tz: str | None) -> str:
    """Now, as an ISO time with its UTC offset, in zone ``tz`` (the machine's when None)."""
    from zoneinfo import ZoneInfo

    now = datetime.now(ZoneInfo(tz)) if tz else datetime.now().astimezone()
    return now.isoformat(timespec="seconds")


def _estimate(reader: Reader) -> int | None:
    try:
        n = reader.estimate()
    except Exception as e:  # noqa: BLE001 - an estimate only sizes the progress line
        log.debug("estimate of %s failed: %s", type(reader).__name__, redact(str(e)))
        return None
    return n if isinstance(n, int) and n >= 0 else None


def _masking_its_secrets(
    run: Callable[Concatenate[Job, _P], Report],
) -> Callable[Concatenate[Job, _P], Report]:
    """Run with the job's secrets registered, so that every message, log line, report and
    dirty record of the run has them masked."""

    @functools.wraps(run)
    def wrapper(job: Job, /, *args: _P.args, **kwargs: _P.kwargs) -> Report:
        with secret_scope(job.secrets):
            return run(job, *args, **kwargs)

    return wrapper


@_masking_its_secrets
def run_job(
    job: Job,
    *,
    report_path: Path | None = None,
    dirty_path: Path | None = None,
    cancel: threading.Event | None = None,
    progress: Callable[[Report], None] | None = None,
    progress_every: float = 0.5,
    timezone: str | None = None,
    process_ends: bool = False,
) -> Report:
    """Run a planned job to one atomic publish (or none). Never raises for a job failure:
    the report's status says it, with ``error``; raises only for programming errors.

    ``progress(report)`` is called every ``progress_every`` seconds while it runs
    (:meth:`Report.progress_line` says it in words). The report's times are in ``timezone``
    (default: the job's ``setting.timezone``), with their UTC offset.

    ``process_ends``: the process ends after this run (``tidesync run``). Once planned, what the
    imports and the planning made (about 50,000 objects of pyarrow, numpy, psycopg, ...) is
    moved out of the cyclic collector's reach (``gc.freeze``): its collections during the run
    and the one before the process ends (``cli._end_process``) then look only at the run's own
    objects, 10-35 ms less a run. Not in a long-lived process (the scheduler's daemon), whose
    frozen garbage would never be freed. The collector, off for the imports and the planning
    (``cli.command``), is turned on there."""
    cancel = cancel or threading.Event()
    t0 = time.monotonic()
    rt = job.runtime
    settings = job.spec.settings
    tz = timezone or job.spec.settings.timezone
    report = Report(
        job=job.spec.source,
        started_at=_now_text(tz),
        cyctime=rt.cyctime.strftime("%Y%m%d%H%M%S"),
        bizdate=rt.bizdate.strftime("%Y%m%d"),
    )
    if dirty_path is None and report_path is not None:
        dirty_path = dirty_beside(report_path)
    dirty = DirtyLog(dirty_path)
    if job.state is not None:
        report.state = job.state.describe()
        log.info("state store: %s", report.state)
    results: dict[int, list[Any]] = {p.index: [] for p in job.parts}
    prepared: list[Part] = []
    committed: list[Part] = []
    live: list[Counters] = []
    stop_progress = threading.Event()
    ticker = None
    if progress is not None:

        def tick() -> None:
            while not stop_progress.wait(progress_every):
                _tally(report, live)
                report.elapsed_s = time.monotonic() - t0
                progress(report)

        ticker = threading.Thread(target=tick, daemon=True, name="progress")
        ticker.start()
    try:
        n = settings.concurrent
        executor = executor_for(
            settings.executor,
            n,
            {p.index: (p.reader, p.transforms) for p in job.parts},
            settings.executor_path,
            job.executor_options,
        )
        report.executor = executor.name
        for part in job.parts:
            for j, t in enumerate(part.transforms):
                said = t.describe()
                if said is not None:
                    report.transforms.append(
                        {"content": part.index, "transformer": j, "name": t.name, **said}
                    )
        tasks: list[Task] = []
        expected: list[int | None] = []
        for part in job.parts:
            schema = part.reader.schema()
            for t in part.transforms:
                schema = t.output_schema(schema) if schema is not None else None
            part.writer.prepare(schema)
            prepared.append(part)
            form, why = direct_form(part, settings, executor, schema)
            if form is not None:
                part.reader.raw_chosen(form)
            report.paths.append(EntryPath(part.index, f"direct: {form}" if form else "arrow", why))
            log.info("content[%d]: %s", part.index, report.path_words(report.paths[-1]))
            reader = _step(part.reader)
            transforms = tuple(_step(t) for t in part.transforms)
            # a serial writer takes a direct split's rows one split at a time (_LockedSink):
            # more splits of a table would only read its rows again by key ranges (index
            # scans, 0.4-0.8 server CPU-s more for 2M PostgreSQL rows) for no parallelism
            splits = part.reader.splits(1 if form is not None and part.writer.serial else n)
            # a write by key: splits take turns in order, as one task would write them
            ordered = part.writer.ordered() and len(splits) > 1
            part.writer.split_turns = (
                SplitTurns([s.index for s in splits], cancel) if ordered else None
            )
            sinks = executor.sinks(part.writer)
            for split in splits:
                report.splits.append(SplitReport(part.index, split.label))
                tasks.append(
                    Task(part.index, reader, split, transforms, sinks, CHANNEL_BYTES, form)
                )
            expected.append(_estimate(part.reader))
        if expected and None not in expected:
            report.rows_expected = sum(e for e in expected if e is not None)
        live.extend(Counters() for _ in tasks)
        shared = Shared(
            RateLimiter(settings.byte_rate, settings.record_rate, cancel),
            RecordLimit(0 if settings.allows_no_dirty else settings.error_records),
            cancel,
        )
        hook("run.tasks")  # tests stop a run here, its writers prepared, no row moved yet
        if process_ends:
            gc.freeze()
            gc.enable()  # ``tidesync run`` imported and planned with it off (cli.command)
        finished = executor.run(tasks, shared, live)
        live[:] = [r.counters for r in finished]  # the final counts, whatever the executor
        _tally(report, live)
        failure: TaskResult | None = None
        positions: dict[int, dict[str, Any]] = {}  # content -> split label -> last position
        facts: dict[int, list[Any]] = {}  # content -> its splits' Chunk.facts
        for res, sr in zip(finished, report.splits, strict=True):
            if res.status == "done" and res.position is not None:
                positions.setdefault(res.content, {})[sr.split] = res.position
            if res.status == "done":
                facts.setdefault(res.content, []).extend(res.facts)
            sr.elapsed_s = res.elapsed_s
            if res.error is not None:
                sr.error = redact(str(res.error))
            dirty.extend(res.dirty, res.counters.dirty_records)
            if res.status == "done" or res.result is not None:
                results[res.content].append(res.result)
            if res.error is not None and (
                failure is None or (res.failed_at or 0) < (failure.failed_at or 0)
            ):
                failure = res
        if failure is not None:
            assert failure.error is not None
            raise failure.error
        if cancel.is_set():
            raise FatalError("interrupted: nothing was published")
        frac = settings.error_fraction
        if frac is not None and _over_fraction(report.dirty_records, report.records_read, frac):
            raise ErrorLimitExceeded(
                f"error limit exceeded: {report.dirty_records} dirty of {report.records_read} records "
                f"is more than errorLimit.percentage {frac:.2%}"
            )
        for part in prepared:
            part.reader.finished(facts.get(part.index, []))
        hook("run.commit")  # tests stop a run here, its data written, nothing published yet
        for part in prepared:
            _dirty_rows_kept(part, [r.counters for r in finished if r.content == part.index])
        for part in prepared:
            _positions_unchanged(part, bool(positions.get(part.index)))
        for part in prepared:
            part.writer.commit(results[part.index])
            committed.append(part)
            _positions_committed(part, positions.get(part.index, {}), report)
        report.status = "succeeded"
    except BaseException as e:
        report.status = "failed"
        report.error = redact(_message(e))
        if committed:  # stores cannot publish together: say what is out already
            done = ", ".join(f"content[{p.index}]" for p in committed)
            report.error += (
                f"; already published before this failure: {done} (a rerun writes "
                f"{'its' if len(committed) == 1 else 'their'} rows again)"
            )
        report.error_class = type(e).__name__
        report.error_code = _code(e)
        report.retriable = is_retriable(e) and not isinstance(e, Cancelled)
        for part in prepared:
            if part not in committed:
                try:
                    part.writer.abort(results[part.index])
                except Exception as ae:  # noqa: BLE001 - keep the first error
                    log.warning("abort of %s failed: %s", part.content.writer.name, redact(str(ae)))
        if not isinstance(e, TidesyncError | Cancelled | KeyboardInterrupt | OSError):
            log.debug("unexpected error", exc_info=e)
            if not isinstance(e, Exception):
                raise
    finally:
        stop_progress.set()
        if ticker is not None:
            ticker.join()
        _tally(report, live)
        for part in job.parts:
            try:
                part.reader.close()
            except Exception as ce:  # noqa: BLE001
                log.warning("closing reader failed: %s", redact(str(ce)))
            try:
                part.reader.ctx.release_positions()
            except Exception as ce:  # noqa: BLE001 - the run's outcome is decided
                log.warning("releasing the positions failed: %s", redact(str(ce)))
        report.elapsed_s = round(time.monotonic() - t0, 3)
        report.records_per_s = (
            round(report.records_read / report.elapsed_s, 1) if report.elapsed_s else 0.0
        )
        report.finished_at = _now_text(tz)
        _write_outputs(report, dirty, report_path)
    return report


def _one_connector(step: JobStep, side: Side, problems: list[str]) -> None:
    """A reader or writer written with both ``name`` and ``plugin``: both must name one
    connector (``mysqlreader`` and ``mysql`` do), else which one runs would be a guess."""
    if step.also is None:
        return
    where = step.where.rsplit(".", 1)[0]
    try:
        kinds = {resolve(n, side, where)[0] for n in (step.name, step.also)}
    except ConfigError:
        return  # an unknown name: loading the connector says so
    if len(kinds) > 1:
        problems.append(
            f"{where}: name and plugin name two connectors, {step.name!r} and {step.also!r}; "
            "keep one"
        )


def dirty_beside(report_path: Path) -> Path:
    """The dirty-record file of the report at ``report_path``: ``run.json`` ->
    ``run.dirty.jsonl``."""
    return report_path.with_name(report_path.stem + ".dirty.jsonl")


def direct_form(
    part: Part, settings: Settings, executor: Executor, schema: pa.Schema | None
) -> tuple[str | None, str | None]:
    """The raw form a prepared entry's rows take on the direct path, or None and why not.

    Direct only when nothing needs the rows as Arrow: no transformer, no ``speed.record``
    limit (raw pieces may not say their rows up front), ``setting.direct`` not false, the
    executor runs the writer's sinks where the readers run, the writer takes one of the
    reader's raw forms (``Writer.raw_form``: the target's columns and types fit as they are)
    and, with ``setting.direct`` unset, wants it (``Writer.raw_by_default``)."""
    if settings.direct is False:
        return None, f"{settings.where}.direct is false"
    if part.transforms:
        return None, "the entry has transformers"
    if settings.record_rate:
        return None, f"{settings.where}.speed.record limits records per second"
    if not executor.sinks_beside_readers(part.writer):
        return None, f"the {executor.name} executor runs this writer's sinks away from the reader"
    forms = part.reader.raw_forms()
    if not forms:
        detail = f": {part.reader.raw_refusal}" if part.reader.raw_refusal else ""
        return None, f"the {part.content.reader.name} reader has no raw form{detail}"
    form = part.writer.raw_form(part.reader, schema)
    if form is None or form not in forms:
        detail = f": {part.writer.raw_refusal}" if part.writer.raw_refusal else ""
        return None, (
            f"the {part.content.writer.name} writer takes none of the reader's raw forms "
            f"({', '.join(forms)}){detail}"
        )
    if settings.direct is None and not part.writer.raw_by_default(form):
        return None, (
            f"the {part.content.writer.name} writer takes {form} only with "
            f"{settings.where}.direct: true (the Arrow path is faster)"
        )
    return form, None


def _write_outputs(report: Report, dirty: DirtyLog, report_path: Path | None) -> None:
    """The dirty-record file and the report. Failing to write them changes nothing that
    happened: after a commit the data is published and the run succeeded (a scheduler must not
    run it again), so it is a warning, not a failure (``tidesync run`` checks the report's
    folder before moving data)."""
    try:
        written = dirty.write()
        report.dirty_file = str(written) if written else None
    except OSError as e:
        log.warning("%s; the dirty records could not be written: %s", _outcome(report), e)
    if report_path is not None:
        try:
            report.write(report_path)
        except OSError as e:
            log.warning(
                "%s; the report could not be written to %s: %s", _outcome(report), report_path, e
            )


def _outcome(report: Report) -> str:
    return (
        "the run succeeded and its data is published"
        if report.status == "succeeded"
        else ("the run failed")
    )


def _step(built: Reader | Transform) -> Step:
    """A built reader or transformer as data a worker can build again."""
    return Step(type(built), built.params, built.ctx)


def _tally(report: Report, counters: list[Counters]) -> None:
    """The job's totals from its tasks' counters (read while they run: a snapshot)."""
    report.records_read = sum(c.records_read for c in counters)
    report.bytes_read = sum(c.bytes_read for c in counters)
    report.records_written = sum(c.records_written for c in counters)
    report.dirty_records = sum(c.dirty_records for c in counters)
    report.records_filtered = sum(c.records_filtered for c in counters)
    for sr, c in zip(report.splits, counters, strict=False):
        sr.status = c.status
        sr.records_read, sr.bytes_read = c.records_read, c.bytes_read
        sr.records_written, sr.dirty_records = c.records_written, c.dirty_records
        sr.records_filtered = c.records_filtered
        sr.worker = c.worker
        sr.path, sr.fallback = c.path, c.fallback


def _over_fraction(dirty: int, read: int, frac: float) -> bool:
    """Whether ``dirty`` of ``read`` records is more than ``errorLimit.percentage``, exactly:
    ``frac`` is the decimal as written (0.29, its shortest form), so 29 dirty of 100 is not
    over 0.29 (``0.29 * 100`` is 28.999999999999996 in floating point)."""
    return Fraction(dirty, max(read, 1)) > Fraction(repr(frac))


def _code(e: BaseException) -> str | None:
    """The store's code of a failure; an OSError's errno name (``ENOSPC``)."""
    if isinstance(e, TidesyncError):
        return e.code
    if isinstance(e, OSError) and e.errno is not None:
        return errno.errorcode.get(e.errno, str(e.errno))
    return None


def _dirty_rows_kept(part: Part, counters: list[Counters]) -> None:
    """Before anything is published: FatalError when the entry's writer deletes the rows whose
    key the run did not write (``sync``) and a record was lost as dirty where the writer could
    not keep its key: its target row would be deleted though the source still has it."""
    w = part.writer
    if not w.deletes_unwritten():
        return
    before = sum(c.dirty_before_write for c in counters)
    at_write = sum(c.dirty_records - c.dirty_before_write for c in counters)
    lost = before + (0 if w.keeps_dirty_keys else at_write)
    if not lost:
        return
    where = "before reaching the writer" if before else "at the writer"
    raise FatalError(
        f"{w.ctx.path('writeMode')}: 'sync' deletes the target's rows whose key the run did not "
        f"write, and {lost} record{'s' if lost != 1 else ''} became dirty {where} without "
        "the writer knowing the key, so a row the source still has would have been deleted; "
        "nothing was published. Correct the records (the dirty-record file lists them) and run "
        "again, or write with 'merge', which deletes only what it is told to"
    )


def _positions_unchanged(part: Part, saves: bool) -> None:
    """Before anything is published: FatalError when another run of the job saved positions
    since this one read them. Its window overlapped this one's, so publishing would write those
    rows twice; the save after the commit checks again (compare-and-set) for a run that commits
    in between."""
    ctx = part.reader.ctx
    expected = ctx.stored_version()
    if not saves or ctx.state is None or expected is None:
        return
    if load_positions(ctx.state, ctx.state_key)[1] != expected:
        raise FatalError(
            f"state {ctx.state.describe()}: another run of this job saved the positions of "
            f"{ctx.state_key!r} while this one ran, so both read the same rows; nothing was "
            "published (run it again: it starts where the other run ended)"
        )


def _positions_committed(part: Part, positions: dict[str, Any], report: Report) -> None:
    """After the entry's commit: save its positions (compare-and-set against those the run
    started from), then tell the reader, which may now confirm them to its server."""
    ctx = part.reader.ctx
    if positions and ctx.state is not None:
        save_positions(ctx.state, ctx.state_key, positions, ctx.stored_version(), ctx.reads or None)
        report.positions[ctx.state_key] = positions
        log.info("positions of %s saved in %s", ctx.state_key, report.state)
    try:
        part.reader.committed(positions)
    except Exception as e:  # noqa: BLE001 - the data and the positions are safe already
        log.warning(
            "%s: confirming positions failed (the next run starts from the saved ones): %s",
            part.content.reader.name,
            redact(str(e)),
        )


def _message(e: BaseException) -> str:
    if isinstance(e, KeyboardInterrupt):
        return "interrupted: nothing was published"
    if isinstance(e, Cancelled):
        return "cancelled: nothing was published"
    if isinstance(e, TidesyncError):
        return str(e)
    if isinstance(e, DirtyRecordError):
        return e.reason
    return f"{type(e).__name__}: {e}"
