"""The level localiser: a U-Net with one output channel per disc level, trained on the target dataset's points.

The network (segmentation-models-pytorch ``Unet``, the vertebra U-Net's encoder as its start) reads a
canonical sagittal slice resampled to ``spacing_mm`` and returns one logit map per level; a level's
place in a stack is the voxel with the largest logit over all its slices (which picks the slice as
well), refined by a soft arg-max around it. Trained with a spatial softmax per level against a small
Gaussian around the labelled point (:mod:`lumbar_core.stages.level_train`).
"""

from __future__ import annotations

import numpy as np

from lumbar_core import vocab
from lumbar_core.ingested import Volume
from lumbar_core.models.checkpoint import from_bytes, to_bytes
from lumbar_core.models.unet import build_unet, device, forward
from lumbar_core.sagittal import Canonical, canonical_of_stack, normalise, resample_slice

LEVELS = vocab.LEVELS


def build_localiser(encoder: str, unet_state: dict | None = None):
    """A localiser U-Net (one channel per level); ``unet_state`` (a vertebra U-Net's weights) starts its encoder."""
    model = build_unet(encoder, len(LEVELS))
    if unet_state is not None:
        encoder_state = {k.removeprefix("encoder."): v for k, v in unet_state.items() if k.startswith("encoder.")}
        model.encoder.load_state_dict(encoder_state)
    return model


def save_localiser(model, config: dict) -> bytes:
    """``model.pt`` bytes: weights and the config needed to rebuild and apply the network."""
    return to_bytes(model, config)


def load_localiser(data: bytes):
    """The localiser and its config from ``model.pt`` bytes, on the best device, in eval mode."""
    weights, config = from_bytes(data)
    model = build_localiser(config["encoder"])
    model.load_state_dict(weights)
    return model.to(device()).eval(), config


def canonical_slices(volume: Volume, spacing_mm: float) -> tuple[Canonical, np.ndarray]:
    """The stack's slices in the canonical sagittal layout, resampled to ``spacing_mm`` and normalised."""
    canon = canonical_of_stack(volume.geometry)
    pixels = canon.apply(volume.pixels)
    return canon, np.stack([normalise(resample_slice(s, canon.spacing[1:], spacing_mm, order=1)) for s in pixels])


def logits(model, slices: np.ndarray, *, batch_size: int = 16) -> np.ndarray:
    """Per-level logit maps (n, levels, H, W) of normalised slices (n, H, W)."""
    return np.concatenate(list(forward(model, slices, batch_size=batch_size)))


def _soft_peak(plane: np.ndarray, r: int, c: int, radius: int = 2) -> tuple[float, float]:
    """Soft arg-max (row, col) of a logit map in a window around its peak."""
    r0, r1 = max(0, r - radius), min(plane.shape[0], r + radius + 1)
    c0, c1 = max(0, c - radius), min(plane.shape[1], c + radius + 1)
    window = plane[r0:r1, c0:c1]
    weights = np.exp(window - window.max())
    rows, cols = np.mgrid[r0:r1, c0:c1]
    return float((weights * rows).sum() / weights.sum()), float((weights * cols).sum() / weights.sum())


def localise(model, config: dict, volume: Volume, *, batch_size: int = 16) -> dict[str, tuple[np.ndarray, float]]:
    """Level -> (world point, peak probability) in a sagittal stack.

    The probability is the spatial softmax of the level's logits at the peak, over the whole stack
    (1 for a sharp, single peak; small when the network is unsure).
    """
    spacing = float(config["spacing_mm"])
    canon, slices = canonical_slices(volume, spacing)
    maps = logits(model, slices, batch_size=batch_size)
    canonical_shape = tuple(volume.pixels.shape[p] for p in canon.perm)
    out = {}
    for i, level in enumerate(LEVELS):
        channel = maps[:, i]
        k, r, c = np.unravel_index(int(np.argmax(channel)), channel.shape)
        peak = float(np.exp(channel[k, r, c] - channel.max()) / np.exp(channel - channel.max()).sum())
        rr, cc = _soft_peak(channel[k], int(r), int(c))
        # resampled canonical pixel -> canonical source pixel -> source (slice, row, col) -> world
        scale_r, scale_c = spacing / canon.spacing[1], spacing / canon.spacing[2]
        canonical = np.array([k, (rr + 0.5) * scale_r - 0.5, (cc + 0.5) * scale_c - 0.5])
        source = np.empty(3)
        for axis in range(3):
            value = canonical[axis]
            if canon.flip[axis]:
                value = canonical_shape[axis] - 1 - value
            source[canon.perm[axis]] = value
        point = volume.geometry.pixel_to_world(source[2], source[1], int(round(source[0])))
        out[level] = (np.asarray(point, dtype=float), peak)
    return out
