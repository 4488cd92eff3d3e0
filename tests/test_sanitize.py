from __future__ import annotations

from codegen_bench.harness.execution.sanitize import sanitize_completion


def test_plain_completion_is_unchanged():
    body = "    return a + b\n"
    assert sanitize_completion(body) == body


def test_text_after_the_closing_fence_is_dropped():
    # The chat prompt opened the fence; the model closes it and explains.
    assert sanitize_completion("    return a + b\n```\n\nThis adds.") == "    return a + b\n"


def test_code_inside_a_fence_the_answer_opened_is_kept():
    text = "```python\ndef add(a, b):\n    return a + b\n```\nExplanation"
    assert sanitize_completion(text) == "def add(a, b):\n    return a + b\n"


def test_unclosed_fence_keeps_everything_after_it():
    assert sanitize_completion("```python\ndef f():\n    return 1") == "def f():\n    return 1"


def test_first_fence_line_ends_a_continued_body():
    # The answer did not open a fence, so the prompt's fence is still open: any fence line ends it.
    assert sanitize_completion("    return 1\n```python\nx = 2") == "    return 1\n"
