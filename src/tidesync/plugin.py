"""What every plugin (connector or transformer) is given: the :class:`Context` of the run it is part of, and :class:`Params`, the reader of its parameters that records every problem with its key path.

Both are re-exported by :mod:`tidesync.connectors.base`; transformers import them from here so that they do not depend on the connectors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from tidesync.errors import ConfigError, did_you_mean
from tidesync.spec.ignored import why_ignored


@dataclass
class Context:
    """What a connector may know about the run it is part of."""

    base_dir: Path = field(default_factory=Path.cwd)  # relative paths in a job resolve here
    where: str = ""  # key path of the connector's parameters, for messages
    timezone: str = "UTC"
    job_name: str = "job"
    state: Any = None  # tidesync.state.StateStore, when the run has one
    state_key: str = ""  # where the engine keeps this content entry's positions in ``state``
    reads: str = ""  # what the entry reads, its run times left out (kept with its positions)
    connections: dict[str, dict[str, Any]] = field(default_factory=dict)  # named data sources
    cyctime: Any = None
    bizdate: Any = None
    #: the zone ``cyctime`` is a wall time of (a scheduler node's schedule); None: ``timezone``
    cyctime_zone: str | None = None
    batch_rows: int = 65536  # target rows per record batch
    _stored: tuple[dict[str, Any], int] | None = field(default=None, repr=False, compare=False)
    _release: Any = field(default=None, repr=False, compare=False)  # of the positions' hold

    def __getstate__(self) -> dict[str, Any]:
        # a context travels to workers (with a task) without the state store: it is the driver's
        return {**self.__dict__, "state": None, "_release": None}

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def stored_positions(self) -> dict[str, Any]:
        """The positions the last committed run of this content entry saved, by split label
        (``{}`` the first time, or without a state store). Read once; the engine saves the new
        ones only if nobody else saved in between (compare-and-set on what was read here)."""
        if self._stored is None:
            from tidesync.state import hold_positions, load_positions

            # held until the run ends (release_positions): a second run of the job waits here,
            # then reads what the first saved
            self._release = hold_positions(self.state, self.state_key)
            self._stored = load_positions(self.state, self.state_key)
        return dict(self._stored[0])

    def other_rows(self) -> str:
        """Why the stored positions cannot serve this run's rows ("" when they can): a cursor
        saved for one ``-p region=east`` must not start a ``region=west`` run (see
        :func:`tidesync.state.other_rows`). Readers of a query cursor ask before using it."""
        from tidesync.state import other_rows

        self.stored_positions()  # takes this run's hold on them first
        return other_rows(self.state, self.state_key, self.reads)

    def release_positions(self) -> None:
        """End this run's hold on the positions (the engine calls it when the run ended)."""
        release, self._release = self._release, None
        if release is not None:
            release()

    def stored_version(self) -> int | None:
        """The version of what :meth:`stored_positions` read; None when nothing read it."""
        return None if self._stored is None else self._stored[1]

    def resolve_path(self, p: str) -> Path:
        path = Path(os.path.expanduser(p))
        return path if path.is_absolute() else self.base_dir / path


_MISSING = object()


_INT64 = 1 << 63


# builtins under other names: Params has methods called str, int, bool and list
_S: TypeAlias = str


_I: TypeAlias = int


_B: TypeAlias = bool


_L: TypeAlias = list


