from __future__ import annotations

import json
import signal
import subprocess
import sys

import pytest

from codegen_bench.harness.files import RecordStore
from codegen_bench.harness.runs.invocations import (
    INVOCATIONS_FILE,
    read_invocations,
    recorded_invocation,
    wall_time_summary,
)
from codegen_bench.harness.runs.matrix import RECORDS_FILE


def _finish_cell(run, task: str, seconds: float) -> None:
    RecordStore(run / RECORDS_FILE).append({"variant": "base", "task": task, "seconds": seconds})


def test_one_invocation_that_runs_every_cell_states_the_runs_wall_time(tmp_path):
    with recorded_invocation(tmp_path, "codegen-bench matrix", cells_planned=2) as invocation:
        _finish_cell(tmp_path, "a", 10.0)
        _finish_cell(tmp_path, "b", 5.5)
        invocation.latency_s = 3.0
    (recorded,) = read_invocations(tmp_path)
    assert (recorded.outcome, recorded.cells_run, recorded.cells_s, recorded.latency_s) == (
        "finished",
        2,
        15.5,
        3.0,
    )
    assert recorded.wall_s >= 0 and recorded.command == "codegen-bench matrix"
    summary = wall_time_summary(tmp_path)
    assert summary.endswith("one uninterrupted invocation: 2 cells (16 s) and the latency suite (3 s)")


def test_an_interrupted_run_resumed_says_it_was_not_one_uninterrupted_invocation(tmp_path):
    with pytest.raises(KeyboardInterrupt), recorded_invocation(tmp_path, "matrix", cells_planned=2):
        _finish_cell(tmp_path, "a", 10.0)
        raise KeyboardInterrupt
    with recorded_invocation(tmp_path, "matrix", cells_planned=2):
        _finish_cell(tmp_path, "b", 5.0)
    # Rerun with everything done: nothing to do, so not counted as part of the run's time.
    with recorded_invocation(tmp_path, "matrix", cells_planned=2):
        pass
    outcomes = [(i.outcome, i.cells_run) for i in read_invocations(tmp_path)]
    assert outcomes == [("interrupted", 1), ("finished", 1), ("finished", 0)]
    summary = wall_time_summary(tmp_path)
    assert summary.startswith("not one uninterrupted invocation: 2 did the work")
    assert "(1 of 2 cells, interrupted)" in summary and "(1 of 2 cells, finished)" in summary


def test_a_failed_invocation_is_recorded_and_its_error_raised(tmp_path):
    with pytest.raises(RuntimeError, match="boom"), recorded_invocation(tmp_path, "matrix", cells_planned=1):
        raise RuntimeError("boom")
    start, end = (json.loads(line) for line in (tmp_path / INVOCATIONS_FILE).read_text().splitlines())
    assert (start["outcome"], end["outcome"], end["cells_run"], end["id"]) == (
        "running",
        "failed",
        0,
        start["id"],
    )
    assert wall_time_summary(tmp_path) is None  # it did no work


def test_other_ranks_record_nothing(tmp_path):
    with recorded_invocation(tmp_path, "matrix", cells_planned=1, enabled=False):
        _finish_cell(tmp_path, "a", 1.0)
    assert not (tmp_path / INVOCATIONS_FILE).exists()
    assert wall_time_summary(tmp_path) is None


def test_cells_of_a_killed_invocation_are_counted_without_a_wall_time(tmp_path):
    # A killed invocation (SIGKILL, out of memory) writes no line, but its finished cells are kept.
    _finish_cell(tmp_path, "a", 10.0)
    _finish_cell(tmp_path, "b", 20.0)
    with recorded_invocation(tmp_path, "matrix", cells_planned=3) as invocation:
        _finish_cell(tmp_path, "c", 5.0)
        invocation.latency_s = 2.0
    summary = wall_time_summary(tmp_path)
    assert summary.startswith("not one uninterrupted invocation: 1 did the work,")
    assert " s recorded: " in summary and "(1 of 3 cells, latency suite 2 s, finished)" in summary
    assert summary.endswith(
        "; 2 cells (30 s of cell time) by invocations that left no record of their wall time "
        "(killed, or run before invocations were recorded)"
    )


_KILLED_INVOCATION = """
import os, signal, sys
from datetime import datetime, timedelta
from pathlib import Path
from codegen_bench.harness.files import TIME_FORMAT, RecordStore
from codegen_bench.harness.runs.invocations import recorded_invocation
from codegen_bench.harness.runs.matrix import RECORDS_FILE

run = Path(sys.argv[1])
with recorded_invocation(run, "matrix", cells_planned=3) as invocation:
    finished = datetime.strptime(invocation.started, TIME_FORMAT) + timedelta(seconds=100)
    record = {"variant": "base", "task": "a", "seconds": 90.0, "finished": finished.strftime(TIME_FORMAT)}
    RecordStore(run / RECORDS_FILE).append(record)
    os.kill(os.getpid(), signal.SIGKILL)  # no `finally`, no end line
"""


def test_a_killed_invocation_states_its_cells_and_the_least_wall_time_they_prove(tmp_path):
    killed = subprocess.run([sys.executable, "-c", _KILLED_INVOCATION, str(tmp_path)], check=False)
    assert killed.returncode == -signal.SIGKILL
    (started_only,) = read_invocations(tmp_path)
    assert started_only.outcome == "running" and started_only.records_before == 0
    with recorded_invocation(tmp_path, "matrix", cells_planned=3):
        _finish_cell(tmp_path, "b", 5.0)
        _finish_cell(tmp_path, "c", 5.0)
    first, second = read_invocations(tmp_path)
    assert (first.outcome, second.outcome, second.cells_run) == ("running", "finished", 2)
    summary = wall_time_summary(tmp_path)
    assert summary.startswith("not one uninterrupted invocation: 2 did the work, at least 100 s in all: ")
    assert (
        f"at least 100 s, to its last finished cell (1 of 3 cells, started {first.started}, "
        "no end recorded: killed, or still running); 0 s (2 of 3 cells, finished)"
    ) in summary
    assert "left no record" not in summary  # every cell is accounted to an invocation
