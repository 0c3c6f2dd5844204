"""Parameter values as users write them, through ``tidesync run``: a value that does not mean
exactly one thing (``maxFileSize: 1.5``) is an error naming its key path and value, exit 2, and
the target is left as it was; never a run that succeeds with a value the user did not write."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tidesync.cli import main

WRITER = "job.content[0].writer.parameter"

CSV_READER = {
    "name": "txtfilereader",
    "parameter": {
        "path": ["in.csv"],
        "fileFormat": "csv",
        "skipHeader": True,
        "column": [{"index": 0, "type": "long"}, {"index": 1, "type": "string"}],
    },
}


def run_job(tmp_path: Path, reader: dict[str, Any], writer: dict[str, Any]) -> tuple[int, str]:
    """``tidesync run JOB`` in this process: exit code and stderr."""
    job = tmp_path / "job.json"
    content = {"reader": reader, "writer": writer}
    job.write_text(json.dumps({"job": {"setting": {}, "content": [content]}}))
    r = CliRunner().invoke(main, ["run", str(job)])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stderr


def file_target(tmp_path: Path) -> Path:
    """A csv source of three rows and a target folder holding one earlier file."""
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,b\n3,c\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / "d.csv").write_text("earlier\n")
    return out


@pytest.mark.parametrize("size", [1.5, "1.5", "0.1KB", "1.5b"])
def test_a_max_file_size_of_part_of_a_byte_is_an_error(tmp_path: Path, size: Any) -> None:
    out = file_target(tmp_path)
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    writer["parameter"]["maxFileSize"] = size  # type: ignore[index]
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 2
    assert (
        f"{WRITER}.maxFileSize: must be a positive size such as 1048576 or '64MB' (a whole" in err
    )
    assert repr(size) in err
    assert sorted(p.name for p in out.iterdir()) == ["d.csv"]
    assert (out / "d.csv").read_text() == "earlier\n"


@pytest.mark.parametrize(
    ("size", "parts"), [("1.5KB", 1), ("10 MiB", 1), ("1e6", 1), (2.0, 3), ("64mb", 1)]
)
def test_a_max_file_size_of_whole_bytes_is_read_as_written(
    tmp_path: Path, size: Any, parts: int
) -> None:
    out = file_target(tmp_path)
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    writer["parameter"]["maxFileSize"] = size  # type: ignore[index]
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 0, err
    files = sorted(out.iterdir())
    assert len(files) == parts
    assert "".join(f.read_text() for f in files).split() == ["1,a", "2,b", "3,c"]


@pytest.mark.parametrize(("name", "shown"), [(2024.10, "2024.1"), (1e3, "1000.0")])
def test_a_fractional_number_for_a_string_key_is_an_error(
    tmp_path: Path, name: float, shown: str
) -> None:
    # 2024.10 was written as files named 2024.1: the text the user wrote is lost in the number
    out = file_target(tmp_path)
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": name, "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 2
    assert f"{WRITER}.fileName: must be a string, got the number {shown}; write it in quotes" in err
    assert sorted(p.name for p in out.iterdir()) == ["d.csv"]


def test_a_whole_number_for_a_string_key_is_its_digits(tmp_path: Path) -> None:
    out = file_target(tmp_path)
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": 2024, "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 0, err
    assert (out / "2024").read_text().split() == ["1,a", "2,b", "3,c"]


@pytest.mark.parametrize(("key", "value"), [("retention", -5), ("waitTimeout", -0.5)])
def test_a_negative_capture_duration_is_an_error(tmp_path: Path, key: str, value: float) -> None:
    # '-1h' was refused but -5 was taken: a negative retention dropped every window but the last
    out = file_target(tmp_path)
    reader = {
        "name": "postgresqlcdc",
        "parameter": {
            "username": "postgres",
            "jdbcUrl": "jdbc:postgresql://127.0.0.1:5432/test",
            "table": "t",
            key: value,
        },
    }
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 2
    assert (
        f"job.content[0].reader.parameter.{key}: must be a duration such as 600, '10m', '24h', "
        f"got {value}" in err
    )
    assert (out / "d.csv").read_text() == "earlier\n"


def _sql_reader(kind: str, connection: list[dict[str, Any]]) -> dict[str, Any]:
    user = "postgres" if kind == "postgresql" else "root"
    return {"name": f"{kind}reader", "parameter": {"username": user, "connection": connection}}


PG_URL = "jdbc:postgresql://127.0.0.1:5432/test"
MY_URL = "jdbc:mysql://127.0.0.1:3306/test"


@pytest.mark.parametrize(("kind", "url"), [("postgresql", PG_URL), ("mysql", MY_URL)])
@pytest.mark.parametrize(
    ("shape", "second"),
    [
        ("one entry", "connection[0].table[1]"),
        ("two entries", "connection[1].table[0]"),
    ],
)
def test_a_table_listed_twice_for_one_database_is_an_error(
    tmp_path: Path, kind: str, url: str, shape: str, second: str
) -> None:
    # ["orders", "orders"] read the table twice: every row was written twice, and the run succeeded
    out = file_target(tmp_path)
    if shape == "one entry":
        connection = [{"jdbcUrl": [url], "table": ["orders", "orders"]}]
    else:
        connection = [{"jdbcUrl": [url], "table": ["orders"]}] * 2
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, _sql_reader(kind, connection), writer)
    assert code == 2
    reader = "job.content[0].reader.parameter"
    first = f"{reader}.connection[0].table[0]"
    assert (
        f"{reader}.{second}: 'orders' is also {first}, on the same database: its rows would be "
        "read twice; list it once" in err
    )
    assert (out / "d.csv").read_text() == "earlier\n"


@pytest.mark.parametrize(("kind", "url"), [("postgresql", PG_URL), ("mysql", MY_URL)])
def test_one_table_name_on_two_databases_is_not_refused(
    tmp_path: Path, kind: str, url: str
) -> None:
    other = url.rsplit("/", 1)[0] + "/other"
    connection = [
        {"jdbcUrl": [url], "table": ["orders"]},
        {"jdbcUrl": [other], "table": ["orders"]},
    ]
    reader = _sql_reader(kind, connection)
    job = tmp_path / "job.json"
    writer = {"name": "streamwriter", "parameter": {"print": False}}
    job.write_text(json.dumps({"job": {"content": [{"reader": reader, "writer": writer}]}}))
    r = CliRunner().invoke(main, ["validate", str(job)])
    assert "twice" not in r.stderr


def test_a_key_and_its_alias_with_different_values_are_an_error(tmp_path: Path) -> None:
    # primaryKey [id] beside pk [name]: the merge used [id] and said nothing of [name]
    (tmp_path / "in.csv").write_text("id,name\n1,a\n2,a\n")
    reader = {
        "name": "txtfilereader",
        "parameter": {
            "path": ["in.csv"],
            "fileFormat": "csv",
            "skipHeader": True,
            "column": [
                {"index": 0, "name": "id", "type": "long"},
                {"index": 1, "name": "name", "type": "string"},
            ],
        },
    }
    writer = {
        "name": "lakewriter",
        "parameter": {
            "table": "t",
            "format": "hive",
            "writeMode": "merge",
            "primaryKey": ["id"],
            "pk": ["name"],
        },
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 2
    assert (
        f"{WRITER}.pk: ['name'] differs from primaryKey (['id']), another name of the same key; "
        "keep one" in err
    )
    assert not (tmp_path / "t").exists()


def test_a_key_and_its_alias_with_one_value_are_read(tmp_path: Path) -> None:
    out = file_target(tmp_path)
    reader = _sql_reader("mysql", [{"jdbcUrl": [MY_URL], "querySql": ["select 1 as id"]}])
    reader["parameter"]["user"] = "root"
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 0, err
    assert (out / "d.csv").read_text() == "1\n"


@pytest.mark.parametrize(("kind", "url"), [("postgresql", PG_URL), ("mysql", MY_URL)])
def test_a_top_level_table_no_connection_entry_reads_is_an_error(
    tmp_path: Path, kind: str, url: str
) -> None:
    # table: [orders] beside connection[0].table: [customers] read customers only, silently
    out = file_target(tmp_path)
    reader = _sql_reader(kind, [{"jdbcUrl": [url], "table": ["customers"]}])
    reader["parameter"]["table"] = ["orders"]
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 2
    assert (
        "job.content[0].reader.parameter.table: is read by no connection entry: each gives its "
        "own table, which is what is read; remove table here, or from the entries" in err
    )
    assert (out / "d.csv").read_text() == "earlier\n"


@pytest.mark.parametrize(("kind", "url"), [("postgresql", PG_URL), ("mysql", MY_URL)])
def test_a_top_level_query_serves_the_entries_without_their_own(
    tmp_path: Path, kind: str, url: str
) -> None:
    out = file_target(tmp_path)
    reader = _sql_reader(kind, [{"jdbcUrl": [url]}])
    reader["parameter"]["querySql"] = ["select 7 as id"]
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 0, err
    assert (out / "d.csv").read_text() == "7\n"


def _run_sql(kind: str, sql: str) -> list[tuple[Any, ...]]:
    if kind == "postgresql":
        import psycopg

        with psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres") as c:
            cur = c.execute(sql)
            return cur.fetchall() if cur.description else []
    import pymysql

    c = pymysql.connect(host="127.0.0.1", port=3306, user="root", database="test", autocommit=True)
    try:
        with c.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        c.close()


@pytest.mark.parametrize(("kind", "url"), [("postgresql", PG_URL), ("mysql", MY_URL)])
def test_a_top_level_table_beside_another_connection_table_is_an_error(
    tmp_path: Path, kind: str, url: str
) -> None:
    # PostgreSQL wrote the rows into connection[0].table, never a word of the top-level table
    for t in ("tp_top", "tp_conn"):
        _run_sql(kind, f"DROP TABLE IF EXISTS {t}")
        _run_sql(kind, f"CREATE TABLE {t} (id BIGINT, name VARCHAR(10))")
        _run_sql(kind, f"INSERT INTO {t} VALUES (100, 'keep')")
    (tmp_path / "in.csv").write_text("id,name\n1,a\n")
    user = "postgres" if kind == "postgresql" else "root"
    writer = {
        "name": f"{kind}writer",
        "parameter": {
            "username": user,
            "connection": [{"jdbcUrl": url, "table": ["tp_conn"]}],
            "table": ["tp_top"],
            "column": ["id", "name"],
        },
    }
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 2
    assert (
        f"{WRITER}.table: ['tp_top'] differs from connection[0].table (['tp_conn']); a writer "
        "writes one table: keep one" in err
    )
    for t in ("tp_top", "tp_conn"):
        assert _run_sql(kind, f"SELECT id, name FROM {t}") == [(100, "keep")]


@pytest.mark.parametrize(
    "top",
    [
        {"jdbcUrl": PG_URL, "table": ["orders"]},
        {"url": "postgresql://127.0.0.1:5432/test", "table": ["orders"]},
    ],
)
def test_a_postgresql_connection_beside_a_top_level_url_is_an_error(
    tmp_path: Path, top: dict[str, Any]
) -> None:
    # the top-level url and table were read, and the connection list dropped without a word
    out = file_target(tmp_path)
    reader = _sql_reader("postgresql", [{"jdbcUrl": [PG_URL], "table": ["customers"]}])
    reader["parameter"].update(top)
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 2
    key = next(iter(top))
    assert (
        f"job.content[0].reader.parameter.connection: is given beside {key}, and would not be "
        "read; keep one of them" in err
    )
    assert (out / "d.csv").read_text() == "earlier\n"


def test_a_write_mode_with_spaces_around_it_is_read_as_datax_reads_it(tmp_path: Path) -> None:
    out = file_target(tmp_path)
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": " append "},
    }
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 0, err
    assert (out / "d.csv").read_text() == "earlier\n"
    assert [p.read_text() for p in out.iterdir() if p.name != "d.csv"] == ["1,a\n2,b\n3,c\n"]


def test_a_connection_entry_naming_two_databases_is_an_error(tmp_path: Path) -> None:
    # jdbcUrl (test) beside url (another database): the rows went to jdbcUrl's, url unread
    _run_sql("mysql", "DROP TABLE IF EXISTS tp_conn")
    _run_sql("mysql", "CREATE TABLE tp_conn (id BIGINT, name VARCHAR(10))")
    _run_sql("mysql", "INSERT INTO tp_conn VALUES (100, 'keep')")
    (tmp_path / "in.csv").write_text("id,name\n1,a\n")
    conn = {"jdbcUrl": MY_URL, "url": "mysql://127.0.0.1:3306/mysql", "table": ["tp_conn"]}
    writer = {
        "name": "mysqlwriter",
        "parameter": {"username": "root", "connection": [conn], "column": ["id", "name"]},
    }
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 2
    assert (
        f"{WRITER}.connection[0].url: is given beside connection[0].jdbcUrl, another way to name "
        "the database; keep one" in err
    )
    assert _run_sql("mysql", "SELECT id, name FROM tp_conn") == [(100, "keep")]


def test_a_writer_connection_entry_with_a_query_is_an_error(tmp_path: Path) -> None:
    # a writer reads no querySql: it was taken as a known key and dropped
    _run_sql("mysql", "DROP TABLE IF EXISTS tp_conn")
    _run_sql("mysql", "CREATE TABLE tp_conn (id BIGINT, name VARCHAR(10))")
    (tmp_path / "in.csv").write_text("id,name\n1,a\n")
    conn = {"jdbcUrl": MY_URL, "table": ["tp_conn"], "querySql": ["select 1"]}
    writer = {"name": "mysqlwriter", "parameter": {"username": "root", "connection": [conn]}}
    code, err = run_job(tmp_path, CSV_READER, writer)
    assert code == 2
    assert f"{WRITER}.connection[0].querySql: unknown key" in err
    assert _run_sql("mysql", "SELECT id FROM tp_conn") == []


def test_a_stream_column_value_true_is_the_text_true(tmp_path: Path) -> None:
    # {"type": "string", "value": true} generated 'True' (Python's spelling), not DataX's 'true'
    reader = {
        "name": "streamreader",
        "parameter": {
            "column": [{"type": "string", "value": True}, {"type": "string", "value": False}],
            "sliceRecordCount": 1,
        },
    }
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 0, err
    assert (tmp_path / "out" / "d.csv").read_text() == "true,false\n"


def test_seconds_in_a_millisecond_window_key_are_an_error(tmp_path: Path) -> None:
    # 1700000000 (seconds) read as ms is a window in January 1970: the run read nothing and
    # succeeded, and created the capture
    out = file_target(tmp_path)
    reader = {
        "name": "postgresqlcdc",
        "parameter": {
            "username": "postgres",
            "jdbcUrl": PG_URL,
            "table": "t",
            "startTimestampMillis": 1700000000,
            "endTimestampMillis": "1700000300",
        },
    }
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    code, err = run_job(tmp_path, reader, writer)
    assert code == 2
    assert (
        "job.content[0].reader.parameter.startTimestampMillis: 1700000000 is 1970-01-20 "
        "16:13:20.000 UTC as milliseconds, before any capture; it looks like seconds: give "
        "milliseconds (1700000000000), or the time as startTime" in err
    )
    assert "endTimestampMillis: 1700000300 is 1970-01-20 16:13:20.300 UTC" in err
    assert (out / "d.csv").read_text() == "earlier\n"


def _run_text(tmp_path: Path, name: str, text: str) -> tuple[int, str]:
    job = tmp_path / name
    job.write_text(text)
    r = CliRunner().invoke(main, ["run", str(job)])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stderr


def test_a_key_given_twice_in_a_json_object_is_an_error(tmp_path: Path) -> None:
    # the parser kept the last: "append" above a later "truncate" removed the earlier files
    out = file_target(tmp_path)
    text = json.dumps({"job": {"content": [{"reader": CSV_READER, "writer": "W"}]}}).replace(
        '"W"',
        '{"name": "txtfilewriter", "parameter": {"path": "out", "fileName": "d.csv", '
        '"writeMode": "append", "writeMode": "truncate"}}',
    )
    code, err = _run_text(tmp_path, "job.json", text)
    assert code == 2
    assert (
        f"{WRITER}.writeMode: is given 2 times in one object ('append', then 'truncate'); the "
        "last would be used without a word: keep one" in err
    )
    assert sorted(p.name for p in out.iterdir()) == ["d.csv"]
    assert (out / "d.csv").read_text() == "earlier\n"


YAML_JOB = """\
writer: &w
  name: txtfilewriter
  parameter: {path: out, fileName: d.csv, writeMode: truncate}
