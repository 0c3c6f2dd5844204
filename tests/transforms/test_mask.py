"""``mask`` and ``hash``: personal data hidden in flight."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tidesync.errors import ConfigError, redact, secret_scope
from tidesync.plugin import Context
from tidesync.transforms.base import load_transform
from tidesync.transforms.mask import Hash, Mask

WHERE = "job.content[0].transformer[0].parameter"
CTX = Context(where=WHERE, timezone="UTC")
SALT = "s3cr3t-pepper-for-tests"


def people() -> pa.RecordBatch:
    return pa.record_batch(
        {
            "id": pa.array([1, 2, 3, 4], pa.int64()),
            "phone": ["13812345678", "abc", None, "日本語です"],
            "blob": pa.array([b"\x00\x01", b"", None, b"x"], pa.binary()),
        }
    )


def config_error(fn: Any) -> str:
    with pytest.raises(ConfigError) as e:
        fn()
    return str(e.value)


@pytest.fixture
def salt(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("TS_TEST_SALT", SALT)
    return "${env:TS_TEST_SALT}"


@pytest.mark.parametrize("name", ["mask", "hash"])
def test_registry_loads_each(name: str) -> None:
    cls = load_transform(name, "job.content[0].transformer[0].name")
    assert (cls.name, bool(cls.summary)) == (name, True)


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"keepLast": 4}, ["*******5678", "***", None, "*本語です"]),
        ({"keepLast": 3, "maskChar": "#"}, ["########678", "###", None, "##語です"]),
        ({"keepLast": 0}, ["***********", "***", None, "*****"]),
        ({"replacement": "REDACTED"}, ["REDACTED", "REDACTED", None, "REDACTED"]),
        ({"replacement": ""}, ["", "", None, ""]),
    ],
)
def test_mask_hides_all_but_the_last_characters_or_replaces(
    params: dict[str, Any], expected: list[str | None]
) -> None:
    t = Mask({"columns": ["phone"], **params}, CTX)
    out = t.apply(people())
    assert out.column("phone").to_pylist() == expected
    assert out.column("id").to_pylist() == [1, 2, 3, 4]
    assert out.schema == t.output_schema(people().schema)


def test_mask_of_a_value_no_longer_than_keep_last_hides_it_whole() -> None:
    out = Mask({"columns": ["phone"], "keepLast": 11}, CTX).apply(people())
    assert out.column("phone").to_pylist() == ["***********", "***", None, "*****"]


def test_hash_is_salted_sha256_of_text_and_bytes(salt: str) -> None:
    t = Hash({"columns": ["phone", "blob"], "salt": salt}, CTX)
    out = t.apply(people())

    def sha(b: bytes) -> str:
        return hashlib.sha256(SALT.encode() + b).hexdigest()

    assert out.column("phone").to_pylist() == [
        sha(b"13812345678"), sha(b"abc"), None, sha("日本語です".encode())
    ]  # fmt: skip
    assert out.column("blob").to_pylist() == [sha(b"\x00\x01"), sha(b""), None, sha(b"x")]
    assert out.schema == t.output_schema(people().schema)
    assert out.schema.field("blob").type == pa.string()


def test_hash_registers_the_salt_as_a_secret(salt: str) -> None:
    with secret_scope():
        Hash({"columns": ["phone"], "salt": salt}, CTX)
        assert redact(f"failed near {SALT}") == "failed near ***"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"columns": ["phone"]}, "keepLast: is required: the number of characters to keep"),
        ({"columns": ["phone"], "keepLast": 2, "replacement": "x"},
         "replacement: give either 'keepLast' or 'replacement', not both"),
        ({"columns": ["phone"], "keepLast": -1}, "keepLast: must be at least 0, got -1"),
        ({"columns": ["phone"], "keepLast": 2, "maskChar": "**"}, "maskChar: must be one character, got '**'"),
        ({"columns": ["phone"], "replacement": "x", "maskChar": "#"}, "maskChar: only applies with 'keepLast'"),
        ({"columns": ["phone"], "replacement": 5}, "replacement: must be text, got 5"),
        ({"keepLast": 2}, "columns: is required"),
    ],
)  # fmt: skip
def test_mask_bad_parameters(params: dict[str, Any], message: str) -> None:
    assert config_error(lambda: Mask(params, CTX)).startswith(f"{WHERE}.{message}")


@pytest.mark.parametrize(
    ("salt", "message"),
    [
        ("pepper", "salt: must be a reference such as ${env:PII_SALT}, so the salt is not written in the job file"),
        ("x${env:TS_TEST_SALT}", "salt: must be a reference such as ${env:PII_SALT}"),
        ("${env:TS_TEST_NO_SUCH_SALT}", "salt: environment variable TS_TEST_NO_SUCH_SALT is not set"),
    ],
)  # fmt: skip
def test_hash_salt_must_be_an_env_reference_that_is_set(salt: str, message: str) -> None:
    assert config_error(lambda: Hash({"columns": ["phone"], "salt": salt}, CTX)).startswith(
        f"{WHERE}.{message}"
    )


def test_hash_without_salt_is_refused() -> None:
    assert config_error(lambda: Hash({"columns": ["phone"]}, CTX)) == f"{WHERE}.salt: is required"


@pytest.mark.parametrize("cls", [Mask, Hash])
def test_a_column_that_is_not_text_is_a_config_error(cls: type, salt: str) -> None:
    params = (
        {"columns": ["id"], "keepLast": 1} if cls is Mask else {"columns": ["id"], "salt": salt}
    )
    t = cls(params, CTX)
    message = config_error(lambda: t.apply(people()))
    assert message.startswith(f"{WHERE}.columns[0]: column 'id' is int64; {cls.name} works on")
    assert config_error(lambda: t.output_schema(people().schema)) == message


def test_a_job_hashes_and_masks_and_never_shows_the_salt(tmp_path: Path) -> None:
    job = {
        "job": {
            "setting": {},
            "content": [{
                "reader": {"name": "streamreader", "parameter": {
                    "column": [{"type": "string", "value": "13812345678"},
                               {"type": "string", "value": "ann@example.com"}],
                    "sliceRecordCount": 1}},
                "transformer": [
                    {"name": "mask", "parameter": {"columns": ["c0"], "keepLast": 4}},
                    {"name": "hash", "parameter": {"columns": ["c1"], "salt": "${env:TS_TEST_SALT}"}},
                ],
                "writer": {"name": "streamwriter", "parameter": {"print": True}},
            }],
        }
    }  # fmt: skip
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    tidesync = str(Path(sys.executable).with_name("tidesync"))
    env = {**os.environ, "PYTHONWARNINGS": "error", "TS_TEST_SALT": SALT}
    r = subprocess.run(
        [tidesync, "run", str(path), "--report", str(tmp_path / "r.json")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    digest = hashlib.sha256(f"{SALT}ann@example.com".encode()).hexdigest()
    assert r.stdout.splitlines() == [f"*******5678\t{digest}"]
    for text in (r.stdout, r.stderr, (tmp_path / "r.json").read_text()):
        assert SALT not in text
