"""DataX's dx_* transformers over Arrow columns: DataX semantics, characters not bytes, nulls."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pytest

from tidesync.connectors.base import Context
from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError
from tidesync.transforms.base import load_transform
from tidesync.transforms.datax import Digest, Filter, Pad, Replace, Substr

WHERE = "job.content[0].transformer[1].parameter"
AT = re.escape(WHERE)
CTX = Context(where=WHERE, timezone="Asia/Shanghai")
SHANGHAI = dt.timezone(dt.timedelta(hours=8))


def make(cls: type, *paras: Any, index: int = 1) -> Any:
    return cls({"columnIndex": index, "paras": list(paras)}, CTX)


def batch(values: list[Any], type: pa.DataType | None = None) -> pa.RecordBatch:
    """Column 0 ``id`` (untouched by the transforms under test), column 1 ``v``."""
    v = pa.array(values, type)
    return pa.record_batch([pa.array(range(len(v)), pa.int64()), v], names=["id", "v"])


def values_after(t: Any, b: pa.RecordBatch) -> list[Any]:
    return t.apply(b).column(1).to_pylist()


@pytest.mark.parametrize("name", ["dx_substr", "dx_pad", "dx_replace", "dx_filter", "dx_digest"])
def test_registry_loads_each_datax_transformer_with_name_and_summary(name: str) -> None:
    cls = load_transform(name, "job.content[0].transformer[0].name")
    assert (cls.name, bool(cls.summary)) == (name, True)


@pytest.mark.parametrize("name", ["dx_groovy", "DX_GROOVY"])
def test_dx_groovy_is_refused_with_what_to_write_instead(name: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_transform(name, "job.content[0].transformer[0].name")
    assert str(e.value) == (
        f"job.content[0].transformer[0].name: transformer {name!r} is not supported: DataX's "
        f"Groovy code is not run by tidesync; write the logic as a 'sql' transformer (DuckDB SQL "
        f"over each batch) or with the other transformers"
    )


# -- dx_substr ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "paras", "expected"),
    [
        (["dataxTest"], ["1", "3"], ["ata"]),
        (["héllo wörld"], ["1", "3"], ["éll"]),  # characters, not bytes
        (["日本語テキスト"], [2, 3], ["語テキ"]),
        (["abc"], ["1", "10"], ["bc"]),  # clipped at the end
        (["abc"], ["3", "1"], [""]),  # start at the end
        (["abc"], ["0", "0"], [""]),
        ([None, "abc"], ["0", "1"], [None, "a"]),  # a null stays null
    ],
)
def test_substr_takes_length_characters_from_start(
    values: list[Any], paras: list[Any], expected: list[Any]
) -> None:
    assert values_after(make(Substr, *paras), batch(values)) == expected


def test_substr_of_a_number_works_on_its_text_and_gives_text() -> None:
    out = make(Substr, "1", "3").apply(batch([12345, None], pa.int64()))
    assert (out.column(1).to_pylist(), out.schema.field(1).type) == (["234", None], pa.string())


@pytest.mark.parametrize("type", [pa.float64(), pa.float32()])
def test_a_float_reads_in_plain_digits_as_datax_gets_it_from_the_database(
    type: pa.DataType,
) -> None:
    # MariaDB and PostgreSQL give DataX 15000000000 for 1.5e10 (and MariaDB 0.0000001 for
    # 1e-7); Arrow's text was 1.5e+10, so dx_substr [0, 3] gave "1.5" where DataX gives "150"
    values = [1.5e10, 1e-7, 0.1, 100.0, float("nan"), float("inf"), -float("inf"), None]
    b = batch(values, type)
    text = ["15000000000", "0.0000001", "0.1", "100", "NaN", "Infinity", "-Infinity", None]
    assert values_after(make(Replace, "0", "0", ""), b) == text
    assert values_after(make(Substr, "0", "3"), b)[:2] == ["150", "0.0"]
    digest = hashlib.md5(b"15000000000").hexdigest()
    assert values_after(make(Digest, "md5", "toLowerCase"), b)[0] == digest
    assert make(Filter, "like", "1500.*").apply(b).column(0).to_pylist() == list(range(1, 8))


def test_a_decimal_reads_in_plain_digits_as_datax_gets_it() -> None:
    # Arrow writes a decimal under 10^-6 with an exponent (Java's toString): a zero of a
    # numeric(20,8) was "0E-8", so dx_substr [0, 3] gave "0E-" where DataX gives "0.0"
    b = batch([Decimal("0"), Decimal("1E-7"), Decimal("-12.5"), None], pa.decimal128(20, 8))
    text = ["0.00000000", "0.00000010", "-12.50000000", None]
    assert values_after(make(Replace, "0", "0", ""), b) == text
    assert values_after(make(Substr, "0", "3"), b)[:2] == ["0.0", "0.0"]
    digest = hashlib.md5(b"0.00000000").hexdigest()
    assert values_after(make(Digest, "md5", "toLowerCase"), b)[0] == digest


@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
def test_a_timestamp_with_a_zone_reads_as_wall_clock_time_in_the_jobs_zone(zone: str) -> None:
    # 23:00 UTC is 07:00 the next day in Shanghai (the job's zone), as DataX prints it there
    b = batch([dt.datetime(2023, 12, 31, 23, tzinfo=dt.UTC), None], pa.timestamp("us", zone))
    assert values_after(make(Substr, "0", "10"), b) == ["2024-01-01", None]
    text = "2024-01-01 07:00:00"
    digest = [hashlib.md5(text.encode()).hexdigest(), hashlib.md5(b"").hexdigest()]
    assert values_after(make(Digest, "md5", "toLowerCase"), b) == digest
    assert make(Filter, "like", "2024-01-01 07:.*").apply(b).column(0).to_pylist() == [1]


def test_a_datetime_reads_as_datax_prints_it_its_fraction_only_when_it_has_one() -> None:
    """DataX's asString of a DATETIME is yyyy-MM-dd HH:mm:ss: Arrow's text of a whole second
    adds .000000, which moved every position after it and changed every digest."""
    b = batch(
        [dt.datetime(2024, 1, 1, 7), dt.datetime(2024, 1, 1, 7, 0, 0, 250000), None],
        pa.timestamp("us"),
    )
    assert values_after(make(Substr, "11", "8"), b) == ["07:00:00", "07:00:00", None]
    whole = hashlib.md5(b"2024-01-01 07:00:00").hexdigest()
    assert values_after(make(Digest, "md5", "toLowerCase"), b)[0] == whole
    assert values_after(make(Replace, "0", "4", "Y"), b) == [
        "Y-01-01 07:00:00",
        "Y-01-01 07:00:00.250000",
        None,
    ]
    t = batch([dt.time(7, 30), dt.time(7, 30, 0, 5)], pa.time64("us"))
    assert values_after(make(Pad, "r", "10", "|"), t) == ["07:30:00||", "07:30:00.0"]


# -- dx_pad -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paras", "values", "expected"),
    [
        (["l", "4", "A"], ["xyz"], ["Axyz"]),
        (["r", "4", "A"], ["xyz"], ["xyzA"]),
        (["l", "4", "A"], ["xyzzzzz"], ["xyzz"]),  # longer: cut on the right, for l and r
        (["r", "4", "A"], ["xyzzzzz"], ["xyzz"]),
        (["l", "8", "12345"], ["abc"], ["12345abc"]),
        (["l", "6", "123"], ["a"], ["12312a"]),  # the pad string repeats and is cut
        (["r", "5", "é"], ["ab"], ["abééé"]),
        (["l", "3", "ab"], ["日本語"], ["日本語"]),
        (["l", "3", "0"], [None], ["000"]),  # DataX pads a null as ""
        (["L", 0, "x"], ["abc"], [""]),
        (
            ["l", "4", "xy"],
            ["", "a", "abc", "abcdef", None],
            ["xyxy", "xyxa", "xabc", "abcd", "xyxy"],
        ),
    ],
)
def test_pad_pads_to_length_or_cuts(
    paras: list[Any], values: list[Any], expected: list[Any]
) -> None:
    assert values_after(make(Pad, *paras), batch(values)) == expected


# -- dx_replace ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("paras", "value", "expected"),
    [
        (["2", "4", "****"], "dataxTest", "da****est"),
        (["5", "10", "****"], "dataxTest", "datax****"),  # past the end: the rest is replaced
        (["1", "2", "**"], "日本語テキスト", "日**テキスト"),
        (["1", "0", "-"], "abc", "a-bc"),  # length 0 inserts
        (["3", "1", "!"], "abc", "abc!"),  # start at the end appends
        (["0", "1", "x"], None, None),
    ],
)
def test_replace_replaces_the_characters_at_start(
    paras: list[Any], value: str | None, expected: str | None
) -> None:
    assert values_after(make(Replace, *paras), batch([value], pa.string())) == [expected]


# Java counts a character outside the BMP (an emoji) as two UTF-16 units: "a😀b" is 4 long.
@pytest.mark.parametrize(
    ("cls", "paras", "value", "expected"),
    [
        (Substr, ["1", "2"], "a😀bc", "😀"),
        (Substr, ["3", "9"], "a😀bc", "bc"),
        (Substr, ["2", "1"], "😀", ""),  # at the end
        (Substr, ["1", "2"], "héllo", "él"),  # no emoji in the batch: the same positions
        (Replace, ["1", "2", "X"], "a😀b", "aXb"),
        (Replace, ["3", "1", "!"], "a😀b", "a😀!"),
        (Replace, ["4", "0", "!"], "a😀b", "a😀b!"),
        (Pad, ["l", "3", "😀"], "a", "😀a"),  # the pad string is 2 units too
        (Pad, ["l", "5", "😀"], "a", "😀😀a"),
        (Pad, ["r", "2", "x"], "😀b", "😀"),  # cut at 2 units
        (Pad, ["r", "4", "x"], "😀", "😀xx"),
    ],
)
def test_positions_count_utf16_units_as_java_does(
    cls: Any, paras: list[Any], value: str, expected: str
) -> None:
    b = batch([value, "日本語ab"], pa.string())  # a BMP row beside it keeps Java's positions
    out = values_after(make(cls, *paras), b)
    assert out[0] == expected
    assert out[1] == make(cls, *paras).apply(batch(["日本語ab"], pa.string())).column(1)[0].as_py()


@pytest.mark.parametrize(
    ("cls", "paras", "reason"),
    [
        (Substr, ["0", "2"], "dx_substr: the result for 'a😀b' (column 1) would cut"),
        (Substr, ["5", "1"], "dx_substr: startIndex 5 is past the end of the value 'a😀b' (column 1)"),
        (Replace, ["2", "1", "X"], "dx_replace: the result for 'a😀b' (column 1) would cut"),
        (Pad, ["r", "2", "x"], "dx_pad: the result for 'a😀b' (column 1) would cut"),
        (Pad, ["l", "5", "😀"], "dx_pad: the result for 'a😀b' (column 1) would cut"),
    ],
)  # fmt: skip
def test_cutting_a_character_outside_the_bmp_in_half_makes_the_row_dirty(
    cls: Any, paras: list[Any], reason: str
) -> None:
    # DataX would write half a surrogate pair (a broken character): no UTF-8 form, so dirty
    t = make(cls, *paras)
    b = pa.record_batch({"id": [1, 2, 3], "s": ["abcdefgh", "a😀b", "abcde"]})
    dirty: list[tuple[int, str]] = []
    kept = isolate(b, t.apply, lambda at, row, e: dirty.append((at, e.reason)))
    assert [(at, r[: len(reason)]) for at, r in dirty] == [(1, reason)]
    assert [r["id"] for k in kept for r in k.to_pylist()] == [1, 3]


@pytest.mark.parametrize(("cls", "paras"), [(Substr, ["4", "1"]), (Replace, ["4", "1", "!"])])
def test_a_start_past_the_end_makes_the_row_dirty_as_in_datax(cls: Any, paras: list[Any]) -> None:
    # DataX throws for it (a dirty record); it used to give "" or append, and the run went on
    t = make(cls, *paras)
    b = pa.record_batch({"id": [1, 2, 3, 4], "s": ["abcdef", "abc", None, "abcd"]})
    dirty: list[tuple[int, str]] = []
    kept = isolate(b, t.apply, lambda at, row, e: dirty.append((at, e.reason)))
    assert dirty == [(1, f"{t.name}: startIndex 4 is past the end of the value 'abc' (column 1)")]
    assert [r["id"] for k in kept for r in k.to_pylist()] == [1, 3, 4]


# -- dx_digest ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("algorithm", "case"),
    [
        ("md5", "toLowerCase"),
        ("md5", "toUpperCase"),
        ("sha1", "toLowerCase"),
        ("SHA1", "TOLOWERCASE"),  # DataX ignores the case of these two
    ],
)
def test_digest_is_the_hex_digest_of_the_utf8_text(algorithm: str, case: str) -> None:
    values = ["tidesync", "日本語", None]
    expected = [getattr(hashlib, algorithm.lower())((v or "").encode()).hexdigest() for v in values]
    if case.lower() == "touppercase":
        expected = [h.upper() for h in expected]
    assert values_after(make(Digest, algorithm, case), batch(values)) == expected


@pytest.mark.parametrize(
    ("values", "type", "raw"),
    [
        ([b"\xff\x00"], pa.binary(), b"\xff\x00"),  # bytes are hashed as they are
        ([42], pa.int64(), b"42"),  # other types by their text
    ],
)
def test_digest_of_non_text_columns(values: list[Any], type: pa.DataType, raw: bytes) -> None:
    out = make(Digest, "md5", "toLowerCase").apply(batch(values, type))
    assert out.column(1).to_pylist() == [hashlib.md5(raw).hexdigest()]


# -- dx_filter ----------------------------------------------------------------------------------

INTS = ([1, 5, 10, None], pa.int64())
STRINGS = (["10", "9", "a", None], pa.string())


@pytest.mark.parametrize(
    ("column", "op", "value", "kept"),
    [
        (INTS, ">", "5", [1, 5, None]),  # a null is never compared: kept
        (INTS, ">=", "5", [1, None]),
        (INTS, "<", "5", [5, 10, None]),
        (INTS, "<=", " 5 ", [10, None]),
        (INTS, "=", "5", [1, 10, None]),
        (INTS, "==", "5", [1, 10, None]),
        (INTS, "!=", "5", [5]),  # a null is != 5: dropped
        (INTS, ">", "1.5", [1, None]),
        (([1, 2**53 + 1], pa.int64()), ">", "9007199254740992.5", [1]),  # not as doubles
        (([1, 2**53 + 1], pa.int64()), "=", "9007199254740993.0", [1]),
        (([2**64 - 1, 5], pa.uint64()), ">", "9223372036854775807", [5]),
        (([2**64 - 1, 5], pa.uint64()), "<", "-1", [2**64 - 1, 5]),
        (([1, 2], pa.int8()), ">", "300", [1, 2]),
        (([1, 2], pa.int8()), "<", "1e3", []),
        (([1.5, 2.5, None], pa.float64()), ">", "2", [1.5, None]),
        (([dt.time(12), dt.time(13), None], pa.time64("us")), ">", "12:30:00", [dt.time(12), None]),
        (
            ([Decimal("1.50"), Decimal("2.25")], pa.decimal128(10, 2)),
            ">=",
            "2.25",
            [Decimal("1.50")],
        ),
        (STRINGS, ">", "5", ["10", None]),  # text compares lexicographically
        (STRINGS, "=", "a", ["10", "9", None]),
        (STRINGS, "!=", "a", ["a"]),
        ((["a", "b", None], pa.large_string()), "<", "b", ["b", None]),
        (([b"ab", b"cd"], pa.binary()), "=", "ab", [b"cd"]),
        (([True, False, None], pa.bool_()), "=", "true", [False, None]),
        (
            (["dataTest", "data", "xdataTest", None], pa.string()),
            "like",
            "data.*",
            ["xdataTest", None],
        ),
        ((["dataTest", "data"], pa.string()), "like", "ata", ["dataTest", "data"]),  # full match
        (
            (["dataTest", "data", "xdataTest", None], pa.string()),
            "not like",
            "data.*",
            ["dataTest", "data"],
        ),
        ((["日本", "中国"], pa.string()), "LIKE", "日.", ["中国"]),
        # Java's "." matches no line terminator: a CRLF value's "\r" is not ".*" (RE2's is)
        (
            (["foo\r", "foo", "xfoo\u2028", None], pa.string()),
            "like",
            ".*foo.*",
            ["foo\r", "xfoo\u2028", None],
        ),
        ((["a.b", "a\rb", "a[b"], pa.string()), "like", r"a[.\[]b|\Q.\E", ["a\rb"]),
        ((["a]", "b", "[a]"], pa.string()), "like", r"[]a]+|\Q[a]\E", ["b"]),  # literal "]", "["
        ((["foo\r", "foo"], pa.string()), "like", "(?s).*foo.*", []),  # DOTALL: all
        # other flags than s, and named groups, left RE2's "." (matching "\r") in place
        ((["foo\r", "FOOx"], pa.string()), "like", "(?i)foo.*", ["foo\r"]),
        ((["foo\u2028", "foox"], pa.string()), "like", "(?P<f>foo).", ["foo\u2028"]),
        ((["foo\r", "foox"], pa.string()), "not like", "foo.", ["foox"]),
        (([12, 345], pa.int64()), "like", r"\d{3}", [12]),  # like on a number reads its text
        (([1, None, 3], pa.int64()), "=", "null", [1, 3]),
        (([1, None, 3], pa.int64()), "!=", "NULL", [None]),
        # Java compares UTF-16 units: an emoji (surrogates D83D..) sorts before "！" (U+FF01)
        ((["！", "😀", "a", None], pa.string()), "<", "！", ["！", None]),
        ((["！", "😀", "a", None], pa.large_string()), ">", "😀", ["😀", "a", None]),
        ((["𠀀", "\uffff", None], pa.string()), ">=", "\ue000", ["𠀀", None]),
        # DataX compares a text column's values with the value as written, nulls aside
        ((["null", None, "bob", "NULL"], pa.string()), "=", "null", ["bob", "NULL"]),
        ((["null", None, "bob", "NULL"], pa.string()), "!=", "null", ["null", None]),
        ((["null", None, "NULL"], pa.large_string()), "=", "NULL", ["null"]),
        (([b"null", None, b"x"], pa.binary()), "=", "null", [b"x"]),
        ((["null", None, " null"], pa.string()), "=", " null", ["null", None]),  # not trimmed
        (
            ([dt.date(2024, 1, 1), dt.date(2024, 1, 2)], pa.date32()),
            "<",
            "2024-01-02",
            [dt.date(2024, 1, 2)],
        ),
        (
            ([dt.datetime(2024, 1, 1, 11), dt.datetime(2024, 1, 1, 12)], pa.timestamp("us")),
            ">=",
            "2024-01-01 12:00:00",
            [dt.datetime(2024, 1, 1, 11)],
        ),
        (  # DataX: a whole number is milliseconds since the epoch; naive is in the job's zone
            ([dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 2)], pa.timestamp("us")),
            "=",
            "1704038400000",
            [dt.datetime(2024, 1, 2)],
        ),
    ],
)
def test_filter_drops_the_rows_that_meet_the_condition(
    column: tuple[list[Any], pa.DataType], op: str, value: str, kept: list[Any]
) -> None:
    values, type = column
    out = make(Filter, op, value).apply(batch(values, type))
    assert out.column(1).to_pylist() == kept
    assert out.column(0).to_pylist() == [values.index(k) for k in kept]  # whole rows go


@pytest.mark.parametrize(
    ("op", "value", "kept"),
    [("=", "0.1", [1, 2]), (">", "0.1", [0, 2]), ("<=", "0.1", [1, 2]), ("!=", "0.2", [1])],
)
def test_filter_compares_a_float32_as_the_number_it_shows(
    op: str, value: str, kept: list[int]
) -> None:
    # a float32 0.1 is 0.10000000149... as a double; a user who sees 0.1 means 0.1
    out = make(Filter, op, value).apply(batch([0.1, 0.2, None], pa.float32()))
    assert out.column(0).to_pylist() == kept


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "UTC", "America/New_York"])
def test_filter_reads_a_naive_value_in_the_jobs_zone_whatever_the_columns(zone: str) -> None:
    noon_shanghai = dt.datetime(2024, 1, 1, 12, tzinfo=SHANGHAI)  # the job's zone
    b = batch([noon_shanghai, noon_shanghai + dt.timedelta(hours=1)], pa.timestamp("us", zone))
    out = make(Filter, "=", "2024-01-01 12:00:00").apply(b)
    assert out.column(0).to_pylist() == [1]


@pytest.mark.parametrize(
    ("values", "type", "value"),
    [
        ([1], pa.int64(), "abc"),
        ([Decimal("1")], pa.decimal128(5, 0), "one"),
        ([dt.date(2024, 1, 1)], pa.date32(), "yesterday"),
        ([dt.time(12)], pa.time64("us"), "noon"),
    ],
)
def test_filter_value_that_cannot_meet_the_column_type_is_a_config_error(
    values: list[Any], type: pa.DataType, value: str
) -> None:
    t = make(Filter, ">", value)
    b = batch(values, type)
    for check in (lambda: t.apply(b), lambda: t.output_schema(b.schema)):
        with pytest.raises(ConfigError, match=rf"^{AT}\.paras\[1\]: dx_filter compares column 1 "):
            check()


# -- all of them --------------------------------------------------------------------------------

ALL = [
    (Substr, ["0", "2"]),
    (Pad, ["l", "3", "*"]),
    (Replace, ["0", "1", "#"]),
    (Filter, ["=", "b"]),
    (Digest, ["md5", "toLowerCase"]),
]


@pytest.mark.parametrize(("cls", "paras"), ALL)
@pytest.mark.parametrize("rows", [0, 3])
def test_output_schema_is_the_schema_apply_gives(cls: type, paras: list[Any], rows: int) -> None:
    b = batch(["a", "b", None][:rows], pa.string())
    t = make(cls, *paras)
    out = t.apply(b)
    assert out.schema == t.output_schema(b.schema)
    assert out.column(0).to_pylist() == [i for i in range(rows) if cls is not Filter or i != 1]


@pytest.mark.parametrize(("cls", "paras"), ALL)
def test_output_schema_of_an_unknown_schema_is_unknown(cls: type, paras: list[Any]) -> None:
    assert make(cls, *paras).output_schema(None) is None


@pytest.mark.parametrize(("cls", "paras"), ALL)
def test_column_index_beyond_the_batch_is_a_config_error_listing_the_columns(
    cls: type, paras: list[Any]
) -> None:
    t = make(cls, *paras, index=2)
    b = batch(["a"])
    message = f"{WHERE}.columnIndex: there is no column 2 (0-based); the batch has 2 columns: 0 'id', 1 'v'"
    for check in (lambda: t.apply(b), lambda: t.output_schema(b.schema)):
        with pytest.raises(ConfigError) as e:
            check()
        assert str(e.value) == message


@pytest.mark.parametrize(("cls", "paras"), ALL)
def test_a_column_without_a_text_form_is_a_config_error(cls: type, paras: list[Any]) -> None:
    b = batch([[1, 2]], pa.list_(pa.int64()))
    with pytest.raises(
        ConfigError, match=rf"^{AT}\.columnIndex: column 1 is list<item: int64>[,;] "
    ):
        make(cls, *paras).apply(b)


def test_bytes_that_are_not_utf8_make_their_row_dirty_and_spare_the_others() -> None:
    b = batch([b"good", b"\xff\xfe", b"fine"], pa.binary())
    dirty: list[tuple[int, str]] = []
    out = isolate(b, make(Substr, "0", "2").apply, lambda at, row, e: dirty.append((at, e.reason)))
    assert [v for part in out for v in part.column(1).to_pylist()] == ["go", "fi"]
    assert dirty == [(1, "column 'v': Invalid UTF8 payload")]


def test_a_dirty_row_raises_dirty_record_error_for_the_whole_batch() -> None:
    with pytest.raises(DirtyRecordError):
        make(Pad, "l", "3", "x").apply(batch([b"ok", b"\xff"], pa.binary()))


# -- configuration errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (Pad, {"columnIndex": 1, "paras": ["l", "3"]}, "paras: dx_pad needs 3 values [l|r, length, padString], got 2"),
        (Substr, {"columnIndex": 1, "paras": ["1", "2", "3"]}, "paras: dx_substr needs 2 values [startIndex, length], got 3"),
        (Replace, {"columnIndex": 1, "paras": ["1"]}, "paras: dx_replace needs 3 values [startIndex, length, replaceString], got 1"),
        (Filter, {"columnIndex": 1, "paras": [">"]}, "paras: dx_filter needs 2 values [operator, value], got 1"),
        (Digest, {"columnIndex": 1, "paras": []}, "paras: dx_digest needs 2 values [md5|sha1, toUpperCase|toLowerCase], got 0"),
        (Substr, {"columnIndex": 1}, "paras: is required"),
        (Substr, {"paras": ["0", "1"]}, "columnIndex: is required"),
        (Substr, {"columnIndex": -1, "paras": ["0", "1"]}, "columnIndex: must be at least 0, got -1"),
        (Substr, {"columnIndex": "first", "paras": ["0", "1"]}, "columnIndex: must be an integer, got 'first'"),
        (Substr, {"columnIndex": 1, "paras": ["a", "1"]}, "paras[0]: dx_substr startIndex must be a whole number >= 0, got 'a'"),
        (Substr, {"columnIndex": 1, "paras": ["0", "-1"]}, "paras[1]: dx_substr length must be a whole number >= 0, got '-1'"),
        (Replace, {"columnIndex": 1, "paras": ["0", 1.5, "x"]}, "paras[1]: dx_replace length must be a whole number >= 0, got 1.5"),
        (Replace, {"columnIndex": 1, "paras": ["0", "1", ["x"]]}, "paras[2]: dx_replace replaceString must be a string, got ['x']"),
        (Pad, {"columnIndex": 1, "paras": ["c", "3", "x"]}, "paras[0]: dx_pad side must be one of l, r, got 'c'"),
        (Pad, {"columnIndex": 1, "paras": ["l", "3", ""]}, "paras[2]: dx_pad padString must not be empty"),
        (Filter, {"columnIndex": 1, "paras": ["~", "x"]}, "paras[0]: dx_filter operator must be one of like, not like, >, <, =, ==, !=, >=, <=, got '~'"),
        (Filter, {"columnIndex": 1, "paras": ["=", ""]}, "paras[1]: dx_filter value must not be empty"),
        (Filter, {"columnIndex": 1, "paras": ["like", "(a"]}, "paras[1]: dx_filter like needs a regular expression: Invalid regular expression: missing ): (a"),
        # valid in both, but RE2 matched "b]" and not "bcd", Java (DataX) "bcd" and not "b]"
        (Filter, {"columnIndex": 1, "paras": ["like", "[a-z&&[^aeiou]]+"]},
         "paras[1]: dx_filter like: '&&' inside a character class is an intersection in Java but '&' in RE2, "
         "so the pattern would match other text than in DataX; write it another way"),
        (Filter, {"columnIndex": 1, "paras": ["not like", "[[:alpha:]]+"]},
         "paras[1]: dx_filter not like: a '[' inside a character class is a nested class in Java (so "
         "'[[:alpha:]]' is the characters ':alph') but a '[' or a POSIX class in RE2, "
         "so the pattern would match other text than in DataX; write it another way"),
        (Filter, {"columnIndex": 1, "paras": ["like", r"a\vb"]},
         "paras[1]: dx_filter like: '\\v' is any vertical whitespace in Java but a vertical tab in RE2, "
         "so the pattern would match other text than in DataX; write it another way"),
        (Digest, {"columnIndex": 1, "paras": ["sha256", "toLowerCase"]}, "paras[0]: dx_digest algorithm must be one of md5, sha1, got 'sha256'"),
        (Digest, {"columnIndex": 1, "paras": ["md5", "upper"]}, "paras[1]: dx_digest case must be one of toUpperCase, toLowerCase, got 'upper'"),
        # DataX computes a sha1 for "MD5" and lower case for "touppercase"
        (Digest, {"columnIndex": 1, "paras": ["MD5", "toLowerCase"]}, "paras[0]: dx_digest 'MD5' is ambiguous: write 'md5' exactly (DataX reads any other spelling of it as sha1)"),
        (Digest, {"columnIndex": 1, "paras": ["sha1", "touppercase"]}, "paras[1]: dx_digest 'touppercase' is ambiguous: write 'toUpperCase' exactly (DataX reads any other spelling of it as lower case)"),
    ],
)  # fmt: skip
def test_bad_parameters_are_a_config_error_naming_the_key(
    cls: type, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        cls(params, CTX)
    assert e.value.problems == [f"{WHERE}.{message}"]


def test_every_bad_parameter_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as e:
        Pad({"columnIndex": "x", "paras": ["up", "many", ""]}, CTX)
    assert [p.split(":")[0] for p in e.value.problems] == [
        f"{WHERE}.columnIndex",
        f"{WHERE}.paras[0]",
        f"{WHERE}.paras[1]",
        f"{WHERE}.paras[2]",
    ]


def test_filter_against_milliseconds_makes_a_time_in_a_dst_gap_or_overlap_dirty() -> None:
    # the overlap's 02:30 failed the whole job (ArrowInvalid from Arrow's floor); the gap's
    # 02:30 compared as 01:59:59.999, the earlier side of the gap, silently
    berlin = Context(where=WHERE, timezone="Europe/Berlin")
    wall = [
        dt.datetime(2024, 3, 31, 1, 30),
        dt.datetime(2024, 3, 31, 2, 30),
        dt.datetime(2024, 10, 27, 2, 30),
        dt.datetime(2024, 3, 31, 3, 30),
    ]
    f = Filter({"columnIndex": 1, "paras": ["<", "1711845000000"]}, berlin)
    dirty: list[tuple[int, str]] = []
    parts = isolate(
        batch(wall, pa.timestamp("us")), f.apply, lambda at, _r, e: dirty.append((at, e.reason))
    )
    kept = pa.Table.from_batches(parts).column(1).to_pylist()
    assert kept == [dt.datetime(2024, 3, 31, 1, 30), dt.datetime(2024, 3, 31, 3, 30)]
    assert [(at, reason.split(" (the clock")[0]) for at, reason in dirty] == [
        (1, "column v: value 2024-03-31 02:30:00 does not exist in time zone Europe/Berlin"),
        (2, "column v: value 2024-10-27 02:30:00 is ambiguous in time zone Europe/Berlin"),
    ]
