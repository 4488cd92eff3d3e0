"""How long each `codegen-bench matrix` invocation on a run folder took (RUN/invocations.jsonl).

A run folder can be filled by several invocations (one interrupted, then resumed): each cell's record
has its own seconds, but the time a user waits for the whole matrix (loading, the latency suite, the
reports' inputs) and whether it came in one go are the invocation's. The leaderboard states them: the
wall time of a run that one invocation did from start to end, or else each invocation's share.
An invocation that is killed (SIGKILL, out of memory, the machine stopped) writes no line; the cells
it finished are still in records.jsonl, and the leaderboard counts them as done by an unrecorded one.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codegen_bench.harness.files import RecordStore
from codegen_bench.harness.runs.matrix import RECORDS_FILE

INVOCATIONS_FILE = "invocations.jsonl"


@dataclass
class Invocation:
    command: str
    started: str
    cells_planned: int  # variants × tasks of the command
    cells_run: int = 0  # records this invocation added (the rest were done before)
    cells_s: float = 0.0  # their seconds
    latency_s: float | None = None  # None: the latency suite did not run in this invocation
    wall_s: float = 0.0
    outcome: str = "running"  # finished, interrupted (Ctrl-C, SIGTERM) or failed

    @property
    def did_work(self) -> bool:
        return self.cells_run > 0 or self.latency_s is not None


@contextmanager
def recorded_invocation(
    run: Path, command: str, cells_planned: int, enabled: bool = True
) -> Iterator[Invocation]:
    """Time the block as one invocation on `run` and append it to RUN/invocations.jsonl when the block
    ends, however it ends (an interrupted or failed invocation is recorded as such, and re-raised).
    `enabled=False` (the other ranks of a data-parallel run) records nothing."""
    invocation = Invocation(
        command=command, started=time.strftime("%Y-%m-%dT%H:%M:%S%z"), cells_planned=cells_planned
    )
    records = RecordStore(Path(run) / RECORDS_FILE)
    before = len(records.read()) if enabled else 0
    started = time.perf_counter()
    try:
        yield invocation
        invocation.outcome = "finished"
    except KeyboardInterrupt:
        invocation.outcome = "interrupted"
        raise
    except BaseException:
        invocation.outcome = "failed"
        raise
    finally:
        if enabled:
            invocation.wall_s = round(time.perf_counter() - started, 1)
            added = records.read()[before:]
            invocation.cells_run = len(added)
            invocation.cells_s = round(sum(r.get("seconds", 0.0) for r in added), 1)
            RecordStore(Path(run) / INVOCATIONS_FILE).append(dataclasses.asdict(invocation))


def read_invocations(run: Path) -> list[Invocation]:
    fields = {f.name for f in dataclasses.fields(Invocation)}
    return [
        Invocation(**{k: v for k, v in line.items() if k in fields})
        for line in RecordStore(Path(run) / INVOCATIONS_FILE).read()
    ]


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return (
        f"{seconds:,.0f} s ({minutes // 60} h {minutes % 60} min)" if minutes >= 60 else f"{seconds:,.0f} s"
    )


def _cells(n: int) -> str:
    return f"{n} cell" if n == 1 else f"{n} cells"


def wall_time_summary(run: Path) -> str | None:
    """The leaderboard's line on how long the run took, or None for a folder without invocations
    (written before they were recorded). Invocations that found nothing to do are left out."""
    invocations = read_invocations(run)
    working = [i for i in invocations if i.did_work]
    if not working:
        return None
    if (
        len(working) == 1
        and working[0].outcome == "finished"
        and working[0].cells_run == working[0].cells_planned
    ):
        one = working[0]
        latency = (
            f"the latency suite ({one.latency_s:,.0f} s)" if one.latency_s is not None else "no latency suite"
        )
        return (
            f"{_duration(one.wall_s)}, one uninterrupted invocation: {_cells(one.cells_run)} "
            f"({one.cells_s:,.0f} s) and {latency}"
        )
    records = RecordStore(Path(run) / RECORDS_FILE).read()
    untracked_cells = len(records) - sum(i.cells_run for i in invocations)
    untracked_s = sum(r.get("seconds", 0.0) for r in records) - sum(i.cells_s for i in invocations)
    parts = []
    for i in working:
        latency = f", latency suite {i.latency_s:,.0f} s" if i.latency_s is not None else ""
        parts.append(f"{i.wall_s:,.0f} s ({i.cells_run} of {i.cells_planned} cells{latency}, {i.outcome})")
    if untracked_cells > 0:
        parts.append(
            f"{_cells(untracked_cells)} ({untracked_s:,.0f} s of cell time) by invocations that left no "
            "record of their wall time (killed, or run before invocations were recorded)"
        )
    total = sum(i.wall_s for i in working)
    # With unrecorded invocations the recorded total is not the run's: say which it is.
    total_of = "recorded" if untracked_cells > 0 else "in all"
    return (
        f"not one uninterrupted invocation: {len(working)} did the work, {total:,.0f} s {total_of}: "
        + "; ".join(parts)
    )
