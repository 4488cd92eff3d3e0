"""Post-training pruning, torchao-style: a frozen config plus one verb, `prune_(model, config)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import prune

from codegen_bench.harness.errors import CodegenBenchError


@dataclass(frozen=True)
class L1Unstructured:
    """Zero the `sparsity` fraction of Linear weights with the smallest |w|.

    scope="global" ranks all pruned weights together (layers end up with different sparsities);
    "per-layer" prunes each Linear to the same fraction. lm_head and embeddings are left dense: they
    are shared with the tokenizer's vocabulary and pruning them hurts most for least size.
    """

    sparsity: float = 0.5
    scope: Literal["global", "per-layer"] = "global"

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise CodegenBenchError(f"sparsity={self.sparsity} must be in [0, 1): e.g. sparsity=0.5")
        if self.scope not in ("global", "per-layer"):
            raise CodegenBenchError(f"scope={self.scope!r} is not valid: use global or per-layer")


def prunable_linears(model: nn.Module) -> dict[str, nn.Linear]:
    """The decoder's Linear layers (attention and MLP projections), by qualified name."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {
        name: module
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not output
    }


@torch.no_grad()
def prune_(model: nn.Module, config: L1Unstructured) -> nn.Module:
    """Prune in place and make it permanent (the zeros are plain weight values afterwards)."""
    linears = list(prunable_linears(model).values())
    if not linears:
        raise CodegenBenchError(f"{type(model).__name__} has no Linear layers to prune")
    if config.scope == "global":
        prune.global_unstructured(
            [(m, "weight") for m in linears], pruning_method=prune.L1Unstructured, amount=config.sparsity
        )
    else:
        for module in linears:
            prune.l1_unstructured(module, "weight", amount=config.sparsity)
    for module in linears:
        prune.remove(module, "weight")
    return model


def measure_sparsity(model: nn.Module) -> dict[str, float | dict[str, float]] | None:
    """Fraction of exact zeros per prunable layer and over all of them together; None where the
    weights are not floating point (packed 4-bit or int8 storage has no meaningful zero count)."""
    per_layer = {}
    zeros = total = 0
    for name, module in prunable_linears(model).items():
        weight = module.weight
        if not weight.is_floating_point():
            return None
        layer_zeros = int((weight == 0).sum())
        per_layer[name] = layer_zeros / weight.numel()
        zeros += layer_zeros
        total += weight.numel()
    return {"total": zeros / total if total else 0.0, "per_layer": per_layer}
