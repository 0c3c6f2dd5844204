"""The S3-compatible server of the integration tests: moto's (``moto_server`` from PyPI), started
as a separate process on a free port of 127.0.0.1.

Import the fixtures into a test module (``from tests.integration._s3server import
bucket_fixture, s3_server_fixture  # noqa: F401``); tests then ask for ``s3_server`` (the
session's server) or ``bucket`` (a fresh bucket on it). The server checks signatures: the first requests make an IAM user with an
access key, and from then on only that key is accepted, so a wrong secret is refused as on a
real store. :func:`start_server` starts a server of a test's own (one it may kill).

When ``moto_server`` cannot start the tests skip, saying why, except under ``CI=true``, where
that fails them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REGION = "us-east-1"
#: requests moto serves before it checks signatures: the three that make the test's key
_SETUP_ACTIONS = 3


@dataclass
class S3Server:
    """A running moto server and the one access key it accepts."""

    port: int
    proc: subprocess.Popen[bytes]
    key_id: str = ""
    secret: str = field(default="", repr=False)
    log: Path | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        """A boto3 client with the server's key: the tests' own view of the store."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.key_id or "setup",
            aws_secret_access_key=self.secret or "setup",
        )

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"ts-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def put(self, bucket: str, key: str, data: bytes | str) -> None:
        body = data.encode() if isinstance(data, str) else data
        self.client().put_object(Bucket=bucket, Key=key, Body=body)

    def get(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, as stored: directory markers (``a/``) included."""
        out: list[str] = []
        for page in (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        ):
            out += [o["Key"] for o in page.get("Contents", [])]
        return sorted(out)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _moto_server() -> str | None:
    here = Path(sys.executable).parent / "moto_server"
    return str(here) if here.exists() else shutil.which("moto_server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unavailable(msg: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " (CI=true: the S3 server is required)")
    pytest.skip(msg)


def _launch(auth: bool = True) -> S3Server:
    exe = _moto_server()
    if exe is None:
        _unavailable("moto_server not found: pip install 'moto[server]'")
        raise AssertionError  # unreachable: skip/fail raise
    port = _free_port()
    log = Path(tempfile.mkstemp(prefix="moto-", suffix=".log")[1])
    env = dict(os.environ)
    if auth:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(_SETUP_ACTIONS)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = S3Server(port, proc, log=log)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-500:]
            _unavailable(f"moto_server exited with {proc.returncode}: {tail}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            break
        if time.monotonic() > deadline:
            server.stop()
            _unavailable(f"moto_server did not listen on 127.0.0.1:{port} within 30 s")
        time.sleep(0.1)
    if auth:
        _make_key(server)
    return server


def _make_key(server: S3Server) -> None:
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=server.endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam.create_user(UserName="tidesync")
    key = iam.create_access_key(UserName="tidesync")["AccessKey"]
    iam.put_user_policy(
        UserName="tidesync",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
            }
        ),
    )
    server.key_id, server.secret = key["AccessKeyId"], key["SecretAccessKey"]


@contextlib.contextmanager
def start_server(auth: bool = True) -> Iterator[S3Server]:
    """A server of the caller's own, stopped (if still running) on leaving."""
    server = _launch(auth)
    try:
        yield server
    finally:
        server.stop()
        if server.log is not None:
            server.log.unlink(missing_ok=True)


@pytest.fixture(scope="session", name="s3_server")
def s3_server_fixture() -> Iterator[S3Server]:
    with start_server() as server:
        yield server


@pytest.fixture(name="bucket")
def bucket_fixture(s3_server: S3Server) -> str:
    return s3_server.make_bucket()
