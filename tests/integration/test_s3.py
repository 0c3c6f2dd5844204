"""The file connector on S3-compatible object storage (kind ``s3``: ``oss``, ``ossreader``,
``osswriter``), against a real moto server started by tests/integration/_s3server.py."""

from __future__ import annotations

import gzip
import io
import json
import logging
import pickle
import re
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.connectors.conformance import copy
from tests.integration._s3server import (  # noqa: F401
    S3Server,
    bucket_fixture,
    s3_server_fixture,
    start_server,
)
from tidesync.cli import main
from tidesync.connectors import file as F
from tidesync.connectors.base import Chunk, Context, Split, load
from tidesync.connectors.file.objectstore import Edge, Settings
from tidesync.engine.runner import load_job, run_job
from tidesync.errors import ConfigError, FatalError, RetriableError
from tidesync.spec.params import RunTime

pytestmark = pytest.mark.integration

READER = "job.content[0].reader.parameter"
WRITER = "job.content[0].writer.parameter"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed000_s3"
CSV = "id,name\n1,a\n2,b\n"


@pytest.fixture
def store(
    s3_server: S3Server, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    """Inline parameters of the test bucket, secrets by reference to the environment."""
    monkeypatch.setenv("TS_S3_KEY", s3_server.key_id)
    monkeypatch.setenv("TS_S3_SECRET", s3_server.secret)
    yield {
        "endpoint": s3_server.endpoint,
        "bucket": bucket,
        "accessId": "${env:TS_S3_KEY}",
        "accessKey": "${env:TS_S3_SECRET}",
        "maxRetries": 1,
    }


def rctx(tmp_path: Path, **kw: Any) -> Context:
    return Context(base_dir=tmp_path, where=READER, **kw)


def wctx(tmp_path: Path, **kw: Any) -> Context:
    return Context(base_dir=tmp_path, where=WRITER, **kw)


def read(r: F.Reader, n: int = 4) -> pa.Table:
    batches = []
    for s in r.splits(n):
        for c in r.read(s):
            b = c.batch if isinstance(c, Chunk) else c
            if b is not None and b.num_rows:
                batches.append(b)
    return pa.Table.from_batches(batches)


def write(w: F.Writer, *tables: pa.Table, commit: bool = True) -> list[Any]:
    w.prepare(tables[0].schema)
    results = []
    for i, t in enumerate(tables):
        sink = w.open(Split(i, f"s{i}"))
        for b in t.to_batches():
            sink.write(b)
        results.append(sink.close())
    if commit:
        w.commit(results)
    return results


DATA = pa.table({"id": pa.array([1, 2, 3], pa.int64()), "name": ["a", "b", None]})


# -- names and parameters ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "side"),
    [("s3", "reader"), ("oss", "writer"), ("ossreader", "reader"), ("osswriter", "writer")],
)
def test_object_store_names_load_the_file_connector(name: str, side: str) -> None:
    assert load(name, side) is (F.Reader if side == "reader" else F.Writer)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("side", "params", "message"),
    [
        ("reader", {"object": "a.csv"}, f"{READER}.bucket: is required with object"),
        (
            "reader",
            {"object": "a.csv", "bucket": "b1x", "path": "s3://b1x/a.csv"},
            f"{READER}.path: give either object (with bucket) or path",
        ),
        (
            "reader",
            {
                "object": "a",
                "bucket": "landing",
                "endpoint": "landing.oss-cn-hangzhou.aliyuncs.com",
            },
            f"{READER}.endpoint: 'landing.oss-cn-hangzhou.aliyuncs.com' holds the bucket name; "
            "give the endpoint without it ('oss-cn-hangzhou.aliyuncs.com')",
        ),
        (
            "reader",
            {"object": "a", "bucket": "b1x", "endpoint": "http://127.0.0.1:9000/b1x"},
            f"{READER}.endpoint: 'http://127.0.0.1:9000/b1x': the endpoint is a host",
        ),
        (
            "reader",
            {"object": "a", "bucket": "b1x", "endpoint": "ftp://h"},
            f"{READER}.endpoint: 'ftp://h': give http://HOST[:PORT] or https://HOST[:PORT]",
        ),
        (
            "reader",
            {"object": "a", "bucket": "B_x"},
            f"{READER}.bucket: 'B_x' is not a bucket name",
        ),
        (
            "reader",
            {"object": "a", "bucket": "b1x", "accessId": "AK"},
            f"{READER}.accessKey: is required with accessId",
        ),
        (
            "reader",
            {"object": "a", "bucket": "b1x", "accessId": "AK", "accessKey": "${env:TS_NOT_SET}"},
            f"{READER}.accessKey: environment variable TS_NOT_SET is not set",
        ),
        ("reader", {"path": "s3:///key.csv"}, f"{READER}.path: s3:///key.csv names no bucket"),
        (
            "reader",
            {"object": "a", "datasource": "nope"},
            f"{READER}.datasource: unknown datasource 'nope'",
        ),
        (
            "reader",
            {"object": "a", "datasource": "warehouse"},
            f"{READER}.datasource: 'warehouse' is a postgresql connection",
        ),
        (
            "writer",
            {"object": "out/", "bucket": "b1x"},
            f"{WRITER}.object: 'out/' is a folder; object is the name of the objects to write",
        ),
        (
            "writer",
            {"object": "out/d", "bucket": "b1x", "fileName": "x"},
            f"{WRITER}.fileName: give either object (with bucket) or path and fileName",
        ),
        (
            "writer",
            {"object": "out/d", "bucket": "b1x", "maxRetries": -1},
            f"{WRITER}.maxRetries: must be at least 0",
        ),
    ],
)
def test_bad_parameters_name_their_key_path_and_the_fix(
    tmp_path: Path, side: str, params: dict[str, Any], message: str
) -> None:
    conns = {"warehouse": {"kind": "postgresql", "url": "postgresql://x@h/db"}}
    cls = F.Reader if side == "reader" else F.Writer
    with pytest.raises(ConfigError) as e:
        cls(
            params,
            Context(base_dir=tmp_path, where=f"job.content[0].{side}.parameter", connections=conns),
        )
    assert message in str(e.value)


