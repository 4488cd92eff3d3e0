"""What a model variant is and how each one is built: the registry, artifacts, compressors.

    from codegen_bench.variants import BaseModel, load_variant
    model, manifest = load_variant("nf4", BaseModel("/path/to/model"))

A variant is named (`nf4`) or given as an artifact folder (`path/to/artifact`). A named variant is
built on first use and cached as an artifact under the codegen-bench cache, keyed by the base
model's checksum and the variant's config, so a changed config never reuses a stale build.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.errors import CodegenBenchError

# The built-in variants register themselves on import (a decorator per variant).
from codegen_bench.variants import adapters, builtin  # noqa: F401
from codegen_bench.variants.artifact import BaseModel, check_base, read_manifest, write_artifact
from codegen_bench.variants.prune import measure_sparsity
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


def cached_artifact_dir(name: str, config: dict[str, Any], base: BaseModel) -> Path:
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return cache_dir() / "variants" / base.fingerprint()[:12] / f"{name}-{config_hash}"


def build_artifact(
    name: str, base: BaseModel, overrides: dict[str, Any] | None = None, out_dir: Path | None = None
) -> tuple[Any, Path]:
    """Build variant `name` from `base` and save it as an artifact; return (model, folder)."""
    variant = get_variant(name)
    config = make_config(variant, overrides)
    config_dict = config_to_dict(config)
    out_dir = Path(out_dir) if out_dir else cached_artifact_dir(name, config_dict, base)
    model = variant.build(base, config)
    write_artifact(
        model,
        out_dir,
        variant=name,
        config=config_dict,
        base=base,
        save=variant.save,
        sparsity=measure_sparsity(model),
    )
    return model, out_dir


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
    make_config(get_variant(spec), overrides)


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
    variant = get_variant(spec)
    config = make_config(variant, overrides)
    if spec == "base":
        return variant.build(base, config), {"variant": "base", "config": config_to_dict(config)}
    cached = cached_artifact_dir(spec, config_to_dict(config), base)
    if (cached / "variant.json").is_file():
        return variant.load(cached, base, config), read_manifest(cached)
    model, folder = build_artifact(spec, base, overrides, cached)
    return model, read_manifest(folder)


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
    if not (folder / "variant.json").is_file():
        build_artifact(spec, base, overrides, folder)
    return folder, read_manifest(folder)
