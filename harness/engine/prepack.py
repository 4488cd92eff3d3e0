"""Linear layers with their weights reordered once for oneDNN: for CPU inference, and for the frozen
weights of adapter training.

`torch.nn.Linear` on CPU calls an sgemm that re-reads the weight in its plain [out, in] layout on
every call; at the row counts of decoding (1-64 rows) that costs more than the arithmetic, so the
weights are reordered once instead. What that is worth on a whole HumanEval run (`prepack=false`
against the default) is in results/measurements/generation-speed/README.md, for the layers under
an adapter in results/measurements/adapter-prepacked/README.md. This is what torch.compile's CPU
backend does to frozen weights (`mkldnn._reorder_linear_weight` + `mkldnn._linear_pointwise`),
without compiling anything: the model's Python code, shapes and caches are unchanged.

Outputs differ from `nn.Linear` by float32 rounding only (a different summation order).
"""

from __future__ import annotations

import torch

# Rows the weight layout is tuned for: decoding batches; other row counts work at a small cost.
BATCH_HINT = 32


class PrepackedLinear(torch.nn.Module):
    """Inference-only stand-in for an `nn.Linear`, holding the weight in oneDNN's blocked layout."""

    def __init__(self, linear: torch.nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        # Not a parameter or buffer: an opaque oneDNN tensor that state_dict/.to() must not touch.
        self.packed_weight = torch.ops.mkldnn._reorder_linear_weight(linear.weight.detach(), BATCH_HINT)
        # A copy, not a view: a view would keep the memory-mapped weights file alive (see below).
        self.bias = None if linear.bias is None else linear.bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, onednn_prepacked=True"


def can_prepack(model) -> bool:
    """float32 on CPU, with oneDNN."""
    return (
        torch.backends.mkldnn.is_available() and model.device.type == "cpu" and model.dtype == torch.float32
    )


def _adapter_modules(model) -> set[int]:
    """ids of the modules inside peft adapter layers' own matrices (lora_A, lora_B, ...): peft reads
    their `.weight` in every forward, so they stay `nn.Linear`. They are small (rank r); the base
    layer each adapter wraps is what costs, and peft only calls it (`self.base_layer(x)`)."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:
        return set()
    inside: set[int] = set()
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            for name in module.adapter_layer_names:
                inside.update(id(m) for m in getattr(module, name).modules())
    return inside


def _holders(model) -> dict[int, int]:
    """How many modules hold each parameter (by id): a shared (tied) weight is left unpacked."""
    counts: dict[int, int] = {}
    for module in model.modules():
        for param in module.parameters(recurse=False):
            counts[id(param)] = counts.get(id(param), 0) + 1
    return counts


def prepack_linears_(model) -> int:
    """Replace every float32 `nn.Linear` of `model` (in place) by a `PrepackedLinear`; return how many.

    Layers of other types (quantized, 4-bit) are left alone, as are an adapter's own matrices and a
    weight shared with another module (tied embeddings): packing it would keep a second copy in
    memory. Under an unmerged peft adapter the base layers it wraps are packed: the adapter's output
    is still added to theirs at every call (the same function), but the adapter can no longer be
    merged or unmerged, which reads the base weights: this is for inference only."""
    counts = _holders(model)
    adapters = _adapter_modules(model)
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is not torch.nn.Linear or child.weight.dtype != torch.float32:
                continue
            if counts.get(id(child.weight), 0) > 1 or id(child) in adapters:
                continue
            setattr(parent, name, PrepackedLinear(child))
            replaced += 1
    if replaced:
        _copy_out_of_mapped_file_(model)
    return replaced


@torch.no_grad()
def _copy_out_of_mapped_file_(model) -> None:
    """Give the tensors left after packing (embeddings, norms) memory of their own.

    Safetensors loads memory-map the weights file, and one tensor still viewing the mapping keeps it
    whole: the pages of the fp32 weights just packed stay resident and count in the process's RSS
    (results/measurements/generation-speed-chat/README.md gives the default model's resident memory
    before and after this copy). A copy of what is left lets the mapping go."""
    for param in model.parameters():  # the same Parameter object, so tied weights stay tied
        param.data = param.data.clone()
    for module in model.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[name] = buffer.clone()


class _FrozenPackedLinear(torch.autograd.Function):
    """y = x W^T + b with W packed for oneDNN; the backward gives x's gradient only (W is frozen),
    from a second packed copy of W^T: grad_x = grad_y W."""

    @staticmethod
    def forward(ctx, x, packed_weight, packed_weight_t, bias):
        ctx.packed_weight_t = packed_weight_t
        return torch.ops.mkldnn._linear_pointwise(x, packed_weight, bias, "none", [], "")

    @staticmethod
    def backward(ctx, grad_output):
        grad_input = torch.ops.mkldnn._linear_pointwise(
            grad_output.contiguous(), ctx.packed_weight_t, None, "none", [], ""
        )
        return grad_input, None, None, None


def prepack_frozen_linears_(model) -> int:
    """For training adapters on the CPU: every frozen float32 `nn.Linear` (requires_grad False, not
    shared with another module) computes forward and input gradient with oneDNN-packed weights.

    The module stays an `nn.Linear` with its weight (peft reads it, checkpoints save around it); only
    its forward changes. oneDNN's packed matmuls outrun the plain sgemm at training row counts too
    (results/measurements/lora-training-speed/README.md). Costs two packed copies of the frozen
    weights in memory. Returns how many layers were changed."""
    if not torch.backends.mkldnn.is_available():
        return 0
    counts = _holders(model)
    changed = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if type(module) is not torch.nn.Linear or weight is None or weight.requires_grad:
            continue
        if weight.dtype != torch.float32 or weight.device.type != "cpu" or counts.get(id(weight), 0) > 1:
            continue
        if module.bias is not None and module.bias.requires_grad:
            continue
        packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), BATCH_HINT)
        packed_t = torch.ops.mkldnn._reorder_linear_weight(weight.detach().t().contiguous(), BATCH_HINT)
        bias = None if module.bias is None else module.bias.detach()

        def forward(x, packed=packed, packed_t=packed_t, bias=bias):
            return _FrozenPackedLinear.apply(x, packed, packed_t, bias)

        module.forward = forward
        changed += 1
    return changed
