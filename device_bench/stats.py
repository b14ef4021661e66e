"""Latency statistics: the one place numbers are computed from raw samples.

Everything the aggregator shows (tables, the compare endpoint, the benchmark table of the host
runner) goes through `summarize` and `compare`. A value that cannot be computed (no samples, one
sample for a spread) is None — never 0 — and `fmt` renders it as "—". `compare` gives the ratio of
medians of two sample sets with a percentile-bootstrap interval from a fixed seed, and calls a
difference only when that interval excludes 1, so noise on a phone is not reported as a speed-up.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import weakref
from collections import OrderedDict
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
    """a versus b: ratio = median(a) / median(b); < 1 means a is faster.

    low/high: the confidence interval of the ratio (what the verdict is called on).
    next_low/next_high: the prediction interval of the ratio that a repeated run of the same
    protocol would report ("next run", `compare_runs`; None where not computed): what a reader
    can check by running again, and what tables show next to the ratio."""

    ratio: float | None
    low: float | None
    high: float | None
    confidence: float
    n_a: int
    n_b: int
    verdict: Verdict | None
    next_low: float | None = None
    next_high: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clean(samples: Sequence[float] | np.ndarray) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float64)
    if x.ndim != 1:  # a 1-D array stays the caller's object (its sorted copy can be reused, see _sorted)
        x = x.ravel()
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
    xs = _sorted(x)
    n = xs.size
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
            cdf = _order_stat_cdf(k, n, lo, hi)
            if (lo == 0 or cdf[0] < u_lo) and (hi == n or cdf[-1] >= u_hi):
                return xs[np.minimum(lo + np.searchsorted(cdf, u), n - 1)]
            half *= 2

    if n % 2:
        return order_stat((n + 1) // 2)
    return (order_stat(n // 2) + order_stat(n // 2 + 1)) / 2


def _is_sorted(x: np.ndarray) -> bool:
    return bool(np.all(x[:-1] <= x[1:]))


@functools.lru_cache(maxsize=256)
def _order_stat_cdf(k: int, n: int, lo: int, hi: int) -> np.ndarray:
    """binom.sf(k - 1, n, (j + 1) / n) for j in [lo, hi): a pure function of its arguments, and
    the dashboard's pooled windows mostly have the same n (50 runs x the same sample count), so
    each (k, n, window) is evaluated once instead of once per comparison. Read-only (shared)."""
    from scipy.stats import binom

    cdf = binom.sf(k - 1, n, np.arange(lo + 1, hi + 1) / n)
    cdf.flags.writeable = False
    return cdf


_SORTED: dict[int, tuple[weakref.ref, np.ndarray]] = {}
_SORTED_LOCK = threading.Lock()


def _sorted(x: np.ndarray) -> np.ndarray:
    """np.sort(x), reused for a read-only array that owns its data (nothing can change it in
    place): summary.py pools each row once and compares it with up to three references, so the
    same array would be sorted once per comparison. Entries die with their array."""
    if x.flags.writeable or not x.flags.owndata:
        return x if _is_sorted(x) else np.sort(x)
    with _SORTED_LOCK:
        hit = _SORTED.get(id(x))
    if hit is not None and hit[0]() is x:
        return hit[1]
    xs = x if _is_sorted(x) else np.sort(x)
    key = id(x)

    def forget(_ref: weakref.ref) -> None:
        with _SORTED_LOCK:
            if _SORTED.get(key, (None,))[0] is _ref:
                del _SORTED[key]

    with _SORTED_LOCK:
        _SORTED[key] = (weakref.ref(x, forget), xs)
    return xs


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
    big = min(xa.size, xb.size) >= ORDER_STAT_MIN_N
    # The median of the sorted copy is the same number (same two middle values) and costs less
    # once the bootstrap below has sorted it anyway.
    ratio = float(np.median(_sorted(xa)) / np.median(_sorted(xb))) if big else float(np.median(xa) / np.median(xb))
    if xa.size < 2 or xb.size < 2:
        # One sample has no spread to resample: report the ratio, but never call a difference.
        return Comparison(ratio, None, None, confidence, int(xa.size), int(xb.size), "no difference")
    rng = np.random.default_rng(seed)
    if big:
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


def fmt_ratio(c: Comparison | None, interval: Literal["next", "ci"] = "next") -> str:
    """"0.85× [0.82–0.88]" or "—". The bracket is the next-run (prediction) interval where the
    comparison has one (interval="ci": always the confidence interval)."""
    if c is None or c.ratio is None:
        return "—"
    lo, hi = (c.next_low, c.next_high) if interval == "next" and c.next_low is not None else (c.low, c.high)
    if lo is None or hi is None:
        return f"{c.ratio:.2f}×"
    return f"{c.ratio:.2f}× [{lo:.2f}–{hi:.2f}]"


def fmt_ci(c: Comparison | None) -> str:
    """The confidence interval alone, "[0.82–0.88]", or "—" (tables show it beside fmt_ratio)."""
    if c is None or c.low is None or c.high is None:
        return "—"
    return f"[{c.low:.2f}–{c.high:.2f}]"


# ---------------------------------------------------------------------------------------------
# Independent runs: several processes (host runner) or several reports (phones, browsers)
#
# Samples taken inside one process are not independent: a process can land in a slow state
# (allocator, thread placement, a neighbour on the core) and keep it for its whole life, so a
# bootstrap over its samples claims a precision the next process contradicts. With several runs
# the interval comes from a hierarchical bootstrap: resample the runs, then the samples inside
# each drawn run, and take the pooled median. Between-run variation then widens the interval;
# within-run noise still counts when runs agree.

STABILITY_TOLERANCE = 0.05  # runs whose medians differ by more than 5 % AND disagree beyond their intervals: unstable
_CHUNK_ELEMENTS = 2_000_000  # bound the (resamples x runs x samples) block held in memory at once


def _clean_runs(runs: Sequence[Sequence[float] | np.ndarray]) -> list[np.ndarray]:
    out = [r for r in (np.asarray(r, dtype=np.float64).ravel() for r in runs) if r.size]
    if out:
        _clean(np.concatenate(out))  # the same check as _clean of each run, once over all of them
    return out


def _hierarchical_medians(runs: list[np.ndarray], resamples: int, rng: np.random.Generator,
                          picks: np.ndarray | None = None) -> np.ndarray:
    """`resamples` pooled medians of a two-level resample: k runs drawn with replacement, then each
    drawn run's own number of samples drawn with replacement from it. `picks` (resamples x k run
    indices) lets two sides share their run draws (paired processes)."""
    k = len(runs)
    sizes = np.array([r.size for r in runs])
    if picks is None:
        picks = rng.integers(k, size=(resamples, k))
    if int(sizes.min()) >= HIERARCHICAL_NORMAL_MIN_N:
        return _hierarchical_medians_normal(runs, rng, picks)
    nmax = int(sizes.max())
    table = np.full((k, nmax), np.nan)
    for i, r in enumerate(runs):
        table[i, : r.size] = r
    equal = bool(np.all(sizes == nmax))
    out = np.empty(resamples)
    step = max(1, _CHUNK_ELEMENTS // (k * nmax))
    for start in range(0, resamples, step):
        g = picks[start : start + step]  # (m, k) drawn runs
        n_g = sizes[g][..., None]  # (m, k, 1) size of each drawn run
        idx = (rng.random((g.shape[0], k, nmax)) * n_g).astype(np.int64)
        vals = table[g[..., None], idx]
        if equal:
            out[start : start + g.shape[0]] = np.median(vals.reshape(g.shape[0], -1), axis=1)
        else:
            vals = np.where(np.arange(nmax) < n_g, vals, np.nan)
            out[start : start + g.shape[0]] = np.nanmedian(vals.reshape(g.shape[0], -1), axis=1)
    return out


HIERARCHICAL_NORMAL_MIN_N = 200  # every run at least this long: the second level by its count distribution


def _hierarchical_medians_normal(runs: list[np.ndarray], rng: np.random.Generator, picks: np.ndarray) -> np.ndarray:
    """`_hierarchical_medians` without drawing the samples (the dashboard pools up to 50 reports of
    hundreds of samples: 2000 x 15,000 draws took 1.7 s per side, this ~1/50 of it).

    Given the drawn runs (c_i copies of run i), the second level is c_i * n_i draws with replacement
    from run i, so the number of pooled values <= v is a sum of independent Binomial(c_i n_i, F_i(v))
    (F_i: run i's empirical CDF) and the pooled median M has P(M <= v) = P(count(<= v) >= h),
    h = ceil(N / 2). That count is taken as normal (mean and variance of the binomial sum, continuity
    corrected: every n_i >= HIERARCHICAL_NORMAL_MIN_N), and M is drawn by inverting its CDF with one
    uniform, on the values between the runs' 0.5 -/+ 6/sqrt(n_i) quantiles (M cannot leave them but
    with negligible probability). Exact in the first level; the second differs from drawing by the
    normal approximation only (tested against the drawn version)."""
    from scipy.special import ndtr

    k, m = len(runs), picks.shape[0]
    # how often each run was drawn per resample: integer counts, as np.add.at gives them, in one bincount
    icounts = np.bincount((np.arange(m)[:, None] * k + picks).ravel(), minlength=m * k).reshape(m, k)
    u = rng.random(m)
    # The result is a pure function of the runs' samples, the counts and u: the dashboard compares
    # one window with two or three references (and a reference with every row), and compare_runs
    # draws the same counts and u for every call with the same seed and run counts, so each
    # (window, side) is computed once. The key is a digest of exactly those inputs.
    key = _medians_key(runs, icounts, u)
    with _MEDIANS_LOCK:
        hit = _MEDIANS.get(key)
        if hit is not None:
            _MEDIANS.move_to_end(key)
            return hit.copy()
    grid, ft, fvt, sizes = _normal_tables(runs)
    draws = icounts.astype(np.float64) * sizes  # (m, k) draws from each run
    h = np.ceil(draws.sum(axis=1) / 2)

    buf = np.empty_like(draws)

    def cdf(j: np.ndarray) -> np.ndarray:  # P(M <= grid[j] | drawn runs), one j per resample
        # ft[j] is F_i(grid[j]) of every run as one contiguous row: the same products and sums as
        # over f[:, j].T, without the strided gather (and into one reused buffer)
        mean = np.multiply(draws, np.take(ft, j, axis=0, out=buf), out=buf).sum(axis=1)
        var = np.multiply(draws, np.take(fvt, j, axis=0, out=buf), out=buf).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (mean - h + 0.5) / np.sqrt(var)
        return ndtr(np.where(var > 0, z, np.where(mean >= h, np.inf, -np.inf)))

    # the first grid index whose CDF reaches u, by bisection (the CDF rises with j)
    left, right = np.zeros(m, dtype=np.int64), np.full(m, grid.size - 1, dtype=np.int64)
    while np.any(left < right):
        mid = (left + right) // 2
        up = cdf(mid) >= u
        right, left = np.where(up, mid, right), np.where(up, left, mid + 1)
    idx = left
    out = grid[idx]
    out.flags.writeable = False
    with _MEDIANS_LOCK:
        _MEDIANS[key] = out
        while len(_MEDIANS) > _MEDIANS_MAX:
            _MEDIANS.popitem(last=False)
    return out.copy()


_MEDIANS: OrderedDict[bytes, np.ndarray] = OrderedDict()  # _medians_key -> bootstrap medians (16 kB each)
_MEDIANS_LOCK = threading.Lock()
_MEDIANS_MAX = 1024


def _medians_key(runs: list[np.ndarray], counts: np.ndarray, u: np.ndarray) -> bytes:
    """blake2b of every input of `_hierarchical_medians_normal`'s result: the run sizes and samples
    (in run order), the per-resample draw counts and the uniforms."""
    d = hashlib.blake2b(digest_size=32)
    d.update(np.array([r.size for r in runs], dtype=np.int64).tobytes())
    for r in runs:
        d.update(np.ascontiguousarray(r, dtype=np.float64).tobytes())
    d.update(np.array(counts.shape, dtype=np.int64).tobytes())
    d.update((counts.astype(np.uint8) if counts.max(initial=0) < 256 else counts.astype(np.int64)).tobytes())
    d.update(u.tobytes())
    return d.digest()


def _normal_tables(runs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(grid, F (J x k), F(1 - F) (J x k), run sizes) of `_hierarchical_medians_normal`: the pooled
    values between the runs' 0.5 -/+ 6/sqrt(n_i) quantiles and every run's empirical CDF on them.
    Runs of one length are sorted and their quantiles taken as one 2-D array (row by row the same
    numbers as one run at a time); the CDF counts come from one searchsorted of all samples into
    the grid and a cumulative bincount (the same integers as a searchsorted per run)."""
    k = len(runs)
    n = np.array([r.size for r in runs])
    lo = hi = None
    xs: list[np.ndarray | None] = [None] * k
    for size in np.unique(n):
        rows = np.flatnonzero(n == size)
        block = np.sort(np.stack([runs[i] for i in rows]), axis=1)
        q_lo = max(0.0, 0.5 - 6 / math.sqrt(size))
        q_hi = min(1.0, 0.5 + 6 / math.sqrt(size))
        b_lo, b_hi = float(np.quantile(block, q_lo, axis=1).min()), float(np.quantile(block, q_hi, axis=1).max())
        lo = b_lo if lo is None else min(lo, b_lo)
        hi = b_hi if hi is None else max(hi, b_hi)
        for r, i in enumerate(rows):
            xs[i] = block[r]
    pooled = np.concatenate(xs)
    grid = np.unique(pooled[(pooled >= lo) & (pooled <= hi)])
    j = grid.size
    # sample x <= grid[t] exactly when t >= (number of grid values < x): count each sample at that
    # index and accumulate down the grid
    pos = np.searchsorted(grid, pooled, side="left")
    hist = np.bincount(pos * k + np.repeat(np.arange(k), n), minlength=(j + 1) * k).reshape(j + 1, k)
    below = np.cumsum(hist[:j], axis=0)  # (J, k): samples of run i <= grid[t]
    ft = below / n  # F_i(grid), the same division as count / x.size
    return grid, ft, ft * (1 - ft), n.astype(np.float64)


