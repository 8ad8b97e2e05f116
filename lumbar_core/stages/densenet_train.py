"""densenet-train (gpu): a torchvision DenseNet grading left and right subarticular stenosis on axial crops.

Reads ingest (axial volumes, labels, coordinates) and vertebra-segment (each level's canal centre). Training
crops are centred on each labelled level's spinal canal point, the point predict's level localiser
learns to find (``centre_on``; vertebra-segment's point where a level has none). For every
labelled study, level and side it takes a 2.5D crop (:mod:`lumbar_core.axial`): a few Axial T2
slices around the one nearest the level's canal point (farther than ``max_mm`` is rejected), centred
``lateral_mm`` to that side over the lateral recess, the right one mirrored so that one head reads
both sides. Cross-entropy weighted (1, 2, 4), AdamW with cosine decay to zero; training crops are
drawn a slice off a third of the time and a few pixels off, with random intensity changes
(:mod:`lumbar_core.models.crop_training`, the loop crop-train uses); mixed precision on a GPU.

Writes under ``{run}/densenet-train/``: ``model.pt`` (with ``tau``, the weight of its evidence
against the prior fitted on the held-out crops at the labelled levels; calibrate refits it on the
prediction path) and ``metrics.json`` (loss and validation accuracy and learning rate per epoch,
crops used, the fit, the held-out studies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from lumbar_core import vocab
from lumbar_core.axial import study_side_crops
from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.models.augment import intensity
from lumbar_core.models.crop_training import split_by_study, train_on_crops, training_levels
from lumbar_core.models.densenet import build_densenet, predict_crops, save_densenet
from lumbar_core.models.unet import device
from lumbar_core.params import Params
from lumbar_core.stack_crops import jitter

STAGE = "densenet-train"
MARGIN, PAD = 1, 4  # extra slices and pixels kept around each training crop, for jitter


@dataclass(frozen=True)
class DensenetTrainParams(Params):
    """Parameters of densenet-train.

    Attributes:
        arch: densenet121, densenet169 or densenet201.
        weights: '' (random init) or a local file of the arch's pretrained weights (torchvision's
            ImageNet file, for one; never downloaded).
        epochs: passes over the crops.
        batch_size: crops per step.
        lr: AdamW's starting learning rate (cosine decay to zero over the run).
        slices: neighbouring axial slices per crop (odd).
        size: crop size in pixels.
        crop_mm: crop side in millimetres.
        lateral_mm: distance of each side's crop centre from the canal point, towards that side.
        max_mm: farthest accepted distance from the level centre to an axial slice.
        val_fraction: share of the training studies held out (validation accuracy; calibrate fits on them):
            :func:`lumbar_core.splits.held_out_studies`.
        seed: random seed.
        centre_on: what training crops are centred on: ``labels`` (each labelled level's spinal canal
            point, what predict's level localiser finds; vertebra-segment's point where a level has
            none) or ``levels`` (vertebra-segment's points).
    """

    arch: str = "densenet121"
    weights: str = ""
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    slices: int = 3
    size: int = 64
    crop_mm: float = 32.0
    lateral_mm: float = 10.0
    max_mm: float = 5.0
    val_fraction: float = 0.2
    seed: int = 0
    centre_on: str = "labels"


def samples(run_uri: str, params: DensenetTrainParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crops with margins (n, slices + 2, size + 8, size + 8), their severities, studies, levels and sides."""
    data = IngestedData.open(run_uri)
    levels = training_levels(run_uri, data, params.centre_on, STAGE)
    labels = data.table("labels")
    severity = labels.set_index(["study_id", "condition", "level"])["severity"].to_dict()
    crops, targets, studies, levels_of, sides = [], [], [], [], []
    for study in tqdm(sorted(labels["study_id"].unique()), desc="axial crops", unit="study", leave=False):
        found = study_side_crops(
            data,
            levels,
            int(study),
            slices=params.slices,
            size=params.size,
            crop_mm=params.crop_mm,
            lateral_mm=params.lateral_mm,
            max_mm=params.max_mm,
            margin=MARGIN,
            pad=PAD,
        )
        for (side, level), crop in found.items():
            label = severity.get((study, f"{side}_subarticular_stenosis", level))
            if label is None or np.isnan(label):
                continue
            crops.append(crop)
            targets.append(int(label))
            studies.append(int(study))
            levels_of.append(level)
            sides.append(side)
    if not crops:
        raise ValueError("densenet-train found no labelled axial crop (no Axial T2 slice near any level centre)")
    return np.stack(crops), np.array(targets), np.array(studies), np.array(levels_of), np.array(sides)


def run(*, run_uri: str, params: DensenetTrainParams) -> Manifest:
    """Train the axial DenseNet; see the module docstring."""
    import torch

    if params.slices < 1 or params.slices % 2 == 0:
        raise ValueError(f"densenet-train: slices must be odd, got {params.slices}")
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    crops, targets, studies, levels, sides = samples(run_uri, params)
    labelled = sorted(int(s) for s in IngestedData.open(run_uri).table("labels")["study_id"].unique())
    held_out, train_idx, val_idx, val_crops = split_by_study(
        crops, studies, labelled, fraction=params.val_fraction, seed=params.seed, slices=params.slices, size=params.size
    )
    dev = device()
    model = build_densenet(params.arch, params.weights, params.slices).to(dev)

    def validate() -> float:
        if not len(val_idx):
            return float("nan")
        return float((predict_crops(model, val_crops).argmax(1) == targets[val_idx]).mean())

    history = train_on_crops(
        model,
        crops,
        targets,
        train_idx,
        window=lambda crop: intensity(jitter(crop, params.slices, params.size, rng), rng),
        validate=validate,
        epochs=params.epochs,
        batch_size=params.batch_size,
        lr=params.lr,
        rng=rng,
        desc=STAGE,
    )
    probs = predict_crops(model, val_crops) if len(val_idx) else np.zeros((0, 3))
    tau, floor, losses = _fit_tau(probs, targets[val_idx], levels[val_idx], sides[val_idx], run_uri)
    out = StageOutput(run_uri, STAGE)
    out.write_bytes("model.pt", save_densenet(model, {**params.to_dict(), "tau": tau, "floor": floor}))
    metrics = {
        "crops": len(crops),
        "train_crops": len(train_idx),
        "val_crops": len(val_idx),
        "val_accuracy": history[-1]["val_accuracy"] if history else float("nan"),
        "device": dev.type,
        "tau": tau,
        "floor": floor,
    }
    out.write_json("metrics.json", {"history": history, "tau_losses": losses, "held_out": held_out, **metrics})
    return out.commit(params=params.to_dict(), metrics=metrics)


def _fit_tau(
    probs: np.ndarray, targets: np.ndarray, levels: np.ndarray, sides: np.ndarray, run_uri: str
) -> tuple[float, float, dict[str, float]]:
    """The weight and floor of the DenseNet's evidence against the prior, fitted on the validation crops.

    The loss weighted classes (1, 2, 4) on natural frequencies, so p / (w x prior) is the evidence.
    """
    from lumbar_core.calibration import fit_tau
    from lumbar_core.prior import prior_from_json

    if len(probs) == 0:
        return 0.0, 0.0, {}
    prior = prior_from_json(StageInput.open(run_uri, "balance").read_json("prior.json"))
    priors = np.array([prior[(f"{side}_subarticular_stenosis", level)] for side, level in zip(sides, levels)])
    w = np.asarray(vocab.SEVERITY_WEIGHTS)
    return fit_tau(priors, probs, targets, denominators=w * priors)
