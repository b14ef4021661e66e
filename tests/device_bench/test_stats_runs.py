"""Independent runs: hierarchical bootstrap intervals that cover the next run, stability verdicts."""

from __future__ import annotations

import numpy as np
import pytest

from device_bench.stats import Comparison, compare, compare_runs, median_interval, row_verdict, stability


def _runs(rng, k: int, n: int, median: float, between: float, within: float) -> list[np.ndarray]:
    """k processes: each has its own level (lognormal, sd `between`), tight samples around it."""
    levels = median * np.exp(rng.normal(0, between, size=k))
    return [lv * np.exp(rng.normal(0, within, size=n)) for lv in levels]


def test_hierarchical_interval_covers_a_new_process_and_naive_one_does_not():
    """Within-process samples are tight (0.5 %) but process levels differ (8 %): the naive
    sample bootstrap over pooled samples misses the next process's ratio, the hierarchical one
    covers it. Counted over 40 independent trials so that a wrong method fails clearly."""
    rng = np.random.default_rng(7)
    hier_hits = naive_hits = 0
    hier_width, naive_width = [], []
    trials = 40
    for _ in range(trials):
        a = _runs(rng, 5, 40, 10.0, 0.08, 0.005)
        b = _runs(rng, 5, 40, 20.0, 0.08, 0.005)
        new = float(np.median(_runs(rng, 1, 40, 10.0, 0.08, 0.005)[0]) / np.median(_runs(rng, 1, 40, 20.0, 0.08, 0.005)[0]))
        h = compare_runs(a, b, resamples=500)
        nv = compare(np.concatenate(a), np.concatenate(b), resamples=500)
        hier_hits += h.low <= new <= h.high
        naive_hits += nv.low <= new <= nv.high
        hier_width.append(h.high / h.low - 1)
        naive_width.append(nv.high / nv.low - 1)
    assert hier_hits / trials >= 0.75, hier_hits
    assert naive_hits / trials <= 0.3, naive_hits
    assert np.median(hier_width) > 5 * np.median(naive_width)


def test_hierarchical_interval_stays_narrow_when_processes_agree():
    """No between-process variation: the hierarchical interval is about as wide as the naive one
    (it does not buy coverage with needless width)."""
    rng = np.random.default_rng(3)
    a = _runs(rng, 5, 40, 10.0, 0.0, 0.02)
    b = _runs(rng, 5, 40, 20.0, 0.0, 0.02)
    h = compare_runs(a, b)
    nv = compare(np.concatenate(a), np.concatenate(b))
    assert h.high / h.low - 1 < 2.5 * (nv.high / nv.low - 1)
    assert h.low <= 0.5 <= h.high and h.verdict == "faster"


def test_paired_runs_cancel_drift_common_to_both_models():
    """Process i of both models ran in the same window; a machine-wide slowdown in one window
    moves both. Paired resampling keeps the ratio tight, unpaired resampling widens it."""
    rng = np.random.default_rng(5)
    drift = np.array([1.0, 1.3, 0.9, 1.15, 1.0])
    a = [d * 10 * np.exp(rng.normal(0, 0.01, 40)) for d in drift]
    b = [d * 20 * np.exp(rng.normal(0, 0.01, 40)) for d in drift]
    p, u = compare_runs(a, b, paired=True), compare_runs(a, b, paired=False)
    assert p.high / p.low < u.high / u.low
    assert p.high / p.low - 1 < 0.05
    with pytest.raises(ValueError, match="as many runs"):
        compare_runs(a, b[:3], paired=True)


def test_compare_runs_uneven_runs_and_missing_sides():
    rng = np.random.default_rng(1)
    a = [10 + rng.random(n) for n in (5, 30, 12)]
    b = [20 + rng.random(n) for n in (25, 8)]
    c = compare_runs(a, b)
    assert c.n_a == 47 and c.n_b == 33 and c.low <= c.ratio <= c.high and c.verdict == "faster"
    assert compare_runs(a, b) == c  # fixed seed: same data, same interval
    assert compare_runs([], b).ratio is None and compare_runs([[]], b).verdict is None


