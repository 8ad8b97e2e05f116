"""The phantom's anatomy: a lower trunk in patient coordinates (LPS mm), made of simple solids.

A study's body is built in a canonical frame (x patient left, y posterior, z superior, origin at
the L3 body), then placed in the scanner by a pose (small rotation + shift). Each structure is a
:class:`Solid` (superellipsoid or elliptic cylinder in its own frame); the tissue at a point is the
label of the last solid, in drawing order, that contains it. Drawn in order:

- the trunk: skin and subcutaneous fat, the abdominal and back wall muscles, intra-abdominal fat,
  bowel loops, the kidneys at the upper lumbar levels, the aorta (to its bifurcation at L4) and the
  inferior vena cava, the psoas muscles beside the lumbar bodies and the paraspinal muscles;
- the spine from T10 to the sacrum (with a lumbarised sixth lumbar vertebra in a few studies):
  vertebral bodies with a cortical rim and endplates around the marrow (Modic-like marrow change
  next to some degenerated discs), pedicles, laminae, spinous and transverse processes, facets,
  ribs cut at T10-T12, discs with annulus and nucleus, the dural sac with the spinal cord ending in
  the conus at about L1 and the cauda equina below, the ligamentum flavum, the neural foramina with
  their fat and exiting roots, the lateral recesses.

Studies differ in size, lordosis, a scoliosis of a few degrees, fat thickness, organ positions and
age-like disc degeneration spread over the levels. Degeneration changes the solids: spinal canal
stenosis grows a disc bulge and the ligamentum flavum into the canal at the disc; foraminal
narrowing shrinks the foraminal fat; subarticular stenosis grows the facet into the lateral recess
of its side; degenerated discs are lower and their nucleus darker on T2.

Levels are named as readers count them, from the top (T12 bears the last rib): ``l5_s1`` is the
disc below L5, which in a study with a sixth lumbar vertebra is L5/L6, with L6/S1 below it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from lumbar_core import vocab
from lumbar_core.geometry import Plane, rotation

# Tissue labels of the truth masks (uint8).
AIR, FAT, MUSCLE, BONE, CSF, FORAMEN_FAT, NERVE, LIGAMENT, SOFT = 0, 1, 2, 3, 4, 5, 6, 7, 9
CORD, ROOTS, BOWEL, VESSEL, KIDNEY, ARCH_MARROW = 40, 41, 42, 43, 44, 45
ALL_VERTEBRAE: tuple[str, ...] = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "L6", "S1")
VERTEBRAE = ALL_VERTEBRAE  # kept for readers of the truth masks
ALL_DISCS: tuple[str, ...] = ("T10_T11", "T11_T12", "T12_L1", *vocab.LEVELS, "L6_S1")
DISCS = ALL_DISCS
BODY_LABEL = {name: 10 + i for i, name in enumerate(ALL_VERTEBRAE)}  # 10 T10 ... 19 S1 (marrow)
DISC_LABEL = {name: 20 + i for i, name in enumerate(ALL_DISCS)}  # 20 T10/T11 ... 28 L6/S1 (annulus)
NUCLEUS_LABEL = {name: 30 + i for i, name in enumerate(ALL_DISCS)}  # 30 ... 38
MODIC1_LABEL = {name: 50 + i for i, name in enumerate(ALL_VERTEBRAE)}  # marrow oedema next to an endplate
MODIC2_LABEL = {name: 60 + i for i, name in enumerate(ALL_VERTEBRAE)}  # fatty marrow next to an endplate
LABEL_COUNT = 70
CANAL_TISSUES = (CSF, CORD, ROOTS)
TISSUE_NAMES = {AIR: "air", FAT: "fat", MUSCLE: "muscle", BONE: "cortical bone", CSF: "csf", FORAMEN_FAT: "foraminal fat"}
TISSUE_NAMES.update({NERVE: "nerve", LIGAMENT: "ligament", SOFT: "soft tissue", CORD: "spinal cord", ROOTS: "cauda equina"})
TISSUE_NAMES.update({BOWEL: "bowel", VESSEL: "vessel", KIDNEY: "kidney", ARCH_MARROW: "marrow of the posterior elements"})
TISSUE_NAMES.update({v: f"marrow {k}" for k, v in BODY_LABEL.items()})
TISSUE_NAMES.update({v: f"annulus {k}" for k, v in DISC_LABEL.items()})
TISSUE_NAMES.update({v: f"nucleus {k}" for k, v in NUCLEUS_LABEL.items()})
TISSUE_NAMES.update({v: f"modic 1 {k}" for k, v in MODIC1_LABEL.items()})
TISSUE_NAMES.update({v: f"modic 2 {k}" for k, v in MODIC2_LABEL.items()})

# body height, depth (AP), width, and the height of the disc below, per vertebra (mm, before scaling)
_SIZES = {
    "T10": (20, 26, 34, 5.0),
    "T11": (21, 27, 36, 6.0),
    "T12": (23, 29, 40, 7.0),
    "L1": (25, 30, 42, 8.5),
    "L2": (26, 32, 44, 9.5),
    "L3": (27, 33, 46, 10.5),
    "L4": (27, 34, 48, 11.0),
    "L5": (26, 35, 50, 10.0),
    "L6": (25, 35, 50, 8.0),
    "S1": (34, 38, 52, 0.0),
}


def vertebra_of_body(label: int) -> str | None:
    """The vertebra whose marrow (or Modic change) a tissue label is, if any."""
    for table in (BODY_LABEL, MODIC1_LABEL, MODIC2_LABEL):
        for name, value in table.items():
            if value == label:
                return name
    return None


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
        if self.exponent == 2:
            q = q * q
            return q[..., 0] + q[..., 1] + q[..., 2] <= 1
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
    """One study's solids in drawing order, its landmarks and what rendering needs besides the labels.

    Attributes:
        vertebrae: the study's vertebrae from the top (``L6`` only in a transitional study).
        discs: the discs between them, from the top.
        disc_degeneration: per disc, 0..1 (T2 darkening of the nucleus, loss of height).
        texture_seed: seed of the marrow's mottled texture (one field per study, in world mm).
        transitional: the study has a sixth lumbar vertebra.
    """

    solids: list[Solid]
    landmarks: Landmarks
    disc_degeneration: dict[str, float]
    pose_rotation: np.ndarray
    pose_shift: np.ndarray
    vertebrae: list[str] = field(default_factory=list)
    discs: list[str] = field(default_factory=list)
    texture_seed: int = 0
    transitional: bool = False

    def to_world(self, canonical: np.ndarray) -> np.ndarray:
        """Canonical-frame points -> world (pose applied)."""
        return np.asarray(canonical) @ self.pose_rotation.T + self.pose_shift

    @cached_property
    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """Every solid's centre (S, 3) and bounding-ball radius (S,), for culling solids a plane misses."""
        return np.array([s.centre for s in self.solids]), np.array([s.radius for s in self.solids])

    def labels_on(self, plane: Plane) -> np.ndarray:
        """Tissue label (rows, cols) uint8 of every pixel centre of a plane."""
        out = np.zeros((plane.rows, plane.cols), dtype=np.uint8)
        ys, xs = np.mgrid[0 : plane.rows, 0 : plane.cols]
        world = plane.pixel_to_world(xs, ys)  # (rows, cols, 3), once per plane
        centres, radii = self._bounds
        near = np.abs((centres - plane.ipp) @ plane.normal) <= radii
        for solid, r, hit in zip(self.solids, radii, near):
            if not hit:
                continue
            rel = solid.centre - plane.ipp
            c0, r0 = rel @ plane.row_dir / plane.col_spacing, rel @ plane.col_dir / plane.row_spacing
            dc, dr = r / plane.col_spacing, r / plane.row_spacing
            x0, x1 = max(0, int(np.floor(c0 - dc))), min(plane.cols, int(np.ceil(c0 + dc)) + 1)
            y0, y1 = max(0, int(np.floor(r0 - dr))), min(plane.rows, int(np.ceil(r0 + dr)) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            inside = solid.contains(world[y0:y1, x0:x1])
            out[y0:y1, x0:x1][inside] = solid.label
        return out


def _rodrigues(axis: np.ndarray, angle: float) -> np.ndarray:
    axis = axis / np.linalg.norm(axis)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


def _segment_axes(phi: float, psi: float = 0.0) -> np.ndarray:
    """Columns u (up the spine), v (posterior), w (patient left) for sagittal tilt ``phi`` and lateral tilt ``psi`` (rad)."""
    u = np.array([0.0, -np.sin(phi), np.cos(phi)])
    v = np.array([0.0, np.cos(phi), np.sin(phi)])
    base = np.stack([u, v, np.array([1.0, 0.0, 0.0])], axis=1)
    return _rodrigues(v, psi) @ base if psi else base


def _along(direction: np.ndarray) -> np.ndarray:
    """Axes whose first column is ``direction`` (for a cylinder along it)."""
    u = direction / np.linalg.norm(direction)
    helper = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    v = np.cross(helper, u)
    v /= np.linalg.norm(v)
    return np.stack([u, v, np.cross(u, v)], axis=1)


Z_AXES = np.stack([[0, 0, 1.0], [0, 1.0, 0], [1.0, 0, 0]], axis=1)  # cylinders along z


def _disc_name(upper: str, lower: str) -> str:
    if upper in ("L1", "L2", "L3", "L4", "L5"):
        return vocab.LEVELS[("L1", "L2", "L3", "L4", "L5").index(upper)]
    return f"{upper}_{lower}"


def build_anatomy(rng: np.random.Generator, degrees: dict[tuple[str, str], float], *, p_transitional: float = 0.0) -> Anatomy:
    """Sample one study's lower trunk.

    Args:
        rng: the study's random generator.
        degrees: latent degree in [0, 1] per (condition, level); grades change at 1/3 and 2/3.
        p_transitional: probability of a sixth lumbar vertebra.
    """
    pose_r = rotation(rng.uniform(-4, 4), rng.uniform(-3, 3), rng.uniform(-4, 4))
    pose_t = np.array([rng.uniform(-6, 6), rng.uniform(-12, 12), rng.uniform(-15, 15)])
    scale = rng.uniform(0.9, 1.1)
    transitional = bool(rng.random() < p_transitional)
    names = [v for v in ALL_VERTEBRAE if v != "L6" or transitional]
    discs = [_disc_name(a, b) for a, b in itertools.pairwise(names)]
    jitter = rng.uniform(0.95, 1.05, len(names))
    size = {n: np.array(_SIZES[n][:3]) * scale * np.array([j, 1, 1]) for n, j in zip(names, jitter)}
    canal_ap = rng.uniform(14, 18) * scale
    canal_w = rng.uniform(21, 25) * scale

    def deg(condition: str, disc: str) -> float:
        return degrees.get((condition, disc), 0.0) if disc in vocab.LEVELS else 0.0

    # degeneration: what the grades imply, plus age-like wear that grows toward the lower levels
    age = rng.beta(2.0, 3.0)
    disc_degen = {}
    for i, d in enumerate(discs):
        graded = max(deg("spinal_canal_stenosis", d), deg("left_neural_foraminal_narrowing", d), deg("right_neural_foraminal_narrowing", d))
        wear = age * (0.3 + 0.7 * i / max(1, len(discs) - 1)) * rng.uniform(0.3, 1.0)
        disc_degen[d] = float(min(1.0, max(graded, 0.8 * wear)))
    disc_h = {d: _SIZES[a][3] * scale * (1 - 0.3 * disc_degen[d]) for a, d in zip(names, discs)}

    # Walk down the spine from the top of T10: vertebra, disc, ..., sacrum.
    pieces = []
    for i, name in enumerate(names):
        pieces.append(("vertebra", name, size[name][0]))
        if i < len(discs):
            pieces.append(("disc", discs[i], disc_h[discs[i]]))
    phi_top, phi_bottom = np.radians(rng.uniform(-22, -10)), np.radians(rng.uniform(22, 34))
    scoliosis, waves, phase = np.radians(rng.uniform(0, 5)), rng.uniform(0.6, 1.2), rng.uniform(0, 2 * np.pi)
    total = sum(h for _, _, h in pieces)
    point, travelled, segments = np.zeros(3), 0.0, []
    for kind, name, h in pieces:
        t = (travelled + h / 2) / total
        phi = phi_top + (phi_bottom - phi_top) * t + (np.radians(12) if name == "S1" else 0.0)
        psi = scoliosis * np.sin(2 * np.pi * waves * t + phase)
        axes = _segment_axes(phi, psi)
        centre = point - axes[:, 0] * h / 2
        segments.append((kind, name, h, centre, axes))
        point = point - axes[:, 0] * h
        travelled += h
    l3 = next(c for k, n, _, c, _ in segments if n == "L3")
    segments = [(k, n, h, c - l3, a) for k, n, h, c, a in segments]
    centre_of = {n: c for k, n, _, c, _ in segments if k == "vertebra"}

    R, t = pose_r, pose_t

    def solid(centre, axes, half, label, exponent=2.0) -> Solid:
        return Solid(R @ centre + t, R @ axes, np.asarray(half, dtype=float), label, exponent)

    solids = _trunk(rng, scale, centre_of, size, solid)
    landmarks = Landmarks()
    bodies, disc_solids, canal, late = [], [], [], []
    gap = 1.5
    conus = centre_of["L1"][2] - rng.uniform(0.0, 0.6) * size["L1"][0]
    modic = {}
    for d in discs:  # Modic-like change in the endplates of some degenerated discs
        if disc_degen[d] > 0.5 and rng.random() < 0.35:
            modic[d] = int(rng.integers(1, 3))
    for idx, (kind, name, h, centre, axes) in enumerate(segments):
        u, v, w = axes[:, 0], axes[:, 1], axes[:, 2]
        if kind == "vertebra":
            depth, width = size[name][1], size[name][2]
        else:
            above, below = segments[idx - 1][1], segments[idx + 1][1]
            depth, width = (size[above][1] + size[below][1]) / 2, (size[above][2] + size[below][2]) / 2
        canal_c = centre + v * (depth / 2 + gap + canal_ap / 2)
        canal_scale = 0.8 if name == "S1" else 1.0
        canal.append(solid(canal_c, axes, [h / 2 + 1, canal_ap / 2 * canal_scale, canal_w / 2 * canal_scale], CSF, 0))
        if canal_c[2] > conus:  # the cord down to the conus, else the cauda equina
            radius = 4.5 * scale if canal_c[2] > conus + 15 else 3.0 * scale
            canal.append(solid(canal_c - v * 1.0, axes, [h / 2 + 1, radius * 0.8, radius], CORD, 0))
        elif name != "S1":
            for side in (-1, 1):
                for k, (dv, dw) in enumerate(((1.5, 3.0), (3.5, 6.0))):
                    canal.append(solid(canal_c + v * dv + w * side * dw, axes, [h / 2 + 1, 0.9, 0.9 + 0.2 * k], ROOTS, 0))
        if kind == "vertebra":
            landmarks.vertebra[name] = R @ centre + t
            half = np.array([h / 2, depth / 2, width / 2])
            bodies.append(solid(centre, axes, half + 1.3, BONE, 4))  # cortex and endplates
            bodies.append(solid(centre, axes, half, BODY_LABEL[name], 4))
            for sign, disc in ((1, discs[idx // 2 - 1] if idx > 0 else None), (-1, discs[idx // 2] if idx // 2 < len(discs) else None)):
                if disc in modic:
                    table = MODIC1_LABEL if modic[disc] == 1 else MODIC2_LABEL
                    bodies.append(solid(centre + u * sign * h * 0.36, axes, [h * 0.16, depth * 0.38, width * 0.36], table[name], 2))
            if name == "S1":
                solids.append(solid(centre + v * (depth / 2 + gap + canal_ap + 4), axes, [h / 2, 6, canal_w / 2 + 10], BONE, 4))
                # the rest of the sacrum, below and behind S1
                down = centre - u * (h * 0.9) + v * depth * 0.25
                solids.append(solid(down, axes, [h * 0.55, depth * 0.38, width * 0.42], BONE, 3))
                continue
            _posterior_elements(solids, solid, name, centre, axes, h, depth, canal_c, canal_ap, canal_w, gap, scale)
            continue
        # a disc
        half = np.array([h / 2, depth / 2 * 1.02, width / 2 * 1.02])
        disc_solids.append(solid(centre, axes, half, DISC_LABEL[name], 3))
        disc_solids.append(solid(centre - v * depth * 0.05, axes, half * np.array([0.7, 0.55, 0.6]), NUCLEUS_LABEL[name], 2))
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
    solids += bodies + disc_solids + canal + late
    return Anatomy(
        solids,
        landmarks,
        disc_degen,
        pose_r,
        pose_t,
        vertebrae=names,
        discs=discs,
        texture_seed=int(rng.integers(0, 2**31 - 1)),
        transitional=transitional,
    )


def _bone(solids, solid, centre, axes, half, exponent) -> None:
    """A bone with a cortex around its marrow."""
    half = np.asarray(half, dtype=float)
    solids.append(solid(centre, axes, half, BONE, exponent))
    solids.append(solid(centre, axes, np.maximum(half - 1.3, 0.6), ARCH_MARROW, exponent))


def _posterior_elements(solids, solid, name, centre, axes, h, depth, canal_c, canal_ap, canal_w, gap, scale) -> None:
    """Pedicles, lamina, spinous and transverse processes (ribs on T10-T12) of one vertebra."""
    u, v, w = axes[:, 0], axes[:, 1], axes[:, 2]
    _bone(solids, solid, centre + v * (depth / 2 + gap + canal_ap + 5), axes, [h * 0.42, 6, canal_w / 2 + 9], 4)  # lamina
    spinous = centre + v * (depth / 2 + gap + canal_ap + 24) - u * h * 0.2
    _bone(solids, solid, spinous, axes, [h * 0.32, 16, 3.5], 2)
    thoracic = name.startswith("T")
    for side in (-1, 1):
        pedicle = canal_c + w * side * (canal_w / 2 + 4) + u * h * 0.1
        _bone(solids, solid, pedicle, axes, [h * 0.22, canal_ap / 2 + 3, 4.5], 4)
        if thoracic:  # a rib: back and out from the transverse process, then forward, cut by the field of view
            root = canal_c + w * side * (canal_w / 2 + 12) + v * 2
            out_back = w * side * 0.8 + v * 0.6 - u * 0.2
            mid = root + out_back * 22
            solids.append(Solid(*_rib(solid, root + out_back * 11, out_back, 12)))
            forward = w * side * 0.5 - v * 0.85 - u * 0.2
            solids.append(Solid(*_rib(solid, mid + forward * 45, forward, 46)))
        else:
            tp = canal_c + w * side * (canal_w / 2 + 16 * scale) - v * canal_ap * 0.3 + u * h * 0.05
            solids.append(solid(tp, axes, [4.5, 4.0, 13 * scale], BONE, 2))


def _rib(solid, centre, direction, half_length):
    s = solid(centre, _along(direction), [half_length, 5.0, 5.0], BONE, 0)
    return s.centre, s.axes, s.half, s.label, s.exponent


def _trunk(rng: np.random.Generator, scale: float, centre_of: dict, size: dict, solid) -> list[Solid]:
    """Body outline, fat, muscles, abdomen, kidneys and vessels, in drawing order (canonical frame)."""
    out = []
    half_x, half_y = rng.uniform(140, 185) * scale, rng.uniform(105, 135) * scale
    back = centre_of["L3"][1] + rng.uniform(85, 115) * scale  # skin of the back behind L3
    yc = back - half_y
    fat_side, fat_ap = rng.uniform(10, 40) * scale, rng.uniform(10, 35) * scale
    z0 = centre_of["L3"][2]
    out.append(solid(np.array([0, yc, z0]), Z_AXES, [400, half_y, half_x], FAT, 0))
    out.append(solid(np.array([0, yc + 0.3 * fat_ap, z0]), Z_AXES, [400, half_y - fat_ap, half_x - fat_side], MUSCLE, 0))
    # intra-abdominal fat and viscera, in front of the middle of the vertebral bodies
    inner_half = (centre_of["L3"][1] + 5 - (yc - half_y + fat_ap + 8)) / 2
    inner = np.array([0, centre_of["L3"][1] + 5 - inner_half, z0])
    out.append(solid(inner, Z_AXES, [400, inner_half, half_x - fat_side - 12], FAT, 0))
    out.append(solid(inner + np.array([0, -8, 0]), Z_AXES, [400, inner_half * 0.8, half_x - fat_side - 22], SOFT, 0))
    lumbar_z = [centre_of[n][2] for n in ("L1", "L2", "L3", "L4", "L5")]
    for _ in range(int(rng.integers(8, 14))):  # bowel loops, some with fluid, some with gas
        c = np.array(
            [
                rng.uniform(-0.7, 0.7) * half_x,
                inner[1] - rng.uniform(0.0, 0.6) * inner_half,
                rng.uniform(lumbar_z[-1] - 40, lumbar_z[0] + 60),
            ]
        )
        out.append(solid(c, rotation(*rng.uniform(-60, 60, 3)), rng.uniform([14, 10, 10], [30, 18, 18]) * scale, BOWEL, 2))
    for side in (-1, 1):
        kidney = np.array(
            [side * rng.uniform(55, 70) * scale, centre_of["L1"][1] + rng.uniform(5, 20), centre_of["L1"][2] + rng.uniform(-20, 15)]
        )
        out.append(solid(kidney, rotation(side * 15, 0, 0), np.array([55, 25, 30]) * scale, KIDNEY, 2))
    l4 = centre_of["L4"]
    for x, radius, stop in ((12.0, 10.0, l4[2]), (-18.0, 11.0, l4[2] - 20)):  # aorta (patient left), inferior vena cava
        top = centre_of["T10"][2] + 40
        mid_z = (top + stop) / 2
        y = centre_of["L2"][1] - size["L2"][1] / 2 - radius - 3
        out.append(solid(np.array([x * scale, y, mid_z]), Z_AXES, [(top - stop) / 2, radius * scale, radius * scale], VESSEL, 0))
    for i, n in enumerate(("L1", "L2", "L3", "L4", "L5")):  # psoas, growing toward the pelvis
        r = (9 + 3.5 * i) * scale
        c = centre_of[n]
        for side in (-1, 1):
            out.append(
                solid(c + np.array([side * (size[n][2] / 2 + r * 0.8), r * 0.3, 0]), Z_AXES, [size[n][0] * 0.8, r, r * 0.9], MUSCLE, 0)
            )
    for side in (-1, 1):  # paraspinal muscles behind the laminae
        c = np.array([side * 32 * scale, centre_of["L3"][1] + 62 * scale, z0])
        out.append(solid(c, Z_AXES, [400, 26 * scale, 26 * scale], MUSCLE, 0))
    return out
