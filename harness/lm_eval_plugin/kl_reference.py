"""`kl_reference=` and `kl_cache=` of `--model codegen`: what the hf engine gets to compare next-token
distributions with a reference variant, and where reference log-probs are kept between runs.

The engine loads the reference only at the first score that needs it (harness/engine/hf.py). A
`kl_cache` folder holds one subfolder per model whose log-probs it keeps, keyed by everything that
changes them (variant, base weights, prepacking, dtype, device, torch): a run with `kl_reference=X`
reads X's there, and a run of X itself leaves its own there when it is exactly what
`kl_reference=X` loads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import torch

from codegen_bench.harness.engine.likelihood import LogProbsFolder
from codegen_bench.harness.files import json_digest
from codegen_bench.variants import BaseModel, load_variant
from codegen_bench.variants.artifact import base_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KlWiring:
    """The hf engine's reference arguments (all None: no comparison, nothing kept)."""

    load_reference: Callable[[], torch.nn.Module] | None = None
    reference_log_probs: LogProbsFolder | None = None  # where the reference's are read and added
    keep_log_probs: LogProbsFolder | None = None  # where this model leaves its own


def kept_log_probs_folder(kl_cache: str, spec: str, base: BaseModel, prepack: str) -> LogProbsFolder:
    """The subfolder of `kl_cache` for the log-probs of variant `spec` of `base`, so loaded."""
    identity = {"variant": spec, "base": base_fingerprint(base.name_or_path), "prepack": prepack}
    load = base.load_config
    identity |= {"dtype": load.dtype, "device": load.device, "torch": version("torch")}
    key = json_digest(identity, 16)
    return LogProbsFolder(Path(kl_cache) / key)


def wire_kl_reference(
    base: BaseModel,
    spec: str,
    *,
    reference: str | None,
    kl_cache: str | None,
    prepack: str,
    is_plain_variant: bool,
) -> KlWiring:
    """What the engine of variant `spec` gets for `kl_reference=reference` and `kl_cache=kl_cache`.

    `is_plain_variant`: the model is what `kl_reference=<spec>` would load (no config overrides, no
    recipe adapter added, no 4-bit layer dequantized); only then are its own log-probs kept."""

    def load_reference() -> torch.nn.Module:
        log.info("codegen: loading %s to compare next-token distributions with", reference)
        return load_variant(reference, base, {})[0]

    keeps_own = bool(kl_cache) and not reference and is_plain_variant
    if kl_cache and not (reference or keeps_own):
        log.warning(
            "codegen: kl_cache=%s unused: without kl_reference, a model keeps its log-probs only "
            "where it is what kl_reference=%s loads (no config overrides, adapter or dequantizing)",
            kl_cache,
            spec,
        )
    return KlWiring(
        load_reference=load_reference if reference else None,
        reference_log_probs=(
            kept_log_probs_folder(kl_cache, reference, base, prepack) if kl_cache and reference else None
        ),
        keep_log_probs=kept_log_probs_folder(kl_cache, spec, base, prepack) if keeps_own else None,
    )
