"""predict (gpu): per-study, per-level severity probabilities for any ingested studies.

Reads an ingest stage (``ingest_stage``: the studies to predict) and a model bundle
(``models_uri``: the bundle's URI or a training run holding one; default this run's ``bundle``
stage): the U-Net, nnU-Net per family, the DenseNet, the prior and their calibration. For each study:

1. the U-Net segments every sagittal stack; disc levels and canal centres as in vertebra-segment;
2. spinal canal stenosis: nnU-Net (spinal) on the mid-sagittal T2 slice nearest each level's canal
   centre; the level's severity distribution is nnU-Net's softmax over that level's three classes,
   averaged over the pixels predicted as that level in a disk around the level point (if none, the
   severities summed over levels in that disk);
3. left/right foraminal narrowing: nnU-Net (foraminal) on the T1 slice nearest the point
   ``foramen_offset_mm`` left (+x) or right of the canal centre, likewise;
4. left/right subarticular stenosis: the DenseNet on the axial crop at the level's canal centre;
5. the prior wherever a series, a level or a model is missing.

Model outputs are combined with the training prior as evidence (``nnunet_tau``, ``densenet_tau``):
calibrated probabilities, not raw softmax.

A study whose data cannot be used (:class:`lumbar_core.errors.StudyDataError`, a damaged volume) is
reported in ``problems.parquet`` and predicted from the prior; if more than ``max_failed_fraction``
of the studies fail so, the stage fails. Any other exception is a bug and fails the stage at once.

With ``shard_count`` > 1 a task predicts every ``shard_count``-th study (sorted, from ``shard_index``)
into ``{run}/{name}-shard-{i}/``, and ``predict-merge`` combines the shards into ``{run}/{name}/``.

Writes under ``{run}/predict/``: ``predictions.parquet`` (study_id, condition, level, normal_mild,
moderate, severe, source: nnunet | densenet | prior), ``levels.parquet``, ``problems.parquet`` and
``timing.json`` (seconds per study by step; torch's threads, per shard once merged).
"""

from __future__ import annotations

import tempfile
import time
import zipfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core import store, vocab
from lumbar_core.axial import level_crops
from lumbar_core.calibration import combine_with_prior, evidence
from lumbar_core.documents import BundleMetadata
from lumbar_core.errors import StudyDataError
from lumbar_core.ingested import IngestedData, Volume
from lumbar_core.levels import check_order, combine_series, level_centres, segment_stack, vertebra_centres
from lumbar_core.manifest import Manifest, ManifestError, StageInput, StageOutput, shard_stage
from lumbar_core.model_bundle import open_bundle
from lumbar_core.models.densenet import load_densenet, predict_sides
from lumbar_core.models.unet import load_model
from lumbar_core.nnunet.predict import level_distribution
from lumbar_core.params import Params
from lumbar_core.prior import prior_from_json
from lumbar_core.sagittal import canonical_of_stack, resample_slice, resize_to

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
        batch_size: U-Net slices per forward pass.
        nnunet_tau: exponent of nnU-Net's evidence (None: the value nnunet-train fitted on its
            validation cases). The evidence is nnU-Net's softmax plus the fitted floor, divided by
            the severity frequencies training drew at that level; the distribution is
            prior x evidence ** tau (0 = prior only).
        densenet_tau: exponent of the DenseNet's evidence (None: the value densenet-train fitted). Its
            loss weighted classes (1, 2, 4) on natural frequencies, so the evidence is
            (p + floor) / (w x prior).
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
    nnunet_tau: float | None = None
    densenet_tau: float | None = None
    max_failed_fraction: float = 0.25
    shard_index: int = 0
    shard_count: int = 1
    name: str = STAGE


@dataclass(frozen=True)
class MergeParams(Params):
    """Parameters of predict-merge: how many shards of which predict stage to combine."""

    shard_count: int = 1
    name: str = STAGE


TABLES = ("predictions.parquet", "levels.parquet", "problems.parquet")
# What one study's bad data raises: a study-level problem, a damaged volume (checksum, truncated or
# not a zip). Anything else is a bug.
DATA_ERRORS = (StudyDataError, ManifestError, zipfile.BadZipFile, EOFError)