def test_object_store_keys_are_not_reported_as_unknown(tmp_path: Path) -> None:
    params = {
        "object": "a",
        "endpoint": "http://127.0.0.1:1",
        "bucket": "b1x",
        "accessId": "k",
        "accessKey": "s",
        "region": "r",
        "maxRetries": 0,
        "fileFormat": "csv",
        "colum": 1,
    }
    r = F.Reader(params, rctx(tmp_path))
    assert r.p.unknown_keys() == [f"{READER}.colum: unknown key; did you mean 'column'?"]


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("http://127.0.0.1:9000", ("127.0.0.1:9000", "http", "us-east-1", False)),
        ("127.0.0.1:9000", ("127.0.0.1:9000", "http", "us-east-1", False)),
        (
            "oss-cn-hangzhou.aliyuncs.com",
            ("oss-cn-hangzhou.aliyuncs.com", "https", "oss-cn-hangzhou", True),
        ),
        (
            "https://s3.eu-west-1.amazonaws.com",
            ("s3.eu-west-1.amazonaws.com", "https", "eu-west-1", False),
        ),
    ],
)
def test_the_endpoint_gives_host_scheme_region_and_addressing(
    tmp_path: Path, endpoint: str, expected: tuple[str, str, str, bool]
) -> None:
    from tidesync.connectors.file.objectstore import read_settings

    s = read_settings({"endpoint": endpoint}, rctx(tmp_path))
    assert (s.host, s.scheme, s.region, s.virtual) == expected


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ({"object": "in/a_"}, ["a_1", "a_2"]),  # a key prefix
        ({"object": "in/a_1.csv"}, ["a_1"]),  # an exact key
        ({"object": ["in/a_1.csv", "in/b_1.csv"]}, ["a_1", "b_1"]),  # a list
        ({"object": "in/*_1.csv"}, ["a_1", "b_1"]),  # a wildcard, within one level
        ({"object": "in/**/a_*.csv"}, ["a_1", "a_2", "a_3"]),  # any depth
        ({"object": "in/"}, ["a_1", "a_2", "a_3", "b_1"]),  # a folder: hidden names skipped
        ({"object": "in"}, ["a_1", "a_2", "a_3", "b_1", "in2"]),  # a prefix spans folders
        ({"path": "s3://{bucket}/in/a_*.csv"}, ["a_1", "a_2"]),  # a URL with a glob
    ],
)
def test_objects_are_found_by_prefix_list_and_wildcard(
    s3_server: S3Server,
    store: dict[str, Any],
    tmp_path: Path,
    location: dict[str, Any],
    expected: list[str],
) -> None:
    b = store["bucket"]
    for key in [
        "in/a_1.csv",
        "in/a_2.csv",
        "in/b_1.csv",
        "in/sub/a_3.csv",
        "in2.csv",
        "in/.tidesync-tmp-x/a_9.csv",
        "in/_a_8.csv",
    ]:
        s3_server.put(b, key, f"name\n{key.rsplit('/', 1)[-1].removesuffix('.csv')}\n")
    if "path" in location:
        location = {"path": location["path"].format(bucket=b)}
        params = {k: v for k, v in store.items() if k != "bucket"}
    else:
        params = dict(store)
    r = F.Reader({**params, **location, "skipHeader": True}, rctx(tmp_path))
    assert sorted(read(r).column("name").to_pylist()) == expected


