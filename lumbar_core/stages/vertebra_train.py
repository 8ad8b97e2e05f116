"""vertebra-train (gpu): a 2D U-Net (ResNet encoder) on the sagittal slices of a SPIDER-format folder.

Reads ``{spider}/images/*.mha`` and ``{spider}/masks/*.mha`` (the phantom's export or the real
SPIDER download, unchanged), maps SPIDER labels to :data:`lumbar_core.spider.CLASSES`, resamples
slices to ``spacing_mm`` pixels and trains with cross-entropy + soft Dice, intensity and crop
augmentation, a fixed seed, and mixed precision on a GPU. Patients are split into training and
validation cases; per-class validation Dice is computed each epoch.

Writes under ``{run}/vertebra-train/``: ``model.pt`` (weights + config), ``metrics.json`` (per-class
Dice per epoch). A checkpoint is written to ``{run}/vertebra-train/_work/checkpoint.pt`` after
every epoch, and a rerun resumes from it (``resume``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from lumbar_core import store
from lumbar_core.manifest import Manifest, StageOutput, stage_uri
from lumbar_core.models.augment import intensity
from lumbar_core.models.unet import autocast, build_unet, device, save_model
from lumbar_core.params import Params
from lumbar_core.sagittal import normalise, resample_slice
from lumbar_core.spider import CLASSES, list_cases, load_case
from lumbar_core.splits import split_groups

STAGE = "vertebra-train"


@dataclass(frozen=True)
class VertebraTrainParams(Params):
    """Parameters of vertebra-train.

    Attributes:
        encoder: resnet18, resnet34 or resnet50.
        encoder_weights: '' (random init) or a local file of pretrained encoder weights.
        epochs: passes over the training slices.
        batch_size: slices per step.
        lr: AdamW learning rate.
        spacing_mm: in-plane pixel size the slices are resampled to.
        crop: training crop size in pixels (square).
        val_fraction: share of patients held out for validation (at least one).
        seed: random seed (weights, split, augmentation).
        resume: continue from the last epoch checkpoint if one exists.
    """

    encoder: str = "resnet18"
    encoder_weights: str = ""
    epochs: int = 8
    batch_size: int = 16
    lr: float = 2e-3
    spacing_mm: float = 2.5
    crop: int = 96
    val_fraction: float = 0.2
    seed: int = 0
    resume: bool = True


def _slices(spider_uri: str, names: list[str], spacing: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, labels = [], []
    for name in tqdm(names, desc="load SPIDER", unit="series", leave=False):
        case = load_case(spider_uri, name)
        for k in range(case.image.shape[0]):
            images.append(normalise(resample_slice(case.image[k], case.spacing[1:], spacing, order=1)))
            labels.append(resample_slice(case.classes[k], case.spacing[1:], spacing, order=0))
    return images, labels


def split_patients(names: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Training and validation series names, split by patient (the part before ``_``), deterministically."""
    _, val_patients = split_groups((n.split("_", 1)[0] for n in names), val_fraction, seed)
    val = set(val_patients)
    return [n for n in names if n.split("_", 1)[0] not in val], [n for n in names if n.split("_", 1)[0] in val]


