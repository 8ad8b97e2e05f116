"""vertebra-segment (gpu): vertebra masks, vertebra instances and disc-level centres for every study.

Reads the ingest stage (volumes, coordinates) and the vertebra-train model. For every sagittal
stack: the U-Net's class map in the stack's own grid; vertebrae L1..S1 as the largest connected
component of each class, checked for order along the spine and spacing; disc centres between
adjacent vertebrae (the disc voxels between them, else the midpoint) and the canal centre at each
disc. Sagittal series of a study are averaged in world millimetres.

Writes under ``{run}/vertebra-segment/``: ``masks/{study}/{series}_{stack}.npz``; ``levels.parquet``
(study, level, disc and canal centre in world mm, source: model, labels or missing);
``stack_levels.parquet`` (every level in every sagittal and axial stack's pixels, with the distance
to the nearest slice); ``problems.parquet``; ``localisation.json`` where labelled coordinates exist
(median error mm, share within 5 mm, share nearest the right level); ``overlay.png``.

A study with fewer than five levels found is recorded and, if ``fallback_to_labels`` and it has
labelled spinal canal points, takes its levels from those; otherwise its missing levels are marked
missing.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from lumbar_core import vocab
from lumbar_core.ingested import IngestedData, Volume, save_volume
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.models.unet import load_model, predict
from lumbar_core.params import Params
from lumbar_core.sagittal import canonical_of_stack, normalise, resample_slice, resize_to
from lumbar_core.spider import CANAL, DISC, VERTEBRA_CLASSES

STAGE = "vertebra-segment"
VERTEBRAE = ("L1", "L2", "L3", "L4", "L5", "S1")
LEVEL_PAIRS = dict(zip(vocab.LEVELS, itertools.pairwise(VERTEBRAE)))
MIN_GAP_MM, MAX_GAP_MM = 15.0, 60.0


@dataclass(frozen=True)
class VertebraSegmentParams(Params):
    """Parameters of vertebra-segment.

    Attributes:
        batch_size: slices per forward pass.
        fallback_to_labels: take the levels of a study with fewer than five from its labelled points.
        min_voxels: smallest connected component (voxels) accepted as a vertebra.
    """

    batch_size: int = 16
    fallback_to_labels: bool = True
    min_voxels: int = 20


def segment_stack(model, volume: Volume, spacing_mm: float, batch_size: int) -> np.ndarray:
    """U-Net class map (slices, rows, cols) of a sagittal stack, in the stack's own grid."""
    g = volume.geometry
    slice_spacing = float(np.median(np.diff(g.positions))) if len(g.positions) > 1 else 1.0
    canon = canonical_of_stack(g.row_dir, g.col_dir, g.normal, (slice_spacing, g.row_spacing, g.col_spacing))
    pixels = canon.apply(volume.pixels)
    in_plane = canon.spacing[1:]
    slices = np.stack([normalise(resample_slice(s, in_plane, spacing_mm, order=1)) for s in pixels])
    labels = predict(model, slices, batch_size=batch_size)
    back = np.stack([resize_to(lab, pixels.shape[1:], order=0) for lab in labels])
    return canon.invert(back)


def _world(volume: Volume, voxels: np.ndarray) -> np.ndarray:
    """World points of voxel indices (n, 3) as (slice, row, col)."""
    return volume.geometry.pixel_to_world(voxels[:, 2], voxels[:, 1], voxels[:, 0])


def vertebra_centres(mask: np.ndarray, volume: Volume, min_voxels: int) -> dict[str, np.ndarray]:
    """World centroid of the largest connected component of each vertebra class present."""
    out = {}
    for name in VERTEBRAE:
        inside = mask == VERTEBRA_CLASSES[name]
        if inside.sum() < min_voxels:
            continue
        components, n = ndimage.label(inside)
        sizes = ndimage.sum(inside, components, index=range(1, n + 1))
        biggest = int(np.argmax(sizes)) + 1
        if sizes[biggest - 1] < min_voxels:
            continue
        out[name] = _world(volume, np.argwhere(components == biggest)).mean(axis=0)
    return out


