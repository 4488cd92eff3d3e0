"""What every engine does: the contract the `codegen` lm-eval model talks to.

An engine receives token ids, never text: the prompt (chat template, task fields, the budget left
by `max_gen_toks`) is built once, by the lm-eval model, so every engine sees the same ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from codegen_bench.harness.engine.generation import GenerationSettings
from codegen_bench.harness.engine.likelihood import ContinuationScore

# on_row_done(row, text, n_tokens, repeat_period): a prompt's generation is finished (stop strings
# cut off); repeat_period is the period of the repetition that ended it early, else None.
RowDone = Callable[[int, str, int, int | None], None]


@dataclass(frozen=True)
class EngineMemory:
    """What the engine's model holds in this process (None where it lives in another, as vLLM's)."""

    weight_memory_bytes: int | None
    loaded_memory_bytes: int | None
    peak_memory_bytes: int | None


class Engine(Protocol):
    dtype_name: str
    device_name: str
    prepacked_linears: int

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        settings: GenerationSettings,
        eos_token_ids: set[int],
        on_row_done: RowDone,
    ) -> None:
        """Generate for every prompt under `settings`, calling `on_row_done` as each finishes."""

    def score(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int
    ) -> list[ContinuationScore]:
        """For each (context ids, continuation ids): the continuation's summed log-prob and whether
        it is the greedy choice, on the tokens `likelihood.scored_window` keeps."""

    def memory(self) -> EngineMemory: ...

    def eos_token_ids(self) -> set[int]:
        """The ids that end a generation: the model's generation config's and the tokenizer's."""


def eos_token_ids(generation_config, tokenizer) -> set[int]:
    ids = generation_config.eos_token_id
    ids = set(ids if isinstance(ids, list) else [ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return ids
