"""``sql``: SQL over each Arrow batch, with DuckDB.

- ``{"select": "SELECT *, price * qty AS total FROM batch WHERE qty > 0"}``: one SELECT whose
  table is ``batch``.
- ``{"expressions": {"total": "price * qty", "name": "upper(name)"}, "where": "qty > 0"}``: each
  expression replaces the column of its name, or is added after the others; ``where`` (optional)
  keeps the rows for which it is true.

DuckDB reads the batch in place (no copy) and gives Arrow back. The SQL runs on each batch alone,
so it must work row by row: a row whose value fails (``CAST('abc' AS INTEGER)``) raises
DirtyRecordError and the engine keeps that row, alone, as a dirty record. A mistake in the SQL
(syntax, a column that does not exist, a function that does not exist) is a ConfigError naming
the key path, raised when the output schema is worked out, before rows move. DuckDB runs with
external access off (no files, no network, no extensions), one statement, SELECT only.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import duckdb
import pyarrow as pa

from tidesync.connectors.sql.writer import empty_batch
from tidesync.errors import ConfigError, DirtyRecordError
from tidesync.plugin import Context
from tidesync.transforms.base import Transform
from tidesync.transforms.columns import _first_line

__all__ = ["Sql"]

#: errors that come from a value in a row, not from the SQL text
_ROW_ERRORS: tuple[type[BaseException], ...] = (
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.InvalidInputException,
    duckdb.DataError,
)


#: the plan operators that work row by row: the SQL gives the same rows whatever the batches
_ROW_BY_ROW = frozenset(
    {
        "PROJECTION",
        "FILTER",
        "UNNEST",
        "UNION",  # UNION ALL; a plain UNION adds a HASH_GROUP_BY, refused below
        "PYTHON_ARROW_SCAN",
        "ARROW_SCAN",
        "COLUMN_DATA_SCAN",  # VALUES
        "DUMMY_SCAN",
        "EMPTY_RESULT",
    }
)
#: joins: row by row only while at most one side reads the batch
_JOINS = ("JOIN", "CROSS_PRODUCT")
#: what the rest are, in words a user knows from the SQL
_WHOLE_INPUT = {
    "GROUP_BY": "an aggregate, GROUP BY or DISTINCT",
    "AGGREGATE": "an aggregate",
    "ORDER_BY": "ORDER BY",
    "TOP_N": "ORDER BY ... LIMIT",
    "LIMIT": "LIMIT or OFFSET",
    "WINDOW": "a window function (OVER, QUALIFY)",
    "SAMPLE": "USING SAMPLE",
}


def _operators(node: dict[str, Any]) -> list[str]:
    return [node["name"].strip(), *(o for c in node.get("children", []) for o in _operators(c))]


def _whole_input_use(plan: list[dict[str, Any]]) -> str | None:
    """What in a physical plan (``EXPLAIN (FORMAT JSON)``) would work on the whole batch rather
    than row by row, in words; None when it all works row by row."""

    def reads_batch(node: dict[str, Any]) -> bool:
        return any(o.endswith("ARROW_SCAN") for o in _operators(node))

    def walk(node: dict[str, Any]) -> str | None:
        name = node["name"].strip()
        children = node.get("children", [])
        if any(j in name for j in _JOINS):
            if sum(reads_batch(c) for c in children) > 1:
                return "a join or subquery over batch"
        elif name not in _ROW_BY_ROW:
            words = [w for k, w in _WHOLE_INPUT.items() if k in name]
            return words[0] if words else f"the operation {name}"
        return next((w for w in map(walk, children) if w is not None), None)

    found = next((w for w in map(walk, plan) if w is not None), None)
    if found is None and not all(_rows_from_batch(node) for node in plan):
        return (
            "rows that do not come from batch (a SELECT without FROM batch, a UNION ALL branch, "
            "or the other side of an outer join)"
        )
    return found


#: join types whose rows are the left input's (LEFT keeps all of them) / the right input's
_LEFT_ROWS = ("INNER", "LEFT", "SEMI", "ANTI", "MARK")
_RIGHT_ROWS = ("INNER", "RIGHT", "RIGHT_SEMI", "RIGHT_ANTI")


def _rows_from_batch(node: dict[str, Any]) -> bool:
    """Whether every row ``node`` gives comes from a row of batch. A part of the plan that does
    not read batch gives its rows once per batch: ``SELECT 'x'`` or a ``UNION ALL`` branch
    over constants added a row to every batch (and to an empty one), so as many as there were
    batches."""
    name = node["name"].strip()
    children = node.get("children", [])
    if name == "EMPTY_RESULT" or name.endswith("ARROW_SCAN"):
        return True
    if not children:
        return False  # VALUES, a table function, the one row of a SELECT without FROM
    if name == "CROSS_PRODUCT":
        return any(map(_rows_from_batch, children))
    if any(j in name for j in _JOINS) and len(children) == 2:
        kind = str(node.get("extra_info", {}).get("Join Type", "")).strip().upper()
        left, right = (_rows_from_batch(c) for c in children)
        return (kind in _LEFT_ROWS and left) or (kind in _RIGHT_ROWS and right)
    return all(map(_rows_from_batch, children))


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Sql(Transform):
    """SQL over each batch: a ``select`` on table ``batch``, or ``expressions`` and ``where``."""

    name = "sql"
    summary = "SQL expressions, filters and casts over each batch (DuckDB)"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.select: str | None = self.p.str("select")
        raw = self.p.obj("expressions")
        self.where: str | None = self.p.str("where")
        self.expressions: dict[str, str] = {}
        for col, expr in (raw or {}).items():
            if not col:
                self.p.problem("expressions", "a column name must not be empty")
            elif not isinstance(expr, str) or not expr.strip():
                self.p.problem(
                    f"expressions.{col}", f"must be a SQL expression as text, got {expr!r}"
                )
            else:
                self.expressions[col] = expr
        if raw == {}:
            self.p.problem("expressions", "must hold at least one expression")
        if self.select is not None and (raw is not None or self.where is not None):
            key = "expressions" if raw is not None else "where"
            self.p.problem(
                key,
                "give either 'select' or 'expressions'/'where', not both: "
                "put the condition in the SELECT",
            )
        elif self.select is None and raw is None and self.where is None:
            self.p.problem(
                "select",
                "is required: a 'SELECT ... FROM batch', or 'expressions': {\"column\": \"expr\"}",
            )
        self.p.done()
        self._db = duckdb.connect(":memory:")
        self._db.execute("SET enable_external_access = false")
        self._db.execute("SET autoload_known_extensions = false")
        self._db.execute("SET threads = 1")  # the engine's channels give the parallelism
        # CAST(ts AS DATE), hour(ts), strftime and naive -> TIMESTAMPTZ follow the session's
        # zone, which is the machine's unless set: the job's zone is the one the user meant.
        try:
            self._db.execute("SET GLOBAL TimeZone = ?", [ctx.timezone])
        except duckdb.Error:
            raise ConfigError(
                f"{self.ctx.path(self._key())}: DuckDB does not know the job's time zone "
                f"{ctx.timezone!r}; set job.setting.timezone to another name of it"
            ) from None
        self._db.execute("SET lock_configuration = true")
        if self.select is not None:
            self._check_one_select(self.select)
        self._schemas: dict[pa.Schema, pa.Schema] = {}
        self._lock = threading.Lock()

    def _check_one_select(self, sql: str) -> None:
        where = self.ctx.path("select")
        try:
            statements = self._db.extract_statements(sql)
        except duckdb.Error as e:
            raise ConfigError(f"{where}: {_first_line(e)}") from None
        if len(statements) != 1:
            raise ConfigError(f"{where}: must be one statement, got {len(statements)}")
        if statements[0].type != duckdb.StatementType.SELECT:
            kind = statements[0].type.name
            raise ConfigError(f"{where}: must be a SELECT, got {kind}")

    def _query(self, schema: pa.Schema) -> str:
        if self.select is not None:
            return self.select
        names = schema.names
        replace = [f"({e}) AS {_quote(c)}" for c, e in self.expressions.items() if c in names]
        added = [f"({e}) AS {_quote(c)}" for c, e in self.expressions.items() if c not in names]
        star = f"* REPLACE ({', '.join(replace)})" if replace else "*"
        sql = f"SELECT {', '.join([star, *added])} FROM batch"
        if self.where is not None:
            sql += f" WHERE ({self.where})"
        return sql

    def _run(self, batch: pa.RecordBatch, explain: bool = False) -> Any:
        # a cursor per call, closed here: cursors kept per thread outlived their threads and
        # DuckDB now and then aborted the process at exit ("terminate called ...")
        with self._lock:  # the parent connection's list of cursors is not thread-safe
            cursor = self._db.cursor()
        with cursor as cur:
            cur.register("batch", pa.Table.from_batches([batch], batch.schema))
            sql = self._query(batch.schema)
            if explain:
                return json.loads(cur.sql(f"EXPLAIN (FORMAT JSON) {sql}").fetchall()[0][1])
            return cur.sql(sql).to_arrow_table()

    def _check_row_by_row(self, schema: pa.Schema) -> None:
        """Refuse SQL whose result depends on how rows are cut into batches: each batch runs
        alone (and a batch with a dirty row is halved), so an aggregate, DISTINCT, ORDER BY,
        LIMIT, a window function or a self-join would give per-batch results that look right."""
        use = _whole_input_use(self._run(empty_batch(schema), explain=True))
        if use is not None:
            raise ConfigError(
                f"{self.ctx.path(self._key())}: uses {use}, which would run on each batch of rows "
                "alone, not on the whole input, so its result would depend on how the rows are "
                "batched; do it in the reader's querySql or in the target instead"
            )

    def _config_error(self, schema: pa.Schema, e: BaseException) -> ConfigError:
        """The key at fault: for ``expressions``, the first expression that fails alone."""
        if self.select is not None:
            return ConfigError(f"{self.ctx.path('select')}: {_first_line(e)}")
        empty = empty_batch(schema)
        keep = (self.select, self.expressions, self.where)
        try:
            for col, expr in keep[1].items():
                self.expressions, self.where = {col: expr}, None
                try:
                    self._run(empty)
                except duckdb.Error as one:
                    return ConfigError(f"{self.ctx.path(f'expressions.{col}')}: {_first_line(one)}")
        finally:
            self.select, self.expressions, self.where = keep
        return ConfigError(f"{self.ctx.path('where')}: {_first_line(e)}")

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        out = self._schemas.get(schema)
        if out is None:
            try:
                out = self._run(empty_batch(schema)).schema
            except _ROW_ERRORS as e:  # a constant that fails (CAST('x' AS INT)) fails every row
                raise ConfigError(f"{self.ctx.path(self._key())}: {_first_line(e)}") from None
            except duckdb.Error as e:
                raise self._config_error(schema, e) from None
            self._check_row_by_row(schema)
            self._check_names(schema, out)
            self._schemas[schema] = out
        return out

    def _check_names(self, schema: pa.Schema, out: pa.Schema) -> None:
        """Two result columns of one name (``SELECT *, 1 AS id``) leave a writer that maps
        columns by name to pick one, and an expression whose name differs from a column's only
        in case (DuckDB reads ``NAME`` as ``name``) may mean either: both are errors."""
        for col in self.expressions:
            same = [n for n in schema.names if n.lower() == col.lower() and n != col]
            if same and col not in schema.names:
                raise ConfigError(
                    f"{self.ctx.path(f'expressions.{col}')}: the batch has a column {same[0]!r}, "
                    f"which SQL reads as {col!r} too; write {same[0]!r} to replace it, or "
                    f"another name to add a column"
                )
        seen: set[str] = set()
        for n in out.names:
            if n in seen:
                raise ConfigError(
                    f"{self.ctx.path(self._key())}: the result has two columns named {n!r}; "
                    f"give one another name with AS (or list the columns instead of *)"
                )
            seen.add(n)

    def _key(self) -> str:
        return "select" if self.select is not None else "expressions"

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        schema = self.output_schema(batch.schema)
        assert schema is not None
        _check_intervals_fit(batch)
        try:
            table = self._run(batch)
        except _ROW_ERRORS as e:
            raise DirtyRecordError(f"sql: {_first_line(e)}") from None
        except duckdb.Error as e:
            raise ConfigError(f"{self.ctx.path(self._key())}: {_first_line(e)}") from None
        if table.schema != schema:
            table = table.cast(schema)
        if table.num_rows == 0:
            return empty_batch(schema)
        return table.combine_chunks().to_batches()[0]


#: nanoseconds in one unit of an Arrow duration
_NS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}
#: DuckDB's INTERVAL keeps microseconds, and hands them back to Arrow as nanoseconds in an int64
_MAX_NS = 2**63 - 1


def _check_intervals_fit(batch: pa.RecordBatch) -> None:
    """A duration or interval DuckDB cannot hold exactly makes its row dirty.

    DuckDB reads an Arrow duration or month-day-nano interval as its INTERVAL, which counts
    microseconds: it silently dropped a nanosecond part (1500 ns came back as 1000 ns, -1 ns
    as 0) and wrapped a duration past about 292 years to 0."""
    for i, f in enumerate(batch.schema):
        t = f.type
        if pa.types.is_duration(t):
            per = _NS[t.unit]
            for v in batch.column(i).cast(pa.int64()).to_pylist():
                if v is not None and (abs(v * per) > _MAX_NS or v * per % 1000):
                    raise DirtyRecordError(
                        f"sql: column {f.name!r}: the duration {v} {t.unit} has no exact form in "
                        f"DuckDB, whose INTERVAL counts whole microseconds up to about 292 years"
                    )
        elif pa.types.is_interval(t):
            for m in batch.column(i).to_pylist():
                if m is not None and m.nanoseconds % 1000:
                    raise DirtyRecordError(
                        f"sql: column {f.name!r}: the interval {m} has no exact form in DuckDB, "
                        f"whose INTERVAL counts whole microseconds"
                    )
