from __future__ import annotations

import json

import pytest
import torch

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.trainers.sft import TrainConfig, to_example, train
from codegen_bench.variants import load_variant

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    with open(path, "w") as f:
        for i in range(24):
            f.write(
                json.dumps({"prompt": f"def add_{i}(a, b):\n", "completion": f"    return a + b + {i}\n"})
                + "\n"
            )
    return path


TINY = dict(r=4, alpha=8, max_steps=4, batch_size=4, save_steps=2, logging_steps=1, max_seq_len=384)


def test_chat_examples_use_the_humaneval_chat_form():
    example = to_example({"prompt": "def f():\n", "completion": "    return 1\n"}, chat=True)
    assert example["prompt"][0]["role"] == "user" and "def f():" in example["prompt"][0]["content"]
    assert example["completion"][0]["content"] == "```python\ndef f():\n    return 1\n```"


def test_unknown_record_shape_is_refused():
    with pytest.raises(CodegenBenchError, match="not a training example"):
        to_example({"question": "?"}, chat=False)


def test_lora_training_writes_a_loadable_adapter_artifact(base, data_file, tmp_path):
    out = train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    assert (out / "adapter_model.safetensors").is_file()
    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["variant"] == "lora"
    assert manifest["training"]["examples"] == {"train": 22, "validation": 1, "test": 1}
    assert manifest["training"]["metrics"]["validation_loss"] > 0
    assert manifest["training"]["metrics"]["train_tokens_per_s"] > 0
    model, loaded = load_variant(str(out), base)
    assert loaded["variant"] == "lora"
    tokens = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        assert not torch.allclose(model(tokens).logits, base.load()(tokens).logits)


def test_interrupted_training_resumes_from_its_checkpoint(base, data_file, tmp_path, monkeypatch):
    from transformers import TrainerCallback

    class StopAfterCheckpoint(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt

    import trl

    original_init = trl.SFTTrainer.__init__

    def with_stop(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(StopAfterCheckpoint())

    monkeypatch.setattr(trl.SFTTrainer, "__init__", with_stop)
    with pytest.raises(KeyboardInterrupt):
        train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    assert not (tmp_path / "lora").exists()  # no artifact from an unfinished run
    monkeypatch.setattr(trl.SFTTrainer, "__init__", original_init)
    out = train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["training"]["resumed_from"].endswith("checkpoint-2")


def test_qlora_trains_on_the_4bit_base_and_loads_on_it(base, data_file, tmp_path):
    import bitsandbytes as bnb

    out = train(data_file, base, TrainConfig(kind="qlora", **TINY), tmp_path / "qlora")
    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["variant"] == "qlora" and manifest["config"]["quant_type"] == "nf4"
    model, _ = load_variant(str(out), base)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())


def test_a_global_batch_that_does_not_split_over_the_processes_is_refused(
    base, data_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("WORLD_SIZE", "2")  # as under accelerate launch --num_processes 2
    with pytest.raises(CodegenBenchError, match="batch_size=3 does not split over 2 processes"):
        train(data_file, base, TrainConfig(**{**TINY, "batch_size": 3}), tmp_path / "lora")
