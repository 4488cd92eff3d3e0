"""Quantization configs, torchao-style: `Nf4` and `Int8Dynamic`, with `quantize_(model, Int8Dynamic())`.

bitsandbytes quantizes while transformers loads the weights, so `Nf4.to_transformers()` gives the
`BitsAndBytesConfig` that `from_pretrained` takes; bitsandbytes >= 0.49 runs 4-bit on the CPU.
`Int8Dynamic` quantizes a loaded model in place and has its own artifact format (int8 safetensors).
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.loading import resolve_device, resolve_dtype

if TYPE_CHECKING:
    from codegen_bench.variants.artifact import BaseModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Nf4:
    """4-bit NormalFloat weights (QLoRA's format) for every Linear but lm_head."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    def __post_init__(self) -> None:
        if self.quant_type not in ("nf4", "fp4"):
            raise CodegenBenchError(f"quant_type={self.quant_type!r} is not valid: use nf4 or fp4")
        if self.compute_dtype not in ("float32", "bfloat16", "float16"):
            raise CodegenBenchError(
                f"compute_dtype={self.compute_dtype!r} is not valid: use float32, bfloat16 or float16"
            )

    def to_transformers(self):
        import torch
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=self.quant_type,
            bnb_4bit_use_double_quant=self.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, self.compute_dtype),
        )


def dequantize_4bit_(model) -> int:
    """Replace every bitsandbytes 4-bit Linear in `model` (a peft adapter's base layers included) by a
    plain Linear holding its weights dequantized once, in the layer's compute dtype; return how many.

    The function is the 4-bit model's: bitsandbytes' CPU path dequantizes the same weights at every
    call and multiplies in the compute dtype. Only the cost changes (float32 weights in memory, no
    dequantization per step), so quality can be evaluated at float speed; the variant's own speed and
    memory are the bitsandbytes kernels', which the latency suite measures. Call it before the first
    forward: bitsandbytes may repack a layer's weights for its CPU kernel on first use.
    """
    import bitsandbytes as bnb
    import torch
    from bitsandbytes.nn.modules import fix_4bit_weight_quant_state_from_module

    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, bnb.nn.Linear4bit):
                continue
            fix_4bit_weight_quant_state_from_module(child)
            state = child.weight.quant_state
            dtype = child.compute_dtype or state.dtype
            weight = bnb.functional.dequantize_4bit(child.weight.data, state).to(dtype)
            linear = torch.nn.Linear(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                device=weight.device,
                dtype=dtype,
            )
            with torch.no_grad():
                linear.weight.copy_(weight)
                if child.bias is not None:
                    linear.bias.copy_(child.bias.to(dtype))
            linear.requires_grad_(False)
            setattr(parent, name, linear)
            replaced += 1
    return replaced


# --- int8-dynamic -------------------------------------------------------------------------------
#
# Backend: torch.ao dynamic quantization with fbgemm's kernels. torchao's
# Int8DynamicActivationInt8Weight and optimum-quanto's qint8 run their matmuls through
# torch._int_mm, which on the CPUs measured here is far slower than fbgemm, slower even than float32
# (benchmarks/studies/int8_dynamic.py compares the backends and times the kernels). lm_head is
# quantized: keeping it float costs speed and barely changes the agreement with float32. down_proj
# stays float by default, for accuracy (see keep_float below). torch.ao.quantization is deprecated
# upstream but ships in torch 2.13/2.14, the range pyproject allows; move to torchao once its CPU
# int8 matmul is fast on CPUs like these.

INT8_WEIGHTS_FILE = "model.safetensors"
_FORMAT = "codegen-bench-int8-dynamic/1"


