"""Offline training data built from the installed Python standard library's own source.

Two kinds of pairs come from every top-level function and method that has a docstring:

* code generation: ``prompt`` = signature + docstring (a HumanEval-style prompt), ``completion`` = the body;
* code explanation: ``code`` = signature + body (docstring removed), ``explanation`` = the docstring's
  first paragraph.

The stdlib is the corpus because it ships with every Python, needs no download and has a known licence
(PSF). The build is deterministic (sorted files, source order, a hash-based split), deduplicated, and
decontaminated against HumanEval so that training on it cannot leak the benchmark we measure with.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import inspect
import io
import json
import os
import sys
import sysconfig
import tokenize
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.files import json_digest, read_jsonl, write_jsonl, write_text_atomic

SPLITS = ("train", "validation")
CODEGEN_FILE = "codegen.jsonl"
EXPLAIN_FILE = "explain.jsonl"
PROVENANCE_FILE = "provenance.json"

# Tests, the IDE, the 2to3 fixers (Python 2 grammar), demos and bundled wheels are not the library itself,
# and `test` alone is several times the size of the rest.
DEFAULT_EXCLUDED_DIRS = (
    "site-packages",
    "test",
    "tests",
    "idlelib",
    "lib2to3",
    "turtledemo",
    "ensurepip",
    "__pycache__",
)
# How many dropped ids provenance lists per decontamination rule: enough to audit, small enough to read.
AUDIT_EXAMPLES = 5

# Tokens that carry layout or commentary rather than code; the similarity keys ignore them.
_LAYOUT_TOKENS = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER})
_STRUCTURE_TOKENS = frozenset({tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT})


@dataclass(frozen=True)
class DataConfig:
    """What `build_datasets` reads and which filters it applies; recorded in provenance.json.

    `stdlib_dir` None means the running interpreter's stdlib (``sysconfig.get_paths()["stdlib"]``).
    `limit` reads only the first `limit` .py files in sorted order (for quick checks), None reads all.
    """

    stdlib_dir: Path | None = None
    max_body_lines: int = 60
    min_explanation_words: int = 5
    validation_fraction: float = 0.1
    near_duplicate_threshold: float = 0.8
    limit: int | None = None
    excluded_dirs: tuple[str, ...] = DEFAULT_EXCLUDED_DIRS

    def __post_init__(self) -> None:
        if self.max_body_lines < 1:
            raise CodegenBenchError(f"max_body_lines={self.max_body_lines} must be >= 1: pass e.g. 60")
        if self.min_explanation_words < 0:
            raise CodegenBenchError(
                f"min_explanation_words={self.min_explanation_words} must be >= 0: pass e.g. 5"
            )
        if not 0.0 <= self.validation_fraction < 1.0:
            raise CodegenBenchError(
                f"validation_fraction={self.validation_fraction} must be in [0, 1): pass e.g. 0.1"
            )
        if not 0.0 < self.near_duplicate_threshold <= 1.0:
            raise CodegenBenchError(
                f"near_duplicate_threshold={self.near_duplicate_threshold} must be in (0, 1]: pass e.g. 0.8"
            )
        if self.limit is not None and self.limit < 1:
            raise CodegenBenchError(f"limit={self.limit} must be >= 1: pass a file count or None for all")


@dataclass
class _Function:
    """One documented function as found in the source, before filtering."""

    id: str
    base_id: str  # module:qualname without the collision suffix; the split hashes this
    name: str
    source_file: str
    line: int
    prompt: str
    completion: str
    code: str
    explanation: str
    body_lines: int
    trivial_body: bool
    layout_ok: bool


def default_stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def assign_split(qualified_id: str, validation_fraction: float) -> str:
    """ "train" or "validation", from a stable hash of the id (not `hash()`, which is salted per process).

    Hashing the name rather than shuffling keeps a function in the same split when other files change.
    """
    bucket = int.from_bytes(hashlib.sha256(qualified_id.encode("utf-8")).digest()[:8], "big") / 2**64
    return "validation" if bucket < validation_fraction else "train"


def _python_files(stdlib_dir: Path, excluded_dirs: tuple[str, ...]) -> list[str]:
    """Relative posix paths of the .py files under `stdlib_dir`, sorted so the build order is fixed."""
    excluded = set(excluded_dirs)
    found = []
    for root, dirs, files in os.walk(stdlib_dir):
        dirs[:] = [d for d in dirs if d not in excluded]
        rel_root = Path(root).relative_to(stdlib_dir)
        found.extend((rel_root / f).as_posix() for f in files if f.endswith(".py"))
    return sorted(found)


def _module_name(rel_path: str) -> str:
    parts = rel_path.removesuffix(".py").split("/")
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _dedent(lines: list[str], width: int) -> str:
    """Remove up to `width` leading blanks per line.

    Not `textwrap.dedent`: docstring continuation lines may be indented less than the def, and those must
    not hold the rest of the function back from column 0.
    """
    out = []
    for line in lines:
        blanks = len(line) - len(line.lstrip(" \t"))
        out.append(line[min(blanks, width) :])
    return "".join(out)


def _is_trivial(stmt: ast.stmt) -> bool:
    """`pass`, `...` or `raise NotImplementedError[(...)]`: a stub, nothing to learn from."""
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
        return True
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def first_paragraph(docstring: str) -> str:
    """The docstring's first paragraph (up to the first blank line) on one line, whitespace collapsed."""
    paragraph = []
    for line in inspect.cleandoc(docstring).split("\n"):
        if not line.strip():
            break
        paragraph.append(line)
    return " ".join(" ".join(paragraph).split())


