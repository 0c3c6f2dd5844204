"""The Ray executor: the same jobs give the same targets as the local executor, on a local Ray
of two nodes (tests/engine/_ray.py, started once per session); job-wide limits across workers;
a worker killed mid-job; connectors that cannot run remotely refused at validate time."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from tests.engine._ray import ray_cluster  # noqa: F401 - the session's Ray
from tests.integration._servers_mysql import MyDb, mysql_db, mysql_server  # noqa: F401
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401
from tidesync.cli import main
from tidesync.engine.runner import Report, load_job, run_job
from tidesync.errors import ConfigError
from tidesync.spec.params import RunTime

RT = RunTime.of("20250101000000")
COLUMNS = [{"index": 0, "type": "long"}, {"index": 1, "type": "string"}]

needs_ray = pytest.mark.usefixtures("ray_cluster")


def job_file(folder: Path, reader: dict[str, Any], writer: dict[str, Any], **setting: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "job.json"
    doc = {"job": {"setting": setting, "content": [{"reader": reader, "writer": writer}]}}
    path.write_text(json.dumps(doc))
    return path


def csv_files(folder: Path, files: int = 4, rows: int = 5_000, bad: bool = True) -> None:
    """``files`` CSV files of ``rows`` rows (one split each), each with one bad id when ``bad``."""
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(files):
        lines = [f"{k * rows + i},name {i}" for i in range(rows)] + ([f"bad{k},x"] if bad else [])
        (folder / f"part{k}.csv").write_text("\n".join(lines) + "\n")


def csv_reader(glob: str) -> dict[str, Any]:
    return {"name": "txtfilereader", "parameter": {"path": [glob], "column": COLUMNS}}


def stream_reader(rows: int) -> dict[str, Any]:
    """Generated rows (ids 0..rows-1), in batches of the context's ``batch_rows``."""
    column = [{"type": "long", "incr": "0"}, {"type": "string", "value": "x"}]
    return {"name": "streamreader", "parameter": {"column": column, "recordCount": rows}}


def slow_job(folder: Path, out: str, rate: int | None, executor: str) -> Any:
    """40,000 generated rows in 4 splits of 1,000-row batches, at ``rate`` records/s."""
    speed = {"concurrent": 4, **({"record": rate} if rate else {})}
    job = load_job(
        job_file(folder, stream_reader(40_000), parquet_writer(out), speed=speed),
        runtime=RT,
        executor=executor,
    )
    job.parts[0].reader.ctx.batch_rows = 1_000
    return job


def parquet_writer(path: str) -> dict[str, Any]:
    return {
        "name": "txtfilewriter",
        "parameter": {"path": path, "fileName": "rows.parquet", "fileFormat": "parquet"},
    }


def run(path: Path, executor: str, **kw: Any) -> Report:
    rep = run_job(load_job(path, runtime=RT, executor=executor), **kw)
    assert rep.executor == executor
    return rep


def parquet_rows(folder: Path) -> list[dict[str, Any]]:
    files = sorted(p for p in folder.iterdir() if p.suffix == ".parquet")
    assert files, f"no output in {folder}"
    return sorted(pa.concat_tables([pq.read_table(p) for p in files]).to_pylist(), key=str)


def dirty_rows(rep_path: Path) -> list[tuple[str, str]]:
    lines = rep_path.with_name(rep_path.stem + ".dirty.jsonl").read_text().splitlines()
    return sorted((d["split"], d["reason"]) for d in map(json.loads, lines))


def nodes(rep: Report) -> set[str]:
    assert all(s.worker for s in rep.splits)
    return {s.worker["node"] for s in rep.splits if s.worker}


# -- without a cluster ---------------------------------------------------------------------------


def test_the_ray_executor_without_its_extra_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_files(tmp_path / "in")
    path = job_file(tmp_path, csv_reader("in/*.csv"), parquet_writer("out"), executor="ray")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    with pytest.raises(ConfigError) as e:
        load_job(path, runtime=RT)
    assert e.value.problems == [
        "job.setting.executor: the ray executor needs the 'ray' extra, which is not installed: "
        "pip install 'tidesync[ray]'"
    ]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("store", ["sqlite", "duckdb"])
