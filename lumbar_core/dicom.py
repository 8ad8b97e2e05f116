"""Reading DICOM series into stacks: one file at a time, grouped by orientation, sorted in space.

Real series break naive loaders (docs/data.md, "What the real files are like"): instance numbers are file names, not a
spatial order; one series can hold several stacks (e.g. one angled axial stack per disc); slices
of one series can differ in size; SliceThickness can be missing. Here each file is read once into a
:class:`SliceRecord`; :func:`group_stacks` splits a series by orientation, size and gaps along the
normal, and orders each stack by position along its normal.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from lumbar_core.geometry import Plane, unit

ORIENTATION_DECIMALS = 2  # IOP rounded to this many decimals groups slices into stacks (about 0.6 degrees)
GAP_FACTOR = 2.5
_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.4",
    "1.2.840.10008.5.1.4.1.1.4.1",
    "1.2.840.10008.5.1.4.1.1.7",
}  # MR, enhanced MR, SC  # a jump along the normal larger than this many median spacings starts a new stack


class DicomReadError(ValueError):
    """A file that cannot be used as an image; ``kind`` says why."""

    def __init__(self, kind: str, message: str):
        """Keep the problem kind (``unreadable``, ``not an image``, ``missing geometry``)."""
        super().__init__(message)
        self.kind = kind


@dataclass
class SliceRecord:
    """One image: its instance number, placement and pixels (rows, cols)."""

    instance: int
    plane: Plane
    pixels: np.ndarray
    thickness: float | None
    description: str
    source: str


def read_slice(data: bytes, source: str) -> SliceRecord:
    """Parse one DICOM file's bytes.

    Raises:
        DicomReadError: truncated or non-DICOM bytes (``unreadable``), no pixel data (``not an
            image``), or no ImagePositionPatient / ImageOrientationPatient / PixelSpacing
            (``missing geometry``).
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomReadError("unreadable", f"{source}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        sop = str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", ""))
        if sop in _IMAGE_SOP_CLASSES or "Rows" in ds:
            raise DicomReadError("unreadable", f"{source}: image file without (complete) pixel data: truncated?")
        raise DicomReadError("not an image", f"{source}: DICOM without pixel data (SOP class {sop or '?'})")
    missing = [tag for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing") if tag not in ds]
    if missing:
        raise DicomReadError("missing geometry", f"{source}: no {', '.join(missing)}")
    try:
        pixels = _pixels(ds)
    except Exception as exc:
        raise DicomReadError("unreadable", f"{source}: pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    iop = np.array([float(v) for v in ds.ImageOrientationPatient])
    spacing = [float(v) for v in ds.PixelSpacing]
    plane = Plane(
        np.array([float(v) for v in ds.ImagePositionPatient]),
        unit(iop[:3]),
        unit(iop[3:]),
        spacing[0],
        spacing[1],
        int(ds.Rows),
        int(ds.Columns),
    )
    thickness = float(ds.SliceThickness) if ds.get("SliceThickness") not in (None, "") else None
    instance = int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else -1
    return SliceRecord(instance, plane, pixels, thickness, str(ds.get("SeriesDescription", "")), source)


def _pixels(ds) -> np.ndarray:
    """Pixels as (rows, cols); uncompressed 16-bit data is read straight from the buffer."""
    if (
        ds.file_meta.TransferSyntaxUID.is_little_endian
        and not ds.file_meta.TransferSyntaxUID.is_compressed
        and int(ds.BitsAllocated) == 16
        and int(ds.get("SamplesPerPixel", 1)) == 1
    ):
        dtype = "<i2" if int(ds.PixelRepresentation) == 1 else "<u2"
        count = int(ds.Rows) * int(ds.Columns)
        return np.frombuffer(ds.PixelData, dtype=dtype, count=count).reshape(int(ds.Rows), int(ds.Columns))
    return np.asarray(ds.pixel_array)


@dataclass
class Stack:
    """Slices of one orientation and size, sorted along the normal (spatial order)."""

    slices: list[SliceRecord]
    positions: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        """Sort the slices by position along the normal."""
        normal = self.slices[0].plane.normal
        self.slices.sort(key=lambda s: float(s.plane.ipp @ normal))
        self.positions = np.array([s.plane.ipp @ normal for s in self.slices])

    @property
    def plane(self) -> Plane:
        """The first (lowest along the normal) slice's plane."""
        return self.slices[0].plane

    @property
    def instance_numbers(self) -> list[int]:
        """Instance numbers in spatial order."""
        return [s.instance for s in self.slices]

    @property
    def slice_spacing(self) -> float:
        """Median distance between neighbouring slices along the normal (mm); derived from positions."""
        if len(self.slices) < 2:
            return float(self.slices[0].thickness or 1.0)
        return float(np.median(np.diff(self.positions)))

    @property
    def slice_order(self) -> str:
        """How instance numbers run relative to space: ``ascending``, ``descending`` or ``unordered``."""
        numbers = self.instance_numbers
        if numbers == sorted(numbers):
            return "ascending"
        if numbers == sorted(numbers, reverse=True):
            return "descending"
        return "unordered"

    def volume(self) -> np.ndarray:
        """Pixels (slices, rows, cols) in spatial order."""
        return np.stack([s.pixels for s in self.slices])

    def affine(self) -> np.ndarray:
        """4x4 map from (column, row, slice index) to world mm (LPS), with the median slice spacing."""
        p = self.plane
        out = np.eye(4)
        out[:3, 0] = p.row_dir * p.col_spacing
        out[:3, 1] = p.col_dir * p.row_spacing
        out[:3, 2] = p.normal * self.slice_spacing
        out[:3, 3] = p.ipp
        return out


def _orientation_key(s: SliceRecord) -> tuple:
    iop = np.round(np.concatenate([s.plane.row_dir, s.plane.col_dir]), ORIENTATION_DECIMALS) + 0.0
    spacing = (round(s.plane.row_spacing, 3), round(s.plane.col_spacing, 3))
    return (*iop.tolist(), s.plane.rows, s.plane.cols, *spacing)


def group_stacks(slices: list[SliceRecord]) -> list[Stack]:
    """Split one series' slices into stacks: same orientation and size, no big gap along the normal.

    Stacks are ordered by the position of their first slice along their own normal within each
    orientation group, groups by the smallest instance number they hold.
    """
    groups: dict[tuple, list[SliceRecord]] = {}
    for s in slices:
        groups.setdefault(_orientation_key(s), []).append(s)
    stacks: list[Stack] = []
    for members in groups.values():
        ordered = Stack(list(members))
        if len(ordered.slices) < 3:
            stacks.append(ordered)
            continue
        steps = np.diff(ordered.positions)
        typical = float(np.median(steps[steps > 1e-3])) if (steps > 1e-3).any() else 0.0
        start = 0
        for i, step in enumerate(steps, start=1):
            if typical > 0 and (step > GAP_FACTOR * typical or step < 1e-3):
                stacks.append(Stack(ordered.slices[start:i]))
                start = i
        stacks.append(Stack(ordered.slices[start:]))
    stacks.sort(key=lambda st: min(st.instance_numbers))
    return stacks


def orientation_name(normal: np.ndarray) -> str:
    """``sagittal``, ``coronal`` or ``axial`` by the normal's dominant LPS axis."""
    return ("sagittal", "coronal", "axial")[int(np.argmax(np.abs(normal)))]
