"""README.md and docs/ say what the code does: every command in them parses with the parser that
will run it, every path and link they cite exists, every `codegen-bench` subcommand and Make target
they name is real, and the commands that are cheap (no model load) run and print what the pages say.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Pages whose links and cited paths are checked too (what README.md and docs/ send the reader on to).
RESULT_PAGES = sorted([ROOT / "results" / "README.md", *(ROOT / "results").glob("*/README.md")])
RESULT_PAGES += sorted((ROOT / "results" / "measurements").glob("*/README.md"))
MAX_README_LINES = 300
# A path in backquotes that starts with one of these is a repository path.
REPO_FOLDERS = ("harness", "tasks", "variants", "trainers", "benchmarks", "results", "docs", "tests", ".ci")


@dataclass(frozen=True)
class Command:
    page: str
    argv: list[str]

    def __str__(self) -> str:
        return f"{self.page}: {shlex.join(self.argv)}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) of each fenced code block."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def _inline_code(text: str) -> list[str]:
    """The inline code spans of a page, outside fenced blocks."""
    prose = re.sub(r"^```\w*\n.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"(?<!`)`([^`\n]+)`(?!`)", prose)


def _shell_commands(page: Path) -> list[Command]:
    """Each command line of the page's bash blocks, continuation lines joined, comments dropped,
    `.venv/bin/` taken off the program's name."""
    commands = []
    for language, body in _code_blocks(page.read_text()):
        if language != "bash":
            continue
        for line in body.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                argv[0] = argv[0].removeprefix(".venv/bin/")
                commands.append(Command(_rel(page), argv))
    return commands


def _all_commands() -> list[Command]:
    return [c for page in DOCS for c in _shell_commands(page)]


@cache
def _codegen_bench_parser():
    from codegen_bench.harness.cli import build_parser

    return build_parser()


def _subcommands_of(parser) -> dict:
    import argparse

    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _subparsers() -> dict:
    return _subcommands_of(_codegen_bench_parser())


def _options(parser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


@cache
def _lm_eval_run_parser():
    from lm_eval._cli import HarnessCLI

    return HarnessCLI()._subparsers.choices["run"]


@cache
def _known_tasks() -> set[str]:
    names = set()
    for path in (ROOT / "tasks").rglob("*.yaml"):
        names |= set(re.findall(r"^(?:task|group): *(\w+)", path.read_text(), flags=re.M))
    return names


@cache
def _variant_names() -> set[str]:
    from codegen_bench.variants.registry import available_variants

    return set(available_variants())


@cache
def _make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):(?!=)", (ROOT / "Makefile").read_text(), flags=re.M))


@cache
def _make_variables() -> set[str]:
    return set(re.findall(r"^(\w+) *[?:]?=", (ROOT / "Makefile").read_text(), flags=re.M))


def _parse(parser, argv: list[str], command: Command):
    try:
        return parser.parse_args(argv)
    except SystemExit:
        pytest.fail(f"does not parse: {command}")


def _check_tasks(tasks: list[str], command: Command) -> None:
    unknown = set(tasks) - _known_tasks()
    assert not unknown, f"unknown tasks {sorted(unknown)} in {command}"


def _check_variant(variant: str, command: Command) -> None:
    # A variant is a registered name, or an artifact folder (a path).
    if "/" not in variant:
        assert variant in _variant_names(), f"unknown variant {variant!r} in {command}"


def _check_codegen_bench(argv: list[str], command: Command) -> None:
    from lm_eval.utils import simple_parse_args_string

    from codegen_bench.harness.lm_eval_plugin.model import CodegenArgs
    from codegen_bench.harness.runs.matrix import VariantSpec

    args = _parse(_codegen_bench_parser(), argv, command)
    if args.command == "matrix":
        for text in args.variants:
            _check_variant(VariantSpec.parse(text).variant, command)
        _check_tasks(args.tasks, command)
        CodegenArgs.parse(simple_parse_args_string(args.model_args or ""))
    if args.command == "build":
        _check_variant(args.variant, command)


def _check_lm_eval(argv: list[str], command: Command) -> None:
    from codegen_bench.harness.lm_eval_plugin.model import CodegenArgs

    args = _parse(_lm_eval_run_parser(), argv, command)
    assert args.model == "codegen", f"{command}: the pages document --model codegen"
    _check_tasks([t for task in args.tasks for t in task.split(",")], command)
    # Unknown keys and bad values fail here, before anything is loaded, as they do in lm_eval.
    parsed = CodegenArgs.parse(args.model_args or {})
    _check_variant(parsed.variant, command)


