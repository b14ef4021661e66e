"""Latency statistics: the one place numbers are computed from raw samples.

Everything the aggregator shows (tables, the compare endpoint, the benchmark table of the host
runner) goes through `summarize` and `compare`. A value that cannot be computed (no samples, one
sample for a spread) is None — never 0 — and `fmt` renders it as "—". `compare` gives the ratio of
medians of two sample sets with a percentile-bootstrap interval from a fixed seed, and calls a
difference only when that interval excludes 1, so noise on a phone is not reported as a speed-up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

TRIM = 0.1  # trimmed mean cuts 10 % at each end: robust to the odd GC pause or thermal spike
DEFAULT_RESAMPLES = 2000
DEFAULT_SEED = 0


@dataclass(frozen=True)
class Summary:
    """Distribution of one sample set, in milliseconds (cv is dimensionless)."""

    n: int
    median: float | None = None
    p10: float | None = None
    p90: float | None = None
    p99: float | None = None
    iqr: float | None = None
    trimmed_mean: float | None = None
    mean: float | None = None
    std: float | None = None
    cv: float | None = None
    min: float | None = None
    max: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


Verdict = Literal["faster", "slower", "no difference"]


@dataclass(frozen=True)
class Comparison:
    """a versus b: ratio = median(a) / median(b); < 1 means a is faster."""

    ratio: float | None
    low: float | None
    high: float | None
    confidence: float
    n_a: int
    n_b: int
    verdict: Verdict | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(samples: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64).ravel()
    if x.size and not (np.all(np.isfinite(x)) and np.all(x > 0)):
        raise ValueError("latency samples must be finite and > 0 (validate reports with device_bench.schema)")
    return x


def summarize(samples: Sequence[float] | np.ndarray) -> Summary:
    """Median, p10/p90/p99, IQR, trimmed mean, mean, std, CV, min, max of raw samples."""
    x = _clean(samples)
    n = int(x.size)
    if n == 0:
        return Summary(n=0)
    from scipy.stats import trim_mean

    p10, p25, p50, p75, p90, p99 = (float(v) for v in np.percentile(x, [10, 25, 50, 75, 90, 99]))
    mean = float(x.mean())
    # Spread needs two samples: a single run has no measurable variation, not zero variation.
    std = float(x.std(ddof=1)) if n >= 2 else None
    return Summary(
        n=n,
        median=p50,
        p10=p10,
        p90=p90,
        p99=p99,
        iqr=p75 - p25 if n >= 2 else None,
        trimmed_mean=float(trim_mean(x, TRIM)),
        mean=mean,
        std=std,
        cv=std / mean if std is not None else None,
        min=float(x.min()),
        max=float(x.max()),
    )


def center(samples: Sequence[float] | np.ndarray) -> tuple[int, float | None, float | None]:
    """(n, median, mean) of raw samples: bit for bit the median and mean `summarize` gives (a test
    checks it), without its other statistics (the store keeps these two per report, at ingest).

    The median is numpy's linear-interpolation 50th percentile written out: the middle value for
    odd n; for even n, numpy's `_lerp` at t = 0.5, which evaluates b - (b - a) * 0.5."""
    x = _clean(samples)
    n = int(x.size)
    if n == 0:
        return 0, None, None
    k = (n - 1) // 2
    if n % 2:
        median = float(np.partition(x, k)[k])
    else:
        part = np.partition(x, [k, k + 1])
        a, b = part[k], part[k + 1]
        median = float(b - (b - a) * 0.5)
    return n, median, float(x.mean())


ORDER_STAT_MIN_N = 200


