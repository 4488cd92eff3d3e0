from __future__ import annotations

import dataclasses
import json
import subprocess
import time
from pathlib import Path

import pytest

from codegen_bench.harness.engine.generation import GenerationStats
from codegen_bench.harness.engine.likelihood import ScoringStats
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.runs import matrix
from codegen_bench.harness.runs.matrix import MatrixConfig, RecordStore, VariantSpec, run_matrix, task_metrics

# A base model named by hub id: what decides a fingerprint without provisioning or loading anything.
HUB_ID = "example-org/tiny-coder"


def test_variant_spec_parses_name_variant_and_overrides():
    assert VariantSpec.parse("base") == VariantSpec("base", "base")
    assert VariantSpec.parse("l1=l1-pruned,variant.sparsity=0.3") == VariantSpec(
        "l1", "l1-pruned", (("sparsity", "0.3"),)
    )
    assert VariantSpec.parse("lora=/tmp/a").model_args() == {"variant": "/tmp/a"}
    # Overrides without a NAME: the row is named after its variant.
    assert VariantSpec.parse("l1-pruned,variant.sparsity=0.3") == VariantSpec(
        "l1-pruned", "l1-pruned", (("sparsity", "0.3"),)
    )
    with pytest.raises(CodegenBenchError, match=r"variant\.KEY=VALUE"):
        VariantSpec.parse("l1=l1-pruned,sparsity=0.3")


def test_record_store_skips_a_torn_line_and_keeps_appending_cleanly(tmp_path):
    store = RecordStore(tmp_path / "records.jsonl")
    store.append({"variant": "base", "task": "a", "n": 1})
    with open(store.path, "a") as f:
        f.write('{"variant": "base", "task": "b", "n"')  # a write cut short by a crash
    store.append({"variant": "base", "task": "c", "n": 3})
    assert [r["task"] for r in store.read()] == ["a", "c"]
    assert store.latest()[("base", "c")]["n"] == 3


def test_task_metrics_drops_filters_stderr_and_counts():
    results = {
        "results": {
            "code_explain": {"alias": "code_explain", "bleu,none": 4.0, "bleu_stderr,none": 0.1},
            "humaneval_custom": {"pass@1,none": 0.5, "pass@1_stderr,none": "N/A", "sample_len": 2},
        }
    }
    assert task_metrics(results) == {"code_explain": {"bleu": 4.0}, "humaneval_custom": {"pass@1": 0.5}}


class FakeLM:
    """Everything the matrix uses of CodegenLM, without a model: its running generation and scoring
    counts, its model info (the weights' sha256 among it) and its world size."""

    world_size = 1

    def __init__(self, spec, weights_sha256=None):
        self.spec = spec
        self.weights_sha256 = weights_sha256
        self.generation_stats = GenerationStats()
        self.scoring_stats = ScoringStats()
        self.model_span = None

    def get_model_info(self):
        return {
            "variant": self.spec.variant,
            "variant_weights_sha256": self.weights_sha256,
            "peak_memory_bytes": 123,
            "generation": self.generation_stats.as_dict(),
            "scoring": self.scoring_stats.as_dict(),
        }


def _fake_evaluate(calls, fail_at=None):
    """lm-eval's stand-in: each cell generates 2 requests of 10 tokens on the model it is given."""

    def evaluate(lm, task, config):
        if fail_at is not None and len(calls) == fail_at:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a cell
        calls.append((lm.spec.name, task))
        lm.generation_stats.requests += 2
        lm.generation_stats.tokens += 20
        return {"results": {task: {"score,none": len(calls) / 10}}}

    return evaluate


