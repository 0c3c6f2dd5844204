"""The scheduling-parameter language: golden cases in golden/params.yaml, API behaviour here."""

from __future__ import annotations

import copy
import doctest
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

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
    return RunTime.of(case["cyctime"], case.get("bizdate"), force=True)


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


# --- time arguments -----------------------------------------------------------------------------

PLUS8 = timezone(timedelta(hours=8))

# Every accepted form, as users type it. The short ones are what strptime misread:
# '20161115' as 2016-01-01 01:05, '201911062315' as 2019-11-06 23:01:05.
TIMES_ACCEPTED = [
    ("20161115", datetime(2016, 11, 15)),
    ("2016111523", datetime(2016, 11, 15, 23)),
    ("201911062315", datetime(2019, 11, 6, 23, 15)),
    ("201911060045", datetime(2019, 11, 6, 0, 45)),
    ("20161115231500", datetime(2016, 11, 15, 23, 15)),
    ("20240229235959", datetime(2024, 2, 29, 23, 59, 59)),
    (" 20251101103015 ", datetime(2025, 11, 1, 10, 30, 15)),
    ("2016-11-15", datetime(2016, 11, 15)),
    ("2016-11-15 23:15", datetime(2016, 11, 15, 23, 15)),
    ("2016-11-15 23:15:07", datetime(2016, 11, 15, 23, 15, 7)),
    ("2016-11-15T23:15", datetime(2016, 11, 15, 23, 15)),
    ("2016-11-15T23:15:07", datetime(2016, 11, 15, 23, 15, 7)),
    ("2016-11-15T23:15:07Z", datetime(2016, 11, 15, 23, 15, 7, tzinfo=UTC)),
    ("2016-11-15t23:15:07z", datetime(2016, 11, 15, 23, 15, 7, tzinfo=UTC)),
    ("2016-11-15T23:15:07+08:00", datetime(2016, 11, 15, 23, 15, 7, tzinfo=PLUS8)),
    ("2016-11-15 23:15+0800", datetime(2016, 11, 15, 23, 15, tzinfo=PLUS8)),
    ("2016-11-15T23:15:07+08", datetime(2016, 11, 15, 23, 15, 7, tzinfo=PLUS8)),
    (
        "2016-11-15T23:15:07-05:30",
        datetime(2016, 11, 15, 23, 15, 7, tzinfo=timezone(-timedelta(hours=5, minutes=30))),
    ),
    (20161115, datetime(2016, 11, 15)),
    (date(2016, 11, 15), datetime(2016, 11, 15)),
    (datetime(2016, 11, 15, 23, 15, 7, 999), datetime(2016, 11, 15, 23, 15, 7)),
]

TIMES_REFUSED = [
    ("2016111", "(7 digits)"),
    ("201611152", "(9 digits)"),
    ("20161115231", "(11 digits)"),
    ("2016111523150", "(13 digits)"),
    ("201611152315000", "(15 digits)"),
    ("2016", "(4 digits)"),
    ("", "is not a time"),
    ("yesterday", "is not a time"),
    ("2016-1-5", "is not a time"),
    ("2016-11-15T23", "is not a time"),
    ("2016-11-15 23:15:07.123", "is not a time"),
    ("2016/11/15", "is not a time"),
    ("20161115 2315", "is not a time"),
    ("2016-11-15+08:00", "is not a time"),  # an offset needs a time of day
    ("20161115231500+0800", "is not a time"),  # offsets only on the ISO forms
    ("２０１６１１１５", "is not a time"),  # full-width digits
    ("20161315", "month must be in 1..12"),
    ("20160230", "day is out of range"),
    ("2016111524", "hour must be in 0..23"),
    ("201611152360", "minute must be in 0..59"),
    ("2016-11-15 25:00", "hour must be in 0..23"),
    ("2016-11-15T23:15:07+24:00", "zone offset +24:00 is out of range"),
    (1.5, "is not a time"),
    (True, "is not a time"),
]

DATES_ACCEPTED = [
    ("20161114", date(2016, 11, 14)),
    ("2016-11-14", date(2016, 11, 14)),
    (" 20240229 ", date(2024, 2, 29)),
    (20161114, date(2016, 11, 14)),
    (date(2016, 11, 14), date(2016, 11, 14)),
    (datetime(2016, 11, 14, 8), date(2016, 11, 14)),
]

