"""The scheduling-parameter language: golden cases in golden/params.yaml, API behaviour here."""

from __future__ import annotations

import copy
import doctest
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from tidesync.errors import ConfigError
from tidesync.spec import params
from tidesync.spec.params import (
    RunTime,
    evaluate,
    parse_assignments,
    resolve_params,
    substitute,
    substitute_tree,
)

GOLDEN = yaml.safe_load((Path(__file__).parent / "golden" / "params.yaml").read_text("utf-8"))


def _cases(section: str) -> list:
    return [pytest.param(case, id=case["name"]) for case in GOLDEN[section]]


def _rt(case: dict) -> RunTime:
    return RunTime.of(case["cyctime"], case.get("bizdate"))


# --- golden -------------------------------------------------------------------------------------


def test_golden_names_are_unique():
    names = [c["name"] for section in ("expand", "errors") for c in GOLDEN[section]]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", _cases("expand"))
def test_golden_expansion(case):
    assert substitute(case["expr"], _rt(case), case.get("params")) == case["expected"]


@pytest.mark.parametrize("case", _cases("errors"))
def test_golden_error(case):
    with pytest.raises(ConfigError) as info:
        substitute(case["expr"], _rt(case), case.get("params"), where=case.get("where", ""))
    assert len(info.value.problems) == 1
    for fragment in case["error"]:
        assert fragment in str(info.value)


# --- RunTime ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20251101103015", datetime(2025, 11, 1, 10, 30, 15)),
        ("202511011030", datetime(2025, 11, 1, 10, 30)),
        ("20251101", datetime(2025, 11, 1)),
        ("2025-11-01 10:30:15", datetime(2025, 11, 1, 10, 30, 15)),
        ("2025-11-01T10:30", datetime(2025, 11, 1, 10, 30)),
        ("2025-11-01", datetime(2025, 11, 1)),
        (" 20251101103015 ", datetime(2025, 11, 1, 10, 30, 15)),
        (20251101, datetime(2025, 11, 1)),
    ],
)
def test_runtime_reads_cyctime_formats(text, expected):
    assert RunTime.of(text).cyctime == expected


def test_runtime_bizdate_defaults_to_day_before_cyctime_day():
    assert RunTime.of("20161115000000").bizdate == date(2016, 11, 14)


def test_runtime_default_bizdate_crosses_year_and_leap_day():
    assert RunTime.of("20250101000000").bizdate == date(2024, 12, 31)
    assert RunTime.of("20240301235959").bizdate == date(2024, 2, 29)


@pytest.mark.parametrize(
    "text", ["20251020", "2025-10-20", date(2025, 10, 20), datetime(2025, 10, 20, 8)]
)
def test_runtime_reads_bizdate(text):
    assert RunTime.of("20251101103000", text).bizdate == date(2025, 10, 20)


def test_runtime_keeps_wall_time_of_aware_datetime_and_drops_microseconds():
    aware = datetime(2025, 11, 1, 10, 30, 15, 999, tzinfo=timezone(timedelta(hours=8)))
    assert RunTime.of(aware).cyctime == datetime(2025, 11, 1, 10, 30, 15)


def test_runtime_reads_date_as_midnight():
    assert RunTime.of(date(2025, 11, 1)).cyctime == datetime(2025, 11, 1)


def test_runtime_none_is_now_to_the_second():
    before = datetime.now().replace(microsecond=0)
    rt = RunTime.of()
    after = datetime.now()
    assert before <= rt.cyctime <= after
    assert rt.cyctime.microsecond == 0
    assert rt.bizdate == rt.cyctime.date() - timedelta(days=1)


def test_runtime_gmtdate_is_cyctime_day():
    assert RunTime.of("20251101103000").gmtdate == date(2025, 11, 1)


def test_runtime_is_frozen():
    rt = RunTime.of("20251101103000")
    with pytest.raises(AttributeError):
        rt.bizdate = date(2020, 1, 1)  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    ["2025", "2025110110", "202511011030001", "x", "20251301", "20250230", "2025-11-01 25:00", 1.5],
)
def test_runtime_bad_cyctime_names_value_and_format(text):
    with pytest.raises(ConfigError) as info:
        RunTime.of(text)
    message = str(info.value)
    assert message.startswith(f"cyctime: {text!r}")
    assert "YYYYMMDDHHMMSS" in message


