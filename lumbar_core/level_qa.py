"""Quality checks of a study's disc levels before anything is read at them.

Levels come from a model (the SPIDER-trained U-Net, or the level localiser trained on the target
dataset's own labelled points) and a model can be wrong without knowing it: on data unlike its
training data it may put all five levels in front of the discs, or two between them. Every study's
levels are checked here, in world millimetres, against what any lumbar spine must look like:

- **inside the image**: each level lies within its sagittal stack's field of view and slab;
- **series agree**: where two sagittal series (T1 and T2) place the same level, they agree within
  ``series_mm`` (about half the spacing of two levels: a level one off is caught, while the
  foraminal points readers mark on T1 may lie 10 mm from the canal point on T2);
- **order**: the levels descend the spine in order, L1/L2 highest, each below the last;
- **spacing**: neighbouring levels are ``gap_mm`` apart at most and at least, and no gap is far from
  the study's own typical gap (``gap_ratio``: the spine's own scale, so a small patient's short
  vertebrae are fine and a level skipped or doubled is not);
- **on the spine axis**: each level lies within ``axis_mm`` of a smooth curve through the others.

A level that fails is dropped and reported with what failed and by how much; a study whose levels
are out of order (or too few to check) loses all of them. Dropped levels are predicted from the
prior, never read at a doubtful place.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from lumbar_core import vocab
from lumbar_core.geometry import StackGeometry


@dataclass(frozen=True)
class QaLimits:
    """The bounds a study's levels must keep (mm unless said otherwise)."""

    gap_mm: tuple[float, float] = (18.0, 60.0)
    gap_ratio: tuple[float, float] = (0.6, 1.6)
    axis_mm: float = 10.0
    series_mm: float = 20.0
    margin_mm: float = 2.0


@dataclass(frozen=True)
class QaResult:
    """The levels kept (level -> world point) and one problem row per failure."""

    kept: dict[str, np.ndarray]
    problems: list[dict]


def _problem(study: int, kind: str, message: str) -> dict:
    return {"study_id": study, "kind": f"level QA: {kind}", "message": f"study {study}: {message}"}


def inside(geometry: StackGeometry, point: np.ndarray, margin_mm: float) -> bool:
    """Whether a world point lies within a stack's field of view and between its first and last slice."""
    k, distance = geometry.nearest_slice(point)
    x, y, _ = geometry.plane(k).world_to_pixel(point)
    rows, cols = geometry.rows, geometry.cols
    in_plane = -0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5
    return bool(in_plane and distance <= geometry.slice_spacing / 2 + margin_mm)


