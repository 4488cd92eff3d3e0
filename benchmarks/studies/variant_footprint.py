"""Memory once loaded and decode speed on fixed work, per model variant.

    .venv/bin/python benchmarks/studies/variant_footprint.py base int8-dynamic nf4 lora=artifacts/lora

HumanEval runs (variants_humaneval.py) give tokens/s over whatever the variant generated: a variant
that rambles keeps its batch full and looks fast, one that stops early leaves a batch-1 tail. This
script measures every variant on the same work instead: greedy decoding of exactly --new-tokens
tokens (end of sequence ignored) after the first HumanEval prompts, at batch 1 and at --batch-size;
prefill (1 new token) and the whole call are timed apart (medians of --repeats runs after one
warm-up), giving prompt tokens/s and decode tokens/s. Each variant runs in its own process, so its
memory is its own: resident set after loading (safetensors weights are memory-mapped and become
resident when first used, so this can be far below the model's size), and the peak from there to
the end of decoding (the kernel's high-water mark, reset after loading).
Variants are measured one after the other: other load on the machine shifts them unevenly, so
rerun when the machine is busy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from codegen_bench.variants.spec import VariantSpec


def measure(spec_text: str, new_tokens: int, batch_size: int, repeats: int) -> dict:
    """Runs inside the child process."""
    from codegen_bench.harness.engine.generation import GenerationSettings, generate
    from codegen_bench.harness.engine.memory import loaded_memory_bytes, peak_memory_bytes
    from codegen_bench.harness.execution.problems import load_humaneval
    from codegen_bench.harness.loading import LoadConfig, load_tokenizer, resolve_pretrained
    from codegen_bench.variants import BaseModel, load_variant

    pretrained = resolve_pretrained(None)
    tokenizer = load_tokenizer(pretrained, LoadConfig())
    started = time.perf_counter()
    spec = VariantSpec.parse(spec_text)
    model, manifest = load_variant(spec.variant, BaseModel(pretrained, LoadConfig()), dict(spec.overrides))
    load_seconds = time.perf_counter() - started
    loaded = loaded_memory_bytes(model.device)  # and the peak restarts from here

    prompts = [tokenizer.encode(p["prompt"]) for p in list(load_humaneval().values())[:batch_size]]
    speeds = {}
    for size in (1, batch_size):
        batch = prompts[:size]

        def timed(max_new_tokens: int, batch=batch, size=size) -> float:
            t0 = time.perf_counter()
            settings = GenerationSettings(max_new_tokens, repetition_cut=None)  # fixed work
            generate(model, tokenizer, batch, settings, set(), max_batch_size=size)
            return time.perf_counter() - t0

        timed(2)  # warm-up
        prefill = statistics.median(timed(1) for _ in range(repeats))
        whole = statistics.median(timed(new_tokens) for _ in range(repeats))
        # Prefill (prompt tokens/s) and decode (new tokens/s after the first) apart: prefill is
        # compute-bound, decode streams the weights once per step, and variants differ in each.
        speeds[f"prefill_tokens_per_second_batch{size}"] = sum(map(len, batch)) / prefill
        speeds[f"decode_tokens_per_second_batch{size}"] = size * (new_tokens - 1) / (whole - prefill)
    return {
        "variant": manifest["variant"],
        "load_seconds": load_seconds,
        "loaded_rss_bytes": loaded,
        "decode_peak_rss_bytes": peak_memory_bytes(model.device),
        "size_on_disk_bytes": manifest.get("size_on_disk_bytes"),
        **speeds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variants", nargs="+", help="NAME[=VARIANT[,variant.KEY=VALUE...]]")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--out", type=Path, default=Path("results/measurements/variant-footprint/footprint.json")
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = measure(args.child, args.new_tokens, args.batch_size, args.repeats)
        print("RESULT " + json.dumps(result), flush=True)
        return
    rows = {}
    for item in args.variants:
        spec = VariantSpec.parse(item)
        name = spec.name
        command = [
            sys.executable,
            __file__,
            "--child",
            spec.text(),
            "--new-tokens",
            str(args.new_tokens),
            "--batch-size",
            str(args.batch_size),
            "--repeats",
            str(args.repeats),
            name,
        ]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        (line,) = [x for x in output.splitlines() if x.startswith("RESULT ")]
        rows[name] = json.loads(line[len("RESULT ") :])
        print(name, rows[name], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2) + "\n")
    b = args.batch_size
    print(
        f"\n| variant | loaded RSS | decode peak RSS | decode tok/s b1 | decode tok/s b{b} "
        f"| prefill tok/s b{b} | load s |"
    )
    print("|---|---|---|---|---|---|---|")
    gib = 2**30
    for name, r in rows.items():
        cells = [
            name,
            f"{r['loaded_rss_bytes'] / gib:.2f} GiB",
            f"{r['decode_peak_rss_bytes'] / gib:.2f} GiB",
            f"{r['decode_tokens_per_second_batch1']:.1f}",
            f"{r[f'decode_tokens_per_second_batch{b}']:.1f}",
            f"{r[f'prefill_tokens_per_second_batch{b}']:.0f}",
            f"{r['load_seconds']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
