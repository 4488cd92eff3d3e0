"""Greedy or sampled generation with continuous batching and per-row stopping.

The work is fixed (every prompt, its stop strings and token budget), so throughput comes from keeping
the decoding batch full: on a CPU each decoding step streams every weight once, whatever the batch,
so a step that carries 32 rows costs little more than one that carries 4. Therefore:

- Up to `max_batch_size` sequences run at once, each in its own slot of a preallocated KV cache
  (`SlotCache`). A row that finishes (end of sequence, one of its stop strings, or its token budget)
  leaves at once, and the next waiting prompt is prefilled into its slot: the batch stays full
  until the queue is empty, then shrinks (the last slot moves into the hole, so the running rows are
  always slots 0..n-1 and a step reads plain slices of the cache).
- Each prompt is prefilled on its own, in chunks of at most `prefill_chunk_tokens`, with the logits of
  its last position only. A prompt's cache and first token therefore never depend on which other
  prompts share the run: no padding, real positions. Decoding steps share matmuls across rows, so a
  row's logits can differ from a batch-1 run by floating-point rounding only (the kernel's blocking
  depends on the batch); greedy choices flip only on near-ties.
- The tokens every prompt starts with (a chat template's system turn, a task's instruction; all of a
  prompt repeated for pass@k) are prefilled once and copied into each slot. Where that prefix ends
  depends on the set of prompts in the call (not on the batch size), so it is a chunk boundary like
  any other: same arithmetic, rounding may differ in the last bits.
- Nothing is copied per step: the new token's keys and values are written in place at each row's own
  position, and attention reads the first `max(length)` positions of the active slots under a mask
  that hides each row's unused tail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from codegen_bench.harness.engine.repetition import DEFAULT_REPETITION_CUT, RepetitionCut, repeating_period
from codegen_bench.harness.errors import CodegenBenchError

log = logging.getLogger(__name__)

# Keys and values of all slots together stay under this; more slots than fit are not opened.
KV_CACHE_BUDGET_BYTES = 6 * 2**30
# A prefix shorter than this is not worth splitting every prompt's prefill for.
MIN_SHARED_PREFIX_TOKENS = 16


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 512
    stop_strings: tuple[str, ...] = ()
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    # None: every row runs to a stop string or its budget (fixed-work benchmarks).
    repetition_cut: RepetitionCut | None = DEFAULT_REPETITION_CUT


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
    tokens: int = 0  # generated
    prompt_tokens: int = 0
    seconds: float = 0.0
    cut_repeating: int = 0  # rows ended early because their last tokens repeated (repetition.py)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, float]:
        return {
            "requests": self.requests,
            "tokens": self.tokens,
            "prompt_tokens": self.prompt_tokens,
            "seconds": round(self.seconds, 3),
            "cut_repeating": self.cut_repeating,
            "tokens_per_second": round(self.tokens_per_second, 3),
        }


def _kv_geometry(config) -> tuple[int, int, int]:
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return config.num_hidden_layers, kv_heads, head_dim


class SlotCache:
    """Keys and values of up to `slots` sequences, one fixed slot each, `capacity` positions long.

    Passed to the model as its `cache`: each attention layer calls `update`, which writes the new
    keys/values where the current step says and returns what the layer must attend to. A step is
    either a prefill chunk of one slot (`prefill(slot, start)`) or one decoding token for each of
    slots 0..n-1 (`decode(positions)`)."""

    def __init__(self, model, slots: int, capacity: int) -> None:
        layers, kv_heads, head_dim = _kv_geometry(model.config)
        # Attention computes in the dtype of the model's float weights (quantized ones included).
        dtype = next(p.dtype for p in model.parameters() if p.is_floating_point())
        shape = (slots, kv_heads, capacity, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=model.device) for _ in range(layers)]
        self.values = [torch.zeros_like(k) for k in self.keys]
        self._slot = 0
        self._start = 0
        self._positions: torch.Tensor | None = None
        self._read = 0

    @staticmethod
    def bytes_per_position(model) -> int:
        """What one cached token of one slot takes, keys and values of every layer."""
        layers, kv_heads, head_dim = _kv_geometry(model.config)
        element = next(p.element_size() for p in model.parameters() if p.is_floating_point())
        return 2 * layers * kv_heads * head_dim * element

    def prefill(self, slot: int, start: int) -> None:
        self._slot, self._start, self._positions = slot, start, None

    def decode(self, positions: torch.Tensor) -> None:
        """One new token for each of slots 0..len(positions)-1, at these positions."""
        self._positions = positions
        self._read = int(positions.max()) + 1

    def move(self, source: int, target: int, length: int | None = None) -> None:
        """Copy a slot's first `length` positions (all by default) into another slot."""
        for tensors in (self.keys, self.values):
            for layer in tensors:
                layer[target, :, :length] = layer[source, :, :length]

    def update(self, key_states, value_states, layer_idx: int, *args, **kwargs):
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        if self._positions is None:
            end = self._start + key_states.shape[2]
            keys[self._slot, :, self._start : end] = key_states[0]
            values[self._slot, :, self._start : end] = value_states[0]
            return keys[self._slot : self._slot + 1, :, :end], values[self._slot : self._slot + 1, :, :end]
        rows = len(self._positions)
        index = torch.arange(rows, device=keys.device)
        keys[index, :, self._positions] = key_states[:, :, 0]
        values[index, :, self._positions] = value_states[:, :, 0]
        return keys[:rows, :, : self._read], values[:rows, :, : self._read]


