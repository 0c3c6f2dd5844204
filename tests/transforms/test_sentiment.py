"""``sentiment`` with the VADER lexicon model (the ``ai`` extra; skipped without it)."""

from __future__ import annotations

import sys
from typing import Any

import pyarrow as pa
import pytest

from tidesync.errors import ConfigError
from tidesync.plugin import Context
from tidesync.transforms import sentiment
from tidesync.transforms.base import load_transform

WHERE = "job.content[0].transformer[0].parameter"
CTX = Context(where=WHERE, timezone="UTC")

needs_vader = pytest.mark.skipif(
    sentiment._vader() is None,
    reason="the 'ai' extra is not installed (pip install 'tidesync[ai]': vaderSentiment)",
)

POSITIVE = ["I love this phone, it is wonderful!", "Great service and a very friendly team.",
            "Absolutely fantastic, best purchase this year :)"]  # fmt: skip
NEGATIVE = ["This is terrible, I hate it.", "Awful quality, it broke after a day. Very sad.",
            "Worst support ever, rude and useless."]  # fmt: skip
NEUTRAL = ["The parcel arrived on Tuesday.", "It is a blue box."]


def config_error(fn: Any) -> str:
    with pytest.raises(ConfigError) as e:
        fn()
    return str(e.value)


@needs_vader
def test_registry_loads_sentiment() -> None:
    cls = load_transform("sentiment", "job.content[0].transformer[0].name")
    assert (cls.name, bool(cls.summary)) == ("sentiment", True)


@needs_vader
def test_clear_sentences_get_their_label_and_a_score_of_that_sign_over_hundreds_of_rows() -> None:
    texts = (POSITIVE + NEGATIVE + NEUTRAL + [None]) * 30  # 270 rows
    b = pa.record_batch({"id": list(range(len(texts))), "review": pa.array(texts, pa.string())})
    t = sentiment.Sentiment({"column": "review", "as": "mood"}, CTX)
    out = t.apply(b)
    assert out.schema == t.output_schema(b.schema)
    assert out.schema.names == ["id", "review", "mood", "mood_score"]
    expected = ["positive"] * 3 + ["negative"] * 3 + ["neutral"] * 2 + [None]
    assert out.column("mood").to_pylist() == expected * 30
    scores = out.column("mood_score").to_pylist()[:9]
    assert all(s > 0.3 for s in scores[:3]) and all(s < -0.3 for s in scores[3:6])
    assert scores[6:8] == [0.0, 0.0] and scores[8] is None
    assert out.column("id").to_pylist() == list(range(len(texts)))


@needs_vader
@pytest.mark.parametrize(
    ("params", "column", "message"),
    [
        ({"column": "id", "as": "mood"}, None, "column: column 'id' is int64; sentiment works on text"),
        ({"column": "revew", "as": "mood"}, None, "column: no column 'revew' in the batch; did you mean 'review'?"),
        ({"column": "review", "as": "mood"}, "mood_score",
         "as: the batch already has a column 'mood_score'; choose another name in 'as'"),
    ],
)  # fmt: skip
def test_a_wrong_column_is_a_config_error(
    params: dict[str, Any], column: str | None, message: str
) -> None:
    cols: dict[str, Any] = {"id": [1], "review": ["good"]}
    if column:
        cols[column] = [0.0]
    b = pa.record_batch(cols)
    t = sentiment.Sentiment(params, CTX)
    assert config_error(lambda: t.output_schema(b.schema)).startswith(f"{WHERE}.{message}")
    assert config_error(lambda: t.apply(b)).startswith(f"{WHERE}.{message}")


@needs_vader
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"as": "mood"}, "column: is required"),
        ({"column": "review"}, "as: is required"),
        ({"column": "review", "as": "mood", "model": "bert"}, "model: 'bert' is not one of vader"),
    ],
)
def test_bad_parameters(params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: sentiment.Sentiment(params, CTX)).startswith(f"{WHERE}.{message}")


def test_without_the_package_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vaderSentiment", None)  # import fails as when not installed
    monkeypatch.setitem(sys.modules, "vaderSentiment.vaderSentiment", None)
    sentiment._vader.cache_clear()
    try:
        message = config_error(lambda: sentiment.Sentiment({"column": "review", "as": "mood"}, CTX))
    finally:
        sentiment._vader.cache_clear()
    assert message == (
        f"{WHERE}.model: the sentiment transformer needs the package vaderSentiment: "
        "pip install 'tidesync[ai]'"
    )
