"""Training recipes: `lora`/`qlora` without an adapter train their recipe's adapter once, then reuse it."""

from __future__ import annotations

import json
import logging

import pytest

from codegen_bench.harness.cli import main
from codegen_bench.harness.corpus.stdlib import DataConfig
from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.lm_eval_plugin.model import CodegenLM
from codegen_bench.harness.runs.matrix import variant_identity
from codegen_bench.trainers import recipes, replay
from codegen_bench.trainers.recipes import RECIPES, Recipe, recipe_adapter_dir
from codegen_bench.trainers.sft import TrainConfig
from codegen_bench.variants import load_variant
from codegen_bench.variants.spec import VariantSpec

pytestmark = pytest.mark.usefixtures("isolated_cache")


@pytest.fixture
def tiny_recipe(monkeypatch):
    """A recipe small enough for the tiny model: 12 records of the first 40 stdlib files, 2 steps."""
    config = TrainConfig(r=4, alpha=8, max_steps=2, batch_size=4, logging_steps=1, max_seq_len=384)
    monkeypatch.setitem(
        RECIPES,
        "tiny",
        Recipe(explain_examples=6, codegen_examples=6, config=config, data=DataConfig(limit=40)),
    )
    return "tiny"


def test_lora_without_an_adapter_trains_its_recipe_once_then_reuses_it(
    tiny_model_dir, base, tiny_recipe, monkeypatch
):
    lm = CodegenLM(pretrained=str(tiny_model_dir), variant="lora", batch_size=2, **{"variant.recipe": "tiny"})
    training = lm.variant_manifest["training"]
    assert training["recipe"] == "tiny"
    assert sum(training["examples"].values()) == 12  # including those longer than max_seq_len
    assert training["steps"] == 2
    folder = recipe_adapter_dir("lora", "tiny", base)
    assert (folder / "adapter_model.safetensors").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("the cached adapter should have been reused")

    monkeypatch.setattr(recipes, "train", no_training)
    again = CodegenLM(
        pretrained=str(tiny_model_dir), variant="lora", batch_size=2, **{"variant.recipe": "tiny"}
    )
    assert again.variant_manifest["training"] == training


def test_train_with_no_data_trains_the_recipe_into_its_cached_folder(
    tiny_model_dir, base, tiny_recipe, capsys
):
    assert main(["train", "lora", "--recipe", "tiny", "--pretrained", str(tiny_model_dir)]) == 0
    folder = recipe_adapter_dir("lora", "tiny", base)
    assert capsys.readouterr().out.strip().endswith(str(folder))
    manifest = json.loads((folder / "variant.json").read_text())
    assert manifest["training"]["recipe"] == "tiny"
    assert manifest["training"]["data"]["sha256"]


