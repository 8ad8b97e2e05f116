"""The window nnU-Net segments around the levels it reads (:func:`lumbar_core.prediction.window_around`)."""

import numpy as np

from lumbar_core.prediction import window_around


def test_window_holds_the_points_with_their_margin_and_at_least_a_patch():
    points = np.array([[100.0, 150.0], [180.0, 160.0]])  # (row, col) in 0.5 mm pixels
    rows, cols = window_around(points, (600, 600), (0.5, 0.5), side_mm=100.0, margin_mm=20.0)
    # the points' extent plus 20 mm (40 px) on each side, grown to the 100 mm (200 px) patch
    assert rows.start <= 100 - 40 and rows.stop >= 180 + 40
    assert cols.start <= 150 - 40 and cols.stop >= 160 + 40
    assert rows.stop - rows.start >= 200 and cols.stop - cols.start >= 200  # at least the patch side
    # centred on the points: the window grows equally on both sides
    assert abs((rows.start + rows.stop) / 2 - 140) <= 1 and abs((cols.start + cols.stop) / 2 - 155) <= 1


def test_window_is_clipped_to_the_slice_and_honours_each_axis_spacing():
    rows, cols = window_around(np.array([[5.0, 5.0]]), (64, 32), (2.0, 1.0), side_mm=400.0, margin_mm=10.0)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (0, 64, 0, 32)  # a patch larger than the slice: the whole slice
    rows, cols = window_around(np.array([[30.0, 30.0]]), (200, 200), (2.0, 1.0), side_mm=0.0, margin_mm=10.0)
    assert rows.start == 25 and rows.stop == 36  # 10 mm = 5 rows of 2 mm
    assert cols.start == 20 and cols.stop == 41  # 10 mm = 10 columns of 1 mm


def test_points_far_outside_the_slice_give_an_empty_window():
    rows, _ = window_around(np.array([[500.0, 10.0]]), (100, 100), (1.0, 1.0), side_mm=20.0, margin_mm=5.0)
    assert rows.start >= rows.stop


def test_a_level_read_in_its_window_equals_the_read_on_the_whole_slice():
    from lumbar_core.nnunet.predict import level_distribution

    rng = np.random.default_rng(0)
    full = np.zeros((16, 120, 100))
    full[0] = 1.0  # background outside the window
    rows, cols = window_around(np.array([[60.0, 45.0]]), full.shape[1:], (1.0, 1.0), side_mm=30.0, margin_mm=14.0 + 24.0)
    part = rng.dirichlet(np.ones(16), size=(rows.stop - rows.start, cols.stop - cols.start)).transpose(2, 0, 1)
    part[4, 15:25, 10:20] += 3.0  # l2_l3 (classes 4-6) predicted near the point
    full[:, rows, cols] = part
    for level in ("l2_l3", "l4_l5"):  # one read on its own pixels, one through the fallback over severities
        on_slice = level_distribution(full, level, (45.0, 60.0), 14.0)
        in_window = level_distribution(part, level, (45.0 - cols.start, 60.0 - rows.start), 14.0)
        np.testing.assert_array_equal(on_slice, in_window)
