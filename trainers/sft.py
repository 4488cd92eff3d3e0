"""LoRA / QLoRA supervised fine-tuning with trl's SFTTrainer and peft, saved as a variant artifact.

    codegen-bench train lora --data stdlib/codegen.jsonl --out artifacts/lora --config max_steps=30

Records are turned into prompt-completion examples (chat messages for instruct models, in the same
form the HumanEval task prompts with), split into train/validation/test with a fixed seed, and
trained with the loss on the completion only. Checkpoints go to `<out>.checkpoints/`, and a rerun
of the same command resumes from the last one. The adapter is saved as a `lora` (or `qlora`)
artifact; `--model_args variant=<out>` evaluates it.

Data-parallel under accelerate (DDP: gloo on CPU, NCCL on GPUs; or FSDP from an accelerate config):

    accelerate launch --multi_gpu --num_processes 2 -m codegen_bench.harness.cli train lora ...

The Trainer joins the launcher's process group itself. `batch_size` is the global batch, split evenly
over the processes, so a run on N processes takes the same optimizer steps over the same examples as
one process. The main process alone writes checkpoints and the artifact; a rerun resumes from the
last checkpoint under the launcher too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from codegen_bench.harness.distributed import launched_world_size
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import read_jsonl
from codegen_bench.harness.loading import load_tokenizer, resolve_device
from codegen_bench.tasks.humaneval.utils import FENCED_ASSISTANT_PREFIX, FENCED_USER
from codegen_bench.variants.artifact import BaseModel, write_artifact
from codegen_bench.variants.quantize import Nf4

log = logging.getLogger(__name__)

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
EXPLAIN_PROMPT = "Explain what this Python function does.\n```python\n{code}\n```"


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the adapter; recorded in the artifact's variant.json."""

    kind: Literal["lora", "qlora"] = "lora"
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 4  # examples per step over all processes (split evenly among them)
    grad_accum: int = 1
    max_seq_len: int = 512
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    max_examples: int | None = None
    seed: int = 0
    logging_steps: int = 5
    save_steps: int = 20
    # trl turns it on by default; it recomputes activations (~1/3 more compute) to save memory, which
    # a 0.5B model on a CPU with 24 GiB does not need. Turn it on for large models on a GPU.
    gradient_checkpointing: bool = False
    nf4: Nf4 = field(default_factory=Nf4)  # the 4-bit base of qlora

    def __post_init__(self) -> None:
        if self.kind not in ("lora", "qlora"):
            raise CodegenBenchError(f"kind={self.kind!r} is not a trainer: use lora or qlora")
        if not 0 <= self.validation_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise CodegenBenchError("validation and test fractions must be in [0, 1): e.g. 0.05")


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def to_example(record: dict, chat: bool) -> dict:
    """One JSONL record -> a trl prompt-completion example.

    Code pairs ({prompt, completion}) are completions of a function; explanation pairs
    ({code, explanation}) ask what a function does; {text} records are plain language modelling.
    """
    # The answer is the whole function in a fence: what both HumanEval chat styles read back.

    if "prompt" in record and "completion" in record:
        if not chat:
            return {"prompt": record["prompt"], "completion": record["completion"]}
        user = FENCED_USER.format(prompt=record["prompt"])
        answer = (
            FENCED_ASSISTANT_PREFIX.format(prompt=record["prompt"]) + record["completion"].rstrip() + "\n```"
        )
        return {
            "prompt": [{"role": "user", "content": user}],
            "completion": [{"role": "assistant", "content": answer}],
        }
    if "code" in record and "explanation" in record:
        prompt = EXPLAIN_PROMPT.format(code=record["code"])
        if not chat:
            return {"prompt": prompt + "\n", "completion": record["explanation"]}
        return {
            "prompt": [{"role": "user", "content": prompt}],
            "completion": [{"role": "assistant", "content": record["explanation"]}],
        }
    if "text" in record:
        return {"text": record["text"]}
    raise CodegenBenchError(
        f"record with keys {sorted(record)} is not a training example: give prompt+completion, "
        "code+explanation, or text"
    )


def load_splits(data_path: Path, config: TrainConfig, chat: bool):
    """train/validation/test datasets, split with the config's seed (after dropping records a data
    build held out)."""
    from datasets import Dataset

    records = read_jsonl(data_path)
    # `codegen-bench data build` marks a held-out split (the explanation task evaluates on it):
    # train only on its train records.
    if all("split" in r for r in records):
        records = [r for r in records if r["split"] == "train"]
    if config.max_examples:
        records = records[: config.max_examples]
    examples = [to_example(r, chat) for r in records]
    if len(examples) < 3:
        raise CodegenBenchError(f"{data_path} holds {len(examples)} examples: at least 3 are needed to split")
    dataset = Dataset.from_list(examples).shuffle(seed=config.seed)
    n_test = max(1, int(len(dataset) * config.test_fraction)) if config.test_fraction else 0
    n_val = max(1, int(len(dataset) * config.validation_fraction)) if config.validation_fraction else 0
    test = dataset.select(range(n_test))
    validation = dataset.select(range(n_test, n_test + n_val))
    train = dataset.select(range(n_test + n_val, len(dataset)))
    return train, validation, test


