"""The competition's vocabulary: conditions, levels, severities and the names files use for them.

Every other module spells these through this one. Three spellings exist in the Kaggle files:

* ``train.csv`` columns and submission row ids use snake_case: ``spinal_canal_stenosis_l4_l5``,
  ``{study_id}_{condition}_{level}``;
* ``train_label_coordinates.csv`` uses Title Case: ``Spinal Canal Stenosis``, ``L4/L5``;
* severities are ``Normal/Mild``, ``Moderate``, ``Severe`` in labels and ``normal_mild``,
  ``moderate``, ``severe`` as submission columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lumbar_core.errors import UserError

CONDITIONS: tuple[str, ...] = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
LEVELS: tuple[str, ...] = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")
SEVERITIES: tuple[str, ...] = ("Normal/Mild", "Moderate", "Severe")
SEVERITY_COLUMNS: tuple[str, ...] = ("normal_mild", "moderate", "severe")
SEVERITY_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0)

CONDITION_TITLES: dict[str, str] = {
    "spinal_canal_stenosis": "Spinal Canal Stenosis",
    "left_neural_foraminal_narrowing": "Left Neural Foraminal Narrowing",
    "right_neural_foraminal_narrowing": "Right Neural Foraminal Narrowing",
    "left_subarticular_stenosis": "Left Subarticular Stenosis",
    "right_subarticular_stenosis": "Right Subarticular Stenosis",
}
LEVEL_TITLES: dict[str, str] = {"l1_l2": "L1/L2", "l2_l3": "L2/L3", "l3_l4": "L3/L4", "l4_l5": "L4/L5", "l5_s1": "L5/S1"}

#: Score group of each condition: the substring of the row id the metric groups by.
CONDITION_GROUP: dict[str, str] = {
    "spinal_canal_stenosis": "spinal",
    "left_neural_foraminal_narrowing": "foraminal",
    "right_neural_foraminal_narrowing": "foraminal",
    "left_subarticular_stenosis": "subarticular",
    "right_subarticular_stenosis": "subarticular",
}
GROUPS: tuple[str, ...] = ("spinal", "foraminal", "subarticular")

SAGITTAL_T1 = "Sagittal T1"
SAGITTAL_T2 = "Sagittal T2/STIR"
AXIAL_T2 = "Axial T2"
SERIES_TYPES: tuple[str, ...] = (SAGITTAL_T1, SAGITTAL_T2, AXIAL_T2)

#: The series type on which each condition is read and its coordinates are placed.
CONDITION_SERIES: dict[str, str] = {
    "spinal_canal_stenosis": SAGITTAL_T2,
    "left_neural_foraminal_narrowing": SAGITTAL_T1,
    "right_neural_foraminal_narrowing": SAGITTAL_T1,
    "left_subarticular_stenosis": AXIAL_T2,
    "right_subarticular_stenosis": AXIAL_T2,
}

#: Side of each lateral condition: patient left is +x in DICOM's LPS frame.
CONDITION_SIDE: dict[str, str | None] = {
    "spinal_canal_stenosis": None,
    "left_neural_foraminal_narrowing": "left",
    "right_neural_foraminal_narrowing": "right",
    "left_subarticular_stenosis": "left",
    "right_subarticular_stenosis": "right",
}

_CONDITION_FROM_TITLE = {title: name for name, title in CONDITION_TITLES.items()}
_LEVEL_FROM_TITLE = {title: name for name, title in LEVEL_TITLES.items()}
_SEVERITY_INDEX = {name: i for i, name in enumerate(SEVERITIES)}


class VocabularyError(UserError):
    """A name that is not one of the competition's conditions, levels or severities."""


def _lookup(table: dict[str, str] | dict[str, int], key: str, what: str) -> str | int:
    try:
        return table[key]
    except KeyError:
        raise VocabularyError(f"unknown {what} {key!r}; valid: {', '.join(map(repr, table))}") from None


def condition_from_title(title: str) -> str:
    """``'Left Neural Foraminal Narrowing'`` -> ``'left_neural_foraminal_narrowing'``."""
    return str(_lookup(_CONDITION_FROM_TITLE, title.strip(), "condition"))


def level_from_title(title: str) -> str:
    """``'L4/L5'`` -> ``'l4_l5'``."""
    return str(_lookup(_LEVEL_FROM_TITLE, title.strip(), "level"))


def severity_index(severity: str) -> int:
    """``'Normal/Mild'`` -> 0, ``'Moderate'`` -> 1, ``'Severe'`` -> 2."""
    return int(_lookup(_SEVERITY_INDEX, severity.strip(), "severity"))


def target_column(condition: str, level: str) -> str:
    """The ``train.csv`` column of one target, e.g. ``spinal_canal_stenosis_l4_l5``."""
    _lookup(CONDITION_GROUP, condition, "condition")
    _lookup(LEVEL_TITLES, level, "level")
    return f"{condition}_{level}"


def target_columns() -> list[str]:
    """The 25 target columns of ``train.csv`` in the competition's order (condition-major)."""
    return [target_column(c, lv) for c in CONDITIONS for lv in LEVELS]


@dataclass(frozen=True)
class Target:
    """One predicted row: a study, a condition and a level."""

    study_id: int
    condition: str
    level: str

    @property
    def row_id(self) -> str:
        """The submission row id ``{study_id}_{condition}_{level}``."""
        return f"{self.study_id}_{target_column(self.condition, self.level)}"

    @property
    def group(self) -> str:
        """The score group (``spinal``, ``foraminal`` or ``subarticular``)."""
        return CONDITION_GROUP[self.condition]


def row_id(study_id: int, condition: str, level: str) -> str:
    """The submission row id of one target."""
    return Target(int(study_id), condition, level).row_id


def parse_row_id(rid: str) -> Target:
    """Split ``'4003253_spinal_canal_stenosis_l1_l2'`` into its study, condition and level.

    Raises:
        VocabularyError: if the text is not a study id followed by a known condition and level.
    """
    study, sep, rest = rid.partition("_")
    if not sep or not study.isdigit():
        raise VocabularyError(f"row_id {rid!r} does not start with a numeric study id")
    level = rest[-5:]
    condition = rest[:-6]
    if rest[-6:-5] != "_" or level not in LEVEL_TITLES or condition not in CONDITION_GROUP:
        raise VocabularyError(f"row_id {rid!r} is not '{{study_id}}_{{condition}}_{{level}}' with a known condition/level")
    return Target(int(study), condition, level)


def study_targets(study_id: int) -> Iterator[Target]:
    """The 25 targets of one study, condition-major as in ``train.csv``."""
    for condition in CONDITIONS:
        for level in LEVELS:
            yield Target(int(study_id), condition, level)
