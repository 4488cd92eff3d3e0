"""`codegen-bench check`: the regression gate. A matrix run against a committed baseline.

    codegen-bench check results/ci-gate --baseline results/baseline.json           # gate
    codegen-bench check results/ci-gate --baseline results/baseline.json --update  # (re)write it

The baseline is a JSON object whose "checks" list holds one check per (variant, task, metric), each
with the baseline value, an absolute tolerance and the direction that counts as a regression. It is
written from a run with the rules below and may then be edited by hand (a tolerance widened, a check
removed); a file that is no baseline, or a check without its fields, is refused with the fix.

Tolerances (chosen when the baseline is written), each metric's as its declaration beside its task
says (`MetricSpec.gate_tolerance`, collected in tasks/metrics.py):
- Quality metrics of generated output (`ItemFlips`): absolute points, sized to the number of items n
  the cell scored. The metric may move by what `flips` items changing completely would move it:
  `flips / n × scale`, with `flips = max(1, 2% of n)` (greedy decoding is deterministic, but another
  CPU or library version can flip a few completions through floating-point noise). `scale` is the
  metric's range per item: 1 for pass@k, exact match, similarities and BERTScore, 100 for
  sacrebleu's BLEU and chrF. A metric no task of ours declares is held to this rule at scale 1.
- Likelihood metrics (NLL per token, bits per character, and against the reference model top-1
  agreement and KL per token) score fixed reference text: no generation, nothing to flip, only
  rounding moves them (`ShareOfValue`): a share of the baseline value (tasks/humaneval/metrics.py).
- Generated tokens per cell: the flips rule, in either direction: a change in stopping shows here
  even when pass@1 does not move.
- Speed: only as a ratio to the run's reference variant (harness/runs/reference.py: the one named
  with --reference, else `base`, else the first) measured in the same run, never absolute seconds,
  which drift between machines. Generation tokens/s from the matrix, and every `..._x_<reference>`
  ratio of the latency suite when the run has one. A ratio may fall by 35% of its baseline value
  (SPEED_TOLERANCE).

Paired view: a baseline written from a run whose records hold per-item scores keeps them with each
check (and, for generated tokens, a fingerprint of each document's generation). The run is then
also compared with the baseline item by item, on the same documents:
- quality: a metric also regresses when the run is significantly worse than the baseline's own
  items (exact McNemar on the flipped problems for pass@1, a paired bootstrap interval of the
  difference otherwise; harness/runs/uncertainty.py), even where the total moved less than the tolerance;
- generated tokens: what is checked is how many documents' generations changed, not the total.
  Another CPU takes other kernels (oneDNN, fbgemm, the vectorised softmax and norms), whose float
  rounding differs in the last bits; a greedy decode that is close to a tie between two tokens can
  then take the other one, and that document's completion, and its length, change from there on.
  Up to `flips` documents may change that way (the rule above); the total may move by any amount
  with them, since one changed completion can be longer or shorter by hundreds of tokens.

A check fails when the run is worse than the baseline by more than the tolerance, or significantly
worse on the same items, or changed more documents' generations than allowed, or when the run
lacks a checked cell or metric, or scored a different number of items (not comparable). A change
for the better beyond the tolerance passes, marked "improved": refresh the baseline with --update.
"""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from codegen_bench.harness.cpu import cpu_flags
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import refuse_overwriting_inputs, timestamp, write_text_atomic
from codegen_bench.harness.runs.item_scores import OUTPUTS
from codegen_bench.harness.runs.latency import LATENCY_FILE
from codegen_bench.harness.runs.matrix import RECORDS_FILE
from codegen_bench.harness.runs.reference import reference_variant
from codegen_bench.harness.runs.reports import (
    RUN_INPUTS,
    RunRecords,
    cells_text,
    check_reference,
    json_type,
    latency_rows,
    matrix_rows,
    metric_direction,
    read_run,
    run_variants,
)
from codegen_bench.harness.runs.uncertainty import paired_difference
from codegen_bench.tasks.metric_spec import MetricSpec, ShareOfValue
from codegen_bench.tasks.metrics import METRICS, metric_spec

