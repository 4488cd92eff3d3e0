from __future__ import annotations

import json

import pytest
import torch

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.tasks.humaneval.utils import FENCED_USER, INSTRUCT_ASSISTANT_PREFIX, INSTRUCT_USER
from codegen_bench.trainers.sft import TrainConfig, last_complete_checkpoint, to_example, train
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


def test_code_records_take_the_chat_form_of_the_humaneval_task_that_measures_them():
    record = {"prompt": 'def f():\n    """One."""\n', "completion": "    return 1\n"}
    instruct = to_example(record, chat=True)  # humaneval_custom's, the default
    assert instruct["prompt"] == [
        {"role": "user", "content": INSTRUCT_USER.format(prompt=record["prompt"].strip())}
    ]
    whole = 'def f():\n    """One."""\n    return 1'
    assert instruct["completion"][0]["content"] == INSTRUCT_ASSISTANT_PREFIX + whole + "\n```"
    fenced = to_example(record, chat=True, code_prompt="fenced")  # humaneval_fenced's
    assert fenced["prompt"][0]["content"] == FENCED_USER.format(prompt=record["prompt"])
    assert fenced["completion"][0]["content"] == "```python\n" + whole + "\n```"


def test_a_code_answer_record_is_the_whole_answer_after_the_forms_opening():
    record = {"prompt": "def f():\n", "answer": "import os\n\ndef f():\n    return os.sep\n"}
    example = to_example(record, chat=True)
    assert (
        example["completion"][0]["content"] == INSTRUCT_ASSISTANT_PREFIX + record["answer"].rstrip() + "\n```"
    )
    with pytest.raises(CodegenBenchError, match="no chat template"):
        to_example(record, chat=False)


def test_an_unknown_code_prompt_form_is_refused():
    with pytest.raises(
        CodegenBenchError, match="code_prompt='chat' is not a prompt form: use one of instruct, fenced"
    ):
        TrainConfig(code_prompt="chat")


def test_unknown_record_shape_is_refused():
    with pytest.raises(CodegenBenchError, match="not a training example"):
        to_example({"question": "?"}, chat=False)


def test_lora_training_writes_a_loadable_adapter_artifact(base, data_file, tmp_path, capfd):
    out = train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    progress = capfd.readouterr().err
    assert "tok/s" in progress and "of roofline" in progress  # the progress bar's postfix
    assert (out / "adapter_model.safetensors").is_file()
    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["variant"] == "lora"
    assert manifest["training"]["examples"] == {
        "train": 22,
        "validation": 1,
        "test": 1,
        "left_out_longer_than_max_seq_len": 0,
    }
    assert manifest["training"]["metrics"]["validation_loss"] > 0
    assert manifest["training"]["metrics"]["train_tokens_per_s"] > 0
    model, loaded = load_variant(str(out), base)
    assert loaded["variant"] == "lora"
    tokens = torch.tensor([[5, 17, 42, 99]])
    with torch.no_grad():
        assert not torch.allclose(model(tokens).logits, base.load()(tokens).logits)


