"""calibrate (gpu): every model's weight against the prior, fitted on held-out studies read as predict reads them.

nnunet-train and densenet-train each fit a weight on their own validation cases, at the labelled
points; at prediction time their readings come at the levels a localiser found, on other studies.
A model that reads well at the labelled points can read badly where a localiser puts it, and its
weight must say so. This stage runs the whole prediction path (:mod:`lumbar_core.prediction`: the
localiser or U-Net, level QA, nnU-Net and the DenseNet) on the training studies that every model
left out (the intersection of what level-train, nnunet-prepare, densenet-train and crop-train held out, see
:func:`lumbar_core.splits.held_out_studies`) and fits each model's ``tau`` and ``floor``
(:func:`lumbar_core.calibration.fit_tau`) on those studies' labels. A model that cannot help there
gets a weight near zero, so its term stays at the prior.

First it measures localisation on those studies for both sources of levels, the localiser and the
SPIDER-trained U-Net (the share of labelled spinal canal points with a level within 5 mm, nearest
the right level, and the share of levels not kept: not found, or refused by QA), and chooses the
better (``levels_source``: predict uses it, and the other where QA keeps fewer of its levels); then
it reads the studies with that choice and fits the weights.

Writes under ``{run}/calibrate/``: ``calibration.json`` (:class:`lumbar_core.documents.CalibrationResult`).
"""

from __future__ import annotations

import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core.calibration import fit_tau
from lumbar_core.documents import Calibration, CalibrationResult, NnunetTraining, PreparedDatasets
from lumbar_core.ingested import IngestedData
from lumbar_core.level_qa import QaResult
from lumbar_core.localisation import errors_against, labelled_canal, points_by_level, summary
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.params import Params
from lumbar_core.prediction import Models, ReadParams, checked_levels, denominator, fuse, load_nnunet_family, read_study
from lumbar_core.prior import prior_from_json

STAGE = "calibrate"


@dataclass(frozen=True)
class CalibrateParams(Params):
    """Parameters of calibrate (the reading ones as predict's).

    Attributes:
        foramen_offset_mm: distance of the foraminal slices from the canal centre, left and right.
        region_mm: radius around a level point in which nnU-Net's severity is read.
        batch_size: slices per forward pass of the localiser or U-Net.
        shift_mm: the crop models also read this far either way across their series' slices (sagittal:
            left and right; axial: up and down) and average the three readings (0 = at the level points only).
    """

    foramen_offset_mm: float = 16.0
    region_mm: float = 14.0
    batch_size: int = 16
    shift_mm: float = 2.0


def run_models(run_uri: str, work: Path) -> Models:
    """The models a training run has made so far, loaded as a bundle would hold them."""
    from lumbar_core.models.crop_classifier import load_classifier
    from lumbar_core.models.densenet import load_densenet
    from lumbar_core.models.localiser import load_localiser
    from lumbar_core.models.unet import load_model

    unet, unet_config = load_model(StageInput.open(run_uri, "vertebra-train").read_bytes("model.pt"))
    localiser, localiser_config = load_localiser(StageInput.open(run_uri, "level-train").read_bytes("model.pt"))
    densenet, densenet_config = load_densenet(StageInput.open(run_uri, "densenet-train").read_bytes("model.pt"))
    trained = StageInput.open(run_uri, "nnunet-train")
    training = NnunetTraining.from_dict(trained.read_json("training.json"), where=f"{trained.prefix}/training.json")
    spacing = float(StageInput.open(run_uri, "disc-label", verify=False).params["spacing_mm"])
    nnunet = {
        family: load_nnunet_family(family, trained, f"results/{info.output_folder}", work, spacing, info.class_frequencies)
        for family, info in training.families.items()
    }
    crop, crop_config = load_classifier(StageInput.open(run_uri, "crop-train").read_bytes("model.pt"))
    prior = prior_from_json(StageInput.open(run_uri, "balance").read_json("prior.json"))
    return Models(
        unet, unet_config, densenet, densenet_config, nnunet, prior, localiser, localiser_config, crop=crop, crop_config=crop_config
    )


def held_out(run_uri: str) -> list[int]:
    """The training studies no model of the run trained on."""
    level = set(StageInput.open(run_uri, "level-train").read_json("metrics.json")["held_out"])
    dense = set(StageInput.open(run_uri, "densenet-train").read_json("metrics.json")["held_out"])
    crop = set(StageInput.open(run_uri, "crop-train").read_json("metrics.json")["held_out"])
    prepared = StageInput.open(run_uri, "nnunet-prepare")
    nnunet = set(PreparedDatasets.from_dict(prepared.read_json("datasets.json"), where=f"{prepared.prefix}/datasets.json").held_out)
    return sorted(int(s) for s in level & dense & crop & nnunet)


