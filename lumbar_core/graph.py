"""The train and inference pipelines as data: the stage calls each makes, wired by what the stages read.

A pipeline is a tuple of :class:`Task` s, each one call of a registry stage with the parameters the
pipeline fixes (the stage it writes, the studies it ingests, the ingest stage it predicts). Which
task runs after which is written nowhere: :func:`upstream` derives it from the stages' declared
reads (:mod:`lumbar_core.stages`) resolved with each task's parameters. The inline runner
(:mod:`lumbar_core.pipeline`), the KFP pipelines (``pipelines/build.py``) and the docs' stage table
all take the graph from here, so adding a stage means a registry entry and, if a pipeline runs it,
one line below.

Values known only when a pipeline runs (its arguments, the study split) are :class:`Arg` s; each
runner resolves them its own way (the inline runner to plain values, the KFP pipelines to pipeline
parameters and task outputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from lumbar_core.contracts import Read
from lumbar_core.errors import UnknownNameError
from lumbar_core.stages import StageSpec, get_stage, stage_table

VALIDATION_INGEST = "ingest-validation"


@dataclass(frozen=True)
class Arg:
    """A value given when the pipeline runs: one of its arguments, or the study split's output.

    Names: ``data_uri``, ``spider_uri``, ``models_uri``, ``split`` (arguments) and
    ``training_studies``, ``validation_studies`` (the split of ``{data}/train.csv``).
    """

    name: str


@dataclass(frozen=True)
class Task:
    """One stage call of a pipeline.

    Attributes:
        stage: the registry name.
        fixed: Params fields the pipeline fixes (values or :class:`Arg`); the rest come from the profile.
        inputs: the stage's URI inputs besides ``run_uri`` (values or :class:`Arg`).
        display: what a UI calls the task (default: the stage it writes).
    """

    stage: str
    fixed: Mapping[str, Any] = field(default_factory=dict)
    inputs: Mapping[str, Any] = field(default_factory=dict)
    display: str = ""

    @property
    def spec(self) -> StageSpec:
        """The registry entry."""
        return get_stage(self.stage)

    @property
    def name(self) -> str:
        """The stage this task commits (its shards' merge commits it when it runs in shards)."""
        return str(self._value(self.spec.name_param)) if self.spec.name_param else self.stage

    @property
    def label(self) -> str:
        """What a UI calls the task."""
        return self.display or self.name

    def _value(self, param: str) -> Any:
        """A Params field as this task sets it: fixed here, else the Params default."""
        if param in self.fixed:
            return self.fixed[param]
        return next(f.default for f in fields(self.spec.params) if f.name == param)

    def reads(self) -> list[tuple[Read, str | None]]:
        """Each declared read with the stage it opens in this run (None: it is read elsewhere, e.g. a given bundle)."""
        out = []
        for read in self.spec.reads:
            if read.uri_param and (isinstance(self._value(read.uri_param), Arg) or self._value(read.uri_param)):
                out.append((read, None))
                continue
            name = self._value(read.name_param) if read.name_param else read.stage
            if isinstance(name, Arg):
                raise GraphError(f"task {self.label}: the stage it reads ({read.name_param}) must be fixed, not {name}")
            out.append((read, str(name)))
        return out


class GraphError(ValueError):
    """A pipeline whose tasks read a stage that no earlier task writes, or write one stage twice."""


def upstream(task: Task, tasks: tuple[Task, ...]) -> list[str]:
    """The names of the earlier tasks whose stages ``task`` reads, in pipeline order."""
    position = {t.name: i for i, t in enumerate(tasks)}
    mine = tasks.index(task)
    names = []
    for read, stage in task.reads():
        if stage is None:
            continue
        if stage not in position or position[stage] >= mine:
            raise GraphError(f"task {task.label} reads stage {stage!r} ({read.stage}), which no earlier task of the pipeline writes")
        if stage not in names:
            names.append(stage)
    return sorted(names, key=position.get)


def check(tasks: tuple[Task, ...]) -> None:
    """Every task writes its own stage and reads only stages that earlier tasks write."""
    seen: set[str] = set()
    for task in tasks:
        if task.name in seen:
            raise GraphError(f"two tasks write stage {task.name!r}")
        seen.add(task.name)
        upstream(task, tasks)


def _ingest(name: str, studies: Any, split: Any, display: str) -> Task:
    return Task("ingest", {"split": split, "studies": studies, "name": name}, {"data_uri": Arg("data_uri")}, display)


TRAIN: tuple[Task, ...] = (
    _ingest("ingest", Arg("training_studies"), "train", "training studies"),
    _ingest(VALIDATION_INGEST, Arg("validation_studies"), "train", "validation studies"),
    Task("vertebra-train", inputs={"spider_uri": Arg("spider_uri")}),
    Task("vertebra-segment"),
    Task("disc-label"),
    Task("balance"),
    Task("nnunet-prepare"),
    Task("nnunet-train"),
    Task("densenet-train"),
    Task("crop-train"),
    Task("level-train"),
    Task("calibrate"),
    Task("bundle"),
    Task("predict", {"ingest_stage": VALIDATION_INGEST, "models_uri": ""}),
    Task("score", {"ingest_stage": VALIDATION_INGEST, "models_uri": ""}),
)
INFERENCE: tuple[Task, ...] = (
    _ingest("ingest", [], Arg("split"), "studies to predict"),
    Task("predict", {"ingest_stage": "ingest", "models_uri": Arg("models_uri")}),
    Task("score", {"ingest_stage": "ingest", "models_uri": Arg("models_uri")}),
)
PIPELINES: dict[str, tuple[Task, ...]] = {"train": TRAIN, "inference": INFERENCE}


def get_pipeline(name: str) -> tuple[Task, ...]:
    """A pipeline's tasks by name; an unknown name lists the valid ones."""
    try:
        return PIPELINES[name]
    except KeyError:
        raise UnknownNameError(f"unknown pipeline {name!r}; valid: {', '.join(PIPELINES)}") from None


def resolve(value: Any, args: Mapping[str, Any]) -> Any:
    """``value`` with an :class:`Arg` replaced by its value in ``args``."""
    return args[value.name] if isinstance(value, Arg) else value


def graph_table() -> str:
    """The pipelines' tasks and what each waits for, as Markdown (for the docs' stage table)."""
    lines = []
    for name, tasks in PIPELINES.items():
        lines += [f"### {name}", "", "| writes | runs | after |", "|---|---|---|"]
        for task in tasks:
            runs = f"`{task.stage}`" + (f" in shards, then `{task.spec.merge}`" if task.spec.merge else "")
            lines.append(f"| `{task.name}` | {runs} | {', '.join(upstream(task, tasks)) or '-'} |")
        lines.append("")
    return "\n".join(lines)


def stages_page() -> str:
    """``docs/stages.md``: the registry's stages and the pipelines' tasks, generated (``make docs``)."""
    return "\n".join(
        [
            "# Stages and pipelines",
            "",
            "Generated from the stage registry (`lumbar_core/stages/__init__.py`) and the pipeline graph",
            "(`lumbar_core/graph.py`) by `make docs`; `make test` fails when this page is out of date.",
            "",
            "## Stages",
            "",
            "Every stage a stage opens and every file it reads or writes is declared in the registry. A stage",
            "run through `lumbar run`, `lumbar stage` or a pipeline task that opens or writes anything else",
            "fails (a bug, with its traceback); tables are checked against their columns and JSON documents",
            "against their types when written.",
            "",
            stage_table(),
            "## Pipelines",
            "",
            "Each task runs after the tasks that write what it reads (derived from the declarations above), and",
            "the references it receives pin those stages' attempts: a stage rerun meanwhile fails the task.",
            "",
            graph_table(),
        ]
    )