FLIP_FRACTION = 0.02
SPEED_TOLERANCE = 0.35
# A metric no task of ours declares: generated output in [0, 1].
UNDECLARED_METRIC = MetricSpec(higher_is_better=True)
# The declared tolerances, as a baseline file lists them under "rules": the range of one item's
# contribution for metrics not in [0, 1], and the share of the value for metrics of fixed text.
METRIC_SCALE = {name: spec.scale for name, spec in METRICS.items() if spec.scale != 1.0}
RELATIVE_TOLERANCE = {
    name: spec.gate_tolerance.fraction
    for name, spec in METRICS.items()
    if isinstance(spec.gate_tolerance, ShareOfValue)
}
SPEED_TASK = "(speed)"
TOKENS_METRIC = "generated_tokens"


@dataclass(frozen=True)
class Check:
    variant: str
    task: str
    metric: str
    value: float
    tolerance: float
    direction: str  # "higher" or "lower" is better; "either": any change beyond tolerance fails
    n: int | None = None  # items the cell scored (quality checks)
    # The baseline's own items: {"doc_ids": [...], "values": [row per item]} for a quality metric,
    # {"doc_ids": [...], "outputs": [fingerprint per document]} for generated tokens.
    items: dict | None = None


@dataclass(frozen=True)
class Outcome:
    check: Check
    observed: float | None
    verdict: str  # ok, improved, REGRESSED, CHANGED, MISSING, NOT COMPARABLE
    note: str = ""  # the paired view, where there was one: flips, p-value, changed documents
    # A records line that could not be read and may hold this cell's result: listed even when ok.
    warning: str = ""

    @property
    def failed(self) -> bool:
        return self.verdict not in ("ok", "improved")


def _flips(n: int) -> int:
    return max(1, round(FLIP_FRACTION * n))


def _quality_tolerance(metric: str, value: float, n: int | None) -> float:
    spec = metric_spec(metric) or UNDECLARED_METRIC
    if isinstance(spec.gate_tolerance, ShareOfValue):
        return spec.gate_tolerance.fraction * abs(value)
    if not n:
        return FLIP_FRACTION * spec.scale  # item count unknown (older records): 2% of the range
    return _flips(n) / n * spec.scale


def _run_records(run: Path) -> list[dict]:
    return read_run(run).records


def _items(record: dict, task: str) -> int | None:
    return (record.get("samples") or {}).get(task) or record.get("limit")


def _speed_ratios(
    run: Path, records: list[dict], reference: str | None = None
) -> dict[tuple[str, str], float]:
    """{(variant, ratio name): value}: generation tokens/s over the reference variant's, and the
    latency suite's ratio columns (`reference` where given, else the rule of
    harness/runs/reference.py)."""
    _, rows, _ = matrix_rows(records)
    ratios = {}
    requested, reference = reference, reference_variant(list(rows), reference)
    reference_speed = rows[reference].get("generation_tokens_per_s")
    for variant, row in rows.items():
        if variant != reference and reference_speed and row.get("generation_tokens_per_s"):
            name = f"generation_tokens_per_s_x_{reference}"
            ratios[(variant, name)] = row["generation_tokens_per_s"] / reference_speed
    latency = Path(run) / LATENCY_FILE
    if latency.is_file():
        columns, latency_by_variant, _ = latency_rows(latency, requested)
        divisor = reference_variant(list(latency_by_variant), requested)
        for variant, row in latency_by_variant.items():
            for column in columns:
                if "_x_" in column and variant != divisor and row.get(column) is not None:
                    ratios[(variant, column)] = row[column]
    return ratios


def _check_items(record: dict, task: str, metric: str) -> dict | None:
    """The items a check keeps: (doc ids, per-item values) of a metric, or (doc ids, generation
    fingerprints) for generated tokens."""
    items = (record.get("items") or {}).get(task) or {}
    key = OUTPUTS if metric == TOKENS_METRIC else metric
    if key not in items:
        return None
    return {"doc_ids": items["doc_ids"], "outputs" if key == OUTPUTS else "values": items[key]}


