"""nnU-Net raw datasets from disc-label cases: dataset.json, imagesTr, labelsTr (2D as NIfTI, z = 1)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lumbar_core.classes import label_names

FILE_ENDING = ".nii.gz"
DUMMY_SPACING = 999.0  # the third spacing of a 2D image


def dataset_name(dataset_id: int, family: str) -> str:
    """E.g. ``Dataset501_LumbarSpinal``."""
    return f"Dataset{dataset_id:03d}_Lumbar{family.capitalize()}"


def write_image(path: Path, array: np.ndarray, spacing: float) -> None:
    """A 2D array (rows, cols) as a NIfTI image of one slice with the given in-plane spacing."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.asarray(array)[None])
    image.SetSpacing((float(spacing), float(spacing), DUMMY_SPACING))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def write_raw_dataset(root: Path, name: str, cases: Iterable[tuple[str, np.ndarray, np.ndarray, float, int]]) -> int:
    """Write ``root/name`` from (case_id, image, label, spacing, copies); returns the number of training images."""
    folder = root / name
    n = 0
    for case_id, image, label, spacing, copies in cases:
        for copy in range(copies):
            key = f"{case_id}_c{copy}"
            write_image(folder / "imagesTr" / f"{key}_0000{FILE_ENDING}", image.astype(np.float32), spacing)
            write_image(folder / "labelsTr" / f"{key}{FILE_ENDING}", label.astype(np.uint8), spacing)
            n += 1
    dataset = {"channel_names": {"0": "MRI"}, "labels": label_names(), "numTraining": n, "file_ending": FILE_ENDING}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return n


def splits(
    case_ids: list[str], copies: dict[str, int], val_fraction: float, seed: int, groups: dict[str, object] | None = None
) -> list[dict[str, list[str]]]:
    """One train/val split as splits_final.json, by group (default: by case).

    All copies of a case, and all cases of one group (the slices of one study), fall on one side,
    so validation never sees a neighbour of a training image.
    """
    group_of = groups or {c: c for c in case_ids}
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(sorted({str(group_of[c]) for c in case_ids})))
    n_val = max(1, int(round(len(order) * val_fraction))) if len(order) > 1 else 0
    val_groups = set(order[:n_val])
    val = sorted(c for c in case_ids if str(group_of[c]) in val_groups)
    in_val = set(val)

    def keys(ids):
        return [f"{c}_c{k}" for c in sorted(ids) for k in range(copies[c])]

    train_ids = [c for c in case_ids if c not in in_val] or val
    return [{"train": keys(train_ids), "val": keys(val) or keys(train_ids)}]


@contextmanager
def nnunet_env(work: Path, *, processes: int = 1):
    """Point nnU-Net's environment at ``work/{raw,preprocessed,results}`` for the duration of the block."""
    names = {"nnUNet_raw": work / "raw", "nnUNet_preprocessed": work / "preprocessed", "nnUNet_results": work / "results"}
    extra = {"nnUNet_n_proc_DA": str(processes), "nnUNet_compile": "false", "nnUNet_def_n_proc": str(processes)}
    saved = {k: os.environ.get(k) for k in [*names, *extra]}
    for key, path in names.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(path)
    os.environ.update(extra)
    try:
        yield names
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
