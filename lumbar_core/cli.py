"""The ``lumbar`` command line: turns flags into calls of the library, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import pandas as pd

from lumbar_core.errors import UserError


def _cmd_score(args: argparse.Namespace) -> int:
    from lumbar_core import labels, score, store

    truth = labels.read_labels(pd.read_csv(store.bytes_io(args.truth)), source=args.truth)
    from lumbar_core.submission import read_submission

    table = score.score(truth, read_submission(args.submission))
    if args.json:
        print(json.dumps(table.terms(), sort_keys=False))
    else:
        print(table.format())
    return 0


def _cmd_prior(args: argparse.Namespace) -> int:
    from lumbar_core import labels, store
    from lumbar_core.prior import prior_submission, prior_table
    from lumbar_core.submission import write_submission

    truth = labels.read_labels(pd.read_csv(store.bytes_io(args.truth)), source=args.truth)
    studies = pd.read_csv(store.bytes_io(args.studies))
    if "study_id" not in studies.columns:
        raise UserError(f"{args.studies}: no 'study_id' column")
    ids = studies["study_id"].astype(int).unique()
    sub = prior_submission(ids, prior_table(truth), reweighted=not args.no_reweight)
    write_submission(sub, args.out, study_ids=ids)
    print(f"wrote the prior of {truth['study_id'].nunique()} labelled studies for {len(ids)} studies to {args.out}")
    return 0


def _parse_sets(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UserError(f"--set takes key=value, got {pair!r}")
        out[key.strip()] = value.strip()
    return out


def _cmd_synth(args: argparse.Namespace) -> int:
    from lumbar_core.synthetic import generate, get_profile
    from lumbar_core.synthetic.preview import write_preview

    profile = get_profile(args.profile).with_overrides(_parse_sets(args.set))
    summary = generate(
        args.out,
        studies=args.studies,
        test_studies=args.test_studies,
        profile=profile,
        seed=args.seed,
        workers=args.workers,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {summary['train_studies']} training and {summary['test_studies']} test studies "
        f"({summary['series']} series, {summary['coordinates']} labelled points, "
        f"{summary['spider_cases']} SPIDER cases) to {args.out}"
    )
    if args.preview:
        if summary["train_studies"] == 0:
            raise UserError("--preview needs at least one training study")
        print(f"preview: {write_preview(args.out, args.preview)}")
    return 0


def _cmd_stage(args: argparse.Namespace) -> int:
    import dataclasses

    from lumbar_core.stages import get_stage, run_stage

    spec = get_stage(args.stage)
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(spec.params) if getattr(args, f.name) is not None}
    params = spec.params.from_dict(given)
    inputs = {name: getattr(args, name.removesuffix("_uri")) for name in spec.inputs}
    manifest = run_stage(spec, run_uri=args.run, params=params, inputs=inputs)
    print(f"{args.stage}: committed {len(manifest.files)} files to {args.run}/{manifest.stage} ({manifest.attempt})")
    for key, value in manifest.metrics.items():
        print(f"  {key}: {value}")
    return 0


def _kfp_layer(module: str):
    """The KFP layer (``pipelines/``), imported only by the verbs that need it: the library imports no kfp."""
    import importlib

    return importlib.import_module(f"pipelines.{module}")


def _cmd_run(args: argparse.Namespace) -> int:
    from lumbar_core import pipeline

    overrides = _parse_sets(args.set)
    # Resolved here for either runner, so an unknown profile or stage fails before anything starts.
    profile = pipeline.apply_overrides(pipeline.load_profile(args.profile), dict(overrides))
    if args.dry_run:
        steps = pipeline.plan(
            args.data, profile, pipeline=args.pipeline, spider_uri=args.spider, models_uri=args.models or "", split=args.split
        )
        stale = {s.writes for s in steps} if args.force else set(pipeline.outdated(args.run, steps))
        for step in steps:
            print(
                f"{'run ' if step.writes in stale else 'skip'} {step.writes}" + (f"  (after {', '.join(step.after)})" if step.after else "")
            )
        return 0
    if args.runner == "inline":
        metrics = pipeline.run_inline(
            args.data,
            args.run,
            profile,
            pipeline=args.pipeline,
            spider_uri=args.spider,
            models_uri=args.models or "",
            split=args.split,
            force=args.force,
        )
    else:
        metrics = _kfp_layer("local").run_local(
            args.data,
            args.run,
            profile=args.profile,
            overrides=overrides,
            spider_uri=args.spider,
            ingest_shards=args.ingest_shards,
            predict_shards=args.predict_shards,
            pipeline_root=args.pipeline_root,
            pipeline=args.pipeline,
            models_uri=args.models,
            split=args.split,
            runner="docker" if args.runner == "kfp-docker" else "subprocess",
            images=_images(args) if args.runner == "kfp-docker" else None,
        )
    _print_metrics(metrics)
    print(f"report: {args.run}/score/report.html   submission: {args.run}/score/submission.csv")
    return 0


def _images(args: argparse.Namespace):
    images = _kfp_layer("images")
    defaults = images.default_images(**_given(registry=args.registry))
    return images.Images(cpu=args.cpu_image or defaults.cpu, gpu=args.gpu_image or defaults.gpu)


def _given(**options):
    """The options set on the command line; the rest keep the pipelines' own defaults."""
    return {k: v for k, v in options.items() if v is not None}