class _Models:
    """Everything predict loads once from a model bundle."""

    def __init__(self, bundle: StageInput, meta: BundleMetadata, work: Path):
        from lumbar_core.nnunet.predict import load_predictor

        self.meta = meta
        self.unet, self.unet_config = load_model(bundle.read_bytes(meta.unet.file))
        self.densenet, self.densenet_config = load_densenet(bundle.read_bytes(meta.densenet.file))
        self.prior = prior_from_json(bundle.read_json(meta.prior))
        self.nnunet = {}
        for family, model in meta.nnunet.items():
            for path in bundle.paths(model.folder):
                store.download(bundle.uri(path), work / path)
            self.nnunet[family] = load_predictor(work / model.folder)


def _slice_probs(predictor, volume: Volume, k: int, spacing_mm: float) -> np.ndarray:
    """nnU-Net class probabilities (classes, rows, cols) of slice ``k`` in the stack's own grid."""
    from lumbar_core.nnunet.predict import predict_slice

    canon = canonical_of_stack(volume.geometry)
    image = canon.apply(volume.pixels[k : k + 1].astype(np.float32))[0]
    probs = predict_slice(predictor, resample_slice(image, canon.spacing[1:], spacing_mm, order=1), spacing_mm)
    back = np.stack([resize_to(p, image.shape, order=1) for p in probs])
    # undo the canonical layout slice by slice: treat classes as the slice axis
    return np.stack([canon.invert(p[None])[0] for p in back])


def _nnunet_levels(predictor, spacing, volume: Volume, points: dict[str, np.ndarray], region_mm: float) -> dict[str, np.ndarray]:
    """Distribution per level, running nnU-Net once per distinct nearest slice."""
    by_slice: dict[int, list[str]] = defaultdict(list)
    for level, point in points.items():
        by_slice[volume.geometry.nearest_slice(point)[0]].append(level)
    out = {}
    for k, levels in by_slice.items():
        probs = _slice_probs(predictor, volume, k, spacing)
        plane = volume.geometry.plane(k)
        for level in levels:
            x, y, _ = plane.world_to_pixel(points[level])
            dist = level_distribution(probs, level, (x, y), region_mm / plane.col_spacing)
            if dist is not None:
                out[level] = dist
    return out


