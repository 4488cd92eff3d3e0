"""Reports from matrix records: RUN/matrix.csv, RUN/LEADERBOARD.md and RUN/quality_vs_cost.png.

Everything here is rebuilt from the stored records (`codegen-bench leaderboard RUN...`), never by
rerunning a model. One row per variant; one column per task metric (`task/metric`) plus what the
variant costs, with units in the column names.

Quality numbers carry their 95% interval over items, and each variant is compared with the reference
variant (harness/runs/reference.py: the one named with --reference, else base, else the first) on
the same items: flips and an exact McNemar p for pass@1, a paired bootstrap interval of the
difference for the rest (harness/runs/uncertainty.py); the latency suite's speeds are also given as
ratios to it. A metric's direction and estimator are its declaration's (tasks/metrics.py). A value
is bolded as a column's best only where it is significantly better than the runner-up on the same
items; timing columns, which carry the machine's noise rather than an interval, are never ranked.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import RecordStore, atomic_path, refuse_overwriting_inputs, write_text_atomic
from codegen_bench.harness.loading import model_name
from codegen_bench.harness.runs.invocations import INVOCATIONS_FILE, wall_time_summary
from codegen_bench.harness.runs.item_scores import ITEM_METRICS, OUTPUTS
from codegen_bench.harness.runs.latency import LATENCY_FILE
from codegen_bench.harness.runs.latency_size import latency_size_text, measured_latency_size
from codegen_bench.harness.runs.matrix import RECORDS_FILE, Progress
from codegen_bench.harness.runs.reference import reference_variant
from codegen_bench.harness.runs.uncertainty import paired_difference
from codegen_bench.tasks.metrics import metric_spec
from codegen_bench.variants.artifact import weights_size_bytes

# Cost columns: name -> higher is better.
COST_COLUMNS = {
    "size_on_disk_MB": False,
    "peak_rss_GiB": False,
    "generation_tokens_per_s": True,
    "wall_s": False,
}
# Costs that are counted, not timed: the same on every run, so their best can be bolded as it is.
COUNTED_COSTS = ("size_on_disk_MB", "weight_memory_GiB")
# Quality metrics plotted against cost, in order of preference (those present are used).
PLOTTED_QUALITY = (
    "humaneval_custom/pass@1",
    "code_explain_humaneval/bertscore_f1",
    "code_explain/bertscore_f1",
)
# What a run folder holds that its reports and the gate read: nothing they write may replace these.
RUN_INPUTS = (RECORDS_FILE, LATENCY_FILE, "commands.txt", INVOCATIONS_FILE)
REPORT_FILES = ("matrix.csv", "LEADERBOARD.md", "quality_vs_cost.png")
_MATRIX_FIX = "pass a folder written by `codegen-bench matrix --out RUN`"
_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean"}
# The fields that tell a cut-off record's cell: records are written with sorted keys, so "fingerprint"
# comes second, then "higher_is_better" keyed by the task's own tasks, and "task" and "variant" (the
# "model"'s own "variant" first) near the end.
_CELL_FIELD = re.compile(r'"(fingerprint|task|variant)": "((?:[^"\\]|\\.)*)"')
_SUBTASK_FIELD = re.compile(r'"(?:higher_is_better|intervals|items|metrics)": \{"((?:[^"\\]|\\.)*)"')

Cell = tuple[str, str]


@dataclass(frozen=True)
class UnusableLine:
    """A line of a run's records file that is no usable record, and the cells whose result it may
    hold: `missing` have no record at all, `stale` show one written before it. A line a later record
    of its cell replaces hides nothing and is not kept."""

    path: Path
    number: int
    reason: str  # what the line is, after "line N is"
    variant: str | None  # its cell's, as far as the line (or a record of the same fingerprint) tells
    task: str | None
    missing: tuple[Cell, ...]
    stale: tuple[Cell, ...]

    @property
    def cell(self) -> Cell | None:
        return (self.variant, self.task) if self.variant is not None and self.task is not None else None


@dataclass(frozen=True)
class RunRecords:
    """A run's newest usable record of each cell, in the order the cells first appear (as
    RecordStore.latest), and the lines of its records file that may hide a cell's result."""

    run: Path
    records: list[dict]
    unusable: list[UnusableLine]


def json_type(value: object) -> str:
    return _JSON_TYPES.get(type(value), "null")


def record_problem(record: dict) -> str | None:
    """What a JSON object lacks to be a matrix record the reports and the gate can read, or None."""
    for key in ("variant", "task"):
        if not isinstance(record.get(key), str):
            return f'a JSON object without a "{key}" string, not a matrix record'
    metrics = record.get("metrics")
    cell = f"the record of {record['variant']} on {record['task']}"
    if not isinstance(metrics, dict) or not all(isinstance(values, dict) for values in metrics.values()):
        return f'{cell}, without "metrics" as {{task: {{metric: number}}}}'
    for task, values in metrics.items():
        for metric, value in values.items():
            if not isinstance(value, int | float) or isinstance(value, bool):
                return f"{cell}, whose {task}/{metric} is a JSON {json_type(value)}, not a number"
    return None


def _line_problem(text: str) -> str:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return "cut off or not JSON (a write interrupted by a crash leaves such a line)"
    if not isinstance(value, dict):
        return f"a JSON {json_type(value)}, not a record"
    return record_problem(value) or "not a record"


