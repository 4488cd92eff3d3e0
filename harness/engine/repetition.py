"""Degenerate generations: a row whose last tokens repeat one short pattern is ended early.

A model that has fallen into a loop (the same line, the same few tokens, a run of one character)
rarely leaves it before its token budget, and a heavily pruned model loops on many answers. Those
tokens cannot change the answer: code in the loop fails anyway, and a loop after a complete function
(a test case or a comment repeated) is dropped by the sanitizer. So a row ends as soon as its last
`min_run_tokens` tokens repeat with a period of at most `max_period_tokens`; what it generated up to
there is kept. A run of 64 tokens is several lines of code, so ordinary code (a list of zeros, two
similar lines) does not trigger it. How many answers and tokens the cut saves, and that no verdict
of the reference matrix changes with it: results/measurements/repetition-cut/README.md
(`benchmarks/studies/repetition_cut.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from codegen_bench.harness.errors import CodegenBenchError


@dataclass(frozen=True)
class RepetitionCut:
    min_run_tokens: int = 64
    max_period_tokens: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.max_period_tokens < self.min_run_tokens:
            raise CodegenBenchError(
                f"a repetition cut needs 1 <= max_period_tokens < min_run_tokens: got "
                f"{self.max_period_tokens} and {self.min_run_tokens}"
            )


DEFAULT_REPETITION_CUT = RepetitionCut()


def repeating_period(tokens: Sequence[int], cut: RepetitionCut) -> int | None:
    """The shortest period (up to `cut.max_period_tokens`) with which the last `cut.min_run_tokens`
    of `tokens` repeat, or None."""
    if len(tokens) < cut.min_run_tokens:
        return None
    tail = list(tokens[-cut.min_run_tokens :])
    last = tail[-1]
    for period in range(1, cut.max_period_tokens + 1):
        # The cheap test first: most periods fail on the last token already.
        if tail[-1 - period] == last and tail[period:] == tail[:-period]:
            return period
    return None


def first_cut(tokens: Sequence[int], cut: RepetitionCut) -> tuple[int, int] | None:
    """(tokens kept, period) where generation of `tokens` would have been cut, or None: the shortest
    prefix whose tail repeats. For engines that cannot stop a row early (vLLM) and for re-scoring
    stored generations."""
    for end in range(cut.min_run_tokens, len(tokens) + 1):
        period = repeating_period(tokens[end - cut.min_run_tokens : end], cut)
        if period is not None:
            return end, period
    return None
