"""The fixed latency histogram of the usage rollups.

Percentiles cannot be summed, but histograms can: every rollup row counts its requests per latency
bucket, and a summary adds the buckets of its rows and reads a percentile off the sum. A
percentile is the upper bound of the bucket holding the nearest-rank sample (the ⌈q·n⌉-th fastest
request): an upper estimate, exact to the bucket, and the same whether the rows came from the
rollups or straight from the raw records. Past the last bound it is the largest latency seen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

BOUNDS_MS = (100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
COLUMNS = (*(f"lat_le_{bound}" for bound in BOUNDS_MS), "lat_over")
QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


def raw_sums() -> str:
    """SQL select terms counting `request_records.latency_ms` into the bucket columns."""
    terms, low = [], None
    for bound, column in zip(BOUNDS_MS, COLUMNS, strict=False):
        above = "" if low is None else f"latency_ms > {low} AND "
        terms.append(f"SUM(CASE WHEN {above}latency_ms <= {bound} THEN 1 ELSE 0 END) AS {column}")
        low = bound
    terms.append(f"SUM(CASE WHEN latency_ms > {low} THEN 1 ELSE 0 END) AS lat_over")
    return ", ".join(terms)


def percentile(counts: Sequence[int], latency_max_ms: int, q: float) -> int | None:
    """The q-quantile of a histogram (`counts` in COLUMNS order); None when it is empty."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bound, count in zip(BOUNDS_MS, counts, strict=False):
        seen += count
        if seen >= rank:
            return bound
    return latency_max_ms


def latency_view(row: Mapping[str, Any]) -> dict[str, int | None]:
    counts = [int(row[c] or 0) for c in COLUMNS]
    top = int(row["latency_max_ms"] or 0)
    view = {name: percentile(counts, top, q) for name, q in QUANTILES}
    view["max"] = top if sum(counts) else None
    return view
