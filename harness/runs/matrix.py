"""`codegen-bench matrix`: every (variant, task) cell through lm-eval, resumable.

    codegen-bench matrix --variants base int8-dynamic --tasks humaneval_custom humaneval_nll \
        --limit 10 --out results/RUN

Each cell is one `lm_eval.simple_evaluate` call with our `codegen` model, loaded once per variant.
A cell's record (its metrics with their 95% intervals, the per-item scores that paired comparisons
between variants need, time, generation counts and the model's memory and size) is appended to
RUN/records.jsonl as soon as the cell finishes, with a fingerprint of everything that decides its
result: the base model's checksum, the variant and its resolved config, the task and its
configuration (YAML, with its version), the limit and the batch size. A rerun skips every cell
whose latest record has the same fingerprint, so an interrupted run loses at most the cell it was
in, and changing one variant's config reruns only that variant. Once a variant is loaded, its cells
recorded with other weights (the artifact's sha256, which no fingerprint can know before it is built)
run again too.
Generated samples go to RUN/samples/<variant>/.

Under `accelerate launch --multi_gpu --num_processes N` every cell runs data-parallel (lm-eval shards
its documents over the ranks); all ranks walk the same cells, and rank 0 alone writes the records
and the reports, so a resumed run skips finished cells exactly as in one process.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from tqdm import tqdm

from codegen_bench.harness.distributed import launched_rank
from codegen_bench.harness.engine.repetition import DEFAULT_REPETITION_CUT
from codegen_bench.harness.engine.roofline import (
    MatmulShapes,
    generation_flops,
    measure_peak_flops,
    scoring_flops,
)
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.samples import writing_samples_to
from codegen_bench.harness.files import RecordStore, json_digest, refuse_overwriting_inputs, timestamp
from codegen_bench.harness.lm_eval_plugin.evaluation_inputs import (
    check_limit,
    check_tasks,
    task_index,
    task_manager_for,
)
from codegen_bench.harness.lm_eval_plugin.gen_kwargs import generation_settings
from codegen_bench.harness.lm_eval_plugin.model import (
    DEFAULT_BATCH_SIZE,
    CodegenArgs,
    CodegenLM,
    check_backend,
    uses_hf_engine,
)
from codegen_bench.harness.loading import (
    DEFAULT_PRETRAINED,
    LoadConfig,
    check_pretrained,
    load_model_config,
    meta_model,
    resolve_pretrained,
)
from codegen_bench.harness.runs.item_scores import ITEM_METRICS, cell_items
from codegen_bench.harness.runs.latency_size import LATENCY_SIZES, LatencySize
from codegen_bench.harness.runs.reference import reference_variant
from codegen_bench.harness.runs.uncertainty import interval
from codegen_bench.trainers.recipes import ADAPTER_KINDS, check_recipe_adapter, recipe_identity, sweep_name
from codegen_bench.variants import check_variant_spec, get_variant
from codegen_bench.variants.artifact import BaseModel, base_fingerprint, read_manifest
from codegen_bench.variants.registry import config_to_dict, make_config
from codegen_bench.variants.spec import VARIANT_CONFIG_PREFIX, VariantSpec

log = logging.getLogger(__name__)

RECORDS_FILE = "records.jsonl"
# The KL reference's log-probabilities, kept while the run lasts (`kl_cache`): its own likelihood
# cells write them, and every other variant's read them instead of rerunning the reference. They are
# float32 over the vocabulary at every scored position, so they are removed when the run ends (their
# size on disk: results/measurements/kl-reference-cache/README.md).
KL_CACHE_DIR = ".kl-reference-log-probs"
# Settings that choose the CPU kernels, and so the last bits of every float result (which a variant
# that rounds its activations, such as int8-dynamic, turns into different generations; see the
# Makefile's GATE_ENV).
KERNEL_SETTINGS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def kernel_settings() -> dict[str, str | None]:
    """The kernel choice a cell ran with: ATen's CPU capability in use and the settings above."""
    import torch

    return {"aten_cpu_capability": torch.backends.cpu.get_cpu_capability()} | {
        name: os.environ.get(name) for name in KERNEL_SETTINGS
    }


