"""PostgreSQL -> PostgreSQL without Arrow: the direct path's ``postgresql-copy-binary`` form.

Each split of the reader runs ``COPY (SELECT ...) TO STDOUT (FORMAT binary)`` on a connection of
its own and hands the stream on as it comes (pieces of whole rows, about :data:`PIECE` bytes,
the first with the format's header, the last with its trailer); the writer's sink pours them into
one ``COPY target (columns) FROM STDIN (FORMAT binary)`` inside a savepoint of the job's one
transaction. A piece is one ``CopyData`` message of the protocol: on a plain connection the
rows read off the socket (:func:`.wire.copy_frames`: no Python work per row) and written to the
target's socket (:class:`.wire.CopyIn`); through libpq (an encrypted connection) the rows libpq
gave, and a TLS writer strips the framing for psycopg's COPY. Both servers' row counts are
checked against the rows that passed. Nothing is decoded: the
server's send functions wrote the bytes its receive functions read, so every value arrives
exactly (numeric NaN and infinite timestamps included, which the Arrow path must turn into dirty
records).

The writer takes the form (:func:`refusal` is empty) only when that is safe: an append,
``truncate`` or ``overwrite`` of the whole table (no partition, no key, no deleteMarker), every
incoming column bound to a target column of the same type (the same type OID after domains;
``text`` and ``varchar`` are one form; a type of the database's own, such as an enum, by name
across databases and by OID within one; an array or composite of such a type only within one
database, as its binary form carries the element OIDs), and no column keeping fewer digits after
the point than its source's type (``numeric(5,2)`` from ``numeric(10,4)``, ``timestamp(0)`` from
``timestamp``): the server's receive functions would round such values, which the Arrow path
makes dirty records. Other type modifiers need no check: the receive functions apply the
target's (``varchar(n)`` refuses a longer value) exactly as on the Arrow path.

A row the target refuses (SQLSTATE class 22 or 23; the server names the line of the COPY)
rolls the split's savepoint back and raises :class:`~tidesync.connectors.base.DirectFallback`:
the engine reads that split again on the Arrow path, where the bad rows become dirty records
one by one. The writer is ``serial``: a split holds the connection from its first piece to its
close, so its COPY stays open across pieces (see the engine's ``_LockedSink``).
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tidesync.connectors import base
from tidesync.connectors.postgresql import wire
from tidesync.connectors.postgresql.conn import (
    Endpoint,
    connect,
    edge,
    literal_text,
    psycopg_module,
    quote_ident,
    sqlstate,
    translate,
)
from tidesync.connectors.postgresql.types import (
    INTERVAL,
    NUMERIC,
    OutColumn,
    TypeInfo,
    describe_types,
    kept_digits,
)
from tidesync.connectors.sql import SqlSink
from tidesync.errors import FatalError, redact

if TYPE_CHECKING:
    from tidesync.connectors.postgresql.reader import PgSplit
    from tidesync.connectors.postgresql.reader import Reader as PgReader
    from tidesync.connectors.postgresql.writer import Writer as PgWriter

__all__ = ["FORM", "PIECE", "raw_forms", "read_raw", "refusal", "DirectSink"]

FORM = "postgresql-copy-binary"
#: bytes of COPY data per piece handed from the reading thread to the sink
PIECE = 1 << 20
#: the first OID of objects a database makes (types below it are built in, the same everywhere)
FIRST_NORMAL_OID = 16384
#: types whose binary forms are one another's (the text's bytes)
_SAME_FORM = (frozenset({25, 1043}),)  # text, varchar
#: SQLSTATE classes of errors that belong to the rows (data exception, constraint)
ROW_ERRORS = ("22", "23")


# -- the reader's side ------------------------------------------------------------------------


def raw_forms(reader: PgReader) -> tuple[str, ...]:
    """The forms a reader hands over: none when it tracks an incremental cursor (its position
    is read from the rows' values)."""
    if reader.incremental is not None:
        reader.raw_refusal = "an incremental read tracks its cursor in the rows' values"
        return ()
    return (FORM,)


def raw_sql(sql: str, cols: tuple[OutColumn, ...] | list[OutColumn]) -> str | None:
    """A split's SELECT with its columns as they are stored instead of in their Arrow forms
    (``q."x"`` for ``q."x"::text AS "x"``), or None when the query is not of the shape the
    reader makes."""
    outer = ", ".join(c.sql for c in cols)
    head = f"SELECT {outer} FROM "
    if not sql.startswith(head):
        return None
    plain = ", ".join("q." + quote_ident(c.name) for c in cols)
    return f"SELECT {plain} FROM {sql[len(head) :]}"


def read_raw(reader: PgReader, split: PgSplit, form: str) -> Iterator[base.Raw]:
    """One split as binary COPY data, in pieces of whole rows."""
    assert form == FORM
    sql = raw_sql(split.sql, split.cols)
    if sql is None:
        raise FatalError(f"{split.key}: the split's query cannot be read as binary COPY")
    ep = reader.sources[split.source].endpoints[split.endpoint]
    kw = {"table": split.table, "split": split.label}
    conn, _ = connect(
        [ep],
        reader.session,
        reader.ctx.timezone,
        autocommit=not split.snapshot,
        where=reader.ctx.path("session"),
    )
    try:
        if split.snapshot:
            with edge(ep, where=reader.ctx.path("session"), **kw):
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                conn.execute(f"SET TRANSACTION SNAPSHOT {literal_text(split.snapshot)}")
        if wire.usable(conn):
            yield from _frames(conn, ep, sql, split)
        else:
            yield from _copy_out(conn, ep, f"COPY ({sql}) TO STDOUT (FORMAT binary)", split)
    finally:
        conn.close()  # mid-stream (the engine stopped early) the server ends the COPY itself


def _frames(conn: Any, ep: Endpoint, sql: str, split: PgSplit) -> Iterator[base.Raw]:
    """The COPY's messages read off the socket a piece at a time and handed on as they came
    (:func:`.wire.copy_frames`): no Python work per row."""
    try:
        for data, rows, nbytes in wire.copy_frames(conn, sql, len(split.cols), PIECE):
            yield base.Raw(FORM, data, rows=rows, nbytes=nbytes)
    except (wire.ServerError, OSError) as e:
        raise translate(e, ep, where=split.key, table=split.table, split=split.label) from e


def _copy_out(conn: Any, ep: Endpoint, sql: str, split: PgSplit) -> Iterator[base.Raw]:
    """Where the connection is encrypted: the COPY's data messages through libpq (one per
    row, the trailer a last one of its own) gathered into pieces, each one CopyData message.
    libpq is asked without blocking and the socket waited on with ``select``, so the GIL is
    free while the server is slow (the sink's thread writes meanwhile)."""
    psycopg = psycopg_module()
    pq = psycopg.pq
    pg = conn.pgconn
    fd = pg.socket
    pg.send_query(sql.encode())

    def wait() -> None:
        select.select([fd], [], [])
        pg.consume_input()

    try:
        while pg.is_busy():
            wait()
        res = pg.get_result()
        if res is None or res.status != pq.ExecStatus.COPY_OUT:
            _raise_result(res, conn, ep, split)
        buf = bytearray(5)  # the message's kind and length, filled in by _piece
        rows = 0
        while True:
            n, data = pg.get_copy_data(1)
            if n > 0:
                if len(buf) >= PIECE:  # before this message: the trailer ends the last piece
                    yield _piece(buf, rows)
                    buf, rows = bytearray(5), 0
                buf += data
                rows += 1
            elif n == 0:
                wait()
            else:
                break
        # the last message, in the last piece, was the trailer (alone, or after the header of
        # an empty result)
        while pg.is_busy():
            wait()
        res = pg.get_result()
        while pg.get_result() is not None:
            pass
        if n == -2 or res is None or res.status != pq.ExecStatus.COMMAND_OK:
            _raise_result(res, conn, ep, split)
        yield _piece(buf, rows - 1)
    except psycopg.Error as e:
        raise translate(e, ep, where=split.key, table=split.table, split=split.label) from e


def _piece(buf: bytearray, rows: int) -> base.Raw:
    """COPY data after five bytes of room as one CopyData message."""
    buf[:5] = b"d" + (len(buf) - 1).to_bytes(4, "big")
    return base.Raw(FORM, buf, rows=rows, nbytes=len(buf) - 5)


def _raise_result(res: Any, conn: Any, ep: Endpoint, split: PgSplit) -> None:
    psycopg = psycopg_module()
    if res is None:
        msg = bytes(conn.pgconn.error_message or b"the server sent no result")
        err: Exception = psycopg.OperationalError(msg.decode("utf-8", "replace"))
    else:
        err = psycopg.errors.error_from_result(res, encoding=conn.info.encoding)
    raise translate(err, ep, where=split.key, table=split.table, split=split.label) from err


# -- the writer's side ------------------------------------------------------------------------


def refusal(writer: PgWriter, reader: base.Reader, schema: pa.Schema | None) -> str:
    """Why ``writer`` cannot take ``reader``'s rows as binary COPY ("" when it can)."""
    from tidesync.connectors.postgresql.reader import Reader as PgReader

    if not isinstance(reader, PgReader) or FORM not in reader.raw_forms():
        return f"the reader does not hand over {FORM}"
    if writer.mode not in ("insert", "truncate", "overwrite") or writer.partition:
        return f"writeMode {writer.mode}{' of a partition' if writer.partition else ''}"
    if writer.marker is not None:
        return "a deleteMarker needs the rows' values"
    if schema is None or writer.info is None or writer.endpoint is None:
        return "the reader's columns are not known before reading"
    with writer.lock:
        b = writer.binding(schema.names)
    writer.raw_binding = b
    if len(b.columns) != len(schema):
        return "the incoming columns do not all go to columns of the table"
    described = _source_types(reader)
    if described is None:
        return "the reader's query is not one binary COPY can read as it is"
    same_db = any(
        (ep.hosts, ep.dbname) == (writer.endpoint.hosts, writer.endpoint.dbname)
        for src in reader.sources
        for ep in src.endpoints
    )
    for names, types, kept in described:
        if list(names) != list(schema.names):
            return "the reader's tables or queries give different columns"
        for name, target_col, src, digits in zip(names, b.columns, types, kept, strict=True):
            target = writer.target[target_col]
            why = _mismatch(src, target.info, same_db)
            if why:
                return f"column {name}: {why}"
            if target.interval_mod >= 0:
                # interval(0), interval day ...: the server's receive function would round the
                # seconds or drop fields; the Arrow path makes such a value a dirty record
                return f"column {name}: {target.type_name} may not keep the source's values"
            if target.kept is not None and (digits is None or digits > target.kept):
                # the server's receive function would round the value to the column's scale or
                # precision; the Arrow path makes such a value a dirty record
                return (
                    f"column {name}: {target.type_name} keeps fewer digits after the point than "
                    "the source's type"
                )
    return ""


def _source_types(
    reader: PgReader,
) -> list[tuple[list[str], list[TypeInfo], list[int | None]]] | None:
    """Per table or query of the reader: its columns, their types as stored and the digits
    after the point each keeps (:func:`.types.kept_digits`; None: any, or not a number or time)
    (None: a query of a shape :func:`raw_sql` does not know)."""
    out = []
    for plan in reader.plans:
        src = reader.sources[plan.source]
        sql = raw_sql(plan.query([]), plan.cols)
        if sql is None:
            return None
        conn, ep = connect(
            src.endpoints,
            reader.session,
            reader.ctx.timezone,
            autocommit=True,
            where=reader.ctx.path("session"),
        )
        try:
            with edge(ep, where=plan.key, table=plan.label):
                cur = conn.execute(f"SELECT * FROM ({sql}) AS r LIMIT 0")
                desc = list(cur.description or [])
                oids = [int(d.type_code) for d in desc]
                types = describe_types(conn, oids)
        finally:
            conn.close()
        kept = [_kept(types[int(d.type_code)], d) for d in desc]
        out.append(([c.name for c in plan.cols], [types[o] for o in oids], kept))
    return out


def _kept(t: TypeInfo, d: Any) -> int | None:
    """The digits after the point a result column ``d`` of type ``t`` keeps, from the type
    modifier the server describes it with (psycopg's ``precision`` and ``scale``)."""
    if t.base:
        return kept_digits(t.base, t.base_typmod)
    if t.oid == NUMERIC:
        return None if d.scale is None else int(d.scale)
    if t.oid == INTERVAL:  # psycopg gives an interval's digits, not its modifier
        return 6 if d.precision is None else int(d.precision)
    return kept_digits(t.oid, -1 if d.precision is None else int(d.precision))


def _stored(t: TypeInfo) -> tuple[int, str, str]:
    """A type as its binary form is: a domain as its base type (oid, name, category)."""
    if t.base:
        return t.base, t.base_name.split("(")[0], t.category
    return t.oid, t.name, t.category


def _mismatch(src: TypeInfo, tgt: TypeInfo, same_db: bool) -> str:
    """Why values of type ``src`` cannot go into a column of type ``tgt`` as they are ("")."""
    s_oid, s_name, s_cat = _stored(src)
    t_oid, t_name, t_cat = _stored(tgt)
    if any({s_oid, t_oid} <= same for same in _SAME_FORM):
        return ""
    if s_oid == t_oid and (s_oid < FIRST_NORMAL_OID or same_db):
        return ""
    if s_cat == t_cat == "E" and s_name == t_name:
        return ""  # an enum's binary form is its label, looked up by the receiving type
    return f"{t_name} here, {s_name} in the source"


@dataclass
class _Copy:
    """A split's open COPY on the writer's connection: off the socket (``raw``) where the
    connection is plain, else through psycopg (``block``/``copy``)."""

    raw: wire.CopyIn | None = None
    cursor: Any = None
    block: Any = None  # cursor.copy(...): its __exit__ ends the COPY (or fails it, given an error)
    copy: Any = None  # what the block gave: write() sends data
    rows: int = 0


#: what a COPY written off the socket raises besides psycopg's errors
_WIRE_ERRORS = (wire.ServerError, OSError)


class DirectSink(SqlSink):
    """A PostgreSQL task's sink: Arrow batches as every SQL sink, binary COPY on the direct
    path (one COPY per split, in a savepoint of its own). The reader's CopyData messages go to
    the socket as they came (:class:`.wire.CopyIn`); through psycopg, without their framing,
    where the connection is encrypted."""

    w: PgWriter

    def write_raw(self, raw: base.Raw) -> int:
        w = self.w
        with w.lock:
            if not w.live:
                raise FatalError(f"{w.where}: the transaction is closed")
            if self.state is None:
                self.state = self._begin()
            st: _Copy = self.state
            try:
                if st.raw is not None:
                    st.raw.write(raw.data)
                else:
                    st.copy.write(wire.unframed(raw.data))
            except (psycopg_module().Error, *_WIRE_ERRORS) as e:
                self._failed(e)
        n = raw.rows or 0
        st.rows += n
        self.rows += n
        return n

    def _begin(self) -> _Copy:
        w = self.w
        assert w.table is not None and w.endpoint is not None and w.info is not None
        cols = ", ".join(quote_ident(c) for c in self.columns())
        sql = f"COPY {w.table.qualified} ({cols}) FROM STDIN (FORMAT binary)"
        with edge(w.endpoint, table=w.o.table, split=self.split.label):
            w.conn.execute("SAVEPOINT tidesync_direct")
            if not wire.usable(w.conn):
                cur = w.conn.cursor()
                block = cur.copy(sql)
                return _Copy(cursor=cur, block=block, copy=block.__enter__())
        try:
            return _Copy(raw=wire.CopyIn(w.conn, sql))
        except _WIRE_ERRORS as e:
            self._failed(e)
            raise  # not reached: _failed raises

    def columns(self) -> tuple[str, ...]:
        b = self.w.raw_binding
        assert b is not None, "raw_form() bound the columns"
        return b.columns

    def close(self) -> dict[str, Any]:
        if self.state is not None:
            self._finish()
        return super().close()

    def _finish(self) -> None:
        w, st = self.w, self.state
        assert isinstance(st, _Copy)
        with w.lock:
            try:
                if st.raw is not None:
                    written = st.raw.finish()
                else:
                    st.block.__exit__(None, None, None)
                    written = st.cursor.rowcount
            except (psycopg_module().Error, *_WIRE_ERRORS) as e:
                self._failed(e)
            self.state = None
            assert w.endpoint is not None
            with edge(w.endpoint, table=w.o.table, split=self.split.label):
                w.conn.execute("RELEASE SAVEPOINT tidesync_direct")
            if written != st.rows:
                raise FatalError(
                    f"{w.where}: the binary COPY of split {self.split.label} wrote {written} "
                    f"rows of the {st.rows} read"
                )

    def _failed(self, e: BaseException) -> None:
        """The COPY failed: take the split's rows back; a row at fault sends the split to the
        Arrow path (DirectFallback), anything else fails the task."""
        w = self.w
        self._rollback()
        code = sqlstate(e)
        assert w.endpoint is not None
        if code and code[:2] in ROW_ERRORS:
            raise base.DirectFallback(f"{_reason(e)} [{code}]") from e
        raise translate(e, w.endpoint, table=w.o.table, split=self.split.label) from e

    def _rollback(self) -> None:
        """Back to the split's savepoint (the COPY ended first, if it is still open)."""
        w, st = self.w, self.state
        self.state = None
        if isinstance(st, _Copy):
            with contextlib.suppress(Exception):  # the COPY is being abandoned either way
                if st.raw is not None:
                    st.raw.abort("the split stopped")
                else:
                    st.block.__exit__(FatalError, FatalError("the split stopped"), None)
        conn = w.conn
        if conn is None or conn.closed or conn.broken:
            return
        assert w.endpoint is not None
        with edge(w.endpoint, table=w.o.table, split=self.split.label):
            conn.execute("ROLLBACK TO SAVEPOINT tidesync_direct")
            conn.execute("RELEASE SAVEPOINT tidesync_direct")
        self.rows = 0

    def discard(self) -> dict[str, Any]:
        if self.state is not None:
            with self.w.lock:
                self._rollback()
        return super().discard()


def _reason(e: BaseException) -> str:
    if isinstance(e, wire.ServerError):
        primary = e.fields.get("M") or str(e)
        context = e.fields.get("W")
    else:
        diag = getattr(e, "diag", None)
        primary = getattr(diag, "message_primary", None) or str(e).strip().splitlines()[0]
        context = getattr(diag, "context", None)  # COPY t, line 3, column x: "..."
    where = f" ({context.splitlines()[0]})" if context else ""
    return redact(primary + where)
