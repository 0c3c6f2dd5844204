"""CSV files -> DuckDB on the direct path (DuckDB's own read_csv): the same table and the same
dirty records as the Arrow path, on real files; the cases that stay on the Arrow path."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from tests.integration._cdc import run_imports_pandas
from tidesync.connectors.duckdb.csv import CsvFile, load, parser_trouble, read_csv_sql
from tidesync.engine.runner import load_job, run_job
from tidesync.spec.params import RunTime

RT = RunTime.of("20250101000000")
DIRECT = "direct: csv-file"

TYPED = [
    {"index": 0, "type": "long", "name": "id"},
    {"index": 1, "type": "string", "name": "name"},
    {"index": 2, "type": "double", "name": "amount"},
    {"index": 3, "type": "boolean", "name": "paid"},
    {"index": 4, "type": "date", "name": "ts", "format": "yyyy-MM-dd HH:mm:ss"},
]
HEADER = "id,name,amount,paid,ts\n"
CLEAN = (
    "1,plain,1.5,true,2024-01-02 10:00:00\n"
    '2,"a, quoted ""value""",-2,FALSE,2024-01-02\n'
    '3,"two\nlines",1e3,1,2024-01-02T10:00:00.5\n'
    "\n"
    "4,\\N,\\N,\\N,\\N\n"
    '5,"\\N",NaN,0,2024-02-29 23:59:59\n'
    '6,"",inf,True,2024-01-02 10:00\n'
    "7,,0.25,false,2024-12-31 00:00:00\n"
)


# -- the DuckDB side alone -----------------------------------------------------------------------


def _csv_file(path: Path, header: bool = True, **kw: Any) -> CsvFile:
    cols = tuple(
        (i, n, t)
        for i, (n, t) in enumerate(
            [
                ("id", "BIGINT"),
                ("name", "VARCHAR"),
                ("amount", "DOUBLE"),
                ("paid", "BOOLEAN"),
                ("ts", "TIMESTAMP"),
            ]
        )
    )
    return CsvFile(str(path), 5, cols, header=header, label=str(path), **kw)


def _table(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE t (id BIGINT, name VARCHAR, amount DOUBLE, paid BOOLEAN, ts TIMESTAMP)"
    )