@functools.lru_cache(maxsize=64)
def _run_picks_cached(seed: int, resamples: int, ka: int, kb: int, paired: bool) -> tuple[dict, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    picks_a = rng.integers(ka, size=(resamples, ka))
    picks_b = picks_a if paired else rng.integers(kb, size=(resamples, kb))
    picks_a.flags.writeable = picks_b.flags.writeable = False
    return rng.bit_generator.state, picks_a, picks_b


def _run_picks(seed: int, resamples: int, ka: int, kb: int, paired: bool) -> tuple[np.random.Generator, np.ndarray, np.ndarray]:
    """compare_runs' first-level draws (runs drawn per resample, a then b) and the generator right
    after them: default_rng(seed), then integers(ka, (resamples, ka)), then (unless paired)
    integers(kb, (resamples, kb)). A pure function of the arguments, drawn once per combination
    (the dashboard compares hundreds of 50-run windows with the same seed)."""
    state, picks_a, picks_b = _run_picks_cached(seed, resamples, ka, kb, paired)
    rng = np.random.default_rng(seed)
    rng.bit_generator.state = state
    return rng, picks_a, picks_b


def compare_runs(
    a_runs: Sequence[Sequence[float] | np.ndarray],
    b_runs: Sequence[Sequence[float] | np.ndarray],
    *,
    paired: bool = False,
    confidence: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> Comparison:
    """`compare` for sample sets that come in independent runs (a list of sample lists per side).

    ratio = pooled median(a) / pooled median(b); the interval is a hierarchical percentile
    bootstrap (runs, then samples within a run), so it is as wide as the runs disagree. `paired`:
    run i of a and run i of b were measured in the same time window (the host runner's process i
    of every artifact, rounds interleaved) — they are drawn together, which cancels drift that hit
    both. n_a/n_b count samples; with one run per side this is `compare`'s interval (samples only),
    which cannot see between-run variation (`stability` then says None).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples < 100:
        raise ValueError(f"resamples must be >= 100 for a usable interval, got {resamples}")
    ra, rb = _clean_runs(a_runs), _clean_runs(b_runs)
    na, nb = sum(r.size for r in ra), sum(r.size for r in rb)
    if not ra or not rb:
        return Comparison(None, None, None, confidence, na, nb, None)
    if paired and len(ra) != len(rb):
        raise ValueError(f"paired runs need as many runs on each side, got {len(ra)} and {len(rb)}")
    ratio = float(np.median(np.concatenate(ra)) / np.median(np.concatenate(rb)))
    if na < 2 or nb < 2:
        return Comparison(ratio, None, None, confidence, na, nb, "no difference")
    rng, picks_a, picks_b = _run_picks(seed, resamples, len(ra), len(rb), paired)
    ratios = _hierarchical_medians(ra, resamples, rng, picks_a) / _hierarchical_medians(rb, resamples, rng, picks_b)
    alpha = (1 - confidence) / 2
    low, high = (float(v) for v in np.quantile(ratios, [alpha, 1 - alpha]))
    next_low, next_high = next_run_interval(ratio, ratios, min(len(ra), len(rb)), confidence)
    verdict: Verdict = "faster" if high < 1 else "slower" if low > 1 else "no difference"
    return Comparison(ratio, low, high, confidence, na, nb, verdict, next_low, next_high)


NEXT_RUN_SHIFTS = 16  # pairings of the bootstrap replicates whose differences estimate run-to-run differences


def next_run_interval(ratio: float, replicates: np.ndarray, runs: int, confidence: float = 0.95) -> tuple[float, float]:
    """Prediction interval for the ratio a repeated run (same protocol, same number of runs)
    would report, from the bootstrap replicates of this run's ratio.

    Why not the confidence interval: it says where the true ratio lies, given this run. A repeat
    reports its own estimate, with its own error: on the log scale T2 - T1 = e2 - e1, whose
    variance is twice a run's (2 se^2 for independent runs of the same protocol), so an interval
    meant to contain the next run's ratio is about sqrt(2) wider (with a normal bootstrap
    distribution: T1 +- z * sqrt(2) * se_boot). Built here without the normal assumption: the
    difference of two independent bootstrap replicates, log r*_i - log r*_j, has the law of
    e2 - e1 as the bootstrap sees it; its alpha/2 and 1 - alpha/2 quantiles around log(ratio)
    give the interval. The replicates are iid, so replicate i minus replicate i + s (s from
    NEXT_RUN_SHIFTS shifts) are independent pairs; each shift gives `resamples` differences.

    Small K: the bootstrap over K runs estimates the between-run variance with divisor K (the
    variance of a resampled mean of K values is (K - 1)/K of the unbiased estimate), so the
    differences are scaled by sqrt(K / (K - 1)): 1.22 at K = 3, 1.12 at K = 5 (for unpaired sides
    with different K, the smaller: the wider interval). With one run (K = 1) the replicates are the
    sample bootstrap, which cannot see between-run variation at all: no scaling, and the interval
    is as overconfident as that bootstrap (`stability` then says "cannot be judged")."""
    lr = np.log(replicates[np.isfinite(replicates) & (replicates > 0)])
    if lr.size < 2:
        return ratio, ratio
    b = lr.size
    step = max(1, (b - 1) // NEXT_RUN_SHIFTS)
    diffs = np.concatenate([lr - np.roll(lr, s) for s in range(1, b, step)][:NEXT_RUN_SHIFTS])
    if runs >= 2:
        diffs *= math.sqrt(runs / (runs - 1))
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(diffs, [alpha, 1 - alpha])
    return float(ratio * math.exp(lo)), float(ratio * math.exp(hi))


def median_interval(samples: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float] | None:
    """Distribution-free interval for the median of one run: order statistics x_(j), x_(n+1-j)
    with j from Binomial(n, 1/2) (no resampling, no seed). None without samples."""
    xs = np.sort(_clean(samples))
    n = xs.size
    if n == 0:
        return None
    j = _median_interval_rank(n, confidence)
    return float(xs[max(j - 1, 0)]), float(xs[min(n - j, n - 1)])


@functools.lru_cache(maxsize=1024)
def _median_interval_rank(n: int, confidence: float) -> int:
    """The 1-based order statistic of `median_interval` (0 for tiny n): a pure function of n and
    the confidence, and a dashboard row's 50 runs mostly share n."""
    from scipy.stats import binom

    return int(binom.ppf((1 - confidence) / 2, n, 0.5))


@dataclass(frozen=True)
class Stability:
    """Do independent runs of one measurement agree?

    stable is None with fewer than two runs (nothing to judge, never "stable" by default).
    values: per-run medians (or per-run median ratios when a baseline is given), intervals: their
    95 % intervals, spread: max(values) / min(values) - 1.
    """

    stable: bool | None
    runs: int
    values: list[float]
    intervals: list[tuple[float, float]]
    spread: float | None
    tolerance: float
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def stability(
    runs: Sequence[Sequence[float] | np.ndarray],
    baseline_runs: Sequence[Sequence[float] | np.ndarray] | None = None,
    *,
    tolerance: float = STABILITY_TOLERANCE,
    confidence: float = 0.95,
) -> Stability:
    """Unstable = two runs disagree beyond what their combined variance allows AND by more than
    `tolerance` (max/min - 1). Both are needed: long runs make tiny, harmless shifts
    "significant", and a large shift inside wide intervals is noise the interval already shows.

    "Beyond their combined variance": for runs i, j with values v and 95 % intervals, on the log
    scale se = (log hi - log lo) / (2 z) and the pair disagrees when |log v_i - log v_j| >
    z * sqrt(se_i^2 + se_j^2) — the difference of two independent estimates has the sum of their
    variances (the reasoning of `next_run_interval`). The old test, disjoint intervals, allowed
    z * (se_i + se_j): up to sqrt(2) more, which let real disagreements pass.

    With `baseline_runs` (paired by index, as the host runner's processes are) the per-run value
    is the ratio median(run_i) / median(baseline_i) with interval [lo_a/hi_b, hi_a/lo_b]: a row of
    a ratio table is judged on what it reports, and drift that hit both models cancels.
    """
    ra = [_clean(r) for r in runs]
    if baseline_runs is not None:
        rb = [_clean(r) for r in baseline_runs]
        if len(rb) != len(ra):
            raise ValueError(f"paired runs need as many runs on each side, got {len(ra)} and {len(rb)}")
        keep = [(a, b) for a, b in zip(ra, rb) if a.size and b.size]
        values = [float(np.median(a) / np.median(b)) for a, b in keep]
        intervals = []
        for a, b in keep:
            (la, ha), (lb, hb) = median_interval(a, confidence), median_interval(b, confidence)
            intervals.append((la / hb, ha / lb))
    else:
        keep_a = [a for a in ra if a.size]
        values = [float(np.median(a)) for a in keep_a]
        intervals = [median_interval(a, confidence) for a in keep_a]
    k = len(values)
    if k < 2:
        return Stability(None, k, values, intervals, None, tolerance, f"{k} run(s): stability cannot be judged")
    spread = max(values) / min(values) - 1
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    logv = np.log(values)
    se = np.array([(math.log(hi) - math.log(lo)) / (2 * z) for lo, hi in intervals])
    beyond = bool(np.any(np.abs(logv[:, None] - logv[None, :]) > z * np.sqrt(se[:, None] ** 2 + se[None, :] ** 2)))
    unstable = beyond and spread > tolerance
    if unstable:
        reason = f"runs disagree by {spread:.0%} (> {tolerance:.0%}) beyond their intervals"
    elif beyond:
        reason = f"runs differ beyond their intervals but only by {spread:.1%} (<= {tolerance:.0%})"
    else:
        reason = f"{k} runs agree within their intervals (spread {spread:.1%})"
    return Stability(not unstable, k, values, intervals, spread, tolerance, reason)


def row_verdict(c: Comparison, *stabilities: Stability, anomaly_op: str | None = None) -> str:
    """The verdict cell of a ratio row: "unstable" (any side's runs disagree: no faster/slower),
    else the comparison's verdict, "driven by a runtime anomaly in <op>" appended when the
    baseline's runtime is anomalously slow on that op (anomaly.py)."""
    if c.ratio is None:
        return "—"
    bad = [s for s in stabilities if s.stable is False]
    if bad:
        return "unstable: " + "; ".join(s.reason for s in bad)
    text = c.verdict or "—"
    if anomaly_op and c.verdict in ("faster", "slower"):
        text += f", driven by a runtime anomaly in {anomaly_op}"
    return text
