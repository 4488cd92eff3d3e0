"""A metric is declared once beside its task (tasks/*/metrics.py): the task YAMLs, which lm-eval reads
and which keep their own `higher_is_better`, agree with the declarations, and the gate's tolerances
are the declared ones."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from codegen_bench.harness.runs import gate
from codegen_bench.tasks.metric_spec import MetricSpec, ShareOfValue
from codegen_bench.tasks.metrics import METRICS, metric_spec, metrics_by_name

TASKS = Path(__file__).resolve().parent.parent / "tasks"


class _TaskLoader(yaml.SafeLoader):
    """lm-eval's YAML with its `!function module.name` tags read as plain strings."""


_TaskLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


def _task_config(path: Path) -> dict:
    config = yaml.load(path.read_text(), Loader=_TaskLoader)
    if "include" in config:
        config = {**_task_config(path.parent / config.pop("include")), **config}
    return config


def _yaml_directions() -> dict[tuple[str, str], bool]:
    """{(task YAML, metric): higher_is_better} for every metric of every task YAML under tasks/."""
    found = {}
    for path in sorted(TASKS.rglob("*.yaml")):
        for entry in _task_config(path).get("metric_list", []):
            found[(str(path.relative_to(TASKS)), entry["metric"])] = entry["higher_is_better"]
    return found


def test_every_yaml_metric_is_declared_with_the_yamls_direction():
    directions = _yaml_directions()
    assert directions  # the YAMLs were found
    disagree = {
        key: higher
        for key, higher in directions.items()
        if metric_spec(key[1]) is None or metric_spec(key[1]).higher_is_better != higher
    }
    assert not disagree, f"declare these in tasks/*/metrics.py with the YAML's direction: {disagree}"


def test_every_declared_metric_is_reported_by_a_task():
    reported = {metric for _, metric in _yaml_directions()}
    assert set(METRICS) <= reported


def test_a_metric_declared_twice_differently_is_refused():
    same = MetricSpec(True)
    assert metrics_by_name({"m": same}, {"m": same}) == {"m": same}
    with pytest.raises(ValueError, match="declared twice"):
        metrics_by_name({"m": same}, {"m": MetricSpec(False)})


def test_per_item_rows_come_with_an_estimator():
    with pytest.raises(ValueError, match="both"):
        MetricSpec(True, item_rows=list)


def test_the_gates_rules_are_the_declared_tolerances():
    # As a baseline file lists them under "rules" (results/baseline.json), in that order.
    assert list(gate.METRIC_SCALE.items()) == [("bleu", 100.0), ("chrf", 100.0)]
    assert list(gate.RELATIVE_TOLERANCE.items()) == [
        ("nll_per_token", 0.01),
        ("bits_per_char", 0.01),
        ("top1_agreement", 0.01),
        ("kl_per_token", 0.05),
    ]
    assert metric_spec("kl_per_token").gate_tolerance == ShareOfValue(0.05)