def run(*, run_uri: str, params: CalibrateParams) -> Manifest:
    """Fit every model's weight on the held-out studies on the prediction path; see the module docstring."""
    data = IngestedData.open(run_uri)
    studies = held_out(run_uri)
    labels = data.table("labels")
    labelled_points = labelled_canal(data.table("coordinates"))
    truth = {(int(r.study_id), r.condition, r.level): int(r.severity) for r in labels.itertuples() if pd.notna(r.severity)}
    read = ReadParams(params.foramen_offset_mm, params.region_mm, params.batch_size, shift_mm=params.shift_mm)
    cells: list[Cell] = []
    timing: dict[str, float] = defaultdict(float)
    sources: dict[str, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory(prefix="lumbar-calibrate-") as tmp:
        models = run_models(run_uri, Path(tmp))
        # which source finds the levels better on these studies, each after level QA
        checked: dict[int, dict[str, QaResult]] = defaultdict(dict)
        for study in tqdm(studies, desc="calibrate: levels", unit="study"):
            index = data.index[(data.index["study_id"] == study) & (data.index["orientation"] == "sagittal")]
            stacks = [(data.volume(study, r.series_id, r.stack), r.description) for r in index.itertuples()]
            labelled = points_by_level(labelled_points, study)
            for source in models.sources():
                checked[study][source] = checked_levels(study, stacks, models, source, read)
                _collect(sources[source], checked[study][source].kept, labelled)
        localisation = {
            source: {
                **summary(parts["errors"], parts["right"], int(sum(parts["labelled"]))),
                "share_dropped": sum(parts["dropped"]) / max(1, 5 * len(studies)),
            }
            for source, parts in sources.items()
        }
        models.levels_source = max(models.sources(), key=lambda s: localisation[s]["share_within_5mm"])  # ties: the localiser
        # the weights, on readings made as predict will make them
        for study in tqdm(studies, desc="calibrate: readings", unit="study"):
            reading = read_study(data, study, models, read, timing, checked[study])
            for (condition, level), found in reading.readings.items():
                if (study, condition, level) in truth:
                    denominators = {m: denominator(models, m, condition, level) for m in found}
                    cells.append(Cell(models.prior[(condition, level)], found, denominators, truth[(study, condition, level)]))
    calibrated = fit_jointly(cells)
    result = CalibrationResult(models=calibrated, studies=studies, localisation=localisation, levels_source=models.levels_source)
    out = StageOutput(run_uri, STAGE)
    out.write_json("calibration.json", result.to_dict())
    metrics = {"studies": len(studies), "levels_source": models.levels_source}
    for model, fitted in calibrated.items():
        metrics |= {f"{model}_tau": fitted.tau, f"{model}_readings": fitted.readings}
    for source, shares in localisation.items():
        metrics |= {f"{source}_within_5mm": shares["share_within_5mm"], f"{source}_right_level": shares["share_right_level"]}
    return out.commit(params=params.to_dict(), metrics=metrics)


@dataclass
class Cell:
    """One held-out (study, condition, level): the prior, each model's reading and denominator, the label."""

    prior: np.ndarray
    readings: dict[str, np.ndarray]
    denominators: dict[str, np.ndarray]
    truth: int


def _fit(cells: list[Cell], model: str, others: dict[str, tuple[float, float]]) -> tuple[float, float, dict[str, float]]:
    """``model``'s (tau, floor) on the cells it reads, on top of the prior and the ``others`` that read them too."""
    mine = [c for c in cells if model in c.readings]
    bases = [fuse(c.prior, {o: r for o, r in c.readings.items() if o != model}, c.denominators, others) for c in mine]
    return fit_tau(
        np.array(bases),
        np.array([c.readings[model] for c in mine]),
        np.array([c.truth for c in mine]),
        denominators=np.array([c.denominators[model] for c in mine]),
    )


def fit_jointly(cells: list[Cell], rounds: int = 2) -> dict[str, Calibration]:
    """Every model's (tau, floor): first each alone against the prior, then each on top of the others' current fit.

    Models that read the same cells (nnU-Net and the crop classifier: spinal, foraminal) share the
    evidence: fitted alone each would count what the other already says. A model reading cells no
    other reads keeps its own fit.
    """
    names = sorted({m for c in cells for m in c.readings})
    alone = {m: _fit(cells, m, {}) for m in names}
    joint = {m: (tau, floor) for m, (tau, floor, _) in alone.items()}
    losses = {m: fit[2] for m, fit in alone.items()}
    for _ in range(rounds):
        for m in names:
            tau, floor, losses[m] = _fit(cells, m, joint)
            joint[m] = (tau, floor)
    return {
        m: Calibration(
            tau=float(joint[m][0]),
            floor=float(joint[m][1]),
            readings=sum(m in c.readings for c in cells),
            losses=losses[m],
            alone_tau=float(alone[m][0]),
            alone_floor=float(alone[m][1]),
        )
        for m in names
    }


def _collect(parts: dict[str, list], found: dict[str, np.ndarray], labelled: dict[str, np.ndarray]) -> None:
    errors, right = errors_against(found, labelled)
    parts["errors"] += errors
    parts["right"] += right
    parts["labelled"].append(len(labelled))
    parts["dropped"].append(5 - len(found))  # not found, or refused by QA
