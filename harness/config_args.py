"""Typed dataclass configs from command-line strings (`--config sparsity=0.3`, `variant.r=8`)."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any

from codegen_bench.harness.errors import CodegenBenchError


def config_from(cls: type, overrides: Mapping[str, Any] | None, owner: str):
    """`cls(**overrides)`, converting strings to each field's type. An unknown key or a value of the
    wrong type fails with one line naming `owner`, the key and the valid keys."""
    fields = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in (overrides or {}).items():
        if key not in fields:
            raise CodegenBenchError(
                f"{owner} has no config key {key!r}: its keys are {', '.join(fields) or 'none'}"
            )
        values[key] = _convert(owner, key, value, hints[key])
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise CodegenBenchError(f"{owner}: invalid config {values} ({exc})") from exc


def _convert(owner: str, key: str, value: Any, hint: Any) -> Any:
    base = hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if typing.get_origin(base) is tuple:
        # "a+b+c" on the command line; a list where the config came back from JSON.
        return tuple(v for v in value.split("+") if v) if isinstance(value, str) else tuple(value)
    if dataclasses.is_dataclass(base) and isinstance(value, Mapping):
        return config_from(base, value, f"{owner} {key}")
    if not isinstance(value, str):
        return _checked_type(owner, key, value, base)
    try:
        if base is bool:
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if base in (int, float, str):
            return base(value)
    except ValueError as exc:
        raise CodegenBenchError(
            f"{owner}: {key}={value!r} is not a valid {getattr(base, '__name__', base)}"
        ) from exc
    return value


def _checked_type(owner: str, key: str, value: Any, base: Any) -> Any:
    """A value that arrived typed (from JSON, or lm-eval's parsing of `k=v` strings), held to the
    field's type: a number where a name is meant becomes its text; a bool is no number."""
    if base is str and isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    fits = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }
    if fits.get(base, True):
        return float(value) if base is float else value
    raise CodegenBenchError(f"{owner}: {key}={value!r} is not a valid {getattr(base, '__name__', base)}")
