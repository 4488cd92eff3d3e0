"""The layout stays true: imports between the project's modules point one way, no two parts of the
project import each other, and the project's own modules are imported at the top of a module, where a
reader sees them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("harness", "tasks", "variants", "trainers")

# Lower layers are imported by higher ones, never the reverse; a module may import its own layer.
LAYERS = [
    ("harness.errors",),
    (
        "harness.files",
        "harness.cache",
        "harness.config_args",
        "harness.signals",
        "harness.distributed",
        "harness.cpu",
    ),
    ("harness.provision", "harness.loading"),
    ("harness.execution",),
    ("harness.corpus",),  # the standard-library corpus: training data, wanda's calibration, a held-out task
    ("variants",),
    ("harness.engine",),
    ("tasks",),
    ("trainers",),
    ("harness.lm_eval_plugin",),
    ("harness.runs",),
    ("harness.cli",),
]
# Where a function may import the project's own modules: the command line imports each command's
# modules when that command runs (`codegen-bench exec` does not pay for torch and lm-eval), and the
# lm-eval hook runs at every interpreter start-up, so it imports nothing until lm-eval runs.
LAZY_IMPORTS_ALLOWED = {"harness/cli.py", "harness/lm_eval_plugin/hook.py"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    if module == "harness":
        return 0  # the package's docstring only
    best = None
    for rank, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix + ".")
            # The longest matching prefix decides (a sub-package may be listed apart from its package).
            if matches and (best is None or len(prefix) > best[1]):
                best = (rank, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in tests/test_layout.py")
    return best[0]


def _own_imports(tree: ast.AST):
    """(line, imported module, inside a function) for every import of codegen_bench."""
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    in_function = {id(sub) for f in functions for sub in ast.walk(f)}
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("codegen_bench"):
            base = node.module.removeprefix("codegen_bench").lstrip(".")
            # `from codegen_bench.variants import adapters` imports the submodule when there is one.
            for alias in node.names:
                candidate = f"{base}.{alias.name}" if base else alias.name
                is_module = (ROOT / Path(*candidate.split(".")).with_suffix(".py")).is_file() or (
                    ROOT / Path(*candidate.split("."))
                ).is_dir()
                names.append(candidate if is_module else base)
        elif isinstance(node, ast.Import):
            names = [
                a.name.removeprefix("codegen_bench.")
                for a in node.names
                if a.name.startswith("codegen_bench.")
            ]
        for name in names:
            yield node.lineno, name, id(node) in in_function


SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))

FOUNDATION = "harness foundation (errors, files, cache, loading, ...)"


def _part(module: str) -> str:
    """The folder-level part a module belongs to: tasks, variants, trainers, each sub-package of
    harness, harness.cli, or harness's foundation modules (the rest of harness/) together."""
    package, _, rest = module.partition(".")
    if package != "harness":
        return package
    first = rest.split(".", 1)[0]
    if first == "cli" or (first and (ROOT / "harness" / first).is_dir()):
        return f"harness.{first}"
    return FOUNDATION


def _mutual_imports(modules) -> list[str]:
    """One message per pair of parts that import each other, naming every import site of both
    directions; `modules` holds (importer's module name, its path as shown, its parsed source)."""
    sites: dict[tuple[str, str], list[str]] = {}
    for importer, shown, tree in modules:
        for line, imported, _ in _own_imports(tree):
            edge = (_part(importer), _part(imported))
            if edge[0] != edge[1]:
                sites.setdefault(edge, []).append(f"{shown}:{line} imports {imported}")
    return [
        f"{a} and {b} import each other:\n  " + "\n  ".join(dict.fromkeys(sites[(a, b)] + sites[(b, a)]))
        for a, b in sorted(sites)
        if a < b and (b, a) in sites
    ]


def _parsed_sources():
    return [(_module_name(p), str(p.relative_to(ROOT)), ast.parse(p.read_text())) for p in SOURCES]


def test_every_package_module_is_found():
    assert len(SOURCES) > 40
    assert all(_layer(_module_name(p)) >= 0 for p in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down_the_layers(path):
    importer = _module_name(path)
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {imported} (layer {_layer(imported)}) from layer "
        f"{_layer(importer)}"
        for line, imported, _ in _own_imports(ast.parse(path.read_text()))
        if _layer(imported) > _layer(importer)
    ]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_own_modules_are_imported_at_the_top(path):
    relative = str(path.relative_to(ROOT))
    if relative in LAZY_IMPORTS_ALLOWED:
        return
    hidden = [
        f"{relative}:{line} imports {imported} inside a function"
        for line, imported, in_function in _own_imports(ast.parse(path.read_text()))
        if in_function
    ]
    assert not hidden, "\n".join(hidden)


def test_no_two_parts_import_each_other():
    """Code that two parts need lives in a part below both, so each pair of parts is imported one way."""
    mutual = _mutual_imports(_parsed_sources())
    assert not mutual, "\n".join(mutual)


def test_a_mutual_import_is_caught():
    """The check itself: a corpus module importing the trainers, which import the corpus, is reported
    with the import sites of both directions."""
    planted = ast.parse("from codegen_bench.trainers.sft import train\n")
    (message,) = _mutual_imports([*_parsed_sources(), ("harness.corpus.planted", "planted.py", planted)])
    assert message.startswith("harness.corpus and trainers import each other")
    assert "planted.py:1 imports trainers.sft" in message
    assert "trainers/recipes.py:" in message and "imports harness.corpus.stdlib" in message


def test_the_foundation_is_one_part_and_each_sub_package_its_own():
    assert _part("harness.errors") == _part("harness.files") == _part("harness") == FOUNDATION
    assert _part("harness.execution.problems") == "harness.execution"
    assert _part("harness.corpus.stdlib") == "harness.corpus"
    assert _part("harness.cli") == "harness.cli"
    assert _part("trainers.sft") == "trainers"


def test_an_upward_import_is_caught(tmp_path):
    """The check itself: a variants module importing the matrix is reported."""
    tree = ast.parse("from codegen_bench.harness.runs.matrix import run_matrix\n")
    ((_, imported, _),) = list(_own_imports(tree))
    assert _layer(imported) > _layer("variants.builtin")


# A function a reader can hold in mind at once: longer ones are split into named steps.
MAX_FUNCTION_LINES = 80


def _long_functions(tree: ast.AST, relative: str) -> list[str]:
    return [
        f"{relative}:{node.lineno} {node.name} is {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def test_no_function_is_longer_than_the_limit():
    long = [
        line
        for path in SOURCES
        for line in _long_functions(ast.parse(path.read_text()), str(path.relative_to(ROOT)))
    ]
    assert not long, "split these into named steps:\n" + "\n".join(long)


def test_a_long_function_is_caught():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def too_long():\n{body}\n")
    assert _long_functions(tree, "m.py") == [f"m.py:1 too_long is {MAX_FUNCTION_LINES + 1} lines"]