class Params:
    """Reads a connector's ``parameter`` object, collecting every problem before raising.

    ``p.str("path", required=True)`` returns the value or records
    ``job.content[0].reader.parameter.path: is required``; ``p.done()``, called once after every
    key was read, raises one ConfigError with all problems.
    Numbers written as strings (``"fetchSize": "1024"``) are accepted, as the seeds write them.
    A string key given an integer takes its digits (``fileName: 2024``); given a fractional
    number it is a problem, since the text written is lost (``2024.10`` reads as ``2024.1``).

    A key and another name of it (``primaryKey`` and ``pk``, ``username`` and ``user``) given
    different values is a problem: which one counts would be a guess.

    A key the connector never read is an error (``unknown_keys``, with a "did you mean"), unless
    the one table of keys tidesync deliberately ignores lists it (``ignored_keys``,
    :data:`tidesync.spec.ignored.IGNORED`). The engine asks both of every connector it builds,
    so a connector only has to read the keys it understands.
    """

    def __init__(self, params: dict[_S, Any], ctx: Context, known_extra: Sequence[_S] = ()):
        if not isinstance(params, dict):
            raise ConfigError(
                f"{ctx.where or 'parameter'}: must be an object, got {type(params).__name__}"
            )
        self.raw = params
        self.ctx = ctx
        self.problems: _L[_S] = []
        self.seen: set[_S] = set(known_extra)
        self.finished = False  # done() was called: every key the connector reads was read
        self._clashes: set[tuple[_S, _S]] = set()  # a key and its alias told apart (see get)

    def problem(self, key: _S, message: _S) -> None:
        self.problems.append(f"{self.ctx.path(key)}: {message}")

    def _told(self, a: _S, b: _S) -> _B:
        """Whether the clash of ``a`` and ``b`` was recorded already (a key read twice)."""
        if (a, b) in self._clashes:
            return True
        self._clashes.add((a, b))
        return False

    def get(
        self, key: _S, default: Any = None, *, required: _B = False, aliases: Sequence[_S] = ()
    ) -> Any:
        self.seen.add(key)
        self.seen.update(aliases)
        given = [k for k in (key, *aliases) if k in self.raw and self.raw[k] not in (None, "")]
        for k in given[1:]:
            if self.raw[k] != self.raw[given[0]] and not self._told(given[0], k):
                # which one counts would be a guess: primaryKey [id] beside pk [name]
                self.problem(
                    k,
                    f"{_brief(self.raw[k])} differs from {given[0]} ({_brief(self.raw[given[0]])}), "
                    "another name of the same key; keep one",
                )
        if given:
            return self.raw[given[0]]
        if required:
            self.problem(key, "is required")
        return default

    def str(
        self,
        key: _S,
        default: _S | None = None,
        *,
        required: _B = False,
        choices: Sequence[_S] | None = None,
        aliases: Sequence[_S] = (),
        lower: _B = False,
    ) -> Any:
        v = self.get(key, _MISSING, required=required, aliases=aliases)
        if v is _MISSING:
            return default
        if isinstance(v, float):
            # the text written is lost: 2024.10 reads as 2024.1, 1.0e+3 as 1000.0
            self.problem(key, f"must be a string, got the number {_show(v)}; write it in quotes")
            return default
        if not isinstance(v, _S | _I) or isinstance(v, _B):
            self.problem(key, f"must be a string, got {_show(v)}")
            return default
        v = _S(v)
        if choices is not None:
            cmp = v.lower() if lower else v
            allowed = [c.lower() for c in choices] if lower else _L(choices)
            if cmp not in allowed:
                self.problem(
                    key, f"{v!r} is not one of {', '.join(choices)}{did_you_mean(v, choices)}"
                )
                return default
            return choices[allowed.index(cmp)]
        return v

    def int(
        self,
        key: _S,
        default: _I | None = None,
        *,
        required: _B = False,
        minimum: _I | None = None,
        aliases: Sequence[_S] = (),
    ) -> Any:
        v = self.get(key, _MISSING, required=required, aliases=aliases)
        if v is _MISSING:
            return default
        try:
            if isinstance(v, _B) or not isinstance(v, _I | float | _S):
                raise ValueError
            n = _I(v) if not isinstance(v, float) or v.is_integer() else None
            if n is None:
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            self.problem(key, f"must be an integer, got {_show(v)}")
            return default
        if not -_INT64 <= n < _INT64:
            self.problem(key, f"must fit in 64 bits, got {_show(v)}")
            return default
        if minimum is not None and n < minimum:
            self.problem(key, f"must be at least {minimum}, got {n}")
            return default
        return n

    def size(self, key: _S, default: _I | None = None) -> Any:
        """A byte size: ``1048576``, ``"64MB"``, ``"1.5g"``; a whole number of bytes (``1.5``
        is an error, not 1 byte)."""
        v = self.get(key, _MISSING)
        if v is _MISSING:
            return default
        n = parse_size(v)
        if n is None or n <= 0:
            self.problem(
                key,
                "must be a positive size such as 1048576 or '64MB' (a whole number of bytes), "
                f"got {_show(v)}",
            )
            return default
        return n

    def bool(self, key: _S, default: _B = False, *, aliases: Sequence[_S] = ()) -> _B:
        v = self.get(key, _MISSING, aliases=aliases)
        if v is _MISSING:
            return default
        if isinstance(v, _B):
            return v
        if isinstance(v, _S) and v.lower() in ("true", "false", "yes", "no", "1", "0"):
            return v.lower() in ("true", "yes", "1")
        if isinstance(v, _I) and v in (0, 1):
            return _B(v)
        self.problem(key, f"must be true or false, got {_show(v)}")
        return default

    def list(
        self,
        key: _S,
        default: _L[Any] | None = None,
        *,
        required: _B = False,
        aliases: Sequence[_S] = (),
    ) -> Any:
        """A _L; a single value is taken as a _L of one (DataX accepts both)."""
        v = self.get(key, _MISSING, required=required, aliases=aliases)
        if v is _MISSING:
            return default
        return v if isinstance(v, _L) else [v]

    def obj(
        self, key: _S, default: dict[_S, Any] | None = None, *, keys: Sequence[_S] | None = None
    ) -> Any:
        """An object; with ``keys``, any other key in it is a problem (see ``check_keys``)."""
        v = self.get(key, _MISSING)
        if v is _MISSING:
            return default
        if not isinstance(v, dict):
            self.problem(key, f"must be an object, got {_show(v)}")
            return default
        if keys is not None:
            self.check_keys(v, key, keys)
        return v

    def check_keys(self, obj: dict[Any, Any], key: _S, known: Sequence[_S]) -> None:
        """Record ``key.k: unknown key; did you mean ...`` for each key of the nested object
        ``obj`` (found at ``key``) that is not in ``known``."""
        for k in obj:
            if k not in known:
                self.problem(f"{key}.{k}", f"unknown key{did_you_mean(_S(k), known)}")

    def done(self) -> None:
        """Every key has been read: raise one ConfigError with all problems found, if any."""
        self.finished = True
        if self.problems:
            raise ConfigError(self.problems)

    def unknown_keys(self) -> _L[_S]:
        """A problem for each key the connector never read and tidesync does not ignore."""
        return [
            f"{self.ctx.path(_S(k))}: unknown key{did_you_mean(_S(k), sorted(self.seen))}"
            for k in self.raw
            if k not in self.seen and why_ignored(self.ctx.path(_S(k))) is None
        ]

    def ignored_keys(self) -> _L[_S]:
        """Key paths the connector never read that the table of ignored DataX keys lists."""
        paths = (self.ctx.path(_S(k)) for k in self.raw if k not in self.seen)
        return [p for p in paths if why_ignored(p) is not None]


