"""Transformer contract and registry.

A job's ``transformer`` list (DataX shape: ``[{"name": "dx_substr", "parameter": {...}}]``) becomes a
chain of :class:`Transform` objects applied to every record batch between reader and channel.

``Transform(params, ctx)`` validates its ``parameter`` object (collect problems with
``tidesync.connectors.base.Params`` and raise one ConfigError). ``apply(batch)`` is vectorized over
Arrow arrays, never per row, and returns a batch (possibly with fewer rows, or other columns).
When some rows cannot be transformed (a failed cast), ``apply`` raises ``DirtyRecordError``: the
engine bisects the batch down to the rows at fault, keeps them as dirty records with the reason,
and the other rows go on. So ``apply`` must be deterministic row by row: a row fails alone
exactly when it fails in a batch.
"""

from __future__ import annotations

import importlib
from typing import Any, ClassVar

import pyarrow as pa

from tidesync.errors import ConfigError, did_you_mean
from tidesync.plugin import Context, Params

__all__ = ["Transform", "TRANSFORMS", "load_transform", "transform_catalog"]


class Transform:
    name: ClassVar[str] = ""
    #: one line for `tidesync plugins`
    summary: ClassVar[str] = ""

    def __init__(self, params: dict[str, Any], ctx: Context):
        self.params = params
        self.ctx = ctx
        self.p = Params(params, ctx)

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        """The schema this transform produces from ``schema`` (None when unknown)."""
        return None

    def describe(self) -> dict[str, Any] | None:
        """What the run report should say of this transform (a model and its dimension), or
        None. Called on the driver; plain JSON values only."""
        return None

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        raise NotImplementedError


#: name -> "module:Class"
TRANSFORMS: dict[str, str] = {
    "dx_substr": "tidesync.transforms.datax:Substr",
    "dx_pad": "tidesync.transforms.datax:Pad",
    "dx_replace": "tidesync.transforms.datax:Replace",
    "dx_filter": "tidesync.transforms.datax:Filter",
    "dx_digest": "tidesync.transforms.datax:Digest",
    "rename": "tidesync.transforms.columns:Rename",
    "select": "tidesync.transforms.columns:Select",
    "cast": "tidesync.transforms.columns:Cast",
    "regex_replace": "tidesync.transforms.columns:RegexReplace",
    "timezone": "tidesync.transforms.columns:TimeZone",
    "sql": "tidesync.transforms.sql:Sql",
    "mask": "tidesync.transforms.mask:Mask",
    "hash": "tidesync.transforms.mask:Hash",
    "sentiment": "tidesync.transforms.sentiment:Sentiment",
    "llm": "tidesync.transforms.llm:Llm",
    "embed": "tidesync.transforms.embed:Embed",
    "classify": "tidesync.transforms.embed:Classify",
}


#: DataX's transformers that tidesync does not run -> what to write instead
NOT_RUN = {
    "dx_groovy": "DataX's Groovy code is not run by tidesync; write the logic as a 'sql' "
    "transformer (DuckDB SQL over each batch) or with the other transformers",
}


def load_transform(name: str, where: str) -> type[Transform]:
    key = name.strip().lower() if isinstance(name, str) else ""
    if key in NOT_RUN:
        raise ConfigError(f"{where}: transformer {name!r} is not supported: {NOT_RUN[key]}")
    if key not in TRANSFORMS:
        raise ConfigError(f"{where}: unknown transformer {name!r}{did_you_mean(key, TRANSFORMS)}")
    module_path, cls_name = TRANSFORMS[key].split(":")
    return getattr(importlib.import_module(module_path), cls_name)  # type: ignore[no-any-return,unused-ignore]


def transform_catalog() -> list[dict[str, str]]:
    out = []
    for name in sorted(TRANSFORMS):
        try:
            summary = load_transform(name, "").summary
        except Exception as e:  # noqa: BLE001 - a broken plugin must not hide the others
            summary = f"unavailable: {e}"
        out.append({"name": name, "summary": summary})
    return out