@pytest.mark.parametrize(
    ("location", "message"),
    [  # the folder listed is the key ending in '/': its rows were passed over, the run succeeded
        (
            {"object": "in/"},
            "the object 'in/b/' holds 2 bytes, but a key ending in '/' names a folder",
        ),
        (
            {"object": "in/b"},
            "the object 'in/b/' holds 2 bytes, but a key ending in '/' names a folder",
        ),
        (
            {"object": "in/b/"},
            "the object 'in/b/' holds 2 bytes, but a key ending in '/' names a folder",
        ),
        (
            {"path": "s3://{bucket}/in/b"},
            "the object 'in/b/' holds 2 bytes, but a key ending in '/' names a folder",
        ),
        # listed from above as a file 'in/b', where no object is
        ({"object": "in"}, "/in/b: no such object; the key 'in/b/' holds data"),
        ({"object": "in/**"}, "/in/b: no such object; the key 'in/b/' holds data"),
    ],
)
def test_an_object_whose_key_ends_in_a_slash_and_holds_data_fails_naming_it(
    s3_server: S3Server,
    store: dict[str, Any],
    tmp_path: Path,
    location: dict[str, Any],
    message: str,
) -> None:
    b = store["bucket"]
    s3_server.put(b, "in/a.csv", "1\n")
    s3_server.put(b, "in/b/", "2\n")
    s3_server.put(b, "in/c/", "")  # a folder marker: no data
    s3_server.put(b, "in/c/d.csv", "3\n")
    if "path" in location:
        location = {"path": location["path"].format(bucket=b)}
        params = {k: v for k, v in store.items() if k != "bucket"}
    else:
        params = dict(store)
    r = F.Reader({**params, **location}, rctx(tmp_path))
    with pytest.raises(FatalError, match=re.escape(message)):
        read(r)