def test_load_inserts_a_clean_file_with_the_declared_types(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(HEADER + CLEAN)
    con = duckdb.connect()
    _table(con)
    con.execute("BEGIN")
    done = load(con, "t", ["id", "name", "amount", "paid", "ts"], _csv_file(tmp_path / "a.csv"))
    assert done.rows == 7 and done.rejected == 0
    got = dict(con.execute("SELECT id, name FROM t").fetchall())
    assert got == {
        1: "plain",
        2: 'a, quoted "value"',
        3: "two\nlines",
        4: None,
        5: "\\N",  # a quoted value is never NULL
        6: "",
        7: "",  # an empty text field is text, NULL only as nullFormat says
    }


def test_load_takes_back_a_file_with_rejects_and_names_line_and_column(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(HEADER + "1,a,1,true,2024-01-02\n2,b,x,true,2024-01-02\n3,c\n")
    con = duckdb.connect()
    _table(con)
    con.execute("INSERT INTO t (id) VALUES (100)")
    con.execute("BEGIN")
    con.execute("INSERT INTO t (id) VALUES (101)")  # the transaction's own earlier rows stay
    done = load(con, "t", ["id", "name", "amount", "paid", "ts"], _csv_file(tmp_path / "a.csv"))
    assert done.rows == 0 and done.rejected == 4  # line 4 lacks 3 fields; x is no number
    first, inexact = done.rejects[0], done.rejects[-1]
    assert (first.line, first.kind) == (4, "MISSING COLUMNS")
    assert first.text == "3,c"
    assert str(first).startswith("line 4, column 2 (amount): Expected Number of Columns: 5")
    # x in the amount column: not a number, counted in the same scan without an error
    assert str(inexact) == "has 1 value(s) that DuckDB would read otherwise than tidesync"
    assert sorted(r[0] for r in con.execute("SELECT id FROM t").fetchall()) == [100, 101]
    # the rejects are cleared: the next load reports only its own
    (tmp_path / "b.csv").write_text(HEADER + "9,z,1,true,2024-01-02\n")
    again = load(con, "t", ["id", "name", "amount", "paid", "ts"], _csv_file(tmp_path / "b.csv"))
    assert (again.rows, again.rejected) == (1, 0)
    assert con.execute("SELECT count(*) FROM t").fetchone() == (3,)
    con.execute("COMMIT")  # the transaction was never aborted


def test_load_takes_back_a_file_with_a_space_beside_a_quote(tmp_path: Path) -> None:
    (tmp_path / "a.csv.gz").write_bytes(gzip.compress(HEADER.encode() + b'1, "a",1,true,\n'))
    con = duckdb.connect()
    _table(con)
    con.execute("BEGIN")
    f = _csv_file(tmp_path / "a.csv.gz", compression="gzip")
    done = load(con, "t", ["id", "name", "amount", "paid", "ts"], f)
    assert (done.rows, done.rejected) == (0, 1)
    assert "a space beside a quote" in str(done.rejects[0])
    assert con.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_read_csv_sql_reads_every_field_as_text() -> None:
    f = CsvFile("x.csv", 3, ((0, "a", "BIGINT"), (2, "b", "VARCHAR")))
    sql, params = read_csv_sql(f)
    assert params == ["x.csv", ",", ["\\N"]]
    assert "columns = {'c0': 'VARCHAR', 'c1': 'VARCHAR', 'c2': 'VARCHAR'}" in sql
    assert 'TRY_CAST("c0" AS BIGINT)' in sql and "nextval" in sql


# -- whole jobs: the direct path against the Arrow path -------------------------------------------


def _job(
    folder: Path,
    reader: dict[str, Any],
    *,
    direct: bool | None,
    mode: str = "truncate",
    table: str = "t",
    record: int | None = None,
    transformer: list[Any] | None = None,
    writer: dict[str, Any] | None = None,
) -> Any:
    setting: dict[str, Any] = {"speed": {"concurrent": 2}}
    if direct is not None:
        setting["direct"] = direct
    name = {None: "unset", True: "direct", False: "arrow"}[direct]
    if record is not None:
        setting["errorLimit"] = {"record": record}
    content: dict[str, Any] = {
        "reader": {"name": "txtfilereader", "parameter": reader},
        "writer": {
            "name": "duckdbwriter",
            "parameter": {
                "database": str(folder / f"{name}.duckdb"),
                "table": table,
                "writeMode": mode,
                **(writer or {}),
            },
        },
    }
    if transformer:
        content["transformer"] = transformer
    path = folder / f"job_{name}.json"
    path.write_text(json.dumps({"job": {"setting": setting, "content": [content]}}))
    dirty = folder / f"{name}.dirty.jsonl"
    dirty.unlink(missing_ok=True)
    return run_job(load_job(path, runtime=RT, root=folder), dirty_path=dirty)


def _rows(db: Path, table: str = "t") -> list[tuple[Any, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        types = con.execute(
            "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
            "ORDER BY column_index",
            [table],
        ).fetchall()
        rows = con.execute(f"SELECT * FROM {table}").fetchall()
    return [tuple(types)] + sorted(rows, key=repr)


def _same(db: Path, other: Path, table: str) -> None:
    """The two tables hold the same rows (NaN equal to NaN)."""
    assert [repr(r) for r in _rows(db, table)] == [repr(r) for r in _rows(other, table)]


def _both(folder: Path, reader: dict[str, Any], **kw: Any) -> tuple[Any, Any]:
    """The job on the Arrow path and on the direct path; the tables must be identical."""
    arrow = _job(folder, reader, direct=False, **kw)
    direct = _job(folder, reader, direct=True, **kw)
    assert arrow.status == direct.status, (arrow.error, direct.error)
    if arrow.status == "succeeded":
        table = kw.get("table", "t")
        _same(folder / "direct.duckdb", folder / "arrow.duckdb", table)
    assert [p.path for p in arrow.paths] == ["arrow"]
    return arrow, direct


def _tables(folder: Path, *sql: str) -> None:
    """Run ``sql`` in both databases (the Arrow path's and the direct path's)."""
    for name in ("arrow.duckdb", "direct.duckdb"):
        with duckdb.connect(str(folder / name)) as con:
            for statement in sql:
                con.execute(statement)


def _files(folder: Path, files: dict[str, str | bytes]) -> None:
    for name, text in files.items():
        data = text.encode() if isinstance(text, str) else text
        if name.endswith(".gz"):
            data = gzip.compress(data)
        if name.endswith(".zst"):
            with pa.CompressedOutputStream(str(folder / name), "zstd") as out:
                out.write(data)
            continue
        (folder / name).write_bytes(data)


CASES: dict[str, tuple[dict[str, str | bytes], dict[str, Any]]] = {
    "typed columns, quotes, NULLs, blank lines": (
        {"a.csv": HEADER + CLEAN},
        {"skipHeader": True, "column": TYPED},
    ),
    "every field as text, names from the header": (
        {"a.csv": HEADER + CLEAN},
        {"skipHeader": True},
    ),
    "no header: fields c0, c1, ...": ({"a.csv": CLEAN}, {}),
    "columns by name, in another order": (
        {"a.csv": HEADER + CLEAN},
        {
            "skipHeader": True,
            "column": [{"name": "paid", "type": "bool"}, "name", {"name": "id", "type": "int"}],
        },
    ),
    "a semicolon, nullFormat empty, CRLF, a byte-order mark": (
        {"a.csv": b'\xef\xbb\xbfid;name\r\n1;x\r\n2;\r\n3;""\r\n4;\\N\r\n'},
        {
            "skipHeader": True,
            "fieldDelimiter": ";",
            "nullFormat": "",
            "column": [{"index": 0, "type": "long"}, {"index": 1}],
        },
    ),
    "a tab, several files, gzip and zstd": (
        {
            "a.tsv": "1\tx\t2024-01-02\n2\ty\t2024-01-03 04:05:06\n",
            "b.tsv.gz": "3\tz\t2024-01-04\n",
            "c.tsv.zst": "4\tw\t2024-01-05 00:00:01\n",
        },
        {
            "fieldDelimiter": "\t",
            "column": [
                {"index": 0, "type": "long", "name": "id"},
                {"index": 2, "type": "date", "name": "day"},
                {"index": 1, "name": "s"},
            ],
        },
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_direct_path_gives_the_arrow_paths_table(tmp_path: Path, case: str) -> None:
    files, params = CASES[case]
    _files(tmp_path, files)
    _arrow, direct = _both(tmp_path, {"path": str(tmp_path / "*sv*"), **params})
    assert direct.status == "succeeded"
    assert [p.path for p in direct.paths] == [DIRECT]
    assert not any(s.fallback for s in direct.splits)
    assert direct.records_written == _arrow.records_written > 0


def test_without_setting_direct_csv_goes_the_arrow_way(tmp_path: Path) -> None:
    # the exact direct path is slower than the Arrow path: only setting.direct: true takes it
    (tmp_path / "a.csv").write_text(HEADER + CLEAN)
    reader = {"path": str(tmp_path / "a.csv"), "skipHeader": True, "column": TYPED}
    unset = _job(tmp_path, reader, direct=None)
    assert unset.status == "succeeded", unset.error
    assert [p.path for p in unset.paths] == ["arrow"]
    assert "direct: true" in (unset.paths[0].why or "")
    assert [s.path for s in unset.splits] == ["arrow"]
    assert unset.records_written == 7
    forced = _job(tmp_path, reader, direct=True)
    assert [p.path for p in forced.paths] == [DIRECT]
    _same(tmp_path / "unset.duckdb", tmp_path / "direct.duckdb", "t")


def _dirty(report: Any) -> list[tuple[str, str, str]]:
    """The dirty records the run wrote: reason, position, row."""
    if not report.dirty_file:
        return []
    lines = Path(report.dirty_file).read_text().splitlines()
    found = [json.loads(line) for line in lines]
    return sorted((d["reason"], d["position"], json.dumps(d["row"])) for d in found)


@pytest.mark.parametrize(
    ("text", "limit", "written"),
    [
        ("1,a\nx,b\n3,c,extra\n4,d\n", 2, 2),  # two dirty rows, within the limit
        ("1,a\n,b\nx,c\n4,d\n", 1, 3),  # an empty field beside a bad one
    ],
)
def test_a_file_duckdb_rejects_is_read_again_the_arrow_way(
    tmp_path: Path, text: str, limit: int, written: int
) -> None:
    (tmp_path / "a.csv").write_text(text)
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [{"index": 0, "type": "long", "name": "id"}, {"index": 1, "name": "s"}],
    }
    arrow, direct = _both(tmp_path, reader, record=limit)
    assert direct.status == "succeeded"
    assert [p.path for p in direct.paths] == [DIRECT]
    assert direct.splits[0].path == "arrow"
    # a row DuckDB's parser refuses names its line; a value it is not let cast, its count
    assert ("line 3" if "extra" in text else "1 value(s)") in (direct.splits[0].fallback or "")
    assert _dirty(direct) == _dirty(arrow)
    assert len(_dirty(direct)) == 4 - written
    assert direct.records_written == written


def test_empty_typed_fields_are_null_on_the_direct_path_too(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(HEADER + "1,a,,,\n,\\N,2.5,true,\n3,,1,,2024-01-02\n")
    arrow, direct = _both(
        tmp_path, {"path": str(tmp_path / "a.csv"), "skipHeader": True, "column": TYPED}
    )
    assert direct.splits[0].path == DIRECT and not direct.splits[0].fallback
    assert direct.records_written == 3 and not _dirty(direct)
    assert _rows(tmp_path / "direct.duckdb")[1:] == [
        (1, "a", None, None, None),
        (3, "", 1.0, None, dt.datetime(2024, 1, 2)),
        (None, None, 2.5, True, None),
    ]


def test_a_csv_run_on_the_arrow_path_never_imports_pandas(tmp_path: Path) -> None:
    # pyarrow imports pandas (a quarter of a CPU second) when a compute function is given a
    # Python value; empty typed fields take the conversion's NULL-ing branch
    (tmp_path / "a.csv").write_text(HEADER + "1,a,,,\n,\\N,2.5,true,\n3,,1,,2024-01-02\n")
    reader = {"path": str(tmp_path / "a.csv"), "skipHeader": True, "column": TYPED}
    _job(tmp_path, reader, direct=False)  # writes job_arrow.json
    (tmp_path / "arrow.duckdb").unlink()
    assert not run_imports_pandas(tmp_path / "job_arrow.json", tmp_path)
    assert _rows(tmp_path / "arrow.duckdb")[1:] == [
        (1, "a", None, None, None),
        (3, "", 1.0, None, dt.datetime(2024, 1, 2)),
        (None, None, 2.5, True, None),
    ]


def test_dirty_rows_over_the_error_limit_leave_the_table_untouched(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,a\nx,b\ny,c\n")
    reader = {"path": str(tmp_path / "a.csv"), "column": [{"index": 0, "type": "long"}]}
    _tables(tmp_path, "CREATE TABLE t (c0 BIGINT)", "INSERT INTO t VALUES (42)")
    arrow, direct = _both(tmp_path, reader, record=1)
    assert direct.status == "failed"
    assert _dirty(direct) == _dirty(arrow) and len(_dirty(direct)) == 2
    assert _rows(tmp_path / "direct.duckdb")[1:] == [(42,)]


@pytest.mark.parametrize(
    ("mode", "kept"), [("insert", True), ("truncate", False), ("overwrite", False)]
)
def test_write_modes_on_the_direct_path(tmp_path: Path, mode: str, kept: bool) -> None:
    (tmp_path / "a.csv").write_text("1,a\n2,b\n")
    _tables(
        tmp_path,
        "CREATE TABLE t (id BIGINT, s VARCHAR, extra VARCHAR DEFAULT 'd')",
        "INSERT INTO t VALUES (0, 'old', 'x')",
    )
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [{"index": 0, "type": "long", "name": "id"}, {"index": 1, "name": "s"}],
    }
    _arrow, direct = _both(tmp_path, reader, mode=mode)
    assert [p.path for p in direct.paths] == [DIRECT]
    rows = _rows(tmp_path / "direct.duckdb")[1:]
    assert ((0, "old", "x") in rows) is kept and (1, "a", "d") in rows


REFUSED: dict[str, tuple[dict[str, Any], dict[str, Any], str]] = {
    "a transformer": (
        {},
        {
            "transformer": [
                {"name": "dx_substr", "parameter": {"columnIndex": 1, "paras": ["0", "1"]}}
            ]
        },
        "transformer",
    ),
    "text format": ({"fileFormat": "text"}, {}, "fileFormat is text"),
    "csv without quotes": (
        {"csvReaderConfig": {"useTextQualifier": False}},
        {},
        "useTextQualifier is false",
    ),
    "another encoding": ({"encoding": "latin-1"}, {}, "encoding is iso8859-1"),
    "a constant column": (
        {"column": [{"index": 0, "type": "long"}, {"type": "string", "value": "k", "name": "c1"}]},
        {},
        "column[1] is a constant",
    ),
    "a date format that is not ISO": (
        {
            "column": [
                {"index": 0, "type": "long"},
                {"index": 1, "type": "date", "format": "dd/MM/yyyy"},
            ]
        },
        {},
        "date format 'dd/MM/yyyy'",
    ),
    "a decimal column": (
        {"column": [{"index": 0, "type": "decimal(10,2)"}]},
        {},
        "type decimal",
    ),
    "a keyed write mode": ({}, {"mode": "replace", "writer": {"primaryKey": ["c0"]}}, "replace"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_what_duckdb_would_read_otherwise_stays_on_the_arrow_path(
    tmp_path: Path, case: str
) -> None:
    reader_extra, job_extra, why = REFUSED[case]
    (tmp_path / "a.csv").write_text("1,01/02/2024\n2,03/04/2024\n")
    _tables(tmp_path, "CREATE TABLE t (c0 VARCHAR, c1 VARCHAR)")
    reader = {"path": str(tmp_path / "a.csv"), **reader_extra}
    _arrow, direct = _both(tmp_path, reader, **job_extra)
    assert [p.path for p in direct.paths] == ["arrow"]
    assert why in (direct.paths[0].why or "")


def test_a_table_with_a_not_null_or_key_column_stays_on_the_arrow_path(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,a\n")
    _tables(tmp_path, "CREATE TABLE t (c0 VARCHAR NOT NULL, c1 VARCHAR)")
    _arrow, direct = _both(tmp_path, {"path": str(tmp_path / "a.csv")})
    assert [p.path for p in direct.paths] == ["arrow"]
    assert "NOT NULL" in (direct.paths[0].why or "")


def test_a_column_of_another_type_in_the_table_stays_on_the_arrow_path(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("007,a\n")
    _tables(tmp_path, "CREATE TABLE t (c0 INTEGER, c1 VARCHAR)")
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [{"index": 0, "type": "long"}, {"index": 1}],
    }
    _arrow, direct = _both(tmp_path, reader)
    assert [p.path for p in direct.paths] == ["arrow"]
    assert "INTEGER" in (direct.paths[0].why or "")


def test_a_large_file_is_read_whole_on_the_direct_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidesync.connectors.file import reader as file_reader

    monkeypatch.setattr(file_reader, "SPLIT_BYTES", 64)  # byte ranges of 64 bytes on the Arrow path
    (tmp_path / "a.csv").write_text("".join(f"{i},row {i}\n" for i in range(100)))
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [{"index": 0, "type": "long"}, {"index": 1}],
    }
    arrow, direct = _both(tmp_path, reader)
    assert len(arrow.splits) > 1 and len(direct.splits) == 1
    assert direct.records_written == 100


def test_a_file_name_duckdb_would_take_for_a_pattern_is_read_the_arrow_way(tmp_path: Path) -> None:
    (tmp_path / "a[1].csv").write_text("1,bracketed\n")
    (tmp_path / "a1.csv").write_text("2,what the pattern matches\n")
    reader = {
        "path": str(tmp_path / "a[1].csv"),
        "column": [{"index": 0, "type": "long"}, {"index": 1}],
    }
    _arrow, direct = _both(tmp_path, reader)
    assert direct.splits[0].path == "arrow"
    assert "pattern" in (direct.splits[0].fallback or "")
    assert _rows(tmp_path / "direct.duckdb")[1:] == [(1, "bracketed")]


@pytest.mark.parametrize(
    ("text", "params", "rows"),
    [  # DuckDB skips the empty lines of a file of one field (rows: '' and NULL) and reads
        # the header under empty lines as data; such files go the Arrow way
        ("a\n\n\\N\nb\n", {}, [("",), ("a",), ("b",), (None,)]),
        ("\n\nid,v\n1,a\n", {"skipHeader": True}, [("1", "a")]),
    ],
)
def test_files_whose_empty_lines_duckdb_reads_otherwise_go_the_arrow_way(
    tmp_path: Path, text: str, params: dict[str, Any], rows: list[tuple[Any, ...]]
) -> None:
    (tmp_path / "a.csv").write_text(text)
    arrow, direct = _both(tmp_path, {"path": str(tmp_path / "a.csv"), **params})
    assert direct.splits[0].path == "arrow" and direct.splits[0].fallback
    assert _rows(tmp_path / "direct.duckdb")[1:] == rows


@pytest.mark.parametrize(
    "text",
    [  # DuckDB's parser failed on these ("the state machine reached an invalid state"), which
        # aborted the run's transaction
        b"1,a\rb\n2,c\n",
        b'1,"a\rb"\r\n2,c\r\n',
        b"1,a\n2,b\r",
        b'1,"a\nb"\r\n2,c\r\n',
        b"\n1,a\r\n",
    ],
)
def test_a_file_with_line_ends_of_two_kinds_goes_the_arrow_way(tmp_path: Path, text: bytes) -> None:
    (tmp_path / "a.csv").write_bytes(text)
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [{"index": 0, "type": "long"}, {"index": 1}],
    }
    arrow, direct = _both(tmp_path, reader, record=5)
    assert direct.status == "succeeded"
    assert direct.splits[0].path == "arrow"
    assert "line ends of two kinds" in (direct.splits[0].fallback or "")
    assert _dirty(direct) == _dirty(arrow)


@pytest.mark.parametrize(
    ("text", "direct"),
    [
        (b"1,a\n2,b\n", True),
        (b"1,a\r\n2,b\r\n", True),
        (b"1,a\r2,b\r", True),
        (b'1,"a\r\nb"\r\n', True),
        (b"1,a\r\n2,b\n", False),
        (b"1,a\r2,b\n", False),
    ],
)
def test_files_of_one_kind_of_line_end_stay_direct(
    tmp_path: Path, text: bytes, direct: bool
) -> None:
    (tmp_path / "a.csv").write_bytes(text)
    assert (parser_trouble(_csv_file(tmp_path / "a.csv", header=False)) == "") is direct


def test_a_quote_inside_a_value_gives_the_arrow_paths_table(tmp_path: Path) -> None:
    # a quote inside an unquoted value is text to both; text after a closing quote is refused
    # by DuckDB, so that file is read again the Arrow way
    (tmp_path / "a.csv").write_text('1,a"b\n2,"a"b\n3,"c"\n')
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [{"index": 0, "type": "long"}, {"index": 1}],
    }
    arrow, direct = _both(tmp_path, reader)
    assert direct.records_written == arrow.records_written == 3
    assert "line 2" in (direct.splits[0].fallback or "")


def test_a_file_read_again_leaves_the_other_files_rows_alone(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("1,a\n2,b\n3,c\n")
    (tmp_path / "b.csv").write_text("4,d\nx,e\n6,f\n")
    (tmp_path / "c.csv").write_text("7,g\n")
    reader = {
        "path": str(tmp_path / "*.csv"),
        "column": [{"index": 0, "type": "long"}, {"index": 1}],
    }
    arrow, direct = _both(tmp_path, reader, record=1)
    assert direct.status == "succeeded"
    paths = {s.split.rsplit("/", 1)[-1]: (s.path, bool(s.fallback)) for s in direct.splits}
    assert paths == {
        "a.csv": (DIRECT, False),
        "b.csv": ("arrow", True),
        "c.csv": (DIRECT, False),
    }
    assert direct.records_written == arrow.records_written == 6
    assert _dirty(direct) == _dirty(arrow) and len(_dirty(direct)) == 1


def test_the_writers_column_list_maps_the_fields_on_the_direct_path(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("id,s\n1,a\n2,b\n")
    _tables(tmp_path, "CREATE TABLE t (label VARCHAR, n BIGINT, other VARCHAR)")
    reader = {
        "path": str(tmp_path / "a.csv"),
        "skipHeader": True,
        "column": [{"name": "s"}, {"name": "id", "type": "long"}],
    }
    _arrow, direct = _both(tmp_path, reader, writer={"column": ["label", "n"]})
    assert [p.path for p in direct.paths] == [DIRECT]
    assert _rows(tmp_path / "direct.duckdb")[1:] == [("a", 1, None), ("b", 2, None)]


# -- values DuckDB's parser reads and the Arrow path does not (or reads otherwise) ---------------

# the Arrow path (tidesync's own reader) is the spec: each value below is either dirty there or
# read differently by DuckDB's read_csv; on the direct path the file must be read the Arrow way
DIVERGENT: dict[str, tuple[str, str]] = {
    "long: a space before": ("long", " 5"),
    "long: a space after": ("long", "5 "),
    "long: a plus sign": ("long", "+5"),
    "long: an exponent": ("long", "1e3"),
    "long: a fraction of zero": ("long", "5.0"),
    "long: an underscore": ("long", "1_000"),
    "long: hexadecimal beyond 63 bits": ("long", "0xFFFFFFFFFFFFFFFF"),
    "double: a space before": ("double", " 2.5"),
    "double: an underscore": ("double", "1_000.5"),
    "boolean: t": ("boolean", "t"),
    "boolean: f": ("boolean", "f"),
    "boolean: yes": ("boolean", "yes"),
    "boolean: no": ("boolean", "no"),
    "boolean: y": ("boolean", "y"),
    "boolean: n": ("boolean", "n"),
    "boolean: a space before": ("boolean", " true"),
    "date: Z": ("date", "2024-01-02 03:04:05Z"),
    "date: an offset": ("date", "2024-01-02T03:04:05+01:00"),
    "date: a zone name": ("date", "2024-01-02 03:04:05 UTC"),
    "date: one-digit month and day": ("date", "2024-1-2"),
    "date: 24:00:00": ("date", "2024-01-02 24:00:00"),
    "date: second 60": ("date", "2024-01-02 23:59:60"),
    "date: seven fraction digits": ("date", "2024-01-02 03:04:05.1234567"),
    "date: infinity": ("date", "infinity"),
    "date: epoch": ("date", "epoch"),
    "date: year 0": ("date", "0000-01-01"),
    "date: only the hour": ("date", "2024-01-02 03"),
}

# the same, formatted as yyyy-MM-dd HH:mm:ss.SSS (ISO: Arrow's ISO parser first, then the pattern)
DIVERGENT_FORMATTED = {
    "formatted date: seven fraction digits": "2024-01-02 03:04:05.1234567",
    "formatted date: one-digit hour": "2024-01-02 3:04:05.5",
    "formatted date: Z": "2024-01-02 03:04:05.5Z",
}


def _same_job(folder: Path, reader: dict[str, Any]) -> Any:
    """The job on both paths: identical tables, identical dirty records."""
    arrow, direct = _both(folder, reader, record=10)
    assert arrow.status == direct.status == "succeeded", (arrow.error, direct.error)
    assert _dirty(direct) == _dirty(arrow)
    assert direct.records_written == arrow.records_written
    return direct


@pytest.mark.parametrize("case", list(DIVERGENT))
def test_a_value_duckdb_reads_otherwise_gives_the_arrow_paths_table(
    tmp_path: Path, case: str
) -> None:
    kind, value = DIVERGENT[case]
    good = {"long": "7", "double": "2.5", "boolean": "true", "date": "2024-01-02 03:04:05"}[kind]
    (tmp_path / "a.csv").write_text(f"1,x,{good}\n2,y,{value}\n3,z,{good}\n")
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [
            {"index": 0, "type": "long", "name": "id"},
            {"index": 1, "name": "s"},
            {"index": 2, "type": kind, "name": "v"},
        ],
    }
    direct = _same_job(tmp_path, reader)
    assert [p.path for p in direct.paths] == [DIRECT]
    assert direct.splits[0].path == "arrow" and direct.splits[0].fallback


@pytest.mark.parametrize("case", list(DIVERGENT_FORMATTED))
def test_a_formatted_date_duckdb_reads_otherwise_gives_the_arrow_paths_table(
    tmp_path: Path, case: str
) -> None:
    value = DIVERGENT_FORMATTED[case]
    (tmp_path / "a.csv").write_text(f"1,2024-01-02 03:04:05.5\n2,{value}\n")
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [
            {"index": 0, "type": "long", "name": "id"},
            {"index": 1, "type": "date", "name": "v", "format": "yyyy-MM-dd HH:mm:ss.SSS"},
        ],
    }
    direct = _same_job(tmp_path, reader)
    assert direct.splits[0].path == "arrow" and direct.splits[0].fallback


def test_a_date_format_without_seconds_stays_on_the_arrow_path(tmp_path: Path) -> None:
    # DuckDB's cast kept the time of 2024-01-02 10:00, which yyyy-MM-dd makes a dirty record
    (tmp_path / "a.csv").write_text("1,2024-01-02\n2,2024-01-02 10:00\n")
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [
            {"index": 0, "type": "long", "name": "id"},
            {"index": 1, "type": "date", "name": "v", "format": "yyyy-MM-dd"},
        ],
    }
    direct = _same_job(tmp_path, reader)
    assert [p.path for p in direct.paths] == ["arrow"]
    assert "date format 'yyyy-MM-dd'" in (direct.paths[0].why or "")
    assert [d[0] for d in _dirty(direct)] == [
        "column 1 (v): cannot convert '2024-01-02 10:00' to date"
    ]
    assert _rows(tmp_path / "direct.duckdb")[1:] == [(1, dt.datetime(2024, 1, 2))]


@pytest.mark.parametrize(
    ("line", "fallback"),
    [
        ('2, "a",x', True),  # a space before a quoted value: the quote is text to the Arrow path
        ('2,"a" ,x', True),  # a space after one
        ('2, "",x', True),  # an empty quoted value for DuckDB, ' ""' for the Arrow path
        ('2,"" ,x', True),
        ('2, ",x\n3,"b",x', True),  # a space before a quote that would open a value for DuckDB
        ('2,\t"a",x', False),  # a tab: text to both
        ('2,"say, ""hi"" "" ",x', False),  # doubled quotes inside a quoted value
    ],
)
def test_spaces_beside_a_quote_give_the_arrow_paths_table(
    tmp_path: Path, line: str, fallback: bool
) -> None:
    (tmp_path / "a.csv").write_text(f'1,"q",x\n{line}\n9,z,x\n')
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [{"index": 0, "type": "long", "name": "id"}, {"index": 1}, {"index": 2}],
    }
    direct = _same_job(tmp_path, reader)
    assert (direct.splits[0].path == "arrow") is fallback
    assert bool(direct.splits[0].fallback) is fallback


def test_values_both_parsers_read_alike_stay_on_the_direct_path(tmp_path: Path) -> None:
    # the edges of what the direct path checks: all of it loads there, no fallback
    rows = [
        "-9223372036854775808,-1.5e-3,TRUE,2024-02-29,a",
        '9223372036854775807,+.5,0,2024-02-29T23:59:59.999999," spaced "',
        '0,-Infinity,false,0001-01-01 00:00,"say ""hi"""',
        "-0,nan,1,9999-12-31 23:59:59.1,b c",
        '05,1E+3,False,2024-01-02 00:00:00,""',
    ]
    (tmp_path / "a.csv").write_text("\n".join(rows) + "\n")
    reader = {
        "path": str(tmp_path / "a.csv"),
        "column": [
            {"index": 0, "type": "long"},
            {"index": 1, "type": "double"},
            {"index": 2, "type": "boolean"},
            {"index": 3, "type": "date"},
            {"index": 4},
        ],
    }
    direct = _same_job(tmp_path, reader)
    assert direct.splits[0].path == DIRECT and not direct.splits[0].fallback
    assert direct.records_written == 5