def _function_record(
    node: ast.FunctionDef | ast.AsyncFunctionDef, qualname: str, module: str, rel_path: str, lines: list[str]
) -> _Function:
    doc = node.body[0]
    width = node.col_offset
    head = lines[node.lineno - 1 : doc.end_lineno]
    body = lines[doc.end_lineno : node.end_lineno]
    # col_offset is in UTF-8 bytes; compare bytes so a non-ASCII signature cannot shift the check.
    before_doc = lines[doc.lineno - 1].encode("utf-8")[: doc.col_offset].decode("utf-8", "ignore")
    # A docstring on the def's own line, or a statement after it on the docstring's last line, cannot be
    # split into prompt/completion (or code without docstring) along line boundaries.
    layout_ok = not before_doc.strip() and (len(node.body) == 1 or node.body[1].lineno > doc.end_lineno)
    signature = lines[node.lineno - 1 : doc.lineno - 1]
    base_id = f"{module}:{qualname}"
    return _Function(
        id=base_id,
        base_id=base_id,
        name=node.name,
        source_file=rel_path,
        line=node.lineno,
        prompt=_dedent(head, width),
        completion=_dedent(body, width),
        code=_dedent(signature + body, width),
        explanation=first_paragraph(ast.get_docstring(node, clean=False) or ""),
        body_lines=len(body),
        trivial_body=all(_is_trivial(stmt) for stmt in node.body[1:]),
        layout_ok=layout_ok,
    )


def _documented_functions(tree: ast.Module, module: str, rel_path: str, source: str) -> list[_Function]:
    """Module-level functions and methods (of classes at any class depth), in source order.

    Functions nested in functions are closures over local state and rarely stand alone, so they are left out.
    """
    lines = [line + "\n" for line in source.split("\n")]  # ast counts lines by "\n" only (not \f etc.)
    found: list[_Function] = []
    seen: dict[str, int] = {}

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and ast.get_docstring(node):
                record = _function_record(node, prefix + node.name, module, rel_path, lines)
                # Property setters and the like reuse a qualname; number the repeats so ids stay unique.
                seen[record.base_id] = seen.get(record.base_id, 0) + 1
                if seen[record.base_id] > 1:
                    record.id = f"{record.base_id}#{seen[record.base_id]}"
                found.append(record)

    visit(tree.body, "")
    return found


