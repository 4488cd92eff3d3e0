"""How int8-dynamic's likelihood depends on the rows it is scored with.

    .venv/bin/python benchmarks/int8_scoring_batch.py --problems 40 --batch-sizes 1,8,40

torch.ao's dynamic int8 Linear quantizes its input with one scale per call, from the range of the
whole input tensor: every row of a batch, the left padding of `continuation_log_probs` included. A
row's int8 log-probabilities therefore depend on which rows (and how much padding) share its batch,
where float32's do not (padding is masked and positions follow each row's tokens). This scores the
canonical solutions of the first --problems HumanEval problems (as `humaneval_nll` does: the
prompt's trailing whitespace moved to the continuation) through `continuation_log_probs` in
batches of each size, and prints each model's mean KL per token (each problem's mean, then the mean
over problems) from float32 scored one problem at a time.
"""

from __future__ import annotations

import argparse
import copy
import warnings

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=40, help="the first N HumanEval problems")
    parser.add_argument("--batch-sizes", default="1,8,40", help="rows per scoring call")
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as transformers_logging

    from codegen_bench.harness.engine.likelihood import continuation_log_probs
    from codegen_bench.harness.execution.problems import load_humaneval
    from codegen_bench.harness.provision import provision
    from codegen_bench.tasks.humaneval.nll import scored_pair
    from codegen_bench.variants.quantize import Int8Dynamic, quantize_

    transformers_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", message=r".*deprecated")
    path = provision()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    rows = []
    for problem in list(load_humaneval().values())[: args.problems]:
        context, continuation = scored_pair(problem["prompt"], problem["canonical_solution"])
        whole = tokenizer.encode(context + continuation, add_special_tokens=False)
        n_continuation = len(whole) - len(tokenizer.encode(context, add_special_tokens=False))
        rows.append((whole[:-1], whole[-n_continuation:]))

    def log_probs(scored, batch_size: int) -> list[torch.Tensor]:
        out = []
        for start in range(0, len(rows), batch_size):
            out += continuation_log_probs(scored, rows[start : start + batch_size], tokenizer.pad_token_id)
        return out

    def mean_kl(reference: list[torch.Tensor], other: list[torch.Tensor]) -> float:
        per_problem = [
            float((r.exp() * (r - o)).sum(dim=-1).mean()) for r, o in zip(reference, other, strict=True)
        ]
        return sum(per_problem) / len(per_problem)

    sizes = [int(s) for s in args.batch_sizes.split(",")]
    reference = log_probs(model, 1)
    models = {
        "float32": lambda: model,
        "int8-dynamic (down_proj float)": lambda: quantize_(copy.deepcopy(model), Int8Dynamic()),
        "int8-dynamic, keep_float= (all int8)": lambda: quantize_(
            copy.deepcopy(model), Int8Dynamic(keep_float=())
        ),
    }
    print(f"{len(rows)} problems; mean KL per token from float32 scored at batch 1")
    print("| model | " + " | ".join(f"batch {s}" for s in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    for name, build in models.items():
        scored = build()
        print(
            f"| {name} | "
            + " | ".join(f"{mean_kl(reference, log_probs(scored, s)):.4f}" for s in sizes)
            + " |"
        )
        del scored


if __name__ == "__main__":
    main()
