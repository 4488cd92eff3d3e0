from __future__ import annotations

import json

import pytest
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.execution.samples import collect_samples, writing_samples_to
from codegen_bench.tasks.humaneval import similarity as code_similarity
from codegen_bench.tasks.humaneval import utils

REFERENCE = "    total = a + b\n    for i in range(10):\n        total += i * a\n    return total\n"
RENAMED = "    s = a + b\n    for j in range(10):\n        s += j * a\n    return s\n"


@pytest.fixture
def samples_dir(tmp_path):
    with writing_samples_to(tmp_path):
        yield tmp_path


def test_identical_code_scores_full_marks_whatever_its_indentation():
    shifted = "\n".join("    " + line for line in REFERENCE.splitlines()) + "\n\n"
    assert code_similarity.exact_match(shifted, REFERENCE) == 1.0
    assert code_similarity.edit_similarity(shifted, REFERENCE) == 1.0
    assert code_similarity.sentence_chrf(shifted, REFERENCE) == pytest.approx(100.0)
    assert code_similarity.codebleu([shifted], [REFERENCE]) == dict.fromkeys(
        code_similarity.CODEBLEU_PARTS, 1.0
    )


def test_edit_similarity_is_one_minus_levenshtein_over_the_longer_length():
    # kitten -> sitting: 3 edits, longer text 7 characters.
    assert code_similarity.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert code_similarity.exact_match("kitten", "sitting") == 0.0


def test_codebleu_of_a_renamed_copy_is_high_but_below_one():
    scores = code_similarity.codebleu([RENAMED], [REFERENCE])
    # Same tree and (nearly) the same data flow; the n-gram parts see the new names.
    assert scores["codebleu_syntax"] == 1.0 and scores["codebleu_dataflow"] > 0.8
    assert scores["codebleu_ngram"] < 0.5 and scores["codebleu_weighted_ngram"] < 0.5
    assert 0.6 < scores["codebleu"] < 1.0
    unrelated = code_similarity.codebleu(["    print('hello')\n"], [REFERENCE])
    assert unrelated["codebleu"] < scores["codebleu"]


def test_codebleu_needs_matching_lists():
    with pytest.raises(ValueError, match="as many candidates as references"):
        code_similarity.codebleu(["x = 1"], [])


def test_similarity_results_pair_pass_at_1_with_text_and_structure(samples_dir):
    problem = load_humaneval()["HumanEval/2"]  # return number % 1.0
    scores = utils.process_results_similarity(problem, ["    return number - int(number)\n```\n"])
    assert scores["pass@1"] == 1.0  # correct, though written differently
    assert scores["exact_match"] == 0.0
    assert 0.0 < scores["edit_similarity"] < 1.0
    pair = (problem["canonical_solution"], "    return number - int(number)\n")
    assert scores["chrf"] == pair and scores["codebleu"] == pair
    collect_samples()  # the end of the evaluation
    (path,) = samples_dir.glob("humaneval_similarity_*.jsonl")
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["passed"] is True and record["exact_match"] == 0.0
    assert 0.0 < record["codebleu"] < 1.0 and 0.0 < record["chrf"] < 100.0


def test_codebleu_aggregations_score_the_corpus_once(monkeypatch):
    calls = []
    real = code_similarity.codebleu
    monkeypatch.setattr(code_similarity, "codebleu", lambda c, r: calls.append(1) or real(c, r))
    items = [(REFERENCE, RENAMED), (REFERENCE, REFERENCE)]
    parts = [utils.codebleu(items), utils.codebleu_syntax(items), utils.codebleu_dataflow(items)]
    assert len(calls) == 1
    assert parts == [
        real([RENAMED, REFERENCE], [REFERENCE] * 2)[k]
        for k in ("codebleu", "codebleu_syntax", "codebleu_dataflow")
    ]


def test_lm_eval_runs_humaneval_similarity_on_a_tiny_model(tiny_lm, samples_dir):
    results = simple_evaluate(
        model=tiny_lm,
        tasks=["humaneval_similarity"],
        limit=2,
        confirm_run_unsafe_code=True,
        task_manager=TaskManager(include_defaults=False),
        gen_kwargs={"max_gen_toks": 16},
    )
    metrics = results["results"]["humaneval_similarity"]
    for name in ("pass@1", "exact_match", "edit_similarity", *code_similarity.CODEBLEU_PARTS):
        assert 0.0 <= metrics[f"{name},none"] <= 1.0, name
    assert 0.0 <= metrics["chrf,none"] <= 100.0
    (path,) = samples_dir.glob("humaneval_similarity_*.jsonl")
    assert len(path.read_text().splitlines()) == 2
