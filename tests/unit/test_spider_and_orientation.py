"""SPIDER label mapping and the canonical sagittal layout."""

import numpy as np
import pytest
import SimpleITK as sitk

from lumbar_core.sagittal import canonical_for
from lumbar_core.spider import CANAL, DISC, THORACIC, VERTEBRA_CLASSES, SpiderError, load_case, spider_to_classes


def test_l5_is_the_vertebra_above_disc_201_with_or_without_sacrum():
    plain = np.repeat(np.array([201, 1, 202, 2, 203, 3, 204, 4, 205, 5, 206, 6, 100]), 3)
    z = np.arange(len(plain), dtype=float)
    out = spider_to_classes(plain, z, "plain.mha")
    assert out[plain == 1].tolist() == [VERTEBRA_CLASSES["L5"]] * 3
    assert (out[plain == 5] == VERTEBRA_CLASSES["L1"]).all() and (out[plain == 6] == THORACIC).all()
    assert (out[plain >= 201] == DISC).all() and (out[plain == 100] == CANAL).all()
    # the same spine with the sacrum labelled 1: everything shifts by one
    sacrum = np.repeat(np.array([1, 201, 2, 202, 3, 203, 4, 204, 5, 205, 106]), 3)
    out = spider_to_classes(sacrum, np.arange(len(sacrum), dtype=float), "sacrum.mha")
    assert (out[sacrum == 1] == VERTEBRA_CLASSES["S1"]).all()
    assert (out[sacrum == 2] == VERTEBRA_CLASSES["L5"]).all()
    assert (out[sacrum == 106] == VERTEBRA_CLASSES["L1"]).all(), "partially visible vertebrae count too"


def test_unknown_label_values_name_the_file():
    with pytest.raises(SpiderError, match=r"bad\.mha: unknown SPIDER label values \[42, 300\]"):
        spider_to_classes(np.array([0, 42, 300]), np.zeros(3), "bad.mha")


def _write(folder, name, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection([0, 0, 1, 1, 0, 0, 0, -1, 0])  # index x -> +y, index y -> -z, index z -> +x: sagittal
    folder.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(folder / name))


def test_image_mask_geometry_mismatch_names_the_file(tmp_path):
    _write(tmp_path / "images", "1_t1.mha", np.zeros((3, 8, 8), np.int16))
    _write(tmp_path / "masks", "1_t1.mha", np.zeros((3, 8, 8), np.uint8), spacing=(2.0, 1.0, 1.0))
    with pytest.raises(SpiderError, match=r"masks/1_t1.mha: size/spacing"):
        load_case(str(tmp_path), "1_t1")


def test_canonical_round_trip_and_layout():
    rng = np.random.default_rng(0)
    volume = rng.random((4, 5, 6))
    # array axis 0 runs inferior, axis 1 anterior, axis 2 right: a scrambled sagittal volume
    canon = canonical_for([np.array([0, 0, -1.0]), np.array([0, -1.0, 0]), np.array([-1.0, 0, 0])], [1.0, 2.0, 3.0])
    out = canon.apply(volume)
    assert out.shape == (6, 4, 5)
    assert canon.spacing == (3.0, 1.0, 2.0)
    np.testing.assert_array_equal(canon.invert(out), volume)
    assert out[0, 0, 0] == volume[0, -1, -1]  # slice: flipped right->left; row: already inferior; col: flipped
    with pytest.raises(ValueError, match="not a sagittal volume"):
        canonical_for([np.array([0, 0, 1.0]), np.array([0, 1.0, 0]), np.array([0, 0.7, 0.7])], [1, 1, 1])


def test_spider_t1_and_t2_come_out_alike(phantom):
    t1 = load_case(str(phantom / "spider"), "1_t1")
    t2 = load_case(str(phantom / "spider"), "1_t2")
    assert t1.image.shape == t1.classes.shape and t2.image.shape == t2.classes.shape
    below_l1 = {}
    for case in (t1, t2):

        def row(name, case=case):
            return np.nonzero((case.classes == VERTEBRA_CLASSES[name]).any(axis=0))[0].mean()

        assert row("L1") < row("L3"), "L1 is above L3: rows run head to foot"
        below_l1[case.name] = (row("L3") - row("L1")) * case.spacing[1]
    # the same anatomy in both series (each with its own matrix and field of view): L3 as far below L1
    assert abs(below_l1["1_t1"] - below_l1["1_t2"]) < 10
