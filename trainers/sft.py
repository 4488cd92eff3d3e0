"""LoRA / QLoRA supervised fine-tuning with trl's SFTTrainer and peft, saved as a variant artifact.

    codegen-bench train lora                     # the default recipe (trainers/recipes.py)
    codegen-bench train lora --data stdlib/codegen.jsonl --out artifacts/lora --config max_steps=30

Records are turned into prompt-completion examples (chat messages for instruct models, in the same
form the HumanEval and code_explain tasks prompt with), split into train/validation/test with a
fixed seed, and trained with the loss on the completion only. Checkpoints go to
`<out>.checkpoints/`, and a rerun of the same command resumes from the last complete one (a run
with another base, data or config refuses that folder instead of mixing into it). The adapter is
saved as a `lora` (or `qlora`) artifact; `--model_args variant=<out>` evaluates it.

The defaults are chosen for training on a CPU, where a step's time goes to the output head, the
matmuls and LoRA's dropout masks (results/measurements/lora-training-speed/ measures these
defaults against padded batches, the full head, plain matmuls and dropout). The output head runs
only at the positions the loss scores (`logits_to_keep`), because trl's fused head scores the
whole vocabulary at every position off CUDA, prompts included; the frozen weights' matmuls run on
oneDNN-packed copies, which run well above the plain sgemm on the CPUs here; batches are
padding-free (the examples of a step in one row, each attending only to itself:
trainers/packed_attention.py); dropout is off; evaluation runs after training, not inside the
timed loop. The progress bar and the manifest show processed tokens/s and the share of the matmul
roofline (harness/engine/roofline.py) measured at the start of the run.

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
from typing import Literal, NamedTuple

from codegen_bench.harness.corpus.stdlib import function_name
from codegen_bench.harness.distributed import launched_world_size
from codegen_bench.harness.engine.prepack import prepack_frozen_linears_
from codegen_bench.harness.engine.roofline import (
    MatmulShapes,
    adapter_training_flops,
    matmul_shape,
    measure_peak_flops,
)
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import read_numbered_jsonl, write_text_atomic
from codegen_bench.harness.loading import (
    context_length,
    load_model_config,
    load_tokenizer,
    meta_model,
    model_name,
    resolve_device,
)
from codegen_bench.tasks.code_explain.utils import BASE_PROMPT as EXPLAIN_BASE_PROMPT
from codegen_bench.tasks.code_explain.utils import CHAT_USER as EXPLAIN_CHAT_USER
from codegen_bench.tasks.humaneval.utils import (
    FENCED_ASSISTANT_PREFIX,
    FENCED_USER,
    INSTRUCT_ASSISTANT_PREFIX,
    INSTRUCT_USER,
)
from codegen_bench.trainers.packed_attention import PER_SEQUENCE_SDPA
from codegen_bench.variants.artifact import BaseModel, write_artifact
from codegen_bench.variants.cache import cached_variant
from codegen_bench.variants.quantize import Nf4

log = logging.getLogger(__name__)

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RUN_FILE = "run.json"  # in the checkpoints folder: what the checkpoints were made by


class CodePromptForm(NamedTuple):
    """A code record's chat form: the user message and the assistant answer's opening of the
    HumanEval task whose style it trains, the function's prompt shown as that task shows it."""

    user: str
    opening: str
    # instruct shows the prompt stripped and reads the whole function back from the answer; fenced
    # prefills the prompt in the answer's opening, so the answer goes on from it.
    stripped: bool