def observed_items(records: list[dict]) -> dict[tuple[str, str, str], dict]:
    """Every check's items in a run, keyed (variant, task, metric) as `observed_values`."""
    found = {}
    for record in records:
        for task, metrics in record["metrics"].items():
            for metric in [*metrics, TOKENS_METRIC]:
                items = _check_items(record, task, metric)
                if items is not None:
                    found[(record["variant"], task, metric)] = items
    return found


def observed_values(
    run: Path, records: list[dict], reference: str | None = None
) -> dict[tuple[str, str, str], float]:
    """Every value of a run (its `records`) the gate can check, keyed (variant, task, metric); speeds
    as ratios to the reference variant (`reference`, else the rule of harness/runs/reference.py)."""
    values = {}
    for record in records:
        for task, metrics in record["metrics"].items():
            for metric, value in metrics.items():
                values[(record["variant"], task, metric)] = float(value)
        tokens = (record.get("generation") or {}).get("tokens")
        if tokens:
            values[(record["variant"], record["task"], TOKENS_METRIC)] = float(tokens)
    for (variant, name), ratio in _speed_ratios(run, records, reference).items():
        values[(variant, SPEED_TASK, name)] = ratio
    return values


def _observed_items(records: list[dict]) -> dict[tuple[str, str], int | None]:
    items = {}
    for record in records:
        for task in record["metrics"]:
            items[(record["variant"], task)] = _items(record, task)
        items[(record["variant"], record["task"])] = _items(record, record["task"])
    return items


def baseline_checks(run: Path, reference: str | None = None) -> list[Check]:
    """The checks a baseline written from `run` holds, with the tolerances described above; speeds
    as ratios to the reference variant (`reference`, else the rule of harness/runs/reference.py)."""
    records = _run_records(run)
    checks = []
    for record in records:
        for task, metrics in record["metrics"].items():
            n = _items(record, task)
            for metric, value in metrics.items():
                higher = metric_direction(record, task, metric)
                direction = "either" if higher is None else "higher" if higher else "lower"
                tolerance = _quality_tolerance(metric, value, n)
                items = _check_items(record, task, metric)
                checks.append(Check(record["variant"], task, metric, value, tolerance, direction, n, items))
        tokens = (record.get("generation") or {}).get("tokens")
        if tokens:
            n = _items(record, record["task"])
            tolerance = (_flips(n) / n if n else FLIP_FRACTION) * tokens
            items = _check_items(record, record["task"], TOKENS_METRIC)
            checks.append(
                Check(record["variant"], record["task"], TOKENS_METRIC, tokens, tolerance, "either", n, items)
            )
    for (variant, name), ratio in _speed_ratios(run, records, reference).items():
        checks.append(Check(variant, SPEED_TASK, name, ratio, SPEED_TOLERANCE * ratio, "higher"))
    return checks


def _baseline_fix(path: Path) -> str:
    return (
        f"write one with `codegen-bench check RUN --baseline {_given_baseline(path)} --update` "
        "(`make gate-baseline` writes results/baseline.json)"
    )


def _check_baseline_target(run: Path, path: Path) -> None:
    """Refuse a baseline path --update cannot or must not write (see `write_baseline`)."""
    name = _baseline_name(path)
    if path.is_dir():
        raise CodegenBenchError(f"{name} is a folder: pass a file path, e.g. {path / 'baseline.json'}")
    if not path.parent.is_dir():
        state = "is not a folder" if path.parent.exists() else "does not exist"
        raise CodegenBenchError(
            f"cannot write {name}: its folder {path.parent} {state}; create the folder first, or pass a "
            "path in an existing one"
        )
    refuse_overwriting_inputs(
        path, [run / input_name for input_name in RUN_INPUTS], "check --update --baseline"
    )
    problem = _load_baseline(path)[1] if path.is_file() else None
    if problem is not None and not _replaceable(path, problem):
        raise CodegenBenchError(
            f"{name} exists and is {problem}, not a baseline: --update would replace it; pass another "
            "path (a baseline is a .json file)"
        )


