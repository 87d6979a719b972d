"""Confidence intervals of the means attrobust reports.

Within a run, an accuracy (a share of images) gets Wilson's score interval, and any other mean over images a
percentile bootstrap interval: `resamples` resamples of the images with
replacement (drawn from numpy's PCG64 seeded by the run's seed, so the same run gives the same interval, and every
measure of a run is resampled on the same draws), the interval between the (1 - confidence) / 2 and (1 + confidence)
/ 2 quantiles of the resampled means (numpy's linear interpolation). This is `scipy.stats.bootstrap(...,
method="percentile")` with the same generator (tests/test_intervals.py holds them equal). Images where a measure is
undefined (NaN) are left out, as from the mean. Fewer than two images: no interval.

Over seeds and images at once (`compare` of methods given as several seeds each), `hierarchical` resamples the seeds
with replacement, then the images (the same images for every seed: the evaluations pair by image), and takes the
percentile interval of the resampled means: the interval carries the seed-to-seed spread of training as well as the
images'.

Over seeds (`report`, a line pooling runs), the interval is Student's t of the runs' means: mean +- t(0.975, k - 1)
s / sqrt(k) for k seeds; a line of one seed has none. It says how far the mean over seeds could move with other
seeds; the images' own spread is in each run's interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 1000
DEFAULT_CONFIDENCE = 0.95
# image draws per chunk of resamples (32 MB of indices): numpy's 64-bit bounded draws come from one stream, so chunks
# draw exactly what one call would (tests/test_intervals.py)
DRAWS_PER_CHUNK = 1 << 22


@dataclass(frozen=True)
class Bootstrap:
    """A percentile bootstrap over images (see the module doc); `resamples=0` gives no intervals."""

    resamples: int = DEFAULT_RESAMPLES
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0

    def __post_init__(self) -> None:
        if self.resamples < 0:
            raise ValueError(f"bootstrap must be >= 0 resamples (0: no intervals), got {self.resamples}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {self.confidence}")

    @classmethod
    def of(cls, evaluation: Mapping[str, Any], seed: int) -> Bootstrap:
        """The bootstrap an evaluation's `eval` settings ask for (records written before them: the defaults)."""
        return cls(int(evaluation.get("bootstrap", DEFAULT_RESAMPLES)),
                   float(evaluation.get("confidence", DEFAULT_CONFIDENCE)), seed)

    def interval(self, values: Any, scale: float = 1.0) -> tuple[float, float]:
        """(low, high) of the mean of `values` (one per image), times `scale`; NaN when there is none."""
        kept = np.asarray(values, dtype=np.float64)
        kept = kept[~np.isnan(kept)]
        if self.resamples == 0 or len(kept) < 2:
            return math.nan, math.nan
        rng = np.random.default_rng(self.seed)
        rows = max(1, DRAWS_PER_CHUNK // len(kept))  # resamples drawn at once: memory bounded for any n
        means = np.concatenate([kept[rng.integers(0, len(kept), size=(min(rows, self.resamples - start),
                                                                      len(kept)))].mean(axis=-1)
                                for start in range(0, self.resamples, rows)])
        return self._percentiles(means, scale)

    def hierarchical(self, values: Any) -> tuple[float, float]:
        """(low, high) of the mean of `values` (seeds x images, no NaN): each resample draws the seeds, then the
        images, with replacement (in chunks: the seeds' draws of a chunk, then its images'); NaN when there is none."""
        kept = np.asarray(values, dtype=np.float64)
        seeds, images = kept.shape
        if self.resamples == 0 or images < 2 or seeds < 2:
            return math.nan, math.nan
        rng = np.random.default_rng(self.seed)
        rows = max(1, DRAWS_PER_CHUNK // (seeds + images))
        means = []
        for start in range(0, self.resamples, rows):
            count = min(rows, self.resamples - start)
            seed_counts = _counts(rng.integers(0, seeds, size=(count, seeds)), seeds)
            image_counts = _counts(rng.integers(0, images, size=(count, images)), images)
            means.append(((seed_counts @ kept) * image_counts).sum(axis=1) / (seeds * images))
        return self._percentiles(np.concatenate(means), 1.0)

    def _percentiles(self, means: np.ndarray, scale: float) -> tuple[float, float]:
        tail = (1 - self.confidence) / 2
        low, high = np.percentile(means, [100 * tail, 100 * (1 - tail)])
        return float(low) * scale, float(high) * scale


    def proportion(self, flags: Any, scale: float = 100.0) -> tuple[float, float]:
        """(low, high) of the share of true `flags` (accuracy), times `scale`: Wilson's score interval, which a
        bootstrap of 0/1 values is not (it collapses to a point at 0 and 100 %); NaN with `resamples=0` or no
        images."""
        kept = np.asarray(flags, dtype=bool)
        if self.resamples == 0 or len(kept) == 0:
            return math.nan, math.nan
        bounds = stats.binomtest(int(kept.sum()), len(kept)).proportion_ci(self.confidence, method="wilson")
        return float(bounds.low) * scale, float(bounds.high) * scale


NO_INTERVALS = Bootstrap(resamples=0)


def _counts(draws: np.ndarray, size: int) -> np.ndarray:
    """How often each of `size` items was drawn in each row of `draws` (rows x size)."""
    offsets = np.arange(len(draws))[:, None] * size
    return np.bincount((draws + offsets).ravel(), minlength=len(draws) * size).reshape(len(draws), size)


def over_seeds(means: Any, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """Student's t interval of the mean of the runs' `means` (NaN with fewer than two)."""
    kept = np.asarray(means, dtype=np.float64)
    kept = kept[~np.isnan(kept)]
    if len(kept) < 2:
        return math.nan, math.nan
    half = stats.t.ppf((1 + confidence) / 2, len(kept) - 1) * kept.std(ddof=1) / math.sqrt(len(kept))
    return float(kept.mean() - half), float(kept.mean() + half)
