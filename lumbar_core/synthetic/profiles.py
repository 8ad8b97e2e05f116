"""Phantom sizes, scanner populations and the rates of the real data's quirks, as frozen dataclasses.

``tiny`` is for tests and the demo (about 96 px sagittal images at 2.3-3.4 mm, 9-13 slices);
``realistic`` has the real data's range of matrices and spacings (256-768 px at 0.3-1.0 mm,
15-25 sagittal slices 3-5 mm apart).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lumbar_core.errors import UnknownNameError, UserError


@dataclass(frozen=True)
class PhantomProfile:
    """Image sizes, scanner populations and quirk rates of one phantom profile.

    Sizes are square matrices in pixels, drawn from the choices given; ``(low, high)`` pairs are
    ranges drawn uniformly per series; spacings and fields of view in mm; rates are probabilities
    per study or series. The in-plane pixel size is the drawn field of view over the drawn matrix,
    kept within ``*_pixel_mm``.
    """

    name: str
    sag_sizes: tuple[int, ...]
    sag_fov_mm: tuple[float, float]
    sag_pixel_mm: tuple[float, float]
    sag_slices: tuple[int, int]
    sag_spacing_mm: tuple[float, float]
    axial_sizes: tuple[int, ...]
    axial_fov_mm: tuple[float, float]
    axial_pixel_mm: tuple[float, float]
    axial_spacing_mm: tuple[float, float]
    axial_slices_per_disc: tuple[int, int]
    subsamples: int = 3
    spider_cases: int = 6
    # scanners (lumbar_core.synthetic.scanner): the RSNA-layout studies' population and SPIDER's ('' = the same)
    style: str = "mixed"
    spider_style: str = ""
    # anatomy
    p_transitional: float = 0.04
    # quirks of the real data (docs/data.md)
    p_missing_t1: float = 0.02
    p_missing_t2: float = 0.01
    p_second_axial: float = 0.17
    p_axial_per_disc: float = 0.5
    p_no_slice_thickness: float = 0.15
    p_instances_shuffled: float = 0.2
    p_instances_reversed: float = 0.3
    p_instances_offset: float = 0.25
    label_noise_sd: float = 0.3
    p_missing_cell: float = 0.004
    p_spider_sacrum_labelled: float = 0.2
    coord_jitter_mm: float = 0.5

    def to_dict(self) -> dict[str, Any]:
        """Plain form (for manifests and truth files)."""
        return asdict(self)

    def with_overrides(self, overrides: dict[str, str]) -> PhantomProfile:
        """A copy with fields set from ``key=value`` strings (``a,b`` for pairs); unknown keys name the valid ones."""
        types = {f.name: f.type for f in fields(self)}
        values: dict[str, Any] = {}
        for key, text in overrides.items():
            if key not in types or key == "name":
                raise UserError(f"unknown phantom setting {key!r}; valid: {', '.join(k for k in types if k != 'name')}")
            current = getattr(self, key)
            try:
                if isinstance(current, tuple):
                    values[key] = tuple(type(current[0])(v) for v in text.split(","))
                else:
                    values[key] = type(current)(text)
            except ValueError:
                raise UserError(f"phantom setting {key}: cannot use {text!r} (now {current!r})") from None
        if "style" in values or "spider_style" in values:
            from lumbar_core.synthetic.scanner import get_style

            for name in (values.get("style"), values.get("spider_style")):
                if name:
                    get_style(name)
        return replace(self, **values)

    @property
    def spider_style_name(self) -> str:
        """The scanner style of the SPIDER export."""
        return self.spider_style or self.style


PROFILES: dict[str, PhantomProfile] = {
    "tiny": PhantomProfile(
        name="tiny",
        sag_sizes=(88, 96, 104),
        sag_fov_mm=(250.0, 320.0),
        sag_pixel_mm=(2.3, 3.4),
        sag_slices=(9, 13),
        sag_spacing_mm=(4.0, 5.5),
        axial_sizes=(56, 64, 72),
        axial_fov_mm=(150.0, 190.0),
        axial_pixel_mm=(2.0, 3.2),
        axial_spacing_mm=(4.0, 5.5),
        axial_slices_per_disc=(3, 3),
        subsamples=3,
        spider_cases=12,
    ),
    "realistic": PhantomProfile(
        name="realistic",
        sag_sizes=(256, 320, 384, 384, 448, 512, 512, 640, 768),
        sag_fov_mm=(250.0, 340.0),
        sag_pixel_mm=(0.3, 1.0),
        sag_slices=(15, 25),
        sag_spacing_mm=(3.0, 5.0),
        axial_sizes=(256, 320, 384, 448, 512),
        axial_fov_mm=(160.0, 220.0),
        axial_pixel_mm=(0.35, 0.8),
        axial_spacing_mm=(3.5, 4.5),
        axial_slices_per_disc=(4, 6),
        subsamples=3,
        spider_cases=20,
    ),
}


def get_profile(name: str) -> PhantomProfile:
    """A profile by name; an unknown name lists the valid ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise UnknownNameError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}") from None
