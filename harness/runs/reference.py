"""The reference variant of a run: what every other variant is paired with, divided by and gated
against. One rule for the pairing, the speed ratios, the KL reference, the gate and the latency
suite's summary: the variant the user names (`--reference NAME`), else `base` where the run has it,
else the run's first variant."""

from __future__ import annotations

from collections.abc import Sequence

from codegen_bench.harness.errors import CodegenBenchError

DEFAULT_REFERENCE = "base"


def reference_variant(variants: Sequence[str], requested: str | None = None) -> str | None:
    """The reference among `variants` (names in run order); None for a run without variants."""
    if requested is not None:
        if requested not in variants:
            raise CodegenBenchError(
                f"reference variant {requested!r} is not in the run's variants ({', '.join(variants)}): "
                "pass one of them as --reference, or add it to --variants"
            )
        return requested
    if DEFAULT_REFERENCE in variants:
        return DEFAULT_REFERENCE
    return variants[0] if variants else None