@dataclass(frozen=True)
class Int8Dynamic:
    """int8 weights for the Linear layers; activations are quantized on every call from their own
    range (dynamic), so no calibration data is needed.

    granularity="per-channel" gives each output row its own weight scale (more accurate, same
    speed); "per-tensor" one scale per layer. keep_float names Linear layers left in float32, by the
    last part of their module name ("down_proj") or their full name ("lm_head"). The matmuls run in
    fbgemm on the CPU with float32 activations in and out.
    """

    granularity: Literal["per-channel", "per-tensor"] = "per-channel"
    # down_proj in int8 moves the model furthest from float32 of the layer kinds
    # (results/measurements/int8-all-layers/, int8-kernels/), for the speed it gives at batch 1:
    # likely because its input, SiLU(gate) * up, has the largest outliers, and one outlier sets the
    # single activation scale of the whole call. Smoothing that input into up_proj first (SmoothQuant)
    # closes only part of that gap (results/measurements/int8-down-proj-smoothing/). `keep_float=`
    # quantizes every layer, for users who take that trade.
    keep_float: tuple[str, ...] = ("down_proj",)
    # The int8 matmul library the weights are packed for: fbgemm, or oneDNN (which uses AVX512-VNNI
    # and AMX-INT8 where the CPU has them). Even on a Xeon with AMX-INT8, oneDNN decodes slower than
    # fbgemm at batch 1 and only a little faster at large batches (results/measurements/int8-kernels/),
    # so fbgemm is the default everywhere.
    kernels: Literal["fbgemm", "onednn"] = "fbgemm"

    def __post_init__(self) -> None:
        if self.kernels not in ("fbgemm", "onednn"):
            raise CodegenBenchError(f"kernels={self.kernels!r} is not valid: use fbgemm or onednn")
        if self.granularity not in ("per-channel", "per-tensor"):
            raise CodegenBenchError(
                f"granularity={self.granularity!r} is not valid: use per-channel or per-tensor"
            )
        if isinstance(self.keep_float, str) or not all(isinstance(n, str) and n for n in self.keep_float):
            raise CodegenBenchError(
                f"keep_float={self.keep_float!r} is not valid: give Linear names such as "
                "('down_proj', 'lm_head'); on the command line keep_float=down_proj+lm_head"
            )
        object.__setattr__(self, "keep_float", tuple(self.keep_float))  # a JSON manifest gives a list


@contextmanager
def _packing_for(config: Int8Dynamic):
    """torch.ao packs a dynamic int8 Linear's weights for the quantized engine selected when they are
    set, and the packed weights then run that engine's kernels whatever is selected later."""
    import torch

    engine = config.kernels
    if engine not in torch.backends.quantized.supported_engines:
        raise CodegenBenchError(
            f"int8-dynamic kernels={engine} is not in this torch build's quantized engines "
            f"({', '.join(torch.backends.quantized.supported_engines)}): pass variant.kernels=fbgemm"
        )
    before = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = before


def _int8_targets(model, config: Int8Dynamic, *, warn_unmatched: bool) -> list[str]:
    """The names of the Linear layers to quantize. Reads only the module tree, so it answers the same
    on a model built on the meta device, before any weight loads."""
    from torch import nn
    from transformers.pytorch_utils import Conv1D

    linears = {name: module for name, module in model.named_modules() if isinstance(module, nn.Linear)}
    targets = [
        name
        for name in linears
        if name not in config.keep_float and name.rsplit(".", 1)[-1] not in config.keep_float
    ]
    # lm_head alone is no int8 model: every decoder layer would run in float, and a tied lm_head would
    # be stored a second time, untied, making the artifact larger than the base.
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if not any(linears[name] is not output for name in targets):
        model_class = type(model).__name__
        if any(isinstance(module, Conv1D) for module in model.modules()):
            raise CodegenBenchError(
                f"{model_class}: its decoder projections are transformers Conv1D layers, which "
                "int8-dynamic does not quantize (nn.Linear only): use another variant for this model"
            )
        if any(module is not output for module in linears.values()):
            raise CodegenBenchError(
                f"keep_float={'+'.join(config.keep_float)} keeps every decoder Linear of {model_class} "
                "float, so int8-dynamic would quantize no decoder layer: name fewer layers in keep_float"
            )
        raise CodegenBenchError(f"{model_class} has no decoder Linear layers to quantize")
    leaf_names = sorted({name.rsplit(".", 1)[-1] for name in linears})
    unmatched = [name for name in config.keep_float if name not in linears and name not in leaf_names]
    if unmatched and warn_unmatched:
        log.warning(
            "int8-dynamic keep_float names %s match no Linear layer of %s, so they keep nothing float; "
            "its Linear layers are named %s",
            ", ".join(unmatched),
            type(model).__name__,
            ", ".join(leaf_names),
        )
    return targets