def _crop(image: np.ndarray, label: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    pad_h, pad_w = max(0, size - image.shape[0]), max(0, size - image.shape[1])
    if pad_h or pad_w:
        image = np.pad(image, ((0, pad_h), (0, pad_w)))
        label = np.pad(label, ((0, pad_h), (0, pad_w)))
    r = int(rng.integers(0, image.shape[0] - size + 1))
    c = int(rng.integers(0, image.shape[1] - size + 1))
    return image[r : r + size, c : c + size], label[r : r + size, c : c + size]


def dice_per_class(pred: np.ndarray, truth: np.ndarray, classes: int) -> dict[str, float]:
    """Dice of every foreground class over all given pixels (nan where a class is absent from both)."""
    out = {}
    for c in range(1, classes):
        p, t = pred == c, truth == c
        denom = p.sum() + t.sum()
        out[CLASSES[c]] = float(2 * (p & t).sum() / denom) if denom else float("nan")
    return out


def evaluate(model, images: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    """Per-class Dice of a model on whole slices."""
    from lumbar_core.models.unet import predict

    preds, truths = [], []
    for image, label in zip(images, labels):
        preds.append(predict(model, image[None])[0].ravel())
        truths.append(label.ravel())
    return dice_per_class(np.concatenate(preds), np.concatenate(truths), len(CLASSES))


def run(*, spider_uri: str, run_uri: str, params: VertebraTrainParams) -> Manifest:
    """Train the vertebra U-Net on a SPIDER-format folder; see the module docstring."""
    import torch

    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    names = list_cases(spider_uri)
    train_names, val_names = split_patients(names, params.val_fraction, params.seed)
    train_x, train_y = _slices(spider_uri, train_names, params.spacing_mm)
    val_x, val_y = _slices(spider_uri, val_names, params.spacing_mm)
    dev = device()
    model = build_unet(params.encoder, len(CLASSES), params.encoder_weights).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=params.lr, total_steps=params.epochs * max(1, -(-len(train_x) // params.batch_size))
    )
    checkpoint_uri = store.join(stage_uri(run_uri, STAGE), "_work", "checkpoint.pt")
    history: list[dict] = []
    start = 0
    config = {**params.to_dict(), "classes": list(CLASSES)}
    config.pop("resume")
    if params.resume and store.exists(checkpoint_uri):
        state = torch.load(io.BytesIO(store.read_bytes(checkpoint_uri)), map_location=dev, weights_only=False)
        if state["config"] == config:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            history, start = state["history"], state["epoch"] + 1
            rng = np.random.default_rng([params.seed, start])
    weights = torch.tensor([0.3] + [1.0] * (len(CLASSES) - 1), device=dev)
    for epoch in range(start, params.epochs):
        model.train()
        order = rng.permutation(len(train_x))
        losses = []
        for first in tqdm(range(0, len(order), params.batch_size), desc=f"epoch {epoch + 1}/{params.epochs}", leave=False):
            pairs = [_crop(train_x[i], train_y[i], params.crop, rng) for i in order[first : first + params.batch_size]]
            x = torch.from_numpy(np.stack([intensity(p[0], rng) for p in pairs])[:, None]).to(dev)
            y = torch.from_numpy(np.stack([p[1] for p in pairs]).astype(np.int64)).to(dev)
            with autocast(dev):
                logits = model(x)
            logits = logits.float()
            probs = torch.softmax(logits, dim=1)
            onehot = torch.nn.functional.one_hot(y, len(CLASSES)).permute(0, 3, 1, 2).float()
            inter = (probs * onehot).sum(dim=(0, 2, 3))
            dice = (2 * inter + 1) / (probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3)) + 1)
            loss = torch.nn.functional.cross_entropy(logits, y, weight=weights) + (1 - dice[1:]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        val_dice = evaluate(model, val_x, val_y) if val_x else {}
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": val_dice})
        buffer = io.BytesIO()
        torch.save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "history": history,
                "epoch": epoch,
                "config": config,
            },
            buffer,
        )
        store.write_bytes(checkpoint_uri, buffer.getvalue())
    out = StageOutput(run_uri, STAGE)
    out.write_bytes("model.pt", save_model(model, config))
    final = history[-1]["val_dice"] if history else {}
    vertebrae = [v for k, v in final.items() if k in ("L1", "L2", "L3", "L4", "L5") and not np.isnan(v)]
    metrics = {
        "val_dice": final,
        "val_dice_vertebrae_mean": float(np.mean(vertebrae)) if vertebrae else float("nan"),
        "train_series": len(train_names),
        "val_series": len(val_names),
        "epochs": len(history),
        "device": dev.type,
    }
    out.write_json("metrics.json", {"history": history, **metrics})
    manifest = out.commit(params={**params.to_dict(), "spider_uri": spider_uri}, metrics=metrics)
    store.delete(checkpoint_uri)
    return manifest
