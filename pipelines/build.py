"""The pipelines: ``train``, ``inference`` and one-task pipelines.

``train`` and ``inference`` are built from :mod:`lumbar_core.graph`: one task per graph task, in the
given images, each waiting for (and pinned to) the tasks whose stages it reads, as the registry
declares them. Stages that run in shards (ingest, predict) fan out over study shards with
``dsl.ParallelFor`` and are merged after. One-task pipelines (``lumbar submit --stage NAME``) rerun a
stage on a run's store prefix.

Tasks pass store URIs and stage references (``"{stage}@{attempt}"``), never data.
"""

import dataclasses
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from kfp import dsl

from components import COMPONENTS, with_image
from lumbar_core import graph
from lumbar_core.errors import UnknownNameError
from lumbar_core.stages import STAGES, get_stage
from pipelines.images import Images
from pipelines.kube import DEFAULT_GPU_NODE_SELECTOR, DEFAULT_GPU_TOLERATION, Placement, configure

DEFAULT_S3_SECRET = "lumbar-s3"
DEFAULT_PROFILE = "realistic"


def node_of(name: str) -> str:
    """``gpu`` or ``cpu``: the registry's node kind (the helper components are cpu)."""
    return STAGES[name].node if name in STAGES else "cpu"


class _Tasks:
    """Makes configured tasks of the components, in the given images."""

    def __init__(self, images: Images, s3_secret: str, retries: int):
        self.components = {name: with_image(c, images.for_node(node_of(name))) for name, c in COMPONENTS.items()}
        self.s3_secret = s3_secret
        self.retries = retries
        self.placement: Placement | None = None

    def __call__(self, component: str, display: str, /, **kwargs) -> dsl.PipelineTask:
        task = self.components[component](**kwargs)
        return configure(
            task, component, node_of(component), display=display, s3_secret=self.s3_secret, gpu=self.placement, retries=self.retries
        )


def ref(task: dsl.PipelineTask):
    """A stage task's reference output (``"{stage}@{attempt}"``)."""
    return task.outputs["Output"]


def _sharded(t: _Tasks, task: graph.Task, values: dict[str, Any], after: list, common: dict, count) -> dsl.PipelineTask:
    """``count`` shard tasks of ``task`` in a ParallelFor, then its merge task.

    kfp.local gives a loop body the loop item in place of any upstream task output, so the shards take
    their studies and upstream references from the fan-out's items only.
    """
    studies = values.pop("studies", [])
    items = t("fan-out", f"{task.label}: shards", count=count, studies=studies, after=after)
    with dsl.ParallelFor(items.output) as item:
        extra = {"studies": item.studies} if "studies" in task.fixed else {}
        part = t(
            task.stage,
            f"{task.label}: shard",
            shard_index=item.shard_index,
            shard_count=count,
            after=item.after,
            **extra,
            **values,
            **common,
        )
    return t(task.spec.merge, f"{task.label}: merge", name=task.name, shard_count=count, after=dsl.Collected(ref(part)), **common)


def _wire(t: _Tasks, tasks: tuple[graph.Task, ...], args: Mapping[str, Any], common: dict, shards: Mapping[str, Any]) -> None:
    """One KFP task (or shards and a merge) per graph task, each after the tasks whose stages it reads."""
    made: dict[str, dsl.PipelineTask] = {}
    for task in tasks:
        after = [ref(made[name]) for name in graph.upstream(task, tasks)]
        values = {k: graph.resolve(v, args) for k, v in {**task.fixed, **task.inputs}.items()}
        if task.spec.merge:
            made[task.name] = _sharded(t, task, values, after, common, shards[task.stage])
        else:
            made[task.name] = t(task.stage, task.label, after=after, **values, **common)


def build_train(images: Images, *, s3_secret: str = DEFAULT_S3_SECRET, profile: str = DEFAULT_PROFILE, retries: int = 2) -> Callable:
    """The training pipeline: every stage, the model bundle, then predict and score the validation studies."""
    t = _Tasks(images, s3_secret, retries)

    @dsl.pipeline(name="lumbar-train", description="Train every model on a dataset's training studies; predict and score the rest.")
    def train(
        data_uri: str,
        run_uri: str,
        spider_uri: str = "",
        profile: str = profile,
        overrides: dict = {},
        ingest_shards: int = 2,
        predict_shards: int = 2,
        gpu_node_selector: dict = dict(DEFAULT_GPU_NODE_SELECTOR),
        gpu_toleration: dict = dict(DEFAULT_GPU_TOLERATION),
    ):
        t.placement = Placement(gpu_node_selector, gpu_toleration)
        common = {"run_uri": run_uri, "profile": profile, "overrides": overrides}
        inputs = t("train-inputs", "split studies", data_uri=data_uri, spider_uri=spider_uri, profile=profile, overrides=overrides)
        args = {
            "data_uri": data_uri,
            "spider_uri": inputs.outputs["spider_uri"],
            "training_studies": inputs.outputs["training"],
            "validation_studies": inputs.outputs["validation"],
        }
        _wire(t, graph.TRAIN, args, common, {"ingest": ingest_shards, "predict": predict_shards})

    return train