def _unescaped(name: str) -> str:
    return name.replace('\\"', '"').replace("\\\\", "\\")


def _cell_fields(line: str | dict) -> dict[str, str]:
    """The fingerprint, task and variant a line names, as far as it got before it was cut off, and
    the first of the tasks it scored ("subtask")."""
    if isinstance(line, dict):
        return {k: line[k] for k in ("fingerprint", "task", "variant") if isinstance(line.get(k), str)}
    subtask = _SUBTASK_FIELD.search(line)
    fields: dict[str, str] = {"subtask": _unescaped(subtask.group(1))} if subtask else {}
    for key, value in _CELL_FIELD.findall(line):
        # The first of each (a "model"'s "variant" is the record's); names are plain ASCII but for
        # JSON's escapes of a quote and a backslash.
        fields.setdefault(key, _unescaped(value))
    return fields


def _unusable_line(path: Path, number: int, reason: str, fields: dict, usable: list) -> UnusableLine:
    """The line, with the cells it may hide: its own where it names it (or a record of the same
    fingerprint does), else each cell of the run's variants × tasks that fits what it names (the task
    of its first score) and has no record after it. `usable`: (line number, record) of the records."""
    lines_of: dict[Cell, list[int]] = {}
    tasks_of, fingerprints = {}, {}
    for line, record in usable:
        cell = (record["variant"], record["task"])
        lines_of.setdefault(cell, []).append(line)
        tasks_of.update({subtask: cell[1] for subtask in [cell[1], *record["metrics"]]})
        fingerprints[record.get("fingerprint")] = cell
    variant, task = fields.get("variant"), fields.get("task")
    if (variant is None or task is None) and fields.get("fingerprint") in fingerprints:
        variant, task = fingerprints[fields["fingerprint"]]
    if task is None and "subtask" in fields:
        task = tasks_of.get(fields["subtask"], fields["subtask"])
    variants = [variant] if variant is not None else list(dict.fromkeys(c[0] for c in lines_of))
    tasks = [task] if task is not None else list(dict.fromkeys(c[1] for c in lines_of))
    candidates = [(v, t) for v in variants for t in tasks]
    missing = tuple(c for c in candidates if c not in lines_of)
    stale = tuple(c for c in candidates if c in lines_of and max(lines_of[c]) < number)
    return UnusableLine(path, number, reason, variant, task, missing, stale)


def _records_file(run: Path) -> Path:
    if not run.exists():
        raise CodegenBenchError(f"run folder {run} does not exist: {_MATRIX_FIX}")
    if not run.is_dir():
        fix = f"pass its folder {run.parent}" if run.name == RECORDS_FILE else _MATRIX_FIX
        raise CodegenBenchError(f"run folder {run} is a file, not a folder: {fix}")
    path = run / RECORDS_FILE
    if not path.is_file():
        state = "is not a file" if path.exists() else "does not exist"
        raise CodegenBenchError(
            f"{run} has no records ({path} {state}): not a matrix run folder; {_MATRIX_FIX}, "
            f"or make this one with `codegen-bench matrix --out {run}`"
        )
    return path


def read_run(run: Path) -> RunRecords:
    """A matrix run folder's records (see RunRecords). A path that is no run folder, or a records file
    without one usable record, is refused with the fix."""
    run = Path(run)
    path = _records_file(run)
    store = RecordStore(path)
    usable, bad = [], []
    for number, record in store.read_numbered(warn=False):
        problem = record_problem(record)
        if problem is None:
            usable.append((number, record))
        else:
            bad.append((number, problem, _cell_fields(record)))
    bad += [(n, _line_problem(text), _cell_fields(text)) for n, text in store.unreadable]
    bad.sort(key=lambda entry: entry[0])
    if not usable and not bad:
        raise CodegenBenchError(
            f"{path} is empty (it has no records): no cell of the run has finished; "
            f"run `codegen-bench matrix --out {run}` first"
        )
    if not usable:
        number, reason, _ = bad[0]
        others = {1: "", 2: " (nor is its other line)"}.get(
            len(bad), f" (nor is any of its {len(bad) - 1} others)"
        )
        raise CodegenBenchError(
            f"{path} has no usable records: line {number} is {reason}{others}: {_MATRIX_FIX}"
        )
    latest = {(r["variant"], r["task"]): r for _, r in usable}
    unusable = [_unusable_line(path, *entry, usable) for entry in bad]
    # A line of a known cell that a later record replaces hides nothing; one of an unknown cell may.
    hiding = [u for u in unusable if u.cell is None or u.missing or u.stale]
    return RunRecords(run, list(latest.values()), hiding)


def check_reference(requested: str | None, variants: Sequence[str], runs: str) -> None:
    """Refuse a --reference that is empty or not one of `variants` (those of `runs`), with the choices."""
    if requested is None:
        return
    if requested.strip() and requested in variants:
        return
    problem = f"is not a variant of {runs}" if requested.strip() else "is empty"
    raise CodegenBenchError(
        f"reference variant {requested!r} (--reference) {problem}: pass one of {', '.join(variants)}, "
        "or leave --reference out for base (else the first variant)"
    )


def cells_text(cells: Sequence[Cell]) -> str:
    names = ", ".join(f"{variant} on {task}" for variant, task in cells)
    return f"one of {names}" if len(cells) > 1 else names


