"""The plain `lm_eval` command finds our model and tasks, and still finds its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

LM_EVAL = str(Path(sys.executable).parent / "lm_eval")


def _python(code: str, **env) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    return result.stdout.strip()


def test_codegen_and_hf_both_resolve_in_a_fresh_interpreter():
    out = _python(
        "from lm_eval.api.registry import get_model\n"
        "print(get_model('codegen').__name__, get_model('hf').__name__)"
    )
    assert out == "CodegenLM HFLM"


def test_hf_resolves_when_our_model_module_was_imported_first():
    out = _python(
        "import codegen_bench.harness.lm_eval_plugin.model\n"
        "from lm_eval.api.registry import get_model\n"
        "print(get_model('hf').__name__, get_model('codegen').__name__)"
    )
    assert out == "HFLM CodegenLM"


def test_task_manager_lists_our_tasks_next_to_builtins():
    out = _python(
        "from lm_eval.tasks import TaskManager\n"
        "tasks = TaskManager().all_tasks\n"
        "print('humaneval_custom' in tasks, 'humaneval_custom_pass10' in tasks, 'humaneval' in tasks)"
    )
    assert out == "True True True"


def test_interpreter_start_up_does_not_import_lm_eval_or_torch():
    out = _python("import sys; print(any(m.split('.')[0] in ('lm_eval', 'torch') for m in sys.modules))")
    assert out == "False"


def _lm_eval_codegen(model_args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LM_EVAL, "--model", "codegen", "--model_args", model_args, "--tasks", "humaneval_custom",
         "--limit", "1", "--confirm_run_unsafe_code"],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip


def test_lm_eval_cli_prints_a_bad_model_path_as_one_line(tmp_path):
    result = _lm_eval_codegen(f"pretrained={tmp_path / 'missing'}")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"lm_eval: error: pretrained='{tmp_path / 'missing'}' is not a model folder" in result.stderr


def test_lm_eval_cli_reports_an_unreachable_hub_id_clearly():
    result = _lm_eval_codegen("pretrained=no-such-org/no-such-model")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "could not be fetched from the Hugging Face hub" in result.stderr
