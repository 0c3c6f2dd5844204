"""Publishing objects into a bucket folder: a run killed while publishing leaves its decided
publish in a journal that tidesync's reader honours and the next run or ``tidesync recover``
completes; dead runs' staged objects and unfinished uploads are removed, live runs' kept."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.connectors._runs import (
    KILLED,
    Rows,
    csv_rows,
    exactly,
    read_here,
    run_here,
    stream_job,
    tidesync,
    write_here,
)
from tests.integration._s3server import S3Server, bucket_fixture, s3_server_fixture  # noqa: F401
from tidesync.connectors.base import Context
from tidesync.connectors.publish import Owner
from tidesync.recovery import recover_location

pytestmark = pytest.mark.integration

OLD, NEW, NEXT = 3000, 2000, 2500


@pytest.fixture
def project(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """A folder whose tidesync.yaml names the bucket as data source ``store``."""
    (tmp_path / "tidesync.yaml").write_text(
        json.dumps(
            {
                "connections": {
                    "store": {
                        "kind": "s3",
                        "endpoint": s3_server.endpoint,
                        "bucket": bucket,
                        "accessKeyId": "${env:TS_S3_KEY}",
                        "accessKeySecret": "${env:TS_S3_SECRET}",
                    }
                }
            }
        )
    )
    env = {"TS_S3_KEY": s3_server.key_id, "TS_S3_SECRET": s3_server.secret}
    for k, v in env.items():  # runs in this process resolve the same references
        monkeypatch.setenv(k, v)
    return {
        "dir": tmp_path,
        "bucket": bucket,
        "env": env,
        "conns": json.loads((tmp_path / "tidesync.yaml").read_text())["connections"],
    }


def writer(mode: str = "truncate") -> dict[str, Any]:
    return {
        "name": "osswriter",
        "parameter": {
            "datasource": "store",
            "object": "out/data.csv",
            "writeMode": mode,
            "maxFileSize": "4KB",
            "maxRetries": 1,
        },
    }


def run(
    project: dict[str, Any], rows: int, gen: str, hooks: str = "", mode: str = "truncate"
) -> Any:
    job = stream_job(project["dir"], writer(mode), rows, gen)
    return tidesync("-v", "run", job, cwd=project["dir"], hooks=hooks, **project["env"])


def write_old(project: dict[str, Any]) -> None:
    ctx = Context(base_dir=project["dir"], where="w", connections=project["conns"])
    write_here(writer()["parameter"], ctx, OLD, "old")


def bucket_rows(s3: S3Server, bucket: str) -> Rows:
    """What a plain client of the bucket sees under out/ (hidden objects left out)."""
    keys = [k for k in s3.keys(bucket, "out/") if k.split("/")[-1].startswith("data")]
    return csv_rows(s3.get(bucket, k).decode() for k in keys)


def tidesync_rows(project: dict[str, Any]) -> Rows:
    ctx = Context(base_dir=project["dir"], where="r", connections=project["conns"])
    return read_here({"datasource": "store", "object": "out/data"}, ctx)


def hidden(s3: S3Server, bucket: str) -> list[str]:
    keys = [k for k in s3.keys(bucket) if "/.tidesync-tmp-" in k]
    uploads = s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return keys + [u["Key"] for u in uploads]


KILLS = [
    pytest.param("publish.begin=kill", "old", "old", id="before-the-journal"),
    pytest.param("publish.journal=kill", "old", "new", id="journal-written"),
    pytest.param("publish.placed=kill@1", "mixed", "new", id="first-object-placed"),
]


@pytest.mark.parametrize(("hooks", "plain", "seen"), KILLS)
def test_a_run_killed_while_publishing_objects_is_completed_by_recover(
    s3_server: S3Server, project: dict[str, Any], hooks: str, plain: str, seen: str
) -> None:
    b = project["bucket"]
    write_old(project)
    assert run(project, NEW, "new", hooks).returncode == KILLED
    want = {"old": exactly("old", OLD), "new": exactly("new", NEW)}
    if plain == "mixed":  # a plain client of the bucket may see a mix until it is completed...
        assert sorted(bucket_rows(s3_server, b)) == ["new", "old"]
    else:
        assert bucket_rows(s3_server, b) == want[plain]
    assert tidesync_rows(project) == want[seen]  # ...tidesync's reader never does
    assert hidden(s3_server, b)

    found = recover_location(f"s3://{b}/out", {"datasource": "store"}, project["conns"])
    assert ("rolled forward" in [f.action for f in found]) == (seen == "new")
    removed = [f.path for f in found if f.action == "removed"]
    assert len(removed) == 1 and removed[0].startswith(f"{b}/out/.tidesync-tmp-")
    assert bucket_rows(s3_server, b) == want[seen]
    assert hidden(s3_server, b) == []


def test_the_next_run_completes_a_killed_publish_of_objects_first(
    s3_server: S3Server, project: dict[str, Any], caplog: Any
) -> None:
    b = project["bucket"]
    write_old(project)
    assert run(project, NEW, "new", "publish.placed=kill@1").returncode == KILLED
    with caplog.at_level("INFO", "tidesync"):
        rep = run_here(stream_job(project["dir"], writer("append"), NEXT, "next"), project["conns"])
    assert rep.status == "succeeded", rep.error
    assert "rolled forward" in caplog.text
    assert bucket_rows(s3_server, b) == {**exactly("new", NEW), **exactly("next", NEXT)}
    assert hidden(s3_server, b) == []


def _dead_pid() -> int:
    p = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    return int(p.stdout)


def test_dead_runs_staged_objects_and_uploads_go_live_runs_stay(
    s3_server: S3Server, project: dict[str, Any]
) -> None:
    b, c = project["bucket"], s3_server.client()
    me = Owner.me("live")
    host = socket.gethostname()
    owners = {
        "dead": {"host": host, "pid": _dead_pid(), "start": None},
        "live": {"host": host, "pid": me.pid, "start": me.start},
        "beating": {"host": "elsewhere", "pid": 1, "beat": time.time()},
    }
    for run_id, owner in owners.items():
        s3_server.put(b, f"out/.tidesync-tmp-{run_id}/owner.json", json.dumps(owner))
        s3_server.put(b, f"out/.tidesync-tmp-{run_id}/00000.00001", "1,x\n")
        up = c.create_multipart_upload(Bucket=b, Key=f"out/.tidesync-tmp-{run_id}/00001.00001")
        c.upload_part(Bucket=b, Key=up["Key"], UploadId=up["UploadId"], PartNumber=1, Body=b"x")
    rec = tidesync(
        "recover", f"s3://{b}/out", "--datasource", "store", cwd=project["dir"], **project["env"]
    )
    assert rec.returncode == 0, rec.stderr
    left = hidden(s3_server, b)
    assert not [k for k in left if "-dead/" in k]
    assert len([k for k in left if "-live/" in k]) == 3  # owner, staged object, upload
    assert len([k for k in left if "-beating/" in k]) == 3
    assert f"aborted upload: {b}/out/.tidesync-tmp-dead/00001.00001" in rec.stdout
    assert rec.stdout.count("kept: ") == 2
