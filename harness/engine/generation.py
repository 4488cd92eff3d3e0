"""Greedy or sampled generation with continuous batching and per-row stopping.

The work is fixed (every prompt, its stop strings and token budget), so throughput comes from keeping
the decoding batch full: on a CPU each decoding step streams every weight once, whatever the batch,
so a step that carries many rows costs little more than one that carries a few
(results/measurements/generation-speed/README.md: batch 32 against batch 1;
results/measurements/decode-batch-64/README.md: where more rows stop paying). Therefore:

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
from dataclasses import dataclass, field

import torch

from codegen_bench.harness.engine.repetition import DEFAULT_REPETITION_CUT, RepetitionCut, repeating_period
from codegen_bench.harness.errors import CodegenBenchError

log = logging.getLogger(__name__)

# Keys and values of all slots together stay under this; more slots than fit are not opened.
KV_CACHE_BUDGET_BYTES = 6 * 2**30
# A prefix shorter than this is not worth splitting every prompt's prefill for.
MIN_SHARED_PREFIX_TOKENS = 16


# A request's token budget when its task sets none (lm-eval's `max_gen_toks`).
DEFAULT_MAX_NEW_TOKENS = 512


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
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
    max_batch_size: int,
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
    _check_generation_inputs(model, prompts)
    slots, capacity = _slots_and_capacity(model, prompts, settings, max_batch_size)
    batch = _ContinuousBatch(
        model,
        tokenizer,
        prompts,
        settings,
        eos_token_ids,
        slots=slots,
        capacity=capacity,
        shared=_prefix_to_prefill_once(prompts),
        generator=generator,
        on_row_done=on_row_done,
        prefill_chunk_tokens=prefill_chunk_tokens,
    )
    batch.prefill_shared_prefix()
    for slot in range(slots):
        batch.admit(slot)
    while batch.running:
        batch.decode_step()
    return batch.texts


def _check_generation_inputs(model, prompts: Sequence[Sequence[int]]) -> None:
    config = model.config
    if "sliding_attention" in (getattr(config, "layer_types", None) or []):
        raise CodegenBenchError(
            f"{config.model_type} uses sliding-window attention layers, which codegen's generation "
            "does not mask: use a model with full attention in every layer"
        )
    if any(len(p) == 0 for p in prompts):
        raise CodegenBenchError("a generation prompt is empty: every request needs at least one token")


def _slots_and_capacity(
    model, prompts: Sequence[Sequence[int]], settings: GenerationSettings, max_batch_size: int
) -> tuple[int, int]:
    """How many rows run at once, and the positions each slot holds (the longest prompt and the
    budget): as many rows as asked for unless their keys and values would pass the cache budget."""
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
    return slots, capacity


def _prefix_to_prefill_once(prompts: Sequence[Sequence[int]]) -> int:
    """The tokens every prompt starts with (a chat template's system turn, a task's instruction),
    where they are worth running once and copying into each slot; else 0."""
    shared = _shared_prefix_length(prompts)
    return shared if len(prompts) > 1 and shared >= MIN_SHARED_PREFIX_TOKENS else 0


@dataclass
class _RunningRow:
    """A prompt being generated in a slot of the cache."""

    request: int  # the prompt's index
    length: int  # tokens in its slot of the cache
    next_token: int  # the token it feeds to the next decoding step
    generated: list[int] = field(default_factory=list)  # its tokens so far, end of sequence excluded


class _ContinuousBatch:
    """One `generate` call: the slot cache, the rows running in slots 0..n-1, the prompts waiting and
    the texts of the rows finished. Each public method is one step of the loop in `generate`."""

    def __init__(
        self,
        model,
        tokenizer,
        prompts: Sequence[Sequence[int]],
        settings: GenerationSettings,
        eos_token_ids: set[int],
        *,
        slots: int,
        capacity: int,
        shared: int,
        generator: torch.Generator | None,
        on_row_done: Callable[[int, str, int, int | None], None] | None,
        prefill_chunk_tokens: int,
    ) -> None:
        self.model, self.tokenizer, self.prompts = model, tokenizer, prompts
        self.settings, self.eos_token_ids, self.generator = settings, eos_token_ids, generator
        self.on_row_done, self.prefill_chunk_tokens = on_row_done, prefill_chunk_tokens
        self.device = model.device
        self.shared = shared
        self.prefix_slot = slots  # one slot past the rows' slots; unused when nothing is shared
        self.cache = SlotCache(model, slots + (shared > 0), capacity)
        self.dtype = self.cache.keys[0].dtype
        self.longest_stop = max((len(s) for s in settings.stop_strings), default=0)
        self.texts = [""] * len(prompts)
        self.running: list[_RunningRow] = []  # running[slot]: the row in that slot
        self.waiting = iter(range(len(prompts)))

    def prefill_shared_prefix(self) -> None:
        """Run the prefix every prompt starts with once, into the prefix slot."""
        if self.shared:
            ids = torch.tensor(self.prompts[0][: self.shared], device=self.device)
            self._forward_chunks(self.prefix_slot, ids, 0)

    def admit(self, slot: int) -> None:
        """Give `slot` (a running slot whose row ended, or the next new one) the next waiting prompt;
        when none waits, close the slot."""
        for request in self.waiting:
            row = _RunningRow(request, len(self.prompts[request]), self._prefill(slot, request))
            if slot == len(self.running):
                self.running.append(row)
            else:
                self.running[slot] = row
            if not self._accept(slot, row.next_token):
                return
        if slot < len(self.running):
            self._close(slot)

    def decode_step(self) -> None:
        """One new token for every running row, in one forward pass; rows that end are replaced."""
        positions = torch.tensor([row.length for row in self.running], dtype=torch.long, device=self.device)
        self.cache.decode(positions)
        allowed = torch.arange(int(positions.max()) + 1, device=self.device)[None, :] <= positions[:, None]
        next_tokens = [row.next_token for row in self.running]
        logits = self.model(
            input_ids=torch.tensor(next_tokens, dtype=torch.long, device=self.device)[:, None],
            position_ids=positions[:, None],
            attention_mask=_additive_mask(allowed, self.dtype)[:, None, None, :],
            cache=self.cache,
            use_cache=True,
        ).logits[:, -1, :]
        tokens = _next_tokens(logits, self.settings, self.generator).tolist()
        # Highest slot first: a row that ends takes a waiting prompt or the last slot's row, and
        # that row has already had its token.
        for slot in reversed(range(len(tokens))):
            self.running[slot].length += 1
            if self._accept(slot, tokens[slot]):
                self.admit(slot)

    def _forward_chunks(self, slot: int, ids: torch.Tensor, start: int) -> torch.Tensor:
        """Run ids[start:] into `slot` (positions before `start` already cached); last logits."""
        for begin in range(start, len(ids), self.prefill_chunk_tokens):
            end = min(begin + self.prefill_chunk_tokens, len(ids))
            self.cache.prefill(slot, begin)
            # Causal over the chunk, everything before it visible.
            query_pos = torch.arange(begin, end, device=self.device)[:, None]
            allowed = torch.arange(end, device=self.device)[None, :] <= query_pos
            logits = self.model(
                input_ids=ids[None, begin:end],
                position_ids=query_pos.T,
                attention_mask=_additive_mask(allowed, self.dtype)[None, None],
                cache=self.cache,
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1, :]
        return logits

    def _prefill(self, slot: int, request: int) -> int:
        """Fill `slot` with prompt `request` (after the shared prefix); return its first token."""
        ids = torch.tensor(self.prompts[request], dtype=torch.long, device=self.device)
        if self.shared:
            self.cache.move(self.prefix_slot, slot, self.shared)
        logits = self._forward_chunks(slot, ids, self.shared)
        return int(_next_tokens(logits, self.settings, self.generator)[0])

    def _accept(self, slot: int, token: int) -> bool:
        """Add the slot's newly chosen token to its row; True when that ends the row."""
        row = self.running[slot]
        row.next_token = token
        tokens = row.generated
        period = None
        if token in self.eos_token_ids:
            done = True
        else:
            tokens.append(token)
            done = len(tokens) >= self.settings.max_new_tokens
            if not done and self.longest_stop:
                # A stop string that ends in this token starts at most `longest_stop` tokens back.
                tail = self.tokenizer.decode(tokens[-(self.longest_stop + 1) :], skip_special_tokens=False)
                done = any(stop in tail for stop in self.settings.stop_strings)
            if not done and self.settings.repetition_cut is not None:
                period = repeating_period(tokens, self.settings.repetition_cut)
                done = period is not None
        if done:
            self._retire(row, n_tokens=len(tokens) + (token in self.eos_token_ids), period=period)
        return done

    def _retire(self, row: _RunningRow, n_tokens: int, period: int | None) -> None:
        """Keep a finished row's text, stop strings cut off, and report it."""
        text = self.tokenizer.decode(row.generated, skip_special_tokens=True)
        self.texts[row.request] = truncate_at_stop(text, self.settings.stop_strings)
        if self.on_row_done is not None:
            self.on_row_done(row.request, self.texts[row.request], n_tokens, period)

    def _close(self, slot: int) -> None:
        """Close `slot` (its row ended, nothing waits) by moving the last running slot into it: the
        running rows stay slots 0..n-1."""
        last = len(self.running) - 1
        if slot != last:
            self.cache.move(last, slot)
            self.running[slot] = self.running[last]
        self.running.pop()
