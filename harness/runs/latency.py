"""The latency suite of a matrix run: every variant through benchmarks/test_latency.py (pytest-benchmark),
in a process of its own, into RUN/latency.json. Skipped for variants the file already covers."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.model import uses_hf_engine
from codegen_bench.harness.runs.matrix import MatrixConfig

log = logging.getLogger(__name__)

LATENCY_FILE = "latency.json"
# harness/runs/latency.py -> the repository root
LATENCY_SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "test_latency.py"


def latency_variants(path: Path) -> set[str]:
    """The variants a stored latency.json covers."""
    if not path.is_file():
        return set()
    try:
        benchmarks = json.loads(path.read_text())["benchmarks"]
    except (json.JSONDecodeError, KeyError):
        return set()
    return {b["extra_info"]["variant"] for b in benchmarks if "variant" in b.get("extra_info", {})}


def latency_pending(config: MatrixConfig) -> bool:
    """Whether RUN/latency.json lacks any of the run's variants (the suite then runs for all)."""
    return not {spec.name for spec in config.variants} <= latency_variants(config.out / LATENCY_FILE)


def run_latency(config: MatrixConfig) -> Path | None:
    """Every variant through benchmarks/test_latency.py (pytest-benchmark) into RUN/latency.json,
    in a process of its own; skipped when the file already covers every variant. The suite lives in
    the repository's benchmarks/, so an installed package without it skips this with a warning."""
    out = config.out / LATENCY_FILE
    if not uses_hf_engine(config.model_args):
        # The suite times our engine's prefill and decode steps, which vLLM does not expose.
        log.warning("matrix: the latency suite measures backend=hf only: no latency figures for backend=vllm")
        return None
    if not latency_pending(config):
        log.info("matrix: %s already covers %s", out, ", ".join(spec.name for spec in config.variants))
        return out
    if not LATENCY_SUITE.is_file():
        log.warning(
            "matrix: %s not found (not a repository checkout): no latency/memory figures", LATENCY_SUITE
        )
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pytest", str(LATENCY_SUITE), "-q", "-p", "no:cacheprovider"]
    command += ["--benchmark-json", str(out), "--variants", *(spec.text() for spec in config.variants)]
    command += ["--large-batch", str(config.batch_size)]
    if config.reference is not None:
        # The suite's summary divides by the run's reference; without one it applies the same
        # default rule (harness/runs/reference.py) to the same variants, as the matrix's pairing does.
        command += ["--reference", config.reference]
    if config.pretrained:
        command += ["--pretrained", config.pretrained]
    if config.model_args:
        command += ["--model-args", ",".join(f"{k}={v}" for k, v in config.model_args.items())]
    log.info("matrix: latency and memory: %s", " ".join(command))
    result = subprocess.run(command)
    if result.returncode != 0:
        raise CodegenBenchError(
            f"the latency benchmark failed (exit {result.returncode}): {' '.join(command)}"
        )
    return out
