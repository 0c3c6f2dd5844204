"""The pgoutput decoder on messages made by hand: layouts a server sends only now and then."""

from __future__ import annotations

import datetime as dt
import struct

import pyarrow as pa
import pytest

from tidesync.connectors.postgresql.pgoutput import (
    Decoder,
    Multidimensional,
    Relation,
    Shape,
    Target,
    _added,
    _left_out,
    _replaced,
    _retyped,
    from_text,
)
from tidesync.connectors.sql.cdc import meta_fields

RELID = 16400


def _tuple(*values: bytes) -> bytes:
    return struct.pack("!h", len(values)) + b"".join(
        b"t" + struct.pack("!I", len(v)) + v for v in values
    )


def test_a_delete_beside_other_changes_never_walks_into_the_next_message() -> None:
    # a delete has only its old tuple; the decoder walked a "new" one past it, through the next
    # message: here a commit whose LSN's bytes read as a text value of 2 GiB, so that walk went
    # out of the buffer (on a server, one run in ten: LSNs and times are what they are)
    relation = (
        b"R" + struct.pack("!I", RELID) + b"public\0t\0" + b"d" + struct.pack("!h", 2)
        + b"\x01id\0" + struct.pack("!Ii", 23, -1) + b"\x00v\0" + struct.pack("!Ii", 25, -1)
    )  # fmt: skip
    begin = b"B" + struct.pack("!qqI", 1000, 0, 7)
    insert = b"I" + struct.pack("!I", RELID) + b"N" + _tuple(b"1", b"one")
    delete = b"D" + struct.pack("!I", RELID) + b"K" + _tuple(b"2", b"")
    commit_lsn = bytes([0x00, 0x74, 0x7F, 0xFF, 0xFF, 0xFF, 0x00, 0x00])  # 't', then 2**31 - 1
    commit = b"C\x00" + commit_lsn + struct.pack("!qq", 0, 0)
    messages = [relation, begin, insert, delete, commit]
    lsn = pa.array(["0/10"] * len(messages))
    data = pa.array(messages, pa.binary())
    schema = pa.schema([("id", pa.int32()), ("v", pa.string()), *meta_fields(False)])
    target = Target("t", {"id": pa.int32(), "v": pa.string()}, key=["id"])
    decoder = Decoder({("public", "t"): target}, schema, lambda arr, oid, typmod: arr)
    ci, _, _ = decoder.transactions(data)
    assert list(ci) == [4]
    out = decoder.decode(lsn, data, 5)
    assert out.batch is not None and not out.dirty
    rows = out.batch.select(["id", "v", "_op"]).to_pylist()
    assert rows == [{"id": 1, "v": "one", "_op": "c"}, {"id": 2, "v": "", "_op": "d"}]


def test_a_decoding_fault_is_not_reported_as_a_lost_connection() -> None:
    from tidesync.connectors.postgresql.conn import Endpoint, translate
    from tidesync.errors import FatalError, RetriableError

    ep = Endpoint((("127.0.0.1", 5432),), "test")
    bug = translate(IndexError("index 2147483757 is out of bounds"), ep)
    assert type(bug) is FatalError  # not retried: it would fail the same way again
    assert "failed in tidesync itself (IndexError: index 2147483757" in str(bug)
    assert "connection" not in str(bug)
    lost = translate(ConnectionResetError("peer reset"), ep)
    assert type(lost) is RetriableError
    assert str(lost).startswith("connection to PostgreSQL lost at 127.0.0.1:5432/test")


def test_a_time_of_24_00_is_a_row_without_arrow_form_not_a_failed_cast() -> None:
    # PostgreSQL's time allows 24:00:00; Arrow's time64 ends at 23:59:59.999999
    text = pa.array(["23:59:59.999999", "24:00:00", None, "00:00:00"])
    values, bad = from_text(text, pa.time64("us"), 1083, None)
    assert bad is not None and bad.to_pylist() == [False, True, False, False]
    assert values.to_pylist() == [dt.time(23, 59, 59, 999999), None, None, dt.time(0)]
    _, none = from_text(pa.array(["12:00:00"]), pa.time64("us"), 1083, None)
    assert none is None


def test_a_numeric_kept_as_text_spells_nan_and_infinity_as_the_batch_reader() -> None:
    text = pa.array(["NaN", "Infinity", None, "-Infinity", "1.50", "NaNa"])
    values, bad = from_text(text, pa.string(), 1700, None, numeric=True)
    assert bad is None
    assert values.to_pylist() == ["nan", "inf", None, "-inf", "1.50", "NaNa"]
    assert from_text(text, pa.string(), 25, None)[0].to_pylist() == text.to_pylist()  # text


