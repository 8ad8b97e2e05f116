"""The one encoding of nnU-Net's families and classes.

A *family* is one nnU-Net dataset: the series type its cases come from and the conditions whose
severities its classes carry. Within a family, class ``1 + 3 x level index + severity`` (1..15) is
a disc region of that level and severity; 0 is background. Every stage and module that needs the
families, the class of a (level, severity), the inverse or nnU-Net's label names takes it from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from lumbar_core import vocab

BACKGROUND = 0
SEVERITY_COUNT = len(vocab.SEVERITY_COLUMNS)
CLASS_COUNT = len(vocab.LEVELS) * SEVERITY_COUNT  # foreground classes per family


@dataclass(frozen=True)
class Family:
    """One nnU-Net dataset: its name, series type, conditions and dataset-id offset."""

    name: str
    series_type: str
    conditions: tuple[str, ...]
    id_offset: int


FAMILIES: dict[str, Family] = {
    "spinal": Family("spinal", vocab.SAGITTAL_T2, ("spinal_canal_stenosis",), 0),
    "foraminal": Family("foraminal", vocab.SAGITTAL_T1, ("left_neural_foraminal_narrowing", "right_neural_foraminal_narrowing"), 1),
}


def class_of(level: str, severity: int) -> int:
    """nnU-Net class of a (level, severity): 1 + 3 x level index + severity (1..15)."""
    return 1 + SEVERITY_COUNT * vocab.LEVELS.index(level) + int(severity)


def level_severity_of(cls: int) -> tuple[str, int]:
    """Inverse of :func:`class_of`."""
    if not 1 <= int(cls) <= CLASS_COUNT:
        raise ValueError(f"class {cls} is not a disc-region class (1..{CLASS_COUNT})")
    return vocab.LEVELS[(int(cls) - 1) // SEVERITY_COUNT], (int(cls) - 1) % SEVERITY_COUNT


def level_classes(level: str) -> range:
    """The classes of one level's severities, in severity order."""
    first = class_of(level, 0)
    return range(first, first + SEVERITY_COUNT)


def class_label(cls: int) -> str:
    """nnU-Net's name of a class, e.g. ``l4_l5_moderate``."""
    level, severity = level_severity_of(cls)
    return f"{level}_{vocab.SEVERITY_COLUMNS[severity]}"


def label_names() -> dict[str, int]:
    """nnU-Net's ``labels`` entry: background plus one class per (level, severity)."""
    return {"background": BACKGROUND, **{class_label(c): c for c in range(1, CLASS_COUNT + 1)}}


def class_title(family: str, cls: int) -> str:
    """A class for people, e.g. ``spinal L1/L2 Severe``."""
    level, severity = level_severity_of(cls)
    return f"{family} {vocab.LEVEL_TITLES[level]} {vocab.SEVERITIES[severity]}"
