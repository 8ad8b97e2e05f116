"""densenet-train (gpu): a torchvision DenseNet grading left and right subarticular stenosis on axial crops.

Reads ingest (axial volumes, labels) and vertebra-segment (each level's canal centre). For every
labelled study and level, the crop is taken on the axial slice nearest the level's canal centre
(found by projecting the centre into each axial stack; farther than ``max_mm`` is rejected), in the
canonical orientation of :mod:`lumbar_core.axial`. One input channel; six outputs (left, right x
Normal/Mild, Moderate, Severe); cross-entropy weighted (1, 2, 4); AdamW with cosine decay to zero;
a horizontal flip swaps the left and right labels; small shifts and intensity changes; mixed
precision on a GPU.

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
from lumbar_core.axial import level_crops
from lumbar_core.ingested import IngestedData
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.models.densenet import build_densenet, save_densenet
from lumbar_core.models.unet import autocast, device
from lumbar_core.params import Params
from lumbar_core.splits import held_out_studies

STAGE = "densenet-train"
IGNORE = -100


@dataclass(frozen=True)
class DensenetTrainParams(Params):
    """Parameters of densenet-train.

    Attributes:
        arch: densenet121, densenet169 or densenet201.
        weights: '' (random init) or a local file of the arch's pretrained weights (torchvision's
            ImageNet file, for one; never downloaded).
        epochs: passes over the crops.
        batch_size: crops per step.
        lr: AdamW's starting learning rate (cosine decay to zero over the run: the last epoch is a settled
            model, not a random point of a noisy run).
        size: crop size in pixels.
        crop_mm: crop side in millimetres.
        max_mm: farthest accepted distance from the level centre to an axial slice.
        val_fraction: share of the training studies held out (validation accuracy; calibrate fits on them):
            :func:`lumbar_core.splits.held_out_studies`.
        seed: random seed.
    """

    arch: str = "densenet121"
    weights: str = ""
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    size: int = 64
    crop_mm: float = 64.0
    max_mm: float = 5.0
    val_fraction: float = 0.2
    seed: int = 0


def _samples(run_uri: str, params: DensenetTrainParams) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = IngestedData.open(run_uri)
    levels = StageInput.open(run_uri, "vertebra-segment").read_table("levels.parquet")
    labels = data.table("labels")
    severity = labels.set_index(["study_id", "condition", "level"])["severity"].to_dict()
    crops, targets, studies, levels_of = [], [], [], []
    for study in tqdm(sorted(labels["study_id"].unique()), desc="axial crops", unit="study", leave=False):
        for level, crop in level_crops(data, levels, study, size=params.size, crop_mm=params.crop_mm, max_mm=params.max_mm).items():
            left = severity.get((study, "left_subarticular_stenosis", level), IGNORE)
            right = severity.get((study, "right_subarticular_stenosis", level), IGNORE)
            if left == IGNORE and right == IGNORE:
                continue
            crops.append(crop)
            targets.append((int(left), int(right)))
            studies.append(study)
            levels_of.append(level)
    if not crops:
        raise ValueError("densenet-train found no labelled axial crop (no Axial T2 slice near any level centre)")
    return np.stack(crops), np.array(targets, dtype=np.int64), np.array(studies), np.array(levels_of)


def _augment(batch: np.ndarray, targets: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    out, tgt = batch.copy(), targets.copy()
    flip = rng.random(len(out)) < 0.5
    out[flip] = out[flip][:, :, ::-1]
    tgt[flip] = tgt[flip][:, ::-1]  # the patient's left becomes the right
    shift = rng.integers(-3, 4, size=(len(out), 2))
    for i, (dy, dx) in enumerate(shift):
        out[i] = np.roll(out[i], (dy, dx), axis=(0, 1))
    out = np.clip(out, 0, None) ** rng.uniform(0.8, 1.25, size=(len(out), 1, 1))
    return out.astype(np.float32), tgt


def run(*, run_uri: str, params: DensenetTrainParams) -> Manifest:
    """Train the axial DenseNet; see the module docstring."""
    import torch

    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    crops, targets, studies, levels = _samples(run_uri, params)
    labelled = sorted(int(s) for s in IngestedData.open(run_uri).table("labels")["study_id"].unique())
    held_out = held_out_studies(labelled, params.val_fraction, params.seed)
    val = np.isin(studies, held_out)
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    dev = device()
    model = build_densenet(params.arch, params.weights).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=1e-4)
    steps = params.epochs * -(-len(train_idx) // params.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    weight = torch.tensor(vocab.SEVERITY_WEIGHTS, device=dev)
    history = []
    for epoch in range(params.epochs):
        model.train()
        order = rng.permutation(train_idx)
        losses = []
        for first in range(0, len(order), params.batch_size):
            idx = order[first : first + params.batch_size]
            x, y = _augment(crops[idx], targets[idx], rng)
            xt = torch.from_numpy(x[:, None]).to(dev)
            yt = torch.from_numpy(y).to(dev)
            with autocast(dev):
                logits = model(xt)
            logits = logits.float()
            loss = sum(
                torch.nn.functional.cross_entropy(logits[:, 3 * s : 3 * s + 3], yt[:, s], weight=weight, ignore_index=IGNORE)
                for s in range(2)
                if (yt[:, s] != IGNORE).any()
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        accuracy = _accuracy(model, crops[val_idx], targets[val_idx]) if len(val_idx) else float("nan")
        lr = optimizer.param_groups[0]["lr"]
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_accuracy": accuracy, "lr": lr})
    tau, floor, losses = _fit_tau(model, crops[val_idx], targets[val_idx], levels[val_idx], run_uri)
    out = StageOutput(run_uri, STAGE)
    out.write_bytes("model.pt", save_densenet(model, {**params.to_dict(), "sides": ["left", "right"], "tau": tau, "floor": floor}))
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


def _accuracy(model, crops: np.ndarray, targets: np.ndarray) -> float:
    from lumbar_core.models.densenet import predict_sides

    left, right = predict_sides(model.eval(), crops)
    hits = [(p.argmax(1) == t)[t != IGNORE] for p, t in ((left, targets[:, 0]), (right, targets[:, 1]))]
    return float(np.concatenate(hits).mean())


def _fit_tau(model, crops: np.ndarray, targets: np.ndarray, levels: np.ndarray, run_uri: str) -> tuple[float, float, dict[str, float]]:
    """The weight and floor of the DenseNet's evidence against the prior, fitted on the validation crops.

    The loss weighted classes (1, 2, 4) on natural frequencies, so p / (w x prior) is the evidence.
    """
    from lumbar_core.calibration import fit_tau
    from lumbar_core.models.densenet import predict_sides
    from lumbar_core.prior import prior_from_json

    if len(crops) == 0:
        return 0.0, 0.0, {}
    prior = prior_from_json(StageInput.open(run_uri, "balance").read_json("prior.json"))
    w = np.asarray(vocab.SEVERITY_WEIGHTS)
    sides = predict_sides(model.eval(), crops)
    priors, dists, denominators, truth = [], [], [], []
    for s, (side, probs) in enumerate(zip(("left", "right"), sides)):
        for p, t, level in zip(probs, targets[:, s], levels):
            if t == IGNORE:
                continue
            pr = prior[(f"{side}_subarticular_stenosis", level)]
            priors.append(pr)
            dists.append(p)
            denominators.append(w * pr)
            truth.append(t)
    return fit_tau(np.array(priors), np.array(dists), np.array(truth), denominators=np.array(denominators))
