"""Typed stage outputs: the schemas of the tables and the dataclasses of the JSON documents stages pass on.

A JSON document is written from a dataclass (``to_dict``) and read back with ``from_dict``, which
names the file and the missing or unknown field instead of falling back to a silent default. The
registry (:mod:`lumbar_core.stages`) attaches these to the files that carry them; the stage guard
checks every table written against its schema and every declared document against its type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from lumbar_core.contracts import TableSchema
from lumbar_core.errors import ManifestError

D = TypeVar("D", bound="Document")


class DocumentError(ManifestError):
    """A stage's JSON output lacks a field, has an unknown one, or a value of the wrong shape."""


@dataclasses.dataclass(frozen=True)
class Document:
    """Base of the typed JSON documents: ``to_dict`` / ``from_dict`` with field checks."""

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[D], data: Any, *, where: str = "") -> D:
        """Parse ``data``; nested documents and ``dict[str, Document]`` fields are parsed too."""
        name = f"{where}: " if where else ""
        if not isinstance(data, dict):
            raise DocumentError(f"{name}{cls.__name__} must be a JSON object, got {type(data).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise DocumentError(f"{name}{cls.__name__} has unknown field(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
        values = {}
        for key, f in fields.items():
            if key not in data:
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                    raise DocumentError(f"{name}{cls.__name__} lacks the field {key!r}")
                continue
            values[key] = _parse(data[key], hints[key], where=f"{where}.{key}" if where else key)
        return cls(**values)


def _parse(value: Any, hint: Any, *, where: str) -> Any:
    if isinstance(hint, type) and issubclass(hint, Document):
        return hint.from_dict(value, where=where)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType) and type(None) in args:  # an optional document
        inner = next(a for a in args if a is not type(None))
        return None if value is None else _parse(value, inner, where=where)
    if origin is dict and len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], Document):
        if not isinstance(value, dict):
            raise DocumentError(f"{where}: expected an object of {args[1].__name__}")
        return {k: args[1].from_dict(v, where=f"{where}.{k}") for k, v in value.items()}
    return value


# --- tables ------------------------------------------------------------------------------------

SERIES_INDEX = TableSchema(
    (
        "study_id",
        "series_id",
        "stack",
        "description",
        "orientation",
        "rows",
        "cols",
        "row_spacing",
        "col_spacing",
        "affine",
        "volume_stage",
        "volume_path",
    )
)
SLICES = TableSchema(("study_id", "series_id", "stack", "slice", "instance_number", "ipp_x", "ipp_y", "ipp_z"))
LABELS = TableSchema(("study_id", "row_id", "condition", "level", "severity", "group"))
COORDINATES = TableSchema(("study_id", "series_id", "condition", "level"))
PROBLEMS = TableSchema(("study_id", "series_id", "file", "kind", "message"))
LEVELS = TableSchema(("study_id", "level", "source", "canal_x", "canal_y", "canal_z"))
CASES = TableSchema(("case_id", "family", "study_id", "path"))
REGIONS = TableSchema(("case_id", "family", "condition", "level", "severity", "class"))
CLASSES = TableSchema(("family", "class", "level", "severity", "cases", "balanced"))
BALANCED = TableSchema(("case_id", "family", "multiplicity"))
READINGS = TableSchema(("study_id", "condition", "level", "model", "normal_mild", "moderate", "severe"))
PREDICTIONS = TableSchema(("study_id", "condition", "level", "normal_mild", "moderate", "severe", "source"))
PREDICT_PROBLEMS = TableSchema(("study_id", "kind", "message"))


# --- nnU-Net -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreparedDataset(Document):
    """One family's nnU-Net dataset as nnunet-prepare made it.

    ``multiplicity`` is balance's case multiplicity (case id -> how many times its class balance
    wants it drawn): the trainer samples by it; each case is stored once.
    """

    dataset: str
    dataset_id: int
    plans: str
    training_images: int
    cases: int
    patch_size: list[int]
    batch_size: int
    features_per_stage: list[int]
    multiplicity: dict[str, int]