def test_interrupted_matrix_resumes_without_redoing_finished_cells(tiny_model_dir, tmp_path):
    config = MatrixConfig(
        variants=(VariantSpec.parse("base"), VariantSpec.parse("l1=l1-pruned,variant.sparsity=0.3")),
        tasks=("task_a", "task_b"),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
        limit=2,
    )
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_matrix(config, load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate(calls, fail_at=3))
    assert calls == [("base", "task_a"), ("base", "task_b"), ("l1", "task_a")]
    lines = (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    assert [json.loads(line)["task"] for line in lines] == ["task_a", "task_b", "task_a"]

    calls.clear()
    records = run_matrix(config, load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate(calls))
    assert calls == [("l1", "task_b")]  # only the cell that was cut off
    assert [(r["variant"], r["task"]) for r in records] == [
        ("base", "task_a"),
        ("base", "task_b"),
        ("l1", "task_a"),
        ("l1", "task_b"),
    ]
    assert records[0]["metrics"] == {"task_a": {"score": 0.1}}
    assert records[0]["model"]["peak_memory_bytes"] == 123


def test_a_cells_generation_counts_are_its_share_of_the_models_running_counts(tiny_model_dir, tmp_path):
    config = MatrixConfig(
        variants=(VariantSpec.parse("base"),),
        tasks=("task_a", "task_b"),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
    )
    records = run_matrix(config, load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate([]))
    # One model served both cells: the second's counts leave out the first's.
    assert [(r["generation"]["requests"], r["generation"]["tokens"]) for r in records] == [(2, 20), (2, 20)]
    assert [r["scoring"]["requests"] for r in records] == [0, 0]
    assert [r["world_size"] for r in records] == [1, 1]


def test_changing_one_variants_config_reruns_only_its_cells(tiny_model_dir, tmp_path):
    def config(sparsity):
        return MatrixConfig(
            variants=(
                VariantSpec.parse("base"),
                VariantSpec.parse(f"l1=l1-pruned,variant.sparsity={sparsity}"),
            ),
            tasks=("task_a",),
            out=tmp_path / "run",
            pretrained=str(tiny_model_dir),
        )

    calls = []
    run_matrix(config(0.3), load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate(calls))
    run_matrix(config(0.3), load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate(calls))
    assert calls == [("base", "task_a"), ("l1", "task_a")]  # the second run had nothing to do
    run_matrix(config(0.5), load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate(calls))
    assert calls[2:] == [("l1", "task_a")]


def test_a_variant_loaded_with_other_weights_than_its_recorded_cells_reruns_them(tiny_model_dir, tmp_path):
    # A resumed run whose variant was rebuilt with other weights (calibrated again on another machine):
    # the fingerprint is the same, but one row must not mix two models.
    config = MatrixConfig(
        variants=(VariantSpec.parse("l1=l1-pruned,variant.sparsity=0.3"),),
        tasks=("task_a", "task_b", "task_c"),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
    )
    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_matrix(config, load=lambda c, s: FakeLM(s, "a" * 64), evaluate=_fake_evaluate(calls, 2))
    calls.clear()
    records = run_matrix(config, load=lambda c, s: FakeLM(s, "b" * 64), evaluate=_fake_evaluate(calls))
    assert calls == [("l1", "task_c"), ("l1", "task_a"), ("l1", "task_b")]
    assert [r["model"]["variant_weights_sha256"] for r in records] == ["b" * 64] * 3

    calls.clear()  # the same weights again: nothing to do
    run_matrix(config, load=lambda c, s: FakeLM(s, "b" * 64), evaluate=_fake_evaluate(calls))
    assert calls == []


def test_matrix_runs_real_cells_through_lm_eval(tiny_model_dir, tmp_path, monkeypatch):
    config = MatrixConfig(
        variants=(VariantSpec.parse("base"), VariantSpec.parse("again=base")),
        tasks=("humaneval_custom",),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
        limit=2,
        batch_size=2,
        model_args={"max_length": 256, "chat": "false"},
        gen_kwargs={"max_gen_toks": 16},
    )
    import lm_eval.tasks

    from codegen_bench.harness.lm_eval_plugin.evaluation_inputs import task_manager

    built = []
    original = lm_eval.tasks.TaskManager.__init__
    monkeypatch.setattr(
        lm_eval.tasks.TaskManager,
        "__init__",
        lambda self, *a, **k: built.append(1) or original(self, *a, **k),
    )
    task_manager.cache_clear()
    import torch.utils.collect_env

    asked = []
    pretty = torch.utils.collect_env.get_pretty_env_info
    monkeypatch.setattr(torch.utils.collect_env, "get_pretty_env_info", lambda: asked.append(1) or pretty())
    matrix._environment_info.cache_clear()
    records = run_matrix(config)
    assert len(built) == 1  # lm-eval's task index is read once per process, not once per cell
    assert len(asked) == 1  # and the environment (pip and the system asked) too
    assert [r["variant"] for r in records] == ["base", "again"]
    for record in records:
        assert set(record["metrics"]) == {"humaneval_custom"}
        assert 0.0 <= record["metrics"]["humaneval_custom"]["pass@1"] <= 1.0
        assert record["generation"]["requests"] == 2 and record["generation"]["tokens"] > 0
        # Where the cell's time went: before the model's first call, its span, after its last one.
        phases = record["phases"]
        # The span covers the generation seconds (each is rounded to the millisecond on its own, the
        # latter as the difference of two rounded running totals).
        assert phases["model_span_seconds"] >= record["generation"]["seconds"] - 0.002
        assert record["generation"]["seconds"] > 0
        assert phases["before_model_seconds"] > 0 and phases["after_model_seconds"] > 0  # docs; execution
        assert sum(phases.values()) == pytest.approx(record["seconds"], abs=0.01)
        # Each variant's samples in its own folder, though one process ran both.
        (samples,) = (tmp_path / "run" / "samples" / record["variant"]).glob("humaneval_custom_*.jsonl")
        assert len(samples.read_text().splitlines()) == 2
    assert records[0]["metrics"] == records[1]["metrics"]  # same model, greedy
    # Per-item verdicts and the interval they give, for reports and paired comparisons.
    items = records[0]["items"]["humaneval_custom"]
    assert items["doc_ids"] == [0, 1] and len(items["pass@1"]) == 2
    low, high, method = records[0]["intervals"]["humaneval_custom"]["pass@1"]
    assert method == "wilson" and low <= records[0]["metrics"]["humaneval_custom"]["pass@1"] <= high


def test_a_changed_task_configuration_reruns_its_cells(tiny_model_dir, tmp_path, monkeypatch):
    from codegen_bench.harness.runs import matrix

    assert matrix.task_configuration("humaneval_custom")["metadata"]["version"] == 2.0
    config = MatrixConfig(
        variants=(VariantSpec.parse("base"),),
        tasks=("task_a",),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
    )
    calls = []
    run_matrix(config, load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate(calls))
    monkeypatch.setattr(matrix, "task_configuration", lambda task: {"metadata": {"version": 2}})
    run_matrix(config, load=lambda c, s: FakeLM(s), evaluate=_fake_evaluate(calls))
    assert calls == [("base", "task_a"), ("base", "task_a")]


def test_the_task_configuration_does_not_depend_on_where_the_checkout_lies():
    """A run folder committed from one checkout resumes in another: no absolute path in a fingerprint."""
    import json
    from pathlib import Path

    from codegen_bench.harness.runs import matrix

    configuration = matrix.task_configuration("humaneval_custom")
    assert configuration["process_results"] == "utils.process_results_greedy"
    checkout = str(Path(matrix.__file__).resolve().parents[2])
    for task in ("humaneval_custom", "humaneval_nll", "code_explain_humaneval"):
        assert checkout not in json.dumps(matrix.task_configuration(task), default=str)


def test_latency_suite_runs_once_per_run_folder(tiny_model_dir, tmp_path):
    from codegen_bench.harness.runs.latency import (
        LATENCY_FILE,
        latency_pending,
        latency_variants,
        run_latency,
        variant_fingerprints,
    )
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES, measured_latency_size

    config = MatrixConfig(
        variants=(VariantSpec.parse("base"),),
        tasks=("humaneval_custom",),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
        batch_size=2,
        latency_size=LATENCY_SIZES["demo"],
    )
    path = run_latency(config)
    assert latency_variants(path) == variant_fingerprints(config)  # {"base": what decides its speed}
    assert measured_latency_size(path) == LATENCY_SIZES["demo"]  # the file records what ran
    for bench in json.loads(path.read_text())["benchmarks"]:
        # What the suite cost: each benchmark's whole time, warm-ups included, and the variant's load.
        assert bench["extra_info"]["wall_seconds"] >= bench["stats"]["total"] > 0
        assert bench["extra_info"]["load_seconds"] > 0
    stamp = path.stat().st_mtime_ns
    assert run_latency(config) == tmp_path / "run" / LATENCY_FILE
    assert path.stat().st_mtime_ns == stamp  # covered already: not measured again
    assert latency_pending(dataclasses.replace(config, latency_size=LATENCY_SIZES["full"]))
    # The same name for another model (here another variant; as much so another recipe or config).
    assert latency_pending(dataclasses.replace(config, variants=(VariantSpec.parse("base=int8-dynamic"),)))
    assert latency_pending(dataclasses.replace(config, batch_size=3))


def _suite_writing(commands):
    """subprocess.run for the latency suite: records the command, writes an empty benchmark JSON."""

    def run(command):
        commands.append(command)
        Path(command[command.index("--benchmark-json") + 1]).write_text('{"benchmarks": []}')
        return subprocess.CompletedProcess(command, 0)

    return run


def test_the_latency_suite_is_told_the_reference_only_when_one_is_named(tmp_path, monkeypatch):
    from codegen_bench.harness.runs import latency

    commands = []
    monkeypatch.setattr(latency.subprocess, "run", _suite_writing(commands))
    for reference in (None, "int8-dynamic"):
        config = MatrixConfig(
            variants=(VariantSpec.parse("base"), VariantSpec.parse("int8-dynamic")),
            tasks=("t",),
            out=tmp_path / str(reference),
            pretrained=HUB_ID,
            reference=reference,
        )
        latency.run_latency(config)
    default, named = commands
    assert "--reference" not in default  # the suite applies the same default rule itself
    assert named[named.index("--reference") + 1] == "int8-dynamic"


def test_the_latency_suite_is_told_the_run_latency_size(tmp_path, monkeypatch):
    from codegen_bench.harness.runs import latency
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES

    commands = []
    monkeypatch.setattr(latency.subprocess, "run", _suite_writing(commands))
    config = MatrixConfig(
        variants=(VariantSpec.parse("base"),),
        tasks=("t",),
        out=tmp_path / "run",
        pretrained=HUB_ID,
        latency_size=LATENCY_SIZES["demo"],
    )
    latency.run_latency(config)
    (command,) = commands
    options = {name: command[command.index(name) + 1] for name in command if name.startswith("--")}
    assert options["--latency-rounds"] == "1"
    assert options["--prompt-tokens"] == "64"
    assert options["--new-tokens"] == "16"
    assert options["--decode-prompt-tokens"] == "16"


def test_the_latency_presets_full_size_is_the_suites_default():
    import importlib.util

    from codegen_bench.harness.runs.latency import LATENCY_SUITE
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES, LatencySize

    # benchmarks/ is no package: its conftest is loaded from its file, as pytest loads it.
    spec = importlib.util.spec_from_file_location("latency_conftest", LATENCY_SUITE.parent / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    defaults = {}

    class Group:
        def addoption(self, name, **kwargs):
            defaults[name] = kwargs.get("default")

    conftest.pytest_addoption(type("Parser", (), {"getgroup": lambda self, name: Group()})())
    assert LATENCY_SIZES["full"] == LatencySize(
        rounds=3, prompt_tokens=256, new_tokens=64, decode_prompt_tokens=16
    )
    assert (
        LatencySize(
            rounds=defaults["--latency-rounds"],
            prompt_tokens=defaults["--prompt-tokens"],
            new_tokens=defaults["--new-tokens"],
            decode_prompt_tokens=defaults["--decode-prompt-tokens"],
        )
        == LATENCY_SIZES["full"]
    )


def _stored_latency(path, *, rounds, prompt_tokens, new_tokens, decode_prompt_tokens=None, fingerprint=None):
    """A latency.json as a matrix run writes it, for one variant (base, of `fingerprint`) at one size."""
    decode = {"variant": "base", "rows": 1, "new_tokens": new_tokens}
    if decode_prompt_tokens is not None:  # files from before the suite recorded it lack it
        decode["decode_prompt_tokens"] = decode_prompt_tokens
    benchmarks = [
        {
            "name": "test_prefill_latency[base]",
            "extra_info": {"variant": "base", "prompt_tokens": prompt_tokens},
        },
        {"name": "test_time_to_first_token[base]", "extra_info": {"variant": "base", "prompt_tokens": 120}},
        {"name": "test_decode_throughput[base-1]", "extra_info": decode},
    ]
    for bench in benchmarks:
        bench["stats"] = {"rounds": rounds, "median": 0.5}
        bench["extra_info"]["variant_fingerprint"] = fingerprint
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"benchmarks": benchmarks}))


