"""PostgreSQL's ``pgoutput`` logical-decoding messages to Arrow, a whole batch at a time.

``pg_logical_slot_peek_binary_changes`` gives one row per message (``lsn``, ``data``); the reader
hands them over as one Arrow binary column, so every message's start is known without a Python
loop.
The messages (protocol version 1, text values)::

    B  final_lsn:8 commit_time:8 xid:4                  a transaction begins
    C  flags:1 commit_lsn:8 end_lsn:8 commit_time:8     ... and commits
    R  relid:4 nspname\\0 relname\\0 identity:1 ncols:2 (flags:1 name\\0 typoid:4 typmod:4)*
    I  relid:4 'N' tuple                                insert
    U  relid:4 ['K' tuple | 'O' tuple] 'N' tuple        update (old key, or old row with FULL)
    D  relid:4 ('K' | 'O') tuple                        delete
    T  nrels:4 options:1 relid:4*nrels                  truncate (an error for a target)
    tuple: ncols:2 (kind:1 ['t'|'b' len:4 bytes])*      kind n null, u unchanged TOASTed value

Relations are few and read in Python; the changes of one relation (same columns) are walked
column by column for all their messages at once with numpy (column *j* starts where *j-1*
ended), so Python never touches a value. A column's text values are gathered into one Arrow
string array and converted to the batch reader's Arrow type by Arrow casts (arrays: by the
server, with the very expression the batch reader uses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tidesync.connectors.sql.cdc import (
    OP,
    POS,
    TABLE,
    TS,
    TS_TYPE,
    distinct,
    from_numpy,
    from_strings,
    slices,
    to_bools,
)
from tidesync.errors import FatalError

__all__ = ["Decoder", "Relation", "lsn_int", "lsn_text"]

#: microseconds from 1970-01-01 to PostgreSQL's epoch 2000-01-01
PG_EPOCH_US = 946_684_800_000_000
_B, _C, _R, _I, _U, _D, _T = (ord(c) for c in "BCRIUDT")
_N, _K, _O = ord("N"), ord("K"), ord("O")
_NULL, _TOAST, _TEXT, _BIN = ord("n"), ord("u"), ord("t"), ord("b")


def lsn_int(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def lsn_text(v: int) -> str:
    return f"{v >> 32:X}/{v & 0xFFFFFFFF:X}"


@dataclass
class Relation:
    relid: int
    schema: str
    name: str
    identity: str  # d default, f full, i index, n nothing
    columns: list[tuple[int, str, int, int]]  # flags (1: key), name, type oid, typmod

    @property
    def key(self) -> list[int]:
        return [i for i, c in enumerate(self.columns) if c[0] & 1]


def _relation(data: bytes) -> Relation:
    relid = int.from_bytes(data[1:5], "big")
    pos = 5
    end = data.index(b"\0", pos)
    schema = data[pos:end].decode()
    pos = end + 1
    end = data.index(b"\0", pos)
    name = data[pos:end].decode()
    pos = end + 1
    identity = chr(data[pos])
    n = int.from_bytes(data[pos + 1 : pos + 3], "big")
    pos += 3
    cols = []
    for _ in range(n):
        flags = data[pos]
        end = data.index(b"\0", pos + 1)
        cname = data[pos + 1 : end].decode()
        oid = int.from_bytes(data[end + 1 : end + 5], "big")
        typmod = int.from_bytes(data[end + 5 : end + 9], "big", signed=True)
        cols.append((flags, cname, oid, typmod))
        pos = end + 9
    return Relation(relid, schema, name, identity, cols)


_OPS = from_strings(["c", "u", "d"])
_BE: dict[int, np.dtype[Any]] = {2: np.dtype(">u2"), 4: np.dtype(">u4"), 8: np.dtype(">i8")}


def _be(buf: np.ndarray, pos: np.ndarray, n: int) -> np.ndarray:
    """Big-endian unsigned ``n``-byte integers at ``pos`` (int64; 8 bytes must fit 63 bits):
    gathered at once through a view of ``buf`` (contiguous) as big-endian integers that start
    at every byte (unaligned, stride 1): one gather of ``len(pos)`` integers, three to eight
    times faster than gathering ``n`` bytes a position and reading them as integers."""
    view = np.ndarray((max(len(buf) - n + 1, 0),), _BE[n], buffer=buf, strides=(1,))
    return view[pos].astype(np.int64)


@dataclass
class _Tuple:
    kind: list[np.ndarray]  # per column: the kind byte
    start: list[np.ndarray]  # value start
    length: list[np.ndarray]  # value length (0 unless t/b)
    end: np.ndarray  # where the tuple ends


def _walk(buf: np.ndarray, pos: np.ndarray, ncols: int) -> _Tuple:
    """The columns of tuples starting at ``pos`` (at their column count), all at once."""
    pos = pos + 2
    kinds, starts, lens = [], [], []
    for _ in range(ncols):
        kind = buf[pos]
        has = (kind == _TEXT) | (kind == _BIN)
        if has.all():  # no NULL, no unchanged TOAST value in this column: no masking
            ln = _be(buf, pos + 1, 4)
            nxt = pos + 5 + ln
        else:
            ln = np.where(has, _be(buf, np.where(has, pos + 1, 0), 4), 0)
            nxt = pos + 1 + np.where(has, 4 + ln, 0)
        kinds.append(kind)
        starts.append(pos + 5)
        lens.append(ln)
        pos = nxt
    return _Tuple(kinds, starts, lens, pos)


def _strings(buf: np.ndarray, start: np.ndarray, length: np.ndarray, valid: np.ndarray) -> pa.Array:
    return slices(buf, start, length, valid)


# -- text to the batch reader's types -------------------------------------------------------------

_HEX = np.full(256, 0, dtype=np.uint8)
for _i, _c in enumerate(b"0123456789abcdef"):
    _HEX[_c] = _i
for _i, _c in enumerate(b"ABCDEF"):
    _HEX[_c] = 10 + _i


def _bytea(arr: pa.Array) -> pa.Array:
    """``\\x0102`` (bytea_output hex) to binary, vectorized."""
    if arr.offset:
        arr = pa.concat_arrays([from_strings([]), arr])
    valid = to_bools(arr.is_valid())
    off = np.frombuffer(arr.buffers()[1], dtype=np.int32)[: len(arr) + 1].astype(np.int64)
    raw = arr.buffers()[2]
    data = np.frombuffer(raw, dtype=np.uint8) if raw is not None else np.zeros(0, np.uint8)
    lens = np.where(valid, (off[1:] - off[:-1] - 2) // 2, 0)
    out_off = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(lens, out=out_off[1:])
    total = int(out_off[-1])
    out: np.ndarray = np.zeros(0, np.uint8)
    if total:
        src = np.repeat(off[:-1] + 2 - 2 * out_off[:-1], lens) + 2 * np.arange(
            total, dtype=np.int64
        )
        out = (_HEX[data[src]] << 4) | _HEX[data[src + 1]]
    return pa.Array.from_buffers(
        pa.binary(),
        len(arr),
        [arr.buffers()[0], pa.py_buffer(out_off.astype(np.int32)), pa.py_buffer(out)],
        arr.null_count,
    )


_NON_FINITE = from_strings(["NaN", "Infinity", "-Infinity"])
#: the batch reader's text of a numeric NaN and infinities (ADBC's, which reads every numeric
#: kept as text: unconstrained, or wider than a decimal256), in ``_NON_FINITE``'s order
_NON_FINITE_READ = from_strings(["nan", "inf", "-inf"])
_INFINITE = from_strings(["infinity", "-infinity"])
_DAY_END = from_strings(["24:00:00"])  # a time PostgreSQL allows and Arrow's time64 cannot hold
_NULL_TEXT = from_strings([None])[0]
_TRUE_TEXT, _EPOCH_DAY, _EMPTY = from_strings(["t", "1970-01-01 ", ""])
_FALSE = from_numpy(np.zeros(1, bool))[0]


class Multidimensional(ValueError):
    """A float array of more than one dimension, which the batch reader refuses too."""


_NULL_WORD = from_strings(["NULL"])[0]


def _float_list(arr: pa.Array, t: pa.ListType) -> pa.Array:
    """One-dimensional float arrays in PostgreSQL's text (``{1.5,NaN,NULL}``, ``[0:1]={..}``)
    as a list of floats, as the batch reader decodes them."""
    body = pc.replace_substring_regex(arr, pattern=r"^(\[[^\]]*\]=)?\{(.*)\}$", replacement=r"\2")
    if pc.any(pc.fill_null(pc.match_substring(body, "{"), False)).as_py():
        raise Multidimensional
    parts = pc.split_pattern(body, ",")
    empty = to_bools(pc.equal(body, _EMPTY), null=True)  # '{}' (and NULL): no elements
    lens = np.where(empty, 0, pc.fill_null(pc.list_value_length(parts), 0).to_numpy())
    offsets = np.zeros(len(arr) + 1, np.int32)
    np.cumsum(lens, out=offsets[1:])
    flat = pc.list_flatten(parts)
    if len(flat):
        keep = ~empty[pc.list_parent_indices(parts).to_numpy()]
        flat = flat.filter(from_numpy(keep))
    values = pc.if_else(pc.equal(flat, _NULL_WORD), _NULL_TEXT, flat).cast(t.value_type)
    valid = to_bools(arr.is_valid())
    return pa.ListArray.from_arrays(
        from_numpy(offsets), values, type=t, mask=None if valid.all() else from_numpy(~valid)
    )


def from_text(
    arr: pa.Array,
    t: pa.DataType,
    oid: int,
    server: Callable[[pa.Array], pa.Array] | None,
    numeric: bool = False,
) -> tuple[pa.Array, pa.Array | None]:
    """Text values (pgoutput's, the type's output function) as Arrow type ``t`` the way the
    batch reader gives them; and a mask of rows whose value has no such form (None: none).
    ``numeric``: the column is a numeric (or a domain over one) that the batch reader reads."""
    if server is not None:
        return server(arr), None
    if pa.types.is_list(t) and pa.types.is_floating(t.value_type):
        return _float_list(arr, t), None
    if pa.types.is_string(t):
        if numeric:  # NaN, Infinity, -Infinity as the batch reader writes them
            which = pc.index_in(arr, value_set=_NON_FINITE)
            if which.null_count < len(which):
                return pc.if_else(pc.is_null(which), arr, _NON_FINITE_READ.take(which)), None
        return arr, None
    if pa.types.is_boolean(t):
        return pc.equal(arr, _TRUE_TEXT), None
    if pa.types.is_binary(t):
        return _bytea(arr), None
    if pa.types.is_decimal(t):
        bad = pc.fill_null(pc.is_in(arr, _NON_FINITE), _FALSE)
        if pc.any(bad).as_py():
            return pc.if_else(bad, _NULL_TEXT, arr).cast(t), bad
        return arr.cast(t), None
    if pa.types.is_time(t):
        bad = pc.fill_null(pc.is_in(arr, _DAY_END), _FALSE)
        some = pc.any(bad).as_py()
        if some:
            arr = pc.if_else(bad, _NULL_TEXT, arr)
        stamp = pc.binary_join_element_wise(_EPOCH_DAY, arr, _EMPTY)
        us = stamp.cast(pa.timestamp("us")).cast(pa.int64())
        return us.cast(t), bad if some else None
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        bad = pc.fill_null(
            pc.or_(pc.is_in(arr, _INFINITE), pc.ends_with(arr, pattern=" BC")),
            _FALSE,
        )
        if pc.any(bad).as_py():
            return pc.if_else(bad, _NULL_TEXT, arr).cast(t), bad
        return arr.cast(t), None
    return arr.cast(t), None


# -- the decoder ---------------------------------------------------------------------------------


@dataclass
class Target:
    """One table as the reader gives it: its output name and columns (name -> Arrow type)."""

    label: str
    types: dict[str, pa.DataType]
    arrays: set[str] = field(default_factory=set)  # columns of an array type: the server converts
    key: list[str] = field(
        default_factory=list
    )  # the primary key (REPLICA IDENTITY FULL flags all)
    numeric: set[str] = field(default_factory=set)  # columns of a numeric type (or domain)
    deferrable: bool = False  # the primary key is DEFERRABLE: checked at a statement's end


@dataclass
class Shape:
    """A captured table as the run planned it: its OID and its attributes in attnum order (name
    None where dropped; generated columns left out, as pgoutput leaves them out)."""

    oid: int
    attrs: list[tuple[int, str | None]]
    #: each live column's type: (type OID, typmod, name as format_type writes it)
    types: dict[str, tuple[int, int, str]] = field(default_factory=dict)


def _replaced(rel: Relation, shape: Shape, read: set[str]) -> str | None:
    """Why the log's description ``rel`` of a captured table is not the table planned: another
    table (DROP and CREATE, a rename swap), or a column renamed since (its values would be taken
    as NULL, or as another column's). Columns map by name; those of names gone since lie, in
    order, between the named ones' attnums, on a dropped attribute or a renamed one."""
    if rel.relid != shape.oid:
        return (
            f"the log's changes of it are of table OID {rel.relid}, and the table of that name "
            f"now is OID {shape.oid}: it was dropped and created again, or another table was "
            "renamed to its name, so its rows were replaced without a change of each in the log"
        )
    at = {name: n for n, name in shape.attrs if name is not None}
    names = [c[1] for c in rel.columns]
    # runs of gone names between two named columns (attnums lo < hi) and the attributes there
    anchors = [(-1, 0)] + [(i, at[c]) for i, c in enumerate(names) if c in at]
    anchors.append((len(names), 1 << 31))
    for (i, lo), (j, hi) in zip(anchors, anchors[1:], strict=False):
        if hi <= lo:
            return f"its column {names[j]} is not where it was: columns were renamed since"
        run = names[i + 1 : j]
        if not run:
            continue
        between = [a for n, a in shape.attrs if lo < n < hi]
        if len(between) < len(run):
            return (
                f"column {run[0]} in the log has no place among its columns now: columns were "
                "renamed since"
            )
        live = [a for a in between if a is not None and a in read and a not in names]
        if live:
            return (
                f"column {run[0]} in the log is not in it now and column {live[0]} is, in its "
                f"place (renamed {run[0]} to {live[0]}, or dropped {run[0]} and added "
                f"{live[0]}): the rows logged before would lack {live[0]}'s value"
            )
    return None


def _added(rel: Relation, shape: Shape) -> str | None:
    """A column of the log's description ``rel`` added after the run read the table's columns
    (a column added takes the next attnum: past every column the plan knew, with no place
    there)."""
    at = {name: n for n, name in shape.attrs if name is not None}
    names = [c[1] for c in rel.columns]
    known = [i for i, c in enumerate(names) if c in at]
    last = known[-1] if known else -1
    after = at[names[last]] if known else 0
    trailing = names[last + 1 :]
    if len(trailing) > len([n for n, _ in shape.attrs if n > after]):
        return trailing[-1]
    return None


#: type changes whose logged text reads as the new type's value: integers widened or
#: narrowed (the same digits), text and varchar (the same characters; a shorter varchar that a
#: value does not fit fails the ALTER), numeric to numeric (a cast to the new scale is exact or
#: fails the run)
_SAME_TEXT = ({21, 23, 20}, {25, 1043}, {1700})


def _retyped(
    rel: Relation, shape: Shape, read: set[str], type_name: Callable[[int, int], str]
) -> str | None:
    """Why a read column's values logged as ``rel`` describes it are not the values of its type
    now: its type changed since (ALTER COLUMN ... TYPE), and the old type's text (a boolean's
    ``t``, a real's shortest digits, a char(n)'s padding) is not what the new type holds."""
    for _, name, oid, typmod in rel.columns:
        now = shape.types.get(name)
        if name not in read or now is None or (oid, typmod) == now[:2]:
            continue
        if any(oid in g and now[0] in g for g in _SAME_TEXT):
            continue
        return (
            f"column {name} was logged as {type_name(oid, typmod)} and is {now[2]} now: its "
            "type changed since (ALTER COLUMN ... TYPE), and the rows logged before hold the "
            "old type's text, not the values the table holds now"
        )
    return None


def _left_out(rel: Relation, shape: Shape, read: set[str]) -> list[str]:
    """The read columns the log's description ``rel`` leaves out though they were in the table
    when it was logged (a publication's column list, PostgreSQL 15+): those before a column it
    has (attnums only grow, so a column added since comes after every logged one; one after the
    last logged column cannot be told from such a column, and the run's start checks the list)."""
    at = {name: n for n, name in shape.attrs if name is not None}
    names = {c[1] for c in rel.columns}
    last = max((at[c] for c in names if c in at), default=0)
    return [name for n, name in shape.attrs if name in read and name not in names and n < last]


@dataclass
class Decoded:
    """One decoded stretch of the log: the rows (output schema, in log order), the rows to report
    as dirty (row index, reason), and its transactions' commit LSNs and times."""

    batch: pa.RecordBatch | None
    dirty: list[tuple[int, str]]
    commit_lsn: np.ndarray
    commit_us: np.ndarray


class Decoder:
    """Keeps the relations seen so far; turns message batches into output batches."""

    def __init__(
        self,
        targets: dict[tuple[str, str], Target],
        schema: pa.Schema,
        server: Callable[[pa.Array, int, int], pa.Array],
        before_image: bool = False,
        shapes: dict[tuple[str, str], Shape] | None = None,
        where: str = "",
        type_name: Callable[[int, int], str] | None = None,
        resolve: Callable[[Relation], tuple[Target, Shape] | None] | None = None,
    ):
        self.type_name = type_name or (lambda oid, typmod: f"type OID {oid}")
        self.resolve = resolve
        self._foreign: set[int] = set()  # relations resolved to no target
        self.targets = dict(targets)
        self.shapes = dict(shapes or {})
        self.where = where
        self.schema = schema
        self.server = server
        self.before_image = before_image
        self.relations: dict[int, Relation] = {}
        self._last: tuple[pa.Array | pa.ChunkedArray, np.ndarray, np.ndarray] | None = None
        self.several = TABLE in schema.names

    def _buffer(self, data: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
        # transactions() and then decode() of the same messages: their buffer is copied once
        if self._last is None or self._last[0] is not data:
            self._last = (data, *_buffer(data))
        return self._last[1], self._last[2]

    def transactions(
        self, data: pa.Array | pa.ChunkedArray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per commit message: its index, commit LSN and commit time (µs since 1970)."""
        buf, starts = self._buffer(data)
        types = buf[starts[:-1]] if len(starts) > 1 else np.zeros(0, np.uint8)
        ci = np.flatnonzero(types == _C)
        cpos = starts[ci]
        return ci, _be(buf, cpos + 2, 8), _be(buf, cpos + 18, 8) + PG_EPOCH_US

    def decode(self, lsn: pa.Array, data: pa.Array | pa.ChunkedArray, upto: int) -> Decoded:
        """Decode the whole transactions in ``data`` whose index is below ``upto``."""
        buf, starts = self._buffer(data)
        n = min(upto, len(starts) - 1)
        types = buf[starts[:n]]
        is_b = types == _B
        txn = np.cumsum(is_b) - 1
        ci = np.flatnonzero(types == _C)
        commit_lsn = _be(buf, starts[ci] + 2, 8)
        commit_us = _be(buf, starts[ci] + 18, 8) + PG_EPOCH_US
        # relations, in order: a change uses the latest definition before it
        rel_at = np.flatnonzero(types == _R)
        versions: dict[int, list[tuple[int, Relation]]] = {}
        for i in rel_at:
            rel = _relation(bytes(buf[starts[i] : starts[i + 1]]))
            self._check(rel, lsn[int(i)].as_py())
            versions.setdefault(rel.relid, []).append((int(i), rel))
        for ti in np.flatnonzero(types == _T).tolist():
            self._truncated(buf, int(starts[ti]), ti, versions)
        change = np.flatnonzero((types == _I) | (types == _U) | (types == _D))
        relids = _be(buf, starts[change] + 1, 4)
        parts: list[pa.RecordBatch] = []
        dirty: list[tuple[int, str]] = []
        order_parts: list[np.ndarray] = []
        lsn_text_arr = lsn.slice(0, n)
        # one table's changes (the usual case) without a set of every change's relation
        one = len(relids) > 0 and bool((relids == relids[0]).all())
        for relid in [int(relids[0])] if one else distinct(relids):
            mine = change[relids == relid]
            vers = versions.get(int(relid), [])
            known = self.relations.get(int(relid))
            bounds = [i for i, _ in vers]
            # messages before the first R of this batch use the relation as known before
            groups: list[tuple[np.ndarray, Relation | None]] = []
            cut = np.searchsorted(mine, np.array(bounds, dtype=np.int64))
            pieces = np.split(mine, cut) if bounds else [mine]
            rels: list[Relation | None] = [known, *(r for _, r in vers)]
            for piece, maybe in zip(pieces, rels, strict=True):
                if len(piece):
                    groups.append((piece, maybe))
            if vers:
                self.relations[int(relid)] = vers[-1][1]
            for piece, described in groups:
                if described is None:
                    raise FatalError(
                        f"pgoutput: a change to relation {int(relid)} came before its description"
                    )
                rel = described
                batch, order, bad = self._changes(
                    buf, starts, types, piece, rel, txn, commit_us, lsn_text_arr
                )
                if batch is not None:
                    parts.append(batch)
                    order_parts.append(order)
                    dirty.extend((int(order[i]), why) for i, why in bad)
        for rid, vs in versions.items():
            self.relations[rid] = vs[-1][1]
        if not parts:
            return Decoded(None, [], commit_lsn, commit_us)
        table = pa.Table.from_batches(parts, self.schema)
        order = np.concatenate(order_parts)
        if len(order) < 2 or bool((order[1:] >= order[:-1]).all()):  # in log order already
            sort = np.arange(len(order))
            out = table.combine_chunks().to_batches()
        else:
            sort = np.argsort(order, kind="stable")
            out = table.take(from_numpy(sort)).combine_chunks().to_batches()
        batch = out[0] if out else None
        if dirty:
            where = {int(o): k for k, o in enumerate(order[sort])}
            dirty = [(where[o], why) for o, why in dirty]
        return Decoded(batch, dirty, commit_lsn, commit_us)

    def _check(self, rel: Relation, at: str) -> None:
        """A captured table's description in the log must be the table planned (see _replaced)."""
        key = (rel.schema, rel.name)
        if key not in self.targets and self.resolve is not None and rel.relid not in self._foreign:
            # a relation the run's plan did not know: a partition of a captured table created
            # since (while the run waited for its window's end, say) logs its changes so
            found = self.resolve(rel)
            if found is None:
                self._foreign.add(rel.relid)
            else:
                self.targets[key], self.shapes[key] = found
        target, shape = self.targets.get(key), self.shapes.get(key)
        if target is None or shape is None:
            return
        added = _added(rel, shape) if rel.relid == shape.oid else None
        if added is not None:
            raise FatalError(
                f"{self.where}table {target.label}: column {added} (in the log at {at}) was "
                "added after this run read the table's columns; run it again (nothing of this "
                "run was saved: the next run reads the columns anew)"
            )
        why = _replaced(rel, shape, set(target.types))
        logged_key = [rel.columns[i][1] for i in rel.key] if rel.identity in ("d", "i") else []
        if why is None and target.key and logged_key and set(logged_key) != set(target.key):
            why = (
                f"its changes were logged with the key ({', '.join(logged_key)}), and its "
                f"primary key now is ({', '.join(target.key)}): the deletes logged before carry "
                "no value of the new key (a merged target would keep their rows)"
            )
        why = why or _retyped(rel, shape, set(target.types), self.type_name)
        left = _left_out(rel, shape, set(target.types)) if why is None else []
        if left:
            raise FatalError(
                f"{self.where}table {target.label}: the log's changes of it (at log position "
                f"{at}) leave out column{'s' if len(left) > 1 else ''} {', '.join(left)}: the "
                "publication's column list left them out then, so their values would come as "
                "NULL; start a new capture after it (`tidesync cdc drop` the job, then run it "
                "with snapshot: true), and keep the column list whole while it is captured (a "
                "column dropped after this run read the table's columns reads so too: then run "
                "it again)"
            )
        if why is not None:
            raise FatalError(
                f"{self.where}table {target.label}: {why} (at log position {at}); its changes "
                "in this window cannot be given as the table's: start a new capture after it "
                "(`tidesync cdc drop` the job, then run it with snapshot: true), and keep a "
                "captured table, its column names and types in place while it is captured"
            )

    def _truncated(
        self, buf: np.ndarray, at: int, i: int, versions: dict[int, list[tuple[int, Relation]]]
    ) -> None:
        """A TRUNCATE of a target (which the log holds as one message, not as the deleted
        rows): an error naming the table, never rows left in place."""
        n = int(_be(buf, np.array([at + 1]), 4)[0])
        relids = _be(buf, at + 6 + 4 * np.arange(n, dtype=np.int64), 4).tolist()
        for relid in relids:
            before = [r for j, r in versions.get(relid, []) if j < i]
            rel = before[-1] if before else self.relations.get(relid)
            target = self.targets.get((rel.schema, rel.name)) if rel is not None else None
            if target is not None:
                raise FatalError(
                    f"table {target.label}: a TRUNCATE emptied it, which the log holds as one "
                    "message, not as the deleted rows, so a capture cannot give its changes; "
                    "start a new capture after it (`tidesync cdc drop` the job, then run it "
                    "with snapshot: true), and delete its rows with DELETE, not TRUNCATE, "
                    "while it is captured"
                )

    def _changes(
        self,
        buf: np.ndarray,
        starts: np.ndarray,
        types: np.ndarray,
        idx: np.ndarray,
        rel: Relation,
        txn: np.ndarray,
        commit_us: np.ndarray,
        lsn: pa.Array,
    ) -> tuple[pa.RecordBatch | None, np.ndarray, list[tuple[int, str]]]:
        target = self.targets.get((rel.schema, rel.name))
        if target is None:
            return None, np.zeros(0, np.int64), []
        ncols = len(rel.columns)
        names = [c[1] for c in rel.columns]
        pos = starts[idx]
        t = types[idx]
        is_ins, is_upd, is_del = t == _I, t == _U, t == _D
        marker = buf[pos + 5]
        has_old = is_del | (is_upd & ((marker == _K) | (marker == _O)))
        if has_old.any():
            old = _walk(buf, pos + 6, ncols)  # only meaningful where has_old
            # a delete has no new tuple: past its old one lies the next message, whose bytes
            # would be walked as lengths (out of the buffer, or anywhere); walk its old again
            new_at = np.where(has_old & ~is_del, old.end + 1, pos + 6)
        else:
            old = None
            new_at = pos + 6
        if is_del.all():
            assert old is not None
            new = old
        else:
            new = _walk(buf, new_at, ncols)
        # the row image: new for inserts and updates, old for deletes
        if is_del.any() and not is_del.all():
            assert old is not None
            kind = [np.where(is_del, old.kind[j], new.kind[j]) for j in range(ncols)]
            start = [np.where(is_del, old.start[j], new.start[j]) for j in range(ncols)]
            length = [np.where(is_del, old.length[j], new.length[j]) for j in range(ncols)]
        else:
            kind, start, length = list(new.kind), list(new.start), list(new.length)
        if old is None:
            old = new  # never read where has_old is False
        for j in range(ncols):
            toast = kind[j] == _TOAST
            if toast.any():
                from_old = toast & has_old & (old.kind[j] == _TEXT)
                if (toast & ~from_old).any():
                    raise FatalError(
                        f"table {rel.schema}.{rel.name}, column {names[j]}: an update left a "
                        "large (TOASTed) value unchanged and the log does not carry it; run "
                        f"ALTER TABLE {rel.schema}.{rel.name} REPLICA IDENTITY FULL so that "
                        "updates log whole rows"
                    )
                kind[j] = np.where(from_old, old.kind[j], kind[j])
                start[j] = np.where(from_old, old.start[j], start[j])
                length[j] = np.where(from_old, old.length[j], length[j])
        # an update that changed the key: a delete of the old key, then the new row
        key = [names.index(k) for k in target.key if k in names] if target.key else rel.key
        if rel.identity == "f" and not target.key:
            key = []  # every column is "the key": a change of the row is not a change of key
        moved = np.zeros(len(idx), dtype=bool)
        if key:
            cand = is_upd & has_old
            for j in key:
                differs = (old.kind[j] != new.kind[j]) | (old.length[j] != new.length[j])
                same_len = cand & ~differs & (old.kind[j] == _TEXT)
                if same_len.any():
                    a = _strings(buf, old.start[j], old.length[j], same_len)
                    b = _strings(buf, new.start[j], new.length[j], same_len)
                    differs |= ~to_bools(pc.equal(a, b), null=True)
                moved |= cand & differs
        if target.deferrable and moved.any():
            raise FatalError(
                f"table {target.label}: an update moved a row to another primary key (at log "
                f"position {lsn[int(idx[np.flatnonzero(moved)[0]])]}), and the key is "
                "DEFERRABLE: one statement may give two rows one key for a moment (UPDATE ... "
                "SET id = id + 1), so the delete of a moved row's old key could delete the row "
                "that took it; start a new capture after it (`tidesync cdc drop` the job, then "
                "run it with snapshot: true), and make the key NOT DEFERRABLE (or keep keys in "
                "place) while the table is captured"
            )
        row = np.arange(len(idx))
        take = np.concatenate([np.flatnonzero(moved), row])
        sub = np.concatenate([np.zeros(int(moved.sum()), np.int64), np.ones(len(idx), np.int64)])
        first = np.arange(len(take)) < int(moved.sum())  # the old-key deletes
        order = idx[take].astype(np.int64) * 2 + sub
        has_moved = bool(moved.any())
        if has_moved:  # in log order (an old key's delete before its new row): buffer order
            perm = np.argsort(order, kind="stable")
            take, first, order = take[perm], first[perm], order[perm]

        def image(j: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            if not has_moved:  # every row as it is, in order
                return kind[j], start[j], length[j]
            k = np.where(first, old.kind[j][take], kind[j][take])
            s = np.where(first, old.start[j][take], start[j][take])
            ln = np.where(first, old.length[j][take], length[j][take])
            return k, s, ln

        n_out = len(take)
        arrays: dict[str, pa.Array] = {}
        bad: list[tuple[int, str]] = []
        for j, name in enumerate(names):
            if name not in target.types:
                continue
            k, s, ln = image(j)
            if (k == _BIN).any():
                raise FatalError("pgoutput sent a binary value; the slot must be read as text")
            text = _strings(buf, s, ln, k == _TEXT)
            arr, mask = self._typed(text, target, name, rel.columns[j][2], rel.columns[j][3])
            arrays[name] = arr
            if mask is not None:
                for r in np.flatnonzero(to_bools(mask)):
                    bad.append(
                        (int(r), f"column {name}: {text[int(r)].as_py()!r} has no {arr.type} form")
                    )
            if self.before_image:
                ok = has_old[take] & (old.kind[j][take] == _TEXT)
                btext = _strings(buf, old.start[j][take], old.length[j][take], ok)
                barr, _ = self._typed(btext, target, name, rel.columns[j][2], rel.columns[j][3])
                arrays["before_" + name] = barr
        # a moved row is new under its new key: "c" after the old key's "d"
        ins = is_ins[take] | (moved[take] & ~first)
        code = np.where(first, 2, np.where(ins, 0, np.where(is_upd[take], 1, 2)))
        tx = txn[idx[take]]
        arrays[OP] = _OPS.take(from_numpy(code.astype(np.int8)))
        arrays[TS] = from_numpy(commit_us[tx].astype(np.int64), TS_TYPE)
        arrays[POS] = lsn.take(from_numpy(idx[take].astype(np.int64)))
        if self.several:
            arrays[TABLE] = from_strings([target.label]).take(from_numpy(np.zeros(n_out, np.int64)))
        cols = [
            arrays[f.name] if f.name in arrays else pa.nulls(n_out, f.type) for f in self.schema
        ]
        return pa.RecordBatch.from_arrays(cols, schema=self.schema), order, bad

    def _typed(
        self, text: pa.Array, target: Target, name: str, oid: int, typmod: int
    ) -> tuple[pa.Array, pa.Array | None]:
        t = target.types[name]
        conv = None
        if name in target.arrays:

            def conv(a: pa.Array) -> pa.Array:
                return self.server(a, oid, typmod)

        try:
            return from_text(text, t, oid, conv, name in target.numeric)
        except Multidimensional:
            raise FatalError(
                f"table {target.label}, column {name}: a multidimensional array, read here (as "
                "by the batch reader) as a list of floats; select it as JSON text with a "
                "batch job's querySql, or leave it out with column"
            ) from None
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
            raise FatalError(
                f"table {target.label}, column {name}: the log holds values that are not "
                f"{t} ({e}); did the column's type change? Rerun to read the table's new schema"
            ) from None


def _buffer(data: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The bytes of a binary array (or of a chunked one's chunks, end to end) and its message
    offsets (n + 1, int64), plus 16 zero bytes so that fixed-width reads past a short message
    stay inside: one copy of the messages, whatever the chunks (a transaction carried over from
    the last piece of the log is the first chunk, not first combined with the next)."""
    chunks = data.chunks if isinstance(data, pa.ChunkedArray) else [data]
    bodies: list[np.ndarray] = []
    offs: list[np.ndarray] = []
    base = 0
    for c in chunks:
        if not len(c):
            continue
        wide = pa.types.is_large_binary(c.type)
        off = np.frombuffer(c.buffers()[1], dtype=np.int64 if wide else np.int32)
        off = off[c.offset : c.offset + len(c) + 1].astype(np.int64)
        raw = c.buffers()[2]
        lo, hi = int(off[0]), int(off[-1])
        if raw is not None and hi > lo:
            bodies.append(np.frombuffer(raw, dtype=np.uint8)[lo:hi])
        offs.append(off[:-1] + (base - lo))
        base += hi - lo
    offs.append(np.array([base], np.int64))
    return np.concatenate([*bodies, np.zeros(16, np.uint8)]), np.concatenate(offs)
