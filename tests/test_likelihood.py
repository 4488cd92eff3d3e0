from __future__ import annotations

import math

import pytest
import torch

from codegen_bench.harness.engine.likelihood import (
    ContinuationScore,
    LogProbsFolder,
    ReferenceLogProbs,
    rolling_windows,
    score_continuations,
)


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
    from codegen_bench.harness.engine import likelihood

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


def _perturbed(model):
    import copy

    other = copy.deepcopy(model)
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in other.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return other


@torch.no_grad()
def _manual_divergence(model, reference, context, continuation):
    ids = torch.tensor([context + continuation])
    ours = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    theirs = torch.log_softmax(reference(ids).logits[0].double(), dim=-1)
    kl, agree = 0.0, 0
    for offset in range(len(continuation)):
        position = len(context) + offset - 1
        kl += float((theirs[position].exp() * (theirs[position] - ours[position])).sum())
        agree += int(ours[position].argmax() == theirs[position].argmax())
    return kl, agree


def test_divergence_from_a_reference_model_matches_a_manual_computation(tiny):
    model, tokenizer = tiny
    reference = _perturbed(model)
    pairs = [
        (tokenizer.encode("def add(a, b):\n"), tokenizer.encode("    return a + b\n")),
        (tokenizer.encode("import math\n\n"), tokenizer.encode("def f(x):")),
    ]
    compared_with = ReferenceLogProbs(lambda: reference, tokenizer.pad_token_id)
    ours = score_continuations(model, pairs, 256, tokenizer.pad_token_id, compared_with)
    plain = score_continuations(model, pairs, 256, tokenizer.pad_token_id)
    for (context, continuation), score, without in zip(pairs, ours, plain, strict=True):
        kl, agree = _manual_divergence(model, reference, context, continuation)
        assert score.kl_sum == pytest.approx(kl, rel=1e-4, abs=1e-5) and score.kl_sum > 0
        assert score.top1_agreements == agree and score.n_tokens == len(continuation)
        assert tuple(score) == pytest.approx(tuple(without))  # the likelihood itself is unchanged


def test_a_model_against_itself_diverges_by_nothing(tiny):
    model, tokenizer = tiny
    pairs = [(tokenizer.encode("def add(a, b):\n"), tokenizer.encode("    return a + b\n"))]
    itself = ReferenceLogProbs(lambda: model, tokenizer.pad_token_id)
    (score,) = score_continuations(model, pairs, 256, tokenizer.pad_token_id, itself)
    assert score.kl_sum == pytest.approx(0.0, abs=1e-6)
    assert score.top1_agreements == score.n_tokens == len(pairs[0][1])


def _comparison(score: ContinuationScore) -> tuple:
    return (*score, score.kl_sum, score.top1_agreements, score.n_tokens)


def test_kept_reference_log_probs_give_the_same_comparison_without_loading_the_reference(tiny, tmp_path):
    model, tokenizer = tiny
    reference = _perturbed(model)
    pad = tokenizer.pad_token_id
    pairs = [
        (tokenizer.encode("def add(a, b):\n"), tokenizer.encode("    return a + b\n")),
        (tokenizer.encode("import math\n\n"), tokenizer.encode("def f(x):")),
    ]
    loads = []

    def load():
        loads.append(1)
        return reference

    computed = score_continuations(
        model, pairs, 256, pad, ReferenceLogProbs(load, pad, LogProbsFolder(tmp_path / "a"))
    )
    assert len(loads) == 1 and all(score.reference_computed for score in computed)
    kept = score_continuations(
        model, pairs, 256, pad, ReferenceLogProbs(load, pad, LogProbsFolder(tmp_path / "a"))
    )
    assert len(loads) == 1 and not any(score.reference_computed for score in kept)
    assert [_comparison(s) for s in kept] == [_comparison(s) for s in computed]  # bit for bit

    # The reference's own scoring can leave them, as a matrix's reference cell does.
    score_continuations(reference, pairs, 256, pad, keep_log_probs=LogProbsFolder(tmp_path / "b"))
    left = score_continuations(
        model, pairs, 256, pad, ReferenceLogProbs(load, pad, LogProbsFolder(tmp_path / "b"))
    )
    assert len(loads) == 1 and [_comparison(s) for s in left] == [_comparison(s) for s in computed]

    # Other rows than the kept batches: the reference is loaded and computes them.
    other = [(tokenizer.encode("x = 1\n"), tokenizer.encode("y = 2\n"))]
    (score,) = score_continuations(
        model, other, 256, pad, ReferenceLogProbs(load, pad, LogProbsFolder(tmp_path / "b"))
    )
    assert len(loads) == 2 and score.reference_computed and score.kl_sum > 0


def test_log_probs_that_cannot_be_written_are_computed_again_and_no_score_is_lost(
    tiny, tmp_path, monkeypatch
):
    import safetensors.torch

    model, tokenizer = tiny
    pad = tokenizer.pad_token_id
    pairs = [(tokenizer.encode("def add(a, b):\n"), tokenizer.encode("    return a + b\n"))]
    expected = score_continuations(model, pairs, 256, pad, ReferenceLogProbs(lambda: model, pad))

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    folder = LogProbsFolder(tmp_path)
    kept = score_continuations(model, pairs, 256, pad, keep_log_probs=folder)
    assert [tuple(s) for s in kept] == [tuple(s) for s in expected] and not folder.writable
    assert list(tmp_path.iterdir()) == []  # no half-written file left behind
    loads = []
    reference = ReferenceLogProbs(lambda: loads.append(1) or model, pad, LogProbsFolder(tmp_path))
    (score,) = score_continuations(model, pairs, 256, pad, reference)
    assert loads == [1] and _comparison(score) == _comparison(expected[0])


def test_continuation_scores_survive_pickling_with_their_comparison():
    import pickle

    score = ContinuationScore(-3.5, False, kl_sum=0.25, top1_agreements=4, n_tokens=5)
    again = pickle.loads(pickle.dumps(score))
    assert again == (-3.5, False) and (again.kl_sum, again.top1_agreements, again.n_tokens) == (0.25, 4, 5)
    logprob, greedy = again  # lm-eval unpacks it as the plain pair
    assert (logprob, greedy) == (-3.5, False)