def _adapter_weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def _stop_at_step(monkeypatch, step: int):
    """Make the next SFTTrainer raise KeyboardInterrupt when step `step` begins (a kill)."""
    from transformers import TrainerCallback

    class Stop(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == step:
                raise KeyboardInterrupt

    import trl

    original_init = trl.SFTTrainer.__init__

    def with_stop(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        self.add_callback(Stop())

    monkeypatch.setattr(trl.SFTTrainer, "__init__", with_stop)
    return lambda: monkeypatch.setattr(trl.SFTTrainer, "__init__", original_init)


def test_interrupted_training_resumes_to_the_same_adapter(base, data_file, tmp_path, monkeypatch):
    uninterrupted = train(data_file, base, TrainConfig(**TINY), tmp_path / "whole")
    restore = _stop_at_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    assert not (tmp_path / "lora").exists()  # no artifact from an unfinished run
    checkpoint_state = tmp_path / "lora.checkpoints" / "checkpoint-2" / "trainer_state.json"
    tokens_before = json.loads(checkpoint_state.read_text())["num_input_tokens_seen"]
    restore()
    out = train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["training"]["resumed_from"].endswith("checkpoint-2")
    # All the run's tokens are counted; the rate is over those trained on since the restart.
    metrics = manifest["training"]["metrics"]
    whole_metrics = json.loads((uninterrupted / "variant.json").read_text())["training"]["metrics"]
    assert 0 < tokens_before < metrics["train_tokens"] == whole_metrics["train_tokens"]
    assert metrics["train_tokens_per_s"] * metrics["train_runtime_s"] == pytest.approx(
        metrics["train_tokens"] - tokens_before
    )
    whole, resumed = _adapter_weights(uninterrupted), _adapter_weights(out)
    assert whole.keys() == resumed.keys()
    for name in whole:
        torch.testing.assert_close(resumed[name], whole[name], rtol=1e-5, atol=1e-6)
    # The whole loss curve is kept across the restart.
    curve = json.loads((uninterrupted / "variant.json").read_text())["training"]["metrics"]["logged_losses"]
    assert manifest["training"]["metrics"]["logged_losses"] == pytest.approx(curve, rel=1e-5)


def test_a_checkpoint_killed_while_being_written_is_skipped(base, data_file, tmp_path, monkeypatch):
    restore = _stop_at_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    restore()
    checkpoints = tmp_path / "lora.checkpoints"
    half_written = checkpoints / "checkpoint-3"
    half_written.mkdir()
    (half_written / "adapter_model.safetensors").write_bytes(b"\0" * 10)  # no trainer_state.json yet
    assert last_complete_checkpoint(checkpoints).endswith("checkpoint-2")
    out = train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    assert json.loads((out / "variant.json").read_text())["training"]["resumed_from"].endswith("checkpoint-2")


def test_checkpoints_of_another_run_are_not_resumed(base, data_file, tmp_path, monkeypatch):
    restore = _stop_at_step(monkeypatch, 3)
    with pytest.raises(KeyboardInterrupt):
        train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    restore()
    with pytest.raises(CodegenBenchError, match=r"checkpoints of another training run \(config differ\)"):
        train(data_file, base, TrainConfig(**{**TINY, "learning_rate": 1e-3}), tmp_path / "lora")


def test_a_run_that_failed_before_its_first_checkpoint_does_not_block_a_corrected_one(
    base, data_file, tmp_path, monkeypatch
):
    import trl

    def out_of_memory(self, *args, **kwargs):
        raise RuntimeError("out of memory")

    with monkeypatch.context() as patched:
        patched.setattr(trl.SFTTrainer, "train", out_of_memory)
        with pytest.raises(RuntimeError, match="out of memory"):
            train(data_file, base, TrainConfig(**TINY), tmp_path / "lora")
    assert (tmp_path / "lora.checkpoints" / "run.json").is_file()  # the failed run's claim, no checkpoint
    out = train(data_file, base, TrainConfig(**{**TINY, "learning_rate": 1e-3}), tmp_path / "lora")
    manifest = json.loads((out / "variant.json").read_text())
    assert manifest["training"]["config"]["learning_rate"] == 1e-3
    assert manifest["training"]["resumed_from"] is None


def test_the_fast_loss_is_trls_loss_on_the_same_first_step(base, data_file, tmp_path):
    """Padding-free batches and the head on the scored positions only change the speed, not the
    loss: the first step (LoRA's B is zero, so dropout cannot matter) gives the same loss."""
    one_step = {**TINY, "max_steps": 1}
    previous = TrainConfig(**one_step, padding_free=False, head_on_scored_positions_only=False, dropout=0.05)
    losses = []
    for name, config in (("previous", previous), ("current", TrainConfig(**one_step))):
        out = train(data_file, base, config, tmp_path / name)
        metrics = json.loads((out / "variant.json").read_text())["training"]["metrics"]
        losses.append(metrics["logged_losses"][0])
        assert metrics["throughput"]["processed_tokens"] > 0
        assert 0 < metrics["throughput"]["roofline_fraction"] < 1
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)


def test_examples_longer_than_max_seq_len_are_left_out_and_counted(base, tmp_path):
    path = tmp_path / "pairs.jsonl"
    records = [{"prompt": f"def f_{i}(a):\n", "completion": "    return a\n"} for i in range(20)]
    records.append({"prompt": "def long(a):\n", "completion": "    x = a\n" * 200})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = train(path, base, TrainConfig(**{**TINY, "max_steps": 1}), tmp_path / "lora")
    examples = json.loads((out / "variant.json").read_text())["training"]["examples"]
    assert examples["left_out_longer_than_max_seq_len"] == 1
    assert examples["train"] + examples["validation"] + examples["test"] == 20


def test_max_seq_len_beyond_the_models_context_trains_at_the_context(base, tmp_path):
    # The tiny model has 512 positions: rows past them would index past a learned position table.
    path = tmp_path / "pairs.jsonl"
    records = [{"prompt": f"def f_{i}(a):\n", "completion": "    return a\n"} for i in range(20)]
    records.append({"prompt": "def long(a):\n", "completion": "    x = a\n" * 120})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = train(path, base, TrainConfig(**{**TINY, "max_steps": 1, "max_seq_len": 4096}), tmp_path / "lora")
    training = json.loads((out / "variant.json").read_text())["training"]
    assert training["config"]["max_seq_len"] == 512
    assert training["examples"]["left_out_longer_than_max_seq_len"] == 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"r": 0}, "r=0 is out of range: use an integer >= 1"),
        ({"learning_rate": 5.0}, "learning_rate=5.0 is out of range"),
        ({"dropout": 1.0}, "dropout=1.0 is out of range"),
        ({"batch_size": 0}, "batch_size=0 is out of range"),
        ({"max_steps": 0}, "max_steps=0 is out of range"),
    ],
)
def test_a_recipe_value_out_of_range_is_refused_before_training(override, message):
    with pytest.raises(CodegenBenchError, match=message):
        TrainConfig(**override)


