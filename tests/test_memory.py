"""Weight memory is counted from the model's tensors, in the form each variant holds them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from codegen_bench.harness.engine.memory import model_weight_bytes
from codegen_bench.harness.engine.prepack import prepack_linears_


def _fresh(folder):
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()


def _state_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in model.state_dict().values())


def test_fp32_weights_count_four_bytes_per_parameter_and_tied_ones_once(tiny_model_dir):
    model = _fresh(tiny_model_dir)
    assert model_weight_bytes(model) == _state_bytes(model)
    embedding = model.model.embed_tokens.weight
    untied = model_weight_bytes(model)
    model.lm_head.weight = embedding  # tied: one tensor under two names
    assert model_weight_bytes(model) == untied - embedding.numel() * 4


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")
def test_prepacked_weights_are_counted_though_not_in_the_state_dict(tiny_model_dir):
    model = _fresh(tiny_model_dir)
    plain = model_weight_bytes(model)
    prepack_linears_(model)
    assert _state_bytes(model) < plain / 2  # the packed linears left the state dict
    assert model_weight_bytes(model) == pytest.approx(plain, rel=0.01)  # oneDNN may pad blocks


def test_int8_dynamic_weights_take_a_quarter_of_fp32(tiny_model_dir):
    from torch.ao.quantization import quantize_dynamic

    model = _fresh(tiny_model_dir)
    linear_fp32 = sum(m.weight.numel() * 4 for m in model.modules() if type(m) is torch.nn.Linear)
    plain = model_weight_bytes(model)
    quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
    # int8 keeps a quarter of each fp32 weight's bytes, plus fp32 biases and scales: it saves a bit
    # under three quarters of them
    saved = plain - model_weight_bytes(model)
    assert 0.66 * linear_fp32 < saved < 0.75 * linear_fp32


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux's per-process peak (VmHWM)")
def test_a_child_of_a_large_process_reports_its_own_peak_not_its_parents():
    # ru_maxrss survives fork + exec: a latency suite started by a matrix holding a model reported
    # the matrix's memory as every variant's peak.
    ballast = torch.ones(256 * 2**20)  # 1 GiB resident in this (parent) process during the child's run
    child = (
        "import torch\n"
        "from codegen_bench.harness.engine.memory import loaded_memory_bytes, peak_memory_bytes\n"
        "cpu = torch.device('cpu')\n"
        "loaded_memory_bytes(cpu)\n"
        "print(peak_memory_bytes(cpu))\n"
    )
    output = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, check=True).stdout
    assert int(output.split()[-1]) < 2**30  # the child (python + torch) holds a few hundred MiB
    assert float(ballast[-1]) == 1.0
