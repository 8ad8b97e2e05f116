"""The phantom's anatomy: T12-S1 in patient coordinates (LPS mm), made of simple solids.

A study's spine is built in a canonical frame (x patient left, y posterior, z superior, origin
near L3), then placed in the scanner by a pose (small rotation + shift). Each structure is a
:class:`Solid` (superellipsoid or elliptic cylinder in its own frame); the tissue at a point is the
label of the last solid, in drawing order, that contains it. Degeneration changes the solids:
spinal canal stenosis grows a disc bulge and the ligamentum flavum into the canal at the disc;
foraminal narrowing shrinks the foraminal fat (dark tissue takes its place); subarticular stenosis
grows the facet into the lateral recess of its side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lumbar_core import vocab
from lumbar_core.geometry import Plane, rotation

# Tissue labels of the truth masks.
AIR, FAT, MUSCLE, BONE, CSF, FORAMEN_FAT, NERVE, LIGAMENT, SOFT = 0, 1, 2, 3, 4, 5, 6, 7, 9
VERTEBRAE: tuple[str, ...] = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")
DISCS: tuple[str, ...] = ("T12_L1", "l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
BODY_LABEL = {name: 10 + i for i, name in enumerate(VERTEBRAE)}  # 10 T12 ... 16 S1
DISC_LABEL = {name: 20 + i for i, name in enumerate(DISCS)}  # 20 T12/L1 ... 25 L5/S1
TISSUE_NAMES = {AIR: "air", FAT: "fat", MUSCLE: "muscle", BONE: "bone", CSF: "csf", FORAMEN_FAT: "foraminal fat"}
TISSUE_NAMES.update({NERVE: "nerve", LIGAMENT: "ligament", SOFT: "soft tissue"})
TISSUE_NAMES.update({v: f"body {k}" for k, v in BODY_LABEL.items()})
TISSUE_NAMES.update({v: f"disc {k}" for k, v in DISC_LABEL.items()})


@dataclass(frozen=True)
class Solid:
    """A labelled solid: superellipsoid (``exponent``) or elliptic cylinder along its first axis.

    Attributes:
        centre: world centre (3,), mm.
        axes: (3, 3) world rotation whose columns are the solid's axes u, v, w.
        half: half sizes along u, v, w, mm.
        label: tissue label written where the solid is.
        exponent: superellipsoid exponent (2 = ellipsoid, larger = boxier); 0 = cylinder along u.
    """

    centre: np.ndarray
    axes: np.ndarray
    half: np.ndarray
    label: int
    exponent: float = 2.0

    @property
    def radius(self) -> float:
        """Radius of a ball that holds the solid."""
        return float(np.linalg.norm(self.half))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Boolean mask of world points (..., 3) inside the solid."""
        q = np.abs((points - self.centre) @ self.axes) / self.half
        if self.exponent == 0:
            return (q[..., 0] <= 1) & (q[..., 1] ** 2 + q[..., 2] ** 2 <= 1)
        e = self.exponent
        return q[..., 0] ** e + q[..., 1] ** e + q[..., 2] ** e <= 1


