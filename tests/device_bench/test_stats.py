"""Statistics from raw samples: known values, None for missing, bootstrap verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from device_bench.stats import compare, fmt, fmt_ratio, summarize


def test_summary_of_known_samples():
    s = summarize([1.0, 2.0, 3.0, 4.0, 100.0])
    assert s.n == 5 and s.median == 3.0 and s.min == 1.0 and s.max == 100.0
    assert s.p10 == pytest.approx(1.4) and s.p90 == pytest.approx(61.6)
    assert s.iqr == pytest.approx(2.0)
    assert s.trimmed_mean == pytest.approx(22.0)  # 10 % of 5 rounds to 0 cut: plain mean
    assert s.cv == pytest.approx(np.std([1, 2, 3, 4, 100], ddof=1) / 22.0)


def test_trimmed_mean_ignores_outliers():
    x = [10.0] * 18 + [1000.0, 2000.0]
    assert summarize(x).trimmed_mean == pytest.approx(10.0)
    assert summarize(x).median == 10.0


@pytest.mark.parametrize("samples", [[], [5.0]])
def test_missing_values_are_none_not_zero(samples):
    s = summarize(samples)
    assert s.n == len(samples)
    assert s.iqr is None and s.std is None and s.cv is None
    if not samples:
        assert s.median is None and s.p99 is None and s.trimmed_mean is None
    assert fmt(s.cv) == "—"


@pytest.mark.parametrize("bad", [[1.0, float("nan")], [1.0, -1.0], [0.0], [float("inf")]])
def test_invalid_samples_raise(bad):
    with pytest.raises(ValueError, match="finite and > 0"):
        summarize(bad)


@pytest.mark.parametrize(
    ("scale", "verdict"),
    [(0.8, "faster"), (1.25, "slower"), (1.0, "no difference")],
)
def test_compare_calls_difference_only_when_interval_excludes_one(scale, verdict):
    rng = np.random.default_rng(1)
    b = 10 + rng.gamma(2.0, 0.2, size=200)
    a = scale * (10 + rng.gamma(2.0, 0.2, size=200))
    c = compare(a, b)
    assert c.verdict == verdict
    assert c.low <= c.ratio <= c.high
    assert (c.high < 1 or c.low > 1) == (verdict != "no difference")


def test_compare_overlapping_noise_is_no_difference():
    rng = np.random.default_rng(2)
    a = rng.normal(10, 2, size=8).clip(1)
    b = rng.normal(10.5, 2, size=8).clip(1)
    assert compare(a, b).verdict == "no difference"


def test_compare_is_deterministic_with_fixed_seed():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(5, 6, 50), rng.uniform(5, 7, 50)
    assert compare(a, b) == compare(a, b)
    assert compare(a, b, seed=1) != compare(a, b, seed=2)


def test_compare_missing_side_is_none():
    c = compare([], [1.0, 2.0])
    assert c.ratio is None and c.verdict is None
    assert fmt_ratio(c) == "—"
    one = compare([2.0], [1.0, 1.0])
    assert one.ratio == 2.0 and one.low is None and one.verdict == "no difference"


def test_compare_rejects_bad_arguments():
    with pytest.raises(ValueError, match="confidence"):
        compare([1.0, 2.0], [1.0, 2.0], confidence=1.5)
    with pytest.raises(ValueError, match="resamples"):
        compare([1.0, 2.0], [1.0, 2.0], resamples=10)


def test_fmt():
    assert fmt(None) == "—" and fmt(float("nan")) == "—"
    assert fmt(12.345) == "12.35" and fmt(0.61234) == "0.612" and fmt(1234.5, unit=" ms") == "1234 ms"


@pytest.mark.parametrize("n", [200, 201, 800])
def test_order_statistic_bootstrap_matches_resampling(n):
    from scipy.stats import bootstrap

    from device_bench.stats import _median_ratio

    rng = np.random.default_rng(n)
    a, b = rng.lognormal(1.6, 0.1, n), rng.lognormal(1.65, 0.12, n + 3)
    fast = compare(a, b)  # n >= 200: order-statistic path
    ref = bootstrap((a, b), _median_ratio, n_resamples=4000, vectorized=True, method="percentile",
                    rng=np.random.default_rng(0)).confidence_interval
    assert fast.low == pytest.approx(ref.low, rel=0.004) and fast.high == pytest.approx(ref.high, rel=0.004)
