"""Partition spelling shared by every partitioned writer: ``ds=${bizdate}/hh=${hh}`` parsed, typed, turned into a path, and aged for lifecycles."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_partition(text: str) -> list[tuple[str, str]]:
    """``ds=20161114`` or ``pt=20150101/type=1`` (``,`` also separates levels, as in odpswriter)
    -> ``[("pt", "20150101"), ("type", "1")]``. Raises ValueError with the fix."""
    levels = [s.strip() for s in re.split(r"[/,]", text.strip().strip("/")) if s.strip()]
    if not levels:
        raise ValueError("is empty; write column=value, e.g. ds=20161114")
    out: list[tuple[str, str]] = []
    for level in levels:
        if "=" not in level:
            raise ValueError(
                f"{level!r} names no partition column; write column=value, e.g. ds={level} "
                "(several levels: pt=20150101/type=1)"
            )
        key, value = (s.strip() for s in level.split("=", 1))
        if not _KEY.match(key):
            raise ValueError(
                f"{key!r} is not a partition column name (letters, digits and _, not starting "
                "with a digit), e.g. ds=20161114"
            )
        if not value:
            raise ValueError(f"{key}= has no value, e.g. {key}=20161114")
        if "${" in value or "$[" in value:
            raise ValueError(f"{key}={value} holds a parameter that was not substituted")
        if any(key == k for k, _ in out):
            raise ValueError(f"names {key!r} twice")
        out.append((key, value))
    return out


def partition_path(partition: Sequence[tuple[str, Any]]) -> str:
    """``ds=20161114/type=1``: the folders of a Hive-style partition. Readers (tidesync's,
    pyarrow, DuckDB, Spark) decode ``%XX`` in a folder name, so a value they would decode into
    another (``a%2Fb`` into ``a/b``) has its ``%`` written ``%25``; every other value is
    written as it is, so the folders of existing tables keep their names."""
    return "/".join(f"{k}={_folder_value(str(v))}" for k, v in partition)


def _folder_value(v: str) -> str:
    return v.replace("%", "%25") if unquote(v) != v else v


def partition_date(value: Any) -> date | None:
    """The date a partition value stands for (``20161114``, ``2016-11-14``, a date), or None."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    s = str(value).strip()
    # yyyymmdd only with its 8 digits: strptime reads 2016114 as 2016-11-04, which could as
    # well be 2016-01-14 (a lifecycle would drop that partition by a guessed date)
    for fmt in ("%Y%m%d", "%Y-%m-%d") if len(s) == 8 and s.isdigit() else ("%Y-%m-%d",):
        try:
            return datetime.strptime(s, fmt).date()
        except ValueError:
            continue
    return None


def expired(value: Any, bizdate: date, days: int) -> bool:
    """True when a partition dated ``value`` is older than ``days`` days before ``bizdate``."""
    d = partition_date(value)
    return d is not None and d < bizdate - timedelta(days=days)


def partition_value(text: str, t: pa.DataType) -> Any:
    """The partition parameter's text as a value of the column's type (``20161114`` reads as a
    date for a date column). Raises ValueError."""
    if pa.types.is_date(t):
        d = partition_date(text)
        if d is None:
            raise ValueError(f"{text!r} is not a date such as 20161114")
        return d
    return pa.scalar(text).cast(t).as_py()
