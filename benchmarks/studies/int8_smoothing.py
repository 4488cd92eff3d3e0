"""int8-dynamic with down_proj quantized, with and without SmoothQuant-style smoothing of its input;
and how int8's likelihood depends on the rows it is scored with.

    .venv/bin/python benchmarks/studies/int8_smoothing.py --problems 40 --batch-sizes 1,8,40 \
        --out results/measurements/int8-down-proj-smoothing

int8-dynamic keeps down_proj in float32 (variants/quantize.py) because quantizing it costs the most
accuracy of any layer kind, and that float layer is what keeps the default from 3x base at batch 1.
SmoothQuant (Xiao et al. 2023) moves activation outliers into the weights with a per-input-channel
scale s: down_proj's input is SiLU(gate) * up, so dividing up_proj's output channel j by s_j and
multiplying down_proj's input column j by s_j leaves the float model's function unchanged, and the
int8 activations of down_proj see a flatter range. s_j = max|x_j|^alpha / max|W_j|^(1 - alpha), with
max|x_j| over calibration tokens from the standard-library corpus (variants/calibration.py, the same
texts Wanda calibrates on; decontaminated against HumanEval).

Measured per candidate against the float32 model, on the canonical solutions of the first
--problems HumanEval problems, scored as humaneval_nll scores them (`continuation_log_probs`; the
prompt's trailing whitespace moves into the continuation), each problem on its own: KL(fp32 ‖
candidate) per token and top-1 agreement (each problem's mean, then the mean over problems), and the
NLL change per token; each candidate's KL is also paired against int8 with down_proj quantized and
unsmoothed, problem by problem (95% paired bootstrap).

Then the KL of float32 and of the two unsmoothed int8 configurations with the problems scored
--batch-sizes at a time, against float32 scored alone: torch.ao's dynamic int8 Linear takes one
activation scale per call from its whole input (every row of the batch, the left padding included),
so an int8 row's log-probabilities depend on the rows it is scored with; float32's do not.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import torch


def solution_rows(tokenizer, problems) -> list[tuple[list[int], list[int]]]:
    """(input ids, solution ids) per problem, as humaneval_nll's requests reach the engine."""
    from codegen_bench.tasks.humaneval.nll import scored_pair

    rows = []
    for problem in problems:
        context, continuation = scored_pair(problem["prompt"], problem["canonical_solution"])
        whole = tokenizer.encode(context + continuation, add_special_tokens=False)
        n_solution = len(whole) - len(tokenizer.encode(context, add_special_tokens=False))
        rows.append((whole[:-1], whole[-n_solution:]))
    return rows


def solution_log_probs(model, rows, pad_token_id: int, batch_size: int = 1) -> list[torch.Tensor]:
    """Log-probabilities over the vocabulary at each position that predicts a solution token."""
    from codegen_bench.harness.engine.likelihood import continuation_log_probs

    out = []
    for start in range(0, len(rows), batch_size):
        out += continuation_log_probs(model, rows[start : start + batch_size], pad_token_id)
    return out


