"""One pipeline task, for any runner: resolve a stage's parameters, check its upstream, run it, report.

The KFP components (``components/``) are thin wrappers around :func:`run_task`; this module imports
no kfp. A task's parameters are the profile's settings for its stage (``lumbar_core/profiles``),
then the run's overrides (``{"stage.key": value}``, as ``lumbar run --set``), then what the pipeline
fixes (studies, shard, stage names). Tasks pass references ``"{stage}@{attempt}"`` to each other,
one for every stage a task reads (the pipelines derive them from the registry's declared reads):
they order the tasks, key KFP's cache (a retrained upstream has a new attempt, so its dependants
rerun) and pin the task's reads, so a task never reads an upstream that was replaced after it was
scheduled (:func:`lumbar_core.stages.run_stage`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lumbar_core import pipeline
from lumbar_core.cpus import limit_torch_threads, task_threads
from lumbar_core.manifest import Manifest, StageInput
from lumbar_core.params import Params
from lumbar_core.stages import get_stage, parse_refs, run_stage


@dataclass(frozen=True)
class TaskResult:
    """What a task hands on: the committed stage and its attempt."""

    stage: str
    attempt: str

    @property
    def ref(self) -> str:
        """``"{stage}@{attempt}"``: what dependants receive."""
        return f"{self.stage}@{self.attempt}"


def resolved_profile(profile: str, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A profile's settings after the run's ``stage.key`` overrides."""
    return pipeline.apply_overrides(pipeline.load_profile(profile), dict(overrides or {}))


def training_split(data_uri: str, profile: str, overrides: Mapping[str, Any] | None = None) -> tuple[list[int], list[int]]:
    """Training and validation studies of a dataset (plain ints), as ``lumbar run`` splits them."""
    training, validation = pipeline.training_split(data_uri, resolved_profile(profile, overrides))
    return [int(s) for s in training], [int(s) for s in validation]


def score_views(run_uri: str) -> tuple[str, dict[str, Any] | None]:
    """What a UI shows of a committed score stage: report.html's text and the pooled confusion matrix (if labelled)."""
    scored = StageInput.open(run_uri, "score")
    matrix = scored.read_json("confusion.json") if "confusion.json" in scored.manifest.files else None
    return scored.read_bytes("report.html").decode(), matrix


def bundle_view(run_uri: str) -> tuple[str, str, dict[str, Any]]:
    """What a UI shows of a committed model bundle: its URI, bundle.json's text and a few metadata fields."""
    from lumbar_core.model_bundle import open_bundle

    stage, meta = open_bundle(run_uri, run_uri)
    fields = {"bundle_id": meta.bundle_id, "code_version": meta.code_version, "training_studies": meta.training_data.studies}
    return stage.prefix, stage.read_bytes("bundle.json").decode(), fields


def stage_params(stage: str, profile: str, overrides: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None) -> Params:
    """The Params of ``stage``: profile settings, then ``stage.key`` overrides, then the fixed values."""
    settings = resolved_profile(profile, overrides)
    spec = get_stage(stage)
    return spec.params.from_dict({**settings["stages"].get(stage, {}), **(fixed or {})})


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers among a manifest's metrics (what a metrics UI can plot)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def run_task(
    stage: str,
    run_uri: str,
    *,
    profile: str,
    overrides: Mapping[str, Any] | None = None,
    fixed: Mapping[str, Any] | None = None,
    inputs: Mapping[str, str] | None = None,
    after: Iterable[str] = (),
    log_metric: Callable[[str, float], None] | None = None,
) -> TaskResult:
    """Run one stage as a pipeline task, its reads pinned to ``after``; ``log_metric`` receives its numeric metrics."""
    pinned = parse_refs(after)
    params = stage_params(stage, profile, overrides, fixed)
    spec = get_stage(stage)
    if spec.node == "gpu":  # the torch stages (on a CPU too)
        limit_torch_threads(task_threads(getattr(params, "shard_count", 1)))
    manifest: Manifest = run_stage(spec, run_uri=run_uri, params=params, inputs=inputs, pinned=pinned)
    if log_metric is not None:
        for key, value in numeric_metrics(manifest.metrics).items():
            log_metric(key, value)
    return TaskResult(manifest.stage, manifest.attempt)
