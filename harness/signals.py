"""SIGTERM handled as Ctrl-C: `kill`, `docker stop` or a batch scheduler's time limit then runs the
same cleanup (finished results flushed, temporary folders removed, sandboxes killed) and leaves the
same resumable state as an interrupt from the keyboard.

Only in this process, not in the children it forks. A multiprocessing pool (lm-eval bootstraps
BLEU/chrF stderr with one) stops its workers with SIGTERM and waits for them; a worker that inherited
our handler could miss that signal: one arriving before the child's interpreter has finished its
after-fork setup trips the handler's flag, which that setup then clears, and the worker blocks for
good on a queue lock the pool holds (seen as a hung `make gate`). So SIGTERM is blocked across
fork() and, in the child, set back to the default (die) before it is unblocked: a SIGTERM sent at any
moment then ends the worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

_fork_hooks_installed = False


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def sigterm_raises_keyboard_interrupt() -> None:
    global _fork_hooks_installed
    # Signal handlers can only be installed from the main thread (a library caller may be elsewhere).
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _interrupt)
    if not _fork_hooks_installed:
        os.register_at_fork(
            before=_block_sigterm, after_in_parent=_unblock_sigterm, after_in_child=_default_sigterm
        )
        _fork_hooks_installed = True


def _block_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def _unblock_sigterm() -> None:
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _default_sigterm() -> None:
    # In the child the forking thread is the main thread; suppress in case an interpreter disagrees.
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _unblock_sigterm()  # a SIGTERM that came during the fork is delivered now, and ends the child
