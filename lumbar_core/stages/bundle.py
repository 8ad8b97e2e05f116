"""bundle (cpu): one versioned package of every trained model, the thing predict and inference read.

Reads vertebra-train (U-Net), level-train (the level localiser), nnunet-train (results folders),
densenet-train (DenseNet), crop-train (sagittal crop classifier), calibrate (every model's weight, fitted on the prediction path), balance
(the prior), disc-label (its spacing and region radius, overlay), vertebra-segment (overlay,
localisation) and ingest's manifest (the training data's fingerprint).

Writes under ``{run}/bundle/``: ``models/unet.pt``, ``models/localiser.pt``, ``models/densenet.pt``, ``models/crop.pt``,
``models/nnunet/{family}/`` (plans.json, dataset.json, fold_0/checkpoint_final.pth), ``prior.json``,
``figures/*.png`` and ``bundle.json`` (:class:`lumbar_core.documents.BundleMetadata`: code and
library versions, training data fingerprint, classes, spacings, calibration weights, validation
metrics, the attempts it was made from). The bundle's URI is the stage prefix ``{run}/bundle``; the
folder (its ``_SUCCESS.json`` included) can be copied anywhere and used from there.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
from dataclasses import dataclass
from importlib import metadata

from lumbar_core import settings, vocab
from lumbar_core.classes import FAMILIES, label_names
from lumbar_core.documents import BundleMetadata, CalibrationResult, NnunetModel, NnunetTraining, TorchModel, TrainingData
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.model_bundle import FORMAT_VERSION, STAGE
from lumbar_core.models.checkpoint import from_bytes
from lumbar_core.params import Params
from lumbar_core.prediction import NNUNET_FILES

LIBRARIES = ("torch", "torchvision", "nnunetv2", "segmentation-models-pytorch", "numpy", "pydicom", "SimpleITK", "kfp")
FIGURES = {"vertebra-segment": "localisation.png", "disc-label": "regions.png"}


@dataclass(frozen=True)
class BundleParams(Params):
    """Parameters of bundle (none: it packages what the training stages committed)."""


def _libraries() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def fingerprint(ingest: Manifest) -> str:
    """sha256 over the training ingest's tables (their paths and sha256s): equal data, equal fingerprint."""
    digest = hashlib.sha256()
    for entry in sorted(ingest.files.values(), key=lambda e: e.path):
        digest.update(f"{entry.path}:{entry.sha256}\n".encode())
    return digest.hexdigest()


def _copy(source: StageInput, relpath: str, out: StageOutput, target: str) -> None:
    out.write_bytes(target, source.read_bytes(relpath))


def run(*, run_uri: str, params: BundleParams) -> Manifest:
    """Package the committed models of a training run; see the module docstring."""
    ingest = StageInput.open(run_uri, "ingest")
    unet = StageInput.open(run_uri, "vertebra-train")
    segment = StageInput.open(run_uri, "vertebra-segment")
    disc = StageInput.open(run_uri, "disc-label")
    balance = StageInput.open(run_uri, "balance")
    nnunet = StageInput.open(run_uri, "nnunet-train")
    densenet = StageInput.open(run_uri, "densenet-train")
    crop = StageInput.open(run_uri, "crop-train")
    level = StageInput.open(run_uri, "level-train")
    calibrate = StageInput.open(run_uri, "calibrate")
    calibration = CalibrationResult.from_dict(calibrate.read_json("calibration.json"), where=f"{calibrate.prefix}/calibration.json")
    out = StageOutput(run_uri, STAGE)

    unet_bytes = unet.read_bytes("model.pt")
    out.write_bytes("models/unet.pt", unet_bytes)
    densenet_bytes = densenet.read_bytes("model.pt")
    out.write_bytes("models/densenet.pt", densenet_bytes)
    densenet_config = from_bytes(densenet_bytes)[1]
    crop_bytes = crop.read_bytes("model.pt")
    out.write_bytes("models/crop.pt", crop_bytes)
    localiser_bytes = level.read_bytes("model.pt")
    out.write_bytes("models/localiser.pt", localiser_bytes)
    _copy(balance, "prior.json", out, "prior.json")

    training = NnunetTraining.from_dict(nnunet.read_json("training.json"), where=f"{run_uri}/nnunet-train/training.json")
    spacing, radius = float(disc.params["spacing_mm"]), float(disc.params["radius_mm"])
    models = {}
    for family, info in training.families.items():
        folder = f"models/nnunet/{family}"
        for name in NNUNET_FILES:
            _copy(nnunet, f"results/{info.output_folder}/{name}", out, f"{folder}/{name}")
        models[family] = NnunetModel(
            folder=folder,
            series_type=FAMILIES[family].series_type,
            conditions=list(FAMILIES[family].conditions),
            spacing_mm=spacing,
            region_mm=radius,
            labels=label_names(),
            class_frequencies=info.class_frequencies,
        )
    for stage_input, figure in ((segment, FIGURES["vertebra-segment"]), (disc, FIGURES["disc-label"])):
        if "overlay.png" in stage_input.manifest.files:
            _copy(stage_input, "overlay.png", out, f"figures/{figure}")

    validation = {
        "vertebra-train": unet.manifest.metrics,
        "level-train": level.manifest.metrics,
        "nnunet-train": nnunet.manifest.metrics,
        "densenet-train": densenet.manifest.metrics,
        "crop-train": crop.manifest.metrics,
        "calibrate": {"studies": calibration.studies, "localisation": calibration.localisation},
    }
    if "localisation.json" in segment.manifest.files:
        validation["vertebra-segment"] = segment.read_json("localisation.json")
    data_uri = ingest.params.get("data_uri") or next((s.get("data_uri") for s in ingest.params.get("shards", [])), "")
    sources = {
        s.manifest.stage: s.manifest.attempt for s in (ingest, unet, segment, disc, balance, nnunet, densenet, crop, level, calibrate)
    }
    meta = BundleMetadata(
        format_version=FORMAT_VERSION,
        bundle_id=out.attempt.removeprefix("attempt-"),
        created=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        code_version=settings.code_version(),
        libraries=_libraries(),
        training_data=TrainingData(
            fingerprint=fingerprint(ingest.manifest),
            studies=int(ingest.manifest.metrics["studies"]),
            data_uri=str(data_uri),
            ingest_attempt=ingest.manifest.attempt,
        ),
        conditions=list(vocab.CONDITIONS),
        levels=list(vocab.LEVELS),
        severities=list(vocab.SEVERITY_COLUMNS),
        unet=TorchModel("models/unet.pt", from_bytes(unet_bytes)[1]),
        localiser=TorchModel("models/localiser.pt", from_bytes(localiser_bytes)[1]),
        levels_source=calibration.levels_source,
        densenet=TorchModel("models/densenet.pt", densenet_config),
        nnunet=models,
        calibration=calibration.models,
        prior="prior.json",
        validation=validation,
        sources=sources,
        crop=TorchModel("models/crop.pt", from_bytes(crop_bytes)[1]),
    )
    out.write_json("bundle.json", meta.to_dict())
    metrics = {"models": 4 + len(models), "training_studies": meta.training_data.studies, "format_version": FORMAT_VERSION}
    return out.commit(params=params.to_dict(), metrics=metrics)
