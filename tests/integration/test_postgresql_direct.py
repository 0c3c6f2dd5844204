"""PostgreSQL -> PostgreSQL on the direct path (binary COPY out, binary COPY in, no Arrow),
against a real server: every type exactly as the Arrow path writes it, the write modes, a
failure leaves the target untouched, a bad row sends its split to the Arrow path (and becomes
one dirty record), and what the direct path cannot take goes the Arrow way, the report says
why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from click.testing import CliRunner

from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401
from tests.integration.test_postgresql import ALL_TYPES, ALL_VALUES, run
from tidesync.cli import main
from tidesync.connectors.postgresql.direct import FORM, _mismatch
from tidesync.connectors.postgresql.types import TypeInfo

pytestmark = pytest.mark.integration

DIRECT = f"direct: {FORM}"
EXTRA = "tz timetz, m money, x xml, b bit(3), vb varbit, p point, d {s}.positive, ta text[]"
EXTRA_VALUES = "'12:00+02', 12.34, '<a/>', '101', '1101', '(1,2)', 7, '{a,NULL,\"b c\"}'"


def same_rows(pg: PgDb, a: str, b: str) -> list[Any]:
    """The rows of table ``a`` not in ``b`` and of ``b`` not in ``a``, as text."""
    return pg.rows(
        f"(SELECT t::text FROM {{s}}.{a} t EXCEPT ALL SELECT t::text FROM {{s}}.{b} t) UNION ALL "
        f"(SELECT t::text FROM {{s}}.{b} t EXCEPT ALL SELECT t::text FROM {{s}}.{a} t)"
    )


def test_every_type_moves_exactly_and_as_the_arrow_path_writes_it(pg: PgDb, tmp_path: Path) -> None:
    pg.sql(
        "CREATE TYPE {s}.mood AS ENUM ('sad', 'happy')",
        "CREATE DOMAIN {s}.positive AS numeric(8,1) CHECK (VALUE > 0)",
        *(
            f"CREATE TABLE {{s}}.{t} (id int, {ALL_TYPES}, {EXTRA})"
            for t in ("src", "direct", "arrow")
        ),
        f"INSERT INTO {{s}}.src SELECT g, {ALL_VALUES}, {EXTRA_VALUES} FROM generate_series(1, 3000) g",
        "INSERT INTO {s}.src (id) VALUES (0)",
    )
    rp = pg.reader_params(table="src", splitPk="id")
    direct = run(pg, tmp_path, rp, pg.writer_params("direct"))
    arrow = run(pg, tmp_path, rp, pg.writer_params("arrow"), setting={"direct": False})
    assert (direct.status, arrow.status) == ("succeeded", "succeeded"), (direct.error, arrow.error)
    assert [(p.path, p.why) for p in direct.paths] == [(DIRECT, None)]
    assert [(p.path, p.why) for p in arrow.paths] == [("arrow", "job.setting.direct is false")]
    # the serial writer takes one COPY at a time: the direct path reads the table whole, where
    # the Arrow path cuts it by splitPk
    assert [s.path for s in direct.splits] == [DIRECT] and len(arrow.splits) > 1
    assert (direct.records_read, direct.records_written, direct.dirty_records) == (3001, 3001, 0)
    assert direct.bytes_read > 0
    assert same_rows(pg, "src", "direct") == []
    assert same_rows(pg, "arrow", "direct") == []
    saved = json.loads((tmp_path / "report.json").read_text())  # the last run's: the arrow one
    assert saved["paths"] == [{"content": 0, "path": "arrow", "why": "job.setting.direct is false"}]


def test_values_arrow_cannot_hold_move_on_the_direct_path(pg: PgDb, tmp_path: Path) -> None:
    """NaN numerics and infinite timestamps have no Arrow form (the Arrow path makes them dirty
    records); binary COPY carries them as they are."""
    pg.sql(
        "CREATE TABLE {s}.src (id int, n numeric(10,2), t timestamp, d date)",
        "CREATE TABLE {s}.dst (id int, n numeric(10,2), t timestamp, d date)",
        "INSERT INTO {s}.src VALUES (1, 'NaN', 'infinity', '-infinity'), (2, 1.5, now(), now())",
    )
    rep = run(pg, tmp_path, pg.reader_params(table="src"), pg.writer_params("dst"))
    assert rep.status == "succeeded", rep.error
    assert same_rows(pg, "src", "dst") == []


@pytest.mark.parametrize(
    ("mode", "before", "after"),
    [
        ("insert", [(100,)], [(1,), (2,), (3,), (100,)]),
        ("append", [(100,)], [(1,), (2,), (3,), (100,)]),
        ("truncate", [(100,)], [(1,), (2,), (3,)]),
        ("overwrite", [(100,)], [(1,), (2,), (3,)]),
    ],
)
def test_write_modes_on_the_direct_path(
    pg: PgDb, tmp_path: Path, mode: str, before: list[Any], after: list[Any]
) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (id int, v text)",
        "CREATE TABLE {s}.dst (id int, v text)",
        "INSERT INTO {s}.src VALUES (1, 'a'), (2, 'b'), (3, NULL)",
        "INSERT INTO {s}.dst VALUES (100, 'old')",
    )
    assert pg.rows("SELECT id FROM {s}.dst") == before
    rep = run(
        pg,
        tmp_path,
        pg.reader_params(table="src"),
        pg.writer_params("dst", writeMode=mode, preSql=["SELECT 1"], postSql=["ANALYZE @table"]),
    )
    assert rep.status == "succeeded", rep.error
    assert [p.path for p in rep.paths] == [DIRECT]
    assert pg.rows("SELECT id FROM {s}.dst ORDER BY id") == after


def test_a_failure_mid_stream_leaves_the_target_untouched(pg: PgDb, tmp_path: Path) -> None:
    """The source fails after thousands of rows went into the target's COPY: nothing is
    published, the rows the target had stay."""
    pg.sql(
        "CREATE TABLE {s}.dst (id int, v int)",
        "INSERT INTO {s}.dst VALUES (-1, -1)",
    )
    rp = pg.reader_params(
        querySql=["SELECT g AS id, 1 / (g - 150000) AS v FROM generate_series(1, 200000) g"]
    )
    rep = run(pg, tmp_path, rp, pg.writer_params("dst", writeMode="truncate"))
    assert rep.status == "failed"
    assert "division by zero" in (rep.error or "")
    assert [p.path for p in rep.paths] == [DIRECT]
    assert pg.rows("SELECT * FROM {s}.dst") == [(-1, -1)]


def test_a_failing_commit_leaves_the_target_untouched(pg: PgDb, tmp_path: Path) -> None:
    pg.sql(
        "CREATE TABLE {s}.src (id int)",
        "CREATE TABLE {s}.dst (id int)",
        "INSERT INTO {s}.src SELECT generate_series(1, 1000)",
        "INSERT INTO {s}.dst VALUES (-1)",
    )
    wp = pg.writer_params("dst", writeMode="truncate", postSql=["SELECT no_such_function()"])
    rep = run(pg, tmp_path, pg.reader_params(table="src"), wp)
    assert rep.status == "failed"
    assert pg.rows("SELECT * FROM {s}.dst") == [(-1,)]


def test_a_bad_row_sends_its_split_to_the_arrow_path_and_is_one_dirty_record(
    pg: PgDb, tmp_path: Path
) -> None:
    """Two tables, a split each: the one with the bad row is read again the Arrow way, the
    other stays on the direct path."""
    pg.sql(
        "CREATE TABLE {s}.src (id int, v varchar(20))",
        "CREATE TABLE {s}.src2 (id int, v varchar(20))",
        "CREATE TABLE {s}.dst (id int, v varchar(3))",
        "INSERT INTO {s}.src SELECT g, 'v' || (g % 100) FROM generate_series(1, 4000) g",
        "INSERT INTO {s}.src2 SELECT g, 'w' || (g % 100) FROM generate_series(4001, 6000) g",
        "UPDATE {s}.src SET v = 'far too long' WHERE id = 3500",
    )
    rp = pg.reader_params(table=["src", "src2"], splitPk="id")
    rep = run(pg, tmp_path, rp, pg.writer_params("dst"), setting={"errorLimit": {"record": 1}})
    assert rep.status == "succeeded", rep.error
    assert (rep.records_read, rep.records_written, rep.dirty_records) == (6000, 5999, 1)
    assert [p.path for p in rep.paths] == [DIRECT]
    assert [(s.split, s.path, bool(s.fallback)) for s in rep.splits] == [
        ("src", "arrow", True),
        ("src2", DIRECT, False),
    ]
    assert "value too long" in (rep.splits[0].fallback or "")
    dirty = [json.loads(x) for x in Path(rep.dirty_file or "").read_text().splitlines()]
    assert [(d["row"]["id"], d["code"]) for d in dirty] == [(3500, "22001")]
    assert pg.rows("SELECT count(*), count(DISTINCT id) FROM {s}.dst") == [(5999, 5999)]
    assert pg.rows("SELECT count(*) FROM {s}.dst WHERE id = 3500") == [(0,)]


@pytest.mark.parametrize(
    ("src", "dst", "extra", "why"),
    [
        (
            "id int, v integer",
            "id int, v bigint",
            {},
            "the postgresqlwriter writer takes none of the reader's raw forms "
            f"({FORM}): column v: bigint here, integer in the source",
        ),
        ("id int, v text", "id int, v text", {"transformer": True}, "the entry has transformers"),
        (
            "id int, v text",
            "id int, v text, PRIMARY KEY (id)",
            {"writeMode": "replace"},
            f"the postgresqlwriter writer takes none of the reader's raw forms ({FORM}): "
            "writeMode replace",
        ),
        (
            "id int, v text",
            "id int, v text, ds text",
            {"partition": "ds=20161115"},
            f"the postgresqlwriter writer takes none of the reader's raw forms ({FORM}): "
            "writeMode overwrite of a partition",
        ),
        (
            "id int, v text",
            "id int, v text",
            {"incremental": True},
            "the postgresqlreader reader has no raw form: an incremental read tracks its "
            "cursor in the rows' values",
        ),
    ],
    ids=["type", "transformer", "replace", "partition", "incremental"],
)
def test_what_the_direct_path_cannot_take_goes_the_arrow_way_and_the_report_says_why(
    pg: PgDb, tmp_path: Path, src: str, dst: str, extra: dict[str, Any], why: str
) -> None:
    pg.sql(
        f"CREATE TABLE {{s}}.src ({src})",
        f"CREATE TABLE {{s}}.dst ({dst})",
        "INSERT INTO {s}.src VALUES (1, '7'), (2, '8')",
    )
    rp = pg.reader_params(table="src")
    if extra.pop("incremental", False):
        rp["incremental"] = {"column": "id"}
    wp = pg.writer_params("dst", **{k: v for k, v in extra.items() if k != "transformer"})
    path = pg.job_file(tmp_path / "job.json", rp, wp)
    if extra.get("transformer"):
        doc = json.loads(path.read_text())
        doc["job"]["content"][0]["transformer"] = [
            {"name": "rename", "parameter": {"columns": {"v": "v"}}}
        ]
        path.write_text(json.dumps(doc))
    from tidesync.engine.runner import load_job, run_job
    from tidesync.spec.params import RunTime

    rep = run_job(load_job(path, {}, RunTime.of("20161115000000")))
    assert rep.status == "succeeded", rep.error
    assert [(p.path, p.why) for p in rep.paths] == [("arrow", why)]
    assert {s.path for s in rep.splits} == {"arrow"}
    assert pg.rows("SELECT id, v::text FROM {s}.dst ORDER BY id") == [(1, "7"), (2, "8")]


@pytest.mark.parametrize(("value", "code"), [(False, 0), ("true", 0), ("maybe", 2)])
def test_validate_accepts_setting_direct(pg: PgDb, tmp_path: Path, value: Any, code: int) -> None:
    pg.sql("CREATE TABLE {s}.src (id int)", "CREATE TABLE {s}.dst (id int)")
    path = pg.job_file(
        tmp_path / "job.json",
        pg.reader_params(table="src"),
        pg.writer_params("dst"),
        setting={"direct": value},
    )
    r = CliRunner().invoke(main, ["validate", str(path)])
    assert r.exit_code == code, r.output
    if code:
        assert "job.setting.direct: must be true or false, got 'maybe'" in r.stderr


T = {
    "int4": TypeInfo(23, "integer", "N"),
    "int8": TypeInfo(20, "bigint", "N"),
    "text": TypeInfo(25, "text", "S"),
    "varchar": TypeInfo(1043, "character varying", "S"),
    "num": TypeInfo(1700, "numeric", "N"),
    "dom_num": TypeInfo(50000, "money2", "N", base=1700, base_name="numeric(8,1)"),
    "mood": TypeInfo(50001, "mood", "E"),
    "mood_other_db": TypeInfo(60001, "mood", "E"),
    "feeling": TypeInfo(60002, "feeling", "E"),
    "composite": TypeInfo(50002, "pair", "C"),
    "composite_other_db": TypeInfo(60003, "pair", "C"),
}


@pytest.mark.parametrize(
    ("src", "dst", "same_db", "fits"),
    [
        ("int4", "int4", False, True),
        ("int4", "int8", True, False),
        ("text", "varchar", False, True),
        ("varchar", "text", False, True),
        ("dom_num", "num", False, True),
        ("num", "dom_num", False, True),
        ("mood", "mood_other_db", False, True),
        ("mood", "feeling", True, False),
        ("composite", "composite", True, True),
        ("composite", "composite_other_db", False, False),
    ],
)
def test_which_types_go_as_they_are(src: str, dst: str, same_db: bool, fits: bool) -> None:
    assert (_mismatch(T[src], T[dst], same_db) == "") is fits


def test_splits_read_in_one_snapshot_on_the_direct_path(
    pg: PgDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two tables, a split each (read one after another), in the snapshot taken when planned: a
    row added between the planning and the reads is not copied."""
    pg.sql(
        "CREATE TABLE {s}.src (id int, v text)",
        "CREATE TABLE {s}.src2 (id int, v text)",
        "CREATE TABLE {s}.dst (id int, v text)",
        "INSERT INTO {s}.src SELECT g, g::text FROM generate_series(1, 5000) g",
        "INSERT INTO {s}.src2 SELECT g, g::text FROM generate_series(5001, 6000) g",
    )
    rp = pg.reader_params(table=["src", "src2"], splitPk="id", snapshot=True)
    job = pg.job_file(tmp_path / "job.json", rp, pg.writer_params("dst"))
    from tidesync.engine import runner as engine
    from tidesync.engine.runner import load_job, run_job
    from tidesync.spec.params import RunTime

    def planned(point: str) -> None:
        if point == "run.tasks":  # the snapshot taken, nothing read yet
            pg.sql("INSERT INTO {s}.src2 VALUES (-1, 'after the snapshot')")

    monkeypatch.setattr(engine, "hook", planned)
    rep = run_job(load_job(job, {}, RunTime.of("20161115000000")))
    assert rep.status == "succeeded", rep.error
    assert [s.path for s in rep.splits] == [DIRECT, DIRECT]
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(6000,)]
    assert pg.rows("SELECT count(*) FROM {s}.dst WHERE id = -1") == [(0,)]


