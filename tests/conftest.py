"""Shared fixtures: a tiny Qwen2 model and a byte-level BPE tokenizer trained here, saved as a
transformers folder. Built once per session in a few seconds; deterministic (fixed seeds).

Session fixtures are shared by every test that asks for them: a test reads them and changes nothing
in them (or changes them through `monkeypatch`, which restores them); a test that generates, scores
or renders chat histories with the `codegen` model builds its own (`make_tiny_lm`).

`pytest --reverse` runs the collected tests in reverse order: no test may depend on another's
having run first."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


def pytest_addoption(parser) -> None:
    parser.addoption(
        "--reverse", action="store_true", help="run the collected tests in reverse order (order check)"
    )


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items) -> None:
    if config.getoption("--reverse"):
        items.reverse()


CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _training_corpus() -> list[str]:
    from codegen_bench.harness.execution.problems import load_humaneval

    problems = load_humaneval()
    return [p["prompt"] + p["canonical_solution"] for p in problems.values()]


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(_training_corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(vocab_size: int, eos_token_id: int, pad_token_id: int):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = [eos_token_id]
    return model


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-qwen2")
    tokenizer = build_tokenizer()
    model = build_model(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny(tiny_model_dir):
    """(model, tokenizer) loaded from the tiny folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    return model, tokenizer


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir):
    """The `codegen` lm-eval model over the tiny folder (chat on: the tokenizer has a template).
    Shared: read it; a test that changes it builds its own with `make_tiny_lm`."""
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    return CodegenLM(pretrained=str(tiny_model_dir), batch_size=4, max_length=256)


@pytest.fixture
def make_tiny_lm(tiny_model_dir):
    """A fresh `codegen` model over the tiny folder, `model_args` added to tiny_lm's."""
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    def make(**model_args):
        return CodegenLM(
            **{"pretrained": str(tiny_model_dir), "batch_size": 4, "max_length": 256, **model_args}
        )

    return make


def transformers_greedy_ids(model, tokenizer, prompt_ids, max_new_tokens) -> list[int]:
    """What transformers' own `generate` gives greedily, without end of sequence: the reference
    our engines are compared with."""
    out = model.generate(
        torch.tensor([prompt_ids]),
        attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
        max_new_tokens=max_new_tokens,
        do_sample=False,
        eos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    return out[0, len(prompt_ids) :].tolist()


@pytest.fixture(scope="session")
def greedy_ids():
    """`transformers_greedy_ids`, for test files to share it without importing each other."""
    return transformers_greedy_ids


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A private codegen-bench cache: variant builds and provisioning land in tmp_path/cache."""
    monkeypatch.setenv("CODEGEN_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def base(tiny_model_dir):
    """The tiny model as a variant base (fp32, CPU)."""
    from codegen_bench.harness.loading import LoadConfig
    from codegen_bench.variants import BaseModel

    return BaseModel(str(tiny_model_dir), LoadConfig(dtype="float32", device="cpu"))
