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

import difflib
import re
from collections.abc import Iterable, Sequence

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


# Anchored on "://" (one character of the scheme looked at behind it) rather than on the scheme
# itself: a pattern that starts with ``[a-z][a-z0-9+.-]*`` rescans a long run of letters from every
# position in it, which is quadratic (a 60,000-character value took seconds to minutes). Every
# scan here stops at the next ':', '/', '@' or blank, so the whole pass is linear.
_URL_SECRET = re.compile(r"(?<=[a-zA-Z0-9+.-])://(?P<user>[^:/@\s]*):(?P<pw>[^@\s/]*)@")
_KV_SECRET = re.compile(
    r"(?i)\b(?P<key>password|passwd|pwd|secret|accesskeysecret|secret_access_key|token)"
    r"(?P<sep>\s*[=:]\s*)(?P<q>['\"]?)(?P<val>[^'\"\s,;&}]+)"
)


def redact(text: str) -> str:
    """Mask passwords in URLs (``user:***@``) and ``password=...``-style pairs.

    Linear in the length of ``text``.

    >>> redact("mysql://app:s3cret@db:3306/x password=hunter2")
    'mysql://app:***@db:3306/x password=***'
    """
    text = _URL_SECRET.sub(lambda m: f"://{m['user']}:***@", text)
    return _KV_SECRET.sub(lambda m: f"{m['key']}{m['sep']}{m['q']}***", text)
