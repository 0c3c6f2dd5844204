"""The tidesync error tree, branched by what the caller should do::

    TidesyncError                 anything tidesync raises on purpose
    ├── ConfigError               the user's mistake (job file, parameter, option): one line per
    │                             problem, no traceback, exit code 2; carries every problem found
    ├── RetriableError            transient (network, lock, throttling): a retry may succeed
    ├── FatalError                the job cannot go on (source or target failure): exit code 1
    │   └── ErrorLimitExceeded    too many dirty records: nothing is published
    └── DirtyRecordError          one row (or a batch holding it) could not be converted or written;
                                  the engine bisects the batch to find the row and keeps it as a
                                  dirty record with this reason

Messages name the place (a key path such as ``job.content[0].writer.parameter.writeMode``) and,
where one is known, the fix. Secrets never appear in them: use :func:`redact` on anything that
may hold a URL or a connection string before putting it in a message.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import json
import logging
import re
import threading
from collections.abc import Iterable, Iterator, Sequence

__all__ = [
    "TidesyncError",
    "ConfigError",
    "RetriableError",
    "FatalError",
    "ErrorLimitExceeded",
    "DirtyRecordError",
    "did_you_mean",
    "is_retriable",
    "redact",
    "redact_url",
    "RedactingFilter",
    "register_secret",
    "secret_scope",
    "userinfo_spans",
]


class TidesyncError(Exception):
    """Root of every error tidesync raises on purpose.

    ``code`` is the store's own code for it where there is one (a PostgreSQL SQLSTATE such as
    ``40001``, a MySQL errno such as ``1213``, an SQLite result such as ``SQLITE_FULL``); the run
    report carries it beside the class, so a caller can act on it without reading the message.
    """

    code: str | None = None

    def __init__(self, *args: object, code: str | int | None = None):
        super().__init__(*args)
        if code is not None:
            self.code = str(code)


class ConfigError(TidesyncError):
    """A mistake in what the user wrote. Holds every problem found, one line each."""

    def __init__(self, problems: str | Sequence[str], *, code: str | int | None = None):
        self.problems: list[str] = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems), code=code)


class RetriableError(TidesyncError):
    """A transient failure: the same call may succeed if tried again later."""


class FatalError(TidesyncError):
    """The job cannot go on: the source or the target failed."""


class ErrorLimitExceeded(FatalError):
    """More dirty records than the job's error limit allows."""


class DirtyRecordError(TidesyncError):
    """A row could not be converted or written.

    Raised for a whole batch; the engine bisects the batch until it holds the single row at
    fault and keeps that row as a dirty record with ``reason``. ``code`` carries the store's
    own error code (SQLSTATE, vendor number) where there is one.
    """

    def __init__(self, reason: str, code: str | None = None):
        self.reason = redact(reason)
        self.code = code
        super().__init__(self.reason if code is None else f"[{code}] {self.reason}")


def is_retriable(e: BaseException) -> bool:
    """Whether a retry of the whole run may succeed: a :class:`RetriableError`, or a failure
    tidesync could not classify (an untranslated network error, say). A ConfigError, a
    FatalError (a bad password, a missing table, too many dirty records) and an interruption are
    not worth a retry: the same run would fail the same way."""
    if isinstance(e, RetriableError):
        return True
    return not isinstance(e, TidesyncError | KeyboardInterrupt)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


# -- secrets ----------------------------------------------------------------------------------
#
# Redaction is structural. Every value that reaches a password, secret or key field of a job, a
# connection or a URL's userinfo (directly or through a parameter) is registered as a secret of
# the run (:func:`register_secret`, by ``tidesync.spec.secrets`` and ``tidesync.connections``)
# and :func:`redact` masks it wherever it appears; URLs are masked by parsing, whatever their
# password holds. A run registers inside :func:`secret_scope`: its secrets stay known while any
# run that registered them is going, and are forgotten when the outermost scope ends (a
# long-lived scheduler does not collect every password it ever saw).

MASK = "***"
#: a value shorter than this is not masked where it appears (it would garble every message);
#: it is still never printed as a field or in a URL
MIN_SECRET = 4

_SECRETS: dict[str, int] = {}  # each form of a live secret -> how many scopes hold it
_SECRETS_LOCK = threading.Lock()
_BY_LENGTH: list[tuple[str, ...]] = [()]  # the live forms, longest first (rebuilt on change)
_SCOPE: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "tidesync_secret_scope", default=None
)


def _forms(value: str) -> set[str]:
    """The spellings of a secret a message may hold: as is, percent-encoded (URLs), escaped as
    JSON and as Python's repr writes it."""
    from urllib.parse import quote

    forms = {value, quote(value, safe=""), json.dumps(value)[1:-1], repr(value)[1:-1]}
    return {f for f in forms if len(f) >= MIN_SECRET}


