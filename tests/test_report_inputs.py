"""`codegen-bench check` and `codegen-bench leaderboard` refuse each bad input with one line (exit 2)
that names the input and the fix, and write nothing; a records line that cannot be read is named in
the leaderboard itself, with the cells it leaves out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codegen_bench.harness.cli import main
from codegen_bench.harness.files import RecordStore
from codegen_bench.harness.runs.matrix import RECORDS_FILE

TASKS = ("humaneval_custom", "humaneval_nll")


@pytest.fixture(autouse=True)
def default_int8_family(monkeypatch):
    """The CLI checks against this CPU's family baseline; these tests are about the default one."""
    monkeypatch.setattr("codegen_bench.harness.runs.gate.int8_kernel_family", lambda cpuinfo=None: None)


def _record(variant: str, task: str, value: float = 0.6) -> dict:
    metric = "pass@1" if task == "humaneval_custom" else "nll_per_token"
    return {
        "variant": variant,
        "task": task,
        "fingerprint": f"{variant}-{task}",
        "limit": 5,
        "metrics": {task: {metric: value}},
        "generation": {"tokens": 100, "seconds": 10.0},
        "seconds": 12.0,
        "model": {},
    }


def _run(
    folder: Path, cells=(("base", TASKS[0]), ("base", TASKS[1]), ("int8", TASKS[0]), ("int8", TASKS[1]))
):
    store = RecordStore(folder / RECORDS_FILE)
    for variant, task in cells:
        store.append(_record(variant, task))
    return folder


def _files(root: Path) -> dict[str, bytes]:
    """Every file under `root` with its bytes: what a refusal must leave as it was."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _refused(capsys, argv: list[str], *expected: str) -> str:
    """Run the CLI, assert exit 2 with one stderr line holding each of `expected`; return it."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("codegen-bench: error: ") and "Traceback" not in err
    for text in expected:
        assert text in err, err
    return err


@pytest.fixture
def run(tmp_path) -> Path:
    return _run(tmp_path / "run")


@pytest.fixture
def baseline(tmp_path, run, capsys) -> Path:
    path = tmp_path / "baseline.json"
    assert main(["check", str(run), "--baseline", str(path), "--update"]) == 0
    capsys.readouterr()
    return path


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("[]", "is a JSON array"),
        ("{}", 'without "checks"'),
        ('{"checks": 3}', '"checks" is a JSON number'),
        ('{"checks": []}', '"checks" is an empty list'),
        (json.dumps(_record("base", TASKS[0])), "is a matrix record"),
        (
            json.dumps(_record("base", TASKS[0])) + "\n" + json.dumps(_record("int8", TASKS[0])),
            "a run's records",
        ),
        ('{"checks": [{"variant": "base"}]}', "check 1 of 1 lacks task, metric, value, tolerance, direction"),
        ('{"checks": [3]}', "check 1 of 1 is a JSON number"),
        (
            '{"checks": [{"variant": "b", "task": "t", "metric": "m", "value": "x", "tolerance": 1, '
            '"direction": "higher"}]}',
            '"value" "x", not a finite number',
        ),
        (
            '{"checks": [{"variant": "b", "task": "t", "metric": "m", "value": 1, "tolerance": 1, '
            '"direction": "up"}]}',
            '"direction" "up"',
        ),
        ("not json", "is not JSON (Expecting value at line 1, column 1)"),
        ("", "is empty"),
        (b"{\xff}", "is not text"),
    ],
)
def test_check_refuses_a_baseline_of_the_wrong_shape(tmp_path, run, capsys, content, what):
    path = tmp_path / "b.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    before = _files(tmp_path)
    err = _refused(capsys, ["check", str(run), "--baseline", str(path)], f"baseline {path}", what)
    if what in ("is a matrix record", "a run's records"):  # --update would not write over them
        assert "pass the baseline's JSON file, e.g. results/baseline.json" in err
    else:
        assert f"codegen-bench check RUN --baseline {path} --update" in err and "make gate-baseline" in err
    assert _files(tmp_path) == before


def test_a_family_baseline_names_the_baseline_to_pass(tmp_path, run, capsys, monkeypatch):
    monkeypatch.setattr("codegen_bench.harness.runs.gate.int8_kernel_family", lambda cpuinfo=None: "amx_int8")
    (tmp_path / "b.amx_int8.json").write_text("[]")
    given = tmp_path / "b.json"
    _refused(
        capsys,
        ["check", str(run), "--baseline", str(given)],
        f"baseline {tmp_path / 'b.amx_int8.json'} (this CPU's amx_int8 baseline, for --baseline {given})",
        f"--baseline {given} --update",
    )


