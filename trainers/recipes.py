"""Named training recipes, and the adapters they produce, trained once and cached.

A recipe is a seeded sample of the stdlib corpus's train split (explanation and code-generation
records; the corpus is decontaminated against HumanEval and its validation split is the held-out
`code_explain_stdlib` task) and a `TrainConfig`. `lora` and `qlora` without `adapter=` mean the
adapter of their `recipe` (default: `default`): the first use trains it into the codegen-bench cache,
keyed by the base model and the recipe, and every later use loads it from there.

    default  the matrix's lora and qlora rows: the sweep's `replay` (their training time, speed and
             what they change: results/reference/README.md, "The adapters")
    demo     `make demo`'s rows: a short training that shows the plumbing rather than a useful
             adapter
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from codegen_bench.harness.cache import cache_dir
from codegen_bench.harness.corpus.stdlib import (
    CODEGEN_FILE,
    EXPLAIN_FILE,
    DataConfig,
    cached_datasets,
    load_pairs,
)
from codegen_bench.harness.distributed import launched_world_size
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.files import json_digest, write_jsonl
from codegen_bench.trainers.replay import is_top_level_function, replay_records
from codegen_bench.trainers.sft import TrainConfig, check_target_modules, train
from codegen_bench.variants.artifact import MANIFEST, BaseModel

log = logging.getLogger(__name__)

ADAPTER_KINDS = ("lora", "qlora")


@dataclass(frozen=True)
class Recipe:
    """How many train records of each kind (a seeded sample), and how they are trained."""

    explain_examples: int
    codegen_examples: int  # standard-library function bodies, in the config's code_prompt form
    # The base model's own answers to this many train-split function requests (trainers/replay.py):
    # replayed, they hold the model's code answers where they were.
    replay_examples: int = 0
    # Explanation records whose first paragraph is shorter are not sampled. Greedy decoding ends an
    # answer at the first likely stop, so an adapter trained on all lengths answers shorter than the
    # references on average, which BLEU's brevity penalty and chrF's recall weighting both charge for.
    min_explanation_chars: int = 0
    config: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0


# The sweep of results/measurements/lora-recipes/: each controls forgetting in one way, all with
# code records in the instruct form humaneval_custom measures, and 600 explanations of at least 50
# characters (trained on every length, the adapter answered in about half the references' length).
_EXPLAIN = {"explain_examples": 600, "min_explanation_chars": 50}
_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
_REPLAY = {**_EXPLAIN, "codegen_examples": 0, "replay_examples": 160}
SWEEP = {
    # Standard-library function bodies as the code records.
    "stdlib-code": Recipe(**_EXPLAIN, codegen_examples=40),
    # The base model's own answers to code requests instead (self-distillation).
    "replay": Recipe(**_REPLAY),
    # Replay, with half the rank and learning rate: a smaller step away from the base.
    "replay-gentle": Recipe(**_REPLAY, config=TrainConfig(r=8, alpha=16, learning_rate=1e-4)),
    # Replay, with the adapter on attention only: the MLPs, where most of the code knowledge is
    # thought to sit, stay the base's.
    "replay-attention": Recipe(**_REPLAY, config=TrainConfig(target_modules=_ATTENTION)),
}
RECIPES = {
    # The sweep's recipe chosen by a rule fixed before its results were read, on data HumanEval is
    # not in: of the recipes whose held-out stdlib explanation gains (BERTScore F1 and chrF) both lie
    # above 0, the smallest KL from base on held-out stdlib code (results/measurements/lora-recipes/).
    # Replaying the base model's own code answers is what keeps HumanEval where it was; the same
    # explanations with standard-library function bodies as the code records did not.
    "default": SWEEP["replay"],
    "demo": Recipe(explain_examples=28, codegen_examples=8),
    **SWEEP,
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise CodegenBenchError(f"recipe={name!r} is not a training recipe: use one of {', '.join(RECIPES)}")
    return RECIPES[name]


def sweep_name(name: str) -> str:
    """The sweep's name for recipe `name` where it is one of the sweep's under another name (as
    `default` is), else `name`: rows of one recipe are one set of cells, as they are one adapter."""
    recipe = get_recipe(name)
    return next((sweep for sweep, swept in SWEEP.items() if swept == recipe), name)


def recipe_identity(kind: str, name: str) -> dict[str, Any]:
    """Everything that decides the recipe's adapter but the base model (the cache key, and what the
    matrix fingerprints a recipe's row by). Not the name: `default` names one of the sweep's recipes,
    whose adapter it shares."""
    recipe = get_recipe(name)
    config = dataclasses.replace(recipe.config, kind=kind)
    return {
        "kind": kind,
        "explain_examples": recipe.explain_examples,
        "codegen_examples": recipe.codegen_examples,
        "replay_examples": recipe.replay_examples,
        "min_explanation_chars": recipe.min_explanation_chars,
        "seed": recipe.seed,
        "config": json.loads(json.dumps(dataclasses.asdict(config), default=list)),
        "data": json.loads(json.dumps(dataclasses.asdict(recipe.data), default=str)),
    }


def recipe_data(name: str, base: BaseModel) -> Path:
    """The recipe's training records as one JSONL file in the cache (written once). Replayed answers
    are the base model's own, generated on first use."""
    recipe = get_recipe(name)
    corpus = cached_datasets(recipe.data)
    chosen = []
    for file, count in ((EXPLAIN_FILE, recipe.explain_examples), (CODEGEN_FILE, recipe.codegen_examples)):
        records = load_pairs(corpus / file, "train")
        longer = ""
        if file == EXPLAIN_FILE and recipe.min_explanation_chars:
            records = [r for r in records if len(r["explanation"]) >= recipe.min_explanation_chars]
            longer = f" of at least {recipe.min_explanation_chars} characters"
        chosen += _sample(name, records, count, recipe.seed, f"records of {file}{longer}")
    if recipe.replay_examples:
        functions = [r for r in load_pairs(corpus / CODEGEN_FILE, "train") if is_top_level_function(r)]
        # Another seed than the code records': the two draws are independent.
        requests = _sample(name, functions, recipe.replay_examples, recipe.seed + 1, "top-level functions")
        chosen += replay_records(base, requests, recipe.config.code_prompt)
    digest = json_digest(chosen, 12)
    path = cache_dir() / "recipes" / f"{name}-{digest}.jsonl"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jsonl(path, chosen)
    return path


