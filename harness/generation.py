"""Batched generation with per-row stopping.

Each row stops at its own end-of-sequence token, stop string or token budget, and a finished row
leaves the batch at once (its KV-cache rows are dropped), so later decoding steps only pay for the
rows still running. Rows are left-padded; position ids follow each row's real tokens, so a prompt's
continuation does not depend on how much padding its batch needed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    stop_strings: tuple[str, ...] = ()
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0


def truncate_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """Cut `text` before the earliest occurrence of any stop string."""
    cut = len(text)
    for stop in stop_strings:
        index = text.find(stop)
        if index != -1:
            cut = min(cut, index)
    return text[:cut]


def _next_tokens(logits: torch.Tensor, settings: GenerationSettings, generator) -> torch.Tensor:
    if not settings.do_sample or settings.temperature == 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
        drop = sorted_probs.cumsum(dim=-1) - sorted_probs > settings.top_p
        sorted_probs = sorted_probs.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@dataclass
class GenerationStats:
    """Throughput of the generation requests served so far: what a user compares across variants."""

    requests: int = 0
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 3),
            "tokens_per_second": round(self.tokens_per_second, 3),
        }


@torch.inference_mode()
def generate_batch(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    eos_token_ids: set[int],
    generator: torch.Generator | None = None,
    on_row_done: Callable[[int, int], None] | None = None,
) -> list[str]:
    """Generate a continuation for each prompt (token ids); return the decoded texts, stops cut off.

    `on_row_done(row, n_tokens)` is called as each row finishes, with the number of tokens the model
    generated for it (its end-of-sequence token included)."""
    from transformers import DynamicCache

    device = model.device
    n = len(prompts)
    longest = max(len(p) for p in prompts)
    pad_id = tokenizer.pad_token_id
    input_ids = torch.full((n, longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, longest), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        input_ids[i, longest - len(prompt) :] = torch.tensor(prompt, dtype=torch.long)
        attention_mask[i, longest - len(prompt) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)

    cache = DynamicCache()
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
        logits_to_keep=1,
    ).logits[:, -1, :]

    generated: list[list[int]] = [[] for _ in range(n)]
    texts = [""] * n
    active = list(range(n))  # original row index of each batch row
    next_position = position_ids[:, -1] + 1
    longest_stop = max((len(s) for s in settings.stop_strings), default=0)

    for step in range(settings.max_new_tokens):
        tokens = _next_tokens(logits, settings, generator)
        keep = []
        for b, row in enumerate(active):
            token = int(tokens[b])
            finished = token in eos_token_ids
            if not finished:
                generated[row].append(token)
                if longest_stop:
                    # A stop string that ends in this token starts at most `longest_stop` tokens back.
                    tail = tokenizer.decode(generated[row][-(longest_stop + 1) :], skip_special_tokens=False)
                    finished = any(stop in tail for stop in settings.stop_strings)
            if finished or step == settings.max_new_tokens - 1:
                texts[row] = truncate_at_stop(
                    tokenizer.decode(generated[row], skip_special_tokens=True), settings.stop_strings
                )
                if on_row_done is not None:
                    on_row_done(row, step + 1)
            else:
                keep.append(b)
        if not keep:
            break
        if len(keep) < len(active):
            index = torch.tensor(keep, device=device)
            cache.batch_select_indices(index)
            attention_mask = attention_mask[index]
            next_position = next_position[index]
            tokens = tokens[index]
            active = [active[b] for b in keep]
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((len(active), 1))], dim=1)
        logits = model(
            input_ids=tokens.unsqueeze(-1),
            attention_mask=attention_mask,
            position_ids=next_position.unsqueeze(-1),
            cache=cache,
            use_cache=True,
        ).logits[:, -1, :]
        next_position = next_position + 1
    return texts
