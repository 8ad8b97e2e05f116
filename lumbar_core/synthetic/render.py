"""Series planning and MR-like rendering of the phantom.

Planning places the slices of each series like a technologist would: sagittal stacks across the
canal midline, axial T2 as one continuous stack or as one stack per disc angled along the disc, each
with a little obliquity and a shifted field of view. Rendering turns tissue labels into MR-like
intensities: series contrast (T1: fat bright, CSF dark; T2: CSF bright, degenerated discs darker),
partial volume over the slice thickness, a smooth bias field and Rician noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lumbar_core import vocab
from lumbar_core.geometry import Plane, in_plane_axes, plane_centred, rotation, unit
from lumbar_core.synthetic import anatomy as an
from lumbar_core.synthetic.profiles import PhantomProfile

_T1 = {an.FAT: 0.95, an.MUSCLE: 0.33, an.BONE: 0.5, an.CSF: 0.12, an.FORAMEN_FAT: 0.95, an.NERVE: 0.3, an.LIGAMENT: 0.14, an.SOFT: 0.4}
_T2 = {an.FAT: 0.68, an.MUSCLE: 0.24, an.BONE: 0.33, an.CSF: 1.0, an.FORAMEN_FAT: 0.64, an.NERVE: 0.33, an.LIGAMENT: 0.1, an.SOFT: 0.3}


@dataclass
class SeriesPlan:
    """One series: its type, stacks of planes (each in spatial order along its normal) and tags."""

    series_id: int
    description: str
    stacks: list[list[Plane]]
    thickness: float
    write_thickness: bool
    series_number: int = 1
    instance_numbers: list[list[int]] = field(default_factory=list)

    @property
    def contrast(self) -> str:
        """``T1`` or ``T2``."""
        return "T1" if self.description == vocab.SAGITTAL_T1 else "T2"

    def slices(self) -> list[tuple[int, Plane]]:
        """(instance number, plane) of every image, in instance-number order."""
        pairs = [(n, p) for stack, nums in zip(self.stacks, self.instance_numbers) for p, n in zip(stack, nums)]
        return sorted(pairs, key=lambda pair: pair[0])

    def nearest_slice(self, point: np.ndarray) -> tuple[int, Plane, float]:
        """(instance number, plane, |distance| mm) of the image nearest a world point."""
        best = min(self.slices(), key=lambda pair: abs(pair[1].world_to_pixel(point)[2]))
        return best[0], best[1], float(abs(best[1].world_to_pixel(point)[2]))


def lookup_table(contrast: str, anatomy: an.Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Intensity (0..1) of every tissue label for one series, varied a little per series."""
    base = _T1 if contrast == "T1" else _T2
    lut = np.zeros(32)
    for label, value in base.items():
        lut[label] = value
    lut[10:17] = 0.62 if contrast == "T1" else 0.5
    for disc, label in an.DISC_LABEL.items():
        degen = anatomy.disc_degeneration[disc]
        lut[label] = 0.38 * (1 - 0.2 * degen) if contrast == "T1" else 0.88 * (1 - 0.5 * degen)
    return lut * rng.uniform(0.93, 1.07, size=lut.shape)


def _stack(centre: np.ndarray, normal: np.ndarray, row_hint: np.ndarray, count: int, spacing: float, px: float, size) -> list[Plane]:
    row_dir, col_dir = in_plane_axes(normal, row_hint)
    normal = np.cross(row_dir, col_dir)
    offsets = (np.arange(count) - (count - 1) / 2) * spacing
    return [plane_centred(centre + o * normal, row_dir, col_dir, (px, px), size) for o in offsets]


def _oblique(rng: np.random.Generator, degrees: float) -> np.ndarray:
    return rotation(*rng.uniform(-degrees, degrees, size=3))


def plan_sagittal(a: an.Anatomy, profile: PhantomProfile, rng: np.random.Generator) -> tuple[list[Plane], float]:
    """One sagittal stack across the canal midline; returns the planes and the slice thickness."""
    tilt = _oblique(rng, 2.5) @ a.pose_rotation
    normal = tilt @ np.array([-1.0, 0, 0])
    mid = a.landmarks.canal["l3_l4"] + normal * rng.uniform(-0.3, 0.3) * profile.sag_spacing_mm
    top, bottom = a.landmarks.vertebra["T12"], a.landmarks.vertebra["S1"]
    centre = (top + bottom) / 2 + tilt @ np.array([0, 10.0, 0]) + rng.uniform(-10, 10, 3) * np.array([0, 1, 1])
    centre = centre + normal * ((mid - centre) @ normal)
    px = profile.sag_fov_mm / profile.sag_size[1]
    planes = _stack(centre, normal, tilt @ np.array([0, 1.0, 0]), profile.sag_slices, profile.sag_spacing_mm, px, profile.sag_size)
    return planes, profile.sag_spacing_mm * 0.9


