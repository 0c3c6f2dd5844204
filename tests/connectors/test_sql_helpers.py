"""The examples in the shared SQL helper's docstrings hold (jdbc URLs, key ranges, statements)."""

import doctest

import pytest

from tidesync.connectors import sql as _sql
from tidesync.connectors.sql import conn


@pytest.mark.parametrize("module", [_sql, conn])
def test_sql_helper_docstring_examples(module: object) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
