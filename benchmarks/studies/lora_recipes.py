"""LoRA recipe sweep: what each recipe's adapter gains on held-out explanations, and what it costs.

    .venv/bin/python benchmarks/studies/lora_recipes.py results/measurements/lora-recipes \
        --also results/measurements/lora-recipes/previous-default:lora=previous-default

Reads a `codegen-bench matrix` run folder (its records.jsonl, nothing is rerun) whose variants are
the reference (base) and LoRA adapters of it, and writes OUT/table.md and OUT/recipes.png (OUT is
the run folder unless --out says otherwise). A recipe is every variant whose records carry the
training facts of an adapter; `--also RUN:VARIANT=LABEL` (repeatable) adds a variant of another
run, paired against this run's base on the doc ids both scored.

Every difference is paired against base on the same items, with its 95% interval
(harness/runs/uncertainty.py): the stdlib explanation gain (code_explain_stdlib BERTScore F1 and
chrF), HumanEval pass@1 (problems lost and gained, exact McNemar p) and the HumanEval explanation
scores. KL per token is already a distance from base (base's own distributions are its reference),
so each recipe's KL is shown with its own stored interval: on held-out stdlib function bodies
(stdlib_nll) and on the canonical HumanEval solutions (humaneval_nll).

The recipe chosen as the default (`choose_default`) is, among the run's own recipes (not the --also
variants) whose stdlib BERTScore F1 and chrF gains both have intervals above 0, the one with the
smallest stdlib_nll KL; it reads no HumanEval number, so HumanEval stays a measurement the choice
was not tuned on. The non-inferiority
bars (HumanEval, stdlib gain, HumanEval explanations) are reported beside it, not used for it.
The plot puts the stdlib BERTScore gain against HumanEval's net problems lost and against the KL.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import write_text_atomic
from codegen_bench.harness.runs.reports import (
    check_reference,
    item_scores,
    matrix_rows,
    metric_intervals,
    paired,
    read_run,
    run_variants,
    save_png,
    unusable_line_text,
)
from codegen_bench.harness.runs.uncertainty import PairedDifference

STDLIB_F1 = "code_explain_stdlib/bertscore_f1"
STDLIB_CHRF = "code_explain_stdlib/chrf"
STDLIB_KL = "stdlib_nll/kl_per_token"
HUMANEVAL_PASS = "humaneval_custom/pass@1"
HUMANEVAL_F1 = "code_explain_humaneval/bertscore_f1"
HUMANEVAL_CHRF = "code_explain_humaneval/chrf"
HUMANEVAL_KL = "humaneval_nll/kl_per_token"
PAIRED_COLUMNS = (STDLIB_F1, STDLIB_CHRF, HUMANEVAL_PASS, HUMANEVAL_F1, HUMANEVAL_CHRF)
KL_COLUMNS = (STDLIB_KL, HUMANEVAL_KL)
# Non-inferiority on HumanEval: at most this many more problems lost than gained.
MAX_NET_LOST = 3
MISSING = "—"
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Recipe:
    """One row: an adapter's paired differences from base, its KLs and its training facts."""

    label: str
    source: str  # where it was measured: "" for the run itself, else RUN:VARIANT
    paired: dict[str, PairedDifference] = field(default_factory=dict)
    kl: dict[str, tuple[float, tuple[float, float] | None]] = field(default_factory=dict)
    pass_at_1: float | None = None
    training: dict = field(default_factory=dict)


def shown_path(path: Path) -> str:
    """`path` relative to the repository (its name alone where it lies outside): never absolute."""
    resolved = path.resolve()
    if resolved.is_relative_to(REPO):
        return str(resolved.relative_to(REPO)) or "."
    return path.name


def training_facts(records: Sequence[dict], variant: str) -> dict:
    """The variant's training facts (`model.variant_training`) from the first of its records with them."""
    for record in records:
        if record["variant"] == variant and (record.get("model") or {}).get("variant_training"):
            return record["model"]["variant_training"]
    return {}


