"""What a model variant is and how each one is built: the registry, artifacts, compressors.

    from codegen_bench.variants import BaseModel, load_variant
    model, manifest = load_variant("nf4", BaseModel("/path/to/model"))

A variant is named (`nf4`) or given as an artifact folder (`path/to/artifact`). A named variant is
built on first use and cached as an artifact under the codegen-bench cache, keyed by the base
model's checksum and the variant's config, so a changed config never reuses a stale build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codegen_bench.harness.errors import CodegenBenchError

# The built-in variants register themselves on import (a decorator per variant).
from codegen_bench.variants import adapters, builtin  # noqa: F401
from codegen_bench.variants.artifact import MANIFEST, BaseModel, check_base, read_manifest
from codegen_bench.variants.cache import build_artifact, cached_artifact_dir, cached_variant
from codegen_bench.variants.registry import (
    available_variants,
    config_to_dict,
    get_variant,
    make_config,
    register_variant,
)

__all__ = [
    "BaseModel",
    "available_variants",
    "build_artifact",
    "check_variant_spec",
    "get_variant",
    "load_variant",
    "register_variant",
    "resolve_artifact",
]


def check_variant_spec(spec: str, overrides: dict[str, Any] | None = None) -> None:
    """Fail fast, before any model is loaded, on an unknown variant, an unknown or ill-typed config
    key, or config overrides given for an artifact folder (its config is fixed in its manifest)."""
    folder = Path(spec).expanduser()
    if folder.is_dir():
        if overrides:
            raise CodegenBenchError(
                f"variant {spec!r} is an artifact folder, whose config is fixed when it is built: drop "
                f"{', '.join(f'variant.{k}' for k in overrides)}, or name the registered variant "
                f"({read_manifest(folder).get('variant')}) to build one with that config"
            )
        read_manifest(folder)
        return
    looks_like_a_path = folder.exists() or spec.startswith(("/", ".", "~")) or "/" in spec
    if looks_like_a_path and spec not in available_variants():
        raise CodegenBenchError(
            f"variant {spec!r} is not an artifact folder (a folder with {MANIFEST}): pass one that "
            "`codegen-bench build` or `train` wrote, or a registered name (codegen-bench variants)"
        )
    config = make_config(get_variant(spec), overrides)
    if isinstance(config, (adapters.LoraAdapter, adapters.QLoraAdapter)) and config.adapter:
        # A given adapter folder is checked here, not in the config: an artifact's manifest records
        # the config it was built with, whose adapter folder need not exist any more.
        adapters.adapter_folder(config.adapter, spec)


def load_variant(spec: str, base: BaseModel, overrides: dict[str, Any] | None = None) -> tuple[Any, dict]:
    """The model for `spec` (a variant name or an artifact folder) and its manifest.

    `base` is returned as loaded, without writing an artifact: it is the base model itself.
    """
    check_variant_spec(spec, overrides)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        manifest = read_manifest(folder)
        check_base(manifest, folder, base)
        variant = get_variant(manifest["variant"])
        config = make_config(variant, manifest["config"])
        return variant.load(folder, base, config), manifest
    return cached_variant(spec, base, overrides)


def resolve_artifact(
    spec: str, base: BaseModel, overrides: dict[str, Any] | None = None
) -> tuple[Path | None, dict]:
    """The artifact folder for `spec` and its manifest, built (and cached) if needed but not loaded:
    for engines that read the folder themselves (vLLM). `base` gives (None, its manifest)."""
    check_variant_spec(spec, overrides)
    folder = Path(spec).expanduser()
    if folder.is_dir():
        manifest = read_manifest(folder)
        check_base(manifest, folder, base)
        return folder, manifest
    variant = get_variant(spec)
    config = make_config(variant, overrides)
    if spec == "base":
        return None, {"variant": "base", "config": config_to_dict(config)}
    folder = cached_artifact_dir(spec, config_to_dict(config), base)
    if not (folder / MANIFEST).is_file():
        build_artifact(spec, base, overrides, folder)
    return folder, read_manifest(folder)