def _sample(name: str, records: list[dict], count: int, seed: int, what: str) -> list[dict]:
    if count > len(records):
        raise CodegenBenchError(
            f"recipe {name!r} asks for {count} {what}, of which there are {len(records)}: lower it"
        )
    return random.Random(seed).sample(records, count)


def recipe_adapter_dir(kind: str, name: str, base: BaseModel) -> Path:
    key = json_digest(recipe_identity(kind, name), 12)
    return cache_dir() / "variants" / base.fingerprint()[:12] / f"{kind}-recipe-{key}"


def recipe_adapter(kind: str, name: str, base: BaseModel) -> Path:
    """The adapter folder of recipe `name` for `base`, trained now if the cache has none (an
    interrupted training resumes from its last checkpoint)."""
    if kind not in ADAPTER_KINDS:
        raise CodegenBenchError(f"{kind!r} has no training recipes: only {', '.join(ADAPTER_KINDS)} do")
    folder = recipe_adapter_dir(kind, name, base)
    if (folder / MANIFEST).is_file():
        return folder
    if launched_world_size() > 1:
        # Every rank of an evaluation would start the same training into the same folder.
        raise CodegenBenchError(
            f"the {kind} adapter of recipe {name!r} is not trained yet: train it once with "
            f"`codegen-bench train {kind} --recipe {name}` (or under accelerate launch), then evaluate"
        )
    log.warning("training the %s adapter of recipe %r (first use; cached in %s)", kind, name, folder)
    config = dataclasses.replace(get_recipe(name).config, kind=kind)
    check_target_modules(base, config)  # before the replayed answers are generated
    return train(recipe_data(name, base), base, config, folder, recipe=name)


def check_recipe_adapter(variant: str, overrides: dict[str, Any], base: BaseModel) -> None:
    """Where `with_recipe_adapter` would train an adapter, that its recipe fits `base`: checked before
    a run loads any model."""
    if variant not in ADAPTER_KINDS or overrides.get("adapter"):
        return
    name = str(overrides.get("recipe") or "default")
    if not (recipe_adapter_dir(variant, name, base) / MANIFEST).is_file():
        check_target_modules(base, dataclasses.replace(get_recipe(name).config, kind=variant))


def with_recipe_adapter(variant: str, overrides: dict[str, Any], base: BaseModel) -> tuple[str, dict]:
    """(variant, overrides) with a recipe's adapter filled in where `lora`/`qlora` name none: the
    adapter folder itself when nothing else is overridden, else `adapter=FOLDER` beside the rest."""
    if variant not in ADAPTER_KINDS or overrides.get("adapter"):
        return variant, overrides
    rest = {k: v for k, v in overrides.items() if k != "recipe"}
    folder = recipe_adapter(variant, str(overrides.get("recipe") or "default"), base)
    return (str(folder), {}) if not rest else (variant, {**rest, "adapter": str(folder)})
