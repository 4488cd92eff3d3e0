"""Post-training pruning, torchao-style: a frozen config plus one verb, `prune_(model, config)`."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import prune

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.variants.quantize import int8_linears


@dataclass(frozen=True)
class L1Unstructured:
    """Zero the `sparsity` fraction of projection weights (see `prunable_linears`) with the smallest |w|.

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


def _is_projection(module: nn.Module) -> bool:
    """nn.Linear, or transformers' Conv1D: GPT-2's projections, a Linear whose weight is stored
    transposed ([in, out])."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def _weight_out_in(module: nn.Module) -> torch.Tensor:
    """A projection's weight as [out, in], a view sharing its storage: writes to it prune the layer."""
    return module.weight if isinstance(module, nn.Linear) else module.weight.t()


def prunable_linears(model: nn.Module) -> dict[str, nn.Module]:
    """The decoder's projections (attention and MLP; nn.Linear or Conv1D), by qualified name."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return {
        name: module
        for name, module in model.named_modules()
        if _is_projection(module) and module is not output
    }


def _leaf_types(model: nn.Module) -> str:
    """The types of the modules holding a weight, for a refusal naming what the model has instead."""
    types = {
        type(m).__name__ for m in model.modules() if isinstance(getattr(m, "weight", None), nn.Parameter)
    }
    return ", ".join(sorted(types))


def _global_threshold(weights: list[torch.Tensor], amount: int) -> tuple[float, int]:
    """The |w| at rank `amount` over all `weights` together, and how many weights tie with it that
    must still be zeroed to prune exactly `amount` (Q4_K-dequantized weights tie a lot).

    A binary search over the bit patterns of |w| (non-negative floats order like their int32 bits),
    counting layer by layer: memory stays at one layer's size, where torch.kthvalue over the
    concatenated weights would need a copy plus int64 indices (about 6 GB for 0.5B weights).
    """

    def count_at_most(bits: int) -> int:
        return sum(int((w.abs().float().view(torch.int32) <= bits).sum()) for w in weights)

    low, high = 0, 0x7F800000  # +inf: every finite |w| is at most that
    while low < high:
        middle = (low + high) // 2
        if count_at_most(middle) >= amount:
            high = middle
        else:
            low = middle + 1
    threshold = torch.tensor(low, dtype=torch.int32).view(torch.float32).item()
    below = count_at_most(low - 1) if low > 0 else 0
    return threshold, amount - below


def check_l1_prunable(model: nn.Module, config: L1Unstructured) -> None:
    """The model has layers l1-pruned prunes. Reads only the module tree (a meta-device model will do)."""
    if not prunable_linears(model):
        raise CodegenBenchError(
            f"{type(model).__name__} has no layer l1-pruned prunes (its weights are in "
            f"{_leaf_types(model)}): only nn.Linear and transformers Conv1D layers are pruned"
        )


@torch.no_grad()
def prune_(model: nn.Module, config: L1Unstructured) -> nn.Module:
    """Prune in place and make it permanent (the zeros are plain weight values afterwards).

    Each layer goes through torch.nn.utils.prune (a mask, then `prune.remove`) one at a time, so only
    one layer's `weight_orig` and mask exist at once. For scope="global" the threshold is computed
    once over all layers; `prune.global_unstructured` would instead hold every layer's copy, mask and
    a top-k over all weights together: 18 GB peak for the 0.5B default model.
    """
    check_l1_prunable(model, config)
    linears = list(prunable_linears(model).values())
    # torch's rounding: round(sparsity * number of weights), per layer or over all layers together.
    if config.scope == "per-layer":
        amount = sum(round(config.sparsity * m.weight.numel()) for m in linears)
    else:
        amount = round(config.sparsity * sum(m.weight.numel() for m in linears))
    if amount == 0:
        if config.sparsity > 0:
            raise CodegenBenchError(
                f"sparsity={config.sparsity} prunes no weight of {type(model).__name__}: raise sparsity"
            )
        return model
    if config.scope == "per-layer":
        for module in linears:
            prune.l1_unstructured(module, "weight", amount=config.sparsity)
            prune.remove(module, "weight")
        return model
    threshold, ties_to_prune = _global_threshold([m.weight for m in linears], amount)
    for module in linears:
        magnitude = module.weight.abs().float()
        mask = magnitude > threshold
        ties = (magnitude == threshold).flatten().nonzero().squeeze(1)
        kept_ties = ties[ties_to_prune:]  # the first `ties_to_prune` ties (in layer order) are pruned
        ties_to_prune = max(0, ties_to_prune - len(ties))
        mask.view(-1)[kept_ties] = True
        prune.custom_from_mask(module, "weight", mask)
        prune.remove(module, "weight")
    return model


def measure_sparsity(model: nn.Module) -> dict[str, float | dict[str, float]] | None:
    """Fraction of exact zeros per projection of the decoder and over all of them together; int8
    layers count a weight equal to its zero point as zero. None where the weights are packed 4-bit
    (bitsandbytes stores two weights per byte: no per-weight zero count without dequantizing)."""
    int8 = int8_linears(model)
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    per_layer = {}
    zeros = total = 0
    for name, module in model.named_modules():
        if module is output:
            continue
        if _is_projection(module):
            weight = module.weight
        elif name in int8:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # torch.ao's deprecation warning on each quantized weight
                weight = module.weight().dequantize()
        else:
            continue
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
    """Raised as the calibration forward reaches the first decoder layer: its inputs are all we need."""


def _decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder's layers: the first nn.ModuleList (outermost first) with config.num_hidden_layers
    entries, wherever the architecture keeps it (model.layers, gpt_neox.layers, transformer.h).
    transformers' configs answer num_hidden_layers for their own names of it (GPT-2's n_layer)."""
    count = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == count:
            return list(module)
    raise CodegenBenchError(
        f"{type(model).__name__}: no nn.ModuleList of config.num_hidden_layers={count} decoder layers "
        "found: Wanda prunes a decoder's layers in order and needs that list"
    )


