"""The stage registry: kebab-case name -> (run function, Params class, node kind).

The CLI, the pipelines and the tests iterate over :data:`STAGES`; stages never import each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lumbar_core.errors import UnknownNameError
from lumbar_core.params import Params
from lumbar_core.stages import (
    balance,
    densenet_train,
    disc_label,
    ingest,
    nnunet_prepare,
    nnunet_train,
    predict,
    score,
    vertebra_segment,
    vertebra_train,
)


@dataclass(frozen=True)
class StageSpec:
    """One stage: its function (keyword-only, ``run_uri`` + inputs + ``params``), Params and node."""

    name: str
    run: Callable
    params: type[Params]
    node: str  # "cpu" or "gpu"
    help: str
    inputs: tuple[str, ...] = ()  # extra URI arguments besides run_uri, e.g. ("data_uri",)


STAGES: dict[str, StageSpec] = {
    "ingest": StageSpec(
        "ingest", ingest.run, ingest.IngestParams, "cpu", "DICOM series -> series index, volumes, label tables", ("data_uri",)
    ),
    "ingest-merge": StageSpec("ingest-merge", ingest.merge, ingest.MergeParams, "cpu", "combine ingest shards into one ingest stage"),
    "vertebra-train": StageSpec(
        "vertebra-train",
        vertebra_train.run,
        vertebra_train.VertebraTrainParams,
        "gpu",
        "U-Net (ResNet encoder) on a SPIDER-format folder",
        ("spider_uri",),
    ),
    "vertebra-segment": StageSpec(
        "vertebra-segment",
        vertebra_segment.run,
        vertebra_segment.VertebraSegmentParams,
        "gpu",
        "vertebra masks, instances and disc-level centres of every study",
    ),
    "disc-label": StageSpec(
        "disc-label", disc_label.run, disc_label.DiscLabelParams, "cpu", "nnU-Net cases whose disc regions carry (level, severity)"
    ),
    "balance": StageSpec("balance", balance.run, balance.BalanceParams, "cpu", "class census and an oversampled case list"),
    "nnunet-prepare": StageSpec(
        "nnunet-prepare", nnunet_prepare.run, nnunet_prepare.NnunetPrepareParams, "cpu", "nnU-Net raw datasets, plans, preprocessing"
    ),
    "nnunet-train": StageSpec("nnunet-train", nnunet_train.run, nnunet_train.NnunetTrainParams, "gpu", "nnU-Net 2d training per family"),
    "densenet-train": StageSpec(
        "densenet-train", densenet_train.run, densenet_train.DensenetTrainParams, "gpu", "axial DenseNet for subarticular stenosis"
    ),
    "predict": StageSpec("predict", predict.run, predict.PredictParams, "gpu", "severity probabilities for ingested studies"),
    "predict-merge": StageSpec("predict-merge", predict.merge, predict.MergeParams, "cpu", "combine predict shards into one predict stage"),
    "score": StageSpec("score", score.run, score.ScoreParams, "cpu", "submission.csv, score table, report.html"),
}


def get_stage(name: str) -> StageSpec:
    """A stage by name; an unknown name lists the valid ones."""
    try:
        return STAGES[name]
    except KeyError:
        raise UnknownNameError(f"unknown stage {name!r}; valid: {', '.join(STAGES)}") from None