CODE_PROMPTS = {
    "instruct": CodePromptForm(INSTRUCT_USER, INSTRUCT_ASSISTANT_PREFIX, stripped=True),
    "fenced": CodePromptForm(FENCED_USER, FENCED_ASSISTANT_PREFIX, stripped=False),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the adapter; recorded in the artifact's variant.json."""

    kind: Literal["lora", "qlora"] = "lora"
    # The chat form code records are trained in: the one of the task that measures the adapter's
    # code. `instruct` is humaneval_custom's (the published protocol), `fenced` humaneval_fenced's.
    # Trained in one form and measured in the other, an adapter learns an answer style that the
    # measured prompt never asks for.
    code_prompt: Literal["instruct", "fenced"] = "instruct"
    r: int = 16
    alpha: int = 32
    # Off: drawing LoRA's dropout masks is a real share of a CPU step, and a run of one epoch over a
    # few hundred examples is not where an adapter overfits.
    dropout: float = 0.0
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    learning_rate: float = 2e-4
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 8  # examples per step over all processes (split evenly among them)
    grad_accum: int = 1
    # Longer examples are left out (and counted), not cut: a cut completion teaches an answer that
    # never ends. With padding_free=false they are truncated, as trl does.
    max_seq_len: int = 1024
    validation_fraction: float = 0.05
    test_fraction: float = 0.05
    max_examples: int | None = None  # the first N records of the data file
    seed: int = 0
    logging_steps: int = 5
    save_steps: int = 20
    eval_steps: int = 0  # > 0: validation loss every N steps inside training; 0: once, after it
    # The examples of a step concatenated into one row (no padding). False: padded to the longest.
    padding_free: bool = True
    # The output head (one column per vocabulary entry) only where the loss is taken. False: trl's
    # fused head, which off CUDA scores every position, prompts included.
    head_on_scored_positions_only: bool = True
    # On the CPU in float32: the frozen weights' matmuls through oneDNN-packed copies
    # (harness/engine/prepack.py), which run well above the plain sgemm on the CPUs here
    # (results/measurements/lora-training-speed/). Ignored elsewhere.
    prepack_frozen_weights: bool = True
    # trl turns it on by default; it recomputes activations (one more forward pass per step) to save
    # memory, which a small model in a CPU's memory does not need. Turn it on for large models on a GPU.
    gradient_checkpointing: bool = False
    nf4: Nf4 = field(default_factory=Nf4)  # the 4-bit base of qlora

    def __post_init__(self) -> None:
        if self.kind not in ("lora", "qlora"):
            raise CodegenBenchError(f"kind={self.kind!r} is not a trainer: use lora or qlora")
        if self.code_prompt not in CODE_PROMPTS:
            raise CodegenBenchError(
                f"train {self.kind}: code_prompt={self.code_prompt!r} is not a prompt form: use one of "
                f"{', '.join(CODE_PROMPTS)}"
            )
        if not 0 <= self.validation_fraction < 1 or not 0 <= self.test_fraction < 1:
            raise CodegenBenchError("validation and test fractions must be in [0, 1): e.g. 0.05")
        checks = [
            ("r", self.r >= 1, "an integer >= 1, e.g. 16"),
            ("alpha", self.alpha > 0, "> 0, e.g. 32 (twice r)"),
            ("dropout", 0 <= self.dropout < 1, "in [0, 1), e.g. 0.0 or 0.05"),
            ("target_modules", bool(self.target_modules), "at least one module name, e.g. q_proj+v_proj"),
            ("learning_rate", 0 < self.learning_rate < 1, "in (0, 1), e.g. 2e-4"),
            ("epochs", self.epochs > 0, "> 0, e.g. 1"),
            ("max_steps", self.max_steps == -1 or self.max_steps > 0, "-1 (use epochs) or > 0"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1, e.g. 8"),
            ("grad_accum", self.grad_accum >= 1, "an integer >= 1"),
            ("max_seq_len", self.max_seq_len >= 16, "an integer >= 16, e.g. 1024"),
            ("max_examples", self.max_examples is None or self.max_examples >= 3, "None or >= 3"),
            ("logging_steps", self.logging_steps >= 1, "an integer >= 1"),
            ("save_steps", self.save_steps >= 1, "an integer >= 1, e.g. 20"),
            ("eval_steps", self.eval_steps >= 0, "0 (after training) or >= 1"),
        ]
        for key, valid, expected in checks:
            if not valid:
                raise CodegenBenchError(
                    f"train {self.kind}: {key}={getattr(self, key)!r} is out of range: use {expected}"
                )


def check_target_modules(base: BaseModel, config: TrainConfig) -> None:
    """peft adapts the modules whose qualified names end in one of `target_modules`, and fails only
    when none does, after the model has loaded: checked here on the model's config alone. Names that
    match nothing beside ones that do are what peft allows too: a warning names them, and the
    model's projections the adapter then leaves out (a fused qkv_proj where q_proj was asked for)."""
    model = meta_model(base.name_or_path, base.load_config)
    names = [name for name, _ in model.named_modules()]
    matched = {key for key in config.target_modules if any(n == key or n.endswith("." + key) for n in names)}
    head = model.get_output_embeddings()
    projections = sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if module is not head and matmul_shape(module) is not None
        }
    )
    if not matched:
        raise CodegenBenchError(
            f"train {config.kind}: target_modules={'+'.join(config.target_modules)} names no module of "
            f"{model_name(base.name_or_path)} ({type(model).__name__}), whose projections are "
            f"{', '.join(projections)}: train its adapter with `codegen-bench train {config.kind} "
            f"--config target_modules={'+'.join(projections)} --out DIR` (or a subset of them), then "
            f"evaluate it as variant.adapter=DIR (the matrix: NAME=DIR)"
        )
    if unmatched := [key for key in config.target_modules if key not in matched]:
        left_out = [name for name in projections if name not in matched]
        log.warning(
            "train %s: target_modules %s name no module of %s; the adapter goes on %s%s",
            config.kind,
            "+".join(unmatched),
            model_name(base.name_or_path),
            "+".join(sorted(matched)),
            f" and leaves its {', '.join(left_out)} as they are (to adapt them too: --config "
            f"target_modules={'+'.join(projections)} --out DIR)"
            if left_out
            else "",
        )


