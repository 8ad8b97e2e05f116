"""The prediction path of one study, shared by predict (with a bundle) and calibrate (with a run's fresh models).

For each study:

1. **levels**: found on every sagittal stack by the source calibrate measured better on held-out
   studies (the level localiser, trained on the target dataset's points, or the SPIDER-trained
   vertebra U-Net), and checked by :mod:`lumbar_core.level_qa` (order, spacing, inside the image,
   on the spine axis, series agreement); where QA keeps fewer than five, the other source is tried
   and the one that keeps more is used. A level that fails is read nowhere;
2. **spinal canal stenosis**: nnU-Net (spinal) on the T2 slice nearest each level's canal point; the
   severity distribution is nnU-Net's softmax over that level's three classes, averaged over the
   pixels predicted as that level in a disk around the point;
3. **left/right foraminal narrowing**: nnU-Net (foraminal) on the T1 slice nearest the point
   ``foramen_offset_mm`` left (+x) or right of the canal point, likewise;
4. **left/right subarticular stenosis**: the DenseNet on the axial crop at the level's canal point;
5. the prior wherever a series, a level or a model is missing.

:func:`read_study` returns each model's raw reading; :func:`combine` weighs each against the prior
(``prior x evidence ** tau``, :mod:`lumbar_core.calibration`) with the weights calibrate fitted on
held-out studies read exactly this way.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lumbar_core import store, vocab
from lumbar_core.axial import level_crops
from lumbar_core.calibration import combine_with_prior, evidence
from lumbar_core.classes import FAMILIES
from lumbar_core.ingested import IngestedData, Volume
from lumbar_core.level_qa import QaLimits, QaResult, check_study
from lumbar_core.levels import check_order, level_centres, segment_stack, vertebra_centres
from lumbar_core.nnunet.predict import level_distribution
from lumbar_core.sagittal import canonical_of_stack, resample_slice, resize_to

DENSENET = "densenet"


def nnunet_model(family: str) -> str:
    """The calibration name of one nnU-Net family's model."""
    return f"nnunet-{family}"


@dataclass
class NnunetFamily:
    """One family's nnU-Net as prediction uses it."""

    predictor: object
    series_type: str
    conditions: tuple[str, ...]
    spacing_mm: float
    class_frequencies: dict[str, np.ndarray]


NNUNET_FILES = ("plans.json", "dataset.json", "fold_0/checkpoint_final.pth")  # what inference needs of a results folder


@dataclass
class Models:
    """The trained models one prediction needs, loaded once (from a bundle, or from a run's training stages)."""

    unet: object
    unet_config: dict
    densenet: object
    densenet_config: dict
    nnunet: dict[str, NnunetFamily]
    prior: dict
    localiser: object | None = None
    localiser_config: dict | None = None
    levels_source: str = "localiser"  # the one calibrate measured better on held-out studies; the other is the fallback

    def sources(self) -> list[str]:
        """Who finds the levels, in the order tried: the chosen source, then the other (if there is one)."""
        available = ["localiser", "unet"] if self.localiser is not None else ["unet"]
        return sorted(available, key=lambda s: s != self.levels_source)


def load_nnunet_family(family: str, stage, folder: str, work: Path, spacing_mm: float, frequencies: dict) -> NnunetFamily:
    """One family's nnU-Net from ``folder`` of a committed stage (nnunet-train's results or a bundle)."""
    from lumbar_core.nnunet.predict import load_predictor

    local = work / family
    for name in NNUNET_FILES:
        store.download(stage.uri(f"{folder}/{name}"), local / name)
    return NnunetFamily(
        load_predictor(local),
        FAMILIES[family].series_type,
        FAMILIES[family].conditions,
        float(spacing_mm),
        {lv: np.asarray(q, dtype=float) for lv, q in frequencies.items()},
    )


@dataclass(frozen=True)
class ReadParams:
    """How a study is read (predict's and calibrate's shared parameters)."""

    foramen_offset_mm: float = 16.0
    region_mm: float = 14.0
    batch_size: int = 16
    qa: QaLimits = field(default_factory=QaLimits)


@dataclass
class StudyReading:
    """One study's raw model readings, its levels and its problems.

    ``readings`` maps (condition, level) to (severity distribution, model name): the model's own
    output before it is weighed against the prior.
    """

    readings: dict[tuple[str, str], tuple[np.ndarray, str]]
    levels: list[dict]
    problems: list[dict]


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


def locate_levels(models: Models, volume: Volume, source: str, batch_size: int) -> dict[str, np.ndarray]:
    """Canal point per level on one sagittal stack, found by ``source`` (``localiser`` or ``unet``)."""
    if source == "localiser":
        from lumbar_core.models.localiser import localise

        found = localise(models.localiser, models.localiser_config, volume, batch_size=batch_size)
        return {lv: point for lv, (point, _) in found.items()}
    mask = segment_stack(models.unet, volume, models.unet_config["spacing_mm"], batch_size)
    found = level_centres(mask, volume, check_order(vertebra_centres(mask, volume, 20)))
    return {lv: c["canal"] for lv, c in found.items()}


def checked_levels(study: int, stacks: list[tuple[Volume, str]], models: Models, source: str, params: ReadParams) -> QaResult:
    """The levels ``source`` finds on a study's sagittal stacks (volume, series type), after level QA.

    Sagittal T2 stacks come first: their points are the spinal canal's (the localiser learns the
    canal there, and the foraminal points' midpoint on T1, a few mm away); T1 confirms them.
    """
    ordered = sorted(stacks, key=lambda s: s[1] != vocab.SAGITTAL_T2)
    return check_study(study, [(v.geometry, locate_levels(models, v, source, params.batch_size)) for v, _ in ordered], params.qa)