@pytest.mark.parametrize("t", [pa.float32(), pa.float64()])
def test_a_float_array_is_a_list_of_floats(t: pa.DataType) -> None:
    text = pa.array(["{1.5,NaN,NULL}", None, "{}", "[0:1]={-Infinity,2}"])
    values, bad = from_text(text, pa.list_(t), 1022, None)
    assert bad is None and values.type == pa.list_(t)
    assert repr(values.to_pylist()) == "[[1.5, nan, None], None, [], [-inf, 2.0]]"
    with pytest.raises(Multidimensional):
        from_text(pa.array(["{{1,2},{3,4}}"]), pa.list_(t), 1022, None)


def _cols(*cols: bytes | None) -> bytes:
    """A tuple: bytes a text value, None a NULL, b"u" (alone) an unchanged TOASTed value."""
    out = struct.pack("!h", len(cols))
    for v in cols:
        if v is None:
            out += b"n"
        elif v == b"u":
            out += b"u"
        else:
            out += b"t" + struct.pack("!I", len(v)) + v
    return out


def test_nulls_unchanged_toast_values_and_full_columns_in_one_batch() -> None:
    # the tuple walk takes a column with a value in every row in one step and masks a column
    # with NULLs or unchanged TOAST values; both kinds of column side by side, a row image
    # with a NULL in the first and the last column, an update whose large value comes from the
    # old row (REPLICA IDENTITY FULL) and a delete whose old row has a NULL
    relation = (
        b"R" + struct.pack("!I", RELID) + b"public\0t\0" + b"f" + struct.pack("!h", 4)
        + b"\x01id\0" + struct.pack("!Ii", 23, -1) + b"\x01v\0" + struct.pack("!Ii", 25, -1)
        + b"\x01big\0" + struct.pack("!Ii", 25, -1) + b"\x01n\0" + struct.pack("!Ii", 20, -1)
    )  # fmt: skip
    begin = b"B" + struct.pack("!qqI", 1000, 0, 7)
    ins = [
        b"I" + struct.pack("!I", RELID) + b"N" + _cols(b"1", None, b"x" * 3000, b"10"),
        b"I" + struct.pack("!I", RELID) + b"N" + _cols(b"2", b"two", None, None),
        b"I" + struct.pack("!I", RELID) + b"N" + _cols(b"3", b"", b"", b"-5"),
    ]
    old = _cols(b"1", None, b"y" * 5000, b"10")
    upd = b"U" + struct.pack("!I", RELID) + b"O" + old + b"N" + _cols(b"1", b"one", b"u", b"11")
    delete = b"D" + struct.pack("!I", RELID) + b"O" + _cols(b"2", b"two", None, None)
    commit = b"C\x00" + struct.pack("!qqq", 2000, 2100, 0)
    messages = [relation, begin, *ins, upd, delete, commit]
    lsn = pa.array([f"0/{10 + i:X}" for i in range(len(messages))])
    data = pa.array(messages, pa.binary())
    types = {"id": pa.int32(), "v": pa.string(), "big": pa.string(), "n": pa.int64()}
    schema = pa.schema([*types.items(), *meta_fields(False)])
    target = Target("t", types, key=["id"])
    decoder = Decoder({("public", "t"): target}, schema, lambda arr, oid, typmod: arr)
    out = decoder.decode(lsn, data, len(messages))
    assert out.batch is not None and not out.dirty
    rows = out.batch.select(["id", "v", "big", "n", "_op", "_pos"]).to_pylist()
    assert rows == [
        {"id": 1, "v": None, "big": "x" * 3000, "n": 10, "_op": "c", "_pos": "0/C"},
        {"id": 2, "v": "two", "big": None, "n": None, "_op": "c", "_pos": "0/D"},
        {"id": 3, "v": "", "big": "", "n": -5, "_op": "c", "_pos": "0/E"},
        {"id": 1, "v": "one", "big": "y" * 5000, "n": 11, "_op": "u", "_pos": "0/F"},
        {"id": 2, "v": "two", "big": None, "n": None, "_op": "d", "_pos": "0/10"},
    ]
    assert list(out.commit_lsn) == [2000]


