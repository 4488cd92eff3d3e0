"""Every metric our tasks declare, by name: the one place the harness reads a metric's direction,
estimator and gate tolerance from (harness/runs/item_scores.py, reports.py, gate.py).

Metrics are looked up by name, whatever task reports them, so another task's `pass@1` or `bleu`
(lm-eval's own tasks included) gets the same estimator and tolerance. A metric declared by two
families (chrF) is one declaration both refer to.
"""

from __future__ import annotations

from codegen_bench.tasks.code_explain.metrics import CODE_EXPLAIN_METRICS
from codegen_bench.tasks.humaneval.metrics import HUMANEVAL_METRICS
from codegen_bench.tasks.metric_spec import MetricSpec


def metrics_by_name(*families: dict[str, MetricSpec]) -> dict[str, MetricSpec]:
    found: dict[str, MetricSpec] = {}
    for family in families:
        for name, spec in family.items():
            if found.setdefault(name, spec) != spec:
                raise ValueError(f"metric {name!r} is declared twice, differently: declare it once")
    return found


METRICS: dict[str, MetricSpec] = metrics_by_name(CODE_EXPLAIN_METRICS, HUMANEVAL_METRICS)


def metric_spec(name: str) -> MetricSpec | None:
    """The declaration of metric `name`, or None for a metric no task of ours declares."""
    return METRICS.get(name)
