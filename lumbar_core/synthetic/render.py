"""Series planning and MR-like rendering of the phantom.

Planning places the slices of each series like a technologist would: sagittal stacks across the
canal midline from the sacrum up to about T10-T12 (not always centred), axial T2 as one continuous
stack or as one stack per disc angled along the disc, each with a little obliquity, a shifted field
of view and a matrix, pixel size and slice spacing drawn from the profile's ranges. Rendering turns
tissue labels into MR-like intensities: the sequence's contrast (T1: fat and marrow bright, CSF dark;
T2: CSF bright; STIR and fat-saturated T2: fat dark), the scanner's contrast, a mottled marrow
texture, partial volume over the slice thickness, a smooth bias field, Rician noise and the scanner's
raw intensity scale and offset.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lumbar_core import vocab
from lumbar_core.geometry import Plane, in_plane_axes, plane_centred, rotation, unit
from lumbar_core.synthetic import anatomy as an
from lumbar_core.synthetic.profiles import PhantomProfile
from lumbar_core.synthetic.scanner import Scanner

SEQUENCES = ("T1", "T2", "STIR", "T2FS")
# intensity (0..1) of each tissue per sequence; marrow, annulus, nucleus and Modic change by kind below
_BASE = {
    "T1": {an.FAT: 0.95, an.MUSCLE: 0.33, an.BONE: 0.08, an.CSF: 0.12, an.FORAMEN_FAT: 0.95, an.NERVE: 0.3, an.LIGAMENT: 0.14},
    "T2": {an.FAT: 0.7, an.MUSCLE: 0.24, an.BONE: 0.06, an.CSF: 1.0, an.FORAMEN_FAT: 0.66, an.NERVE: 0.33, an.LIGAMENT: 0.1},
    "STIR": {an.FAT: 0.07, an.MUSCLE: 0.2, an.BONE: 0.05, an.CSF: 1.0, an.FORAMEN_FAT: 0.08, an.NERVE: 0.35, an.LIGAMENT: 0.08},
    "T2FS": {an.FAT: 0.12, an.MUSCLE: 0.22, an.BONE: 0.05, an.CSF: 1.0, an.FORAMEN_FAT: 0.12, an.NERVE: 0.33, an.LIGAMENT: 0.09},
}
_OTHER = {  # soft tissue, cord, cauda equina, bowel, vessel (flow void), kidney
    "T1": {an.SOFT: 0.4, an.CORD: 0.38, an.ROOTS: 0.3, an.BOWEL: 0.35, an.VESSEL: 0.05, an.KIDNEY: 0.36},
    "T2": {an.SOFT: 0.3, an.CORD: 0.42, an.ROOTS: 0.38, an.BOWEL: 0.55, an.VESSEL: 0.05, an.KIDNEY: 0.6},
    "STIR": {an.SOFT: 0.3, an.CORD: 0.4, an.ROOTS: 0.35, an.BOWEL: 0.6, an.VESSEL: 0.04, an.KIDNEY: 0.65},
    "T2FS": {an.SOFT: 0.3, an.CORD: 0.42, an.ROOTS: 0.38, an.BOWEL: 0.55, an.VESSEL: 0.05, an.KIDNEY: 0.6},
}
# marrow, annulus, nucleus (healthy, degenerated), Modic 1 (oedema), Modic 2 (fat)
_SPINE = {
    "T1": (0.68, 0.3, (0.38, 0.3), 0.3, 0.88),
    "T2": (0.5, 0.28, (0.9, 0.3), 0.75, 0.62),
    "STIR": (0.18, 0.25, (0.85, 0.28), 0.85, 0.1),
    "T2FS": (0.2, 0.26, (0.88, 0.3), 0.8, 0.15),
}
MARROW_TEXTURE = 0.12  # relative amplitude of the marrow's mottling
TEXTURE_WAVES = 16


@dataclass
class SeriesPlan:
    """One series: its type, sequence, stacks of planes (each in spatial order along its normal) and tags."""

    series_id: int
    description: str
    stacks: list[list[Plane]]
    thickness: float
    write_thickness: bool
    series_number: int = 1
    instance_numbers: list[list[int]] = field(default_factory=list)
    sequence: str = ""

    @property
    def contrast(self) -> str:
        """The sequence: ``T1``, ``T2``, ``STIR`` or ``T2FS``."""
        if self.sequence:
            return self.sequence
        return "T1" if self.description == vocab.SAGITTAL_T1 else "T2"

    def slices(self) -> list[tuple[int, Plane]]:
        """(instance number, plane) of every image, in instance-number order."""
        pairs = [(n, p) for stack, nums in zip(self.stacks, self.instance_numbers) for p, n in zip(stack, nums)]
        return sorted(pairs, key=lambda pair: pair[0])

    def nearest_slice(self, point: np.ndarray) -> tuple[int, Plane, float]:
        """(instance number, plane, |distance| mm) of the image nearest a world point."""
        best = min(self.slices(), key=lambda pair: abs(pair[1].world_to_pixel(point)[2]))
        return best[0], best[1], float(abs(best[1].world_to_pixel(point)[2]))


def sequence_of(description: str, scanner: Scanner) -> str:
    """The sequence a scanner acquires a series type with."""
    if description == vocab.SAGITTAL_T1:
        return "T1"
    if description == vocab.SAGITTAL_T2:
        return "STIR" if scanner.stir else "T2"
    return "T2FS" if scanner.fat_sat else "T2"


def lookup_table(sequence: str, anatomy: an.Anatomy, rng: np.random.Generator, contrast: float = 1.0) -> np.ndarray:
    """Intensity (0..1) of every tissue label for one series, varied a little per series."""
    lut = np.zeros(an.LABEL_COUNT)
    for label, value in {**_BASE[sequence], **_OTHER[sequence]}.items():
        lut[label] = value
    marrow, annulus, (nucleus, nucleus_degenerated), modic1, modic2 = _SPINE[sequence]
    lut[an.ARCH_MARROW] = marrow
    for name in an.ALL_VERTEBRAE:
        lut[an.BODY_LABEL[name]] = marrow
        lut[an.MODIC1_LABEL[name]] = modic1
        lut[an.MODIC2_LABEL[name]] = modic2
    for disc in an.ALL_DISCS:
        degen = anatomy.disc_degeneration.get(disc, 0.0)
        lut[an.DISC_LABEL[disc]] = annulus * (1 - 0.2 * degen)
        lut[an.NUCLEUS_LABEL[disc]] = nucleus + (nucleus_degenerated - nucleus) * degen
    return np.clip(lut * rng.uniform(0.93, 1.07, size=lut.shape), 0, None) ** contrast


def _fov(sizes, fov_mm, pixel_mm, rng: np.random.Generator) -> tuple[int, float]:
    """(matrix, pixel size mm) drawn from a profile's choices and ranges."""
    matrix = int(sizes[int(rng.integers(len(sizes)))])
    return matrix, float(np.clip(rng.uniform(*fov_mm) / matrix, *pixel_mm))


