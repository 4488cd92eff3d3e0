"""Where one variant's batch-1 decode time goes: ms per token, then torch.profiler's top operators.

    .venv/bin/python benchmarks/studies/decode_profile.py --variant int8-dynamic
    .venv/bin/python benchmarks/studies/decode_profile.py --variant int8-dynamic \
        --model-args variant.keep_float=

Through our engine, as the latency suite decodes: one row of --prompt-tokens random tokens (seeded),
--new-tokens tokens with no stop and no repetition cut. One warm-up, then three timed runs (their
times and the median per token are printed), then one run under the profiler, whose operators are
listed by their own CPU time (the profiler slows small operators, so read shares, not totals).
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="base")
    parser.add_argument("--model-args", default="", help="more `codegen` model_args: k=v,k=v")
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--rows", type=int, default=18, help="operators listed")
    args = parser.parse_args()

    import torch
    from lm_eval.utils import simple_parse_args_string
    from torch.profiler import ProfilerActivity, profile

    from codegen_bench.harness.engine.generation import GenerationSettings
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    lm = CodegenLM(variant=args.variant, batch_size=1, **simple_parse_args_string(args.model_args))
    vocab = lm.model.config.vocab_size
    prompt = torch.randint(0, vocab, (args.prompt_tokens,), generator=torch.Generator().manual_seed(0))

    def run(new_tokens: int) -> None:
        settings = GenerationSettings(max_new_tokens=new_tokens, repetition_cut=None)
        lm.engine.generate([prompt.tolist()], settings, set(), lambda *done: None)

    run(args.new_tokens)  # warm-up
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        run(args.new_tokens)
        seconds.append(time.perf_counter() - started)
    per_token_ms = 1000 * statistics.median(seconds) / args.new_tokens
    runs = ", ".join(f"{s:.2f}" for s in seconds)
    print(f"{args.variant} {args.model_args}: runs {runs} s, {per_token_ms:.1f} ms a token")
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        run(args.new_tokens)
    print(profiled.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
