"""SIGTERM handled as Ctrl-C: `kill`, `docker stop` or a batch scheduler's time limit then runs the
same cleanup (finished results flushed, temporary folders removed, sandboxes killed) and leaves the
same resumable state as an interrupt from the keyboard."""

from __future__ import annotations

import signal
import threading


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


def sigterm_raises_keyboard_interrupt() -> None:
    # Signal handlers can only be installed from the main thread (a library caller may be elsewhere).
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