def unusable_line_text(line: UnusableLine) -> str:
    """What a leaderboard says of a records line it could not use: which cells it lacks or may show stale."""
    where = f"`{line.path}` line {line.number} is {line.reason}."
    if line.cell is not None:
        cell = cells_text([line.cell])
        if line.missing:
            return f"{where} It held {cell}, which has no other record: that cell is missing below."
        return f"{where} It held a newer record of {cell}: the tables show an earlier one, possibly stale."
    told = f" beyond its task, {line.task}" if line.task else ""
    told = told or (f" beyond its variant, {line.variant}" if line.variant else "")
    options = []
    if line.missing:
        options.append(f"the record of {cells_text(line.missing)}, missing below")
    if line.stale:
        options.append(f"a rerun of {cells_text(line.stale)}, whose result below may then be stale")
    if line.variant is None:
        options.append("a cell of a variant no record names")
    return f"{where} It does not tell which cell it held{told}: it was " + "; or ".join(options) + "."


def metric_direction(record: dict, task: str, metric: str) -> bool | None:
    """Whether higher is better (None: unknown), as the metric's declaration says (tasks/metrics.py);
    for a metric no task of ours declares, as lm-eval recorded it from the task's YAML."""
    spec = metric_spec(metric)
    if spec is not None:
        return spec.higher_is_better
    return record.get("higher_is_better", {}).get(task, {}).get(metric)


def run_variants(records: Sequence[dict]) -> list[str]:
    """The variants of `records`, in the order they first appear (the run's order)."""
    return list(dict.fromkeys(r["variant"] for r in records))


def matrix_rows(records: Sequence[dict]) -> tuple[list[str], dict[str, dict[str, float | None]], dict]:
    """(columns, {variant: {column: value}}, {column: higher_is_better or None}), variants in the
    order they first appear, metric columns in the order tasks first report them, cost columns last."""
    rows: dict[str, dict[str, float | None]] = {}
    direction: dict[str, bool | None] = {}
    metric_columns: list[str] = []
    totals: dict[str, dict[str, float]] = {}
    for record in records:
        row = rows.setdefault(record["variant"], {})
        for task, metrics in record["metrics"].items():
            for metric, value in metrics.items():
                column = f"{task}/{metric}"
                if column not in direction:
                    metric_columns.append(column)
                    direction[column] = metric_direction(record, task, metric)
                row[column] = value
        model = record.get("model", {})
        size = model.get("variant_size_on_disk_bytes")
        if size is None and model.get("variant") == "base":
            # Older records named the model by its path and carried no size of their own.
            size = model.get("base_size_on_disk_bytes") or weights_size_bytes(model.get("pretrained"))
        if size is not None:
            row["size_on_disk_MB"] = size / 1e6
        peak = model.get("peak_memory_bytes")
        if peak is not None:
            row["peak_rss_GiB"] = max(row.get("peak_rss_GiB") or 0.0, peak / 2**30)
        total = totals.setdefault(record["variant"], {"tokens": 0, "seconds": 0.0, "wall": 0.0})
        generation = record.get("generation", {})
        total["tokens"] += generation.get("tokens", 0)
        total["seconds"] += generation.get("seconds", 0.0)
        total["wall"] += record.get("seconds", 0.0)
    for variant, total in totals.items():
        if total["seconds"]:
            rows[variant]["generation_tokens_per_s"] = total["tokens"] / total["seconds"]
        rows[variant]["wall_s"] = total["wall"]
    present = [c for c in COST_COLUMNS if any(c in row for row in rows.values())]
    direction.update({c: COST_COLUMNS[c] for c in present})
    return metric_columns + present, rows, direction