def test_train_with_overrides_but_no_out_exits_2_with_one_line(tiny_model_dir, tiny_recipe, capsys):
    assert main(["train", "lora", "--config", "r=8", "--pretrained", str(tiny_model_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "pass --out FOLDER" in err and len(err.splitlines()) == 1


def test_an_unknown_recipe_is_refused_with_the_known_ones(tiny_model_dir):
    with pytest.raises(
        CodegenBenchError, match="recipe='nope' is not a training recipe: use one of default, demo"
    ):
        CodegenLM(pretrained=str(tiny_model_dir), variant="lora", **{"variant.recipe": "nope"})


def test_a_recipe_row_is_fingerprinted_by_its_recipe(tiny_recipe, tmp_path):
    tiny = variant_identity(VariantSpec.parse("lora=lora,variant.recipe=tiny"))
    default = variant_identity(VariantSpec.parse("lora"))
    assert tiny["recipe"]["explain_examples"] == 6
    assert default["recipe"]["explain_examples"] == RECIPES["default"].explain_examples
    demo = variant_identity(VariantSpec.parse("demo=lora,variant.recipe=demo"))
    assert demo["config"]["recipe"] == "demo"  # not one of the sweep's: named as asked for
    (tmp_path / "adapter_config.json").write_text("{}")
    given = variant_identity(VariantSpec.parse(f"lora=lora,variant.adapter={tmp_path}"))
    assert "recipe" not in given  # a given adapter is identified by its path


def test_a_row_asking_for_a_sweep_recipe_by_another_name_makes_the_sweep_rows_cells(monkeypatch):
    from codegen_bench.trainers import recipes

    monkeypatch.setitem(recipes.RECIPES, "default", recipes.SWEEP["replay-gentle"])
    default = variant_identity(VariantSpec.parse("lora"))
    swept = variant_identity(VariantSpec.parse("replay-gentle=lora,variant.recipe=replay-gentle"))
    assert default == swept
    assert default["config"]["recipe"] == "replay-gentle"
    other = variant_identity(VariantSpec.parse("replay=lora,variant.recipe=replay"))
    assert other != default


def test_lora_loaded_directly_without_an_adapter_says_how_to_get_one(base):
    with pytest.raises(CodegenBenchError, match=r"variant 'lora' has no adapter: pass variant\.adapter=PATH"):
        load_variant("lora", base)


def test_the_matrix_trains_a_recipe_row_on_first_use_and_records_its_training(
    tiny_model_dir, tiny_recipe, tmp_path, monkeypatch
):
    run = tmp_path / "run"
    args = ["matrix", "--variants", "base", "lora=lora,variant.recipe=tiny", "--tasks", "humaneval_custom"]
    args += ["--limit", "2", "--batch-size", "2", "--pretrained", str(tiny_model_dir)]
    args += ["--model-args", "max_length=256,chat=false", "--gen-kwargs", "max_gen_toks=8"]
    args += ["--out", str(run), "--no-latency"]
    assert main(args) == 0
    records = [json.loads(line) for line in (run / "records.jsonl").read_text().splitlines()]
    assert [(r["variant"], r["task"]) for r in records] == [
        ("base", "humaneval_custom"),
        ("lora", "humaneval_custom"),
    ]
    training = records[1]["model"]["variant_training"]
    assert training["recipe"] == "tiny" and training["steps"] == 2 and training["train_tokens"] > 0
    assert records[1]["model"]["variant_config"]["adapter"] == ""  # no machine path in a record
    assert "| lora |" in (run / "LEADERBOARD.md").read_text()


def test_a_recipe_samples_only_explanations_as_long_as_its_minimum(monkeypatch, base):
    monkeypatch.setitem(
        RECIPES,
        "long",
        Recipe(explain_examples=5, codegen_examples=1, min_explanation_chars=60, data=DataConfig(limit=40)),
    )
    records = [json.loads(line) for line in recipes.recipe_data("long", base).read_text().splitlines()]
    explanations = [r["explanation"] for r in records if "explanation" in r]
    assert len(explanations) == 5 and len(records) == 6
    assert all(len(text) >= 60 for text in explanations)


def test_a_recipe_asking_for_more_long_explanations_than_exist_names_the_fix(monkeypatch, base):
    monkeypatch.setitem(
        RECIPES,
        "long",
        Recipe(
            explain_examples=5, codegen_examples=1, min_explanation_chars=10**6, data=DataConfig(limit=40)
        ),
    )
    with pytest.raises(
        CodegenBenchError,
        match=r"recipe 'long' asks for 5 records of explain\.jsonl of at least 1000000 characters, of which "
        r"there are 0: lower it",
    ):
        recipes.recipe_data("long", base)


def _answers_by_rule(base, records, code_prompt, gen_kwargs):
    """Stand-in answers, one of each kind the replay keeps or drops, by the request's position."""
    answers = []
    for i, record in enumerate(records):
        name = record["id"].split(":")[-1]
        whole = record["prompt"] + "    return None\n"
        answers.append(
            [
                (f"import os\n\n{whole}", True),  # kept: the function, and what it needs
                (whole, False),  # ran out of tokens or was cut repeating
                (f"def not_{name}():\n    pass\n", True),  # another function than the one asked for
                ("def broken(:\n", True),  # not Python
            ][i % 4]
        )
    return answers


def test_replay_keeps_the_base_models_whole_answers_that_define_the_function(monkeypatch, base):
    monkeypatch.setitem(
        RECIPES,
        "replayed",
        Recipe(explain_examples=2, codegen_examples=0, replay_examples=8, data=DataConfig(limit=40)),
    )
    monkeypatch.setattr(replay, "_generate", _answers_by_rule)
    records = [json.loads(line) for line in recipes.recipe_data("replayed", base).read_text().splitlines()]
    answers = [r for r in records if "answer" in r]
    assert len(records) == 2 + 2 and len(answers) == 2  # requests 0 and 4 of 8
    for record in answers:
        name = record["id"].split(":")[-1]
        assert replay.is_top_level_function(record) and f"def {name}(" in record["answer"]
        assert record["answer"].startswith("import os")

    def no_generation(*args):
        raise AssertionError("the cached answers should have been reused")

    monkeypatch.setattr(replay, "_generate", no_generation)
    assert recipes.recipe_data("replayed", base).read_text() == "\n".join(map(json.dumps, records)) + "\n"


def test_replay_generates_one_answer_per_request_in_the_tasks_chat_form(base):
    """The real generation path on the tiny model: one answer per request, with the task's settings."""
    requests = [
        {"id": f"m:f{i}", "prompt": f'def f{i}(x):\n    """Return x plus {i}."""\n', "completion": ""}
        for i in range(3)
    ]
    kwargs = replay.task_generation_kwargs("instruct")
    assert kwargs["max_gen_toks"] == 768 and "\n```\n" in kwargs["until"]
    answers = replay._generate(base, requests, "instruct", kwargs)
    assert len(answers) == 3 and all(isinstance(text, str) for text, _ in answers)
    # One token of budget: every answer reaches it (an end of text included), none ends on its own.
    cut = replay._generate(base, requests, "instruct", {**kwargs, "max_gen_toks": 1})
    assert [ended for _, ended in cut] == [False] * 3


def test_two_names_of_one_recipe_share_its_adapter_and_fingerprint(monkeypatch, base, tiny_recipe):
    monkeypatch.setitem(RECIPES, "alias", RECIPES[tiny_recipe])
    assert recipe_adapter_dir("lora", "alias", base) == recipe_adapter_dir("lora", tiny_recipe, base)
    assert recipes.recipe_identity("lora", "alias") == recipes.recipe_identity("lora", tiny_recipe)
    monkeypatch.setitem(RECIPES, "other", Recipe(explain_examples=6, codegen_examples=5))
    assert recipe_adapter_dir("lora", "other", base) != recipe_adapter_dir("lora", tiny_recipe, base)


def _fail_if_loaded(monkeypatch):
    def no_weights(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("codegen_bench.variants.artifact.load_model", no_weights)


def test_target_modules_of_no_module_are_refused_with_the_models_projections_before_loading(
    tiny_model_dir, tiny_recipe, tmp_path, monkeypatch, capsys
):
    _fail_if_loaded(monkeypatch)
    args = ["train", "lora", "--pretrained", str(tiny_model_dir), "--recipe", tiny_recipe]
    assert main([*args, "--config", "target_modules=c_attn+c_fc", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "target_modules=c_attn+c_fc names no module of " in err
    # The tiny Qwen2's projections, as the fix to pass (the output head is no LoRA target).
    assert "--config target_modules=down_proj+gate_proj+k_proj+o_proj+q_proj+up_proj+v_proj --out DIR" in err
    assert not (tmp_path / "a").exists()


def test_target_modules_matching_only_some_projections_warn_of_those_the_adapter_leaves_out(
    tiny_model_dir, monkeypatch, caplog
):
    from codegen_bench.trainers.sft import TrainConfig, check_target_modules
    from codegen_bench.variants import BaseModel

    _fail_if_loaded(monkeypatch)
    # As a fused model answers the default target modules: some names match, others do not.
    config = TrainConfig(target_modules=("qkv_proj", "o_proj", "down_proj"))
    with caplog.at_level(logging.WARNING, logger="codegen_bench.trainers.sft"):
        check_target_modules(BaseModel(str(tiny_model_dir)), config)
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "target_modules qkv_proj name no module of " in warning
    assert (
        "the adapter goes on down_proj+o_proj and leaves its gate_proj, k_proj, q_proj, up_proj, v_proj"
        in warning
    )
    assert (
        "--config target_modules=down_proj+gate_proj+k_proj+o_proj+q_proj+up_proj+v_proj --out DIR" in warning
    )


def test_the_matrix_refuses_a_recipe_that_fits_no_module_of_its_base_before_any_cell(
    tiny_model_dir, tiny_recipe, tmp_path, monkeypatch, capsys
):
    import dataclasses

    recipe = RECIPES[tiny_recipe]
    misfit = dataclasses.replace(
        recipe, config=dataclasses.replace(recipe.config, target_modules=("c_attn",))
    )
    monkeypatch.setitem(RECIPES, "misfit", misfit)
    _fail_if_loaded(monkeypatch)
    args = ["matrix", "--variants", "base", "lora=lora,variant.recipe=misfit", "--tasks", "humaneval_custom"]
    args += ["--pretrained", str(tiny_model_dir), "--out", str(tmp_path / "run"), "--no-latency"]
    assert main(args) == 2
    assert "train lora: target_modules=c_attn names no module of " in capsys.readouterr().err
    assert not (tmp_path / "run" / "records.jsonl").exists()  # not even base's cell ran
