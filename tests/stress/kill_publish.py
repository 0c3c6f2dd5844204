"""Kills at the publish point, at the audit's size: a 1.5M-row ``truncate`` replacing a folder of
about 120 files (``maxFileSize``), and the same on S3 and the lake, killed (SIGKILL) at each
publish point by the test hooks; then what a plain reader and tidesync's reader see, and what
``tidesync recover`` leaves.

Not collected by pytest (no ``test_`` prefix). Run from the repository root::

    .venv/bin/python tests/stress/kill_publish.py [--rows 1500000] [--trials 2] [--only local]

Prints one line per trial and exits 1 if any trial left a mix after recovery, a mix that
tidesync's reader saw, or leftovers.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.connectors._runs import stream_job, tidesync  # noqa: E402

from tidesync.connectors import file as F  # noqa: E402
from tidesync.connectors.base import Chunk, Context  # noqa: E402

MAX_FILE = "190KB"  # 1.5M rows of "id,gen" make about 120 files (the audit had 94)


def counts(ids: pa.Array, gens: pa.Array) -> dict[str, Any]:
    t = pa.table({"id": ids, "gen": gens})
    by = t.group_by("gen").aggregate([("id", "count"), ("id", "count_distinct")])
    return {
        g: (n, d)
        for g, n, d in zip(
            by["gen"].to_pylist(),
            by["id_count"].to_pylist(),
            by["id_count_distinct"].to_pylist(),
            strict=True,
        )
    }


def verdict(seen: dict[str, Any], old: int, new: int) -> str:
    if seen == {"old": (old, old)}:
        return "old"
    if seen == {"new": (new, new)}:
        return "new"
    rows = sum(n for n, _ in seen.values())
    return f"MIX({rows} rows: {seen})"


# -- what readers see -------------------------------------------------------------------------

OPTS = pacsv.ReadOptions(column_names=["id", "gen"])


def plain_local(folder: Path) -> dict[str, Any]:
    files = sorted(p for p in folder.glob("data*.csv"))
    tables = [pacsv.read_csv(p, read_options=OPTS) for p in files]
    t = pa.concat_tables(tables) if tables else pa.table({"id": [], "gen": []})
    return counts(t["id"], t["gen"])


def tidesync_view(params: dict[str, Any], base: Path, conns: dict[str, Any] | None = None) -> Any:
    r = F.Reader(
        {"fileFormat": "csv", "column": ["*"], **params},
        Context(base_dir=base, where="r", connections=conns or {}),
    )
    batches = [c.batch if isinstance(c, Chunk) else c for s in r.splits(8) for c in r.read(s)]
    t = pa.Table.from_batches(batches)
    return counts(t.column(0), t.column(1))


# -- scenarios ---------------------------------------------------------------------------------


def file_writer(**where: Any) -> dict[str, Any]:
    return {
        "name": "osswriter" if "object" in where else "txtfilewriter",
        "parameter": {**where, "writeMode": "truncate", "maxFileSize": MAX_FILE},
    }


def trial(
    args: argparse.Namespace,
    work: Path,
    writer: dict[str, Any],
    point: str,
    plain: Callable[[], dict[str, Any]],
    view: Callable[[], dict[str, Any]],
    recover: list[str],
    leftovers: Callable[[], list[str]],
    before_kill: Callable[[], Any] = lambda: None,
) -> dict[str, Any]:
    """Write the old output, kill the new run at ``point``, look, recover, look again."""
    r = tidesync("run", stream_job(work, writer, args.rows, "old", concurrent=4), cwd=work)
    assert r.returncode == 0, r.stderr
    files = before_kill()
    new = args.rows * 4 // 5
    k = tidesync("run", stream_job(work, writer, new, "new", concurrent=4), cwd=work, hooks=point)
    out = {"files": files, "rc": k.returncode}
    out["plain"] = verdict(plain(), args.rows, new)
    out["tidesync"] = verdict(view(), args.rows, new)
    rec = tidesync("recover", *recover, cwd=work)
    out["recover"] = rec.stdout.count("\n")
    out["after"] = verdict(plain(), args.rows, new)
    out["leftovers"] = leftovers()
    return out


def local(args: argparse.Namespace, point: str, journal: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="kill-local-"))
    out_dir = work / "out"

    def prepare() -> int:
        if journal:  # a folder holding a subfolder is published through a journal
            (out_dir / "sub").mkdir()
        return len(list(out_dir.glob("data*.csv")))

    def left() -> list[str]:
        names = [p.name for p in out_dir.iterdir() if p.name.startswith(".")]
        return names + [p.name for p in work.iterdir() if p.name.endswith(".tidesync")]

    try:
        return trial(
            args,
            work,
            file_writer(path="out", fileName="data.csv"),
            point,
            lambda: plain_local(out_dir),
            lambda: tidesync_view({"path": "out/data*"}, work),
            ["out"],
            left,
            prepare,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def s3(args: argparse.Namespace, point: str, server: Any) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="kill-s3-"))
    bucket = server.make_bucket()
    conns = {
        "store": {
            "kind": "s3",
            "endpoint": server.endpoint,
            "bucket": bucket,
            "accessKeyId": server.key_id,
            "accessKeySecret": server.secret,
        }
    }
    (work / "tidesync.yaml").write_text(json.dumps({"connections": conns}))
    c = server.client()

    def plain() -> dict[str, Any]:
        tables = []
        for key in server.keys(bucket, "out/data"):
            body = c.get_object(Bucket=bucket, Key=key)["Body"].read()
            tables.append(pacsv.read_csv(pa.BufferReader(body), read_options=OPTS))
        t = pa.concat_tables(tables)
        return counts(t["id"], t["gen"])

    def left() -> list[str]:
        uploads = c.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return [k for k in server.keys(bucket) if "/." in k] + [u["Key"] for u in uploads]

    try:
        return trial(
            args,
            work,
            file_writer(datasource="store", object="out/data.csv"),
            point,
            plain,
            lambda: tidesync_view({"datasource": "store", "object": "out/data"}, work, conns),
            [f"s3://{bucket}/out", "--datasource", "store"],
            left,
            lambda: len(server.keys(bucket, "out/data")),
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def lake(args: argparse.Namespace, point: str, fmt: str) -> dict[str, Any]:
    from tidesync.connectors.lake import Reader

    work = Path(tempfile.mkdtemp(prefix=f"kill-{fmt}-"))
    table = "ods.t" if fmt == "iceberg" else "t"
    try:
        writer = {
            "name": "lake",
            "parameter": {"format": fmt, "table": table, "partition": "ds=20161114"},
        }
        r = tidesync("run", stream_job(work, writer, args.rows, "old", concurrent=4), cwd=work)
        assert r.returncode == 0, r.stderr

        def view() -> dict[str, Any]:
            rd = Reader({"format": fmt, "table": table}, Context(base_dir=work, where="r"))
            t = pa.Table.from_batches([b for s in rd.splits(8) for b in rd.read(s)], rd.schema())
            return counts(t["id"], t["gen"])

        def plain() -> dict[str, Any]:
            if fmt == "iceberg":
                return view()  # only the catalog says what the table is
            t = ds.dataset(work / "t" / "ds=20161114", format="parquet").to_table()
            return counts(t["id"], t["gen"])

        def on_disk() -> set[Path]:
            return set(work.rglob("*.parquet"))

        before = on_disk()
        new = args.rows * 4 // 5
        k = tidesync(
            "run", stream_job(work, writer, new, "new", concurrent=4), cwd=work, hooks=point
        )
        out = {"files": len(before), "rc": k.returncode}
        out["plain"] = verdict(plain(), args.rows, new)
        out["tidesync"] = verdict(view(), args.rows, new)
        orphan_bytes = sum(p.stat().st_size for p in on_disk() - before)
        rec = tidesync("recover", "job.json", cwd=work)
        out["recover"] = rec.stdout.count("\n")
        out["after"] = verdict(plain(), args.rows, new)
        if fmt == "iceberg":
            from tidesync.connectors.lake.iceberg import load_catalog

            t = load_catalog(None, work / "warehouse").load_table("ods.t")
            live = {
                Path(p.removeprefix("file://"))
                for p in t.inspect.all_data_files().column("file_path").to_pylist()
            }
            out["leftovers"] = [p.name for p in on_disk() - live]
        else:
            out["leftovers"] = [p.name for p in work.iterdir() if p.name.endswith(".tidesync")]
        out["killed_run_wrote_MB"] = round(orphan_bytes / 1e6, 1)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_500_000)
    ap.add_argument("--trials", type=int, default=2)
    ap.add_argument("--only", choices=["local", "journal", "s3", "iceberg", "hive"])
    args = ap.parse_args()
    plan: list[tuple[str, str, Callable[[str], dict[str, Any]]]] = []
    points = ["publish.begin=kill", "publish.exchange=kill", "publish.exchanged=kill"]
    plan += [("local", p, lambda p: local(args, p, False)) for p in points]
    points = ["publish.journal=kill", "publish.placed=kill@1", "publish.placed=kill@47"]
    plan += [("journal", p, lambda p: local(args, p, True)) for p in points]
    for fmt in ("iceberg", "hive"):
        points = ["lake.commit=kill"] + (["lake.committed=kill"] if fmt == "iceberg" else [])
        plan += [(fmt, p, lambda p, fmt=fmt: lake(args, p, fmt)) for p in points]
    server_cm = None
    if args.only in (None, "s3"):
        from tests.integration._s3server import start_server

        server_cm = start_server()
        server = server_cm.__enter__()
        points = [
            "publish.begin=kill",
            "publish.journal=kill",
            "publish.placed=kill@1",
            "publish.placed=kill@47",
        ]
        plan += [("s3", p, lambda p: s3(args, p, server)) for p in points]
    bad = 0
    try:
        for kind, point, fn in plan:
            if args.only and kind != args.only:
                continue
            for trial in range(args.trials):
                t0 = time.monotonic()
                r = fn(point)
                ok = (
                    r["rc"] == -9
                    and not r["tidesync"].startswith("MIX")
                    and not r["after"].startswith("MIX")
                    and not r["leftovers"]
                )
                bad += not ok
                print(
                    f"{'ok ' if ok else 'BAD'} {kind:8} {point:24} trial {trial + 1}: "
                    + ", ".join(f"{k}={v}" for k, v in r.items())
                    + f" ({time.monotonic() - t0:.0f} s)",
                    flush=True,
                )
    finally:
        if server_cm is not None:
            server_cm.__exit__(None, None, None)
    print(f"{'all trials ok' if not bad else f'{bad} trial(s) BAD'}")
    return 1 if bad else 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    sys.exit(main())
