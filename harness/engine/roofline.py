"""How far a piece of work is from this machine's matmul limit: FLOPs of the work, peak FLOP/s measured.

The peak is the best FLOP/s of one decoder layer's weight matmuls (the model's own shapes) at a few row
counts, with `torch.nn.functional.linear` and, where oneDNN is available, its prepacked linear. Work
is counted as the weight matmuls it needs (attention and element-wise ops left out, so a share of the
roofline is conservative). Measure the peak in the same run as the work: these machines are shared,
and the peak moves with what else runs.
"""

from __future__ import annotations

import time

ROOFLINE_ROWS = (256, 512, 1024)


def model_shapes(config: dict) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """(out, in) of one decoder layer's linear layers, and of the output head, from a config.json dict."""
    hidden = config["hidden_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    inter = config["intermediate_size"]
    layer = [
        (heads * head_dim, hidden),
        (kv_heads * head_dim, hidden),
        (kv_heads * head_dim, hidden),
        (hidden, heads * head_dim),
        (inter, hidden),
        (inter, hidden),
        (hidden, inter),
    ]
    return layer, (config["vocab_size"], hidden)


def layer_params(config: dict) -> int:
    """Weights of all decoder layers' matmuls (embeddings and the output head not counted)."""
    layer, _ = model_shapes(config)
    return config["num_hidden_layers"] * sum(o * i for o, i in layer)


def generation_flops(config: dict, prompt_tokens: int, generated_tokens: int, requests: int) -> float:
    """Weight-matmul FLOPs of a generation run: every prompt token and every fed-back generated
    token goes through every layer; every generated token comes out of the output head."""
    _, head = model_shapes(config)
    through_layers = prompt_tokens + generated_tokens - requests  # the last token is never fed back
    return 2.0 * (layer_params(config) * through_layers + head[0] * head[1] * generated_tokens)


def scoring_flops(config: dict, forward_tokens: int, head_tokens: int) -> float:
    """Weight-matmul FLOPs of likelihood scoring: `forward_tokens` through every layer,
    `head_tokens` (the scored positions) through the output head (likelihood.ScoringStats)."""
    _, head = model_shapes(config)
    return 2.0 * (layer_params(config) * forward_tokens + head[0] * head[1] * head_tokens)


def adapter_training_flops(config: dict, tokens: int, scored_tokens: int) -> float:
    """Weight-matmul FLOPs of adapter training (LoRA) on frozen weights.

    Every token goes forward through the layers (2 FLOPs a weight) and back through them for the
    activations' gradient (2 more); the frozen weights need no gradient of their own, so the usual
    "6 x parameters" of full training is 4 here. The output head runs, forward and back, only at the
    positions whose next token the loss scores. The adapters' own matmuls (rank r against the hidden
    size, under 3% of a layer's weights at r=16) are left out.
    """
    _, head = model_shapes(config)
    return 4.0 * (layer_params(config) * tokens + head[0] * head[1] * scored_tokens)


def measure_peak_flops(config: dict, repeats: int = 5) -> dict[str, float]:
    """Best FLOP/s of one decoder layer's matmuls, per kernel and row count (the output head is
    left out: at these row counts it is bound by writing its huge output, not by arithmetic)."""
    import torch

    layer, _ = model_shapes(config)
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
