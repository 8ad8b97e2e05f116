"""disc-label (cpu): 2D image/label pairs for nnU-Net whose disc regions carry (level, severity).

Reads ingest (volumes, labels, coordinates) and vertebra-segment (masks). Two families of cases:

* ``spinal``: the mid-sagittal Sagittal T2/STIR slices the spinal canal points lie on;
* ``foraminal``: the left and right parasagittal Sagittal T1 slices of the foraminal points.

A labelled slice is one a point lies on; for the spinal family, the slices within ``spinal_slab_mm``
of it are labelled too where every labelled level reaches them (the canal is 15-25 mm wide, so its
neighbours show the same stenosis: more, real training images instead of copies). On each labelled
slice, every level with a point on it (or on a slice within ``neighbour_slices`` slice spacings) gets
a region: a disk of ``radius_mm`` around the point, plus the U-Net's disc pixels within
``disc_radius_mm``. The region's class is ``1 + 3 * level_index + severity`` (15 classes +
background per family, :mod:`lumbar_core.classes`); a level without a severity label gets no
region. Slices are brought to the canonical sagittal layout and resampled to ``spacing_mm`` so nnU-Net sees them as prediction will.

Writes under ``{run}/disc-label/``: ``cases/{family}/{case_id}.npz`` (image float32, label uint8,
spacing), ``cases.parquet`` (one row per case), ``regions.parquet`` (one row per labelled region:
case, condition, level, severity, class, pixels) and ``overlay.png``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core import vocab
from lumbar_core.classes import FAMILIES, class_of
from lumbar_core.ingested import IngestedData, load_arrays, save_volume
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.params import Params
from lumbar_core.plots import figure, png_bytes
from lumbar_core.sagittal import canonical_of_stack, resample_slice
from lumbar_core.spider import DISC

STAGE = "disc-label"


@dataclass(frozen=True)
class DiscLabelParams(Params):
    """Parameters of disc-label.

    Attributes:
        spacing_mm: in-plane pixel size of the cases.
        radius_mm: radius of the disk around each labelled point.
        disc_radius_mm: U-Net disc pixels this close to the point join its region.
        neighbour_slices: a point on a slice this many slice spacings away still labels this slice.
        spinal_slab_mm: spinal cases also come from the slices this close to a labelled slice.
    """

    spacing_mm: float = 2.5
    radius_mm: float = 14.0
    disc_radius_mm: float = 14.0
    neighbour_slices: float = 1.5
    spinal_slab_mm: float = 6.0


def _mask_volume(segment: StageInput, study: int, series: int, stack: int) -> np.ndarray | None:
    path = f"masks/{study}/{series}_{stack}.npz"
    if path not in segment.manifest.files:
        return None
    return load_arrays(segment.read_bytes(path))["mask"]


def label_slice(
    image_shape: tuple[int, int],
    plane,
    points: list[tuple[str, int, np.ndarray]],
    disc_mask: np.ndarray | None,
    params: DiscLabelParams,
) -> np.ndarray:
    """Label map (rows, cols) of one slice: for each (level, severity, world point) its region's class."""
    grid = plane.grid()
    label = np.zeros(image_shape, dtype=np.uint8)
    for level, severity, point in points:
        distance = np.linalg.norm(grid - point, axis=-1)
        region = distance <= params.radius_mm
        if disc_mask is not None:
            region |= (disc_mask == DISC) & (distance <= params.disc_radius_mm)
        label[region] = class_of(level, severity)
    return label


def _points_on_slice(volume, k: int, rows: pd.DataFrame, severity: dict, study: int, condition: str, params) -> list:
    """(level, severity, world point) of every labelled point on slice ``k`` or within ``neighbour_slices`` of it."""
    plane = volume.geometry.plane(k)
    reach_mm = params.neighbour_slices * volume.geometry.slice_spacing
    points = []
    for row in rows.itertuples():
        world = np.array([row.world_x, row.world_y, row.world_z])
        if row.slice != k and abs(plane.world_to_pixel(world)[2]) > reach_mm:
            continue
        sev = severity.get((study, condition, row.level))
        if sev is not None:
            points.append((row.level, int(sev), world))
    return points


def _make_case(volume, masks, k: int, points: list, params) -> tuple[np.ndarray, np.ndarray]:
    """(image, label) of slice ``k`` in the canonical layout at ``spacing_mm``, regions drawn around ``points``."""
    disc_mask = masks[k] if masks is not None else None
    label = label_slice(volume.pixels[k].shape, volume.geometry.plane(k), points, disc_mask, params)
    canon = canonical_of_stack(volume.geometry)
    image = canon.apply(volume.pixels[k : k + 1].astype(np.float32))[0]
    label = canon.apply(label[None])[0]
    image = resample_slice(image, canon.spacing[1:], params.spacing_mm, order=1)
    label = resample_slice(label, canon.spacing[1:], params.spacing_mm, order=0)
    return image, label


