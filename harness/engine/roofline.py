"""How far a piece of work is from this machine's matmul limit: FLOPs of the work, peak FLOP/s measured.

The peak is the best FLOP/s of one decoder layer's weight matmuls (the model's own shapes) at a few row
counts, with `torch.nn.functional.linear` and, where oneDNN is available, its prepacked linear. Work
is counted as the weight matmuls it needs (attention and element-wise ops left out, so a share of the
roofline is conservative). Measure the peak in the same run as the work: these machines are shared,
and the peak moves with what else runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

ROOFLINE_ROWS = (256, 512, 1024)


@dataclass(frozen=True)
class MatmulShapes:
    """(out, in) of one decoder layer's weight matmuls, how many layers there are, and the output
    head's (out, in): read from the model's own modules, so any architecture's (gated MLP or not,
    fused or split projections, GPT-2's Conv1D) are counted as they run."""

    layer: tuple[tuple[int, int], ...]
    layers: int
    head: tuple[int, int]

    @classmethod
    def of(cls, model) -> MatmulShapes:
        """From a model, loaded or on the meta device (`harness.loading.meta_model`)."""
        import torch

        head_module = model.get_output_embeddings()
        if head_module is None:  # no separate head: the tied embedding matrix is the head
            head = tuple(model.get_input_embeddings().weight.shape)
        else:
            head = (head_module.out_features, head_module.in_features)
        # The decoder is the module list with one entry per layer. A model without one is counted
        # as one "layer" of all its matmuls: its total stays right.
        depth = getattr(model.config, "num_hidden_layers", None)
        blocks = next(
            (m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == depth), None
        )
        counted = blocks[0] if blocks is not None else model
        layer = tuple(
            shape
            for module in counted.modules()
            if module is not head_module and (shape := matmul_shape(module)) is not None
        )
        return cls(layer, len(blocks) if blocks is not None else 1, head)

    def layer_params(self) -> int:
        """Weights of all decoder layers' matmuls (embeddings and the output head not counted)."""
        return self.layers * sum(o * i for o, i in self.layer)


def matmul_shape(module) -> tuple[int, int] | None:
    """(out, in) of a weight matmul: torch's Linear (bitsandbytes' 4-bit one included, whose packed
    weight has another shape) or transformers' Conv1D (GPT-2's, weight stored [in, out])."""
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, torch.nn.Linear):
        return (module.out_features, module.in_features)
    if isinstance(module, Conv1D):
        return (module.nf, module.weight.shape[0])
    return None


def generation_flops(shapes: MatmulShapes, prompt_tokens: int, generated_tokens: int, requests: int) -> float:
    """Weight-matmul FLOPs of a generation run: every prompt token and every fed-back generated
    token goes through every layer; every generated token comes out of the output head."""
    through_layers = prompt_tokens + generated_tokens - requests  # the last token is never fed back
    head = shapes.head[0] * shapes.head[1]
    return 2.0 * (shapes.layer_params() * through_layers + head * generated_tokens)


def scoring_flops(shapes: MatmulShapes, forward_tokens: int, head_tokens: int) -> float:
    """Weight-matmul FLOPs of likelihood scoring: `forward_tokens` through every layer,
    `head_tokens` (the scored positions) through the output head (likelihood.ScoringStats)."""
    return 2.0 * (shapes.layer_params() * forward_tokens + shapes.head[0] * shapes.head[1] * head_tokens)


def adapter_training_flops(shapes: MatmulShapes, tokens: int, scored_tokens: int) -> float:
    """Weight-matmul FLOPs of adapter training (LoRA) on frozen weights.

    Every token goes forward through the layers (2 FLOPs a weight) and back through them for the
    activations' gradient (2 more); the frozen weights need no gradient of their own, so the usual
    "6 x parameters" of full training is 4 here. The output head runs, forward and back, only at the
    positions whose next token the loss scores. The adapters' own matmuls (rank r against the hidden
    size, under 3% of a layer's weights at r=16) are left out.
    """
    return 4.0 * (shapes.layer_params() * tokens + shapes.head[0] * shapes.head[1] * scored_tokens)


def measure_peak_flops(shapes: MatmulShapes, repeats: int = 5) -> dict[str, float]:
    """Best FLOP/s of one decoder layer's matmuls, per kernel and row count (the output head is
    left out: at these row counts it is bound by writing its huge output, not by arithmetic)."""
    import torch

    layer = shapes.layer
    weights = [torch.randn(o, i) for o, i in layer]
    packed = None
    if torch.backends.mkldnn.is_available():
        packed = [torch.ops.mkldnn._reorder_linear_weight(w, ROOFLINE_ROWS[-1]) for w in weights]
    result = {}
    with torch.inference_mode():
        for rows in ROOFLINE_ROWS:
            inputs = {i: torch.randn(rows, i) for _, i in layer}
            kernels = {
                "linear": lambda inputs=inputs: [
                    torch.nn.functional.linear(inputs[w.shape[1]], w) for w in weights
                ]
            }
            if packed is not None:
                kernels["onednn"] = lambda inputs=inputs: [
                    torch.ops.mkldnn._linear_pointwise(inputs[w.shape[1]], p, None, "none", [], "")
                    for w, p in zip(weights, packed, strict=True)
                ]
            for name, run in kernels.items():
                run()
                best = float("inf")
                for _ in range(repeats):
                    started = time.perf_counter()
                    run()
                    best = min(best, time.perf_counter() - started)
                result[f"{name} {rows} rows"] = 2.0 * rows * sum(o * i for o, i in layer) / best
    return result