def test_median_interval_is_distribution_free():
    x = np.arange(1, 51, dtype=float)  # median 25.5; Binomial(50, 1/2) 2.5 % point is 18
    lo, hi = median_interval(x)
    assert (lo, hi) == (18.0, 33.0)
    assert median_interval([3.0]) == (3.0, 3.0) and median_interval([]) is None


def test_stability_flags_runs_that_disagree_beyond_intervals():
    rng = np.random.default_rng(11)
    steady = _runs(rng, 3, 50, 30.0, 0.0, 0.01)
    jumpy = [30 * np.exp(rng.normal(0, 0.01, 50)), 35.4 * np.exp(rng.normal(0, 0.01, 50)), 29 * np.exp(rng.normal(0, 0.01, 50))]
    assert stability(steady).stable is True
    s = stability(jumpy)
    assert s.stable is False and s.spread == pytest.approx(35.4 / 29 - 1, rel=0.03) and "disagree" in s.reason
    # a small shift, significant on long runs, is not "unstable" below the tolerance
    tiny = [30 * np.exp(rng.normal(0, 0.001, 500)), 30.6 * np.exp(rng.normal(0, 0.001, 500))]
    t = stability(tiny)
    assert t.stable is True and "only by" in t.reason
    # a large shift inside wide intervals is noise the interval already shows
    noisy = [30 * np.exp(rng.normal(0, 0.5, 10)), 36 * np.exp(rng.normal(0, 0.5, 10))]
    assert stability(noisy).stable is True
    one = stability(steady[:1])
    assert one.stable is None and one.spread is None


def test_stability_of_paired_ratios_ignores_common_drift():
    rng = np.random.default_rng(2)
    drift = [1.0, 1.25, 0.95]
    a = [d * 10 * np.exp(rng.normal(0, 0.01, 50)) for d in drift]
    b = [d * 20 * np.exp(rng.normal(0, 0.01, 50)) for d in drift]
    assert stability(a).stable is False  # each model alone moved with the machine
    assert stability(a, b).stable is True  # the ratio did not
    b_jump = [b[0], b[1] * 1.2, b[2]]
    assert stability(a, b_jump).stable is False


def test_row_verdict_never_calls_an_unstable_row():
    rng = np.random.default_rng(4)
    c = compare_runs([10 + rng.random(30)], [20 + rng.random(30)])
    jumpy = stability([np.full(20, 10.0) * np.exp(rng.normal(0, 0.01, 20)), np.full(20, 13.0) * np.exp(rng.normal(0, 0.01, 20))])
    steady = stability([10 + rng.random(20), 10 + rng.random(20)])
    assert c.verdict == "faster"
    assert row_verdict(c, steady) == "faster"
    assert row_verdict(c, steady, jumpy).startswith("unstable")
    assert row_verdict(c, steady, anomaly_op="depthwise Conv 7x7") == "faster, driven by a runtime anomaly in depthwise Conv 7x7"
    assert row_verdict(Comparison(None, None, None, 0.95, 0, 0, None)) == "—"


@pytest.mark.parametrize(("k", "n", "between", "paired"), [(50, 300, 0.0, False), (50, 300, 0.05, False), (5, 300, 0.1, True),
                                                           (3, 1000, 0.02, False), (10, 200, 0.0, True)])