@pytest.mark.parametrize(
    "text", ["202510", "2025-10-32", "20251020103000", "yesterday", "20250229"]
)
def test_runtime_bad_bizdate_names_value_and_format(text):
    with pytest.raises(ConfigError) as info:
        RunTime.of("20251101103000", text)
    message = str(info.value)
    assert message.startswith(f"bizdate: {text!r}")
    assert "YYYYMMDD" in message


# --- substitute / evaluate ----------------------------------------------------------------------


def test_substitute_reports_every_problem_in_a_string():
    with pytest.raises(ConfigError) as info:
        substitute("${a} $[yyyymmdd-x] ${yyyymmdd} ${b}", RunTime.of("20251101"), where="w")
    assert [p.split(":")[0] for p in info.value.problems] == ["w", "w", "w"]
    assert "'${a}'" in info.value.problems[0]
    assert "'$[yyyymmdd-x]'" in info.value.problems[1]
    assert "'${b}'" in info.value.problems[2]


def test_substitute_without_where_has_no_prefix():
    with pytest.raises(ConfigError, match=r"^unknown parameter '\$\{a\}'"):
        substitute("${a}", RunTime.of("20251101"))


def test_substitute_accepts_none_params():
    assert substitute("$bizdate", RunTime.of("20251101"), None) == "20251031"


def test_evaluate_is_substitute_without_user_params():
    rt = RunTime.of("20251101103000")
    assert evaluate("$[yyyymmddhh24miss-10/24/60]", rt) == "20251101102000"
    assert evaluate("ds=${yyyy-mm-dd}/t=$cyctime", rt) == "ds=2025-10-31/t=20251101103000"


def test_evaluate_leaves_text_without_references():
    assert evaluate("yyyymmdd", RunTime.of("20251101")) == "yyyymmdd"


def test_evaluate_rejects_user_parameter_names():
    with pytest.raises(ConfigError, match="unknown parameter"):
        evaluate("${filename}", RunTime.of("20251101"))


# --- parse_assignments --------------------------------------------------------------------------


def test_parse_assignments_reads_dataworks_list():
    text = "filename=$[yyyymmddhh24mi] start_time=$[yyyymmddhh24miss-10/24/60]"
    assert parse_assignments(text) == {
        "filename": "$[yyyymmddhh24mi]",
        "start_time": "$[yyyymmddhh24miss-10/24/60]",
    }


def test_parse_assignments_keeps_spaces_inside_expressions():
    assert parse_assignments("ts=$[yyyy-mm-dd hh24:mi:ss]  d=${yyyy-mm-dd - 1}") == {
        "ts": "$[yyyy-mm-dd hh24:mi:ss]",
        "d": "${yyyy-mm-dd - 1}",
    }


def test_parse_assignments_removes_quotes():
    assert parse_assignments("""a='x y' b="it's" c=""") == {"a": "x y", "b": "it's", "c": ""}


def test_parse_assignments_keeps_equals_in_value():
    assert parse_assignments("cond=a=b") == {"cond": "a=b"}


