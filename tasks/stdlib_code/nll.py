"""`stdlib_nll`: `humaneval_nll`'s measurement (tasks/humaneval/nll.py) on code that is not HumanEval.

The docs are a seeded sample of 164 functions (as many as HumanEval has) of the held-out
(`validation`) split of the standard library's code-generation pairs (harness/corpus/stdlib.py),
in corpus order: the prompt is a function's signature and docstring, the solution its body. All
526 would score five times humaneval_nll's tokens, and keep as many reference log-probs in the
matrix's KL cache, for a mean over tokens that a sample already pins down.
Our LoRA recipes train on the `train` split (trainers/recipes.py), so with
`kl_reference=base`, `kl_per_token` and `top1_agreement` say how far an adapter moved from base on
code of the kind it learnt from but never saw: a forgetting measure that does not look at HumanEval.
The metrics, their aggregations and the token counting are humaneval_nll's (the YAML includes its
YAML; the docs are built by its `scored_docs`).
"""

from __future__ import annotations

import random

import datasets

from codegen_bench.harness.corpus.stdlib import CODEGEN_FILE, DataConfig, cached_datasets, load_pairs
from codegen_bench.tasks.humaneval.nll import scored_docs

HELD_OUT_SPLIT = "validation"
SAMPLE_SIZE = 164
SAMPLE_SEED = 0


def held_out_pairs(config: DataConfig | None = None) -> list[dict]:
    """The held-out code-generation pairs in corpus order, from the corpus the recipes train on
    (built once per `config` and cached: `cached_datasets`)."""
    return load_pairs(cached_datasets(config or DataConfig()) / CODEGEN_FILE, HELD_OUT_SPLIT)


def sampled_pairs(pairs: list[dict]) -> list[dict]:
    """SAMPLE_SIZE of `pairs`, drawn with SAMPLE_SEED, kept in their order (all if fewer)."""
    if len(pairs) <= SAMPLE_SIZE:
        return pairs
    chosen = set(random.Random(SAMPLE_SEED).sample(range(len(pairs)), SAMPLE_SIZE))
    return [pair for i, pair in enumerate(pairs) if i in chosen]


def load_dataset(**metadata) -> dict[str, datasets.Dataset]:
    return {"test": scored_docs(sampled_pairs(held_out_pairs()), "prompt", "completion", metadata)}


def doc_to_target(doc: dict) -> str:
    return doc["completion"]