def _refuse_unusable(found: RunRecords) -> None:
    """Refuse to write a baseline from a run whose records file has a line that may hide a cell."""
    if found.unusable:
        line = found.unusable[0]
        cells = cells_text([*line.missing, *line.stale]) or "a cell it does not name"
        raise CodegenBenchError(
            f"{line.path} line {line.number} is {line.reason}, and may have held {cells}: a baseline "
            "written now would lack that result or hold an older one; rerun the run's command to redo "
            "it (or delete that line), then this --update"
        )


def write_baseline(
    run: Path, path: Path, command: str | None = None, reference: str | None = None
) -> list[Check]:
    """Write the baseline of `run` (its checks and the rules that set their tolerances) to `path`.

    Refused with nothing written: a path that is a folder, lies in a missing folder, is one of the
    run's own files or holds something other than a baseline; a run whose records file has a line
    that may hide a cell's result (the baseline would lack its checks); a --reference the run lacks."""
    run, path = Path(run), Path(path)
    _check_baseline_target(run, path)
    found = read_run(run)
    _refuse_unusable(found)
    check_reference(reference, run_variants(found.records), str(run))
    checks = baseline_checks(run, reference)
    document = {
        "written": timestamp(),
        "from_run": str(run),
        "command": command,
        "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
        "kernels": found.records[0].get("kernels"),
        "rules": {  # how the tolerances below were set (codegen_bench.harness.runs.gate explains them)
            "flip_fraction": FLIP_FRACTION,
            "metric_scale": METRIC_SCALE,
            "relative_tolerance": RELATIVE_TOLERANCE,
            "speed_tolerance": SPEED_TOLERANCE,
        },
        "checks": [asdict(c) for c in checks],
    }
    write_text_atomic(path, json.dumps(document, indent=1) + "\n")
    return checks


# What `_load_baseline` calls a file of matrix records.
RECORDS_PROBLEMS = ("a matrix record", "a run's records (one JSON object a line)")


def _load_baseline(path: Path) -> tuple[dict | None, str | None]:
    """(the baseline file's JSON object, None), or (None, what the file is instead: "empty", "not
    JSON (...)", ...), read as far as the object and its "checks" key."""
    raw = path.read_bytes()
    if not raw.strip():
        return None, "empty"
    try:
        document = json.loads(raw)
    except UnicodeDecodeError as exc:
        return None, f"not text (byte {raw[exc.start]:#04x} is not UTF-8)"
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data" and _is_record(raw.split(b"\n", 1)[0]):
            return None, RECORDS_PROBLEMS[1]
        return None, f"not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
    if not isinstance(document, dict):
        return None, f"a JSON {json_type(document)}"
    if "checks" not in document:
        if _is_record(document):
            return None, RECORDS_PROBLEMS[0]
        keys = ", ".join(repr(key) for key in list(document)[:5]) or "none"
        return None, f'a JSON object without "checks" (its keys: {keys})'
    return document, None


def _replaceable(path: Path, problem: str) -> bool:
    """Whether --update may write over a file that is no baseline: an empty one, or a damaged .json
    (a baseline broken by hand or by a merge); never a file of another kind, such as a run's records."""
    return problem == "empty" or (path.suffix == ".json" and problem not in RECORDS_PROBLEMS)


def _is_record(line: bytes | dict) -> bool:
    """Whether `line` is a matrix record (a records.jsonl line) rather than a baseline."""
    try:
        record = json.loads(line) if isinstance(line, bytes) else line
    except ValueError:
        return False
    return isinstance(record, dict) and "variant" in record and "metrics" in record


