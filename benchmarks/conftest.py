"""Options of the latency/memory benchmark suite (benchmarks/test_latency.py)."""

from __future__ import annotations

import pytest

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.runs.latency_size import LATENCY_SIZES
from codegen_bench.harness.runs.reference import reference_variant


def pytest_addoption(parser) -> None:
    group = parser.getgroup("codegen-bench latency")
    group.addoption(
        "--variants",
        nargs="+",
        default=["base"],
        help="NAME[=VARIANT[,variant.KEY=VALUE...]] as `codegen-bench matrix` takes them (every speed "
        "is also given as a ratio to the reference variant, see --reference)",
    )
    group.addoption(
        "--reference",
        default=None,
        metavar="NAME",
        help="the variant the summary divides every speed by (default: base if among --variants, "
        "else the first, as harness/runs/reference.py decides for the matrix)",
    )
    group.addoption("--pretrained", default=None, help="base model folder (default: the embedded model)")
    group.addoption(
        "--model-args",
        default="",
        help="more `codegen` model_args for every variant, lm-eval style k=v,k=v (dtype, prepack...)",
    )
    # The full size's; `codegen-bench matrix --latency-size` passes all four (harness/runs/latency_size.py).
    full = LATENCY_SIZES["full"]
    group.addoption(
        "--prompt-tokens", type=int, default=full.prompt_tokens, help="prompt length for prefill latency"
    )
    group.addoption("--new-tokens", type=int, default=full.new_tokens, help="tokens decoded per row")
    group.addoption(
        "--decode-prompt-tokens",
        type=int,
        default=full.decode_prompt_tokens,
        help="prompt length per row before decoding",
    )
    group.addoption("--large-batch", type=int, default=16, help="the larger decode batch")
    group.addoption("--latency-rounds", type=int, default=full.rounds, help="timed rounds per measurement")


def pytest_configure(config) -> None:
    """A --reference that is not among --variants is a usage error before anything is loaded."""
    names = [spec.partition("=")[0] for spec in config.getoption("--variants")]
    try:
        reference_variant(names, config.getoption("--reference"))
    except CodegenBenchError as error:
        raise pytest.UsageError(str(error)) from None


def pytest_generate_tests(metafunc) -> None:
    if "variant_spec" in metafunc.fixturenames:
        specs = metafunc.config.getoption("--variants")
        metafunc.parametrize("variant_spec", specs, ids=[s.partition("=")[0] for s in specs], scope="module")


def pytest_terminal_summary(terminalreporter) -> None:
    import sys

    module = sys.modules.get("test_latency") or sys.modules.get("benchmarks.test_latency")
    if module is None:
        return
    for line in module.summary_lines(terminalreporter.config.getoption("--reference")):
        terminalreporter.write_line(line)


def pytest_benchmark_update_machine_info(config, machine_info) -> None:
    """Library versions next to pytest-benchmark's machine description in the JSON."""
    from importlib.metadata import version

    import torch

    machine_info["libraries"] = {
        name: version(name)
        for name in ("torch", "transformers", "lm_eval", "bitsandbytes", "peft", "codegen-bench")
    }
    machine_info["torch_threads"] = torch.get_num_threads()
