"""Hostile completions against the executor: each ends "not passed" with a clear verdict, the run goes
on, and the host is unchanged afterwards (no file written or deleted outside the sample's private
directory, no process left running, this process alive).

Every program here is HumanEval/53 (`add(x, y)`) with a hostile completion. As root (these
machines, and CI) the executor runs it as a sandbox user in its own namespaces; the cases that only
that makes safe to run at all (killing our process, deleting under our HOME, a fork bomb) are
skipped when the tests run as another user.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

from codegen_bench.harness.execution.executor import (
    PRIVATE_DIRS,
    SANDBOX_UID_BASE,
    SANDBOX_UIDS_PER_PROCESS,
    SITE_DIRS,
    ExecutionLimits,
    check_program,
    execute_program,
    execute_samples,
)
from codegen_bench.harness.execution.problems import load_humaneval

# Short limits keep the timeouts fast; the hard kill follows 0.5 s after the timeout.
FAST = ExecutionLimits(timeout_s=1.0, kill_grace_s=0.5)
AS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(
    not AS_ROOT, reason="only a sandbox user (the executor runs as root) makes this case safe to run"
)


@pytest.fixture(scope="module")
def add() -> dict:
    return load_humaneval()["HumanEval/53"]


def run(problem: dict, completion: str, limits: ExecutionLimits = FAST):
    return execute_program(check_program(problem, completion), limits)


def after_correct_body(problem: dict, top_level_code: str) -> str:
    """A correct completion followed by module-level code that runs before the tests."""
    return problem["canonical_solution"] + "\n" + top_level_code + "\n"


def _sandbox_processes() -> list[psutil.Process]:
    """Live processes of this process's sandbox users."""
    first = SANDBOX_UID_BASE + os.getpid() * SANDBOX_UIDS_PER_PROCESS
    found = []
    for process in psutil.process_iter(["uids", "status"]):
        uids = process.info["uids"]
        if (
            uids
            and first <= uids.real < first + SANDBOX_UIDS_PER_PROCESS
            and process.info["status"] != psutil.STATUS_ZOMBIE
        ):
            found.append(process)
    return found


def _our_exec_dirs() -> set[Path]:
    """Sample directories of this process (another harness on the machine has its own users)."""
    first = SANDBOX_UID_BASE + os.getpid() * SANDBOX_UIDS_PER_PROCESS
    found = set()
    for folder in Path(tempfile.gettempdir()).glob("codegen-bench-exec-*"):
        try:
            owner = (folder / "work").stat().st_uid
        except OSError:
            continue
        if first <= owner < first + SANDBOX_UIDS_PER_PROCESS or (not AS_ROOT and owner == os.getuid()):
            found.add(folder)
    return found


def _marked(marker: str) -> list[Path]:
    return [p for folder in PRIVATE_DIRS if Path(folder).is_dir() for p in Path(folder).glob(f"*{marker}*")]


@pytest.fixture
def host(tmp_path):
    """The host's state around one hostile run: a marker for files the program may try to leave,
    a canary file under our HOME, and after the run the checks that nothing changed."""

    marker = f"codegen-bench-hostile-{uuid.uuid4().hex[:12]}"
    host = SimpleNamespace(marker=marker, canary=Path.home() / f".{marker}-canary")
    exec_dirs_before = _our_exec_dirs()
    host.canary.write_text("do not delete")
    yield host
    try:
        deadline = time.monotonic() + 3.0
        while _sandbox_processes() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _sandbox_processes() == [], "a process of the sample is still running"
        assert psutil.Process().is_running()
        assert host.canary.read_text() == "do not delete", "the sample changed a file under our HOME"
        assert _marked(host.marker) == [], "the sample left files in a shared temporary folder"
        assert _our_exec_dirs() <= exec_dirs_before, "the sample's private directory was not removed"
    finally:
        host.canary.unlink(missing_ok=True)


def test_infinite_loop_times_out(add, host):
    result = run(add, "    while True:\n        pass\n")
    assert (result.passed, result.result) == (False, "timed out")


def test_loop_that_swallows_the_alarm_is_killed(add, host):
    completion = (
        "    while True:\n"
        "        try:\n"
        "            while True:\n"
        "                pass\n"
        "        except BaseException:\n"
        "            pass\n"
    )
    started = time.monotonic()
    result = run(add, completion)
    assert (result.passed, result.result) == (False, "timed out")
    assert time.monotonic() - started < 10.0  # killed at 1.5 s; the bound only tells killed from hung


def test_sleep_for_an_hour_times_out(add, host):
    result = run(add, "    import time\n    time.sleep(3600)\n")
    assert (result.passed, result.result) == (False, "timed out")


def test_allocating_8_gib_hits_the_memory_limit(add, host):
    result = run(add, after_correct_body(add, "blob = bytearray(8 * 2**30)"))
    assert (result.passed, result.result) == (False, "failed: memory limit")


