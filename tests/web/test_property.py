"""Property test of /api/ from its own OpenAPI document (what schemathesis would do): whatever
the path and query parameters, GETs and POSTs are answered with JSON and never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ._client import Client, serve
from .conftest import make_project


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, dict[str, Any]]]:
    root: Path = make_project(tmp_path_factory.mktemp("prop") / "p")
    with serve(root) as c:
        yield c, c.api("/openapi.json")


_text = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values a client might send: ones the schema allows, and anything else."""
    allowed: list[st.SearchStrategy[Any]] = [_text]
    if schema.get("type") == "integer":
        lo, hi = schema.get("minimum", -(10**6)), schema.get("maximum", 10**12)
        edges = [lo, hi, lo - 1, hi + 1, 2**31, 2**63 - 1, 2**63, 10**20]
        allowed += [st.integers(lo, hi), st.integers(-(2**70), 2**70), st.sampled_from(edges)]
    if "enum" in schema:
        allowed.append(st.sampled_from(schema["enum"]))
    if "pattern" in schema:
        allowed.append(st.dates().map(lambda d: d.strftime("%Y%m%d")))
    return st.one_of(*allowed)


@st.composite
def requests(draw: Any, doc: dict[str, Any]) -> tuple[str, str, bytes]:
    path = draw(st.sampled_from(sorted(doc["paths"])))
    method, op = draw(st.sampled_from(sorted(doc["paths"][path].items())))
    url = path
    query: dict[str, str] = {}
    for p in op.get("parameters", []):
        if p["in"] == "path":
            known = st.sampled_from(["load", "daily"] if p["name"] == "name" else ["1", "3"])
            v = draw(st.one_of(known, _value(p["schema"])))
            url = url.replace("{" + p["name"] + "}", quote(str(v), safe="") or "x")
        elif draw(st.booleans()):
            query[p["name"]] = str(draw(_value(p["schema"])))
    if query:
        url += "?" + urlencode(query)
    body = b""
    if method == "post":
        schema = op.get("requestBody", {}).get("content", {}).get("application/json", {})
        props = schema.get("schema", {}).get("properties", {})
        fields = {k: draw(_value(s)) for k, s in props.items() if draw(st.booleans())}
        body = json.dumps(fields).encode()
    return method.upper(), url, body


def test_no_request_is_a_500(api: tuple[Client, dict[str, Any]]) -> None:
    client, doc = api

    @settings(
        max_examples=250,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(requests(doc))
    def check(req: tuple[str, str, bytes]) -> None:
        method, url, body = req
        r = client.request(method, url, body=body, headers={"Content-Type": "application/json"})
        assert r.status < 500, (method, url, body, r.text)
        assert r.headers["content-type"] == "application/json"
        r.json()

    check()
