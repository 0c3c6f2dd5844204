"""Archive policies: what a policy file says, read and checked with key paths as job files are.

A file holds ``policies:``, a list of objects::

    policies:
      - name: plant1
        source: {type: mqtt, url: "mqtt://127.0.0.1:1883", topics: ["plant1/+/measure"],
                 qos: 1, clientId: tidesync-plant1}
        channel: realtime          # realtime | offline | alert
        generateBy: eventTime      # eventTime (realtime only) | systemTime
        cycle: 1h                  # 1h | 12h | 24h
        pathFormat: YYYYMMDD/HH    # YYYYMMDD | YYYYMMDD/HH | YYYY/MM/DD | YYYY/MM/DD/HH
        timezone: UTC
        target: {path: archive/plant1, fileName: measure, format: csv, maxFileSize: 64MB}

Every problem is reported, each under its key path (``plant.yaml: policies[0].cycle: '2h' is
not one of 1h, 12h, 24h``); unknown keys are errors with a "did you mean".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tidesync.connectors.base import Context, Params
from tidesync.errors import ConfigError, did_you_mean

__all__ = [
    "CYCLES",
    "PATH_FORMATS",
    "MqttSource",
    "NatsSource",
    "Target",
    "Policy",
    "load_policies",
    "parse_policies",
]

#: cycle spelling -> hours
CYCLES = {"1h": 1, "12h": 12, "24h": 24}
#: path format -> strftime pattern of the partition directory
PATH_FORMATS = {
    "YYYYMMDD": "%Y%m%d",
    "YYYYMMDD/HH": "%Y%m%d/%H",
    "YYYY/MM/DD": "%Y/%m/%d",
    "YYYY/MM/DD/HH": "%Y/%m/%d/%H",
}
CHANNELS = ("realtime", "offline", "alert")
GENERATE_BY = ("eventTime", "systemTime")
FORMATS = ("csv", "parquet")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_TARGET_KEYS = ("path", "fileName", "format", "maxFileSize", "compress")


@dataclass(frozen=True)
class MqttSource:
    """An MQTT broker (3.1.1 or 5) read with a persistent session (``clientId``), QoS 1."""

    url: str
    host: str
    port: int
    topics: tuple[str, ...]
    client_id: str
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    keepalive: int = 30
    max_inflight: int = 1000  # MQTT 5 Receive Maximum: unacknowledged messages at once
    qos: int = 1
    type: str = "mqtt"


@dataclass(frozen=True)
class NatsSource:
    """A JetStream stream read through a durable pull consumer."""

    url: str
    stream: str
    subject: str
    durable: str
    batch: int = 1000  # messages asked for at a time
    ack_wait_s: float = 60.0  # the consumer's AckWait when the archiver creates it
    max_ack_pending: int = 20000
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    type: str = "nats"


@dataclass(frozen=True)
class Target:
    """Where published files go: ``path`` (local folder or object-store URL) and the raw
    parameters the file connector reads the store's connection from."""

    path: str
    file_name: str
    format: str = "csv"
    max_file_size: int = 64 << 20
    compress: str = "snappy"  # parquet codec
    params: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class Policy:
    name: str
    source: MqttSource | NatsSource
    channel: str
    generate_by: str
    cycle_hours: int
    path_format: str
    timezone: str
    target: Target
    log_path: Path
    log_segment_bytes: int = 64 << 20
    where: str = ""  # "plant.yaml: policies[0]", for messages

    @property
    def strftime(self) -> str:
        return PATH_FORMATS[self.path_format]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def by_event_time(self) -> bool:
        return self.generate_by == "eventTime"


def load_policies(
    path: Path,
    connections: dict[str, dict[str, Any]] | None = None,
    base_dir: Path | None = None,
) -> list[Policy]:
    """Read and check a policy file; ConfigError holds every problem, each naming the file."""
    from tidesync.spec.job import load_document

    try:
        doc = load_document(path)
    except ConfigError as e:
        raise ConfigError(
            [p.replace("no such job file", "no such policy file") for p in e.problems]
        ) from None
    return parse_policies(doc, str(path), connections or {}, base_dir or Path.cwd())


