"""LoRA training speed: the trainer's previous configuration against its current one, in one run.

    .venv/bin/python benchmarks/studies/lora_training.py --steps 16 \
        --out results/measurements/lora-training-speed

Both train the default model (fp32, CPU) on the same examples in the same order for the same number
of optimizer steps (batch 4): half explanation and half code-generation records of the stdlib
corpus's train split, drawn with a fixed seed among those of at most 512 tokens, so the previous
configuration's truncation at 512 cuts nothing. The only differences are the trainer settings:

- previous: padded batches, trl's fused output head (off CUDA it scores every position, prompts
  included), LoRA dropout 0.05, the frozen weights' matmuls as plain `nn.Linear` (sgemm);
- current: padding-free batches, the output head only at the scored positions, no dropout, the
  frozen weights' matmuls through oneDNN-packed copies.

LoRA's B matrices start at zero, so dropout cannot change the first step's loss: the two first-step
losses must agree to float noise, and the last ones show whether the faster run learns as well.
Reported: seconds of optimizer steps (evaluation and checkpoint writes excluded), the examples'
tokens/s, processed tokens/s (padding included), the share of the matmul roofline measured at the
start of each run, and every step's loss. Files: OUT/benchmark.json, OUT/table.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import shutil
from pathlib import Path

CONFIGURATIONS = {
    "previous": dict(
        dropout=0.05,
        padding_free=False,
        head_on_scored_positions_only=False,
        prepack_frozen_weights=False,
        max_seq_len=512,
    ),
    "current": dict(),
}


def benchmark_examples(tokenizer, count: int, seed: int, data_dir: Path) -> list[dict]:
    """`count` train records, half explanations and half code generation, each at most 512 tokens."""
    from codegen_bench.harness.corpus.stdlib import CODEGEN_FILE, EXPLAIN_FILE, load_pairs
    from codegen_bench.trainers.sft import example_length, to_example

    chosen = []
    for name in (EXPLAIN_FILE, CODEGEN_FILE):
        records = load_pairs(data_dir / name, "train")
        random.Random(seed).shuffle(records)
        fitting = (r for r in records if example_length(to_example(r, chat=True), tokenizer) <= 512)
        chosen += [r for _, r in zip(range(count // 2), fitting, strict=False)]
    random.Random(seed).shuffle(chosen)
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("results/measurements/lora-training-speed"))
    args = parser.parse_args()

    import torch

    from codegen_bench.harness.corpus.stdlib import DataConfig, write_datasets
    from codegen_bench.harness.files import write_jsonl
    from codegen_bench.harness.loading import load_tokenizer, resolve_pretrained
    from codegen_bench.trainers.sft import TrainConfig, train
    from codegen_bench.variants import BaseModel

    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "work"
    base = BaseModel(str(resolve_pretrained(None)))
    tokenizer = load_tokenizer(base.name_or_path, base.load_config)
    write_datasets(work / "stdlib", DataConfig())
    # Validation and test take 1 example each at the fractions below; the rest fill the steps.
    examples = benchmark_examples(tokenizer, args.steps * args.batch_size + 2, args.seed, work / "stdlib")
    data = work / "examples.jsonl"
    write_jsonl(data, examples)

    runs = {}
    for name, settings in CONFIGURATIONS.items():
        config = TrainConfig(
            batch_size=args.batch_size,
            max_steps=args.steps,
            logging_steps=1,
            save_steps=10_000,
            validation_fraction=0.01,
            test_fraction=0.01,
            seed=args.seed,
            **settings,
        )
        out = work / name
        for stale in (out, out.with_name(out.name + ".checkpoints")):
            if stale.exists():
                shutil.rmtree(stale)
        print(f"== {name}: {settings or 'the defaults'}", flush=True)
        train(data, base, config, out)
        training = json.loads((out / "variant.json").read_text())["training"]
        runs[name] = {
            "settings": settings,
            "examples": training["examples"],
            "steps": training["steps"],
            **training["metrics"]["throughput"],
            "example_tokens": training["metrics"]["train_tokens"],
            "example_tokens_per_s": training["metrics"]["train_tokens"]
            / training["metrics"]["throughput"]["step_seconds"],
            "losses": training["metrics"]["logged_losses"],
            "validation_loss": training["metrics"].get("validation_loss"),
        }

    previous, current = runs["previous"], runs["current"]
    speedup = previous["step_seconds"] / current["step_seconds"]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "runs": runs,
        "speedup": speedup,
        "first_step_loss_difference": current["losses"][0] - previous["losses"][0],
        "last_step_loss_difference": current["losses"][-1] - previous["losses"][-1],
    }
    (args.out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"{args.steps} steps of {args.batch_size} examples, the same examples and order in both runs; "
        f"{report['machine']}, torch {torch.__version__}",
        "",
        "| configuration | step seconds | example tokens/s | processed tokens/s | % of roofline "
        "| peak GFLOP/s | first-step loss | last-step loss | mean loss, last 4 steps |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        lines.append(
            f"| {name} | {run['step_seconds']:.1f} | {run['example_tokens_per_s']:.1f} "
            f"| {run['processed_tokens_per_s']:.1f} | {run['roofline_fraction']:.0%} "
            f"| {run['peak_gflops']:.0f} "
            f"| {run['losses'][0]:.6f} | {run['losses'][-1]:.4f} | {sum(run['losses'][-4:]) / 4:.4f} |"
        )
    lines += [
        "",
        f"current vs previous, same work: {speedup:.2f}x (step seconds); first-step loss difference "
        f"{report['first_step_loss_difference']:+.2e}",
    ]
    (args.out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
