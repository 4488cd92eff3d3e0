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
import gc
import resource
import sys
from pathlib import Path

import torch


def _proc_status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None  # not Linux


def loaded_memory_bytes(device: torch.device) -> int | None:
    """Memory held now (call it right after loading); then restart the peak counter."""
    gc.collect()
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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS reports bytes, Linux KiB
