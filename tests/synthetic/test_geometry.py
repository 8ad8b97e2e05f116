"""Labelled points taken through IPP/IOP/PixelSpacing land where the truth says, on the right tissue."""

import numpy as np
import pytest

from lumbar_core import vocab
from lumbar_core.synthetic import anatomy as an

from .helpers import coordinates, image_path, mask, plane_of, read, target, truth

RIGHT_TISSUE = {
    "spinal": {an.CSF},
    "foraminal": {an.FORAMEN_FAT, an.NERVE},
    "subarticular": {an.CSF},
}


def _landmark(doc, condition, level):
    group = vocab.CONDITION_GROUP[condition]
    side = vocab.CONDITION_SIDE[condition]
    lm = doc["landmarks"]
    if group == "spinal":
        return np.array(lm["canal_centre"][level])
    key = f"{side}_{level}"
    return np.array(lm["foramen_centre" if group == "foraminal" else "recess_centre"][key])


def test_points_map_to_the_truth_within_one_voxel(phantom):
    coords = coordinates(phantom)
    checked = 0
    for row in coords.itertuples():
        ds = read(image_path(phantom, row.study_id, row.series_id, row.instance_number))
        plane = plane_of(ds)
        world = plane.pixel_to_world(row.x, row.y)
        condition = vocab.condition_from_title(row.condition)
        level = vocab.level_from_title(row.level)
        expected = _landmark(truth(phantom, row.study_id), condition, level)
        offset = expected - world
        in_plane = np.hypot(offset @ plane.row_dir, offset @ plane.col_dir)
        slice_gap = (
            np.linalg.norm(
                np.diff(
                    [plane_of(read(p)).ipp for p in sorted(image_path(phantom, row.study_id, row.series_id, 1).parent.glob("*.dcm"))][:2],
                    axis=0,
                )
            )
            if vocab.CONDITION_SERIES[condition] != vocab.AXIAL_T2
            else 5.0
        )
        assert in_plane <= np.hypot(plane.row_spacing, plane.col_spacing), (row, in_plane)
        assert abs(offset @ plane.normal) <= slice_gap / 2 + 0.5, (row, offset @ plane.normal)
        checked += 1
    assert checked == len(coords) > 300


@pytest.mark.parametrize("group", ["spinal", "foraminal", "subarticular"])
def test_points_of_normal_targets_lie_on_their_structure(phantom, group):
    coords = coordinates(phantom)
    hits = total = 0
    for row in coords.itertuples():
        condition = vocab.condition_from_title(row.condition)
        if vocab.CONDITION_GROUP[condition] != group:
            continue
        doc = truth(phantom, row.study_id)
        if target(doc, condition, vocab.level_from_title(row.level))["degree"] > 0.25:
            continue
        labels = mask(phantom, row.study_id, row.series_id, row.instance_number)
        r, c = int(round(row.y)), int(round(row.x))
        window = labels[max(0, r - 1) : r + 2, max(0, c - 1) : c + 2]
        hits += bool(set(np.unique(window)) & RIGHT_TISSUE[group])
        total += 1
    assert total > 10
    assert hits / total >= 0.9, f"{hits}/{total} points of normal {group} targets on the right tissue"


def test_points_are_on_the_series_and_slices_the_real_ones_use(phantom):
    import pandas as pd

    coords = coordinates(phantom)
    series = pd.read_csv(phantom / "train_series_descriptions.csv").set_index("series_id")["series_description"]
    through_disc = []
    for row in coords.itertuples():
        condition = vocab.condition_from_title(row.condition)
        assert series[row.series_id] == vocab.CONDITION_SERIES[condition]
        doc = truth(phantom, row.study_id)
        level = vocab.level_from_title(row.level)
        plane = plane_of(read(image_path(phantom, row.study_id, row.series_id, row.instance_number)))
        world = plane.pixel_to_world(row.x, row.y)
        canal = np.array(doc["landmarks"]["canal_centre"][level])
        side = vocab.CONDITION_SIDE[condition]
        if side is not None:
            # patient left is +x in LPS: left points lie left of the canal midline, right points right of it
            assert (world[0] - canal[0]) * (1 if side == "left" else -1) > 2.0, row
        if condition == "spinal_canal_stenosis":
            assert abs(world[0] - canal[0]) < 5.0, "spinal points are on the mid-sagittal slices"
        if vocab.CONDITION_SERIES[condition] == vocab.AXIAL_T2:
            labels = mask(phantom, row.study_id, row.series_id, row.instance_number)
            through_disc.append(bool(np.isin(labels, [an.DISC_LABEL[level], an.NUCLEUS_LABEL[level]]).any()))
    # 4-5.5 mm apart, continuous axial stacks miss some thin (degenerated, upper) discs, as real ones do
    assert np.mean(through_disc) >= 0.75, "subarticular points are on the axial slice through their disc"
