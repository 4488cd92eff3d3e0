"""The latency suite's sizes (how much work benchmarks/test_latency.py times) and the size a stored
RUN/latency.json was measured at. Free of torch and lm-eval: `codegen-bench matrix --help` lists the
sizes, and benchmarks/conftest.py takes its defaults from the full one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

LATENCY_FILE = "latency.json"


@dataclass(frozen=True)
class LatencySize:
    """How much work the suite times: `rounds` timed rounds per benchmark (after one warm-up round),
    a prefill of `prompt_tokens`, and decoding of `new_tokens` per row after `decode_prompt_tokens`
    random tokens per row (benchmarks/test_latency.py)."""

    rounds: int
    prompt_tokens: int
    new_tokens: int
    decode_prompt_tokens: int

    def text(self) -> str:
        """The size in words, for the leaderboard and `codegen-bench matrix --help`."""
        return (
            f"{self.rounds} timed round{'s' if self.rounds != 1 else ''} per benchmark, prefill of "
            f"{self.prompt_tokens} tokens, decode of {self.new_tokens} new tokens after "
            f"{self.decode_prompt_tokens}-token prompts"
        )


# full: the suite's defaults. demo: `make demo`, where the full size takes as long as all the quality
# cells on a 2-core CPU; its one timed round gives no spread.
LATENCY_SIZES = {
    "full": LatencySize(rounds=3, prompt_tokens=256, new_tokens=64, decode_prompt_tokens=16),
    "demo": LatencySize(rounds=1, prompt_tokens=64, new_tokens=16, decode_prompt_tokens=16),
}


def latency_size_name(size: LatencySize) -> str | None:
    """The preset `size` is, or None for a size of no preset."""
    return next((name for name, preset in LATENCY_SIZES.items() if preset == size), None)


def latency_size_text(size: LatencySize | None) -> str:
    """The leaderboard's sentence on the size its latency figures were measured at."""
    if size is None:
        return (
            f"Latency suite at a size its {LATENCY_FILE} does not record (measured before the suite "
            "recorded it); rerunning the matrix measures it again at the size it asks for."
        )
    name = latency_size_name(size)
    text = f"Latency suite at {f'its {name} size' if name else 'a size of its own'}: {size.text()}"
    if name != "full":
        full = LATENCY_SIZES["full"]
        text += (
            f" (the full size: {full.rounds} rounds, {full.prompt_tokens}, {full.new_tokens}, "
            f"{full.decode_prompt_tokens})"
        )
    return text + "."


def stored_benchmarks(path: Path) -> list[dict]:
    """The benchmarks of a stored latency.json; none when there is no readable one."""
    if not path.is_file():
        return []
    try:
        benchmarks = json.loads(path.read_text())["benchmarks"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
        return []
    return [b for b in benchmarks if isinstance(b, dict)] if isinstance(benchmarks, list) else []


def measured_latency_size(path: Path) -> LatencySize | None:
    """The size a stored latency.json was measured at, read from what its benchmarks did: timed
    rounds from pytest-benchmark's stats, the prefill benchmark's prompt, the decode benchmarks' new
    tokens and prompts. None: no such file, a value no benchmark records (a file from before the
    decode benchmarks recorded their prompts), or benchmarks that disagree."""
    seen: dict[str, set] = {"rounds": set(), "prompt_tokens": set(), "new_tokens": set()}
    seen["decode_prompt_tokens"] = set()
    for bench in stored_benchmarks(path):
        name, info = str(bench.get("name", "")), bench.get("extra_info") or {}
        seen["rounds"].add((bench.get("stats") or {}).get("rounds"))
        if name.startswith("test_prefill_latency"):
            seen["prompt_tokens"].add(info.get("prompt_tokens"))
        elif name.startswith("test_decode_throughput"):
            seen["new_tokens"].add(info.get("new_tokens"))
            seen["decode_prompt_tokens"].add(info.get("decode_prompt_tokens"))
    if any(len(values) != 1 or None in values for values in seen.values()):
        return None
    return LatencySize(**{key: values.pop() for key, values in seen.items()})
