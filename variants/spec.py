"""A variant as the command line names it: NAME=VARIANT[,variant.KEY=VALUE...].

The same `variant.KEY=VALUE` overrides reach the `codegen` model through lm-eval's --model_args
(`variant=l1-pruned,variant.sparsity=0.3`); the matrix and the benchmarks take whole specs.
"""

from __future__ import annotations

from dataclasses import dataclass

from codegen_bench.harness.errors import CodegenBenchError

VARIANT_CONFIG_PREFIX = "variant."


@dataclass(frozen=True)
class VariantSpec:
    """One row of the matrix: a display name, the variant (registered name or artifact folder) and
    config overrides, written NAME=VARIANT[,variant.KEY=VALUE...] (without NAME=, the row is named
    after its VARIANT)."""

    name: str
    variant: str
    overrides: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> VariantSpec:
        # The overrides follow the first comma, so VARIANT,variant.KEY=VALUE (no NAME) is the row
        # VARIANT with those overrides, not a row named "VARIANT,variant.KEY".
        head, *items = text.split(",")
        name, _, variant = head.partition("=")
        variant = variant or name
        overrides = []
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.startswith(VARIANT_CONFIG_PREFIX):
                raise CodegenBenchError(
                    f"variant {text!r}: {item!r} is not variant.KEY=VALUE, "
                    "e.g. l1=l1-pruned,variant.sparsity=0.3"
                )
            overrides.append((key[len(VARIANT_CONFIG_PREFIX) :], value))
        if not name or not variant:
            raise CodegenBenchError(f"variant {text!r} is empty: use NAME or NAME=VARIANT")
        return cls(name, variant, tuple(overrides))

    def text(self) -> str:
        """The NAME=VARIANT[,variant.KEY=VALUE...] form `parse` reads."""
        return ",".join(
            [f"{self.name}={self.variant}", *(f"{VARIANT_CONFIG_PREFIX}{k}={v}" for k, v in self.overrides)]
        )

    def model_args(self) -> dict[str, str]:
        return {"variant": self.variant, **{VARIANT_CONFIG_PREFIX + k: v for k, v in self.overrides}}

    def model_args_string(self) -> str:
        """`model_args()` as lm-eval's --model_args text (k=v,k=v)."""
        return ",".join(f"{k}={v}" for k, v in self.model_args().items())