def _first_layer_inputs(model: nn.Module, first_layer: nn.Module, calibration) -> list[tuple[tuple, dict]]:
    """The (args, kwargs) with which each calibration batch enters the first decoder layer: hidden
    states plus whatever the model passes its layers (mask, position embeddings). The forward stops
    there; every later layer is then run on its own, from the stored inputs."""
    captured = []

    def catch(module, args, kwargs):
        captured.append((args, kwargs))
        raise _StopForward

    handle = first_layer.register_forward_pre_hook(catch, with_kwargs=True)
    try:
        for batch in calibration:
            with contextlib.suppress(_StopForward):
                model(input_ids=batch.to(model.device), use_cache=False)
    finally:
        handle.remove()
    return captured


def _with_hidden_states(inputs: tuple[tuple, dict], hidden: torch.Tensor) -> tuple[tuple, dict]:
    args, kwargs = inputs
    if args:
        return (hidden, *args[1:]), kwargs
    return args, {**kwargs, "hidden_states": hidden}


def _run_layer(layer: nn.Module, inputs: tuple[tuple, dict]) -> torch.Tensor:
    args, kwargs = inputs
    output = layer(*args, **kwargs)
    return output[0] if isinstance(output, tuple) else output  # transformers < 5 returned tuples


def _input_norms(layer: nn.Module, linears: dict[str, nn.Module], layer_inputs) -> dict:
    """L2 norm of each input feature of each projection in `layer`, over all calibration tokens."""
    squared = {
        name: torch.zeros(_weight_out_in(m).shape[1], dtype=torch.float64) for name, m in linears.items()
    }

    def accumulate(name):
        def hook(module, args):
            inputs = args[0].detach().reshape(-1, args[0].shape[-1]).double()
            squared[name] += (inputs**2).sum(dim=0).cpu()

        return hook

    handles = [m.register_forward_pre_hook(accumulate(name)) for name, m in linears.items()]
    try:
        for inputs in layer_inputs:
            _run_layer(layer, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: total.sqrt() for name, total in squared.items()}


def check_wanda_prunable(model: nn.Module, config: Wanda) -> tuple[list[nn.Module], list[dict]]:
    """The decoder's layers and each one's projections, refusing a model Wanda cannot prune at
    `config`'s sparsity. Reads only the module tree and shapes (a meta-device model will do)."""
    layers = _decoder_layers(model)
    projections = [{name: m for name, m in layer.named_modules() if _is_projection(m)} for layer in layers]
    if not any(projections):
        raise CodegenBenchError(
            f"{type(model).__name__} has no nn.Linear or transformers Conv1D layer in its decoder layers "
            f"(its weights are in {_leaf_types(model)}): wanda-pruned prunes only those"
        )
    widest_row = max(_weight_out_in(m).shape[1] for layer in projections for m in layer.values())
    if config.sparsity > 0 and int(widest_row * config.sparsity) == 0:
        raise CodegenBenchError(
            f"sparsity={config.sparsity} prunes no weight of {type(model).__name__}, whose rows have at "
            f"most {widest_row} inputs: raise sparsity to at least 1/{widest_row}"
        )
    return layers, projections


@torch.no_grad()
def wanda_prune_(model: nn.Module, config: Wanda, calibration: list[torch.Tensor]) -> nn.Module:
    """Prune in place with Wanda scores from `calibration` (token id tensors of shape [1, seq])."""
    if not calibration:
        raise CodegenBenchError("Wanda needs calibration batches: got none")
    layers, projections = check_wanda_prunable(model, config)
    # Each layer runs once per batch, on the outputs of the layers below it after they were pruned
    # (as in the paper); re-running the model from the embeddings for every layer cost 12x more.
    layer_inputs = _first_layer_inputs(model, layers[0], calibration)
    for layer, linears in zip(layers, projections, strict=True):
        norms = _input_norms(layer, linears, layer_inputs)
        for name, module in linears.items():
            weight = _weight_out_in(module)
            score = weight.abs().double() * norms[name].to(weight.device).unsqueeze(0)
            n_prune = int(weight.shape[1] * config.sparsity)
            if n_prune:
                # Per output row, as in the paper: each row keeps its highest-scoring inputs.
                drop = torch.topk(score, n_prune, dim=1, largest=False).indices
                weight.scatter_(1, drop, 0.0)
        layer_inputs = [_with_hidden_states(inputs, _run_layer(layer, inputs)) for inputs in layer_inputs]
    return model