def test_an_embedded_database_on_the_drivers_disk_is_refused_at_validate_time(
    tmp_path: Path, store: str
) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'tidesync[ray]')")
    db = tmp_path / f"src.{store}"
    if store == "sqlite":
        sqlite3.connect(db).executescript("CREATE TABLE t (id INTEGER); INSERT INTO t VALUES (1);")
    else:
        import duckdb

        duckdb.connect(str(db)).execute("CREATE TABLE t AS SELECT 1 AS id").close()
    reader = {"name": f"{store}reader", "parameter": {"database": str(db), "table": "t"}}
    path = job_file(tmp_path, reader, parquet_writer("out"))
    assert run(path, "local").status == "succeeded"  # the job is fine where it is
    out = CliRunner().invoke(main, ["validate", str(path), "--executor", "ray"])
    assert out.exit_code == 2, out.output
    assert out.output.strip() == (
        f"error: job.content[0].reader: {store}reader cannot be read by Ray workers (executor "
        f"ray, from --executor): it reads the embedded database file {db} on this machine's "
        "disk; run this job with executor local"
    )


def test_a_secret_written_in_clear_is_refused_on_ray(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'tidesync[ray]')")
    csv_files(tmp_path / "in")
    path = job_file(tmp_path, csv_reader("in/*.csv"), parquet_writer("out"), executor="ray")
    conns = {
        "dw": {"kind": "postgresql", "url": "postgresql://etl:hunter2@db/dw"},
        "ok": {"kind": "postgresql", "url": "postgresql://etl@db/dw", "password": "${env:PW}"},
        "lake": {"kind": "s3", "accessKeyId": "AK", "accessKeySecret": "s3cr3t"},
    }
    with pytest.raises(ConfigError) as e:
        load_job(path, runtime=RT, connections=conns)
    hint = (
        "holds a secret written in clear, which would travel to the Ray workers with the task; "
        "give it as ${env:NAME}, set on every worker (or in the Ray job's runtime_env env_vars)"
    )
    assert e.value.problems == [
        f"connections.dw.url {hint}",
        f"connections.lake.accessKeySecret {hint}",
    ]
    assert "hunter2" not in str(e.value) and "s3cr3t" not in str(e.value)
    load_job(path, runtime=RT, connections=conns, executor="local")  # locally nothing travels


def test_ray_address_for_a_local_job_is_a_usage_error(tmp_path: Path) -> None:
    csv_files(tmp_path / "in")
    path = job_file(tmp_path, csv_reader("in/*.csv"), parquet_writer("out"))
    out = CliRunner().invoke(main, ["run", str(path), "--ray-address", "127.0.0.1:1"])
    assert out.exit_code == 2
    assert "--ray-address: the job runs on executor 'local'; add --executor ray" in out.output
    assert not (tmp_path / "out").exists()


# -- on the session's Ray --------------------------------------------------------------------------


@needs_ray
def test_file_to_parquet_on_ray_equals_local(tmp_path: Path) -> None:
    csv_files(tmp_path / "in")
    reps = {}
    for name in ("local", "ray"):
        path = job_file(
            tmp_path,
            csv_reader("in/*.csv"),
            parquet_writer(name),
            speed={"concurrent": 4},
            errorLimit={"record": 4},
        )
        reps[name] = run(path, name, report_path=tmp_path / f"{name}.json")
        assert reps[name].status == "succeeded", reps[name].error
    local, ray = reps["local"], reps["ray"]
    assert parquet_rows(tmp_path / "ray") == parquet_rows(tmp_path / "local")
    assert len(parquet_rows(tmp_path / "ray")) == 20_000
    assert sorted(p.name for p in (tmp_path / "ray").iterdir()) == sorted(
        p.name for p in (tmp_path / "local").iterdir()
    )
    assert (ray.records_read, ray.records_written, ray.dirty_records) == (20_004, 20_000, 4)
    assert (local.records_read, local.records_written, local.dirty_records) == (20_004, 20_000, 4)
    assert dirty_rows(tmp_path / "ray.json") == dirty_rows(tmp_path / "local.json")
    assert [s.records_written for s in ray.splits] == [5_000] * 4
    assert len(nodes(ray)) >= 1  # quick splits may all land on one node: see the rate test
    assert all(s.worker and s.worker["pid"] != os.getpid() for s in ray.splits)
    saved = json.loads((tmp_path / "ray.json").read_text())
    assert saved["executor"] == "ray" and saved["splits"][0]["worker"]["attempt"] == 1


@needs_ray
def test_a_writer_whose_sinks_stay_on_the_driver_gets_its_batches_back(tmp_path: Path) -> None:
    csv_files(tmp_path / "in")
    for name in ("local", "ray"):
        writer = {
            "name": "sqlitewriter",
            "parameter": {"database": f"{name}.db", "table": "t", "writeMode": "insert"},
        }
        path = job_file(
            tmp_path,
            csv_reader("in/*.csv"),
            writer,
            speed={"concurrent": 4},
            errorLimit={"record": 4},
        )
        rep = run(path, name, report_path=tmp_path / f"{name}.json")
        assert rep.status == "succeeded", rep.error
        assert rep.records_written == 20_000 and rep.dirty_records == 4
    got = {
        name: sqlite3.connect(tmp_path / f"{name}.db").execute("SELECT * FROM t").fetchall()
        for name in ("local", "ray")
    }
    assert sorted(got["ray"]) == sorted(got["local"]) and len(got["ray"]) == 20_000
    assert dirty_rows(tmp_path / "ray.json") == dirty_rows(tmp_path / "local.json")


