"""The regression gate (`codegen-bench check`): tolerances, verdicts, the CLI's exit status, and a
real injected regression caught end to end on the tiny model."""

from __future__ import annotations

import json

import pytest

from codegen_bench.harness import cli
from codegen_bench.harness.runs.gate import (
    SPEED_TASK,
    TOKENS_METRIC,
    Check,
    baseline_checks,
    check_run,
    family_baseline,
    format_outcomes,
    int8_kernel_family,
    judge,
    write_baseline,
)
from codegen_bench.harness.runs.matrix import RECORDS_FILE, MatrixConfig, RecordStore, VariantSpec, run_matrix

N = 50


@pytest.fixture(autouse=True)
def default_int8_family(monkeypatch):
    """The CLI checks against this CPU's family baseline; these tests are about the default one."""
    monkeypatch.setattr("codegen_bench.harness.runs.gate.int8_kernel_family", lambda cpuinfo=None: None)


def test_a_cpu_with_amx_int8_has_its_own_baseline_beside_the_default(tmp_path, monkeypatch):
    amx = "processor : 0\nflags : fpu avx2 avx512f avx512_vnni amx_tile amx_int8\n"
    assert int8_kernel_family(amx) == "amx_int8"
    assert int8_kernel_family("processor : 0\nflags : fpu avx2 avx512f avx512_vnni\n") is None
    path = tmp_path / "baseline.json"
    assert family_baseline(path, None) == path
    assert family_baseline(path, "amx_int8") == tmp_path / "baseline.amx_int8.json"
    monkeypatch.setattr("codegen_bench.harness.runs.gate.int8_kernel_family", lambda cpuinfo=None: "amx_int8")
    assert cli.main(["check", str(tmp_path / "run"), "--baseline", str(path)]) == 2  # no family baseline yet


def _record(variant, pass_at_1, tokens_per_s, tokens=1000, n=N, nll=0.7):
    return {
        "variant": variant,
        "task": "humaneval_custom",
        "limit": n,
        "samples": {"humaneval_custom": n},
        "metrics": {"humaneval_custom": {"pass@1": pass_at_1, "nll_per_token": nll}},
        "higher_is_better": {"humaneval_custom": {"pass@1": True, "nll_per_token": False}},
        "generation": {"tokens": tokens, "seconds": tokens / tokens_per_s},
        "seconds": tokens / tokens_per_s + 5,
        "model": {},
    }


def _run(tmp_path, name, *records):
    run = tmp_path / name
    store = RecordStore(run / RECORDS_FILE)
    for record in records:
        store.append(record)
    return run


@pytest.fixture
def baseline(tmp_path):
    run = _run(tmp_path, "reference", _record("base", 0.60, 10.0), _record("int8", 0.58, 20.0))
    path = tmp_path / "baseline.json"
    write_baseline(run, path, command="codegen-bench matrix --limit 50")
    return path


def test_tolerances_follow_the_sample_size_and_the_metrics_scale(tmp_path):
    run = _run(tmp_path, "r", _record("base", 0.6, 10.0, n=164), _record("int8", 0.6, 25.0, n=5))
    checks = {(c.variant, c.task, c.metric): c for c in baseline_checks(run)}
    # 2% of 164 items is 3 items, so pass@1 may move 3/164; of 5 items at least one: 1/5.
    assert checks[("base", "humaneval_custom", "pass@1")].tolerance == pytest.approx(3 / 164)
    assert checks[("int8", "humaneval_custom", "pass@1")].tolerance == pytest.approx(1 / 5)
    assert checks[("base", "humaneval_custom", "pass@1")].direction == "higher"
    # Likelihood of fixed text: 1% of the value, whatever n; lower is better.
    nll = checks[("int8", "humaneval_custom", "nll_per_token")]
    assert (nll.tolerance, nll.direction) == (pytest.approx(0.007), "lower")
    tokens = checks[("base", "humaneval_custom", TOKENS_METRIC)]
    assert (tokens.tolerance, tokens.direction) == (pytest.approx(1000 * 3 / 164), "either")
    # Speed only as a ratio to the run's first variant, 35% slack.
    speed = checks[("int8", SPEED_TASK, "generation_tokens_per_s_x_base")]
    assert speed.value == pytest.approx(2.5) and speed.tolerance == pytest.approx(0.875)
    assert ("base", SPEED_TASK, "generation_tokens_per_s_x_base") not in checks


