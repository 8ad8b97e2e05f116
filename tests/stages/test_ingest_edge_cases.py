"""ingest on hand-made broken inputs: each problem is reported, the rest is ingested."""

import shutil

import numpy as np
import pandas as pd
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from lumbar_core import store, vocab
from lumbar_core.cli import main
from lumbar_core.errors import UserError
from lumbar_core.ingested import IngestedData
from lumbar_core.stages.ingest import IngestParams, MergeParams, merge, run


def _copy_studies(phantom, dest, n):
    series = pd.read_csv(phantom / "train_series_descriptions.csv")
    studies = sorted(series["study_id"].unique())[:n]
    for study in studies:
        shutil.copytree(phantom / "train_images" / str(study), dest / "train_images" / str(study))
    series[series["study_id"].isin(studies)].to_csv(dest / "train_series_descriptions.csv", index=False)
    train = pd.read_csv(phantom / "train.csv")
    train[train["study_id"].isin(studies)].to_csv(dest / "train.csv", index=False)
    coords = pd.read_csv(phantom / "train_label_coordinates.csv")
    coords[coords["study_id"].isin(studies)].to_csv(dest / "train_label_coordinates.csv", index=False)
    return studies, series[series["study_id"].isin(studies)]


@pytest.fixture(scope="module")
def broken(phantom, tmp_path_factory):
    root = tmp_path_factory.mktemp("broken")
    studies, series = _copy_studies(phantom, root, 4)
    a, b, c, d = studies
    folder = {(r.study_id, r.series_description): root / "train_images" / str(r.study_id) / str(r.series_id) for r in series.itertuples()}
    facts = {}
    # study a: a truncated file and a non-image DICOM in its Sagittal T2
    t2 = folder[(a, vocab.SAGITTAL_T2)]
    victim = sorted(t2.glob("*.dcm"))[0]
    victim.write_bytes(victim.read_bytes()[:300])
    facts["truncated"] = victim.name
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR: no pixels
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    sr = Dataset()
    sr.file_meta = meta
    sr.SOPClassUID = meta.MediaStorageSOPClassUID
    sr.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    sr.Modality = "SR"
    sr.InstanceNumber = 999
    sr.save_as(t2 / "999.dcm", enforce_file_format=True)
    # study a: an axial file moved into the Sagittal T1 series: one series with two orientations
    ax = folder[(a, vocab.AXIAL_T2)]
    for path in sorted(ax.glob("*.dcm"))[:3]:
        ds = pydicom.dcmread(path)
        ds.InstanceNumber = 500 + int(path.stem)
        ds.save_as(folder[(a, vocab.SAGITTAL_T1)] / f"{ds.InstanceNumber}.dcm")
    # study b: a file without ImagePositionPatient (not a labelled one); and its Sagittal T1 removed
    labelled = set(pd.read_csv(root / "train_label_coordinates.csv").query("study_id == @b")["instance_number"])
    b_t2 = sorted(folder[(b, vocab.SAGITTAL_T2)].glob("*.dcm"))
    facts["t2b_files"] = len(b_t2)
    t2b = next(p for p in b_t2[3:] if int(p.stem) not in labelled)
    ds = pydicom.dcmread(t2b)
    del ds.ImagePositionPatient
    ds.save_as(t2b)
    facts["no_ipp"] = t2b.name
    if (b, vocab.SAGITTAL_T1) in folder:
        shutil.rmtree(folder[(b, vocab.SAGITTAL_T1)])
    # study c: no row in the series descriptions
    series[series["study_id"] != c].to_csv(root / "train_series_descriptions.csv", index=False)
    # study d: a labelled instance deleted
    coords = pd.read_csv(root / "train_label_coordinates.csv")
    row = coords[coords["study_id"] == d].iloc[0]
    (root / "train_images" / str(d) / str(row.series_id) / f"{row.instance_number}.dcm").unlink()
    facts.update(studies=studies, missing_instance=(int(row.series_id), int(row.instance_number)))
    out = str(tmp_path_factory.mktemp("run") / "run")
    run(data_uri=str(root), run_uri=out, params=IngestParams(workers=1))
    return IngestedData.open(out), facts


def _kinds(problems, study):
    return set(problems.loc[problems["study_id"] == study, "kind"])


