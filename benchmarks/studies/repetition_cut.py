"""What the repetition cut would have changed in a matrix run's HumanEval answers: re-executed.

    .venv/bin/python benchmarks/studies/repetition_cut.py RUN --out results/measurements/repetition-cut

RUN is a matrix run generated without the cut (results/measurements/repetition-cut/README.md names
the one measured). Every HumanEval answer in RUN/samples/<variant>/humaneval_custom_*.jsonl is
tokenized again with the default model's tokenizer, and where `repetition.first_cut`
finds a repeating run, the answer is cut there, reduced to a program by the
same published-protocol sanitizer, and executed again in the same sandbox. Reported per variant:
answers, answers cut, the tokens the cut would not have generated, and how many verdicts the cut
changed (each changed one listed). Re-tokenizing a decoded answer gives the generated ids back except
where the model chose a non-canonical split, which can move a cut by a token or two, not remove one.
Files: OUT/table.md, OUT/cuts.jsonl (every cut answer: variant, task, period, tokens kept and
generated, verdict before and after).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a matrix run folder with samples/")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from tqdm import tqdm
    from transformers import AutoTokenizer

    from codegen_bench.harness.engine.repetition import DEFAULT_REPETITION_CUT, first_cut
    from codegen_bench.harness.execution.executor import DEFAULT_LIMITS, execute_program, test_program
    from codegen_bench.harness.execution.problems import load_humaneval
    from codegen_bench.harness.files import read_jsonl, write_jsonl, write_text_atomic
    from codegen_bench.harness.loading import resolve_pretrained
    from codegen_bench.tasks.humaneval.utils import whole_program

    tokenizer = AutoTokenizer.from_pretrained(resolve_pretrained(None))
    problems = load_humaneval()
    cuts, rows = [], []
    for path in sorted(args.run.glob("samples/*/humaneval_custom_*.jsonl")):
        variant = path.parent.name
        answers = read_jsonl(path, ("task_id", "raw_completion"), what="samples file")
        generated = saved = changed = 0
        cut_here = []
        for answer in tqdm(answers, desc=variant, unit="answer"):
            ids = tokenizer.encode(answer["raw_completion"], add_special_tokens=False)
            generated += len(ids)
            found = first_cut(ids, DEFAULT_REPETITION_CUT)
            if found is None:
                continue
            kept, period = found
            saved += len(ids) - kept
            problem = problems[answer["task_id"]]
            program = whole_program(problem, tokenizer.decode(ids[:kept], skip_special_tokens=True))
            verdict = execute_program(test_program(problem, program), DEFAULT_LIMITS)
            changed += verdict.passed != answer["passed"]
            cut_here.append(
                {
                    "variant": variant,
                    "task_id": answer["task_id"],
                    "period": period,
                    "tokens_kept": kept,
                    "tokens_generated": len(ids),
                    "passed_uncut": answer["passed"],
                    "passed_cut": verdict.passed,
                    "result_cut": verdict.result,
                }
            )
        cuts += cut_here
        rows.append(
            {
                "variant": variant,
                "answers": len(answers),
                "cut": len(cut_here),
                "passed_among_cut_uncut": sum(c["passed_uncut"] for c in cut_here),
                "passed_among_cut_cut": sum(c["passed_cut"] for c in cut_here),
                "verdicts_changed": changed,
                "tokens_generated": generated,
                "tokens_not_generated": saved,
            }
        )
        print(json.dumps(rows[-1]))

    args.out.mkdir(parents=True, exist_ok=True)
    write_jsonl(args.out / "cuts.jsonl", cuts)
    cut = DEFAULT_REPETITION_CUT
    lines = [
        f"Repetition cut: {cut.min_run_tokens} tokens repeating with a period of at most "
        f"{cut.max_period_tokens}, applied to the HumanEval answers of `{args.run.name}`.",
        "",
        "| variant | answers | cut | passed among cut (uncut → cut) | verdicts changed "
        "| tokens not generated |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        share = r["tokens_not_generated"] / r["tokens_generated"] if r["tokens_generated"] else 0.0
        lines.append(
            f"| {r['variant']} | {r['answers']} | {r['cut']} | {r['passed_among_cut_uncut']} → "
            f"{r['passed_among_cut_cut']} | {r['verdicts_changed']} | {r['tokens_not_generated']:,} of "
            f"{r['tokens_generated']:,} ({share:.0%}) |"
        )
    for c in cuts:
        if c["passed_cut"] != c["passed_uncut"]:
            lines.append(f"\nchanged: {c['variant']} {c['task_id']} ({c['result_cut']})")
    write_text_atomic(args.out / "table.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