def _within_context(base: BaseModel, config: TrainConfig) -> TrainConfig:
    """`config` with max_seq_len at most the base model's context: longer rows would index past a
    learned position table (GPT-2's 1,024 or fewer), or train rotary positions the model never saw."""
    limit = context_length(load_model_config(base.name_or_path, base.load_config))
    if config.max_seq_len <= limit:
        return config
    log.warning(
        "train %s: max_seq_len=%d is longer than %s's context: training on rows of at most %d tokens",
        config.kind,
        config.max_seq_len,
        model_name(base.name_or_path),
        limit,
    )
    return replace(config, max_seq_len=limit)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def code_request(prompt: str, code_prompt: str) -> tuple[list[dict], str]:
    """The chat turn that asks for `prompt`'s function in `code_prompt`'s form, and the opening of
    the answer that form prefills: what training records and the replayed answers are both made of."""
    form = CODE_PROMPTS[code_prompt]
    shown = prompt.strip() if form.stripped else prompt
    return [{"role": "user", "content": form.user.format(prompt=shown)}], form.opening.format(prompt=shown)


def to_example(record: dict, chat: bool, code_prompt: str = "instruct") -> dict:
    """One JSONL record -> a trl prompt-completion example.

    Code pairs ({prompt, completion}) are completions of a function; code answers ({prompt, answer})
    are a whole chat answer to a function's prompt, after the prompt form's opening (a model's own
    answers: trainers/replay.py); explanation pairs ({code, explanation}) ask what a function does;
    {text} records are plain language modelling. In chat, code records take the `code_prompt` form.
    """
    if "prompt" in record and ("completion" in record or "answer" in record):
        if not chat:
            if "answer" in record:
                raise CodegenBenchError(
                    "a {prompt, answer} record is a chat answer, and this tokenizer has no chat template: "
                    "give {prompt, completion}"
                )
            return {"prompt": record["prompt"], "completion": record["completion"]}
        request, opening = code_request(record["prompt"], code_prompt)
        if "answer" in record:
            body = record["answer"]
        elif CODE_PROMPTS[code_prompt].stripped:
            # The whole function in the fence: what both HumanEval chat forms read back.
            body = record["prompt"] + record["completion"]
        else:
            body = record["completion"]  # the form's opening already shows the prompt
        return {
            "prompt": request,
            "completion": [{"role": "assistant", "content": opening + body.rstrip() + "\n```"}],
        }
    if "code" in record and "explanation" in record:
        # The code_explain tasks' own prompts, so that what is learnt is what they measure.
        name = record.get("name") or function_name(record.get("id", ""))
        if not chat:
            prompt = EXPLAIN_BASE_PROMPT.format(code=record["code"], name=name)
            return {"prompt": prompt, "completion": record["explanation"] + '\n"""'}
        return {
            "prompt": [{"role": "user", "content": EXPLAIN_CHAT_USER.format(code=record["code"], name=name)}],
            "completion": [{"role": "assistant", "content": record["explanation"]}],
        }
    if "text" in record:
        return {"text": record["text"]}
    raise CodegenBenchError(
        f"record with keys {sorted(record)} is not a training example: give prompt+completion, "
        "prompt+answer, code+explanation, or text"
    )


