"""The examples in the shared SQL helper's docstrings hold (jdbc URLs, key ranges, statements)."""

import doctest

from tidesync.connectors import _sql


def test_sql_helper_docstring_examples() -> None:
    result = doctest.testmod(_sql, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
