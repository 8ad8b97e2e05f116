"""The few DICOM attributes ingest needs, read in one pass over a file's bytes.

Ingest reads every image of a dataset once; parsing each file with pydicom and converting its
attributes costs more than reading and writing the pixels. :func:`scan` walks the data elements of
an uncompressed little-endian file (explicit or implicit VR, the syntaxes of the RSNA and SPIDER
files), keeps the attributes of :class:`Header` and the place of the pixel data, and skips the
rest, sequences included. It returns ``None`` for anything it does not handle (another transfer
syntax, no preamble, a multi-frame or colour image, a character set other than Latin-1 or UTF-8,
an element that runs past the end): the caller then reads the file with pydicom, which also gives
the error messages for broken files. Both paths fill the same :class:`Header`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_PIXEL_DATA = 0x7FE00010
_CHARSETS = {"": "latin-1", "ISO_IR 100": "latin-1", "ISO_IR 6": "latin-1", "ISO 2022 IR 6": "latin-1", "ISO_IR 192": "utf-8"}

_TAGS = {
    0x00020002: "media_sop_class",
    0x00020010: "transfer_syntax",
    0x00080005: "charset",
    0x00080016: "sop_class",
    0x0008103E: "description",
    0x00180050: "thickness",
    0x00200013: "instance",
    0x00200032: "ipp",
    0x00200037: "iop",
    0x00280002: "samples",
    0x00280004: "photometric",
    0x00280008: "frames",
    0x00280010: "rows",
    0x00280011: "cols",
    0x00280030: "spacing",
    0x00280100: "bits_allocated",
    0x00280101: "bits_stored",
    0x00280103: "pixel_representation",
}
_US = {"samples", "rows", "cols", "bits_allocated", "bits_stored", "pixel_representation"}
_DS = {"thickness", "ipp", "iop", "spacing"}
_IS = {"instance", "frames"}


class _Unhandled(Exception):
    """The file needs pydicom."""


@dataclass
class Header:
    """What ingest uses of one file; ``None`` where the attribute is absent or empty."""

    sop_class: str = ""
    description: str = ""
    rows: int | None = None
    cols: int | None = None
    ipp: list[float] | None = None
    iop: list[float] | None = None
    spacing: list[float] | None = None
    thickness: float | None = None
    instance: int | None = None
    samples: int = 1
    photometric: str = ""
    frames: int = 1
    bits_allocated: int | None = None
    bits_stored: int | None = None
    pixel_representation: int = 0
    has_pixels: bool = False
    pixels: Callable[[], np.ndarray] = field(default=lambda: np.empty((0, 0)), repr=False)


def scan(data: bytes) -> Header | None:
    """The header of an uncompressed little-endian file, or ``None`` when pydicom must read it."""
    if len(data) < 132 or data[128:132] != b"DICM":
        return None
    try:
        meta, _, offset = _elements(data, 132, explicit=True, stop_group=0x0002)
        syntax = _text(meta.get("transfer_syntax", b""), "latin-1")
        if syntax not in (EXPLICIT_LE, IMPLICIT_LE):
            return None
        found, pixel_at, _ = _elements(data, offset, explicit=syntax == EXPLICIT_LE)
        return _header(data, {**meta, **found}, pixel_at)
    except (_Unhandled, struct.error, ValueError, UnicodeDecodeError):
        return None


def _elements(
    data: bytes, offset: int, *, explicit: bool, stop_group: int | None = None
) -> tuple[dict[str, bytes], tuple[int, int] | None, int]:
    """Values of the wanted top-level tags from ``offset``, (offset, length) of the pixel data, where the walk ended.

    With ``stop_group`` the walk ends at the first element of another group (the file meta).
    """
    found: dict[str, bytes] = {}
    end = len(data)
    while offset < end:
        tag, length, start, vr = _element_header(data, offset, explicit)
        if stop_group is not None and tag >> 16 != stop_group:
            return found, None, offset
        if tag == _PIXEL_DATA:
            if length == _UNDEFINED:
                raise _Unhandled("encapsulated pixel data")
            return found, (start, length), offset
        if length == _UNDEFINED:
            if explicit and vr != b"SQ":
                raise _Unhandled("undefined length outside a sequence")
            offset = _skip_sequence(data, start, explicit)
            continue
        if start + length > end:
            raise _Unhandled("element runs past the end")
        name = _TAGS.get(tag)
        if name is not None:
            found[name] = data[start : start + length]
        offset = start + length
    return found, None, offset


def _element_header(data: bytes, offset: int, explicit: bool) -> tuple[int, int, int, bytes]:
    group, element = struct.unpack_from("<HH", data, offset)
    tag = group << 16 | element
    if group == 0xFFFE or not explicit:  # items and delimiters have no VR in any syntax
        (length,) = struct.unpack_from("<I", data, offset + 4)
        return tag, length, offset + 8, b""
    vr = data[offset + 4 : offset + 6]
    if vr in _LONG_VRS:
        (length,) = struct.unpack_from("<I", data, offset + 8)
        return tag, length, offset + 12, vr
    (length,) = struct.unpack_from("<H", data, offset + 6)
    return tag, length, offset + 8, vr


def _skip_sequence(data: bytes, offset: int, explicit: bool) -> int:
    """The offset after an undefined-length sequence's delimiter."""
    while True:
        tag, length, start, _ = _element_header(data, offset, explicit)
        if tag == _SEQUENCE_END:
            return start
        if tag != _ITEM:
            raise _Unhandled("no item in a sequence")
        offset = start + length if length != _UNDEFINED else _skip_item(data, start, explicit)
        if offset > len(data):
            raise _Unhandled("sequence runs past the end")


