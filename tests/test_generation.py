from __future__ import annotations

import pytest
import torch

from codegen_bench.harness.engine.generation import GenerationSettings, generate, truncate_at_stop
from codegen_bench.harness.errors import CodegenBenchError

PROMPTS = [
    "def add(a, b):\n",
    "from typing import List\n\n\ndef has_close_elements(",
    "import math\n",
    "    return sorted(",
    "class Stack:\n    def push(self, item):\n",
]


def _encode(tokenizer, texts):
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def _decode(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=True)


def _generate_counting(model, tokenizer, ids, settings, eos=frozenset(), **kwargs):
    """generate(), also returning how many tokens each row was reported to have generated."""
    counts = {}
    texts = generate(
        model,
        tokenizer,
        ids,
        settings,
        eos_token_ids=set(eos),
        on_row_done=lambda row, text, n, period: counts.__setitem__(row, n),
        **kwargs,
    )
    return texts, [counts[i] for i in range(len(ids))]


def test_truncate_at_stop_cuts_before_earliest_stop():
    assert truncate_at_stop("x = 1\n# note\ndef f", ["\ndef ", "\n#"]) == "x = 1"
    assert truncate_at_stop("no stop here", ["\ndef "]) == "no stop here"


@pytest.mark.parametrize("max_batch_size", [1, 2, 5])
def test_greedy_matches_transformers_generate(tiny, greedy_ids, max_batch_size):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    ours = generate(model, tokenizer, ids, GenerationSettings(max_new_tokens=12), set(), max_batch_size)
    reference = [_decode(tokenizer, greedy_ids(model, tokenizer, p, 12)) for p in ids]
    assert ours == reference


def test_completions_do_not_depend_on_batch_size_or_prefill_chunks(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    settings = GenerationSettings(max_new_tokens=10)
    one_by_one = [generate(model, tokenizer, [p], settings, set(), 1)[0] for p in ids]
    for max_batch_size in (2, 3, 8):
        assert generate(model, tokenizer, ids, settings, set(), max_batch_size) == one_by_one
    chunked = generate(model, tokenizer, ids, settings, set(), 3, prefill_chunk_tokens=2)
    assert chunked == one_by_one


def test_each_row_stops_at_its_own_stop_string(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS[:2])
    full = generate(model, tokenizer, ids, GenerationSettings(max_new_tokens=16), set(), 2)
    stop = full[0][5:8]  # a string row 0 is known to produce
    assert stop not in full[1]
    stopped, counts = _generate_counting(
        model, tokenizer, ids, GenerationSettings(max_new_tokens=16, stop_strings=(stop,)), max_batch_size=2
    )
    assert stopped[0] == full[0][: full[0].find(stop)]
    assert counts[0] < 16
    assert stopped[1] == full[1] and counts[1] == 16  # row 1 runs on to its own budget


def test_stop_string_spanning_two_tokens_ends_the_row_at_the_second(tiny, greedy_ids):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS[:1])
    tokens = greedy_ids(model, tokenizer, ids[0], 16)
    pieces = [tokenizer.decode([t], skip_special_tokens=True) for t in tokens]
    text = "".join(pieces)
    # The last character of one token and the first of the next, first occurring right there.
    for i in range(len(pieces) - 1):
        stop = pieces[i][-1:] + pieces[i + 1][:1]
        cut = len("".join(pieces[: i + 1])) - 1
        if len(stop) == 2 and text.find(stop) == cut:
            break
    else:
        pytest.fail("no token boundary usable for this test")
    stopped, counts = _generate_counting(
        model, tokenizer, ids, GenerationSettings(max_new_tokens=16, stop_strings=(stop,)), max_batch_size=1
    )
    assert stopped == [text[:cut]]
    assert counts == [i + 2]  # stopped as soon as the token completing the stop string came


def test_end_of_sequence_ends_only_its_row(tiny, greedy_ids):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS[:3])
    first_tokens = [greedy_ids(model, tokenizer, p, 3) for p in ids]
    eos = first_tokens[0][1]  # row 0's second token
    assert all(eos not in tokens[:3] for tokens in first_tokens[1:])
    texts, counts = _generate_counting(
        model, tokenizer, ids, GenerationSettings(max_new_tokens=3), {eos}, max_batch_size=3
    )
    assert texts[0] == _decode(tokenizer, first_tokens[0][:1])
    assert counts == [2, 3, 3]  # the end-of-sequence token counts as generated