def check_int8_quantizable(model, config: Int8Dynamic) -> None:
    """The model has decoder Linear layers int8-dynamic quantizes (a meta-device model will do)."""
    # The unmatched-keep_float warning is left to quantize_, which always follows a build's check.
    _int8_targets(model, config, warn_unmatched=False)


def _check_cpu_float32(model) -> None:
    import torch

    for name, param in model.named_parameters():
        if param.device.type != "cpu" or param.dtype != torch.float32:
            raise CodegenBenchError(
                f"variant int8-dynamic runs int8 kernels on the CPU in float32, but {name} is "
                f"{param.dtype} on {param.device}: pass dtype=float32 device=cpu"
            )


@contextmanager
def _quiet_torch_ao():
    # torch.ao warns on every use that it is deprecated (and that quantized tensors are); we chose it
    # knowingly (see above), and the warning repeated on each build and load says nothing new.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")
        warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor.*deprecated")
        yield


def _qconfig(config: Int8Dynamic):
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig

    return per_channel_dynamic_qconfig if config.granularity == "per-channel" else default_dynamic_qconfig


def quantize_(model, config: Int8Dynamic):
    """Replace the Linear layers by dynamically quantized int8 ones, in place; return the model."""
    import torch
    from torch.ao.quantization import quantize_dynamic

    if not isinstance(config, Int8Dynamic):
        raise CodegenBenchError(f"quantize_ takes an Int8Dynamic config here, got {config!r}")
    targets = _int8_targets(model, config, warn_unmatched=True)
    _check_cpu_float32(model)
    # Keyed by module name so keep_float layers are left out (a type key would take every Linear).
    with _quiet_torch_ao(), _packing_for(config), torch.no_grad():
        quantize_dynamic(model, {name: _qconfig(config) for name in targets}, dtype=torch.qint8, inplace=True)
    return model


