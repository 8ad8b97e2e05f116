"""predict (gpu): per-study, per-level severity probabilities for any ingested studies.

Reads an ingest stage (``ingest_stage``: the studies to predict) and a model bundle
(``models_uri``: the bundle's URI or a training run holding one; default this run's ``bundle``
stage): the level localiser and vertebra U-Net, nnU-Net per family, the DenseNet, the prior and
the calibration. Each study goes through :mod:`lumbar_core.prediction`: levels found and checked
(:mod:`lumbar_core.level_qa`; a level that fails is predicted from the prior and reported), each
model's reading at them, weighed against the prior with the weights calibrate fitted on held-out
studies read the same way (``nnunet_tau``, ``densenet_tau`` override them).

A study whose data cannot be used (:class:`lumbar_core.errors.StudyDataError`, a damaged volume) is
reported in ``problems.parquet`` and predicted from the prior; if more than ``max_failed_fraction``
of the studies fail so, the stage fails. Any other exception is a bug and fails the stage at once.

With ``shard_count`` > 1 a task predicts every ``shard_count``-th study (sorted, from ``shard_index``)
into ``{run}/{name}-shard-{i}/``, and ``predict-merge`` combines the shards into ``{run}/{name}/``.

Writes under ``{run}/predict/``: ``predictions.parquet`` (study_id, condition, level, normal_mild,
moderate, severe, source: the kinds of model that read the cell joined by ``+``, e.g. ``crop+nnunet``,
``densenet``, or ``prior``), ``readings.parquet`` (each model's own distribution per cell, before
the prior: the report scores each model alone from it), ``levels.parquet`` (the checked levels and
who found them), ``problems.parquet`` (level QA and unreadable studies) and ``timing.json`` (seconds
per study by step; torch's threads, per shard once merged).
"""

from __future__ import annotations

import tempfile
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from lumbar_core import vocab
from lumbar_core.documents import BundleMetadata
from lumbar_core.errors import StudyDataError
from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import Manifest, ManifestError, StageInput, StageOutput, shard_stage
from lumbar_core.model_bundle import open_bundle
from lumbar_core.params import Params
from lumbar_core.prediction import (
    CROP,
    DENSENET,
    READING_COLUMNS,
    Models,
    ReadParams,
    combine,
    load_nnunet_family,
    prior_rows,
    read_study,
    reading_rows,
)
from lumbar_core.prior import prior_from_json

STAGE = "predict"
COLUMNS = ["study_id", "condition", "level", *vocab.SEVERITY_COLUMNS, "source"]


@dataclass(frozen=True)
class PredictParams(Params):
    """Parameters of predict.

    Attributes:
        ingest_stage: the ingest stage holding the studies to predict.
        models_uri: the model bundle (its URI, or a training run holding one; '' = this run's).
        foramen_offset_mm: distance of the foraminal slices from the canal centre, left and right.
        region_mm: radius around a level point in which nnU-Net's severity is read (disc-label's
            region radius).
        batch_size: slices per forward pass of the localiser or U-Net.
        shift_mm: the crop models also read this far either way across their series' slices (sagittal:
            left and right; axial: up and down) and average the three readings (0 = at the level points only).
        nnunet_tau: exponent of nnU-Net's evidence (None: the bundle's, fitted by calibrate). The
            evidence is nnU-Net's softmax plus the fitted floor, divided by the severity frequencies
            training drew at that level; the distribution is prior x evidence ** tau (0 = prior only).
        densenet_tau: exponent of the DenseNet's evidence (None: the bundle's). Its loss weighted
            classes (1, 2, 4) on natural frequencies, so the evidence is (p + floor) / (w x prior).
        crop_tau: exponent of the sagittal crop classifier's evidence (None: the bundle's); as the DenseNet's.
        max_failed_fraction: the stage fails when more than this share of its studies cannot be
            predicted for bad data (each such study is otherwise predicted from the prior).
        shard_index: this shard's number, 0-based.
        shard_count: shards in all; studies (sorted) are dealt round-robin to shards.
        name: the stage written (``{name}`` for one shard, ``{name}-shard-{i}`` for one of several).
    """

    ingest_stage: str = "ingest"
    models_uri: str = ""
    foramen_offset_mm: float = 16.0
    region_mm: float = 14.0
    batch_size: int = 16
    shift_mm: float = 2.0
    nnunet_tau: float | None = None
    densenet_tau: float | None = None
    crop_tau: float | None = None
    max_failed_fraction: float = 0.25
    shard_index: int = 0
    shard_count: int = 1
    name: str = STAGE


@dataclass(frozen=True)
class MergeParams(Params):
    """Parameters of predict-merge: how many shards of which predict stage to combine."""

    shard_count: int = 1
    name: str = STAGE


TABLES = ("predictions.parquet", "levels.parquet", "problems.parquet", "readings.parquet")
# What one study's bad data raises: a study-level problem, a damaged volume (checksum, truncated or
# not a zip). Anything else is a bug.
DATA_ERRORS = (StudyDataError, ManifestError, zipfile.BadZipFile, EOFError)


class TooManyFailedStudiesError(RuntimeError):
    """More studies than ``max_failed_fraction`` could not be predicted: something systematic is wrong."""


