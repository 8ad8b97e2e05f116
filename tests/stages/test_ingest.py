"""ingest on the phantom, checked against its truth."""

import numpy as np
import pandas as pd
import pydicom
import pytest

from lumbar_core import vocab
from lumbar_core.geometry import nearest_slices, side_of_midline
from lumbar_core.ingested import IngestedData
from lumbar_core.labels import from_wide
from tests.synthetic.helpers import truth


@pytest.fixture(scope="module")
def data(ingested):
    return IngestedData.open(ingested)


def test_every_series_and_stack_is_indexed(phantom, data):
    series = pd.read_csv(phantom / "train_series_descriptions.csv")
    index = data.index
    assert set(zip(index["study_id"], index["series_id"])) == set(zip(series["study_id"], series["series_id"]))
    # the only problems are the series types the phantom left out
    present = series.groupby("study_id")["series_description"].apply(set)
    expected_missing = {(study, t) for study, types in present.items() for t in vocab.SERIES_TYPES if t not in types}
    problems = data.problems
    assert set(problems["kind"]) <= {"missing series type"}
    assert {(r.study_id, r.message.split(" has no ")[1].removesuffix(" series")) for r in problems.itertuples()} == expected_missing
    for row in series.itertuples():
        doc = truth(phantom, row.study_id)
        expected = next(s for s in doc["series"] if s["series_id"] == row.series_id)
        stacks = index[(index["study_id"] == row.study_id) & (index["series_id"] == row.series_id)]
        assert len(stacks) == expected["stacks"], (row, len(stacks))
        assert stacks["file_count"].iloc[0] == sum(len(n) for n in expected["instance_numbers"])
        assert set(stacks["description"]) == {row.series_description}
    sagittal = index[index["description"] != vocab.AXIAL_T2]
    assert (sagittal["orientation"] == "sagittal").all()
    assert (index.loc[index["description"] == vocab.AXIAL_T2, "orientation"] == "axial").all()


def test_slices_are_in_spatial_order_with_the_right_pixels(phantom, data):
    index = data.index
    assert set(index["slice_order"]) == {"ascending", "descending", "unordered"}
    for row in index[index["slice_order"] == "unordered"].head(4).itertuples():
        volume = data.volume(row.study_id, row.series_id, row.stack)
        positions = volume.geometry.positions
        assert np.all(np.diff(positions) > 0)
        for k, instance in enumerate(volume.instance_numbers):
            ds = pydicom.dcmread(phantom / "train_images" / str(row.study_id) / str(row.series_id) / f"{instance}.dcm")
            np.testing.assert_array_equal(volume.pixels[k], ds.pixel_array)
            np.testing.assert_allclose(volume.geometry.ipp[k], np.array(ds.ImagePositionPatient, dtype=float), atol=1e-4)


def test_slice_spacing_comes_from_positions(phantom, data):
    index = data.index
    no_thickness = index[index["slice_thickness"].isna()]
    assert len(no_thickness) > 0
    for row in index.itertuples():  # the spacing the phantom planned, whether SliceThickness was written or not
        planned = next(s for s in truth(phantom, row.study_id)["series"] if s["series_id"] == row.series_id)
        assert row.slice_spacing == pytest.approx(planned["slice_spacing_mm"], abs=1e-3), row


def test_coordinates_are_in_world_within_one_voxel_of_the_truth(phantom, data):
    coords = data.table("coordinates")
    raw = pd.read_csv(phantom / "train_label_coordinates.csv")
    assert len(coords) == len(raw)
    assert set(coords["condition"]) == set(vocab.CONDITIONS) and set(coords["level"]) == set(vocab.LEVELS)
    for row in coords.itertuples():
        lm = truth(phantom, row.study_id)["landmarks"]
        group, side = vocab.CONDITION_GROUP[row.condition], vocab.CONDITION_SIDE[row.condition]
        if group == "spinal":
            expected = lm["canal_centre"][row.level]
        else:
            expected = lm["foramen_centre" if group == "foraminal" else "recess_centre"][f"{side}_{row.level}"]
        gap = np.linalg.norm(np.array(expected) - np.array([row.world_x, row.world_y, row.world_z]))
        assert gap <= np.sqrt(2 * 2.5**2 + 2.5**2) + 0.5, (row, gap)


def test_labels_are_train_csv_in_long_form(phantom, data):
    expected = from_wide(pd.read_csv(phantom / "train.csv"))
    pd.testing.assert_frame_equal(data.table("labels"), expected)


def test_sagittal_points_find_their_axial_slice(phantom, data):
    """A spinal canal point (sagittal T2) projected into the axial stacks lands on or next to the
    axial slice the same level's subarticular point was labelled on."""
    coords = data.table("coordinates")
    index = data.index
    matched = total = 0
    for (study, _level), rows in coords.groupby(["study_id", "level"]):
        spinal = rows[rows["condition"] == "spinal_canal_stenosis"]
        sub = rows[rows["condition"] == "left_subarticular_stenosis"]
        if spinal.empty or sub.empty:
            continue
        point = spinal[["world_x", "world_y", "world_z"]].to_numpy()[0]
        series = int(sub["series_id"].iloc[0])
        stacks = index[(index["study_id"] == study) & (index["series_id"] == series)]
        geometries = [data.volume(study, series, int(s)).geometry for s in stacks["stack"]]
        matches = nearest_slices(point, geometries, max_mm=5.0)
        total += 1
        if matches:
            stack_no, k, distance = matches[0]
            assert distance <= 5.0
            labelled = (int(sub["stack"].iloc[0]), int(sub["slice"].iloc[0]))
            matched += stack_no == labelled[0] and abs(k - labelled[1]) <= 1
    assert total > 30 and matched / total > 0.85


def test_far_points_are_rejected(data):
    row = data.index[data.index["description"] == vocab.AXIAL_T2].iloc[0]
    geometry = data.volume(row.study_id, row.series_id, row.stack).geometry
    far = geometry.ipp[-1] + geometry.normal * 20.0
    assert nearest_slices(far, [geometry], max_mm=5.0) == []


def test_foraminal_slices_are_on_their_side(data):
    coords = data.table("coordinates")
    for (study, level), rows in coords.groupby(["study_id", "level"]):
        spinal = rows[rows["condition"] == "spinal_canal_stenosis"]
        if spinal.empty:
            continue
        midline = spinal[["world_x", "world_y", "world_z"]].to_numpy()[0]
        for row in rows[rows["condition"].str.contains("foraminal")].itertuples():
            side = side_of_midline(np.array([row.world_x, row.world_y, row.world_z]), midline)
            assert row.condition.startswith(side), (study, level, row.condition)


def test_geometry_from_tables_matches_the_volume(data):
    for row in data.index.iloc[::7].itertuples():
        from_tables = data.geometry(row.study_id, row.series_id, row.stack)
        from_volume = data.volume(row.study_id, row.series_id, row.stack).geometry
        np.testing.assert_allclose(from_tables.ipp, from_volume.ipp, atol=1e-6)
        np.testing.assert_allclose(from_tables.row_dir, from_volume.row_dir, atol=1e-6)
        np.testing.assert_allclose(from_tables.col_dir, from_volume.col_dir, atol=1e-6)
        assert (from_tables.rows, from_tables.cols) == (from_volume.rows, from_volume.cols)