@dataclass(frozen=True)
class MatrixConfig:
    variants: tuple[VariantSpec, ...]
    tasks: tuple[str, ...]
    out: Path
    limit: int | None = None
    batch_size: int = DEFAULT_BATCH_SIZE
    pretrained: str | None = None  # None: the embedded default model
    model_args: dict[str, Any] = field(default_factory=dict)  # more `codegen` arguments (dtype, chat...)
    gen_kwargs: dict[str, Any] = field(default_factory=dict)  # overrides of the tasks' generation_kwargs
    # Quality cells of 4-bit variants (nf4, qlora) run on their weights dequantized once at load:
    # float32 matmuls, the compute dtype they declare, without bitsandbytes' CPU path dequantizing at
    # every call (how the two compare: results/measurements/nf4-dequantized/README.md). Their speed
    # and memory stay the kernels', measured by the latency suite. False: the kernels in every cell.
    dequantize_4bit: bool = True
    # The reference's log-probabilities kept for the run (KL_CACHE_DIR): the same values as rerunning
    # it in every variant's likelihood cell (results/measurements/kl-reference-cache/README.md), so not
    # part of any fingerprint. False: rerun it.
    keep_reference_log_probs: bool = True
    # The variant every other one is paired with, compared with in KL and divided by in speed ratios
    # (harness/runs/reference.py); None: its default rule. Not part of any fingerprint: a cell's
    # record depends on it only through its `kl_reference`, which is.
    reference: str | None = None
    # How much work the latency suite times (harness/runs/latency_size.py). Not part of any fingerprint:
    # no cell depends on it, and RUN/latency.json is measured again when it was measured at another.
    latency_size: LatencySize = LATENCY_SIZES["full"]

    def __post_init__(self) -> None:
        # A name that is not one of the run's variants fails here, before any model loads.
        reference_variant([spec.name for spec in self.variants], self.reference)


# Model arguments the matrix sets itself, each from one of its own options.
MATRIX_MODEL_ARGS = {
    "pretrained": "--pretrained",
    "batch_size": "--batch-size",
    "variant": "--variants",
    "kl_reference": "--reference",
    "kl_cache": "--reference (the run keeps the reference's log-probs itself)",
}


def check_matrix_config(config: MatrixConfig, lm_eval_tasks: bool = True) -> None:
    """Every input of a run, checked before any model, dataset or tokenizer is loaded: a bad one
    fails with one line naming the option, the value and the fix. `lm_eval_tasks=False`: the task
    names are not lm-eval's (an evaluate function of its own gives them their meaning)."""
    check_limit(config.limit)
    if isinstance(config.batch_size, bool) or not isinstance(config.batch_size, int) or config.batch_size < 1:
        raise CodegenBenchError(f"--batch-size {config.batch_size!r} is not valid: give a whole number >= 1")
    generation_settings(config.gen_kwargs, where="--gen-kwargs")
    for key in config.model_args:
        option = MATRIX_MODEL_ARGS.get(key) or (
            "--variants" if key.startswith(VARIANT_CONFIG_PREFIX) else None
        )
        if option:
            raise CodegenBenchError(f"--model-args {key}=... is set by the matrix's own {option}: use that")
    if config.pretrained not in (None, "", DEFAULT_PRETRAINED):
        check_pretrained(config.pretrained)
    args = CodegenArgs.parse({**config.model_args, "pretrained": config.pretrained})
    check_backend(args)
    for what, names in (("--variants", [s.name for s in config.variants]), ("--tasks", config.tasks)):
        repeated = sorted({n for n in names if list(names).count(n) > 1})
        if repeated:
            raise CodegenBenchError(f"{what} names {', '.join(repeated)} more than once: name each once")
    for spec in config.variants:
        check_variant_spec(spec.variant, dict(spec.overrides))
    _check_run_folder(config)
    if lm_eval_tasks:
        check_tasks(config.tasks)


