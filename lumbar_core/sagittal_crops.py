"""2.5D crops around a level point on a sagittal stack, in one canonical orientation.

A crop is ``slices`` neighbouring sagittal slices around the one nearest the point, each sampled on
the same in-plane grid centred on the point: columns run posterior (+y), rows run inferior (-z),
and the slices (the channels) run to the patient's left (+x), whatever the stack's own orientation.
Reversing the channels is therefore a mirror through the sagittal plane: a right foramen's crop,
reversed, looks like a left one, so one head reads both sides.

For training, :func:`level_crop` can return ``margin`` extra slices on each side and ``pad`` extra
pixels around the grid, from which :func:`jitter` draws a shifted window (localisation is off by a
slice about a third of the time).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from lumbar_core import vocab
from lumbar_core.geometry import unit
from lumbar_core.ingested import IngestedData, Volume

SPINAL = "spinal_canal_stenosis"
FORAMINAL = ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing")


def level_crop(
    volume: Volume, point: np.ndarray, *, slices: int, size: int, crop_mm: float, max_mm: float, margin: int = 0, pad: int = 0
) -> np.ndarray | None:
    """A (slices + 2 margin, size + 2 pad, size + 2 pad) float32 crop, or None when no slice is within ``max_mm``.

    Slices beyond the stack's ends repeat the end slice. Each slice is scaled by its own 1st and
    99.5th percentiles (scanners differ in gain).
    """
    g = volume.geometry
    k, distance = g.nearest_slice(point)
    if distance > max_mm:
        return None
    normal = g.normal
    ex = unit(np.array([0.0, 1.0, 0.0]) - normal[1] * normal)  # posterior, in the plane
    ey = unit(np.cross(normal, ex))
    if ey[2] > 0:
        ey = -ey  # inferior
    n = size + 2 * pad
    step = crop_mm / size
    offsets = (np.arange(n) - (n - 1) / 2) * step
    grid = point[None, None, :] + offsets[None, :, None] * ex + offsets[:, None, None] * ey
    half = slices // 2 + margin
    order = np.arange(k - half, k + half + 1)
    if normal[0] < 0:  # slices must run to the patient's left (+x)
        order = np.arange(k + half, k - half - 1, -1)
    out = np.empty((len(order), n, n), dtype=np.float32)
    for c, j in enumerate(np.clip(order, 0, len(g.ipp) - 1)):
        plane = g.plane(int(j))
        x, y, _ = plane.world_to_pixel(grid)
        image = volume.pixels[j].astype(np.float32)
        lo, hi = np.percentile(image, [1, 99.5])
        sampled = ndimage.map_coordinates(image, [y, x], order=1, mode="constant", cval=float(lo))
        out[c] = np.clip((sampled - lo) / max(hi - lo, 1e-6), 0, 1.5)
    return out


def mirror(crop: np.ndarray) -> np.ndarray:
    """The crop seen from the other side: its slices reversed (a right foramen as a left one)."""
    return crop[::-1].copy()


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


def study_crops(
    data: IngestedData,
    levels: pd.DataFrame,
    study: int,
    *,
    slices: int,
    size: int,
    crop_mm: float,
    max_mm: float,
    foramen_offset_mm: float,
    margin: int = 0,
    pad: int = 0,
) -> dict[tuple[str, str], np.ndarray]:
    """(condition, level) -> crop for a study's found levels (rows of ``levels`` with ``canal_x/y/z``).

    Spinal canal stenosis on the Sagittal T2/STIR stack nearest the canal point; left and right
    foraminal narrowing on the Sagittal T1 stack nearest the points ``foramen_offset_mm`` to each side
    (patient left is +x), the right one mirrored.
    """
    index = data.index
    study_index = index[(index["study_id"] == study) & (index["orientation"] == "sagittal")]
    found = levels[(levels["study_id"] == study) & (levels["source"] != "missing")]
    if found.empty:
        return {}
    volumes = {
        description: [data.volume(study, r.series_id, r.stack) for r in rows.itertuples()]
        for description, rows in study_index.groupby("description")
    }
    wanted = [(SPINAL, vocab.SAGITTAL_T2, 0.0), (FORAMINAL[0], vocab.SAGITTAL_T1, 1.0), (FORAMINAL[1], vocab.SAGITTAL_T1, -1.0)]
    out = {}
    for row in found.itertuples():
        canal = np.array([row.canal_x, row.canal_y, row.canal_z], dtype=float)
        for condition, description, side in wanted:
            point = canal + side * foramen_offset_mm * np.array([1.0, 0.0, 0.0])
            stack = min(volumes.get(description, []), key=lambda v: v.geometry.nearest_slice(point)[1], default=None)
            if stack is None:
                continue
            crop = level_crop(stack, point, slices=slices, size=size, crop_mm=crop_mm, max_mm=max_mm, margin=margin, pad=pad)
            if crop is not None:
                out[(condition, row.level)] = mirror(crop) if side < 0 else crop
    return out