@needs_ray
def test_a_job_over_its_error_limit_stops_every_worker_and_publishes_nothing(
    tmp_path: Path,
) -> None:
    # one bad row per split: no split alone is over the limit of 2; the job is
    csv_files(tmp_path / "in", files=4)
    path = job_file(
        tmp_path,
        csv_reader("in/*.csv"),
        parquet_writer("out"),
        speed={"concurrent": 4},
        errorLimit={"record": 2},
    )
    rep = run(path, "ray")
    assert rep.status == "failed" and rep.error_class == "ErrorLimitExceeded", rep.error
    assert rep.error is not None and "more than 2 dirty record(s)" in rep.error
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@needs_ray
def test_the_rate_limit_holds_for_the_whole_job_across_workers(tmp_path: Path) -> None:
    limit, total = 15_000, 40_000  # each split alone is within one second's burst
    rep = run_job(slow_job(tmp_path, "out", limit, "ray"))
    assert rep.status == "succeeded" and rep.records_written == total, rep.error
    # four splits running at once need both nodes' two CPUs: the second node took part
    assert len(nodes(rep)) == 2
    # the first second's worth passes at once (the bucket's burst), the rest at the limit
    assert (total - limit) / rep.elapsed_s <= 1.1 * limit, rep.elapsed_s


@needs_ray
def test_a_worker_killed_mid_job_has_its_split_run_again_and_counted_once(
    tmp_path: Path,
) -> None:
    killed: list[int] = []

    def kill_one(rep: Report) -> None:
        if killed:
            return
        for s in rep.splits:
            if s.status == "running" and s.records_read > 0 and s.worker and "node" in s.worker:
                killed.append(s.worker["pid"])
                os.kill(s.worker["pid"], signal.SIGKILL)
                return

    reps = {}
    for name in ("local", "ray"):
        # on Ray, slow enough (over 4 s) for the kill to come while the splits run
        job = slow_job(tmp_path, name, 8_000 if name == "ray" else None, name)
        reps[name] = run_job(
            job,
            report_path=tmp_path / f"{name}.json",
            progress=kill_one if name == "ray" else None,
            progress_every=0.2,
        )
        assert reps[name].status == "succeeded", reps[name].error
    assert len(killed) == 1
    ray = reps["ray"]
    again = [s for s in ray.splits if s.worker and s.worker["attempt"] == 2]
    assert len(again) == 1 and again[0].worker and again[0].worker["pid"] != killed[0]
    assert (ray.records_read, ray.records_written) == (40_000, 40_000)
    assert parquet_rows(tmp_path / "ray") == parquet_rows(tmp_path / "local")
    assert sorted(r["c0"] for r in parquet_rows(tmp_path / "ray")) == list(range(40_000))
    assert [p.name for p in (tmp_path / "ray").iterdir() if p.name.startswith(".")] == []


# -- stores ---------------------------------------------------------------------------------------


@needs_ray
def test_postgresql_to_lake_on_ray_equals_local(pg: PgDb, tmp_path: Path) -> None:
    from tidesync.connectors import base
    from tidesync.connectors.lake import Reader as LakeReader

    pg.sql(
        "CREATE TABLE {s}.t (id int, name text, amount numeric(12,2))",
        "INSERT INTO {s}.t SELECT g, 'n' || g, g / 100.0 FROM generate_series(1, 6000) g",
    )
    got = {}
    for name in ("local", "ray"):
        path = job_file(
            tmp_path / name,
            {"name": "postgresqlreader", "parameter": pg.reader_params(table="t", splitPk="id")},
            {"name": "lakewriter", "parameter": {"format": "iceberg", "table": "ods.t"}},
            speed={"concurrent": 3},
        )
        rep = run(path, name)
        assert rep.status == "succeeded" and rep.records_written == 6000, rep.error
        if name == "ray":
            assert len(rep.splits) >= 3 and nodes(rep)
        r = LakeReader(
            {"format": "iceberg", "table": "ods.t"},
            base.Context(base_dir=tmp_path / name, where="reader"),
        )
        got[name] = pa.Table.from_batches(
            [b for s in r.splits(2) for b in r.read(s)], r.schema()
        ).sort_by("id")
    assert got["ray"].equals(got["local"]) and got["ray"].num_rows == 6000