def _stack(centre: np.ndarray, normal: np.ndarray, row_hint: np.ndarray, count: int, spacing: float, px: float, size) -> list[Plane]:
    row_dir, col_dir = in_plane_axes(normal, row_hint)
    normal = np.cross(row_dir, col_dir)
    offsets = (np.arange(count) - (count - 1) / 2) * spacing
    return [plane_centred(centre + o * normal, row_dir, col_dir, (px, px), size) for o in offsets]


def _oblique(rng: np.random.Generator, degrees: float) -> np.ndarray:
    return rotation(*rng.uniform(-degrees, degrees, size=3))


SAGITTAL_COVERAGE_MM = 56.0  # left-right extent a sagittal stack needs: both foramina and their neighbours


def plan_sagittal(a: an.Anatomy, profile: PhantomProfile, rng: np.random.Generator) -> tuple[list[Plane], float]:
    """One sagittal stack across the canal midline; returns the planes and the slice thickness."""
    tilt = _oblique(rng, 2.5) @ a.pose_rotation
    normal = tilt @ np.array([-1.0, 0, 0])
    spacing = rng.uniform(*profile.sag_spacing_mm)
    count = max(int(rng.integers(profile.sag_slices[0], profile.sag_slices[1] + 1)), int(np.ceil(SAGITTAL_COVERAGE_MM / spacing)) + 1)
    mid = a.landmarks.canal["l3_l4"] + normal * rng.uniform(-0.3, 0.3) * spacing
    matrix, px = _fov(profile.sag_sizes, profile.sag_fov_mm, profile.sag_pixel_mm, rng)
    # the field of view holds the sacrum (its lower edge 10-45 mm below S1's centre) and reaches up
    # as far as it is tall (T10-T12 with the larger ones), centred front to back on the spine
    bottom, top = a.landmarks.vertebra["S1"], a.landmarks.vertebra["T11"]
    up = unit(top - bottom)
    centre = bottom + up * (matrix * px / 2 - rng.uniform(10, 45)) + tilt @ np.array([0, 10.0, 0])
    centre = centre + rng.uniform(-8, 8) * (tilt @ np.array([0, 1.0, 0]))
    centre = centre + normal * ((mid - centre) @ normal)
    planes = _stack(centre, normal, tilt @ np.array([0, 1.0, 0]), count, spacing, px, (matrix, matrix))
    return planes, spacing * 0.9