@dataclass
class Landmarks:
    """World positions (mm) the labels point at, per disc level (``l1_l2`` ... ``l5_s1``)."""

    disc: dict[str, np.ndarray] = field(default_factory=dict)
    canal: dict[str, np.ndarray] = field(default_factory=dict)
    foramen: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    recess: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    disc_axis: dict[str, np.ndarray] = field(default_factory=dict)
    vertebra: dict[str, np.ndarray] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form (side keys as ``left``/``right``)."""

        def lst(v: np.ndarray) -> list[float]:
            return [round(float(a), 4) for a in v]

        return {
            "disc_centre": {k: lst(v) for k, v in self.disc.items()},
            "disc_axis": {k: lst(v) for k, v in self.disc_axis.items()},
            "canal_centre": {k: lst(v) for k, v in self.canal.items()},
            "foramen_centre": {f"{s}_{k}": lst(v) for (s, k), v in self.foramen.items()},
            "recess_centre": {f"{s}_{k}": lst(v) for (s, k), v in self.recess.items()},
            "vertebra_centre": {k: lst(v) for k, v in self.vertebra.items()},
        }


@dataclass
class Anatomy:
    """One study's solids in drawing order, its landmarks, and per-disc T2 darkening (0..1)."""

    solids: list[Solid]
    landmarks: Landmarks
    disc_degeneration: dict[str, float]
    pose_rotation: np.ndarray
    pose_shift: np.ndarray

    def to_world(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical-frame points -> world (pose applied)."""
        return np.asarray(canonical) @ self.pose_rotation.T + self.pose_shift

    def labels_on(self, plane: Plane) -> np.ndarray:
        """Tissue label (rows, cols) uint8 of every pixel centre of a plane."""
        out = np.zeros((plane.rows, plane.cols), dtype=np.uint8)
        normal = plane.normal
        for solid in self.solids:
            r = solid.radius
            rel = solid.centre - plane.ipp
            if abs(rel @ normal) > r:
                continue
            c0, r0 = rel @ plane.row_dir / plane.col_spacing, rel @ plane.col_dir / plane.row_spacing
            dc, dr = r / plane.col_spacing, r / plane.row_spacing
            x0, x1 = max(0, int(np.floor(c0 - dc))), min(plane.cols, int(np.ceil(c0 + dc)) + 1)
            y0, y1 = max(0, int(np.floor(r0 - dr))), min(plane.rows, int(np.ceil(r0 + dr)) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            ys, xs = np.mgrid[y0:y1, x0:x1]
            inside = solid.contains(plane.pixel_to_world(xs, ys))
            out[y0:y1, x0:x1][inside] = solid.label
        return out


def _segment_axes(phi: float) -> np.ndarray:
    """Columns u (up the spine), v (posterior, in the sagittal plane), w (+x) for tilt ``phi`` (rad)."""
    u = np.array([0.0, -np.sin(phi), np.cos(phi)])
    v = np.array([0.0, np.cos(phi), np.sin(phi)])
    return np.stack([u, v, np.array([1.0, 0.0, 0.0])], axis=1)


def build_anatomy(rng: np.random.Generator, degrees: dict[tuple[str, str], float]) -> Anatomy:
    """Sample one study's spine.

    Args:
        rng: the study's random generator.
        degrees: latent degree in [0, 1] per (condition, level); grades change at 1/3 and 2/3.
    """
    pose_r = rotation(rng.uniform(-4, 4), rng.uniform(-3, 3), rng.uniform(-4, 4))
    pose_t = np.array([rng.uniform(-6, 6), rng.uniform(-12, 12), rng.uniform(-15, 15)])
    scale = rng.uniform(0.92, 1.08)
    body_h = np.array([24, 25, 26, 27, 27, 26, 34.0]) * scale * rng.uniform(0.96, 1.04, 7)
    body_d = np.array([29, 30, 32, 33, 34, 35, 38.0]) * scale
    body_w = np.array([40, 42, 44, 46, 48, 50, 52.0]) * scale
    disc_h = np.array([7, 8.5, 9.5, 10.5, 11, 10.0]) * scale
    canal_ap = rng.uniform(14, 18) * scale
    canal_w = rng.uniform(21, 25) * scale

    def deg(condition: str, disc: str) -> float:
        return degrees.get((condition, disc), 0.0) if disc in vocab.LEVELS else 0.0

    disc_degen = {
        d: max(deg("spinal_canal_stenosis", d), deg("left_neural_foraminal_narrowing", d), deg("right_neural_foraminal_narrowing", d))
        for d in DISCS
    }
    disc_h = disc_h * np.array([1 - 0.3 * disc_degen[d] for d in DISCS])

    # Walk down the spine from the top of T12: segments alternate vertebra, disc, ..., S1.
    heights = []
    for i in range(7):
        heights.append(("vertebra", VERTEBRAE[i], body_h[i]))
        if i < 6:
            heights.append(("disc", DISCS[i], disc_h[i]))
    phi_top, phi_bottom = np.radians(rng.uniform(-18, -8)), np.radians(rng.uniform(22, 34))
    total = sum(h for _, _, h in heights)
    point = np.zeros(3)
    travelled = 0.0
    segments = []
    for kind, name, h in heights:
        phi = phi_top + (phi_bottom - phi_top) * (travelled + h / 2) / total
        if name == "S1":
            phi += np.radians(12)
        axes = _segment_axes(phi)
        centre = point - axes[:, 0] * h / 2
        segments.append((kind, name, h, centre, axes))
        point = point - axes[:, 0] * h
        travelled += h
    # centre the curve on L3 in the canonical frame
    l3 = next(c for k, n, _, c, _ in segments if n == "L3")
    segments = [(k, n, h, c - l3, a) for k, n, h, c, a in segments]

    R, t = pose_r, pose_t

    def solid(centre, axes, half, label, exponent=2.0) -> Solid:
        return Solid(R @ centre + t, R @ axes, np.asarray(half, dtype=float), label, exponent)

    z_axes = np.stack([[0, 0, 1.0], [0, 1.0, 0], [1.0, 0, 0]], axis=1)  # cylinders along z
    trunk_y = 35.0 * scale
    solids = [
        solid(np.array([0, trunk_y, -40.0]), z_axes, [260, 135 * scale, 175 * scale], FAT, 0),
        solid(np.array([0, trunk_y - 8, -40.0]), z_axes, [260, 120 * scale, 160 * scale], SOFT, 0),
    ]
    for side in (-1, 1):
        solids.append(solid(np.array([side * 38 * scale, 75 * scale, -40.0]), z_axes, [260, 32 * scale, 30 * scale], MUSCLE, 0))
        solids.append(solid(np.array([side * 45 * scale, -12 * scale, -70.0]), z_axes, [110, 20 * scale, 18 * scale], MUSCLE, 0))

    landmarks = Landmarks()
    bodies, discs, canal, late = [], [], [], []
    gap = 1.5
    for idx, (kind, name, h, centre, axes) in enumerate(segments):
        u, v, w = axes[:, 0], axes[:, 1], axes[:, 2]
        i = VERTEBRAE.index(name) if kind == "vertebra" else DISCS.index(name)
        depth = body_d[i] if kind == "vertebra" else (body_d[i] + body_d[i + 1]) / 2
        width = body_w[i] if kind == "vertebra" else (body_w[i] + body_w[i + 1]) / 2
        canal_c = centre + v * (depth / 2 + gap + canal_ap / 2)
        if kind == "vertebra":
            landmarks.vertebra[name] = R @ centre + t
            bodies.append(solid(centre, axes, [h / 2, depth / 2, width / 2], BODY_LABEL[name], 4))
            if name != "S1":
                arch_h = h * 0.42
                solids.append(solid(centre + v * (depth / 2 + gap + canal_ap + 5), axes, [arch_h, 6, canal_w / 2 + 9], BONE, 4))
                solids.append(solid(centre + v * (depth / 2 + gap + canal_ap + 22), axes, [h * 0.3, 14, 4], BONE, 2))
                for side in (-1, 1):
                    solids.append(
                        solid(canal_c + w * side * (canal_w / 2 + 4) + u * h * 0.1, axes, [h * 0.22, canal_ap / 2 + 3, 4.5], BONE, 4)
                    )
            else:
                solids.append(solid(centre + v * (depth / 2 + gap + canal_ap + 4), axes, [h / 2, 6, canal_w / 2 + 10], BONE, 4))
            canal.append(solid(canal_c, axes, [h / 2 + 1, canal_ap / 2, canal_w / 2], CSF, 0))
            continue
        # a disc level
        discs.append(solid(centre, axes, [h / 2, depth / 2 * 1.02, width / 2 * 1.02], DISC_LABEL[name], 3))
        canal.append(solid(canal_c, axes, [h / 2 + 1, canal_ap / 2, canal_w / 2], CSF, 0))
        if name not in vocab.LEVELS:
            continue
        up = segments[idx - 1][2]  # height of the vertebra above
        spinal = deg("spinal_canal_stenosis", name)
        late.append(solid(centre + v * depth / 2, axes, [h / 2 * 0.95, 0.5 + 8.0 * spinal, canal_w / 2 * 0.8], DISC_LABEL[name], 2))
        late.append(solid(canal_c + v * canal_ap / 2, axes, [h / 2 + 3, 1.0 + 5.0 * spinal, canal_w / 2 * 0.75], LIGAMENT, 2))
        landmarks.disc[name] = R @ centre + t
        landmarks.disc_axis[name] = R @ u
        landmarks.canal[name] = R @ (canal_c + v * (1.5 * spinal - 0.5)) + t
        for side_name, side in (("left", 1), ("right", -1)):
            foraminal = deg(f"{side_name}_neural_foraminal_narrowing", name)
            sub = deg(f"{side_name}_subarticular_stenosis", name)
            fc = centre + u * (h / 2 + up * 0.18) + v * (depth / 2 + 5.5) + w * side * (canal_w / 2 + 5)
            shrink = 1 - 0.8 * foraminal**1.3
            solids.append(solid(fc, axes, [9.5, 6.5, 6.0], LIGAMENT, 2))
            solids.append(solid(fc - u * 1.5 * foraminal, axes, [8.5 * shrink, 5.0 * shrink, 5.0], FORAMEN_FAT, 2))
            solids.append(solid(fc + u * 3.5, axes, [2.2, 2.2, 3.5], NERVE, 2))
            facet_c = centre + v * (depth / 2 + gap + canal_ap + 3) + w * side * (canal_w / 2 + 3)
            solids.append(solid(facet_c, axes, [h / 2 + 6, 6.5, 6.5], BONE, 2))
            recess = canal_c + v * canal_ap * 0.15 + w * side * (canal_w / 2 - 3.5)
            late.append(
                solid(recess + v * canal_ap * 0.35 + w * side * 3.5, axes, [h / 2 + 3, 2.0 + 9.0 * sub, 2.0 + 9.0 * sub], LIGAMENT, 2)
            )
            landmarks.foramen[(side_name, name)] = R @ fc + t
            landmarks.recess[(side_name, name)] = R @ (recess - w * side * 2.0 * sub) + t
    solids += bodies + discs + canal + late
    return Anatomy(solids, landmarks, {d: disc_degen[d] for d in DISCS}, pose_r, pose_t)
