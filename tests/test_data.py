"""Stdlib-derived training data: prompt/completion shape, determinism, decontamination, split, loading.

Most tests build from a small synthetic "stdlib" folder so they run in about a second; one reads the
first files of the real stdlib to check determinism on real source.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from pathlib import Path

import pytest

from codegen_bench.harness.corpus.stdlib import (
    DataConfig,
    assign_split,
    build_datasets,
    load_pairs,
    write_datasets,
)
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.problems import load_humaneval

GREETER = '''
class Greeter:
    @staticmethod
    def greet(name: str,
              punctuation: str = "!") -> str:
        """Greet someone by their name.

        Uses the given punctuation.
        """
        # Build the greeting.
        return f"Hello, {name}{punctuation}"
'''

DESCRIBE = '''
def describe(value):
    """Return a   readable
    description of the value.

    Second paragraph is ignored.
    """
    return repr(value)
'''

# HumanEval/0's canonical solution with one variable renamed and a comment added: a near-duplicate.
PLANTED_NEAR_DUPLICATE = '''
def pairs_closer_than(numbers, threshold):
    """Check whether any two numbers in the list are closer than the threshold."""
    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                # only the name of the distance differs from the benchmark's solution
                dist = abs(elem - elem2)
                if dist < threshold:
                    return True

    return False
'''

# `add` is a HumanEval entry point; the body is deliberately unlike HumanEval's `return x + y`.
ENTRY_POINT_NAMED = '''
def add(left, right):
    """Add two operands through the operator module, for symmetry."""
    import operator
    return operator.add(left, right)
'''

STUBS = '''
def abstract(self):
    """Subclasses must implement this one themselves."""
    raise NotImplementedError("subclass")


def ellipsis():
    """A placeholder body that does nothing at all."""
    ...
'''


def make_stdlib(root: Path, files: dict[str, str]) -> Path:
    for rel_path, text in files.items():
        path = root / rel_path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
    return root


def build(root: Path, **overrides) -> tuple[list[dict], list[dict], dict]:
    return build_datasets(DataConfig(stdlib_dir=root, **overrides))


def test_prompt_is_signature_and_docstring_at_column_zero_without_decorators(tmp_path):
    codegen, _, _ = build(make_stdlib(tmp_path, {"greeting.py": GREETER}))
    assert [(r["id"], r["source_file"]) for r in codegen] == [("greeting:Greeter.greet", "greeting.py")]
    assert codegen[0]["prompt"] == (
        'def greet(name: str,\n          punctuation: str = "!") -> str:\n'
        '    """Greet someone by their name.\n\n    Uses the given punctuation.\n    """\n'
    )
    assert codegen[0]["completion"] == '    # Build the greeting.\n    return f"Hello, {name}{punctuation}"\n'


def test_prompt_plus_completion_parses_as_the_same_function(tmp_path):
    codegen, _, _ = build(make_stdlib(tmp_path, {"greeting.py": GREETER, "describe.py": DESCRIBE}))
    for record in codegen:
        tree = ast.parse(record["prompt"] + record["completion"])
        assert [type(node) for node in tree.body] == [ast.FunctionDef]
        assert tree.body[0].name == record["id"].split(":")[1].split(".")[-1]


def test_explain_code_is_the_function_without_its_docstring(tmp_path):
    _, explain, _ = build(make_stdlib(tmp_path, {"greeting.py": GREETER}))
    assert explain[0]["code"] == (
        'def greet(name: str,\n          punctuation: str = "!") -> str:\n'
        '    # Build the greeting.\n    return f"Hello, {name}{punctuation}"\n'
    )


def test_explanation_is_first_docstring_paragraph_with_whitespace_collapsed(tmp_path):
    _, explain, _ = build(make_stdlib(tmp_path, {"describe.py": DESCRIBE}))
    assert [r["explanation"] for r in explain] == ["Return a readable description of the value."]


def test_short_explanation_keeps_codegen_pair_but_drops_explain_pair(tmp_path):
    codegen, explain, _ = build(make_stdlib(tmp_path, {"describe.py": DESCRIBE}), min_explanation_words=8)
    assert ([r["id"] for r in codegen], explain) == (["describe:describe"], [])


def test_stub_bodies_are_skipped(tmp_path):
    codegen, _, provenance = build(make_stdlib(tmp_path, {"stubs.py": STUBS, "describe.py": DESCRIBE}))
    assert [r["id"] for r in codegen] == ["describe:describe"]
    assert provenance["filters"][1] == {"filter": "non_trivial_body", "before": 3, "dropped": 2, "after": 1}


def test_bodies_longer_than_the_bound_are_skipped(tmp_path):
    codegen, _, _ = build(make_stdlib(tmp_path, {"greeting.py": GREETER}), max_body_lines=1)
    assert codegen == []


def test_exact_duplicate_bodies_are_kept_once(tmp_path):
    twin = DESCRIBE.replace("def describe", "def describe_again").replace(
        "    return repr(value)", "    # spacing and comments do not count\n    return  repr( value )"
    )
    files = {"a.py": DESCRIBE, "b.py": twin}
    codegen, _, _ = build(make_stdlib(tmp_path, files))
    assert [r["id"] for r in codegen] == ["a:describe"]


def test_no_humaneval_entry_point_names_in_output(tmp_path):
    entry_points = {p["entry_point"] for p in load_humaneval().values()}
    codegen, explain, provenance = build(make_stdlib(tmp_path, {"ops.py": ENTRY_POINT_NAMED + DESCRIBE}))
    names = {re.split(r"[:.]", r["id"])[-1] for r in codegen + explain}
    assert names == {"describe"}
    assert not names & entry_points
    assert provenance["decontamination"]["example_entry_point_ids"] == ["ops:add"]


def test_planted_near_duplicate_of_a_canonical_solution_is_removed(tmp_path):
    codegen, _, provenance = build(make_stdlib(tmp_path, {"planted.py": PLANTED_NEAR_DUPLICATE + DESCRIBE}))
    assert [r["id"] for r in codegen] == ["planted:describe"]
    decontamination = provenance["decontamination"]
    assert decontamination["dropped_near_duplicate"] == 1
    assert decontamination["example_near_duplicates"][0]["id"] == "planted:pairs_closer_than"
    assert decontamination["example_near_duplicates"][0]["task_id"] == "HumanEval/0"


def test_split_fraction_is_close_to_the_requested_one():
    splits = [assign_split(f"mod{i}:func{i}", 0.25) for i in range(4000)]
    assert 0.22 < splits.count("validation") / len(splits) < 0.28


def test_split_of_a_function_does_not_change_when_other_files_are_added(tmp_path):
    first, _, _ = build(make_stdlib(tmp_path / "a", {"m.py": DESCRIBE}), validation_fraction=0.5)
    more = {"m.py": DESCRIBE, "aaa.py": GREETER, "zzz.py": ENTRY_POINT_NAMED}
    second, _, _ = build(make_stdlib(tmp_path / "b", more), validation_fraction=0.5)
    assert [(r["id"], r["split"]) for r in first] == [("m:describe", assign_split("m:describe", 0.5))]
    assert {r["id"]: r["split"] for r in second}["m:describe"] == first[0]["split"]


def test_unparsable_and_excluded_files_are_skipped(tmp_path):
    files = {"ok.py": DESCRIBE, "broken.py": "def oops(:\n", "test/test_ok.py": GREETER}
    codegen, _, provenance = build(make_stdlib(tmp_path, files))
    assert [r["id"] for r in codegen] == ["ok:describe"]
    assert provenance["files"]["found"] == 2
    assert [f["file"] for f in provenance["files"]["parse_failures"]] == ["broken.py"]


def test_real_stdlib_build_is_byte_identical_across_runs(tmp_path):
    config = DataConfig(limit=12)
    first = write_datasets(tmp_path / "one", config)
    second = write_datasets(tmp_path / "two", config)
    assert sorted(first) == ["codegen", "explain", "provenance"]
    assert load_pairs(first["codegen"])  # the first stdlib files do yield pairs
    for kind, path in first.items():
        assert path.read_bytes() == second[kind].read_bytes(), kind


def test_load_pairs_keeps_only_the_requested_split(tmp_path):
    path = tmp_path / "codegen.jsonl"
    lines = [{"id": "m:f", "split": "train"}, {"id": "m:g", "split": "validation"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert [r["id"] for r in load_pairs(path, split="validation")] == ["m:g"]


def test_load_pairs_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "codegen.jsonl"
    path.write_text(json.dumps({"id": "m:f", "split": "train"}) + "\n" + '{"id": "m:g", "split": \n')
    with pytest.raises(CodegenBenchError, match=re.escape(f"{path}, line 2: malformed JSON")):
        load_pairs(path)


def test_load_pairs_missing_file_names_the_file(tmp_path):
    path = tmp_path / "nope.jsonl"
    with pytest.raises(CodegenBenchError, match=re.escape(f"pairs file {path} does not exist")):
        load_pairs(path)


def test_config_rejects_validation_fraction_of_one():
    with pytest.raises(CodegenBenchError, match=r"validation_fraction=1\.0 must be in \[0, 1\)"):
        DataConfig(validation_fraction=1.0)