def bundle_models(bundle: StageInput, meta: BundleMetadata, work: Path) -> Models:
    """Every model of a bundle, loaded."""
    from lumbar_core.models.crop_classifier import load_classifier
    from lumbar_core.models.densenet import load_densenet
    from lumbar_core.models.localiser import load_localiser
    from lumbar_core.models.unet import load_model

    unet, unet_config = load_model(bundle.read_bytes(meta.unet.file))
    densenet, densenet_config = load_densenet(bundle.read_bytes(meta.densenet.file))
    nnunet = {
        family: load_nnunet_family(family, bundle, model.folder, work, model.spacing_mm, model.class_frequencies)
        for family, model in meta.nnunet.items()
    }
    localiser, localiser_config = load_localiser(bundle.read_bytes(meta.localiser.file)) if meta.localiser else (None, None)
    crop, crop_config = load_classifier(bundle.read_bytes(meta.crop.file)) if meta.crop else (None, None)
    prior = prior_from_json(bundle.read_json(meta.prior))
    return Models(
        unet, unet_config, densenet, densenet_config, nnunet, prior, localiser, localiser_config, meta.levels_source, crop, crop_config
    )


def calibration_of(meta: BundleMetadata, params: PredictParams) -> dict[str, tuple[float, float]]:
    """Each model's (tau, floor): the bundle's, with predict's overrides."""
    out = {}
    for model, fitted in meta.calibration.items():
        override = {DENSENET: params.densenet_tau, CROP: params.crop_tau}.get(model, params.nnunet_tau)
        out[model] = (fitted.tau if override is None else override, fitted.floor)
    return out


def run(*, run_uri: str, params: PredictParams) -> Manifest:
    """Predict every study of ``ingest_stage``; a study with bad data is reported and predicted from the prior."""
    data = IngestedData.open(run_uri, params.ingest_stage)
    bundle, meta = open_bundle(params.models_uri, run_uri)
    out = StageOutput(run_uri, shard_stage(params.name, params.shard_index, params.shard_count))
    rows, level_rows, problems, raw_rows = [], [], [], []
    timing: dict[str, float] = defaultdict(float)
    studies = sorted(data.index["study_id"].unique())[params.shard_index :: params.shard_count]
    read = ReadParams(params.foramen_offset_mm, params.region_mm, params.batch_size, shift_mm=params.shift_mm)
    calibration = calibration_of(meta, params)
    failed = []
    with tempfile.TemporaryDirectory(prefix="lumbar-predict-") as tmp:
        models = bundle_models(bundle, meta, Path(tmp))
        for study in tqdm(studies, desc="predict", unit="study"):
            try:
                reading = read_study(data, study, models, read, timing)
            except DATA_ERRORS as exc:  # one study's bad data never kills the run; a bug does
                failed.append(study)
                problems.append({"study_id": study, "kind": "prediction failed", "message": f"study {study}: {type(exc).__name__}: {exc}"})
                rows += prior_rows(study, models.prior)
                continue
            rows += combine(study, reading, models, calibration)
            raw_rows += reading_rows(study, reading)
            level_rows += reading.levels
            problems += reading.problems
    if len(failed) > params.max_failed_fraction * len(studies):
        raise TooManyFailedStudiesError(
            f"predict: {len(failed)} of {len(studies)} studies failed (more than max_failed_fraction "
            f"{params.max_failed_fraction}): {'; '.join(p['message'] for p in problems if p['study_id'] in failed)[:2000]}"
        )
    predictions = pd.DataFrame(rows, columns=COLUMNS)
    frames = (
        predictions,
        pd.DataFrame(level_rows),
        pd.DataFrame(problems, columns=["study_id", "kind", "message"]),
        pd.DataFrame(raw_rows, columns=READING_COLUMNS),
    )
    per_study = {k: v / max(1, len(studies)) for k, v in timing.items()}
    metrics = {"bundle": meta.bundle_id}
    return _commit(out, frames, per_study, len(studies), params=params.to_dict(), threads=_torch_threads(), extra=metrics)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _commit(
    out: StageOutput, frames, per_study: dict[str, float], studies: int, *, params: dict, threads: list | int, extra: dict | None = None
) -> Manifest:
    predictions, _, problems, _ = frames
    for name, frame in zip(TABLES, frames):
        out.write_table(name, frame)
    out.write_json("timing.json", {"seconds_per_study": per_study, "studies": studies, "threads": threads})
    sources = predictions["source"].value_counts().to_dict()
    metrics = {"studies": studies, **{f"rows_{k}": int(v) for k, v in sources.items()}, "problems": len(problems), **(extra or {})}
    return out.commit(params=params, metrics=metrics)


def merge(*, run_uri: str, params: MergeParams) -> Manifest:
    """Combine ``{name}-shard-*`` stages into one ``{name}`` stage (one shard: that stage as it is)."""
    if params.shard_count <= 1:
        return StageInput.open(run_uri, params.name).manifest
    shards = [StageInput.open(run_uri, shard_stage(params.name, i, params.shard_count)) for i in range(params.shard_count)]
    frames = tuple(pd.concat([s.read_table(t) for s in shards], ignore_index=True) for t in TABLES)
    timings = [s.read_json("timing.json") for s in shards]
    studies = sum(t["studies"] for t in timings)
    steps = sorted({k for t in timings for k in t["seconds_per_study"]})
    per_study = {k: sum(t["seconds_per_study"].get(k, 0.0) * t["studies"] for t in timings) / max(1, studies) for k in steps}
    out = StageOutput(run_uri, params.name)
    shard_params = [s.params for s in shards]
    return _commit(
        out, frames, per_study, studies, params={**params.to_dict(), "shards": shard_params}, threads=[t.get("threads") for t in timings]
    )