def _skip_item(data: bytes, offset: int, explicit: bool) -> int:
    """The offset after an undefined-length item's delimiter."""
    while True:
        tag, length, start, vr = _element_header(data, offset, explicit)
        if tag == _ITEM_END:
            return start
        if length == _UNDEFINED:
            if explicit and vr != b"SQ":
                raise _Unhandled("undefined length outside a sequence")
            offset = _skip_sequence(data, start, explicit)
        else:
            offset = start + length
        if offset > len(data):
            raise _Unhandled("item runs past the end")


def _text(raw: bytes, encoding: str) -> str:
    text = raw.decode(encoding)
    if "\\" in text:
        raise _Unhandled("several values")
    return text.rstrip("\0 ")


def _numbers(raw: bytes, kind: type) -> list:
    text = raw.decode("ascii").strip("\0 ")
    return [kind(v.strip()) for v in text.split("\\")] if text else []


def _header(data: bytes, found: dict[str, bytes], pixel_at: tuple[int, int] | None) -> Header:
    charset = _text(found.get("charset", b""), "latin-1")
    if charset not in _CHARSETS:
        raise _Unhandled(f"character set {charset}")
    header = Header(has_pixels=pixel_at is not None)
    for name, raw in found.items():
        if name in _US:
            if len(raw) != 2:
                raise _Unhandled(f"{name} is not one US value")
            setattr(header, name, struct.unpack("<H", raw)[0])
        elif name in _DS:
            values = _numbers(raw, float)
            if values:
                setattr(header, name, values[0] if name == "thickness" else values)
        elif name in _IS:
            values = _numbers(raw, int)
            if len(values) > 1:
                raise _Unhandled(f"{name} has several values")
            if values:
                setattr(header, name, values[0])
        elif name == "description":
            header.description = _text(raw, _CHARSETS[charset])
        elif name == "photometric":
            header.photometric = _text(raw, "latin-1").strip()
    header.sop_class = _text(found.get("sop_class", b""), "latin-1") or _text(found.get("media_sop_class", b""), "latin-1")
    if header.has_pixels:
        greyscale = header.samples == 1 and header.photometric in ("MONOCHROME1", "MONOCHROME2")
        if header.frames != 1 or not greyscale or header.bits_allocated not in (8, 16) or not header.rows or not header.cols:
            raise _Unhandled("not a single-frame greyscale image of 8 or 16 bits")
        start, length = pixel_at
        count = header.rows * header.cols
        if length < count * header.bits_allocated // 8 or start + length > len(data):
            raise _Unhandled("pixel data shorter than the image")
        dtype = np.dtype(f"<{'i' if header.pixel_representation == 1 else 'u'}{header.bits_allocated // 8}")
        rows, cols = header.rows, header.cols
        header.pixels = lambda: np.frombuffer(data, dtype=dtype, count=count, offset=start).reshape(rows, cols)
    return header
