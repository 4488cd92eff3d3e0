"""Log-likelihood of continuations, and rolling log-likelihood of whole texts.

With a reference model (normally the base model a variant was made from), each continuation also
gets how far the model's next-token distributions moved from the reference's on the same tokens
(teacher-forced, no generation): the summed KL divergence KL(reference || model) over its tokens,
and how many of its positions have the same most likely token in both. Accuracy hides how much a
compressed model's answers changed (Dutta et al. 2024, "Accuracy is Not All You Need"); these two
do not.

The reference's side of that comparison is the same for every variant compared with it: its
log-probabilities at the scored positions, for the same batches of rows. A `LogProbsFolder` keeps
them, so that a matrix runs the reference once rather than once per variant (see `ReferenceLogProbs`).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from codegen_bench.harness.files import atomic_path

log = logging.getLogger(__name__)

# A scored row: the token ids fed to the model, and the ids its last positions must predict.
Row = tuple[list[int], list[int]]

# Logits are batch x positions x vocabulary floats: 20 HumanEval solutions of ~300 tokens over
# Qwen's 151,936-token vocabulary would take 3.6 GB at once. Only the continuation positions get
# logits (`logits_to_keep`), and rows are scored in groups whose logits fit this budget.
LOGITS_BUDGET_BYTES = 512 * 2**20


class ContinuationScore(tuple):
    """lm-eval's (log-likelihood, is_greedy) pair, plus the comparison with a reference model when
    there was one: KL(reference || model) summed over the continuation's tokens, the number of its
    positions whose most likely token is the same in both, and its token count."""

    kl_sum: float | None = None
    top1_agreements: int | None = None
    n_tokens: int = 0
    reference_computed: bool = False  # the reference model ran for it (False: its log-probs were kept)

    def __new__(cls, logprob: float, is_greedy: bool, **comparison) -> ContinuationScore:
        score = super().__new__(cls, (logprob, is_greedy))
        for name, value in comparison.items():
            setattr(score, name, value)
        return score

    def __reduce__(self):  # pickled by lm-eval's cache and by gathers across processes
        return (_rebuild_score, (tuple(self), self.__dict__))


def _rebuild_score(pair: tuple, fields: dict) -> ContinuationScore:
    return ContinuationScore(*pair, **fields)


@dataclass
class ScoringStats:
    """The work of the likelihood requests served so far, for a run's share of the roofline.

    Counted over every model forward, a reference model's (KL) included: `forward_tokens` went through
    the decoder layers, `head_tokens` through the output head (the scored positions).
    `reference_kept` counts the requests compared with a reference whose log-probs were read from a
    `LogProbsFolder` instead of computed (no reference forward for those)."""

    requests: int = 0
    forward_tokens: int = 0
    head_tokens: int = 0
    reference_kept: int = 0
    seconds: float = 0.0

    def add(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], scores, max_length: int) -> None:
        for (context, continuation), score in zip(pairs, scores, strict=True):
            whole, n_scored = scored_window(context, continuation, max_length)
            compared = getattr(score, "kl_sum", None) is not None
            forwards = 2 if compared and score.reference_computed else 1
            self.requests += 1
            self.reference_kept += compared and not score.reference_computed
            self.forward_tokens += forwards * (len(whole) - 1)
            self.head_tokens += forwards * n_scored

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "forward_tokens": self.forward_tokens,
            "head_tokens": self.head_tokens,
            "reference_kept": self.reference_kept,
            "seconds": round(self.seconds, 3),
        }


def scored_window(
    context: Sequence[int], continuation: Sequence[int], max_length: int
) -> tuple[list[int], int]:
    """The tokens a model sees to score `continuation` after `context`, and how many of their last
    tokens are scored. A sequence over `max_length` keeps its end, as lm-eval's `hf` model does:
    `max_length + 1` tokens, since the last one is only predicted, never fed."""
    whole = (list(context) + list(continuation))[-(max_length + 1) :]
    return whole, min(len(continuation), len(whole) - 1)


class LogProbsFolder:
    """One model's log-probabilities (`continuation_log_probs`) for batches of rows, in a folder: a
    safetensors file per batch, named by the batch's token ids. Only a read of the same batch finds
    them, so a value read back is the value that the same forward computed, bit for bit."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.writable = True

    def _path(self, rows: Sequence[Row]) -> Path:
        key = hashlib.sha256(json.dumps([[list(i), list(t)] for i, t in rows]).encode()).hexdigest()
        return self.folder / f"{key[:32]}.safetensors"

    def get(self, rows: Sequence[Row]) -> list[torch.Tensor] | None:
        from safetensors.torch import load_file

        try:
            tensors = load_file(self._path(rows))
        except FileNotFoundError:  # never written, or removed by the run that owns the folder
            return None
        return [tensors[str(i)] for i in range(len(rows))]

    def put(self, rows: Sequence[Row], log_probs: Sequence[torch.Tensor]) -> None:
        """Keep them; where the folder cannot take them (a full disk), warn once and keep no more:
        the models compared with this one then compute what they do not find, and no score is lost."""
        from safetensors.torch import save_file

        if not self.writable:
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            # Written beside its name, then renamed: a reader never sees half a file.
            with atomic_path(self._path(rows)) as tmp:
                save_file({str(i): t.contiguous() for i, t in enumerate(log_probs)}, str(tmp))
        except OSError as error:
            self.writable = False
            log.warning(
                "log-probs not kept in %s from here on (%s): free space there to keep them",
                self.folder,
                error,
            )


