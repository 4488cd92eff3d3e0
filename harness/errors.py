"""The project's one exception type: what input was wrong and how to fix it."""

from __future__ import annotations


class CodegenBenchError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits non-zero.

    The message names the input that was wrong and the fix, e.g.
    ``pretrained='/no/such/dir' does not exist: pass a local transformers folder or a hub id``.
    """
