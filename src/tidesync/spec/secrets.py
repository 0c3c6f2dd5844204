"""Which values of a job (or a connection) are secrets: found by the document's structure.

A secret is a value that reaches a secret field — ``password``, ``accessKeySecret``,
``securityToken`` and the other spellings in :data:`SECRET_FIELDS`, at any depth — or the
password of a URL's userinfo (``jdbc:mysql://etl:PASSWORD@db/x``, ``s3://KEY:SECRET@bucket/k``,
an ``endpoint`` with credentials), whatever the password holds, or of a secret field of its query
string (``jdbc:postgresql://db/dw?user=etl&password=PASSWORD``). A parameter whose ``${name}``
stands in such a place is a secret parameter: its value is masked wherever it is shown (the
scheduler's instance log, ``instance show``, the state store).

The values found are registered with :func:`tidesync.errors.register_secret`, which masks them
in every message, log line, report and dirty record of the run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

from tidesync.errors import _userinfo_end, register_secret, userinfo_spans

__all__ = [
    "SECRET_FIELDS",
    "is_secret_field",
    "register_document",
    "secret_parameters",
    "url_passwords",
]

#: field names that hold a secret, compared without case, '_' or '-'
SECRET_FIELDS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "accesskey",  # DataX's OSS reader: accessId + accessKey (the secret)
        "accesskeysecret",
        "secretaccesskey",
        "secretkey",
        "securitytoken",
        "sessiontoken",
        "token",
        "apikey",
        "sslpassword",
    }
)

_REF = re.compile(r"\$\{([^}]*)\}")


def is_secret_field(key: object) -> bool:
    return str(key).lower().replace("_", "").replace("-", "") in SECRET_FIELDS


#: ``?password=...`` (or ``&sslpassword=``, ``&token=``...) in a URL's query string: the value
#: runs to the next '&', as the connectors' query parsing reads it
_QUERY_PAIR = re.compile(r"[?&]([^=&?#\s]+)=([^&]*)")


def _query_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the value of every secret field in the query string of a URL."""
    q = text.find("?", text.find("://"))
    if q < 0:
        return
    for m in _QUERY_PAIR.finditer(text, q):
        if is_secret_field(m[1]):
            yield m.start(2), m.end(2)


def url_passwords(text: str) -> list[str]:
    """The passwords in the userinfo of the URLs in ``text`` and the values of the secret fields
    of their query strings (``?user=etl&password=...``), as written and decoded."""
    out: list[str] = []
    spans = list(userinfo_spans(text))
    i = text.find("://")
    if i >= 0 and not spans and not any(c.isspace() for c in text):
        # a field holding one URL: its userinfo may hold a quote, which ends a URL in a message
        at = _userinfo_end(text, i + 3, len(text))
        spans = [(i + 3, at)] if at >= 0 else []
    found = [text[start:at].partition(":")[2] for start, at in spans]
    for pw in [*found, *(text[start:end] for start, end in _query_spans(text))]:
        if pw:
            out.extend({pw, unquote(pw), unquote(pw.replace("+", " "))})
    return out


def _walk(doc: Any, secret: bool = False) -> Iterator[tuple[str, bool]]:
    """Every string of ``doc`` and whether it stands in a secret field."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _walk(v, secret or is_secret_field(k))
    elif isinstance(doc, list):
        for v in doc:
            yield from _walk(v, secret)
    elif isinstance(doc, str):
        yield doc, secret
    elif secret and isinstance(doc, int | float) and not isinstance(doc, bool):
        yield str(doc), True


def register_document(doc: Any) -> None:
    """Register the secrets of a job document (parameters substituted) or of a connection's
    settings (references resolved): secret fields' values and URL passwords."""
    for text, secret in _walk(doc):
        if secret:
            register_secret(text)
        if "://" in text:
            for pw in url_passwords(text):
                register_secret(pw)


def secret_parameters(doc: Any) -> set[str]:
    """The names of the parameters a job document (as written, before substitution) puts in a
    secret field or in a URL's userinfo."""
    names: set[str] = set()
    for text, secret in _walk(doc):
        if "${" not in text:
            continue
        spans = [*userinfo_spans(text), *_query_spans(text)]
        places = [text] if secret else [text[s:e] for s, e in spans]
        for place in places:
            for m in _REF.finditer(place):
                name = m[1].strip()
                if not name.startswith("env:"):
                    names.add(name)
    return names
