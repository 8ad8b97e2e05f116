"""Level QA: plausible levels pass; misplaced, misordered, doubled or disagreeing levels are refused and named."""

import numpy as np
import pytest

from lumbar_core import vocab
from lumbar_core.geometry import StackGeometry
from lumbar_core.level_qa import QaLimits, check_study, inside


def _stack(slices=11, spacing=4.0, size=120, px=2.5) -> StackGeometry:
    """A sagittal stack: rows head to foot (-z), columns front to back (+y), slices along x."""
    ipp = np.array([[-(slices - 1) / 2 * spacing + k * spacing, -size * px / 2, size * px / 2] for k in range(slices)])
    return StackGeometry(ipp, np.array([0, 1.0, 0]), np.array([0, 0, -1.0]), px, px, size, size)


def _spine(gap=35.0, top=70.0, curve=0.0):
    """Canal points of the five levels, descending from z = top, with a little lordosis."""
    return {lv: np.array([0.0, 20 + curve * (i - 2) ** 2, top - gap * i]) for i, lv in enumerate(vocab.LEVELS)}


def test_a_plausible_spine_passes_and_the_first_series_places_it():
    geometry = _stack()
    t1 = _spine(curve=2.0)
    t2 = {lv: p + np.array([0.0, 3.0, 0.0]) for lv, p in t1.items()}
    result = check_study(1, [(geometry, t1), (geometry, t2)])
    assert result.problems == [] and set(result.kept) == set(vocab.LEVELS)
    np.testing.assert_allclose(result.kept["l3_l4"], t1["l3_l4"]), "the first series' point, the other confirms it"
    small = check_study(2, [(geometry, _spine(gap=22.0))])  # a small patient: short but even gaps
    assert small.problems == [] and len(small.kept) == 5


@pytest.mark.parametrize(
    ("change", "kind", "kept"),
    [
        ({"l3_l4": np.array([0.0, 20.0, 150.0])}, "out of order", 0),
        ({"l3_l4": np.array([0.0, 20.0, 32.0])}, "spacing", 4),  # doubled: right under L2/L3
        ({"l2_l3": np.array([0.0, 20.0, 60.0])}, "spacing", 4),
        ({"l3_l4": np.array([0.0, 45.0, 0.0])}, "off the spine axis", 4),  # 25 mm behind the canal
        ({"l5_s1": np.array([0.0, 20.0, -400.0])}, "outside the image", 4),
    ],
)
def test_a_misplaced_level_is_refused_and_named(change, kind, kept):
    levels = {**_spine(), **change}
    result = check_study(7, [(_stack(), levels)])
    kinds = [p["kind"] for p in result.problems]
    assert f"level QA: {kind}" in kinds, result.problems
    assert all(p["message"].startswith("study 7:") for p in result.problems)
    assert len(result.kept) == kept
    assert all(np.linalg.norm(result.kept[lv] - levels[lv]) < 1e-9 for lv in result.kept)


def test_series_that_disagree_lose_that_level():
    geometry = _stack()
    t1, t2 = _spine(), _spine()
    t2["l2_l3"] = t2["l2_l3"] + np.array([0.0, 0.0, -30.0])  # one series a level off
    result = check_study(3, [(geometry, t1), (geometry, t2)])
    assert "l2_l3" not in result.kept and len(result.kept) == 4
    assert "series disagree by 30 mm" in result.problems[0]["message"]


def test_random_levels_are_refused():
    rng = np.random.default_rng(0)
    geometry = _stack()
    refused = 0
    for study in range(200):
        levels = {lv: np.array([rng.uniform(-20, 20), rng.uniform(-150, 150), rng.uniform(-150, 150)]) for lv in vocab.LEVELS}
        refused += len(check_study(study, [(geometry, levels)]).kept) == 0
    assert refused >= 198


def test_one_level_cannot_be_checked_and_limits_are_settable():
    result = check_study(4, [(_stack(), {"l4_l5": np.array([0.0, 20.0, -35.0])})])
    assert result.kept == {} and result.problems[0]["kind"] == "level QA: too few levels"
    strict = check_study(5, [(_stack(), _spine(gap=35.0))], QaLimits(gap_mm=(40.0, 60.0)))
    assert strict.kept == {} and any("expected 40-" in p["message"] for p in strict.problems)
    assert inside(_stack(), np.array([0.0, 0.0, 0.0]), 2.0) and not inside(_stack(), np.array([30.0, 0.0, 0.0]), 2.0)
