"""Latency and memory of each variant, with pytest-benchmark (not part of `make test`):

    .venv/bin/pytest benchmarks/test_latency.py --variants base int8-dynamic nf4 \
        --benchmark-json results/RUN/latency.json

For each variant, loaded as `lm_eval --model codegen` loads it (prepacked weights included):
- prefill latency of a fixed --prompt-tokens prompt (one forward pass, last-position logits);
- time to first token for the first HumanEval prompt as the model is prompted (chat template);
- decode tokens/s at batch 1 and at --large-batch: --new-tokens tokens per row, end of sequence
  ignored, after --decode-prompt-tokens random tokens per row; the prefill of the same batch, timed
  apart, is subtracted. Short prompts keep that prefill a small part of the timed work: after long
  prompts the decode time is a small difference of two large, noisy times;
- weight memory (the bytes of the model's tensors as it holds them: packed int8, NF4 blocks and
  their state, oneDNN-packed fp32), peak resident set while decoding, size on disk (the artifact's
  weights; the base model's safetensors).
pytest-benchmark runs one warm-up round and --latency-rounds timed rounds and reports min, median
and spread. The options' defaults are the suite's full size (LATENCY_SIZES in
harness/runs/latency_size.py; `codegen-bench matrix --latency-size demo` passes a smaller one); the
JSON records the size that ran (the stats' rounds, the prompt and new tokens in `extra_info`),
which the matrix and the leaderboard read back. The derived figures sit in each benchmark's
`extra_info`, and the summary at the end gives every speed also as a ratio to the reference variant
measured in this same run (--reference NAME, else `base`, else the first:
harness/runs/reference.py): absolute times drift between machines and runs, ratios much less.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from lm_eval.utils import simple_parse_args_string

from codegen_bench.harness.engine.generation import GenerationSettings
from codegen_bench.harness.engine.memory import release_freed_memory
from codegen_bench.harness.lm_eval_plugin.model import CodegenLM
from codegen_bench.harness.runs.reference import reference_variant
from codegen_bench.tasks.humaneval.utils import load_dataset
from codegen_bench.variants.artifact import weights_size_bytes
from codegen_bench.variants.spec import VariantSpec

SUMMARY: dict[str, dict] = {}  # variant name -> figures, for the terminal summary and the matrix


@pytest.fixture(scope="module")
def lm(variant_spec, pytestconfig):
    spec = VariantSpec.parse(variant_spec)
    started = time.perf_counter()
    model = CodegenLM(
        pretrained=pytestconfig.getoption("--pretrained"),
        batch_size=pytestconfig.getoption("--large-batch"),
        **simple_parse_args_string(pytestconfig.getoption("--model-args")),
        **spec.model_args(),
    )
    figures = SUMMARY.setdefault(spec.name, {})
    # What the suite spends besides its timed rounds: loading (and preparing) the variant once.
    figures["load_seconds"] = time.perf_counter() - started
    figures["weight_memory_bytes"] = model.weight_memory_bytes
    figures["size_on_disk_bytes"] = model.variant_manifest.get("size_on_disk_bytes") or weights_size_bytes(
        model.pretrained
    )
    yield spec.name, model
    del model
    release_freed_memory()  # else the next variant's resident set starts with this one's freed heap


@pytest.fixture(autouse=True)
def wall_seconds(request):
    """Each benchmark's whole time, warm-ups and untimed prefill rounds included (its stats hold the
    timed rounds only), and its variant's load time: what the suite costs, in its JSON."""
    started = time.perf_counter()
    yield
    benchmark = request.node.funcargs.get("benchmark")
    if benchmark is not None and "lm" in request.node.funcargs:
        name, _ = request.node.funcargs["lm"]
        benchmark.extra_info["wall_seconds"] = time.perf_counter() - started
        benchmark.extra_info["load_seconds"] = SUMMARY[name]["load_seconds"]


def _prompts(model, count: int) -> list[list[int]]:
    docs = list(load_dataset()["test"])[:count]
    gen_kwargs = {"until": [], "max_gen_toks": 1}
    return [model.prepare_generation(doc["prompt"], gen_kwargs, doc=doc)[0] for doc in docs]


def _random_prompts(model, count: int, length: int) -> list[list[int]]:
    """`count` prompts of `length` token ids, the same for every variant (seeded per row, so no
    shared prefix)."""
    vocab = model.model.config.vocab_size
    return [
        torch.randint(0, vocab, (length,), generator=torch.Generator().manual_seed(row)).tolist()
        for row in range(count)
    ]


def _ignore_row(row: int, text: str, n_tokens: int, repeat_period: int | None) -> None:
    pass  # the benchmarks time the work; its text is not needed


def _rounds(pytestconfig) -> int:
    return pytestconfig.getoption("--latency-rounds")


