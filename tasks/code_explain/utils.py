"""The few functions the code_explain YAMLs cannot express: datasets with prompts, scoring, BERTScore.

BLEU and chrF are lm-eval's own `bleu` and `chrf` aggregations: corpus-level sacrebleu with its defaults
(BLEU: 13a tokenizer, 4-grams, case-sensitive; chrF: 6 character n-grams, beta 2), on a 0-100 scale.
BERTScore is computed once per subtask over all pairs (bertscore.py); the three aggregations read one
cached result. What each metric is (direction, estimator, gate tolerance) is declared in metrics.py.
"""

from __future__ import annotations

import datasets

from codegen_bench.tasks.code_explain.bertscore import BertScore, bertscore, check_encoder, encoder_from_env
from codegen_bench.tasks.code_explain.data import humaneval_pairs, stdlib_pairs
from codegen_bench.tasks.code_explain.metrics import CODE_EXPLAIN_METRICS

# Instruct models: a chat request for one docstring-like paragraph, the style of the references.
CHAT_USER = (
    "Explain what the Python function `{name}` below does, in one short paragraph of plain English, as its "
    "docstring would: what it takes, what it returns, and any special cases. Answer with that paragraph "
    "only: no code, no examples, no headings.\n```python\n{code}```"
)
# Base models: the code, then a string literal opened for the explanation. The task's stop sequences (a
# blank line, closing quotes) end it after one paragraph.
BASE_PROMPT = '{code}\n\n"""Explanation of `{name}` above, in one paragraph of plain English:\n'
METRICS = tuple(CODE_EXPLAIN_METRICS)


def _with_prompts(pairs: list[dict]) -> datasets.Dataset:
    return datasets.Dataset.from_list(
        [
            {
                **pair,
                "prompt": BASE_PROMPT.format(code=pair["code"], name=pair["name"]),
                "chat_user": CHAT_USER.format(code=pair["code"], name=pair["name"]),
            }
            for pair in pairs
        ]
    )


def load_humaneval_dataset(**metadata) -> dict[str, datasets.Dataset]:
    """The 164 HumanEval pairs; lm-eval passes --metadata and model_args, which change nothing here."""
    # A bad BERTScore encoder would otherwise fail only after every explanation was generated.
    check_encoder(encoder_from_env())
    return {"test": _with_prompts(humaneval_pairs())}


def load_stdlib_dataset(**metadata) -> dict[str, datasets.Dataset]:
    """The held-out (validation) stdlib pairs, read from the codegen-bench cache after the first build."""
    check_encoder(encoder_from_env())
    return {"test": _with_prompts(stdlib_pairs())}


def normalise(text: str) -> str:
    """One line, single spaces: the references are stored that way, and line breaks are not content."""
    return " ".join(text.split())


def process_results(doc: dict, results: list[str]) -> dict[str, tuple[str, str]]:
    """(reference, prediction) for every metric; all of them are corpus-level, computed by aggregation."""
    pair = (doc["explanation"], normalise(results[0]))
    return dict.fromkeys(METRICS, pair)


def _bertscore(items: list[tuple[str, str]]) -> BertScore:
    references, predictions = zip(*items, strict=True)
    return bertscore(predictions, references)


def bertscore_precision(items: list[tuple[str, str]]) -> float:
    return _bertscore(items).precision


def bertscore_recall(items: list[tuple[str, str]]) -> float:
    return _bertscore(items).recall


def bertscore_f1(items: list[tuple[str, str]]) -> float:
    return _bertscore(items).f1
