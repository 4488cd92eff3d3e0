"""The latency suite of a matrix run: every variant through benchmarks/test_latency.py (pytest-benchmark),
in a process of its own, into RUN/latency.json. Skipped when the file already covers every variant,
with the same weights and loading arguments, at the size the run asks for."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.model import uses_hf_engine
from codegen_bench.harness.loading import resolve_pretrained
from codegen_bench.harness.runs.latency_size import LATENCY_FILE, measured_latency_size, stored_benchmarks
from codegen_bench.harness.runs.matrix import MatrixConfig, fingerprint_of, variant_identity
from codegen_bench.variants.artifact import base_fingerprint

log = logging.getLogger(__name__)

# harness/runs/latency.py -> the repository root
LATENCY_SUITE = Path(__file__).resolve().parents[2] / "benchmarks" / "test_latency.py"


def variant_fingerprints(config: MatrixConfig) -> dict[str, str]:
    """Per variant name, a key of what decides its latency figures: the base weights, what decides the
    variant's own weights (its config, its recipe) and the arguments it is loaded and batched with.
    A name alone is not enough: the same name with another recipe or config is another model."""
    base = base_fingerprint(resolve_pretrained(config.pretrained))
    keys = {}
    for spec in config.variants:
        key = {
            "base": base,
            "variant": variant_identity(spec),
            "model_args": config.model_args,
            "batch_size": config.batch_size,
        }
        keys[spec.name] = fingerprint_of(key)
    return keys


def latency_variants(path: Path) -> dict[str, str | None]:
    """The variants a stored latency.json covers, each with the fingerprint it was measured with
    (None: measured outside a matrix run, or before the file recorded one)."""
    infos = [b.get("extra_info") or {} for b in stored_benchmarks(path)]
    return {info["variant"]: info.get("variant_fingerprint") for info in infos if "variant" in info}


def latency_pending(config: MatrixConfig) -> bool:
    """Whether RUN/latency.json lacks any of the run's variants, holds one measured with other weights
    or arguments than the run's, or was measured at another size than the run's (the suite then runs
    for all, at the run's size)."""
    path = config.out / LATENCY_FILE
    stored = latency_variants(path)
    wanted = variant_fingerprints(config)
    current = all(stored.get(name) == fingerprint for name, fingerprint in wanted.items())
    return not current or measured_latency_size(path) != config.latency_size


def _record_fingerprints(path: Path, fingerprints: dict[str, str]) -> None:
    """Each benchmark of the suite's JSON marked with its variant's fingerprint (the suite knows the
    variant's name only), written whole or not at all."""
    report = json.loads(path.read_text())
    for bench in report.get("benchmarks", []):
        info = bench.setdefault("extra_info", {})
        if info.get("variant") in fingerprints:
            info["variant_fingerprint"] = fingerprints[info["variant"]]
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(report, indent=4))
    os.replace(partial, path)


def run_latency(config: MatrixConfig) -> Path | None:
    """Every variant through benchmarks/test_latency.py (pytest-benchmark) into RUN/latency.json,
    in a process of its own, at the run's latency size; skipped when the file already covers every
    variant, as the run specifies it, at that size. The suite lives in the repository's benchmarks/,
    so an installed package without it skips this with a warning."""
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
    size = config.latency_size
    command = [sys.executable, "-m", "pytest", str(LATENCY_SUITE), "-q", "-p", "no:cacheprovider"]
    command += ["--benchmark-json", str(out), "--variants", *(spec.text() for spec in config.variants)]
    command += ["--large-batch", str(config.batch_size), "--latency-rounds", str(size.rounds)]
    command += ["--prompt-tokens", str(size.prompt_tokens), "--new-tokens", str(size.new_tokens)]
    command += ["--decode-prompt-tokens", str(size.decode_prompt_tokens)]
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
    _record_fingerprints(out, variant_fingerprints(config))
    return out