def _tokens(code: str) -> list[tokenize.TokenInfo]:
    """Python tokens of `code`, or as many as tokenize reads before an error (a prefix is still a key)."""
    out: list[tokenize.TokenInfo] = []
    with contextlib.suppress(tokenize.TokenError, SyntaxError):
        for tok in tokenize.generate_tokens(io.StringIO(code).readline):
            out.append(tok)  # one at a time, so the tokens read before an error are kept
    return out


def _token_set(code: str) -> frozenset[str]:
    skip = _LAYOUT_TOKENS | _STRUCTURE_TOKENS
    return frozenset(tok.string for tok in _tokens(code) if tok.type not in skip)


def _normalised_body(code: str) -> str:
    """The body's tokens without comments and blank lines; block structure kept so `if a: b; c` differs."""
    parts = []
    for tok in _tokens(code):
        if tok.type in _LAYOUT_TOKENS:
            continue
        parts.append(tokenize.tok_name[tok.type] if tok.type in _STRUCTURE_TOKENS else tok.string)
    return " ".join(parts)


def _first_match(
    tokens: frozenset[str], solutions: list[tuple[str, frozenset[str]]], threshold: float
) -> tuple[str, float] | None:
    """(task_id, score) of the first solution, in task order, with token-set Jaccard >= threshold, or None.

    Token-set Jaccard rather than difflib: it is linear in the token count, and since
    J(A, B) <= min(|A|, |B|) / max(|A|, |B|), a size check skips most of the 164 solutions without
    computing a set union; difflib's ratio is quadratic per pair and ~20k bodies x 164 solutions would
    take minutes. It ignores whitespace, comments and statement order, which are exactly the edits a copied
    solution survives. Its cost is false positives on short bodies with shared vocabulary; those only
    drop training data, never leak benchmark data.
    """
    if not tokens:
        return None
    for task_id, solution in solutions:
        small, large = sorted((len(tokens), len(solution)))
        if small < threshold * large:
            continue
        score = len(tokens & solution) / len(tokens | solution)
        if score >= threshold:
            return task_id, score
    return None


