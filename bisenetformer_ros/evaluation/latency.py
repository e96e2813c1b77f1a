"""One summary of a latency series: count, mean, spread, p50 / p90 / p99 and extremes.

``evaluate``, the benchmark, ``bag evaluate`` / the demo report and the node's /diagnostics all quote latency
percentiles; they are computed here, once, so that "p99" means the same number everywhere. Percentiles use numpy's
default linear interpolation between the two nearest order statistics (position ``(n - 1) q / 100`` in the sorted
series), the definition every caller used before they shared this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: The percentiles every latency table reports.
QUANTILES: tuple[int, ...] = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``; NaN for an empty series."""
    if len(values) == 0:
        return float("nan")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


@dataclass(frozen=True)
class LatencySummary:
    """Figures of one non-empty latency series, in the unit of the values given (times ``scale``)."""

    count: int
    mean: float
    std: float
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float], scale: float = 1.0) -> LatencySummary:
        """Summarise ``values`` (multiplied by ``scale`` first, e.g. 1000 for seconds -> ms). Raises on an empty
        series: callers decide what "no data" looks like in their output."""
        arr = np.asarray(values, dtype=np.float64) * scale
        if arr.size == 0:
            raise ValueError("cannot summarise an empty latency series")
        p50, p90, p99 = np.percentile(arr, QUANTILES).tolist()
        return cls(
            count=int(arr.size),
            mean=float(arr.mean()),
            std=float(arr.std()),
            min=float(arr.min()),
            p50=float(p50),
            p90=float(p90),
            p99=float(p99),
            max=float(arr.max()),
        )

    def to_ms_dict(self) -> dict[str, float]:
        """The JSON form of reports (values taken as milliseconds): ``count``, ``mean_ms`` ... ``max_ms``."""
        return {
            "count": self.count,
            "mean_ms": self.mean,
            "std_ms": self.std,
            "min_ms": self.min,
            "p50_ms": self.p50,
            "p90_ms": self.p90,
            "p99_ms": self.p99,
            "max_ms": self.max,
        }


def latency_summary(values_ms: Sequence[float | None]) -> dict[str, float]:
    """Report form of a millisecond series; missing (``None``) and non-finite values are left out, and a series
    with nothing left gives ``{"count": 0}``."""
    kept = [v for v in values_ms if v is not None and math.isfinite(v)]
    if not kept:
        return {"count": 0}
    return LatencySummary.of(kept).to_ms_dict()
