"""The matmul shapes that FLOP counts and the roofline come from, read off any architecture's modules."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPTNeoXConfig, Qwen2Config

from codegen_bench.harness.engine.roofline import MatmulShapes, generation_flops


def _on_meta(config):
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def test_a_gated_decoder_with_grouped_kv_heads_has_its_seven_projections():
    config = Qwen2Config(
        vocab_size=300, hidden_size=64, intermediate_size=96, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    shapes = MatmulShapes.of(_on_meta(config))
    assert shapes.layer == ((64, 64), (32, 64), (32, 64), (64, 64), (96, 64), (96, 64), (64, 96))
    assert shapes.layers == 3 and shapes.head == (300, 64)
    assert shapes.layer_params() == 3 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 96 * 64)


def test_gpt2s_conv1d_projections_are_counted_out_by_in():
    config = GPT2Config(vocab_size=300, n_embd=64, n_layer=2, n_head=4, n_positions=128)
    shapes = MatmulShapes.of(_on_meta(config))
    # c_attn (fused q, k, v), attention c_proj, mlp c_fc and c_proj; the head is the tied embedding.
    assert shapes.layer == ((192, 64), (64, 64), (256, 64), (64, 256))
    assert shapes.layers == 2 and shapes.head == (300, 64)


def test_an_ungated_mlp_has_two_matmuls_not_three():
    config = GPTNeoXConfig(
        vocab_size=300, hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4
    )
    shapes = MatmulShapes.of(_on_meta(config))
    assert shapes.layer == ((192, 64), (64, 64), (256, 64), (64, 256))
    # Every prompt token and fed-back generated token through the layers, every generated one out.
    tokens_through, generated = 10 + 5 - 1, 5
    expected = 2.0 * (2 * (192 + 64 + 256 + 256) * 64 * tokens_through + 300 * 64 * generated)
    assert generation_flops(shapes, 10, 5, 1) == expected
