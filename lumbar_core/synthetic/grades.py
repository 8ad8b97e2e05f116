"""Severity of every target of a phantom study: latent degrees, true grades, reader labels.

Each (condition, level) gets a latent Gaussian score built from a study factor, a level factor
correlated between neighbouring levels, a factor shared by the left and right side of a condition
group, and an independent part. Its normal CDF ``u`` is cut at the real prevalence
(docs/phantom.md), so every target's grade has the real marginal distribution. The latent degree in
[0, 1] that shapes the anatomy maps ``u`` piecewise-linearly so grades change at 1/3 and 2/3.
Readers disagree: labels are the grade of a perturbed latent score (same prevalence), so
targets near a boundary are sometimes one grade off; some cells are left empty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from lumbar_core import vocab
from lumbar_core.prevalence import REAL_PREVALENCE

_VARIANCE = {"study": 0.25, "level": 0.2, "group": 0.25, "own": 0.3}
_LEVEL_RHO = 0.5
#: Extra chance, relative to the base rate, that a cell is left empty (real: upper subarticular).
_MISSING_FACTOR = {("subarticular", "l1_l2"): 25.0, ("subarticular", "l2_l3"): 12.0}


@dataclass(frozen=True)
class StudyGrades:
    """Per (condition, level): latent degree (0..1), true grade, reader label (None = empty cell)."""

    degree: dict[tuple[str, str], float]
    grade: dict[tuple[str, str], int]
    label: dict[tuple[str, str], int | None]


def degree_from_u(u: float, p: tuple[float, float, float]) -> float:
    """Map a CDF value to a degree whose grade boundaries are 1/3 and 2/3."""
    c0, c1 = p[0], p[0] + p[1]
    if u < c0:
        return u / c0 / 3
    if u < c1:
        return 1 / 3 + (u - c0) / max(p[1], 1e-12) / 3
    return 2 / 3 + (u - c1) / max(p[2], 1e-12) / 3


def grade_of_degree(degree: float) -> int:
    """0 below 1/3, 1 below 2/3, else 2."""
    return 0 if degree < 1 / 3 else 1 if degree < 2 / 3 else 2


def sample_grades(rng: np.random.Generator, *, label_noise_sd: float, p_missing_cell: float) -> StudyGrades:
    """Sample one study's degrees, grades and reader labels."""
    study = rng.normal()
    level = np.zeros(len(vocab.LEVELS))
    level[0] = rng.normal()
    for i in range(1, len(level)):
        level[i] = _LEVEL_RHO * level[i - 1] + np.sqrt(1 - _LEVEL_RHO**2) * rng.normal()
    group = {(g, lv): rng.normal() for g in vocab.GROUPS for lv in vocab.LEVELS}
    degree, grade, label = {}, {}, {}
    for condition in vocab.CONDITIONS:
        g = vocab.CONDITION_GROUP[condition]
        for i, lv in enumerate(vocab.LEVELS):
            z = (
                np.sqrt(_VARIANCE["study"]) * study
                + np.sqrt(_VARIANCE["level"]) * level[i]
                + np.sqrt(_VARIANCE["group"]) * group[(g, lv)]
                + np.sqrt(_VARIANCE["own"]) * rng.normal()
            )
            prevalence = REAL_PREVALENCE[(condition, lv)]
            d = degree_from_u(float(ndtr(z)), prevalence)
            key = (condition, lv)
            degree[key] = d
            grade[key] = grade_of_degree(d)
            # readers disagree near the grade boundaries: they read a perturbed latent score, rescaled
            # to unit variance so the labels keep the real prevalence
            z_read = (z + rng.normal(0, label_noise_sd)) / np.sqrt(1 + label_noise_sd**2)
            read = grade_of_degree(degree_from_u(float(ndtr(z_read)), prevalence))
            read = min(max(read, grade[key] - 1), grade[key] + 1)  # at most one grade off
            missing = rng.random() < p_missing_cell * _MISSING_FACTOR.get((g, lv), 1.0)
            label[key] = None if missing else read
    return StudyGrades(degree, grade, label)