def parse_also(text: str) -> tuple[Path, str, str]:
    """RUN:VARIANT=LABEL -> (RUN, VARIANT, LABEL)."""
    source, sep, label = text.rpartition("=")
    run, colon, variant = source.rpartition(":")
    if not sep or not colon or not run or not variant or not label:
        raise CodegenBenchError(
            f"--also {text!r} is not RUN:VARIANT=LABEL: e.g. --also results/reference:lora=lora-reference"
        )
    return Path(run), variant, label


def add_also(text: str, records: list[dict], items: dict, intervals: dict, rows: dict) -> str:
    """Merge another run's variant, renamed LABEL, into this run's records, items, intervals and
    rows (in place), so that `paired` matches it with base by doc id. Returns the label."""
    run, variant, label = parse_also(text)
    try:
        other = read_run(run).records
    except CodegenBenchError as exc:
        raise CodegenBenchError(f"--also {text!r}: {exc}") from None
    variants = run_variants(other)
    if variant not in variants:
        raise CodegenBenchError(
            f"--also {text!r}: {variant!r} is not a variant of {run}: pass one of {', '.join(variants)}"
        )
    if label in rows or label in items:
        raise CodegenBenchError(
            f"--also {text!r}: label {label!r} is already a variant of the run: pass another label"
        )
    own = [{**r, "variant": label} for r in other if r["variant"] == variant]
    records += own
    items.update(item_scores(own))
    intervals.update(metric_intervals(own))
    rows.update(matrix_rows(own)[1])
    return label


def choose_default(
    explain_gain: dict[str, tuple[PairedDifference | None, PairedDifference | None]],
    stdlib_kl: dict[str, float | None],
) -> tuple[str | None, str]:
    """(the recipe to make the default or None, the verdict in words).

    `explain_gain`: {recipe: (code_explain_stdlib BERTScore F1 vs base, chrF vs base)}; `stdlib_kl`:
    {recipe: stdlib_nll KL per token from base}. A recipe qualifies when both gains' 95% intervals lie
    above 0; of those, the one with the smallest KL is chosen. Only these numbers are read: the
    choice cannot be tuned on HumanEval. Where a qualifying recipe has no KL yet, none is chosen."""
    qualifying = [
        name
        for name, gains in explain_gain.items()
        if all(g is not None and g.interval.low > 0 for g in gains)
    ]
    unmeasured = [name for name, gains in explain_gain.items() if any(g is None for g in gains)]
    pending = f" (not measured yet on code_explain_stdlib: {', '.join(unmeasured)})" if unmeasured else ""
    if not qualifying:
        return None, (
            "no recipe's stdlib BERTScore F1 and chrF gains both have 95% intervals above 0: "
            f"none is chosen{pending}"
        )
    without_kl = [name for name in qualifying if stdlib_kl.get(name) is None]
    if without_kl:
        return None, (
            f"{', '.join(qualifying)} gain on both; {', '.join(without_kl)} "
            f"{'has' if len(without_kl) == 1 else 'have'} no stdlib_nll KL, so the smallest cannot be "
            f"told: none is chosen{pending}"
        )
    chosen = min(qualifying, key=lambda name: stdlib_kl[name])
    others = [name for name in qualifying if name != chosen]
    text = f"**{chosen}**: the smallest stdlib_nll KL ({stdlib_kl[chosen]:.3f})"
    if others:
        text += "; against " + ", ".join(f"{n} ({stdlib_kl[n]:.3f})" for n in others)
        kind = "recipe" if len(others) == 1 else "recipes"
        text += f", the other {kind} whose stdlib BERTScore F1 and chrF gains both lie above 0"
    else:
        text += ", the only recipe whose stdlib BERTScore F1 and chrF gains both lie above 0"
    return chosen, text + pending