def _read_functions(stdlib_dir: Path, rel_paths: list[str]) -> tuple[list[_Function], list[dict]]:
    functions: list[_Function] = []
    failures: list[dict] = []
    for rel_path in rel_paths:
        try:
            # tokenize.open honours PEP 263 coding cookies and normalises newlines to "\n".
            with tokenize.open(stdlib_dir / rel_path) as f:
                source = f.read()
            with warnings.catch_warnings():
                # Invalid escapes in old modules warn at parse time; they are not ours to report.
                warnings.simplefilter("ignore", SyntaxWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                tree = ast.parse(source, filename=rel_path)
        except (OSError, SyntaxError, ValueError) as exc:
            # Recorded in provenance (not silent): the brief is to skip what does not parse.
            failures.append({"file": rel_path, "error": f"{type(exc).__name__}: {exc}"})
            continue
        functions.extend(_documented_functions(tree, _module_name(rel_path), rel_path, source))
    return functions, failures


@dataclass
class _Decontamination:
    """What the HumanEval filters dropped, kept for provenance's audit."""

    entry_point_ids: list[str] = field(default_factory=list)
    near_duplicates: list[dict] = field(default_factory=list)


def _stage(name: str, before: int, after: int) -> dict:
    return {"filter": name, "before": before, "dropped": before - after, "after": after}


def _resolved_stdlib_dir(config: DataConfig) -> Path:
    stdlib_dir = Path(config.stdlib_dir) if config.stdlib_dir is not None else default_stdlib_dir()
    if not stdlib_dir.is_dir():
        raise CodegenBenchError(
            f"stdlib_dir={stdlib_dir} is not a directory: pass a folder of .py files or None for this "
            "interpreter's stdlib"
        )
    return stdlib_dir


def _filtered(
    functions: list[_Function], config: DataConfig, problems: dict[str, dict]
) -> tuple[list[_Function], list[dict], _Decontamination]:
    """The functions every filter keeps, in source order; each filter's counts; what the HumanEval
    filters dropped."""
    entry_points = {p["entry_point"] for p in problems.values()}
    solutions = [(tid, _token_set(p["canonical_solution"])) for tid, p in sorted(problems.items())]
    dropped = _Decontamination()
    seen_bodies: set[str] = set()

    def not_near_duplicate(fn: _Function) -> bool:
        match = _first_match(_token_set(fn.completion), solutions, config.near_duplicate_threshold)
        if match is not None:
            dropped.near_duplicates.append({"id": fn.id, "task_id": match[0], "jaccard": round(match[1], 3)})
        return match is None

    def not_entry_point(fn: _Function) -> bool:
        if fn.name in entry_points:
            dropped.entry_point_ids.append(fn.id)
        return fn.name not in entry_points

    def first_of_body(fn: _Function) -> bool:
        key = _normalised_body(fn.completion)
        if key in seen_bodies:
            return False
        seen_bodies.add(key)
        return True

    stages: list[dict] = []
    kept = functions
    for name, predicate in (
        ("layout_splittable", lambda fn: fn.layout_ok),
        ("non_trivial_body", lambda fn: not fn.trivial_body),
        ("max_body_lines", lambda fn: fn.body_lines <= config.max_body_lines),
        ("humaneval_entry_point", not_entry_point),
        ("humaneval_near_duplicate", not_near_duplicate),
        ("exact_duplicate_body", first_of_body),
    ):
        before = len(kept)
        kept = [fn for fn in kept if predicate(fn)]
        stages.append(_stage(name, before, len(kept)))
    return kept, stages, dropped


def _pairs(kept: list[_Function], config: DataConfig) -> tuple[list[dict], list[dict]]:
    """(codegen pairs, explanation pairs) of the kept functions, each with its split."""
    codegen = []
    explain = []
    for fn in kept:
        split = assign_split(fn.base_id, config.validation_fraction)
        common = {"id": fn.id, "source_file": fn.source_file, "line": fn.line, "split": split}
        codegen.append({**common, "prompt": fn.prompt, "completion": fn.completion})
        if len(fn.explanation.split()) >= config.min_explanation_words:
            explain.append({**common, "code": fn.code, "explanation": fn.explanation})
    return codegen, explain


def _decontamination_record(config: DataConfig, problems: dict[str, dict], dropped: _Decontamination) -> dict:
    return {
        "humaneval_problems": len(problems),
        "method": (
            "drop if function name is a HumanEval entry_point, or if the token-set Jaccard of its body "
            f"with any canonical_solution is >= {config.near_duplicate_threshold}"
        ),
        "dropped_total": len(dropped.entry_point_ids) + len(dropped.near_duplicates),
        "dropped_entry_point": len(dropped.entry_point_ids),
        "dropped_near_duplicate": len(dropped.near_duplicates),
        "example_entry_point_ids": dropped.entry_point_ids[:AUDIT_EXAMPLES],
        "example_near_duplicates": dropped.near_duplicates[:AUDIT_EXAMPLES],
    }


def build_datasets(config: DataConfig) -> tuple[list[dict], list[dict], dict]:
    """(codegen pairs, explanation pairs, provenance). Same Python install + config -> identical output.

    The steps: list the stdlib's .py files, read their documented functions, filter them (layout,
    stubs, length, HumanEval decontamination, duplicates), then make the pairs of each split.
    """
    stdlib_dir = _resolved_stdlib_dir(config)
    all_files = _python_files(stdlib_dir, config.excluded_dirs)
    rel_paths = all_files if config.limit is None else all_files[: config.limit]
    functions, failures = _read_functions(stdlib_dir, rel_paths)
    problems = load_humaneval()
    kept, stages, dropped = _filtered(functions, config, problems)
    codegen, explain = _pairs(kept, config)
    stages.append(_stage("min_explanation_words (explain only)", len(kept), len(explain)))
    provenance = {
        "python_version": sys.version,
        "python_implementation": sys.implementation.name,
        "stdlib_dir": str(stdlib_dir),
        "config": {
            **dataclasses.asdict(config),
            "stdlib_dir": str(config.stdlib_dir) if config.stdlib_dir is not None else None,
            "excluded_dirs": list(config.excluded_dirs),
        },
        "files": {"found": len(all_files), "read": len(rel_paths), "parse_failures": failures},
        "documented_functions": len(functions),
        "filters": stages,
        "decontamination": _decontamination_record(config, problems, dropped),
        "pairs": {
            "codegen": {s: sum(r["split"] == s for r in codegen) for s in SPLITS},
            "explain": {s: sum(r["split"] == s for r in explain) for s in SPLITS},
        },
    }
    return codegen, explain, provenance


def write_datasets(out_dir: Path, config: DataConfig) -> dict[str, Path]:
    """Build, then write codegen.jsonl, explain.jsonl and provenance.json into `out_dir`; their paths."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CodegenBenchError(
            f"out_dir={out_dir} could not be created ({exc}): pass a writable folder"
        ) from exc
    codegen, explain, provenance = build_datasets(config)
    paths = {
        "codegen": out_dir / CODEGEN_FILE,
        "explain": out_dir / EXPLAIN_FILE,
        "provenance": out_dir / PROVENANCE_FILE,
    }
    write_jsonl(paths["codegen"], codegen)
    write_jsonl(paths["explain"], explain)
    write_text_atomic(paths["provenance"], json.dumps(provenance, indent=2, sort_keys=True) + "\n")
    return paths


def corpus_key(config: DataConfig) -> str:
    """What decides the corpus, as a short hash: the Python build (its stdlib is the corpus), the
    stdlib folder, the config, and this extractor's source, so an edit here cannot leave a stale
    cached corpus in use."""
    key = {
        "python": sys.version,
        "stdlib_dir": str(config.stdlib_dir or default_stdlib_dir()),
        "config": dataclasses.asdict(config),
        "extractor_sha256": hashlib.sha256(Path(__file__).read_bytes()).hexdigest(),
    }
    digest = json_digest(key, 16)
    return f"py{sys.version_info.major}{sys.version_info.minor}-{digest}"


def cached_datasets(config: DataConfig | None = None) -> Path:
    """The folder of the corpus for `config` (codegen.jsonl, explain.jsonl, provenance.json) in the
    codegen-bench cache, built there on first use."""
    config = config or DataConfig()
    folder = cache_dir() / "stdlib-corpus" / corpus_key(config)
    if not (folder / PROVENANCE_FILE).is_file():  # written last
        write_datasets(folder, config)
    return folder


def load_pairs(path: str | Path, split: str | None = None) -> list[dict]:
    """The records of a codegen.jsonl or explain.jsonl, optionally only those of one split.

    Read with the project's JSONL reader, so a missing file, a malformed line or a record without a
    string `id` and `split` fails with the file and line named.
    """
    if split is not None and split not in SPLITS:
        raise CodegenBenchError(f"split={split!r} is not a split: pass one of {', '.join(SPLITS)} or None")
    records = read_jsonl(path, required_keys=("id", "split"), what="pairs file")
    return [r for r in records if split is None or r["split"] == split]


def function_name(record_id: str) -> str:
    """The function's own name from a record id (`module:Class.name#2` -> `Class.name`), as the
    explanation prompts name it; an id of another form is returned as it is."""
    return record_id.split(":", 1)[-1].split("#", 1)[0]