def run(*, run_uri: str, params: DiscLabelParams) -> Manifest:
    """Build the nnU-Net cases of both families from the labelled training studies."""
    data = IngestedData.open(run_uri)
    segment = StageInput.open(run_uri, "vertebra-segment")
    labels = data.table("labels")
    coords = data.table("coordinates")
    if labels.empty or coords.empty:
        raise ValueError("disc-label needs training labels and coordinates; the ingested split has none")
    severity = labels.set_index(["study_id", "condition", "level"])["severity"].to_dict()
    out = StageOutput(run_uri, STAGE)
    cases, regions, previews = [], [], []
    loaded: dict[tuple[int, int, int], tuple] = {}  # the stack in hand: groups come sorted by stack
    for family, spec in FAMILIES.items():
        fam = coords[coords["condition"].isin(spec.conditions)]
        slab_mm = params.spinal_slab_mm if family == "spinal" else 0.0
        groups = list(fam.groupby(["study_id", "series_id", "stack", "condition"]))
        for (study, series, stack, condition), same in tqdm(groups, desc=f"disc-label {family}", unit="series"):
            if (study, series, stack) not in loaded:
                loaded.clear()
                loaded[(study, series, stack)] = (data.volume(study, series, stack), _mask_volume(segment, study, series, stack))
            volume, masks = loaded[(study, series, stack)]
            reach = int(slab_mm // volume.geometry.slice_spacing)
            on_point = {int(k) for k in same["slice"]}
            labelled = sorted({k + d for k in on_point for d in range(-reach, reach + 1)} & set(range(len(volume.pixels))))
            complete = sum((study, condition, lv) in severity for lv in set(same["level"]))
            for k in labelled:
                points = _points_on_slice(volume, k, same, severity, study, condition, params)
                if not points or (k not in on_point and len({lv for lv, _, _ in points}) < complete):
                    continue  # a slab slice that some level does not reach would teach that level as background
                image, label = _make_case(volume, masks, k, points, params)
                side = vocab.CONDITION_SIDE[condition] or "mid"
                case_id = f"{study}_{series}_{stack}_{k}_{side}"
                rel = f"cases/{family}/{case_id}.npz"
                out.write_bytes(rel, save_volume({"image": image, "label": label, "spacing": np.array([params.spacing_mm] * 2)}))
                cases.append(
                    {
                        "case_id": case_id,
                        "family": family,
                        "study_id": study,
                        "series_id": series,
                        "stack": stack,
                        "slice": k,
                        "side": side,
                        "path": rel,
                    }
                )
                for level, sev, _ in points:
                    cls = class_of(level, sev)
                    regions.append(
                        {
                            "case_id": case_id,
                            "family": family,
                            "study_id": study,
                            "condition": condition,
                            "level": level,
                            "severity": sev,
                            "class": cls,
                            "pixels": int((label == cls).sum()),
                        }
                    )
                if len(previews) < 4 and (family == "foraminal" or not previews):
                    previews.append((case_id, image, label))
    if not cases:
        raise ValueError("disc-label found no labelled sagittal slice to make a case of")
    for name, frame in (("cases.parquet", pd.DataFrame(cases)), ("regions.parquet", pd.DataFrame(regions))):
        out.write_table(name, frame)
    out.write_bytes("overlay.png", _overlay(previews))
    counts = pd.DataFrame(cases)["family"].value_counts().to_dict()
    return out.commit(params=params.to_dict(), metrics={f"cases_{k}": int(v) for k, v in counts.items()} | {"regions": len(regions)})


def _overlay(previews: list[tuple[str, np.ndarray, np.ndarray]]) -> bytes:
    with figure(1, max(1, len(previews)), figsize=(3.2 * max(1, len(previews)), 3.6)) as (fig, axes):
        for ax, (case_id, image, label) in zip(np.atleast_1d(axes), previews):
            ax.imshow(image, cmap="gray")
            ax.imshow(np.ma.masked_equal(label, 0), cmap="tab20", alpha=0.6, vmin=0, vmax=16)
            ax.set_title(case_id, fontsize=7)
            ax.axis("off")
        fig.suptitle("disc-label: regions coloured by (level, severity) class", fontsize=9)
        return png_bytes(fig)
