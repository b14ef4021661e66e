"""The dashboard's hierarchical bootstrap, made fast without changing a number (issue 11, session 17).

`_hierarchical_medians_normal` builds its tables in one pass and keeps each result under a digest
of its inputs; `compare_runs` draws its first level once per seed and run counts. These tests hold
it to the straightforward formulation it replaced, bit for bit, and check that the kept results are
keyed by content (never by identity) and never handed out for other inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import device_bench.stats as st
from device_bench.stats import compare_runs, median_interval


def _reference_normal_medians(runs, rng, picks):
    """The session-16 implementation of `_hierarchical_medians_normal`: one run at a time, np.add.at
    counts, strided gathers (kept here as the oracle of the refactor)."""
    from scipy.special import ndtr

    xs = [np.sort(r) for r in runs]
    sizes = np.array([x.size for x in xs], dtype=np.float64)
    lo = min(float(np.quantile(x, max(0.0, 0.5 - 6 / math.sqrt(x.size)))) for x in xs)
    hi = max(float(np.quantile(x, min(1.0, 0.5 + 6 / math.sqrt(x.size)))) for x in xs)
    pooled = np.concatenate(xs)
    grid = np.unique(pooled[(pooled >= lo) & (pooled <= hi)])
    f = np.stack([np.searchsorted(x, grid, side="right") / x.size for x in xs])
    fv = f * (1 - f)
    k, m = len(xs), picks.shape[0]
    counts = np.zeros((m, k))
    np.add.at(counts, (np.repeat(np.arange(m), picks.shape[1]), picks.ravel()), 1.0)
    draws = counts * sizes
    h = np.ceil(draws.sum(axis=1) / 2)
    u = rng.random(m)

    def cdf(j):
        mean, var = (draws * f[:, j].T).sum(axis=1), (draws * fv[:, j].T).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = (mean - h + 0.5) / np.sqrt(var)
        return ndtr(np.where(var > 0, z, np.where(mean >= h, np.inf, -np.inf)))

    left, right = np.zeros(m, dtype=np.int64), np.full(m, grid.size - 1, dtype=np.int64)
    while np.any(left < right):
        mid = (left + right) // 2
        up = cdf(mid) >= u
        right, left = np.where(up, mid, right), np.where(up, left, mid + 1)
    return grid[left]


def _window(rng, k, sizes, decimals, level=5.0, between=0.03):
    shift = np.exp(rng.normal(0, between, size=k))
    return [np.round(level * s * rng.lognormal(0, 0.05, size=n), decimals) for s, n in zip(shift, sizes)]


@pytest.mark.parametrize("case", range(12))
def test_normal_medians_are_the_reference_bit_for_bit(case):
    """Equal run lengths (a dashboard window), mixed lengths, ties from rounded samples, 2..60 runs."""
    rng = np.random.default_rng(100 + case)
    k = int(rng.integers(2, 61))
    sizes = np.full(k, 300) if case % 2 == 0 else rng.integers(200, 900, size=k)
    runs = _window(rng, k, sizes, decimals=int(rng.integers(1, 6)), between=0.1 * rng.random())
    picks = rng.integers(k, size=(int(rng.integers(100, 2500)), k))
    st._MEDIANS.clear()
    fast = st._hierarchical_medians_normal(runs, np.random.default_rng(case), picks)
    ref = _reference_normal_medians(runs, np.random.default_rng(case), picks)
    assert np.array_equal(fast, ref)
    again = st._hierarchical_medians_normal(runs, np.random.default_rng(case), picks)  # from the kept result
    assert np.array_equal(again, ref)


def test_compare_runs_is_the_reference_bit_for_bit(monkeypatch):
    """compare_runs with the kept first-level draws and kept medians gives exactly the interval of
    fresh draws through the reference implementation (unpaired and paired, in any call order)."""
    rng = np.random.default_rng(3)
    a, b = _window(rng, 50, [300] * 50, 4), _window(rng, 50, [300] * 50, 4, level=9.0)
    c = _window(rng, 20, [250] * 20, 3, level=7.0)
    st._MEDIANS.clear()
    fast = [compare_runs(x, y, paired=p, seed=s) for x, y, p, s in
            [(a, b, False, 0), (c, b, False, 0), (a, b, True, 0), (a, b, False, 1), (a, b, False, 0)]]

    def fresh_picks(seed, resamples, ka, kb, paired):
        g = np.random.default_rng(seed)
        pa = g.integers(ka, size=(resamples, ka))
        return g, pa, pa if paired else g.integers(kb, size=(resamples, kb))

    monkeypatch.setattr(st, "_run_picks", fresh_picks)
    monkeypatch.setattr(st, "_hierarchical_medians_normal", _reference_normal_medians)
    ref = [compare_runs(x, y, paired=p, seed=s) for x, y, p, s in
           [(a, b, False, 0), (c, b, False, 0), (a, b, True, 0), (a, b, False, 1), (a, b, False, 0)]]
    assert [f.as_dict() for f in fast] == [r.as_dict() for r in ref]
    assert fast[0].as_dict() == fast[4].as_dict() and fast[0].as_dict() != fast[3].as_dict()


def test_kept_medians_are_keyed_by_content_not_identity():
    """A window whose array is changed in place after a call, or a window that differs in one
    sample, is computed afresh: the key is a digest of the samples, counts and uniforms."""
    rng = np.random.default_rng(11)
    runs = _window(rng, 30, [300] * 30, 4)
    picks = rng.integers(30, size=(500, 30))
    st._MEDIANS.clear()
    first = st._hierarchical_medians_normal(runs, np.random.default_rng(0), picks)
    first[:] = -1.0  # the caller owns what it gets: the kept result is not this array
    assert np.array_equal(st._hierarchical_medians_normal(runs, np.random.default_rng(0), picks),
                          _reference_normal_medians(runs, np.random.default_rng(0), picks))
    runs[7][:] = runs[7] * 1.5  # in place: same objects, other samples
    changed = st._hierarchical_medians_normal(runs, np.random.default_rng(0), picks)
    assert np.array_equal(changed, _reference_normal_medians(runs, np.random.default_rng(0), picks))
    other_u = st._hierarchical_medians_normal(runs, np.random.default_rng(1), picks)
    assert np.array_equal(other_u, _reference_normal_medians(runs, np.random.default_rng(1), picks))
    assert len(st._MEDIANS) == 3


def test_run_picks_continue_the_seeded_stream():
    """The kept first-level draws and the generator after them are those of default_rng(seed)."""
    for paired in (False, True):
        rng, pa, pb = st._run_picks(5, 300, 7, 7, paired)
        g = np.random.default_rng(5)
        ea = g.integers(7, size=(300, 7))
        eb = ea if paired else g.integers(7, size=(300, 7))
        assert np.array_equal(pa, ea) and np.array_equal(pb, eb)
        assert np.array_equal(rng.random(10), g.random(10))
        rng2, _, _ = st._run_picks(5, 300, 7, 7, paired)  # a new generator each call, same start
        assert np.array_equal(rng2.random(10), _fresh_after(5, 300, 7, paired).random(10))


def _fresh_after(seed, resamples, k, paired):
    g = np.random.default_rng(seed)
    g.integers(k, size=(resamples, k))
    if not paired:
        g.integers(k, size=(resamples, k))
    return g


def test_median_interval_rank_matches_binom_ppf():
    from scipy.stats import binom

    rng = np.random.default_rng(2)
    for n in (1, 2, 5, 30, 299, 300, 1001):
        x = rng.lognormal(size=n)
        j = int(binom.ppf(0.025, n, 0.5))
        xs = np.sort(x)
        assert median_interval(x) == (float(xs[max(j - 1, 0)]), float(xs[min(n - j, n - 1)]))


def test_invalid_samples_in_any_run_are_refused():
    good = [np.full(300, 5.0)] * 3
    for bad in (0.0, -1.0, np.nan, np.inf):
        runs = [r.copy() for r in good]
        runs[2][17] = bad
        with pytest.raises(ValueError):
            compare_runs(good, runs)
