"""Log-likelihood of continuations, and rolling log-likelihood of whole texts."""

from __future__ import annotations

from collections.abc import Sequence

import torch


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
        rows.append((whole[:-1], len(continuation)))
    longest = max(len(inputs) for inputs, _ in rows)
    input_ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (inputs, _) in enumerate(rows):
        input_ids[i, : len(inputs)] = torch.tensor(inputs)
        attention_mask[i, : len(inputs)] = 1
    logits = model(
        input_ids=input_ids.to(model.device), attention_mask=attention_mask.to(model.device)
    ).logits.float()
    log_probs = torch.log_softmax(logits, dim=-1).cpu()
    results = []
    for i, ((_, continuation), (inputs, n_cont)) in enumerate(zip(pairs, rows, strict=True)):
        # The logits at position t predict token t+1: continuation tokens are predicted by the
        # last n_cont positions of this row's real (unpadded) inputs.
        end = len(inputs)
        row_log_probs = log_probs[i, end - n_cont : end]
        target = torch.tensor(list(continuation)[-n_cont:])
        token_log_probs = row_log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        is_greedy = bool((row_log_probs.argmax(dim=-1) == target).all())
        results.append((float(token_log_probs.sum()), is_greedy))
    return results


def rolling_windows(token_ids: Sequence[int], prefix_token_id: int, max_length: int):
    """lm-eval's disjoint rolling windows: every token is scored once, with as much context as fits."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    windows = get_rolling_token_windows(
        token_list=list(token_ids), prefix_token=prefix_token_id, max_seq_len=max_length, context_len=1
    )
    return [make_disjoint_window(w) for w in windows]
