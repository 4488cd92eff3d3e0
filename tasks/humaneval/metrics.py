"""The metrics of the HumanEval tasks, declared once (tasks/metric_spec.py says what each field
means). The YAMLs beside this file name the same metrics for lm-eval, with the same direction.

- pass@k (`humaneval_custom`, `humaneval_fenced`, `humaneval_custom_pass10`): the mean over problems
  of each problem's pass@k; greedy pass@1 is a proportion of binary items, so it gets Wilson's
  interval (harness/runs/uncertainty.py).
- Similarity to the canonical solution (`humaneval_similarity`): exact match and edit similarity are
  means, chrF is sacrebleu's corpus chrF; CodeBLEU's corpus score is not a sum over items, so it has
  no per-item estimate.
- Likelihood of the canonical solutions (`humaneval_nll`, nll.py; `stdlib_nll` reports the same
  metrics on held-out stdlib functions): ratios of sums over the corpus.
  These score fixed text, so the gate allows a share of their value instead of flipped items: 1%,
  and 5% for KL per token, a small number whose last digits move most.
"""

from __future__ import annotations

from codegen_bench.tasks.metric_spec import (
    CHRF,
    MetricSpec,
    ShareOfValue,
    mean,
    numbers,
    pairs,
    ratio_of_sums,
    ratio_of_sums_in_bits,
)

_PASS_AT_K = MetricSpec(True, numbers, mean)
_CODEBLEU = MetricSpec(True)  # no per-item estimate: no interval, no paired test

HUMANEVAL_METRICS: dict[str, MetricSpec] = {
    "pass@1": _PASS_AT_K,
    "pass@10": _PASS_AT_K,
    "exact_match": MetricSpec(True, numbers, mean),
    "edit_similarity": MetricSpec(True, numbers, mean),
    "chrf": CHRF,
    "codebleu": _CODEBLEU,
    "codebleu_ngram": _CODEBLEU,
    "codebleu_weighted_ngram": _CODEBLEU,
    "codebleu_syntax": _CODEBLEU,
    "codebleu_dataflow": _CODEBLEU,
    "nll_per_token": MetricSpec(False, pairs, ratio_of_sums, gate_tolerance=ShareOfValue(0.01)),
    "bits_per_char": MetricSpec(False, pairs, ratio_of_sums_in_bits, gate_tolerance=ShareOfValue(0.01)),
    "top1_agreement": MetricSpec(True, pairs, ratio_of_sums, gate_tolerance=ShareOfValue(0.01)),
    "kl_per_token": MetricSpec(False, pairs, ratio_of_sums, gate_tolerance=ShareOfValue(0.05)),
}
