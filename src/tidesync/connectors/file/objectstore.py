"""Object stores for the file connector (kind ``s3``; ``oss``, DataX ``ossreader`` / ``osswriter``):
any S3-compatible bucket (AWS S3, Alibaba OSS, MinIO, Ceph ...) as a ``pyarrow.fs.FileSystem``.

Where to connect comes from a named data source (``datasource: landing`` in ``connections:``),
from inline parameters as DataX writes them (``endpoint``, ``bucket``, ``accessId``,
``accessKey``), or both (inline wins); secrets are written by reference (``${env:NAME}``).

Data moves through pyarrow's own ``S3FileSystem``: reads are ranged GETs streamed in blocks, writes
are multipart uploads in the background, both native. :class:`Edge` wraps it in a
``PyFileSystem`` so that the file connector sees plain file-system calls, and

- translates failures at the edge: a missing bucket, refused credentials and an unreachable
  endpoint are FatalErrors naming the endpoint and the bucket (never a secret); throttling and
  transient network or server errors, still failing after the retries with backoff
  (``maxRetries``), are RetriableErrors;
- gives objects plain object semantics: there are no folders to create, and objects are deleted
  through botocore (DeleteObjects, 1000 keys a request), since pyarrow's S3 file system writes
  an empty ``folder/`` marker object whenever it deletes one, and a failed job must leave
  nothing behind. Copying is one server-side CopyObject (pyarrow's), or for an object over
  5 GB a multipart copy (s3fs's). botocore and s3fs come with the ``s3`` extra.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import importlib.util
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from tidesync.connections import connection, resolve_secrets
from tidesync.connectors.base import Context, Params
from tidesync.errors import (
    ConfigError,
    FatalError,
    RetriableError,
    TidesyncError,
    redact,
    userinfo_spans,
)

__all__ = ["KEYS", "Settings", "Edge", "read_settings", "locate", "object_urls", "object_target"]

#: the parameters this module reads (besides the file connector's own)
KEYS = (
    "datasource",
    "endpoint",
    "bucket",
    "accessKeyId",
    "accessId",
    "accessKeySecret",
    "accessKey",
    "securityToken",
    "region",
    "maxRetries",
    "virtualHostedStyle",
    "object",
)
_PAIRS = {
    "accessKeyId": "accessKeySecret",
    "accessId": "accessKey",
    "accessKeySecret": "accessKeyId",
    "accessKey": "accessId",
}
#: ``kind`` values a data source may have to be used here
KINDS = ("s3", "oss", "minio")
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")
#: classes of store failures, matched against :func:`error_code` (never against the message,
#: which holds keys that may look like anything)
_NO_BUCKET = re.compile(r"NO_SUCH_BUCKET|NoSuchBucket")
_DENIED = re.compile(
    r"ACCESS_DENIED|AccessDenied|INVALID_ACCESS_KEY_ID|InvalidAccessKeyId|SIGNATURE_DOES_NOT_MATCH|"
    r"SignatureDoesNotMatch|ExpiredToken|InvalidToken|InvalidSecurity|RequestTimeTooSkewed|"
    r"PermissionError|\b403$"
)
_UNREACHABLE = re.compile(
    r"NETWORK_CONNECTION|EndpointConnectionError|ConnectTimeoutError|ConnectionError"
)
_TRANSIENT = re.compile(
    r"SLOW_DOWN|SlowDown|THROTTL|Throttl|REQUEST_LIMIT_EXCEEDED|TooManyRequests|"
    r"SERVICE_UNAVAILABLE|ServiceUnavailable|INTERNAL_FAILURE|InternalError|REQUEST_TIMEOUT|"
    r"RequestTimeout|ReadTimeoutError|TimeoutError|ConnectionClosedError|\b(?:5\d\d|429)$|"
    r"NETWORK_CONNECTION|EndpointConnectionError|ConnectTimeoutError|ConnectionError|EBUSY|EREMOTEIO"
)
_AWS_ERROR = re.compile(r"AWS Error (\w+)(?: \(HTTP status (\d+)\))?")
_REQUEST_ID = re.compile(r"\s*\(Request ID: [^)]*\)")


# -- where to connect ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """Where and how to connect (plain data; the secrets stay out of ``repr``)."""

    host: str | None = None  # "127.0.0.1:9000"; None: AWS S3 itself
    scheme: str = "https"
    region: str | None = None
    bucket: str | None = None  # the bucket ``object`` refers to
    key_id: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    virtual: bool = False  # virtual-hosted-style addressing (bucket.host), as OSS requires
    attempts: int = 4  # tries per request, the first included
    origin: str = ""  # "datasource 'landing'", for messages

    @property
    def endpoint(self) -> str:
        if self.host:
            return f"{self.scheme}://{self.host}"
        return f"AWS S3 ({self.region})" if self.region else "AWS S3"

    def where(self, bucket: str | None) -> str:
        return f"endpoint {self.endpoint}, bucket {bucket!r}" if bucket else self.endpoint

    def credentials_hint(self) -> str:
        keys = "accessKeyId / accessKeySecret"
        return f"{keys} of {self.origin}" if self.origin else keys


def read_settings(params: dict[str, Any], ctx: Context) -> Settings:
    """Connection settings from ``datasource`` and inline parameters; ConfigError lists every
    problem, each under its key path (``connections.NAME.KEY`` for a data source's)."""
    p = Params(params, ctx)
    conn, cwhere, origin = _datasource(p, ctx)
    unresolved: list[str] = []  # keys whose ${env:NAME} is not set

    def value(key: str, *aliases: str) -> tuple[str | None, str]:
        v = p.str(key, aliases=aliases)
        if v is not None:
            used = next(k for k in (key, *aliases) if p.raw.get(k) not in (None, ""))
            try:
                return str(resolve_secrets(v, ctx.path(used))), ctx.path(used)
            except ConfigError as e:
                p.problems.extend(e.problems)
                unresolved.append(used)
                return None, ctx.path(used)
        for k in (key, *aliases):
            if conn.get(k) not in (None, ""):
                return str(conn[k]), f"{cwhere}.{k}"
        return None, ctx.path(key)

    bucket, bucket_at = value("bucket")
    if bucket is not None and not _valid_bucket(bucket):
        p.problems.append(
            f"{bucket_at}: {bucket!r} is not a bucket name (3-63 characters: lowercase letters, "
            "digits, '.', '-')"
        )
    endpoint, endpoint_at = value("endpoint")
    host, scheme = None, "https"
    if endpoint is not None:
        host, scheme = _endpoint(p, endpoint, endpoint_at, bucket)
    region, _ = value("region")
    if region is None:
        region = _region_of(host) if host else None
    key_id, key_at = value("accessKeyId", "accessId")
    secret, secret_at = value("accessKeySecret", "accessKey")
    token, _ = value("securityToken")
    if (key_id is None) != (secret is None) and not unresolved:
        given = key_at if secret is None else secret_at
        base, _, name = given.rpartition(".")
        p.problems.append(
            f"{base}.{_PAIRS[name]}: is required with {name} (or leave both out to use "
            "the AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY environment)"
        )
    virtual = bool(host and host.endswith(".aliyuncs.com"))
    if str(conn.get("virtualHostedStyle", "")).lower() in ("true", "false"):
        virtual = str(conn["virtualHostedStyle"]).lower() == "true"
    virtual = p.bool("virtualHostedStyle", virtual)
    retries = p.int("maxRetries", None, minimum=0)
    if retries is None:
        retries = _conn_int(p, conn, cwhere, "maxRetries", 3)
    p.done()
    return Settings(
        host=host,
        scheme=scheme,
        region=region,
        bucket=bucket,
        key_id=key_id,
        secret=secret,
        token=token,
        virtual=virtual,
        attempts=retries + 1,
        origin=origin,
    )


def _datasource(p: Params, ctx: Context) -> tuple[dict[str, Any], str, str]:
    name = p.str("datasource")
    if not name:
        return {}, "", ""
    cwhere = f"connections.{name}"
    try:
        conn = connection(ctx.connections, name, ctx.path("datasource"))
    except ConfigError as e:
        p.problems.extend(e.problems)
        return {}, cwhere, f"datasource {name!r}"
    kind = str(conn.get("kind", "s3")).lower()
    if kind not in KINDS:
        p.problem(
            "datasource",
            f"{name!r} is a {kind} connection; an object store needs one of kind "
            f"{', '.join(KINDS)} ({cwhere}.kind)",
        )
    return conn, cwhere, f"datasource {name!r}"


def _conn_int(p: Params, conn: dict[str, Any], cwhere: str, key: str, default: int) -> int:
    v = conn.get(key)
    if v in (None, ""):
        return default
    try:
        n = int(str(v))
        if n < 0:
            raise ValueError
        return n
    except ValueError:
        p.problems.append(f"{cwhere}.{key}: must be a whole number (0 or more), got {v!r}")
        return default


def _valid_bucket(name: str) -> bool:
    return bool(re.fullmatch(r"[a-z0-9][a-z0-9.\-_]{1,61}[a-z0-9]", name))


def _endpoint(p: Params, raw: str, at: str, bucket: str | None) -> tuple[str | None, str]:
    s = raw.strip()
    scheme, sep, rest = s.partition("://")
    if not sep:
        rest = s
        host_only = s.split("/", 1)[0].rsplit(":", 1)[0]
        scheme = "http" if host_only in ("localhost", "127.0.0.1", "[::1]") else "https"
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        p.problems.append(f"{at}: {redact(raw)!r}: give http://HOST[:PORT] or https://HOST[:PORT]")
        return None, "https"
    host = rest.rstrip("/")
    if "@" in host:
        p.problems.append(
            f"{at}: {redact(raw)!r} holds credentials; give them as accessKeyId / "
            "accessKeySecret (by reference: ${env:NAME})"
        )
        return None, scheme
    if not host or "/" in host:
        p.problems.append(
            f"{at}: {redact(raw)!r}: the endpoint is a host (and port) only, such as "
            "oss-cn-hangzhou.aliyuncs.com or http://127.0.0.1:9000; the bucket goes in bucket, "
            "the key in object or the s3:// URL"
        )
        return None, scheme
    if bucket and host.startswith(f"{bucket}.") and host.count(".") >= 2:
        bare = host[len(bucket) + 1 :]
        p.problems.append(
            f"{at}: {raw!r} holds the bucket name; give the endpoint without it ({bare!r}) "
            f"and the bucket in bucket"
        )
    return host, scheme


def _region_of(host: str) -> str:
    """The signing region an endpoint implies: ``oss-cn-hangzhou.aliyuncs.com`` ->
    ``oss-cn-hangzhou``, ``s3.eu-west-1.amazonaws.com`` -> ``eu-west-1``; else us-east-1."""
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    if name.endswith(".aliyuncs.com"):
        return name.split(".", 1)[0].removesuffix("-internal")
    m = re.match(r"s3[.-](?:dualstack\.)?([a-z]{2}-[a-z-]+-\d)\.amazonaws\.com", name)
    return m.group(1) if m else "us-east-1"


# -- locations -----------------------------------------------------------------------------------


def locate(
    scheme: str, bucket_and_key: str, params: dict[str, Any], ctx: Context
) -> tuple[pafs.FileSystem, str]:
    """The file system of an ``s3://bucket/key`` (``s3a://``, ``oss://``) URL and the path
    ``bucket/key`` in it. Builds no connection yet: the first request does."""
    url = f"{scheme}://{bucket_and_key}"
    if any(True for _ in userinfo_spans(url)):
        raise ConfigError(
            f"{ctx.path('path')}: {redact(url)!r} holds credentials; give them as accessKeyId / "
            "accessKeySecret (by reference: ${env:NAME}) or in a datasource"
        )
    settings = read_settings(params, ctx)
    bucket, _, key = bucket_and_key.partition("/")
    if not bucket:
        raise ConfigError(
            f"{ctx.path('path')}: {scheme}://{bucket_and_key} names no bucket; "
            f"write {scheme}://BUCKET/KEY"
        )
    if not _valid_bucket(bucket):
        raise ConfigError(
            f"{ctx.path('path')}: {bucket!r} is not a bucket name (3-63 characters: lowercase "
            "letters, digits, '.', '-')"
        )
    path = f"{bucket}/{key}" if key else bucket
    return pafs.PyFileSystem(Edge(settings)), path


def _bucket(p: Params, ctx: Context) -> tuple[str | None, bool]:
    """The bucket ``object`` refers to (inline, else the data source's), and whether the
    connection settings are sound (their problems are recorded on ``p``)."""
    try:
        return read_settings(p.raw, ctx).bucket, True
    except ConfigError as e:
        p.problems.extend(x for x in e.problems if x not in p.problems)
        b = p.raw.get("bucket")
        return (str(b) if isinstance(b, str) and b else None), False


def object_urls(p: Params, ctx: Context) -> list[str]:
    """The reader's ``object`` entries (a key, a key prefix, or a pattern with ``* ? **``) as
    ``s3://bucket/key`` URLs; problems are recorded on ``p``."""
    objects = p.list("object", required=True) or []
    bucket, sound = _bucket(p, ctx)
    if p.get("path") is not None:
        p.problem("path", "give either object (with bucket) or path (an s3:// URL), not both")
    if bucket is None:
        if sound:
            p.problem("bucket", "is required with object (inline, or in the datasource's settings)")
        return []
    urls = []
    for i, o in enumerate(objects):
        if not isinstance(o, str) or not o.strip():
            key = f"object[{i}]" if len(objects) > 1 else "object"
            p.problem(key, f"must be an object key, prefix or pattern, got {o!r}")
            continue
        urls.append(f"s3://{bucket}/{o.strip().lstrip('/')}")
    return urls


def object_target(p: Params, ctx: Context) -> tuple[str | None, str | None]:
    """The writer's ``object`` (``instance/table/20240101/data``) as the file writer's ``path``
    (``s3://bucket/instance/table/20240101``) and ``fileName`` (``data``)."""
    obj = p.str("object", required=True)
    bucket, sound = _bucket(p, ctx)
    for other in ("path", "fileName"):
        if p.get(other) is not None:
            p.problem(other, f"give either object (with bucket) or path and fileName, not {other}")
    if bucket is None and sound:
        p.problem("bucket", "is required with object (inline, or in the datasource's settings)")
    if not obj:
        return None, None
    key = obj.strip().lstrip("/")
    if not key or key.endswith("/"):
        p.problem(
            "object",
            f"{obj!r} is a folder; object is the name of the objects to write, "
            f"such as {(key or '') + 'data'!r}",
        )
        return None, None
    folder, _, name = key.rpartition("/")
    if name.startswith("."):
        p.problem("object", f"{obj!r}: the object name must not start with '.'")
        return None, None
    if bucket is None:
        return None, None
    return (f"s3://{bucket}/{folder}" if folder else f"s3://{bucket}"), name


# -- the file system -----------------------------------------------------------------------------


class Edge(pafs.FileSystemHandler):
    """pyarrow's S3 file system behind plain object semantics and translated errors; serves as
    the handler of a ``pyarrow.fs.PyFileSystem``. Streams are pyarrow's own (native speed)."""

    object_store = True

    def __init__(self, settings: Settings):
        self.settings = settings
        self._s3: pafs.S3FileSystem | None = None
        self._boto: Any = None
        self._s3fs: Any = None
        self._lock = threading.Lock()
        self._prefetch: threading.Thread | None = None
        self._buckets: set[str] = set()  # seen to exist
        self.reached = False  # the endpoint has answered at least once

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])  # type: ignore[misc]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Edge) and other.settings == self.settings

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.settings)

    # -- clients

    @property
    def s3(self) -> pafs.S3FileSystem:
        if self._s3 is None:
            s = self.settings
            self._s3 = pafs.S3FileSystem(
                access_key=s.key_id,
                secret_key=s.secret,
                session_token=s.token,
                region=s.region,
                scheme=s.scheme,
                endpoint_override=s.host,
                force_virtual_addressing=s.virtual,
                retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=s.attempts),
                connect_timeout=10,
            )
        return self._s3

    @property
    def boto(self) -> Any:
        """A botocore S3 client: deletes objects as objects (no folder markers)."""
        with self._lock:
            if self._boto is None:
                self._boto = self._make_boto()
        return self._boto

    @property
    def s3fs(self) -> Any:
        """s3fs, for what neither of the others does: copying an object over 5 GB in parts."""
        with self._lock:
            if self._s3fs is None:
                self._s3fs = self._make_s3fs()
        return self._s3fs

    def prefetch(self) -> None:
        """Build the botocore client on a thread of its own while data moves (importing it
        takes a few tenths of a second; the commit needs it)."""
        if self._boto is None and self._prefetch is None:
            self._prefetch = threading.Thread(target=self._warm, daemon=True, name="s3-client")
            self._prefetch.start()

    def _warm(self) -> None:
        with contextlib.suppress(Exception):  # the commit reports what goes wrong here
            _ = self.boto

    def _make_boto(self) -> Any:
        try:
            import botocore.session
            from botocore.config import Config
        except ModuleNotFoundError:
            raise ConfigError(_S3FS_MISSING) from None
        s = self.settings
        return botocore.session.get_session().create_client(
            "s3",
            region_name=s.region,
            endpoint_url=f"{s.scheme}://{s.host}" if s.host else None,
            aws_access_key_id=s.key_id,
            aws_secret_access_key=s.secret,
            aws_session_token=s.token,
            config=Config(
                retries={"max_attempts": s.attempts, "mode": "standard"},
                connect_timeout=10,
                s3={"addressing_style": "virtual" if s.virtual else "path"},
            ),
        )

    def _make_s3fs(self) -> Any:
        try:
            import s3fs
        except ModuleNotFoundError:
            raise ConfigError(_S3FS_MISSING) from None
        s = self.settings
        return s3fs.S3FileSystem(
            key=s.key_id,
            secret=s.secret,
            token=s.token,
            endpoint_url=f"{s.scheme}://{s.host}" if s.host else None,
            client_kwargs={"region_name": s.region} if s.region else {},
            config_kwargs={
                "retries": {"max_attempts": s.attempts, "mode": "standard"},
                "connect_timeout": 10,
                "s3": {"addressing_style": "virtual" if s.virtual else "path"},
            },
            skip_instance_cache=True,
            use_listings_cache=False,
        )

    # -- errors

    @contextlib.contextmanager
    def _edge(self, action: str, path: str) -> Iterator[None]:
        try:
            yield
        except (TidesyncError, FileNotFoundError, NotImplementedError):
            raise
        except Exception as e:
            raise self.translate(e, action, path) from e
        self.reached = True

    def translate(self, e: BaseException, action: str, path: str) -> TidesyncError:
        """A store failure as the error the caller should act on, naming the endpoint and the
        bucket; the message never holds a secret."""
        bucket, _, key = path.partition("/")
        where = self.settings.where(bucket)
        code = error_code(e)
        text = self._clean(f"{type(e).__name__}: {e}" if _is_boto(e) else str(e))
        if _NO_BUCKET.search(code):
            return FatalError(f"{where}: the bucket does not exist; check bucket (and endpoint)")
        if _DENIED.search(code):
            return FatalError(
                f"{where}: access denied while trying to {action} {key or bucket!r}: {text}; "
                f"check {self.settings.credentials_hint()} and the key's rights on the bucket"
            )
        if _UNREACHABLE.search(code) and not self.reached:
            return FatalError(
                f"{where}: cannot reach the endpoint ({text}); check endpoint "
                "(host, port, http or https)"
            )
        if _TRANSIENT.search(code):
            return RetriableError(
                f"{where}: {action} {key or bucket!r} failed after {self.settings.attempts} "
                f"attempt(s): {text}"
            )
        return FatalError(f"{where}: cannot {action} {key or bucket!r}: {text}")

    def _clean(self, text: str) -> str:
        text = _REQUEST_ID.sub("", text).strip()
        for secret in (self.settings.secret, self.settings.token):
            if secret and len(secret) >= 8:  # a store never echoes it; this is a last guard
                text = text.replace(secret, "***")
        return redact(text)

    def _check_bucket(self, bucket: str) -> None:
        if bucket in self._buckets:
            return
        with self._edge("find", bucket):
            info = self.s3.get_file_info(bucket)
        if info.type == pafs.FileType.NotFound:
            raise FatalError(
                f"{self.settings.where(bucket)}: the bucket does not exist; check bucket "
                "(and endpoint)"
            )
        self._buckets.add(bucket)

    # -- FileSystemHandler

    def get_type_name(self) -> str:
        return "s3"

    def normalize_path(self, path: str) -> str:
        return path

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        with self._edge("look up", paths[0] if paths else ""):
            infos = self.s3.get_file_info(paths)
        for info in infos:
            if info.type == pafs.FileType.NotFound:
                self._check_bucket(info.path.split("/", 1)[0])
        return list(infos)

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        self._check_bucket(selector.base_dir.split("/", 1)[0])
        with self._edge("list", selector.base_dir):
            return list(self.s3.get_file_info(selector))

    def folder_objects(self, paths: list[str] | None) -> None:
        """Refuse a folder (``bucket/logs/2024``) whose own name with a '/' (``logs/2024/``) is an
        object holding data. pyarrow takes such a key for the folder: it lists neither the
        object nor can it read it, so the object's rows were silently not read. A zero-byte one
        is a folder marker (consoles make them) and no data. Asks with botocore (the ``s3``
        extra), a HEAD per folder, several at once; without botocore (reading needs only
        pyarrow) the folders are not checked. ``None``: start building the client on a thread
        (see :meth:`prefetch`), as folders may come."""
        if importlib.util.find_spec("botocore") is None:
            return
        if paths is None:
            self.prefetch()
            return
        parts = [p.strip("/").partition("/") for p in paths]
        keys = [(bucket, key + "/") for bucket, _, key in parts if key]
        if not keys:
            return
        with concurrent.futures.ThreadPoolExecutor(min(len(keys), 16)) as pool:
            sizes = list(pool.map(lambda bk: self._size(*bk), keys))
        for (bucket, key), size in zip(keys, sizes, strict=True):
            if size:
                raise FatalError(
                    f"{self.settings.where(bucket)}: the object {key!r} holds {size} bytes, "
                    "but a key ending in '/' names a folder, which cannot be read as an "
                    "object; copy it to a key without the trailing '/'"
                )

    def _size(self, bucket: str, key: str) -> int:
        """An object's size by a HEAD request; 0 when there is none."""
        with self._edge("look up", f"{bucket}/{key}"):
            try:
                return int(self.boto.head_object(Bucket=bucket, Key=key)["ContentLength"])
            except Exception as e:
                response = getattr(e, "response", None) or {}
                if (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") == 404:
                    return 0
                raise

    def create_dir(self, path: str, recursive: bool) -> None:
        # keys need no folders; but a writer starts here: check what its commit will need
        if importlib.util.find_spec("s3fs") is None or importlib.util.find_spec("botocore") is None:
            raise ConfigError(_S3FS_MISSING)
        self._check_bucket(path.split("/", 1)[0])
        self.prefetch()

    def delete_dir(self, path: str) -> None:
        self.delete_dir_contents(path, missing_dir_ok=True)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        path = path.rstrip("/")
        if "/" not in path:
            raise FatalError(f"{self.settings.where(path)}: refusing to empty a whole bucket")
        with self._edge("list", path):
            found = self.s3.get_file_info(
                pafs.FileSelector(path, recursive=True, allow_not_found=True)
            )
        # a folder's marker object, if some tool made one, is its name with a '/'
        keys = [i.path if i.type == pafs.FileType.File else i.path + "/" for i in found]
        self._delete([*keys, path + "/"], path)

    def delete_root_dir_contents(self) -> None:
        raise FatalError(f"{self.settings.endpoint}: refusing to empty every bucket")

    def delete_file(self, path: str) -> None:
        self._delete([path], path)

    def _delete(self, paths: list[str], where: str) -> None:
        """Delete objects (batches of 1000 keys per request); a missing one is no error."""
        bucket = where.split("/", 1)[0]
        keys = [p.split("/", 1)[1] for p in paths if p.split("/", 1)[0] == bucket and "/" in p]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            with self._edge("delete", where):
                out = self.boto.delete_objects(
                    Bucket=bucket, Delete={"Objects": batch, "Quiet": True}
                )
            errors = out.get("Errors") or []
            if errors:
                first = errors[0]
                raise self.translate(
                    _DeleteError(first.get("Code", ""), first.get("Message", "")),
                    "delete",
                    f"{bucket}/{first.get('Key', '')}",
                )

    def put(self, path: str, data: bytes) -> None:
        """Write a small object in one request (pyarrow's streams start multipart uploads)."""
        bucket, _, key = path.partition("/")
        with self._edge("write", path):
            self.boto.put_object(Bucket=bucket, Key=key, Body=data)

    def delete_many(self, paths: list[str]) -> None:
        """Delete objects of one bucket, 1000 keys a request; missing ones are no error."""
        if paths:
            self._delete(paths, paths[0])

    def uploads(self, prefix: str) -> list[tuple[str, str, Any]]:
        """The unfinished multipart uploads whose keys start with ``prefix`` (``bucket/key``):
        ``(bucket/key, upload id, initiated)``."""
        bucket, _, key_prefix = prefix.partition("/")
        out = []
        with self._edge("list uploads under", prefix):
            pages = self.boto.get_paginator("list_multipart_uploads").paginate(
                Bucket=bucket, Prefix=key_prefix
            )
            for page in pages:
                for u in page.get("Uploads") or []:
                    out.append((f"{bucket}/{u['Key']}", u["UploadId"], u["Initiated"]))
        return out

    def abort_upload(self, path: str, upload_id: str) -> None:
        bucket, _, key = path.partition("/")
        with self._edge("abort the upload of", path):
            try:
                self.boto.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception as e:
                if "NoSuchUpload" not in error_code(e):
                    raise

    def move(self, src: str, dest: str) -> None:
        self.copy_file(src, dest)
        self.delete_file(src)

    def copy_file(self, src: str, dest: str) -> None:
        try:
            with self._edge("copy", src):
                size = self.s3.get_file_info(src).size
                if size is None:
                    raise FileNotFoundError(src)
                if size < _MAX_COPY:  # one CopyObject (pyarrow's: no marker side effects)
                    self.s3.copy_file(src, dest)
                else:  # a multipart copy of parts
                    self.s3fs.cp_file(src, dest)
        except FileNotFoundError:
            raise FatalError(
                f"{self.settings.where(src.split('/', 1)[0])}: cannot copy "
                f"{src.partition('/')[2]!r}: it is gone"
            ) from None

    def open_input_stream(self, path: str) -> Any:
        with self._edge("read", path):
            return self.s3.open_input_stream(path, compression=None)

    def open_input_file(self, path: str) -> Any:
        with self._edge("read", path):
            return self.s3.open_input_file(path)

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        with self._edge("write", path):
            return self.s3.open_output_stream(path, compression=None, metadata=metadata)

    def open_append_stream(self, path: str, metadata: Any) -> Any:
        raise FatalError(
            f"{self.settings.where(path.split('/', 1)[0])}: objects cannot be appended to"
        )


#: the largest object one CopyObject may copy
_MAX_COPY = 5 << 30
_S3FS_MISSING = (
    "writing to an object store needs the Python package 's3fs': pip install 'tidesync[s3]'"
)


def error_code(e: BaseException) -> str:
    """What kind of store failure ``e`` is: pyarrow's ``AWS Error NAME`` (with the HTTP status
    when pyarrow gives one), the S3 error code and status of a botocore ClientError (s3fs keeps
    it as the cause of the OSError it raises), else the exception's class (and errno) names."""
    m = _AWS_ERROR.search(str(e))
    if m:
        return f"{m[1]} {m[2]}" if m[2] else m[1]
    for x in (e, e.__cause__, e.__context__):
        response = getattr(x, "response", None)
        if isinstance(response, dict):
            err = response.get("Error") or {}
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode", "")
            return f"{err.get('Code', '')} {status}".strip()
    names = [type(x).__name__ for x in type(e).__mro__ if x not in (Exception, BaseException)]
    if isinstance(e, OSError) and e.errno:
        names.append(errno.errorcode.get(e.errno, ""))
    return " ".join(names)


class _DeleteError(Exception):
    """One key a DeleteObjects request could not delete (S3 answers 200 and lists them)."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.response = {"Error": {"Code": code, "Message": message}}


def _is_boto(e: BaseException) -> bool:
    return type(e).__module__.startswith(("botocore", "aiobotocore"))


def edge_of(fs: pafs.FileSystem) -> Edge | None:
    """The :class:`Edge` behind ``fs``, when ``fs`` is an object store."""
    handler = getattr(fs, "handler", None)
    return handler if isinstance(handler, Edge) else None