def signed(value: float, decimals: int) -> str:
    text = f"{abs(value):.{decimals}f}"
    if float(text) == 0:
        return text
    return ("+" if value > 0 else "−") + text


def difference_text(difference: PairedDifference | None, decimals: int) -> str:
    if difference is None:
        return MISSING
    low, high = difference.interval.low, difference.interval.high
    text = f"{signed(difference.difference, decimals)} [{signed(low, decimals)}, {signed(high, decimals)}]"
    return f"**{text}**" if difference.significant else text


def kl_text(kl: tuple[float, tuple[float, float] | None] | None) -> str:
    if kl is None:
        return MISSING
    value, bounds = kl
    return f"{value:.3f}" + (f" [{bounds[0]:.3f}, {bounds[1]:.3f}]" if bounds else "")


def training_cells(training: dict) -> list[str]:
    """Examples (train split), steps, minutes of training steps, validation loss: what exists."""
    examples = training.get("examples")
    if isinstance(examples, dict):
        examples = examples.get("train")
    runtime = training.get("train_runtime_s")
    loss = training.get("validation_loss")
    return [
        f"{examples:,}" if isinstance(examples, int) else MISSING,
        f"{training['steps']:,}" if isinstance(training.get("steps"), int) else MISSING,
        f"{runtime / 60:.0f}" if isinstance(runtime, int | float) else MISSING,
        f"{loss:.3f}" if isinstance(loss, int | float) else MISSING,
    ]


def bars(recipe: Recipe) -> dict[str, bool | None]:
    """The non-inferiority bars, each passed (True), failed (False) or not measured (None)."""
    humaneval = recipe.paired.get(HUMANEVAL_PASS)
    gains = [recipe.paired.get(STDLIB_F1), recipe.paired.get(STDLIB_CHRF)]
    explain = recipe.paired.get(HUMANEVAL_F1)
    return {
        f"HumanEval: lost − gained ≤ {MAX_NET_LOST}, McNemar p ≥ 0.05": None
        if humaneval is None
        else humaneval.lost - humaneval.gained <= MAX_NET_LOST and humaneval.p_value >= 0.05,
        "stdlib explanations: BERTScore F1 and chrF intervals above 0": None
        if None in gains
        else all(g.interval.low > 0 for g in gains),
        "HumanEval explanations: BERTScore F1 not significantly below base": None
        if explain is None
        else explain.interval.high >= 0 or not explain.significant,
    }


def recipe_row(recipe: Recipe) -> str:
    humaneval = recipe.paired.get(HUMANEVAL_PASS)
    cells = [
        recipe.label,
        difference_text(recipe.paired.get(STDLIB_F1), 3),
        difference_text(recipe.paired.get(STDLIB_CHRF), 2),
        kl_text(recipe.kl.get(STDLIB_KL)),
        MISSING if recipe.pass_at_1 is None else f"{recipe.pass_at_1:.3f}",
        MISSING if humaneval is None else f"{humaneval.lost}/{humaneval.gained}",
        MISSING if humaneval is None else f"{humaneval.p_value:.2g}",
        difference_text(recipe.paired.get(HUMANEVAL_F1), 3),
        difference_text(recipe.paired.get(HUMANEVAL_CHRF), 2),
        kl_text(recipe.kl.get(HUMANEVAL_KL)),
        *training_cells(recipe.training),
    ]
    return "| " + " | ".join(cells) + " |"


