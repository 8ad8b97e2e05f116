"""Reading the phantom back the way a user would: pydicom, the CSV files and the truth folder."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom

from lumbar_core.geometry import Plane


def plane_of(ds: pydicom.Dataset) -> Plane:
    iop = np.array(ds.ImageOrientationPatient, dtype=float)
    spacing = [float(v) for v in ds.PixelSpacing]
    return Plane(np.array(ds.ImagePositionPatient, dtype=float), iop[:3], iop[3:], spacing[0], spacing[1], int(ds.Rows), int(ds.Columns))


@lru_cache(maxsize=4096)
def read(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path)


def image_path(root: Path, study, series, instance, split="train") -> Path:
    return root / f"{split}_images" / str(study) / str(series) / f"{int(instance)}.dcm"


def truth(root: Path, study) -> dict:
    return json.loads((root / "truth" / "studies" / f"{study}.json").read_text())


def mask(root: Path, study, series, instance) -> np.ndarray:
    data = np.load(root / "truth" / "masks" / str(study) / f"{series}.npz")
    idx = int(np.flatnonzero(data["instance_numbers"] == int(instance))[0])
    return data["labels"][idx]


def coordinates(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / "train_label_coordinates.csv")


def target(truth_doc: dict, condition: str, level: str) -> dict:
    return next(t for t in truth_doc["targets"] if t["condition"] == condition and t["level"] == level)
