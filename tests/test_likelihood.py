from __future__ import annotations

import math

import torch

from codegen_bench.harness.likelihood import rolling_windows, score_continuations


@torch.no_grad()
def _manual_logprob(model, context, continuation):
    ids = torch.tensor([context + continuation])
    log_probs = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
    total, greedy = 0.0, True
    for offset, token in enumerate(continuation):
        position = len(context) + offset - 1  # the logits at t predict token t+1
        total += float(log_probs[position, token])
        greedy &= int(log_probs[position].argmax()) == token
    return total, greedy


def test_continuation_logprob_matches_manual_sum(tiny):
    model, tokenizer = tiny
    pairs = [
        (tokenizer.encode("def add(a, b):\n"), tokenizer.encode("    return a + b\n")),
        (tokenizer.encode("import math\n\n"), tokenizer.encode("def f(x):")),
    ]
    ours = score_continuations(model, pairs, max_length=256, pad_token_id=tokenizer.pad_token_id)
    for (context, continuation), (logprob, greedy) in zip(pairs, ours, strict=True):
        expected, expected_greedy = _manual_logprob(model, context, continuation)
        assert math.isclose(logprob, expected, rel_tol=1e-5, abs_tol=1e-4)
        assert greedy == expected_greedy
        assert logprob < 0


def test_padding_in_a_batch_does_not_change_scores(tiny):
    model, tokenizer = tiny
    short = (tokenizer.encode("x = "), tokenizer.encode("1"))
    long = (
        tokenizer.encode("def f(numbers: list[int]) -> int:\n    return "),
        tokenizer.encode("sum(numbers)"),
    )
    together = score_continuations(model, [short, long], max_length=256, pad_token_id=tokenizer.pad_token_id)
    alone = score_continuations(model, [short], max_length=256, pad_token_id=tokenizer.pad_token_id)
    assert math.isclose(together[0][0], alone[0][0], rel_tol=1e-5, abs_tol=1e-4)


def test_scores_do_not_depend_on_how_rows_are_grouped_for_the_logits_budget(tiny, monkeypatch):
    from codegen_bench.harness import likelihood

    model, tokenizer = tiny
    pairs = [
        (tokenizer.encode("def add(a, b):\n"), tokenizer.encode("    return a + b\n")),
        (tokenizer.encode("x = "), tokenizer.encode("1")),
        (tokenizer.encode("import os\n"), tokenizer.encode("print(os.getcwd())")),
    ]
    together = score_continuations(model, pairs, max_length=256, pad_token_id=tokenizer.pad_token_id)
    monkeypatch.setattr(likelihood, "LOGITS_BUDGET_BYTES", 1)  # one row per forward pass
    apart = score_continuations(model, pairs, max_length=256, pad_token_id=tokenizer.pad_token_id)
    for (a, greedy_a), (b, greedy_b) in zip(together, apart, strict=True):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-4) and greedy_a == greedy_b


def test_rolling_windows_score_every_token_once(tiny):
    _, tokenizer = tiny
    tokens = tokenizer.encode("def add(a, b):\n    return a + b\n" * 6)
    windows = rolling_windows(tokens, prefix_token_id=tokenizer.eos_token_id, max_length=32)
    assert sum(len(continuation) for _, continuation in windows) == len(tokens)
    assert len(windows) > 1
