"""Generation speed on HumanEval: `lm_eval --model codegen` against lm-eval's own `hf`, in one run.

    .venv/bin/python benchmarks/studies/generation_speed.py --limit 164 --batch_size 16 --batch1

Both engines run the same lm-eval task (`humaneval_custom`: same prompts, stop strings, token budget,
greedy), on the same fp32 model folder, at the same --batch_size, one after the other, each in its
own `lm_eval` process. `--chat false` (the default) sends the raw HumanEval prompt to both: lm-eval's
`hf` does not apply our chat fields, so this is the setting in which the two are comparable.

Reported per run: wall time of the whole `lm_eval` process (loading, generation, execution), pass@1,
completion tokens (the completions as saved, re-tokenized, so both engines count the same way) and
completion tokens/s over the wall time. For codegen also its generation-only time, the tokens it
generated and the % of roofline: the FLOPs of the model's weight matmuls for that work (prompt
tokens through every layer, each generated token through every layer and the output head;
attention is left out, so the % is conservative) over the time those matmuls would take at the
peak FLOP/s measured here first: the best of one decoder layer's matmuls at 256, 512 and 1024 rows,
with `torch.nn.functional.linear` and with oneDNN's prepacked linear.

Also counted: completions that differ between codegen and hf, and (--batch1) between codegen at
--batch_size and at batch 1. Runs whose results exist under OUT are not rerun, so an interrupted
benchmark resumes; delete a run's folder to measure it again. Table: OUT/table.md; numbers:
OUT/benchmark.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

TASK = "humaneval_custom"


def find(folder: Path, pattern: str) -> Path | None:
    found = sorted(folder.rglob(pattern))
    return found[-1] if found else None


def run_lm_eval(name: str, model: str, model_args: str, batch_size: int, args) -> dict:
    out = args.out / name
    record = out / "run.json"
    if record.exists():
        print(f"[{name}] already measured: {record}", flush=True)
        return json.loads(record.read_text())
    command = [
        str(Path(sys.executable).parent / "lm_eval"),
        "--model",
        model,
        "--model_args",
        model_args,
        "--tasks",
        TASK,
        "--confirm_run_unsafe_code",
        "--batch_size",
        str(batch_size),
        "--output_path",
        str(out),
    ]
    if args.limit:
        command += ["--limit", str(args.limit)]
    print(f"[{name}] {' '.join(command)}", flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - started
    results_path, samples_path = find(out, "results_*.json"), find(out, f"{TASK}_*.jsonl")
    if results_path is None or samples_path is None:
        raise SystemExit(f"[{name}] lm_eval wrote no results or samples under {out}")
    results = json.loads(results_path.read_text())
    metrics = results["results"][TASK]
    summary = {
        "name": name,
        "model": model,
        "model_args": model_args,
        "batch_size": batch_size,
        "wall_seconds": wall,
        "pass@1": metrics.get("pass@1,none", metrics.get("pass@1")),
        "generation": results["config"].get("generation"),  # codegen's own counts; None for hf
        "samples": str(samples_path),
    }
    record.write_text(json.dumps(summary, indent=2))
    print(f"[{name}] {wall:.0f} s, pass@1 {summary['pass@1']:.3f}", flush=True)
    return summary


def completions(run: dict) -> dict[str, str]:
    rows = (json.loads(line) for line in Path(run["samples"]).read_text().splitlines() if line.strip())
    return {row["task_id"]: row["completion"] for row in rows}


def differing(a: dict, b: dict) -> list[str]:
    ca, cb = completions(a), completions(b)
    return sorted((t for t in ca if ca[t] != cb.get(t)), key=lambda t: int(t.split("/")[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=0, help="first N problems (0: all 164)")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--chat", choices=["false", "auto"], default="false")
    parser.add_argument("--batch1", action="store_true", help="also run codegen at batch 1 (slow)")
    parser.add_argument("--no-hf", action="store_true", help="skip lm-eval's hf (it is the slow one)")
    parser.add_argument("--ablate-prepack", action="store_true", help="also run codegen with prepack=false")
    parser.add_argument("--out", type=Path, default=Path("results/measurements/generation-speed"))
    args = parser.parse_args()

    import torch
    from transformers import AutoTokenizer

    from codegen_bench.harness.engine.roofline import MatmulShapes, generation_flops, measure_peak_flops
    from codegen_bench.harness.loading import meta_model, resolve_pretrained

    pretrained = resolve_pretrained(None)
    shapes = MatmulShapes.of(meta_model(pretrained))
    tokenizer = AutoTokenizer.from_pretrained(pretrained)
    args.out.mkdir(parents=True, exist_ok=True)

    # The roofline first, on a quiet machine.
    peak_path = args.out / "peak_flops.json"
    if not peak_path.exists():
        peak_path.write_text(json.dumps(measure_peak_flops(shapes), indent=2))
    peaks = json.loads(peak_path.read_text())
    peak = max(peaks.values())
    print("peak FLOP/s: " + ", ".join(f"{k} {v / 1e9:.0f} G" for k, v in peaks.items()), flush=True)

    # The same work as hf's: no answer ends early on a repetition (hf has no such cut).
    codegen_args = f"pretrained={pretrained},chat={args.chat},cut_repetitions=false"
    # hf right after codegen: it is the comparison the benchmark is for, and the slowest run.
    runs = [run_lm_eval("codegen", "codegen", codegen_args, args.batch_size, args)]
    if not args.no_hf:
        if args.chat != "false":
            raise SystemExit("--chat auto: lm-eval's hf would see other prompts than codegen; use --no-hf")
        runs.append(run_lm_eval("hf", "hf", f"pretrained={pretrained},dtype=float32", args.batch_size, args))
    if args.batch1:
        runs.append(run_lm_eval("codegen-batch1", "codegen", codegen_args, 1, args))
    if args.ablate_prepack:
        no_prepack = codegen_args + ",prepack=false"
        runs.append(run_lm_eval("codegen-no-prepack", "codegen", no_prepack, args.batch_size, args))

    reference = runs[0]
    lines = [
        f"HumanEval {'first ' + str(args.limit) if args.limit else 'all 164'} problems, greedy, fp32, "
        f"chat={args.chat}; {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
        f"torch {torch.__version__}; peak {peak / 1e9:.0f} GFLOP/s ({max(peaks, key=peaks.get)}, "
        "a decoder layer's matmuls)",
        "",
        "| run | batch | wall s | generation s | pass@1 | completion tokens | tokens/s (wall) "
        "| % roofline (generation) | completions differing from codegen | wall vs codegen |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    report = {"peak_flops": peaks, "limit": args.limit, "batch_size": args.batch_size, "runs": []}
    for run in runs:
        done = completions(run)
        tokens = sum(len(tokenizer.encode(c)) for c in done.values())
        generation = run.get("generation") or {}
        roofline = None
        if generation.get("seconds"):
            flops = generation_flops(
                shapes, generation["prompt_tokens"], generation["tokens"], generation["requests"]
            )
            roofline = flops / peak / generation["seconds"]
        differ = differing(reference, run) if run is not reference else []
        report["runs"].append(
            {**run, "completion_tokens": tokens, "roofline_fraction": roofline, "differing": differ}
        )
        lines.append(
            f"| {run['name']} | {run['batch_size']} | {run['wall_seconds']:.0f} "
            f"| {generation.get('seconds', float('nan')):.0f} | {run['pass@1']:.3f} | {tokens:,} "
            f"| {tokens / run['wall_seconds']:.1f} | {f'{roofline:.0%}' if roofline else '-'} "
            f"| {len(differ)} | {run['wall_seconds'] / reference['wall_seconds']:.2f}x |"
        )
    table = "\n".join(lines) + "\n"
    (args.out / "table.md").write_text(table)
    (args.out / "benchmark.json").write_text(json.dumps(report, indent=2))
    print(table)


if __name__ == "__main__":
    main()
