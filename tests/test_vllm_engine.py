"""backend=vllm without a GPU: the refusals, what each variant is loaded as, and our side of the
engine contract (token ids in; text with stops cut, and prompt log-probs, out).

vLLM itself needs an NVIDIA GPU and is not installed in CI. The contract tests put a stand-in
`vllm` module in place whose LLM answers the way vLLM documents (temperature 0 is greedy, stop
strings are cut from the text, `prompt_logprobs[i]` maps token ids to Logprob(logprob, rank) for
position i, None at 0), computed with transformers' own `generate` and a plain forward pass: the
`codegen` model must then give what backend=hf gives.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from codegen_bench.harness.engine.vllm import VllmSource, vllm_source
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.model import CodegenLM
from codegen_bench.variants import build_artifact, resolve_artifact
from codegen_bench.variants.adapters import LoraAdapter, load_lora, save_adapter_or_model
from codegen_bench.variants.artifact import write_artifact

pytestmark = pytest.mark.usefixtures("isolated_cache")


def test_backend_vllm_without_vllm_installed_fails_in_one_line(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(CodegenBenchError, match=r"backend=vllm needs the vllm package.*backend=hf"):
        CodegenLM(pretrained=str(tiny_model_dir), backend="vllm")


def test_backend_vllm_without_a_gpu_fails_in_one_line(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", types.ModuleType("vllm"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(CodegenBenchError, match="needs a CUDA GPU"):
        CodegenLM(pretrained=str(tiny_model_dir), backend="vllm")


def test_the_backend_argument_leaves_lm_evals_causal_encoding_alone(tiny_lm):
    # TemplateLM.backend == "causal" makes lm-eval tokenize context + continuation together for
    # loglikelihood; our `backend` model argument lives elsewhere.
    assert tiny_lm.backend == "causal" and tiny_lm.engine_name == "hf"


def test_unknown_backend_is_refused(tiny_model_dir):
    with pytest.raises(CodegenBenchError, match="backend='tgi' is not valid: use one of hf, vllm"):
        CodegenLM(pretrained=str(tiny_model_dir), backend="tgi")


# ---- what vLLM loads of each variant -------------------------------------------------------------

WITH_BNB = ["awq", "gptq", "bitsandbytes"]
WITHOUT_BNB = ["awq", "gptq", "fp8"]  # vLLM 0.33's list has no bitsandbytes


def _lora_artifact(base, folder, r=4):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    # Random B as well as A: the adapter then changes the outputs.
    config = LoraConfig(r=r, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(base.load(), config)
    write_artifact(
        model,
        folder,
        variant="lora",
        config={"adapter": str(folder), "merge": False},
        base=base,
        save=save_adapter_or_model,
    )
    return folder


def test_base_and_dense_artifacts_load_as_models(base):
    folder, manifest = resolve_artifact("base", base)
    assert vllm_source(folder, manifest, base, WITHOUT_BNB) == VllmSource(
        base.name_or_path, base.name_or_path
    )
    folder, manifest = resolve_artifact("l1-pruned", base, {"sparsity": 0.3})
    assert (folder / "config.json").is_file()
    source = vllm_source(folder, manifest, base, WITHOUT_BNB)
    assert source == VllmSource(model=str(folder), tokenizer=base.name_or_path)


def test_int8_dynamic_is_refused_with_the_reason(base):
    folder, manifest = resolve_artifact("int8-dynamic", base)
    with pytest.raises(CodegenBenchError, match=r"'int8-dynamic'.*torch dynamic int8.*backend=hf"):
        vllm_source(folder, manifest, base, WITH_BNB)


def test_bitsandbytes_4bit_loads_only_where_vllm_lists_it(base, monkeypatch):
    from importlib import metadata

    _, folder = build_artifact("nf4", base)
    _, manifest = resolve_artifact(str(folder), base)
    source = vllm_source(folder, manifest, base, WITH_BNB)
    assert source == VllmSource(model=str(folder), tokenizer=base.name_or_path, quantization="bitsandbytes")
    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "0.33.0" if name == "vllm" else real_version(name))
    with pytest.raises(
        CodegenBenchError, match=r"'nf4' is bitsandbytes 4-bit.*vLLM 0\.33\.0 has no bitsandbytes"
    ):
        vllm_source(folder, manifest, base, WITHOUT_BNB)


def test_lora_is_served_as_an_adapter_with_a_rank_vllm_allocates(base, tmp_path):
    folder = _lora_artifact(base, tmp_path / "lora", r=4)
    _, manifest = resolve_artifact(str(folder), base)
    source = vllm_source(folder, manifest, base, WITHOUT_BNB)
    assert source == VllmSource(base.name_or_path, base.name_or_path, adapter=str(folder), max_lora_rank=8)
    # An adapter trained on the 4-bit base says so in its config (qlora's quant_type), whatever its name.
    qlora = {**manifest, "variant": "qlora", "config": {**manifest["config"], "quant_type": "nf4"}}
    assert vllm_source(folder, qlora, base, WITH_BNB).quantization == "bitsandbytes"
    with pytest.raises(CodegenBenchError, match="'qlora' is bitsandbytes"):
        vllm_source(folder, qlora, base, WITHOUT_BNB)


def test_merged_lora_is_written_once_as_a_plain_model_equal_to_peft_merge(base, tmp_path):
    from transformers import AutoModelForCausalLM

    folder = _lora_artifact(base, tmp_path / "lora")
    _, manifest = resolve_artifact(str(folder), base)
    merged = {**manifest, "config": {**manifest["config"], "merge": True}}
    source = vllm_source(folder, merged, base, WITHOUT_BNB)
    assert source.adapter is None and (source.model != base.name_or_path)
    tokens = torch.tensor([[5, 17, 42, 99, 7]])
    with torch.no_grad():
        served = AutoModelForCausalLM.from_pretrained(source.model)(tokens).logits
        expected = load_lora(folder, base, LoraAdapter(adapter=str(folder), merge=True))(tokens).logits
        untrained = base.load()(tokens).logits
    torch.testing.assert_close(served, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(served, untrained)
    assert vllm_source(folder, merged, base, WITHOUT_BNB).model == source.model  # cached, not redone


# ---- the engine contract, against a stand-in vLLM -----------------------------------------------


@dataclass
class Logprob:
    logprob: float
    rank: int


class FakeLLM:
    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, model, **kwargs):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.kwargs = {"model": model, **kwargs}
        self.model = AutoModelForCausalLM.from_pretrained(model).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(kwargs["tokenizer"])
        FakeLLM.instances.append(self)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, *, use_tqdm=True, lora_request=None):
        return [self._one(prompt["prompt_token_ids"], params) for prompt in prompts]

    def _one(self, ids, params):
        tokens = torch.tensor([ids])
        if params.prompt_logprobs:
            with torch.no_grad():
                log_probs = torch.log_softmax(self.model(tokens).logits[0].float(), dim=-1)
            entries = [None]
            for position in range(1, len(ids)):
                row = log_probs[position - 1]
                value = row[ids[position]]
                entries.append({ids[position]: Logprob(float(value), int((row > value).sum()) + 1)})
            return types.SimpleNamespace(prompt_logprobs=entries, outputs=[])
        assert params.temperature == 0.0  # greedy
        with torch.no_grad():
            out = self.model.generate(
                tokens,
                attention_mask=torch.ones_like(tokens),
                max_new_tokens=params.max_tokens,
                do_sample=False,
                eos_token_id=params.stop_token_ids,
                pad_token_id=params.stop_token_ids[0],
            )
        new = out[0, len(ids) :].tolist()
        new = [t for t in new if t not in params.stop_token_ids]
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        cuts = [text.find(stop) for stop in params.stop if stop in text]
        text = text[: min(cuts)] if cuts else text
        return types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text, token_ids=new)])


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM
    module.SamplingParams = lambda **kwargs: types.SimpleNamespace(
        **{"prompt_logprobs": None, "stop": [], "stop_token_ids": [], **kwargs}
    )
    module.TokensPrompt = lambda prompt_token_ids: {"prompt_token_ids": prompt_token_ids}
    monkeypatch.setitem(sys.modules, "vllm", module)
    # A GPU for the vLLM check only: torch.cuda.is_available() stays as it is, or libraries imported
    # during the test (bitsandbytes) would set themselves up for a GPU that is not there.
    monkeypatch.setattr("codegen_bench.harness.lm_eval_plugin.model.check_vllm_available", lambda: None)
    monkeypatch.setattr("codegen_bench.harness.engine.vllm.vllm_quantization_methods", lambda: WITHOUT_BNB)
    FakeLLM.instances.clear()
    return module


def _requests(kind, items):
    from lm_eval.api.instance import Instance

    return [Instance(kind, doc={}, arguments=args, idx=i) for i, args in enumerate(items)]


def test_vllm_engine_gives_what_the_hf_engine_gives(tiny_model_dir, fake_vllm):
    hf = CodegenLM(pretrained=str(tiny_model_dir), batch_size=4, max_length=256, chat="false", device="cpu")
    vllm = CodegenLM(
        pretrained=str(tiny_model_dir), batch_size=4, max_length=256, chat="false", backend="vllm"
    )
    (llm,) = FakeLLM.instances
    assert llm.kwargs["max_model_len"] == 256 and "enable_lora" not in llm.kwargs
    assert vllm.get_model_info()["backend"] == "vllm" and vllm.get_model_info()["peak_memory_bytes"] is None

    prompts = ["def add(a, b):\n", "import os\n\ndef main():\n", "class A:\n    x = 1\n"]
    gen_kwargs = {"until": [], "max_gen_toks": 24, "do_sample": False}
    generations = _requests("generate_until", [(p, gen_kwargs) for p in prompts])
    full = hf.generate_until(generations)
    assert vllm.generate_until(generations) == full
    # Stop strings taken from inside each completion: both engines cut there.
    gen_kwargs = {**gen_kwargs, "until": [text[6:9] for text in full]}
    generations = _requests("generate_until", [(p, gen_kwargs) for p in prompts])
    cut = hf.generate_until(generations)
    assert all(len(c) < len(f) for c, f in zip(cut, full, strict=True))
    assert vllm.generate_until(generations) == cut

    pairs = [("def add(a, b):", "\n    return a + b"), ("x = ", "1"), ("", "import sys")]
    hf_scores = hf.loglikelihood(_requests("loglikelihood", pairs))
    vllm_scores = vllm.loglikelihood(_requests("loglikelihood", pairs))
    for (hf_logprob, hf_greedy), (vllm_logprob, vllm_greedy) in zip(hf_scores, vllm_scores, strict=True):
        assert vllm_logprob == pytest.approx(hf_logprob, rel=1e-4, abs=1e-4) and vllm_greedy == hf_greedy
    text = [("def f(x):\n    return x * 2\n" * 20,)]
    rolling = _requests("loglikelihood_rolling", text)
    assert vllm.loglikelihood_rolling(rolling) == pytest.approx(hf.loglikelihood_rolling(rolling), rel=1e-4)


def test_vllm_serves_a_lora_artifact_through_its_adapter_support(
    tiny_model_dir, base, tmp_path, fake_vllm, monkeypatch
):
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, int_id, path: ("lora", name, int_id, path)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    folder = _lora_artifact(base, tmp_path / "lora")
    model = CodegenLM(pretrained=str(tiny_model_dir), variant=str(folder), backend="vllm", max_length=128)
    (llm,) = FakeLLM.instances
    assert llm.kwargs["enable_lora"] is True and llm.kwargs["max_lora_rank"] == 8
    assert model.engine.lora_request == ("lora", "adapter", 1, str(folder))
    assert model.get_model_info()["variant"] == "lora"


def test_vllm_under_accelerate_launch_is_refused(tiny_model_dir, fake_vllm, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CodegenBenchError, match="tensor_parallel_size"):
        CodegenLM(pretrained=str(tiny_model_dir), backend="vllm")


def test_vllm_rows_that_loop_are_cut_where_the_hf_engine_ends_them(tiny_model_dir, fake_vllm):
    kwargs = {"pretrained": str(tiny_model_dir), "batch_size": 4, "max_length": 256, "chat": "false"}
    hf = CodegenLM(**kwargs, device="cpu")
    vllm = CodegenLM(**kwargs, backend="vllm")
    gen_kwargs = {"until": [], "max_gen_toks": 200, "do_sample": False}
    prompts = ["def add(a, b):\n", "import math\n", "    return sorted(", "class Stack:\n", "print("]
    generations = _requests("generate_until", [(p, gen_kwargs) for p in prompts])
    assert vllm.generate_until(generations) == hf.generate_until(generations)
    assert vllm.generation_stats.cut_repeating == hf.generation_stats.cut_repeating >= 1
    assert vllm.generation_stats.tokens == hf.generation_stats.tokens
