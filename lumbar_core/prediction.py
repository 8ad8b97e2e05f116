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
4. **left/right subarticular stenosis**: the DenseNet on a few axial slices around the level's canal
   point, one crop per side over the lateral recess (:mod:`lumbar_core.axial`);
5. **spinal and foraminal again**: the sagittal crop classifier on a few slices around the same
   points (:mod:`lumbar_core.sagittal_crops`), when the bundle has one;
6. the prior wherever a series, a level or a model is missing.

:func:`read_study` returns each model's raw reading (a cell may have several); :func:`combine`
weighs them against the prior (``prior x evidence_1 ** tau_1 x evidence_2 ** tau_2``,
:mod:`lumbar_core.calibration`) with the weights calibrate fitted jointly on held-out studies read
exactly this way.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from lumbar_core import store, vocab
from lumbar_core.axial import study_side_crops_of
from lumbar_core.calibration import combine_with_prior, evidence
from lumbar_core.classes import FAMILIES
from lumbar_core.ingested import IngestedData, Volume
from lumbar_core.level_qa import QaLimits, QaResult, check_study
from lumbar_core.levels import check_order, level_centres, segment_stack, vertebra_centres
from lumbar_core.nnunet.predict import level_distribution
from lumbar_core.sagittal import canonical_of_stack, resample_slice, resize_to
from lumbar_core.sagittal_crops import study_crops_of

DENSENET = "densenet"
CROP = "crop"


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
    crop: object | None = None
    crop_config: dict | None = None

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
    shift_mm: float = 2.0


@dataclass
class StudyReading:
    """One study's raw model readings, its levels and its problems.

    ``readings`` maps (condition, level) to each model's name and severity distribution: the model's
    own output before it is weighed against the prior.
    """

    readings: dict[tuple[str, str], dict[str, np.ndarray]]
    levels: list[dict]
    problems: list[dict]


#: context kept around the points nnU-Net reads, beyond the read region itself
CONTEXT_MM = 24.0


def window_around(points_px: np.ndarray, shape: tuple[int, int], spacing: tuple[float, float], side_mm: float, margin_mm: float):
    """Row and column slices of a slice that hold ``points_px`` ((n, 2) rows, cols) with ``margin_mm`` around them.

    At least ``side_mm`` on each side (nnU-Net's patch: one tile, with the context it was trained with),
    centred on the points, clipped to the slice.
    """
    out = []
    for axis in range(2):
        lo = points_px[:, axis].min() - margin_mm / spacing[axis]
        hi = points_px[:, axis].max() + margin_mm / spacing[axis]
        grow = max(0.0, side_mm / spacing[axis] - (hi - lo)) / 2
        start = max(0, int(np.floor(lo - grow)))
        stop = min(shape[axis], int(np.ceil(hi + grow)) + 1)
        out.append(slice(start, stop))
    return tuple(out)


def _slice_probs(predictor, volume: Volume, k: int, spacing_mm: float, window: tuple[slice, slice]) -> np.ndarray:
    """nnU-Net class probabilities (classes, rows, cols) of ``window`` (rows, cols of slice ``k``), in the stack's own grid."""
    from lumbar_core.nnunet.predict import predict_slice

    canon = canonical_of_stack(volume.geometry)
    image = canon.apply(volume.pixels[k : k + 1, window[0], window[1]].astype(np.float32))[0]
    probs = predict_slice(predictor, resample_slice(image, canon.spacing[1:], spacing_mm, order=1), spacing_mm)
    back = np.stack([resize_to(p, image.shape, order=1) for p in probs])
    # undo the canonical layout slice by slice: treat classes as the slice axis
    return np.stack([canon.invert(p[None])[0] for p in back])


def _nnunet_levels(predictor, spacing, volume: Volume, points: dict[str, np.ndarray], region_mm: float) -> dict[str, np.ndarray]:
    """Distribution per level, running nnU-Net once per distinct nearest slice, on the window its levels need."""
    by_slice: dict[int, list[str]] = defaultdict(list)
    for level, point in points.items():
        by_slice[volume.geometry.nearest_slice(point)[0]].append(level)
    patch_mm = float(max(predictor.configuration_manager.patch_size)) * spacing
    geometry = volume.geometry
    out = {}
    for k, levels in by_slice.items():
        plane = geometry.plane(k)
        pixels = {level: plane.world_to_pixel(points[level])[:2] for level in levels}  # (x, y)
        rows_cols = np.array([(y, x) for x, y in pixels.values()])
        window = window_around(rows_cols, volume.pixels.shape[1:], (plane.row_spacing, plane.col_spacing), patch_mm, region_mm + CONTEXT_MM)
        if any(w.start >= w.stop for w in window):  # every point far outside the image: nothing to read
            continue
        probs = _slice_probs(predictor, volume, k, spacing, window)
        for level in levels:
            x, y = pixels[level]  # the window holds each read region: read it in the window's own pixels
            dist = level_distribution(probs, level, (x - window[1].start, y - window[0].start), region_mm / plane.col_spacing)
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


