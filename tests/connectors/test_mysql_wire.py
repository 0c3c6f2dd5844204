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
