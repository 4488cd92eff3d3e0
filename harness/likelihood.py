"""Log-likelihood of continuations, and rolling log-likelihood of whole texts."""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Logits are batch x positions x vocabulary floats: 20 HumanEval solutions of ~300 tokens over
# Qwen's 151,936-token vocabulary would take 3.6 GB at once. Only the continuation positions get
# logits (`logits_to_keep`), and rows are scored in groups whose logits fit this budget.
LOGITS_BUDGET_BYTES = 512 * 2**20


@torch.inference_mode()
def score_continuations(
    model,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    max_length: int,
    pad_token_id: int,
) -> list[tuple[float, bool]]:
    """For each (context ids, continuation ids): sum of continuation log-probs, and whether every
    continuation token is the argmax (greedy). Sequences longer than `max_length` keep their end."""
    rows = []
    for context, continuation in pairs:
        whole = (list(context) + list(continuation))[-(max_length + 1) :]
        n_cont = min(len(continuation), len(whole) - 1)
        rows.append((whole[:-1], whole[-n_cont:]))
    vocab_size = model.get_output_embeddings().out_features
    results: list[tuple[float, bool]] = []
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows):
            kept = max(len(target) for _, target in rows[start : stop + 1])
            if (stop + 1 - start) * kept * vocab_size * 4 > LOGITS_BUDGET_BYTES:
                break
            stop += 1
        results.extend(_score_rows(model, rows[start:stop], pad_token_id))
        start = stop
    return results


def _score_rows(
    model, rows: list[tuple[list[int], list[int]]], pad_token_id: int
) -> list[tuple[float, bool]]:
    # Left-padded, so every row's continuation is predicted by the same last positions; position ids
    # follow each row's real tokens, so padding does not change a row's scores.
    longest = max(len(inputs) for inputs, _ in rows)
    input_ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (inputs, _) in enumerate(rows):
        input_ids[i, longest - len(inputs) :] = torch.tensor(inputs)
        attention_mask[i, longest - len(inputs) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    kept = max(len(target) for _, target in rows)
    device = model.device
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        logits_to_keep=kept,
    ).logits
    results = []
    for i, (_, target) in enumerate(rows):
        # The logits at position t predict token t+1: the last len(target) positions predict target.
        row_log_probs = torch.log_softmax(logits[i, kept - len(target) :].float(), dim=-1).cpu()
        target_ids = torch.tensor(target)
        token_log_probs = row_log_probs.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
        is_greedy = bool((row_log_probs.argmax(dim=-1) == target_ids).all())
        results.append((float(token_log_probs.sum()), is_greedy))
    return results


def rolling_windows(token_ids: Sequence[int], prefix_token_id: int, max_length: int):
    """lm-eval's disjoint rolling windows: every token is scored once, with as much context as fits."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    windows = get_rolling_token_windows(
        token_list=list(token_ids), prefix_token=prefix_token_id, max_seq_len=max_length, context_len=1
    )
    return [make_disjoint_window(w) for w in windows]