@needs_root
def test_fork_bomb_is_bounded_and_cleaned_up(add, host):
    # Forks until refused, ignoring every refusal: only RLIMIT_NPROC of the sandbox user bounds it,
    # and only killing every process of that user ends it.
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = run(add, after_correct_body(add, bomb))
    assert (result.passed, result.result) == (False, "timed out")


@needs_root
def test_killing_the_parent_is_refused(add, host):
    result = run(add, after_correct_body(add, "import os\nos.kill(os.getppid(), 9)"))
    assert not result.passed
    assert result.result == "failed: PermissionError: [Errno 1] Operation not permitted"


@needs_root
def test_writes_to_tmp_vanish_and_home_is_out_of_reach(add, host):
    program = (
        "import os, shutil\n"
        f"open('/tmp/{host.marker}', 'w').write('x')\n"
        f"open('/dev/shm/{host.marker}', 'w').write('x')\n"
        "shutil.rmtree(os.path.expanduser('~'), ignore_errors=True)\n"
        f"os.remove({str(host.canary)!r})"
    )
    result = run(add, after_correct_body(add, program))
    assert not result.passed
    # Hidden (a private mount namespace covers the closed HOME) or, without one, refused.
    assert re.match(r"failed: (FileNotFoundError|PermissionError): \[Errno (2|13)\]", result.result), (
        result.result
    )


# Module-level code after a correct body, and the one verdict each must get.
EXACT_VERDICTS = {
    "killing its own process group ends only itself": (
        "import os\nos.killpg(0, 9)",
        "failed: killed by signal SIGKILL",
    ),
    "sys.exit(0) before the tests": (
        "import sys\nsys.exit(0)",
        "failed: exited early via sys.exit(0) before the tests finished",
    ),
    "os._exit(0) before the tests": (
        "import os\nos._exit(0)",
        "failed: exited early (status 0) before the tests finished",
    ),
    "unbounded recursion": (
        "def f(n):\n    return f(n + 1)\nf(0)",
        "failed: RecursionError: maximum recursion depth exceeded",
    ),
}


@pytest.mark.parametrize("case", list(EXACT_VERDICTS))
def test_hostile_module_code_gets_its_verdict(add, host, case):
    code, verdict = EXACT_VERDICTS[case]
    result = run(add, after_correct_body(add, code))
    assert (result.passed, result.result) == (False, verdict)


@pytest.mark.skipif(not AS_ROOT, reason="a network namespace needs root (CAP_SYS_ADMIN)")
def test_sockets_cannot_connect(add, host):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        connect = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=0.2)"
        result = run(add, after_correct_body(add, connect))
    assert not result.passed
    assert re.match(r"failed: OSError: \[Errno 101\] Network is unreachable", result.result), result.result


def test_printing_forever_ends_on_the_time_limit_with_the_output_discarded(add, host):
    before = psutil.Process().memory_info().rss
    result = run(add, after_correct_body(add, "while True:\n    print('x' * 1000)"))
    assert not result.passed
    assert result.result == "timed out"
    # Hundreds of MB went through the pipe; we kept the first 4 KB, wrote nothing to disk (the
    # host fixture checks the folders) and grew by far less than what was printed.
    assert result.output_bytes > 50 * 2**20
    assert len(result.output) == 4096
    assert psutil.Process().memory_info().rss - before < 32 * 2**20


def test_a_file_over_the_size_limit_fails(add, host):
    limits = ExecutionLimits(timeout_s=5.0, max_output_bytes=64 * 1024)
    program = "with open('big', 'w') as f:\n    f.write('x' * 200_000)"
    result = run(add, after_correct_body(add, program), limits)
    assert not result.passed
    assert result.result.startswith("failed: file size limit")


def test_recursion_without_a_limit_ends_only_the_sample(add, host):
    # Python 3.11 keeps Python-to-Python calls off the C stack: frames pile up on the heap until
    # the timeout or the memory limit, whichever comes first (a C stack overflow would be SIGSEGV).
    program = "import sys\nsys.setrecursionlimit(10**9)\ndef f(n):\n    return f(n + 1)\nf(0)"
    result = run(add, after_correct_body(add, program))
    assert not result.passed
    assert result.result in ("timed out", "failed: memory limit", "failed: killed by signal SIGSEGV")


def test_secrets_in_our_environment_are_not_visible(add, host, monkeypatch):
    monkeypatch.setenv("CODEGEN_BENCH_TEST_SECRET", "hunter2")
    program = (
        "import json, os\n"
        "seen = {'env': dict(os.environ)}\n"
        "try:\n"
        "    seen['parent_env'] = open(f'/proc/{os.getppid()}/environ', 'rb').read().decode('latin-1')\n"
        "except OSError as exc:\n"
        "    seen['parent_env'] = repr(exc)\n"
        "raise AssertionError(json.dumps(seen))"
    )
    result = run(add, after_correct_body(add, program))
    assert not result.passed
    seen = json.loads(result.result.removeprefix("failed: AssertionError: "))
    assert "hunter2" not in json.dumps(seen)
    assert set(seen["env"]) == {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "LC_ALL",
        *(f"{n}_NUM_THREADS" for n in ("OMP", "OPENBLAS", "MKL")),
    }