def down_proj_input_max(model, calibration: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """max |x_j| of each down_proj's input channel over the calibration tokens, by MLP module name."""
    found: dict[str, torch.Tensor] = {}

    def hook(name):
        def record(module, args):
            x = args[0].detach().abs().reshape(-1, args[0].shape[-1]).amax(dim=0)
            found[name] = torch.maximum(found[name], x) if name in found else x

        return record

    handles = [
        module.down_proj.register_forward_pre_hook(hook(name))
        for name, module in model.named_modules()
        if hasattr(module, "down_proj") and hasattr(module, "up_proj")
    ]
    with torch.inference_mode():
        for batch in calibration:
            model(batch)
    for handle in handles:
        handle.remove()
    return found


def smoothed(model, input_max: dict[str, torch.Tensor], alpha: float):
    """A copy of `model` with each MLP's down_proj input smoothed into up_proj (same float function)."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, mlp in model.named_modules():
            if name not in input_max:
                continue
            weight_max = mlp.down_proj.weight.abs().amax(dim=0).clamp(min=1e-5)
            scale = input_max[name].clamp(min=1e-5).pow(alpha) / weight_max.pow(1 - alpha)
            mlp.up_proj.weight.div_(scale[:, None])
            if mlp.up_proj.bias is not None:
                mlp.up_proj.bias.div_(scale)
            mlp.down_proj.weight.mul_(scale[None, :])
    return model


def compare(reference: list[torch.Tensor], candidate: list[torch.Tensor], rows) -> dict:
    kl, top1, nll_change = [], [], []
    for ref, got, (_, solution) in zip(reference, candidate, rows, strict=True):
        target = torch.tensor(solution)
        kl.append(float((ref.exp() * (ref - got)).sum(dim=-1).mean()))
        top1.append(float((ref.argmax(dim=-1) == got.argmax(dim=-1)).float().mean()))
        positions = torch.arange(len(target))
        nll_change.append(float((ref[positions, target] - got[positions, target]).mean()))
    return {"kl": kl, "top1": top1, "nll_change": nll_change}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=40, help="the first N HumanEval problems")
    parser.add_argument("--alphas", default="0.5,0.7,0.85", help="smoothing strengths to try")
    parser.add_argument("--calibration-samples", type=int, default=32)
    parser.add_argument("--calibration-seq-len", type=int, default=128)
    parser.add_argument("--batch-sizes", default="1,8,40", help="rows per scoring call, for the batch table")
    parser.add_argument("--out", type=Path, default=None, help="folder for benchmark.json and table.md")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from codegen_bench.harness.execution.problems import load_humaneval
    from codegen_bench.harness.provision import provision
    from codegen_bench.harness.runs.uncertainty import mean, paired_difference
    from codegen_bench.variants.calibration import calibration_batches
    from codegen_bench.variants.quantize import Int8Dynamic, quantize_

    transformers_logging.disable_progress_bar()
    started = time.perf_counter()
    path = provision()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    problems = list(load_humaneval().values())[: args.problems]
    rows = solution_rows(tokenizer, problems)
    pad = tokenizer.pad_token_id
    reference = solution_log_probs(model, rows, pad)
    input_max = down_proj_input_max(
        model, calibration_batches(tokenizer, args.calibration_samples, args.calibration_seq_len)
    )

    candidates = {
        "int8, down_proj float (the default)": lambda: quantize_(copy.deepcopy(model), Int8Dynamic()),
        "int8, down_proj int8": lambda: quantize_(copy.deepcopy(model), Int8Dynamic(keep_float=())),
    }
    for alpha in (float(a) for a in args.alphas.split(",")):
        candidates[f"int8, down_proj int8, smoothed alpha={alpha}"] = lambda alpha=alpha: quantize_(
            smoothed(model, input_max, alpha), Int8Dynamic(keep_float=())
        )
    results = {}
    for name, build in candidates.items():
        candidate = build()
        results[name] = compare(reference, solution_log_probs(candidate, rows, pad), rows)
        del candidate
        print(f"{name}: KL {mean(results[name]['kl']):.4f}", flush=True)

    unsmoothed = results["int8, down_proj int8"]["kl"]
    lines = [
        f"{len(problems)} HumanEval problems, {sum(len(t) for _, t in rows)} solution tokens; "
        f"{time.perf_counter() - started:.0f} s",
        "",
        "| candidate | KL from fp32 /token | vs down_proj int8 unsmoothed [95%] | top-1 agreement "
        "| NLL change /token |",
        "|---|---|---|---|---|",
    ]
    for name, values in results.items():
        paired = paired_difference(unsmoothed, values["kl"], mean)
        versus = (
            ""
            if values["kl"] == unsmoothed
            else f"{paired.difference:+.4f} [{paired.interval.low:+.4f}, {paired.interval.high:+.4f}]"
        )
        lines.append(
            f"| {name} | {mean(values['kl']):.4f} | {versus} | {mean(values['top1']):.3f} | "
            f"{mean(values['nll_change']):+.4f} |"
        )
    sizes = [int(size) for size in args.batch_sizes.split(",")]
    lines += [
        "",
        f"KL from float32 scored alone, with the problems scored {args.batch_sizes} at a time:",
        "",
        "| model | " + " | ".join(f"batch {size}" for size in sizes) + " |",
        "|---|" + "---|" * len(sizes),
    ]
    by_batch = {}
    for name, build in [("float32", lambda: model), *list(candidates.items())[:2]]:
        scored = build()
        by_batch[name] = {
            size: mean(compare(reference, solution_log_probs(scored, rows, pad, size), rows)["kl"])
            for size in sizes
        }
        del scored
        lines.append(f"| {name} | " + " | ".join(f"{by_batch[name][size]:.4f}" for size in sizes) + " |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "benchmark.json").write_text(
            json.dumps(
                {"problems": len(problems), "results": results, "kl_by_batch_size": by_batch}, indent=1
            )
        )
        (args.out / "table.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
