"""nf4 on HumanEval with bitsandbytes' 4-bit kernels and with the weights dequantized once, in one run.

    .venv/bin/python benchmarks/studies/nf4_dequantized.py --out results/measurements/nf4-dequantized

Each run evaluates the same `nf4` artifact on the same problems (`humaneval_custom`, greedy, the
published protocol, batch 32) through the matrix, one after the other in this process:
- `kernels`: `dequantize_4bit=false`, bitsandbytes' CPU path as it chooses: where the CPU has
  AVX512-BF16 it repacks each layer at its first forward and multiplies in bfloat16, whatever the
  compute dtype; elsewhere it dequantizes every layer's weights at every call and multiplies in the
  compute dtype (float32);
- `kernels-float32`, only on a CPU with AVX512-BF16: the same with that bf16 path turned off, so
  bitsandbytes computes in the declared float32 as it does on other CPUs;
- `dequantized`: `dequantize_4bit=true`, the weights dequantized once at load, float32 matmuls.
Reported: each run's seconds and pass@1, and how many completions are identical to `dequantized`'s,
each different one listed with both verdicts. Files: OUT/table.md, OUT/benchmark.json, and the
matrix runs in OUT/work/.
"""

from __future__ import annotations

import argparse
import json
import platform
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def _bitsandbytes_bf16_path(enabled: bool):
    """Layers built inside see the CPU as having AVX512-BF16 or not (read once, in Linear4bit's
    __init__), which decides whether they take bitsandbytes' bf16 path."""
    import bitsandbytes.nn.modules as modules

    real = modules.has_avx512bf16
    modules.has_avx512bf16 = real if enabled else (lambda: False)
    try:
        yield
    finally:
        modules.has_avx512bf16 = real


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N problems (default: all 164)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from bitsandbytes.functional import has_avx512bf16

    from codegen_bench.harness.files import read_jsonl, write_text_atomic
    from codegen_bench.harness.runs.matrix import MatrixConfig, run_matrix
    from codegen_bench.variants.spec import VariantSpec

    bf16_kernel = bool(has_avx512bf16())
    plan = [("kernels", "false", True), ("dequantized", "true", True)]
    if bf16_kernel:
        plan.insert(1, ("kernels-float32", "false", False))
    runs = {}
    for name, dequantize, bf16_path in plan:
        out = args.out / "work" / name
        with _bitsandbytes_bf16_path(bf16_path):
            (record,) = run_matrix(
                MatrixConfig(
                    variants=(VariantSpec.parse("nf4"),),
                    tasks=("humaneval_custom",),
                    out=out,
                    limit=args.limit,
                    batch_size=args.batch_size,
                    model_args={"dequantize_4bit": dequantize},
                )
            )
        (samples,) = sorted(out.glob("samples/nf4/humaneval_custom_*.jsonl"))
        answers = {a["task_id"]: a for a in read_jsonl(samples, ("task_id", "raw_completion"))}
        runs[name] = {"record": record, "answers": answers}

    dequantized = runs["dequantized"]["answers"]
    compared = {}
    for name in (n for n in runs if n != "dequantized"):
        answers = runs[name]["answers"]
        different = [t for t in answers if answers[t]["raw_completion"] != dequantized[t]["raw_completion"]]
        compared[name] = {
            "identical_completions": len(answers) - len(different),
            "different": [
                {"task_id": t, "passed": answers[t]["passed"], "passed_dequantized": dequantized[t]["passed"]}
                for t in different
            ],
        }
    summary = {
        "machine": platform.processor() or platform.machine(),
        "bitsandbytes_avx512bf16_kernel": bf16_kernel,
        "problems": len(dequantized),
        "against_dequantized": compared,
        "runs": {
            name: {
                "seconds": run["record"]["seconds"],
                "pass_at_1": run["record"]["metrics"]["humaneval_custom"]["pass@1"],
                "generated_tokens": run["record"]["generation"]["tokens"],
            }
            for name, run in runs.items()
        },
    }
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        "| nf4 run | seconds | generated tokens | pass@1 | completions identical to dequantized's |",
        "|---|---|---|---|---|",
    ]
    for name, run in summary["runs"].items():
        identical = compared[name]["identical_completions"] if name in compared else "-"
        lines.append(
            f"| {name} | {run['seconds']:.0f} | {run['generated_tokens']:,} | {run['pass_at_1']:.3f} "
            f"| {identical} of {summary['problems']} |"
        )
    for name, found in compared.items():
        lines += ["", f"Completions of `{name}` that differ from `dequantized`'s:"]
        lines += [
            f"- {d['task_id']}: passed {d['passed']} with `{name}`, {d['passed_dequantized']} dequantized"
            for d in found["different"]
        ] or ["- none"]
    write_text_atomic(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