def read_study(data: IngestedData, study: int, models: Models, params: ReadParams, timing: dict) -> StudyReading:
    """Every model's reading of one study at its checked levels; see the module docstring."""
    index = data.index[data.index["study_id"] == study]
    sagittal = index[index["orientation"] == "sagittal"]
    t0 = time.perf_counter()
    volumes = {(r.series_id, r.stack): data.volume(study, r.series_id, r.stack) for r in sagittal.itertuples()}
    timing["decode"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    # the chosen source, then the other where QA kept fewer levels of the first
    tried = []
    for source in models.sources():
        stacks = [(volumes[(r.series_id, r.stack)], r.description) for r in sagittal.itertuples()]
        tried.append((source, checked_levels(study, stacks, models, source, params)))
        if len(tried[-1][1].kept) == len(vocab.LEVELS):
            break
    source, qa = max(tried, key=lambda t: len(t[1].kept))  # the first of equals: the chosen source
    timing["levels"] += time.perf_counter() - t0
    canal = qa.kept
    problems = list(qa.problems)
    if source != tried[0][0]:
        problems.append(
            {
                "study_id": study,
                "kind": "levels from the fallback",
                "message": f"study {study}: levels from {source}, "
                f"which QA kept {len(qa.kept)} of (the {tried[0][0]}: {len(tried[0][1].kept)})",
            }
        )
    level_rows = [
        {
            "study_id": study,
            "level": lv,
            "source": source if lv in canal else "missing",
            **({f"canal_{a}": float(v) for a, v in zip("xyz", canal[lv])} if lv in canal else {}),
            **({f"disc_{a}": float(v) for a, v in zip("xyz", canal[lv])} if lv in canal else {}),
        }
        for lv in vocab.LEVELS
    ]
    readings: dict[tuple[str, str], tuple[np.ndarray, str]] = {}
    t0 = time.perf_counter()
    for r in sagittal.itertuples():
        volume = volumes[(r.series_id, r.stack)]
        for family, model in models.nnunet.items():
            if r.description != model.series_type:
                continue
            for condition in model.conditions:
                # a lateral condition is read foramen_offset_mm to its side (patient left is +x in LPS)
                sign = {"left": 1.0, "right": -1.0}.get(vocab.CONDITION_SIDE[condition] or "", 0.0)
                points = {lv: c + sign * params.foramen_offset_mm * np.array([1.0, 0, 0]) for lv, c in canal.items()}
                for level, dist in _nnunet_levels(model.predictor, model.spacing_mm, volume, points, params.region_mm).items():
                    readings.setdefault((condition, level), (dist, nnunet_model(family)))
    timing["nnunet"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    cfg = models.densenet_config
    found_levels = pd.DataFrame([row for row in level_rows if row["source"] != "missing"])
    crops = level_crops(data, found_levels, study, size=cfg["size"], crop_mm=cfg["crop_mm"], max_mm=cfg["max_mm"]) if canal else {}
    if crops:
        from lumbar_core.models.densenet import predict_sides

        names = sorted(crops)
        left, right = predict_sides(models.densenet, np.stack([crops[n] for n in names]))
        for n, pl, pr in zip(names, left, right):
            readings[("left_subarticular_stenosis", n)] = (pl, DENSENET)
            readings[("right_subarticular_stenosis", n)] = (pr, DENSENET)
    timing["densenet"] += time.perf_counter() - t0
    return StudyReading(readings, level_rows, problems)


def denominator(models: Models, model: str, condition: str, level: str) -> np.ndarray:
    """What turns a model's distribution into evidence (:func:`lumbar_core.calibration.evidence`).

    nnU-Net's softmax is divided by the severity frequencies its sampling drew at that level; the
    DenseNet's loss weighted classes (1, 2, 4) on natural frequencies, so by the weights x the prior.
    """
    if model == DENSENET:
        return np.asarray(vocab.SEVERITY_WEIGHTS) * models.prior[(condition, level)]
    family = model.removeprefix("nnunet-")
    return models.nnunet[family].class_frequencies.get(level, np.ones(3))


def combine(study: int, reading: StudyReading, models: Models, calibration: dict[str, tuple[float, float]]) -> list[dict]:
    """Prediction rows of one study: each reading weighed against the prior by its model's (tau, floor)."""
    rows = []
    for condition in vocab.CONDITIONS:
        for level in vocab.LEVELS:
            prior = models.prior[(condition, level)]
            dist, source = prior, "prior"
            if (condition, level) in reading.readings:
                raw, model = reading.readings[(condition, level)]
                tau, floor = calibration.get(model, (0.0, 0.0))
                dist = combine_with_prior(prior, evidence(raw, denominator(models, model, condition, level), floor), tau)
                source = DENSENET if model == DENSENET else "nnunet"
            rows.append(
                {
                    "study_id": study,
                    "condition": condition,
                    "level": level,
                    **dict(zip(vocab.SEVERITY_COLUMNS, map(float, dist))),
                    "source": source,
                }
            )
    return rows


def prior_rows(study: int, prior) -> list[dict]:
    """A study's 25 rows from the prior alone."""
    return [
        {"study_id": study, "condition": c, "level": lv, **dict(zip(vocab.SEVERITY_COLUMNS, map(float, prior[(c, lv)]))), "source": "prior"}
        for c in vocab.CONDITIONS
        for lv in vocab.LEVELS
    ]
