from __future__ import annotations

import json

import pytest

from codegen_bench.harness.cli import main
from codegen_bench.harness.execution.problems import load_humaneval


def _write_samples(path, completions):
    problems = load_humaneval()
    with open(path, "w") as f:
        for task_id, completion in completions:
            assert task_id in problems
            f.write(json.dumps({"task_id": task_id, "completion": completion}) + "\n")


def test_exec_prints_pass_at_k_and_writes_results(tmp_path, capsys):
    problems = load_humaneval()
    samples = tmp_path / "samples.jsonl"
    canonical = problems["HumanEval/0"]["canonical_solution"]
    _write_samples(samples, [("HumanEval/0", canonical), ("HumanEval/0", "    return None\n")])
    assert main(["exec", str(samples), "--k", "1,2", "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert "pass@1: 0.5000" in out
    assert "pass@2: 1.0000" in out
    results_file = tmp_path / "samples.jsonl_results.jsonl"
    results = [json.loads(line) for line in results_file.read_text().splitlines()]
    assert [r["passed"] for r in results] == [True, False]


def test_exec_reports_a_malformed_line_in_one_line_and_exits_2(tmp_path, capsys):
    samples = tmp_path / "bad.jsonl"
    samples.write_text('{"task_id": "HumanEval/0", "completion": "x"}\n{not json\n')
    assert main(["exec", str(samples)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"codegen-bench: error: {samples}, line 2: malformed JSON")
    assert len(err.strip().splitlines()) == 1


def test_build_writes_a_variant_artifact(tiny_model_dir, tmp_path, capsys, isolated_cache):
    out = tmp_path / "l1"
    args = [
        "build",
        "l1-pruned",
        "--config",
        "sparsity=0.2",
        "--out",
        str(out),
        "--pretrained",
        str(tiny_model_dir),
    ]
    assert main(args) == 0
    assert capsys.readouterr().out.strip() == str(out)
    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["config"]["sparsity"] == 0.2
    assert abs(manifest["sparsity"]["total"] - 0.2) < 0.001


def test_build_with_an_unknown_config_key_exits_2_with_one_line(tiny_model_dir, capsys, isolated_cache):
    assert main(["build", "nf4", "--config", "bits=3", "--pretrained", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "codegen-bench: error: variant 'nf4' has no config key 'bits': "
        "its keys are quant_type, double_quant, compute_dtype"
    )


def test_train_names_a_bad_config_key_before_asking_for_out(capsys, monkeypatch):
    monkeypatch.setattr("codegen_bench.harness.cli._base_model", lambda args: pytest.fail("base resolved"))
    assert main(["train", "lora", "--config", "lr=1e-4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codegen-bench: error: train lora has no config key 'lr': its keys are kind,")


def test_matrix_writes_records_and_reports_then_leaderboard_rebuilds_them(
    tiny_model_dir, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    args = [
        "matrix",
        "--variants",
        "base",
        "--tasks",
        "humaneval_custom",
        "--limit",
        "2",
        "--batch-size",
        "2",
    ]
    args += ["--pretrained", str(tiny_model_dir), "--model-args", "max_length=256,chat=false"]
    args += ["--gen-kwargs", "max_gen_toks=8", "--out", str(run), "--no-latency"]
    assert main(args) == 0
    assert "leaderboard: " in capsys.readouterr().out
    assert (run / "records.jsonl").is_file() and (run / "matrix.csv").is_file()
    assert "one uninterrupted invocation: 1 cell (" in (run / "LEADERBOARD.md").read_text()
    assert "and no latency suite" in (run / "LEADERBOARD.md").read_text()
    (run / "LEADERBOARD.md").unlink()
    assert main(["leaderboard", str(run)]) == 0
    assert "| base |" in (run / "LEADERBOARD.md").read_text()


def test_leaderboard_of_a_folder_without_records_exits_2_with_one_line(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "has no records" in err


def test_matrix_with_a_reference_it_does_not_run_exits_2_before_writing_anything(tmp_path, capsys):
    run = tmp_path / "run"
    args = ["matrix", "--variants", "base", "int8-dynamic", "--reference", "nf4", "--out", str(run)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("codegen-bench: error: reference variant 'nf4' is not in the run's variants")
    assert not run.exists()


def test_leaderboard_and_check_take_the_reference_and_reject_one_the_run_lacks(tmp_path, capsys):
    from codegen_bench.harness.files import RecordStore

    run = tmp_path / "run"
    RecordStore(run / "records.jsonl").append({"variant": "base", "task": "t", "metrics": {"t": {"x": 1.0}}})
    assert main(["leaderboard", str(run), "--reference", "nf4"]) == 2
    assert "reference variant 'nf4'" in capsys.readouterr().err
    baseline = tmp_path / "baseline.json"
    assert main(["check", str(run), "--baseline", str(baseline), "--update", "--reference", "nf4"]) == 2
    assert "reference variant 'nf4'" in capsys.readouterr().err
    assert not baseline.exists()


def test_help_lists_the_reference_option_of_matrix_leaderboard_and_check(capsys):
    from codegen_bench.harness.cli import build_parser

    for command in ("matrix", "leaderboard", "check"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert "--reference NAME" in capsys.readouterr().out


def test_matrix_takes_a_latency_size_and_refuses_an_unknown_one_in_one_line(capsys):
    from codegen_bench.harness.cli import _matrix_config, build_parser
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES

    args = build_parser().parse_args(["matrix", "--variants", "base", "--latency-size", "demo"])
    assert _matrix_config(args).latency_size == LATENCY_SIZES["demo"]
    assert _matrix_config(build_parser().parse_args(["matrix"])).latency_size == LATENCY_SIZES["full"]
    with pytest.raises(SystemExit) as exited:
        main(["matrix", "--latency-size", "tiny"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "argument --latency-size: invalid choice: 'tiny' (choose from 'full', 'demo')" in err


def test_train_help_lists_every_train_config_field_it_takes(capsys):
    import dataclasses
    import re

    from codegen_bench.harness.cli import build_parser
    from codegen_bench.trainers.sft import TrainConfig

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    listed = set(re.findall(r"\b[a-z][a-z0-9_]*\b", help_text))
    settable = {f.name for f in dataclasses.fields(TrainConfig)} - {"kind", "nf4"}  # kind: lora|qlora
    assert settable <= listed, f"train --help does not list {sorted(settable - listed)}"


def test_an_abbreviated_option_is_refused_not_taken_for_another(capsys):
    # With argparse's prefix matching, `train lora --r 0` was `--recipe 0`.
    with pytest.raises(SystemExit) as exited:
        main(["train", "lora", "--r", "0"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --r 0" in capsys.readouterr().err