def test_a_latency_file_measured_at_another_size_is_pending(tmp_path):
    from codegen_bench.harness.runs.latency import LATENCY_FILE, latency_pending, variant_fingerprints
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES

    def config(size):
        variants = (VariantSpec.parse("base"),)
        return MatrixConfig(
            variants=variants, tasks=("t",), out=tmp_path, pretrained=HUB_ID, latency_size=LATENCY_SIZES[size]
        )

    base = variant_fingerprints(config("demo"))["base"]
    demo = {"rounds": 1, "prompt_tokens": 64, "new_tokens": 16, "decode_prompt_tokens": 16}
    _stored_latency(tmp_path / LATENCY_FILE, **demo, fingerprint=base)
    assert not latency_pending(config("demo"))
    assert latency_pending(config("full"))
    _stored_latency(
        tmp_path / LATENCY_FILE,
        rounds=3,
        prompt_tokens=256,
        new_tokens=64,
        decode_prompt_tokens=16,
        fingerprint=base,
    )
    assert not latency_pending(config("full"))
    assert latency_pending(config("demo"))
    # A file that does not record its decode prompts was measured at a size nobody can tell.
    _stored_latency(tmp_path / LATENCY_FILE, rounds=3, prompt_tokens=256, new_tokens=64, fingerprint=base)
    assert latency_pending(config("full"))
    # A file that does not say which model its base was (measured outside a matrix run, or before
    # the file recorded it) is measured again.
    _stored_latency(tmp_path / LATENCY_FILE, **demo)
    assert latency_pending(config("demo"))


