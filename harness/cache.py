"""Where codegen-bench keeps what it builds once and reuses: the converted default model, variant
artifacts, derived datasets. One folder, movable with an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "CODEGEN_BENCH_CACHE"


def cache_dir() -> Path:
    """$CODEGEN_BENCH_CACHE, else $XDG_CACHE_HOME/codegen-bench, else ~/.cache/codegen-bench."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "codegen-bench"