def _is_int8_linear(module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear

    return isinstance(module, DynamicQuantizedLinear)


def int8_linears(model) -> dict:
    """The int8 Linear layers `quantize_` made, by qualified name."""
    return {name: module for name, module in model.named_modules() if _is_int8_linear(module)}


def save_int8_dynamic(model, folder: Path) -> None:
    """Write the int8 weights, their scales and every float tensor of `model` to one safetensors file.

    The packed fbgemm weights are not safetensors-serialisable, so each int8 layer is stored as plain
    tensors: `<layer>.weight` (int8), `<layer>.weight_scale` (float64, as torch keeps it, so a reload
    is bit-identical), `<layer>.weight_zero_point` and `<layer>.bias`. Tied parameters are stored once
    and recorded as aliases.
    """
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {}
    int8_layers = []
    with _quiet_torch_ao():
        for name, module in model.named_modules():
            if not _is_int8_linear(module):
                continue
            weight = module.weight()
            if weight.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
                scale, zero_point = weight.q_per_channel_scales(), weight.q_per_channel_zero_points()
                if weight.q_per_channel_axis() != 0:
                    raise CodegenBenchError(f"{name}: int8 weights are expected per output channel (axis 0)")
            else:
                scale = torch.tensor(weight.q_scale(), dtype=torch.float64)
                zero_point = torch.tensor(weight.q_zero_point(), dtype=torch.int64)
            tensors[f"{name}.weight"] = weight.int_repr().contiguous()
            tensors[f"{name}.weight_scale"] = scale.contiguous()
            tensors[f"{name}.weight_zero_point"] = zero_point.contiguous()
            if module.bias() is not None:
                tensors[f"{name}.bias"] = module.bias().detach().contiguous()
            int8_layers.append(name)
    if not int8_layers:
        raise CodegenBenchError("save_int8_dynamic: the model has no int8 Linear layers: quantize_ it first")

    aliases = {}
    canonical: dict[int, str] = {}
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    for name, tensor in named:
        if id(tensor) in canonical:
            aliases[name] = canonical[id(tensor)]
        else:
            canonical[id(tensor)] = name
            # Non-persistent buffers (rotary inv_freq) too: the model is rebuilt on the meta device.
            tensors[name] = tensor.detach().contiguous()
    metadata = {"format": _FORMAT, "int8_layers": json.dumps(int8_layers), "aliases": json.dumps(aliases)}
    save_file(tensors, str(Path(folder) / INT8_WEIGHTS_FILE), metadata=metadata)


def load_int8_dynamic(folder: Path, base: BaseModel, config: Int8Dynamic):
    """Rebuild the quantized model saved by `save_int8_dynamic` without re-quantizing: the
    architecture comes from the base model's config.json, every weight from the artifact."""
    import torch
    from safetensors import safe_open
    from torch.ao.nn.quantized.dynamic import Linear as DynamicQuantizedLinear
    from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig

    cfg = base.load_config
    device = resolve_device(cfg.device)
    if device.type != "cpu" or resolve_dtype(cfg.dtype, device) != torch.float32:
        raise CodegenBenchError(
            f"variant int8-dynamic runs int8 kernels on the CPU in float32, not dtype={cfg.dtype} "
            f"device={cfg.device}: pass dtype=float32 device=cpu"
        )
    path = Path(folder) / INT8_WEIGHTS_FILE
    if not path.is_file():
        raise CodegenBenchError(f"{folder} has no {INT8_WEIGHTS_FILE}: rebuild the int8-dynamic artifact")
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != _FORMAT:
            raise CodegenBenchError(
                f"{path} is not an int8-dynamic weights file (format={metadata.get('format')!r}, "
                f"expected {_FORMAT!r}): rebuild the artifact"
            )
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118  (safe_open is no dict)
    int8_layers = json.loads(metadata["int8_layers"])
    aliases = json.loads(metadata["aliases"])

    model_config = AutoConfig.from_pretrained(
        base.name_or_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
    )
    # On the meta device nothing is allocated or randomly initialised: every tensor comes from the file.
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(
            model_config, dtype=torch.float32, trust_remote_code=cfg.trust_remote_code
        )
    with _quiet_torch_ao(), _packing_for(config):
        for name in int8_layers:
            int8 = tensors.pop(f"{name}.weight")
            scale = tensors.pop(f"{name}.weight_scale")
            zero_point = tensors.pop(f"{name}.weight_zero_point")
            bias = tensors.pop(f"{name}.bias", None)
            if scale.dim() == 0:
                weight = torch._make_per_tensor_quantized_tensor(int8, scale.item(), int(zero_point))
            else:
                weight = torch._make_per_channel_quantized_tensor(int8, scale, zero_point, 0)
            layer = DynamicQuantizedLinear(int8.shape[1], int8.shape[0], bias_=bias is not None)
            layer.set_weight_bias(weight, bias)
            model.set_submodule(name, layer)
    for name, tensor in tensors.items():
        owner, _, leaf = name.rpartition(".")
        module = model.get_submodule(owner)
        if leaf in module._parameters:
            module._parameters[leaf] = torch.nn.Parameter(tensor, requires_grad=False)
        else:
            module._buffers[leaf] = tensor
    for alias, name in aliases.items():
        owner, _, leaf = alias.rpartition(".")
        source_owner, _, source_leaf = name.rpartition(".")
        source = model.get_submodule(source_owner)
        target = model.get_submodule(owner)
        if source_leaf in source._parameters:
            target._parameters[leaf] = source._parameters[source_leaf]
        else:
            target._buffers[leaf] = source._buffers[source_leaf]
    missing = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if missing:
        raise CodegenBenchError(
            f"{path} lacks {', '.join(missing[:5])}: it was made for another architecture than "
            f"{type(model).__name__}; rebuild the artifact from this base model"
        )
    # What base.load() would use: eos ids and sampling defaults live in generation_config.json; without
    # one, keep the config derived from config.json, as from_pretrained does.
    with suppress(OSError):
        model.generation_config = GenerationConfig.from_pretrained(base.name_or_path, revision=cfg.revision)
    return model.eval()
