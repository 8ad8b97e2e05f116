"""Reading what ingest wrote: tables and per-stack volumes, through the stage manifests.

Later stages use :class:`IngestedData` rather than importing the ingest stage (stages never import
each other).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from functools import cached_property

import blosc2
import numpy as np
import pandas as pd

from lumbar_core.geometry import StackGeometry
from lumbar_core.manifest import ManifestError, StageInput

STAGE = "ingest"
TABLES = {
    "series_index": "series_index.parquet",
    "slices": "slices.parquet",
    "labels": "labels.parquet",
    "coordinates": "coordinates.parquet",
    "problems": "problems.parquet",
}
PROBLEM_COLUMNS = ["study_id", "series_id", "file", "kind", "message"]


@dataclass
class Volume:
    """One stack: pixels (slices, rows, cols) in spatial order, its geometry and instance numbers."""

    pixels: np.ndarray
    geometry: StackGeometry
    instance_numbers: np.ndarray
    affine: np.ndarray


# Codecs of the volume files: blosc2's lz4 or zstd after a bit shuffle (several times faster than deflate
# and smaller on MR pixels), zip's deflate, or none.
CODECS = ("zstd", "lz4", "deflate", "none")
_BLOSC = {"zstd": blosc2.Codec.ZSTD, "lz4": blosc2.Codec.LZ4}


def check_codec(codec: str, level: int) -> None:
    """Refuse an unknown codec or a level outside 0-9, naming the parameter."""
    if codec not in CODECS:
        raise ValueError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
    if not 0 <= int(level) <= 9:
        raise ValueError(f"compression level {level} is outside 0-9 (0: fastest; 1: the default)")


_SMALL = 4096  # arrays of fewer bytes are stored as plain .npy members (compressing them costs more than it saves)
_CHUNK_LIMIT = 1 << 30  # one blosc2 chunk holds under 2 GiB; larger arrays are written as a blosc2 frame


def save_volume(arrays: dict[str, np.ndarray], *, codec: str = "deflate", level: int = 1) -> bytes:
    """A volume file's bytes: a zip of named arrays.

    With ``zstd`` or ``lz4`` each array of 4 KiB or more is ``NAME.npy.blosc2``: an ``.npy`` header,
    then the items as one blosc2 chunk (a bit shuffle at the item size, then the codec at ``level``, one
    thread); with ``deflate`` or ``none`` each is an ``.npy`` member, deflated at ``level`` or stored
    (the files numpy's ``np.load`` reads). :func:`load_arrays` reads every form.
    """
    check_codec(codec, level)
    buffer = io.BytesIO()
    deflate = codec == "deflate" and level > 0
    method = zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method, compresslevel=level if deflate else None) as archive:
        for name, array in arrays.items():
            array = np.ascontiguousarray(array)
            if codec in _BLOSC and _SMALL <= array.nbytes < _CHUNK_LIMIT:
                archive.writestr(f"{name}.npy.blosc2", _blosc_chunk(array, _BLOSC[codec], level))
            elif codec in _BLOSC and array.nbytes >= _CHUNK_LIMIT:
                cparams = {"codec": _BLOSC[codec], "clevel": level, "nthreads": 1, "filters": [blosc2.Filter.BITSHUFFLE]}
                archive.writestr(f"{name}.b2", blosc2.pack_tensor(array, cparams=cparams))
            else:
                with archive.open(f"{name}.npy", "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, array, allow_pickle=False)
    return buffer.getvalue()


def _blosc_chunk(array: np.ndarray, codec: blosc2.Codec, level: int) -> bytes:
    """``array``'s .npy header, then its items in one blosc2 chunk (compressed straight from the array)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    chunk = blosc2.compress2(
        array, codec=codec, clevel=level, filters=[blosc2.Filter.BITSHUFFLE], typesize=array.dtype.itemsize, nthreads=1, blocksize=1 << 18
    )
    return header.getvalue() + chunk


def _from_blosc_chunk(data: bytes) -> np.ndarray:
    fh = io.BytesIO(data)
    np.lib.format.read_magic(fh)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    if dtype.hasobject:
        raise ValueError("volume file holds an object array")
    items = blosc2.decompress2(memoryview(data)[fh.tell() :])
    array = np.frombuffer(items, dtype=dtype, count=int(np.prod(shape)))
    return array.reshape(shape, order="F" if fortran else "C")