def check_study(study: int, per_series: list[tuple[StackGeometry, dict[str, np.ndarray]]], limits: QaLimits = QaLimits()) -> QaResult:
    """Check one study's levels, found on each of its sagittal stacks; returns the levels kept and the problems.

    Args:
        study: the study id (for the messages).
        per_series: (stack geometry, level -> world point) for each sagittal stack the levels were
            found on, the most trusted first: a level kept takes its point from the first series
            that has it, the others only confirm it.
        limits: the bounds.
    """
    problems: list[dict] = []
    points: dict[str, list[np.ndarray]] = {}
    for geometry, levels in per_series:
        for level, point in levels.items():
            if inside(geometry, point, limits.margin_mm):
                points.setdefault(level, []).append(np.asarray(point, dtype=float))
            else:
                problems.append(
                    _problem(study, "outside the image", f"{vocab.LEVEL_TITLES[level]} lies outside the series it was found on")
                )
    kept: dict[str, np.ndarray] = {}
    for level, found in points.items():
        if len(found) > 1:
            spread = max(float(np.linalg.norm(a - b)) for a in found for b in found)
            if spread > limits.series_mm:
                problems.append(
                    _problem(
                        study,
                        "series disagree",
                        f"{vocab.LEVEL_TITLES[level]}: series disagree by {spread:.0f} mm (> {limits.series_mm:.0f})",
                    )
                )
                continue
        kept[level] = found[0]  # the first series that has it: callers put the one they trust most first
    ordered = [lv for lv in vocab.LEVELS if lv in kept]
    if len(ordered) < 2:
        if ordered:
            problems.append(_problem(study, "too few levels", f"only {vocab.LEVEL_TITLES[ordered[0]]} found: its place cannot be checked"))
        return QaResult({}, problems)
    # order: each level lower (in world z, superior +) than the one above it
    z = [kept[lv][2] for lv in ordered]
    if any(b >= a for a, b in itertools.pairwise(z)):
        titles = ", ".join(f"{vocab.LEVEL_TITLES[lv]} z={kept[lv][2]:.0f}" for lv in ordered)
        problems.append(_problem(study, "out of order", f"levels do not descend the spine ({titles})"))
        return QaResult({}, problems)
    # spacing, per level step (a missing level in between counts double)
    steps = [vocab.LEVELS.index(b) - vocab.LEVELS.index(a) for a, b in itertools.pairwise(ordered)]
    gaps = [float(np.linalg.norm(kept[b] - kept[a])) / n for (a, b), n in zip(itertools.pairwise(ordered), steps)]
    typical = float(np.median(gaps))
    bad_gaps = []
    for (a, b), gap in zip(itertools.pairwise(ordered), gaps):
        low, high = max(limits.gap_mm[0], limits.gap_ratio[0] * typical), min(limits.gap_mm[1], limits.gap_ratio[1] * typical)
        if not low <= gap <= high:
            problems.append(
                _problem(
                    study,
                    "spacing",
                    f"{vocab.LEVEL_TITLES[a]} to {vocab.LEVEL_TITLES[b]}: {gap:.0f} mm per level, expected {low:.0f}-{high:.0f}",
                )
            )
            bad_gaps.append((a, b))
    bad = _culprits(ordered, bad_gaps)
    if 2 * len(bad_gaps) > len(gaps) or len(bad) >= len(ordered) - 1:  # most gaps wrong: no level can be trusted
        return QaResult({}, problems)
    # on the spine axis: drop, one at a time, the level farthest from a curve through the others
    while len(kept) - len(bad) >= 4:
        rest = [lv for lv in ordered if lv not in bad]
        t = np.array([vocab.LEVELS.index(lv) for lv in rest], dtype=float)
        pts = np.stack([kept[lv] for lv in rest])
        offs = []
        for i in range(len(rest)):
            others = np.arange(len(rest)) != i
            coef = np.polyfit(t[others], pts[others], 2 if others.sum() >= 4 else 1)
            offs.append(float(np.linalg.norm(pts[i] - np.array([np.polyval(coef[:, d], t[i]) for d in range(3)]))))
        worst = int(np.argmax(offs))
        if offs[worst] <= limits.axis_mm:
            break
        problems.append(
            _problem(study, "off the spine axis", f"{vocab.LEVEL_TITLES[rest[worst]]} lies {offs[worst]:.0f} mm off the others' curve")
        )
        bad.add(rest[worst])
    return _without(kept, bad, problems)


def _culprits(ordered: list[str], bad_gaps: list[tuple[str, str]]) -> set[str]:
    """The levels to blame for bad gaps: one in two bad gaps (misplaced between its neighbours), else the end one."""
    votes: dict[str, int] = {}
    for a, b in bad_gaps:
        votes[a] = votes.get(a, 0) + 1
        votes[b] = votes.get(b, 0) + 1
    out = {lv for lv, n in votes.items() if n >= 2}
    for a, b in bad_gaps:
        if a in out or b in out:
            continue
        ends = {a, b} & {ordered[0], ordered[-1]}
        out |= ends or {a, b}
    return out


def _without(kept: dict[str, np.ndarray], bad: set[str], problems: list[dict]) -> QaResult:
    return QaResult({lv: p for lv, p in kept.items() if lv not in bad}, problems)