def read_examples(
    data_path: Path, chat: bool, max_examples: int | None = None, code_prompt: str = "instruct"
) -> list[dict]:
    """The data file's training records as examples; a record that is not one fails with its line."""
    numbered = read_numbered_jsonl(data_path, what="training data")
    # `codegen-bench data build` marks a held-out split (the explanation task evaluates on it):
    # train only on its train records.
    if all("split" in record for _, record in numbered):
        numbered = [(line, record) for line, record in numbered if record["split"] == "train"]
    if max_examples:
        numbered = numbered[:max_examples]
    examples = []
    for line, record in numbered:
        try:
            examples.append(to_example(record, chat, code_prompt))
        except CodegenBenchError as exc:
            raise CodegenBenchError(f"{data_path} line {line}: {exc}") from None
    return examples


def example_length(example: dict, tokenizer) -> int:
    """Tokens of the whole example as trl will tokenize it (chat template applied)."""
    if "text" in example:
        return len(tokenizer(example["text"])["input_ids"])
    if isinstance(example["prompt"], list):
        messages = example["prompt"] + example["completion"]
        return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
    return len(tokenizer(example["prompt"] + example["completion"])["input_ids"])


def load_splits(data_path: Path, config: TrainConfig, chat: bool, tokenizer=None):
    """train/validation/test datasets, split with the config's seed, and how many examples were left
    out for being longer than max_seq_len (padding-free batches only; padded ones truncate)."""
    from datasets import Dataset

    examples = read_examples(data_path, chat, config.max_examples, config.code_prompt)
    too_long = 0
    if config.padding_free and tokenizer is not None:
        kept = [e for e in examples if example_length(e, tokenizer) <= config.max_seq_len]
        too_long, examples = len(examples) - len(kept), kept
    if len(examples) < 3:
        raise CodegenBenchError(
            f"{data_path} holds {len(examples)} usable examples ({too_long} longer than "
            f"max_seq_len={config.max_seq_len}): at least 3 are needed to split"
        )
    dataset = Dataset.from_list(examples).shuffle(seed=config.seed)
    n_test = max(1, int(len(dataset) * config.test_fraction)) if config.test_fraction else 0
    n_val = max(1, int(len(dataset) * config.validation_fraction)) if config.validation_fraction else 0
    test = dataset.select(range(n_test))
    validation = dataset.select(range(n_test, n_test + n_val))
    train = dataset.select(range(n_test + n_val, len(dataset)))
    return train, validation, test, too_long


