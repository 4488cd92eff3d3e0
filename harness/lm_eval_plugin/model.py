"""`codegen`: our lm-eval model. Requests in, prompt token ids to an engine, results out.

    lm_eval --model codegen --tasks humaneval_custom --confirm_run_unsafe_code

Chat prompting: for an instruct model (its tokenizer has a chat template; `chat=auto`, the default)
each generation request is sent as a chat turn. A task shapes that turn through two optional fields
of its docs: `chat_user` (the user message; default: the request's text) and `chat_assistant_prefix`
(text the assistant turn starts with, e.g. an opened code fence holding the function's signature).
They live in the docs, not in `generation_kwargs`, so lm-eval's `hf` model can run the same task
(it would pass unknown generation kwargs on to `generate` and fail). lm-eval's own
`--apply_chat_template` is honoured: its rendered history (system instruction included) is
re-rendered with the doc's chat fields applied to the last user turn, so both paths agree.

Distribution shift: `kl_reference=base` (any variant spec) loads that variant beside the one being
evaluated, and every loglikelihood request also reports how far this model's next-token
distributions are from the reference's on the continuation's tokens (harness/engine/likelihood.py);
`humaneval_nll` turns that into `kl_per_token` and `top1_agreement`. `kl_cache=DIR` keeps the
reference's log-probabilities at the scored positions in DIR (float32 over the vocabulary: its size
for humaneval_nll is in results/measurements/kl-reference-cache/README.md), in a subfolder per
reference model (kl_reference.py): a run with `kl_reference=X` reads them there instead of rerunning
X where a run left them, and a run of X itself (no `kl_reference`) leaves its own there.
`codegen-bench matrix` uses it within a run.

Engines: this class builds prompts and reads results; the work goes to an engine
(harness/engine/protocol.py), which `build_engine` makes from the parsed arguments (`CodegenArgs`):
`backend=hf` (the default) is our continuous-batching engine on transformers models, CPU or GPU
(harness/engine/hf.py); `backend=vllm` hands the same token ids and stop settings to vLLM on a GPU
(harness/engine/vllm.py).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field, fields, replace
from importlib.metadata import version

import lm_eval.models  # noqa: F401  (registers lm-eval's built-ins before ours: see hook.py)
import torch
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.utils import simple_parse_args_string
from tqdm import tqdm

from codegen_bench.harness.config_args import config_from
from codegen_bench.harness.distributed import gather_object, launched_world_size, make_accelerator
from codegen_bench.harness.engine.generation import (
    GenerationSettings,
    GenerationStats,
)
from codegen_bench.harness.engine.hf import HfEngine
from codegen_bench.harness.engine.likelihood import ScoringStats, rolling_windows
from codegen_bench.harness.engine.protocol import Engine
from codegen_bench.harness.engine.repetition import DEFAULT_REPETITION_CUT
from codegen_bench.harness.engine.vllm import BACKENDS, check_vllm_available, vllm_engine
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.gen_kwargs import generation_settings
from codegen_bench.harness.lm_eval_plugin.kl_reference import wire_kl_reference
from codegen_bench.harness.loading import (
    LoadConfig,
    check_load_settings,
    context_length,
    load_tokenizer,
    model_name,
    resolve_pretrained,
)
from codegen_bench.trainers.recipes import with_recipe_adapter
from codegen_bench.variants import BaseModel, check_variant_spec, load_variant, resolve_artifact
from codegen_bench.variants.artifact import base_fingerprint, weights_size_bytes
from codegen_bench.variants.quantize import dequantize_4bit_
from codegen_bench.variants.spec import VARIANT_CONFIG_PREFIX  # variant.sparsity=0.3

log = logging.getLogger(__name__)

AUTO_TRUE_FALSE = ("auto", "true", "false")
TRUE_FALSE = ("true", "false")
# The model_args that take one of a few words (true/false ones included: lm-eval hands them over
# as bools, which `_as_bool_choice` turns back into words).
CHOICES = {
    "backend": BACKENDS,
    "prepack": AUTO_TRUE_FALSE,
    "cut_repetitions": TRUE_FALSE,
    "dequantize_4bit": TRUE_FALSE,
    "chat": AUTO_TRUE_FALSE,
    "trust_remote_code": TRUE_FALSE,
}
# Sequences generated at once, for `--model codegen` and `codegen-bench matrix` alike: on a CPU the
# decode streams every weight once per step whatever the rows, and 32 rows is where more stop paying
# (results/measurements/decode-batch-64/).
DEFAULT_BATCH_SIZE = 32
DEFAULT_BACKEND = "hf"


def uses_hf_engine(model_args) -> bool:
    """Whether `model_args` (a mapping of --model_args) run on our engine: `backend=hf`, the default."""
    return str(model_args.get("backend", DEFAULT_BACKEND)).lower() == DEFAULT_BACKEND


def _as_bool_choice(value, name: str, choices) -> str:
    text = str(value).lower()
    if text not in choices:
        raise CodegenBenchError(f"{name}={value!r} is not valid: use one of {', '.join(choices)}")
    return text


def _as_batch_size(value) -> int:
    # lm-eval passes "auto" / "auto:N" through; on CPU a fixed batch is what the memory-bound decode wants.
    if isinstance(value, str) and value.startswith("auto"):
        return DEFAULT_BATCH_SIZE
    try:
        size = int(value)
    except (TypeError, ValueError):
        size = 0
    if size < 1:
        raise CodegenBenchError(f"batch_size={value!r} is not valid: use a positive integer or auto")
    return size


@dataclass(frozen=True)
class CodegenArgs:
    """The `--model_args` of `--model codegen`, checked and converted before anything is loaded.

    The field order is the order the error for an unknown argument lists them in."""

    pretrained: str | None = None  # a model folder or hub id; None: the default model
    variant: str = "base"  # a variant name or artifact folder (variants/)
    # variant.<config key>=value: the variant's config (variant.sparsity=0.3).
    variant_overrides: dict = field(
        default_factory=dict, metadata={"model_arg": VARIANT_CONFIG_PREFIX + "<config key>"}
    )
    dtype: str = "float32"
    batch_size: int = DEFAULT_BATCH_SIZE
    max_length: int | None = None  # None: the model's context length
    device: str = "auto"
    chat: str = "auto"  # auto: chat turns where the tokenizer has a chat template; true; false
    seed: int = 1234
    revision: str | None = None
    trust_remote_code: bool = False
    prepack: str = "auto"  # oneDNN-prepacked linears (harness/engine/prepack.py): auto, true, false
    backend: str = DEFAULT_BACKEND  # the engine: one of engine.vllm.BACKENDS
    gpu_memory_utilization: float = 0.9  # backend=vllm: the share of the GPU vLLM takes
    tensor_parallel_size: int = 1  # backend=vllm: GPUs one model is split over
    kl_reference: str | None = None  # a variant to compare next-token distributions with (base)
    kl_cache: str | None = None  # a folder keeping the reference's log-probs between runs
    # End a generation whose last tokens repeat one short pattern (harness/engine/repetition.py).
    cut_repetitions: bool = True
    # bitsandbytes 4-bit layers as float Linears dequantized once (variants/quantize.py): quality at
    # float speed; the variant's own speed and memory are the 4-bit kernels' (the latency suite).
    dequantize_4bit: bool = False

    @staticmethod
    def known() -> list[str]:
        """The model_args `--model codegen` takes, as a user types them."""
        return [f.metadata.get("model_arg", f.name) for f in fields(CodegenArgs)]

    @classmethod
    def parse(cls, model_args: dict) -> CodegenArgs:
        """`model_args` as lm-eval passes them (strings, or the ints and bools it made of them)."""
        given = dict(model_args)
        given.pop("max_batch_size", None)  # passed by lm-eval's CLI; unused
        overrides = {
            key[len(VARIANT_CONFIG_PREFIX) :]: given.pop(key)
            for key in list(given)
            if key.startswith(VARIANT_CONFIG_PREFIX)
        }
        unknown = sorted(set(given) - {f.name for f in fields(cls) if f.name != "variant_overrides"})
        if unknown:
            raise CodegenBenchError(
                f"unknown model_args {unknown} for --model codegen: known are {', '.join(cls.known())}"
            )
        raw = {f.name: f.default for f in fields(cls) if f.name != "variant_overrides"} | given
        # Checked in this order: the first bad argument is the one reported.
        raw["batch_size"] = _as_batch_size(raw["batch_size"])
        for name, choices in CHOICES.items():
            raw[name] = _as_bool_choice(raw[name], name, choices)
        args = config_from(cls, raw, owner="--model codegen: model_args")
        args = replace(args, variant_overrides=overrides)
        args.check_ranges()
        return args

    def check_ranges(self) -> None:
        """Values of the right type that no model could run with."""
        check_load_settings(self.dtype, self.device)
        if not self.variant.strip():
            raise CodegenBenchError(
                "variant='' is empty: name a variant (codegen-bench variants) or an artifact folder"
            )
        if self.max_length is not None and self.max_length < 1:
            raise CodegenBenchError(
                f"max_length={self.max_length} is not valid: give a positive number of tokens, or leave it "
                "out for the model's context length"
            )
        if self.tensor_parallel_size < 1:
            raise CodegenBenchError(
                f"tensor_parallel_size={self.tensor_parallel_size} is not valid: give a number of GPUs >= 1"
            )
        if not 0 < self.gpu_memory_utilization <= 1:
            raise CodegenBenchError(
                f"gpu_memory_utilization={self.gpu_memory_utilization} is not valid: give a share in "
                "(0, 1], e.g. 0.9"
            )


def check_backend(args: CodegenArgs) -> None:
    """Refuse, before anything loads, what the chosen engine cannot do or run on."""
    if args.backend != "vllm":
        return
    if args.prepack == "true":
        raise CodegenBenchError(
            "prepack=true applies to backend=hf (our CPU engine): drop it with backend=vllm"
        )
    if launched_world_size() > 1:
        raise CodegenBenchError(
            "backend=vllm under accelerate launch: vLLM runs its own workers; run one process and give "
            "tensor_parallel_size=N to split the model over N GPUs"
        )
    check_vllm_available()
    if args.dequantize_4bit:
        raise CodegenBenchError(
            "dequantize_4bit is for backend=hf: vLLM runs 4-bit weights with its own kernels; drop it"
        )
    if args.kl_reference or args.kl_cache:
        raise CodegenBenchError(
            "kl_reference and kl_cache need the next-token distributions, which backend=vllm does "
            "not return: use backend=hf"
        )


@dataclass
class LoadedEngine:
    """An engine built for a `codegen` model, and what the model reports of it."""

    engine: Engine
    model: torch.nn.Module | None  # None: vLLM loads the artifact folder in its own process
    variant_manifest: dict
    max_length: int
    spec: str  # the variant spec loaded (a recipe's adapter folder where one was added)
    dequantized_linears: int = 0  # 4-bit layers evaluated as float Linears (dequantize_4bit=true)


def build_engine(args: CodegenArgs, base: BaseModel, tokenizer) -> LoadedEngine:
    """Load the variant `args` name onto the engine `args.backend` names."""
    # lora/qlora without an adapter: the recipe's, trained into the cache on first use.
    spec, overrides = with_recipe_adapter(args.variant, args.variant_overrides, base)
    if args.backend == "vllm":
        folder, manifest = resolve_artifact(spec, base, overrides)
        engine = vllm_engine(
            folder,
            manifest,
            base,
            tokenizer,
            max_length=args.max_length,
            seed=args.seed,
            gpu_memory_utilization=args.gpu_memory_utilization,
            tensor_parallel_size=args.tensor_parallel_size,
        )
        return LoadedEngine(engine, None, manifest, engine.max_length, spec)
    model, manifest = load_variant(spec, base, overrides)
    dequantized = dequantize_4bit_(model) if args.dequantize_4bit else 0
    kl = wire_kl_reference(
        base,
        spec,
        reference=args.kl_reference,
        kl_cache=args.kl_cache,
        prepack=args.prepack,
        is_plain_variant=not (overrides or dequantized),
    )
    engine = HfEngine(
        model,
        tokenizer,
        batch_size=args.batch_size,
        seed=args.seed,
        prepack=args.prepack,
        load_reference=kl.load_reference,
        reference_log_probs=kl.reference_log_probs,
        keep_log_probs=kl.keep_log_probs,
    )
    max_length = args.max_length or context_length(model.config)
    return LoadedEngine(engine, model, manifest, max_length, spec, dequantized)


def chat_prompting(chat: str, tokenizer, pretrained: str) -> bool:
    """Whether generation requests are sent as chat turns, for `chat=` auto, true or false."""
    has_template = bool(getattr(tokenizer, "chat_template", None))
    if chat == "true" and not has_template:
        raise CodegenBenchError(
            f"chat=true but the tokenizer of {pretrained} has no chat template: use chat=false"
        )
    return chat == "true" or (chat == "auto" and has_template)


def merged_model_args(model_args: dict, from_cli: dict | None) -> dict:
    """`--model_args` with what lm-eval's CLI adds on its own (batch_size, max_batch_size, device; None
    where unset): lm-eval passes both to the model as keyword arguments, and a key in both would be
    a TypeError. The CLI always passes batch_size (1 unless --batch_size is given) and device
    (cuda:0 unless --device is given), so those belong on its command line."""
    extra = {key: value for key, value in (from_cli or {}).items() if value is not None}
    for key in sorted(set(model_args) & set(extra)):
        if str(model_args[key]) != str(extra[key]):
            raise CodegenBenchError(
                f"{key} is given twice: {key}={model_args[key]} in --model_args and {extra[key]} from "
                f"lm-eval's --{key} (which it passes even when not given): give it once, as "
                f"--{key} {model_args[key]}"
            )
    return {**model_args, **extra}


@register_model("codegen")
class CodegenLM(TemplateLM):
    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict, additional_config: dict | None = None) -> CodegenLM:
        return cls(**merged_model_args(dict(arg_dict), additional_config))

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> CodegenLM:
        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    def __init__(self, **model_args) -> None:
        """`model_args`: the fields of `CodegenArgs` (`--model_args` and lm-eval's batch_size, device)."""
        super().__init__()
        args = CodegenArgs.parse(model_args)
        check_backend(args)
        self.batch_size = args.batch_size
        # Not `self.backend`: lm-eval's TemplateLM reads that ("causal") to decide how a context and
        # its continuation are tokenized for loglikelihood.
        self.engine_name = args.backend
        self.kl_reference = args.kl_reference
        self.repetition_cut = DEFAULT_REPETITION_CUT if args.cut_repetitions else None
        config = self._join_launched_processes(args)
        # Before anything is loaded or provisioned: a typo in the variant fails in a second.
        check_variant_spec(args.variant, args.variant_overrides)
        if args.kl_reference:
            check_variant_spec(args.kl_reference, {})
        self.pretrained = resolve_pretrained(config.pretrained)
        self.tokenizer = load_tokenizer(self.pretrained, config)
        loaded = build_engine(args, BaseModel(self.pretrained, config), self.tokenizer)
        self.engine: Engine = loaded.engine
        self.model = loaded.model
        self.variant_manifest = loaded.variant_manifest
        self.dequantized_linears = loaded.dequantized_linears
        self._max_length = loaded.max_length
        self.variant = self.variant_manifest["variant"]
        self.chat = chat_prompting(args.chat, self.tokenizer, self.pretrained)
        self.eos_token_ids = self.engine.eos_token_ids()
        self._chat_histories: dict[str, list[dict]] = {}
        self.generation_stats = GenerationStats()
        self.scoring_stats = ScoringStats()
        # perf_counter() when model work (generation, scoring) first began and last ended since the
        # matrix cleared it: what a cell spends before its model work (the task's documents and
        # prompts) and after it (execution, metrics).
        self.model_span: tuple[float, float] | None = None
        memory = self.engine.memory()
        self.weight_memory_bytes = memory.weight_memory_bytes
        self.loaded_memory_bytes = memory.loaded_memory_bytes
        log.info(
            "codegen: %s variant=%s backend=%s dtype=%s device=%s chat=%s batch_size=%d prepacked_linears=%d",
            self.pretrained,
            loaded.spec,
            self.engine_name,
            self.engine.dtype_name,
            self.engine.device_name,
            self.chat,
            self.batch_size,
            self.engine.prepacked_linears,
        )

    def _join_launched_processes(self, args: CodegenArgs) -> LoadConfig:
        """Under `accelerate launch`: this process's rank, and its own device (GPU i for rank i).
        The load config, with that device."""
        device = args.device
        self.accelerator = make_accelerator()
        if self.accelerator is not None:
            self._rank = self.accelerator.process_index
            self._world_size = self.accelerator.num_processes
            if device == "auto" or device.startswith("cuda"):
                accelerator_device = self.accelerator.device
                device = "cpu" if accelerator_device.type == "cpu" else str(accelerator_device)
        return LoadConfig(
            pretrained=args.pretrained,
            dtype=args.dtype,
            device=device,
            revision=args.revision,
            trust_remote_code=args.trust_remote_code,
        )

    # ---- lm-eval's TemplateLM contract -------------------------------------------------------

    # Data parallelism: lm-eval shards the documents by rank and calls these to synchronise.
    def all_gather(self, tensor):
        return tensor if self.accelerator is None else self.accelerator.gather(tensor)

    def gather_object(self, obj, dst: int = 0):
        if self.accelerator is None:
            return [obj]
        return gather_object(obj, self.world_size, self.rank, dst)

    def barrier(self) -> None:
        if self.accelerator is not None:
            self.accelerator.wait_for_everyone()

    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs) -> list[int]:
        return self.tokenizer.encode(string, add_special_tokens=bool(add_special_tokens))

    def apply_chat_template(
        self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True
    ) -> str:
        rendered = self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )
        self._chat_histories[rendered] = chat_history
        return rendered

    def _loglikelihood_tokens(
        self, requests, disable_tqdm: bool = False, **kwargs
    ) -> list[tuple[float, bool]]:
        # Longest first, so a batch holds similar lengths and any out-of-memory shows up at once.
        order = sorted(range(len(requests)), key=lambda i: -len(requests[i][1]) - len(requests[i][2]))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        for start in tqdm(range(0, len(order), self.batch_size), disable=disable_tqdm, desc="loglikelihood"):
            batch = order[start : start + self.batch_size]
            pairs = [(requests[i][1], requests[i][2]) for i in batch]
            for i, result in zip(batch, self._score(pairs), strict=True):
                results[i] = result
                self.cache_hook.add_partial("loglikelihood", requests[i][0], result)
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        results = []
        for request in tqdm(requests, disable=disable_tqdm, desc="loglikelihood_rolling"):
            (text,) = request.args
            windows = rolling_windows(self.tok_encode(text), self.prefix_token_id, self.max_length)
            total = 0.0
            for start in range(0, len(windows), self.batch_size):
                scored = self._score(windows[start : start + self.batch_size])
                total += sum(logprob for logprob, _ in scored)
            results.append(total)
            self.cache_hook.add_partial("loglikelihood_rolling", (text,), total)
        return results

    def _note_model_work(self, started: float, ended: float) -> None:
        self.model_span = (self.model_span[0] if self.model_span else started, ended)

    def _score(self, pairs) -> list:
        started = time.perf_counter()
        scores = self.engine.score(pairs, self.max_length)
        ended = time.perf_counter()
        self._note_model_work(started, ended)
        self.scoring_stats.seconds += ended - started
        self.scoring_stats.add(pairs, scores, self.max_length)
        return scores

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        prepared = [self.prepare_generation(*request.args, doc=request.doc) for request in requests]
        # Requests with the same settings are generated together, `batch_size` rows at a time, a
        # finished row's slot going to the next waiting request (continuous batching).
        groups: dict[GenerationSettings, list[int]] = defaultdict(list)
        for i, (_, settings) in enumerate(prepared):
            groups[settings].append(i)
        results: list[str | None] = [None] * len(requests)
        stats = self.generation_stats
        with tqdm(total=len(requests), disable=disable_tqdm, desc="generate_until") as progress:
            for settings, indices in groups.items():
                prompts = [prepared[i][0] for i in indices]
                # The clock readings of the model's span (_note_model_work) are the generation
                # seconds' too, so that a cell's span covers them exactly.
                generating = time.perf_counter()
                started = generating - stats.seconds

                def row_done(
                    row: int,
                    text: str,
                    n_tokens: int,
                    repeat_period: int | None,
                    indices=indices,
                    started=started,
                ) -> None:
                    # Stored at once: with --use_cache an interrupted run keeps every finished row.
                    i = indices[row]
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                    stats.requests += 1
                    stats.tokens += n_tokens
                    stats.cut_repeating += repeat_period is not None
                    stats.prompt_tokens += len(prepared[i][0])
                    progress.set_postfix_str(f"{stats.tokens / (time.perf_counter() - started):.1f} tok/s")
                    progress.update(1)

                self.engine.generate(prompts, settings, self.eos_token_ids, on_row_done=row_done)
                generated = time.perf_counter()
                self._note_model_work(generating, generated)
                stats.seconds = generated - started
        if requests:
            log.info(
                "codegen: generated %d tokens for %d requests in %.1f s: %.2f tokens/s",
                stats.tokens,
                stats.requests,
                stats.seconds,
                stats.tokens_per_second,
            )
        return results

    # ---- helpers ------------------------------------------------------------------------------

    def prepare_generation(
        self, context: str, gen_kwargs: dict, doc: dict | None = None
    ) -> tuple[list[int], GenerationSettings]:
        """A generation request's prompt token ids (chat form applied, cut to the room `max_gen_toks`
        leaves) and its settings: what every engine gets."""
        settings = generation_settings(gen_kwargs, self.repetition_cut)
        prompt = self.prompt_text(context, doc)
        ids = self.tok_encode(prompt)
        budget = self.max_length - settings.max_new_tokens
        if budget < 1:
            raise CodegenBenchError(
                f"max_gen_toks={settings.max_new_tokens} leaves no room for the prompt in "
                f"max_length={self.max_length}: raise max_length or lower max_gen_toks"
            )
        return ids[-budget:], settings

    def prompt_text(self, context: str, doc: dict | None = None) -> str:
        """The text a generation request becomes: `context` as is with chat off, else the chat turn
        the task's doc shapes (`chat_user`, `chat_assistant_prefix`: see the module's docstring),
        with lm-eval's own chat history where `--apply_chat_template` rendered `context`."""
        doc = doc if isinstance(doc, dict) else {}
        history = self._chat_histories.get(context)
        if history is None and not self.chat:
            return context
        messages = [dict(m) for m in (history or [{"role": "user", "content": context}])]
        if messages[-1]["role"] != "user":
            # lm-eval already opened the assistant turn (a task's gen_prefix): keep it as is.
            return context
        if doc.get("chat_user"):
            messages[-1]["content"] = doc["chat_user"]
        rendered = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return rendered + doc.get("chat_assistant_prefix", "")

    def get_model_info(self) -> dict:
        if not hasattr(self, "_base_identity"):  # read once: hashing a folder's weights takes seconds
            self._base_identity = (base_fingerprint(self.pretrained), weights_size_bytes(self.pretrained))
        return {
            "pretrained": model_name(self.pretrained),
            "pretrained_sha256": self._base_identity[0],
            "base_size_on_disk_bytes": self._base_identity[1],
            "variant": self.variant,
            "variant_config": self.variant_manifest.get("config"),
            "kl_reference": self.kl_reference,
            "dtype": self.engine.dtype_name,
            "backend": self.engine_name,
            "chat": self.chat,
            "prepacked_linears": self.engine.prepacked_linears,
            # 4-bit layers evaluated as float Linears dequantized once (dequantize_4bit=true).
            "dequantized_linears": self.dequantized_linears,
            "codegen_bench_version": version("codegen-bench"),
            # What the variant costs on disk and how sparse it is, from its manifest (None for base).
            "variant_size_on_disk_bytes": self.variant_manifest.get("size_on_disk_bytes"),
            # None for base and for artifacts built before manifests recorded it.
            "variant_weights_sha256": self.variant_manifest.get("weights_sha256"),
            "variant_sparsity": (self.variant_manifest.get("sparsity") or {}).get("total"),
            "variant_training": training_summary(self.variant_manifest),
            "generation": self.generation_stats.as_dict(),
            "scoring": self.scoring_stats.as_dict(),
            "weight_memory_bytes": self.weight_memory_bytes,
            "loaded_memory_bytes": self.loaded_memory_bytes,
            "peak_memory_bytes": self.engine.memory().peak_memory_bytes,
        }


def training_summary(manifest: dict) -> dict | None:
    """How an adapter variant was trained, from its manifest: what a results record keeps of it."""
    training = manifest.get("training")
    if not training:
        return None
    metrics = training.get("metrics") or {}
    throughput = metrics.get("throughput") or {}
    return {
        "recipe": training.get("recipe"),
        "data_sha256": (training.get("data") or {}).get("sha256"),
        "examples": training.get("examples"),
        "steps": training.get("steps"),
        "train_tokens": metrics.get("train_tokens"),
        "train_runtime_s": metrics.get("train_runtime_s"),
        "processed_tokens_per_s": throughput.get("processed_tokens_per_s"),
        "roofline_fraction": throughput.get("roofline_fraction"),
        "validation_loss": metrics.get("validation_loss"),
        "test_loss": metrics.get("test_loss"),
    }
