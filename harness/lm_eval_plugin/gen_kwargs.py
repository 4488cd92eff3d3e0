"""Generation kwargs, checked in one place: a task's `generation_kwargs`, lm-eval's `--gen_kwargs` and
`codegen-bench matrix --gen-kwargs` all become `GenerationSettings` here.

Values arrive typed by lm-eval (its CLI reads `--gen_kwargs` with `ast.literal_eval`, a task's YAML
gives ints, floats and lists) or as strings (`simple_parse_args_string` leaves what is not a number or
a bool as text), so each key takes both. The checks run before a model is loaded: the `lm_eval`
command through the plugin hook (`check_evaluation_inputs`), the matrix in `check_matrix_config`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from codegen_bench.harness.engine.generation import DEFAULT_MAX_NEW_TOKENS, GenerationSettings
from codegen_bench.harness.engine.repetition import RepetitionCut
from codegen_bench.harness.errors import CodegenBenchError

# What our engines do; lm-eval's `hf` model would pass any other key on to `generate`.
SUPPORTED_GEN_KWARGS = ("until", "max_gen_toks", "do_sample", "temperature", "top_p")


def _refuse(where: str, key: str, value: Any, allowed: str) -> CodegenBenchError:
    return CodegenBenchError(f"{where}: {key}={value!r} is not valid: {allowed}")


def _number(where: str, key: str, value: Any, allowed: str) -> float:
    if isinstance(value, bool):
        raise _refuse(where, key, value, allowed)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _refuse(where, key, value, allowed) from None
    if not math.isfinite(number):
        raise _refuse(where, key, value, allowed)
    return number


def _max_gen_toks(where: str, value: Any) -> int:
    allowed = "give the most tokens to generate, a whole number >= 1 (e.g. max_gen_toks=512)"
    number = _number(where, "max_gen_toks", value, allowed)
    if number < 1 or not number.is_integer():
        raise _refuse(where, "max_gen_toks", value, allowed)
    return int(number)


def _do_sample(where: str, value: Any) -> bool:
    text = str(value).lower()
    if text not in ("true", "false", "1", "0"):
        raise _refuse(where, "do_sample", value, "use true (sampling) or false (greedy)")
    return text in ("true", "1")


def _until(where: str, value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list | tuple) or not all(isinstance(s, str) and s for s in stops):
        raise _refuse(
            where, "until", value, 'give a non-empty stop string or a list of them (e.g. until=["\\n\\n"])'
        )
    return tuple(stops)


def generation_settings(
    gen_kwargs: Mapping[str, Any] | None,
    repetition_cut: RepetitionCut | None = None,
    where: str = "generation_kwargs",
) -> GenerationSettings:
    """`gen_kwargs` as the settings every engine takes; a key we do not support, or a value of the
    wrong type or out of range, fails with one line naming `where`, the key, the value and the fix."""
    gen_kwargs = dict(gen_kwargs or {})
    unknown = sorted(set(gen_kwargs) - set(SUPPORTED_GEN_KWARGS))
    if unknown:
        raise CodegenBenchError(
            f"{where}: {', '.join(unknown)} not supported by --model codegen: "
            f"use {', '.join(SUPPORTED_GEN_KWARGS)}"
        )
    temperature = 1.0
    if "temperature" in gen_kwargs:
        allowed = "use a number >= 0 (0: greedy)"
        temperature = _number(where, "temperature", gen_kwargs["temperature"], allowed)
        if temperature < 0:
            raise _refuse(where, "temperature", gen_kwargs["temperature"], allowed)
    top_p = 1.0
    if "top_p" in gen_kwargs:
        allowed = "use a number in (0, 1] (1: no nucleus cut)"
        top_p = _number(where, "top_p", gen_kwargs["top_p"], allowed)
        if not 0 < top_p <= 1:
            raise _refuse(where, "top_p", gen_kwargs["top_p"], allowed)
    until = gen_kwargs.get("until")
    return GenerationSettings(
        max_new_tokens=_max_gen_toks(where, gen_kwargs["max_gen_toks"])
        if "max_gen_toks" in gen_kwargs
        else DEFAULT_MAX_NEW_TOKENS,
        # lm-eval leaves `until` empty or None where a task sets no stop.
        stop_strings=_until(where, until) if until not in (None, [], ()) else (),
        do_sample=_do_sample(where, gen_kwargs["do_sample"]) if "do_sample" in gen_kwargs else False,
        temperature=temperature,
        top_p=top_p,
        repetition_cut=repetition_cut,
    )
