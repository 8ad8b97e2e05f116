"""How well levels were found: errors against the labelled points, shares within 5 mm and at the right level."""

from __future__ import annotations

import numpy as np


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
