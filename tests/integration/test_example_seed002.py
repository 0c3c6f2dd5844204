"""examples/seed002 end to end: the seed's script-mode job reads PostgreSQL's change log window by
window into CSV objects on a real S3-compatible server (moto); a rerun replaces its window's
object with the same rows; the scheduler reads the node as the seed describes it."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from tests.integration._s3server import S3Server, bucket_fixture, s3_server_fixture  # noqa: F401
from tests.integration._servers_pg import PgDb, pg_fixture, pg_server  # noqa: F401
from tidesync.cli import main

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed002"
TZ = ZoneInfo("Asia/Shanghai")


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, TZ).strftime("%Y%m%d%H%M%S")


def _now(pg: PgDb) -> int:  # noqa: F811
    return int(pg.rows("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint")[0][0])


def _second(pg: PgDb) -> int:  # noqa: F811
    import time

    s = (_now(pg) // 1000 + 1) * 1000
    while _now(pg) < s:
        time.sleep(0.05)
    return s


def test_seed002_windows_become_csv_objects_and_a_rerun_replaces_its_own(
    pg: PgDb,  # noqa: F811
    s3_server: S3Server,  # noqa: F811
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = tmp_path / "seed002"
    shutil.copytree(EXAMPLE, work)
    monkeypatch.chdir(work)
    monkeypatch.setenv("SEED002_PG_URL", pg.jdbc)
    monkeypatch.setenv("SEED002_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")
    monkeypatch.setenv("SEED002_OSS_ENDPOINT", s3_server.endpoint)
    monkeypatch.setenv("SEED002_OSS_BUCKET", bucket)
    monkeypatch.setenv("SEED002_OSS_KEY", s3_server.key_id)
    monkeypatch.setenv("SEED002_OSS_SECRET", s3_server.secret)
    pg.sql(
        "CREATE TABLE {s}.orders (id int PRIMARY KEY, customer text, amount numeric(12,2), "
        "updated_at timestamp)"
    )

    def run(start: int, end: int) -> Any:
        args = ["run", "orders_stream.json", "-p", f"start_time={_stamp(start)}",
                "-p", f"end_time={_stamp(end)}", "-p", "date=20161114"]  # fmt: skip
        return CliRunner().invoke(main, args)

    def objects() -> dict[str, str]:
        c = s3_server.client()
        keys = [o["Key"] for o in c.list_objects_v2(Bucket=bucket).get("Contents", [])]
        return {k: c.get_object(Bucket=bucket, Key=k)["Body"].read().decode() for k in keys}

    t0 = _second(pg)
    try:
        r = run(t0 - 5000, t0)
        assert r.exit_code == 0, r.output  # creates the capture; an empty window
        pg.sql(
            "INSERT INTO {s}.orders VALUES (1, 'LiLei', 10.50, '2016-11-14 10:00:00'), "
            "(2, NULL, NULL, NULL)"
        )
        pg.sql(
            "UPDATE {s}.orders SET amount = 11 WHERE id = 1", "DELETE FROM {s}.orders WHERE id = 2"
        )
        t1 = _second(pg)
        pg.sql("INSERT INTO {s}.orders VALUES (3, 'Jim', 1, '2016-11-15 00:00:00')")
        t2 = _second(pg)
        assert run(t0, t1).exit_code == 0
        assert run(t1, t2).exit_code == 0
        got = objects()
        w1 = next(
            v for k, v in got.items() if k.startswith(f"instance/orders/20161114/{_stamp(t0)}")
        )
        lines = w1.splitlines()
        assert [ln.split(",")[:5] for ln in lines] == [
            ["1", "LiLei", "10.50", "2016-11-14 10:00:00", "c"],
            ["2", "null", "null", "null", "c"],
            ["1", "LiLei", "11.00", "2016-11-14 10:00:00", "u"],
            ["2", "null", "null", "null", "d"],
        ]
        assert len(got) == 3  # one object per window, the empty window's included
        pg.sql("INSERT INTO {s}.orders VALUES (4, 'late', 1, NULL)")  # after both windows
        assert run(t0, t1).exit_code == 0  # a rerun (a retry of the instance)
        assert objects() == got  # the same objects, the same rows
    finally:
        CliRunner().invoke(main, ["cdc", "drop", "orders_stream.json", "-p", "start_time=20161115101000",
                                  "-p", "end_time=20161115101500", "-p", "date=20161114"])  # fmt: skip


def test_the_node_is_the_seeds_schedule() -> None:
    from tidesync.scheduler.project import load_project

    node = load_project(EXAMPLE / "tidesync.yaml").nodes["orders_stream"]
    assert node.retries == 3 and node.self_dependent
    text = (EXAMPLE / "tidesync.yaml").read_text()
    assert "start_time=$[yyyymmddhh24miss-10/24/60]" in text
    assert "end_time=$[yyyymmddhh24miss-5/24/60]" in text
    assert "date=${bdp.system.bizdate}" in text
