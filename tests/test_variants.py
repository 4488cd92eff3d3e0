from __future__ import annotations

import hashlib
import json
import sys
from importlib.metadata import EntryPoint

import pytest
import torch

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.variants import BaseModel, build_artifact, load_variant, registry
from codegen_bench.variants.prune import L1Unstructured, measure_sparsity, prunable_linears, prune_

pytestmark = pytest.mark.usefixtures("isolated_cache")


def _logits(model, tokens=(5, 17, 42, 99, 7)):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits


def test_builtin_variants_are_registered():
    assert {"base", "nf4", "l1-pruned"} <= set(registry.available_variants())


def test_config_values_from_the_command_line_are_typed():
    config = registry.make_config(
        registry.get_variant("l1-pruned"), {"sparsity": "0.3", "scope": "per-layer"}
    )
    assert config == L1Unstructured(sparsity=0.3, scope="per-layer")


def test_unknown_config_key_names_the_valid_keys():
    with pytest.raises(CodegenBenchError, match="has no config key 'sparsty': its keys are sparsity, scope"):
        registry.make_config(registry.get_variant("l1-pruned"), {"sparsty": "0.3"})


def test_unknown_variant_lists_the_registered_ones():
    with pytest.raises(CodegenBenchError, match="variant='nf5' is unknown: available variants are base"):
        registry.get_variant("nf5")


@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_l1_pruning_reaches_the_requested_sparsity(base, scope):
    model = prune_(base.load(), L1Unstructured(sparsity=0.4, scope=scope))
    sparsity = measure_sparsity(model)
    assert abs(sparsity["total"] - 0.4) < 0.001
    if scope == "per-layer":
        assert all(abs(s - 0.4) < 0.001 for s in sparsity["per_layer"].values())
    assert not any(name.endswith("lm_head") for name in prunable_linears(model))


@pytest.mark.parametrize("scope", ["global", "per-layer"])
def test_sparsity_that_prunes_no_weight_is_refused(base, scope):
    # 1e-6 of the tiny decoder's 73,728 projection weights rounds to none.
    with pytest.raises(CodegenBenchError, match="prunes no weight of Qwen2ForCausalLM: raise sparsity"):
        prune_(base.load(), L1Unstructured(sparsity=1e-6, scope=scope))


def test_global_l1_pruning_zeros_what_torch_global_unstructured_zeros(base):
    from torch.nn.utils import prune

    ours = prune_(base.load(), L1Unstructured(sparsity=0.37))
    reference = base.load()
    layers = list(prunable_linears(reference).values())
    prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured, amount=0.37)
    for (name, mine), theirs in zip(prunable_linears(ours).items(), layers, strict=True):
        assert torch.equal(mine.weight == 0, theirs.weight == 0), name  # random weights: no ties


def test_global_l1_pruning_is_exact_when_many_weights_tie(base):
    model = base.load()
    with torch.no_grad():
        for module in prunable_linears(model).values():
            # 17 distinct values (about a fifth of them zero), as coarse as Q4_K's levels
            module.weight.copy_((module.weight / module.weight.abs().max() * 8).round())
    sparsity = measure_sparsity(prune_(model, L1Unstructured(sparsity=0.6)))
    total = sum(m.weight.numel() for m in prunable_linears(model).values())
    assert round(sparsity["total"] * total) == round(0.6 * total)


def test_pruned_artifact_keeps_its_zeros_and_manifest(base):
    model, folder = build_artifact("l1-pruned", base, {"sparsity": "0.5"})
    manifest = json.loads((folder / "variant.json").read_text())
    assert manifest["variant"] == "l1-pruned"
    assert manifest["config"] == {"sparsity": 0.5, "scope": "global"}
    assert abs(manifest["sparsity"]["total"] - 0.5) < 0.001
    assert manifest["size_on_disk_bytes"] > 0
    assert manifest["parameter_count"] == sum(p.numel() for p in model.parameters())
    assert manifest["base_model"]["sha256"] == base.fingerprint()
    weights = (folder / "model.safetensors").read_bytes()
    assert manifest["weights_sha256"] == hashlib.sha256(weights).hexdigest()
    reloaded, _ = load_variant(str(folder), base)
    assert measure_sparsity(reloaded)["total"] == manifest["sparsity"]["total"]
    assert torch.equal(_logits(reloaded), _logits(model))


