"""Loading a model and its tokenizer: the embedded default, a local folder, or a hub id."""

from __future__ import annotations

import logging
import re
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.provision import provision

log = logging.getLogger(__name__)

DTYPES = ("auto", "float32", "bfloat16", "float16")
DEVICES = ("cpu", "cuda", "auto")
DEFAULT_PRETRAINED = "default"


@dataclass(frozen=True)
class LoadConfig:
    """What to load. `pretrained=None` or "default" means the embedded Qwen2.5-Coder-0.5B-Instruct."""

    pretrained: str | None = None
    dtype: str = "float32"
    device: str = "cpu"
    revision: str | None = None
    trust_remote_code: bool = False

    def __post_init__(self) -> None:
        check_load_settings(self.dtype, self.device)


def check_load_settings(dtype: str, device: str) -> None:
    """A dtype and a device this project loads models with; checked before anything is loaded."""
    if dtype not in DTYPES:
        raise CodegenBenchError(f"dtype={dtype!r} is not supported: use one of {', '.join(DTYPES)}")
    if device not in DEVICES and not re.fullmatch(r"cuda:\d+", str(device)):
        raise CodegenBenchError(f"device={device!r} is not supported: use one of cpu, cuda, cuda:N, auto")


def resolve_device(device: str):
    import torch

    check_load_settings("auto", device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        # lm-eval's CLI passes device="cuda:0" unless told otherwise; like its `hf` model, run on the CPU.
        log.warning("device=%r requested but no CUDA GPU is available: running on the CPU", device)
        return torch.device("cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device) -> object:
    import torch

    check_load_settings(dtype, "cpu")
    if dtype == "auto":
        # fp32 on CPU: this CPU has no fast bf16 matmul for prefill, and fp32 is the reference numerics.
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, dtype)


def looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else is meant as a local path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1


def resolve_pretrained(pretrained: str | None) -> str:
    """A local folder path or a hub id, provisioning the embedded model when none is named."""
    if pretrained in (None, "", DEFAULT_PRETRAINED):
        return str(provision())
    return check_pretrained(pretrained)


def check_pretrained(pretrained: str) -> str:
    """`pretrained` as a model folder or a hub id: a path that is no model folder fails here, before
    anything is loaded."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CodegenBenchError(
                f"pretrained={pretrained!r} is a folder without config.json: point to a transformers "
                "model folder (config.json + weights), or omit pretrained for the embedded default model"
            )
        return str(path)
    if path.exists() or looks_like_path(pretrained):
        raise CodegenBenchError(
            f"pretrained={pretrained!r} is not a model folder: pass an existing transformers folder, "
            "a hub id such as Qwen/Qwen2.5-Coder-0.5B-Instruct, or omit it for the embedded default model"
        )
    return pretrained  # a hub id


def model_name(name_or_path: str) -> str:
    """How results name a model: a hub id as it is, a local folder by its own name (with the content
    hash beside it in the record), never the path, which belongs to one machine."""
    folder = Path(name_or_path)
    return folder.name if folder.is_dir() or folder.is_absolute() else name_or_path


def context_length(model_config) -> int:
    """The longest sequence a model is run on: its position table, at most 32k tokens."""
    return min(getattr(model_config, "max_position_embeddings", 2048), 32768)


def load_tokenizer(name_or_path: str, cfg: LoadConfig):
    from transformers import AutoTokenizer

    with _clear_load_errors(name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(
            name_or_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model_config(name_or_path: str, cfg: LoadConfig | None = None):
    """transformers' config of a model (a small file, fetched from the hub for a hub id): what a run
    reads before it loads any weights, so a model that cannot be had is refused there."""
    from transformers import AutoConfig

    cfg = cfg or LoadConfig()
    with _clear_load_errors(name_or_path):
        return AutoConfig.from_pretrained(
            name_or_path, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code
        )


def meta_model(name_or_path: str, cfg: LoadConfig | None = None):
    """The model built from its config on the meta device (nothing allocated or read): its module
    tree, for checking names that refer to it before the weights load."""
    import torch
    from transformers import AutoModelForCausalLM

    cfg = cfg or LoadConfig()
    model_config = load_model_config(name_or_path, cfg)
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(model_config, trust_remote_code=cfg.trust_remote_code)


def load_model(name_or_path: str, cfg: LoadConfig, **from_pretrained_kwargs):
    """Load weights onto the configured device and dtype, in eval mode. Extra keyword arguments
    (e.g. a quantization_config) go to `from_pretrained`."""
    from transformers import AutoModelForCausalLM

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    with _clear_load_errors(name_or_path):
        model = AutoModelForCausalLM.from_pretrained(
            name_or_path,
            dtype=dtype,
            revision=cfg.revision,
            trust_remote_code=cfg.trust_remote_code,
            **from_pretrained_kwargs,
        )
    if getattr(model, "is_loaded_in_4bit", False):
        return model.eval()  # bitsandbytes places its weights itself; .to() is refused
    return model.to(device).eval()


@contextmanager
def _clear_load_errors(name: str):
    """Turn transformers' deep load errors into one line naming the input and the fix."""
    try:
        yield
    except CodegenBenchError:
        raise
    except OSError as exc:
        if Path(name).exists():
            raise _unloadable(name, exc) from exc
        raise CodegenBenchError(
            f"pretrained={name!r} could not be fetched from the Hugging Face hub ({_first_line(exc)}): "
            "check the id and your network (HF_HUB_OFFLINE=1 needs a cached copy), pass a local "
            "folder, or omit pretrained for the embedded default model"
        ) from exc
    except Exception as exc:  # safetensors, torch and transformers each raise their own types
        raise _unloadable(name, exc) from exc


def _unloadable(name: str, exc: Exception) -> CodegenBenchError:
    return CodegenBenchError(
        f"pretrained={name!r} could not be loaded ({type(exc).__name__}: {_first_line(exc)}): "
        "check that the folder holds a complete transformers model (re-save or re-download it)"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
