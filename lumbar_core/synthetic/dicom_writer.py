"""Write phantom images as DICOM Part-10 MR files like the competition's.

MR Image Storage, explicit VR little endian, 16-bit unsigned MONOCHROME2 with 12 bits stored (16
where the scanner's scale needs them); geometry in ImagePositionPatient / ImageOrientationPatient /
PixelSpacing; SliceThickness present or absent as planned; the scanner's vendor, field strength and
sequence (inversion recovery for a STIR, fat saturation); the file is named by its InstanceNumber.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from lumbar_core.geometry import Plane


def _ds(value: float) -> str:
    """A decimal string of at most 16 characters."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return text if text not in ("-0", "") else "0"


@dataclass(frozen=True)
class SeriesTags:
    """Tags shared by every image of one series."""

    study_id: int
    series_id: int
    series_number: int
    description: str
    study_uid: str
    series_uid: str
    thickness: float | None
    spacing_between: float | None
    echo_time: float
    repetition_time: float
    inversion_time: float | None = None
    fat_saturated: bool = False
    manufacturer: str = "LUMBAR PHANTOM"
    field_strength: float = 1.5


def uid(*parts: object) -> str:
    """A deterministic DICOM UID from the given parts."""
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def write_image(path: Path, pixels: np.ndarray, plane: Plane, instance: int, tags: SeriesTags) -> None:
    """Write one MR image file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    sop_uid = uid(tags.series_uid, instance)
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = sop_uid
    ds.Modality = "MR"
    ds.Manufacturer = tags.manufacturer
    ds.PatientID = str(tags.study_id)
    ds.StudyInstanceUID = tags.study_uid
    ds.SeriesInstanceUID = tags.series_uid
    ds.StudyID = str(tags.study_id)
    ds.SeriesNumber = tags.series_number
    ds.SeriesDescription = tags.description
    ds.InstanceNumber = instance
    ds.BodyPartExamined = "LSPINE"
    ds.MRAcquisitionType = "2D"
    ds.MagneticFieldStrength = _ds(tags.field_strength)
    ds.ScanningSequence = "IR" if tags.inversion_time is not None else "SE"
    ds.SequenceVariant = "SK"
    ds.ScanOptions = "FS" if tags.fat_saturated else ""
    ds.EchoTime = _ds(tags.echo_time)
    ds.RepetitionTime = _ds(tags.repetition_time)
    if tags.inversion_time is not None:
        ds.InversionTime = _ds(tags.inversion_time)
    ds.ImagePositionPatient = [_ds(v) for v in plane.ipp]
    ds.ImageOrientationPatient = [_ds(v) for v in plane.iop]
    ds.PixelSpacing = [_ds(plane.row_spacing), _ds(plane.col_spacing)]
    ds.SliceLocation = _ds(float(plane.ipp @ plane.normal))
    if tags.thickness is not None:
        ds.SliceThickness = _ds(tags.thickness)
    if tags.spacing_between is not None:
        ds.SpacingBetweenSlices = _ds(tags.spacing_between)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    bits = 12 if int(pixels.max()) <= 4095 else 16
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter = _ds(float(np.percentile(pixels, 50)))
    ds.WindowWidth = _ds(max(1.0, float(np.percentile(pixels, 99.5))))
    ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
