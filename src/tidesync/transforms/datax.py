"""DataX's built-in transformers, over whole Arrow columns.

A DataX job names a column by position and passes its arguments as strings::

    {"name": "dx_substr", "parameter": {"columnIndex": 1, "paras": ["1", "3"]}}

``columnIndex`` is the 0-based position of the column in the batch; ``paras`` are the
transformer's arguments (numbers may be written as strings or numbers). Semantics follow DataX's
``SubstrTransformer``, ``PadTransformer``, ``ReplaceTransformer``, ``FilterTransformer`` and
``DigestTransformer``; where tidesync differs it says so here and in ``docs/transforms.md``:

- positions and lengths count Java's UTF-16 units (a character outside the BMP is two), and a
  result that would cut such a character in half makes the row dirty (DataX writes it broken);
- a start position past the end of a value makes the row dirty, as in DataX (at the end it
  is a value: ``dx_substr`` gives ``""``, ``dx_replace`` appends);
- ``like``/``not like`` use RE2 syntax (no look-around or back-references), fully anchored as
  Java's ``String.matches``; what RE2 accepts but reads otherwise than Java (a nested class,
  ``&&`` in a class, ``\\v``) is a ConfigError.

A column that is not text is first converted to text with Arrow's cast (DataX's ``asString``),
a timestamp that carries a zone as wall-clock time in the job's zone, a float in plain digits
(``15000000000``, as the databases give it to DataX), and the transformed column is a string
column.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import operator
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from tidesync.errors import ConfigError, DirtyRecordError
from tidesync.plugin import Context
from tidesync.transforms.base import Transform
from tidesync.transforms.columns import decimal_text, epoch_ms, plain_floats

__all__ = ["Substr", "Pad", "Replace", "Filter", "Digest"]


class _DataX(Transform):
    """``{"columnIndex": i, "paras": [...]}``: checks both, then ``_parse`` reads ``paras``."""

    #: how DataX users know the arguments, for messages: "[startIndex, length]"
    signature: ClassVar[str] = ""

    def __init__(self, params: dict[str, Any], ctx: Context):
        super().__init__(params, ctx)
        self.index: int = self.p.int("columnIndex", required=True, minimum=0)
        paras = self.p.list("paras", required=True)
        if paras is not None:
            want = self.signature.count(",") + 1
            if len(paras) != want:
                self.p.problem(
                    "paras",
                    f"{self.name} needs {want} values {self.signature}, got {len(paras)}",
                )
            else:
                self._parse(paras)
        self.p.done()

    def _parse(self, paras: list[Any]) -> None:
        raise NotImplementedError

    # -- reading paras ----------------------------------------------------------------------

    def _int(self, paras: list[Any], i: int, what: str) -> int:
        v = paras[i]
        try:
            if isinstance(v, bool) or isinstance(v, float) and not v.is_integer():
                raise ValueError
            n = int(v.strip() if isinstance(v, str) else v)
            if n < 0:
                raise ValueError
        except (TypeError, ValueError):
            self.p.problem(
                f"paras[{i}]", f"{self.name} {what} must be a whole number >= 0, got {v!r}"
            )
            return 0
        return n

    def _str(self, paras: list[Any], i: int, what: str, *, empty: bool = True) -> str:
        v = paras[i]
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            self.p.problem(f"paras[{i}]", f"{self.name} {what} must be a string, got {v!r}")
            return ""
        if not empty and v == "":
            self.p.problem(f"paras[{i}]", f"{self.name} {what} must not be empty")
        return str(v)

    def _choice(self, paras: list[Any], i: int, what: str, choices: dict[str, str]) -> str:
        v = paras[i]
        key = v.strip().lower() if isinstance(v, str) else None
        if key not in choices:
            shown = ", ".join(dict.fromkeys(choices.values()))
            self.p.problem(f"paras[{i}]", f"{self.name} {what} must be one of {shown}, got {v!r}")
            return next(iter(choices.values()))
        return choices[key]

    # -- the column -------------------------------------------------------------------------

    def _field(self, schema: pa.Schema) -> pa.Field:
        if self.index >= len(schema):
            raise ConfigError(
                f"{self.ctx.path('columnIndex')}: there is no column {self.index} "
                f"(0-based); {_describe(schema)}"
            )
        return schema.field(self.index)

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is None:
            return None
        f = self._field(schema)
        return schema.set(self.index, f.with_type(self._out_type(f.type)))

    def _out_type(self, t: pa.DataType) -> pa.DataType:
        _text_type(t, self._where_type(t))  # type-level check only
        return pa.large_string() if _is_large(t) else pa.string()

    def _where_type(self, t: pa.DataType) -> str:
        return (
            f"{self.ctx.path('columnIndex')}: column {self.index} is {t}, which has no text "
            f"form; {self.name} works on text, numbers, dates and the like"
        )

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        f = self._field(batch.schema)
        col = batch.column(self.index)
        out = self._column(_text(col, f.name, self._where_type(f.type), self.ctx.timezone))
        return batch.set_column(self.index, f.with_type(out.type), out)

    def _column(self, text: pa.Array) -> pa.Array:
        raise NotImplementedError

    def _java(self, text: pa.Array, fn: Callable[[bytes], bytes]) -> pa.Array:
        """``fn`` over each value as Java's UTF-16 units (little-endian bytes, two a unit).

        Used only for a batch with a character outside the BMP (an emoji, a rare CJK
        character), where Java's positions, two units for such a character, are not Arrow's
        code points. A result that cuts such a character in half has no UTF-8 form: DataX
        would write a broken character, here the row is dirty."""
        out: list[str | None] = []
        for s in text.to_pylist():
            if s is None:
                out.append(None)
                continue
            units = fn(s.encode("utf-16-le"))
            try:
                out.append(units.decode("utf-16-le"))
            except UnicodeDecodeError:
                raise DirtyRecordError(
                    f"{self.name}: the result for {s!r} (column {self.index}) would cut a "
                    f"character outside the BMP in half (Java counts it as two UTF-16 units)"
                ) from None
        return pa.array(out, text.type)

    def _past_end(self, start: int, value: str) -> DirtyRecordError:
        return DirtyRecordError(
            f"{self.name}: startIndex {start} is past the end of the value {value!r} "
            f"(column {self.index})"
        )

    def _start_within(self, text: pa.Array, start: int) -> None:
        """DataX throws for a start position past the end of a value: its row is dirty."""
        past = pc.less(pc.utf8_length(text), pa.scalar(start, pa.int64()))
        if pc.any(past).as_py():
            one = f" {text[0].as_py()!r}" if len(text) == 1 else ""
            raise DirtyRecordError(
                f"{self.name}: startIndex {start} is past the end of the value{one} "
                f"(column {self.index})"
            )


class Substr(_DataX):
    """``paras: [startIndex, length]``: ``length`` characters from ``startIndex`` (0-based)."""

    name = "dx_substr"
    summary = "substring of a column by character position (DataX dx_substr)"
    signature = "[startIndex, length]"

    def _parse(self, paras: list[Any]) -> None:
        self.start = self._int(paras, 0, "startIndex")
        self.length = self._int(paras, 1, "length")

    def _column(self, text: pa.Array) -> pa.Array:
        if _has_astral(text):
            return self._java(text, self._units)
        self._start_within(text, self.start)
        return pc.utf8_slice_codeunits(text, self.start, self.start + self.length)

    def _units(self, u: bytes) -> bytes:
        if 2 * self.start > len(u):
            raise self._past_end(self.start, u.decode("utf-16-le"))
        return u[2 * self.start : 2 * (self.start + self.length)]


class Pad(_DataX):
    """``paras: [l|r, length, padString]``: pad to ``length`` characters, or cut the right side."""

    name = "dx_pad"
    summary = "pad a column to a length on the left or right, or cut it (DataX dx_pad)"
    signature = "[l|r, length, padString]"

    def _parse(self, paras: list[Any]) -> None:
        self.side = self._choice(paras, 0, "side", {"l": "l", "r": "r"})
        self.length = self._int(paras, 1, "length")
        self.pad = self._str(paras, 2, "padString", empty=False)

    def _column(self, text: pa.Array) -> pa.Array:
        # DataX pads a null as "" (the result is all padding).
        text = pc.fill_null(text, pa.scalar("", text.type))
        if _has_astral(text) or any(ord(c) > 0xFFFF for c in self.pad):
            return self._java(text, self._units)
        cut = pc.utf8_slice_codeunits(text, 0, self.length)
        need = pc.subtract(pa.scalar(self.length, pa.int64()), pc.utf8_length(cut).cast(pa.int64()))
        # A padding per distinct missing length, not per row: few distinct values in a batch.
        distinct = pc.unique(need).to_pylist()
        repeated = self.pad * (self.length // len(self.pad) + 1)
        pads = pa.array([repeated[:k] for k in distinct], text.type)
        padding = pads.take(pc.index_in(need, value_set=pa.array(distinct, pa.int64())))
        parts = (padding, cut) if self.side == "l" else (cut, padding)
        return pc.binary_join_element_wise(*parts, pa.scalar("", text.type))

    def _units(self, u: bytes) -> bytes:
        if 2 * self.length <= len(u):
            return u[: 2 * self.length]
        need = 2 * self.length - len(u)
        pad = self.pad.encode("utf-16-le")
        padding = (pad * (need // len(pad) + 1))[:need]
        return padding + u if self.side == "l" else u + padding


class Replace(_DataX):
    """``paras: [startIndex, length, replaceString]``: replace ``[start, start+length)``."""

    name = "dx_replace"
    summary = "replace the characters at a position of a column (DataX dx_replace)"
    signature = "[startIndex, length, replaceString]"

    def _parse(self, paras: list[Any]) -> None:
        self.start = self._int(paras, 0, "startIndex")
        self.length = self._int(paras, 1, "length")
        self.replacement = self._str(paras, 2, "replaceString")

    def _column(self, text: pa.Array) -> pa.Array:
        if _has_astral(text):
            return self._java(text, self._units)
        self._start_within(text, self.start)
        head = pc.utf8_slice_codeunits(text, 0, self.start)
        tail = pc.utf8_slice_codeunits(text, self.start + self.length)
        mid = pa.scalar(self.replacement, text.type)
        return pc.binary_join_element_wise(head, mid, tail, pa.scalar("", text.type))

    def _units(self, u: bytes) -> bytes:
        if 2 * self.start > len(u):
            raise self._past_end(self.start, u.decode("utf-16-le"))
        return (
            u[: 2 * self.start]
            + self.replacement.encode("utf-16-le")
            + u[2 * (self.start + self.length) :]
        )


class Digest(_DataX):
    """``paras: [md5|sha1, toUpperCase|toLowerCase]``: the hex digest of the column's value."""

    name = "dx_digest"
    summary = "md5 or sha1 hex digest of a column (DataX dx_digest)"
    signature = "[md5|sha1, toUpperCase|toLowerCase]"

    def _parse(self, paras: list[Any]) -> None:
        self.algorithm = self._choice(paras, 0, "algorithm", {"md5": "md5", "sha1": "sha1"})
        case = self._choice(
            paras, 1, "case", {"touppercase": "toUpperCase", "tolowercase": "toLowerCase"}
        )
        self.upper = case == "toUpperCase"
        # DataX checks both names ignoring case, then computes md5 only for exactly "md5" and
        # upper case only for exactly "toUpperCase": its "MD5" is a sha1, its "touppercase"
        # lower case. Which one a job written so means is a guess: an error.
        for i, meant in ((0, "md5"), (1, "toUpperCase")):
            v = paras[i]
            if isinstance(v, str) and v.strip().lower() == meant.lower() and v.strip() != meant:
                other = "sha1" if meant == "md5" else "lower case"
                self.p.problem(
                    f"paras[{i}]",
                    f"{self.name} {v!r} is ambiguous: write {meant!r} exactly "
                    f"(DataX reads any other spelling of it as {other})",
                )

    def _out_type(self, t: pa.DataType) -> pa.DataType:
        if not _is_binary(t):
            _text_type(t, self._where_type(t))
        return pa.string()

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        f = self._field(batch.schema)
        col = batch.column(self.index)
        if _is_binary(col.type):  # the bytes themselves, not a text form of them
            raw = col.cast(pa.large_binary())
        else:
            raw = _text(col, f.name, self._where_type(f.type), self.ctx.timezone)
            raw = raw.cast(pa.large_binary())
        # Arrow has no md5: one pass of hashlib over the column, nulls hashed as "" like DataX.
        new = getattr(hashlib, self.algorithm)
        values = pc.fill_null(raw, pa.scalar(b"", raw.type)).to_pylist()
        hexes = [new(v).hexdigest() for v in values]
        out = pa.array(hexes, pa.string())
        if self.upper:
            out = pc.ascii_upper(out)
        return batch.set_column(self.index, f.with_type(pa.string()), out)


