"""2.5D axial crops beside the spinal canal at a disc level, one per side, in one canonical orientation.

A crop is ``slices`` neighbouring axial slices around the one nearest the level's canal point, each
sampled on the same in-plane grid centred ``lateral_mm`` to one side of the canal point (over the
lateral recess): columns run to the patient's left (+x) and rows run posterior (+y), whatever the
stack's own orientation, and the slices (the channels) run superior. A right crop is mirrored
(its columns reversed), so in every crop the columns run from the canal's midline outwards and one
head reads both sides.

For training, :func:`side_crop` can return ``margin`` extra slices on each side and ``pad`` extra
pixels around the grid, from which :func:`lumbar_core.stack_crops.jitter` draws a shifted window.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lumbar_core import vocab
from lumbar_core.geometry import unit
from lumbar_core.ingested import IngestedData, Volume
from lumbar_core.stack_crops import crop_settings, stack_crop

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
    """A (slices + 2 margin, size + 2 pad, size + 2 pad) crop of one side (:func:`lumbar_core.stack_crops.stack_crop`), or None."""
    g = volume.geometry
    ex = unit(np.array([1.0, 0.0, 0.0]) - g.normal[0] * g.normal)  # patient left, in the plane
    centre = np.asarray(point, dtype=float) + SIDES[side] * lateral_mm * ex
    out = stack_crop(
        volume,
        centre,
        columns=0,
        rows=1,
        rows_sign=1.0,
        channels=2,
        slices=slices,
        size=size,
        crop_mm=crop_mm,
        max_mm=max_mm,
        margin=margin,
        pad=pad,
    )
    if out is None:
        return None
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


def study_side_crops_of(data: IngestedData, levels: pd.DataFrame, study: int, config: dict) -> dict[tuple[str, str], np.ndarray]:
    """:func:`study_side_crops` cut as a DenseNet's config says (its slices, size, crop_mm, lateral_mm, max_mm)."""
    return study_side_crops(data, levels, study, lateral_mm=float(config["lateral_mm"]), **crop_settings(config))
