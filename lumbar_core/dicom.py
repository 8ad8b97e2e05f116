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

from lumbar_core.dicom_header import Header, scan
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
    """One image: its instance number, placement and pixels (rows, cols); ``note`` says what was converted."""

    instance: int
    plane: Plane
    pixels: np.ndarray
    thickness: float | None
    description: str
    source: str
    note: str = ""


GEOMETRY_TOLERANCE = 0.05  # ImageOrientationPatient's rows must be unit vectors and orthogonal to this


def read_slice(data: bytes, source: str) -> SliceRecord:
    """Parse one DICOM file's bytes (:func:`lumbar_core.dicom_header.scan`, else pydicom).

    MONOCHROME1 pixels are inverted to MONOCHROME2 (``note`` says so).

    Raises:
        DicomReadError: truncated or non-DICOM bytes or undecodable pixels (``unreadable``), no
            pixel data (``not an image``), no ImagePositionPatient / ImageOrientationPatient /
            PixelSpacing (``missing geometry``), orientation or spacing that place no plane (``bad
            geometry``), colour (``not greyscale``) or several frames (``multi-frame``).
    """
    header = scan(data) or _read_with_pydicom(data, source)
    if not header.has_pixels or header.rows is None or header.cols is None:
        if header.sop_class in _IMAGE_SOP_CLASSES or header.rows is not None:
            raise DicomReadError("unreadable", f"{source}: image file without (complete) pixel data: truncated?")
        raise DicomReadError("not an image", f"{source}: DICOM without pixel data (SOP class {header.sop_class or '?'})")
    names = {"ipp": "ImagePositionPatient", "iop": "ImageOrientationPatient", "spacing": "PixelSpacing"}
    missing = [tag for attr, tag in names.items() if getattr(header, attr) is None]
    if missing:
        raise DicomReadError("missing geometry", f"{source}: no {', '.join(missing)}")
    _check_geometry(header, source)
    if header.samples != 1 or header.photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise DicomReadError(
            "not greyscale",
            f"{source}: {header.photometric or 'no PhotometricInterpretation'} with {header.samples} samples per pixel; "
            "only greyscale (MONOCHROME1/2) images are used",
        )
    if header.frames != 1:
        raise DicomReadError("multi-frame", f"{source}: {header.frames} frames in one file; only single-frame images are read")
    try:
        pixels = header.pixels()
    except Exception as exc:  # pydicom's decoders raise many types for damaged pixel data
        raise DicomReadError("unreadable", f"{source}: pixel data cannot be decoded ({type(exc).__name__}: {exc})") from None
    if pixels.shape != (header.rows, header.cols):
        raise DicomReadError("unreadable", f"{source}: pixels of shape {pixels.shape}, not Rows x Columns {header.rows} x {header.cols}")
    note = ""
    if header.photometric == "MONOCHROME1":
        pixels = _invert(pixels, header.bits_stored)
        note = "MONOCHROME1 inverted to MONOCHROME2"
    iop = np.asarray(header.iop, dtype=float)
    plane = Plane(
        np.asarray(header.ipp, dtype=float), unit(iop[:3]), unit(iop[3:]), header.spacing[0], header.spacing[1], header.rows, header.cols
    )
    instance = header.instance if header.instance is not None else -1
    return SliceRecord(instance, plane, pixels, header.thickness, header.description, source, note)


def _check_geometry(header: Header, source: str) -> None:
    """Refuse an orientation or spacing that places no plane (zeros, NaN, non-orthogonal rows)."""
    ipp, iop, spacing = (np.asarray(v, dtype=float) for v in (header.ipp, header.iop, header.spacing))
    if ipp.shape != (3,) or iop.shape != (6,) or spacing.shape != (2,):
        counts = f"{ipp.size}/{iop.size}/{spacing.size}"
        message = f"{source}: ImagePositionPatient/ImageOrientationPatient/PixelSpacing need 3/6/2 values, got {counts}"
        raise DicomReadError("bad geometry", message)
    if not (np.isfinite(ipp).all() and np.isfinite(iop).all() and np.isfinite(spacing).all()) or (spacing <= 0).any():
        raise DicomReadError("bad geometry", f"{source}: non-finite position/orientation or non-positive PixelSpacing {spacing.tolist()}")
    row, col = iop[:3], iop[3:]
    off = max(abs(np.linalg.norm(row) - 1), abs(np.linalg.norm(col) - 1), abs(row @ col))
    if off > GEOMETRY_TOLERANCE:
        raise DicomReadError("bad geometry", f"{source}: ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors")


def _invert(pixels: np.ndarray, bits_stored: int | None) -> np.ndarray:
    """MONOCHROME1 to MONOCHROME2 within the stored range (unsigned: max - p; signed: -1 - p)."""
    if pixels.dtype.kind == "i":
        return (-1 - pixels).astype(pixels.dtype)
    top = (1 << (bits_stored or pixels.dtype.itemsize * 8)) - 1
    return (top - pixels.astype(np.int64)).clip(0, None).astype(pixels.dtype)


def _read_with_pydicom(data: bytes, source: str) -> Header:
    """The header of a file :func:`scan` does not handle, read with pydicom."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        raise DicomReadError("unreadable", f"{source}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
    try:
        return _header_of(ds)
    except (ValueError, TypeError) as exc:
        raise DicomReadError("unreadable", f"{source}: an attribute cannot be read ({type(exc).__name__}: {exc})") from None


def _header_of(ds) -> Header:
    from pydicom.multival import MultiValue

    def number(keyword: str, kind: type):
        value = ds.get(keyword)
        return None if value in (None, "") else kind(value)

    def numbers(keyword: str) -> list[float] | None:
        value = ds.get(keyword)
        if value in (None, ""):
            return None
        return [float(v) for v in (value if isinstance(value, (MultiValue, list, tuple)) else [value])]

    has_pixels = "PixelData" in ds
    header = Header(
        sop_class=str(ds.get("SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", "")),
        description=str(ds.get("SeriesDescription", "")),
        rows=number("Rows", int),
        cols=number("Columns", int),
        ipp=numbers("ImagePositionPatient"),
        iop=numbers("ImageOrientationPatient"),
        spacing=numbers("PixelSpacing"),
        thickness=number("SliceThickness", float),
        instance=number("InstanceNumber", int),
        samples=number("SamplesPerPixel", int) or 1,
        photometric=str(ds.get("PhotometricInterpretation", "")).strip(),
        frames=number("NumberOfFrames", int) or 1,
        bits_allocated=number("BitsAllocated", int),
        bits_stored=number("BitsStored", int),
        pixel_representation=number("PixelRepresentation", int) or 0,
        has_pixels=has_pixels,
    )
    if has_pixels:
        header.pixels = lambda: np.asarray(ds.pixel_array)
    return header


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
