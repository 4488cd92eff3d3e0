"""Adapter variants: `lora` (a PEFT LoRA adapter on the base) and `qlora` (one trained on, and
evaluated on, the 4-bit NF4 base). The adapters come from `codegen-bench train lora|qlora`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.variants.artifact import BaseModel, check_base, read_manifest
from codegen_bench.variants.quantize import Nf4
from codegen_bench.variants.registry import register_variant


@dataclass(frozen=True)
class LoraAdapter:
    """adapter: the folder holding adapter_config.json (a `codegen-bench train` artifact)."""

    adapter: str = ""
    merge: bool = False  # fold the adapter into the weights: plain-model speed, no adapter overhead


@dataclass(frozen=True)
class QLoraAdapter:
    adapter: str = ""
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "float32"

    def nf4(self) -> Nf4:
        return Nf4(self.quant_type, self.double_quant, self.compute_dtype)


def _attach(model, adapter: str | Path, base: BaseModel, variant: str):
    from peft import PeftModel

    folder = Path(adapter).expanduser()
    if not (folder / "adapter_config.json").is_file():
        raise CodegenBenchError(
            f"variant {variant!r}: adapter={str(adapter)!r} holds no adapter_config.json: pass the folder "
            f"written by `codegen-bench train {variant}` (variant.{'adapter'}=PATH)"
        )
    if (folder / "variant.json").is_file():
        check_base(read_manifest(folder), folder, base)
    try:
        return PeftModel.from_pretrained(model, str(folder)).eval()
    except (RuntimeError, ValueError, KeyError) as exc:
        # A plain PEFT folder (no variant.json) made for another base: peft fails on the first
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
    model = base.load(quantization_config=config.nf4().to_transformers())
    return _attach(model, adapter, base, "qlora")


@register_variant("lora", LoraAdapter, save=save_adapter_or_model, load=load_lora)
def build_lora(base: BaseModel, config: LoraAdapter):
    """Base model plus a LoRA adapter from our trainer (optionally merged into the weights)."""
    return load_lora(Path(config.adapter).expanduser(), base, config)


@register_variant("qlora", QLoraAdapter, save=save_adapter_or_model, load=load_qlora)
def build_qlora(base: BaseModel, config: QLoraAdapter):
    """A LoRA adapter trained on the NF4 base, evaluated on that same 4-bit base."""
    return load_qlora(config.adapter, base, config)
