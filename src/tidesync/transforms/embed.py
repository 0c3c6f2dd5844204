"""``embed`` and ``classify``: sentence embeddings of text columns, and zero-shot labels from them.

``embed``: ``{"column": "review", "as": "review_vec"}`` adds ``review_vec``, a
``fixed_size_list<float32>[384]`` of unit length (cosine similarity is a dot product).
``columns: ["title", "body"]`` embeds the columns joined with a space (a null part is left out;
all parts null gives a null vector). ``model`` (default ``all-MiniLM-L6-v2``), ``batchSize``
(texts per forward pass, default 64), ``device`` (``cpu`` or ``cuda``).

``classify``: ``{"column": "review", "labels": ["billing", "delivery", "quality"], "as":
"topic"}`` adds ``topic`` (the label whose embedding is nearest the text's) and ``topic_score``
(that cosine similarity). ``labels`` may be an object, label -> description, when a description
says it better than the label's name (``{"billing": "invoices, charges and refunds"}``).

Both run the encoder of :mod:`tidesync.transforms.encoder` (the ``embed`` extra): weights
installed from a package, nothing downloaded. A null text gives nulls. The run report lists the
model and the dimension (``describe``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidesync.errors import ConfigError
from tidesync.plugin import Context
from tidesync.transforms import encoder
from tidesync.transforms.base import Transform
from tidesync.transforms.columns import _index, _is_text

__all__ = ["Classify", "Embed"]

DEVICES = ("cpu", "cuda")


class _Encoding(Transform):
    """What ``embed`` and ``classify`` share: the text columns, the model, the device."""

    #: what the transform is for, in the missing-extra message
    purpose = ""

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        p = self.p
        one = p.get("column")
        many = p.list("columns")
        if one is not None and many is not None:
            p.problem("columns", "write either 'column' or 'columns', not both")
        self.columns: list[str] = []
        if many is not None:
            if not many:
                p.problem("columns", "must name at least one column")
            for i, n in enumerate(many):
                if not isinstance(n, str) or not n:
                    p.problem(f"columns[{i}]", f"must be a column name, got {n!r}")
                else:
                    self.columns.append(n)
        elif one is None:
            p.problem("column", "is required (or 'columns', a list)")
        elif not isinstance(one, str):
            p.problem("column", f"must be a column name, got {one!r}")
        else:
            self.columns = [one]
        self.out: str = p.str("as", required=True) or ""
        raw_model = p.str("model", "all-MiniLM-L6-v2")
        self.model = encoder.canonical(raw_model) or encoder.DEFAULT_MODEL
        if encoder.canonical(raw_model) is None:
            p.problem("model", f"{raw_model!r} is not one of all-MiniLM-L6-v2")
        self.batch_size: int = p.int("batchSize", 64, minimum=1)
        self.device: str = p.str("device", "cpu", choices=DEVICES, lower=True)

    def _check_runtime(self) -> None:
        """After ``p.done()``: the extra installed, the device there (ConfigErrors)."""
        missing = encoder.missing_packages(self.model)
        if missing:
            raise ConfigError(
                f"{self.ctx.path('model')}: {self.purpose} needs the packages of the embed "
                f"extra (missing: {', '.join(missing)}): {encoder.EXTRA_HINT}"
            )
        if self.device != "cpu":
            try:
                encoder.check_device(self.device)
            except encoder.EncoderUnavailable as e:
                raise ConfigError(f"{self.ctx.path('device')}: {e}") from None

    def _encoder(self) -> encoder.Encoder:
        # looked up per call, not kept: a transform travels to Ray workers without the model
        try:
            return encoder.load_encoder(self.model, self.device)
        except encoder.EncoderUnavailable as e:
            raise ConfigError(f"{self.ctx.path('model')}: {e}") from None

    def _text_indexes(self, schema: pa.Schema) -> list[int]:
        key = "column" if "columns" not in self.params else "columns"
        out = []
        for name in self.columns:
            i = _index(schema, name, self.ctx.path(key))
            t = schema.field(i).type
            if not _is_text(t):
                raise ConfigError(
                    f"{self.ctx.path(key)}: column {name!r} is {t}; {self.name} works on text: "
                    f'cast it first ({{"name": "cast", "parameter": '
                    f'{{"columns": {{"{name}": "string"}}}}}})'
                )
            out.append(i)
        return out

    def _check_new(self, schema: pa.Schema, names: list[str]) -> None:
        for name in names:
            if name in schema.names:
                raise ConfigError(
                    f"{self.ctx.path('as')}: the batch already has a column {name!r}; "
                    f"choose another name in 'as'"
                )

    def _texts(self, batch: pa.RecordBatch) -> pa.Array:
        """The text to embed per row (null when every part is null)."""
        parts = [batch.column(i).cast(pa.large_string()) for i in self._text_indexes(batch.schema)]
        if len(parts) == 1:
            return parts[0]
        # a null part becomes "": the tokenizer ignores the spaces left around it (the
        # "skip" null handling would be neater, but pyarrow 26 drops rows of all nulls with it)
        space = pa.scalar(" ", pa.large_string())
        joined = pc.binary_join_element_wise(
            *parts, space, null_handling="replace", null_replacement=""
        )
        all_null = pc.is_null(parts[0])
        for a in parts[1:]:
            all_null = pc.and_(all_null, pc.is_null(a))
        return pc.if_else(all_null, pa.scalar(None, pa.large_string()), joined)

    def _embed(self, texts: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings of the non-null rows, the positions of those rows)."""
        valid = np.flatnonzero(pc.is_valid(texts).to_numpy(zero_copy_only=False))
        present = texts.take(pa.array(valid)).to_pylist()
        return self._encoder().encode(present, self.batch_size), valid

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "dimension": encoder.MODELS[self.model].dimension,
            "device": self.device,
        }