@pytest.mark.parametrize("update", [False, True])
@pytest.mark.parametrize(("name", "what"), [(".", "is empty or names a folder"), ("folder", "is a folder")])
def test_check_refuses_a_baseline_path_that_is_no_file(
    tmp_path, run, capsys, monkeypatch, update, name, what
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "folder").mkdir()
    before = _files(tmp_path)
    _refused(
        capsys, ["check", str(run), "--baseline", name, *(["--update"] if update else [])], "--baseline", what
    )
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    ("content", "what"),
    [
        (None, "run/records.jsonl does not exist): not a matrix run folder"),
        ("", "run/records.jsonl is empty (it has no records)"),
        ("\n\n", "run/records.jsonl is empty (it has no records)"),
        ('{"a": 1}\n{"b": 2}\n', 'line 1 is a JSON object without a "variant" string'),
        ('{"variant": "base", "task": "t"}\n', 'line 1 is the record of base on t, without "metrics"'),
        ('{"variant": "base", "task": "t", "metrics": {"t": {"m": "x"}}}\n', "t/m is a JSON string"),
        ("[1, 2]\n", "line 1 is a JSON array, not a record"),
        ('{"variant": "base", "ta', "line 1 is cut off or not JSON"),
    ],
)
@pytest.mark.parametrize("command", ["check", "update", "leaderboard"])
def test_a_run_folder_without_usable_records_is_refused(tmp_path, capsys, content, what, command):
    run = tmp_path / "run"
    run.mkdir()
    if content is not None:
        (run / RECORDS_FILE).write_text(content)
    check = {
        "variant": "base",
        "task": "t",
        "metric": "m",
        "value": 1.0,
        "tolerance": 0.1,
        "direction": "higher",
    }
    (tmp_path / "b.json").write_text(json.dumps({"checks": [check]}))
    before = _files(tmp_path)
    argv = {
        "check": ["check", str(run), "--baseline", str(tmp_path / "b.json")],
        "update": ["check", str(run), "--baseline", str(tmp_path / "new.json"), "--update"],
        "leaderboard": ["leaderboard", str(run)],
    }[command]
    _refused(capsys, argv, what, "codegen-bench matrix --out")
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    ("path", "what"), [("nothere", "does not exist"), ("afile", "is a file, not a folder")]
)
@pytest.mark.parametrize("command", ["check", "leaderboard"])
def test_a_run_path_that_is_no_folder_is_refused(tmp_path, baseline, capsys, path, what, command):
    (tmp_path / "afile").write_text("x")
    before = _files(tmp_path)
    run = str(tmp_path / path)
    argv = ["check", run, "--baseline", str(baseline)] if command == "check" else ["leaderboard", run]
    _refused(capsys, argv, f"run folder {run} {what}", "codegen-bench matrix --out RUN")
    assert _files(tmp_path) == before


@pytest.mark.parametrize(
    ("reference", "what"),
    [
        ("", "reference variant '' (--reference) is empty"),
        ("nf4", "reference variant 'nf4' (--reference) is not"),
    ],
)
@pytest.mark.parametrize("command", ["check", "update", "leaderboard", "leaderboard-out"])
def test_a_reference_the_run_lacks_is_refused(tmp_path, run, baseline, capsys, reference, what, command):
    before = _files(tmp_path)
    argv = {
        "check": ["check", str(run), "--baseline", str(baseline)],
        "update": ["check", str(run), "--baseline", str(tmp_path / "new.json"), "--update"],
        "leaderboard": ["leaderboard", str(run)],
        "leaderboard-out": ["leaderboard", str(run), "--out", str(tmp_path / "out")],
    }[command]
    _refused(capsys, [*argv, "--reference", reference], what, "pass one of base, int8")
    assert _files(tmp_path) == before and not (tmp_path / "out").exists()


def _symlinked_report(tmp_path: Path) -> list[str]:
    out = tmp_path / "out"
    out.mkdir()
    (out / "matrix.csv").symlink_to(tmp_path / "run" / RECORDS_FILE)
    return ["--out", str(out)]