def _cmd_compile(args: argparse.Namespace) -> int:
    options = _given(s3_secret=args.s3_secret, profile=args.profile)
    paths = _kfp_layer("compile").compile_all(args.out, _images(args), stage=args.stage, **options)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    submit = _kfp_layer("submit")
    run = submit.submit(
        args.host,
        images=_images(args),
        pipeline=args.pipeline,
        stage=args.stage,
        arguments=submit.parse_arguments(args.arg),
        experiment=args.experiment,
        run_name=args.run_name,
        pipeline_root=args.pipeline_root,
        enable_caching=not args.no_cache,
        namespace=args.namespace,
        token=args.token,
        wait=args.wait,
        timeout_s=args.timeout,
        poll_s=args.poll,
        **_given(s3_secret=args.s3_secret, profile=args.profile),
    )
    print(f"run {run.run_id}: {run.state}   {run.url}")
    return 0 if run.state in ("SUBMITTED", "SUCCEEDED") else 1


def _add_image_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registry", default=None, help="image repository (default ghcr.io/lumbar-spine/lumbar); tags {version}-cpu / -gpu")
    p.add_argument("--cpu-image", default=None, help="image of the CPU stages (pinned tag; default REGISTRY:VERSION-cpu)")
    p.add_argument("--gpu-image", default=None, help="image of the GPU stages (pinned tag; default REGISTRY:VERSION-gpu)")
    p.add_argument("--s3-secret", default=None, help="Kubernetes Secret holding the S3 credentials (default lumbar-s3)")
    p.add_argument("--profile", default=None, help="the pipelines' default profile parameter (default realistic)")
    p.add_argument("--stage", default=None, help="a one-task pipeline that reruns this stage on a run's store prefix")


def _print_metrics(metrics: dict) -> None:
    from lumbar_core.score import TERMS

    if not any(term in metrics for term in TERMS):
        print(f"{metrics.get('studies', '?')} studies predicted; no labels for them, so no score")
        return
    prior = metrics.get("prior", {})
    print(f"{'term':<20}{'model':>9}{'prior':>9}   ({metrics.get('studies', '?')} validation studies)")
    for term in (*TERMS, "score"):
        if term in metrics:
            print(f"{term:<20}{metrics[term]:>9.4f}{prior.get(term, float('nan')):>9.4f}")


