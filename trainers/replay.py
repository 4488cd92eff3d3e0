"""The base model's own answers to code requests, as training records that replay them.

Trained on explanations, an adapter also moves the model's code answers: the default model wrote
shorter, wrong bodies after it. Mixing in records of the base model's own greedy answers to code
requests, in the chat form the HumanEval task asks in, gives the loss a reason to leave that
behaviour where it was (self-distillation). Nothing of HumanEval is used: the requests are
train-split standard-library functions (signature + docstring), and the answers the base model's.

The answers are generated once per base model, request set and generation settings (those of the
task whose form they take, read from its YAML), and cached as {prompt, answer} records
(trainers/sft.py: to_example).
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import torch
from lm_eval.tasks._yaml_loader import load_yaml
from tqdm import tqdm

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.engine.generation import GenerationSettings
from codegen_bench.harness.engine.hf import HfEngine
from codegen_bench.harness.execution.sanitize import extract_program
from codegen_bench.harness.files import json_digest, read_jsonl, write_jsonl
from codegen_bench.harness.loading import load_tokenizer
from codegen_bench.tasks import humaneval
from codegen_bench.trainers.sft import code_request
from codegen_bench.variants.artifact import BaseModel

log = logging.getLogger(__name__)

# The task each code prompt form comes from: its generation settings are the replay's.
FORM_TASKS = {"instruct": "humaneval_custom.yaml", "fenced": "humaneval_fenced.yaml"}
REPLAY_BATCH_SIZE = 32


def task_generation_kwargs(code_prompt: str) -> dict:
    """The generation settings of the HumanEval task whose chat form `code_prompt` is."""
    path = Path(humaneval.__file__).parent / FORM_TASKS[code_prompt]
    return dict(load_yaml(path, resolve_func=False)["generation_kwargs"])


def is_top_level_function(record: dict) -> bool:
    """A module-level function (its id is module:name), not a method: what HumanEval asks for."""
    return "." not in record["id"].split(":", 1)[-1]


def _answer_is_usable(answer: str, record: dict, code_prompt: str) -> bool:
    """The answer holds the requested function as valid Python."""
    name = record["id"].split(":", 1)[-1]
    program = extract_program(answer, name) if code_prompt == "instruct" else record["prompt"] + answer
    try:
        tree = ast.parse(program)
    except SyntaxError:
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == name for node in tree.body)


def _generate(
    base: BaseModel, records: list[dict], code_prompt: str, gen_kwargs: dict
) -> list[tuple[str, bool]]:
    """The base model's greedy answers through our generation engine, each with whether it ended on
    its own (a stop string or end of text, not the token budget or a repetition cut)."""

    tokenizer = load_tokenizer(base.name_or_path, base.load_config)
    prompts = []
    for record in records:
        request, opening = code_request(record["prompt"], code_prompt)
        text = tokenizer.apply_chat_template(request, tokenize=False, add_generation_prompt=True)
        prompts.append(tokenizer.encode(text + opening, add_special_tokens=False))
    settings = GenerationSettings(
        max_new_tokens=int(gen_kwargs["max_gen_toks"]), stop_strings=tuple(gen_kwargs["until"])
    )
    engine = HfEngine(base.load().eval(), tokenizer, batch_size=REPLAY_BATCH_SIZE, seed=0, prepack="auto")
    answers: list[tuple[str, bool]] = [("", False)] * len(records)
    with tqdm(total=len(records), desc="replay answers") as progress:

        def row_done(row: int, text: str, n_tokens: int, repeat_period: int | None) -> None:
            answers[row] = (text, n_tokens < settings.max_new_tokens and repeat_period is None)
            progress.update(1)

        with torch.inference_mode():
            engine.generate(prompts, settings, engine.eos_token_ids(), on_row_done=row_done)
    return answers


def replay_records(base: BaseModel, records: list[dict], code_prompt: str) -> list[dict]:
    """{prompt, answer} records of the base model's usable answers to `records`' prompts, in
    `code_prompt`'s form (generated once, then read from the cache)."""
    gen_kwargs = task_generation_kwargs(code_prompt)
    identity = {
        "base": base.fingerprint(),
        "load": [base.load_config.dtype, base.load_config.revision],
        "code_prompt": code_prompt,
        "gen_kwargs": gen_kwargs,
        "prompts": [r["prompt"] for r in records],
    }
    key = json_digest(identity, 12)
    path = cache_dir() / "recipes" / f"replay-{code_prompt}-{key}.jsonl"
    if path.is_file():
        return read_jsonl(path)
    log.warning("generating the base model's own answers to %d code requests (once; cached)", len(records))
    answers = _generate(base, records, code_prompt, gen_kwargs)
    kept = [
        {"id": record["id"], "prompt": record["prompt"], "answer": answer}
        for record, (answer, ended) in zip(records, answers, strict=True)
        if ended and _answer_is_usable(answer, record, code_prompt)
    ]
    log.info("kept %d of %d answers (the rest were cut or lack the function)", len(kept), len(records))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(path, kept)
    return kept
