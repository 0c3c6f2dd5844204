"""Staging: the files of a cycle, written on the local disk while the cycle runs.

Records go in by sequence number. Each bucket (one cycle, or the late records of a cycle already
published) keeps one writer per directory it touches and cuts a new slice when a file would pass
``maxFileSize``. Every decision here (rows per row group, where a slice ends, the file names)
depends only on the records and their order, never on timing or batching, so rebuilding a
bucket from the log after a crash gives the same files byte for byte.
"""

from __future__ import annotations

import base64
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tidesync.archive.policy import Policy
from tidesync.archive.records import SCHEMA, Row, parse_payload
from tidesync.archive.timing import AHEAD_LIMIT_MS, BEHIND_LIMIT_MS, Cycles, DirFormat
from tidesync.archive.wal import Record
from tidesync.connectors.file.encode import TextEncoder

__all__ = ["Output", "Bucket", "file_stem", "recycling_dir", "dirty_dir"]

#: rows a directory gathers before they are encoded (a parquet row group, at most)
FLUSH_ROWS = 8192


def recycling_dir(file_name: str) -> str:
    return f"archive_recycling_{file_name}"


def dirty_dir(file_name: str) -> str:
    return f"archive_dirty_{file_name}"


def file_stem(policy: Policy, cycles: Cycles, cycle: int, tag: str | None) -> str:
    """``measure_201901010000`` for a cycle's files; ``measure_201901010000_late42`` for late
    records of a cycle already published (42: the sequence number of the first of them)."""
    stem = f"{policy.target.file_name}_{cycles.name(cycle)}"
    return f"{stem}_{tag}" if tag else stem


@dataclass(frozen=True)
class Output:
    """A finished file: its place below the target root and where it waits on the local disk."""

    rel: str  # "20190101/00/measure_201901010000_0000.csv"
    local: Path
    rows: int
    bytes: int


class _Slices:
    """One directory's files of a bucket: csv or parquet (or jsonl for dirty records), cut into
    numbered slices so that none passes ``max_bytes``."""

    def __init__(self, folder: Path, rel_dir: str, stem: str, fmt: str, policy: Policy):
        self.folder, self.rel_dir, self.stem, self.fmt = folder, rel_dir, stem, fmt
        self.max = policy.target.max_file_size
        self.codec = policy.target.compress
        self.outputs: list[Output] = []
        self.out: Any = None
        self.path: Path | None = None
        self.size = self.rows = 0
        self.pqw: pq.ParquetWriter | None = None
        self.group_bytes = 0  # the last parquet row group's size: the next one's estimate
        self.enc = TextEncoder("csv", ",", "", None, "utf-8") if fmt == "csv" else None
        self.head = self.enc.header(SCHEMA.names) if self.enc is not None else b""
        self.buf: list[Row] = []
        self.lines: list[bytes] = []

    @property
    def ext(self) -> str:
        return {"csv": ".csv", "parquet": ".parquet", "jsonl": ".jsonl"}[self.fmt]

    def _open(self) -> None:
        n = len(self.outputs)
        name = f"{self.stem}_{n:04d}{self.ext}"
        self.path = self.folder / f"{n:04d}{self.ext}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.out = self.path.open("wb")
        self.rel = f"{self.rel_dir}/{name}"
        self.size = self.rows = 0
        if self.fmt == "parquet":
            self.pqw = pq.ParquetWriter(self.out, SCHEMA, compression=self.codec)
        elif self.head:
            self.out.write(self.head)
            self.size = len(self.head)

    def _close(self) -> None:
        if self.out is None:
            return
        if self.pqw is not None:
            self.pqw.close()
            self.pqw = None
        self.out.flush()
        size = self.out.tell()
        self.out.close()
        assert self.path is not None
        self.outputs.append(Output(self.rel, self.path, self.rows, size))
        self.out = None

    # -- rows (csv, parquet)

    def add(self, row: Row) -> None:
        self.buf.append(row)
        if len(self.buf) >= FLUSH_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.buf:
            return
        cols = list(zip(*self.buf, strict=True))
        self.buf = []
        batch = pa.record_batch(
            [pa.array(c, f.type) for c, f in zip(cols, SCHEMA, strict=True)], schema=SCHEMA
        )
        if self.enc is not None:
            self._csv(batch)
        else:
            self._parquet(batch)

    def _csv(self, batch: pa.RecordBatch) -> None:
        assert self.enc is not None
        while batch.num_rows:
            if self.out is None:
                self._open()
            data = b"".join(bytes(b) for b in self.enc.encode(batch))
            if self.size + len(data) <= self.max:
                self._write(data, batch.num_rows)
                return
            # the longest head of the batch that still fits (at least one row in a slice)
            lo, hi = 0, batch.num_rows
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self.size + self._csv_len(batch.slice(0, mid)) <= self.max:
                    lo = mid
                else:
                    hi = mid - 1
            if lo == 0 and self.rows == 0:
                lo = 1
            if lo:
                head = batch.slice(0, lo)
                self._write(b"".join(bytes(b) for b in self.enc.encode(head)), lo)
            self._close()
            batch = batch.slice(lo)

    def _csv_len(self, batch: pa.RecordBatch) -> int:
        assert self.enc is not None
        return sum(len(b) for b in self.enc.encode(batch))

    def _write(self, data: bytes, rows: int) -> None:
        self.out.write(data)
        self.size += len(data)
        self.rows += rows

    def _parquet(self, batch: pa.RecordBatch) -> None:
        if self.out is not None and self.rows and self.size + self.group_bytes > self.max:
            self._close()
        if self.out is None:
            self._open()
        assert self.pqw is not None
        before = self.out.tell()
        self.pqw.write_batch(batch, row_group_size=batch.num_rows)
        self.out.flush()
        self.size = self.out.tell()
        self.group_bytes = self.size - before
        self.rows += batch.num_rows

    # -- lines (dirty records)

    def add_line(self, line: bytes) -> None:
        if self.out is not None and self.rows and self.size + len(line) > self.max:
            self._close()
        if self.out is None:
            self._open()
        self._write(line, 1)

    def finish(self) -> list[Output]:
        self._flush()
        self._close()
        return self.outputs


