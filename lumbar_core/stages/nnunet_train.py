"""nnunet-train (gpu): nnU-Net 2d training of each family through nnunetv2's Python API.

Reads nnunet-prepare (preprocessed datasets, plans, splits). Trains :class:`LumbarTrainer` (fold 0
of the prepared split) with epochs and iterations from Params, on CUDA when present (nnU-Net uses
mixed precision there) else the CPU. The latest checkpoint is copied to
``{run}/nnunet-train/_work/{family}/`` after every epoch, and a rerun resumes from it.

A class whose last pseudo Dice is nan never appeared in validation (or was never predicted): the
stage fails naming them, unless ``allow_missing``, which records them as warnings.

Writes under ``{run}/nnunet-train/``: ``results/{dataset}/{trainer}__{plans}__2d/`` (plans.json,
dataset.json, fold_0/checkpoint_final.pth, progress.png), ``training.json`` (pseudo Dice per epoch
per class, how often training drew each class and the resulting severity frequencies per level,
the fitted evidence weight and floor, warnings).
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from lumbar_core import settings, store
from lumbar_core.calibration import level_frequencies
from lumbar_core.documents import FamilyTraining, NnunetTraining, PreparedDataset, PreparedDatasets
from lumbar_core.ingested import load_arrays
from lumbar_core.manifest import Manifest, StageInput, StageOutput, stage_uri
from lumbar_core.nnunet.dataset import label_names, nnunet_env
from lumbar_core.params import Params

STAGE = "nnunet-train"


class NanPseudoDiceError(RuntimeError):
    """Classes whose pseudo Dice is nan at the end of training."""


@dataclass(frozen=True)
class NnunetTrainParams(Params):
    """Parameters of nnunet-train.

    Attributes:
        epochs: training epochs.
        iterations: training iterations per epoch (nnU-Net's default is 250).
        val_iterations: validation iterations per epoch (default 50).
        allow_missing: warn instead of failing on classes with nan pseudo Dice.
        resume: continue from the last epoch checkpoint in the store.
        families: which datasets to train (comma-separated; default both).
        processes: nnU-Net's data-augmentation worker processes (0 = automatic: on a GPU up to 8 of
            the CPUs, which keeps the GPU fed; on the CPU 1, which leaves the cores to training).
        optimizer: "adamw" (learns the levels within a few hundred iterations) or "sgd" (nnU-Net's
            own, tuned for its 250,000-iteration schedule).
        learning_rate: initial learning rate (0 = nnU-Net's 1e-2 for SGD, 3e-4 for AdamW).
        class_balance: case sampling power (see :class:`LumbarTrainer`): 0 = nnU-Net's uniform
            sampling, 1 = every class about equally often (over-fits the few rare cases; 0.5 did
            best on the quality bench).
    """

    epochs: int = 5
    iterations: int = 50
    val_iterations: int = 10
    allow_missing: bool = False
    resume: bool = True
    families: tuple[str, ...] = ("spinal", "foraminal")
    processes: int = 0
    optimizer: str = "adamw"
    learning_rate: float = 1e-3
    class_balance: float = 0.5


def augmentation_processes(requested: int, cuda: bool) -> int:
    """nnU-Net's augmentation workers: ``requested``, or when 0 a choice for the device."""
    if requested > 0:
        return requested
    return max(1, min(8, settings.workers() - 1)) if cuda else 1


def _train_family(work: Path, prepared: PreparedDataset, params: NnunetTrainParams, run_uri: str, family: str) -> FamilyTraining:
    import torch
    from batchgenerators.utilities.file_and_folder_operations import load_json

    from lumbar_core.nnunet.trainer import LumbarTrainer

    name = prepared.dataset
    preprocessed = work / "preprocessed" / name
    plans = load_json(str(preprocessed / f"{prepared.plans}.json"))
    checkpoint_uri = store.join(stage_uri(run_uri, STAGE), "_work", family, "checkpoint_latest.pth")
    resuming = params.resume and store.exists(checkpoint_uri)
    plans["continue_training"] = resuming  # nnU-Net's trainer expects its CLI to have set this
    dataset_json = load_json(str(preprocessed / "dataset.json"))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    trainer = LumbarTrainer(plans=plans, configuration="2d", fold=0, dataset_json=dataset_json, device=device)
    trainer.configure_length(epochs=params.epochs, iterations=params.iterations, val_iterations=params.val_iterations)
    trainer.configure_training(
        optimizer=params.optimizer,
        learning_rate=params.learning_rate or None,
        class_balance=params.class_balance,
        multiplicity=prepared.multiplicity,
    )

    def upload_checkpoint(t: LumbarTrainer) -> None:
        latest = Path(t.output_folder) / "checkpoint_latest.pth"
        if latest.exists():
            store.upload(latest, checkpoint_uri)

    trainer.epoch_callback = upload_checkpoint
    if resuming:
        local = Path(trainer.output_folder) / "checkpoint_latest.pth"
        store.download(checkpoint_uri, local)
        trainer.load_checkpoint(str(local))
    trainer.run_training()
    frequencies = level_frequencies(trainer.sampled_class_counts or {})
    tau, floor, losses, cases = _fit_tau(trainer, work / "preprocessed" / name / "splits_final.json", run_uri, frequencies)
    history = trainer.pseudo_dice_history()
    names = [n for n, v in sorted(label_names().items(), key=lambda kv: kv[1]) if v > 0]
    last = history[-1] if history else []
    nan_classes = [names[i] for i, v in enumerate(last) if math.isnan(v)]
    store.delete(checkpoint_uri)
    return FamilyTraining(
        dataset=name,
        output_folder=str(Path(trainer.output_folder_base).relative_to(work / "results")),
        pseudo_dice=[{n: (None if math.isnan(v) else round(v, 4)) for n, v in zip(names, epoch)} for epoch in history],
        nan_classes=nan_classes,
        device=device.type,
        tau=float(tau),
        floor=float(floor),
        tau_losses=losses,
        tau_regions=cases,
        class_frequencies={level: [round(float(v), 6) for v in q] for level, q in frequencies.items()},
        sampled_class_counts={names[c - 1]: n for c, n in (trainer.sampled_class_counts or {}).items()},
        optimizer=trainer.optimizer_name,
        learning_rate=float(trainer.initial_lr),
    )


def _fit_tau(trainer, splits_file: Path, run_uri: str, frequencies: dict) -> tuple[float, float, dict[str, float], int]:
    """Fit the evidence weight and floor of this family on its validation cases (see :mod:`lumbar_core.calibration`).

    The evidence of a region is nnU-Net's severity distribution at its level divided by that level's
    training frequencies (``frequencies``): the softmax of a model trained on those frequencies is a
    posterior, and dividing them out leaves the likelihood ratio.
    """
    import numpy as np

    from lumbar_core.calibration import fit_tau
    from lumbar_core.nnunet.predict import level_distribution, load_predictor, predict_slice
    from lumbar_core.prior import prior_from_json

    val_cases = sorted(set(json.loads(splits_file.read_text())[0]["val"]))
    disc = StageInput.open(run_uri, "disc-label")
    regions = disc.read_table("regions.parquet").rename(columns={"class": "cls"})
    cases = disc.read_table("cases.parquet").set_index("case_id")
    prior = prior_from_json(StageInput.open(run_uri, "balance").read_json("prior.json"))
    radius_px = float(disc.params["radius_mm"]) / float(disc.params["spacing_mm"])
    predictor = load_predictor(Path(trainer.output_folder_base))
    priors, dists, denominators, truth = [], [], [], []
    for case_id in val_cases:
        z = load_arrays(disc.read_bytes(cases.loc[case_id, "path"]))
        image, label, spacing = z["image"], z["label"], float(z["spacing"][0])
        probs = predict_slice(predictor, image, spacing)
        for row in regions[regions["case_id"] == case_id].itertuples():
            rows, cols = np.nonzero(label == row.cls)
            if len(rows) == 0:
                continue
            dist = level_distribution(probs, row.level, (float(cols.mean()), float(rows.mean())), radius_px)
            if dist is not None:
                priors.append(prior[(row.condition, row.level)])
                dists.append(dist)
                denominators.append(frequencies.get(row.level, np.ones(3)))
                truth.append(row.severity)
    if not truth:
        return 0.0, 0.0, {}, 0
    tau, floor, losses = fit_tau(np.array(priors), np.array(dists), np.array(truth), denominators=np.array(denominators))
    return tau, floor, losses, len(truth)


def check_nan_classes(report: dict[str, FamilyTraining], *, allow_missing: bool) -> dict[str, list[str]]:
    """Families' classes with nan pseudo Dice at the end; an error naming them unless ``allow_missing`` (then a warning)."""
    problems = {f: r.nan_classes for f, r in report.items() if r.nan_classes}
    if problems:
        message = "; ".join(f"{f}: {', '.join(c)}" for f, c in problems.items())
        if not allow_missing:
            raise NanPseudoDiceError(
                f"nan pseudo Dice (class absent from validation or never learnt) for {message}. "
                "Balance the classes (stage balance) or pass allow_missing (--allow-missing true)."
            )
        warnings.warn(f"nnunet-train: nan pseudo Dice for {message}", stacklevel=2)
    return problems


def run(*, run_uri: str, params: NnunetTrainParams) -> Manifest:
    """Train each family's nnU-Net; see the module docstring."""
    prepared = StageInput.open(run_uri, "nnunet-prepare")
    datasets = PreparedDatasets.from_dict(prepared.read_json("datasets.json"), where=f"{prepared.prefix}/datasets.json").families
    unknown = sorted(set(params.families) - set(datasets))
    if unknown:
        raise ValueError(f"nnunet-train: no prepared dataset for {', '.join(unknown)}; prepared: {', '.join(sorted(datasets))}")
    out = StageOutput(run_uri, STAGE)
    report: dict[str, FamilyTraining] = {}
    with tempfile.TemporaryDirectory(prefix="lumbar-nnunet-") as tmp:
        work = Path(tmp)
        for path in prepared.paths("preprocessed"):
            store.download(prepared.uri(path), work / path)
        import torch

        with nnunet_env(work, processes=augmentation_processes(params.processes, torch.cuda.is_available())):
            for family in params.families:
                report[family] = _train_family(work, datasets[family], params, run_uri, family)
        out.upload_dir(work / "results", "results")
    problems = check_nan_classes(report, allow_missing=params.allow_missing)
    out.write_json("training.json", NnunetTraining(report, problems).to_dict())
    metrics = {}
    for family, r in report.items():
        last = r.pseudo_dice[-1] if r.pseudo_dice else {}
        values = [v for v in last.values() if v is not None]
        metrics[f"{family}_mean_pseudo_dice"] = float(sum(values) / len(values)) if values else float("nan")
        metrics[f"{family}_nan_classes"] = len(r.nan_classes)
    return out.commit(params=params.to_dict(), metrics=metrics | {"device": json.dumps(sorted({r.device for r in report.values()}))})