def test_max_new_tokens_bounds_every_row(tiny, greedy_ids):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    texts, counts = _generate_counting(
        model, tokenizer, ids, GenerationSettings(max_new_tokens=4), max_batch_size=2
    )
    assert counts == [4] * len(PROMPTS)
    assert texts == [_decode(tokenizer, greedy_ids(model, tokenizer, p, 4)) for p in ids]


def test_finished_rows_hand_their_slot_to_waiting_prompts(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    batch_sizes = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: batch_sizes.append(kwargs["input_ids"].shape), with_kwargs=True
    )
    try:
        # Each row: its first token from the prefill, then 2 decoding steps.
        generate(model, tokenizer, ids, GenerationSettings(max_new_tokens=3), set(), max_batch_size=2)
    finally:
        hook.remove()
    prefills = [shape for shape in batch_sizes if shape[1] > 1 or shape[0] == 1]
    decodes = [shape[0] for shape in batch_sizes if shape[1] == 1]
    assert all(shape[0] == 1 for shape in prefills)  # each prompt is prefilled on its own
    assert max(decodes) == 2
    # 5 rows x 2 decoding steps each = 10 row-steps; a full batch of 2 needs 5 steps, no more.
    assert sum(decodes) == 10 and len(decodes) <= 6


def test_prefix_shared_by_every_prompt_is_computed_once(tiny):
    model, tokenizer = tiny
    instruction = "# Complete the following function and keep its signature.\n"
    ids = _encode(tokenizer, [instruction + p for p in PROMPTS[:3]])
    shared = len(_encode(tokenizer, [instruction])[0])
    assert shared >= 16 and all(p[:shared] == ids[0][:shared] for p in ids)
    settings = GenerationSettings(max_new_tokens=8)
    one_by_one = [generate(model, tokenizer, [p], settings, set(), 1)[0] for p in ids]
    prefill_tokens = []

    def count_prefill(module, args, kwargs):
        if kwargs["input_ids"].shape[1] > 1:
            prefill_tokens.append(kwargs["input_ids"].shape[1])

    hook = model.register_forward_pre_hook(count_prefill, with_kwargs=True)
    try:
        together = generate(model, tokenizer, ids, settings, set(), max_batch_size=2)
    finally:
        hook.remove()
    assert together == one_by_one
    assert sum(prefill_tokens) == shared + sum(len(p) - shared for p in ids)


def test_sampling_is_reproducible_with_a_seeded_generator(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.8, top_p=0.95)
    a = generate(model, tokenizer, ids, settings, set(), 3, torch.Generator().manual_seed(7))
    b = generate(model, tokenizer, ids, settings, set(), 3, torch.Generator().manual_seed(7))
    assert a == b


def test_empty_prompt_is_a_clear_error(tiny):
    model, tokenizer = tiny
    with pytest.raises(CodegenBenchError, match="prompt is empty"):
        generate(model, tokenizer, [[1, 2], []], GenerationSettings(max_new_tokens=2), set(), 2)


def test_kv_cache_budget_limits_the_rows_at_once_not_the_results(tiny, monkeypatch, caplog):
    from codegen_bench.harness.engine import generation

    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    settings = GenerationSettings(max_new_tokens=6)
    unlimited = generate(model, tokenizer, ids, settings, set(), max_batch_size=5)
    capacity = max(map(len, ids)) + 6
    per_position = generation.SlotCache.bytes_per_position(model)
    monkeypatch.setattr(generation, "KV_CACHE_BUDGET_BYTES", 2 * capacity * per_position)
    with caplog.at_level("WARNING"):
        assert generate(model, tokenizer, ids, settings, set(), max_batch_size=5) == unlimited
    assert "2 rows at once instead of 5" in caplog.text


def test_zero_token_budget_generates_nothing(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS[:2])
    assert generate(model, tokenizer, ids, GenerationSettings(max_new_tokens=0), set(), 2) == ["", ""]
