"""The training loop shared by the crop classifiers (crop-train's sagittal one, densenet-train's axial one).

Each step draws a window of every crop of the batch (jittered, intensity-changed), weighs the
cross-entropy (1, 2, 4) by severity, and steps AdamW with cosine decay to zero over the run, so the
last epoch is a settled model, not a random point of a noisy run.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core import vocab
from lumbar_core.ingested import IngestedData
from lumbar_core.localisation import centred_on_labels
from lumbar_core.manifest import StageInput
from lumbar_core.models.unet import autocast
from lumbar_core.splits import held_out_studies
from lumbar_core.stack_crops import centre

CENTRES = ("labels", "levels")  # what training crops are centred on


def training_levels(run_uri: str, data: IngestedData, centre_on: str, stage: str) -> pd.DataFrame:
    """The level points a stage's training crops are centred on (rows of study_id, level, source, canal_x/y/z).

    ``labels``: each labelled level's spinal canal point, the point the level localiser learns to find
    at predict (vertebra-segment's where a level has none); ``levels``: vertebra-segment's points.
    """
    if centre_on not in CENTRES:
        raise ValueError(f"{stage}: centre_on must be one of {', '.join(CENTRES)}, got {centre_on!r}")
    levels = StageInput.open(run_uri, "vertebra-segment").read_table("levels.parquet")
    return centred_on_labels(levels, data.table("coordinates")) if centre_on == "labels" else levels


def split_by_study(
    crops: np.ndarray, studies: np.ndarray, labelled: list[int], *, fraction: float, seed: int, slices: int, size: int
) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """(held-out studies, training crop indices, held-out crop indices, the held-out crops centred).

    The held-out studies are :func:`lumbar_core.splits.held_out_studies` of ``labelled``, the same for
    every stage that uses the fraction and seed; each crop goes with its study.
    """
    held_out = held_out_studies(labelled, fraction, seed)
    val = np.isin(studies, held_out)
    train_idx, val_idx = np.flatnonzero(~val), np.flatnonzero(val)
    val_crops = np.stack([centre(c, slices, size) for c in crops[val_idx]]) if len(val_idx) else np.zeros((0,))
    return held_out, train_idx, val_idx, val_crops


def train_on_crops(
    model,
    crops: np.ndarray,
    targets: np.ndarray,
    train_idx: np.ndarray,
    *,
    window: Callable[[np.ndarray], np.ndarray],
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
    validate: Callable[[], float],
    pick: Callable[[object, np.ndarray], object] | None = None,
    desc: str,
) -> list[dict]:
    """Train ``model`` in place; one history row per epoch (mean loss, ``validate()``'s accuracy, learning rate).

    Each epoch splits the shuffled training crops into ``ceil(n / batch_size)`` batches of equal size
    (within one), so no batch holds a single crop. ``window(crop)`` makes one input from a stored
    crop; ``pick(logits, idx)`` selects each crop's three logits where the network has several heads.
    """
    import torch

    if len(train_idx) < 2:
        raise ValueError(f"{desc}: {len(train_idx)} training crop(s); batch norm needs at least 2")
    dev = next(model.parameters()).device
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    batches = -(-len(train_idx) // batch_size)
    steps = epochs * batches
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, steps))
    weight = torch.tensor(vocab.SEVERITY_WEIGHTS, device=dev)
    history = []
    for epoch in tqdm(range(epochs), desc=desc, unit="epoch", leave=False):
        model.train()
        order = rng.permutation(train_idx)
        losses = []
        # Equal batches, never one of a single crop: batch norm cannot train on one value per channel.
        for idx in np.array_split(order, batches):
            x = torch.from_numpy(np.ascontiguousarray(np.stack([window(crops[i]) for i in idx]))).to(dev)
            with autocast(dev):
                logits = model(x)
            logits = logits.float()
            if pick is not None:
                logits = pick(logits, idx)
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(targets[idx]).to(dev), weight=weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        model.eval()
        history.append(
            {"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_accuracy": validate(), "lr": optimizer.param_groups[0]["lr"]}
        )
    return history
