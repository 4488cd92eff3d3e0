"""Dynamic int8 backends on the default model: decode speed at batch 1 and 8, and agreement with fp32.

    .venv/bin/python benchmarks/studies/int8_dynamic.py    # fp32 and torch.ao (ao-*) variants
    .venv/bin/python benchmarks/studies/int8_dynamic.py --only ao-all,quanto,torchao \
        --prompt-tokens 24 --new-tokens 8

Every candidate starts from a fresh fp32 load of the default model (Qwen2.5-Coder-0.5B-Instruct) and
all stay in memory; the timed runs interleave them (run r of every candidate before run r + 1), so
other load on the machine shifts every row alike and the ratios to fp32 hold.

Batch 1: greedy `model.generate` of exactly --new-tokens tokens after each of four HumanEval prompts
(~100 tokens, or the first --prompt-tokens); its tokens/s is the median over the four runs and its
tokens are compared with fp32's (how many match before the first difference). Batch 8: eight such
prompts left-padded, median of --repeats runs. tokens/s counts new tokens over the whole call,
prefill included. Logit difference and next-token agreement: one forward over each prompt.

torchao and optimum-quanto are optional (`pip install --no-deps torchao optimum-quanto`) and, on a
CPU without AVX-512 VNNI or AMX, slow: both call torch._int_mm, which is a plain loop there (see the
kernel table this script prints first), so give them the short setting of the second command.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from torch import nn


def _not_lm_head(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear) and fqn != "lm_head"


def quantize_torch_ao(model, **config):
    from codegen_bench.variants.quantize import Int8Dynamic, quantize_

    return quantize_(model, Int8Dynamic(**config))


def quantize_torchao(model, prompts=None):
    from torchao.quantization import Int8DynamicActivationInt8WeightConfig, quantize_

    quantize_(model, Int8DynamicActivationInt8WeightConfig(), filter_fn=_not_lm_head)
    return model


def quantize_quanto(model, prompts):
    from optimum.quanto import Calibration, freeze, qint8, quantize

    quantize(model, weights=qint8, activations=qint8, exclude="lm_head")
    # quanto's activation scales are static: without calibration they stay at their initial value
    # and the logits are far off, so record them on the benchmark prompts first (quanto's recipe;
    # calibrating on the prompts it is then scored on flatters it slightly).
    with torch.no_grad(), Calibration():
        for ids in prompts:
            model(ids)
    freeze(model)
    return model


CANDIDATES: dict[str, Callable | None] = {
    "fp32": None,
    "ao-all": lambda model, prompts: quantize_torch_ao(model, keep_float=()),
    "ao-all-per-tensor": lambda model, prompts: quantize_torch_ao(
        model, granularity="per-tensor", keep_float=()
    ),
    "ao-lm_head-fp32": lambda model, prompts: quantize_torch_ao(model, keep_float=("lm_head",)),
    "ao-down_proj-fp32": lambda model, prompts: quantize_torch_ao(model, keep_float=("down_proj",)),
    "quanto": quantize_quanto,
    "torchao": quantize_torchao,
}
DEFAULT = ("fp32", "ao-all", "ao-all-per-tensor", "ao-lm_head-fp32", "ao-down_proj-fp32")
PACKAGE = {"torchao": "torchao", "quanto": "optimum.quanto"}


def select_prompts(tokenizer, count: int = 8, low: int = 80, high: int = 140) -> list[list[int]]:
    """The first `count` HumanEval prompts whose length is `low`..`high` tokens (~100)."""
    from codegen_bench.harness.execution.problems import load_humaneval

    chosen = []
    for problem in load_humaneval().values():
        ids = tokenizer(problem["prompt"])["input_ids"]
        if low <= len(ids) <= high:
            chosen.append(ids)
        if len(chosen) == count:
            return chosen
    raise SystemExit(f"only {len(chosen)} HumanEval prompts have {low}-{high} tokens")


def left_padded(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    longest = max(map(len, prompts))
    ids = torch.full((len(prompts), longest), pad_id)
    mask = torch.zeros((len(prompts), longest), dtype=torch.long)
    for row, prompt in enumerate(prompts):
        ids[row, longest - len(prompt) :] = torch.tensor(prompt)
        mask[row, longest - len(prompt) :] = 1
    return ids, mask


@torch.inference_mode()
def greedy(model, prompts, pad_id: int, new_tokens: int) -> tuple[torch.Tensor, float]:
    ids, mask = left_padded(prompts, pad_id)
    start = time.perf_counter()
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,  # every row makes the same number of tokens
        pad_token_id=pad_id,
    )
    return out[:, ids.shape[1] :], time.perf_counter() - start


def _first_difference(a: torch.Tensor, b: torch.Tensor) -> int:
    differ = (a != b).nonzero()
    return int(differ[0]) if len(differ) else len(a)


def _timed_ms(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


@torch.inference_mode()
def kernel_table(in_features: int = 896, out_features: int = 4864) -> None:
    """One MLP-sized Linear of the default model (896 -> 4864) in each backend, ms per call."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    torch.manual_seed(0)
    linear = nn.Linear(in_features, out_features, bias=False).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao's deprecation notices
        linear.qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
        fbgemm = DynamicQuantizedLinear.from_float(linear)
    int8_weight = torch.randint(-127, 128, (in_features, out_features), dtype=torch.int8)
    print(f"ms per call of one {in_features} -> {out_features} Linear (median of 5):")
    for rows in (1, 8, 64):
        x = torch.randn(rows, in_features)
        x_int8 = torch.randint(-127, 128, (rows, in_features), dtype=torch.int8)
        cells = {
            "fp32": _timed_ms(lambda x=x: linear(x), 5),
            "torch.ao (fbgemm)": _timed_ms(lambda x=x: fbgemm(x), 5),
            "torch._int_mm (torchao, quanto)": _timed_ms(lambda a=x_int8: torch._int_mm(a, int8_weight), 5),
        }
        print(f"  {rows:3d} rows: " + ", ".join(f"{k} {v:.2f}" for k, v in cells.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="batch-8 runs per candidate")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompt-tokens", type=int, default=None, help="cut prompts to this many tokens")
    parser.add_argument("--only", default="", help="comma-separated candidates besides fp32")
    parser.add_argument("--pretrained", default=None, help="model folder (default: the default model)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from codegen_bench.harness.provision import provision

    transformers_logging.disable_progress_bar()
    path = args.pretrained or provision()
    tokenizer = AutoTokenizer.from_pretrained(path)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    prompts = [p[: args.prompt_tokens] for p in select_prompts(tokenizer)]
    wanted = ["fp32", *filter(None, args.only.split(","))] if args.only else list(DEFAULT)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.2f}; prompts {[len(p) for p in prompts]} tokens, {args.new_tokens} new tokens",
        flush=True,
    )
    kernel_table()

    rows, models = {}, {}
    for name in wanted:
        if name not in CANDIDATES:
            raise SystemExit(f"unknown candidate {name!r}: choose from {', '.join(CANDIDATES)}")
        if name in PACKAGE:
            try:
                __import__(PACKAGE[name])
            except ImportError as exc:
                rows[name] = {"skipped": f"{PACKAGE[name]} not installed ({exc})"}
                continue
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        start = time.perf_counter()
        if CANDIDATES[name] is not None:
            model = CANDIDATES[name](model, [torch.tensor([p]) for p in prompts])
        quantize_s = time.perf_counter() - start
        with torch.inference_mode():
            logits = [model(torch.tensor([p])).logits[0] for p in prompts[:4]]
        rows[name] = {"quantize_s": quantize_s, "logits": logits, "b1": [], "b8": []}
        greedy(model, prompts[:1], pad_id, 2)  # warm-up: first-call allocations and kernel selection
        models[name] = model
        print(f"{name}: quantized and warmed up", flush=True)
        del model
        gc.collect()

    # Timed runs interleave the candidates, so load that comes and goes lands on all of them.
    for prompt in prompts[:4]:
        for name, model in models.items():
            tokens, seconds = greedy(model, [prompt], pad_id, args.new_tokens)
            rows[name]["b1"].append(seconds)
            rows[name].setdefault("tokens", []).append(tokens[0])
            print(f"{name} batch 1: {seconds:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)
    for _ in range(args.repeats):
        for name, model in models.items():
            rows[name]["b8"].append(greedy(model, prompts, pad_id, args.new_tokens)[1])
            print(f"{name} batch 8: {rows[name]['b8'][-1]:.1f} s (load {os.getloadavg()[0]:.2f})", flush=True)

    reference = rows["fp32"]
    for name in models:
        row = rows[name]
        pairs = list(zip(row["logits"], reference["logits"], strict=True))
        row["max_logit_diff"] = max((a - b).abs().max().item() for a, b in pairs)
        row["top1_agree"] = statistics.mean(
            (a.argmax(-1) == b.argmax(-1)).float().mean().item() for a, b in pairs
        )
        row["same_tokens"] = [
            _first_difference(a, b) for a, b in zip(row["tokens"], reference["tokens"], strict=True)
        ]
        row["b1_tok_s"] = args.new_tokens / statistics.median(row["b1"])
        row["b8_tok_s"] = len(prompts) * args.new_tokens / statistics.median(row["b8"])
    print_table(rows, reference, args.new_tokens)


def print_table(rows: dict, reference: dict, new_tokens: int) -> None:
    header = (
        f"| {'candidate':<27} | quantize s | b1 tok/s (x fp32) | b8 tok/s (x fp32) "
        f"| max abs logit diff | top-1 agree | greedy tokens equal to fp32 (of {new_tokens}) |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for name, row in rows.items():
        if "skipped" in row:
            print(f"| {name:<27} | skipped: {row['skipped']} |")
            continue
        b1, b8 = row["b1_tok_s"], row["b8_tok_s"]
        print(
            f"| {name:<27} | {row['quantize_s']:10.1f} "
            f"| {b1:6.2f} ({b1 / reference['b1_tok_s']:4.2f}x)    "
            f"| {b8:6.2f} ({b8 / reference['b8_tok_s']:4.2f}x)    "
            f"| {row['max_logit_diff']:18.3f} | {row['top1_agree']:11.1%} "
            f"| {', '.join(map(str, row['same_tokens']))} |"
        )


if __name__ == "__main__":
    main()