DATES_REFUSED = [
    ("2016111", "(7 digits)"),  # strptime read it as 2016-11-01
    ("201611", "(6 digits)"),
    ("201611140", "(9 digits)"),
    ("2016111400", "it has a time of day"),
    ("20161114000000", "it has a time of day"),
    ("2016-11-14 00:00", "it has a time of day"),
    ("2016-1-4", "is not a date"),
    ("2016/11/14", "is not a date"),
    ("yesterday", "is not a date"),
    ("20250229", "day is out of range"),
    ("2016-11-32", "day is out of range"),
    (1.5, "is not a date"),
]


@pytest.mark.parametrize(("value", "expected"), TIMES_ACCEPTED)
def test_time_argument_accepted_forms(value, expected):
    got = params.parse_time_arg(value)
    assert got == expected and got.tzinfo == expected.tzinfo


@pytest.mark.parametrize(("value", "expected"), DATES_ACCEPTED)
def test_date_argument_accepted_forms(value, expected):
    assert params.parse_date_arg(value) == expected


@pytest.mark.parametrize(
    ("read", "value", "reason"),
    [(params.parse_time_arg, *case) for case in TIMES_REFUSED]
    + [(params.parse_date_arg, *case) for case in DATES_REFUSED],
)
def test_refused_forms_name_value_reason_and_accepted_forms(read, value, reason):
    with pytest.raises(ValueError) as info:
        read(value)
    message = str(info.value)
    assert message.startswith(repr(value)) and reason in message
    if read is params.parse_time_arg:
        assert message.endswith("accepted: " + params.TIME_FORMS)
        for form in ("YYYYMMDD,", "YYYYMMDDHH,", "YYYYMMDDHHMM,", "YYYYMMDDHHMMSS,", "YYYY-MM-DD"):
            assert form in message
    else:
        assert message.endswith("accepted: YYYYMMDD or YYYY-MM-DD, e.g. 20161114 or 2016-11-14")


# --- RunTime ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [c for c in TIMES_ACCEPTED if not c[1].tzinfo])
def test_runtime_reads_every_naive_time_form(value, expected):
    assert RunTime.of(value).cyctime == expected


def test_runtime_bizdate_defaults_to_day_before_cyctime_day():
    assert RunTime.of("20161115000000").bizdate == date(2016, 11, 14)
    assert RunTime.of("20161115").bizdate == date(2016, 11, 14)


def test_runtime_default_bizdate_crosses_year_and_leap_day():
    assert RunTime.of("20250101000000").bizdate == date(2024, 12, 31)
    assert RunTime.of("20240301235959").bizdate == date(2024, 2, 29)


@pytest.mark.parametrize(("value", "expected"), DATES_ACCEPTED)
def test_runtime_bizdate_alone_sets_cyctime_to_next_midnight(value, expected):
    rt = RunTime.of(bizdate=value)
    assert rt == RunTime(
        datetime.combine(expected + timedelta(days=1), datetime.min.time()), expected
    )


def test_runtime_bizdate_alone_crosses_month_year_and_leap_day():
    assert RunTime.of(bizdate="20240228").cyctime == datetime(2024, 2, 29)
    assert RunTime.of(bizdate="20240229").cyctime == datetime(2024, 3, 1)
    assert RunTime.of(bizdate="20161231").cyctime == datetime(2017, 1, 1)


@pytest.mark.parametrize(
    ("cyctime", "bizdate"),
    [("20161115", "20161114"), ("20161115235959", "2016-11-14"), ("20170101", "20161231")],
)
def test_runtime_both_given_may_agree(cyctime, bizdate):
    rt = RunTime.of(cyctime, bizdate)
    assert rt.bizdate == rt.cyctime.date() - timedelta(days=1)


@pytest.mark.parametrize(
    ("cyctime", "bizdate"), [("20161115", "20161115"), ("20161115103000", "20161110")]
)
def test_runtime_both_given_must_agree_or_be_forced(cyctime, bizdate):
    with pytest.raises(ConfigError) as info:
        RunTime.of(cyctime, bizdate)
    message = str(info.value)
    assert f"bizdate {bizdate} and cyctime" in message and "disagree" in message
    assert "the business date of that cyctime is 20161114" in message
    assert "--force-times" in message
    forced = RunTime.of(cyctime, bizdate, force=True)
    assert forced.bizdate == date(2016, 11, int(bizdate[-2:]))
    assert forced.cyctime == params.parse_time_arg(cyctime)


