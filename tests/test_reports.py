from __future__ import annotations

import csv
import json

import pytest

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.runs.matrix import RECORDS_FILE, RecordStore
from codegen_bench.harness.runs.reports import build_reports, matrix_rows, pareto_front, plotted_costs


def _record(variant, task, metrics, *, size=None, peak=2 * 2**30, tokens=100, seconds=10.0, wall=12.0):
    return {
        "variant": variant,
        "task": task,
        "limit": 5,
        "batch_size": 16,
        "metrics": {task: metrics},
        "higher_is_better": {task: {m: m != "nll_per_token" for m in metrics}},
        "generation": {"tokens": tokens, "seconds": seconds},
        "seconds": wall,
        "model": {"variant": variant, "variant_size_on_disk_bytes": size, "peak_memory_bytes": peak},
        "versions": {"lm_eval": "0.4.13", "transformers": "5.24"},
        "finished": "2026-11-26T04:00:00+0000",
    }


RECORDS = [
    _record("base", "humaneval_custom", {"pass@1": 0.6}, size=2.5e9, tokens=100, seconds=10.0),
    _record("base", "humaneval_nll", {"nll_per_token": 0.68}, size=2.5e9, tokens=0, seconds=0.0),
    _record(
        "int8", "humaneval_custom", {"pass@1": 0.6}, size=1.3e9, peak=1.5 * 2**30, tokens=100, seconds=4.0
    ),
    _record(
        "int8", "humaneval_nll", {"nll_per_token": 0.69}, size=1.3e9, peak=1.5 * 2**30, tokens=0, seconds=0
    ),
    _record("l1", "humaneval_custom", {"pass@1": 0.05}, size=2.5e9, tokens=400, seconds=50.0),
    _record("l1", "humaneval_nll", {"nll_per_token": 3.6}, size=2.5e9, tokens=0, seconds=0),
]


def test_matrix_rows_have_one_row_per_variant_and_units_in_cost_columns():
    columns, rows, direction = matrix_rows(RECORDS)
    assert columns == [
        "humaneval_custom/pass@1",
        "humaneval_nll/nll_per_token",
        "size_on_disk_MB",
        "peak_rss_GiB",
        "generation_tokens_per_s",
        "wall_s",
    ]
    assert list(rows) == ["base", "int8", "l1"]
    assert rows["int8"]["generation_tokens_per_s"] == pytest.approx(25.0)  # 100 tokens in 4 s
    assert rows["base"]["size_on_disk_MB"] == pytest.approx(2500.0)
    assert rows["int8"]["peak_rss_GiB"] == pytest.approx(1.5)
    assert rows["base"]["wall_s"] == pytest.approx(24.0)
    assert direction["humaneval_nll/nll_per_token"] is False and direction["size_on_disk_MB"] is False


def test_pareto_front_keeps_only_undominated_points():
    points = {"base": (10.0, 0.6), "int8": (25.0, 0.6), "l1": (8.0, 0.05), "fast_bad": (40.0, 0.1)}
    assert sorted(pareto_front(points, higher_x=True)) == ["fast_bad", "int8"]
    sizes = {"base": (2500.0, 0.6), "int8": (1300.0, 0.6), "nf4": (1200.0, 0.55)}
    assert sorted(pareto_front(sizes, higher_x=False)) == ["int8", "nf4"]


def test_reports_are_rebuilt_from_stored_records(tmp_path):
    run = tmp_path / "run"
    store = RecordStore(run / RECORDS_FILE)
    for record in RECORDS:
        store.append(record)
    paths = build_reports([run])
    with open(paths["csv"]) as f:
        table = list(csv.DictReader(f))
    assert [row["variant"] for row in table] == ["base", "int8", "l1"]
    assert float(table[1]["humaneval_nll/nll_per_token"]) == pytest.approx(0.69)
    leaderboard = paths["leaderboard"].read_text()
    assert "- lm-eval / transformers: 0.4.13 / 5.24" in leaderboard
    assert "- variant weights" not in leaderboard  # none of these records names its artifact's weights
    quality, costs = (_table(leaderboard, heading) for heading in ("## Quality", "## Cost"))
    assert [row[0] for row in quality] == ["base", "int8", "l1"]  # by pass@1, ties in order
    # Without per-item scores nothing can be shown significant: no quality value is bolded.
    assert "**" not in "".join(cell for row in quality for cell in row)
    # Counted costs are bolded at their best; timings (tokens/s) are never ranked.
    assert costs[1][1] == "**1,300**" and costs[1][3] == "25.0"
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_leaderboard_names_each_variant_artifact_by_its_weights_hash(tmp_path):
    run = tmp_path / "run"
    store = RecordStore(run / RECORDS_FILE)
    for record in RECORDS:
        weights = {"int8": "ab" * 32, "l1": "cd" * 32}.get(record["variant"])
        store.append({**record, "model": {**record["model"], "variant_weights_sha256": weights}})
    leaderboard = build_reports([run])["leaderboard"].read_text()
    assert f"- variant weights: int8 (sha256 {'ab' * 6}…), l1 (sha256 {'cd' * 6}…)" in leaderboard