@needs_ray
def test_mysql_to_postgresql_on_ray_equals_local(
    mysql_db: MyDb,  # noqa: F811
    pg: PgDb,
    tmp_path: Path,
) -> None:
    mysql_db.execute(
        "CREATE TABLE t (id INT, name VARCHAR(20), at DATETIME(6))",
        "INSERT INTO t SELECT seq, CONCAT('n', seq), TIMESTAMP'2024-01-01 00:00:00' + "
        "INTERVAL seq SECOND FROM seq_1_to_5000",
    )
    reader = {
        "name": "mysqlreader",
        "parameter": {
            "username": "root",
            "password": "",
            "splitPk": "id",
            "connection": [{"jdbcUrl": [mysql_db.jdbc], "table": ["t"]}],
        },
    }
    for name in ("local", "ray"):
        pg.sql(f"CREATE TABLE {{s}}.{name} (id int, name text, at timestamp)")
        writer = {"name": "postgresqlwriter", "parameter": pg.writer_params(name)}
        rep = run(job_file(tmp_path / name, reader, writer, speed={"concurrent": 3}), name)
        assert rep.status == "succeeded" and rep.records_written == 5000, rep.error
    local = pg.rows("SELECT * FROM {s}.local ORDER BY id")
    assert pg.rows("SELECT * FROM {s}.ray ORDER BY id") == local and len(local) == 5000


# -- scheduler nodes ------------------------------------------------------------------------------


def test_a_nodes_executor_is_checked_with_the_project(tmp_path: Path) -> None:
    from tests.scheduler._helpers import write_project
    from tidesync.scheduler.project import load_project

    write_project(tmp_path, [{"name": "n", "schedule": {"every": "day"}, "executor": "rya"}])
    with pytest.raises(ConfigError) as e:
        load_project(tmp_path)
    assert e.value.problems == [
        "nodes[0].executor: 'rya' is not an executor (executors: local, ray); did you mean 'ray'?"
    ]


@needs_ray
def test_a_node_may_run_its_job_on_ray(tmp_path: Path) -> None:
    from tests.scheduler._helpers import at, scheduler, sqlite_job, write_project

    sqlite_job(tmp_path / "jobs" / "n.json", tmp_path / "out.db", value="$cyctime")
    node = {
        "name": "n",
        "job": "jobs/n.json",
        "schedule": {"every": "day", "start_date": "2025-01-01"},
        "executor": "ray",
    }
    write_project(tmp_path, [node])
    s = scheduler(tmp_path)
    s.run_once(at("202501020000"))
    [inst] = s.store.listing(node="n")
    assert inst.state == "succeeded", inst.error
    report = json.loads(inst.report or "{}")
    assert report["executor"] == "ray" and report["splits"][0]["worker"]["node"]
    rows = sqlite3.connect(tmp_path / "out.db").execute("SELECT v FROM runs").fetchall()
    assert rows == [("20250102000000",)]


@needs_ray
def test_a_cancel_on_the_driver_stops_the_workers_and_publishes_nothing(tmp_path: Path) -> None:
    import threading

    # over 9 s of work at this rate: the cancel comes long before any split could finish
    job = slow_job(tmp_path, "out", 4_000, "ray")
    cancel = threading.Event()

    def interrupt(rep: Report) -> None:
        if rep.records_read > 0:
            cancel.set()  # what Ctrl-C does in tidesync run

    rep = run_job(job, cancel=cancel, progress=interrupt, progress_every=0.2)
    assert cancel.is_set() and rep.status == "failed", rep.error
    assert [s.status for s in rep.splits] == ["cancelled"] * 4
    assert rep.records_written < 40_000
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@needs_ray
def test_without_an_address_the_run_starts_a_ray_of_its_own(tmp_path: Path) -> None:
    import subprocess

    import ray

    csv_files(tmp_path / "in", files=2, rows=1_000)
    path = job_file(
        tmp_path, csv_reader("in/*.csv"), parquet_writer("out"), errorLimit={"record": 2}
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    tidesync = str(Path(sys.executable).with_name("tidesync"))
    done = subprocess.run(
        [tidesync, "run", str(path), "--executor", "ray", "--report", str(tmp_path / "r.json")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["executor"] == "ray" and rep["records_written"] == 2_000
    ran_on = {s["worker"]["node"] for s in rep["splits"]}
    session = {n["NodeID"][:12] for n in ray.nodes()}
    # not the session's cluster, which `ray start` left for ray.init() to find on this machine
    assert ran_on and not ran_on & session
    assert len(parquet_rows(tmp_path / "out")) == 2_000