def test_runtime_converts_a_cyctime_with_offset_to_the_job_zone():
    given = "2016-11-15T00:30:00+08:00"
    assert RunTime.of(given, tz="UTC") == RunTime(
        datetime(2016, 11, 14, 16, 30), date(2016, 11, 13)
    )
    assert RunTime.of(given, tz="Asia/Shanghai").cyctime == datetime(2016, 11, 15, 0, 30)
    aware = datetime(2025, 11, 1, 10, 30, 15, 999, tzinfo=PLUS8)
    assert RunTime.of(aware, tz="Europe/Berlin").cyctime == datetime(2025, 11, 1, 3, 30, 15)


def test_runtime_reads_date_as_midnight():
    assert RunTime.of(date(2025, 11, 1)).cyctime == datetime(2025, 11, 1)


def test_runtime_none_is_now_to_the_second():
    before = datetime.now().replace(microsecond=0)
    rt = RunTime.of()
    after = datetime.now()
    assert before <= rt.cyctime <= after
    assert rt.cyctime.microsecond == 0
    assert rt.bizdate == rt.cyctime.date() - timedelta(days=1)


def test_runtime_now_is_read_in_the_job_zone():
    for zone in ("Pacific/Kiritimati", "Pacific/Pago_Pago"):  # UTC+14 and UTC-11
        before = datetime.now(ZoneInfo(zone)).replace(tzinfo=None, microsecond=0)
        rt = RunTime.of(tz=zone)
        after = datetime.now(ZoneInfo(zone)).replace(tzinfo=None)
        assert before <= rt.cyctime <= after


def test_runtime_out_of_range_is_a_config_error():
    with pytest.raises(ConfigError, match="bizdate: '99991231' is out of range"):
        RunTime.of(bizdate="99991231")
    with pytest.raises(ConfigError, match="cyctime: '00010101' is out of range"):
        RunTime.of("00010101")


def test_runtime_gmtdate_is_cyctime_day():
    assert RunTime.of("20251101103000").gmtdate == date(2025, 11, 1)


def test_runtime_is_frozen():
    rt = RunTime.of("20251101103000")
    with pytest.raises(AttributeError):
        rt.bizdate = date(2020, 1, 1)  # type: ignore[misc]


@pytest.mark.parametrize(("text", "reason"), TIMES_REFUSED)
def test_runtime_bad_cyctime_names_value_and_format(text, reason):
    with pytest.raises(ConfigError) as info:
        RunTime.of(text)
    message = str(info.value)
    assert message.startswith(f"cyctime: {text!r}") and reason in message
    assert "YYYYMMDDHHMMSS" in message


@pytest.mark.parametrize(("text", "reason"), DATES_REFUSED)
def test_runtime_bad_bizdate_names_value_and_format(text, reason):
    with pytest.raises(ConfigError) as info:
        RunTime.of("20251101103000", text)
    message = str(info.value)
    assert message.startswith(f"bizdate: {text!r}") and reason in message
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
    ("read", "text", "fragment"),
    [
        (parse_assignments, "filename", "parameters: item 'filename' is not name=value"),
        (parse_assignments, "=1", "'' is not a parameter name"),
        (parse_assignments, "1x=2", "'1x' is not a parameter name"),
        (parse_assignments, "a-b=2", "'a-b' is not a parameter name"),
        (parse_assignments, "a=1 a=2", "parameter 'a' is set twice"),
        (parse_assignments, "a='x", "quote ' at position 2 is not closed"),
        (
            params.parse_datax_properties,
            "-Dname=x extra",
            "-p: item 'extra' does not start with -D; write e.g. -Dbizdate=20161115",
        ),
        (params.parse_datax_properties, "-Dname", "item '-Dname' is not -Dname=value"),
        (params.parse_datax_properties, "-D1x=2", "'1x' is not a parameter name"),
        (params.parse_datax_properties, "-Da=1 -Da=2", "parameter 'a' is set twice"),
        (params.parse_datax_properties, "-Dsql='select 1", "quote ' at position 6 is not closed"),
    ],
)
def test_parse_assignments_rejects_bad_item(read, text, fragment):
    with pytest.raises(ConfigError) as info:
        read(text)
    assert fragment in str(info.value)
    where = "-p: " if read is params.parse_datax_properties else "parameters: "
    assert all(line.startswith(where) for line in info.value.problems)


