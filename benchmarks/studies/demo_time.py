"""Where a matrix run's time went, from what the run folder records: per variant its load (building
the variant or training its adapter on first use included) and its adapter's training steps; per
cell the seconds before the model's first call, the model's own, and after its last call; per task
the same summed; the latency suite per benchmark (its whole time and the variant's load); and each
invocation's wall time. With --compare, each cell against the same cell of another run: the
same outputs (the per-item hashes of what the model wrote) and the same metrics, or what differs.

    .venv/bin/python benchmarks/studies/demo_time.py results/demo [results/demo-warm ...] \
        [--compare OTHER_RUN]

Prints Markdown, one section per run folder.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

from codegen_bench.harness.runs.invocations import read_invocations
from codegen_bench.harness.runs.latency_size import LATENCY_FILE, stored_benchmarks
from codegen_bench.harness.runs.reports import read_run


def _records(run: Path) -> list[dict]:
    """The run's newest usable record of each cell (a rerun cell: its last one)."""
    return read_run(run).records


def _s(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _phase(cells: list[dict], name: str) -> float | None:
    """A phase's seconds summed over cells; None where no cell recorded its phases (older records)."""
    values = [(r.get("phases") or {}).get(name) for r in cells]
    return None if all(v is None for v in values) else sum(v or 0 for v in values)


def _seconds(cells: list[dict]) -> dict[str, float | None]:
    """The cells' seconds summed: whole, the model's, before and after the model's calls."""
    return {
        "cells": sum(r["seconds"] for r in cells),
        "model": sum(r["work"]["model_seconds"] for r in cells),
        "before": _phase(cells, "before_model_seconds"),
        "after": _phase(cells, "after_model_seconds"),
    }


def breakdown(run: Path) -> list[str]:
    records = _records(run)
    lines = [f"## {run.name}", "", "| invocation started | wall s | cells run | cells s | latency suite s |"]
    lines.append("|---|---|---|---|---|")
    for inv in read_invocations(run):
        lines.append(
            f"| {inv.started} | {_s(inv.wall_s)} | {inv.cells_run} of {inv.cells_planned} "
            f"| {_s(inv.cells_s)} | {_s(inv.latency_s)} |"
        )
    lines += [
        "",
        "| variant | load s | its adapter's training steps s (when trained) | cells s | model s "
        "| before model s | after model s |",
    ]
    lines.append("|---|---|---|---|---|---|---|")
    per_variant: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        per_variant[record["variant"]].append(record)
    totals: dict[str, float | None] = {}
    for variant, cells in per_variant.items():
        load = sum(r.get("load_seconds") or 0 for r in cells)
        training = next(
            ((r["model"].get("variant_training") or {}).get("train_runtime_s") for r in cells), None
        )
        row = {"load": load, **_seconds(cells)}
        for key, value in row.items():
            totals[key] = None if value is None else (totals.get(key) or 0) + value
        lines.append(
            f"| {variant} | {_s(row['load'])} | {_s(training)} | {_s(row['cells'])} | {_s(row['model'])} "
            f"| {_s(row['before'])} | {_s(row['after'])} |"
        )
    lines.append(
        f"| all | {_s(totals['load'])} | | {_s(totals['cells'])} | {_s(totals['model'])} "
        f"| {_s(totals['before'])} | {_s(totals['after'])} |"
    )
    lines += ["", "| task | cells s | model s | before model s | after model s | generated tokens |"]
    lines.append("|---|---|---|---|---|---|")
    per_task: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        per_task[record["task"]].append(record)
    for task, cells in per_task.items():
        row = _seconds(cells)
        lines.append(
            f"| {task} | {_s(row['cells'])} | {_s(row['model'])} | {_s(row['before'])} | {_s(row['after'])} "
            f"| {sum((r.get('generation') or {}).get('tokens', 0) for r in cells):,} |"
        )
    benchmarks = stored_benchmarks(run / LATENCY_FILE)
    if benchmarks:
        lines += ["", "| latency benchmark | timed rounds | timed s | whole s | variant load s |"]
        lines.append("|---|---|---|---|---|")
        for bench in benchmarks:
            info, stats = bench.get("extra_info") or {}, bench.get("stats") or {}
            lines.append(
                f"| {bench.get('name')} | {stats.get('rounds')} | {_s(stats.get('total'))} "
                f"| {_s(info.get('wall_seconds'))} | {_s(info.get('load_seconds'))} |"
            )
        whole = sum((b.get("extra_info") or {}).get("wall_seconds") or 0 for b in benchmarks)
        loads = {
            (b.get("extra_info") or {}).get("variant"): (b.get("extra_info") or {}).get("load_seconds")
            for b in benchmarks
        }
        lines.append(f"| all | | | {_s(whole)} | {_s(sum(v or 0 for v in loads.values()))} |")
    return [*lines, ""]


def comparison(run: Path, other: Path) -> list[str]:
    """Each cell of `run` against the same cell of `other`: outputs and metrics the same, or how not."""
    before = {(r["variant"], r["task"]): r for r in _records(other)}
    lines = [
        f"## {run.name} against {other}",
        "",
        "| variant | task | same outputs | same metrics | differs |",
    ]
    lines.append("|---|---|---|---|---|")
    for record in _records(run):
        old = before.get((record["variant"], record["task"]))
        if old is None:
            lines.append(f"| {record['variant']} | {record['task']} | | | not in {other.name} |")
            continue
        outputs = {t: items.get("outputs") for t, items in record["items"].items()}
        same_outputs = outputs == {t: items.get("outputs") for t, items in old["items"].items()}
        differs = [
            f"{metric} {old['metrics'].get(task, {}).get(metric, float('nan')):.4g} → {value:.4g}"
            for task, metrics in record["metrics"].items()
            for metric, value in metrics.items()
            if old["metrics"].get(task, {}).get(metric) != value
        ]
        lines.append(
            f"| {record['variant']} | {record['task']} | {'yes' if same_outputs else 'no'} "
            f"| {'no' if differs else 'yes'} | {'; '.join(differs)} |"
        )
    return [*lines, ""]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="matrix run folders")
    parser.add_argument(
        "--compare", type=Path, help="another run of the same cells, to compare each cell with"
    )
    args = parser.parse_args()
    for run in args.runs:
        print("\n".join(breakdown(run)))
        if args.compare:
            print("\n".join(comparison(run, args.compare)))


if __name__ == "__main__":
    main()
