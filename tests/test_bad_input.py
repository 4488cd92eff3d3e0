"""Bad input and faults: each fails fast with one line naming the input and the fix, and an
interruption or a full disk loses no finished result. (Cases tested elsewhere: a missing model
folder, a folder without config.json and a truncated safetensors file in test_lm_eval_model.py; a hub id
while offline in test_plugin.py; a damaged GGUF part in test_provision.py; malformed, non-UTF-8 and
empty samples files in test_samples.py; Ctrl-C in the matrix in test_matrix.py.)"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from codegen_bench.harness import cli
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.execution import executor
from codegen_bench.harness.execution.samples import evaluate_samples_file
from codegen_bench.harness.files import RecordStore, write_jsonl

CLI = str(Path(sys.executable).parent / "codegen-bench")


def _one_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    assert len(lines) == 1, text
    return lines[0]


# --- model and variant ----------------------------------------------------------------------------


def test_an_unknown_variant_fails_before_any_model_is_loaded():
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    # The model path does not exist either: the variant is checked first, so no loading (and for
    # the default model no provisioning) is paid for a typo.
    with pytest.raises(CodegenBenchError, match=r"variant='nf5' is unknown: available variants are base, "):
        CodegenLM(pretrained="/no/such/model", variant="nf5")


def test_an_unknown_variant_config_key_names_the_valid_ones():
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    with pytest.raises(
        CodegenBenchError, match=r"variant 'l1-pruned' has no config key 'foo': its keys are "
    ):
        CodegenLM(pretrained="/no/such/model", variant="l1-pruned", **{"variant.foo": "1"})


def test_config_overrides_for_an_artifact_folder_are_refused(base, isolated_cache, tmp_path):
    from codegen_bench.variants import build_artifact, check_variant_spec

    _, folder = build_artifact("l1-pruned", base, {"sparsity": "0.2"}, tmp_path / "l1")
    with pytest.raises(
        CodegenBenchError, match=r"is an artifact folder, whose config is fixed .* drop variant\.sparsity"
    ):
        check_variant_spec(str(folder), {"sparsity": "0.5"})


def test_an_adapter_folder_without_an_adapter_is_refused_before_any_model_loads(tmp_path, monkeypatch):
    from codegen_bench.harness.lm_eval_plugin.model import CodegenLM

    monkeypatch.setattr("codegen_bench.variants.artifact.load_model", lambda *a, **k: pytest.fail("loaded"))
    for variant in ("lora", "qlora"):
        with pytest.raises(
            CodegenBenchError,
            match=rf"variant '{variant}': adapter='{tmp_path}' holds no adapter_config\.json",
        ):
            CodegenLM(pretrained="/no/such/model", variant=variant, **{"variant.adapter": str(tmp_path)})


def test_an_adapter_for_another_base_model_is_named(base, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from codegen_bench.variants import load_variant

    # A plain PEFT folder (no variant.json, so no recorded base) made on a wider model.
    other = Qwen2ForCausalLM(
        Qwen2Config(
            vocab_size=base.load().config.vocab_size,
            hidden_size=96,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        )
    )
    adapter = tmp_path / "adapter"
    peft_model = get_peft_model(other, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.peft_config["default"].base_model_name_or_path = "some-org/wider-model"
    peft_model.save_pretrained(adapter)
    with pytest.raises(CodegenBenchError) as caught:
        load_variant("lora", base, {"adapter": str(adapter)})
    message = str(caught.value)
    assert "\n" not in message
    assert f"adapter {adapter} does not fit the base model {base.name_or_path}" in message
    assert "it was trained on 'some-org/wider-model': pass that model as pretrained=" in message


# --- samples files ---------------------------------------------------------------------------------


def _samples(path: Path, completions: list[str], task_id: str = "HumanEval/53") -> Path:
    write_jsonl(path, [{"task_id": task_id, "completion": c} for c in completions])
    return path


def test_an_unknown_task_id_is_named_with_file_and_line(tmp_path, capsys):
    path = tmp_path / "samples.jsonl"
    path.write_text(
        json.dumps({"task_id": "HumanEval/53", "completion": "    return x + y\n"})
        + "\n\n"
        + json.dumps({"task_id": "HumanEval/999", "completion": ""})
        + "\n"
    )
    assert cli.main(["exec", str(path)]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"codegen-bench: error: {path}, line 3: task_id 'HumanEval/999' is not in the problem set "
        "(164 tasks, e.g. 'HumanEval/0'): fix the id, or pass the matching problem file (--problems)"
    )


def test_a_completion_of_several_megabytes_gets_a_verdict_not_a_crash(tmp_path):
    path = _samples(tmp_path / "big.jsonl", ["    return x + y\n" + "    # padding\n" * 400_000])
    assert evaluate_samples_file(path, ks=(1,), progress=False) == {"pass@1": 0.0}
    (record,) = [json.loads(line) for line in Path(f"{path}_results.jsonl").read_text().splitlines()]
    assert "max_program_bytes" in record["result"]


# --- interruption and full disk ----------------------------------------------------------------------


def test_an_interrupted_exec_keeps_its_verdicts_and_resumes(tmp_path, monkeypatch):
    path = _samples(tmp_path / "s.jsonl", ["    return x + y\n", "    return 0\n"] * 3)
    real = executor.execute_program
    calls = []

    def interrupted_after_two(program, limits):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(program)
        return real(program, limits)

    monkeypatch.setattr(executor, "execute_program", interrupted_after_two)
    with pytest.raises(KeyboardInterrupt):
        evaluate_samples_file(path, workers=1, ks=(1,), progress=False)
    journal = Path(f"{path}_results.jsonl.partial")
    assert len(RecordStore(journal).read()) == 2
    assert not Path(f"{path}_results.jsonl").exists()

    calls.clear()
    monkeypatch.setattr(executor, "execute_program", lambda p, lim: calls.append(p) or real(p, lim))
    assert evaluate_samples_file(path, workers=1, ks=(1,), progress=False) == {"pass@1": pytest.approx(0.5)}
    assert len(calls) == 4  # only the samples without a verdict ran
    assert not journal.exists()
    results = [json.loads(line) for line in Path(f"{path}_results.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in results] == [True, False] * 3


def test_sigterm_during_exec_stops_cleanly_and_a_rerun_finishes(tmp_path):
    slow = "    return x + y\n\nimport time\ntime.sleep(0.4)\n"  # 0.4 s per sample, once
    path = _samples(tmp_path / "s.jsonl", [slow] * 12)
    journal = Path(f"{path}_results.jsonl.partial")
    process = subprocess.Popen(
        [CLI, "exec", str(path), "--workers", "1", "--k", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (journal.is_file() and journal.read_text().count("\n") >= 2) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "Traceback" not in err
    assert (
        err.rstrip().splitlines()[-1]
        == "codegen-bench: interrupted (finished results are kept; rerun to resume)"
    )
    kept = len(RecordStore(journal).read())
    assert 2 <= kept < 12
    rerun = subprocess.run(
        [CLI, "exec", str(path), "--workers", "2", "--k", "1"], capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "pass@1: 1.0000" in rerun.stdout
    assert not journal.exists()


def test_a_full_disk_while_appending_keeps_earlier_records(tmp_path, monkeypatch):
    store = RecordStore(tmp_path / "records.jsonl")
    store.append({"variant": "base", "task": "a"})

    class DiskFullHalfway:
        """A file whose write stores half the bytes, then fails as a full disk does."""

        def __init__(self, file):
            self.file = file

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.file, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

    monkeypatch.setattr(
        "codegen_bench.harness.files.open",
        lambda *a, **k: DiskFullHalfway(open(*a, **k)),  # noqa: SIM115 (closed by the wrapper)
        raising=False,
    )
    with pytest.raises(OSError, match="No space left on device"):
        store.append({"variant": "base", "task": "b"})
    monkeypatch.undo()
    assert [r["task"] for r in store.read()] == ["a"]  # the torn half line is skipped
    store.append({"variant": "base", "task": "c"})  # space freed: appending goes on, on a new line
    assert [r["task"] for r in store.read()] == ["a", "c"]


def test_a_full_disk_while_writing_results_keeps_the_old_file_and_says_so(tmp_path, monkeypatch, capsys):
    path = _samples(tmp_path / "s.jsonl", ["    return x + y\n"])
    results = Path(f"{path}_results.jsonl")
    results.write_text("the previous results\n")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    # The atomic results write fails at its fsync; the verdict journal (which fsyncs too) is kept out.
    monkeypatch.setattr(os, "fsync", disk_full)
    monkeypatch.setattr(RecordStore, "append", lambda self, record: None)
    assert cli.main(["exec", str(path), "--k", "1"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.rstrip().splitlines()[-1] == (
        "codegen-bench: error: [Errno 28] No space left on device: "
        "check that path, its permissions and free space"
    )
    assert results.read_text() == "the previous results\n"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_an_unreachable_hub_is_one_line_naming_the_network_not_the_disk(monkeypatch, capsys):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(args):
        raise LocalEntryNotFoundError("Cannot find the requested files in the disk cache\nand more")

    # The hub's errors are OSErrors too, which the command line otherwise puts down to the file system.
    monkeypatch.setattr(cli, "_cmd_leaderboard", offline)
    assert cli.main(["leaderboard", "run"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        "codegen-bench: error: Cannot find the requested files in the disk cache: this needs the "
        "Hugging Face hub, which did not answer: check the name and your network, or set "
        "HF_HUB_OFFLINE=1 with a cached copy"
    )


def test_sigterm_becomes_a_keyboard_interrupt():
    from codegen_bench.harness.signals import sigterm_raises_keyboard_interrupt

    previous = signal.getsignal(signal.SIGTERM)
    try:
        sigterm_raises_keyboard_interrupt()
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at the next bytecode; this is never reached
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_forked_child_dies_of_sigterm_even_one_sent_during_the_fork(tmp_path):
    # A multiprocessing pool ends its workers with SIGTERM and waits for them. Here the SIGTERM is
    # sent from inside the child's after-fork hooks, before ours has run: the window in which an
    # inherited handler would lose it (lm-eval's bootstrap pool then hung the CI gate).
    script = tmp_path / "fork.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGTERM))\n"
        "from codegen_bench.harness.signals import sigterm_raises_keyboard_interrupt\n"
        "sigterm_raises_keyboard_interrupt()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    time.sleep(5)\n"
        "    os._exit(0)\n"
        "_, status = os.waitpid(pid, 0)\n"
        "died = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM\n"
        "print('child died of SIGTERM' if died else f'child ended with status {status}')\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    time.sleep(5)\n"
        "except KeyboardInterrupt:\n"
        "    print('parent interrupted')\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.stdout.splitlines() == ["child died of SIGTERM", "parent interrupted"], result.stderr


def test_lm_eval_ends_an_interrupt_with_one_line(capsys):
    from types import SimpleNamespace

    from codegen_bench.harness.lm_eval_plugin.hook import print_our_errors

    def cli_evaluate():
        raise KeyboardInterrupt

    module = SimpleNamespace(cli_evaluate=cli_evaluate)
    previous = signal.getsignal(signal.SIGTERM)
    try:
        print_our_errors(module)
        with pytest.raises(SystemExit) as exited:
            module.cli_evaluate()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == 130
    assert _one_line(capsys.readouterr().err).startswith("lm_eval: interrupted")