def test_an_object_and_a_key_of_its_name_with_a_slash_fail_instead_of_one_read_twice(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    b = store["bucket"]
    s3_server.put(b, "in/b", "1\n")
    s3_server.put(b, "in/b/", "2\n")
    r = F.Reader({**store, "object": "in/**"}, rctx(tmp_path))
    with pytest.raises(FatalError, match="is listed twice: an object of that key and one whose"):
        r.splits(1)


def test_zero_byte_folder_markers_are_no_data(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    b = store["bucket"]
    for key, body in [("in/", ""), ("in/a.csv", "1\n"), ("in/c/", ""), ("in/c/d.csv", "3\n")]:
        s3_server.put(b, key, body)
    for obj in ["in/", "in", "in/c/", "in/**"]:
        r = F.Reader({**store, "object": obj}, rctx(tmp_path))
        assert sorted(read(r).column(0).to_pylist()) == (["3"] if "c" in obj else ["1", "3"])


def test_a_datasource_holds_the_endpoint_without_the_bucket_and_secrets_by_reference(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    s3_server.put(store["bucket"], "iot/x.csv", CSV)
    conns = {
        "landing": {
            "kind": "oss",
            "endpoint": s3_server.endpoint,
            "bucket": store["bucket"],
            "accessKeyId": "${env:TS_S3_KEY}",
            "accessKeySecret": "${env:TS_S3_SECRET}",
            "region": "us-east-1",
        }
    }
    r = F.Reader(
        {"datasource": "landing", "object": "iot/x.csv", "skipHeader": True},
        rctx(tmp_path, connections=conns),
    )
    assert read(r).to_pydict() == {"id": ["1", "2"], "name": ["a", "b"]}


def _gz(text: str) -> bytes:
    return gzip.compress(text.encode())


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("key", "body", "params"),
    [
        ("d.csv", CSV.encode(), {"skipHeader": True}),
        ("d.csv.gz", _gz(CSV), {"skipHeader": True}),
        ("d.jsonl", b'{"id": 1, "name": "a"}\n{"id": 2, "name": "b"}\n', {"fileFormat": "jsonl"}),
        (
            "d.parquet",
            _parquet(pa.table({"id": [1, 2], "name": ["a", "b"]})),
            {"fileFormat": "parquet"},
        ),
    ],
    ids=["csv", "csv.gz", "jsonl", "parquet"],
)
def test_every_format_reads_from_objects(
    s3_server: S3Server,
    store: dict[str, Any],
    tmp_path: Path,
    key: str,
    body: bytes,
    params: dict[str, Any],
) -> None:
    s3_server.put(store["bucket"], key, body)
    r = F.Reader({**store, "object": key, **params}, rctx(tmp_path))
    assert [str(v) for v in read(r).column("id").to_pylist()] == ["1", "2"]


def test_a_large_object_is_read_in_byte_ranges_each_line_once(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(F.reader, "SPLIT_BYTES", 1000)
    lines = [f"{i},row number {i}" for i in range(1000)]
    s3_server.put(store["bucket"], "big.csv", "\n".join(lines) + "\n")
    r = F.Reader(
        {**store, "object": "big.csv", "column": [{"index": 0, "type": "long"}]}, rctx(tmp_path)
    )
    splits = r.splits(4)
    assert len(splits) > 10
    got = read(r).column(0).to_pylist()
    assert sorted(got) == list(range(1000))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("shrunk", r"in/b\.csv: the file changed after the job was planned \(8 bytes when listed"),
        ("grown", r"in/b\.csv: the file changed after the job was planned \(8 bytes when listed"),
        ("deleted", r"in/b\.csv: no such file \(it was listed"),
    ],
)
def test_an_object_changed_between_listing_and_reading_fails_its_split(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path, change: str, message: str
) -> None:
    b = store["bucket"]
    s3_server.put(b, "in/a.csv", "1\n2\n")
    s3_server.put(b, "in/b.csv", "3\n4\n5\n6\n")
    r = F.Reader(
        {**store, "object": "in/", "column": [{"index": 0, "type": "long"}]}, rctx(tmp_path)
    )
    first, second = r.splits(4)
    if change == "deleted":
        s3_server.client().delete_object(Bucket=b, Key="in/b.csv")
    else:
        s3_server.put(b, "in/b.csv", "3\n" if change == "shrunk" else "3\n4\n5\n6\n7\n8\n")
    assert [v for c in r.read(first) for v in c.column(0).to_pylist()] == [1, 2]
    with pytest.raises(FatalError if change == "deleted" else RetriableError, match=message):
        list(r.read(second))


def test_a_reader_and_its_splits_pickle_without_their_connection(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    s3_server.put(store["bucket"], "p.csv", CSV)
    r = F.Reader({**store, "object": "p.csv", "skipHeader": True}, rctx(tmp_path))
    splits = r.splits(1)
    r2 = pickle.loads(pickle.dumps(r))
    assert read(r2).num_rows == 2 and pickle.loads(pickle.dumps(splits)) == splits
    assert r2.estimate() == 2  # what splits() planned travels with it, as plain data


def test_a_missing_object_fails_naming_it_the_bucket_and_the_endpoint(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    r = F.Reader({**store, "object": "iot_log_201911060130"}, rctx(tmp_path))
    with pytest.raises(RetriableError) as e:  # it may arrive: worth a retry
        r.splits(1)
    assert str(e.value) == (
        f"{READER}.object: no object matches 'iot_log_201911060130' (endpoint "
        f"{s3_server.endpoint}, bucket '{store['bucket']}')"
    )


# -- writing -----------------------------------------------------------------------------------


def test_objects_are_named_from_object_and_hold_the_data(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    w = F.Writer({**store, "object": "inst/t/20240101/data.csv", "header": True}, wctx(tmp_path))
    write(w, DATA.slice(0, 2), DATA.slice(2))
    b = store["bucket"]
    assert s3_server.keys(b) == [
        "inst/t/20240101/data__00000.csv",
        "inst/t/20240101/data__00001.csv",
    ]
    assert s3_server.get(b, "inst/t/20240101/data__00000.csv") == b"id,name\n1,a\n2,b\n"


def test_nothing_is_visible_before_commit_and_abort_leaves_nothing(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    b = store["bucket"]
    w = F.Writer({**store, "object": "out/day/data"}, wctx(tmp_path))
    results = write(w, DATA, DATA, commit=False)
    staged = s3_server.keys(b)
    assert staged and not any(k.startswith("out/day/data") for k in staged)
    assert all("/.tidesync-tmp-" in k for k in staged)
    w.abort(results)
    assert s3_server.keys(b) == []  # no staged object, no folder marker


def test_a_failed_commit_takes_back_the_objects_it_placed(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    b = store["bucket"]
    w = F.Writer({**store, "object": "out/data", "writeMode": "append"}, wctx(tmp_path))
    results = write(w, DATA, DATA, commit=False)
    s3_server.client().delete_object(Bucket=b, Key=results[1]["files"][0].split("/", 1)[1])
    with pytest.raises(FatalError):  # the second staged object is gone: its copy fails
        w.commit(results)
    assert s3_server.keys(b) == []


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_rerun_with_truncate_gives_the_same_objects_byte_for_byte(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path, fmt: str
) -> None:
    b = store["bucket"]
    s3_server.put(b, "out/data_old.csv", "stale")
    s3_server.put(b, "out/other.csv", "kept")

    def run() -> dict[str, bytes]:
        w = F.Writer(
            {**store, "object": "out/data", "fileFormat": fmt, "writeMode": "truncate"},
            wctx(tmp_path),
        )
        write(w, DATA, DATA.slice(1))
        return {k: s3_server.get(b, k) for k in s3_server.keys(b)}

    first = run()
    assert sorted(first) == ["out/data__00000", "out/data__00001", "out/other.csv"]
    assert run() == first


def test_append_writes_beside_existing_objects(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    b = store["bucket"]
    s3_server.put(b, "out/data.csv", "old\n")
    w = F.Writer({**store, "object": "out/data.csv", "writeMode": "append"}, wctx(tmp_path))
    write(w, DATA)
    assert s3_server.keys(b) == ["out/data-1.csv", "out/data.csv"]
    assert s3_server.get(b, "out/data.csv") == b"old\n"


def test_non_conflict_fails_before_writing_when_an_object_of_the_name_exists(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    b = store["bucket"]
    s3_server.put(b, "out/data.csv.bak", "x")
    w = F.Writer({**store, "object": "out/data.csv", "writeMode": "nonConflict"}, wctx(tmp_path))
    with pytest.raises(FatalError, match=r"nonConflict, but .*out/data\.csv\.bak exists"):
        w.prepare(DATA.schema)
    assert s3_server.keys(b) == ["out/data.csv.bak"]


def test_max_file_size_cuts_numbered_parts(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    big = pa.table({"id": pa.array(range(3000), pa.int64())})
    w = F.Writer({**store, "object": "out/data.csv", "maxFileSize": 4000}, wctx(tmp_path))
    write(w, big)
    keys = s3_server.keys(store["bucket"])
    assert len(keys) > 2 and keys[0] == "out/data_part00001.csv"
    body = b"".join(s3_server.get(store["bucket"], k) for k in keys)
    assert body.decode().split() == [str(i) for i in range(3000)]


def test_an_object_store_copy_runs_through_the_engine(
    s3_server: S3Server, store: dict[str, Any], tmp_path: Path
) -> None:
    s3_server.put(store["bucket"], "in/x.csv", CSV)
    r = F.Reader({**store, "object": "in/", "skipHeader": True}, rctx(tmp_path))
    w = F.Writer({**store, "object": "out/copy.jsonl", "fileFormat": "jsonl"}, wctx(tmp_path))
    assert copy(r, w) == []
    assert s3_server.get(store["bucket"], "out/copy.jsonl") == (
        b'{"id":"1","name":"a"}\n{"id":"2","name":"b"}\n'
    )


# -- errors ------------------------------------------------------------------------------------


def _job(
    tmp_path: Path,
    reader: dict[str, Any],
    writer: dict[str, Any],
    setting: dict[str, Any] | None = None,
) -> Path:
    path = tmp_path / "job.json"
    path.write_text(
        json.dumps(
            {"job": {"setting": setting or {}, "content": [{"reader": reader, "writer": writer}]}}
        )
    )
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing bucket", "the bucket does not exist; check bucket"),
        ("wrong secret", "access denied while trying to look up"),
        ("unknown key id", "access denied while trying to look up"),
        ("unreachable endpoint", "cannot reach the endpoint"),
    ],
)
@pytest.mark.parametrize("side", ["reader", "writer"])
def test_store_failures_name_the_endpoint_and_bucket_never_the_secret(
    s3_server: S3Server,
    store: dict[str, Any],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    message: str,
    side: str,
) -> None:
    secret = s3_server.secret
    params = dict(store, maxRetries=0)
    endpoint, b = s3_server.endpoint, store["bucket"]
    if case == "missing bucket":
        params["bucket"] = b = "no-such-bucket"
    elif case == "wrong secret":
        secret = "WrongSecretValue1234567890"
        monkeypatch.setenv("TS_S3_SECRET", secret)
    elif case == "unknown key id":
        monkeypatch.setenv("TS_S3_KEY", "AKIANOSUCHKEY0000000")
    else:
        with start_server(auth=False) as gone:
            endpoint = gone.endpoint
        params["endpoint"] = endpoint
    s3_server.put(store["bucket"], "in/x.csv", CSV)
    local = tmp_path / "local.csv"
    local.write_text(CSV)
    if side == "reader":
        job = _job(
            tmp_path,
            {"name": "ossreader", "parameter": {**params, "object": "in/x.csv"}},
            {"name": "txtfilewriter", "parameter": {"path": "out", "fileName": "x.csv"}},
        )
    else:
        job = _job(
            tmp_path,
            {"name": "txtfilereader", "parameter": {"path": str(local)}},
            {"name": "osswriter", "parameter": {**params, "object": "out/x.csv"}},
        )
    caplog.set_level(logging.DEBUG)
    report = run_job(
        load_job(job, {}, RunTime.of("20240101000000")), report_path=tmp_path / "report.json"
    )
    assert report.status == "failed"
    assert message in report.error and f"endpoint {endpoint}, bucket '{b}'" in report.error
    everything = report.error + (tmp_path / "report.json").read_text() + caplog.text
    assert secret not in everything and s3_server.secret not in everything


def test_throttling_still_failing_after_the_retries_is_retriable() -> None:
    edge = Edge(Settings(host="127.0.0.1:9", scheme="http", attempts=4))
    e = OSError(
        "When uploading part for key 'k' in bucket 'b1x': AWS Error SLOW_DOWN during "
        "UploadPart operation: Please reduce your request rate."
    )
    err = edge.translate(e, "write", "b1x/k")
    assert isinstance(err, RetriableError)
    assert str(err).startswith(
        "endpoint http://127.0.0.1:9, bucket 'b1x': write 'k' failed after 4"
    )


def test_a_connection_lost_after_the_endpoint_answered_is_retriable() -> None:
    e = OSError(
        "When reading from key 'k' in bucket 'b1x': AWS Error NETWORK_CONNECTION during "
        "GetObject operation: curlCode: 7, Could not connect to server"
    )
    edge = Edge(Settings(host="127.0.0.1:9", scheme="http"))
    assert isinstance(edge.translate(e, "read", "b1x/k"), FatalError)
    edge.reached = True
    assert isinstance(edge.translate(e, "read", "b1x/k"), RetriableError)


def test_a_server_stopped_mid_job_publishes_nothing_and_a_rerun_completes(tmp_path: Path) -> None:
    reader = {
        "name": "streamreader",
        "parameter": {
            "column": [{"type": "long", "incr": "0"}, {"type": "string", "value": "x" * 40}],
            "recordCount": 65536 * 12,
        },
    }

    def job_for(srv: S3Server, b: str, setting: dict[str, Any] | None = None) -> Path:
        writer = {
            "name": "osswriter",
            "parameter": {
                "endpoint": srv.endpoint,
                "bucket": b,
                "accessId": "k",
                "accessKey": "s",
                "maxRetries": 0,
                "object": "out/data.csv",
            },
        }
        return _job(tmp_path, reader, writer, setting)

    with start_server(auth=False) as srv:
        b = srv.make_bucket()
        slow = {"speed": {"record": 65536 * 4}}  # 3 s: time enough to stop the server
        job = load_job(job_for(srv, b, slow), {}, RunTime.of("20240101000000"))
        done: list[Any] = []
        t = threading.Thread(target=lambda: done.append(run_job(job)), daemon=True)
        t.start()
        uploading: list[str] = []
        deadline = time.monotonic() + 20
        while not uploading and time.monotonic() < deadline:
            time.sleep(0.2)  # until a part of the staged object is on the server
            listed = srv.client().list_multipart_uploads(Bucket=b).get("Uploads", [])
            uploading = [
                u["Key"]
                for u in listed
                if srv.client()
                .list_parts(Bucket=b, Key=u["Key"], UploadId=u["UploadId"])
                .get("Parts")
            ]
        assert uploading and all("/.tidesync-tmp-" in k for k in uploading), uploading
        # nothing published, nothing staged complete yet: only the run's owner record
        assert [re.sub(r"-[0-9a-f]{12}/", "-RUN/", k) for k in srv.keys(b)] == [
            "out/.tidesync-tmp-RUN/owner.json"
        ]
        assert t.is_alive(), "the job ended before the server was stopped"
        srv.stop()
        t.join(60)
    assert done and done[0].status == "failed"
    assert f"endpoint {srv.endpoint}, bucket '{b}'" in done[0].error
    with start_server(auth=False) as fresh:
        b2 = fresh.make_bucket()
        report = run_job(load_job(job_for(fresh, b2), {}, RunTime.of("20240101000000")))
        assert report.status == "succeeded", report.error
        assert fresh.keys(b2) == ["out/data.csv"]
        assert len(fresh.get(b2, "out/data.csv").splitlines()) == 65536 * 12


# -- seed 000: a CSV object every 15 minutes, each synced by its own instance ---------------------


@pytest.fixture
def example(
    s3_server: S3Server, bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    root = tmp_path / "seed000_s3"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns(".tidesync", "*.db"))
    monkeypatch.setenv("IOT_OSS_ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("IOT_OSS_BUCKET", bucket)
    monkeypatch.setenv("IOT_OSS_KEY", s3_server.key_id)
    monkeypatch.setenv("IOT_OSS_SECRET", s3_server.secret)
    monkeypatch.chdir(root)
    return root


def _dropper(root: Path) -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("drop_objects", root / "drop_objects.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _iot_log(root: Path) -> dict[str, list[str]]:
    with sqlite3.connect(root / "warehouse.db") as con:
        rows = con.execute("SELECT filename, ts FROM iot_log ORDER BY ts").fetchall()
    out: dict[str, list[str]] = {}
    for filename, ts in rows:
        out.setdefault(filename, []).append(ts)
    return out


FIRST, LAST, MISSING = (
    datetime(2019, 11, 6, 0, 0),
    datetime(2019, 11, 6, 3, 0),
    datetime(2019, 11, 6, 1, 30),
)


def _check_each_instance_synced_its_own_object(root: Path, slots: list[datetime]) -> None:
    synced = _iot_log(root)
    assert sorted(synced) == [f"{s:%Y%m%d%H%M}" for s in slots if s != MISSING]
    for name, stamps in synced.items():
        slot = datetime.strptime(name, "%Y%m%d%H%M")
        assert len(stamps) == 3  # the three readings of that object, once each
        for ts in stamps:
            assert slot - timedelta(minutes=15) <= datetime.strptime(ts, "%Y-%m-%d %H:%M:%S") < slot


def test_seed000_each_run_syncs_exactly_its_own_object(example: Path, s3_server: S3Server) -> None:
    drop = _dropper(example)
    runner = CliRunner()
    slots = drop.quarters(FIRST, LAST)
    codes = {}
    for slot in slots:
        if slot != MISSING:
            drop.drop(slot)
        r = runner.invoke(
            main,
            [
                "run",
                "iot_sync.json",
                "-p",
                "filename=$[yyyymmddhh24mi]",
                "--cyctime",
                f"{slot:%Y%m%d%H%M%S}",
            ],
        )
        codes[slot] = r.exit_code
        if slot == MISSING:
            assert "no object matches 'iot_log_201911060130'" in r.output
        assert s3_server.secret not in r.output
    assert {s for s, c in codes.items() if c != 0} == {MISSING}
    _check_each_instance_synced_its_own_object(example, slots)


def test_seed000_through_the_scheduler_one_quarter_at_a_time(
    example: Path, s3_server: S3Server
) -> None:
    from tidesync.scheduler.store import SqliteStore

    drop = _dropper(example)
    runner = CliRunner()
    slots = drop.quarters(FIRST, LAST)
    for slot in slots:
        if slot != MISSING:
            drop.drop(slot)
        r = runner.invoke(
            main,
            ["scheduler", "run-once", "--at", f"{slot:%Y%m%d%H%M%S}", "--project", str(example)],
        )
        assert r.exit_code in (0, 1), r.output
    instances = SqliteStore(example / ".tidesync" / "state.db").listing()
    assert len(instances) == len(slots)
    failed = [i for i in instances if i.state != "succeeded"]
    assert [(i.cyctime, i.state) for i in failed] == [(f"{MISSING:%Y%m%d%H%M%S}", "failed")]
    assert "no object matches 'iot_log_201911060130'" in failed[0].error
    assert s3_server.secret not in failed[0].error
    _check_each_instance_synced_its_own_object(example, slots)
