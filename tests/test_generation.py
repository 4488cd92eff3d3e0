from __future__ import annotations

import torch

from codegen_bench.harness.generation import GenerationSettings, generate_batch, truncate_at_stop

PROMPTS = ["def add(a, b):\n", "from typing import List\n\n\ndef has_close_elements(", "import math\n"]


def _encode(tokenizer, texts):
    return [tokenizer.encode(t, add_special_tokens=False) for t in texts]


def _hf_greedy(model, tokenizer, prompt_ids, max_new_tokens):
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    return tokenizer.decode(out[0, len(prompt_ids) :], skip_special_tokens=True)


def test_truncate_at_stop_cuts_before_earliest_stop():
    assert truncate_at_stop("x = 1\n# note\ndef f", ["\ndef ", "\n#"]) == "x = 1"
    assert truncate_at_stop("no stop here", ["\ndef "]) == "no stop here"


def test_greedy_matches_transformers_generate(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    settings = GenerationSettings(max_new_tokens=12)
    ours = generate_batch(model, tokenizer, ids, settings, eos_token_ids=set())
    reference = [_hf_greedy(model, tokenizer, p, 12) for p in ids]
    assert ours == reference


def test_completions_do_not_depend_on_batch_composition(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    settings = GenerationSettings(max_new_tokens=10)
    batched = generate_batch(model, tokenizer, ids, settings, eos_token_ids=set())
    one_by_one = [generate_batch(model, tokenizer, [p], settings, eos_token_ids=set())[0] for p in ids]
    assert batched == one_by_one


def test_row_stops_at_its_own_stop_string(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS[:1])
    full = generate_batch(model, tokenizer, ids, GenerationSettings(max_new_tokens=16), eos_token_ids=set())[
        0
    ]
    stop = full[5:8]  # a string the model is known to produce
    stopped = generate_batch(
        model,
        tokenizer,
        ids,
        GenerationSettings(max_new_tokens=16, stop_strings=(stop,)),
        eos_token_ids=set(),
    )[0]
    assert stopped == full[: full.find(stop)]


def test_finished_rows_leave_the_batch(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    # Make row 0 finish after its first token: its first greedy token is an end-of-sequence id.
    first = generate_batch(
        model, tokenizer, ids[:1], GenerationSettings(max_new_tokens=1), eos_token_ids=set()
    )
    first_token = tokenizer.encode(first[0], add_special_tokens=False)[0]
    batch_sizes = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: batch_sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        generate_batch(
            model, tokenizer, ids, GenerationSettings(max_new_tokens=6), eos_token_ids={first_token}
        )
    finally:
        hook.remove()
    assert batch_sizes[0] == 3  # prefill
    assert max(batch_sizes[1:]) < 3  # row 0 was dropped before the first decoding step


def test_sampling_is_reproducible_with_a_seeded_generator(tiny):
    model, tokenizer = tiny
    ids = _encode(tokenizer, PROMPTS)
    settings = GenerationSettings(max_new_tokens=8, do_sample=True, temperature=0.8, top_p=0.95)
    a = generate_batch(model, tokenizer, ids, settings, set(), torch.Generator().manual_seed(7))
    b = generate_batch(model, tokenizer, ids, settings, set(), torch.Generator().manual_seed(7))
    assert a == b
