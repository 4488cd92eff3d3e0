"""Pruning and int8 on decoder layouts other than Qwen2's: GPT-NeoX (gpt_neox.layers, fused
query_key_value, dense_4h_to_h) and GPT-2 (transformer.h, projections in transformers' Conv1D, whose
weight is a Linear's transposed: [in, out])."""

from __future__ import annotations

import copy
import logging
import re

import pytest
import torch
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.variants.prune import L1Unstructured, Wanda, measure_sparsity, prune_, wanda_prune_
from codegen_bench.variants.quantize import Int8Dynamic, quantize_


@pytest.fixture(scope="module")
def gpt_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    config = GPTNeoXConfig(
        vocab_size=600,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    return GPTNeoXForCausalLM(config).eval()


def _gpt2_config():
    from transformers import GPT2Config

    return GPT2Config(vocab_size=600, n_embd=64, n_layer=2, n_head=4, n_positions=512)


@pytest.fixture(scope="module")
def gpt2():
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(_gpt2_config()).eval()


def _calibration(n=4, seq_len=16, vocab=600):
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (1, seq_len), generator=generator) for _ in range(n)]


class _Projection(nn.Module):
    """A projection of a type the pruners do not know (as remote code may define one)."""

    def __init__(self, conv1d):
        super().__init__()
        self.weight, self.bias = conv1d.weight, conv1d.bias

    def forward(self, x):
        return x @ self.weight + self.bias


def _with_unknown_projections(model):
    from transformers.pytorch_utils import Conv1D

    model = copy.deepcopy(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, Conv1D):
            model.set_submodule(name, _Projection(module))
    return model


