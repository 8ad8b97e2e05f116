"""The localiser's training crops: the slices around the labelled levels, with the levels' middle in view."""

import numpy as np
import pytest

from lumbar_core.stages.level_train import Sample, _crop


def _sample(n_slices: int = 15, size: int = 120) -> Sample:
    slices = np.arange(n_slices, dtype=np.float32)[:, None, None] * np.ones((1, size, size), np.float32)
    points = np.array([[7.0, 30.0 + 12 * i, 60.0] for i in range(5)])
    points[2] = np.nan  # one level unlabelled
    return Sample(slices, points, slice_mm=4.0)


@pytest.mark.parametrize("each_side", [1, 2, 4])
def test_a_crop_holds_the_slices_around_the_levels_and_their_middle_in_view(each_side):
    sample = _sample()
    for seed in range(20):
        slices, points = _crop(sample, 64, np.random.default_rng(seed), each_side)
        assert slices.shape == (2 * each_side + 1, 64, 64)
        assert slices[:, 0, 0].tolist() == list(range(7 - each_side, 8 + each_side))  # the slices' own indices
        known = points[~np.isnan(points[:, 0])]
        assert np.all(known[:, 0] == each_side)  # the labelled slice is the middle one
        middle = known[:, 1:].mean(axis=0)
        assert np.all((middle >= 14) & (middle < 64 - 14))
        assert np.array_equal(known[:, 1:] - known[0, 1:], sample.points[~np.isnan(sample.points[:, 0])][:, 1:] - sample.points[0, 1:])


def test_a_crop_near_the_first_slice_is_cut_short():
    sample = _sample()
    sample.points[~np.isnan(sample.points[:, 0]), 0] = 1.0
    slices, points = _crop(sample, 64, np.random.default_rng(0), 4)
    assert slices.shape[0] == 6 and np.nanmax(points[:, 0]) == 1.0