def _table(markdown: str, heading: str) -> list[list[str]]:
    """The body rows of the table under `heading`, as lists of cell texts."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][1:]
    return [
        [cell.strip() for cell in line.strip("|").split(" | ")]
        for line in lines
        if not line.startswith("|---")
    ]


def _with_items(record, items, low_high):
    task = record["task"]
    metric = next(iter(record["metrics"][task]))
    return {
        **record,
        "items": {task: {"doc_ids": list(range(len(items))), metric: items}},
        "intervals": {task: {metric: [*low_high, "wilson"]}},
    }


def test_leaderboard_shows_intervals_pairs_with_base_and_bolds_only_significant_bests(tmp_path):
    base = [1.0] * 30 + [0.0] * 20  # 0.6
    tied = [1.0] * 29 + [0.0] * 20 + [1.0]  # flips one problem each way: indistinguishable
    broken = [0.0] * 50
    run = tmp_path / "run"
    store = RecordStore(run / RECORDS_FILE)
    store.append(_with_items(_record("base", "humaneval_custom", {"pass@1": 0.6}), base, (0.46, 0.72)))
    store.append(_with_items(_record("int8", "humaneval_custom", {"pass@1": 0.6}), tied, (0.46, 0.72)))
    store.append(_with_items(_record("l1", "humaneval_custom", {"pass@1": 0.0}), broken, (0.0, 0.07)))
    paths = build_reports([run])
    leaderboard = paths["leaderboard"].read_text()
    quality = {row[0]: row[1:] for row in _table(leaderboard, "## Quality")}
    assert quality["base"] == ["0.600 [0.460, 0.720]"]  # a tie at the top: not bolded
    paired = {row[0]: row[1:] for row in _table(leaderboard, "## Paired against base")}
    assert paired["int8"] == ["0.000 [−0.060, +0.060] −1/+1 p=1"]
    assert paired["l1"][0].startswith("**−0.600 [") and paired["l1"][0].endswith("−30/+0 p=1.9e-09**")
    with open(paths["csv"]) as f:
        table = {row["variant"]: row for row in csv.DictReader(f)}
    assert float(table["l1"]["humaneval_custom/pass@1_ci95_high"]) == pytest.approx(0.07)
    assert int(table["l1"]["humaneval_custom/pass@1_vs_base_lost"]) == 30
    assert float(table["int8"]["humaneval_custom/pass@1_vs_base_mcnemar_p"]) == pytest.approx(1.0)


def test_a_best_significantly_ahead_of_the_runner_up_is_bolded(tmp_path):
    run = tmp_path / "run"
    store = RecordStore(run / RECORDS_FILE)
    store.append(
        _with_items(_record("base", "humaneval_custom", {"pass@1": 0.6}), [1.0] * 30 + [0.0] * 20, (0, 1))
    )
    store.append(_with_items(_record("l1", "humaneval_custom", {"pass@1": 0.0}), [0.0] * 50, (0, 1)))
    quality = _table(build_reports([run])["leaderboard"].read_text(), "## Quality")
    assert quality[0][1].startswith("**0.600")


def test_several_runs_side_by_side_need_an_output_folder(tmp_path):
    for name in ("a", "b"):
        RecordStore(tmp_path / name / RECORDS_FILE).append(RECORDS[0])
    with pytest.raises(CodegenBenchError, match="--out"):
        build_reports([tmp_path / "a", tmp_path / "b"])
    paths = build_reports([tmp_path / "a", tmp_path / "b"], out=tmp_path / "both")
    assert "| a:base |" in paths["leaderboard"].read_text()
    assert "| b:base |" in paths["leaderboard"].read_text()


def _latency_json(path):
    def bench(name, variant, **info):
        return {"name": name, "stats": {"median": 0.5}, "extra_info": {"variant": variant, **info}}

    benchmarks = [
        bench("test_time_to_first_token[base]", "base"),
        bench(
            "test_decode_throughput[base-1]",
            "base",
            decode_tokens_per_s_batch1=10.0,
            weight_memory_bytes=2**31,
            peak_memory_bytes=3 * 2**30,
        ),
        bench("test_decode_throughput[base-large]", "base", peak_memory_bytes=4 * 2**30),
        bench(
            "test_decode_throughput[int8-1]",
            "int8",
            decode_tokens_per_s_batch1=25.0,
            weight_memory_bytes=2**30,
        ),
    ]
    path.write_text(json.dumps({"benchmarks": benchmarks}))


def test_latency_figures_join_the_matrix_with_ratios_to_the_reference_variant(tmp_path):
    run = tmp_path / "run"
    for record in RECORDS:
        RecordStore(run / RECORDS_FILE).append(record)
    _latency_json(run / "latency.json")
    paths = build_reports([run])
    with open(paths["csv"]) as f:
        table = {row["variant"]: row for row in csv.DictReader(f)}
    assert float(table["int8"]["decode_tokens_per_s_batch1_x_base"]) == pytest.approx(2.5)
    assert float(table["base"]["weight_memory_GiB"]) == pytest.approx(2.0)
    assert float(table["base"]["peak_rss_decoding_GiB"]) == pytest.approx(4.0)  # the larger batch's
    assert float(table["base"]["time_to_first_token_s"]) == pytest.approx(0.5)
    assert table["l1"]["decode_tokens_per_s_batch1"] == ""  # not in the latency run


def _sized_latency_json(path, rounds, prompt_tokens, new_tokens, decode_prompt_tokens):
    """A latency.json of one variant whose benchmarks record the size they ran at."""

    def bench(name, **info):
        return {
            "name": name,
            "stats": {"median": 0.5, "rounds": rounds},
            "extra_info": {"variant": "base", **info},
        }

    benchmarks = [
        bench("test_prefill_latency[base]", prompt_tokens=prompt_tokens, prefill_tokens_per_s=100.0),
        bench("test_time_to_first_token[base]", prompt_tokens=130),
        bench(
            "test_decode_throughput[base-1]",
            rows=1,
            new_tokens=new_tokens,
            decode_prompt_tokens=decode_prompt_tokens,
            decode_tokens_per_s_batch1=10.0,
        ),
    ]
    path.write_text(json.dumps({"benchmarks": benchmarks}))


def test_the_leaderboard_states_the_size_latency_json_was_measured_at(tmp_path):
    run = tmp_path / "run"
    RecordStore(run / RECORDS_FILE).append(RECORDS[0])
    _sized_latency_json(run / "latency.json", 1, 64, 16, 16)
    cost = build_reports([run])["leaderboard"].read_text().split("## Cost", 1)[1]
    assert (
        "\nLatency suite at its demo size: 1 timed round per benchmark, prefill of 64 tokens, decode of "
        "16 new tokens after 16-token prompts (the full size: 3 rounds, 256, 64, 16).\n"
    ) in cost
    _sized_latency_json(run / "latency.json", 2, 128, 64, 16)
    cost = build_reports([run])["leaderboard"].read_text().split("## Cost", 1)[1]
    assert "\nLatency suite at a size of its own: 2 timed rounds per benchmark, prefill of 128 tokens" in cost


def test_the_plot_takes_speed_from_the_latency_suite_where_the_run_has_one():
    cells_only = ["humaneval_custom/pass@1", "size_on_disk_MB", "generation_tokens_per_s"]
    assert plotted_costs(cells_only) == [("generation_tokens_per_s", True), ("size_on_disk_MB", False)]
    with_latency = [
        *cells_only,
        "decode_tokens_per_s_batch1_x_base",
        "decode_tokens_per_s_batch32",
        "decode_tokens_per_s_batch32_x_base",
    ]
    assert plotted_costs(with_latency)[0] == ("decode_tokens_per_s_batch32_x_base", True)