def parse_policies(
    doc: Any, source: str, connections: dict[str, dict[str, Any]], base_dir: Path
) -> list[Policy]:
    problems: list[str] = []
    if not isinstance(doc, dict) or "policies" not in doc:
        got = ", ".join(map(str, doc)) if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(
            f"{source}: expected a top-level 'policies' list; found {got or 'nothing'}"
        )
    extra = [k for k in doc if k != "policies"]
    problems += [f"{source}: {k}: unknown key{did_you_mean(str(k), ['policies'])}" for k in extra]
    items = doc["policies"]
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: policies: must be a non-empty list of policies")
    out: list[Policy] = []
    for i, item in enumerate(items):
        pol = _policy(item, f"policies[{i}]", connections, base_dir, problems)
        if pol is not None:
            out.append(pol)
    names: dict[str, int] = {}
    outputs: dict[tuple[str, str], str] = {}
    readers: dict[tuple[Any, ...], str] = {}
    for i, pol in enumerate(out):
        if pol.name in names:
            problems.append(
                f"policies[{i}].name: {pol.name!r} is also the name of policies[{names[pol.name]}]"
            )
        names.setdefault(pol.name, i)
        key = (pol.target.path.rstrip("/"), pol.target.file_name)
        if key in outputs:
            problems.append(
                f"policies[{i}].target: path {pol.target.path!r} and fileName "
                f"{pol.target.file_name!r} are also those of policy {outputs[key]!r}; "
                "two policies would write the same files"
            )
        outputs.setdefault(key, pol.name)
        src = pol.source
        # one broker session or consumer shared by two policies splits the messages between them
        reader = (
            ("clientId", src.host.lower(), src.port, src.client_id)
            if isinstance(src, MqttSource)
            else ("durable", urlsplit(src.url).hostname, urlsplit(src.url).port, src.stream,
                  src.durable)
        )  # fmt: skip
        if reader in readers:
            problems.append(
                f"policies[{i}].source.{reader[0]}: {reader[-1]!r} on the same broker"
                f"{' and stream' if reader[0] == 'durable' else ''} is also that of policy "
                f"{readers[reader]!r}; the broker would hand each message to only one of them"
            )
        readers.setdefault(reader, pol.name)
    if problems:
        raise ConfigError([f"{source}: {p}" for p in problems])
    return [Policy(**{**p.__dict__, "where": f"{source}: {p.where}"}) for p in out]


