"""Calibration token batches for activation-aware compressors (Wanda), from the standard library.

The texts are the training split of the stdlib-derived code pairs (harness/corpus/stdlib.py), which are
decontaminated against HumanEval, so calibrating never shows the model an evaluation problem.
"""

from __future__ import annotations

import random

import torch

from codegen_bench.harness.corpus.stdlib import DataConfig, build_datasets


def calibration_batches(tokenizer, n_samples: int, seq_len: int, seed: int = 0) -> list[torch.Tensor]:
    """`n_samples` tensors of shape [1, seq_len], cut from a seeded shuffle of the stdlib functions."""
    codegen, _, _ = build_datasets(DataConfig())
    texts = [pair["prompt"] + pair["completion"] for pair in codegen if pair["split"] == "train"]
    random.Random(seed).shuffle(texts)
    stream: list[int] = []
    batches = []
    for text in texts:
        stream.extend(tokenizer.encode(text + "\n\n", add_special_tokens=False))
        while len(stream) >= seq_len and len(batches) < n_samples:
            batches.append(torch.tensor([stream[:seq_len]]))
            stream = stream[seq_len:]
        if len(batches) == n_samples:
            return batches
    raise ValueError(f"the stdlib pairs hold fewer than {n_samples} x {seq_len} tokens")
