"""The connector registry: built-in kinds, DataX aliases, entry-point plugins, clear refusals."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidesync.connectors import base
from tidesync.errors import ConfigError

PLUGIN = """
import pyarrow as pa
from tidesync.connectors import base

class Reader(base.Reader):
    def schema(self):
        return pa.schema([("x", pa.int64())])
    def splits(self, n):
        return [base.Split(0, "all")]
    def read(self, split):
        yield pa.record_batch([pa.array([1, 2, 3])], names=["x"])
"""


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An installed distribution (a dist-info on sys.path) whose entry point names a connector."""
    (tmp_path / "ts_echo_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = tmp_path / "ts_echo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: ts-echo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        textwrap.dedent("""\
            [tidesync.connectors]
            echo = ts_echo_plugin
        """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    base._plugins.cache_clear()
    yield "echo"
    base._plugins.cache_clear()
    sys.modules.pop("ts_echo_plugin", None)


def test_a_plugin_installed_under_the_entry_point_group_is_loaded(plugin: str) -> None:
    cls = base.load(plugin, "reader")
    assert cls.__module__ == "ts_echo_plugin" and issubclass(cls, base.Reader)
    assert plugin in {c["kind"] for c in base.catalog()}


def test_a_plugin_without_the_side_asked_for_is_refused(plugin: str) -> None:
    with pytest.raises(ConfigError, match=r"^w: echo cannot be used as a writer$"):
        base.load(plugin, "writer", "w")


@pytest.mark.parametrize(
    ("name", "side", "kind"),
    [
        ("mysqlreader", "reader", "mysql"),
        ("txtfilewriter", "writer", "file"),
        ("PostgreSQL", "reader", "postgresql"),
        ("duckdbwriter", "writer", "duckdb"),
        ("lake", "writer", "lake"),
    ],
)
def test_built_in_kinds_and_datax_names_resolve(name: str, side: base.Side, kind: str) -> None:
    base._plugins.cache_clear()
    assert base.resolve(name, side)[0] == kind
    # without a look at the installed packages' entry points (some 20 ms of every start-up)
    assert base._plugins.cache_info().misses == 0


def test_an_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(
        ConfigError,
        match=r"job.content\[0\].reader.name: unknown reader 'mysqlreadr'.*did you mean 'mysqlreader'",
    ):
        base.resolve("mysqlreadr", "reader", "job.content[0].reader.name")


def test_a_reader_name_in_the_writer_place_is_refused() -> None:
    with pytest.raises(ConfigError, match="is a reader, but it stands here as the writer"):
        base.resolve("mysqlreader", "writer", "w")
