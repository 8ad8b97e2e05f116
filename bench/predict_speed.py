"""Seconds per study for predict on realistic-profile images, on this machine's CPU, by step.

``--models tiny`` (the default, a few minutes) trains quick tiny-profile models on a tiny phantom: they
resample every input down to their own 2.5 mm pixels, so this times the pipeline's code more than its
networks. ``--models realistic`` trains every model with the realistic profile's architecture, input
size and pixel spacing (vertebra and localiser U-Nets at 1 mm, nnU-Net planned on the realistic
images, DenseNet at 64 px a side, crop classifier at 96 px x 5 slices) but for one epoch each, on a few
realistic studies: the weights are useless, the cost of a forward pass is the one a fully trained
model has. Either way the timed studies are realistic-profile ones (256-768 px sagittal, 256-512 px
axial), ingested as a separate set.

Each study is read the way predict reads it (:mod:`lumbar_core.prediction`), step by step: decoding,
finding the levels with the localiser (the normal path) and with the vertebra U-Net (predict's
fallback, run only where level QA rejects the localiser's levels), then every model's reading at the
five labelled canal points (so that the readers' cost does not depend on whether one-epoch models
find the levels). ``typical`` is decode + localiser + readers, ``worst`` adds the fallback.

    .venv/bin/python bench/predict_speed.py [--models tiny|realistic] [--studies 3] [--work DIR]

``--work DIR`` keeps the trained models and the timed studies there and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from lumbar_core import pipeline, vocab
from lumbar_core.cpus import limit_torch_threads, task_threads
from lumbar_core.ingested import IngestedData
from lumbar_core.model_bundle import open_bundle
from lumbar_core.prediction import ReadParams, checked_levels, read_at_levels
from lumbar_core.stages import ingest
from lumbar_core.stages.level_train import level_targets
from lumbar_core.stages.predict import bundle_models
from lumbar_core.synthetic import generate, get_profile

QUICK = {
    "vertebra-train.epochs": "4",
    "nnunet-train.epochs": "2",
    "nnunet-train.iterations": "5",
    "nnunet-train.val_iterations": "2",
    "densenet-train.epochs": "2",
    "crop-train.epochs": "2",
}
# the realistic profile's networks and inputs, one short epoch each (a handful of training studies)
ONE_EPOCH = {
    "vertebra-train.epochs": "1",
    "level-train.epochs": "1",
    "nnunet-prepare.processes": "2",
    "nnunet-train.epochs": "1",
    "nnunet-train.iterations": "2",
    "nnunet-train.val_iterations": "1",
    "nnunet-train.allow_missing": "true",
    "balance.min_examples": "1",
    "balance.allow_missing": "true",
    "densenet-train.epochs": "1",
    "crop-train.epochs": "1",
}
STEPS = ("decode", "localiser", "nnunet", "densenet", "crop")


def train_models(tmp: Path, models: str) -> str:
    """A training run whose bundle predict uses (reused if ``tmp`` holds one); its URI."""
    run = str(tmp / "run")
    if (tmp / "run" / "bundle").is_dir():
        return run
    if models == "tiny":
        data = tmp / "tiny"
        generate(data, studies=12, profile=get_profile("tiny"), seed=1)
        settings = pipeline.apply_overrides(pipeline.load_profile("tiny"), dict(QUICK))
    else:
        data = tmp / "realistic-train"
        generate(data, studies=6, profile=get_profile("realistic").with_overrides({"spider_cases": "3"}), seed=1)
        settings = pipeline.apply_overrides(pipeline.load_profile("realistic"), dict(ONE_EPOCH))
    started = time.perf_counter()
    pipeline.run_inline(str(data), run, settings, log=lambda _: None)
    print(f"trained {models}-profile models in {time.perf_counter() - started:.0f} s")
    return run


def time_reading(run: str, ingest_stage: str) -> tuple[dict[str, float], int]:
    """Seconds per study of each step of predict's reading (see the module docstring), and the study count."""
    data = IngestedData.open(run, ingest_stage)
    bundle, meta = open_bundle("", run)
    coords = data.table("coordinates")
    read = ReadParams()
    timing: dict[str, float] = defaultdict(float)
    studies = sorted(data.index["study_id"].unique())
    with tempfile.TemporaryDirectory() as work:
        models = bundle_models(bundle, meta, Path(work))
        for study in studies:
            sagittal = data.index[(data.index["study_id"] == study) & (data.index["orientation"] == "sagittal")]
            t0 = time.perf_counter()
            volumes = {(r.series_id, r.stack): data.volume(study, r.series_id, r.stack) for r in sagittal.itertuples()}
            timing["decode"] += time.perf_counter() - t0
            stacks = [(volumes[(r.series_id, r.stack)], r.description) for r in sagittal.itertuples()]
            for source, step in (("localiser", "localiser"), ("unet", "fallback")):
                t0 = time.perf_counter()
                checked_levels(study, stacks, models, source, read)
                timing[step] += time.perf_counter() - t0
            canal = {}
            for r in sagittal[sagittal["description"] == vocab.SAGITTAL_T2].itertuples():
                mine = coords[(coords["study_id"] == study) & (coords["series_id"] == r.series_id) & (coords["stack"] == r.stack)]
                canal.update(level_targets(mine, vocab.SAGITTAL_T2))
            read_at_levels(data, study, volumes, canal, models, read, timing)
    return {k: v / len(studies) for k, v in timing.items()}, len(studies)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", choices=("tiny", "realistic"), default="tiny", help="which profile's networks predict")
    parser.add_argument("--studies", type=int, default=3, help="realistic-profile studies timed")
    parser.add_argument("--work", default="", help="keep (and reuse) the models and timed studies in this folder")
    args = parser.parse_args()
    threads = task_threads()
    limit_torch_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) / args.models if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run = train_models(work, args.models)
        timed = work / f"realistic-{args.studies}"
        if not (timed / "train.csv").exists():
            generate(timed, studies=args.studies, profile=get_profile("realistic").with_overrides({"spider_cases": "0"}), seed=2)
            ingest.run(data_uri=str(timed), run_uri=run, params=ingest.IngestParams(name=f"ingest-realistic-{args.studies}"))
        per_step, studies = time_reading(run, f"ingest-realistic-{args.studies}")
    print(f"predict's reading of {studies} realistic-profile studies with {args.models}-profile models, CPU ({threads} torch threads):")
    for step in (*STEPS, "fallback"):
        note = "   (only where level QA rejects the localiser)" if step == "fallback" else ""
        print(f"  {step:<13}{per_step.get(step, 0.0):7.2f} s/study{note}")
    typical = sum(per_step.get(step, 0.0) for step in STEPS)
    worst = typical + per_step.get("fallback", 0.0)
    print(f"  {'typical':<13}{typical:7.2f} s/study   worst {worst:.2f}   (the competition allowed about 45 s/study on one GPU)")


if __name__ == "__main__":
    main()
