"""An append-only JSONL file of finished work, safe against crashes: the matrix's cells, the
executor's verdicts while a samples file runs."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)


class RecordStore:
    """An append-only JSONL file of finished records. Each record is written with one `write` and
    fsynced; a line left incomplete by a crash is skipped when reading (and the next record starts
    on a fresh line), so earlier records are never lost or corrupted."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        records = []
        for number, line in enumerate(self.path.read_text(errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s line %d is incomplete (an interrupted write): ignored", self.path, number)
        return records

    def latest(self) -> dict[tuple[str, str], dict]:
        """The newest record of each (variant, task) cell."""
        return {(r["variant"], r["task"]): r for r in self.read()}

    def append(self, record: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, sort_keys=True) + "\n"
        with open(self.path, "ab+") as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b"\n":
                    line = "\n" + line  # after a torn line
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
