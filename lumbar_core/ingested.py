"""Reading what ingest wrote: tables and per-stack volumes, through the stage manifests.

Later stages use :class:`IngestedData` rather than importing the ingest stage (stages never import
each other).
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Mapping, Sequence
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


_SMALL = 4096  # arrays of fewer bytes are stored raw (compressing them costs more than it saves)
_CHUNK_LIMIT = 1 << 30  # a blosc2 chunk holds under 2 GiB
MAGIC = b"\x89LBV\r\n\x1a\n"  # a stack file; the 8 bytes catch text-mode and truncated copies, like PNG's
FORMAT_VERSION = 1
Arrays = Mapping[str, "np.ndarray | Sequence[np.ndarray]"]


def save_volume(arrays: Arrays, *, codec: str = "deflate", level: int = 1) -> bytes:
    """A volume file's bytes (:func:`encode_volume`, joined)."""
    return b"".join(encode_volume(arrays, codec=codec, level=level))


def volume_suffix(codec: str) -> str:
    """The file suffix of a volume written with ``codec``: ``.npz`` (deflate) or ``.vol`` (a stack file)."""
    return ".npz" if codec == "deflate" else ".vol"


def encode_volume(arrays: Arrays, *, codec: str = "deflate", level: int = 1) -> list[bytes | memoryview]:
    """A volume file, as the byte strings to write one after another.

    A value may be an array or a list of equally shaped arrays (the slices of a stack, which are
    then never copied into one array). With ``zstd``, ``lz4`` or ``none`` the file is a stack file:
    :data:`MAGIC`, a little-endian uint32 header length, a UTF-8 JSON header listing each array's
    name, dtype, shape, encoding and part sizes, then the parts. With ``zstd`` or ``lz4`` each array
    of 4 KiB or more is one blosc2 chunk per item along its first axis (a slice; a bit shuffle, then
    the codec at ``level``, one thread); smaller ones, and every array with ``none``, are raw. With
    ``deflate`` the file is an ``.npz`` zip of ``.npy`` members deflated at ``level`` (stored at
    level 0), which numpy's ``np.load`` reads. :func:`load_arrays` reads both, and the zip files of
    older versions (stored ``.npy`` members, or ``.npy.blosc2`` / ``.b2`` ones).
    """
    check_codec(codec, level)
    if codec != "deflate":
        return _stack_file(arrays, _BLOSC.get(codec), level)
    buffer = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if level > 0 else zipfile.ZIP_STORED
    with zipfile.ZipFile(buffer, "w", method, compresslevel=level if level > 0 else None) as archive:
        for name, value in arrays.items():
            array = np.ascontiguousarray(value if isinstance(value, np.ndarray) else np.stack(value))
            with archive.open(f"{name}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, array, allow_pickle=False)
    return [buffer.getvalue()]


def _contiguous(array: np.ndarray, dtype: np.dtype | None = None) -> np.ndarray:
    """``array`` as C-ordered items of ``dtype`` (copied only where needed; 0-d arrays stay 0-d)."""
    return np.require(array, dtype=dtype, requirements="C")


def _raw(array: np.ndarray) -> memoryview:
    return memoryview(array.reshape(-1).view(np.uint8))


def _stack_file(arrays: Arrays, codec: blosc2.Codec | None, level: int) -> list[bytes | memoryview]:
    entries, parts = [], []
    for name, value in arrays.items():
        if isinstance(value, np.ndarray):
            whole = _contiguous(value)
            items, shape, dtype = (list(whole) if whole.ndim >= 2 else [whole]), whole.shape, whole.dtype
        else:
            items = list(value)
            if not items or len({np.shape(item) for item in items}) != 1:
                raise ValueError(f"array {name!r}: a list of arrays must hold at least one array, all of one shape")
            dtype = np.result_type(*items)
            items = [_contiguous(item, dtype) for item in items]
            whole, shape = None, (len(items), *items[0].shape)
        if dtype.hasobject:
            raise ValueError(f"array {name!r} holds Python objects")
        if codec is None or int(np.prod(shape)) * dtype.itemsize < _SMALL or items[0].nbytes >= _CHUNK_LIMIT:
            encoding, data = "raw", [_raw(item) for item in ([whole] if whole is not None else items)]
        else:
            encoding = "blosc2"
            data = [
                blosc2.compress2(
                    item,
                    codec=codec,
                    clevel=level,
                    filters=[blosc2.Filter.BITSHUFFLE],
                    typesize=dtype.itemsize,
                    nthreads=1,
                    blocksize=1 << 18,
                )
                for item in items
            ]
        entries.append({"name": name, "dtype": dtype.str, "shape": list(shape), "encoding": encoding, "sizes": [len(d) for d in data]})
        parts.extend(data)
    header = json.dumps({"version": FORMAT_VERSION, "arrays": entries}, separators=(",", ":")).encode()
    return [MAGIC + struct.pack("<I", len(header)) + header, *parts]


def _read_stack_file(data: bytes) -> dict[str, np.ndarray]:
    view = memoryview(data)
    if len(data) < len(MAGIC) + 4:
        raise ValueError("stack file shorter than its header")
    (length,) = struct.unpack_from("<I", data, len(MAGIC))
    offset = len(MAGIC) + 4 + length
    header = json.loads(bytes(view[len(MAGIC) + 4 : offset]))
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"stack file of version {header.get('version')!r}; this version reads {FORMAT_VERSION}")
    arrays = {}
    for entry in header["arrays"]:
        dtype, shape, sizes = np.dtype(entry["dtype"]), tuple(entry["shape"]), entry["sizes"]
        if dtype.hasobject:
            raise ValueError(f"stack file array {entry['name']!r} holds Python objects")
        if offset + sum(sizes) > len(data):
            raise ValueError(f"stack file truncated in array {entry['name']!r}")
        out = np.empty(shape, dtype=dtype)
        flat = out.reshape(-1).view(np.uint8)
        at = 0
        for size in sizes:
            part = view[offset : offset + size]
            offset += size
            if entry["encoding"] == "raw":
                flat[at : at + size] = np.frombuffer(part, dtype=np.uint8)
                at += size
            else:
                nbytes = blosc2.get_cbuffer_sizes(part)[0]
                if at + nbytes > flat.size:
                    raise ValueError(f"stack file array {entry['name']!r}: its chunks hold more than its shape")
                blosc2.decompress2(part, dst=flat[at : at + nbytes])
                at += nbytes
        if at != flat.size:
            raise ValueError(f"stack file array {entry['name']!r}: {at} bytes for a {flat.size}-byte array")
        arrays[entry["name"]] = out
    return arrays


def load_arrays(data: bytes) -> dict[str, np.ndarray]:
    """Every array of a volume file written by :func:`save_volume` (any codec, any version) or ``np.savez``."""
    if data[: len(MAGIC)] == MAGIC:
        return _read_stack_file(data)
    if data[:2] != b"PK":
        raise ValueError("volume file is neither a stack file nor a zip (truncated or another format)")
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


def _from_blosc_chunk(data: bytes) -> np.ndarray:
    """A ``.npy.blosc2`` member of an older zip volume file: an .npy header, then one blosc2 chunk."""
    fh = io.BytesIO(data)
    np.lib.format.read_magic(fh)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    if dtype.hasobject:
        raise ValueError("volume file holds an object array")
    items = blosc2.decompress2(memoryview(data)[fh.tell() :])
    array = np.frombuffer(items, dtype=dtype, count=int(np.prod(shape)))
    return array.reshape(shape, order="F" if fortran else "C")


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