@dataclasses.dataclass(frozen=True)
class PreparedDatasets(Document):
    """nnunet-prepare's ``datasets.json``: family -> dataset, and the training studies held out (their cases validate)."""

    families: dict[str, PreparedDataset]
    held_out: list[int]


@dataclasses.dataclass(frozen=True)
class FamilyTraining(Document):
    """One family's nnU-Net training: where its results are, how it learnt, and its fitted evidence weight."""

    dataset: str
    output_folder: str  # relative to results/
    pseudo_dice: list[dict[str, float | None]]
    nan_classes: list[str]
    device: str
    tau: float
    floor: float
    tau_losses: dict[str, float]
    tau_regions: int
    class_frequencies: dict[str, list[float]]  # level -> severity frequencies training drew
    sampled_class_counts: dict[str, int]
    optimizer: str
    learning_rate: float


@dataclasses.dataclass(frozen=True)
class NnunetTraining(Document):
    """nnunet-train's ``training.json``."""

    families: dict[str, FamilyTraining]
    warnings: dict[str, list[str]]


# --- the model bundle --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Calibration(Document):
    """A model's evidence weight against the prior and the floor added to its softmax, fitted on held-out studies.

    ``readings`` is how many held-out (condition, level) readings the fit had; ``losses`` the
    held-out weighted log loss of each tau tried (at the chosen floor). Where several models read
    one cell, ``tau`` and ``floor`` are fitted jointly with the others; ``alone_tau`` and
    ``alone_floor`` are the model's fit by itself (the report's per-model scores use them).
    """

    tau: float
    floor: float
    readings: int = 0
    losses: dict[str, float] = dataclasses.field(default_factory=dict)
    alone_tau: float | None = None
    alone_floor: float | None = None


@dataclasses.dataclass(frozen=True)
class CalibrationResult(Document):
    """calibrate's ``calibration.json``: per model its fitted weight, the studies it was fitted on, and localisation there.

    ``localisation`` maps who found the levels (``localiser``, ``unet``) to the share of the
    held-out studies' labelled levels found within 5 mm, nearest the right level, and not kept;
    ``levels_source`` is the better of the two there, which predict uses first.
    """

    models: dict[str, Calibration]
    studies: list[int]
    localisation: dict[str, dict[str, float]]
    levels_source: str


@dataclasses.dataclass(frozen=True)
class NnunetModel(Document):
    """One family's nnU-Net in a bundle."""

    folder: str  # relative to the bundle: plans.json, dataset.json, fold_0/checkpoint_final.pth
    series_type: str
    conditions: list[str]
    spacing_mm: float  # in-plane pixel size its cases were made at
    region_mm: float  # radius of the disc regions it was trained on
    labels: dict[str, int]
    class_frequencies: dict[str, list[float]]


@dataclasses.dataclass(frozen=True)
class TorchModel(Document):
    """A torch model file in a bundle and the config it was saved with."""

    file: str
    config: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class TrainingData(Document):
    """What the bundle was trained on: a fingerprint of the training studies' tables and their count."""

    fingerprint: str
    studies: int
    data_uri: str
    ingest_attempt: str


@dataclasses.dataclass(frozen=True)
class BundleMetadata(Document):
    """``bundle.json``: everything needed to use, audit or compare a bundle.

    ``calibration`` maps each model (``nnunet-spinal``, ``nnunet-foraminal``, ``densenet``, ``crop``) to its
    weight against the prior, fitted by calibrate on held-out studies on the prediction path.
    """

    format_version: int
    bundle_id: str
    created: str
    code_version: str
    libraries: dict[str, str]
    training_data: TrainingData
    conditions: list[str]
    levels: list[str]
    severities: list[str]
    unet: TorchModel
    localiser: TorchModel | None
    levels_source: str
    densenet: TorchModel
    nnunet: dict[str, NnunetModel]
    calibration: dict[str, Calibration]
    prior: str
    validation: dict[str, Any]
    sources: dict[str, str]  # stage -> attempt the bundle was made from
    crop: TorchModel | None = None  # the sagittal crop classifier (bundles made before it have none)
