"""What an evaluation is asked to run, checked before a model is loaded: the limit, the generation
kwargs and the task names. lm-eval checks some of these only after loading the model (a limit of 0
fails as "did not find any docs", a negative one inside islice, a bad `max_gen_toks` while
generating); `lm_eval --model codegen` runs these checks first through the plugin hook, and
`codegen-bench matrix` through `check_matrix_config`.
"""

from __future__ import annotations

import difflib
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.gen_kwargs import generation_settings


def check_limit(limit: Any, where: str = "--limit") -> None:
    """lm-eval's limit: a whole number of documents >= 1, or a share in (0, 1); None for all."""
    if limit is None:
        return
    allowed = "give a number of documents >= 1, a share between 0 and 1 (0.1: a tenth), or leave it out"
    if isinstance(limit, bool):
        raise CodegenBenchError(f"{where} {limit!r} is not valid: {allowed}")
    try:
        number = float(limit)
    except (TypeError, ValueError):
        raise CodegenBenchError(f"{where} {limit!r} is not valid: {allowed}") from None
    if not math.isfinite(number) or number <= 0 or (number >= 1 and not number.is_integer()):
        raise CodegenBenchError(f"{where} {limit!r} is not valid: {allowed}")


@functools.cache
def task_manager():
    """lm-eval's TaskManager, built once per process: building it reads every YAML lm-eval ships,
    which takes seconds, and the matrix evaluates one task at a time. Each evaluation still builds
    its tasks afresh from it."""
    from lm_eval.tasks import TaskManager

    return TaskManager()


def task_manager_for(metadata: dict):
    """`task_manager()` whose tasks get `metadata`, as lm-eval's command line gives them its
    --model_args: tasks that depend on the evaluated model read it (humaneval_nll counts tokens with
    its tokenizer). A copy with its own factory, since building another TaskManager rereads every
    YAML; the factory is lm-eval 0.4.13's, whose TaskManager keeps it in `_factory`."""
    import copy

    from lm_eval.tasks._factory import TaskFactory

    manager = copy.copy(task_manager())
    manager.metadata = metadata
    manager._factory = TaskFactory(meta=metadata)
    return manager


def task_index() -> dict:
    """lm-eval's index of tasks, groups and tags (ours included)."""
    return task_manager().task_index


def check_tasks(tasks: Sequence[str], where: str = "--tasks") -> None:
    """Every name is a task, group or tag lm-eval knows (ours included), with a close match offered."""
    if not tasks:
        raise CodegenBenchError(f"{where} is empty: name at least one task, e.g. humaneval_custom")
    known = task_index()
    for task in tasks:
        if not isinstance(task, str) or task not in known:
            close = difflib.get_close_matches(str(task), known, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise CodegenBenchError(
                f"{where}: no task named {task!r}: {hint}`lm_eval ls tasks` lists them all"
            )


def check_evaluation_inputs(limit: Any, gen_kwargs: Mapping[str, Any] | str | None) -> None:
    """An evaluation's limit and `--gen_kwargs` (a `k=v,k=v` string or a mapping), as lm-eval's
    `simple_evaluate` receives them."""
    from lm_eval.utils import simple_parse_args_string

    check_limit(limit)
    if isinstance(gen_kwargs, str):
        gen_kwargs = simple_parse_args_string(gen_kwargs)
    generation_settings(gen_kwargs, where="--gen_kwargs")