def item_scores(records: Sequence[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """{variant: {column: (doc ids, per-item rows)}} for every metric whose items a record holds."""
    found: dict[str, dict[str, tuple[list, list]]] = {}
    for record in records:
        for task, items in (record.get("items") or {}).items():
            for metric, rows in items.items():
                if metric not in ("doc_ids", OUTPUTS):
                    found.setdefault(record["variant"], {})[f"{task}/{metric}"] = (items["doc_ids"], rows)
    return found


def metric_intervals(records: Sequence[dict]) -> dict[str, dict[str, tuple[float, float]]]:
    """{variant: {column: (low, high)}}: each metric's stored 95% interval."""
    found: dict[str, dict[str, tuple[float, float]]] = {}
    for record in records:
        for task, metrics in (record.get("intervals") or {}).items():
            for metric, (low, high, _method) in metrics.items():
                found.setdefault(record["variant"], {})[f"{task}/{metric}"] = (low, high)
    return found


def paired(items: dict, variant: str, reference: str, column: str):
    """`variant - reference` on `column` over the items both scored, or None without shared items."""
    if column not in items.get(variant, {}) or column not in items.get(reference, {}):
        return None
    ids_v, rows_v = items[variant][column]
    ids_r, rows_r = items[reference][column]
    by_id_v, by_id_r = dict(zip(ids_v, rows_v, strict=True)), dict(zip(ids_r, rows_r, strict=True))
    shared = [i for i in ids_r if i in by_id_v]
    if not shared:
        return None
    estimator = ITEM_METRICS[column.rsplit("/", 1)[1]].estimator
    return paired_difference([by_id_r[i] for i in shared], [by_id_v[i] for i in shared], estimator)


def paired_with_reference(
    records: Sequence[dict], items: dict, reference: str | None = None
) -> tuple[str | None, dict]:
    """(reference variant, {variant: {column: PairedDifference}}) for every other variant and every
    metric both have `items` (from `item_scores`) for. The reference is `reference` where given, else
    the rule of harness/runs/reference.py."""
    variants = run_variants(records)
    reference = reference_variant(variants, reference)
    comparisons: dict[str, dict] = {}
    for variant in variants:
        if variant == reference:
            continue
        for column in items.get(variant, {}):
            difference = paired(items, variant, reference, column)
            if difference is not None:
                comparisons.setdefault(variant, {})[column] = difference
    return reference, comparisons


def _latency_benchmarks(path: Path) -> list[dict]:
    """The "benchmarks" of a pytest-benchmark JSON file; one that is not such a file is refused."""
    fix = "rerun the latency suite (`codegen-bench matrix` without --no-latency) or remove the file"
    try:
        document = json.loads(path.read_text())
    except ValueError as exc:  # not JSON, or not UTF-8
        raise CodegenBenchError(
            f"{path} is not JSON ({exc}), not the latency suite's results: {fix}"
        ) from None
    benchmarks = document.get("benchmarks", []) if isinstance(document, dict) else None
    if not isinstance(benchmarks, list) or not all(isinstance(b, dict) and "name" in b for b in benchmarks):
        raise CodegenBenchError(f'{path} has no "benchmarks" list of pytest-benchmark results: {fix}')
    return benchmarks


def latency_rows(
    path: Path, reference: str | None = None
) -> tuple[list[str], dict[str, dict[str, float]], dict[str, bool]]:
    """Columns from a pytest-benchmark latency.json (benchmarks/test_latency.py): speeds, time to
    first token, weight memory, peak RSS while decoding, each speed also as a ratio to the reference
    variant (`_x_<reference>`: `reference` where given, else the rule of harness/runs/reference.py
    over the suite's variants)."""
    benchmarks = _latency_benchmarks(Path(path))
    rows: dict[str, dict[str, float]] = {}
    direction: dict[str, bool] = {}
    for bench in benchmarks:
        info = bench.get("extra_info", {})
        variant = info.get("variant")
        if variant is None:
            continue
        row = rows.setdefault(variant, {})
        if bench["name"].startswith("test_time_to_first_token"):
            row["time_to_first_token_s"] = bench["stats"]["median"]
            direction["time_to_first_token_s"] = False
        for key, value in info.items():
            if "_per_s" in key and value is not None:
                row[key] = value
                direction[key] = True
            elif key == "weight_memory_bytes" and value:
                row["weight_memory_GiB"] = value / 2**30
                direction["weight_memory_GiB"] = False
            elif key == "peak_memory_bytes" and value:  # the largest over the suite's decode runs
                column = "peak_rss_decoding_GiB"
                row[column] = max(row.get(column, 0.0), value / 2**30)
                direction[column] = False
    if rows:
        reference = reference_variant(list(rows), reference)
        for key in [k for k in direction if "_per_s" in k]:
            for row in rows.values():
                if key in row and rows[reference].get(key):
                    row[f"{key}_x_{reference}"] = row[key] / rows[reference][key]
                    direction[f"{key}_x_{reference}"] = True
    columns = sorted(direction, key=lambda c: (c.replace("_x_", "~"), c))
    return columns, rows, direction


def best_values(
    columns: Sequence[str], rows: dict, direction: dict, items: dict | None = None
) -> dict[str, float]:
    """{column: its best value} where that best is a finding: a quality metric whose best variant is
    significantly better than the runner-up on the same items (paired, 95%), or a counted cost.
    Columns left out have a top that is indistinguishable from the runner-up, or only timings."""
    items = items or {}
    best = {}
    for column in columns:
        ranked = sorted(
            (v for v, row in rows.items() if row.get(column) is not None),
            key=lambda v: rows[v][column],
            reverse=bool(direction.get(column)),
        )
        if not ranked or direction.get(column) is None:
            continue
        top = rows[ranked[0]][column]
        if column in COUNTED_COSTS:
            best[column] = top
            continue
        if len(ranked) < 2 or rows[ranked[1]][column] == top:
            continue
        difference = paired(items, ranked[0], ranked[1], column)
        if difference is not None and difference.significant:
            best[column] = top
    return best


def pareto_front(points: dict[str, tuple[float, float]], higher_x: bool) -> list[str]:
    """Names of the points no other point beats on both quality (y, higher is better) and cost
    (x: higher is better when `higher_x`, e.g. tokens/s; lower, e.g. size)."""

    def beats(a, b):  # a dominates b
        better_x = a[0] >= b[0] if higher_x else a[0] <= b[0]
        strictly = a[1] > b[1] or (a[0] > b[0] if higher_x else a[0] < b[0])
        return better_x and a[1] >= b[1] and strictly

    return [n for n, p in points.items() if not any(beats(q, p) for m, q in points.items() if m != n)]


def _format(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def columns_with_uncertainty(columns, rows, intervals, reference, comparisons) -> tuple[list[str], dict]:
    """The CSV's columns: after each quality metric its interval (`_ci95_low`, `_ci95_high`) and the
    paired comparison with the reference (`_vs_base`, its interval, and for pass@1 the flips and
    McNemar p), where the run has them."""
    out_columns: list[str] = []
    out_rows = {variant: dict(row) for variant, row in rows.items()}
    for column in columns:
        out_columns.append(column)
        if any(column in found for found in intervals.values()):
            out_columns += [f"{column}_ci95_low", f"{column}_ci95_high"]
            for variant, found in intervals.items():
                if column in found and variant in out_rows:
                    out_rows[variant][f"{column}_ci95_low"], out_rows[variant][f"{column}_ci95_high"] = found[
                        column
                    ]
        compared = [(v, found[column]) for v, found in comparisons.items() if column in found]
        if not compared:
            continue
        prefix = f"{column}_vs_{reference}"
        names = [prefix, f"{prefix}_ci95_low", f"{prefix}_ci95_high"]
        if any(d.p_value is not None for _, d in compared):
            names += [f"{prefix}_lost", f"{prefix}_gained", f"{prefix}_mcnemar_p"]
        out_columns += names
        for variant, d in compared:
            values = [d.difference, d.interval.low, d.interval.high, d.lost, d.gained, d.p_value]
            out_rows.setdefault(variant, {}).update(dict(zip(names, values, strict=False)))
    return out_columns, out_rows


def write_csv(path: Path, columns: Sequence[str], rows: dict) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["variant", *columns])
    for variant, row in rows.items():
        writer.writerow([variant, *("" if row.get(c) is None else f"{row[c]:.6g}" for c in columns)])
    write_text_atomic(path, buffer.getvalue())


def sort_key_column(columns: Sequence[str], direction: dict) -> str | None:
    for column in PLOTTED_QUALITY:
        if column in columns:
            return column
    return next((c for c in columns if direction.get(c) is True and c not in COST_COLUMNS), None)


def _signed(value: float) -> str:
    text = _format(abs(value))
    return ("+" if value > 0 else "−" if value < 0 else "") + text


def _with_interval(value: float | None, bounds: tuple[float, float] | None) -> str:
    if value is None:
        return ""
    if bounds is None:
        return _format(value)
    return f"{_format(value)} [{_format(bounds[0])}, {_format(bounds[1])}]"


def _comparison_text(difference) -> str:
    """`+0.006 [−0.043, +0.055] −8/+9 p=1.00`: the difference, its interval, flips and McNemar p."""
    low, high = difference.interval.low, difference.interval.high
    text = f"{_signed(difference.difference)} [{_signed(low)}, {_signed(high)}]"
    if difference.p_value is not None:
        text += f" −{difference.lost}/+{difference.gained} p={difference.p_value:.2g}"
    return f"**{text}**" if difference.significant else text


def _header(columns, direction) -> list[str]:
    names = [
        f"{c} {'↑' if direction.get(c) else '↓' if direction.get(c) is False else ''}".rstrip()
        for c in columns
    ]
    return ["| variant | " + " | ".join(names) + " |", "|---|" + "---|" * len(columns)]


def cell_time_table(records: Sequence[dict]) -> list[str]:
    """Markdown lines: each cell's time and its share of the matmul roofline (matrix.cell_work), and
    the total; empty when no record measured its work."""
    measured = [r for r in records if (r.get("work") or {}).get("roofline_flops_per_s")]
    if not measured:
        return []

    def share(value: float | None) -> str:
        return "" if value is None else f"{value:.0%}"

    peaks = sorted({r["work"]["roofline_flops_per_s"] / 1e9 for r in measured})
    lines = [
        "",
        "## Time per cell",
        "",
        "Seconds of each cell; before the model's first call (lm-eval building the documents and "
        "requests), the model's own (generation and scoring) and after its last call (executing "
        "programs, metrics such as BERTScore); the seconds spent loading the variant before its first "
        "cell of the invocation (building it or training its adapter on first use included; its later "
        "cells share that model), and the weight-matmul FLOPs done over the cell's seconds as a "
        "share of the matmul roofline measured at the start of the run "
        f"({', '.join(f'{p:.0f}' for p in peaks)} GFLOP/s): a low share is a cell far from what the "
        "machine can do. Quantized variants can pass 100%: the roofline is float32's.",
        "",
        "| variant | task | seconds | before model | model seconds | after model | load seconds "
        "| % roofline (cell) | % roofline (model time) | cut repeating |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]

    def seconds(value: float | None) -> str:
        return "" if value is None else f"{value:,.0f}"

    for record in measured:
        work = record["work"]
        phases = record.get("phases") or {}  # records from before cells recorded their phases lack it
        lines.append(
            f"| {record['variant']} | {record['task']} | {record['seconds']:,.0f} "
            f"| {seconds(phases.get('before_model_seconds'))} | {work['model_seconds']:,.0f} "
            f"| {seconds(phases.get('after_model_seconds'))} | {seconds(record.get('load_seconds'))} "
            f"| {share(work['roofline_fraction'])} | {share(work['model_roofline_fraction'])} "
            f"| {(record.get('generation') or {}).get('cut_repeating', 0)} |"
        )
    total = sum(r["seconds"] for r in measured)
    loads = sum(r.get("load_seconds") or 0 for r in measured)
    lines.append(f"| all | | {total:,.0f} ({total / 3600:.2f} h) | | | | {loads:,.0f} | | | |")
    return lines


def _bolded(text: str, column: str, value: float | None, best: dict[str, float]) -> str:
    return f"**{text}**" if text and column in best and value == best[column] else text


def _quality_lines(key, quality, order, rows, direction, intervals, best) -> list[str]:
    """The quality table: each value with its 95% interval, bolded where it is a finding."""
    lines = [
        "",
        "## Quality",
        "",
        f"Sorted by `{key}`. Each value with its 95% interval over items: Wilson for pass@1, a "
        "bootstrap over items for the rest (↑ higher is better, ↓ lower). **Bold**: a column's best, "
        "only where it is significantly better than the runner-up on the same items (paired, 95%); "
        "a column without bold has a top that is indistinguishable from its runner-up (or no per-item "
        "scores to tell).",
        "",
        *_header(quality, direction),
    ]
    for variant in order:
        cells = []
        for column in quality:
            value = rows[variant].get(column)
            text = _with_interval(value, intervals.get(variant, {}).get(column))
            cells.append(_bolded(text, column, value, best))
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def _paired_lines(reference, quality, order, comparisons) -> list[str]:
    """The table of each variant minus the reference on the same items; empty without comparisons."""
    if not comparisons:
        return []
    compared = [c for c in quality if any(c in found for found in comparisons.values())]
    lines = [
        "",
        f"## Paired against {reference}",
        "",
        f"Each variant minus `{reference}` on the same items, with the 95% paired-bootstrap interval "
        f"of the difference; for pass@1 also the problems lost/gained against `{reference}` and the "
        "exact McNemar p-value. **Bold**: significant at 95% (interval excludes 0, or p < 0.05).",
        "",
        *_header(compared, {}),
    ]
    for variant in order:
        if variant in comparisons:
            found = comparisons[variant]
            cells = [_comparison_text(found[c]) if c in found else "" for c in compared]
            lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def _cost_lines(reference, costs, order, rows, direction, best, latency_sizes=()) -> list[str]:
    """The cost table: counted costs bolded at their best, timings never ranked, and the size of the
    latency suite's work (`latency_sizes`: one line per run); empty without costs."""
    if not costs:
        return []
    # The latency suite's ratio columns name the variant they divide by.
    divisors = sorted({c.split("_x_", 1)[1] for c in costs if "_x_" in c}) or [reference or "the reference"]
    lines = [
        "",
        "## Cost",
        "",
        "Size on disk and weight memory are counted and bolded at their best; timings (tokens/s, "
        f"their ratios to {', '.join(divisors)}, seconds, resident memory) vary between runs "
        "on a shared machine and are not ranked.",
        *(["", *latency_sizes] if latency_sizes else []),
        "",
        *_header(costs, direction),
    ]
    for variant in order:
        cells = [
            _bolded(_format(rows[variant].get(column)), column, rows[variant].get(column), best)
            for column in costs
        ]
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return lines


def _unusable_lines(unusable: Sequence[UnusableLine]) -> list[str]:
    """The section on records lines that could not be used; empty when every line was a record."""
    if not unusable:
        return []
    return [
        "",
        "## Records that could not be read",
        "",
        *(f"- {unusable_line_text(line)}" for line in unusable),
        "",
        "Rerun the run's command to redo these cells (`codegen-bench matrix` resumes: it runs the cells "
        "without a current record), then rebuild this leaderboard.",
    ]


def leaderboard_markdown(
    title: str,
    settings: dict[str, str],
    columns,
    rows,
    direction,
    intervals: dict | None = None,
    items: dict | None = None,
    reference: str | None = None,
    comparisons: dict | None = None,
    records: Sequence[dict] = (),
    unusable: Sequence[UnusableLine] = (),
    latency_sizes: Sequence[str] = (),
) -> str:
    """Tables: quality with 95% intervals, quality paired against the reference variant, costs (with
    `latency_sizes`, the lines that say how much work each run's latency suite timed), and the time of
    each cell of `records`; first, the records lines that could not be used and the cells they leave
    out (`unusable`). Bold marks a column's best only where it is a finding (see `best_values`)."""
    intervals, items, comparisons = intervals or {}, items or {}, comparisons or {}
    key = sort_key_column(columns, direction)
    order = sorted(
        rows,
        key=lambda v: (rows[v].get(key) is None, -(rows[v].get(key) or 0.0) if key else 0.0),
    )
    best = best_values(columns, rows, direction, items)
    quality = [c for c in columns if "/" in c]
    costs = [c for c in columns if "/" not in c]
    lines = [f"# {title}", ""]
    lines += [f"- {name}: {value}" for name, value in settings.items()]
    lines += _unusable_lines(unusable)
    lines += _quality_lines(key, quality, order, rows, direction, intervals, best)
    lines += _paired_lines(reference, quality, order, comparisons)
    lines += _cost_lines(reference, costs, order, rows, direction, best, latency_sizes)
    lines += cell_time_table(records)
    return "\n".join(lines) + "\n"


def plotted_costs(columns: Sequence[str]) -> list[tuple[str, bool]]:
    """(column, higher is better) for the plot's x axes: speed, then size on disk.

    Speed is the latency suite's decode speed at its largest batch as a ratio to base, where the run
    has one: fixed work, every variant measured in one process. The evaluation's own tokens/s comes
    from cells that may have run hours apart, on a machine shared with other work."""
    prefix = "decode_tokens_per_s_batch"
    ratios = {
        int(c[len(prefix) :].partition("_")[0]): c for c in columns if c.startswith(prefix) and "_x_" in c
    }
    speed = ratios[max(ratios)] if ratios else "generation_tokens_per_s"
    return [(c, higher) for c, higher in ((speed, True), ("size_on_disk_MB", False)) if c in columns]


def plot_quality_vs_cost(path: Path, columns, rows) -> bool:
    """Quality against speed and against size, one point per variant, Pareto front joined.
    Returns False (and writes nothing) when the run has no quality or cost to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qualities = [c for c in PLOTTED_QUALITY if c in columns]
    costs = plotted_costs(columns)
    if not qualities or not costs:
        return False
    figure, axes = plt.subplots(
        len(qualities), len(costs), figsize=(6 * len(costs), 4.5 * len(qualities)), squeeze=False
    )
    for i, quality in enumerate(qualities):
        for j, (cost, higher_x) in enumerate(costs):
            ax = axes[i][j]
            points = {
                v: (row[cost], row[quality])
                for v, row in rows.items()
                if row.get(cost) is not None and row.get(quality) is not None
            }
            front = sorted(pareto_front(points, higher_x), key=lambda v: points[v][0])
            for variant, (x, y) in points.items():
                on_front = variant in front
                ax.scatter(x, y, s=60, color="tab:red" if on_front else "tab:blue", zorder=3)
                ax.annotate(variant, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
            if len(front) > 1:
                ax.plot(
                    [points[v][0] for v in front],
                    [points[v][1] for v in front],
                    color="tab:red",
                    alpha=0.5,
                    label="Pareto front",
                )
                ax.legend(fontsize=8)
            ax.set_xlabel(cost + (" (higher is better)" if higher_x else " (lower is better)"))
            ax.set_ylabel(quality)
            ax.grid(alpha=0.3)
    save_png(figure, path)
    return True


def save_png(figure, path: Path) -> None:
    """Lay out, write atomically as PNG, and free a matplotlib figure."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)


def _model_identity(record: dict) -> str | None:
    """The model by name and content hash (sha256 of its GGUF or weights, first 12 hex digits)."""
    model = record.get("model", {})
    if not model.get("pretrained"):
        return None
    name = model_name(model["pretrained"])
    digest = model.get("pretrained_sha256")
    return f"{name} (sha256 {digest[:12]}…)" if digest and not digest.startswith("hub:") else name


def _variant_weights(record: dict) -> str | None:
    """A variant artifact by the sha256 of its weights: two builds of one config on different machines
    (calibration, training) can differ, and this is what tells their records apart."""
    digest = (record.get("model") or {}).get("variant_weights_sha256")
    return f"{record['variant']} (sha256 {digest[:12]}…)" if digest else None


def run_settings(records: Sequence[dict]) -> dict[str, str]:
    """The settings a run's records share (or list), for the top of its leaderboard."""

    def values(get):
        seen = []
        for record in records:
            value = get(record)
            if value is not None and value not in seen:
                seen.append(value)
        return ", ".join(str(v) for v in seen) or "-"

    dequantized = values(
        lambda r: r["variant"] if (r.get("model") or {}).get("dequantized_linears") else None
    )
    weights = values(_variant_weights)
    return {
        "model": values(_model_identity),
        **({"variant weights": weights} if weights != "-" else {}),
        **(
            {
                "4-bit weights dequantized once for quality": f"{dequantized} (their speed and memory are "
                "the latency suite's, with the bitsandbytes kernels)"
            }
            if dequantized != "-"
            else {}
        ),
        "tasks": values(lambda r: r["task"]),
        "limit": values(lambda r: r.get("limit") or "all"),
        "batch size": values(lambda r: r.get("batch_size")),
        "dtype": values(lambda r: r.get("model", {}).get("dtype")),
        "codegen-bench": values(lambda r: r.get("model", {}).get("codegen_bench_version")),
        "lm-eval / transformers": values(
            lambda r: f"{r.get('versions', {}).get('lm_eval')} / {r.get('versions', {}).get('transformers')}"
        ),
        "finished": values(lambda r: r.get("finished", "")[:10] or None),
    }


def _check_run_names(runs: Sequence[Path]) -> None:
    """Refuse several runs of which two share a name: side by side, rows are named RUN:variant."""
    seen: dict[str, Path] = {}
    for run in runs:
        other = seen.setdefault(run.name, run)
        if other is run:
            continue
        if other.resolve() == run.resolve():
            raise CodegenBenchError(f"run folder {run} is given twice: pass each run once")
        raise CodegenBenchError(
            f"runs {other} and {run} are both named {run.name!r}, and rows side by side are named "
            "RUN:variant: pass one of them by a link with another name"
        )


def _report_folder(runs: Sequence[Path], out: Path | None) -> Path:
    """The folder the reports go to (made later, when they are written): `out`, else the one run's.
    Refused: no --out for several runs, an --out that is a file or lies under one, another run's
    folder (its own reports would be replaced), and any report file that is one of a run's inputs."""
    if out is None and len(runs) > 1:
        raise CodegenBenchError(
            f"several runs ({', '.join(map(str, runs))}) side by side need --out DIR for the combined "
            "reports: add e.g. --out results/combined"
        )
    folder = runs[0] if out is None else Path(out)
    if ".." in folder.parts:  # made as given, "x/../out" would also make a folder x
        folder = folder.resolve()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"is under the file {existing}"
        raise CodegenBenchError(
            f"--out {folder} {where}: pass a folder for the reports (it is made if missing)"
        )
    # A run folder holds its own reports; only that run's may replace them (resolved: "a/../run").
    own = len(runs) == 1 and folder.resolve() == runs[0].resolve()
    if not own and (folder.resolve() / RECORDS_FILE).exists():
        raise CodegenBenchError(
            f"--out {folder} is a run folder (it has {RECORDS_FILE}): these reports would replace its own "
            "matrix.csv and LEADERBOARD.md; pass another folder"
        )
    for name in REPORT_FILES:
        for run in runs:
            refuse_overwriting_inputs(folder / name, [run / f for f in RUN_INPUTS], "leaderboard report")
    return folder


def _add_latency(
    runs: Sequence[Path], reference: str | None, columns: list, rows: dict, direction: dict
) -> None:
    """Each run's latency suite into the matrix's `columns`, `rows` and `direction` (in place)."""
    for run in runs:
        latency = run / LATENCY_FILE
        if latency.is_file():
            extra_columns, extra_rows, extra_direction = latency_rows(
                latency, reference if len(runs) == 1 else None
            )
            prefix = f"{run.name}:" if len(runs) > 1 else ""
            for variant, values in extra_rows.items():
                rows.setdefault(prefix + variant, {}).update(values)
            columns += [c for c in extra_columns if c not in columns]
            direction.update(extra_direction)


def latency_size_lines(runs: Sequence[Path]) -> list[str]:
    """For each run with a latency suite, the size its figures were measured at, as RUN/latency.json
    records it (not as a command asked: the file may be older than the last command)."""
    lines = []
    for run in runs:
        latency = run / LATENCY_FILE
        if latency.is_file():
            text = latency_size_text(measured_latency_size(latency))
            lines.append(f"- {run.name}: {text}" if len(runs) > 1 else text)
    return lines


def last_command(run: Path) -> str | None:
    """The run's last `codegen-bench matrix` command, from its commands.txt (one line per
    invocation: its time, a space, the command); None where there is none."""
    commands = Path(run) / "commands.txt"
    lines = commands.read_text(errors="replace").strip().splitlines() if commands.is_file() else []
    return lines[-1].split(" ", 1)[1] if lines and " " in lines[-1] else None


def _report_settings(runs: Sequence[Path], records: Sequence[dict]) -> dict[str, str]:
    """The records' settings, and each run's last command and wall time."""
    settings = run_settings(records)
    for run in runs:
        command = last_command(run)
        if command:
            label = f"command ({run.name})" if len(runs) > 1 else "command"
            settings[label] = "`" + command + "`"
        wall_time = wall_time_summary(run)
        if wall_time:
            settings[f"wall time ({run.name})" if len(runs) > 1 else "wall time"] = wall_time
    return settings


def progress_text(progress: Progress) -> str:
    """The line a report written mid-run opens with."""
    left = progress.cells_total - progress.cells_done
    text = f"in progress: {progress.cells_done} of {progress.cells_total} cells done, {left} to go"
    if progress.seconds_left is not None and left:
        text += f", about {max(1, round(progress.seconds_left / 60))} min left at this invocation's pace"
    return text + " (then the latency suite); this report is rewritten after each cell"


def build_reports(
    runs: Sequence[Path],
    out: Path | None = None,
    reference: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Path]:
    """Write matrix.csv, LEADERBOARD.md and the plot for one run (into it) or several side by side
    (rows named RUN:variant, into `out`). Returns the paths written.

    `progress`: the run is under way (the matrix calls this after each cell): the leaderboard says
    how far it is, and the plot waits for the end (drawing it costs more than the tables).

    Every variant is paired with, and its latency speeds divided by, the reference variant:
    `reference` where given (RUN:variant for several runs), else the rule of harness/runs/reference.py.
    Side by side, each run's latency suite is divided by its own reference, by the rule.

    Every input is read and checked before anything is written: a bad run folder, --out or
    --reference is refused with nothing written; a records line that cannot be used is named in
    LEADERBOARD.md with the cells it leaves out."""
    runs = [Path(r) for r in runs]
    read = [read_run(run) for run in runs]
    _check_run_names(runs)
    out = _report_folder(runs, out)
    records = []
    for found in read:
        if len(runs) > 1:
            records += [{**r, "variant": f"{found.run.name}:{r['variant']}"} for r in found.records]
        else:
            records += found.records
    check_reference(reference, run_variants(records), ", ".join(map(str, runs)))
    columns, rows, direction = matrix_rows(records)
    intervals = metric_intervals(records)
    items = item_scores(records)
    reference, comparisons = paired_with_reference(records, items, reference)
    _add_latency(runs, reference, columns, rows, direction)
    csv_columns, csv_rows = columns_with_uncertainty(columns, rows, intervals, reference, comparisons)
    title = "Leaderboard: " + ", ".join(r.name for r in runs)
    unusable = [line for found in read for line in found.unusable]
    settings = _report_settings(runs, records)
    if progress is not None:
        settings = {"status": progress_text(progress), **settings}
    markdown = leaderboard_markdown(
        title,
        settings,
        columns,
        rows,
        direction,
        intervals,
        items,
        reference,
        comparisons,
        records,
        unusable,
        latency_sizes=latency_size_lines(runs),
    )
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "matrix.csv", "leaderboard": out / "LEADERBOARD.md"}
    write_csv(paths["csv"], csv_columns, csv_rows)
    write_text_atomic(paths["leaderboard"], markdown)
    plot = out / "quality_vs_cost.png"
    if progress is None and plot_quality_vs_cost(plot, columns, rows):
        paths["plot"] = plot
    return paths
