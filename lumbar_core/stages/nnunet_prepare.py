"""nnunet-prepare (cpu): nnU-Net raw datasets from the balanced cases, then nnU-Net's planning and preprocessing.

Reads disc-label (cases), balance (multiplicities) and ingest's labels (the training studies). For each family (``spinal``, ``foraminal``)
writes ``Dataset{id}_Lumbar{Family}`` (dataset.json, imagesTr, labelsTr; each case once), runs
nnunetv2's fingerprint extraction, ExperimentPlanner (its plans file then edited, as nnU-Net's docs
show, where ``base_features`` or ``batch_size`` ask for it) and the ``2d`` preprocessing through its
Python API, and writes ``splits_final.json`` with one train/val split by study: the cases of the
training studies :func:`lumbar_core.splits.held_out_studies` holds out validate (the slices of one
study never straddle the split). Balance's multiplicities are not
copies on disk: they travel in ``datasets.json`` to the trainer, which draws each case that many
times more often.

Writes under ``{run}/nnunet-prepare/``: ``raw/{dataset}/...``, ``preprocessed/{dataset}/...`` and
``datasets.json`` (:class:`lumbar_core.documents.PreparedDatasets`: per family the dataset name, id,
plans, images, patch and batch size, features, case multiplicities).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lumbar_core.classes import FAMILIES
from lumbar_core.documents import PreparedDataset, PreparedDatasets
from lumbar_core.ingested import IngestedData, load_arrays
from lumbar_core.manifest import Manifest, StageInput, StageOutput
from lumbar_core.nnunet.dataset import dataset_name, nnunet_env, splits, write_raw_dataset
from lumbar_core.params import Params
from lumbar_core.splits import held_out_studies

STAGE = "nnunet-prepare"


@dataclass(frozen=True)
class NnunetPrepareParams(Params):
    """Parameters of nnunet-prepare.

    Attributes:
        dataset_id: id of the spinal dataset; the foraminal one takes the next id.
        val_fraction: share of the training studies held out (their cases validate; calibrate
            fits on them too): :func:`lumbar_core.splits.held_out_studies`.
        processes: worker processes for nnU-Net's fingerprinting and preprocessing.
        seed: seed of the split.
        base_features: feature maps of the U-Net's first stage, doubling per stage up to nnU-Net's
            2D maximum (nnU-Net plans 32; fewer make a CPU iteration cheaper).
        batch_size: images per training iteration (0 = nnU-Net's planned batch size).
    """

    dataset_id: int = 501
    val_fraction: float = 0.2
    processes: int = 2
    seed: int = 0
    base_features: int = 32
    batch_size: int = 0


def customise_plans(plans_file: Path, *, base_features: int, batch_size: int) -> dict:
    """Set the 2d configuration's first-stage features (doubling per stage, capped) and batch size in a plans file."""
    plans = json.loads(plans_file.read_text())
    config = plans["configurations"]["2d"]
    arch = config["architecture"]["arch_kwargs"]
    cap = max(arch["features_per_stage"])
    arch["features_per_stage"] = [min(base_features * 2**i, cap) for i in range(arch["n_stages"])]
    if batch_size > 0:
        config["batch_size"] = batch_size
    plans_file.write_text(json.dumps(plans, indent=1))
    return plans


def _cases(disc: StageInput, cases: pd.DataFrame):
    for row in cases.itertuples():
        z = load_arrays(disc.read_bytes(row.path))
        yield row.case_id, z["image"], z["label"], float(z["spacing"][0])


def run(*, run_uri: str, params: NnunetPrepareParams) -> Manifest:
    """Write, plan and preprocess both nnU-Net datasets."""
    disc = StageInput.open(run_uri, "disc-label")
    balanced = StageInput.open(run_uri, "balance").read_table("balanced.parquet")
    labelled = sorted(int(s) for s in IngestedData.open(run_uri).table("labels")["study_id"].unique())
    held_out = set(held_out_studies(labelled, params.val_fraction, params.seed))
    all_cases = disc.read_table("cases.parquet")
    copies = {str(c): int(m) for c, m in zip(balanced["case_id"], balanced["multiplicity"])}
    out = StageOutput(run_uri, STAGE)
    summary: dict[str, PreparedDataset] = {}
    with tempfile.TemporaryDirectory(prefix="lumbar-nnunet-") as tmp:
        work = Path(tmp)
        with nnunet_env(work, processes=params.processes) as paths:
            from nnunetv2.experiment_planning.plan_and_preprocess_api import (
                extract_fingerprint_dataset,
                plan_experiment_dataset,
                preprocess_dataset,
            )

            for family, spec in FAMILIES.items():
                cases = all_cases[(all_cases["family"] == family) & all_cases["case_id"].isin(copies)]
                if cases.empty:
                    continue
                dataset_id = params.dataset_id + spec.id_offset
                name = dataset_name(dataset_id, family)
                n = write_raw_dataset(paths["nnUNet_raw"], name, _cases(disc, cases))
                extract_fingerprint_dataset(dataset_id, num_processes=params.processes, verbose=False, show_progress_bar=False)
                _, identifier = plan_experiment_dataset(dataset_id)
                plans_file = paths["nnUNet_preprocessed"] / name / f"{identifier}.json"
                plans = customise_plans(plans_file, base_features=params.base_features, batch_size=params.batch_size)
                preprocess_dataset(
                    dataset_id, identifier, configurations=("2d",), num_processes=(params.processes,), show_progress_bar=False
                )
                groups = {c: int(s) for c, s in zip(cases["case_id"], cases["study_id"])}
                split = splits(list(cases["case_id"]), held_out, groups)
                (paths["nnUNet_preprocessed"] / name / "splits_final.json").write_text(json.dumps(split, indent=1))
                config = plans["configurations"]["2d"]
                summary[family] = PreparedDataset(
                    dataset=name,
                    dataset_id=dataset_id,
                    plans=identifier,
                    training_images=n,
                    cases=len(cases),
                    patch_size=list(config["patch_size"]),
                    batch_size=int(config["batch_size"]),
                    features_per_stage=list(config["architecture"]["arch_kwargs"]["features_per_stage"]),
                    multiplicity={c: copies[c] for c in cases["case_id"]},
                )
        if not summary:
            raise ValueError("nnunet-prepare: the balanced case list is empty")
        out.upload_dir(work / "raw", "raw")
        out.upload_dir(work / "preprocessed", "preprocessed")
    out.write_json("datasets.json", PreparedDatasets(summary, sorted(held_out)).to_dict())
    metrics = {f"{family}_images": s.training_images for family, s in summary.items()}
    return out.commit(params=params.to_dict(), metrics=metrics)
