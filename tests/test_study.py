"""hls.study: bootstrap intervals against scipy's t interval, paired comparisons, the free skip."""

import numpy as np
import pytest
import scipy.stats

from hls.fid import bootstrap_indices
from hls.study import compare, free_skip, interval


def test_interval_of_a_mean_matches_the_t_interval():
    x = np.random.default_rng(0).normal(3.0, 2.0, size=400)
    replicates = x[bootstrap_indices(len(x), 4000, seed=1)].mean(axis=1)  # [B]
    lo, hi = interval(x.mean(), replicates)
    t_lo, t_hi = scipy.stats.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=scipy.stats.sem(x))
    assert lo == pytest.approx(t_lo, abs=0.03) and hi == pytest.approx(t_hi, abs=0.03)  # half-width 0.2


def test_interval_is_moved_to_the_point_estimate():
    replicates = np.random.default_rng(0).normal(55.0, 1.2, size=2000)  # biased upwards, as resampled FIDs are
    lo, hi = interval(43.0, replicates)
    width = np.quantile(replicates, 0.975) - np.quantile(replicates, 0.025)
    assert lo < 43.0 < hi and hi - lo == pytest.approx(width)
    assert 43.0 - lo == pytest.approx(np.median(replicates) - np.quantile(replicates, 0.025))
    assert interval(43.0, replicates, level=0.5)[1] - interval(43.0, replicates, level=0.5)[0] < hi - lo


def test_compare_claims_only_beyond_the_interval():
    rng = np.random.default_rng(0)
    base = rng.normal(50.0, 1.5, size=1000)  # shared by both sets: paired replicates move together
    better = compare(45.0, base * 0.9 + rng.normal(0, 0.2, 1000), 50.0, base)
    assert better["verdict"] == "gain" and better["ratio"] == pytest.approx(0.9) and better["ratio_high"] < 1
    assert compare(50.0, base * 1.1, 45.0, base * 0.9 + rng.normal(0, 0.2, 1000))["verdict"] == "loss"
    noisy = compare(49.0, rng.normal(49.0, 2.0, 1000), 50.0, rng.normal(50.0, 2.0, 1000))  # unpaired noise
    assert noisy["verdict"] == "tie" and noisy["ratio_low"] < 1 < noisy["ratio_high"]
    # a tolerance widens the tie band
    assert compare(50.5, base * 1.01, 50.0, base, tolerance=0.02)["verdict"] == "tie"
    assert compare(50.5, base * 1.01, 50.0, base)["verdict"] == "loss"


def test_free_skip_is_the_largest_skip_not_lost_to_skip_0():
    rng = np.random.default_rng(0)
    shared = rng.normal(1.0, 0.03, size=500)  # paired replicates: each set is its FID times the shared factor
    fids = {0: 40.0, 10: 40.3, 20: 42.0, 30: 60.0}
    reps = {k: f * (shared + rng.normal(0, 0.002, 500)) for k, f in fids.items()}
    assert free_skip(fids, reps, 0.01) == 10  # 42 / 40 = 1.05 is a loss even at 1 % tolerance
    assert free_skip(fids, reps, 0.06) == 20
    assert free_skip({0: 40.0, 10: 45.0, 20: 39.0}, {0: reps[0], 10: reps[0] * 45 / 40, 20: reps[0] * 39 / 40},
                     0.01) == 20  # a better FID past a worse one counts
    assert free_skip({10: 40.0}, {10: reps[10]}, 0.5) is None