def plan_axial(a: an.Anatomy, profile: PhantomProfile, rng: np.random.Generator, per_disc: bool) -> tuple[list[list[Plane]], float]:
    """Axial T2 stacks: one continuous stack, or one stack per disc angled along it."""
    matrix, px = _fov(profile.axial_sizes, profile.axial_fov_mm, profile.axial_pixel_mm, rng)
    size = (matrix, matrix)
    spacing = rng.uniform(*profile.axial_spacing_mm)
    shift = rng.uniform(-8, 8, 3) * np.array([1, 1, 0])
    if per_disc:
        count = int(rng.integers(profile.axial_slices_per_disc[0], profile.axial_slices_per_disc[1] + 1))
        stacks = []
        for level in vocab.LEVELS:
            normal = _oblique(rng, 2.0) @ a.landmarks.disc_axis[level]
            centre = a.landmarks.canal[level] + shift - 12.0 * unit(np.cross(normal, [1.0, 0, 0]))
            stacks.append(_stack(centre, normal, np.array([1.0, 0, 0]), count, spacing, px, size))
        return stacks, spacing * 0.8
    tilt = _oblique(rng, 3.0) @ a.pose_rotation
    normal = tilt @ np.array([0, 0, 1.0])
    first, last = a.landmarks.disc["l1_l2"], a.landmarks.disc["l5_s1"]
    span = abs((first - last) @ normal) + 24.0
    count = int(np.ceil(span / spacing)) + 1
    centre = (first + last) / 2 + a.pose_rotation @ np.array([0, 18.0, 0]) + shift
    return [_stack(centre, normal, tilt @ np.array([1.0, 0, 0]), count, spacing, px, size)], spacing * 0.8


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


def _texture(a: an.Anatomy, points: np.ndarray) -> np.ndarray:
    """A mottled field (mean 1) at world points (..., 3), the same in every series of the study."""
    rng = np.random.default_rng(a.texture_seed)
    waves = rng.normal(size=(TEXTURE_WAVES, 3))
    waves *= (2 * np.pi / rng.uniform(2.5, 8.0, TEXTURE_WAVES) / np.linalg.norm(waves, axis=1))[:, None]
    phases = rng.uniform(0, 2 * np.pi, TEXTURE_WAVES)
    field = np.cos(points @ waves.T + phases).sum(axis=-1) * np.sqrt(2 / TEXTURE_WAVES)
    return 1 + MARROW_TEXTURE * np.clip(field, -2.5, 2.5)


MARROW_LABELS = np.array(sorted({an.ARCH_MARROW, *an.BODY_LABEL.values(), *an.MODIC1_LABEL.values(), *an.MODIC2_LABEL.values()}))


def _shade(a: an.Anatomy, plane: Plane, labels: np.ndarray, lut: np.ndarray) -> np.ndarray:
    image = lut[labels]
    marrow = np.isin(labels, MARROW_LABELS)
    if marrow.any():
        ys, xs = np.nonzero(marrow)
        image[marrow] *= _texture(a, plane.pixel_to_world(xs, ys))
    return image


def render_slice(a: an.Anatomy, plane: Plane, lut: np.ndarray, thickness: float, subsamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free intensity (rows, cols) averaged over the slice thickness, and the centre labels."""
    centre = a.labels_on(plane)
    if subsamples <= 1:
        return _shade(a, plane, centre, lut), centre
    offsets = np.linspace(-thickness / 2, thickness / 2, subsamples + 2)[1:-1]
    total = np.zeros(centre.shape)
    for off in offsets:
        shifted = plane if abs(off) < 1e-9 else plane.shifted(off)
        total += _shade(a, shifted, centre if shifted is plane else a.labels_on(shifted), lut)
    return total / len(offsets), centre


def bias_field(shape: tuple[int, int], rng: np.random.Generator, strength: float = 0.18) -> np.ndarray:
    """A smooth multiplicative field (receive-coil shading), about 1 +- ``strength``."""
    ys, xs = np.mgrid[-1 : 1 : shape[0] * 1j, -1 : 1 : shape[1] * 1j]
    c = rng.normal(0, strength / 2, 5)
    return np.exp(c[0] * xs + c[1] * ys + c[2] * xs * ys + c[3] * xs**2 + c[4] * ys**2)


def to_pixels(image: np.ndarray, bias: np.ndarray, sigma: float, gain: float, rng: np.random.Generator, offset: float = 0.0) -> np.ndarray:
    """Bias, Rician noise, the scanner's scale and offset, as unsigned 16-bit integers."""
    signal = image * bias
    noisy = np.sqrt((signal + rng.normal(0, sigma, signal.shape)) ** 2 + rng.normal(0, sigma, signal.shape) ** 2)
    return np.clip(np.round(noisy * gain + offset), 0, 65535).astype(np.uint16)
