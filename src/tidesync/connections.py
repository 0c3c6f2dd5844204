"""Named data sources (``datasource: name`` in a job) from a project file.

The project's ``tidesync.yaml`` (found from the job file's folder upward, see
:mod:`tidesync.project`), or the file given with ``--connections``::

    connections:
      warehouse:
        kind: postgresql
        url: postgresql://etl@db.internal:5432/dw
        password: ${env:PG_PASSWORD}       # a secret by reference, never written in the file
      landing:
        kind: s3
        endpoint: http://127.0.0.1:9000
        bucket: landing
        accessKeyId: ${env:S3_KEY}
        accessKeySecret: ${env:S3_SECRET}

A value ``${env:NAME}`` is read from the environment when the connection is used; a missing
variable is a ConfigError naming it (never its value). The same file holds the scheduler's nodes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from tidesync.errors import ConfigError, did_you_mean
from tidesync.spec.secrets import is_secret_field, register_document

__all__ = ["load_connections", "resolve_secrets", "connection", "DEFAULT_FILE"]

DEFAULT_FILE = "tidesync.yaml"
_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def load_connections(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The ``connections`` of a project file; an absent default file means none."""
    from tidesync.spec.job import load_document

    p = Path(path) if path else Path.cwd() / DEFAULT_FILE
    if not p.exists():
        if path:
            raise ConfigError(f"{p}: no such connections file")
        return {}
    doc = load_document(p) or {}
    if not isinstance(doc, dict):
        raise ConfigError(f"{p}: must hold an object with a 'connections' key")
    conns = doc.get("connections") or {}
    if not isinstance(conns, dict):
        raise ConfigError(f"{p}: connections: must be an object of name -> settings")
    problems = [
        f"{p}: connections.{k}: must be an object"
        for k, v in conns.items()
        if not isinstance(v, dict)
    ]
    if problems:
        raise ConfigError(problems)
    return {str(k): dict(v) for k, v in conns.items()}


def resolve_secrets(value: Any, where: str) -> Any:
    """Replace ``${env:NAME}`` references (recursively) from the environment. What lands in a
    secret field (``where`` ending in ``.password``, ``.accessKeySecret``, ...) or in a URL's
    userinfo is registered as a secret of the run."""
    if isinstance(value, str) and "${env:" in value:
        resolved = _resolve_env(value, where)
        key = where.rsplit(".", 1)[-1]
        register_document({key: resolved} if is_secret_field(key) else resolved)
        return resolved
    if isinstance(value, dict):
        return {k: resolve_secrets(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_secrets(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _resolve_env(value: str, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in os.environ:
            raise ConfigError(
                f"{where}: environment variable {name} is not set (referenced as ${{env:{name}}})"
            )
        return os.environ[name]

    return _ENV.sub(sub, value)


def database_keys(settings: dict[str, Any], name: str, known: tuple[str, ...]) -> list[str]:
    """Problems of a database data source's keys: one a connector does not read (a ``prot``
    for ``port`` would connect to the default port's server), or ``url`` beside the
    host/port/database keys it replaces (two databases named: which one is read is a guess)."""
    where = f"connections.{name}"
    out = [
        f"{where}.{k}: unknown key{did_you_mean(str(k), known)}" for k in settings if k not in known
    ]
    url = next((k for k in ("url", "jdbcUrl") if settings.get(k) not in (None, "")), None)
    for k in ("host", "port", "database", "dbname"):
        if url and settings.get(k) not in (None, ""):
            out.append(f"{where}.{k}: is given beside {url}, which names the database; keep one")
    return out


def connection(connections: dict[str, dict[str, Any]], name: str, where: str) -> dict[str, Any]:
    """The settings of a named data source, secrets resolved."""
    if name not in connections:
        known = ", ".join(sorted(connections)) or "none defined"
        raise ConfigError(
            f"{where}: unknown datasource {name!r}{did_you_mean(name, connections)} "
            f"(known: {known}; define it under 'connections:' in {DEFAULT_FILE} or --connections)"
        )
    settings = connections[name]
    register_document(settings)  # secrets written in the file itself, too
    return resolve_secrets(settings, f"connections.{name}")
