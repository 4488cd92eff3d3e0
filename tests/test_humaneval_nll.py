from __future__ import annotations

import math

import pytest
import torch
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from codegen_bench.tasks.humaneval import nll


@pytest.fixture(scope="module")
def docs(tiny_model_dir):
    return nll.load_dataset(pretrained=str(tiny_model_dir))["test"]


def _manual_logprob(model, tokenizer, context: str, continuation: str) -> tuple[float, int]:
    """Sum of log p(token) over the continuation's tokens, one position at a time."""
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([whole])).logits[0].double(), dim=-1)
    total = sum(logprobs[i - 1, whole[i]].item() for i in range(len(context_ids), len(whole)))
    return total, len(whole) - len(context_ids)


def _manual_metrics(model, tokenizer, docs) -> tuple[float, float]:
    """(nll_per_token, bits_per_char) of `docs` by hand, counting with the model's own tokenizer."""
    total_nll = total_tokens = total_chars = 0
    for doc in docs:
        logprob, n_tokens = _manual_logprob(
            model, tokenizer, *nll.scored_pair(doc["prompt"], doc["canonical_solution"])
        )
        assert n_tokens == doc["n_tokens"]
        total_nll -= logprob
        total_tokens += n_tokens
        total_chars += doc["n_chars"]
    return total_nll / total_tokens, total_nll / total_chars / math.log(2)


def test_docs_count_the_scored_tokens_and_characters(docs, tiny):
    _, tokenizer = tiny
    doc = docs[0]
    context, continuation = nll.scored_pair(doc["prompt"], doc["canonical_solution"])
    assert context + continuation == doc["prompt"] + doc["canonical_solution"]
    assert not context.endswith(("\n", " "))  # lm-eval moves the prompt's trailing newline
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    assert doc["n_tokens"] == len(whole) - len(tokenizer.encode(context, add_special_tokens=False))
    assert doc["n_chars"] == len(continuation)
    assert len(docs) == 164


def test_aggregations_weight_by_tokens_and_characters():
    items = [(2.0, 1), (6.0, 3)]
    assert nll.nll_per_token(items) == pytest.approx(8.0 / 4)
    assert nll.bits_per_char(items) == pytest.approx(8.0 / 4 / math.log(2))


def test_task_nll_matches_a_manual_sum_of_token_logprobs(tiny, tiny_model_dir, docs):
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    model, tokenizer = tiny
    # The tiny model's whole window, so no prompt is cut (the manual sum below sees every token).
    lm = CodegenLM(pretrained=str(tiny_model_dir), max_length=512)
    assert max(len(tokenizer.encode(d["prompt"] + d["canonical_solution"])) for d in list(docs)[:3]) <= 512
    results = simple_evaluate(
        model=lm,
        tasks=["humaneval_nll"],
        limit=3,
        task_manager=TaskManager(include_defaults=False, metadata={"pretrained": str(tiny_model_dir)}),
    )
    metrics = results["results"]["humaneval_nll"]
    nll_per_token, bits_per_char = _manual_metrics(model, tokenizer, list(docs)[:3])
    assert metrics["nll_per_token,none"] == pytest.approx(nll_per_token, rel=1e-4)
    assert metrics["bits_per_char,none"] == pytest.approx(bits_per_char, rel=1e-4)
    assert "kl_per_token,none" not in metrics  # no reference model given


def test_the_matrix_counts_tokens_with_the_evaluated_models_tokenizer(tiny, tiny_model_dir, docs, tmp_path):
    from codegen_bench.harness.runs.matrix import MatrixConfig, run_matrix
    from codegen_bench.variants.spec import VariantSpec

    # The matrix hands lm-eval's tasks the model it evaluates, as lm-eval's command line does: with
    # the embedded default model's tokenizer the counts, and nll_per_token, would be another model's.
    config = MatrixConfig(
        variants=(VariantSpec.parse("base"),),
        tasks=("humaneval_nll",),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
        model_args={"max_length": "512"},
        limit=3,
    )
    (record,) = run_matrix(config)
    model, tokenizer = tiny
    nll_per_token, bits_per_char = _manual_metrics(model, tokenizer, list(docs)[:3])
    assert record["metrics"]["humaneval_nll"]["nll_per_token"] == pytest.approx(nll_per_token, rel=1e-4)
    assert record["metrics"]["humaneval_nll"]["bits_per_char"] == pytest.approx(bits_per_char, rel=1e-4)


def test_kl_reference_adds_divergence_and_agreement_with_the_reference(tiny, tiny_model_dir, docs):
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    # The reference is the same base model: no divergence, every top-1 token the same.
    lm = CodegenLM(pretrained=str(tiny_model_dir), max_length=512, kl_reference="base")
    results = simple_evaluate(
        model=lm,
        tasks=["humaneval_nll"],
        limit=2,
        task_manager=TaskManager(include_defaults=False, metadata={"pretrained": str(tiny_model_dir)}),
    )
    metrics = results["results"]["humaneval_nll"]
    assert metrics["kl_per_token,none"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["top1_agreement,none"] == 1.0
    info = lm.get_model_info()
    assert info["kl_reference"] == "base"
    # The reference model's forward is work too: every token counted twice.
    _, tokenizer = tiny
    whole = [tokenizer.encode(d["prompt"] + d["canonical_solution"]) for d in list(docs)[:2]]
    assert info["scoring"]["forward_tokens"] == 2 * sum(len(ids) - 1 for ids in whole)
    assert info["scoring"]["head_tokens"] == 2 * sum(d["n_tokens"] for d in list(docs)[:2])


def test_kl_reference_must_name_a_variant(tiny_model_dir):
    from codegen_bench.harness.errors import CodegenBenchError
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    with pytest.raises(CodegenBenchError, match="nosuch"):
        CodegenLM(pretrained=str(tiny_model_dir), kl_reference="nosuch")


def test_the_token_counting_tokenizer_is_loaded_once_per_model(tiny_model_dir, monkeypatch):
    loaded = []
    load = nll.load_tokenizer
    monkeypatch.setattr(nll, "load_tokenizer", lambda *a: loaded.append(a[0]) or load(*a))
    nll._tokenizer.cache_clear()
    first = nll.token_counter({"pretrained": str(tiny_model_dir)})
    again = nll.token_counter({"pretrained": str(tiny_model_dir)})
    assert first("def f(): pass") == again("def f(): pass") > 0
    assert loaded == [str(tiny_model_dir)]
    nll._tokenizer.cache_clear()