def _bootstrap_medians(x: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """`resamples` bootstrap medians of x without resampling x itself.

    In a resample of n draws from sorted x, the k-th smallest value is x[j] for the smallest j
    with Binomial(n, (j+1)/n) >= k, so P(index <= j) = P(Binomial(n, (j+1)/n) >= k): one
    uniform per resample inverts it. Exact for odd n; for even n the two middle order statistics
    are drawn from the same uniform (they are nearly always neighbours at n >= ORDER_STAT_MIN_N).
    Cost O(n + resamples log n) instead of O(n * resamples).
    """
    from scipy.stats import binom

    xs = x if _is_sorted(x) else np.sort(x)
    n = xs.size
    p = np.arange(1, n + 1) / n
    u = rng.random(resamples)
    u_lo, u_hi = float(u.min()), float(u.max())

    def order_stat(k: int) -> np.ndarray:
        # cdf[j] = P(at least k draws among the j+1 smallest values), increasing in j. Only the
        # stretch where it crosses [min(u), max(u)] decides searchsorted, so it is evaluated on a
        # window around k (widened until the crossing is inside): the same indices as evaluating
        # all n values, at a few sqrt(n) of the cost.
        half = int(2.5 * math.sqrt(n)) + 16  # ~5 standard deviations of the order statistic
        while True:
            lo, hi = max(0, k - 1 - half), min(n, k + half)
            cdf = binom.sf(k - 1, n, p[lo:hi])
            if (lo == 0 or cdf[0] < u_lo) and (hi == n or cdf[-1] >= u_hi):
                return xs[np.minimum(lo + np.searchsorted(cdf, u), n - 1)]
            half *= 2

    if n % 2:
        return order_stat((n + 1) // 2)
    return (order_stat(n // 2) + order_stat(n // 2 + 1)) / 2


def _is_sorted(x: np.ndarray) -> bool:
    return bool(np.all(x[:-1] <= x[1:]))


def _median_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def compare(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    *,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """Ratio of medians median(a)/median(b) with a bootstrap interval.

    Only meaningful for two sample sets measured on the same device, runtime and accelerator.
    The interval resamples a and b independently (percentile method, fixed seed: the same data
    always gives the same interval). verdict is "faster"/"slower" (a relative to b) only when the
    interval excludes 1, "no difference" otherwise, None when either side has no samples.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a usable interval, got {resamples}")
    xa, xb = _clean(a), _clean(b)
    if xa.size == 0 or xb.size == 0:
        return Comparison(None, None, None, confidence, int(xa.size), int(xb.size), None)
    ratio = float(np.median(xa) / np.median(xb))
    if xa.size < 2 or xb.size < 2:
        # One sample has no spread to resample: report the ratio, but never call a difference.
        return Comparison(ratio, None, None, confidence, int(xa.size), int(xb.size), "no difference")
    rng = np.random.default_rng(seed)
    if min(xa.size, xb.size) >= ORDER_STAT_MIN_N:
        # Large pooled sets (the dashboard pools up to 50 runs): draw each bootstrap median
        # directly from its order-statistic distribution instead of resampling n values.
        ratios = _bootstrap_medians(xa, resamples, rng) / _bootstrap_medians(xb, resamples, rng)
        alpha = (1 - confidence) / 2
        low, high = (float(v) for v in np.quantile(ratios, [alpha, 1 - alpha]))
    else:
        from scipy.stats import bootstrap

        res = bootstrap((xa, xb), _median_ratio, n_resamples=resamples, vectorized=True, paired=False,
                        confidence_level=confidence, method="percentile", rng=rng)
        low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return Comparison(ratio, None, None, confidence, int(xa.size), int(xb.size), "no difference")
    verdict: Verdict = "faster" if high < 1 else "slower" if low > 1 else "no difference"
    return Comparison(ratio, low, high, confidence, int(xa.size), int(xb.size), verdict)


def fmt(value: float | None, digits: int = 2, unit: str = "") -> str:
    """A number for a table; "—" for a missing value (never 0)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if abs(value) >= 100:
        text = f"{value:.0f}" if digits <= 2 else f"{value:.{digits}g}"
    else:
        text = f"{value:.{digits}f}" if abs(value) >= 1 else f"{value:.{digits + 1}g}"
    return f"{text}{unit}"


def fmt_ratio(c: Comparison | None) -> str:
    """"0.85× [0.82–0.88]" or "—"."""
    if c is None or c.ratio is None:
        return "—"
    if c.low is None or c.high is None:
        return f"{c.ratio:.2f}×"
    return f"{c.ratio:.2f}× [{c.low:.2f}–{c.high:.2f}]"
