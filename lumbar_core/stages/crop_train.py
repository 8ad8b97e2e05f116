"""crop-train (gpu): a sagittal crop classifier for spinal canal stenosis and foraminal narrowing.

Reads ingest (sagittal volumes, labels, coordinates) and vertebra-segment (each level's canal centre). Training
crops are centred on each labelled level's spinal canal point, the point predict's level localiser
learns to find (``centre_on``; vertebra-segment's point where a level has none). For every
labelled study and level it takes 2.5D crops (:mod:`lumbar_core.sagittal_crops`): a few Sagittal
T2/STIR slices around the canal point (spinal) and a few Sagittal T1 slices around the points
``foramen_offset_mm`` to the left and right (foraminal; the right one mirrored, so one head reads
both sides). A timm network (``resnet18`` by default) with one head per task shared by every level
is trained with cross-entropy weighted (1, 2, 4), AdamW and cosine decay; training crops are drawn
a slice off a third of the time and a few pixels off, with random intensity changes.

This is the approach every top solution of the competition took (a CNN on crops around each level),
beside nnU-Net's per-pixel classes; calibrate fits the weight of its evidence on held-out studies on
the prediction path, jointly with the other models that read the same cells.

Writes under ``{run}/crop-train/``: ``model.pt`` and ``metrics.json`` (loss, validation accuracy and
learning rate per epoch, crops used, the held-out studies).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import Manifest, StageOutput
from lumbar_core.models.augment import intensity
from lumbar_core.models.crop_classifier import build_classifier, head_of, predict_heads, save_classifier
from lumbar_core.models.crop_training import split_by_study, train_on_crops, training_levels
from lumbar_core.models.unet import device
from lumbar_core.params import Params
from lumbar_core.sagittal_crops import study_crops
from lumbar_core.stack_crops import jitter

STAGE = "crop-train"
MARGIN, PAD = 1, 4  # extra slices and pixels kept around each training crop, for jitter


@dataclass(frozen=True)
class CropTrainParams(Params):
    """Parameters of crop-train.

    Attributes:
        arch: a timm architecture (``resnet18``, ``resnet34``, ``efficientnet_b0``, ...).
        weights: '' (random init) or a local file of the arch's pretrained weights (never downloaded).
        slices: neighbouring sagittal slices per crop (odd).
        size: crop size in pixels.
        crop_mm: crop side in millimetres.
        max_mm: farthest accepted distance from a level point to a sagittal slice.
        foramen_offset_mm: distance of the foraminal crops from the canal centre, left and right
            (predict's foramen_offset_mm).
        epochs: passes over the crops.
        batch_size: crops per step.
        lr: AdamW's starting learning rate (cosine decay to zero).
        val_fraction: share of the training studies held out (validation accuracy; calibrate fits on
            them): :func:`lumbar_core.splits.held_out_studies`.
        seed: random seed.
        centre_on: what training crops are centred on: ``labels`` (each labelled level's spinal canal
            point, what predict's level localiser finds; vertebra-segment's point where a level has
            none) or ``levels`` (vertebra-segment's points).
    """

    arch: str = "resnet18"
    weights: str = ""
    slices: int = 3
    size: int = 64
    crop_mm: float = 48.0
    max_mm: float = 6.0
    foramen_offset_mm: float = 16.0
    epochs: int = 15
    batch_size: int = 32
    lr: float = 1e-3
    val_fraction: float = 0.2
    seed: int = 0
    centre_on: str = "labels"


def samples(run_uri: str, params: CropTrainParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Crops with margins (n, slices + 2, size + 8, size + 8), their severities, heads and studies."""
    data = IngestedData.open(run_uri)
    levels = training_levels(run_uri, data, params.centre_on, STAGE)
    labels = data.table("labels")
    severity = labels.set_index(["study_id", "condition", "level"])["severity"].to_dict()
    crops, targets, heads, studies = [], [], [], []
    for study in tqdm(sorted(labels["study_id"].unique()), desc="sagittal crops", unit="study", leave=False):
        found = study_crops(
            data,
            levels,
            int(study),
            slices=params.slices,
            size=params.size,
            crop_mm=params.crop_mm,
            max_mm=params.max_mm,
            foramen_offset_mm=params.foramen_offset_mm,
            margin=MARGIN,
            pad=PAD,
        )
        for (condition, level), crop in found.items():
            label = severity.get((study, condition, level))
            if label is None or np.isnan(label):
                continue
            crops.append(crop)
            targets.append(int(label))
            heads.append(head_of(condition))
            studies.append(int(study))
    if not crops:
        raise ValueError("crop-train found no labelled sagittal crop (no Sagittal T1 or T2 slice near any level centre)")
    return np.stack(crops), np.array(targets), np.array(heads), np.array(studies)


def run(*, run_uri: str, params: CropTrainParams) -> Manifest:
    """Train the sagittal crop classifier; see the module docstring."""
    import torch

    if params.slices < 1 or params.slices % 2 == 0:
        raise ValueError(f"crop-train: slices must be odd, got {params.slices}")
    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    crops, targets, heads, studies = samples(run_uri, params)
    labelled = sorted(int(s) for s in IngestedData.open(run_uri).table("labels")["study_id"].unique())
    held_out, train_idx, val_idx, val_crops = split_by_study(
        crops, studies, labelled, fraction=params.val_fraction, seed=params.seed, slices=params.slices, size=params.size
    )
    dev = device()
    model = build_classifier(params.arch, params.slices, params.weights).to(dev)

    def validate() -> float:
        if not len(val_idx):
            return float("nan")
        return float((predict_heads(model, val_crops, heads[val_idx]).argmax(1) == targets[val_idx]).mean())

    history = train_on_crops(
        model,
        crops,
        targets,
        train_idx,
        window=lambda crop: intensity(jitter(crop, params.slices, params.size, rng), rng),
        pick=lambda logits, idx: logits.view(-1, 2, 3)[torch.arange(len(idx)), torch.from_numpy(heads[idx]).to(logits.device)],
        validate=validate,
        epochs=params.epochs,
        batch_size=params.batch_size,
        lr=params.lr,
        rng=rng,
        desc=STAGE,
    )
    out = StageOutput(run_uri, STAGE)
    config = {**params.to_dict(), "heads": ["spinal", "foraminal"]}
    out.write_bytes("model.pt", save_classifier(model.eval(), config))
    metrics = {
        "crops": len(crops),
        "train_crops": len(train_idx),
        "val_crops": len(val_idx),
        "val_accuracy": history[-1]["val_accuracy"] if history else float("nan"),
        "device": dev.type,
    }
    per_task = {task: int((heads == h).sum()) for task, h in (("spinal", 0), ("foraminal", 1))}
    out.write_json("metrics.json", {"history": history, "held_out": held_out, "crops_per_task": per_task, **metrics})
    return out.commit(params=params.to_dict(), metrics=metrics)