def _shared_prefix_length(prompts: Sequence[Sequence[int]]) -> int:
    """Tokens at the start of every prompt, leaving each at least one of its own (for its logits)."""
    first = prompts[0]
    limit = min(len(p) for p in prompts) - 1
    length = 0
    while length < limit and all(p[length] == first[length] for p in prompts):
        length += 1
    return length


def _additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Additive float masks mean the same to every attention implementation (sdpa, eager).
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min
    )


@torch.inference_mode()
def generate(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    settings: GenerationSettings,
    eos_token_ids: set[int],
    max_batch_size: int = 8,
    generator: torch.Generator | None = None,
    on_row_done: Callable[[int, str, int, int | None], None] | None = None,
    prefill_chunk_tokens: int = 512,
) -> list[str]:
    """Generate a continuation for each prompt (token ids); return the decoded texts, stops cut off.

    `on_row_done(row, text, n_tokens, repeat_period)` is called as each row finishes, with its text,
    the number of tokens the model generated for it (its end-of-sequence token included), and the
    period of the repetition that ended it early (None when it ended otherwise), so a caller can
    store each result at once."""
    if not prompts or settings.max_new_tokens < 1:
        return [""] * len(prompts)
    config = model.config
    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        raise CodegenBenchError(
            f"{config.model_type} uses sliding-window attention layers, which codegen's generation "
            "does not mask: use a model with full attention in every layer"
        )
    if any(len(p) == 0 for p in prompts):
        raise CodegenBenchError("a generation prompt is empty: every request needs at least one token")
    device = model.device
    capacity = max(len(p) for p in prompts) + settings.max_new_tokens
    per_slot = SlotCache.bytes_per_position(model) * capacity
    slots = max(1, min(max_batch_size, len(prompts), KV_CACHE_BUDGET_BYTES // per_slot))
    if slots < min(max_batch_size, len(prompts)):
        log.warning(
            "generation: %d rows at once instead of %d: %d-token sequences fill the %.0f GiB KV cache budget",
            slots,
            max_batch_size,
            capacity,
            KV_CACHE_BUDGET_BYTES / 2**30,
        )
    # The tokens every prompt starts with (a chat template's system turn, a task's instruction) are
    # run once, into one extra slot, and copied into each slot before its own prompt.
    shared = _shared_prefix_length(prompts)
    shared = shared if len(prompts) > 1 and shared >= MIN_SHARED_PREFIX_TOKENS else 0
    prefix_slot = slots  # unused when nothing is shared
    cache = SlotCache(model, slots + (shared > 0), capacity)
    dtype = cache.keys[0].dtype
    longest_stop = max((len(s) for s in settings.stop_strings), default=0)

    texts = [""] * len(prompts)
    slot_row: list[int] = []  # the request each running slot holds
    generated: list[list[int]] = []  # tokens generated so far, per slot
    lengths: list[int] = []  # tokens in each slot's cache
    next_token: list[int] = []  # the token each slot feeds next
    waiting = iter(range(len(prompts)))

    def forward_chunks(slot: int, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Run ids[start:] into `slot` (positions before `start` already cached); last logits."""
        for begin in range(start, len(ids), prefill_chunk_tokens):
            end = min(begin + prefill_chunk_tokens, len(ids))
            cache.prefill(slot, begin)
            # Causal over the chunk, everything before it visible.
            query_pos = torch.arange(begin, end, device=device)[:, None]
            allowed = torch.arange(end, device=device)[None, :] <= query_pos
            logits = model(
                input_ids=ids[None, begin:end],
                position_ids=query_pos.T,
                attention_mask=_additive_mask(allowed, dtype)[None, None],
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
        return logits

    def prefill(slot: int, row: int) -> int:
        """Fill `slot` with prompt `row`; return its first generated token."""
        ids = torch.tensor(prompts[row], dtype=torch.long, device=device)
        if shared:
            cache.move(prefix_slot, slot, shared)
        logits = forward_chunks(slot, ids, shared)
        return int(_next_tokens(logits, settings, generator)[0])

    def take(slot: int, token: int) -> bool:
        """Add the slot's newly chosen token to its output; True when that ends the row."""
        next_token[slot] = token
        tokens = generated[slot]
        period = None
        if token in eos_token_ids:
            done = True
        else:
            tokens.append(token)
            done = len(tokens) >= settings.max_new_tokens
            if not done and longest_stop:
                # A stop string that ends in this token starts at most `longest_stop` tokens back.
                tail = tokenizer.decode(tokens[-(longest_stop + 1) :], skip_special_tokens=False)
                done = any(stop in tail for stop in settings.stop_strings)
            if not done and settings.repetition_cut is not None:
                period = repeating_period(tokens, settings.repetition_cut)
                done = period is not None
        if done:
            row = slot_row[slot]
            text = tokenizer.decode(tokens, skip_special_tokens=True)
            texts[row] = truncate_at_stop(text, settings.stop_strings)
            if on_row_done is not None:
                on_row_done(row, texts[row], len(tokens) + (token in eos_token_ids), period)
        return done

    def fill(slot: int) -> None:
        """Give `slot` (a running slot whose row ended, or the next new one) the next waiting prompt;
        when none waits, close the slot by moving the last running slot into it."""
        for row in waiting:
            first_token = prefill(slot, row)
            state = (row, [], len(prompts[row]), first_token)
            if slot == len(slot_row):
                for values, value in zip((slot_row, generated, lengths, next_token), state, strict=True):
                    values.append(value)
            else:
                slot_row[slot], generated[slot], lengths[slot], next_token[slot] = state
            if not take(slot, first_token):
                return
        if slot >= len(slot_row):
            return
        last = len(slot_row) - 1
        if slot != last:
            cache.move(last, slot)
            for values in (slot_row, generated, lengths, next_token):
                values[slot] = values[last]
        for values in (slot_row, generated, lengths, next_token):
            values.pop()

    if shared:
        forward_chunks(prefix_slot, torch.tensor(prompts[0][:shared], device=device), 0)
    for slot in range(slots):
        fill(slot)
    while slot_row:
        positions = torch.tensor(lengths, dtype=torch.long, device=device)
        cache.decode(positions)
        allowed = torch.arange(int(positions.max()) + 1, device=device)[None, :] <= positions[:, None]
        logits = model(
            input_ids=torch.tensor(next_token, dtype=torch.long, device=device)[:, None],
            position_ids=positions[:, None],
            attention_mask=_additive_mask(allowed, dtype)[:, None, None, :],
            cache=cache,
            use_cache=True,
        ).logits[:, -1, :]
        tokens = _next_tokens(logits, settings, generator).tolist()
        # Highest slot first: a row that ends takes a waiting prompt or the last slot's row, and
        # that row has already had its token.
        for slot in reversed(range(len(tokens))):
            lengths[slot] += 1
            if take(slot, tokens[slot]):
                fill(slot)
    return texts
