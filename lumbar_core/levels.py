"""Vertebrae and disc levels from U-Net class maps: shared by vertebra-segment and predict.

A sagittal stack is segmented in the canonical layout and the class map returned to the stack's
grid; vertebrae L1..S1 are the largest connected component of each class, kept while they descend
the spine with plausible spacing; each disc level lies between adjacent vertebrae (the disc voxels
between them, else the midpoint), with the canal centre beside it. All positions are world mm (LPS).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage

from lumbar_core import vocab
from lumbar_core.ingested import Volume
from lumbar_core.models.unet import predict
from lumbar_core.sagittal import canonical_of_stack, normalise, resample_slice, resize_to
from lumbar_core.spider import CANAL, DISC, VERTEBRA_CLASSES

VERTEBRAE = ("L1", "L2", "L3", "L4", "L5", "S1")
LEVEL_PAIRS = dict(zip(vocab.LEVELS, itertools.pairwise(VERTEBRAE)))
MIN_GAP_MM, MAX_GAP_MM = 15.0, 60.0


def segment_stack(model, volume: Volume, spacing_mm: float, batch_size: int) -> np.ndarray:
    """U-Net class map (slices, rows, cols) of a sagittal stack, in the stack's own grid."""
    canon = canonical_of_stack(volume.geometry)
    pixels = canon.apply(volume.pixels)
    in_plane = canon.spacing[1:]
    slices = np.stack([normalise(resample_slice(s, in_plane, spacing_mm, order=1)) for s in pixels])
    labels = predict(model, slices, batch_size=batch_size)
    back = np.stack([resize_to(lab, pixels.shape[1:], order=0) for lab in labels])
    return canon.invert(back)


def _world(volume: Volume, voxels: np.ndarray) -> np.ndarray:
    """World points of voxel indices (n, 3) as (slice, row, col)."""
    return volume.geometry.pixel_to_world(voxels[:, 2], voxels[:, 1], voxels[:, 0])


def vertebra_centres(mask: np.ndarray, volume: Volume, min_voxels: int) -> dict[str, np.ndarray]:
    """World centroid of the largest connected component of each vertebra class present."""
    out = {}
    for name in VERTEBRAE:
        inside = mask == VERTEBRA_CLASSES[name]
        if inside.sum() < min_voxels:
            continue
        components, n = ndimage.label(inside)
        sizes = ndimage.sum(inside, components, index=range(1, n + 1))
        biggest = int(np.argmax(sizes)) + 1
        if sizes[biggest - 1] < min_voxels:
            continue
        out[name] = _world(volume, np.argwhere(components == biggest)).mean(axis=0)
    return out


def check_order(centres: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep the longest run of vertebrae that descend the spine with plausible spacing."""
    present = [v for v in VERTEBRAE if v in centres]
    best: list[str] = []
    run: list[str] = []
    for name in present:
        if run:
            prev = run[-1]
            gap = float(np.linalg.norm(centres[name] - centres[prev]))
            adjacent = VERTEBRAE.index(name) == VERTEBRAE.index(prev) + 1
            if not (adjacent and MIN_GAP_MM <= gap <= MAX_GAP_MM and centres[name][2] < centres[prev][2]):
                run = []
        run.append(name)
        if len(run) > len(best):
            best = list(run)
    return {v: centres[v] for v in best}


def _near_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray, t_range: tuple[float, float], radius: float) -> np.ndarray:
    axis = b - a
    length = float(np.linalg.norm(axis))
    t = (points - a) @ axis / length**2
    perp = np.linalg.norm(points - a - t[:, None] * axis, axis=1)
    return (t >= t_range[0]) & (t <= t_range[1]) & (perp <= radius)


def level_centres(mask: np.ndarray, volume: Volume, vertebrae: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Disc and canal centre (world mm) of each level whose upper vertebra (and lower, or L4 for L5/S1) was found."""
    disc_pts = _world(volume, np.argwhere(mask == DISC))
    canal_pts = _world(volume, np.argwhere(mask == CANAL))
    out = {}
    for level, (upper, lower) in LEVEL_PAIRS.items():
        if upper not in vertebrae:
            continue
        a = vertebrae[upper]
        if lower in vertebrae:
            b = vertebrae[lower]
            t_range = (0.2, 0.8)
        elif level == "l5_s1" and "L4" in vertebrae:
            b = a + (a - vertebrae["L4"])  # extrapolate one vertebra down
            t_range = (0.15, 0.7)
        else:
            continue
        near = disc_pts[_near_segment(disc_pts, a, b, t_range, 25.0)] if len(disc_pts) else disc_pts
        disc = near.mean(axis=0) if len(near) >= 3 else (a + b) / 2
        axis = (b - a) / np.linalg.norm(b - a)
        canal = None
        if len(canal_pts):
            along = np.abs((canal_pts - disc) @ axis)
            close = canal_pts[(along <= 6.0) & (np.linalg.norm(canal_pts - disc, axis=1) <= 40.0)]
            if len(close) >= 3:
                canal = close.mean(axis=0)
        out[level] = {"disc": disc, "canal": canal if canal is not None else disc}
    return out


@dataclass(frozen=True)
class StudyLevels:
    """One study's level rows (``levels.parquet`` schema) and problems."""

    rows: list[dict]
    problems: list[dict]


def combine_series(study: int, per_series: list[dict[str, dict[str, np.ndarray]]], coords: pd.DataFrame, fallback: bool) -> StudyLevels:
    """Average the levels found on a study's sagittal series (world mm); fill gaps from labels or mark them missing.

    With fewer than five levels and ``fallback``, the levels come from the labelled spinal canal
    points (``coords``: ingest's coordinates of this study); otherwise missing levels are marked.
    """
    rows, problems = [], []
    found = {lv for levels in per_series for lv in levels}
    use_labels = len(found) < len(vocab.LEVELS) and fallback
    spinal = coords[coords["condition"] == "spinal_canal_stenosis"] if not coords.empty else coords
    if len(found) < len(vocab.LEVELS):
        problems.append(
            {
                "study_id": study,
                "kind": "fewer than five levels",
                "message": f"study {study}: levels found {sorted(found)}; "
                + ("falling back to the labelled points" if use_labels and not spinal.empty else "the rest are missing"),
            }
        )
    for level in vocab.LEVELS:
        hits = [levels[level] for levels in per_series if level in levels]
        labelled = spinal[spinal["level"] == level] if not spinal.empty else spinal
        if hits and not (use_labels and not labelled.empty):
            disc = np.mean([h["disc"] for h in hits], axis=0)
            canal = np.mean([h["canal"] for h in hits], axis=0)
            source = "model"
        elif use_labels and not labelled.empty:
            canal = labelled[["world_x", "world_y", "world_z"]].to_numpy().mean(axis=0)
            disc, source = canal, "labels"
        else:
            rows.append({"study_id": study, "level": level, "source": "missing", "n_series": 0})
            continue
        rows.append(
            {
                "study_id": study,
                "level": level,
                "source": source,
                "n_series": len(hits),
                **{f"disc_{a}": float(v) for a, v in zip("xyz", disc)},
                **{f"canal_{a}": float(v) for a, v in zip("xyz", canal)},
            }
        )
    return StudyLevels(rows, problems)
