"""tidesync's own transformers: rename, select, cast, regex_replace, timezone."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from tidesync.connectors.base import Context
from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError
from tidesync.transforms.base import load_transform
from tidesync.transforms.columns import Cast, RegexReplace, Rename, Select, TimeZone, java_format

WHERE = "job.content[0].transformer[0].parameter"
CTX = Context(where=WHERE, timezone="Asia/Shanghai")
UTC = dt.UTC


def people() -> pa.RecordBatch:
    return pa.record_batch(
        {"id": pa.array([1, 2], pa.int64()), "name": ["Ann", "Bo"], "age": ["31", "42"]}
    )


def config_error(fn: Any) -> str:
    with pytest.raises(ConfigError) as e:
        fn()
    return str(e.value)


def run_isolated(t: Any, b: pa.RecordBatch) -> tuple[pa.Table, list[tuple[int, str]]]:
    dirty: list[tuple[int, str]] = []
    parts = isolate(b, t.apply, lambda at, row, e: dirty.append((at, e.reason)))
    schema = t.output_schema(b.schema)
    return pa.Table.from_batches(parts, schema), dirty


@pytest.mark.parametrize("name", ["rename", "select", "cast", "regex_replace", "timezone"])
def test_registry_loads_each_transformer_with_name_and_summary(name: str) -> None:
    cls = load_transform(name, "job.content[0].transformer[0].name")
    assert (cls.name, bool(cls.summary)) == (name, True)


# -- rename -------------------------------------------------------------------------------------


def test_rename_renames_in_place_and_keeps_the_data() -> None:
    t = Rename({"columns": {"name": "full_name", "id": "key"}}, CTX)
    out = t.apply(people())
    assert out.schema.names == ["key", "full_name", "age"]
    assert out.to_pylist()[0] == {"key": 1, "full_name": "Ann", "age": "31"}
    assert t.output_schema(people().schema) == out.schema


def test_rename_of_a_missing_column_names_the_key_and_the_columns() -> None:
    t = Rename({"columns": {"nmae": "x"}}, CTX)
    for fn in (lambda: t.apply(people()), lambda: t.output_schema(people().schema)):
        assert config_error(fn) == (
            f"{WHERE}.columns.nmae: no column 'nmae' in the batch; did you mean 'name'?; "
            f"its columns are 'id', 'name', 'age'"
        )


def test_rename_onto_an_existing_column_is_a_config_error() -> None:
    message = config_error(lambda: Rename({"columns": {"name": "age"}}, CTX).apply(people()))
    assert message.startswith(f"{WHERE}.columns.name: the batch already has a column 'age'")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, 'columns: is required: {"old name": "new name", ...}'),
        ({"columns": ["a"]}, "columns: must be an object, got list"),
        ({"columns": {}}, "columns: must rename at least one column"),
        ({"columns": {"a": ""}}, "columns.a: the new name must be a non-empty string, got ''"),
        ({"columns": {"a": "x", "b": "x"}}, "columns.b: two columns would be named 'x'"),
    ],
)
def test_rename_bad_parameters(params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: Rename(params, CTX)) == f"{WHERE}.{message}"


# -- select -------------------------------------------------------------------------------------


def test_select_keeps_the_columns_in_the_order_given() -> None:
    t = Select({"columns": ["age", "id"]}, CTX)
    out = t.apply(people())
    assert out.to_pydict() == {"age": ["31", "42"], "id": [1, 2]}
    assert t.output_schema(people().schema) == out.schema


def test_select_of_a_missing_column_names_its_position_and_the_columns() -> None:
    t = Select({"columns": ["id", "ages"]}, CTX)
    assert config_error(lambda: t.apply(people())) == (
        f"{WHERE}.columns[1]: no column 'ages' in the batch; did you mean 'age'?; "
        f"its columns are 'id', 'name', 'age'"
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, "columns: is required"),
        ({"columns": []}, "columns: must name at least one column"),
        ({"columns": ["a", "a"]}, "columns[1]: column 'a' is named twice"),
        ({"columns": ["a", 3]}, "columns[1]: must be a column name, got 3"),
    ],
)
def test_select_bad_parameters(params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: Select(params, CTX)) == f"{WHERE}.{message}"


# -- cast ---------------------------------------------------------------------------------------

NOON = dt.datetime(2024, 1, 31, 12, 0, 5)
LATE_UTC = dt.datetime(2023, 12, 31, 23, tzinfo=UTC)
NOON_MS = int(dt.datetime(2024, 1, 31, 4, 0, 5, tzinfo=UTC).timestamp() * 1000)  # in Shanghai


@pytest.mark.parametrize(
    ("values", "source", "spec", "expected", "type"),
    [
        ([" 12 ", "-3", None], pa.string(), "long", [12, -3, None], pa.int64()),
        (["7"], pa.string(), "BIGINT", [7], pa.int64()),
        ([2.0, None], pa.float64(), "int", [2, None], pa.int64()),
        ([True, False], pa.bool_(), "long", [1, 0], pa.int64()),
        (["1.5", "1e3"], pa.string(), "double", [1.5, 1000.0], pa.float64()),
        (["true", "FALSE", "1", "0"], pa.string(), "boolean", [True, False, True, False], pa.bool_()),
        ([1.0, 0.0, -0.0, None], pa.float64(), "boolean", [True, False, False, None], pa.bool_()),
        ([2, 0, -1], pa.int64(), "boolean", [True, False, True], pa.bool_()),
        (["12.3", "-0.05"], pa.string(), "decimal(10,2)", [Decimal("12.30"), Decimal("-0.05")], pa.decimal128(10, 2)),
        (["1"], pa.string(), "decimal(50, 0)", [Decimal("1")], pa.decimal256(50, 0)),
        ([0.1, 1.5, None], pa.float64(), "decimal(10,2)", [Decimal("0.10"), Decimal("1.50"), None], pa.decimal128(10, 2)),
        ([0.1], pa.float32(), "decimal(10,2)", [Decimal("0.10")], pa.decimal128(10, 2)),
        ([0.1, 1.1, 3.4e38, None], pa.float32(), "double", [0.1, 1.1, 3.4e38, None], pa.float64()),
        (["inf", "-Infinity", "1e308", "0e-400", "-0.0"], pa.string(), "double", [float("inf"), float("-inf"), 1e308, 0.0, -0.0], pa.float64()),
        (["2024-01-31"], pa.string(), "date", [dt.date(2024, 1, 31)], pa.date32()),
        (["31/01/2024"], pa.string(), {"type": "date", "format": "dd/MM/yyyy"}, [dt.date(2024, 1, 31)], pa.date32()),
        (["2024-01-31 12:00:05", "2024-01-31T12:00:05.25"], pa.string(), "timestamp",
         [NOON, NOON.replace(microsecond=250000)], pa.timestamp("us")),
        (["20240131120005"], pa.string(), {"type": "datetime", "format": "yyyyMMddHHmmss"}, [NOON], pa.timestamp("us")),
        ([NOON.replace(microsecond=999)], pa.timestamp("us"), {"type": "string", "format": "yyyy/MM/dd'T'HH:mm:ss"},
         ["2024/01/31T12:00:05"], pa.string()),
        ([dt.date(2024, 1, 31)], pa.date32(), {"type": "string", "format": "%d.%m.%Y"}, ["31.01.2024"], pa.string()),
        ([NOON], pa.timestamp("us"), {"type": "string", "format": "%F %T %j %%s %%f"},
         ["2024-01-31 12:00:05 031 %s %f"], pa.string()),
        # Java prints a one-letter field without a leading zero (it used to print "2024-01-05 03:04:05")
        ([dt.datetime(2024, 1, 5, 3, 4, 5), dt.datetime(2024, 12, 15, 0, 40, 50), None], pa.timestamp("us"),
         {"type": "string", "format": "yyyy-M-d H:m:s h"}, ["2024-1-5 3:4:5 3", "2024-12-15 0:40:50 12", None], pa.string()),
        ([dt.date(2024, 1, 5)], pa.date32(), {"type": "string", "format": "d MMM yyyy, 'M' MM"}, ["5 Jan 2024, M 01"], pa.string()),
        ([dt.date(1947, 1, 5)], pa.date32(), {"type": "string", "format": "dd.MM.yy"}, ["05.01.47"], pa.string()),
        # a naive time with an offset: wall-clock time in the job's zone (it was a dirty row)
        ([dt.datetime(2024, 1, 5, 3, 4, 5)], pa.timestamp("us"), {"type": "string", "format": "yyyy-MM-dd HH:mm:ss Z"},
         ["2024-01-05 03:04:05 +0800"], pa.string()),
        # XXX prints +08:00 as Java does (it was refused), and reads it
        ([dt.datetime(2024, 1, 5, 3, 4, 5), None], pa.timestamp("us"), {"type": "string", "format": "yyyy-MM-dd'T'HH:mm:ssXXX"},
         ["2024-01-05T03:04:05+08:00", None], pa.string()),
        ([LATE_UTC], pa.timestamp("us", "UTC"), {"type": "string", "format": "yyyy-MM-dd HH:mm XXX"},
         ["2024-01-01 07:00 +08:00"], pa.string()),
        (["2024-01-05T03:04:05+08:00", "2024-01-05T03:04:05-0130"], pa.string(), {"type": "timestamp", "format": "yyyy-MM-dd'T'HH:mm:ssXXX"},
         [dt.datetime(2024, 1, 4, 19, 4, 5, tzinfo=UTC), dt.datetime(2024, 1, 5, 4, 34, 5, tzinfo=UTC)], pa.timestamp("us", "UTC")),
        # a pattern without a year reads 1970 as Java does (strptime's 1900 wrote another date)
        (["12:30", "23:59"], pa.string(), {"type": "timestamp", "format": "HH:mm"},
         [dt.datetime(1970, 1, 1, 12, 30), dt.datetime(1970, 1, 1, 23, 59)], pa.timestamp("us")),
        (["01-15 08:00 +0800"], pa.string(), {"type": "timestamp", "format": "MM-dd HH:mm Z"},
         [dt.datetime(1970, 1, 15, 0, 0, tzinfo=UTC)], pa.timestamp("us", "UTC")),
        (["12-31"], pa.string(), {"type": "date", "format": "MM-dd"}, [dt.date(1970, 12, 31)], pa.date32()),
        (["12:30"], pa.string(), {"type": "timestamp", "format": "%H:%M"}, [dt.datetime(1900, 1, 1, 12, 30)], pa.timestamp("us")),
        (["2024-1-5 3:4:5"], pa.string(), {"type": "timestamp", "format": "yyyy-M-d H:m:s"},
         [dt.datetime(2024, 1, 5, 3, 4, 5)], pa.timestamp("us")),
        ([NOON], pa.timestamp("us"), "long", [NOON_MS], pa.int64()),  # epoch ms, naive in the job's zone
        ([NOON_MS], pa.int64(), "timestamp", [NOON], pa.timestamp("us")),
        ([NOON], pa.timestamp("us"), "date", [dt.date(2024, 1, 31)], pa.date32()),
        ([NOON], pa.timestamp("ns", "UTC"), "timestamp", [NOON.replace(tzinfo=UTC)], pa.timestamp("ns", "UTC")),
        # an instant (a timestamptz arrives as UTC) reads in the job's zone: 23:00Z is 07:00 next day
        ([LATE_UTC], pa.timestamp("us", "UTC"), "date", [dt.date(2024, 1, 1)], pa.date32()),
        ([LATE_UTC], pa.timestamp("us", "UTC"), {"type": "string", "format": "yyyy-MM-dd HH:mm"},
         ["2024-01-01 07:00"], pa.string()),
        ([LATE_UTC], pa.timestamp("us", "UTC"), {"type": "string", "format": "dd HH:mm Z"},
         ["01 07:00 +0800"], pa.string()),
        (["2024-01-01 07:00 +0800"], pa.string(), {"type": "date", "format": "yyyy-MM-dd HH:mm Z"},
         [dt.date(2024, 1, 1)], pa.date32()),
        ([" 7 ", None, "7"], pa.dictionary(pa.int32(), pa.string()), "long", [7, None, 7], pa.int64()),
        (["15/01/2024"], pa.dictionary(pa.int32(), pa.string()), {"type": "date", "format": "dd/MM/yyyy"},
         [dt.date(2024, 1, 15)], pa.date32()),
        # a column all null (a JSON reader's null type) takes any format
        ([None], pa.null(), {"type": "date", "format": "yyyyMMdd"}, [None], pa.date32()),
        ([None], pa.null(), {"type": "string", "format": "yyyy"}, [None], pa.string()),
        # Arrow wrote 0E-8 and 1.0E-7 (Java's toString) for a numeric(20,8)
        ([Decimal("0"), Decimal("1E-7"), Decimal("-12.5"), None], pa.decimal128(20, 8), "string",
         ["0.00000000", "0.00000010", "-12.50000000", None], pa.string()),
        ([Decimal("0")], pa.decimal256(40, 30), "bytes", [b"0." + b"0" * 30], pa.binary()),
        # Arrow wrote 1.5e+10, 1e-7, nan and inf: plain digits, as dx_* read them (DataX's text)
        ([1.5e10, 1e-7, 0.1, float("nan"), float("-inf"), None], pa.float64(), "string",
         ["15000000000", "0.0000001", "0.1", "NaN", "-Infinity", None], pa.string()),
        ([1e-7], pa.float32(), "bytes", [b"0.0000001"], pa.binary()),
        ([42, None], pa.int64(), "string", ["42", None], pa.string()),
        (["héllo"], pa.string(), "bytes", ["héllo".encode()], pa.binary()),
        ([b"ok"], pa.binary(), "string", ["ok"], pa.string()),
    ],
)  # fmt: skip
def test_cast_converts_values(
    values: list[Any], source: pa.DataType, spec: Any, expected: list[Any], type: pa.DataType
) -> None:
    b = pa.record_batch({"id": list(range(len(values))), "x": pa.array(values, source)})
    t = Cast({"columns": {"x": spec}}, CTX)
    out = t.apply(b)
    assert (out.column(1).to_pylist(), out.schema.field(1).type) == (expected, type)
    assert out.schema == t.output_schema(b.schema)
    assert out.column(0).to_pylist() == list(range(len(values)))


@pytest.mark.parametrize(
    ("values", "source", "spec", "reason"),
    [
        (["1", "abc", "3"], pa.string(), "long", "column 'x': cannot cast 'abc' to long"),
        # Arrow refused int64 -> decimal(5,2) for the type: 1 and 3 were dirty too
        ([1, 1234, 3], pa.int64(), "decimal(5,2)", "column 'x': cannot cast 1234 to decimal(5,2): out of range"),
        ([1, 2**64 - 1, 3], pa.uint64(), "decimal(20,1)", f"column 'x': cannot cast {2**64 - 1} to decimal(20,1): out of range"),
        # Arrow read 0x10 as the long 16, where DataX refuses it (the file reader already did)
        (["1", "0x10", "3"], pa.string(), "long", "column 'x': cannot cast '0x10' to long"),
        (["1", " 0X1f ", "3"], pa.large_string(), "bigint", "column 'x': cannot cast ' 0X1f ' to bigint"),
        # text in a dictionary (a pandas category in parquet): Arrow's cast of it gave 16 and inf
        (["1", "0x10", "3"], pa.dictionary(pa.int32(), pa.string()), "long", "column 'x': cannot cast '0x10' to long"),
        (["1", "1e400", "3"], pa.dictionary(pa.int8(), pa.large_string()), "double",
         "column 'x': cannot cast '1e400' to double: out of range"),
        (["15/01/2024", "2024-01-15", "16/01/2024"], pa.dictionary(pa.int32(), pa.string()),
         {"type": "date", "format": "dd/MM/yyyy"}, "column 'x': cannot cast '2024-01-15' to date"),
        (["1", "", "3"], pa.string(), "long", "column 'x': cannot cast '' to long"),
        (["1", "1.5", "3"], pa.string(), "long", "column 'x': cannot cast '1.5' to long"),
        ([1.0, 1.5, 3.0], pa.float64(), "long", "column 'x': cannot cast 1.5 to long: it would lose digits"),
        (["1", "x", "2"], pa.string(), "double", "column 'x': cannot cast 'x' to double"),
        (["1", "yes", "0"], pa.string(), "bool", "column 'x': cannot cast 'yes' to bool"),
        # Arrow made every float but 0 true
        ([1.0, 0.5, -0.0], pa.float64(), "boolean", "column 'x': cannot cast 0.5 to boolean"),
        ([1.0, float("nan"), 0.0], pa.float32(), "boolean", "column 'x': cannot cast nan to boolean"),
        ([1.0, float("inf"), None], pa.float64(), "boolean", "column 'x': cannot cast inf to boolean"),
        (["1.2", "1.234", "2"], pa.string(), "decimal(10,2)", "column 'x': cannot cast '1.234' to decimal(10,2): it would lose digits"),
        ([1.2, 1.239, 2.0], pa.float64(), "decimal(10,2)", "column 'x': cannot cast 1.239 to decimal(10,2): it would lose digits"),
        ([1.0, 1e-10, 2.0], pa.float64(), "decimal(10,2)", "column 'x': cannot cast 1e-10 to decimal(10,2): it would lose digits"),
        # Arrow rounded a decimal to the nearest double silently
        ([Decimal("0.10"), Decimal("12345678901234567.89"), Decimal("-123.45")], pa.decimal128(20, 2), "double",
         "column 'x': cannot cast 12345678901234567.89 to double: it would lose digits"),
        ([Decimal(1), Decimal(2**53 + 1), Decimal(2**53)], pa.decimal256(40, 0), "double",
         "column 'x': cannot cast 9007199254740993 to double: it would lose digits"),
        (["1", "1e400", "2"], pa.string(), "double", "column 'x': cannot cast '1e400' to double: out of range"),
        (["1", "-0.001e-400", "2"], pa.string(), "double", "column 'x': cannot cast '-0.001e-400' to double: out of range"),
        (["2024-01-01", "2024-13-01", "2024-12-01"], pa.string(), "date", "column 'x': cannot cast '2024-13-01' to date"),
        (["2024-01-01 00:00:00", "2024-01-01", "2024-01-02 00:00:00"], pa.string(),
         {"type": "timestamp", "format": "yyyy-MM-dd HH:mm:ss"}, "column 'x': cannot cast '2024-01-01' to timestamp"),
        # Arrow's strptime rolled a day past its month's end into the next month
        (["29/02/2024", "30/02/2024", "01/03/2024"], pa.string(), {"type": "date", "format": "dd/MM/yyyy"},
         "column 'x': cannot cast '30/02/2024' to date"),
        (["2024-04-30", "2024-04-31", "2024-05-01"], pa.string(), {"type": "timestamp", "format": "yyyy-MM-dd"},
         "column 'x': cannot cast '2024-04-31' to timestamp"),
        # a short value of a pattern of abutting numbers: strptime read 2024-11-05, but it may
        # as well be 2024-01-15
        (["20240115", "2024115", "20241105"], pa.string(), {"type": "date", "format": "yyyyMMdd"},
         "column 'x': cannot cast '2024115' to date"),
        (["20240131120000", "2024013112000", "20240131120001"], pa.string(),
         {"type": "timestamp", "format": "yyyyMMddHHmmss"}, "column 'x': cannot cast '2024013112000' to timestamp"),
        (["T20240131 1:02", "T2024131 1:02", "T20240131 12:2"], pa.string(),
         {"type": "timestamp", "format": "'T'yyyyMMdd H:mm"}, "column 'x': cannot cast 'T2024131 1:02' to timestamp"),
        (["2024-01-01 23:59:59", "2024-01-01 23:59:60", "2024-01-02 00:00:00"], pa.string(),
         {"type": "timestamp", "format": "yyyy-MM-dd HH:mm:ss"}, "column 'x': cannot cast '2024-01-01 23:59:60' to timestamp"),
        ([b"a", b"\xff", b"c"], pa.binary(), "string", "column 'x': cannot cast b'\\xff' to string"),
    ],
)  # fmt: skip
def test_cast_keeps_the_good_rows_and_reports_the_bad_one(
    values: list[Any], source: pa.DataType, spec: Any, reason: str
) -> None:
    b = pa.record_batch({"id": [0, 1, 2], "x": pa.array(values, source)})
    out, dirty = run_isolated(Cast({"columns": {"x": spec}}, CTX), b)
    assert out.column("id").to_pylist() == [0, 2]
    assert dirty == [(1, reason)]


def test_cast_of_a_batch_holding_a_bad_row_raises_dirty_record_error_naming_the_column() -> None:
    b = pa.record_batch({"x": ["1", "abc", "3"]})
    with pytest.raises(
        DirtyRecordError, match=r"^column 'x': some of 3 values cannot be cast to long"
    ):
        Cast({"columns": {"x": "long"}}, CTX).apply(b)


def test_cast_of_an_empty_batch_gives_the_new_types() -> None:
    b = pa.record_batch({"x": pa.array([], pa.string())})
    out = Cast({"columns": {"x": "decimal(5,1)"}}, CTX).apply(b)
    assert (out.num_rows, out.schema.field(0).type) == (0, pa.decimal128(5, 1))


def test_cast_between_types_that_never_convert_is_a_config_error() -> None:
    b = pa.record_batch({"t": pa.array([NOON], pa.timestamp("us"))})
    t = Cast({"columns": {"t": "double"}}, CTX)
    for fn in (lambda: t.apply(b), lambda: t.output_schema(b.schema)):
        assert config_error(fn) == (
            f"{WHERE}.columns.t: cannot cast column 't' from timestamp[us] to double; "
            f"cast it to string first, or pick another type"
        )


@pytest.mark.parametrize(
    ("values", "source", "spec", "message"),
    [
        # read as milliseconds since the epoch: 1970-01-01, and the year 2611
        ([20240115], pa.int64(), {"type": "date", "format": "yyyyMMdd"},
         "column 'x' is int64, and a format reads text as a date; cast the column to string in a "
         "cast before this one"),
        ([20240115120000], pa.int64(), {"type": "timestamp", "format": "yyyyMMddHHmmss"},
         "column 'x' is int64, and a format reads text as a timestamp; cast the column to string "
         "in a cast before this one"),
        # printed as 20240115, the format left out
        ([20240115], pa.int32(), {"type": "string", "format": "yyyy-MM-dd"},
         "column 'x' is int32, and a format writes a date or timestamp as text; leave 'format' "
         "out, or cast the column to a date or timestamp in a cast before this one"),
        (["2024-01-15"], pa.string(), {"type": "string", "format": "yyyy/MM/dd"},
         "column 'x' is string, and a format writes a date or timestamp as text; leave 'format' "
         "out, or cast the column to a date or timestamp in a cast before this one"),
    ],
)  # fmt: skip
def test_cast_with_a_format_of_a_column_it_does_not_apply_to_is_a_config_error(
    values: list[Any], source: pa.DataType, spec: Any, message: str
) -> None:
    b = pa.record_batch({"x": pa.array(values, source)})
    t = Cast({"columns": {"x": spec}}, CTX)
    for fn in (lambda: t.apply(b), lambda: t.output_schema(b.schema)):
        assert config_error(fn) == f"{WHERE}.columns.x.format: {message}"


@pytest.mark.parametrize(
    ("value", "source", "spec", "message"),
    [
        # a PostgreSQL interval of 5 seconds was the text '5000000'
        (dt.timedelta(seconds=5), pa.duration("us"), "string",
         "column 'x' is duration[us], which cast would write as string as a count of us "
         "('5000000' for 5 seconds in us); convert it in an sql transformer (CAST(x AS VARCHAR) "
         "gives 00:00:05, epoch(x) its seconds)"),
        (dt.timedelta(seconds=5), pa.duration("ms"), "long",
         "column 'x' is duration[ms], which cast would write as long as a count of ms "
         "('5000000' for 5 seconds in us); convert it in an sql transformer (CAST(x AS VARCHAR) "
         "gives 00:00:05, epoch(x) its seconds)"),
        # a TIME 12:30:05 was the long 45005000000
        (dt.time(12, 30, 5), pa.time64("us"), "bigint",
         "column 'x' is time64[us], which cast would write as bigint as a count of us since "
         "midnight (45005000000 for 12:30:05 in us); cast it to string, or compute the number "
         "in an sql transformer (epoch(x) gives its seconds)"),
    ],
)  # fmt: skip
def test_cast_of_an_interval_or_time_to_a_count_is_a_config_error(
    value: Any, source: pa.DataType, spec: str, message: str
) -> None:
    b = pa.record_batch({"x": pa.array([value], source)})
    t = Cast({"columns": {"x": spec}}, CTX)
    for fn in (lambda: t.apply(b), lambda: t.output_schema(b.schema)):
        assert config_error(fn) == f"{WHERE}.columns.x: {message}"


def test_cast_of_a_missing_column_is_a_config_error() -> None:
    message = config_error(lambda: Cast({"columns": {"agee": "long"}}, CTX).apply(people()))
    assert message.startswith(
        f"{WHERE}.columns.agee: no column 'agee' in the batch; did you mean 'age'?"
    )


@pytest.mark.parametrize(
    ("spec", "problems"),
    [
        ("lng", ["columns.x: unknown type 'lng'; did you mean 'long'?; types: string, long, double, "
                 "boolean, decimal(p,s), date, timestamp, bytes"]),
        ("decimal", ["columns.x: 'decimal' needs a precision and scale, such as decimal(18,2)"]),
        ("decimal(80,2)", ["columns.x: 'decimal(80,2)': precision must be 1..76 and scale at most the precision"]),
        ("decimal(4,5)", ["columns.x: 'decimal(4,5)': precision must be 1..76 and scale at most the precision"]),
        (3, ['columns.x: must be a type name such as "long" or {"type": ..., "format": ...}, got 3']),
        ({"format": "yyyy"}, ['columns.x.type: must be a type name such as "long" or {"type": ..., "format": ...}, got None']),
        ({"type": "date", "fmt": "yyyy"}, ["columns.x.fmt: unknown key; did you mean 'format'?; a cast takes type and format"]),
        ({"type": "long", "format": "yyyy"}, ["columns.x.format: a format is a date pattern such as 'yyyy-MM-dd HH:mm:ss', "
                                              "for casts to date, timestamp or string"]),
        ({"type": "timestamp", "format": "yyyy-MM-dd HH:mm:ss.SSS"},
         ["columns.x.format: pattern letters 'SSS' are not supported; use y M d H h m s a E Z XX XXX "
          "(fractions of a second: leave 'format' out and write ISO-8601)"]),
        # strptime read '47' as 2047 where Java reads 1947 (until 2027): no century is a guess
        ({"type": "date", "format": "dd/MM/yy"},
         ["columns.x.format: 'dd/MM/yy' reads a two-digit year, which names no century (Java reads "
          "'47' as 1947 or 2047 depending on the current year); write yyyy"]),
        ({"type": "timestamp", "format": "%d.%m.%y %H"},
         ["columns.x.format: '%d.%m.%y %H' reads a two-digit year, which names no century (Java reads "
          "'47' as 1947 or 2047 depending on the current year); write yyyy"]),
        # "12:30" was read as 00:30 (as Java does), "13:30" was dirty: HH was meant
        ({"type": "timestamp", "format": "yyyy-MM-dd hh:mm"},
         ["columns.x.format: 'yyyy-MM-dd hh:mm' reads the hour of a 12-hour clock (hh, 1-12) with no "
          "AM/PM marker (a), so '12:30' would be 00:30; write HH for 0-23, or add a"]),
        ({"type": "date", "format": "%Y%m%d %I"},
         ["columns.x.format: '%Y%m%d %I' reads the hour of a 12-hour clock (hh, 1-12) with no "
          "AM/PM marker (a), so '12:30' would be 00:30; write HH for 0-23, or add a"]),
        # Arrow printed '%f' as it is on every row ('12:00:05.%f')
        ({"type": "string", "format": "%Y-%m-%d %H:%M:%S.%f"},
         ["columns.x.format: '%f' is not a directive Arrow prints; it would be written as it is"]),
        ({"type": "string", "format": "%%s %s"},
         ["columns.x.format: '%s' is not a directive Arrow prints; it would be written as it is"]),
        # '1705320005' was read as 12:00:05 wall time in the job's zone: eight hours off
        ({"type": "timestamp", "format": "%s"},
         ["columns.x.format: '%s' reads seconds since the epoch, an instant, as a wall time; cast "
          "the number to long and make it a timestamp in an sql transformer (to_timestamp(x))"]),
    ],
)  # fmt: skip
def test_cast_bad_type_specs(spec: Any, problems: list[str]) -> None:
    with pytest.raises(ConfigError) as e:
        Cast({"columns": {"x": spec}}, CTX)
    assert e.value.problems == [f"{WHERE}.{p}" for p in problems]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({}, 'columns: is required: {"column": "type", ...}'),
        ({"columns": {}}, "columns: must name at least one column"),
        ({"columns": ["x"]}, "columns: must be an object, got list"),
    ],
)
def test_cast_bad_parameters(params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: Cast(params, CTX)) == f"{WHERE}.{message}"


@pytest.mark.parametrize(
    ("java", "strftime"),
    [
        ("yyyy-MM-dd HH:mm:ss", "%Y-%m-%d %H:%M:%S"),
        ("yyyyMMdd", "%Y%m%d"),
        ("dd/MM/yy hh:mm a", "%d/%m/%y %I:%M %p"),
        ("yyyy-MM-dd'T'HH:mm", "%Y-%m-%dT%H:%M"),
        ("EEE, d MMM yyyy", "%a, %d %b %Y"),
        ("yyyy.MM.dd 'at' HH", "%Y.%m.%d at %H"),
        ("HH 'o''clock'", "%H o'clock"),
        ("%Y/%m/%d", "%Y/%m/%d"),  # strftime already: kept
    ],
)
def test_java_date_patterns_become_strftime(java: str, strftime: str) -> None:
    assert java_format(java) == strftime


def test_java_date_pattern_with_an_unterminated_quote_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"^an unterminated quote at position 4; write a quote as ''$"
    ):
        java_format("yyyy'T")


# -- regex_replace ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "values", "expected"),
    [
        ({"pattern": r"\s+", "replacement": " "}, ["a  b\tc", None], ["a b c", None]),
        ({"pattern": r"(\w+)@(\w+)", "replacement": r"\2 at \1"}, ["ann@host"], ["host at ann"]),
        ({"pattern": "[0-9]"}, ["a1b22"], ["ab"]),  # no replacement: deleted
        ({"pattern": "é+", "replacement": "e"}, ["caféé au lait"], ["cafe au lait"]),
        ({"pattern": "o", "replacement": "0", "maxReplacements": 1}, ["foo"], ["f0o"]),
    ],
)
def test_regex_replace_replaces_matches(
    params: dict[str, Any], values: list[Any], expected: list[Any]
) -> None:
    b = pa.record_batch({"s": pa.array(values, pa.string())})
    t = RegexReplace({"column": "s", **params}, CTX)
    out = t.apply(b)
    assert out.column(0).to_pylist() == expected
    assert out.schema == t.output_schema(b.schema)


# Each expected value is what Java's String.replaceAll gives (run on OpenJDK): DataX users write
# replacements for it, and "$1" once came out as the text "$1".
@pytest.mark.parametrize(
    ("pattern", "replacement", "value", "expected"),
    [
        (r"(\d{3})\d{4}(\d{4})", "$1****$2", "13812345678", "138****5678"),
        (r"(?P<user>\w+)@(?P<host>\w+)", "${host} at ${user}", "ann@host", "host at ann"),
        (r"(?<user>\w+)@(?<host>\w+)", "${host} at ${user}", "ann@host", "host at ann"),
        ("(a)", "$12", "xay", "xa2y"),  # a further digit joins only if that group exists
        ("(a)(b)(c)(d)(e)(f)(g)(h)(i)", "$10", "abcdefghi", "a0"),
        ("a", "$0$0", "xay", "xaay"),
        ("(a)", r"\$1", "xay", "x$1y"),
        ("(a)", r"\\$1", "xay", "x\\ay"),
        ("(a)", r"US\$", "xay", "xUS$y"),
        ("(a)", r"\n", "xay", "xny"),
        ("(a)", r"\1\\", "xay", "xa\\y"),  # tidesync's own \1 still names the group
        (r"[[:alpha:](](\d)\Q(\E", "<$1>", "a1(", "<1>"),  # no group in a class or \Q..\E
    ],
)  # fmt: skip
def test_regex_replace_reads_the_replacement_as_java_does(
    pattern: str, replacement: str, value: str, expected: str
) -> None:
    b = pa.record_batch({"s": pa.array([value, None], pa.string())})
    t = RegexReplace({"column": "s", "pattern": pattern, "replacement": replacement}, CTX)
    assert t.apply(b).column(0).to_pylist() == [expected, None]


@pytest.mark.parametrize(
    ("pattern", "replacement", "message"),
    [
        ("(a)", "$", "'$' at position 0 names no group; write $1 or ${name} for a group and \\$ for a dollar"),
        ("(a)", "US$ 5", "'$' at position 2 names no group; write $1 or ${name} for a group and \\$ for a dollar"),
        ("(a)", "$2", "the pattern has no group 2 (it has 1)"),
        ("(a)", "${x}", "the pattern has no group named 'x'"),
        ("(a)(b)(c)(d)(e)(f)(g)(h)(i)(j)", "$10", "group 10: a replacement can name groups 0 to 9 only"),
        ("(a)", "x\\", "a '\\' at the end escapes nothing; write '\\\\' for a backslash"),
    ],
)  # fmt: skip
def test_regex_replace_refuses_what_java_refuses(
    pattern: str, replacement: str, message: str
) -> None:
    params = {"column": "s", "pattern": pattern, "replacement": replacement}
    assert config_error(lambda: RegexReplace(params, CTX)) == (
        f"{WHERE}.replacement: {message} (Java's syntax: $1 or ${{name}} is a group)"
    )


@pytest.mark.parametrize("pattern", ["b*", r"\s*$", "a|", "(x)?"])
def test_regex_replace_refuses_a_pattern_matching_empty_text(pattern: str) -> None:
    # Java and Python replace an empty match right after a match, RE2 does not: "b*" turned
    # "abbc" into "-a-c-" where a Java job gives "-a--c-"
    params = {"column": "s", "pattern": pattern, "replacement": "-"}
    assert config_error(lambda: RegexReplace(params, CTX)) == (
        f"{WHERE}.pattern: {pattern!r} matches the empty text too, and an empty match right after "
        f"another one is replaced by Java and Python but not by RE2 ('b*' turns 'abbc' into "
        f"'-a--c-' in Java, '-a-c-' here); write + for * so that every match is non-empty"
    )


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("^", "ab", "-ab"),
        (r"^\s*", "  ab", "-ab"),
        (r"\b", "ab cd", "-ab- -cd-"),
        ("b+", "abbc", "a-c"),
    ],
)
def test_regex_replace_keeps_patterns_whose_empty_matches_agree(
    pattern: str, value: str, expected: str
) -> None:
    b = pa.record_batch({"s": pa.array([value])})
    t = RegexReplace({"column": "s", "pattern": pattern, "replacement": "-"}, CTX)
    assert t.apply(b).column(0).to_pylist() == [expected]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"column": "s", "pattern": "(a"},
         "pattern: Invalid regular expression: missing ): (a (RE2 syntax; $1 or \\1 in the replacement is the first group)"),
        ({"column": "s", "pattern": "(a)", "replacement": r"\2"},
         "replacement: Invalid replacement string: Rewrite schema requests 2 matches, but the regexp only has 1 "
         "parenthesized subexpressions. (RE2 syntax; $1 or \\1 in the replacement is the first group)"),
        ({"pattern": "a"}, "column: is required"),
        ({"column": "s"}, "pattern: is required"),
        ({"column": "s", "pattern": "a", "maxReplacements": 0}, "maxReplacements: must be at least 1, got 0"),
    ],
)  # fmt: skip
def test_regex_replace_bad_parameters(params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: RegexReplace(params, CTX)) == f"{WHERE}.{message}"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("nam", "column: no column 'nam' in the batch; did you mean 'name'?; its columns are 'id', 'name', 'age'"),
        ("id", "column: column 'id' is int64; regex_replace works on text: cast it first "
               '({"name": "cast", "parameter": {"columns": {"id": "string"}}})'),
    ],
)  # fmt: skip
def test_regex_replace_needs_an_existing_text_column(column: str, message: str) -> None:
    t = RegexReplace({"column": column, "pattern": "a"}, CTX)
    for fn in (lambda: t.apply(people()), lambda: t.output_schema(people().schema)):
        assert config_error(fn) == f"{WHERE}.{message}"


# -- timezone -----------------------------------------------------------------------------------

EIGHT = dt.datetime(2024, 1, 31, 8, 0)


@pytest.mark.parametrize(
    ("params", "source", "expected", "type"),
    [
        ({"from": "Asia/Shanghai", "to": "UTC"}, pa.timestamp("us"), dt.datetime(2024, 1, 31, 0), pa.timestamp("us")),
        ({"to": "UTC"}, pa.timestamp("ms"), dt.datetime(2024, 1, 31, 0), pa.timestamp("ms")),  # from: the job's zone
        ({"from": "UTC", "to": "Asia/Tokyo"}, pa.timestamp("s"), dt.datetime(2024, 1, 31, 17), pa.timestamp("s")),
        ({"from": "+08:00", "to": "-05:00"}, pa.timestamp("us"), dt.datetime(2024, 1, 30, 19), pa.timestamp("us")),
        ({"from": "Asia/Shanghai", "to": "UTC", "keepZone": True}, pa.timestamp("us"),
         dt.datetime(2024, 1, 31, 0, tzinfo=UTC), pa.timestamp("us", "UTC")),
        # a zoned value is converted from its own zone; "from" does not apply
        ({"from": "Asia/Shanghai", "to": "Asia/Tokyo"}, pa.timestamp("us", "UTC"),
         dt.datetime(2024, 1, 31, 17), pa.timestamp("us")),
    ],
)  # fmt: skip
def test_timezone_converts_wall_clock_time(
    params: dict[str, Any], source: pa.DataType, expected: dt.datetime, type: pa.DataType
) -> None:
    value = EIGHT.replace(tzinfo=UTC) if source.tz else EIGHT
    b = pa.record_batch({"ts": pa.array([value, None], source), "n": [1, 2]})
    t = TimeZone({"columns": ["ts"], **params}, CTX)
    out = t.apply(b)
    assert (out.column(0).to_pylist(), out.schema.field(0).type) == ([expected, None], type)
    assert out.schema == t.output_schema(b.schema)
    assert out.column(1).to_pylist() == [1, 2]


@pytest.mark.parametrize(
    ("local", "reason"),
    [
        (dt.datetime(2024, 3, 10, 2, 30), "column 'ts': 2024-03-10 02:30:00 does not exist in America/New_York "
                                          "(a daylight-saving change); set 'nonexistent' to 'earliest' or 'latest' to accept it"),
        (dt.datetime(2024, 11, 3, 1, 30), "column 'ts': 2024-11-03 01:30:00 is ambiguous in America/New_York "
                                          "(a daylight-saving change); set 'ambiguous' to 'earliest' or 'latest' to accept it"),
    ],
)  # fmt: skip
def test_timezone_makes_a_wall_clock_time_that_is_not_one_instant_dirty(
    local: dt.datetime, reason: str
) -> None:
    b = pa.record_batch({"ts": [dt.datetime(2024, 1, 1), local, dt.datetime(2024, 7, 1)]})
    t = TimeZone({"columns": ["ts"], "from": "America/New_York", "to": "UTC"}, CTX)
    out, dirty = run_isolated(t, b)
    assert out.column(0).to_pylist() == [dt.datetime(2024, 1, 1, 5), dt.datetime(2024, 7, 1, 4)]
    assert dirty == [(1, reason)]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("earliest", dt.datetime(2024, 11, 3, 5, 30)), ("latest", dt.datetime(2024, 11, 3, 6, 30))],
)
def test_timezone_resolves_an_ambiguous_time_as_asked(choice: str, expected: dt.datetime) -> None:
    b = pa.record_batch({"ts": [dt.datetime(2024, 11, 3, 1, 30)]})
    t = TimeZone(
        {"columns": ["ts"], "from": "America/New_York", "to": "UTC", "ambiguous": choice}, CTX
    )
    assert t.apply(b).column(0).to_pylist() == [expected]


@pytest.mark.parametrize(
    ("params", "ctx", "message"),
    [
        ({"columns": ["ts"], "to": "Asia/Shangai"}, CTX,
         "to: unknown time zone 'Asia/Shangai'; did you mean 'Asia/Shanghai'?; write an IANA name "
         "such as 'Asia/Shanghai' or 'UTC', or an offset such as '+08:00'"),
        ({"columns": ["ts"], "to": "UTC"}, Context(where=WHERE, timezone="Mars/Olympus"),
         "from: unknown time zone 'Mars/Olympus'; write an IANA name such as 'Asia/Shanghai' or 'UTC', "
         "or an offset such as '+08:00' (the job's time zone)"),
        # Arrow refused these at the first batch: a bare ArrowInvalid for "to", every row dirty as
        # "ambiguous" for "from"
        ({"columns": ["ts"], "to": "+25:00"}, CTX, "to: '+25:00' is no offset; write one from -23:59 to +23:59 such as '+08:00'"),
        ({"columns": ["ts"], "from": "+08:60", "to": "UTC"}, CTX, "from: '+08:60' is no offset; write one from -23:59 to +23:59 such as '+08:00'"),
        # the hint was "did you mean 'GMT+0'?", another zone
        ({"columns": ["ts"], "to": "GMT+8"}, CTX,
         "to: unknown time zone 'GMT+8'; for the offset write '+08:00' (the IANA name Etc/GMT+8 means the opposite sign)"),
        ({"columns": ["ts"], "to": "UTC-5:30"}, CTX,
         "to: unknown time zone 'UTC-5:30'; for the offset write '-05:30' (the IANA name Etc/GMT-5 means the opposite sign)"),
        ({"columns": ["ts"]}, CTX, "to: is required"),
        ({"to": "UTC"}, CTX, "columns: is required"),
        ({"columns": ["ts"], "to": "UTC", "ambiguous": "first"}, CTX,
         "ambiguous: 'first' is not one of raise, earliest, latest"),
        ({"columns": ["ts"], "to": "UTC", "keepZone": "maybe"}, CTX, "keepZone: must be true or false, got 'maybe'"),
    ],
)  # fmt: skip
def test_timezone_bad_parameters(params: dict[str, Any], ctx: Context, message: str) -> None:
    assert config_error(lambda: TimeZone(params, ctx)) == f"{WHERE}.{message}"


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ("ts", "columns[0]: no column 'ts' in the batch; its columns are 'id', 'name', 'age'"),
        ("age", "columns[0]: column 'age' is string; timezone converts timestamps: cast it first "
                '({"name": "cast", "parameter": {"columns": {"age": "timestamp"}}})'),
    ],
)  # fmt: skip
def test_timezone_needs_an_existing_timestamp_column(column: str, message: str) -> None:
    t = TimeZone({"columns": [column], "to": "UTC"}, CTX)
    for fn in (lambda: t.apply(people()), lambda: t.output_schema(people().schema)):
        assert config_error(fn) == f"{WHERE}.{message}"


# -- all of them --------------------------------------------------------------------------------

ALL = [
    (Rename, {"columns": {"name": "n"}}),
    (Select, {"columns": ["age"]}),
    (Cast, {"columns": {"age": "long"}}),
    (RegexReplace, {"column": "name", "pattern": "n"}),
    (TimeZone, {"columns": ["ts"], "to": "UTC"}),
]


@pytest.mark.parametrize(("cls", "params"), ALL)
def test_an_empty_batch_stays_empty_with_the_output_schema(
    cls: type, params: dict[str, Any]
) -> None:
    b = people().append_column("ts", pa.array([NOON, None], pa.timestamp("us"))).slice(0, 0)
    t = cls(params, CTX)
    out = t.apply(b)
    assert (out.num_rows, out.schema) == (0, t.output_schema(b.schema))


@pytest.mark.parametrize(("cls", "params"), ALL)
def test_output_schema_of_an_unknown_schema_is_unknown(cls: type, params: dict[str, Any]) -> None:
    assert cls(params, CTX).output_schema(None) is None


def test_cast_to_long_of_a_time_in_a_dst_gap_or_overlap_is_dirty_not_the_earlier_instant() -> None:
    # the gap's 02:30 became 01:59:59.999 (1711846799999), silently; the overlap's 02:30 was
    # dirty with Arrow's floor error rather than a reason naming the zone
    berlin = Context(where=WHERE, timezone="Europe/Berlin")
    wall = [
        dt.datetime(2024, 3, 31, 1, 30),
        dt.datetime(2024, 3, 31, 2, 30),
        dt.datetime(2024, 10, 27, 2, 30),
        None,
    ]
    b = pa.record_batch({"ts": pa.array(wall, pa.timestamp("us"))})
    out, dirty = run_isolated(Cast({"columns": {"ts": "long"}}, berlin), b)
    assert out.column(0).to_pylist() == [1711845000000, None]
    assert dirty == [
        (
            1,
            "column ts: value 2024-03-31 02:30:00 does not exist in time zone Europe/Berlin (the "
            "clock skips it at a daylight-saving change), so it names no one instant for "
            "milliseconds since the epoch; write it with its offset (a timestamp with a time "
            "zone) or set the job's timezone to one without daylight saving",
        ),
        (
            2,
            "column ts: value 2024-10-27 02:30:00 is ambiguous in time zone Europe/Berlin (the "
            "clock shows it twice at a daylight-saving change), so it names no one instant for "
            "milliseconds since the epoch; write it with its offset (a timestamp with a time "
            "zone) or set the job's timezone to one without daylight saving",
        ),
    ]


def test_cast_to_long_of_a_zoned_timestamp_in_an_overlap_is_its_instant() -> None:
    # Arrow floored the wall time of the column's zone and refused the overlap's
    at = pa.array([dt.datetime(2024, 10, 27, 0, 30, tzinfo=dt.UTC)], pa.timestamp("us", "UTC"))
    b = pa.record_batch({"ts": at.cast(pa.timestamp("us", "Europe/Berlin"))})
    out, dirty = run_isolated(Cast({"columns": {"ts": "long"}}, CTX), b)
    assert (out.column(0).to_pylist(), dirty) == ([1729989000000], [])


def test_cast_of_a_date_to_text_with_an_offset_is_its_midnight_in_the_jobs_zone() -> None:
    # every row was dirty ("cannot cast 2024-01-15 to string"): strftime has no offset for a date
    sao_paulo = Context(where=WHERE, timezone="America/Sao_Paulo")
    days = [dt.date(2018, 7, 1), dt.date(2018, 11, 4), dt.date(2018, 12, 1), None]
    b = pa.record_batch({"d": pa.array(days, pa.date32())})
    spec = {"type": "string", "format": "yyyy-MM-dd HH:mm Z"}
    out, dirty = run_isolated(Cast({"columns": {"d": spec}}, sao_paulo), b)
    assert out.column(0).to_pylist() == ["2018-07-01 00:00 -0300", "2018-12-01 00:00 -0200", None]
    # that midnight the clock skipped (Brazil's daylight saving began at 00:00)
    assert [(i, r.split(" does not exist")[0]) for i, r in dirty] == [
        (1, "column d: value 2018-11-04 00:00:00")
    ]
    b = pa.record_batch({"d": pa.array([dt.date(2024, 1, 15)], pa.date32())})
    out = Cast({"columns": {"d": {"type": "string", "format": "yyyyMMdd Z"}}}, CTX).apply(b)
    assert out.column(0).to_pylist() == ["20240115 +0800"]


def test_cast_to_text_of_a_zoned_timestamp_in_an_overlap_is_its_wall_time() -> None:
    # Arrow floored the wall time of the column's zone and refused the overlap's: a dirty row
    utc = [
        dt.datetime(2024, 10, 27, 0, 30, 0, 500000, tzinfo=dt.UTC),
        dt.datetime(2024, 10, 27, 1, 30),
    ]
    at = pa.array(utc, pa.timestamp("us", "UTC")).cast(pa.timestamp("us", "Europe/Berlin"))
    b = pa.record_batch({"ts": at})
    berlin = Context(where=WHERE, timezone="Europe/Berlin")
    spec = {"type": "string", "format": "yyyy-MM-dd HH:mm:ss Z"}
    out, dirty = run_isolated(Cast({"columns": {"ts": spec}}, berlin), b)
    assert (out.column(0).to_pylist(), dirty) == (
        ["2024-10-27 02:30:00 +0200", "2024-10-27 02:30:00 +0100"],
        [],
    )
    out, dirty = run_isolated(Cast({"columns": {"ts": spec}}, CTX), b)
    assert (out.column(0).to_pylist(), dirty) == (
        ["2024-10-27 08:30:00 +0800", "2024-10-27 09:30:00 +0800"],
        [],
    )


@pytest.mark.parametrize("kind", ["string", "timestamp"])
def test_cast_refuses_a_quoted_z_unless_the_job_is_in_utc(kind: str) -> None:
    # 12:00 in Asia/Shanghai was written as 12:00:00Z (04:00Z is meant), and 12:00:00Z read as
    # 12:00 there: eight hours off either way (Java's SimpleDateFormat does the same)
    spec = {"type": kind, "format": "yyyy-MM-dd'T'HH:mm:ss'Z'"}
    assert config_error(lambda: Cast({"columns": {"x": spec}}, CTX)) == (
        f"{WHERE}.columns.x.format: 'Z' quoted is the letter Z, which says UTC, but the time is "
        "the job's wall time in Asia/Shanghai; write XXX for its offset (XXX reads Z as UTC too), "
        "or set the job's timezone to UTC"
    )
    utc = Context(where=WHERE, timezone="Etc/UTC")
    if kind == "string":
        b = pa.record_batch({"x": pa.array([NOON], pa.timestamp("us"))})
        expected: Any = "2024-01-31T12:00:05Z"
    else:
        b = pa.record_batch({"x": ["2024-01-31T12:00:05Z"]})
        expected = NOON
    assert Cast({"columns": {"x": spec}}, utc).apply(b).column(0).to_pylist() == [expected]
    # XXX in Shanghai: the instant
    xxx = {"type": kind, "format": "yyyy-MM-dd'T'HH:mm:ssXXX"}
    out = Cast({"columns": {"x": xxx}}, CTX).apply(b).column(0).to_pylist()
    if kind == "string":
        assert out == ["2024-01-31T12:00:05+08:00"]
    else:
        assert out == [dt.datetime(2024, 1, 31, 12, 0, 5, tzinfo=UTC)]
    # a quoted text holding Z, and '' around the offset letter, are not the quoted letter
    for ok in ("HH 'Zulu'", "HH ''Z''"):
        Cast({"columns": {"x": {"type": "string", "format": ok}}}, CTX)