def test_long_runs_take_the_count_distribution_and_agree_with_drawing(monkeypatch, k, n, between, paired):
    """Runs of >= HIERARCHICAL_NORMAL_MIN_N samples (the dashboard's windows: up to 50 reports of
    hundreds of samples) skip drawing the second level; the interval equals the drawn one within
    Monte-Carlo error (5 % of its width at each end)."""
    import device_bench.stats as st

    rng = np.random.default_rng(k * n)
    a, b = _runs(rng, k, n, 10.0, between, 0.05), _runs(rng, k, n, 20.0, between, 0.08)
    fast = compare_runs(a, b, paired=paired)
    calls = []
    monkeypatch.setattr(st, "_hierarchical_medians_normal", lambda *x: calls.append(1))  # the drawn path must not call it
    monkeypatch.setattr(st, "HIERARCHICAL_NORMAL_MIN_N", n + 1)
    drawn = compare_runs(a, b, paired=paired)
    assert not calls
    width = drawn.high - drawn.low
    assert fast.ratio == drawn.ratio
    assert abs(fast.low - drawn.low) < 0.05 * width and abs(fast.high - drawn.high) < 0.05 * width


def test_next_run_interval_covers_a_repeat_run_and_the_confidence_interval_does_not():
    """The done-means of issue 14 is a statement about a repeat: run 2's ratio inside run 1's
    interval. Simulated runs of K = 5 processes (process levels 3 % apart, samples 1 %), a second
    run of the same protocol each time: the next-run interval contains run 2's ratio at about
    its nominal 95 %, the confidence interval clearly less often (it describes the true ratio,
    not a repeat's estimate, and is ~sqrt(2) narrower)."""
    rng = np.random.default_rng(11)
    trials, next_hits, ci_hits, ratio_of_widths = 120, 0, 0, []
    for _ in range(trials):
        one = compare_runs(_runs(rng, 5, 20, 10.0, 0.03, 0.01), _runs(rng, 5, 20, 20.0, 0.03, 0.01), resamples=1000)
        two = compare_runs(_runs(rng, 5, 20, 10.0, 0.03, 0.01), _runs(rng, 5, 20, 20.0, 0.03, 0.01), resamples=200)
        next_hits += one.next_low <= two.ratio <= one.next_high
        ci_hits += one.low <= two.ratio <= one.high
        ratio_of_widths.append(np.log(one.next_high / one.next_low) / np.log(one.high / one.low))
    assert next_hits / trials >= 0.9, next_hits
    assert ci_hits / trials <= next_hits / trials - 0.08, (ci_hits, next_hits)
    # sqrt(2) from the difference of two runs, sqrt(5/4) for the bootstrap's divisor-K variance
    assert 1.4 < float(np.median(ratio_of_widths)) < 1.8


def test_next_run_interval_contains_the_ratio_and_the_confidence_interval():
    rng = np.random.default_rng(2)
    c = compare_runs(_runs(rng, 3, 20, 10.0, 0.05, 0.01), _runs(rng, 3, 20, 20.0, 0.05, 0.01))
    assert c.next_low < c.low <= c.ratio <= c.high < c.next_high
    assert compare([1.0, 1.1, 1.2], [2.0, 2.1]).next_low is None  # samples of one run say nothing about a repeat


def test_stability_compares_two_runs_on_their_combined_variance():
    """Two runs whose 95 % intervals just overlap but whose difference is beyond
    1.96 * sqrt(se_a^2 + se_b^2): they disagree (the old "disjoint intervals" test let it pass).
    Samples at exact normal quantiles, so medians and order-statistic intervals are deterministic."""
    from scipy.stats import norm

    n = 400
    base = 10 + norm.ppf((np.arange(n) + 0.5) / n)  # median 10, sd 1
    lo, hi = median_interval(base)
    se = (np.log(hi) - np.log(lo)) / (2 * 1.96)
    shift = 10 * (np.exp(1.7 * 1.96 * se) - 1)  # between sqrt(2) and 2 times 1.96 se apart
    shifted = base + shift
    assert median_interval(shifted)[0] < hi  # the intervals overlap
    s = stability([base, shifted], tolerance=0.0)
    assert s.stable is False and "beyond their intervals" in s.reason
    assert stability([base, base + 10 * (np.exp(1.2 * 1.96 * se) - 1)], tolerance=0.0).stable is True