def build_inference(images: Images, *, s3_secret: str = DEFAULT_S3_SECRET, profile: str = DEFAULT_PROFILE, retries: int = 2) -> Callable:
    """The inference pipeline: ingest a split's studies, predict them with a model bundle, score."""
    t = _Tasks(images, s3_secret, retries)

    @dsl.pipeline(name="lumbar-inference", description="Predict a dataset's studies with a model bundle; write the submission.")
    def inference(
        data_uri: str,
        run_uri: str,
        models_uri: str,
        split: str = "test",
        profile: str = profile,
        overrides: dict = {},
        ingest_shards: int = 2,
        predict_shards: int = 2,
        gpu_node_selector: dict = dict(DEFAULT_GPU_NODE_SELECTOR),
        gpu_toleration: dict = dict(DEFAULT_GPU_TOLERATION),
    ):
        t.placement = Placement(gpu_node_selector, gpu_toleration)
        common = {"run_uri": run_uri, "profile": profile, "overrides": overrides}
        args = {"data_uri": data_uri, "models_uri": models_uri, "split": split}
        _wire(t, graph.INFERENCE, args, common, {"ingest": ingest_shards, "predict": predict_shards})

    return inference


def build_stage(
    stage: str, images: Images, *, s3_secret: str = DEFAULT_S3_SECRET, profile: str = DEFAULT_PROFILE, retries: int = 2
) -> Callable:
    """A one-task pipeline that reruns ``stage`` on a run's store prefix (its inputs are already there).

    Its parameters are the component's inputs (``after`` is empty: the task reads whatever is
    committed) plus the GPU placement for GPU stages. ``models_uri`` '' means the run's own bundle.
    """
    spec = get_stage(stage)  # an unknown name lists the valid ones
    t = _Tasks(images, s3_secret, retries)
    component = COMPONENTS[stage]
    wanted = [p for p in inspect.signature(component.python_func).parameters.values() if p.name != "after" and _is_input(p)]
    # the stage's own Params defaults (a tuple as a list: KFP takes lists), then the run's settings
    defaults = {f.name: list(f.default) if isinstance(f.default, tuple) else f.default for f in dataclasses.fields(spec.params)}
    defaults |= {"profile": profile, "overrides": {}}
    params = [
        p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD, default=defaults.get(p.name, inspect.Parameter.empty)) for p in wanted
    ]
    gpu = node_of(stage) == "gpu"
    if gpu:
        params += [
            inspect.Parameter(
                "gpu_node_selector", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=dict(DEFAULT_GPU_NODE_SELECTOR), annotation=dict
            ),
            inspect.Parameter(
                "gpu_toleration", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=dict(DEFAULT_GPU_TOLERATION), annotation=dict
            ),
        ]
    required = [p for p in params if p.default is inspect.Parameter.empty]
    optional = [p for p in params if p.default is not inspect.Parameter.empty]

    names = [p.name for p in required + optional]

    def one_task(*args):
        kwargs = dict(zip(names, args))
        if gpu:
            t.placement = Placement(kwargs.pop("gpu_node_selector"), kwargs.pop("gpu_toleration"))
        if "after" in inspect.signature(component.python_func).parameters:
            kwargs["after"] = []
        t(stage, stage, **kwargs)

    one_task.__signature__ = inspect.Signature(required + optional)
    one_task.__name__ = f"lumbar_{stage.replace('-', '_')}"
    return dsl.pipeline(name=f"lumbar-stage-{stage}", description=f"Rerun {stage} on a run's store prefix.")(one_task)


def _is_input(p: inspect.Parameter) -> bool:
    return "Output" not in str(p.annotation)


BUILDERS = {"train": build_train, "inference": build_inference}


def get_builder(pipeline: str) -> Callable:
    """The builder of ``train`` or ``inference``; another name lists the valid ones."""
    try:
        return BUILDERS[pipeline]
    except KeyError:
        raise UnknownNameError(f"unknown pipeline {pipeline!r}; valid: {', '.join(BUILDERS)}") from None
