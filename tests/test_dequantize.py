"""4-bit layers dequantized once: the same function as bitsandbytes' kernels, as float Linears."""

from __future__ import annotations

import pytest
import torch

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.model import CodegenLM
from codegen_bench.variants import load_variant
from codegen_bench.variants.prune import prunable_linears
from codegen_bench.variants.quantize import dequantize_4bit_

pytestmark = pytest.mark.usefixtures("isolated_cache")

IDS = torch.tensor([[5, 17, 42, 8, 99, 3, 64, 27]])


def _logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS).logits


def test_dequantized_layers_compute_what_the_4bit_kernels_compute(base):
    import bitsandbytes as bnb

    kernels, _ = load_variant("nf4", base)
    dequantized, _ = load_variant("nf4", base)
    layers = len([m for m in dequantized.modules() if isinstance(m, bnb.nn.Linear4bit)])
    assert dequantize_4bit_(dequantized) == layers == len(prunable_linears(base.load()))
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in dequantized.modules())
    linears = [
        m for m in dequantized.modules() if type(m) is torch.nn.Linear and m is not dequantized.lm_head
    ]
    assert all(m.weight.dtype == torch.float32 and not m.weight.requires_grad for m in linears)
    # bitsandbytes' CPU kernel may multiply in bf16 (AVX512-BF16 CPUs): agreement to its rounding.
    expected = _logits(kernels)
    assert torch.allclose(_logits(dequantized), expected, atol=2e-2 * expected.abs().max().item())


def test_the_lm_eval_model_dequantizes_on_request_and_reports_it(tiny_model_dir):
    args = {"pretrained": str(tiny_model_dir), "variant": "nf4", "batch_size": 2, "max_length": 128}
    plain = CodegenLM(**args)
    assert plain.get_model_info()["dequantized_linears"] == 0
    fast = CodegenLM(**args, dequantize_4bit="true")
    info = fast.get_model_info()
    assert info["dequantized_linears"] > 0 and info["prepacked_linears"] >= info["dequantized_linears"]
    assert (
        CodegenLM(pretrained=str(tiny_model_dir), dequantize_4bit="true").get_model_info()[
            "dequantized_linears"
        ]
        == 0
    )  # nothing 4-bit in base
    with pytest.raises(CodegenBenchError, match="dequantize_4bit='yes' is not valid: use one of true, false"):
        CodegenLM(**args, dequantize_4bit="yes")
