"""What a metric is, in one typed declaration: which way is better, how its corpus value is computed
from one row of numbers per item, and how far the regression gate lets it move.

Each task family declares its metrics beside its YAMLs (tasks/humaneval/metrics.py,
tasks/code_explain/metrics.py); tasks/metrics.py collects them by name. The harness reads them:
harness/runs/item_scores.py (per-item rows and intervals), reports.py (direction, paired tests) and
gate.py (direction, tolerance). lm-eval's YAML stays the task definition and keeps its own
`higher_is_better`, which tests/test_metric_specs.py holds equal to the declaration.

Estimators, chosen so that the corpus value is a function of the items' rows and can be recomputed
on any resample of them (harness/runs/uncertainty.py):
- `mean` of one number per item: pass@k, exact match, edit similarity, BERTScore;
- `ratio_of_sums` of (the item's sum, its tokens or characters): NLL per token, KL per token, top-1
  agreement; `ratio_of_sums_in_bits` for bits per character;
- sacrebleu's corpus BLEU and chrF from each item's sufficient statistics, summed before the score
  is computed, as sacrebleu does for a corpus (`BLEU`, `CHRF` below, shared by both families).
A metric whose corpus value is not a function of per-item rows (CodeBLEU) declares none, and gets no
interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np

# A corpus-level metric computed from the items it is given: the statistic a bootstrap recomputes on
# every resample. Items are an array with one row per item: a number, or the numbers the metric
# sums over items (a log-likelihood and its token count, sacrebleu's sufficient statistics).
Estimator = Callable[[np.ndarray], float]
# lm-eval's logged per-document values of one metric (in document order) -> one row per item.
ItemRows = Callable[[Sequence], list]


@dataclass(frozen=True)
class ItemFlips:
    """The gate's tolerance for a metric of generated output: the metric may move by what a few items
    changing completely would move it (flips / n × the metric's scale; harness/runs/gate.py)."""


@dataclass(frozen=True)
class ShareOfValue:
    """The gate's tolerance for a metric of fixed text (no generation, nothing to flip, only rounding
    moves it): `fraction` of its baseline value."""

    fraction: float


GateTolerance = ItemFlips | ShareOfValue


@dataclass(frozen=True)
class MetricSpec:
    higher_is_better: bool
    # The logged values -> one row per item, and the corpus value from those rows; both None for a
    # metric with no per-item estimate (no interval, no paired test).
    item_rows: ItemRows | None = None
    estimator: Estimator | None = None
    # The range of one item's value: 1 for metrics in [0, 1], 100 for sacrebleu's BLEU and chrF.
    scale: float = 1.0
    gate_tolerance: GateTolerance = field(default_factory=ItemFlips)

    def __post_init__(self) -> None:
        if (self.item_rows is None) != (self.estimator is None):
            raise ValueError("a metric declares both item_rows and estimator, or neither")


def numbers(values: Sequence) -> list[float]:
    """One number per item (pass@1 of a problem, a BERTScore of a pair)."""
    return [float(v) for v in values]


def pairs(values: Sequence) -> list[list[float]]:
    """(a sum, its count) per item: (NLL, tokens)."""
    return [[float(a), float(b)] for a, b in values]


def mean(items: np.ndarray) -> float:
    """The plain mean of one number per item (pass@k per problem, BERTScore per pair)."""
    return float(np.mean(items))


def ratio_of_sums(items: np.ndarray) -> float:
    """Sum of the first column over sum of the second (NLL over tokens)."""
    return float(items[:, 0].sum() / items[:, 1].sum())


def ratio_of_sums_in_bits(items: np.ndarray) -> float:
    return ratio_of_sums(items) / math.log(2)


@cache
def _sacrebleu(name: str):
    from sacrebleu.metrics import BLEU as SacreBLEU
    from sacrebleu.metrics import CHRF as SacreCHRF

    # lm-eval's `bleu` and `chrf` aggregations: sacrebleu.corpus_bleu / corpus_chrf with defaults.
    return SacreBLEU() if name == "bleu" else SacreCHRF()


def _sacrebleu_rows(name: str) -> ItemRows:
    def rows(values: Sequence) -> list:
        references = [reference for reference, _ in values]
        predictions = [prediction for _, prediction in values]
        return [
            list(map(float, s))
            for s in _sacrebleu(name)._extract_corpus_statistics(predictions, [references])
        ]

    return rows


def _sacrebleu_estimator(name: str) -> Estimator:
    def estimator(items: np.ndarray) -> float:
        stats = [round(x) for x in items.sum(axis=0)]  # counts, summed as floats
        return float(_sacrebleu(name)._compute_score_from_stats(stats).score)

    return estimator


# lm-eval's own `bleu` and `chrf` aggregations (corpus sacrebleu, 0-100), used by both task families.
BLEU = MetricSpec(True, _sacrebleu_rows("bleu"), _sacrebleu_estimator("bleu"), scale=100.0)
CHRF = MetricSpec(True, _sacrebleu_rows("chrf"), _sacrebleu_estimator("chrf"), scale=100.0)