def test_a_split_query_is_read_with_its_columns_as_stored() -> None:
    from tidesync.connectors.postgresql.direct import raw_sql
    from tidesync.connectors.postgresql.types import OutColumn

    cols = [
        OutColumn("id", 'q."id" AS "id"', pa.int32()),
        OutColumn("m", 'q."m"::text AS "m"', pa.string()),
    ]
    sql = 'SELECT q."id" AS "id", q."m"::text AS "m" FROM (SELECT * FROM t WHERE id < 5) AS q("id", "m")'
    assert raw_sql(sql, cols) == (
        'SELECT q."id", q."m" FROM (SELECT * FROM t WHERE id < 5) AS q("id", "m")'
    )
    assert raw_sql("SELECT something else", cols) is None


@pytest.mark.parametrize("piece", [1, 37, 4096])
@pytest.mark.parametrize("socket", [True, False], ids=["socket", "libpq"])
def test_rows_are_counted_exactly_whatever_the_piece_size(
    pg: PgDb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, piece: int, socket: bool
) -> None:
    """Off the socket where connections are plain; through libpq (as for TLS) otherwise."""
    from tidesync.connectors.postgresql import direct, wire

    monkeypatch.setattr(direct, "PIECE", piece)
    used = []
    copy_frames, copy_in = wire.copy_frames, wire.CopyIn
    monkeypatch.setattr(wire, "copy_frames", lambda *a: used.append("out") or copy_frames(*a))
    monkeypatch.setattr(wire, "CopyIn", lambda *a: used.append("in") or copy_in(*a))
    if not socket:
        monkeypatch.setattr(wire, "usable", lambda conn: False)
    pg.sql(
        "CREATE TABLE {s}.src (id int, v text)",
        "CREATE TABLE {s}.dst (id int, v text)",
        "INSERT INTO {s}.src SELECT g, repeat('x', g % 7) FROM generate_series(1, 1000) g",
    )
    rep = run(pg, tmp_path, pg.reader_params(table="src"), pg.writer_params("dst"))
    assert rep.status == "succeeded", rep.error
    assert [p.path for p in rep.paths] == [DIRECT]
    assert (rep.records_read, rep.records_written) == (1000, 1000)
    assert same_rows(pg, "src", "dst") == []
    assert sorted(set(used)) == (["in", "out"] if socket else [])
    # the COPY data without the protocol's framing: the header, 14 bytes and the text a row,
    # the trailer
    assert rep.bytes_read == 19 + pg.rows("SELECT sum(14 + length(v)) FROM {s}.src")[0][0] + 2


def test_an_empty_source_moves_no_rows(pg: PgDb, tmp_path: Path) -> None:
    pg.sql("CREATE TABLE {s}.src (id int)", "CREATE TABLE {s}.dst (id int)")
    pg.sql("INSERT INTO {s}.dst VALUES (1)")
    wp = pg.writer_params("dst", writeMode="truncate")
    rep = run(pg, tmp_path, pg.reader_params(table="src"), wp)
    assert rep.status == "succeeded", rep.error
    assert [p.path for p in rep.paths] == [DIRECT]
    assert (rep.records_read, rep.records_written) == (0, 0)
    assert pg.rows("SELECT count(*) FROM {s}.dst") == [(0,)]
