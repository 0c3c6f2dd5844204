"""The ``embed`` transformer against the model called directly, on the same batches, in one
process (the model loaded once beforehand: a whole-process timing would mostly time its load).

    .venv/bin/python bench/bench_embed.py --rows 512 --runs 3

A: ``Embed.apply`` over Arrow record batches of generated reviews (what a ``tidesync run`` job
does between reader and writer). B: the encoder called directly on the same texts as Python
lists, ``Encoder.encode(texts, 64)``, the vectors left as a NumPy array. Alternated batch by
batch, A B B A ...; prints rows/s and the median of the paired ratios (B's time / A's: 1.0 is no overhead).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _harness import report  # noqa: E402

from tidesync.plugin import Context  # noqa: E402
from tidesync.transforms.embed import Embed  # noqa: E402
from tidesync.transforms.encoder import load_encoder  # noqa: E402

SUBJECTS = ["The parcel", "My order", "The courier", "The invoice", "This jacket", "The refund",
            "Customer support", "The app", "The delivery van", "The blender"]  # fmt: skip
VERBS = ["arrived", "was charged", "broke", "was replaced", "stopped working", "was returned",
         "looked great", "was late", "felt cheap", "worked perfectly"]  # fmt: skip
TAILS = ["after two days", "without any notice", "and I am very happy", "so I want my money back",
         "but the box was damaged", "which is exactly what I expected", "twice this month",
         "although the manual says otherwise", "and nobody answered my emails", "on time"]  # fmt: skip


def reviews(rows: int, batch_rows: int) -> list[pa.RecordBatch]:
    rnd = random.Random(7)
    texts = [
        f"{rnd.choice(SUBJECTS)} {rnd.choice(VERBS)} {rnd.choice(TAILS)}, order {rnd.randint(1, 99999)}."
        for _ in range(rows)
    ]
    return [
        pa.record_batch({"id": list(range(s, min(s + batch_rows, rows))),
                         "review": pa.array(texts[s : s + batch_rows], pa.string())})
        for s in range(0, rows, batch_rows)
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=512)
    ap.add_argument("--batch-rows", type=int, default=64, help="rows per Arrow batch")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    batches = reviews(args.rows, args.batch_rows)
    enc = load_encoder()
    t = Embed({"column": "review", "as": "review_vec"}, Context(where="bench"))

    def transformer(b: pa.RecordBatch) -> float:
        t0 = time.perf_counter()
        t.apply(b)
        return time.perf_counter() - t0

    def direct(b: pa.RecordBatch) -> float:
        t0 = time.perf_counter()
        enc.encode(b.column("review").to_pylist(), 64)
        return time.perf_counter() - t0

    enc.encode(batches[0].column("review").to_pylist()[:64])  # warm-up
    ours, ref = [], []
    for run in range(args.runs):
        # A and B alternate batch by batch (who goes first, too): the machine's drift hits both
        a = r = 0.0
        for i, b in enumerate(batches):
            if (i + run) % 2:
                a += transformer(b)
                r += direct(b)
            else:
                r += direct(b)
                a += transformer(b)
        ours.append(a)
        ref.append(r)
    report(
        f"embed {args.rows} reviews, batches of {args.batch_rows} rows ({enc.name}, NumPy, CPU)",
        args.rows,
        ours,
        ref,
        "direct",
        args.runs,
    )


if __name__ == "__main__":
    main()