def _check_command(command: Command) -> None:
    program, *rest = command.argv
    if program == "codegen-bench":
        _check_codegen_bench(rest, command)
    elif program == "lm_eval":
        if rest and rest[0] in ("validate", "ls"):
            return
        _check_lm_eval(rest, command)
    elif program == "accelerate":
        from accelerate.commands.launch import launch_command_parser

        launch = _parse(launch_command_parser(), rest[1:], command)
        assert rest[0] == "launch" and launch.module, f"{command}: launch a module with -m"
        if launch.config_file:
            assert (ROOT / launch.config_file).is_file(), f"{command}: no {launch.config_file}"
        if launch.training_script == "lm_eval":
            _check_lm_eval(launch.training_script_args, command)
        else:
            assert launch.training_script == "codegen_bench.harness.cli", str(command)
            _check_codegen_bench(launch.training_script_args, command)
    elif program == "make":
        for word in rest:
            name, is_assignment, _ = word.partition("=")
            known = _make_variables() if is_assignment else _make_targets()
            assert name in known, f"{command}: the Makefile has no {name}"
    elif program == "python":
        script = ROOT / rest[0]
        assert script.is_file(), f"{command}: no {rest[0]}"
        shown = subprocess.run(
            [sys.executable, script, "--help"], capture_output=True, text=True, timeout=120
        )
        assert shown.returncode == 0, f"{command}: --help failed: {shown.stderr[-500:]}"
        for option in (word.split("=")[0] for word in rest if word.startswith("--")):
            assert option in shown.stdout, f"{command}: {rest[0]} has no {option}"
    elif program == "pip":
        import tomllib

        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        (target,) = [w for w in rest if w.startswith(".[")]
        assert target[2:-1] in extras, f"{command}: pyproject.toml has no extra {target}"
    elif program == "pytest":
        import tomllib

        config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
        markers = {m.split(":")[0] for m in config["markers"]}
        for flag, value in itertools.pairwise(rest):
            if flag == "-m":
                assert set(re.findall(r"\w+", value)) - {"not", "and", "or"} <= markers, str(command)
        for word in rest:
            if word.endswith(".py"):
                assert (ROOT / word).is_file(), f"{command}: no {word}"
    else:
        pytest.fail(f"{command}: no check for {program!r}: add one to tests/test_readme.py")


def _readme_section(heading: str) -> str:
    return README.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_the_readme_is_at_most_300_lines():
    lines = README.read_text().splitlines()
    assert 0 < len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_the_pages_hold_commands_of_every_kind():
    # Guards the parsing below: a broken block parser would find nothing and check nothing.
    programs = {c.argv[0] for c in _all_commands()}
    assert {"make", "lm_eval", "codegen-bench", "accelerate", "python", "pip", "pytest"} <= programs
    assert sum(1 for c in _shell_commands(README)) >= 6


@pytest.mark.parametrize("command", _all_commands(), ids=str)
def test_every_command_parses_as_written(command):
    _check_command(command)


def test_every_codegen_bench_subcommand_named_is_real():
    subcommands = set(_subparsers())
    named = set()
    for page in DOCS:
        code = "\n".join([*_inline_code(page.read_text()), *(b for _, b in _code_blocks(page.read_text()))])
        # A line or an inline span that starts with the program, not prose such as "the
        # codegen-bench cache" inside a comment.
        named |= set(re.findall(r"^\s*(?:\.venv/bin/)?codegen-bench ([a-z][\w-]*)", code, flags=re.M))
        named |= set(re.findall(r"codegen_bench\.harness\.cli ([a-z][\w-]*)", code))
    assert named, "no subcommand found: the pattern is broken"
    assert named <= subcommands, f"not subcommands: {sorted(named - subcommands)}"


def test_every_make_target_named_exists():
    named = set()
    for page in [*DOCS, *RESULT_PAGES]:
        code = "\n".join([*_inline_code(page.read_text()), *(b for _, b in _code_blocks(page.read_text()))])
        named |= set(re.findall(r"\bmake ([a-z][\w-]*)", code))
    assert {"demo", "test", "gate", "gate-baseline"} <= named
    assert named <= _make_targets(), f"not Make targets: {sorted(named - _make_targets())}"


