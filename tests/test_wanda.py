from __future__ import annotations

import copy

import pytest
import torch

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.variants.prune import Wanda, measure_sparsity, wanda_prune_


def _calibration(n=4, seq_len=16, vocab=600):
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(3, vocab, (1, seq_len), generator=generator) for _ in range(n)]


def test_every_row_of_every_decoder_linear_reaches_the_sparsity(tiny):
    model = copy.deepcopy(tiny[0])
    wanda_prune_(model, Wanda(sparsity=0.5), _calibration())
    for layer in model.model.layers:
        for module in layer.modules():
            if isinstance(module, torch.nn.Linear):
                zeros_per_row = (module.weight == 0).sum(dim=1)
                assert torch.all(zeros_per_row == module.in_features // 2)
    assert abs(measure_sparsity(model)["per_layer"]["model.layers.0.self_attn.q_proj"] - 0.5) < 1e-6


def test_first_layer_mask_is_the_lowest_weight_times_input_norm(tiny):
    dense = tiny[0]
    calibration = _calibration()
    captured = []
    hook = dense.model.layers[0].self_attn.q_proj.register_forward_pre_hook(
        lambda module, args: captured.append(args[0].reshape(-1, args[0].shape[-1]))
    )
    with torch.no_grad():
        for batch in calibration:
            dense(input_ids=batch)
    hook.remove()
    norms = torch.cat(captured).double().norm(dim=0)
    weight = dense.model.layers[0].self_attn.q_proj.weight.detach()
    score = weight.abs().double() * norms
    expected_zero = torch.zeros_like(weight, dtype=torch.bool)
    expected_zero.scatter_(1, torch.topk(score, weight.shape[1] // 4, dim=1, largest=False).indices, True)

    pruned = wanda_prune_(copy.deepcopy(dense), Wanda(sparsity=0.25), calibration)
    assert torch.equal(pruned.model.layers[0].self_attn.q_proj.weight == 0, expected_zero)


def test_second_layer_is_scored_on_the_outputs_of_the_pruned_first_layer(tiny):
    dense, calibration = tiny[0], _calibration()
    pruned = wanda_prune_(copy.deepcopy(dense), Wanda(sparsity=0.25), calibration)
    # Reference: the whole model run again, with only layer 0 pruned (as wanda_prune_ left it).
    reference = copy.deepcopy(dense)
    reference.model.layers[0].load_state_dict(pruned.model.layers[0].state_dict())
    captured = []
    target = reference.model.layers[1].mlp.up_proj
    hook = target.register_forward_pre_hook(
        lambda m, args: captured.append(args[0].reshape(-1, m.in_features))
    )
    with torch.no_grad():
        for batch in calibration:
            reference(input_ids=batch)
    hook.remove()
    score = target.weight.detach().abs().double() * torch.cat(captured).double().norm(dim=0)
    expected_zero = torch.zeros_like(score, dtype=torch.bool)
    expected_zero.scatter_(1, torch.topk(score, score.shape[1] // 4, dim=1, largest=False).indices, True)
    assert torch.equal(pruned.model.layers[1].mlp.up_proj.weight == 0, expected_zero)


def test_wanda_keeps_different_weights_than_magnitude_pruning(tiny):
    from codegen_bench.variants.prune import L1Unstructured, prune_

    wanda = wanda_prune_(copy.deepcopy(tiny[0]), Wanda(sparsity=0.5), _calibration())
    magnitude = prune_(copy.deepcopy(tiny[0]), L1Unstructured(sparsity=0.5, scope="per-layer"))
    name = "model.layers.1.mlp.down_proj"
    wanda_mask = dict(wanda.named_modules())[name].weight == 0
    magnitude_mask = dict(magnitude.named_modules())[name].weight == 0
    assert not torch.equal(wanda_mask, magnitude_mask)


def test_sparsity_that_prunes_no_weight_of_any_row_is_refused(tiny):
    # The tiny model's rows have 64 or 128 inputs: int(128 * 0.005) = 0 weights per row.
    with pytest.raises(CodegenBenchError, match=r"sparsity=0\.005 prunes no weight of Qwen2ForCausalLM"):
        wanda_prune_(copy.deepcopy(tiny[0]), Wanda(sparsity=0.005), _calibration())


def test_invalid_sparsity_is_refused():
    with pytest.raises(CodegenBenchError, match=r"sparsity=1\.5 must be in"):
        Wanda(sparsity=1.5)


def test_wanda_variant_calibrates_on_stdlib_code(tiny_model_dir, tmp_path, monkeypatch):
    from codegen_bench.harness.loading import LoadConfig
    from codegen_bench.variants import BaseModel, load_variant
    from codegen_bench.variants.calibration import calibration_batches

    monkeypatch.setenv("CODEGEN_BENCH_CACHE", str(tmp_path))
    base = BaseModel(str(tiny_model_dir), LoadConfig())
    _, manifest = load_variant(
        "wanda-pruned", base, {"sparsity": "0.5", "calibration_samples": "4", "calibration_seq_len": "32"}
    )
    assert manifest["config"]["calibration_samples"] == 4
    assert abs(manifest["sparsity"]["total"] - 0.5) < 0.001
    from transformers import AutoTokenizer

    batches = calibration_batches(AutoTokenizer.from_pretrained(tiny_model_dir), 4, 32, seed=0)
    assert [b.shape for b in batches] == [torch.Size([1, 32])] * 4
    again = calibration_batches(AutoTokenizer.from_pretrained(tiny_model_dir), 4, 32, seed=0)
    assert all(torch.equal(x, y) for x, y in zip(batches, again, strict=True))