def read_study(
    data: IngestedData, study: int, models: Models, params: ReadParams, timing: dict, found: dict[str, QaResult] | None = None
) -> StudyReading:
    """Every model's reading of one study at its checked levels; see the module docstring.

    ``found`` holds levels already checked on this study, by source (calibrate finds both sources' first).
    """
    index = data.index[data.index["study_id"] == study]
    sagittal = index[index["orientation"] == "sagittal"]
    t0 = time.perf_counter()
    volumes = {(r.series_id, r.stack): data.volume(study, r.series_id, r.stack) for r in sagittal.itertuples()}
    timing["decode"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    # the chosen source, then the other where QA kept fewer levels of the first
    stacks = [(volumes[(r.series_id, r.stack)], r.description) for r in sagittal.itertuples()]
    tried = []
    for source in models.sources():
        tried.append((source, found[source] if found and source in found else checked_levels(study, stacks, models, source, params)))
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
    readings = read_at_levels(data, study, volumes, canal, models, params, timing)
    return StudyReading(readings, level_rows(study, canal, source), problems)


def level_rows(study: int, canal: dict[str, np.ndarray], source: str) -> list[dict]:
    """One row per level: who found it (``missing`` where nobody did) and its canal point (also the disc centre read)."""
    return [
        {
            "study_id": study,
            "level": lv,
            "source": source if lv in canal else "missing",
            **({f"{k}_{a}": float(v) for k in ("canal", "disc") for a, v in zip("xyz", canal[lv])} if lv in canal else {}),
        }
        for lv in vocab.LEVELS
    ]


def read_at_levels(
    data: IngestedData,
    study: int,
    volumes: dict[tuple[int, int], Volume],
    canal: dict[str, np.ndarray],
    models: Models,
    params: ReadParams,
    timing: dict,
) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Each model's reading per (condition, level) at the given canal points (world, per level).

    ``volumes`` holds the study's sagittal stacks by (series, stack); ``timing`` gains each model's seconds.
    """
    index = data.index[data.index["study_id"] == study]
    sagittal = index[index["orientation"] == "sagittal"]
    readings: dict[tuple[str, str], dict[str, np.ndarray]] = defaultdict(dict)
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
                    readings[(condition, level)].setdefault(nnunet_model(family), dist)  # the first stack that reads it
    timing["nnunet"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    found_levels = pd.DataFrame([row for row in level_rows(study, canal, "given") if row["source"] != "missing"])
    if canal:
        from lumbar_core.models.densenet import predict_crops

        # axial slices are stacked along z: the DenseNet also reads shift_mm above and below each point
        config = models.densenet_config
        side_crops = shifted_crops(found_levels, "canal_z", params.shift_mm, lambda lv: study_side_crops_of(data, lv, study, config))
        for (side, level), dist in mean_readings(side_crops, predict_crops(models.densenet, _stacked(side_crops))).items():
            readings[(f"{side}_subarticular_stenosis", level)][DENSENET] = dist
    timing["densenet"] += time.perf_counter() - t0
    if models.crop is not None and canal:
        from lumbar_core.models.crop_classifier import head_of, predict_heads

        t0 = time.perf_counter()
        # sagittal slices are stacked along x: the crop classifier also reads shift_mm to the left and right
        config, offset = models.crop_config, params.foramen_offset_mm
        crops = shifted_crops(found_levels, "canal_x", params.shift_mm, lambda lv: study_crops_of(data, lv, study, config, offset))
        probs = predict_heads(models.crop, _stacked(crops), [head_of(condition) for (condition, _), _ in crops])
        for key, dist in mean_readings(crops, probs).items():
            readings[key][CROP] = dist
        timing["crop"] += time.perf_counter() - t0
    return dict(readings)


def shifted_crops(
    levels: pd.DataFrame, axis: str, shift_mm: float, crops_of: Callable[[pd.DataFrame], dict[tuple[str, str], np.ndarray]]
) -> list[tuple[tuple[str, str], np.ndarray]]:
    """(key, crop) pairs cut at the level points and, with ``shift_mm``, at the points moved that far either way along ``axis``.

    A level point is a slice off a fair share of the time (localisation errors of a few millimetres
    against slices 3-5 mm apart), so a crop model's reading is averaged over the slices the point
    could fall nearest to (:func:`mean_readings`). ``shift_mm`` 0 cuts at the points only.
    """
    out = []
    for shift in (0.0, -shift_mm, shift_mm) if shift_mm else (0.0,):
        moved = levels.assign(**{axis: levels[axis] + shift}) if shift else levels
        out += sorted(crops_of(moved).items())
    return out


def mean_readings(crops: list[tuple[tuple[str, str], np.ndarray]], probs: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """The mean distribution per key of :func:`shifted_crops`' crops, given the model's distribution of each."""
    grouped: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for (key, _), dist in zip(crops, probs):
        grouped[key].append(dist)
    return {key: np.mean(dists, axis=0) for key, dists in grouped.items()}


def _stacked(crops: list[tuple[tuple[str, str], np.ndarray]]) -> np.ndarray:
    return np.stack([crop for _, crop in crops]) if crops else np.zeros((0, 1, 1, 1), dtype=np.float32)


def denominator(models: Models, model: str, condition: str, level: str) -> np.ndarray:
    """What turns a model's distribution into evidence (:func:`lumbar_core.calibration.evidence`); see :func:`denominator_of`."""
    frequencies = {family: m.class_frequencies for family, m in models.nnunet.items()}
    return denominator_of(model, condition, level, models.prior, frequencies)


def denominator_of(model: str, condition: str, level: str, prior: dict, frequencies: dict[str, dict]) -> np.ndarray:
    """What turns ``model``'s distribution into evidence, from the prior and nnU-Net's class frequencies per family.

    nnU-Net's softmax is divided by the severity frequencies its sampling drew at that level; the
    DenseNet's and the crop classifier's losses weighted classes (1, 2, 4) on natural frequencies, so
    by the weights x the prior.
    """
    if model in (DENSENET, CROP):
        return np.asarray(vocab.SEVERITY_WEIGHTS) * prior[(condition, level)]
    family = model.removeprefix("nnunet-")
    return np.asarray(frequencies[family].get(level, np.ones(3)), dtype=float)


def source_name(model: str) -> str:
    """The kind of a model as prediction tables name it: ``nnunet``, ``densenet`` or ``crop``."""
    return "nnunet" if model.startswith("nnunet-") else model


def fuse(
    prior: np.ndarray, readings: dict[str, np.ndarray], denominators: dict[str, np.ndarray], calibration: dict[str, tuple[float, float]]
) -> np.ndarray:
    """The prior times each model's evidence ** tau, normalised; a model without (tau, floor) in ``calibration`` adds nothing."""
    dist = np.asarray(prior, dtype=float)
    for model, raw in sorted(readings.items()):
        tau, floor = calibration.get(model, (0.0, 0.0))
        dist = combine_with_prior(dist, evidence(raw, denominators[model], floor), tau)
    return dist


def combine(study: int, reading: StudyReading, models: Models, calibration: dict[str, tuple[float, float]]) -> list[dict]:
    """Prediction rows of one study: every reading of a cell weighed against the prior by its model's (tau, floor).

    ``source`` names the kinds of model that read the cell, joined by ``+`` (``crop+nnunet``), or ``prior``.
    """
    rows = []
    for condition in vocab.CONDITIONS:
        for level in vocab.LEVELS:
            found = reading.readings.get((condition, level), {})
            denominators = {m: denominator(models, m, condition, level) for m in found}
            dist = fuse(models.prior[(condition, level)], found, denominators, calibration)
            source = "+".join(sorted({source_name(m) for m in found})) or "prior"
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


READING_COLUMNS = ["study_id", "condition", "level", "model", *vocab.SEVERITY_COLUMNS]


def reading_rows(study: int, reading: StudyReading) -> list[dict]:
    """Each model's raw distribution per cell, for the per-model scores of the report."""
    return [
        {"study_id": study, "condition": c, "level": lv, "model": model, **dict(zip(vocab.SEVERITY_COLUMNS, map(float, dist)))}
        for (c, lv), found in sorted(reading.readings.items())
        for model, dist in sorted(found.items())
    ]


def prior_rows(study: int, prior) -> list[dict]:
    """A study's 25 rows from the prior alone."""
    return [
        {"study_id": study, "condition": c, "level": lv, **dict(zip(vocab.SEVERITY_COLUMNS, map(float, prior[(c, lv)]))), "source": "prior"}
        for c in vocab.CONDITIONS
        for lv in vocab.LEVELS
    ]
