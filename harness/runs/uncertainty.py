"""How sure a number is: 95% intervals on one variant's metric, and paired tests between two variants.

Every metric of a matrix cell is an estimate over a sample of items (problems, functions to
explain, solutions to score), so it gets an interval over items:
- a proportion of binary items (greedy pass@1): the Wilson score interval, which keeps its coverage
  near 0 and 1 where the normal approximation does not;
- anything else (pass@k over several samples, corpus BLEU and chrF, BERTScore, NLL per token): a
  percentile bootstrap over items, recomputing the corpus-level metric on each resample.

Two variants scored on the same items are compared item by item, which is far more sensitive than
comparing two intervals (the items' difficulty cancels out):
- binary items: the items that flipped each way, and the exact McNemar test (a two-sided binomial
  test on the flipped items, as McNemar's test is when few items flip);
- any metric: a paired bootstrap interval of the difference (both variants resampled on the same
  items); a difference is significant when its interval excludes zero.

Bootstraps are seeded: the same items give the same interval on every machine.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.tasks.metric_spec import Estimator, mean

CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 20240717


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    method: str  # "wilson" or "bootstrap"

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high


@dataclass(frozen=True)
class PairedDifference:
    """`variant - reference` on the same items, with the interval of that difference."""

    difference: float
    interval: Interval
    n: int
    # Binary items only: items the variant lost (reference right, variant wrong) and gained, and
    # the exact McNemar p-value; None for other metrics.
    lost: int | None = None
    gained: int | None = None
    p_value: float | None = None

    @property
    def significant(self) -> bool:
        if self.p_value is not None:
            return self.p_value < 1 - CONFIDENCE
        return not self.interval.contains(0.0)


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson score interval of a proportion `successes / n` (Wilson 1927; Newcombe 1998, method 3)."""
    if n < 1 or not 0 <= successes <= n:
        raise CodegenBenchError(f"a proportion needs 0 <= successes <= n and n >= 1: got {successes}/{n}")
    ci = binomtest(successes, n).proportion_ci(confidence_level=confidence, method="wilson")
    return Interval(float(ci.low), float(ci.high), "wilson")


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value for `lost` and `gained` discordant items: 1.0 when none flipped."""
    if lost < 0 or gained < 0:
        raise CodegenBenchError(f"flip counts must be >= 0: got lost={lost}, gained={gained}")
    if lost + gained == 0:
        return 1.0
    return float(binomtest(lost, lost + gained, 0.5).pvalue)


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _percentile_interval(values: np.ndarray, confidence: float) -> Interval:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), "bootstrap")


def bootstrap_interval(
    items: Sequence,
    estimator: Estimator,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> Interval:
    """Percentile bootstrap interval of `estimator(items)`, resampling items with replacement."""
    if len(items) < 1:
        raise CodegenBenchError("a bootstrap interval needs at least one item")
    items = np.asarray(items, dtype=float)
    indices = _resample_indices(len(items), resamples, seed)
    values = np.array([estimator(items[row]) for row in indices])
    return _percentile_interval(values, confidence)


def is_binary(items: Sequence) -> bool:
    values = np.asarray(items, dtype=float)
    return values.ndim == 1 and bool(np.isin(values, (0.0, 1.0)).all())


def interval(items: Sequence, estimator: Estimator, confidence: float = CONFIDENCE) -> Interval:
    """Wilson for the mean of binary items (greedy pass@1), a bootstrap for everything else. The
    estimator is the metric's own (tasks/metrics.py); `mean` is the one binary items can have."""
    if estimator is mean and is_binary(items):
        return wilson_interval(int(np.sum(items)), len(items), confidence)
    return bootstrap_interval(items, estimator, confidence)


# Paired differences computed in this process, by their inputs: the matrix rewrites its reports after
# every cell, and each rewrite would otherwise redo every earlier cell's bootstrap (seconds each).
_paired_differences: dict[tuple, PairedDifference] = {}


def paired_difference(
    reference: Sequence,
    variant: Sequence,
    estimator: Estimator,
    confidence: float = CONFIDENCE,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> PairedDifference:
    """`estimator(variant) - estimator(reference)` where item i of both is the same item; binary
    items also get their flips and the exact McNemar p-value."""
    if len(reference) != len(variant) or len(reference) == 0:
        raise CodegenBenchError(
            f"a paired comparison needs the same items on both sides: got {len(reference)} and {len(variant)}"
        )
    reference, variant = np.asarray(reference, dtype=float), np.asarray(variant, dtype=float)
    key = (reference.shape, reference.tobytes(), variant.tobytes(), estimator, confidence, resamples, seed)
    if key not in _paired_differences:
        if len(_paired_differences) >= 4096:
            _paired_differences.clear()
        found = _paired_difference(reference, variant, estimator, confidence, resamples, seed)
        _paired_differences[key] = found
    return _paired_differences[key]


def _paired_difference(
    reference: np.ndarray,
    variant: np.ndarray,
    estimator: Estimator,
    confidence: float,
    resamples: int,
    seed: int,
) -> PairedDifference:
    difference = estimator(variant) - estimator(reference)
    indices = _resample_indices(len(reference), resamples, seed)
    values = np.array([estimator(variant[row]) - estimator(reference[row]) for row in indices])
    diff_interval = _percentile_interval(values, confidence)
    if estimator is mean and is_binary(reference) and is_binary(variant):
        lost = int(np.sum((reference == 1) & (variant == 0)))
        gained = int(np.sum((variant == 1) & (reference == 0)))
        return PairedDifference(
            difference, diff_interval, len(reference), lost, gained, mcnemar_exact(lost, gained)
        )
    return PairedDifference(difference, diff_interval, len(reference))