class Embed(_Encoding):
    """Text column(s) -> ``as``, a fixed-size list of float32: the sentence embedding."""

    name = "embed"
    summary = "sentence embeddings of text columns (all-MiniLM-L6-v2, 384 floats; extra 'embed')"
    purpose = "the embed transformer"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.p.done()
        self._check_runtime()
        self.dimension = encoder.MODELS[self.model].dimension
        self.type = pa.list_(pa.float32(), self.dimension)

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        self._text_indexes(schema)
        self._check_new(schema, [self.out])
        return schema.append(pa.field(self.out, self.type))

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self._check_new(batch.schema, [self.out])
        texts = self._texts(batch)
        vectors, rows = self._embed(texts)
        n = batch.num_rows
        if len(rows) == n:
            flat, mask = vectors.reshape(-1), None
        else:
            full = np.zeros((n, self.dimension), np.float32)
            full[rows] = vectors
            flat = full.reshape(-1)
            mask = pa.array(pc.is_null(texts).to_numpy(zero_copy_only=False))
        column = pa.FixedSizeListArray.from_arrays(pa.array(flat), self.dimension, mask=mask)
        return batch.append_column(pa.field(self.out, self.type), column)


class Classify(_Encoding):
    """Text column(s) -> ``as`` (the nearest label) and ``as``_score (its cosine similarity)."""

    name = "classify"
    summary = "zero-shot label and score of text columns by embedding similarity (extra 'embed')"
    purpose = "the classify transformer"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        raw = self.p.get("labels", required=True)
        self.labels: list[str] = []
        self.descriptions: list[str] = []
        if isinstance(raw, dict):
            items = list(raw.items())
        elif isinstance(raw, list):
            items = [(x, x) for x in raw]
        else:
            items = []
            if raw is not None:
                self.p.problem("labels", f"must be a list of labels or an object, got {raw!r}")
        for label, text in items:
            if not isinstance(label, str) or not label or not isinstance(text, str) or not text:
                self.p.problem("labels", f"a label and its description are text, got {label!r}")
            elif label in self.labels:
                self.p.problem("labels", f"label {label!r} is named twice")
            else:
                self.labels.append(label)
                self.descriptions.append(text)
        if isinstance(raw, dict | list) and len(items) < 2:
            self.p.problem("labels", "name at least two labels to choose between")
        self.p.done()
        self._check_runtime()
        self.score = f"{self.out}_score"
        self._label_vectors: np.ndarray | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_label_vectors": None}  # computed again where it runs

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        self._text_indexes(schema)
        self._check_new(schema, [self.out, self.score])
        return schema.append(pa.field(self.out, pa.string())).append(
            pa.field(self.score, pa.float64())
        )

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        self._check_new(batch.schema, [self.out, self.score])
        if self._label_vectors is None:
            self._label_vectors = self._encoder().encode(self.descriptions, self.batch_size)
        texts = self._texts(batch)
        vectors, rows = self._embed(texts)
        sims = vectors @ self._label_vectors.T  # unit vectors: cosine similarity
        best = sims.argmax(axis=1) if len(rows) else np.zeros(0, np.int64)
        n = batch.num_rows
        valid = np.zeros(n, bool)
        valid[rows] = True
        idx = np.zeros(n, np.int32)
        idx[rows] = best
        scores = np.zeros(n, np.float64)
        scores[rows] = sims[np.arange(len(rows)), best]
        labels = pa.DictionaryArray.from_arrays(
            pa.array(idx, mask=~valid), pa.array(self.labels, pa.string())
        ).cast(pa.string())
        batch = batch.append_column(pa.field(self.out, pa.string()), labels)
        return batch.append_column(
            pa.field(self.score, pa.float64()), pa.array(scores, pa.float64(), mask=~valid)
        )