def test_the_latency_size_is_in_no_cell_fingerprint():
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES
    from codegen_bench.harness.runs.matrix import cell_fingerprint

    def fingerprint(size):
        variants = (VariantSpec.parse("base"),)
        config = MatrixConfig(variants=variants, tasks=("t",), out="run", latency_size=LATENCY_SIZES[size])
        return cell_fingerprint("0" * 64, {"variant": "base"}, "humaneval_custom", config)

    assert fingerprint("demo") == fingerprint("full")


def test_latency_suite_is_skipped_for_backend_vllm(tiny_model_dir, tmp_path):
    from codegen_bench.harness.runs.latency import run_latency

    config = MatrixConfig(
        variants=(VariantSpec.parse("base"),),
        tasks=("humaneval_custom",),
        out=tmp_path / "run",
        pretrained=str(tiny_model_dir),
        model_args={"backend": "vllm"},
    )
    assert run_latency(config) is None
    assert not (tmp_path / "run").exists()


def test_every_variant_but_the_reference_is_compared_with_it(tmp_path):
    from codegen_bench.harness.runs.matrix import kl_reference

    def config(*specs, **model_args):
        return MatrixConfig(
            variants=tuple(VariantSpec.parse(s) for s in specs),
            tasks=("t",),
            out=tmp_path,
            model_args=model_args,
        )

    run = config("int8-dynamic", "base", "l1=l1-pruned,variant.sparsity=0.3")
    assert [kl_reference(run, s) for s in run.variants] == ["base", None, "base"]
    alone = config("int8-dynamic", "nf4")  # no base: the first variant is the reference
    assert [kl_reference(alone, s) for s in alone.variants] == [None, "int8-dynamic"]
    on_vllm = config("base", "nf4", backend="vllm")  # vLLM returns no distributions
    assert [kl_reference(on_vllm, s) for s in on_vllm.variants] == [None, None]
    named = MatrixConfig(
        variants=tuple(VariantSpec.parse(s) for s in ("int8-dynamic", "base", "nf4")),
        tasks=("t",),
        out=tmp_path,
        reference="nf4",
    )
    assert [kl_reference(named, s) for s in named.variants] == ["nf4", "nf4", None]