def register_secret(value: object) -> None:
    """Mask ``value`` in every message, log line and report for as long as the current
    :func:`secret_scope` lasts. Outside any scope (a connector used on its own) it does nothing:
    structural masking of URLs still applies."""
    scope = _SCOPE.get()
    if scope is None or value is None or isinstance(value, bool):
        return
    forms = _forms(str(value))
    if not forms:
        return
    with _SECRETS_LOCK:
        for f in forms:
            _SECRETS[f] = _SECRETS.get(f, 0) + 1
        scope.extend(forms)
        _BY_LENGTH[0] = tuple(sorted(_SECRETS, key=len, reverse=True))


def secrets_of_scope() -> list[str]:
    """The secrets registered in the current scope (the forms each was registered as)."""
    return list(_SCOPE.get() or ())


@contextlib.contextmanager
def secret_scope(values: Iterable[str] = ()) -> Iterator[list[str]]:
    """A run's secrets: ``values`` and whatever is registered inside are masked until the scope
    ends. Threads started with ``contextvars.copy_context()`` register into it too. A scope
    inside another hands its secrets to the outer one when it ends."""
    outer = _SCOPE.get()
    own: list[str] = []
    token = _SCOPE.set(own)
    try:
        for v in values:
            register_secret(v)
        yield own
    finally:
        _SCOPE.reset(token)
        with _SECRETS_LOCK:
            if outer is not None:
                outer.extend(own)  # the outer scope holds them now (the counts stay)
            else:
                for f in own:
                    n = _SECRETS.get(f, 0) - 1
                    if n > 0:
                        _SECRETS[f] = n
                    else:
                        _SECRETS.pop(f, None)
                _BY_LENGTH[0] = tuple(sorted(_SECRETS, key=len, reverse=True))


_TOKEN_END = re.compile(r"[\s'\"<>`]")
# not MySQL's "(using password: YES)" (it says whether one was sent), nor a key path of a
# message ("parameter.password: must be a string"): the words after it are no secret
_KV_SECRET = re.compile(
    r"(?i)(?<!using )(?<![.\[])\b(?P<key>password|passwd|pwd|secret|accesskeysecret|secret_access_key|token)"
    r"(?P<sep>\s*[=:]\s*)(?P<q>['\"]?)(?P<val>[^'\"\s,;&}]+)"
)


def _userinfo_end(text: str, start: int, end: int) -> int:
    """Where the ``user:password`` part of a URL whose authority starts at ``start`` ends (the
    index of its ``@``), or -1. The password may hold ``/``, ``@`` or ``:`` unencoded: the
    userinfo runs to the last ``@`` before ``end`` as long as a ``:`` comes before any ``/``."""
    at = text.rfind("@", start, end)
    if at < 0:
        return -1
    colon = text.find(":", start, at)
    if colon < 0:
        return -1
    slash = text.find("/", start, colon)
    return at if slash < 0 else -1


def userinfo_spans(text: str) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of the ``user:password`` of every URL in ``text`` (``end`` is its
    ``@``), in one pass: the token's end and its last ``@`` are found once per token (a URL
    ends at a blank or a quote), and each look for a ``:`` stops at the next ``://``."""
    i = text.find("://")
    token_end = last_at = -1
    while i >= 0:
        start = i + 3
        if start > token_end:
            m = _TOKEN_END.search(text, start)
            token_end = m.start() if m else len(text)
            last_at = text.rfind("@", start, token_end)
        at = _userinfo_end(text, start, last_at + 1) if last_at >= start else -1
        if at >= 0:
            yield start, at
            i = text.find("://", at)
        else:
            i = text.find("://", start)


def _mask_userinfo(text: str) -> str:
    """``scheme://user:password@host`` -> ``scheme://***@host`` for every URL in ``text``."""
    out: list[str] = []
    pos = 0
    for start, at in userinfo_spans(text):
        out.append(text[pos:start])
        out.append(MASK)
        pos = at
    if not out:
        return text
    out.append(text[pos:])
    return "".join(out)


class RedactingFilter(logging.Filter):
    """A logging filter that masks secrets in a record's message and traceback: install it on
    every handler that writes somewhere (``tidesync.cli`` does on the root logger's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        record.msg, record.args = redact(msg), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def redact(text: str) -> str:
    """``text`` with every secret masked (``***``): the secrets registered for the runs going
    on, the userinfo of every URL (``postgresql://***@db/dw``), and ``password=...``-style
    pairs. Linear in the length of ``text``.

    >>> redact("mysql://app:s3c/ret@db:3306/x password=hunter2")
    'mysql://***@db:3306/x password=***'
    """
    if not text:
        return text
    for secret in _BY_LENGTH[0]:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _mask_userinfo(text)
    return _KV_SECRET.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}{MASK}", text)


def redact_url(url: str) -> str:
    """:func:`redact` for a text known to be one URL (a setting, not a message): its whole
    userinfo is masked, even where the password holds a quote or a blank, which end a URL
    inside a message.

    >>> redact_url("postgresql://etl:it's a secret@db/dw")
    'postgresql://***@db/dw'
    """
    i = url.find("://")
    at = _userinfo_end(url, i + 3, len(url)) if i >= 0 else -1
    return redact(url if at < 0 else f"{url[: i + 3]}{MASK}{url[at:]}")
