"""The SPIDER-format export: file names, label values, geometry in each file's own axis order."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

ALLOWED = {0, 100} | set(range(1, 26)) | set(range(101, 126)) | set(range(201, 226))


def _centroid_world(image, mask, label):
    idx = np.argwhere(sitk.GetArrayFromImage(mask) == label)  # (z, y, x) index order
    if len(idx) == 0:
        return None
    mean_xyz = idx.mean(axis=0)[::-1]
    return np.array(image.TransformContinuousIndexToPhysicalPoint([float(v) for v in mean_xyz]))


def test_spider_files_and_labels(phantom):
    images = sorted((phantom / "spider" / "images").glob("*.mha"))
    masks = sorted((phantom / "spider" / "masks").glob("*.mha"))
    assert [p.name for p in images] == [p.name for p in masks]
    assert {p.name.split("_", 1)[1] for p in images} == {"t1.mha", "t2.mha"}
    cases = json.loads((phantom / "truth" / "phantom.json").read_text())["spider_cases"]
    assert len(images) == 2 * cases
    sacrum_cases = 0
    for img_path, mask_path in zip(images, masks):
        image, mask = sitk.ReadImage(str(img_path)), sitk.ReadImage(str(mask_path))
        assert image.GetSize() == mask.GetSize()
        assert np.allclose(image.GetDirection(), mask.GetDirection()) and np.allclose(image.GetOrigin(), mask.GetOrigin())
        values = set(np.unique(sitk.GetArrayFromImage(mask)).tolist())
        assert values <= ALLOWED, values - ALLOWED
        assert {100, 201, 202, 203, 204, 205} <= values
        # discs counted from the bottom: 201 (L5/S1) is lowest, going up in world z (superior)
        z = [_centroid_world(mask, mask, label)[2] for label in (201, 202, 203, 204, 205)]
        assert z == sorted(z), (mask_path.name, z)
        # the vertebra just above disc 201 is L5: label 1, or 2 where the sacrum took 1
        above = _centroid_world(mask, mask, 1)
        sacrum_cases += bool(above is not None and above[2] < _centroid_world(mask, mask, 201)[2])
    assert sacrum_cases < len(masks)


@pytest.mark.parametrize("case", [1, 2])
def test_t1_and_t2_store_different_axis_orders(phantom, case):
    t1 = sitk.ReadImage(str(phantom / "spider" / "images" / f"{case}_t1.mha"))
    t2 = sitk.ReadImage(str(phantom / "spider" / "images" / f"{case}_t2.mha"))
    # each series has its own matrix; the T2 stores the slice axis first, the T1 last
    assert np.argmax(t1.GetSpacing()) == 2 and np.argmax(t2.GetSpacing()) == 0
    assert t1.GetSize()[0] == t1.GetSize()[1] and t2.GetSize()[1] == t2.GetSize()[2]
    d1 = np.array(t1.GetDirection()).reshape(3, 3)
    d2 = np.array(t2.GetDirection()).reshape(3, 3)
    # the slice axis is patient left-right: third axis in T1, first in T2
    assert abs(d1[0, 2]) > 0.9 and abs(d2[0, 0]) > 0.9
