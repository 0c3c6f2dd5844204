"""The one table of DataX/DataWorks keys tidesync knows and deliberately ignores."""

from __future__ import annotations

import pytest

from tidesync.spec.ignored import IGNORED, info_line, why_ignored


@pytest.mark.parametrize(
    "path",
    [
        "core",
        "job.setting.jvmOption",
        "configuration.setting.jvmOption",
        "setting.executeMode",
        "job.content[0].reader.parameter.fetchSize",
        "steps[1].parameter.batchSize",
        "configuration.writer.parameter.envType",
    ],
)
def test_table_entries_are_found_in_every_shape(path: str) -> None:
    assert why_ignored(path) is not None


@pytest.mark.parametrize(
    "path",
    [
        "job.content[0].reader.parameter.wehre",  # a typo is never ignored
        "job.content[0].reader.parameter.connection[0].fetchSize",  # only direct parameters
        "parameter.fetchSize",  # a top-level key is not a connector's parameter
        "job.core",  # core sits beside job, not in it
        "job.setting.speed.chanel",
    ],
)
def test_other_paths_are_not_ignored(path: str) -> None:
    assert why_ignored(path) is None


def test_every_entry_says_why() -> None:
    assert all(why.strip() for why in IGNORED.values())


def test_the_info_line_groups_keys_by_reason_on_one_line() -> None:
    line = info_line(
        [
            "job.content[0].reader.parameter.fetchSize",
            "job.setting.jvmOption",
            "job.content[1].reader.parameter.fetchSize",
        ]
    )
    assert "\n" not in line
    fetch = IGNORED["parameter.fetchSize"]
    assert (
        f"job.content[0].reader.parameter.fetchSize, job.content[1].reader.parameter.fetchSize "
        f"({fetch})" in line
    )
    assert f"job.setting.jvmOption ({IGNORED['setting.jvmOption']})" in line
    assert info_line([]) == ""
