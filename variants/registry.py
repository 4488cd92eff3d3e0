"""The variant registry: a name, a typed config, and how to build and reload the variant.

Our own variants register with `@register_variant`; another package adds one through the
`codegen_bench.variants` entry-point group (the entry point names a module or callable that
registers on import, like lm-eval's models). Names are what users type: `--model_args variant=nf4`.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from codegen_bench.harness.config_args import config_from
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.loading import meta_model

ENTRY_POINT_GROUP = "codegen_bench.variants"


@dataclass(frozen=True)
class Variant:
    """How one variant is made.

    build(base, config) returns the variant's model from `base` (a `BaseModel`); save(model, dir)
    writes its weights into an artifact folder and load(dir, base, config) reads them back. The
    config is a frozen dataclass: it is what variant.json records, so the artifact can be rebuilt.
    check(model, config), where given, refuses a base model the variant cannot be made from: it gets
    the model built on the meta device (module tree and shapes, no weights), before any weight loads.
    """

    name: str
    config_cls: type
    build: Callable[..., Any]
    save: Callable[..., None]
    load: Callable[..., Any]
    description: str = ""
    check: Callable[[Any, Any], None] | None = None


_REGISTRY: dict[str, Variant] = {}
_entry_points_loaded = False


def register_variant(
    name: str,
    config_cls: type,
    *,
    save: Callable[..., None],
    load: Callable[..., Any],
    description: str = "",
    check: Callable[[Any, Any], None] | None = None,
):
    """Decorator on a build function: `@register_variant("l1-pruned", L1PrunedConfig, save=..., load=...)`."""
    if not dataclasses.is_dataclass(config_cls):
        raise TypeError(f"variant {name!r}: config_cls must be a dataclass, got {config_cls!r}")

    def decorate(build: Callable[..., Any]) -> Callable[..., Any]:
        existing = _REGISTRY.get(name)
        if existing is not None and existing.build is not build:
            raise CodegenBenchError(f"variant {name!r} is registered twice: give the new one another name")
        _REGISTRY[name] = Variant(
            name, config_cls, build, save, load, description or (build.__doc__ or ""), check
        )
        return build

    return decorate


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
        except Exception as exc:
            raise CodegenBenchError(
                f"variant plugin {entry_point.name!r} ({entry_point.value}) failed to import ({exc}): "
                "fix or uninstall the package that provides it"
            ) from exc
        if callable(loaded) and not isinstance(loaded, types.ModuleType):
            loaded()


def available_variants() -> list[str]:
    _load_entry_points()
    return sorted(_REGISTRY)


def get_variant(name: str) -> Variant:
    _load_entry_points()
    if name not in _REGISTRY:
        raise CodegenBenchError(
            f"variant={name!r} is unknown: available variants are {', '.join(sorted(_REGISTRY))} "
            "(or pass the path of a variant artifact folder)"
        )
    return _REGISTRY[name]


def make_config(variant: Variant, overrides: Mapping[str, Any] | None = None):
    """The variant's config with `overrides` applied (see harness/config_args.py)."""
    return config_from(variant.config_cls, overrides, owner=f"variant {variant.name!r}")


def check_fits_base(variant: Variant, config, base) -> None:
    """The variant's `check` on `base`'s module tree (a `BaseModel`; built on the meta device, nothing
    loaded): a model it cannot be made from is refused before any weight loads."""
    if variant.check is None:
        return
    variant.check(meta_model(base.name_or_path, base.load_config), config)


def config_to_dict(config) -> dict[str, Any]:
    return dataclasses.asdict(config)