def test_gate_passes_on_an_unchanged_run_and_within_tolerance(tmp_path, baseline):
    # One item of 50 flipped (the tolerance is one item), absolute speeds halved on a slower machine
    # with the same ratio, and a real improvement: all pass.
    run = _run(tmp_path, "again", _record("base", 0.62, 5.0), _record("int8", 0.70, 10.0))
    outcomes = check_run(run, baseline)
    assert not [o for o in outcomes if o.failed]
    verdicts = {(o.check.variant, o.check.metric): o.verdict for o in outcomes}
    assert verdicts[("base", "pass@1")] == "ok" and verdicts[("int8", "pass@1")] == "improved"


def test_gate_fails_on_regressed_quality_speed_and_stopping(tmp_path, baseline, capsys):
    run = _run(
        tmp_path,
        "broken",
        _record("base", 0.56, 10.0, tokens=1500),  # 2 items lost; rows run on past their stops
        _record("int8", 0.58, 12.0, nll=0.9),  # int8 no longer faster than base, worse likelihood
    )
    failed = {(o.check.variant, o.check.metric): o.verdict for o in check_run(run, baseline) if o.failed}
    assert failed == {
        ("base", "pass@1"): "REGRESSED",
        ("base", TOKENS_METRIC): "CHANGED",
        ("int8", "nll_per_token"): "REGRESSED",
        ("int8", "generation_tokens_per_s_x_base"): "REGRESSED",
    }
    assert cli.main(["check", str(run), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    assert "| base | humaneval_custom | pass@1 | 0.6 | ±0.02 | 0.56 | -0.04 | **REGRESSED** |  |" in out
    assert "4 failed" in out
    assert "| int8 | humaneval_custom | pass@1 |" not in out  # unchanged checks are not listed


def test_missing_cells_and_other_sample_sizes_fail(tmp_path, baseline):
    run = _run(tmp_path, "partial", _record("base", 0.6, 10.0, n=20))
    verdicts = {(o.check.variant, o.check.metric): o.verdict for o in check_run(run, baseline)}
    assert verdicts[("int8", "pass@1")] == "MISSING"
    assert verdicts[("base", "pass@1")] == "NOT COMPARABLE"


def test_judge_and_table_on_hand_made_checks():
    check = Check("base", "t", "bleu", 10.0, 2.0, "higher", 5)
    assert judge(check, 8.0, 5).verdict == "ok"
    assert judge(check, 7.9, 5).verdict == "REGRESSED"
    assert judge(check, float("nan"), 5).verdict == "MISSING"
    table = format_outcomes([judge(check, 7.0, 5)])
    assert table.splitlines()[-1] == "| base | t | bleu | 10 | ±2 | 7 | -3 | **REGRESSED** |  |"


def _items(values, key="values"):
    return {"doc_ids": list(range(len(values))), key: values}


def test_paired_view_fails_a_significant_loss_within_the_tolerance():
    # 500 problems, a tolerance of 10 flips (2%).
    baseline = [1.0] * 300 + [0.0] * 200
    check = Check("int8", "t", "pass@1", 0.6, 10 / 500, "higher", 500, _items(baseline))
    # 12 lost and 10 gained: a net loss of 2 problems, as noisy as flips come.
    noisy = [0.0] * 12 + [1.0] * 288 + [1.0] * 10 + [0.0] * 190
    outcome = judge(check, sum(noisy) / 500, 500, _items(noisy))
    assert outcome.verdict == "ok" and outcome.note == "−12/+10 vs baseline, McNemar p=0.83"
    # 9 lost and 1 gained: a net loss of 8, within the tolerance, but not chance (p = 0.021).
    lost = [0.0] * 9 + [1.0] * 291 + [1.0] + [0.0] * 199
    outcome = judge(check, sum(lost) / 500, 500, _items(lost))
    assert outcome.verdict == "REGRESSED" and outcome.note == "−9/+1 vs baseline, McNemar p=0.021"
    assert judge(check, sum(lost) / 500, 500).verdict == "ok"  # what the tolerance alone says


def test_paired_view_catches_a_shift_on_every_item_that_the_tolerance_allows():
    baseline = [0.60 + 0.01 * (i % 7) for i in range(50)]
    run = [v - 0.004 for v in baseline]  # 0.004 worse everywhere: under the 0.02 tolerance
    check = Check("int8", "t", "bertscore_f1", sum(baseline) / 50, 0.02, "higher", 50, _items(baseline))
    assert judge(check, sum(run) / 50, 50).verdict == "ok"  # no items: the tolerance alone
    assert judge(check, sum(run) / 50, 50, _items(run)).verdict == "REGRESSED"


def test_generated_tokens_are_judged_by_the_documents_whose_generation_changed():
    baseline = _items(["a", "b", "c", "d", "e"], "outputs")
    check = Check("int8", "t", TOKENS_METRIC, 320.0, 64.0, "either", 5, baseline)
    # One document decoded differently on another machine: 83 tokens fewer in all, and that is allowed.
    one = judge(check, 237.0, 5, _items(["a", "b", "X", "d", "e"], "outputs"))
    assert one.verdict == "ok" and one.note == "1 of 5 generations changed (at most 1 may)"
    # Two changed documents are a change in generation, whatever the total does.
    two = judge(check, 320.0, 5, _items(["a", "Y", "X", "d", "e"], "outputs"))
    assert two.verdict == "CHANGED"
    assert judge(check, 237.0, 5).verdict == "CHANGED"  # without the run's items: the tolerance


def test_cli_writes_and_reads_a_baseline(tmp_path, capsys):
    run = _run(tmp_path, "r", _record("base", 0.6, 10.0), _record("int8", 0.6, 20.0))
    (run / "commands.txt").write_text("2026-01-01T00:00:00 codegen-bench matrix --limit 50\n")
    path = tmp_path / "b.json"
    assert cli.main(["check", str(run), "--baseline", str(path), "--update"]) == 0
    document = json.loads(path.read_text())
    assert document["command"] == "codegen-bench matrix --limit 50"
    assert document["rules"]["flip_fraction"] == 0.02 and len(document["checks"]) == 7
    capsys.readouterr()
    assert cli.main(["check", str(run), "--baseline", str(path)]) == 0
    out = capsys.readouterr().out
    assert "7 of 7 checks passed" in out and "failed" not in out and "| variant |" not in out
    assert cli.main(["check", str(run), "--baseline", str(tmp_path / "none.json")]) == 2
    assert "--update" in capsys.readouterr().err


def test_gate_catches_a_regression_injected_into_the_likelihood_code(tiny_model_dir, tmp_path, monkeypatch):
    """The real path: matrix on the tiny model, baseline, then the same matrix with a broken
    likelihood (every continuation token scored 0.2 nats worse): the gate fails on it and only
    on it."""
    from codegen_bench.harness.engine import hf as hf_engine

    def config(out):
        return MatrixConfig(
            variants=(VariantSpec.parse("base"),),
            tasks=("humaneval_custom", "humaneval_nll"),
            out=tmp_path / out,
            pretrained=str(tiny_model_dir),
            limit=3,
            batch_size=3,
            model_args={"max_length": 256, "chat": "false"},
            gen_kwargs={"max_gen_toks": 16},
        )

    run_matrix(config("reference"))
    baseline = tmp_path / "baseline.json"
    write_baseline(tmp_path / "reference", baseline)

    run_matrix(config("unchanged"))
    assert not [o for o in check_run(tmp_path / "unchanged", baseline) if o.failed]

    real = hf_engine.score_continuations
    monkeypatch.setattr(
        hf_engine,
        "score_continuations",
        lambda model, pairs, *rest: [
            (log_prob - 0.2 * len(continuation), greedy)
            for (log_prob, greedy), (_, continuation) in zip(real(model, pairs, *rest), pairs, strict=True)
        ],
    )
    run_matrix(config("broken"))
    failed = {(o.check.task, o.check.metric) for o in check_run(tmp_path / "broken", baseline) if o.failed}
    assert failed == {("humaneval_nll", "nll_per_token"), ("humaneval_nll", "bits_per_char")}


def test_a_run_on_other_cpu_kernels_than_the_baselines_is_named(tmp_path):
    from codegen_bench.harness.runs.gate import kernel_mismatch

    avx2 = {"aten_cpu_capability": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    native = {"aten_cpu_capability": "AVX512", "ATEN_CPU_CAPABILITY": None}
    written = _run(tmp_path, "pinned", {**_record("base", 0.6, 10.0), "kernels": avx2})
    path = tmp_path / "baseline.json"
    write_baseline(written, path)
    assert json.loads(path.read_text())["kernels"] == avx2
    assert kernel_mismatch(written, path) is None
    other = _run(tmp_path, "native", {**_record("base", 0.6, 10.0), "kernels": native})
    assert "GATE_ENV" in kernel_mismatch(other, path)
