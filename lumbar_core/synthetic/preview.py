"""A montage of one study's series with its labelled points: what the phantom looks like."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lumbar_core import vocab

_PANELS = (
    ("Spinal Canal Stenosis", vocab.SAGITTAL_T2),
    ("Left Neural Foraminal Narrowing", vocab.SAGITTAL_T1),
    ("Right Neural Foraminal Narrowing", vocab.SAGITTAL_T1),
    ("Left Subarticular Stenosis", vocab.AXIAL_T2),
)


def write_preview(root: str | Path, png: str | Path, study_id: int | None = None) -> Path:
    """Draw one training study's labelled images (one panel per condition group) into a PNG.

    Each panel shows the image a condition's first labelled point lies on, with every point of
    that condition on that image (level names beside them).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pydicom

    root = Path(root)
    coords = pd.read_csv(root / "train_label_coordinates.csv")
    if study_id is None:
        study_id = int(coords.groupby("study_id").size().idxmax())
    coords = coords[coords["study_id"] == study_id]
    if coords.empty:
        raise ValueError(f"study {study_id} has no labelled coordinates in {root / 'train_label_coordinates.csv'}")
    fig, axes = plt.subplots(1, len(_PANELS), figsize=(4 * len(_PANELS), 4.4))
    for ax, (condition, series_type) in zip(axes, _PANELS):
        ax.axis("off")
        rows = coords[coords["condition"] == condition]
        if rows.empty:
            ax.set_title(f"{condition}\n(no {series_type})", fontsize=9)
            continue
        first = rows.iloc[len(rows) // 2]
        path = root / "train_images" / str(study_id) / str(first["series_id"]) / f"{int(first['instance_number'])}.dcm"
        ds = pydicom.dcmread(path)
        image = ds.pixel_array.astype(float)
        ax.imshow(image, cmap="gray", vmin=0, vmax=np.percentile(image, 99.5))
        on = rows[(rows["series_id"] == first["series_id"]) & (rows["instance_number"] == first["instance_number"])]
        ax.scatter(on["x"], on["y"], s=28, facecolors="none", edgecolors="red", linewidths=1.2)
        for _, r in on.iterrows():
            ax.annotate(r["level"], (r["x"], r["y"]), xytext=(4, -4), textcoords="offset points", color="yellow", fontsize=7)
        ax.set_title(f"{condition}\n{series_type}, instance {int(first['instance_number'])}", fontsize=9)
    fig.suptitle(f"phantom study {study_id}", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)
    return png
