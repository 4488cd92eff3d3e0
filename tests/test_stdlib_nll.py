"""stdlib_nll: humaneval_nll's likelihood on the held-out stdlib functions (tasks/stdlib_code/nll.py)."""

from __future__ import annotations

import math

import pytest
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from codegen_bench.harness.corpus.stdlib import CODEGEN_FILE, DataConfig, cached_datasets, load_pairs
from codegen_bench.harness.lm_eval_plugin.model import CodegenLM
from codegen_bench.harness.runs.item_scores import cell_items, estimate
from codegen_bench.tasks.humaneval.nll import scored_pair
from codegen_bench.tasks.stdlib_code import nll
from codegen_bench.trainers.recipes import RECIPES

LIMIT = 2  # documents per lm-eval run: the first ones fit the tiny model's 512-token window
METRICS = ("nll_per_token", "bits_per_char", "kl_per_token", "top1_agreement")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The default corpus (the one the recipes train on), built once into a private cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CODEGEN_BENCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield cached_datasets(DataConfig())


@pytest.fixture(scope="module")
def docs(corpus, tiny_model_dir):
    return nll.load_dataset(pretrained=str(tiny_model_dir))["test"]


def _evaluate(lm: CodegenLM, tiny_model_dir) -> dict:
    return simple_evaluate(
        model=lm,
        tasks=["stdlib_nll"],
        limit=LIMIT,
        log_samples=True,
        task_manager=TaskManager(include_defaults=False, metadata={"pretrained": str(tiny_model_dir)}),
    )


@pytest.fixture(scope="module")
def against_itself(corpus, tiny_model_dir) -> tuple[CodegenLM, dict]:
    """The tiny model scored with itself (base) as the KL reference."""
    lm = CodegenLM(pretrained=str(tiny_model_dir), max_length=512, kl_reference="base")
    return lm, _evaluate(lm, tiny_model_dir)


def test_docs_are_a_fixed_sample_of_the_validation_split_only(docs, corpus):
    records = load_pairs(corpus / CODEGEN_FILE)
    validation = [r["id"] for r in records if r["split"] == "validation"]
    train = {r["id"] for r in records if r["split"] == "train"}
    ids = [d["id"] for d in docs]
    assert len(ids) == len(set(ids)) == min(nll.SAMPLE_SIZE, len(validation)) < len(validation)
    assert ids == [i for i in validation if i in set(ids)]  # in corpus order
    assert set(docs["split"]) == {"validation"}
    assert train and not train & set(ids)
    assert ids == [p["id"] for p in nll.sampled_pairs(nll.held_out_pairs())]  # the same draw each time


def test_every_recipe_trains_on_the_corpus_whose_validation_split_is_scored():
    # Held out only if the recipes split the same corpus the same way.
    assert {recipe.data for recipe in RECIPES.values()} == {DataConfig()}


def test_docs_count_the_scored_tokens_and_characters_as_humaneval_nll_does(docs, tiny):
    _, tokenizer = tiny
    for doc in list(docs)[:5]:
        context, continuation = scored_pair(doc["prompt"], doc["completion"])
        assert context + continuation == doc["prompt"] + doc["completion"]
        assert not context.endswith(("\n", " "))  # lm-eval moves the prompt's trailing newline
        whole = tokenizer.encode(context + continuation, add_special_tokens=False)
        assert doc["n_tokens"] == len(whole) - len(tokenizer.encode(context, add_special_tokens=False))
        assert doc["n_chars"] == len(continuation)
        assert nll.doc_to_target(doc) == doc["completion"]


def test_kl_against_itself_is_zero_and_every_token_agrees(against_itself, docs, tiny):
    lm, results = against_itself
    metrics = results["results"]["stdlib_nll"]
    assert metrics["kl_per_token,none"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["top1_agreement,none"] == 1.0
    assert 0 < metrics["nll_per_token,none"] < math.inf
    assert 0 < metrics["bits_per_char,none"] < math.inf
    # Every token counted in the docs was scored by both models, none cut by the window.
    _, tokenizer = tiny
    assert all(len(tokenizer.encode(d["prompt"] + d["completion"])) <= 512 for d in list(docs)[:LIMIT])
    assert lm.get_model_info()["scoring"]["head_tokens"] == 2 * sum(d["n_tokens"] for d in list(docs)[:LIMIT])


def test_per_item_rows_recompute_each_reported_metric(against_itself):
    """What the matrix's intervals and paired differences are computed from (item_scores.py)."""
    _, results = against_itself
    items = cell_items(results["samples"]["stdlib_nll"], METRICS)
    assert items["doc_ids"] == list(range(LIMIT))
    for metric in METRICS:
        reported = results["results"]["stdlib_nll"][f"{metric},none"]
        assert estimate(metric, items[metric]) == pytest.approx(reported, rel=1e-9, abs=1e-12)


def test_kl_from_base_of_a_pruned_variant_is_finite_and_positive(corpus, tiny_model_dir):
    lm = CodegenLM.create_from_arg_string(
        f"pretrained={tiny_model_dir},variant=l1-pruned,variant.sparsity=0.3,kl_reference=base,max_length=512"
    )
    metrics = _evaluate(lm, tiny_model_dir)["results"]["stdlib_nll"]
    assert 0 < metrics["kl_per_token,none"] < math.inf
    assert 0 <= metrics["top1_agreement,none"] <= 1