@pytest.mark.parametrize("new_session", [False, True], ids=["same-session", "setsid"])
def test_long_lived_subprocess_is_killed(add, host, new_session):
    if new_session and not AS_ROOT:
        pytest.skip("a process that left the session is found through the sandbox user (root only)")
    spawn = (
        "    import subprocess\n"
        f"    subprocess.Popen(['sleep', '3600'], start_new_session={new_session})\n"
        "    return None\n"
    )
    result = run(add, spawn)
    assert (result.passed, result.result) == (False, "failed: AssertionError")


def test_spinning_non_daemon_thread_does_not_hold_the_sample(add, host):
    spin = (
        "    import threading\n"
        "    def spin():\n"
        "        while True:\n"
        "            pass\n"
        "    threading.Thread(target=spin).start()\n"
        "    return None\n"
    )
    started = time.monotonic()
    result = run(add, spin, ExecutionLimits(timeout_s=20.0))
    assert (result.passed, result.result) == (False, "failed: AssertionError")
    assert time.monotonic() - started < 15.0  # ended with the verdict, not by the 20 s timeout


def test_a_run_goes_on_after_every_hostile_sample(add, host):
    problems = {"HumanEval/53": add}
    hostile = [
        "    import os\n    os.killpg(0, 9)\n",
        "    while True:\n        pass\n",
        "    import os\n    os._exit(0)\n",
    ]
    samples = [{"task_id": "HumanEval/53", "completion": c} for c in [*hostile, add["canonical_solution"]]]
    results = execute_samples(samples, problems, limits=FAST, workers=2, progress=False)
    assert [r.passed for r in results] == [False, False, False, True]


@needs_root
def test_sample_runs_as_an_unprivileged_user_in_a_private_tmp(add, host):
    on_host = Path("/tmp") / f"{host.marker}-on-host"
    on_host.write_text("the host's /tmp")
    program = (
        "import json, os\n"
        "raise AssertionError(json.dumps({'uid': os.getuid(), 'groups': os.getgroups(), "
        "'cwd': os.getcwd(), 'tmp': sorted(os.listdir('/tmp')), 'home': os.environ['HOME']}))"
    )
    try:
        result = run(add, after_correct_body(add, program))
    finally:
        on_host.unlink()
    seen = json.loads(result.result.removeprefix("failed: AssertionError: "))
    assert seen["uid"] >= SANDBOX_UID_BASE and seen["groups"] == []
    assert seen["cwd"] == seen["home"] == "/tmp"
    # The private /tmp holds none of the host's files, only the folders through which site-packages
    # that live under /tmp (a checkout there) are bound back.
    bound_back = {Path(p).parts[2] for p in map(os.path.realpath, SITE_DIRS) if p.startswith("/tmp/")}
    assert set(seen["tmp"]) <= bound_back


def test_a_completion_of_megabytes_fails_without_running(add, host):
    result = run(add, "    return x + y\n" + "    # padding\n" * 300_000)
    assert not result.passed
    assert re.fullmatch(
        r"failed: program of 4,\d{3},\d{3} bytes is over the 1,048,576-byte limit "
        r"\(ExecutionLimits\.max_program_bytes\); not run",
        result.result,
    ), result.result


@needs_root
def test_a_machine_that_refuses_isolation_gets_one_warning_and_the_limits(add, monkeypatch, tmp_path, caplog):
    from codegen_bench.harness.execution import executor

    # The real fork server, except that its children cannot become the sandbox user, the way a
    # container without setuid refuses it.
    runner = tmp_path / "refusing_runner.py"
    runner.write_text(
        f"server = {{'__name__': 'refusing_runner', '__file__': {executor.RUNNER_PATH!r}}}\n"
        f"exec(compile(open({executor.RUNNER_PATH!r}).read(), 'sandbox_runner.py', 'exec'), server)\n"
        "def refuse(uid):\n"
        "    raise server['_SetupError'](f'setuid({uid}): Operation not permitted')\n"
        "server['_become'] = refuse\n"
        "server['main']()\n"
    )
    monkeypatch.setattr(executor, "RUNNER_PATH", str(runner))
    monkeypatch.setattr(executor, "FORK_SERVERS", executor._ForkServers())
    monkeypatch.setattr(executor, "ISOLATION", executor._Isolation())
    try:
        with caplog.at_level("WARNING"):
            results = [run(add, "    return x + y\n") for _ in range(2)]
    finally:
        executor.FORK_SERVERS.close()
    assert [r.passed for r in results] == [True, True]  # the program ran, without isolation
    warnings = [r.getMessage() for r in caplog.records if "sandbox setup failed" in r.getMessage()]
    assert len(warnings) == 1 and "runs as root with the limits only" in warnings[0]
