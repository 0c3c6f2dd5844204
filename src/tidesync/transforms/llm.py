"""``llm``: a prompt over columns, sent to an OpenAI-compatible chat endpoint, one answer a row.

``{"url": "http://127.0.0.1:8000/v1", "model": "qwen2.5", "prompt": "Summarise: {review}",
"as": "summary", "apiKey": "${env:LLM_KEY}"}`` POSTs ``{url}/chat/completions`` for each row and
writes the answer's text to ``summary``. A row with a null in a column the prompt names gets a
null answer and no request. Requests run ``concurrency`` at a time, at most ``rateLimit`` a
second; a 429, a 5xx or a network error is retried ``maxRetries`` times with doubling back-off.
Answers (and final failures) are cached by prompt for the transformer's life, so a prompt is
sent once however often it occurs, and the engine's bisection of a failed batch sends nothing
again. A row whose request fails for good raises DirtyRecordError, so it alone becomes a dirty
record. The key (``${env:NAME}`` only) is registered as a secret: no output shows it.
"""

from __future__ import annotations

import json
import string
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa

from tidesync.connections import resolve_secrets
from tidesync.errors import ConfigError, DirtyRecordError, redact, register_secret
from tidesync.plugin import Context
from tidesync.transforms.base import Transform
from tidesync.transforms.columns import _index
from tidesync.transforms.mask import _ENV_ONLY

__all__ = ["Llm"]

_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
#: ``finish_reason`` values of an answer that stopped before it ended
_CUT_SHORT = ("length", "content_filter")


class _Failure(str):
    """A cached final failure (its reason), told apart from an answer."""


class Llm(Transform):
    name = "llm"
    summary = "an answer per row from an OpenAI-compatible chat endpoint (prompt over columns)"

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        p = self.p
        self.url: str = p.str("url", required=True) or ""
        self.model: str = p.str("model", required=True) or ""
        self.prompt: str = p.str("prompt", required=True) or ""
        self.out: str = p.str("as", required=True) or ""
        self.concurrency: int = p.int("concurrency", 4, minimum=1)
        self.retries: int = p.int("maxRetries", 3, minimum=0)
        self.timeout: int = p.int("timeout", 60, minimum=1)
        rate = p.get("rateLimit")
        self.interval = 0.0
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, int | float) or rate <= 0:
                p.problem(
                    "rateLimit", f"must be a positive number of requests a second, got {rate!r}"
                )
            else:
                self.interval = 1.0 / float(rate)
        raw_key = p.get("apiKey")
        self.fields: list[str] = []
        try:
            for _, field, spec, conv in string.Formatter().parse(self.prompt):
                if field is None:
                    continue
                if not field or spec or conv or "." in field or "[" in field:
                    raise ValueError(f"write a column as {{name}}, got {{{field}}}")
                if field not in self.fields:
                    self.fields.append(field)
        except ValueError as e:
            p.problem("prompt", f"{e} (write a literal brace as {{{{ or }}}})")
        if self.url and not self.url.startswith(("http://", "https://")):
            p.problem("url", f"must start with http:// or https://, got {self.url!r}")
        p.done()
        self.key: str | None = None
        if raw_key is not None:
            if not isinstance(raw_key, str) or not _ENV_ONLY.fullmatch(raw_key.strip()):
                raise ConfigError(
                    f"{self.ctx.path('apiKey')}: must be a reference such as ${{env:LLM_KEY}}, "
                    f"so the key is not written in the job file"
                )
            self.key = resolve_secrets(raw_key.strip(), self.ctx.path("apiKey"))
            register_secret(self.key)
        self.endpoint = self.url.rstrip("/") + "/chat/completions"
        self._cache: dict[str, str] = {}
        self._lock = threading.Lock()
        self._next = 0.0  # the earliest time the next request may start (rateLimit)
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="tidesync-llm")

    def _check(self, schema: pa.Schema) -> list[int]:
        idx = [_index(schema, f, self.ctx.path("prompt")) for f in self.fields]
        if self.out in schema.names:
            raise ConfigError(
                f"{self.ctx.path('as')}: the batch already has a column {self.out!r}; "
                f"choose another name"
            )
        return idx

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        self._check(schema)
        return schema.append(pa.field(self.out, pa.string()))

    def _wait_turn(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)

    def _ask(self, prompt: str) -> str:
        with self._lock:
            if prompt in self._cache:
                return self._cache[prompt]
        body = json.dumps(
            {
                "model": self.model,
                "messages": [{"role": "user", "content": prompt}],
                "temperature": 0,
            }
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        answer: str
        for attempt in range(self.retries + 1):
            self._wait_turn()
            req = urllib.request.Request(self.endpoint, body, headers, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    doc = json.loads(r.read())
                choice = doc["choices"][0]
                content = choice["message"]["content"]
                if not isinstance(content, str):  # null (a refusal, a tool call) or parts
                    raise TypeError(f"content is {json.dumps(content)[:60]}, not text")
                if choice.get("finish_reason") in _CUT_SHORT:
                    # the model stopped before its answer ended (its token limit, a filter):
                    # what came is a part of an answer, not one
                    raise ValueError(f"the answer was cut short ({choice['finish_reason']})")
                answer = content
                break
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace").strip().splitlines()
                reason = (
                    f"llm: HTTP {e.code} from {self.endpoint}: {detail[0] if detail else e.reason}"
                )
                retry = e.code in _RETRY_STATUS
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                reason = f"llm: {self.endpoint}: {getattr(e, 'reason', e)}"
                retry = True
            except (ValueError, KeyError, IndexError, TypeError) as e:
                reason = f"llm: {self.endpoint} gave no answer text ({type(e).__name__}: {e})"
                retry = False
            if not retry or attempt == self.retries:
                answer = _Failure(redact(reason))
                break
            time.sleep(min(0.2 * 2**attempt, 10.0))
        with self._lock:
            self._cache[prompt] = answer
        return answer

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        idx = self._check(batch.schema)
        cols = [batch.column(i).to_pylist() for i in idx]
        prompts: list[str | None] = []
        for row in range(batch.num_rows):
            values = [c[row] for c in cols]
            if any(v is None for v in values):
                prompts.append(None)
            else:
                prompts.append(self.prompt.format_map(dict(zip(self.fields, values, strict=True))))
        todo = sorted({p for p in prompts if p is not None})
        answers = dict(zip(todo, self._pool.map(self._ask, todo), strict=True))
        for p in prompts:
            if p is not None and isinstance(answers[p], _Failure):
                raise DirtyRecordError(str(answers[p]))
        out = pa.array([None if p is None else str(answers[p]) for p in prompts], pa.string())
        return batch.append_column(pa.field(self.out, pa.string()), out)