@pytest.mark.parametrize(
    ("args", "what"),
    [
        (lambda t: [], "side by side need --out DIR"),
        (lambda t: ["--out", str(t / "afile")], "is a file: pass a folder for the reports"),
        (lambda t: ["--out", str(t / "afile" / "sub")], "is under the file"),
        (lambda t: ["--out", str(t / "run")], "is a run folder (it has records.jsonl)"),
        (lambda t: ["--out", str(t / "other" / ".." / "other2")], "is a run folder"),
        (lambda t: ["--out", str(t / "third")], "is a run folder"),
        (_symlinked_report, "is the input"),
    ],
)
def test_leaderboard_refuses_an_out_that_would_overwrite_or_cannot_be_made(tmp_path, run, capsys, args, what):
    _run(tmp_path / "other2", [("base", TASKS[0])])
    _run(tmp_path / "third", [("base", TASKS[0])])
    (tmp_path / "afile").write_text("x")
    extra = args(tmp_path)
    before = _files(tmp_path)
    _refused(capsys, ["leaderboard", str(run), str(tmp_path / "other2"), *extra], what)
    assert _files(tmp_path) == before
    assert not (tmp_path / "afile" / "sub").exists()


def test_leaderboard_of_one_run_refuses_another_runs_folder_as_out_and_takes_its_own(tmp_path, run, capsys):
    other = _run(tmp_path / "other", [("base", TASKS[0])])
    before = _files(tmp_path)
    _refused(capsys, ["leaderboard", str(run), "--out", str(other)], f"--out {other} is a run folder")
    assert _files(tmp_path) == before
    assert main(["leaderboard", str(run), "--out", str(tmp_path / "x" / ".." / "run")]) == 0
    assert (run / "LEADERBOARD.md").is_file() and not (tmp_path / "x").exists()


@pytest.mark.parametrize("second", ["run", "elsewhere/run"])
def test_leaderboard_refuses_runs_of_one_name(tmp_path, run, capsys, second):
    if second != "run":
        _run(tmp_path / second)
    _refused(
        capsys,
        ["leaderboard", str(run), str(tmp_path / second), "--out", str(tmp_path / "out")],
        "given twice" if second == "run" else "are both named 'run'",
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("target", "what"),
    [
        ("missing/b.json", "its folder"),
        ("afile/b.json", "is not a folder"),
        ("run/records.jsonl", "is the input"),
        ("link.json", "is the input"),
        ("README.md", "exists and is not JSON"),
        ("records.json", "exists and is a run's records"),
        ("run/../run/records.jsonl", "is the input"),
    ],
)
def test_check_update_refuses_a_baseline_path_it_must_not_write(tmp_path, run, capsys, target, what):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "README.md").write_text("# notes\n")
    (tmp_path / "records.json").write_text((run / RECORDS_FILE).read_text())
    (tmp_path / "link.json").symlink_to(run / RECORDS_FILE)
    before = _files(tmp_path)
    _refused(capsys, ["check", str(run), "--baseline", str(tmp_path / target), "--update"], what)
    assert _files(tmp_path) == before and not (tmp_path / "missing").exists()
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("content", ["", "<<<<<<< HEAD\n", "[]"])
def test_check_update_writes_over_a_damaged_baseline_as_the_refusal_to_read_it_says(
    tmp_path, run, capsys, content
):
    path = tmp_path / "b.json"
    path.write_text(content)
    assert main(["check", str(run), "--baseline", str(path)]) == 2
    assert f"--baseline {path} --update" in capsys.readouterr().err
    assert main(["check", str(run), "--baseline", str(path), "--update"]) == 0
    assert main(["check", str(run), "--baseline", str(path)]) == 0


def test_a_corrupt_latency_file_is_refused(tmp_path, run, capsys):
    (run / "latency.json").write_text('{"benchmarks": [')
    before = _files(tmp_path)
    _refused(capsys, ["leaderboard", str(run)], "latency.json is not JSON", "rerun the latency suite")
    assert _files(tmp_path) == before


def _torn(record: dict, length: int = 60) -> str:
    """`record` as a crash while appending leaves it: its first characters, no line end."""
    return json.dumps(record, sort_keys=True)[:length]


def _with_lines(folder: Path, lines: list[str]) -> Path:
    folder.mkdir(parents=True)
    (folder / RECORDS_FILE).write_text("".join(line + "\n" for line in lines))
    return folder


def _line(variant: str, task: str) -> str:
    return json.dumps(_record(variant, task), sort_keys=True)