def test_a_record_without_the_needed_fields_names_its_file_and_line(base, tmp_path, monkeypatch):
    path = tmp_path / "pairs.jsonl"
    good = json.dumps({"prompt": "def f():\n", "completion": "    pass\n"})
    path.write_text(good + "\n" + '{"code": "x"}\n')
    loaded = []
    monkeypatch.setattr(type(base), "load", lambda self, **kw: loaded.append(1))
    with pytest.raises(CodegenBenchError, match=r"pairs.jsonl line 2: record with keys \['code'\]"):
        train(path, base, TrainConfig(**TINY), tmp_path / "lora")
    assert not loaded  # refused before any model is loaded


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


def test_example_length_counts_the_chat_template_tokens(tiny):
    from copy import deepcopy

    from codegen_bench.trainers.sft import example_length

    _, tokenizer = tiny
    tokenizer = deepcopy(tokenizer)
    tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}"
    example = to_example({"prompt": "def f():\n", "completion": "    return 1\n"}, chat=True)
    rendered = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tokenize=False)
    assert example_length(example, tokenizer) == len(tokenizer(rendered)["input_ids"]) > 2


def test_a_padding_free_row_attends_within_each_example(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    from codegen_bench.trainers.packed_attention import PER_SEQUENCE_SDPA

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    model.set_attn_implementation(PER_SEQUENCE_SDPA)
    examples = [torch.arange(5, 17), torch.arange(40, 47), torch.arange(90, 110)]
    row = torch.cat(examples)[None]
    positions = torch.cat([torch.arange(len(e)) for e in examples])[None]
    bounds = torch.tensor([0, 12, 19, 39], dtype=torch.int32)
    with torch.no_grad():
        packed = model(input_ids=row, position_ids=positions, use_cache=False, cu_seq_lens_q=bounds).logits[0]
        model.set_attn_implementation("sdpa")
        alone = torch.cat([model(input_ids=e[None], use_cache=False).logits[0] for e in examples])
    torch.testing.assert_close(packed, alone, rtol=1e-4, atol=1e-5)