CHECK_FIELDS = tuple(f.name for f in fields(Check))
REQUIRED_CHECK_FIELDS = CHECK_FIELDS[:6]  # n and items are optional
DIRECTIONS = ("higher", "lower", "either")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _items_problem(items: object) -> str | None:
    """What is wrong with a check's "items" (see Check), or None."""
    if items is None:
        return None
    keys = [key for key in ("values", "outputs") if key in items] if isinstance(items, dict) else []
    if len(keys) != 1 or not isinstance(items.get("doc_ids"), list) or not isinstance(items[keys[0]], list):
        return 'has "items" that are not {"doc_ids": [...], "values" or "outputs": [...]}'
    if not all(isinstance(doc, int | str) for doc in items["doc_ids"]):
        return 'has "items" whose "doc_ids" are not all numbers or strings'
    if len(items[keys[0]]) != len(items["doc_ids"]):
        return f'has "items" with {len(items[keys[0]])} {keys[0]} for {len(items["doc_ids"])} doc_ids'
    return None


def _check_problem(entry: object) -> str | None:
    """What is wrong with one of a baseline's "checks" entries, or None."""
    if not isinstance(entry, dict):
        return f"is a JSON {json_type(entry)}, not an object"
    missing = [key for key in REQUIRED_CHECK_FIELDS if key not in entry]
    if missing:
        return f"lacks {', '.join(missing)}"
    unknown = [key for key in entry if key not in CHECK_FIELDS]
    if unknown:
        return f"has unknown field {', '.join(repr(key) for key in unknown)}"
    for key in ("variant", "task", "metric"):
        if not isinstance(entry[key], str):
            return f'has "{key}" as a JSON {json_type(entry[key])}, not a string'
    for key in ("value", "tolerance"):
        if not _is_number(entry[key]):
            return f'has "{key}" {json.dumps(entry[key])[:40]}, not a finite number'
    if entry["tolerance"] < 0:
        return f'has a negative "tolerance" ({entry["tolerance"]})'
    if entry["direction"] not in DIRECTIONS:
        return f'has "direction" {json.dumps(entry["direction"])[:40]}, not "higher", "lower" or "either"'
    n = entry.get("n")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 1):
        return f'has "n" {json.dumps(n)[:40]}, not a number of items >= 1'
    return _items_problem(entry.get("items"))


def read_baseline(path: Path) -> list[Check]:
    """The checks of the baseline file at `path`. A file that is no baseline (not JSON, another kind
    of JSON, a check without its fields) is refused, naming what it is and the fix."""
    path = Path(path)
    name, fix = _baseline_name(path), _baseline_fix(path)
    if path.is_dir():
        raise CodegenBenchError(
            f"{name} is a folder: pass the baseline's JSON file, e.g. {path / 'baseline.json'}"
        )
    if not path.is_file():
        raise CodegenBenchError(f"{name} does not exist: {fix}")
    document, problem = _load_baseline(path)
    if document is None:
        # Where --update would refuse to write over the file, the fix is to pass the right one.
        fix = (
            fix
            if _replaceable(path, problem)
            else "pass the baseline's JSON file, e.g. results/baseline.json"
        )
        raise CodegenBenchError(f"{name} is {problem}, not a baseline: {fix}")
    checks = document["checks"]
    if not isinstance(checks, list) or not checks:
        found = "an empty list" if isinstance(checks, list) else f"a JSON {json_type(checks)}"
        raise CodegenBenchError(f'{name}: its "checks" is {found}, not a list of checks: {fix}')
    for index, entry in enumerate(checks, 1):
        problem = _check_problem(entry)
        if problem is not None:
            raise CodegenBenchError(
                f"{name}: check {index} of {len(checks)} {problem}: correct it (a check has "
                f"{', '.join(REQUIRED_CHECK_FIELDS)}, and optionally n and items), or {fix}"
            )
    return [Check(**entry) for entry in checks]


def _same_documents(check: Check, items: dict | None) -> tuple[list, list] | None:
    """The baseline's and the run's rows on the documents both scored, or None without items."""
    if not check.items or not items:
        return None
    key = "outputs" if "outputs" in check.items else "values"
    if key not in items:
        return None
    run_rows = dict(zip(items["doc_ids"], items[key], strict=True))
    shared = [i for i in check.items["doc_ids"] if i in run_rows]
    if not shared:
        return None
    baseline_rows = dict(zip(check.items["doc_ids"], check.items[key], strict=True))
    return [baseline_rows[i] for i in shared], [run_rows[i] for i in shared]


