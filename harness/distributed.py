"""Data-parallel evaluation under `accelerate launch`, the way lm-eval's own `hf` model does it.

    accelerate launch --multi_gpu --num_processes 2 -m lm_eval --model codegen --tasks humaneval_custom ...

(On a machine without GPUs too: accelerate 1.15 starts a single process for `--cpu` unless MPI is
configured, while `--multi_gpu` starts torchrun's processes, which then join a gloo group on the CPU.)

lm-eval shards the documents by rank (document i goes to rank i % world_size), each rank generates
and executes only its own, and lm-eval gathers the per-document metrics and logged samples on rank 0,
which alone aggregates and writes results. What the model supplies is here: the process group (from
accelerate: gloo on CPU, NCCL on GPUs), this process's rank and device, and the gather and barrier
primitives lm-eval calls. Under a plain single process none of it is created.
"""

from __future__ import annotations

import os
from datetime import timedelta


def launched_world_size() -> int:
    """The number of processes `accelerate launch` / torchrun started (1 when run plainly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def make_accelerator():
    """An `accelerate.Accelerator` when launched with several processes, else None.

    The process-group timeout is long, as in lm-eval: ranks wait at the final gather for the
    slowest one, which on a CPU can be an hour behind. A crashed rank does not leave the others
    waiting: the launcher ends them all and exits non-zero, and rank 0 writes nothing.
    """
    if launched_world_size() < 2:
        return None
    import torch
    from accelerate import Accelerator
    from accelerate.utils import InitProcessGroupKwargs

    # Without GPUs, accelerate forms a process group only when asked for the CPU (gloo).
    return Accelerator(
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[InitProcessGroupKwargs(timeout=timedelta(weeks=52))],
    )


def gather_object(obj, world_size: int, rank: int, dst: int = 0):
    """Every rank's `obj`, as a list on `dst` (None elsewhere)."""
    import torch.distributed as dist

    gathered = [None] * world_size if rank == dst else None
    dist.gather_object(obj, gathered, dst=dst)
    return gathered