def test_a_torn_records_line_is_named_in_the_leaderboard_with_its_missing_cell(tmp_path, capsys):
    run = _with_lines(
        tmp_path / "run",
        # Cut after its first score, which tells its task.
        [
            _line("base", TASKS[0]),
            _line("base", TASKS[1]),
            _torn(_record("int8", TASKS[0]), 140),
            _line("int8", TASKS[1]),
        ],
    )
    assert main(["leaderboard", str(run)]) == 0
    leaderboard = (run / "LEADERBOARD.md").read_text()
    assert "## Records that could not be read" in leaderboard
    section = leaderboard.split("## Records that could not be read")[1].split("## Quality")[0]
    assert f"`{run / RECORDS_FILE}` line 3 is cut off or not JSON" in section
    assert f"the record of int8 on {TASKS[0]}, missing below" in section
    assert f"a rerun of base on {TASKS[0]}, whose result below may then be stale" in section
    # The table's int8 row has no pass@1, as the section says.
    assert "| int8 |  |" in leaderboard


def test_a_torn_line_a_later_record_replaces_leaves_the_leaderboard_as_a_clean_runs(tmp_path, capsys):
    lines = [_line("base", TASKS[0]), _line("base", TASKS[1]), _line("int8", TASKS[0])]
    clean = _with_lines(tmp_path / "clean" / "run", [*lines, _line("int8", TASKS[1])])
    resumed = _with_lines(
        tmp_path / "resumed" / "run", [*lines, _torn(_record("int8", TASKS[1])), _line("int8", TASKS[1])]
    )
    assert main(["leaderboard", str(clean)]) == 0 and main(["leaderboard", str(resumed)]) == 0
    assert (resumed / "LEADERBOARD.md").read_text() == (clean / "LEADERBOARD.md").read_text()
    assert (resumed / "matrix.csv").read_text() == (clean / "matrix.csv").read_text()


def test_a_newer_record_that_cannot_be_used_marks_its_cell_possibly_stale(tmp_path, capsys):
    rerun = {**_record("int8", TASKS[0]), "fingerprint": "other settings", "metrics": None}
    run = _with_lines(tmp_path / "run", [_line("base", TASKS[0]), _line("int8", TASKS[0]), json.dumps(rerun)])
    assert main(["leaderboard", str(run)]) == 0
    leaderboard = (run / "LEADERBOARD.md").read_text()
    assert f"line 3 is the record of int8 on {TASKS[0]}, without" in leaderboard
    assert (
        f"It held a newer record of int8 on {TASKS[0]}: the tables show an earlier one, possibly stale"
        in leaderboard
    )


def test_the_gate_marks_the_cells_a_torn_line_may_hold_and_update_refuses_it(tmp_path, baseline, capsys):
    run = _with_lines(
        tmp_path / "torn",
        [
            _line("base", TASKS[0]),
            _line("base", TASKS[1]),
            _line("int8", TASKS[0]),
            _torn(_record("int8", TASKS[1])),
        ],
    )
    assert main(["check", str(run), "--baseline", str(baseline)]) == 1
    out = capsys.readouterr().out
    missing = [line for line in out.splitlines() if "MISSING" in line]
    assert missing and all(
        "records.jsonl line 4 could not be read; it may have held this cell" in m for m in missing
    )
    before = _files(tmp_path)
    _refused(
        capsys,
        ["check", str(run), "--baseline", str(baseline), "--update"],
        f"{run / RECORDS_FILE} line 4 is cut off or not JSON",
        f"int8 on {TASKS[1]}",
        "rerun the run's command",
    )
    assert _files(tmp_path) == before


def test_the_record_store_lists_the_lines_it_skips_and_appends_after_a_torn_one_on_a_fresh_line(tmp_path):
    path = _with_lines(tmp_path / "run", [_line("base", TASKS[0]), "[1]", '{"no": "cell"}'])
    (path / RECORDS_FILE).write_text((path / RECORDS_FILE).read_text() + _torn(_record("int8", TASKS[0])))
    store = RecordStore(path / RECORDS_FILE)
    assert list(store.latest()) == [("base", TASKS[0])]
    assert [number for number, _ in store.unreadable] == [2, 3, 4]
    store.append(_record("int8", TASKS[0]))
    assert [number for number, _ in store.read_numbered()] == [1, 3, 5]
    assert list(store.latest()) == [("base", TASKS[0]), ("int8", TASKS[0])]


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "", "--baseline", "b.json"],
        ["check", "run", "--baseline", ""],
        ["leaderboard", ""],
        ["leaderboard", "run", "--out", ""],
    ],
)
def test_an_empty_path_is_refused_by_the_command_line(tmp_path, capsys, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "an empty value" in err
    assert _files(tmp_path) == {}