@pytest.mark.parametrize(
    ("logged", "attrs", "error"),
    [
        (["id", "a"], [(1, "id"), (2, "a")], None),
        (["id", "a"], [(1, "id"), (2, "a"), (3, "b")], None),  # b added since
        (["id", "gone", "v"], [(1, "id"), (2, None), (3, "v")], None),  # gone dropped since
        (["id", "a"], [(1, "id"), (2, "b")], "column a"),  # renamed
        (["id", "a", "v"], [(1, "id"), (2, "b"), (3, "v")], "column a"),  # renamed, in between
        (["id", "a"], [(1, "id"), (2, None), (3, "b")], "column a"),  # dropped + added, or not
        (["id", "a", "b"], [(1, "id"), (2, "b"), (3, "a")], "column b"),  # names swapped
        (["id", "a", "c"], [(1, "id"), (2, "c"), (3, "d")], "column a"),  # a->c, c->d
    ],
)
def test_a_description_in_the_log_against_the_planned_table(
    logged: list[str], attrs: list[tuple[int, str | None]], error: str | None
) -> None:
    rel = Relation(RELID, "public", "t", "d", [(0, c, 25, -1) for c in logged])
    read = {a for _, a in attrs if a is not None}
    why = _replaced(rel, Shape(RELID, attrs), read)
    assert (why is None) if error is None else (why is not None and error in why)
    assert "OID" in (_replaced(rel, Shape(RELID + 1, attrs), read) or "")


@pytest.mark.parametrize(
    ("logged", "attrs", "left"),
    [
        (["id", "a", "b"], [(1, "id"), (2, "a"), (3, "b")], []),
        (["id", "a"], [(1, "id"), (2, "a"), (3, "b")], []),  # b added since (or listed out)
        (["id", "b"], [(1, "id"), (2, "a"), (3, "b")], ["a"]),  # a left out by a column list
        (["id", "c"], [(1, "id"), (2, "a"), (3, "b"), (4, "c")], ["a", "b"]),
        (["id", "b"], [(1, "id"), (2, None), (3, "b")], []),  # a dropped attribute
        (["b"], [(1, "id"), (2, "b")], ["id"]),
    ],
)
def test_read_columns_a_description_in_the_log_leaves_out(
    logged: list[str], attrs: list[tuple[int, str | None]], left: list[str]
) -> None:
    rel = Relation(RELID, "public", "t", "d", [(0, c, 25, -1) for c in logged])
    read = {a for _, a in attrs if a is not None}
    assert _left_out(rel, Shape(RELID, attrs), read) == left
    assert _left_out(rel, Shape(RELID, attrs), read - {"a"}) == [c for c in left if c != "a"]


@pytest.mark.parametrize(
    ("logged", "now", "changed"),
    [
        ((23, -1), (23, -1, "integer"), False),
        ((23, -1), (20, -1, "bigint"), False),
        ((1043, 9), (25, -1, "text"), False),
        ((1700, 393222), (1700, -1, "numeric"), False),
        ((16, -1), (25, -1, "text"), True),  # t, not true
        ((700, -1), (701, -1, "double precision"), True),  # 1.1, not 1.100000023841858
        ((1042, 8), (1042, 10, "character(6)"), True),  # padded to 4, not 6
        ((1114, -1), (1114, 0, "timestamp(0) without time zone"), True),  # rounded since
    ],
)
def test_a_column_type_in_the_log_against_the_planned_one(
    logged: tuple[int, int], now: tuple[int, int, str], changed: bool
) -> None:
    rel = Relation(RELID, "public", "t", "d", [(1, "id", 23, -1), (0, "v", *logged)])
    shape = Shape(RELID, [(1, "id"), (2, "v")], {"id": (23, -1, "integer"), "v": now})
    why = _retyped(rel, shape, {"id", "v"}, lambda oid, typmod: f"<{oid}>")
    assert (why is not None and f"logged as <{logged[0]}> and is {now[2]}" in why) == changed
    assert (why is None) != changed
    assert _retyped(rel, shape, {"id"}, lambda oid, typmod: "") is None  # v not read


@pytest.mark.parametrize(
    ("logged", "attrs", "added"),
    [
        (["id", "a"], [(1, "id"), (2, "a")], None),
        (["id", "a", "b"], [(1, "id"), (2, "a")], "b"),  # b added after the plan
        (["id", "a", "b", "c"], [(1, "id"), (2, "a"), (3, None)], "c"),
        (["id", "gone"], [(1, "id"), (2, None)], None),  # gone dropped since
        (["id", "b"], [(1, "id"), (2, "a")], None),  # a renamed to b: _replaced's to tell
    ],
)
def test_a_column_added_after_the_plan(
    logged: list[str], attrs: list[tuple[int, str | None]], added: str | None
) -> None:
    rel = Relation(RELID, "public", "t", "d", [(0, c, 25, -1) for c in logged])
    assert _added(rel, Shape(RELID, attrs)) == added
