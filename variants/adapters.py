"""Adapter variants: `lora` (a PEFT LoRA adapter on the base) and `qlora` (one trained on, and
evaluated on, the 4-bit NF4 base). The adapters come from `codegen-bench train lora|qlora`; without
`adapter=`, the `codegen` model and the matrix use the adapter of `recipe=` (trainers/recipes.py),
trained on first use."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.variants.artifact import MANIFEST, BaseModel, check_base, read_manifest
from codegen_bench.variants.cache import cached_variant
from codegen_bench.variants.quantize import Nf4
from codegen_bench.variants.registry import register_variant


@dataclass(frozen=True)
class LoraAdapter:
    """adapter: the folder holding adapter_config.json (a `codegen-bench train` artifact)."""

    adapter: str = ""
    merge: bool = False  # fold the adapter into the weights: plain-model speed, no adapter overhead
    recipe: str = "default"  # the training recipe whose adapter is used when `adapter` is empty


@dataclass(frozen=True)
class QLoraAdapter:
    adapter: str = ""
    recipe: str = "default"
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"

    def nf4(self) -> Nf4:
        return Nf4(self.quant_type, self.double_quant, self.compute_dtype)


def adapter_folder(adapter: str | Path, variant: str) -> Path:
    """The adapter's folder, checked before any model is loaded."""
    if not str(adapter):
        raise CodegenBenchError(
            f"variant {variant!r} has no adapter: pass variant.adapter=PATH (from `codegen-bench train "
            f"{variant}`), or use it through the `codegen` model or the matrix, which train and cache "
            "the adapter of variant.recipe (default: default) on first use"
        )
    folder = Path(adapter).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise CodegenBenchError(
            f"variant {variant!r}: adapter={str(adapter)!r} holds no adapter_config.json: pass the folder "
            f"written by `codegen-bench train {variant}` (variant.adapter=PATH)"
        )
    return folder


def _attach(model, folder: Path, base: BaseModel, variant: str):
    from peft import PeftModel

    if (folder / MANIFEST).is_file():
        check_base(read_manifest(folder), folder, base)
    try:
        return PeftModel.from_pretrained(model, str(folder)).eval()
    except (RuntimeError, ValueError, KeyError) as exc:
        # A plain PEFT folder (no manifest) made for another base: peft fails on the first
        # weight whose shape or name differs, with a multi-page message.

        trained_on = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
        first_line = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CodegenBenchError(
            f"variant {variant!r}: adapter {folder} does not fit the base model {base.name_or_path} "
            f"({type(exc).__name__}: {first_line}); it was trained on {trained_on!r}: pass that model "
            "as pretrained=, or train an adapter for this one"
        ) from None


def save_adapter_or_model(model, folder: Path) -> None:
    model.save_pretrained(folder)  # a PeftModel writes only its adapter; a merged model, all weights


def load_lora(folder: Path, base: BaseModel, config: LoraAdapter):
    if (folder / "adapter_config.json").is_file():
        model = _attach(base.load(), folder, base, "lora")
        return model.merge_and_unload() if config.merge else model
    return BaseModel(str(folder), base.load_config).load()  # saved already merged


def load_qlora(adapter: str | Path, base: BaseModel, config: QLoraAdapter):
    folder = adapter_folder(adapter, "qlora")
    # The 4-bit base from the cached nf4 artifact: the fp32 weights are never held (built once).
    model, _ = cached_variant("nf4", base, dataclasses.asdict(config.nf4()))
    return _attach(model, folder, base, "qlora")


@register_variant("lora", LoraAdapter, save=save_adapter_or_model, load=load_lora)
def build_lora(base: BaseModel, config: LoraAdapter):
    """Base model plus a LoRA adapter from our trainer (optionally merged into the weights)."""
    return load_lora(adapter_folder(config.adapter, "lora"), base, config)


@register_variant("qlora", QLoraAdapter, save=save_adapter_or_model, load=load_qlora)
def build_qlora(base: BaseModel, config: QLoraAdapter):
    """A LoRA adapter trained on the NF4 base, evaluated on that same 4-bit base."""
    return load_qlora(config.adapter, base, config)
