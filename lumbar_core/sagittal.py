"""Sagittal volumes in one canonical layout, whatever order and direction their axes were stored in.

Canonical: axes (slice, row, col) with slices running to the patient's left (+x), rows running
inferior (-z) and columns running posterior (+y): the usual look of a sagittal MR image, anterior
on the left. SPIDER's ``.mha`` files and RSNA's DICOM stacks are both brought to it from their own
direction cosines, so one U-Net serves both; :class:`Canonical` maps masks back to the source grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lumbar_core.geometry import StackGeometry

_TARGET = (np.array([1.0, 0, 0]), np.array([0, 0, -1.0]), np.array([0, 1.0, 0]))  # slice, row, col directions


@dataclass(frozen=True)
class Canonical:
    """How a source volume's axes map to the canonical ones.

    Attributes:
        perm: source axis of each canonical axis.
        flip: whether each canonical axis is reversed relative to its source axis.
        spacing: canonical spacings (slice, row, col) in mm.
    """

    perm: tuple[int, int, int]
    flip: tuple[bool, bool, bool]
    spacing: tuple[float, float, float]

    def apply(self, volume: np.ndarray) -> np.ndarray:
        """Source-order array -> canonical array."""
        out = np.transpose(volume, self.perm)
        for axis, flip in enumerate(self.flip):
            if flip:
                out = np.flip(out, axis)
        return np.ascontiguousarray(out)

    def invert(self, volume: np.ndarray) -> np.ndarray:
        """Canonical array -> source-order array."""
        out = volume
        for axis, flip in enumerate(self.flip):
            if flip:
                out = np.flip(out, axis)
        return np.ascontiguousarray(np.transpose(out, np.argsort(self.perm)))


def canonical_for(directions: list[np.ndarray], spacings: list[float]) -> Canonical:
    """The mapping for a volume whose array axis ``i`` runs along world ``directions[i]`` with ``spacings[i]``.

    Raises:
        ValueError: if no axis runs mainly left-right (the volume is not sagittal).
    """
    dirs = [np.asarray(d, dtype=float) / np.linalg.norm(d) for d in directions]
    remaining = [0, 1, 2]
    perm, flip = [], []
    for target in _TARGET:
        axis = max(remaining, key=lambda i: abs(dirs[i] @ target))
        if abs(dirs[axis] @ target) < 0.5:
            raise ValueError(f"volume axes {np.round(dirs, 2).tolist()} have no axis along {target.tolist()}: not a sagittal volume")
        remaining.remove(axis)
        perm.append(axis)
        flip.append(bool(dirs[axis] @ target < 0))
    return Canonical(tuple(perm), tuple(flip), tuple(float(spacings[i]) for i in perm))  # type: ignore[arg-type]


def resample_slice(image: np.ndarray, spacing: tuple[float, float], target: float, *, order: int) -> np.ndarray:
    """A 2D slice resampled to ``target`` mm pixels (order 1 for images, 0 for labels)."""
    factors = (spacing[0] / target, spacing[1] / target)
    if np.allclose(factors, 1.0, atol=1e-3):
        return image
    return ndimage.zoom(image, factors, order=order, mode="nearest", grid_mode=True)


def resize_to(image: np.ndarray, shape: tuple[int, int], *, order: int) -> np.ndarray:
    """A 2D array zoomed to exactly ``shape`` (used to return masks to the source grid)."""
    if image.shape == tuple(shape):
        return image
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    out = ndimage.zoom(image, factors, order=order, mode="nearest", grid_mode=True)
    return out[: shape[0], : shape[1]] if out.shape[0] >= shape[0] and out.shape[1] >= shape[1] else _pad_to(out, shape)


def _pad_to(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=image.dtype)
    h, w = min(shape[0], image.shape[0]), min(shape[1], image.shape[1])
    out[:h, :w] = image[:h, :w]
    return out


def normalise(image: np.ndarray) -> np.ndarray:
    """Intensities scaled so the 1st percentile is 0 and the 99.5th is 1 (float32)."""
    image = image.astype(np.float32)
    lo, hi = np.percentile(image, [1, 99.5])
    return np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1.5).astype(np.float32)


def canonical_of_stack(g: StackGeometry) -> Canonical:
    """The canonical mapping of an ingested stack's pixels (slices, rows, cols)."""
    return canonical_for([g.normal, g.col_dir, g.row_dir], [g.slice_spacing, g.row_spacing, g.col_spacing])