def _policy(
    raw: Any,
    where: str,
    connections: dict[str, dict[str, Any]],
    base_dir: Path,
    problems: list[str],
) -> Policy | None:
    if not isinstance(raw, dict):
        problems.append(f"{where}: must be an object, got {type(raw).__name__}")
        return None
    p = Params(raw, Context(where=where, base_dir=base_dir))
    name = p.str("name", required=True)
    if name is not None and not _NAME.fullmatch(name):
        p.problem("name", f"{name!r}: letters, digits, '_', '.', '-' (it names the log folder)")
    source = _source(p.obj("source"), f"{where}.source", p)
    if "source" not in raw:
        p.problem("source", "is required (type mqtt or nats)")
    channel = p.str("channel", "realtime", choices=CHANNELS)
    generate_by = p.str("generateBy", "systemTime", choices=GENERATE_BY)
    if generate_by == "eventTime" and channel != "realtime":
        p.problem(
            "generateBy",
            f"eventTime is for the realtime channel; the {channel} channel is archived by "
            "systemTime",
        )
    cycle = p.str("cycle", "1h", choices=list(CYCLES), lower=True)
    path_format = p.str("pathFormat", "YYYYMMDD/HH", choices=list(PATH_FORMATS))
    tz = p.str("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        p.problem("timezone", f"{tz!r} is not a time zone name (UTC, Asia/Shanghai ...)")
        tz = "UTC"
    target = _target(p.obj("target"), f"{where}.target", connections, base_dir, p)
    if "target" not in raw:
        p.problem("target", "is required (path and fileName)")
    log = p.str("logPath")
    segment = p.size("logSegmentSize", 64 << 20)
    p.problems += [u.replace("unknown key, ignored", "unknown key") for u in p.unknown_keys()]
    problems += p.problems
    if p.problems or name is None or source is None or target is None:
        return None
    log_path = Path(log) if log else Path(".tidesync") / "archive" / name
    if not log_path.is_absolute():
        log_path = base_dir / log_path
    return Policy(
        name=name,
        source=source,
        channel=channel,
        generate_by=generate_by,
        cycle_hours=CYCLES[cycle],
        path_format=path_format,
        timezone=tz,
        target=target,
        log_path=log_path,
        log_segment_bytes=segment,
        where=where,
    )


def _sub(parent: Params, raw: dict[str, Any] | None, where: str) -> Params | None:
    if raw is None:
        return None
    return Params(raw, Context(where=where, base_dir=parent.ctx.base_dir))


def _secret(p: Params, key: str) -> str | None:
    from tidesync.connections import resolve_secrets

    v = p.str(key)
    if v is None:
        return None
    try:
        return str(resolve_secrets(v, p.ctx.path(key)))
    except ConfigError as e:
        p.problems += e.problems
        return None


def _source(
    raw: dict[str, Any] | None, where: str, parent: Params
) -> MqttSource | NatsSource | None:
    p = _sub(parent, raw, where)
    if p is None:
        return None
    kind = p.str("type", required=True, choices=["mqtt", "nats"], lower=True)
    url = p.str("url", required=True)
    out: MqttSource | NatsSource | None = None
    if kind == "mqtt":
        out = _mqtt(p, url)
    elif kind == "nats":
        out = _nats(p, url)
    p.problems += [u.replace("unknown key, ignored", "unknown key") for u in p.unknown_keys()]
    parent.problems += p.problems
    return out if not p.problems else None


def _mqtt(p: Params, url: str | None) -> MqttSource | None:
    topics = p.list("topics", required=True) or []
    for i, t in enumerate(topics):
        if not isinstance(t, str) or not t or _bad_filter(t):
            p.problems.append(
                f"{p.ctx.path('topics')}[{i}]: {t!r} is not an MQTT topic filter "
                "('+' and '#' stand alone in a level; '#' comes last)"
            )
    qos = p.int("qos", 1)
    if qos is not None and qos != 1:
        p.problem(
            "qos",
            f"{qos}: the archiver subscribes with QoS 1 (each message acknowledged once it is on "
            "disk); QoS 0 can lose messages and the client acknowledges QoS 2 before it holds them",
        )
    client_id = p.str("clientId", required=True)
    if client_id is not None and not (0 < len(client_id.encode()) <= 65535):
        p.problem("clientId", f"{client_id!r} must be 1 to 65535 bytes")
    keepalive = p.int("keepalive", 30, minimum=5)
    inflight = p.int("maxInflight", 1000, minimum=1)
    if inflight is not None and inflight > 65535:
        p.problem("maxInflight", f"must be at most 65535, got {inflight}")
    user = p.str("username")
    password = _secret(p, "password")
    if url is None:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("mqtt", "tcp", "mqtts", "ssl"):
        p.problem("url", f"{_safe(url)!r}: expected mqtt://host:port (or mqtts:// for TLS)")
        return None
    try:
        port = parts.port
    except ValueError:
        p.problem("url", f"{_safe(url)!r}: the port is not a number")
        return None
    if not parts.hostname:
        p.problem("url", f"{_safe(url)!r}: no host")
        return None
    tls = scheme in ("mqtts", "ssl")
    if parts.username and not user:
        user = unquote(parts.username)
    if parts.password and not password:
        password = unquote(parts.password)
    return MqttSource(
        url=_safe(url),
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        topics=tuple(str(t) for t in topics),
        client_id=client_id or "",
        tls=tls,
        username=user,
        password=password,
        keepalive=keepalive or 30,
        max_inflight=inflight or 1000,
    )


def _bad_filter(t: str) -> bool:
    levels = t.split("/")
    for i, lv in enumerate(levels):
        if ("+" in lv and lv != "+") or ("#" in lv and (lv != "#" or i != len(levels) - 1)):
            return True
    return False


def _nats(p: Params, url: str | None) -> NatsSource | None:
    stream = p.str("stream", required=True)
    subject = p.str("subject", required=True)
    durable = p.str("durable", required=True)
    for key, v in (("stream", stream), ("durable", durable)):
        if v is not None and not re.fullmatch(r"[^\s.*>/\\]+", v):
            p.problem(key, f"{v!r}: no spaces, '.', '*', '>' or slashes")
    batch = p.int("batch", 1000, minimum=1)
    ack_wait = p.int("ackWait", 60, minimum=1)
    pending = p.int("maxAckPending", 20000, minimum=1)
    user = p.str("user")
    password = _secret(p, "password")
    token = _secret(p, "token")
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("nats", "tls") or not parts.hostname:
        p.problem("url", f"{_safe(url)!r}: expected nats://host:port")
        return None
    try:
        _ = parts.port  # read to check: nats-py reads the url itself
    except ValueError:  # the client would retry it for ever as a broker that is down
        p.problem("url", f"{_safe(url)!r}: the port is not a number")
        return None
    return NatsSource(
        url=url,
        stream=stream or "",
        subject=subject or "",
        durable=durable or "",
        batch=batch or 1000,
        ack_wait_s=float(ack_wait or 60),
        max_ack_pending=pending or 20000,
        user=user,
        password=password,
        token=token,
    )


def _target(
    raw: dict[str, Any] | None,
    where: str,
    connections: dict[str, dict[str, Any]],
    base_dir: Path,
    parent: Params,
) -> Target | None:
    if raw is None:
        return None
    from tidesync.connectors.file.conn import filesystem_for
    from tidesync.connectors.file.objectstore import KEYS

    ctx = Context(where=where, base_dir=base_dir, connections=connections)
    p = Params(raw, ctx, known_extra=KEYS)
    path = p.str("path", required=True)
    file_name = p.str("fileName", required=True)
    if file_name is not None and (
        not file_name or "/" in file_name or file_name.startswith((".", "_"))
    ):
        p.problem(
            "fileName", f"{file_name!r}: a file name without '/', not starting with '.' or '_'"
        )
    fmt = p.str("format", "csv", choices=FORMATS, lower=True)
    size = p.size("maxFileSize", 64 << 20)
    codec = "snappy"
    if fmt == "parquet":
        codec = p.str("compress", "snappy", choices=["snappy", "zstd", "gzip", "none"], lower=True)
    elif "compress" in raw:
        p.problem("compress", "is for parquet; csv files are written uncompressed")
    p.problems += [u.replace("unknown key, ignored", "unknown key") for u in p.unknown_keys()]
    scheme, sep, _ = (path or "").partition("://")
    if path is not None and (not sep or len(scheme) == 1 or scheme.lower() == "file"):
        # a local folder reads none of them: `path: archive/x` with an endpoint meant s3://
        for key in KEYS:
            if key in raw:
                p.problem(
                    key,
                    f"is for an object store path (s3://bucket/prefix); {path!r} is a local "
                    "folder, where it would be ignored",
                )
    if path is not None and not p.problems:
        try:  # checks the location's keys (datasource, endpoint, credentials) now, not at publish
            filesystem_for(path, dict(raw), ctx)
        except ConfigError as e:
            p.problems += e.problems
    parent.problems += p.problems
    if p.problems or path is None or file_name is None:
        return None
    return Target(
        path=path,
        file_name=file_name,
        format=fmt,
        max_file_size=size,
        compress=codec,
        params={k: v for k, v in raw.items() if k not in _TARGET_KEYS or k == "path"},
    )


def _safe(url: str) -> str:
    from tidesync.errors import redact

    return redact(url)
