"""Confidence intervals: the bootstrap over images against scipy's, the t interval over seeds against its formula."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from attrobust.reporting.intervals import Bootstrap, over_seeds


@pytest.mark.parametrize("n,resamples,confidence", [(40, 1000, 0.95), (7, 500, 0.9), (300, 2000, 0.99)])
def test_the_bootstrap_interval_is_scipys_percentile_bootstrap_with_the_same_generator(n, resamples, confidence):
    values = np.random.default_rng(1).random(n) ** 3  # skewed, as per-image measures often are
    ours = Bootstrap(resamples, confidence, seed=7).interval(values)
    theirs = stats.bootstrap((values,), np.mean, n_resamples=resamples, confidence_level=confidence,
                             method="percentile", vectorized=True, rng=np.random.default_rng(7)).confidence_interval
    np.testing.assert_allclose(ours, (theirs.low, theirs.high), rtol=1e-12)
    assert ours[0] < values.mean() < ours[1]


def test_nan_images_are_left_out_and_too_few_images_give_no_interval():
    values = np.array([0.2, np.nan, 0.4, 0.9, np.nan, 0.5])
    assert Bootstrap(seed=3).interval(values) == Bootstrap(seed=3).interval(values[~np.isnan(values)])
    assert all(math.isnan(v) for v in Bootstrap().interval([0.5]))
    assert all(math.isnan(v) for v in Bootstrap(resamples=0).interval(values))
    low, high = Bootstrap(seed=3).interval(values, scale=100.0)
    assert (low, high) == tuple(100.0 * v for v in Bootstrap(seed=3).interval(values))


def test_the_interval_over_seeds_is_students_t():
    means = [81.0, 77.5, 79.0]
    low, high = over_seeds(means)
    half = stats.t.ppf(0.975, 2) * np.std(means, ddof=1) / math.sqrt(3)
    assert low == pytest.approx(np.mean(means) - half) and high == pytest.approx(np.mean(means) + half)
    assert all(math.isnan(v) for v in over_seeds([80.0]))


@pytest.mark.parametrize("bad,key", [({"resamples": -1}, "bootstrap"), ({"confidence": 1.0}, "confidence")])
def test_bad_settings_name_their_key(bad, key):
    with pytest.raises(ValueError, match=key):
        Bootstrap(**bad)


@pytest.mark.parametrize("right,n", [(0, 20), (20, 20), (13, 20), (566, 1000)])
def test_accuracy_gets_wilsons_score_interval_which_does_not_collapse_at_the_edges(right, n):
    flags = np.arange(n) < right
    low, high = Bootstrap(confidence=0.95).proportion(flags)
    p, z = right / n, stats.norm.ppf(0.975)
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    assert (low, high) == pytest.approx((100 * (centre - half), 100 * (centre + half)))
    assert low < high and 0 <= low <= 100 * p <= high <= 100


def test_chunked_resamples_draw_what_one_call_would(monkeypatch):
    """Memory stays bounded for many images: resamples drawn in chunks give the interval of one draw."""
    from attrobust.reporting import intervals

    values = np.random.default_rng(2).random(300)
    whole = Bootstrap(1000, 0.95, seed=5).interval(values)
    monkeypatch.setattr(intervals, "DRAWS_PER_CHUNK", 7 * 300 + 11)  # chunks of 7 resamples
    assert Bootstrap(1000, 0.95, seed=5).interval(values) == whole


def test_the_hierarchical_bootstrap_resamples_seeds_then_images_as_a_direct_loop_does():
    values = np.random.default_rng(3).normal(size=(3, 40)) + np.array([[0.0], [0.5], [1.0]])  # seeds differ
    ours = Bootstrap(400, 0.9, seed=5).hierarchical(values)
    rng = np.random.default_rng(5)  # the same draws, taken one resample at a time from the index arrays
    seeds, images = rng.integers(0, 3, size=(400, 3)), rng.integers(0, 40, size=(400, 40))
    means = [values[seeds[r]][:, images[r]].mean() for r in range(400)]
    np.testing.assert_allclose(ours, np.percentile(means, [5, 95]), rtol=1e-12)
    image_only = Bootstrap(400, 0.9, seed=5).interval(values.mean(axis=0))
    assert ours[1] - ours[0] > image_only[1] - image_only[0]  # the seeds' spread widens it
    assert all(np.isnan(Bootstrap().hierarchical(values[:1])))  # one seed: none (use `interval`)