def test_nf4_layers_are_4bit_and_smaller(base):
    import bitsandbytes as bnb

    dense = base.load()
    model, folder = build_artifact("nf4", base)
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == len(prunable_linears(dense))
    dense_bytes = sum(m.weight.numel() * m.weight.element_size() for m in prunable_linears(dense).values())
    nf4_bytes = sum(m.weight.numel() * m.weight.element_size() for m in quantized)
    assert dense_bytes / nf4_bytes >= 3.0  # fp32 -> 4 bit is 8x for the weights themselves
    reloaded, manifest = load_variant(str(folder), base)
    assert manifest["config"]["quant_type"] == "nf4"
    assert torch.allclose(_logits(reloaded), _logits(model))


def test_named_variant_is_built_once_then_loaded_from_the_cache(base, monkeypatch):
    load_variant("l1-pruned", base, {"sparsity": "0.2"})
    variant = registry.get_variant("l1-pruned")

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt although cached")

    monkeypatch.setitem(registry._REGISTRY, "l1-pruned", registry.Variant(
        variant.name, variant.config_cls, fail, variant.save, variant.load))  # fmt: skip
    model, _ = load_variant("l1-pruned", base, {"sparsity": "0.2"})
    assert abs(measure_sparsity(model)["total"] - 0.2) < 0.001
    with pytest.raises(AssertionError, match="rebuilt"):
        load_variant("l1-pruned", base, {"sparsity": "0.3"})  # another config is another artifact


def test_artifact_for_another_base_is_refused(base, tmp_path, tiny_model_dir):
    _, folder = build_artifact("l1-pruned", base, out_dir=tmp_path / "artifact")
    other = BaseModel(str(tmp_path / "artifact"))  # any other weights
    with pytest.raises(CodegenBenchError, match="was made from"):
        load_variant(str(folder), other)


def test_artifact_built_before_weights_were_hashed_gets_its_hash_once(base, tmp_path):
    _, folder = build_artifact("l1-pruned", base, out_dir=tmp_path / "artifact")
    path = folder / "variant.json"
    manifest = json.loads(path.read_text())
    expected = manifest.pop("weights_sha256")
    path.write_text(json.dumps(manifest))  # as an older codegen-bench wrote it

    _, read = load_variant(str(folder), base)
    assert read["weights_sha256"] == expected
    assert json.loads(path.read_text())["weights_sha256"] == expected  # kept: not hashed again


def test_folder_without_manifest_is_refused(base, tmp_path):
    with pytest.raises(CodegenBenchError, match=r"without variant\.json"):
        load_variant(str(tmp_path), base)


PLUGIN = '''
from dataclasses import dataclass

import torch

from codegen_bench.variants import register_variant
from codegen_bench.variants.builtin import load_pretrained, save_pretrained


@dataclass(frozen=True)
class ScaleHead:
    factor: float = 0.5


@register_variant("scaled-head", ScaleHead, save=save_pretrained, load=load_pretrained)
def build(base, config):
    """lm_head weights times a factor (a third-party test variant)."""
    model = base.load()
    with torch.no_grad():
        model.lm_head.weight.mul_(config.factor)
    return model
'''


def test_third_party_variant_registers_through_the_entry_point_group(base, tmp_path, monkeypatch):
    (tmp_path / "scaled_head_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    entry = EntryPoint(name="scaled-head", value="scaled_head_plugin", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [entry] if group == entry.group else [])
    monkeypatch.setattr(registry, "_entry_points_loaded", False)
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.delitem(sys.modules, "scaled_head_plugin", raising=False)

    assert "scaled-head" in registry.available_variants()
    model, manifest = load_variant("scaled-head", base, {"factor": "0.25"})
    assert manifest["config"] == {"factor": 0.25}
    assert torch.allclose(model.lm_head.weight, base.load().lm_head.weight * 0.25)


def test_codegen_model_loads_a_variant_with_its_config(tiny_model_dir):
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    # prepack=false: sparsity is measured on plain Linear weights (prepacked ones are opaque oneDNN tensors).
    lm = CodegenLM(
        pretrained=str(tiny_model_dir), variant="l1-pruned", prepack="false", **{"variant.sparsity": 0.3}
    )
    assert lm.variant == "l1-pruned"
    assert abs(measure_sparsity(lm.model)["total"] - 0.3) < 0.001
    info = lm.get_model_info()  # what lm-eval writes to the results' config
    assert info["variant_sparsity"] == measure_sparsity(lm.model)["total"]
    assert info["variant_size_on_disk_bytes"] > 0
    assert info["variant_weights_sha256"] == lm.variant_manifest["weights_sha256"]