def _add_stage_parsers(verbs) -> None:
    import dataclasses

    from lumbar_core.stages import STAGES

    stage = verbs.add_parser("stage", help="run or rerun one stage against a run's store prefix")
    names = stage.add_subparsers(dest="stage", required=True, metavar="NAME")
    for spec in STAGES.values():
        p = names.add_parser(spec.name, help=f"{spec.help} ({spec.node})")
        p.add_argument("--run", required=True, help="the run prefix (path, file:// or s3://)")
        for name in spec.inputs:
            p.add_argument(f"--{name.removesuffix('_uri')}", required=True, help=f"{name.removesuffix('_uri')} root (path or URI)")
        for f in dataclasses.fields(spec.params):
            p.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None, help=f"default: {f.default!r}")
        p.set_defaults(func=_cmd_stage)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb that works today."""
    from lumbar_core import __version__

    parser = argparse.ArgumentParser(prog="lumbar", description="Lumbar spine degeneration grading (RSNA 2024 LSDC).")
    parser.add_argument("--version", action="version", version=f"lumbar {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors reported in one line")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    p = verbs.add_parser("score", help="score a submission against labels (train.csv or long form)")
    p.add_argument("--truth", required=True, help="train.csv (wide) or a long table with row_id (path or URI)")
    p.add_argument("--submission", required=True, help="submission CSV: row_id,normal_mild,moderate,severe")
    p.add_argument("--json", action="store_true", help="print the terms and score as one JSON object")
    p.set_defaults(func=_cmd_score)

    p = verbs.add_parser("prior", help="write the per condition x level prior of training labels as a submission")
    p.add_argument("--truth", required=True, help="training labels: train.csv (wide) or a long table")
    p.add_argument("--studies", required=True, help="any CSV with a study_id column (e.g. test_series_descriptions.csv)")
    p.add_argument("--out", required=True, help="submission CSV to write (path or URI)")
    p.add_argument("--no-reweight", action="store_true", help="write the plain prior, not the (1,2,4)-reweighted one")
    p.set_defaults(func=_cmd_prior)

    p = verbs.add_parser("synth", help="generate a synthetic dataset in the RSNA and SPIDER formats")
    p.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--studies", type=int, default=20, help="training studies (default 20)")
    p.add_argument("--test-studies", type=int, default=3, help="test studies without labels (default 3)")
    p.add_argument("--profile", default="tiny", help="tiny (fast tests) or realistic (384 px, real slice counts)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same bytes")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: LUMBAR_WORKERS or CPU count)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a profile setting (repeatable)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--preview", metavar="PNG", help="also draw one study's series and labelled points into a PNG")
    p.set_defaults(func=_cmd_synth)

    _add_stage_parsers(verbs)

    p = verbs.add_parser("run", help="a whole pipeline on a dataset: train (then predict and score the validation studies), or inference")
    p.add_argument("--data", required=True, help="dataset root in the Kaggle layout (path or URI), with spider/ unless --spider")
    p.add_argument("--run", required=True, help="the run prefix (path, file:// or s3://)")
    p.add_argument("--profile", default="tiny", help="tiny or realistic (lumbar_core/profiles)")
    p.add_argument(
        "--runner",
        default="kfp-local",
        choices=["kfp-local", "kfp-docker", "inline"],
        help="kfp-local: the compiled pipeline through kfp.local, tasks as subprocesses (default); kfp-docker: each task in "
        "its image (make images; data, run and S3 endpoint reachable from containers); inline: every stage in this process",
    )
    p.add_argument("--registry", default=None, help="kfp-docker: image repository (default ghcr.io/lumbar-spine/lumbar)")
    p.add_argument("--cpu-image", default=None, help="kfp-docker: image of the CPU stages (default REGISTRY:VERSION-cpu)")
    p.add_argument("--gpu-image", default=None, help="kfp-docker: image of the GPU stages (default REGISTRY:VERSION-gpu)")
    p.add_argument("--pipeline", default="train", choices=["train", "inference"], help="train (default) or inference")
    p.add_argument("--models", default=None, help="inference: the model bundle (its URI, or a training run holding one)")
    p.add_argument("--split", default="test", help="inference: which split of the dataset to predict (default test)")
    p.add_argument("--ingest-shards", type=int, default=2, help="kfp-local: parallel ingest tasks per study set (default 2)")
    p.add_argument("--predict-shards", type=int, default=2, help="kfp-local: parallel predict tasks (default 2)")
    p.add_argument("--pipeline-root", default=None, help="kfp-local: folder for KFP's task outputs (default RUN/_kfp, or runs/_kfp-local)")
    p.add_argument("--spider", default=None, help="SPIDER-format folder (default: DATA/spider)")
    p.add_argument("--set", action="append", default=[], metavar="STAGE.KEY=VALUE", help="override a profile setting (repeatable)")
    p.add_argument("--force", action="store_true", help="inline: rerun every stage even if committed with the same parameters and inputs")
    p.add_argument("--dry-run", action="store_true", help="list the stages in order: which would run inline, which are up to date")
    p.set_defaults(func=_cmd_run)

    p = verbs.add_parser("compile", help="compile the train and inference pipelines to YAML (for a cluster)")
    p.add_argument("--out", default="dist", help="output folder (default dist): train.yaml, inference.yaml")
    _add_image_flags(p)
    p.set_defaults(func=_cmd_compile)

    p = verbs.add_parser("submit", help="compile and submit a pipeline (or one stage) to a KFP cluster")
    p.add_argument("--host", required=True, help="the KFP API endpoint, e.g. http://localhost:8080")
    p.add_argument("--pipeline", default="train", choices=["train", "inference"], help="which pipeline (default train)")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE", help="a pipeline argument; JSON values allowed")
    p.add_argument("--experiment", default="lumbar", help="experiment name (created if missing)")
    p.add_argument("--run-name", default=None, help="run name (default lumbar-PIPELINE)")
    p.add_argument("--pipeline-root", default=None, help="where KFP keeps task outputs (default: the cluster's kfp-launcher setting)")
    p.add_argument("--no-cache", action="store_true", help="run every task even if KFP has a cached result")
    p.add_argument("--namespace", default=None, help="Kubernetes namespace (multi-user clusters)")
    p.add_argument("--token", default=None, help="bearer token for the KFP API")
    p.add_argument("--wait", action="store_true", help="follow the run until it ends; exit status 1 unless it succeeded")
    p.add_argument("--timeout", type=int, default=24 * 3600, help="--wait: give up after this many seconds")
    p.add_argument("--poll", type=float, default=10.0, help="--wait: seconds between status checks")
    _add_image_flags(p)
    p.set_defaults(func=_cmd_submit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lumbar`` console script.

    Errors in what the user gave (:class:`~lumbar_core.errors.UserError` and its subclasses), store,
    manifest, missing-file, permission and connection errors are printed as one line
    ``lumbar VERB: error: MESSAGE`` with exit status 2 (``--debug``: with the traceback). Any other
    exception is a bug and propagates with its traceback.
    """
    from lumbar_core.manifest import ManifestError
    from lumbar_core.store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserError, StoreError, ManifestError, FileNotFoundError, PermissionError, ConnectionError) as exc:
        if args.debug:
            raise
        print(f"lumbar {args.verb}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