def test_a_reference_that_is_not_one_of_the_variants_fails_before_anything_runs(tmp_path):
    with pytest.raises(CodegenBenchError, match=r"'nf4' is not in the run's variants \(base, int8-dynamic\)"):
        MatrixConfig(
            variants=(VariantSpec.parse("base"), VariantSpec.parse("int8-dynamic")),
            tasks=("t",),
            out=tmp_path,
            reference="nf4",
        )


def test_naming_the_default_reference_keeps_every_cells_fingerprint(tiny_model_dir, tmp_path):
    """The reference is not in the fingerprint: a finished run is still finished with --reference base."""
    from codegen_bench.harness.runs.matrix import plan_cells

    def fingerprints(reference):
        config = MatrixConfig(
            variants=(VariantSpec.parse("int8-dynamic"), VariantSpec.parse("base")),
            tasks=("task_a",),
            out=tmp_path,
            pretrained=str(tiny_model_dir),
            reference=reference,
        )
        return [cell.fingerprint for cell in plan_cells(config)]

    assert fingerprints("base") == fingerprints(None)
    # Another reference changes what int8-dynamic's likelihood cells compare with, so its cells.
    assert fingerprints("int8-dynamic")[1] != fingerprints(None)[1]


def test_the_reference_cells_log_probs_serve_every_other_variants_kl_bit_for_bit(tiny_model_dir, tmp_path):
    from codegen_bench.harness.runs import matrix

    def config(out, keep=True):
        return MatrixConfig(
            variants=(VariantSpec.parse("base"), VariantSpec.parse("l1=l1-pruned,variant.sparsity=0.3")),
            tasks=("humaneval_nll",),
            out=tmp_path / out,
            pretrained=str(tiny_model_dir),
            limit=3,
            batch_size=2,
            model_args={"max_length": 256},
            keep_reference_log_probs=keep,
        )

    base, kept = run_matrix(config("kept"))
    assert not (tmp_path / "kept" / matrix.KL_CACHE_DIR).exists()  # removed when the run ends
    _, rerun = run_matrix(config("rerun", keep=False))
    # base left its log-probs, so l1's cell never ran the reference: half the forward tokens.
    assert kept["scoring"]["reference_kept"] == 3 and rerun["scoring"]["reference_kept"] == 0
    assert 2 * kept["scoring"]["forward_tokens"] == rerun["scoring"]["forward_tokens"]
    assert kept["scoring"]["forward_tokens"] == base["scoring"]["forward_tokens"]
    assert kept["metrics"]["humaneval_nll"]["kl_per_token"] > 0
    assert kept["metrics"] == rerun["metrics"] and kept["items"] == rerun["items"]  # the same values


