"""The stage registry, which is the stage graph: each stage's function, Params, node, reads and writes.

:data:`STAGES` maps a kebab-case name to a :class:`StageSpec`. The CLI, the pipelines, the inline
plan, the upstream check and the docs' stage table (``docs/stages.md``, :func:`stage_table`) all
iterate over it; stages never import each other. :func:`run_stage` runs one stage under a guard
that holds it to its declared reads and writes (see :mod:`lumbar_core.contracts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from lumbar_core import documents, model_bundle
from lumbar_core.contracts import Read, ReadGuard, Write, reading
from lumbar_core.errors import ContractError, UnknownNameError, UpstreamChangedError
from lumbar_core.manifest import Manifest, StageInput, stage_uri
from lumbar_core.params import Params
from lumbar_core.stages import (
    balance,
    bundle,
    calibrate,
    crop_train,
    densenet_train,
    disc_label,
    ingest,
    level_train,
    nnunet_prepare,
    nnunet_train,
    predict,
    score,
    vertebra_segment,
    vertebra_train,
)


@dataclass(frozen=True)
class StageSpec:
    """One stage: its function (keyword-only: ``run_uri``, the ``inputs`` URIs, ``params``), Params, node and contract.

    Attributes:
        name: kebab-case registry name.
        run: the stage function.
        params: its Params class.
        node: ``cpu`` or ``gpu``.
        help: one line for ``lumbar stage --help`` and the docs.
        inputs: URI arguments besides ``run_uri`` that point outside the store's runs (``data_uri``).
        reads: the upstream stages and files it reads.
        writes: the files it writes.
        name_param: the Params field naming the stage it writes (None: the registry name).
        merge: the stage that combines its shards (``{name}-shard-{i}``) into ``{name}``, if it runs in shards.
    """

    name: str
    run: Callable[..., Manifest]
    params: type[Params]
    node: str
    help: str
    inputs: tuple[str, ...] = ()
    reads: tuple[Read, ...] = ()
    writes: tuple[Write, ...] = ()
    name_param: str | None = None
    merge: str | None = None

    def written_stage(self, params: Params) -> str:
        """The stage this call commits (before sharding)."""
        return str(getattr(params, self.name_param)) if self.name_param else self.name


INGEST_TABLES = (
    Write("series_index.parquet", "one row per stack", documents.SERIES_INDEX),
    Write("slices.parquet", "one row per image: stack, spatial slice index, instance, IPP", documents.SLICES),
    Write("labels.parquet", "train.csv in long form", documents.LABELS),
    Write("coordinates.parquet", "label coordinates with their stack and slice", documents.COORDINATES),
    Write("problems.parquet", "what could not be read, per file", documents.PROBLEMS),
)
INGEST_READ = ("*.parquet", "volumes/*")
PREDICT_TABLES = (
    Write("predictions.parquet", "per study, condition and level: the severity probabilities and their source", documents.PREDICTIONS),
    Write("levels.parquet", "the levels found per study"),
    Write("problems.parquet", "studies or levels predicted from the prior, and why", documents.PREDICT_PROBLEMS),
    Write("readings.parquet", "each model's own severity distribution per cell, before the prior", documents.READINGS),
    Write("timing.json", "seconds per study by step; torch's threads"),
)

STAGES: dict[str, StageSpec] = {
    spec.name: spec
    for spec in (
        StageSpec(
            "ingest",
            ingest.run,
            ingest.IngestParams,
            "cpu",
            "DICOM series -> series index, volumes, label tables",
            inputs=("data_uri",),
            writes=(*INGEST_TABLES, Write("volumes/*", "one file per stack: pixels in spatial order, geometry")),
            name_param="name",
            merge="ingest-merge",
        ),
        StageSpec(
            "ingest-merge",
            ingest.merge,
            ingest.MergeParams,
            "cpu",
            "combine ingest shards into one ingest stage",
            reads=(Read("ingest", ("*.parquet",), name_param="name", shards=True),),
            writes=INGEST_TABLES,
            name_param="name",
        ),
        StageSpec(
            "vertebra-train",
            vertebra_train.run,
            vertebra_train.VertebraTrainParams,
            "gpu",
            "U-Net (ResNet encoder) on a SPIDER-format folder",
            inputs=("spider_uri",),
            writes=(Write("model.pt", "U-Net weights and config"), Write("metrics.json", "per-class Dice per epoch")),
        ),
        StageSpec(
            "vertebra-segment",
            vertebra_segment.run,
            vertebra_segment.VertebraSegmentParams,
            "gpu",
            "vertebra masks, instances and disc-level centres of every study",
            reads=(Read("ingest", INGEST_READ, shards=True), Read("vertebra-train", ("model.pt",))),
            writes=(
                Write("masks/*", "vertebra masks per sagittal stack"),
                Write("levels.parquet", "per study and level: disc and canal centre (LPS mm) and source", documents.LEVELS),
                Write("stack_levels.parquet", "every level in every stack's pixels"),
                Write("problems.parquet", "studies with levels not found"),
                Write("localisation.json", "localisation error against the labelled points"),
                Write("overlay.png", "U-Net classes and disc centres"),
            ),
        ),
        StageSpec(
            "disc-label",
            disc_label.run,
            disc_label.DiscLabelParams,
            "cpu",
            "nnU-Net cases whose disc regions carry (level, severity)",
            reads=(Read("ingest", INGEST_READ, shards=True), Read("vertebra-segment", ("masks/*", "levels.parquet"))),
            writes=(
                Write("cases/*", "one .npz per case: image, label, spacing"),
                Write("cases.parquet", "one row per case", documents.CASES),
                Write("regions.parquet", "one row per labelled region", documents.REGIONS),
                Write("overlay.png", "the training classes on a few cases"),
            ),
        ),
        StageSpec(
            "balance",
            balance.run,
            balance.BalanceParams,
            "cpu",
            "class census, the case multiplicities and the prior",
            reads=(Read("ingest", ("labels.parquet",), shards=True), Read("disc-label", ("regions.parquet",))),
            writes=(
                Write("census.parquet", "labels and regions per (condition, level, severity)"),
                Write("classes.parquet", "per nnU-Net class: cases before and after balancing", documents.CLASSES),
                Write("balanced.parquet", "per case: its multiplicity", documents.BALANCED),
                Write("census.json", "missing classes, totals"),
                Write("prior.json", "per condition x level severity prior of the training labels"),
            ),
        ),
        StageSpec(
            "nnunet-prepare",
            nnunet_prepare.run,
            nnunet_prepare.NnunetPrepareParams,
            "cpu",
            "nnU-Net raw datasets, plans, preprocessing",
            reads=(
                Read("disc-label", ("cases.parquet", "cases/*")),
                Read("balance", ("balanced.parquet",)),
                Read("ingest", ("labels.parquet",), shards=True),
            ),
            writes=(
                Write("raw/*", "nnU-Net raw datasets"),
                Write("preprocessed/*", "plans, preprocessed data, splits"),
                Write(
                    "datasets.json",
                    "per family: dataset, plans, case multiplicities; the held-out studies",
                    document=documents.PreparedDatasets,
                ),
            ),
        ),
        StageSpec(
            "nnunet-train",
            nnunet_train.run,
            nnunet_train.NnunetTrainParams,
            "gpu",
            "nnU-Net 2d training per family, its evidence weight fitted",
            reads=(
                Read("nnunet-prepare", ("datasets.json", "preprocessed/*")),
                Read("disc-label", ("cases.parquet", "regions.parquet", "cases/*")),
                Read("balance", ("prior.json",)),
            ),
            writes=(
                Write("results/*", "nnU-Net results folders"),
                Write("training.json", "per family: pseudo Dice per epoch, sampling, fitted weight", document=documents.NnunetTraining),
            ),
        ),
        StageSpec(
            "densenet-train",
            densenet_train.run,
            densenet_train.DensenetTrainParams,
            "gpu",
            "axial DenseNet for subarticular stenosis, its evidence weight fitted",
            reads=(
                Read("ingest", INGEST_READ, shards=True),
                Read("vertebra-segment", ("levels.parquet",)),
                Read("balance", ("prior.json",)),
            ),
            writes=(
                Write("model.pt", "DenseNet weights and config"),
                Write("metrics.json", "loss, accuracy, lr per epoch; the fit; the held-out studies"),
            ),
        ),
        StageSpec(
            "crop-train",
            crop_train.run,
            crop_train.CropTrainParams,
            "gpu",
            "sagittal crop classifier for spinal canal stenosis and foraminal narrowing",
            reads=(
                Read("ingest", INGEST_READ, shards=True),
                Read("vertebra-segment", ("levels.parquet",)),
            ),
            writes=(
                Write("model.pt", "classifier weights and config"),
                Write("metrics.json", "loss, accuracy, lr per epoch; crops per task; the held-out studies"),
            ),
        ),
        StageSpec(
            "level-train",
            level_train.run,
            level_train.LevelTrainParams,
            "gpu",
            "level localiser trained on the training studies' labelled points, from the U-Net's encoder",
            reads=(Read("ingest", INGEST_READ, shards=True), Read("vertebra-train", ("model.pt",))),
            writes=(
                Write("model.pt", "localiser weights and config"),
                Write("metrics.json", "loss per epoch; localisation on the held-out studies; the held-out studies"),
            ),
        ),
        StageSpec(
            "calibrate",
            calibrate.run,
            calibrate.CalibrateParams,
            "gpu",
            "every model's weight against the prior, fitted on held-out studies on the prediction path",
            reads=(
                Read("ingest", INGEST_READ, shards=True),
                Read("vertebra-train", ("model.pt",)),
                Read("level-train", ("model.pt", "metrics.json")),
                Read("nnunet-prepare", ("datasets.json",)),
                Read("nnunet-train", ("training.json", "results/*")),
                Read("densenet-train", ("model.pt", "metrics.json")),
                Read("crop-train", ("model.pt", "metrics.json")),
                Read("disc-label", ()),
                Read("balance", ("prior.json",)),
            ),
            writes=(
                Write("calibration.json", "per model: tau, floor, readings; localisation per source", document=documents.CalibrationResult),
            ),
        ),
        StageSpec(
            "bundle",
            bundle.run,
            bundle.BundleParams,
            "cpu",
            "one versioned model bundle: every trained model, the prior, calibration, metadata",
            reads=(
                Read("ingest", ()),
                Read("vertebra-train", ("model.pt", "metrics.json")),
                Read("vertebra-segment", ("overlay.png", "localisation.json")),
                Read("disc-label", ("overlay.png",)),
                Read("balance", ("prior.json",)),
                Read("nnunet-train", ("training.json", "results/*")),
                Read("densenet-train", ("model.pt", "metrics.json")),
                Read("crop-train", ("model.pt", "metrics.json")),
                Read("level-train", ("model.pt",)),
                Read("calibrate", ("calibration.json",)),
            ),
            writes=(
                Write(
                    "bundle.json",
                    "metadata: versions, data fingerprint, classes, spacings, calibration, metrics",
                    document=documents.BundleMetadata,
                ),
                Write("models/*", "the U-Net, the level localiser, the DenseNet, the crop classifier and nnU-Net's results folders"),
                Write("prior.json", "the training prior"),
                Write("figures/*", "training figures for reports"),
            ),
        ),
        StageSpec(
            "predict",
            predict.run,
            predict.PredictParams,
            "gpu",
            "severity probabilities for ingested studies, from a model bundle",
            reads=(
                Read("ingest", INGEST_READ, name_param="ingest_stage", shards=True),
                Read("bundle", ("bundle.json", "prior.json", "models/*"), uri_param="models_uri"),
            ),
            writes=PREDICT_TABLES,
            name_param="name",
            merge="predict-merge",
        ),
        StageSpec(
            "predict-merge",
            predict.merge,
            predict.MergeParams,
            "cpu",
            "combine predict shards into one predict stage",
            reads=(Read("predict", ("*.parquet", "timing.json"), name_param="name", shards=True),),
            writes=PREDICT_TABLES,
            name_param="name",
        ),
        StageSpec(
            "score",
            score.run,
            score.ScoreParams,
            "cpu",
            "submission.csv, score table, report.html",
            reads=(
                Read("predict", ("predictions.parquet", "levels.parquet", "problems.parquet", "readings.parquet")),
                Read("ingest", INGEST_READ, name_param="ingest_stage", shards=True),
                Read("bundle", ("bundle.json", "prior.json", "figures/*"), uri_param="models_uri"),
            ),
            writes=(
                Write("submission.csv", "the Kaggle submission"),
                Write("metrics.json", "the score terms, the prior's and each model's alone beside them"),
                Write("confusion.json", "true x predicted severity (labelled studies)"),
                Write(
                    "report.html", "score table (fused and each model alone), confusion, calibration, per-study views, sources, overlays"
                ),
            ),
        ),
    )
}


def get_stage(name: str) -> StageSpec:
    """A stage by name; an unknown name lists the valid ones."""
    try:
        return STAGES[name]
    except KeyError:
        raise UnknownNameError(f"unknown stage {name!r}; valid: {', '.join(STAGES)}") from None


def resolved_reads(spec: StageSpec, run_uri: str, params: Params) -> list[tuple[Read, str]]:
    """Each declared read as (read, prefix of the stage it opens) for these params."""
    out = []
    for read in spec.reads:
        external = read.external_uri(params)
        if read.stage == model_bundle.STAGE:
            out.append((read, model_bundle.resolve_bundle(external or run_uri)))
        else:
            out.append((read, external or stage_uri(run_uri, read.stage_name(params))))
    return out


def parse_refs(refs: Iterable[str]) -> dict[str, str]:
    """``["{stage}@{attempt}", ...]`` (a pipeline's upstream references; '' skipped) as stage -> attempt."""
    out = {}
    for ref in refs:
        if not ref:
            continue
        stage, sep, attempt = str(ref).partition("@")
        if not sep:
            raise ValueError(f"upstream reference {ref!r} is not 'stage@attempt'")
        out[stage] = attempt
    return out


def run_stage(
    spec: StageSpec, *, run_uri: str, params: Params, inputs: Mapping[str, str] | None = None, pinned: Mapping[str, str] | None = None
) -> Manifest:
    """Run one stage held to its declared reads and writes, its pinned upstream attempts checked first.

    ``pinned`` (stage -> attempt, from a pipeline's references) must each be covered by a declared
    read and still be committed at that attempt: a stage rerun since the task was scheduled fails
    the task before it starts (:class:`~lumbar_core.errors.UpstreamChangedError`), and so does every
    later open of a pinned stage that changed meanwhile.
    """
    guard = ReadGuard(spec.name, run_uri, resolved_reads(spec, run_uri, params), dict(pinned or {}), writes=spec.writes)
    for stage, attempt in guard.pinned.items():
        prefix = stage_uri(run_uri, stage)
        if guard.covering(prefix) is None:
            raise ContractError(f"stage {spec.name} was scheduled after {stage}, which it does not declare it reads")
        committed = StageInput.open(run_uri, stage, verify=False).manifest.attempt
        if committed != attempt:
            raise UpstreamChangedError(
                f"{prefix}: committed attempt is {committed}, but this task was scheduled after {attempt}; "
                "the stage was rerun meanwhile, so rerun the tasks after it"
            )
    with reading(guard):
        return spec.run(run_uri=run_uri, params=params, **dict(inputs or {}))


def stage_table() -> str:
    """The stages as a Markdown table (``docs/stages.md``), generated from the registry."""

    def reads(spec: StageSpec) -> str:
        parts = []
        for r in spec.reads:
            where = f" (`{r.name_param}`)" if r.name_param else (f" (at `{r.uri_param}`)" if r.uri_param else "")
            files = ", ".join(f"`{f}`" for f in r.files) or "manifest"
            parts.append(f"{r.stage}{where}: {files}")
        parts += [f"`{i}`" for i in spec.inputs]
        return "<br>".join(parts) or "-"

    def writes(spec: StageSpec) -> str:
        return "<br>".join(f"`{w.path}`: {w.what}" for w in spec.writes)

    lines = ["| stage | node | what it does | reads | writes |", "|---|---|---|---|---|"]
    for spec in STAGES.values():
        lines.append(f"| `{spec.name}` | {spec.node} | {spec.help} | {reads(spec)} | {writes(spec)} |")
    return "\n".join(lines) + "\n"