def _judge_outputs(check: Check, observed: float, rows: tuple[list, list]) -> Outcome:
    baseline, run = rows
    changed = sum(1 for a, b in zip(baseline, run, strict=True) if a != b)
    allowed = _flips(len(baseline))
    note = f"{changed} of {len(baseline)} generations changed (at most {allowed} may)"
    return Outcome(check, observed, "ok" if changed <= allowed else "CHANGED", note)


def _judge_paired(check: Check, observed: float, rows: tuple[list, list], outcome: Outcome) -> Outcome:
    """The tolerance's verdict, turned into a regression where the run is significantly worse than
    the baseline on the same items."""
    spec = metric_spec(check.metric)
    if spec is None or spec.estimator is None or check.direction == "either":
        return outcome
    difference = paired_difference(*rows, spec.estimator)
    if difference.p_value is not None:
        note = f"−{difference.lost}/+{difference.gained} vs baseline, McNemar p={difference.p_value:.2g}"
    else:
        low, high = difference.interval.low, difference.interval.high
        note = f"{difference.difference:+.4g} [{low:+.4g}, {high:+.4g}] vs baseline (paired)"
    worse = difference.difference < 0 if check.direction == "higher" else difference.difference > 0
    if difference.significant and worse:
        return Outcome(check, observed, "REGRESSED", note)
    return Outcome(check, observed, outcome.verdict, note)


def judge(
    check: Check, observed: float | None, observed_items: int | None, items: dict | None = None
) -> Outcome:
    """The verdict on one check: the tolerance rule, and the paired view where both sides have items."""
    if observed is None or (isinstance(observed, float) and math.isnan(observed)):
        return Outcome(check, None, "MISSING")
    if check.n is not None and observed_items is not None and observed_items != check.n:
        return Outcome(check, observed, "NOT COMPARABLE")
    rows = _same_documents(check, items)
    if rows is not None and check.metric == TOKENS_METRIC:
        return _judge_outputs(check, observed, rows)
    outcome = _judge_tolerance(check, observed)
    return outcome if rows is None else _judge_paired(check, observed, rows, outcome)


def _judge_tolerance(check: Check, observed: float) -> Outcome:
    change = observed - check.value
    if abs(change) <= check.tolerance + 1e-12:
        return Outcome(check, observed, "ok")
    if check.direction == "either":
        return Outcome(check, observed, "CHANGED")
    better = change > 0 if check.direction == "higher" else change < 0
    return Outcome(check, observed, "improved" if better else "REGRESSED")


# int8-dynamic rounds its activations at every call, and a CPU with AMX-INT8 rounds them otherwise than
# one without, even with ATen, MKL, oneDNN and FBGEMM all held to AVX2 (GATE_ENV): its int8 results
# differ while base's do not. Such a host is checked against its own baseline, written there, beside
# the default one.
INT8_KERNEL_FAMILIES = ("amx_int8",)


def int8_kernel_family(cpuinfo: str | None = None) -> str | None:
    """The CPU's int8 kernel family that has its own baseline (`amx_int8`), or None for the default."""
    flags = cpu_flags(cpuinfo)
    return next((family for family in INT8_KERNEL_FAMILIES if family in flags), None)


def family_baseline(path: Path, family: str | None) -> Path:
    """`path` for the default family, else the family's baseline beside it (baseline.amx_int8.json).
    A --baseline that is empty or a folder is refused here, before it is read or written."""
    path = Path(path)
    if not path.name or path.name == "..":  # "" and "." are both Path(".")
        raise CodegenBenchError(
            f"--baseline {str(path)!r} is empty or names a folder: pass the baseline's JSON file, "
            "e.g. results/baseline.json"
        )
    if path.is_dir():
        raise CodegenBenchError(
            f"--baseline {path} is a folder: pass the baseline's JSON file, e.g. {path / 'baseline.json'}"
        )
    return path if family is None else path.with_name(f"{path.stem}.{family}{path.suffix}")