def test_cell_work_is_the_matmul_flops_over_the_cells_seconds(tiny_model_dir):
    from codegen_bench.harness.engine.roofline import MatmulShapes, generation_flops, scoring_flops
    from codegen_bench.harness.loading import meta_model
    from codegen_bench.harness.runs.matrix import cell_work

    shapes = MatmulShapes.of(meta_model(str(tiny_model_dir)))
    generation = {"requests": 2, "tokens": 30, "prompt_tokens": 50, "seconds": 2.0}
    scoring = {"requests": 4, "forward_tokens": 400, "head_tokens": 60, "seconds": 1.0}
    work = cell_work(shapes, generation, scoring, seconds=10.0, peak=1e9)
    flops = generation_flops(shapes, 50, 30, 2) + scoring_flops(shapes, 400, 60)
    assert work["matmul_flops"] == pytest.approx(flops)
    assert work["model_seconds"] == 3.0
    assert work["roofline_fraction"] == pytest.approx(flops / 10.0 / 1e9)
    assert work["model_roofline_fraction"] == pytest.approx(flops / 3.0 / 1e9)
    idle = cell_work(shapes, {"requests": 0}, {"requests": 0}, seconds=5.0, peak=1e9)
    assert idle["matmul_flops"] == 0 and idle["model_roofline_fraction"] is None