def test_each_problem_is_reported_and_named(broken):
    data, facts = broken
    a, b, c, d = facts["studies"]
    problems = data.problems
    assert {"unreadable", "not an image"} <= _kinds(problems, a)
    unreadable = problems[(problems["kind"] == "unreadable")]
    assert unreadable["file"].str.endswith(facts["truncated"]).any()
    assert problems.loc[problems["kind"] == "not an image", "file"].str.endswith("999.dcm").all()
    assert {"missing geometry", "missing series type"} <= _kinds(problems, b)
    assert problems.loc[problems["kind"] == "missing geometry", "message"].str.contains("ImagePositionPatient").all()
    assert "Sagittal T1" in " ".join(problems.loc[(problems["study_id"] == b) & (problems["kind"] == "missing series type"), "message"])
    assert "no description row" in _kinds(problems, c)
    missing = problems[problems["kind"] == "label points at missing instance"]
    series, instance = facts["missing_instance"]
    assert ((missing["study_id"] == d) & (missing["series_id"] == series) & (missing["file"] == f"{instance}.dcm")).any()
    # study b's foraminal labels point at the removed Sagittal T1
    assert missing.loc[missing["study_id"] == b, "message"].str.contains("foraminal_narrowing").all()


def test_the_rest_is_ingested(broken):
    data, facts = broken
    a, b, c, d = facts["studies"]
    index = data.index
    assert set(index["study_id"]) == set(facts["studies"])
    t1 = index[(index["study_id"] == a) & (index["description"] == vocab.SAGITTAL_T1)]
    assert sorted(t1["orientation"]) == ["axial", "sagittal"], "a series with two orientations gives two stacks"
    assert t1.loc[t1["orientation"] == "axial", "n_slices"].iloc[0] == 3
    t2b = index[(index["study_id"] == b) & (index["description"] == vocab.SAGITTAL_T2)]
    assert t2b["problems"].iloc[0] == "missing geometry" and t2b["n_slices"].iloc[0] == facts["t2b_files"] - 1
    c_rows = index[index["study_id"] == c]
    assert set(c_rows["description"]) <= set(vocab.SERIES_TYPES), "descriptions fall back to the DICOM tag"
    coords = data.table("coordinates")
    assert d in set(coords["study_id"]), "the other labels of that study are kept"


def test_shards_merge_to_the_same_result(phantom, ingested, tmp_path):
    out = str(tmp_path / "run")
    for i in range(2):
        run(data_uri=str(phantom), run_uri=out, params=IngestParams(workers=1, shard_index=i, shard_count=2))
    with pytest.raises(UserError, match="ingest-shard-0 was written as shard 0 of 2, not 0 of 3"):
        merge(run_uri=out, params=MergeParams(shard_count=3))
    merge(run_uri=out, params=MergeParams(shard_count=2))
    sharded, whole = IngestedData.open(out), IngestedData.open(ingested)
    key = ["study_id", "series_id", "stack"]
    a = sharded.index.sort_values(key).reset_index(drop=True)
    b = whole.index.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns=["volume_stage"]), b.drop(columns=["volume_stage"]))
    assert set(a["volume_stage"]) == {"ingest-shard-0", "ingest-shard-1"}
    row = a.iloc[-1]
    np.testing.assert_array_equal(
        sharded.volume(row.study_id, row.series_id, row.stack).pixels, whole.volume(row.study_id, row.series_id, row.stack).pixels
    )
    assert len(sharded.table("coordinates")) == len(whole.table("coordinates"))


def test_ingest_from_and_to_s3(phantom, s3_bucket, tmp_path):
    local = tmp_path / "mini"
    studies, _ = _copy_studies(phantom, local, 2)
    store.upload_prefix(local, store.join(s3_bucket, "data"))
    out = store.join(s3_bucket, "runs", "r1")
    manifest = run(data_uri=store.join(s3_bucket, "data"), run_uri=out, params=IngestParams(workers=2))
    assert manifest.metrics["studies"] == 2
    data = IngestedData.open(out)
    assert set(data.index["study_id"]) == set(studies)
    row = data.index.iloc[0]
    volume = data.volume(row.study_id, row.series_id, row.stack)
    assert volume.pixels.shape == (row.n_slices, row.rows, row.cols)


def test_cli_stage_ingest(phantom, tmp_path, capsys):
    mini = tmp_path / "mini"
    _copy_studies(phantom, mini, 1)
    out = tmp_path / "run"
    assert main(["stage", "ingest", "--data", str(mini), "--run", str(out), "--workers", "1"]) == 0
    assert "ingest: committed" in capsys.readouterr().out
    assert main(["stage", "ingest", "--data", str(mini), "--run", str(out), "--split", "validation"]) == 2
    assert "split must be 'train' or 'test'" in capsys.readouterr().err
    assert main(["stage", "ingest", "--data", str(tmp_path / "nothing"), "--run", str(out)]) == 2
    assert "no DICOM files under" in capsys.readouterr().err