def _check_run_folder(config: MatrixConfig) -> None:
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise CodegenBenchError(
            f"--out {out} is a file, not a run folder: pass a new folder, or an earlier run's to resume it"
        )
    model_folders = [config.pretrained, *(spec.variant for spec in config.variants)]
    refuse_overwriting_inputs(out, [f for f in model_folders if f and Path(f).expanduser().is_dir()], "--out")


@dataclass(frozen=True)
class Cell:
    """One (variant, task) of the run, with the fingerprint of everything that decides its result."""

    spec: VariantSpec
    task: str
    fingerprint: str

    @property
    def key(self) -> tuple[str, str]:
        """Its key in the records (RecordStore.latest): (variant name, task)."""
        return (self.spec.name, self.task)


def cell_model_args(config: MatrixConfig) -> dict[str, Any]:
    """The `codegen` arguments of every quality cell: the run's, and dequantize_4bit where it applies
    (a no-op for variants without 4-bit layers; vLLM runs 4-bit weights its own way)."""
    args = dict(config.model_args)
    if config.dequantize_4bit and uses_hf_engine(args):
        args.setdefault("dequantize_4bit", "true")
    return args


def variant_identity(spec: VariantSpec) -> dict[str, Any]:
    """What decides a variant's weights, resolved without building it: the registered variant and its
    full config, or an artifact folder's manifest (its variant, config, base and build time)."""
    check_variant_spec(spec.variant, dict(spec.overrides))
    folder = Path(spec.variant).expanduser()
    if folder.is_dir():
        manifest = read_manifest(folder)
        keys = ("variant", "config", "base_model", "created_unix")
        return {"artifact": str(folder.resolve()), **{k: manifest.get(k) for k in keys}}
    variant = get_variant(spec.variant)
    config = config_to_dict(make_config(variant, dict(spec.overrides)))
    identity = {"variant": spec.variant, "config": config}
    if spec.variant in ADAPTER_KINDS and not config.get("adapter"):
        # The recipe's adapter (trained on first use): its recipe decides the weights. A row asking
        # for one of the sweep's recipes by another name makes the sweep row's cells.
        config["recipe"] = sweep_name(config["recipe"])
        identity["recipe"] = recipe_identity(spec.variant, config["recipe"])
    return identity


def task_configuration(task: str) -> dict:
    """The task's YAML as lm-eval reads it (includes merged, functions by name), and those of the
    tasks a group lists: what decides its prompts, stops and metrics. A task whose code changes its
    results says so by its `metadata.version`, which is part of this."""
    from lm_eval.tasks._yaml_loader import load_yaml

    index = task_index()

    def configuration(name: str, seen: set[str]) -> dict:
        entry = index.get(name)
        if entry is None or not entry.yaml_path or name in seen:
            return {}
        seen.add(name)
        # `!function utils.x` comes back as an absolute path: kept relative to the YAML's folder, so
        # the fingerprint does not depend on where the checkout lies (a fresh clone resumes a run).
        folder = os.path.dirname(os.path.realpath(entry.yaml_path)) + os.sep
        found = _without_prefix(load_yaml(entry.yaml_path, resolve_func=False), folder)
        members = found.get("task")
        if isinstance(members, list):
            found["members"] = {m: configuration(m, seen) for m in members if isinstance(m, str)}
        return found

    return configuration(task, set())


def _without_prefix(value, prefix: str):
    if isinstance(value, str):
        return value.removeprefix(prefix)
    if isinstance(value, dict):
        return {key: _without_prefix(item, prefix) for key, item in value.items()}
    if isinstance(value, list):
        return [_without_prefix(item, prefix) for item in value]
    return value


def cell_fingerprint(base_sha256: str, identity: dict, task: str, config: MatrixConfig) -> str:
    key = {
        "base": base_sha256,
        "variant": identity,
        "task": task,
        "task_configuration": task_configuration(task),
        "limit": config.limit,
        "batch_size": config.batch_size,
        "model_args": cell_model_args(config),
        "gen_kwargs": config.gen_kwargs,
        # What ends a looping generation decides its text too (model_args can turn it off).
        "repetition_cut": asdict(DEFAULT_REPETITION_CUT),
    }
    return fingerprint_of(key)


