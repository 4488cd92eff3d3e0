"""Variant artifacts: a folder with the weights (safetensors) and `variant.json` saying how it was made.

`variant.json` records the variant name and full config, the base model's identity and checksum,
the sha256 of the artifact's own weights, library versions, creation time, size on disk, parameter
count and measured sparsity: enough to rebuild the artifact (`codegen-bench build NAME --config k=v
...`), to refuse it for another base, and to tell two builds of one config apart (a calibrated or
trained variant built on another machine can differ in its weights).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import timestamp, write_text_atomic
from codegen_bench.harness.loading import LoadConfig, load_model
from codegen_bench.harness.provision import PROVENANCE_FILE
from codegen_bench.variants.quantize import int8_linears

MANIFEST = "variant.json"
LIBRARIES = ("codegen-bench", "torch", "transformers", "peft", "bitsandbytes", "safetensors")


@dataclass(frozen=True)
class BaseModel:
    """The model a variant is made from: a resolved folder (or hub id) and how to load it."""

    name_or_path: str
    load_config: LoadConfig = field(default_factory=LoadConfig)

    def load(self, **from_pretrained_kwargs):
        return load_model(self.name_or_path, self.load_config, **from_pretrained_kwargs)

    def fingerprint(self) -> str:
        """sha256 identifying the base weights (the GGUF's for the embedded model)."""
        return base_fingerprint(self.name_or_path)


def base_fingerprint(name_or_path: str) -> str:
    folder = Path(name_or_path)
    if not folder.is_dir():
        return "hub:" + name_or_path  # a hub id: its revision pins the weights
    provenance = folder / PROVENANCE_FILE
    if provenance.is_file():
        return json.loads(provenance.read_text())["gguf_sha256"]
    return weights_sha256(folder)


def weights_sha256(folder: Path) -> str:
    """sha256 of a folder's safetensors files, read in name order."""
    digest = hashlib.sha256()
    for weights in sorted(Path(folder).glob("*.safetensors")):
        with open(weights, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def folder_size_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def weights_size_bytes(name_or_path: str | None) -> int | None:
    """Size on disk of a model folder's safetensors weights; None for a hub id or a folder without any."""
    folder = Path(name_or_path) if name_or_path else None
    if folder is None or not folder.is_dir():
        return None
    return sum(f.stat().st_size for f in folder.glob("*.safetensors")) or None


def parameter_count(model) -> int:
    """Logical weights, whatever their storage."""

    # bitsandbytes packs two 4-bit weights per uint8 element: count logical weights, not storage.
    total = 0
    for param in model.parameters():
        shape = getattr(getattr(param, "quant_state", None), "shape", None)
        total += shape.numel() if shape is not None else param.numel()
    # torch.ao's int8 Linear keeps weight and bias packed for fbgemm, outside parameters().
    for module in int8_linears(model).values():
        bias = module.bias()
        total += module.weight().numel() + (bias.numel() if bias is not None else 0)
    return total


def write_artifact(
    model,
    out_dir: Path,
    *,
    variant: str,
    config: dict[str, Any],
    base: BaseModel,
    save,
    sparsity: dict | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Save `model` with `save(model, folder)` and write variant.json, atomically: the artifact is
    built in a temporary sibling folder and renamed into place when complete."""
    out_dir = Path(out_dir)
    with staged_folder(out_dir) as staging:
        save(model, staging)
        manifest = {
            "variant": variant,
            "config": config,
            "base_model": {"name_or_path": base.name_or_path, "sha256": base.fingerprint()},
            "libraries": _library_versions(),
            "created_unix": time.time(),
            "created": timestamp(),
            "parameter_count": parameter_count(model),
            "sparsity": sparsity,
            **(extra or {}),
        }
        # Size on disk of the weights: variant.json itself is not counted.
        manifest["size_on_disk_bytes"] = folder_size_bytes(staging)
        manifest["weights_sha256"] = weights_sha256(staging)
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return out_dir


@contextmanager
def staged_folder(out_dir: Path) -> Iterator[Path]:
    """A temporary sibling of `out_dir` to write into; renamed into place (replacing any old one) when
    the block succeeds, removed when it fails, so readers never see a half-written folder."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        yield staging
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise CodegenBenchError(
            f"variant={str(folder)!r} is a folder without {MANIFEST}: pass a variant artifact folder "
            "(made by `codegen-bench build`) or a variant name"
        )
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CodegenBenchError(f"{path} is not valid JSON ({exc}): rebuild the artifact") from exc
    if "weights_sha256" not in manifest:
        _add_weights_sha256(manifest, path)
    return manifest


def _add_weights_sha256(manifest: dict[str, Any], path: Path) -> None:
    """Artifacts built before manifests recorded their weights' sha256 get it once, on first read
    (seconds for a full-size model), so their results name them like any other."""
    manifest["weights_sha256"] = weights_sha256(path.parent)
    # A read-only artifact folder: the hash is still reported, just not kept.
    with suppress(OSError):
        write_text_atomic(path, json.dumps(manifest, indent=2))


def check_base(manifest: dict[str, Any], folder: Path, base: BaseModel) -> None:
    expected = manifest["base_model"]["sha256"]
    if expected != base.fingerprint():
        raise CodegenBenchError(
            f"variant artifact {folder} was made from {manifest['base_model']['name_or_path']} "
            f"(sha256 {expected[:12]}...), not from {base.name_or_path}: pass that model as pretrained=, "
            "or rebuild the variant for this one"
        )
