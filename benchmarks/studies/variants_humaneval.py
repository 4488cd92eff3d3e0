"""HumanEval over model variants: one `lm_eval --model codegen` run per variant, then one table.

    .venv/bin/python benchmarks/studies/variants_humaneval.py --limit 40 \
        --variant base --variant int8-dynamic --variant lora=artifacts/lora

Each variant is NAME[=VARIANT[,variant.KEY=VALUE...]] as for `codegen-bench matrix`: VARIANT is a
registered name or an artifact folder, with config overrides. Named variants are built
on first use and cached. Each run writes lm-eval's results to OUT/NAME/; a variant whose results
exist is not run again, so an interrupted sweep resumes where it stopped. The table (Markdown, to
stdout and OUT/table.md) has pass@1, size on disk, peak memory, generation tokens/s and sparsity,
all read from lm-eval's results file (the `codegen` model reports them in its config).

Every variant runs at the same --batch_size: tokens/s depends on it. Memory is the lm_eval
process's resident set on the CPU right after loading, and its peak from then on (model, KV cache
and activations at that batch size). tokens/s is over what each variant generated: a variant that
rambles keeps its batch full and looks fast; variant_footprint.py measures fixed work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from codegen_bench.variants.spec import VariantSpec

TASK = "humaneval_custom"


def results_file(folder: Path) -> Path | None:
    found = sorted(folder.rglob("results_*.json"))
    return found[-1] if found else None


def run(spec: VariantSpec, args: argparse.Namespace) -> Path:
    name = spec.name
    out = args.out / name
    existing = results_file(out)
    if existing is not None:
        print(f"[{name}] results exist: {existing}", flush=True)
        return existing
    command = [
        str(Path(sys.executable).parent / "lm_eval"),
        "--model",
        "codegen",
        "--model_args",
        spec.model_args_string(),
        "--tasks",
        TASK,
        "--confirm_run_unsafe_code",
        "--limit",
        str(args.limit),
        "--batch_size",
        str(args.batch_size),
        "--output_path",
        str(out),
    ]
    print(f"[{name}] {' '.join(command)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    print(f"[{name}] done in {time.perf_counter() - started:.0f} s", flush=True)
    found = results_file(out)
    if found is None:
        raise SystemExit(f"[{name}] lm_eval wrote no results file under {out}")
    return found


def row(name: str, results_path: Path) -> str:
    results = json.loads(results_path.read_text())
    config = results["config"]
    metrics = results["results"][TASK]
    passed = metrics.get("pass@1,none", metrics.get("pass@1"))
    size = config.get("variant_size_on_disk_bytes")
    if size is None and config.get("variant") == "base":
        from codegen_bench.variants.artifact import weights_size_bytes

        size = weights_size_bytes(config["pretrained"])
    sparsity = config.get("variant_sparsity")
    generation = config.get("generation", {})
    cells = [
        name,
        f"{passed:.3f}",
        f"{size / 1e6:,.0f} MB" if size else "-",
        # Runs before the loaded/peak split report one lifetime peak (loading included).
        (f"{config['loaded_memory_bytes'] / 2**30:.2f} / " if config.get("loaded_memory_bytes") else "")
        + f"{config['peak_memory_bytes'] / 2**30:.2f} GiB",
        f"{generation.get('tokens_per_second', 0):.1f}",
        f"{generation.get('tokens', 0):,}",
        f"{sparsity:.1%}" if sparsity is not None else "-",
    ]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--variant", action="append", required=True, help="NAME[=VARIANT[,variant.KEY=VALUE...]], repeatable"
    )
    parser.add_argument("--limit", type=int, default=40, help="first N HumanEval problems")
    parser.add_argument("--batch_size", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("results/measurements/variants-humaneval-40"))
    args = parser.parse_args()

    paths = {spec.name: run(spec, args) for spec in map(VariantSpec.parse, args.variant)}
    header = [
        f"HumanEval, first {args.limit} problems, greedy, batch {args.batch_size}",
        "",
        "| variant | pass@1 | size on disk | memory loaded / peak | tokens/s | tokens | sparsity |",
        "|---|---|---|---|---|---|---|",
    ]
    table = "\n".join(header + [row(name, path) for name, path in paths.items()]) + "\n"
    (args.out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
