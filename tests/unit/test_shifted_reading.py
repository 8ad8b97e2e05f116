"""Crop models read each level at its point and a slice's width either way, and average (prediction.shifted_crops)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lumbar_core.prediction import ReadParams, mean_readings, shifted_crops
from lumbar_core.stages.calibrate import CalibrateParams
from lumbar_core.stages.predict import PredictParams


def _levels() -> pd.DataFrame:
    points = {"canal_x": [0.0, 1.0], "canal_y": [5.0, 6.0], "canal_z": [10.0, -20.0]}
    return pd.DataFrame({"study_id": [1, 1], "level": ["l3_l4", "l4_l5"], "source": ["localiser"] * 2, **points})


def _crops_of(seen: list[pd.DataFrame], skip_above: float | None = None):
    """A stand-in cutter that records the level points it is given; a crop's value is its point's z."""

    def cut(levels: pd.DataFrame) -> dict[tuple[str, str], np.ndarray]:
        seen.append(levels.copy())
        return {
            ("left", r.level): np.full((1, 2, 2), r.canal_z, dtype=np.float32)
            for r in levels.itertuples()
            if skip_above is None or r.canal_z <= skip_above
        }

    return cut


def test_no_shift_cuts_at_the_points_only():
    seen: list[pd.DataFrame] = []
    crops = shifted_crops(_levels(), "canal_z", 0.0, _crops_of(seen))
    assert len(seen) == 1 and len(crops) == 2
    pd.testing.assert_frame_equal(seen[0], _levels())


def test_shift_moves_only_the_named_axis_both_ways():
    seen: list[pd.DataFrame] = []
    crops = shifted_crops(_levels(), "canal_z", 2.0, _crops_of(seen))
    assert len(crops) == 6
    moved = sorted(tuple(s["canal_z"]) for s in seen)
    assert moved == [(8.0, -22.0), (10.0, -20.0), (12.0, -18.0)]
    for s in seen:  # the other coordinates stay where the level was found
        assert s["canal_x"].tolist() == [0.0, 1.0] and s["canal_y"].tolist() == [5.0, 6.0]
    assert _levels()["canal_z"].tolist() == [10.0, -20.0]  # the caller's table is not changed


def test_readings_are_averaged_per_level_over_the_crops_cut():
    # a crop is missing where the shifted point leaves the stack: the mean is over the crops there are
    crops = shifted_crops(_levels(), "canal_z", 2.0, _crops_of([], skip_above=11.0))
    probs = np.array([[float(crop.flat[0]), 0.0, 0.0] for _, crop in crops])
    means = mean_readings(crops, probs)
    assert means[("left", "l4_l5")][0] == pytest.approx(-20.0)  # (-22 - 20 - 18) / 3
    assert means[("left", "l3_l4")][0] == pytest.approx(9.0)  # (8 + 10) / 2; 12 was not cut


def test_calibrate_and_predict_read_alike_by_default():
    # calibrate fits the weights on readings made as predict makes them
    assert PredictParams().shift_mm == CalibrateParams().shift_mm == ReadParams().shift_mm > 0
