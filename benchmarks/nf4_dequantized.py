"""nf4 on HumanEval with bitsandbytes' 4-bit kernels and with the weights dequantized once, in one run.

    .venv/bin/python benchmarks/nf4_dequantized.py --out results/measurements/nf4-dequantized

Both evaluate the same `nf4` artifact on the same problems (`humaneval_custom`, greedy, the published
protocol, batch 32) through the matrix, one after the other in this process: first with
`dequantize_4bit=false` (every layer dequantizes its weights at every step, as the variant runs),
then with `dequantize_4bit=true` (weights dequantized once at load). Reported: each run's
seconds and pass@1, and how many of the completions are identical, each different one listed with
both verdicts. Files: OUT/table.md, OUT/benchmark.json, and the two matrix runs in OUT/work/.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="first N problems (default: all 164)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from codegen_bench.harness.files import read_jsonl, write_text_atomic
    from codegen_bench.harness.runs.matrix import MatrixConfig, run_matrix
    from codegen_bench.variants.spec import VariantSpec

    runs = {}
    for name, dequantize in (("kernels", "false"), ("dequantized", "true")):
        out = args.out / "work" / name
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

    kernels, dequantized = runs["kernels"]["answers"], runs["dequantized"]["answers"]
    different = [t for t in kernels if kernels[t]["raw_completion"] != dequantized[t]["raw_completion"]]
    summary = {
        "machine": platform.processor() or platform.machine(),
        # bitsandbytes multiplies 4-bit weights through its own bf16 kernel where the CPU has AVX512-BF16.
        "bitsandbytes_avx512bf16_kernel": bool(__import__("bitsandbytes").functional.has_avx512bf16()),
        "problems": len(kernels),
        "identical_completions": len(kernels) - len(different),
        "different": [
            {
                "task_id": t,
                "passed_kernels": kernels[t]["passed"],
                "passed_dequantized": dequantized[t]["passed"],
            }
            for t in different
        ],
        **{
            f"{name}_{key}": value
            for name, run in runs.items()
            for key, value in (
                ("seconds", run["record"]["seconds"]),
                ("pass_at_1", run["record"]["metrics"]["humaneval_custom"]["pass@1"]),
                ("generated_tokens", run["record"]["generation"]["tokens"]),
            )
        },
    }
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        "| nf4 weights | seconds | generated tokens | pass@1 |",
        "|---|---|---|---|",
        *(
            f"| {name} | {summary[f'{name}_seconds']:.0f} | {summary[f'{name}_generated_tokens']:,} | "
            f"{summary[f'{name}_pass_at_1']:.3f} |"
            for name in runs
        ),
        "",
        f"Identical completions: {summary['identical_completions']} of {summary['problems']}.",
        *(
            f"- {d['task_id']}: passed {d['passed_kernels']} with the kernels, "
            f"{d['passed_dequantized']} dequantized"
            for d in summary["different"]
        ),
    ]
    write_text_atomic(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
