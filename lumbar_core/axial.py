"""2.5D axial crops beside the spinal canal at a disc level, one per side, in one canonical orientation.

A crop is ``slices`` neighbouring axial slices around the one nearest the level's canal point, each
sampled on the same in-plane grid centred ``lateral_mm`` to one side of the canal point (over the
lateral recess): columns run to the patient's left (+x) and rows run posterior (+y), whatever the
stack's own orientation, and the slices (the channels) run superior. A right crop is mirrored
(its columns reversed), so in every crop the columns run from the canal's midline outwards and one
head reads both sides.

For training, :func:`side_crop` can return ``margin`` extra slices on each side and ``pad`` extra
pixels around the grid, from which :func:`lumbar_core.sagittal_crops.jitter` draws a shifted window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from lumbar_core import vocab
from lumbar_core.geometry import unit
from lumbar_core.ingested import IngestedData, Volume

SIDES = {"left": 1.0, "right": -1.0}  # patient left is +x


def side_crop(
    volume: Volume,
    point: np.ndarray,
    side: str,
    *,
    slices: int,
    size: int,
    crop_mm: float,
    lateral_mm: float,
    max_mm: float,
    margin: int = 0,
    pad: int = 0,
) -> np.ndarray | None:
    """A (slices + 2 margin, size + 2 pad, size + 2 pad) float32 crop, or None when no slice is within ``max_mm``.

    Slices beyond the stack's ends repeat the end slice. Each slice is scaled by its own 1st and
    99.5th percentiles.
    """
    g = volume.geometry
    k, distance = g.nearest_slice(point)
    if distance > max_mm:
        return None
    normal = g.normal
    ex = unit(np.array([1.0, 0.0, 0.0]) - normal[0] * normal)  # patient left, in the plane
    ey = unit(np.cross(normal, ex))
    if ey[1] < 0:
        ey = -ey  # posterior
    n = size + 2 * pad
    offsets = (np.arange(n) - (n - 1) / 2) * (crop_mm / size)
    centre = np.asarray(point, dtype=float) + SIDES[side] * lateral_mm * ex
    grid = centre[None, None, :] + offsets[None, :, None] * ex + offsets[:, None, None] * ey
    half = slices // 2 + margin
    order = np.arange(k - half, k + half + 1)
    if normal[2] < 0:  # slices must run superior (+z)
        order = order[::-1]
    out = np.empty((len(order), n, n), dtype=np.float32)
    for c, j in enumerate(np.clip(order, 0, len(g.ipp) - 1)):
        x, y, _ = g.plane(int(j)).world_to_pixel(grid)
        image = volume.pixels[j].astype(np.float32)
        lo, hi = np.percentile(image, [1, 99.5])
        sampled = ndimage.map_coordinates(image, [y, x], order=1, mode="constant", cval=float(lo))
        out[c] = np.clip((sampled - lo) / max(hi - lo, 1e-6), 0, 1.5)
    return out[:, :, ::-1].copy() if side == "right" else out


def study_side_crops(
    data: IngestedData,
    levels: pd.DataFrame,
    study: int,
    *,
    slices: int,
    size: int,
    crop_mm: float,
    lateral_mm: float,
    max_mm: float,
    margin: int = 0,
    pad: int = 0,
) -> dict[tuple[str, str], np.ndarray]:
    """(side, level) -> crop for a study's found levels, on the Axial T2 stack with a slice nearest the canal point."""
    index = data.index
    stacks = index[(index["study_id"] == study) & (index["description"] == vocab.AXIAL_T2) & (index["orientation"] == "axial")]
    found = levels[(levels["study_id"] == study) & (levels["source"] != "missing")]
    if stacks.empty or found.empty:
        return {}
    volumes = [data.volume(study, s.series_id, s.stack) for s in stacks.itertuples()]
    out = {}
    for row in found.itertuples():
        point = np.array([row.canal_x, row.canal_y, row.canal_z], dtype=float)
        best = min(volumes, key=lambda v: v.geometry.nearest_slice(point)[1])
        for side in SIDES:
            crop = side_crop(
                best, point, side, slices=slices, size=size, crop_mm=crop_mm, lateral_mm=lateral_mm, max_mm=max_mm, margin=margin, pad=pad
            )
            if crop is not None:
                out[(side, row.level)] = crop
    return out
