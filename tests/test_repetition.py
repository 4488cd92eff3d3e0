"""Degenerate generations end early: the cut is where the last tokens start repeating, in every engine."""

from __future__ import annotations

import pytest

from codegen_bench.harness.engine.generation import GenerationSettings, generate
from codegen_bench.harness.engine.repetition import RepetitionCut, first_cut, repeating_period
from codegen_bench.harness.errors import CodegenBenchError

CUT = RepetitionCut(min_run_tokens=16, max_period_tokens=8)
# Prompts on which the tiny random model loops (several of them) or wanders (the rest).
PROMPTS = [
    "def add(a, b):\n",
    "import math\n",
    "    return sorted(",
    "class Stack:\n",
    "x = [",
    "# ",
    "print(",
]


def test_the_shortest_period_of_a_repeating_tail_is_found():
    assert repeating_period([7, 8, 9] * 6, CUT) == 3
    assert repeating_period([4] * 16, CUT) == 1
    assert repeating_period([1, 2, 1, 2] * 4, CUT) == 2  # not 4
    assert repeating_period([1, 2, 3] * 6 + [4], CUT) is None
    assert repeating_period(list(range(9)) * 2, CUT) is None  # period 9: longer than allowed
    assert repeating_period([5] * 15, CUT) is None  # shorter than the run that cuts


def test_the_first_cut_is_where_the_run_becomes_long_enough():
    tokens = [9, 8, 7, 6] + [1, 2] * 20
    assert first_cut(tokens, CUT) == (4 + 16, 2)
    assert first_cut(list(range(40)), CUT) is None


def test_a_cut_that_cannot_see_a_period_is_refused():
    with pytest.raises(CodegenBenchError, match="1 <= max_period_tokens < min_run_tokens"):
        RepetitionCut(min_run_tokens=8, max_period_tokens=8)


def test_generation_ends_a_looping_row_where_its_tokens_start_repeating(tiny, greedy_ids):
    model, tokenizer = tiny
    prompts = [tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS]
    budget = 120
    uncut = [greedy_ids(model, tokenizer, p, budget) for p in prompts]
    expected = [first_cut(ids, CUT) for ids in uncut]
    assert sum(e is not None for e in expected) >= 3  # the test needs looping rows

    ended = {}
    texts = generate(
        model,
        tokenizer,
        prompts,
        GenerationSettings(max_new_tokens=budget, repetition_cut=CUT),
        set(),
        max_batch_size=3,
        on_row_done=lambda row, text, n, period: ended.__setitem__(row, (n, period)),
    )
    for row, ids in enumerate(uncut):
        kept, period = expected[row] or (budget, None)
        assert ended[row] == (kept, period)
        assert texts[row] == tokenizer.decode(ids[:kept], skip_special_tokens=True)
    without_cut = generate(
        model, tokenizer, prompts, GenerationSettings(max_new_tokens=budget, repetition_cut=None), set(), 3
    )
    assert without_cut == [tokenizer.decode(ids, skip_special_tokens=True) for ids in uncut]


def test_the_lm_eval_model_counts_cut_rows_and_can_turn_the_cut_off(tiny_model_dir):
    from lm_eval.api.instance import Instance

    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    gen_kwargs = {"until": [], "max_gen_toks": 200, "do_sample": False}
    requests = [
        Instance("generate_until", doc={}, arguments=(p, gen_kwargs), idx=i) for i, p in enumerate(PROMPTS)
    ]
    kwargs = {"pretrained": str(tiny_model_dir), "batch_size": 4, "max_length": 256, "chat": "false"}
    cutting = CodegenLM(**kwargs)
    cut_texts = cutting.generate_until(requests)
    full = CodegenLM(**kwargs, cut_repetitions="false")
    full_texts = full.generate_until(requests)
    assert cutting.generation_stats.cut_repeating >= 1 and full.generation_stats.cut_repeating == 0
    assert cutting.generation_stats.tokens < full.generation_stats.tokens
    assert all(f.startswith(c) for c, f in zip(cut_texts, full_texts, strict=True))
    assert (
        sum(c != f for c, f in zip(cut_texts, full_texts, strict=True))
        == cutting.generation_stats.cut_repeating
    )
    with pytest.raises(
        CodegenBenchError, match="cut_repetitions='maybe' is not valid: use one of true, false"
    ):
        CodegenLM(**kwargs, cut_repetitions="maybe")
