"""How well levels were found: errors against the labelled points, shares within 5 mm and at the right level."""

from __future__ import annotations

import numpy as np
import pandas as pd


def errors_against(found: dict[str, np.ndarray], labelled: dict[str, np.ndarray]) -> tuple[list[float], list[bool]]:
    """Errors (mm) of found levels at their labelled points, and whether each labelled point's nearest found level is its own."""
    errors, right = [], []
    for level, point in labelled.items():
        if level in found:
            errors.append(float(np.linalg.norm(found[level] - point)))
        if found:
            right.append(min(found, key=lambda lv: np.linalg.norm(found[lv] - point)) == level)
    return errors, right


def summary(errors: list[float], right: list[bool], labelled: int) -> dict[str, float]:
    """Share of ``labelled`` points with a level within 5 mm, share nearest the right level, median error (mm)."""
    return {
        "labelled_levels": labelled,
        "share_within_5mm": float(np.sum(np.array(errors) <= 5.0) / labelled) if labelled else 0.0,
        "share_right_level": float(np.mean(right)) if right else 0.0,
        "median_error_mm": float(np.median(errors)) if errors else float("nan"),
    }


def labelled_canal(coords: pd.DataFrame) -> pd.DataFrame:
    """Each labelled level's spinal canal point: ``study_id, level, canal_x, canal_y, canal_z`` (world mm; the mean of repeats)."""
    spinal = coords[coords["condition"] == "spinal_canal_stenosis"]
    points = spinal.groupby(["study_id", "level"], as_index=False)[["world_x", "world_y", "world_z"]].mean()
    return points.rename(columns={f"world_{a}": f"canal_{a}" for a in "xyz"})


def centred_on_labels(levels: pd.DataFrame, coords: pd.DataFrame) -> pd.DataFrame:
    """``levels`` (study_id, level, source, canal_x/y/z) with every labelled level at its labelled canal point (source ``labels``).

    Levels without a labelled spinal canal point keep their row; labelled levels a study's row lacked are added.
    """
    labelled = labelled_canal(coords).assign(source="labels")
    keys = pd.MultiIndex.from_frame(labelled[["study_id", "level"]])
    rest = levels[~pd.MultiIndex.from_frame(levels[["study_id", "level"]]).isin(keys)]
    columns = ["study_id", "level", "source", "canal_x", "canal_y", "canal_z"]
    return pd.concat([labelled[columns], rest[columns]], ignore_index=True)


def points_by_level(points: pd.DataFrame, study: int | None = None) -> dict[str, np.ndarray]:
    """Level -> canal point (world mm) of one study, from a table of :func:`labelled_canal`'s columns (``None``: the table holds one)."""
    rows = points if study is None else points[points["study_id"] == study]
    return {str(r.level): np.array([r.canal_x, r.canal_y, r.canal_z], dtype=float) for r in rows.itertuples()}
