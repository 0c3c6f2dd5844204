"""The PostgreSQL reader's binary COPY off the socket (postgresql/wire.py, decode.py) against a
real server: the same batches as the ADBC path, whatever the values and however the bytes fall
into pieces."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import tidesync
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server, read_all  # noqa: F401
from tidesync.connectors.base import Context
from tidesync.connectors.postgresql import PgSplit, Reader, decode, wire
from tidesync.connectors.postgresql import reader as pg_reader
from tidesync.errors import FatalError

pytestmark = pytest.mark.integration

RCTX = "job.content[0].reader.parameter"

COLUMNS = (
    "b boolean, i2 smallint, i4 integer, i8 bigint, f4 real, f8 double precision, d date, "
    "t time, ts timestamp, tz timestamptz, tx text, vc varchar(10), bp char(5), js json, "
    "jb jsonb, by bytea, n1 numeric(12,2), n2 numeric(18,0), n3 numeric(5,5), u uuid, arr integer[], iv interval, o oid"
)
ROWS = [
    "true, 1, 2, 3, 1.5, 2.5, '2020-01-02', '12:34:56.789', '2020-01-02 03:04:05.123456', "
    "'2020-01-02 03:04:05+02', 'héllo ✓', 'x', 'ab', '{\"a\": 1}', '{\"b\": [1, 2]}', "
    "'\\x00ff', 12345.67, 123456789012345678, 0.12345, "
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{1,2}', '1 day', 42",
    ", ".join(["NULL"] * 23),
    "false, -32768, -2147483648, -9223372036854775808, '-Infinity', 1e308, 'infinity', "
    "'00:00', '-infinity', 'infinity', '', '', '', 'null', 'null', '', -0.01, "
    "-999999999999999999, -0.99999, NULL, '{}', '-1 mon', 0",
    # (a time of 24:00 has no Arrow form: a dirty row, see test_postgresql.py)
    "true, 32767, 2147483647, 9223372036854775807, 'Infinity', -0.0, '4713-01-01 BC', "
    "'23:59:59.999999', "
    "'294276-12-31 23:59:59', '1970-01-01 00:00:00+00', repeat('z', 5000), 'abcdefghij', "
    "'abcde', '[]', '[]', repeat('x', 3000)::bytea, 0, 0, 0, NULL, '{NULL,3}', NULL, "
    "4294967295",
]


def _read(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch, off_socket: bool, n: int = 1, **kw: Any
) -> tuple[pa.Table, list[tuple[str, str]]]:
    monkeypatch.setattr(pg_reader, "COPY_OFF_SOCKET", off_socket)
    r = Reader(pg.reader_params(**kw), Context(where=RCTX))
    batches, dirty = [], []
    try:
        for s in r.splits(n):
            assert isinstance(s, PgSplit)
            # the socket path decodes every column of these tables (else both reads are ADBC's)
            assert decode.kinds_of(list(s.cols)) is not None
            for item in r.read(s):
                if isinstance(item, pa.RecordBatch):
                    batches.append(item)
                else:
                    batches.append(item.batch)
                    dirty += [(d.reason, d.position) for d in item.dirty]
        schema = r.schema()
    finally:
        r.close()
    return pa.Table.from_batches(batches, schema=schema), dirty


def test_numerics_wider_than_18_digits_or_unconstrained_read_through_adbc(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.t (id int, wide numeric(40,3), free numeric)",
        "INSERT INTO {s}.t VALUES (1, 1234567890123456789012345.5, 3.14159), (2, NULL, 'NaN')",
    )
    r = Reader(pg.reader_params(table="t"), Context(where=RCTX))
    _, table = read_all(r)
    split = r.splits(1)[0]
    r.close()
    assert isinstance(split, PgSplit) and decode.kinds_of(list(split.cols)) is None
    assert table.column("wide").to_pylist() == [Decimal("1234567890123456789012345.500"), None]
    assert table.column("free").to_pylist() == ["3.14159", "nan"]


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema == b.schema
    assert a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        if pa.types.is_floating(x.type):  # repr: NaN equals NaN, -0.0 differs from 0.0
            assert repr(x.to_pylist()) == repr(y.to_pylist()), name
        else:  # infinite dates and timestamps have no Python form: compare the arrays
            assert x.equals(y), name


def _both(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch, n: int = 1, **kw: Any
) -> tuple[pa.Table, list[tuple[str, str]]]:
    """Read off the socket and through ADBC; assert the same rows, types and dirty rows (rows in
    key order when ``splitPk`` is given); return the first read."""
    ours, dirty = _read(pg, monkeypatch, True, n, **kw)
    adbc, adbc_dirty = _read(pg, monkeypatch, False, n, **kw)
    if "splitPk" in kw:
        ours, adbc = ours.sort_by(kw["splitPk"]), adbc.sort_by(kw["splitPk"])
    _same(ours, adbc)
    assert dirty == adbc_dirty
    return ours, dirty


def test_every_type_and_edge_value_reads_as_through_adbc(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg.sql(
        f"CREATE TABLE {{s}}.t ({COLUMNS})", *(f"INSERT INTO {{s}}.t VALUES ({r})" for r in ROWS)
    )
    ours, dirty = _both(pg, monkeypatch, table="t")
    # the row of infinite dates and times has no Arrow form: a dirty row on both paths, never a
    # wrapped value (the NaN numeric of a column read as text is not dirty)
    assert ours.num_rows == 3
    assert [(r.split(";")[0], p) for r, p in dirty] == [
        ("column d: PostgreSQL's infinity has no date/time form", "row 2")
    ]


def test_numeric_nan_is_a_dirty_row_on_both_paths(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg.sql(
        "CREATE TABLE {s}.t (id int, v numeric(10,2))",
        "INSERT INTO {s}.t SELECT g, CASE WHEN g % 1000 = 7 THEN 'NaN' ELSE g / 3.0 END "
        "FROM generate_series(1, 5000) g",
    )
    ours, dirty = _both(pg, monkeypatch, table="t")
    assert ours.num_rows == 4995
    assert len(dirty) == 5


def test_many_pieces_and_splits_read_every_row_once(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    # about 25 MB: several pieces of the socket reader, rows cut at their boundaries
    pg.sql(
        "CREATE TABLE {s}.t (id bigint PRIMARY KEY, name text, amount numeric(12,2), at timestamptz)",
        "INSERT INTO {s}.t SELECT g, 'name ' || repeat('d', g % 97), g / 7.0, "
        "'2020-01-01'::timestamptz + g * interval '1 minute' FROM generate_series(1, 200000) g",
    )
    ours, _ = _both(pg, monkeypatch, 3, table="t", splitPk="id")
    assert ours.column("id").to_pylist() == list(range(1, 200001))


def test_bytes_that_look_like_row_headers_do_not_cut_rows(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a row of one column begins 'd', int32 length, int16 1: values full of that pattern
    pg.sql(
        "CREATE TABLE {s}.t (v bytea)",
        "INSERT INTO {s}.t SELECT decode(repeat('64000000ff0001', g % 50), 'hex') || int4send(g) "
        "FROM generate_series(1, 3000) g",
    )
    ours, _ = _both(pg, monkeypatch, table="t")
    assert ours.num_rows == 3000


def test_a_row_larger_than_a_piece_is_read_whole(pg: PgDb, monkeypatch: pytest.MonkeyPatch) -> None:
    size = wire.PIECE * 2 + 123
    pg.sql(
        "CREATE TABLE {s}.t (id int, v text)",
        f"INSERT INTO {{s}}.t VALUES (1, 'a'), (2, repeat('b', {size})), (3, 'c')",
    )
    ours, _ = _read(pg, monkeypatch, True, table="t")
    assert [len(v) for v in ours.column("v").to_pylist()] == [1, size, 1]


def test_an_error_in_the_middle_of_the_rows_is_fatal_with_its_sqlstate(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(FatalError, match=r"division by zero.*\[22012\]"):
        _read(
            pg,
            monkeypatch,
            True,
            querySql=["SELECT 1 / (g - 150000) AS v FROM generate_series(1, 300000) g"],
        )


@pytest.mark.parametrize("precision, scale", [(4, 0), (9, 4), (12, 2), (15, 1), (15, 6), (18, 9)])
def test_numerics_of_every_width_up_to_18_digits_read_as_through_adbc(
    pg: PgDb, monkeypatch: pytest.MonkeyPatch, precision: int, scale: int
) -> None:
    # values from 10^-scale up to the largest the type holds, both signs, zeros and round ones
    top = 10 ** (precision - scale)
    pg.sql(
        f"CREATE TABLE {{s}}.t (v numeric({precision},{scale}))",
        f"INSERT INTO {{s}}.t SELECT round((({top}::numeric - 1) * (g % 1009) / 1008.0 * sign(g % 7 - 3))"
        f"::numeric, {scale}) FROM generate_series(1, 3000) g",
        f"INSERT INTO {{s}}.t VALUES ({top} - 10::numeric ^ -{scale}), (-{top} + 10::numeric ^ -{scale}), "
        f"(10::numeric ^ -{scale}), (0), (1), (-{top // 10}), (NULL)",
    )
    ours, _ = _both(pg, monkeypatch, table="t")
    assert ours.num_rows == 3007


_NO_PANDAS = """
import sys
from tidesync.cli import entry
sys.argv = ["tidesync", "run", sys.argv[1]]
try:
    entry()