def check_order(centres: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep the longest run of vertebrae that descend the spine with plausible spacing."""
    present = [v for v in VERTEBRAE if v in centres]
    best: list[str] = []
    run: list[str] = []
    for name in present:
        if run:
            prev = run[-1]
            gap = float(np.linalg.norm(centres[name] - centres[prev]))
            adjacent = VERTEBRAE.index(name) == VERTEBRAE.index(prev) + 1
            if not (adjacent and MIN_GAP_MM <= gap <= MAX_GAP_MM and centres[name][2] < centres[prev][2]):
                run = []
        run.append(name)
        if len(run) > len(best):
            best = list(run)
    return {v: centres[v] for v in best}


def _near_segment(points: np.ndarray, a: np.ndarray, b: np.ndarray, t_range: tuple[float, float], radius: float) -> np.ndarray:
    axis = b - a
    length = float(np.linalg.norm(axis))
    t = (points - a) @ axis / length**2
    perp = np.linalg.norm(points - a - t[:, None] * axis, axis=1)
    return (t >= t_range[0]) & (t <= t_range[1]) & (perp <= radius)


def level_centres(mask: np.ndarray, volume: Volume, vertebrae: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """Disc and canal centre (world mm) of each level whose upper vertebra (and lower, or L4 for L5/S1) was found."""
    disc_pts = _world(volume, np.argwhere(mask == DISC))
    canal_pts = _world(volume, np.argwhere(mask == CANAL))
    out = {}
    for level, (upper, lower) in LEVEL_PAIRS.items():
        if upper not in vertebrae:
            continue
        a = vertebrae[upper]
        if lower in vertebrae:
            b = vertebrae[lower]
            t_range = (0.2, 0.8)
        elif level == "l5_s1" and "L4" in vertebrae:
            b = a + (a - vertebrae["L4"])  # extrapolate one vertebra down
            t_range = (0.15, 0.7)
        else:
            continue
        near = disc_pts[_near_segment(disc_pts, a, b, t_range, 25.0)] if len(disc_pts) else disc_pts
        disc = near.mean(axis=0) if len(near) >= 3 else (a + b) / 2
        axis = (b - a) / np.linalg.norm(b - a)
        canal = None
        if len(canal_pts):
            along = np.abs((canal_pts - disc) @ axis)
            close = canal_pts[(along <= 6.0) & (np.linalg.norm(canal_pts - disc, axis=1) <= 40.0)]
            if len(close) >= 3:
                canal = close.mean(axis=0)
        out[level] = {"disc": disc, "canal": canal if canal is not None else disc}
    return out


@dataclass(frozen=True)
class _StudyLevels:
    rows: list[dict]
    problems: list[dict]


def _study_levels(study: int, per_series: list[dict[str, dict[str, np.ndarray]]], coords: pd.DataFrame, fallback: bool) -> _StudyLevels:
    rows, problems = [], []
    found = {lv for levels in per_series for lv in levels}
    use_labels = len(found) < len(vocab.LEVELS) and fallback
    spinal = coords[coords["condition"] == "spinal_canal_stenosis"] if not coords.empty else coords
    if len(found) < len(vocab.LEVELS):
        problems.append(
            {
                "study_id": study,
                "kind": "fewer than five levels",
                "message": f"study {study}: levels found {sorted(found)}; "
                + ("falling back to the labelled points" if use_labels and not spinal.empty else "the rest are missing"),
            }
        )
    for level in vocab.LEVELS:
        hits = [levels[level] for levels in per_series if level in levels]
        labelled = spinal[spinal["level"] == level] if not spinal.empty else spinal
        if hits and not (use_labels and not labelled.empty):
            disc = np.mean([h["disc"] for h in hits], axis=0)
            canal = np.mean([h["canal"] for h in hits], axis=0)
            source = "model"
        elif use_labels and not labelled.empty:
            canal = labelled[["world_x", "world_y", "world_z"]].to_numpy().mean(axis=0)
            disc, source = canal, "labels"
        else:
            rows.append({"study_id": study, "level": level, "source": "missing", "n_series": 0})
            continue
        rows.append(
            {
                "study_id": study,
                "level": level,
                "source": source,
                "n_series": len(hits),
                **{f"disc_{a}": float(v) for a, v in zip("xyz", disc)},
                **{f"canal_{a}": float(v) for a, v in zip("xyz", canal)},
            }
        )
    return _StudyLevels(rows, problems)


def localisation_error(levels: pd.DataFrame, coords: pd.DataFrame) -> dict[str, float]:
    """Labelled spinal canal points vs predicted canal centres (model-sourced levels only)."""
    if coords.empty:
        return {}
    spinal = coords[coords["condition"] == "spinal_canal_stenosis"]
    model = levels[levels["source"] == "model"]
    errors, right = [], []
    for row in spinal.itertuples():
        study = model[model["study_id"] == row.study_id]
        if study.empty:
            continue
        point = np.array([row.world_x, row.world_y, row.world_z])
        centres = study[["canal_x", "canal_y", "canal_z"]].to_numpy()
        dist = np.linalg.norm(centres - point, axis=1)
        same = study["level"].to_numpy() == row.level
        if same.any():
            errors.append(float(dist[same][0]))
        right.append(bool(study["level"].to_numpy()[int(np.argmin(dist))] == row.level))
    if not errors:
        return {}
    return {
        "median_error_mm": float(np.median(errors)),
        "share_within_5mm": float(np.mean(np.array(errors) <= 5.0)),
        "share_right_level": float(np.mean(right)),
        "points": len(errors),
    }


def _stack_rows(data: IngestedData, study: int, levels: pd.DataFrame) -> list[dict]:
    rows = []
    index = data.index[data.index["study_id"] == study]
    found = levels[(levels["study_id"] == study) & (levels["source"] != "missing")]
    for stack in index.itertuples():
        geometry = data.volume(study, stack.series_id, stack.stack).geometry
        for lv in found.itertuples():
            for point in ("disc", "canal"):
                world = np.array([getattr(lv, f"{point}_{a}") for a in "xyz"])
                x, y, k, distance = geometry.world_to_pixel(world)
                rows.append(
                    {
                        "study_id": study,
                        "series_id": stack.series_id,
                        "stack": stack.stack,
                        "level": lv.level,
                        "point": point,
                        "x": x,
                        "y": y,
                        "slice": k,
                        "distance_mm": distance,
                    }
                )
    return rows


def _overlay_png(volume: Volume, mask: np.ndarray, centres: dict, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = int(np.argmax((mask == CANAL).sum(axis=(1, 2))))
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.3))
    axes[0].imshow(volume.pixels[k], cmap="gray")
    axes[1].imshow(volume.pixels[k], cmap="gray")
    axes[1].imshow(np.ma.masked_equal(mask[k], 0), cmap="tab10", alpha=0.45, vmin=0, vmax=9)
    for level, c in centres.items():
        x, y, _, _ = volume.geometry.world_to_pixel(c["disc"])
        axes[1].plot(x, y, "r+", ms=8)
        axes[1].annotate(vocab.LEVEL_TITLES[level], (x, y), xytext=(4, 0), textcoords="offset points", color="yellow", fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return buffer.getvalue()


def run(*, run_uri: str, params: VertebraSegmentParams) -> Manifest:
    """Segment every sagittal stack of the ingested studies and locate the disc levels."""
    data = IngestedData.open(run_uri)
    trained = StageInput.open(run_uri, "vertebra-train")
    model, config = load_model(trained.read_bytes("model.pt"))
    coords = data.table("coordinates")
    out = StageOutput(run_uri, STAGE)
    level_rows, problems, overlay = [], [], None
    index = data.index
    sagittal = index[(index["orientation"] == "sagittal") & (index["description"].isin([vocab.SAGITTAL_T1, vocab.SAGITTAL_T2]))]
    for study in tqdm(sorted(index["study_id"].unique()), desc="vertebra-segment", unit="study"):
        per_series = []
        for stack in sagittal[sagittal["study_id"] == study].itertuples():
            volume = data.volume(study, stack.series_id, stack.stack)
            mask = segment_stack(model, volume, config["spacing_mm"], params.batch_size)
            out.write_bytes(f"masks/{study}/{stack.series_id}_{stack.stack}.npz", save_volume({"mask": mask}))
            vertebrae = check_order(vertebra_centres(mask, volume, params.min_voxels))
            centres = level_centres(mask, volume, vertebrae)
            per_series.append(centres)
            if overlay is None and stack.description == vocab.SAGITTAL_T2 and centres:
                overlay = _overlay_png(volume, mask, centres, f"study {study} {stack.description}: U-Net classes and disc centres")
        study_coords = coords[coords["study_id"] == study] if not coords.empty else coords
        result = _study_levels(study, per_series, study_coords, params.fallback_to_labels)
        level_rows += result.rows
        problems += result.problems
    levels = pd.DataFrame(level_rows)
    stack_rows = [r for study in sorted(index["study_id"].unique()) for r in _stack_rows(data, study, levels)]
    for name, frame in (
        ("levels.parquet", levels),
        ("stack_levels.parquet", pd.DataFrame(stack_rows)),
        ("problems.parquet", pd.DataFrame(problems, columns=["study_id", "kind", "message"])),
    ):
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        out.write_bytes(name, buffer.getvalue())
    localisation = localisation_error(levels, coords)
    out.write_json("localisation.json", localisation)
    if overlay is not None:
        out.write_bytes("overlay.png", overlay)
    counts = levels["source"].value_counts().to_dict()
    metrics = {"studies": int(index["study_id"].nunique()), **{f"levels_{k}": int(v) for k, v in counts.items()}, **localisation}
    return out.commit(params=params.to_dict(), metrics=metrics)
