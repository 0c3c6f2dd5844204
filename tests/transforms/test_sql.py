"""The ``sql`` transformer: DuckDB over each Arrow batch."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pytest

from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError
from tidesync.plugin import Context
from tidesync.transforms.base import load_transform
from tidesync.transforms.sql import Sql

WHERE = "job.content[0].transformer[0].parameter"
CTX = Context(where=WHERE, timezone="UTC")


def orders() -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "qty": ["2", "x", "5"],
            "price": pa.array(
                [Decimal("1.50"), Decimal("2.00"), Decimal("0.10")], pa.decimal128(10, 2)
            ),
            "name": ["ann", "bo", None],
            "ts": [dt.datetime(2024, 1, 31, 8)] * 3,
        }
    )


def config_error(fn: Any) -> str:
    with pytest.raises(ConfigError) as e:
        fn()
    return str(e.value)


def run_isolated(t: Sql, b: pa.RecordBatch) -> tuple[pa.Table, list[tuple[int, str]]]:
    dirty: list[tuple[int, str]] = []
    parts = isolate(b, t.apply, lambda at, row, e: dirty.append((at, e.reason)))
    return pa.Table.from_batches(parts, t.output_schema(b.schema)), dirty


def test_registry_loads_sql() -> None:
    cls = load_transform("sql", "job.content[0].transformer[0].name")
    assert (cls.name, bool(cls.summary)) == ("sql", True)


def test_select_derives_filters_and_casts() -> None:
    t = Sql(
        {"select": "SELECT id, upper(name) AS name, price * 2 AS double_price, "
                   "CAST(ts AS DATE) AS day FROM batch WHERE id <> 2"},
        CTX,
    )  # fmt: skip
    out = t.apply(orders())
    assert out.to_pylist() == [
        {"id": 1, "name": "ANN", "double_price": Decimal("3.00"), "day": dt.date(2024, 1, 31)},
        {"id": 3, "name": None, "double_price": Decimal("0.20"), "day": dt.date(2024, 1, 31)},
    ]
    assert out.schema == t.output_schema(orders().schema)
    assert out.schema.field("double_price").type == pa.decimal128(18, 2)


def test_expressions_replace_columns_in_place_add_new_ones_and_where_filters() -> None:
    t = Sql(
        {"expressions": {"name": "coalesce(name, '?')", "total": "price * 3"}, "where": "id >= 2"},
        CTX,
    )
    out = t.apply(orders())
    assert out.schema.names == ["id", "qty", "price", "name", "ts", "total"]
    assert out.column("name").to_pylist() == ["bo", "?"]
    assert out.column("total").to_pylist() == [Decimal("6.00"), Decimal("0.30")]
    assert out.column("id").to_pylist() == [2, 3]


def test_a_row_whose_value_fails_is_a_dirty_record_and_the_others_go_on() -> None:
    t = Sql({"expressions": {"qty": "CAST(qty AS INTEGER)"}}, CTX)
    with pytest.raises(DirtyRecordError):
        t.apply(orders())
    out, dirty = run_isolated(t, orders())
    assert out.column("qty").to_pylist() == [2, 5]
    assert out.column("id").to_pylist() == [1, 3]
    assert dirty == [
        (1, "sql: Conversion Error: Could not convert string 'x' to INT32 when casting "
            "from source column qty")
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("zone", "day", "hour"),
    [("Asia/Shanghai", dt.date(2024, 1, 1), 8), ("America/New_York", dt.date(2023, 12, 31), 19)],
)
def test_time_zone_functions_use_the_jobs_zone_not_the_machines(
    zone: str, day: dt.date, hour: int
) -> None:
    instant = dt.datetime(2024, 1, 1, 0, 30, tzinfo=dt.UTC)
    b = pa.record_batch(
        {
            "ts": pa.array([instant], pa.timestamp("us", "UTC")),
            "naive": pa.array([instant.replace(tzinfo=None)], pa.timestamp("us")),
        }
    )
    exprs = {"day": "CAST(ts AS DATE)", "h": "hour(ts)", "ms": "epoch_ms(naive::TIMESTAMPTZ)"}
    out = Sql({"expressions": exprs}, Context(where=WHERE, timezone=zone)).apply(b)
    naive_ms = int(instant.replace(tzinfo=ZoneInfo(zone)).timestamp() * 1000)
    assert out.select(["day", "h", "ms"]).to_pylist() == [{"day": day, "h": hour, "ms": naive_ms}]
    assert out.column("ts").to_pylist()[0] == instant  # the same instant


def test_an_empty_batch_gives_the_output_schema() -> None:
    t = Sql({"select": "SELECT id + 1 AS next FROM batch"}, CTX)
    out = t.apply(orders().slice(0, 0))
    assert (out.num_rows, out.schema) == (0, pa.schema([("next", pa.int64())]))


def test_output_schema_of_an_unknown_schema_is_unknown() -> None:
    assert Sql({"select": "SELECT 1 AS one FROM batch"}, CTX).output_schema(None) is None


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"select": "SELECT nope FROM batch"},
         'select: Binder Error: Referenced column "nope" not found in FROM clause!'),
        ({"expressions": {"ok": "id + 1", "bad": "no_such_fn(id)"}},
         "expressions.bad: Catalog Error: Scalar Function with name no_such_fn does not exist!"),
        ({"expressions": {"ok": "id + 1"}, "where": "nope > 1"},
         'where: Binder Error: Referenced column "nope" not found in FROM clause!'),
        ({"select": "SELECT * FROM read_csv('/etc/passwd')"},
         'select: Permission Error: Cannot access file "/etc/passwd" - file system operations '
         "are disabled by configuration"),
    ],
)  # fmt: skip
def test_a_mistake_in_the_sql_is_a_config_error_naming_the_key(
    params: dict[str, Any], message: str
) -> None:
    t = Sql(params, CTX)
    assert config_error(lambda: t.output_schema(orders().schema)).startswith(f"{WHERE}.{message}")
    assert config_error(lambda: t.apply(orders())).startswith(f"{WHERE}.{message}")


_NOT_FROM_BATCH = (
    "rows that do not come from batch (a SELECT without FROM batch, a UNION ALL branch, or the "
    "other side of an outer join)"
)
_BATCHED = (
    "which would run on each batch of rows alone, not on the whole input, so its result would "
    "depend on how the rows are batched"
)


@pytest.mark.parametrize(
    ("params", "uses"),
    [
        ({"select": "SELECT name, sum(id) AS s FROM batch GROUP BY name"},
         "an aggregate, GROUP BY or DISTINCT"),
        ({"select": "SELECT DISTINCT name FROM batch"}, "an aggregate, GROUP BY or DISTINCT"),
        ({"select": "SELECT id FROM batch UNION SELECT id FROM batch"},
         "an aggregate, GROUP BY or DISTINCT"),
        ({"select": "SELECT count(*) AS n FROM batch"}, "an aggregate"),
        ({"select": "SELECT * FROM batch ORDER BY id"}, "ORDER BY"),
        ({"select": "SELECT * FROM batch ORDER BY id LIMIT 2"}, "ORDER BY ... LIMIT"),
        ({"select": "SELECT * FROM batch LIMIT 10"}, "LIMIT or OFFSET"),
        ({"select": "SELECT * FROM batch OFFSET 1"}, "LIMIT or OFFSET"),
        ({"select": "SELECT id, row_number() OVER () AS rn FROM batch"},
         "a window function (OVER, QUALIFY)"),
        ({"select": "SELECT * FROM batch QUALIFY id = max(id) OVER (PARTITION BY name)"},
         "a window function (OVER, QUALIFY)"),
        ({"expressions": {"prev": "lag(id) OVER (ORDER BY id)"}},
         "a window function (OVER, QUALIFY)"),
        ({"select": "SELECT id, id IN (SELECT id + 1 FROM batch) AS has_next FROM batch"},
         "a join or subquery over batch"),
        ({"select": "SELECT a.id FROM batch a JOIN batch b ON a.id = b.id + 1"},
         "a join or subquery over batch"),
        ({"select": "SELECT * FROM batch USING SAMPLE 2 ROWS"}, "USING SAMPLE"),
        # a row not from batch came once per batch (an empty one too): as many as there were
        ({"select": "SELECT id, name FROM batch UNION ALL SELECT 0, 'total'"}, _NOT_FROM_BATCH),
        ({"select": "SELECT 1 AS id, 'x' AS name"}, _NOT_FROM_BATCH),
        ({"select": "SELECT v.k, b.name FROM (VALUES (1), (9)) v(k) LEFT JOIN batch b ON b.id = v.k"},
         _NOT_FROM_BATCH),
        ({"select": "SELECT b.id, v.k FROM batch b FULL JOIN (VALUES (1), (9)) v(k) ON b.id = v.k"},
         _NOT_FROM_BATCH),
        ({"select": "SELECT * FROM (VALUES (1), (9)) v(k) WHERE k IN (SELECT id FROM batch)"},
         _NOT_FROM_BATCH),
    ],
)  # fmt: skip
def test_sql_whose_result_depends_on_the_batches_is_refused(
    params: dict[str, Any], uses: str
) -> None:
    # each batch runs alone (and a batch holding a dirty row is halved): a count(*) over 3
    # batches gave 3 rows, each looking like the count
    t = Sql(params, CTX)
    key = "select" if "select" in params else "expressions"
    assert config_error(lambda: t.output_schema(orders().schema)) == (
        f"{WHERE}.{key}: uses {uses}, {_BATCHED}; do it in the reader's querySql or in the "
        "target instead"
    )
    assert _BATCHED in config_error(lambda: t.apply(orders()))


@pytest.mark.parametrize(
    "select",
    [
        "SELECT * FROM batch UNION ALL SELECT * FROM batch",
        "SELECT batch.*, x FROM batch, (VALUES (1), (2)) v(x)",  # * alone gives x twice
        "SELECT id, unnest([1, 2]) AS n FROM batch WHERE id > 1",
        "SELECT id, CASE WHEN id IN (1, 3) THEN 'odd' END AS k, (SELECT 42) AS c FROM batch",
        "WITH c AS (SELECT * FROM batch) SELECT id FROM c",
        "SELECT b.id, v.k FROM batch b LEFT JOIN (VALUES (1), (9)) v(k) ON b.id = v.k",
        "SELECT b.id, v.k FROM (VALUES (1), (9)) v(k) RIGHT JOIN batch b ON b.id = v.k",
        "SELECT * FROM batch WHERE id IN (SELECT 1 UNION ALL SELECT 2)",
        "SELECT * FROM batch WHERE id NOT IN (SELECT k FROM (VALUES (1)) v(k))",
    ],
)
def test_row_by_row_sql_is_accepted(select: str) -> None:
    t = Sql({"select": select}, CTX)
    assert t.output_schema(orders().schema) is not None
    whole = t.apply(orders()).num_rows
    halves = t.apply(orders().slice(0, 1)).num_rows + t.apply(orders().slice(1)).num_rows
    assert whole == halves > 0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "select: is required: a 'SELECT ... FROM batch', or 'expressions': {\"column\": \"expr\"}"),
        ({"select": "SELECT 1", "where": "id > 1"},
         "where: give either 'select' or 'expressions'/'where', not both: put the condition in the SELECT"),
        ({"expressions": {}}, "expressions: must hold at least one expression"),
        ({"expressions": {"a": 1}}, "expressions.a: must be a SQL expression as text, got 1"),
        ({"expressions": ["a"]}, "expressions: must be an object, got list"),
        ({"select": "COPY batch TO '/tmp/out.csv'"}, "select: must be a SELECT, got COPY"),
        ({"select": "SELECT 1; SELECT 2"}, "select: must be one statement, got 2"),
        ({"select": "SELEC id FROM batch"}, 'select: Parser Error: syntax error at or near "SELEC"'),
    ],
)  # fmt: skip
def test_bad_parameters(params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: Sql(params, CTX)).startswith(f"{WHERE}.{message}")


def test_a_job_runs_sql_and_counts_the_dirty_row(tmp_path: Path) -> None:
    job = {
        "job": {
            "setting": {"errorLimit": {"record": 1}},
            "content": [{
                "reader": {"name": "streamreader", "parameter": {
                    "column": [{"type": "string", "value": "7"}, {"type": "long", "incr": "1"}],
                    "sliceRecordCount": 3}},
                "transformer": [{"name": "sql", "parameter": {"select":
                    "SELECT c1, CAST(CASE WHEN c1 = 2 THEN 'x' ELSE c0 END AS INTEGER) * c1 AS v "
                    "FROM batch"}}],
                "writer": {"name": "streamwriter", "parameter": {"print": True}},
            }],
        }
    }  # fmt: skip
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    tidesync = str(Path(sys.executable).with_name("tidesync"))
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    r = subprocess.run(
        [tidesync, "run", str(path)], capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["1\t7", "3\t21"]
    assert "3 read, 2 written, 1 dirty" in r.stderr


@pytest.mark.parametrize(
    ("values", "type", "bad"),
    [
        ([2000, 1500, None, -1], pa.duration("ns"), [1500, -1]),  # DuckDB kept 1000 and 0
        ([1, 2**62], pa.duration("us"), [2**62]),  # came back as 0
        (
            [pa.MonthDayNano([1, 2, 3000]), pa.MonthDayNano([1, 2, 3])],
            pa.month_day_nano_interval(),
            [pa.MonthDayNano([1, 2, 3])],
        ),
    ],
)
def test_a_duration_duckdb_cannot_hold_exactly_is_a_dirty_row(
    values: list[Any], type: pa.DataType, bad: list[Any]
) -> None:
    # DuckDB's INTERVAL counts microseconds: a nanosecond part was silently dropped
    b = pa.record_batch({"id": range(len(values)), "d": pa.array(values, type)})
    out, dirty = run_isolated(Sql({"select": "SELECT * FROM batch"}, CTX), b)
    assert [b.column(1)[at].as_py() for at, _ in dirty] == [pa.scalar(v, type).as_py() for v in bad]
    assert all("sql: column 'd': the " in reason for _, reason in dirty)
    assert out.column("id").to_pylist() == [i for i, v in enumerate(values) if v not in bad]
    if pa.types.is_duration(type):  # the others, exactly (as an interval: DuckDB's type)
        ns = {"ns": 1, "us": 1000}[type.unit]
        kept = [
            None if v is None else pa.MonthDayNano([0, 0, v * ns]) for v in values if v not in bad
        ]
        assert out.column("d").to_pylist() == kept


@pytest.mark.parametrize(
    ("params", "message"),
    [
        # a writer that maps columns by name got one 'id' of two (the first was lost)
        ({"select": "SELECT *, 1 AS id FROM batch"},
         "select: the result has two columns named 'id'; give one another name with AS"),
        ({"select": "SELECT id, id FROM batch"}, "select: the result has two columns named 'id'"),
        # DuckDB reads NAME as name: replace name, or add a column NAME beside it?
        ({"expressions": {"NAME": "upper(name)"}},
         "expressions.NAME: the batch has a column 'name', which SQL reads as 'NAME' too"),
    ],
)  # fmt: skip
def test_an_ambiguous_result_column_name_is_a_config_error(
    params: dict[str, Any], message: str
) -> None:
    t = Sql(params, CTX)
    assert config_error(lambda: t.output_schema(orders().schema)).startswith(f"{WHERE}.{message}")


def test_a_job_counts_the_rows_a_where_takes_out_per_split(tmp_path: Path) -> None:
    # the report had read 30, written 20 and nothing saying where ten rows went
    job = {
        "job": {
            "setting": {"speed": {"channel": 3}},
            "content": [{
                "reader": {"name": "streamreader", "parameter": {
                    "column": [{"type": "long", "incr": "1"}], "sliceRecordCount": 10}},
                "transformer": [{"name": "sql", "parameter": {
                    "select": "SELECT * FROM batch WHERE c0 % 3 <> 0"}}],
                "writer": {"name": "streamwriter", "parameter": {"print": True}},
            }],
        }
    }  # fmt: skip
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    tidesync = str(Path(sys.executable).with_name("tidesync"))
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    r = subprocess.run(
        [tidesync, "run", str(path), "--report", str(tmp_path / "r.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert sorted(map(int, r.stdout.split())) == [i for i in range(1, 31) if i % 3]
    assert "succeeded: 30 read, 20 written, 0 dirty, 10 filtered," in r.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    splits = [
        (s["records_read"], s["records_written"], s["records_filtered"]) for s in rep["splits"]
    ]
    assert sorted(splits) == [(10, 6, 4), (10, 7, 3), (10, 7, 3)]
    assert rep["records_filtered"] == 10
