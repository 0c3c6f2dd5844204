"""Vectors in PostgreSQL: lists of floats written as ``real[]`` / ``double precision[]`` by the
binary COPY (a missing table gets ``real[]``) and read back as lists of floats, against the real
server (tests/integration/_servers_pg.py); and the issue's PostgreSQL -> embed -> LanceDB job. pgvector's ``vector`` type is not covered: the test
server has no pgvector (docs/connectors/postgresql.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from tests.connectors import _runs
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server, read_all  # noqa: F401
from tidesync.connectors.base import Context, Split
from tidesync.connectors.postgresql import Reader, Writer
from tidesync.errors import FatalError

pytestmark = pytest.mark.integration

RCTX = "job.content[0].reader.parameter"
WCTX = "job.content[0].writer.parameter"

VECS = [[0.5, -1.25, 3.0], None, [1e-3, 2.5e10, -0.0], [1.0, None, 2.0]]


def write(pg: PgDb, table: str, data: pa.Table, **params: Any) -> Writer:
    w = Writer(pg.writer_params(table, **params), Context(where=WCTX))
    w.prepare(data.schema)
    sink = w.open(Split(0, "all"))
    for b in data.to_batches():
        sink.write(b)
    w.commit([sink.close()])
    return w


def read(pg: PgDb, table: str) -> pa.Table:
    r = Reader(pg.reader_params(table=table, column=["*"]), Context(where=RCTX))
    return read_all(r)[1]


def column_type(pg: PgDb, table: str, column: str) -> str:
    [(t,)] = pg.rows(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = %s",
        (pg.q(table), column),
    )
    return str(t)


@pytest.mark.parametrize(
    "vec_type",
    [pa.list_(pa.float32()), pa.list_(pa.float32(), 3), pa.large_list(pa.float32())],
    ids=["list", "fixed_size_list", "large_list"],
)
def test_a_float_list_creates_real_array_and_reads_back_as_a_list(
    pg: PgDb, vec_type: pa.DataType
) -> None:
    vecs = VECS if not pa.types.is_fixed_size_list(vec_type) else [VECS[0], None, VECS[2], VECS[3]]
    data = pa.table({"id": pa.array([1, 2, 3, 4], pa.int64()), "v": pa.array(vecs, vec_type)})
    write(pg, "vec", data)
    assert column_type(pg, "vec", "v") == "real[]"
    got = read(pg, "vec").sort_by("id")
    assert got.schema.field("v").type == pa.list_(pa.float32())
    assert got.column("v").to_pylist() == pa.array(vecs, pa.list_(pa.float32())).to_pylist()


@pytest.mark.parametrize(
    ("sql_type", "elem"), [("real[]", pa.float32()), ("float8[]", pa.float64())]
)
def test_float_lists_go_into_existing_array_columns_by_binary_copy(
    pg: PgDb, sql_type: str, elem: pa.DataType
) -> None:
    pg.sql(f"CREATE TABLE {{s}}.vec (id bigint, v {sql_type})")
    data = pa.table({"id": [1, 2, 3, 4], "v": pa.array(VECS, pa.list_(pa.float64()))})
    w = Writer(pg.writer_params("vec"), Context(where=WCTX))
    w.prepare(data.schema)
    sink = w.open(Split(0, "all"))
    try:
        sink.write(data.to_batches()[0])
        # the direct plan: binary COPY into the table itself, no staging table
        plans = list(w.plans.values())
    except BaseException:
        w.abort([sink.discard()])
        raise
    w.commit([sink.close()])
    assert [(p.stage, p.casts is not None) for p in plans] == [("", True)]
    got = read(pg, "vec").sort_by("id")
    assert got.schema.field("v").type == pa.list_(elem)
    assert got.column("v").to_pylist() == pa.array(VECS, pa.list_(elem)).to_pylist()
    assert pg.rows("SELECT v::text FROM {s}.vec WHERE id = 1") == [("{0.5,-1.25,3}",)]


def test_merge_of_vectors_by_key(pg: PgDb) -> None:
    pg.sql("CREATE TABLE {s}.vec (id bigint PRIMARY KEY, v real[])")
    first = pa.table(
        {"id": [1, 2], "v": pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32(), 2))}
    )
    write(pg, "vec", first)
    change = pa.table(
        {"id": [2, 3], "v": pa.array([[5.0, 6.0], [7.0, 8.0]], pa.list_(pa.float32(), 2))}
    )
    write(pg, "vec", change, writeMode="update", primaryKey=["id"])
    assert pg.rows("SELECT id, v FROM {s}.vec ORDER BY id") == [
        (1, [1.0, 2.0]),
        (2, [5.0, 6.0]),
        (3, [7.0, 8.0]),
    ]


def test_a_multidimensional_array_fails_the_read_naming_the_column(pg: PgDb) -> None:
    pg.sql(
        "CREATE TABLE {s}.m (id int, grid real[])",
        "INSERT INTO {s}.m VALUES (1, '{1,2}'), (2, '{{1,2},{3,4}}')",
    )
    with pytest.raises(FatalError, match="column grid holds a multidimensional array"):
        read(pg, "m")


def test_a_postgresql_to_lancedb_job_finds_the_nearest_row(pg: PgDb, tmp_path: Path) -> None:
    """The issue's vector path with vectors made in PostgreSQL (``real[]``): ``tidesync run``
    copies them into LanceDB with a cosine index, and a search near row 123 finds row 123."""
    lancedb = pytest.importorskip("lancedb", reason="the lancedb extra is not installed")
    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    pg.sql("CREATE TABLE {s}.reviews (id bigint PRIMARY KEY, review text, review_vec real[])")
    with pg.con.cursor() as cur:
        cur.executemany(
            f"INSERT INTO {pg.q('reviews')} VALUES (%s, %s, %s)",
            [(i, f"review {i}", v.tolist()) for i, v in enumerate(vecs)],
        )
    job = {
        "job": {
            "setting": {"speed": {"channel": 2}},
            "content": [
                {
                    "reader": {
                        "name": "postgresqlreader",
                        "parameter": pg.reader_params(table="reviews", column=["*"], splitPk="id"),
                    },
                    "writer": {
                        "name": "lancedb",
                        "parameter": {
                            "path": "vectors",
                            "table": "reviews",
                            "writeMode": "merge",
                            "primaryKey": ["id"],
                            "index": {"column": "review_vec", "metric": "cosine"},
                        },
                    },
                }
            ],
        }
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    for _ in range(2):  # a rerun merges the same rows: the same table
        out = _runs.tidesync("run", path, "--report", tmp_path / "report.json", cwd=tmp_path)
        assert out.returncode == 0, out.stderr
    table = lancedb.connect(str(tmp_path / "vectors")).open_table("reviews")
    assert table.count_rows() == 300
    assert table.schema.field("review_vec").type == pa.list_(pa.float32(), 16)
    assert [i.index_type for i in table.list_indices()] == ["IvfPq"]
    query = vecs[123] + np.float32(0.02)
    # the index is approximate (IVF-PQ trained on random samples): every partition is probed and
    # the candidates rescored on the full vectors, so the nearest row is found every time
    search = table.search(query, vector_column_name="review_vec").distance_type("cosine")
    got = search.nprobes(1_000).refine_factor(100).limit(3).to_arrow()
    assert got.column("id").to_pylist()[0] == 123
    assert got.column("review").to_pylist()[0] == "review 123"


FILLERS = [
    "The delivery was on time and the box was intact.",
    "I ordered the blue one but the red one came.",
    "Customer service answered my email within a day.",
    "The colour is lovely and it matches my kitchen.",
    "Assembly instructions were missing two pages.",
    "Great value for the price, I would buy it again.",
]
BATTERY = "The battery died after only two hours of use."


def test_a_postgresql_embed_lancedb_job_finds_the_review_nearest_a_question(
    pg: PgDb, tmp_path: Path
) -> None:
    """The issue's end to end: reviews in PostgreSQL, ``embed`` (all-MiniLM-L6-v2) into
    ``review_vec``, written to LanceDB with a cosine index by ``tidesync run``; a search with the
    embedding of a question about battery life finds the one review about the battery."""
    lancedb = pytest.importorskip("lancedb", reason="the lancedb extra is not installed")
    from tidesync.transforms import encoder
    from tidesync.transforms.embed import Embed

    if encoder.missing_packages():
        pytest.skip(f"the 'embed' extra is not installed ({encoder.EXTRA_HINT})")
    pg.sql("CREATE TABLE {s}.reviews (id bigint PRIMARY KEY, review text)")
    rows = [(i, f"{FILLERS[i % len(FILLERS)]} (order {i})") for i in range(300)]
    rows[217] = (217, BATTERY)
    with pg.con.cursor() as cur:
        cur.executemany(f"INSERT INTO {pg.q('reviews')} VALUES (%s, %s)", rows)
    job = {
        "job": {
            "setting": {"speed": {"channel": 2}},
            "content": [
                {
                    "reader": {
                        "name": "postgresqlreader",
                        "parameter": pg.reader_params(table="reviews", column=["*"], splitPk="id"),
                    },
                    "transformer": [
                        {"name": "embed", "parameter": {"column": "review", "as": "review_vec"}}
                    ],
                    "writer": {
                        "name": "lancedb",
                        "parameter": {
                            "path": "vectors",
                            "table": "reviews",
                            "index": {"column": "review_vec", "metric": "cosine"},
                        },
                    },
                }
            ],
        }
    }
    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    out = _runs.tidesync("run", path, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    table = lancedb.connect(str(tmp_path / "vectors")).open_table("reviews")
    assert table.count_rows() == 300
    assert table.schema.field("review_vec").type == pa.list_(pa.float32(), 384)
    question = pa.record_batch({"review": ["How long does the battery last?"]})
    embed = Embed({"column": "review", "as": "review_vec"}, Context(where="query"))
    [query] = embed.apply(question).column("review_vec").to_pylist()
    hits = table.search(query, vector_column_name="review_vec").distance_type("cosine")
    hits = hits.nprobes(1_000).refine_factor(100).limit(3)  # exact: see the test above
    assert hits.to_arrow().column("id").to_pylist()[0] == 217