job:
  content:
    - reader:
        name: txtfilereader
        parameter:
          path: [in.csv]
          skipHeader: true
          column: [{index: 0, type: long}, {index: 1, type: string}]
      writer:
        WRITER
"""


def test_a_key_given_twice_in_a_yaml_mapping_is_an_error(tmp_path: Path) -> None:
    out = file_target(tmp_path)
    writer = "name: txtfilewriter\n        parameter: {path: out, fileName: d.csv, writeMode: append, writeMode: truncate}"
    code, err = _run_text(tmp_path, "job.yaml", YAML_JOB.replace("WRITER", writer))
    assert code == 2
    assert f"{WRITER}.writeMode: is given 2 times in one object ('append', then 'truncate')" in err
    assert (out / "d.csv").read_text() == "earlier\n"


def test_a_yaml_merge_key_may_be_overridden(tmp_path: Path) -> None:
    out = file_target(tmp_path)
    writer = (
        "name: txtfilewriter\n        parameter:\n"
        "          <<: {path: out, fileName: d.csv, writeMode: truncate}\n"
        "          writeMode: append"
    )
    text = YAML_JOB.replace("WRITER", writer).replace("writer: &w", "x: &w", 1)
    text = text.split("job:", 1)[1]
    code, err = _run_text(tmp_path, "job.yaml", "job:" + text)
    assert code == 0, err
    assert (out / "d.csv").read_text() == "earlier\n"
    assert len(list(out.iterdir())) == 2


@pytest.mark.parametrize(
    ("kind", "source", "message"),
    [
        (
            "postgresql",
            "{kind: postgresql, host: 127.0.0.1, prot: 5433, database: test, user: postgres}",
            "connections.db.prot: unknown key; did you mean 'port'?",
        ),
        (
            "postgresql",
            "{kind: postgresql, url: 'postgresql://postgres@127.0.0.1:5432/test', database: dw}",
            "connections.db.database: is given beside url, which names the database; keep one",
        ),
        (
            "mysql",
            "{kind: mysql, url: 'mysql://127.0.0.1:3306/test', usernme: etl}",
            "connections.db.usernme: unknown key; did you mean 'username'?",
        ),
    ],
)
def test_a_database_data_source_with_a_key_not_read_is_an_error(
    tmp_path: Path, kind: str, source: str, message: str
) -> None:
    # prot: 5433 connected to the server on the default port 5432, and read its table
    out = file_target(tmp_path)
    (tmp_path / "conns.yaml").write_text(f"connections:\n  db: {source}\n")
    reader = {"name": f"{kind}reader", "parameter": {"datasource": "db", "table": ["orders"]}}
    writer = {
        "name": "txtfilewriter",
        "parameter": {"path": "out", "fileName": "d.csv", "writeMode": "truncate"},
    }
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"job": {"content": [{"reader": reader, "writer": writer}]}}))
    r = CliRunner().invoke(main, ["run", "--connections", str(tmp_path / "conns.yaml"), str(job)])
    assert r.exit_code == 2
    assert message in r.stderr
    assert (out / "d.csv").read_text() == "earlier\n"