#: operator as written (lower case) -> the one it means
_OPERATORS = {
    "like": "like",
    "not like": "not like",
    ">": ">",
    "<": "<",
    "=": "=",
    "==": "=",
    "!=": "!=",
    ">=": ">=",
    "<=": "<=",
}
_COMPARE = {
    ">": pc.greater,
    "<": pc.less,
    "=": pc.equal,
    "!=": pc.not_equal,
    ">=": pc.greater_equal,
    "<=": pc.less_equal,
}

#: the ordering operators, on Python values (UTF-16 units as big-endian bytes)
_ORDER: dict[str, Callable[[bytes, bytes], bool]] = {
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


class Filter(_DataX):
    """``paras: [operator, value]``: drop the rows that meet the condition (DataX semantics).

    Comparisons follow the column's type: numbers by value, exactly (integers against a
    fraction or out of their type's range as decimals, a float32 as the number its shortest
    text shows); text, bytes and booleans lexicographically (booleans as ``"true"``/``"false"``);
    dates and timestamps against an ISO-8601 value (wall-clock time in the job's zone) or, as
    DataX does, a whole number of milliseconds since the epoch.
    Nulls, as DataX treats them: ``>``, ``>=``, ``<``, ``<=`` and ``like`` keep them;
    ``not like`` drops them; ``= null`` drops exactly the nulls and ``!= null`` keeps exactly
    the nulls; ``!=`` any other value drops them, ``=`` any other value keeps them.
    """

    name = "dx_filter"
    summary = "drop the rows whose column meets a condition (DataX dx_filter)"
    signature = "[operator, value]"

    def _parse(self, paras: list[Any]) -> None:
        choices = {k: k for k in _OPERATORS}
        self.op = _OPERATORS[self._choice(paras, 0, "operator", choices)]
        self.value = self._str(paras, 1, "value", empty=False)
        self.pattern = ""
        if self.op in ("like", "not like"):
            # Java's String.matches is a full match; RE2 is anchored the same way here.
            self.pattern = f"^(?:{_java_dots(self.value)})$"
            try:
                pc.match_substring_regex(pa.array([""]), self.value)
                pc.match_substring_regex(pa.array([""]), self.pattern)
            except pa.ArrowInvalid as e:
                self.p.problem("paras[1]", f"dx_filter {self.op} needs a regular expression: {e}")
            else:
                differs = _java_differs(self.value)
                if differs:
                    self.p.problem(
                        "paras[1]",
                        f"dx_filter {self.op}: {differs}, so the pattern would match other "
                        f"text than in DataX; write it another way",
                    )
        self._cache: dict[pa.DataType, Any] = {}

    def output_schema(self, schema: pa.Schema | None) -> pa.Schema | None:
        if schema is not None:
            self._operand(self._field(schema).type)
        return schema

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        f = self._field(batch.schema)
        met = self._condition(batch.column(self.index), f)
        return batch.filter(pc.invert(met))

    def _is_null_test(self) -> bool:
        # DataX: value.equalsIgnoreCase("null"), not trimmed (" null" is a plain value)
        return self.op in ("=", "!=") and self.value.lower() == "null"

    @staticmethod
    def _compares_text(t: pa.DataType) -> bool:
        """DataX's String/Bytes/Bool columns: compared by their text (``asString``)."""
        return (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_string_view(t)
            or _is_binary(t)
            or pa.types.is_boolean(t)
        )

    def _operand(self, t: pa.DataType) -> Any:
        """The value compared with a column of type ``t`` (checked once per type)."""
        if t in self._cache:
            return self._cache[t]
        v = self.value
        where = self.ctx.path("paras[1]")
        what = f"dx_filter compares column {self.index} ({t}) with {v!r}"
        if self._is_null_test() and self._compares_text(t):
            # DataX: "= null" drops the nulls *and* the text equal to the value as written
            # ("null" but not "NULL" under = null); "!= null" keeps both.
            operand: Any = (
                pa.scalar(v.encode(), pa.large_binary())
                if _is_binary(t)
                else pa.scalar(v, pa.string())
            )
        elif self._is_null_test() or self.op in ("like", "not like"):
            if self.op in ("like", "not like") and not _is_binary(t):
                _text_type(t, self._where_type(t))
            operand = None
        elif pa.types.is_integer(t):
            operand = self._integer_operand(t, v, where, what)
        elif pa.types.is_floating(t):
            try:
                operand = pa.scalar(int(v) if re.fullmatch(r"\s*[-+]?\d+\s*", v) else float(v))
            except (ValueError, OverflowError, pa.ArrowInvalid):
                raise ConfigError(f"{where}: {what}, which is not a number") from None
        elif pa.types.is_decimal(t):
            try:
                operand = pa.scalar(Decimal(v.strip()))
            except InvalidOperation:
                raise ConfigError(f"{where}: {what}, which is not a number") from None
        elif pa.types.is_timestamp(t) or pa.types.is_date(t):
            operand = self._temporal_operand(t, v, where, what)
        elif _is_binary(t):
            operand = pa.scalar(v.encode(), pa.large_binary())
        elif pa.types.is_boolean(t):
            operand = pa.scalar(v, pa.string())
        elif pa.types.is_time(t):
            try:
                # Arrow cannot cast text to a time of day
                operand = pa.scalar(dt.time.fromisoformat(v.strip()), t)
            except (ValueError, pa.ArrowInvalid):
                raise ConfigError(
                    f"{where}: {what}, which is not a time such as '12:30:00'"
                ) from None
        else:
            _text_type(t, self._where_type(t))
            operand = pa.scalar(v, pa.string())
        self._cache[t] = operand
        return operand

    def _integer_operand(self, t: pa.DataType, v: str, where: str, what: str) -> Any:
        if re.fullmatch(r"\s*[-+]?\d+\s*", v):
            try:
                return pa.scalar(int(v), t)  # a whole number the column's type holds
            except (OverflowError, pa.ArrowInvalid):
                pass
        # Otherwise both sides as decimals: Arrow would compare 1.5 with an int64 as doubles
        # (failing past 2**53) and -1 with a uint64 as int64 (failing past 2**63).
        try:
            d = Decimal(v.strip())
            if not d.is_finite():
                raise InvalidOperation
            return ("decimal", pa.scalar(d))
        except (InvalidOperation, OverflowError, pa.ArrowInvalid):
            raise ConfigError(f"{where}: {what}, which is not a number in range") from None

    def _temporal_operand(self, t: pa.DataType, v: str, where: str, what: str) -> Any:
        if re.fullmatch(r"\s*[-+]?\d+\s*", v):  # DataX: epoch milliseconds
            return ("epoch_ms", pa.scalar(int(v), pa.int64()))
        try:
            if pa.types.is_timestamp(t) and t.tz is not None:
                # a naive value is wall-clock time in the job's zone (the column's zone is often
                # just the reader's UTC for an instant); the instant then in the column's zone
                naive = pa.scalar(v.strip()).cast(pa.timestamp(t.unit))
                local = pc.assume_timezone(pa.array([naive]), self.ctx.timezone)
                return local.cast(t)[0]
            return pa.scalar(v.strip()).cast(t)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ConfigError(
                f"{where}: {what}, which is neither an ISO-8601 date/time such as "
                f"'2024-01-31 12:00:00' nor milliseconds since 1970-01-01"
            ) from None

    def _where_type(self, t: pa.DataType) -> str:
        return (
            f"{self.ctx.path('columnIndex')}: column {self.index} is {t}; "
            f"dx_filter compares numbers, text, bytes, booleans, dates and timestamps"
        )

    def _condition(self, col: pa.Array, f: pa.Field) -> pa.Array:
        """True where the row meets the condition (and so is dropped); never null."""
        operand = self._operand(col.type)
        if self._is_null_test():
            if operand is None:  # a number, date, ...: only a null is "null"
                return pc.is_null(col) if self.op == "=" else pc.is_valid(col)
            same = pc.fill_null(pc.equal(_as_compared(col), operand), False)
            if self.op == "=":
                return pc.or_(pc.is_null(col), same)
            return pc.and_(pc.is_valid(col), pc.invert(same))
        if self.op in ("like", "not like"):
            text = (
                col.cast(pa.large_binary())
                if _is_binary(col.type)
                else _text(col, f.name, "", self.ctx.timezone)
            )
            matched = pc.match_substring_regex(text, self.pattern)
            if self.op == "like":  # a null is not like anything: kept
                return pc.fill_null(matched, False)
            return pc.fill_null(pc.invert(matched), True)  # a null is "not like": dropped
        if isinstance(operand, tuple):
            kind, operand = operand
            if kind == "epoch_ms":  # epoch milliseconds against a date or timestamp
                col = epoch_ms(col, self.ctx.timezone, f.name)
            else:  # any 64-bit integer fits 20 digits exactly
                col = col.cast(pa.decimal128(20, 0))
        elif pa.types.is_floating(col.type) and col.type != pa.float64():
            # A float32 0.1 is 0.10000000149... as a double: compare the number its shortest
            # text shows (what a reader of the table sees, and DataX's Double.parseDouble).
            col = col.cast(pa.string()).cast(pa.float64())
        else:
            col = _as_compared(col)
        if self.op in _ORDER and (
            pa.types.is_string(col.type) or pa.types.is_large_string(col.type)
        ):
            text = operand.as_py()
            if _has_astral(col) or _has_astral(pa.array([text])):
                # Java's compareTo orders UTF-16 units: a character outside the BMP (an emoji)
                # sorts before U+E000..U+FFFF (fullwidth forms), where code points sort it after.
                key = text.encode("utf-16-be")
                order = _ORDER[self.op]
                met = pa.array(
                    [
                        None if v is None else order(v.encode("utf-16-be"), key)
                        for v in col.to_pylist()
                    ],
                    pa.bool_(),
                )
                return pc.fill_null(met, False)
        met = _COMPARE[self.op](col, operand)
        # DataX: a null is never >, <, >=, <= or = a value; it is != every value but "null".
        return pc.fill_null(met, self.op == "!=")


#: what Java's "." matches (without DOTALL): anything but a line terminator; RE2's "." matches
#: "\r", U+0085, U+2028 and U+2029 too, so a CRLF value's "\r" met "foo.*" as it never does in Java
_JAVA_DOT = r"[^\n\r\x{85}\x{2028}\x{2029}]"


def _java_dots(pattern: str) -> str:
    r"""``pattern`` with each ``.`` outside a character class, an escape or ``\Q...\E`` made
    Java's; a pattern that turns on DOTALL (``(?s)``, ``(?is:...)``) is left as it is. Other
    flags (``(?i)``) and named groups (``(?P<name>``) leave ``.`` as it is in Java."""
    if re.search(r"\(\?[a-zA-Z]*s[a-zA-Z]*(?:-[a-zA-Z]*)?[:)]", pattern):
        return pattern
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and pattern.startswith("Q", i + 1):  # quoted up to \E
            end = pattern.find("\\E", i + 2)
            end = n if end < 0 else end + 2
            out.append(pattern[i:end])
            i = end
        elif c == "\\":
            out.append(pattern[i : i + 2])
            i += 2
        elif c == "[":  # a class, to its "]" ("[]" and "[^]" open with a literal "]")
            j = i + 1
            if pattern.startswith("^", j):
                j += 1
            if pattern.startswith("]", j):
                j += 1
            depth = 1
            while j < n and depth:
                if pattern[j] == "\\":
                    j += 1
                elif pattern[j] == "[":
                    depth += 1
                elif pattern[j] == "]":
                    depth -= 1
                j += 1
            out.append(pattern[i:j])
            i = j
        else:
            out.append(_JAVA_DOT if c == "." else c)
            i += 1
    return "".join(out)


def _java_differs(pattern: str) -> str | None:
    r"""What in ``pattern`` RE2 reads otherwise than Java, in words; None when nothing.

    Both accept these without an error: a ``[`` inside a class (Java: a nested class, a union,
    and ``[[:alpha:]]`` the characters ``:alph``; RE2: the character ``[`` or a POSIX class),
    ``&&`` inside a class (Java: an intersection; RE2: the character ``&``) and ```` (Java:
    any vertical whitespace; RE2: a vertical tab)."""
    i, n = 0, len(pattern)
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\" and pattern.startswith("Q", i + 1):  # quoted up to \E
            end = pattern.find("\\E", i + 2)
            i = n if end < 0 else end + 2
            continue
        if c == "\\":
            if pattern.startswith("v", i + 1):
                return "'\\v' is any vertical whitespace in Java but a vertical tab in RE2"
            i += 2
            continue
        if not in_class and c == "[":
            in_class = True
            i += 1 + pattern.startswith("^", i + 1)
            i += pattern.startswith("]", i)  # "[]" and "[^]" open with a literal "]"
            continue
        if in_class:
            if c == "[":
                return (
                    "a '[' inside a character class is a nested class in Java (so "
                    "'[[:alpha:]]' is the characters ':alph') but a '[' or a POSIX class in RE2"
                )
            if pattern.startswith("&&", i):
                return "'&&' inside a character class is an intersection in Java but '&' in RE2"
            in_class = c != "]"
        i += 1
    return None


def _as_compared(col: pa.Array) -> pa.Array:
    """Bytes as large_binary, booleans and string views as text, as dx_filter compares them."""
    if _is_binary(col.type):
        return col.cast(pa.large_binary())
    if pa.types.is_boolean(col.type) or pa.types.is_string_view(col.type):
        return col.cast(pa.string())
    return col


# -- helpers shared by the transformers ---------------------------------------------------------


def _describe(schema: pa.Schema) -> str:
    if len(schema) == 0:
        return "the batch has no columns"
    cols = ", ".join(f"{i} {n!r}" for i, n in enumerate(schema.names))
    return f"the batch has {len(schema)} columns: {cols}"


def _has_astral(text: pa.Array) -> bool:
    """Whether a value has a character outside the BMP: one Java counts as two UTF-16 units."""
    return bool(pc.any(pc.match_substring_regex(text, r"[\x{10000}-\x{10FFFF}]")).as_py())


def _is_large(t: pa.DataType) -> bool:
    return pa.types.is_large_string(t) or pa.types.is_large_binary(t)


def _is_binary(t: pa.DataType) -> bool:
    return (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_fixed_size_binary(t)
        or pa.types.is_binary_view(t)
    )


def _text_type(t: pa.DataType, where: str) -> pa.DataType:
    """The text type a column of type ``t`` becomes; ConfigError when it has no text form."""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return t
    try:
        pa.array([], t).cast(pa.string())
    except (pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise ConfigError(where) from None
    return pa.large_string() if _is_large(t) else pa.string()


def _text(col: pa.Array, name: str, where: str, timezone: str) -> pa.Array:
    """The column as string/large_string: DataX's ``asString``. A timestamp that carries a
    zone is an instant: its text is the wall-clock time in the job's zone, as DataX prints a
    date in the JVM's (Arrow's cast would print UTC, with a ``Z``: another day near midnight)."""
    target = _text_type(col.type, where)
    if col.type == target:
        return col
    if pa.types.is_timestamp(col.type) and col.type.tz is not None:
        col = pc.local_timestamp(col.cast(pa.timestamp(col.type.unit, timezone)))
    try:
        text = col.cast(target)
    except pa.ArrowInvalid as e:  # bytes that are not UTF-8: a fault of the row
        raise DirtyRecordError(f"column {name!r}: {_first_line(e)}") from None
    if pa.types.is_timestamp(col.type) or pa.types.is_time(col.type):
        # DataX prints yyyy-MM-dd HH:mm:ss (HH:mm:ss): Arrow's .000000 of a whole second would
        # shift every position after it and change every digest; a fraction is kept
        text = pc.replace_substring_regex(text, pattern=r"\.0+$", replacement="")
    if pa.types.is_floating(col.type):
        text = plain_floats(text)
    if pa.types.is_decimal(col.type):  # Arrow's 0E-8 for a zero of scale 8
        text = decimal_text(col).cast(target)
    return text


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
