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

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from lumbar_core import vocab
from lumbar_core.ingested import IngestedData, Volume, save_volume
from lumbar_core.levels import check_order, combine_series, level_centres, segment_stack, vertebra_centres
from lumbar_core.localisation import errors_against, labelled_canal, points_by_level
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.models.unet import load_model
from lumbar_core.params import Params
from lumbar_core.plots import figure, png_bytes
from lumbar_core.spider import CANAL

STAGE = "vertebra-segment"


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


def localisation_error(levels: pd.DataFrame, coords: pd.DataFrame) -> dict[str, float]:
    """Labelled spinal canal points vs predicted canal centres (model-sourced levels only)."""
    if coords.empty:
        return {}
    labelled = labelled_canal(coords)
    model = levels[levels["source"] == "model"]
    errors, right = [], []
    for study in labelled["study_id"].unique():
        found = points_by_level(model, study)
        if found:
            e, r = errors_against(found, points_by_level(labelled, study))
            errors += e
            right += r
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
        geometry = data.geometry(study, stack.series_id, stack.stack)
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
    k = int(np.argmax((mask == CANAL).sum(axis=(1, 2))))
    with figure(1, 2, figsize=(8, 4.3)) as (fig, axes):
        return _draw_overlay(fig, axes, volume, mask[k], volume.pixels[k], centres, title)


def _draw_overlay(fig, axes, volume: Volume, mask: np.ndarray, image: np.ndarray, centres: dict, title: str) -> bytes:
    axes[0].imshow(image, cmap="gray")
    axes[1].imshow(image, cmap="gray")
    axes[1].imshow(np.ma.masked_equal(mask, 0), cmap="tab10", alpha=0.45, vmin=0, vmax=9)
    for level, c in centres.items():
        x, y, _, _ = volume.geometry.world_to_pixel(c["disc"])
        axes[1].plot(x, y, "r+", ms=8)
        axes[1].annotate(vocab.LEVEL_TITLES[level], (x, y), xytext=(4, 0), textcoords="offset points", color="yellow", fontsize=7)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    return png_bytes(fig)


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
        result = combine_series(study, per_series, study_coords, params.fallback_to_labels)
        level_rows += result.rows
        problems += result.problems
    levels = pd.DataFrame(level_rows)
    stack_rows = [r for study in sorted(index["study_id"].unique()) for r in _stack_rows(data, study, levels)]
    for name, frame in (
        ("levels.parquet", levels),
        ("stack_levels.parquet", pd.DataFrame(stack_rows)),
        ("problems.parquet", pd.DataFrame(problems, columns=["study_id", "kind", "message"])),
    ):
        out.write_table(name, frame)
    localisation = localisation_error(levels, coords)
    out.write_json("localisation.json", localisation)
    if overlay is not None:
        out.write_bytes("overlay.png", overlay)
    counts = levels["source"].value_counts().to_dict()
    metrics = {"studies": int(index["study_id"].nunique()), **{f"levels_{k}": int(v) for k, v in counts.items()}, **localisation}
    return out.commit(params=params.to_dict(), metrics=metrics)
