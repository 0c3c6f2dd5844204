"""Personal data: ``mask`` hides text, ``hash`` replaces it with a salted SHA-256.

- ``mask``: ``{"columns": ["phone"], "keepLast": 4}`` -> ``"*******5678"`` (``maskChar`` is the
  character written over the rest, ``*`` by default); a value no longer than ``keepLast`` is masked
  whole, so a short value is never shown. ``{"columns": ["name"], "replacement": "REDACTED"}``
  writes the same text over every value.
- ``hash``: ``{"columns": ["email"], "salt": "${env:PII_SALT}"}`` -> the lower-case hex SHA-256
  of the salt's UTF-8 bytes followed by the value's. The salt must be an ``${env:NAME}``
  reference (a salt written in the job file would be a secret in the file); it is registered as a
  secret of the run, so no log, report or error shows it.

Both work on text columns (``hash`` on bytes too) and keep a null as null.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connections import resolve_secrets
from tidesync.errors import ConfigError, register_secret
from tidesync.plugin import Context
from tidesync.transforms.base import Transform
from tidesync.transforms.columns import _index, _is_bytes, _is_text, _names

__all__ = ["Mask", "Hash"]

_ENV_ONLY = re.compile(r"\$\{env:[A-Za-z_][A-Za-z0-9_]*\}")


class _PerColumn(Transform):
    """A transform of each of ``columns``, all text (or bytes where ``bytes_ok``), to string."""

    bytes_ok = False
    columns: list[str]

    def _checked(self, schema: pa.Schema) -> list[int]:
        out = []
        for k, name in enumerate(self.columns):
            i = _index(schema, name, self.ctx.path(f"columns[{k}]"))
            t = schema.field(i).type
            if not (_is_text(t) or (self.bytes_ok and _is_bytes(t))):
                kinds = "text or bytes" if self.bytes_ok else "text"
                raise ConfigError(
                    f"{self.ctx.path(f'columns[{k}]')}: column {name!r} is {t}; {self.name} works "
                    f'on {kinds}: cast it first ({{"name": "cast", "parameter": '
                    f'{{"columns": {{"{name}": "string"}}}}}})'
                )
            out.append(i)
        return out

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        for i in self._checked(schema):
            schema = schema.set(i, schema.field(i).with_type(pa.string()))
        return schema

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        for i in self._checked(batch.schema):
            f = batch.schema.field(i)
            batch = batch.set_column(i, f.with_type(pa.string()), self._one(batch.column(i)))
        return batch

    def _one(self, arr: pa.Array) -> pa.Array:
        raise NotImplementedError


class Mask(_PerColumn):
    """``columns`` with ``keepLast`` (and ``maskChar``), or with a fixed ``replacement``."""

    name = "mask"
    summary = "hide text: keep the last N characters, or write a fixed replacement"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.columns = _names(self.p, "columns")
        self.keep: int | None = self.p.int("keepLast", minimum=0)
        self.char: str = self.p.get("maskChar", "*")
        if not isinstance(self.char, str) or len(self.char) != 1:
            self.p.problem("maskChar", f"must be one character, got {self.char!r}")
        self.replacement: str | None = None
        if "replacement" in params:
            self.p.seen.add("replacement")
            r = params["replacement"]
            if isinstance(r, str):
                self.replacement = r
            else:
                self.p.problem("replacement", f"must be text, got {r!r}")
        if "keepLast" in params and "replacement" in params:
            self.p.problem("replacement", "give either 'keepLast' or 'replacement', not both")
        elif "keepLast" not in params and "replacement" not in params:
            self.p.problem(
                "keepLast", "is required: the number of characters to keep at the end "
                "(or give 'replacement': a text written over every value)"
            )  # fmt: skip
        if "maskChar" in params and "keepLast" not in params:
            self.p.problem("maskChar", "only applies with 'keepLast'")
        self.p.done()

    def _one(self, arr: pa.Array) -> pa.Array:
        text = arr.cast(pa.string())
        if self.replacement is not None:
            return pc.if_else(pc.is_null(text), pa.scalar(None, pa.string()), self.replacement)
        keep = self.keep or 0
        length = pc.utf8_length(text)
        long = pc.greater(length, keep)
        hidden = pc.if_else(long, pc.subtract(length, keep), length)
        tail = pc.if_else(
            long, pc.utf8_slice_codeunits(text, start=-keep) if keep else "", pa.scalar("")
        )
        stars = pc.binary_repeat(pa.scalar(self.char), hidden)
        return pc.binary_join_element_wise(stars, tail, "")


class Hash(_PerColumn):
    """``columns`` replaced by the hex SHA-256 of ``salt`` + value; ``salt`` is ``${env:NAME}``."""

    name = "hash"
    summary = "salted SHA-256 of text columns (the salt from ${env:...})"
    bytes_ok = True

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.columns = _names(self.p, "columns")
        raw = self.p.get("salt", required=True)
        self.p.done()
        if not isinstance(raw, str) or not _ENV_ONLY.fullmatch(raw.strip()):
            raise ConfigError(
                f"{self.ctx.path('salt')}: must be a reference such as ${{env:PII_SALT}}, so the "
                f"salt is not written in the job file"
            )
        salt = resolve_secrets(raw.strip(), self.ctx.path("salt"))
        if not salt:
            raise ConfigError(f"{self.ctx.path('salt')}: the environment variable is empty")
        register_secret(salt)
        self._salted = hashlib.sha256(salt.encode())

    def _one(self, arr: pa.Array) -> pa.Array:
        raw = arr.cast(pa.large_binary()).to_pylist()
        out: list[str | None] = []
        for v in raw:  # Arrow has no SHA-256: one pass of hashlib, from the salted state
            if v is None:
                out.append(None)
            else:
                h = self._salted.copy()
                h.update(v)
                out.append(h.hexdigest())
        return pa.array(out, pa.string())