def _utf8(data: bytes) -> bool:
    try:
        data.decode()
    except UnicodeDecodeError:
        return False
    return True


class Bucket:
    """The records of one cycle not yet published (``tag`` None), or the late records of one
    already published (``tag`` ``late<first seq>``), staged under ``folder``."""

    def __init__(
        self,
        policy: Policy,
        cycles: Cycles,
        folder: Path,
        cycle: int,
        end: int,
        first_seq: int,
        tag: str | None,
    ):
        self.policy, self.cycles = policy, cycles
        self.cycle, self.end = cycle, end
        self.first_seq = self.last_seq = first_seq
        self.tag = tag
        self.folder = folder / f"{cycle}-{first_seq}"
        shutil.rmtree(self.folder, ignore_errors=True)
        self.stem = file_stem(policy, cycles, cycle, self.tag)
        self.dirs: dict[str, _Slices] = {}
        self.messages = self.rows = self.recycled = self.dirty = 0
        fmt = DirFormat(policy.strftime, policy.tz)
        self.dir_of = fmt
        self.recycling = recycling_dir(policy.target.file_name)
        self.dirty_root = dirty_dir(policy.target.file_name)
        self.event = policy.by_event_time

    def _slices(self, rel_dir: str, fmt: str) -> _Slices:
        s = self.dirs.get(rel_dir)
        if s is None:
            s = self.dirs[rel_dir] = _Slices(
                self.folder / str(len(self.dirs)), rel_dir, self.stem, fmt, self.policy
            )
        return s

    def add(self, r: Record) -> None:
        self.last_seq = r.seq
        self.messages += 1
        rows, dirty = parse_payload(r.payload)
        sys_ms = r.arrival
        fmt = self._fmt
        last_t: int | None = None
        into: _Slices | None = None
        recycled = False
        if not self.event and rows:
            into = self._slices(self.dir_of(sys_ms), fmt)
        for row in rows:
            if self.event and row[4] != last_t:  # the points of one object share their time
                t = last_t = row[4]
                recycled = t - sys_ms > AHEAD_LIMIT_MS or sys_ms - t > BEHIND_LIMIT_MS
                where = f"{self.recycling}/{self.dir_of(t)}" if recycled else self.dir_of(t)
                into = self._slices(where, fmt)
            assert into is not None
            into.add(row)
            if recycled:
                self.recycled += 1
            else:
                self.rows += 1
        for reason in dirty:
            self.dirty += 1
            entry = {
                "reason": reason,
                "topic": r.topic,
                "arrival": sys_ms,
                "payload": r.payload.decode("utf-8", "backslashreplace"),
            }
            if not _utf8(r.payload):  # "\\xff" reads the same as the byte 0xff: keep the bytes
                entry["payloadBase64"] = base64.b64encode(r.payload).decode()
            line = json.dumps(entry, ensure_ascii=False)
            self._slices(f"{self.dirty_root}/{self.dir_of(sys_ms)}", "jsonl").add_line(
                line.encode() + b"\n"
            )

    @property
    def _fmt(self) -> str:
        return self.policy.target.format

    def finish(self) -> list[Output]:
        """Close every file; the outputs in a fixed order (by directory, then slice)."""
        out: list[Output] = []
        for rel_dir in sorted(self.dirs):
            out += self.dirs[rel_dir].finish()
        return out

    def discard(self) -> None:
        for s in self.dirs.values():
            if s.out is not None:
                s.out.close()
        shutil.rmtree(self.folder, ignore_errors=True)
