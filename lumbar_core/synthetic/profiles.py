"""Phantom sizes and the rates of the real data's quirks, as frozen dataclasses.

``tiny`` is for tests and the demo (96 px sagittal images, few slices); ``realistic`` has the real
data's matrix sizes and slice counts (384 px, 15-17 sagittal slices).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from lumbar_core.errors import UnknownNameError, UserError


@dataclass(frozen=True)
class PhantomProfile:
    """Image sizes and quirk rates of one phantom profile.

    Sizes are (rows, cols) in pixels; spacings in mm; rates are probabilities per study or series.
    """

    name: str
    sag_size: tuple[int, int]
    sag_fov_mm: float
    sag_slices: int
    sag_spacing_mm: float
    axial_size: tuple[int, int]
    axial_fov_mm: float
    axial_spacing_mm: float
    axial_slices_per_disc: int
    subsamples: int = 3
    spider_cases: int = 6
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
    noise_sigma: float = 0.035

    def to_dict(self) -> dict[str, Any]:
        """Plain form (for manifests and truth files)."""
        return asdict(self)

    def with_overrides(self, overrides: dict[str, str]) -> PhantomProfile:
        """A copy with fields set from ``key=value`` strings; unknown keys name the valid ones."""
        types = {f.name: f.type for f in fields(self)}
        values: dict[str, Any] = {}
        for key, text in overrides.items():
            if key not in types or key == "name":
                raise UserError(f"unknown phantom setting {key!r}; valid: {', '.join(k for k in types if k != 'name')}")
            current = getattr(self, key)
            if isinstance(current, tuple):
                values[key] = tuple(int(v) for v in text.split(","))
            else:
                values[key] = type(current)(text)
        return replace(self, **values)


PROFILES: dict[str, PhantomProfile] = {
    "tiny": PhantomProfile(
        name="tiny",
        sag_size=(96, 96),
        sag_fov_mm=240.0,
        sag_slices=11,
        sag_spacing_mm=5.0,
        axial_size=(64, 64),
        axial_fov_mm=160.0,
        axial_spacing_mm=5.0,
        axial_slices_per_disc=3,
        subsamples=3,
        spider_cases=6,
    ),
    "realistic": PhantomProfile(
        name="realistic",
        sag_size=(384, 384),
        sag_fov_mm=300.0,
        sag_slices=17,
        sag_spacing_mm=3.6,
        axial_size=(320, 320),
        axial_fov_mm=180.0,
        axial_spacing_mm=4.0,
        axial_slices_per_disc=5,
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
