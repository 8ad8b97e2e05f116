"""One pipeline task, for any runner: resolve a stage's parameters, check its upstream, run it, report.

The KFP components (``components/``) are thin wrappers around :func:`run_task`; this module imports
no kfp. A task's parameters are the profile's settings for its stage (``lumbar_core/profiles``),
then the run's overrides (``{"stage.key": value}``, as ``lumbar run --set``), then what the pipeline
fixes (studies, shard, stage names). Tasks pass references ``"{stage}@{attempt}"`` to each other:
they order the tasks, key KFP's cache (a retrained upstream has a new attempt, so its dependants
rerun) and are checked before a task reads anything, so a task never reads an upstream that was
replaced after it was scheduled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lumbar_core import pipeline
from lumbar_core.cpus import limit_torch_threads, task_threads
from lumbar_core.manifest import Manifest, ManifestError, StageInput
from lumbar_core.params import Params
from lumbar_core.stages import get_stage


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


def stage_params(stage: str, profile: str, overrides: Mapping[str, Any] | None = None, fixed: Mapping[str, Any] | None = None) -> Params:
    """The Params of ``stage``: profile settings, then ``stage.key`` overrides, then the fixed values."""
    settings = resolved_profile(profile, overrides)
    spec = get_stage(stage)
    return spec.params.from_dict({**settings["stages"].get(stage, {}), **(fixed or {})})


def check_upstream(run_uri: str, after: Iterable[str]) -> None:
    """Every ``"{stage}@{attempt}"`` in ``after`` is still that stage's committed attempt ('' is skipped)."""
    for ref in after:
        if not ref:
            continue
        stage, sep, attempt = str(ref).partition("@")
        if not sep:
            raise ValueError(f"upstream reference {ref!r} is not 'stage@attempt'")
        committed = StageInput.open(run_uri, stage, verify=False).manifest.attempt
        if committed != attempt:
            raise ManifestError(
                f"{run_uri}/{stage}: committed attempt is {committed}, but this task was scheduled after {attempt}; "
                "the stage was rerun meanwhile, so rerun the tasks after it"
            )


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
    """Run one stage as a pipeline task; ``log_metric`` receives its numeric metrics."""
    check_upstream(run_uri, after)
    params = stage_params(stage, profile, overrides, fixed)
    spec = get_stage(stage)
    if spec.node == "gpu":  # the torch stages (on a CPU too)
        limit_torch_threads(task_threads(getattr(params, "shard_count", 1)))
    manifest: Manifest = spec.run(run_uri=run_uri, params=params, **dict(inputs or {}))
    if log_metric is not None:
        for key, value in numeric_metrics(manifest.metrics).items():
            log_metric(key, value)
    return TaskResult(manifest.stage, manifest.attempt)
