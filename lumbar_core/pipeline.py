"""The whole training pipeline, run stage by stage in this process (``lumbar run --runner inline``).

The labelled studies of ``{data}/train.csv`` are split (by a hash of the study id) into training and
validation studies. Training studies go through ingest -> vertebra-train -> vertebra-segment ->
disc-label -> balance -> nnunet-prepare -> nnunet-train -> densenet-train; validation studies
through their own ingest (``ingest-validation``) -> predict -> score with the trained models. The
run ends with ``{run}/score/submission.csv``, ``report.html`` and ``metrics.json``.

Parameters come from a profile (``lumbar_core/profiles/{name}.yaml``: stage -> params), then
``--set stage.key=value`` overrides. A stage already committed with the same parameters is skipped
(reruns continue where a run stopped); once one stage runs, every later stage runs again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from lumbar_core import store
from lumbar_core.errors import UnknownNameError, UserError
from lumbar_core.manifest import MANIFEST, stage_uri
from lumbar_core.splits import split_groups
from lumbar_core.stages import STAGES

VALIDATION_INGEST = "ingest-validation"


def load_profile(name: str) -> dict[str, Any]:
    """A profile's ``run`` and ``stages`` settings; an unknown name lists the valid ones."""
    files = {p.name.removesuffix(".yaml"): p for p in resources.files("lumbar_core.profiles").iterdir() if p.name.endswith(".yaml")}
    if name not in files:
        raise UnknownNameError(f"unknown profile {name!r}; valid: {', '.join(sorted(files))}")
    data = yaml.safe_load(files[name].read_text())
    return {"run": data.get("run", {}), "stages": {k: dict(v or {}) for k, v in data.get("stages", {}).items()}}


def apply_overrides(profile: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """``stage.key=value`` (or ``run.key=value``) overrides on a profile; unknown stages are an error."""
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise UserError(f"--set takes stage.key=value, got {dotted!r}")
        if section == "run":
            profile["run"][key] = value
        elif section in STAGES:
            profile["stages"].setdefault(section, {})[key] = value
        else:
            raise UserError(f"--set {dotted}: unknown stage {section!r}; valid: run, {', '.join(STAGES)}")
    return profile


@dataclass
class Step:
    """One stage call of the plan: registry name, the stage name it writes, inputs and params."""

    stage: str
    writes: str
    inputs: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)


def training_split(data_uri: str, profile: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The training and validation studies of ``{data}/train.csv`` under the profile's ``run`` settings."""
    where = store.join(data_uri, "train.csv")
    labels = pd.read_csv(store.bytes_io(where))
    if "study_id" not in labels.columns:
        raise UserError(f"{where}: no 'study_id' column")
    train, val = split_groups(
        labels["study_id"].astype(int).unique().tolist(),
        float(profile["run"].get("validation_fraction", 0.25)),
        int(profile["run"].get("seed", 0)),
    )
    if not train or not val:
        raise UserError(f"{where} has {len(labels)} studies: need at least two to split into training and validation")
    return train, val


def spider_root(data_uri: str, spider_uri: str | None) -> str:
    """The SPIDER-format folder: ``spider_uri``, or ``{data_uri}/spider`` when not given."""
    return spider_uri or store.join(data_uri, "spider")


def plan(data_uri: str, run_uri: str, profile: dict[str, Any], *, spider_uri: str | None = None) -> list[Step]:
    """The ordered stage calls of a training run."""
    train, val = training_split(data_uri, profile)
    s = profile["stages"]
    data = {"data_uri": data_uri}
    return [
        Step("ingest", "ingest", data, {**s.get("ingest", {}), "studies": tuple(train), "name": "ingest"}),
        Step("ingest", VALIDATION_INGEST, data, {**s.get("ingest", {}), "studies": tuple(val), "name": VALIDATION_INGEST}),
        Step("vertebra-train", "vertebra-train", {"spider_uri": spider_root(data_uri, spider_uri)}, s.get("vertebra-train", {})),
        Step("vertebra-segment", "vertebra-segment", {}, s.get("vertebra-segment", {})),
        Step("disc-label", "disc-label", {}, s.get("disc-label", {})),
        Step("balance", "balance", {}, s.get("balance", {})),
        Step("nnunet-prepare", "nnunet-prepare", {}, s.get("nnunet-prepare", {})),
        Step("nnunet-train", "nnunet-train", {}, s.get("nnunet-train", {})),
        Step("densenet-train", "densenet-train", {}, s.get("densenet-train", {})),
        Step("predict", "predict", {}, {**s.get("predict", {}), "ingest_stage": VALIDATION_INGEST}),
        Step("score", "score", {}, {**s.get("score", {}), "ingest_stage": VALIDATION_INGEST}),
    ]


def _already_done(run_uri: str, step: Step, params: dict[str, Any]) -> bool:
    uri = store.join(stage_uri(run_uri, step.writes), MANIFEST)
    if not store.exists(uri):
        return False
    recorded = store.read_json(uri).get("params", {})
    wanted = {**params, **step.inputs}
    return all(recorded.get(k) == (list(v) if isinstance(v, tuple) else v) for k, v in wanted.items())


def run_inline(
    data_uri: str, run_uri: str, profile: dict[str, Any], *, spider_uri: str | None = None, force: bool = False, log=print
) -> dict:
    """Run every stage of the plan in this process; returns score's metrics."""
    rerun = force
    for step in plan(data_uri, run_uri, profile, spider_uri=spider_uri):
        spec = STAGES[step.stage]
        params = spec.params.from_dict(step.params)
        if not rerun and _already_done(run_uri, step, params.to_dict()):
            log(f"[skip] {step.writes}: committed with the same parameters")
            continue
        rerun = True
        log(f"[run ] {step.writes}")
        started = time.perf_counter()
        spec.run(run_uri=run_uri, params=params, **step.inputs)
        log(f"[done] {step.writes} in {time.perf_counter() - started:.1f} s ({spec.node} stage)")
    return store.read_json(store.join(stage_uri(run_uri, "score"), "metrics.json"))
