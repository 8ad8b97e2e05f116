"""The pipelines: ``train``, ``inference`` and one-task pipelines.

``train`` runs every stage; ``inference`` ingests a split, predicts with given models and scores;
one-task pipelines (``lumbar submit --stage NAME``) rerun a stage on a run's store prefix.

Tasks pass store URIs and stage references (``"{stage}@{attempt}"``), never data; ingest and predict
fan out over study shards with ``dsl.ParallelFor`` and are merged after.
"""

import inspect
from collections.abc import Callable

from kfp import dsl

from components import COMPONENTS, with_image
from lumbar_core.errors import UnknownNameError
from lumbar_core.pipeline import VALIDATION_INGEST
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


def _ingest(t: _Tasks, *, data_uri, common: dict, split: str, studies, name: str, shards, display: str) -> dsl.PipelineTask:
    items = t("fan-out", f"{display}: shards", count=shards, studies=studies, after=[])
    with dsl.ParallelFor(items.output) as item:
        part = t(
            "ingest",
            f"{display}: ingest shard",
            data_uri=data_uri,
            split=split,
            studies=item.studies,
            name=name,
            shard_index=item.shard_index,
            shard_count=shards,
            **common,
        )
    return t("ingest-merge", f"{display}: merge", name=name, shard_count=shards, after=dsl.Collected(ref(part)), **common)


def _predict_and_score(t: _Tasks, *, common: dict, ingest_stage: str, models_uri, shards, after: list) -> dsl.PipelineTask:
    items = t("fan-out", "predict: shards", count=shards, studies=[], after=after)
    with dsl.ParallelFor(items.output) as item:
        part = t(
            "predict",
            "predict shard",
            ingest_stage=ingest_stage,
            models_uri=models_uri,
            shard_index=item.shard_index,
            shard_count=shards,
            after=item.after,
            **common,
        )
    merged = t("predict-merge", "predict: merge", shard_count=shards, after=dsl.Collected(ref(part)), **common)
    return t("score", "score", ingest_stage=ingest_stage, models_uri=models_uri, after=[ref(merged)], **common)


def build_train(images: Images, *, s3_secret: str = DEFAULT_S3_SECRET, profile: str = DEFAULT_PROFILE, retries: int = 2) -> Callable:
    """The training pipeline: every stage, then predict and score the validation studies."""
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
        split = t("split-studies", "split studies", data_uri=data_uri, profile=profile, overrides=overrides)
        training = _ingest(
            t,
            data_uri=data_uri,
            common=common,
            split="train",
            studies=split.outputs["training"],
            name="ingest",
            shards=ingest_shards,
            display="training studies",
        )
        validation = _ingest(
            t,
            data_uri=data_uri,
            common=common,
            split="train",
            studies=split.outputs["validation"],
            name=VALIDATION_INGEST,
            shards=ingest_shards,
            display="validation studies",
        )
        unet = t("vertebra-train", "vertebra-train", data_uri=data_uri, spider_uri=spider_uri, **common)
        segmented = t("vertebra-segment", "vertebra-segment", after=[ref(training), ref(unet)], **common)
        labelled = t("disc-label", "disc-label", after=[ref(segmented)], **common)
        balanced = t("balance", "balance", after=[ref(labelled)], **common)
        prepared = t("nnunet-prepare", "nnunet-prepare", after=[ref(balanced)], **common)
        nnunet = t("nnunet-train", "nnunet-train", after=[ref(prepared)], **common)
        densenet = t("densenet-train", "densenet-train", after=[ref(segmented), ref(balanced)], **common)
        _predict_and_score(
            t,
            common=common,
            ingest_stage=VALIDATION_INGEST,
            models_uri="",
            shards=predict_shards,
            after=[ref(validation), ref(unet), ref(balanced), ref(nnunet), ref(densenet)],
        )

    return train


def build_inference(images: Images, *, s3_secret: str = DEFAULT_S3_SECRET, profile: str = DEFAULT_PROFILE, retries: int = 2) -> Callable:
    """The inference pipeline: ingest a split's studies, predict them with a training run's models, score."""
    t = _Tasks(images, s3_secret, retries)

    @dsl.pipeline(name="lumbar-inference", description="Predict a dataset's studies with trained models; write the submission.")
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
        ingested = _ingest(
            t, data_uri=data_uri, common=common, split=split, studies=[], name="ingest", shards=ingest_shards, display="studies to predict"
        )
        _predict_and_score(t, common=common, ingest_stage="ingest", models_uri=models_uri, shards=predict_shards, after=[ref(ingested)])

    return inference


def build_stage(
    stage: str, images: Images, *, s3_secret: str = DEFAULT_S3_SECRET, profile: str = DEFAULT_PROFILE, retries: int = 2
) -> Callable:
    """A one-task pipeline that reruns ``stage`` on a run's store prefix (its inputs are already there).

    Its parameters are the component's inputs (``after`` is empty: the task reads whatever is
    committed) plus the GPU placement for GPU stages.
    """
    get_stage(stage)  # an unknown name lists the valid ones
    t = _Tasks(images, s3_secret, retries)
    component = COMPONENTS[stage]
    wanted = [p for p in inspect.signature(component.python_func).parameters.values() if p.name != "after" and _is_input(p)]
    defaults = {
        "profile": profile,
        "overrides": {},
        "models_uri": "",
        "spider_uri": "",
        "name": "ingest",
        "shard_index": 0,
        "shard_count": 1,
    }
    defaults |= {"split": "train", "studies": [], "ingest_stage": "ingest"}
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
