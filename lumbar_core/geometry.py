"""Image geometry in DICOM's patient frame (LPS, millimetres).

LPS: +x is the patient's LEFT, +y POSTERIOR, +z SUPERIOR (head). A 2D image is placed by
ImagePositionPatient (IPP, the centre of the first pixel), ImageOrientationPatient (IOP: the unit
vector along a row, i.e. of increasing column index, then along a column, i.e. of increasing row
index) and PixelSpacing (row spacing, column spacing). A pixel at column ``x``, row ``y`` is at
``IPP + x * col_spacing * IOP[:3] + y * row_spacing * IOP[3:]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def unit(v: np.ndarray) -> np.ndarray:
    """``v`` scaled to length 1."""
    v = np.asarray(v, dtype=float)
    return v / np.linalg.norm(v)


def rotation(rx_deg: float = 0.0, ry_deg: float = 0.0, rz_deg: float = 0.0) -> np.ndarray:
    """Rotation matrix (3, 3) applying rotations about x, then y, then z (degrees)."""
    ax, ay, az = np.radians([rx_deg, ry_deg, rz_deg])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _to_world(origin: np.ndarray, x, y, g: _Placed) -> np.ndarray:
    """``origin + x * col_spacing * row_dir + y * row_spacing * col_dir`` with broadcasting."""
    x = np.asarray(x, dtype=float)[..., None]
    y = np.asarray(y, dtype=float)[..., None]
    return origin + x * g.col_spacing * g.row_dir + y * g.row_spacing * g.col_dir


@dataclass(frozen=True)
class _Placed:
    """Orientation, spacing and size shared by a single image and a stack of parallel images.

    Attributes:
        ipp: world position of the centre of pixel (row 0, column 0), mm: (3,) for an image,
            (n, 3) for a stack (one per slice, in spatial order).
        row_dir: unit vector of increasing column index (IOP[:3]).
        col_dir: unit vector of increasing row index (IOP[3:]).
        row_spacing: distance between rows, mm (PixelSpacing[0]).
        col_spacing: distance between columns, mm (PixelSpacing[1]).
        rows: image height in pixels.
        cols: image width in pixels.
    """

    ipp: np.ndarray
    row_dir: np.ndarray
    col_dir: np.ndarray
    row_spacing: float
    col_spacing: float
    rows: int
    cols: int

    @property
    def normal(self) -> np.ndarray:
        """Unit normal, row_dir x col_dir."""
        return unit(np.cross(self.row_dir, self.col_dir))


@dataclass(frozen=True)
class Plane(_Placed):
    """One image's placement (``ipp`` of shape (3,))."""

    @property
    def iop(self) -> list[float]:
        """ImageOrientationPatient as six floats."""
        return [*map(float, self.row_dir), *map(float, self.col_dir)]

    def pixel_to_world(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        """World points (..., 3) of pixel coordinates (column ``x``, row ``y``)."""
        return _to_world(self.ipp, x, y, self)

    def world_to_pixel(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Column, row and signed distance from the plane (mm) of world points (..., 3)."""
        rel = np.asarray(points, dtype=float) - self.ipp
        return rel @ self.row_dir / self.col_spacing, rel @ self.col_dir / self.row_spacing, rel @ self.normal

    def grid(self) -> np.ndarray:
        """World coordinates (rows, cols, 3) of every pixel centre."""
        ys, xs = np.mgrid[0 : self.rows, 0 : self.cols]
        return self.pixel_to_world(xs, ys)

    def shifted(self, distance: float) -> Plane:
        """The same plane moved ``distance`` mm along its normal."""
        return Plane(
            self.ipp + distance * self.normal, self.row_dir, self.col_dir, self.row_spacing, self.col_spacing, self.rows, self.cols
        )


def plane_centred(
    centre: np.ndarray, row_dir: np.ndarray, col_dir: np.ndarray, spacing: tuple[float, float], size: tuple[int, int]
) -> Plane:
    """A plane of ``size`` (rows, cols) pixels whose image centre is at the world point ``centre``."""
    row_dir, col_dir = unit(row_dir), unit(col_dir)
    rows, cols = size
    row_spacing, col_spacing = spacing
    ipp = np.asarray(centre, dtype=float) - (cols - 1) / 2 * col_spacing * row_dir - (rows - 1) / 2 * row_spacing * col_dir
    return Plane(ipp, row_dir, col_dir, float(row_spacing), float(col_spacing), int(rows), int(cols))


def in_plane_axes(normal: np.ndarray, row_hint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column directions of a plane with ``normal``, the row direction closest to ``row_hint``.

    The column direction is ``normal x row_dir`` so that ``row_dir x col_dir == normal``.
    """
    normal = unit(normal)
    row = unit(row_hint - np.dot(row_hint, normal) * normal)
    return row, unit(np.cross(normal, row))


@dataclass(frozen=True)
class StackGeometry(_Placed):
    """A stack of parallel images: each slice's IPP (n, 3), shared orientation, spacing and size."""

    @property
    def positions(self) -> np.ndarray:
        """Position of each slice along the normal (mm)."""
        return self.ipp @ self.normal

    @property
    def slice_spacing(self) -> float:
        """Median distance between neighbouring slices (mm); 1.0 for a single slice."""
        return float(np.median(np.diff(self.positions))) if len(self.ipp) > 1 else 1.0

    def plane(self, k: int) -> Plane:
        """The plane of slice ``k``."""
        return Plane(self.ipp[k], self.row_dir, self.col_dir, self.row_spacing, self.col_spacing, self.rows, self.cols)

    def pixel_to_world(self, x: np.ndarray | float, y: np.ndarray | float, k: np.ndarray | int) -> np.ndarray:
        """World points (..., 3) of (column ``x``, row ``y``) on slice ``k``."""
        return _to_world(self.ipp[np.asarray(k, dtype=int)], x, y, self)

    def nearest_slice(self, point: np.ndarray) -> tuple[int, float]:
        """Index of the slice nearest a world point and the point's distance from it (mm)."""
        offsets = (np.asarray(point, dtype=float) - self.ipp) @ self.normal
        k = int(np.argmin(np.abs(offsets)))
        return k, float(abs(offsets[k]))

    def world_to_pixel(self, point: np.ndarray) -> tuple[float, float, int, float]:
        """(column, row, nearest slice, distance mm) of one world point."""
        k, distance = self.nearest_slice(point)
        x, y, _ = self.plane(k).world_to_pixel(np.asarray(point, dtype=float))
        return float(x), float(y), k, distance


def nearest_slices(point: np.ndarray, stacks: list[StackGeometry], *, max_mm: float = 5.0) -> list[tuple[int, int, float]]:
    """For a world point (e.g. a sagittal label mapped to world), the nearest slice of each stack.

    Returns (stack index, slice index, distance mm) for every stack whose nearest slice is within
    ``max_mm`` and whose image contains the point's projection, nearest first; farther matches are
    rejected (about 5 mm, as in docs/data.md).
    """
    out = []
    for i, stack in enumerate(stacks):
        x, y, k, distance = stack.world_to_pixel(point)
        if distance <= max_mm and -0.5 <= x <= stack.cols - 0.5 and -0.5 <= y <= stack.rows - 0.5:
            out.append((i, k, distance))
    return sorted(out, key=lambda m: m[2])


def side_of_midline(point: np.ndarray, midline: np.ndarray) -> str:
    """``left`` or ``right``: the patient's side of ``point`` relative to a midline point (patient left is +x)."""
    return "left" if float(np.asarray(point)[0] - np.asarray(midline)[0]) > 0 else "right"
