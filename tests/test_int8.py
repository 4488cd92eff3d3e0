from __future__ import annotations

import json
import logging
import shutil

import pytest
import torch
from safetensors import safe_open
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.loading import LoadConfig
from codegen_bench.variants import BaseModel, build_artifact, load_variant, registry
from codegen_bench.variants.quantize import INT8_WEIGHTS_FILE, Int8Dynamic, quantize_

TOKENS = (5, 17, 42, 99, 7, 300, 12, 450)


pytestmark = pytest.mark.usefixtures("isolated_cache")


def _logits(model, tokens=TOKENS):
    with torch.no_grad():
        return model(torch.tensor([tokens])).logits


def test_linears_become_int8_except_down_proj(base):
    linears = {name for name, m in base.load().named_modules() if isinstance(m, nn.Linear)}
    model = quantize_(base.load(), Int8Dynamic())
    int8 = {name: m for name, m in model.named_modules() if isinstance(m, DynamicQuantizedLinear)}
    # 2 layers x (q, k, v, o, gate, up) + lm_head; down_proj stays float by default.
    assert set(int8) == {n for n in linears if not n.endswith("down_proj")} and len(int8) == 13
    for module in int8.values():
        assert module.weight().dtype == torch.qint8
        assert module.weight().int_repr().dtype == torch.int8
        assert module.weight().qscheme() == torch.per_channel_affine  # one scale per output row
    down_proj = model.model.layers[0].mlp.down_proj
    assert type(down_proj) is nn.Linear and down_proj.weight.dtype == torch.float32


def test_keep_float_and_per_tensor_scales_on_request(base):
    model = quantize_(base.load(), Int8Dynamic(granularity="per-tensor", keep_float=("lm_head",)))
    assert type(model.lm_head) is nn.Linear
    assert isinstance(model.model.layers[1].mlp.down_proj, DynamicQuantizedLinear)
    assert model.model.layers[1].mlp.down_proj.weight().qscheme() == torch.per_tensor_affine


def test_default_keep_float_matches_qwen2_without_a_warning(base, caplog):
    with caplog.at_level(logging.WARNING, logger="codegen_bench.variants.quantize"):
        quantize_(base.load(), Int8Dynamic())
    assert caplog.records == []


def test_keep_float_of_every_decoder_linear_is_refused(base):
    every_projection = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    with pytest.raises(CodegenBenchError, match="keeps every decoder Linear of Qwen2ForCausalLM float"):
        quantize_(base.load(), Int8Dynamic(keep_float=every_projection))


def test_int8_logits_stay_close_to_fp32(base):
    reference = _logits(base.load())
    logits = _logits(quantize_(base.load(), Int8Dynamic()))
    difference = logits - reference
    assert not torch.equal(logits, reference)  # really quantized
    # The tiny model's logits span about +-0.6; int8 moves them by 0.013 at most (2.3% relative,
    # measured). The tolerances leave 2-4x headroom for other CPUs' kernels.
    assert difference.abs().max() < 0.05
    assert difference.norm() / reference.norm() < 0.05
    assert torch.equal(logits.argmax(-1), reference.argmax(-1))


def test_artifact_round_trip_gives_identical_logits(base):
    model, folder = build_artifact("int8-dynamic", base)
    reloaded, manifest = load_variant(str(folder), base)
    assert manifest["variant"] == "int8-dynamic"
    assert manifest["config"] == {
        "granularity": "per-channel",
        "keep_float": ["down_proj"],
        "kernels": "fbgemm",
    }
    assert sum(isinstance(m, DynamicQuantizedLinear) for m in reloaded.modules()) == 13
    assert torch.equal(_logits(reloaded), _logits(model))
    # Packed int8 weights count as weights, and sparsity covers every decoder Linear, int8 or not.
    assert manifest["parameter_count"] == sum(p.numel() for p in base.load().parameters())
    assert len(manifest["sparsity"]["per_layer"]) == 2 * 7
    assert manifest["sparsity"]["total"] < 0.01


