"""Per-item scores of a matrix cell, so every metric can get an interval and a paired comparison.

lm-eval logs, for each document, the value a task's `process_results` gave each metric (a pass@1
of 0 or 1, an (NLL, tokens) pair, a (reference, prediction) pair for corpus metrics). Here those
become one row of numbers per item, chosen so that the corpus-level metric is a function of the
rows (`ItemMetric.estimator`) and can be recomputed on any resample of the items:

- means (pass@k, exact match, edit similarity): the item's value;
- ratios of sums (NLL per token, bits per character, KL per token, top-1 agreement): (the item's
  sum, its tokens or characters);
- sacrebleu's corpus BLEU and chrF: the item's sufficient statistics (n-gram matches and counts),
  summed before the score is computed, as sacrebleu does for a corpus;
- BERTScore P/R/F1: the item's own score (the corpus value is their mean).

A metric not listed (CodeBLEU, whose corpus score is not a sum over items) gets no interval.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from codegen_bench.harness.runs.uncertainty import Estimator, mean
from codegen_bench.tasks.code_explain.bertscore import bertscore


@dataclass(frozen=True)
class ItemMetric:
    # The logged per-document values of one metric (in document order) -> one row per item.
    rows: Callable[[Sequence], list]
    estimator: Estimator


def _numbers(values: Sequence) -> list[float]:
    return [float(v) for v in values]


def _pairs(values: Sequence) -> list[list[float]]:
    return [[float(a), float(b)] for a, b in values]


def ratio(items: np.ndarray) -> float:
    """Sum of the first column over sum of the second (NLL over tokens)."""
    return float(items[:, 0].sum() / items[:, 1].sum())


def ratio_in_bits(items: np.ndarray) -> float:
    return ratio(items) / math.log(2)


@cache
def _sacrebleu(name: str):
    from sacrebleu.metrics import BLEU, CHRF

    # lm-eval's `bleu` and `chrf` aggregations: sacrebleu.corpus_bleu / corpus_chrf with defaults.
    return BLEU() if name == "bleu" else CHRF()


def _sacrebleu_rows(name: str) -> Callable[[Sequence], list]:
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


def _bertscore_rows(part: str) -> Callable[[Sequence], list]:
    def rows(values: Sequence) -> list:
        references = [reference for reference, _ in values]
        predictions = [prediction for _, prediction in values]
        # The same lists the task's aggregation scored: bertscore() returns its cached result.
        return list(getattr(bertscore(predictions, references), f"{part}_per_pair"))

    return rows


ITEM_METRICS: dict[str, ItemMetric] = {
    "pass@1": ItemMetric(_numbers, mean),
    "pass@10": ItemMetric(_numbers, mean),
    "exact_match": ItemMetric(_numbers, mean),
    "edit_similarity": ItemMetric(_numbers, mean),
    "nll_per_token": ItemMetric(_pairs, ratio),
    "bits_per_char": ItemMetric(_pairs, ratio_in_bits),
    "kl_per_token": ItemMetric(_pairs, ratio),
    "top1_agreement": ItemMetric(_pairs, ratio),
    "bleu": ItemMetric(_sacrebleu_rows("bleu"), _sacrebleu_estimator("bleu")),
    "chrf": ItemMetric(_sacrebleu_rows("chrf"), _sacrebleu_estimator("chrf")),
    "bertscore_precision": ItemMetric(_bertscore_rows("precision"), mean),
    "bertscore_recall": ItemMetric(_bertscore_rows("recall"), mean),
    "bertscore_f1": ItemMetric(_bertscore_rows("f1"), mean),
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
            items[metric] = ITEM_METRICS[metric].rows([s[metric] for s in ordered])
    return items


def estimate(metric: str, rows: Sequence) -> float:
    return ITEM_METRICS[metric].estimator(np.asarray(rows, dtype=float))
