"""`backend=vllm`: the `codegen` model's generation and likelihood on vLLM, on NVIDIA GPUs.

    lm_eval --model codegen --model_args backend=vllm,variant=l1-pruned --tasks humaneval_custom ...

Everything but the engine stays ours: the tasks, the prompts (chat forms included), the stop
strings and EOS ids, the prompt budget, the samples file. vLLM gets token ids and sampling settings
and returns text with the stop strings cut off, as our engine does.

What vLLM loads of a variant is decided from its artifact, never from the variant's name, so
third-party variants follow the same rules:
- no artifact (the base model): the model folder.
- an artifact folder holding a transformers model (config.json + weights): that folder. The pruned
  variants are this (dense weights with zeros), so is anything saved already merged.
- an adapter folder (adapter_config.json, as `lora` writes): the base plus the adapter through
  vLLM's LoRA support; with `merge` in its config, the adapter merged into the weights once (cached)
  and loaded as a plain model. An adapter whose config names a 4-bit `quant_type` (as `qlora`'s
  does) was trained on the bitsandbytes 4-bit base, and is served on it.
- bitsandbytes 4-bit weights (`nf4`, and the base of such an adapter): with
  `quantization="bitsandbytes"` when the installed vLLM lists it (vLLM 0.5-0.1x did; 0.33 does not),
  else refused with the reason.
- any other folder without config.json (`int8-dynamic`'s torch dynamic quantization): refused; vLLM
  has no loader for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.engine.generation import GenerationSettings, truncate_at_stop
from codegen_bench.harness.engine.likelihood import ContinuationScore, scored_window
from codegen_bench.harness.engine.protocol import EngineMemory, RowDone, eos_token_ids
from codegen_bench.harness.engine.repetition import first_cut
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.loading import context_length
from codegen_bench.variants.adapters import LoraAdapter, load_lora
from codegen_bench.variants.artifact import BaseModel, staged_folder

log = logging.getLogger(__name__)

BACKENDS = ("hf", "vllm")
# vLLM allocates LoRA buffers for one of these ranks (vllm.config.lora.MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
INSTALL_HINT = "pip install vllm (Linux with an NVIDIA GPU)"


@dataclass(frozen=True)
class VllmSource:
    """What `vllm.LLM` loads: a model folder (or hub id), its tokenizer, and how."""

    model: str
    tokenizer: str
    quantization: str | None = None
    adapter: str | None = None  # a LoRA adapter folder, served with vLLM's LoRA support
    max_lora_rank: int = 0


def check_vllm_available() -> None:
    """Fail in one line, before anything loads, where vLLM cannot run."""
    try:
        import vllm  # noqa: F401
    except ImportError as exc:
        raise CodegenBenchError(
            f"backend=vllm needs the vllm package, which is not importable ({exc}): {INSTALL_HINT}, "
            "or use backend=hf (the default, CPU or GPU)"
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise CodegenBenchError(
            "backend=vllm needs a CUDA GPU and torch sees none: use backend=hf (the default) on this machine"
        )


def vllm_quantization_methods() -> list[str]:
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    return list(QUANTIZATION_METHODS)


def vllm_source(
    folder: Path | None,
    manifest: dict,
    base: BaseModel,
    quantization_methods: Sequence[str],
    merge_lora: Callable[[Path, BaseModel], Path] | None = None,
) -> VllmSource:
    """How vLLM loads the variant whose artifact is `folder` (None: the base model itself)."""
    merge_lora = merge_lora or merged_lora_folder
    tokenizer = base.name_or_path
    variant = manifest.get("variant", "?")
    if folder is None:
        return VllmSource(model=base.name_or_path, tokenizer=tokenizer)
    if (folder / "adapter_config.json").is_file():
        adapter_config = json.loads((folder / "adapter_config.json").read_text())
        if manifest.get("config", {}).get("quant_type"):  # trained on the 4-bit base
            _require_bitsandbytes(variant, quantization_methods)
            return VllmSource(
                model=base.name_or_path,
                tokenizer=tokenizer,
                quantization="bitsandbytes",
                adapter=str(folder),
                max_lora_rank=_lora_rank(adapter_config, folder),
            )
        if manifest.get("config", {}).get("merge"):
            return VllmSource(model=str(merge_lora(folder, base)), tokenizer=tokenizer)
        return VllmSource(
            model=base.name_or_path,
            tokenizer=tokenizer,
            adapter=str(folder),
            max_lora_rank=_lora_rank(adapter_config, folder),
        )
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise CodegenBenchError(
            f"variant {variant!r} ({folder}) is not a transformers model folder (no config.json: its "
            f"weights are in a format of its own, such as torch dynamic int8 modules, which vLLM has no "
            "loader for): evaluate it with backend=hf"
        )
    method = (json.loads(config_path.read_text()).get("quantization_config") or {}).get("quant_method")
    if method == "bitsandbytes":
        _require_bitsandbytes(variant, quantization_methods)
        return VllmSource(model=str(folder), tokenizer=tokenizer, quantization="bitsandbytes")
    # Unquantized, or a method vLLM reads from config.json itself (gptq, awq, fp8, ...).
    return VllmSource(model=str(folder), tokenizer=tokenizer)


def _require_bitsandbytes(variant: str, quantization_methods: Sequence[str]) -> None:
    if "bitsandbytes" not in quantization_methods:
        try:
            installed = metadata.version("vllm")
        except metadata.PackageNotFoundError:
            installed = "(version unknown)"
        raise CodegenBenchError(
            f"variant {variant!r} is bitsandbytes 4-bit, and the installed vLLM {installed} has no "
            "bitsandbytes loader: evaluate it with backend=hf, or install a vLLM that lists "
            "bitsandbytes among its quantization methods"
        )


def _lora_rank(adapter_config: dict, folder: Path) -> int:
    r = int(adapter_config.get("r", 0))
    for rank in VLLM_LORA_RANKS:
        if rank >= r:
            return rank
    raise CodegenBenchError(
        f"adapter {folder} has rank r={r}, above vLLM's largest LoRA rank {VLLM_LORA_RANKS[-1]}: "
        "use variant.merge=true to serve it merged, or backend=hf"
    )


def merged_lora_folder(adapter: Path, base: BaseModel) -> Path:
    """The base with the adapter folded in, saved once as a transformers folder in the cache (keyed
    by the base's checksum and the adapter's weights) for vLLM to load as a plain model."""
    digest = hashlib.sha256((adapter / "adapter_model.safetensors").read_bytes()).hexdigest()[:12]
    folder = cache_dir() / "merged-lora" / base.fingerprint()[:12] / digest
    if (folder / "config.json").is_file():
        return folder
    log.info("vllm: merging adapter %s into %s once, into %s", adapter, base.name_or_path, folder)
    # On the CPU: the GPU is vLLM's.
    cpu_base = BaseModel(base.name_or_path, _on_cpu(base.load_config))
    model = load_lora(adapter, cpu_base, LoraAdapter(adapter=str(adapter), merge=True))
    with staged_folder(folder) as staging:
        model.save_pretrained(staging)
    return folder


def _on_cpu(load_config):
    return replace(load_config, device="cpu")


def vllm_engine(
    folder: Path | None,
    manifest: dict,
    base: BaseModel,
    tokenizer,
    *,
    max_length: int | None,
    seed: int,
    gpu_memory_utilization: float,
    tensor_parallel_size: int,
) -> VllmEngine:
    """The engine for the variant whose artifact is `folder` (None: the base model itself);
    `tokenizer` is the one the lm-eval model prompts with (its EOS ends generations too)."""
    import torch
    from transformers import AutoConfig, GenerationConfig

    torch.cuda.empty_cache()  # a variant just built here leaves the GPU to vLLM
    source = vllm_source(folder, manifest, base, vllm_quantization_methods())
    load = base.load_config
    model_config = AutoConfig.from_pretrained(
        base.name_or_path, revision=load.revision, trust_remote_code=load.trust_remote_code
    )
    try:
        generation_config = GenerationConfig.from_pretrained(base.name_or_path, revision=load.revision)
    except OSError:  # no generation_config.json: the tokenizer's EOS alone
        generation_config = GenerationConfig()
    return VllmEngine(
        source,
        dtype=load.dtype,
        max_length=max_length or context_length(model_config),
        seed=seed,
        gpu_memory_utilization=gpu_memory_utilization,
        tensor_parallel_size=tensor_parallel_size,
        revision=load.revision,
        trust_remote_code=load.trust_remote_code,
        eos_token_ids=eos_token_ids(generation_config, tokenizer),
    )


class VllmEngine:
    """One `vllm.LLM` for a `codegen` model: generation and continuation scoring on token ids."""

    def __init__(
        self,
        source: VllmSource,
        *,
        dtype: str,
        max_length: int,
        seed: int,
        gpu_memory_utilization: float,
        tensor_parallel_size: int,
        revision: str | None = None,
        trust_remote_code: bool = False,
        eos_token_ids: set[int] | None = None,
    ) -> None:
        from vllm import LLM

        kwargs = {}
        if source.adapter:
            from vllm.lora.request import LoRARequest

            kwargs.update(enable_lora=True, max_lora_rank=source.max_lora_rank, max_loras=1)
            self.lora_request = LoRARequest("adapter", 1, source.adapter)
        else:
            self.lora_request = None
        if source.quantization:
            kwargs["quantization"] = source.quantization
        self.source = source
        self.dtype_name = dtype
        self.device_name = "cuda (vLLM)"
        self.prepacked_linears = 0  # our CPU engine's optimisation: not vLLM's
        self.max_length = max_length
        self._eos_token_ids = set(eos_token_ids or ())
        log.info("vllm: loading %s", source)
        self.llm = LLM(
            model=source.model,
            tokenizer=source.tokenizer,
            # Our "auto" is bf16 on a GPU (vLLM's would be fp16 for a float32 checkpoint).
            dtype="bfloat16" if dtype == "auto" else dtype,
            max_model_len=max_length,
            seed=seed,
            gpu_memory_utilization=gpu_memory_utilization,
            tensor_parallel_size=tensor_parallel_size,
            revision=revision,
            trust_remote_code=trust_remote_code,
            **kwargs,
        )

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        settings: GenerationSettings,
        eos_token_ids: set[int],
        on_row_done: RowDone,
    ) -> None:
        """Generate for every prompt (vLLM batches and schedules them itself), then report each row
        as `on_row_done(row, text, n_tokens, repeat_period)`, like `generation.generate`. vLLM cannot
        end a row on a repetition, so a repeating row is cut afterwards at the token where
        `generation.generate` would have ended it: the same text, without the time saved."""
        from vllm import SamplingParams, TokensPrompt

        params = SamplingParams(
            n=1,
            max_tokens=settings.max_new_tokens,
            # Greedy is temperature 0 in vLLM. Sampled rows draw from the engine's seeded generator:
            # no per-request seed, or the n copies of a pass@k prompt would be identical.
            temperature=settings.temperature if settings.do_sample else 0.0,
            top_p=settings.top_p if settings.do_sample else 1.0,
            stop=list(settings.stop_strings),
            stop_token_ids=sorted(eos_token_ids),
            include_stop_str_in_output=False,
            skip_special_tokens=True,
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(ids)) for ids in prompts],
            params,
            use_tqdm=False,
            lora_request=self.lora_request,
        )
        for row, output in enumerate(outputs):
            completion = output.outputs[0]
            cut = (
                first_cut(completion.token_ids, settings.repetition_cut) if settings.repetition_cut else None
            )
            if cut is None:
                on_row_done(row, completion.text, len(completion.token_ids), None)
                continue
            kept, period = cut
            text = self.llm.get_tokenizer().decode(completion.token_ids[:kept], skip_special_tokens=True)
            on_row_done(row, truncate_at_stop(text, settings.stop_strings), kept, period)

    def score(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int
    ) -> list[ContinuationScore]:
        """For each (context ids, continuation ids): the continuation's summed log-prob and whether
        each of its tokens is the argmax, from vLLM's prompt log-probs, on the same tokens as our
        engine (`likelihood.scored_window`)."""
        from vllm import SamplingParams, TokensPrompt

        rows = [scored_window(context, continuation, max_length) for context, continuation in pairs]
        # prompt_logprobs=1: each position holds the prompt token's log-prob and vocabulary rank.
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1)
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=whole) for whole, _ in rows],
            params,
            use_tqdm=False,
            lora_request=self.lora_request,
        )
        return [
            ContinuationScore(*continuation_logprob(output.prompt_logprobs, whole, n_cont))
            for output, (whole, n_cont) in zip(outputs, rows, strict=True)
        ]

    def memory(self) -> EngineMemory:
        # vLLM holds the model in processes of its own: this process's counters say nothing of it.
        return EngineMemory(None, None, None)

    def eos_token_ids(self) -> set[int]:
        return set(self._eos_token_ids)


def continuation_logprob(prompt_logprobs, token_ids: Sequence[int], n_cont: int) -> tuple[float, bool]:
    """Sum and greediness of the last `n_cont` tokens' log-probs. vLLM's `prompt_logprobs[i]` maps
    token ids to `Logprob(logprob, rank)` for position i given the tokens before it (None at 0)."""
    total, greedy = 0.0, True
    for position in range(len(token_ids) - n_cont, len(token_ids)):
        entry = prompt_logprobs[position][token_ids[position]]
        total += entry.logprob
        greedy = greedy and entry.rank == 1
    return total, greedy
