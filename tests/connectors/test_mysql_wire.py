"""LOAD DATA text escaping, without a server."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tidesync.connectors.mysql.wire import escape


@pytest.mark.parametrize("kind", [pa.binary(), pa.large_binary(), pa.string()])
def test_escape_finds_special_bytes_only_within_the_arrays_own_values(kind: pa.DataType) -> None:
    whole = pa.array([b"a\tb", b"plain", None, b"c\\d", b"e\nf", b""], kind)
    assert escape(whole).to_pylist() == [
        _typed(b"a\\tb", kind),
        _typed(b"plain", kind),
        None,
        _typed(b"c\\\\d", kind),
        _typed(b"e\\nf", kind),
        _typed(b"", kind),
    ]
    clean = whole.slice(1, 2)  # its neighbours hold a tab and a backslash: they must not count
    assert escape(clean) is clean
    assert escape(whole.slice(4, 1)).to_pylist() == [_typed(b"e\\nf", kind)]
    assert escape(pa.array([], kind)).to_pylist() == []
    assert escape(pa.nulls(3, kind)).to_pylist() == [None] * 3


def _typed(v: bytes, kind: pa.DataType) -> bytes | str:
    return v.decode() if pa.types.is_string(kind) else v


@pytest.mark.parametrize(
    "bug",
    [KeyError(1205), IndexError("index 70000 is out of bounds"), TypeError("bad operand")],
)
def test_a_fault_of_our_own_code_is_fatal_and_says_so(bug: Exception) -> None:
    from tidesync.connectors.mysql.conn import Endpoint, translate
    from tidesync.errors import FatalError

    err = translate(bug, Endpoint("127.0.0.1", 3306, "test", "root"), "reader")
    assert type(err) is FatalError  # not retried: it would fail the same way again
    assert f"failed in tidesync itself ({type(bug).__name__}: " in str(err)
    assert "[1205]" not in str(err) and "lost" not in str(err)


def test_a_lost_connection_stays_retriable() -> None:
    from pymysql import err as myerr

    from tidesync.connectors.mysql.conn import Endpoint, translate
    from tidesync.errors import RetriableError

    ep = Endpoint("127.0.0.1", 3306, "test", "root")
    assert type(translate(myerr.InterfaceError(0, ""), ep)) is RetriableError
    assert type(translate(ConnectionResetError("peer reset"), ep)) is RetriableError
    lost = translate(myerr.OperationalError(2013, "Lost connection"), ep)
    assert type(lost) is RetriableError and "[2013]" in str(lost)
