"""Engines: token ids in, generated text and log-likelihoods out.

`protocol.py` is the contract the `codegen` lm-eval model talks to (generate, score, memory).
`hf.py` is our engine
on a transformers model (continuous batching in `generation.py`, scoring in `likelihood.py`,
prepacked linears in `prepack.py`, memory counters in `memory.py`); `vllm.py` hands the same work
to vLLM on GPUs. Which tokens of a long sequence are scored is decided once, for both
(`likelihood.scored_window`). Engines get a loaded model (or, for vLLM, a folder to load): they
know nothing of variant names, tasks or prompts.
"""