def test_parse_assignments_reports_every_bad_item_under_where():
    with pytest.raises(ConfigError) as info:
        parse_assignments("a b=1 c", where="nodes.daily.parameters")
    assert len(info.value.problems) == 2
    assert all(p.startswith("nodes.daily.parameters: item") for p in info.value.problems)


def test_parse_datax_properties_reads_several_d_items():
    text = "-Dbizdate=20161115 -Dname=x  -Dsql='select 1' -Dexpr=$[yyyymmdd -1] -Dkv=a=b"
    assert params.parse_datax_properties(text) == {
        "bizdate": "20161115",
        "name": "x",
        "sql": "select 1",
        "expr": "$[yyyymmdd -1]",
        "kv": "a=b",
    }


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
        "parse_time_arg",
        "local_instant",
        "parse_date_arg",
        "parse_datax_properties",
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


# -- wall times to instants ---------------------------------------------------------------------


def test_local_instant_reads_a_wall_time_in_the_zone() -> None:
    t = params.local_instant(datetime(2026, 7, 1, 12), "Europe/Berlin")
    assert t == datetime(2026, 7, 1, 10, tzinfo=UTC)
    aware = datetime(2026, 10, 25, 2, 30, tzinfo=timezone(timedelta(hours=1)))
    assert params.local_instant(aware, "Europe/Berlin") is aware


def test_local_instant_refuses_a_wall_time_the_clock_shows_twice() -> None:
    with pytest.raises(ValueError) as e:
        params.local_instant(datetime(2026, 10, 25, 2, 30), "Europe/Berlin")
    assert str(e.value).startswith("2026-10-25 02:30:00 is ambiguous in Europe/Berlin")
    assert "+02:00 and at +01:00" in str(e.value)
    assert "2026-10-25T02:30:00+02:00" in str(e.value)


def test_local_instant_refuses_a_wall_time_the_clock_skips() -> None:
    with pytest.raises(ValueError, match=r"^2026-03-29 02:30:00 does not exist in Europe/Berlin"):
        params.local_instant(datetime(2026, 3, 29, 2, 30), ZoneInfo("Europe/Berlin"))
    # the minutes either side of both changes are single instants
    for wall, utc in (
        (datetime(2026, 3, 29, 1, 59, 59), datetime(2026, 3, 29, 0, 59, 59)),
        (datetime(2026, 3, 29, 3, 0), datetime(2026, 3, 29, 1, 0)),
        (datetime(2026, 10, 25, 1, 59, 59), datetime(2026, 10, 24, 23, 59, 59)),
        (datetime(2026, 10, 25, 3, 0), datetime(2026, 10, 25, 2, 0)),
    ):
        assert params.local_instant(wall, "Europe/Berlin") == utc.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("cyctime", "expr", "expected"),
    [
        # Berlin skips 02:00-03:00 on 2025-03-30; an hourly node's 03:00 instance took in
        # the skipped 02:00 slot: its previous hour starts at 01:00, not at the skipped 02:00
        ("20250330030000", "$[hh24:mi-1/24]", "01:00"),
        ("20250330030000", "$[hh24:mi-15/24/60]", "01:45"),
        # a 2-hourly node's 02:00 runs at 03:00 (moved by the gap): the 04:00 starts there
        ("20250330040000", "$[hh24:mi-2/24]", "03:00"),
        ("20250330013000", "$[hh24:mi+1/24]", "03:30"),
        # times that exist, or that occur twice, keep wall-clock arithmetic, as whole days do
        ("20250330040000", "$[hh24:mi-1/24]", "03:00"),
        ("20251026030000", "$[hh24:mi-1/24]", "02:00"),
        ("20251026040000", "$[hh24:mi-2/24]", "02:00"),
        ("20250331023000", "$[yyyymmdd hh24:mi-1]", "20250330 02:30"),
    ],
)
def test_an_offset_never_lands_on_a_skipped_wall_time(
    cyctime: str, expr: str, expected: str
) -> None:
    rt = RunTime.of(cyctime, tz="Europe/Berlin")
    assert substitute(expr, rt, {}, where="x") == expected
