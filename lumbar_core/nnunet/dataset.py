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


def write_raw_dataset(root: Path, name: str, cases: Iterable[tuple[str, np.ndarray, np.ndarray, float]]) -> int:
    """Write ``root/name`` from (case_id, image, label, spacing), each case once; returns the number of training images."""
    folder = root / name
    n = 0
    for case_id, image, label, spacing in cases:
        write_image(folder / "imagesTr" / f"{case_id}_0000{FILE_ENDING}", image.astype(np.float32), spacing)
        write_image(folder / "labelsTr" / f"{case_id}{FILE_ENDING}", label.astype(np.uint8), spacing)
        n += 1
    dataset = {"channel_names": {"0": "MRI"}, "labels": label_names(), "numTraining": n, "file_ending": FILE_ENDING}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return n


def splits(case_ids: list[str], held_out: set, groups: dict[str, object] | None = None) -> list[dict[str, list[str]]]:
    """One train/val split as splits_final.json: the cases of the ``held_out`` groups (studies) validate.

    All cases of one group (the slices of one study) fall on one side, so validation never sees a
    neighbour of a training image. With no held-out case, validation is the training set.
    """
    group_of = {c: (groups or {}).get(c, c) for c in case_ids}
    val = sorted(c for c in case_ids if group_of[c] in held_out)
    train = sorted(set(case_ids) - set(val)) or val
    return [{"train": train, "val": val or train}]


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
