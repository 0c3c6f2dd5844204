"""Property: `tidesync validate` answers any document with exit 0, or exit 2 and error lines
that name what is wrong; never a traceback. Random JSON-like documents and mutations of the
example jobs, a bounded number of each (a few seconds in all)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tidesync.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {
    p.relative_to(ROOT).as_posix(): json.loads(p.read_text())
    for p in sorted((ROOT / "examples").rglob("*.json"))
}
PARAMS = ["-p", "filename=201911062315", "-p", "db=test", "-p", "since=2019-11-06"]
# TIDESYNC_FUZZ_EXAMPLES=5000 runs a longer campaign locally
FUZZ = settings(
    max_examples=int(os.environ.get("TIDESYNC_FUZZ_EXAMPLES", "40")),
    deadline=None,
    database=None,
    derandomize=os.environ.get("CI") == "true",
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# keys a job file uses, so random documents reach past the first checks
WORDS = [
    "job",
    "content",
    "reader",
    "writer",
    "transformer",
    "name",
    "parameter",
    "setting",
    "speed",
    "channel",
    "concurrent",
    "byte",
    "mbps",
    "record",
    "throttle",
    "errorLimit",
    "percentage",
    "timezone",
    "type",
    "version",
    "configuration",
    "plugin",
    "steps",
    "stepType",
    "category",
    "order",
    "hops",
    "from",
    "to",
    "path",
    "column",
    "index",
    "value",
    "fileFormat",
    "encoding",
    "fieldDelimiter",
    "writeMode",
    "table",
    "where",
    "connection",
    "jdbcUrl",
    "querySql",
    "splitPk",
    "sliceRecordCount",
    "print",
    "core",
    "streamreader",
    "streamwriter",
    "txtfilereader",
    "sqlitewriter",
    "stream",
    "job",
]
KEYS = st.sampled_from(WORDS) | st.text(max_size=8)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from(WORDS)
    | st.text(max_size=20)
    | st.sampled_from(["0", "2%", "-1", "1e400", "${x}", "$[yyyymmdd]", "\x00", "utf\x008"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)
OBJECTS = st.dictionaries(KEYS, VALUES, max_size=5)
STEP = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["streamreader", "streamwriter", "txtfilereader", "stream"])
        | SCALARS
    },
    optional={"parameter": OBJECTS | VALUES, "plugin": SCALARS},
)
SPEED = st.fixed_dictionaries(
    {},
    optional={k: VALUES for k in ("channel", "concurrent", "byte", "mbps", "record", "throttle")},
)
ERROR_LIMIT = st.fixed_dictionaries({}, optional={"record": VALUES, "percentage": VALUES})
SETTING = st.fixed_dictionaries(
    {}, optional={"speed": SPEED | VALUES, "errorLimit": ERROR_LIMIT | VALUES, "timezone": VALUES}
)
# shaped like a job, so that the values reach the settings and the connectors
DATAX = st.fixed_dictionaries(
    {
        "job": st.fixed_dictionaries(
            {
                "content": st.lists(
                    st.fixed_dictionaries({"reader": STEP, "writer": STEP}), max_size=2
                )
            },
            optional={"setting": SETTING | VALUES},
        )
    }
)
SCRIPT = st.fixed_dictionaries(
    {"type": st.just("job"), "version": st.sampled_from(["1.0", "2.0", 3])},
    optional={
        "configuration": st.fixed_dictionaries(
            {}, optional={"reader": STEP, "writer": STEP, "setting": SETTING}
        ),
        "steps": st.lists(
            STEP.map(lambda s: {**s, "stepType": s.pop("name")}).flatmap(
                lambda s: st.fixed_dictionaries(
                    {"category": st.sampled_from(["reader", "writer"]) | SCALARS}
                ).map(lambda c: {**s, **c})
            ),
            max_size=3,
        ),
        "setting": SETTING,
        "order": st.fixed_dictionaries(
            {
                "hops": st.lists(
                    st.dictionaries(st.sampled_from(["from", "to"]), SCALARS | VALUES), max_size=2
                )
            }
        ),
    },
)
SHAPED = DATAX | SCRIPT | VALUES.map(lambda v: {"job": v})


def check_validate(tmp_path: Path, doc: Any, text: str | None = None) -> None:
    job = tmp_path / "job.json"
    job.write_text(text if text is not None else json.dumps(doc), encoding="utf-8")
    r = CliRunner().invoke(main, ["validate", str(job), *PARAMS])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception  # the traceback this test exists to rule out
    assert r.exit_code in (0, 2), (r.exit_code, r.output)
    if r.exit_code == 0:
        assert r.stdout.endswith("reader/writer pair)\n") or r.stdout.endswith("pairs)\n")
    else:
        lines = r.stderr.splitlines()
        assert lines and all(x.startswith("error: ") for x in lines), r.stderr


@FUZZ
@given(doc=VALUES | SHAPED)
def test_any_json_document_is_answered_without_a_traceback(tmp_path: Path, doc: Any) -> None:
    check_validate(tmp_path, doc)


def _paths(node: Any, at: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in ``node``: a key of an object or an index of a list."""
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*at, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*at, i))
    return out


MUTATIONS = st.sampled_from(["replace", "delete", "rename", "wrap", "nest"])


@st.composite
def mutated_example(draw: st.DrawFn) -> Any:
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    doc = json.loads(json.dumps(EXAMPLES[name]))
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        places = [p for p in _paths(doc) if p]
        if not places:
            break
        *parent_path, last = draw(st.sampled_from(places))
        parent = doc
        for k in parent_path:
            parent = parent[k]
        how = draw(MUTATIONS)
        if how == "replace":
            parent[last] = draw(VALUES)
        elif how == "delete":
            del parent[last]
        elif how == "rename" and isinstance(parent, dict):
            parent[draw(KEYS) + str(last)[1:]] = parent.pop(last)
        elif how == "wrap":
            parent[last] = [parent[last]]
        else:
            parent[last] = {str(last): parent[last]}
    return doc


@FUZZ
@given(doc=mutated_example())
def test_mutated_example_jobs_are_answered_without_a_traceback(tmp_path: Path, doc: Any) -> None:
    check_validate(tmp_path, doc)


@FUZZ
@given(
    text=st.sampled_from(sorted(EXAMPLES)).flatmap(lambda n: st.just(json.dumps(EXAMPLES[n]))),
    cut=st.integers(min_value=0, max_value=400),
    junk=st.text(max_size=5),
)
def test_damaged_job_text_is_answered_without_a_traceback(
    tmp_path: Path, text: str, cut: int, junk: str
) -> None:
    at = min(cut, len(text))
    check_validate(tmp_path, None, text[:at] + junk + text[at + len(junk) :])
