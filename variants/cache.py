"""Named variants built once and kept as artifacts in the codegen-bench cache.

The folder is keyed by the base model's checksum and the variant's full config, so a changed config
never reuses a stale build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.files import json_digest
from codegen_bench.variants.artifact import MANIFEST, BaseModel, read_manifest, write_artifact
from codegen_bench.variants.prune import measure_sparsity
from codegen_bench.variants.registry import check_fits_base, config_to_dict, get_variant, make_config


def cached_artifact_dir(name: str, config: dict[str, Any], base: BaseModel) -> Path:
    config_hash = json_digest(config, 12)
    return cache_dir() / "variants" / base.fingerprint()[:12] / f"{name}-{config_hash}"


def build_artifact(
    name: str, base: BaseModel, overrides: dict[str, Any] | None = None, out_dir: Path | None = None
) -> tuple[Any, Path]:
    """Build variant `name` from `base` and save it as an artifact; return (model, folder)."""
    variant = get_variant(name)
    config = make_config(variant, overrides)
    config_dict = config_to_dict(config)
    out_dir = Path(out_dir) if out_dir else cached_artifact_dir(name, config_dict, base)
    check_fits_base(variant, config, base)
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


def cached_variant(name: str, base: BaseModel, overrides: dict[str, Any] | None = None) -> tuple[Any, dict]:
    """Registered variant `name`'s model and manifest: loaded from the cache, or built and cached
    there first. `base` is the base model itself: loaded, never written as an artifact."""
    variant = get_variant(name)
    config = make_config(variant, overrides)
    if name == "base":
        return variant.build(base, config), {"variant": "base", "config": config_to_dict(config)}
    cached = cached_artifact_dir(name, config_to_dict(config), base)
    if (cached / MANIFEST).is_file():
        return variant.load(cached, base, config), read_manifest(cached)
    model, folder = build_artifact(name, base, overrides, cached)
    return model, read_manifest(folder)
