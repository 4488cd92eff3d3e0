"""A variant's likelihood cell with base's log-probabilities kept from base's own cell, against the
same cell rerunning base as its KL reference, in one run.

    .venv/bin/python benchmarks/studies/kl_reference_cache.py --out results/measurements/kl-reference-cache

The matrix (base and VARIANT, `humaneval_nll`, all 164 problems unless --limit) runs twice, one run
after the other in this process:
- `rerun`: `keep_reference_log_probs=False`, as the matrix ran before: VARIANT's cell loads base and
  runs it beside VARIANT on every batch;
- `kept`: base's cell leaves its log-probabilities at the scored positions in the run folder, and
  VARIANT's cell reads them instead of running base.
Reported: each cell's seconds and forward tokens, how many requests read the kept log-probs, whether
VARIANT's metrics and per-item values (NLL, KL, top-1 agreement) are equal bit for bit, and the
size of the kept log-probs (scored positions x vocabulary x 4 bytes). Files: OUT/table.md,
OUT/benchmark.json, and the runs in OUT/work/.
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
    parser.add_argument("--variant", default="wanda-pruned", help="the variant compared with base")
    parser.add_argument("--limit", type=int, default=None, help="first N problems (default: all 164)")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    from codegen_bench.harness.files import write_text_atomic
    from codegen_bench.harness.loading import resolve_pretrained
    from codegen_bench.harness.runs.matrix import MatrixConfig, model_config_dict, run_matrix
    from codegen_bench.variants.spec import VariantSpec

    runs = {}
    for name, keep in (("rerun", False), ("kept", True)):
        records = run_matrix(
            MatrixConfig(
                variants=(VariantSpec.parse("base"), VariantSpec.parse(args.variant)),
                tasks=("humaneval_nll",),
                out=args.out / "work" / name,
                limit=args.limit,
                batch_size=args.batch_size,
                keep_reference_log_probs=keep,
            )
        )
        runs[name] = {r["variant"]: r for r in records}

    vocab_size = model_config_dict(resolve_pretrained(None))["vocab_size"]
    positions = runs["kept"]["base"]["scoring"]["head_tokens"]
    rerun, kept = runs["rerun"][args.variant], runs["kept"][args.variant]
    summary = {
        "machine": platform.processor() or platform.machine(),
        "variant": args.variant,
        "problems": kept["samples"]["humaneval_nll"],
        "kept_log_probs_bytes": positions * vocab_size * 4,
        "same_metrics": kept["metrics"] == rerun["metrics"],
        "same_items": kept["items"] == rerun["items"],
        "variant_speedup": rerun["seconds"] / kept["seconds"],
        "cells": {
            name: {
                variant: {
                    "seconds": record["seconds"],
                    "scoring": record["scoring"],
                    "metrics": record["metrics"]["humaneval_nll"],
                }
                for variant, record in run.items()
            }
            for name, run in runs.items()
        },
    }
    lines = [
        "| run | cell | seconds | forward tokens | requests with kept reference log-probs "
        "| NLL/token | KL/token | top-1 agreement |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        for variant, record in run.items():
            metrics = record["metrics"]["humaneval_nll"]
            lines.append(
                f"| {name} | {variant} | {record['seconds']:.0f} | {record['scoring']['forward_tokens']:,} "
                f"| {record['scoring'].get('reference_kept', 0)} | {metrics['nll_per_token']:.4f} "
                f"| {metrics.get('kl_per_token', float('nan')):.4f} "
                f"| {metrics.get('top1_agreement', float('nan')):.4f} |"
            )
    lines += [
        "",
        f"{args.variant}'s cell: {summary['variant_speedup']:.2f}x faster with base's log-probs kept; "
        f"metrics equal bit for bit: {summary['same_metrics']}; per-item values equal: "
        f"{summary['same_items']}. Kept log-probs: {positions:,} positions x {vocab_size:,} x 4 bytes = "
        f"{summary['kept_log_probs_bytes'] / 2**30:.2f} GiB, removed when the run ended.",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmark.json").write_text(json.dumps(summary, indent=1) + "\n")
    write_text_atomic(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
