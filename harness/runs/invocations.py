"""How long each `codegen-bench matrix` invocation on a run folder took (RUN/invocations.jsonl).

A run folder can be filled by several invocations (one interrupted, then resumed): each cell's record
has its own seconds, but the time a user waits for the whole matrix (loading, the latency suite, the
reports' inputs) and whether it came in one go are the invocation's. The leaderboard states them: the
wall time of a run that one invocation did from start to end, or else each invocation's share.
An invocation writes a line when it starts and another when it ends, however it ends. One that is killed
(SIGKILL, out of memory, the machine stopped) leaves only its start line. Its finished cells are still
in records.jsonl (those added after its start, before the next invocation's), so the leaderboard states
them and the least wall time they prove: from its start to its last finished cell.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from codegen_bench.harness.files import TIME_FORMAT, RecordStore, timestamp
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
    # running (its start line: the only line of one that was killed, or that is still running),
    # finished, interrupted (Ctrl-C, SIGTERM) or failed
    outcome: str = "running"
    # Its start and end lines share the id. Lines written before ids have none and stand alone.
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    records_before: int | None = None  # lines in records.jsonl when it started

    @property
    def did_work(self) -> bool:
        return self.cells_run > 0 or self.latency_s is not None


@contextmanager
def recorded_invocation(
    run: Path, command: str, cells_planned: int, enabled: bool = True
) -> Iterator[Invocation]:
    """Time the block as one invocation on `run`: append its start line to RUN/invocations.jsonl, and
    its end line when the block ends, however it ends (an interrupted or failed invocation is recorded
    as such, and re-raised). `enabled=False` (the other ranks of a data-parallel run) records nothing."""
    records = RecordStore(Path(run) / RECORDS_FILE)
    before = len(records.read()) if enabled else 0
    invocation = Invocation(
        command=command,
        started=timestamp(),
        cells_planned=cells_planned,
        records_before=before,
    )
    if enabled:
        RecordStore(Path(run) / INVOCATIONS_FILE).append(dataclasses.asdict(invocation))
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
    """Each invocation once, in the order they started: its end line where it has one, else its start line."""
    names = {f.name for f in dataclasses.fields(Invocation)}
    by_id: dict[object, Invocation] = {}
    for line in RecordStore(Path(run) / INVOCATIONS_FILE).read():
        # A later line of the same id (the end) replaces the start in its place; a line without one
        # (written before ids) is its own invocation.
        by_id[line.get("id") or object()] = Invocation(**{k: v for k, v in line.items() if k in names})
    return list(by_id.values())


def _account_unended(invocations: list[Invocation], records: list[dict]) -> dict[str, float]:
    """Fill in the cells of each invocation that has only its start line (killed, or still running):
    the records added after it started and before the next invocation did. Returns, by id, the
    least wall time they prove: from its start to its last cell's `finished`."""
    least_wall_s = {}
    for index, invocation in enumerate(invocations):
        if invocation.outcome != "running" or invocation.records_before is None:
            continue
        later = [i.records_before for i in invocations[index + 1 :] if i.records_before is not None]
        cells = records[invocation.records_before : later[0] if later else len(records)]
        invocation.cells_run = len(cells)
        invocation.cells_s = round(sum(r.get("seconds", 0.0) for r in cells), 1)
        finished = [r["finished"] for r in cells if r.get("finished")]
        if finished:
            start = datetime.strptime(invocation.started, TIME_FORMAT)
            least_wall_s[invocation.id] = max(
                (datetime.strptime(f, TIME_FORMAT) - start).total_seconds() for f in finished
            )
    return least_wall_s


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
    unended = [i for i in invocations if i.outcome == "running"]
    working = [i for i in invocations if i.did_work and i.outcome != "running"]
    if (
        not unended
        and len(working) == 1
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
    least_wall_s = _account_unended(invocations, records)
    working = [i for i in invocations if i.did_work]
    if not working:
        return None
    untracked_cells = len(records) - sum(i.cells_run for i in invocations)
    untracked_s = sum(r.get("seconds", 0.0) for r in records) - sum(i.cells_s for i in invocations)
    parts = []
    total = 0.0
    for i in working:
        if i.outcome == "running":
            wall_s = least_wall_s.get(i.id, 0.0)
            parts.append(
                f"at least {wall_s:,.0f} s, to its last finished cell ({i.cells_run} of {i.cells_planned} "
                f"cells, started {i.started}, no end recorded: killed, or still running)"
            )
        else:
            wall_s = i.wall_s
            latency = f", latency suite {i.latency_s:,.0f} s" if i.latency_s is not None else ""
            parts.append(f"{wall_s:,.0f} s ({i.cells_run} of {i.cells_planned} cells{latency}, {i.outcome})")
        total += wall_s
    if untracked_cells > 0:
        parts.append(
            f"{_cells(untracked_cells)} ({untracked_s:,.0f} s of cell time) by invocations that left no "
            "record of their wall time (killed, or run before invocations were recorded)"
        )
    # Cells without a recorded invocation make the total the recorded ones' only; an invocation
    # without an end makes it a lower bound.
    total_of = "recorded" if untracked_cells > 0 else "in all"
    total_s = (
        f"at least {total:,.0f} s" if any(i.outcome == "running" for i in working) else f"{total:,.0f} s"
    )
    return (
        f"not one uninterrupted invocation: {len(working)} did the work, {total_s} {total_of}: "
        + "; ".join(parts)
    )
