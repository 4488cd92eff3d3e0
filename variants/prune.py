"""Post-training pruning, torchao-style: a frozen config plus one verb, `prune_(model, config)`."""

from __future__ import annotations

import contextlib
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


@dataclass(frozen=True)
class Wanda:
    """Wanda (Sun et al., 2023): prune by |W| * ||X||, the weight magnitude times the L2 norm of its
    input feature over a small calibration set, comparing weights within each output row.

    Layers are pruned in order, as in the paper: the activations that score decoder layer i are
    computed with layers 0..i-1 already pruned. The calibration texts come from the Python standard
    library (see the variant's build), never from HumanEval.
    """

    sparsity: float = 0.5
    calibration_samples: int = 32
    calibration_seq_len: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.sparsity < 1.0:
            raise CodegenBenchError(f"sparsity={self.sparsity} must be in [0, 1): e.g. sparsity=0.5")
        if self.calibration_samples < 1 or self.calibration_seq_len < 2:
            raise CodegenBenchError(
                "calibration_samples must be >= 1 and calibration_seq_len >= 2: e.g. 32 and 128"
            )


class _StopForward(Exception):
    """Raised after the decoder layer being scored: the layers above it are not needed yet."""


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    for candidate in ("model.layers", "model.decoder.layers", "transformer.h"):
        module = model
        for part in candidate.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList):
            return list(module)
    raise CodegenBenchError(
        f"{type(model).__name__}: no decoder layer list found (model.layers, ...): Wanda needs one"
    )


def _input_norms(model: nn.Module, layer: nn.Module, linears: dict[str, nn.Linear], calibration) -> dict:
    """L2 norm of each input feature of each Linear in `layer`, over all calibration tokens. Each
    forward pass stops right after `layer`: the layers above it are not needed yet."""
    squared = {name: torch.zeros(m.in_features, dtype=torch.float64) for name, m in linears.items()}

    def accumulate(name):
        def hook(module, args):
            inputs = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            squared[name] += (inputs**2).sum(dim=0).cpu()

        return hook

    def stop(module, args, output):
        raise _StopForward

    handles = [m.register_forward_pre_hook(accumulate(name)) for name, m in linears.items()]
    handles.append(layer.register_forward_hook(stop))
    try:
        for batch in calibration:
            with contextlib.suppress(_StopForward):
                model(input_ids=batch.to(model.device))
    finally:
        for handle in handles:
            handle.remove()
    return {name: total.sqrt() for name, total in squared.items()}


@torch.no_grad()
def wanda_prune_(model: nn.Module, config: Wanda, calibration: list[torch.Tensor]) -> nn.Module:
    """Prune in place with Wanda scores from `calibration` (token id tensors of shape [1, seq])."""
    if not calibration:
        raise CodegenBenchError("Wanda needs calibration batches: got none")
    for layer in _decoder_layers(model):
        linears = {name: m for name, m in layer.named_modules() if isinstance(m, nn.Linear)}
        norms = _input_norms(model, layer, linears, calibration)
        for name, module in linears.items():
            weight = module.weight
            score = weight.abs().double() * norms[name].to(weight.device).unsqueeze(0)
            n_prune = int(weight.shape[1] * config.sparsity)
            if n_prune:
                # Per output row, as in the paper: each row keeps its highest-scoring inputs.
                drop = torch.topk(score, n_prune, dim=1, largest=False).indices
                weight.scatter_(1, drop, 0.0)
    return model
