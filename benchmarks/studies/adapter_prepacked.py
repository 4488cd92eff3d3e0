"""lora and qlora on HumanEval with the layers under the adapter as plain `nn.Linear` and prepacked
for oneDNN, in one run.

    .venv/bin/python benchmarks/studies/adapter_prepacked.py --out results/measurements/adapter-prepacked

Each variant (its recipe's adapter, unmerged; qlora's 4-bit base dequantized once, as the matrix's
quality cells run it) is evaluated on the same problems (`humaneval_custom`, greedy, the published
protocol, batch 32) through the matrix twice, one run after the other in this process:
- `plain`: `prepack=false`, every linear layer an `nn.Linear` (a plain sgemm on the weight's
  [out, in] layout at every call), as the matrix ran adapters before;
- `prepacked`: `prepack=auto`, the base layers reordered once for oneDNN (harness/engine/prepack.py),
  the adapter's own matrices left as they are.
Reported: each run's seconds, generated tokens and pass@1, and how many completions are identical,
each different one listed with both verdicts. Files: OUT/table.md, OUT/benchmark.json, and the
matrix runs in OUT/work/.
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
    parser.add_argument("--variants", nargs="+", default=["lora", "qlora"], choices=["lora", "qlora"])
    parser.add_argument(
        "--recipe", default="default", help="training recipe of the adapters (default: default)"
    )
    parser.add_argument("--limit", type=int, default=None, help="first N problems (default: all 164)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    from codegen_bench.harness.files import read_jsonl, write_text_atomic
    from codegen_bench.harness.runs.matrix import MatrixConfig, run_matrix
    from codegen_bench.variants.spec import VariantSpec

    summary: dict = {
        "machine": platform.processor() or platform.machine(),
        "recipe": args.recipe,
        "variants": {},
    }
    lines = [
        "| variant | layers under the adapter | seconds | generated tokens | pass@1 "
        "| identical completions |",
        "|---|---|---|---|---|---|",
    ]
    listed = []
    for variant in args.variants:
        spec = VariantSpec.parse(f"{variant}={variant},variant.recipe={args.recipe}")
        runs = {}
        for name, prepack in (("plain", "false"), ("prepacked", "auto")):
            out = args.out / "work" / variant / name
            (record,) = run_matrix(
                MatrixConfig(
                    variants=(spec,),
                    tasks=("humaneval_custom",),
                    out=out,
                    limit=args.limit,
                    batch_size=args.batch_size,
                    model_args={"prepack": prepack},
                )
            )
            (samples,) = sorted(out.glob(f"samples/{variant}/humaneval_custom_*.jsonl"))
            answers = {a["task_id"]: a for a in read_jsonl(samples, ("task_id", "raw_completion"))}
            runs[name] = {
                "seconds": record["seconds"],
                "pass_at_1": record["metrics"]["humaneval_custom"]["pass@1"],
                "generated_tokens": record["generation"]["tokens"],
                "prepacked_linears": (record.get("model") or {}).get("prepacked_linears"),
                "answers": answers,
            }
        plain, packed = runs["plain"]["answers"], runs["prepacked"]["answers"]
        different = [t for t in plain if plain[t]["raw_completion"] != packed[t]["raw_completion"]]
        summary["variants"][variant] = {
            "problems": len(plain),
            "identical_completions": len(plain) - len(different),
            "different": [
                {"task_id": t, "passed_plain": plain[t]["passed"], "passed_prepacked": packed[t]["passed"]}
                for t in different
            ],
            "speedup": runs["plain"]["seconds"] / runs["prepacked"]["seconds"],
            "runs": {name: {k: v for k, v in run.items() if k != "answers"} for name, run in runs.items()},
        }
        for name, run in runs.items():
            identical = f"{len(plain) - len(different)} of {len(plain)}" if name == "prepacked" else "-"
            lines.append(
                f"| {variant} | {name} | {run['seconds']:.0f} | {run['generated_tokens']:,} "
                f"| {run['pass_at_1']:.3f} | {identical} |"
            )
        listed += [
            "",
            f"{variant}: prepacked {summary['variants'][variant]['speedup']:.2f}x plain; "
            "different completions:",
        ]
        listed += [
            f"- {d['task_id']}: passed {d['passed_plain']} plain, {d['passed_prepacked']} prepacked"
            for d in summary["variants"][variant]["different"]
        ] or ["- none"]
    lines += listed
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_text_atomic(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
