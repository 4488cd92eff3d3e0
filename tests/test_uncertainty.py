"""Intervals and paired comparisons, against published and hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import sacrebleu

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.runs.item_scores import ITEM_METRICS, cell_items, estimate
from codegen_bench.harness.runs.uncertainty import (
    bootstrap_interval,
    interval,
    mcnemar_exact,
    mean,
    paired_difference,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (Wilson, no correction).
    [(81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718)],
)
def test_wilson_interval_matches_newcombes_published_examples(successes, n, low, high):
    found = wilson_interval(successes, n)
    assert (round(found.low, 4), round(found.high, 4)) == (low, high)


def test_wilson_interval_of_the_default_models_pass_at_1():
    # 92 of 164: about ±7.6 points around 0.561.
    found = wilson_interval(92, 164)
    assert (round(found.low, 3), round(found.high, 3)) == (0.484, 0.635)


def test_mcnemar_exact_on_hand_made_tables():
    assert mcnemar_exact(0, 0) == 1.0  # nothing flipped
    assert mcnemar_exact(8, 9) == 1.0  # as balanced as 17 flips can be
    assert mcnemar_exact(10, 0) == pytest.approx(2 * 0.5**10)  # all ten flips one way
    # 5 lost, 1 gained: P(X <= 1) for Binomial(6, 1/2) = 7/64, doubled.
    assert mcnemar_exact(5, 1) == pytest.approx(14 / 64)
    assert mcnemar_exact(1, 5) == mcnemar_exact(5, 1)


def test_bootstrap_is_seeded_and_deterministic():
    values = list(np.random.default_rng(3).uniform(size=40))
    first, second = bootstrap_interval(values, mean), bootstrap_interval(values, mean)
    assert first == second
    assert first.low < np.mean(values) < first.high
    assert bootstrap_interval(values, mean, seed=1) != first


def test_bootstrap_interval_of_a_mean_is_near_the_normal_one_for_many_items():
    rng = np.random.default_rng(0)
    values = rng.normal(10.0, 2.0, size=2000)
    found = bootstrap_interval(values, mean)
    half_width = 1.96 * values.std(ddof=1) / math.sqrt(len(values))
    assert found.low == pytest.approx(values.mean() - half_width, abs=0.01)
    assert found.high == pytest.approx(values.mean() + half_width, abs=0.01)


def test_binary_means_get_wilson_and_other_metrics_the_bootstrap():
    assert interval([1, 0, 1, 1], mean).method == "wilson"
    assert interval([0.5, 0.25, 1.0], mean).method == "bootstrap"


def test_paired_difference_counts_flips_and_tests_them():
    base = [1] * 10 + [0] * 10 + [1] * 6
    variant = [1] * 10 + [0] * 10 + [0] * 6  # six problems lost, none gained
    found = paired_difference(base, variant, mean)
    assert (found.lost, found.gained) == (6, 0)
    assert found.difference == pytest.approx(-6 / 26)
    assert found.p_value == pytest.approx(2 * 0.5**6)
    assert found.significant
    # Five flips one way are not enough for McNemar at 95% (p = 0.0625): the test, not the
    # bootstrap interval, decides for binary items.
    five = paired_difference(base[:-1], variant[:-1], mean)
    assert five.p_value == pytest.approx(0.0625) and not five.significant


def test_paired_difference_sees_a_shift_that_two_intervals_cannot():
    # Items of very different difficulty, the variant a little worse on every one of them.
    rng = np.random.default_rng(1)
    reference = rng.uniform(0.2, 0.9, size=60)
    variant = reference - 0.01
    assert interval(variant, mean).high > interval(reference, mean).low  # the intervals overlap
    found = paired_difference(reference, variant, mean)
    assert found.significant and found.interval.high < 0
    assert found.p_value is None


def test_paired_comparison_needs_the_same_items():
    with pytest.raises(CodegenBenchError, match="same items"):
        paired_difference([1, 0], [1, 0, 1], mean)


PAIRS = [
    ("Return the sum of two numbers.", "Returns the sum of the two numbers given."),
    ("Check whether a list is sorted in ascending order.", "Checks if the list is sorted."),
    ("Count the vowels in a string.", "Counts how many vowels the string has."),
    ("Reverse the words of a sentence.", "Reverse each word."),
]


@pytest.mark.parametrize(
    ("metric", "corpus"), [("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)]
)
def test_sacrebleu_metrics_from_per_item_statistics_equal_the_corpus_score(metric, corpus):
    rows = ITEM_METRICS[metric].item_rows(PAIRS)
    assert len(rows) == len(PAIRS)
    expected = corpus([p for _, p in PAIRS], [[r for r, _ in PAIRS]]).score
    assert estimate(metric, rows) == pytest.approx(expected)


def test_nll_ratio_items_give_the_token_weighted_corpus_value():
    rows = ITEM_METRICS["nll_per_token"].item_rows([(3.0, 2), (1.0, 8)])
    assert estimate("nll_per_token", rows) == pytest.approx(0.4)
    assert estimate("bits_per_char", rows) == pytest.approx(0.4 / math.log(2))


def test_cell_items_orders_by_document_and_skips_metrics_without_items():
    samples = [
        {"doc_id": 1, "pass@1": 0.0, "codebleu": ("a", "b")},
        {"doc_id": 0, "pass@1": 1.0, "codebleu": ("a", "a")},
    ]
    assert cell_items(samples, ["pass@1", "codebleu"]) == {"doc_ids": [0, 1], "pass@1": [1.0, 0.0]}
