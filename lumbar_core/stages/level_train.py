"""level-train (gpu): a level localiser trained on the target dataset's own labelled points.

The vertebra U-Net learns vertebrae from SPIDER, another dataset from other scanners; on the
competition's images it can miss levels or misplace them without knowing it. The training studies'
labels say where every level is: on Sagittal T2 the five spinal canal points, on Sagittal T1 the
left and right foraminal points (their midpoint is beside the canal). This stage trains a U-Net with
one channel per level (:mod:`lumbar_core.models.localiser`), starting from the vertebra U-Net's
encoder, to find those points on both series types: one labelled stack per step, a softmax per
level over all its slices and pixels against a small Gaussian around the point (in-plane and across
slices: the network learns which slice as well as where), with intensity and crop augmentation. At
prediction time no label is used.

The studies :func:`lumbar_core.splits.held_out_studies` holds out are not trained on: they measure
the localiser (share of levels within 5 mm and nearest the right level) and calibrate the models on
the prediction path (stage ``calibrate``).

Reads ingest (volumes, coordinates, labels) and vertebra-train (``model.pt``). Writes under
``{run}/level-train/``: ``model.pt`` (weights + config) and ``metrics.json`` (loss per epoch, the
held-out localisation).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core import vocab
from lumbar_core.ingested import IngestedData, Volume
from lumbar_core.localisation import errors_against, labelled_canal, points_by_level, summary
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.models.augment import intensity
from lumbar_core.models.checkpoint import from_bytes
from lumbar_core.models.localiser import LEVELS, build_localiser, canonical_slices, localise, save_localiser
from lumbar_core.models.unet import autocast, device
from lumbar_core.params import Params
from lumbar_core.splits import held_out_studies

STAGE = "level-train"


@dataclass(frozen=True)
class LevelTrainParams(Params):
    """Parameters of level-train.

    Attributes:
        epochs: passes over the training slices.
        lr: AdamW learning rate (cosine decay).
        crop: training crop size in pixels (square) at ``spacing_mm``.
        spacing_mm: in-plane pixel size the localiser reads, mm; 0 = the vertebra U-Net's (whose encoder
            it starts from). Five points to a few millimetres need no finer pixels than about 2 mm, and
            the cost of finding the levels at prediction falls with the square of it.
        sigma_mm: width of the Gaussian around each labelled point.
        slices_each_side: slices on each side of the labelled levels' middle slice in one training step.
        val_fraction: share of the training studies held out (as densenet-train and nnunet-prepare hold them out).
        seed: random seed (weights, split, augmentation).
    """

    epochs: int = 20
    lr: float = 1e-3
    crop: int = 96
    spacing_mm: float = 0.0
    sigma_mm: float = 4.0
    slices_each_side: int = 4
    val_fraction: float = 0.2
    seed: int = 0


@dataclass
class Sample:
    """One labelled stack: its slices (resampled, normalised, canonical) and each level's point in them.

    ``points`` holds (slice, row, col) per level in the canonical resampled grid, the slice as a
    continuous index (a point between two slices lies between them); nan where the level is not labelled.
    """

    slices: np.ndarray
    points: np.ndarray
    slice_mm: float


def level_targets(coords: pd.DataFrame, description: str) -> dict[str, np.ndarray]:
    """World points the localiser learns on a series type: spinal canal points (T2), foraminal midpoints (T1)."""
    out = {}
    if description == vocab.SAGITTAL_T2:
        out = points_by_level(labelled_canal(coords))
    elif description == vocab.SAGITTAL_T1:
        foraminal = coords[coords["condition"].str.endswith("neural_foraminal_narrowing")]
        for level, rows in foraminal.groupby("level"):
            if rows["condition"].nunique() == 2:  # both sides: their midpoint is beside the canal
                out[str(level)] = rows[["world_x", "world_y", "world_z"]].to_numpy().mean(axis=0)
    return out


def canonical_point(volume: Volume, point: np.ndarray, spacing_mm: float) -> np.ndarray:
    """(slice, row, col) of a world point in the canonical grid resampled to ``spacing_mm`` in-plane (continuous)."""
    from lumbar_core.sagittal import canonical_of_stack

    geometry = volume.geometry
    canon = canonical_of_stack(geometry)
    if canon.perm[0] != 0:
        raise ValueError("a sagittal stack's canonical slices are its own slices")
    n = volume.pixels.shape[0]
    along = (geometry.ipp[-1] - geometry.ipp[0]) / max(np.linalg.norm(geometry.ipp[-1] - geometry.ipp[0]), 1e-9)
    k = float((np.asarray(point) - geometry.ipp[0]) @ along / geometry.slice_spacing) if n > 1 else 0.0
    x, y, _ = geometry.plane(int(np.clip(round(k), 0, n - 1))).world_to_pixel(point)
    source = {1: float(y), 2: float(x)}  # source axes: slice, row, col
    canonical = [n - 1 - k if canon.flip[0] else k]
    for axis in (1, 2):
        value = source[canon.perm[axis]]
        if canon.flip[axis]:
            value = volume.pixels.shape[canon.perm[axis]] - 1 - value
        canonical.append((value + 0.5) * canon.spacing[axis] / spacing_mm - 0.5)
    return np.array(canonical)


def sample_of_stack(volume: Volume, targets: dict[str, np.ndarray], spacing_mm: float) -> Sample:
    """A labelled stack as a training sample."""
    _, slices = canonical_slices(volume, spacing_mm)
    points = np.full((len(LEVELS), 3), np.nan)
    for i, level in enumerate(LEVELS):
        if level in targets:
            points[i] = canonical_point(volume, targets[level], spacing_mm)
    return Sample(slices, points, float(volume.geometry.slice_spacing))


def _crop(sample: Sample, size: int, rng: np.random.Generator, slices_each_side: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A random in-plane window holding the labelled levels, on the slices around them."""
    slices, points = sample.slices, sample.points.copy()
    middle = int(round(np.nanmean(points[:, 0])))
    first = max(0, middle - slices_each_side)
    slices, points = slices[first : middle + slices_each_side + 1], points - np.array([first, 0, 0])
    pad_h, pad_w = max(0, size - slices.shape[1]), max(0, size - slices.shape[2])
    if pad_h or pad_w:
        slices = np.pad(slices, ((0, 0), (0, pad_h), (0, pad_w)))
    known = points[~np.isnan(points[:, 0])]
    # keep the labelled levels in view: the crop's corner is drawn among those that hold their mean
    centre = known[:, 1:].mean(axis=0)
    r0 = int(np.clip(rng.integers(int(centre[0]) - size + 16, int(centre[0]) - 15 + 1), 0, slices.shape[1] - size))
    c0 = int(np.clip(rng.integers(int(centre[1]) - size + 16, int(centre[1]) - 15 + 1), 0, slices.shape[2] - size))
    return slices[:, r0 : r0 + size, c0 : c0 + size], points - np.array([0, r0, c0])


