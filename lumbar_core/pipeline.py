"""The pipelines run stage by stage in this process (``lumbar run --runner inline``), and their settings.

The labelled studies of ``{data}/train.csv`` are split (by a hash of the study id) into training and
validation studies. The train pipeline (:data:`lumbar_core.graph.TRAIN`) ingests both, trains every
model on the training studies, packs them into a model bundle and predicts and scores the
validation studies with it; the inference pipeline ingests a split and predicts it with a given
bundle. Either ends with ``{run}/score/submission.csv``, ``report.html`` and ``metrics.json``.

Parameters come from a profile (``lumbar_core/profiles/{name}.yaml``: stage -> params), then
``--set stage.key=value`` overrides. A stage already committed with the same parameters, from the
upstream attempts that are committed now, is skipped: reruns continue where a run stopped, and a
rerun upstream stage makes everything after it run again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from lumbar_core import graph, store
from lumbar_core.errors import ManifestError, UnknownNameError, UserError
from lumbar_core.manifest import MANIFEST, Manifest, StageInput, stage_uri
from lumbar_core.splits import split_groups
from lumbar_core.stages import STAGES, get_stage, run_stage


def load_profile(name: str) -> dict[str, Any]:
    """A profile's ``run`` and ``stages`` settings; an unknown name lists the valid ones."""
    files = {p.name.removesuffix(".yaml"): p for p in resources.files("lumbar_core.profiles").iterdir() if p.name.endswith(".yaml")}
    if name not in files:
        raise UnknownNameError(f"unknown profile {name!r}; valid: {', '.join(sorted(files))}")
    data = yaml.safe_load(files[name].read_text())
    return {"run": data.get("run", {}), "stages": {k: dict(v or {}) for k, v in data.get("stages", {}).items()}}


RUN_SETTINGS = ("validation_fraction", "seed")


def apply_overrides(profile: dict[str, Any], overrides: dict[str, str]) -> dict[str, Any]:
    """``stage.key=value`` (or ``run.key=value``) overrides on a profile, each checked before anything runs.

    An unknown stage or key lists the valid ones; a value the stage's Params cannot take names it.
    """
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if not key:
            raise UserError(f"--set takes stage.key=value, got {dotted!r}")
        if section == "run":
            if key not in RUN_SETTINGS:
                raise UserError(f"--set {dotted}: unknown run setting {key!r}; valid: {', '.join(RUN_SETTINGS)}")
            _check_run_setting(dotted, key, value)
            profile["run"][key] = value
        elif section in STAGES:
            settings = {**profile["stages"].get(section, {}), key: value}
            STAGES[section].params.from_dict(settings)  # ParamsError names an unknown key or a bad value
            profile["stages"][section] = settings
        else:
            raise UserError(f"--set {dotted}: unknown stage {section!r}; valid: run, {', '.join(STAGES)}")
    return profile


def _check_run_setting(dotted: str, key: str, value: str) -> None:
    try:
        number = float(value) if key == "validation_fraction" else int(value)
    except ValueError:
        kind = "a number" if key == "validation_fraction" else "a whole number"
        raise UserError(f"--set {dotted}={value}: {key} must be {kind}") from None
    if key == "validation_fraction" and not 0 < number < 1:
        raise UserError(f"--set {dotted}={value}: validation_fraction must be between 0 and 1")


@dataclass
class Step:
    """One stage call of the plan: registry name, the stage it writes, inputs, params and the steps it reads."""

    stage: str
    writes: str
    inputs: dict[str, str] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    after: list[str] = field(default_factory=list)


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


def plan(
    data_uri: str,
    profile: dict[str, Any],
    *,
    pipeline: str = "train",
    spider_uri: str | None = None,
    models_uri: str = "",
    split: str = "test",
) -> list[Step]:
    """The ordered stage calls of a pipeline (:mod:`lumbar_core.graph`), each sharded stage as one shard."""
    tasks = graph.get_pipeline(pipeline)
    args: dict[str, Any] = {"data_uri": data_uri, "models_uri": models_uri, "split": split}
    if pipeline == "train":
        train, val = training_split(data_uri, profile)
        args |= {"spider_uri": spider_root(data_uri, spider_uri), "training_studies": tuple(train), "validation_studies": tuple(val)}
    elif not models_uri:
        raise UserError("the inference pipeline needs a model bundle (--models URI: a bundle, or a training run holding one)")
    steps = []
    for task in tasks:
        fixed = {k: graph.resolve(v, args) for k, v in task.fixed.items()}
        inputs = {k: graph.resolve(v, args) for k, v in task.inputs.items()}
        params = {**profile["stages"].get(task.stage, {}), **fixed}
        steps.append(Step(task.stage, task.name, inputs, params, graph.upstream(task, tasks)))
    return steps


def _committed(run_uri: str, key: str) -> str | None:
    """The attempt committed at an upstream key (a stage of this run, or a prefix elsewhere), if any."""
    prefix = key if "/" in key else stage_uri(run_uri, key)
    uri = store.join(prefix, MANIFEST)
    return store.read_json(uri).get("attempt") if store.exists(uri) else None


def up_to_date(run_uri: str, step: Step, params: dict[str, Any]) -> bool:
    """Whether ``step`` is committed with these params and inputs, from the upstream attempts committed now."""
    uri = store.join(stage_uri(run_uri, step.writes), MANIFEST)
    if not store.exists(uri):
        return False
    try:
        manifest = Manifest.from_dict(store.read_json(uri), where=uri)
    except ManifestError:
        return False
    wanted = {**params, **step.inputs}
    if any(manifest.params.get(k) != (list(v) if isinstance(v, tuple) else v) for k, v in wanted.items()):
        return False
    return all(_committed(run_uri, key) == attempt for key, attempt in manifest.upstream.items())


def outdated(run_uri: str, steps: list[Step]) -> list[str]:
    """The stages of ``steps`` that a run would (re)run: not up to date, or after one that reruns."""
    stale: set[str] = set()
    for step in steps:
        params = get_stage(step.stage).params.from_dict(step.params).to_dict()
        if stale & set(step.after) or not up_to_date(run_uri, step, params):
            stale.add(step.writes)
    return [step.writes for step in steps if step.writes in stale]


def run_inline(
    data_uri: str,
    run_uri: str,
    profile: dict[str, Any],
    *,
    pipeline: str = "train",
    spider_uri: str | None = None,
    models_uri: str = "",
    split: str = "test",
    force: bool = False,
    log=print,
) -> dict:
    """Run every stage of a pipeline in this process; returns score's metrics."""
    for step in plan(data_uri, profile, pipeline=pipeline, spider_uri=spider_uri, models_uri=models_uri, split=split):
        spec = get_stage(step.stage)
        params = spec.params.from_dict(step.params)
        if not force and up_to_date(run_uri, step, params.to_dict()):
            log(f"[skip] {step.writes}: committed with the same parameters and inputs")
            continue
        log(f"[run ] {step.writes}")
        started = time.perf_counter()
        run_stage(spec, run_uri=run_uri, params=params, inputs=step.inputs)
        log(f"[done] {step.writes} in {time.perf_counter() - started:.1f} s ({spec.node} stage)")
    return StageInput.open(run_uri, "score").read_json("metrics.json")