def _show(v: Any) -> str:
    if isinstance(v, dict | list):
        return type(v).__name__
    r = repr(v)
    return r if len(r) <= 80 else f"{r[:60]}... ({len(r)} characters)"


def _brief(v: Any) -> str:
    """``v`` as written when short (a list too), else as :func:`_show` has it."""
    r = repr(v)
    return r if len(r) <= 60 else _show(v)


def parse_size(v: Any) -> int | None:
    """Bytes, or None when ``v`` is not a size of whole bytes (``1.5`` and ``"0.1KB"`` are not:
    cut to 1 and 102 they would be a size the user did not write)."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v if v < _INT64 else None
    if isinstance(v, float):
        return int(v) if v.is_integer() and v < _INT64 else None
    if not isinstance(v, str):
        return None
    s = v.strip().lower().replace(" ", "")
    units = {
        "": 1,
        "b": 1,
        "k": 1 << 10,
        "kb": 1 << 10,
        "m": 1 << 20,
        "mb": 1 << 20,
        "g": 1 << 30,
        "gb": 1 << 30,
        "t": 1 << 40,
        "tb": 1 << 40,
        "kib": 1 << 10,
        "mib": 1 << 20,
        "gib": 1 << 30,
        "tib": 1 << 40,
    }
    num = s.rstrip("kmgtib")
    unit = s[len(num) :]
    try:
        if num.isascii() and num.isdigit():  # exact: a float would round past 2**53
            return int(num) * units[unit] if int(num) * units[unit] < _INT64 else None
        n = float(num) * units[unit]
    except (ValueError, KeyError):
        return None
    return int(n) if n.is_integer() and n < _INT64 else None
