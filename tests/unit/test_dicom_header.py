"""The one-pass header reader gives what pydicom gives, on pydicom's own test files and the phantom's."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from lumbar_core import dicom
from lumbar_core.dicom_header import scan

TEST_FILES = sorted((Path(pydicom.__file__).parent / "data" / "test_files").rglob("*.dcm"))


def _outcome(data: bytes, source: str, *, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(dicom, "scan", lambda _data: None)
        try:
            r = dicom.read_slice(data, source)
        except dicom.DicomReadError as exc:
            return ("error", exc.kind)
    p = r.plane
    geometry = (p.ipp.tolist(), p.row_dir.tolist(), p.col_dir.tolist(), p.row_spacing, p.col_spacing, p.rows, p.cols)
    return ("ok", r.instance, geometry, r.thickness, r.description, r.pixels.dtype.str, r.pixels.tobytes(), r.note)


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_same_outcome_as_pydicom(path, monkeypatch):
    data = path.read_bytes()
    assert _outcome(data, path.name, fast=True, monkeypatch=monkeypatch) == _outcome(data, path.name, fast=False, monkeypatch=monkeypatch)


def test_the_fast_path_takes_plain_files_and_leaves_the_rest_to_pydicom():
    by_name = {p.name: p.read_bytes() for p in TEST_FILES}
    for name in ("MR_small.dcm", "MR_small_implicit.dcm", "CT_small.dcm", "MR_small_padded.dcm"):
        assert scan(by_name[name]) is not None, name
    others = ("MR_small_bigendian.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm", "SC_rgb_small_odd.dcm")
    others += ("ExplVR_LitEndNoMeta.dcm", "MR_truncated.dcm")
    for name in others:
        assert scan(by_name[name]) is None, name


def test_phantom_files_take_the_fast_path_with_pydicoms_values(phantom, monkeypatch):
    files = sorted((phantom / "train_images").glob("*/*/*.dcm"))[:40]
    assert files
    for path in files:
        data = path.read_bytes()
        header = scan(data)
        assert header is not None, path
        ds = pydicom.dcmread(path)
        assert header.ipp == [float(v) for v in ds.ImagePositionPatient]
        assert header.instance == int(ds.InstanceNumber) and header.description == ds.SeriesDescription
        assert np.array_equal(header.pixels(), ds.pixel_array)
        fast, slow = (_outcome(data, path.name, fast=f, monkeypatch=monkeypatch) for f in (True, False))
        assert fast == slow


def test_sequences_of_undefined_length_are_skipped(tmp_path):
    source = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"
    ds = pydicom.dcmread(source)
    item = pydicom.Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3"
    item.add_new(0x00081155, "UI", "1.2.3.4")
    ds.ReferencedImageSequence = pydicom.Sequence([item, item])
    ds["ReferencedImageSequence"].is_undefined_length = True
    for one in ds.ReferencedImageSequence:
        one.is_undefined_length_sequence_item = True
    out = tmp_path / "seq.dcm"
    ds.save_as(out)
    header = scan(out.read_bytes())
    assert header is not None and header.instance == int(ds.InstanceNumber)
    assert np.array_equal(header.pixels(), ds.pixel_array)
