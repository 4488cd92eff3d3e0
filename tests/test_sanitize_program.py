"""extract_program: evalplus's sanitizer, the published protocol's step from an answer to a program."""

from __future__ import annotations

from codegen_bench.harness.execution.sanitize import extract_program, longest_python_block

ANSWER = """Here is the solution:

```python
import math
from typing import List


def helper(x):
    return math.sqrt(x)


def unused():
    return 0


def mean_root(values: List[float]) -> float:
    return sum(helper(v) for v in values) / len(values)


assert mean_root([4.0]) == 2.0
print(mean_root([1.0, 4.0]))
```

It uses a helper.
"""


def test_entry_point_keeps_its_imports_and_helpers_and_drops_the_rest():
    program = extract_program(ANSWER, "mean_root")
    assert program == (
        "import math\n"
        "from typing import List\n"
        "def helper(x):\n    return math.sqrt(x)\n"
        "def mean_root(values: List[float]) -> float:\n"
        "    return sum(helper(v) for v in values) / len(values)"
    )


def test_a_helper_defined_after_the_entry_point_is_kept():
    text = "def f(x):\n    return g(x) + 1\n\ndef g(x):\n    return 2 * x\n"
    assert extract_program(text, "f") == "def f(x):\n    return g(x) + 1\ndef g(x):\n    return 2 * x"


def test_module_constants_the_function_reads_are_kept():
    text = "LIMIT = 10\nOTHER = 3\n\ndef f(x):\n    return min(x, LIMIT)\n"
    assert extract_program(text, "f") == "LIMIT = 10\ndef f(x):\n    return min(x, LIMIT)"


def test_a_function_without_a_return_is_left_out_as_in_evalplus():
    text = "def f(x):\n    print(x)\n"
    # Nothing is left, so the parseable code is returned unchanged: the tests then fail on it.
    assert extract_program(text, "f") == "def f(x):\n    print(x)"


def test_the_first_definition_of_a_name_wins():
    text = "def f():\n    return 1\n\ndef f():\n    return 2\n"
    assert extract_program(text, "f") == "def f():\n    return 1"


def test_the_longest_parseable_block_is_the_code():
    text = "Sure!\n\ndef f():\n    return 1\n\nThis returns one.\n"
    # The first of the equally long runs: a blank line adds nothing.
    assert longest_python_block(text) == "\ndef f():\n    return 1"
    assert extract_program(text, "f") == "def f():\n    return 1"


def test_a_continued_body_is_reduced_with_its_prompt():
    prompt = 'def f(x):\n    """Double."""\n'
    body = "    return 2 * x\n\n\ndef check():\n    assert f(1) == 2\n"
    assert extract_program(prompt + body, "f") == 'def f(x):\n    """Double."""\n    return 2 * x'
