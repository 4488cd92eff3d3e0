"""Raw model text -> the completion that is appended to a HumanEval prompt and executed.

Generation already stopped at the task's stop strings; what remains to undo is the chat form:
an instruct model answers inside a Markdown code fence, either continuing a fence the prompt
opened (the fence closes at the end of its answer) or opening one of its own.
"""

from __future__ import annotations

import re

_OPENING_FENCE = re.compile(r"\A\s*```[ \t]*(?:python3?|py)?[ \t]*\n", re.IGNORECASE)
_ANY_FENCE = re.compile(r"^[ \t]*```", re.MULTILINE)


def sanitize_completion(text: str) -> str:
    """Return the code of `text`: the body inside a fence the answer opened, or the part before the
    first fence line (which closes the fence the prompt opened). Text without fences is unchanged."""
    opened = _OPENING_FENCE.match(text)
    if opened:
        text = text[opened.end() :]
    end = _ANY_FENCE.search(text)
    return text[: end.start()] if end else text