def predict_study(
    data: IngestedData, study: int, models: _Models, params: PredictParams, timing: dict
) -> tuple[list[dict], list[dict], list[dict]]:
    """Prediction rows, level rows and problems of one study."""
    index = data.index[data.index["study_id"] == study]
    sagittal = index[index["orientation"] == "sagittal"]
    t0 = time.perf_counter()
    volumes = {(r.series_id, r.stack): data.volume(study, r.series_id, r.stack) for r in sagittal.itertuples()}
    timing["decode"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    per_series = []
    for volume in volumes.values():
        mask = segment_stack(models.unet, volume, models.unet_config["spacing_mm"], params.batch_size)
        per_series.append(level_centres(mask, volume, check_order(vertebra_centres(mask, volume, 20))))
    result = combine_series(study, per_series, pd.DataFrame(), fallback=False)
    timing["segmentation"] += time.perf_counter() - t0
    found = {r["level"]: r for r in result.rows if r["source"] != "missing"}
    canal = {lv: np.array([r[f"canal_{a}"] for a in "xyz"]) for lv, r in found.items()}
    got: dict[tuple[str, str], tuple[np.ndarray, str]] = {}  # (condition, level) -> (distribution, nnU-Net family or densenet)
    t0 = time.perf_counter()
    for r in sagittal.itertuples():
        volume = volumes[(r.series_id, r.stack)]
        for family, model in models.meta.nnunet.items():
            if r.description != model.series_type:
                continue
            for condition in model.conditions:
                # a lateral condition is read foramen_offset_mm to its side (patient left is +x in LPS)
                sign = {"left": 1.0, "right": -1.0}.get(vocab.CONDITION_SIDE[condition] or "", 0.0)
                points = {lv: c + sign * params.foramen_offset_mm * np.array([1.0, 0, 0]) for lv, c in canal.items()}
                predictor = models.nnunet[family]
                for level, dist in _nnunet_levels(predictor, model.spacing_mm, volume, points, params.region_mm).items():
                    got.setdefault((condition, level), (dist, family))
    timing["nnunet"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    levels = pd.DataFrame(result.rows)
    cfg = models.densenet_config
    crops = level_crops(data, levels, study, size=cfg["size"], crop_mm=cfg["crop_mm"], max_mm=cfg["max_mm"]) if found else {}
    if crops:
        names = sorted(crops)
        left, right = predict_sides(models.densenet, np.stack([crops[n] for n in names]))
        for n, pl, pr in zip(names, left, right):
            got[("left_subarticular_stenosis", n)] = (pl, "densenet")
            got[("right_subarticular_stenosis", n)] = (pr, "densenet")
    timing["densenet"] += time.perf_counter() - t0
    rows = []
    weights = np.asarray(vocab.SEVERITY_WEIGHTS)
    for condition in vocab.CONDITIONS:
        for level in vocab.LEVELS:
            prior = models.prior[(condition, level)]
            dist, source = got.get((condition, level), (prior, "prior"))
            if source in models.meta.nnunet:
                model = models.meta.nnunet[source]
                source = "nnunet"
                tau = params.nnunet_tau if params.nnunet_tau is not None else model.calibration.tau
                frequencies = np.asarray(model.class_frequencies[level], dtype=float)
                dist = combine_with_prior(prior, evidence(dist, frequencies, model.calibration.floor), tau)
            elif source == "densenet":
                fitted = models.meta.densenet_calibration
                tau = params.densenet_tau if params.densenet_tau is not None else fitted.tau
                dist = combine_with_prior(prior, evidence(dist, weights * prior, fitted.floor), tau)
            rows.append(
                {
                    "study_id": study,
                    "condition": condition,
                    "level": level,
                    **dict(zip(vocab.SEVERITY_COLUMNS, map(float, dist))),
                    "source": source,
                }
            )
    return rows, result.rows, result.problems


def _prior_rows(study: int, prior) -> list[dict]:
    return [
        {"study_id": study, "condition": c, "level": lv, **dict(zip(vocab.SEVERITY_COLUMNS, map(float, prior[(c, lv)]))), "source": "prior"}
        for c in vocab.CONDITIONS
        for lv in vocab.LEVELS
    ]


class TooManyFailedStudiesError(RuntimeError):
    """More studies than ``max_failed_fraction`` could not be predicted: something systematic is wrong."""


def run(*, run_uri: str, params: PredictParams) -> Manifest:
    """Predict every study of ``ingest_stage``; a study with bad data is reported and predicted from the prior."""
    data = IngestedData.open(run_uri, params.ingest_stage)
    bundle, meta = open_bundle(params.models_uri, run_uri)
    out = StageOutput(run_uri, shard_stage(params.name, params.shard_index, params.shard_count))
    rows, level_rows, problems = [], [], []
    timing: dict[str, float] = defaultdict(float)
    studies = sorted(data.index["study_id"].unique())[params.shard_index :: params.shard_count]
    with tempfile.TemporaryDirectory(prefix="lumbar-predict-") as tmp:
        models = _Models(bundle, meta, Path(tmp))
        failed = []
        for study in tqdm(studies, desc="predict", unit="study"):
            try:
                r, lv, pr = predict_study(data, study, models, params, timing)
            except DATA_ERRORS as exc:  # one study's bad data never kills the run; a bug does
                failed.append(study)
                problems.append({"study_id": study, "kind": "prediction failed", "message": f"study {study}: {type(exc).__name__}: {exc}"})
                r, lv, pr = _prior_rows(study, models.prior), [], []
            rows += r
            level_rows += lv
            problems += pr
    if len(failed) > params.max_failed_fraction * len(studies):
        raise TooManyFailedStudiesError(
            f"predict: {len(failed)} of {len(studies)} studies failed (more than max_failed_fraction "
            f"{params.max_failed_fraction}): {'; '.join(p['message'] for p in problems if p['study_id'] in failed)[:2000]}"
        )
    predictions = pd.DataFrame(rows, columns=COLUMNS)
    frames = (predictions, pd.DataFrame(level_rows), pd.DataFrame(problems, columns=["study_id", "kind", "message"]))
    per_study = {k: v / max(1, len(studies)) for k, v in timing.items()}
    metrics = {"bundle": meta.bundle_id}
    return _commit(out, frames, per_study, len(studies), params=params.to_dict(), threads=_torch_threads(), extra=metrics)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _commit(
    out: StageOutput, frames, per_study: dict[str, float], studies: int, *, params: dict, threads: list | int, extra: dict | None = None
) -> Manifest:
    predictions, _, problems = frames
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