def test_load_reads_int8_weights_not_the_base_weights(base, tiny_model_dir, tmp_path):
    # A base folder with the config but no weights: load can only succeed from the artifact alone.
    model, folder = build_artifact("int8-dynamic", base, {"keep_float": "lm_head"})
    config_only = tmp_path / "config-only"
    config_only.mkdir()
    for name in ("config.json", "generation_config.json"):
        shutil.copy(tiny_model_dir / name, config_only / name)
    variant = registry.get_variant("int8-dynamic")
    reloaded = variant.load(folder, BaseModel(str(config_only)), Int8Dynamic(keep_float=("lm_head",)))
    assert torch.equal(_logits(reloaded), _logits(model))
    assert reloaded.generation_config.eos_token_id == base.load().generation_config.eos_token_id


def test_artifact_stores_int8_weights_and_is_smaller(base):
    _, fp32_folder = build_artifact("base", base)
    _, int8_folder = build_artifact("int8-dynamic", base)
    with safe_open(str(int8_folder / INT8_WEIGHTS_FILE), framework="pt") as f:
        dtypes = {name: f.get_slice(name).get_dtype() for name in f.keys()}  # noqa: SIM118
    linears = {n: m for n, m in base.load().named_modules() if isinstance(m, nn.Linear)}
    assert {n: dtypes[f"{n}.weight"] for n in linears} == {
        n: "F32" if n.endswith("down_proj") else "I8" for n in linears
    }
    linears = {n: m for n, m in linears.items() if not n.endswith("down_proj")}
    # Linear weights go from 4 bytes to 1, plus 16 bytes per output row (float64 scale, int64 zero
    # point); embeddings, norms and down_proj stay fp32. 0.75 - 16 / 4 / 64 (the tiny in-features) = 0.69.
    linear_fp32_bytes = sum(m.weight.numel() * 4 for m in linears.values())
    fp32_size = (fp32_folder / "model.safetensors").stat().st_size
    int8_size = (int8_folder / INT8_WEIGHTS_FILE).stat().st_size
    assert fp32_size - int8_size > 0.65 * linear_fp32_bytes
    manifests = [json.loads((f / "variant.json").read_text()) for f in (fp32_folder, int8_folder)]
    assert manifests[1]["size_on_disk_bytes"] < manifests[0]["size_on_disk_bytes"]


def test_named_variant_builds_once_then_loads_from_the_cache(base, monkeypatch):
    first, manifest = load_variant("int8-dynamic", base, {"granularity": "per-tensor"})
    assert manifest["config"]["granularity"] == "per-tensor"

    def fail(*args, **kwargs):
        raise AssertionError("re-quantized although cached")

    monkeypatch.setattr("codegen_bench.variants.builtin.quantize_", fail)
    second, _ = load_variant("int8-dynamic", base, {"granularity": "per-tensor"})
    assert torch.equal(_logits(second), _logits(first))


def test_bfloat16_base_is_refused_with_the_fix(tiny_model_dir):
    half = BaseModel(str(tiny_model_dir), LoadConfig(dtype="bfloat16", device="cpu"))
    with pytest.raises(CodegenBenchError, match="pass dtype=float32 device=cpu"):
        load_variant("int8-dynamic", half)


@pytest.mark.parametrize("kernels", ["fbgemm", "onednn"])
def test_either_kernel_library_stays_close_to_fp32_and_round_trips(base, kernels):
    engine_before = torch.backends.quantized.engine
    model, folder = build_artifact("int8-dynamic", base, {"kernels": kernels})
    assert torch.backends.quantized.engine == engine_before  # selected only while packing
    reference = _logits(base.load())
    logits = _logits(model)
    assert (logits - reference).abs().max() < 0.05
    reloaded, manifest = load_variant(str(folder), base)
    assert manifest["config"]["kernels"] == kernels
    assert torch.equal(_logits(reloaded), logits)


def test_unknown_kernels_are_refused():
    with pytest.raises(CodegenBenchError, match="kernels='mkl' is not valid: use fbgemm or onednn"):
        registry.make_config(registry.get_variant("int8-dynamic"), {"kernels": "mkl"})


def test_keep_float_from_the_command_line_is_a_tuple():
    config = registry.make_config(registry.get_variant("int8-dynamic"), {"keep_float": "down_proj+lm_head"})
    assert config == Int8Dynamic(keep_float=("down_proj", "lm_head"))
    assert registry.make_config(registry.get_variant("int8-dynamic"), {"keep_float": ""}).keep_float == ()


def test_unknown_granularity_is_refused():
    with pytest.raises(CodegenBenchError, match="granularity='per-row' is not valid"):
        registry.make_config(registry.get_variant("int8-dynamic"), {"granularity": "per-row"})
