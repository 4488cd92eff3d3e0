"""Per-item scores of a matrix cell, so every metric can get an interval and a paired comparison.

lm-eval logs, for each document, the value a task's `process_results` gave each metric (a pass@1
of 0 or 1, an (NLL, tokens) pair, a (reference, prediction) pair for corpus metrics). Here those
become one row of numbers per item, as each metric's declaration beside its task says
(`MetricSpec.item_rows`, collected in tasks/metrics.py), chosen so that the corpus-level metric is
a function of the rows (`MetricSpec.estimator`) and can be recomputed on any resample of the items.
A metric declared without them (CodeBLEU, whose corpus score is not a sum over items), or not
declared, gets no interval.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np

from codegen_bench.tasks.metric_spec import MetricSpec
from codegen_bench.tasks.metrics import METRICS

# The declared metrics that have per-item rows and an estimator: those get intervals and paired tests.
ITEM_METRICS: dict[str, MetricSpec] = {
    name: spec for name, spec in METRICS.items() if spec.estimator is not None
}


OUTPUTS = "outputs"  # per-document fingerprint of what the model generated (generation tasks)


def output_fingerprint(responses) -> str:
    """A short hash of a document's generated texts: equal exactly when the generations are."""
    text = json.dumps(responses, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def cell_items(samples: Sequence[dict], metrics: Sequence[str]) -> dict:
    """{"doc_ids": [...], metric: [row per item], ..., "outputs": [...]} from lm-eval's logged samples
    of one task (`simple_evaluate(..., log_samples=True)["samples"][task]`), for the metrics listed
    here; `outputs` (generation tasks) tells which documents' generations changed between two runs.
    With several samples per document (pass@k), each document is one item: lm-eval logs one entry
    per document, holding the per-document pass@k."""
    ordered = sorted(samples, key=lambda s: s["doc_id"])
    items: dict = {"doc_ids": [s["doc_id"] for s in ordered]}
    if all(isinstance((s.get("filtered_resps") or [None])[0], str) for s in ordered):
        items[OUTPUTS] = [output_fingerprint(s["filtered_resps"]) for s in ordered]
    for metric in metrics:
        if metric in ITEM_METRICS and all(metric in s for s in ordered):
            items[metric] = ITEM_METRICS[metric].item_rows([s[metric] for s in ordered])
    return items


def estimate(metric: str, rows: Sequence) -> float:
    return ITEM_METRICS[metric].estimator(np.asarray(rows, dtype=float))