def plan_axial(a: an.Anatomy, profile: PhantomProfile, rng: np.random.Generator, per_disc: bool) -> tuple[list[list[Plane]], float]:
    """Axial T2 stacks: one continuous stack, or one stack per disc angled along it."""
    px = profile.axial_fov_mm / profile.axial_size[1]
    shift = rng.uniform(-8, 8, 3) * np.array([1, 1, 0])
    if per_disc:
        stacks = []
        for level in vocab.LEVELS:
            normal = _oblique(rng, 2.0) @ a.landmarks.disc_axis[level]
            centre = a.landmarks.canal[level] + shift - 12.0 * unit(np.cross(normal, [1.0, 0, 0]))
            stacks.append(
                _stack(
                    centre, normal, np.array([1.0, 0, 0]), profile.axial_slices_per_disc, profile.axial_spacing_mm, px, profile.axial_size
                )
            )
        return stacks, profile.axial_spacing_mm * 0.8
    tilt = _oblique(rng, 3.0) @ a.pose_rotation
    normal = tilt @ np.array([0, 0, 1.0])
    first, last = a.landmarks.disc["l1_l2"], a.landmarks.disc["l5_s1"]
    span = abs((first - last) @ normal) + 24.0
    count = int(np.ceil(span / profile.axial_spacing_mm)) + 1
    centre = (first + last) / 2 + a.pose_rotation @ np.array([0, 18.0, 0]) + shift
    return [
        _stack(centre, normal, tilt @ np.array([1.0, 0, 0]), count, profile.axial_spacing_mm, px, profile.axial_size)
    ], profile.axial_spacing_mm * 0.8


def assign_instance_numbers(plan: SeriesPlan, profile: PhantomProfile, rng: np.random.Generator) -> None:
    """Instance numbers like the real data's: not always in spatial order, not always from 1."""
    total = sum(len(s) for s in plan.stacks)
    start = int(rng.integers(2, 40)) if rng.random() < profile.p_instances_offset else 1
    numbers = np.arange(start, start + total)
    draw = rng.random()
    if draw < profile.p_instances_shuffled:
        numbers = rng.permutation(numbers)
    elif draw < profile.p_instances_shuffled + profile.p_instances_reversed:
        numbers = numbers[::-1]
    out, k = [], 0
    for stack in plan.stacks:
        out.append([int(n) for n in numbers[k : k + len(stack)]])
        k += len(stack)
    plan.instance_numbers = out


def render_slice(a: an.Anatomy, plane: Plane, lut: np.ndarray, thickness: float, subsamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free intensity (rows, cols) averaged over the slice thickness, and the centre labels."""
    centre = a.labels_on(plane)
    if subsamples <= 1:
        return lut[centre], centre
    offsets = np.linspace(-thickness / 2, thickness / 2, subsamples + 2)[1:-1]
    total = np.zeros(centre.shape)
    for off in offsets:
        total += lut[centre] if abs(off) < 1e-9 else lut[a.labels_on(plane.shifted(off))]
    return total / len(offsets), centre


def bias_field(shape: tuple[int, int], rng: np.random.Generator, strength: float = 0.18) -> np.ndarray:
    """A smooth multiplicative field (receive-coil shading), about 1 +- ``strength``."""
    ys, xs = np.mgrid[-1 : 1 : shape[0] * 1j, -1 : 1 : shape[1] * 1j]
    c = rng.normal(0, strength / 2, 5)
    return np.exp(c[0] * xs + c[1] * ys + c[2] * xs * ys + c[3] * xs**2 + c[4] * ys**2)


def to_pixels(image: np.ndarray, bias: np.ndarray, sigma: float, gain: float, rng: np.random.Generator) -> np.ndarray:
    """Bias, Rician noise and scaling to 12-bit unsigned integers."""
    signal = image * bias
    noisy = np.sqrt((signal + rng.normal(0, sigma, signal.shape)) ** 2 + rng.normal(0, sigma, signal.shape) ** 2)
    return np.clip(np.round(noisy * gain), 0, 4095).astype(np.uint16)