def test_parse_assignments_accepts_newlines_and_empty_text():
    assert parse_assignments("a=1\n\tb=2\n") == {"a": "1", "b": "2"}
    assert parse_assignments("   ") == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("filename", "item 'filename' is not name=value"),
        ("=1", "'' is not a parameter name"),
        ("1x=2", "'1x' is not a parameter name"),
        ("a-b=2", "'a-b' is not a parameter name"),
        ("a=1 a=2", "parameter 'a' is set twice"),
        ("a='x", "quote ' at position 2 is not closed"),
    ],
)
def test_parse_assignments_rejects_bad_item(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_assignments(text)
    assert fragment in str(info.value)
    assert str(info.value).startswith("parameters: ")


def test_parse_assignments_reports_every_bad_item_under_where():
    with pytest.raises(ConfigError) as info:
        parse_assignments("a b=1 c", where="nodes.daily.parameters")
    assert len(info.value.problems) == 2
    assert all(p.startswith("nodes.daily.parameters: item") for p in info.value.problems)


# --- resolve_params -----------------------------------------------------------------------------


def test_resolve_params_evaluates_values():
    rt = RunTime.of("20251101103000")
    raw = {"start_time": "$[yyyymmddhh24miss-10/24/60]", "date": "${bdp.system.bizdate}", "k": "v"}
    assert resolve_params(raw, rt) == {
        "start_time": "20251101102000",
        "date": "20251031",
        "k": "v",
    }


def test_resolve_params_value_may_use_earlier_parameter():
    rt = RunTime.of("20251101103000")
    assert resolve_params({"d": "${yyyymmdd}", "path": "ds=${d}"}, rt) == {
        "d": "20251031",
        "path": "ds=20251031",
    }


@pytest.mark.parametrize("raw", [{"a": "${b}", "b": "1"}, {"a": "${a}"}])
def test_resolve_params_rejects_use_before_set(raw):
    with pytest.raises(
        ConfigError, match=r"params\.a: parameter '\$\{\w\}' is used before it is set"
    ):
        resolve_params(raw, RunTime.of("20251101"))


def test_resolve_params_reports_every_problem():
    raw = {"a": "${nope}", "b": "$[x]", "c d": "1"}
    with pytest.raises(ConfigError) as info:
        resolve_params(raw, RunTime.of("20251101"), where="nodes.n.params")
    assert [p.split(":")[0] for p in info.value.problems] == [
        "nodes.n.params.a",
        "nodes.n.params.b",
        "nodes.n.params.c d",
    ]


def test_resolve_params_takes_non_strings_as_text():
    assert resolve_params({"n": 3, "e": None}, RunTime.of("20251101")) == {"n": "3", "e": ""}  # type: ignore[dict-item]


def test_parameter_set_to_expression_is_used_in_job():
    rt = RunTime.of("20191106231500")
    values = resolve_params(parse_assignments("filename=$[yyyymmddhh24mi]"), rt)
    assert substitute("oss://bucket/${filename}.csv", rt, values) == "oss://bucket/201911062315.csv"


# --- substitute_tree ----------------------------------------------------------------------------


def test_substitute_tree_replaces_values_not_keys():
    tree = {"${yyyymmdd}": "${yyyymmdd}", "n": 3, "ok": True, "none": None, "f": 1.5}
    assert substitute_tree(tree, RunTime.of("20161115")) == {
        "${yyyymmdd}": "20161114",
        "n": 3,
        "ok": True,
        "none": None,
        "f": 1.5,
    }


def test_substitute_tree_walks_lists_and_tuples_and_leaves_input_alone():
    tree = {"job": {"content": [{"reader": {"path": ["/a/$bizdate", ("$gmtdate",)]}}]}}
    before = copy.deepcopy(tree)
    out = substitute_tree(tree, RunTime.of("20161115"))
    assert out == {"job": {"content": [{"reader": {"path": ["/a/20161114", ("20161115",)]}}]}}
    assert tree == before


def test_substitute_tree_uses_params():
    out = substitute_tree(["${f}", "${g}"], RunTime.of("20161115"), {"f": "1", "g": "2"})
    assert out == ["1", "2"]


def test_substitute_tree_reports_all_problems_with_key_paths():
    tree = {
        "job": {
            "content": [
                {
                    "reader": {"parameter": {"path": ["/ok/${yyyymmdd}", "/x/${nope}"]}},
                    "writer": {"parameter": {"where": "$[yyyymmdd-x]", "fileName": "${a"}},
                }
            ]
        }
    }
    with pytest.raises(ConfigError) as info:
        substitute_tree(tree, RunTime.of("20161115"))
    places = [p.split(": ")[0] for p in info.value.problems]
    assert places == [
        "job.content[0].reader.parameter.path[1]",
        "job.content[0].writer.parameter.where",
        "job.content[0].writer.parameter.fileName",
    ]


def test_substitute_tree_prefixes_path():
    with pytest.raises(ConfigError, match=r"^job\.x\[0\]: unknown parameter"):
        substitute_tree(["${nope}"], RunTime.of("20161115"), path="job.x")


def test_substitute_tree_scalar_string():
    assert substitute_tree("$bizdate", RunTime.of("20161115")) == "20161114"


# --- the module's contract ----------------------------------------------------------------------


def test_public_names():
    assert params.__all__ == [
        "RunTime",
        "evaluate",
        "substitute",
        "resolve_params",
        "parse_assignments",
        "substitute_tree",
    ]


def test_docstring_examples_hold():
    result = doctest.testmod(params, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