def test_wanda_prunes_every_row_of_every_gpt_neox_decoder_linear(gpt_neox):
    pruned = wanda_prune_(copy.deepcopy(gpt_neox), Wanda(sparsity=0.5), _calibration())
    linears = {n: m for n, m in pruned.gpt_neox.layers.named_modules() if isinstance(m, nn.Linear)}
    assert len(linears) == 2 * 4  # query_key_value, dense, dense_h_to_4h, dense_4h_to_h
    for module in linears.values():
        assert torch.all((module.weight == 0).sum(dim=1) == module.in_features // 2)
    assert torch.equal(pruned.lm_head.weight, gpt_neox.lm_head.weight)


def test_wanda_without_a_layer_list_of_num_hidden_layers_is_refused(gpt_neox):
    model = copy.deepcopy(gpt_neox)
    model.config.num_hidden_layers = 3
    with pytest.raises(CodegenBenchError, match=r"no nn\.ModuleList of config\.num_hidden_layers=3"):
        wanda_prune_(model, Wanda(), _calibration())


def test_wanda_prunes_gpt2_conv1d_per_output_column(gpt2):
    calibration = _calibration()
    c_attn = gpt2.transformer.h[0].attn.c_attn
    captured = []
    hook = c_attn.register_forward_pre_hook(lambda m, args: captured.append(args[0].reshape(-1, 64)))
    with torch.no_grad():
        for batch in calibration:
            gpt2(input_ids=batch)
    hook.remove()
    # Conv1D's weight is [in, out]: an output's weights are a column, scaled by its inputs' norms.
    score = c_attn.weight.detach().abs().double() * torch.cat(captured).double().norm(dim=0).unsqueeze(1)
    expected_zero = torch.zeros_like(score, dtype=torch.bool)
    expected_zero.scatter_(0, torch.topk(score, 64 // 4, dim=0, largest=False).indices, True)

    pruned = wanda_prune_(copy.deepcopy(gpt2), Wanda(sparsity=0.25), calibration)
    assert torch.equal(pruned.transformer.h[0].attn.c_attn.weight == 0, expected_zero)
    sparsity = measure_sparsity(pruned)
    assert len(sparsity["per_layer"]) == 2 * 4  # c_attn, attn.c_proj, c_fc, mlp.c_proj
    assert all(abs(s - 0.25) < 1e-6 for s in sparsity["per_layer"].values())


def test_l1_prunes_gpt2_conv1d_and_leaves_the_tied_embeddings_dense(gpt2):
    pruned = prune_(copy.deepcopy(gpt2), L1Unstructured(sparsity=0.4, scope="per-layer"))
    sparsity = measure_sparsity(pruned)
    assert set(sparsity["per_layer"]) == {
        f"transformer.h.{i}.{name}"
        for i in (0, 1)
        for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
    }
    assert all(abs(s - 0.4) < 0.001 for s in sparsity["per_layer"].values())
    assert torch.equal(pruned.transformer.wte.weight, gpt2.transformer.wte.weight)


@pytest.mark.parametrize(
    ("prune", "message"),
    [
        (lambda m: prune_(m, L1Unstructured()), "GPT2LMHeadModel has no layer l1-pruned prunes"),
        (
            lambda m: wanda_prune_(m, Wanda(), _calibration()),
            "GPT2LMHeadModel has no nn.Linear or transformers",
        ),
    ],
)
def test_pruners_refuse_a_model_whose_projections_they_do_not_know(gpt2, prune, message):
    with pytest.raises(CodegenBenchError, match=re.escape(message)) as refusal:
        prune(_with_unknown_projections(gpt2))
    assert "_Projection" in str(refusal.value)


def test_int8_refuses_gpt2_from_its_module_tree_alone():
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(_gpt2_config())
    expected = (
        "GPT2LMHeadModel: its decoder projections are transformers Conv1D layers, "
        "which int8-dynamic does not quantize"
    )
    with pytest.raises(CodegenBenchError, match=expected):
        quantize_(model, Int8Dynamic())
    assert not any(isinstance(m, DynamicQuantizedLinear) for m in model.modules())


def test_int8_warns_of_keep_float_names_that_match_no_linear(gpt_neox, caplog):
    with caplog.at_level(logging.WARNING, logger="codegen_bench.variants.quantize"):
        model = quantize_(copy.deepcopy(gpt_neox), Int8Dynamic(keep_float=("down_proj", "dense")))
    (warning,) = caplog.records
    message = warning.getMessage()
    assert "keep_float names down_proj match no Linear layer of GPTNeoXForCausalLM" in message
    assert "dense, dense_4h_to_h, dense_h_to_4h, lm_head, query_key_value" in message
    assert isinstance(model.gpt_neox.layers[0].mlp.dense_4h_to_h, DynamicQuantizedLinear)
    assert type(model.gpt_neox.layers[0].attention.dense) is nn.Linear


@pytest.fixture(scope="module")
def gpt2_dir(gpt2, tmp_path_factory):
    """The tiny GPT-2 saved as a model folder, with the tests' trained tokenizer."""
    from conftest import build_tokenizer

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    gpt2.save_pretrained(folder)
    build_tokenizer().save_pretrained(folder)
    return folder


def test_the_matrix_refuses_a_variant_its_base_cannot_make_before_any_cell(gpt2_dir, tmp_path, monkeypatch):
    from codegen_bench.harness.runs.matrix import MatrixConfig, run_matrix
    from codegen_bench.variants.spec import VariantSpec

    monkeypatch.setattr("codegen_bench.variants.artifact.load_model", lambda *a, **k: pytest.fail("loaded"))
    config = MatrixConfig(
        variants=(VariantSpec.parse("base"), VariantSpec.parse("int8-dynamic")),
        tasks=("humaneval_custom",),
        out=tmp_path / "run",
        pretrained=str(gpt2_dir),
    )
    with pytest.raises(CodegenBenchError, match=r"GPT2LMHeadModel: its decoder projections are .*Conv1D"):
        run_matrix(config)
    assert not (tmp_path / "run" / "records.jsonl").exists()  # not even base's cell ran


def test_building_a_variant_its_base_cannot_make_is_refused_before_the_weights_load(gpt2_dir, monkeypatch):
    from codegen_bench.variants import BaseModel, build_artifact

    monkeypatch.setattr("codegen_bench.variants.artifact.load_model", lambda *a, **k: pytest.fail("loaded"))
    with pytest.raises(CodegenBenchError, match=r"Conv1D layers, which int8-dynamic does not quantize"):
        build_artifact("int8-dynamic", BaseModel(str(gpt2_dir)))


def test_building_int8_warns_of_unmatched_keep_float_names_once(gpt_neox, tmp_path, caplog):
    from conftest import build_tokenizer

    from codegen_bench.variants import BaseModel, build_artifact
    from codegen_bench.variants.artifact import MANIFEST

    gpt_neox.save_pretrained(tmp_path / "tiny-neox")
    build_tokenizer().save_pretrained(tmp_path / "tiny-neox")
    with caplog.at_level(logging.WARNING, logger="codegen_bench.variants.quantize"):
        build_artifact(
            "int8-dynamic",
            BaseModel(str(tmp_path / "tiny-neox")),
            {"keep_float": ("down_proj",)},
            tmp_path / "int8",
        )
    warnings = [r.getMessage() for r in caplog.records if "match no Linear layer" in r.getMessage()]
    assert len(warnings) == 1, warnings  # the check before the build does not repeat the build's warning
    assert (tmp_path / "int8" / MANIFEST).is_file()
