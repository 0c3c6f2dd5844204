"""The mixed-type rows the benchmarks generate with pyarrow (no Python loop per row)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

CITIES = ["Hangzhou", "Shanghai", "Beijing", "Shenzhen", "Berlin", "Lisbon", "Austin", "Osaka"]


def mixed_columns(ids: pa.Array, r: pa.Array, cities: int, qty_mask: int) -> dict[str, pa.Array]:
    """The columns every benchmark table starts with, from keys ``ids`` (int64) and uniform
    randoms ``r``: id, customer (4096 names), city (the first ``cities`` of CITIES), amount
    (0-1000, two decimals), qty (``ids & qty_mask``)."""
    names = pa.array(CITIES[:cities])
    return {
        "id": ids,
        "customer": pc.binary_join_element_wise(
            "cust", pc.cast(pc.bit_wise_and(ids, 4095), pa.string()), ""
        ),
        "city": pc.take(names, pc.cast(pc.floor(pc.multiply(r, cities)), pa.int64())),
        "amount": pc.round(pc.multiply(r, 1000), 2),
        "qty": pc.bit_wise_and(ids, qty_mask),
    }