def load_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Every array of a volume file written by :func:`save_volume` (any codec) or ``np.savez``."""
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            if member.endswith(".npy.blosc2"):
                arrays[member.removesuffix(".npy.blosc2")] = _from_blosc_chunk(archive.read(member))
                continue
            name, _, kind = member.rpartition(".")
            if kind == "b2":
                arrays[name] = blosc2.unpack_tensor(archive.read(member))
            elif kind == "npy":
                with archive.open(member) as fh:
                    arrays[name] = np.lib.format.read_array(fh, allow_pickle=False)
            else:
                raise ValueError(f"volume file member {member!r} is neither .npy, .npy.blosc2 nor .b2")
    return arrays


def load_volume(data: bytes) -> Volume:
    """Parse a ``volumes/*.npz`` file written by ingest."""
    z = load_arrays(data)
    spacing = z["pixel_spacing"]
    pixels = z["pixels"]
    geometry = StackGeometry(
        z["ipp"], z["row_dir"], z["col_dir"], float(spacing[0]), float(spacing[1]), int(pixels.shape[1]), int(pixels.shape[2])
    )
    return Volume(pixels, geometry, z["instance_numbers"], z["affine"])


class IngestedData:
    """The ``ingest`` stage of a run: its tables and volumes (which may live in shard stages)."""

    def __init__(self, run_uri: str, stage: StageInput):
        """Use :meth:`open`."""
        self.run_uri = run_uri
        self.stage = stage
        self._volume_stages: dict[str, StageInput] = {stage.manifest.stage: stage}

    @classmethod
    def open(cls, run_uri: str, stage: str = STAGE) -> IngestedData:
        """Open a committed ingest stage (refused without its manifest)."""
        return cls(run_uri, StageInput.open(run_uri, stage))

    def table(self, name: str) -> pd.DataFrame:
        """One of :data:`TABLES` (an empty frame for labels/coordinates of a test split)."""
        path = TABLES[name]
        if path not in self.stage.manifest.files:
            if name in ("labels", "coordinates"):
                return pd.DataFrame()
            raise ManifestError(f"stage {self.stage.manifest.stage!r} has no {path}")
        return self.stage.read_table(path)

    @cached_property
    def index(self) -> pd.DataFrame:
        """The series index: one row per stack."""
        return self.table("series_index")

    @cached_property
    def problems(self) -> pd.DataFrame:
        """Problems found while ingesting."""
        return self.table("problems")

    @cached_property
    def slices(self) -> pd.DataFrame:
        """Every image's stack, spatial slice index, instance and IPP."""
        return self.table("slices")

    def geometry(self, study_id: int, series_id: int, stack: int = 0) -> StackGeometry:
        """A stack's geometry from the tables alone (no pixels read)."""
        index = self.index
        row = index[(index["study_id"] == study_id) & (index["series_id"] == series_id) & (index["stack"] == stack)]
        if row.empty:
            raise KeyError(f"no ingested stack {stack} of study {study_id} series {series_id}")
        row = row.iloc[0]
        sl = self.slices
        sl = sl[(sl["study_id"] == study_id) & (sl["series_id"] == series_id) & (sl["stack"] == stack)].sort_values("slice")
        affine = np.asarray(row["affine"], dtype=float).reshape(4, 4)
        return StackGeometry(
            sl[["ipp_x", "ipp_y", "ipp_z"]].to_numpy(),
            affine[:3, 0] / float(row["col_spacing"]),
            affine[:3, 1] / float(row["row_spacing"]),
            float(row["row_spacing"]),
            float(row["col_spacing"]),
            int(row["rows"]),
            int(row["cols"]),
        )

    def volume(self, study_id: int, series_id: int, stack: int = 0) -> Volume:
        """The volume of one stack."""
        rows = self.index[(self.index["study_id"] == study_id) & (self.index["series_id"] == series_id) & (self.index["stack"] == stack)]
        if rows.empty:
            raise KeyError(f"no ingested stack {stack} of study {study_id} series {series_id}")
        row = rows.iloc[0]
        stage_name = str(row["volume_stage"])
        if stage_name not in self._volume_stages:
            self._volume_stages[stage_name] = StageInput.open(self.run_uri, stage_name)
        return load_volume(self._volume_stages[stage_name].read_bytes(str(row["volume_path"])))