def test_every_option_in_a_usage_line_is_the_subcommands():
    """The usage blocks of docs/ (```text) list each subcommand's options: each one exists."""
    subparsers = _subparsers()
    checked = 0
    for page in DOCS:
        for language, body in _code_blocks(page.read_text()):
            if language != "text":
                continue
            for usage in re.split(r"\n(?=codegen-bench )", body.strip()):
                found = re.match(r"codegen-bench ([a-z][\w-]*)", usage)
                if not found:
                    continue
                parser = subparsers[found.group(1)]
                if found.group(1) == "data":
                    parser = _subcommands_of(parser)["build"]
                missing = set(re.findall(r"(--[a-z][\w-]*)", usage)) - _options(parser)
                assert not missing, f"{_rel(page)}: codegen-bench {found.group(1)} has no {sorted(missing)}"
                checked += 1
    assert checked >= 8


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    prose = re.sub(r"^```\w*\n.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", prose, flags=re.M)}


@pytest.mark.parametrize("page", [*DOCS, *RESULT_PAGES], ids=_rel)
def test_every_link_points_at_something_that_exists(page):
    prose = re.sub(r"^```\w*\n.*?^```", "", page.read_text(), flags=re.S | re.M)
    for target in re.findall(r"\]\(([^)\s]+)\)", prose):
        if re.match(r"https?://", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{_rel(page)}: broken link {target}"
        assert ROOT in linked.parents or linked == ROOT, f"{_rel(page)}: {target} leaves the repository"
        if anchor:
            assert anchor in _anchors(linked), f"{_rel(page)}: no heading #{anchor} in {_rel(linked)}"


@cache
def _ignored_prefixes() -> tuple[str, ...]:
    """Outputs a run writes and git ignores (results/demo/...): cited, but not in a clone."""
    lines = (ROOT / ".gitignore").read_text().splitlines()
    return tuple(line.rstrip("/") for line in lines if line.startswith("results/") and "*" not in line)


@pytest.mark.parametrize("page", [*DOCS, *RESULT_PAGES], ids=_rel)
def test_every_repository_path_cited_exists(page):
    pattern = re.compile(rf"^(?:{'|'.join(re.escape(f) for f in REPO_FOLDERS)})/[\w./-]*$")
    cited = [span for span in _inline_code(page.read_text()) if pattern.match(span)]
    for block_language, body in _code_blocks(page.read_text()):
        if block_language == "bash":
            # The files a command reads (a script, a config); its output folders need not exist yet.
            words = shlex.split(body.replace("\\\n", " "), comments=True)
            cited += [w for w in words if pattern.match(w) and Path(w).suffix in (".py", ".yaml", ".json")]
    for path in cited:
        if path.startswith(_ignored_prefixes()):
            continue
        assert (ROOT / path).exists(), f"{_rel(page)}: {path} does not exist"


def test_the_model_arguments_table_matches_the_model():
    from codegen_bench.harness.lm_eval_plugin.model import DEFAULT_BATCH_SIZE, CodegenArgs

    page = (ROOT / "docs" / "lm-eval.md").read_text()
    section = page.split("## `--model codegen` arguments", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for row in re.findall(r"^\| (`[^|]+) \|", section, flags=re.M):
        documented |= set(re.findall(r"`([^`]+)`", row))
    known = {name.replace("<config key>", "<key>") for name in CodegenArgs.known()}
    assert documented == known
    batch_row = re.search(r"^\| `batch_size` \| (\w+) \|", section, flags=re.M)
    assert int(batch_row.group(1)) == DEFAULT_BATCH_SIZE == CodegenArgs().batch_size


def test_the_documented_batch_size_default_is_the_matrix_default():
    from dataclasses import fields

    from codegen_bench.harness.lm_eval_plugin.model import DEFAULT_BATCH_SIZE
    from codegen_bench.harness.runs.matrix import MatrixConfig

    assert "batch 32" in (ROOT / "docs" / "matrix.md").read_text()
    assert re.search(r"The batch size\s+defaults to 32", README.read_text())
    (field,) = [f for f in fields(MatrixConfig) if f.name == "batch_size"]
    assert field.default == DEFAULT_BATCH_SIZE == 32
    # Not given on the command line, the batch size is MatrixConfig's (None: left to it).
    assert _codegen_bench_parser().parse_args(["matrix"]).batch_size in (None, 32)


def test_the_documented_tasks_are_the_task_folder():
    page = (ROOT / "docs" / "lm-eval.md").read_text()
    table = page.split("## Tasks", 1)[1].split("\n\n", 2)[1]
    documented = set(re.findall(r"^\| `(\w+)` \|", table, flags=re.M))
    readme_list = set(re.findall(r"^- `(\w+)`: ", _readme_section("Tasks"), flags=re.M))
    top_level = _known_tasks() - {"code_explain_humaneval", "code_explain_stdlib"}  # in the group's row
    assert documented == readme_list == top_level


def test_codegen_bench_variants_lists_the_documented_variants():
    shown = subprocess.run([BIN / "codegen-bench", "variants"], capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    listed = {line.split()[0] for line in shown.stdout.splitlines() if line.strip()}
    readme = set(re.findall(r"^- `([\w-]+)`: ", _readme_section("Variants"), flags=re.M))
    table = set(re.findall(r"^\| `([\w-]+)` \|", (ROOT / "docs" / "variants.md").read_text(), flags=re.M))
    assert listed == readme == table == _variant_names()
    assert {"base", "int8-dynamic", "nf4", "l1-pruned", "wanda-pruned", "lora", "qlora"} <= listed


def test_codegen_bench_help_lists_the_subcommands_the_pages_use():
    shown = subprocess.run([BIN / "codegen-bench", "--help"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0
    for name in ("matrix", "leaderboard", "check", "exec", "train", "build", "variants", "provision"):
        assert name in shown.stdout


def test_matrix_leaderboard_and_check_take_a_reference_variant():
    for subcommand in ("matrix", "leaderboard", "check"):
        shown = subprocess.run(
            [BIN / "codegen-bench", subcommand, "--help"], capture_output=True, text=True, timeout=120
        )
        assert shown.returncode == 0
        assert "--reference" in shown.stdout, subcommand


def test_an_input_error_prints_one_line_and_exits_2(tmp_path):
    """docs/matrix.md: errors in input print one line naming the input and the fix, status 2."""
    missing = tmp_path / "missing.jsonl"
    shown = subprocess.run(
        [BIN / "codegen-bench", "exec", str(missing)], capture_output=True, text=True, timeout=120
    )
    assert shown.returncode == 2
    assert shown.stderr.strip().count("\n") == 0
    assert str(missing) in shown.stderr
    assert "status 2" in (ROOT / "docs" / "matrix.md").read_text()


def _make_dry_run(target: str) -> str:
    shown = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    return shown.stdout


def test_make_demo_is_the_matrix_the_readme_describes():
    recipe = _make_dry_run("demo").replace("\\\n", " ")
    matrix = [line for line in recipe.splitlines() if "codegen-bench matrix" in line]
    assert len(matrix) == 1
    argv = shlex.split(matrix[0])
    args = _codegen_bench_parser().parse_args(argv[1:])
    assert (args.limit, args.batch_size, args.out) == (5, 5, "results/demo")
    assert [v.split("=")[0] for v in args.variants] == [
        "base", "int8-dynamic", "nf4", "l1-pruned", "wanda-pruned", "lora", "qlora",
    ]  # fmt: skip
    assert all("variant.recipe=demo" in v for v in args.variants if v.startswith(("lora", "qlora")))
    assert not args.no_latency
    readme = README.read_text()
    for report in ("matrix.csv", "LEADERBOARD.md", "quality_vs_cost.png"):
        assert f"results/demo/{report}" in readme


def test_make_gate_checks_the_baseline_the_readme_counts():
    recipe = _make_dry_run("gate")
    assert "ATEN_CPU_CAPABILITY=avx2" in recipe
    assert "check results/ci-gate --baseline results/baseline.json" in recipe
    checks = json.loads((ROOT / "results" / "baseline.json").read_text())["checks"]
    n = len(checks)
    assert f"{n} of {n} checks passed against results/baseline.json" in README.read_text()
    assert {c["variant"] for c in checks} == {"base", "int8-dynamic"}


def test_the_reference_table_is_the_reference_run():
    """The README's reference table holds the committed run's pass@1 for every variant."""
    import csv

    with open(ROOT / "results" / "reference" / "matrix.csv", newline="") as f:
        rows = {row["variant"]: row for row in csv.DictReader(f)}
    section = _readme_section("Reference results")
    table = {
        m.group(1): m.group(2) for m in re.finditer(r"^\| ([\w-]+)[^|]* \| ([\d.]+) \[", section, flags=re.M)
    }
    assert set(table) == set(rows)
    for variant, shown in table.items():
        assert float(shown) == pytest.approx(float(rows[variant]["humaneval_custom/pass@1"]), abs=5e-4), (
            variant
        )
    assert "(results/reference/LEADERBOARD.md)" in section
