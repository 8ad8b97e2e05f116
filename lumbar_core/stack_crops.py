"""What the sagittal and the axial 2.5D crops share: sampling a stack's slices on one canonical grid, and windows.

A crop is ``slices`` neighbouring slices around the one nearest a point, each sampled on the same
in-plane grid centred on the point, whose columns and rows follow chosen world axes and whose slices
(the channels) run along a third, whatever the stack's own orientation. For training it can carry
``margin`` extra slices on each side and ``pad`` extra pixels around the grid, from which
:func:`jitter` draws a shifted window and :func:`centre` takes the middle one.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from lumbar_core.geometry import unit
from lumbar_core.ingested import Volume

_WORLD = np.eye(3)  # LPS: 0 patient left, 1 posterior, 2 superior


def stack_crop(
    volume: Volume,
    point: np.ndarray,
    *,
    columns: int,
    rows: int,
    rows_sign: float,
    channels: int,
    slices: int,
    size: int,
    crop_mm: float,
    max_mm: float,
    margin: int = 0,
    pad: int = 0,
) -> np.ndarray | None:
    """A (slices + 2 margin, size + 2 pad, size + 2 pad) float32 crop, or None when no slice is within ``max_mm``.

    Columns run along world axis ``columns``, rows along ``rows_sign`` x world axis ``rows`` (both
    projected into the slice plane), the slices along world axis ``channels``. Slices beyond the
    stack's ends repeat the end slice. Each slice is scaled by its own 1st and 99.5th percentiles
    (scanners differ in gain).
    """
    g = volume.geometry
    k, distance = g.nearest_slice(point)
    if distance > max_mm:
        return None
    normal = g.normal
    ex = unit(_WORLD[columns] - normal[columns] * normal)
    ey = unit(np.cross(normal, ex))
    if ey[rows] * rows_sign < 0:
        ey = -ey
    n = size + 2 * pad
    offsets = (np.arange(n) - (n - 1) / 2) * (crop_mm / size)
    grid = np.asarray(point, dtype=float)[None, None, :] + offsets[None, :, None] * ex + offsets[:, None, None] * ey
    half = slices // 2 + margin
    order = np.arange(k - half, k + half + 1)
    if normal[channels] < 0:
        order = order[::-1]
    out = np.empty((len(order), n, n), dtype=np.float32)
    for c, j in enumerate(np.clip(order, 0, len(g.ipp) - 1)):
        x, y, _ = g.plane(int(j)).world_to_pixel(grid)
        image = volume.pixels[j].astype(np.float32)
        lo, hi = np.percentile(image, [1, 99.5])
        sampled = ndimage.map_coordinates(image, [y, x], order=1, mode="constant", cval=float(lo))
        out[c] = np.clip((sampled - lo) / max(hi - lo, 1e-6), 0, 1.5)
    return out


def crop_settings(config: dict) -> dict:
    """The keyword arguments of :func:`stack_crop` a crop model's config fixes: slices, size, crop_mm, max_mm."""
    return {
        "slices": int(config["slices"]),
        "size": int(config["size"]),
        "crop_mm": float(config["crop_mm"]),
        "max_mm": float(config["max_mm"]),
    }


def jitter(crop: np.ndarray, slices: int, size: int, rng: np.random.Generator, *, slice_shift_p: float = 0.3) -> np.ndarray:
    """A (slices, size, size) window of a crop with margins: a slice off with ``slice_shift_p``, a few pixels off."""
    margin = (crop.shape[0] - slices) // 2
    pad = (crop.shape[1] - size) // 2
    ds = int(rng.choice([-1, 1])) if margin and rng.random() < slice_shift_p else 0
    dy, dx = rng.integers(-pad, pad + 1, size=2) if pad else (0, 0)
    s0, y0, x0 = margin + ds, pad + dy, pad + dx
    return crop[s0 : s0 + slices, y0 : y0 + size, x0 : x0 + size]


def centre(crop: np.ndarray, slices: int, size: int) -> np.ndarray:
    """The middle (slices, size, size) window of a crop with margins."""
    margin = (crop.shape[0] - slices) // 2
    pad = (crop.shape[1] - size) // 2
    return crop[margin : margin + slices, pad : pad + size, pad : pad + size]
