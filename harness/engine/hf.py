"""`backend=hf`: our engine on a transformers model, on CPU or GPU.

Generation is our continuous batching (`generation.py`), scoring our continuation log-likelihoods
(`likelihood.py`); on CPU the float32 linears are reordered once for oneDNN (`prepack.py`). With a
reference model loader (`kl_reference=`), scores also compare next-token distributions with that
model's, which is loaded at the first score that needs it: generation never does, and neither does a
score whose reference log-probs a `LogProbsFolder` already holds (`reference_log_probs`). An engine
given `keep_log_probs` leaves its own log-probs there for the models compared with it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from codegen_bench.harness.engine.generation import GenerationSettings, generate
from codegen_bench.harness.engine.likelihood import (
    ContinuationScore,
    LogProbsFolder,
    ReferenceLogProbs,
    score_continuations,
)
from codegen_bench.harness.engine.memory import loaded_memory_bytes, model_weight_bytes, peak_memory_bytes
from codegen_bench.harness.engine.prepack import can_prepack, prepack_linears_
from codegen_bench.harness.engine.protocol import EngineMemory, RowDone, eos_token_ids
from codegen_bench.harness.errors import CodegenBenchError


class HfEngine:
    def __init__(
        self,
        model,
        tokenizer,
        *,
        batch_size: int,
        seed: int,
        prepack: str,  # auto, true or false: the `prepack=` model arg
        load_reference: Callable[[], torch.nn.Module] | None = None,
        reference_log_probs: LogProbsFolder | None = None,
        keep_log_probs: LogProbsFolder | None = None,
    ) -> None:
        if prepack == "true" and not can_prepack(model):
            raise CodegenBenchError("prepack=true needs a float32 model on CPU with oneDNN: use prepack=auto")
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.prepack = prepack
        self.prepacked_linears = self._prepack(model)
        self.generator = torch.Generator(device=model.device).manual_seed(int(seed))
        self.dtype_name = str(model.dtype)
        self.device_name = str(model.device)
        self.reference = None
        if load_reference is not None:

            def load_prepacked_reference() -> torch.nn.Module:
                reference = load_reference()
                self._prepack(reference)
                return reference

            self.reference = ReferenceLogProbs(
                load_prepacked_reference, tokenizer.pad_token_id, reference_log_probs
            )
        self.keep_log_probs = keep_log_probs
        self.weight_memory_bytes = model_weight_bytes(model)
        self.loaded_memory_bytes = loaded_memory_bytes(model.device)

    def generate(
        self,
        prompts: Sequence[Sequence[int]],
        settings: GenerationSettings,
        eos_token_ids: set[int],
        on_row_done: RowDone,
    ) -> None:
        generate(
            self.model,
            self.tokenizer,
            prompts,
            settings,
            eos_token_ids,
            max_batch_size=self.batch_size,
            generator=self.generator,
            on_row_done=on_row_done,
        )

    def score(
        self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], max_length: int
    ) -> list[ContinuationScore]:
        return score_continuations(
            self.model, pairs, max_length, self.tokenizer.pad_token_id, self.reference, self.keep_log_probs
        )

    def _prepack(self, model: torch.nn.Module) -> int:
        """Prepack `model`'s float32 linears where `prepack` allows it; the number packed."""
        return prepack_linears_(model) if self.prepack != "false" and can_prepack(model) else 0

    def memory(self) -> EngineMemory:
        return EngineMemory(
            self.weight_memory_bytes, self.loaded_memory_bytes, peak_memory_bytes(self.model.device)
        )

    def eos_token_ids(self) -> set[int]:
        return eos_token_ids(self.model.generation_config, self.tokenizer)
