from __future__ import annotations

import math
from pathlib import Path

import pytest
from lm_eval.api.instance import Instance

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.model import DEFAULT_BATCH_SIZE, CodegenArgs, CodegenLM


def _request(kind: str, args: tuple, doc: dict | None = None, idx: int = 0) -> Instance:
    return Instance(request_type=kind, doc=doc or {}, arguments=args, idx=idx)


def test_generate_until_returns_one_stopped_text_per_request(make_tiny_lm):
    gen_kwargs = {"until": ["\n"], "max_gen_toks": 12}
    requests = [_request("generate_until", (p, gen_kwargs)) for p in ["def f(x):", "import os", "x = "]]
    texts = make_tiny_lm(chat="false").generate_until(requests, disable_tqdm=True)
    assert len(texts) == 3
    assert all("\n" not in t for t in texts)


def test_generation_throughput_and_peak_memory_reach_the_results(make_tiny_lm, monkeypatch):
    lm = make_tiny_lm(chat="false")
    monkeypatch.setattr(lm, "eos_token_ids", set())  # every row runs its full budget
    requests = [_request("generate_until", (p, {"until": [], "max_gen_toks": 6})) for p in ["a", "b c", "d"]]
    lm.generate_until(requests, disable_tqdm=True)
    info = lm.get_model_info()  # lm-eval copies this into results["config"]
    assert info["generation"]["requests"] == 3
    assert info["generation"]["tokens"] == 18
    assert info["generation"]["prompt_tokens"] == sum(len(lm.tok_encode(p)) for p in ["a", "b c", "d"])
    assert info["generation"]["seconds"] > 0
    assert info["generation"]["tokens_per_second"] > 0
    assert info["peak_memory_bytes"] > 50 * 2**20  # at least torch itself is resident
    assert info["loaded_memory_bytes"] is None or info["loaded_memory_bytes"] > 50 * 2**20


def test_scoring_work_reaches_the_results(make_tiny_lm):
    lm = make_tiny_lm()
    context, continuation = lm.tok_encode("def f(x):"), lm.tok_encode(" return x")
    requests = [_request("loglikelihood", ("def f(x):", " return x"))] * 2
    lm.loglikelihood(requests, disable_tqdm=True)
    scoring = lm.get_model_info()["scoring"]
    assert scoring["requests"] == 2
    # Every token but the last goes through the layers; the continuation's positions through the head.
    assert scoring["forward_tokens"] == 2 * (len(context) + len(continuation) - 1)
    assert scoring["head_tokens"] == 2 * len(continuation)
    assert scoring["seconds"] > 0


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="Linux: peak RSS reset")
def test_peak_memory_counts_from_the_end_of_loading(tiny_model_dir):
    spike = bytearray(400 * 2**20)
    spike[:: 2**12] = b"x" * len(spike[:: 2**12])  # touch every page: it becomes resident
    del spike
    lm = CodegenLM(pretrained=str(tiny_model_dir))
    # A load's transient copies (or, here, an earlier spike) must not be reported as evaluation memory.
    assert lm.get_model_info()["peak_memory_bytes"] < lm.loaded_memory_bytes + 200 * 2**20


def test_generate_until_rejects_unknown_generation_kwargs(tiny_lm):
    request = _request("generate_until", ("x", {"until": [], "num_beams": 4}))
    with pytest.raises(CodegenBenchError, match="num_beams"):
        tiny_lm.generate_until([request], disable_tqdm=True)


def test_chat_prompt_uses_the_docs_chat_fields(tiny_lm):
    assert tiny_lm.chat  # chat=auto, and the tiny tokenizer has a chat template
    doc = {"chat_user": "Complete it:\ndef f():", "chat_assistant_prefix": "```python\ndef f():"}
    assert (
        tiny_lm.prompt_text("def f():", doc)
        == "<|im_start|>user\nComplete it:\ndef f():<|im_end|>\n<|im_start|>assistant\n```python\ndef f():"
    )


def test_a_generation_request_is_prompted_with_the_token_ids_of_its_prompt_text(tiny_lm):
    doc = {"chat_user": "Complete it:\ndef f():", "chat_assistant_prefix": "```python\ndef f():"}
    ids, settings = tiny_lm.prepare_generation("def f():", {"until": ["\n"], "max_gen_toks": 8}, doc=doc)
    assert ids == tiny_lm.tok_encode(tiny_lm.prompt_text("def f():", doc))
    assert settings.stop_strings == ("\n",) and settings.max_new_tokens == 8


def test_lm_evals_chat_history_is_rendered_with_system_turn(make_tiny_lm):
    lm = make_tiny_lm()
    history = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "def f():"}]
    context = lm.apply_chat_template(history)
    prompt = lm.prompt_text(context, {"chat_user": "Complete: def f():"})
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nComplete: def f():")


def test_raw_prompt_when_chat_is_off(make_tiny_lm):
    assert make_tiny_lm(chat="false").prompt_text("def f():", {"chat_user": "ignored"}) == "def f():"


