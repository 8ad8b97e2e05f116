"""Axial crops around the spinal canal at a disc level, in one canonical orientation.

A crop is sampled on the axial slice nearest the level's canal centre: columns run to the patient's
left (+x), rows run posterior (+y), whatever the stack's own orientation, so a flip of the columns
is exactly a swap of the patient's left and right.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage

from lumbar_core import vocab
from lumbar_core.geometry import unit
from lumbar_core.ingested import IngestedData, Volume


def axial_crop(volume: Volume, centre: np.ndarray, *, size: int, crop_mm: float, max_mm: float = 5.0) -> np.ndarray | None:
    """A (size, size) float32 crop of ``crop_mm`` around a world point, or None if no slice is within ``max_mm``."""
    g = volume.geometry
    k, distance = g.nearest_slice(centre)
    if distance > max_mm:
        return None
    plane = g.plane(k)
    normal = plane.normal
    ex = unit(np.array([1.0, 0, 0]) - normal[0] * normal)
    ey = unit(np.cross(normal, ex))
    if ey[1] < 0:
        ey = -ey
    step = crop_mm / size
    offsets = (np.arange(size) - (size - 1) / 2) * step
    world = centre[None, None, :] + offsets[None, :, None] * ex + offsets[:, None, None] * ey
    x, y, _ = plane.world_to_pixel(world)
    image = volume.pixels[k].astype(np.float32)
    crop = ndimage.map_coordinates(image, [y, x], order=1, mode="constant", cval=0.0)
    lo, hi = np.percentile(image, [1, 99.5])
    return np.clip((crop - lo) / max(hi - lo, 1e-6), 0, 1.5).astype(np.float32)


def level_crops(data: IngestedData, levels: pd.DataFrame, study: int, *, size: int, crop_mm: float, max_mm: float) -> dict[str, np.ndarray]:
    """Level -> crop on the nearest axial slice of any Axial T2 stack of a study."""
    index = data.index
    stacks = index[(index["study_id"] == study) & (index["description"] == vocab.AXIAL_T2) & (index["orientation"] == "axial")]
    found = levels[(levels["study_id"] == study) & (levels["source"] != "missing")]
    volumes = [data.volume(study, s.series_id, s.stack) for s in stacks.itertuples()]
    out = {}
    for row in found.itertuples():
        centre = np.array([row.canal_x, row.canal_y, row.canal_z])
        best = min(volumes, key=lambda v: v.geometry.nearest_slice(centre)[1], default=None)
        if best is None:
            continue
        crop = axial_crop(best, centre, size=size, crop_mm=crop_mm, max_mm=max_mm)
        if crop is not None:
            out[row.level] = crop
    return out
