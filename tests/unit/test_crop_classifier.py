"""The sagittal crop classifier's parts: canonical crops, the physical limit, the joint calibration."""

import numpy as np
import pytest

from lumbar_core.geometry import StackGeometry
from lumbar_core.ingested import Volume
from lumbar_core.sagittal_crops import level_crop, mirror
from lumbar_core.stack_crops import centre, jitter


def _sagittal(normal_sign: float, n: int = 7) -> Volume:
    """A sagittal stack (1 mm pixels, 2 mm slices, x = 0..12) of a gradient along world y with a bright line at y = x."""
    row_dir = np.array([0.0, 1.0, 0.0])  # columns run posterior
    col_dir = np.array([0.0, 0.0, -1.0])  # rows run inferior
    if normal_sign < 0:
        row_dir = -row_dir  # a stack written the other way round: columns anterior, normal +x
    normal = np.cross(row_dir, col_dir)
    xs = 6.0 + (np.arange(n) - n // 2) * 2.0 * normal[0]  # sorted along the normal
    ipp = np.stack([np.array([x, -31.5 * row_dir[1], 32.0]) for x in xs])
    geometry = StackGeometry(ipp, row_dir, col_dir, 1.0, 1.0, 64, 64)
    pixels = np.empty((n, 64, 64), dtype=np.int16)
    for k in range(n):
        world_y = ipp[k, 1] + np.arange(64) * row_dir[1]
        row = 1000 + 4 * world_y + 800 * (np.abs(world_y - ipp[k, 0]) < 0.6)
        pixels[k] = row[None, :].repeat(64, 0)
    return Volume(pixels, geometry, np.arange(1, n + 1), np.eye(4))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_crops_are_canonical_whatever_the_stacks_orientation(sign):
    volume = _sagittal(sign)
    point = np.array([6.0, 0.0, 0.0])
    crop = level_crop(volume, point, slices=3, size=16, crop_mm=16.0, max_mm=3.0)
    assert crop.shape == (3, 16, 16)
    reference = level_crop(_sagittal(1.0), point, slices=3, size=16, crop_mm=16.0, max_mm=3.0)
    np.testing.assert_allclose(crop, reference, atol=1e-5)
    assert np.median(np.diff(crop[1], axis=1)) > 0, "columns run posterior"
    bright = [int(np.argmax(c.mean(axis=0))) for c in crop]  # the line at y = x of slices x = 4, 6, 8
    assert bright == sorted(bright) and bright[0] < bright[2] and bright[1] > 8, "slices run to the patient's left (+x)"
    np.testing.assert_array_equal(mirror(crop), crop[::-1])


def test_a_point_far_from_every_slice_gives_no_crop():
    assert level_crop(_sagittal(1.0), np.array([40.0, 0, 0]), slices=3, size=8, crop_mm=8.0, max_mm=3.0) is None


def test_jitter_draws_windows_of_the_margins():
    crop = np.arange(5 * 12 * 12, dtype=np.float32).reshape(5, 12, 12)
    rng = np.random.default_rng(0)
    windows = [jitter(crop, 3, 8, rng, slice_shift_p=0.5) for _ in range(200)]
    assert all(w.shape == (3, 8, 8) for w in windows)
    firsts = {int(w[0, 0, 0]) // 144 for w in windows}
    assert firsts == {0, 1, 2}, "a slice off either way, or centred"
    np.testing.assert_array_equal(centre(crop, 3, 8), crop[1:4, 2:10, 2:10])


def test_the_limit_matches_the_phantoms_reader_model():
    from scipy.special import ndtr

    from lumbar_core.synthetic.grades import degree_from_u, grade_of_degree
    from lumbar_core.synthetic.limit import label_distribution

    prevalence, noise = (0.6, 0.3, 0.1), 0.3
    rng = np.random.default_rng(1)
    for z in (-1.0, 0.2, 0.9, 1.4):
        degree = degree_from_u(float(ndtr(z)), prevalence)
        grade = grade_of_degree(degree)
        reads = []
        for _ in range(20000):
            z_read = (z + rng.normal(0, noise)) / np.sqrt(1 + noise**2)
            read = grade_of_degree(degree_from_u(float(ndtr(z_read)), prevalence))
            reads.append(min(max(read, grade - 1), grade + 1))
        observed = np.bincount(reads, minlength=3) / len(reads)
        np.testing.assert_allclose(label_distribution(degree, prevalence, noise), observed, atol=0.012)
    assert label_distribution(0.9, prevalence, 0.0).tolist() == [0.0, 0.0, 1.0]


def test_two_models_saying_the_same_thing_are_not_counted_twice():
    from lumbar_core.calibration import combine_with_prior, evidence, weighted_loss
    from lumbar_core.stages.calibrate import Cell, fit_jointly

    rng = np.random.default_rng(2)
    prior = np.array([0.7, 0.2, 0.1])
    w = np.array([1.0, 2.0, 4.0]) * prior
    means = np.array([0.0, 1.5, 3.0])
    cells = []
    for _ in range(1500):
        truth = rng.choice(3, p=prior)
        likelihood = np.exp(-0.5 * (rng.normal(means[truth], 1.0) - means) ** 2)  # a calibrated reading: tau 1 alone
        dist = w * likelihood / (w * likelihood).sum()
        cells.append(Cell(prior, {"a": dist, "b": dist.copy()}, {"a": w, "b": w}, int(truth)))
    fitted = fit_jointly(cells)
    truth = np.array([c.truth for c in cells])

    def loss(taus):
        probs = []
        for c in cells:
            q = c.prior
            for m in ("a", "b"):
                q = combine_with_prior(q, evidence(c.readings[m], c.denominators[m], fitted[m].floor), taus[m])
            probs.append(q * (1, 2, 4) / (q * (1, 2, 4)).sum())  # as a submission is reweighted
        return weighted_loss(np.array(probs), truth)

    alone = {m: fitted[m].alone_tau for m in "ab"}
    joint = {m: fitted[m].tau for m in "ab"}
    assert fitted["a"].alone_tau > 0.3, "each model alone is worth a weight"
    assert joint["a"] + joint["b"] < alone["a"] + alone["b"] - 0.2, "together they share it"
    assert loss(joint) <= loss(alone)


def test_the_limit_beats_the_prior_on_a_phantom(phantom):
    from lumbar_core.synthetic.limit import gap_closed, scores_beside_limit

    table = scores_beside_limit(phantom)
    for term in ("spinal", "foraminal", "subarticular", "score"):
        assert table["limit"][term] < 0.8 * table["prior"][term], (term, table)
    assert gap_closed(table["limit"]["score"], table["prior"]["score"], table["limit"]["score"]) == 1.0
