"""One reference variant per run: the pairing, the reports' speed ratios, the gate's speed checks and
the latency suite's summary all divide by the same variant (harness/runs/reference.py), whatever
order the variants ran in, and an explicit --reference is honoured by each of them."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.runs.gate import SPEED_TASK, baseline_checks, check_run, write_baseline
from codegen_bench.harness.runs.matrix import RECORDS_FILE, RecordStore
from codegen_bench.harness.runs.reports import build_reports

N = 50
# Variants in the order `--variants int8-dynamic base` runs them: base is not first.
ORDER = ("int8-dynamic", "base")
PASS_AT_1 = {"int8-dynamic": [1.0] * 29 + [0.0] * 21, "base": [1.0] * 30 + [0.0] * 20}
TOKENS_PER_S = {"int8-dynamic": 20.0, "base": 10.0}
DECODE_TOKENS_PER_S = {"int8-dynamic": 25.0, "base": 10.0}


def _record(variant: str) -> dict:
    items = PASS_AT_1[variant]
    return {
        "variant": variant,
        "task": "humaneval_custom",
        "limit": N,
        "samples": {"humaneval_custom": N},
        "metrics": {"humaneval_custom": {"pass@1": sum(items) / N}},
        "higher_is_better": {"humaneval_custom": {"pass@1": True}},
        "items": {"humaneval_custom": {"doc_ids": list(range(N)), "pass@1": items}},
        "intervals": {"humaneval_custom": {"pass@1": [0.4, 0.7, "wilson"]}},
        "generation": {"tokens": 1000, "seconds": 1000 / TOKENS_PER_S[variant]},
        "seconds": 1000 / TOKENS_PER_S[variant] + 5,
        "model": {},
    }


def _latency(variant: str) -> dict:
    info = {"variant": variant, "decode_tokens_per_s_batch1": DECODE_TOKENS_PER_S[variant]}
    return {"name": f"test_decode_throughput[{variant}-1]", "stats": {"median": 0.5}, "extra_info": info}


@pytest.fixture
def run(tmp_path) -> Path:
    """A run of int8-dynamic then base, with the latency suite in the same order."""
    folder = tmp_path / "run"
    store = RecordStore(folder / RECORDS_FILE)
    for variant in ORDER:
        store.append(_record(variant))
    (folder / "latency.json").write_text(json.dumps({"benchmarks": [_latency(v) for v in ORDER]}))
    return folder


def _csv(path: Path) -> dict[str, dict[str, str]]:
    with open(path) as f:
        return {row["variant"]: row for row in csv.DictReader(f)}


def test_reports_pair_and_divide_by_base_when_base_is_not_first(run):
    paths = build_reports([run])
    table = _csv(paths["csv"])
    assert float(table["int8-dynamic"]["decode_tokens_per_s_batch1_x_base"]) == pytest.approx(2.5)
    assert float(table["base"]["decode_tokens_per_s_batch1_x_base"]) == pytest.approx(1.0)
    assert int(table["int8-dynamic"]["humaneval_custom/pass@1_vs_base_lost"]) == 1
    assert not [column for column in table["base"] if "int8-dynamic" in column]
    leaderboard = paths["leaderboard"].read_text()
    assert "## Paired against base" in leaderboard and "decode_tokens_per_s_batch1_x_base ↑" in leaderboard


def test_the_gate_divides_speeds_by_base_when_base_is_not_first(run):
    speeds = {(c.variant, c.metric): c.value for c in baseline_checks(run) if c.task == SPEED_TASK}
    assert speeds == {
        ("int8-dynamic", "generation_tokens_per_s_x_base"): pytest.approx(2.0),
        ("int8-dynamic", "decode_tokens_per_s_batch1_x_base"): pytest.approx(2.5),
    }


def test_an_explicit_reference_is_honoured_by_reports_and_gate(run, tmp_path):
    paths = build_reports([run], reference="int8-dynamic")
    table = _csv(paths["csv"])
    assert float(table["base"]["decode_tokens_per_s_batch1_x_int8-dynamic"]) == pytest.approx(0.4)
    assert int(table["base"]["humaneval_custom/pass@1_vs_int8-dynamic_gained"]) == 1
    assert "## Paired against int8-dynamic" in paths["leaderboard"].read_text()
    speeds = {
        (c.variant, c.metric): c.value
        for c in baseline_checks(run, reference="int8-dynamic")
        if c.task == SPEED_TASK
    }
    assert speeds == {
        ("base", "generation_tokens_per_s_x_int8-dynamic"): pytest.approx(0.5),
        ("base", "decode_tokens_per_s_batch1_x_int8-dynamic"): pytest.approx(0.4),
    }
    baseline = tmp_path / "baseline.json"
    write_baseline(run, baseline, reference="int8-dynamic")
    assert not [o for o in check_run(run, baseline, reference="int8-dynamic") if o.failed]


def test_a_reference_the_run_lacks_is_a_clear_error(run):
    with pytest.raises(CodegenBenchError, match="--reference"):
        build_reports([run], reference="nf4")
    with pytest.raises(CodegenBenchError, match="--reference"):
        baseline_checks(run, reference="nf4")


@pytest.fixture
def latency_suite():
    """benchmarks/test_latency.py as a module, its summary's figures emptied afterwards."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "test_latency.py"
    spec = importlib.util.spec_from_file_location("latency_suite_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    module.SUMMARY.clear()


def test_the_latency_summary_divides_by_the_same_reference(latency_suite):
    for variant in ORDER:
        latency_suite.SUMMARY[variant] = {"decode_tokens_per_s_batch1": DECODE_TOKENS_PER_S[variant]}
    lines = latency_suite.summary_lines()
    assert lines[0].endswith("(x the reference variant, base):")
    assert "  int8-dynamic: decode_tokens_per_s_batch1 25.0 (2.50x)" in lines
    explicit = latency_suite.summary_lines("int8-dynamic")
    assert "  base: decode_tokens_per_s_batch1 10.0 (0.40x)" in explicit
