"""2.5D crops around a level point on a sagittal stack, in one canonical orientation.

A crop is ``slices`` neighbouring sagittal slices around the one nearest the point, each sampled on
the same in-plane grid centred on the point: columns run posterior (+y), rows run inferior (-z),
and the slices (the channels) run to the patient's left (+x), whatever the stack's own orientation.
Reversing the channels is therefore a mirror through the sagittal plane: a right foramen's crop,
reversed, looks like a left one, so one head reads both sides.

For training, :func:`level_crop` can return ``margin`` extra slices on each side and ``pad`` extra
pixels around the grid, from which :func:`lumbar_core.stack_crops.jitter` draws a shifted window
(localisation is off by a slice about a third of the time).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lumbar_core import vocab
from lumbar_core.ingested import IngestedData, Volume
from lumbar_core.stack_crops import crop_settings, stack_crop

SPINAL = "spinal_canal_stenosis"
FORAMINAL = ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing")


def level_crop(
    volume: Volume, point: np.ndarray, *, slices: int, size: int, crop_mm: float, max_mm: float, margin: int = 0, pad: int = 0
) -> np.ndarray | None:
    """A (slices + 2 margin, size + 2 pad, size + 2 pad) crop around ``point`` (:func:`lumbar_core.stack_crops.stack_crop`), or None."""
    return stack_crop(
        volume,
        point,
        columns=1,
        rows=2,
        rows_sign=-1.0,
        channels=0,
        slices=slices,
        size=size,
        crop_mm=crop_mm,
        max_mm=max_mm,
        margin=margin,
        pad=pad,
    )


def mirror(crop: np.ndarray) -> np.ndarray:
    """The crop seen from the other side: its slices reversed (a right foramen as a left one)."""
    return crop[::-1].copy()


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


def study_crops_of(
    data: IngestedData, levels: pd.DataFrame, study: int, config: dict, foramen_offset_mm: float
) -> dict[tuple[str, str], np.ndarray]:
    """:func:`study_crops` cut as a crop classifier's config says (its slices, size, crop_mm, max_mm)."""
    return study_crops(data, levels, study, foramen_offset_mm=foramen_offset_mm, **crop_settings(config))