def train(
    data_path: str | Path,
    base: BaseModel,
    config: TrainConfig,
    out_dir: str | Path,
    push_to_hub: str | None = None,
) -> Path:
    """Train a LoRA/QLoRA adapter on `data_path` and save it as a variant artifact in `out_dir`."""
    from peft import LoraConfig, prepare_model_for_kbit_training
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    data_path, out_dir = Path(data_path), Path(out_dir)
    if not data_path.is_file():
        raise CodegenBenchError(
            f"--data {data_path} does not exist: build one with `codegen-bench data build`"
        )
    world_size = launched_world_size()
    if config.batch_size % world_size:
        raise CodegenBenchError(
            f"batch_size={config.batch_size} does not split over {world_size} processes: "
            f"use a multiple of {world_size} (it is the global batch)"
        )
    base = _on_this_rank(base)
    tokenizer = load_tokenizer(base.name_or_path, base.load_config)
    chat = bool(getattr(tokenizer, "chat_template", None))
    train_set, validation_set, test_set = load_splits(data_path, config, chat)

    # peft initialises the LoRA matrices when the trainer wraps the model, before the Trainer seeds:
    # seed here so that a run is repeatable (under DDP rank 0's initial weights are broadcast).
    set_seed(config.seed)
    if config.kind == "qlora":
        placement = {"device_map": {"": base.load_config.device}} if on_gpu(base) else {}
        model = base.load(quantization_config=config.nf4.to_transformers(), **placement)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = base.load()
    model.train()
    checkpoints = out_dir.with_name(out_dir.name + ".checkpoints")
    on_cpu = model.device.type == "cpu"
    args = SFTConfig(
        output_dir=str(checkpoints),
        max_steps=config.max_steps,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size // world_size,
        per_device_eval_batch_size=config.batch_size // world_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if len(validation_set) else "no",
        eval_steps=config.save_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        max_length=config.max_seq_len,
        completion_only_loss=True if "prompt" in train_set.column_names else None,
        seed=config.seed,
        report_to="none",
        use_cpu=on_cpu,
        bf16=False,
        gradient_checkpointing=config.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",  # for the tokens/s in variant.json
        dataset_num_proc=1,
        push_to_hub=bool(push_to_hub),
        hub_model_id=push_to_hub,
    )
    peft_config = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set if len(validation_set) else None,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume:
        log.warning("resuming from checkpoint %s", resume)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.monotonic() - started
    metrics = {"train_loss": result.training_loss, "train_runtime_s": train_seconds}
    if len(validation_set):
        metrics["validation_loss"] = trainer.evaluate(validation_set, metric_key_prefix="validation")[
            "validation_loss"
        ]
    if len(test_set):
        metrics["test_loss"] = trainer.evaluate(test_set, metric_key_prefix="test")["test_loss"]
    tokens = getattr(trainer.state, "num_input_tokens_seen", 0) or 0
    if tokens:
        metrics["train_tokens"] = tokens
        metrics["train_tokens_per_s"] = tokens / train_seconds
    # Every process takes part in saving (FSDP gathers the sharded adapter); the Trainer writes it
    # from the main process only, into a fixed folder the artifact is then made from.
    adapter_dir = checkpoints / "final-adapter"
    trainer.save_model(str(adapter_dir))
    trainer.accelerator.wait_for_everyone()
    if trainer.is_world_process_zero():
        _write_adapter_artifact(
            trainer.model,
            adapter_dir,
            out_dir,
            base=base,
            config=config,
            training={
                "config": _jsonable(config),
                "data": {"path": str(data_path.resolve()), "sha256": _file_sha256(data_path)},
                "examples": {
                    "train": len(train_set),
                    "validation": len(validation_set),
                    "test": len(test_set),
                },
                "chat_format": chat,
                "metrics": metrics,
                "resumed_from": resume,
                "world_size": world_size,
            },
        )
        if push_to_hub:
            trainer.push_to_hub()  # real hub code: needs a token and network
        log.info("adapter saved to %s: %s", out_dir, json.dumps(metrics))
    trainer.accelerator.wait_for_everyone()  # no process returns before the artifact exists
    return out_dir


def _write_adapter_artifact(model, adapter_dir: Path, out_dir: Path, *, base, config, training) -> None:
    # The variant's own config (variants/adapters.py): where the adapter is, and for qlora the 4-bit
    # base it was trained on, which is also the base it is evaluated on.
    variant_config = {"adapter": str(out_dir.resolve())}
    variant_config.update(asdict(config.nf4) if config.kind == "qlora" else {"merge": False})
    write_artifact(
        model,
        out_dir,
        variant=config.kind,
        config=variant_config,
        base=base,
        save=lambda _, folder: _copy_adapter(adapter_dir, folder),
        extra={"training": training},
    )


def _copy_adapter(adapter_dir: Path, folder: Path) -> None:
    """The adapter the Trainer saved (adapter_model.safetensors + adapter_config.json), without the
    tokenizer and training-arguments files it puts beside it: the artifact's base has those."""
    for name in ("adapter_model.safetensors", "adapter_config.json"):
        shutil.copy2(adapter_dir / name, folder / name)


def _on_this_rank(base: BaseModel) -> BaseModel:
    """Under a launcher on GPUs, each process trains on its own GPU (cuda:LOCAL_RANK), not cuda:0."""
    if launched_world_size() < 2 or not on_gpu(base):
        return base

    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return replace(base, load_config=replace(base.load_config, device=device))


def on_gpu(base: BaseModel) -> bool:
    return resolve_device(base.load_config.device).type == "cuda"


def _jsonable(config: TrainConfig) -> dict:
    values = asdict(config)
    values["target_modules"] = list(config.target_modules)
    return values