def test_prefill_latency(benchmark, lm, pytestconfig):
    name, model = lm
    length = pytestconfig.getoption("--prompt-tokens")
    vocab = model.model.config.vocab_size
    ids = torch.randint(0, vocab, (1, length), generator=torch.Generator().manual_seed(0))

    @torch.inference_mode()
    def prefill():
        model.model(input_ids=ids.to(model.model.device), logits_to_keep=1)

    benchmark.pedantic(prefill, rounds=_rounds(pytestconfig), warmup_rounds=1)
    median = benchmark.stats.stats.median
    figures = {"prefill_seconds": median, "prefill_tokens_per_s": length / median}
    SUMMARY[name].update(figures)
    benchmark.extra_info.update(variant=name, prompt_tokens=length, **figures)


def test_time_to_first_token(benchmark, lm, pytestconfig):
    name, model = lm
    (prompt,) = _prompts(model, 1)

    def first_token():
        model.engine.generate(
            [prompt], GenerationSettings(max_new_tokens=1, repetition_cut=None), set(), _ignore_row
        )

    benchmark.pedantic(first_token, rounds=_rounds(pytestconfig), warmup_rounds=1)
    SUMMARY[name]["time_to_first_token_seconds"] = benchmark.stats.stats.median
    benchmark.extra_info.update(variant=name, prompt_tokens=len(prompt))


@pytest.mark.parametrize("batch", ["1", "large"])
def test_decode_throughput(benchmark, lm, pytestconfig, batch):

    name, model = lm
    rows = 1 if batch == "1" else pytestconfig.getoption("--large-batch")
    new_tokens = pytestconfig.getoption("--new-tokens")
    prompt_tokens = pytestconfig.getoption("--decode-prompt-tokens")
    prompts = _random_prompts(model, rows, prompt_tokens)

    def run(max_new_tokens: int) -> None:
        # Fixed work: no row may end early on a repetition (random prompts can make a model loop).
        settings = GenerationSettings(max_new_tokens=max_new_tokens, repetition_cut=None)
        model.engine.generate(prompts, settings, set(), _ignore_row)

    run(1)  # warm-up: the first call pays for allocations the timed ones do not
    prefill_times = []
    for _ in range(_rounds(pytestconfig)):
        started = time.perf_counter()
        run(1)
        prefill_times.append(time.perf_counter() - started)
    benchmark.pedantic(run, args=(new_tokens,), rounds=_rounds(pytestconfig), warmup_rounds=1)
    decode_seconds = benchmark.stats.stats.median - statistics.median(prefill_times)
    # Noise can make the difference meaningless on tiny work; then there is no figure, not a wrong one.
    decode_speed = rows * (new_tokens - 1) / decode_seconds if decode_seconds > 0 else None
    figures = {
        f"decode_tokens_per_s_batch{rows}": decode_speed,
        "peak_memory_bytes": max(
            SUMMARY[name].get("peak_memory_bytes", 0), model.engine.memory().peak_memory_bytes
        ),
    }
    SUMMARY[name].update(figures)
    benchmark.extra_info.update(
        variant=name, rows=rows, new_tokens=new_tokens, decode_prompt_tokens=prompt_tokens, **figures
    )
    benchmark.extra_info.update(
        {k: v for k, v in SUMMARY[name].items() if k in ("weight_memory_bytes", "size_on_disk_bytes")}
    )


def summary_lines(requested_reference: str | None = None) -> list[str]:
    """The summary lines (called from conftest): every variant's figures and speed ratios to the
    reference variant (`requested_reference`, else the rule of harness/runs/reference.py)."""
    if not SUMMARY:
        return []
    names = list(SUMMARY)
    reference_name = reference_variant(names, requested_reference)
    reference = SUMMARY[reference_name]
    speed_keys = sorted({k for f in SUMMARY.values() for k in f if "_per_s" in k})
    lines = [f"speeds as measured, and (x the reference variant, {reference_name}):"]
    for name in names:
        figures = SUMMARY[name]
        parts = []
        for key in speed_keys:
            if figures.get(key) is not None:
                ratio = figures[key] / reference[key] if reference.get(key) else float("nan")
                parts.append(f"{key} {figures[key]:.1f} ({ratio:.2f}x)")
        for key in ("weight_memory_bytes", "peak_memory_bytes", "size_on_disk_bytes"):
            if figures.get(key):
                parts.append(f"{key[: -len('_bytes')]} {figures[key] / 2**30:.2f} GiB")
        if "time_to_first_token_seconds" in figures:
            parts.append(f"time to first token {figures['time_to_first_token_seconds']:.2f} s")
        lines.append(f"  {name}: " + ", ".join(parts))
    return lines
