"""Quantization configs, torchao-style (`Nf4` here; dynamic int8 follows in the variants issue).

bitsandbytes quantizes while transformers loads the weights, so `Nf4.to_transformers()` gives the
`BitsAndBytesConfig` that `from_pretrained` takes; bitsandbytes >= 0.49 runs 4-bit on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from codegen_bench.harness.errors import CodegenBenchError


@dataclass(frozen=True)
class Nf4:
    """4-bit NormalFloat weights (QLoRA's format) for every Linear but lm_head."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self) -> None:
        if self.quant_type not in ("nf4", "fp4"):
            raise CodegenBenchError(f"quant_type={self.quant_type!r} is not valid: use nf4 or fp4")
        if self.compute_dtype not in ("float32", "bfloat16", "float16"):
            raise CodegenBenchError(
                f"compute_dtype={self.compute_dtype!r} is not valid: use float32, bfloat16 or float16"
            )

    def to_transformers(self):
        import torch
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, self.compute_dtype),
        )