def fingerprint_of(key: dict) -> str:
    """A short, stable hash of what decides a result (a cell's, the latency suite's per variant)."""
    return json_digest(key, 16)


def task_metrics(results: dict) -> dict[str, dict[str, float]]:
    """lm-eval's results as {task: {metric: value}}: filter suffixes and stderr entries dropped,
    groups and their subtasks each listed."""
    metrics: dict[str, dict[str, float]] = {}
    for task, values in results["results"].items():
        for key, value in values.items():
            name, _, _ = key.partition(",")
            if name.endswith("_stderr") or not isinstance(value, int | float) or isinstance(value, bool):
                continue
            if name in ("sample_len",):
                continue
            metrics.setdefault(task, {})[name] = value
    return metrics


@functools.cache
def _environment_info() -> dict:
    from lm_eval.loggers.utils import add_env_info

    found: dict = {}
    add_env_info(found)
    return found


def _add_environment_info_once(results: dict) -> None:
    """lm-eval's add_env_info, run once per process: it asks pip and the system for the environment
    (subprocesses: about a second), which no cell of one process changes."""
    results.update(_environment_info())


@functools.cache
def _git_hash_once() -> str | None:
    """lm-eval's git_hash (of the working folder), asked once per process and quietly: lm-eval asks
    git for every evaluation, and outside a checkout git prints "fatal: not a git repository" each
    time."""
    try:
        described = subprocess.run(
            ["git", "describe", "--always"], capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return described.stdout.strip() or None


def task_metadata(lm: CodegenLM, config: MatrixConfig) -> dict:
    """What lm-eval's command line would give the tasks of this model (its --model_args): the model
    and how it is loaded, for the tasks that depend on it (harness/lm_eval_plugin/evaluation_inputs.py)."""
    load_config = _base_load_config(config)
    return {
        "pretrained": lm.pretrained,
        "revision": load_config.revision,
        "trust_remote_code": load_config.trust_remote_code,
    }


def _default_evaluate(lm: CodegenLM, task: str, config: MatrixConfig) -> dict | None:
    import lm_eval.evaluator
    from lm_eval import simple_evaluate

    with (
        mock.patch.object(lm_eval.evaluator, "add_env_info", _add_environment_info_once),
        mock.patch.object(lm_eval.evaluator, "get_git_commit_hash", _git_hash_once),
    ):
        return simple_evaluate(
            model=lm,
            tasks=[task],
            limit=config.limit,
            gen_kwargs=config.gen_kwargs or None,
            confirm_run_unsafe_code=True,
            task_manager=task_manager_for(task_metadata(lm, config)),
            log_samples=True,  # the per-item scores behind every interval and paired comparison
            bootstrap_iters=0,  # lm-eval's stderr is not kept: our intervals come from the items
        )


def cell_uncertainty(results: dict, metrics: dict[str, dict[str, float]]) -> tuple[dict, dict]:
    """({task: per-item scores}, {task: {metric: [low, high, method]}}) from lm-eval's logged samples;
    empty where the results have no samples (an evaluate function that does not log them)."""
    items, intervals = {}, {}
    for task, samples in (results.get("samples") or {}).items():
        if task not in metrics or not samples:
            continue
        items[task] = cell_items(samples, list(metrics[task]))
        for metric in metrics[task]:
            if metric in items[task]:
                found = interval(items[task][metric], ITEM_METRICS[metric].estimator)
                intervals.setdefault(task, {})[metric] = [found.low, found.high, found.method]
    return items, intervals


def cell_work(shapes: MatmulShapes, generation: dict, scoring: dict, seconds: float, peak: float) -> dict:
    """What a cell's model did against the roofline: the weight-matmul FLOPs of its generation and
    scoring (roofline.py counts them), over the cell's whole time and over the model's own time (the
    rest is executing programs, scoring metrics, loading), as shares of `peak` FLOP/s."""
    flops = 0.0
    if generation.get("requests"):
        flops += generation_flops(
            shapes, generation["prompt_tokens"], generation["tokens"], generation["requests"]
        )
    if scoring.get("requests"):
        flops += scoring_flops(shapes, scoring["forward_tokens"], scoring["head_tokens"])
    model_seconds = generation.get("seconds", 0.0) + scoring.get("seconds", 0.0)
    return {
        "matmul_flops": flops,
        "model_seconds": round(model_seconds, 3),
        "roofline_flops_per_s": peak,
        "roofline_fraction": flops / seconds / peak if seconds and peak else None,
        "model_roofline_fraction": flops / model_seconds / peak if model_seconds and peak else None,
    }


def _counts_since(now: dict, before: dict, keys: tuple[str, ...]) -> dict:
    """The cell's share of a model's running counts (GenerationStats, ScoringStats)."""
    return {k: now.get(k, 0) - before.get(k, 0) for k in keys}


def model_config_dict(pretrained: str) -> dict:
    return load_model_config(pretrained).to_dict()


def reference_spec(config: MatrixConfig) -> VariantSpec:
    """The variant every other one is compared with: the one reference_variant names among the run's
    (`config.reference` where given, else `base` where the run has it, else the first)."""
    name = reference_variant([spec.name for spec in config.variants], config.reference)
    return next(spec for spec in config.variants if spec.name == name)


def kl_reference(config: MatrixConfig, spec: VariantSpec) -> str | None:
    """The variant `spec`'s next-token distributions are compared with in likelihood cells: the
    run's reference, for every other variant (backend=hf, a reference without config overrides)."""
    reference = reference_spec(config)
    if spec == reference or reference.overrides or not uses_hf_engine(config.model_args):
        return None
    return reference.variant


def _default_load(config: MatrixConfig, spec: VariantSpec) -> CodegenLM:
    reference = kl_reference(config, spec)
    extra = {"kl_reference": reference} if reference else {}
    compared = any(kl_reference(config, s) for s in config.variants)
    if config.keep_reference_log_probs and compared and (reference or spec == reference_spec(config)):
        # Same values as rerunning the reference (same batches, same kernels), so not in the fingerprint.
        extra["kl_cache"] = str(config.out / KL_CACHE_DIR)
    return CodegenLM(
        pretrained=config.pretrained,
        batch_size=config.batch_size,
        **cell_model_args(config),
        **spec.model_args(),
        **extra,
    )


def plan_cells(config: MatrixConfig) -> list[Cell]:
    """Every (variant, task) of the run, in run order, each with its fingerprint."""
    base_sha256 = base_fingerprint(resolve_pretrained(config.pretrained))
    plan = []
    for spec in config.variants:
        identity = variant_identity(spec)
        identity["kl_reference"] = kl_reference(config, spec)
        plan += [
            Cell(spec, task, cell_fingerprint(base_sha256, identity, task, config)) for task in config.tasks
        ]
    return plan


def _cells_of_other_weights(
    lm: CodegenLM, spec: VariantSpec, plan: list[Cell], done: dict, pending: list[Cell]
) -> list[Cell]:
    """Cells of `spec` done earlier with other weights than the ones just loaded: to rerun, so that a
    variant's row comes from one model. The fingerprint cannot see this (it is known before any
    artifact is built): a variant rebuilt between invocations, such as a resumed run on another
    machine calibrating its own wanda-pruned artifact, can differ in its weights."""
    loaded = lm.get_model_info().get("variant_weights_sha256")
    if not loaded:
        return []
    stale, recorded_hashes = [], set()
    for cell in plan:
        recorded = (done.get(cell.key) or {}).get("model", {}).get("variant_weights_sha256")
        if cell.spec == spec and cell not in pending and recorded and recorded != loaded:
            stale.append(cell)
            recorded_hashes.add(recorded[:12])
    if stale:
        log.warning(
            "matrix: %s's weights (sha256 %s) are not those its recorded cells %s were made with (%s): "
            "rerunning them, so that its row comes from one model",
            spec.name,
            loaded[:12],
            ", ".join(cell.task for cell in stale),
            ", ".join(sorted(recorded_hashes)),
        )
    return stale


@dataclass(frozen=True)
class Roofline:
    """The base model's matmul shapes and the FLOP/s this machine reaches with them: measured once
    per run, before any cell, so that every cell's share of it compares with the others'."""

    shapes: MatmulShapes
    peak_flops_per_s: float


def _base_model(config: MatrixConfig) -> BaseModel:
    """The run's base model (the embedded default provisioned), loaded as its --model-args say."""
    return BaseModel(resolve_pretrained(config.pretrained), _base_load_config(config))


def _base_load_config(config: MatrixConfig) -> LoadConfig:
    """How the run's --model-args load the base model's files: its revision, remote code or not."""
    args = CodegenArgs.parse({**config.model_args, "pretrained": config.pretrained})
    return LoadConfig(revision=args.revision, trust_remote_code=args.trust_remote_code)


def _check_variants_fit_base(config: MatrixConfig, specs: set[VariantSpec]) -> None:
    """The run's variants can be made from its base model, known from the model's config before any
    cell loads a model (a misfit would otherwise fail at its first cell, after the cells before it):
    each registered variant's own check on the module tree, and the recipe adapters it would train."""
    named = [spec for spec in specs if not Path(spec.variant).expanduser().is_dir()]
    checked = [(spec, get_variant(spec.variant)) for spec in named]
    checked = [(spec, variant) for spec, variant in checked if variant.check is not None]
    adapters = [spec for spec in named if spec.variant in ADAPTER_KINDS]
    if not checked and not adapters:
        return
    base = _base_model(config)
    if checked:
        model = meta_model(base.name_or_path, base.load_config)
        for spec, variant in sorted(checked, key=lambda pair: pair[0].name):
            variant.check(model, make_config(variant, dict(spec.overrides)))
    for spec in adapters:
        check_recipe_adapter(spec.variant, dict(spec.overrides), base)


def measure_roofline(config: MatrixConfig) -> Roofline:
    """The run's Roofline: the base model's matmul shapes (from its config, no weights loaded) and
    the best FLOP/s of them here."""
    base = _base_model(config)
    shapes = MatmulShapes.of(meta_model(base.name_or_path, base.load_config))
    peak = max(measure_peak_flops(shapes).values())
    log.info("matrix: matmul roofline %.1f GFLOP/s", peak / 1e9)
    return Roofline(shapes, peak)


GENERATION_COUNTS = ("requests", "tokens", "prompt_tokens", "seconds", "cut_repeating")
SCORING_COUNTS = ("requests", "forward_tokens", "head_tokens", "reference_kept", "seconds")


def run_cell(
    lm: CodegenLM, cell: Cell, config: MatrixConfig, evaluate: Callable, roofline: Roofline
) -> dict | None:
    """Evaluate one cell on the loaded `lm`: its record, or None on the other ranks of a data-parallel
    run (rank 0 keeps the record)."""
    generation_before = dict(lm.generation_stats.as_dict())
    scoring_before = dict(lm.scoring_stats.as_dict())
    lm.model_span = None
    started = time.perf_counter()
    with writing_samples_to(config.out / "samples" / cell.spec.name):
        results = evaluate(lm, cell.task, config)
    ended = time.perf_counter()
    seconds = ended - started
    if results is None:
        return None
    info = lm.get_model_info()
    generation = _counts_since(info["generation"], generation_before, GENERATION_COUNTS)
    scoring = _counts_since(info["scoring"], scoring_before, SCORING_COUNTS)
    metrics = task_metrics(results)
    items, intervals = cell_uncertainty(results, metrics)
    return {
        "variant": cell.spec.name,
        "task": cell.task,
        "fingerprint": cell.fingerprint,
        "variant_spec": cell.spec.model_args(),
        "limit": config.limit,
        "batch_size": config.batch_size,
        "world_size": lm.world_size,  # generation counts are rank 0's share
        "metrics": metrics,
        "intervals": intervals,  # 95%, over items (harness/runs/uncertainty.py)
        "items": items,
        # Items each task scored: the gate sizes its tolerances by it.
        "samples": {t: n.get("effective") for t, n in results.get("n-samples", {}).items()},
        "higher_is_better": results.get("higher_is_better", {}),
        "versions": {
            "lm_eval": results.get("lm_eval_version"),
            "transformers": results.get("transformers_version"),
        },
        "seconds": round(seconds, 3),
        "phases": cell_phases(started, lm.model_span, ended),
        "generation": generation,
        "scoring": scoring,
        "work": cell_work(roofline.shapes, generation, scoring, seconds, roofline.peak_flops_per_s),
        "model": {k: v for k, v in info.items() if k not in ("generation", "scoring")},
        "kernels": kernel_settings(),
        "finished": timestamp(),
    }


def cell_phases(started: float, model_span: tuple[float, float] | None, ended: float) -> dict:
    """A cell's seconds before its model work (lm-eval building the task's documents and requests),
    from the start of the model's first call to the end of its last (the model's own seconds are in
    `generation` and `scoring`), and after it (execution of programs, metrics such as BERTScore)."""
    if model_span is None:
        return {"before_model_seconds": None, "model_span_seconds": None, "after_model_seconds": None}
    first, last = model_span
    return {
        "before_model_seconds": round(first - started, 3),
        "model_span_seconds": round(last - first, 3),
        "after_model_seconds": round(ended - last, 3),
    }


@dataclass(frozen=True)
class Progress:
    """Where a run stands after a finished cell: what a report written mid-run says of it."""

    cells_done: int  # cells with an up-to-date record
    cells_total: int
    # At this invocation's pace so far (loads included); None before its first cell. The latency
    # suite after the cells is not in it.
    seconds_left: float | None


def run_matrix(
    config: MatrixConfig,
    load: Callable[[MatrixConfig, VariantSpec], CodegenLM] = _default_load,
    evaluate: Callable[[CodegenLM, str, MatrixConfig], dict | None] = _default_evaluate,
    on_progress: Callable[[Progress], None] | None = None,
) -> list[dict]:
    """Run every cell that has no up-to-date record; return the records of all cells, in order.
    `on_progress` is called on rank 0 after each cell's record is kept (the command line rewrites
    the reports there, so that they grow as the run goes)."""
    check_matrix_config(config, lm_eval_tasks=evaluate is _default_evaluate)
    store = RecordStore(config.out / RECORDS_FILE)
    done = store.latest()
    plan = plan_cells(config)
    queue = [cell for cell in plan if done.get(cell.key, {}).get("fingerprint") != cell.fingerprint]
    log.info("matrix: %d cells, %d already done, %d to run", len(plan), len(plan) - len(queue), len(queue))
    bar = tqdm(
        total=len(plan),
        initial=len(plan) - len(queue),
        desc="matrix",
        unit="cell",
        disable=launched_rank() != 0,
    )
    _check_variants_fit_base(config, {cell.spec for cell in queue})
    roofline = measure_roofline(config) if queue else None
    lm, loaded = None, None
    started, ran = time.perf_counter(), 0
    try:
        while queue:
            cell = queue.pop(0)
            bar.set_description(f"matrix: {cell.spec.name} × {cell.task}")
            load_seconds = None
            if loaded != cell.spec:
                lm, loaded = None, None  # free the previous variant before loading the next
                load_started = time.perf_counter()
                lm, loaded = load(config, cell.spec), cell.spec
                load_seconds = round(time.perf_counter() - load_started, 3)
                stale = _cells_of_other_weights(lm, cell.spec, plan, done, [cell, *queue])
                queue[:0] = stale
                bar.total += len(stale)
            record = run_cell(lm, cell, config, evaluate, roofline)
            if record is not None and load_seconds is not None:
                # On the first cell run after the load: a variant's later cells share its model.
                record["load_seconds"] = load_seconds
            if record is not None:
                store.append(record)
                done[cell.key] = record
                ran += 1
                if on_progress is not None:
                    pace = (time.perf_counter() - started) / ran
                    on_progress(Progress(bar.n + 1, bar.total, pace * len(queue)))
            bar.update(1)
    finally:
        bar.close()
        shutil.rmtree(config.out / KL_CACHE_DIR, ignore_errors=True)
    return [done[cell.key] for cell in plan if cell.key in done]
