"""The phantom at the file level: Kaggle layout, DICOM like the real files, quirks present."""

from collections import Counter

import numpy as np
import pandas as pd
import pydicom

from lumbar_core import vocab
from lumbar_core.labels import from_wide
from lumbar_core.submission import validate_submission

from .helpers import plane_of, read


def _all_files(root):
    return sorted((root / "train_images").glob("*/*/*.dcm")) + sorted((root / "test_images").glob("*/*/*.dcm"))


def test_kaggle_layout(phantom):
    train = pd.read_csv(phantom / "train.csv")
    assert list(train.columns) == ["study_id", *vocab.target_columns()]
    assert len(train) == 16
    series = pd.read_csv(phantom / "train_series_descriptions.csv")
    assert list(series.columns) == ["study_id", "series_id", "series_description"]
    assert set(series["series_description"]) <= set(vocab.SERIES_TYPES)
    for row in series.itertuples():
        assert any((phantom / "train_images" / str(row.study_id) / str(row.series_id)).glob("*.dcm"))
    coords = pd.read_csv(phantom / "train_label_coordinates.csv")
    assert list(coords.columns) == ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    assert set(coords["condition"]) == set(vocab.CONDITION_TITLES.values())
    assert set(coords["level"]) == set(vocab.LEVEL_TITLES.values())
    test = pd.read_csv(phantom / "test_series_descriptions.csv")
    assert test["study_id"].nunique() == 2 and not set(test["study_id"]) & set(train["study_id"])
    sample = pd.read_csv(phantom / "sample_submission.csv")
    validate_submission(sample, study_ids=test["study_id"].unique())
    assert len(sample) == 50
    from_wide(train)  # every value is a known severity


def test_every_file_is_a_real_mr_image(phantom):
    files = _all_files(phantom)
    assert len(files) > 500
    for path in files[::7]:
        assert path.read_bytes()[128:132] == b"DICM"
        ds = pydicom.dcmread(path)
        assert ds.file_meta.MediaStorageSOPClassUID == pydicom.uid.MRImageStorage
        assert ds.SOPClassUID == pydicom.uid.MRImageStorage and ds.Modality == "MR"
        assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.BitsAllocated == 16 and ds.PixelRepresentation == 0
        assert int(ds.InstanceNumber) == int(path.stem)
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns) and ds.pixel_array.dtype == np.uint16
        assert ds.SeriesDescription in vocab.SERIES_TYPES
        assert str(ds.PatientID) == path.parent.parent.name


def _series_facts(root):
    facts = []
    for folder in sorted((root / "train_images").glob("*/*")):
        dss = [read(p) for p in sorted(folder.glob("*.dcm"))]
        planes = [plane_of(d) for d in dss]
        normals = {tuple(np.round(p.normal, 2)) for p in planes}
        numbers = [int(d.InstanceNumber) for d in dss]
        n0 = planes[0].normal
        by_position = [n for _, n in sorted(zip([p.ipp @ n0 for p in planes], numbers))]
        facts.append(
            {
                "description": dss[0].SeriesDescription,
                "stacks": len(normals),
                "spatial_order": by_position in (sorted(numbers), sorted(numbers, reverse=True)),
                "start": min(numbers),
                "thickness": all("SliceThickness" in d for d in dss),
                "study": folder.parent.name,
                "oblique": min(abs(np.abs(planes[0].normal).max() - 1), 1) > 1e-4,
            }
        )
    return pd.DataFrame(facts)


def test_real_world_quirks_are_present(phantom):
    facts = _series_facts(phantom)
    assert (~facts["spatial_order"]).any(), "some series should have instance numbers out of spatial order"
    assert (facts["start"] > 1).any() and (facts["start"] == 1).any()
    assert (~facts["thickness"]).any() and facts["thickness"].any()
    axial = facts[facts["description"] == vocab.AXIAL_T2]
    assert (axial["stacks"] == 5).any(), "some axial series should be one angled stack per disc"
    assert (axial["stacks"] == 1).any(), "some axial series should be one continuous stack"
    assert (axial.groupby("study").size() >= 2).any(), "some studies should have two axial series"
    assert facts["oblique"].mean() > 0.9, "slices should be slightly oblique"


def test_missing_series_types_follow_the_configured_rate(tmp_path):
    from lumbar_core.synthetic import generate, get_profile

    profile = get_profile("tiny").with_overrides({"p_missing_t1": "1.0", "p_second_axial": "1.0"})
    generate(tmp_path / "d", studies=2, profile=profile, seed=3, workers=1, spider_cases=0)
    series = pd.read_csv(tmp_path / "d" / "train_series_descriptions.csv")
    counts = Counter(series["series_description"])
    assert counts[vocab.SAGITTAL_T1] == 0 and counts[vocab.AXIAL_T2] == 4
    coords = pd.read_csv(tmp_path / "d" / "train_label_coordinates.csv")
    assert not coords["condition"].str.contains("Foraminal").any(), "no foraminal points without a Sagittal T1"
    train = pd.read_csv(tmp_path / "d" / "train.csv")
    assert train["left_neural_foraminal_narrowing_l4_l5"].notna().all(), "labels stay even when the series is missing"
