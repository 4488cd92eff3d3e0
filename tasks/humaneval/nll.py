"""`humaneval_nll`: how likely the model finds each canonical solution, given its prompt.

A continuous signal: where compression leaves pass@1 unmoved (or a weak model scores 0 on every
variant), the likelihood of the reference solutions still ranks the variants.

- `nll_per_token`: -sum(log p) / sum(tokens) over all solutions, in nats, token-weighted.
- `bits_per_char`: -sum(log p) / ln 2 / sum(characters): comparable across tokenizers.
- With `--model codegen --model_args kl_reference=base` (the matrix sets it for every variant but
  the reference), how far the model's next-token distributions moved from the reference model's on
  the same solution tokens: `kl_per_token`, the mean over tokens of KL(reference || model) in nats,
  and `top1_agreement`, the share of tokens where both models' most likely next token is the same.
  Where pass@1 cannot tell a compressed variant from base, these can.

lm-eval returns only each continuation's summed log-probability, so the token counts are computed
here, when the docs are built, with the tokenizer of the model being evaluated: lm-eval passes the
model_args to the task (`pretrained=`, or `tokenizer=` for `--model hf`), and without one it is the
embedded default model's. Counting follows lm-eval's `TemplateLM._encode_pair` (trailing
whitespace of the prompt moves into the continuation; continuation tokens = tokens of the whole
minus tokens of the prompt), so the count is that of the tokens actually scored. From Python
(`simple_evaluate(model=<LM object>)`) pass `metadata={"pretrained": ...}` for a non-default model.

`stdlib_nll` (tasks/stdlib_code/) is the same measurement on held-out standard-library functions:
its YAML includes this task's and its docs are built by `scored_docs` too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

import datasets

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.loading import LoadConfig, load_tokenizer, resolve_pretrained


def scored_pair(prompt: str, solution: str) -> tuple[str, str]:
    """(context, continuation) as lm-eval scores them: trailing whitespace moves to the continuation."""
    stripped = prompt.rstrip()
    return stripped, prompt[len(stripped) :] + solution


@functools.lru_cache(maxsize=4)
def _tokenizer(name_or_path: str, revision: str | None, trust_remote_code: bool):
    """Loaded once per process: a matrix builds these docs for every variant's likelihood cell, and
    loading a tokenizer from its JSON takes seconds. Only encoded with, never changed."""
    config = LoadConfig(revision=revision, trust_remote_code=trust_remote_code)
    return load_tokenizer(name_or_path, config)


def token_counter(metadata: dict) -> Callable[[str], int]:
    """Counts tokens with the evaluated model's tokenizer, as lm-eval's model_args name it (module
    docstring); without one, the embedded default model's."""
    name = metadata.get("tokenizer") or metadata.get("pretrained")
    tokenizer = _tokenizer(
        resolve_pretrained(name), metadata.get("revision"), bool(metadata.get("trust_remote_code", False))
    )

    def count(text: str) -> int:
        return len(tokenizer.encode(text, add_special_tokens=False))

    return count


def scored_docs(docs: Iterable[dict], prompt_key: str, solution_key: str, metadata: dict) -> datasets.Dataset:
    """`docs`, each with `n_tokens` and `n_chars` added: the tokens and characters of
    `doc[solution_key]` that lm-eval scores after `doc[prompt_key]` (`scored_pair`)."""
    count = token_counter(metadata)
    scored = []
    for doc in docs:
        context, continuation = scored_pair(doc[prompt_key], doc[solution_key])
        scored.append(
            {**doc, "n_tokens": count(context + continuation) - count(context), "n_chars": len(continuation)}
        )
    return datasets.Dataset.from_list(scored)


def load_dataset(**metadata) -> dict[str, datasets.Dataset]:
    return {"test": scored_docs(load_humaneval().values(), "prompt", "canonical_solution", metadata)}


def doc_to_text(doc: dict) -> str:
    return doc["prompt"]


def doc_to_target(doc: dict) -> str:
    return doc["canonical_solution"]


def process_results(doc: dict, results: list[tuple[float, bool]]) -> dict[str, tuple[float, int]]:
    (score,) = results
    logprob, _is_greedy = score
    if doc["n_tokens"] < 1:
        name = doc.get("task_id") or doc.get("id")  # HumanEval's task_id; the stdlib corpus's id (stdlib_nll)
        raise CodegenBenchError(f"{name}: its canonical solution has no tokens to score")
    scores = {"nll_per_token": (-logprob, doc["n_tokens"]), "bits_per_char": (-logprob, doc["n_chars"])}
    if getattr(score, "kl_sum", None) is not None:  # a ContinuationScore from codegen with kl_reference
        scores["kl_per_token"] = (score.kl_sum, score.n_tokens)
        scores["top1_agreement"] = (score.top1_agreements, score.n_tokens)
    return scores


def _ratio(items: list[tuple[float, int]]) -> float:
    nll = sum(n for n, _ in items)
    units = sum(u for _, u in items)
    return nll / units


def nll_per_token(items: list[tuple[float, int]]) -> float:
    return _ratio(items)


def bits_per_char(items: list[tuple[float, int]]) -> float:
    return _ratio(items) / math.log(2)


def kl_per_token(items: list[tuple[float, int]]) -> float:
    return _ratio(items)


def top1_agreement(items: list[tuple[int, int]]) -> float:
    return _ratio(items)
