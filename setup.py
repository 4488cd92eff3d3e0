"""Installs codegen_bench_lm_eval.pth beside the package, in regular and editable installs.

lm-eval 0.4.13 discovers neither models nor tasks from installed packages. The .pth file runs one
cheap import at interpreter start-up (an import hook, no lm-eval or torch import) so the plain
`lm_eval --model codegen --tasks humaneval_custom` finds both. Everything else is in pyproject.toml.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

PTH = Path(__file__).parent / "harness" / "codegen_bench_lm_eval.pth"


class BuildPyWithPth(build_py):
    def run(self):
        super().run()
        self.copy_file(str(PTH), str(Path(self.build_lib) / PTH.name))


class _StrategyWithPth:
    """Wraps setuptools' editable strategy to add our .pth to the editable wheel too."""

    def __init__(self, strategy):
        self.strategy = strategy

    def __enter__(self):
        self.strategy.__enter__()
        return self

    def __exit__(self, *exc):
        return self.strategy.__exit__(*exc)

    def __call__(self, wheel, files, mapping):
        self.strategy(wheel, files, mapping)
        wheel.writestr(PTH.name, PTH.read_bytes())


class EditableWheelWithPth(editable_wheel):
    def _select_strategy(self, *args, **kwargs):
        return _StrategyWithPth(super()._select_strategy(*args, **kwargs))


setup(cmdclass={"build_py": BuildPyWithPth, "editable_wheel": EditableWheelWithPth})
