"""The axial side crops the DenseNet reads: canonical whatever the stack's orientation, the right one mirrored."""

import numpy as np
import pytest

from lumbar_core.axial import side_crop
from lumbar_core.geometry import StackGeometry
from lumbar_core.ingested import Volume


def _axial(x_sign: float, y_sign: float, n: int = 5) -> Volume:
    """An axial stack (1 mm pixels, 4 mm slices at z = -8..8) of 1000 + 10 x + 3 y + 50 z, with a bright spot.

    The spot sits on the patient's left at y = 4 and x = 12 + z / 2 (it moves left going up). Columns
    run along ``x_sign`` x, rows along ``y_sign`` y; the slices are sorted along the normal, as ingest
    sorts them (inferior first where the normal points up, superior first where it points down).
    """
    row_dir, col_dir = np.array([x_sign, 0.0, 0.0]), np.array([0.0, y_sign, 0.0])
    normal = np.cross(row_dir, col_dir)
    zs = (np.arange(n) - n // 2) * 4.0 * normal[2]
    ipp = np.stack([np.array([-31.5 * x_sign, -31.5 * y_sign, z]) for z in zs])
    geometry = StackGeometry(ipp, row_dir, col_dir, 1.0, 1.0, 64, 64)
    x = ipp[0, 0] + np.arange(64) * x_sign
    y = ipp[0, 1] + np.arange(64) * y_sign
    pixels = np.empty((n, 64, 64), dtype=np.int16)
    for k, z in enumerate(zs):
        image = 1000 + 10 * x[None, :] + 3 * y[:, None] + 50 * z
        pixels[k] = image + 2000 * ((np.abs(x[None, :] - 12 - z / 2) < 1.5) & (np.abs(y[:, None] - 4) < 1.5))
    return Volume(pixels, geometry, np.arange(1, n + 1), np.eye(4))


@pytest.mark.parametrize("x_sign", [1.0, -1.0])
@pytest.mark.parametrize("y_sign", [1.0, -1.0])
def test_side_crops_are_canonical_whatever_the_stacks_orientation(x_sign, y_sign):
    volume = _axial(x_sign, y_sign)
    point = np.zeros(3)
    left = side_crop(volume, point, "left", slices=3, size=16, crop_mm=16.0, lateral_mm=10.0, max_mm=3.0)
    right = side_crop(volume, point, "right", slices=3, size=16, crop_mm=16.0, lateral_mm=10.0, max_mm=3.0)
    reference = side_crop(_axial(1.0, 1.0), point, "left", slices=3, size=16, crop_mm=16.0, lateral_mm=10.0, max_mm=3.0)
    assert left.shape == right.shape == (3, 16, 16)
    np.testing.assert_allclose(left, reference, atol=1e-5)
    assert all(c.max() > 1.0 for c in left), "the spot on the patient's left is in the left crop"
    assert all(c.max() < 1.0 for c in right), "and not in the right one"
    assert np.median(np.diff(_background(left[1]), axis=1)) > 0, "the left crop's columns run outwards (+x)"
    assert np.median(np.diff(_background(right[1]), axis=1)) < 0, "the mirrored right crop's columns run outwards (-x)"
    assert np.median(np.diff(_background(left[1]), axis=0)) > 0, "rows run posterior"
    spot = [np.unravel_index(np.argmax(c), c.shape)[1] for c in left]
    assert spot[0] < spot[1] < spot[2], "slices run superior"


def _background(image: np.ndarray) -> np.ndarray:
    return np.where(image > 1.0, np.median(image), image)


def test_a_level_far_from_every_axial_slice_gives_no_crop():
    volume = _axial(1.0, 1.0)
    assert side_crop(volume, np.array([0.0, 0.0, 30.0]), "left", slices=3, size=8, crop_mm=8.0, lateral_mm=10.0, max_mm=5.0) is None
