"""The examples in the shared SQL helper's docstrings hold (jdbc URLs, key ranges, statements)."""

import doctest
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tidesync.connectors import sql as _sql
from tidesync.connectors.sql import conn


@pytest.mark.parametrize("module", [_sql, conn])
def test_sql_helper_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize(
    ("dialect", "value", "expected"),
    [
        (_sql.SQLITE, 5, "5"),
        (_sql.SQLITE, "2016-11-14 10:00:00", "'2016-11-14 10:00:00'"),
        (_sql.POSTGRESQL, "it's", "'it''s'"),
        (_sql.POSTGRESQL, "a\\b", "'a\\b'"),
        (_sql.MYSQL, "a\\'b", "'a\\\\''b'"),
    ],
)
def test_cursor_bounds_are_written_as_literals(
    dialect: object, value: object, expected: str
) -> None:
    from tidesync.connectors.sql.incremental import literal

    assert literal(dialect, value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("saved", "lower"),
    [
        (["9.50", "10.25"], "10.25"),  # decimals kept as text compare as numbers
        (["2016-11-14 10:00:00", "2016-11-14 09:00:00+00:00"], "2016-11-14 10:00:00"),
        ([3, 12], 12),
    ],
)
def test_the_next_lower_bound_is_the_largest_saved_value(
    saved: list[object], lower: object
) -> None:
    from tidesync.connectors.base import Context
    from tidesync.connectors.sql.incremental import Incremental

    ctx = Context()
    positions = {f"s{i}": {"source": "t", "column": "c", "value": v} for i, v in enumerate(saved)}
    positions["other"] = {"source": "u", "column": "c", "value": "99"}
    ctx._stored = (positions, 1)
    cursor = Incremental("c").cursor(ctx, "t", "c", drop=False, temporal=False)
    assert cursor.lower == lower and cursor.upper is None


EMPTY_BATCH_CHECK = """
import sys
import pyarrow as pa
from tidesync.connectors.sql.writer import empty_batch

schema = pa.schema(
    [
        ("id", pa.int64(), False),
        ("name", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("at", pa.timestamp("us", tz="UTC")),
        ("tags", pa.list_(pa.int32())),
        ("pair", pa.struct([("x", pa.int8())])),
        ("kind", pa.dictionary(pa.int32(), pa.string())),
    ],
    metadata={b"k": b"v"},
)
batch = empty_batch(schema)
assert batch.num_rows == 0 and batch.schema.equals(schema, check_metadata=True), batch.schema
assert "pandas" not in sys.modules, "making an empty batch imported pandas"
"""


def test_the_writers_empty_batch_keeps_the_schema_and_leaves_pandas_unimported() -> None:
    # a fresh interpreter: another test may already have imported pandas into this one
    src = str(Path(__file__).parents[2] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run(
        [sys.executable, "-c", EMPTY_BATCH_CHECK], env=env, capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
