"""``llm`` against a local fake OpenAI-compatible endpoint started by the test."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa
import pytest

from tidesync.engine.dirty import isolate
from tidesync.errors import ConfigError, DirtyRecordError, secret_scope
from tidesync.plugin import Context
from tidesync.transforms.base import load_transform
from tidesync.transforms.llm import Llm

WHERE = "job.content[0].transformer[0].parameter"
CTX = Context(where=WHERE, timezone="UTC")
KEY = "sk-test-key-never-shown-123"


class Fake:
    """Answers the prompt upper-cased; 'flaky' fails once with 503, 'bad' always with 400."""

    def __init__(self) -> None:
        self.requests: list[tuple[float, str, str | None]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = doc["messages"][0]["content"]
                with fake.lock:
                    fake.requests.append((time.monotonic(), prompt, self.headers["Authorization"]))
                    tries = sum(1 for _, p, _ in fake.requests if p == prompt)
                if self.path != "/v1/chat/completions" or doc["model"] != "m1":
                    self._send(404, {"error": "no such route or model"})
                elif "bad" in prompt:
                    self._send(400, {"error": f"refused, your key {self.headers['Authorization']}"})
                elif "flaky" in prompt and tries == 1:
                    self._send(503, {"error": "busy"})
                elif "silent" in prompt:
                    self._send(200, {"choices": [{"message": {"content": None}}]})
                elif "long" in prompt:  # the model's token limit ended the answer
                    half = {"content": prompt.upper()[:5]}
                    self._send(200, {"choices": [{"message": half, "finish_reason": "length"}]})
                elif "parts" in prompt:
                    parts = [{"type": "text", "text": prompt}]
                    self._send(200, {"choices": [{"message": {"content": parts}}]})
                else:
                    self._send(200, {"choices": [{"message": {"content": prompt.upper()}}]})

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def prompts(self) -> list[str]:
        return [p for _, p, _ in self.requests]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    monkeypatch.setenv("TS_TEST_LLM_KEY", KEY)
    f = Fake()
    yield f
    f.server.shutdown()
    f.server.server_close()


def llm(fake: Fake, **extra: Any) -> Llm:
    params = {"url": fake.url, "model": "m1", "prompt": "say {word} to {name}", "as": "answer",
              "apiKey": "${env:TS_TEST_LLM_KEY}", **extra}  # fmt: skip
    return Llm(params, CTX)


def words(*pairs: tuple[str | None, str | None]) -> pa.RecordBatch:
    return pa.record_batch(
        {"word": pa.array([w for w, _ in pairs], pa.string()),
         "name": pa.array([n for _, n in pairs], pa.string())}
    )  # fmt: skip


def test_registry_loads_llm() -> None:
    cls = load_transform("llm", "job.content[0].transformer[0].name")
    assert (cls.name, bool(cls.summary)) == ("llm", True)


def test_each_row_gets_its_answer_nulls_ask_nothing_and_a_prompt_is_sent_once(fake: Fake) -> None:
    t = llm(fake)
    b = words(("hi", "ann"), ("hi", "ann"), (None, "bo"), ("bye", "bo"))
    out = t.apply(b)
    assert out.column("answer").to_pylist() == [
        "SAY HI TO ANN",
        "SAY HI TO ANN",
        None,
        "SAY BYE TO BO",
    ]
    assert out.schema == t.output_schema(b.schema)
    assert sorted(fake.prompts()) == ["say bye to bo", "say hi to ann"]
    assert {auth for _, _, auth in fake.requests} == {f"Bearer {KEY}"}
    t.apply(b)  # the cache answers a second batch
    assert len(fake.requests) == 2


def test_a_503_is_retried(fake: Fake) -> None:
    out = llm(fake).apply(words(("flaky", "ann")))
    assert out.column("answer").to_pylist() == ["SAY FLAKY TO ANN"]
    assert fake.prompts() == ["say flaky to ann", "say flaky to ann"]


def test_a_row_that_fails_for_good_is_dirty_alone_without_the_key(fake: Fake) -> None:
    with secret_scope():
        t = llm(fake)
        b = words(("hi", "ann"), ("bad", "bo"), ("bye", "cy"))
        with pytest.raises(DirtyRecordError):
            t.apply(b)
        dirty: list[tuple[int, str]] = []
        parts = isolate(b, t.apply, lambda at, row, e: dirty.append((at, e.reason)))
    out = pa.Table.from_batches(parts)
    assert out.column("answer").to_pylist() == ["SAY HI TO ANN", "SAY BYE TO CY"]
    assert len(dirty) == 1 and dirty[0][0] == 1
    assert dirty[0][1].startswith(f"llm: HTTP 400 from {fake.url}/chat/completions: ")
    assert KEY not in dirty[0][1] and "***" in dirty[0][1]
    assert fake.prompts().count("say bad to bo") == 1  # 4xx: no retry; bisection asks the cache


@pytest.mark.parametrize(
    ("word", "content"),
    [("silent", "null"), ("parts", '[{"type": "text", "text": "say parts to bo"}]')],
)
def test_an_answer_without_text_content_is_dirty_not_its_python_spelling(
    fake: Fake, word: str, content: str
) -> None:
    b = words(("hi", "ann"), (word, "bo"))
    dirty: list[tuple[int, str]] = []
    parts = isolate(b, llm(fake).apply, lambda at, row, e: dirty.append((at, e.reason)))
    assert pa.Table.from_batches(parts).column("answer").to_pylist() == ["SAY HI TO ANN"]
    assert [at for at, _ in dirty] == [1]
    assert dirty[0][1] == (
        f"llm: {fake.url}/chat/completions gave no answer text (TypeError: content is "
        f"{content}, not text)"
    )


def test_an_answer_cut_short_by_the_token_limit_is_dirty_not_written(fake: Fake) -> None:
    b = words(("hi", "ann"), ("long", "bo"))
    dirty: list[tuple[int, str]] = []
    parts = isolate(b, llm(fake).apply, lambda at, row, e: dirty.append((at, e.reason)))
    assert pa.Table.from_batches(parts).column("answer").to_pylist() == ["SAY HI TO ANN"]
    assert dirty == [
        (1, f"llm: {fake.url}/chat/completions gave no answer text (ValueError: the answer was "
            "cut short (length))")
    ]  # fmt: skip


def test_rate_limit_spaces_the_requests(fake: Fake) -> None:
    t = llm(fake, rateLimit=20, concurrency=4)
    t.apply(words(*[("w", str(i)) for i in range(5)]))
    starts = sorted(at for at, _, _ in fake.requests)
    # a lower bound only: 5 requests at 20 a second cannot span less than 4 intervals of 50 ms
    assert len(starts) == 5 and starts[-1] - starts[0] >= 0.19


def test_unreachable_endpoint_is_retried_then_dirty() -> None:
    t = Llm({"url": "http://127.0.0.1:9/v1", "model": "m1", "prompt": "{word}", "as": "a",
             "maxRetries": 1}, CTX)  # fmt: skip
    with pytest.raises(DirtyRecordError, match=r"^llm: http://127.0.0.1:9/v1/chat/completions: "):
        t.apply(pa.record_batch({"word": ["x"]}))


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"prompt": "{word}", "as": "a", "model": "m1"}, "url: is required"),
        ({"url": "ftp://x", "model": "m1", "prompt": "{word}", "as": "a"}, "url: must start with http:// or https://, got 'ftp://x'"),
        ({"url": "http://x", "model": "m1", "prompt": "{word!r}", "as": "a"}, "prompt: write a column as {name}, got {word}"),
        ({"url": "http://x", "model": "m1", "prompt": "{", "as": "a"}, "prompt: Single '{' encountered"),
        ({"url": "http://x", "model": "m1", "prompt": "{w}", "as": "a", "rateLimit": 0}, "rateLimit: must be a positive number"),
        ({"url": "http://x", "model": "m1", "prompt": "{w}", "as": "a", "apiKey": KEY},
         "apiKey: must be a reference such as ${env:LLM_KEY}, so the key is not written in the job file"),
    ],
)  # fmt: skip
def test_bad_parameters(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        Llm(params, CTX)
    assert str(e.value).startswith(f"{WHERE}.{message}")
    assert KEY not in str(e.value)


def test_a_prompt_naming_a_missing_column_or_an_existing_output_is_a_config_error(
    fake: Fake,
) -> None:
    t = llm(fake)
    with pytest.raises(ConfigError, match=r"\.prompt: no column 'name' in the batch"):
        t.output_schema(pa.schema([("word", pa.string())]))
    with pytest.raises(ConfigError, match=r"\.as: the batch already has a column 'answer'"):
        t.apply(pa.record_batch({"word": ["a"], "name": ["b"], "answer": ["c"]}))