class ReferenceLogProbs:
    """The reference model's log-probabilities for a batch of rows: from `kept` where a run of the
    reference (or of another model compared with it) left them, else computed by the reference,
    which is loaded at the first batch it has to compute, and then kept there too."""

    def __init__(
        self, load_model: Callable[[], torch.nn.Module], pad_token_id: int, kept: LogProbsFolder | None = None
    ) -> None:
        self.load_model = load_model
        self.pad_token_id = pad_token_id
        self.kept = kept
        self.model: torch.nn.Module | None = None

    def __call__(self, rows: Sequence[Row]) -> tuple[list[torch.Tensor], bool]:
        """The log-probs, and whether the reference model computed them (False: read from `kept`)."""
        log_probs = self.kept.get(rows) if self.kept is not None else None
        if log_probs is not None:
            return log_probs, False
        if self.model is None:
            self.model = self.load_model()
        log_probs = continuation_log_probs(self.model, rows, self.pad_token_id)
        if self.kept is not None:
            self.kept.put(rows, log_probs)
        return log_probs, True


@torch.inference_mode()
def score_continuations(
    model,
    pairs: Sequence[tuple[Sequence[int], Sequence[int]]],
    max_length: int,
    pad_token_id: int,
    reference: ReferenceLogProbs | None = None,
    keep_log_probs: LogProbsFolder | None = None,
) -> list[ContinuationScore]:
    """For each (context ids, continuation ids): sum of continuation log-probs, and whether every
    continuation token is the argmax (greedy), on the tokens `scored_window` keeps.
    With `reference`, each score also compares the two models' distributions (see above).
    With `keep_log_probs`, this model's own log-probs are kept there, for the models compared with it."""
    rows: list[Row] = []
    for context, continuation in pairs:
        whole, n_cont = scored_window(context, continuation, max_length)
        rows.append((whole[:-1], whole[-n_cont:]))
    vocab_size = model.get_output_embeddings().out_features
    results: list[tuple[float, bool]] = []
    start = 0
    while start < len(rows):
        stop = start + 1
        while stop < len(rows):
            kept = max(len(target) for _, target in rows[start : stop + 1])
            if (stop + 1 - start) * kept * vocab_size * 4 > LOGITS_BUDGET_BYTES:
                break
            stop += 1
        batch = rows[start:stop]
        log_probs = continuation_log_probs(model, batch, pad_token_id)
        if keep_log_probs is not None:
            keep_log_probs.put(batch, log_probs)
        reference_log_probs, computed = reference(batch) if reference is not None else (None, False)
        for i, (_, target) in enumerate(batch):
            reference_i = None if reference_log_probs is None else reference_log_probs[i]
            results.append(_score(log_probs[i], target, reference_i, computed))
        start = stop
    return results


def _score(
    log_probs: torch.Tensor,
    target: list[int],
    reference: torch.Tensor | None,
    reference_computed: bool,
) -> ContinuationScore:
    target_ids = torch.tensor(target)
    token_log_probs = log_probs.gather(-1, target_ids.unsqueeze(-1)).squeeze(-1)
    top1 = log_probs.argmax(dim=-1)
    is_greedy = bool((top1 == target_ids).all())
    if reference is None:
        return ContinuationScore(float(token_log_probs.sum()), is_greedy)
    # KL(reference || model) at each position, from log-probabilities (exact, no sampling).
    kl = (reference.exp() * (reference - log_probs)).sum(dim=-1)
    return ContinuationScore(
        float(token_log_probs.sum()),
        is_greedy,
        kl_sum=float(kl.sum()),
        top1_agreements=int((reference.argmax(dim=-1) == top1).sum()),
        n_tokens=len(target),
        reference_computed=reference_computed,
    )


@torch.inference_mode()
def continuation_log_probs(model, rows: Sequence[Row], pad_token_id: int) -> list[torch.Tensor]:
    """Each row's log-probabilities (float32, on the CPU) at the positions that predict its target."""
    # Left-padded, so every row's continuation is predicted by the same last positions; position ids
    # follow each row's real tokens, so padding does not change a row's scores.
    longest = max(len(inputs) for inputs, _ in rows)
    input_ids = torch.full((len(rows), longest), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    for i, (inputs, _) in enumerate(rows):
        input_ids[i, longest - len(inputs) :] = torch.tensor(inputs)
        attention_mask[i, longest - len(inputs) :] = 1
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    kept = max(len(target) for _, target in rows)
    device = model.device
    logits = model(
        input_ids=input_ids.to(device),
        attention_mask=attention_mask.to(device),
        position_ids=position_ids.to(device),
        logits_to_keep=kept,
    ).logits
    # The logits at position t predict token t+1: the last len(target) positions predict target.
    return [
        torch.log_softmax(logits[i, kept - len(target) :].float(), dim=-1).cpu()
        for i, (_, target) in enumerate(rows)
    ]


def rolling_windows(token_ids: Sequence[int], prefix_token_id: int, max_length: int):
    """lm-eval's disjoint rolling windows: every token is scored once, with as much context as fits."""
    from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

    windows = get_rolling_token_windows(
        token_list=list(token_ids), prefix_token=prefix_token_id, max_seq_len=max_length, context_len=1
    )
    return [make_disjoint_window(w) for w in windows]