def _completion_loss_trainer():
    """trl's SFTTrainer, with the loss computed from the logits of the scored positions only.

    trl's own fused head scores every position off CUDA (it keeps tile shapes fixed for compilers
    that need them). Here the model is asked for `logits_to_keep` = the positions whose next token
    is scored, through its normal forward (so DDP and peft wrap it as usual), and the loss is the
    same sum of negative log-likelihoods over the same tokens, divided the same way.
    """
    import torch
    from trl import SFTTrainer

    class CompletionLossSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            labels = inputs["labels"]
            targets = labels[:, 1:]
            # One index set for the whole batch (a single row when padding-free).
            keep = (targets != -100).any(dim=0).nonzero().flatten()
            forward = {k: v for k, v in inputs.items() if k != "labels"}
            outputs = model(**forward, logits_to_keep=keep, use_cache=False)
            kept_targets = targets[:, keep]
            loss_sum = torch.nn.functional.cross_entropy(
                outputs.logits.flatten(0, 1).float(),
                kept_targets.flatten(),
                ignore_index=-100,
                reduction="sum",
            )
            scored = (kept_targets != -100).sum()
            loss = loss_sum / (scored.clamp(min=1) if num_items_in_batch is None else num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages gradients over processes
            return (loss, outputs) if return_outputs else loss

    return CompletionLossSFTTrainer


@dataclass
class Throughput:
    """Processed tokens/s and the share of the matmul roofline, from the first timed step on."""

    shapes: MatmulShapes
    peak_flops: float
    tokens: int = 0
    scored: int = 0
    seconds: float = 0.0
    _started: float | None = None

    def add(self, tokens: int, scored: int) -> None:
        self.tokens += tokens
        self.scored += scored

    def start_step(self) -> None:
        self._started = time.perf_counter()

    def end_step(self) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self._started = None

    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def roofline_fraction(self) -> float:
        if not self.seconds or not self.peak_flops:
            return 0.0
        return adapter_training_flops(self.shapes, self.tokens, self.scored) / self.seconds / self.peak_flops

    def as_dict(self) -> dict:
        return {
            "processed_tokens": self.tokens,
            "scored_tokens": self.scored,
            "step_seconds": round(self.seconds, 3),
            "processed_tokens_per_s": round(self.tokens_per_s(), 2),
            "peak_gflops": round(self.peak_flops / 1e9, 1),
            "roofline_fraction": float(f"{self.roofline_fraction():.4g}"),
        }


def _throughput_callback(throughput: Throughput):
    from transformers import TrainerCallback
    from transformers.trainer_callback import ProgressCallback

    class ThroughputCallback(TrainerCallback):
        """Times the optimizer steps (not evaluation or checkpoint writes) and shows tokens/s and the
        share of the roofline on the Trainer's progress bar."""

        def __init__(self) -> None:
            self.bar_owner = None  # the Trainer's ProgressCallback, set once the Trainer exists

        def attach_to(self, trainer) -> None:
            callbacks = trainer.callback_handler.callbacks
            self.bar_owner = next((c for c in callbacks if isinstance(c, ProgressCallback)), None)

        def on_step_begin(self, args, state, control, **kwargs):
            throughput.start_step()

        def on_step_end(self, args, state, control, **kwargs):
            throughput.end_step()
            bar = getattr(self.bar_owner, "training_bar", None)
            if bar is not None:
                bar.set_postfix_str(
                    f"{throughput.tokens_per_s():.1f} tok/s, {throughput.roofline_fraction():.0%} of roofline"
                )

    return ThroughputCallback


def last_complete_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint the Trainer finished writing (trainer_state.json is its last file), so
    a run killed while saving resumes from the one before."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    if not folder.is_dir():
        return None
    done = [
        p
        for p in folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").is_file()
    ]
    return str(max(done, key=lambda p: int(p.name.split("-")[-1]))) if done else None


def _claim_checkpoints(folder: Path, run: dict) -> None:
    """Checkpoints from another run (base, data or config) must not be resumed into this one."""
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    marker = folder / RUN_FILE
    if marker.is_file():
        previous = json.loads(marker.read_text())
        if previous == run:
            return
        # A run that failed before its first checkpoint (a model that did not load, a step that ran
        # out of memory) leaves only the marker: nothing to resume, so the corrected run takes it over.
        if any(folder.glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
            changed = sorted(k for k in run.keys() | previous.keys() if run.get(k) != previous.get(k))
            raise CodegenBenchError(
                f"{folder} holds checkpoints of another training run ({', '.join(changed)} differ): "
                "delete that folder to start over, or pass another --out"
            )
    folder.mkdir(parents=True, exist_ok=True)
    write_text_atomic(marker, json.dumps(run, indent=2, sort_keys=True))


def train(
    data_path: str | Path,
    base: BaseModel,
    config: TrainConfig,
    out_dir: str | Path,
    push_to_hub: str | None = None,
    recipe: str | None = None,
) -> Path:
    """Train a LoRA/QLoRA adapter on `data_path` and save it as a variant artifact in `out_dir`
    (`recipe`: the name of the recipe it comes from, for the manifest)."""
    data_path, out_dir = Path(data_path), Path(out_dir)
    world_size = _checked_world_size(data_path, config)
    check_target_modules(base, config)
    config = _within_context(base, config)
    base = _on_this_rank(base)
    tokenizer = load_tokenizer(base.name_or_path, base.load_config)
    chat = bool(getattr(tokenizer, "chat_template", None))
    train_set, validation_set, test_set, too_long = load_splits(data_path, config, chat, tokenizer)
    checkpoints = out_dir.with_name(out_dir.name + ".checkpoints")
    data_sha256 = _file_sha256(data_path)
    _claim_checkpoints(
        checkpoints,
        {
            "base": base.fingerprint(),
            "data_sha256": data_sha256,
            "config": _jsonable(config),
        },
    )
    model = _model_to_train(base, config)
    args = _sft_arguments(config, checkpoints, world_size, model, train_set, validation_set, push_to_hub)
    trainer, throughput = _sft_trainer(model, args, config, tokenizer, train_set, validation_set)
    resume = last_complete_checkpoint(checkpoints)
    if resume:
        log.warning("resuming from checkpoint %s", resume)
    metrics = _train_and_evaluate(trainer, resume, validation_set, test_set, throughput)
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
                "recipe": recipe,
                "data": {"file": data_path.name, "sha256": data_sha256},
                "examples": {
                    "train": len(train_set),
                    "validation": len(validation_set),
                    "test": len(test_set),
                    "left_out_longer_than_max_seq_len": too_long,
                },
                "steps": trainer.state.global_step,
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


def _checked_world_size(data_path: Path, config: TrainConfig) -> int:
    """The launcher's process count, once the data file exists and the global batch splits over it."""
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
    return world_size


def _model_to_train(base: BaseModel, config: TrainConfig):
    """The base (4-bit for qlora) in training mode, seeded, with per-example attention when batches
    are padding-free."""
    from peft import prepare_model_for_kbit_training
    from transformers import set_seed

    # peft initialises the LoRA matrices when the trainer wraps the model, before the Trainer seeds:
    # seed here so that a run is repeatable (under DDP rank 0's initial weights are broadcast).
    set_seed(config.seed)
    if config.kind == "qlora":
        # The 4-bit base from the cached nf4 artifact (built once): the fp32 weights are not held.
        model, _ = cached_variant("nf4", base, asdict(config.nf4))
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    else:
        model = base.load()
    model.train()
    if config.padding_free and model.config._attn_implementation == "sdpa":
        # The examples of a padding-free row attend each on its own (trainers/packed_attention.py).
        model.set_attn_implementation(PER_SEQUENCE_SDPA)
    return model


def _sft_arguments(
    config: TrainConfig,
    checkpoints: Path,
    world_size: int,
    model,
    train_set,
    validation_set,
    push_to_hub: str | None,
):
    """trl's SFTConfig for this run: the per-process share of the global batch, checkpoints every
    save_steps, the loss on the completion only."""
    from trl import SFTConfig

    evaluate_inside = bool(config.eval_steps and len(validation_set))
    return SFTConfig(
        output_dir=str(checkpoints),
        max_steps=config.max_steps,
        num_train_epochs=config.epochs,
        per_device_train_batch_size=config.batch_size // world_size,
        per_device_eval_batch_size=config.batch_size // world_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if evaluate_inside else "no",
        eval_steps=config.eval_steps or None,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        # Padding-free rows are not truncated by trl: over-long examples were left out by load_splits.
        max_length=None if config.padding_free else config.max_seq_len,
        padding_free=config.padding_free,
        completion_only_loss=True if "prompt" in train_set.column_names else None,
        seed=config.seed,
        report_to="none",
        use_cpu=model.device.type == "cpu",
        bf16=False,
        gradient_checkpointing=config.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        dataset_num_proc=1,
        push_to_hub=bool(push_to_hub),
        hub_model_id=push_to_hub,
    )


def _sft_trainer(model, args, config: TrainConfig, tokenizer, train_set, validation_set):
    """The Trainer that wraps `model` in the LoRA adapter, and the throughput its steps are timed into."""
    import torch
    from peft import LoraConfig
    from trl import SFTTrainer

    peft_config = LoraConfig(
        r=config.r,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        task_type="CAUSAL_LM",
    )
    on_cpu = model.device.type == "cpu"
    shapes = MatmulShapes.of(model)
    # A quiet machine's matmul peak, measured now: the share of the roofline is against this run's.
    throughput = Throughput(shapes, max(measure_peak_flops(shapes).values()) if on_cpu else 0.0)
    trainer_cls = _completion_loss_trainer() if config.head_on_scored_positions_only else SFTTrainer
    throughput_callback = _throughput_callback(throughput)()
    trainer = trainer_cls(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=validation_set if len(validation_set) else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[throughput_callback],
    )
    throughput_callback.attach_to(trainer)
    if config.prepack_frozen_weights and on_cpu and model.dtype == torch.float32:
        log.info("oneDNN-packed frozen weights in %d linear layers", prepack_frozen_linears_(trainer.model))
    _count_processed_tokens(trainer, throughput)
    return trainer, throughput


def _train_and_evaluate(
    trainer, resume: str | None, validation_set, test_set, throughput: Throughput
) -> dict:
    """Train (from `resume` if given), then the losses on the held-out splits: the run's metrics."""
    # Read before training: the trainer deletes older checkpoints as it saves new ones.
    tokens_before = _tokens_seen_at(resume)
    started = time.monotonic()
    result = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.monotonic() - started
    metrics = {"train_loss": result.training_loss, "train_runtime_s": train_seconds}
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    if losses:
        metrics["logged_losses"] = losses  # one per logging_steps, in order
    if len(validation_set):
        metrics["validation_loss"] = trainer.evaluate(validation_set, metric_key_prefix="validation")[
            "validation_loss"
        ]
    if len(test_set):
        metrics["test_loss"] = trainer.evaluate(test_set, metric_key_prefix="test")["test_loss"]
    tokens = getattr(trainer.state, "num_input_tokens_seen", 0) or 0
    if tokens:
        metrics["train_tokens"] = tokens
        # The count carries over from the checkpoint while the clock covers this process only: the
        # rate is over the tokens this process trained on.
        metrics["train_tokens_per_s"] = (tokens - tokens_before) / train_seconds
    metrics["throughput"] = throughput.as_dict()  # this process's steps since (re)start
    return metrics


def _tokens_seen_at(checkpoint: str | None) -> int:
    if checkpoint is None:
        return 0
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text())
    return state.get("num_input_tokens_seen", 0) or 0


def _count_processed_tokens(trainer, throughput: Throughput) -> None:
    """Count each training batch's tokens (padding included) and scored tokens, whichever loss runs."""
    compute_loss = trainer.compute_loss

    def counted(model, inputs, *args, **kwargs):
        if model.training:
            scored = int((inputs["labels"][:, 1:] != -100).sum())
            throughput.add(int(inputs["input_ids"].numel()), scored)
        return compute_loss(model, inputs, *args, **kwargs)

    trainer.compute_loss = counted


def _write_adapter_artifact(model, adapter_dir: Path, out_dir: Path, *, base, config, training) -> None:
    # The variant's own config (variants/adapters.py): where the adapter is, and for qlora the 4-bit
    # base it was trained on, which is also the base it is evaluated on.
    # No path: the artifact folder is the adapter, wherever it is moved (and records stay free of
    # machine paths); `recipe` names the recipe it was trained by, if any.
    variant_config = {"adapter": "", "recipe": training.get("recipe") or ""}
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