def _given_baseline(path: Path) -> Path:
    """The --baseline that reads or writes `path` on this CPU: `family_baseline` finds a family's
    baseline from the default's path, so that path is what a fix names."""
    family = int8_kernel_family()
    if family is None:
        return path
    for tail, suffix in ((f".{family}{path.suffix}", path.suffix), (f".{family}", "")):
        if path.name.endswith(tail) and path.name != tail:
            given = path.with_name(path.name[: -len(tail)] + suffix)
            if family_baseline(given, family) == path:
                return given
    return path


def _baseline_name(path: Path) -> str:
    """How messages name the baseline at `path`; a family's also says whose it is and which
    --baseline finds it."""
    given = _given_baseline(path)
    if given == path:
        return f"baseline {path}"
    return f"baseline {path} (this CPU's {int8_kernel_family()} baseline, for --baseline {given})"


def kernel_mismatch(run: Path, baseline: Path) -> str | None:
    """A line saying the run chose other CPU kernels than the baseline's run, or None: results of a
    variant that rounds its activations (int8-dynamic) then differ without any change in the code."""
    try:
        document, _ = _load_baseline(Path(baseline))
    except OSError:
        return None
    expected = (document or {}).get("kernels")
    found = _run_records(run)[0].get("kernels")
    if not expected or not found or expected == found:
        return None
    return (
        f"note: {run} ran with kernels {found}, the baseline with {expected}: int8 results depend on "
        "the kernels; run the gate as `make gate` does (its GATE_ENV)"
    )


def check_run(run: Path, baseline: Path, reference: str | None = None) -> list[Outcome]:
    """Every check of `baseline` judged on `run`; speeds as ratios to the reference variant
    (`reference`, else the rule of harness/runs/reference.py), as the baseline was written."""
    checks = read_baseline(baseline)
    found = read_run(run)
    records = found.records
    check_reference(reference, run_variants(records), str(run))
    values = observed_values(run, records, reference)
    counts = _observed_items(records)
    items = observed_items(records)
    hidden = _hidden_cells(found)
    outcomes = []
    for c in checks:
        outcome = judge(
            c,
            values.get((c.variant, c.task, c.metric)),
            counts.get((c.variant, c.task)),
            items.get((c.variant, c.task, c.metric)),
        )
        outcomes.append(replace(outcome, warning=hidden.get((c.variant, c.task), "")))
    return outcomes


def _hidden_cells(found: RunRecords) -> dict[tuple[str, str], str]:
    """{cell: a warning} for each cell whose result a records line that could not be read may hold."""
    warnings: dict[tuple[str, str], str] = {}
    for line in found.unusable:
        where = f"{RECORDS_FILE} line {line.number} could not be read"
        for cell in line.missing:
            warnings.setdefault(cell, f"{where}; it may have held this cell")
        for cell in line.stale:
            warnings.setdefault(cell, f"{where}; it may hold a newer record of this cell")
    return warnings


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def format_outcomes(outcomes: Sequence[Outcome], only_notable: bool = False) -> str:
    """A Markdown table: variant, task, metric, baseline ± tolerance, run value, change, verdict."""
    lines = [
        "| variant | task | metric | baseline | tolerance | run | change | verdict | same items |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        if only_notable and o.verdict == "ok" and not o.warning:
            continue
        c = o.check
        change = "-" if o.observed is None else f"{o.observed - c.value:+.4g}"
        verdict = f"**{o.verdict}**" if o.failed else o.verdict
        note = "; ".join(filter(None, [o.note, o.warning]))
        lines.append(
            f"| {c.variant} | {c.task} | {c.metric} | {_number(c.value)} | ±{_number(c.tolerance)} "
            f"| {_number(o.observed)} | {change} | {verdict} | {note} |"
        )
    if len(lines) == 2:
        return "Every check is within its tolerance (--all lists them)."
    return "\n".join(lines)
