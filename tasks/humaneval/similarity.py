"""How close generated code is to a reference solution, by text and by structure.

Exact match and normalised edit similarity compare the code's text; chrF its character n-grams;
CodeBLEU (Ren et al., 2020; the `codebleu` package, tree-sitter's Python grammar) mixes four equally
weighted parts: BLEU n-gram match, keyword-weighted n-gram match, AST subtree match and data-flow
match. None of them is correctness: a correct solution written differently scores low, which is
what `humaneval_similarity` shows next to pass@1.

All compare `normalise_code` forms: dedented, trailing whitespace and blank edge lines removed, so
indentation depth and a trailing newline do not count as differences.
"""

from __future__ import annotations

import logging
import textwrap
import warnings
from collections.abc import Sequence

CODEBLEU_PARTS = {
    "codebleu": "codebleu",
    "codebleu_ngram": "ngram_match_score",
    "codebleu_weighted_ngram": "weighted_ngram_match_score",
    "codebleu_syntax": "syntax_match_score",
    "codebleu_dataflow": "dataflow_match_score",
}


def normalise_code(code: str) -> str:
    lines = [line.rstrip() for line in textwrap.dedent(code.expandtabs(4)).splitlines()]
    return "\n".join(lines).strip("\n")


def exact_match(candidate: str, reference: str) -> float:
    return float(normalise_code(candidate) == normalise_code(reference))


def edit_similarity(candidate: str, reference: str) -> float:
    """1 - Levenshtein distance / length of the longer text (1.0 for two empty texts)."""
    from rapidfuzz.distance import Levenshtein

    return Levenshtein.normalized_similarity(normalise_code(candidate), normalise_code(reference))


def sentence_chrf(candidate: str, reference: str) -> float:
    """chrF (sacrebleu's defaults, 0-100) of one candidate; corpus chrF is lm-eval's `chrf`."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(normalise_code(candidate), [normalise_code(reference)]).score


def codebleu(candidates: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus CodeBLEU and its four parts (0-1), keyed as in CODEBLEU_PARTS."""
    from codebleu import calc_codebleu

    if len(candidates) != len(references) or not candidates:
        raise ValueError(
            f"codebleu needs as many candidates as references, at least one: got "
            f"{len(candidates)} and {len(references)}"
        )
    # codebleu logs a warning on the root logger whenever no reference has a data-flow graph (e.g.
    # `return True`); that part is then 0, as documented, and the warning per sample is noise.
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = calc_codebleu(
                [normalise_code(r) for r in references],
                [normalise_code(c) for c in candidates],
                lang="python",
            )
    finally:
        logging.disable(logging.NOTSET)
    return {name: float(scores[key]) for name, key in CODEBLEU_PARTS.items()}
