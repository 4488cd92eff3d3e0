"""HumanEval prompt styles compared on the same problems, and why each style's failures failed.

    python benchmarks/studies/humaneval_prompt_styles.py \
        --run fenced=results/measurements/matrix-fenced-prompt/samples/base/humaneval_custom_*.jsonl \
        --run published=results/measurements/humaneval-prompt-styles/humaneval_custom_base.jsonl \
        --out results/measurements/humaneval-prompt-styles/summary.md

Each run is a samples file written by a HumanEval task (`passed`, `result`, `raw_completion` per
problem, one greedy sample each). Printed: each run's pass@1 with its Wilson 95% interval, each run
against the first on the same problems (problems lost and gained, exact McNemar p), and each run's
failures sorted into what the harness could have caused and what the model got wrong:

- `helper lost`: a NameError for a function the executed program calls but does not define,
  although the model wrote it (its answer defines it) or, in a prefilled-fence answer, could not
  have (the stop strings end the answer at the next top-level `def`);
- `import lost`: a NameError for a standard-library module that the answer imports but the program
  lost, or, in a prefilled-fence answer, could not import (nothing can be added above the function);
- `extraction`: the executed code does not parse (a SyntaxError or IndentationError);
- `budget`: the answer ran to the token budget (reported beside the error it ended with);
- `model`: everything else: wrong results (AssertionError), exceptions, time-outs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

from codegen_bench.harness.runs.uncertainty import mcnemar_exact, wilson_interval

NAME_ERROR = re.compile(r"failed: NameError: name '(\w+)' is not defined")


def read_run(path: Path) -> dict[str, dict]:
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return {record["task_id"]: record for record in records}


def _defines(text: str, name: str) -> bool:
    return re.search(rf"^\s*(?:async\s+)?(?:def|class)\s+{re.escape(name)}\b", text, re.MULTILINE) is not None


def _imports(text: str, name: str) -> bool:
    return re.search(rf"^\s*(?:import|from)\s+{re.escape(name)}\b", text, re.MULTILINE) is not None


def failure_cause(record: dict) -> str:
    result = record["result"]
    missing = NAME_ERROR.match(result)
    if missing:
        name = missing.group(1)
        raw = record.get("raw_completion", "")
        whole_program = "solution" in record  # the model could write anything around the function
        if name in sys.stdlib_module_names:
            return "import lost" if not whole_program or _imports(raw, name) else "model"
        called = re.search(rf"\b{re.escape(name)}\(", record["completion"])
        if _defines(raw, name) or (not whole_program and called):
            return "helper lost"
        return "model"
    if result.startswith(("failed: SyntaxError", "failed: IndentationError")):
        return "extraction"
    return "model"


def summary(runs: dict[str, dict[str, dict]]) -> str:
    names = list(runs)
    first = runs[names[0]]
    shared = [task_id for task_id in first if all(task_id in run for run in runs.values())]
    lines = [
        f"{len(shared)} problems scored by every run, one greedy sample each.",
        "",
        "| run | pass@1 [Wilson 95%] | lost vs " + names[0] + " | gained | exact McNemar p |",
        "|---|---|---|---|---|",
    ]
    for name, run in runs.items():
        passed = sum(run[t]["passed"] for t in shared)
        ci = wilson_interval(passed, len(shared))
        row = (
            f"| {name} | {passed / len(shared):.3f} ({passed}/{len(shared)}) [{ci.low:.3f}, {ci.high:.3f}] |"
        )
        if name == names[0]:
            lines.append(row + " | | |")
            continue
        lost = [t for t in shared if first[t]["passed"] and not run[t]["passed"]]
        gained = [t for t in shared if run[t]["passed"] and not first[t]["passed"]]
        lines.append(row + f" {len(lost)} | {len(gained)} | {mcnemar_exact(len(lost), len(gained)):.2g} |")
    for name, run in runs.items():
        failures = [t for t in shared if not run[t]["passed"]]
        causes = {t: failure_cause(run[t]) for t in failures}
        counts = Counter(causes.values())
        lines += ["", f"### Failures of `{name}`: {len(failures)}", ""]
        lines += [f"- {cause}: {count}" for cause, count in counts.most_common()]
        for cause in ("helper lost", "import lost", "extraction"):
            listed = [f"{t} ({run[t]['result'][8:60]})" for t in failures if causes[t] == cause]
            if listed:
                lines.append(f"- {cause}, problem by problem: " + "; ".join(listed))
        errors = Counter(re.match(r"(failed: \w+|timed out)", run[t]["result"]).group(1) for t in failures)
        lines.append(
            "- by result: " + ", ".join(f"{e.removeprefix('failed: ')} {n}" for e, n in errors.most_common())
        )
    name = names[0]
    failures = [t for t in shared if not first[t]["passed"]]
    lines += [
        "",
        f"### Every failure of `{name}`, problem by problem",
        "",
        "| problem | cause | result |",
        "|---|---|---|",
    ]
    for t in failures:
        result = first[t]["result"].replace("|", "\\|")[:100]
        lines.append(f"| {t} | {failure_cause(first[t])} | {result} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", required=True, metavar="NAME=SAMPLES.jsonl")
    parser.add_argument("--out", type=Path, help="also write the summary (Markdown) here")
    args = parser.parse_args(argv)
    runs = {}
    for spec in args.run:
        name, _, path = spec.partition("=")
        runs[name] = read_run(Path(path))
    text = summary(runs)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
