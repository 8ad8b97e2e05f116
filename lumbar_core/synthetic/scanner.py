"""Scanners: the per-study draw of what makes real series differ besides the anatomy.

A :class:`ScannerStyle` is a population of scanners (a site's fleet, a public dataset's sources):
ranges of field strength, vendor, raw intensity scale and offset, noise, bias field, contrast, and
how often the sagittal fluid series is a STIR and the axial T2 fat-saturated. Each study draws one
:class:`Scanner` from the profile's ``style``; the SPIDER export draws from ``spider_style``, so
the two can come from different populations on purpose (a domain shift the project can produce).
Real series differ about tenfold in raw values, which is what ``gain`` spans in the ``mixed`` style.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lumbar_core.errors import UnknownNameError


@dataclass(frozen=True)
class ScannerStyle:
    """A population of scanners: the ranges each study's scanner is drawn from.

    Attributes:
        field_strengths: tesla, drawn uniformly.
        vendors: Manufacturer tags, drawn uniformly.
        gain: raw value of intensity 1.0, drawn log-uniformly from this range.
        offset: raw value added to every pixel.
        noise: Rician sigma relative to intensity 1.0.
        bias: strength of the receive-coil shading (about 1 +- bias).
        contrast: exponent on the tissue table (above 1: more contrast).
        p_stir: a sagittal fluid series is a STIR (fat dark) rather than a T2.
        p_fat_sat: an axial T2 is fat-saturated.
    """

    name: str
    field_strengths: tuple[float, ...]
    vendors: tuple[str, ...]
    gain: tuple[float, float]
    offset: tuple[float, float]
    noise: tuple[float, float]
    bias: tuple[float, float]
    contrast: tuple[float, float]
    p_stir: float
    p_fat_sat: float


@dataclass(frozen=True)
class Scanner:
    """One study's scanner (series of the study share it; each series varies its gain a little)."""

    style: str
    vendor: str
    field_strength: float
    gain: float
    offset: float
    noise: float
    bias: float
    contrast: float
    stir: bool
    fat_sat: bool

    def to_dict(self) -> dict:
        """JSON-ready form (for the truth files)."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


STYLES: dict[str, ScannerStyle] = {
    s.name: s
    for s in (
        ScannerStyle(
            "mixed",
            field_strengths=(1.5, 3.0),
            vendors=("SIEMENS", "GE MEDICAL SYSTEMS", "Philips Medical Systems"),
            gain=(250.0, 2500.0),
            offset=(0.0, 40.0),
            noise=(0.02, 0.06),
            bias=(0.05, 0.3),
            contrast=(0.85, 1.2),
            p_stir=0.2,
            p_fat_sat=0.25,
        ),
        ScannerStyle(
            "siemens-1.5t",
            field_strengths=(1.5,),
            vendors=("SIEMENS",),
            gain=(1600.0, 2200.0),
            offset=(0.0, 5.0),
            noise=(0.035, 0.05),
            bias=(0.08, 0.15),
            contrast=(0.9, 1.0),
            p_stir=0.0,
            p_fat_sat=0.0,
        ),
        ScannerStyle(
            "philips-3t",
            field_strengths=(3.0,),
            vendors=("Philips Medical Systems",),
            gain=(180.0, 320.0),
            offset=(20.0, 60.0),
            noise=(0.015, 0.03),
            bias=(0.2, 0.35),
            contrast=(1.1, 1.25),
            p_stir=0.6,
            p_fat_sat=0.6,
        ),
    )
}


def get_style(name: str) -> ScannerStyle:
    """A scanner style by name; an unknown name lists the valid ones."""
    try:
        return STYLES[name]
    except KeyError:
        raise UnknownNameError(f"unknown scanner style {name!r}; valid: {', '.join(STYLES)}") from None


def draw_scanner(rng: np.random.Generator, style: ScannerStyle) -> Scanner:
    """One study's scanner from a style."""
    return Scanner(
        style=style.name,
        vendor=str(style.vendors[int(rng.integers(len(style.vendors)))]),
        field_strength=float(style.field_strengths[int(rng.integers(len(style.field_strengths)))]),
        gain=float(np.exp(rng.uniform(*np.log(style.gain)))),
        offset=float(rng.uniform(*style.offset)),
        noise=float(rng.uniform(*style.noise)),
        bias=float(rng.uniform(*style.bias)),
        contrast=float(rng.uniform(*style.contrast)),
        stir=bool(rng.random() < style.p_stir),
        fat_sat=bool(rng.random() < style.p_fat_sat),
    )
