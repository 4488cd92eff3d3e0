"""Our weight-transform variants: base, nf4, int8-dynamic, l1-pruned, wanda-pruned (adapters: adapters.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codegen_bench.harness.loading import load_tokenizer
from codegen_bench.variants.artifact import BaseModel
from codegen_bench.variants.calibration import calibration_batches
from codegen_bench.variants.prune import (
    L1Unstructured,
    Wanda,
    check_l1_prunable,
    check_wanda_prunable,
    prune_,
    wanda_prune_,
)
from codegen_bench.variants.quantize import (
    Int8Dynamic,
    Nf4,
    check_int8_quantizable,
    load_int8_dynamic,
    quantize_,
    save_int8_dynamic,
)
from codegen_bench.variants.registry import register_variant


def save_pretrained(model, folder: Path) -> None:
    model.save_pretrained(folder)  # safetensors; bitsandbytes 4-bit layers serialize their quant state


def load_pretrained(folder: Path, base: BaseModel, config):
    return BaseModel(str(folder), base.load_config).load()


@dataclass(frozen=True)
class BaseConfig:
    """The model as loaded; its dtype is the `dtype` model argument."""


@register_variant("base", BaseConfig, save=save_pretrained, load=load_pretrained)
def build_base(base: BaseModel, config: BaseConfig):
    """The base model, unchanged."""
    return base.load()


@register_variant("nf4", Nf4, save=save_pretrained, load=load_pretrained)
def build_nf4(base: BaseModel, config: Nf4):
    """bitsandbytes 4-bit NormalFloat weights (double quantization by default)."""
    return base.load(quantization_config=config.to_transformers())


@register_variant(
    "l1-pruned", L1Unstructured, save=save_pretrained, load=load_pretrained, check=check_l1_prunable
)
def build_l1_pruned(base: BaseModel, config: L1Unstructured):
    """Post-training L1 unstructured pruning of the decoder's Linear weights, made permanent."""
    return prune_(base.load(), config)


@register_variant(
    "wanda-pruned", Wanda, save=save_pretrained, load=load_pretrained, check=check_wanda_prunable
)
def build_wanda_pruned(base: BaseModel, config: Wanda):
    """Activation-aware (Wanda) unstructured pruning, calibrated on standard-library code."""
    tokenizer = load_tokenizer(base.name_or_path, base.load_config)
    batches = calibration_batches(
        tokenizer, config.calibration_samples, config.calibration_seq_len, config.seed
    )
    return wanda_prune_(base.load(), config, batches)


@register_variant(
    "int8-dynamic",
    Int8Dynamic,
    save=save_int8_dynamic,
    load=load_int8_dynamic,
    check=check_int8_quantizable,
)
def build_int8_dynamic(base: BaseModel, config: Int8Dynamic):
    """int8 Linear weights (down_proj kept float by default), activations quantized at run time."""
    return quantize_(base.load(), config)