def _loss(logits, points: np.ndarray, sigma_px: float, sigma_slices: float):
    """Softmax cross-entropy of each level's logits over the whole stack against a Gaussian around its point."""
    import torch

    n, levels, h, w = logits.shape
    grid_k = torch.arange(n, device=logits.device, dtype=torch.float32)[:, None, None]
    grid_r = torch.arange(h, device=logits.device, dtype=torch.float32)[None, :, None]
    grid_c = torch.arange(w, device=logits.device, dtype=torch.float32)[None, None, :]
    losses = []
    for i in range(levels):
        k, r, c = points[i]
        if np.isnan(k) or not (-0.5 <= r < h - 0.5 and -0.5 <= c < w - 0.5 and -0.5 <= k < n - 0.5):
            continue
        d2 = ((grid_k - k) / sigma_slices) ** 2 + ((grid_r - r) ** 2 + (grid_c - c) ** 2) / sigma_px**2
        target = torch.exp(-d2 / 2)
        target = target / target.sum()
        logp = torch.log_softmax(logits[:, i].reshape(-1), dim=0).reshape(n, h, w)
        losses.append(-(target * logp).sum())
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


def run(*, run_uri: str, params: LevelTrainParams) -> Manifest:
    """Train the level localiser; see the module docstring."""
    import torch

    torch.manual_seed(params.seed)
    rng = np.random.default_rng(params.seed)
    data = IngestedData.open(run_uri)
    unet_state, unet_config = from_bytes(StageInput.open(run_uri, "vertebra-train").read_bytes("model.pt"))
    if params.spacing_mm < 0:
        raise ValueError(f"level-train: spacing_mm must be >= 0 (0 = the vertebra U-Net's), got {params.spacing_mm}")
    spacing = params.spacing_mm or float(unet_config["spacing_mm"])
    coords = data.table("coordinates")
    labelled = sorted(data.table("labels")["study_id"].unique())
    held_out = set(held_out_studies(labelled, params.val_fraction, params.seed))
    sagittal = data.index[data.index["orientation"] == "sagittal"]
    train: list[Sample] = []
    evaluation: list[tuple[Volume, dict[str, np.ndarray]]] = []
    for row in tqdm(list(sagittal.itertuples()), desc="level-train samples", unit="stack", leave=False):
        mine = coords[(coords["study_id"] == row.study_id) & (coords["series_id"] == row.series_id) & (coords["stack"] == row.stack)]
        targets = level_targets(mine, row.description)
        if not targets:
            continue
        volume = data.volume(row.study_id, row.series_id, row.stack)
        if row.study_id in held_out:
            if row.description == vocab.SAGITTAL_T2:
                evaluation.append((volume, targets))
            continue
        train.append(sample_of_stack(volume, targets, spacing))
    if not train:
        raise ValueError("level-train: no labelled sagittal stack among the training studies")
    dev = device()
    model = build_localiser(unet_config["encoder"], unet_state).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=params.lr, weight_decay=1e-4)
    steps = params.epochs * len(train)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    sigma_px = params.sigma_mm / spacing
    history = []
    for epoch in range(params.epochs):
        model.train()
        losses = []
        for i in tqdm(rng.permutation(len(train)), desc=f"epoch {epoch + 1}/{params.epochs}", leave=False):
            slices, points = _crop(train[i], params.crop, rng, params.slices_each_side)
            x = torch.from_numpy(np.stack([intensity(s, rng) for s in slices])[:, None]).to(dev)
            with autocast(dev):
                out = model(x)
            loss = _loss(out.float(), points, sigma_px, params.sigma_mm / train[i].slice_mm)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses))})
    config = {**params.to_dict(), "encoder": unet_config["encoder"], "spacing_mm": spacing, "levels": list(LEVELS)}
    errors, right = [], []
    model.eval()
    for volume, targets in evaluation:
        found = {lv: p for lv, (p, _) in localise(model, config, volume).items()}
        e, r = errors_against(found, targets)
        errors += e
        right += r
    held = summary(errors, right, sum(len(t) for _, t in evaluation))
    out = StageOutput(run_uri, STAGE)
    out.write_bytes("model.pt", save_localiser(model, config))
    metrics = {"train_stacks": len(train), "held_out_studies": len(held_out), "epochs": params.epochs, "device": dev.type, **held}
    out.write_json("metrics.json", {"history": history, "held_out": sorted(int(s) for s in held_out), **metrics})
    return out.commit(params=params.to_dict(), metrics=metrics)
