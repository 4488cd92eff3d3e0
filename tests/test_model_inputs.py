"""Bad inputs of an evaluation refused before any model loads: generation kwargs, model_args, the
limit and the task names, through `codegen-bench matrix` and `lm_eval --model codegen` alike. Each
refusal is one line naming the input and the fix, with exit code 2, and leaves nothing on disk."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from codegen_bench.harness import cli
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.evaluation_inputs import check_limit, check_tasks
from codegen_bench.harness.lm_eval_plugin.gen_kwargs import generation_settings
from codegen_bench.harness.lm_eval_plugin.model import CodegenArgs, CodegenLM, merged_model_args


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


def _error_line(text: str, prog: str) -> str:
    """The one line of `prog`'s refusal among lm-eval's own log lines (which it writes to stderr)."""
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith(f"{prog}: ")]
    assert len(errors) == 1, text
    return errors[0]


@pytest.fixture
def no_model_loads(monkeypatch):
    """Any model load, provisioning or roofline measurement fails the test: the refusal must come first."""

    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was refused")

    monkeypatch.setattr(CodegenLM, "__init__", loaded)
    monkeypatch.setattr("codegen_bench.harness.loading.provision", loaded)
    monkeypatch.setattr("codegen_bench.harness.runs.matrix.resolve_pretrained", loaded)
    monkeypatch.setattr("codegen_bench.harness.runs.matrix.measure_roofline", loaded)


# --- generation kwargs: one check for the tasks, --gen_kwargs and the matrix -------------------------


@pytest.mark.parametrize(
    ("gen_kwargs", "named"),
    [
        ({"max_gen_toks": -1}, "max_gen_toks=-1"),
        ({"max_gen_toks": 0}, "max_gen_toks=0"),
        ({"max_gen_toks": "abc"}, "max_gen_toks='abc'"),
        ({"max_gen_toks": 2.5}, "max_gen_toks=2.5"),
        ({"max_gen_toks": True}, "max_gen_toks=True"),
        ({"temperature": -0.5}, "temperature=-0.5"),
        ({"temperature": "hot"}, "temperature='hot'"),
        ({"temperature": float("nan")}, "temperature=nan"),
        ({"top_p": 0}, "top_p=0"),
        ({"top_p": 1.5}, "top_p=1.5"),
        ({"do_sample": "maybe"}, "do_sample='maybe'"),
        ({"until": [""]}, "until=['']"),
        ({"until": 3}, "until=3"),
        ({"until": ["\n", 4]}, "until=['\\n', 4]"),
        ({"top_k": 5}, "top_k"),
        ({"num_beams": 4, "max_gen_toks": 8}, "num_beams"),
    ],
)
def test_a_bad_generation_kwarg_is_named_with_what_is_allowed(gen_kwargs, named):
    with pytest.raises(CodegenBenchError) as refused:
        generation_settings(gen_kwargs, where="--gen_kwargs")
    message = str(refused.value)
    assert message.startswith("--gen_kwargs: ") and named in message
    assert "use " in message or "give " in message


def test_generation_kwargs_as_lm_eval_and_the_command_line_give_them_become_settings():
    typed = generation_settings(
        {"max_gen_toks": 64, "until": ["\n\n"], "do_sample": True, "temperature": 0.8}
    )
    as_text = generation_settings(
        {"max_gen_toks": "64", "until": "\n\n", "do_sample": "true", "temperature": "0.8"}
    )
    assert typed == as_text
    assert (typed.max_new_tokens, typed.stop_strings, typed.do_sample, typed.temperature) == (
        64,
        ("\n\n",),
        True,
        0.8,
    )
    assert generation_settings({"until": None}).stop_strings == ()


# --- model_args ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model_args", "named"),
    [
        ({"seed": "abc"}, "seed='abc'"),
        ({"seed": 1.5}, "seed=1.5"),
        ({"max_length": 0}, "max_length=0"),
        ({"max_length": "long"}, "max_length='long'"),
        ({"dtype": "fp8"}, "dtype='fp8'"),
        ({"device": "gpu"}, "device='gpu'"),
        ({"device": "cuda:x"}, "device='cuda:x'"),
        ({"trust_remote_code": "yes"}, "trust_remote_code='yes'"),
        ({"gpu_memory_utilization": 2}, "gpu_memory_utilization=2"),
        ({"tensor_parallel_size": 0}, "tensor_parallel_size=0"),
        ({"batch_size": -3}, "batch_size=-3"),
        ({"batch_size": "many"}, "batch_size='many'"),
        ({"variant": ""}, "variant=''"),
        ({"chat": "sometimes"}, "chat='sometimes'"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_a_bad_model_arg_is_named_before_anything_loads(model_args, named):
    with pytest.raises(CodegenBenchError) as refused:
        CodegenArgs.parse(model_args)
    assert named in str(refused.value)


def test_a_model_arg_that_lm_eval_also_passes_is_refused_unless_both_agree():
    with pytest.raises(CodegenBenchError, match=r"batch_size is given twice.*--batch_size 2"):
        merged_model_args({"batch_size": 2}, {"batch_size": 1, "max_batch_size": None, "device": None})
    with pytest.raises(CodegenBenchError, match=r"device is given twice.*--device cpu"):
        merged_model_args({"device": "cpu"}, {"batch_size": 1, "device": "cuda:0"})
    agreed = merged_model_args(
        {"batch_size": 4, "dtype": "float32"}, {"batch_size": 4, "max_batch_size": None}
    )
    assert agreed == {"batch_size": 4, "dtype": "float32"}


def test_lm_evals_collision_is_refused_before_the_model_is_built(no_model_loads):
    with pytest.raises(CodegenBenchError, match="batch_size is given twice"):
        CodegenLM.create_from_arg_string("batch_size=2", {"batch_size": 1, "device": "cuda:0"})


# --- limit and task names ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1, 1.5, "abc", float("inf"), True])
def test_a_limit_that_selects_no_documents_or_is_no_number_is_refused(limit):
    with pytest.raises(CodegenBenchError, match=r"--limit .* is not valid: give a number of documents"):
        check_limit(limit)


@pytest.mark.parametrize("limit", [None, 1, 5, 0.5, "3"])
def test_a_count_or_a_share_is_a_limit(limit):
    check_limit(limit)


def test_an_unknown_task_is_refused_with_the_close_names():
    with pytest.raises(
        CodegenBenchError, match=r"no task named 'humaneval_custon': did you mean humaneval_custom"
    ):
        check_tasks(["humaneval_custom", "humaneval_custon"])
    with pytest.raises(CodegenBenchError, match="is empty"):
        check_tasks([])
    check_tasks(["humaneval_custom", "code_explain"])  # a task and a group


# --- codegen-bench matrix: refused before the run folder exists or any model loads --------------------

MATRIX = ["matrix", "--variants", "base", "--tasks", "humaneval_custom", "--limit", "1", "--no-latency"]


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--tasks", "humaneval_custon"], "no task named 'humaneval_custon'"),
        (["--gen-kwargs", "max_gen_toks=-1"], "--gen-kwargs: max_gen_toks=-1"),
        (["--gen-kwargs", "max_gen_toks=abc"], "--gen-kwargs: max_gen_toks='abc'"),
        (["--gen-kwargs", "temperature"], "'temperature' is not key=value"),
        (
            ["--model-args", "batch_size=2"],
            "--model-args batch_size=... is set by the matrix's own --batch-size",
        ),
        (["--model-args", "variant.sparsity=0.3"], "is set by the matrix's own --variants"),
        (["--model-args", "dtype=fp8"], "dtype='fp8'"),
        (["--model-args", "seed=x"], "seed='x'"),
        (["--variants", "base", "base"], "--variants names base more than once"),
        (["--variants", "nosuch"], "variant='nosuch' is unknown"),
        (["--variants", "l1=l1-pruned,variant.sparsity=2"], "sparsity"),
        (["--variants", "base", "--reference", "int8"], "int8"),
        (["--pretrained", "/no/such/model"], "pretrained='/no/such/model' is not a model folder"),
        (["--variants", "mine=/no/such/artifact"], "'/no/such/artifact' is not an artifact folder"),
    ],
)
def test_the_matrix_refuses_a_bad_input_before_loading_anything(
    tmp_path, capsys, no_model_loads, extra, named
):
    out = tmp_path / "run"
    assert cli.main([*MATRIX, *extra, "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("codegen-bench: error: ") and named in line
    assert not out.exists()


@pytest.mark.parametrize(
    "argument", [["--limit", "0"], ["--limit", "-1"], ["--limit", "x"], ["--batch-size", "0"]]
)
def test_the_matrix_refuses_a_bad_number_at_the_command_line(tmp_path, capsys, argument):
    with pytest.raises(SystemExit) as exited:
        cli.main([*MATRIX, *argument, "--out", str(tmp_path / "run")])
    assert exited.value.code == 2
    assert "is not a positive integer" in _one_line(capsys.readouterr().err)


def test_the_matrix_refuses_a_run_folder_that_is_a_file_or_a_model(
    tmp_path, capsys, no_model_loads, tiny_model_dir
):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine\n")
    assert cli.main([*MATRIX, "--out", str(a_file)]) == 2
    assert "is a file, not a run folder" in _one_line(capsys.readouterr().err)
    assert a_file.read_text() == "mine\n"
    before = sorted(p.name for p in tiny_model_dir.iterdir())
    assert cli.main([*MATRIX, "--pretrained", str(tiny_model_dir), "--out", str(tiny_model_dir)]) == 2
    assert "is the input" in _one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tiny_model_dir.iterdir()) == before


# --- lm_eval --model codegen ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"limit": 0}, "--limit 0"),
        ({"limit": -1}, "--limit -1"),
        ({"gen_kwargs": {"max_gen_toks": -1}}, "--gen_kwargs: max_gen_toks=-1"),
        ({"gen_kwargs": "max_gen_toks=abc"}, "--gen_kwargs: max_gen_toks='abc'"),
    ],
)
def test_simple_evaluate_checks_a_codegen_evaluation_before_building_the_model(kwargs, named):
    from codegen_bench.harness.lm_eval_plugin.hook import check_inputs_before_loading

    def simple_evaluate(model, model_args=None, tasks=None, limit=None, gen_kwargs=None):
        raise AssertionError("lm-eval was reached")

    module = SimpleNamespace(simple_evaluate=simple_evaluate)
    check_inputs_before_loading(module)
    with pytest.raises(CodegenBenchError) as refused:
        module.simple_evaluate("codegen", "", ["humaneval_custom"], **kwargs)
    assert named in str(refused.value)
    # Another model's evaluation is lm-eval's own business.
    with pytest.raises(AssertionError, match="lm-eval was reached"):
        module.simple_evaluate("hf", "", ["humaneval_custom"], **kwargs)


def test_the_lm_eval_command_refuses_bad_inputs_in_one_line(monkeypatch, capsys, no_model_loads):
    from lm_eval.__main__ import cli_evaluate

    base = ["lm_eval", "--model", "codegen", "--tasks", "humaneval_custom", "--confirm_run_unsafe_code"]
    for extra, named in [
        (["--gen_kwargs", "max_gen_toks=-1"], "max_gen_toks=-1"),
        (["--model_args", "batch_size=2"], "batch_size is given twice"),
        (["--limit", "0"], "--limit 0"),
    ]:
        monkeypatch.setattr(sys, "argv", [*base, *extra])
        with pytest.raises(SystemExit) as exited:
            cli_evaluate()
        assert exited.value.code == 2
        line = _error_line(capsys.readouterr().err, "lm_eval")
        assert line.startswith("lm_eval: error: ") and named in line


def test_the_lm_eval_command_names_an_unknown_task_in_one_line(monkeypatch, capsys, no_model_loads):
    from lm_eval.__main__ import cli_evaluate

    monkeypatch.setattr(sys, "argv", ["lm_eval", "--model", "codegen", "--tasks", "humaneval_custon"])
    with pytest.raises(SystemExit) as exited:
        cli_evaluate()
    assert exited.value.code == 2
    assert "Tasks not found: humaneval_custon" in _error_line(capsys.readouterr().err, "lm_eval")


def test_build_train_and_data_refuse_a_bad_setting_before_loading(tmp_path, capsys, no_model_loads):
    a_file = tmp_path / "f.json"
    a_file.write_text("{}\n")
    for argv, named in [
        (["build", "l1-pruned", "--dtype", "fp8"], "dtype='fp8'"),
        (["build", "l1-pruned", "--device", "gpu"], "device='gpu'"),
        (["build", "l1-pruned", "--config", "sparsity=abc"], "sparsity"),
        (["train", "lora", "--config", "r=0", "--out", str(tmp_path / "o")], "r=0"),
        (["data", "build", "--out", str(tmp_path / "d"), "--config", "limit=-1"], "limit=-1"),
        (["data", "build", "--out", str(a_file)], str(a_file)),
    ]:
        assert cli.main(argv) == 2, argv
        assert named in _one_line(capsys.readouterr().err)
    assert a_file.read_text() == "{}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_a_path_given_as_a_model_folder_must_be_one(tmp_path, capsys, no_model_loads):
    (tmp_path / "empty").mkdir()
    for pretrained in [tmp_path / "missing", tmp_path / "empty"]:
        assert cli.main(["build", "l1-pruned", "--pretrained", str(pretrained)]) == 2
        assert f"pretrained={str(pretrained)!r}" in _one_line(capsys.readouterr().err)
