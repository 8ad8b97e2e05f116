"""Seconds per study for predict on realistic-profile images, on this machine's CPU, by step.

``--models tiny`` (the default, a few minutes) trains quick tiny-profile models on a tiny phantom: they
resample every input down to their own 2.5 mm pixels, so this times the pipeline's code more than its
networks. ``--models realistic`` trains every model with the realistic profile's architecture, input
size and pixel spacing (vertebra and localiser U-Nets at 1 mm, nnU-Net planned on the realistic
images, DenseNet at 128 px, crop classifier at 96 px x 5 slices) but for one epoch each, on a few
realistic studies: the weights are useless, the cost of a forward pass is the one a fully trained
model has. Either way the timed studies are realistic-profile ones (256-768 px sagittal, 256-512 px
axial), ingested as a separate set and predicted by the stage itself (``timing.json``).

    .venv/bin/python bench/predict_speed.py [--models tiny|realistic] [--studies 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lumbar_core import pipeline
from lumbar_core.manifest import StageInput
from lumbar_core.stages import ingest, predict
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
STEPS = ("decode", "levels", "nnunet", "densenet", "crop")


def train_models(tmp: Path, models: str) -> str:
    """A training run whose bundle predict uses; its URI."""
    run = str(tmp / "run")
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", choices=("tiny", "realistic"), default="tiny", help="which profile's networks predict")
    parser.add_argument("--studies", type=int, default=3, help="realistic-profile studies timed")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = train_models(Path(tmp), args.models)
        timed = Path(tmp) / "realistic"
        generate(timed, studies=args.studies, profile=get_profile("realistic").with_overrides({"spider_cases": "0"}), seed=2)
        ingest.run(data_uri=str(timed), run_uri=run, params=ingest.IngestParams(name="ingest-realistic"))
        predict.run(run_uri=run, params=predict.PredictParams(ingest_stage="ingest-realistic"))
        timing = StageInput.open(run, "predict").read_json("timing.json")
    per_step = timing["seconds_per_study"]
    print(f"predict on {timing['studies']} realistic-profile studies with {args.models}-profile models, CPU ({timing.get('threads')} threads):")
    for step in STEPS:
        print(f"  {step:<13}{per_step.get(step, 0.0):7.2f} s/study")
    print(f"  {'total':<13}{sum(per_step.values()):7.2f} s/study   (competition budget: about 45 s/study on one GPU)")


if __name__ == "__main__":
    main()
