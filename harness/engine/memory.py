"""How much memory this process holds: after loading a model, and at its peak since then.

On a GPU, the allocator's own counters. On the CPU, the resident set: after loading, then the peak
from there on, since a load's transient copies (an int8 or NF4 load briefly holds the weights
twice) are not what evaluation costs. Linux lets a process restart its peak counter (VmHWM) through
/proc/self/clear_refs; elsewhere the peak counts from the process's start.

Safetensors weights are memory-mapped and become resident when first used, so the memory right
after loading can be far below the model's size: the peak is the figure to compare.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import resource
import sys
from pathlib import Path

import torch

from codegen_bench.harness.engine.prepack import PrepackedLinear


def _proc_status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # not Linux


def release_freed_memory() -> None:
    """Hand memory freed by Python and torch back to the OS, so the resident set shows what is live.

    glibc keeps freed heap pages (torch's weight-sized blocks among them) for reuse: without a trim,
    a process that built a variant or measured another one first reports their memory as this one's.
    """
    gc.collect()
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def model_weight_bytes(model: torch.nn.Module) -> int:
    """Bytes of the weights `model` holds, in the form it holds them: fp32/bf16 tensors, int8 packed
    weights with their scales, NF4 blocks with their quantization state, oneDNN-prepacked weights.
    Counted from the tensors, so it does not depend on what else the process did."""
    seen: set[tuple] = set()

    def nbytes(value) -> int:
        if isinstance(value, (tuple, list)):  # dynamic int8 linears store (weight, bias)
            return sum(nbytes(v) for v in value)
        if not isinstance(value, torch.Tensor):
            return 0
        if value.layout == torch.strided and not value.is_quantized:
            key = (value.data_ptr(), value.numel(), value.dtype)
            if key in seen:  # tied weights
                return 0
            seen.add(key)
        return value.numel() * value.element_size()

    total = sum(nbytes(value) for value in model.state_dict(keep_vars=True).values())
    for module in model.modules():
        if isinstance(module, PrepackedLinear):  # not in the state dict: an opaque oneDNN tensor
            total += nbytes(module.packed_weight) + nbytes(module.bias)
    return total


def loaded_memory_bytes(device: torch.device) -> int | None:
    """Memory held now (call it right after loading); then restart the peak counter."""
    release_freed_memory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return int(torch.cuda.memory_allocated(device))
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM and ru_maxrss
    return _proc_status_bytes("VmRSS")


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory since `loaded_memory_bytes` (where the platform can restart it; else since start)."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    # Linux: VmHWM, the peak of this process's own memory map. Not ru_maxrss: the kernel carries that
    # across exec, so a process started by a large one (the latency suite by a matrix that has just
    # evaluated) would report its parent's resident set as its own peak, whatever it restarts.
    peak_bytes = _proc_status_bytes("VmHWM")
    if peak_bytes is not None:
        return peak_bytes
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, others KiB