def test_loglikelihood_is_consistent_with_rolling(make_tiny_lm):
    lm = make_tiny_lm()
    text = "def add(a, b):\n    return a + b\n"
    (rolling,) = lm.loglikelihood_rolling([_request("loglikelihood_rolling", (text,))], disable_tqdm=True)
    ((logprob, _),) = lm.loglikelihood([_request("loglikelihood", ("", text))], disable_tqdm=True)
    # Both score every token of `text` given only the prefix token.
    assert math.isclose(rolling, logprob, rel_tol=1e-4)


def test_unknown_model_arg_names_the_argument(tiny_model_dir):
    with pytest.raises(CodegenBenchError, match="unknown model_args \\['temprature'\\]"):
        CodegenLM(pretrained=str(tiny_model_dir), temprature=0.2)


def test_unknown_model_arg_lists_every_argument_the_model_takes():
    with pytest.raises(CodegenBenchError) as error:
        CodegenLM(pretrained="/no/such/model", temprature=0.2)
    assert str(error.value).endswith(
        "known are pretrained, variant, variant.<config key>, dtype, batch_size, max_length, device, chat, "
        "seed, revision, trust_remote_code, prepack, backend, gpu_memory_utilization, tensor_parallel_size, "
        "kl_reference, kl_cache, cut_repetitions, dequantize_4bit"
    )


def test_batch_size_defaults_to_the_shared_default_also_for_auto():
    assert CodegenArgs.parse({}).batch_size == DEFAULT_BATCH_SIZE
    assert CodegenArgs.parse({"batch_size": "auto:4"}).batch_size == DEFAULT_BATCH_SIZE
    assert CodegenArgs.parse({"batch_size": "3", "max_batch_size": 64}).batch_size == 3


def test_model_args_are_checked_before_any_model_is_loaded():
    for bad, message in [({"chat": "maybe"}, "chat='maybe'"), ({"batch_size": 0}, "batch_size=0")]:
        with pytest.raises(CodegenBenchError, match=f"{message} is not valid"):
            CodegenLM(pretrained="/no/such/model", **bad)


def test_unknown_variant_lists_the_available_ones(tiny_model_dir):
    with pytest.raises(CodegenBenchError, match="variant='nf5' is unknown"):
        CodegenLM(pretrained=str(tiny_model_dir), variant="nf5")


def test_missing_local_folder_fails_with_one_clear_line(tmp_path):
    with pytest.raises(CodegenBenchError, match="is not a model folder"):
        CodegenLM(pretrained=str(tmp_path / "nope"))


def test_folder_without_config_is_rejected(tmp_path):
    with pytest.raises(CodegenBenchError, match=r"without config\.json"):
        CodegenLM(pretrained=str(tmp_path))


def test_truncated_safetensors_fails_with_a_clear_message(tiny_model_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CodegenBenchError, match="could not be loaded"):
        CodegenLM(pretrained=str(broken))


def test_interrupted_generation_resumes_from_lm_evals_cache(tiny_model_dir, tmp_path, monkeypatch):
    """With `--use_cache`, each finished generation is stored at once, so a rerun after Ctrl-C
    only generates what was missing."""
    from lm_eval.api.model import CachingLM

    from codegen_bench.harness.engine import hf as hf_engine

    lm = CodegenLM(pretrained=str(tiny_model_dir), batch_size=1, max_length=256, chat="false")
    gen_kwargs = {"until": ["\n"], "max_gen_toks": 4}
    requests = [
        _request("generate_until", (p, gen_kwargs), idx=i) for i, p in enumerate(["a = ", "b = ", "c = "])
    ]
    real_generate = hf_engine.generate

    def interrupted_after_two(*args, on_row_done, **kwargs):
        finished = []

        def row_done(row, text, n_tokens, repeat_period):
            if len(finished) == 2:
                raise KeyboardInterrupt
            finished.append(row)
            on_row_done(row, text, n_tokens, repeat_period)

        return real_generate(*args, on_row_done=row_done, **kwargs)

    monkeypatch.setattr(hf_engine, "generate", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        CachingLM(lm, str(tmp_path / "cache.db")).generate_until(requests)

    prompts_generated = []
    monkeypatch.setattr(
        hf_engine, "generate", lambda *a, **k: prompts_generated.extend(a[2]) or real_generate(*a, **k)
    )
    texts = CachingLM(lm, str(tmp_path / "cache.db")).generate_until(requests)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert len(prompts_generated) == 1  # only the request that was interrupted is generated again


def test_model_info_names_the_model_by_name_and_content_hash_not_by_path(tiny_lm, tiny_model_dir):
    info = tiny_lm.get_model_info()
    assert info["pretrained"] == tiny_model_dir.name
    assert len(info["pretrained_sha256"]) == 64
    assert info["base_size_on_disk_bytes"] == sum(
        f.stat().st_size for f in tiny_model_dir.glob("*.safetensors")
    )
    assert str(tiny_model_dir) not in repr(info)