def table_markdown(
    run: Path, reference: str, recipes: Sequence[Recipe], base_values: dict, notes: Sequence[str]
) -> str:
    base_cells = [
        f"{name} {base_values[column]:.{decimals}f}"
        for name, column, decimals in (
            ("HumanEval pass@1", HUMANEVAL_PASS, 3),
            ("stdlib BERTScore F1", STDLIB_F1, 3),
            ("stdlib chrF", STDLIB_CHRF, 2),
            ("HumanEval explanation BERTScore F1", HUMANEVAL_F1, 3),
            ("HumanEval explanation chrF", HUMANEVAL_CHRF, 2),
        )
        if base_values.get(column) is not None
    ]
    lines = [
        f"LoRA recipes of `{shown_path(run)}`: every difference is paired against {reference} on the same "
        "items, with its 95% interval (bold: the interval excludes 0, or McNemar p < 0.05); KL is each "
        f"adapter's own distance from {reference}'s next-token distributions, with its 95% interval.",
        "",
        f"{reference}: " + (", ".join(base_cells) or "no metric recorded yet") + ".",
        "",
        "| recipe | stdlib BERTScore F1 Δ [95%] | stdlib chrF Δ [95%] | stdlib KL from base [95%] "
        "| HumanEval pass@1 | lost/gained | McNemar p | HumanEval expl. BERTScore F1 Δ [95%] "
        "| HumanEval expl. chrF Δ [95%] | HumanEval KL from base [95%] | train examples | steps "
        "| train_runtime min | validation loss |",
        "|---|" + "---|" * 13,
        *(recipe_row(recipe) for recipe in recipes),
    ]
    if not recipes:
        lines.append("| (no recipe has a record yet) |" + f" {MISSING} |" * 13)
    # The candidates are the run's own recipes; --also variants (another run's) are points to compare
    # with, measured without this run's stdlib_nll.
    candidates = [r for r in recipes if not r.source]
    explain_gain = {r.label: (r.paired.get(STDLIB_F1), r.paired.get(STDLIB_CHRF)) for r in candidates}
    stdlib_kl = {r.label: r.kl[STDLIB_KL][0] if STDLIB_KL in r.kl else None for r in candidates}
    _, verdict = choose_default(explain_gain, stdlib_kl)
    lines += [
        "",
        f"Default recipe, among this run's recipes (stdlib gains and stdlib KL only, no HumanEval "
        f"number): {verdict}.",
    ]
    checks = {r.label: bars(r) for r in recipes}
    if recipes:
        names = list(next(iter(checks.values())))
        lines += [
            "",
            "Non-inferiority bars (reported, not used for the choice; — not measured):",
            "",
            "| recipe | " + " | ".join(names) + " |",
            "|---|" + "---|" * len(names),
        ]
        for label, found in checks.items():
            marks = [MISSING if ok is None else "✓" if ok else "✗" for ok in found.values()]
            lines.append(f"| {label} | " + " | ".join(marks) + " |")
    if notes:
        lines += ["", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def plot_recipes(path: Path, recipes: Sequence[Recipe]) -> bool:
    """Stdlib BERTScore F1 gain against HumanEval's net problems lost (left) and against the stdlib
    KL (right), one point per recipe. Returns False (and writes nothing) when no recipe has a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def x_of(recipe: Recipe):
        gain = recipe.paired.get(STDLIB_F1)
        if gain is None:
            return None
        return gain.difference, [
            [gain.difference - gain.interval.low],
            [gain.interval.high - gain.difference],
        ]

    left, right = [], []
    for recipe in recipes:
        x = x_of(recipe)
        if x is None:
            continue
        humaneval = recipe.paired.get(HUMANEVAL_PASS)
        if humaneval is not None:
            left.append((recipe.label, x, humaneval.lost - humaneval.gained, humaneval.p_value))
        if STDLIB_KL in recipe.kl:
            value, bounds = recipe.kl[STDLIB_KL]
            y_error = [[value - bounds[0]], [bounds[1] - value]] if bounds else None
            right.append((recipe.label, x, value, y_error))
    if not left and not right:
        return False
    figure, (ax_left, ax_right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for label, (x, x_error), net_lost, p_value in left:
        ax_left.errorbar(x, net_lost, xerr=x_error, fmt="o", color="tab:blue", capsize=3, zorder=3)
        ax_left.annotate(
            f"{label} (p={p_value:.2g})", (x, net_lost), textcoords="offset points", xytext=(5, 4), fontsize=8
        )
    ax_left.axhline(MAX_NET_LOST, color="tab:red", linestyle="--", alpha=0.7, label="non-inferiority bar")
    ax_left.legend(fontsize=8)
    ax_left.set_ylabel("HumanEval problems lost − gained vs base (lower is better)")
    for label, (x, x_error), kl, kl_error in right:
        ax_right.errorbar(x, kl, xerr=x_error, yerr=kl_error, fmt="o", color="tab:blue", capsize=3, zorder=3)
        ax_right.annotate(label, (x, kl), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax_right.set_ylabel("stdlib_nll KL per token from base (lower is better)")
    ax_right.set_ylim(bottom=0)
    for ax, points, what in ((ax_left, left, "HumanEval pass@1"), (ax_right, right, "stdlib_nll KL")):
        if not points:
            ax.text(0.5, 0.5, f"no recipe has {what} yet", transform=ax.transAxes, ha="center")
    for ax in (ax_left, ax_right):
        ax.axvline(0, color="gray", linestyle=":", alpha=0.7)
        ax.set_xlabel("code_explain_stdlib BERTScore F1 Δ vs base, 95% (higher is better)")
        ax.grid(alpha=0.3)
    save_png(figure, path)
    return True


def report(run: Path, also: Sequence[str], reference: str, out: Path) -> str:
    """Read the run (and the --also variants), write OUT/table.md and OUT/recipes.png; returns the table."""
    found = read_run(run)
    records = list(found.records)
    variants = run_variants(records)
    check_reference(reference, variants, str(run))
    _, rows, _ = matrix_rows(records)
    items, intervals = item_scores(records), metric_intervals(records)
    labels = [v for v in variants if v != reference and training_facts(records, v)]
    sources = dict.fromkeys(labels, "")
    for text in also:
        label = add_also(text, records, items, intervals, rows)
        sources[label] = text.rpartition("=")[0]
    notes = [unusable_line_text(line) for line in found.unusable]
    left_out = [v for v in variants if v != reference and v not in sources]
    if left_out:
        notes.append(f"not adapters (no training facts in their records), left out: {', '.join(left_out)}")
    recipes = []
    for label, source in sources.items():
        recipe = Recipe(label, source, pass_at_1=rows[label].get(HUMANEVAL_PASS))
        recipe.training = training_facts(records, label)
        for column in PAIRED_COLUMNS:
            difference = paired(items, label, reference, column)
            if difference is None:
                continue
            recipe.paired[column] = difference
            total = len(items[reference][column][0])
            if difference.n < total:
                notes.append(f"{label}'s {column} is paired on {difference.n} of {reference}'s {total} items")
        for column in KL_COLUMNS:
            if rows[label].get(column) is not None:
                recipe.kl[column] = (rows[label][column], intervals.get(label, {}).get(column))
        if source:
            notes.append(f"{label} is {source}, measured in that run and paired with this run's {reference}")
        recipes.append(recipe)
    table = table_markdown(run, reference, recipes, rows[reference], notes)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "table.md", table)
    if not plot_recipes(out / "recipes.png", recipes):
        table += "\n(no recipe has a stdlib BERTScore F1 gain yet: recipes.png not written)\n"
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a `codegen-bench matrix` run folder")
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="RUN:VARIANT=LABEL",
        help="a variant of another run as an extra row, repeatable",
    )
    parser.add_argument("--reference", default="base", help="the variant every recipe is paired with")
    parser.add_argument("--out", type=Path, help="folder for table.md and recipes.png (default: RUN)")
    args = parser.parse_args()
    try:
        print(report(args.run, args.also, args.reference, args.out or args.run), end="")
    except CodegenBenchError as exc:
        print(f"lora_recipes.py: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
