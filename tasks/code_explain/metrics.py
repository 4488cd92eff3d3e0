"""The metrics of the code explanation tasks, declared once (tasks/metric_spec.py says what each
field means). The template YAML beside this file names the same metrics for lm-eval, with the same
direction, and utils.py's `process_results` gives each of them the (reference, prediction) pair.

BLEU and chrF are lm-eval's own corpus sacrebleu aggregations (0-100), recomputed from each item's
sufficient statistics. BERTScore's corpus value is the mean of its per-pair scores, read from the
one cached scoring pass that the task's aggregation made (bertscore.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from codegen_bench.tasks.code_explain.bertscore import bertscore
from codegen_bench.tasks.metric_spec import BLEU, CHRF, ItemRows, MetricSpec, mean


def _bertscore_rows(part: str) -> ItemRows:
    def rows(values: Sequence) -> list:
        references = [reference for reference, _ in values]
        predictions = [prediction for _, prediction in values]
        # The same lists the task's aggregation scored: bertscore() returns its cached result.
        return list(getattr(bertscore(predictions, references), f"{part}_per_pair"))

    return rows


CODE_EXPLAIN_METRICS: dict[str, MetricSpec] = {
    "bleu": BLEU,
    "chrf": CHRF,
    "bertscore_precision": MetricSpec(True, _bertscore_rows("precision"), mean),
    "bertscore_recall": MetricSpec(True, _bertscore_rows("recall"), mean),
    "bertscore_f1": MetricSpec(True, _bertscore_rows("f1"), mean),
}