def test_each_record_carries_the_runs_roofline_and_the_leaderboard_its_cell_times(tiny_model_dir, tmp_path):
    from codegen_bench.harness.runs.reports import build_reports

    config = MatrixConfig(
        variants=[VariantSpec.parse("base")],
        tasks=["a", "b"],
        pretrained=str(tiny_model_dir),
        out=tmp_path / "run",
    )

    def slow_load(c, s):
        time.sleep(0.2)
        return FakeLM(s)

    records = run_matrix(config, load=slow_load, evaluate=_fake_evaluate([]))
    peaks = {r["work"]["roofline_flops_per_s"] for r in records}
    assert len(peaks) == 1 and peaks.pop() > 1e6  # measured once for the run
    # The load is the first cell's: the second shares its model.
    assert records[0]["load_seconds"] >= 0.2 and "load_seconds" not in records[1]
    leaderboard = build_reports([config.out])["leaderboard"].read_text()
    assert "## Time per cell" in leaderboard
    rows = [line for line in leaderboard.splitlines() if line.startswith(("| base | a |", "| base | b |"))]
    assert [row.split("|")[7].strip() for row in rows] == ["0", ""]  # the load column, rounded


def test_quality_cells_dequantize_4bit_weights_unless_told_otherwise(tmp_path):
    from codegen_bench.harness.runs.matrix import cell_model_args

    def args(**kwargs):
        return cell_model_args(MatrixConfig(variants=(), tasks=(), out=tmp_path, **kwargs))

    assert args() == {"dequantize_4bit": "true"}
    assert args(model_args={"dequantize_4bit": "false"}) == {"dequantize_4bit": "false"}
    assert args(dequantize_4bit=False) == {}
    assert args(model_args={"backend": "vllm"}) == {"backend": "vllm"}  # vLLM has its own 4-bit path


def test_the_leaderboard_holds_the_first_cells_row_before_the_second_cell_starts(
    tiny_model_dir, tmp_path, monkeypatch
):
    from codegen_bench.harness import cli
    from codegen_bench.harness.runs import matrix

    out = tmp_path / "run"
    seen = []

    def evaluate(lm, task, config):
        leaderboard = out / "LEADERBOARD.md"
        seen.append(leaderboard.read_text() if leaderboard.is_file() else None)
        return _fake_evaluate([])(lm, task, config)

    run_matrix_as_usual = matrix.run_matrix
    monkeypatch.setattr(
        matrix,
        "run_matrix",
        lambda config, **kw: run_matrix_as_usual(
            config, load=lambda c, s: FakeLM(s), evaluate=evaluate, **kw
        ),
    )
    argv = ["matrix", "--variants", "base", "--tasks", "humaneval_custom", "humaneval_nll", "--no-latency"]
    assert cli.main([*argv, "--pretrained", str(tiny_model_dir), "--out", str(out)]) == 0
    assert seen[0] is None  # nothing finished yet
    assert "| base |" in seen[1] and "1 of 2 cells done, 1 to go" in seen[1]
    assert (out / "matrix.csv").is_file()
    final = (out / "LEADERBOARD.md").read_text()
    assert "cells done" not in final and "| base |" in final  # the finished run's report


def test_outside_a_git_checkout_the_git_hash_is_none_and_git_says_nothing(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    matrix._git_hash_once.cache_clear()
    try:
        assert matrix._git_hash_once() is None
    finally:
        matrix._git_hash_once.cache_clear()
    assert "fatal" not in capfd.readouterr().err