except SystemExit as e:
    if e.code:
        raise
print("pandas imported" if "pandas" in sys.modules else "no pandas")
"""


def test_a_parquet_export_never_imports_pandas(pg: PgDb, tmp_path: Path) -> None:
    # pa.array or pa.scalar on Python values imports pandas: a quarter second of every run's
    # start-up, which the socket path's decoding and the Parquet writer have no use for. Each
    # split's file has more rows than the dictionary choice's sample (its estimate too)
    pg.sql(
        "CREATE TABLE {s}.t (id bigint PRIMARY KEY, c varchar(32), a numeric(12,2), "
        "f double precision, q int, p boolean, ts timestamp, d date, n text)",
        "INSERT INTO {s}.t SELECT g, 'c' || (g % 50), g / 100.0, g * 0.37, g % 10, g % 3 = 0, "
        "timestamp '2020-01-01' + g * interval '1 second', date '2020-01-01' + g % 400, "
        "CASE WHEN g % 7 = 0 THEN NULL ELSE 'note ' || g END FROM generate_series(1, 150000) g",
    )
    reader = {**pg.reader_params(table="t"), "column": ["*"], "splitPk": "id"}
    writer = {"path": str(tmp_path / "out"), "fileName": "t.parquet", "fileFormat": "parquet"}
    job = tmp_path / "job.json"
    job.write_text(
        json.dumps(
            {
                "job": {
                    "setting": {"speed": {"channel": 2}},
                    "content": [
                        {
                            "reader": {"name": "postgresqlreader", "parameter": reader},
                            "writer": {"name": "txtfilewriter", "parameter": writer},
                        }
                    ],
                }
            }
        )
    )
    src = str(Path(tidesync.__file__).parents[1])  # this tidesync, not another installed one
    proc = subprocess.run(
        [sys.executable, "-c", _NO_PANDAS, str(job)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "150,000 written" in proc.stderr + proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "no pandas"


# -- CopyData messages handed on (the direct path) ---------------------------------------------


def _libpq_stream(pg: PgDb, sql: str) -> bytes:
    """The binary COPY data of ``sql`` as libpq hands it over."""
    with pg.con.cursor().copy(f"COPY ({sql}) TO STDOUT (FORMAT binary)") as cp:
        return b"".join(bytes(d) for d in cp)


@pytest.mark.parametrize("size", [1, 37, 4096, wire.PIECE])
def test_frames_carry_the_copy_data_as_libpq_gives_it(pg: PgDb, size: int) -> None:
    # values that look like row headers, one row larger than most pieces, NULLs
    pg.sql(
        "CREATE TABLE {s}.t (id int, v bytea, w text)",
        "INSERT INTO {s}.t SELECT g, decode(repeat('64000000ff0003', g % 50), 'hex'), "
        "CASE WHEN g % 7 = 0 THEN NULL ELSE repeat('w', g % 5000) END "
        "FROM generate_series(1, 3000) g",
    )
    sql = f"SELECT * FROM {pg.q('t')}"
    pieces = list(wire.copy_frames(pg.con, sql, 3, size))
    assert all(isinstance(d, memoryview) and d.nbytes == n + 5 for d, _, n in pieces)
    data = b"".join(wire.unframed(d) for d, _, _ in pieces)
    assert data == _libpq_stream(pg, sql)
    assert sum(r for _, r, _ in pieces) == 3000
    assert sum(n for _, _, n in pieces) == len(data)
    assert pg.con.execute("SELECT 1").fetchone() == (1,)  # libpq saw an idle connection


def test_frames_leave_out_notices_among_the_rows(pg: PgDb) -> None:
    pg.sql(
        "CREATE FUNCTION {s}.noisy(i int) RETURNS int LANGUAGE plpgsql AS "
        "$$ BEGIN IF i % 100 = 0 THEN RAISE NOTICE 'row %', i; END IF; RETURN i; END $$"
    )
    sql = f'SELECT "{pg.schema}".noisy(g) AS v FROM generate_series(1, 2000) g'
    pieces = list(wire.copy_frames(pg.con, sql, 1, 4096))
    assert b"".join(wire.unframed(d) for d, _, _ in pieces) == _libpq_stream(pg, sql)
    assert sum(r for _, r, _ in pieces) == 2000


def test_an_error_among_the_frames_raises_with_its_sqlstate_after_the_rows_before_it(
    pg: PgDb,
) -> None:
    sql = "SELECT 1 / (g - 150000) AS v FROM generate_series(1, 300000) g"
    rows = 0
    with pytest.raises(wire.ServerError) as e:
        for _, r, _ in wire.copy_frames(pg.con, sql, 1, 4096):
            rows += r
    assert e.value.sqlstate == "22012"
    assert 0 < rows < 150000
    assert pg.con.execute("SELECT 1").fetchone() == (1,)


def _socket_as_libpq_left_it(conn: Any) -> tuple[int, bool]:
    """The low-water mark of ``conn``'s socket, and whether it is non-blocking (libpq's mode)."""
    import fcntl
    import socket

    fd = conn.pgconn.socket
    sock = socket.socket(fileno=os.dup(fd))
    try:
        lowat = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT)
    finally:
        sock.close()
    return lowat, bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK)


@pytest.mark.parametrize("how", ["whole", "error", "stopped"])
@pytest.mark.parametrize("read", ["frames", "pieces"])
def test_a_copy_read_off_the_socket_gives_it_back_as_libpq_had_it(
    pg: PgDb, how: str, read: str
) -> None:
    """The reads ask the kernel to wake them for 256 KiB at a time; libpq, which waits for any
    byte on the same socket, would hang on a short answer if that stayed, so it is undone
    however the COPY ends: read whole, failed, or left mid-stream."""
    sql = (
        "SELECT 1 / (g - 150000) AS v FROM generate_series(1, 300000) g"
        if how == "error"
        else "SELECT g AS v FROM generate_series(1, 300000) g"
    )
    with psycopg_connect(pg) as conn:
        conn.autocommit = True
        assert _socket_as_libpq_left_it(conn) == (1, True)
        stream = iter(
            wire.copy_frames(conn, sql, 1, 4096)
            if read == "frames"
            else wire.copy_out(conn, sql, 1)
        )
        if how == "stopped":
            next(stream)
            assert _socket_as_libpq_left_it(conn)[0] > 1  # while it reads
            stream.close()  # type: ignore[attr-defined]
            assert _socket_as_libpq_left_it(conn) == (1, True)
            return  # the server is mid-COPY: the connection is only good for closing
        if how == "error":
            with pytest.raises(wire.ServerError):
                for _ in stream:
                    pass
        else:
            assert sum(1 for _ in stream) > 0
        assert _socket_as_libpq_left_it(conn) == (1, True)
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("read", ["frames", "pieces"])
def test_rows_that_trickle_in_are_handed_on_as_they_come(pg: PgDb, read: str) -> None:
    """The kernel wakes the reader for 256 KiB; rows that come slower than that (a slow query)
    are still handed on once the server has been quiet for a moment, not held to the end."""
    # rows of 9 kB: the server's 8 kB send buffer fills, so each row leaves when made
    sql = (
        "SELECT repeat('x', 9000) AS v FROM generate_series(1, 5) g "
        "WHERE pg_sleep(0.15) IS NOT NULL"
    )
    stream = (
        wire.copy_frames(pg.con, sql, 1, 1 << 20)
        if read == "frames"
        else wire.copy_out(pg.con, sql, 1)
    )
    pieces = [(r if isinstance(r, int) else len(r[1])) for r in _rows_per_piece(stream, read)]
    assert sum(pieces) == 5
    assert len(pieces) >= 3, pieces  # one a row, give or take the server's timing


def _rows_per_piece(stream: Any, read: str) -> Any:
    for item in stream:
        yield item[1] if read == "frames" else item


def _pass_on(pg: PgDb, sql: str, ncols: int, size: int, table: str) -> int:
    """``sql``'s rows read as frames, then written to ``table`` by CopyIn and committed: the
    count the server gave."""
    pieces = [bytes(d) for d, _, _ in wire.copy_frames(pg.con, sql, ncols, size)]
    with psycopg_connect(pg) as conn:
        copy = wire.CopyIn(conn, f"COPY {pg.q(table)} FROM STDIN (FORMAT binary)")
        for p in pieces:
            copy.write(p)
        n = copy.finish()
        conn.commit()
    return n


def test_copy_in_writes_frames_as_they_came_and_counts_the_rows(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (id int, v text)",
        "CREATE TABLE {s}.dst (id int, v text)",
        "INSERT INTO {s}.src SELECT g, repeat('x', g % 9) FROM generate_series(1, 5000) g",
    )
    assert _pass_on(pg, f"SELECT * FROM {pg.q('src')}", 2, 999, "dst") == 5000
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(5000,)]
    assert (
        pg.rows("(TABLE {s}.src EXCEPT TABLE {s}.dst) UNION (TABLE {s}.dst EXCEPT TABLE {s}.src)")
        == []
    )


def test_copy_in_reads_the_servers_notices_while_it_writes(pg: PgDb) -> None:
    """A trigger noting every row sends the client more than a socket holds while the rows
    still come: a writer that did not read meanwhile would wait on the server forever."""
    pg.sql(
        "CREATE TABLE {s}.dst (id int, v text)",
        "CREATE FUNCTION {s}.note() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE NOTICE 'row % %', NEW.id, repeat('n', 200); RETURN NEW; END $$",
        "CREATE TRIGGER note BEFORE INSERT ON {s}.dst FOR EACH ROW EXECUTE FUNCTION {s}.note()",
    )
    sql = "SELECT g AS id, repeat('x', 50) AS v FROM generate_series(1, 30000) g"
    assert _pass_on(pg, sql, 2, 1 << 20, "dst") == 30000
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(30000,)]


def test_copy_in_raises_the_servers_error_and_leaves_the_connection_usable(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.dst (id int, v varchar(2))")
    sql = "SELECT g AS id, repeat('x', g / 1000) AS v FROM generate_series(1, 20000) g"
    pieces = [bytes(d) for d, _, _ in wire.copy_frames(pg.con, sql, 2, 4096)]
    with psycopg_connect(pg) as conn:
        with pytest.raises(wire.ServerError) as e:
            wire.CopyIn(conn, f"COPY {pg.q('nowhere')} FROM STDIN (FORMAT binary)")
        assert e.value.sqlstate == "42P01"
        conn.rollback()
        copy = wire.CopyIn(conn, f"COPY {pg.q('dst')} FROM STDIN (FORMAT binary)")
        with pytest.raises(wire.ServerError) as e:
            for p in pieces:
                copy.write(p)
            copy.finish()
        assert e.value.sqlstate == "22001"
        assert "line 3000" in e.value.fields.get("W", "")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM " + pg.q("dst")).fetchone() == (0,)


def test_an_aborted_copy_in_takes_no_rows(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.dst (id int)")
    pieces = [bytes(d) for d, _, _ in wire.copy_frames(pg.con, "SELECT 1 AS id", 1, 4096)]
    with psycopg_connect(pg) as conn:
        conn.execute("SAVEPOINT s")
        copy = wire.CopyIn(conn, f"COPY {pg.q('dst')} FROM STDIN (FORMAT binary)")
        copy.write(pieces[0])
        copy.abort("stopped")
        conn.execute("ROLLBACK TO SAVEPOINT s")
        conn.commit()
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(0,)]


def test_unframed_is_framed_undone_and_refuses_other_messages() -> None:
    assert wire.unframed(wire.framed(b"abc") + wire.framed(b"") + wire.framed(b"de")) == b"abcde"
    with pytest.raises(ValueError, match="kind 0x4e"):
        wire.unframed(wire.framed(b"abc") + b"N\x00\x00\x00\x04")


def psycopg_connect(pg: PgDb) -> Any:
    import psycopg

    return psycopg.connect(pg.url)
