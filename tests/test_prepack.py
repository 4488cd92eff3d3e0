from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest
import torch

from codegen_bench.harness.engine.generation import GenerationSettings, generate
from codegen_bench.harness.engine.prepack import PrepackedLinear, can_prepack, prepack_linears_

pytestmark = pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="needs oneDNN")


def _fresh(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()


def test_prepacked_model_computes_the_same_logits_and_completions(tiny, tiny_model_dir):
    reference, tokenizer = tiny
    model = _fresh(tiny_model_dir)
    assert can_prepack(model)
    linears = sum(type(m) is torch.nn.Linear for m in model.modules())
    assert prepack_linears_(model) == linears == 2 * 7 + 1  # q k v o gate up down per layer, lm_head
    assert not any(type(m) is torch.nn.Linear for m in model.modules())

    ids = torch.tensor([tokenizer.encode("def add(a, b):\n    return a + b\n")])
    with torch.inference_mode():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits, rtol=1e-4, atol=1e-4)
    prompts = [tokenizer.encode(p) for p in ["import os\n", "def f(x):\n", "class A:\n"]]
    settings = GenerationSettings(max_new_tokens=12)
    assert generate(model, tokenizer, prompts, settings, set(), 2) == generate(
        reference, tokenizer, prompts, settings, set(), 2
    )


def test_the_layers_under_an_unmerged_lora_adapter_are_packed_and_its_matrices_are_not(tiny, tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    _, tokenizer = tiny
    models = []
    for _ in range(2):
        torch.manual_seed(0)  # the same adapter weights in both (nonzero B: the adapter counts)
        config = LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
        models.append(get_peft_model(_fresh(tiny_model_dir), config).eval())
    plain, packed = models
    assert can_prepack(packed)
    assert prepack_linears_(packed) == 2 * 7 + 1  # every base layer, wrapped or not, and lm_head
    wrapped = packed.base_model.model.model.layers[0].self_attn.q_proj
    assert isinstance(wrapped.base_layer, PrepackedLinear)
    assert type(wrapped.lora_A["default"]) is torch.nn.Linear  # peft reads its .weight
    assert type(wrapped.lora_B["default"]) is torch.nn.Linear

    ids = torch.tensor([tokenizer.encode("def add(a, b):\n    return a + b\n")])
    with torch.inference_mode():
        with_adapter = plain(input_ids=ids).logits
        with plain.disable_adapter():
            assert not torch.allclose(plain(input_ids=ids).logits, with_adapter, atol=1e-3)
        torch.testing.assert_close(packed(input_ids=ids).logits, with_adapter, rtol=1e-4, atol=1e-4)
    prompts = [tokenizer.encode(p) for p in ["import os\n", "def f(x):\n", "class A:\n"]]
    settings = GenerationSettings(max_new_tokens=12)
    assert generate(packed, tokenizer, prompts, settings, set(), 2) == generate(
        plain, tokenizer, prompts, settings, set(), 2
    )


def test_tied_output_weights_are_not_copied(tiny_model_dir):
    model = _fresh(tiny_model_dir)
    model.lm_head.weight = model.model.embed_tokens.weight  # tied, as in many small models
    prepack_linears_(model)
    assert type(model.lm_head) is torch.nn.Linear  # shared with the embeddings: left as it is
    assert isinstance(model.model.layers[0].mlp.up_proj, PrepackedLinear)


def test_codegen_model_prepacks_by_default_and_can_be_told_not_to(tiny_model_dir):
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    packed = CodegenLM(pretrained=str(tiny_model_dir), max_length=256)
    plain = CodegenLM(pretrained=str(tiny_model_dir), max_length=256, prepack="false")
    assert packed.get_model_info()["prepacked_linears"] == 15
    assert plain.get_model_info()["prepacked_linears"] == 0


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads Linux's /proc/self/maps")
def test_packing_lets_the_memory_mapped_weights_file_go(tiny_model_dir, tmp_path):
    # A tensor still viewing the safetensors mapping would keep every packed fp32 weight's page
    # resident: the resident set would count the weights twice.
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")  # mapped by this test's model only
    weights = str((folder / "model.safetensors").resolve())

    def mapped() -> bool:
        return weights in Path("/proc/self/maps").read_text()

    model = _fresh(folder)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    assert mapped()  # loaded memory-mapped, as transformers does
    prepack_linears_(model)
    gc.collect()
    assert not mapped()
    for name, param in model.named_parameters():  # what was copied out is unchanged
        torch.testing.assert_close(param, before[name], rtol=0, atol=0)


def test_frozen_packed_linears_give_the_same_loss_and_adapter_gradients(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from codegen_bench.harness.engine.prepack import prepack_frozen_linears_

    ids = torch.arange(3, 40).unsqueeze(0)
    results = []
    for pack in (False, True):
        torch.manual_seed(0)
        config = LoraConfig(r=4, target_modules=["q_proj", "down_proj"], init_lora_weights=False)
        model = get_peft_model(_fresh(tiny_model_dir), config).train()
        if pack:
            # The Linear layers LoRA wraps and the (untied) lm_head are frozen; the LoRA matrices train.
            assert prepack_frozen_linears_(model) == 2 * 7 + 1
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.detach(), grads))
    (loss_plain, grads_plain), (loss_packed, grads_packed) = results
    torch.testing.assert_close(loss_packed, loss_plain, rtol=1e-5, atol=1e-6)
    assert grads_plain.keys() == grads_packed.keys() and grads_plain
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-6)
