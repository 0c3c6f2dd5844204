"""``sentiment``: a label and a score for a text column, from a local lexicon model.

``{"column": "review", "as": "mood"}`` adds ``mood`` (``positive`` / ``negative`` / ``neutral``)
and ``mood_score`` (VADER's compound score, -1 to 1). The model is VADER
(the ``vaderSentiment`` package, in the ``ai`` extra): a lexicon and rules for English, no
download and no GPU. A score of 0.05 or more is positive, -0.05 or less negative (VADER's own
thresholds). A null text gives a null label and score.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pyarrow as pa

from tidesync.errors import ConfigError
from tidesync.plugin import Context
from tidesync.transforms.base import Transform
from tidesync.transforms.columns import _index, _is_text

__all__ = ["Sentiment"]

MODELS = ("vader",)


@cache
def _vader() -> Any:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:
        return None
    return SentimentIntensityAnalyzer()


class Sentiment(Transform):
    """``column`` -> ``as`` (label) and ``as``_score (compound score), with VADER."""

    name = "sentiment"
    summary = "positive/negative/neutral label and score of a text column (VADER, extra 'ai')"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.column: str = self.p.str("column", required=True)
        self.label: str = self.p.str("as", required=True)
        self.model: str = self.p.str("model", "vader", choices=MODELS, lower=True)
        self.p.done()
        self.score = f"{self.label}_score"
        self.analyzer = _vader()
        if self.analyzer is None:
            raise ConfigError(
                f"{self.ctx.path('model')}: the sentiment transformer needs the package "
                f"vaderSentiment: pip install 'tidesync[ai]'"
            )

    def _check(self, schema: pa.Schema) -> int:
        i = _index(schema, self.column, self.ctx.path("column"))
        t = schema.field(i).type
        if not _is_text(t):
            raise ConfigError(
                f"{self.ctx.path('column')}: column {self.column!r} is {t}; sentiment works on "
                f'text: cast it first ({{"name": "cast", "parameter": '
                f'{{"columns": {{"{self.column}": "string"}}}}}})'
            )
        for name in (self.label, self.score):
            if name in schema.names:
                raise ConfigError(
                    f"{self.ctx.path('as')}: the batch already has a column {name!r}; "
                    f"choose another name in 'as' (it writes {self.label!r} and {self.score!r})"
                )
        return i

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        self._check(schema)
        return schema.append(pa.field(self.label, pa.string())).append(
            pa.field(self.score, pa.float64())
        )

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        i = self._check(batch.schema)
        scores: list[float | None] = []
        labels: list[str | None] = []
        polarity = self.analyzer.polarity_scores
        for text in batch.column(i).to_pylist():  # VADER scores one text at a time
            if text is None:
                scores.append(None)
                labels.append(None)
                continue
            s = float(polarity(text)["compound"])
            scores.append(s)
            labels.append("positive" if s >= 0.05 else "negative" if s <= -0.05 else "neutral")
        batch = batch.append_column(
            pa.field(self.label, pa.string()), pa.array(labels, pa.string())
        )
        return batch.append_column(
            pa.field(self.score, pa.float64()), pa.array(scores, pa.float64())
        )
