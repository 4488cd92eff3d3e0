"""The (code, reference explanation) pairs of code_explain, from HumanEval and from the stdlib.

HumanEval (164 pairs): the code is the problem's prompt with its canonical solution, the target function's
description string removed; the reference is that description with its examples removed (the rules are on
`description_without_examples`).

stdlib: the `validation` split of the explanation pairs that harness/corpus/stdlib.py extracts from the
running interpreter's standard library (code = signature + body, reference = the docstring's first
paragraph).
The `train` split is what our fine-tuning reads, so only `validation` is held out. Building takes seconds,
so the split is cached as JSONL in the codegen-bench cache, keyed by everything that determines it.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.corpus.stdlib import DataConfig, build_datasets, corpus_key, function_name
from codegen_bench.harness.execution.problems import load_humaneval
from codegen_bench.harness.files import read_jsonl, write_jsonl

STDLIB_SPLIT = "validation"
PAIR_KEYS = ("id", "name", "code", "explanation")

# A line that only announces examples: "Examples:", "For example:", "Example 2:", "for examble:" (sic,
# HumanEval/67), "[input/output] samples:" (HumanEval/127).
_EXAMPLE_HEADER = re.compile(
    r"^\s*[*-]?\s*((for\s+)?(examples?|examble)(\s+\d+)?|\[input/output\] samples)\s*:?\s*$", re.IGNORECASE
)
# Inside an example block: what example lines hold (calls, results, comments) and their labels.
_EXAMPLE_CONTENT = re.compile(r">>>|=|->|➞|#|\[|\(|\"|'|^\s*(input|output|explanation)\s*:", re.IGNORECASE)


def _description_node(function: ast.FunctionDef) -> ast.Expr:
    """The function's description string: its docstring, or (HumanEval/115) the string after `import math`."""
    for statement in function.body:
        is_string = isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant)
        if is_string and isinstance(statement.value.value, str):
            return statement
    raise ValueError(f"function {function.name} has no description string")


def _target_function(tree: ast.Module, entry_point: str) -> ast.FunctionDef:
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == entry_point:
            return node
    raise ValueError(f"no top-level function {entry_point}")


def code_without_description(problem: dict) -> str:
    """The imports, helper functions and target function of a HumanEval problem, the target's description cut.

    Helpers stay (HumanEval/10, /32, /38, /50): the target calls them, so it cannot be explained without
    them; the prompts name the function to explain. Other top-level statements go: the only one,
    HumanEval/64's `FIX = "Add more test cases."`, is a note to the benchmark's authors.
    """
    source = problem["prompt"] + problem["canonical_solution"]
    lines = source.split("\n")  # ast numbers lines by "\n" alone
    tree = ast.parse(source)
    target = _target_function(tree, problem["entry_point"])
    description = _description_node(target)
    removed = set(range(description.lineno - 1, description.end_lineno))
    parts = []
    previous_was_import = False
    for node in tree.body:
        is_import = isinstance(node, ast.Import | ast.ImportFrom)
        if not is_import and not isinstance(node, ast.FunctionDef):
            continue
        if parts:
            parts.append("\n" if is_import and previous_was_import else "\n\n\n")
        first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
        kept = [lines[i] for i in range(first, node.end_lineno) if node is not target or i not in removed]
        parts.append("\n".join(kept))
        previous_was_import = is_import
    return "".join(parts) + "\n"


def description_without_examples(docstring: str, entry_point: str) -> str:
    """The description of a HumanEval docstring, its examples removed, on one line.

    Removed: doctests (a `>>>` line and its expected output, up to a blank line or the next `>>>`);
    example blocks, from a header line (`_EXAMPLE_HEADER`) or a line that starts with a call of the function
    (HumanEval/90, /154) through the lines that look like examples (calls, results, `#` comments,
    Input/Output/Explanation labels, or lines indented deeper than the block's first line); a line ending
    in ":" whose content was removed ("It must be implemented like this:"). An example block ends at the
    first line of prose, kept: "Note:", "Constraints:", "Variables:" or a sentence (HumanEval/110, /130).
    Call lines right under a line ending in ":" are kept: they define the function (the recurrences of
    HumanEval/46, /63, /130), they are not examples of it.
    """
    call = re.compile(rf"^\s*([*-]\s*|assert\s+|for\s+)?{re.escape(entry_point)}\s*\(")
    kept: list[tuple[str, bool]] = []  # (line, kept?) in order, so dangling "...:" lines can be found
    in_example = in_doctest_output = introduced = False
    block_indent = 0
    for line in docstring.split("\n"):
        indent = len(line) - len(line.lstrip())
        if not line.strip():
            in_doctest_output = introduced = False
            continue
        if line.lstrip().startswith(">>>"):
            in_example = in_doctest_output = True
            block_indent = indent
        elif in_doctest_output:
            pass  # expected output of the doctest above
        elif _EXAMPLE_HEADER.match(line) or (call.match(line) and not introduced and not in_example):
            in_example = True
            block_indent = indent
        elif in_example and (indent > block_indent or _EXAMPLE_CONTENT.search(line)):
            pass
        else:
            in_example = False
            introduced = line.rstrip().endswith(":") or (introduced and bool(call.match(line)))
            kept.append((line, True))
            continue
        kept.append((line, False))
    lines = [
        line
        for i, (line, keep) in enumerate(kept)
        if keep and not (line.rstrip().endswith(":") and i + 1 < len(kept) and not kept[i + 1][1])
    ]
    text = " ".join(" ".join(lines).split())
    # HumanEval/68 and /142 open their docstring with a stray quote character.
    if text.startswith('"') and text.count('"') % 2 == 1:
        text = text[1:].lstrip()
    return text


def humaneval_pairs() -> list[dict]:
    """The 164 HumanEval pairs, in task order."""
    pairs = []
    for problem in load_humaneval().values():
        target = _target_function(ast.parse(problem["prompt"]), problem["entry_point"])
        docstring = _description_node(target).value.value
        pairs.append(
            {
                "id": problem["task_id"],
                "name": problem["entry_point"],
                "code": code_without_description(problem),
                "explanation": description_without_examples(docstring, problem["entry_point"]),
            }
        )
    return pairs


def stdlib_cache_path(config: DataConfig) -> Path:
    """Where the held-out split for `config` is cached (keyed like the corpus it comes from)."""
    return cache_dir() / "code_explain" / f"stdlib-{STDLIB_SPLIT}-{corpus_key(config)}.jsonl"


def stdlib_pairs(config: DataConfig | None = None) -> list[dict]:
    """The held-out stdlib explanation pairs, built once per key and then read from the cache."""
    config = config or DataConfig()
    path = stdlib_cache_path(config)
    if path.is_file():
        return read_jsonl(path, required_keys=PAIR_KEYS, what="code_explain stdlib cache")
    _, explain, _ = build_datasets(config)
    pairs = [
        {**record, "name": function_name(record["id"])}
        for record in explain
        if record["split"] == STDLIB_SPLIT
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, pairs)
    return pairs
